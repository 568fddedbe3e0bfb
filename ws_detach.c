/*
 * ws_detach.c - an idle WebSocket on the async engine lets go of Apache's
 * pools, and gets a request back when something needs one.
 *
 * Why: an idle socket costs what its pools hold.  With Debian's APR every
 * allocator node is its own mapping, and a WebSocket keeps three touched
 * pages in them: the connection's pool (ptrans: conn_rec, the MPM's state,
 * the filters), its bucket allocator, and the request's pool (two pages:
 * the handshake's tables).  Keeping any one of them costs more than the
 * rest of the connection does.
 *
 * When: on the event loop, once the connection is idle (nothing queued,
 * nothing half read or written, no plugin call running elsewhere), does
 * its I/O on the socket alone (no TLS, no connection filter but
 * mod_logio's), the plugin never asked for the request_rec (it may keep
 * the pointer), and the MPM's worker has provably left the connection
 * (ws_async_close.c: the worker's scoreboard status changed since the
 * hand-over; the MPM writes to the conn_rec until then).
 *
 * How: what the access log and request() read is copied into malloc'd
 * memory (a ws_detached, the handshake's headers were copied at creation
 * for header_get); the socket's descriptor is duplicated and polled in
 * its place; then the connection's pool is destroyed, which frees the
 * request's pool and the bucket allocator, closes the original
 * descriptor, and tells the MPM the connection is gone (its counts of
 * suspended connections and connections drop).  The ws_conn and the
 * async_conn were malloc'd for this, and freed by pool cleanups until
 * now; mod_logio's counts go on in ws_io.
 *
 * At the end, a conn_rec and a request_rec are rebuilt in a pool of their
 * own for the log_transaction hooks (mod_log_config), with mod_logio's
 * counts; request() after detaching rebuilds one the same way, kept until
 * the connection is freed.
 *
 * What the MPM no longer does for a detached connection: count it (the
 * listener accepts more while it lives: AsyncRequestWorkerFactor no
 * longer bounds WebSockets), and wait for it before a child exits
 * (ws_async.c's join_loops does: a graceful stop lets the closing
 * handshakes finish).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_uri.h"

#include "ws_async_int.h"
#include "ws_detach.h"
#include "ws_blocks.h"
#include "ws_limits.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* While the MPM's worker has not yet left, or the first read has not yet
 * put the connection in direct mode: look again this soon, then less and
 * less often (a worker busy with a storm of handshakes may be seen in the
 * status it had at the hand-over many times before it is seen in
 * another), but never give up on the worker. */
#define DETACH_RECHECK        apr_time_from_msec(10)
#define DETACH_RECHECK_MAX    apr_time_from_sec(1)
#define DETACH_DIRECT_CHECKS  5

/* ---- tables ---- */

struct ws_table {
    int n;
    const char *kv[1];               /* 2n: key, value; the bytes follow */
};

ws_table *ws_table_copy(const apr_table_t *t)
{
    const apr_array_header_t *a;
    const apr_table_entry_t *e;
    size_t bytes = 0, head;
    ws_table *copy;
    char *at;
    int i, n = 0;

    if (!t) {
        return NULL;
    }
    a = apr_table_elts(t);
    e = (const apr_table_entry_t *)a->elts;
    for (i = 0; i < a->nelts; i++) {
        if (e[i].key) {
            bytes += strlen(e[i].key) + 1 + strlen(e[i].val ? e[i].val : "") + 1;
            n++;
        }
    }
    head = offsetof(ws_table, kv) + sizeof(char *) * (size_t)(2 * n + 1);
    if (!(copy = malloc(head + bytes))) {
        return NULL;
    }
    copy->n = n;
    at = (char *)copy + head;
    for (i = 0, n = 0; i < a->nelts; i++) {
        const char *parts[2];
        int k;

        if (!e[i].key) {
            continue;
        }
        parts[0] = e[i].key;
        parts[1] = e[i].val ? e[i].val : "";
        for (k = 0; k < 2; k++) {
            size_t len = strlen(parts[k]) + 1;

            copy->kv[2 * n + k] = memcpy(at, parts[k], len);
            at += len;
        }
        n++;
    }
    return copy;
}

