/*
 * ws_redis_interest.c - the topics whose channels the node's relay
 * subscribes to: those with subscribers in some child of the node.
 *
 * The shared count tables (ws_shm.c) are the truth, but hold hashes, and
 * a channel needs the topic's name: children name a topic to the relay
 * with a control record in the ring when their own count of it goes from
 * 0 to 1 or back (ws_topic.c), and every topic again when a new relay
 * asks (TOPIC_QUERY).  A name is only a hint: the relay looks the count
 * up when it reads it, so hints in any order, twice, or from a child that
 * has since died, all end in the right set.  A slow sweep drops topics
 * whose subscribers left without a hint (a child killed).
 *
 * The ring side of the relay changes the set; the SUBSCRIBE side takes
 * the changes (or, after a reconnection, the whole set), woken by an
 * eventfd.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ws_redis_int.h"
#include "ws_shm.h"

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    size_t len;
    char name[1];
} entry;

typedef struct change {
    struct change *next;
    int subscribe;
    size_t len;
    char name[1];
} change;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry **buckets;
static size_t bucket_count, entry_count, sweep_at;
static change *changes, **changes_tail = &changes;
static int wake_fd = -1;

int ws_redis_interest_open(void)
{
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return wake_fd >= 0;
}

int ws_redis_interest_fd(void)
{
    return wake_fd;
}

static void free_changes(void)
{
    while (changes) {
        change *c = changes;

        changes = c->next;
        free(c);
    }
    changes_tail = &changes;
}

static void publish_count(void)
{
    ws_redis_node *node = ws_redis_node_get();

    if (node) {
        __atomic_store_n(&node->channels, entry_count, __ATOMIC_RELAXED);
    }
}

void ws_redis_interest_reset(void)
{
    size_t i;

    pthread_mutex_lock(&lock);
    for (i = 0; i < bucket_count; i++) {
        while (buckets[i]) {
            entry *e = buckets[i];

            buckets[i] = e->next;
            free(e);
        }
    }
    free(buckets);
    buckets = NULL;
    bucket_count = entry_count = sweep_at = 0;
    free_changes();
    publish_count();
    pthread_mutex_unlock(&lock);
}

void ws_redis_interest_close(void)
{
    ws_redis_interest_reset();
    if (wake_fd >= 0) {
        close(wake_fd);
        wake_fd = -1;
    }
}

static int grow(void)
{
    size_t n = bucket_count ? bucket_count * 2 : 256, i;
    entry **b = calloc(n, sizeof(*b));

    if (!b) {
        return 0;
    }
    for (i = 0; i < bucket_count; i++) {
        while (buckets[i]) {
            entry *e = buckets[i];

            buckets[i] = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(buckets);
    buckets = b;
    bucket_count = n;
    sweep_at = 0;
    return 1;
}

static entry **find(const char *name, size_t len, uint64_t hash)
{
    entry **link;

    if (!bucket_count) {
        return NULL;
    }
    for (link = &buckets[hash & (bucket_count - 1)]; *link;
         link = &(*link)->next) {
        if ((*link)->hash == hash && (*link)->len == len
            && !memcmp((*link)->name, name, len)) {
            return link;
        }
    }
    return NULL;
}

/* With the lock held.  Out of memory, the change is lost: the sweep or
 * the next hint of the topic tries again. */
static void note_change(int subscribe, const char *name, size_t len)
{
    change *c = malloc(sizeof(*c) + len);
    uint64_t one = 1;

    if (!c) {
        return;
    }
    c->next = NULL;
    c->subscribe = subscribe;
    c->len = len;
    memcpy(c->name, name, len);
    *changes_tail = c;
    changes_tail = &c->next;
    if (write(wake_fd, &one, sizeof(one)) < 0) {
        /* already readable: the SUBSCRIBE side will look */
    }
}

static void add(const char *name, size_t len, uint64_t hash)
{
    entry *e;

    if (entry_count >= bucket_count && !grow()) {
        return;
    }
    if (!(e = malloc(sizeof(*e) + len))) {
        return;
    }
    e->hash = hash;
    e->len = len;
    memcpy(e->name, name, len);
    e->next = buckets[hash & (bucket_count - 1)];
    buckets[hash & (bucket_count - 1)] = e;
    entry_count++;
    note_change(1, name, len);
}

static void drop(entry **link)
{
    entry *e = *link;

    *link = e->next;
    entry_count--;
    note_change(0, e->name, e->len);
    free(e);
}

void ws_redis_interest_check(const char *topic, size_t len)
{
    uint64_t hash = ws_ring_topic_hash(topic, len);
    int wanted = ws_shm_subscribers(hash) > 0;
    entry **link;

    pthread_mutex_lock(&lock);
    link = find(topic, len, hash);
    if (wanted && !link) {
        add(topic, len, hash);
    }
    else if (!wanted && link) {
        drop(link);
    }
    publish_count();
    pthread_mutex_unlock(&lock);
}

void ws_redis_interest_sweep(size_t max)
{
    size_t seen = 0;

    pthread_mutex_lock(&lock);
    while (bucket_count && seen < max) {
        entry **link = &buckets[sweep_at];

        while (*link) {
            seen++;
            if (ws_shm_subscribers((*link)->hash) <= 0) {
                drop(link);
            }
            else {
                link = &(*link)->next;
            }
        }
        sweep_at = (sweep_at + 1) & (bucket_count - 1);
        if (!sweep_at) {
            break;                   /* a whole round: enough for a turn */
        }
    }
    publish_count();
    pthread_mutex_unlock(&lock);
}

size_t ws_redis_interest_take(int all, void (*fn)(void *baton, int subscribe,
                                                  const char *topic,
                                                  size_t len),
                              void *baton)
{
    size_t n = 0, i;
    change *c;

    pthread_mutex_lock(&lock);
    if (all) {
        for (i = 0; i < bucket_count; i++) {
            entry *e;

            for (e = buckets[i]; e; e = e->next, n++) {
                fn(baton, 1, e->name, e->len);
            }
        }
    }
    else {
        for (c = changes; c; c = c->next, n++) {
            fn(baton, c->subscribe, c->name, c->len);
        }
    }
    free_changes();
    pthread_mutex_unlock(&lock);
    return n;
}
