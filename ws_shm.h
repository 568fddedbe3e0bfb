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
 *
 * Other concerns keep data per child slot, and once for the server, in
 * the same mapping (users, below: ws_stats.c's counters, ws_limits.c's
 * connection counts).
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

/* Distinct topics with subscribers, and subscribers, in every child that
 * runs now (for mod_status; p: scratch for the report). */
void ws_shm_topic_totals(apr_pool_t *p, long *topics, long *subscribers);

/* ---- users of the per-child slots ----
 *
 * A user has an area in each child slot and one for the server, zeroed
 * when the mapping is made.  It registers before ws_shm_post_config, at
 * every configuration load (registering twice is harmless); the areas
 * exist when ws_shm_child_init has run and the layout made at the first
 * start had room for them (a module built with larger areas needs a full
 * stop and start).  A slot's area is its child's to write; anyone reads
 * any. */
typedef struct ws_shm_user {
    const char *name;
    /* Bytes in each child slot's area, given the number of slots. */
    size_t (*child_size)(int slots);
    size_t global_size;
    /* In a starting child, once it has a slot: its area holds what the
     * previous owner left, a child that died without giving it back when
     * prev_died (the area is then the claimer's to clean up). */
    void (*claimed)(void *child, void *global, int prev_died);
    /* In a child that exits cleanly, before its slot is free again. */
    void (*released)(void *child, void *global);
    /* ws_shm's own: where the areas are, once laid out. */
    size_t child_off, child_bytes, global_off;
    int placed;
} ws_shm_user;

void ws_shm_add_user(ws_shm_user *u);

/* The child slots (0 without shared memory), who has one (0: free), and
 * the user's area in one of them, in this child's slot (NULL without
 * one), or the server's (NULL when the user has no place). */
int ws_shm_slots(void);
pid_t ws_shm_slot_pid(int slot);
void *ws_shm_child_area(const ws_shm_user *u, int slot);
void *ws_shm_my_area(const ws_shm_user *u);
void *ws_shm_global_area(const ws_shm_user *u);

/* Whether a process of that pid exists (a slot's owner may have died
 * without giving its slot back). */
int ws_shm_pid_alive(pid_t pid);

/* The node area (ws_redis.h's, of *size bytes), or NULL when the shared
 * memory could not be made. */
void *ws_shm_node(size_t *size);

#endif /* WS_SHM_H */
