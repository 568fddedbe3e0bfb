/*
 * ws_async_loop.c - an event loop thread of the asynchronous engine.
 *
 * One turn: poll the sockets; serve the connections that are ready;
 * adopt connections the MPM handed over; serve the connections other
 * threads made dirty (queued output, a dispatched message done) and those
 * with work left from the last turn; run the timers that are due; free
 * the connections the MPM is done with.  Reads and writes of one
 * connection are limited per turn (LOOP_TURN_BUDGET), so that a client
 * streaming large messages cannot hold the thread against the others.
 *
 * Take-over: a plugin that blocks in a call on the loop thread would hold
 * every connection of the loop until it returns.  When the watchdog sees
 * that (ws_watchdog.c), a new thread takes the loop over; the old one,
 * whenever its call returns, touches nothing of the loop any more: it
 * hands the connection back (as a dispatch thread would) and ends.  Every
 * function here that can reach a plugin call checks ws_loop_is_mine()
 * after it, before touching the loop again.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "util_filter.h"

#include "ws_async_int.h"
#include "ws_async.h"
#include "ws_blocks.h"
#include "ws_thread.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* On a hard stop, how long the 1001 Close may take to go out. */
#define HARD_STOP_GRACE    apr_time_from_sec(1)
/* On a graceful one, how long the closing handshakes may take once the
 * child exits (the MPM does not wait for detached connections: the
 * child's exit does, up to this): WebSocketCloseTimeout's default and a
 * lingering close. */
#define GRACEFUL_STOP_GRACE  apr_time_from_sec(7)
/* The longest a loop sleeps: stops are signalled by a wake-up, this only
 * bounds the damage of a lost one. */
#define LOOP_MAX_SLEEP     apr_time_from_sec(1)
/* How often connections waiting for the MPM's worker are looked at. */
#define GRAVEYARD_RECHECK  apr_time_from_msec(10)
/* Events one epoll_wait returns at most. */
#define LOOP_MAX_EVENTS    512

/* The loop this thread runs, and whether another thread took it over.
 * Initial-exec: read several times per message, and the default model of
 * a loaded module calls __tls_get_addr for each read; these 32 bytes come
 * from the static TLS space glibc keeps for modules loaded later. */
#define LOOP_TLS __thread __attribute__((tls_model("initial-exec")))
static LOOP_TLS ws_loop *my_loop;
static LOOP_TLS int my_loop_replaced;
static LOOP_TLS async_conn *my_call_conn;
static LOOP_TLS apr_time_t my_call_started;

/* Threads that were replaced, joined at child exit. */
static pthread_mutex_t replaced_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t *replaced;
static size_t replaced_count, replaced_cap;

int ws_loop_is_mine(const ws_loop *loop)
{
    return my_loop == loop && !my_loop_replaced;
}

/* ---- lists ---- */

static void make_ready(ws_loop *loop, async_conn *ac)
{
    if (!ac->on_ready) {
        ac->on_ready = 1;
        APR_RING_INSERT_TAIL(&loop->ready, ac, async_conn, ready_link);
    }
}

static void take_off_ready(ws_loop *loop, async_conn *ac)
{
    (void)loop;
    if (ac->on_ready) {
        ac->on_ready = 0;
        APR_RING_REMOVE(ac, ready_link);
    }
}

void ws_loop_forget(async_conn *ac)
{
    take_off_ready(ac->loop, ac);
    ws_timer_cancel(&ac->loop->timers, &ac->timer);
}

void ws_loop_push_dirty_locked(ws_loop *loop, async_conn *ac)
{
    if (!ac->on_dirty) {
        ac->on_dirty = 1;
        APR_RING_INSERT_TAIL(&loop->dirty, ac, async_conn, dirty_link);
    }
}

void ws_loop_take_off_dirty(async_conn *ac)
{
    ws_loop *loop = ac->loop;

    apr_thread_mutex_lock(loop->lock);
    if (ac->on_dirty) {
        ac->on_dirty = 0;
        APR_RING_REMOVE(ac, dirty_link);
    }
    apr_thread_mutex_unlock(loop->lock);
}

