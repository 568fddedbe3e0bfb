/*
 * t/test_frame.c - unit tests of the framing codec (ws_frame.c).
 *
 *   gcc -std=gnu99 -Wall -Wextra -O2 -g -o t/test_frame t/test_frame.c ws_frame.c
 *
 * Prints one line per failed check and ends with "N passed, N failed".
 *
 * Most parser tests state the events a byte stream must give as a short
 * trace string, e.g. "ping('x') msg(text,'hi') error(1002)", and
 * expect_trace() checks it under every way of feeding the stream: whole,
 * in pieces of 1, 2, 3, ... bytes, split in two at every position, and
 * both assembled (WS_EV_MESSAGE) and as chunks (WS_EV_CHUNK, merged back
 * into messages).  It also checks that the same number of bytes was
 * consumed each time, which is how fail-fast positions are asserted.
 */
#include "../ws_frame.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- harness */

static int n_passed, n_failed;

static void check_at(int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("%s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

#define CHECK(cond) check_at((cond) != 0, __FILE__, __LINE__, "CHECK(%s)", #cond)
#define CHECK_INT(got, want) do { \
        long long g_ = (long long)(got), w_ = (long long)(want); \
        check_at(g_ == w_, __FILE__, __LINE__, "%s is %lld, want %lld", #got, g_, w_); \
    } while (0)

/* Deterministic PRNG (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

/* ------------------------------------------------------- byte buffers */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            perror("realloc");
            exit(2);
        }
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void putf(bytes *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void clear(bytes *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

static void drop(bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static const char *str(bytes *b)
{
    if (!b->p)
        put(b, "", 0);
    return (const char *)b->p;
}

/* ----------------------------------------------------- stream building */

#define TXT(lit) (lit), (sizeof(lit) - 1)
#define NOFIN 0
#define FIN WS_FIN

static unsigned key_counter;

/* A frame as a client sends it: masked, with a key that changes from
 * frame to frame so that every key offset gets exercised. */
static void cframe(bytes *s, int opcode, int flags, const void *payload, size_t n)
{
    uint8_t hdr[WS_MAX_HEADER_SIZE], key[4];
    size_t h, at;

    key_counter++;
    key[0] = (uint8_t)(0x37 + key_counter);
    key[1] = (uint8_t)(0xfa ^ key_counter);
    key[2] = (uint8_t)(0x21 + 7 * key_counter);
    key[3] = 0x3d;
    h = ws_frame_header(hdr, opcode, flags, n, key);
    put(s, hdr, h);
    at = s->len;
    put(s, payload, n);
    ws_mask(s->p + at, n, key, 0);
}

/* A frame as a server sends it: unmasked. */
static void sframe(bytes *s, int opcode, int flags, const void *payload, size_t n)
{
    uint8_t hdr[WS_MAX_HEADER_SIZE];

    put(s, hdr, ws_frame_header(hdr, opcode, flags, n, NULL));
    put(s, payload, n);
}

static void cclose(bytes *s, unsigned code, const char *reason, size_t n)
{
    uint8_t pl[WS_MAX_CONTROL_SIZE];

    pl[0] = (uint8_t)(code >> 8);
    pl[1] = (uint8_t)code;
    memcpy(pl + 2, reason, n);
    cframe(s, WS_OP_CLOSE, FIN, pl, 2 + n);
}

static ws_parser_config server_cfg(void)
{
    ws_parser_config c;

    memset(&c, 0, sizeof c);
    c.role = WS_ROLE_SERVER;
    c.max_message_size = 1 << 20;
    c.assemble = 1;
    return c;
}

static ws_parser_config client_cfg(void)
{
    ws_parser_config c = server_cfg();

    c.role = WS_ROLE_CLIENT;
    return c;
}

/* --------------------------------------------------------- the runner */

#define RUN_FRAMES 1   /* show WS_EV_FRAME events in the trace */
#define RUN_MERGE  2   /* show chunks merged into msg(...) */

typedef struct {
    bytes trace;        /* the events, formatted */
    bytes data;         /* all data payload delivered, concatenated */
    bytes broken;       /* broken invariants, if any */
    size_t consumed;
} run_result;

static void fmt_data(bytes *t, const uint8_t *d, size_t n)
{
    size_t i;

    if (n > 32) {
        putf(t, "<%zu bytes>", n);
        return;
    }
    put(t, "'", 1);
    for (i = 0; i < n; i++) {
        if (d[i] >= 0x20 && d[i] < 0x7f && d[i] != '\'' && d[i] != '\\')
            put(t, d + i, 1);
        else
            putf(t, "\\x%02x", d[i]);
    }
    put(t, "'", 1);
}

static void fmt_event(bytes *t, const ws_event *ev)
{
    if (t->len)
        put(t, " ", 1);
    switch (ev->type) {
    case WS_EV_FRAME:
        putf(t, "frame(%s%s%s,%llu)", ws_opcode_name(ev->opcode),
             ev->fin ? "" : ",nofin", ev->rsv & WS_RSV1 ? ",rsv1" : "",
             (unsigned long long)ev->frame_length);
        return;
    case WS_EV_MESSAGE:
        putf(t, "msg(%s%s,", ws_opcode_name(ev->opcode), ev->compressed ? ",z" : "");
        break;
    case WS_EV_CHUNK:
        putf(t, "chunk(%s%s%s%s%s,", ws_opcode_name(ev->opcode),
             ev->first || ev->last ? "," : "", ev->first ? "first" : "",
             ev->first && ev->last ? "+" : "", ev->last ? "last" : "");
        if (ev->compressed)
            put(t, "z,", 2);
        break;
    case WS_EV_PING:  put(t, "ping(", 5); break;
    case WS_EV_PONG:  put(t, "pong(", 5); break;
    case WS_EV_CLOSE: putf(t, "close(%u,", ev->close_code); break;
    case WS_EV_ERROR: putf(t, "error(%u)", ev->close_code); return;
    default:          putf(t, "bad-event-%d", (int)ev->type); return;
    }
    fmt_data(t, ev->data, ev->len);
    put(t, ")", 1);
}

/* Chunks being merged back into a message (RUN_MERGE). */
typedef struct {
    int active, opcode, compressed;
    bytes data;
} merger;

static void merge_chunk(run_result *r, merger *m, const ws_event *ev)
{
    ws_event whole;

    if (ev->first == m->active)
        putf(&r->broken, "chunk first=%d while %s a message; ", ev->first,
             m->active ? "inside" : "outside");
    if (ev->first) {
        m->active = 1;
        m->opcode = ev->opcode;
        m->compressed = ev->compressed;
        clear(&m->data);
    } else if (ev->opcode != m->opcode || ev->compressed != m->compressed) {
        put(&r->broken, "chunk opcode/compressed changed; ", 32);
    }
    put(&m->data, ev->data, ev->len);
    if (!ev->last)
        return;
    memset(&whole, 0, sizeof whole);
    whole.type = WS_EV_MESSAGE;
    whole.opcode = m->opcode;
    whole.compressed = m->compressed;
    whole.data = m->data.p;
    whole.len = m->data.len;
    fmt_event(&r->trace, &whole);
    m->active = 0;
}

static void check_event(run_result *r, const ws_parser_config *cfg, ws_parser *p,
                        const ws_event *ev, const uint8_t *in, size_t len)
{
    int in_input = ev->data >= in && ev->data <= in + len;

    if (ev->len && !ev->data)
        put(&r->broken, "data NULL; ", 11);
    if (in_input && ev->data + ev->len > in + len)
        put(&r->broken, "data runs past the input; ", 26);
    if (ev->type == WS_EV_CHUNK && ev->len && !in_input)
        put(&r->broken, "chunk not in the input; ", 24);
    if (cfg->max_message_size && ws_parser_buffered(p) > cfg->max_message_size)
        put(&r->broken, "buffered over the limit; ", 25);
    if ((ev->type == WS_EV_PING || ev->type == WS_EV_PONG) && ev->len > 125)
        put(&r->broken, "control payload over 125; ", 26);
}

/* Calls ws_parser_next on in[0..len) until it wants more input or ends;
 * returns 1 when the parser reached a terminal event. */
static int feed_window(run_result *r, const ws_parser_config *cfg, ws_parser *p,
                       uint8_t *in, size_t len, int flags, merger *m)
{
    size_t pos = 0, calls = 0;
    ws_event ev, again;

    for (;;) {
        size_t used = ws_parser_next(p, in + pos, len - pos, &ev);

        if (used > len - pos) {
            put(&r->broken, "consumed more than given; ", 26);
            used = len - pos;
        }
        pos += used;
        r->consumed += used;
        if (ev.type == WS_EV_NONE) {
            if (pos != len)
                put(&r->broken, "NONE with input left; ", 22);
            return 0;
        }
        check_event(r, cfg, p, &ev, in, len);
        if (ev.type == WS_EV_CHUNK || ev.type == WS_EV_MESSAGE)
            put(&r->data, ev.data, ev.len);
        if (ev.type == WS_EV_CHUNK && (flags & RUN_MERGE))
            merge_chunk(r, m, &ev);
        else if (ev.type != WS_EV_FRAME || (flags & RUN_FRAMES))
            fmt_event(&r->trace, &ev);
        if (ev.type == WS_EV_ERROR || ev.type == WS_EV_CLOSE) {
            used = ws_parser_next(p, in + pos, len - pos, &again);
            if (used != 0 || again.type != (ev.type == WS_EV_ERROR ? WS_EV_ERROR : WS_EV_NONE)
                || again.close_code != (ev.type == WS_EV_ERROR ? ev.close_code : 0))
                put(&r->broken, "terminal state not kept; ", 25);
            return 1;
        }
        if (++calls > 4 * len + 100) {
            put(&r->broken, "no progress; ", 13);
            return 1;
        }
    }
}

/* Feeds a copy of stream: a first piece of 'first' bytes, then pieces of
 * 'piece' bytes (0: everything at once). */
static void run(run_result *r, const ws_parser_config *cfg, const bytes *stream,
                size_t first, size_t piece, int flags)
{
    ws_parser *p = ws_parser_create(cfg);
    uint8_t *copy = malloc(stream->len + 1);
    size_t start = 0, end;
    merger m;

    memset(&m, 0, sizeof m);
    clear(&r->trace);
    clear(&r->data);
    clear(&r->broken);
    r->consumed = 0;
    if (stream->len)
        memcpy(copy, stream->p, stream->len);
    end = first ? first : piece ? piece : stream->len;
    for (;;) {
        if (end > stream->len)
            end = stream->len;
        /* r->consumed counts from the start; the window begins there, so
         * that bytes a call left unconsumed are given again. */
        start = r->consumed;
        if (feed_window(r, cfg, p, copy + start, end - start, flags, &m))
            break;
        if (end == stream->len)
            break;
        end += piece ? piece : stream->len;
    }
    ws_parser_destroy(p);
    drop(&m.data);
    free(copy);
}

static void drop_result(run_result *r)
{
    drop(&r->trace);
    drop(&r->data);
    drop(&r->broken);
}

/* One run compared with what is wanted; returns 0 when it differs. */
static int run_matches(int line, const char *how, const ws_parser_config *cfg,
                       const bytes *s, size_t first, size_t piece, int flags,
                       const char *want, const uint8_t *data, size_t data_len,
                       size_t *consumed)
{
    run_result r;
    int ok;

    memset(&r, 0, sizeof r);
    run(&r, cfg, s, first, piece, flags);
    ok = strcmp(str(&r.trace), want) == 0 && r.broken.len == 0
         && (*consumed == (size_t)-1 || r.consumed == *consumed)
         && (!data || (r.data.len == data_len && memcmp(r.data.p, data, data_len) == 0));
    if (!ok) {
        printf("%s:%d: %s (assemble=%d first=%zu piece=%zu):\n"
               "    got  %s  [consumed %zu%s%s]\n    want %s",
               __FILE__, line, how, cfg->assemble, first, piece, str(&r.trace),
               r.consumed, r.broken.len ? "; " : "", str(&r.broken), want);
        if (*consumed != (size_t)-1)
            printf("  [consumed %zu]", *consumed);
        if (data && !(r.data.len == data_len && memcmp(r.data.p, data, data_len) == 0))
            printf("  [data differs: %zu bytes, want %zu]", r.data.len, data_len);
        printf("\n");
    }
    if (*consumed == (size_t)-1)
        *consumed = r.consumed;
    drop_result(&r);
    return ok;
}

/*
 * The heart of the parser tests: the stream must give 'want' however it
 * is fed, assembled or chunked.  Returns the bytes consumed (the same in
 * every run), or (size_t)-1 if the runs disagreed.  Counts as one check.
 */
static size_t expect_trace(int line, const ws_parser_config *cfg, const bytes *s,
                           int flags, const char *want,
                           const void *data, size_t data_len)
{
    static const size_t pieces[] = { 0, 1, 2, 3, 5, 7, 64, 1000 };
    size_t consumed = (size_t)-1, i, k;
    int mode, ok = 1;

    for (mode = 1; mode >= 0 && ok; mode--) {
        ws_parser_config c = *cfg;

        c.assemble = mode;
        for (i = 0; i < sizeof pieces / sizeof *pieces && ok; i++)
            ok = run_matches(line, "trace", &c, s, pieces[i], pieces[i],
                             flags | RUN_MERGE, want, data, data_len, &consumed);
        /* Split in two at every position, when that is affordable. */
        for (k = 1; k < s->len && s->len <= 600 && ok; k++)
            ok = run_matches(line, "trace", &c, s, k, 0, flags | RUN_MERGE,
                             want, data, data_len, &consumed);
    }
    check_at(ok, __FILE__, line, "trace differs (see above)");
    return ok ? consumed : (size_t)-1;
}

#define EXPECT(cfg, s, want) \
    expect_trace(__LINE__, cfg, s, 0, want, NULL, 0)
#define EXPECT_FRAMES(cfg, s, want) \
    expect_trace(__LINE__, cfg, s, RUN_FRAMES, want, NULL, 0)
#define EXPECT_DATA(cfg, s, want, d, n) \
    expect_trace(__LINE__, cfg, s, 0, want, d, n)

/* Raw chunk events for one particular feeding (chunk boundaries follow
 * the feeding, so this cannot be checked feeding-independently). */
static void expect_chunks(int line, const ws_parser_config *cfg, const bytes *s,
                          size_t piece, const char *want)
{
    ws_parser_config c = *cfg;
    size_t consumed = (size_t)-1;

    c.assemble = 0;
    check_at(run_matches(line, "chunks", &c, s, piece, piece, 0, want, NULL, 0,
                         &consumed), __FILE__, line, "chunk trace differs");
}

#define EXPECT_CHUNKS(cfg, s, piece, want) expect_chunks(__LINE__, cfg, s, piece, want)

/* ------------------------------------------------------------ opcodes */

static void test_opcodes(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 };
    int op;

    cframe(&s, WS_OP_TEXT, FIN, TXT("hello"));
    EXPECT_FRAMES(&cfg, &s, "frame(text,5) msg(text,'hello')");

    clear(&s);
    cframe(&s, WS_OP_BINARY, FIN, TXT("\x00\xff\x80"));
    EXPECT_FRAMES(&cfg, &s, "frame(binary,3) msg(binary,'\\x00\\xff\\x80')");

    clear(&s);
    cframe(&s, WS_OP_TEXT, NOFIN, TXT("hel"));
    cframe(&s, WS_OP_CONTINUATION, NOFIN, TXT("l"));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("o"));
    EXPECT_FRAMES(&cfg, &s, "frame(text,nofin,3) frame(continuation,nofin,1) "
                            "frame(continuation,1) msg(text,'hello')");

    clear(&s);
    cframe(&s, WS_OP_PING, FIN, TXT("p1"));
    cframe(&s, WS_OP_PONG, FIN, TXT("p2"));
    cclose(&s, 1000, TXT("bye"));
    EXPECT_FRAMES(&cfg, &s, "frame(ping,2) ping('p1') frame(pong,2) pong('p2') "
                            "frame(close,5) close(1000,'bye')");

    /* Reserved opcodes fail at the first byte, after what came before. */
    for (op = 0; op < 16; op++) {
        uint8_t hdr[2];

        if (op <= 2 || (op >= 8 && op <= 10))
            continue;
        clear(&s);
        cframe(&s, WS_OP_PING, FIN, TXT("x"));
        hdr[0] = (uint8_t)(0x80 | op);
        hdr[1] = 0x80;
        put(&s, hdr, 2);
        put(&s, "\0\0\0\0", 4);
        CHECK_INT(EXPECT(&cfg, &s, "ping('x') error(1002)"), 7 + 1);
    }

    CHECK(strcmp(ws_opcode_name(WS_OP_CONTINUATION), "continuation") == 0);
    CHECK(strcmp(ws_opcode_name(WS_OP_TEXT), "text") == 0);
    CHECK(strcmp(ws_opcode_name(WS_OP_BINARY), "binary") == 0);
    CHECK(strcmp(ws_opcode_name(WS_OP_CLOSE), "close") == 0);
    CHECK(strcmp(ws_opcode_name(WS_OP_PING), "ping") == 0);
    CHECK(strcmp(ws_opcode_name(WS_OP_PONG), "pong") == 0);
    CHECK(strcmp(ws_opcode_name(3), "reserved") == 0);
    CHECK(strcmp(ws_opcode_name(0xF), "reserved") == 0);
    drop(&s);
}

/* ------------------------------------------------------------- lengths */

static void test_length_encodings(void)
{
    static const size_t sizes[] = { 0, 1, 125, 126, 127, 65535, 65536, 70000 };
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 }, payload = { 0 }, want = { 0 };
    uint8_t hdr[WS_MAX_HEADER_SIZE], key[4] = { 1, 2, 3, 4 };
    size_t i, j;

    for (i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        size_t hlen = n < 126 ? 2 : n <= 65535 ? 4 : 10;

        clear(&payload);
        for (j = 0; j < n; j++)
            put(&payload, &(uint8_t){ (uint8_t)(j * 7 + 1) }, 1);
        CHECK_INT(ws_frame_header(hdr, WS_OP_BINARY, FIN, n, NULL), hlen);
        CHECK_INT(ws_frame_header(hdr, WS_OP_BINARY, FIN, n, key), hlen + 4);
        clear(&s);
        cframe(&s, WS_OP_BINARY, FIN, payload.p, n);
        clear(&want);
        putf(&want, "frame(binary,%zu) msg(binary,", n);
        fmt_data(&want, payload.p, n);
        put(&want, ")", 1);
        CHECK_INT(expect_trace(__LINE__, &cfg, &s, RUN_FRAMES, str(&want),
                               payload.p, n), hlen + 4 + n);
    }

    /* The same from a server, unmasked. */
    cfg = client_cfg();
    clear(&s);
    sframe(&s, WS_OP_TEXT, FIN, TXT("Hello"));
    CHECK(s.len == 7 && memcmp(s.p, "\x81\x05Hello", 7) == 0);
    EXPECT(&cfg, &s, "msg(text,'Hello')");

    /* A huge length is only announced: chunks flow, nothing is buffered. */
    cfg = server_cfg();
    cfg.assemble = 0;
    cfg.max_message_size = 0;
    clear(&s);
    put(&s, "\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00" "\0\0\0\0" "abcdef", 20);
    EXPECT_CHUNKS(&cfg, &s, 0, "chunk(binary,first,'abcdef')");
    EXPECT_CHUNKS(&cfg, &s, 17, "chunk(binary,first,'abc') chunk(binary,'def')");
    {
        size_t consumed = (size_t)-1;

        CHECK(run_matches(__LINE__, "huge", &cfg, &s, 0, 0, RUN_FRAMES,
                          "frame(binary,1099511627776) chunk(binary,first,'abcdef')",
                          NULL, 0, &consumed));
        CHECK_INT(consumed, 20);
    }
    /* The largest legal length, 2^63 - 1. */
    clear(&s);
    put(&s, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff" "\0\0\0\0", 14);
    CHECK_INT(EXPECT_FRAMES(&cfg, &s, "frame(binary,9223372036854775807)"), 14);
    /* ... and over a limit it fails before the masking key is read. */
    cfg = server_cfg();
    CHECK_INT(EXPECT(&cfg, &s, "error(1009)"), 10);

    drop(&s);
    drop(&payload);
    drop(&want);
}

static void test_non_minimal_lengths(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 };

    cfg.max_message_size = 0;
    /* 16-bit length: 126 is the smallest allowed. */
    put(&s, "\x82\xfe\x00\x7d", 4);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 4);
    clear(&s);
    put(&s, "\x82\xfe\x00\x00", 4);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 4);
    clear(&s);
    put(&s, "\x82\xfe\x00\x7e" "\0\0\0\0", 8);
    CHECK_INT(EXPECT_FRAMES(&cfg, &s, "frame(binary,126)"), 8);

    /* 64-bit length: 65536 is the smallest allowed. */
    clear(&s);
    put(&s, "\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff", 10);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 10);
    clear(&s);
    put(&s, "\x82\xff\x00\x00\x00\x00\x00\x00\x00\x05", 10);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 10);
    clear(&s);
    put(&s, "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00" "\0\0\0\0", 14);
    CHECK_INT(EXPECT_FRAMES(&cfg, &s, "frame(binary,65536)"), 14);

    /* The most significant bit must be 0. */
    clear(&s);
    put(&s, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 10);
    clear(&s);
    put(&s, "\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 10);
    drop(&s);
}

