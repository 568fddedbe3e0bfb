/*
 * t/test_ring.c - unit tests of the topics' ring (ws_ring.c).
 *
 *   make t/test_ring        (or t/test_ring_asan: the same under ASan+UBSan)
 *   gcc -std=gnu99 -Wall -Wextra -O2 -g -pthread -DWS_RING_TEST_HOOKS \
 *       -o t/test_ring t/test_ring.c t/test_ring_procs.c ws_ring.c ws_ring_history.c
 *
 * Prints one line per failed check and ends with "N passed, N failed".
 * This file holds the single-process tests (layout, publish, read,
 * overrun, history, damage); t/test_ring_procs.c the ones that need
 * several processes (forked writers and readers, dying writers, futex
 * wake-ups, the randomized stress).  The build defines
 * WS_RING_TEST_HOOKS, which lets a test run code in the middle of a
 * publish or a read (kill the writer, overwrite what a reader copies).
 */
#include "test_ring.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------- harness */

int n_passed, n_failed;

void check_at(int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        n_passed++;
        return;
    }
    n_failed++;
    printf("%s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

uint64_t rng_state = 0x9E3779B97F4A7C15ull;

uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* ------------------------------------------------------ rings and data */

ws_ring *ring_new(test_ring *t, size_t cap, size_t max_msg, size_t slots)
{
    t->size = ws_ring_size_needed(cap, slots);
    t->mem = mmap(NULL, t->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t->mem == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (ws_ring_init(t->mem, t->size, cap, max_msg, slots) != WS_RING_OK
        || !(t->ring = ws_ring_attach(t->mem, t->size))) {
        fprintf(stderr, "cannot make a ring %zu/%zu/%zu\n", cap, max_msg, slots);
        exit(2);
    }
    return t->ring;
}

void ring_free(test_ring *t)
{
    ws_ring_detach(t->ring);
    munmap(t->mem, t->size);
}

/* A payload names its tag in its first 8 bytes; the rest follows from it,
 * so a reader can check any record it gets without knowing who sent it. */
void fill_payload(unsigned char *p, size_t len, uint64_t tag)
{
    uint64_t x = tag * 0x9E3779B97F4A7C15ull + 1;
    size_t i;

    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = i < 8 ? (unsigned char)(tag >> (8 * i)) : (unsigned char)x;
    }
}

int payload_ok(const void *payload, size_t len, uint64_t *tag_out)
{
    const unsigned char *p = payload;
    uint64_t tag = 0, x;
    size_t i;

    if (len < 8)
        return 0;
    for (i = 0; i < 8; i++)
        tag |= (uint64_t)p[i] << (8 * i);
    x = tag * 0x9E3779B97F4A7C15ull + 1;
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (i >= 8 && p[i] != (unsigned char)x)
            return 0;
    }
    *tag_out = tag;
    return 1;
}

ws_ring_status pub(ws_ring *r, const char *topic, size_t len, uint64_t tag, uint64_t *seq)
{
    static __thread unsigned char buf[1 << 20];   /* writer threads each have one */
    ws_ring_msg m;

    fill_payload(buf, len, tag);
    m.topic = topic;
    m.topic_len = strlen(topic);
    m.payload = buf;
    m.payload_len = len;
    m.flags = (uint32_t)tag;
    m.origin = tag;
    return ws_ring_publish(r, &m, seq);
}

/* Reads one record and checks it is intact and tagged as expected. */
ws_ring_status read_one(ws_ring *r, ws_ring_reader *rd, ws_ring_record *rec)
{
    static __thread unsigned char buf[1 << 20];   /* writer threads each have one */
    ws_ring_status st = ws_ring_next(r, rd, rec, buf, sizeof buf);
    uint64_t tag;

    if (st == WS_RING_OK) {
        CHECK(payload_ok(rec->payload, rec->payload_len, &tag));
        CHECK_INT(rec->origin, tag);
        CHECK_INT(rec->topic_hash, ws_ring_topic_hash(rec->topic, rec->topic_len));
    }
    return st;
}

static uint64_t rec_len(size_t topic_len, size_t payload_len)
{
    return (56 + topic_len + payload_len + 7) / 8 * 8;
}

/* ------------------------------------------------------- layout, attach */

