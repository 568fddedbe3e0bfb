/*
 * wsload_recv.c - what comes back: an incremental frame parser (a frame
 * may arrive split anywhere), inflate for permessage-deflate, and the
 * byte-for-byte check of each echo; raw mode's plain byte stream.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "wsload.h"

static void message_done(struct worker *w, struct conn *c)
{
    uint64_t now = now_ns();
    uint64_t rtt = now - *sent_slot(w, c, c->recv_seq);
    c->recv_seq++;
    c->in_message = 0;
    c->msg_off = 0;
    c->msg_compressed = 0;
    uint64_t wire = c->msg_wire;
    c->msg_wire = 0;
    if (opt.cycle) {
        cycle_echoed(w, c, now);
    } else if (w->phase == PH_RUN) {
        if (now >= w->measure_start && now < w->measure_end) {
            w->res.msgs++;
            w->res.wire_rx += wire;
            result_add_latency(&w->res, rtt);
        }
        if (now < w->measure_end)
            queue_message(w, c, now);
    } else if (w->phase == PH_RECONNECT) {
        reconnect_echoed(w, c, now);
    } else if (w->phase == PH_PING) {
        w->res.echoed++;
        w->ping_waiting--;
    }
}

/* Checks an echoed chunk against what was sent; false if the conn broke. */
static bool verify_chunk(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (!payload_matches(w, c->recv_seq, c->msg_off, p, n)) {
        conn_broken(w, c, "echo mismatch in message %" PRIu32 " at bytes %zu..%zu",
                    c->recv_seq, c->msg_off, c->msg_off + n);
        return false;
    }
    c->msg_off += n;
    return true;
}

bool raw_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (c->next_seq == c->recv_seq) {
            conn_broken(w, c, "%zu unsolicited bytes from server", n);
            return false;
        }
        size_t take = opt.size - c->msg_off < n ? opt.size - c->msg_off : n;
        if (!verify_chunk(w, c, p, take))
            return false;
        c->msg_wire += take;
        p += take;
        n -= take;
        if (c->msg_off == opt.size)
            message_done(w, c);
    }
    return true;
}

static size_t header_size(uint8_t b1)
{
    size_t len7 = b1 & 0x7f;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

static uint64_t frame_length(const uint8_t *hdr)
{
    uint64_t len = hdr[1] & 0x7f;
    if (len == 126)
        return (uint64_t)hdr[2] << 8 | hdr[3];
    if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | hdr[2 + i];
    }
    return len;
}

static bool check_data_frame(struct worker *w, struct conn *c, unsigned opcode,
                             bool fin, uint64_t len)
{
    unsigned expected = opt.binary ? WS_OP_BINARY : WS_OP_TEXT;
    const char *problem = NULL;
    if (opcode > WS_OP_BINARY)
        problem = "reserved opcode";
    else if (opcode == WS_OP_CONT && !c->in_message)
        problem = "continuation frame outside a message";
    else if (opcode != WS_OP_CONT && c->in_message)
        problem = "new message before the previous one ended";
    else if (opcode != WS_OP_CONT && opcode != expected)
        problem = "echo has the wrong message type";
    else if (opcode != WS_OP_CONT && c->next_seq == c->recv_seq)
        problem = "unsolicited message";
    else if (!c->msg_compressed && len > opt.size - c->msg_off)
        problem = "echo longer than the message sent";
    else if (!c->msg_compressed && fin && c->msg_off + len != opt.size)
        problem = "echo shorter than the message sent";
    if (problem) {
        conn_broken(w, c, "protocol: %s (opcode %u, length %" PRIu64 ")", problem,
                    opcode, len);
        return false;
    }
    c->in_message = 1;
    return true;
}


/* Feeds compressed payload bytes to the connection's inflater and checks
 * what comes out against the message sent; false if the conn broke. */
static bool inflate_chunk(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (!c->inflater) {
        c->inflater = calloc(1, sizeof *c->inflater);
        if (!c->inflater || inflateInit2(c->inflater, -15) != Z_OK)
            die("inflateInit2 failed");
    }
    z_stream *z = c->inflater;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    do {
        z->next_out = w->ibuf;
        z->avail_out = INFLATE_BUF_SIZE;
        int ret = inflate(z, Z_SYNC_FLUSH);
        size_t got = INFLATE_BUF_SIZE - z->avail_out;
        if (ret != Z_OK && ret != Z_BUF_ERROR && ret != Z_STREAM_END) {
            conn_broken(w, c, "inflate: %s (%d)", z->msg ? z->msg : "error", ret);
            return false;
        }
        if (got > opt.size - c->msg_off) {
            conn_broken(w, c, "echo inflates to more than the %zu bytes sent", opt.size);
            return false;
        }
        if (got && !verify_chunk(w, c, w->ibuf, got))
            return false;
        if (ret == Z_STREAM_END) {
            /* a final block (BFINAL): what follows in this message is
             * only the appended tail, which RFC 7692 7.2.2 ignores */
            inflateReset(z);
            break;
        }
        if (ret == Z_BUF_ERROR && z->avail_in == 0)
            break;
    } while (z->avail_in > 0 || z->avail_out == 0);
    return true;
}

