/*
 * ws_shm.c - the memory the children share (ws_shm.h).
 *
 * Layout of the one mapping: the ring (ws_ring.c's own layout), then one
 * count table per child slot: a pid (0: free) and an open-addressing
 * table of {topic hash, subscribers}; then the users' areas of each slot,
 * then the users' areas for the server.  A child writes only its own
 * table and areas; anyone reads any.  Slots are twice ServerLimit, so
 * that the children of two generations of a graceful restart have one
 * each.  Last, the node area (ws_redis.c's: the Redis relay's election
 * and counters), made whether or not Redis is configured, since a
 * restart may turn it on.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "http_core.h"
#include "ap_mpm.h"
#include "apr_hash.h"
#include "apr_strings.h"

#include "ws_redis.h"
#include "ws_shm.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* The layout's version is in the key: a restart into a build whose
 * shm_layout differs makes a mapping of its own instead of reading the
 * old one's (the old children keep theirs until they exit). */
#define RETAINED_KEY   "mod_websocket shared memory 3"
/* All the count tables together stay under this. */
#define COUNTS_BUDGET  (4 * 1024 * 1024)
#define MAX_USERS      8

typedef struct count_entry {
    uint64_t hash;                   /* 0: empty */
    int64_t count;
} count_entry;

typedef struct child_table {
    pid_t pid;                       /* atomic; 0: free */
    char pad[60];
    count_entry entries[];
} child_table;

/* What the parent keeps across restarts (ap_retained_data). */
typedef struct shm_layout {
    void *mem;
    size_t size;
    size_t ring_bytes;               /* 0: no topics */
    apr_off_t ring_capacity;         /* as configured, to compare */
    int slots;
    size_t per_child;                /* entries, a power of 2 */
    size_t table_bytes;
    size_t users_base;               /* the first slot's users' areas */
    size_t users_child;              /* bytes of users' areas per slot */
    size_t users_global;             /* and for the server, after them */
    size_t node_offset, node_bytes;  /* the node area (ws_redis.h) */
} shm_layout;

/* This child's view. */
static shm_layout *layout;
static ws_ring *ring;
static child_table *mine;
static int my_index = -1;

/* Registered for this configuration (the module's statics start afresh
 * with each load). */
static ws_shm_user *users[MAX_USERS];
static int user_count;

static size_t round64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

void ws_shm_add_user(ws_shm_user *u)
{
    int i;

    for (i = 0; i < user_count; i++) {
        if (users[i] == u) {
            return;
        }
    }
    if (user_count < MAX_USERS) {
        users[user_count++] = u;
    }
}

/* Where each user's areas go, in registration order; the bytes all take
 * per slot and for the server. */
static void lay_out_users(int slots, size_t *per_slot, size_t *global)
{
    int i;

    *per_slot = *global = 0;
    for (i = 0; i < user_count; i++) {
        ws_shm_user *u = users[i];

        u->child_bytes = round64(u->child_size ? u->child_size(slots) : 0);
        u->child_off = *per_slot;
        u->global_off = *global;
        *per_slot += u->child_bytes;
        *global += round64(u->global_size);
    }
}

/* Users fit the mapping as it was made (always at the first start; after
 * a restart, unless this build wants more room than that one made). */
static void place_users(const shm_layout *l, server_rec *s)
{
    size_t per_slot, global;
    int i, fits;

    lay_out_users(l->slots, &per_slot, &global);
    fits = per_slot <= l->users_child && global <= l->users_global;
    for (i = 0; i < user_count; i++) {
        users[i]->placed = fits;
    }
    if (!fits) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, WSLOGNO(00058) "the WebSocket shared "
                     "memory made at the first start is too small for this "
                     "module's counters and limits (statistics and "
                     "WebSocketMaxConnections are off until a full stop "
                     "and start)");
    }
}

static child_table *table_at(const shm_layout *l, int i)
{
    return (child_table *)(void *)((char *)l->mem + l->ring_bytes
                                   + (size_t)i * l->table_bytes);
}

static size_t round_down_pow2(size_t n)
{
    size_t p = 1;

    while (p * 2 <= n) {
        p *= 2;
    }
    return p;
}

