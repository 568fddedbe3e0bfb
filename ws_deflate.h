/*
 * ws_deflate.h - permessage-deflate (RFC 7692), server side, sans-I/O.
 *
 * No socket, no pool, no Apache header: only zlib.  The caller owns I/O
 * and framing (ws_frame.h); this module negotiates the extension and
 * turns message payloads into compressed payloads and back.
 *
 * Typical use by a server connection:
 *
 *     // 1. handshake: the client's Sec-WebSocket-Extensions lines joined
 *     //    with ", " (NULL or "" when absent)
 *     ws_deflate_negotiation neg;
 *     if (ws_deflate_negotiate(header, &policy, &neg) == WS_DEFLATE_ACCEPTED)
 *         add "Sec-WebSocket-Extensions: <neg.response>" to the 101;
 *
 *     // 2. after the 101 (allow RSV1 in the frame parser)
 *     ws_deflate_ctx *z = ws_deflate_create(&neg.params, max_message_size);
 *
 *     // 3. for each payload chunk of a message that arrived with RSV1
 *     st = ws_deflate_inflate(z, data, len, is_last_chunk, sink, baton);
 *     if (st != WS_DEFLATE_OK) close with ws_deflate_close_code(st);
 *
 *     // 4. to send a message
 *     if (ws_deflate_should_compress(z, len)) {
 *         ws_deflate_buf out = {0};
 *         ws_deflate_compress(z, msg, len, &out);  // frame it with RSV1
 *     } else send it as it is, without RSV1;
 *
 *     ws_deflate_destroy(z);
 *
 * The two directions of a context share no mutable state: one thread
 * may inflate while another compresses, as long as each direction is
 * used by one thread at a time.  The memory figures read both, so read
 * them from a thread that owns both directions (or accept a stale value).
 */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- negotiation ---- */

/* What the server is willing to do; ws_deflate_policy_default fills it. */
typedef struct ws_deflate_policy {
    int    enabled;                    /* 0: never negotiate */
    /* Largest window the server compresses with, 8..15 (default 15).
     * zlib cannot deflate raw streams with a 256-byte window, so 8 acts
     * as 9. */
    int    server_max_window_bits;
    int    server_no_context_takeover; /* 1: reset our compressor per message */
    int    client_no_context_takeover; /* 1: ask the client to do the same */
    /* Window the client is asked to compress with, 8..15, or 0 for no
     * request.  Only sent when the client offered client_max_window_bits.
     * 8 is legal but zlib-based clients cannot honour it. */
    int    client_max_window_bits;
    int    level;                      /* zlib level 0..9 or -1 (default) */
    int    mem_level;                  /* zlib memLevel 1..9 (default 8) */
    size_t min_size;                   /* send smaller messages uncompressed */
} ws_deflate_policy;

/* The agreed parameters, from the server's point of view. */
typedef struct ws_deflate_params {
    int    server_max_window_bits;     /* our deflate window, 9..15 */
    int    client_max_window_bits;     /* peer's window, 8..15 (15 if not
                                          negotiated) */
    int    server_no_context_takeover;
    int    client_no_context_takeover;
    int    level;
    int    mem_level;
    size_t min_size;
} ws_deflate_params;

/* Long enough for every response ws_deflate_negotiate can build. */
#define WS_DEFLATE_RESPONSE_MAX 160

typedef enum ws_deflate_result {
    WS_DEFLATE_ACCEPTED = 0,   /* params and response are filled */
    WS_DEFLATE_NOT_OFFERED,    /* no permessage-deflate offer, or disabled */
    WS_DEFLATE_DECLINED,       /* offers present, none acceptable */
    WS_DEFLATE_MALFORMED       /* header syntax broken: ignore it */
} ws_deflate_result;

typedef struct ws_deflate_negotiation {
    ws_deflate_params params;
    /* Value of the Sec-WebSocket-Extensions response header, NUL
     * terminated, e.g. "permessage-deflate; client_max_window_bits=10". */
    char response[WS_DEFLATE_RESPONSE_MAX];
} ws_deflate_negotiation;

void ws_deflate_policy_default(ws_deflate_policy *policy);

/*
 * Picks the first acceptable permessage-deflate offer of the client's
 * Sec-WebSocket-Extensions value (NULL means absent).  A malformed header
 * or one without an acceptable offer means: answer without the extension,
 * the handshake goes on.  neg is filled only on WS_DEFLATE_ACCEPTED.
 *
 * An offer is unacceptable with an unknown or repeated parameter, a
 * value where none belongs (or none where one is needed), a window
 * value other than 8..15 written plainly (quoted is fine), and with
 * server_max_window_bits=8, which zlib cannot honour.  The response
 * echoes server_no_context_takeover and client_no_context_takeover when
 * offered or wanted by the policy, names the server window when the
 * client capped it or the policy lowers it, and grants the client the
 * smaller of its own client_max_window_bits value and the policy's
 * (below 15 only, and never when the client did not offer the parameter).
 */
