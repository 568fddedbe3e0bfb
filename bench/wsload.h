/*
 * wsload.h - what the parts of wsload share: limits, options, the state of
 * a connection and of a worker process, and the functions each part offers
 * the others.
 *
 *   wsload.c            command line, main()
 *   wsload_run.c        the parent: forks the workers, starts them
 *                       together, collects their results
 *   wsload_worker.c     a worker's event loop and phases (connect, echo
 *                       or hold, ping, close)
 *   wsload_conn.c       one connection: connect, retries, socket events
 *   wsload_handshake.c  the opening handshake (request, 101 check,
 *                       permessage-deflate answer)
 *   wsload_send.c       outgoing frames: output buffers, masking, deflate
 *   wsload_recv.c       incoming frames: parsing, inflate, echo checks
 *   wsload_payload.c    message payloads and their verification
 *   wsload_cycle.c      --cycle and --raw-get (a connection per operation)
 *                       and --reconnect (idle clients that come back)
 *   wsload_stats.c      latency histogram, server CPU time, the summary
 *   wsload_util.c       errors, clocks, random numbers
 */
#ifndef WSLOAD_H
#define WSLOAD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <zlib.h>

#define NS_PER_S  1000000000ull
#define NS_PER_MS 1000000ull

#define WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_ATTEMPTS     4                    /* first try + 3 retries */
#define RETRY_DELAY_NS   (250 * NS_PER_MS)    /* default of --retry-delay */
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
extern const uint8_t DEFLATE_TAIL[4];

/* conn.pmd: what permessage-deflate negotiated for this connection */
#define PMD_ON             1
#define PMD_SERVER_NO_CTX  2    /* server resets its compressor per message */
#define PMD_CLIENT_NO_CTX  4    /* we reset ours per message */

#define INFLATE_BUF_SIZE (64 * 1024)

/* ------------------------------------------------------------------------ */
/* Options (wsload.c)                                                        */

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
    /* --cycle: connect, upgrade, one echo, close, again; --raw-get PATH:
     * the same loop with a GET of PATH on a new connection each time;
     * --reconnect: idle clients that reopen when the server closes them */
    bool cycle, reconnect, rate_given;
    char get_path[1024];
    uint64_t retry_delay_ns;      /* constant, so the retry FIFO stays sorted */
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

extern struct options opt;

/* ------------------------------------------------------------------------ */
/* Latency histogram: log-linear, 32 linear sub-buckets per power of two    */
/* (about 3% resolution), values in nanoseconds.  Fixed size so workers can */
/* ship it through a pipe and the parent can add them up.                   */

#define HIST_SUB_BITS  5
#define HIST_SUB       (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 40
#define HIST_BUCKETS   ((HIST_MAX_SHIFT + 2) * HIST_SUB)

struct result {
    uint64_t opened, failed, echoed, errors, msgs;
    uint64_t pings;                /* Pings the server sent (each answered) */
    /* --cycle: operations completed in the measured interval */
    uint64_t cycles;
    /* --reconnect: connections closed by the server, how (Close code or a
     * plain end of TCP), those back open with an echo, and the attempts
     * that failed meanwhile (refused among them); monotonic ns of the
     * first close and of the last connection back (0: none) */
    uint64_t closed_1001, closed_1012, closed_other, closed_eof, back;
    uint64_t attempts_failed, refused;
    uint64_t first_close_ns, last_back_ns;
    /* data frames on the wire (headers included) for the messages counted:
     * wire_tx over tx_msgs sent in the interval, wire_rx over msgs */
    uint64_t tx_msgs, wire_tx, wire_rx, pmd_conns;
    uint64_t max_ns;
    uint64_t hist[HIST_BUCKETS];
};

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
    uint64_t started;              /* --cycle: when the operation began */
    uint64_t down_since;           /* --reconnect: when the server closed it */
    uint8_t closed_by_server, back;   /* --reconnect */
    struct handshake *hs;
    struct outbuf out;
};

enum phase { PH_CONNECT, PH_WAIT_GO, PH_RUN, PH_HOLD, PH_PING, PH_RECONNECT, PH_CLOSING,
             PH_DONE };

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
    long *again_ring, again_head, again_count;   /* to start at once */
    long reconnect_target;          /* --reconnect: connections open at the go */
    double tokens;
    uint64_t last_refill, next_timeout_scan;
    int reported;
    struct result res;
};

static inline long conn_index(const struct worker *w, const struct conn *c)
{
    return (long)(c - w->conns);
}

/* ------------------------------------------------------------------------ */
/* What each part offers the others                                          */

/* wsload_util.c */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
uint64_t now_ns(void);
uint64_t secs_to_ns(double s);
uint64_t rng_next(uint64_t *state);
uint64_t rng_seed(void);

/* wsload_stats.c */
void result_add_latency(struct result *r, uint64_t ns);
void result_merge(struct result *into, const struct result *from);
double sample_server_cpu(void);
void print_summary(const struct result *r, double connect_s, double cpu_s);

/* wsload_payload.c */
void build_pattern(struct worker *w);
void mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
               const uint8_t key[4], size_t phase);
void write_payload(const struct worker *w, uint8_t *dst, uint32_t seq,
                   const uint8_t *key);
bool payload_matches(const struct worker *w, uint32_t seq, size_t off,
                     const uint8_t *p, size_t n);

/* wsload_send.c */
uint8_t *outbuf_reserve(struct outbuf *b, size_t n);
void outbuf_free(struct outbuf *b);
bool outbuf_flush(struct outbuf *b, int fd);
uint64_t *sent_slot(struct worker *w, struct conn *c, uint32_t seq);
void queue_message(struct worker *w, struct conn *c, uint64_t now);
void queue_control(struct worker *w, struct conn *c, unsigned opcode,
                   const uint8_t *payload, size_t n);

/* wsload_recv.c */
bool raw_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n);
bool ws_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n);

/* wsload_cycle.c */
void slot_again(struct worker *w, struct conn *c, bool delayed);
bool restarts_failed_attempts(const struct worker *w);
void attempt_failed_again(struct worker *w, struct conn *c, int err, const char *what);
void cycle_begin(struct worker *w, uint64_t t0);
void cycle_opened(struct worker *w, struct conn *c);
void cycle_echoed(struct worker *w, struct conn *c, uint64_t now);
void cycle_closed(struct worker *w, struct conn *c);
void send_get_request(struct worker *w, struct conn *c);
bool get_response_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n);
void get_response_end(struct worker *w, struct conn *c);
void reconnect_begin(struct worker *w, uint64_t t0);
void reconnect_opened(struct worker *w, struct conn *c);
void reconnect_echoed(struct worker *w, struct conn *c, uint64_t now);
void reconnect_closed(struct worker *w, struct conn *c, unsigned code);

/* wsload_handshake.c */
void check_accept_computation(void);
void send_upgrade_request(struct worker *w, struct conn *c);
bool handshake_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n);

/* wsload_conn.c */
void conn_close_fd(struct conn *c);
void report_error(struct worker *w, const struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void attempt_failed(struct worker *w, struct conn *c, int err, const char *what);
void conn_opened(struct worker *w, struct conn *c);
void conn_broken(struct worker *w, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void start_attempt(struct worker *w, struct conn *c, uint64_t now);
void flush_conn(struct worker *w, struct conn *c);
void closing_done(struct worker *w, struct conn *c);
void on_socket_event(struct worker *w, struct conn *c, uint32_t events);

/* wsload_worker.c */
void write_all(int fd, const void *data, size_t n);
void worker_main(struct worker *w) __attribute__((noreturn));

/* wsload_run.c */
int run(void);

#endif
