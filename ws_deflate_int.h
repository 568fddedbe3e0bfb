/*
 * ws_deflate_int.h - what the parts of permessage-deflate share
 * (ws_deflate.c, ws_deflate_negotiate.c, ws_deflate_fast.c); not for
 * callers, who use ws_deflate.h.
 */
#ifndef WS_DEFLATE_INT_H
#define WS_DEFLATE_INT_H

#include "ws_deflate.h"

#define WS_DEFLATE_MIN_ZLIB_BITS 9      /* raw deflate refuses 8; see policy */
#define WS_DEFLATE_MAX_BITS      15

static inline int ws_deflate_clamp(int v, int lo, int hi, int fallback)
{
    return (v < lo || v > hi) ? fallback : v;
}

static inline int ws_deflate_min(int a, int b)
{
    return a < b ? a : b;
}

/*
 * ws_deflate_fast.c: our own encoder for whole messages of 1 to
 * WS_DEFLATE_FAST_MAX bytes, without context takeover.  Writes the
 * payload of a compressed message (ending like a zlib sync flush, its
 * last 4 bytes 00 00 ff ff left out) to out, which has room for
 * ws_deflate_fast_bound(len) bytes, and returns its length.  No match
 * reaches further back than 2^window_bits - 262 bytes (zlib's reach).
 * workspace: ws_deflate_fast_workspace(len) bytes, any content.
 */
#define WS_DEFLATE_FAST_MAX ((size_t)64 << 10)
size_t ws_deflate_fast_workspace(size_t len);
size_t ws_deflate_fast_bound(size_t len);
size_t ws_deflate_fast_compress(const uint8_t *in, size_t len,
                                int window_bits, void *workspace,
                                uint8_t *out);

/* For tests: the code lengths the encoder gives symbols of frequencies
 * freq[0..n) (n <= 286, frequencies below 2^23), none over max_bits. */
void ws_deflate_fast_code_lengths(const uint32_t *freq, unsigned n,
                                  unsigned max_bits, uint8_t *lens);

/* For tests and benchmarks: whole messages up to max bytes (at most
 * WS_DEFLATE_FAST_MAX; 0: none) go to ws_deflate_fast.c, when the context
 * compresses at level 1 without context takeover. */
void ws_deflate_set_fast_max(ws_deflate_ctx *ctx, size_t max);

#endif /* WS_DEFLATE_INT_H */
