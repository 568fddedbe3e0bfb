/*
 * ws_topic_int.h - what ws_topic.c (the child's subscriptions, publishing)
 * and ws_topic_deliver.c (the thread that brings every child the ring's
 * records) share.
 *
 * One registry per child: topics with local subscribers, each with its
 * list of subscriptions; a subscription is also on its connection's
 * list.  One lock guards all of it: subscribing, unsubscribing, a
 * connection's end, and the delivery of a record to every subscriber of
 * its topic (so a subscription never sees a record twice or out of
 * order, and a connection is never delivered to after it is forgotten).
 */
#ifndef WS_TOPIC_INT_H
#define WS_TOPIC_INT_H

#include <pthread.h>

#include "ws_conn.h"
#include "ws_ring.h"
#include "ws_topic.h"

/* What a record's flags say (the ring does not look at them). */
#define TOPIC_OPCODE_MASK   0x0f     /* WS_OP_TEXT or WS_OP_BINARY */
#define TOPIC_CLOSE         0x10     /* close the topic's subscribers */
#define TOPIC_FROM_REDIS    0x20     /* relayed from another node */
/* WebSocketRedis (ws_redis.c): the publisher was told that the message
 * stays on this node (Redis was down), so the relay does not send it. */
#define TOPIC_LOCAL_ONLY    0x40
/* A control record for the node's Redis relay, never delivered: its topic
 * is TOPIC_CONTROL_NAME, its payload the name of a topic whose local
 * subscribers went from none to some or back (the relay subscribes or
 * unsubscribes its channel); with TOPIC_QUERY, no payload: the relay is
 * new and every child names again each topic it has subscribers to. */
#define TOPIC_CONTROL       0x80
#define TOPIC_QUERY         0x100
/* A topic no plugin can subscribe to (C strings cannot start with NUL),
 * so control records stay out of real topics' history. */
#define TOPIC_CONTROL_NAME      "\0redis"
#define TOPIC_CONTROL_NAME_LEN  6

typedef struct topic topic;

typedef struct ws_subscription {
    topic *t;
    ws_conn *wc;
    struct ws_subscription *prev_in_topic, *next_in_topic;
    struct ws_subscription *next_of_conn;
    int ids;                         /* WEBSOCKET_SUBSCRIBE_IDS */
    uint64_t replayed_until;         /* live records up to this seq came
                                        from the history: skip them */
    uint64_t missed;                 /* messages it did not get since the
                                        last it got (Drop policy) */
    int missed_unknown;              /* ... and perhaps more */
} ws_subscription;

struct topic {
    topic *next;                     /* in its bucket */
    uint64_t hash;
    long count;                      /* subscriptions */
    ws_subscription *subs;
    size_t len;
    char name[1];                    /* len bytes and a NUL */
};

extern pthread_mutex_t ws_topic_lock;

/* With ws_topic_lock held. */
topic *ws_topic_find(const char *name, size_t len, uint64_t hash);
/* With ws_topic_lock held: fn for every topic. */
void ws_topic_each(void (*fn)(topic *t, void *baton), void *baton);
/* Without the lock: whether some topic of this hash may have local
 * subscribers (no: the record is skipped without a copy). */
int ws_topic_maybe_local(uint64_t hash);

/* ws_topic.c: every topic with local subscribers is named again to the
 * Redis relay (an answer to TOPIC_QUERY), from the reader thread. */
void ws_topic_announce_all(void);

/* The ids given to clients: "<epoch>-<seq>". */
int ws_topic_format_id(char *out, size_t size, uint64_t seq);
/* After which seq a client's id says it is; -1 when the id is of
 * another epoch (a fresh ring) or no id. */
int64_t ws_topic_parse_id(const char *id);

/* ws_topic_form.c: a record's frames, made once per form (reader thread
 * only).  Keys: 0 uncompressed, 1.. one per set of permessage-deflate
 * parameters of subscribers without context takeover. */
#define WS_TOPIC_MAX_KEYS  8

typedef struct ws_topic_forms {
    const ws_ring_record *rec;
    int opcode;
    ws_shared_frame *frame[2][WS_TOPIC_MAX_KEYS + 1];   /* [ids][key] */
    uint8_t *with_id;                /* "id: ...\n\n" + payload */
    size_t with_id_len;
} ws_topic_forms;

/* Data records of one topic that reached the child together, in ring
 * order, and their frames joined into one per form. */
typedef struct ws_topic_run {
    ws_topic_forms *forms;
    size_t count;
    /* What a subscriber is checked against to take the whole run (the
     * records are in ring order, so the first has the lowest seq): one
     * comparison each, whatever the run's length. */
    uint64_t first_seq;
    uint64_t origin;                 /* every record's, when one_origin */
    int one_origin;
    ws_shared_frame *joined[2][WS_TOPIC_MAX_KEYS + 1];
} ws_topic_run;

/* "id: <id>\n" ["gap: <n>\n"] "\n" and the payload (malloc'd). */
uint8_t *ws_topic_prefix_id(uint64_t seq, const char *gap, const void *payload,
                            size_t len, size_t *out_len);
/* A subscriber's key whatever the length: 0 when it does not compress,
 * -1 when it compresses for itself (context takeover). */
int ws_topic_subscriber_key(ws_conn *wc);
/* The key of one message of len bytes for this subscriber. */
int ws_topic_compression_key(ws_conn *wc, size_t len);
/* The record's frame in a form, made on first use; NULL: out of memory. */
ws_shared_frame *ws_topic_form(ws_topic_forms *fs, int ids, int key);
/* The run's frames joined, for a subscriber's ids and key (each message
 * compressed or not by its length, as alone). */
ws_shared_frame *ws_topic_run_form(ws_topic_run *run, int ids, int key);
void ws_topic_forms_release(ws_topic_forms *fs);
void ws_topic_run_release(ws_topic_run *run);
/* The reader stops: its compressors go. */
void ws_topic_forms_shutdown(void);

/* ws_topic_deliver.c: the reader thread, and a subscription's history. */
apr_status_t ws_topic_reader_start(server_rec *s);
void ws_topic_reader_stop(void);
/* With the lock held: queues the history after after_seq (-1: unknown)
 * to a new subscription, and marks what it covered. */
void ws_topic_replay(ws_subscription *sub, int64_t after_seq);

#endif /* WS_TOPIC_INT_H */
