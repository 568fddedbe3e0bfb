/*
 * pubsub - a WebSocket that listens to a topic: /sub/<topic> gets every
 * message published to <topic> (by the websocket-publish handler, by a
 * plugin, from any child process of the server), in publish order.
 * Subscribers only listen: what a client sends is dropped (and counted,
 * on a debug line).  A plugin of API version 2.
 *
 *     <Location /sub>
 *         SetHandler websocket-handler
 *         WebSocketHandler modules/mod_websocket_pubsub.so pubsub_init
 *     </Location>
 *
 * The topic is the rest of the path after the <Location>, as Apache
 * decoded it ("a b" for /sub/a%20b).  A handshake without one (/sub,
 * /sub/) or with one over 1024 bytes is refused; on_connect can only
 * refuse with 403, so that is the status, not 404.
 *
 * Message ids: a client that offers the subprotocol "pubsub.ids" gets it,
 * and each message then starts with its id,
 *
 *     id: 5f0c2a91-1234\n
 *     gap: 3\n                (only when messages were missed before it;
 *                              "?" when how many is not known)
 *     \n
 *     <the message>
 *
 * A client that comes back (after a close with 1013 because it read too
 * slowly, 1012 for a restart, a lost network) with ?last_id=<the last id
 * it got> first gets the messages it missed, as far as the topic's
 * history (WebSocketTopicHistory) holds them, then the live ones, none
 * twice; the gap line says when the history could not cover them all.
 * The README has a browser client that does this.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"

#include "websocket_plugin.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

#define PUBSUB_IDS_PROTOCOL  "pubsub.ids"
#define TOPIC_MAX            1024
/* An id is "<8 hex digits>-<decimal seq>"; longer is not one of ours. */
#define LAST_ID_MAX          40

typedef struct subscriber {
    unsigned long dropped;           /* client messages ignored */
} subscriber;

static int hex_value(int c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of name in a query string ("a=1&last_id=x"), %-decoded, into
 * out; 0 when absent, empty, or longer than out holds. */
static int query_param(const char *query, const char *name, char *out,
                       size_t size)
{
    size_t nlen = strlen(name), n = 0;
    const char *p = query;

    while (p && *p) {
        if (!strncmp(p, name, nlen) && p[nlen] == '=') {
            for (p += nlen + 1; *p && *p != '&' && n + 1 < size; p++) {
                if (*p == '%' && hex_value(p[1]) >= 0 && hex_value(p[2]) >= 0) {
                    out[n++] = (char)(hex_value(p[1]) * 16 + hex_value(p[2]));
                    p += 2;
                }
                else {
                    out[n++] = *p == '+' ? ' ' : *p;
                }
            }
            out[n] = '\0';
            return n > 0 && (!*p || *p == '&');
        }
        p = strchr(p, '&');
        p = p ? p + 1 : NULL;
    }
    return 0;
}

static int offered(const WebSocketServer *server, const char *protocol)
{
    size_t i, n = server->protocol_count(server);

    for (i = 0; i < n; i++) {
        if (!strcmp(server->protocol_index(server, i), protocol)) {
            return 1;
        }
    }
    return 0;
}

static void *CALLBACK pubsub_on_connect(const WebSocketServer *server)
{
    const char *topic;
    char last_id[LAST_ID_MAX + 1];
    const char *resume = NULL;
    subscriber *sub;
    int flags = 0, rc;

    if (server->version < WEBSOCKET_SERVER_VERSION_2) {
        return NULL;                 /* not a server of API version 2 */
    }
    topic = server->path_info(server);
    if (topic && *topic == '/') {
        topic++;
    }
    if (!topic || !*topic) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, server->request(server),
                      WSLOGNO(00074) "pubsub: no topic in the path: refused");
        return NULL;
    }
    if (strlen(topic) > TOPIC_MAX) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, server->request(server),
                      WSLOGNO(00075) "pubsub: topic over %d bytes: refused", TOPIC_MAX);
        return NULL;
    }
    if (offered(server, PUBSUB_IDS_PROTOCOL)) {
        server->protocol_set(server, PUBSUB_IDS_PROTOCOL);
        flags = WEBSOCKET_SUBSCRIBE_IDS;
        if (query_param(server->query(server), "last_id", last_id,
                        sizeof(last_id))) {
            resume = last_id;
        }
    }
    if (!(sub = calloc(1, sizeof(*sub)))) {
        return NULL;
    }
    /* Subscribed before the 101: what is published from now on (and the
     * history a resume asks for) follows the 101. */
    rc = server->subscribe(server, topic, flags, resume);
    if (rc != WEBSOCKET_OK) {
        ap_log_rerror(APLOG_MARK, rc == WEBSOCKET_ENOTOPICS ? APLOG_ERR
                      : APLOG_INFO, 0, server->request(server), WSLOGNO(00076) "pubsub: "
                      "cannot subscribe to %s: %s", topic,
                      rc == WEBSOCKET_ENOTOPICS ? "topics are off "
                      "(WebSocketTopicBuffer)" : "error");
        free(sub);
        return NULL;
    }
    return sub;
}

/* Subscribers only listen. */
static size_t CALLBACK pubsub_on_message(void *plugin_private,
                                         const WebSocketServer *server,
                                         const int type, unsigned char *buffer,
                                         const size_t buffer_size)
{
    subscriber *sub = plugin_private;

    (void)type, (void)buffer;
    if (sub->dropped++ == 0) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, server->request(server),
                      WSLOGNO(00077) "pubsub: dropping what the client sends (%lu bytes; "
                      "subscribers only listen)", (unsigned long)buffer_size);
    }
    return 0;
}

static void CALLBACK pubsub_on_disconnect(void *plugin_private,
                                          const WebSocketServer *server)
{
    subscriber *sub = plugin_private;

    if (sub->dropped) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, server->request(server),
                      WSLOGNO(00078) "pubsub: %lu messages from the client were dropped",
                      sub->dropped);
    }
    free(sub);
}

static WebSocketPlugin2 pubsub_plugin = {
    sizeof(WebSocketPlugin2), WEBSOCKET_PLUGIN_VERSION_2,
    NULL,                            /* destroy */
    pubsub_on_connect, pubsub_on_message, pubsub_on_disconnect,
    NULL, NULL, NULL, NULL, NULL, NULL
};

extern EXPORT WebSocketPlugin *CALLBACK pubsub_init(void)
{
    return WEBSOCKET_PLUGIN2(&pubsub_plugin);
}
