/*
 * ws_deflate_fast.c - a small deflate encoder (RFC 1951) for whole
 * messages sent without context takeover, at zlib level 1's ratio.
 *
 * Why it exists: with zlib, a 1 KiB JSON reply costs about 100,000
 * instructions to compress, nearly half of them building Huffman trees
 * (zlib builds them with a heap and bit-length passes sized for 16,000
 * symbol blocks, for every block, at every level).  Debian 12 has no
 * library that does this faster and can end a message as RFC 7692
 * wants: libdeflate always ends with a BFINAL block (which some clients
 * mishandle, and which cannot be turned into a sync-flush ending without
 * decoding it), and zlib-ng, ISA-L and libslz are not packaged.  So
 * ws_deflate.c hands a whole message of at most WS_DEFLATE_FAST_MAX bytes
 * to this encoder when it compresses at level 1 without context
 * takeover, and uses zlib for everything else.
 *
 * What it writes, for a message of n > 0 bytes:
 *
 *   - LZ77 by greedy parsing with a hash table of the last two positions
 *     of each 4-byte string (zlib level 1 is greedy too, following
 *     chains of up to 4); no distance beyond the window less zlib's
 *     lookahead (2^bits - 262), so that a client never sees a distance
 *     zlib itself would not send;
 *   - blocks of at most BLOCK_ITEMS symbols, none with BFINAL; each is
 *     stored, fixed Huffman or dynamic Huffman, whichever is shortest,
 *     computed exactly (dynamic codes: minimum redundancy, limited to 15
 *     bits, code-length code to 7, the lengths sent with the 16/17/18
 *     repeat codes for each tree apart, as zlib does);
 *   - then the empty stored block of a sync flush, minus its last four
 *     bytes 00 00 ff ff (RFC 7692 section 7.2.1): the same ending zlib's
 *     Z_SYNC_FLUSH gives.
 *
 * The encoder allocates nothing: the caller gives it a workspace of
 * ws_deflate_fast_workspace(n) bytes and ws_deflate_fast_bound(n) bytes
 * of output room.  Positions are 16 bits: beyond 64 KiB it would still
 * be correct, but would find no more matches.
 */
#include "ws_deflate_int.h"

#include <pthread.h>
#include <string.h>

#define MIN_MATCH        4       /* the hash covers 4 bytes */
#define MAX_MATCH        258
#define ZLIB_LOOKAHEAD   262     /* zlib's reach is the window less this */
#define LITLEN_CODES     286
#define FIXED_CODES      288     /* the fixed code has two more (unused) */
#define DIST_CODES       30
#define CODELEN_CODES    19
#define END_OF_BLOCK     256
#define MAX_CODE_BITS    15
#define MAX_CODELEN_BITS 7
#define STORED_MAX       65535   /* bytes of one stored block */
#define MIN_HASH_BITS    9
#define MAX_HASH_BITS    15
/* Symbols per block, as zlib's default memLevel: Huffman codes adapt to
 * each part of a long message, and the workspace stays bounded. */
#define BLOCK_ITEMS      16384

/* An item of a block: a literal byte (< 256), or a match written as
 * MATCH_FLAG | (distance - 1) << 9 | (length - 3). */
#define MATCH_FLAG       0x100u

/* Extra bits of each length code (257..285) and distance code. */
static const uint8_t length_extra[29] = {
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
    3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0
};
static const uint8_t dist_extra[DIST_CODES] = {
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
    7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13
};
/* The order in which the code-length code's lengths are sent. */
static const uint8_t codelen_order[CODELEN_CODES] = {
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15
};

/* ======================================================================
 * Sizes
 * ====================================================================== */

/* The hash table has about as many buckets (of two positions) as the
 * message has bytes, within bounds: twice as many compress 1 KiB JSON
 * 0.3% better, and cost twice as much to clear. */
static unsigned hash_bits_for(size_t len)
{
    unsigned bits = MIN_HASH_BITS;
    while (bits < MAX_HASH_BITS && ((size_t)1 << bits) < len)
        bits++;
    return bits;
}

static size_t items_for(size_t len)
{
    return len < BLOCK_ITEMS ? len + 1 : BLOCK_ITEMS;
}

