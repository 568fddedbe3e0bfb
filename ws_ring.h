/*
 * ws_ring.h - the topics' message ring, in memory shared by every httpd
 * child: a publish in any process reaches a reader thread in every child,
 * in one global order, and the ring doubles as each topic's history.
 *
 * Sans-Apache: plain C (gnu99), pthreads, the Linux futex syscall and
 * __atomic builtins.  The caller maps the memory; the ring never
 * allocates shared memory and never calls an APR function.
 *
 * WHO CALLS WHAT
 *
 *   The parent (post_config, once per boot; never again at a restart):
 *       size = ws_ring_size_needed(capacity, index_slots);
 *       mem  = an anonymous MAP_SHARED mapping of size bytes, made before
 *              the first fork and kept across graceful restarts
 *              (ap_retained_data_*), so seq numbers and history survive;
 *       ws_ring_init(mem, size, capacity, max_message, index_slots);
 *     After that the parent never reads the ring (a child could have
 *     scribbled on it: CVE-2019-0211); to check the size at a restart it
 *     compares the figures it kept, not the header.
 *
 *   Each child (child_init):
 *       ws_ring *ring = ws_ring_attach(mem, size);   // NULL: refuse topics
 *     The handle is private to the process (malloc'd) and keeps its own
 *     copy of the geometry, so later damage to the header cannot make it
 *     read or write outside the mapping.  ws_ring_detach() frees it.
 *
 *   Publishers (any thread of any child; an HTTP POST, a plugin, a Redis
 *   relay):
 *       ws_ring_msg m = { topic, topic_len, payload, payload_len,
 *                         flags, origin };
 *       uint64_t seq;
 *       st = ws_ring_publish(ring, &m, &seq);    // OK, TOO_BIG, EINVAL
 *     flags and origin are opaque to the ring: store text/binary and an
 *     "exclude the sender" bit in flags, and who published in origin (so
 *     a child can skip the sender and a Redis relay can avoid loops).
 *
 *   The reader thread (one per child, started in child_init):
 *       ws_ring_reader rd;
 *       ws_ring_record rec;                      // ~1.1 KB: topic inline
 *       ws_ring_reader_init(ring, &rd);          // starts at the head
 *       while (!stopping) {
 *           st = ws_ring_peek(ring, &rd, &rec);
 *           if (st == WS_RING_NONE) {            // caught up
 *               ws_ring_wait(ring, &rd, 1000);   // futex sleep, 1 s tick
 *               continue;
 *           }
 *           if (st == WS_RING_OVERRUN || st == WS_RING_CORRUPT) {
 *               log rec.lost; close local subscribers with 1013;
 *               continue;                        // rd already moved on
 *           }
 *           if (no local subscriber for rec.topic_hash) {
 *               ws_ring_skip(ring, &rd, &rec);  // no copy of the payload
 *               continue;
 *           }
 *           st = ws_ring_next(ring, &rd, &rec, buf, ws_ring_payload_max(ring));
 *           if (st == WS_RING_OK)
 *               compare rec.topic with the subscribers' topics (the hash is
 *               only a filter), then queue rec.payload to them;
 *           (other statuses as above)
 *       }
 *     To stop it (child_stopping): stopping = 1; ws_ring_wake_all(ring);
 *     join.  A reader is a plain struct owned by one thread; several
 *     readers in one process are fine (each keeps its own cursor).  The
 *     handle itself is shared by all threads of the process: publish,
 *     history and stats are thread-safe.
 *
 *   A subscriber resuming after the id it saw last (any thread):
 *       register it for live delivery first, then
 *       ws_ring_history(ring, topic, len, after_seq, max, cb, baton, &res);
 *     and drop live records with seq <= res.snapshot_seq (history covers
 *     them).  res.complete says whether nothing was missed.
 *
 * GUARANTEES
 *
 *   Order.  Every publish gets seq = the previous seq + 1, starting at 1,
 *   in the order of the lock; seq lives in the shared header, so it never
 *   goes back while the memory lives (graceful restarts included).  A
 *   reader sees records in seq order; it sees each record once, or is
 *   told exactly how many it lost.  The epoch (ws_ring_stats_get) changes
 *   only when the memory is initialized again: ids given to clients should
 *   carry it, since a fresh ring counts from 1 again.
 *
 *   Commit last.  A publisher copies its record, then moves the head, and
 *   only then updates the topic index, under one process-shared robust
 *   pthread mutex that lives in the header (the ring needs no APR mutex
 *   and no Mutex directive applies to it).  A publisher that dies at any point leaves either nothing
 *   visible or a whole record: the next process to take the lock
 *   (EOWNERDEAD) finishes or discards the dead one's work from a small
 *   journal in the header.  Records are never half visible.
 *
 *   No torn reads.  Readers take no lock.  A writer announces the bytes it
 *   is about to overwrite (reserve) before touching them; a reader checks
 *   reserve after copying (seqlock-style), so a record overwritten while
 *   it was being copied is reported as an overrun, never returned.
 *
 *   Distrust.  Readers check every length, offset and seq they read from
 *   shared memory against the geometry kept in their private handle, so
 *   a corrupt or hostile writer can make them lose records (CORRUPT) but
 *   never read out of bounds, loop, or return a record longer than the
 *   limits.  The mutex itself cannot be validated: damage to it can block
 *   publishers.
 *
 *   Memory.  Fixed: nothing grows.  A slow reader is overrun, it never
 *   blocks a publisher.
 *
 *   Wake-ups.  A publish makes one FUTEX_WAKE (all waiters, whatever
 *   their number) when at least one reader is sleeping in ws_ring_wait,
 *   and no syscall otherwise.  A reader killed while sleeping leaves the
 *   waiter count one too high, which only costs publishers a needless
 *   FUTEX_WAKE each (a syscall with nobody to wake).
 *
 *   History.  Each record links to the previous record of its topic, found
 *   through a fixed index (4-way sets, topic hash -> newest record).  A
 *   topic pushed out of the index loses its links but the ring remembers
 *   the highest seq pushed out of each set, so ws_ring_history can still
 *   tell a complete answer from one with a gap.  The chain walk is
 *   O(records returned), checks every offset, and compares topic bytes at
 *   every step, so two topics with the same hash never mix.
 *
 * MEMORY LAYOUT (all offsets from mem, every part 64-byte aligned)
 *
 *   0       header: geometry (magic, version, sizes, epoch, check word),
 *           the mutex and the publishers' journal, the commit line (head,
 *           reserve, tail, next seq, futex word), the waiter count, stats
 *   H       index: index_slots / 4 sets of 128 bytes: the highest seq
 *           pushed out of the set, then 4 x {topic hash, offset, seq}
 *   H+I     data: capacity bytes, a circle; records are contiguous in the
 *           logical (ever-growing) offset space and split across the
 *           physical end when they must be.  Each record: a 56-byte
 *           header {seq, topic hash, origin, previous seq of the topic,
 *           its offset, record length, payload length, flags, topic
 *           length, mark}, the topic, the payload, padding to 8 bytes.
 *
 *   Offsets are logical (64-bit, never wrapping in practice); the byte of
 *   logical offset p lives at data[p % capacity].  [tail, head) holds the
 *   intact records; a writer extending the ring to offset e first raises
 *   reserve to e, which marks everything before e - capacity overwritten.
 */
