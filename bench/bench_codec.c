/*
 * bench/bench_codec.c - micro-benchmark of the framing codec, one core.
 *
 *   gcc -std=gnu99 -O2 -o bench/bench_codec bench/bench_codec.c ws_frame.c
 *   bench/bench_codec [seconds per figure, default 0.5]
 *
 * One line per figure: "name value unit ratio_to_memcpy".  memcpy of the
 * same 64 KiB buffer is measured in the same run as the yardstick, so
 * figures from different (noisy, shared) machines can be compared by
 * their ratio.  Rates are in bytes of input processed (for the parser:
 * wire bytes, headers included); 1 GB = 1e9 bytes.
 */
#include "../ws_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUF_SIZE (64 * 1024)

static double seconds_per_figure = 0.5;
static volatile unsigned sink;   /* keeps results alive */

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef void (*work_fn)(void *arg);

/* Runs work in growing batches until the time is up; returns calls/s. */
static double rate(work_fn work, void *arg)
{
    double start, elapsed;
    long calls = 0, batch = 1;

    work(arg);   /* warm caches */
    start = now();
    do {
        long i;

        for (i = 0; i < batch; i++)
            work(arg);
        calls += batch;
        if (batch < (1L << 20))
            batch *= 2;
        elapsed = now() - start;
    } while (elapsed < seconds_per_figure);
    return (double)calls / elapsed;
}

static void report(const char *name, double value, const char *unit,
                   double gbps, double memcpy_gbps)
{
    printf("%s %.3f %s %.3f\n", name, value, unit, gbps / memcpy_gbps);
    fflush(stdout);
}

/* ---- the workloads ---- */

static uint8_t src[BUF_SIZE], dst[BUF_SIZE];

static void do_memcpy(void *arg)
{
    (void)arg;
    memcpy(dst, src, BUF_SIZE);
    sink += dst[BUF_SIZE / 2];
}

static void do_mask(void *arg)
{
    static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };

    (void)arg;
    ws_mask(dst, BUF_SIZE, key, 1);
}

static void do_utf8(void *arg)
{
    sink += ws_utf8_feed(WS_UTF8_ACCEPT, arg, BUF_SIZE);
}

/* Text of 1- to 4-byte characters, roughly as in non-Latin languages:
 * 40% ASCII, 30% 2-byte, 20% 3-byte, 10% 4-byte. */
static void fill_mixed(uint8_t *b, size_t n)
{
    static const char *const chars[] = { "a", "b", " ", "e", "\xc3\xa9", "\xd0\xb6",
                                         "\xce\xbb", "\xe2\x82\xac", "\xe4\xb8\xad",
                                         "\xf0\x9f\x98\x80" };
    size_t at = 0;
    unsigned r = 1;

    while (at < n) {
        const char *c;
        size_t k;

        r = r * 1103515245u + 12345u;
        c = chars[(r >> 16) % 10];
        k = strlen(c);
        if (at + k > n)
            c = "z", k = 1;
        memcpy(b + at, c, k);
        at += k;
    }
}

typedef struct {
    ws_parser *p;
    uint8_t *stream;
    size_t len;
    size_t read_size;   /* bytes given per call to the parser, 0: all */
    long messages;
} parse_job;

/* Parses the whole stream once.  Payloads are unmasked in place, which
 * makes the next pass see them masked again: binary frames do not care. */
static void do_parse(void *arg)
{
    parse_job *job = arg;
    size_t at = 0;

    while (at < job->len) {
        size_t end = job->read_size ? at + job->read_size : job->len;

        if (end > job->len)
            end = job->len;
        for (;;) {
            ws_event ev;
            size_t used = ws_parser_next(job->p, job->stream + at, end - at, &ev);

            at += used;
            if (ev.type == WS_EV_NONE)
                break;
            if (ev.type == WS_EV_MESSAGE)
                job->messages++;
            else if (ev.type != WS_EV_FRAME) {
                fprintf(stderr, "bench: unexpected event %d\n", (int)ev.type);
                exit(1);
            }
        }
    }
}

