/*
 * ws_sync.c - the synchronous engine: the handler's thread drives the
 * connection until it closes.
 *
 * It is the engine wherever a connection cannot leave its thread: the
 * prefork and worker MPMs, HTTP/2 streams, and internal redirects into a
 * WebSocket location (the MPM never suspends a redirected request).  The
 * thread sleeps in a wakeable pollset holding the connection's descriptor
 * (a socket, or a pipe on an HTTP/2 stream), so that plugin threads that
 * queue a message can interrupt the sleep.  Writes never block on a
 * socket: output the peer does not take waits (bounded by
 * WebSocketSendQueueLimit) while the thread keeps reading, so a client
 * that writes without reading cannot hold both sides until Timeout.
 */
#include <stddef.h>

#include "httpd.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "util_filter.h"
#include "ap_mpm.h"
#include "apr_poll.h"

#include "ws_conn.h"
#include "ws_io.h"
#include "ws_thread.h"
#include "ws_mem.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* How much one read asks the filters for; also the scratch buffer size. */
#define WS_SYNC_READ_SIZE   (64 * 1024)
/* How often a sleeping loop looks whether the server is stopping. */
#define WS_SYNC_STOP_CHECK  apr_time_from_sec(1)

typedef struct sync_loop {
    apr_pollset_t *pollset;
    apr_pollfd_t pfd;
    apr_int16_t polled;          /* events registered, 0 if none */
    int can_pollout;             /* a socket (an HTTP/2 pipe cannot) */
    ws_io io;
    uint8_t *scratch;
    int going_away;              /* 1001 queued because httpd stops */
    int unread_waits;            /* the peer sent data while input was
                                    paused: stop watching for its
                                    departure until reading resumes */
    int holding_signals;         /* prefork: stop signals held back while
                                    plugin code runs (ws_thread.c) */
    sigset_t saved_mask;
} sync_loop;

static void sync_wake(ws_conn *wc)
{
    sync_loop *loop = wc->engine_data;

    if (loop && loop->pollset) {
        apr_pollset_wakeup(loop->pollset);
    }
}

static apr_interval_time_t poll_timeout(ws_conn *wc, apr_time_t now)
{
    apr_time_t next = ws_conn_next_deadline(wc);

    if (next && next - now < WS_SYNC_STOP_CHECK) {
        return next > now ? next - now : 0;
    }
    return WS_SYNC_STOP_CHECK;
}

static int server_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

static apr_status_t watch(sync_loop *loop, apr_int16_t want)
{
    apr_status_t rv = APR_SUCCESS;

    if (want == loop->polled) {
        return APR_SUCCESS;
    }
    if (loop->polled) {
        apr_pollset_remove(loop->pollset, &loop->pfd);
    }
    loop->polled = 0;
    if (want) {
        loop->pfd.reqevents = want;
        if ((rv = apr_pollset_add(loop->pollset, &loop->pfd)) == APR_SUCCESS) {
            loop->polled = want;
        }
    }
    return rv;
}

static apr_status_t setup_loop(ws_conn *wc, sync_loop *loop)
{
    apr_pool_t *p = wc->r->pool;
    apr_interval_time_t unused;
    apr_status_t rv;

    loop->scratch = apr_palloc(p, WS_SYNC_READ_SIZE + 1);
    ws_io_init(&loop->io, wc, p);
    /* An HTTP/2 stream's output has no POLLOUT: it goes to mod_http2,
     * which waits on the stream's flow control. */
    loop->io.blocking_writes = wc->c->master != NULL;
    loop->pfd.p = p;
    rv = ap_get_pollfd_from_conn(wc->c, &loop->pfd, &unused);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* An HTTP/2 stream the client ended with its CONNECT has no input,
     * and nothing to poll (adding it to a pollset would crash). */
    if (loop->pfd.desc_type == APR_NO_DESC) {
        return APR_EOF;
    }
    loop->can_pollout = loop->pfd.desc_type == APR_POLL_SOCKET
                        && !wc->c->master;
    loop->pfd.client_data = wc;
    rv = apr_pollset_create(&loop->pollset, 1, p, APR_POLLSET_WAKEABLE);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return watch(loop, APR_POLLIN);
}

