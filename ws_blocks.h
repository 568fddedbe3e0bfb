/*
 * ws_blocks.h - a child's cache of APR memory blocks for the connections
 * of the asynchronous engine.
 *
 * Debian's APR maps every 8 KiB block of a pool with mmap and gives it
 * back with munmap; in a multi-threaded child each munmap also stops the
 * other cores for a TLB shootdown.  An HTTP connection's pool is cleared
 * and reused by the event MPM, so a plain GET costs about one block; a
 * WebSocket's pool is ours to destroy, so without this each handshake
 * mapped and unmapped about ten.  The cache keeps the blocks of the
 * WebSockets that ended for the next handshakes (bounded, one mutex).
 * The two blocks the MPM maps for each new connection still come in
 * beyond its bound: they are unmapped in batches, neighbours with one
 * munmap, so a storm of handshakes pays a shootdown per few of them.
 */
#ifndef WS_BLOCKS_H
#define WS_BLOCKS_H

#include "apr_pools.h"

/* Blocks kept at most, per child (8 KiB each). */
#define WS_BLOCKS_MAX 256
/* Blocks beyond it wait until there are this many (1 MiB), to be
 * unmapped together. */
#define WS_BLOCKS_RELEASE_BATCH 128
/* What a connection's allocator keeps free from the handler to the end
 * of its first turn on a loop (the 101's buffer, the filters' reads). */
#define WS_BLOCKS_HANDSHAKE_FREE (32 * 1024)

/* The async engine takes the connection: up to n cached blocks go on the
 * free list of pool's allocator, for what the connection allocates next
 * (the 101, its first reads), and blocks freed meanwhile stay there too,
 * up to WS_BLOCKS_HANDSHAKE_FREE. */
void ws_blocks_lend(apr_pool_t *pool, int n);

/* A new connection borrows a few cached blocks for its request (its pool
 * and first read); they come back when its pool is cleared or destroyed.
 * Nothing is lent while the cache is empty (no WebSocket ended yet). */
void ws_blocks_loan(apr_pool_t *pool);

/* The pre_connection hook that makes the loan (HTTP/1 connections). */
void ws_blocks_register_hooks(void);

/* The handshake is over: the blocks the connection's allocator holds free
 * go to the cache, and the blocks it frees from now on go back to the
 * system (an idle WebSocket keeps none). */
void ws_blocks_settle(apr_pool_t *pool);

/* The connection ends: blocks freed from now on (the request's pool)
 * wait on its allocator's free list for ws_blocks_destroy_pool. */
void ws_blocks_hold(apr_pool_t *pool);

/* apr_pool_destroy() of a connection's pool, whose blocks go to the cache
 * (those beyond WS_BLOCKS_MAX to the system).  A pool that does not own
 * its allocator is just destroyed. */
void ws_blocks_destroy_pool(apr_pool_t *pool);

/* How many blocks the cache holds now (tests, debug logs). */
int ws_blocks_cached(void);

#endif /* WS_BLOCKS_H */
