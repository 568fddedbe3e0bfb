/*
 * ws_api.c - the WebSocketServer functions plugins call (websocket_plugin.h
 * says which are valid where), versions 1 and 2.
 *
 * Every function checks its server: plugins written for apache-websocket
 * pass whatever they kept, and a call racing the end of a connection must
 * be refused, not crash.
 */
#include <stddef.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"

#include "ws_conn.h"
#include "ws_detach.h"
#include "ws_topic.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* The connection of a server, or NULL. */
static ws_conn *conn_of(const WebSocketServer *server)
{
    return server ? server->state : NULL;
}

/* ---- version 1 ---- */

static request_rec *CALLBACK server_request(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? ws_detach_request(wc) : NULL;
}

static const char *CALLBACK server_header_get(const WebSocketServer *server,
                                              const char *key)
{
    if (!server || !server->state || !key) {
        return NULL;
    }
    /* A copy: the value outlives the request's pool, as the connection
     * may (ws_detach.c). */
    return ws_table_get(server->state->headers_in, key);
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
                      WSLOGNO(00010) "plugin %s tried to set the %s response header; the "
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
                      WSLOGNO(00011) "plugin %s chose subprotocol '%s' that the client did "
                      "not offer; answering without a subprotocol",
                      wc->conf->handler->symbol, protocol);
        return;
    }
    wc->chosen_protocol = ws_conn_strdup(wc, protocol);
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
    ws_conn *wc = conn_of(server);
    int opcode = opcode_of_message_type(type);

    if (!wc || opcode < 0 || (buffer_size > 0 && !buffer)) {
        return 0;
    }
    return ws_conn_send(wc, opcode, buffer, buffer_size);
}

static void CALLBACK server_close(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    if (wc) {
        ws_conn_close(wc, 0, NULL);
    }
}

/* ---- version 2 ---- */

static int data_opcode(int type)
{
    return type == MESSAGE_TYPE_TEXT ? WS_OP_TEXT
         : type == MESSAGE_TYPE_BINARY ? WS_OP_BINARY : -1;
}

static int CALLBACK server_send_fragment(const WebSocketServer *server,
                                         int type, const unsigned char *buffer,
                                         size_t buffer_size, int final)
{
    ws_conn *wc = conn_of(server);
    int opcode = data_opcode(type);

    if (!wc || opcode < 0 || (buffer_size > 0 && !buffer)) {
        return WEBSOCKET_EINVAL;
    }
    return ws_conn_send_piece(wc, opcode, buffer, buffer_size, final != 0);
}

/* A code a server may send (RFC 6455 7.4: not 1004-1006, 1015). */
static int sendable_close_code(unsigned int code)
{
    return code <= 0xffff && ws_close_code_valid(code, 0);
}

static int CALLBACK server_close_with(const WebSocketServer *server,
                                      unsigned int code, const char *reason)
{
    ws_conn *wc = conn_of(server);
    size_t len = reason ? strlen(reason) : 0;

    if (!wc || !sendable_close_code(code)
        || (len && ws_utf8_feed(WS_UTF8_ACCEPT, (const uint8_t *)reason, len)
                   != WS_UTF8_ACCEPT)) {
        return WEBSOCKET_EINVAL;
    }
    if (wc->close_queued || wc->finished) {
        return WEBSOCKET_ECLOSED;
    }
    ws_conn_close(wc, (uint16_t)code, reason);
    return WEBSOCKET_OK;
}

static int CALLBACK server_ping(const WebSocketServer *server,
                                const unsigned char *payload, size_t size)
{
    ws_conn *wc = conn_of(server);

    if (!wc || size > WS_MAX_CONTROL_SIZE || (size && !payload)) {
        return WEBSOCKET_EINVAL;
    }
    return ws_conn_send_message(wc, WS_OP_PING, payload, size);
}

static size_t CALLBACK server_queued(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? ws_conn_queued(wc) : 0;
}

static const char *CALLBACK server_client_ip(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->client_ip : NULL;
}

static const char *CALLBACK server_user(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->user : NULL;
}

static const char *CALLBACK server_subprotocol(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->chosen_protocol : NULL;
}

static const char *CALLBACK server_extensions(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->extensions : NULL;
}

