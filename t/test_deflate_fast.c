/*
 * t/test_deflate_fast.c - unit tests of ws_deflate_fast.c, the encoder
 * for whole messages without context takeover (make unit builds it).
 *
 * Every output is checked by zlib's inflate: it must give back the
 * input, use up all of it, and stop between blocks outside any final
 * block once the 00 00 ff ff the encoder left out is appended (a sync
 * flush, never BFINAL).  The window checks inflate one output byte per
 * call with exactly the negotiated window, so that zlib fails any match
 * reaching further back than the window (with more output room it
 * would find far matches in its output buffer and never check).
 *
 * Prints each failure with file:line, then "N passed, N failed"; exits 1
 * when anything failed.
 */
#include "../ws_deflate_int.h"
#include "../bench/json_doc.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* ---------------------------------------------------------------------
 * Inputs
 * ------------------------------------------------------------------- */

static uint32_t next_random(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = (uint8_t)next_random(&x);
}

/* Words, so that repeats come at every distance, and now and then a
 * long run copied from far back. */
static void fill_text(uint8_t *p, size_t n, uint32_t seed)
{
    static const char *words[] = { "websocket ", "frame ", "deflate ",
        "apache ", "message ", "window ", "context ", "takeover ",
        "the ", "a ", "compression\n" };
    uint32_t x = seed ? seed : 7;
    size_t i = 0;
    while (i < n) {
        uint32_t r = next_random(&x);
        if (r % 16 == 0 && i > 1000) {
            size_t from = r % (i - 500), k;
            for (k = 0; k < 300 && i < n; k++)
                p[i++] = p[from + k];
        } else {
            const char *w = words[r % 11];
            for (; *w && i < n; w++)
                p[i++] = (uint8_t)*w;
        }
    }
}

static void fill_json(uint8_t *p, size_t n, uint32_t seed)
{
    if (n >= 32) {
        json_doc(p, n, seed);
    } else {
        static const char doc[] = "{\"id\":12,\"name\":\"alice\"}      ";
        memcpy(p, doc, n);
    }
}

static void fill_same(uint8_t *p, size_t n, uint32_t seed)
{
    memset(p, (int)(seed & 255), n);
}

/* Random bytes over a few symbols: short repeats everywhere, few long. */
static void fill_small_alphabet(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 3;
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = (uint8_t)("abcd"[next_random(&x) % 4]);
}

typedef void (*filler)(uint8_t *p, size_t n, uint32_t seed);

static const struct kind {
    const char *name;
    filler fill;
} kinds[] = {
    { "random", fill_random },
    { "text", fill_text },
    { "json", fill_json },
    { "same byte", fill_same },
    { "4 letters", fill_small_alphabet },
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

/* ---------------------------------------------------------------------
 * Compressing, and checking with zlib
 * ------------------------------------------------------------------- */

/* Our payload for in[0..n), in a buffer of exactly the bound, made with
 * a workspace full of garbage (the encoder must not rely on its
 * content). */
static uint8_t *compress_fast(const uint8_t *in, size_t n, int bits,
                              size_t *out_len)
{
    size_t bound = ws_deflate_fast_bound(n);
    uint8_t *out = malloc(bound);
    void *ws = malloc(ws_deflate_fast_workspace(n));
    if (!out || !ws)
        abort();
    memset(ws, 0xa5, ws_deflate_fast_workspace(n));
    *out_len = ws_deflate_fast_compress(in, n, bits, ws, out);
    free(ws);
    return out;
}

/*
 * Inflates payload + tail with a raw window of 2^bits, step output bytes
 * per call (0: all at once); 1 when that gives back exactly in[0..n),
 * uses all the input, and ends between blocks, in no final block.
 */
static int inflates_to(const uint8_t *payload, size_t len, int bits,
                       size_t step, const uint8_t *in, size_t n)
{
    uint8_t *wire = malloc(len + sizeof tail), *back = malloc(n + 1);
    z_stream zs;
    int rc = Z_OK, ok;
    size_t got = 0;

    memcpy(wire, payload, len);
    memcpy(wire + len, tail, sizeof tail);
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -bits) != Z_OK)
        abort();
    zs.next_in = wire;
    zs.avail_in = (uInt)(len + sizeof tail);
    while (rc == Z_OK && zs.avail_in > 0 && got <= n) {
        zs.next_out = back + got;
        zs.avail_out = (uInt)(step ? step : n + 1 - got);
        if (zs.avail_out > n + 1 - got)
            zs.avail_out = (uInt)(n + 1 - got);
        rc = inflate(&zs, Z_SYNC_FLUSH);
        got = (size_t)(zs.next_out - back);
    }
    ok = (rc == Z_OK || rc == Z_BUF_ERROR) && zs.avail_in == 0 && got == n
         && memcmp(back, in, n) == 0
         && (zs.data_type & 128) && !(zs.data_type & 64);
    if (!ok)
        printf("    inflate: rc %d (%s), %zu of %zu bytes, %u input left,"
               " data_type %d\n", rc, zs.msg ? zs.msg : "-", got, n,
               zs.avail_in, zs.data_type);
    inflateEnd(&zs);
    free(wire);
    free(back);
    return ok;
}

