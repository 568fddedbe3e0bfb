/*
 * ws_frame.c - the RFC 6455 framing codec, sans-I/O (see ws_frame.h).
 *
 * The parser is a byte-driven state machine with two reading states:
 * HEADER collects the 2..14 header bytes and checks each one as soon as
 * it arrives, PAYLOAD hands the frame's payload out (or collects it).
 * Everything is checked at the earliest byte that decides it, so a peer
 * that breaks the protocol is failed before we read (or buffer) anything
 * that follows the offending byte.
 *
 * One event per call, and a caller that stops calling once its input is
 * used up (the loop in ws_frame.h does) must not leave work stranded.
 * Two things would be: the payload event of a frame with an empty
 * payload, which is ready as soon as its FRAME event is, and the release
 * of a large assembly buffer after a MESSAGE.  So a FRAME event,
 * and a MESSAGE delivered from the assembly buffer, are returned with the
 * last byte that completed them still counted as unconsumed: the caller
 * has to call again, and that call skips the byte (it has been dealt
 * with) and goes on.  See 'held' below.
 */
#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* An assembly buffer bigger than this is freed once its message has been
 * delivered, so an idle connection does not keep the memory of the
 * largest message it ever received. */
#define BUFFER_KEEP_MAX   (64 * 1024)
#define BUFFER_FIRST_SIZE 4096

enum parser_state { ST_HEADER, ST_PAYLOAD, ST_CLOSED, ST_FAILED };

struct ws_parser {
    ws_parser_config cfg;
    enum parser_state state;
    /* The first byte of the next input was already processed when the
     * previous event was returned (see the top of this file). */
    int held;

    /* The frame header being read and what it announced. */
    uint8_t  hdr[WS_MAX_HEADER_SIZE];
    unsigned hdr_len;       /* bytes of it read so far */
    unsigned hdr_need;      /* its size, once the second byte told us */
    unsigned len_end;       /* header size up to the end of the length */
    int      opcode, fin, rsv, masked;
    uint8_t  mask[4];
    uint64_t frame_len, frame_done;

    /* The data message that data frames belong to. */
    int      in_message;    /* a fragmented message awaits its FIN frame */
    int      msg_opcode;
    int      msg_compressed;
    int      msg_check_utf8;
    int      msg_first;     /* no CHUNK of it delivered yet */
    ws_utf8_state utf8;
    uint64_t msg_total;     /* payload announced by its frames so far */

    /* Assembly buffer (assemble == 1). */
    uint8_t *buf;
    size_t   buf_len, buf_cap;
    int      buf_delivered; /* holds a delivered message until next call */

    /* Control payload; one spare byte to NUL-terminate close reasons. */
    uint8_t  ctl[WS_MAX_CONTROL_SIZE + 1];

    uint16_t    err_code;
    const char *err_reason;
};

/* ---------------------------------------------------------------- UTF-8 */

/*
 * The validator's state is ACCEPT (0), REJECT (1) or a pending multibyte
 * sequence: how many continuation bytes are still due (bits 3-4) and the
 * range the next one must lie in (bits 0-2).  Only the first continuation
 * byte ever has a narrowed range; that is where overlong forms (E0, F0),
 * surrogates (ED) and code points above U+10FFFF (F4) become impossible,
 * so they are rejected right at that byte.
 */
enum next_range {
    NEXT_80_BF,   /* any continuation byte */
    NEXT_A0_BF,   /* after E0: lower would be an overlong 3-byte form */
    NEXT_80_9F,   /* after ED: higher would be a surrogate */
    NEXT_90_BF,   /* after F0: lower would be an overlong 4-byte form */
    NEXT_80_8F    /* after F4: higher would exceed U+10FFFF */
};

#define PENDING(due, range) ((ws_utf8_state)((due) << 3 | (range)))

/* Unused range slots have lo > hi so a corrupt state rejects. */
static const uint8_t next_lo[8] = { 0x80, 0xA0, 0x80, 0x90, 0x80, 1, 1, 1 };
static const uint8_t next_hi[8] = { 0xBF, 0xBF, 0x9F, 0xBF, 0x8F, 0, 0, 0 };

/* State after a byte seen in the ACCEPT state.  C0 and C1 could only
 * start overlong 2-byte forms, F5-FF would go above U+10FFFF. */
