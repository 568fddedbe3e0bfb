/*
 * fanload - fan-out load: many subscribers of one topic, one publisher,
 * and what it costs the server per delivered message and how long the
 * last subscriber waits (bench/run.py --only g,h; docs/performance.md).
 *
 *   fanload --sub URL --pub URL [options]
 *
 *   --sub ws://127.0.0.1:P/sub/T    subscribers: WebSockets (the pubsub
 *                                   plugin, or chat members: /chat/R)
 *         tcp://127.0.0.1:P         or raw TCP to bench/fanout
 *   --pub http://127.0.0.1:P/pub/T  the publisher: POSTs (keep-alive),
 *         ws://127.0.0.1:P/chat/R   text frames to a plugin that publishes,
 *         tcp://127.0.0.1:P         or raw bytes to bench/fanout
 *   --subs N (1000)  -P/--procs P (2)  --rate R (2000 connections/s/proc)
 *   --interval-us U (1000): one 32-byte message every U us; 0: as fast as
 *                   the publisher goes (--conns K HTTP connections)
 *   --warmup S (1)  --duration S (5)  --drain S (10)
 *   --echo          (ws publisher) count the echoes it gets back: the
 *                   reference of the plugin path is the echo plugin
 *   --get           (http publisher) GET the path instead of POSTing to
 *                   it: the reference of the publisher is a small file
 *   --cpu-pid PID (repeatable), --cpu-children: server CPU over the
 *                   measured messages, from /proc
 *
 * A message is 32 bytes: its seq in 10 digits, then dots.  The publisher
 * notes when it sent each one; every subscriber process notes, per seq,
 * when it arrived last at any of its connections and at how many.  The
 * latency of a message is from its publish to its last delivery, over
 * the messages of the measured window that reached every subscriber.
 * deliveries_per_s is over the measured window and the drain after it
 * (until the last message reached every subscriber).  Prints one line
 * of key=value.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fanload.h"

options opt;
shared *sh;

static size_t region_size;

uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the shared memory ---- */

static uint8_t *after_header(void)
{
    return (uint8_t *)sh + ((sizeof(shared) + 63) & ~(size_t)63);
}

uint64_t *pub_ns(void)
{
    return (uint64_t *)(void *)after_header();
}

uint64_t *last_ns(int proc)
{
    return pub_ns() + sh->max_msgs * (1 + (uint64_t)proc);
}

uint32_t *counts(int proc)
{
    return (uint32_t *)(void *)(pub_ns() + sh->max_msgs * (1 + (uint64_t)opt.procs))
           + sh->max_msgs * (uint64_t)proc;
}

static void map_shared(uint64_t max_msgs)
{
    region_size = ((sizeof(shared) + 63) & ~(size_t)63)
                  + max_msgs * 8 * (1 + (size_t)opt.procs)
                  + max_msgs * 4 * (size_t)opt.procs;
    sh = mmap(NULL, region_size, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("fanload: mmap");
        exit(2);
    }
    sh->max_msgs = max_msgs;
}

/* ---- messages and endpoints ---- */

static void make_msg(uint8_t *out, uint64_t seq)
{
    char digits[16];

    memset(out, '.', MSG_SIZE);
    snprintf(digits, sizeof digits, "%010llu", (unsigned long long)seq);
    memcpy(out, digits, 10);
}

uint64_t msg_seq(const uint8_t *p)
{
    uint64_t seq = 0;
    int i;

    for (i = 0; i < 10; i++)
        seq = seq * 10 + (uint64_t)(p[i] - '0');
    return seq;
}

int ws_request(const endpoint *ep, char *out, size_t size)
{
    return snprintf(out, size, "GET %s HTTP/1.1\r\nHost: %s\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: ZmFubG9hZCBmYW5sb2FkIQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n", ep->path, ep->host);
}