#ifndef WS_RING_H
#define WS_RING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest topic, in bytes. */
#define WS_RING_TOPIC_MAX     1024
/* Smallest ring, and the largest payload a ring may be built for. */
#define WS_RING_MIN_CAPACITY  4096
#define WS_RING_MAX_MESSAGE   (1u << 30)

typedef enum ws_ring_status {
    WS_RING_OK = 0,
    WS_RING_NONE,      /* reader: caught up, nothing to read */
    WS_RING_OVERRUN,   /* reader: records were overwritten before it read
                          them; rec->lost says how many; the reader now
                          points at the oldest intact record */
    WS_RING_CORRUPT,   /* reader: shared memory held an impossible record;
                          rec->lost says how many records were skipped; the
                          reader now points at the head */
    WS_RING_TIMEOUT,   /* ws_ring_wait: nothing was published in time */
    WS_RING_TOO_BIG,   /* publish: payload over max_message;
                          next: the payload does not fit the buffer given
                          (the reader did not move: skip it or retry) */
    WS_RING_EINVAL,    /* bad argument */
    WS_RING_ELOCK,     /* the shared mutex failed (damaged memory) */
    WS_RING_ENOMEM     /* history: no memory for its scratch space */
} ws_ring_status;

/* A static string naming a status, for log lines. */
const char *ws_ring_strerror(ws_ring_status st);

