/*
 * ws_deflate.c - permessage-deflate (RFC 7692), server side, sans-I/O:
 * the per-connection context, inflating, and compressing with zlib.
 * See ws_deflate.h for the API and its use; the negotiation is in
 * ws_deflate_negotiate.c.
 */
#include "ws_deflate_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MIN_ZLIB_BITS    WS_DEFLATE_MIN_ZLIB_BITS
#define MAX_BITS         WS_DEFLATE_MAX_BITS
#define INFLATE_CHUNK    16384  /* stack buffer handed to the sink */
/* zlib counts in uInt; feed big inputs in slices that surely fit. */
#define ZLIB_SLICE       ((size_t)1 << 30)

static const uint8_t deflate_tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* ======================================================================
 * Context and counting allocator
 * ====================================================================== */

/* What zlib holds for one direction, counted by our allocator. */
typedef struct zlib_meter {
    size_t now;
    size_t peak;
} zlib_meter;

/* The two directions share nothing but read-only parameters, so one
 * thread may inflate while another compresses. */
typedef struct deflate_side {
    z_stream   zs;
    int        ready;
    uint64_t   unflushed;           /* input bytes since the last flush */
    zlib_meter meter;
    ws_deflate_status failed;       /* sticky: the stream is unusable */
} deflate_side;

typedef struct inflate_side {
    z_stream   zs;
    int        ready;
    uint64_t   consumed;            /* input bytes of the current message */
    uint64_t   produced;            /* output bytes of the current message */
    int        final_block_seen;    /* the peer's stream ended (BFINAL) */
    zlib_meter meter;
    ws_deflate_status failed;
} inflate_side;

struct ws_deflate_ctx {
    ws_deflate_params params;
    uint64_t     max_message_size;
    size_t       fast_max;          /* our encoder takes messages up to */
    deflate_side out;
    inflate_side in;
};

/* Each block carries its size in front so that zfree can count it; the
 * union keeps the payload aligned for anything zlib stores. */
typedef union alloc_header {
    size_t      size;
    long double align_ld;
    void       *align_p;
    long long   align_ll;
} alloc_header;

/*
 * Without context takeover a stream is created and ended for every
 * message.  Handing its ~300 KB back to malloc each time is costly in a
 * threaded server: glibc returns the memory to the kernel and the next
 * message faults it back in.  So each thread keeps the blocks of its last
 * streams (exact sizes recur: they depend only on the parameters) up to
 * a bound, and reuses them.
 */
#define BLOCK_CACHE_SLOTS  8
#define BLOCK_CACHE_BYTES  (1024 * 1024)

typedef struct block_cache {
    alloc_header *blocks[BLOCK_CACHE_SLOTS];
    size_t bytes;
} block_cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void drop_block_cache(void *data)
{
    block_cache *cache = data;
    int i;

    for (i = 0; i < BLOCK_CACHE_SLOTS; i++)
        free(cache->blocks[i]);
    free(cache);
}

static void make_cache_key(void)
{
    if (pthread_key_create(&cache_key, drop_block_cache) != 0)
        cache_key = (pthread_key_t)-1;
}

static block_cache *thread_block_cache(void)
{
    block_cache *cache;

    pthread_once(&cache_once, make_cache_key);
    if (cache_key == (pthread_key_t)-1)
        return NULL;
    cache = pthread_getspecific(cache_key);
    if (cache == NULL && (cache = calloc(1, sizeof *cache)) != NULL
        && pthread_setspecific(cache_key, cache) != 0) {
        free(cache);
        cache = NULL;
    }
    return cache;
}

static alloc_header *take_cached_block(size_t bytes)
{
    block_cache *cache = thread_block_cache();
    int i;

    for (i = 0; cache && i < BLOCK_CACHE_SLOTS; i++) {
        alloc_header *h = cache->blocks[i];
        if (h != NULL && h->size == bytes) {
            cache->blocks[i] = NULL;
            cache->bytes -= bytes;
            return h;
        }
    }
    return NULL;
}

static int keep_cached_block(alloc_header *h)
{
    block_cache *cache = thread_block_cache();
    int i;

    if (cache == NULL || cache->bytes + h->size > BLOCK_CACHE_BYTES)
        return 0;
    for (i = 0; i < BLOCK_CACHE_SLOTS; i++) {
        if (cache->blocks[i] == NULL) {
            cache->blocks[i] = h;
            cache->bytes += h->size;
            return 1;
        }
    }
    return 0;
}

