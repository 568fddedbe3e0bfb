/*
 * ws_redis_sub.c - the SUBSCRIBE side of the node's relay, a thread of
 * the relay's child: it subscribes to the channels of the interest set
 * (ws_redis_interest.c), and puts every message another node published
 * into the ring with TOPIC_FROM_REDIS, so that each child delivers it.
 *
 * Its own messages come back from Redis too: the node id in the envelope
 * tells them, and they are dropped (the ring had them first).  The
 * node's seq in the envelope drops a message seen already (a relay that
 * died between sending and noting its place sends again).  A message
 * without our envelope (another program's PUBLISH) is delivered as text
 * when it is UTF-8, else as binary.
 *
 * One poll() waits for Redis, for a change of the interest set and for
 * the child's stop; a PING when Redis has been silent for a while finds a
 * connection that died without a word.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"

#include "ws_frame.h"
#include "ws_redis_int.h"
#include "ws_topic_int.h"
#include "ws_thread.h"

APLOG_USE_MODULE(websocket);

/* Silence after which a PING asks whether Redis is still there. */
#define KEEPALIVE  (5 * APR_USEC_PER_SEC)
/* Nodes whose last seq is remembered (a node is a parent's life). */
#define SEEN_NODES 64

typedef struct sub {
    server_rec *s;
    ws_ring *ring;
    ws_redis_node *node;
    const ws_redis_conf *conf;
    ws_redis_link link;
    apr_time_t retry_at, last_rx, ping_sent;
    apr_interval_time_t backoff;
    int ok;                          /* appending commands worked */
    struct { uint64_t node, seq; } seen[SEEN_NODES];
    unsigned seen_next;
    apr_time_t logged_drop;
    char *channel;
} sub;

static pthread_t thread;
static int running;
static volatile int sub_stop;
static sub state;

/* ---- messages in ---- */

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* 1 when seq of that node was not seen yet (and notes it). */
static int first_time(sub *b, uint64_t node, uint64_t seq)
{
    unsigned i;

    for (i = 0; i < SEEN_NODES; i++) {
        if (b->seen[i].node == node) {
            if (seq <= b->seen[i].seq) {
                return 0;
            }
            b->seen[i].seq = seq;
            return 1;
        }
    }
    b->seen[b->seen_next].node = node;
    b->seen[b->seen_next].seq = seq;
    b->seen_next = (b->seen_next + 1) % SEEN_NODES;
    return 1;
}

static void dropped(sub *b, const char *topic, const char *why)
{
    apr_time_t now = apr_time_now();

    ws_redis_add(&b->node->dropped_in, 1);
    if (now - b->logged_drop > apr_time_from_sec(60)) {
        b->logged_drop = now;
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, b->s, "a message from "
                     "Redis for WebSocket topic %s was dropped: %s (one line "
                     "a minute at most)", topic, why);
    }
}

/* The ring flags of a message, or 0 to drop it. */
static uint32_t classify(sub *b, const uint8_t **data, size_t *len,
                         const char *topic)
{
    uint8_t kind;

    if (*len < WS_REDIS_MAGIC_LEN
        || memcmp(*data, WS_REDIS_MAGIC, WS_REDIS_MAGIC_LEN)) {
        return ws_utf8_feed(WS_UTF8_ACCEPT, *data, *len) == WS_UTF8_ACCEPT
               ? WS_OP_TEXT : WS_OP_BINARY;
    }
    if (*len < WS_REDIS_HEADER_LEN) {
        dropped(b, topic, "a truncated envelope");
        return 0;
    }
    kind = (*data)[WS_REDIS_MAGIC_LEN];
    if (get64(*data + WS_REDIS_MAGIC_LEN + 1) == b->node->node_id
        || !first_time(b, get64(*data + WS_REDIS_MAGIC_LEN + 1),
                       get64(*data + WS_REDIS_MAGIC_LEN + 9))) {
        return 0;                    /* ours, or seen already */
    }
    *data += WS_REDIS_HEADER_LEN;
    *len -= WS_REDIS_HEADER_LEN;
    if (kind == 0x10) {
        return TOPIC_CLOSE;
    }
    if (kind == WS_OP_BINARY || (kind == WS_OP_TEXT
        && ws_utf8_feed(WS_UTF8_ACCEPT, *data, *len) == WS_UTF8_ACCEPT)) {
        return kind;
    }
    dropped(b, topic, "a bad opcode or invalid UTF-8 text");
    return 0;
}

