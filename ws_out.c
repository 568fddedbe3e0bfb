/*
 * ws_out.c - what a connection sends: the frames made of plugins' messages
 * (cut at WebSocketFragmentSize, compressed when permessage-deflate is
 * on), the queue they wait in, bounded by WebSocketSendQueueLimit, and
 * what the engine takes from it.
 *
 * Any thread may send; the queue is under wc->lock, compression and
 * messages sent in pieces under wc->send_lock (taken first), so that what
 * the peer inflates comes in the order it was compressed.  A message's
 * frames are queued together, so whole messages of several threads never
 * interleave on the wire.
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

/* Control frames queued at most, whatever the data: room for hundreds of
 * pongs, and a bound on what a client that pings and never reads costs. */
#define WS_CONTROL_QUEUE_MAX  (64 * 1024)

/* ---- frames ---- */

static ws_out_frame *build_frame(int opcode, int flags, const uint8_t *payload,
                                 size_t len)
{
    uint8_t header[WS_MAX_HEADER_SIZE];
    size_t hlen = ws_frame_header(header, opcode, flags, len, NULL);
    ws_out_frame *f;

    if (len > (size_t)-1 - sizeof(*f) - hlen
        || !(f = malloc(sizeof(*f) + hlen + len))) {
        return NULL;
    }
    f->next = NULL;
    f->shared = NULL;
    f->len = hlen + len;
    f->is_close = (opcode == WS_OP_CLOSE);
    f->is_control = (opcode >= WS_OP_CLOSE);
    f->embedded = 0;
    memcpy(f->bytes, header, hlen);
    if (len) {
        memcpy(f->bytes + hlen, payload, len);
    }
    return f;
}

void ws_out_frames_free(ws_out_frame *f)
{
    while (f) {
        ws_out_frame *next = f->next;

        if (f->shared) {
            ws_shared_frame_release(f->shared);
        }
        if (f->embedded) {
            /* Its connection's: free for the next shared frame. */
            __atomic_store_n(&f->in_use, 0, __ATOMIC_RELEASE);
        }
        else {
            free(f);
        }
        f = next;
    }
}

ws_shared_frame *ws_shared_frame_create(int opcode, int flags,
                                        const uint8_t *payload, size_t len)
{
    uint8_t header[WS_MAX_HEADER_SIZE];
    size_t hlen = ws_frame_header(header, opcode, flags, len, NULL);
    ws_shared_frame *sf;

    if (len > (size_t)-1 - sizeof(*sf) - hlen
        || !(sf = malloc(sizeof(*sf) + hlen + len))) {
        return NULL;
    }
    sf->refs = 1;
    sf->spare = 0;
    sf->messages = 1;
    sf->len = hlen + len;
    sf->payload_len = len;
    memcpy(sf->bytes, header, hlen);
    if (len) {
        memcpy(sf->bytes + hlen, payload, len);
    }
    return sf;
}

ws_shared_frame *ws_shared_frame_join(ws_shared_frame *const *parts,
                                      size_t count)
{
    size_t i, len = 0, payload = 0, off = 0;
    apr_uint32_t messages = 0;
    ws_shared_frame *sf;

    for (i = 0; i < count; i++) {
        len += parts[i]->len;
        payload += parts[i]->payload_len;
        messages += parts[i]->messages;
    }
    if (!(sf = malloc(sizeof(*sf) + len))) {
        return NULL;
    }
    sf->refs = 1;
    sf->spare = 0;
    sf->messages = messages;
    sf->len = len;
    sf->payload_len = payload;
    for (i = 0; i < count; i++) {
        memcpy(sf->bytes + off, parts[i]->bytes, parts[i]->len);
        off += parts[i]->len;
    }
    return sf;
}

