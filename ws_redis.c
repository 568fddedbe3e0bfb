/*
 * ws_redis.c - WebSocketRedis: its directives, the node area of the
 * shared memory, the election of the node's relay, the state publishers
 * read, and the counters (ws_redis.h).
 *
 * Election.  Every child runs one candidate thread.  It waits on a
 * robust process-shared mutex in the node area (a timed lock, so that it
 * can notice it must stop); the thread holding it is the node's relay
 * (ws_redis_relay.c) and unlocks it when its child stops.  When the
 * holder dies instead, the kernel hands the mutex to one waiter with
 * EOWNERDEAD: the relay moves to another child without delay.  A
 * candidate announces its generation; a relay of an older generation
 * (a graceful restart, perhaps with another WebSocketRedis) steps down.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                  /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_mpm.h"
#include "apr_strings.h"
#include "apr_general.h"

#include "ws_redis_int.h"
#include "ws_shm.h"
#include "ws_thread.h"

APLOG_USE_MODULE(websocket);

/* ---- configuration ---- */

static ws_redis_conf conf = { .prefix = "ws:", .prefix_len = 3,
                              .timeout = 2 * APR_USEC_PER_SEC };
static int configured;

const ws_redis_conf *ws_redis_conf_get(void)
{
    return &conf;
}

int ws_redis_enabled(void)
{
    return configured && ws_shm_ring() && ws_redis_node_get() != NULL;
}

/* "[user]:password@" (without the '@'), percent-decoded. */
static const char *parse_userinfo(apr_pool_t *p, char *userinfo)
{
    char *colon = strchr(userinfo, ':');

    if (!colon) {
        return "the password must follow a ':' (redis://:password@host)";
    }
    *colon = '\0';
    if (ap_unescape_url(userinfo) != OK || ap_unescape_url(colon + 1) != OK) {
        return "bad %-escape in the user or password";
    }
    conf.user = *userinfo ? apr_pstrdup(p, userinfo) : NULL;
    conf.password = apr_pstrdup(p, colon + 1);
    return NULL;
}

/* host[:port][/db] */
static const char *parse_tcp(apr_pool_t *p, char *rest)
{
    char *slash = strchr(rest, '/'), *scope = NULL, *end;
    apr_port_t port = 0;
    long db;

    if (slash) {
        *slash++ = '\0';
        db = strtol(slash, &end, 10);
        if (*slash && (end == slash || *end || db < 0 || db > 1000000)) {
            return "the database must be a number (redis://host:port/2)";
        }
        conf.db = *slash ? (int)db : 0;
    }
    if (apr_parse_addr_port((char **)&conf.host, &scope, &port, rest, p)
        != APR_SUCCESS || !conf.host || scope) {
        return "expected host[:port] after redis://";
    }
    conf.port = port ? port : 6379;
    conf.where = apr_psprintf(p, "%s:%d", conf.host, conf.port);
    return NULL;
}

/* /path[?db=N] */
static const char *parse_unix(apr_pool_t *p, char *rest)
{
    char *query = strchr(rest, '?'), *end;

    if (query) {
        *query++ = '\0';
        if (strncmp(query, "db=", 3) || !query[3]
            || (conf.db = (int)strtol(query + 3, &end, 10)) < 0 || *end) {
            return "a Unix socket takes ?db=N and nothing else";
        }
    }
    if (*rest != '/') {
        return "a Unix socket needs an absolute path";
    }
    conf.socket_path = apr_pstrdup(p, rest);
    conf.where = conf.socket_path;
    return NULL;
}

/* redis://[[user]:password@]host[:port][/db], unix://[[user]:password@]
 * /path[?db=N], unix:/path or /path. */
static const char *parse_url(apr_pool_t *p, const char *url)
{
    char *s = apr_pstrdup(p, url), *at;
    int tcp;

    conf.host = conf.socket_path = conf.user = conf.password = NULL;
    conf.db = 0;
    if (!strncasecmp(s, "redis://", 8)) {
        tcp = 1, s += 8;
    }
    else if (!strncasecmp(s, "unix://", 7)) {
        tcp = 0, s += 7;
    }
    else if (!strncasecmp(s, "unix:", 5)) {
        return parse_unix(p, s + 5);
    }
    else if (*s == '/') {
        return parse_unix(p, s);
    }
    else {
        return "must start with redis://, unix: or /";
    }
    /* The last '@': a password may hold one. */
    if ((at = strrchr(s, '@'))) {
        const char *err;

        *at = '\0';
        if ((err = parse_userinfo(p, s))) {
            return err;
        }
        s = at + 1;
    }
    return tcp ? parse_tcp(p, s) : parse_unix(p, s);
}