static voidpf counting_alloc(voidpf opaque, uInt items, uInt size)
{
    zlib_meter *meter = opaque;
    size_t bytes = (size_t)items * size;
    alloc_header *h = take_cached_block(bytes);

    if (h == NULL && (h = malloc(sizeof *h + bytes)) == NULL)
        return Z_NULL;
    h->size = bytes;
    meter->now += bytes;
    if (meter->now > meter->peak)
        meter->peak = meter->now;
    return h + 1;
}

static void counting_free(voidpf opaque, voidpf address)
{
    zlib_meter *meter = opaque;
    alloc_header *h = (alloc_header *)address - 1;
    meter->now -= h->size;
    if (!keep_cached_block(h))
        free(h);
}

static void stream_init(z_stream *zs, zlib_meter *meter)
{
    memset(zs, 0, sizeof *zs);
    zs->zalloc = counting_alloc;
    zs->zfree = counting_free;
    zs->opaque = meter;
}

ws_deflate_ctx *ws_deflate_create(const ws_deflate_params *params,
                                  uint64_t max_message_size)
{
    ws_deflate_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return NULL;
    ctx->params = *params;
    ctx->params.server_max_window_bits =
        ws_deflate_clamp(params->server_max_window_bits, MIN_ZLIB_BITS,
                         MAX_BITS, MAX_BITS);
    ctx->params.client_max_window_bits =
        ws_deflate_clamp(params->client_max_window_bits, 8, MAX_BITS, MAX_BITS);
    ctx->params.level = ws_deflate_clamp(params->level, -1, 9,
                                         Z_DEFAULT_COMPRESSION);
    ctx->params.mem_level = ws_deflate_clamp(params->mem_level, 1, 9, 8);
    ctx->max_message_size = max_message_size;
    ctx->fast_max = WS_DEFLATE_FAST_MAX;
    return ctx;
}

void ws_deflate_set_fast_max(ws_deflate_ctx *ctx, size_t max)
{
    ctx->fast_max = max < WS_DEFLATE_FAST_MAX ? max : WS_DEFLATE_FAST_MAX;
}

static void drop_deflater(ws_deflate_ctx *ctx)
{
    if (ctx->out.ready)
        deflateEnd(&ctx->out.zs);
    ctx->out.ready = 0;
}

static void drop_inflater(ws_deflate_ctx *ctx)
{
    if (ctx->in.ready)
        inflateEnd(&ctx->in.zs);
    ctx->in.ready = 0;
}

void ws_deflate_destroy(ws_deflate_ctx *ctx)
{
    if (ctx == NULL)
        return;
    drop_deflater(ctx);
    drop_inflater(ctx);
    free(ctx);
}

const ws_deflate_params *ws_deflate_params_of(const ws_deflate_ctx *ctx)
{
    return &ctx->params;
}

size_t ws_deflate_memory(const ws_deflate_ctx *ctx)
{
    return ctx->out.meter.now + ctx->in.meter.now;
}

size_t ws_deflate_memory_peak(const ws_deflate_ctx *ctx)
{
    return ctx->out.meter.peak + ctx->in.meter.peak;
}

/*
 * Corrupt compressed data is data inconsistent with the message, hence
 * 1007 (RFC 6455 section 7.4.1), as most servers answer.  A sink error is
 * the caller's own failure; it knows better and may pick another code.
 */
uint16_t ws_deflate_close_code(ws_deflate_status st)
{
    switch (st) {
    case WS_DEFLATE_OK:         return 1000;
    case WS_DEFLATE_TOO_BIG:    return 1009;
    case WS_DEFLATE_DATA_ERROR: return 1007;
    default:                    return 1011;
    }
}

const char *ws_deflate_status_name(ws_deflate_status st)
{
    switch (st) {
    case WS_DEFLATE_OK:         return "ok";
    case WS_DEFLATE_TOO_BIG:    return "inflated message too big";
    case WS_DEFLATE_DATA_ERROR: return "invalid compressed data";
    case WS_DEFLATE_SINK_ERROR: return "sink failed";
    case WS_DEFLATE_NOMEM:      return "out of memory";
    case WS_DEFLATE_ERROR:      return "internal compression error";
    }
    return "unknown";
}