static void test_geometry(void)
{
    test_ring t;
    void *mem;
    size_t size = ws_ring_size_needed(4096, 8);

    CHECK(size >= 4096 + 2 * 128);
    CHECK_INT(ws_ring_size_needed(4095, 8), 0);          /* not a multiple of 8 */
    CHECK_INT(ws_ring_size_needed(2048, 8), 0);          /* too small */
    CHECK_INT(ws_ring_size_needed(4096, 6), 0);          /* slots not by 4 */
    CHECK_INT(ws_ring_size_needed(4096, 0), 0);
    mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK_INT(ws_ring_init(mem, size, 4096, 513, 8), WS_RING_EINVAL);  /* > cap/8 */
    CHECK_INT(ws_ring_init(mem, size, 4096, 0, 8), WS_RING_EINVAL);
    CHECK_INT(ws_ring_init(mem, size - 1, 4096, 512, 8), WS_RING_EINVAL);
    CHECK_INT(ws_ring_init((char *)mem + 8, size - 8, 4096, 512, 4), WS_RING_EINVAL);
    CHECK_INT(ws_ring_init(mem, size, 4096, 512, 8), WS_RING_OK);
    munmap(mem, size);

    ring_new(&t, 8192, 1024, 16);
    {
        ws_ring_stats s;

        ws_ring_stats_get(t.ring, &s);
        CHECK_INT(s.capacity, 8192);
        CHECK_INT(s.max_message, 1024);
        CHECK_INT(s.index_slots, 16);
        CHECK_INT(s.next_seq, 1);
        CHECK(s.epoch != 0);
        CHECK_INT(ws_ring_payload_max(t.ring), 1024);
    }
    ring_free(&t);
}

static void test_attach_rejects(void)
{
    test_ring t;
    unsigned char *copy;
    ws_ring *r;
    size_t i;

    ring_new(&t, 4096, 512, 8);
    copy = malloc(t.size);
    memcpy(copy, t.mem, t.size);
    CHECK(ws_ring_attach(t.mem, t.size - 1) == NULL);     /* ring longer than the map */
    CHECK(ws_ring_attach(NULL, t.size) == NULL);
    CHECK(ws_ring_attach(t.mem, 16) == NULL);
    /* Any single byte of the geometry changed: refused. */
    for (i = 0; i < 80; i++) {
        ((unsigned char *)t.mem)[i] ^= 0x10;
        r = ws_ring_attach(t.mem, t.size);
        CHECK(r == NULL);
        ws_ring_detach(r);
        ((unsigned char *)t.mem)[i] ^= 0x10;
    }
    /* Random garbage: refused. */
    for (i = 0; i < t.size; i++)
        ((unsigned char *)t.mem)[i] = (unsigned char)rnd();
    CHECK(ws_ring_attach(t.mem, t.size) == NULL);
    memset(t.mem, 0, t.size);
    CHECK(ws_ring_attach(t.mem, t.size) == NULL);
    memcpy(t.mem, copy, t.size);
    r = ws_ring_attach(t.mem, t.size);
    CHECK(r != NULL);
    ws_ring_detach(r);
    free(copy);
    ring_free(&t);
}

/* ------------------------------------------------------- publish, read */

static void test_basics(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 1024, 16);
    ws_ring_reader rd, late;
    ws_ring_record rec;
    uint64_t seq, i;
    ws_ring_msg m;
    char buf[1024];

    CHECK_INT(pub(r, "early", 40, 1, &seq), WS_RING_OK);
    CHECK_INT(seq, 1);
    CHECK_INT(ws_ring_reader_init(r, &rd), WS_RING_OK);  /* no replay of seq 1 */
    CHECK_INT(rd.next_seq, 2);
    CHECK_INT(ws_ring_peek(r, &rd, &rec), WS_RING_NONE);
    for (i = 2; i <= 5; i++) {
        CHECK_INT(pub(r, "news", 10 * i, i, &seq), WS_RING_OK);
        CHECK_INT(seq, i);
    }
    for (i = 2; i <= 5; i++) {
        CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(rec.seq, i);
        CHECK_INT(rec.payload_len, 10 * i);
        CHECK_INT(rec.flags, (uint32_t)i);
        CHECK_INT(rec.topic_len, 4);
        CHECK(strcmp(rec.topic, "news") == 0);
        CHECK_INT(rec.prev_seq, i - 1 == 1 ? 0 : i - 1);
    }
    CHECK_INT(ws_ring_next(r, &rd, &rec, buf, sizeof buf), WS_RING_NONE);

    /* A topic with NULs and every byte value; an empty payload. */
    for (i = 0; i < sizeof buf; i++)
        buf[i] = (char)i;
    m.topic = buf;
    m.topic_len = WS_RING_TOPIC_MAX;
    m.payload = NULL;
    m.payload_len = 0;
    m.flags = 0xdeadbeef;
    m.origin = UINT64_MAX;
    CHECK_INT(ws_ring_publish(r, &m, &seq), WS_RING_OK);
    CHECK_INT(ws_ring_reader_init(r, &late), WS_RING_OK);
    CHECK_INT(ws_ring_next(r, &rd, &rec, NULL, 0), WS_RING_OK);
    CHECK_INT(rec.topic_len, WS_RING_TOPIC_MAX);
    CHECK(memcmp(rec.topic, buf, WS_RING_TOPIC_MAX) == 0 && rec.topic[1024] == 0);
    CHECK_INT(rec.payload_len, 0);
    CHECK_INT(rec.flags, 0xdeadbeef);
    CHECK(rec.origin == UINT64_MAX);
    CHECK_INT(ws_ring_peek(r, &late, &rec), WS_RING_NONE);
    ring_free(&t);
}