/* ------------------------------------------------- masking, reserved bits */

static void test_masking(void)
{
    ws_parser_config server = server_cfg(), client = client_cfg();
    bytes s = { 0 };

    sframe(&s, WS_OP_TEXT, FIN, TXT("hi"));
    CHECK_INT(EXPECT(&server, &s, "error(1002)"), 2);
    EXPECT(&client, &s, "msg(text,'hi')");

    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN, TXT("hi"));
    CHECK_INT(EXPECT(&client, &s, "error(1002)"), 2);
    EXPECT(&server, &s, "msg(text,'hi')");

    /* Control frames too. */
    clear(&s);
    sframe(&s, WS_OP_PING, FIN, TXT(""));
    CHECK_INT(EXPECT(&server, &s, "error(1002)"), 2);
    EXPECT(&client, &s, "ping('')");

    /* An all-zero key is a key. */
    clear(&s);
    put(&s, "\x81\x82\0\0\0\0hi", 8);
    EXPECT(&server, &s, "msg(text,'hi')");
    drop(&s);
}

static void test_reserved_bits(void)
{
    ws_parser_config cfg = server_cfg(), ext = server_cfg();
    bytes s = { 0 };

    ext.allow_rsv1 = 1;

    cframe(&s, WS_OP_TEXT, FIN | WS_RSV1, TXT("hi"));
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 1);
    EXPECT_FRAMES(&ext, &s, "frame(text,rsv1,2) msg(text,z,'hi')");

    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN | WS_RSV2, TXT("hi"));
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 1);
    CHECK_INT(EXPECT(&ext, &s, "error(1002)"), 1);

    clear(&s);
    cframe(&s, WS_OP_BINARY, FIN | WS_RSV3, TXT("hi"));
    CHECK_INT(EXPECT(&ext, &s, "error(1002)"), 1);

    clear(&s);
    cframe(&s, WS_OP_PING, FIN | WS_RSV2, TXT(""));
    CHECK_INT(EXPECT(&ext, &s, "error(1002)"), 1);

    /* Compressed text is not UTF-8 checked here (it is not text yet). */
    clear(&s);
    cframe(&s, WS_OP_TEXT, WS_RSV1, TXT("\xff\xc0"));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("\xed\xa0"));
    EXPECT(&ext, &s, "msg(text,z,'\\xff\\xc0\\xed\\xa0')");
    clear(&s);
    cframe(&s, WS_OP_BINARY, FIN | WS_RSV1, TXT("x"));
    EXPECT(&ext, &s, "msg(binary,z,'x')");

    /* RSV1 only on the first frame of a data message. */
    clear(&s);
    cframe(&s, WS_OP_TEXT, WS_RSV1, TXT("a"));
    cframe(&s, WS_OP_CONTINUATION, FIN | WS_RSV1, TXT("b"));
    CHECK_INT(EXPECT(&ext, &s, "error(1002)"), 7 + 1);
    clear(&s);
    cframe(&s, WS_OP_PING, FIN | WS_RSV1, TXT(""));
    CHECK_INT(EXPECT(&ext, &s, "error(1002)"), 1);
    clear(&s);
    cframe(&s, WS_OP_CLOSE, FIN | WS_RSV1, TXT(""));
    CHECK_INT(EXPECT(&ext, &s, "error(1002)"), 1);
    drop(&s);
}

