/*
 * ws_topic.h - topics: subscriptions of this child's connections, and
 * publishing to every subscriber of the server (ws_topic.c).
 */
#ifndef WS_TOPIC_H
#define WS_TOPIC_H

#include "ws_conn.h"

/* Subscribes (or unsubscribes) a connection; any thread.  WEBSOCKET_OK or
 * an error of websocket_plugin.h. */
int ws_topic_subscribe(ws_conn *wc, const char *topic, size_t len);
int ws_topic_unsubscribe(ws_conn *wc, const char *topic, size_t len);

/* Publishes a message (opcode: WS_OP_TEXT or WS_OP_BINARY) to a topic,
 * from any thread of any child; exclude: a connection that must not get
 * it (or NULL).  Returns how many connections of the server were
 * subscribed as it was published, or an error (< 0). */
long ws_topic_publish(const char *topic, size_t len, int opcode,
                      const uint8_t *data, size_t size, ws_conn *exclude);

/* The connection ends: all its subscriptions go. */
void ws_topic_forget(ws_conn *wc);

#endif /* WS_TOPIC_H */