/* zlib level 1 as ws_deflate used it: window and memLevel sized to the
 * message, sync flush, tail stripped; the payload's length. */
static size_t zlib_level1_size(const uint8_t *in, size_t n)
{
    int bits = 9, mem;
    z_stream zs;
    uint8_t *out;
    size_t len;

    while (bits < 15 && ((size_t)1 << bits) - 262 < n)
        bits++;
    mem = bits - 7 > 1 ? bits - 7 : 1;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 1, Z_DEFLATED, -bits, mem > 8 ? 8 : mem,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    len = deflateBound(&zs, n) + 16;
    out = malloc(len);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)len;
    if (deflate(&zs, Z_SYNC_FLUSH) != Z_OK)
        abort();
    len = len - zs.avail_out - sizeof tail;
    deflateEnd(&zs);
    free(out);
    return len;
}

static int round_trip(const uint8_t *in, size_t n, int bits, size_t step)
{
    size_t len;
    uint8_t *out = compress_fast(in, n, bits, &len);
    int ok = len <= ws_deflate_fast_bound(n) - 8
             && inflates_to(out, len, bits, step, in, n);
    free(out);
    return ok;
}

/* ---------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------- */

/* Sizes around every boundary of the encoder: the 4-byte hash, a length
 * code's range, the hash table's sizes (512 .. 32768 slots), a block's
 * 16384 items, a stored block's 65535 bytes, WS_DEFLATE_FAST_MAX. */
static const size_t sizes[] = {
    1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 63, 64, 65, 257, 258, 259, 260,
    511, 512, 513, 1023, 1024, 1025, 2048, 4095, 4096, 8192, 16383, 16384,
    16385, 16386, 32767, 32768, 32769, 49152, 65534, 65535, 65536
};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

static void test_round_trips(void)
{
    uint8_t *data = malloc(WS_DEFLATE_FAST_MAX);
    unsigned k, i;

    for (k = 0; k < N_KINDS; k++)
        for (i = 0; i < N_SIZES; i++) {
            kinds[k].fill(data, sizes[i], (uint32_t)(i + 1));
            CHECK_CASE(round_trip(data, sizes[i], 15, 0),
                       "%s, %zu bytes", kinds[k].name, sizes[i]);
        }
    free(data);
}

/* Each window, with inputs that repeat at every distance, inflated with
 * exactly that window one byte at a time. */