/* ------------------------------------------------------ control frames */

static void test_control_frames(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 }, want = { 0 };
    char big[126];

    memset(big, 'c', sizeof big);
    cframe(&s, WS_OP_PING, FIN, big, 125);
    putf(&want, "ping(<125 bytes>)");
    CHECK_INT(EXPECT(&cfg, &s, str(&want)), 2 + 4 + 125);

    /* 126 fails at the second byte, before the 16-bit length. */
    clear(&s);
    cframe(&s, WS_OP_PING, FIN, big, 126);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 2);
    clear(&s);
    put(&s, "\x8a\xff", 2);
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 2);

    /* Fragmented control frames. */
    clear(&s);
    cframe(&s, WS_OP_PING, NOFIN, TXT("a"));
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 1);
    clear(&s);
    cframe(&s, WS_OP_CLOSE, NOFIN, TXT(""));
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 1);

    /* Empty ones. */
    clear(&s);
    cframe(&s, WS_OP_PING, FIN, TXT(""));
    cframe(&s, WS_OP_PONG, FIN, TXT(""));
    cframe(&s, WS_OP_CLOSE, FIN, TXT(""));
    EXPECT_FRAMES(&cfg, &s, "frame(ping,0) ping('') frame(pong,0) pong('') "
                            "frame(close,0) close(1005,'')");
    drop(&s);
    drop(&want);
}

/* ------------------------------------------------------- fragmentation */

