/*
 * ws_ring_history.c - a topic's history from the ring (ws_ring_history in
 * ws_ring.h): follow the topic's chain of records newest to oldest, then
 * deliver them oldest first.
 *
 * Each record links to the previous record of its topic, or carries only
 * a bound on its seq when the link is unknown (the topic was pushed out
 * of the index, or its previous record is gone).  The walk takes the lock
 * only to read the index entry and the head; the records themselves are
 * read like a reader reads them: copied, then checked against reserve,
 * with every offset, length, seq and topic byte verified.
 */
#include "ws_ring_int.h"

#include <stdlib.h>

typedef struct hist_link {
    uint64_t pos, seq;
} hist_link;

/* One history call: what it asks, and what the walk found. */
typedef struct hist_walk {
    const char *topic;
    size_t topic_len;
    uint64_t hash, after_seq, head;   /* head: as the call's snapshot saw it */
    hist_link *links;                 /* newest first */
    size_t n, alloc;
    size_t max_payload;               /* largest payload among the links */
    int complete;
} hist_walk;

/* Reads the record at pos with its topic.  1 if it is intact, plausible,
 * committed before the snapshot, and carries seq and the hash; *topic_ok
 * then says whether its topic is the one asked for. */
static int history_read(ws_ring *r, const hist_walk *w, uint64_t pos, uint64_t seq,
                        rec_header *h, int *topic_ok)
{
    char stored[WS_RING_TOPIC_MAX];

    if (pos % 8 || pos >= w->head || w->head - pos > r->cap)
        return 0;
    data_read(r, pos, h, sizeof *h);
    if (!header_plausible(r, h, pos, w->head) || h->seq != seq || h->topic_hash != w->hash)
        return 0;
    data_read(r, pos + sizeof *h, stored, h->topic_len);
    if (!still_intact(r, pos))
        return 0;
    *topic_ok = h->topic_len == w->topic_len
                && memcmp(stored, w->topic, w->topic_len) == 0;
    return 1;
}

static int walk_push(hist_walk *w, uint64_t pos, uint64_t seq)
{
    if (w->n == w->alloc) {
        size_t alloc = w->alloc ? w->alloc * 2 : 64;
        hist_link *links = realloc(w->links, alloc * sizeof *links);

        if (!links)
            return -1;
        w->links = links;
        w->alloc = alloc;
    }
    w->links[w->n].pos = pos;
    w->links[w->n].seq = seq;
    w->n++;
    return 0;
}

/* Phase 1: newest to oldest along the chain, noting where the records
 * are.  The walk holds a claim "the topic's newest record not yet taken
 * has seq <= seq", exact and at pos unless pos is NO_LINK.  It starts
 * from the index entry, which may be another topic's (same hash) or
 * gone: then only a bound is known, the floor or the entry's seq. */
static ws_ring_status history_walk(ws_ring *r, hist_walk *w, size_t max_count,
                                   uint64_t seq, uint64_t pos, uint64_t floor)
{
    rec_header h;
    int topic_ok = 0;

    if (pos != NO_LINK && !history_read(r, w, pos, seq, &h, &topic_ok))
        seq = max_u64(seq, floor), pos = NO_LINK;
    else if (pos != NO_LINK && !topic_ok)
        seq = floor, pos = NO_LINK;
    for (;;) {
        if (seq <= w->after_seq) {
            w->complete = 1;
            return WS_RING_OK;
        }
        if (pos == NO_LINK || !history_read(r, w, pos, seq, &h, &topic_ok)
            || !topic_ok)
            return WS_RING_OK;                     /* gone: a gap */
        if (w->n == max_count)
            return WS_RING_OK;                     /* cut: a gap */
        if (walk_push(w, pos, seq))
            return WS_RING_ENOMEM;
        if (h.payload_len > w->max_payload)
            w->max_payload = h.payload_len;
        seq = h.prev_seq;                          /* < seq: checked */
        pos = h.prev_pos;                          /* < pos: checked */
    }
}

