/*
 * ws_redis_relay.c - the ring side of the node's relay: every record
 * published on this node goes out as a PUBLISH on its own connection;
 * the children's naming of topics (control records) keeps the interest
 * set; the SUBSCRIBE side runs in a thread of its own (ws_redis_sub.c).
 *
 * Order: the relay reads the ring in seq order and PUBLISHes in that
 * order on one connection, so Redis passes a node's messages on in the
 * order they were published there.  Commands are pipelined: all records
 * waiting go out in one write, then their replies are read, each wait
 * bounded by WebSocketRedisTimeout.
 *
 * Redis away: nothing is buffered.  A publisher told so (WS_REDIS_DOWN)
 * marked its record TOPIC_LOCAL_ONLY and counted it; any other record
 * the relay cannot send is counted here.  Either way the relay moves on.
 *
 * Hand-over: the relay keeps its place in the ring (the reader's
 * position and seq) in the node area; the next relay goes on from there
 * if the last one turned recently, so a graceful restart does not lose
 * what was published meanwhile.  The ring checks that place like any
 * reader's: a damaged one is an overrun, never a bad read.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"

#include "ws_redis_int.h"
#include "ws_topic_int.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* Most records and bytes in one pipelined write. */
#define BATCH_RECORDS  512
#define BATCH_BYTES    (1024 * 1024)
/* Reconnection backoff. */
#define BACKOFF_MIN    (100 * 1000)
#define BACKOFF_MAX    (5 * APR_USEC_PER_SEC)

typedef struct relay {
    server_rec *s;
    ws_ring *ring;
    ws_redis_node *node;
    const ws_redis_conf *conf;
    volatile int *stop;
    uint32_t generation;
    ws_ring_reader rd;
    ws_ring_record *rec;
    uint8_t *buf;                    /* envelope header, then the payload */
    size_t payload_max;
    char *channel;                   /* prefix, then the topic */
    ws_redis_link pub;
    apr_time_t retry_at, last_io;
    apr_interval_time_t backoff;
    int logged_error_reply;
} relay;

apr_interval_time_t ws_redis_backoff(apr_interval_time_t *backoff)
{
    apr_interval_time_t wait;

    if (*backoff < BACKOFF_MIN) {
        *backoff = BACKOFF_MIN;
    }
    wait = *backoff;
    *backoff = wait * 2 > BACKOFF_MAX ? BACKOFF_MAX : wait * 2;
    /* Spread the nodes' retries over a quarter of the step. */
    return wait + (apr_interval_time_t)(rand() % (int)(wait / 4 + 1));
}

static void put64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 7; i >= 0; i--, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

/* ---- the publishing connection ---- */

static void pub_down(relay *r, const char *what)
{
    ws_redis_outage_begin(what, r->pub.err);
    __atomic_store_n(&r->node->pub_up, 0, __ATOMIC_RELEASE);
    ws_redis_link_close(&r->pub);
    r->retry_at = apr_time_now() + ws_redis_backoff(&r->backoff);
}

static void pub_connect(relay *r)
{
    if (!ws_redis_link_open(&r->pub, r->conf)) {
        pub_down(r, "publishing connection");
        return;
    }
    r->backoff = 0;
    r->last_io = apr_time_now();
    __atomic_store_n(&r->node->pub_up, 1, __ATOMIC_RELEASE);
    ws_redis_outage_end();
}

/* Reads the replies of n PUBLISHes.  Returns 1, or 0 when the connection
 * failed (the caller counts them as not replicated). */
static int read_replies(relay *r, size_t n)
{
    apr_time_t deadline = apr_time_now() + r->conf->timeout;
    redisReply *reply;

    while (n--) {
        if (!ws_redis_link_reply(&r->pub, deadline, &reply)) {
            return 0;
        }
        if (reply->type == REDIS_REPLY_ERROR && !r->logged_error_reply) {
            r->logged_error_reply = 1;
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, r->s, WSLOGNO(00052) "Redis at %s refuses "
                         "PUBLISH: %s (such messages are counted as not "
                         "replicated)", r->conf->where, reply->str);
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            ws_redis_add(&r->node->not_replicated, 1);
        }
        else {
            ws_redis_add(&r->node->relayed_out, 1);
        }
        freeReplyObject(reply);
    }
    return 1;
}

static int send_batch(relay *r, size_t n)
{
    if (!ws_redis_link_flush(&r->pub, apr_time_now() + r->conf->timeout)
        || !read_replies(r, n)) {
        ws_redis_add(&r->node->not_replicated, n);
        pub_down(r, "PUBLISH");
        return 0;
    }
    r->last_io = apr_time_now();
    return 1;
}

/* The idle connection is checked now and then: a Redis that went away
 * is found before a publisher is told its message replicates. */
