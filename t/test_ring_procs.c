/*
 * t/test_ring_procs.c - the ring tests that need several processes: forked
 * writers and readers sharing one ring, writers killed while they hold
 * the lock, futex wake-ups across processes, and randomized stress.
 * Built into t/test_ring (see t/test_ring.c); every child reports through
 * shared memory and its exit status, and has a deadline of its own.
 */
#include "test_ring.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    memset(p, 0, n);
    return p;
}

/* Exit status, or 128 + signal. */
static int reap(pid_t pid)
{
    int status;

    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Polls cond until it holds or ms pass; 1 if it held. */
static int wait_until(int (*cond)(void *), void *arg, int ms)
{
    uint64_t deadline = now_ns() + (uint64_t)ms * 1000000u;

    while (!cond(arg)) {
        if (now_ns() > deadline)
            return 0;
        usleep(200);
    }
    return 1;
}

static ws_ring_stats stats_of(ws_ring *r)
{
    ws_ring_stats s;

    ws_ring_stats_get(r, &s);
    return s;
}

/* --------------------------------------------------------- dying writers */

static int die_point, die_by_kill, die_pipe[2];

static void die_hook(enum ws_ring_hook_point where)
{
    char c = 'k';

    if ((int)where != die_point)
        return;
    if (!die_by_kill)
        _exit(7);
    if (write(die_pipe[1], &c, 1) != 1)
        _exit(3);
    for (;;)
        pause();                /* lock held, record half copied: SIGKILL */
}

/* A child publishes and dies at point, by _exit or by SIGKILL from us. */
static void writer_dies(test_ring *t, enum ws_ring_hook_point point, int by_kill,
                        const char *topic, size_t len)
{
    pid_t pid;
    char c;

    if (pipe(die_pipe))
        exit(2);
    pid = fork();
    if (pid == 0) {
        die_point = (int)point;
        die_by_kill = by_kill;
        ws_ring_test_hook = die_hook;
        pub(t->ring, topic, len, 999, NULL);
        _exit(1);                                   /* the hook never ran */
    }
    if (by_kill) {
        CHECK(read(die_pipe[0], &c, 1) == 1);
        kill(pid, SIGKILL);
    }
    CHECK_INT(reap(pid), by_kill ? 128 + SIGKILL : 7);
    close(die_pipe[0]);
    close(die_pipe[1]);
}

typedef struct seqs_seen {
    uint64_t seq[16];
    size_t n;
} seqs_seen;

static int note_seq(void *baton, const ws_ring_record *rec)
{
    seqs_seen *s = baton;

    if (s->n < 16)
        s->seq[s->n] = rec->seq;
    s->n++;
    return 0;
}

static void test_writer_dies_mid_copy(void)
{
    int by_kill;

    for (by_kill = 0; by_kill <= 1; by_kill++) {
        test_ring t;
        ws_ring *r = ring_new(&t, 8192, 1024, 16);
        ws_ring_reader rd;
        ws_ring_record rec;
        ws_ring_history_result res;
        seqs_seen seen = { { 0 }, 0 };
        uint64_t seq, i;

        ws_ring_reader_init(r, &rd);
        for (i = 1; i <= 3; i++)
            pub(r, "x", 100, i, NULL);
        writer_dies(&t, WS_RING_HOOK_WRITER_MID_COPY, by_kill, "x", 800);
        for (i = 1; i <= 3; i++)
            CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(ws_ring_peek(r, &rd, &rec), WS_RING_NONE);   /* nothing of it */
        CHECK_INT(stats_of(r).publishes, 3);
        CHECK_INT(pub(r, "x", 100, 4, &seq), WS_RING_OK);        /* lock recovered */
        CHECK_INT(seq, 4);
        CHECK_INT(stats_of(r).recoveries, 1);
        CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(rec.seq, 4);
        CHECK_INT(rec.origin, 4);
        CHECK_INT(ws_ring_history(r, "x", 1, 0, 10, note_seq, &seen, &res), WS_RING_OK);
        CHECK(res.complete && seen.n == 4 && seen.seq[3] == 4);
        ring_free(&t);
    }
}

/* Dead after moving the head: the record is whole and visible, and the
 * next lock holder finishes the commit (next seq, index), so the seq is
 * not given twice and the history chain has no silent hole. */
static void test_writer_dies_after_commit(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 1024, 16);
    ws_ring_reader rd;
    ws_ring_record rec;
    ws_ring_history_result res;
    seqs_seen seen = { { 0 }, 0 };
    uint64_t seq;

    ws_ring_reader_init(r, &rd);
    pub(r, "x", 100, 1, NULL);
    writer_dies(&t, WS_RING_HOOK_WRITER_COMMITTED, 0, "x", 200);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.seq, 2);
    CHECK_INT(rec.origin, 999);
    CHECK_INT(pub(r, "x", 100, 3, &seq), WS_RING_OK);
    CHECK_INT(seq, 3);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.seq, 3);
    CHECK_INT(ws_ring_history(r, "x", 1, 0, 10, note_seq, &seen, &res), WS_RING_OK);
    CHECK(res.complete);
    CHECK_INT(seen.n, 3);
    CHECK(seen.seq[0] == 1 && seen.seq[1] == 2 && seen.seq[2] == 3);
    ring_free(&t);
}

