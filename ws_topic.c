/*
 * ws_topic.c - topics: the subscriptions of this child's connections, and
 * publishing to every subscriber of the server.
 *
 * Publishing never delivers by itself: every message, whichever child it
 * comes from, goes through the shared ring (ws_ring.c), and each child's
 * reader thread delivers it to that child's subscribers
 * (ws_topic_deliver.c).  So every subscriber, in every child, gets the
 * messages of a topic in the one order the ring gives them.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"

#include "ws_redis.h"
#include "ws_shm.h"
#include "ws_topic_int.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

pthread_mutex_t ws_topic_lock = PTHREAD_MUTEX_INITIALIZER;

/* The registry: a hash table of the topics with local subscribers. */
static topic **buckets;
static size_t bucket_count, topic_count;
/* A counting filter of their hashes, read without the lock by the reader
 * thread to skip records no one here wants. */
#define MAYBE_BITS 16
static apr_uint32_t maybe[1 << MAYBE_BITS];
static uint64_t epoch;

int ws_topic_maybe_local(uint64_t hash)
{
    return __atomic_load_n(&maybe[hash & ((1 << MAYBE_BITS) - 1)],
                           __ATOMIC_RELAXED) != 0;
}

topic *ws_topic_find(const char *name, size_t len, uint64_t hash)
{
    topic *t;

    if (!bucket_count) {
        return NULL;
    }
    for (t = buckets[hash & (bucket_count - 1)]; t; t = t->next) {
        if (t->hash == hash && t->len == len && !memcmp(t->name, name, len)) {
            return t;
        }
    }
    return NULL;
}

void ws_topic_each(void (*fn)(topic *t, void *baton), void *baton)
{
    size_t i;

    for (i = 0; i < bucket_count; i++) {
        topic *t;

        for (t = buckets[i]; t; t = t->next) {
            fn(t, baton);
        }
    }
}

/* With the lock held: twice the buckets when the topics outnumber them. */
static int grow(void)
{
    size_t n = bucket_count ? bucket_count * 2 : 64, i;
    topic **b = calloc(n, sizeof(*b));

    if (!b) {
        return 0;
    }
    for (i = 0; i < bucket_count; i++) {
        topic *t = buckets[i];

        while (t) {
            topic *next = t->next;

            t->next = b[t->hash & (n - 1)];
            b[t->hash & (n - 1)] = t;
            t = next;
        }
    }
    free(buckets);
    buckets = b;
    bucket_count = n;
    return 1;
}

/* The child's share of the server-wide count; a full table is rebuilt
 * from the registry. */
static void count(topic *t, long delta)
{
    size_t i;

    if (ws_shm_count(t->hash, delta)) {
        return;
    }
    ws_shm_reset_counts();
    for (i = 0; i < bucket_count; i++) {
        topic *u;

        for (u = buckets[i]; u; u = u->next) {
            ws_shm_count(u->hash, u->count);
        }
    }
}

static topic *create_topic(const char *name, size_t len, uint64_t hash)
{
    topic *t;

    if (topic_count >= bucket_count && !grow()) {
        return NULL;
    }
    if (!(t = calloc(1, sizeof(*t) + len))) {
        return NULL;
    }
    memcpy(t->name, name, len);
    t->len = len;
    t->hash = hash;
    t->next = buckets[hash & (bucket_count - 1)];
    buckets[hash & (bucket_count - 1)] = t;
    topic_count++;
    __atomic_add_fetch(&maybe[hash & ((1 << MAYBE_BITS) - 1)], 1,
                       __ATOMIC_RELAXED);
    return t;
}

static void drop_topic(topic *t)
{
    topic **link = &buckets[t->hash & (bucket_count - 1)];

    while (*link != t) {
        link = &(*link)->next;
    }
    *link = t->next;
    topic_count--;
    __atomic_sub_fetch(&maybe[t->hash & ((1 << MAYBE_BITS) - 1)], 1,
                       __ATOMIC_RELAXED);
    free(t);
}