static const char *CALLBACK server_query(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->query : NULL;
}

static const char *CALLBACK server_path_info(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->path_info : NULL;
}

static const char *CALLBACK server_param(const WebSocketServer *server,
                                         const char *name)
{
    ws_conn *wc = conn_of(server);

    if (!wc || !name || !wc->params) {
        return NULL;
    }
    return ws_table_get(wc->params, name);
}

static void *CALLBACK server_user_data(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? __atomic_load_n(&wc->user_data, __ATOMIC_ACQUIRE) : NULL;
}

static void CALLBACK server_set_user_data(const WebSocketServer *server,
                                          void *data)
{
    ws_conn *wc = conn_of(server);

    if (wc) {
        __atomic_store_n(&wc->user_data, data, __ATOMIC_RELEASE);
    }
}

static void CALLBACK server_pause_input(const WebSocketServer *server,
                                        int paused)
{
    ws_conn *wc = conn_of(server);

    if (wc) {
        ws_conn_pause_input(wc, paused != 0);
    }
}

static int CALLBACK server_subscribe(const WebSocketServer *server,
                                     const char *topic, int flags,
                                     const char *resume_after)
{
    ws_conn *wc = conn_of(server);

    return wc && topic ? ws_topic_subscribe(wc, topic, strlen(topic), flags,
                                            resume_after)
                       : WEBSOCKET_EINVAL;
}

static int CALLBACK server_unsubscribe(const WebSocketServer *server,
                                       const char *topic)
{
    ws_conn *wc = conn_of(server);

    return wc && topic ? ws_topic_unsubscribe(wc, topic, strlen(topic))
                       : WEBSOCKET_EINVAL;
}

static long CALLBACK server_publish(const WebSocketServer *server,
                                    const char *topic, int type,
                                    const unsigned char *buffer,
                                    size_t buffer_size, int flags)
{
    ws_conn *wc = conn_of(server);
    int opcode = data_opcode(type);

    if (!wc || !topic || opcode < 0 || (buffer_size > 0 && !buffer)) {
        return WEBSOCKET_EINVAL;
    }
    return ws_topic_publish(topic, strlen(topic), opcode, buffer, buffer_size,
                            (flags & WEBSOCKET_PUBLISH_EXCLUDE_SELF) ? wc : NULL);
}

static int CALLBACK server_refuse_with(const WebSocketServer *server,
                                       int status)
{
    ws_conn *wc = conn_of(server);

    if (!wc || !in_connect_thread(wc) || status < 400 || status > 599) {
        return WEBSOCKET_EINVAL;
    }
    wc->refuse_status = status;
    return WEBSOCKET_OK;
}

static size_t CALLBACK server_queue_limit(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->out_limit : 0;
}

static WebSocketPlugin *CALLBACK server_plugin(const WebSocketServer *server)
{
    ws_conn *wc = conn_of(server);

    return wc ? wc->plugin : NULL;
}

void ws_api_init(ws_conn *wc)
{
    WebSocketServer *s = &wc->server;

    s->size = sizeof(WebSocketServer);
    s->version = WEBSOCKET_SERVER_VERSION_2;
    s->state = wc;
    s->request = server_request;
    s->header_get = server_header_get;
    s->header_set = server_header_set;
    s->protocol_count = server_protocol_count;
    s->protocol_index = server_protocol_index;
    s->protocol_set = server_protocol_set;
    s->send = server_send;
    s->close = server_close;
    s->send_fragment = server_send_fragment;
    s->close_with = server_close_with;
    s->ping = server_ping;
    s->queued = server_queued;
    s->client_ip = server_client_ip;
    s->user = server_user;
    s->subprotocol = server_subprotocol;
    s->extensions = server_extensions;
    s->query = server_query;
    s->path_info = server_path_info;
    s->param = server_param;
    s->user_data = server_user_data;
    s->set_user_data = server_set_user_data;
    s->pause_input = server_pause_input;
    s->subscribe = server_subscribe;
    s->unsubscribe = server_unsubscribe;
    s->publish = server_publish;
    s->refuse_with = server_refuse_with;
    s->queue_limit = server_queue_limit;
    s->plugin = server_plugin;
}