/* ------------------------------------------------------------ the parent */

/* Bytes of shared memory a ring needs: header, index and data.  0 when
 * the figures are out of range. */
size_t ws_ring_size_needed(size_t capacity, size_t index_slots);

/*
 * Lays a new, empty ring over mem (mem_size bytes, 64-byte aligned, as
 * mmap gives): seq restarts at 1 and a new epoch is drawn.  It zeroes
 * all the bytes it uses, so the pages are faulted in once, in the caller
 * (children share them), and nothing of a former use shows.  Call it
 * once, before any process attaches; calling it on a live ring destroys
 * it.
 *   capacity     data bytes: a multiple of 8, WS_RING_MIN_CAPACITY .. 2^40
 *   max_message  largest payload: 1 .. min(capacity / 8, WS_RING_MAX_MESSAGE)
 *   index_slots  topics the history index remembers: a multiple of 4,
 *                4 .. 2^24 (32 bytes each)
 * Returns WS_RING_OK or WS_RING_EINVAL (figures out of range, mem_size
 * short of ws_ring_size_needed, or the mutex could not be made).
 */
ws_ring_status ws_ring_init(void *mem, size_t mem_size, size_t capacity,
                            size_t max_message, size_t index_slots);

/* ------------------------------------------------------- every process */

typedef struct ws_ring ws_ring;

/* A private handle on the ring at mem, after checking the header (magic,
 * version, geometry, check word, and that the ring fits in mem_size).
 * NULL for anything else, or when out of memory. */
ws_ring *ws_ring_attach(void *mem, size_t mem_size);
void     ws_ring_detach(ws_ring *ring);

/* Largest payload of this ring (its max_message): the buffer size
 * ws_ring_next needs to accept every record. */
size_t ws_ring_payload_max(const ws_ring *ring);

/* The 64-bit hash the ring files topics under (FNV-1a).  It is a filter,
 * not an identity: compare topic bytes before delivering. */
uint64_t ws_ring_topic_hash(const void *topic, size_t len);

/* ---------------------------------------------------------- publishers */

typedef struct ws_ring_msg {
    const char *topic;        /* 1 .. WS_RING_TOPIC_MAX bytes, any values */
    size_t      topic_len;
    const void *payload;      /* may be NULL when payload_len is 0 */
    size_t      payload_len;  /* 0 .. max_message */
    uint32_t    flags;        /* opaque to the ring */
    uint64_t    origin;       /* opaque to the ring */
} ws_ring_msg;

/*
 * Appends one record.  On WS_RING_OK, *seq_out (if not NULL) is its seq.
 * WS_RING_TOO_BIG: payload over max_message (no seq is used up).
 * WS_RING_EINVAL: no topic, topic too long, or NULL payload with a length.
 * WS_RING_ELOCK: the mutex is unusable.
 * Blocks only for the lock, which is held for one copy of the record.
 */
ws_ring_status ws_ring_publish(ws_ring *ring, const ws_ring_msg *msg,
                               uint64_t *seq_out);

/* ------------------------------------------------------------- readers */

/* A reader's cursor, set up by ws_ring_reader_init.  Owned by one
 * thread; the fields are for logging. */
