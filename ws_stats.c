/*
 * ws_stats.c - the WebSocket counters and their section of mod_status's
 * server-status (ws_stats.h).
 *
 * Layout in the shared memory (ws_shm.c): in each child slot, one block
 * of WS_STAT_COUNT 64-bit values, written by that child only; for the
 * server, one block of the counters of children that are gone.
 */
#include <stddef.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_protocol.h"
#include "apr_optional.h"
#include "apr_strings.h"
#include "mod_status.h"

#include "ws_conn.h"
#include "ws_redis.h"
#include "ws_shm.h"
#include "ws_stats.h"
#include "ws_async.h"

apr_int64_t *ws_stats_block;

/* mod_status is loaded (post_config, inherited by the children). */
static int counting;

static size_t block_size(int slots)
{
    (void)slots;
    return sizeof(apr_int64_t) * WS_STAT_COUNT;
}

/* What a child counted since the server started joins the server's
 * total; its gauges die with it. */
static void retire(apr_int64_t *block, apr_int64_t *total)
{
    int i;

    for (i = WS_STAT_GAUGES; i < WS_STAT_COUNT; i++) {
        apr_int64_t n = __atomic_exchange_n(&block[i], 0, __ATOMIC_RELAXED);

        if (n) {
            __atomic_add_fetch(&total[i], n, __ATOMIC_RELAXED);
        }
    }
    for (i = 0; i < WS_STAT_GAUGES; i++) {
        __atomic_store_n(&block[i], 0, __ATOMIC_RELAXED);
    }
}

static void slot_claimed(void *child, void *global, int prev_died)
{
    /* A clean owner retired its block already: only a dead one's is
     * left to count. */
    if (prev_died) {
        retire(child, global);
    }
}

static void slot_released(void *child, void *global)
{
    ws_stats_block = NULL;
    retire(child, global);
}

static ws_shm_user stats_user = {
    "statistics", block_size, sizeof(apr_int64_t) * WS_STAT_COUNT,
    slot_claimed, slot_released, 0, 0, 0, 0
};

void ws_stats_register(void)
{
    ws_shm_add_user(&stats_user);
}

void ws_stats_post_config(void)
{
    counting = ap_find_linked_module("mod_status.c") != NULL;
}

void ws_stats_child_init(apr_pool_t *pchild)
{
    (void)pchild;
    ws_stats_block = counting ? ws_shm_my_area(&stats_user) : NULL;
}

/* ---- connections ---- */

static apr_int64_t told(apr_uint64_t now, apr_uint64_t *before)
{
    apr_int64_t delta = (apr_int64_t)(now - *before);

    *before = now;
    return delta;
}

static void add_if(ws_stat which, apr_int64_t n)
{
    if (n) {
        __atomic_add_fetch(&ws_stats_block[which], n, __ATOMIC_RELAXED);
    }
}

void ws_stats_flush_conn(ws_conn *wc)
{
    ws_conn_stats *st = &wc->stats;
    apr_int64_t queued;

    if (st->open_gauge < 0) {
        return;                      /* never opened, or ended */
    }
    add_if(WS_STAT_MSGS_IN, told(wc->msgs_in, &st->told_msgs_in));
    add_if(WS_STAT_MSGS_OUT, told(wc->msgs_out, &st->told_msgs_out));
    add_if(WS_STAT_BYTES_IN, told(st->bytes_in, &st->told_bytes_in));
    add_if(WS_STAT_BYTES_OUT, told(st->bytes_out, &st->told_bytes_out));
    /* Queued by any thread since: read without the lock, as a gauge
     * may be (it is right again at the next flush). */
    queued = (apr_int64_t)(__atomic_load_n(&wc->out_bytes, __ATOMIC_RELAXED)
                           + __atomic_load_n(&wc->engine_bytes,
                                             __ATOMIC_RELAXED));
    add_if(WS_STAT_QUEUED, queued - st->told_queued);
    st->told_queued = queued;
}