static void test_limits(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 1024, 16);
    ws_ring_reader rd;
    ws_ring_record rec;
    ws_ring_stats s;
    uint64_t seq;
    ws_ring_msg m;
    char topic[WS_RING_TOPIC_MAX + 1];

    ws_ring_reader_init(r, &rd);
    CHECK_INT(pub(r, "a", 1024, 7, &seq), WS_RING_OK);     /* max_message */
    CHECK_INT(pub(r, "a", 1025, 8, &seq), WS_RING_TOO_BIG);
    CHECK_INT(seq, 1);                                      /* untouched */
    CHECK_INT(pub(r, "a", 8, 9, &seq), WS_RING_OK);
    CHECK_INT(seq, 2);                                      /* no seq used up */
    memset(topic, 'x', sizeof topic);
    memset(&m, 0, sizeof m);
    m.topic = topic;
    m.topic_len = WS_RING_TOPIC_MAX + 1;
    CHECK_INT(ws_ring_publish(r, &m, NULL), WS_RING_EINVAL);
    m.topic_len = 0;
    CHECK_INT(ws_ring_publish(r, &m, NULL), WS_RING_EINVAL);
    m.topic_len = 1;
    m.payload_len = 3;                                      /* NULL payload */
    CHECK_INT(ws_ring_publish(r, &m, NULL), WS_RING_EINVAL);
    CHECK_INT(ws_ring_publish(NULL, &m, NULL), WS_RING_EINVAL);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.payload_len, 1024);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.seq, 2);
    ws_ring_stats_get(r, &s);
    CHECK_INT(s.publishes, 2);
    CHECK_INT(s.too_big, 1);
    CHECK_INT(s.max_payload, 1024);
    CHECK_INT(s.max_record, rec_len(1, 1024));
    CHECK_INT(s.payload_bytes, 1032);
    CHECK(strcmp(ws_ring_strerror(WS_RING_TOO_BIG), "message too big") == 0);
    ring_free(&t);
}

/* Records of every size straddle the physical end; each reads back. */
static void test_wrap_around(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    ws_ring_reader rd;
    ws_ring_record rec;
    uint64_t i, seq, straddled = 0, pos;

    ws_ring_reader_init(r, &rd);
    for (i = 1; i <= 600; i++) {
        size_t len = 8 + (size_t)(rnd() % 505);

        pos = rd.pos;
        CHECK_INT(pub(r, i % 2 ? "odd" : "even-topic", len, i, &seq), WS_RING_OK);
        CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(rec.seq, i);
        CHECK_INT(rec.payload_len, len);
        CHECK_INT(rec.origin, i);
        if (pos % 4096 + (rd.pos - pos) > 4096)
            straddled++;
    }
    CHECK(straddled > 20);
    ring_free(&t);
}

static void test_peek_skip(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 1024, 16);
    ws_ring_reader rd;
    ws_ring_record rec;
    unsigned char small[16];

    ws_ring_reader_init(r, &rd);
    pub(r, "skip-me", 500, 1, NULL);
    pub(r, "keep", 100, 2, NULL);
    pub(r, "keep", 100, 3, NULL);
    CHECK_INT(ws_ring_peek(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.seq, 1);
    CHECK_INT(rec.topic_hash, ws_ring_topic_hash("skip-me", 7));
    CHECK_INT(rec.topic_len, 7);
    CHECK_INT(rec.payload_len, 500);
    CHECK(rec.payload == NULL);
    CHECK_INT(ws_ring_peek(r, &rd, &rec), WS_RING_OK);      /* peek does not consume */
    CHECK_INT(rec.seq, 1);
    CHECK_INT(ws_ring_skip(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.seq, 1);
    CHECK_INT(ws_ring_next(r, &rd, &rec, small, sizeof small), WS_RING_TOO_BIG);
    CHECK_INT(rec.seq, 2);
    CHECK_INT(rd.next_seq, 2);                               /* did not move */
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
    CHECK_INT(rec.seq, 2);
    CHECK_INT(ws_ring_skip(r, &rd, NULL), WS_RING_OK);
    CHECK_INT(ws_ring_skip(r, &rd, NULL), WS_RING_NONE);
    CHECK_INT(rd.next_seq, 4);
    ring_free(&t);
}

/* ------------------------------------------------------------- overrun */

static void test_overrun_count(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    ws_ring_reader rd;
    ws_ring_record rec;
    ws_ring_stats s;
    uint64_t i, n = 100, len = rec_len(4, 100), oldest, head;

    ws_ring_reader_init(r, &rd);
    for (i = 1; i <= n; i++)
        pub(r, "tick", 100, i, NULL);
    /* The oldest intact record starts at the first boundary >= head - cap. */
    head = n * len;
    oldest = (head - 4096 + len - 1) / len + 1;
    CHECK_INT(ws_ring_next(r, &rd, &rec, NULL, 0), WS_RING_OVERRUN);
    CHECK_INT(rec.lost, oldest - 1);
    for (i = oldest; i <= n; i++) {
        CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(rec.seq, i);
    }
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_NONE);
    ws_ring_stats_get(r, &s);
    CHECK_INT(s.overwritten, oldest - 1);
    CHECK_INT(s.reader_overruns, 1);
    CHECK_INT(s.records_lost, oldest - 1);

    /* Peek and skip report an overrun the same way. */
    for (i = 1; i <= 40; i++)
        pub(r, "tick", 100, i, NULL);
    CHECK_INT(ws_ring_skip(r, &rd, &rec), WS_RING_OVERRUN);
    CHECK(rec.lost > 0);
    CHECK_INT(ws_ring_peek(r, &rd, &rec), WS_RING_OK);
    ring_free(&t);
}