static void test_fragmentation(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 };

    cframe(&s, WS_OP_TEXT, NOFIN, TXT("a"));
    cframe(&s, WS_OP_PING, FIN, TXT("1"));
    cframe(&s, WS_OP_CONTINUATION, NOFIN, TXT("b"));
    cframe(&s, WS_OP_PONG, FIN, TXT("2"));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("c"));
    cframe(&s, WS_OP_BINARY, FIN, TXT("d"));
    EXPECT(&cfg, &s, "ping('1') pong('2') msg(text,'abc') msg(binary,'d')");
    EXPECT_FRAMES(&cfg, &s, "frame(text,nofin,1) frame(ping,1) ping('1') "
                  "frame(continuation,nofin,1) frame(pong,1) pong('2') "
                  "frame(continuation,1) msg(text,'abc') frame(binary,1) msg(binary,'d')");

    /* A close in the middle of a message ends everything. */
    clear(&s);
    cframe(&s, WS_OP_BINARY, NOFIN, TXT("a"));
    cclose(&s, 1001, TXT(""));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("b"));
    CHECK_INT(EXPECT(&cfg, &s, "close(1001,'')"), 7 + 8);

    /* Continuation with no message started. */
    clear(&s);
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("a"));
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 1);
    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN, TXT("a"));
    cframe(&s, WS_OP_CONTINUATION, NOFIN, TXT("b"));
    CHECK_INT(EXPECT(&cfg, &s, "msg(text,'a') error(1002)"), 7 + 1);

    /* A new message inside a fragmented one. */
    clear(&s);
    cframe(&s, WS_OP_TEXT, NOFIN, TXT("a"));
    cframe(&s, WS_OP_PING, FIN, TXT(""));
    cframe(&s, WS_OP_TEXT, FIN, TXT("b"));
    CHECK_INT(EXPECT(&cfg, &s, "ping('') error(1002)"), 7 + 6 + 1);
    clear(&s);
    cframe(&s, WS_OP_BINARY, NOFIN, TXT("a"));
    cframe(&s, WS_OP_BINARY, NOFIN, TXT("b"));
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 7 + 1);

    /* Empty fragments. */
    clear(&s);
    cframe(&s, WS_OP_TEXT, NOFIN, TXT(""));
    cframe(&s, WS_OP_CONTINUATION, NOFIN, TXT(""));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT(""));
    cframe(&s, WS_OP_TEXT, FIN, TXT(""));
    cframe(&s, WS_OP_BINARY, FIN, TXT(""));
    EXPECT(&cfg, &s, "msg(text,'') msg(text,'') msg(binary,'')");
    drop(&s);
}

static void test_chunk_sequences(void)
{
    ws_parser_config cfg = server_cfg(), ext = server_cfg();
    bytes s = { 0 };

    ext.allow_rsv1 = 1;
    cframe(&s, WS_OP_TEXT, FIN, TXT("hello"));
    EXPECT_CHUNKS(&cfg, &s, 0, "chunk(text,first+last,'hello')");

    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN, TXT("abc"));
    EXPECT_CHUNKS(&cfg, &s, 1, "chunk(text,first,'a') chunk(text,'b') chunk(text,last,'c')");

    clear(&s);
    cframe(&s, WS_OP_TEXT, NOFIN, TXT("ab"));
    cframe(&s, WS_OP_CONTINUATION, NOFIN, TXT(""));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT(""));
    EXPECT_CHUNKS(&cfg, &s, 0, "chunk(text,first,'ab') chunk(text,last,'')");

    clear(&s);
    cframe(&s, WS_OP_BINARY, NOFIN, TXT(""));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("x"));
    cframe(&s, WS_OP_TEXT, FIN, TXT(""));
    EXPECT_CHUNKS(&cfg, &s, 0, "chunk(binary,first,'') chunk(binary,last,'x') "
                               "chunk(text,first+last,'')");

    clear(&s);
    cframe(&s, WS_OP_TEXT, NOFIN, TXT("a"));
    cframe(&s, WS_OP_PING, FIN, TXT("p"));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("b"));
    EXPECT_CHUNKS(&cfg, &s, 0, "chunk(text,first,'a') ping('p') chunk(text,last,'b')");

    clear(&s);
    cframe(&s, WS_OP_BINARY, WS_RSV1, TXT("a"));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("b"));
    EXPECT_CHUNKS(&ext, &s, 0, "chunk(binary,first,z,'a') chunk(binary,last,z,'b')");
    drop(&s);
}

/* --------------------------------------------------------------- UTF-8 */

static const struct {
    const char *seq;
    size_t len;
    size_t bad;     /* index of the byte at which it must fail */
} bad_utf8[] = {
    { TXT("\xc0\xaf"), 0 },                 /* overlong 2-byte '/' */
    { TXT("\xc1\xbf"), 0 },
    { TXT("\xe0\x80\xaf"), 1 },             /* overlong 3-byte */
    { TXT("\xe0\x9f\xbf"), 1 },
    { TXT("\xf0\x80\x80\xaf"), 1 },         /* overlong 4-byte */
    { TXT("\xf0\x8f\xbf\xbf"), 1 },
    { TXT("\xed\xa0\x80"), 1 },             /* U+D800 */
    { TXT("\xed\xbf\xbf"), 1 },             /* U+DFFF */
    { TXT("\xed\xaf\xbf\xed\xb0\x80"), 1 }, /* a surrogate pair */
    { TXT("\xf4\x90\x80\x80"), 1 },         /* U+110000 */
    { TXT("\xf7\xbf\xbf\xbf"), 0 },
    { TXT("\xf5\x80\x80\x80"), 0 },
    { TXT("\xf8\x88\x80\x80\x80"), 0 },     /* old 5-byte form */
    { TXT("\xfc\x84\x80\x80\x80\x80"), 0 },
    { TXT("\xfe"), 0 },
    { TXT("\xff"), 0 },
    { TXT("\x80"), 0 },                     /* lone continuation bytes */
    { TXT("\xbf"), 0 },
    { TXT("\xe2\x82\xac\x80"), 3 },
    { TXT("\xc3\x28"), 1 },                 /* sequence cut short */
    { TXT("\xc2\xc2"), 1 },
    { TXT("\xe2\x28\xa1"), 1 },
    { TXT("\xe2\x82\x28"), 2 },
    { TXT("\xf0\x28\x8c\xbc"), 1 },
    { TXT("\xf0\x90\x28\xbc"), 2 },
    { TXT("\xf0\x9f\x98\x28"), 3 },
};

/* Valid, with every boundary of every sequence length. */
static const char good_utf8[] =
    "a\x00\x7f" "\xc2\x80" "\xdf\xbf" "\xe0\xa0\x80" "\xed\x9f\xbf"
    "\xee\x80\x80" "\xef\xbf\xbf" "\xf0\x90\x80\x80" "\xf4\x8f\xbf\xbf"
    "\xc3\xa9" "\xe2\x82\xac" "\xf0\x9f\x98\x80" "z";

static void test_utf8_in_messages(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 }, pl = { 0 }, want = { 0 };
    size_t i, k, n;

    for (i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
        size_t bad = 2 + bad_utf8[i].bad;   /* index in the payload */

        clear(&pl);
        put(&pl, "ab", 2);
        put(&pl, bad_utf8[i].seq, bad_utf8[i].len);
        put(&pl, "cd", 2);
        clear(&s);
        cframe(&s, WS_OP_TEXT, FIN, pl.p, pl.len);
        CHECK_INT(EXPECT(&cfg, &s, "error(1007)"), 6 + bad + 1);

        /* Across two fragments, with a ping between: split everywhere. */
        for (k = 0; k <= pl.len; k++) {
            size_t at = bad < k ? 6 + bad + 1 : 6 + k + 6 + 6 + (bad - k) + 1;

            clear(&s);
            cframe(&s, WS_OP_TEXT, NOFIN, pl.p, k);
            cframe(&s, WS_OP_PING, FIN, TXT(""));
            cframe(&s, WS_OP_CONTINUATION, FIN, pl.p + k, pl.len - k);
            CHECK_INT(EXPECT(&cfg, &s, bad < k ? "error(1007)" : "ping('') error(1007)"), at);
        }
        /* The same bytes make a fine binary message. */
        clear(&s);
        cframe(&s, WS_OP_BINARY, FIN, pl.p, pl.len);
        clear(&want);
        put(&want, "msg(binary,", 11);
        fmt_data(&want, pl.p, pl.len);
        put(&want, ")", 1);
        EXPECT_DATA(&cfg, &s, str(&want), pl.p, pl.len);
    }

    /* Truncated at the end of the message: fails at FIN. */
    {
        static const char *cut[] = { "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xf4\x8f\xbf", "\xe0" };

        for (i = 0; i < sizeof cut / sizeof *cut; i++) {
            n = strlen(cut[i]);
            clear(&s);
            cframe(&s, WS_OP_TEXT, FIN, cut[i], n);
            CHECK_INT(EXPECT(&cfg, &s, "error(1007)"), 6 + n);
            clear(&s);
            cframe(&s, WS_OP_TEXT, NOFIN, "x", 1);
            cframe(&s, WS_OP_CONTINUATION, NOFIN, cut[i], n);
            cframe(&s, WS_OP_CONTINUATION, FIN, "", 0);
            CHECK_INT(EXPECT(&cfg, &s, "error(1007)"), 7 + 6 + n + 6);
        }
    }

    /* Valid text split across fragments at every position (and, by
     * expect_trace, across feed calls at every position). */
    n = sizeof good_utf8 - 1;
    clear(&want);
    putf(&want, "msg(text,<%zu bytes>)", n);
    for (k = 0; k <= n; k++) {
        clear(&s);
        cframe(&s, WS_OP_TEXT, NOFIN, good_utf8, k);
        cframe(&s, WS_OP_CONTINUATION, FIN, good_utf8 + k, n - k);
        EXPECT_DATA(&cfg, &s, str(&want), good_utf8, n);
        if (k + 3 > n)
            continue;
        clear(&s);
        cframe(&s, WS_OP_TEXT, NOFIN, good_utf8, k);
        cframe(&s, WS_OP_CONTINUATION, NOFIN, good_utf8 + k, 3);
        cframe(&s, WS_OP_CONTINUATION, FIN, good_utf8 + k + 3, n - k - 3);
        EXPECT_DATA(&cfg, &s, str(&want), good_utf8, n);
    }
    drop(&s);
    drop(&pl);
    drop(&want);
}

