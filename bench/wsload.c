/*
 * wsload - WebSocket (RFC 6455) load generator for mod_websocket benchmarks.
 *
 *   wsload [options] ws://HOST:PORT/PATH
 *   wsload --raw [options] HOST:PORT          (against bench/tcpecho)
 *
 * Echo mode (default): every connection keeps --depth messages in flight;
 * each echo is verified byte for byte, its round-trip time recorded and the
 * next message sent (closed loop).  Idle mode (--idle): open and hold
 * connections, optionally echo one message on each at the end.
 *
 * --procs P forks P workers, each with its own epoll loop and share of the
 * connections; they report to the parent over pipes and the parent prints
 * exactly one key=value summary line on stdout.  Diagnostics go to stderr.
 *
 * Traffic is restricted to 127.0.0.0/8 by design.  See bench/README.md.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <zlib.h>

#define NS_PER_S  1000000000ull
#define NS_PER_MS 1000000ull

#define WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_ATTEMPTS     4                    /* first try + 3 retries */
#define RETRY_DELAY_NS   (250 * NS_PER_MS)    /* constant, so a FIFO stays sorted */
#define READ_BUF_SIZE    (256 * 1024)
#define MAX_EVENTS       512
#define HANDSHAKE_MAX    4096
#define CLOSE_DRAIN_NS   (2 * NS_PER_S)
#define TIMEOUT_SCAN_NS  (200 * NS_PER_MS)
#define MAX_LOOP_WAIT_MS 100
#define MAX_REPORTED_ERRORS 5
#define MAX_CPU_PIDS     32
#define MAX_PROCS        64

/* Payload layout: TAG_LEN hex digits of the sequence number (so a reordered
 * or duplicated echo is caught even when the rest is identical), then a
 * slice of a fixed pattern whose start depends on the sequence number. */
#define TAG_LEN        8
#define PATTERN_PERIOD 251

#define WS_OP_CONT   0x0
#define WS_OP_TEXT   0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE  0x8
#define WS_OP_PING   0x9
#define WS_OP_PONG   0xA
#define WS_MAX_HEADER 14
#define WS_RSV1      0x40

/* -t json: this many different documents per worker (fewer for very large
 * messages), picked by sequence number; the tag sits inside the first
 * string value: {"seq":"XXXXXXXX",... */
#define JSON_VARIANTS  64
#define JSON_TAG_OFF   8
#define JSON_MIN_SIZE  32

/* The 4 bytes a sync flush ends with (RFC 7692 7.2.1). */
static const uint8_t DEFLATE_TAIL[4] = { 0x00, 0x00, 0xff, 0xff };

/* conn.pmd: what permessage-deflate negotiated for this connection */
#define PMD_ON             1
#define PMD_SERVER_NO_CTX  2    /* server resets its compressor per message */
#define PMD_CLIENT_NO_CTX  4    /* we reset ours per message */

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

struct options {
    long conns;
    size_t size;
    bool binary, json;
    bool deflate, deflate_takeover;
    int deflate_level;
    int depth;
    double duration, warmup, hold, timeout, rate;
    long max_pending;
    bool idle, ping_after, raw, cpu_children;
    int procs;
    bool src_bind;
    uint32_t src_lo, src_hi;          /* host byte order, inclusive */
    pid_t cpu_pids[MAX_CPU_PIDS];
    int n_cpu_pids;
    struct sockaddr_in dst;
    char host_header[300];
    char path[1024];
    char protocol[256];
    const char *ready_file;
};

static struct options opt = {
    .conns = 64, .size = 32, .depth = 1, .deflate_level = 1,
    .duration = 10, .warmup = 1, .hold = 5, .timeout = 10, .rate = 2000,
    .max_pending = 1000, .procs = 1, .src_bind = true,
    .src_lo = 0x7f000101, .src_hi = 0x7f0001fa,   /* 127.0.1.1 .. 127.0.1.250 */
    .path = "/",
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t secs_to_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

/* ------------------------------------------------------------------------ */
/* Small utilities                                                           */

/* xorshift64*: masks and keys only need to be unpredictable to proxies,
 * not cryptographically strong, and this costs a few cycles per frame. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = now_ns() ^ ((uint64_t)getpid() << 32);
    return seed ? seed : 0x9E3779B97F4A7C15ull;
}

static void base64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = digits[v >> 18];
        *out++ = digits[(v >> 12) & 63];
        *out++ = digits[(v >> 6) & 63];
        *out++ = digits[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *out++ = digits[v >> 18];
        *out++ = digits[(v >> 12) & 63];
        *out++ = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

/* Sec-WebSocket-Accept for a key: base64(SHA1(key + GUID)), 28 chars. */
static void websocket_accept(const char *key, char out[29])
{
    char joined[128];
    int n = snprintf(joined, sizeof joined, "%s%s", key, WS_GUID);
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)joined, (size_t)n, digest);
    base64_encode(digest, sizeof digest, out);
}

/* Guards against a broken crypto build: the example from RFC 6455 1.3. */
static void check_accept_computation(void)
{
    char accept[29];
    websocket_accept("dGhlIHNhbXBsZSBub25jZQ==", accept);
    if (strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0)
        die("Sec-WebSocket-Accept self-check failed (%s)", accept);
}

/* ------------------------------------------------------------------------ */
/* Latency histogram: log-linear, 32 linear sub-buckets per power of two    */
/* (about 3% resolution), values in nanoseconds.  Fixed size so workers can */
/* ship it through a pipe and the parent can add them up.                   */

#define HIST_SUB_BITS  5
#define HIST_SUB       (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 40
#define HIST_BUCKETS   ((HIST_MAX_SHIFT + 2) * HIST_SUB)

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
    if (shift > HIST_MAX_SHIFT)
        return HIST_BUCKETS - 1;
    return shift * HIST_SUB + (unsigned)(v >> shift);
}

/* Middle of the bucket: the best single guess for values that fell in it. */
static uint64_t hist_bucket_mid(unsigned idx)
{
    if (idx < 2 * HIST_SUB)
        return idx;
    unsigned shift = idx / HIST_SUB - 1;
    uint64_t low = (uint64_t)(idx - shift * HIST_SUB) << shift;
    return low + ((1ull << shift) >> 1);
}

struct result {
    uint64_t opened, failed, echoed, errors, msgs;
    /* data frames on the wire (headers included) for the messages counted:
     * wire_tx over tx_msgs sent in the interval, wire_rx over msgs */
    uint64_t tx_msgs, wire_tx, wire_rx, pmd_conns;
    uint64_t max_ns;
    uint64_t hist[HIST_BUCKETS];
};

static void result_add_latency(struct result *r, uint64_t ns)
{
    r->hist[hist_index(ns)]++;
    if (ns > r->max_ns)
        r->max_ns = ns;
}

static void result_merge(struct result *into, const struct result *from)
{
    into->opened += from->opened;
    into->failed += from->failed;
    into->echoed += from->echoed;
    into->errors += from->errors;
    into->msgs += from->msgs;
    into->tx_msgs += from->tx_msgs;
    into->wire_tx += from->wire_tx;
    into->wire_rx += from->wire_rx;
    into->pmd_conns += from->pmd_conns;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->hist[i] += from->hist[i];
}

static double result_percentile_us(const struct result *r, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += r->hist[i];
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)total), seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += r->hist[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_mid(i);
            return (double)(v < r->max_ns ? v : r->max_ns) / 1e3;
        }
    }
    return (double)r->max_ns / 1e3;
}

/* ------------------------------------------------------------------------ */
/* Connections and workers                                                   */

enum conn_state {
    CS_NEW,          /* not tried yet */
    CS_CONNECTING,   /* TCP connect in progress */
    CS_HANDSHAKE,    /* upgrade request sent, waiting for 101 */
    CS_OPEN,
    CS_RETRY_WAIT,
    CS_CLOSING,      /* our Close sent, draining until the server closes */
    CS_FAILED,       /* never opened */
    CS_DEAD,         /* opened, then broke (counted as an error) */
    CS_DONE,
};

struct outbuf {
    uint8_t *data;
    size_t off, len, cap;
};

struct handshake {
    char accept[29];
    size_t len;
    char buf[HANDSHAKE_MAX + 1];
};

struct conn {
    int fd;
    uint8_t state, attempts;
    /* Incremental frame parser: a frame may arrive split anywhere, and a
     * shared read buffer keeps per-connection memory small at 100k sockets. */
    uint8_t in_payload, hdr_have, hdr_need;
    uint8_t frame_opcode, frame_fin, in_message, ctrl_len;
    uint8_t pmd, msg_compressed;       /* PMD_* flags; RSV1 on this message */
    uint8_t hdr[WS_MAX_HEADER];
    uint8_t ctrl[125];
    uint64_t frame_left;
    size_t msg_off;
    uint64_t msg_wire;             /* wire bytes of the message being received */
    z_stream *inflater, *deflater; /* --deflate only, created on first use */
    uint32_t next_seq, recv_seq;   /* in flight = next_seq - recv_seq */
    uint64_t deadline;             /* attempt timeout, or retry time */
    struct handshake *hs;
    struct outbuf out;
};

enum phase { PH_CONNECT, PH_WAIT_GO, PH_RUN, PH_HOLD, PH_PING, PH_CLOSING, PH_DONE };