/* A publisher overwrites the record a reader is copying: the reader must
 * report an overrun, never the torn copy. */
static test_ring *hook_ring;
static int hook_publishes, hook_skip;
static enum ws_ring_hook_point hook_at;

static void publish_in_hook(enum ws_ring_hook_point where)
{
    int i;

    if (where != hook_at)
        return;
    if (hook_skip-- > 0)
        return;
    ws_ring_test_hook = NULL;
    for (i = 0; i < hook_publishes; i++)
        pub(hook_ring->ring, "flood", 200, 1000 + i, NULL);
}

static void test_overrun_during_copy(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    ws_ring_reader rd;
    ws_ring_record rec;
    uint64_t i, seen = 0, lost;

    ws_ring_reader_init(r, &rd);
    for (i = 1; i <= 5; i++)
        pub(r, "slow", 300, i, NULL);
    hook_ring = &t;
    hook_publishes = 20;                  /* 20 x 264 bytes: a full turn */
    hook_skip = 0;
    hook_at = WS_RING_HOOK_READER_COPIED;
    ws_ring_test_hook = publish_in_hook;
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_OVERRUN);
    CHECK(ws_ring_test_hook == NULL);     /* the hook did run */
    lost = rec.lost;
    CHECK(lost >= 5);                     /* every 'slow' record, some floods */
    while (read_one(r, &rd, &rec) == WS_RING_OK) {
        CHECK(strcmp(rec.topic, "flood") == 0);
        seen++;
    }
    CHECK_INT(seen + lost, 25);
    CHECK_INT(rd.next_seq, 26);

    /* The same between reading a header and checking it: peek, skip and
     * a too-small buffer must not report the fields of a record gone. */
    for (i = 0; i < 3; i++) {
        unsigned char small[8];

        pub(r, "slow", 300, 50 + i, NULL);
        hook_at = WS_RING_HOOK_READER_HEADER;
        ws_ring_test_hook = publish_in_hook;
        CHECK_INT(i == 0 ? ws_ring_peek(r, &rd, &rec)
                  : i == 1 ? ws_ring_skip(r, &rd, &rec)
                  : ws_ring_next(r, &rd, &rec, small, sizeof small), WS_RING_OVERRUN);
        CHECK(ws_ring_test_hook == NULL);
        while (read_one(r, &rd, &rec) == WS_RING_OK)
            ;
    }
    ring_free(&t);
}

/* ------------------------------------------------------------- history */

typedef struct collected {
    uint64_t seq[64];
    size_t n;
    size_t stop_after;        /* 0: never stop */
    int bad;
} collected;

static int collect(void *baton, const ws_ring_record *rec)
{
    collected *c = baton;
    uint64_t tag;

    if (!payload_ok(rec->payload, rec->payload_len, &tag) || tag != rec->origin)
        c->bad++;
    if (c->n < 64)
        c->seq[c->n] = rec->seq;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static ws_ring_status history(ws_ring *r, const char *topic, uint64_t after,
                              size_t max, collected *c, ws_ring_history_result *res)
{
    memset(c, 0, sizeof *c);
    return ws_ring_history(r, topic, strlen(topic), after, max, collect, c, res);
}

/* n records of topic (tags from tag on), each followed by one of another
 * topic; seqs[] gets the seqs of topic's. */
static void pub_interleaved(ws_ring *r, const char *topic, size_t len, uint64_t tag,
                            uint64_t *seqs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        pub(r, topic, len, tag + i, &seqs[i]);
        pub(r, i % 2 ? "other" : "third", len, tag + n + i, NULL);
    }
}

