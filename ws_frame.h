/*
 * ws_frame.h - the RFC 6455 framing codec, sans-I/O.
 *
 * The codec never touches a socket, a pool or an Apache header.  The
 * caller owns all I/O: it feeds the bytes it read and gets events back,
 * and it asks for frame headers to put in front of payloads it writes.
 *
 * Reading:
 *
 *     ws_parser *p = ws_parser_create(&cfg);
 *     while (len > 0) {
 *         ws_event ev;
 *         size_t used = ws_parser_next(p, buf, len, &ev);
 *         buf += used; len -= used;
 *         if (ev.type == WS_EV_NONE) break;      // all consumed, need more
 *         ...handle ev (WS_EV_ERROR: send a close with ev.close_code)...
 *     }
 *
 * The input buffer is writable because payloads are unmasked in place:
 * event data may point into it and stays valid until the caller reuses
 * the buffer.  Data pointing into the parser's own buffers (assembled
 * messages, control payloads) stays valid until the next call.  The byte
 * just past an assembled message held by the parser is writable, so a
 * caller may NUL-terminate it in place (it must do the same for its own
 * input buffer to rely on this for messages delivered in place).
 *
 * Events come strictly in wire order, so every valid frame that precedes
 * a protocol error is reported before the WS_EV_ERROR for it.
 */
#ifndef WS_FRAME_H
#define WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT         = 0x1,
    WS_OP_BINARY       = 0x2,
    WS_OP_CLOSE        = 0x8,
    WS_OP_PING         = 0x9,
    WS_OP_PONG         = 0xA
};

/* Close codes of RFC 6455 section 7.4.1 and the IANA registry. */
enum ws_close_code {
    WS_CLOSE_NORMAL          = 1000,
    WS_CLOSE_GOING_AWAY      = 1001,
    WS_CLOSE_PROTOCOL_ERROR  = 1002,
    WS_CLOSE_UNSUPPORTED     = 1003,
    WS_CLOSE_NO_STATUS       = 1005,  /* never on the wire */
    WS_CLOSE_ABNORMAL        = 1006,  /* never on the wire */
    WS_CLOSE_INVALID_DATA    = 1007,
    WS_CLOSE_POLICY          = 1008,
    WS_CLOSE_TOO_BIG         = 1009,
    WS_CLOSE_EXTENSION       = 1010,
    WS_CLOSE_INTERNAL_ERROR  = 1011,
    WS_CLOSE_SERVICE_RESTART = 1012,
    WS_CLOSE_TRY_AGAIN_LATER = 1013,
    WS_CLOSE_BAD_GATEWAY     = 1014,
    WS_CLOSE_TLS_HANDSHAKE   = 1015   /* never on the wire */
};

#define WS_MAX_HEADER_SIZE   14   /* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_MAX_CONTROL_SIZE  125

/* Frame header bits, as they sit in the first byte. */
#define WS_FIN   0x80
#define WS_RSV1  0x40
#define WS_RSV2  0x20
#define WS_RSV3  0x10

typedef enum ws_role {
    WS_ROLE_SERVER = 0,   /* peer is a client: every frame must be masked */
    WS_ROLE_CLIENT = 1    /* peer is a server: no frame may be masked */
} ws_role;

typedef struct ws_parser_config {
    ws_role  role;
    /* Largest message payload accepted, in bytes (inclusive); a message
     * whose frames announce more fails with 1009 before its payload is
     * read.  0 means no limit (only sensible when assemble is 0). */
    uint64_t max_message_size;
    /* 1: data messages are collected and delivered whole as WS_EV_MESSAGE.
     * 0: data payload is delivered as WS_EV_CHUNK events as it arrives. */
    int      assemble;
    /* 1: RSV1 is allowed on the first frame of a data message (an
     * extension such as permessage-deflate was negotiated).  Such messages
     * are flagged 'compressed' and their text is not UTF-8 checked here:
     * the caller checks it after decoding. */
    int      allow_rsv1;
    /* 1: accept close codes that the registry marks reserved but that an
     * endpoint is not forbidden to send (1004, 1016-2999). */
    int      allow_reserved_close_codes;
    /* 1: no WS_EV_FRAME events; a header goes straight on to its payload
     * in the same call (a caller that ignores them saves a call and a
     * held byte per frame). */
    int      quiet_frames;
} ws_parser_config;

