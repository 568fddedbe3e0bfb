/*
 * ws_async.c - the asynchronous engine, for the event MPM: an upgraded
 * connection leaves its worker thread and is driven by a few event-loop
 * threads that the module starts in each child (ws_async_int.h lists the
 * files of the engine).
 *
 * How a connection gets here (httpd 2.4's server/mpm/event/event.c,
 * process_socket and notify_suspend, and modules/http/http_request.c,
 * ap_process_async_request, are the references):
 *   1. the handler sends the 101 and returns SUSPENDED; the MPM marks the
 *      connection suspended and forgets it: no timeout, no poll;
 *   2. the MPM runs the suspend_connection hook on the worker thread; we
 *      put the connection in a loop's inbox there (not in the handler,
 *      where the MPM could still decide to close it);
 *   3. the loop polls the socket itself and does all I/O through the
 *      connection's filters, or the socket alone (ws_io.c), non-blocking;
 *   4. at the end the loop logs the request, closes as Apache would, and
 *      destroys the connection's pool once the MPM's worker is done with
 *      it (ws_async_close.c), which tells the MPM it is gone.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "apr_atomic.h"

#include "ws_async.h"
#include "ws_async_int.h"
#include "ws_blocks.h"
#include "ws_mem.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);
extern module AP_MODULE_DECLARE_DATA websocket_module;

ws_loop *ws_loops;
pthread_t *ws_loop_threads;
int ws_loop_count;
static apr_uint32_t next_loop;

/* ---- slow plugins: dispatch threads ---- */

static async_conn *of_dispatch(ws_dispatch_conn *dc)
{
    return (async_conn *)((char *)dc - offsetof(async_conn, dispatch));
}

static void run_dispatched(ws_dispatch_conn *dc, int type, uint8_t *data,
                           size_t len)
{
    ws_conn *wc = of_dispatch(dc)->wc;

    ws_stats_add(WS_STAT_DISPATCH_BUSY, 1);
    if (type == WS_DISPATCH_DISCONNECT) {
        ws_conn_finish(wc);
    }
    else {
        ws_conn_run_job(wc, type, data, len);
        ws_mem_add(wc, -(apr_off_t)len);
    }
    ws_stats_add(WS_STAT_DISPATCH_BUSY, -1);
}

/* With the dispatch pool's lock held: the loop must find the connection
 * on its dirty list before it can see it idle. */
static void dispatch_done(ws_dispatch_conn *dc)
{
    async_conn *ac = of_dispatch(dc);
    ws_loop *loop = ac->loop;

    apr_thread_mutex_lock(loop->lock);
    ws_loop_push_dirty_locked(loop, ac);
    apr_thread_mutex_unlock(loop->lock);
    ws_loop_wakeup(loop);
}

static int async_dispatch(ws_conn *wc, int type, const uint8_t *data,
                          size_t len)
{
    async_conn *ac = wc->engine_data;

    if (!ws_dispatch_push(&ac->dispatch, type, data, len)) {
        return 0;
    }
    ws_mem_add(wc, (apr_off_t)len);      /* the copy, until it has run */
    /* Nothing behind this message is parsed before the plugin is done
     * with it: replies and errors keep the order of the wire. */
    wc->paused = 1;
    return 1;
}

/* Plugin calls on the loop are watched (ws_watchdog.c). */
static void async_call_begin(ws_conn *wc, const char *what)
{
    async_conn *ac = wc->engine_data;

    ws_loop_call_begin(ac->loop, ac, what);
}

static int async_call_end(ws_conn *wc)
{
    async_conn *ac = wc->engine_data;

    return ws_loop_call_end(ac->loop);
}

/* ---- the engine interface ---- */

apr_status_t ws_async_free_conn(void *ac)
{
    free(ac);
    return APR_SUCCESS;
}

/* Malloc'd, freed with the connection's pool (or by the engine once it
 * detached the connection from that pool: ws_detach.c). */