static void message_in(sub *b, const redisReply *channel,
                       const redisReply *payload)
{
    const char *topic = channel->str + b->conf->prefix_len;
    size_t topic_len = channel->len - b->conf->prefix_len;
    const uint8_t *data = (const uint8_t *)payload->str;
    size_t len = payload->len;
    ws_ring_msg m;
    uint32_t flags;

    if (channel->len <= b->conf->prefix_len || topic_len > WS_RING_TOPIC_MAX
        || memcmp(channel->str, b->conf->prefix, b->conf->prefix_len)) {
        return;                      /* not a channel of ours */
    }
    if (!(flags = classify(b, &data, &len, topic))) {
        return;
    }
    m.topic = topic;
    m.topic_len = topic_len;
    m.payload = data;
    m.payload_len = len;
    m.flags = flags | TOPIC_FROM_REDIS;
    m.origin = 0;                    /* connection ids are per node */
    switch (ws_ring_publish(b->ring, &m, NULL)) {
    case WS_RING_OK:
        ws_redis_add(&b->node->relayed_in, 1);
        break;
    case WS_RING_TOO_BIG:
        dropped(b, topic, "larger than an eighth of WebSocketTopicBuffer");
        break;
    default:
        dropped(b, topic, "the topics' ring refused it");
        break;
    }
}

static int is(const redisReply *r, const char *word)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(word)
           && !strncasecmp(r->str, word, r->len);
}

static void reply_in(sub *b, redisReply *r)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3
        && is(r->element[0], "message")
        && r->element[1]->type == REDIS_REPLY_STRING
        && r->element[2]->type == REDIS_REPLY_STRING) {
        message_in(b, r->element[1], r->element[2]);
    }
    else if (r->type == REDIS_REPLY_ERROR) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, b->s, "Redis at %s refused a "
                     "subscription: %s", b->conf->where, r->str);
    }
    /* else: a (un)subscribe confirmation or a PONG */
}

/* ---- subscriptions ---- */

static void subscribe_cmd(void *baton, int subscribe, const char *topic,
                          size_t len)
{
    sub *b = baton;
    const char *argv[2];
    size_t lens[2];

    memcpy(b->channel + b->conf->prefix_len, topic, len);
    argv[0] = subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE";
    lens[0] = strlen(argv[0]);
    argv[1] = b->channel;
    lens[1] = b->conf->prefix_len + len;
    if (b->ok && !ws_redis_link_append(&b->link, 2, argv, lens)) {
        b->ok = 0;
    }
}

static void link_down(sub *b, const char *what)
{
    ws_redis_outage_begin(what, b->link.err);
    __atomic_store_n(&b->node->sub_up, 0, __ATOMIC_RELEASE);
    ws_redis_link_close(&b->link);
    b->retry_at = apr_time_now() + ws_redis_backoff(&b->backoff);
}

/* Sends what is appended; on failure the link goes down. */
static void flush(sub *b, const char *what)
{
    if (!b->ok || !ws_redis_link_flush(&b->link, apr_time_now()
                                                 + b->conf->timeout)) {
        link_down(b, what);
    }
}

static void connect_now(sub *b)
{
    if (!ws_redis_link_open(&b->link, b->conf)) {
        link_down(b, "subscribing connection");
        return;
    }
    b->ok = 1;
    ws_redis_interest_take(1, subscribe_cmd, b);
    flush(b, "SUBSCRIBE");
    if (b->link.c) {
        b->backoff = 0;
        b->last_rx = apr_time_now();
        b->ping_sent = 0;
        __atomic_store_n(&b->node->sub_up, 1, __ATOMIC_RELEASE);
        ws_redis_outage_end();
    }
}

static void changes(sub *b)
{
    uint64_t n;

    if (read(ws_redis_interest_fd(), &n, sizeof(n)) < 0) {
        /* nothing pending: a wake-up already consumed */
    }
    b->ok = b->link.c != NULL;
    if (ws_redis_interest_take(0, subscribe_cmd, b) && b->link.c) {
        flush(b, "SUBSCRIBE");
    }
}