/* Dead while overwriting the oldest records: a reader still on them gets
 * an overrun, never the half-overwritten bytes. */
static void test_writer_dies_over_old_records(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    ws_ring_reader rd;
    ws_ring_record rec;
    uint64_t i, small = 160, big = 560, lost, seq;

    ws_ring_reader_init(r, &rd);
    for (i = 1; i <= 25; i++)                      /* 25 x 160 = 4000 bytes */
        pub(r, "old", 101, i, NULL);
    writer_dies(&t, WS_RING_HOOK_WRITER_MID_COPY, 0, "big", 500);
    /* It reserved up to 4000 + 560, so records before 464 are written off. */
    lost = (25 * small + big - 4096 + small - 1) / small;
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OVERRUN);
    CHECK_INT(rec.lost, lost);
    for (i = lost + 1; i <= 25; i++) {
        CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(rec.seq, i);
    }
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_NONE);
    CHECK_INT(pub(r, "new", 300, 26, &seq), WS_RING_OK);
    CHECK_INT(seq, 26);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.seq, 26);
    ring_free(&t);
}

/* A writer publishing big records nonstop, SIGKILLed at random moments:
 * whatever it left, readers see whole records with consecutive seqs (or
 * an exact overrun count) and the next publish gets the next seq. */
static void test_writer_killed_at_random(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 1 << 20, 64 << 10, 64);
    ws_ring_reader rd;
    ws_ring_record rec;
    int round, held = 0;

    ws_ring_reader_init(r, &rd);
    for (round = 0; round < 25; round++) {
        uint64_t before = stats_of(r).recoveries, first = rd.next_seq, seq, got = 0, lost = 0;
        ws_ring_status st;
        pid_t pid = fork();

        if (pid == 0) {
            uint64_t n;

            rng_state ^= (uint64_t)getpid() << 20;
            for (n = 1;; n++)
                pub(r, "k", 8 + rnd() % (64 << 10), ((uint64_t)round << 40) | n, NULL);
        }
        usleep((useconds_t)(rnd() % 3000));
        kill(pid, SIGKILL);
        CHECK_INT(reap(pid), 128 + SIGKILL);
        while ((st = read_one(r, &rd, &rec)) != WS_RING_NONE) {
            CHECK(st == WS_RING_OK || st == WS_RING_OVERRUN);
            if (st == WS_RING_OVERRUN)
                lost += rec.lost;
            else
                got++;
        }
        CHECK_INT(got + lost, rd.next_seq - first);  /* each seq once: read or lost */
        CHECK_INT(pub(r, "k", 64, 1, &seq), WS_RING_OK);
        CHECK_INT(seq, rd.next_seq);
        CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(rec.seq, seq);
        CHECK_INT(stats_of(r).publishes, seq);
        held += stats_of(r).recoveries > before;
    }
    printf("   random kills: 25, of which %d while holding the lock\n", held);
    ring_free(&t);
}

/* -------------------------------------------------------------- wake-ups */

