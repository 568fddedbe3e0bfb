/*
 * ws_topic_form.c - what a topic's message looks like to this child's
 * subscribers, made once however many they are.
 *
 * A record is framed once per form it takes here: plain or with its id,
 * and compressed once per set of permessage-deflate parameters among the
 * subscribers that compress without context takeover (those with it
 * compress for themselves, in order, in ws_topic_deliver.c).  The records
 * of a run (several messages of one topic that reached the child
 * together) are also joined, per form, into one frame of all of them, so
 * that a subscriber that takes them all alike costs one queue node, one
 * lock, one wake-up and one write for the whole run, not one per message.
 *
 * Only the reader thread uses this file: the compressors are its own.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "apr_strings.h"

#include "ws_topic_int.h"

typedef struct compressor {
    int server_bits, level, mem_level;
    size_t min_size;                 /* a key stands for one threshold too,
                                        so that one joined frame fits all
                                        its subscribers */
    ws_deflate_ctx *ctx;
    ws_deflate_buf buf;
} compressor;

static compressor keys[WS_TOPIC_MAX_KEYS];
static int key_count;

uint8_t *ws_topic_prefix_id(uint64_t seq, const char *gap, const void *payload,
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

int ws_topic_subscriber_key(ws_conn *wc)
{
    const ws_deflate_params *p;
    int i;

    if (!wc->deflate) {
        return 0;
    }
    p = ws_deflate_params_of(wc->deflate);
    if (!p->server_no_context_takeover) {
        return -1;
    }
    for (i = 0; i < key_count; i++) {
        if (keys[i].server_bits == p->server_max_window_bits
            && keys[i].level == p->level && keys[i].mem_level == p->mem_level
            && keys[i].min_size == p->min_size) {
            return i + 1;
        }
    }
    if (key_count == WS_TOPIC_MAX_KEYS) {
        return -1;
    }
    keys[key_count].ctx = ws_deflate_create(p, (uint64_t)-1);
    if (!keys[key_count].ctx) {
        return -1;
    }
    keys[key_count].server_bits = p->server_max_window_bits;
    keys[key_count].level = p->level;
    keys[key_count].mem_level = p->mem_level;
    keys[key_count].min_size = p->min_size;
    return ++key_count;
}

/* The key a message of len bytes takes under a subscriber's key: 0 when
 * it is too short to be compressed. */
static int key_for(int key, size_t len)
{
    return key > 0 && len < keys[key - 1].min_size ? 0 : key;
}

int ws_topic_compression_key(ws_conn *wc, size_t len)
{
    if (!wc->deflate || !ws_deflate_should_compress(wc->deflate, len)) {
        return 0;
    }
    return ws_topic_subscriber_key(wc);
}

ws_shared_frame *ws_topic_form(ws_topic_forms *fs, int ids, int key)
{
    const uint8_t *data = fs->rec->payload;
    size_t len = fs->rec->payload_len;
    ws_shared_frame **slot = &fs->frame[ids][key];

    if (*slot) {
        return *slot;
    }
    if (ids) {
        if (!fs->with_id
            && !(fs->with_id = ws_topic_prefix_id(fs->rec->seq, NULL, data,
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

ws_shared_frame *ws_topic_run_form(ws_topic_run *run, int ids, int key)
{
    ws_shared_frame **slot = &run->joined[ids][key], **parts;
    size_t i;

    if (*slot) {
        return *slot;
    }
    if (!(parts = malloc(run->count * sizeof(*parts)))) {
        return NULL;
    }
    for (i = 0; i < run->count; i++) {
        ws_topic_forms *fs = &run->forms[i];

        if (!(parts[i] = ws_topic_form(fs, ids,
                                       key_for(key, fs->rec->payload_len)))) {
            break;
        }
    }
    if (i == run->count) {
        *slot = ws_shared_frame_join(parts, run->count);
    }
    free(parts);
    return *slot;
}

void ws_topic_forms_release(ws_topic_forms *fs)
{
    int i, k;

    for (i = 0; i < 2; i++) {
        for (k = 0; k <= WS_TOPIC_MAX_KEYS; k++) {
            ws_shared_frame_drop(fs->frame[i][k]);
            fs->frame[i][k] = NULL;
        }
    }
    free(fs->with_id);
    fs->with_id = NULL;
}

void ws_topic_run_release(ws_topic_run *run)
{
    size_t i;
    int k;

    for (i = 0; i < run->count; i++) {
        ws_topic_forms_release(&run->forms[i]);
    }
    for (i = 0; i < 2; i++) {
        for (k = 0; k <= WS_TOPIC_MAX_KEYS; k++) {
            ws_shared_frame_drop(run->joined[i][k]);
            run->joined[i][k] = NULL;
        }
    }
}

void ws_topic_forms_shutdown(void)
{
    int i;

    for (i = 0; i < key_count; i++) {
        ws_deflate_destroy(keys[i].ctx);
        ws_deflate_buf_free(&keys[i].buf);
    }
    key_count = 0;
}
