/*
 * ws_limits.c - WebSocketMaxConnections and WebSocketMaxConnectionsPerIP
 * (ws_limits.h).
 *
 * In each child slot of the shared memory: a table of locations and a
 * table of client addresses, each an open-addressing table of {key hash,
 * count} with linear probing.  Only the slot's child writes it, under a
 * lock of its own (handshakes and closes, not messages); any child reads
 * it without one.  A count that falls to 0 leaves its entry deleted: a
 * tombstone, or empty when the next entry is empty (then the tombstones
 * before it too), which keeps every key reachable from its home position
 * for a reader probing at the same time, and keeps a table that sees
 * many addresses come and go from filling with tombstones.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include "ws_limits.h"
#include "ws_shm.h"
#include "ws_stats.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

#define KEY_EMPTY       0
#define KEY_DELETED     1
/* Locations with a limit: a few per server. */
#define LOCATION_SLOTS  128
/* Addresses: all the children's tables together stay under this. */
#define ADDRESS_BUDGET  (8 * 1024 * 1024)
#define ADDRESS_MIN     256
#define ADDRESS_MAX     (64 * 1024)
#define RETRY_AFTER     "5"

typedef struct count_entry {
    apr_uint64_t key;                /* atomic: KEY_ or a hash */
    apr_int64_t count;               /* atomic */
} count_entry;

typedef struct count_table {
    count_entry *e;
    size_t n;                        /* a power of 2 */
} count_table;

struct ws_limit_hold {
    apr_uint64_t location;           /* 0: not counted */
    apr_uint64_t address;
    apr_uint32_t released;           /* atomic */
};

static size_t address_slots(int slots)
{
    size_t n = ADDRESS_MIN;

    while (n * 2 <= ADDRESS_MAX
           && n * 2 * sizeof(count_entry) * (size_t)slots <= ADDRESS_BUDGET) {
        n *= 2;
    }
    return n;
}

static size_t area_size(int slots)
{
    return (LOCATION_SLOTS + address_slots(slots)) * sizeof(count_entry);
}

static void clear_area(void *area, void *global)
{
    (void)global;
    memset(area, 0, area_size(ws_shm_slots()));
}

static void slot_claimed(void *area, void *global, int prev_died)
{
    (void)prev_died;
    clear_area(area, global);
}

static ws_shm_user limits_user = {
    "limits", area_size, 0, slot_claimed, clear_area, 0, 0, 0, 0
};

/* This child's writer lock; its tables are found per slot. */
static apr_thread_mutex_t *lock;
static int warned_no_tables, warned_full;

void ws_limits_register(void)
{
    ws_shm_add_user(&limits_user);
}

void ws_limits_child_init(apr_pool_t *pchild, server_rec *s)
{
    warned_no_tables = warned_full = 0;
    if (apr_thread_mutex_create(&lock, APR_THREAD_MUTEX_DEFAULT, pchild)
        != APR_SUCCESS) {
        lock = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, WSLOGNO(00030) "cannot create the lock "
                     "of the WebSocket connection counts: "
                     "WebSocketMaxConnections is not enforced in this child");
    }
}

static int tables_of(count_entry *area, count_table *locations,
                     count_table *addresses)
{
    if (!area) {
        return 0;
    }
    locations->e = area;
    locations->n = LOCATION_SLOTS;
    addresses->e = area + LOCATION_SLOTS;
    addresses->n = address_slots(ws_shm_slots());
    return 1;
}

/* ---- one table ---- */

static apr_uint64_t hash_of(const char *s, size_t len)
{
    apr_uint64_t h = 14695981039346656037ULL;   /* FNV-1a */
    size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    }
    return h > KEY_DELETED ? h : h + 2;
}

/* Readers: the entry of key, or NULL. */
static count_entry *find(const count_table *t, apr_uint64_t key)
{
    size_t mask = t->n - 1, i, probes;

    for (i = key & mask, probes = 0; probes < t->n; probes++, i = (i + 1) & mask) {
        apr_uint64_t k = __atomic_load_n(&t->e[i].key, __ATOMIC_ACQUIRE);

        if (k == key) {
            return &t->e[i];
        }
        if (k == KEY_EMPTY) {
            return NULL;
        }
    }
    return NULL;
}