static volatile sig_atomic_t signals_seen;

static void on_usr1(int sig)
{
    (void)sig;
    signals_seen++;
}

/* Nothing published: the wait lasts its timeout, through signals, and
 * sleeps (little CPU) rather than spinning. */
static void test_wait_timeout(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 1024, 16);
    volatile int *stop = shared_alloc(sizeof *stop);
    struct sigaction sa;
    ws_ring_reader rd;
    uint64_t t0, cpu0, elapsed, cpu;
    pid_t parent = getpid(), pid;
    ws_ring_status st;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;            /* no SA_RESTART: futex gets EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    ws_ring_reader_init(r, &rd);
    signals_seen = 0;
    pid = fork();
    if (pid == 0) {
        while (!*stop) {
            kill(parent, SIGUSR1);
            usleep(20000);
        }
        _exit(0);
    }
    t0 = now_ns();
    cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    st = ws_ring_wait(r, &rd, 300);
    elapsed = now_ns() - t0;
    cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    *stop = 1;
    CHECK_INT(reap(pid), 0);
    CHECK_INT(st, WS_RING_TIMEOUT);
    CHECK(elapsed >= 300000000u);
    CHECK(cpu < 30000000u);
    CHECK(signals_seen > 0);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGUSR1, &sa, NULL);

    /* Something already there: no wait at all. */
    pub(r, "x", 8, 1, NULL);
    t0 = now_ns();
    CHECK_INT(ws_ring_wait(r, &rd, 10000), WS_RING_OK);
    CHECK(now_ns() - t0 < 100000000u);
    CHECK_INT(stats_of(r).wakeups, 0);  /* nobody waited: no FUTEX_WAKE */
    munmap((void *)stop, sizeof *stop);
    ring_free(&t);
}

typedef struct wake_report {
    int status, returned;
    uint64_t woke_ns, seq, cpu_ns;
} wake_report;

static int one_waiter(void *arg)
{
    return stats_of(arg).waiters == 1;
}

/* A reader in another process sleeps in ws_ring_wait; it stays asleep
 * while nothing is published, and wakes soon after a publish (or after
 * ws_ring_wake_all, with nothing to read). */
static void wait_in_other_process(int by_wake_all)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 1024, 16);
    wake_report *rep = shared_alloc(sizeof *rep);
    ws_ring_record rec;
    uint64_t published_ns;
    pid_t pid = fork();

    if (pid == 0) {
        ws_ring *mine = ws_ring_attach(t.mem, t.size);
        ws_ring_reader rd;
        uint64_t cpu0;

        ws_ring_reader_init(mine, &rd);
        cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
        rep->status = ws_ring_wait(mine, &rd, 10000);
        rep->woke_ns = now_ns();
        rep->cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        rep->returned = 1;
        if (ws_ring_peek(mine, &rd, &rec) == WS_RING_OK)
            rep->seq = rec.seq;
        _exit(0);
    }
    CHECK(wait_until(one_waiter, r, 5000));
    usleep(50000);                       /* a window in which it must not return */
    CHECK_INT(rep->returned, 0);
    published_ns = now_ns();
    if (by_wake_all)
        ws_ring_wake_all(r);
    else
        CHECK_INT(pub(r, "wake", 16, 1, NULL), WS_RING_OK);
    CHECK_INT(reap(pid), 0);
    CHECK_INT(rep->status, by_wake_all ? WS_RING_NONE : WS_RING_OK);
    CHECK_INT(rep->seq, by_wake_all ? 0 : 1);
    CHECK(rep->woke_ns - published_ns < 500000000u);
    CHECK(rep->cpu_ns < 30000000u);      /* it slept through the window */
    CHECK_INT(stats_of(r).wakeups, 1);
    CHECK_INT(stats_of(r).waiters, 0);
    munmap(rep, sizeof *rep);
    ring_free(&t);
}

/* ---------------------------------------------------------------- stress */

#define MAX_IDS 8

typedef struct stress_cfg {
    size_t cap, max_msg;
    int readers, writer_procs, ids;   /* ids: writer threads, 1 or 2 per process */
    uint64_t per_id;
    int slow_readers;                 /* readers pause now and then: overruns */
} stress_cfg;

