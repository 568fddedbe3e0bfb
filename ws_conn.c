/*
 * ws_conn.c - one WebSocket connection: codec events to plugin calls,
 * plugin sends to a queue of frames, and the closing handshake.
 */
#include <string.h>
#include <stdlib.h>

#include <stddef.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"
#include "util_filter.h"

#include "ws_conn.h"
#include "ws_mem.h"

APLOG_USE_MODULE(websocket);

/* Buffers above this are freed after use, so that an idle connection does
 * not keep the memory of its largest message. */
#define WS_KEEP_BUFFER_MAX  (64 * 1024)

apr_off_t ws_conf_max_message_size(const ws_dir_conf *conf)
{
    return conf->max_message_size >= 0 ? conf->max_message_size
                                       : WS_DEFAULT_MAX_MESSAGE_SIZE;
}

apr_off_t ws_conf_send_queue_limit(const ws_dir_conf *conf)
{
    return conf->send_queue_limit >= 0 ? conf->send_queue_limit
                                       : WS_DEFAULT_SEND_QUEUE_LIMIT;
}

apr_interval_time_t ws_conf_close_timeout(const ws_dir_conf *conf)
{
    return conf->close_timeout >= 0 ? conf->close_timeout
                                    : WS_DEFAULT_CLOSE_TIMEOUT;
}

apr_interval_time_t ws_conf_idle_timeout(const ws_dir_conf *conf)
{
    return conf->idle_timeout > 0 ? conf->idle_timeout : 0;
}

apr_interval_time_t ws_conf_slow_plugin(const ws_dir_conf *conf)
{
    return conf->slow_plugin >= 0 ? conf->slow_plugin : WS_DEFAULT_SLOW_PLUGIN;
}

static int conf_flag(int value, int fallback)
{
    return value >= 0 ? value : fallback;
}

/* Defaults keep an idle connection free of zlib memory: no context
 * takeover either way, so both zlib streams exist only while a message
 * is being compressed or inflated (docs/deflate-memory.md). */
void ws_conf_deflate_policy(const ws_dir_conf *conf, ws_deflate_policy *policy)
{
    ws_deflate_policy_default(policy);
    policy->enabled = conf_flag(conf->compression, 1);
    policy->level = conf_flag(conf->compression_level,
                              WS_DEFAULT_COMPRESSION_LEVEL);
    policy->server_no_context_takeover = !conf_flag(conf->server_context_takeover, 0);
    policy->client_no_context_takeover = !conf_flag(conf->client_context_takeover, 0);
    policy->server_max_window_bits = conf_flag(conf->server_window_bits, 15);
    policy->client_max_window_bits = conf_flag(conf->client_window_bits, 0);
    policy->min_size = (size_t)(conf->compression_min_size >= 0
                                ? conf->compression_min_size
                                : WS_DEFAULT_COMPRESSION_MIN);
}

/* ---- the WebSocketServer functions plugins call ---- */

static request_rec *CALLBACK server_request(const WebSocketServer *server)
{
    return server && server->state ? server->state->r : NULL;
}

static const char *CALLBACK server_header_get(const WebSocketServer *server,
                                              const char *key)
{
    if (!server || !server->state || !key) {
        return NULL;
    }
    return apr_table_get(server->state->r->headers_in, key);
}

/* Only the thread running on_connect may touch the response, and only
 * during on_connect: the 101 is sent right after it, and r->pool is not
 * for two threads. */
static int in_connect_thread(const ws_conn *wc)
{
    return wc->in_on_connect
           && apr_os_thread_equal(wc->connect_thread, apr_os_thread_current());
}

/* Headers the handshake itself decides: a plugin setting them would
 * announce what was never negotiated (RFC 6455 4.2.2, 9.1). */
static int header_is_the_handshakes(const char *key)
{
    return !strncasecmp(key, "Sec-WebSocket-", 14) || !strcasecmp(key, "Upgrade")
           || !strcasecmp(key, "Connection");
}