const char *ws_table_get(const ws_table *t, const char *key)
{
    int i;

    for (i = 0; t && key && i < t->n; i++) {
        if (!strcasecmp(t->kv[2 * i], key)) {
            return t->kv[2 * i + 1];
        }
    }
    return NULL;
}

void ws_table_free(ws_table *t)
{
    free(t);
}

static apr_table_t *table_of(apr_pool_t *p, const ws_table *t)
{
    apr_table_t *out = apr_table_make(p, t ? t->n : 1);
    int i;

    for (i = 0; t && i < t->n; i++) {
        apr_table_addn(out, t->kv[2 * i], t->kv[2 * i + 1]);
    }
    return out;
}

/* ---- what a detached connection keeps ---- */

/* The strings, packed in one block. */
enum {
    S_METHOD, S_THE_REQUEST, S_PROTOCOL, S_URI, S_UNPARSED_URI, S_ARGS,
    S_FILENAME, S_CANONICAL_FILENAME, S_PATH_INFO, S_HOSTNAME, S_USER,
    S_AUTH_TYPE, S_HANDLER, S_STATUS_LINE, S_CONTENT_TYPE, S_LOG_ID,
    S_USERAGENT_IP, S_USERAGENT_HOST, S_CONN_LOG_ID, S_CLIENT_IP,
    S_LOCAL_IP, S_REMOTE_HOST, S_REMOTE_LOGNAME,
    S_COUNT
};

struct ws_detached {
    int limit_hold_kept;             /* wc->limit_hold is malloc'd */
    server_rec *server, *base_server;
    long conn_id;
    int keepalives;
    apr_port_t client_port, local_port, useragent_port;
    int useragent_is_client;         /* mod_remoteip changed nothing */
    int method_number, proto_num, status, header_only, assbackwards;
    apr_off_t bytes_sent;
    apr_time_t request_time;
    ws_table *headers_out, *err_headers_out, *subprocess_env, *notes;
    apr_off_t logio_in, logio_out;   /* mod_logio's counts until now */
    const char *str[S_COUNT];
};

/* mod_logio keeps its counts in its connection config, whose layout is
 * its own (modules/loggers/mod_logio.c, unchanged since 2.0): the two
 * counts first.  It has no call that reads them, so a detached connection
 * reads them there, and gives the rebuilt connection a config of that
 * layout with the sum. */
typedef struct logio_counts {
    apr_off_t bytes_in;
    apr_off_t bytes_out;
    apr_off_t bytes_last_request;
} logio_counts;

static module *logio_module_ptr;

void ws_detach_child_init(void)
{
    logio_module_ptr = ap_find_linked_module("mod_logio.c");
}

static void pick_strings(const char **s, request_rec *r, conn_rec *c)
{
    s[S_METHOD] = r->method;
    s[S_THE_REQUEST] = r->the_request;
    s[S_PROTOCOL] = r->protocol;
    s[S_URI] = r->uri;
    s[S_UNPARSED_URI] = r->unparsed_uri;
    s[S_ARGS] = r->args;
    s[S_FILENAME] = r->filename;
    s[S_CANONICAL_FILENAME] = r->canonical_filename;
    s[S_PATH_INFO] = r->path_info;
    s[S_HOSTNAME] = r->hostname;
    s[S_USER] = r->user;
    s[S_AUTH_TYPE] = r->ap_auth_type;
    s[S_HANDLER] = r->handler;
    s[S_STATUS_LINE] = r->status_line;
    s[S_CONTENT_TYPE] = r->content_type;
    s[S_LOG_ID] = r->log_id;
    s[S_USERAGENT_IP] = r->useragent_ip;
    s[S_USERAGENT_HOST] = r->useragent_host;
    s[S_CONN_LOG_ID] = c->log_id;
    s[S_CLIENT_IP] = c->client_ip;
    s[S_LOCAL_IP] = c->local_ip;
    s[S_REMOTE_HOST] = c->remote_host;
    s[S_REMOTE_LOGNAME] = c->remote_logname;
}