struct worker {
    int id, epfd, go_fd, report_fd;
    long n, first;                 /* connection count, first global index */
    struct conn *conns;
    uint64_t *sent_ns;             /* depth send times per connection */
    uint8_t *rbuf, *pattern;
    uint8_t *json;                 /* -t json: json_variants documents of opt.size */
    uint8_t *plain, *zbuf;         /* --deflate: message before/after deflate */
    size_t zbuf_cap;
    uint8_t *ibuf;                 /* --deflate: inflate output */
    z_stream *shared_deflater;     /* client_no_context_takeover: one per worker */
    uint64_t rng;
    enum phase phase;
    uint64_t phase_deadline, measure_start, measure_end;
    /* connect scheduling */
    long next_fresh, pending, resolved, n_open, n_closing, ping_waiting;
    long *retry_ring, retry_head, retry_count;
    double tokens;
    uint64_t last_refill, next_timeout_scan;
    int reported;
    struct result res;
};

static long conn_index(const struct worker *w, const struct conn *c)
{
    return (long)(c - w->conns);
}

static void report_error(struct worker *w, const struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_error(struct worker *w, const struct conn *c, const char *fmt, ...)
{
    w->res.errors++;
    if (w->reported++ >= MAX_REPORTED_ERRORS)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wsload: worker %d conn %ld: ", w->id,
            c ? w->first + conn_index(w, c) : -1L);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Output buffer                                                             */

static uint8_t *outbuf_reserve(struct outbuf *b, size_t n)
{
    if (b->off == b->len)
        b->off = b->len = 0;
    if (b->cap - b->len >= n)
        return b->data + b->len;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            die("out of memory (output buffer of %zu bytes)", cap);
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

static void outbuf_free(struct outbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Returns false on a write error; true when everything was written or the
 * socket is full (the edge-triggered EPOLLOUT will call us again). */
static bool outbuf_flush(struct outbuf *b, int fd)
{
    while (b->off < b->len) {
        ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n > 0) {
            b->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            return false;
        }
    }
    b->off = b->len = 0;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Payload generation, masking and verification                              */

static size_t json_variants(void)
{
    size_t v = ((size_t)64 << 20) / opt.size;      /* at most 64 MiB of them */
    return v < 1 ? 1 : v > JSON_VARIANTS ? JSON_VARIANTS : v;
}

/* One JSON document of exactly opt.size bytes, like an API's list reply:
 * an array of user records with repeated keys, a few word values, numbers
 * and timestamps (compresses about as well as real JSON: 3-5x with zlib
 * on a 1 KiB message).  "seq" holds 8 placeholder characters that
 * write_payload replaces with the sequence number. */
static void make_json(uint8_t *dst, size_t size, uint64_t variant)
{
    static const char *const first[] = {
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil",
    };
    static const char *const last[] = {
        "smith", "jones", "garcia", "miller", "davis", "martin", "lopez",
        "wilson", "moore", "taylor", "thomas", "white",
    };
    static const char *const tags[] = {
        "admin", "beta", "billing", "support", "staff", "trial", "premium",
        "mobile", "desktop", "eu", "us", "apac",
    };
    uint64_t rng = 0x9E3779B97F4A7C15ull * (variant + 1);
    char *out = (char *)dst;
    size_t len = (size_t)snprintf(out, size + 1, "{\"seq\":\"%.*s\",\"items\":[",
                                  TAG_LEN, "????????");
    bool first_item = true;
    for (;;) {
        char item[512];
        uint64_t r = rng_next(&rng);
        const char *fn = first[r % 16], *ln = last[(r >> 8) % 12];
        unsigned id = (unsigned)(1000 + (r >> 16) % 90000);
        int n = snprintf(item, sizeof item,
            "%s{\"id\":%u,\"name\":\"%s %s\",\"email\":\"%s.%s@example.com\","
            "\"active\":%s,\"score\":%u.%02u,\"tags\":[\"%s\",\"%s\"],"
            "\"created\":\"2024-%02u-%02uT%02u:%02u:%02uZ\"}",
            first_item ? "" : ",", id, fn, ln, fn, ln, (r >> 40) & 1 ? "true" : "false",
            (unsigned)((r >> 24) % 100), (unsigned)((r >> 32) % 100),
            tags[(r >> 44) % 12], tags[(r >> 50) % 12],
            (unsigned)(1 + (r >> 20) % 12), (unsigned)(1 + (r >> 28) % 28),
            (unsigned)((r >> 36) % 24), (unsigned)((r >> 42) % 60),
            (unsigned)((r >> 48) % 60));
        if (len + (size_t)n + 2 > size)
            break;
        memcpy(out + len, item, (size_t)n);
        len += (size_t)n;
        first_item = false;
    }
    memset(out + len, ' ', size - 2 - len);       /* whitespace is valid JSON */
    memcpy(out + size - 2, "]}", 2);
}

static void build_pattern(struct worker *w)
{
    if (opt.json) {
        size_t v = json_variants();
        w->json = malloc(v * opt.size + 1);
        if (!w->json)
            die("out of memory (json documents)");
        for (size_t k = 0; k < v; k++)
            make_json(w->json + k * opt.size, opt.size, k);
        return;
    }
    size_t n = opt.size + PATTERN_PERIOD;
    w->pattern = malloc(n);
    if (!w->pattern)
        die("out of memory (pattern)");
    for (size_t i = 0; i < n; i++) {
        if (opt.binary)
            w->pattern[i] = (uint8_t)rng_next(&w->rng);   /* all byte values */
        else
            w->pattern[i] = (uint8_t)('!' + (i * 7 + i / 89) % 94);  /* printable ASCII */
    }
}

static void make_tag(uint32_t seq, uint8_t tag[TAG_LEN])
{
    static const char hex[] = "0123456789abcdef";
    /* least significant digit first, so short messages keep the digits
     * that change */
    for (int i = 0; i < TAG_LEN; i++)
        tag[i] = (uint8_t)hex[(seq >> (4 * i)) & 15];
}

/* The opt.size bytes message seq is made of, before the tag goes in. */
static const uint8_t *body_for(const struct worker *w, uint32_t seq)
{
    if (opt.json)
        return w->json + (seq % json_variants()) * opt.size;
    return w->pattern + seq % PATTERN_PERIOD;
}

/* Where the tag sits in a message, and how long it is. */
static size_t tag_offset(void)
{
    return opt.json ? JSON_TAG_OFF : 0;
}

static size_t tag_length(void)
{
    return opt.size < TAG_LEN ? opt.size : TAG_LEN;
}

/* dst = src XOR mask, 8 bytes at a time; phase is the payload offset of
 * src[0] modulo 4, so a payload can be masked in several pieces. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
                      const uint8_t key[4], size_t phase)
{
    uint8_t k[8];
    for (int j = 0; j < 8; j++)
        k[j] = key[(phase + (size_t)j) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 7];
}

static void copy_piece(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *key,
                       size_t phase)
{
    if (key)
        mask_copy(dst, src, n, key, phase);
    else
        memcpy(dst, src, n);
}

/* Writes the payload of message seq; masked when key is non-NULL. */
static void write_payload(const struct worker *w, uint8_t *dst, uint32_t seq,
                          const uint8_t *key)
{
    uint8_t tag[TAG_LEN];
    size_t a = tag_offset(), b = a + tag_length();
    const uint8_t *body = body_for(w, seq);
    make_tag(seq, tag);
    copy_piece(dst, body, a, key, 0);
    copy_piece(dst + a, tag, b - a, key, a);
    copy_piece(dst + b, body + b, opt.size - b, key, b);
}

/* Do the n bytes at offset off of an echo match message seq? */
static bool payload_matches(const struct worker *w, uint32_t seq, size_t off,
                            const uint8_t *p, size_t n)
{
    size_t a = tag_offset(), b = a + tag_length();
    const uint8_t *body = body_for(w, seq);
    if (off + n > opt.size)
        return false;
    if (off < a) {
        size_t k = a - off < n ? a - off : n;
        if (memcmp(p, body + off, k) != 0)
            return false;
        p += k;
        off += k;
        n -= k;
    }
    if (n > 0 && off < b) {
        uint8_t tag[TAG_LEN];
        make_tag(seq, tag);
        size_t k = b - off < n ? b - off : n;
        if (memcmp(p, tag + (off - a), k) != 0)
            return false;
        p += k;
        off += k;
        n -= k;
    }
    return n == 0 || memcmp(p, body + off, n) == 0;
}

static size_t put_frame_header(uint8_t *dst, unsigned opcode, unsigned rsv,
                               uint64_t len, const uint8_t key[4])
{
    size_t h = 0;
    dst[h++] = (uint8_t)(0x80 | rsv | opcode);      /* FIN: never fragment */
    if (len < 126) {
        dst[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        dst[h++] = 0x80 | 126;
        dst[h++] = (uint8_t)(len >> 8);
        dst[h++] = (uint8_t)len;
    } else {
        dst[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            dst[h++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(dst + h, key, 4);
    return h + 4;
}

static void random_mask(struct worker *w, uint8_t key[4])
{
    uint32_t m = (uint32_t)(rng_next(&w->rng) >> 32);
    memcpy(key, &m, 4);
}

static uint64_t *sent_slot(struct worker *w, struct conn *c, uint32_t seq)
{
    return &w->sent_ns[conn_index(w, c) * opt.depth + seq % (uint32_t)opt.depth];
}

static z_stream *new_deflater(void)
{
    z_stream *z = calloc(1, sizeof *z);
    if (!z || deflateInit2(z, opt.deflate_level, Z_DEFLATED, -15, 8,
                           Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2 failed");
    return z;
}

/* Compresses one message into w->zbuf as permessage-deflate wants it (a
 * sync flush without its final 00 00 ff ff); returns the length. */
static size_t deflate_message(struct worker *w, struct conn *c, const uint8_t *in, size_t n)
{
    z_stream *z;
    if (c->pmd & PMD_CLIENT_NO_CTX) {
        if (!w->shared_deflater)
            w->shared_deflater = new_deflater();
        z = w->shared_deflater;
        deflateReset(z);
    } else {
        if (!c->deflater)
            c->deflater = new_deflater();
        z = c->deflater;
    }
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = w->zbuf;
    z->avail_out = (uInt)w->zbuf_cap;
    int ret = deflate(z, Z_SYNC_FLUSH);
    if ((ret != Z_OK && ret != Z_BUF_ERROR) || z->avail_in != 0 || z->avail_out == 0)
        die("deflate failed (%d)", ret);
    size_t out = w->zbuf_cap - z->avail_out;
    if (out >= 4 && memcmp(w->zbuf + out - 4, DEFLATE_TAIL, 4) == 0)
        out -= 4;
    return out;
}

static bool in_measured_interval(const struct worker *w, uint64_t now)
{
    return w->phase == PH_RUN && now >= w->measure_start && now < w->measure_end;
}

/* Queues the next message of the closed loop (flushed by the caller). */
static void queue_message(struct worker *w, struct conn *c, uint64_t now)
{
    uint32_t seq = c->next_seq++;
    unsigned opcode = opt.binary ? WS_OP_BINARY : WS_OP_TEXT;
    size_t h = 0, len = opt.size;
    if (opt.raw) {
        uint8_t *dst = outbuf_reserve(&c->out, opt.size);
        write_payload(w, dst, seq, NULL);
    } else if (c->pmd & PMD_ON) {
        uint8_t key[4];
        random_mask(w, key);
        write_payload(w, w->plain, seq, NULL);
        len = deflate_message(w, c, w->plain, opt.size);
        uint8_t *dst = outbuf_reserve(&c->out, len + WS_MAX_HEADER);
        h = put_frame_header(dst, opcode, WS_RSV1, len, key);
        mask_copy(dst + h, w->zbuf, len, key, 0);
    } else {
        uint8_t key[4];
        random_mask(w, key);
        uint8_t *dst = outbuf_reserve(&c->out, opt.size + WS_MAX_HEADER);
        h = put_frame_header(dst, opcode, 0, opt.size, key);
        write_payload(w, dst + h, seq, key);
    }
    c->out.len += h + len;
    if (in_measured_interval(w, now)) {
        w->res.tx_msgs++;
        w->res.wire_tx += h + len;
    }
    *sent_slot(w, c, seq) = now;
}

static void queue_control(struct worker *w, struct conn *c, unsigned opcode,
                          const uint8_t *payload, size_t n)
{
    uint8_t key[4];
    random_mask(w, key);
    uint8_t *dst = outbuf_reserve(&c->out, n + WS_MAX_HEADER);
    size_t h = put_frame_header(dst, opcode, 0, n, key);
    mask_copy(dst + h, payload, n, key, 0);
    c->out.len += h + n;
}

/* ------------------------------------------------------------------------ */
/* Connection lifecycle                                                      */

static void conn_close_fd(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);        /* also removes it from the epoll set */
    c->fd = -1;
    free(c->hs);
    c->hs = NULL;
    if (c->inflater) {
        inflateEnd(c->inflater);
        free(c->inflater);
        c->inflater = NULL;
    }
    if (c->deflater) {
        deflateEnd(c->deflater);
        free(c->deflater);
        c->deflater = NULL;
    }
}

static void reset_parser(struct conn *c)
{
    c->in_payload = 0;
    c->hdr_have = 0;
    c->hdr_need = 2;
    c->in_message = 0;
    c->msg_off = 0;
    c->frame_left = 0;
    c->msg_wire = 0;
    c->msg_compressed = 0;
}

static bool is_retryable(int err)
{
    switch (err) {
    case ECONNREFUSED: case EAGAIN: case EADDRNOTAVAIL: case EADDRINUSE:
    case ETIMEDOUT: case ECONNRESET: case ECONNABORTED: case EPIPE: case ENOBUFS:
        return true;
    default:
        return false;
    }
}

static void retry_push(struct worker *w, struct conn *c)
{
    w->retry_ring[(w->retry_head + w->retry_count) % w->n] = conn_index(w, c);
    w->retry_count++;
}

/* A connect or handshake attempt went wrong: retry transient failures a
 * few times (a busy server refuses or resets while its backlog is full). */
static void attempt_failed(struct worker *w, struct conn *c, int err, const char *what)
{
    conn_close_fd(c);
    w->pending--;
    if (is_retryable(err) && c->attempts < MAX_ATTEMPTS) {
        c->state = CS_RETRY_WAIT;
        c->deadline = now_ns() + RETRY_DELAY_NS;
        retry_push(w, c);
        return;
    }
    c->state = CS_FAILED;
    w->resolved++;
    w->res.failed++;
    report_error(w, c, "%s failed after %d attempt(s): %s", what, c->attempts,
                 err ? strerror(err) : "rejected");
    outbuf_free(&c->out);
}

static void conn_opened(struct worker *w, struct conn *c)
{
    c->state = CS_OPEN;
    w->pending--;
    w->resolved++;
    w->n_open++;
    w->res.opened++;
    reset_parser(c);
}

/* An open connection broke: counted as an error, never reopened. */
static void conn_broken(struct worker *w, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_broken(struct worker *w, struct conn *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    report_error(w, c, "%s", why);
    if (w->phase == PH_PING && c->next_seq != c->recv_seq)
        w->ping_waiting--;
    conn_close_fd(c);
    outbuf_free(&c->out);
    c->state = CS_DEAD;
    w->n_open--;
}

static uint32_t source_address(const struct worker *w, const struct conn *c)
{
    uint64_t span = (uint64_t)opt.src_hi - opt.src_lo + 1;
    /* shift by attempt so a retry does not hit the same exhausted address */
    uint64_t k = (uint64_t)(w->first + conn_index(w, c)) + c->attempts;
    return opt.src_lo + (uint32_t)(k % span);
}

static bool bind_source(const struct worker *w, const struct conn *c, int fd)
{
    int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
    /* Defer the port choice to connect(), which then only needs the full
     * 4-tuple to be unique instead of a port free on this address. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#else
    (void)one;
#endif
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = 0 };
    src.sin_addr.s_addr = htonl(source_address(w, c));
    return bind(fd, (struct sockaddr *)&src, sizeof src) == 0;
}

static void start_attempt(struct worker *w, struct conn *c, uint64_t now)
{
    c->state = CS_CONNECTING;
    c->attempts++;
    c->deadline = now + secs_to_ns(opt.timeout);
    w->pending++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (c->fd < 0) {
        attempt_failed(w, c, errno, "socket");
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.src_bind && !bind_source(w, c, c->fd)) {
        attempt_failed(w, c, errno, "bind");
        return;
    }
    /* Registered once, edge-triggered for both directions: no epoll_ctl
     * per message, which matters when the client shares 2 cores with the
     * server it measures. */
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                              .data.ptr = c };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    if (connect(c->fd, (struct sockaddr *)&opt.dst, sizeof opt.dst) < 0 &&
        errno != EINPROGRESS)
        attempt_failed(w, c, errno, "connect");
}

static void send_upgrade_request(struct worker *w, struct conn *c)
{
    uint8_t nonce[16];
    uint64_t r1 = rng_next(&w->rng), r2 = rng_next(&w->rng);
    memcpy(nonce, &r1, 8);
    memcpy(nonce + 8, &r2, 8);
    char key[25];
    base64_encode(nonce, sizeof nonce, key);

    c->hs = calloc(1, sizeof *c->hs);
    if (!c->hs)
        die("out of memory (handshake)");
    websocket_accept(key, c->hs->accept);

    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s%s"
                     "\r\n",
                     opt.path, opt.host_header, key,
                     opt.protocol[0] ? "Sec-WebSocket-Protocol: " : "",
                     opt.protocol, opt.protocol[0] ? "\r\n" : "",
                     !opt.deflate ? "" : opt.deflate_takeover
                         ? "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                         : "Sec-WebSocket-Extensions: permessage-deflate; "
                           "client_no_context_takeover; server_no_context_takeover\r\n");
    memcpy(outbuf_reserve(&c->out, (size_t)n), req, (size_t)n);
    c->out.len += (size_t)n;
    c->state = CS_HANDSHAKE;
}

/* Edge for a connecting socket: returns true once it is usable. */
static bool finish_connect(struct worker *w, struct conn *c, uint32_t events)
{
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return false;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return false;
    if (err != 0) {
        attempt_failed(w, c, err, "connect");
        return false;
    }
    if (opt.raw)
        conn_opened(w, c);
    else
        send_upgrade_request(w, c);
    return true;
}

/* ------------------------------------------------------------------------ */
/* Incoming data                                                             */

static void message_done(struct worker *w, struct conn *c)
{
    uint64_t now = now_ns();
    uint64_t rtt = now - *sent_slot(w, c, c->recv_seq);
    c->recv_seq++;
    c->in_message = 0;
    c->msg_off = 0;
    c->msg_compressed = 0;
    uint64_t wire = c->msg_wire;
    c->msg_wire = 0;
    if (w->phase == PH_RUN) {
        if (now >= w->measure_start && now < w->measure_end) {
            w->res.msgs++;
            w->res.wire_rx += wire;
            result_add_latency(&w->res, rtt);
        }
        if (now < w->measure_end)
            queue_message(w, c, now);
    } else if (w->phase == PH_PING) {
        w->res.echoed++;
        w->ping_waiting--;
    }
}

/* Checks an echoed chunk against what was sent; false if the conn broke. */
static bool verify_chunk(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (!payload_matches(w, c->recv_seq, c->msg_off, p, n)) {
        conn_broken(w, c, "echo mismatch in message %" PRIu32 " at bytes %zu..%zu",
                    c->recv_seq, c->msg_off, c->msg_off + n);
        return false;
    }
    c->msg_off += n;
    return true;
}

static bool raw_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (c->next_seq == c->recv_seq) {
            conn_broken(w, c, "%zu unsolicited bytes from server", n);
            return false;
        }
        size_t take = opt.size - c->msg_off < n ? opt.size - c->msg_off : n;
        if (!verify_chunk(w, c, p, take))
            return false;
        c->msg_wire += take;
        p += take;
        n -= take;
        if (c->msg_off == opt.size)
            message_done(w, c);
    }
    return true;
}

static size_t header_size(uint8_t b1)
{
    size_t len7 = b1 & 0x7f;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

static uint64_t frame_length(const uint8_t *hdr)
{
    uint64_t len = hdr[1] & 0x7f;
    if (len == 126)
        return (uint64_t)hdr[2] << 8 | hdr[3];
    if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | hdr[2 + i];
    }
    return len;
}

static bool check_data_frame(struct worker *w, struct conn *c, unsigned opcode,
                             bool fin, uint64_t len)
{
    unsigned expected = opt.binary ? WS_OP_BINARY : WS_OP_TEXT;
    const char *problem = NULL;
    if (opcode > WS_OP_BINARY)
        problem = "reserved opcode";
    else if (opcode == WS_OP_CONT && !c->in_message)
        problem = "continuation frame outside a message";
    else if (opcode != WS_OP_CONT && c->in_message)
        problem = "new message before the previous one ended";
    else if (opcode != WS_OP_CONT && opcode != expected)
        problem = "echo has the wrong message type";
    else if (opcode != WS_OP_CONT && c->next_seq == c->recv_seq)
        problem = "unsolicited message";
    else if (!c->msg_compressed && len > opt.size - c->msg_off)
        problem = "echo longer than the message sent";
    else if (!c->msg_compressed && fin && c->msg_off + len != opt.size)
        problem = "echo shorter than the message sent";
    if (problem) {
        conn_broken(w, c, "protocol: %s (opcode %u, length %" PRIu64 ")", problem,
                    opcode, len);
        return false;
    }
    c->in_message = 1;
    return true;
}

#define INFLATE_BUF_SIZE (64 * 1024)

/* Feeds compressed payload bytes to the connection's inflater and checks
 * what comes out against the message sent; false if the conn broke. */
static bool inflate_chunk(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (!c->inflater) {
        c->inflater = calloc(1, sizeof *c->inflater);
        if (!c->inflater || inflateInit2(c->inflater, -15) != Z_OK)
            die("inflateInit2 failed");
    }
    z_stream *z = c->inflater;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    do {
        z->next_out = w->ibuf;
        z->avail_out = INFLATE_BUF_SIZE;
        int ret = inflate(z, Z_SYNC_FLUSH);
        size_t got = INFLATE_BUF_SIZE - z->avail_out;
        if (ret != Z_OK && ret != Z_BUF_ERROR && ret != Z_STREAM_END) {
            conn_broken(w, c, "inflate: %s (%d)", z->msg ? z->msg : "error", ret);
            return false;
        }
        if (got > opt.size - c->msg_off) {
            conn_broken(w, c, "echo inflates to more than the %zu bytes sent", opt.size);
            return false;
        }
        if (got && !verify_chunk(w, c, w->ibuf, got))
            return false;
        if (ret == Z_STREAM_END) {
            /* a final block (BFINAL): what follows in this message is
             * only the appended tail, which RFC 7692 7.2.2 ignores */
            inflateReset(z);
            break;
        }
        if (ret == Z_BUF_ERROR && z->avail_in == 0)
            break;
    } while (z->avail_in > 0 || z->avail_out == 0);
    return true;
}

/* A complete frame header is in c->hdr: validate and start its payload. */
static bool begin_frame(struct worker *w, struct conn *c)
{
    uint8_t b0 = c->hdr[0];
    unsigned opcode = b0 & 0x0f;
    bool fin = b0 & 0x80;
    uint64_t len = frame_length(c->hdr);
    if (b0 & 0x30) {
        conn_broken(w, c, "protocol: RSV2/RSV3 set");
        return false;
    }
    if (b0 & WS_RSV1) {
        /* permessage-deflate: RSV1 on the first frame of a data message */
        if (!(c->pmd & PMD_ON)) {
            conn_broken(w, c, "protocol: RSV1 set without permessage-deflate");
            return false;
        }
        if (opcode == WS_OP_CONT || opcode >= 8) {
            conn_broken(w, c, "protocol: RSV1 on a %s frame",
                        opcode ? "control" : "continuation");
            return false;
        }
        c->msg_compressed = 1;
    }
    if (c->hdr[1] & 0x80) {
        conn_broken(w, c, "protocol: server frame is masked");
        return false;
    }
    if (opcode >= 8) {
        if (!fin || len > 125 || (opcode != WS_OP_CLOSE && opcode != WS_OP_PING &&
                                  opcode != WS_OP_PONG)) {
            conn_broken(w, c, "protocol: bad control frame (opcode %u, length %" PRIu64 ")",
                        opcode, len);
            return false;
        }
    } else if (!check_data_frame(w, c, opcode, fin, len)) {
        return false;
    } else {
        c->msg_wire += header_size(c->hdr[1]) + len;
    }
    c->frame_opcode = (uint8_t)opcode;
    c->frame_fin = fin;
    c->frame_left = len;
    c->ctrl_len = 0;
    c->in_payload = 1;
    return true;
}

static bool end_frame(struct worker *w, struct conn *c)
{
    c->in_payload = 0;
    c->hdr_have = 0;
    c->hdr_need = 2;
    switch (c->frame_opcode) {
    case WS_OP_PING:
        queue_control(w, c, WS_OP_PONG, c->ctrl, c->ctrl_len);
        return true;
    case WS_OP_PONG:
        return true;
    case WS_OP_CLOSE: {
        unsigned code = c->ctrl_len >= 2 ? (unsigned)c->ctrl[0] << 8 | c->ctrl[1] : 1005;
        conn_broken(w, c, "server sent Close (code %u)", code);
        return false;
    }
    default:
        if (!c->frame_fin)
            return true;
        if (c->msg_compressed) {
            if (!inflate_chunk(w, c, DEFLATE_TAIL, sizeof DEFLATE_TAIL))
                return false;
            if (c->msg_off != opt.size) {
                conn_broken(w, c, "echo inflates to %zu bytes, not %zu", c->msg_off,
                            opt.size);
                return false;
            }
            if (c->pmd & PMD_SERVER_NO_CTX)
                inflateReset(c->inflater);
        }
        message_done(w, c);
        return true;
    }
}

static bool frame_payload(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (c->frame_opcode >= 8) {
        memcpy(c->ctrl + c->ctrl_len, p, n);     /* begin_frame bounded it to 125 */
        c->ctrl_len = (uint8_t)(c->ctrl_len + n);
        return true;
    }
    if (c->msg_compressed)
        return inflate_chunk(w, c, p, n);
    return verify_chunk(w, c, p, n);
}

static bool ws_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (!c->in_payload) {
            size_t take = (size_t)(c->hdr_need - c->hdr_have);
            take = take < n ? take : n;
            memcpy(c->hdr + c->hdr_have, p, take);
            c->hdr_have = (uint8_t)(c->hdr_have + take);
            p += take;
            n -= take;
            if (c->hdr_have == 2)
                c->hdr_need = (uint8_t)header_size(c->hdr[1]);
            if (c->hdr_have < c->hdr_need)
                continue;
            if (!begin_frame(w, c))
                return false;
            if (c->frame_left == 0 && !end_frame(w, c))
                return false;
            continue;
        }
        size_t take = c->frame_left < n ? (size_t)c->frame_left : n;
        if (!frame_payload(w, c, p, take))
            return false;
        p += take;
        n -= take;
        c->frame_left -= take;
        if (c->frame_left == 0 && !end_frame(w, c))
            return false;
    }
    return true;
}

static bool header_value_is(const char *value, const char *want)
{
    return strcasecmp(value, want) == 0;
}

/* The server's permessage-deflate answer (RFC 7692 7.1): sets *pmd;
 * returns NULL when acceptable.  Only what we offered may come back. */
static const char *parse_extension_answer(char *value, uint8_t *pmd)
{
    if (!opt.deflate)
        return "server selected an extension that was not offered";
    if (*pmd & PMD_ON)
        return "server selected permessage-deflate twice";
    char *save = NULL;
    char *tok = strtok_r(value, ";", &save);
    while (tok && isspace((unsigned char)*tok))
        tok++;
    if (!tok || strncasecmp(tok, "permessage-deflate", 18) != 0 ||
        (tok[18] && !isspace((unsigned char)tok[18])))
        return "server selected an extension other than permessage-deflate";
    uint8_t flags = PMD_ON;
    if (!opt.deflate_takeover)
        flags |= PMD_CLIENT_NO_CTX;    /* we promised it in the offer */
    while ((tok = strtok_r(NULL, ";", &save)) != NULL) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        char *eq = strchr(tok, '=');
        char *val = NULL;
        if (eq) {
            *eq = '\0';
            val = eq + 1;
            for (char *t = eq; t > tok && isspace((unsigned char)t[-1]);)
                *--t = '\0';
            while (isspace((unsigned char)*val))
                val++;
            if (*val == '"') {
                val++;
                char *q = strchr(val, '"');
                if (q)
                    *q = '\0';
            }
        }
        if (strcasecmp(tok, "server_no_context_takeover") == 0 && !val) {
            flags |= PMD_SERVER_NO_CTX;
        } else if (strcasecmp(tok, "client_no_context_takeover") == 0 && !val) {
            flags |= PMD_CLIENT_NO_CTX;
        } else if (strcasecmp(tok, "server_max_window_bits") == 0 && val) {
            long bits = strtol(val, &end, 10);
            if (*end || bits < 8 || bits > 15)     /* our inflater takes any */
                return "bad server_max_window_bits";
        } else if (strcasecmp(tok, "client_max_window_bits") == 0) {
            return "server sent client_max_window_bits, which was not offered";
        } else {
            return "unknown permessage-deflate parameter";
        }
    }
    *pmd = flags;
    return NULL;
}

/* Validates the 101 response (NUL-terminated head); NULL when acceptable.
 * *pmd gets what permessage-deflate negotiated (0: none). */
static const char *check_upgrade_response(char *head, const char *accept, uint8_t *pmd)
{
    *pmd = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0 && strncmp(head, "HTTP/1.0 101", 12) != 0)
        return "status is not 101";
    bool upgrade = false, connection = false, accepted = false;
    char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        char *eol = strstr(line, "\r\n");
        if (eol)
            *eol = '\0';
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            char *value = colon + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            for (char *end = value + strlen(value); end > value && isspace((unsigned char)end[-1]);)
                *--end = '\0';
            if (header_value_is(line, "Upgrade"))
                upgrade = header_value_is(value, "websocket");
            else if (header_value_is(line, "Connection"))
                connection = strcasestr(value, "upgrade") != NULL;
            else if (header_value_is(line, "Sec-WebSocket-Accept"))
                accepted = strcmp(value, accept) == 0;
            else if (header_value_is(line, "Sec-WebSocket-Extensions")) {
                const char *why = parse_extension_answer(value, pmd);
                if (why)
                    return why;
            }
            else if (header_value_is(line, "Sec-WebSocket-Protocol") &&
                     (!opt.protocol[0] || strcmp(value, opt.protocol) != 0))
                return "server selected a subprotocol that was not offered";
        }
        line = eol;
    }
    if (!upgrade)
        return "missing or wrong Upgrade header";
    if (!connection)
        return "Connection header lacks 'upgrade'";
    if (!accepted)
        return "missing or wrong Sec-WebSocket-Accept";
    return NULL;
}