static void CALLBACK server_header_set(const WebSocketServer *server,
                                       const char *key, const char *value)
{
    ws_conn *wc = server ? server->state : NULL;

    if (!wc || !key || !value || !in_connect_thread(wc)) {
        return;
    }
    if (header_is_the_handshakes(key)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, wc->r,
                      "plugin %s tried to set the %s response header; the "
                      "handshake's headers are mod_websocket's (use "
                      "protocol_set for a subprotocol)",
                      wc->conf->handler->symbol, key);
        return;
    }
    apr_table_set(wc->r->headers_out, key, value);
}

static size_t CALLBACK server_protocol_count(const WebSocketServer *server)
{
    ws_conn *wc = server ? server->state : NULL;

    return wc && wc->protocols ? (size_t)wc->protocols->nelts : 0;
}

static const char *CALLBACK server_protocol_index(const WebSocketServer *server,
                                                  const size_t index)
{
    if (index >= server_protocol_count(server)) {
        return NULL;
    }
    return APR_ARRAY_IDX(server->state->protocols, index, const char *);
}

static int protocol_was_offered(ws_conn *wc, const char *protocol)
{
    int i;

    for (i = 0; wc->protocols && i < wc->protocols->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(wc->protocols, i, const char *), protocol)) {
            return 1;
        }
    }
    return 0;
}

static void CALLBACK server_protocol_set(const WebSocketServer *server,
                                         const char *protocol)
{
    ws_conn *wc = server ? server->state : NULL;

    if (!wc || !protocol || !in_connect_thread(wc)) {
        return;
    }
    /* RFC 6455 4.2.2: the server may only select what the client offered;
     * answering anything else makes every client fail the connection. */
    if (!protocol_was_offered(wc, protocol)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, wc->r,
                      "plugin %s chose subprotocol '%s' that the client did "
                      "not offer; answering without a subprotocol",
                      wc->conf->handler->symbol, protocol);
        return;
    }
    wc->chosen_protocol = apr_pstrdup(wc->r->pool, protocol);
}

static int opcode_of_message_type(int type)
{
    switch (type) {
    case MESSAGE_TYPE_TEXT:   return WS_OP_TEXT;
    case MESSAGE_TYPE_BINARY: return WS_OP_BINARY;
    case MESSAGE_TYPE_CLOSE:  return WS_OP_CLOSE;
    case MESSAGE_TYPE_PING:   return WS_OP_PING;
    case MESSAGE_TYPE_PONG:   return WS_OP_PONG;
    default:                  return -1;
    }
}

static size_t CALLBACK server_send(const WebSocketServer *server,
                                   const int type, const unsigned char *buffer,
                                   const size_t buffer_size)
{
    ws_conn *wc = server ? server->state : NULL;
    int opcode = opcode_of_message_type(type);

    if (!wc || opcode < 0 || (buffer_size > 0 && !buffer)) {
        return 0;
    }
    return ws_conn_send(wc, opcode, buffer, buffer_size);
}

static void CALLBACK server_close(const WebSocketServer *server)
{
    if (server && server->state) {
        ws_conn_close(server->state, 0, NULL);
    }
}

/* ---- creation ---- */


/* What the connection holds outside its pool: the codec's buffers and
 * frames queued but never written (a refused or aborted connection). */
static apr_status_t release_conn(void *data)
{
    ws_conn *wc = data;

    ws_mem_unregister(wc);
    ws_parser_destroy(wc->parser);
    wc->parser = NULL;
    ws_out_frames_free(wc->out_head);
    wc->out_head = wc->out_tail = NULL;
    ws_deflate_destroy(wc->deflate);
    wc->deflate = NULL;
    ws_deflate_buf_free(&wc->deflated);
    ws_deflate_buf_free(&wc->inflated);
    free(wc->unparsed);
    wc->unparsed = NULL;
    return APR_SUCCESS;
}

/* A compressed message may be a little larger than the message itself
 * (stored blocks cost 5 bytes per 64 KiB); the inflated size is checked
 * exactly while inflating. */
static uint64_t wire_limit(uint64_t max_message, int compressed)
{
    return compressed ? max_message + (max_message >> 12) + 1024 : max_message;
}