typedef struct ws_ring_reader {
    uint64_t pos;        /* logical offset of the next record */
    uint64_t next_seq;   /* the seq that record must carry */
    uint64_t head_seen;  /* the head as last read: what is committed */
} ws_ring_reader;

typedef struct ws_ring_record {
    uint64_t seq;
    uint64_t topic_hash;
    uint64_t origin;
    uint64_t prev_seq;     /* the topic's previous record, or a bound on it
                              (0: none since the ring was made) */
    uint32_t flags;
    size_t   topic_len;
    size_t   payload_len;
    const void *payload;   /* next, history: the copy, in the caller's
                              buffer (next) or the ring's scratch (history) */
    uint64_t lost;         /* OVERRUN, CORRUPT: records skipped */
    char     topic[WS_RING_TOPIC_MAX + 1];  /* next, history: NUL-terminated
                                               copy (topics may hold NULs:
                                               use topic_len) */
} ws_ring_record;

/* Points rd at the current head: it will see what is published from now
 * on, nothing older.  Takes the lock briefly. */
ws_ring_status ws_ring_reader_init(ws_ring *ring, ws_ring_reader *rd);

/*
 * The next record's header fields, without consuming it or copying the
 * payload (rec->topic and rec->payload are not filled).
 * WS_RING_OK; WS_RING_NONE (caught up); WS_RING_OVERRUN or WS_RING_CORRUPT
 * (rec->lost set, rd moved: call again).
 */
ws_ring_status ws_ring_peek(ws_ring *ring, ws_ring_reader *rd,
                            ws_ring_record *rec);

/* Consumes the next record without copying its payload; statuses as for
 * ws_ring_peek, and on WS_RING_OK rec holds the header fields of the
 * record skipped (rec may be NULL). */
ws_ring_status ws_ring_skip(ws_ring *ring, ws_ring_reader *rd,
                            ws_ring_record *rec);

/*
 * Copies the next record out and consumes it: topic into rec->topic,
 * payload into buf (buf_size bytes; ws_ring_payload_max() always fits),
 * rec->payload = buf.  Statuses as for ws_ring_peek, plus WS_RING_TOO_BIG
 * when the payload does not fit buf (rd does not move).  Data is checked
 * after the copy: a record overwritten meanwhile gives WS_RING_OVERRUN.
 */
ws_ring_status ws_ring_next(ws_ring *ring, ws_ring_reader *rd,
                            ws_ring_record *rec, void *buf, size_t buf_size);

/*
 * Sleeps until the head moves past rd, or timeout_ms passes (< 0: no
 * limit).  WS_RING_OK: something to read (at once if there already was);
 * WS_RING_TIMEOUT; WS_RING_NONE: woken by ws_ring_wake_all with nothing
 * new.  Signals and spurious wake-ups do not end the wait early.  No busy
 * waiting: the thread sleeps in FUTEX_WAIT from the first check on.
 */
ws_ring_status ws_ring_wait(ws_ring *ring, const ws_ring_reader *rd,
                            int timeout_ms);

/* Wakes every reader sleeping in ws_ring_wait, in every process (they
 * share one futex word).  For a child that stops: set the reader thread's
 * stop flag, call this, join the thread; the other children's readers
 * wake once and sleep again. */
void ws_ring_wake_all(ws_ring *ring);

/* ------------------------------------------------------------- history */

/* Called once per record, oldest first; rec and its payload are valid
 * during the call only.  Return 0 to go on, anything else to stop. */
typedef int (*ws_ring_history_fn)(void *baton, const ws_ring_record *rec);

typedef struct ws_ring_history_result {
    size_t   count;          /* records delivered */
    uint64_t first_seq;      /* seq of the first delivered, 0 if none */
    uint64_t last_seq;       /* seq of the last delivered, 0 if none */
    uint64_t snapshot_seq;   /* the newest seq in the ring when the call
                                looked; later records are not included */
    int      complete;       /* 1: every record of the topic with
                                after_seq < seq <= snapshot_seq was
                                delivered; 0: a gap (records overwritten,
                                the topic pushed out of the index,
                                max_count reached, or the callback stopped) */
} ws_ring_history_result;