void ws_loop_schedule(async_conn *ac, apr_time_t at)
{
    if (!at) {
        ws_timer_cancel(&ac->loop->timers, &ac->timer);
    }
    else if (at != ac->timer.at || !ac->timer.index) {
        /* Out of memory only delays this connection's timers to the next
         * time it is served (in full: timer_unchanged). */
        ac->timer_unset = ws_timer_set(&ac->loop->timers, &ac->timer, at) != 0;
        return;
    }
    ac->timer_unset = 0;
}

static uint32_t epoll_events_of(apr_int16_t want)
{
    return ((want & APR_POLLIN) ? EPOLLIN : 0)
           | ((want & APR_POLLOUT) ? EPOLLOUT : 0);
}

/* One epoll_ctl per change of what the connection waits for (epoll is
 * level triggered here, as the MPM's own pollset). */
apr_status_t ws_loop_poll_events(async_conn *ac, apr_int16_t want)
{
    struct epoll_event ev;
    int op;

    if (want == ac->polled) {
        return APR_SUCCESS;
    }
    op = !want ? EPOLL_CTL_DEL : ac->polled ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    ev.events = epoll_events_of(want);
    ev.data.ptr = ac;
    if (epoll_ctl(ac->loop->epfd, op, ac->fd, &ev) != 0) {
        apr_status_t rv = APR_FROM_OS_ERROR(errno);

        if (op == EPOLL_CTL_DEL) {
            ac->polled = 0;       /* gone with its descriptor anyway */
        }
        return op == EPOLL_CTL_DEL ? APR_SUCCESS : rv;
    }
    ac->polled = want;
    return APR_SUCCESS;
}

/* ---- waking the loop ---- */

/* One write per sleep at most, whoever wakes: the flag says a wake-up is
 * already on its way. */