/* Names a topic to the node's Redis relay (a control record in the
 * ring), after this child's count of its subscribers went from 0 to 1 or
 * back: the relay then subscribes to its channel or lets it go
 * (ws_redis_interest.c).  Called with the lock held, so that the names
 * of one topic enter the ring in the order of the changes. */
static void name_to_relay(const char *name, size_t len)
{
    ws_ring_msg m = { TOPIC_CONTROL_NAME, TOPIC_CONTROL_NAME_LEN, name, len,
                      TOPIC_CONTROL, 0 };

    if (ws_redis_enabled()) {
        ws_ring_publish(ws_shm_ring(), &m, NULL);
    }
}

static void collect_name(topic *t, void *baton)
{
    apr_array_header_t *names = baton;
    topic *copy = malloc(sizeof(*copy) + t->len);

    if (copy) {
        memcpy(copy->name, t->name, t->len);
        copy->len = t->len;
        APR_ARRAY_PUSH(names, topic *) = copy;
    }
}

void ws_topic_announce_all(void)
{
    apr_pool_t *p;
    apr_array_header_t *names;
    int i;

    if (!ws_redis_enabled() || apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return;
    }
    names = apr_array_make(p, 64, sizeof(topic *));
    pthread_mutex_lock(&ws_topic_lock);
    ws_topic_each(collect_name, names);
    pthread_mutex_unlock(&ws_topic_lock);
    /* Outside the lock: a hint is only "look again", so its order with
     * the changes of meanwhile does not matter. */
    for (i = 0; i < names->nelts; i++) {
        topic *t = APR_ARRAY_IDX(names, i, topic *);

        name_to_relay(t->name, t->len);
        free(t);
    }
    apr_pool_destroy(p);
}

/* With the lock held. */
static ws_subscription *find_subscription(ws_conn *wc, topic *t)
{
    ws_subscription *sub;

    for (sub = wc->subscriptions; sub; sub = sub->next_of_conn) {
        if (sub->t == t) {
            return sub;
        }
    }
    return NULL;
}

static void unlink_subscription(ws_subscription *sub)
{
    topic *t = sub->t;

    if (sub->prev_in_topic) {
        sub->prev_in_topic->next_in_topic = sub->next_in_topic;
    }
    else {
        t->subs = sub->next_in_topic;
    }
    if (sub->next_in_topic) {
        sub->next_in_topic->prev_in_topic = sub->prev_in_topic;
    }
    t->count--;
    count(t, -1);
    if (!t->subs) {
        name_to_relay(t->name, t->len);
        drop_topic(t);
    }
    free(sub);
}

static int topic_ok(const char *name, size_t len)
{
    return len >= 1 && len <= WS_RING_TOPIC_MAX && name;
}

int ws_topic_subscribe(ws_conn *wc, const char *name, size_t len, int flags,
                       const char *resume_after)
{
    uint64_t hash;
    ws_subscription *sub;
    topic *t;
    int rc = WEBSOCKET_OK;

    if (!ws_shm_ring()) {
        return WEBSOCKET_ENOTOPICS;
    }
    if (!topic_ok(name, len)) {
        return WEBSOCKET_EINVAL;
    }
    hash = ws_ring_topic_hash(name, len);
    pthread_mutex_lock(&ws_topic_lock);
    if (wc->finished || wc->close_queued) {
        rc = WEBSOCKET_ECLOSED;
    }
    else if (!(t = ws_topic_find(name, len, hash))
             && !(t = create_topic(name, len, hash))) {
        rc = WEBSOCKET_ENOMEM;
    }
    else if (!find_subscription(wc, t)) {
        if (!(sub = calloc(1, sizeof(*sub)))) {
            rc = WEBSOCKET_ENOMEM;
            if (!t->subs) {
                drop_topic(t);
            }
        }
        else {
            sub->t = t;
            sub->wc = wc;
            sub->ids = (flags & WEBSOCKET_SUBSCRIBE_IDS) != 0;
            sub->next_in_topic = t->subs;
            if (t->subs) {
                t->subs->prev_in_topic = sub;
            }
            t->subs = sub;
            sub->next_of_conn = wc->subscriptions;
            wc->subscriptions = sub;
            t->count++;
            count(t, 1);
            if (t->count == 1) {
                name_to_relay(name, len);
            }
            /* This child's reader may be behind the ring: what it has
             * still to deliver was published before this subscription. */
            sub->replayed_until = ws_ring_newest_seq(ws_shm_ring());
            if (sub->ids && resume_after) {
                ws_topic_replay(sub, ws_topic_parse_id(resume_after));
            }
        }
    }
    pthread_mutex_unlock(&ws_topic_lock);
    return rc;
}

