/*
 * ws_timer.h - a binary min-heap of deadlines, so that an event loop
 * holding 100,000 sockets does work only for the timers that are due.
 *
 * Each object with a deadline embeds a ws_timer; a loop keeps one heap.
 * Insert, remove and reschedule are O(log n); the next deadline is O(1).
 * No Apache headers; not thread-safe (one loop thread owns a heap).
 */
#ifndef WS_TIMER_H
#define WS_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_timer {
    int64_t at;          /* when it is due (any monotonic unit) */
    size_t index;        /* position in the heap + 1; 0: not in a heap */
} ws_timer;

typedef struct ws_timer_heap {
    ws_timer **items;
    size_t count;
    size_t cap;
} ws_timer_heap;

/* Schedules t at 'at', or moves it there; 0, or -1 when out of memory. */
int ws_timer_set(ws_timer_heap *h, ws_timer *t, int64_t at);

/* Takes t out of the heap (a no-op when it is not in it). */
void ws_timer_cancel(ws_timer_heap *h, ws_timer *t);

/* The earliest timer, or NULL. */
ws_timer *ws_timer_first(const ws_timer_heap *h);

/* Takes the earliest timer if it is due at 'now'; NULL when none is. */
ws_timer *ws_timer_pop_due(ws_timer_heap *h, int64_t now);

void ws_timer_heap_free(ws_timer_heap *h);

#endif /* WS_TIMER_H */
