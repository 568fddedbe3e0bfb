/*
 * t/fuzz_deflate_fast.c - libFuzzer target for ws_deflate_fast.c, the
 * encoder of whole messages without context takeover.
 *
 *   make fuzz                                (all targets; see the Makefile)
 *   t/fuzz_deflate_fast_replay file-or-dir... (make unit, without libFuzzer)
 *
 * Input: byte 0 picks the window (9 + byte % 7 bits), the rest is the
 * message (up to WS_DEFLATE_FAST_MAX bytes; more is cut).  The encoder
 * writes into a buffer of exactly ws_deflate_fast_bound bytes, with a
 * workspace of exactly ws_deflate_fast_workspace bytes full of garbage
 * (ASan sees any write past them).  Then zlib inflates the output plus
 * 00 00 ff ff with exactly that window, one output byte per call, so
 * that a match reaching beyond the window fails: it must give back the
 * message, use all the input and stop between blocks, in no final block.
 */
#include "../ws_deflate_int.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FUZZ_NAME "fuzz_deflate_fast"
#include "fuzz.h"

static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };

static void check_inflates_to(const uint8_t *payload, size_t len, int bits,
                              const uint8_t *msg, size_t n)
{
    uint8_t *wire = malloc(len + sizeof tail), *back = malloc(n + 1);
    z_stream zs;
    size_t got = 0;
    int rc = Z_OK;

    ASSERT(wire != NULL && back != NULL);
    memcpy(wire, payload, len);
    memcpy(wire + len, tail, sizeof tail);
    memset(&zs, 0, sizeof zs);
    ASSERT(inflateInit2(&zs, -bits) == Z_OK);
    zs.next_in = wire;
    zs.avail_in = (uInt)(len + sizeof tail);
    while (rc == Z_OK && zs.avail_in > 0 && got <= n) {
        zs.next_out = back + got;
        zs.avail_out = 1;
        rc = inflate(&zs, Z_SYNC_FLUSH);
        got = (size_t)(zs.next_out - back);
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR)
        FAIL("inflate: %d (%s) after %zu of %zu bytes, window bits %d", rc,
             zs.msg ? zs.msg : "-", got, n, bits);
    ASSERT(zs.avail_in == 0);
    ASSERT(got == n && memcmp(back, msg, n) == 0);
    ASSERT(zs.data_type & 128);          /* between blocks */
    ASSERT(!(zs.data_type & 64));        /* never in a final block */
    inflateEnd(&zs);
    free(wire);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n, bound, len;
    uint8_t *msg, *out;
    void *workspace;
    int bits;

    if (size < 1)
        return 0;
    bits = 9 + data[0] % 7;
    n = size - 1 < WS_DEFLATE_FAST_MAX ? size - 1 : WS_DEFLATE_FAST_MAX;
    msg = malloc(n);                     /* exactly the message's size */
    bound = ws_deflate_fast_bound(n);
    out = malloc(bound);
    workspace = malloc(ws_deflate_fast_workspace(n));
    ASSERT(msg != NULL && out != NULL && workspace != NULL);
    memcpy(msg, data + 1, n);
    memset(workspace, data[0], ws_deflate_fast_workspace(n));
    len = ws_deflate_fast_compress(msg, n, bits, workspace, out);
    ASSERT(len > 0 && len + 8 <= bound);       /* 8: the writer's slack */
    check_inflates_to(out, len, bits, msg, n);
    free(workspace);
    free(out);
    free(msg);
    return 0;
}
