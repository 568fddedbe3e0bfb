/*
 * wsload_run.c - the parent process: forks the workers, waits until every
 * connection is open or failed, starts them all at one instant, samples
 * the server's CPU time over the measured interval, adds up the results.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wsload.h"

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

/* Workers report after their run (the hold, or the warmup and duration),
 * then an echo's or a close's time at most. */
static void collect_results(struct child *kids, struct result *total, uint64_t run_end)
{
    uint64_t now = now_ns();
    uint64_t deadline = (run_end > now ? run_end : now) + 2 * secs_to_ns(opt.timeout) +
                        CLOSE_DRAIN_NS + 10 * NS_PER_S;
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


int run(void)
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

    bool held = opt.idle || opt.reconnect;
    uint64_t from = held ? t0 : t0 + secs_to_ns(opt.warmup);
    uint64_t to = from + secs_to_ns(held ? opt.hold : opt.duration);
    double cpu_s = 0;
    if (opt.n_cpu_pids) {
        sleep_until(from);
        cpu_s = -sample_server_cpu();
        if (!opt.reconnect) {         /* that one ends when everyone is back */
            sleep_until(to);
            cpu_s += sample_server_cpu();
        }
    }
    collect_results(kids, &total, to);
    if (opt.n_cpu_pids && opt.reconnect)
        cpu_s += sample_server_cpu();
    print_summary(&total, connect_s, cpu_s);
    fflush(stdout);
    return total.errors ? 1 : 0;
}
