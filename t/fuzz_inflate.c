/*
 * t/fuzz_inflate.c - libFuzzer target for permessage-deflate's inflate
 * under a message size limit (ws_deflate_inflate).
 *
 *   make fuzz                         (all targets; see the Makefile)
 *   t/fuzz_inflate_replay file-or-dir...   (make unit, without libFuzzer)
 *
 * Input: byte 0 picks the window, context takeover, the limit and the
 * mode; byte 1 seeds where the data is cut; the rest is the data.
 *
 * Raw mode: the data is compressed payloads, cut into up to 4 messages
 * and each message into chunks.  The sink must never see more than the
 * limit in a message, nor a piece over 16 KiB; a failure must be sticky
 * and quiet (no more sink calls).  Round-trip mode: the data is cut into
 * messages that are compressed (one piece or chunked) by a context whose
 * window matches, then inflated in chunks: each must come back the same,
 * or fail with TOO_BIG exactly when it is longer than the limit.
 */
#include "../ws_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz_inflate"
#include "fuzz.h"

#define PIECE_MAX 16384

static const uint64_t limits[8] = { 1, 7, 100, 1000, 4096, 16384, 16385, 100000 };

typedef struct sink_state {
    uint64_t limit;
    uint64_t got;              /* bytes of the current message */
    int closed;                /* a failure was reported: no more calls */
    ws_deflate_buf out;        /* round-trip mode: what came out */
    int keep;
} sink_state;

static int count_sink(void *baton, const uint8_t *p, size_t n)
{
    sink_state *s = baton;

    ASSERT(!s->closed);
    ASSERT(n > 0 && n <= PIECE_MAX);
    s->got += n;
    ASSERT(s->got <= s->limit);
    if (s->keep)
        return ws_deflate_buf_sink(&s->out, p, n);
    return 0;
}

static uint32_t next_rand(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

/* Inflates msg[0..len) in chunks; returns the final status. */
static ws_deflate_status inflate_message(ws_deflate_ctx *z, sink_state *s,
                                         const uint8_t *msg, size_t len,
                                         uint32_t *seed)
{
    ws_deflate_status st = WS_DEFLATE_OK;
    size_t at = 0;

    s->got = 0;
    do {
        size_t piece = len - at ? 1 + next_rand(seed) % (len - at) : 0;
        uint8_t *copy = malloc(piece ? piece : 1);
        int final = at + piece == len;

        memcpy(copy, msg + at, piece);
        st = ws_deflate_inflate(z, copy, piece, final, count_sink, s);
        free(copy);
        at += piece;
        if (st != WS_DEFLATE_OK)
            break;
    } while (at < len);
    return st;
}

static void fail_is_sticky(ws_deflate_ctx *z, sink_state *s, ws_deflate_status st)
{
    static const uint8_t stored_a[] = { 0x4a, 0x04, 0x00 };   /* "a" */

    ASSERT(ws_deflate_close_code(st) >= 1007);
    s->closed = 1;
    ASSERT(ws_deflate_inflate(z, stored_a, sizeof stored_a, 1, count_sink, s) == st);
}

static void raw_mode(ws_deflate_ctx *z, sink_state *s, const uint8_t *data,
                     size_t size, uint32_t seed)
{
    size_t at = 0;
    int m;

    for (m = 0; m < 4 && at <= size; m++) {
        size_t len = m == 3 ? size - at : next_rand(&seed) % (size - at + 1);
        ws_deflate_status st = inflate_message(z, s, data + at, len, &seed);

        at += len;
        if (st != WS_DEFLATE_OK) {
            ASSERT(st == WS_DEFLATE_TOO_BIG || st == WS_DEFLATE_DATA_ERROR);
            fail_is_sticky(z, s, st);
            return;
        }
    }
}

static void round_trip(ws_deflate_ctx *z, sink_state *s, const ws_deflate_params *params,
                       const uint8_t *data, size_t size, uint32_t seed)
{
    ws_deflate_params sender = *params;
    ws_deflate_ctx *tx;
    size_t at = 0;
    int m;

    /* The client's compressor: our inflate window is its deflate window. */
    sender.server_max_window_bits = params->client_max_window_bits;
    sender.server_no_context_takeover = params->client_no_context_takeover;
    tx = ws_deflate_create(&sender, 0);
    ASSERT(tx != NULL);
    s->keep = 1;
    for (m = 0; m < 4 && at <= size; m++) {
        size_t len = m == 3 ? size - at : next_rand(&seed) % (size - at + 1);
        ws_deflate_buf wire = { 0 };
        ws_deflate_status st;

        if (next_rand(&seed) & 1) {
            ASSERT(ws_deflate_compress(tx, data + at, len, &wire) == WS_DEFLATE_OK);
        } else {
            size_t half = len / 2;

            ASSERT(ws_deflate_compress_chunk(tx, data + at, half, 0, &wire) == WS_DEFLATE_OK);
            ASSERT(ws_deflate_compress_chunk(tx, data + at + half, len - half, 1, &wire)
                   == WS_DEFLATE_OK);
        }
        s->out.len = 0;
        st = inflate_message(z, s, wire.data, wire.len, &seed);
        ws_deflate_buf_free(&wire);
        if (len > s->limit) {
            ASSERT(st == WS_DEFLATE_TOO_BIG);
            break;
        }
        ASSERT(st == WS_DEFLATE_OK);
        ASSERT(s->out.len == len && (len == 0 || !memcmp(s->out.data, data + at, len)));
        at += len;
    }
    ws_deflate_buf_free(&s->out);
    ws_deflate_destroy(tx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_deflate_params params;
    ws_deflate_policy policy;
    ws_deflate_ctx *z;
    sink_state s;
    uint8_t conf;
    uint32_t seed;

    if (size < 2)
        return 0;
    conf = data[0];
    seed = data[1];
    data += 2;
    size -= 2;

    ws_deflate_policy_default(&policy);
    memset(&params, 0, sizeof params);
    params.server_max_window_bits = 15;
    params.level = 1;
    params.mem_level = 8;
    params.client_no_context_takeover = (conf >> 3) & 1;
    memset(&s, 0, sizeof s);
    s.limit = limits[(conf >> 4) & 7];
    if (conf & 0x80) {
        /* zlib cannot deflate with a 256-byte window: 9 at least. */
        params.client_max_window_bits = 9 + (conf & 7) % 7;
        z = ws_deflate_create(&params, s.limit);
        ASSERT(z != NULL);
        round_trip(z, &s, &params, data, size, seed);
    } else {
        params.client_max_window_bits = 8 + (conf & 7);
        z = ws_deflate_create(&params, s.limit);
        ASSERT(z != NULL);
        raw_mode(z, &s, data, size, seed);
    }
    ASSERT(ws_deflate_memory(z) <= ws_deflate_memory_peak(z));
    ws_deflate_destroy(z);
    return 0;
}
