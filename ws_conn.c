/*
 * ws_conn.c - one WebSocket connection: its creation, the plugin's
 * lifecycle callbacks, its timers (closing handshake, idle, keepalive
 * pings, lifetime) and its end.  What it receives is ws_in.c's, what it
 * sends ws_out.c's, what plugins call ws_api.c's.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "apr_strings.h"

#include "ws_conn.h"
#include "ws_detach.h"
#include "ws_limits.h"
#include "ws_mem.h"
#include "ws_topic.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* ---- creation ---- */

/* Strings and arrays the connection keeps for plugins: malloc'd, so that
 * they outlive Apache's pools when the connection is detached from them
 * (ws_detach.c). */
struct ws_owned {
    struct ws_owned *next;
    union {
        char bytes[1];
        void *align;
    } data;
};

void *ws_conn_alloc(ws_conn *wc, size_t size)
{
    struct ws_owned *o = malloc(offsetof(struct ws_owned, data) + size);

    if (!o) {
        return NULL;
    }
    o->next = wc->owned;
    wc->owned = o;
    return o->data.bytes;
}

const char *ws_conn_strdup(ws_conn *wc, const char *s)
{
    size_t n = s ? strlen(s) + 1 : 0;
    char *copy = s ? ws_conn_alloc(wc, n) : NULL;

    return copy ? memcpy(copy, s, n) : NULL;
}

/* The offered subprotocols, as an array no pool owns (nothing is pushed
 * to it). */
static apr_array_header_t *own_protocols(ws_conn *wc,
                                         const apr_array_header_t *offered)
{
    apr_array_header_t *a;
    const char **elts;
    int i, n = offered ? offered->nelts : 0;

    a = ws_conn_alloc(wc, sizeof(*a) + sizeof(char *) * (size_t)(n ? n : 1));
    if (!a) {
        return NULL;
    }
    elts = (const char **)(a + 1);
    for (i = 0; i < n; i++) {
        elts[i] = ws_conn_strdup(wc, APR_ARRAY_IDX(offered, i, const char *));
        if (!elts[i]) {
            return NULL;             /* out of memory: no NULL in the list */
        }
    }
    memset(a, 0, sizeof(*a));
    a->elt_size = sizeof(char *);
    a->nelts = a->nalloc = n;
    a->elts = (char *)elts;
    return a;
}

/* Frees what the connection holds outside a pool: the codec's buffers,
 * frames queued but never written (a refused or aborted connection), and
 * the connection itself.  A pool cleanup of c->pool, or called by the
 * async engine for a connection it detached. */
apr_status_t ws_conn_release(void *data)
{
    ws_conn *wc = data;

    ws_topic_forget(wc);
    ws_mem_unregister(wc);
    ws_parser_destroy(wc->parser);
    ws_out_frames_free(wc->out_head);
    ws_deflate_destroy(wc->deflate);
    ws_deflate_buf_free(&wc->deflated);
    ws_deflate_buf_free(&wc->inflated);
    free(wc->unparsed);
    ws_detach_free(wc);
    while (wc->owned) {
        struct ws_owned *next = wc->owned->next;

        free(wc->owned);
        wc->owned = next;
    }
    if (wc->locks_made) {
        pthread_mutex_destroy(&wc->lock);
        pthread_mutex_destroy(&wc->send_lock);
    }
    free(wc);
    return APR_SUCCESS;
}

/* A compressed message may be a little larger than the message itself
 * (stored blocks cost 5 bytes per 64 KiB); the inflated size is checked
 * exactly while inflating. */
static uint64_t wire_limit(uint64_t max_message, int compressed)
{
    return compressed ? max_message + (max_message >> 12) + 1024 : max_message;
}

/* The part of the path after the section that configured the handler.
 * For a <Location>, what follows its prefix in the URI (Apache's own
 * path_info is relative to the DocumentRoot's files, which have nothing
 * to do with a WebSocket's address: a directory of the same name, or a
 * nested <Location>, would cut it elsewhere); for a <LocationMatch>, what
 * follows the match; for a <Directory> or .htaccess, Apache's path_info. */
