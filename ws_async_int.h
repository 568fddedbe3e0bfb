/*
 * ws_async_int.h - what the files of the asynchronous engine share.
 *
 *   ws_async.c         the engine interface, the hand-over from the MPM,
 *                      starting and stopping the loops
 *   ws_async_loop.c    an event loop thread: polling, work lists, timers,
 *                      and the take-over of a loop stuck in a plugin
 *   ws_async_close.c   ending a connection: the plugin, the access log,
 *                      lingering close, and freeing it once the MPM's
 *                      worker is provably done with it
 *   ws_detach.c        an idle connection lets go of Apache's pools
 *   ws_watchdog.c      tells a blocking plugin from a busy machine
 *   ws_dispatch.c      threads for plugins that block
 *   ws_io.c            the connection's non-blocking I/O
 *
 * Ownership: after the hand-over only the loop's thread touches the
 * connection, its pools and its bucket allocator.  Other threads (plugin
 * senders, dispatch threads) touch the ws_conn queue under its lock, then
 * put the connection on the loop's dirty list and wake the loop.
 */
#ifndef WS_ASYNC_INT_H
#define WS_ASYNC_INT_H

#include <pthread.h>
#include <sys/types.h>

#include "httpd.h"
#include "scoreboard.h"
#include "apr_poll.h"
#include "apr_ring.h"
#include "apr_thread_mutex.h"

#include "ws_conn.h"
#include "ws_dispatch.h"
#include "ws_io.h"
#include "ws_timer.h"

/* Large enough that a 64 KB message arrives whole in one read and is
 * unmasked in place instead of being assembled (one buffer per loop). */
#define LOOP_READ_SIZE     (256 * 1024)
/* What one connection may read, or write, in one turn of its loop before
 * the others get theirs. */
#define LOOP_TURN_BUDGET   (256 * 1024)
/* Cached blocks (ws_blocks.h) a new connection gets for its 101 and
 * first reads. */
#define ASYNC_LEND_BLOCKS  3

typedef enum {
    AC_WAITING,      /* handed over, not yet adopted by its loop */
    AC_OPEN,         /* a WebSocket */
    AC_LINGER,       /* closed; reading what the client still sends */
    AC_DEAD          /* waiting for the MPM's worker to be done with it */
} ac_phase;

typedef struct async_conn async_conn;
typedef struct ws_loop ws_loop;

APR_RING_HEAD(ac_list, async_conn);

struct async_conn {
    ws_conn *wc;                     /* NULL once finished */
    conn_rec *c;                     /* NULL once detached (ws_detach.c) */
    int aborted;                     /* detached: c->aborted's stand-in */
    int detach_checks;               /* rechecks while not yet eligible */
    int no_detach;                   /* never: it stays attached */
    ws_loop *loop;
    ac_phase phase;
    ws_io io;
    int fd;                          /* the socket's descriptor */
    apr_int16_t polled;              /* events registered, 0 if none */
    /* Loop thread: loop->conns or loop->graveyard, and loop->ready. */
    APR_RING_ENTRY(async_conn) link;
    APR_RING_ENTRY(async_conn) ready_link;
    int on_ready;
    /* Under loop->lock: loop->inbox, and loop->dirty. */
    APR_RING_ENTRY(async_conn) inbox_link;
    APR_RING_ENTRY(async_conn) dirty_link;
    int on_dirty;
    int handed_back;                 /* under loop->lock: see foreign_call */
    /* Loop thread: a loop thread that was replaced while it was in one of
     * this connection's plugin calls still runs it; like a dispatched
     * message, it keeps the connection busy until handed back. */
    int foreign_call;
    int fresh;                       /* loop thread: adopted, not yet served */
    int read_due;                    /* loop thread: on the ready list to
                                        read (input the filters hold), not
                                        only to write what was queued */
    int unread_waits;                /* loop thread: the peer sent data while
                                        nothing was read: stop watching for
                                        its departure until reading resumes */
    int disconnect_dispatched;       /* loop thread: on_disconnect is queued
                                        for a dispatch thread */
    ws_timer timer;                  /* loop thread: next deadline */
    int timer_unset;                 /* loop thread: the heap had no room */
    apr_time_t linger_until;
    /* The MPM's worker that handed the connection over, and its status in
     * the scoreboard then; the connection's pool is freed only once that
     * status has changed (ws_async_close.c). */
    worker_score *worker;
    int worker_status;
    apr_time_t handed_over;
    ws_dispatch_conn dispatch;
};

/* The plugin call a loop thread is in, for the watchdog.  'started' is
 * the word both sides decide on: the loop thread swaps it back to 0 when
 * the call returns, the watchdog swaps it to CALL_TAKEN_OVER when it
 * gives the loop to a new thread; whoever swaps first wins. */