const char *ws_redis_set_url(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "Off")) {
        configured = 0;
        return NULL;
    }
    if ((err = parse_url(cmd->pool, arg))) {
        /* Never the password in a message. */
        return apr_psprintf(cmd->pool, "WebSocketRedis %s: %s (see "
                            "docs/redis.md)", strchr(arg, '@')
                            ? "(URL not shown: it may hold a password)" : arg,
                            err);
    }
    conf.url = apr_pstrdup(cmd->pool, arg);
    configured = 1;
    return NULL;
}

const char *ws_redis_set_prefix(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    if (err) {
        return err;
    }
    if (strlen(arg) > 256) {
        return "WebSocketRedisPrefix: at most 256 bytes";
    }
    conf.prefix = apr_pstrdup(cmd->pool, arg);
    conf.prefix_len = strlen(arg);
    return NULL;
}

const char *ws_redis_set_timeout(cmd_parms *cmd, void *dconf,
                                 const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_interval_time_t t;

    (void)dconf;
    if (err) {
        return err;
    }
    if (ap_timeout_parameter_parse(arg, &t, "s") != APR_SUCCESS
        || t < 10 * 1000 || t > 600 * APR_USEC_PER_SEC) {
        return "WebSocketRedisTimeout: a duration from 10ms to 600s "
               "(a number of seconds, or with ms or s)";
    }
    conf.timeout = t;
    return NULL;
}

void ws_redis_post_config(server_rec *s, int topics_on)
{
    if (configured && !topics_on
        && ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "WebSocketRedis is "
                     "ignored: topics are off (WebSocketTopicBuffer Off)");
    }
}

/* ---- the node area ---- */

size_t ws_redis_node_size(void)
{
    return (sizeof(ws_redis_node) + 63) & ~(size_t)63;
}

int ws_redis_node_init(void *area)
{
    ws_redis_node *node = area;
    pthread_mutexattr_t attr;
    int ok;

    memset(node, 0, sizeof(*node));
    if (apr_generate_random_bytes((unsigned char *)&node->node_id,
                                  sizeof(node->node_id)) != APR_SUCCESS) {
        node->node_id = ((uint64_t)getpid() << 32) ^ (uint64_t)apr_time_now();
    }
    node->node_id |= 1;              /* never 0 */
    if (pthread_mutexattr_init(&attr)) {
        return 0;
    }
    ok = !pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)
         && !pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)
         && !pthread_mutex_init(&node->relay_lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return ok;
}

ws_redis_node *ws_redis_node_get(void)
{
    size_t size;
    void *area = ws_shm_node(&size);

    return area && size >= sizeof(ws_redis_node) ? area : NULL;
}

/* ---- what publishers read ---- */

int ws_redis_state(void)
{
    ws_redis_node *node;
    int64_t beat;

    if (!ws_redis_enabled()) {
        return WS_REDIS_OFF;
    }
    node = ws_redis_node_get();
    beat = __atomic_load_n(&node->heartbeat, __ATOMIC_ACQUIRE);
    /* A relay that stopped turning (its child died, no one took over
     * yet) replicates nothing: its flag alone would lie. */
    if (!__atomic_load_n(&node->pub_up, __ATOMIC_ACQUIRE)
        || apr_time_now() - beat > conf.timeout + APR_USEC_PER_SEC) {
        return WS_REDIS_DOWN;
    }
    return WS_REDIS_UP;
}

void ws_redis_count_local_only(void)
{
    ws_redis_node *node = ws_redis_node_get();

    if (node) {
        ws_redis_add(&node->not_replicated, 1);
    }
}

void ws_redis_outage_begin(const char *what, const char *why)
{
    ws_redis_node *node = ws_redis_node_get();
    uint32_t was = 0;

    if (__atomic_compare_exchange_n(&node->outage, &was, 1, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        ws_redis_add(&node->outages, 1);
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf, "Redis at %s "
                     "unavailable (%s: %s): WebSocket publishes stay on this "
                     "node and say so until it is back; retrying with "
                     "backoff", conf.where, what, why);
    }
}

void ws_redis_outage_end(void)
{
    ws_redis_node *node = ws_redis_node_get();
    uint32_t was = 1;

    if (__atomic_load_n(&node->pub_up, __ATOMIC_ACQUIRE)
        && __atomic_load_n(&node->sub_up, __ATOMIC_ACQUIRE)
        && __atomic_compare_exchange_n(&node->outage, &was, 0, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        ws_redis_add(&node->reconnects, 1);
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf, "Redis at "
                     "%s is back: WebSocket topics replicate again, every "
                     "channel subscribed again", conf.where);
    }
}