static void test_windows(void)
{
    static const size_t window_sizes[] = { 300, 1000, 5000, 40000, 65536 };
    uint8_t *data = malloc(WS_DEFLATE_FAST_MAX);
    int bits;
    unsigned k, i;

    for (bits = 9; bits <= 15; bits++)
        for (k = 1; k < N_KINDS; k++)
            for (i = 0; i < sizeof window_sizes / sizeof *window_sizes; i++) {
                size_t n = window_sizes[i];
                kinds[k].fill(data, n, (uint32_t)(bits * 7 + i));
                CHECK_CASE(round_trip(data, n, bits, 1),
                           "%s, %zu bytes, window bits %d", kinds[k].name,
                           n, bits);
            }
    free(data);
}

/*
 * Random data whose last r bytes repeat bytes from exactly distance d
 * back: the encoder must use that repeat when d is within zlib's reach
 * (2^bits - 262), and cannot when d is beyond the window.  Compared with
 * random data of the same size, which does not compress.
 */
static size_t compressed_size(const uint8_t *data, size_t n, int bits,
                              int *ok)
{
    size_t len;
    uint8_t *out = compress_fast(data, n, bits, &len);
    *ok = inflates_to(out, len, bits, 1, data, n);
    free(out);
    return len;
}

static void check_repeat_at(size_t d, int bits, int usable)
{
    size_t r = d / 2 < 1000 ? d / 2 : 1000, n = d + r, with, without;
    uint8_t *data = malloc(n);
    int ok;

    fill_random(data, n, (uint32_t)(d * 31 + 1));
    without = compressed_size(data, n, bits, &ok);
    CHECK_CASE(ok, "random, %zu bytes, window bits %d", n, bits);
    memcpy(data + d, data, r);
    with = compressed_size(data, n, bits, &ok);
    CHECK_CASE(ok, "repeat at %zu, window bits %d", d, bits);
    if (usable)
        CHECK_CASE(with + r / 2 < without, "repeat at %zu, window bits %d: "
                   "%zu bytes, %zu without", d, bits, with, without);
    else
        CHECK_CASE(with + r / 8 > without, "repeat at %zu, window bits %d: "
                   "%zu bytes, %zu without", d, bits, with, without);
    free(data);
}

static void test_window_reach(void)
{
    int bits;
    for (bits = 9; bits <= 15; bits++) {
        size_t w = (size_t)1 << bits;
        check_repeat_at(w - 262, bits, 1);
        check_repeat_at(w - 261, bits, 0);
        check_repeat_at(w, bits, 0);
        check_repeat_at(w + 1, bits, 0);
    }
}

/* Messages of one byte, each value: a fixed block; the known bytes of
 * zlib's output for "Hello" (RFC 7692 section 7.2.3.1). */
static void test_tiny(void)
{
    static const uint8_t hello_wire[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9,
                                          0x07, 0x00 };
    size_t len;
    uint8_t *out;
    unsigned v;

    for (v = 0; v < 256; v++) {
        uint8_t byte = (uint8_t)v;
        CHECK_CASE(round_trip(&byte, 1, 15, 1), "byte %u", v);
    }
    out = compress_fast((const uint8_t *)"Hello", 5, 15, &len);
    CHECK(len == sizeof hello_wire && memcmp(out, hello_wire, len) == 0);
    free(out);
}

/* The encoder's output is within 3% of zlib level 1's, or smaller, on
 * the JSON corpus and on text; random data is stored: 5 bytes more than
 * the input per block of 16384 symbols, and one for the flush. */