static void log_bad_response(struct worker *w, struct conn *c, const char *why)
{
    char *eol = strstr(c->hs->buf, "\r\n");
    if (eol)
        *eol = '\0';
    /* counted by attempt_failed; this adds the detail */
    if (w->reported < MAX_REPORTED_ERRORS)
        fprintf(stderr, "wsload: worker %d conn %ld: bad handshake response: %s (%.80s)\n",
                w->id, w->first + conn_index(w, c), why, c->hs->buf);
}

static bool handshake_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    struct handshake *hs = c->hs;
    size_t room = HANDSHAKE_MAX - hs->len;
    size_t take = n < room ? n : room;
    size_t search_from = hs->len >= 3 ? hs->len - 3 : 0;
    memcpy(hs->buf + hs->len, p, take);
    hs->len += take;
    hs->buf[hs->len] = '\0';
    char *end = memmem(hs->buf + search_from, hs->len - search_from, "\r\n\r\n", 4);
    if (!end) {
        if (hs->len < HANDSHAKE_MAX)
            return true;
        attempt_failed(w, c, 0, "handshake (response head too large)");
        return false;
    }
    size_t head_len = (size_t)(end - hs->buf) + 4;
    hs->buf[head_len - 2] = '\0';     /* leaves "\r\n" after the last header */
    uint8_t pmd = 0;
    const char *why = check_upgrade_response(hs->buf, hs->accept, &pmd);
    if (why) {
        log_bad_response(w, c, why);
        attempt_failed(w, c, 0, "handshake");
        return false;
    }
    conn_opened(w, c);
    c->pmd = pmd;
    if (pmd)
        w->res.pmd_conns++;
    /* frames sent right behind the 101 must not be lost */
    bool ok = ws_input(w, c, (uint8_t *)hs->buf + head_len, hs->len - head_len) &&
              ws_input(w, c, p + take, n - take);
    if (ok) {
        free(c->hs);
        c->hs = NULL;
    }
    return ok;
}