void ws_shared_frame_release(ws_shared_frame *sf)
{
    if (sf && __atomic_sub_fetch(&sf->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(sf);
    }
}

/* References its maker takes at once: one locked instruction for so many
 * connections. */
#define SHARED_SPARE_REFS  4096

static void shared_frame_take_ref(ws_shared_frame *sf)
{
    if (!sf->spare) {
        __atomic_add_fetch(&sf->refs, SHARED_SPARE_REFS, __ATOMIC_RELAXED);
        sf->spare = SHARED_SPARE_REFS;
    }
    sf->spare--;
}

void ws_shared_frame_drop(ws_shared_frame *sf)
{
    if (sf && __atomic_sub_fetch(&sf->refs, 1 + sf->spare,
                                 __ATOMIC_ACQ_REL) == 0) {
        free(sf);
    }
}

/* The frames of one message: the payload cut at frag bytes (0: whole),
 * the first frame with the opcode and rsv bits, the others continuations,
 * FIN on the last when fin.  *total: their bytes.  NULL: out of memory. */
static ws_out_frame *frame_pieces(int opcode, int rsv, int fin,
                                  const uint8_t *payload, size_t len,
                                  size_t frag, size_t *total)
{
    ws_out_frame *head = NULL, **tail = &head;
    size_t off = 0;

    *total = 0;
    do {
        size_t n = frag && len - off > frag ? frag : len - off;
        int last = off + n == len;
        ws_out_frame *f = build_frame(off ? WS_OP_CONTINUATION : opcode,
                                      (off ? 0 : rsv) | (last && fin ? WS_FIN : 0),
                                      payload + off, n);

        if (!f) {
            ws_out_frames_free(head);
            return NULL;
        }
        *total += f->len;
        *tail = f;
        tail = &f->next;
        off += n;
    } while (off < len);
    return head;
}

/* ---- the queue ---- */

static void append_locked(ws_conn *wc, ws_out_frame *f)
{
    while (f) {
        if (wc->out_tail) {
            wc->out_tail->next = f;
        }
        else {
            /* Atomic: ws_conn_take_output looks without the lock. */
            __atomic_store_n(&wc->out_head, f, __ATOMIC_RELAXED);
        }
        wc->out_tail = f;
        wc->out_bytes += f->len;
        if (f->is_control) {
            wc->out_control_bytes += f->len;
        }
        f = f->next;
    }
}

/* With wc->lock held: data bytes held for the peer, queued or taken. */
static apr_size_t data_held_locked(ws_conn *wc)
{
    return wc->out_bytes - wc->out_control_bytes
           + __atomic_load_n(&wc->engine_bytes, __ATOMIC_RELAXED);
}

/* With wc->lock held.  Data counts against WebSocketSendQueueLimit:
 * what is queued plus what the engine holds, so the limit bounds all the
 * output a connection keeps.  A message as large as the limit still goes
 * to a reader that keeps up (its frame headers are allowed on top when
 * the queue is empty); control frames have a small budget of their own,
 * so a pong never makes the data not fit. */
static int fits_locked(ws_conn *wc, int control, apr_size_t total,
                       apr_size_t headers)
{
    apr_size_t data = data_held_locked(wc);
    apr_size_t room = wc->out_limit + (data ? 0 : headers);

    return control ? wc->out_control_bytes + total <= WS_CONTROL_QUEUE_MAX
                   : data + total <= room;
}

#define QUEUE_PIECE  1       /* a piece of send_fragment's message */
#define QUEUE_OPENS  2       /* ... that leaves the message open */
#define QUEUE_OFFER  4       /* full: just say so (a topic's policy) */

/* Queues the frames of one message (or one Ping/Pong) whose payload is
 * payload of total bytes; on refusal frees them.  WEBSOCKET_OK when
 * queued.  wb: the engine's wake-up waits there (room is made). */
static int queue_frames_waking(ws_conn *wc, ws_out_frame *head,
                               apr_size_t total, apr_size_t payload, int how,
                               ws_wake_batch *wb)
{
    int rc = WEBSOCKET_ECLOSED, overflow_now = 0, control = head->is_control;

    pthread_mutex_lock(&wc->lock);
    if (!wc->close_queued && !wc->finished) {
        if (!control && wc->out_open_message && !(how & QUEUE_PIECE)) {
            rc = WEBSOCKET_EBUSY;
        }
        else if (!fits_locked(wc, control, total, total - payload)) {
            rc = WEBSOCKET_EFULL;
            if (!wc->send_overflow && !(how & QUEUE_OFFER)) {
                wc->send_overflow = overflow_now = 1;
            }
        }
        else {
            rc = WEBSOCKET_OK;
            if (head->is_close) {
                /* A plugin's own Close (send with MESSAGE_TYPE_CLOSE):
                 * nothing may follow it. */
                wc->close_queued = 1;
                wc->close_code_sent = head->len >= 4
                    ? ((unsigned)WS_FRAME_BYTES(head)[2] << 8)
                      | WS_FRAME_BYTES(head)[3]
                    : WS_CLOSE_NO_STATUS;
            }
            append_locked(wc, head);
            if (!control) {
                wc->out_open_message = (how & QUEUE_OPENS) != 0;
                if (data_held_locked(wc) > wc->out_limit / 4) {
                    wc->drain_armed = 1;
                }
                __atomic_store_n(&wc->last_data_out, ws_coarse_now(),
                                 __ATOMIC_RELAXED);
            }
            /* Under the lock: the engine cannot finish (and free) the
             * connection between our enqueue and this wake-up; a batch's
             * caller keeps it alive until the batch's wake-up. */
            if (wb) {
                /* A subscriber that gets a run message by message is
                 * there once. */
                if (!wb->count || wb->conns[wb->count - 1] != wc) {
                    wb->conns[wb->count++] = wc;
                }
            }
            else {
                wc->engine->wake(wc);
            }
        }
    }
    pthread_mutex_unlock(&wc->lock);

    if (rc == WEBSOCKET_OK) {
        /* Outside the lock: passing WebSocketMemoryLimit sheds
         * connections, this one perhaps. */
        ws_mem_add(wc, (apr_off_t)total);
        return rc;
    }
    ws_out_frames_free(head);
    if (overflow_now) {
        /* A reader this slow would make us hold unbounded memory: give up
         * on it, and say so once (at info: any client can be slow). */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s,
                     WSLOGNO(00034) "closing WebSocket from %s: send queue limit of %"
                     APR_SIZE_T_FMT " bytes exceeded (slow reader); see "
                     "WebSocketSendQueueLimit", wc->client_ip, wc->out_limit);
        ws_conn_close(wc, WS_CLOSE_POLICY, "send queue limit exceeded");
    }
    return rc;
}

