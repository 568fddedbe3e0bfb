/*
 * ws_async_close.c - ending a WebSocket that lives on an event loop.
 *
 * In order: the plugin's on_disconnect (watched like any plugin call, or
 * on a dispatch thread for a slow plugin); the request's end, which
 * writes the access log line and frees r->pool; Apache's lingering close,
 * read without blocking; and finally the connection's pool, whose cleanup
 * is how the MPM counts the connection gone.
 *
 * That last step waits for proof that the MPM's worker is done with the
 * connection.  The event MPM runs the suspend_connection hook (where we
 * took the connection) and then still writes two fields of it
 * (event.c notify_suspend: c->sbh and cs->suspended) before the worker
 * returns; httpd 2.4 has no call that resumes or releases a suspended
 * connection.  What it does have: a worker writes its own status in the
 * scoreboard only outside process_socket(), first thing when it comes
 * back for more work.  So the hook notes the worker's scoreboard entry
 * and status, and the pool is freed once that status differs: a changed
 * status proves the worker has left.  (It can only err on the safe side:
 * a worker that comes back to the very status it had makes us wait for
 * its next change.)
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_request.h"
#include "scoreboard.h"

#include "ws_async_int.h"
#include "ws_blocks.h"

APLOG_USE_MODULE(websocket);

/* Apache's lingering close: read what the client still sends for at most
 * this long after our FIN, so that our last bytes are not lost to a RST. */
#define LINGER_TIME        apr_time_from_sec(2)
/* Only when the MPM gave the connection no scoreboard entry (never seen
 * with the event MPM): the time its worker is given instead of proof. */
#define HANDOVER_FALLBACK  apr_time_from_sec(1)

/* The suspend_connection hook, on the worker, before it lets go. */
void ws_async_note_handover(async_conn *ac)
{
    conn_rec *c = ac->c;

    ac->worker = ap_get_scoreboard_worker(c->sbh);
    ac->worker_status = ac->worker
        ? __atomic_load_n(&ac->worker->status, __ATOMIC_ACQUIRE) : -1;
    ac->handed_over = apr_time_now();
    /* The worker clears it too, right after the hooks.  Until it does,
     * the end of the request on the loop (the access log's EOR bucket)
     * would write the worker's status through it, and fool the proof
     * above. */
    c->sbh = NULL;
}

int ws_async_worker_has_left(async_conn *ac, apr_time_t now)
{
    if (!ac->worker) {
        return now >= ac->handed_over + HANDOVER_FALLBACK;
    }
    return __atomic_load_n(&ac->worker->status, __ATOMIC_ACQUIRE)
           != ac->worker_status;
}

static void bury(async_conn *ac)
{
    ws_loop *loop = ac->loop;

    ws_loop_poll_events(ac, 0);
    ws_timer_cancel(&loop->timers, &ac->timer);
    ac->phase = AC_DEAD;
    APR_RING_INSERT_TAIL(&loop->graveyard, ac, async_conn, link);
}

void ws_async_destroy_dead(ws_loop *loop)
{
    async_conn *ac, *next;
    apr_time_t now = 0;

    for (ac = APR_RING_FIRST(&loop->graveyard);
         ac != APR_RING_SENTINEL(&loop->graveyard, async_conn, link); ac = next) {
        next = APR_RING_NEXT(ac, link);
        if (!ac->c) {
            /* Detached: the worker had left before.  Its ws_conn goes
             * with it, as c->pool's cleanup would have taken it (the io
             * still knows it: ac->wc was cleared at the finish). */
            APR_RING_REMOVE(ac, link);
            close(ac->fd);
            ws_conn_release(ac->io.wc);
            free(ac);
            continue;
        }
        if (!ac->worker && !now) {
            now = apr_time_now();
        }
        if (ws_async_worker_has_left(ac, now)) {
            APR_RING_REMOVE(ac, link);
            ws_blocks_destroy_pool(ac->c->pool);
        }
    }
}

/* A slow plugin's on_disconnect goes where its messages go: the
 * connection stays busy until a dispatch thread has run it. */
