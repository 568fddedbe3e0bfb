/*
 * bench/ring_bench.c - the topics' ring (ws_ring.c) between processes,
 * against a pipe between the same processes, measured in the same run.
 *
 *   make bench/ring_bench
 *   bench/ring_bench [seconds per rate figure, default 1] [latency samples, default 4000]
 *
 * Figures (32-byte payloads, a 16 MiB ring, max message 1 MiB):
 *   rate.alone       publishes/s, one writer process, nobody reading
 *   rate.reader      publishes/s with one reader process copying every
 *                    record (it sleeps in ws_ring_wait when caught up);
 *                    the pipe moves 32-byte messages between the same two
 *                    processes, one write and one read each
 *   latency.N.p50/p99  publish to read, in µs, with N reader processes
 *                    asleep (ws_ring_wait / read) when it is sent: the
 *                    time from just before ws_ring_publish (or the first
 *                    write) to each reader holding the message.  "last"
 *                    is the last of the N readers, per message.  The
 *                    writer waits for every reader's ack, then pauses
 *                    100-300 µs so the readers are asleep again.
 * Rates are the median of 5 runs of a fifth of the time each, ring and
 * pipe alternating; latency samples are taken in alternating batches of
 * 250; so both see the same (shared, noisy) machine.  One line per figure: name, ring value, pipe value, ratio
 * ring/pipe (rates: higher is better; latencies: lower is better).
 */
#include "../ws_ring.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING_CAP     (16u << 20)
#define RING_MAX_MSG (1u << 20)
#define PAYLOAD      32
#define MAX_READERS  4
#define BATCH        250
#define STOP_TAG     UINT64_MAX
#define RATE_RUNS    5

static double seconds = 1.0;
static int samples = 4000;
static void *ring_mem;
static size_t ring_size;

typedef struct shared_ctl {
    volatile int stop;
    uint64_t got, lost;
    uint64_t lat[MAX_READERS][2][20000];    /* [reader][ring, pipe][sample] */
} shared_ctl;

static shared_ctl *ctl;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static ws_ring *attach(void)
{
    ws_ring *r = ws_ring_attach(ring_mem, ring_size);

    if (!r) {
        fprintf(stderr, "ring_bench: attach failed\n");
        exit(1);
    }
    return r;
}

static ws_ring_status publish(ws_ring *r, uint64_t tag, uint64_t sent_ns)
{
    unsigned char payload[PAYLOAD] = { 0 };
    ws_ring_msg m = { "bench", 5, payload, PAYLOAD, 0, tag };

    memcpy(payload, &sent_ns, 8);
    return ws_ring_publish(r, &m, NULL);
}

static void reap_all(pid_t *pids, int n)
{
    int i, status;

    for (i = 0; i < n; i++)
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status)
            || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "ring_bench: a child failed\n");
            exit(1);
        }
}

/* ------------------------------------------------------------------ rates */

/* Publishes for one run's time; returns publishes/s. */
static double publish_for(ws_ring *r)
{
    uint64_t n = 0, start = now_ns(), t;
    uint64_t end = start + (uint64_t)(seconds / RATE_RUNS * 1e9);

    do {
        int i;

        for (i = 0; i < 1024; i++)
            if (publish(r, n + (uint64_t)i, 0) != WS_RING_OK)
                die("publish");
        n += 1024;
        t = now_ns();
    } while (t < end);
    return (double)n * 1e9 / (double)(t - start);
}

static void rate_reader(void)
{
    ws_ring *r = attach();
    unsigned char *buf = malloc(RING_MAX_MSG);
    ws_ring_reader rd;
    ws_ring_record rec;

    ws_ring_reader_init(r, &rd);
    ctl->got = 1;                              /* ready */
    for (;;) {
        ws_ring_status st = ws_ring_next(r, &rd, &rec, buf, RING_MAX_MSG);

        if (st == WS_RING_OK)
            ctl->got++;
        else if (st == WS_RING_OVERRUN)
            ctl->lost += rec.lost;
        else if (ctl->stop)
            break;
        else
            ws_ring_wait(r, &rd, 10);
    }
    _exit(0);
}

static double ring_rate_with_reader(ws_ring *r, double *read_rate, uint64_t *lost)
{
    uint64_t t0;
    double rate;
    pid_t pid;

    ctl->stop = 0;
    ctl->got = ctl->lost = 0;
    if ((pid = fork()) == 0)
        rate_reader();
    while (ctl->got == 0)
        usleep(1000);
    t0 = now_ns();
    rate = publish_for(r);
    ctl->stop = 1;
    reap_all(&pid, 1);
    *read_rate = (double)(ctl->got - 1) * 1e9 / (double)(now_ns() - t0);
    *lost = ctl->lost;
    return rate;
}