static int queue_frames(ws_conn *wc, ws_out_frame *head, apr_size_t total,
                        apr_size_t payload, int how)
{
    return queue_frames_waking(wc, head, total, payload, how, NULL);
}

/* Room for one more connection in the batch; 0 when out of memory. */
static int wake_batch_room(ws_wake_batch *wb)
{
    if (wb->count == wb->cap) {
        size_t cap = wb->cap ? wb->cap * 2 : 256;
        ws_conn **more = realloc(wb->conns, cap * sizeof(*more));

        if (!more) {
            return 0;
        }
        wb->conns = more;
        wb->cap = cap;
    }
    return 1;
}

int ws_conn_queue_shared_batched(ws_conn *wc, ws_shared_frame *sf,
                                 ws_wake_batch *wb)
{
    ws_out_frame *f = &wc->topic_node;

    if (wb && (!wc->engine->wake_many || !wake_batch_room(wb))) {
        wb = NULL;                   /* woken at once */
    }
    /* The connection's own node unless the engine still holds it (its
     * last shared frame not yet written): then one of its own. */
    if (!__atomic_exchange_n(&f->in_use, 1, __ATOMIC_ACQ_REL)) {
        f->embedded = 1;
    }
    else if ((f = malloc(sizeof(*f)))) {
        f->embedded = 0;
    }
    else {
        return WEBSOCKET_ENOMEM;
    }
    shared_frame_take_ref(sf);
    f->next = NULL;
    f->shared = sf;
    f->len = sf->len;
    f->is_close = f->is_control = 0;
    return queue_frames_waking(wc, f, f->len, sf->payload_len, QUEUE_OFFER,
                               wb);
}

void ws_conn_wake_batch(ws_wake_batch *wb)
{
    size_t i = 0;

    /* One call per run of connections of one engine. */
    while (i < wb->count) {
        const ws_engine *engine = wb->conns[i]->engine;
        size_t j = i + 1;

        while (j < wb->count && wb->conns[j]->engine == engine) {
            j++;
        }
        engine->wake_many(wb->conns + i, j - i);
        i = j;
    }
    wb->count = 0;
}

void ws_wake_batch_free(ws_wake_batch *wb)
{
    free(wb->conns);
    wb->conns = NULL;
    wb->count = wb->cap = 0;
}

/* ---- what plugins send ---- */

static int is_control(int opcode)
{
    return opcode >= WS_OP_CLOSE;
}