static apr_status_t async_attach(ws_conn *wc)
{
    conn_rec *c = wc->c;
    async_conn *ac = calloc(1, sizeof(*ac));
    apr_status_t rv;

    if (!ac) {
        return APR_ENOMEM;
    }
    apr_pool_cleanup_register(c->pool, ac, ws_async_free_conn,
                              apr_pool_cleanup_null);
    ac->wc = wc;
    ac->c = c;
    ac->phase = AC_WAITING;
    /* Blocks of WebSockets that ended, for the 101 and the first reads;
     * once the handshake is over, the loop gives back what the
     * connection does not hold (ws_blocks_settle): a WebSocket lives long
     * and allocates little from its pools after it. */
    ws_blocks_lend(c->pool, ASYNC_LEND_BLOCKS);
    ac->loop = &ws_loops[apr_atomic_inc32(&next_loop)
                         % (apr_uint32_t)ws_loop_count];
    ws_io_init(&ac->io, wc, c->pool);
    ac->dispatch.run = run_dispatched;
    ac->dispatch.done = dispatch_done;
    APR_RING_ELEM_INIT(ac, link);
    APR_RING_ELEM_INIT(ac, ready_link);
    APR_RING_ELEM_INIT(ac, inbox_link);
    APR_RING_ELEM_INIT(ac, dirty_link);
    rv = apr_os_sock_get(&ac->fd, ap_get_conn_socket(c));
    if (rv != APR_SUCCESS) {
        return rv;
    }
    wc->engine_data = ac;
    return APR_SUCCESS;
}

/* The connection will never reach a loop (refused, or the 101 could not
 * be written): nothing of it may stay on the loop's lists. */
static void async_detach(ws_conn *wc)
{
    ws_loop_take_off_dirty(wc->engine_data);
}

static int async_run(ws_conn *wc)
{
    /* The MPM lingering-closes an aborted connection instead of
     * suspending it (the 101 could not be written): it never reaches a
     * loop, so it ends here. */
    if (wc->c->aborted) {
        ws_conn_abort(wc, APR_ECONNABORTED, "the 101 could not be sent");
        ws_conn_finish(wc);
        async_detach(wc);
        return DONE;
    }
    ap_set_module_config(wc->c->conn_config, &websocket_module, wc);
    return SUSPENDED;
}

/* With wc->lock held (ws_conn.c), from any thread. */
static void async_wake(ws_conn *wc)
{
    async_conn *ac = wc->engine_data;
    ws_loop *loop = ac->loop;
    int was_dirty, mine = ws_loop_is_mine(loop);

    /* A reply from on_message on this loop: progress() writes it next. */
    if (mine && loop->servicing == ac) {
        return;
    }
    apr_thread_mutex_lock(loop->lock);
    was_dirty = ac->on_dirty;
    ws_loop_push_dirty_locked(loop, ac);
    apr_thread_mutex_unlock(loop->lock);
    /* The loop looks at its dirty list every turn, so it needs no
     * wake-up from itself, nor a second one. */
    if (!was_dirty && !mine) {
        ws_loop_wakeup(loop);
    }
}

/* The topics' reader, for a run's subscribers: one lock of each loop for
 * all of its connections (consecutive ones share a loop), and one wake-up
 * per loop that had none coming. */
static void async_wake_many(ws_conn *const *wcs, size_t n)
{
    ws_loop *locked = NULL;
    uint64_t to_wake = 0;            /* loops by index (at most 64) */
    size_t i;
    int k;

    for (i = 0; i < n; i++) {
        async_conn *ac = wcs[i]->engine_data;

        /* Thousands, not in the caches: fetched ahead (the connection two
         * ahead, and the next one's async_conn, which it points to). */
        if (i + 2 < n) {
            __builtin_prefetch(&wcs[i + 2]->engine_data);
        }
        if (i + 1 < n) {
            const async_conn *next = wcs[i + 1]->engine_data;

            __builtin_prefetch(&next->loop);
            __builtin_prefetch(&next->dirty_link);
        }
        if (ac->loop != locked) {
            if (locked) {
                apr_thread_mutex_unlock(locked->lock);
            }
            locked = ac->loop;
            apr_thread_mutex_lock(locked->lock);
        }
        if (!ac->on_dirty) {
            ws_loop_push_dirty_locked(locked, ac);
            to_wake |= (uint64_t)1 << locked->index;
        }
    }
    if (locked) {
        apr_thread_mutex_unlock(locked->lock);
    }
    for (k = 0; k < ws_loop_count; k++) {
        if ((to_wake & ((uint64_t)1 << k)) && !ws_loop_is_mine(&ws_loops[k])) {
            ws_loop_wakeup(&ws_loops[k]);
        }
    }
}