/* One block for the struct and its strings. */
static ws_detached *alloc_detached(ws_conn *wc, const char **src)
{
    size_t bytes = sizeof(ws_detached);
    ws_detached *d;
    char *at;
    int i;

    for (i = 0; i < S_COUNT; i++) {
        bytes += src[i] ? strlen(src[i]) + 1 : 0;
    }
    if (!(d = ws_conn_alloc(wc, bytes))) {
        return NULL;
    }
    memset(d, 0, sizeof(*d));
    at = (char *)(d + 1);
    for (i = 0; i < S_COUNT; i++) {
        if (src[i]) {
            size_t len = strlen(src[i]) + 1;

            d->str[i] = memcpy(at, src[i], len);
            at += len;
        }
    }
    return d;
}

static int copy_tables(ws_detached *d, request_rec *r)
{
    d->headers_out = ws_table_copy(r->headers_out);
    d->err_headers_out = ws_table_copy(r->err_headers_out);
    d->subprocess_env = ws_table_copy(r->subprocess_env);
    d->notes = ws_table_copy(r->notes);
    return (d->headers_out || !r->headers_out)
           && (d->err_headers_out || !r->err_headers_out)
           && (d->subprocess_env || !r->subprocess_env)
           && (d->notes || !r->notes);
}

static void free_tables(ws_detached *d)
{
    ws_table_free(d->headers_out);
    ws_table_free(d->err_headers_out);
    ws_table_free(d->subprocess_env);
    ws_table_free(d->notes);
}

static apr_port_t port_of(const apr_sockaddr_t *sa)
{
    return sa ? sa->port : 0;
}

static ws_detached *snapshot(ws_conn *wc, request_rec *r, conn_rec *c)
{
    const char *src[S_COUNT];
    ws_detached *d;

    pick_strings(src, r, c);
    if (!(d = alloc_detached(wc, src))) {
        return NULL;
    }
    if (!copy_tables(d, r)) {
        free_tables(d);
        return NULL;
    }
    d->server = r->server;
    d->base_server = c->base_server;
    d->conn_id = c->id;
    d->keepalives = c->keepalives;
    d->client_port = port_of(c->client_addr);
    d->local_port = port_of(c->local_addr);
    d->useragent_port = port_of(r->useragent_addr);
    d->useragent_is_client = !r->useragent_addr
                             || r->useragent_addr == c->client_addr;
    d->method_number = r->method_number;
    d->proto_num = r->proto_num;
    d->status = r->status;
    d->header_only = r->header_only;
    d->assbackwards = r->assbackwards;
    d->bytes_sent = r->bytes_sent;
    d->request_time = r->request_time;
    if (logio_module_ptr) {
        logio_counts *lc = ap_get_module_config(c->conn_config,
                                                logio_module_ptr);
        if (lc) {
            d->logio_in = lc->bytes_in;
            d->logio_out = lc->bytes_out;
        }
    }
    return d;
}

/* ---- rebuilding a request ---- */

/* A numeric address needs no lookup; an unparsable one (never seen) gets
 * a placeholder rather than a NULL the log handlers would follow. */
static apr_sockaddr_t *addr_of(apr_pool_t *p, const char *ip, apr_port_t port)
{
    apr_sockaddr_t *sa = NULL;

    if (!ip || apr_sockaddr_info_get(&sa, ip, APR_UNSPEC, port,
                                     APR_IPV4_ADDR_OK, p) != APR_SUCCESS) {
        apr_sockaddr_info_get(&sa, "0.0.0.0", APR_INET, port, 0, p);
    }
    return sa;
}

static conn_rec *rebuild_conn(const ws_detached *d, apr_pool_t *p,
                              apr_off_t bytes_in, apr_off_t bytes_out)
{
    conn_rec *c = apr_pcalloc(p, sizeof(*c));

    c->pool = p;
    c->base_server = d->base_server;
    c->conn_config = ap_create_conn_config(p);
    c->notes = apr_table_make(p, 1);
    c->id = d->conn_id;
    c->keepalive = AP_CONN_CLOSE;
    c->keepalives = d->keepalives;
    c->log_id = d->str[S_CONN_LOG_ID];
    /* apr_pstrdup keeps a NULL a NULL: fields that were unset stay so. */
    c->client_ip = apr_pstrdup(p, d->str[S_CLIENT_IP]);
    c->local_ip = apr_pstrdup(p, d->str[S_LOCAL_IP]);
    c->remote_host = apr_pstrdup(p, d->str[S_REMOTE_HOST]);
    c->remote_logname = apr_pstrdup(p, d->str[S_REMOTE_LOGNAME]);
    c->client_addr = addr_of(p, c->client_ip, d->client_port);
    c->local_addr = addr_of(p, c->local_ip, d->local_port);
    if (logio_module_ptr) {
        logio_counts *lc = apr_pcalloc(p, sizeof(*lc));

        lc->bytes_in = d->logio_in + bytes_in;
        lc->bytes_out = d->logio_out + bytes_out;
        ap_set_module_config(c->conn_config, logio_module_ptr, lc);
    }
    return c;
}