/* A paused connection's socket stays watched (direct mode), so that a
 * client that leaves is noticed (ws_async_loop.c says why). */
static int departure_watched(const sync_loop *loop)
{
    return loop->io.direct && !loop->unread_waits
           && !loop->io.wc->peer_closed;
}

static apr_status_t peer_departure(sync_loop *loop)
{
    switch (ws_io_peek_peer(&loop->io)) {
    case WS_IO_PEER_GONE:
        return APR_EOF;
    case WS_IO_PEER_DATA_WAITS:
        loop->unread_waits = 1;
        return APR_SUCCESS;
    default:
        return APR_SUCCESS;
    }
}

/* A prefork child's only thread serves this connection: it holds the stop
 * signals back while plugin code may run (threads a plugin starts then
 * inherit the block, and never run httpd's handlers), and lets them
 * through while it waits on the network. */
static int single_threaded_child(void)
{
    int threaded = AP_MPMQ_NOT_SUPPORTED;

    ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
    return threaded == AP_MPMQ_NOT_SUPPORTED;
}

static void open_to_signals(sync_loop *loop, int open)
{
    if (!loop->holding_signals) {
        return;
    }
    if (open) {
        ws_signals_release(&loop->saved_mask);
    }
    else {
        ws_signals_hold(&loop->saved_mask);
    }
}

static apr_status_t stop_holding_signals(void *data)
{
    sync_loop *loop = data;

    if (loop->holding_signals) {
        ws_signals_release(&loop->saved_mask);
        loop->holding_signals = 0;
    }
    return APR_SUCCESS;
}

static apr_status_t sync_poll(sync_loop *loop, apr_interval_time_t timeout,
                              apr_int32_t *n, const apr_pollfd_t **ready)
{
    apr_status_t rv;

    open_to_signals(loop, 1);
    rv = apr_pollset_poll(loop->pollset, timeout, n, ready);
    open_to_signals(loop, 0);
    return rv;
}

static int sync_run(ws_conn *wc)
{
    sync_loop *loop = wc->engine_data;
    ws_io *io = &loop->io;
    apr_status_t rv;
    int readable = 0;

    ws_conn_open(wc);
    for (;;) {
        apr_int32_t n;
        const apr_pollfd_t *ready;
        apr_time_t now;
        apr_int16_t want;
        int more;

        rv = APR_SUCCESS;
        /* Again when a pause that ended meanwhile left some waiting. */
        while (rv == APR_SUCCESS && !ws_conn_input_paused(wc) && wc->unparsed
               && !wc->peer_closed) {
            rv = ws_conn_resume(wc, loop->scratch, WS_SYNC_READ_SIZE);
        }
        if (rv == APR_SUCCESS && !ws_conn_input_paused(wc)) {
            loop->unread_waits = 0;
            rv = ws_io_read(io, loop->scratch, WS_SYNC_READ_SIZE,
                            (apr_size_t)-1, &more);
        }
        else if (rv == APR_SUCCESS && readable && departure_watched(loop)) {
            rv = peer_departure(loop);
        }
        if (rv != APR_SUCCESS) {
            ws_conn_abort(wc, rv, rv == APR_EOF ? "peer closed the TCP connection"
                                                : "read failed");
        }
        else {
            ws_io_try_direct(io);      /* paused too: its departure is watched */
        }
        if ((rv = ws_io_write(io, 0)) != APR_SUCCESS) {
            ws_conn_abort(wc, rv, "write failed");
            break;
        }
        if (ws_conn_take_drain(wc)) {
            ws_conn_drained(wc);
        }
        now = apr_time_now();
        ws_conn_timers(wc, now);
        if (ws_conn_done(wc, now, ws_io_output_pending(io))) {
            break;
        }
        if (!loop->going_away && server_stopping()) {
            loop->going_away = 1;
            ws_conn_close_for_stop(wc);
            continue;
        }
        want = (wc->peer_closed || (ws_conn_input_paused(wc)
                                    && !departure_watched(loop))
                ? 0 : APR_POLLIN)
             | (loop->can_pollout && ws_io_output_pending(io) ? APR_POLLOUT : 0);
        if (watch(loop, want) != APR_SUCCESS) {
            ws_conn_abort(wc, APR_EGENERAL, "cannot poll");
            break;
        }
        rv = sync_poll(loop, poll_timeout(wc, now), &n, &ready);
        readable = rv == APR_SUCCESS && n > 0
                   && (ready[0].rtnevents & (APR_POLLIN | APR_POLLHUP
                                             | APR_POLLERR));
        if (rv != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(rv)
            && !APR_STATUS_IS_EINTR(rv)) {
            ws_conn_abort(wc, rv, "poll failed");
            break;
        }
    }
    ws_io_discard(io, 0);
    ws_conn_finish(wc);
    stop_holding_signals(loop);
    /* The access log line is written when the handler returns. */
    ws_stats_log_notes(wc, wc->r);
    return DONE;
}