static int parse_url(const char *url, endpoint *ep)
{
    static const struct { const char *scheme; endpoint_kind kind; } kinds[] = {
        { "ws://", EP_WS }, { "tcp://", EP_RAW }, { "http://", EP_HTTP }
    };
    const char *rest = NULL, *slash, *colon;
    char host[64];
    size_t i, hl;

    memset(ep, 0, sizeof *ep);
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (!strncmp(url, kinds[i].scheme, strlen(kinds[i].scheme))) {
            ep->kind = kinds[i].kind;
            rest = url + strlen(kinds[i].scheme);
        }
    }
    if (!rest) {
        return 0;
    }
    slash = strchr(rest, '/');
    hl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hl >= sizeof host) {
        return 0;
    }
    memcpy(host, rest, hl);
    host[hl] = '\0';
    snprintf(ep->host, sizeof ep->host, "%s", host);
    snprintf(ep->path, sizeof ep->path, "%s", slash ? slash : "/");
    if (!(colon = strchr(host, ':')) || atoi(colon + 1) <= 0) {
        return 0;
    }
    ep->addr.sin_family = AF_INET;
    ep->addr.sin_port = htons((uint16_t)atoi(colon + 1));
    host[colon - host] = '\0';
    /* Loopback only: this tool loads the machine it runs on. */
    return inet_pton(AF_INET, host, &ep->addr.sin_addr) == 1
           && (ntohl(ep->addr.sin_addr.s_addr) >> 24) == 127;
}

static int dial(const endpoint *ep)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0 || connect(fd, (const struct sockaddr *)&ep->addr,
                          sizeof ep->addr) < 0) {
        perror("fanload: connect to the publisher's endpoint");
        exit(1);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;

    while (len) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror("fanload: publish");
            exit(1);
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Reads up to the end of a head; the rest stays in buf. */
static size_t read_head(int fd, char *buf, size_t size, size_t *have)
{
    char *end;

    while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
        ssize_t n = read(fd, buf + *have, size - *have);

        if (n <= 0 || *have + (size_t)n >= size) {
            fprintf(stderr, "fanload: no answer from the publisher's endpoint\n");
            exit(1);
        }
        *have += (size_t)n;
    }
    return (size_t)(end + 4 - buf);
}

/* ---- the publisher ---- */

typedef struct publisher {
    int fd;
    char in[8192];
    size_t have;
    uint64_t errors;
} publisher;

static void pub_open(publisher *p)
{
    memset(p, 0, sizeof *p);
    p->fd = dial(&opt.pub);
    if (opt.pub.kind == EP_WS) {
        char req[1024];
        int len = ws_request(&opt.pub, req, sizeof req);
        size_t head;

        write_all(p->fd, req, (size_t)len);
        head = read_head(p->fd, p->in, sizeof p->in, &p->have);
        if (strncmp(p->in, "HTTP/1.1 101 ", 13)) {
            fprintf(stderr, "fanload: %s refused the WebSocket\n", opt.pub.path);
            exit(1);
        }
        p->have -= head;
    }
}

/* One POST and its answer. */
static void pub_http(publisher *p, const uint8_t *msg)
{
    char req[1024];
    int len = opt.get
              ? snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n",
                         opt.pub.path, opt.pub.host)
              : snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: %s\r\n"
                         "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n",
                         opt.pub.path, opt.pub.host, MSG_SIZE);
    size_t head, body;
    const char *cl;
    int close_after;

    if (!opt.get) {
        memcpy(req + len, msg, MSG_SIZE);
        len += MSG_SIZE;
    }
    write_all(p->fd, req, (size_t)len);
    head = read_head(p->fd, p->in, sizeof p->in, &p->have);
    if (strncmp(p->in, "HTTP/1.1 2", 10))
        p->errors++;
    p->in[head - 1] = '\0';          /* the head as a string: "\r\n\r\0" */
    cl = strcasestr(p->in, "\r\nContent-Length:");
    body = cl ? (size_t)atol(cl + 17) : 0;
    close_after = strcasestr(p->in, "\r\nConnection: close") != NULL;
    while (p->have < head + body) {
        ssize_t n = read(p->fd, p->in + p->have, sizeof p->in - p->have);

        if (n <= 0) {
            fprintf(stderr, "fanload: the publisher's answer was cut\n");
            exit(1);
        }
        p->have += (size_t)n;
    }
    memmove(p->in, p->in + head + body, p->have - head - body);
    p->have -= head + body;
    /* MaxKeepAliveRequests: the server ends the connection; a new one. */
    if (close_after) {
        uint64_t errors = p->errors;

        close(p->fd);
        pub_open(p);
        p->errors = errors;
    }
}

static void pub_one(publisher *p, uint64_t seq)
{
    uint8_t msg[MSG_SIZE], frame[6 + MSG_SIZE];

    make_msg(msg, seq);
    if (seq < sh->max_msgs)
        pub_ns()[seq] = now_ns();
    switch (opt.pub.kind) {
    case EP_HTTP:
        pub_http(p, msg);
        break;
    case EP_RAW:
        write_all(p->fd, msg, MSG_SIZE);
        break;
    case EP_WS:
        /* A text frame, masked with a zero key (the payload as it is). */
        frame[0] = 0x81;
        frame[1] = 0x80 | MSG_SIZE;
        memset(frame + 2, 0, 4);
        memcpy(frame + 6, msg, MSG_SIZE);
        write_all(p->fd, frame, sizeof frame);
        break;
    }
}