static const uint8_t lead_state[256] = {
    [0x80 ... 0xC1] = WS_UTF8_REJECT,
    [0xC2 ... 0xDF] = PENDING(1, NEXT_80_BF),
    [0xE0]          = PENDING(2, NEXT_A0_BF),
    [0xE1 ... 0xEC] = PENDING(2, NEXT_80_BF),
    [0xED]          = PENDING(2, NEXT_80_9F),
    [0xEE ... 0xEF] = PENDING(2, NEXT_80_BF),
    [0xF0]          = PENDING(3, NEXT_90_BF),
    [0xF1 ... 0xF3] = PENDING(3, NEXT_80_BF),
    [0xF4]          = PENDING(3, NEXT_80_8F),
    [0xF5 ... 0xFF] = WS_UTF8_REJECT,
};

static inline ws_utf8_state utf8_step(ws_utf8_state st, uint8_t b)
{
    unsigned range, due;

    if (st == WS_UTF8_ACCEPT)
        return lead_state[b];
    range = st & 7;
    due = st >> 3;
    if (b < next_lo[range] || b > next_hi[range])
        return WS_UTF8_REJECT;
    return due == 1 ? WS_UTF8_ACCEPT : PENDING(due - 1, NEXT_80_BF);
}

/* Length of the ASCII run at the start of s: text is mostly ASCII, and
 * testing the high bit of many bytes at once is what makes this fast. */
static size_t ascii_run(const uint8_t *s, size_t n)
{
    size_t i = 0;

#ifdef __SSE2__
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 48));
        __m128i any = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
        if (_mm_movemask_epi8(any))
            break;
    }
#endif
    for (; i + 16 <= n; i += 16) {
        uint64_t a, b;
        memcpy(&a, s + i, 8);
        memcpy(&b, s + i + 8, 8);
        if ((a | b) & 0x8080808080808080ull)
            break;
    }
    while (i < n && s[i] < 0x80)
        i++;
    return i;
}

/* Scanning in bulk pays off for a run of ASCII, not for the odd space
 * or digit between two multibyte characters. */
static int starts_ascii_run(const uint8_t *s, size_t n)
{
    return n >= 16 && (s[0] | s[1] | s[2] | s[3]) < 0x80;
}

static int is_continuation(uint8_t b)
{
    return (b & 0xC0) == 0x80;
}

/* Length of the valid character at s when all its bytes are there (and
 * 4 bytes may be read), else 0: the state machine then takes it byte by
 * byte, which also pins down the byte at which invalid text fails.  Same
 * tables, same rules; this only avoids the per-byte branches. */
static size_t whole_char_at(const uint8_t *s, size_t n)
{
    ws_utf8_state lead;
    unsigned range, due;
    int ok;

    if (s[0] < 0x80)
        return 1;
    lead = lead_state[s[0]];
    if (n < 4 || lead == WS_UTF8_REJECT)
        return 0;
    range = lead & 7;
    due = lead >> 3;
    ok = (s[1] >= next_lo[range]) & (s[1] <= next_hi[range])
         & ((due < 2) | is_continuation(s[2]))
         & ((due < 3) | is_continuation(s[3]));
    return ok ? due + 1 : 0;
}

/* Whether a short run is all ASCII, eight bytes per test: the common
 * small text message is checked in a handful of instructions. */
static int short_ascii(const uint8_t *s, size_t n)
{
    uint64_t any = 0, w;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        any |= w;
    }
    for (; i < n; i++)
        any |= s[i];
    return (any & 0x8080808080808080ull) == 0;
}

/* Runs s through the validator.  Returns n, or the index of the byte
 * that made the text invalid (*st is then WS_UTF8_REJECT). */
static size_t utf8_check(ws_utf8_state *st, const uint8_t *s, size_t n)
{
    ws_utf8_state state = *st;
    size_t i = 0, k;

    if (state == WS_UTF8_REJECT)
        return 0;
    if (state == WS_UTF8_ACCEPT && n <= 64 && short_ascii(s, n))
        return n;
    while (i < n) {
        if (state == WS_UTF8_ACCEPT) {
            k = starts_ascii_run(s + i, n - i) ? ascii_run(s + i, n - i)
                                               : whole_char_at(s + i, n - i);
            if (k) {
                i += k;
                continue;
            }
        }
        state = utf8_step(state, s[i]);
        if (state == WS_UTF8_REJECT)
            break;
        i++;
    }
    *st = state;
    return i;
}