static void check_idle(relay *r)
{
    apr_time_t now = apr_time_now();
    redisReply *reply = NULL;
    const char *ping = "PING";
    int rc;

    if (!r->pub.c) {
        return;
    }
    rc = ws_redis_link_poll_reply(&r->pub, &reply);
    if (reply) {
        freeReplyObject(reply);      /* nothing is expected: a stray */
    }
    if (rc < 0) {
        pub_down(r, "publishing connection");
        return;
    }
    if (now - r->last_io > 5 * APR_USEC_PER_SEC) {
        if (!ws_redis_link_append(&r->pub, 1, &ping, NULL)
            || !ws_redis_link_flush(&r->pub, now + r->conf->timeout)
            || !ws_redis_link_reply(&r->pub, now + r->conf->timeout, &reply)) {
            pub_down(r, "PING");
            return;
        }
        freeReplyObject(reply);
        r->last_io = apr_time_now();
    }
}

/* ---- the ring ---- */

static void publish_query(relay *r)
{
    ws_ring_msg m = { TOPIC_CONTROL_NAME, TOPIC_CONTROL_NAME_LEN, NULL, 0,
                      TOPIC_CONTROL | TOPIC_QUERY, 0 };

    ws_ring_publish(r->ring, &m, NULL);
}

static void reader_start(relay *r)
{
    ws_redis_node *n = r->node;
    uint64_t seq = __atomic_load_n(&n->cursor_seq, __ATOMIC_ACQUIRE);
    int64_t beat = __atomic_load_n(&n->heartbeat, __ATOMIC_ACQUIRE);

    if (seq && apr_time_now() - beat < r->conf->timeout + APR_USEC_PER_SEC) {
        r->rd.pos = r->rd.head_seen = __atomic_load_n(&n->cursor_pos,
                                                      __ATOMIC_ACQUIRE);
        r->rd.next_seq = seq;
    }
    else {
        ws_ring_reader_init(r->ring, &r->rd);
    }
}

static void save_place(relay *r)
{
    __atomic_store_n(&r->node->cursor_pos, r->rd.pos, __ATOMIC_RELEASE);
    __atomic_store_n(&r->node->cursor_seq, r->rd.next_seq, __ATOMIC_RELEASE);
}

static void overrun(relay *r, uint64_t lost)
{
    /* At most lost publishes (some were from Redis or control records). */
    ws_redis_add(&r->node->not_replicated, lost);
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, r->s, WSLOGNO(00053) "the WebSocket Redis "
                 "relay fell behind the topics' ring by %" APR_UINT64_T_FMT
                 " records: they were not replicated (a larger "
                 "WebSocketTopicBuffer, or a faster Redis, avoids this)", lost);
    publish_query(r);                /* the names it missed, again */
}

/* Appends the PUBLISH of the record just read.  1, or 0 (link failed). */
static int append_publish(relay *r)
{
    const ws_ring_record *rec = r->rec;
    uint8_t *env = r->buf;
    const char *argv[3];
    size_t lens[3];

    memcpy(env, WS_REDIS_MAGIC, WS_REDIS_MAGIC_LEN);
    env[WS_REDIS_MAGIC_LEN] = (rec->flags & TOPIC_CLOSE)
                              ? 0x10 : (uint8_t)(rec->flags & TOPIC_OPCODE_MASK);
    put64(env + WS_REDIS_MAGIC_LEN + 1, r->node->node_id);
    put64(env + WS_REDIS_MAGIC_LEN + 9, rec->seq);
    memcpy(r->channel + r->conf->prefix_len, rec->topic, rec->topic_len);
    argv[0] = "PUBLISH";
    lens[0] = 7;
    argv[1] = r->channel;
    lens[1] = r->conf->prefix_len + rec->topic_len;
    argv[2] = (const char *)env;
    lens[2] = WS_REDIS_HEADER_LEN + rec->payload_len;
    return ws_redis_link_append(&r->pub, 3, argv, lens);
}

/* One record: 1 appended to the batch, 0 otherwise. */
static int take_record(relay *r)
{
    uint8_t *payload = r->buf + WS_REDIS_HEADER_LEN;
    ws_ring_status st;

    if (r->rec->flags & TOPIC_CONTROL) {
        if (r->rec->flags & TOPIC_QUERY) {
            ws_ring_skip(r->ring, &r->rd, NULL);
        }
        else if (ws_ring_next(r->ring, &r->rd, r->rec, payload,
                              r->payload_max) == WS_RING_OK) {
            ws_redis_interest_check((const char *)payload,
                                    r->rec->payload_len);
        }
        return 0;
    }
    if (r->rec->flags & (TOPIC_FROM_REDIS | TOPIC_LOCAL_ONLY)) {
        ws_ring_skip(r->ring, &r->rd, NULL);
        return 0;
    }
    if (!r->pub.c) {
        ws_ring_skip(r->ring, &r->rd, NULL);
        ws_redis_add(&r->node->not_replicated, 1);
        return 0;
    }
    st = ws_ring_next(r->ring, &r->rd, r->rec, payload, r->payload_max);
    if (st == WS_RING_OVERRUN || st == WS_RING_CORRUPT) {
        overrun(r, r->rec->lost);
        return 0;
    }
    if (st != WS_RING_OK) {
        return 0;
    }
    return append_publish(r) ? 1 : -1;
}