int ws_topic_unsubscribe(ws_conn *wc, const char *name, size_t len)
{
    ws_subscription **link;
    uint64_t hash;
    topic *t;
    int rc = WEBSOCKET_EINVAL;

    if (!ws_shm_ring()) {
        return WEBSOCKET_ENOTOPICS;
    }
    if (!topic_ok(name, len)) {
        return WEBSOCKET_EINVAL;
    }
    hash = ws_ring_topic_hash(name, len);
    pthread_mutex_lock(&ws_topic_lock);
    if ((t = ws_topic_find(name, len, hash))) {
        for (link = &wc->subscriptions; *link; link = &(*link)->next_of_conn) {
            if ((*link)->t == t) {
                ws_subscription *sub = *link;

                *link = sub->next_of_conn;
                unlink_subscription(sub);
                rc = WEBSOCKET_OK;
                break;
            }
        }
    }
    pthread_mutex_unlock(&ws_topic_lock);
    return rc;
}

void ws_topic_forget(ws_conn *wc)
{
    if (!wc->subscriptions) {
        return;
    }
    pthread_mutex_lock(&ws_topic_lock);
    while (wc->subscriptions) {
        ws_subscription *sub = wc->subscriptions;

        wc->subscriptions = sub->next_of_conn;
        unlink_subscription(sub);
    }
    pthread_mutex_unlock(&ws_topic_lock);
}

/* Publishes one record.  With WebSocketRedis, *replicated (if not NULL)
 * says whether it goes to the other nodes: WS_REDIS_DOWN marks it local
 * (the relay then leaves it) and counts it. */
static long publish_record(const char *name, size_t len, uint32_t flags,
                           const uint8_t *data, size_t size, uint64_t origin,
                           uint64_t *seq, int *replicated)
{
    ws_ring *ring = ws_shm_ring();
    int redis = ws_redis_state();
    ws_ring_msg msg;

    if (replicated) {
        *replicated = redis;
    }
    if (!ring) {
        return WEBSOCKET_ENOTOPICS;
    }
    if (!topic_ok(name, len) || (size && !data)) {
        return WEBSOCKET_EINVAL;
    }
    msg.topic = name;
    msg.topic_len = len;
    msg.payload = data;
    msg.payload_len = size;
    msg.flags = flags | (redis == WS_REDIS_DOWN ? TOPIC_LOCAL_ONLY : 0);
    msg.origin = origin;
    switch (ws_ring_publish(ring, &msg, seq)) {
    case WS_RING_OK:
        if (redis == WS_REDIS_DOWN) {
            ws_redis_count_local_only();
        }
        return ws_shm_subscribers(ws_ring_topic_hash(name, len));
    case WS_RING_TOO_BIG:
        return WEBSOCKET_ETOOBIG;
    case WS_RING_EINVAL:
        return WEBSOCKET_EINVAL;
    default:
        return WEBSOCKET_ENOTOPICS;
    }
}

long ws_topic_publish_ex(const char *name, size_t len, int opcode,
                         const uint8_t *data, size_t size, ws_conn *exclude,
                         char *id, size_t id_size, int *replicated)
{
    uint64_t seq = 0;
    long n;

    if (replicated) {
        *replicated = WS_REDIS_OFF;
    }
    if ((opcode != WS_OP_TEXT && opcode != WS_OP_BINARY)
        || (opcode == WS_OP_TEXT
            && ws_utf8_feed(WS_UTF8_ACCEPT, data, size) != WS_UTF8_ACCEPT)) {
        return WEBSOCKET_EINVAL;
    }
    n = publish_record(name, len, (uint32_t)opcode, data, size,
                       exclude ? exclude->id : 0, &seq, replicated);
    if (n >= 0 && id) {
        ws_topic_format_id(id, id_size, seq);
    }
    return n;
}