ws_conn *ws_conn_create(request_rec *r, const ws_dir_conf *conf,
                        apr_array_header_t *protocols,
                        const ws_deflate_params *deflate)
{
    /* In the connection's pool, not the request's: a plugin thread that
     * races the end of the connection then finds it marked finished
     * instead of freed memory (the async engine ends r->pool first). */
    apr_pool_t *pool = r->connection->pool;
    ws_conn *wc = apr_pcalloc(pool, sizeof(*wc));
    uint64_t max_message = (uint64_t)ws_conf_max_message_size(conf);
    ws_parser_config pc;

    wc->r = r;
    wc->c = r->connection;
    wc->s = r->server;
    wc->client_ip = apr_pstrdup(pool, r->useragent_ip ? r->useragent_ip
                                                      : r->connection->client_ip);
    wc->conf = conf;
    wc->plugin = conf->handler->plugin;
    wc->protocols = protocols;
    wc->out_limit = (apr_size_t)ws_conf_send_queue_limit(conf);
    wc->last_activity = wc->idle_anchor = apr_time_now();

    memset(&pc, 0, sizeof(pc));
    pc.role = WS_ROLE_SERVER;
    pc.max_message_size = wire_limit(max_message, deflate != NULL);
    pc.assemble = 1;
    pc.allow_rsv1 = deflate != NULL;
    pc.allow_reserved_close_codes = conf->allow_reserved_codes > 0;
    apr_pool_cleanup_register(pool, wc, release_conn, apr_pool_cleanup_null);
    wc->parser = ws_parser_create(&pc);
    if (!wc->parser) {
        return NULL;
    }
    if (deflate && !(wc->deflate = ws_deflate_create(deflate, max_message))) {
        return NULL;
    }
    if (apr_thread_mutex_create(&wc->lock, APR_THREAD_MUTEX_DEFAULT,
                                pool) != APR_SUCCESS
        || apr_thread_mutex_create(&wc->send_lock, APR_THREAD_MUTEX_DEFAULT,
                                   pool) != APR_SUCCESS) {
        return NULL;
    }

    wc->server.size = sizeof(WebSocketServer);
    wc->server.version = WEBSOCKET_SERVER_VERSION_1;
    wc->server.state = wc;
    wc->server.request = server_request;
    wc->server.header_get = server_header_get;
    wc->server.header_set = server_header_set;
    wc->server.protocol_count = server_protocol_count;
    wc->server.protocol_index = server_protocol_index;
    wc->server.protocol_set = server_protocol_set;
    wc->server.send = server_send;
    wc->server.close = server_close;
    ws_mem_register(wc);
    return wc;
}

int ws_conn_connect_plugin(ws_conn *wc)
{
    if (!wc->plugin->on_connect) {
        wc->plugin_private = NULL;
        return 1;
    }
    wc->connect_thread = apr_os_thread_current();
    wc->in_on_connect = 1;
    wc->plugin_private = wc->plugin->on_connect(&wc->server);
    wc->in_on_connect = 0;
    if (wc->plugin_private) {
        return 1;
    }
    /* A thread the plugin started may have sent already: stop accepting,
     * and take the connection off the engine's lists. */
    apr_thread_mutex_lock(wc->lock);
    wc->finished = 1;
    wc->close_queued = 1;
    apr_thread_mutex_unlock(wc->lock);
    if (wc->engine->detach) {
        wc->engine->detach(wc);
    }
    return 0;
}

/* ---- the outgoing queue ---- */

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
    f->len = hlen + len;
    f->is_close = (opcode == WS_OP_CLOSE);
    f->is_control = (opcode >= WS_OP_CLOSE);
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
        free(f);
        f = next;
    }
}

/* Control frames queued at most, whatever the data: room for hundreds of
 * pongs, and a bound on what a client that pings and never reads costs. */
#define WS_CONTROL_QUEUE_MAX  (64 * 1024)

static void append_locked(ws_conn *wc, ws_out_frame *f)
{
    if (wc->out_tail) {
        wc->out_tail->next = f;
    }
    else {
        wc->out_head = f;
    }
    wc->out_tail = f;
    wc->out_bytes += f->len;
    if (f->is_control) {
        wc->out_control_bytes += f->len;
    }
}

/* With wc->lock held.  Data counts against WebSocketSendQueueLimit:
 * what is queued plus what the engine holds, so the limit bounds all the
 * output a connection keeps.  A message as large as the limit still goes
 * to a reader that keeps up (its frame header is allowed on top when the
 * queue is empty); control frames have a small budget of their own, so a
 * pong never makes the data not fit. */
