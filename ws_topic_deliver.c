/*
 * ws_topic_deliver.c - each child's reader of the topics' ring, which
 * brings every record to this child's subscribers of its topic; and the
 * replay of a topic's history to a subscriber that resumes.
 *
 * The reader takes every record that is ready (a batch, bounded), and
 * delivers each run of consecutive records of one topic together: a
 * subscriber that takes them all alike (the usual case) gets one shared
 * frame holding all of them (ws_topic_form.c), so that when publishes
 * come faster than the reader delivers, its work per subscriber is per
 * batch, not per message, as is the loop's (one node, one write).  A
 * subscriber that needs something of its own (a gap line, its own
 * compression, a message it sent itself, one already replayed, or a
 * queue too full for the whole run) gets the run message by message.
 * A subscriber whose queue is full is closed with 1013, or misses the
 * message and is told so with its next one (WebSocketTopicOverflow),
 * never held up by the others nor holding them up.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_strings.h"

#include "ws_shm.h"
#include "ws_topic_int.h"
#include "ws_thread.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* A batch: what the reader takes from the ring in one go, when
 * publishes come faster than it delivers (at most so many records, and
 * so many payload bytes unless one record alone is larger).  Its work per
 * subscriber is per batch: a saturated child (a loop turn over thousands
 * of subscribers takes a few hundred milliseconds) takes hundreds of
 * small messages at a time. */
#define BATCH_RECORDS  512
#define BATCH_BYTES    (256 * 1024)

typedef struct batch {
    ws_ring_record *recs;
    ws_topic_forms *forms;
    uint8_t *buf;                    /* the payloads, one after the other */
    size_t cap, used, count;
    uint64_t lost;                   /* an overrun came after them */
} batch;

static pthread_t reader;
static int reader_running;
static volatile int reader_stop;
/* The reader's: the subscribers a run was queued to, woken together once
 * it is queued to all (ws_conn_queue_shared_batched), still under the
 * topics' lock, which keeps them from being freed. */
static ws_wake_batch wakes;

/* ---- giving it to each subscriber ---- */

static void too_slow(ws_subscription *sub)
{
    ws_conn *wc = sub->wc;

    if (ws_conf_topic_overflow(wc->conf) == WS_OVERFLOW_DROP) {
        sub->missed++;
        return;
    }
    if (!wc->close_queued) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s, WSLOGNO(00066) "closing WebSocket "
                     "from %s with 1013: too slow for topic %s (over "
                     "WebSocketSendQueueLimit)", wc->client_ip, sub->t->name);
        wc->fail_code = WS_CLOSE_TRY_AGAIN_LATER;
        ws_conn_close(wc, WS_CLOSE_TRY_AGAIN_LATER, "subscriber too slow");
    }
}

/* A message for this subscriber alone: its gap line, or its own
 * compression. */
static int send_own(ws_subscription *sub, const ws_ring_record *rec, int opcode)
{
    char gap[32];
    uint8_t *msg = NULL;
    const uint8_t *data = rec->payload;
    size_t len = rec->payload_len;
    int rc;

    if (sub->ids) {
        if (sub->missed_unknown) {
            strcpy(gap, "?");
        }
        else {
            apr_snprintf(gap, sizeof(gap), "%" APR_UINT64_T_FMT, sub->missed);
        }
        msg = ws_topic_prefix_id(rec->seq, (sub->missed
                                            || sub->missed_unknown) ? gap
                                                                    : NULL,
                                 data, len, &len);
        if (!msg) {
            return WEBSOCKET_ENOMEM;
        }
        data = msg;
    }
    rc = ws_conn_offer_message(sub->wc, opcode, data, len);
    free(msg);
    return rc;
}

/* Whether the subscriber takes this record at all: not its own message
 * (a publish that excluded it), nor one its history replay covered. */
static int wants(ws_subscription *sub, const ws_ring_record *rec)
{
    return !(rec->origin && rec->origin == sub->wc->id)
           && rec->seq > sub->replayed_until;
}

/* Whether it takes every record of a run whose records come from
 * several publishers (none of them its own message). */
static int wants_all(ws_subscription *sub, const ws_topic_run *run)
{
    size_t i;

    for (i = 0; i < run->count; i++) {
        if (!wants(sub, run->forms[i].rec)) {
            return 0;
        }
    }
    return 1;
}

static void delivered(ws_subscription *sub, int rc)
{
    if (rc == WEBSOCKET_OK) {
        sub->missed = 0;
        sub->missed_unknown = 0;
    }
    else if (rc == WEBSOCKET_EFULL) {
        too_slow(sub);
    }
}