/*
 * A hard stop of prefork (SIGTERM, or SIGHUP for a restart) runs
 * child_stopping in the signal handler and exits right after: the loop
 * never gets back to end its connection.  So it is ended here: a Close
 * 1001 (1012 for a restart) when it can go out at once, and
 * on_disconnect, so that the plugin stops its threads before the
 * process goes (they would run into an unloaded plugin).  Only where
 * the child has no other threads: the interrupted thread is the loop,
 * which holds no lock of ours unless trylock says so.  On threaded MPMs
 * each loop ends its own connection.
 */
static void end_at_hard_stop(ws_conn *wc)
{
    sync_loop *loop = wc->engine_data;
    uint8_t frame[WS_MAX_HEADER_SIZE + WS_MAX_CONTROL_SIZE];
    size_t plen, hlen;
    int finished, closing;

    if (wc->engine != &ws_engine_sync || !loop
        || pthread_mutex_trylock(&wc->lock) != 0) {
        return;
    }
    finished = wc->finished;
    closing = wc->close_queued;
    pthread_mutex_unlock(&wc->lock);
    if (finished) {
        return;
    }
    /* A connection already closing has sent its Close (or is sending it):
     * no second one, but its plugin must still hear the end. */
    if (!closing) {
        /* The payload right after the 2-byte header of a control frame. */
        plen = ws_conn_stop_code() == WS_CLOSE_SERVICE_RESTART
               ? ws_close_payload(frame + 2, WS_CLOSE_SERVICE_RESTART,
                                  "server restarting", 17)
               : ws_close_payload(frame + 2, WS_CLOSE_GOING_AWAY,
                                  "server shutting down", 20);
        hlen = ws_frame_header(frame, WS_OP_CLOSE, WS_FIN, plen, NULL);
        if (hlen != 2 || !ws_io_send_now(&loop->io, frame, hlen + plen)) {
            ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, wc->c, WSLOGNO(00064) "hard stop: no "
                          "Close could be sent");
        }
    }
    ws_conn_abort(wc, APR_SUCCESS, "server stopped");
    ws_conn_finish(wc);
}

void ws_sync_child_stopping(int graceful)
{
    ws_conn *conns[64];
    size_t n, i;
    int threaded = AP_MPMQ_NOT_SUPPORTED;

    ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
    if (graceful || threaded != AP_MPMQ_NOT_SUPPORTED) {
        return;
    }
    n = ws_mem_connections(conns, sizeof(conns) / sizeof(conns[0]));
    for (i = 0; i < n; i++) {
        end_at_hard_stop(conns[i]);
    }
}

/* Called before on_connect, so that plugin threads can wake us at once. */
static apr_status_t sync_attach(ws_conn *wc)
{
    sync_loop *loop = apr_pcalloc(wc->r->pool, sizeof(*loop));
    apr_status_t rv = setup_loop(wc, loop);

    if (rv == APR_SUCCESS) {
        wc->engine_data = loop;
        if (single_threaded_child()) {
            ws_signals_hold(&loop->saved_mask);
            loop->holding_signals = 1;
            apr_pool_cleanup_register(wc->r->pool, loop, stop_holding_signals,
                                      apr_pool_cleanup_null);
        }
    }
    return rv;
}

const ws_engine ws_engine_sync = {
    "sync",
    sync_attach,
    sync_run,
    sync_wake,
    NULL,            /* a thread per connection: nothing to offload */
    NULL,            /* nothing outside the request to forget */
    NULL,            /* nothing else waits on this thread: no watching */
    NULL,
    NULL             /* woken one by one, under each connection's lock */
};
