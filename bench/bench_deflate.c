/*
 * bench/bench_deflate.c - micro-benchmark of permessage-deflate, one
 * core: what the server spends per JSON message (bench/json_doc.c) on
 * compressing a reply and inflating a client's message, with the
 * module's defaults (level 1, no context takeover, window 15).
 *
 *   make bench/bench_deflate
 *   bench/bench_deflate [seconds per figure, default 0.5]
 *   bench/bench_deflate --count N compress|zlib|inflate SIZE
 *
 * One line per figure: "name value unit ratio".  compress_SIZE is
 * ws_deflate_compress (our encoder up to WS_DEFLATE_FAST_MAX bytes);
 * its reference, measured in the same run, is zlib_SIZE: the same call
 * with the encoder turned off (ws_deflate_set_fast_max 0), which is how
 * the module compressed before it had one.  The _bytes lines are the
 * payloads' sizes, against zlib's.  inflate_SIZE inflates messages a
 * client made with zlib level 1 (window 15, memLevel 8), against the
 * same compressing time of zlib.
 *
 * --count N runs N messages of one kind and exits, for callgrind:
 *
 *   valgrind --tool=callgrind --toggle-collect=ws_deflate_compress \
 *       bench/bench_deflate --count 2000 compress 1024
 *
 * and divide the instructions by N (ws_deflate_inflate for inflate).
 */
#include "../ws_deflate_int.h"
#include "json_doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define VARIANTS 64                 /* different documents per size */

static double seconds_per_figure = 0.5;

typedef struct corpus {
    size_t size;
    uint8_t *docs[VARIANTS];
    ws_deflate_buf wire[VARIANTS];  /* each as a client compressed it */
} corpus;

typedef struct run {
    corpus *c;
    ws_deflate_ctx *ctx;
    ws_deflate_buf out;
    size_t bytes;                   /* payload bytes of the last round */
} run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_deflate: %s\n", what);
    exit(1);
}

/* What a client sends: zlib level 1, window 15, memLevel 8, sync flush
 * with the tail stripped. */