void ws_loop_wakeup(ws_loop *loop)
{
    uint64_t one = 1;

    if (!__atomic_exchange_n(&loop->wake_pending, 1, __ATOMIC_ACQ_REL)) {
        if (write(loop->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
            __atomic_store_n(&loop->wake_pending, 0, __ATOMIC_RELEASE);
        }
    }
}

/* Clears the flag before draining the counter: a wake-up that comes after
 * the drain writes again, one before it is seen by the lists' check that
 * follows every poll. */
static void drain_wakeups(ws_loop *loop)
{
    uint64_t count;

    __atomic_store_n(&loop->wake_pending, 0, __ATOMIC_RELEASE);
    if (read(loop->wake_fd, &count, sizeof(count)) < 0) {
        /* EAGAIN: someone else's wake-up was already drained. */
    }
}

static apr_status_t close_fd(void *data)
{
    close((int)(intptr_t)data);
    return APR_SUCCESS;
}

apr_status_t ws_loop_init(ws_loop *loop, int index, apr_pool_t *pchild)
{
    struct epoll_event ev;
    apr_status_t rv;

    loop->index = index;
    APR_RING_INIT(&loop->inbox, async_conn, inbox_link);
    APR_RING_INIT(&loop->dirty, async_conn, dirty_link);
    APR_RING_INIT(&loop->conns, async_conn, link);
    APR_RING_INIT(&loop->ready, async_conn, ready_link);
    APR_RING_INIT(&loop->graveyard, async_conn, link);
    rv = apr_thread_mutex_create(&loop->lock, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    apr_pool_cleanup_register(pchild, (void *)(intptr_t)loop->epfd, close_fd,
                              apr_pool_cleanup_null);
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->wake_fd < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    apr_pool_cleanup_register(pchild, (void *)(intptr_t)loop->wake_fd,
                              close_fd, apr_pool_cleanup_null);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;                /* NULL: the wake-up */
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_fd, &ev) != 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    return APR_SUCCESS;
}

/* ---- plugin calls on the loop thread ---- */

void ws_loop_call_begin(ws_loop *loop, async_conn *ac, const char *what)
{
    loop_call *call = &loop->call;

    call->ref = ac->wc->conf->handler;
    call->limit = ws_conf_slow_plugin(ac->wc->conf);
    call->s = ac->wc->s;
    call->conn = ac;
    call->what = what;
    my_call_conn = ac;
    /* Coarse (ws_conn.h): the watchdog allows for its lag.  Sequentially
     * consistent, against the watchdog's nap. */
    my_call_started = ws_coarse_now();
    __atomic_store_n(&call->started, my_call_started, __ATOMIC_SEQ_CST);
    ws_watchdog_call_begun(call);
}

/* 1 when the call returned on a thread that still runs the loop. */
int ws_loop_call_end(ws_loop *loop)
{
    /* Only the value this thread wrote: a thread that took the loop over
     * may have written its own since (its calls begin later, so the
     * values differ). */
    apr_time_t started = my_call_started;

    if (__atomic_compare_exchange_n(&loop->call.started, &started, 0, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        return 1;
    }
    my_loop_replaced = 1;
    return 0;
}

/* ---- serving a connection ---- */

static int conn_is_busy(async_conn *ac)
{
    return ac->foreign_call || ws_dispatch_busy(&ac->dispatch);
}

int ws_async_conn_busy(async_conn *ac)
{
    return conn_is_busy(ac);
}

static void read_in(async_conn *ac, int *more)
{
    ws_loop *loop = ac->loop;

    ac->unread_waits = 0;
    apr_status_t rv = ws_io_read(&ac->io, loop->scratch, LOOP_READ_SIZE,
                                 LOOP_TURN_BUDGET, more);

    if (rv != APR_SUCCESS) {
        ws_conn_abort(ac->wc, rv, rv == APR_EOF ? "peer closed the TCP "
                      "connection" : "read failed");
    }
}

/* Input that waited while a message was with a plugin elsewhere: parse
 * it, then read on. */
static void resume_input(async_conn *ac, int *more)
{
    ws_conn *wc = ac->wc;
    apr_status_t rv = ws_conn_resume(wc, ac->loop->scratch, LOOP_READ_SIZE);

    if (rv != APR_SUCCESS) {
        ws_conn_abort(wc, rv, "out of memory");
    }
    else if (!wc->paused && !wc->unparsed && ws_loop_is_mine(ac->loop)) {
        read_in(ac, more);
    }
}

/* While nothing is read from a connection, its socket is still watched
 * (direct mode), so that a client that leaves is noticed: a plugin that
 * paused its input forever (the exec plugin waiting for its program)
 * would otherwise keep it, and what it holds, until a timeout. */
static int departure_watched(async_conn *ac)
{
    return ac->io.direct && !ac->unread_waits && !ac->wc->peer_closed;
}

static void watch_departure(async_conn *ac)
{
    if (!departure_watched(ac)) {
        return;
    }
    switch (ws_io_peek_peer(&ac->io)) {
    case WS_IO_PEER_GONE:
        ws_conn_abort(ac->wc, APR_EOF, "peer closed the TCP connection while "
                      "its input was paused");
        break;
    case WS_IO_PEER_DATA_WAITS:
        ac->unread_waits = 1;         /* read when the pause ends */
        break;
    default:
        break;
    }
}

/* Why a connection is served: its socket is readable (or input waits
 * in the filters), or its timer fired (its deadlines are set again);
 * neither: output was queued for it, or its socket became writable. */
#define SERVE_READ   1
#define SERVE_TIMER  2

/* Whether a service leaves the connection's timer as it was: its
 * deadlines move with input, timers and closing, and one that detached
 * (or never will) is not judged again.  So the service a topic's
 * subscriber gets every turn to write what was queued costs no deadline
 * to compute and no timer to set. */
static int timer_unchanged(async_conn *ac, int how, int took_input)
{
    return !(how & SERVE_TIMER) && !took_input && !ac->timer_unset
           && (!ac->c || ac->no_detach)
           && !__atomic_load_n(&ac->wc->close_queued, __ATOMIC_ACQUIRE);
}

/*
 * Does what the connection needs now: read (when the socket said so, or
 * input waits), write, end it, or decide what to wait for.
 */
static void progress(async_conn *ac, apr_time_t now, int how)
{
    ws_loop *loop = ac->loop;
    ws_conn *wc = ac->wc;
    int busy = conn_is_busy(ac), readable = how & SERVE_READ;
    int more = 0, pending, reading, took_input = 0;
    apr_status_t rv;
    apr_int16_t want;

    if (readable && !wc->peer_closed
        && (busy || wc->paused || ws_conn_input_paused(wc))) {
        watch_departure(ac);
        took_input = 1;
    }
    if (!busy && !wc->finished && !wc->peer_closed
        && !ws_conn_input_paused(wc)) {
        loop->servicing = ac;
        if (wc->paused || wc->unparsed) {
            resume_input(ac, &more);
            took_input = 1;
        }
        else if (readable) {
            read_in(ac, &more);
            took_input = 1;
        }
        if (!ws_loop_is_mine(loop)) {
            return;
        }
        loop->servicing = NULL;
        busy = conn_is_busy(ac);
    }
    rv = ws_io_write(&ac->io, LOOP_TURN_BUDGET);
    if (rv != APR_SUCCESS) {
        ws_conn_abort(wc, rv, "write failed");
    }
    else if (!busy && ws_conn_take_drain(wc)) {
        ws_conn_drained(wc);
        if (!ws_loop_is_mine(loop)) {
            return;
        }
    }
    /* What the write left: frames it took, and frames still queued when
     * its budget ran out just as the taken ones were done (a burst from
     * a plugin on a dispatch thread); both want the socket's room. */
    pending = rv == APR_SUCCESS
              && (ws_io_output_pending(&ac->io)
                  || __atomic_load_n(&wc->out_head, __ATOMIC_ACQUIRE));
    /* A plugin still busy with this connection on another thread must
     * return before on_disconnect may run. */
    if (!busy && (rv != APR_SUCCESS || wc->finished
                  || ws_conn_done(wc, now, pending))) {
        ws_async_finish(ac, now);
        return;
    }
    /* Nothing to watch (the peer's Close read while a plugin call runs
     * elsewhere) is fine: the end of that call or a timer brings the
     * connection back. */
    reading = !(wc->peer_closed || wc->paused || busy
                || ws_conn_input_paused(wc));
    if (!reading && !busy && !ac->io.direct && !ac->fresh) {
        ws_io_try_direct(&ac->io);    /* its departure can then be watched */
    }
    want = rv != APR_SUCCESS ? 0
         : (reading || departure_watched(ac) ? APR_POLLIN : 0)
           | (pending ? APR_POLLOUT : 0);
    if (ws_loop_poll_events(ac, want) != APR_SUCCESS) {
        ws_conn_abort(wc, APR_EGENERAL, "cannot poll");
        if (!busy) {
            ws_async_finish(ac, now);
        }
        return;
    }
    if (more) {
        ac->read_due = 1;
        make_ready(loop, ac);         /* the filters hold more input */
    }
    if (!timer_unchanged(ac, how, took_input)) {
        ws_loop_schedule(ac, ws_detach_try(ac, now,
                                           ws_conn_next_deadline(wc)));
    }
}

static void serve(async_conn *ac, apr_time_t now, int how)
{
    if (ac->phase == AC_LINGER) {
        ws_async_linger(ac, now);
    }
    else if (ac->phase == AC_OPEN) {
        progress(ac, now, how);
    }
}

/* ---- the lists other threads feed ---- */

/* Connections the MPM handed over join the loop, and are served first
 * thing: bytes that came with the handshake wait in the input filters,
 * where polling the socket would never see them. */
static void adopt_inbox(ws_loop *loop)
{
    apr_thread_mutex_lock(loop->lock);
    while (!APR_RING_EMPTY(&loop->inbox, async_conn, inbox_link)) {
        async_conn *ac = APR_RING_FIRST(&loop->inbox);

        APR_RING_REMOVE(ac, inbox_link);
        ac->phase = AC_OPEN;
        APR_RING_INSERT_TAIL(&loop->conns, ac, async_conn, link);
        ac->fresh = 1;
        make_ready(loop, ac);
    }
    apr_thread_mutex_unlock(loop->lock);
}

/* A loop's turn visits thousands of connections (a topic's subscribers)
 * once each, too many for the caches: the next one's lines are fetched
 * while this one is served, a system call's time.  Its connection's:
 * what progress() and the write look at. */
static void prefetch_conn(const async_conn *ac)
{
    const char *p = (const char *)ac;
    size_t off;

    for (off = 0; off < sizeof(*ac); off += 64) {
        __builtin_prefetch(p + off);
    }
}

static void prefetch_ws_conn(const ws_conn *wc)
{
    if (wc) {
        __builtin_prefetch(&wc->conf);
        __builtin_prefetch(&wc->lock);
        __builtin_prefetch(&wc->out_head);
        __builtin_prefetch(&wc->close_queued);
        __builtin_prefetch(&wc->mem_held);
        __builtin_prefetch(&wc->peer_closed);
        __builtin_prefetch(&wc->paused);
        __builtin_prefetch(&wc->stats);
    }
}

/* What other threads marked dirty joins the ready list: one lock for all. */
static void take_dirty(ws_loop *loop)
{
    apr_thread_mutex_lock(loop->lock);
    while (!APR_RING_EMPTY(&loop->dirty, async_conn, dirty_link)) {
        async_conn *ac = APR_RING_FIRST(&loop->dirty);

        prefetch_conn(APR_RING_NEXT(ac, dirty_link));
        APR_RING_REMOVE(ac, dirty_link);
        ac->on_dirty = 0;
        if (ac->handed_back) {
            ac->handed_back = 0;
            ac->foreign_call = 0;
        }
        if (ac->phase == AC_OPEN) {
            make_ready(loop, ac);
        }
    }
    apr_thread_mutex_unlock(loop->lock);
}

static void first_service(async_conn *ac, apr_time_t now)
{
    ws_io *io = &ac->io;

    if (ac->loop->stop_announced) {
        ws_conn_close_for_stop(ac->wc);
    }
    ws_conn_open(ac->wc);
    if (!ws_loop_is_mine(ac->loop)) {
        return;
    }
    progress(ac, now, SERVE_READ);
    /* (Detached already, when it went direct in there: ws_detach.c.) */
    if (ac->phase == AC_OPEN && ws_loop_is_mine(ac->loop) && ac->c) {
        ws_io_try_direct(io);
        ws_blocks_settle(ac->c->pool);
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, ac->c, WSLOGNO(00015) "WebSocket on event "
                      "loop %d, %s I/O (in: %s%s, out: %s%s)", ac->loop->index,
                      io->direct ? "direct socket" : "connection filter",
                      ac->c->input_filters->frec->name,
                      ac->c->input_filters->next ? ",..." : "",
                      ac->c->output_filters->frec->name,
                      ac->c->output_filters->next ? ",..." : "");
    }
}

/* Whether a connection on the ready list is read, not only written to.
 * A socket read directly is watched for input by epoll (level
 * triggered), which says when it is readable: one that is ready because
 * output was queued for it (a topic's subscriber) costs no read that
 * would find nothing.  Input the filters hold, or that waited while
 * nothing was read (no longer watched), is read. */
static int must_read(async_conn *ac)
{
    int due = ac->read_due;

    ac->read_due = 0;
    return due || !ac->io.direct || ac->unread_waits;
}

/* Serves each connection that was ready when the turn began, once; one
 * that still has work goes to the back for the next turn.  The list stays
 * the loop's throughout, so a thread that takes the loop over finds it. */
static void run_ready(ws_loop *loop, apr_time_t now)
{
    async_conn *last;

    if (APR_RING_EMPTY(&loop->ready, async_conn, ready_link)) {
        return;
    }
    last = APR_RING_LAST(&loop->ready);
    for (;;) {
        async_conn *ac = APR_RING_FIRST(&loop->ready);
        int is_last = (ac == last);

        take_off_ready(loop, ac);
        if (!is_last) {
            /* The next one's own lines came during the last service. */
            async_conn *next = APR_RING_FIRST(&loop->ready);

            prefetch_ws_conn(next->wc);
            prefetch_conn(APR_RING_NEXT(next, ready_link));
        }
        if (ac->fresh) {
            ac->fresh = 0;
            first_service(ac, now);
        }
        else {
            serve(ac, now, must_read(ac) ? SERVE_READ : 0);
        }
        if (is_last || !ws_loop_is_mine(loop)
            || APR_RING_EMPTY(&loop->ready, async_conn, ready_link)) {
            return;
        }
    }
}

/* ---- timers and stopping ---- */

/* 1012 when a restart (graceful or not) stops the child, 1001 when httpd
 * stops (ws_conn_close_for_stop). */
static void announce_stop(ws_loop *loop)
{
    async_conn *ac;

    for (ac = APR_RING_FIRST(&loop->conns);
         ac != APR_RING_SENTINEL(&loop->conns, async_conn, link);
         ac = APR_RING_NEXT(ac, link)) {
        if (ac->phase == AC_OPEN) {
            ws_conn_close_for_stop(ac->wc);
        }
    }
}

/* A hard stop: whatever did not close in the grace period is dropped,
 * except connections a plugin still runs for, which end when it returns
 * (their queued messages are dropped meanwhile). */
static void hard_stop(ws_loop *loop, apr_time_t now)
{
    async_conn *ac, *next;

    for (ac = APR_RING_FIRST(&loop->conns);
         ac != APR_RING_SENTINEL(&loop->conns, async_conn, link); ac = next) {
        next = APR_RING_NEXT(ac, link);
        if (ac->phase != AC_OPEN) {
            continue;
        }
        if (!ac->wc->peer_closed) {
            ws_conn_abort(ac->wc, APR_SUCCESS, "server stopped");
        }
        if (ws_dispatch_cancel(&ac->dispatch)) {
            WS_CONN_LOG(APLOG_DEBUG, 0, ac->wc, WSLOGNO(00016) "hard stop: "
                        "dropped messages queued for a slow plugin");
        }
        if (conn_is_busy(ac)) {
            continue;
        }
        ws_async_mark_aborted(ac);
        ws_async_finish(ac, now);
        if (!ws_loop_is_mine(loop)) {
            return;
        }
    }
}

static void run_timers(ws_loop *loop, apr_time_t now)
{
    ws_timer *t;

    if (loop->stop && !loop->stop_announced) {
        loop->stop_announced = 1;
        loop->hard_stop_at = now + (loop->stop == STOP_GRACEFUL
                                    ? GRACEFUL_STOP_GRACE : HARD_STOP_GRACE);
        announce_stop(loop);
    }
    while ((t = ws_timer_pop_due(&loop->timers, now))) {
        async_conn *ac = (async_conn *)((char *)t - offsetof(async_conn, timer));

        if (ac->phase == AC_OPEN) {
            ws_conn_timers(ac->wc, now);
        }
        serve(ac, now, SERVE_TIMER);
        if (!ws_loop_is_mine(loop)) {
            return;
        }
    }
    if (loop->stop == STOP_NOW && now >= loop->hard_stop_at) {
        hard_stop(loop, now);
    }
}

static apr_interval_time_t sleep_time(ws_loop *loop, apr_time_t now)
{
    ws_timer *first = ws_timer_first(&loop->timers);
    apr_interval_time_t sleep = LOOP_MAX_SLEEP;

    if (!APR_RING_EMPTY(&loop->ready, async_conn, ready_link)) {
        return 0;
    }
    if (first) {
        sleep = first->at > now ? first->at - now : 0;
    }
    if (loop->stop == STOP_NOW && loop->hard_stop_at > now
        && loop->hard_stop_at - now < sleep) {
        sleep = loop->hard_stop_at - now;
    }
    if (!APR_RING_EMPTY(&loop->graveyard, async_conn, link)
        && sleep > GRAVEYARD_RECHECK) {
        sleep = GRAVEYARD_RECHECK;
    }
    return sleep < LOOP_MAX_SLEEP ? sleep : LOOP_MAX_SLEEP;
}

static int loop_finished(ws_loop *loop)
{
    int empty;

    if (!loop->stop || !APR_RING_EMPTY(&loop->conns, async_conn, link)
        || !APR_RING_EMPTY(&loop->graveyard, async_conn, link)) {
        return 0;
    }
    apr_thread_mutex_lock(loop->lock);
    empty = APR_RING_EMPTY(&loop->inbox, async_conn, inbox_link);
    apr_thread_mutex_unlock(loop->lock);
    return empty;
}

/* ---- the thread ---- */

/* Milliseconds for epoll_wait, rounded up: a timer is never run early
 * and then slept on again. */
static int sleep_ms(apr_interval_time_t us)
{
    return (int)((us + 999) / 1000);
}

static void turn(ws_loop *loop)
{
    struct epoll_event ready[LOOP_MAX_EVENTS];
    apr_time_t now = apr_time_now();
    int n, i;

    n = epoll_wait(loop->epfd, ready, LOOP_MAX_EVENTS,
                   sleep_ms(sleep_time(loop, now)));
    now = apr_time_now();
    if (n < 0) {
        if (errno != EINTR) {
            ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno),
                         ap_server_conf, WSLOGNO(00017) "WebSocket event loop %d: poll "
                         "failed", loop->index);
        }
        n = 0;
    }
    for (i = 0; i < n; i++) {
        async_conn *ac = ready[i].data.ptr;

        if (!ac) {
            drain_wakeups(loop);
            continue;
        }
        serve(ac, now, (ready[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                       ? SERVE_READ : 0);
        if (!ws_loop_is_mine(loop)) {
            return;
        }
    }
    adopt_inbox(loop);
    take_dirty(loop);
    run_ready(loop, now);
    if (!ws_loop_is_mine(loop)) {
        return;
    }
    run_timers(loop, now);
    if (!ws_loop_is_mine(loop)) {
        return;
    }
    ws_async_destroy_dead(loop);
}

/* A replaced thread, back from the plugin call it was stuck in, hands
 * that connection back to the loop and ends. */
static void hand_back(ws_loop *loop)
{
    async_conn *ac = my_call_conn;

    apr_thread_mutex_lock(loop->lock);
    ac->handed_back = 1;
    ws_loop_push_dirty_locked(loop, ac);
    apr_thread_mutex_unlock(loop->lock);
    ws_loop_wakeup(loop);
}

/* The new thread of a loop that was taken over: the connection the old
 * one is stuck in waits for it, everything else carries on here. */
static void take_up(ws_loop *loop, async_conn *stuck)
{
    async_conn *ac;

    if (stuck) {
        stuck->foreign_call = 1;
        if (stuck->phase == AC_OPEN) {
            ws_loop_poll_events(stuck, 0);
        }
    }
    /* The old thread may have left work of other connections half done in
     * its own variables: look at every connection once. */
    for (ac = APR_RING_FIRST(&loop->conns);
         ac != APR_RING_SENTINEL(&loop->conns, async_conn, link);
         ac = APR_RING_NEXT(ac, link)) {
        if (ac->phase == AC_OPEN && ac != stuck) {
            ac->read_due = 1;
            make_ready(loop, ac);
        }
    }
}

/* How a loop thread begins: at child start at once; on a take-over only
 * once the watchdog has won the call (it may lose it to the old thread's
 * return, and then the new thread ends without touching the loop). */
typedef struct loop_start {
    ws_loop *loop;
    async_conn *stuck;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int verdict;                     /* 0 pending, 1 go, -1 give up */
} loop_start;

static int await_verdict(loop_start *start)
{
    int verdict;

    pthread_mutex_lock(&start->lock);
    while (!start->verdict) {
        pthread_cond_wait(&start->cond, &start->lock);
    }
    verdict = start->verdict;
    pthread_mutex_unlock(&start->lock);
    return verdict;
}

static void give_verdict(loop_start *start, int verdict, async_conn *stuck)
{
    pthread_mutex_lock(&start->lock);
    start->stuck = stuck;
    start->verdict = verdict;
    pthread_cond_signal(&start->cond);
    pthread_mutex_unlock(&start->lock);
}

static void free_start(loop_start *start)
{
    pthread_mutex_destroy(&start->lock);
    pthread_cond_destroy(&start->cond);
    free(start);
}

void *ws_loop_main(void *arg)
{
    loop_start *start = arg;
    ws_loop *loop = start->loop;
    async_conn *stuck;
    uint8_t *scratch;

    if (await_verdict(start) < 0) {
        free_start(start);
        return NULL;
    }
    stuck = start->stuck;
    free_start(start);
    scratch = malloc(LOOP_READ_SIZE + 1);
    my_loop = loop;
    my_loop_replaced = 0;
    if (!scratch) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, APR_ENOMEM, ap_server_conf,
                     WSLOGNO(00018) "WebSocket event loop %d: no memory for its buffer",
                     loop->index);
        return NULL;
    }
    loop->scratch = scratch;
    __atomic_store_n(&loop->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    __atomic_store_n(&loop->call.started, 0, __ATOMIC_RELEASE);
    take_up(loop, stuck);
    while (!loop_finished(loop)) {
        turn(loop);
        if (!ws_loop_is_mine(loop)) {
            hand_back(loop);
            break;
        }
    }
    ws_detach_thread_exit();
    free(scratch);
    return NULL;
}

