/*
 * test_timer.c - the deadline heap (ws_timer.c) against a plain array:
 * random inserts, moves and cancels; pops come out in deadline order.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../ws_timer.h"

#define N 2000

static int failures, checks;

#define CHECK(cond, ...) do {                                   \
        checks++;                                               \
        if (!(cond)) {                                          \
            failures++;                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);\
            fprintf(stderr, __VA_ARGS__);                       \
            fputc('\n', stderr);                                \
        }                                                       \
    } while (0)

static ws_timer timers[N];
static int64_t expected[N];          /* -1: not scheduled */

/* The earliest scheduled deadline of the reference, or -1. */
static int64_t reference_first(void)
{
    int64_t best = -1;
    int i;

    for (i = 0; i < N; i++) {
        if (expected[i] >= 0 && (best < 0 || expected[i] < best)) {
            best = expected[i];
        }
    }
    return best;
}

int main(void)
{
    ws_timer_heap heap = { NULL, 0, 0 };
    int64_t now = 0, last = -1;
    int i, round;

    srand(12345);
    for (i = 0; i < N; i++) {
        expected[i] = -1;
    }
    for (round = 0; round < 200000; round++) {
        int k = rand() % N, op = rand() % 4;

        if (op < 2) {
            int64_t at = now + rand() % 10000;

            CHECK(ws_timer_set(&heap, &timers[k], at) == 0, "set");
            expected[k] = at;
        }
        else if (op == 2) {
            ws_timer_cancel(&heap, &timers[k]);
            expected[k] = -1;
        }
        else {
            int64_t want = reference_first();
            ws_timer *t = ws_timer_first(&heap);

            CHECK((want < 0) == (t == NULL), "first exists");
            if (t) {
                CHECK(t->at == want, "first %lld, want %lld",
                      (long long)t->at, (long long)want);
            }
            now += rand() % 50;
        }
    }
    /* Drain in order. */
    while ((i = 0, ws_timer_first(&heap))) {
        ws_timer *t = ws_timer_pop_due(&heap, INT64_MAX);

        CHECK(t->at >= last, "popped out of order");
        CHECK(t->index == 0, "popped timer still indexed");
        last = t->at;
        expected[t - timers] = -1;
    }
    CHECK(reference_first() < 0, "reference empty after draining");
    CHECK(ws_timer_pop_due(&heap, INT64_MAX) == NULL, "empty heap pops NULL");
    ws_timer_heap_free(&heap);
    printf("test_timer: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