static ws_deflate_status zlib_status(int rc)
{
    switch (rc) {
    case Z_OK:
    case Z_STREAM_END:
    case Z_BUF_ERROR:   return WS_DEFLATE_OK;   /* BUF_ERROR: no progress */
    case Z_DATA_ERROR:
    case Z_NEED_DICT:   return WS_DEFLATE_DATA_ERROR;
    case Z_MEM_ERROR:   return WS_DEFLATE_NOMEM;
    default:            return WS_DEFLATE_ERROR;
    }
}

/* ======================================================================
 * Decompression (RFC 7692 section 7.2.2)
 * ====================================================================== */

/*
 * A raw inflater with window W accepts every stream made with a window
 * up to W.  At least 9 bits, because a zlib-based peer asked for 8 may
 * really compress with 9; the extra 256 bytes cost nothing.
 */
static int inflate_window_bits(const ws_deflate_ctx *ctx)
{
    int bits = ctx->params.client_max_window_bits;
    return bits < MIN_ZLIB_BITS ? MIN_ZLIB_BITS : bits;
}

static ws_deflate_status ensure_inflater(ws_deflate_ctx *ctx)
{
    int rc;
    if (ctx->in.ready)
        return WS_DEFLATE_OK;
    stream_init(&ctx->in.zs, &ctx->in.meter);
    rc = inflateInit2(&ctx->in.zs, -inflate_window_bits(ctx));
    if (rc != Z_OK)
        return rc == Z_MEM_ERROR ? WS_DEFLATE_NOMEM : WS_DEFLATE_ERROR;
    ctx->in.ready = 1;
    return WS_DEFLATE_OK;
}

/*
 * A peer may end a message with a BFINAL block (section 7.2.3.4); what
 * follows, at least our appended tail, starts a new stream.  With
 * context takeover the peer may still refer to earlier data, so the
 * window is carried over.
 */
static ws_deflate_status restart_inflater(ws_deflate_ctx *ctx)
{
    z_stream *zs = &ctx->in.zs;
    uInt keep = 0;
    Bytef *window = NULL;
    int rc = Z_OK;

    if (!ctx->params.client_no_context_takeover) {
        window = counting_alloc(&ctx->in.meter, 1,
                                1u << inflate_window_bits(ctx));
        if (window == NULL)
            return WS_DEFLATE_NOMEM;
        rc = inflateGetDictionary(zs, window, &keep);
    }
    if (rc == Z_OK)
        rc = inflateReset(zs);
    if (rc == Z_OK && keep > 0)
        rc = inflateSetDictionary(zs, window, keep);
    if (window)
        counting_free(&ctx->in.meter, window);
    ctx->in.final_block_seen = 1;
    return rc == Z_OK ? WS_DEFLATE_OK : WS_DEFLATE_ERROR;
}

/* Output space for the next inflate call: one byte past the limit at
 * most, so an oversized message is caught after at most one chunk. */
static uInt inflate_room(const ws_deflate_ctx *ctx)
{
    uint64_t left;
    if (ctx->max_message_size == 0)
        return INFLATE_CHUNK;
    left = ctx->max_message_size - ctx->in.produced;
    return left < INFLATE_CHUNK ? (uInt)left + 1 : INFLATE_CHUNK;
}

static ws_deflate_status deliver(ws_deflate_ctx *ctx, const uint8_t *p,
                                 size_t n, ws_deflate_sink sink, void *baton)
{
    if (n == 0)
        return WS_DEFLATE_OK;
    ctx->in.produced += n;
    if (ctx->max_message_size && ctx->in.produced > ctx->max_message_size)
        return WS_DEFLATE_TOO_BIG;
    return sink(baton, p, n) ? WS_DEFLATE_SINK_ERROR : WS_DEFLATE_OK;
}

/* Inflates one slice (fits in uInt) until all input is used. */
static ws_deflate_status inflate_slice(ws_deflate_ctx *ctx,
                                       const uint8_t *in, uInt len,
                                       ws_deflate_sink sink, void *baton)
{
    uint8_t out[INFLATE_CHUNK];
    z_stream *zs = &ctx->in.zs;

    zs->next_in = (Bytef *)in;
    zs->avail_in = len;
    for (;;) {
        uInt room = inflate_room(ctx);
        int rc;
        ws_deflate_status st;

        zs->next_out = out;
        zs->avail_out = room;
        rc = inflate(zs, Z_SYNC_FLUSH);
        st = deliver(ctx, out, room - zs->avail_out, sink, baton);
        if (st == WS_DEFLATE_OK)
            st = zlib_status(rc);
        if (st == WS_DEFLATE_OK && rc == Z_STREAM_END)
            st = restart_inflater(ctx);
        if (st != WS_DEFLATE_OK)
            return st;
        if (zs->avail_in == 0 && zs->avail_out != 0)
            return WS_DEFLATE_OK;
        if (rc == Z_BUF_ERROR)
            return WS_DEFLATE_ERROR;    /* no progress with room: a bug */
    }
}