ws_utf8_state ws_utf8_feed(ws_utf8_state st, const uint8_t *s, size_t n)
{
    utf8_check(&st, s, n);
    return st;
}

/* --------------------------------------------------------------- masking */

void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset)
{
    /* The key rotated so that k[i & 3] masks data[i]; repeated to fill
     * a word, it masks 8 (or 16) bytes per XOR. */
    uint8_t k[8];
    uint32_t k32;
    uint64_t kw;
    size_t i = 0;
    unsigned shift = (unsigned)(offset & 3);

    /* Rotated as a word, not byte by byte: frames of a few dozen bytes
     * are the common case, and the loop cost more than their XORs. */
    for (i = 0; i < 4; i++)
        k[i] = key[(shift + i) & 3];
    memcpy(k + 4, k, 4);
    memcpy(&k32, k, 4);
    memcpy(&kw, k, 8);
    i = 0;
#ifdef __SSE2__
    if (len >= 16) {
        __m128i kv = _mm_set1_epi32((int)k32);
        for (; i + 64 <= len; i += 64) {
            __m128i *d = (__m128i *)(void *)(data + i);
            __m128i a = _mm_loadu_si128(d), b = _mm_loadu_si128(d + 1);
            __m128i c = _mm_loadu_si128(d + 2), e = _mm_loadu_si128(d + 3);
            _mm_storeu_si128(d, _mm_xor_si128(a, kv));
            _mm_storeu_si128(d + 1, _mm_xor_si128(b, kv));
            _mm_storeu_si128(d + 2, _mm_xor_si128(c, kv));
            _mm_storeu_si128(d + 3, _mm_xor_si128(e, kv));
        }
        for (; i + 16 <= len; i += 16) {
            __m128i *d = (__m128i *)(void *)(data + i);
            _mm_storeu_si128(d, _mm_xor_si128(_mm_loadu_si128(d), kv));
        }
    }
#endif
    (void)k32;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        w ^= kw;
        memcpy(data + i, &w, 8);
    }
    for (; i < len; i++)
        data[i] ^= k[i & 3];
}

/* -------------------------------------------------------------- encoding */