size_t ws_deflate_fast_workspace(size_t len)
{
    return ((size_t)2 * sizeof(uint16_t) << hash_bits_for(len))
           + items_for(len) * sizeof(uint32_t);
}

/*
 * No block is ever longer than storing its bytes: 5 bytes of header per
 * stored block of up to 64 KiB, with a new block at least every
 * BLOCK_ITEMS symbols.  Then the sync flush's byte, and 8 bytes the bit
 * writer may store past its end.
 */
size_t ws_deflate_fast_bound(size_t len)
{
    size_t blocks = len / STORED_MAX + len / BLOCK_ITEMS + 2;
    return len + 5 * blocks + 1 + 8;
}

/* ======================================================================
 * Bit output: LSB first, whole bytes stored 8 at a time
 * ====================================================================== */

typedef struct bit_writer {
    uint64_t bits;
    unsigned count;              /* bits held, < 8 after a flush */
    uint8_t *out;
} bit_writer;

static inline void store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

/* At most 56 bits between flushes. */
static inline void put_bits(bit_writer *bw, uint64_t value, unsigned n)
{
    bw->bits |= value << bw->count;
    bw->count += n;
}

static inline void flush_bytes(bit_writer *bw)
{
    store_le64(bw->out, bw->bits);
    bw->out += bw->count >> 3;
    bw->bits >>= bw->count & ~7u;
    bw->count &= 7;
}

/* Pads to a byte boundary with zero bits. */
static void align_to_byte(bit_writer *bw)
{
    store_le64(bw->out, bw->bits);
    bw->out += (bw->count + 7) >> 3;
    bw->bits = 0;
    bw->count = 0;
}

/* ======================================================================
 * Tables made once: length and distance codes, the fixed codes
 * ====================================================================== */

/* The codes of a block: literal/length and distance. */
typedef struct huffman {
    uint8_t  lens[FIXED_CODES];
    uint16_t codes[FIXED_CODES];
    uint8_t  dlens[DIST_CODES];
    uint16_t dcodes[DIST_CODES];
} huffman;

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static uint8_t  length_index[256];     /* by length - 3: code 257 + index */
static uint16_t length_base[29];       /* length - 3 of each code's first */
static uint8_t  dist_index_near[256];  /* by distance - 1 < 256 */
static uint8_t  dist_index_far[256];   /* by (distance - 1) >> 7 */
static uint16_t dist_base[DIST_CODES]; /* distance - 1 of each code's first */
static uint8_t  reversed_byte[256];
static huffman  fixed_codes;

static void build_codes(const uint8_t *lens, unsigned n,
                        const unsigned *count, uint16_t *codes);

static void make_code_tables(void)
{
    unsigned code, k, x = 0, y = 0;

    for (code = 0; code < 28; code++) {
        length_base[code] = (uint16_t)x;
        for (k = 0; k < (1u << length_extra[code]) && x < 255; k++)
            length_index[x++] = (uint8_t)code;
    }
    length_base[28] = 255;                  /* 258 has a code of its own */
    length_index[255] = 28;
    for (code = 0; code < DIST_CODES; code++) {
        dist_base[code] = (uint16_t)y;
        for (k = 0; k < (1u << dist_extra[code]); k++, y++) {
            if (y < 256)
                dist_index_near[y] = (uint8_t)code;
            else
                dist_index_far[y >> 7] = (uint8_t)code;
        }
    }
}