/* -------------------------------------------------------- close frames */

static void test_close_codes(void)
{
    static const struct { unsigned code; int plain, reserved; } codes[] = {
        { 0, 0, 0 }, { 1, 0, 0 }, { 999, 0, 0 },
        { 1000, 1, 1 }, { 1001, 1, 1 }, { 1002, 1, 1 }, { 1003, 1, 1 },
        { 1004, 0, 1 }, { 1005, 0, 0 }, { 1006, 0, 0 },
        { 1007, 1, 1 }, { 1008, 1, 1 }, { 1009, 1, 1 }, { 1010, 1, 1 },
        { 1011, 1, 1 }, { 1012, 1, 1 }, { 1013, 1, 1 }, { 1014, 1, 1 },
        { 1015, 0, 0 }, { 1016, 0, 1 }, { 1999, 0, 1 }, { 2000, 0, 1 },
        { 2999, 0, 1 }, { 3000, 1, 1 }, { 3999, 1, 1 }, { 4000, 1, 1 },
        { 4999, 1, 1 }, { 5000, 0, 0 }, { 65535, 0, 0 },
    };
    ws_parser_config cfg = server_cfg(), lax = server_cfg();
    bytes s = { 0 }, want = { 0 };
    size_t i;

    lax.allow_reserved_close_codes = 1;
    for (i = 0; i < sizeof codes / sizeof *codes; i++) {
        unsigned c = codes[i].code;

        check_at(ws_close_code_valid(c, 0) == codes[i].plain, __FILE__, __LINE__,
                 "ws_close_code_valid(%u, 0)", c);
        check_at(ws_close_code_valid(c, 1) == codes[i].reserved, __FILE__, __LINE__,
                 "ws_close_code_valid(%u, 1)", c);
        clear(&s);
        cclose(&s, c, TXT("r"));
        clear(&want);
        putf(&want, "close(%u,'r')", c);
        EXPECT(&cfg, &s, codes[i].plain ? str(&want) : "error(1002)");
        EXPECT(&lax, &s, codes[i].reserved ? str(&want) : "error(1002)");
    }
    CHECK(!ws_close_code_valid(100000, 1));

    clear(&s);
    cframe(&s, WS_OP_CLOSE, FIN, TXT("\x03"));
    CHECK_INT(EXPECT(&cfg, &s, "error(1002)"), 2);

    clear(&s);
    cclose(&s, 1000, TXT("\xc3\xa9t\xc3\xa9"));
    EXPECT(&cfg, &s, "close(1000,'\\xc3\\xa9t\\xc3\\xa9')");
    clear(&s);
    cclose(&s, 1000, TXT("a\xc0"));
    EXPECT(&cfg, &s, "error(1007)");
    clear(&s);
    cclose(&s, 1000, TXT("\xe2\x82"));
    EXPECT(&cfg, &s, "error(1007)");
    clear(&s);
    cclose(&s, 1000, TXT("\xed\xa0\x80"));
    EXPECT(&cfg, &s, "error(1007)");

    /* Nothing after a close is consumed. */
    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN, TXT("x"));
    cclose(&s, 1000, TXT(""));
    cframe(&s, WS_OP_TEXT, FIN, TXT("y"));
    CHECK_INT(EXPECT(&cfg, &s, "msg(text,'x') close(1000,'')"), 7 + 8);
    drop(&s);
    drop(&want);
}

/* ---------------------------------------------------------- size limit */

static void test_size_limit(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 };
    char pl[300];
    int i;

    memset(pl, 'x', sizeof pl);
    cfg.max_message_size = 100;

    cframe(&s, WS_OP_BINARY, FIN, pl, 100);
    EXPECT(&cfg, &s, "msg(binary,<100 bytes>)");
    clear(&s);
    cframe(&s, WS_OP_BINARY, FIN, pl, 101);
    CHECK_INT(EXPECT(&cfg, &s, "error(1009)"), 2);

    /* Fragmented: the total counts; control frames do not. */
    clear(&s);
    cframe(&s, WS_OP_TEXT, NOFIN, pl, 60);
    cframe(&s, WS_OP_PING, FIN, pl, 125);
    cframe(&s, WS_OP_CONTINUATION, FIN, pl, 40);
    EXPECT(&cfg, &s, "ping(<125 bytes>) msg(text,<100 bytes>)");
    clear(&s);
    cframe(&s, WS_OP_TEXT, NOFIN, pl, 60);
    cframe(&s, WS_OP_CONTINUATION, FIN, pl, 41);
    CHECK_INT(EXPECT(&cfg, &s, "error(1009)"), 66 + 2);

    clear(&s);
    for (i = 0; i < 10; i++)
        cframe(&s, i ? WS_OP_CONTINUATION : WS_OP_BINARY, NOFIN, pl, 10);
    cframe(&s, WS_OP_CONTINUATION, FIN, pl, 0);
    EXPECT(&cfg, &s, "msg(binary,<100 bytes>)");
    s.len -= 6;
    cframe(&s, WS_OP_CONTINUATION, FIN, pl, 1);
    CHECK_INT(EXPECT(&cfg, &s, "error(1009)"), 160 + 2);

    /* A 16-bit length over the limit fails once the length is read. */
    cfg.max_message_size = 150;
    clear(&s);
    cframe(&s, WS_OP_BINARY, FIN, pl, 151);
    CHECK_INT(EXPECT(&cfg, &s, "error(1009)"), 4);
    clear(&s);
    cframe(&s, WS_OP_BINARY, FIN, pl, 150);
    EXPECT(&cfg, &s, "msg(binary,<150 bytes>)");

    /* A limit of 1 byte still takes empty and 1-byte messages. */
    cfg.max_message_size = 1;
    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN, pl, 0);
    cframe(&s, WS_OP_TEXT, NOFIN, pl, 1);
    cframe(&s, WS_OP_CONTINUATION, FIN, pl, 0);
    cframe(&s, WS_OP_TEXT, FIN, pl, 2);
    EXPECT(&cfg, &s, "msg(text,'') msg(text,'x') error(1009)");
    drop(&s);
}

/* -------------------------------------------- order, terminal states */

static void test_events_before_error(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 };
    size_t at;

    cframe(&s, WS_OP_PING, FIN, TXT("x"));
    cframe(&s, WS_OP_TEXT, FIN, TXT("hi"));
    cframe(&s, WS_OP_BINARY, NOFIN, TXT("abc"));
    at = s.len;
    put(&s, "\x81\x80\0\0\0\0", 6);   /* a new message inside */
    CHECK_INT(EXPECT_FRAMES(&cfg, &s, "frame(ping,1) ping('x') frame(text,2) "
                            "msg(text,'hi') frame(binary,nofin,3) error(1002)"), at + 1);

    /* Text that breaks at its last byte: whatever preceded comes first. */
    clear(&s);
    cframe(&s, WS_OP_PONG, FIN, TXT(""));
    cframe(&s, WS_OP_TEXT, FIN, TXT("ok"));
    at = s.len;
    cframe(&s, WS_OP_TEXT, FIN, TXT("abc\xff"));
    CHECK_INT(EXPECT(&cfg, &s, "pong('') msg(text,'ok') error(1007)"), at + 10);
    drop(&s);
}

static void test_terminal_states(void)
{
    ws_parser_config cfg = server_cfg();
    uint8_t bad[] = { 0x83, 0x80, 0, 0, 0, 0 }, more[] = { 0x89, 0x80, 0, 0, 0, 0 };
    ws_parser *p = ws_parser_create(&cfg);
    ws_event ev;
    int i;

    CHECK_INT(ws_parser_next(p, bad, sizeof bad, &ev), 1);
    CHECK_INT(ev.type, WS_EV_ERROR);
    CHECK_INT(ev.close_code, 1002);
    CHECK(ev.reason != NULL && ev.reason[0] != 0);
    for (i = 0; i < 3; i++) {
        CHECK_INT(ws_parser_next(p, more, sizeof more, &ev), 0);
        CHECK_INT(ev.type, WS_EV_ERROR);
        CHECK_INT(ev.close_code, 1002);
    }
    CHECK_INT(ws_parser_next(p, NULL, 0, &ev), 0);
    CHECK_INT(ev.type, WS_EV_ERROR);
    ws_parser_destroy(p);

    p = ws_parser_create(&cfg);
    CHECK_INT(ws_parser_next(p, NULL, 0, &ev), 0);
    CHECK_INT(ev.type, WS_EV_NONE);
    ws_parser_destroy(p);
    ws_parser_destroy(NULL);
}

/* The loop ws_frame.h shows stops when the input is used up; no event
 * may be left behind then, and no big buffer kept. */
