/*
 * wsload_send.c - what a client sends: per-connection output buffers,
 * masked frames, permessage-deflate compression, and the closed loop's
 * next message with its send time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wsload.h"

/* The 4 bytes a sync flush ends with (RFC 7692 7.2.1). */
const uint8_t DEFLATE_TAIL[4] = { 0x00, 0x00, 0xff, 0xff };

uint8_t *outbuf_reserve(struct outbuf *b, size_t n)
{
    if (b->off == b->len)
        b->off = b->len = 0;
    if (b->cap - b->len >= n)
        return b->data + b->len;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            die("out of memory (output buffer of %zu bytes)", cap);
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

void outbuf_free(struct outbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Returns false on a write error; true when everything was written or the
 * socket is full (the edge-triggered EPOLLOUT will call us again). */
bool outbuf_flush(struct outbuf *b, int fd)
{
    while (b->off < b->len) {
        ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n > 0) {
            b->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            return false;
        }
    }
    b->off = b->len = 0;
    return true;
}

static size_t put_frame_header(uint8_t *dst, unsigned opcode, unsigned rsv,
                               uint64_t len, const uint8_t key[4])
{
    size_t h = 0;
    dst[h++] = (uint8_t)(0x80 | rsv | opcode);      /* FIN: never fragment */
    if (len < 126) {
        dst[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        dst[h++] = 0x80 | 126;
        dst[h++] = (uint8_t)(len >> 8);
        dst[h++] = (uint8_t)len;
    } else {
        dst[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            dst[h++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(dst + h, key, 4);
    return h + 4;
}

static void random_mask(struct worker *w, uint8_t key[4])
{
    uint32_t m = (uint32_t)(rng_next(&w->rng) >> 32);
    memcpy(key, &m, 4);
}

uint64_t *sent_slot(struct worker *w, struct conn *c, uint32_t seq)
{
    return &w->sent_ns[conn_index(w, c) * opt.depth + seq % (uint32_t)opt.depth];
}

static z_stream *new_deflater(void)
{
    z_stream *z = calloc(1, sizeof *z);
    if (!z || deflateInit2(z, opt.deflate_level, Z_DEFLATED, -15, 8,
                           Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2 failed");
    return z;
}

/* Compresses one message into w->zbuf as permessage-deflate wants it (a
 * sync flush without its final 00 00 ff ff); returns the length. */
static size_t deflate_message(struct worker *w, struct conn *c, const uint8_t *in, size_t n)
{
    z_stream *z;
    if (c->pmd & PMD_CLIENT_NO_CTX) {
        if (!w->shared_deflater)
            w->shared_deflater = new_deflater();
        z = w->shared_deflater;
        deflateReset(z);
    } else {
        if (!c->deflater)
            c->deflater = new_deflater();
        z = c->deflater;
    }
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = w->zbuf;
    z->avail_out = (uInt)w->zbuf_cap;
    int ret = deflate(z, Z_SYNC_FLUSH);
    if ((ret != Z_OK && ret != Z_BUF_ERROR) || z->avail_in != 0 || z->avail_out == 0)
        die("deflate failed (%d)", ret);
    size_t out = w->zbuf_cap - z->avail_out;
    if (out >= 4 && memcmp(w->zbuf + out - 4, DEFLATE_TAIL, 4) == 0)
        out -= 4;
    return out;
}

static bool in_measured_interval(const struct worker *w, uint64_t now)
{
    return w->phase == PH_RUN && now >= w->measure_start && now < w->measure_end;
}

/* Queues the next message of the closed loop (flushed by the caller). */
void queue_message(struct worker *w, struct conn *c, uint64_t now)
{
    uint32_t seq = c->next_seq++;
    unsigned opcode = opt.binary ? WS_OP_BINARY : WS_OP_TEXT;
    size_t h = 0, len = opt.size;
    if (opt.raw) {
        uint8_t *dst = outbuf_reserve(&c->out, opt.size);
        write_payload(w, dst, seq, NULL);
    } else if (c->pmd & PMD_ON) {
        uint8_t key[4];
        random_mask(w, key);
        write_payload(w, w->plain, seq, NULL);
        len = deflate_message(w, c, w->plain, opt.size);
        uint8_t *dst = outbuf_reserve(&c->out, len + WS_MAX_HEADER);
        h = put_frame_header(dst, opcode, WS_RSV1, len, key);
        mask_copy(dst + h, w->zbuf, len, key, 0);
    } else {
        uint8_t key[4];
        random_mask(w, key);
        uint8_t *dst = outbuf_reserve(&c->out, opt.size + WS_MAX_HEADER);
        h = put_frame_header(dst, opcode, 0, opt.size, key);
        write_payload(w, dst + h, seq, key);
    }
    c->out.len += h + len;
    if (in_measured_interval(w, now)) {
        w->res.tx_msgs++;
        w->res.wire_tx += h + len;
    }
    *sent_slot(w, c, seq) = now;
}

void queue_control(struct worker *w, struct conn *c, unsigned opcode,
                          const uint8_t *payload, size_t n)
{
    uint8_t key[4];
    random_mask(w, key);
    uint8_t *dst = outbuf_reserve(&c->out, n + WS_MAX_HEADER);
    size_t h = put_frame_header(dst, opcode, 0, n, key);
    mask_copy(dst + h, payload, n, key, 0);
    c->out.len += h + n;
}