/* ---- starting threads ---- */

static void remember_replaced(pthread_t thread)
{
    pthread_mutex_lock(&replaced_lock);
    if (replaced_count == replaced_cap) {
        size_t cap = replaced_cap ? replaced_cap * 2 : 8;
        pthread_t *more = realloc(replaced, cap * sizeof(*more));

        if (!more) {
            /* Cannot be joined: let it end on its own. */
            pthread_detach(thread);
            pthread_mutex_unlock(&replaced_lock);
            return;
        }
        replaced = more;
        replaced_cap = cap;
    }
    replaced[replaced_count++] = thread;
    pthread_mutex_unlock(&replaced_lock);
}


static loop_start *start_thread(ws_loop *loop, pthread_t *thread)
{
    loop_start *start = calloc(1, sizeof(*start));

    if (!start) {
        return NULL;
    }
    start->loop = loop;
    pthread_mutex_init(&start->lock, NULL);
    pthread_cond_init(&start->cond, NULL);
    if (ws_thread_create(thread, ws_loop_main, start) != 0) {
        free_start(start);
        return NULL;
    }
    return start;
}

apr_status_t ws_loop_start(ws_loop *loop, pthread_t *thread)
{
    loop_start *start = start_thread(loop, thread);

    if (!start) {
        return APR_EGENERAL;
    }
    give_verdict(start, 1, NULL);
    return APR_SUCCESS;
}