static const char *rest_of_path(request_rec *r, const ws_plugin_ref *ref,
                                ws_conn *wc)
{
    const char *uri = r->uri ? r->uri : "";
    size_t n = ref->section ? strlen(ref->section) : 0;

    if (ref->section_is_location && ref->section_regex) {
        ap_regmatch_t m[1];

        if (!ap_regexec(ref->section_regex, uri, 1, m, 0) && m[0].rm_eo >= 0) {
            return ws_conn_strdup(wc, uri + m[0].rm_eo);
        }
    }
    else if (ref->section_is_location) {
        while (n && ref->section[n - 1] == '/') {
            n--;
        }
        if (!strncmp(uri, ref->section, n)
            && (uri[n] == '/' || uri[n] == '\0')) {
            return ws_conn_strdup(wc, uri + n);
        }
    }
    return ws_conn_strdup(wc, r->path_info ? r->path_info : "");
}

/* Everything plugins may read until on_disconnect is copied out of the
 * request's pool: the connection may outlive it (ws_detach.c).  The
 * merged configuration too, which lives in r->pool. */
static int copy_request_facts(ws_conn *wc, request_rec *r,
                              const ws_dir_conf *conf,
                              apr_array_header_t *protocols,
                              const char *extensions)
{
    wc->conf_copy = *conf;
    wc->conf_copy.params = NULL;          /* wc->params */
    wc->conf_copy.trusted_origins = NULL; /* the handshake's only */
    wc->conf = &wc->conf_copy;
    wc->params = ws_table_copy(conf->params);
    wc->headers_in = ws_table_copy(r->headers_in);
    wc->client_ip = ws_conn_strdup(wc, r->useragent_ip ? r->useragent_ip
                                       : r->connection->client_ip);
    wc->user = ws_conn_strdup(wc, r->user);
    wc->query = ws_conn_strdup(wc, r->args);
    wc->path_info = rest_of_path(r, conf->handler, wc);
    wc->extensions = ws_conn_strdup(wc, extensions);
    wc->protocols = own_protocols(wc, protocols);
    /* Out of memory is a failure, not a NULL a plugin would be given. */
    return wc->client_ip && wc->path_info && wc->protocols
           && (wc->user || !r->user) && (wc->query || !r->args)
           && (wc->extensions || !extensions)
           && (wc->params || !conf->params)
           && (wc->headers_in || !r->headers_in);
}

/* Unique in the server: the process's pid, then a counter. */
static apr_uint64_t next_conn_id(void)
{
    static apr_uint32_t serial;

    return ((apr_uint64_t)getpid() << 32)
           | __atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED);
}

ws_conn *ws_conn_create(request_rec *r, const ws_dir_conf *conf,
                        apr_array_header_t *protocols,
                        const ws_deflate_params *deflate,
                        const char *extensions)
{
    /* Freed with the connection's pool, not the request's: a plugin
     * thread that races the end of the connection then finds it marked
     * finished instead of freed memory (the async engine ends r->pool
     * first).  Malloc'd, so that a detached connection keeps it. */
    ws_conn *wc = calloc(1, sizeof(*wc));
    uint64_t max_message = (uint64_t)ws_conf_max_message_size(conf);
    ws_parser_config pc;

    if (!wc) {
        return NULL;
    }
    apr_pool_cleanup_register(r->connection->pool, wc, ws_conn_release,
                              apr_pool_cleanup_null);
    wc->r = r;
    wc->c = r->connection;
    wc->s = r->server;
    wc->id = next_conn_id();
    wc->plugin = conf->handler->plugin;
    if (!copy_request_facts(wc, r, conf, protocols, extensions)) {
        return NULL;
    }
    wc->out_limit = (apr_size_t)ws_conf_send_queue_limit(conf);
    wc->frag_size = ws_conf_fragment_size(conf);
    wc->last_activity = wc->idle_anchor = wc->last_ping = apr_time_now();
    wc->stats.open_gauge = -1;

    memset(&pc, 0, sizeof(pc));
    pc.role = WS_ROLE_SERVER;
    pc.max_message_size = wire_limit(max_message, deflate != NULL);
    /* A plugin that takes messages as they come gets no whole ones. */
    pc.assemble = !(ws_conn_plugin_v2(wc) && ws_conn_plugin_v2(wc)->on_fragment);
    pc.allow_rsv1 = deflate != NULL;
    pc.allow_reserved_close_codes = conf->allow_reserved_codes > 0;
    pc.quiet_frames = 1;             /* ws_conn_feed has no use for them */
    wc->parser = ws_parser_create(&pc);
    if (!wc->parser) {
        return NULL;
    }
    if (deflate && !(wc->deflate = ws_deflate_create(deflate, max_message))) {
        return NULL;
    }
    if (pthread_mutex_init(&wc->lock, NULL) != 0) {
        return NULL;
    }
    if (pthread_mutex_init(&wc->send_lock, NULL) != 0) {
        pthread_mutex_destroy(&wc->lock);
        return NULL;
    }
    wc->locks_made = 1;
    ws_api_init(wc);
    ws_mem_register(wc);
    return wc;
}