typedef struct reader_report {
    uint64_t got, lost, errors, overruns;
    char first_error[96];
} reader_report;

typedef struct stress_shared {
    int readers_ready;
    reader_report rep[MAX_IDS];
} stress_shared;

static size_t size_for(uint64_t tag, size_t max_msg)
{
    uint64_t h = tag * 0x9E3779B97F4A7C15ull;

    if ((h >> 20) % 997 == 0)
        return max_msg / 2;
    return 8 + (size_t)((h >> 33) % 300);
}

static void topic_for(uint64_t tag, char *buf, size_t n)
{
    snprintf(buf, n, "room-%u", (unsigned)((tag * 7) % 11));
}

typedef struct writer_arg {
    ws_ring *r;
    const stress_cfg *cfg;
    int id;
} writer_arg;

static void *writer_run(void *p)
{
    writer_arg *w = p;
    uint64_t n;
    char topic[32];

    for (n = 1; n <= w->cfg->per_id; n++) {
        uint64_t tag = ((uint64_t)w->id << 32) | n;

        topic_for(tag, topic, sizeof topic);
        if (pub(w->r, topic, size_for(tag, w->cfg->max_msg), tag, NULL) != WS_RING_OK)
            _exit(4);
    }
    return NULL;
}

static int readers_ready(void *p)
{
    const stress_cfg *cfg = ((void **)p)[0];
    stress_shared *sh = ((void **)p)[1];

    return __atomic_load_n(&sh->readers_ready, __ATOMIC_ACQUIRE) == cfg->readers;
}

static void fail(reader_report *rep, const char *what, uint64_t seq)
{
    if (rep->errors++ == 0)
        snprintf(rep->first_error, sizeof rep->first_error, "%s at seq %llu",
                 what, (unsigned long long)seq);
}

/* Checks one record a stress reader got; last[] is per writer id. */
static void stress_check(const stress_cfg *cfg, const ws_ring_record *rec, int copied,
                         uint64_t *last, reader_report *rep)
{
    uint64_t tag = rec->origin, n = tag & 0xffffffffu, id = tag >> 32;
    char topic[32];

    topic_for(tag, topic, sizeof topic);
    if (id >= (uint64_t)cfg->ids || n == 0 || n > cfg->per_id)
        return fail(rep, "unknown origin", rec->seq);
    if (cfg->slow_readers ? n <= last[id] : n != last[id] + 1)
        return fail(rep, "writer order broken", rec->seq);
    last[id] = n;
    if (rec->flags != (uint32_t)tag || rec->payload_len != size_for(tag, cfg->max_msg)
        || rec->topic_hash != ws_ring_topic_hash(topic, strlen(topic)))
        return fail(rep, "header fields", rec->seq);
    if (copied) {
        uint64_t got_tag;

        if (strcmp(rec->topic, topic) != 0)
            return fail(rep, "topic bytes", rec->seq);
        if (!payload_ok(rec->payload, rec->payload_len, &got_tag) || got_tag != tag)
            return fail(rep, "payload", rec->seq);
    }
}

static void stress_reader(test_ring *t, const stress_cfg *cfg, stress_shared *sh, int k)
{
    ws_ring *r = ws_ring_attach(t->mem, t->size);
    uint64_t total = cfg->per_id * (uint64_t)cfg->ids, last[MAX_IDS] = { 0 };
    uint64_t deadline = now_ns() + 20000000000ull;
    unsigned char *buf = malloc(cfg->max_msg);
    reader_report *rep = &sh->rep[k];
    ws_ring_record rec;
    ws_ring_reader rd;

    rng_state += (uint64_t)k * 0x1234567ull;
    ws_ring_reader_init(r, &rd);
    __atomic_add_fetch(&sh->readers_ready, 1, __ATOMIC_RELEASE);
    while (rd.next_seq <= total && now_ns() < deadline) {
        ws_ring_status st;
        int copied = rnd() % 8 != 0;

        if (cfg->slow_readers && rnd() % 512 == 0)
            usleep((useconds_t)(rnd() % 300));
        st = copied ? ws_ring_next(r, &rd, &rec, buf, cfg->max_msg)
                    : ws_ring_skip(r, &rd, &rec);
        if (st == WS_RING_NONE) {
            ws_ring_wait(r, &rd, 100);
        } else if (st == WS_RING_OK) {
            rep->got++;
            stress_check(cfg, &rec, copied, last, rep);
        } else if (st == WS_RING_OVERRUN && cfg->slow_readers) {
            rep->overruns++;
            rep->lost += rec.lost;
        } else {
            fail(rep, ws_ring_strerror(st), rd.next_seq);
        }
    }
    if (rd.next_seq <= total)
        fail(rep, "deadline passed", rd.next_seq);
    _exit(0);
}