/* With the lock: the entry of key, made if need be; NULL when full. */
static count_entry *find_or_make(const count_table *t, apr_uint64_t key)
{
    size_t mask = t->n - 1, i, probes;
    count_entry *free_entry = NULL;

    for (i = key & mask, probes = 0; probes < t->n; probes++, i = (i + 1) & mask) {
        apr_uint64_t k = __atomic_load_n(&t->e[i].key, __ATOMIC_RELAXED);

        if (k == key) {
            return &t->e[i];
        }
        if (k == KEY_DELETED && !free_entry) {
            free_entry = &t->e[i];
        }
        if (k == KEY_EMPTY) {
            if (!free_entry) {
                free_entry = &t->e[i];
            }
            break;
        }
    }
    if (free_entry) {
        __atomic_store_n(&free_entry->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&free_entry->key, key, __ATOMIC_RELEASE);
    }
    return free_entry;
}

/* With the lock: an entry whose count fell to 0 goes. */
static void delete_entry(const count_table *t, count_entry *e)
{
    size_t mask = t->n - 1, i = (size_t)(e - t->e);

    if (__atomic_load_n(&t->e[(i + 1) & mask].key, __ATOMIC_RELAXED)
        != KEY_EMPTY) {
        __atomic_store_n(&e->key, KEY_DELETED, __ATOMIC_RELEASE);
        return;
    }
    /* Nothing probes past an empty entry: this one, and the tombstones
     * right before it, can be empty too. */
    __atomic_store_n(&e->key, KEY_EMPTY, __ATOMIC_RELEASE);
    for (i = (i - 1) & mask;
         __atomic_load_n(&t->e[i].key, __ATOMIC_RELAXED) == KEY_DELETED;
         i = (i - 1) & mask) {
        __atomic_store_n(&t->e[i].key, KEY_EMPTY, __ATOMIC_RELEASE);
    }
}

/* With the lock: 0 when the table had no room (the key is not counted). */
static int count(const count_table *t, apr_uint64_t key, int delta)
{
    count_entry *e = delta > 0 ? find_or_make(t, key) : find(t, key);

    if (!e) {
        return 0;
    }
    /* Sequentially consistent with the sums of other children: of two
     * handshakes racing for the last place, at least one sees both. */
    if (__atomic_add_fetch(&e->count, delta, __ATOMIC_SEQ_CST) <= 0) {
        delete_entry(t, e);
    }
    return 1;
}

/* ---- the server's counts ---- */

/* What every child that runs now counts for key (in its location table,
 * or its address table). */
static long server_count(apr_uint64_t key, int addresses)
{
    long total = 0;
    int slot;

    for (slot = 0; slot < ws_shm_slots(); slot++) {
        count_table loc, addr;
        count_entry *e;
        apr_int64_t n;
        pid_t pid = ws_shm_slot_pid(slot);

        if (!pid || !tables_of(ws_shm_child_area(&limits_user, slot), &loc,
                               &addr)
            || !(e = find(addresses ? &addr : &loc, key))) {
            continue;
        }
        n = __atomic_load_n(&e->count, __ATOMIC_SEQ_CST);
        /* A child that died without a word left its counts behind. */
        if (n > 0 && (pid == getpid() || ws_shm_pid_alive(pid))) {
            total += (long)n;
        }
    }
    return total;
}

static void take(ws_limit_hold *hold, int delta)
{
    count_table loc, addr;
    int full = 0;

    if (!tables_of(ws_shm_my_area(&limits_user), &loc, &addr)) {
        return;
    }
    apr_thread_mutex_lock(lock);
    if (hold->location && !count(&loc, hold->location, delta)) {
        hold->location = 0;
        full = 1;
    }
    if (hold->address && !count(&addr, hold->address, delta)) {
        hold->address = 0;
        full = 1;
    }
    if (full && delta > 0 && !warned_full) {
        warned_full = 1;
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf, WSLOGNO(00031) "this "
                     "child's WebSocket connection counts are full (%d "
                     "locations, %" APR_SIZE_T_FMT " client addresses): "
                     "connections beyond are not limited", LOCATION_SLOTS,
                     addr.n);
    }
    apr_thread_mutex_unlock(lock);
}