static void put_be(uint8_t *out, uint64_t v, unsigned bytes)
{
    while (bytes--) {
        out[bytes] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be(const uint8_t *in, unsigned bytes)
{
    uint64_t v = 0;

    while (bytes--)
        v = v << 8 | *in++;
    return v;
}

size_t ws_frame_header(uint8_t *out, int opcode, int flags,
                       uint64_t payload_len, const uint8_t *mask)
{
    uint8_t mask_bit = mask ? 0x80 : 0;
    size_t n = 2;

    out[0] = (uint8_t)((flags & 0xF0) | (opcode & 0x0F));
    if (payload_len < 126) {
        out[1] = (uint8_t)(mask_bit | payload_len);
    } else if (payload_len <= 0xFFFF) {
        out[1] = mask_bit | 126;
        put_be(out + 2, payload_len, 2);
        n = 4;
    } else {
        out[1] = mask_bit | 127;
        put_be(out + 2, payload_len, 8);
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/* Longest prefix of s (len bytes) of at most max bytes that does not end
 * inside a UTF-8 sequence. */
static size_t utf8_cut(const uint8_t *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    /* s[max] is the first byte left out: if it continues a sequence, the
     * bytes of that sequence before it must go too. */
    while (max > 0 && (s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

size_t ws_close_payload(uint8_t *out, uint16_t code,
                        const char *reason, size_t reason_len)
{
    size_t n;

    if (code == 0)
        return 0;
    put_be(out, code, 2);
    if (!reason)
        return 2;
    n = utf8_cut((const uint8_t *)reason, reason_len, WS_MAX_CONTROL_SIZE - 2);
    memcpy(out + 2, reason, n);
    return 2 + n;
}

int ws_close_code_valid(unsigned code, int allow_reserved)
{
    /* 1004-1006 and 1015 are reserved or must never be on the wire;
     * 3000-3999 are IANA registered, 4000-4999 private use. */
    if ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014))
        return 1;
    if (code >= 3000 && code <= 4999)
        return 1;
    if (!allow_reserved)
        return 0;
    return code == 1004 || (code >= 1016 && code <= 2999);
}

const char *ws_opcode_name(int opcode)
{
    switch (opcode) {
    case WS_OP_CONTINUATION: return "continuation";
    case WS_OP_TEXT:         return "text";
    case WS_OP_BINARY:       return "binary";
    case WS_OP_CLOSE:        return "close";
    case WS_OP_PING:         return "ping";
    case WS_OP_PONG:         return "pong";
    default:                 return "reserved";
    }
}

/* --------------------------------------------------------------- parser */

ws_parser *ws_parser_create(const ws_parser_config *cfg)
{
    ws_parser *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->cfg = *cfg;
    p->state = ST_HEADER;
    p->hdr_need = 2;
    return p;
}

void ws_parser_destroy(ws_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    free(p);
}

size_t ws_parser_buffered(const ws_parser *p)
{
    return p->buf_len;
}

static int is_control(int opcode)
{
    return (opcode & 0x8) != 0;
}

static void report_failure(const ws_parser *p, ws_event *ev)
{
    ev->type = WS_EV_ERROR;
    ev->close_code = p->err_code;
    ev->reason = p->err_reason;
}

/* Makes the parser fail for good; returns -1 for the caller to pass on. */
static int fail(ws_parser *p, ws_event *ev, uint16_t code, const char *why)
{
    p->state = ST_FAILED;
    p->err_code = code;
    p->err_reason = why;
    report_failure(p, ev);
    return -1;
}

/* ---- header, one byte at a time ---- */

static void start_message(ws_parser *p)
{
    p->msg_opcode = p->opcode;
    p->msg_compressed = (p->rsv & WS_RSV1) != 0;
    /* A compressed message's text can only be checked once inflated. */
    p->msg_check_utf8 = p->opcode == WS_OP_TEXT && !p->msg_compressed;
    p->msg_first = 1;
    p->utf8 = WS_UTF8_ACCEPT;
    p->msg_total = 0;
}

static int check_control_flags(ws_parser *p, ws_event *ev)
{
    if (!p->fin)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "fragmented control frame");
    if (p->rsv)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "RSV1 set on a control frame");
    return 0;
}

static int check_data_flags(ws_parser *p, ws_event *ev)
{
    int continuation = p->opcode == WS_OP_CONTINUATION;

    if (continuation && !p->in_message)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
                    "continuation frame without a message to continue");
    if (!continuation && p->in_message)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
                    "new data frame inside a fragmented message");
    if (p->rsv & WS_RSV1) {
        if (!p->cfg.allow_rsv1)
            return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
                        "RSV1 set but no extension negotiated");
        if (continuation)
            return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR,
                        "RSV1 set on a continuation frame");
    }
    if (!continuation)
        start_message(p);
    p->in_message = !p->fin;
    return 0;
}

static int check_first_byte(ws_parser *p, ws_event *ev)
{
    uint8_t b = p->hdr[0];

    p->fin = (b & WS_FIN) != 0;
    p->rsv = b & (WS_RSV1 | WS_RSV2 | WS_RSV3);
    p->opcode = b & 0x0F;
    if (p->rsv & (WS_RSV2 | WS_RSV3))
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "RSV2 or RSV3 set");
    if (p->opcode > WS_OP_PONG || (p->opcode > WS_OP_BINARY && !is_control(p->opcode)))
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "reserved opcode");
    if (is_control(p->opcode))
        return check_control_flags(p, ev);
    return check_data_flags(p, ev);
}

static int check_second_byte(ws_parser *p, ws_event *ev)
{
    unsigned len7 = p->hdr[1] & 0x7F;
    unsigned ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;

    p->masked = (p->hdr[1] & 0x80) != 0;
    if (p->cfg.role == WS_ROLE_SERVER && !p->masked)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "unmasked frame from a client");
    if (p->cfg.role == WS_ROLE_CLIENT && p->masked)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "masked frame from a server");
    if (is_control(p->opcode) && len7 > WS_MAX_CONTROL_SIZE)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes");
    /* A close payload is empty or starts with a 2-byte code. */
    if (p->opcode == WS_OP_CLOSE && len7 == 1)
        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "close frame of 1 byte");
    p->frame_len = len7;
    p->len_end = 2 + ext;
    p->hdr_need = p->len_end + (p->masked ? 4 : 0);
    return 0;
}

/* Checked on the header, before any payload: a peer announcing too much
 * is refused without us reading (let alone buffering) the excess. */
