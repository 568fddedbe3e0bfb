/*
 * t/test_deflate.c - unit tests of ws_deflate.c (permessage-deflate):
 * compressing and inflating; the negotiation's tests are
 * t/test_deflate_negotiate.c, the own encoder's t/test_deflate_fast.c.
 *
 * Prints each failure with file:line, then "N passed, N failed"; exits 1
 * when anything failed.  Uses nothing from ws_frame.c.
 */
#include "../ws_deflate.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---------------------------------------------------------------------
 * Helpers for compression tests
 * ------------------------------------------------------------------- */

static ws_deflate_params make_params(int server_bits, int client_bits,
                                     int snct, int cnct)
{
    ws_deflate_params p;
    memset(&p, 0, sizeof p);
    p.server_max_window_bits = server_bits;
    p.client_max_window_bits = client_bits;
    p.server_no_context_takeover = snct;
    p.client_no_context_takeover = cnct;
    p.level = -1;
    p.mem_level = 8;
    return p;
}

/*
 * A pair of endpoints over one direction: 'sender' compresses (its
 * server_* parameters), 'receiver' inflates (its client_* parameters).
 */
typedef struct channel {
    ws_deflate_ctx *sender;
    ws_deflate_ctx *receiver;
} channel;

static channel channel_open(int bits, int no_context_takeover, uint64_t limit)
{
    ws_deflate_params s = make_params(bits, 15, no_context_takeover, 0);
    ws_deflate_params r = make_params(15, bits, 0, no_context_takeover);
    channel l;
    l.sender = ws_deflate_create(&s, 0);
    l.receiver = ws_deflate_create(&r, limit);
    return l;
}

static void channel_close(channel *l)
{
    ws_deflate_destroy(l->sender);
    ws_deflate_destroy(l->receiver);
}

/* The bytes of buf from start on (buf may still be empty and NULL). */
static const uint8_t *tail_of(const ws_deflate_buf *buf, size_t start)
{
    return buf->data ? buf->data + start : NULL;
}

static ws_deflate_status inflate_all(ws_deflate_ctx *ctx, const uint8_t *p,
                                     size_t n, ws_deflate_buf *out)
{
    return ws_deflate_inflate(ctx, p, n, 1, ws_deflate_buf_sink, out);
}

static ws_deflate_status inflate_hex(ws_deflate_ctx *ctx, const char *hex,
                                     ws_deflate_buf *out)
{
    uint8_t bytes[256];
    size_t n = 0;
    unsigned v;
    while (n < sizeof bytes && sscanf(hex + 2 * n, "%2x", &v) == 1)
        bytes[n++] = (uint8_t)v;
    return inflate_all(ctx, bytes, n, out);
}

static int buf_is(const ws_deflate_buf *b, const void *p, size_t n)
{
    return b->len == n && (n == 0 || memcmp(b->data, p, n) == 0);
}

static int buf_is_hex(const ws_deflate_buf *b, const char *hex)
{
    size_t i;
    unsigned v;
    if (b->len != strlen(hex) / 2)
        return 0;
    for (i = 0; i < b->len; i++)
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || b->data[i] != v)
            return 0;
    return 1;
}