static bool consume_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (c->state == CS_HANDSHAKE)
        return handshake_input(w, c, p, n);
    return opt.raw ? raw_input(w, c, p, n) : ws_input(w, c, p, n);
}

static void peer_closed(struct worker *w, struct conn *c, int err)
{
    if (c->state == CS_HANDSHAKE)
        attempt_failed(w, c, err ? err : ECONNRESET, "handshake (server closed)");
    else if (err)
        conn_broken(w, c, "connection error: %s", strerror(err));
    else
        conn_broken(w, c, "connection closed by server");
}

/* Reads until the socket is drained; false if the connection is gone. */
static bool read_input(struct worker *w, struct conn *c, uint32_t events)
{
    for (;;) {
        ssize_t n = recv(c->fd, w->rbuf, READ_BUF_SIZE, 0);
        if (n > 0) {
            if (!consume_input(w, c, w->rbuf, (size_t)n))
                return false;
            /* a short read means the queue was empty: the next arrival
             * raises a new edge, unless EOF is already pending */
            if ((size_t)n < READ_BUF_SIZE && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return true;
        } else if (n == 0) {
            peer_closed(w, c, 0);
            return false;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return true;
        } else if (errno != EINTR) {
            peer_closed(w, c, errno);
            return false;
        }
    }
}

static void flush_conn(struct worker *w, struct conn *c)
{
    if (c->out.off == c->out.len || outbuf_flush(&c->out, c->fd))
        return;
    if (c->state == CS_HANDSHAKE)
        attempt_failed(w, c, errno, "handshake (send)");
    else
        conn_broken(w, c, "send: %s", strerror(errno));
}

static void drain_closing(struct worker *w, struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, w->rbuf, READ_BUF_SIZE, 0);
        if (n > 0)
            continue;                 /* late echoes: no longer measured */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;                        /* EOF or error: the server is done */
    }
    conn_close_fd(c);
    c->state = CS_DONE;
    w->n_closing--;
}