/* ---- server CPU from /proc ---- */

static double proc_cpu_s(int pid, int *ppid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r")))
        return 0;
    p = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!p || !(p = strrchr(buf, ')')))
        return 0;
    /* After ")": state ppid ... utime (14th field) stime (15th). */
    if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               ppid, &ut, &st) != 3)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double server_cpu_s(void)
{
    double total = 0;
    int i, ppid;

    for (i = 0; i < opt.ncpu_pids; i++)
        total += proc_cpu_s(opt.cpu_pids[i], &ppid);
    if (opt.cpu_children) {
        DIR *d = opendir("/proc");
        struct dirent *e;

        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name), j;
            double cpu;

            if (pid <= 0)
                continue;
            cpu = proc_cpu_s(pid, &ppid);
            for (j = 0; j < opt.ncpu_pids; j++)
                if (ppid == opt.cpu_pids[j])
                    total += cpu;
        }
        if (d)
            closedir(d);
    }
    return total;
}

/* ---- the subscribers ---- */

static pid_t kids[MAX_PROCS];

static void start_subscribers(void)
{
    int i;

    for (i = 0; i < opt.procs; i++) {
        int n = opt.subs / opt.procs + (i < opt.subs % opt.procs);

        if ((kids[i] = fork()) == 0)
            subscriber_process(i, n);
        if (kids[i] < 0) {
            perror("fanload: fork");
            exit(2);
        }
    }
}

static void stop_subscribers(void)
{
    int i;

    sh->stop = 1;
    for (i = 0; i < opt.procs; i++)
        waitpid(kids[i], NULL, 0);
}

static uint64_t sum_stat(size_t offset)
{
    uint64_t total = 0;
    int i;

    for (i = 0; i < opt.procs; i++)
        total += __atomic_load_n((uint64_t *)(void *)((char *)&sh->procs[i]
                                                       + offset),
                                 __ATOMIC_RELAXED);
    return total;
}

#define OPENED     sum_stat(offsetof(proc_stats, opened))
#define DELIVERED  sum_stat(offsetof(proc_stats, delivered))

static int all_ready(void)
{
    int i;

    for (i = 0; i < opt.procs; i++)
        if (!__atomic_load_n(&sh->procs[i].ready, __ATOMIC_ACQUIRE))
            return 0;
    return 1;
}

static uint64_t reached(uint64_t seq)
{
    uint64_t n = 0;
    int i;

    for (i = 0; i < opt.procs; i++)
        n += __atomic_load_n(&counts(i)[seq], __ATOMIC_RELAXED);
    return n;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(t / 1000000000ull);
    ts.tv_nsec = (long)(t % 1000000000ull);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* ---- the figures ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double q)
{
    return n ? (double)v[(size_t)(q * (double)(n - 1) + 0.5)] / 1e3 : 0;
}

/* Paced: one message every interval; the latency of each measured one. */
static void run_paced(uint64_t opened)
{
    uint64_t interval = (uint64_t)opt.interval_us * 1000, seq = 0, from, to;
    uint64_t t0, start, end, deadline, *lat, n = 0, deliveries = 0, lost = 0;
    double cpu0, cpu1, secs, drained;
    publisher p;

    pub_open(&p);
    start = now_ns();
    for (t0 = start; now_ns() < start + (uint64_t)(opt.warmup * 1e9); t0 += interval) {
        sleep_until(t0);
        pub_one(&p, ++seq);
    }
    from = seq + 1;
    cpu0 = server_cpu_s();
    start = now_ns();
    end = start + (uint64_t)(opt.duration * 1e9);
    for (t0 = start; t0 < end && seq + 1 < sh->max_msgs; t0 += interval) {
        sleep_until(t0);
        pub_one(&p, ++seq);
    }
    to = seq;
    secs = (double)(now_ns() - start) / 1e9;
    /* Drained when every connection has the last one (each gets them in
     * order), or the time is up. */
    deadline = now_ns() + (uint64_t)(opt.drain * 1e9);
    while (reached(to) < OPENED && now_ns() < deadline)
        sleep_until(now_ns() + 10000000);
    cpu1 = server_cpu_s();
    drained = (double)(now_ns() - start) / 1e9;
    stop_subscribers();
    close(p.fd);
    lat = malloc((to - from + 1) * sizeof *lat);
    for (seq = from; lat && seq <= to; seq++) {
        uint64_t got = reached(seq), last = 0;
        int i;

        for (i = 0; i < opt.procs; i++)
            if (last_ns(i)[seq] > last)
                last = last_ns(i)[seq];
        deliveries += got;
        if (got >= opened && last >= pub_ns()[seq])
            lat[n++] = last - pub_ns()[seq];
        else
            lost++;
    }
    qsort(lat, n, sizeof *lat, cmp_u64);
    printf("mode=paced subs=%d opened=%llu procs=%d interval_us=%ld "
           "published=%llu pub_per_s=%.1f deliveries=%llu "
           "deliveries_per_s=%.0f incomplete=%llu closed=%llu errors=%llu "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f",
           opt.subs, (unsigned long long)opened, opt.procs, opt.interval_us,
           (unsigned long long)(to - from + 1), (double)(to - from + 1) / secs,
           (unsigned long long)deliveries, (double)deliveries / drained,
           (unsigned long long)lost,
           (unsigned long long)sum_stat(offsetof(proc_stats, closed)),
           (unsigned long long)p.errors, pct(lat, n, 0.5), pct(lat, n, 0.99),
           pct(lat, n, 1.0));
    if (opt.ncpu_pids)
        printf(" server_cpu_s=%.2f server_us_per_delivery=%.3f", cpu1 - cpu0,
               deliveries ? (cpu1 - cpu0) * 1e6 / (double)deliveries : 0.0);
    printf("\n");
    free(lat);
}

