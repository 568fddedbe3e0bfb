/*
 * ws_publish.h - the websocket-publish handler: topics over plain HTTP
 * (ws_publish.c).
 *
 *     <Location /pub>
 *         SetHandler websocket-publish
 *         Require ip 127.0.0.1
 *     </Location>
 *
 * POST or PUT /pub/<topic> publishes the body, GET tells the topic's
 * state, DELETE closes its subscribers; the README has the details.
 */
#ifndef WS_PUBLISH_H
#define WS_PUBLISH_H

#include "httpd.h"

#define WS_PUBLISH_HANDLER_NAME  "websocket-publish"

/* The handler hook (register_hooks). */
int ws_publish_handler(request_rec *r);

#endif /* WS_PUBLISH_H */