static int sendable(ws_conn *wc, int opcode, const uint8_t *data, size_t len)
{
    if (opcode == WS_OP_CLOSE
        && (len == 1 || (len >= 2 && !ws_close_code_valid(
                              ((unsigned)data[0] << 8) | data[1], 0)))) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, wc->s,
                     WSLOGNO(00035) "plugin %s tried to send an invalid Close payload; use "
                     "a 2-byte code (1000-1003, 1007-1014, 3000-4999) and "
                     "an optional reason", wc->conf->handler->symbol);
        return 0;
    }
    if (is_control(opcode) && len > WS_MAX_CONTROL_SIZE) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, wc->s,
                     WSLOGNO(00036) "plugin %s tried to send a %s frame of %" APR_SIZE_T_FMT
                     " bytes (control frames carry at most 125)",
                     wc->conf->handler->symbol, ws_opcode_name(opcode), len);
        return 0;
    }
    if (opcode == WS_OP_TEXT && ws_utf8_feed(WS_UTF8_ACCEPT, data, len)
                                != WS_UTF8_ACCEPT) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, wc->s,
                     WSLOGNO(00037) "plugin %s tried to send a text message that is not "
                     "valid UTF-8; not sent", wc->conf->handler->symbol);
        return 0;
    }
    return 1;
}

/* A message larger than WebSocketSendQueueLimit could never be queued:
 * refused before it is copied or compressed. */
static int fits_the_limit(ws_conn *wc, int opcode, size_t len)
{
    if (is_control(opcode) || len <= wc->out_limit) {
        return 1;
    }
    if (!__atomic_exchange_n(&wc->oversize_logged, 1, __ATOMIC_RELAXED)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, wc->s,
                     WSLOGNO(00038) "plugin %s tried to send a message of %" APR_SIZE_T_FMT
                     " bytes to %s, more than WebSocketSendQueueLimit (%"
                     APR_SIZE_T_FMT "); not sent", wc->conf->handler->symbol,
                     len, wc->client_ip, wc->out_limit);
    }
    return 0;
}

static void compression_failed(ws_conn *wc, ws_deflate_status st)
{
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, wc->s,
                 WSLOGNO(00039) "cannot compress a message for %s: %s", wc->client_ip,
                 ws_deflate_status_name(st));
}

/* The compressor's buffer is kept between messages only when small. */
static void trim_deflated(ws_conn *wc)
{
    if (wc->deflated.cap > WS_KEEP_BUFFER_MAX) {
        ws_deflate_buf_free(&wc->deflated);
    }
}

/* Compression and queueing happen under one lock: with context takeover
 * the peer must inflate messages in the order they were compressed. */
static int send_compressed(ws_conn *wc, int opcode, const uint8_t *data,
                           size_t len, int how)
{
    ws_deflate_status st;
    ws_out_frame *frames = NULL;
    apr_size_t total = 0;
    int rc = WEBSOCKET_ENOMEM;

    pthread_mutex_lock(&wc->send_lock);
    if (wc->out_open_message) {
        rc = WEBSOCKET_EBUSY;            /* the deflater is the piece's */
    }
    else {
        wc->deflated.len = 0;
        st = ws_deflate_compress(wc->deflate, data, len, &wc->deflated);
        if (st == WS_DEFLATE_OK) {
            frames = frame_pieces(opcode, WS_RSV1, 1, wc->deflated.data,
                                  wc->deflated.len, wc->frag_size, &total);
            rc = frames ? queue_frames(wc, frames, total, wc->deflated.len, how)
                        : WEBSOCKET_ENOMEM;
        }
        else {
            compression_failed(wc, st);
        }
        trim_deflated(wc);
    }
    pthread_mutex_unlock(&wc->send_lock);
    return rc;
}

static int send_message(ws_conn *wc, int opcode, const uint8_t *data,
                        size_t len, int how)
{
    ws_out_frame *frames;
    apr_size_t total;

    if (__atomic_load_n(&wc->shed, __ATOMIC_RELAXED)) {
        return WEBSOCKET_ECLOSED;
    }
    if (!fits_the_limit(wc, opcode, len)) {
        return WEBSOCKET_ETOOBIG;
    }
    if (!sendable(wc, opcode, data, len)) {
        return WEBSOCKET_EINVAL;
    }
    if (wc->deflate && !is_control(opcode)
        && ws_deflate_should_compress(wc->deflate, len)) {
        return send_compressed(wc, opcode, data, len, how);
    }
    frames = frame_pieces(opcode, 0, 1, data, len,
                          is_control(opcode) ? 0 : wc->frag_size, &total);
    return frames ? queue_frames(wc, frames, total, len, how)
                  : WEBSOCKET_ENOMEM;
}