static void make_fixed_codes(void)
{
    huffman *f = &fixed_codes;
    unsigned count[MAX_CODE_BITS + 1] = { 0 }, i;

    for (i = 0; i < FIXED_CODES; i++) {
        f->lens[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
        count[f->lens[i]]++;
    }
    build_codes(f->lens, FIXED_CODES, count, f->codes);
    memset(count, 0, sizeof count);
    for (i = 0; i < DIST_CODES; i++)
        f->dlens[i] = 5;
    count[5] = DIST_CODES;
    build_codes(f->dlens, DIST_CODES, count, f->dcodes);
}

static void make_tables(void)
{
    unsigned i, b;
    for (i = 0; i < 256; i++)
        for (b = 0; b < 8; b++)
            if (i & (1u << b))
                reversed_byte[i] |= (uint8_t)(0x80 >> b);
    make_code_tables();
    make_fixed_codes();
}

static inline unsigned dist_index(unsigned y)
{
    return y < 256 ? dist_index_near[y] : dist_index_far[y >> 7];
}

/* ======================================================================
 * Huffman codes
 * ====================================================================== */

/* The symbols of a code that occur: in symbol order, and as keys
 * frequency << 9 | symbol (sorted by build_lengths). */
typedef struct symbol_set {
    unsigned n;
    uint32_t max_key;
    uint16_t symbol[LITLEN_CODES];
    uint32_t key[LITLEN_CODES];
} symbol_set;

static inline void collect_one(symbol_set *set, const uint32_t *freq,
                               unsigned i)
{
    if (freq[i]) {
        uint32_t key = freq[i] << 9 | i;
        set->symbol[set->n] = (uint16_t)i;
        set->key[set->n++] = key;
        if (key > set->max_key)
            set->max_key = key;
    }
}

/* Four frequencies at a time: most codes leave long stretches unused. */
static void collect_symbols(const uint32_t *freq, unsigned n,
                            symbol_set *set)
{
    unsigned i = 0;
    set->n = 0;
    set->max_key = 0;
    for (; i + 4 <= n; i += 4) {
        if ((freq[i] | freq[i + 1] | freq[i + 2] | freq[i + 3]) == 0)
            continue;
        collect_one(set, freq, i);
        collect_one(set, freq, i + 1);
        collect_one(set, freq, i + 2);
        collect_one(set, freq, i + 3);
    }
    for (; i < n; i++)
        collect_one(set, freq, i);
}

/* Sorts the set's keys by frequency, ascending; stable, so that equal
 * frequencies stay in symbol order. */
static void sort_keys(symbol_set *set)
{
    uint32_t tmp[LITLEN_CODES], *key = set->key;
    unsigned n = set->n, shift, i;

    if (n <= 24) {               /* insertion sort for short lists */
        for (i = 1; i < n; i++) {
            uint32_t k = key[i];
            unsigned j = i;
            for (; j > 0 && key[j - 1] > k; j--)
                key[j] = key[j - 1];
            key[j] = k;
        }
        return;
    }
    /* Counting sort on each byte of the frequency that is used, the
     * lowest first (one pass when all frequencies are below 256). */
    for (shift = 9; shift < 32 && (set->max_key >> shift) != 0; shift += 8) {
        unsigned count[256], sum = 0, c;
        unsigned buckets = (set->max_key >> shift) < 256
                           ? (set->max_key >> shift) + 1 : 256;
        memset(count, 0, buckets * sizeof *count);
        for (i = 0; i < n; i++)
            count[(key[i] >> shift) & 255]++;
        for (c = 0; c < buckets; c++) {
            unsigned here = count[c];
            count[c] = sum;
            sum += here;
        }
        for (i = 0; i < n; i++)
            tmp[count[(key[i] >> shift) & 255]++] = key[i];
        memcpy(key, tmp, n * sizeof *key);
    }
}

/*
 * Turns n >= 2 weights, ascending, into the code lengths of a minimum
 * redundancy code, in place (Moffat and Katajainen's in-place method:
 * the tree's internal nodes are built in the array's front as the
 * leaves are consumed, then parent links become depths).  a[0], the
 * lightest, gets the longest code.
 */
static void minimum_redundancy(uint32_t *a, unsigned n)
{
    unsigned leaf = 0, root = 0, next, avail, used, depth;
    int node, slot;

    for (next = 0; next < n - 1; next++) {
        /* each internal node takes the two lightest of what is left:
         * leaves (from leaf on) or earlier internal nodes (root on) */
        if (leaf >= n || (root < next && a[root] < a[leaf])) {
            a[next] = a[root];
            a[root++] = next;
        } else {
            a[next] = a[leaf++];
        }
        if (leaf >= n || (root < next && a[root] < a[leaf])) {
            a[next] += a[root];
            a[root++] = next;
        } else {
            a[next] += a[leaf++];
        }
    }
    a[n - 2] = 0;                              /* the root's depth */
    for (node = (int)n - 3; node >= 0; node--)
        a[node] = a[a[node]] + 1;              /* parent's depth + 1 */
    avail = 1;
    used = 0;
    depth = 0;
    node = (int)n - 2;
    slot = (int)n - 1;
    while (avail > 0) {
        while (node >= 0 && a[node] == depth) {
            used++;
            node--;
        }
        while (avail > used) {                 /* leaves at this depth */
            a[slot--] = depth;
            avail--;
        }
        avail = 2 * used;
        depth++;
        used = 0;
    }
}

/*
 * Lengths a[0..n) (descending, as minimum_redundancy leaves them) cut
 * to max_bits: the deeper codes move up to max_bits, then codes move
 * one level down until the Kraft sum is exactly 1 again (and back up if
 * that overshoots), and the lengths go back to the symbols in the same
 * order: the lightest get the longest.
 */
static void limit_lengths(uint32_t *a, unsigned n, unsigned max_bits)
{
    unsigned count[MAX_CODE_BITS + 2] = { 0 };
    uint32_t kraft = 0, full = (uint32_t)1 << max_bits;
    unsigned i, len;

    for (i = 0; i < n; i++)
        count[a[i] < max_bits ? a[i] : max_bits]++;
    for (len = 1; len <= max_bits; len++)
        kraft += count[len] << (max_bits - len);
    while (kraft > full) {           /* some length < max_bits exists */
        for (len = max_bits - 1; count[len] == 0; len--)
            ;
        count[len]--;
        count[len + 1]++;
        kraft -= (uint32_t)1 << (max_bits - len - 1);
    }
    while (kraft < full) {           /* the deepest code moves up */
        for (len = max_bits; count[len] == 0; len--)
            ;
        count[len]--;
        count[len - 1]++;
        kraft += (uint32_t)1 << (max_bits - len);
    }
    i = 0;
    for (len = max_bits; len >= 1; len--) {
        unsigned k;
        for (k = 0; k < count[len]; k++)
            a[i++] = len;
    }
}

/*
 * Code lengths for the symbols of set (sorted here), none over max_bits,
 * into lens[0..n) (0 for the others), and how many codes have each
 * length into count.  Like zlib, a lone symbol (or none) gets a partner
 * of frequency 0, so that every code is complete.
 */
static void build_lengths(symbol_set *set, unsigned n, unsigned max_bits,
                          uint8_t *lens, unsigned *count)
{
    uint32_t depth[LITLEN_CODES];
    unsigned i;

    if (set->n < 2) {            /* partners of frequency 0: keys first */
        unsigned only = set->n ? set->key[0] & 511 : 1;
        unsigned partner = only == 0 ? 1 : 0;
        set->key[1] = set->n ? set->key[0] : 1;
        set->key[0] = partner;
        set->symbol[0] = (uint16_t)(partner < only ? partner : only);
        set->symbol[1] = (uint16_t)(partner < only ? only : partner);
        set->n = 2;
    }
    sort_keys(set);
    for (i = 0; i < set->n; i++)
        depth[i] = set->key[i] >> 9;
    minimum_redundancy(depth, set->n);
    if (depth[0] > max_bits)
        limit_lengths(depth, set->n, max_bits);
    memset(lens, 0, n);
    memset(count, 0, (MAX_CODE_BITS + 1) * sizeof *count);
    for (i = 0; i < set->n; i++) {
        lens[set->key[i] & 511] = (uint8_t)depth[i];
        count[depth[i]]++;
    }
}

void ws_deflate_fast_code_lengths(const uint32_t *freq, unsigned n,
                                  unsigned max_bits, uint8_t *lens)
{
    symbol_set set;
    unsigned count[MAX_CODE_BITS + 1];
    collect_symbols(freq, n, &set);
    build_lengths(&set, n, max_bits, lens, count);
}

/* Bits of the set's symbols with codes of lengths lens. */
static uint64_t set_bits(const symbol_set *set, const uint8_t *lens)
{
    uint64_t bits = 0;
    unsigned i;
    for (i = 0; i < set->n; i++)
        bits += (uint64_t)(set->key[i] >> 9) * lens[set->key[i] & 511];
    return bits;
}

/* The len low bits of code, in reverse order. */
static inline unsigned reverse_bits(unsigned code, unsigned len)
{
    unsigned r = (unsigned)reversed_byte[code & 255] << 8
                 | reversed_byte[(code >> 8) & 255];
    return r >> (16 - len);
}

/* The first code of each length, from how many codes have each. */
static void first_codes(const unsigned *count, unsigned *next)
{
    unsigned code = 0, len;
    next[0] = 0;
    for (len = 1; len <= MAX_CODE_BITS; len++) {
        code = (code + (len > 1 ? count[len - 1] : 0)) << 1;
        next[len] = code;
    }
}

/* The canonical codes of RFC 1951 section 3.2.2 for lens[0..n) (count:
 * how many codes have each length), bit-reversed for an LSB-first
 * writer. */
static void build_codes(const uint8_t *lens, unsigned n,
                        const unsigned *count, uint16_t *codes)
{
    unsigned next[MAX_CODE_BITS + 1], i;
    first_codes(count, next);
    for (i = 0; i < n; i++)
        if (lens[i])
            codes[i] = (uint16_t)reverse_bits(next[lens[i]]++, lens[i]);
}

/* The same for the symbols of a set only, which are all that have a
 * length. */
static void build_set_codes(const symbol_set *set, const uint8_t *lens,
                            const unsigned *count, uint16_t *codes)
{
    unsigned next[MAX_CODE_BITS + 1], i;
    first_codes(count, next);
    for (i = 0; i < set->n; i++) {
        unsigned s = set->symbol[i];
        codes[s] = (uint16_t)reverse_bits(next[lens[s]]++, lens[s]);
    }
}

/* ======================================================================
 * A block: its symbols, their codes, and its cheapest form
 * ====================================================================== */

/* A dynamic block's own codes and header: the code lengths of both
 * codes as sent (repeat codes and their extra bits' values), and the
 * code-length code. */
typedef struct dynamic {
    huffman  hf;
    unsigned count[MAX_CODE_BITS + 1], dcount[MAX_CODE_BITS + 1];
    unsigned hlit, hdist, hclen;
    unsigned runs;
    uint8_t  sym[LITLEN_CODES + DIST_CODES];
    uint8_t  extra[LITLEN_CODES + DIST_CODES];
    uint8_t  cl_lens[CODELEN_CODES];
    uint16_t cl_codes[CODELEN_CODES];
    unsigned cl_count[MAX_CODE_BITS + 1];
} dynamic;

typedef struct encoder {
    const uint8_t *in;
    size_t    len;
    uint16_t *head;              /* last two positions of each hash */
    unsigned  hash_shift;        /* 32 - hash bits */
    uint32_t  max_dist;
    uint32_t *items;
    size_t    item_count, item_cap;
    size_t    block_start;       /* first input byte of the block */
    uint32_t  freq[LITLEN_CODES];
    uint32_t  dfreq[DIST_CODES];
    bit_writer bw;
} encoder;

static inline void add_run(dynamic *d, unsigned sym, unsigned extra)
{
    d->sym[d->runs] = (uint8_t)sym;
    d->extra[d->runs++] = (uint8_t)extra;
}

/* Run-length codes for one code's lengths (16: repeat the previous 3-6
 * times, 17: 3-10 zeros, 18: 11-138 zeros). */
static void rle_lengths(dynamic *d, const uint8_t *lens, unsigned n)
{
    unsigned i = 0;
    while (i < n) {
        unsigned v = lens[i], run = 1;
        uint64_t eight = v * 0x0101010101010101ull, next;
        while (i + run + 8 <= n
               && (memcpy(&next, lens + i + run, 8), next == eight))
            run += 8;                          /* long runs, of zeros mostly */
        while (i + run < n && lens[i + run] == v)
            run++;
        i += run;
        if (v == 0) {
            for (; run >= 11; run -= run < 138 ? run : 138)
                add_run(d, 18, (run < 138 ? run : 138) - 11);
            if (run >= 3) {
                add_run(d, 17, run - 3);
                run = 0;
            }
        } else {
            add_run(d, v, 0);                  /* sent once, then repeated */
            for (run--; run >= 3; run -= run < 6 ? run : 6)
                add_run(d, 16, (run < 6 ? run : 6) - 3);
        }
        for (; run > 0; run--)
            add_run(d, v, 0);
    }
}

/* The dynamic header for the lengths in d->hf; returns its size in bits. */
static uint64_t build_header(dynamic *d)
{
    static const uint8_t repeat_extra[3] = { 2, 3, 7 };
    uint32_t freq[CODELEN_CODES] = { 0 };
    symbol_set set;
    uint64_t bits;
    unsigned i;

    d->hlit = LITLEN_CODES;
    while (d->hlit > 257 && d->hf.lens[d->hlit - 1] == 0)
        d->hlit--;
    d->hdist = DIST_CODES;
    while (d->hdist > 1 && d->hf.dlens[d->hdist - 1] == 0)
        d->hdist--;
    d->runs = 0;
    rle_lengths(d, d->hf.lens, d->hlit);
    rle_lengths(d, d->hf.dlens, d->hdist);
    for (i = 0; i < d->runs; i++)
        freq[d->sym[i]]++;
    collect_symbols(freq, CODELEN_CODES, &set);
    build_lengths(&set, CODELEN_CODES, MAX_CODELEN_BITS, d->cl_lens,
                  d->cl_count);
    d->hclen = CODELEN_CODES;
    while (d->hclen > 4 && d->cl_lens[codelen_order[d->hclen - 1]] == 0)
        d->hclen--;
    bits = 3 + 5 + 5 + 4 + 3 * d->hclen + set_bits(&set, d->cl_lens);
    for (i = 0; i < 3; i++)
        bits += (uint64_t)freq[16 + i] * repeat_extra[i];
    return bits;
}

/* Extra bits of the block's lengths and distances, whatever the codes. */
static uint64_t extra_bits(const encoder *e)
{
    uint64_t bits = 0;
    unsigned i;
    for (i = 0; i < 29; i++)
        bits += (uint64_t)e->freq[257 + i] * length_extra[i];
    for (i = 0; i < DIST_CODES; i++)
        bits += (uint64_t)e->dfreq[i] * dist_extra[i];
    return bits;
}

/* Bits of the block stored: each piece of up to 64 KiB has a 3-bit
 * header, padding to a byte, and LEN and NLEN. */
static uint64_t stored_bits(const encoder *e, size_t bytes)
{
    size_t pieces = bytes ? (bytes + STORED_MAX - 1) / STORED_MAX : 1;
    unsigned first_pad = (8 - (e->bw.count + 3) % 8) % 8;
    return 3 + first_pad + 32 + (uint64_t)(pieces - 1) * 40
           + 8 * (uint64_t)bytes;
}

static void write_stored(encoder *e, const uint8_t *p, size_t n)
{
    bit_writer *bw = &e->bw;
    do {
        size_t piece = n < STORED_MAX ? n : STORED_MAX;
        put_bits(bw, 0, 3);                     /* BFINAL 0, BTYPE 00 */
        align_to_byte(bw);
        bw->out[0] = (uint8_t)piece;
        bw->out[1] = (uint8_t)(piece >> 8);
        bw->out[2] = (uint8_t)~piece;
        bw->out[3] = (uint8_t)(~piece >> 8);
        memcpy(bw->out + 4, p, piece);
        bw->out += 4 + piece;
        p += piece;
        n -= piece;
    } while (n > 0);
}

static void write_header(encoder *e, const dynamic *d)
{
    static const uint8_t repeat_extra[3] = { 2, 3, 7 };
    bit_writer local = e->bw, *bw = &local;
    unsigned i;

    put_bits(bw, 2 << 1, 3);                    /* BFINAL 0, BTYPE 10 */
    put_bits(bw, d->hlit - 257, 5);
    put_bits(bw, d->hdist - 1, 5);
    put_bits(bw, d->hclen - 4, 4);
    flush_bytes(bw);
    for (i = 0; i < d->hclen; i++) {
        put_bits(bw, d->cl_lens[codelen_order[i]], 3);
        flush_bytes(bw);
    }
    for (i = 0; i < d->runs; i++) {
        unsigned s = d->sym[i];
        put_bits(bw, d->cl_codes[s], d->cl_lens[s]);
        if (s >= 16)
            put_bits(bw, d->extra[i], repeat_extra[s - 16]);
        flush_bytes(bw);
    }
    e->bw = local;
}

/* The block's symbols and its end, with codes hf.  The bit writer is
 * copied into a local, which the output's stores cannot alias. */
static void write_symbols(encoder *e, const huffman *hf)
{
    bit_writer bw = e->bw;
    const uint32_t *item = e->items, *end = e->items + e->item_count;

    for (; item < end; item++) {
        uint32_t v = *item;
        if (v < 256) {
            put_bits(&bw, hf->codes[v], hf->lens[v]);
        } else {
            unsigned x = v & 255, y = v >> 9;
            unsigned li = length_index[x], di = dist_index(y);
            put_bits(&bw, hf->codes[257 + li], hf->lens[257 + li]);
            put_bits(&bw, x - length_base[li], length_extra[li]);
            put_bits(&bw, hf->dcodes[di], hf->dlens[di]);
            put_bits(&bw, y - dist_base[di], dist_extra[di]);
        }
        flush_bytes(&bw);
    }
    put_bits(&bw, hf->codes[END_OF_BLOCK], hf->lens[END_OF_BLOCK]);
    flush_bytes(&bw);
    e->bw = bw;
}

/* Ends the block of the items so far, up to input byte end, in its
 * cheapest form; the next block starts empty. */
static void flush_block(encoder *e, size_t end)
{
    dynamic d;
    symbol_set lit, dist;
    uint64_t extra, dyn_bits, fixed_bits, raw_bits;
    size_t bytes = end - e->block_start;

    e->freq[END_OF_BLOCK]++;
    collect_symbols(e->freq, LITLEN_CODES, &lit);
    collect_symbols(e->dfreq, DIST_CODES, &dist);
    build_lengths(&lit, LITLEN_CODES, MAX_CODE_BITS, d.hf.lens, d.count);
    build_lengths(&dist, DIST_CODES, MAX_CODE_BITS, d.hf.dlens, d.dcount);
    extra = extra_bits(e);
    dyn_bits = build_header(&d) + set_bits(&lit, d.hf.lens)
               + set_bits(&dist, d.hf.dlens) + extra;
    fixed_bits = 3 + set_bits(&lit, fixed_codes.lens)
                 + set_bits(&dist, fixed_codes.dlens) + extra;
    raw_bits = stored_bits(e, bytes);
    if (raw_bits <= dyn_bits && raw_bits <= fixed_bits) {
        write_stored(e, e->in + e->block_start, bytes);
    } else if (fixed_bits <= dyn_bits) {
        put_bits(&e->bw, 1 << 1, 3);            /* BFINAL 0, BTYPE 01 */
        write_symbols(e, &fixed_codes);
    } else {
        build_set_codes(&lit, d.hf.lens, d.count, d.hf.codes);
        build_set_codes(&dist, d.hf.dlens, d.dcount, d.hf.dcodes);
        build_codes(d.cl_lens, CODELEN_CODES, d.cl_count, d.cl_codes);
        write_header(e, &d);
        write_symbols(e, &d.hf);
    }
    memset(e->freq, 0, sizeof e->freq);
    memset(e->dfreq, 0, sizeof e->dfreq);
    e->item_count = 0;
    e->block_start = end;
}

/* ======================================================================
 * LZ77: greedy parsing
 * ====================================================================== */

static inline uint32_t load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* How many bytes after a and b are equal, up to max. */
static inline size_t match_extend(const uint8_t *a, const uint8_t *b,
                                  size_t max)
{
    size_t n = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (n + 8 <= max) {
        uint64_t x, y;
        memcpy(&x, a + n, 8);
        memcpy(&y, b + n, 8);
        if (x != y)
            return n + ((unsigned)__builtin_ctzll(x ^ y) >> 3);
        n += 8;
    }
#endif
    while (n < max && a[n] == b[n])
        n++;
    return n;
}

static inline unsigned hash4(uint32_t v, unsigned shift)
{
    return (v * 0x9E3779B1u) >> shift;
}

/* Ends the block when its item buffer is full. */
static inline size_t maybe_flush(encoder *e, size_t n, size_t pos)
{
    if (n < e->item_cap)
        return n;
    e->item_count = n;
    flush_block(e, pos);
    return 0;
}

/*
 * The longer of the matches at pos with the earlier positions pos - d0
 * and pos - d1 (0: no candidate), whose first 4 bytes are known to be
 * equal; the nearer wins a tie (its distance costs fewer bits).
 */
static unsigned best_match(const uint8_t *in, size_t pos, size_t len,
                           uint32_t d0, uint32_t d1, uint32_t *dist)
{
    size_t room = len - pos < MAX_MATCH ? len - pos : MAX_MATCH;
    unsigned l0 = 0, l1 = 0;

    if (d0)
        l0 = MIN_MATCH + (unsigned)match_extend(in + pos - d0 + MIN_MATCH,
                                                in + pos + MIN_MATCH,
                                                room - MIN_MATCH);
    if (d1 && d1 != d0 && l0 < room)
        l1 = MIN_MATCH + (unsigned)match_extend(in + pos - d1 + MIN_MATCH,
                                                in + pos + MIN_MATCH,
                                                room - MIN_MATCH);
    if (l1 > l0 || (l1 == l0 && d1 < d0)) {
        *dist = d1;
        return l1;
    }
    *dist = d0;
    return l0;
}

/*
 * Greedy: at each position the two last earlier positions with the same
 * hash are the candidates (zlib level 1 looks at up to 4); the longer
 * match of 4 bytes or more is taken whole, and the positions it covers
 * are not hashed (zlib level 1 does the same for matches longer than
 * 4).  Each step adds one item and moves at least one byte, so the
 * inner loop checks the item buffer only once per run of steps that
 * cannot fill it.
 */
static void parse(encoder *e)
{
    const uint8_t *in = e->in;
    const size_t len = e->len;
    const size_t hash_end = len >= MIN_MATCH ? len - MIN_MATCH + 1 : 0;
    uint16_t *head = e->head;
    uint32_t *items = e->items, *freq = e->freq, *dfreq = e->dfreq;
    const uint32_t max_dist = e->max_dist;
    const unsigned shift = e->hash_shift;
    size_t pos = 0, n = 0;

    while (pos < hash_end) {
        size_t stop = pos + (e->item_cap - n);
        if (stop > hash_end)
            stop = hash_end;
        while (pos < stop) {
            uint32_t now = load32(in + pos), dist;
            uint16_t *bucket = head + ((size_t)hash4(now, shift) << 1);
            uint32_t d0 = (uint32_t)pos - bucket[0];
            uint32_t d1 = (uint32_t)pos - bucket[1];
            unsigned byte = in[pos];
            /* a candidate is in reach, and its first 4 bytes match */
            d0 = d0 - 1 < max_dist && load32(in + pos - d0) == now ? d0 : 0;
            d1 = d1 - 1 < max_dist && load32(in + pos - d1) == now ? d1 : 0;
            bucket[1] = bucket[0];
            bucket[0] = (uint16_t)pos;
            if (d0 | d1) {
                unsigned mlen = best_match(in, pos, len, d0, d1, &dist);
                items[n++] = (dist - 1) << 9 | MATCH_FLAG | (mlen - 3);
                freq[257 + length_index[mlen - 3]]++;
                dfreq[dist_index(dist - 1)]++;
                pos += mlen;
            } else {
                items[n++] = byte;
                freq[byte]++;
                pos++;
            }
        }
        n = maybe_flush(e, n, pos);
    }
    for (; pos < len; pos++) {       /* the last bytes, too few to hash */
        items[n++] = in[pos];
        freq[in[pos]]++;
        n = maybe_flush(e, n, pos + 1);
    }
    e->item_count = n;
}

size_t ws_deflate_fast_compress(const uint8_t *in, size_t len,
                                int window_bits, void *workspace,
                                uint8_t *out)
{
    encoder e;
    unsigned hash_bits = hash_bits_for(len);

    memset(&e, 0, sizeof e);
    e.in = in;
    e.len = len;
    e.head = workspace;
    e.hash_shift = 32 - hash_bits;
    e.max_dist = ((uint32_t)1 << window_bits) - ZLIB_LOOKAHEAD;
    e.items = (uint32_t *)((uint16_t *)workspace + ((size_t)2 << hash_bits));
    e.item_cap = items_for(len);
    e.bw.out = out;
    memset(e.head, 0, 2 * sizeof(uint16_t) << hash_bits);
    pthread_once(&tables_once, make_tables);
    parse(&e);
    if (e.item_count > 0 || len == 0)
        flush_block(&e, len);
    put_bits(&e.bw, 0, 3);           /* the sync flush's empty stored block */
    align_to_byte(&e.bw);            /* its 00 00 ff ff are left out */
    return (size_t)(e.bw.out - out);
}