/* A complete frame header is in c->hdr: validate and start its payload. */
static bool begin_frame(struct worker *w, struct conn *c)
{
    uint8_t b0 = c->hdr[0];
    unsigned opcode = b0 & 0x0f;
    bool fin = b0 & 0x80;
    uint64_t len = frame_length(c->hdr);
    if (b0 & 0x30) {
        conn_broken(w, c, "protocol: RSV2/RSV3 set");
        return false;
    }
    if (b0 & WS_RSV1) {
        /* permessage-deflate: RSV1 on the first frame of a data message */
        if (!(c->pmd & PMD_ON)) {
            conn_broken(w, c, "protocol: RSV1 set without permessage-deflate");
            return false;
        }
        if (opcode == WS_OP_CONT || opcode >= 8) {
            conn_broken(w, c, "protocol: RSV1 on a %s frame",
                        opcode ? "control" : "continuation");
            return false;
        }
        c->msg_compressed = 1;
    }
    if (c->hdr[1] & 0x80) {
        conn_broken(w, c, "protocol: server frame is masked");
        return false;
    }
    if (opcode >= 8) {
        if (!fin || len > 125 || (opcode != WS_OP_CLOSE && opcode != WS_OP_PING &&
                                  opcode != WS_OP_PONG)) {
            conn_broken(w, c, "protocol: bad control frame (opcode %u, length %" PRIu64 ")",
                        opcode, len);
            return false;
        }
    } else if (!check_data_frame(w, c, opcode, fin, len)) {
        return false;
    } else {
        c->msg_wire += header_size(c->hdr[1]) + len;
    }
    c->frame_opcode = (uint8_t)opcode;
    c->frame_fin = fin;
    c->frame_left = len;
    c->ctrl_len = 0;
    c->in_payload = 1;
    return true;
}

static bool end_frame(struct worker *w, struct conn *c)
{
    c->in_payload = 0;
    c->hdr_have = 0;
    c->hdr_need = 2;
    switch (c->frame_opcode) {
    case WS_OP_PING:
        w->res.pings++;
        queue_control(w, c, WS_OP_PONG, c->ctrl, c->ctrl_len);
        return true;
    case WS_OP_PONG:
        return true;
    case WS_OP_CLOSE: {
        unsigned code = c->ctrl_len >= 2 ? (unsigned)c->ctrl[0] << 8 | c->ctrl[1] : 1005;
        if (w->phase == PH_RECONNECT) {
            reconnect_closed(w, c, code);
            return false;
        }
        conn_broken(w, c, "server sent Close (code %u)", code);
        return false;
    }
    default:
        if (!c->frame_fin)
            return true;
        if (c->msg_compressed) {
            if (!inflate_chunk(w, c, DEFLATE_TAIL, sizeof DEFLATE_TAIL))
                return false;
            if (c->msg_off != opt.size) {
                conn_broken(w, c, "echo inflates to %zu bytes, not %zu", c->msg_off,
                            opt.size);
                return false;
            }
            if (c->pmd & PMD_SERVER_NO_CTX)
                inflateReset(c->inflater);
        }
        message_done(w, c);
        return true;
    }
}

static bool frame_payload(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    if (c->frame_opcode >= 8) {
        memcpy(c->ctrl + c->ctrl_len, p, n);     /* begin_frame bounded it to 125 */
        c->ctrl_len = (uint8_t)(c->ctrl_len + n);
        return true;
    }
    if (c->msg_compressed)
        return inflate_chunk(w, c, p, n);
    return verify_chunk(w, c, p, n);
}

bool ws_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    /* --cycle stops reading at the echo: what follows belongs to the
     * closing handshake */
    while (n > 0 && c->state == CS_OPEN) {
        if (!c->in_payload) {
            size_t take = (size_t)(c->hdr_need - c->hdr_have);
            take = take < n ? take : n;
            memcpy(c->hdr + c->hdr_have, p, take);
            c->hdr_have = (uint8_t)(c->hdr_have + take);
            p += take;
            n -= take;
            if (c->hdr_have == 2)
                c->hdr_need = (uint8_t)header_size(c->hdr[1]);
            if (c->hdr_have < c->hdr_need)
                continue;
            if (!begin_frame(w, c))
                return false;
            if (c->frame_left == 0 && !end_frame(w, c))
                return false;
            continue;
        }
        size_t take = c->frame_left < n ? (size_t)c->frame_left : n;
        if (!frame_payload(w, c, p, take))
            return false;
        p += take;
        n -= take;
        c->frame_left -= take;
        if (c->frame_left == 0 && !end_frame(w, c))
            return false;
    }
    return true;
}