static void client_compress(const uint8_t *in, size_t len, ws_deflate_buf *w)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    w->len = 0;
    if (deflateInit2(&zs, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2");
    w->cap = deflateBound(&zs, len) + 16;
    if (!(w->data = realloc(w->data, w->cap)))
        die("out of memory");
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = w->data;
    zs.avail_out = (uInt)w->cap;
    if (deflate(&zs, Z_SYNC_FLUSH) != Z_OK || zs.avail_in != 0)
        die("deflate");
    w->len = w->cap - zs.avail_out - 4;
    deflateEnd(&zs);
}

static void corpus_make(corpus *c, size_t size)
{
    int i;
    c->size = size;
    for (i = 0; i < VARIANTS; i++) {
        if (!(c->docs[i] = malloc(size)))
            die("out of memory");
        json_doc(c->docs[i], size, (uint64_t)i);
        memset(&c->wire[i], 0, sizeof c->wire[i]);
        client_compress(c->docs[i], size, &c->wire[i]);
    }
}

static void corpus_free(corpus *c)
{
    int i;
    for (i = 0; i < VARIANTS; i++) {
        free(c->docs[i]);
        ws_deflate_buf_free(&c->wire[i]);
    }
}

/* The module's defaults: level 1, no context takeover either way. */
static ws_deflate_ctx *server_context(size_t fast_max)
{
    ws_deflate_params p;
    ws_deflate_ctx *ctx;
    memset(&p, 0, sizeof p);
    p.server_max_window_bits = 15;
    p.client_max_window_bits = 15;
    p.server_no_context_takeover = 1;
    p.client_no_context_takeover = 1;
    p.level = 1;
    p.mem_level = 8;
    if (!(ctx = ws_deflate_create(&p, 0)))
        die("out of memory");
    ws_deflate_set_fast_max(ctx, fast_max);
    return ctx;
}

/* One round: every document of the corpus once. */
static void compress_round(run *r)
{
    int i;
    r->bytes = 0;
    for (i = 0; i < VARIANTS; i++) {
        r->out.len = 0;
        if (ws_deflate_compress(r->ctx, r->c->docs[i], r->c->size, &r->out)
            != WS_DEFLATE_OK)
            die("ws_deflate_compress failed");
        r->bytes += r->out.len;
    }
}

static void inflate_round(run *r)
{
    int i;
    for (i = 0; i < VARIANTS; i++) {
        r->out.len = 0;
        if (ws_deflate_inflate(r->ctx, r->c->wire[i].data, r->c->wire[i].len,
                               1, ws_deflate_buf_sink, &r->out)
            != WS_DEFLATE_OK || r->out.len != r->c->size)
            die("ws_deflate_inflate failed");
    }
}

/* Nanoseconds per message, rounds repeated until the time is up. */
static double ns_per_message(void (*round)(run *), run *r)
{
    double start, elapsed;
    long rounds = 0, batch = 1;

    round(r);                       /* warm caches and the block cache */
    start = now();
    do {
        long i;
        for (i = 0; i < batch; i++)
            round(r);
        rounds += batch;
        if (batch < 4096)
            batch *= 2;
        elapsed = now() - start;
    } while (elapsed < seconds_per_figure);
    return elapsed * 1e9 / ((double)rounds * VARIANTS);
}

static const char *size_name(size_t size, char *buf, size_t cap)
{
    if (size % 1024 == 0)
        snprintf(buf, cap, "%zuk", size / 1024);
    else
        snprintf(buf, cap, "%zu", size);
    return buf;
}

static void measure(size_t size)
{
    corpus c;
    run ours = { 0 }, zlib = { 0 }, in = { 0 };
    double t_ours, t_zlib, t_in;
    char name[32];

    corpus_make(&c, size);
    ours.c = zlib.c = in.c = &c;
    ours.ctx = server_context(WS_DEFLATE_FAST_MAX);
    zlib.ctx = server_context(0);
    in.ctx = server_context(0);
    t_zlib = ns_per_message(compress_round, &zlib);
    t_ours = ns_per_message(compress_round, &ours);
    t_in = ns_per_message(inflate_round, &in);
    size_name(size, name, sizeof name);
    printf("zlib_%s %.0f ns/msg 1.000\n", name, t_zlib);
    printf("compress_%s %.0f ns/msg %.3f\n", name, t_ours, t_ours / t_zlib);
    printf("zlib_%s_bytes %.1f B/msg %.3f\n", name,
           (double)zlib.bytes / VARIANTS, (double)zlib.bytes / (double)size
           / VARIANTS);
    printf("compress_%s_bytes %.1f B/msg %.3f\n", name,
           (double)ours.bytes / VARIANTS, (double)ours.bytes
           / (double)zlib.bytes);
    printf("inflate_%s %.0f ns/msg %.3f\n", name, t_in, t_in / t_zlib);
    fflush(stdout);
    ws_deflate_destroy(ours.ctx);
    ws_deflate_destroy(zlib.ctx);
    ws_deflate_destroy(in.ctx);
    ws_deflate_buf_free(&ours.out);
    ws_deflate_buf_free(&zlib.out);
    ws_deflate_buf_free(&in.out);
    corpus_free(&c);
}

/* --count N kind size: N messages, nothing printed but a checksum. */
static int count_mode(long n, const char *kind, size_t size)
{
    corpus c;
    run r = { 0 };
    long k;

    corpus_make(&c, size);
    r.c = &c;
    r.ctx = server_context(strcmp(kind, "compress") == 0 ? WS_DEFLATE_FAST_MAX
                                                         : 0);
    for (k = 0; k < n; k += VARIANTS) {
        if (strcmp(kind, "inflate") == 0)
            inflate_round(&r);
        else if (strcmp(kind, "compress") == 0 || strcmp(kind, "zlib") == 0)
            compress_round(&r);
        else
            die("kind: compress, zlib or inflate");
    }
    printf("%s %zu: %ld messages, last round %zu payload bytes\n", kind, size,
           (n + VARIANTS - 1) / VARIANTS * VARIANTS, r.bytes);
    ws_deflate_destroy(r.ctx);
    ws_deflate_buf_free(&r.out);
    corpus_free(&c);
    return 0;
}

int main(int argc, char **argv)
{
    static const size_t sizes[] = { 256, 1024, 4096, 16384, 65536 };
    unsigned i;

    if (argc == 5 && strcmp(argv[1], "--count") == 0)
        return count_mode(atol(argv[2]), argv[3], (size_t)atol(argv[4]));
    if (argc > 1 && (seconds_per_figure = atof(argv[1])) <= 0) {
        fprintf(stderr, "usage: %s [seconds per figure]\n"
                "       %s --count N compress|zlib|inflate SIZE\n",
                argv[0], argv[0]);
        return 2;
    }
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        measure(sizes[i]);
    return 0;
}