static int enqueue_locked(ws_conn *wc, ws_out_frame *f)
{
    apr_size_t data_bytes = wc->out_bytes - wc->out_control_bytes
        + __atomic_load_n(&wc->engine_bytes, __ATOMIC_RELAXED);
    apr_size_t room = wc->out_limit + (data_bytes ? 0 : WS_MAX_HEADER_SIZE);

    if (f->is_control ? wc->out_control_bytes + f->len > WS_CONTROL_QUEUE_MAX
                      : data_bytes + f->len > room) {
        return 0;
    }
    append_locked(wc, f);
    return 1;
}

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
                     "plugin %s tried to send an invalid Close payload; use "
                     "a 2-byte code (1000-1003, 1007-1014, 3000-4999) and "
                     "an optional reason", wc->conf->handler->symbol);
        return 0;
    }
    if (is_control(opcode) && len > WS_MAX_CONTROL_SIZE) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, wc->s,
                     "plugin %s tried to send a %s frame of %" APR_SIZE_T_FMT
                     " bytes (control frames carry at most 125)",
                     wc->conf->handler->symbol, ws_opcode_name(opcode), len);
        return 0;
    }
    if (opcode == WS_OP_TEXT && ws_utf8_feed(WS_UTF8_ACCEPT, data, len)
                                != WS_UTF8_ACCEPT) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, wc->s,
                     "plugin %s tried to send a text message that is not "
                     "valid UTF-8; not sent", wc->conf->handler->symbol);
        return 0;
    }
    return 1;
}

/* Queues a built frame; on refusal frees it.  Returns 1 when queued. */
static int queue_frame(ws_conn *wc, ws_out_frame *f)
{
    int queued = 0, overflow_now = 0;
    apr_size_t len = f->len;

    apr_thread_mutex_lock(wc->lock);
    if (!wc->close_queued && !wc->finished) {
        queued = enqueue_locked(wc, f);
        if (!queued && !wc->send_overflow) {
            wc->send_overflow = overflow_now = 1;
        }
        if (queued && f->is_close) {
            wc->close_queued = 1;
        }
        if (queued) {
            /* Under the lock: the engine cannot finish (and free) the
             * connection between our enqueue and this wake-up. */
            wc->engine->wake(wc);
        }
    }
    apr_thread_mutex_unlock(wc->lock);

    if (queued) {
        /* Outside the lock: passing WebSocketMemoryLimit sheds
         * connections, this one perhaps. */
        ws_mem_add(wc, (apr_off_t)len);
        return 1;
    }
    free(f);
    if (overflow_now) {
        /* A reader this slow would make us hold unbounded memory: give up
         * on it, and say so once (at info: any client can be slow). */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s,
                     "closing WebSocket from %s: send queue limit of %"
                     APR_SIZE_T_FMT " bytes exceeded (slow reader); see "
                     "WebSocketSendQueueLimit", wc->client_ip, wc->out_limit);
        ws_conn_close(wc, WS_CLOSE_POLICY, "send queue limit exceeded");
    }
    return 0;
}

/* Compression and queueing happen under one lock: with context takeover
 * the peer must inflate messages in the order they were compressed. */
static size_t send_compressed(ws_conn *wc, int opcode, const uint8_t *data,
                              size_t len)
{
    ws_out_frame *f = NULL;
    ws_deflate_status st;
    int queued = 0;

    apr_thread_mutex_lock(wc->send_lock);
    wc->deflated.len = 0;
    st = ws_deflate_compress(wc->deflate, data, len, &wc->deflated);
    if (st == WS_DEFLATE_OK) {
        f = build_frame(opcode, WS_FIN | WS_RSV1, wc->deflated.data,
                        wc->deflated.len);
        queued = f && queue_frame(wc, f);
    }
    if (wc->deflated.cap > WS_KEEP_BUFFER_MAX) {
        ws_deflate_buf_free(&wc->deflated);
    }
    apr_thread_mutex_unlock(wc->send_lock);
    if (st != WS_DEFLATE_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, wc->s,
                     "cannot compress a message for %s: %s", wc->c->client_ip,
                     ws_deflate_status_name(st));
    }
    return queued ? len : 0;
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
                     "plugin %s tried to send a message of %" APR_SIZE_T_FMT
                     " bytes to %s, more than WebSocketSendQueueLimit (%"
                     APR_SIZE_T_FMT "); not sent", wc->conf->handler->symbol,
                     len, wc->client_ip, wc->out_limit);
    }
    return 0;
}