static void rebuild_strings(request_rec *r, const ws_detached *d)
{
    apr_pool_t *p = r->pool;

    r->method = d->str[S_METHOD];
    r->the_request = apr_pstrdup(p, d->str[S_THE_REQUEST]);
    r->protocol = apr_pstrdup(p, d->str[S_PROTOCOL]);
    r->uri = apr_pstrdup(p, d->str[S_URI]);
    r->unparsed_uri = apr_pstrdup(p, d->str[S_UNPARSED_URI]);
    r->args = apr_pstrdup(p, d->str[S_ARGS]);
    r->filename = apr_pstrdup(p, d->str[S_FILENAME]);
    r->canonical_filename = apr_pstrdup(p, d->str[S_CANONICAL_FILENAME]);
    r->path_info = apr_pstrdup(p, d->str[S_PATH_INFO]);
    r->hostname = d->str[S_HOSTNAME];
    r->user = apr_pstrdup(p, d->str[S_USER]);
    r->ap_auth_type = apr_pstrdup(p, d->str[S_AUTH_TYPE]);
    r->handler = d->str[S_HANDLER];
    r->status_line = d->str[S_STATUS_LINE];
    r->content_type = d->str[S_CONTENT_TYPE];
    r->log_id = d->str[S_LOG_ID];
    r->useragent_host = apr_pstrdup(p, d->str[S_USERAGENT_HOST]);
}

/* The request as it was when the connection detached, with its
 * connection, in p (which nothing else uses: any thread). */
static request_rec *rebuild(const ws_conn *wc, apr_pool_t *p,
                            apr_off_t bytes_in, apr_off_t bytes_out)
{
    const ws_detached *d = wc->detached;
    request_rec *r = apr_pcalloc(p, sizeof(*r));
    conn_rec *c = rebuild_conn(d, p, bytes_in, bytes_out);

    r->pool = p;
    r->connection = c;
    r->server = d->server;
    r->request_config = ap_create_request_config(p);
    /* The merged per-directory configuration lived in the request's pool:
     * the server's defaults stand in (HostnameLookups for %h). */
    r->per_dir_config = d->server->lookup_defaults;
    rebuild_strings(r, d);
    r->method_number = d->method_number;
    r->proto_num = d->proto_num;
    r->status = d->status;
    r->header_only = d->header_only;
    r->assbackwards = d->assbackwards;
    r->bytes_sent = d->bytes_sent;
    r->request_time = d->request_time;
    r->headers_in = table_of(p, wc->headers_in);
    r->headers_out = table_of(p, d->headers_out);
    r->err_headers_out = table_of(p, d->err_headers_out);
    r->subprocess_env = table_of(p, d->subprocess_env);
    r->notes = table_of(p, d->notes);
    r->trailers_in = apr_table_make(p, 1);
    r->trailers_out = apr_table_make(p, 1);
    if (r->unparsed_uri) {
        apr_uri_parse(p, r->unparsed_uri, &r->parsed_uri);
    }
    r->useragent_ip = d->str[S_USERAGENT_IP]
                      ? apr_pstrdup(p, d->str[S_USERAGENT_IP]) : c->client_ip;
    r->useragent_addr = d->useragent_is_client
                        ? c->client_addr
                        : addr_of(p, r->useragent_ip, d->useragent_port);
    return r;
}

request_rec *ws_detach_request(ws_conn *wc)
{
    request_rec *r;

    pthread_mutex_lock(&wc->lock);
    wc->request_taken = 1;
    r = wc->r ? wc->r : wc->r_late;
    if (!r && wc->detached) {
        apr_pool_t *p;

        if (apr_pool_create_unmanaged_ex(&p, NULL, NULL) == APR_SUCCESS) {
            r = wc->r_late = rebuild(wc, p, 0, 0);
        }
    }
    pthread_mutex_unlock(&wc->lock);
    return r;
}

