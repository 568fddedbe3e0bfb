/*
 * ws_in.c - what a connection receives: the codec's events turned into
 * plugin calls, in wire order.
 *
 * Messages are delivered whole to on_message, or, to a version 2 plugin
 * with on_fragment, as they come.  Compressed ones are inflated here; on
 * an event loop only up to a budget, the rest on a dispatch thread (with
 * on_message), so that one large message cannot hold the loop.  While a
 * message is with a dispatch thread the connection is paused: what was
 * read behind it waits, unparsed, until it is done.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"

#include "ws_conn.h"
#include "ws_mem.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* On an event loop, a message over this much, of a connection that
 * compresses, is handled on a dispatch thread: its inflation and the
 * compression of a reply would otherwise hold the loop for milliseconds
 * per megabyte against every other connection of it. */
#define WS_INLINE_MESSAGE_MAX  (256 * 1024)
/* Compressed bytes inflated per step on a loop, between looks at the
 * budget: a step can come out ~1000 times larger (deflate's best ratio),
 * so at most ~1 MiB.  Elsewhere, larger steps. */
#define WS_INFLATE_STEP        1024
#define WS_INFLATE_STEP_FREE   (64 * 1024)

static int type_of_opcode(int opcode)
{
    return opcode == WS_OP_TEXT ? MESSAGE_TYPE_TEXT : MESSAGE_TYPE_BINARY;
}

/* ---- whole messages ---- */

static int must_leave_the_loop(ws_conn *wc, size_t len)
{
    return wc->conf->handler->slow
           || ws_conf_slow_plugin(wc->conf) == WS_SLOW_PLUGIN_ALWAYS
           || (wc->deflate && len > WS_INLINE_MESSAGE_MAX);
}

static void call_on_message(ws_conn *wc, int type, uint8_t *data, size_t len)
{
    const ws_engine *engine = wc->engine;

    wc->msgs_in++;
    if (engine->dispatch && must_leave_the_loop(wc, len)
        && engine->dispatch(wc, type, data, len)) {
        return;
    }
    ws_conn_watch_begin(wc, "on_message");
    ws_conn_call_plugin(wc, type, data, len);
    ws_conn_watch_end(wc);
}

/* Inflates compressed input onto wc->inflated, stopping (0) once more
 * than budget bytes came out while input remains (budget 0: no limit);
 * 1 when the message is whole, -1 when the connection was failed.
 * *used: the compressed bytes consumed. */
static int inflate_part(ws_conn *wc, const uint8_t *in, size_t len,
                        size_t budget, size_t *used)
{
    size_t off = 0, step = budget ? WS_INFLATE_STEP : WS_INFLATE_STEP_FREE;

    /* do-while: an empty message must reach zlib too (its end). */
    do {
        size_t n = len - off < step ? len - off : step;
        ws_deflate_status st = ws_deflate_inflate(wc->deflate, in + off, n,
                                                  off + n == len,
                                                  ws_deflate_buf_sink,
                                                  &wc->inflated);

        off += n;
        if (st != WS_DEFLATE_OK) {
            ws_conn_fail(wc, ws_deflate_close_code(st),
                         st == WS_DEFLATE_TOO_BIG
                         ? "message too big once inflated"
                         : "invalid compressed data");
            return -1;
        }
        if (budget && wc->inflated.len > budget && off < len) {
            *used = off;
            return 0;
        }
    } while (off < len);
    *used = len;
    return 1;
}

/* The whole inflated message is checked; 0 when the connection was
 * failed instead. */