static void test_documented_loop(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 }, got = { 0 };
    static char big[200000];
    ws_parser *p = ws_parser_create(&cfg);
    uint8_t *buf;
    size_t len, piece;

    memset(big, 'b', sizeof big);
    cframe(&s, WS_OP_TEXT, FIN, TXT("hi"));
    cframe(&s, WS_OP_BINARY, NOFIN, big, 100000);
    cframe(&s, WS_OP_CONTINUATION, FIN, big, 100000);
    cframe(&s, WS_OP_PING, FIN, TXT(""));
    buf = s.p;
    len = s.len;
    /* Fed as read() would: the last piece ends right after the ping. */
    while (len > 0) {
        piece = len > 70000 ? 70000 : len;
        len -= piece;
        while (piece > 0) {
            ws_event ev;
            size_t used = ws_parser_next(p, buf, piece, &ev);

            buf += used;
            piece -= used;
            if (ev.type == WS_EV_NONE)
                break;
            fmt_event(&got, &ev);
        }
    }
    CHECK(strcmp(str(&got), "frame(text,2) msg(text,'hi') frame(binary,nofin,100000) "
                 "frame(continuation,100000) msg(binary,<200000 bytes>) "
                 "frame(ping,0) ping('')") == 0);
    if (strcmp(str(&got), "frame(text,2) msg(text,'hi') frame(binary,nofin,100000) "
               "frame(continuation,100000) msg(binary,<200000 bytes>) "
               "frame(ping,0) ping('')"))
        printf("    got %s\n", str(&got));
    CHECK_INT(ws_parser_buffered(p), 0);
    ws_parser_destroy(p);
    drop(&s);
    drop(&got);
}

/* ------------------------------------------------------- quiet frames */

/* Feeds s in pieces of step bytes, as an engine would (each piece handed
 * out again until used up); writes the events' types, and the payloads of
 * messages and pings, into log.  0 when a FRAME event came. */
static int quiet_run(bytes *s, size_t step, char *log, size_t cap)
{
    ws_parser_config cfg = server_cfg();
    ws_parser *p;
    size_t pos = 0, n = 0;
    int no_frame = 1;

    cfg.quiet_frames = 1;
    p = ws_parser_create(&cfg);
    log[0] = '\0';
    while (pos < s->len) {
        size_t end = pos + step < s->len ? pos + step : s->len;

        while (pos < end) {
            ws_event ev;
            size_t used = ws_parser_next(p, s->p + pos, end - pos, &ev);

            pos += used;
            if (ev.type == WS_EV_NONE)
                break;
            if (ev.type == WS_EV_FRAME)
                no_frame = 0;
            n += (size_t)snprintf(log + n, cap - n, "%d:%.*s;", (int)ev.type,
                                  (int)ev.len, ev.data ? (char *)ev.data : "");
        }
    }
    ws_parser_destroy(p);
    return no_frame;
}

/* quiet_frames: the same events in the same order, whatever the reads,
 * without WS_EV_FRAME; a message whose header and payload are in the
 * input comes out of one call, in place. */
static void test_quiet_frames(void)
{
    ws_parser_config cfg = server_cfg();
    char want[256], got[256];
    bytes s = { 0 };
    ws_parser *p;
    ws_event ev;
    size_t step;

    cframe(&s, WS_OP_TEXT, FIN, TXT("hello world"));
    cframe(&s, WS_OP_BINARY, FIN, TXT(""));
    cframe(&s, WS_OP_PING, FIN, TXT("p"));
    cframe(&s, WS_OP_TEXT, NOFIN, TXT("ab"));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("cd"));
    snprintf(want, sizeof want, "%d:hello world;%d:;%d:p;%d:abcd;",
             WS_EV_MESSAGE, WS_EV_MESSAGE, WS_EV_PING, WS_EV_MESSAGE);
    for (step = 1; step <= s.len; step++) {
        bytes copy = { 0 };

        put(&copy, s.p, s.len);
        CHECK(quiet_run(&copy, step, got, sizeof got));
        CHECK(strcmp(got, want) == 0);
        drop(&copy);
    }

    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN, TXT("hello world"));
    cfg.quiet_frames = 1;
    p = ws_parser_create(&cfg);
    CHECK_INT(ws_parser_next(p, s.p, s.len, &ev), s.len);
    CHECK_INT(ev.type, WS_EV_MESSAGE);
    CHECK(ev.data == s.p + 6);
    ws_parser_destroy(p);

    /* A bad header still fails at the byte that decides it. */
    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN | WS_RSV2, TXT("x"));
    p = ws_parser_create(&cfg);
    CHECK_INT(ws_parser_next(p, s.p, s.len, &ev), 1);
    CHECK_INT(ev.type, WS_EV_ERROR);
    ws_parser_destroy(p);
    drop(&s);
}

/* -------------------------------------------------- zero-copy, buffer */

static void test_zero_copy_and_copy(void)
{
    ws_parser_config cfg = server_cfg();
    bytes s = { 0 };
    ws_parser *p;
    ws_event ev;
    size_t used, total;

    cframe(&s, WS_OP_TEXT, FIN, TXT("hello world"));
    p = ws_parser_create(&cfg);
    used = ws_parser_next(p, s.p, s.len, &ev);
    CHECK_INT(ev.type, WS_EV_FRAME);
    total = used;
    used = ws_parser_next(p, s.p + total, s.len - total, &ev);
    total += used;
    CHECK_INT(ev.type, WS_EV_MESSAGE);
    CHECK_INT(total, s.len);
    CHECK(ev.data == s.p + 6);                     /* in the input */
    CHECK(ev.len == 11 && memcmp(ev.data, "hello world", 11) == 0);
    CHECK(memcmp(s.p + 6, "hello world", 11) == 0); /* unmasked in place */
    CHECK_INT(ws_parser_buffered(p), 0);
    ws_parser_destroy(p);

    /* The payload arrives in two reads: it has to be copied. */
    clear(&s);
    cframe(&s, WS_OP_TEXT, FIN, TXT("hello world"));
    p = ws_parser_create(&cfg);
    total = 0;
    do {
        total += ws_parser_next(p, s.p + total, 9 - total, &ev);
    } while (ev.type != WS_EV_NONE);
    CHECK_INT(total, 9);
    CHECK_INT(ws_parser_buffered(p), 3);
    do {
        total += ws_parser_next(p, s.p + total, s.len - total, &ev);
    } while (ev.type == WS_EV_NONE && total < s.len);
    CHECK_INT(ev.type, WS_EV_MESSAGE);
    CHECK(ev.data < s.p || ev.data >= s.p + s.len);
    CHECK(ev.len == 11 && memcmp(ev.data, "hello world", 11) == 0);
    CHECK_INT(ws_parser_buffered(p), 11);
    total += ws_parser_next(p, s.p + total, s.len - total, &ev);
    CHECK_INT(ev.type, WS_EV_NONE);
    CHECK_INT(total, s.len);
    CHECK_INT(ws_parser_buffered(p), 0);
    ws_parser_destroy(p);

    /* Fragmented: copied too, even if all in one input. */
    clear(&s);
    cframe(&s, WS_OP_BINARY, NOFIN, TXT("ab"));
    cframe(&s, WS_OP_CONTINUATION, FIN, TXT("cd"));
    p = ws_parser_create(&cfg);
    total = 0;
    do {
        total += ws_parser_next(p, s.p + total, s.len - total, &ev);
    } while (ev.type == WS_EV_FRAME);
    CHECK_INT(ev.type, WS_EV_MESSAGE);
    CHECK(ev.data < s.p || ev.data >= s.p + s.len);
    CHECK(ev.len == 4 && memcmp(ev.data, "abcd", 4) == 0);
    ws_parser_destroy(p);
    drop(&s);
}

/* ------------------------------------------------------------ encoding */

