/*
 * ws_shm.h - the memory every child process of the server shares: the
 * topics' message ring (ws_ring.h), a table per child of how many of
 * its connections subscribe to each topic, and the node area of the
 * Redis relay (ws_redis.h).
 *
 * The parent maps it once, anonymous and shared, in its first real
 * post_config, before any child is forked, and keeps it for its whole
 * life (ap_retained_data): children of every generation of a graceful
 * restart share it, so topics reach old and new children alike and the
 * message ids go on.  A restart cannot change its size (as ServerLimit);
 * a changed WebSocketTopicBuffer waits for a full stop.  The parent never
 * reads it (a child could have written anything there).
 */
#ifndef WS_SHM_H
#define WS_SHM_H

#include "httpd.h"

#include "ws_ring.h"

/* post_config, in the parent: makes (once) or finds the shared memory.
 * ring_capacity 0: no topics.  Logs and returns non-OK on failure. */
apr_status_t ws_shm_post_config(apr_pool_t *pconf, server_rec *s,
                                apr_off_t ring_capacity);

/* child_init: attaches the ring and claims this child's count table;
 * what is given back at child exit (pchild's cleanup). */
void ws_shm_child_init(apr_pool_t *pchild, server_rec *s);

/* This child's handle on the ring, or NULL when topics are off. */
ws_ring *ws_shm_ring(void);

/* This child's count of subscribers to a topic (by hash) went up or
 * down by delta; the caller serializes its calls (one registry lock).
 * 0 when the table is full of topics: the caller then empties it
 * (ws_shm_reset_counts) and counts again each topic it has. */
int ws_shm_count(uint64_t topic_hash, long delta);
void ws_shm_reset_counts(void);

/* Subscribers to a topic in every child of the server now (an estimate
 * while children start, stop or crash). */
long ws_shm_subscribers(uint64_t topic_hash);

/* This child's number among the children (its count table), for ids
 * that must differ across children; -1 without topics. */
int ws_shm_child_index(void);

/* The node area (ws_redis.h's, of *size bytes), or NULL when the shared
 * memory could not be made. */
void *ws_shm_node(size_t *size);

#endif /* WS_SHM_H */