static int compute_layout(shm_layout *l, apr_off_t capacity)
{
    int limit = 0;
    size_t index_slots = 0, max_message = 0;

    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit);
    l->slots = 2 * (limit > 0 ? limit : 16);
    l->per_child = round_down_pow2(COUNTS_BUDGET / (size_t)l->slots
                                   / sizeof(count_entry));
    if (l->per_child < 64) {
        l->per_child = 64;
    }
    if (l->per_child > 8192) {
        l->per_child = 8192;
    }
    l->table_bytes = sizeof(child_table) + l->per_child * sizeof(count_entry);
    l->ring_capacity = capacity;
    if (capacity > 0) {
        capacity &= ~(apr_off_t)7;
        index_slots = ((size_t)capacity / 1024) & ~(size_t)3;
        index_slots = index_slots < 1024 ? 1024
                    : index_slots > (1u << 20) ? (1u << 20) : index_slots;
        max_message = (size_t)capacity / 8;
        l->ring_bytes = ws_ring_size_needed((size_t)capacity, index_slots);
        l->ring_bytes = (l->ring_bytes + 63) & ~(size_t)63;
        if (!l->ring_bytes) {
            return 0;
        }
    }
    l->users_base = l->ring_bytes + (size_t)l->slots * l->table_bytes;
    lay_out_users(l->slots, &l->users_child, &l->users_global);
    l->node_offset = l->users_base + (size_t)l->slots * l->users_child
                     + round64(l->users_global);
    l->node_bytes = ws_redis_node_size();
    l->size = l->node_offset + l->node_bytes;
    l->mem = mmap(NULL, l->size, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l->mem == MAP_FAILED) {
        l->mem = NULL;
        return 0;
    }
    if ((capacity > 0 && ws_ring_init(l->mem, l->ring_bytes, (size_t)capacity,
                                      max_message, index_slots) != WS_RING_OK)
        || !ws_redis_node_init((char *)l->mem + l->node_offset)) {
        munmap(l->mem, l->size);
        l->mem = NULL;
        return 0;
    }
    return 1;
}

apr_status_t ws_shm_post_config(apr_pool_t *pconf, server_rec *s,
                                apr_off_t ring_capacity)
{
    shm_layout *l;

    (void)pconf;
    /* Nothing in the dry run that parses the configuration first. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return APR_SUCCESS;
    }
    l = ap_retained_data_get(RETAINED_KEY);
    if (l && l->mem) {
        if (l->ring_capacity != ring_capacity) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, WSLOGNO(00059) "WebSocketTopicBuffer "
                         "changed: the new size takes effect after a full "
                         "stop and start (a restart keeps the topics' memory "
                         "and message ids)");
        }
        place_users(l, s);
        return APR_SUCCESS;
    }
    l = ap_retained_data_create(RETAINED_KEY, sizeof(*l));
    memset(l, 0, sizeof(*l));
    if (!compute_layout(l, ring_capacity)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, WSLOGNO(00060) "cannot set up %"
                     APR_OFF_T_FMT " bytes of shared memory for WebSocket "
                     "topics (WebSocketTopicBuffer); topics, statistics and "
                     "connection limits are off",
                     ring_capacity);
        memset(l, 0, sizeof(*l));
        return APR_EGENERAL;
    }
    place_users(l, s);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, WSLOGNO(00061) "WebSocket shared memory: %"
                 APR_SIZE_T_FMT " bytes (topic ring %" APR_SIZE_T_FMT ", %d "
                 "count tables of %" APR_SIZE_T_FMT " topics)", l->size,
                 l->ring_bytes, l->slots, l->per_child);
    return APR_SUCCESS;
}

/* ---- children ---- */

int ws_shm_pid_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

static char *users_area(const shm_layout *l, int slot)
{
    return (char *)l->mem + l->users_base + (size_t)slot * l->users_child;
}

static void tell_users(int slot, int claimed, int prev_died)
{
    char *global = (char *)layout->mem + layout->users_base
                   + (size_t)layout->slots * layout->users_child;
    int i;

    for (i = 0; i < user_count; i++) {
        ws_shm_user *u = users[i];
        void *area = users_area(layout, slot) + u->child_off;

        if (!u->placed) {
            continue;
        }
        if (claimed && u->claimed) {
            u->claimed(area, global + u->global_off, prev_died);
        }
        else if (!claimed && u->released) {
            u->released(area, global + u->global_off);
        }
    }
}

static void clear_table(child_table *t, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        __atomic_store_n(&t->entries[i].count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&t->entries[i].hash, 0, __ATOMIC_RELEASE);
    }
}

/* A free slot, or one a crashed child left (*prev_died). */
static int claim_slot(pid_t me, int *prev_died)
{
    int i, pass;

    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < layout->slots; i++) {
            child_table *t = table_at(layout, i);
            pid_t was = __atomic_load_n(&t->pid, __ATOMIC_ACQUIRE);

            if ((was == 0 || (pass == 1 && !ws_shm_pid_alive(was)))
                && __atomic_compare_exchange_n(&t->pid, &was, me, 0,
                                               __ATOMIC_ACQ_REL,
                                               __ATOMIC_ACQUIRE)) {
                if (pass == 1) {
                    clear_table(t, layout->per_child);
                }
                *prev_died = pass == 1;
                return i;
            }
        }
    }
    return -1;
}

static apr_status_t release_child(void *unused)
{
    (void)unused;
    if (mine) {
        tell_users(my_index, 0, 0);
        clear_table(mine, layout->per_child);
        __atomic_store_n(&mine->pid, 0, __ATOMIC_RELEASE);
        mine = NULL;
    }
    if (ring) {
        ws_ring_detach(ring);
        ring = NULL;
    }
    my_index = -1;
    return APR_SUCCESS;
}

