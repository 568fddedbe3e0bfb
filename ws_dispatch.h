/*
 * ws_dispatch.h - threads that run a connection's plugin calls off its
 * event loop, for plugins that block (WebSocketSlowPlugin).
 *
 * A connection hands over one message at a time in wire order; the
 * messages of one connection run one after the other on whichever thread
 * takes the connection, messages of different connections in parallel on
 * up to WebSocketDispatchThreads threads per child.  The loop does not
 * parse that connection's input further, and never ends it, while
 * ws_dispatch_busy() says a thread has work of it.
 *
 * No Apache headers: plain pthreads, so that the pool's accounting can be
 * tested alone (t/test_dispatch.c).
 */
#ifndef WS_DISPATCH_H
#define WS_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_dispatch_job ws_dispatch_job;
typedef struct ws_dispatch_conn ws_dispatch_conn;

/* Runs one message on a dispatch thread: data[len] is writable (NUL). */
typedef void (*ws_dispatch_run_fn)(ws_dispatch_conn *dc, int type,
                                   uint8_t *data, size_t len);
/* The last queued message of the connection is done: hand it back to its
 * loop.  Runs on the dispatch thread, with the pool's lock held, so that
 * the loop cannot see the connection idle before it is told. */
typedef void (*ws_dispatch_done_fn)(ws_dispatch_conn *dc);

/* Embedded in the engine's connection; zero it, then set run and done. */
struct ws_dispatch_conn {
    ws_dispatch_run_fn run;
    ws_dispatch_done_fn done;
    /* Under the pool's lock from here on. */
    ws_dispatch_job *jobs, *jobs_tail;
    ws_dispatch_conn *next_run;      /* the run queue */
    int running;                     /* queued for, or owned by, a thread */
    /* Loop thread only: jobs were ever given (busy checks skip the lock
     * for connections that never had one). */
    int ever;
};

/* child_init: at most max_threads threads, started on demand. */
void ws_dispatch_init(int max_threads);

/* Queues a copy of the message.  1: a thread will run it; 0: no thread
 * can be had (or the pool is stopping): run it yourself. */
int ws_dispatch_push(ws_dispatch_conn *dc, int type, const uint8_t *data,
                     size_t len);

/* Whether a thread has (or will have) work of this connection. */
int ws_dispatch_busy(ws_dispatch_conn *dc);

/* Drops the messages of the connection that no thread has started (a
 * hard stop); the one running, if any, runs to its end.  Returns how
 * many were dropped. */
size_t ws_dispatch_cancel(ws_dispatch_conn *dc);

/* Child exit, after the loops stopped (nothing is queued any more):
 * every thread finishes its call and is joined. */
void ws_dispatch_shutdown(void);

/* For tests and mod_status: threads started, and of them waiting. */
void ws_dispatch_counts(int *threads, int *idle);

#endif /* WS_DISPATCH_H */