static void on_socket_event(struct worker *w, struct conn *c, uint32_t events)
{
    if (c->state == CS_CONNECTING && !finish_connect(w, c, events))
        return;
    if (c->state == CS_CLOSING) {
        if (outbuf_flush(&c->out, c->fd)) {
            drain_closing(w, c);
        } else {
            conn_close_fd(c);
            c->state = CS_DONE;
            w->n_closing--;
        }
        return;
    }
    if (c->state != CS_HANDSHAKE && c->state != CS_OPEN)
        return;
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !read_input(w, c, events))
        return;
    flush_conn(w, c);
}

/* ------------------------------------------------------------------------ */
/* Phases                                                                    */

static struct conn *next_to_start(struct worker *w, uint64_t now)
{
    if (w->retry_count > 0) {
        struct conn *c = &w->conns[w->retry_ring[w->retry_head]];
        if (c->deadline <= now) {
            w->retry_head = (w->retry_head + 1) % w->n;
            w->retry_count--;
            return c;
        }
    }
    if (w->next_fresh < w->n)
        return &w->conns[w->next_fresh++];
    return NULL;
}

/* Token bucket with a 10 ms burst, so a stall does not turn into a SYN
 * flood that overflows the server's accept backlog. */
static void schedule_connects(struct worker *w, uint64_t now)
{
    double burst = opt.rate / 100 > 1 ? opt.rate / 100 : 1;
    w->tokens += opt.rate * (double)(now - w->last_refill) / 1e9;
    if (w->tokens > burst)
        w->tokens = burst;
    w->last_refill = now;
    while (w->tokens >= 1 && w->pending < opt.max_pending) {
        struct conn *c = next_to_start(w, now);
        if (!c)
            break;
        start_attempt(w, c, now);
        w->tokens -= 1;
    }
}

