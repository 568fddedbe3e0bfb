/*
 * ws_limits.h - how many WebSockets a location, and a client address,
 * may have open in the whole server (WebSocketMaxConnections,
 * WebSocketMaxConnectionsPerIP), counted over every child.
 *
 * Each child counts its own connections in tables of its slot of the
 * shared memory (ws_shm.c); a handshake adds itself to its child's count
 * first and then sums every child's, so that two children admitting at
 * once can both refuse but never both pass the limit.  A child that dies
 * without giving its slot back stops counting as soon as it is gone (its
 * tables are skipped once its pid no longer exists, and cleared when a
 * new child takes the slot).
 */
#ifndef WS_LIMITS_H
#define WS_LIMITS_H

#include "httpd.h"

#include "ws_config.h"

typedef struct ws_limit_hold ws_limit_hold;

/* Before ws_shm_post_config: the room the tables need. */
void ws_limits_register(void);

/* child_init, after ws_shm_child_init. */
void ws_limits_child_init(apr_pool_t *pchild, server_rec *s);

/* At the handshake: OK, with *hold the connection's place in the counts
 * (NULL when no limit applies), given back by ws_limits_release or when
 * the request's pool goes; or the status to answer (503 or 429,
 * Retry-After set) with *why for the log line. */
int ws_limits_admit(request_rec *r, const ws_dir_conf *conf,
                    ws_limit_hold **hold, const char **why);

/* The connection ended: its place is free; any thread, idempotent. */
void ws_limits_release(ws_limit_hold *hold);

/* A connection about to outlive its pools (ws_detach.c): a malloc'd copy
 * of hold, which the request's end no longer releases; the caller frees
 * it with free() after ws_limits_release.  NULL when out of memory (hold
 * is then untouched). */
ws_limit_hold *ws_limits_keep(ws_limit_hold *hold, apr_pool_t *request_pool);

#endif /* WS_LIMITS_H */