long ws_topic_publish(const char *name, size_t len, int opcode,
                      const uint8_t *data, size_t size, ws_conn *exclude)
{
    return ws_topic_publish_ex(name, len, opcode, data, size, exclude, NULL,
                               0, NULL);
}

long ws_topic_publish_id(const char *name, size_t len, int opcode,
                         const uint8_t *data, size_t size, char *id,
                         size_t id_size)
{
    return ws_topic_publish_ex(name, len, opcode, data, size, NULL, id,
                               id_size, NULL);
}

long ws_topic_close(const char *name, size_t len)
{
    uint64_t seq;

    return publish_record(name, len, TOPIC_CLOSE, NULL, 0, 0, &seq, NULL);
}

long ws_topic_subscribers(const char *name, size_t len)
{
    if (!ws_shm_ring()) {
        return WEBSOCKET_ENOTOPICS;
    }
    return topic_ok(name, len) ? ws_shm_subscribers(ws_ring_topic_hash(name, len))
                               : WEBSOCKET_EINVAL;
}

/* ws_ring_history's callback: the records are only counted. */
static int count_record(void *baton, const ws_ring_record *rec)
{
    (void)rec;
    ++*(long *)baton;
    return 0;
}

long ws_topic_history(const char *name, size_t len, size_t max,
                      char *last_id, size_t id_size)
{
    ws_ring_history_result res;
    ws_ring_status st;
    long n = 0;

    if (last_id && id_size) {
        *last_id = '\0';
    }
    if (!ws_shm_ring()) {
        return WEBSOCKET_ENOTOPICS;
    }
    if (!topic_ok(name, len) || !max) {
        return topic_ok(name, len) ? 0 : WEBSOCKET_EINVAL;
    }
    /* OVERRUN: publishers overwrote the oldest while they were counted;
     * what was counted stands. */
    st = ws_ring_history(ws_shm_ring(), name, len, 0, max, count_record, &n,
                         &res);
    if (st != WS_RING_OK && st != WS_RING_OVERRUN) {
        return WEBSOCKET_ENOMEM;
    }
    if (res.count && last_id) {
        ws_topic_format_id(last_id, id_size, res.last_seq);
    }
    return (long)res.count;
}

/* ---- ids ---- */

static uint64_t ring_epoch(void)
{
    ws_ring_stats st;

    if (!epoch && ws_shm_ring()) {
        ws_ring_stats_get(ws_shm_ring(), &st);
        epoch = st.epoch;
    }
    return epoch;
}

int ws_topic_format_id(char *out, size_t size, uint64_t seq)
{
    return apr_snprintf(out, size, "%08" APR_UINT64_T_HEX_FMT "-%"
                        APR_UINT64_T_FMT, ring_epoch() & 0xffffffffu, seq);
}

int64_t ws_topic_parse_id(const char *id)
{
    char *end;
    uint64_t e, seq;

    if (!id) {
        return -1;
    }
    e = apr_strtoi64(id, &end, 16);
    if (end == id || *end != '-' || e != (ring_epoch() & 0xffffffffu)) {
        return -1;
    }
    id = end + 1;
    seq = (uint64_t)apr_strtoi64(id, &end, 10);
    if (end == id || *end) {
        return -1;
    }
    return (int64_t)seq;
}

/* ---- the child ---- */

static apr_status_t topics_stop(void *unused)
{
    (void)unused;
    ws_topic_reader_stop();
    return APR_SUCCESS;
}

void ws_topic_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (!ws_shm_ring()) {
        return;
    }
    if (ws_topic_reader_start(s) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, WSLOGNO(00065) "cannot start the WebSocket "
                     "topics' reader thread; subscribers of this child get "
                     "no messages");
        return;
    }
    apr_pool_pre_cleanup_register(pchild, NULL, topics_stop);
}