/* ---- the plugin ---- */

/* The plugin was checked when it was loaded: a version 2 one is as large
 * as a WebSocketPlugin2. */
const WebSocketPlugin2 *ws_conn_plugin_v2(const ws_conn *wc)
{
    return wc->plugin->version >= WEBSOCKET_PLUGIN_VERSION_2
           ? (const WebSocketPlugin2 *)(const void *)wc->plugin : NULL;
}

void ws_conn_watch_begin(ws_conn *wc, const char *what)
{
    if (wc->engine->call_begin) {
        wc->engine->call_begin(wc, what);
    }
}

int ws_conn_watch_end(ws_conn *wc)
{
    if (wc->engine->call_end && !wc->engine->call_end(wc)) {
        /* Another thread runs the loop now: parse nothing more here; the
         * rest of the input waits until the connection is handed back. */
        wc->paused = 1;
        return 0;
    }
    return 1;
}

int ws_conn_connect_plugin(ws_conn *wc)
{
    if (!wc->plugin->on_connect) {
        wc->plugin_private = NULL;
        return 1;
    }
    wc->connect_thread = apr_os_thread_current();
    wc->in_on_connect = 1;
    wc->plugin_private = wc->plugin->on_connect(&wc->server);
    wc->in_on_connect = 0;
    if (wc->plugin_private) {
        return 1;
    }
    /* A thread the plugin started may have sent already: stop accepting,
     * and take the connection off the engine's lists. */
    pthread_mutex_lock(&wc->lock);
    wc->finished = 1;
    wc->close_queued = 1;
    pthread_mutex_unlock(&wc->lock);
    if (wc->engine->detach) {
        wc->engine->detach(wc);
    }
    return 0;
}

void ws_conn_open(ws_conn *wc)
{
    const WebSocketPlugin2 *p = ws_conn_plugin_v2(wc);

    wc->opened = apr_time_now();
    ws_stats_conn_open(wc);
    if (p && p->on_open) {
        ws_conn_watch_begin(wc, "on_open");
        p->on_open(wc->plugin_private, &wc->server);
        ws_conn_watch_end(wc);
    }
}

void ws_conn_drained(ws_conn *wc)
{
    const WebSocketPlugin2 *p = ws_conn_plugin_v2(wc);

    if (p && p->on_drain) {
        ws_conn_watch_begin(wc, "on_drain");
        p->on_drain(wc->plugin_private, &wc->server);
        ws_conn_watch_end(wc);
    }
}

/* apache-websocket plugins may treat a text message as a C string: the
 * byte after the message is always writable (ws_conn_feed's contract),
 * so it is set to NUL for the call and restored after. */
void ws_conn_call_plugin(ws_conn *wc, int type, uint8_t *data, size_t len)
{
    uint8_t saved = data[len];

    data[len] = '\0';
    wc->plugin->on_message(wc->plugin_private, &wc->server, type, data, len);
    data[len] = saved;
}

void ws_plugin_mark_slow(ws_plugin_ref *ref, server_rec *s, const char *why)
{
    if (ref->slow) {
        return;
    }
    ref->slow = 1;
    ws_stats_add(WS_STAT_SLOW_PLUGINS, 1);
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, WSLOGNO(00021) "plugin %s (%s) %s; its "
                 "messages now run on the dispatch threads "
                 "(WebSocketSlowPlugin)", ref->symbol, ref->path, why);
}

void ws_conn_pause_input(ws_conn *wc, int paused)
{
    __atomic_store_n(&wc->input_paused, paused, __ATOMIC_RELEASE);
    pthread_mutex_lock(&wc->lock);
    if (!wc->finished) {
        wc->engine->wake(wc);
    }
    pthread_mutex_unlock(&wc->lock);
}

int ws_conn_input_paused(const ws_conn *wc)
{
    return __atomic_load_n(&wc->input_paused, __ATOMIC_ACQUIRE);
}

void ws_conn_fail(ws_conn *wc, uint16_t code, const char *why)
{
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s,
                 WSLOGNO(00022) "failing WebSocket from %s with %u: %s",
                 wc->client_ip, (unsigned)code, why);
    if (!wc->fail_code) {
        wc->fail_code = code;
    }
    wc->peer_closed = 1;
    ws_conn_close(wc, code, why);
}