void ws_shm_child_init(apr_pool_t *pchild, server_rec *s)
{
    int prev_died = 0;

    layout = ap_retained_data_get(RETAINED_KEY);
    if (!layout || !layout->mem) {
        layout = NULL;
        return;
    }
    if (layout->ring_bytes
        && !(ring = ws_ring_attach(layout->mem, layout->ring_bytes))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, WSLOGNO(00062) "the WebSocket topics' "
                     "shared memory is damaged; topics are off in this child");
    }
    my_index = claim_slot(getpid(), &prev_died);
    if (my_index < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, WSLOGNO(00063) "no free WebSocket "
                     "child slot in shared memory: this child's subscribers "
                     "are not counted in publish answers, nor its "
                     "connections in statistics and limits");
    }
    else {
        mine = table_at(layout, my_index);
        tell_users(my_index, 1, prev_died);
    }
    apr_pool_cleanup_register(pchild, NULL, release_child,
                              apr_pool_cleanup_null);
}

ws_ring *ws_shm_ring(void)
{
    return ring;
}

int ws_shm_child_index(void)
{
    return my_index;
}

void *ws_shm_node(size_t *size)
{
    if (!layout) {
        return NULL;
    }
    *size = layout->node_bytes;
    return (char *)layout->mem + layout->node_offset;
}

static uint64_t nonzero(uint64_t hash)
{
    return hash ? hash : 1;
}

int ws_shm_count(uint64_t topic_hash, long delta)
{
    size_t mask, i, n;
    uint64_t h = nonzero(topic_hash);

    if (!mine) {
        return 1;
    }
    mask = layout->per_child - 1;
    for (n = 0, i = h & mask; n < layout->per_child; n++, i = (i + 1) & mask) {
        count_entry *e = &mine->entries[i];
        uint64_t was = __atomic_load_n(&e->hash, __ATOMIC_ACQUIRE);

        if (was == 0) {
            if (delta <= 0) {
                return 1;            /* nothing counted: nothing to lower */
            }
            __atomic_store_n(&e->count, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&e->hash, h, __ATOMIC_RELEASE);
            was = h;
        }
        if (was == h) {
            __atomic_add_fetch(&e->count, delta, __ATOMIC_RELAXED);
            return 1;
        }
    }
    return 0;
}

void ws_shm_reset_counts(void)
{
    if (mine) {
        clear_table(mine, layout->per_child);
    }
}

static long lookup(const child_table *t, uint64_t h, size_t per_child)
{
    size_t mask = per_child - 1, i, n;

    for (n = 0, i = h & mask; n < per_child; n++, i = (i + 1) & mask) {
        const count_entry *e = &t->entries[i];
        uint64_t was = __atomic_load_n(&e->hash, __ATOMIC_ACQUIRE);

        if (was == 0) {
            return 0;
        }
        if (was == h) {
            return (long)__atomic_load_n(&e->count, __ATOMIC_RELAXED);
        }
    }
    return 0;
}

long ws_shm_subscribers(uint64_t topic_hash)
{
    uint64_t h = nonzero(topic_hash);
    long total = 0;
    int i;

    if (!layout) {
        return 0;
    }
    for (i = 0; i < layout->slots; i++) {
        const child_table *t = table_at(layout, i);

        if (__atomic_load_n(&t->pid, __ATOMIC_ACQUIRE)) {
            long n = lookup(t, h, layout->per_child);

            total += n > 0 ? n : 0;
        }
    }
    return total;
}

void ws_shm_topic_totals(apr_pool_t *p, long *topics, long *subscribers)
{
    apr_hash_t *seen = apr_hash_make(p);
    int i;
    size_t e;

    *topics = *subscribers = 0;
    for (i = 0; layout && i < layout->slots; i++) {
        const child_table *t = table_at(layout, i);

        if (!ws_shm_pid_alive(__atomic_load_n(&t->pid, __ATOMIC_ACQUIRE))) {
            continue;
        }
        for (e = 0; e < layout->per_child; e++) {
            uint64_t h = __atomic_load_n(&t->entries[e].hash, __ATOMIC_ACQUIRE);
            long n = (long)__atomic_load_n(&t->entries[e].count,
                                           __ATOMIC_RELAXED);

            if (h && n > 0) {
                uint64_t *key = apr_pmemdup(p, &h, sizeof(h));

                *subscribers += n;
                apr_hash_set(seen, key, sizeof(*key), key);
            }
        }
    }
    *topics = (long)apr_hash_count(seen);
}

/* ---- users' areas ---- */

int ws_shm_slots(void)
{
    return layout ? layout->slots : 0;
}

pid_t ws_shm_slot_pid(int slot)
{
    return __atomic_load_n(&table_at(layout, slot)->pid, __ATOMIC_ACQUIRE);
}

void *ws_shm_child_area(const ws_shm_user *u, int slot)
{
    return layout && u->placed ? users_area(layout, slot) + u->child_off
                               : NULL;
}

void *ws_shm_my_area(const ws_shm_user *u)
{
    return mine ? ws_shm_child_area(u, my_index) : NULL;
}

void *ws_shm_global_area(const ws_shm_user *u)
{
    if (!layout || !u->placed) {
        return NULL;
    }
    return (char *)layout->mem + layout->users_base
           + (size_t)layout->slots * layout->users_child + u->global_off;
}
