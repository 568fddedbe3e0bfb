/*
 * ws_topic.h - topics: subscriptions of this child's connections, and
 * publishing to every subscriber of the server (ws_topic.c).
 */
#ifndef WS_TOPIC_H
#define WS_TOPIC_H

#include "ws_conn.h"

/* Subscribes (or unsubscribes) a connection; any thread.  WEBSOCKET_OK or
 * an error of websocket_plugin.h. */
int ws_topic_subscribe(ws_conn *wc, const char *topic, size_t len, int flags,
                       const char *resume_after);
int ws_topic_unsubscribe(ws_conn *wc, const char *topic, size_t len);

/* Publishes a message (opcode: WS_OP_TEXT or WS_OP_BINARY) to a topic,
 * from any thread of any child; exclude: a connection that must not get
 * it (or NULL).  Returns how many connections of the server were
 * subscribed as it was published, or an error (< 0). */
long ws_topic_publish(const char *topic, size_t len, int opcode,
                      const uint8_t *data, size_t size, ws_conn *exclude);

/* The same for the HTTP publisher: no connection to exclude, and the
 * message's id ("<epoch>-<seq>") written into id. */
long ws_topic_publish_id(const char *topic, size_t len, int opcode,
                         const uint8_t *data, size_t size, char *id,
                         size_t id_size);

/* Both in one, for publishers that want everything: exclude (or NULL),
 * id (or NULL), and *replicated (or NULL): with WebSocketRedis, whether
 * the message goes to the other nodes too (WS_REDIS_UP, 1) or stays on
 * this one because Redis is unavailable (WS_REDIS_DOWN, 0; counted);
 * WS_REDIS_OFF (-1) without WebSocketRedis (ws_redis.h). */
long ws_topic_publish_ex(const char *topic, size_t len, int opcode,
                         const uint8_t *data, size_t size, ws_conn *exclude,
                         char *id, size_t id_size, int *replicated);

/* Closes every subscriber of a topic, in every child (and, with
 * WebSocketRedis, of every node), with 1000. */
long ws_topic_close(const char *topic, size_t len);

/* Subscribers of a topic in the whole server now, or an error (< 0). */
long ws_topic_subscribers(const char *topic, size_t len);

/* What a subscriber resuming from the start could be replayed now, with
 * a history of max messages: how many of the topic's messages the ring
 * still holds (at most max), and the newest one's id in last_id ("" when
 * none).  The count, or an error (< 0). */
long ws_topic_history(const char *topic, size_t len, size_t max,
                      char *last_id, size_t id_size);

/* The connection ends: all its subscriptions go. */
void ws_topic_forget(ws_conn *wc);

/* child_init, after ws_shm_child_init: the thread that delivers. */
void ws_topic_child_init(apr_pool_t *pchild, server_rec *s);

/* The longest id ws_topic_publish_id writes, with its NUL. */
#define WS_TOPIC_ID_MAX  40

#endif /* WS_TOPIC_H */
