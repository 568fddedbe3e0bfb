/*
 * wsload_stats.c - the measurements: a latency histogram that workers
 * fill and the parent merges, the server's CPU time from /proc, and the
 * one-line key=value summary.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsload.h"

/* The latency histogram of struct result (wsload.h). */

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

void result_add_latency(struct result *r, uint64_t ns)
{
    r->hist[hist_index(ns)]++;
    if (ns > r->max_ns)
        r->max_ns = ns;
}

void result_merge(struct result *into, const struct result *from)
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
    into->pings += from->pings;
    into->cycles += from->cycles;
    into->closed_1001 += from->closed_1001;
    into->closed_1012 += from->closed_1012;
    into->closed_other += from->closed_other;
    into->closed_eof += from->closed_eof;
    into->back += from->back;
    into->attempts_failed += from->attempts_failed;
    into->refused += from->refused;
    if (from->first_close_ns &&
        (!into->first_close_ns || from->first_close_ns < into->first_close_ns))
        into->first_close_ns = from->first_close_ns;
    if (from->last_back_ns > into->last_back_ns)
        into->last_back_ns = from->last_back_ns;
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
double sample_server_cpu(void)
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

static void print_latencies(const struct result *r)
{
    printf(" p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
           result_percentile_us(r, 0.50), result_percentile_us(r, 0.99),
           result_percentile_us(r, 0.999), (double)r->max_ns / 1e3);
}

/* --cycle and --raw-get: operations per second, their time, server CPU */
static void print_cycle_summary(const struct result *r, double cpu_s)
{
    printf("mode=cycle proto=%s conns=%ld procs=%d secs=%.2f cycles=%" PRIu64
           " cycles_per_s=%.1f opened=%" PRIu64 " failed=%" PRIu64,
           opt.get_path[0] ? "get" : "ws", opt.conns, opt.procs, opt.duration,
           r->cycles, (double)r->cycles / opt.duration, r->opened, r->failed);
    print_latencies(r);
    printf(" errors=%" PRIu64, r->errors);
    if (opt.n_cpu_pids)
        printf(" server_cpu_s=%.2f server_us_per_cycle=%.2f", cpu_s,
               r->cycles ? cpu_s * 1e6 / (double)r->cycles : 0.0);
    putchar('\n');
}

/* --reconnect: how the connections were closed and came back; the times
 * are CLOCK_MONOTONIC seconds, for a driver that noted when it restarted
 * the server; the latencies are each connection's time away. */
static void print_reconnect_summary(const struct result *r, double connect_s, double cpu_s)
{
    printf("mode=reconnect conns=%ld procs=%d opened=%" PRIu64 " failed=%" PRIu64
           " connect_s=%.2f closed_1001=%" PRIu64 " closed_1012=%" PRIu64
           " closed_other=%" PRIu64 " closed_eof=%" PRIu64 " back=%" PRIu64
           " attempts_failed=%" PRIu64 " refused=%" PRIu64
           " first_close=%.6f last_back=%.6f",
           opt.conns, opt.procs, r->opened, r->failed, connect_s, r->closed_1001,
           r->closed_1012, r->closed_other, r->closed_eof, r->back, r->attempts_failed,
           r->refused, (double)r->first_close_ns / 1e9, (double)r->last_back_ns / 1e9);
    print_latencies(r);
    printf(" pings=%" PRIu64 " errors=%" PRIu64, r->pings, r->errors);
    if (opt.n_cpu_pids)
        printf(" server_cpu_s=%.2f", cpu_s);
    putchar('\n');
}

void print_summary(const struct result *r, double connect_s, double cpu_s)
{
    const char *proto = opt.raw ? "raw" : "ws";
    if (opt.cycle) {
        print_cycle_summary(r, cpu_s);
        return;
    }
    if (opt.reconnect) {
        print_reconnect_summary(r, connect_s, cpu_s);
        return;
    }
    if (opt.idle) {
        printf("mode=idle proto=%s conns=%ld procs=%d hold_s=%.2f opened=%" PRIu64
               " failed=%" PRIu64 " echoed=%" PRIu64 " connect_s=%.2f pings=%" PRIu64
               " errors=%" PRIu64,
               proto, opt.conns, opt.procs, opt.hold, r->opened, r->failed, r->echoed,
               connect_s, r->pings, r->errors);
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
