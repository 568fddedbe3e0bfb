/*
 * ws_redis.h - topics across several Apache nodes through Redis pub/sub
 * (WebSocketRedis).
 *
 * One relay per node: among the children of a server, the one holding a
 * robust process-shared mutex in the node area of the shared memory
 * (ws_shm.c) runs the relay; the others wait on the mutex and take over
 * at once when the holder stops or dies.  The relay reads the topics'
 * ring like any child: each record published on this node goes out as a
 * PUBLISH on channel prefix+topic; each message from another node comes
 * in from a SUBSCRIBE connection and is published into the ring with
 * TOPIC_FROM_REDIS, so that every child delivers it, with ids and history
 * like a local one.  See ws_redis_relay.c for the details and docs/redis.md
 * for the administrator's view.
 */
#ifndef WS_REDIS_H
#define WS_REDIS_H

#include <stdint.h>

#include "httpd.h"
#include "http_config.h"

/* ---- directives (docs/directives.def) ---- */

const char *ws_redis_set_url(cmd_parms *cmd, void *dconf, const char *arg);
const char *ws_redis_set_prefix(cmd_parms *cmd, void *dconf, const char *arg);
const char *ws_redis_set_timeout(cmd_parms *cmd, void *dconf,
                                 const char *arg);

/* ---- the node area of the shared memory (ws_shm.c) ---- */

/* Bytes ws_shm.c reserves for it, whether or not Redis is configured (a
 * restart may turn it on; the memory is made once per parent). */
size_t ws_redis_node_size(void);
/* In the parent, once, on fresh memory: the mutex, a new node id. */
int ws_redis_node_init(void *area);

/* ---- the child ---- */

/* post_config: checks what needs checking (topics on), logs. */
void ws_redis_post_config(server_rec *s, int topics_on);
/* child_init, after ws_shm_child_init: the relay candidate thread. */
void ws_redis_child_init(apr_pool_t *pchild, server_rec *s);
/* child_stopping: gives the relay up at once so another child (of the
 * new generation, at a graceful restart) takes it over. */
void ws_redis_child_stopping(void);

/* ---- publishers (ws_topic.c) ---- */

/* Whether a message published now reaches the other nodes:
 * WS_REDIS_OFF without WebSocketRedis, WS_REDIS_DOWN when the relay has
 * no working connection to Redis (the message stays on this node, and
 * the publisher is told), WS_REDIS_UP otherwise. */
enum { WS_REDIS_OFF = -1, WS_REDIS_DOWN = 0, WS_REDIS_UP = 1 };
int ws_redis_state(void);
/* A publish was kept local because of WS_REDIS_DOWN: counted. */
void ws_redis_count_local_only(void);
/* Whether topics' interest records go to a relay (Redis configured). */
int ws_redis_enabled(void);

/* ---- counters, for mod_status ---- */

typedef struct ws_redis_stats {
    int configured;            /* WebSocketRedis is set (in this child) */
    int connected;             /* both connections of the relay are up */
    int relay_pid;             /* the child running the relay, 0: none */
    uint64_t node_id;          /* this node's id in the envelopes */
    uint64_t reconnects;       /* successful connections after a failure */
    uint64_t outages;          /* times Redis was found unavailable */
    uint64_t relayed_out;      /* messages PUBLISHed to Redis */
    uint64_t relayed_in;       /* messages from other nodes put in the ring */
    uint64_t not_replicated;   /* publishes that stayed on this node */
    uint64_t dropped_in;       /* messages from Redis refused (too big,
                                  malformed, or the ring refused them) */
    uint64_t channels;         /* channels the relay subscribes to */
} ws_redis_stats;

/* A snapshot (each figure read atomically); any thread of any child. */
void ws_redis_stats_get(ws_redis_stats *out);

#endif /* WS_REDIS_H */