typedef enum ws_event_type {
    WS_EV_NONE = 0,   /* every byte given was consumed; feed more */
    WS_EV_FRAME,      /* a frame header was parsed (informational) */
    WS_EV_CHUNK,      /* some payload of a data message (assemble == 0) */
    WS_EV_MESSAGE,    /* a whole data message (assemble == 1) */
    WS_EV_PING,
    WS_EV_PONG,
    WS_EV_CLOSE,      /* a valid close frame; close_code, data = reason */
    WS_EV_ERROR       /* the peer broke the protocol: fail with close_code */
} ws_event_type;

typedef struct ws_event {
    ws_event_type type;
    int       opcode;      /* frame opcode (FRAME), message opcode (CHUNK,
                              MESSAGE: WS_OP_TEXT or WS_OP_BINARY) */
    int       fin;         /* FRAME: FIN bit */
    int       rsv;         /* FRAME: RSV bits as in the first byte */
    int       compressed;  /* CHUNK, MESSAGE: the message had RSV1 set */
    int       first;       /* CHUNK: first chunk of the message */
    int       last;        /* CHUNK: final chunk of the message */
    uint64_t  frame_length;/* FRAME: payload length of the frame */
    uint8_t  *data;        /* payload (CHUNK, MESSAGE, PING, PONG), or the
                              close reason (CLOSE) */
    size_t    len;
    uint16_t  close_code;  /* CLOSE: the code received, 1005 when absent;
                              ERROR: the code to send */
    const char *reason;    /* ERROR: what went wrong, a static string */
} ws_event;

typedef struct ws_parser ws_parser;

/* Returns NULL when out of memory. */
ws_parser *ws_parser_create(const ws_parser_config *cfg);
void       ws_parser_destroy(ws_parser *p);

/*
 * Consumes bytes from in[0..len) until one event is complete or the input
 * is exhausted; returns the number of bytes consumed and fills *ev.
 * ev->type == WS_EV_NONE means all len bytes were consumed and no event
 * is ready.  After a WS_EV_ERROR or a WS_EV_CLOSE the parser consumes
 * nothing more and keeps returning that terminal state (an ERROR, or a
 * NONE with 0 consumed after a CLOSE).
 */
size_t ws_parser_next(ws_parser *p, uint8_t *in, size_t len, ws_event *ev);

/* Bytes held in the parser's message buffer (for memory accounting). */
size_t ws_parser_buffered(const ws_parser *p);

/* ---- encoding ---- */

/*
 * Writes a frame header into out (at least WS_MAX_HEADER_SIZE bytes) and
 * returns its length.  flags is WS_FIN and/or WS_RSV1..3; mask is NULL for
 * an unmasked frame (a server's) or 4 bytes of masking key (a client's;
 * the caller masks the payload with ws_mask).
 */
size_t ws_frame_header(uint8_t *out, int opcode, int flags,
                       uint64_t payload_len, const uint8_t *mask);

/*
 * Builds a close frame payload: the code in network order and as much of
 * reason as fits in 123 bytes without cutting a UTF-8 sequence.  code 0
 * means no code (empty payload).  out needs WS_MAX_CONTROL_SIZE bytes.
 */
size_t ws_close_payload(uint8_t *out, uint16_t code,
                        const char *reason, size_t reason_len);

/*
 * XORs data with the 4-byte key, starting at key position (offset % 4).
 * Masking and unmasking are the same operation.
 */
void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset);

/* 1 when a peer may send this close code (allow_reserved as above). */
int ws_close_code_valid(unsigned code, int allow_reserved);

/* ---- UTF-8 ---- */

/*
 * Incremental UTF-8 validation (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF).  State starts at 0
 * (WS_UTF8_ACCEPT).  ws_utf8_feed returns WS_UTF8_REJECT as soon as a
 * sequence cannot be completed validly, whatever follows; otherwise the
 * new state.  A text message is valid when its final state is
 * WS_UTF8_ACCEPT.
 */
#define WS_UTF8_ACCEPT 0u
#define WS_UTF8_REJECT 1u
typedef uint32_t ws_utf8_state;
ws_utf8_state ws_utf8_feed(ws_utf8_state st, const uint8_t *s, size_t n);

/* A string naming an opcode, for logs. */
const char *ws_opcode_name(int opcode);

#ifdef __cplusplus
}
#endif
#endif /* WS_FRAME_H */
