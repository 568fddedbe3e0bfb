/*
 * wsload_worker.c - one worker process: its epoll loop and its phases,
 * connect (paced by a token bucket), wait for the parent's go, echo or
 * hold, ping, close; then its result goes to the parent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "wsload.h"

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
    if (w->again_count > 0) {
        struct conn *c = &w->conns[w->again_ring[w->again_head]];
        w->again_head = (w->again_head + 1) % w->n;
        w->again_count--;
        return c;
    }
    if (w->next_fresh < w->n)
        return &w->conns[w->next_fresh++];
    return NULL;
}

/* Token bucket with a 10 ms burst, so a stall does not turn into a SYN
 * flood that overflows the server's accept backlog. */
static void schedule_connects(struct worker *w, uint64_t now)
{
    if (opt.cycle && !opt.rate_given) {
        /* a closed loop: the -c slots are the only limit */
        struct conn *c;
        while (w->pending < opt.max_pending && (c = next_to_start(w, now)) != NULL)
            start_attempt(w, c, now);
        return;
    }
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
        if ((c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) && c->deadline <= now) {
            attempt_failed(w, c, ETIMEDOUT, c->state == CS_CONNECTING ? "connect" : "handshake");
        } else if (opt.cycle && c->state == CS_CLOSING && c->deadline <= now) {
            report_error(w, c, "the server did not end the connection within %.1f s "
                         "of our Close", opt.timeout);
            closing_done(w, c);
        }
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

void write_all(int fd, const void *data, size_t n)
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
        if (c->fd < 0 || c->state == CS_CLOSING)
            continue;                 /* --cycle: already closing */
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
    if (opt.cycle) {
        cycle_begin(w, t0);
    } else if (opt.reconnect) {
        reconnect_begin(w, t0);
    } else if (opt.idle) {
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
        if (opt.cycle) {              /* connections come and go in PH_RUN */
            write_all(w->report_fd, "R", 1);
            w->phase = PH_WAIT_GO;
            break;
        }
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
        if (opt.cycle && now < w->measure_end)
            schedule_connects(w, now);
        if (opt.cycle && now >= w->next_timeout_scan)
            expire_attempts(w, now);
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
    case PH_RECONNECT:
        schedule_connects(w, now);
        if (now >= w->next_timeout_scan) {
            expire_attempts(w, now);
            expire_echoes(w, now);
            w->next_timeout_scan = now + TIMEOUT_SCAN_NS;
        }
        if (w->res.back < (uint64_t)w->reconnect_target && now < w->phase_deadline)
            break;
        if (w->res.back < (uint64_t)w->reconnect_target) {
            uint64_t missing = (uint64_t)w->reconnect_target - w->res.back;
            w->res.errors += missing;
            fprintf(stderr, "wsload: worker %d: %" PRIu64 " connection(s) not back "
                    "within --hold\n", w->id, missing);
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
        if (opt.cycle && (w->again_count > 0 || w->retry_count > 0))
            return 1;
        deadline = w->measure_end;
        break;
    case PH_RECONNECT:
        if (w->again_count > 0 || w->retry_count > 0)
            return 1;
        deadline = w->phase_deadline;
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
    w->again_ring = calloc((size_t)w->n, sizeof *w->again_ring);
    w->rbuf = malloc(READ_BUF_SIZE);
    if (!w->conns || !w->sent_ns || !w->retry_ring || !w->again_ring || !w->rbuf)
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

void worker_main(struct worker *w)
{
    worker_init(w);
    worker_loop(w);
    write_all(w->report_fd, &w->res, sizeof w->res);
    _exit(0);
}