static void test_ratio(void)
{
    static const size_t ratio_sizes[] = { 128, 256, 1024, 4096, 16384,
                                          65536 };
    uint8_t *data = malloc(WS_DEFLATE_FAST_MAX);
    unsigned i, doc;

    for (i = 0; i < sizeof ratio_sizes / sizeof *ratio_sizes; i++) {
        size_t n = ratio_sizes[i], ours = 0, zlib = 0, text_ours, text_zlib,
               len;
        for (doc = 0; doc < 32; doc++) {
            uint8_t *out;
            fill_json(data, n, doc);
            out = compress_fast(data, n, 15, &len);
            ours += len;
            zlib += zlib_level1_size(data, n);
            free(out);
        }
        printf("# json %6zu bytes: %8.1f bytes/msg, zlib level 1 %8.1f"
               " (%+.2f%%)\n", n, ours / 32.0, zlib / 32.0,
               100.0 * ((double)ours / (double)zlib - 1));
        CHECK_CASE(ours * 100 <= zlib * 103, "json %zu bytes: %zu vs %zu",
                   n, ours, zlib);
        fill_text(data, n, 5);
        free(compress_fast(data, n, 15, &text_ours));
        text_zlib = zlib_level1_size(data, n);
        CHECK_CASE(text_ours * 100 <= text_zlib * 103,
                   "text %zu bytes: %zu vs %zu", n, text_ours, text_zlib);
        fill_random(data, n, 9);
        free(compress_fast(data, n, 15, &len));
        CHECK_CASE(len <= n + 5 * (n / 16384 + 1) + 1,
                   "random %zu bytes: %zu", n, len);
    }
    free(data);
}

/* ---------------------------------------------------------------------
 * Huffman codes
 * ------------------------------------------------------------------- */

/* 1 when lens[0..n) form a complete prefix code of at most max_bits
 * with a length for exactly the symbols of nonzero frequency (and the
 * partner zlib adds to a lone symbol). */
static int complete_code(const uint32_t *freq, const uint8_t *lens,
                         unsigned n, unsigned max_bits)
{
    uint64_t kraft = 0;
    unsigned i, used = 0, coded = 0;
    for (i = 0; i < n; i++) {
        if (lens[i] > max_bits || (freq[i] && !lens[i]))
            return 0;
        if (lens[i])
            kraft += (uint64_t)1 << (max_bits - lens[i]);
        used += freq[i] != 0;
        coded += lens[i] != 0;
    }
    return kraft == (uint64_t)1 << max_bits
           && coded == (used < 2 ? 2 : used);
}

static uint64_t code_bits(const uint32_t *freq, const uint8_t *lens,
                          unsigned n)
{
    uint64_t bits = 0;
    unsigned i;
    for (i = 0; i < n; i++)
        bits += (uint64_t)freq[i] * lens[i];
    return bits;
}

