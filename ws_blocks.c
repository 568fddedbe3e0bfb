/*
 * ws_blocks.c - a child's cache of APR memory blocks (see ws_blocks.h).
 *
 * APR has no way to list an allocator's free blocks: asking it for one
 * is the only way to take one, and it maps a new block when its free
 * list is empty.  So a sentinel goes in first: a 16 KiB block of this
 * thread's.  APR hands out the smallest free block that fits a request
 * (the last one freed first), so asking for 8 KiB blocks returns every 8
 * and 12 KiB block before the sentinel, which says stop.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "httpd.h"
#include "http_connection.h"
#include "mpm_common.h"
#include "apr_allocator.h"

#include "ws_blocks.h"

/* The two sizes a connection's allocator hands out most: 8 KiB (pools)
 * and 12 KiB (a bucket of the core input filter's 8000-byte reads). */
#define SMALL       8192
#define LARGE       12288
/* Larger than SMALL and LARGE: comes out after them. */
#define SENTINEL    16384
/* What every new connection borrows (ws_blocks_loan): its request's pool
 * and the first read of the core input filter come from it. */
#define LOAN_SMALL  3
#define LOAN_LARGE  1
#define LOAN_BYTES  (LOAN_SMALL * SMALL + LOAN_LARGE * LARGE)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static apr_memnode_t *cache[2];          /* SMALL, LARGE */
static int cached;

/* Blocks the full cache had no room for, unmapped together (release). */
static apr_memnode_t *surplus[WS_BLOCKS_RELEASE_BATCH];
static int surplus_count;
/* 1 when APR maps each block on its own (its allocator's mmap build):
 * then a block is a mapping we may unmap ourselves. */
static int blocks_are_mappings;

/* Each thread's sentinel, made by and given back to sentinel_home. */
static pthread_once_t sentinel_once = PTHREAD_ONCE_INIT;
static pthread_key_t sentinel_key;
static apr_allocator_t *sentinel_home;
static __thread apr_memnode_t *my_sentinel;

int ws_blocks_cached(void)
{
    return __atomic_load_n(&cached, __ATOMIC_RELAXED);
}

static apr_size_t block_size(const apr_memnode_t *node)
{
    return (apr_size_t)(node->endp - (char *)node);
}

/* APR's mmap build maps each block alone, page-aligned, and unmaps it
 * whole; its malloc build gives 16-byte aligned heap chunks.  Four
 * page-aligned blocks in a row say mmap. */
static void probe_mappings(void)
{
    apr_allocator_t *a;
    apr_memnode_t *nodes = NULL, *node;
    int i, aligned = 0;

    if (apr_allocator_create(&a) != APR_SUCCESS) {
        return;
    }
    for (i = 0; i < 4; i++) {
        node = apr_allocator_alloc(a, SMALL - APR_MEMNODE_T_SIZE);
        if (!node) {
            break;
        }
        aligned += ((uintptr_t)node & 4095) == 0
                   && block_size(node) == SMALL;
        node->next = nodes;
        nodes = node;
    }
    if (nodes) {
        apr_allocator_free(a, nodes);
    }
    apr_allocator_destroy(a);
    blocks_are_mappings = aligned == 4;
}

static int by_address(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t)*(apr_memnode_t *const *)x;
    uintptr_t b = (uintptr_t)*(apr_memnode_t *const *)y;

    return a < b ? -1 : a > b;
}

/* Unmaps blocks sorted by address, one munmap per run of neighbours:
 * each munmap costs a TLB shootdown on the other cores, whatever its
 * length, and blocks the kernel mapped one after the other (the event
 * MPM's, for each new connection) lie side by side. */
static void release(apr_memnode_t **nodes, int n)
{
    char *start, *end;
    int i;

    for (i = 0; i < n; ) {
        start = (char *)nodes[i];
        end = nodes[i]->endp;
        for (i++; i < n && (char *)nodes[i] == end; i++) {
            end = nodes[i]->endp;
        }
        munmap(start, (size_t)(end - start));
    }
}

/* 1 when the cache took the block: one of its two sizes, and fewer than
 * 'limit' blocks cached. */
