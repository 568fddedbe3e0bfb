/*
 * ws_ring_int.h - the ring's insides, shared by ws_ring.c (layout, lock,
 * publish, read, wait) and ws_ring_history.c (the history walk).  Not an
 * API: the layout is described in ws_ring.h.
 */
#ifndef WS_RING_INT_H
#define WS_RING_INT_H

#include "ws_ring.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define RING_MAGIC     UINT64_C(0x31474e4952535777)   /* "wWSRING1" */
#define RING_VERSION   1
#define LINE           64
#define WAYS           4
#define REC_MARK       0x5752
#define NO_LINK        UINT64_MAX
/* Logical offsets beyond this are damage (2^62 bytes is centuries away). */
#define POS_LIMIT      (UINT64_C(1) << 62)
#define MAX_CAPACITY   (UINT64_C(1) << 40)
#define MAX_SLOTS      (UINT64_C(1) << 24)

#define ALIGN_UP(n, a) (((n) + (a) - 1) / (a) * (a))

#ifdef WS_RING_TEST_HOOKS
#define HOOK(point) do { if (ws_ring_test_hook) ws_ring_test_hook(point); } while (0)
#else
#define HOOK(point) ((void)0)
#endif

typedef struct ring_geometry {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t capacity, max_message, index_slots;
    uint64_t index_offset, data_offset, total_size;
    uint64_t epoch;
    uint64_t check;          /* hash of the fields above */
} ring_geometry;

/* What a publisher is about to commit: enough for the next lock holder to
 * finish its index update if it died after moving the head. */
typedef struct ring_journal {
    uint32_t active;
    uint32_t way;
    uint64_t set, seq, start, end, hash;
} ring_journal;

typedef struct __attribute__((aligned(LINE))) ring_lock_line {
    pthread_mutex_t mutex;
    ring_journal journal;
} ring_lock_line;

/* Written by every publish, read by every reader: one line. */
typedef struct __attribute__((aligned(LINE))) ring_commit {
    uint64_t head;       /* end of the committed records */
    uint64_t reserve;    /* end of what a publisher may have written */
    uint64_t tail;       /* start of the oldest intact record (lock only) */
    uint64_t next_seq;   /* seq of the next publish (lock only) */
    uint32_t word;       /* futex word: bumped by every commit */
} ring_commit;

typedef struct __attribute__((aligned(LINE))) ring_wait_line {
    uint32_t waiters;
} ring_wait_line;

typedef struct __attribute__((aligned(LINE))) ring_counters {
    uint64_t payload_bytes, overwritten, max_record, max_payload;
    uint64_t too_big, wakeups, recoveries, index_evictions;
    uint64_t reader_overruns, records_lost, corrupt;
} ring_counters;

typedef struct __attribute__((aligned(LINE))) ring_header {
    ring_geometry geo;
    ring_lock_line lock;
    ring_commit commit;
    ring_wait_line wait;
    ring_counters stats;
} ring_header;

/* The history index: topic hash -> newest record of the topic. */
typedef struct index_entry {
    uint64_t hash, pos, seq;      /* seq 0: empty */
} index_entry;

typedef struct index_set {
    uint64_t floor;               /* highest seq pushed out of this set */
    uint64_t unused[3];
    index_entry way[WAYS];
} index_set;

typedef struct rec_header {
    uint64_t seq, topic_hash, origin;
    uint64_t prev_seq;            /* previous record of the topic, or a bound */
    uint64_t prev_pos;            /* its offset, or NO_LINK for a bound */
    uint32_t len;                 /* whole record, padded to 8 */
    uint32_t payload_len, flags;
    uint16_t topic_len, mark;
} rec_header;

_Static_assert(sizeof(rec_header) == 56, "record header is 56 bytes");
_Static_assert(sizeof(index_set) == 128, "index set is two lines");

/* The private handle: geometry checked once, then trusted. */
struct ws_ring {
    ring_header *hdr;
    index_set *index;
    unsigned char *data;
    uint64_t cap, max_message, max_record, nsets;
};

/* ------------------------------------------------------------- helpers */

static inline uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static inline uint64_t record_len(size_t topic_len, size_t payload_len)
{
    return ALIGN_UP(sizeof(rec_header) + topic_len + payload_len, 8);
}

/* Cyclic copies: logical offset pos lives at data[pos % cap]; n <= cap. */
static inline void data_read(const ws_ring *r, uint64_t pos, void *dst, size_t n)
{
    size_t off = (size_t)(pos % r->cap);
    size_t first = n < r->cap - off ? n : (size_t)(r->cap - off);

    if (n == 0)
        return;
    memcpy(dst, r->data + off, first);
    if (n > first)
        memcpy((unsigned char *)dst + first, r->data, n - first);
}

/* Could h be the header of a committed record at pos, ending by limit? */
static inline int header_plausible(const ws_ring *r, const rec_header *h,
                                   uint64_t pos, uint64_t limit)
{
    if (h->mark != REC_MARK || h->seq == 0 || h->prev_seq >= h->seq)
        return 0;
    if (h->topic_len == 0 || h->topic_len > WS_RING_TOPIC_MAX)
        return 0;
    if (h->payload_len > r->max_message)
        return 0;
    if (h->len != record_len(h->topic_len, h->payload_len))
        return 0;
    if (limit < pos || h->len > limit - pos)
        return 0;
    if (h->prev_pos != NO_LINK && (h->prev_pos >= pos || h->prev_pos % 8))
        return 0;
    return 1;
}

/* After copying bytes from pos on: were they possibly overwritten?  A
 * publisher raises reserve before it writes (seqlock-style). */
static inline int still_intact(const ws_ring *r, uint64_t pos)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&r->hdr->commit.reserve, __ATOMIC_RELAXED)
           <= pos + r->cap;
}

/* Between the ring's own files only (hidden from the module's exports). */
#define WS_RING_INTERNAL __attribute__((visibility("hidden")))

/* Takes the shared mutex, repairing after a dead holder and checking the
 * positions; WS_RING_ELOCK if the mutex is unusable. */
WS_RING_INTERNAL ws_ring_status ws_ring_lock(ws_ring *r);
WS_RING_INTERNAL void ws_ring_unlock(ws_ring *r);
/* The header fields of a checked record into rec (not topic, payload). */
WS_RING_INTERNAL void ws_ring_fill_fields(ws_ring_record *rec, const rec_header *h);

#endif /* WS_RING_INT_H */