void ws_redis_stats_get(ws_redis_stats *out)
{
    ws_redis_node *node = ws_redis_node_get();

    memset(out, 0, sizeof(*out));
    out->configured = configured;
    if (!node) {
        return;
    }
#define LOAD(f) __atomic_load_n(&node->f, __ATOMIC_RELAXED)
    out->connected = configured && LOAD(pub_up) && LOAD(sub_up);
    out->relay_pid = LOAD(relay_pid);
    out->node_id = node->node_id;
    out->reconnects = LOAD(reconnects);
    out->outages = LOAD(outages);
    out->relayed_out = LOAD(relayed_out);
    out->relayed_in = LOAD(relayed_in);
    out->not_replicated = LOAD(not_replicated);
    out->dropped_in = LOAD(dropped_in);
    out->channels = LOAD(channels);
#undef LOAD
}

/* ---- the candidate thread ---- */

static pthread_t candidate;
static int candidate_running;
static volatile int stopping;
static int stop_fd[2] = { -1, -1 };
static uint32_t my_generation;

static void announce_generation(ws_redis_node *node)
{
    uint32_t seen = __atomic_load_n(&node->newest_generation, __ATOMIC_ACQUIRE);

    while (seen < my_generation
           && !__atomic_compare_exchange_n(&node->newest_generation, &seen,
                                           my_generation, 0, __ATOMIC_ACQ_REL,
                                           __ATOMIC_ACQUIRE)) {
    }
}

static int superseded(ws_redis_node *node)
{
    return __atomic_load_n(&node->newest_generation, __ATOMIC_ACQUIRE)
           > my_generation;
}

static int lock_relay(ws_redis_node *node)
{
    struct timespec until;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += 250 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    rc = pthread_mutex_clocklock(&node->relay_lock, CLOCK_MONOTONIC, &until);
    if (rc == EOWNERDEAD) {
        /* The relay's child died holding it: what it guarded (the cursor,
         * the flags) is checked by the next relay anyway. */
        pthread_mutex_consistent(&node->relay_lock);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf, "the "
                     "WebSocket Redis relay's child died: this child (pid "
                     "%d) takes the relay over", (int)getpid());
        return 1;
    }
    if (rc && rc != ETIMEDOUT && rc != EINTR) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rc, ap_server_conf, "the "
                     "WebSocket Redis relay's lock is unusable: no relay in "
                     "this child");
        sleep(1);
    }
    return rc == 0;
}

static void *candidate_main(void *arg)
{
    server_rec *s = arg;
    ws_redis_node *node = ws_redis_node_get();

    while (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE) && !superseded(node)) {
        if (!lock_relay(node)) {
            continue;
        }
        if (!__atomic_load_n(&stopping, __ATOMIC_ACQUIRE) && !superseded(node)) {
            __atomic_store_n(&node->relay_pid, (int32_t)getpid(),
                             __ATOMIC_RELEASE);
            ws_redis_relay_run(s, ws_shm_ring(), stop_fd[0], &stopping,
                               my_generation);
            __atomic_store_n(&node->relay_pid, 0, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&node->relay_lock);
    }
    return NULL;
}

static void stop_candidate(void)
{
    if (!candidate_running) {
        return;
    }
    if (!__atomic_exchange_n(&stopping, 1, __ATOMIC_ACQ_REL)) {
        if (write(stop_fd[1], "x", 1) < 0) {
            /* the flag alone stops it within a turn */
        }
        ws_ring_wake_all(ws_shm_ring());
    }
}

void ws_redis_child_stopping(void)
{
    stop_candidate();
}

static apr_status_t child_exit(void *unused)
{
    (void)unused;
    if (candidate_running) {
        stop_candidate();
        pthread_join(candidate, NULL);
        candidate_running = 0;
        close(stop_fd[0]);
        close(stop_fd[1]);
        ws_redis_interest_close();
    }
    return APR_SUCCESS;
}

void ws_redis_child_init(apr_pool_t *pchild, server_rec *s)
{
    ws_redis_node *node = ws_redis_node_get();
    int gen = 0;

    if (!node) {
        return;
    }
    ap_mpm_query(AP_MPMQ_GENERATION, &gen);
    my_generation = (uint32_t)gen;
    announce_generation(node);
    if (!configured || !ws_shm_ring()) {
        return;
    }
    if (pipe2(stop_fd, O_CLOEXEC) || !ws_redis_interest_open()) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, "WebSocketRedis: no "
                     "relay candidate in this child");
        return;
    }
    if (ws_thread_create(&candidate, candidate_main, s)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "WebSocketRedis: cannot "
                     "start the relay candidate thread");
        return;
    }
    candidate_running = 1;
    apr_pool_pre_cleanup_register(pchild, NULL, child_exit);
}