size_t ws_conn_send(ws_conn *wc, int opcode, const uint8_t *data, size_t len)
{
    ws_out_frame *f;

    if (__atomic_load_n(&wc->shed, __ATOMIC_RELAXED)
        || !fits_the_limit(wc, opcode, len) || !sendable(wc, opcode, data, len)) {
        return 0;
    }
    if (wc->deflate && !is_control(opcode)
        && ws_deflate_should_compress(wc->deflate, len)) {
        return send_compressed(wc, opcode, data, len);
    }
    f = build_frame(opcode, WS_FIN, data, len);
    return f && queue_frame(wc, f) ? len : 0;
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
    apr_thread_mutex_lock(wc->lock);
    if (wc->close_queued || wc->finished) {
        free(f);
        f = NULL;
    }
    else {
        /* A Close must go out even when the queue is full: bypass the
         * limit rather than lose the closing handshake. */
        append_locked(wc, f);
        wc->close_queued = 1;
        wc->engine->wake(wc);
    }
    apr_thread_mutex_unlock(wc->lock);
    if (f) {
        /* f may be written and freed by now: only its size is used. */
        ws_mem_add(wc, (apr_off_t)flen);
    }
}

ws_out_frame *ws_conn_take_output(ws_conn *wc)
{
    ws_out_frame *head;

    apr_thread_mutex_lock(wc->lock);
    head = wc->out_head;
    wc->out_head = wc->out_tail = NULL;
    /* Still held, by the engine now: still counted. */
    __atomic_add_fetch(&wc->engine_bytes, wc->out_bytes, __ATOMIC_RELAXED);
    wc->out_bytes = wc->out_control_bytes = 0;
    apr_thread_mutex_unlock(wc->lock);
    return head;
}

void ws_conn_output_written(ws_conn *wc, apr_size_t len)
{
    if (len) {
        __atomic_sub_fetch(&wc->engine_bytes, len, __ATOMIC_RELAXED);
        ws_mem_add(wc, -(apr_off_t)len);
    }
}

int ws_conn_take_discard(ws_conn *wc)
{
    return __atomic_load_n(&wc->discard_output, __ATOMIC_RELAXED)
           && __atomic_exchange_n(&wc->discard_output, 0, __ATOMIC_ACQ_REL);
}

/* With wc->lock held: empties the queue; returns the bytes it held. */
static apr_size_t drop_queue_locked(ws_conn *wc, ws_out_frame **dropped)
{
    apr_size_t bytes = wc->out_bytes;

    *dropped = wc->out_head;
    wc->out_head = wc->out_tail = NULL;
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

    apr_thread_mutex_lock(wc->lock);
    if (!wc->finished && !wc->shed) {
        wc->shed = shed_now = 1;
        bytes = drop_queue_locked(wc, &dropped);
        /* What the engine holds goes too, before it takes the Close. */
        __atomic_store_n(&wc->discard_output, 1, __ATOMIC_RELEASE);
        if (close) {
            append_locked(wc, close);
            wc->close_queued = 1;
            close = NULL;
        }
        wc->engine->wake(wc);
    }
    apr_thread_mutex_unlock(wc->lock);
    free(close);
    ws_out_frames_free(dropped);
    if (shed_now) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s, "closing WebSocket "
                     "from %s with 1013: it held the most of this child's "
                     "WebSocket buffers (WebSocketMemoryLimit)", wc->client_ip);
        ws_mem_add(wc, (apr_off_t)close_len - (apr_off_t)bytes);
    }
}

/* ---- incoming events ---- */

/* apache-websocket plugins may treat a text message as a C string: the
 * byte after the message is always writable (ws_conn_feed's contract),
 * so it is set to NUL for the call and restored after. */