/* ---- timers ---- */

static apr_time_t earliest(apr_time_t a, apr_time_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

/* Idle means no data message either way: a connection that only pushes
 * to a quiet client is busy, not idle. */
static apr_time_t last_data(const ws_conn *wc)
{
    apr_time_t out = __atomic_load_n(&wc->last_data_out, __ATOMIC_RELAXED);

    return out > wc->last_activity ? out : wc->last_activity;
}

apr_time_t ws_conn_next_deadline(const ws_conn *wc)
{
    apr_interval_time_t idle = ws_conf_idle_timeout(wc->conf);
    apr_interval_time_t ping = ws_conf_ping_interval(wc->conf);
    apr_interval_time_t life = ws_conf_max_lifetime(wc->conf);
    apr_time_t next = wc->close_deadline;

    if (wc->close_deadline) {
        return next;
    }
    if (idle) {
        next = earliest(next, wc->idle_anchor + idle);
    }
    if (ping) {
        next = earliest(next, wc->ping_sent
                              ? wc->ping_sent + ws_conf_ping_timeout(wc->conf)
                              : wc->last_ping + ping);
    }
    if (life && wc->opened) {
        next = earliest(next, wc->opened + life);
    }
    return next;
}

/* The idle timer fires at idle_anchor + idle; activity since then only
 * moves the anchor, so that messages never touch the engine's timers. */
static void idle_timer(ws_conn *wc, apr_time_t now)
{
    apr_interval_time_t idle = ws_conf_idle_timeout(wc->conf);
    apr_time_t last = last_data(wc);

    if (!idle || now < wc->idle_anchor + idle) {
        return;
    }
    if (now - last < idle) {
        wc->idle_anchor = last;
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s, WSLOGNO(00023) "closing WebSocket from "
                 "%s: no message either way for %" APR_TIME_T_FMT "s "
                 "(WebSocketIdleTimeout)", wc->client_ip,
                 apr_time_sec(now - last));
    wc->fail_code = WS_CLOSE_GOING_AWAY;
    ws_conn_close(wc, WS_CLOSE_GOING_AWAY, "idle timeout");
}

/* A Ping after ping_interval without one, unless the peer was heard
 * since (that proves it alive); no Pong within ping_timeout ends the
 * connection: a peer that answers nothing will not answer a Close. */
static void ping_timer(ws_conn *wc, apr_time_t now)
{
    apr_interval_time_t every = ws_conf_ping_interval(wc->conf);
    apr_interval_time_t wait = ws_conf_ping_timeout(wc->conf);
    uint8_t payload[8];
    int i;

    if (!every) {
        return;
    }
    if (wc->ping_sent) {
        if (now >= wc->ping_sent + wait) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s, WSLOGNO(00024) "closing WebSocket "
                         "from %s: no Pong within %" APR_TIME_T_FMT " ms of "
                         "our Ping (WebSocketPingTimeout)", wc->client_ip,
                         apr_time_as_msec(wait));
            ws_conn_abort(wc, APR_TIMEUP, "no Pong");
        }
        return;
    }
    if (now < wc->last_ping + every) {
        return;
    }
    if (wc->last_activity > wc->last_ping) {
        wc->last_ping = wc->last_activity;   /* heard since: not yet */
        if (now < wc->last_ping + every) {
            return;
        }
    }
    for (i = 0; i < 8; i++) {
        payload[i] = (uint8_t)(now >> (8 * i));
    }
    if (ws_conn_send_message(wc, WS_OP_PING, payload, sizeof(payload))
        == WEBSOCKET_OK) {
        wc->ping_sent = wc->last_ping = now;
    }
}

static void lifetime_timer(ws_conn *wc, apr_time_t now)
{
    apr_interval_time_t life = ws_conf_max_lifetime(wc->conf);

    if (life && wc->opened && now >= wc->opened + life) {
        WS_CONN_LOG(APLOG_DEBUG, 0, wc, WSLOGNO(00025) "closing WebSocket: "
                      "WebSocketMaxLifetime reached");
        wc->fail_code = WS_CLOSE_GOING_AWAY;
        ws_conn_close(wc, WS_CLOSE_GOING_AWAY, "maximum lifetime reached");
    }
}

void ws_conn_timers(ws_conn *wc, apr_time_t now)
{
    /* The closing handshake's deadline is ws_conn_done's to judge. */
    if (wc->close_deadline || wc->peer_closed) {
        return;
    }
    idle_timer(wc, now);
    ping_timer(wc, now);
    lifetime_timer(wc, now);
}