static void test_code_lengths(void)
{
    uint32_t freq[286];
    uint8_t lens[286];
    unsigned i, n;

    /* Fibonacci frequencies give an unlimited depth of n - 1. */
    for (n = 2; n <= 30; n++) {
        memset(freq, 0, sizeof freq);
        freq[0] = freq[1] = 1;
        for (i = 2; i < n; i++)
            freq[i] = freq[i - 1] + freq[i - 2];
        ws_deflate_fast_code_lengths(freq, 286, 15, lens);
        CHECK_CASE(complete_code(freq, lens, 286, 15), "fibonacci %u", n);
        if (n <= 19) {
            ws_deflate_fast_code_lengths(freq, 19, 7, lens);
            CHECK_CASE(complete_code(freq, lens, 19, 7), "fibonacci %u, "
                       "7 bits", n);
        }
    }
    /* Equal frequencies: lengths differ by at most one. */
    for (n = 1; n <= 286; n++) {
        uint8_t lo = 255, hi = 0;
        memset(freq, 0, sizeof freq);
        for (i = 0; i < n; i++)
            freq[285 - i] = 5;
        ws_deflate_fast_code_lengths(freq, 286, 15, lens);
        for (i = 286 - n; i < 286; i++) {
            lo = lens[i] < lo ? lens[i] : lo;
            hi = lens[i] > hi ? lens[i] : hi;
        }
        CHECK_CASE(complete_code(freq, lens, 286, 15) && hi - lo <= 1,
                   "%u equal", n);
    }
    /* None, or one symbol: two codes of one bit, as zlib sends. */
    memset(freq, 0, sizeof freq);
    ws_deflate_fast_code_lengths(freq, 30, 15, lens);
    CHECK(lens[0] == 1 && lens[1] == 1 && complete_code(freq, lens, 30, 15));
    freq[7] = 42;
    ws_deflate_fast_code_lengths(freq, 30, 15, lens);
    CHECK(lens[7] == 1 && lens[0] == 1 && complete_code(freq, lens, 30, 15));
    memset(freq, 0, sizeof freq);
    freq[0] = 3;
    ws_deflate_fast_code_lengths(freq, 30, 15, lens);
    CHECK(lens[0] == 1 && lens[1] == 1);
    /* Minimum redundancy when no limit applies: {1, 1, 2, 4} -> 3 3 2 1. */
    memset(freq, 0, sizeof freq);
    freq[10] = 1; freq[11] = 1; freq[12] = 2; freq[13] = 4;
    ws_deflate_fast_code_lengths(freq, 19, 7, lens);
    CHECK(lens[10] == 3 && lens[11] == 3 && lens[12] == 2 && lens[13] == 1);
    CHECK(code_bits(freq, lens, 19) == 14);
    /* Random frequencies: complete, and as good as a plain Huffman code
     * when the limit does not bite (depth below 15 for these). */
    {
        uint32_t x = 12345;
        unsigned round;
        for (round = 0; round < 200; round++) {
            for (i = 0; i < 286; i++)
                freq[i] = next_random(&x) % 3 ? next_random(&x) % 1000 : 0;
            ws_deflate_fast_code_lengths(freq, 286, 15, lens);
            CHECK_CASE(complete_code(freq, lens, 286, 15), "round %u",
                       round);
            for (i = 0; i < 19; i++)
                freq[i] = next_random(&x) % 4 ? next_random(&x) % 5000 : 0;
            ws_deflate_fast_code_lengths(freq, 19, 7, lens);
            CHECK_CASE(complete_code(freq, lens, 19, 7), "round %u, 7 bits",
                       round);
        }
    }
}

/* ---------------------------------------------------------------------
 * Through ws_deflate: who compresses what
 * ------------------------------------------------------------------- */

static ws_deflate_ctx *context(int level, int no_context_takeover, int bits)
{
    ws_deflate_params p;
    memset(&p, 0, sizeof p);
    p.server_max_window_bits = bits;
    p.client_max_window_bits = 15;
    p.server_no_context_takeover = no_context_takeover;
    p.client_no_context_takeover = 1;
    p.level = level;
    p.mem_level = 8;
    return ws_deflate_create(&p, 0);
}

static int compress_is(ws_deflate_ctx *ctx, const uint8_t *in, size_t n,
                       const uint8_t *expect, size_t expect_len)
{
    ws_deflate_buf out = { 0 };
    int ok = ws_deflate_compress(ctx, in, n, &out) == WS_DEFLATE_OK
             && out.len == expect_len
             && memcmp(out.data, expect, expect_len) == 0;
    ws_deflate_buf_free(&out);
    return ok;
}

/* A context's output inflates through another context. */
static int api_round_trip(ws_deflate_ctx *tx, const uint8_t *in, size_t n)
{
    ws_deflate_ctx *rx = context(1, 1, 15);
    ws_deflate_buf wire = { 0 }, back = { 0 };
    int ok = ws_deflate_compress(tx, in, n, &wire) == WS_DEFLATE_OK
             && ws_deflate_inflate(rx, wire.data, wire.len, 1,
                                   ws_deflate_buf_sink, &back)
                == WS_DEFLATE_OK
             && back.len == n && (n == 0 || memcmp(back.data, in, n) == 0);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&back);
    ws_deflate_destroy(rx);
    return ok;
}