static void test_frame_header(void)
{
    static const uint64_t lens[] = { 0, 1, 125, 126, 65535, 65536, 1ull << 32,
                                     0x7fffffffffffffffull };
    static const int ops[] = { 0, 1, 2, 8, 9, 10 };
    uint8_t h[WS_MAX_HEADER_SIZE], key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    size_t i, j, k, n;
    int masked;

    /* The examples of RFC 6455 section 5.7. */
    n = ws_frame_header(h, WS_OP_TEXT, FIN, 5, NULL);
    CHECK(n == 2 && memcmp(h, "\x81\x05", 2) == 0);
    n = ws_frame_header(h, WS_OP_TEXT, FIN, 5, key);
    CHECK(n == 6 && memcmp(h, "\x81\x85\x37\xfa\x21\x3d", 6) == 0);
    {
        uint8_t hello[] = "Hello";

        ws_mask(hello, 5, key, 0);
        CHECK(memcmp(hello, "\x7f\x9f\x4d\x51\x58", 5) == 0);
    }
    n = ws_frame_header(h, WS_OP_TEXT, 0, 3, NULL);
    CHECK(n == 2 && memcmp(h, "\x01\x03", 2) == 0);
    n = ws_frame_header(h, WS_OP_CONTINUATION, FIN, 2, NULL);
    CHECK(n == 2 && memcmp(h, "\x80\x02", 2) == 0);
    n = ws_frame_header(h, WS_OP_PING, FIN, 5, NULL);
    CHECK(n == 2 && memcmp(h, "\x89\x05", 2) == 0);
    n = ws_frame_header(h, WS_OP_BINARY, FIN, 256, NULL);
    CHECK(n == 4 && memcmp(h, "\x82\x7e\x01\x00", 4) == 0);
    n = ws_frame_header(h, WS_OP_BINARY, FIN, 65536, NULL);
    CHECK(n == 10 && memcmp(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
    n = ws_frame_header(h, WS_OP_TEXT, FIN | WS_RSV1, 0, NULL);
    CHECK(n == 2 && memcmp(h, "\xc1\x00", 2) == 0);

    /* Round trips through the parser. */
    for (masked = 0; masked < 2; masked++)
        for (i = 0; i < sizeof ops / sizeof *ops; i++)
            for (j = 0; j < sizeof lens / sizeof *lens; j++) {
                int op = ops[i], ctl = op >= 8;
                int flags = ctl ? FIN : op == 0 ? (int)(j & 1) * FIN
                                                : FIN | (int)(j & 1) * WS_RSV1;
                ws_parser_config cfg = masked ? server_cfg() : client_cfg();
                ws_parser *p;
                ws_event ev;
                size_t used;

                if ((ctl && lens[j] > 125) || (op == WS_OP_CLOSE && lens[j] == 1))
                    continue;
                cfg.max_message_size = 0;
                cfg.allow_rsv1 = 1;
                n = ws_frame_header(h, op, flags, lens[j], masked ? key : NULL);
                p = ws_parser_create(&cfg);
                if (op == 0) {   /* a continuation needs a message to continue */
                    uint8_t start[6] = { 0x01, 0x80, 0, 0, 0, 0 };

                    start[1] = masked ? 0x80 : 0x00;
                    used = 0;
                    do {
                        used += ws_parser_next(p, start + used, masked ? 6 - used : 2 - used, &ev);
                    } while (ev.type != WS_EV_NONE);
                }
                used = ws_parser_next(p, h, n, &ev);
                check_at(ev.type == WS_EV_FRAME && ev.opcode == op && ev.fin == !!(flags & FIN)
                         && ev.rsv == (flags & WS_RSV1) && ev.frame_length == lens[j],
                         __FILE__, __LINE__, "header round trip op %d len %llu masked %d",
                         op, (unsigned long long)lens[j], masked);
                /* Then the header is consumed whole, without complaint. */
                for (k = 0; k < 4 && used < n; k++) {
                    used += ws_parser_next(p, h + used, n - used, &ev);
                    CHECK(ev.type != WS_EV_ERROR);
                }
                CHECK_INT(used, n);
                ws_parser_destroy(p);
            }
}

static void test_close_payload(void)
{
    ws_parser_config cfg = server_cfg();
    uint8_t out[WS_MAX_CONTROL_SIZE];
    char reason[200];
    bytes s = { 0 }, want = { 0 };
    size_t n;
    static const struct { size_t ascii; const char *tail; size_t kept; } cuts[] = {
        { 121, "\xc3\xa9", 123 }, { 122, "\xc3\xa9", 122 }, { 120, "\xe2\x82\xac", 123 },
        { 121, "\xe2\x82\xac", 121 }, { 122, "\xe2\x82\xac", 122 },
        { 119, "\xf0\x9f\x98\x80", 123 }, { 120, "\xf0\x9f\x98\x80", 120 },
        { 122, "\xf0\x9f\x98\x80", 122 }, { 123, "\xc3\xa9", 123 }, { 130, "", 123 },
    };
    size_t i;

    CHECK_INT(ws_close_payload(out, 0, "ignored", 7), 0);
    n = ws_close_payload(out, 1000, "bye", 3);
    CHECK(n == 5 && memcmp(out, "\x03\xe8" "bye", 5) == 0);
    n = ws_close_payload(out, 4321, NULL, 0);
    CHECK(n == 2 && memcmp(out, "\x10\xe1", 2) == 0);

    for (i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        size_t len = cuts[i].ascii + strlen(cuts[i].tail);

        memset(reason, 'r', cuts[i].ascii);
        memcpy(reason + cuts[i].ascii, cuts[i].tail, strlen(cuts[i].tail));
        n = ws_close_payload(out, 1001, reason, len);
        check_at(n == 2 + cuts[i].kept && memcmp(out + 2, reason, n - 2) == 0,
                 __FILE__, __LINE__, "close payload cut %zu: got %zu", i, n);
        /* Whatever was cut, the result is a valid close frame. */
        clear(&s);
        cframe(&s, WS_OP_CLOSE, FIN, out, n);
        clear(&want);
        putf(&want, "close(1001,<%zu bytes>)", n - 2);
        EXPECT(&cfg, &s, str(&want));
    }
    drop(&s);
    drop(&want);
}

/* ------------------------------------------------------------- masking */

static void test_mask(void)
{
    static uint8_t buf[70000 + 32], ref[70000 + 32];
    const uint8_t key[4] = { 0xa1, 0x5c, 0x03, 0xf7 };
    size_t off, len, align, i;
    int bad = 0;

    for (align = 0; align < 16; align++)
        for (off = 0; off < 8; off++)
            for (len = 0; len <= 300; len += (len < 140 ? 1 : 37)) {
                for (i = 0; i < len + 32; i++)
                    buf[i] = ref[i] = (uint8_t)rnd();
                ws_mask(buf + align, len, key, off);
                for (i = 0; i < len; i++)
                    ref[align + i] ^= key[(off + i) % 4];
                if (memcmp(buf, ref, len + 32) != 0 && bad++ < 3)
                    printf("%s:%d: ws_mask differs: align %zu offset %zu len %zu\n",
                           __FILE__, __LINE__, align, off, len);
            }
    CHECK(bad == 0);

    /* Large, and the same as masking it in odd pieces. */
    for (i = 0; i < 70000 + 3; i++)
        buf[i] = ref[i] = (uint8_t)i;
    ws_mask(buf + 3, 70000, key, 2);
    for (off = 0; off < 70000; off += len) {
        len = 1 + rnd_below(999);
        if (off + len > 70000)
            len = 70000 - off;
        ws_mask(ref + 3 + off, len, key, 2 + off);
    }
    CHECK(memcmp(buf, ref, 70000 + 3) == 0);
    ws_mask(buf + 3, 70000, key, 2);
    for (i = 0; i < 70000 && buf[3 + i] == (uint8_t)(i + 3); i++)
        ;
    CHECK_INT(i, 70000);
}

/* --------------------------------------------------- UTF-8 vs reference */

/*
 * The reference knows nothing of UTF-8 rules: it encodes every Unicode
 * scalar value with a textbook encoder and records which byte strings
 * are complete encodings (2) or proper prefixes of one (1).  A validator
 * must reject at the first byte where the bytes since the last complete
 * character are neither.
 */
static uint8_t ref1[256], ref2[1 << 16], *ref3;

static size_t encode(uint32_t cp, uint8_t *o)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static void build_reference(void)
{
    uint32_t cp;
    uint8_t e[4];

    ref3 = calloc(1, 1 << 24);
    for (cp = 0; cp <= 0x10ffff; cp++) {
        size_t n;

        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        n = encode(cp, e);
        ref1[e[0]] |= n == 1 ? 2 : 1;
        if (n >= 2)
            ref2[e[0] << 8 | e[1]] |= n == 2 ? 2 : 1;
        if (n >= 3)
            ref3[e[0] << 16 | e[1] << 8 | e[2]] |= n == 3 ? 2 : 1;
    }
}

/* 0 impossible, 1 prefix, 2 complete: for the pending bytes seq[0..k). */
static int ref_class(const uint8_t *seq, size_t k)
{
    switch (k) {
    case 1: return ref1[seq[0]];
    case 2: return ref2[seq[0] << 8 | seq[1]];
    case 3: return ref3[seq[0] << 16 | seq[1] << 8 | seq[2]];
    default:
        /* Every 4-byte prefix was marked: the last byte is free (6 bits). */
        return ref3[seq[0] << 16 | seq[1] << 8 | seq[2]] == 1
               && (seq[3] & 0xc0) == 0x80 ? 2 : 0;
    }
}

/* Index of the first impossible byte; -1 valid; -2 valid but cut short. */
static long ref_validate(const uint8_t *s, size_t n)
{
    uint8_t seq[4];
    size_t i, k = 0;

    for (i = 0; i < n; i++) {
        int c;

        seq[k++] = s[i];
        c = ref_class(seq, k);
        if (c == 0)
            return (long)i;
        if (c == 2)
            k = 0;
    }
    return k ? -2 : -1;
}

static size_t random_text(uint8_t *o, size_t max)
{
    static const uint8_t odd[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                   0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed,
                                   0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf8,
                                   0xfe, 0xff };
    size_t n = 0, want = rnd_below(max + 1), mode = rnd_below(4);

    while (n + 4 <= want) {
        size_t r = rnd_below(100);

        if (mode == 0 || r < 50) {          /* a valid character */
            uint32_t cp;

            switch (rnd_below(5)) {
            case 0:  cp = (uint32_t)rnd_below(0x80); break;
            case 1:  cp = 0x80 + (uint32_t)rnd_below(0x780); break;
            case 2:  cp = 0x800 + (uint32_t)rnd_below(0xf800); break;
            case 3:  cp = 0x10000 + (uint32_t)rnd_below(0x100000); break;
            default: cp = (uint32_t)rnd_below(0x110000); break;
            }
            if (cp >= 0xd800 && cp <= 0xdfff && mode != 3)
                cp = 'x';
            if (cp >= 0xd800 && cp <= 0xdfff) {   /* encode it anyway */
                o[n++] = (uint8_t)(0xe0 | cp >> 12);
                o[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                o[n++] = (uint8_t)(0x80 | (cp & 0x3f));
            } else {
                n += encode(cp, o + n);
            }
        } else if (r < 80) {
            o[n++] = odd[rnd_below(sizeof odd)];
        } else if (r < 90) {
            o[n++] = (uint8_t)rnd();
        } else {
            o[n++] = (uint8_t)('a' + rnd_below(26));
        }
    }
    return n;
}

static void test_utf8_reference(void)
{
    static uint8_t s[2100];
    int bad_final = 0, bad_pos = 0, bad_split = 0, i;
    long valid = 0, cut = 0, rejected = 0;

    build_reference();
    for (i = 0; i < 300000; i++) {
        size_t n = random_text(s, i % 100 == 0 ? 2000 : i % 10 == 0 ? 200 : 40);
        long want = ref_validate(s, n);
        ws_utf8_state st = ws_utf8_feed(WS_UTF8_ACCEPT, s, n), part;
        size_t k, first_reject = n;

        valid += want == -1;
        cut += want == -2;
        rejected += want >= 0;
        if ((want == -1) != (st == WS_UTF8_ACCEPT) || (want >= 0) != (st == WS_UTF8_REJECT)) {
            if (bad_final++ < 3)
                printf("%s:%d: string %d: state %u, reference %ld\n",
                       __FILE__, __LINE__, i, (unsigned)st, want);
        }
        /* Fed byte by byte it must reject at exactly the reference's byte. */
        part = WS_UTF8_ACCEPT;
        for (k = 0; k < n && first_reject == n; k++) {
            part = ws_utf8_feed(part, s + k, 1);
            if (part == WS_UTF8_REJECT)
                first_reject = k;
        }
        if (want >= 0 ? first_reject != (size_t)want : first_reject != n || part != st) {
            if (bad_pos++ < 3)
                printf("%s:%d: string %d: rejected at %zu, reference %ld\n",
                       __FILE__, __LINE__, i, first_reject, want);
        }
        /* Split anywhere, same end state. */
        k = rnd_below(n + 1);
        part = ws_utf8_feed(ws_utf8_feed(WS_UTF8_ACCEPT, s, k), s + k, n - k);
        if (part != st && bad_split++ < 3)
            printf("%s:%d: string %d split at %zu differs\n", __FILE__, __LINE__, i, k);
    }
    CHECK(bad_final == 0);
    CHECK(bad_pos == 0);
    CHECK(bad_split == 0);
    /* The generator must have produced all three outcomes. */
    CHECK(valid > 10000 && cut > 1000 && rejected > 10000);
    CHECK_INT(ws_utf8_feed(WS_UTF8_REJECT, (const uint8_t *)"a", 1), WS_UTF8_REJECT);
    CHECK_INT(ws_utf8_feed(WS_UTF8_ACCEPT, NULL, 0), WS_UTF8_ACCEPT);
    free(ref3);
}

/* Long ASCII with one bad byte at each position: the bulk path must
 * find it wherever it falls within a block. */
static void test_utf8_ascii_blocks(void)
{
    static uint8_t s[300];
    size_t pos, bad = 0;
    const ws_utf8_state PENDING_AFTER_C3 = ws_utf8_feed(WS_UTF8_ACCEPT, (const uint8_t *)"\xc3", 1);

    memset(s, 'a', sizeof s);
    CHECK_INT(ws_utf8_feed(WS_UTF8_ACCEPT, s, sizeof s), WS_UTF8_ACCEPT);
    for (pos = 0; pos < sizeof s; pos++) {
        s[pos] = 0x80;
        bad += ws_utf8_feed(WS_UTF8_ACCEPT, s, sizeof s) != WS_UTF8_REJECT;
        s[pos] = 0xc3;   /* a lead byte followed by 'a' (or by nothing) */
        bad += ws_utf8_feed(WS_UTF8_ACCEPT, s, sizeof s)
               != (pos + 1 < sizeof s ? WS_UTF8_REJECT : PENDING_AFTER_C3);
        s[pos] = 'a';
    }
    CHECK_INT(bad, 0);
}

/* --------------------------------------------------- random streams */

static void random_payload(bytes *b, int text)
{
    uint8_t tmp[400];
    size_t n;

    clear(b);
    if (text && rnd_below(10)) {
        n = random_text(tmp, rnd_below(3) ? 30 : 300);
        if (rnd_below(4))   /* mostly valid text */
            while (n > 0 && ref_validate(tmp, n) != -1)
                n--;
    } else {
        n = rnd_below(4) ? rnd_below(30) : rnd_below(400);
        for (size_t i = 0; i < n; i++)
            tmp[i] = (uint8_t)rnd();
    }
    put(b, tmp, n);
}

static void random_stream(bytes *s)
{
    bytes pl = { 0 };
    int frames = 1 + (int)rnd_below(8), in_msg = 0, i, text = 0;

    clear(s);
    for (i = 0; i < frames; i++) {
        size_t r = rnd_below(100);
        int op, flags = rnd_below(3) ? FIN : 0;

        if (r < 20) {
            op = 8 + (int)rnd_below(3);
            flags = FIN;
            clear(&pl);
            if (op == WS_OP_CLOSE && rnd_below(2)) {
                static const unsigned codes[] = { 1000, 1001, 1004, 1005, 1016, 3000, 5000 };
                uint8_t c[2];
                unsigned code = codes[rnd_below(7)];

                c[0] = (uint8_t)(code >> 8);
                c[1] = (uint8_t)code;
                put(&pl, c, 2);
            } else if (op != WS_OP_CLOSE) {
                random_payload(&pl, 0);
                if (pl.len > 125 && rnd_below(4))
                    pl.len = 125;
            }
        } else if (r < 95) {
            op = in_msg ? WS_OP_CONTINUATION : rnd_below(2) ? WS_OP_TEXT : WS_OP_BINARY;
            if (!in_msg)
                text = op == WS_OP_TEXT;
            if (!in_msg && rnd_below(10) == 0)
                flags |= WS_RSV1;
            in_msg = !(flags & FIN);
            random_payload(&pl, text);
        } else {   /* some protocol violation */
            op = (int)rnd_below(16);
            flags = (int)rnd() & 0xf0;
            random_payload(&pl, 0);
        }
        if (rnd_below(50) == 0)
            sframe(s, op, flags, pl.p, pl.len);
        else
            cframe(s, op, flags, pl.p, pl.len);
    }
    drop(&pl);
}

/* Any stream gives the same events however it is fed, assembled or not. */
static void test_random_streams(void)
{
    static const uint64_t limits[] = { 0, 1, 50, 300, 1 << 20 };
    bytes s = { 0 };
    int i, bad = 0;

    build_reference();
    for (i = 0; i < 3000; i++) {
        ws_parser_config cfg = server_cfg();
        run_result whole, r;
        size_t piece, modes;

        memset(&whole, 0, sizeof whole);
        memset(&r, 0, sizeof r);
        cfg.max_message_size = limits[rnd_below(5)];
        cfg.allow_rsv1 = (int)rnd_below(2);
        cfg.allow_reserved_close_codes = (int)rnd_below(2);
        random_stream(&s);
        run(&whole, &cfg, &s, 0, 0, RUN_FRAMES | RUN_MERGE);
        for (modes = 0; modes < 4; modes++) {
            ws_parser_config c = cfg;

            c.assemble = (int)(modes & 1);
            piece = modes < 2 ? 1 : 1 + rnd_below(20);
            run(&r, &c, &s, piece, piece, RUN_FRAMES | RUN_MERGE);
            /* (Chunks of a message cut short by an error are data too.) */
            if ((strcmp(str(&r.trace), str(&whole.trace)) || r.consumed != whole.consumed
                 || (c.assemble && r.data.len != whole.data.len)
                 || r.broken.len || whole.broken.len)
                && bad++ < 3)
                printf("%s:%d: random stream %d (assemble %d, piece %zu):\n"
                       "    whole %s [%zu]\n    piece %s [%zu] %s\n",
                       __FILE__, __LINE__, i, c.assemble, piece, str(&whole.trace),
                       whole.consumed, str(&r.trace), r.consumed, str(&r.broken));
        }
        drop_result(&whole);
        drop_result(&r);
    }
    CHECK_INT(bad, 0);
    free(ref3);
    drop(&s);
}

int main(void)
{
    test_opcodes();
    test_length_encodings();
    test_non_minimal_lengths();
    test_masking();
    test_reserved_bits();
    test_control_frames();
    test_fragmentation();
    test_chunk_sequences();
    test_utf8_in_messages();
    test_close_codes();
    test_size_limit();
    test_events_before_error();
    test_terminal_states();
    test_documented_loop();
    test_zero_copy_and_copy();
    test_quiet_frames();
    test_frame_header();
    test_close_payload();
    test_mask();
    test_utf8_reference();
    test_utf8_ascii_blocks();
    test_random_streams();
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