void ws_stats_conn_open(ws_conn *wc)
{
    wc->stats.open_gauge = -1;
    if (!ws_stats_block) {
        return;
    }
    wc->stats.open_gauge = wc->c->master ? WS_STAT_OPEN_HTTP2
                         : wc->engine == &ws_engine_async ? WS_STAT_OPEN_ASYNC
                         : WS_STAT_OPEN_SYNC;
    add_if(wc->stats.open_gauge, 1);
    add_if(WS_STAT_OPENED, 1);
}

unsigned int ws_stats_close_code(const ws_conn *wc)
{
    /* Our Close echoes the peer's code when the peer closed first (1005
     * for one without a code), or says why we closed. */
    unsigned int sent = __atomic_load_n(&wc->close_code_sent,
                                        __ATOMIC_ACQUIRE);

    return sent ? sent : WS_CLOSE_ABNORMAL;
}

static ws_stat close_class(unsigned int code)
{
    switch (code) {
    case 1000: case 1005: return WS_STAT_CLOSE_NORMAL;
    case 1001: return WS_STAT_CLOSE_GOING_AWAY;
    case 1012: return WS_STAT_CLOSE_RESTART;
    case 1002: case 1003: case 1007: case 1009: case 1010:
        return WS_STAT_CLOSE_PROTOCOL;
    case 1008: return WS_STAT_CLOSE_POLICY;
    case 1011: case 1013: case 1014: return WS_STAT_CLOSE_SERVER;
    case 1006: return WS_STAT_CLOSE_ABNORMAL;
    default:
        return code >= 3000 && code <= 4999 ? WS_STAT_CLOSE_APPLICATION
                                            : WS_STAT_CLOSE_OTHER;
    }
}

void ws_stats_conn_end(ws_conn *wc)
{
    ws_conn_stats *st = &wc->stats;

    if (!ws_stats_block || st->open_gauge < 0) {
        return;
    }
    ws_stats_flush_conn(wc);
    add_if(WS_STAT_QUEUED, -st->told_queued);
    st->told_queued = 0;
    add_if(st->open_gauge, -1);
    add_if(close_class(ws_stats_close_code(wc)), 1);
    st->open_gauge = -1;
}

void ws_stats_log_notes(ws_conn *wc, request_rec *r)
{
    apr_table_setn(r->notes, "websocket-close-code",
                   apr_psprintf(r->pool, "%u", ws_stats_close_code(wc)));
    apr_table_setn(r->notes, "websocket-messages-in",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, wc->msgs_in));
    apr_table_setn(r->notes, "websocket-messages-out",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, wc->msgs_out));
    apr_table_setn(r->notes, "websocket-bytes-in",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT,
                                wc->stats.bytes_in));
    apr_table_setn(r->notes, "websocket-bytes-out",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT,
                                wc->stats.bytes_out));
}

/* ---- server-status ---- */

/* The blocks of every child, with the server's total of the children
 * gone; *children: those that run now. */
static void sum_blocks(apr_int64_t *sum, int *children)
{
    const apr_int64_t *gone = ws_shm_global_area(&stats_user);
    int slot, i;

    *children = 0;
    for (i = 0; i < WS_STAT_COUNT; i++) {
        sum[i] = gone && i >= WS_STAT_GAUGES
                 ? __atomic_load_n(&gone[i], __ATOMIC_RELAXED) : 0;
    }
    for (slot = 0; slot < ws_shm_slots(); slot++) {
        const apr_int64_t *b = ws_shm_child_area(&stats_user, slot);
        pid_t pid = ws_shm_slot_pid(slot);
        int alive = ws_shm_pid_alive(pid);

        if (!pid || !b) {
            continue;
        }
        *children += alive;
        /* A dead child's gauges mean nothing; what it counted still
         * happened (it joins the total when its slot is taken). */
        for (i = alive ? 0 : WS_STAT_GAUGES; i < WS_STAT_COUNT; i++) {
            sum[i] += __atomic_load_n(&b[i], __ATOMIC_RELAXED);
        }
    }
    for (i = 0; i < WS_STAT_GAUGES; i++) {
        if (sum[i] < 0) {
            sum[i] = 0;              /* a gauge read mid-change */
        }
    }
}