static ws_deflate_status inflate_bytes(ws_deflate_ctx *ctx,
                                       const uint8_t *in, size_t len,
                                       ws_deflate_sink sink, void *baton)
{
    do {
        size_t n = len < ZLIB_SLICE ? len : ZLIB_SLICE;
        ws_deflate_status st = inflate_slice(ctx, in, (uInt)n, sink, baton);
        if (st != WS_DEFLATE_OK)
            return st;
        in += n;
        len -= n;
    } while (len > 0);
    return WS_DEFLATE_OK;
}

/*
 * The tail is an empty stored block, so after it the inflater must sit
 * between blocks (data_type bit 128).  Anywhere else means the message
 * was cut short inside a block, unless the peer ended its stream with a
 * BFINAL block and omitted the empty block RFC 7692 section 7.2.1 wants
 * after it: then the tail is a stub of a block, dropped by a restart.
 */
static ws_deflate_status check_message_end(ws_deflate_ctx *ctx)
{
    if (ctx->in.zs.data_type & 128)
        return WS_DEFLATE_OK;
    if (ctx->in.final_block_seen)
        return restart_inflater(ctx);
    return WS_DEFLATE_DATA_ERROR;
}

static ws_deflate_status finish_inflated_message(ws_deflate_ctx *ctx,
                                                 ws_deflate_sink sink,
                                                 void *baton)
{
    ws_deflate_status st = WS_DEFLATE_OK;

    /* Some peers send an empty payload for an empty message.  There is
     * nothing to decode, and the tail alone would be half a block that
     * desynchronises the stream, so the tail is skipped. */
    if (ctx->in.consumed > 0) {
        st = inflate_bytes(ctx, deflate_tail, sizeof deflate_tail, sink,
                           baton);
        if (st == WS_DEFLATE_OK)
            st = check_message_end(ctx);
    }
    ctx->in.consumed = 0;
    ctx->in.produced = 0;
    ctx->in.final_block_seen = 0;
    /* inflateEnd rather than inflateReset: an idle connection then holds
     * no window at all, and inflateInit2 is cheap (one 7 KB block). */
    if (st == WS_DEFLATE_OK && ctx->params.client_no_context_takeover)
        drop_inflater(ctx);
    return st;
}

ws_deflate_status ws_deflate_inflate(ws_deflate_ctx *ctx,
                                     const uint8_t *in, size_t len, int final,
                                     ws_deflate_sink sink, void *baton)
{
    ws_deflate_status st = ctx->in.failed;

    if (st == WS_DEFLATE_OK && len > 0) {
        st = ensure_inflater(ctx);
        if (st == WS_DEFLATE_OK)
            st = inflate_bytes(ctx, in, len, sink, baton);
        ctx->in.consumed += len;
    }
    if (st == WS_DEFLATE_OK && final)
        st = finish_inflated_message(ctx, sink, baton);
    ctx->in.failed = st;
    return st;
}

/* ======================================================================
 * Compression (RFC 7692 section 7.2.1)
 * ====================================================================== */

void ws_deflate_buf_free(ws_deflate_buf *buf)
{
    free(buf->data);
    memset(buf, 0, sizeof *buf);
}

/* Makes room for at least want more bytes, doubling to stay amortised. */
static int buf_reserve(ws_deflate_buf *buf, size_t want)
{
    size_t cap = buf->cap ? buf->cap : 256;
    uint8_t *p;
    if (buf->cap - buf->len >= want)
        return 1;
    while (cap - buf->len < want) {
        if (cap > SIZE_MAX / 2)
            return 0;
        cap *= 2;
    }
    p = realloc(buf->data, cap);
    if (p == NULL)
        return 0;
    buf->data = p;
    buf->cap = cap;
    return 1;
}

