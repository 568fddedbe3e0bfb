/*
 * tcpecho - raw TCP echo server on loopback: the physical reference that
 * mod_websocket's echo numbers are compared against.
 *
 *   tcpecho -p PORT [-T THREADS] [-b ADDR] [--duration SECS]
 *
 * Each thread owns a SO_REUSEPORT listener and an epoll loop, so the kernel
 * spreads connections over threads and nothing is shared between them.
 * Every byte read is written straight back; when the socket cannot take it
 * all, the rest waits in a per-connection buffer and reading pauses until it
 * is gone, so memory stays bounded by one read per connection.
 *
 * Stops on SIGINT/SIGTERM or after --duration (default 30 s).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF_SIZE    (64 * 1024)
#define MAX_EVENTS       256
#define MAX_THREADS      8
#define LOOP_WAIT_MS     200      /* how soon a stop request is noticed */
#define ACCEPT_RETRY_NS  (100 * 1000000ull)

struct echo_conn {
    int fd;
    uint8_t *pending;             /* bytes read but not yet echoed */
    size_t off, len;
};

struct echo_thread {
    int id, listen_fd, epfd;
    pthread_t tid;
    uint8_t *buf;
    uint64_t accepted, bytes, accept_retry_at;
    long live;
};

static volatile sig_atomic_t stop_requested;
static uint64_t stop_at_ns;

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

static void die(const char *what)
{
    fprintf(stderr, "tcpecho: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int open_listener(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        die("SO_REUSEPORT");
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) < 0)
        die("bind");
    if (listen(fd, 65535) < 0)        /* the kernel caps it at somaxconn */
        die("listen");
    return fd;
}

static void close_conn(struct echo_thread *t, struct echo_conn *c)
{
    close(c->fd);
    free(c->pending);
    free(c);
    t->live--;
}

/* Sends as much as the socket takes: bytes sent, or -1 on error. */
static ssize_t send_some(int fd, const uint8_t *data, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = send(fd, data + done, n - done, MSG_NOSIGNAL);
        if (k > 0)
            done += (size_t)k;
        else if (k < 0 && errno == EINTR)
            continue;
        else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        else
            return -1;
    }
    return (ssize_t)done;
}

/* Echoes a chunk; what the socket cannot take now is kept in c->pending. */
static bool echo_out(struct echo_conn *c, const uint8_t *data, size_t n)
{
    ssize_t done = send_some(c->fd, data, n);
    if (done < 0)
        return false;
    if ((size_t)done == n)
        return true;
    c->pending = malloc(n - (size_t)done);
    if (!c->pending)
        return false;
    memcpy(c->pending, data + done, n - (size_t)done);
    c->off = 0;
    c->len = n - (size_t)done;
    return true;
}

/* Retries the held-back tail: -1 error, 0 some still held, 1 all out. */
static int flush_pending(struct echo_conn *c)
{
    ssize_t done = send_some(c->fd, c->pending + c->off, c->len - c->off);
    if (done < 0)
        return -1;
    c->off += (size_t)done;
    if (c->off < c->len)
        return 0;
    free(c->pending);
    c->pending = NULL;
    c->off = c->len = 0;
    return 1;
}