/* ---- the end ---- */

int ws_conn_done(ws_conn *wc, apr_time_t now, int engine_output)
{
    int close_queued, output_pending;

    /* The common case, an open connection, needs no lock. */
    if (!__atomic_load_n(&wc->close_queued, __ATOMIC_ACQUIRE)) {
        return 0;
    }
    pthread_mutex_lock(&wc->lock);
    close_queued = wc->close_queued;
    output_pending = engine_output || wc->out_head != NULL;
    pthread_mutex_unlock(&wc->lock);

    if (!close_queued) {
        return 0;
    }
    /* One deadline for the whole closing handshake: our Close going out
     * and the peer's coming in.  A peer that neither reads nor answers
     * cannot hold the connection longer than WebSocketCloseTimeout. */
    if (!wc->close_deadline) {
        wc->close_deadline = now + ws_conf_close_timeout(wc->conf);
    }
    if (now >= wc->close_deadline) {
        WS_CONN_LOG(APLOG_DEBUG, 0, wc, WSLOGNO(00026) "closing handshake "
                      "with %s timed out", wc->client_ip);
        return 1;
    }
    return !output_pending && wc->peer_closed;
}

uint16_t ws_conn_stop_code(void)
{
    int mine;

    /* The parent moves the running generation on before it tells the
     * children to stop, for a restart of any kind; a stop leaves it. */
    if (!ap_scoreboard_image
        || ap_mpm_query(AP_MPMQ_GENERATION, &mine) != APR_SUCCESS) {
        return WS_CLOSE_GOING_AWAY;
    }
    return ap_scoreboard_image->global->running_generation != mine
           ? WS_CLOSE_SERVICE_RESTART : WS_CLOSE_GOING_AWAY;
}

void ws_conn_close_for_stop(ws_conn *wc)
{
    uint16_t code = ws_conn_stop_code();

    ws_conn_close(wc, code, code == WS_CLOSE_SERVICE_RESTART
                            ? "server restarting" : "server shutting down");
}

void ws_conn_abort(ws_conn *wc, apr_status_t why, const char *what)
{
    WS_CONN_LOG(APLOG_DEBUG, why, wc,
                  WSLOGNO(00027) "WebSocket from %s ended without a closing handshake: %s",
                  wc->client_ip, what);
    wc->peer_closed = 1;
    pthread_mutex_lock(&wc->lock);
    wc->close_queued = 1;
    pthread_mutex_unlock(&wc->lock);
}

/* on_close's code: the peer's Close, else why the module failed the
 * connection, else 1006 (it vanished). */
static void tell_close(ws_conn *wc)
{
    const WebSocketPlugin2 *p = ws_conn_plugin_v2(wc);
    unsigned int code = wc->peer_close_code ? wc->peer_close_code
                      : wc->fail_code ? wc->fail_code : WS_CLOSE_ABNORMAL;

    if (p && p->on_close) {
        p->on_close(wc->plugin_private, &wc->server, code,
                    wc->peer_close_code ? wc->peer_reason : "",
                    wc->peer_close_code ? wc->peer_reason_len : 0);
    }
}

void ws_conn_finish(ws_conn *wc)
{
    ws_out_frame *unsent;
    apr_size_t dropped;

    pthread_mutex_lock(&wc->lock);
    wc->finished = 1;
    wc->close_queued = 1;
    dropped = ws_conn_drop_queue_locked(wc, &unsent);
    pthread_mutex_unlock(&wc->lock);
    ws_out_frames_free(unsent);
    ws_mem_add(wc, -(apr_off_t)dropped);
    /* Its topics first: no publish may reach it from now on. */
    ws_topic_forget(wc);

    tell_close(wc);
    if (wc->plugin->on_disconnect) {
        wc->plugin->on_disconnect(wc->plugin_private, &wc->server);
    }
    ws_stats_conn_end(wc);
    ws_limits_release(wc->limit_hold);
    /* Any thread (a slow plugin's on_disconnect runs on a dispatch
     * thread): the connection's log, not the request's pool. */
    WS_CONN_LOG(APLOG_DEBUG, 0, wc,
                  WSLOGNO(00028) "WebSocket closed after %" APR_UINT64_T_FMT " messages in, %"
                  APR_UINT64_T_FMT " out", wc->msgs_in, wc->msgs_out);
}