int ws_deflate_buf_sink(void *baton, const uint8_t *p, size_t n)
{
    ws_deflate_buf *buf = baton;
    if (n == 0)
        return 0;
    if (!buf_reserve(buf, n))
        return -1;
    memcpy(buf->data + buf->len, p, n);
    buf->len += n;
    return 0;
}

int ws_deflate_should_compress(const ws_deflate_ctx *ctx, size_t len)
{
    return len >= ctx->params.min_size;
}

/* Deflate's matches reach back at most the window less its lookahead. */
#define DEFLATE_LOOKAHEAD 262

/*
 * A stream made for one message (no context takeover) needs no window
 * larger than the message: a smaller window and hash compress it exactly
 * as well, and cost far less to set up (deflateInit clears the hash).
 * message_len 0 means unknown: the negotiated parameters.
 */
static void stream_size(const ws_deflate_ctx *ctx, size_t message_len,
                        int *window_bits, int *mem_level)
{
    int bits = ctx->params.server_max_window_bits;
    int level = ctx->params.mem_level;

    if (message_len > 0 && ctx->params.server_no_context_takeover) {
        bits = MIN_ZLIB_BITS;
        while (bits < ctx->params.server_max_window_bits
               && ((size_t)1 << bits) - DEFLATE_LOOKAHEAD < message_len)
            bits++;
        level = ws_deflate_min(level, bits - 7 > 1 ? bits - 7 : 1);
    }
    *window_bits = bits;
    *mem_level = level;
}

static ws_deflate_status ensure_deflater(ws_deflate_ctx *ctx,
                                         size_t message_len)
{
    int rc, bits, mem_level;
    if (ctx->out.ready)
        return WS_DEFLATE_OK;
    stream_size(ctx, message_len, &bits, &mem_level);
    stream_init(&ctx->out.zs, &ctx->out.meter);
    rc = deflateInit2(&ctx->out.zs, ctx->params.level, Z_DEFLATED, -bits,
                      mem_level, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK)
        return rc == Z_MEM_ERROR ? WS_DEFLATE_NOMEM : WS_DEFLATE_ERROR;
    ctx->out.ready = 1;
    return WS_DEFLATE_OK;
}

/* Spare room to offer deflate: a guess that grows when it falls short.
 * Above 6 bytes so that a flush marker never gets split (zlib.h). */
static size_t deflate_spare(const z_stream *zs)
{
    size_t guess = zs->avail_in / 4 + 64;
    return guess > 1024 ? guess : 1024;
}

/* Runs deflate over one slice until the input is used (and, for a sync
 * flush, until the flush is complete: output space left over). */
static ws_deflate_status deflate_slice(ws_deflate_ctx *ctx, const uint8_t *in,
                                       uInt len, int flush,
                                       ws_deflate_buf *out)
{
    z_stream *zs = &ctx->out.zs;
    size_t spare = 0;

    zs->next_in = (Bytef *)in;
    zs->avail_in = len;
    do {
        size_t room;
        int rc;
        spare = spare ? spare * 2 : deflate_spare(zs);
        if (!buf_reserve(out, spare))
            return WS_DEFLATE_NOMEM;
        room = out->cap - out->len;
        if (room > UINT_MAX)
            room = UINT_MAX;
        zs->next_out = out->data + out->len;
        zs->avail_out = (uInt)room;
        rc = deflate(zs, flush);
        out->len += room - zs->avail_out;
        if (rc == Z_STREAM_ERROR)
            return WS_DEFLATE_ERROR;
        if (zs->avail_out != 0)
            spare = 0;      /* it fit: no need to keep growing */
    } while (zs->avail_in > 0 || zs->avail_out == 0);
    return WS_DEFLATE_OK;
}

static ws_deflate_status deflate_bytes(ws_deflate_ctx *ctx, const uint8_t *in,
                                       size_t len, int flush,
                                       ws_deflate_buf *out)
{
    do {
        size_t n = len < ZLIB_SLICE ? len : ZLIB_SLICE;
        int slice_flush = n == len ? flush : Z_NO_FLUSH;
        ws_deflate_status st = deflate_slice(ctx, in, (uInt)n, slice_flush,
                                             out);
        if (st != WS_DEFLATE_OK)
            return st;
        in += n;
        len -= n;
    } while (len > 0);
    return WS_DEFLATE_OK;
}

/* A sync flush ends with an empty stored block whose last 4 bytes the
 * receiver adds back itself. */