/* Copies one record of the walk out; 1 if intact. */
static int history_copy(ws_ring *r, const hist_walk *w, const hist_link *link,
                        ws_ring_record *rec, unsigned char *payload)
{
    rec_header h;
    int ok;

    data_read(r, link->pos, &h, sizeof h);
    ok = h.seq == link->seq && h.topic_hash == w->hash
         && header_plausible(r, &h, link->pos, w->head)
         && h.payload_len <= w->max_payload;
    if (ok) {
        data_read(r, link->pos + sizeof h, rec->topic, h.topic_len);
        data_read(r, link->pos + sizeof h + h.topic_len, payload, h.payload_len);
    }
    HOOK(WS_RING_HOOK_HISTORY_COPIED);
    if (!still_intact(r, link->pos) || !ok)
        return 0;
    ws_ring_fill_fields(rec, &h);
    rec->topic[h.topic_len] = '\0';
    rec->payload = payload;
    return 1;
}

/* Phase 2: oldest first, each record copied and checked before the
 * callback sees it.  A record overwritten before anything was delivered
 * is dropped (a gap); after that the set would have a hole: OVERRUN. */
static ws_ring_status history_deliver(ws_ring *r, hist_walk *w,
                                      ws_ring_history_fn fn, void *baton,
                                      ws_ring_history_result *res)
{
    unsigned char *payload = malloc(w->max_payload ? w->max_payload : 1);
    ws_ring_status st = WS_RING_OK;
    ws_ring_record rec;
    size_t i;

    if (!payload)
        return WS_RING_ENOMEM;
    for (i = w->n; i-- > 0;) {
        if (!history_copy(r, w, &w->links[i], &rec, payload)) {
            w->complete = 0;
            if (res->count == 0)
                continue;
            st = WS_RING_OVERRUN;
            break;
        }
        if (res->count++ == 0)
            res->first_seq = rec.seq;
        res->last_seq = rec.seq;
        if (fn(baton, &rec) != 0) {
            w->complete = w->complete && i == 0;
            break;
        }
    }
    free(payload);
    return st;
}

ws_ring_status ws_ring_history(ws_ring *r, const char *topic, size_t topic_len,
                               uint64_t after_seq, size_t max_count,
                               ws_ring_history_fn fn, void *baton,
                               ws_ring_history_result *res)
{
    hist_walk w;
    const index_set *set;
    uint64_t seq = 0, pos = NO_LINK, floor;
    ws_ring_status st;
    int way;

    if (!r || !topic || !topic_len || topic_len > WS_RING_TOPIC_MAX || !fn || !res)
        return WS_RING_EINVAL;
    memset(res, 0, sizeof *res);
    memset(&w, 0, sizeof w);
    w.topic = topic;
    w.topic_len = topic_len;
    w.hash = ws_ring_topic_hash(topic, topic_len);
    w.after_seq = after_seq;
    set = &r->index[w.hash % r->nsets];

    /* The index entry, the floor and the head, as one snapshot. */
    if ((st = ws_ring_lock(r)) != WS_RING_OK)
        return st;
    for (way = 0; way < WAYS; way++)
        if (set->way[way].seq != 0 && set->way[way].hash == w.hash) {
            seq = set->way[way].seq;
            pos = set->way[way].pos;
        }
    floor = set->floor;
    w.head = r->hdr->commit.head;
    res->snapshot_seq = r->hdr->commit.next_seq - 1;
    ws_ring_unlock(r);

    if (after_seq > res->snapshot_seq)
        return WS_RING_OK;                 /* an id this ring never gave */
    if (pos == NO_LINK || seq > res->snapshot_seq)
        seq = floor, pos = NO_LINK;        /* not in the index: a bound */
    st = history_walk(r, &w, max_count, seq, pos, floor);
    if (st == WS_RING_OK)
        st = history_deliver(r, &w, fn, baton, res);
    res->complete = st == WS_RING_OK && w.complete;
    free(w.links);
    return st;
}