void ws_conn_call_plugin(ws_conn *wc, int type, uint8_t *data, size_t len)
{
    uint8_t saved = data[len];

    data[len] = '\0';
    wc->plugin->on_message(wc->plugin_private, &wc->server, type, data, len);
    data[len] = saved;
}

void ws_plugin_mark_slow(ws_plugin_ref *ref, server_rec *s, const char *why)
{
    if (ref->slow) {
        return;
    }
    ref->slow = 1;
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "plugin %s (%s) %s in "
                 "on_message; its messages now run on the dispatch threads "
                 "(WebSocketSlowPlugin)", ref->symbol, ref->path, why);
}

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
    if (engine->call_inline) {
        engine->call_inline(wc, type, data, len);
    }
    else {
        ws_conn_call_plugin(wc, type, data, len);
    }
}

static void fail_connection(ws_conn *wc, uint16_t code, const char *why)
{
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s,
                 "failing WebSocket from %s with %u: %s",
                 wc->client_ip, (unsigned)code, why);
    wc->peer_closed = 1;
    ws_conn_close(wc, code, why);
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
            fail_connection(wc, ws_deflate_close_code(st),
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
        fail_connection(wc, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return 0;
    }
    wc->inflated.len--;
    if (opcode == WS_OP_TEXT
        && ws_utf8_feed(WS_UTF8_ACCEPT, wc->inflated.data, wc->inflated.len)
           != WS_UTF8_ACCEPT) {
        fail_connection(wc, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text");
        return 0;
    }
    return 1;
}

static int type_of_opcode(int opcode)
{
    return opcode == WS_OP_TEXT ? MESSAGE_TYPE_TEXT : MESSAGE_TYPE_BINARY;
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

static void deliver_message(ws_conn *wc, ws_event *ev)
{
    /* Written under wc->lock by any thread; an atomic read suffices. */
    int closing = __atomic_load_n(&wc->close_queued, __ATOMIC_ACQUIRE);

    /* Once we have sent our Close the plugin has said it is done: what
     * the peer sends until its Close arrives is dropped (RFC 6455 5.5.1). */
    if (closing) {
        return;
    }
    if (ev->compressed) {
        deliver_compressed(wc, ev);
    }
    else {
        call_on_message(wc, type_of_opcode(ev->opcode), ev->data, ev->len);
    }
}

static void peer_sent_close(ws_conn *wc, ws_event *ev)
{
    char reason[WS_MAX_CONTROL_SIZE + 1];

    memcpy(reason, ev->data, ev->len);
    reason[ev->len] = '\0';
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, wc->r,
                  "peer closed the WebSocket with %u%s%s",
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

    wc->last_activity = apr_time_now();
    while (!wc->peer_closed && !wc->paused) {
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
        case WS_EV_PING:
            ws_conn_send(wc, WS_OP_PONG, ev.data, ev.len);
            break;
        case WS_EV_CLOSE:
            peer_sent_close(wc, &ev);
            break;
        case WS_EV_ERROR:
            fail_connection(wc, ev.close_code, ev.reason);
            break;
        default:    /* FRAME, CHUNK, PONG: nothing to do */
            break;
        }
    }
    account_parser(wc);
    return total - len;
}

/* Input that arrived behind a message handed to a dispatch thread waits
 * here, unparsed, so that every frame is still handled in wire order. */
static apr_status_t keep_unparsed(ws_conn *wc, const uint8_t *rest, size_t len)
{
    uint8_t *kept = malloc(len);

    if (!kept) {
        return APR_ENOMEM;
    }
    memcpy(kept, rest, len);
    wc->unparsed = kept;
    wc->unparsed_len = len;
    ws_mem_add(wc, (apr_off_t)len);
    return APR_SUCCESS;
}

apr_status_t ws_conn_feed_input(ws_conn *wc, uint8_t *scratch, size_t len)
{
    size_t used = ws_conn_feed(wc, scratch, len);

    if (used < len && wc->paused && !wc->peer_closed) {
        return keep_unparsed(wc, scratch + used, len - used);
    }
    return APR_SUCCESS;
}

apr_status_t ws_conn_resume(ws_conn *wc, uint8_t *scratch, apr_size_t size)
{
    size_t len = wc->unparsed_len;

    wc->paused = 0;
    if (!wc->unparsed) {
        return APR_SUCCESS;
    }
    /* It came from one read of at most size bytes. */
    memcpy(scratch, wc->unparsed, len < size ? len : size);
    free(wc->unparsed);
    wc->unparsed = NULL;
    wc->unparsed_len = 0;
    ws_mem_add(wc, -(apr_off_t)len);
    return ws_conn_feed_input(wc, scratch, len < size ? len : size);
}

/* ---- ending ---- */

int ws_conn_done(ws_conn *wc, apr_time_t now, int engine_output)
{
    int close_queued, output_pending;

    /* The common case, an open connection, needs no lock. */
    if (!__atomic_load_n(&wc->close_queued, __ATOMIC_ACQUIRE)) {
        return 0;
    }
    apr_thread_mutex_lock(wc->lock);
    close_queued = wc->close_queued;
    output_pending = engine_output || wc->out_head != NULL;
    apr_thread_mutex_unlock(wc->lock);

    if (!close_queued) {
        return 0;
    }
    /* One deadline for the whole closing handshake: our Close going out
     * and the peer's coming in.  A peer that neither reads nor answers
     * cannot hold the connection longer than WebSocketCloseTimeout. */
    if (!wc->close_deadline) {
        wc->close_deadline = now + ws_conf_close_timeout(wc->conf);
    }
    if (now >= wc->close_deadline) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, wc->r, "closing handshake "
                      "with %s timed out", wc->c->client_ip);
        return 1;
    }
    return !output_pending && wc->peer_closed;
}

