/*
 * lateprobe.c - an API version 0 plugin that asks for the request late:
 * on_connect reads headers only (header_get), unless the handshake sends
 * "X-Mode: attach", when it also calls request() (the connection then
 * stays attached to Apache's pools: ws_detach.c).  Text "info" answers
 * what request() and header_get give now, as JSON; anything else is
 * echoed.  on_disconnect logs what request() gives then.
 */
#include "httpd.h"
#include "websocket_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_tables.h"
#include "test_log.h"

typedef struct {
    const WebSocketServer *server;
} late_t;

static void json_str(char **at, char *end, const char *key, const char *v,
                     int last)
{
    int n;

    if (v == NULL) {
        n = snprintf(*at, (size_t)(end - *at), "\"%s\":null%s", key,
                     last ? "" : ",");
    }
    else {
        n = snprintf(*at, (size_t)(end - *at), "\"%s\":\"%s\"%s", key, v,
                     last ? "" : ",");
    }
    if (n > 0 && *at + n < end)
        *at += n;
}

static size_t send_info(const WebSocketServer *server)
{
    request_rec *r = server->request(server);
    char out[2048], *at = out, *end = out + sizeof(out);

    *at++ = '{';
    json_str(&at, end, "uri", r ? r->uri : NULL, 0);
    json_str(&at, end, "args", r ? r->args : NULL, 0);
    json_str(&at, end, "method", r ? r->method : NULL, 0);
    json_str(&at, end, "protocol", r ? r->protocol : NULL, 0);
    json_str(&at, end, "the_request", r ? r->the_request : NULL, 0);
    json_str(&at, end, "user", r ? r->user : NULL, 0);
    json_str(&at, end, "useragent_ip", r ? r->useragent_ip : NULL, 0);
    json_str(&at, end, "client_ip", r ? r->connection->client_ip : NULL, 0);
    json_str(&at, end, "hostname", r ? r->hostname : NULL, 0);
    json_str(&at, end, "r_x_info",
             r ? apr_table_get(r->headers_in, "X-Info") : NULL, 0);
    json_str(&at, end, "r_user_agent",
             r ? apr_table_get(r->headers_in, "User-Agent") : NULL, 0);
    json_str(&at, end, "x_info", server->header_get(server, "X-Info"), 0);
    json_str(&at, end, "x_info_lower", server->header_get(server, "x-info"),
             1);
    if (at < end - 1)
        *at++ = '}';
    return server->send(server, MESSAGE_TYPE_TEXT, (unsigned char *)out,
                        (size_t)(at - out));
}

static void *CALLBACK late_on_connect(const WebSocketServer *server)
{
    const char *mode = server->header_get(server, "X-Mode");
    late_t *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    l->server = server;
    if (mode != NULL && strcmp(mode, "attach") == 0)
        (void)server->request(server);
    return l;
}

static size_t CALLBACK late_on_message(void *priv,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t size)
{
    (void)priv;
    if (type == MESSAGE_TYPE_TEXT && size == 4 && memcmp(buffer, "info", 4) == 0)
        return send_info(server);
    return server->send(server, type, buffer, size);
}

static void CALLBACK late_on_disconnect(void *priv,
                                        const WebSocketServer *server)
{
    late_t *l = priv;
    request_rec *r = server->request(server);
    const char *x_info = r ? apr_table_get(r->headers_in, "X-Info") : NULL;

    logf_("late-disconnect uri=%s method=%s user=%s x_info=%s",
          r && r->uri ? r->uri : "(null)",
          r && r->method ? r->method : "(null)",
          r && r->user ? r->user : "(null)", x_info ? x_info : "(null)");
    free(l);
}

static WebSocketPlugin late_plugin = {
    sizeof(WebSocketPlugin),
    WEBSOCKET_PLUGIN_VERSION_0,
    NULL,
    late_on_connect,
    late_on_message,
    late_on_disconnect
};

EXPORT WebSocketPlugin *CALLBACK lateprobe_init(void)
{
    return &late_plugin;
}