static ws_deflate_status strip_tail(ws_deflate_buf *out, size_t start)
{
    if (out->len - start < sizeof deflate_tail ||
        memcmp(out->data + out->len - sizeof deflate_tail, deflate_tail,
               sizeof deflate_tail) != 0)
        return WS_DEFLATE_ERROR;
    out->len -= sizeof deflate_tail;
    return WS_DEFLATE_OK;
}

/*
 * Nothing to flush: zlib would refuse a second sync flush in a row, so
 * write the empty stored block ourselves; 0x00 plus the receiver's tail
 * is exactly that (section 7.2.3.6).  The stream stays byte aligned, so
 * the peer's view of our stream is unchanged.
 */
static ws_deflate_status append_empty_message(ws_deflate_buf *out)
{
    static const uint8_t empty_block = 0x00;
    return ws_deflate_buf_sink(out, &empty_block, 1) ? WS_DEFLATE_NOMEM
                                                     : WS_DEFLATE_OK;
}

/*
 * A whole message at level 1 without context takeover, small enough:
 * ws_deflate_fast.c compresses it in a fraction of zlib's time, at the
 * same ratio.  Its workspace comes from the counting allocator, so it is
 * counted like zlib's memory and its blocks are reused by the thread.
 */
static int fast_encoder_fits(const ws_deflate_ctx *ctx, size_t len)
{
    return ctx->out.unflushed == 0 && ctx->params.server_no_context_takeover
           && ctx->params.level == 1 && len <= ctx->fast_max;
}

static ws_deflate_status compress_with_fast_encoder(ws_deflate_ctx *ctx,
                                                    const uint8_t *in,
                                                    size_t len,
                                                    ws_deflate_buf *out)
{
    void *workspace;

    if (!buf_reserve(out, ws_deflate_fast_bound(len)))
        return WS_DEFLATE_NOMEM;
    workspace = counting_alloc(&ctx->out.meter, 1,
                               (uInt)ws_deflate_fast_workspace(len));
    if (workspace == NULL)
        return WS_DEFLATE_NOMEM;
    out->len += ws_deflate_fast_compress(in, len,
                                         ctx->params.server_max_window_bits,
                                         workspace, out->data + out->len);
    counting_free(&ctx->out.meter, workspace);
    return WS_DEFLATE_OK;
}

static ws_deflate_status finish_compressed_message(ws_deflate_ctx *ctx,
                                                   const uint8_t *in,
                                                   size_t len,
                                                   ws_deflate_buf *out)
{
    size_t start = out->len;
    ws_deflate_status st;

    if (ctx->out.unflushed == 0 && len == 0)
        return append_empty_message(out);
    if (fast_encoder_fits(ctx, len))
        return compress_with_fast_encoder(ctx, in, len, out);
    /* The whole message is known only when nothing was fed before. */
    st = ensure_deflater(ctx, ctx->out.unflushed == 0 ? len : 0);
    if (st == WS_DEFLATE_OK)
        st = deflate_bytes(ctx, in, len, Z_SYNC_FLUSH, out);
    if (st == WS_DEFLATE_OK)
        st = strip_tail(out, start);
    ctx->out.unflushed = 0;
    /* deflateEnd rather than deflateReset: the stream is ~260 KB at the
     * defaults and an idle connection should not hold it; see
     * docs/deflate-memory.md for what re-initialising costs. */
    if (ctx->params.server_no_context_takeover)
        drop_deflater(ctx);
    return st;
}

ws_deflate_status ws_deflate_compress_chunk(ws_deflate_ctx *ctx,
                                            const uint8_t *in, size_t len,
                                            int final, ws_deflate_buf *out)
{
    ws_deflate_status st = ctx->out.failed;

    if (st != WS_DEFLATE_OK)
        return st;
    if (final) {
        st = finish_compressed_message(ctx, in, len, out);
    } else if (len > 0) {
        st = ensure_deflater(ctx, 0);
        if (st == WS_DEFLATE_OK)
            st = deflate_bytes(ctx, in, len, Z_NO_FLUSH, out);
        ctx->out.unflushed += len;
    }
    ctx->out.failed = st;
    return st;
}

ws_deflate_status ws_deflate_compress(ws_deflate_ctx *ctx,
                                      const uint8_t *in, size_t len,
                                      ws_deflate_buf *out)
{
    return ws_deflate_compress_chunk(ctx, in, len, 1, out);
}