int ws_conn_send_message(ws_conn *wc, int opcode, const uint8_t *data,
                         size_t len)
{
    return send_message(wc, opcode, data, len, 0);
}

int ws_conn_offer_message(ws_conn *wc, int opcode, const uint8_t *data,
                          size_t len)
{
    return send_message(wc, opcode, data, len, QUEUE_OFFER);
}

size_t ws_conn_send(ws_conn *wc, int opcode, const uint8_t *data, size_t len)
{
    return ws_conn_send_message(wc, opcode, data, len) == WEBSOCKET_OK ? len : 0;
}

/* A piece of a message sent with send_fragment: its first piece chooses
 * whether the message is compressed (when the connection compresses,
 * always: its size is unknown); the text is checked across pieces. */
int ws_conn_send_piece(ws_conn *wc, int opcode, const uint8_t *data,
                       size_t len, int final)
{
    ws_out_frame *frames = NULL;
    apr_size_t total = 0;
    int rc = WEBSOCKET_ENOMEM, first, rsv = 0;
    ws_utf8_state utf8;

    if (__atomic_load_n(&wc->shed, __ATOMIC_RELAXED)) {
        return WEBSOCKET_ECLOSED;
    }
    if ((opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) || len > wc->out_limit) {
        return len > wc->out_limit ? WEBSOCKET_ETOOBIG : WEBSOCKET_EINVAL;
    }
    pthread_mutex_lock(&wc->send_lock);
    first = !wc->out_open_message;
    if (!first && opcode != wc->out_piece_opcode) {
        pthread_mutex_unlock(&wc->send_lock);
        return WEBSOCKET_EINVAL;
    }
    utf8 = first ? WS_UTF8_ACCEPT : wc->out_piece_utf8;
    if (opcode == WS_OP_TEXT) {
        utf8 = ws_utf8_feed(utf8, data, len);
        if (utf8 == WS_UTF8_REJECT || (final && utf8 != WS_UTF8_ACCEPT)) {
            pthread_mutex_unlock(&wc->send_lock);
            return WEBSOCKET_EINVAL;
        }
    }
    if (wc->deflate) {
        ws_deflate_status st;

        wc->deflated.len = 0;
        st = ws_deflate_compress_chunk(wc->deflate, data, len, final,
                                       &wc->deflated);
        if (st != WS_DEFLATE_OK) {
            compression_failed(wc, st);
            pthread_mutex_unlock(&wc->send_lock);
            return WEBSOCKET_ENOMEM;
        }
        data = wc->deflated.data;
        len = wc->deflated.len;
        rsv = WS_RSV1;
    }
    frames = build_frame(first ? opcode : WS_OP_CONTINUATION,
                         (first ? rsv : 0) | (final ? WS_FIN : 0), data, len);
    if (frames) {
        total = frames->len;
        rc = queue_frames(wc, frames, total, len,
                          QUEUE_PIECE | (final ? 0 : QUEUE_OPENS));
    }
    if (rc == WEBSOCKET_OK) {
        wc->out_piece_opcode = opcode;
        wc->out_piece_utf8 = utf8;
    }
    if (wc->deflate) {
        trim_deflated(wc);
    }
    pthread_mutex_unlock(&wc->send_lock);
    return rc;
}

void ws_conn_close(ws_conn *wc, uint16_t code, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL_SIZE];
    size_t plen = ws_close_payload(payload, code, reason,
                                   reason ? strlen(reason) : 0);
    ws_out_frame *f = build_frame(WS_OP_CLOSE, WS_FIN, payload, plen);
    apr_size_t flen;

    if (!f) {
        return;
    }
    flen = f->len;
    pthread_mutex_lock(&wc->lock);
    if (wc->close_queued || wc->finished) {
        free(f);
        f = NULL;
    }
    else {
        /* A Close must go out even when the queue is full: bypass the
         * limit rather than lose the closing handshake. */
        append_locked(wc, f);
        wc->close_queued = 1;
        wc->close_code_sent = code ? code : WS_CLOSE_NO_STATUS;
        wc->engine->wake(wc);
    }
    pthread_mutex_unlock(&wc->lock);
    if (f) {
        /* f may be written and freed by now: only its size is used. */
        ws_mem_add(wc, (apr_off_t)flen);
    }
}

/* ---- what the engine takes ---- */

/* engine_bytes has one writer, the engine's thread (here and below):
 * a plain store, no locked instruction; senders read it under wc->lock. */
