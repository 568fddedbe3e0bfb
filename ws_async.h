/*
 * ws_async.h - the asynchronous engine (event MPM): see ws_async.c.
 */
#ifndef WS_ASYNC_H
#define WS_ASYNC_H

#include "httpd.h"
#include "ws_conn.h"

extern const ws_engine ws_engine_async;

/* child_init: starts the event loops when the MPM is asynchronous. */
void ws_async_child_init(apr_pool_t *pchild, server_rec *s, int threads,
                         int dispatch_threads);
/* Whether this child runs event loops (the async engine is usable). */
int ws_async_available(void);
/* The suspend_connection hook: takes over a connection the handler
 * suspended. */
void ws_async_suspended(conn_rec *c, request_rec *r);
/* The child_stopping hook: every WebSocket gets a 1001 Close. */
void ws_async_child_stopping(apr_pool_t *pchild, int graceful);

#endif /* WS_ASYNC_H */
