/*
 * test_blocks.c - the block cache of ws_blocks.c with real APR pools and
 * allocators: a destroyed pool's blocks are cached, lent blocks serve
 * the next allocations, a settled allocator keeps nothing free, a loan
 * comes back when its pool is cleared, the cache stays bounded, and a
 * harvest never takes a block APR had to map for it.
 *
 * The cache's source is included, to look at its lists.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "apr_general.h"

#include "../ws_blocks.c"
#include "check.h"

/* What ws_blocks.c takes from httpd. */
apr_uint32_t ap_max_mem_free = 0;
void ap_hook_pre_connection(ap_HOOK_pre_connection_t *pf,
                            const char * const *pre,
                            const char * const *succ, int order)
{
    (void)pf, (void)pre, (void)succ, (void)order;
}

/* A connection-like pool: it owns its allocator, as the MPM's do. */
static apr_pool_t *conn_pool(void)
{
    apr_allocator_t *a;
    apr_pool_t *p;

    if (apr_allocator_create(&a) != APR_SUCCESS
        || apr_pool_create_ex(&p, NULL, NULL, a) != APR_SUCCESS) {
        fprintf(stderr, "cannot create a pool\n");
        exit(2);
    }
    apr_allocator_owner_set(a, p);
    return p;
}

/* n allocations of 6000 bytes (the first fits in the pool's own block,
 * each other takes an 8 KiB block), then one in a 12 KiB block. */
static void use_blocks(apr_pool_t *p, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        apr_palloc(p, 6000);
    }
    apr_palloc(p, 9000);
}

static int in_cache(const void *mem)
{
    const apr_memnode_t *node;
    int large;

    for (large = 0; large < 2; large++) {
        for (node = cache[large]; node; node = node->next) {
            if ((const char *)mem >= (const char *)node
                && (const char *)mem < node->endp) {
                return 1;
            }
        }
    }
    return 0;
}

static void test_destroy_caches_blocks(void)
{
    apr_pool_t *p = conn_pool();
    int before = ws_blocks_cached();

    use_blocks(p, 5);
    ws_blocks_destroy_pool(p);
    /* the pool's own block, four more, the 12 KiB one */
    CHECK_CASE(ws_blocks_cached() == before + 6, "cached %d, expected %d",
          ws_blocks_cached(), before + 6);
    CHECK_CASE(cache[1] != NULL, "no 12 KiB block cached");
    CHECK_CASE(my_sentinel != NULL, "the sentinel was lost");
}

static int inside(const void *mem, apr_memnode_t *const *nodes, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if ((const char *)mem >= (const char *)nodes[i]
            && (const char *)mem < nodes[i]->endp) {
            return 1;
        }
    }
    return 0;
}

static void test_lend_serves_next_allocations(void)
{
    apr_pool_t *p = conn_pool();
    int before = ws_blocks_cached();
    apr_memnode_t *lent[3];
    void *mem;

    lent[0] = cache[0];
    lent[1] = lent[0]->next;
    lent[2] = lent[1]->next;
    ws_blocks_lend(p, 3);
    CHECK_CASE(ws_blocks_cached() == before - 3, "cached %d after lending 3 of "
          "%d", ws_blocks_cached(), before);
    apr_palloc(p, 6000);              /* in the pool's own block */
    mem = apr_palloc(p, 6000);
    CHECK_CASE(inside(mem, lent, 3), "the allocation is not in a lent block");
    CHECK_CASE(!in_cache(mem), "an allocation from a block still cached");

    /* settle: the two blocks still free go back, nothing stays free */
    ws_blocks_settle(p);
    CHECK_CASE(ws_blocks_cached() == before - 1, "cached %d after settling, "
          "expected %d", ws_blocks_cached(), before - 1);
    CHECK_CASE(my_sentinel != NULL, "the sentinel was lost");
    ws_blocks_destroy_pool(p);
    CHECK_CASE(ws_blocks_cached() == before + 1, "cached %d after destroy, "
          "expected %d (pool block + the used loan)", ws_blocks_cached(),
          before + 1);
}

/* With nothing free, a harvest takes nothing (it used to map a block to
 * find out, and kept it). */
static void test_harvest_maps_nothing(void)
{
    apr_pool_t *p = conn_pool();
    int before = ws_blocks_cached();

    ws_blocks_settle(p);
    CHECK_CASE(ws_blocks_cached() == before, "an empty free list gave %d "
          "blocks", ws_blocks_cached() - before);
    ws_blocks_destroy_pool(p);
    CHECK_CASE(ws_blocks_cached() == before + 1, "cached %d, expected %d",
          ws_blocks_cached(), before + 1);
}