static void test_through_ws_deflate(void)
{
    size_t n = 3000, len, ours;
    uint8_t *data = malloc(WS_DEFLATE_FAST_MAX + 1), *fast;
    ws_deflate_ctx *level1 = context(1, 1, 12), *zlib_only = context(1, 1, 12);
    ws_deflate_buf out = { 0 };

    fill_json(data, n, 77);
    /* level 1 without context takeover: our encoder, byte for byte,
     * counting its workspace as the context's memory while it works */
    fast = compress_fast(data, n, 12, &len);
    CHECK(compress_is(level1, data, n, fast, len));
    CHECK(ws_deflate_memory(level1) == 0);
    CHECK(ws_deflate_memory_peak(level1) == ws_deflate_fast_workspace(n));
    /* with it turned off, zlib: another payload */
    ws_deflate_set_fast_max(zlib_only, 0);
    CHECK(ws_deflate_compress(zlib_only, data, n, &out) == WS_DEFLATE_OK);
    CHECK(out.len != len || memcmp(out.data, fast, len) != 0);
    ours = len;
    printf("# json %zu bytes: ours %zu, zlib %zu\n", n, ours, out.len);
    free(fast);
    /* other levels, context takeover, pieces, and messages over
     * WS_DEFLATE_FAST_MAX go to zlib: the same as with it turned off */
    {
        static const struct { int level, nct; size_t n; } cases[] = {
            { 6, 1, 3000 }, { -1, 1, 3000 }, { 0, 1, 3000 }, { 2, 1, 3000 },
            { 1, 0, 3000 }, { 1, 1, WS_DEFLATE_FAST_MAX + 1 },
        };
        unsigned i;
        fill_json(data, WS_DEFLATE_FAST_MAX + 1, 78);
        for (i = 0; i < sizeof cases / sizeof *cases; i++) {
            ws_deflate_ctx *a = context(cases[i].level, cases[i].nct, 12);
            ws_deflate_ctx *b = context(cases[i].level, cases[i].nct, 12);
            ws_deflate_set_fast_max(b, 0);
            out.len = 0;
            CHECK(ws_deflate_compress(b, data, cases[i].n, &out)
                  == WS_DEFLATE_OK);
            CHECK_CASE(compress_is(a, data, cases[i].n, out.data, out.len),
                       "level %d, no context takeover %d, %zu bytes",
                       cases[i].level, cases[i].nct, cases[i].n);
            ws_deflate_destroy(a);
            ws_deflate_destroy(b);
        }
    }
    /* a message in pieces: zlib, and still a valid message */
    {
        ws_deflate_ctx *rx = context(1, 1, 15);
        ws_deflate_buf back = { 0 };
        out.len = 0;
        CHECK(ws_deflate_compress_chunk(level1, data, 1000, 0, &out)
              == WS_DEFLATE_OK);
        CHECK(ws_deflate_compress_chunk(level1, data + 1000, 2000, 1, &out)
              == WS_DEFLATE_OK);
        CHECK(ws_deflate_inflate(rx, out.data, out.len, 1,
                                 ws_deflate_buf_sink, &back) == WS_DEFLATE_OK
              && back.len == 3000 && memcmp(back.data, data, 3000) == 0);
        ws_deflate_buf_free(&back);
        ws_deflate_destroy(rx);
    }
    /* the empty message is still the single byte 0x00 */
    out.len = 0;
    CHECK(ws_deflate_compress(level1, NULL, 0, &out) == WS_DEFLATE_OK
          && out.len == 1 && out.data[0] == 0);
    /* and every size and kind comes back through ws_deflate_inflate */
    {
        unsigned k, i;
        for (k = 0; k < N_KINDS; k++)
            for (i = 0; i < N_SIZES; i += 3) {
                kinds[k].fill(data, sizes[i], 3);
                CHECK_CASE(api_round_trip(level1, data, sizes[i]),
                           "%s, %zu bytes", kinds[k].name, sizes[i]);
            }
    }
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(level1);
    ws_deflate_destroy(zlib_only);
    free(data);
}

int main(void)
{
    test_tiny();
    test_round_trips();
    test_windows();
    test_window_reach();
    test_ratio();
    test_code_lengths();
    test_through_ws_deflate();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
