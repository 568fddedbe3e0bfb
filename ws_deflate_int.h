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

#endif /* WS_DEFLATE_INT_H */