static void add_engine_bytes(ws_conn *wc, apr_size_t len, int sign)
{
    apr_size_t held = __atomic_load_n(&wc->engine_bytes, __ATOMIC_RELAXED);

    __atomic_store_n(&wc->engine_bytes, sign > 0 ? held + len : held - len,
                     __ATOMIC_RELAXED);
}

ws_out_frame *ws_conn_take_output(ws_conn *wc)
{
    ws_out_frame *head;

    /* Nothing queued: no lock.  A sender that appends after this look
     * wakes the engine, which looks again. */
    if (!__atomic_load_n(&wc->out_head, __ATOMIC_ACQUIRE)) {
        return NULL;
    }
    pthread_mutex_lock(&wc->lock);
    head = wc->out_head;
    __atomic_store_n(&wc->out_head, NULL, __ATOMIC_RELAXED);
    wc->out_tail = NULL;
    /* Still held, by the engine now: still counted. */
    add_engine_bytes(wc, wc->out_bytes, 1);
    wc->out_bytes = wc->out_control_bytes = 0;
    pthread_mutex_unlock(&wc->lock);
    return head;
}

void ws_conn_output_written(ws_conn *wc, apr_size_t len)
{
    if (len) {
        add_engine_bytes(wc, len, -1);
        ws_mem_add(wc, -(apr_off_t)len);
    }
}

int ws_conn_take_drain(ws_conn *wc)
{
    int drained = 0;

    if (!__atomic_load_n(&wc->drain_armed, __ATOMIC_RELAXED)) {
        return 0;
    }
    pthread_mutex_lock(&wc->lock);
    if (wc->drain_armed && !wc->close_queued
        && data_held_locked(wc) <= wc->out_limit / 4) {
        wc->drain_armed = 0;
        drained = 1;
    }
    pthread_mutex_unlock(&wc->lock);
    return drained;
}

int ws_conn_take_discard(ws_conn *wc)
{
    return __atomic_load_n(&wc->discard_output, __ATOMIC_RELAXED)
           && __atomic_exchange_n(&wc->discard_output, 0, __ATOMIC_ACQ_REL);
}

apr_size_t ws_conn_queued(ws_conn *wc)
{
    apr_size_t held;

    pthread_mutex_lock(&wc->lock);
    held = wc->out_bytes + __atomic_load_n(&wc->engine_bytes, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&wc->lock);
    return held;
}

/* With wc->lock held: empties the queue; returns the bytes it held. */
apr_size_t ws_conn_drop_queue_locked(ws_conn *wc, ws_out_frame **dropped)
{
    apr_size_t bytes = wc->out_bytes;

    *dropped = wc->out_head;
    __atomic_store_n(&wc->out_head, NULL, __ATOMIC_RELAXED);
    wc->out_tail = NULL;
    wc->out_bytes = wc->out_control_bytes = 0;
    return bytes;
}

void ws_conn_shed(ws_conn *wc)
{
    uint8_t payload[WS_MAX_CONTROL_SIZE];
    size_t plen = ws_close_payload(payload, WS_CLOSE_TRY_AGAIN_LATER,
                                   "server memory limit", 19);
    ws_out_frame *close = build_frame(WS_OP_CLOSE, WS_FIN, payload, plen);
    ws_out_frame *dropped = NULL;
    apr_size_t bytes = 0, close_len = close ? close->len : 0;
    int shed_now = 0;

    pthread_mutex_lock(&wc->lock);
    if (!wc->finished && !wc->shed) {
        wc->shed = shed_now = 1;
        bytes = ws_conn_drop_queue_locked(wc, &dropped);
        /* What the engine holds goes too, before it takes the Close. */
        __atomic_store_n(&wc->discard_output, 1, __ATOMIC_RELEASE);
        if (close) {
            append_locked(wc, close);
            wc->close_queued = 1;
            wc->close_code_sent = WS_CLOSE_TRY_AGAIN_LATER;
            close = NULL;
        }
        wc->engine->wake(wc);
    }
    pthread_mutex_unlock(&wc->lock);
    free(close);
    ws_out_frames_free(dropped);
    if (shed_now) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s, WSLOGNO(00040) "closing WebSocket "
                     "from %s with 1013: it held the most of this child's "
                     "WebSocket buffers (WebSocketMemoryLimit)", wc->client_ip);
        ws_mem_add(wc, (apr_off_t)close_len - (apr_off_t)bytes);
    }
}