static int inflated_message_ok(ws_conn *wc, int opcode)
{
    static const uint8_t nul = 0;

    /* Room for the NUL of ws_conn_call_plugin. */
    if (ws_deflate_buf_sink(&wc->inflated, &nul, 1)) {
        ws_conn_fail(wc, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return 0;
    }
    wc->inflated.len--;
    if (opcode == WS_OP_TEXT
        && ws_utf8_feed(WS_UTF8_ACCEPT, wc->inflated.data, wc->inflated.len)
           != WS_UTF8_ACCEPT) {
        ws_conn_fail(wc, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text");
        return 0;
    }
    return 1;
}

/* The inflated buffer counts in the child's memory; one kept across
 * messages is small (WS_KEEP_BUFFER_MAX). */
static void release_inflated(ws_conn *wc, size_t held)
{
    if (wc->inflated.cap > WS_KEEP_BUFFER_MAX) {
        ws_deflate_buf_free(&wc->inflated);
    }
    ws_mem_add(wc, (apr_off_t)wc->inflated.cap - (apr_off_t)held);
}

static void deliver_compressed(ws_conn *wc, ws_event *ev)
{
    const ws_engine *engine = wc->engine;
    size_t held = wc->inflated.cap, used;
    int done;

    wc->inflated.len = 0;
    done = inflate_part(wc, ev->data, ev->len,
                        engine->dispatch ? WS_INLINE_MESSAGE_MAX : 0, &used);
    if (done == 0) {
        /* Large: what is left of it is inflated, and the message handled,
         * off the loop (the inflater is the dispatch thread's meanwhile:
         * nothing more is parsed until it is done). */
        int job = ev->opcode == WS_OP_TEXT ? WS_JOB_INFLATE_TEXT
                                           : WS_JOB_INFLATE_BINARY;

        wc->msgs_in++;
        if (engine->dispatch(wc, job, ev->data + used, ev->len - used)) {
            return;
        }
        wc->msgs_in--;
        done = inflate_part(wc, ev->data + used, ev->len - used, 0, &used);
    }
    if (done == 1 && inflated_message_ok(wc, ev->opcode)) {
        call_on_message(wc, type_of_opcode(ev->opcode), wc->inflated.data,
                        wc->inflated.len);
    }
    release_inflated(wc, held);
}

void ws_conn_run_job(ws_conn *wc, int job, uint8_t *data, size_t len)
{
    size_t held, used;
    int opcode;

    if (job != WS_JOB_INFLATE_TEXT && job != WS_JOB_INFLATE_BINARY) {
        ws_conn_call_plugin(wc, job, data, len);
        return;
    }
    opcode = job == WS_JOB_INFLATE_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
    held = wc->inflated.cap;
    if (inflate_part(wc, data, len, 0, &used) == 1
        && inflated_message_ok(wc, opcode)) {
        ws_conn_call_plugin(wc, type_of_opcode(opcode), wc->inflated.data,
                            wc->inflated.len);
    }
    release_inflated(wc, held);
}

/* ---- messages as they come (on_fragment) ---- */

static void call_on_fragment(ws_conn *wc, uint8_t *data, size_t len, int last)
{
    const WebSocketPlugin2 *p = ws_conn_plugin_v2(wc);
    int flags = (wc->stream_first ? WEBSOCKET_FRAGMENT_FIRST : 0)
              | (last ? WEBSOCKET_FRAGMENT_LAST : 0);

    if (last) {
        wc->msgs_in++;
    }
    wc->stream_first = 0;
    ws_conn_watch_begin(wc, "on_fragment");
    p->on_fragment(wc->plugin_private, &wc->server,
                   type_of_opcode(wc->stream_opcode), data, len, flags);
    ws_conn_watch_end(wc);
}

/* Inflated text is checked piece by piece, as the parser checks what
 * comes uncompressed; 0 when the connection was failed. */
static int stream_text_ok(ws_conn *wc, const uint8_t *data, size_t len,
                          int last)
{
    if (wc->stream_opcode != WS_OP_TEXT) {
        return 1;
    }
    wc->stream_utf8 = ws_utf8_feed(wc->stream_utf8, data, len);
    if (wc->stream_utf8 == WS_UTF8_REJECT
        || (last && wc->stream_utf8 != WS_UTF8_ACCEPT)) {
        ws_conn_fail(wc, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text");
        return 0;
    }
    return 1;
}

/* A compressed chunk, inflated step by step, each step's output a piece:
 * nothing of a large message is collected whole. */
static void stream_compressed(ws_conn *wc, ws_event *ev)
{
    size_t held = wc->inflated.cap, off = 0;

    do {
        size_t n = ev->len - off < WS_INFLATE_STEP ? ev->len - off
                                                     : WS_INFLATE_STEP;
        int last = ev->last && off + n == ev->len;
        ws_deflate_status st;

        wc->inflated.len = 0;
        st = ws_deflate_inflate(wc->deflate, ev->data + off, n, last,
                                ws_deflate_buf_sink, &wc->inflated);
        off += n;
        if (st != WS_DEFLATE_OK) {
            ws_conn_fail(wc, ws_deflate_close_code(st),
                         st == WS_DEFLATE_TOO_BIG
                         ? "message too big once inflated"
                         : "invalid compressed data");
            break;
        }
        if (!stream_text_ok(wc, wc->inflated.data, wc->inflated.len, last)) {
            break;
        }
        if ((wc->inflated.len || last) && !wc->paused) {
            call_on_fragment(wc, wc->inflated.data, wc->inflated.len, last);
        }
    } while (off < ev->len && !wc->peer_closed && !wc->paused);
    release_inflated(wc, held);
}

static void deliver_chunk(ws_conn *wc, ws_event *ev)
{
    if (__atomic_load_n(&wc->close_queued, __ATOMIC_ACQUIRE)) {
        return;
    }
    if (ev->first) {
        wc->stream_opcode = ev->opcode;
        wc->stream_first = 1;
        wc->stream_utf8 = WS_UTF8_ACCEPT;
    }
    if (ev->compressed) {
        stream_compressed(wc, ev);
    }
    else if (ev->len || ev->last) {
        /* The parser checked this text already, piece by piece. */
        call_on_fragment(wc, ev->data, ev->len, ev->last);
    }
}

/* ---- control frames and the rest ---- */

static void deliver_message(ws_conn *wc, ws_event *ev)
{
    /* Once we have sent our Close the plugin has said it is done: what
     * the peer sends until its Close arrives is dropped (RFC 6455 5.5.1).
     * Written under wc->lock by any thread; an atomic read suffices. */
    if (__atomic_load_n(&wc->close_queued, __ATOMIC_ACQUIRE)) {
        return;
    }
    if (ev->compressed) {
        deliver_compressed(wc, ev);
    }
    else {
        call_on_message(wc, type_of_opcode(ev->opcode), ev->data, ev->len);
    }
}

static void deliver_control(ws_conn *wc, ws_event *ev, int ping)
{
    const WebSocketPlugin2 *p = ws_conn_plugin_v2(wc);
    WS_OnControl cb = p ? (ping ? p->on_ping : p->on_pong) : NULL;

    if (ping) {
        ws_conn_send(wc, WS_OP_PONG, ev->data, ev->len);
    }
    else {
        wc->ping_sent = 0;           /* the peer is alive */
    }
    if (cb) {
        ws_conn_watch_begin(wc, ping ? "on_ping" : "on_pong");
        cb(wc->plugin_private, &wc->server, ev->data, ev->len);
        ws_conn_watch_end(wc);
    }
}

/* The peer's reason, escaped for the log line: it is the peer's to
 * choose (escape sequences, newlines). */
static void peer_sent_close(ws_conn *wc, ws_event *ev)
{
    char raw[WS_MAX_CONTROL_SIZE + 1], reason[WS_MAX_CONTROL_SIZE * 4 + 1];

    wc->peer_close_code = ev->close_code;
    wc->peer_reason_len = ev->len;
    memcpy(wc->peer_reason, ev->data, ev->len);
    memcpy(raw, ev->data, ev->len);
    raw[ev->len] = '\0';
    ap_escape_errorlog_item(reason, raw, sizeof(reason));
    WS_CONN_LOG(APLOG_DEBUG, 0, wc,
                  WSLOGNO(00029) "peer closed the WebSocket with %u%s%s",
                  (unsigned)ev->close_code, ev->len ? ": " : "", reason);
    wc->peer_closed = 1;
    /* Echo the code as the closing handshake expects (RFC 6455 5.5.1);
     * a no-op when our own Close went first. */
    ws_conn_close(wc, ev->close_code == WS_CLOSE_NO_STATUS ? 0 : ev->close_code,
                  NULL);
}

/* The message being assembled counts in the child's buffers. */
static void account_parser(ws_conn *wc)
{
    size_t held = ws_parser_buffered(wc->parser);

    if (held != wc->parser_held) {
        ws_mem_add(wc, (apr_off_t)held - (apr_off_t)wc->parser_held);
        wc->parser_held = held;
    }
}

size_t ws_conn_feed(ws_conn *wc, uint8_t *buf, size_t len)
{
    size_t total = len;

    wc->last_activity = ws_coarse_now();
    /* pause_input stops parsing too: nothing more reaches the plugin until
     * it resumes; the rest waits unparsed. */
    while (!wc->peer_closed && !wc->paused && !ws_conn_input_paused(wc)) {
        ws_event ev;
        size_t used = ws_parser_next(wc->parser, buf, len, &ev);

        buf += used;
        len -= used;
        if (ev.type == WS_EV_NONE) {
            break;                   /* all consumed */
        }
        switch (ev.type) {
        case WS_EV_MESSAGE:
            deliver_message(wc, &ev);
            break;
        case WS_EV_CHUNK:
            deliver_chunk(wc, &ev);
            break;
        case WS_EV_PING:
        case WS_EV_PONG:
            deliver_control(wc, &ev, ev.type == WS_EV_PING);
            break;
        case WS_EV_CLOSE:
            peer_sent_close(wc, &ev);
            break;
        case WS_EV_ERROR:
            ws_conn_fail(wc, ev.close_code, ev.reason);
            break;
        default:
            break;
        }
        if (!len) {
            break;                   /* nothing left for another call */
        }
    }
    account_parser(wc);
    return total - len;
}

/* ---- pauses ---- */

/* Input that arrived behind a message handed to a dispatch thread (or
 * read before the plugin paused the input) waits here, unparsed, so that
 * every frame is still handled in wire order. */
static apr_status_t keep_unparsed(ws_conn *wc, const uint8_t *rest, size_t len)
{
    /* Behind what already waits, should the engine have read more. */
    uint8_t *kept = realloc(wc->unparsed, wc->unparsed_len + len);

    if (!kept) {
        return APR_ENOMEM;
    }
    memcpy(kept + wc->unparsed_len, rest, len);
    wc->unparsed = kept;
    wc->unparsed_len += len;
    ws_mem_add(wc, (apr_off_t)len);
    return APR_SUCCESS;
}

apr_status_t ws_conn_feed_input(ws_conn *wc, uint8_t *scratch, size_t len)
{
    size_t used = ws_conn_feed(wc, scratch, len);

    /* Short of the end with the peer still there means a pause stopped
     * the parser: asking the pause flags again would race a plugin's
     * thread that resumes meanwhile, and drop what was read behind. */
    if (used < len && !wc->peer_closed) {
        return keep_unparsed(wc, scratch + used, len - used);
    }
    return APR_SUCCESS;
}

apr_status_t ws_conn_resume(ws_conn *wc, uint8_t *scratch, apr_size_t size)
{
    uint8_t *buf = wc->unparsed;
    size_t len = wc->unparsed_len, off = 0;
    apr_status_t rv = APR_SUCCESS;

    wc->paused = 0;
    if (!buf) {
        return APR_SUCCESS;
    }
    wc->unparsed = NULL;
    wc->unparsed_len = 0;
    ws_mem_add(wc, -(apr_off_t)len);
    /* Through the scratch buffer (the parser unmasks in place, and wants
     * a writable byte past the end), size bytes at a time; what a new
     * pause leaves waits again, in order. */
    while (off < len && rv == APR_SUCCESS && !wc->peer_closed) {
        size_t n = len - off < size ? len - off : size;

        memcpy(scratch, buf + off, n);
        off += n;
        rv = ws_conn_feed_input(wc, scratch, n);
        /* Behind what that left waiting, or behind a pause. */
        if (rv == APR_SUCCESS && off < len
            && (wc->unparsed || wc->paused || ws_conn_input_paused(wc))) {
            rv = keep_unparsed(wc, buf + off, len - off);
            break;
        }
    }
    free(buf);
    return rv;
}
