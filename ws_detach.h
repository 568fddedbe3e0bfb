/*
 * ws_detach.h - an idle WebSocket lets go of Apache's pools (ws_detach.c).
 *
 * An idle socket on the async engine costs what its pools hold: the
 * connection's pool (ptrans), its bucket allocator and the request's pool,
 * a page or two each.  Once the MPM's worker has provably left the
 * connection, the engine copies what the access log and request() need,
 * keeps a duplicate of the socket's descriptor, and destroys the
 * connection's pool; at the end a request is rebuilt in a short-lived pool
 * to write the access log line.
 */
#ifndef WS_DETACH_H
#define WS_DETACH_H

#include "httpd.h"
#include "apr_tables.h"

#include "ws_conn.h"

/* ---- tables copied out of a pool (one malloc'd block each) ---- */

/* NULL for a NULL table, or when memory runs out. */
ws_table *ws_table_copy(const apr_table_t *t);
/* apr_table_get's answer: the first value of key, case-insensitively. */
const char *ws_table_get(const ws_table *t, const char *key);
void ws_table_free(ws_table *t);

/* ---- for the plugin API ---- */

/* request(): the request while the connection is attached (it then stays
 * attached: the plugin may keep the pointer); once detached, one rebuilt
 * in a pool of its own, kept until the connection is freed.  Any thread. */
request_rec *ws_detach_request(ws_conn *wc);

/* ws_conn_release: frees what detaching kept. */
void ws_detach_free(ws_conn *wc);

/* child_init: finds mod_logio, whose counts a detached connection keeps. */
void ws_detach_child_init(void);

#endif /* WS_DETACH_H */