static void serve(struct echo_thread *t, struct echo_conn *c, uint32_t events)
{
    if (c->pending) {
        int state = flush_pending(c);
        if (state < 0)
            close_conn(t, c);
        if (state <= 0)
            return;                   /* reading waits until the backlog is out */
    }
    for (;;) {
        ssize_t n = recv(c->fd, t->buf, READ_BUF_SIZE, 0);
        if (n > 0) {
            t->bytes += (uint64_t)n;
            if (!echo_out(c, t->buf, (size_t)n)) {
                close_conn(t, c);
                return;
            }
            if (c->pending)
                return;               /* EPOLLOUT resumes us */
            /* short read: the queue is empty unless EOF is pending too */
            if ((size_t)n < READ_BUF_SIZE && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            close_conn(t, c);         /* EOF or error */
            return;
        }
    }
}

static void accept_all(struct echo_thread *t)
{
    for (;;) {
        int fd = accept4(t->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* edge-triggered: no new edge will come for the connections
                 * already queued, so look again a little later */
                if (t->accept_retry_at == 0)
                    fprintf(stderr, "tcpecho: accept: %s (retrying)\n", strerror(errno));
                t->accept_retry_at = now_ns() + ACCEPT_RETRY_NS;
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct echo_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                  .data.ptr = c };
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        t->accepted++;
        t->live++;
    }
}

static bool should_stop(void)
{
    return stop_requested || now_ns() >= stop_at_ns;
}

static void *thread_main(void *arg)
{
    struct echo_thread *t = arg;
    struct epoll_event events[MAX_EVENTS];
    while (!should_stop()) {
        int n = epoll_wait(t->epfd, events, MAX_EVENTS, LOOP_WAIT_MS);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                accept_all(t);
            else
                serve(t, events[i].data.ptr, events[i].events);
        }
        if (t->accept_retry_at && now_ns() >= t->accept_retry_at) {
            t->accept_retry_at = 0;
            accept_all(t);
        }
    }
    return NULL;
}

static void setup_thread(struct echo_thread *t, int id, const struct sockaddr_in *addr)
{
    t->id = id;
    t->listen_fd = open_listener(addr);
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->buf = malloc(READ_BUF_SIZE);
    if (t->epfd < 0 || !t->buf)
        die("setup");
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->listen_fd, &ev) < 0)
        die("epoll_ctl");
}

static void usage(FILE *f)
{
    fputs("usage: tcpecho -p PORT [-T THREADS (1..8, default 2)] [-b ADDR (127.x.x.x, "
          "default 127.0.0.1)] [--duration SECS (default 30, max 86400)]\n", f);
}

static long parse_num(const char *s, long lo, long hi, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "tcpecho: bad %s '%s' (expected %ld..%ld)\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "port", required_argument, NULL, 'p' },
        { "threads", required_argument, NULL, 'T' },
        { "bind", required_argument, NULL, 'b' },
        { "duration", required_argument, NULL, 'D' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long port = 0, threads = 2, duration = 30;
    const char *bind_addr = "127.0.0.1";
    int ch;
    while ((ch = getopt_long(argc, argv, "p:T:b:D:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p': port = parse_num(optarg, 1, 65535, "port"); break;
        case 'T': threads = parse_num(optarg, 1, MAX_THREADS, "threads"); break;
        case 'b': bind_addr = optarg; break;
        case 'D': duration = parse_num(optarg, 1, 86400, "duration"); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (!port || optind != argc || inet_pton(AF_INET, bind_addr, &addr.sin_addr) != 1 ||
        (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
        usage(stderr);                /* loopback only, by design */
        return 2;
    }
    raise_fd_limit();
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    stop_at_ns = now_ns() + (uint64_t)duration * 1000000000ull;

    static struct echo_thread pool[MAX_THREADS];
    for (long i = 0; i < threads; i++)        /* all bound before anyone connects */
        setup_thread(&pool[i], (int)i, &addr);
    fprintf(stderr, "tcpecho: listening on %s:%ld threads=%ld duration=%lds\n",
            bind_addr, port, threads, duration);
    for (long i = 0; i < threads; i++)
        if (pthread_create(&pool[i].tid, NULL, thread_main, &pool[i]) != 0)
            die("pthread_create");

    uint64_t accepted = 0, bytes = 0;
    for (long i = 0; i < threads; i++) {
        pthread_join(pool[i].tid, NULL);
        accepted += pool[i].accepted;
        bytes += pool[i].bytes;
    }
    fprintf(stderr, "tcpecho: stopped: accepted=%llu echoed_bytes=%llu\n",
            (unsigned long long)accepted, (unsigned long long)bytes);
    return 0;                         /* exit closes the remaining sockets */
}