ws_deflate_result ws_deflate_negotiate(const char *header,
                                       const ws_deflate_policy *policy,
                                       ws_deflate_negotiation *neg);

/* A string naming a result, for logs. */
const char *ws_deflate_result_name(ws_deflate_result r);

/* ---- per-connection context ---- */

typedef enum ws_deflate_status {
    WS_DEFLATE_OK = 0,
    WS_DEFLATE_TOO_BIG,      /* inflated message exceeds the limit: 1009 */
    WS_DEFLATE_DATA_ERROR,   /* corrupt or truncated compressed data */
    WS_DEFLATE_SINK_ERROR,   /* the sink returned nonzero */
    WS_DEFLATE_NOMEM,        /* out of memory */
    WS_DEFLATE_ERROR         /* misuse or unexpected zlib failure */
} ws_deflate_status;

typedef struct ws_deflate_ctx ws_deflate_ctx;

/*
 * max_message_size: largest inflated message accepted, in bytes
 * (inclusive); 0 means no limit.  Returns NULL when out of memory.  No
 * zlib memory is allocated until a message is compressed or inflated.
 */
ws_deflate_ctx *ws_deflate_create(const ws_deflate_params *params,
                                  uint64_t max_message_size);
void ws_deflate_destroy(ws_deflate_ctx *ctx);

/* Bytes zlib holds for this context now, and the sum of the most each
 * direction ever held (block headers of the allocator not included). */
size_t ws_deflate_memory(const ws_deflate_ctx *ctx);
size_t ws_deflate_memory_peak(const ws_deflate_ctx *ctx);

/* The parameters the context was made with. */
const ws_deflate_params *ws_deflate_params_of(const ws_deflate_ctx *ctx);

/* The close code a caller sends for a failed status (1009, 1007, 1011). */
uint16_t ws_deflate_close_code(ws_deflate_status st);
const char *ws_deflate_status_name(ws_deflate_status st);

/* ---- decompression ---- */

/* Receives inflated bytes; nonzero stops inflating (WS_DEFLATE_SINK_ERROR). */
typedef int (*ws_deflate_sink)(void *baton, const uint8_t *p, size_t n);

/*
 * Inflates one chunk of the payload of a compressed message, in wire
 * order, and hands the output to sink as it is produced, in pieces of
 * at most 16 KiB.  final = 1 on the message's last chunk (len may be 0):
 * the message is then complete and the next call starts a new message.
 * The sink never receives more than max_message_size bytes per message:
 * the excess is detected while inflating, after at most one more piece
 * has been decoded into a stack buffer.  A message with an empty payload
 * is accepted as an empty message.  A status other than OK is sticky:
 * inflating keeps failing (compressing still works; it fails the same
 * way on its own errors).
 */
ws_deflate_status ws_deflate_inflate(ws_deflate_ctx *ctx,
                                     const uint8_t *in, size_t len, int final,
                                     ws_deflate_sink sink, void *baton);

/* ---- compression ---- */

/* A growable byte buffer (malloc/realloc); zero it before first use. */
typedef struct ws_deflate_buf {
    uint8_t *data;
    size_t   len;
    size_t   cap;
} ws_deflate_buf;

void ws_deflate_buf_free(ws_deflate_buf *buf);
/* A sink appending to a ws_deflate_buf (the baton); nonzero on ENOMEM. */
int ws_deflate_buf_sink(void *baton, const uint8_t *p, size_t n);

/* 1 when a message of len bytes is worth compressing (len >= min_size). */
int ws_deflate_should_compress(const ws_deflate_ctx *ctx, size_t len);

/*
 * Compresses a whole message and appends the payload to send (RSV1 set)
 * to out.  An empty message compresses to the single byte 0x00.
 */
ws_deflate_status ws_deflate_compress(ws_deflate_ctx *ctx,
                                      const uint8_t *in, size_t len,
                                      ws_deflate_buf *out);

/*
 * The same, one piece at a time, for a message sent as several frames
 * or produced incrementally.  Appends what zlib has ready to out, which
 * may be nothing until final = 1 (non-final pieces are not flushed, so
 * compression is as good as in one piece).  The caller may send out's
 * bytes as soon as it likes; the first frame of the message has RSV1.
 */
ws_deflate_status ws_deflate_compress_chunk(ws_deflate_ctx *ctx,
                                            const uint8_t *in, size_t len,
                                            int final, ws_deflate_buf *out);

#ifdef __cplusplus
}
#endif
#endif /* WS_DEFLATE_H */