static int dispatch_disconnect(async_conn *ac)
{
    ws_conn *wc = ac->wc;

    if (ac->disconnect_dispatched) {
        return 1;
    }
    if (!wc->plugin->on_disconnect || !wc->conf->handler->slow
        || !ws_dispatch_push(&ac->dispatch, WS_DISPATCH_DISCONNECT, NULL, 0)) {
        return 0;
    }
    ac->disconnect_dispatched = 1;
    ws_loop_poll_events(ac, 0);
    return 1;
}

/* 1 when on_disconnect has run (0: it runs elsewhere, or this thread was
 * replaced during it). */
static int tell_plugin(async_conn *ac)
{
    ws_loop *loop = ac->loop;

    if (ac->wc->finished) {
        return 1;
    }
    if (dispatch_disconnect(ac)) {
        return 0;
    }
    ws_loop_call_begin(loop, ac, "on_disconnect");
    ws_conn_finish(ac->wc);
    return ws_loop_call_end(loop);
}

/* Nothing more is flushed to it: no lingering close either. */
void ws_async_mark_aborted(async_conn *ac)
{
    ac->aborted = 1;
    if (ac->c) {
        ac->c->aborted = 1;
    }
}

/* After the peer's Close only its FIN may come: with nothing unread,
 * closing now cannot turn into a reset that loses our last bytes, and
 * lingering would only wait for that FIN (a peer that sends more than
 * it promised is lingered on as before).  Only on a plain socket (direct
 * I/O): over TLS the peer still answers our close_notify. */
static int peer_is_done(async_conn *ac, const ws_conn *wc)
{
    return wc->peer_close_code && ac->io.direct
           && ws_io_peek_peer(&ac->io) != WS_IO_PEER_DATA_WAITS;
}

/* The request's end (the access log line) and the start of Apache's
 * lingering close; 1 when the connection is to be closed at once. */
static int end_attached(async_conn *ac, ws_conn *wc)
{
    conn_rec *c = ac->c;

    /* Writes the access log line (EOR bucket) and frees r->pool, whose
     * blocks wait for the connection's pool to go to the cache. */
    ws_stats_log_notes(wc, wc->r);
    ws_blocks_hold(c->pool);
    ap_process_request_after_handler(wc->r);
    /* That set a state for the MPM's next step; the connection is still
     * ours, and the MPM counts it as suspended until its pool goes. */
    c->cs->state = CONN_STATE_SUSPENDED;

    /* The socket is non-blocking since adoption: mod_ssl's close_notify
     * and the flush here cannot stall the loop. */
    return ap_start_lingering_close(c);
}

void ws_async_finish(async_conn *ac, apr_time_t now)
{
    ws_loop *loop = ac->loop;
    ws_conn *wc = ac->wc;
    int close_now;

    if (!tell_plugin(ac)) {
        return;
    }
    ws_loop_take_off_dirty(ac);
    ws_loop_forget(ac);
    APR_RING_REMOVE(ac, link);
    if (ws_io_output_pending(&ac->io)) {
        /* A peer that stopped reading: flushing would only wait. */
        ws_async_mark_aborted(ac);
    }
    ws_io_discard(&ac->io, 0);
    ac->wc = NULL;

    if (ac->c) {
        close_now = end_attached(ac, wc);
    }
    else {
        close_now = ws_detach_close(ac, wc);
    }
    if (close_now || peer_is_done(ac, wc)) {
        bury(ac);
        return;
    }
    ac->phase = AC_LINGER;
    ac->linger_until = now + LINGER_TIME;
    APR_RING_INSERT_TAIL(&loop->conns, ac, async_conn, link);
    if (ws_loop_poll_events(ac, APR_POLLIN) != APR_SUCCESS) {
        APR_RING_REMOVE(ac, link);
        bury(ac);
        return;
    }
    ws_loop_schedule(ac, ac->linger_until);
}

/* Reads and drops what the client sends after our FIN. */
void ws_async_linger(async_conn *ac, apr_time_t now)
{
    for (;;) {
        ssize_t n = recv(ac->fd, ac->loop->scratch, LOOP_READ_SIZE,
                         MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
            && now < ac->linger_until) {
            return;
        }
        if (n <= 0 || now >= ac->linger_until) {
            APR_RING_REMOVE(ac, link);
            bury(ac);
            return;
        }
    }
}
