/*
 * ws_topic_deliver.c - each child's reader of the topics' ring, which
 * brings every record to this child's subscribers of its topic; and the
 * replay of a topic's history to a subscriber that resumes.
 *
 * A record is framed once per form it takes here: plain or with its id,
 * and compressed once per set of permessage-deflate parameters among the
 * subscribers that compress without context takeover (those with it
 * compress for themselves, in order).  Each subscriber's queue gets a
 * reference to the shared frame.  A subscriber whose queue is full is
 * closed with 1013, or misses the message and is told so with its next
 * one (WebSocketTopicOverflow), never held up by the others nor holding
 * them up.
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

APLOG_USE_MODULE(websocket);

/* Compressors the reader keeps, one per parameter set seen. */
#define MAX_KEYS  8

typedef struct compressor {
    int server_bits, level, mem_level;
    ws_deflate_ctx *ctx;
    ws_deflate_buf buf;
} compressor;

/* The forms one record takes: [ids][key + 1] (key 0: uncompressed). */
typedef struct forms {
    const ws_ring_record *rec;
    int opcode;
    ws_shared_frame *frame[2][MAX_KEYS + 1];
    uint8_t *with_id;                /* "id: ...\n\n" + payload */
    size_t with_id_len;
} forms;

static pthread_t reader;
static int reader_running;
static volatile int reader_stop;
static compressor keys[MAX_KEYS];
static int key_count;

/* ---- what a message looks like to a subscriber ---- */

/* "id: <id>\n" ["gap: <n>\n"] "\n" and the payload. */
static uint8_t *prefix_id(uint64_t seq, const char *gap, const void *payload,
                          size_t len, size_t *out_len)
{
    char id[WS_TOPIC_ID_MAX], head[WS_TOPIC_ID_MAX + 64];
    size_t hlen;
    uint8_t *out;

    ws_topic_format_id(id, sizeof(id), seq);
    hlen = (size_t)apr_snprintf(head, sizeof(head), "id: %s\n%s%s%s\n", id,
                                gap ? "gap: " : "", gap ? gap : "",
                                gap ? "\n" : "");
    if (!(out = malloc(hlen + len + 1))) {
        return NULL;
    }
    memcpy(out, head, hlen);
    if (len) {
        memcpy(out + hlen, payload, len);
    }
    *out_len = hlen + len;
    return out;
}

/* The key of a subscriber that compresses without context takeover (the
 * frame can be shared); 0 when it does not compress this message, -1
 * when it compresses for itself (context takeover). */
static int compression_key(ws_conn *wc, size_t len)
{
    const ws_deflate_params *p;
    int i;

    if (!wc->deflate || !ws_deflate_should_compress(wc->deflate, len)) {
        return 0;
    }
    p = ws_deflate_params_of(wc->deflate);
    if (!p->server_no_context_takeover) {
        return -1;
    }
    for (i = 0; i < key_count; i++) {
        if (keys[i].server_bits == p->server_max_window_bits
            && keys[i].level == p->level && keys[i].mem_level == p->mem_level) {
            return i + 1;
        }
    }
    if (key_count == MAX_KEYS) {
        return -1;
    }
    keys[key_count].ctx = ws_deflate_create(p, (uint64_t)-1);
    if (!keys[key_count].ctx) {
        return -1;
    }
    keys[key_count].server_bits = p->server_max_window_bits;
    keys[key_count].level = p->level;
    keys[key_count].mem_level = p->mem_level;
    return ++key_count;
}

static ws_shared_frame *form(forms *fs, int ids, int key)
{
    const uint8_t *data = fs->rec->payload;
    size_t len = fs->rec->payload_len;
    ws_shared_frame **slot = &fs->frame[ids][key];

    if (*slot) {
        return *slot;
    }
    if (ids) {
        if (!fs->with_id && !(fs->with_id = prefix_id(fs->rec->seq, NULL, data,
                                                      len, &fs->with_id_len))) {
            return NULL;
        }
        data = fs->with_id;
        len = fs->with_id_len;
    }
    if (key > 0) {
        compressor *c = &keys[key - 1];

        c->buf.len = 0;
        if (ws_deflate_compress(c->ctx, data, len, &c->buf) != WS_DEFLATE_OK) {
            return NULL;
        }
        *slot = ws_shared_frame_create(fs->opcode, WS_FIN | WS_RSV1,
                                       c->buf.data, c->buf.len);
        if (c->buf.cap > WS_KEEP_BUFFER_MAX) {
            ws_deflate_buf_free(&c->buf);
        }
    }
    else {
        *slot = ws_shared_frame_create(fs->opcode, WS_FIN, data, len);
    }
    return *slot;
}

static void release_forms(forms *fs)
{
    int i, k;

    for (i = 0; i < 2; i++) {
        for (k = 0; k <= MAX_KEYS; k++) {
            ws_shared_frame_release(fs->frame[i][k]);
        }
    }
    free(fs->with_id);
}

/* ---- giving it to each subscriber ---- */