static void test_history_complete(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 512, 16);
    ws_ring_history_result res;
    collected c;
    uint64_t seqs[10], i;

    pub_interleaved(r, "room", 20, 100, seqs, 10);
    CHECK_INT(history(r, "room", 0, 100, &c, &res), WS_RING_OK);
    CHECK_INT(c.n, 10);
    CHECK_INT(res.count, 10);
    CHECK(res.complete);
    CHECK_INT(res.first_seq, seqs[0]);
    CHECK_INT(res.last_seq, seqs[9]);
    CHECK_INT(res.snapshot_seq, 20);
    CHECK_INT(c.bad, 0);
    for (i = 0; i < 10; i++)
        CHECK_INT(c.seq[i], seqs[i]);
    /* Resume after the 4th: the 6 after it, complete. */
    CHECK_INT(history(r, "room", seqs[3], 100, &c, &res), WS_RING_OK);
    CHECK_INT(c.n, 6);
    CHECK_INT(c.seq[0], seqs[4]);
    CHECK(res.complete);
    /* After a seq of another topic between two of ours. */
    CHECK_INT(history(r, "room", seqs[3] + 1, 100, &c, &res), WS_RING_OK);
    CHECK_INT(c.seq[0], seqs[4]);
    CHECK(res.complete);
    /* Nothing new. */
    CHECK_INT(history(r, "room", seqs[9], 100, &c, &res), WS_RING_OK);
    CHECK_INT(c.n, 0);
    CHECK(res.complete);
    CHECK_INT(history(r, "room", 20, 100, &c, &res), WS_RING_OK);
    CHECK(res.complete && c.n == 0);
    /* A topic never published in a ring that evicted nothing. */
    CHECK_INT(history(r, "nobody", 0, 100, &c, &res), WS_RING_OK);
    CHECK(res.complete && c.n == 0 && res.first_seq == 0);
    /* An id this ring never gave (another epoch): a gap. */
    CHECK_INT(history(r, "room", 21, 100, &c, &res), WS_RING_OK);
    CHECK(!res.complete && c.n == 0);
    /* max_count exactly the number there is: still complete. */
    CHECK_INT(history(r, "room", 0, 10, &c, &res), WS_RING_OK);
    CHECK(res.complete && c.n == 10);
    /* The callback stops: a gap, with what was delivered. */
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    CHECK_INT(ws_ring_history(r, "room", 4, 0, 100, collect, &c, &res), WS_RING_OK);
    CHECK(!res.complete && c.n == 3 && res.count == 3 && res.last_seq == seqs[2]);
    CHECK_INT(ws_ring_history(r, "room", 0, 0, 100, NULL, &c, &res), WS_RING_EINVAL);
    ring_free(&t);
}

static void test_history_gaps(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 16);
    ws_ring_history_result res;
    collected c;
    uint64_t seqs[40], i;

    pub_interleaved(r, "hot", 60, 300, seqs, 40);   /* only the newest fit */
    CHECK_INT(history(r, "hot", 0, 100, &c, &res), WS_RING_OK);
    CHECK(!res.complete);                       /* the oldest were overwritten */
    CHECK(c.n > 5 && c.n < 40);
    CHECK_INT(res.first_seq, seqs[40 - c.n]);
    CHECK_INT(res.last_seq, seqs[39]);
    for (i = 0; i < c.n; i++)
        CHECK_INT(c.seq[i], seqs[40 - c.n + i]);
    /* Resuming inside what the ring still holds: complete. */
    CHECK_INT(history(r, "hot", seqs[36], 100, &c, &res), WS_RING_OK);
    CHECK(res.complete && c.n == 3 && c.seq[0] == seqs[37]);
    /* Cut by max_count: the most recent ones, a gap. */
    CHECK_INT(history(r, "hot", seqs[30], 4, &c, &res), WS_RING_OK);
    CHECK(!res.complete && c.n == 4);
    CHECK_INT(c.seq[0], seqs[36]);
    CHECK_INT(c.seq[3], seqs[39]);
    CHECK_INT(history(r, "hot", seqs[30], 0, &c, &res), WS_RING_OK);
    CHECK(!res.complete && c.n == 0);
    ring_free(&t);
}