static double pipe_rate(void)
{
    unsigned char msg[PAYLOAD] = { 0 };
    uint64_t n = 0, start, end, t;
    int fds[2];
    pid_t pid;

    if (pipe(fds))
        die("pipe");
    if ((pid = fork()) == 0) {
        close(fds[1]);
        while (read(fds[0], msg, sizeof msg) > 0)
            ;
        _exit(0);
    }
    close(fds[0]);
    start = now_ns();
    end = start + (uint64_t)(seconds / RATE_RUNS * 1e9);
    do {
        int i;

        for (i = 0; i < 256; i++)
            if (write(fds[1], msg, sizeof msg) != (ssize_t)sizeof msg)
                die("write");
        n += 256;
        t = now_ns();
    } while (t < end);
    close(fds[1]);
    reap_all(&pid, 1);
    return (double)n * 1e9 / (double)(t - start);
}

/* ---------------------------------------------------------------- latency */

/* A latency reader: takes messages from the ring or its pipe, notes how
 * long each took, acks it.  Stops at STOP_TAG on both. */
static void latency_reader(int k, int in_fd, int ack_fd)
{
    ws_ring *r = attach();
    unsigned char buf[PAYLOAD];
    ws_ring_reader rd;
    ws_ring_record rec;
    int ring_i = 0, pipe_i = 0, ring_done = 0, pipe_done = 0;
    uint64_t sent;
    char ack = 'a';

    ws_ring_reader_init(r, &rd);
    if (write(ack_fd, &ack, 1) != 1)                  /* ready */
        _exit(1);
    while (!ring_done || !pipe_done) {
        if (!ring_done) {
            ws_ring_status st = ws_ring_next(r, &rd, &rec, buf, sizeof buf);

            if (st == WS_RING_NONE) {
                ws_ring_wait(r, &rd, 1000);
                continue;
            }
            if (st != WS_RING_OK)
                _exit(2);
            memcpy(&sent, buf, 8);
            if (rec.origin == STOP_TAG) {
                ring_done = 1;
            } else {
                ctl->lat[k][0][ring_i++] = now_ns() - sent;
                if (write(ack_fd, &ack, 1) != 1)
                    _exit(1);
                if (ring_i % BATCH)
                    continue;
            }
        }
        /* the writer switches to the pipe after each batch */
        while (!pipe_done) {
            if (read(in_fd, buf, sizeof buf) != (ssize_t)sizeof buf)
                _exit(3);
            memcpy(&sent, buf, 8);
            if (sent == 0) {
                pipe_done = 1;
                break;
            }
            ctl->lat[k][1][pipe_i++] = now_ns() - sent;
            if (write(ack_fd, &ack, 1) != 1)
                _exit(1);
            if (pipe_i % BATCH == 0)
                break;
        }
    }
    _exit(0);
}

static void wait_acks(int fd, int n)
{
    char acks[MAX_READERS];

    while (n > 0) {
        ssize_t got = read(fd, acks, (size_t)n);

        if (got <= 0)
            die("ack");
        n -= (int)got;
    }
}

static void pause_between(void)
{
    usleep(100 + (useconds_t)(rand() % 200));
}

static void send_pipes(int *fds, int n, uint64_t sent)
{
    unsigned char msg[PAYLOAD] = { 0 };
    int i;

    memcpy(msg, &sent, 8);
    for (i = 0; i < n; i++)
        if (write(fds[i], msg, sizeof msg) != (ssize_t)sizeof msg)
            die("write");
}

static void measure_latency(ws_ring *r, int readers)
{
    int ins[MAX_READERS], ack[2], i, k;
    pid_t pids[MAX_READERS];

    if (pipe(ack))
        die("pipe");
    for (k = 0; k < readers; k++) {
        int p[2];

        if (pipe(p))
            die("pipe");
        if ((pids[k] = fork()) == 0) {
            close(p[1]);
            latency_reader(k, p[0], ack[1]);
        }
        close(p[0]);
        ins[k] = p[1];
    }
    wait_acks(ack[0], readers);
    for (i = 0; i < samples; i += BATCH) {
        int j;

        for (j = i; j < i + BATCH; j++) {
            pause_between();
            if (publish(r, (uint64_t)j, now_ns()) != WS_RING_OK)
                die("publish");
            wait_acks(ack[0], readers);
        }
        for (j = i; j < i + BATCH; j++) {
            pause_between();
            send_pipes(ins, readers, now_ns());
            wait_acks(ack[0], readers);
        }
    }
    publish(r, STOP_TAG, 1);
    send_pipes(ins, readers, 0);
    reap_all(pids, readers);
    for (k = 0; k < readers; k++)
        close(ins[k]);
    close(ack[0]);
    close(ack[1]);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return (double)v[(int)(p * (n - 1))] / 1000.0;
}

