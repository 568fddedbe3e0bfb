/*
 * bench/deflate_memory.c - zlib memory per connection for each
 * permessage-deflate mode, as counted by ws_deflate's allocator, and what
 * freeing the compressor after each message costs in time.
 *
 *   gcc -std=gnu99 -Wall -Wextra -O2 -o bench/deflate_memory \
 *       bench/deflate_memory.c ws_deflate.c -lz && ./bench/deflate_memory
 *
 * Prints Markdown tables (docs/deflate-memory.md).
 */
#include "../ws_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define MESSAGE_SIZE 4096

static void fill_text(uint8_t *p, size_t n)
{
    static const char words[] = "the quick brown fox jumps over the lazy "
                                "dog while websockets deflate messages ";
    size_t i;
    uint32_t x = 12345;
    for (i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)words[(i + (x >> 28)) % (sizeof words - 1)];
    }
}

static int discard(void *baton, const uint8_t *p, size_t n)
{
    (void)baton;
    (void)p;
    (void)n;
    return 0;
}

typedef struct usage {
    size_t idle_new;     /* before any message */
    size_t peak;         /* most held while working */
    size_t idle_after;   /* held between messages */
} usage;

static ws_deflate_params mode(int bits, int no_context_takeover,
                              int mem_level)
{
    ws_deflate_params p;
    memset(&p, 0, sizeof p);
    p.server_max_window_bits = bits;
    p.client_max_window_bits = bits;
    p.server_no_context_takeover = no_context_takeover;
    p.client_no_context_takeover = no_context_takeover;
    p.level = -1;
    p.mem_level = mem_level;
    return p;
}

/* Sends three messages through a compressor; returns its usage. */
static usage measure_deflate(const ws_deflate_params *p,
                             const uint8_t *msg, ws_deflate_buf *wire)
{
    ws_deflate_ctx *z = ws_deflate_create(p, 0);
    usage u;
    int i;
    u.idle_new = ws_deflate_memory(z);
    for (i = 0; i < 3; i++) {
        wire[i].len = 0;
        if (ws_deflate_compress(z, msg, MESSAGE_SIZE, &wire[i]) !=
            WS_DEFLATE_OK)
            fprintf(stderr, "compress failed\n");
    }
    u.peak = ws_deflate_memory_peak(z);
    u.idle_after = ws_deflate_memory(z);
    ws_deflate_destroy(z);
    return u;
}

/* Receives those three messages; returns the inflater's usage. */
static usage measure_inflate(const ws_deflate_params *p,
                             const ws_deflate_buf *wire)
{
    ws_deflate_ctx *z = ws_deflate_create(p, 0);
    usage u;
    int i;
    u.idle_new = ws_deflate_memory(z);
    for (i = 0; i < 3; i++)
        if (ws_deflate_inflate(z, wire[i].data, wire[i].len, 1, discard,
                               NULL) != WS_DEFLATE_OK)
            fprintf(stderr, "inflate failed\n");
    u.peak = ws_deflate_memory_peak(z);
    u.idle_after = ws_deflate_memory(z);
    ws_deflate_destroy(z);
    return u;
}

static void print_modes(const uint8_t *msg)
{
    static const int windows[] = { 15, 12, 9 };
    ws_deflate_buf wire[3];
    unsigned w;
    int nct;

    memset(wire, 0, sizeof wire);
    printf("| window bits | context takeover | deflate peak | deflate idle "
           "| inflate peak | inflate idle | idle total |\n");
    printf("|---|---|---:|---:|---:|---:|---:|\n");
    for (w = 0; w < 3; w++)
    for (nct = 0; nct < 2; nct++) {
        ws_deflate_params p = mode(windows[w], nct, 8);
        usage d = measure_deflate(&p, msg, wire);
        usage i = measure_inflate(&p, wire);
        printf("| %d | %s | %zu | %zu | %zu | %zu | %zu |\n", windows[w],
               nct ? "off" : "on", d.peak, d.idle_after, i.peak,
               i.idle_after, d.idle_after + i.idle_after);
        if (d.idle_new || i.idle_new)
            printf("(unexpected: memory before the first message)\n");
    }
    printf("\nBefore the first message every mode holds 0 bytes.\n\n");
    for (w = 0; w < 3; w++)
        ws_deflate_buf_free(&wire[w]);
}

static void print_mem_levels(const uint8_t *msg)
{
    static const int levels[] = { 1, 4, 8, 9 };
    ws_deflate_buf wire[3];
    unsigned l;

    memset(wire, 0, sizeof wire);
    printf("| memLevel (window 15) | deflate peak | 3 x %d bytes "
           "compressed to |\n", MESSAGE_SIZE);
    printf("|---|---:|---:|\n");
    for (l = 0; l < 4; l++) {
        ws_deflate_params p = mode(15, 0, levels[l]);
        usage d = measure_deflate(&p, msg, wire);
        printf("| %d | %zu | %zu |\n", levels[l], d.peak,
               wire[0].len + wire[1].len + wire[2].len);
    }
    printf("\n");
    for (l = 0; l < 3; l++)
        ws_deflate_buf_free(&wire[l]);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Microseconds per small message: deflateInit2+deflateEnd around each
 * one (what ws_deflate does without context takeover) or deflateReset. */
static void print_reinit_cost(const uint8_t *msg)
{
    enum { ROUNDS = 20000, SMALL = 200 };
    static uint8_t out[1024];
    z_stream zs;
    double t0, per_init, per_reset;
    int i;

    t0 = seconds();
    for (i = 0; i < ROUNDS; i++) {
        memset(&zs, 0, sizeof zs);
        deflateInit2(&zs, -1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
        zs.next_in = (Bytef *)msg;
        zs.avail_in = SMALL;
        zs.next_out = out;
        zs.avail_out = sizeof out;
        deflate(&zs, Z_SYNC_FLUSH);
        deflateEnd(&zs);
    }
    per_init = (seconds() - t0) / ROUNDS * 1e6;

    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, -1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    t0 = seconds();
    for (i = 0; i < ROUNDS; i++) {
        zs.next_in = (Bytef *)msg;
        zs.avail_in = SMALL;
        zs.next_out = out;
        zs.avail_out = sizeof out;
        deflate(&zs, Z_SYNC_FLUSH);
        deflateReset(&zs);
    }
    per_reset = (seconds() - t0) / ROUNDS * 1e6;
    deflateEnd(&zs);

    printf("| per %d-byte message, window 15 | microseconds |\n", SMALL);
    printf("|---|---:|\n");
    printf("| deflateInit2 + deflate + deflateEnd | %.2f |\n", per_init);
    printf("| deflate + deflateReset | %.2f |\n", per_reset);
}

int main(void)
{
    uint8_t *msg = malloc(MESSAGE_SIZE);
    fill_text(msg, MESSAGE_SIZE);
    printf("zlib %s, three %d-byte text messages each way, memLevel 8\n\n",
           zlibVersion(), MESSAGE_SIZE);
    print_modes(msg);
    print_mem_levels(msg);
    print_reinit_cost(msg);
    free(msg);
    return 0;
}