static void test_history_eviction(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 8192, 512, 4);      /* one set of 4 ways */
    ws_ring_history_result res;
    ws_ring_stats s;
    collected c;
    char name[16];
    uint64_t first, again, last_b, i;

    pub(r, "a", 16, 1, &first);
    for (i = 0; i < 4; i++) {                      /* b..e: 'a' is pushed out */
        snprintf(name, sizeof name, "%c", (char)('b' + i));
        pub(r, name, 16, 10 + i, &last_b);
    }
    ws_ring_stats_get(r, &s);
    CHECK_INT(s.index_evictions, 1);
    CHECK_INT(history(r, "a", 0, 100, &c, &res), WS_RING_OK);
    CHECK(!res.complete && c.n == 0);              /* 'a' had records: unknown */
    CHECK_INT(history(r, "a", first, 100, &c, &res), WS_RING_OK);
    CHECK(res.complete && c.n == 0);               /* nothing after what it saw */
    /* Published again: the new record knows only a bound. */
    pub(r, "a", 16, 20, &again);
    CHECK_INT(history(r, "a", 0, 100, &c, &res), WS_RING_OK);
    CHECK(!res.complete && c.n == 1 && c.seq[0] == again);
    CHECK_INT(history(r, "a", first, 100, &c, &res), WS_RING_OK);
    CHECK(res.complete && c.n == 1 && c.seq[0] == again);
    /* 'b' was the oldest when 'a' came back: pushed out in turn. */
    CHECK_INT(history(r, "b", 0, 100, &c, &res), WS_RING_OK);
    CHECK(!res.complete && c.n == 0);
    CHECK_INT(history(r, "e", 0, 100, &c, &res), WS_RING_OK);
    CHECK(res.complete && c.n == 1 && c.seq[0] == last_b);
    ring_free(&t);
}

static void test_history_wrap(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    ws_ring_history_result res;
    collected c;
    uint64_t seqs[8], i, j;

    for (j = 0; j < 5; j++) {                      /* turn the ring a few times */
        for (i = 0; i < 8; i++)
            pub(r, "w", 200 + 3 * i, 500 + 8 * j + i, &seqs[i]);
        CHECK_INT(history(r, "w", seqs[0] - 1, 100, &c, &res), WS_RING_OK);
        CHECK(res.complete && c.n == 8 && c.bad == 0);
        CHECK_INT(c.seq[0], seqs[0]);
        CHECK_INT(c.seq[7], seqs[7]);
    }
    ring_free(&t);
}

/* Two topics with the same hash never mix. */
static uint64_t constant_hash(const void *topic, size_t len)
{
    (void)topic;
    (void)len;
    return 42;
}

static void test_history_collision(void)
{
    test_ring t;
    ws_ring *r;
    ws_ring_history_result res;
    collected c;
    uint64_t x1, y1, x2, i;

    ws_ring_test_hash = constant_hash;
    r = ring_new(&t, 8192, 512, 8);
    pub(r, "x", 16, 1, &x1);
    pub(r, "y", 16, 2, &y1);
    pub(r, "x", 16, 3, &x2);
    CHECK_INT(history(r, "x", 0, 100, &c, &res), WS_RING_OK);
    for (i = 0; i < c.n && i < 64; i++)
        CHECK(c.seq[i] == x1 || c.seq[i] == x2);
    CHECK(c.n == 1 && c.seq[0] == x2 && !res.complete);   /* the link to x1 was lost */
    CHECK_INT(history(r, "x", y1, 100, &c, &res), WS_RING_OK);
    CHECK(c.n == 1 && res.complete);
    CHECK_INT(history(r, "y", 0, 100, &c, &res), WS_RING_OK);
    CHECK(c.n == 0 && !res.complete);                     /* the index holds x */
    CHECK_INT(history(r, "y", y1, 100, &c, &res), WS_RING_OK);
    CHECK(c.n == 0 && res.complete);
    ws_ring_test_hash = NULL;
    ring_free(&t);
}

/* Records overwritten while history delivers them. */
static void test_history_overwritten(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    ws_ring_history_result res;
    collected c;
    uint64_t i, seqs[10];

    for (i = 0; i < 10; i++)
        pub(r, "h", 100, 600 + i, &seqs[i]);
    /* The walk found 10; a full turn overwrote them before the first was
     * delivered: nothing delivered, a gap. */
    hook_ring = &t;
    hook_publishes = 20;
    hook_skip = 0;
    hook_at = WS_RING_HOOK_HISTORY_COPIED;
    ws_ring_test_hook = publish_in_hook;
    CHECK_INT(history(r, "h", 0, 100, &c, &res), WS_RING_OK);
    CHECK(ws_ring_test_hook == NULL);
    CHECK(c.n == 0 && !res.complete);

    /* After the first was delivered: the rest would leave a hole. */
    for (i = 0; i < 10; i++)
        pub(r, "h", 100, 700 + i, &seqs[i]);
    hook_skip = 1;
    ws_ring_test_hook = publish_in_hook;
    CHECK_INT(history(r, "h", seqs[0] - 1, 100, &c, &res), WS_RING_OVERRUN);
    CHECK(ws_ring_test_hook == NULL);
    CHECK(c.n == 1 && res.count == 1 && res.first_seq == seqs[0] && !res.complete);
    ring_free(&t);
}

