/*
 * fanout - raw TCP fan-out server on loopback: the physical reference for
 * the topics' fan-out figures (docs/performance.md, bench/run.py --only g).
 *
 *   fanout -p SUBPORT -q PUBPORT [-T THREADS] [--duration SECS]
 *
 * Subscribers connect to SUBPORT and only read.  A publisher connects to
 * PUBPORT and writes messages; every byte it writes is written to every
 * subscriber, in order.  That is what a fan-out cannot do with less: one
 * read of what was published, and one write per subscriber of what came
 * in that read (several messages published meanwhile go in one write,
 * as mod_websocket's event loops write several queued frames at once).
 *
 * THREADS workers (default 1) each own a SO_REUSEPORT listener on SUBPORT,
 * so the kernel spreads subscribers over them, and an epoll loop; the main
 * thread reads the publisher and hands each chunk to every worker through
 * the worker's pipe.  A subscriber whose socket is full keeps what it
 * could not take in a buffer (writing resumes on EPOLLOUT); past 16 MiB it
 * is dropped, as WebSocketSendQueueLimit drops a WebSocket.
 *
 * Stops on SIGINT/SIGTERM or after --duration (default 60 s).  Prints one
 * line: accepted subscribers, bytes published, writes made, dropped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK          (64 * 1024)
#define MAX_EVENTS     256
#define MAX_THREADS    16
#define PENDING_MAX    (16u * 1024 * 1024)
#define LOOP_WAIT_MS   200

typedef struct sub {
    int fd;
    uint8_t *pending;                /* what the socket could not take */
    size_t off, len, cap;
} sub;

typedef struct worker {
    int id, listen_fd, pipe_rd, pipe_wr, epfd;
    pthread_t tid;
    sub **subs;
    size_t nsubs, cap;
    uint8_t buf[CHUNK];
    uint64_t accepted, writes, dropped;
} worker;

static volatile sig_atomic_t stop_requested;
static uint64_t stop_at_ns;
static worker *workers;
static int nworkers = 1;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int stopping(void)
{
    return stop_requested || now_ns() >= stop_at_ns;
}

static void die(const char *what)
{
    fprintf(stderr, "fanout: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int listener(int port, int reuseport)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind");
    if (listen(fd, 4096) < 0)
        die("listen");
    return fd;
}

