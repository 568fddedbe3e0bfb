/*
 * wsload_conn.c - one connection's life: connect (from a rotating source
 * address), retries of transient failures, reading and writing on socket
 * events, the end of a connection that broke or closed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsload.h"

void report_error(struct worker *w, const struct conn *c, const char *fmt, ...)
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

void conn_close_fd(struct conn *c)
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
void attempt_failed(struct worker *w, struct conn *c, int err, const char *what)
{
    conn_close_fd(c);
    w->pending--;
    if (restarts_failed_attempts(w)) {
        attempt_failed_again(w, c, err, what);
        return;
    }
    if (is_retryable(err) && c->attempts < MAX_ATTEMPTS) {
        c->state = CS_RETRY_WAIT;
        c->deadline = now_ns() + opt.retry_delay_ns;
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

void conn_opened(struct worker *w, struct conn *c)
{
    c->state = CS_OPEN;
    w->pending--;
    w->resolved++;
    w->n_open++;
    w->res.opened++;
    reset_parser(c);
    if (opt.cycle)
        cycle_opened(w, c);
    else if (w->phase == PH_RECONNECT)
        reconnect_opened(w, c);
}

/* An open connection broke: counted as an error, never reopened. */
void conn_broken(struct worker *w, struct conn *c, const char *fmt, ...)
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
    if (opt.cycle && w->phase == PH_RUN)
        slot_again(w, c, true);
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

void start_attempt(struct worker *w, struct conn *c, uint64_t now)
{
    if (c->attempts == 0)
        c->started = now;
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
    else if (opt.get_path[0])
        send_get_request(w, c);
    else
        send_upgrade_request(w, c);
    return true;
}

static bool consume_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (c->state == CS_HANDSHAKE)
        return opt.get_path[0] ? get_response_input(w, c, p, n)
                               : handshake_input(w, c, p, n);
    if (c->state == CS_CLOSING)
        return true;                  /* --cycle: the rest is drained */
    return opt.raw ? raw_input(w, c, p, n) : ws_input(w, c, p, n);
}

static void peer_closed(struct worker *w, struct conn *c, int err)
{
    if (c->state == CS_HANDSHAKE && opt.get_path[0] && !err)
        get_response_end(w, c);       /* "Connection: close": the end */
    else if (c->state == CS_OPEN && w->phase == PH_RECONNECT)
        reconnect_closed(w, c, 0);
    else if (c->state == CS_HANDSHAKE)
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
            if (c->state == CS_CLOSING)
                return true;          /* --cycle: our Close is queued */
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

void flush_conn(struct worker *w, struct conn *c)
{
    if (c->out.off == c->out.len || outbuf_flush(&c->out, c->fd))
        return;
    if (c->state == CS_HANDSHAKE)
        attempt_failed(w, c, errno, "handshake (send)");
    else
        conn_broken(w, c, "send: %s", strerror(errno));
}

/* Our Close went out and the server ended TCP (or the socket broke, or
 * --cycle gave up waiting). */
void closing_done(struct worker *w, struct conn *c)
{
    conn_close_fd(c);
    outbuf_free(&c->out);
    c->state = CS_DONE;
    w->n_closing--;
    if (opt.cycle)
        cycle_closed(w, c);
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
    closing_done(w, c);
}

void on_socket_event(struct worker *w, struct conn *c, uint32_t events)
{
    if (c->state == CS_CONNECTING && !finish_connect(w, c, events))
        return;
    if (c->state == CS_HANDSHAKE || c->state == CS_OPEN) {
        if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) &&
            !read_input(w, c, events))
            return;
        if (c->state != CS_CLOSING) {
            flush_conn(w, c);
            return;
        }
    }
    if (c->state != CS_CLOSING)
        return;
    if (outbuf_flush(&c->out, c->fd))
        drain_closing(w, c);
    else
        closing_done(w, c);
}
