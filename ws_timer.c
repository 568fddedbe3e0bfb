/*
 * ws_timer.c - the deadline heap (see ws_timer.h).
 */
#include <stdlib.h>

#include "ws_timer.h"

static void place(ws_timer_heap *h, size_t i, ws_timer *t)
{
    h->items[i] = t;
    t->index = i + 1;
}

static void sift_up(ws_timer_heap *h, size_t i)
{
    ws_timer *t = h->items[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (h->items[parent]->at <= t->at) {
            break;
        }
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(ws_timer_heap *h, size_t i)
{
    ws_timer *t = h->items[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= h->count) {
            break;
        }
        if (child + 1 < h->count && h->items[child + 1]->at < h->items[child]->at) {
            child++;
        }
        if (t->at <= h->items[child]->at) {
            break;
        }
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, t);
}

static int grow(ws_timer_heap *h)
{
    size_t cap = h->cap ? h->cap * 2 : 64;
    ws_timer **items = realloc(h->items, cap * sizeof(*items));

    if (!items) {
        return -1;
    }
    h->items = items;
    h->cap = cap;
    return 0;
}

int ws_timer_set(ws_timer_heap *h, ws_timer *t, int64_t at)
{
    int64_t was = t->at;

    t->at = at;
    if (t->index) {
        if (at < was) {
            sift_up(h, t->index - 1);
        }
        else if (at > was) {
            sift_down(h, t->index - 1);
        }
        return 0;
    }
    if (h->count == h->cap && grow(h) != 0) {
        return -1;
    }
    place(h, h->count, t);
    h->count++;
    sift_up(h, h->count - 1);
    return 0;
}

void ws_timer_cancel(ws_timer_heap *h, ws_timer *t)
{
    size_t i;
    ws_timer *last;

    if (!t->index) {
        return;
    }
    i = t->index - 1;
    t->index = 0;
    last = h->items[--h->count];
    if (i == h->count) {
        return;
    }
    place(h, i, last);
    if (i > 0 && h->items[(i - 1) / 2]->at > last->at) {
        sift_up(h, i);
    }
    else {
        sift_down(h, i);
    }
}

ws_timer *ws_timer_first(const ws_timer_heap *h)
{
    return h->count ? h->items[0] : NULL;
}

ws_timer *ws_timer_pop_due(ws_timer_heap *h, int64_t now)
{
    ws_timer *t = ws_timer_first(h);

    if (!t || t->at > now) {
        return NULL;
    }
    ws_timer_cancel(h, t);
    return t;
}

void ws_timer_heap_free(ws_timer_heap *h)
{
    size_t i;

    for (i = 0; i < h->count; i++) {
        h->items[i]->index = 0;
    }
    free(h->items);
    h->items = NULL;
    h->count = h->cap = 0;
}