static void too_slow(ws_subscription *sub)
{
    ws_conn *wc = sub->wc;

    if (ws_conf_topic_overflow(wc->conf) == WS_OVERFLOW_DROP) {
        sub->missed++;
        return;
    }
    if (!wc->close_queued) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, wc->s, "closing WebSocket "
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
        msg = prefix_id(rec->seq, (sub->missed || sub->missed_unknown) ? gap
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

static void deliver_to(ws_subscription *sub, forms *fs)
{
    const ws_ring_record *rec = fs->rec;
    ws_conn *wc = sub->wc;
    int key, rc;

    if ((rec->origin && rec->origin == wc->id) || rec->seq <= sub->replayed_until
        || wc->close_queued) {
        return;
    }
    key = compression_key(wc, rec->payload_len);
    if (key < 0 || (sub->ids && (sub->missed || sub->missed_unknown))) {
        rc = send_own(sub, rec, fs->opcode);
    }
    else {
        ws_shared_frame *sf = form(fs, sub->ids, key);

        rc = sf ? ws_conn_queue_shared(wc, sf) : WEBSOCKET_ENOMEM;
    }
    if (rc == WEBSOCKET_OK) {
        sub->missed = 0;
        sub->missed_unknown = 0;
    }
    else if (rc == WEBSOCKET_EFULL) {
        too_slow(sub);
    }
}

static void close_subscribers(topic *t, uint16_t code, const char *why)
{
    ws_subscription *sub;

    for (sub = t->subs; sub; sub = sub->next_in_topic) {
        ws_conn_close(sub->wc, code, why);
    }
}

static void deliver(const ws_ring_record *rec)
{
    forms fs;
    topic *t;

    memset(&fs, 0, sizeof(fs));
    fs.rec = rec;
    fs.opcode = (int)(rec->flags & TOPIC_OPCODE_MASK);
    pthread_mutex_lock(&ws_topic_lock);
    if ((t = ws_topic_find(rec->topic, rec->topic_len, rec->topic_hash))) {
        if (rec->flags & TOPIC_CLOSE) {
            close_subscribers(t, WS_CLOSE_NORMAL, "topic closed");
        }
        else if (fs.opcode == WS_OP_TEXT || fs.opcode == WS_OP_BINARY) {
            ws_subscription *sub;

            for (sub = t->subs; sub; sub = sub->next_in_topic) {
                deliver_to(sub, &fs);
            }
        }
    }
    pthread_mutex_unlock(&ws_topic_lock);
    release_forms(&fs);
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
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf, "this child "
                     "fell behind the WebSocket topics' ring by %"
                     APR_UINT64_T_FMT " messages: closing its %d subscribers "
                     "with 1013 (a larger WebSocketTopicBuffer avoids this)",
                     lost, n);
    }
}

/* ---- the thread ---- */

static void *reader_main(void *unused)
{
    ws_ring *ring = ws_shm_ring();
    size_t size = ws_ring_payload_max(ring);
    uint8_t *buf = malloc(size + 1);
    ws_ring_record *rec = malloc(sizeof(*rec));
    ws_ring_reader rd;

    (void)unused;
    if (!buf || !rec || ws_ring_reader_init(ring, &rd) != WS_RING_OK) {
        free(buf);
        free(rec);
        return NULL;
    }
    while (!__atomic_load_n(&reader_stop, __ATOMIC_ACQUIRE)) {
        ws_ring_status st = ws_ring_peek(ring, &rd, rec);

        if (st == WS_RING_OK && (rec->flags & TOPIC_CONTROL)) {
            /* The Redis relay's: never delivered; a new relay asks every
             * child for the topics it has subscribers to. */
            if (rec->flags & TOPIC_QUERY) {
                ws_topic_announce_all();
            }
            ws_ring_skip(ring, &rd, NULL);
            continue;
        }
        if (st == WS_RING_OK && !ws_topic_maybe_local(rec->topic_hash)) {
            ws_ring_skip(ring, &rd, NULL);
            continue;
        }
        if (st == WS_RING_OK) {
            st = ws_ring_next(ring, &rd, rec, buf, size);
        }
        if (st == WS_RING_OK) {
            deliver(rec);
        }
        else if (st == WS_RING_NONE) {
            ws_ring_wait(ring, &rd, 1000);
        }
        else if (st == WS_RING_OVERRUN || st == WS_RING_CORRUPT) {
            overrun(rec->lost);
        }
        else {
            ws_ring_skip(ring, &rd, NULL);
        }
    }
    free(buf);
    free(rec);
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
    int i;

    if (!reader_running) {
        return;
    }
    __atomic_store_n(&reader_stop, 1, __ATOMIC_RELEASE);
    ws_ring_wake_all(ws_shm_ring());
    pthread_join(reader, NULL);
    reader_running = 0;
    for (i = 0; i < key_count; i++) {
        ws_deflate_destroy(keys[i].ctx);
        ws_deflate_buf_free(&keys[i].buf);
    }
    key_count = 0;
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