static int check_message_size(ws_parser *p, ws_event *ev)
{
    uint64_t max = p->cfg.max_message_size;

    if (max && p->frame_len > max - p->msg_total)
        return fail(p, ev, WS_CLOSE_TOO_BIG, "message over the size limit");
    p->msg_total += p->frame_len;
    return 0;
}

static int check_length(ws_parser *p, ws_event *ev)
{
    unsigned ext = p->len_end - 2;

    /* RFC 6455 5.2: the minimal number of bytes MUST be used. */
    if (ext == 2) {
        p->frame_len = get_be(p->hdr + 2, 2);
        if (p->frame_len < 126)
            return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "non-minimal 16-bit length");
    } else if (ext == 8) {
        p->frame_len = get_be(p->hdr + 2, 8);
        if (p->frame_len >> 63)
            return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "64-bit length with the top bit set");
        if (p->frame_len <= 0xFFFF)
            return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "non-minimal 64-bit length");
    }
    if (is_control(p->opcode))
        return 0;
    return check_message_size(p, ev);
}

static int check_header_byte(ws_parser *p, ws_event *ev)
{
    if (p->hdr_len == 1 && check_first_byte(p, ev) < 0)
        return -1;
    if (p->hdr_len == 2 && check_second_byte(p, ev) < 0)
        return -1;
    if (p->hdr_len == p->len_end && check_length(p, ev) < 0)
        return -1;
    return 0;
}

static void begin_payload(ws_parser *p, ws_event *ev)
{
    if (p->masked)
        memcpy(p->mask, p->hdr + p->hdr_need - 4, 4);
    p->frame_done = 0;
    p->hdr_len = 0;
    p->hdr_need = 2;
    p->state = ST_PAYLOAD;

    ev->type = WS_EV_FRAME;
    ev->opcode = p->opcode;
    ev->fin = p->fin;
    ev->rsv = p->rsv;
    ev->frame_length = p->frame_len;
}

/* A header that starts at the beginning of the input (nearly always):
 * the same checks, in the same order, with the same bytes consumed on
 * failure, without the byte-at-a-time loop when the whole header is
 * there.  A header cut short returns after its first two bytes (checked),
 * for read_header to go on byte by byte. */
static size_t read_header_at_start(ws_parser *p, const uint8_t *in,
                                   size_t len, ws_event *ev)
{
    size_t need;

    p->hdr[0] = in[0];
    p->hdr_len = 1;
    if (check_first_byte(p, ev) < 0)
        return 1;
    p->hdr[1] = in[1];
    p->hdr_len = 2;
    if (check_second_byte(p, ev) < 0)
        return 2;
    if (p->len_end == 2 && check_length(p, ev) < 0)
        return 2;
    need = p->hdr_need;
    if (len < need)
        return 2;
    memcpy(p->hdr + 2, in + 2, need - 2);
    p->hdr_len = (unsigned)need;
    if (p->len_end > 2 && check_length(p, ev) < 0)
        return p->len_end;
    begin_payload(p, ev);
    return need;
}

static size_t read_header(ws_parser *p, const uint8_t *in, size_t len,
                          ws_event *ev)
{
    size_t used = 0;

    if (p->hdr_len == 0 && len >= 2) {
        used = read_header_at_start(p, in, len, ev);
        if (ev->type != WS_EV_NONE)
            return used;          /* a failure, or the whole header */
    }
    while (used < len && p->hdr_len < p->hdr_need) {
        p->hdr[p->hdr_len++] = in[used++];
        if (check_header_byte(p, ev) < 0)
            return used;
    }
    if (p->hdr_len == p->hdr_need)
        begin_payload(p, ev);
    return used;
}

/* ---- payload ---- */

/* How many of the len input bytes belong to the current frame. */
static size_t frame_bytes(const ws_parser *p, size_t len)
{
    uint64_t left = p->frame_len - p->frame_done;

    return left < len ? (size_t)left : len;
}

/* Unmasks the next n payload bytes of the frame, wherever they are. */
static void unmask(const ws_parser *p, uint8_t *data, size_t n)
{
    if (p->masked)
        ws_mask(data, n, p->mask, (size_t)(p->frame_done & 3));
}

/* Returns n, or the index of the byte that breaks the message's text. */
static size_t check_text(ws_parser *p, const uint8_t *data, size_t n)
{
    if (!p->msg_check_utf8)
        return n;
    return utf8_check(&p->utf8, data, n);
}