/* -------------------------------------------------------------- damage */

typedef struct damage_reader {
    ws_ring_reader rd;
    int live;
} damage_reader;

static void check_record_sane(const ws_ring_record *rec, size_t max)
{
    CHECK(rec->topic_len >= 1 && rec->topic_len <= WS_RING_TOPIC_MAX);
    CHECK(rec->payload_len <= max);
}

static int count_history(void *baton, const ws_ring_record *rec)
{
    check_record_sane(rec, 512);
    CHECK(rec->topic[rec->topic_len] == '\0');
    ++*(int *)baton;
    return 0;
}

/* Runs a few operations of every kind against a ring that may be damaged.
 * ASan and UBSan watch; the checks bound what comes back. */
static void exercise(ws_ring *r, damage_reader *readers, int n_readers)
{
    static unsigned char buf[512];
    ws_ring_history_result res;
    ws_ring_record rec;
    int i, k, calls;

    for (k = 0; k < n_readers; k++) {
        damage_reader *d = &readers[k];

        if (!d->live)
            continue;
        for (i = 0; i < 60; i++) {
            ws_ring_status st;

            switch (rnd() % 3) {
            case 0: st = ws_ring_next(r, &d->rd, &rec, buf, sizeof buf); break;
            case 1: st = ws_ring_skip(r, &d->rd, &rec); break;
            default: st = ws_ring_peek(r, &d->rd, &rec); break;
            }
            CHECK(st <= WS_RING_CORRUPT || st == WS_RING_TOO_BIG);
            if (st == WS_RING_OK) {
                check_record_sane(&rec, 512);
                if (rec.payload)
                    CHECK(rec.topic[rec.topic_len] == '\0');
            }
            if (st == WS_RING_NONE)
                break;
        }
    }
    calls = 0;
    CHECK(ws_ring_history(r, "t1", 2, 0, 1000, count_history, &calls, &res)
          <= WS_RING_OVERRUN);
    CHECK((size_t)calls == res.count && res.count <= 4096 / 64);
    CHECK_INT(ws_ring_wait(r, &readers[0].rd, 0) <= WS_RING_TIMEOUT, 1);
    if (rnd() % 2)
        CHECK(pub(r, rnd() % 2 ? "t1" : "t2", 8 + rnd() % 200, rnd(), NULL) == WS_RING_OK);
}

static void test_damage(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    unsigned char *mem = t.mem, *pristine = malloc(t.size);
    damage_reader readers[3];
    size_t lock_off, lock_len, round, i, data_off = t.size - 4096, detected = 0;
    ws_ring_test_offsets at_;
    ws_ring_stats s;

    ws_ring_test_layout(&at_);
    lock_off = at_.lock;
    lock_len = at_.lock_len;
    for (i = 0; i < 3; i++)
        ws_ring_reader_init(r, &readers[i].rd);
    for (i = 0; i < 60; i++)
        pub(r, i % 3 ? "t1" : "t2", 8 + rnd() % 120, i, NULL);
    for (i = 0; i < 3; i++) {                     /* readers at various points */
        readers[i].live = 1;
        while (readers[i].rd.next_seq < 20 + 15 * i)
            if (ws_ring_skip(r, &readers[i].rd, NULL) != WS_RING_OK)
                break;
    }
    memcpy(pristine, mem, t.size);
    for (round = 0; round < 1500; round++) {
        damage_reader copy[3];
        size_t flips = 1 + rnd() % 8;

        memcpy(mem, pristine, t.size);
        memcpy(copy, readers, sizeof copy);
        for (i = 0; i < flips; i++) {
            size_t at;

            /* half in the header and index, half in the data */
            do
                at = rnd() % 2 ? rnd() % data_off : data_off + rnd() % 4096;
            while (at >= lock_off && at < lock_off + lock_len);
            mem[at] ^= (unsigned char)(1u << (rnd() % 8));
            if (rnd() % 4 == 0)
                mem[at] = (unsigned char)rnd();
        }
        {
            ws_ring *other = ws_ring_attach(mem, t.size);   /* must not crash */
            ws_ring_detach(other);
        }
        exercise(r, copy, 3);
        ws_ring_stats_get(r, &s);
        detected += s.corrupt > 0;
    }
    /* Whole fields set to extreme values. */
    for (round = 0; round < 200; round++) {
        damage_reader copy[3];
        uint64_t v = (uint64_t[]){ 0, 1, 7, 4096, UINT64_MAX, UINT64_MAX - 7,
                                   1ull << 62, 1ull << 63 }[rnd() % 8];
        size_t at;

        memcpy(mem, pristine, t.size);
        memcpy(copy, readers, sizeof copy);
        do
            at = (rnd() % (t.size / 8)) * 8;
        while (at + 8 > lock_off && at < lock_off + lock_len);
        memcpy(mem + at, &v, 8);
        exercise(r, copy, 3);
    }
    /* The ring still works after everything was restored. */
    memcpy(mem, pristine, t.size);
    {
        ws_ring_reader rd;
        ws_ring_record rec;

        ws_ring_reader_init(r, &rd);
        CHECK_INT(pub(r, "after", 64, 77, NULL), WS_RING_OK);
        CHECK_INT(read_one(r, &rd, &rec), WS_RING_OK);
        CHECK_INT(rec.origin, 77);
    }
    /* Most flips hit padding, payloads or counters; many must be caught. */
    CHECK(detected > 100);
    printf("   damage: %zu of 1500 rounds of random flips detected\n", detected);
    free(pristine);
    ring_free(&t);
}

