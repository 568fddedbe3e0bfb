/*
 * ws_ring.c - the topics' message ring in shared memory (see ws_ring.h for
 * the contract, the roles and the layout).
 *
 * Two rules carry the design:
 *   - Publishers work under one robust mutex and commit last: reserve the
 *     bytes, copy, move the head, then update the index.  A journal in the
 *     header lets the next lock holder finish or drop a dead publisher's
 *     work, so the state after any death is one a live publisher could
 *     have left.
 *   - Readers take no lock on the hot path: they read the head, copy, and
 *     then check that no publisher reserved the bytes they copied in the
 *     meantime.  Anything they read from shared memory is a claim to
 *     check, never a length to trust.  Rare events (start, overrun,
 *     damage) take the lock, where the state is stable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ws_ring_int.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

#ifdef WS_RING_TEST_HOOKS
void (*ws_ring_test_hook)(enum ws_ring_hook_point where);
uint64_t (*ws_ring_test_hash)(const void *topic, size_t len);
#endif

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    while (len--)
        h = (h ^ *p++) * UINT64_C(0x100000001b3);
    return h;
}

uint64_t ws_ring_topic_hash(const void *topic, size_t len)
{
#ifdef WS_RING_TEST_HOOKS
    if (ws_ring_test_hash)
        return ws_ring_test_hash(topic, len);
#endif
    return fnv1a(UINT64_C(0xcbf29ce484222325), topic, len);
}

static uint64_t sub_floor0(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

/* Counters only lock holders write: no read-modify-write needed. */
static void locked_add(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n,
                     __ATOMIC_RELAXED);
}

static void locked_max(uint64_t *counter, uint64_t v)
{
    if (v > __atomic_load_n(counter, __ATOMIC_RELAXED))
        __atomic_store_n(counter, v, __ATOMIC_RELAXED);
}

