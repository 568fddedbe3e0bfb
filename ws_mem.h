/*
 * ws_mem.h - what the WebSocket buffers of one child hold, and the
 * ceiling on it (WebSocketMemoryLimit).
 *
 * Every connection counts what it holds beyond its fixed state: outgoing
 * frames queued or being written, the message being assembled, an
 * inflated message, input waiting behind a dispatched message.  The sum
 * over the child is kept here.  When it passes the ceiling, new
 * connections holding the most are closed with 1013 (Try Again Later)
 * and their queues dropped, until the child is back under eight tenths
 * of the ceiling; one log line says so.  Above nine tenths, new
 * handshakes get 503.
 */
#ifndef WS_MEM_H
#define WS_MEM_H

#include "httpd.h"

#include "ws_conn.h"

#define WS_DEFAULT_MEMORY_LIMIT  ((apr_off_t)1024 * 1024 * 1024)

/* child_init: the ceiling (0: none). */
void ws_mem_child_init(apr_pool_t *pchild, apr_off_t limit);

/* A connection joins or leaves the child's accounting. */
void ws_mem_register(ws_conn *wc);
void ws_mem_unregister(ws_conn *wc);

/* The connection holds delta more (or, negative, fewer) bytes; any
 * thread.  Passing the ceiling sheds the largest holders. */
void ws_mem_add(ws_conn *wc, apr_off_t delta);

/* Whether the child is above nine tenths of its ceiling (new handshakes
 * are refused). */
int ws_mem_over_limit(void);

/* Up to max of the child's connections, for a caller that must reach
 * them all (a hard stop); 0 when another thread holds the list. */
size_t ws_mem_connections(ws_conn **out, size_t max);

/* What the child's WebSocket buffers hold now, and the ceiling. */
apr_off_t ws_mem_held(void);
apr_off_t ws_mem_limit(void);

#endif /* WS_MEM_H */