static void expire_attempts(struct worker *w, uint64_t now)
{
    for (long i = 0; i < w->n; i++) {
        struct conn *c = &w->conns[i];
        if ((c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) && c->deadline <= now)
            attempt_failed(w, c, ETIMEDOUT, c->state == CS_CONNECTING ? "connect" : "handshake");
    }
}

/* A closed loop never notices a lost echo by itself: the connection just
 * goes quiet.  Anything older than --timeout is reported as an error. */
static void expire_echoes(struct worker *w, uint64_t now)
{
    uint64_t limit = secs_to_ns(opt.timeout);
    for (long i = 0; i < w->n; i++) {
        struct conn *c = &w->conns[i];
        if (c->state == CS_OPEN && c->next_seq != c->recv_seq &&
            now - *sent_slot(w, c, c->recv_seq) > limit)
            conn_broken(w, c, "no echo for message %" PRIu32 " within %.1f s",
                        c->recv_seq, opt.timeout);
    }
}

static void write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;                   /* parent gone: nothing left to tell */
        p += k;
        n -= (size_t)k;
    }
}

static void begin_run(struct worker *w, uint64_t t0)
{
    uint64_t now = now_ns();
    w->measure_start = t0 + secs_to_ns(opt.warmup);
    w->measure_end = w->measure_start + secs_to_ns(opt.duration);
    w->phase = PH_RUN;
    for (long i = 0; i < w->n; i++) {
        struct conn *c = &w->conns[i];
        if (c->state != CS_OPEN)
            continue;
        for (int d = 0; d < opt.depth; d++)
            queue_message(w, c, now);
        flush_conn(w, c);
    }
}

static void begin_ping(struct worker *w, uint64_t now)
{
    w->phase = PH_PING;
    w->phase_deadline = now + secs_to_ns(opt.timeout);
    w->ping_waiting = 0;
    for (long i = 0; i < w->n; i++) {
        struct conn *c = &w->conns[i];
        if (c->state != CS_OPEN)
            continue;
        queue_message(w, c, now_ns());
        w->ping_waiting++;
        flush_conn(w, c);
    }
}

static void begin_closing(struct worker *w, uint64_t now)
{
    static const uint8_t normal_closure[2] = { 0x03, 0xe8 };   /* 1000 */
    w->phase = PH_CLOSING;
    w->phase_deadline = now + CLOSE_DRAIN_NS;
    for (long i = 0; i < w->n; i++) {
        struct conn *c = &w->conns[i];
        if (c->fd < 0)
            continue;
        if (opt.raw || c->state != CS_OPEN) {
            conn_close_fd(c);
            c->state = CS_DONE;
            continue;
        }
        /* A polite Close keeps the server from logging aborted
         * connections and spending time on resets. */
        queue_control(w, c, WS_OP_CLOSE, normal_closure, sizeof normal_closure);
        c->state = CS_CLOSING;
        w->n_closing++;
        if (!outbuf_flush(&c->out, c->fd)) {
            conn_close_fd(c);
            c->state = CS_DONE;
            w->n_closing--;
        }
    }
}

static void on_go(struct worker *w)
{
    uint64_t t0 = 0;
    ssize_t n;
    do
        n = read(w->go_fd, &t0, sizeof t0);
    while (n < 0 && errno == EINTR);
    close(w->go_fd);
    w->go_fd = -1;
    if (n != (ssize_t)sizeof t0) {
        begin_closing(w, now_ns());         /* parent gave up */
        return;
    }
    if (opt.idle) {
        w->phase = PH_HOLD;
        w->phase_deadline = t0 + secs_to_ns(opt.hold);
    } else {
        begin_run(w, t0);
    }
}

static void advance_phase(struct worker *w, uint64_t now)
{
    switch (w->phase) {
    case PH_CONNECT:
        schedule_connects(w, now);
        if (now >= w->next_timeout_scan) {
            expire_attempts(w, now);
            w->next_timeout_scan = now + TIMEOUT_SCAN_NS;
        }
        if (w->resolved == w->n) {
            write_all(w->report_fd, "R", 1);
            w->phase = PH_WAIT_GO;
        }
        break;
    case PH_RUN:
        if (now >= w->next_timeout_scan || now >= w->measure_end) {
            expire_echoes(w, now);
            w->next_timeout_scan = now + TIMEOUT_SCAN_NS;
        }
        if (now >= w->measure_end)
            begin_closing(w, now);
        break;
    case PH_HOLD:
        if (now < w->phase_deadline)
            break;
        if (opt.ping_after)
            begin_ping(w, now);
        else
            begin_closing(w, now);
        break;
    case PH_PING:
        if (w->ping_waiting > 0 && now < w->phase_deadline)
            break;
        if (w->ping_waiting > 0) {
            w->res.errors += (uint64_t)w->ping_waiting;
            fprintf(stderr, "wsload: worker %d: %ld connection(s) got no echo within %.1f s\n",
                    w->id, w->ping_waiting, opt.timeout);
        }
        begin_closing(w, now);
        break;
    case PH_CLOSING:
        if (w->n_closing == 0 || now >= w->phase_deadline)
            w->phase = PH_DONE;
        break;
    case PH_WAIT_GO:
    case PH_DONE:
        break;
    }
}

static int loop_timeout_ms(const struct worker *w, uint64_t now)
{
    uint64_t deadline;
    switch (w->phase) {
    case PH_CONNECT:
        /* pace new connections finely while some are still to start */
        return (w->next_fresh < w->n || w->retry_count > 0) ? 1 : MAX_LOOP_WAIT_MS;
    case PH_RUN:
        deadline = w->measure_end;
        break;
    case PH_HOLD: case PH_PING: case PH_CLOSING:
        deadline = w->phase_deadline;
        break;
    default:
        return MAX_LOOP_WAIT_MS;
    }
    if (deadline <= now)
        return 0;
    uint64_t ms = (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms < MAX_LOOP_WAIT_MS ? (int)ms : MAX_LOOP_WAIT_MS;
}

static void worker_loop(struct worker *w)
{
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        uint64_t now = now_ns();
        advance_phase(w, now);
        if (w->phase == PH_DONE)
            break;
        int n = epoll_wait(w->epfd, events, MAX_EVENTS, loop_timeout_ms(w, now));
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                on_go(w);
            else
                on_socket_event(w, events[i].data.ptr, events[i].events);
        }
    }
    for (long i = 0; i < w->n; i++) {
        conn_close_fd(&w->conns[i]);
        outbuf_free(&w->conns[i].out);
    }
}

static void worker_init(struct worker *w)
{
    w->rng = rng_seed() ^ ((uint64_t)w->id << 48);
    w->conns = calloc((size_t)w->n, sizeof *w->conns);
    w->sent_ns = calloc((size_t)w->n * (size_t)opt.depth, sizeof *w->sent_ns);
    w->retry_ring = calloc((size_t)w->n, sizeof *w->retry_ring);
    w->rbuf = malloc(READ_BUF_SIZE);
    if (!w->conns || !w->sent_ns || !w->retry_ring || !w->rbuf)
        die("worker %d: out of memory for %ld connections", w->id, w->n);
    for (long i = 0; i < w->n; i++)
        w->conns[i].fd = -1;
    build_pattern(w);
    if (opt.deflate) {
        w->zbuf_cap = compressBound((uLong)opt.size) + 1024;
        w->plain = malloc(opt.size);
        w->zbuf = malloc(w->zbuf_cap);
        w->ibuf = malloc(INFLATE_BUF_SIZE);
        if (!w->plain || !w->zbuf || !w->ibuf)
            die("out of memory (deflate buffers)");
    }
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->go_fd, &ev) < 0)
        die("epoll_ctl(go pipe): %s", strerror(errno));
    w->phase = PH_CONNECT;
    w->last_refill = now_ns();
    w->tokens = 1;
}

static void __attribute__((noreturn)) worker_main(struct worker *w)
{
    worker_init(w);
    worker_loop(w);
    write_all(w->report_fd, &w->res, sizeof w->res);
    _exit(0);
}

/* ------------------------------------------------------------------------ */
/* Server CPU time from /proc                                                */

struct proc_stat {
    pid_t pid, ppid;
    unsigned long long own_ticks, child_ticks;   /* utime+stime, cutime+cstime */
};

static bool read_proc_stat(pid_t pid, struct proc_stat *st)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may contain spaces and parentheses: skip past the
     * last ')' before counting fields */
    char *p = strrchr(buf, ')');
    unsigned long long ut, stime;
    long long cut, cst;
    int ppid;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
                     &ppid, &ut, &stime, &cut, &cst) != 5)
        return false;
    st->pid = pid;
    st->ppid = ppid;
    st->own_ticks = ut + stime;
    st->child_ticks = (unsigned long long)(cut + cst);
    return true;
}

static size_t list_processes(struct proc_stat **out)
{
    size_t n = 0, cap = 256;
    struct proc_stat *all = malloc(cap * sizeof *all);
    DIR *d = opendir("/proc");
    if (!all || !d)
        die("cannot scan /proc");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (n == cap) {
            cap *= 2;
            all = realloc(all, cap * sizeof *all);
            if (!all)
                die("out of memory (/proc scan)");
        }
        if (read_proc_stat((pid_t)atoi(e->d_name), &all[n]))
            n++;
    }
    closedir(d);
    *out = all;
    return n;
}

static bool is_root_pid(pid_t pid)
{
    for (int i = 0; i < opt.n_cpu_pids; i++)
        if (opt.cpu_pids[i] == pid)
            return true;
    return false;
}

