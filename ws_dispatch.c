/*
 * ws_dispatch.c - the dispatch threads (see ws_dispatch.h).
 *
 * Accounting, which is what makes a second slow message never wait behind
 * a first: 'idle' counts the threads that sit in pthread_cond_wait, and
 * 'claimed' the wake-ups handed out but not yet taken.  A pusher that
 * finds idle > claimed claims one and signals; otherwise it starts a
 * thread, or leaves the connection to a busy thread, which looks at the
 * run queue before it waits again.  A woken thread takes a claim if there
 * is one and waits again if not (a spurious wake-up), so whichever thread
 * wakes consumes the claim and no thread is ever counted idle while it
 * runs a plugin.  Threads do not time out: at most max_threads of them
 * idle per child, and all are joined at child exit.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ws_dispatch.h"
#include "ws_thread.h"

struct ws_dispatch_job {
    ws_dispatch_job *next;
    int type;
    size_t len;
    uint8_t data[1];                 /* len bytes and a NUL */
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static ws_dispatch_conn *run_head, *run_tail;
static pthread_t *threads;
static int max_threads, started, idle, claimed, stopping;

void ws_dispatch_init(int max)
{
    pthread_mutex_lock(&pool_lock);
    free(threads);
    threads = calloc((size_t)(max > 0 ? max : 1), sizeof(*threads));
    max_threads = threads ? max : 0;
    started = idle = claimed = stopping = 0;
    run_head = run_tail = NULL;
    pthread_mutex_unlock(&pool_lock);
}

/* With pool_lock held. */
static void run_queue_push(ws_dispatch_conn *dc)
{
    dc->next_run = NULL;
    if (run_tail) {
        run_tail->next_run = dc;
    }
    else {
        run_head = dc;
    }
    run_tail = dc;
}

static ws_dispatch_conn *run_queue_pop(void)
{
    ws_dispatch_conn *dc = run_head;

    if (dc) {
        run_head = dc->next_run;
        if (!run_head) {
            run_tail = NULL;
        }
        dc->next_run = NULL;
    }
    return dc;
}

/* On a dispatch thread: the connection's messages, in order, until none
 * is left; then it goes back to its loop. */
static void run_connection(ws_dispatch_conn *dc)
{
    for (;;) {
        ws_dispatch_job *job;

        pthread_mutex_lock(&pool_lock);
        job = dc->jobs;
        if (!job) {
            dc->running = 0;
            dc->done(dc);
            pthread_mutex_unlock(&pool_lock);
            return;
        }
        dc->jobs = job->next;
        if (!dc->jobs) {
            dc->jobs_tail = NULL;
        }
        pthread_mutex_unlock(&pool_lock);

        dc->run(dc, job->type, job->data, job->len);
        free(job);
    }
}

static void *dispatch_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&pool_lock);
    for (;;) {
        ws_dispatch_conn *dc = run_queue_pop();

        if (dc) {
            pthread_mutex_unlock(&pool_lock);
            run_connection(dc);
            pthread_mutex_lock(&pool_lock);
            continue;
        }
        if (stopping) {
            break;
        }
        idle++;
        do {
            pthread_cond_wait(&pool_cond, &pool_lock);
        } while (!claimed && !stopping);
        idle--;
        if (claimed) {
            claimed--;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return NULL;
}

/* With pool_lock held: makes sure a thread will look at the run queue.
 * 0 when none exists or can be started. */
static int summon_thread(void)
{
    if (idle > claimed) {
        claimed++;
        pthread_cond_signal(&pool_cond);
        return 1;
    }
    if (started < max_threads
        && ws_thread_create(&threads[started], dispatch_main, NULL) == 0) {
        started++;
        return 1;
    }
    /* Every thread is busy: the first to finish takes the queue. */
    return started > 0;
}

static ws_dispatch_job *make_job(int type, const uint8_t *data, size_t len)
{
    ws_dispatch_job *job;

    if (len > (size_t)-1 - sizeof(*job) || !(job = malloc(sizeof(*job) + len))) {
        return NULL;
    }
    job->next = NULL;
    job->type = type;
    job->len = len;
    if (len) {
        memcpy(job->data, data, len);
    }
    job->data[len] = '\0';
    return job;
}

int ws_dispatch_push(ws_dispatch_conn *dc, int type, const uint8_t *data,
                     size_t len)
{
    ws_dispatch_job *job = make_job(type, data, len);
    int queued = 0;

    if (!job) {
        return 0;
    }
    pthread_mutex_lock(&pool_lock);
    if (dc->running) {
        /* Its thread takes this one after the ones before it. */
        queued = 1;
    }
    else if (!stopping) {
        run_queue_push(dc);
        queued = summon_thread();
        if (queued) {
            dc->running = 1;
        }
        else {
            run_queue_pop();         /* it is the only one: no thread */
        }
    }
    if (queued) {
        if (dc->jobs_tail) {
            dc->jobs_tail->next = job;
        }
        else {
            dc->jobs = job;
        }
        dc->jobs_tail = job;
        dc->ever = 1;
    }
    pthread_mutex_unlock(&pool_lock);
    if (!queued) {
        free(job);
    }
    return queued;
}

int ws_dispatch_busy(ws_dispatch_conn *dc)
{
    int busy;

    if (!dc->ever) {
        return 0;
    }
    pthread_mutex_lock(&pool_lock);
    busy = dc->running;
    pthread_mutex_unlock(&pool_lock);
    return busy;
}

size_t ws_dispatch_cancel(ws_dispatch_conn *dc)
{
    ws_dispatch_job *job;
    size_t dropped = 0;

    if (!dc->ever) {
        return 0;
    }
    pthread_mutex_lock(&pool_lock);
    job = dc->jobs;
    dc->jobs = dc->jobs_tail = NULL;
    pthread_mutex_unlock(&pool_lock);
    while (job) {
        ws_dispatch_job *next = job->next;

        free(job);
        dropped++;
        job = next;
    }
    return dropped;
}

void ws_dispatch_shutdown(void)
{
    int i, n;

    pthread_mutex_lock(&pool_lock);
    stopping = 1;
    pthread_cond_broadcast(&pool_cond);
    n = started;
    pthread_mutex_unlock(&pool_lock);
    for (i = 0; i < n; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_mutex_lock(&pool_lock);
    started = idle = claimed = 0;
    pthread_mutex_unlock(&pool_lock);
}

void ws_dispatch_counts(int *threads_out, int *idle_out)
{
    pthread_mutex_lock(&pool_lock);
    *threads_out = started;
    *idle_out = idle - claimed;
    pthread_mutex_unlock(&pool_lock);
}
