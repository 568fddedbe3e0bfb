/*
 * ws_stats.h - counters of the server's WebSockets, summed over every
 * child for mod_status (server-status and ?auto), and the access log's
 * notes of each connection.
 *
 * Each child adds to its own block of counters in the shared memory
 * (ws_shm.c, one slot per child), with relaxed atomic adds and no lock;
 * the child that serves server-status sums the blocks.  The message path
 * pays nothing per message: a connection counts what it moves in plain
 * fields of its own, on its engine's thread, and tells the block the
 * difference once per turn of I/O (ws_stats_flush).  Without mod_status
 * loaded nothing is counted (ws_stats_block stays NULL).
 *
 * Gauges (open connections, bytes queued, busy dispatch threads) count
 * the children that run now; counters (messages, bytes, closes...) are
 * since the server started: a child that exits adds its counters to the
 * server's total, and a child that takes the slot of one that died does
 * it for it.
 */
#ifndef WS_STATS_H
#define WS_STATS_H

#include "httpd.h"

typedef enum ws_stat {
    /* gauges */
    WS_STAT_OPEN_ASYNC,              /* open on the event loops */
    WS_STAT_OPEN_SYNC,               /* open on a thread of their own */
    WS_STAT_OPEN_HTTP2,              /* open on HTTP/2 streams (RFC 8441) */
    WS_STAT_QUEUED,                  /* bytes queued for sending */
    WS_STAT_DISPATCH_BUSY,           /* dispatch threads in a plugin call */
    WS_STAT_GAUGES,                  /* (the number of gauges) */
    /* counters */
    WS_STAT_OPENED = WS_STAT_GAUGES, /* WebSockets opened */
    WS_STAT_MSGS_IN,
    WS_STAT_MSGS_OUT,
    WS_STAT_BYTES_IN,                /* frame bytes, as they travel */
    WS_STAT_BYTES_OUT,
    WS_STAT_CLOSE_NORMAL,            /* 1000, 1005 */
    WS_STAT_CLOSE_GOING_AWAY,        /* 1001 */
    WS_STAT_CLOSE_RESTART,           /* 1012 */
    WS_STAT_CLOSE_PROTOCOL,          /* 1002 1003 1007 1009 1010 */
    WS_STAT_CLOSE_POLICY,            /* 1008 */
    WS_STAT_CLOSE_SERVER,            /* 1011 1013 1014 */
    WS_STAT_CLOSE_ABNORMAL,          /* 1006: no Close either way */
    WS_STAT_CLOSE_APPLICATION,       /* 3000-4999 */
    WS_STAT_CLOSE_OTHER,
    WS_STAT_REFUSED_MAX,             /* 503 WebSocketMaxConnections */
    WS_STAT_REFUSED_PER_IP,          /* 429 WebSocketMaxConnectionsPerIP */
    WS_STAT_SLOW_PLUGINS,            /* plugins found blocking a loop */
    WS_STAT_LOOP_TAKEOVERS,          /* loops given to a new thread */
    WS_STAT_COUNT
} ws_stat;

/* This child's block, or NULL when nothing is counted. */
extern apr_int64_t *ws_stats_block;

static APR_INLINE void ws_stats_add(ws_stat which, apr_int64_t n)
{
    if (ws_stats_block) {
        __atomic_add_fetch(&ws_stats_block[which], n, __ATOMIC_RELAXED);
    }
}

/* What one connection has moved, kept on its engine's thread; the
 * "told" fields are what the block has been told of it. */
typedef struct ws_conn_stats {
    apr_uint64_t bytes_in, bytes_out;
    apr_uint64_t told_msgs_in, told_msgs_out;
    apr_uint64_t told_bytes_in, told_bytes_out;
    apr_int64_t told_queued;
    int open_gauge;                  /* WS_STAT_OPEN_*, or -1 */
} ws_conn_stats;

struct _WebSocketState;

/* The engine's thread, after a turn of I/O: the block learns what the
 * connection moved since the last time. */
void ws_stats_flush_conn(struct _WebSocketState *wc);

static APR_INLINE void ws_stats_flush(struct _WebSocketState *wc)
{
    if (ws_stats_block) {
        ws_stats_flush_conn(wc);
    }
}

/* A WebSocket opens (the 101 went out), and ends (on_disconnect ran);
 * any thread, once each. */
void ws_stats_conn_open(struct _WebSocketState *wc);
void ws_stats_conn_end(struct _WebSocketState *wc);

/* The close code of a connection that ended: the code of the first
 * Close frame, whoever sent it; 1005 for a Close without a code; 1006
 * when no Close went either way. */
unsigned int ws_stats_close_code(const struct _WebSocketState *wc);

/* The engine's thread, before the access log line is written: the
 * notes of r (the handshake's request, or the one a detached connection
 * rebuilds for its log line): websocket-close-code, -messages-in and -out,
 * websocket-bytes-in and -out (for %{...}n in LogFormat). */
void ws_stats_log_notes(struct _WebSocketState *wc, request_rec *r);

/* post_config: counting starts when mod_status is loaded; the shared
 * memory's room is asked for before ws_shm_post_config. */
void ws_stats_register(void);
void ws_stats_post_config(void);

/* child_init, after ws_shm_child_init. */
void ws_stats_child_init(apr_pool_t *pchild);

/* register_hooks: the section of server-status. */
void ws_stats_register_hooks(void);

#endif /* WS_STATS_H */
