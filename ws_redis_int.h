/*
 * ws_redis_int.h - what the files of the Redis relay share:
 *   ws_redis.c         directives, the node area, election, counters
 *   ws_redis_conn.c    one connection to Redis, with deadlines of our own
 *   ws_redis_relay.c   the relay: ring -> PUBLISH, SUBSCRIBE -> ring
 *   ws_redis_interest.c  the channels the relay wants subscribed
 */
#ifndef WS_REDIS_INT_H
#define WS_REDIS_INT_H

#include <pthread.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "httpd.h"
#include "apr_time.h"

#include "ws_redis.h"
#include "ws_ring.h"

/* ---- configuration (server config; read-only once children run) ---- */

typedef struct ws_redis_conf {
    const char *url;          /* as written, for nothing but checks */
    const char *where;        /* "host:port" or the socket path: for logs
                                 (never the password) */
    const char *host;         /* NULL with a Unix socket */
    int port;
    const char *socket_path;  /* NULL with TCP */
    const char *user;         /* ACL user (Redis 6+), or NULL */
    const char *password;     /* NULL: no AUTH */
    int db;                   /* SELECT when > 0 */
    const char *prefix;       /* of every channel */
    size_t prefix_len;
    apr_interval_time_t timeout;   /* every wait for Redis */
} ws_redis_conf;

const ws_redis_conf *ws_redis_conf_get(void);

/* ---- the node area (shared by the children; the parent only makes it) */

typedef struct ws_redis_node {
    pthread_mutex_t relay_lock;      /* robust, process-shared: its holder
                                        is the node's relay */
    char pad0[64];
    uint64_t node_id;                /* drawn when the memory is made */
    uint64_t cursor_pos, cursor_seq; /* the relay's place in the ring: the
                                        next relay goes on from there */
    int64_t heartbeat;               /* apr_time_t of the relay's last turn */
    uint32_t newest_generation;      /* of any child started: an older
                                        relay steps down */
    int32_t relay_pid;
    uint32_t pub_up, sub_up;         /* the relay's two connections */
    uint32_t outage;                 /* 1 from the first failure found to
                                        the recovery: one log line each */
    uint32_t pad1;
    uint64_t reconnects, outages, relayed_out, relayed_in, not_replicated,
             dropped_in, channels;
} ws_redis_node;

ws_redis_node *ws_redis_node_get(void);

static inline void ws_redis_add(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

/* One line when Redis becomes unavailable (whichever connection finds
 * it first, in whichever relay), one when both connections work again. */
void ws_redis_outage_begin(const char *what, const char *why);
void ws_redis_outage_end(void);

/* ---- one connection (ws_redis_conn.c) ---- */

typedef struct ws_redis_link {
    redisContext *c;
    int stop_fd;                     /* readable: give up every wait */
    char err[256];                   /* why the last call failed */
} ws_redis_link;

/* Connects, then AUTH, SELECT and PING, each within conf->timeout.  1 on
 * success; 0 with link->err set (the context is freed). */
int ws_redis_link_open(ws_redis_link *l, const ws_redis_conf *conf);
void ws_redis_link_close(ws_redis_link *l);
/* Writes what the context holds, by deadline.  1, or 0 (err set). */
int ws_redis_link_flush(ws_redis_link *l, apr_time_t deadline);
/* The next reply, waiting until deadline; 1 with *reply (free it with
 * freeReplyObject), 0 on timeout, failure or stop (err set). */
int ws_redis_link_reply(ws_redis_link *l, apr_time_t deadline,
                        redisReply **reply);
/* Replies already received, without waiting: 1 with one, 0 without one,
 * -1 on failure (err set).  Reads the socket once when it is readable. */
int ws_redis_link_poll_reply(ws_redis_link *l, redisReply **reply);
/* Appends one command (arguments with their lengths). */
int ws_redis_link_append(ws_redis_link *l, int argc, const char **argv,
                         const size_t *lens);

/* ---- the interest set (ws_redis_interest.c) ---- */

/* The relay's channels: topics with subscribers in some child.  Written
 * by the ring side of the relay, read by the SUBSCRIBE side. */
void ws_redis_interest_reset(void);
/* Re-evaluates a topic: subscribed while some child has subscribers. */
void ws_redis_interest_check(const char *topic, size_t len);
/* A slice of the set checked again (subscribers of children that died
 * without saying so); call now and then. */
void ws_redis_interest_sweep(size_t max);
/* SUBSCRIBE side: the changes since the last call, or (all = 1, after a
 * reconnection) every topic of the set.  fn(baton, subscribe, topic,
 * len) for each; returns how many. */
size_t ws_redis_interest_take(int all, void (*fn)(void *baton, int subscribe,
                                                  const char *topic,
                                                  size_t len),
                              void *baton);
/* The eventfd that the SUBSCRIBE side polls: written on a change. */
int ws_redis_interest_fd(void);
int ws_redis_interest_open(void);
void ws_redis_interest_close(void);

/* ---- the relay (ws_redis_relay.c) ---- */

/* Runs the relay in the calling thread until *stop or until a newer
 * generation of children exists.  The caller holds relay_lock. */
void ws_redis_relay_run(server_rec *s, ws_ring *ring, int stop_fd,
                        volatile int *stop, uint32_t generation);

/* The next wait before a reconnection (growing to a cap, with jitter);
 * *backoff 0 is the first. */
apr_interval_time_t ws_redis_backoff(apr_interval_time_t *backoff);

/* ---- the SUBSCRIBE side (ws_redis_sub.c), a thread of the relay ---- */

int ws_redis_sub_start(server_rec *s, ws_ring *ring, int stop_fd);
void ws_redis_sub_stop(void);

/* The envelope a message carries through Redis (docs/redis.md):
 * "\xffWS1", a flags byte (opcode, or 0x10 for a topic's close), the node
 * id and the node's ring seq (64-bit, big-endian), then the payload.
 * 0xff never starts UTF-8 text, so a text PUBLISH from another program
 * is told apart. */
#define WS_REDIS_MAGIC      "\xffWS1"
#define WS_REDIS_MAGIC_LEN  4
#define WS_REDIS_HEADER_LEN (WS_REDIS_MAGIC_LEN + 1 + 8 + 8)

#endif /* WS_REDIS_INT_H */
