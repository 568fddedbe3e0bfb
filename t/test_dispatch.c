/*
 * test_dispatch.c - the dispatch pool's accounting (ws_dispatch.c), with
 * real threads: a second blocking job never waits behind a first, even
 * after spurious wake-ups of idle threads.
 *
 * The pool's source is included so that the test can make its condition
 * variable wake idle threads for nothing, as the kernel may.
 */
#include <errno.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../ws_dispatch.c"

static int failures, checks;

#define CHECK(cond, ...) do {                                   \
        checks++;                                               \
        if (!(cond)) {                                          \
            failures++;                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);\
            fprintf(stderr, __VA_ARGS__);                       \
            fputc('\n', stderr);                                \
        }                                                       \
    } while (0)

/* A job blocks until its gate opens. */
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open, started, finished;
} gate;

typedef struct test_conn {
    ws_dispatch_conn dc;             /* first */
    gate *gate;
    int done_calls;
} test_conn;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = g->started = g->finished = 0;
}

static void run_job(ws_dispatch_conn *dc, int type, uint8_t *data, size_t len)
{
    test_conn *tc = (test_conn *)dc;
    gate *g = tc->gate;

    (void)type;
    (void)data;
    (void)len;
    pthread_mutex_lock(&g->lock);
    g->started++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    g->finished++;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void job_done(ws_dispatch_conn *dc)
{
    ((test_conn *)dc)->done_calls++;
}

/* Waits up to ms for *counter to reach want; returns whether it did. */
static int wait_count(gate *g, int *counter, int want, long ms)
{
    struct timespec until;
    int ok;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g->lock);
    while (*counter < want) {
        if (pthread_cond_timedwait(&g->cond, &g->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    ok = *counter >= want;
    pthread_mutex_unlock(&g->lock);
    return ok;
}

static void open_gate(gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void conn_init(test_conn *tc, gate *g)
{
    memset(tc, 0, sizeof(*tc));
    tc->dc.run = run_job;
    tc->dc.done = job_done;
    tc->gate = g;
}

/* What the kernel may do to a thread in pthread_cond_wait. */
static void spurious_wakeups(int n)
{
    int i;

    for (i = 0; i < n; i++) {
        pthread_mutex_lock(&pool_lock);
        pthread_cond_broadcast(&pool_cond);
        pthread_mutex_unlock(&pool_lock);
        sched_yield();
    }
}

static void wait_idle(int want)
{
    int threads, idle_now, tries;

    for (tries = 0; tries < 2000; tries++) {
        ws_dispatch_counts(&threads, &idle_now);
        if (idle_now >= want) {
            return;
        }
        sched_yield();
        usleep(1000);
    }
}

/* A blocked A, an idle thread woken for nothing several times, then two
 * more blocking jobs C and D: D must start while A and C still block. */
static void test_spurious_wakeups_never_make_a_job_wait(void)
{
    gate ga, gb, gc, gd;
    test_conn a, b, c, d;

    gate_init(&ga); gate_init(&gb); gate_init(&gc); gate_init(&gd);
    conn_init(&a, &ga); conn_init(&b, &gb); conn_init(&c, &gc);
    conn_init(&d, &gd);
    ws_dispatch_init(8);

    CHECK(ws_dispatch_push(&a.dc, 0, (const uint8_t *)"a", 1), "push A");
    CHECK(wait_count(&ga, &ga.started, 1, 2000), "A started");
    open_gate(&gb);
    CHECK(ws_dispatch_push(&b.dc, 0, (const uint8_t *)"b", 1), "push B");
    CHECK(wait_count(&gb, &gb.finished, 1, 2000), "B ran");
    wait_idle(1);                     /* B's thread waits for work */
    spurious_wakeups(20);

    CHECK(ws_dispatch_push(&c.dc, 0, (const uint8_t *)"c", 1), "push C");
    CHECK(wait_count(&gc, &gc.started, 1, 2000), "C started");
    CHECK(ws_dispatch_push(&d.dc, 0, (const uint8_t *)"d", 1), "push D");
    CHECK(wait_count(&gd, &gd.started, 1, 2000),
          "D waited behind blocked jobs after spurious wake-ups");

    open_gate(&ga); open_gate(&gc); open_gate(&gd);
    CHECK(wait_count(&gd, &gd.finished, 1, 2000), "D finished");
    ws_dispatch_shutdown();
    CHECK(a.done_calls == 1 && b.done_calls == 1 && c.done_calls == 1
          && d.done_calls == 1, "each connection handed back once");
}

/* Jobs of one connection run in order, one at a time, and the
 * connection is busy until the last is done; cancel drops what has not
 * started. */
static int order_seen[16], order_len;

static void run_ordered(ws_dispatch_conn *dc, int type, uint8_t *data,
                        size_t len)
{
    (void)dc;
    (void)data;
    (void)len;
    usleep(2000);
    order_seen[order_len++] = type;
}

static void test_order_busy_and_cancel(void)
{
    test_conn t;
    int i;

    conn_init(&t, NULL);
    t.dc.run = run_ordered;
    ws_dispatch_init(4);
    order_len = 0;
    for (i = 0; i < 8; i++) {
        CHECK(ws_dispatch_push(&t.dc, i, NULL, 0), "push %d", i);
    }
    CHECK(ws_dispatch_busy(&t.dc), "busy while jobs run");
    for (i = 0; i < 2000 && ws_dispatch_busy(&t.dc); i++) {
        usleep(1000);
    }
    CHECK(!ws_dispatch_busy(&t.dc), "idle once done");
    CHECK(order_len == 8, "all ran (%d)", order_len);
    for (i = 0; i < order_len; i++) {
        CHECK(order_seen[i] == i, "job %d ran as %d", i, order_seen[i]);
    }
    CHECK(t.done_calls == 1, "handed back once (%d)", t.done_calls);

    order_len = 0;
    for (i = 0; i < 8; i++) {
        ws_dispatch_push(&t.dc, i, NULL, 0);
    }
    {
        size_t dropped = ws_dispatch_cancel(&t.dc);

        for (i = 0; i < 2000 && ws_dispatch_busy(&t.dc); i++) {
            usleep(1000);
        }
        CHECK(dropped >= 6 && (size_t)order_len + dropped == 8,
              "cancel dropped %zu, ran %d", dropped, order_len);
    }
    ws_dispatch_shutdown();
}

/* With every thread busy and none allowed to start, a push is still
 * accepted: the first thread to finish takes it. */
static void test_busy_pool_queues(void)
{
    gate g;
    test_conn a, b;

    gate_init(&g);
    conn_init(&a, &g);
    conn_init(&b, &g);
    ws_dispatch_init(1);
    CHECK(ws_dispatch_push(&a.dc, 0, NULL, 0), "push A");
    CHECK(wait_count(&g, &g.started, 1, 2000), "A started");
    CHECK(ws_dispatch_push(&b.dc, 0, NULL, 0), "push B queues");
    open_gate(&g);
    CHECK(wait_count(&g, &g.finished, 2, 2000), "B ran after A");
    ws_dispatch_shutdown();
    CHECK(!ws_dispatch_push(&a.dc, 0, NULL, 0), "no push after shutdown");
}

int main(void)
{
    test_spurious_wakeups_never_make_a_job_wait();
    test_order_busy_and_cancel();
    test_busy_pool_queues();
    printf("test_dispatch: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