void ws_limits_release(ws_limit_hold *hold)
{
    if (hold && !__atomic_exchange_n(&hold->released, 1, __ATOMIC_ACQ_REL)) {
        take(hold, -1);
    }
}

static apr_status_t release_at_pool_end(void *data)
{
    ws_limit_hold *hold = data;

    ws_limits_release(hold);
    return APR_SUCCESS;
}

ws_limit_hold *ws_limits_keep(ws_limit_hold *hold, apr_pool_t *request_pool)
{
    ws_limit_hold *kept = malloc(sizeof(*kept));

    if (!kept) {
        return NULL;
    }
    apr_pool_cleanup_kill(request_pool, hold, release_at_pool_end);
    memcpy(kept, hold, sizeof(*kept));
    return kept;
}

/* Where WebSocketMaxConnections was set: its server's name and port and
 * its section, which stay the same across restarts. */
static apr_uint64_t location_key(request_rec *r, const ws_dir_conf *conf)
{
    const server_rec *s = conf->limit_server ? conf->limit_server : r->server;
    const char *key = apr_psprintf(r->pool, "%s:%u %s",
                                   s->server_hostname ? s->server_hostname : "",
                                   (unsigned)s->port,
                                   conf->limit_section ? conf->limit_section
                                                       : "(server)");

    return hash_of(key, strlen(key));
}

static int refuse(request_rec *r, ws_limit_hold *hold, int status,
                  ws_stat stat)
{
    ws_limits_release(hold);
    apr_table_setn(r->err_headers_out, "Retry-After", RETRY_AFTER);
    ws_stats_add(stat, 1);
    return status;
}

int ws_limits_admit(request_rec *r, const ws_dir_conf *conf,
                    ws_limit_hold **holdp, const char **why)
{
    int max = ws_conf_max_connections(conf);
    int per_ip = ws_conf_max_connections_per_ip(conf);
    const char *ip = r->useragent_ip ? r->useragent_ip : r->connection->client_ip;
    ws_limit_hold *hold;
    long n;

    *holdp = NULL;
    if (!max && !per_ip) {
        return OK;
    }
    if (!lock || !ws_shm_my_area(&limits_user)) {
        if (!warned_no_tables) {
            warned_no_tables = 1;
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, WSLOGNO(00032) "this child has "
                          "no place in the WebSocket shared memory: "
                          "WebSocketMaxConnections and "
                          "WebSocketMaxConnectionsPerIP are not enforced");
        }
        return OK;
    }
    hold = apr_pcalloc(r->connection->pool, sizeof(*hold));
    hold->location = max ? location_key(r, conf) : 0;
    hold->address = per_ip ? hash_of(ip, strlen(ip)) : 0;
    take(hold, 1);
    /* The request ends after the WebSocket does (and at once when the
     * handshake fails later, or the plugin refuses it: its TCP connection
     * may then linger in keep-alive, holding no place). */
    apr_pool_cleanup_register(r->pool, hold, release_at_pool_end,
                              apr_pool_cleanup_null);
    if (hold->address && (n = server_count(hold->address, 1)) > per_ip) {
        *why = apr_psprintf(r->pool, "%s has %ld WebSockets open in this "
                            "server (WebSocketMaxConnectionsPerIP %d)", ip,
                            n - 1, per_ip);
        return refuse(r, hold, HTTP_TOO_MANY_REQUESTS, WS_STAT_REFUSED_PER_IP);
    }
    if (hold->location && (n = server_count(hold->location, 0)) > max) {
        *why = apr_psprintf(r->pool, "%s has %ld WebSockets open in all "
                            "children (WebSocketMaxConnections %d)",
                            conf->limit_section ? conf->limit_section
                                                : "this server", n - 1, max);
        return refuse(r, hold, HTTP_SERVICE_UNAVAILABLE, WS_STAT_REFUSED_MAX);
    }
    *holdp = hold;
    return OK;
}