static void report_latency(int readers)
{
    static uint64_t all[2][MAX_READERS * 20000], last[2][20000];
    int kind, k, i, n = 0;

    for (kind = 0; kind < 2; kind++) {
        n = 0;
        for (i = 0; i < samples; i++) {
            last[kind][i] = 0;
            for (k = 0; k < readers; k++) {
                uint64_t v = ctl->lat[k][kind][i];

                all[kind][n++] = v;
                if (v > last[kind][i])
                    last[kind][i] = v;
            }
        }
    }
    for (i = 0; i < 2; i++) {
        double p = i ? 0.99 : 0.50, ring = pct(all[0], n, p), pipe_ = pct(all[1], n, p);

        printf("latency.%d.%s   %8.1f us   pipe %8.1f us   ratio %.2fx\n", readers,
               i ? "p99" : "p50", ring, pipe_, ring / pipe_);
    }
    if (readers > 1)
        for (i = 0; i < 2; i++) {
            double p = i ? 0.99 : 0.50;
            double ring = pct(last[0], samples, p), pipe_ = pct(last[1], samples, p);

            printf("latency.%d.last.%s %6.1f us   pipe %8.1f us   ratio %.2fx\n", readers,
                   i ? "p99" : "p50", ring, pipe_, ring / pipe_);
        }
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    qsort(v, RATE_RUNS, sizeof *v, cmp_double);
    return v[RATE_RUNS / 2];
}

static void measure_rates(ws_ring *r)
{
    double alone[RATE_RUNS], reader[RATE_RUNS], copied[RATE_RUNS], pipes[RATE_RUNS];
    double a, w, c, p;
    uint64_t lost, lost_total = 0;
    int i;

    for (i = 0; i < RATE_RUNS; i++) {
        alone[i] = publish_for(r);
        pipes[i] = pipe_rate();
        reader[i] = ring_rate_with_reader(r, &copied[i], &lost);
        lost_total += lost;
    }
    a = median(alone);
    w = median(reader);
    c = median(copied);
    p = median(pipes);
    printf("rate.alone      %8.2f M/s   pipe %6.2f M/s   ratio %.2fx\n", a / 1e6, p / 1e6, a / p);
    printf("rate.reader     %8.2f M/s   pipe %6.2f M/s   ratio %.2fx   "
           "(reader copied %.2f M/s, lost %llu)\n", w / 1e6, p / 1e6, w / p, c / 1e6,
           (unsigned long long)lost_total);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    ws_ring_stats s;
    ws_ring *r;

    if (argc > 1)
        seconds = atof(argv[1]);
    if (argc > 2)
        samples = atoi(argv[2]);
    if (seconds <= 0 || samples < BATCH || samples > 20000) {
        fprintf(stderr, "usage: ring_bench [seconds > 0] [samples %d..20000]\n", BATCH);
        return 2;
    }
    samples -= samples % BATCH;
    ring_size = ws_ring_size_needed(RING_CAP, 4096);
    ring_mem = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ring_mem == MAP_FAILED || ctl == MAP_FAILED)
        die("mmap");
    if (ws_ring_init(ring_mem, ring_size, RING_CAP, RING_MAX_MSG, 4096) != WS_RING_OK)
        die("ws_ring_init");
    r = attach();
    signal(SIGPIPE, SIG_IGN);

    printf("# ring_bench: %d-byte payloads, 16 MiB ring, rates: median of %d x %.2f s, "
           "%d latency samples\n", PAYLOAD, RATE_RUNS, seconds / RATE_RUNS, samples);
    measure_rates(r);
    measure_latency(r, 1);
    report_latency(1);
    measure_latency(r, 4);
    report_latency(4);
    ws_ring_stats_get(r, &s);
    printf("# ring stats: publishes %llu, wake-ups %llu, overwritten %llu\n",
           (unsigned long long)s.publishes, (unsigned long long)s.wakeups,
           (unsigned long long)s.overwritten);
    return 0;
}
