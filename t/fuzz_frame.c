/*
 * t/fuzz_frame.c - libFuzzer target for the frame parser (ws_frame.c).
 *
 *   make fuzz                  (all targets; see the Makefile)
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined t/fuzz_frame.c ws_frame.c \
 *         -o /tmp/fuzz_frame && /tmp/fuzz_frame -max_total_time=60
 *
 * Without libFuzzer (make unit, replaying a crash), with t/fuzz_standalone.c:
 *
 *   t/fuzz_frame_replay [file-or-dir...]   (none: seeded random inputs)
 *
 * Input: byte 0 picks the configuration, byte 1 seeds the piece sizes,
 * the rest is the byte stream.  The stream is parsed four times: whole;
 * in random pieces of up to 226 bytes, both assembled and as chunks; and
 * cut at up to 8 random points anywhere (a piece may be most of the
 * stream), chosen from a hash of the whole input so that a run is
 * reproducible.  Each piece lives in a buffer of exactly its size, so
 * ASan sees any read past what was given.  Every event is checked for
 * sanity, and the runs must agree on the events (chunks merged into
 * messages) and bytes consumed.
 */
#include "../ws_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz_frame"
#include "fuzz.h"

static const uint64_t limits[8] = { 0, 1, 20, 100, 125, 126, 1000, 65536 };

/* FNV-1a, to compare event sequences between runs. */
static uint64_t mix(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;

    while (n--)
        h = (h ^ *p++) * 0x100000001b3ull;
    return h;
}

static uint64_t mix_u64(uint64_t h, uint64_t v)
{
    return mix(h, &v, sizeof v);
}

typedef struct {
    ws_parser_config cfg;
    ws_parser *p;
    uint64_t digest;       /* the events so far */
    size_t consumed;
    int done;              /* reached ERROR or CLOSE */
    /* a message being delivered as chunks */
    int in_message, opcode, compressed;
    uint64_t msg_hash;
    size_t msg_len;
} run_state;

static void digest_message(run_state *r, int opcode, int compressed,
                           uint64_t data_hash, size_t len)
{
    r->digest = mix_u64(r->digest, WS_EV_MESSAGE);
    r->digest = mix_u64(r->digest, (uint64_t)opcode << 8 | (uint64_t)compressed);
    r->digest = mix_u64(r->digest, len);
    r->digest = mix_u64(r->digest, data_hash);
}

static void check_frame(const run_state *r, const ws_event *ev)
{
    int op = ev->opcode;

    ASSERT(op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG));
    ASSERT(ev->frame_length >> 63 == 0);
    ASSERT((ev->rsv & ~WS_RSV1) == 0);
    ASSERT(!ev->rsv || (r->cfg.allow_rsv1 && (op == WS_OP_TEXT || op == WS_OP_BINARY)));
    if (op >= WS_OP_CLOSE)
        ASSERT(ev->fin && ev->frame_length <= WS_MAX_CONTROL_SIZE);
    if (op < WS_OP_CLOSE && r->cfg.max_message_size)
        ASSERT(ev->frame_length <= r->cfg.max_message_size);
}