void ws_detach_free(ws_conn *wc)
{
    if (wc->r_late) {
        apr_pool_destroy(wc->r_late->pool);
        wc->r_late = NULL;
    }
    if (wc->detached) {
        if (wc->detached->limit_hold_kept) {
            free(wc->limit_hold);    /* released by ws_conn_finish */
            wc->limit_hold = NULL;
        }
        free_tables(wc->detached);
        wc->detached = NULL;
    }
    ws_table_free(wc->headers_in);
    ws_table_free(wc->params);
    wc->headers_in = wc->params = NULL;
}

/* ---- the async engine's side ---- */

typedef enum {
    DETACH_NOT_NOW,                  /* a later turn may tell */
    DETACH_SOON,                     /* look again shortly */
    DETACH_NEVER,
    DETACH_NOW
} detach_verdict;

static int is_idle(async_conn *ac)
{
    ws_conn *wc = ac->wc;

    return !ws_async_conn_busy(ac) && !wc->finished && !wc->peer_closed
           && !wc->paused && !wc->unparsed && !ac->unread_waits
           && !__atomic_load_n(&wc->close_queued, __ATOMIC_ACQUIRE)
           && !ws_io_output_pending(&ac->io);
}

static detach_verdict judge(async_conn *ac, apr_time_t now)
{
    conn_rec *c = ac->c;

    if (!c || ac->no_detach || ac->phase != AC_OPEN) {
        return DETACH_NOT_NOW;
    }
    if (c->master || !c->cs || __atomic_load_n(&ac->wc->request_taken,
                                                __ATOMIC_ACQUIRE)) {
        return DETACH_NEVER;
    }
    if (!is_idle(ac)) {
        return DETACH_NOT_NOW;
    }
    if (!ac->io.direct) {
        return ac->detach_checks < DETACH_DIRECT_CHECKS ? DETACH_SOON
                                                        : DETACH_NEVER;
    }
    if (!ws_async_worker_has_left(ac, now)) {
        return DETACH_SOON;
    }
    return DETACH_NOW;
}

/* How ap_log_cerror names the client, for the lines that follow. */
static const char *client_for_logs(ws_conn *wc, conn_rec *c)
{
    char buf[128];

    snprintf(buf, sizeof(buf), "%s:%d", c->client_ip ? c->client_ip : "-",
             c->client_addr ? (int)c->client_addr->port : 0);
    return ws_conn_strdup(wc, buf);
}

/* WebSocketMaxConnections' place of the connection was in c->pool and
 * given back when r->pool goes: it moves out of both. */
static int keep_limit_hold(ws_conn *wc)
{
    ws_limit_hold *kept;

    if (!wc->limit_hold) {
        return 1;
    }
    if (!(kept = ws_limits_keep(wc->limit_hold, wc->r->pool))) {
        free_tables(wc->detached);
        wc->detached = NULL;
        return 0;
    }
    wc->limit_hold = kept;
    wc->detached->limit_hold_kept = 1;
    return 1;
}

/* Under wc->lock: the copy, and the request is no longer reachable from
 * the connection (request() rebuilds one from now on). */
static detach_verdict let_go_of_request(ws_conn *wc, conn_rec *c)
{
    detach_verdict v = DETACH_NOW;

    pthread_mutex_lock(&wc->lock);
    if (wc->request_taken) {
        v = DETACH_NEVER;
    }
    else if (wc->close_queued || wc->out_head) {
        v = DETACH_NOT_NOW;
    }
    else if (!(wc->detached = snapshot(wc, wc->r, c))
             || !keep_limit_hold(wc)) {
        v = DETACH_NEVER;
    }
    else {
        wc->log_client = client_for_logs(wc, c);
        wc->r = NULL;
        wc->c = NULL;
    }
    pthread_mutex_unlock(&wc->lock);
    return v;
}

/* 1 when detached, 0 when it stays attached (for now), -1 when the
 * connection failed. */