void ws_loop_take_over(ws_loop *loop, apr_time_t started)
{
    pthread_t old = ws_loop_threads[loop->index], fresh;
    loop_start *start = start_thread(loop, &fresh);

    if (!start) {
        /* No thread: the loop waits for the plugin, as it would have. */
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     WSLOGNO(00019) "cannot start a thread to take WebSocket event loop %d "
                     "over from a blocked plugin", loop->index);
        return;
    }
    /* The call must still be the one the watchdog judged. */
    if (!__atomic_compare_exchange_n(&loop->call.started, &started,
                                     CALL_TAKEN_OVER, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        give_verdict(start, -1, NULL);
        remember_replaced(fresh);
        return;
    }
    ws_loop_threads[loop->index] = fresh;
    remember_replaced(old);
    loop->takeovers++;
    ws_stats_add(WS_STAT_LOOP_TAKEOVERS, 1);
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                 WSLOGNO(00020) "WebSocket event loop %d was stuck in %s of plugin %s; a new "
                 "thread serves its other connections", loop->index,
                 loop->call.what, loop->call.ref->symbol);
    /* The old thread cannot end this call now (its swap fails), so the
     * call's fields stay as they are until the new thread starts. */
    give_verdict(start, 1, loop->call.conn);
}

void ws_loop_join_replaced(void)
{
    size_t i;

    pthread_mutex_lock(&replaced_lock);
    for (i = 0; i < replaced_count; i++) {
        pthread_join(replaced[i], NULL);
    }
    free(replaced);
    replaced = NULL;
    replaced_count = replaced_cap = 0;
    pthread_mutex_unlock(&replaced_lock);
}