/* Everything the ring holds for the relay, in batches.  Returns whether
 * it read anything. */
static int pump(relay *r)
{
    size_t batch = 0, bytes = 0;
    int any = 0;

    while (batch < BATCH_RECORDS && bytes < BATCH_BYTES) {
        ws_ring_status st = ws_ring_peek(r->ring, &r->rd, r->rec);
        int took;

        if (st == WS_RING_NONE) {
            break;
        }
        any = 1;
        if (st == WS_RING_OVERRUN || st == WS_RING_CORRUPT) {
            overrun(r, r->rec->lost);
            continue;
        }
        if (st != WS_RING_OK) {
            ws_ring_skip(r->ring, &r->rd, NULL);
            continue;
        }
        took = take_record(r);
        if (took < 0) {
            ws_redis_add(&r->node->not_replicated, batch + 1);
            pub_down(r, "PUBLISH");
            batch = 0;
            break;
        }
        batch += (size_t)took;
        bytes += took ? r->rec->payload_len + r->rec->topic_len : 0;
    }
    if (batch) {
        send_batch(r, batch);
    }
    save_place(r);
    return any;
}

/* ---- the relay's life ---- */

static int relay_setup(relay *r)
{
    r->payload_max = ws_ring_payload_max(r->ring);
    r->rec = malloc(sizeof(*r->rec));
    r->buf = malloc(WS_REDIS_HEADER_LEN + r->payload_max + 1);
    r->channel = malloc(r->conf->prefix_len + WS_RING_TOPIC_MAX + 1);
    if (!r->rec || !r->buf || !r->channel) {
        return 0;
    }
    memcpy(r->channel, r->conf->prefix, r->conf->prefix_len);
    return 1;
}

static void relay_teardown(relay *r)
{
    ws_redis_link_close(&r->pub);
    free(r->rec);
    free(r->buf);
    free(r->channel);
}

static int must_stop(relay *r)
{
    return __atomic_load_n(r->stop, __ATOMIC_ACQUIRE)
           || __atomic_load_n(&r->node->newest_generation, __ATOMIC_ACQUIRE)
              > r->generation;
}

void ws_redis_relay_run(server_rec *s, ws_ring *ring, int stop_fd,
                        volatile int *stop, uint32_t generation)
{
    relay r;
    apr_time_t next_sweep = 0;

    memset(&r, 0, sizeof(r));
    r.s = s;
    r.ring = ring;
    r.node = ws_redis_node_get();
    r.conf = ws_redis_conf_get();
    r.stop = stop;
    r.generation = generation;
    r.pub.stop_fd = stop_fd;
    __atomic_store_n(&r.node->pub_up, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&r.node->sub_up, 0, __ATOMIC_RELEASE);
    ws_redis_interest_reset();
    if (!relay_setup(&r) || !ws_redis_sub_start(s, ring, stop_fd)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_ENOMEM, s, WSLOGNO(00054) "cannot start the "
                     "WebSocket Redis relay");
        relay_teardown(&r);
        return;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, WSLOGNO(00055) "WebSocket Redis relay for %s "
                 "runs in this child (node id %016" APR_UINT64_T_HEX_FMT ")",
                 r.conf->where, r.node->node_id);
    reader_start(&r);
    publish_query(&r);
    while (!must_stop(&r)) {
        apr_time_t now = apr_time_now();

        __atomic_store_n(&r.node->heartbeat, (int64_t)now, __ATOMIC_RELEASE);
        if (!r.pub.c && now >= r.retry_at) {
            pub_connect(&r);
        }
        if (pump(&r)) {
            continue;
        }
        check_idle(&r);
        if (now >= next_sweep) {
            ws_redis_interest_sweep(1024);
            next_sweep = now + APR_USEC_PER_SEC;
        }
        ws_ring_wait(ring, &r.rd, 100);
    }
    ws_redis_sub_stop();
    __atomic_store_n(&r.node->pub_up, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&r.node->sub_up, 0, __ATOMIC_RELEASE);
    save_place(&r);
    relay_teardown(&r);
    ws_redis_interest_reset();
}
