/*
 * fanload_sub.c - one subscriber process of bench/fanload: opens its
 * connections (WebSockets, or raw TCP to bench/fanout), then reads every
 * message, noting for each message seq when it arrived last and at how
 * many connections (shared memory, read by the parent).
 *
 * One epoll loop; connections bind source addresses 127.0.1.1-250 in
 * turn, so that 10,000 of them never run out of ephemeral ports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fanload.h"

#define READ_BUF     (256 * 1024)
#define MAX_EVENTS   512
#define KEEP_MAX     160             /* a partial frame: header + payload */

enum { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DONE };

typedef struct conn {
    int fd, state;
    size_t keep_len, head_len;
    uint8_t keep[KEEP_MAX];          /* a partial message */
    char head[512];                  /* the handshake's answer */
} conn;

typedef struct sub_proc {
    int id, epfd, nconns, started, pending;
    conn *conns;
    uint8_t *buf;
    proc_stats *st;
    uint64_t *last;
    uint32_t *count;
} sub_proc;

static void finish(sub_proc *p, conn *c, int failed)
{
    if (c->state == C_DONE)
        return;
    if (c->state != C_OPEN)
        p->pending--;
    if (failed && c->state != C_OPEN)
        p->st->failed++;
    else
        p->st->closed++;
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = C_DONE;
}

static void start_conn(sub_proc *p, conn *c, int index)
{
    struct sockaddr_in src;
    struct epoll_event ev;
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = C_CONNECTING;
    p->pending++;
    if (c->fd < 0) {
        c->state = C_DONE;
        p->pending--;
        p->st->failed++;
        return;
    }
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl((127u << 24) | (1u << 8)
                                | (uint32_t)(1 + (index * MAX_PROCS + p->id) % 250));
    setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bind(c->fd, (struct sockaddr *)&src, sizeof src);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&opt.sub.addr, sizeof opt.sub.addr) < 0
        && errno != EINPROGRESS) {
        finish(p, c, 1);
        return;
    }
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void opened(sub_proc *p, conn *c)
{
    struct epoll_event ev;

    c->state = C_OPEN;
    p->pending--;
    p->st->opened++;
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void connected(sub_proc *p, conn *c)
{
    char req[1024];
    int len, err = 0;
    socklen_t l = sizeof err;

    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
        finish(p, c, 1);
        return;
    }
    if (opt.sub.kind == EP_RAW) {
        opened(p, c);
        return;
    }
    len = ws_request(&opt.sub, req, sizeof req);
    if (write(c->fd, req, (size_t)len) != len) {
        finish(p, c, 1);
        return;
    }
    c->state = C_HANDSHAKE;
    {
        struct epoll_event ev;

        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void got(sub_proc *p, const uint8_t *payload, uint64_t now)
{
    uint64_t seq = msg_seq(payload);

    if (seq < sh->max_msgs) {
        p->count[seq]++;
        if (now > p->last[seq])
            p->last[seq] = now;
    }
    p->st->delivered++;
}

/* Messages in data (after what was kept); keeps a partial one.  0 when
 * the stream is not what it should be (a Close, a bad frame). */
static int parse(sub_proc *p, conn *c, const uint8_t *data, size_t len,
                 uint64_t now)
{
    uint8_t *b = p->buf;
    size_t n = c->keep_len + len, off = 0;

    if (c->keep_len) {
        memmove(b + c->keep_len, data, len);
        memcpy(b, c->keep, c->keep_len);
        data = b;
    }
    while (n - off >= (opt.sub.kind == EP_RAW ? MSG_SIZE : 2)) {
        const uint8_t *m = data + off;
        size_t plen, hlen = 2;

        if (opt.sub.kind == EP_RAW) {
            got(p, m, now);
            off += MSG_SIZE;
            continue;
        }
        plen = m[1] & 0x7f;
        if ((m[0] & 0x0f) >= 8 || plen >= 126 || (m[1] & 0x80))
            return 0;                /* a Close (1013?) or not ours */
        if (n - off < hlen + plen)
            break;
        if (plen >= 10)
            got(p, m + hlen, now);
        off += hlen + plen;
    }
    c->keep_len = n - off;
    if (c->keep_len > KEEP_MAX)
        return 0;
    memmove(c->keep, data + off, c->keep_len);
    return 1;
}

static void handshake_reply(sub_proc *p, conn *c, const uint8_t *data,
                            size_t len, uint64_t now)
{
    size_t room = sizeof c->head - c->head_len, take = len < room ? len : room;
    size_t had = c->head_len, used;
    const char *end;

    memcpy(c->head + c->head_len, data, take);
    c->head_len += take;
    end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->head_len == sizeof c->head)
            finish(p, c, 1);
        return;
    }
    if (memcmp(c->head, "HTTP/1.1 101 ", 13)) {
        finish(p, c, 1);
        return;
    }
    used = (size_t)(end + 4 - c->head) - had;
    opened(p, c);
    if (len > used && !parse(p, c, data + used, len - used, now))
        finish(p, c, 0);
}

static void readable(sub_proc *p, conn *c)
{
    uint8_t *in = p->buf + KEEP_MAX;

    for (;;) {
        ssize_t n = read(c->fd, in, READ_BUF - KEEP_MAX);
        uint64_t now;

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            finish(p, c, 0);
            return;
        }
        if (n < 0)
            return;
        now = now_ns();
        if (c->state == C_HANDSHAKE)
            handshake_reply(p, c, in, (size_t)n, now);
        else if (!parse(p, c, in, (size_t)n, now)) {
            p->st->errors++;
            finish(p, c, 0);
        }
        if (c->state == C_DONE || n < READ_BUF - KEEP_MAX)
            return;
    }
}

static void event(sub_proc *p, conn *c, uint32_t events)
{
    if (c->state == C_CONNECTING)
        connected(p, c);
    else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        readable(p, c);
}

/* New connections at opt.rate per second, a few at a time. */
static void start_more(sub_proc *p, uint64_t t0)
{
    uint64_t due = (uint64_t)((double)(now_ns() - t0) / 1e9 * opt.rate) + 1;

    while (p->started < p->nconns && (uint64_t)p->started < due
           && p->pending < 1000) {
        start_conn(p, &p->conns[p->started], p->started);
        p->started++;
    }
}

void subscriber_process(int id, int nconns)
{
    sub_proc p;
    struct epoll_event ev[MAX_EVENTS];
    uint64_t t0 = now_ns();

    memset(&p, 0, sizeof p);
    p.id = id;
    p.nconns = nconns;
    p.st = &sh->procs[id];
    p.last = last_ns(id);
    p.count = counts(id);
    p.epfd = epoll_create1(EPOLL_CLOEXEC);
    p.conns = calloc((size_t)nconns + 1, sizeof *p.conns);
    p.buf = malloc(READ_BUF + KEEP_MAX);
    if (p.epfd < 0 || !p.conns || !p.buf)
        _exit(2);
    while (!sh->stop) {
        int i, n;

        start_more(&p, t0);
        if (p.started == p.nconns && p.pending == 0 && !p.st->ready)
            __atomic_store_n(&p.st->ready, 1, __ATOMIC_RELEASE);
        n = epoll_wait(p.epfd, ev, MAX_EVENTS, 10);
        for (i = 0; i < n; i++)
            event(&p, ev[i].data.ptr, ev[i].events);
    }
    _exit(0);
}
