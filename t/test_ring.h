/*
 * t/test_ring.h - what t/test_ring.c and t/test_ring_procs.c share: the
 * check harness, rings in shared anonymous memory, self-checking payloads.
 */
#ifndef TEST_RING_H
#define TEST_RING_H

#ifndef WS_RING_TEST_HOOKS
#define WS_RING_TEST_HOOKS 1     /* ws_ring.c is built with them too */
#endif
#include "../ws_ring.h"

#include <stddef.h>
#include <stdint.h>

extern int n_passed, n_failed;

void check_at(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define CHECK(cond) check_at((cond) != 0, __FILE__, __LINE__, "CHECK(%s)", #cond)
#define CHECK_INT(got, want) do { \
        long long g_ = (long long)(got), w_ = (long long)(want); \
        check_at(g_ == w_, __FILE__, __LINE__, "%s is %lld, want %lld", #got, g_, w_); \
    } while (0)

/* Deterministic PRNG (xorshift64*), so failures reproduce. */
extern uint64_t rng_state;
uint64_t rnd(void);

/* A ring in a MAP_SHARED|MAP_ANONYMOUS mapping, as httpd's parent makes it. */
typedef struct test_ring {
    void *mem;
    size_t size;
    ws_ring *ring;
} test_ring;

ws_ring *ring_new(test_ring *t, size_t cap, size_t max_msg, size_t slots);
void ring_free(test_ring *t);

/* Payloads carry their tag in the first 8 bytes, and bytes derived from
 * it after: payload_ok() checks one knowing nothing else (len >= 8). */
void fill_payload(unsigned char *p, size_t len, uint64_t tag);
int payload_ok(const void *payload, size_t len, uint64_t *tag_out);

/* Publishes len bytes for tag (flags and origin = the tag). */
ws_ring_status pub(ws_ring *r, const char *topic, size_t len, uint64_t tag, uint64_t *seq);
/* ws_ring_next, and on OK checks the payload, origin and topic hash. */
ws_ring_status read_one(ws_ring *r, ws_ring_reader *rd, ws_ring_record *rec);

void run_process_tests(void);

#endif /* TEST_RING_H */