/* Sum over the --cpu-pid processes (all their threads: /proc/PID/stat is
 * per thread group).  With --cpu-children, also every live descendant, and
 * everyone's cutime/cstime: a child that exits and is reaped moves its time
 * into its parent's cutime, so the sum stays continuous across respawns. */
static double sample_server_cpu(void)
{
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long long ticks = 0;
    if (!opt.cpu_children) {
        for (int i = 0; i < opt.n_cpu_pids; i++) {
            struct proc_stat st;
            if (read_proc_stat(opt.cpu_pids[i], &st))
                ticks += st.own_ticks;
        }
        return (double)ticks / (double)hz;
    }
    struct proc_stat *all;
    size_t n = list_processes(&all);
    bool *in = calloc(n ? n : 1, sizeof *in);
    if (!in)
        die("out of memory (/proc scan)");
    for (size_t i = 0; i < n; i++)
        in[i] = is_root_pid(all[i].pid);
    for (bool grew = true; grew;) {          /* add children until stable */
        grew = false;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < n && !in[i]; j++)
                if (in[j] && all[j].pid == all[i].ppid)
                    in[i] = grew = true;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (in[i])
            ticks += all[i].own_ticks + all[i].child_ticks;
    free(in);
    free(all);
    return (double)ticks / (double)hz;
}

/* ------------------------------------------------------------------------ */
/* Parent: fork workers, release them together, sample CPU, aggregate        */

struct child {
    pid_t pid;
    int report_fd, go_fd;
    bool ready, reported;
};