/* xorshift: reproducible pseudo-random bytes. */
static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    size_t i;
    for (i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Text-like data with repeats near and far, so windows matter. */
static void fill_compressible(uint8_t *p, size_t n, uint32_t seed)
{
    static const char *words[] = { "websocket ", "frame ", "deflate ",
        "apache ", "message ", "window ", "context ", "takeover " };
    uint32_t x = seed ? seed : 7;
    size_t i = 0;
    while (i < n) {
        const char *w;
        size_t k;
        x = x * 1103515245u + 12345u;
        w = words[(x >> 16) % 8];
        for (k = 0; w[k] && i < n; k++)
            p[i++] = (uint8_t)w[k];
    }
}

/* ---------------------------------------------------------------------
 * RFC 7692 section 7.2.3 examples
 * ------------------------------------------------------------------- */

static void test_rfc_examples_inflate(void)
{
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *z = ws_deflate_create(&p, 0);
    ws_deflate_buf out = { 0 };
    static const uint8_t part1[] = { 0xf2, 0x48, 0xcd };
    static const uint8_t part2[] = { 0xc9, 0xc9, 0x07, 0x00 };

    /* 7.2.3.1: one message, then the same split over two frames. */
    CHECK(inflate_hex(z, "f248cdc9c90700", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    out.len = 0;
    CHECK(ws_deflate_inflate(z, part1, sizeof part1, 0, ws_deflate_buf_sink,
                             &out) == WS_DEFLATE_OK);
    CHECK(ws_deflate_inflate(z, part2, sizeof part2, 1, ws_deflate_buf_sink,
                             &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.2: a second message referring to the first. */
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.3: a stored block. */
    out.len = 0;
    CHECK(inflate_hex(z, "000500faff48656c6c6f00", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.4: a BFINAL block, and the context still carries over. */
    out.len = 0;
    CHECK(inflate_hex(z, "f348cdc9c9070000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* A BFINAL block without the empty block after it: tolerated. */
    out.len = 0;
    CHECK(inflate_hex(z, "f348cdc9c90700", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.5: two blocks in one message. */
    out.len = 0;
    CHECK(inflate_hex(z, "f24805000000ffffcac9c90700", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.6: an empty message, and an empty payload. */
    out.len = 0;
    CHECK(inflate_hex(z, "00", &out) == WS_DEFLATE_OK);
    CHECK(out.len == 0);
    CHECK(ws_deflate_inflate(z, NULL, 0, 1, ws_deflate_buf_sink, &out) ==
          WS_DEFLATE_OK);
    CHECK(out.len == 0);
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(z);
}

static void test_rfc_examples_compress(void)
{
    ws_deflate_params nct = make_params(15, 15, 1, 0);
    ws_deflate_params ct = make_params(15, 15, 0, 0);
    ws_deflate_ctx *a = ws_deflate_create(&nct, 0);
    ws_deflate_ctx *b = ws_deflate_create(&ct, 0);
    ws_deflate_buf out = { 0 };
    size_t first;

    CHECK(ws_deflate_compress(a, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "f248cdc9c90700"));
    out.len = 0;
    CHECK(ws_deflate_compress(a, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "f248cdc9c90700"));   /* no context: same */

    out.len = 0;
    CHECK(ws_deflate_compress(b, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "f248cdc9c90700"));
    first = out.len;
    out.len = 0;
    CHECK(ws_deflate_compress(b, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(out.len < first);
    CHECK(buf_is_hex(&out, "f200110000"));       /* as in 7.2.3.2 */

    /* Empty messages: 0x00, before and after other messages. */
    out.len = 0;
    CHECK(ws_deflate_compress(b, NULL, 0, &out) == WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "00"));
    out.len = 0;
    CHECK(ws_deflate_compress(a, NULL, 0, &out) == WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "00"));
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(a);
    ws_deflate_destroy(b);
}

/* ---------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------- */

static const size_t trip_sizes[] = { 0, 1, 125, 126, 65535, 65536, 1 << 20 };
#define N_TRIP_SIZES (sizeof trip_sizes / sizeof trip_sizes[0])

static int round_trip(channel *l, const uint8_t *msg, size_t n)
{
    ws_deflate_buf wire = { 0 }, back = { 0 };
    int ok = ws_deflate_compress(l->sender, msg, n, &wire) == WS_DEFLATE_OK &&
             inflate_all(l->receiver, wire.data, wire.len, &back) ==
                 WS_DEFLATE_OK &&
             buf_is(&back, msg, n);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&back);
    return ok;
}

/* Every size through one channel, so later messages use earlier context. */
static void test_round_trips(void)
{
    size_t big = 1 << 20;
    uint8_t *data = malloc(big);
    int bits, nct, kind;
    size_t i;

    for (kind = 0; kind < 2; kind++)
    for (nct = 0; nct < 2; nct++)
    for (bits = 9; bits <= 15; bits++) {
        channel l = channel_open(bits, nct, 0);
        for (i = 0; i < N_TRIP_SIZES; i++) {
            if (kind)
                fill_random(data, trip_sizes[i], (uint32_t)(i + 1));
            else
                fill_compressible(data, trip_sizes[i], (uint32_t)(i + 1));
            CHECK_CASE(round_trip(&l, data, trip_sizes[i]),
                       "%s size %zu bits %d no_context_takeover %d",
                       kind ? "random" : "text", trip_sizes[i], bits, nct);
        }
        if (nct)
            CHECK(ws_deflate_memory(l.sender) == 0 &&
                  ws_deflate_memory(l.receiver) == 0);
        channel_close(&l);
    }
    free(data);
}

/* Pieces of a message, compressed one by one, inflate to the whole. */
static void test_compress_chunks(void)
{
    static const size_t pieces[] = { 0, 1, 7, 126, 4096, 70000 };
    uint8_t data[80000];
    int nct;

    fill_compressible(data, sizeof data, 99);
    for (nct = 0; nct < 2; nct++) {
        channel l = channel_open(12, nct, 0);
        int round;
        for (round = 0; round < 3; round++) {
            ws_deflate_buf wire = { 0 }, back = { 0 };
            size_t off = 0, i;
            int ok = 1;
            for (i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
                size_t start = wire.len;
                ok &= ws_deflate_compress_chunk(l.sender, data + off,
                                                pieces[i], 0, &wire) ==
                      WS_DEFLATE_OK;
                off += pieces[i];
                /* each piece goes out as its own frame */
                ok &= ws_deflate_inflate(l.receiver, tail_of(&wire, start),
                                         wire.len - start, 0,
                                         ws_deflate_buf_sink, &back) ==
                      WS_DEFLATE_OK;
            }
            {
                size_t start = wire.len;
                ok &= ws_deflate_compress_chunk(l.sender, data + off, 3, 1,
                                                &wire) == WS_DEFLATE_OK;
                off += 3;
                ok &= ws_deflate_inflate(l.receiver, tail_of(&wire, start),
                                         wire.len - start, 1,
                                         ws_deflate_buf_sink, &back) ==
                      WS_DEFLATE_OK;
            }
            CHECK_CASE(ok && buf_is(&back, data, off),
                       "chunked round %d no_context_takeover %d", round, nct);
            ws_deflate_buf_free(&wire);
            ws_deflate_buf_free(&back);
        }
        /* A message of empty pieces is the empty message. */
        {
            ws_deflate_buf wire = { 0 }, back = { 0 };
            CHECK(ws_deflate_compress_chunk(l.sender, NULL, 0, 0, &wire) ==
                  WS_DEFLATE_OK);
            CHECK(ws_deflate_compress_chunk(l.sender, NULL, 0, 1, &wire) ==
                  WS_DEFLATE_OK);
            CHECK(buf_is_hex(&wire, "00"));
            CHECK(inflate_all(l.receiver, wire.data, wire.len, &back) ==
                  WS_DEFLATE_OK && back.len == 0);
            CHECK(round_trip(&l, data, 1000));
            ws_deflate_buf_free(&wire);
            ws_deflate_buf_free(&back);
        }
        channel_close(&l);
    }
}

/* zlib-compatible streams from a peer that is not us inflate too. */
static void test_foreign_stream(void)
{
    uint8_t msg[3000], wire[4000];
    z_stream zs;
    ws_deflate_params p = make_params(15, 10, 0, 0);
    ws_deflate_ctx *z = ws_deflate_create(&p, 0);
    ws_deflate_buf out = { 0 };
    int round;

    fill_compressible(msg, sizeof msg, 5);
    memset(&zs, 0, sizeof zs);
    CHECK(deflateInit2(&zs, 9, Z_DEFLATED, -10, 9, Z_DEFAULT_STRATEGY) ==
          Z_OK);
    for (round = 0; round < 3; round++) {
        size_t n;
        zs.next_in = msg;
        zs.avail_in = sizeof msg;
        zs.next_out = wire;
        zs.avail_out = sizeof wire;
        /* Z_FULL_FLUSH also ends with an empty stored block */
        CHECK(deflate(&zs, round == 1 ? Z_FULL_FLUSH : Z_SYNC_FLUSH) == Z_OK);
        n = sizeof wire - zs.avail_out;
        CHECK(n > 4 && memcmp(wire + n - 4, "\0\0\xff\xff", 4) == 0);
        out.len = 0;
        CHECK(inflate_all(z, wire, n - 4, &out) == WS_DEFLATE_OK);
        CHECK(buf_is(&out, msg, sizeof msg));
    }
    deflateEnd(&zs);
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(z);
}

/* ---------------------------------------------------------------------
 * Streaming inflate
 * ------------------------------------------------------------------- */

static void test_split_everywhere(void)
{
    static const char text[] = "Hello, hello, hello! How low? Hello, hello,"
        " hello! With the lights out, it's less dangerous.";
    size_t n = sizeof text - 1, cut;
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *tx = ws_deflate_create(&p, 0);
    ws_deflate_buf first = { 0 }, second = { 0 }, out = { 0 };
    int bad_two = 0, bad_bytes = 0;

    /* The second message leans on the first's context. */
    CHECK(ws_deflate_compress(tx, (const uint8_t *)text, n, &first) ==
          WS_DEFLATE_OK);
    CHECK(ws_deflate_compress(tx, (const uint8_t *)text, n, &second) ==
          WS_DEFLATE_OK);
    for (cut = 0; cut <= second.len; cut++) {
        ws_deflate_ctx *rx = ws_deflate_create(&p, 0);
        out.len = 0;
        inflate_all(rx, first.data, first.len, &out);
        out.len = 0;
        if (ws_deflate_inflate(rx, second.data, cut, 0, ws_deflate_buf_sink,
                               &out) != WS_DEFLATE_OK ||
            ws_deflate_inflate(rx, second.data + cut, second.len - cut, 1,
                               ws_deflate_buf_sink, &out) != WS_DEFLATE_OK ||
            !buf_is(&out, text, n))
            bad_two++;
        ws_deflate_destroy(rx);
    }
    CHECK(bad_two == 0);

    /* Byte by byte, then an empty final chunk. */
    {
        ws_deflate_ctx *rx = ws_deflate_create(&p, 0);
        size_t i;
        out.len = 0;
        for (i = 0; i < first.len; i++)
            bad_bytes += ws_deflate_inflate(rx, first.data + i, 1, 0,
                                            ws_deflate_buf_sink, &out) !=
                         WS_DEFLATE_OK;
        bad_bytes += ws_deflate_inflate(rx, NULL, 0, 1, ws_deflate_buf_sink,
                                        &out) != WS_DEFLATE_OK;
        CHECK(bad_bytes == 0 && buf_is(&out, text, n));
        out.len = 0;
        for (i = 0; i < second.len; i++)
            bad_bytes += ws_deflate_inflate(rx, second.data + i, 1,
                                            i + 1 == second.len,
                                            ws_deflate_buf_sink, &out) !=
                         WS_DEFLATE_OK;
        CHECK(bad_bytes == 0 && buf_is(&out, text, n));
        ws_deflate_destroy(rx);
    }
    ws_deflate_buf_free(&first);
    ws_deflate_buf_free(&second);
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(tx);
}

/* A sink that records the largest piece and the total it was given. */
typedef struct counting_sink {
    size_t total;
    size_t largest;
    int    fail_after;     /* calls before returning an error; 0: never */
    int    calls;
} counting_sink;

static int count_into(void *baton, const uint8_t *p, size_t n)
{
    counting_sink *c = baton;
    (void)p;
    c->total += n;
    if (n > c->largest)
        c->largest = n;
    c->calls++;
    return c->fail_after && c->calls >= c->fail_after;
}

/* ---------------------------------------------------------------------
 * Limits and bad input
 * ------------------------------------------------------------------- */

static void compress_zeros(ws_deflate_buf *wire, size_t n)
{
    ws_deflate_params p = make_params(15, 15, 1, 0);
    ws_deflate_ctx *tx = ws_deflate_create(&p, 0);
    uint8_t *zeros = calloc(1, n);
    CHECK(ws_deflate_compress(tx, zeros, n, wire) == WS_DEFLATE_OK);
    free(zeros);
    ws_deflate_destroy(tx);
}

static void test_bomb(void)
{
    size_t ten_mib = 10u << 20, one_mib = 1u << 20;
    ws_deflate_buf wire = { 0 }, out = { 0 };
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *rx;
    counting_sink sink = { 0, 0, 0, 0 };

    compress_zeros(&wire, ten_mib);
    CHECK(wire.len < 16384);
    printf("# bomb: 10 MiB of zeros compress to %zu bytes\n", wire.len);

    rx = ws_deflate_create(&p, one_mib);
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_TOO_BIG);
    CHECK(out.len <= one_mib);
    CHECK(out.cap <= one_mib);
    CHECK(ws_deflate_memory_peak(rx) < 64 * 1024);
    printf("# bomb: rejected after %zu bytes, zlib peak %zu bytes\n",
           out.len, ws_deflate_memory_peak(rx));
    /* the failure is sticky */
    CHECK(inflate_hex(rx, "f248cdc9c90700", &out) == WS_DEFLATE_TOO_BIG);
    CHECK(ws_deflate_close_code(WS_DEFLATE_TOO_BIG) == 1009);
    ws_deflate_destroy(rx);

    /* Fed in small frames, the bomb is caught just as early. */
    rx = ws_deflate_create(&p, one_mib);
    {
        size_t off = 0;
        ws_deflate_status st = WS_DEFLATE_OK;
        while (st == WS_DEFLATE_OK && off < wire.len) {
            size_t n = wire.len - off < 100 ? wire.len - off : 100;
            st = ws_deflate_inflate(rx, wire.data + off, n,
                                    off + n == wire.len, count_into, &sink);
            off += n;
        }
        CHECK(st == WS_DEFLATE_TOO_BIG);
        CHECK(sink.total <= one_mib);
        CHECK(sink.largest <= 16384);
    }
    ws_deflate_destroy(rx);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&out);
}

static void test_limit_edges(void)
{
    ws_deflate_buf wire = { 0 }, out = { 0 };
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *rx;
    size_t n = 100000;

    compress_zeros(&wire, n);
    rx = ws_deflate_create(&p, n);             /* exactly the limit */
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_OK);
    CHECK(out.len == n);
    out.len = 0;
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_OK);
    ws_deflate_destroy(rx);

    rx = ws_deflate_create(&p, n - 1);         /* one byte short */
    out.len = 0;
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_TOO_BIG);
    CHECK(out.len <= n - 1);
    ws_deflate_destroy(rx);

    /* The limit is per message, not per connection. */
    rx = ws_deflate_create(&p, 5);
    out.len = 0;
    CHECK(inflate_hex(rx, "f248cdc9c90700", &out) == WS_DEFLATE_OK);
    CHECK(inflate_hex(rx, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "HelloHello", 10));
    ws_deflate_destroy(rx);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&out);
}

static ws_deflate_status inflate_fresh_hex(const char *hex, int bits)
{
    ws_deflate_params p = make_params(15, bits, 0, 0);
    ws_deflate_ctx *rx = ws_deflate_create(&p, 0);
    ws_deflate_buf out = { 0 };
    ws_deflate_status st = inflate_hex(rx, hex, &out);
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(rx);
    return st;
}

static void test_corrupt(void)
{
    uint8_t noise[1000];
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *rx;
    ws_deflate_buf out = { 0 };

    CHECK(inflate_fresh_hex("ff", 15) == WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_fresh_hex("07", 15) == WS_DEFLATE_DATA_ERROR); /* BTYPE 11 */
    CHECK(inflate_fresh_hex("000500fbff48656c6c6f00", 15) ==
          WS_DEFLATE_DATA_ERROR);                      /* LEN != ~NLEN */
    CHECK(inflate_fresh_hex("f248cdc9c907", 15) ==
          WS_DEFLATE_DATA_ERROR);                      /* truncated */
    CHECK(inflate_fresh_hex("f248cdc9c9", 15) == WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_fresh_hex("f24805", 15) == WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_fresh_hex("f200110000", 15) ==
          WS_DEFLATE_DATA_ERROR);                      /* no history */
    CHECK(inflate_fresh_hex("f348cdc9c90700ff", 15) ==
          WS_DEFLATE_DATA_ERROR);              /* junk after BFINAL block */
    CHECK(ws_deflate_close_code(WS_DEFLATE_DATA_ERROR) == 1007);

    fill_random(noise, sizeof noise, 4242);
    rx = ws_deflate_create(&p, 0);
    CHECK(inflate_all(rx, noise, sizeof noise, &out) ==
          WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_hex(rx, "f248cdc9c90700", &out) == WS_DEFLATE_DATA_ERROR);
    ws_deflate_destroy(rx);
    ws_deflate_buf_free(&out);
}

/*
 * A peer that uses a bigger window than agreed is caught when it refers
 * to an earlier message.  (Within one message zlib accepts any distance
 * that is still in its output buffer, so that is not checked here.)
 */
static void test_window_too_far(void)
{
    uint8_t msg[2048];
    channel big = channel_open(15, 0, 0);
    ws_deflate_params small = make_params(15, 9, 0, 0);
    ws_deflate_ctx *rx = ws_deflate_create(&small, 0);
    ws_deflate_buf wire = { 0 }, out = { 0 };

    fill_random(msg, sizeof msg, 3);
    CHECK(ws_deflate_compress(big.sender, msg, sizeof msg, &wire) ==
          WS_DEFLATE_OK);
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_OK);
    CHECK(inflate_all(big.receiver, wire.data, wire.len, &out) ==
          WS_DEFLATE_OK);
    wire.len = 0;
    CHECK(ws_deflate_compress(big.sender, msg, sizeof msg, &wire) ==
          WS_DEFLATE_OK);
    CHECK(wire.len < 100);                     /* one match 2048 back */
    out.len = 0;
    CHECK(inflate_all(rx, wire.data, wire.len, &out) ==
          WS_DEFLATE_DATA_ERROR);
    out.len = 0;
    CHECK(inflate_all(big.receiver, wire.data, wire.len, &out) ==
          WS_DEFLATE_OK && buf_is(&out, msg, sizeof msg));
    ws_deflate_destroy(rx);
    channel_close(&big);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&out);
}

static void test_sink_error(void)
{
    uint8_t msg[100000];
    channel l = channel_open(15, 0, 0);
    ws_deflate_buf wire = { 0 };
    counting_sink sink = { 0, 0, 2, 0 };

    fill_compressible(msg, sizeof msg, 8);
    CHECK(ws_deflate_compress(l.sender, msg, sizeof msg, &wire) ==
          WS_DEFLATE_OK);
    CHECK(ws_deflate_inflate(l.receiver, wire.data, wire.len, 1, count_into,
                             &sink) == WS_DEFLATE_SINK_ERROR);
    CHECK(sink.calls == 2);
    CHECK(ws_deflate_close_code(WS_DEFLATE_SINK_ERROR) == 1011);
    channel_close(&l);
    ws_deflate_buf_free(&wire);
}

/* ---------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------- */

/* Every zlib level round-trips; a failed inflate leaves compression be. */
static void test_levels_and_independence(void)
{
    uint8_t msg[20000];
    int level;
    fill_compressible(msg, sizeof msg, 11);
    for (level = -1; level <= 9; level++) {
        ws_deflate_params p = make_params(15, 15, 0, 0);
        channel l;
        p.level = level;
        l.sender = ws_deflate_create(&p, 0);
        p = make_params(15, 15, 0, 0);
        l.receiver = ws_deflate_create(&p, 0);
        CHECK_CASE(round_trip(&l, msg, sizeof msg) &&
                   round_trip(&l, msg, sizeof msg), "level %d", level);
        channel_close(&l);
    }
    {
        channel l = channel_open(15, 0, 0);
        ws_deflate_buf out = { 0 };
        CHECK(inflate_hex(l.sender, "ff", &out) == WS_DEFLATE_DATA_ERROR);
        CHECK(round_trip(&l, msg, sizeof msg));
        channel_close(&l);
        ws_deflate_buf_free(&out);
    }
}

static void test_should_compress(void)
{
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *z;
    p.min_size = 64;
    z = ws_deflate_create(&p, 0);
    CHECK(!ws_deflate_should_compress(z, 0));
    CHECK(!ws_deflate_should_compress(z, 63));
    CHECK(ws_deflate_should_compress(z, 64));
    CHECK(ws_deflate_memory(z) == 0);
    ws_deflate_destroy(z);
    p.min_size = 0;
    z = ws_deflate_create(&p, 0);
    CHECK(ws_deflate_should_compress(z, 0));
    ws_deflate_destroy(z);
}

/* Memory after one message each way; prints the figures. */
static void report_mode(int bits, int nct)
{
    uint8_t msg[2000];
    channel l = channel_open(bits, nct, 0);
    size_t idle_tx = ws_deflate_memory(l.sender);
    size_t idle_rx = ws_deflate_memory(l.receiver);

    fill_compressible(msg, sizeof msg, 1);
    CHECK(idle_tx == 0 && idle_rx == 0);
    CHECK(round_trip(&l, msg, sizeof msg));
    printf("# memory: window %2d context takeover %-3s: deflate %6zu"
           " (peak %6zu), inflate %5zu (peak %5zu) bytes\n",
           bits, nct ? "off" : "on", ws_deflate_memory(l.sender),
           ws_deflate_memory_peak(l.sender), ws_deflate_memory(l.receiver),
           ws_deflate_memory_peak(l.receiver));
    if (nct) {
        CHECK(ws_deflate_memory(l.sender) == 0);
        CHECK(ws_deflate_memory(l.receiver) == 0);
    } else {
        CHECK(ws_deflate_memory(l.sender) > ((size_t)1 << bits));
        CHECK(ws_deflate_memory(l.receiver) >= ((size_t)1 << bits));
    }
    CHECK(ws_deflate_memory_peak(l.sender) > ((size_t)1 << bits));
    channel_close(&l);
}

static void test_memory(void)
{
    static const int windows[] = { 15, 12, 9 };
    unsigned i;
    for (i = 0; i < 3; i++) {
        report_mode(windows[i], 0);
        report_mode(windows[i], 1);
    }
}

/* Smaller windows and memLevel really cost less. */
static void test_memory_scales(void)
{
    uint8_t msg[100];
    ws_deflate_params p15 = make_params(15, 15, 0, 0);
    ws_deflate_params p9 = make_params(9, 9, 0, 0);
    ws_deflate_ctx *a, *b;
    ws_deflate_buf wire = { 0 };

    p9.mem_level = 1;
    a = ws_deflate_create(&p15, 0);
    b = ws_deflate_create(&p9, 0);
    fill_compressible(msg, sizeof msg, 2);
    CHECK(ws_deflate_compress(a, msg, sizeof msg, &wire) == WS_DEFLATE_OK);
    CHECK(ws_deflate_compress(b, msg, sizeof msg, &wire) == WS_DEFLATE_OK);
    CHECK(ws_deflate_memory(b) * 8 < ws_deflate_memory(a));
    ws_deflate_destroy(a);
    ws_deflate_destroy(b);
    ws_deflate_buf_free(&wire);
}

static void test_names(void)
{
    CHECK(strcmp(ws_deflate_result_name(WS_DEFLATE_MALFORMED),
                 "malformed header") == 0);
    CHECK(strcmp(ws_deflate_status_name(WS_DEFLATE_TOO_BIG),
                 "inflated message too big") == 0);
    CHECK(ws_deflate_close_code(WS_DEFLATE_NOMEM) == 1011);
    ws_deflate_destroy(NULL);
}

int main(void)
{
    test_rfc_examples_inflate();
    test_rfc_examples_compress();
    test_round_trips();
    test_compress_chunks();
    test_foreign_stream();
    test_split_everywhere();
    test_bomb();
    test_limit_edges();
    test_corrupt();
    test_window_too_far();
    test_sink_error();
    test_levels_and_independence();
    test_should_compress();
    test_memory();
    test_memory_scales();
    test_names();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
