/*
 * chat - rooms: every text message a member of /chat/<room> sends reaches
 * every other member of that room, in every child process of the server,
 * and nobody outside it.  The sender does not get its own message back.
 * A plugin of API version 2, built on topics.
 *
 *     <Location /chat>
 *         SetHandler websocket-handler
 *         WebSocketHandler modules/mod_websocket_chat.so chat_init
 *     </Location>
 *
 * Messages go out as they were sent: no envelope, no sender name (a page
 * that wants one puts it in the text).  Binary messages are not chat: the
 * sender is closed with 1003 (Unsupported Data).  A message larger than a
 * topic carries (WebSocketTopicBuffer / 8) closes the sender with 1009.
 *
 * The room's topic is "chat/<room>" (the rest of the path after the
 * <Location>, as Apache decoded it).  Topics are one namespace, so
 * /pub/chat/<room> posts into the room (announcements from a script) and
 * /sub/chat/<room> reads it without being a member: give those locations
 * the access control of /chat, or deny them:
 *
 *     <LocationMatch "^/(sub|pub)/chat/">
 *         Require all denied
 *     </LocationMatch>
 *
 * WebSocketParam topic_prefix <prefix> sets another prefix than "chat/",
 * to keep two chat locations apart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "websocket_plugin.h"

#define DEFAULT_PREFIX  "chat/"
#define TOPIC_MAX       1024

typedef struct member {
    char topic[TOPIC_MAX + 1];
} member;

static void *CALLBACK chat_on_connect(const WebSocketServer *server)
{
    const char *room, *prefix;
    member *m;

    if (server->version < WEBSOCKET_SERVER_VERSION_2) {
        return NULL;                 /* not a server of API version 2 */
    }
    room = server->path_info(server);
    prefix = server->param(server, "topic_prefix");
    if (room && *room == '/') {
        room++;
    }
    if (!room || !*room || !(m = malloc(sizeof(*m)))) {
        return NULL;                 /* no room: 403 */
    }
    if (snprintf(m->topic, sizeof(m->topic), "%s%s",
                 prefix ? prefix : DEFAULT_PREFIX, room)
            >= (int)sizeof(m->topic)
        || server->subscribe(server, m->topic, 0, NULL) != WEBSOCKET_OK) {
        free(m);
        return NULL;
    }
    return m;
}

static size_t CALLBACK chat_on_message(void *plugin_private,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t buffer_size)
{
    member *m = plugin_private;
    long rc;

    if (type != MESSAGE_TYPE_TEXT) {
        server->close_with(server, 1003, "chat takes text messages only");
        return 0;
    }
    rc = server->publish(server, m->topic, MESSAGE_TYPE_TEXT, buffer,
                         buffer_size, WEBSOCKET_PUBLISH_EXCLUDE_SELF);
    if (rc == WEBSOCKET_ETOOBIG) {
        server->close_with(server, 1009, "message too big for the room");
    }
    else if (rc < 0) {
        server->close_with(server, 1011, "the room cannot take messages");
    }
    return 0;
}

static void CALLBACK chat_on_disconnect(void *plugin_private,
                                        const WebSocketServer *server)
{
    (void)server;
    free(plugin_private);
}

static WebSocketPlugin2 chat_plugin = {
    sizeof(WebSocketPlugin2), WEBSOCKET_PLUGIN_VERSION_2,
    NULL,                            /* destroy */
    chat_on_connect, chat_on_message, chat_on_disconnect,
    NULL, NULL, NULL, NULL, NULL, NULL
};

extern EXPORT WebSocketPlugin *CALLBACK chat_init(void)
{
    return WEBSOCKET_PLUGIN2(&chat_plugin);
}