static void shared_add(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

/* The writing half of the cyclic copies (data_read is in ws_ring_int.h). */
static void data_write(ws_ring *r, uint64_t pos, const void *src, size_t n)
{
    size_t off = (size_t)(pos % r->cap);
    size_t first = n < r->cap - off ? n : (size_t)(r->cap - off);

    if (n == 0)
        return;
    memcpy(r->data + off, src, first);
    if (n > first)
        memcpy(r->data, (const unsigned char *)src + first, n - first);
}

const char *ws_ring_strerror(ws_ring_status st)
{
    switch (st) {
    case WS_RING_OK:      return "ok";
    case WS_RING_NONE:    return "nothing to read";
    case WS_RING_OVERRUN: return "reader overrun: records were overwritten";
    case WS_RING_CORRUPT: return "impossible record in shared memory";
    case WS_RING_TIMEOUT: return "timed out";
    case WS_RING_TOO_BIG: return "message too big";
    case WS_RING_EINVAL:  return "invalid argument";
    case WS_RING_ELOCK:   return "the ring's mutex failed";
    case WS_RING_ENOMEM:  return "out of memory";
    }
    return "unknown status";
}

/* ------------------------------------------------------------ geometry */

static uint64_t header_bytes(void)
{
    return ALIGN_UP(sizeof(ring_header), LINE);
}

static uint64_t index_bytes(uint64_t slots)
{
    return slots / WAYS * sizeof(index_set);
}

static int max_message_valid(uint64_t max_message, uint64_t capacity)
{
    return max_message >= 1 && max_message <= capacity / 8
           && max_message <= WS_RING_MAX_MESSAGE;
}

size_t ws_ring_size_needed(size_t capacity, size_t index_slots)
{
    uint64_t cap = capacity, slots = index_slots;

    if (cap < WS_RING_MIN_CAPACITY || cap > MAX_CAPACITY || cap % 8)
        return 0;
    if (slots < WAYS || slots > MAX_SLOTS || slots % WAYS)
        return 0;
    if (header_bytes() + index_bytes(slots) + ALIGN_UP(cap, LINE) > SIZE_MAX)
        return 0;
    return (size_t)(header_bytes() + index_bytes(slots) + ALIGN_UP(cap, LINE));
}

static uint64_t geometry_check(const ring_geometry *g)
{
    return fnv1a(UINT64_C(0x84222325cbf29ce4), g, offsetof(ring_geometry, check));
}

static uint64_t draw_epoch(void)
{
    uint64_t e = 0;
    struct timespec ts;

    if (getrandom(&e, sizeof e, GRND_NONBLOCK) != (ssize_t)sizeof e) {
        clock_gettime(CLOCK_REALTIME, &ts);
        e = fnv1a((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
                  &ts, sizeof ts) ^ ((uint64_t)getpid() << 32);
    }
    return e ? e : 1;
}

static int init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    int rc;

    if (pthread_mutexattr_init(&attr))
        return -1;
    rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (!rc)
        rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc ? -1 : 0;
}

ws_ring_status ws_ring_init(void *mem, size_t mem_size, size_t capacity,
                            size_t max_message, size_t index_slots)
{
    size_t need = ws_ring_size_needed(capacity, index_slots);
    ring_header *h = mem;
    ring_geometry *g;

    if (!mem || (uintptr_t)mem % LINE || !need || mem_size < need
        || !max_message_valid(max_message, capacity))
        return WS_RING_EINVAL;
    /* All of it, data included: the parent faults the pages in once (the
     * children share them), and nothing from a former use shows. */
    memset(mem, 0, need);
    if (init_mutex(&h->lock.mutex))
        return WS_RING_EINVAL;
    h->commit.next_seq = 1;
    g = &h->geo;
    g->version = RING_VERSION;
    g->header_size = sizeof(ring_header);
    g->capacity = capacity;
    g->max_message = max_message;
    g->index_slots = index_slots;
    g->index_offset = header_bytes();
    g->data_offset = header_bytes() + index_bytes(index_slots);
    g->total_size = need;
    g->epoch = draw_epoch();
    g->magic = RING_MAGIC;
    g->check = geometry_check(g);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return WS_RING_OK;
}

ws_ring *ws_ring_attach(void *mem, size_t mem_size)
{
    ring_geometry g;
    ws_ring *r;
    size_t need;

    if (!mem || (uintptr_t)mem % LINE || mem_size < sizeof(ring_header))
        return NULL;
    memcpy(&g, &((ring_header *)mem)->geo, sizeof g);   /* check one copy */
    if (g.magic != RING_MAGIC || g.version != RING_VERSION
        || g.header_size != sizeof(ring_header) || g.check != geometry_check(&g))
        return NULL;
    if (g.capacity > SIZE_MAX || g.index_slots > SIZE_MAX)
        return NULL;
    need = ws_ring_size_needed((size_t)g.capacity, (size_t)g.index_slots);
    if (!need || need != g.total_size || need > mem_size
        || g.index_offset != header_bytes()
        || g.data_offset != header_bytes() + index_bytes(g.index_slots)
        || !max_message_valid(g.max_message, g.capacity))
        return NULL;
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->hdr = mem;
    r->index = (index_set *)((char *)mem + g.index_offset);
    r->data = (unsigned char *)mem + g.data_offset;
    r->cap = g.capacity;
    r->max_message = g.max_message;
    r->max_record = record_len(WS_RING_TOPIC_MAX, g.max_message);
    r->nsets = g.index_slots / WAYS;
    return r;
}

void ws_ring_detach(ws_ring *r)
{
    free(r);
}

size_t ws_ring_payload_max(const ws_ring *r)
{
    return r ? (size_t)r->max_message : 0;
}

/* ------------------------------------------------- the lock and repairs */

/* Finishes a commit: what follows the head move.  Idempotent, so the next
 * lock holder can redo it for a publisher that died half way. */
static void finish_commit(ws_ring *r, const ring_journal *j)
{
    ring_commit *c = &r->hdr->commit;
    index_entry *e = &r->index[j->set].way[j->way];

    __atomic_store_n(&c->next_seq, j->seq + 1, __ATOMIC_RELAXED);
    e->hash = j->hash;
    e->pos = j->start;
    e->seq = j->seq;
    __atomic_add_fetch(&c->word, 1, __ATOMIC_SEQ_CST);
}

/* The previous holder died: finish its commit if its head move landed,
 * forget it otherwise (its bytes past the head are invisible). */
static void recover_journal(ws_ring *r)
{
    ring_journal *j = &r->hdr->lock.journal;

    if (!j->active)
        return;
    if (r->hdr->commit.head == j->end && j->end > j->start
        && j->set < r->nsets && j->way < WAYS && j->seq != 0)
        finish_commit(r, j);
    __atomic_store_n(&j->active, 0, __ATOMIC_RELEASE);
}

/* Moves tail to the first record boundary at or past limit, counting the
 * records it drops.  Damage found on the way drops everything. */
static void advance_tail(ws_ring *r, uint64_t limit)
{
    ring_commit *c = &r->hdr->commit;
    uint64_t tail = c->tail, head = c->head, dropped = 0;
    rec_header h;

    if (tail >= limit)
        return;
    while (tail < limit && tail < head) {
        data_read(r, tail, &h, sizeof h);
        if (!header_plausible(r, &h, tail, head)) {
            locked_add(&r->hdr->stats.corrupt, 1);
            tail = head;
            break;
        }
        tail += h.len;
        dropped++;
    }
    __atomic_store_n(&c->tail, tail, __ATOMIC_RELEASE);
    locked_add(&r->hdr->stats.overwritten, dropped);
}

/* next_seq is the journal's last seq (a publish begun, not committed) or
 * one more.  If damage breaks that, the higher plausible value wins, so
 * seqs never go back: a client resuming after an id must not be told a
 * history is complete when the ids were given twice. */
static void settle_seq(ws_ring *r)
{
    ring_commit *c = &r->hdr->commit;
    uint64_t next = c->next_seq, last = r->hdr->lock.journal.seq;

    if (next >= 1 && next < POS_LIMIT && (next == last || next == last + 1))
        return;
    locked_add(&r->hdr->stats.corrupt, 1);
    if (next >= POS_LIMIT)
        next = 1;
    if (last < POS_LIMIT)
        next = max_u64(next, last + 1);
    __atomic_store_n(&c->next_seq, max_u64(next, 1), __ATOMIC_RELAXED);
}

/* Checks the positions a lock holder relies on.  If they are impossible
 * (damage), everything before the head is written off: readers resync. */
static void settle(ws_ring *r)
{
    ring_commit *c = &r->hdr->commit;
    uint64_t head = c->head, reserve = c->reserve, tail = c->tail;

    settle_seq(r);
    if (head >= POS_LIMIT || head % 8 || reserve < head || reserve - head > r->cap
        || tail > head || head - tail > r->cap || tail % 8) {
        locked_add(&r->hdr->stats.corrupt, 1);
        if (head >= POS_LIMIT || head % 8)
            head = 0;
        __atomic_store_n(&c->head, head, __ATOMIC_RELEASE);
        __atomic_store_n(&c->reserve, head + r->cap, __ATOMIC_RELEASE);
        __atomic_store_n(&c->tail, head, __ATOMIC_RELEASE);
        return;
    }
    advance_tail(r, sub_floor0(reserve, r->cap));
}

ws_ring_status ws_ring_lock(ws_ring *r)
{
    pthread_mutex_t *m = &r->hdr->lock.mutex;
    int rc = pthread_mutex_lock(m);

    if (rc == EOWNERDEAD) {
        recover_journal(r);
        pthread_mutex_consistent(m);
        locked_add(&r->hdr->stats.recoveries, 1);
    } else if (rc != 0) {
        return WS_RING_ELOCK;
    }
    settle(r);
    return WS_RING_OK;
}

void ws_ring_unlock(ws_ring *r)
{
    pthread_mutex_unlock(&r->hdr->lock.mutex);
}

/* ------------------------------------------------------------- publish */

static int futex_wake_all(uint32_t *word)
{
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Is the record at pos (under the lock) an intact record of this topic?
 * 1 yes, 0 another topic, -1 gone or damaged. */
static int record_is_topic(ws_ring *r, uint64_t pos, uint64_t seq,
                           uint64_t hash, const char *topic, size_t topic_len)
{
    const ring_commit *c = &r->hdr->commit;
    char stored[WS_RING_TOPIC_MAX];
    rec_header h;

    if (pos < c->tail || pos >= c->head || pos % 8)
        return -1;
    data_read(r, pos, &h, sizeof h);
    if (!header_plausible(r, &h, pos, c->head) || h.seq != seq || h.topic_hash != hash)
        return -1;
    if (h.topic_len != topic_len)
        return 0;
    data_read(r, pos + sizeof h, stored, topic_len);
    return memcmp(stored, topic, topic_len) == 0;
}

/* Fills h's link to the topic's previous record (or a bound on its seq)
 * and picks the index way the commit will write.  Whenever an entry is
 * replaced by a record not known to be of the same topic, the set's
 * floor rises to the entry's seq: every record of a topic missing from
 * the index has a seq at or below its set's floor.  A topic coming back
 * takes the floor as it was before its own arrival pushed someone out. */
static void link_topic(ws_ring *r, rec_header *h, const char *topic,
                       uint64_t *set_out, uint32_t *way_out)
{
    uint64_t s = h->topic_hash % r->nsets;
    index_set *set = &r->index[s];
    uint32_t w, pick = WAYS;
    int same = -1;

    for (w = 0; w < WAYS; w++)
        if (set->way[w].seq != 0 && set->way[w].hash == h->topic_hash) {
            pick = w;
            break;
        }
    if (pick < WAYS) {
        index_entry *e = &set->way[pick];

        if (e->seq < h->seq)
            same = record_is_topic(r, e->pos, e->seq, h->topic_hash, topic, h->topic_len);
        if (same == 1) {                  /* ours: link to it */
            h->prev_seq = e->seq;
            h->prev_pos = e->pos;
        } else if (same == 0) {           /* another topic, same hash */
            h->prev_seq = set->floor;
            set->floor = max_u64(set->floor, e->seq);
            locked_add(&r->hdr->stats.index_evictions, 1);
        } else {                          /* gone: could have been ours */
            set->floor = max_u64(set->floor, e->seq);
            h->prev_seq = set->floor;
        }
    } else {
        h->prev_seq = set->floor;
        for (pick = 0, w = 1; w < WAYS; w++)
            if (set->way[w].seq < set->way[pick].seq)
                pick = w;
        if (set->way[pick].seq != 0) {
            set->floor = max_u64(set->floor, set->way[pick].seq);
            locked_add(&r->hdr->stats.index_evictions, 1);
        }
    }
    if (h->prev_seq >= h->seq || set->floor >= h->seq) {   /* damaged index */
        set->floor = h->seq - 1;
        h->prev_seq = h->seq - 1;
        h->prev_pos = NO_LINK;
    }
    *set_out = s;
    *way_out = pick;
}

static void write_record(ws_ring *r, uint64_t start, const rec_header *h,
                         const ws_ring_msg *m)
{
    const unsigned char *payload = m->payload;
    size_t half = m->payload_len / 2;
    uint64_t at = start + sizeof *h + m->topic_len;

    data_write(r, start, h, sizeof *h);
    data_write(r, start + sizeof *h, m->topic, m->topic_len);
    data_write(r, at, payload, half);
    HOOK(WS_RING_HOOK_WRITER_MID_COPY);
    data_write(r, at + half, payload + half, m->payload_len - half);
}

static void count_publish(ws_ring *r, const rec_header *h)
{
    ring_counters *s = &r->hdr->stats;

    locked_add(&s->payload_bytes, h->payload_len);
    locked_max(&s->max_record, h->len);
    locked_max(&s->max_payload, h->payload_len);
}

static void wake_readers(ws_ring *r)
{
    if (__atomic_load_n(&r->hdr->wait.waiters, __ATOMIC_SEQ_CST) == 0)
        return;
    futex_wake_all(&r->hdr->commit.word);
    shared_add(&r->hdr->stats.wakeups, 1);
}

static int msg_valid(const ws_ring_msg *m)
{
    return m && m->topic && m->topic_len >= 1 && m->topic_len <= WS_RING_TOPIC_MAX
           && (m->payload || m->payload_len == 0);
}

ws_ring_status ws_ring_publish(ws_ring *r, const ws_ring_msg *m, uint64_t *seq_out)
{
    ring_commit *c;
    ring_journal *j;
    rec_header h;
    uint64_t start, end;
    ws_ring_status st;

    if (!r || !msg_valid(m))
        return WS_RING_EINVAL;
    if (m->payload_len > r->max_message) {
        shared_add(&r->hdr->stats.too_big, 1);
        return WS_RING_TOO_BIG;
    }
    memset(&h, 0, sizeof h);
    h.topic_hash = ws_ring_topic_hash(m->topic, m->topic_len);
    h.origin = m->origin;
    h.flags = m->flags;
    h.topic_len = (uint16_t)m->topic_len;
    h.payload_len = (uint32_t)m->payload_len;
    h.len = (uint32_t)record_len(m->topic_len, m->payload_len);
    h.mark = REC_MARK;
    h.prev_pos = NO_LINK;

    if ((st = ws_ring_lock(r)) != WS_RING_OK)
        return st;
    c = &r->hdr->commit;
    j = &r->hdr->lock.journal;
    start = c->head;
    end = start + h.len;
    h.seq = c->next_seq;

    /* Announce the bytes about to be overwritten before touching them. */
    __atomic_store_n(&c->reserve, max_u64(c->reserve, end), __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    advance_tail(r, sub_floor0(c->reserve, r->cap));

    link_topic(r, &h, m->topic, &j->set, &j->way);
    j->seq = h.seq;
    j->start = start;
    j->end = end;
    j->hash = h.topic_hash;
    __atomic_store_n(&j->active, 1, __ATOMIC_RELEASE);

    write_record(r, start, &h, m);
    __atomic_store_n(&c->head, end, __ATOMIC_RELEASE);     /* the commit */
    HOOK(WS_RING_HOOK_WRITER_COMMITTED);
    finish_commit(r, j);
    count_publish(r, &h);
    __atomic_store_n(&j->active, 0, __ATOMIC_RELEASE);
    ws_ring_unlock(r);

    wake_readers(r);
    if (seq_out)
        *seq_out = h.seq;
    return WS_RING_OK;
}

/* ------------------------------------------------------------- readers */

ws_ring_status ws_ring_reader_init(ws_ring *r, ws_ring_reader *rd)
{
    ws_ring_status st;

    if (!r || !rd)
        return WS_RING_EINVAL;
    if ((st = ws_ring_lock(r)) != WS_RING_OK)
        return st;
    rd->pos = rd->head_seen = r->hdr->commit.head;
    rd->next_seq = r->hdr->commit.next_seq;
    ws_ring_unlock(r);
    return WS_RING_OK;
}

/* The reader cannot go on from where it is: move it, under the lock, to
 * the oldest intact record (overrun) or to the head (damage), and say how
 * many records it skipped. */
static ws_ring_status reader_resync(ws_ring *r, ws_ring_reader *rd,
                                    ws_ring_status why, ws_ring_record *rec)
{
    ring_commit *c = &r->hdr->commit;
    uint64_t target, seq, lost;
    rec_header h;

    if (ws_ring_lock(r) != WS_RING_OK)
        return WS_RING_ELOCK;
    target = c->head;
    seq = c->next_seq;
    if (why == WS_RING_OVERRUN && rd->pos < c->tail && c->tail < c->head) {
        data_read(r, c->tail, &h, sizeof h);
        if (header_plausible(r, &h, c->tail, c->head) && h.seq < seq) {
            target = c->tail;
            seq = h.seq;
        } else {
            locked_add(&r->hdr->stats.corrupt, 1);
            __atomic_store_n(&c->tail, c->head, __ATOMIC_RELEASE);
            why = WS_RING_CORRUPT;
        }
    } else if (why == WS_RING_OVERRUN && rd->pos >= c->tail) {
        why = WS_RING_CORRUPT;       /* an overrun the lock state denies */
    }
    ws_ring_unlock(r);

    lost = seq > rd->next_seq ? seq - rd->next_seq : 0;
    rd->pos = target;
    rd->head_seen = target;          /* read the head afresh */
    rd->next_seq = seq;
    shared_add(&r->hdr->stats.reader_overruns, 1);
    shared_add(&r->hdr->stats.records_lost, lost);
    rec->lost = lost;
    return why;
}

/* Reads the header of the record at the reader's cursor and checks it is
 * plausible.  It is not yet known to be intact: the caller checks
 * still_intact() after copying what it uses (once per record).  The head
 * is read from shared memory only when the reader reaches the head it
 * saw last, so a reader catching up touches the commit line once per
 * record, for reserve. */
static ws_ring_status read_header(ws_ring *r, ws_ring_reader *rd,
                                  rec_header *h, ws_ring_record *rec)
{
    uint64_t head;

    if (rd->pos == rd->head_seen) {
        rd->head_seen = __atomic_load_n(&r->hdr->commit.head, __ATOMIC_ACQUIRE);
        if (rd->head_seen == rd->pos)
            return WS_RING_NONE;
    }
    head = rd->head_seen;
    if (head > rd->pos && head - rd->pos > r->cap)
        return reader_resync(r, rd, WS_RING_OVERRUN, rec);
    if (head < rd->pos || head - rd->pos < sizeof *h || rd->pos % 8)
        return reader_resync(r, rd, WS_RING_CORRUPT, rec);
    data_read(r, rd->pos, h, sizeof *h);
    HOOK(WS_RING_HOOK_READER_HEADER);
    if (h->seq != rd->next_seq || !header_plausible(r, h, rd->pos, head)) {
        if (!still_intact(r, rd->pos))          /* torn by an overwrite */
            return reader_resync(r, rd, WS_RING_OVERRUN, rec);
        shared_add(&r->hdr->stats.corrupt, 1);
        return reader_resync(r, rd, WS_RING_CORRUPT, rec);
    }
    return WS_RING_OK;
}

/* read_header, then the check that the header was intact. */
static ws_ring_status read_checked_header(ws_ring *r, ws_ring_reader *rd,
                                          rec_header *h, ws_ring_record *rec)
{
    ws_ring_status st = read_header(r, rd, h, rec);

    if (st == WS_RING_OK && !still_intact(r, rd->pos))
        return reader_resync(r, rd, WS_RING_OVERRUN, rec);
    return st;
}

void ws_ring_fill_fields(ws_ring_record *rec, const rec_header *h)
{
    rec->seq = h->seq;
    rec->topic_hash = h->topic_hash;
    rec->origin = h->origin;
    rec->prev_seq = h->prev_seq;
    rec->flags = h->flags;
    rec->topic_len = h->topic_len;
    rec->payload_len = h->payload_len;
    rec->lost = 0;
}

static void consume(ws_ring_reader *rd, const rec_header *h)
{
    rd->pos += h->len;
    rd->next_seq++;
}

ws_ring_status ws_ring_peek(ws_ring *r, ws_ring_reader *rd, ws_ring_record *rec)
{
    rec_header h;
    ws_ring_status st;

    if (!r || !rd || !rec)
        return WS_RING_EINVAL;
    st = read_checked_header(r, rd, &h, rec);
    if (st == WS_RING_OK) {
        ws_ring_fill_fields(rec, &h);
        rec->payload = NULL;
        rec->topic[0] = '\0';
    }
    return st;
}

ws_ring_status ws_ring_skip(ws_ring *r, ws_ring_reader *rd, ws_ring_record *rec)
{
    ws_ring_record scratch;
    rec_header h;
    ws_ring_status st;

    if (!r || !rd)
        return WS_RING_EINVAL;
    if (!rec)
        rec = &scratch;
    st = read_checked_header(r, rd, &h, rec);
    if (st == WS_RING_OK) {
        ws_ring_fill_fields(rec, &h);
        rec->payload = NULL;
        rec->topic[0] = '\0';
        consume(rd, &h);
    }
    return st;
}

ws_ring_status ws_ring_next(ws_ring *r, ws_ring_reader *rd, ws_ring_record *rec,
                            void *buf, size_t buf_size)
{
    rec_header h;
    ws_ring_status st;

    if (!r || !rd || !rec || (!buf && buf_size))
        return WS_RING_EINVAL;
    st = read_header(r, rd, &h, rec);
    if (st != WS_RING_OK)
        return st;
    if (h.payload_len > buf_size) {
        if (!still_intact(r, rd->pos))
            return reader_resync(r, rd, WS_RING_OVERRUN, rec);
        ws_ring_fill_fields(rec, &h);
        rec->payload = NULL;
        rec->topic[0] = '\0';
        return WS_RING_TOO_BIG;
    }
    data_read(r, rd->pos + sizeof h, rec->topic, h.topic_len);
    rec->topic[h.topic_len] = '\0';
    data_read(r, rd->pos + sizeof h + h.topic_len, buf, h.payload_len);
    HOOK(WS_RING_HOOK_READER_COPIED);
    if (!still_intact(r, rd->pos))               /* header, topic, payload */
        return reader_resync(r, rd, WS_RING_OVERRUN, rec);
    ws_ring_fill_fields(rec, &h);
    rec->payload = buf;
    consume(rd, &h);
    return WS_RING_OK;
}

/* ---------------------------------------------------------------- wait */

static int head_moved(ws_ring *r, const ws_ring_reader *rd)
{
    return __atomic_load_n(&r->hdr->commit.head, __ATOMIC_SEQ_CST) != rd->pos;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int deadline_passed(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec
           || (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

ws_ring_status ws_ring_wait(ws_ring *r, const ws_ring_reader *rd, int timeout_ms)
{
    ring_commit *c;
    uint32_t *waiters;
    struct timespec deadline;

    if (!r || !rd)
        return WS_RING_EINVAL;
    c = &r->hdr->commit;
    waiters = &r->hdr->wait.waiters;
    if (timeout_ms >= 0)
        deadline_after(&deadline, timeout_ms);
    for (;;) {
        uint32_t word = __atomic_load_n(&c->word, __ATOMIC_SEQ_CST);

        if (head_moved(r, rd))
            return WS_RING_OK;
        if (timeout_ms >= 0 && deadline_passed(&deadline))
            return WS_RING_TIMEOUT;
        /* No lost wake-up: a publisher moves the head, bumps the word,
         * then reads the count.  If it bumped the word after we read it,
         * FUTEX_WAIT sees the change (EAGAIN); if it also read the count
         * before we counted ourselves in, the word had moved already.
         * The deadline is absolute (CLOCK_MONOTONIC), so EINTR and
         * spurious returns just go round again. */
        __atomic_add_fetch(waiters, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &c->word, FUTEX_WAIT_BITSET, word,
                timeout_ms >= 0 ? &deadline : NULL, NULL, FUTEX_BITSET_MATCH_ANY);
        __atomic_sub_fetch(waiters, 1, __ATOMIC_SEQ_CST);
        /* The word moved but the head did not: ws_ring_wake_all. */
        if (!head_moved(r, rd) && __atomic_load_n(&c->word, __ATOMIC_SEQ_CST) != word)
            return WS_RING_NONE;
    }
}

void ws_ring_wake_all(ws_ring *r)
{
    if (!r)
        return;
    __atomic_add_fetch(&r->hdr->commit.word, 1, __ATOMIC_SEQ_CST);
    wake_readers(r);
}

/* --------------------------------------------------------------- stats */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

uint64_t ws_ring_newest_seq(ws_ring *r)
{
    uint64_t next = LOAD(r->hdr->commit.next_seq);

    return next ? next - 1 : 0;
}

void ws_ring_stats_get(ws_ring *r, ws_ring_stats *out)
{
    const ring_header *h = r->hdr;

    memset(out, 0, sizeof *out);
    out->capacity = r->cap;
    out->max_message = r->max_message;
    out->index_slots = r->nsets * WAYS;
    out->epoch = LOAD(h->geo.epoch);
    out->head = LOAD(h->commit.head);
    out->tail = LOAD(h->commit.tail);
    out->next_seq = LOAD(h->commit.next_seq);
    out->waiters = LOAD(h->wait.waiters);
    out->publishes = out->next_seq - 1;   /* one seq per publish, exactly */
    out->payload_bytes = LOAD(h->stats.payload_bytes);
    out->overwritten = LOAD(h->stats.overwritten);
    out->max_record = LOAD(h->stats.max_record);
    out->max_payload = LOAD(h->stats.max_payload);
    out->too_big = LOAD(h->stats.too_big);
    out->wakeups = LOAD(h->stats.wakeups);
    out->recoveries = LOAD(h->stats.recoveries);
    out->index_evictions = LOAD(h->stats.index_evictions);
    out->reader_overruns = LOAD(h->stats.reader_overruns);
    out->records_lost = LOAD(h->stats.records_lost);
    out->corrupt = LOAD(h->stats.corrupt);
}

#ifdef WS_RING_TEST_HOOKS
void ws_ring_test_layout(ws_ring_test_offsets *out)
{
    out->lock = offsetof(ring_header, lock.mutex);
    out->lock_len = sizeof(pthread_mutex_t);
    out->head = offsetof(ring_header, commit.head);
    out->reserve = offsetof(ring_header, commit.reserve);
    out->tail = offsetof(ring_header, commit.tail);
    out->next_seq = offsetof(ring_header, commit.next_seq);
}
#endif