static void sleep_until(uint64_t t)
{
    struct timespec ts = { .tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void spawn_workers(struct child *kids)
{
    long base = opt.conns / opt.procs, extra = opt.conns % opt.procs, first = 0;
    pid_t parent = getpid();
    for (int i = 0; i < opt.procs; i++) {
        int report[2], go[2];
        if (pipe2(report, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
            die("pipe: %s", strerror(errno));
        long n = base + (i < extra);
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            /* die with the parent rather than linger holding sockets */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            for (int j = 0; j < i; j++) {      /* siblings' pipe ends */
                close(kids[j].report_fd);
                close(kids[j].go_fd);
            }
            close(report[0]);
            close(go[1]);
            struct worker w = { .id = i, .n = n, .first = first,
                                .go_fd = go[0], .report_fd = report[1] };
            worker_main(&w);
        }
        close(report[1]);
        close(go[0]);
        kids[i] = (struct child){ .pid = pid, .report_fd = report[0], .go_fd = go[1] };
        first += n;
    }
}

/* Reads exactly n bytes from fd within the deadline; false on EOF/timeout. */
static bool read_exact(int fd, void *buf, size_t n, uint64_t deadline)
{
    char *p = buf;
    while (n > 0) {
        uint64_t now = now_ns();
        if (now >= deadline)
            return false;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int r = poll(&pfd, 1, (int)((deadline - now) / NS_PER_MS) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Upper bound for a worker to open all its connections. */
static uint64_t connect_budget_ns(void)
{
    double per_proc = (double)(opt.conns / opt.procs + 1);
    double secs = per_proc / opt.rate + MAX_ATTEMPTS * (opt.timeout + 0.25) + 5;
    return secs_to_ns(secs);
}

static void wait_until_ready(struct child *kids)
{
    uint64_t deadline = now_ns() + connect_budget_ns();
    for (int i = 0; i < opt.procs; i++) {
        char r;
        kids[i].ready = read_exact(kids[i].report_fd, &r, 1, deadline) && r == 'R';
        if (!kids[i].ready)
            fprintf(stderr, "wsload: worker %d did not get ready\n", i);
    }
}

static void release_workers(struct child *kids, uint64_t t0)
{
    for (int i = 0; i < opt.procs; i++) {
        if (kids[i].ready)
            write_all(kids[i].go_fd, &t0, sizeof t0);
        close(kids[i].go_fd);
    }
}

static void collect_results(struct child *kids, struct result *total)
{
    uint64_t deadline = now_ns() + secs_to_ns(opt.timeout) + CLOSE_DRAIN_NS + 10 * NS_PER_S;
    static struct result r;
    for (int i = 0; i < opt.procs; i++) {
        memset(&r, 0, sizeof r);
        /* a worker that missed the start may still send its late 'R' */
        if (kids[i].ready && read_exact(kids[i].report_fd, &r, sizeof r, deadline)) {
            result_merge(total, &r);
        } else {
            long n = opt.conns / opt.procs + (i < opt.conns % opt.procs);
            fprintf(stderr, "wsload: worker %d reported nothing; counting its %ld "
                    "connections as errors\n", i, n);
            total->errors += (uint64_t)n;
            kill(kids[i].pid, SIGKILL);
        }
        close(kids[i].report_fd);
    }
    for (int i = 0; i < opt.procs; i++)
        waitpid(kids[i].pid, NULL, 0);
}

static void print_summary(const struct result *r, double connect_s, double cpu_s)
{
    const char *proto = opt.raw ? "raw" : "ws";
    if (opt.idle) {
        printf("mode=idle proto=%s conns=%ld procs=%d hold_s=%.2f opened=%" PRIu64
               " failed=%" PRIu64 " echoed=%" PRIu64 " connect_s=%.2f errors=%" PRIu64,
               proto, opt.conns, opt.procs, opt.hold, r->opened, r->failed, r->echoed,
               connect_s, r->errors);
        if (opt.n_cpu_pids)
            printf(" server_cpu_s=%.2f", cpu_s);
        putchar('\n');
        return;
    }
    double secs = opt.duration;
    double payload_mb = (double)r->msgs * (double)opt.size / 1e6;
    printf("mode=echo proto=%s conns=%ld opened=%" PRIu64 " procs=%d size=%zu type=%s "
           "depth=%d secs=%.2f msgs=%" PRIu64 " msgs_per_s=%.1f MB_per_s=%.2f "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f connect_s=%.2f errors=%" PRIu64,
           proto, opt.conns, r->opened, opt.procs, opt.size,
           opt.json ? "json" : opt.binary ? "binary" : "text",
           opt.depth, secs, r->msgs, (double)r->msgs / secs, payload_mb / secs,
           result_percentile_us(r, 0.50), result_percentile_us(r, 0.99),
           result_percentile_us(r, 0.999), (double)r->max_ns / 1e3, connect_s, r->errors);
    if (opt.n_cpu_pids)
        printf(" server_cpu_s=%.2f server_us_per_msg=%.3f", cpu_s,
               r->msgs ? cpu_s * 1e6 / (double)r->msgs : 0.0);
    printf(" pmd_conns=%" PRIu64 " wire_tx_per_msg=%.1f wire_rx_per_msg=%.1f", r->pmd_conns,
           r->tx_msgs ? (double)r->wire_tx / (double)r->tx_msgs : 0.0,
           r->msgs ? (double)r->wire_rx / (double)r->msgs : 0.0);
    putchar('\n');
}

static int run(void)
{
    static struct child kids[MAX_PROCS];
    static struct result total;
    uint64_t started = now_ns();
    spawn_workers(kids);
    wait_until_ready(kids);
    uint64_t t0 = now_ns();
    double connect_s = (double)(t0 - started) / 1e9;
    release_workers(kids, t0);
    if (opt.ready_file) {
        /* tells a driver that every connection is open or has failed:
         * the hold (or the warmup) starts now */
        FILE *f = fopen(opt.ready_file, "we");
        if (f) {
            fprintf(f, "connect_s=%.2f\n", connect_s);
            fclose(f);
        }
    }

    uint64_t from = opt.idle ? t0 : t0 + secs_to_ns(opt.warmup);
    uint64_t to = from + secs_to_ns(opt.idle ? opt.hold : opt.duration);
    double cpu_s = 0;
    if (opt.n_cpu_pids) {
        sleep_until(from);
        cpu_s = -sample_server_cpu();
        sleep_until(to);
        cpu_s += sample_server_cpu();
    }
    collect_results(kids, &total);
    print_summary(&total, connect_s, cpu_s);
    fflush(stdout);
    return total.errors ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */

static void usage(FILE *f)
{
    fputs(
"usage: wsload [options] ws://HOST:PORT/PATH     (HOST in 127.0.0.0/8)\n"
"       wsload --raw [options] HOST:PORT          (bench/tcpecho)\n"
"  -c, --conns N        connections (default 64)\n"
"  -s, --size BYTES     message payload size, k/m suffixes (default 32)\n"
"  -t, --type T         text | binary | json (default text); json: realistic,\n"
"                       compressible JSON documents, -s 32 or more\n"
"  -d, --depth D        messages in flight per connection (default 1)\n"
"      --duration SECS  measured time (default 10)\n"
"      --warmup SECS    unmeasured time before it (default 1)\n"
"      --idle           hold connections instead of echoing\n"
"      --hold SECS      idle: how long to hold (default 5)\n"
"      --ping-after     idle: then echo one message on each connection\n"
"  -P, --procs P        worker processes (default 1)\n"
"      --src-range A-B  local addresses to cycle through, or 'none'\n"
"                       (default 127.0.1.1-127.0.1.250)\n"
"      --rate R         new connections per second per process (default 2000)\n"
"      --max-pending N  unfinished connects per process (default 1000)\n"
"      --timeout SECS   limit for one connect+handshake attempt and for an\n"
"                       echo to come back (default 10)\n"
"      --protocol NAME  send Sec-WebSocket-Protocol: NAME\n"
"      --deflate        offer permessage-deflate with client_ and\n"
"                       server_no_context_takeover; compress what we send,\n"
"                       inflate and verify what comes back\n"
"      --deflate-takeover  with --deflate: offer plain permessage-deflate\n"
"                       (both sides keep their window between messages)\n"
"      --deflate-level N  zlib level for what we send (default 1)\n"
"      --raw            plain TCP echo: S bytes out, the same S bytes back\n"
"      --cpu-pid PID[,PID...]  report CPU time of these processes\n"
"      --cpu-children   ... including all their descendants\n"
"      --ready-file PATH  create PATH when every connection is open or failed\n"
"Prints one key=value summary line; exit status 1 if errors > 0.\n", f);
}

static double parse_double(const char *s, double lo, double hi, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        die("bad %s '%s' (expected %g..%g)", what, s, lo, hi);
    return v;
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("bad %s '%s' (expected %ld..%ld)", what, s, lo, hi);
    return v;
}

static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (errno || end == s || *end || v < 1 || v > (16u << 20))
        die("bad size '%s' (expected 1..16m)", s);
    return (size_t)v;
}

static uint32_t parse_loopback(const char *s, const char *what)
{
    struct in_addr a;
    if (strcmp(s, "localhost") == 0)
        s = "127.0.0.1";
    if (inet_pton(AF_INET, s, &a) != 1)
        die("bad %s '%s' (need an IPv4 address)", what, s);
    uint32_t v = ntohl(a.s_addr);
    if ((v >> 24) != 127)
        die("%s %s is not in 127.0.0.0/8: wsload only talks to loopback", what, s);
    return v;
}

static void parse_src_range(const char *s)
{
    if (strcmp(s, "none") == 0) {
        opt.src_bind = false;
        return;
    }
    char lo[64];
    const char *dash = strchr(s, '-');
    if (!dash || (size_t)(dash - s) >= sizeof lo)
        die("bad --src-range '%s' (expected A-B or none)", s);
    memcpy(lo, s, (size_t)(dash - s));
    lo[dash - s] = '\0';
    opt.src_lo = parse_loopback(lo, "source address");
    opt.src_hi = parse_loopback(dash + 1, "source address");
    if (opt.src_lo > opt.src_hi)
        die("bad --src-range '%s' (first address above last)", s);
}

static void parse_cpu_pids(const char *s)
{
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (opt.n_cpu_pids == MAX_CPU_PIDS)
            die("too many --cpu-pid values (max %d)", MAX_CPU_PIDS);
        opt.cpu_pids[opt.n_cpu_pids++] = (pid_t)parse_long(tok, 1, INT32_MAX, "--cpu-pid");
    }
    free(copy);
}

/* [ws://|tcp://]HOST[:PORT][/PATH] */
static void parse_target(const char *url)
{
    const char *p = strstr(url, "://");
    if (p) {
        if (strncmp(url, "ws://", 5) != 0 && strncmp(url, "tcp://", 6) != 0)
            die("unsupported URL scheme in '%s' (ws:// or tcp://; no TLS)", url);
        p += 3;
    } else {
        p = url;
    }
    size_t authority = strcspn(p, "/");
    if (authority == 0 || authority >= sizeof opt.host_header)
        die("bad target '%s'", url);
    memcpy(opt.host_header, p, authority);
    opt.host_header[authority] = '\0';
    if (p[authority] == '/') {
        if (strlen(p + authority) >= sizeof opt.path)
            die("path too long");
        strcpy(opt.path, p + authority);
    }
    char host[sizeof opt.host_header];
    long port = 80;
    strcpy(host, opt.host_header);
    char *colon = strrchr(host, ':');
    if (colon) {
        *colon = '\0';
        port = parse_long(colon + 1, 1, 65535, "port");
    }
    opt.dst.sin_family = AF_INET;
    opt.dst.sin_port = htons((uint16_t)port);
    opt.dst.sin_addr.s_addr = htonl(parse_loopback(host, "host"));
}

enum {
    OPT_DURATION = 256, OPT_WARMUP, OPT_IDLE, OPT_HOLD, OPT_PING_AFTER, OPT_SRC_RANGE,
    OPT_RATE, OPT_MAX_PENDING, OPT_TIMEOUT, OPT_PROTOCOL, OPT_RAW, OPT_CPU_PID,
    OPT_CPU_CHILDREN, OPT_READY_FILE, OPT_DEFLATE, OPT_DEFLATE_TAKEOVER, OPT_DEFLATE_LEVEL,
};

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "conns", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 's' },
        { "type", required_argument, NULL, 't' },
        { "depth", required_argument, NULL, 'd' },
        { "procs", required_argument, NULL, 'P' },
        { "help", no_argument, NULL, 'h' },
        { "duration", required_argument, NULL, OPT_DURATION },
        { "warmup", required_argument, NULL, OPT_WARMUP },
        { "idle", no_argument, NULL, OPT_IDLE },
        { "hold", required_argument, NULL, OPT_HOLD },
        { "ping-after", no_argument, NULL, OPT_PING_AFTER },
        { "src-range", required_argument, NULL, OPT_SRC_RANGE },
        { "rate", required_argument, NULL, OPT_RATE },
        { "max-pending", required_argument, NULL, OPT_MAX_PENDING },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "protocol", required_argument, NULL, OPT_PROTOCOL },
        { "raw", no_argument, NULL, OPT_RAW },
        { "cpu-pid", required_argument, NULL, OPT_CPU_PID },
        { "cpu-children", no_argument, NULL, OPT_CPU_CHILDREN },
        { "ready-file", required_argument, NULL, OPT_READY_FILE },
        { "deflate", no_argument, NULL, OPT_DEFLATE },
        { "deflate-takeover", no_argument, NULL, OPT_DEFLATE_TAKEOVER },
        { "deflate-level", required_argument, NULL, OPT_DEFLATE_LEVEL },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:t:d:P:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': opt.conns = parse_long(optarg, 1, 10000000, "--conns"); break;
        case 's': opt.size = parse_size(optarg); break;
        case 't':
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "binary") != 0 &&
                strcmp(optarg, "json") != 0)
                die("--type must be text, binary or json");
            opt.binary = optarg[0] == 'b';
            opt.json = optarg[0] == 'j';
            break;
        case 'd': opt.depth = (int)parse_long(optarg, 1, 4096, "--depth"); break;
        case 'P': opt.procs = (int)parse_long(optarg, 1, MAX_PROCS, "--procs"); break;
        case OPT_DURATION: opt.duration = parse_double(optarg, 0.1, 3600, "--duration"); break;
        case OPT_WARMUP: opt.warmup = parse_double(optarg, 0, 600, "--warmup"); break;
        case OPT_IDLE: opt.idle = true; break;
        case OPT_HOLD: opt.hold = parse_double(optarg, 0, 3600, "--hold"); break;
        case OPT_PING_AFTER: opt.ping_after = true; break;
        case OPT_SRC_RANGE: parse_src_range(optarg); break;
        case OPT_RATE: opt.rate = parse_double(optarg, 1, 1e6, "--rate"); break;
        case OPT_MAX_PENDING:
            opt.max_pending = parse_long(optarg, 1, 1000000, "--max-pending");
            break;
        case OPT_TIMEOUT: opt.timeout = parse_double(optarg, 0.1, 300, "--timeout"); break;
        case OPT_PROTOCOL:
            if (strlen(optarg) >= sizeof opt.protocol || strpbrk(optarg, "\r\n"))
                die("bad --protocol");
            strcpy(opt.protocol, optarg);
            break;
        case OPT_RAW: opt.raw = true; break;
        case OPT_CPU_PID: parse_cpu_pids(optarg); break;
        case OPT_CPU_CHILDREN: opt.cpu_children = true; break;
        case OPT_READY_FILE: opt.ready_file = optarg; break;
        case OPT_DEFLATE: opt.deflate = true; break;
        case OPT_DEFLATE_TAKEOVER: opt.deflate = opt.deflate_takeover = true; break;
        case OPT_DEFLATE_LEVEL:
            opt.deflate_level = (int)parse_long(optarg, 0, 9, "--deflate-level");
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        exit(2);
    }
    parse_target(argv[optind]);
    if (opt.conns < opt.procs)
        die("--conns (%ld) must be at least --procs (%d)", opt.conns, opt.procs);
    if (opt.idle)
        opt.depth = 1;
    if (opt.json && opt.size < JSON_MIN_SIZE)
        die("-t json needs -s %d or more", JSON_MIN_SIZE);
    if (opt.deflate && opt.raw)
        die("--deflate is for WebSocket, not --raw");
}

/* 100k sockets need every descriptor the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit: %s", strerror(errno));
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    long per_proc = opt.conns / opt.procs + 1;
    if ((rlim_t)per_proc + 32 > rl.rlim_cur)
        die("%ld connections per process exceed the open-file limit %llu: use --procs %ld",
            per_proc, (unsigned long long)rl.rlim_cur,
            (opt.conns + (long)rl.rlim_cur - 33) / ((long)rl.rlim_cur - 32));
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    check_accept_computation();
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    return run();
}