static int keep(apr_memnode_t *node, int limit)
{
    apr_size_t size = block_size(node);
    int kept = 0;

    if (size != SMALL && size != LARGE) {
        return 0;
    }
    pthread_mutex_lock(&lock);
    if (cached < limit) {
        node->next = cache[size == LARGE];
        cache[size == LARGE] = node;
        __atomic_store_n(&cached, cached + 1, __ATOMIC_RELAXED);
        kept = 1;
    }
    pthread_mutex_unlock(&lock);
    return kept;
}

/* Up to n blocks of one size off the cache, chained (the lock held). */
static apr_memnode_t *take_locked(int large, int n, apr_memnode_t *chain)
{
    apr_memnode_t *node;

    for (; n > 0 && cache[large]; n--) {
        node = cache[large];
        cache[large] = node->next;
        node->next = chain;
        chain = node;
        __atomic_store_n(&cached, cached - 1, __ATOMIC_RELAXED);
    }
    return chain;
}

/* Puts up to 'small' and 'large' cached blocks on a's free list. */
static void give(apr_allocator_t *a, int small, int large)
{
    apr_memnode_t *chain;

    if (!ws_blocks_cached()) {
        return;
    }
    pthread_mutex_lock(&lock);
    chain = take_locked(1, large, take_locked(0, small, NULL));
    pthread_mutex_unlock(&lock);
    if (chain) {
        apr_allocator_free(a, chain);
    }
}

/* With the lock held: the cache keeps its lowest blocks, and the highest
 * (as many as the surplus holds) go to 'out', sorted.  The kernel maps a
 * new block in the highest hole it finds, so the holes these leave are
 * where the next blocks of the MPM go, side by side, and those are the
 * next to go: the batches stay runs of neighbours. */
static int pick_highest_locked(apr_memnode_t **out)
{
    /* A loan that comes back may fill the cache up to twice its size. */
    static apr_memnode_t *all[2 * WS_BLOCKS_MAX + WS_BLOCKS_RELEASE_BATCH];
    apr_memnode_t *node;
    int n = 0, i, large;

    for (large = 0; large < 2; large++) {
        for (node = cache[large]; node; node = node->next) {
            all[n++] = node;
        }
        cache[large] = NULL;
    }
    memcpy(all + n, surplus, sizeof(*surplus) * (size_t)surplus_count);
    n += surplus_count;
    qsort(all, (size_t)n, sizeof(*all), by_address);
    for (i = cached - 1; i >= 0; i--) {
        large = block_size(all[i]) == LARGE;
        all[i]->next = cache[large];
        cache[large] = all[i];
    }
    memcpy(out, all + cached, sizeof(*out) * (size_t)surplus_count);
    n = surplus_count;
    surplus_count = 0;
    return n;
}

/* 1 when the block went to the surplus, to be unmapped with others. */
static int discard(apr_memnode_t *node)
{
    apr_memnode_t *batch[WS_BLOCKS_RELEASE_BATCH];
    int n = 0;

    if (!blocks_are_mappings) {
        return 0;
    }
    pthread_mutex_lock(&lock);
    surplus[surplus_count++] = node;
    if (surplus_count == WS_BLOCKS_RELEASE_BATCH) {
        n = pick_highest_locked(batch);
    }
    pthread_mutex_unlock(&lock);
    if (n) {
        release(batch, n);
    }
    return 1;
}

static void sentinel_gone(void *node)
{
    pthread_mutex_lock(&lock);
    apr_allocator_free(sentinel_home, node);
    pthread_mutex_unlock(&lock);
}

static void sentinel_setup(void)
{
    probe_mappings();
    if (apr_allocator_create(&sentinel_home) == APR_SUCCESS) {
        apr_allocator_max_free_set(sentinel_home, 1);
        pthread_key_create(&sentinel_key, sentinel_gone);
    }
}

static apr_memnode_t *sentinel(void)
{
    pthread_once(&sentinel_once, sentinel_setup);
    if (!my_sentinel && sentinel_home) {
        pthread_mutex_lock(&lock);
        my_sentinel = apr_allocator_alloc(sentinel_home,
                                          SENTINEL - APR_MEMNODE_T_SIZE);
        pthread_mutex_unlock(&lock);
        if (my_sentinel) {
            pthread_setspecific(sentinel_key, my_sentinel);
        }
    }
    return my_sentinel;
}