static void deliver_to(ws_subscription *sub, ws_topic_forms *fs)
{
    const ws_ring_record *rec = fs->rec;
    ws_conn *wc = sub->wc;
    int key, rc;

    if (!wants(sub, rec) || wc->close_queued) {
        return;
    }
    key = ws_topic_compression_key(wc, rec->payload_len);
    if (key < 0 || (sub->ids && (sub->missed || sub->missed_unknown))) {
        rc = send_own(sub, rec, fs->opcode);
    }
    else {
        ws_shared_frame *sf = ws_topic_form(fs, sub->ids, key);

        rc = sf ? ws_conn_queue_shared_batched(wc, sf, &wakes)
                : WEBSOCKET_ENOMEM;
    }
    delivered(sub, rc);
}

/* The whole run in one frame when the subscriber takes every message of
 * it as every other such subscriber does; 0 when it must get them one by
 * one (then nothing was queued). */
static int deliver_joined(ws_subscription *sub, ws_topic_run *run)
{
    ws_conn *wc = sub->wc;
    ws_shared_frame *sf;
    int key;

    if (sub->ids && (sub->missed || sub->missed_unknown)) {
        return 0;                    /* the first one says what it missed */
    }
    if (sub->replayed_until >= run->first_seq) {
        return 0;                    /* its history replay covered some */
    }
    if (run->one_origin ? (run->origin && run->origin == wc->id)
                        : !wants_all(sub, run)) {
        return 0;
    }
    if ((key = ws_topic_subscriber_key(wc)) < 0
        || !(sf = ws_topic_run_form(run, sub->ids, key))) {
        return 0;
    }
    /* Full: one by one, each message fitting or not, as alone. */
    if (ws_conn_queue_shared_batched(wc, sf, &wakes) != WEBSOCKET_OK) {
        return 0;
    }
    delivered(sub, WEBSOCKET_OK);
    return 1;
}

static void deliver_run_to(ws_subscription *sub, ws_topic_run *run)
{
    size_t i;

    if (sub->wc->close_queued) {
        return;
    }
    if (run->count > 1 && deliver_joined(sub, run)) {
        return;
    }
    for (i = 0; i < run->count; i++) {
        deliver_to(sub, &run->forms[i]);
    }
}

/* Thousands of subscribers, visited once per run, do not stay in the
 * caches: the next one's subscription and connection are fetched while
 * this one is served (the one after next: its subscription only). */
static void prefetch_subscriber(const ws_subscription *next)
{
    if (next) {
        const ws_conn *wc = next->wc;

        __builtin_prefetch(next->next_in_topic);
        __builtin_prefetch(&wc->id);
        __builtin_prefetch(&wc->lock);
        __builtin_prefetch(&wc->out_head);
        __builtin_prefetch(&wc->close_queued);
        __builtin_prefetch(&wc->topic_node);
        __builtin_prefetch(&wc->mem_held);
    }
}

static void close_subscribers(topic *t, uint16_t code, const char *why)
{
    ws_subscription *sub;

    for (sub = t->subs; sub; sub = sub->next_in_topic) {
        ws_conn_close(sub->wc, code, why);
    }
}

static int is_data(const ws_ring_record *rec)
{
    int opcode = (int)(rec->flags & TOPIC_OPCODE_MASK);

    return !(rec->flags & TOPIC_CLOSE)
           && (opcode == WS_OP_TEXT || opcode == WS_OP_BINARY);
}

/* A run: data records of one topic, or a single other record. */
static void deliver_run(ws_topic_run *run)
{
    const ws_ring_record *first = run->forms[0].rec;
    topic *t;

    pthread_mutex_lock(&ws_topic_lock);
    if ((t = ws_topic_find(first->topic, first->topic_len,
                           first->topic_hash))) {
        if (first->flags & TOPIC_CLOSE) {
            close_subscribers(t, WS_CLOSE_NORMAL, "topic closed");
        }
        else if (is_data(first)) {
            ws_subscription *sub;

            for (sub = t->subs; sub; sub = sub->next_in_topic) {
                prefetch_subscriber(sub->next_in_topic);
                deliver_run_to(sub, run);
            }
            ws_conn_wake_batch(&wakes);
            if (run->count > 1) {
                ap_log_error(APLOG_MARK, APLOG_TRACE2, 0, ap_server_conf,
                             WSLOGNO(00067) "topic %s: a run of %" APR_SIZE_T_FMT " messages"
                             " to %ld subscribers", t->name, run->count,
                             t->count);
            }
        }
    }
    pthread_mutex_unlock(&ws_topic_lock);
    ws_topic_run_release(run);
}

static int same_run(const ws_ring_record *a, const ws_ring_record *b)
{
    return is_data(a) && is_data(b) && a->topic_hash == b->topic_hash
           && a->topic_len == b->topic_len
           && !memcmp(a->topic, b->topic, a->topic_len);
}