#define CALL_TAKEN_OVER  ((apr_time_t)-1)

typedef struct loop_call {
    apr_time_t started;              /* 0 when no call runs */
    ws_plugin_ref *ref;
    apr_interval_time_t limit;       /* WebSocketSlowPlugin, 0 = Off */
    server_rec *s;
    async_conn *conn;
    const char *what;                /* "on_message", "on_disconnect" */
    /* The watchdog's own. */
    apr_time_t seen_call;
    unsigned long seen_cpu;
} loop_call;

struct ws_loop {
    int index;
    pid_t tid;                       /* the loop thread's, for /proc */
    loop_call call;
    int epfd;                        /* epoll: the sockets and wake_fd */
    int wake_fd;                     /* eventfd other threads write */
    volatile apr_uint32_t wake_pending;  /* a wake-up is on its way */
    apr_thread_mutex_t *lock;
    struct ac_list inbox;            /* under lock */
    struct ac_list dirty;            /* under lock */
    struct ac_list conns;            /* loop thread: open and lingering */
    struct ac_list ready;            /* loop thread: work left from a turn */
    struct ac_list graveyard;        /* loop thread: waiting to be freed */
    ws_timer_heap timers;            /* loop thread */
    volatile apr_uint32_t stop;      /* 0, STOP_GRACEFUL, STOP_NOW */
    int stop_announced;
    apr_time_t hard_stop_at;
    async_conn *servicing;           /* progress() follows for this one */
    uint8_t *scratch;                /* the loop thread's read buffer */
    async_conn *stuck;               /* for the thread that takes over */
    apr_uint32_t takeovers;
};

/* The dispatch job that runs on_disconnect (ws_conn.h has the others). */
#define WS_DISPATCH_DISCONNECT  (-1)

#define STOP_GRACEFUL 1
#define STOP_NOW      2

extern ws_loop *ws_loops;
extern pthread_t *ws_loop_threads;   /* the thread running each loop now */
extern int ws_loop_count;

/* ws_async_loop.c */
apr_status_t ws_loop_init(ws_loop *loop, int index, apr_pool_t *pchild);
apr_status_t ws_loop_start(ws_loop *loop, pthread_t *thread);
/* From any thread: the loop looks at its lists and flags soon. */
void ws_loop_wakeup(ws_loop *loop);
int ws_loop_is_mine(const ws_loop *loop);
void ws_loop_push_dirty_locked(ws_loop *loop, async_conn *ac);
void ws_loop_take_off_dirty(async_conn *ac);
/* Takes the connection off the loop's ready list and timers. */
void ws_loop_forget(async_conn *ac);
void ws_loop_schedule(async_conn *ac, apr_time_t at);
apr_status_t ws_loop_poll_events(async_conn *ac, apr_int16_t want);
void ws_loop_call_begin(ws_loop *loop, async_conn *ac, const char *what);
int ws_loop_call_end(ws_loop *loop);
/* The watchdog's verdict: the loop's thread is stuck in a plugin call
 * that began at 'started'; another thread takes the loop over. */
void ws_loop_take_over(ws_loop *loop, apr_time_t started);
/* Child exit: join threads that were replaced. */
void ws_loop_join_replaced(void);

/* ws_async_close.c */
int ws_async_conn_busy(async_conn *ac);
void ws_async_finish(async_conn *ac, apr_time_t now);
void ws_async_mark_aborted(async_conn *ac);
void ws_async_linger(async_conn *ac, apr_time_t now);
void ws_async_destroy_dead(ws_loop *loop);
void ws_async_note_handover(async_conn *ac);

int ws_async_worker_has_left(async_conn *ac, apr_time_t now);
/* ws_async.c: the cleanup that frees an async_conn with c->pool. */
apr_status_t ws_async_free_conn(void *ac);

/* ws_detach.c */
/* After progress(), on an open connection: detaches it when it is idle
 * and eligible; answers when to look at it next (deadline, or sooner to
 * check again). */
apr_time_t ws_detach_try(async_conn *ac, apr_time_t now, apr_time_t deadline);
/* The end of a detached connection: writes its access log line; 1 when
 * it is to be closed at once, 0 when its lingering close has begun. */
int ws_detach_close(async_conn *ac, ws_conn *wc);
/* An event loop thread's end: frees the pool its log lines were built in. */
void ws_detach_thread_exit(void);

/* ws_watchdog.c */
apr_status_t ws_watchdog_start(void);
void ws_watchdog_stop(void);
/* A loop began a plugin call (published in call->started). */
void ws_watchdog_call_begun(const loop_call *call);

#endif /* WS_ASYNC_INT_H */