/* Takes the 8 and 12 KiB blocks off a's free list: the cache keeps up to
 * 'limit' bytes of them (while it holds fewer than 'room' blocks), the
 * others go back, and a's max_free is then 'max_free' (1 gives them to
 * the system: through the surplus, where blocks are mappings). */
static void harvest(apr_allocator_t *a, apr_size_t limit, int room,
                    apr_size_t max_free)
{
    apr_memnode_t *stop = sentinel(), *node, *rejects = NULL;
    apr_size_t taken = 0;

    if (!stop) {
        apr_allocator_max_free_set(a, max_free);
        return;
    }
    /* While the sentinel is in, whatever is freed stays. */
    apr_allocator_max_free_set(a, 0);
    stop->next = NULL;
    apr_allocator_free(a, stop);
    while ((node = apr_allocator_alloc(a, SMALL - APR_MEMNODE_T_SIZE))
           != stop) {
        if (!node) {
            my_sentinel = NULL;      /* left in a, freed with it */
            pthread_setspecific(sentinel_key, NULL);
            break;
        }
        if (taken < limit && keep(node, room)) {
            taken += block_size(node);
        }
        else if (max_free != 1 || !discard(node)) {
            node->next = rejects;
            rejects = node;
        }
    }
    apr_allocator_max_free_set(a, max_free);
    if (rejects) {
        apr_allocator_free(a, rejects);
    }
}

void ws_blocks_lend(apr_pool_t *pool, int n)
{
    apr_allocator_t *a = apr_pool_allocator_get(pool);

    apr_allocator_max_free_set(a, WS_BLOCKS_HANDSHAKE_FREE);
    give(a, n, 0);
}

/* The loan of ws_blocks_loan comes back when the connection's pool is
 * cleared (the MPM reuses it) or destroyed (a WebSocket's end): as many
 * bytes as were lent, from what is free by then. */
static apr_status_t take_back_loan(void *pool)
{
    /* The MPM gave its pools' allocators ap_max_mem_free. */
    harvest(apr_pool_allocator_get(pool), LOAN_BYTES, 2 * WS_BLOCKS_MAX,
            ap_max_mem_free);
    return APR_SUCCESS;
}

void ws_blocks_loan(apr_pool_t *pool)
{
    if (!ws_blocks_cached()) {
        return;
    }
    give(apr_pool_allocator_get(pool), LOAN_SMALL, LOAN_LARGE);
    apr_pool_cleanup_register(pool, pool, take_back_loan,
                              apr_pool_cleanup_null);
}

void ws_blocks_settle(apr_pool_t *pool)
{
    harvest(apr_pool_allocator_get(pool), (apr_size_t)-1, WS_BLOCKS_MAX, 1);
}

void ws_blocks_hold(apr_pool_t *pool)
{
    /* 0 is "unlimited" */
    apr_allocator_max_free_set(apr_pool_allocator_get(pool), 0);
}

void ws_blocks_destroy_pool(apr_pool_t *pool)
{
    apr_allocator_t *a = apr_pool_allocator_get(pool);

    if (!a || apr_allocator_owner_get(a) != pool) {
        apr_pool_destroy(pool);
        return;
    }
    /* All of the pool's blocks stay on the allocator's free list, to be
     * taken before the allocator goes (the loan with them). */
    apr_pool_cleanup_kill(pool, pool, take_back_loan);
    apr_allocator_owner_set(a, NULL);
    apr_allocator_max_free_set(a, 0);
    apr_pool_destroy(pool);
    harvest(a, (apr_size_t)-1, WS_BLOCKS_MAX, 1);
    apr_allocator_destroy(a);
}

static int loan_to_connection(conn_rec *c, void *csd)
{
    (void)csd;
    if (!c->master) {
        ws_blocks_loan(c->pool);
    }
    return OK;
}

void ws_blocks_register_hooks(void)
{
    ap_hook_pre_connection(loan_to_connection, NULL, NULL,
                           APR_HOOK_REALLY_FIRST);
}