/* ---- as fast as it goes: --interval-us 0 ---- */

static struct {
    uint64_t seq, sent, echoes, errors, end_ns;
} run;

/* --echo: the echoes the publisher gets back, counted from its socket. */
static void *echo_counter(void *arg)
{
    int fd = *(int *)arg;
    uint8_t buf[65536];
    uint64_t bytes = 0;
    ssize_t n;

    while ((n = read(fd, buf, sizeof buf)) > 0) {
        bytes += (uint64_t)n;
        __atomic_store_n(&run.echoes, bytes / (2 + MSG_SIZE), __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *pub_thread(void *unused)
{
    pthread_t echo_th;
    publisher p;

    (void)unused;
    pub_open(&p);
    if (opt.echo)
        pthread_create(&echo_th, NULL, echo_counter, &p.fd);
    while (now_ns() < run.end_ns) {
        uint64_t sent;

        pub_one(&p, __atomic_add_fetch(&run.seq, 1, __ATOMIC_RELAXED));
        sent = __atomic_add_fetch(&run.sent, 1, __ATOMIC_RELAXED);
        /* Echoes: at most 4096 in flight, as a client that reads. */
        while (opt.echo && sent - __atomic_load_n(&run.echoes, __ATOMIC_RELAXED)
                           > 4096 && now_ns() < run.end_ns)
            sleep_until(now_ns() + 50000);
    }
    __atomic_add_fetch(&run.errors, p.errors, __ATOMIC_RELAXED);
    shutdown(p.fd, SHUT_RDWR);
    if (opt.echo)
        pthread_join(echo_th, NULL);
    close(p.fd);
    return NULL;
}

static void run_max(uint64_t opened)
{
    pthread_t th[64];
    uint64_t pub0, pub1, del0, del1, echo0, echo1, t0, t1;
    double cpu0, cpu1, secs;
    int i, n = opt.echo || opt.pub.kind != EP_HTTP ? 1 : opt.conns;

    t0 = now_ns();
    run.end_ns = t0 + (uint64_t)((opt.warmup + opt.duration + 0.5) * 1e9);
    for (i = 0; i < n; i++)
        pthread_create(&th[i], NULL, pub_thread, NULL);
    sleep_until(t0 + (uint64_t)(opt.warmup * 1e9));
    pub0 = run.sent, del0 = DELIVERED, echo0 = run.echoes;
    cpu0 = server_cpu_s();
    t0 = now_ns();
    sleep_until(t0 + (uint64_t)(opt.duration * 1e9));
    pub1 = run.sent, del1 = DELIVERED, echo1 = run.echoes;
    cpu1 = server_cpu_s();
    t1 = now_ns();
    for (i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    stop_subscribers();
    secs = (double)(t1 - t0) / 1e9;
    printf("mode=max subs=%d opened=%llu conns=%d published=%llu "
           "pub_per_s=%.1f deliveries=%llu deliveries_per_s=%.1f "
           "echoes_per_s=%.1f closed=%llu errors=%llu",
           opt.subs, (unsigned long long)opened, n,
           (unsigned long long)(pub1 - pub0), (double)(pub1 - pub0) / secs,
           (unsigned long long)(del1 - del0), (double)(del1 - del0) / secs,
           (double)(echo1 - echo0) / secs,
           (unsigned long long)sum_stat(offsetof(proc_stats, closed)),
           (unsigned long long)run.errors);
    if (opt.ncpu_pids)
        printf(" server_cpu_s=%.2f server_us_per_pub=%.3f", cpu1 - cpu0,
               pub1 > pub0 ? (cpu1 - cpu0) * 1e6 / (double)(pub1 - pub0) : 0.0);
    printf("\n");
}

/* ---- the command line ---- */

static void usage(void)
{
    fprintf(stderr, "usage: fanload --sub URL --pub URL [--subs N] [-P PROCS] "
            "[--interval-us U] [--warmup S] [--duration S] [--drain S] "
            "[--rate R] [--conns K] [--echo] [--get] [--cpu-pid PID] "
            "[--cpu-children]\n(see the comment at the top of "
            "bench/fanload.c)\n");
    exit(2);
}

static void parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "sub", required_argument, NULL, 's' },
        { "pub", required_argument, NULL, 'p' },
        { "subs", required_argument, NULL, 'n' },
        { "procs", required_argument, NULL, 'P' },
        { "interval-us", required_argument, NULL, 'i' },
        { "warmup", required_argument, NULL, 'w' },
        { "duration", required_argument, NULL, 'd' },
        { "drain", required_argument, NULL, 'D' },
        { "rate", required_argument, NULL, 'r' },
        { "conns", required_argument, NULL, 'k' },
        { "echo", no_argument, NULL, 'e' },
        { "get", no_argument, NULL, 'g' },
        { "cpu-pid", required_argument, NULL, 'c' },
        { "cpu-children", no_argument, NULL, 'C' },
        { NULL, 0, NULL, 0 }
    };
    int c, have_sub = 0, have_pub = 0;

    opt.subs = 1000, opt.procs = 2, opt.conns = 1, opt.interval_us = 1000;
    opt.warmup = 1, opt.duration = 5, opt.drain = 10, opt.rate = 2000;
    while ((c = getopt_long(argc, argv, "P:", longopts, NULL)) != -1) {
        switch (c) {
        case 's': have_sub = parse_url(optarg, &opt.sub); break;
        case 'p': have_pub = parse_url(optarg, &opt.pub); break;
        case 'n': opt.subs = atoi(optarg); break;
        case 'P': opt.procs = atoi(optarg); break;
        case 'i': opt.interval_us = atol(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'D': opt.drain = atof(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'k': opt.conns = atoi(optarg); break;
        case 'e': opt.echo = 1; break;
        case 'g': opt.get = 1; break;
        case 'c':
            if (opt.ncpu_pids < 8)
                opt.cpu_pids[opt.ncpu_pids++] = atoi(optarg);
            break;
        case 'C': opt.cpu_children = 1; break;
        default: usage();
        }
    }
    if (!have_sub || !have_pub || opt.sub.kind == EP_HTTP || opt.subs < 0
        || opt.procs < 1 || opt.procs > MAX_PROCS || opt.conns < 1
        || opt.conns > 64 || opt.interval_us < 0 || opt.duration <= 0
        || opt.warmup < 0 || opt.rate <= 0 || (opt.echo && opt.pub.kind != EP_WS)
        || (opt.get && opt.pub.kind != EP_HTTP))
        usage();
}

int main(int argc, char **argv)
{
    uint64_t deadline, max_msgs;

    parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    max_msgs = opt.interval_us
               ? (uint64_t)((opt.warmup + opt.duration) * 1e6
                            / (double)opt.interval_us) + 1000
               : 4000000;
    map_shared(max_msgs);
    start_subscribers();
    deadline = now_ns() + (uint64_t)((opt.subs / opt.rate / opt.procs + 60) * 1e9);
    while (!all_ready() && now_ns() < deadline)
        sleep_until(now_ns() + 10000000);
    if (!all_ready() || OPENED < (uint64_t)opt.subs) {
        fprintf(stderr, "fanload: %llu of %d subscribers opened (%llu "
                "failed)\n", (unsigned long long)OPENED, opt.subs,
                (unsigned long long)sum_stat(offsetof(proc_stats, failed)));
        if (!OPENED && opt.subs) {
            stop_subscribers();
            return 1;
        }
    }
    if (opt.interval_us)
        run_paced(OPENED);
    else
        run_max(OPENED);
    return 0;
}