/* Fails on the byte at index bad; returns the bytes consumed up to it. */
static size_t fail_text(ws_parser *p, ws_event *ev, size_t bad)
{
    fail(p, ev, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in a text message");
    return bad + 1;
}

/* Called when the final frame of a message is complete. */
static int check_text_end(ws_parser *p, ws_event *ev)
{
    if (p->msg_check_utf8 && p->utf8 != WS_UTF8_ACCEPT)
        return fail(p, ev, WS_CLOSE_INVALID_DATA,
                    "text message ends inside a UTF-8 sequence");
    return 0;
}

static void deliver_message(const ws_parser *p, ws_event *ev,
                            uint8_t *data, size_t len)
{
    ev->type = WS_EV_MESSAGE;
    ev->opcode = p->msg_opcode;
    ev->compressed = p->msg_compressed;
    ev->data = data;
    ev->len = len;
}

static void deliver_close(ws_parser *p, ws_event *ev, size_t len)
{
    unsigned code = WS_CLOSE_NO_STATUS;
    const uint8_t *reason = p->ctl + 2;

    if (len >= 2) {
        code = (unsigned)get_be(p->ctl, 2);
        if (!ws_close_code_valid(code, p->cfg.allow_reserved_close_codes)) {
            fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, "invalid close code");
            return;
        }
        if (ws_utf8_feed(WS_UTF8_ACCEPT, reason, len - 2) != WS_UTF8_ACCEPT) {
            fail(p, ev, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
            return;
        }
    }
    p->state = ST_CLOSED;
    ev->type = WS_EV_CLOSE;
    ev->close_code = (uint16_t)code;
    ev->data = len >= 2 ? p->ctl + 2 : p->ctl;
    ev->len = len >= 2 ? len - 2 : 0;
}

static void deliver_control(ws_parser *p, ws_event *ev)
{
    size_t len = (size_t)p->frame_len;

    p->ctl[len] = '\0';
    p->state = ST_HEADER;
    if (p->opcode == WS_OP_CLOSE) {
        deliver_close(p, ev, len);
        return;
    }
    ev->type = p->opcode == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
    ev->data = p->ctl;
    ev->len = len;
}

/* Control payloads are collected whole: they are small, may arrive in
 * pieces, and their users (a pong, a close reply) want them in one. */
static size_t read_control(ws_parser *p, const uint8_t *in, size_t len,
                           ws_event *ev)
{
    size_t n = frame_bytes(p, len);
    uint8_t *dst = p->ctl + p->frame_done;

    memcpy(dst, in, n);
    unmask(p, dst, n);
    p->frame_done += n;
    if (p->frame_done == p->frame_len)
        deliver_control(p, ev);
    return n;
}

static size_t read_chunk(ws_parser *p, uint8_t *in, size_t len, ws_event *ev)
{
    size_t n = frame_bytes(p, len);
    size_t good;
    int last;

    unmask(p, in, n);
    good = check_text(p, in, n);
    if (good < n)
        return fail_text(p, ev, good);
    p->frame_done += n;
    if (p->frame_done < p->frame_len) {
        last = 0;
    } else {
        p->state = ST_HEADER;
        last = p->fin;
        if (last && check_text_end(p, ev) < 0)
            return n;
    }
    /* An empty frame in the middle of a message has nothing to tell; one
     * that starts or ends it gives an empty chunk to mark that. */
    if (n == 0 && !p->msg_first && !last)
        return 0;
    ev->type = WS_EV_CHUNK;
    ev->opcode = p->msg_opcode;
    ev->compressed = p->msg_compressed;
    ev->first = p->msg_first;
    ev->last = last;
    ev->data = in;
    ev->len = n;
    p->msg_first = 0;
    return n;
}

/* Zero-copy: a message of one frame whose payload is all in the input
 * is unmasked where it lies and handed out from there. */
static int is_whole_in_input(const ws_parser *p, size_t len)
{
    return p->fin && p->opcode != WS_OP_CONTINUATION
        && p->frame_done == 0 && p->frame_len <= len;
}

static size_t deliver_in_place(ws_parser *p, uint8_t *in, ws_event *ev)
{
    size_t n = (size_t)p->frame_len;
    size_t good;

    unmask(p, in, n);
    good = check_text(p, in, n);
    if (good < n)
        return fail_text(p, ev, good);
    p->frame_done = n;
    p->state = ST_HEADER;
    if (check_text_end(p, ev) == 0)
        deliver_message(p, ev, in, n);
    return n;
}

/* Grows the buffer geometrically, so a message that trickles in costs a
 * logarithmic number of reallocs, but never past the size limit: the
 * limit is what the administrator agreed a connection may hold. */
static int reserve(ws_parser *p, size_t n)
{
    uint64_t max = p->cfg.max_message_size;
    size_t need, cap;
    uint8_t *grown;

    if (n <= p->buf_cap - p->buf_len)
        return 0;
    if (n > SIZE_MAX - p->buf_len)
        return -1;
    need = p->buf_len + n;
    cap = p->buf_cap ? p->buf_cap : BUFFER_FIRST_SIZE;
    while (cap < need)
        cap = cap <= SIZE_MAX / 2 ? cap * 2 : need;
    if (max && cap > max)
        cap = (size_t)max;   /* need <= max: check_message_size saw to it */
    /* One byte more than the capacity: a caller may NUL-terminate a
     * delivered message in place (ws_frame.h). */
    grown = realloc(p->buf, cap + 1);
    if (!grown)
        return -1;
    p->buf = grown;
    p->buf_cap = cap;
    return 0;
}

static size_t read_into_buffer(ws_parser *p, const uint8_t *in, size_t len,
                               ws_event *ev)
{
    size_t n = frame_bytes(p, len);
    size_t good;

    if (n > 0) {
        uint8_t *dst;

        if (reserve(p, n) < 0) {
            fail(p, ev, WS_CLOSE_TOO_BIG, "out of memory for a message");
            return 0;
        }
        dst = p->buf + p->buf_len;
        memcpy(dst, in, n);
        unmask(p, dst, n);
        good = check_text(p, dst, n);
        if (good < n)
            return fail_text(p, ev, good);
        p->buf_len += n;
        p->frame_done += n;
    }
    if (p->frame_done < p->frame_len)
        return n;
    p->state = ST_HEADER;
    if (!p->fin || check_text_end(p, ev) < 0)
        return n;
    /* An empty message may never have needed a buffer. */
    deliver_message(p, ev, p->buf ? p->buf : p->ctl, p->buf_len);
    p->buf_delivered = 1;
    return n;
}

static size_t read_payload(ws_parser *p, uint8_t *in, size_t len,
                           ws_event *ev)
{
    if (is_control(p->opcode))
        return read_control(p, in, len, ev);
    if (!p->cfg.assemble)
        return read_chunk(p, in, len, ev);
    if (is_whole_in_input(p, len))
        return deliver_in_place(p, in, ev);
    return read_into_buffer(p, in, len, ev);
}

/* The caller has had the delivered message: reuse or give back memory. */
static void release_delivered(ws_parser *p)
{
    if (!p->buf_delivered)
        return;
    p->buf_delivered = 0;
    p->buf_len = 0;
    if (p->buf_cap > BUFFER_KEEP_MAX) {
        free(p->buf);
        p->buf = NULL;
        p->buf_cap = 0;
    }
}

/* Events after which something may be pending that needs another call
 * even if no input is left (see the top of this file). */
static int needs_another_call(const ws_parser *p, const ws_event *ev)
{
    return ev->type == WS_EV_FRAME || p->buf_delivered;
}

size_t ws_parser_next(ws_parser *p, uint8_t *in, size_t len, ws_event *ev)
{
    size_t used = 0;

    memset(ev, 0, sizeof *ev);
    release_delivered(p);
    if (p->state == ST_FAILED) {
        report_failure(p, ev);
        return 0;
    }
    if (p->state == ST_CLOSED || len == 0)
        return 0;
    if (p->held) {
        p->held = 0;
        used = 1;
    }
    /* CLOSED and FAILED are only ever entered with an event, which ends
     * the loop: HEADER and PAYLOAD are the only states seen in it. */
    while (ev->type == WS_EV_NONE) {
        if (p->state == ST_HEADER) {
            if (used == len)
                break;
            used += read_header(p, in + used, len - used, ev);
            if (ev->type == WS_EV_FRAME && p->cfg.quiet_frames)
                ev->type = WS_EV_NONE;
        } else {
            if (used == len && p->frame_done < p->frame_len)
                break;
            used += read_payload(p, in + used, len - used, ev);
        }
    }
    if (needs_another_call(p, ev) && used > 0) {
        p->held = 1;
        used--;
    }
    return used;
}