static size_t build_stream(uint8_t **out, size_t payload, size_t frames)
{
    static const uint8_t key[4] = { 0x12, 0x34, 0x56, 0x78 };
    size_t cap = frames * (payload + WS_MAX_HEADER_SIZE), len = 0, i;
    uint8_t *s = malloc(cap);

    if (!s)
        exit(1);
    for (i = 0; i < frames; i++) {
        len += ws_frame_header(s + len, WS_OP_BINARY, WS_FIN, payload, key);
        memset(s + len, (int)i, payload);
        ws_mask(s + len, payload, key, 0);
        len += payload;
    }
    *out = s;
    return len;
}

static void bench_parse(const char *name, size_t payload, size_t frames,
                        size_t read_size, double memcpy_gbps)
{
    ws_parser_config cfg;
    parse_job job;
    double passes, gbps;
    char label[64];

    memset(&cfg, 0, sizeof cfg);
    cfg.role = WS_ROLE_SERVER;
    cfg.assemble = 1;
    cfg.max_message_size = 1 << 20;
    memset(&job, 0, sizeof job);
    job.p = ws_parser_create(&cfg);
    job.len = build_stream(&job.stream, payload, frames);
    job.read_size = read_size;
    passes = rate(do_parse, &job);
    if (job.messages % (long)frames != 0) {
        fprintf(stderr, "bench: %s lost messages\n", name);
        exit(1);
    }
    gbps = passes * (double)job.len / 1e9;
    snprintf(label, sizeof label, "%s_frames", name);
    if (payload < 1024)
        report(label, passes * (double)frames / 1e6, "Mframes/s", gbps, memcpy_gbps);
    else
        report(label, passes * (double)frames / 1e3, "kframes/s", gbps, memcpy_gbps);
    report(name, gbps, "GB/s", gbps, memcpy_gbps);
    ws_parser_destroy(job.p);
    free(job.stream);
}

int main(int argc, char **argv)
{
    static uint8_t ascii[BUF_SIZE], mixed[BUF_SIZE];
    double memcpy_gbps, gbps;
    size_t i;

    if (argc > 1)
        seconds_per_figure = atof(argv[1]);
    for (i = 0; i < BUF_SIZE; i++) {
        src[i] = (uint8_t)(i * 31);
        ascii[i] = (uint8_t)(' ' + i % 95);
    }
    fill_mixed(mixed, BUF_SIZE);
    if (ws_utf8_feed(WS_UTF8_ACCEPT, mixed, BUF_SIZE) != WS_UTF8_ACCEPT) {
        fprintf(stderr, "bench: mixed text is not valid UTF-8\n");
        return 1;
    }

    printf("# name value unit ratio_to_memcpy (64 KiB buffers, one core)\n");
    memcpy_gbps = rate(do_memcpy, NULL) * BUF_SIZE / 1e9;
    report("memcpy_64k", memcpy_gbps, "GB/s", memcpy_gbps, memcpy_gbps);

    gbps = rate(do_mask, NULL) * BUF_SIZE / 1e9;
    report("mask_64k", gbps, "GB/s", gbps, memcpy_gbps);

    gbps = rate(do_utf8, ascii) * BUF_SIZE / 1e9;
    report("utf8_ascii_64k", gbps, "GB/s", gbps, memcpy_gbps);

    gbps = rate(do_utf8, mixed) * BUF_SIZE / 1e9;
    report("utf8_mixed_64k", gbps, "GB/s", gbps, memcpy_gbps);

    /* Whole stream in one buffer: every message is handed out in place. */
    bench_parse("parse_32B", 32, 2048, 0, memcpy_gbps);
    bench_parse("parse_64k", 65536, 8, 0, memcpy_gbps);
    /* Read 16 KiB at a time: 64 KiB messages are assembled (copied). */
    bench_parse("parse_64k_16kreads", 65536, 8, 16384, memcpy_gbps);
    return 0;
}