static void test_loan_comes_back(void)
{
    apr_pool_t *p = conn_pool();
    int before = ws_blocks_cached();

    ws_blocks_loan(p);
    CHECK_CASE(ws_blocks_cached() == before - LOAN_SMALL - LOAN_LARGE,
          "cached %d after a loan of %d", ws_blocks_cached(),
          LOAN_SMALL + LOAN_LARGE);
    /* the 12 KiB block is the pool's own until after its cleanups: it
     * stays with its allocator, for the pool's next use */
    use_blocks(p, 1);
    apr_pool_clear(p);
    CHECK_CASE(ws_blocks_cached() == before - 1, "cached %d after the clear, "
          "expected %d", ws_blocks_cached(), before - 1);
    /* cleared again without a loan: nothing more comes back */
    use_blocks(p, 1);
    apr_pool_clear(p);
    CHECK_CASE(ws_blocks_cached() == before - 1, "cached %d after a second "
          "clear", ws_blocks_cached());
    apr_pool_destroy(p);
}

static void test_bounded(void)
{
    int i;

    for (i = 0; i < WS_BLOCKS_MAX / 4; i++) {
        apr_pool_t *p = conn_pool();

        use_blocks(p, 8);
        ws_blocks_destroy_pool(p);
    }
    CHECK_CASE(ws_blocks_cached() == WS_BLOCKS_MAX, "cached %d, bound %d",
          ws_blocks_cached(), WS_BLOCKS_MAX);
}

static int mapped(const void *mem)
{
    unsigned char vec[4];

    return mincore((void *)mem, 4096, vec) == 0 || errno != ENOMEM;
}

/* Blocks beyond the full cache wait in the surplus; a full surplus and
 * the cache give up their highest blocks, unmapped, and the cache keeps
 * its lowest (they used to be unmapped one by one, each a TLB
 * shootdown). */
static void test_surplus_unmapped_highest(void)
{
    static const void *seen[2 * WS_BLOCKS_MAX + WS_BLOCKS_RELEASE_BATCH];
    const apr_memnode_t *node;
    const char *lowest_gone = NULL, *highest_kept = NULL;
    int n, i, large, released = 0, gone = 0, rounds;

    CHECK_CASE(ws_blocks_cached() == WS_BLOCKS_MAX, "the cache is not full");
    if (!blocks_are_mappings) {
        CHECK_CASE(surplus_count == 0, "a surplus without mmap'd blocks");
        return;
    }
    for (rounds = 0; rounds < WS_BLOCKS_RELEASE_BATCH && !released; rounds++) {
        apr_pool_t *p = conn_pool();
        int before = surplus_count;

        n = 0;
        for (large = 0; large < 2; large++) {
            for (node = cache[large]; node; node = node->next) {
                seen[n++] = node;
            }
        }
        for (i = 0; i < surplus_count; i++) {
            seen[n++] = surplus[i];
        }
        use_blocks(p, 8);
        ws_blocks_destroy_pool(p);
        released = surplus_count < before;
    }
    CHECK_CASE(released, "no batch released after %d pools", rounds);
    CHECK_CASE(ws_blocks_cached() == WS_BLOCKS_MAX, "cached %d after the "
               "release", ws_blocks_cached());
    for (i = 0; i < n; i++) {
        if (in_cache(seen[i])) {
            if (!highest_kept || (const char *)seen[i] > highest_kept) {
                highest_kept = seen[i];
            }
        }
        else if (!inside(seen[i], surplus, surplus_count)) {
            gone++;
            CHECK_CASE(!mapped(seen[i]), "a released block is still mapped");
            if (!lowest_gone || (const char *)seen[i] < lowest_gone) {
                lowest_gone = seen[i];
            }
        }
    }
    CHECK_CASE(gone > 0 && gone <= WS_BLOCKS_RELEASE_BATCH, "%d blocks "
               "released", gone);
    CHECK_CASE(highest_kept < lowest_gone, "the cache kept a block above "
               "one it released");
}

int main(void)
{
    apr_initialize();
    test_destroy_caches_blocks();
    test_lend_serves_next_allocations();
    test_harvest_maps_nothing();
    test_loan_comes_back();
    test_bounded();
    test_surplus_unmapped_highest();
    printf("test_blocks: %d passed, %d failed\n", passed, failed);
    apr_terminate();
    return failed ? 1 : 0;
}