static void stress_writer(test_ring *t, const stress_cfg *cfg, stress_shared *sh, int proc)
{
    void *ready_arg[2] = { (void *)cfg, sh };
    writer_arg w[2];
    pthread_t second;
    int two = cfg->writer_procs + proc < cfg->ids;   /* a second writer thread */

    w[0].r = w[1].r = ws_ring_attach(t->mem, t->size);
    w[0].cfg = w[1].cfg = cfg;
    w[0].id = proc;
    w[1].id = cfg->writer_procs + proc;
    if (!wait_until(readers_ready, ready_arg, 10000))
        _exit(5);
    if (two && pthread_create(&second, NULL, writer_run, &w[1]))
        _exit(6);
    writer_run(&w[0]);
    if (two)
        pthread_join(second, NULL);
    _exit(0);
}

static void run_stress(const char *name, const stress_cfg *cfg)
{
    test_ring t;
    stress_shared *sh = shared_alloc(sizeof *sh);
    pid_t pids[2 * MAX_IDS];
    uint64_t total = cfg->per_id * (uint64_t)cfg->ids, t0 = now_ns();
    int i, n = 0;

    ring_new(&t, cfg->cap, cfg->max_msg, 64);
    for (i = 0; i < cfg->readers; i++)
        if ((pids[n++] = fork()) == 0)
            stress_reader(&t, cfg, sh, i);
    for (i = 0; i < cfg->writer_procs; i++)
        if ((pids[n++] = fork()) == 0)
            stress_writer(&t, cfg, sh, i);
    for (i = 0; i < n; i++)
        CHECK_INT(reap(pids[i]), 0);
    CHECK_INT(stats_of(t.ring).publishes, total);
    for (i = 0; i < cfg->readers; i++) {
        reader_report *rep = &sh->rep[i];

        check_at(rep->errors == 0, __FILE__, __LINE__, "%s reader %d: %llu errors, first: %s",
                 name, i, (unsigned long long)rep->errors, rep->first_error);
        CHECK_INT(rep->got + rep->lost, total);
        if (!cfg->slow_readers)
            CHECK_INT(rep->got, total);
    }
    printf("   %s: %d readers x %llu records from %d writers in %d processes, "
           "%.2f s; overruns %llu, records lost %llu\n", name, cfg->readers,
           (unsigned long long)total, cfg->ids, cfg->writer_procs,
           (double)(now_ns() - t0) / 1e9, (unsigned long long)sh->rep[0].overruns,
           (unsigned long long)sh->rep[0].lost);
    munmap(sh, sizeof *sh);
    ring_free(&t);
}

static void test_stress(void)
{
    /* The volume fits the ring: every reader must see every record. */
    stress_cfg exact = { 8 << 20, 64 << 10, 3, 3, 4, 2500, 0 };
    /* A small ring and readers that dawdle: overruns, exactly counted. */
    stress_cfg overrun = { 16 << 10, 2 << 10, 2, 2, 3, 10000, 1 };

    run_stress("stress, exactly once", &exact);
    run_stress("stress, with overruns", &overrun);
}

void run_process_tests(void)
{
    test_writer_dies_mid_copy();
    test_writer_dies_after_commit();
    test_writer_dies_over_old_records();
    test_writer_killed_at_random();
    test_wait_timeout();
    wait_in_other_process(0);
    wait_in_other_process(1);
    test_stress();
}