const ws_engine ws_engine_async = {
    "async",
    async_attach,
    async_run,
    async_wake,
    async_dispatch,
    async_detach,
    async_call_begin,
    async_call_end,
    async_wake_many
};

/* suspend_connection hook, on the worker thread that ran the handler. */
void ws_async_suspended(conn_rec *c, request_rec *r)
{
    ws_conn *wc = ap_get_module_config(c->conn_config, &websocket_module);
    async_conn *ac;
    ws_loop *loop;

    (void)r;
    if (!wc || wc->engine != &ws_engine_async) {
        return;
    }
    ap_set_module_config(c->conn_config, &websocket_module, NULL);
    ac = wc->engine_data;
    loop = ac->loop;
    ws_async_note_handover(ac);
    apr_thread_mutex_lock(loop->lock);
    APR_RING_INSERT_TAIL(&loop->inbox, ac, async_conn, inbox_link);
    apr_thread_mutex_unlock(loop->lock);
    ws_loop_wakeup(loop);
}

int ws_async_available(void)
{
    return ws_loop_count > 0;
}

/* ---- starting and stopping the loops ---- */

static void ask_loops_to_stop(int how)
{
    int i;

    for (i = 0; i < ws_loop_count; i++) {
        if (ws_loops[i].stop < (apr_uint32_t)how) {
            ws_loops[i].stop = (apr_uint32_t)how;
        }
        ws_loop_wakeup(&ws_loops[i]);
    }
}

void ws_async_child_stopping(apr_pool_t *pchild, int graceful)
{
    (void)pchild;
    ask_loops_to_stop(graceful ? STOP_GRACEFUL : STOP_NOW);
}

/* Runs before pchild's subpools and the MPM's own teardown: every loop
 * ends (after the plugin calls still running on other threads), then the
 * threads that ran plugins. */
static apr_status_t join_loops(void *unused)
{
    int i;

    (void)unused;
    ask_loops_to_stop(STOP_NOW);
    ws_watchdog_stop();
    for (i = 0; i < ws_loop_count; i++) {
        pthread_join(ws_loop_threads[i], NULL);
        ws_timer_heap_free(&ws_loops[i].timers);
    }
    ws_loop_join_replaced();
    ws_dispatch_shutdown();
    ws_loop_count = 0;
    return APR_SUCCESS;
}

void ws_async_child_init(apr_pool_t *pchild, server_rec *s, int threads,
                         int dispatch_threads)
{
    int is_async = 0, i;

    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &is_async) != APR_SUCCESS || !is_async
        || threads <= 0) {
        return;
    }
    ws_dispatch_init(dispatch_threads);
    ws_loops = apr_pcalloc(pchild, sizeof(*ws_loops) * (apr_size_t)threads);
    ws_loop_threads = apr_pcalloc(pchild, sizeof(pthread_t) * (apr_size_t)threads);
    for (i = 0; i < threads; i++) {
        apr_status_t rv = ws_loop_init(&ws_loops[i], i, pchild);

        if (rv == APR_SUCCESS) {
            rv = ws_loop_start(&ws_loops[i], &ws_loop_threads[i]);
        }
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, WSLOGNO(00012) "cannot start WebSocket "
                         "event loop %d; WebSockets use the synchronous engine",
                         i);
            break;
        }
        ws_loop_count = i + 1;
    }
    if (ws_loop_count > 0 && ws_watchdog_start() != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, WSLOGNO(00013) "cannot start the WebSocket "
                     "watchdog; blocking plugins will not be detected");
    }
    apr_pool_pre_cleanup_register(pchild, NULL, join_loops);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, WSLOGNO(00014) "%d WebSocket event loop "
                 "thread(s) started", ws_loop_count);
}