typedef struct status_line {
    const char *key;                 /* ?auto */
    const char *label;               /* HTML */
    apr_int64_t value;
} status_line;

#define LINE(k, l, v) do { \
        lines[n].key = (k); lines[n].label = (l); lines[n].value = (v); \
        n++; \
    } while (0)

/* The Redis relay's figures (ws_redis.c keeps them in the node area),
 * when this server has WebSocketRedis. */
static int collect_redis(status_line *lines)
{
    ws_redis_stats rs;
    int n = 0;

    ws_redis_stats_get(&rs);
    if (!rs.configured) {
        return 0;
    }
    LINE("WebSocketRedisConnected", "Redis relay connected", rs.connected);
    LINE("WebSocketRedisRelayPid", "Child running the Redis relay",
         rs.relay_pid);
    LINE("WebSocketRedisReconnects", "Redis reconnections",
         (apr_int64_t)rs.reconnects);
    LINE("WebSocketRedisOutages", "Redis found unavailable",
         (apr_int64_t)rs.outages);
    LINE("WebSocketRedisMessagesOut", "Messages published to Redis",
         (apr_int64_t)rs.relayed_out);
    LINE("WebSocketRedisMessagesIn", "Messages from other nodes",
         (apr_int64_t)rs.relayed_in);
    LINE("WebSocketRedisNotReplicated", "Publishes kept on this node "
         "(Redis away)", (apr_int64_t)rs.not_replicated);
    LINE("WebSocketRedisDroppedIn", "Messages from Redis refused",
         (apr_int64_t)rs.dropped_in);
    LINE("WebSocketRedisChannels", "Redis channels subscribed",
         (apr_int64_t)rs.channels);
    return n;
}

