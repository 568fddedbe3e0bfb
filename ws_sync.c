/*
 * ws_sync.c - the synchronous engine: the handler's thread drives the
 * connection until it closes.
 *
 * It is the engine wherever a connection cannot leave its thread: the
 * prefork and worker MPMs and HTTP/2 streams.  The thread sleeps in a
 * wakeable pollset holding the connection's descriptor (a socket, or a
 * pipe on an HTTP/2 stream), so that plugin threads that queue a message
 * can interrupt the sleep.
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

APLOG_USE_MODULE(websocket);

/* How much one read asks the filters for; also the scratch buffer size. */
#define WS_SYNC_READ_SIZE   (64 * 1024)
/* How often a sleeping loop looks whether the server is stopping. */
#define WS_SYNC_STOP_CHECK  apr_time_from_sec(1)

typedef struct sync_loop {
    apr_pollset_t *pollset;
    apr_pollfd_t pfd;
    apr_bucket_brigade *in;
    apr_bucket_brigade *out;
    uint8_t *scratch;
    int going_away;              /* 1001 queued because httpd stops */
} sync_loop;

static void sync_wake(ws_conn *wc)
{
    sync_loop *loop = wc->engine_data;

    if (loop && loop->pollset) {
        apr_pollset_wakeup(loop->pollset);
    }
}

/* Writes every queued frame; blocks until the filters took them. */
static apr_status_t write_queued(ws_conn *wc, sync_loop *loop)
{
    ws_out_frame *f = ws_conn_take_output(wc);
    apr_bucket_alloc_t *ba = wc->c->bucket_alloc;
    apr_status_t rv;

    if (!f) {
        return APR_SUCCESS;
    }
    while (f) {
        ws_out_frame *next = f->next;

        APR_BRIGADE_INSERT_TAIL(loop->out, ws_out_frame_bucket(f, ba));
        wc->msgs_out++;
        f = next;
    }
    APR_BRIGADE_INSERT_TAIL(loop->out, apr_bucket_flush_create(ba));
    rv = ap_pass_brigade(wc->c->output_filters, loop->out);
    apr_brigade_cleanup(loop->out);
    return rv;
}

static apr_interval_time_t poll_timeout(ws_conn *wc, apr_time_t now)
{
    if (wc->close_deadline && wc->close_deadline > now
        && wc->close_deadline - now < WS_SYNC_STOP_CHECK) {
        return wc->close_deadline - now;
    }
    return WS_SYNC_STOP_CHECK;
}

static int server_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

static apr_status_t setup_loop(ws_conn *wc, sync_loop *loop)
{
    apr_pool_t *p = wc->r->pool;
    apr_interval_time_t unused;
    apr_status_t rv;

    loop->in = apr_brigade_create(p, wc->c->bucket_alloc);
    loop->out = apr_brigade_create(p, wc->c->bucket_alloc);
    loop->scratch = apr_palloc(p, WS_SYNC_READ_SIZE + 1);
    loop->pfd.p = p;
    rv = ap_get_pollfd_from_conn(wc->c, &loop->pfd, &unused);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    loop->pfd.reqevents = APR_POLLIN;
    loop->pfd.client_data = wc;
    rv = apr_pollset_create(&loop->pollset, 1, p, APR_POLLSET_WAKEABLE);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    return apr_pollset_add(loop->pollset, &loop->pfd);
}

static int sync_run(ws_conn *wc)
{
    sync_loop *loop = wc->engine_data;
    apr_status_t rv;

    for (;;) {
        apr_int32_t n;
        const apr_pollfd_t *ready;
        apr_time_t now;

        rv = ws_conn_read_available(wc, loop->in, loop->scratch,
                                    WS_SYNC_READ_SIZE);
        if (rv != APR_SUCCESS) {
            ws_conn_abort(wc, rv, rv == APR_EOF ? "peer closed the TCP connection"
                                                : "read failed");
        }
        rv = write_queued(wc, loop);
        if (rv != APR_SUCCESS) {
            ws_conn_abort(wc, rv, "write failed");
            break;
        }
        now = apr_time_now();
        ws_conn_tick(wc, now);
        if (ws_conn_done(wc, now, 0)) {
            break;
        }
        if (!loop->going_away && server_stopping()) {
            loop->going_away = 1;
            ws_conn_close(wc, WS_CLOSE_GOING_AWAY, "server shutting down");
            continue;
        }
        rv = apr_pollset_poll(loop->pollset, poll_timeout(wc, now), &n, &ready);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(rv)
            && !APR_STATUS_IS_EINTR(rv)) {
            ws_conn_abort(wc, rv, "poll failed");
            break;
        }
    }
    ws_conn_finish(wc);
    return DONE;
}

/* Called before on_connect, so that plugin threads can wake us at once. */
static apr_status_t sync_attach(ws_conn *wc)
{
    sync_loop *loop = apr_pcalloc(wc->r->pool, sizeof(*loop));
    apr_status_t rv = setup_loop(wc, loop);

    if (rv == APR_SUCCESS) {
        wc->engine_data = loop;
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
    NULL             /* nothing else waits on this thread */
};