/* What Redis sent, up to a bound (changes of the interest set wait for
 * no longer); the link may go down. */
static void incoming(sub *b)
{
    redisReply *r;
    int rc = 0, n = 0;

    b->last_rx = apr_time_now();
    b->ping_sent = 0;
    while (n++ < 4096 && (rc = ws_redis_link_poll_reply(&b->link, &r)) > 0) {
        reply_in(b, r);
        freeReplyObject(r);
    }
    if (rc < 0) {
        link_down(b, "subscribing connection");
    }
}

static void keepalive(sub *b, apr_time_t now)
{
    const char *ping = "PING";

    if (b->ping_sent && now - b->ping_sent > b->conf->timeout) {
        apr_cpystrn(b->link.err, "no answer to PING", sizeof(b->link.err));
        link_down(b, "subscribing connection");
    }
    else if (!b->ping_sent && now - b->last_rx > KEEPALIVE) {
        b->ok = ws_redis_link_append(&b->link, 1, &ping, NULL);
        b->ping_sent = now;
        flush(b, "PING");
    }
}

/* Replies read but not yet taken (incoming() stopped at its bound). */
static int buffered(const sub *b)
{
    return b->link.c && b->link.c->reader->pos < b->link.c->reader->len;
}

static int poll_timeout(sub *b, apr_time_t now)
{
    apr_time_t until = !b->link.c ? b->retry_at
                     : b->ping_sent ? b->ping_sent + b->conf->timeout
                     : b->last_rx + KEEPALIVE;
    apr_interval_time_t left = buffered(b) ? 0 : until - now;

    if (left > APR_USEC_PER_SEC) {
        left = APR_USEC_PER_SEC;
    }
    return left > 0 ? (int)((left + 999) / 1000) : 0;
}

static void *sub_main(void *unused)
{
    sub *b = &state;
    struct pollfd fds[3];

    (void)unused;
    while (!__atomic_load_n(&sub_stop, __ATOMIC_ACQUIRE)) {
        apr_time_t now = apr_time_now();
        int n;

        if (!b->link.c && now >= b->retry_at) {
            connect_now(b);
        }
        fds[0].fd = ws_redis_interest_fd();
        fds[1].fd = b->link.stop_fd;
        fds[2].fd = b->link.c ? b->link.c->fd : -1;
        fds[0].events = fds[1].events = fds[2].events = POLLIN;
        n = poll(fds, 3, poll_timeout(b, now));
        if (n < 0 && errno != EINTR) {
            break;
        }
        if (n > 0 && (fds[1].revents & POLLIN)) {
            break;
        }
        if (n > 0 && fds[0].revents) {
            changes(b);
        }
        if ((n > 0 && fds[2].revents && b->link.c) || buffered(b)) {
            incoming(b);
        }
        if (b->link.c) {
            keepalive(b, apr_time_now());
        }
    }
    ws_redis_link_close(&b->link);
    __atomic_store_n(&b->node->sub_up, 0, __ATOMIC_RELEASE);
    return NULL;
}

int ws_redis_sub_start(server_rec *s, ws_ring *ring, int stop_fd)
{
    sub *b = &state;

    memset(b, 0, sizeof(*b));
    b->s = s;
    b->ring = ring;
    b->node = ws_redis_node_get();
    b->conf = ws_redis_conf_get();
    b->link.stop_fd = stop_fd;
    b->channel = malloc(b->conf->prefix_len + WS_RING_TOPIC_MAX + 1);
    if (!b->channel) {
        return 0;
    }
    memcpy(b->channel, b->conf->prefix, b->conf->prefix_len);
    sub_stop = 0;
    if (ws_thread_create(&thread, sub_main, NULL)) {
        free(b->channel);
        return 0;
    }
    running = 1;
    return 1;
}

void ws_redis_sub_stop(void)
{
    uint64_t one = 1;

    if (!running) {
        return;
    }
    __atomic_store_n(&sub_stop, 1, __ATOMIC_RELEASE);
    if (write(ws_redis_interest_fd(), &one, sizeof(one)) < 0) {
        /* readable already: it wakes */
    }
    pthread_join(thread, NULL);
    running = 0;
    free(state.channel);
    state.channel = NULL;
}