/* The batch's runs, in ring order. */
static void deliver_batch(batch *b)
{
    size_t i = 0;

    while (i < b->count) {
        ws_topic_run run;
        size_t j = i + 1, k;

        while (j < b->count && same_run(&b->recs[i], &b->recs[j])) {
            j++;
        }
        memset(&run, 0, sizeof(run));
        run.forms = &b->forms[i];
        run.count = j - i;
        run.first_seq = b->recs[i].seq;
        run.origin = b->recs[i].origin;
        run.one_origin = 1;
        for (k = i; k < j; k++) {
            memset(&b->forms[k], 0, sizeof(b->forms[k]));
            b->forms[k].rec = &b->recs[k];
            b->forms[k].opcode = (int)(b->recs[k].flags & TOPIC_OPCODE_MASK);
            if (b->recs[k].origin != run.origin) {
                run.one_origin = 0;
            }
        }
        deliver_run(&run);
        i = j;
    }
}

static void close_overrun(topic *t, void *baton)
{
    close_subscribers(t, WS_CLOSE_TRY_AGAIN_LATER, "missed messages");
    *(int *)baton += (int)t->count;
}

/* Records this child never saw: its subscribers may have missed
 * messages, so they are closed (1013) to come back and resume. */
static void overrun(uint64_t lost)
{
    static apr_time_t logged;
    apr_time_t now = apr_time_now();
    int n = 0;

    pthread_mutex_lock(&ws_topic_lock);
    ws_topic_each(close_overrun, &n);
    pthread_mutex_unlock(&ws_topic_lock);
    if (now - logged > apr_time_from_sec(10)) {
        logged = now;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf, WSLOGNO(00068) "this child "
                     "fell behind the WebSocket topics' ring by %"
                     APR_UINT64_T_FMT " messages: closing its %d subscribers "
                     "with 1013 (a larger WebSocketTopicBuffer avoids this)",
                     lost, n);
    }
}

/* ---- the thread ---- */

/* Takes what the ring holds for this child now, up to a batch: control
 * records are handled on the way, records of topics nobody here wants
 * skipped without a copy.  Stops early at an overrun (b->lost), after
 * the records that came before it. */
static void read_batch(ws_ring *ring, ws_ring_reader *rd, batch *b,
                       ws_ring_record *head)
{
    b->count = b->used = 0;
    b->lost = 0;
    while (b->count < BATCH_RECORDS
           && !__atomic_load_n(&reader_stop, __ATOMIC_ACQUIRE)) {
        ws_ring_record *rec = &b->recs[b->count];
        ws_ring_status st = ws_ring_peek(ring, rd, head);

        if (st == WS_RING_NONE) {
            return;
        }
        if (st == WS_RING_OVERRUN || st == WS_RING_CORRUPT) {
            b->lost = head->lost;
            return;
        }
        if (st == WS_RING_OK && (head->flags & TOPIC_CONTROL)) {
            /* The Redis relay's: never delivered; a new relay asks every
             * child for the topics it has subscribers to. */
            if (head->flags & TOPIC_QUERY) {
                ws_topic_announce_all();
            }
            ws_ring_skip(ring, rd, NULL);
            continue;
        }
        if (st == WS_RING_OK && !ws_topic_maybe_local(head->topic_hash)) {
            ws_ring_skip(ring, rd, NULL);
            continue;
        }
        if (st == WS_RING_OK) {
            if (b->count && head->payload_len > b->cap - b->used) {
                return;                  /* the next batch's */
            }
            st = ws_ring_next(ring, rd, rec, b->buf + b->used,
                              b->cap - b->used);
        }
        if (st == WS_RING_OK) {
            /* Kept 8-aligned: a payload is handed on as it is. */
            b->used += (rec->payload_len + 7) & ~(size_t)7;
            if (b->used > b->cap) {
                b->used = b->cap;
            }
            b->count++;
        }
        else if (st == WS_RING_OVERRUN || st == WS_RING_CORRUPT) {
            b->lost = rec->lost;
            return;
        }
        else {
            ws_ring_skip(ring, rd, NULL);
        }
    }
}

static void batch_free(batch *b)
{
    free(b->recs);
    free(b->forms);
    free(b->buf);
}

static int batch_init(batch *b, size_t payload_max)
{
    memset(b, 0, sizeof(*b));
    b->cap = payload_max > BATCH_BYTES ? payload_max : BATCH_BYTES;
    b->recs = malloc(BATCH_RECORDS * sizeof(*b->recs));
    b->forms = malloc(BATCH_RECORDS * sizeof(*b->forms));
    b->buf = malloc(b->cap + 1);
    if (!b->recs || !b->forms || !b->buf) {
        batch_free(b);
        return 0;
    }
    return 1;
}