static int detach(async_conn *ac)
{
    ws_conn *wc = ac->wc;
    conn_rec *c = ac->c;
    apr_int16_t want = ac->polled;
    detach_verdict v;
    int fd = fcntl(ac->fd, F_DUPFD_CLOEXEC, 0);

    if (fd < 0) {
        return 0;                    /* out of descriptors: stay as we are */
    }
    if ((v = let_go_of_request(wc, c)) != DETACH_NOW) {
        close(fd);
        ac->no_detach = (v == DETACH_NEVER);
        return 0;
    }
    /* The original descriptor leaves epoll before its pool closes it:
     * epoll forgets a registration only when every descriptor of the
     * socket is closed, and the duplicate keeps it open. */
    ws_loop_poll_events(ac, 0);
    ac->fd = fd;
    ws_io_detach(&ac->io, fd);
    apr_pool_cleanup_kill(c->pool, wc, ws_conn_release);
    apr_pool_cleanup_kill(c->pool, ac, ws_async_free_conn);
    ac->c = NULL;
    ws_blocks_destroy_pool(c->pool);    /* its blocks to the cache */
    ap_log_error(APLOG_MARK, APLOG_TRACE1, 0, wc->s, WSLOGNO(00090) "WebSocket from %s "
                 "detached from its pools", wc->client_ip);
    if (ws_loop_poll_events(ac, want) != APR_SUCCESS) {
        ws_conn_abort(wc, APR_EGENERAL, "cannot poll");
        return -1;
    }
    return 1;
}

static apr_time_t recheck_in(const async_conn *ac)
{
    apr_interval_time_t wait = DETACH_RECHECK;
    int i;

    for (i = 0; i < ac->detach_checks && wait < DETACH_RECHECK_MAX; i++) {
        wait *= 2;
    }
    return wait < DETACH_RECHECK_MAX ? wait : DETACH_RECHECK_MAX;
}

apr_time_t ws_detach_try(async_conn *ac, apr_time_t now, apr_time_t deadline)
{
    apr_time_t soon;

    switch (judge(ac, now)) {
    case DETACH_NOT_NOW:
        return deadline;
    case DETACH_NEVER:
        ac->no_detach = 1;
        return deadline;
    case DETACH_SOON:
        soon = now + recheck_in(ac);
        ac->detach_checks++;
        return deadline && deadline < soon ? deadline : soon;
    case DETACH_NOW:
        break;
    }
    /* A failed connection is ended by its next service: right away. */
    return detach(ac) < 0 ? now : deadline;
}

/* The pool each event loop thread rebuilds requests in for their log
 * lines, cleared after each: a pool of its own per line would map and
 * unmap its blocks every time, and each munmap in a child of 30 threads
 * stops the other cores (a storm of closes, or a stop, ends thousands of
 * detached connections at once).  What a cleared pool keeps on its free
 * list is bounded; the pool lives as long as the thread (a loop thread
 * replaced after a plugin blocked it ends before its child does). */
#define LOG_POOL_KEEP (64 * 1024)

static __thread apr_pool_t *log_pool;

static apr_pool_t *thread_log_pool(void)
{
    if (!log_pool
        && apr_pool_create_unmanaged_ex(&log_pool, NULL, NULL) == APR_SUCCESS) {
        apr_allocator_max_free_set(apr_pool_allocator_get(log_pool),
                                   LOG_POOL_KEEP);
    }
    return log_pool;
}

void ws_detach_thread_exit(void)
{
    if (log_pool) {
        apr_pool_destroy(log_pool);
        log_pool = NULL;
    }
}

/* The access log line, from a request rebuilt for it. */
static void write_log(ws_conn *wc, const ws_io *io, int aborted)
{
    apr_pool_t *p = thread_log_pool();
    request_rec *r;

    if (!p) {
        return;
    }
    r = rebuild(wc, p, io->bytes_in, io->bytes_out);
    r->connection->aborted = aborted;
    ws_stats_log_notes(wc, r);
    ap_run_log_transaction(r);
    apr_pool_clear(p);
}

int ws_detach_close(async_conn *ac, ws_conn *wc)
{
    write_log(wc, &ac->io, ac->aborted);
    /* Apache's lingering close, on the descriptor: our FIN, then what the
     * client still sends is read and dropped (ws_async_linger). */
    return ac->aborted || shutdown(ac->fd, SHUT_WR) != 0;
}