/*
 * Delivers the records of topic with seq > after_seq that the ring still
 * holds, oldest first: at most max_count, the most recent ones.  The walk
 * follows the topic's chain (no scan of the ring) and does not hold the
 * lock while calling fn.
 * WS_RING_OK with *res filled; WS_RING_EINVAL; WS_RING_ENOMEM;
 * WS_RING_OVERRUN when publishers overwrote records still to deliver
 * after some were delivered (res says what was; treat the subscriber as
 * overrun).  An after_seq beyond the newest seq (an id from another
 * epoch) gives no records and complete = 0.
 */
ws_ring_status ws_ring_history(ws_ring *ring, const char *topic,
                               size_t topic_len, uint64_t after_seq,
                               size_t max_count, ws_ring_history_fn fn,
                               void *baton, ws_ring_history_result *res);

/* --------------------------------------------------------------- stats */

typedef struct ws_ring_stats {
    /* geometry */
    uint64_t capacity, max_message, index_slots, epoch;
    /* position */
    uint64_t head, tail, next_seq;
    uint32_t waiters;          /* readers sleeping in ws_ring_wait */
    /* counters since ws_ring_init */
    uint64_t publishes;        /* next_seq - 1: exact, whoever died */
    uint64_t payload_bytes;
    uint64_t overwritten;      /* records pushed out by newer ones */
    uint64_t max_record;       /* largest record, bytes in the ring */
    uint64_t max_payload;      /* largest payload published */
    uint64_t too_big;          /* publishes refused as TOO_BIG */
    uint64_t wakeups;          /* FUTEX_WAKE calls made by publishers */
    uint64_t recoveries;       /* locks taken over from a dead holder */
    uint64_t index_evictions;  /* topics pushed out of the history index */
    uint64_t reader_overruns;  /* OVERRUN and CORRUPT events, all readers */
    uint64_t records_lost;     /* records those events skipped */
    uint64_t corrupt;          /* impossible values found in shared memory */
} ws_ring_stats;

/* A snapshot of the counters (each read atomically; not all at once). */
void ws_ring_stats_get(ws_ring *ring, ws_ring_stats *out);

/* The seq of the newest committed record (0: none yet), without the lock:
 * a reader that skips records up to it sees only what is published
 * after the call (a publish under way may go either side). */
uint64_t ws_ring_newest_seq(ws_ring *ring);

#ifdef WS_RING_TEST_HOOKS
/* Test builds only (t/test_ring.c): called at the points named, so a test
 * can kill a writer mid-copy or publish while a reader copies. */
enum ws_ring_hook_point {
    WS_RING_HOOK_WRITER_MID_COPY,      /* record half copied, lock held */
    WS_RING_HOOK_WRITER_COMMITTED,     /* head moved, index not updated */
    WS_RING_HOOK_READER_HEADER,        /* reader read a header, unchecked */
    WS_RING_HOOK_READER_COPIED,        /* reader copied, not yet checked */
    WS_RING_HOOK_HISTORY_COPIED        /* history copied a record */
};
extern void (*ws_ring_test_hook)(enum ws_ring_hook_point where);
/* Replaces the topic hash (to make collisions); NULL: FNV-1a. */
extern uint64_t (*ws_ring_test_hash)(const void *topic, size_t len);
/* Where some header fields lie, from mem: damage tests spare the mutex
 * and aim at the positions.  (The data are the last capacity bytes.) */
typedef struct ws_ring_test_offsets {
    size_t lock, lock_len, head, reserve, tail, next_seq;
} ws_ring_test_offsets;
void ws_ring_test_layout(ws_ring_test_offsets *out);
#endif

#ifdef __cplusplus
}
#endif

#endif /* WS_RING_H */