static void check_chunk(run_state *r, const ws_event *ev)
{
    ASSERT(!r->cfg.assemble);
    ASSERT(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
    ASSERT(ev->first == !r->in_message);
    if (ev->first) {
        r->in_message = 1;
        r->opcode = ev->opcode;
        r->compressed = ev->compressed;
        r->msg_hash = 0xcbf29ce484222325ull;
        r->msg_len = 0;
    }
    ASSERT(ev->opcode == r->opcode && ev->compressed == r->compressed);
    r->msg_hash = mix(r->msg_hash, ev->data, ev->len);
    r->msg_len += ev->len;
    if (r->cfg.max_message_size)
        ASSERT(r->msg_len <= r->cfg.max_message_size);
    if (ev->last) {
        digest_message(r, r->opcode, r->compressed, r->msg_hash, r->msg_len);
        r->in_message = 0;
    }
}

static void check_message(run_state *r, const ws_event *ev)
{
    ASSERT(r->cfg.assemble);
    ASSERT(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
    ASSERT(!ev->compressed || r->cfg.allow_rsv1);
    if (r->cfg.max_message_size)
        ASSERT(ev->len <= r->cfg.max_message_size);
    if (ev->opcode == WS_OP_TEXT && !ev->compressed)
        ASSERT(ws_utf8_feed(WS_UTF8_ACCEPT, ev->data, ev->len) == WS_UTF8_ACCEPT);
    digest_message(r, ev->opcode, ev->compressed,
                   mix(0xcbf29ce484222325ull, ev->data, ev->len), ev->len);
}

static void check_close(const run_state *r, const ws_event *ev)
{
    ASSERT(ev->len <= WS_MAX_CONTROL_SIZE - 2);
    if (ev->close_code == WS_CLOSE_NO_STATUS)
        ASSERT(ev->len == 0);
    else
        ASSERT(ws_close_code_valid(ev->close_code, r->cfg.allow_reserved_close_codes));
    ASSERT(ws_utf8_feed(WS_UTF8_ACCEPT, ev->data, ev->len) == WS_UTF8_ACCEPT);
}

static void check_event(run_state *r, const ws_event *ev, const uint8_t *in, size_t len)
{
    int in_input = ev->data >= in && ev->data <= in + len;

    ASSERT(ev->len == 0 || ev->data != NULL);
    if (in_input)
        ASSERT(ev->len <= (size_t)(in + len - ev->data));
    if (r->cfg.max_message_size)
        ASSERT(ws_parser_buffered(r->p) <= r->cfg.max_message_size);
    switch (ev->type) {
    case WS_EV_FRAME:
        check_frame(r, ev);
        r->digest = mix_u64(r->digest, WS_EV_FRAME);
        r->digest = mix_u64(r->digest, (uint64_t)ev->opcode << 16 | (uint64_t)ev->fin << 8
                                       | (uint64_t)ev->rsv);
        r->digest = mix_u64(r->digest, ev->frame_length);
        return;
    case WS_EV_CHUNK:
        ASSERT(ev->len == 0 || in_input);
        check_chunk(r, ev);
        return;
    case WS_EV_MESSAGE:
        check_message(r, ev);
        return;
    case WS_EV_PING:
    case WS_EV_PONG:
        ASSERT(ev->len <= WS_MAX_CONTROL_SIZE);
        break;
    case WS_EV_CLOSE:
        check_close(r, ev);
        r->done = 1;
        break;
    case WS_EV_ERROR:
        ASSERT(ev->close_code == WS_CLOSE_PROTOCOL_ERROR
               || ev->close_code == WS_CLOSE_INVALID_DATA
               || ev->close_code == WS_CLOSE_TOO_BIG);
        ASSERT(ev->reason != NULL);
        r->done = 1;
        r->digest = mix_u64(r->digest, (uint64_t)ev->type << 16 | ev->close_code);
        return;
    default:
        FAIL("bad event type %d", (int)ev->type);
    }
    r->digest = mix_u64(r->digest, (uint64_t)ev->type << 16 | ev->close_code);
    r->digest = mix(r->digest, ev->data, ev->len);
}

/* Parses in[0..len) until the parser wants more; returns bytes used. */
static size_t feed(run_state *r, uint8_t *in, size_t len)
{
    size_t pos = 0, calls = 0;
    ws_event ev, again;

    if (r->done)
        return 0;
    for (;;) {
        size_t used = ws_parser_next(r->p, in + pos, len - pos, &ev);

        ASSERT(used <= len - pos);
        pos += used;
        if (ev.type == WS_EV_NONE) {
            ASSERT(pos == len);
            break;
        }
        check_event(r, &ev, in, len);
        if (r->done)
            break;
        ASSERT(++calls <= 2 * len + 8);
    }
    if (r->done) {
        /* Terminal: nothing more is consumed, the same answer comes back. */
        ws_event_type want = ev.type == WS_EV_ERROR ? WS_EV_ERROR : WS_EV_NONE;

        ASSERT(ws_parser_next(r->p, in + pos, len - pos, &again) == 0);
        ASSERT(again.type == want);
        if (want == WS_EV_ERROR)
            ASSERT(again.close_code == ev.close_code);
    }
    r->consumed += pos;
    return pos;
}

static void run_init(run_state *r, uint8_t conf, int assemble)
{
    memset(r, 0, sizeof *r);
    r->cfg.role = conf & 1 ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    r->cfg.assemble = assemble;
    r->cfg.allow_rsv1 = (conf >> 2) & 1;
    r->cfg.allow_reserved_close_codes = (conf >> 3) & 1;
    r->cfg.max_message_size = limits[(conf >> 4) & 7];
    r->digest = 0xcbf29ce484222325ull;
    r->p = ws_parser_create(&r->cfg);
    ASSERT(r->p != NULL);
}

static void run_whole(run_state *r, const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);

    memcpy(copy, data, size);
    feed(r, copy, size);
    free(copy);
}

/* Feeds the stream in pieces of 1..max bytes, each in a buffer of its
 * own exact size that also holds what the last call left unconsumed. */
static void run_pieces(run_state *r, const uint8_t *data, size_t size,
                       uint32_t seed, size_t max)
{
    uint8_t *window = NULL;
    size_t left = 0, at = 0;

    while (at < size && !r->done) {
        size_t piece, used;
        uint8_t *next;

        seed = seed * 1103515245u + 12345u;
        piece = 1 + (seed >> 16) % max;
        if (piece > size - at)
            piece = size - at;
        next = malloc(left + piece);
        if (left)
            memcpy(next, window, left);
        memcpy(next + left, data + at, piece);
        free(window);
        window = next;
        at += piece;
        used = feed(r, window, left + piece);
        left = left + piece - used;
        memmove(window, window + used, left);
    }
    free(window);
}

/* Feeds the stream cut at positions from cuts[] (sorted, each <= size),
 * with what a piece leaves unconsumed carried into the next one. */
static void run_cuts(run_state *r, const uint8_t *data, size_t size,
                     const size_t *cuts, size_t ncuts)
{
    uint8_t *window = NULL;
    size_t left = 0, at = 0, i;

    for (i = 0; i <= ncuts && !r->done; i++) {
        size_t to = i < ncuts ? cuts[i] : size, used;
        uint8_t *next;

        if (to == at)
            continue;
        next = malloc(left + (to - at));
        if (left)
            memcpy(next, window, left);
        memcpy(next + left, data + at, to - at);
        free(window);
        window = next;
        left += to - at;
        at = to;
        used = feed(r, window, left);
        left -= used;
        memmove(window, window + used, left);
    }
    free(window);
}

/* 1 to 8 cut points spread over the whole stream, from the input's hash. */
static size_t pick_cuts(const uint8_t *input, size_t input_size, size_t size,
                        size_t *cuts)
{
    uint64_t h = mix(0xcbf29ce484222325ull, input, input_size);
    size_t n = 1 + (size_t)(h & 7), i, j;

    for (i = 0; i < n; i++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        cuts[i] = size ? (size_t)((h >> 33) % (size + 1)) : 0;
        for (j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];

            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    }
    return n;
}

static void compare(const run_state *a, const run_state *b, const char *what)
{
    if (a->digest != b->digest || a->consumed != b->consumed || a->done != b->done)
        FAIL("%s differs: digest %016llx/%016llx consumed %zu/%zu done %d/%d", what,
             (unsigned long long)a->digest, (unsigned long long)b->digest,
             a->consumed, b->consumed, a->done, b->done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_state whole, split, other, cut;
    const uint8_t *input = data;
    size_t input_size = size, cuts[8], ncuts;
    uint8_t conf;
    uint32_t seed;
    size_t max;

    if (size < 2)
        return 0;
    conf = data[0];
    seed = data[1];
    max = 1 + (data[1] & 0x0f) * (data[1] & 0x0f);   /* pieces of 1 to 226 bytes */
    data += 2;
    size -= 2;

    run_init(&whole, conf, (conf >> 1) & 1);
    run_whole(&whole, data, size);
    ASSERT(whole.consumed <= size);

    run_init(&split, conf, (conf >> 1) & 1);
    run_pieces(&split, data, size, seed, max);
    compare(&whole, &split, "split feed");

    run_init(&other, conf, !((conf >> 1) & 1));
    run_pieces(&other, data, size, seed ^ 0x5555, max);
    compare(&whole, &other, "other assemble mode");

    ncuts = pick_cuts(input, input_size, size, cuts);
    run_init(&cut, conf, (conf >> 1) & 1);
    run_cuts(&cut, data, size, cuts, ncuts);
    compare(&whole, &cut, "feed cut at random points");

    ws_parser_destroy(whole.p);
    ws_parser_destroy(split.p);
    ws_parser_destroy(other.p);
    ws_parser_destroy(cut.p);
    return 0;
}

#ifdef FUZZ_STANDALONE
/* ---- seeded random inputs for t/fuzz_standalone.c ---- */
int fuzz_standalone_default(void);

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? (uint32_t)(rng % n) : 0;
}

static size_t random_payload(uint8_t *out, int op, size_t len)
{
    static const char *const chars[] = { "a", "z", " ", "\xc3\xa9", "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80", "\xed\x9f\xbf" };
    size_t n = 0;

    if (op == WS_OP_CLOSE && len >= 2 && rnd(4)) {
        static const unsigned codes[] = { 1000, 1001, 1004, 1005, 1016, 2999, 3000, 4999, 5000 };
        unsigned code = codes[rnd(9)];

        out[n++] = (uint8_t)(code >> 8);
        out[n++] = (uint8_t)code;
    }
    while (n < len) {
        const char *c = chars[rnd(7)];
        size_t k = strlen(c);

        if (op == WS_OP_BINARY || rnd(30) == 0 || n + k > len) {
            out[n++] = (uint8_t)rnd(256);
            continue;
        }
        memcpy(out + n, c, k);
        n += k;
    }
    return n;
}

/* Mostly well-formed frames with the occasional broken one, so that the
 * parser gets deep: pure noise fails at the first byte or two. */
static int random_opcode(int in_message)
{
    static const int controls[] = { WS_OP_PING, WS_OP_PONG, WS_OP_PING, WS_OP_CLOSE };
    uint32_t r = rnd(100);

    if (r < 15)
        return controls[rnd(4)];
    if (r < 20)
        return (int)rnd(16);
    if (in_message)
        return WS_OP_CONTINUATION;
    return rnd(2) ? WS_OP_TEXT : WS_OP_BINARY;
}

static size_t random_input(uint8_t *out, size_t cap)
{
    size_t n = 2, frames = 1 + rnd(12);
    int client = rnd(2), in_message = 0, msg_op = WS_OP_BINARY;

    out[0] = (uint8_t)((rnd(256) & ~1u) | (unsigned)client);
    out[1] = (uint8_t)rnd(256);
    while (frames-- && n + WS_MAX_HEADER_SIZE + 300 < cap) {
        uint8_t key[4] = { (uint8_t)rnd(256), (uint8_t)rnd(256), (uint8_t)rnd(256), 0 };
        int op = random_opcode(in_message);
        int flags = op >= WS_OP_CLOSE || rnd(3) ? WS_FIN : 0;
        size_t len = rnd(4) ? rnd(20) : rnd(300), h;

        if (op >= WS_OP_CLOSE && len > 125 && rnd(4))
            len = rnd(126);
        if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && rnd(8) == 0)
            flags |= WS_RSV1;
        if (rnd(40) == 0)
            flags |= (int)rnd(8) << 4;
        if (op == WS_OP_TEXT || op == WS_OP_BINARY)
            msg_op = op;
        if (op <= WS_OP_BINARY)
            in_message = !(flags & WS_FIN);
        h = ws_frame_header(out + n, op, flags, len, client ? NULL : key);
        n += h;
        random_payload(out + n, op == WS_OP_CONTINUATION ? msg_op : op, len);
        if (!client)
            ws_mask(out + n, len, key, 0);
        n += len;
        if (rnd(30) == 0)
            out[n - 1 - rnd((uint32_t)(h + len))] ^= (uint8_t)(1u << rnd(8));
    }
    if (rnd(10) == 0)
        n -= rnd((uint32_t)n - 1);
    return n;
}

/* Without arguments, t/fuzz_frame_replay runs this many seeded inputs. */
int fuzz_standalone_default(void)
{
    static uint8_t buf[8192];
    int i;

    for (i = 0; i < 5000; i++) {
        size_t n = random_input(buf, sizeof buf);

        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz_frame: %d random inputs ok\n", i);
    return 0;
}
#endif