static int collect(apr_pool_t *p, status_line *lines)
{
    apr_int64_t s[WS_STAT_COUNT];
    int n = 0, children;
    ws_ring *ring = ws_shm_ring();

    sum_blocks(s, &children);
    LINE("WebSocketConnections", "Open WebSockets",
         s[WS_STAT_OPEN_ASYNC] + s[WS_STAT_OPEN_SYNC] + s[WS_STAT_OPEN_HTTP2]);
    LINE("WebSocketConnectionsAsync", "on the event loops",
         s[WS_STAT_OPEN_ASYNC]);
    LINE("WebSocketConnectionsSync", "on a thread of their own (HTTP/1)",
         s[WS_STAT_OPEN_SYNC]);
    LINE("WebSocketConnectionsHTTP2", "on HTTP/2 streams",
         s[WS_STAT_OPEN_HTTP2]);
    LINE("WebSocketConnectionsOpened", "WebSockets opened since start",
         s[WS_STAT_OPENED]);
    LINE("WebSocketMessagesIn", "Messages received", s[WS_STAT_MSGS_IN]);
    LINE("WebSocketMessagesOut", "Messages sent", s[WS_STAT_MSGS_OUT]);
    LINE("WebSocketBytesIn", "Bytes received (frames)", s[WS_STAT_BYTES_IN]);
    LINE("WebSocketBytesOut", "Bytes sent (frames)", s[WS_STAT_BYTES_OUT]);
    LINE("WebSocketBytesQueued", "Bytes queued for sending now",
         s[WS_STAT_QUEUED]);
    LINE("WebSocketClosesNormal", "Closed 1000 (normal) or 1005",
         s[WS_STAT_CLOSE_NORMAL]);
    LINE("WebSocketClosesGoingAway", "Closed 1001 (going away)",
         s[WS_STAT_CLOSE_GOING_AWAY]);
    LINE("WebSocketClosesRestart", "Closed 1012 (service restart)",
         s[WS_STAT_CLOSE_RESTART]);
    LINE("WebSocketClosesProtocolError",
         "Closed 1002, 1003, 1007, 1009, 1010 (the peer's error)",
         s[WS_STAT_CLOSE_PROTOCOL]);
    LINE("WebSocketClosesPolicy", "Closed 1008 (policy, slow reader)",
         s[WS_STAT_CLOSE_POLICY]);
    LINE("WebSocketClosesServerError", "Closed 1011, 1013, 1014 (server)",
         s[WS_STAT_CLOSE_SERVER]);
    LINE("WebSocketClosesAbnormal", "Ended without a Close (1006)",
         s[WS_STAT_CLOSE_ABNORMAL]);
    LINE("WebSocketClosesApplication", "Closed 3000-4999 (application)",
         s[WS_STAT_CLOSE_APPLICATION]);
    LINE("WebSocketClosesOther", "Closed with another code",
         s[WS_STAT_CLOSE_OTHER]);
    LINE("WebSocketRefusedMaxConnections",
         "Handshakes refused 503 (WebSocketMaxConnections)",
         s[WS_STAT_REFUSED_MAX]);
    LINE("WebSocketRefusedPerIP",
         "Handshakes refused 429 (WebSocketMaxConnectionsPerIP)",
         s[WS_STAT_REFUSED_PER_IP]);
    LINE("WebSocketDispatchThreadsBusy", "Dispatch threads in a plugin call",
         s[WS_STAT_DISPATCH_BUSY]);
    LINE("WebSocketSlowPlugins", "Slow plugins detected (per child)",
         s[WS_STAT_SLOW_PLUGINS]);
    LINE("WebSocketLoopTakeovers", "Event loops taken over from a plugin",
         s[WS_STAT_LOOP_TAKEOVERS]);
    LINE("WebSocketChildren", "Children counting", children);
    if (ring) {
        ws_ring_stats rs;
        long topics, subscribers;

        ws_ring_stats_get(ring, &rs);
        ws_shm_topic_totals(p, &topics, &subscribers);
        LINE("WebSocketTopics", "Topics with subscribers", topics);
        LINE("WebSocketTopicSubscribers", "Topic subscriptions", subscribers);
        LINE("WebSocketTopicPublishes", "Messages published to topics",
             (apr_int64_t)rs.publishes);
        LINE("WebSocketTopicBytes", "Bytes published to topics",
             (apr_int64_t)rs.payload_bytes);
    }
    n += collect_redis(lines + n);
    return n;
}

#define MAX_LINES 48

static int status_hook(request_rec *r, int flags)
{
    status_line lines[MAX_LINES];
    int n, i;

    if (!ws_shm_slots() || !ws_shm_global_area(&stats_user)) {
        if (!(flags & AP_STATUS_SHORT)) {
            ap_rputs("<hr>\n<h2>WebSockets</h2>\n<p>No statistics: the "
                     "shared memory is not available (see the error "
                     "log).</p>\n", r);
        }
        return OK;
    }
    n = collect(r->pool, lines);
    if (flags & AP_STATUS_SHORT) {
        for (i = 0; i < n; i++) {
            ap_rprintf(r, "%s: %" APR_INT64_T_FMT "\n", lines[i].key,
                       lines[i].value);
        }
        return OK;
    }
    ap_rputs("<hr>\n<h2>WebSockets</h2>\n", r);
    ap_rputs(flags & AP_STATUS_NOTABLE ? "<dl>\n" : "<table>\n", r);
    for (i = 0; i < n; i++) {
        ap_rprintf(r, flags & AP_STATUS_NOTABLE
                   ? "<dt>%s</dt><dd>%" APR_INT64_T_FMT "</dd>\n"
                   : "<tr><td>%s</td><td align=\"right\">%" APR_INT64_T_FMT
                     "</td></tr>\n", lines[i].label, lines[i].value);
    }
    ap_rputs(flags & AP_STATUS_NOTABLE ? "</dl>\n" : "</table>\n", r);
    return OK;
}

void ws_stats_register_hooks(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