/* Impossible positions (head, reserve, tail, next seq) are noticed by the
 * next lock holder, which writes off what it cannot trust: publishing and
 * reading work again at once, and seqs still never go back. */
static void test_damaged_positions(void)
{
    static const uint64_t values[] = { 0, 3, 4096 * 3 + 8, 1ull << 62, UINT64_MAX - 7 };
    ws_ring_test_offsets off;
    size_t field, v;

    ws_ring_test_layout(&off);
    for (field = 0; field < 4; field++)
        for (v = 0; v < sizeof values / sizeof values[0]; v++) {
            size_t at = (size_t[]){ off.head, off.reserve, off.tail, off.next_seq }[field];
            test_ring t;
            ws_ring *r = ring_new(&t, 4096, 512, 8);
            ws_ring_reader old, fresh;
            ws_ring_record rec;
            ws_ring_status st;
            uint64_t i, seq, before;
            ws_ring_history_result res;
            int calls = 0;

            ws_ring_reader_init(r, &old);
            for (i = 1; i <= 30; i++)
                pub(r, "p", 100, i, NULL);
            before = 31;
            memcpy((char *)t.mem + at, &values[v], 8);
            CHECK_INT(pub(r, "p", 100, 31, &seq), WS_RING_OK);
            CHECK(seq >= before);                 /* never back */
            if (field != 3)
                CHECK_INT(seq, before);
            CHECK_INT(ws_ring_reader_init(r, &fresh), WS_RING_OK);
            CHECK_INT(pub(r, "p", 100, 32, &seq), WS_RING_OK);
            check_at(read_one(r, &fresh, &rec) == WS_RING_OK && rec.seq == seq,
                     __FILE__, __LINE__, "field %zu value %zu: the ring did not recover",
                     field, v);
            for (i = 0; i < 100; i++) {          /* the old reader ends caught up */
                st = read_one(r, &old, &rec);
                if (st == WS_RING_NONE)
                    break;
                CHECK(st == WS_RING_OK || st == WS_RING_OVERRUN || st == WS_RING_CORRUPT);
            }
            CHECK_INT(st, WS_RING_NONE);
            CHECK_INT(ws_ring_history(r, "p", 1, 0, 100, count_history, &calls, &res),
                      WS_RING_OK);
            CHECK(res.count >= 1 && res.last_seq == seq);
            ring_free(&t);
        }
}

/* A record that claims to end past the head (the bytes after it are not
 * committed) is damage, not a record. */
static void test_record_past_head(void)
{
    test_ring t;
    ws_ring *r = ring_new(&t, 4096, 512, 8);
    unsigned char *data = (unsigned char *)t.mem + t.size - 4096;
    ws_ring_reader rd;
    ws_ring_record rec;
    uint32_t len, payload_len;

    ws_ring_reader_init(r, &rd);
    pub(r, "q", 100, 1, NULL);
    memcpy(&len, data + 40, 4);                   /* rec_header.len, payload_len */
    memcpy(&payload_len, data + 44, 4);
    CHECK_INT(len, rec_len(1, 100));
    len += 64;
    payload_len += 64;
    memcpy(data + 40, &len, 4);
    memcpy(data + 44, &payload_len, 4);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_CORRUPT);
    CHECK_INT(rec.lost, 1);
    CHECK_INT(read_one(r, &rd, &rec), WS_RING_NONE);
    ring_free(&t);
}

/* ----------------------------------------------------------------- main */

int main(void)
{
    alarm(120);                 /* a hang is a failure, not a stuck `make` */
    test_geometry();
    test_attach_rejects();
    test_basics();
    test_limits();
    test_wrap_around();
    test_peek_skip();
    test_overrun_count();
    test_overrun_during_copy();
    test_history_complete();
    test_history_gaps();
    test_history_eviction();
    test_history_wrap();
    test_history_collision();
    test_history_overwritten();
    test_damage();
    test_damaged_positions();
    test_record_past_head();
    run_process_tests();
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