static void epoll_set(int epfd, int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev;

    ev.events = events;
    ev.data.ptr = ptr;
    if (epoll_ctl(epfd, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        die("epoll_ctl");
}

/* ---- a worker: its subscribers ---- */

static void drop_sub(worker *w, sub *s)
{
    size_t i;

    for (i = 0; i < w->nsubs; i++) {
        if (w->subs[i] == s) {
            w->subs[i] = w->subs[--w->nsubs];
            break;
        }
    }
    close(s->fd);
    free(s->pending);
    free(s);
}

static void accept_subs(worker *w)
{
    for (;;) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1;
        sub *s;

        if (fd < 0)
            return;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (w->nsubs == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 1024;
            w->subs = realloc(w->subs, w->cap * sizeof *w->subs);
            if (!w->subs)
                die("realloc");
        }
        if (!(s = calloc(1, sizeof *s)))
            die("calloc");
        s->fd = fd;
        w->subs[w->nsubs++] = s;
        w->accepted++;
        epoll_set(w->epfd, EPOLL_CTL_ADD, fd, EPOLLIN, s);
    }
}

static int keep(sub *s, const uint8_t *data, size_t len)
{
    if (s->len - s->off + len > PENDING_MAX)
        return 0;
    if (s->off && s->off == s->len)
        s->off = s->len = 0;
    if (s->len + len > s->cap) {
        memmove(s->pending, s->pending + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
        if (s->len + len > s->cap) {
            s->cap = (s->len + len) * 2;
            if (!(s->pending = realloc(s->pending, s->cap)))
                die("realloc");
        }
    }
    memcpy(s->pending + s->len, data, len);
    s->len += len;
    return 1;
}

/* Writes what s holds, then data; keeps the rest.  0: drop it. */
static int send_to(worker *w, sub *s, const uint8_t *data, size_t len)
{
    int had = s->len > s->off;

    if (had)
        return keep(s, data, len);
    for (;;) {
        ssize_t n = write(s->fd, data, len);

        w->writes++;
        if (n == (ssize_t)len)
            return 1;
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return 0;
        epoll_set(w->epfd, EPOLL_CTL_MOD, s->fd, EPOLLIN | EPOLLOUT, s);
        return keep(s, data, len);
    }
}

static int flush(worker *w, sub *s)
{
    while (s->off < s->len) {
        ssize_t n = write(s->fd, s->pending + s->off, s->len - s->off);

        w->writes++;
        if (n > 0) {
            s->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && errno == EAGAIN;
    }
    s->off = s->len = 0;
    epoll_set(w->epfd, EPOLL_CTL_MOD, s->fd, EPOLLIN, s);
    return 1;
}

static void fan_out(worker *w)
{
    ssize_t n = read(w->pipe_rd, w->buf, sizeof w->buf);
    size_t i = 0;

    if (n <= 0)
        return;
    while (i < w->nsubs) {
        sub *s = w->subs[i];

        if (send_to(w, s, w->buf, (size_t)n)) {
            i++;
        }
        else {
            w->dropped++;
            drop_sub(w, s);      /* the last one takes its place */
        }
    }
}

static void subscriber_event(worker *w, sub *s, uint32_t events)
{
    char junk[512];

    if (events & EPOLLOUT && !flush(w, s)) {
        drop_sub(w, s);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = read(s->fd, junk, sizeof junk);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            drop_sub(w, s);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct epoll_event ev[MAX_EVENTS];

    epoll_set(w->epfd, EPOLL_CTL_ADD, w->listen_fd, EPOLLIN, &w->listen_fd);
    epoll_set(w->epfd, EPOLL_CTL_ADD, w->pipe_rd, EPOLLIN, &w->pipe_rd);
    while (!stopping()) {
        int i, n = epoll_wait(w->epfd, ev, MAX_EVENTS, LOOP_WAIT_MS);

        for (i = 0; i < n; i++) {
            if (ev[i].data.ptr == &w->listen_fd)
                accept_subs(w);
            else if (ev[i].data.ptr == &w->pipe_rd)
                fan_out(w);
            else
                subscriber_event(w, ev[i].data.ptr, ev[i].events);
        }
    }
    return NULL;
}

/* ---- the main thread: the publishers ---- */

static void hand_out(const uint8_t *data, size_t len)
{
    int i;

    for (i = 0; i < nworkers; i++) {
        size_t off = 0;

        while (off < len) {
            ssize_t n = write(workers[i].pipe_wr, data + off, len - off);

            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EINTR)
                die("pipe write");
        }
    }
}

static uint64_t publish_loop(int pub_listen)
{
    struct epoll_event ev[16];
    static uint8_t buf[CHUNK];
    uint64_t bytes = 0;
    int epfd = epoll_create1(EPOLL_CLOEXEC);

    epoll_set(epfd, EPOLL_CTL_ADD, pub_listen, EPOLLIN, NULL);
    while (!stopping()) {
        int i, n = epoll_wait(epfd, ev, 16, LOOP_WAIT_MS);

        /* data.u64: 0 for the listener, fd + 1 for a publisher. */
        for (i = 0; i < n; i++) {
            int fd = (int)ev[i].data.u64 - 1;

            if (fd < 0) {
                int c = accept4(pub_listen, NULL, NULL, SOCK_CLOEXEC);
                struct epoll_event e;

                if (c < 0)
                    continue;
                e.events = EPOLLIN;
                e.data.u64 = (uint64_t)c + 1;
                epoll_ctl(epfd, EPOLL_CTL_ADD, c, &e);
                continue;
            }
            {
                ssize_t got = read(fd, buf, sizeof buf);

                if (got <= 0) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    continue;
                }
                bytes += (uint64_t)got;
                hand_out(buf, (size_t)got);
            }
        }
    }
    close(epfd);
    return bytes;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "duration", required_argument, NULL, 'D' }, { NULL, 0, NULL, 0 }
    };
    int sub_port = 0, pub_port = 0, c, i, pub_listen;
    double duration = 60;
    uint64_t bytes, accepted = 0, writes = 0, dropped = 0;

    while ((c = getopt_long(argc, argv, "p:q:T:", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': sub_port = atoi(optarg); break;
        case 'q': pub_port = atoi(optarg); break;
        case 'T': nworkers = atoi(optarg); break;
        case 'D': duration = atof(optarg); break;
        default:
            fprintf(stderr, "usage: fanout -p SUBPORT -q PUBPORT [-T THREADS] "
                    "[--duration SECS]\n");
            return 2;
        }
    }
    if (sub_port <= 0 || pub_port <= 0 || nworkers < 1 || nworkers > MAX_THREADS
        || duration <= 0) {
        fprintf(stderr, "fanout: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    stop_at_ns = now_ns() + (uint64_t)(duration * 1e9);
    if (!(workers = calloc((size_t)nworkers, sizeof *workers)))
        die("calloc");
    for (i = 0; i < nworkers; i++) {
        int fds[2];

        if (pipe2(fds, O_CLOEXEC) < 0)
            die("pipe");
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
        workers[i].id = i;
        workers[i].pipe_rd = fds[0];
        workers[i].pipe_wr = fds[1];
        workers[i].listen_fd = listener(sub_port, 1);
        workers[i].epfd = epoll_create1(EPOLL_CLOEXEC);
        if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]))
            die("pthread_create");
    }
    pub_listen = listener(pub_port, 0);
    bytes = publish_loop(pub_listen);
    for (i = 0; i < nworkers; i++) {
        pthread_join(workers[i].tid, NULL);
        accepted += workers[i].accepted;
        writes += workers[i].writes;
        dropped += workers[i].dropped;
    }
    printf("accepted=%llu published_bytes=%llu writes=%llu dropped=%llu\n",
           (unsigned long long)accepted, (unsigned long long)bytes,
           (unsigned long long)writes, (unsigned long long)dropped);
    return 0;
}