static void *reader_main(void *unused)
{
    ws_ring *ring = ws_shm_ring();
    ws_ring_record *head = malloc(sizeof(*head));
    ws_ring_reader rd;
    batch b;

    (void)unused;
    if (!head || !batch_init(&b, ws_ring_payload_max(ring))) {
        free(head);
        return NULL;
    }
    if (ws_ring_reader_init(ring, &rd) != WS_RING_OK) {
        batch_free(&b);
        free(head);
        return NULL;
    }
    while (!__atomic_load_n(&reader_stop, __ATOMIC_ACQUIRE)) {
        read_batch(ring, &rd, &b, head);
        deliver_batch(&b);
        if (b.lost) {
            overrun(b.lost);
        }
        else if (!b.count) {
            ws_ring_wait(ring, &rd, 1000);
        }
    }
    batch_free(&b);
    free(head);
    ws_wake_batch_free(&wakes);
    return NULL;
}

apr_status_t ws_topic_reader_start(server_rec *s)
{
    (void)s;
    reader_stop = 0;
    if (ws_thread_create(&reader, reader_main, NULL) != 0) {
        return APR_EGENERAL;
    }
    reader_running = 1;
    return APR_SUCCESS;
}

void ws_topic_reader_stop(void)
{
    if (!reader_running) {
        return;
    }
    __atomic_store_n(&reader_stop, 1, __ATOMIC_RELEASE);
    ws_ring_wake_all(ws_shm_ring());
    pthread_join(reader, NULL);
    reader_running = 0;
    ws_topic_forms_shutdown();
}

/* ---- history ---- */

typedef struct replay {
    ws_subscription *sub;
    ws_ring_record **recs;
    uint8_t **payloads;
    size_t count, max;
} replay;

static int collect(void *baton, const ws_ring_record *rec)
{
    replay *rp = baton;
    ws_ring_record *copy;
    uint8_t *payload;

    int opcode = (int)(rec->flags & TOPIC_OPCODE_MASK);

    if (rp->count == rp->max) {
        return 1;
    }
    if ((opcode != WS_OP_TEXT && opcode != WS_OP_BINARY)
        || (rec->flags & TOPIC_CLOSE)) {
        return 0;                    /* a close before it subscribed */
    }
    copy = malloc(sizeof(*copy));
    payload = malloc(rec->payload_len + 1);
    if (!copy || !payload) {
        free(copy);
        free(payload);
        return 1;
    }
    *copy = *rec;
    memcpy(payload, rec->payload, rec->payload_len);
    copy->payload = payload;
    rp->recs[rp->count] = copy;
    rp->payloads[rp->count] = payload;
    rp->count++;
    return 0;
}

void ws_topic_replay(ws_subscription *sub, int64_t after_seq)
{
    int history = ws_conf_topic_history(sub->wc->conf);
    ws_ring_history_result res;
    replay rp;
    size_t i;

    memset(&rp, 0, sizeof(rp));
    memset(&res, 0, sizeof(res));
    if (history <= 0) {
        sub->missed_unknown = 1;     /* no history: the next says so */
        return;
    }
    rp.sub = sub;
    rp.max = (size_t)history;
    rp.recs = calloc(rp.max, sizeof(*rp.recs));
    rp.payloads = calloc(rp.max, sizeof(*rp.payloads));
    if (!rp.recs || !rp.payloads
        || ws_ring_history(ws_shm_ring(), sub->t->name, sub->t->len,
                           after_seq < 0 ? 0 : (uint64_t)after_seq, rp.max,
                           collect, &rp, &res) != WS_RING_OK) {
        res.complete = 0;
    }
    /* The first replayed message says whether some were lost before it;
     * with none to replay, the next live one says it. */
    sub->missed_unknown = !res.complete || after_seq < 0;
    for (i = 0; i < rp.count; i++) {
        int rc = send_own(sub, rp.recs[i], (int)(rp.recs[i]->flags
                                                  & TOPIC_OPCODE_MASK));

        if (rc == WEBSOCKET_OK) {
            sub->missed_unknown = 0;
            sub->missed = 0;
        }
        else if (rc == WEBSOCKET_EFULL) {
            too_slow(sub);
        }
    }
    if (res.snapshot_seq > sub->replayed_until) {
        sub->replayed_until = res.snapshot_seq;
    }
    for (i = 0; i < rp.count; i++) {
        free(rp.recs[i]);
        free(rp.payloads[i]);
    }
    free(rp.recs);
    free(rp.payloads);
}