static apr_time_t earliest(apr_time_t a, apr_time_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

apr_time_t ws_conn_next_deadline(const ws_conn *wc)
{
    apr_interval_time_t idle = ws_conf_idle_timeout(wc->conf);
    apr_time_t next = wc->close_deadline;

    if (idle && !wc->close_deadline) {
        next = earliest(next, wc->idle_anchor + idle);
    }
    return next;
}

/* The idle timer fires at idle_anchor + idle; activity since then only
 * moves the anchor, so that reads never touch the engine's timers. */
static void idle_timer(ws_conn *wc, apr_time_t now)
{
    apr_interval_time_t idle = ws_conf_idle_timeout(wc->conf);

    if (!idle || wc->close_deadline || now < wc->idle_anchor + idle) {
        return;
    }
    if (now - wc->last_activity < idle) {
        wc->idle_anchor = wc->last_activity;
        return;
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, wc->r, "closing WebSocket "
                  "from %s: idle for %" APR_TIME_T_FMT "s "
                  "(WebSocketIdleTimeout)", wc->c->client_ip,
                  apr_time_sec(now - wc->last_activity));
    ws_conn_close(wc, WS_CLOSE_GOING_AWAY, "idle timeout");
}

void ws_conn_timers(ws_conn *wc, apr_time_t now)
{
    idle_timer(wc, now);
    /* The closing handshake's deadline is ws_conn_done's to judge. */
}

void ws_conn_abort(ws_conn *wc, apr_status_t why, const char *what)
{
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, why, wc->r,
                  "WebSocket from %s ended without a closing handshake: %s",
                  wc->c->client_ip, what);
    wc->peer_closed = 1;
    apr_thread_mutex_lock(wc->lock);
    wc->close_queued = 1;
    apr_thread_mutex_unlock(wc->lock);
}

void ws_conn_finish(ws_conn *wc)
{
    ws_out_frame *unsent;
    apr_size_t dropped;

    apr_thread_mutex_lock(wc->lock);
    wc->finished = 1;
    wc->close_queued = 1;
    dropped = drop_queue_locked(wc, &unsent);
    apr_thread_mutex_unlock(wc->lock);
    ws_out_frames_free(unsent);
    ws_mem_add(wc, -(apr_off_t)dropped);

    if (wc->plugin->on_disconnect) {
        wc->plugin->on_disconnect(wc->plugin_private, &wc->server);
    }
    /* Any thread (a slow plugin's on_disconnect runs on a dispatch
     * thread): the connection's log, not the request's pool. */
    ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, wc->c,
                  "WebSocket closed after %" APR_UINT64_T_FMT " messages in, %"
                  APR_UINT64_T_FMT " out", wc->msgs_in, wc->msgs_out);
}
