/*
 * ws_io.c - a WebSocket's non-blocking I/O, through the filters or on the
 * socket (see ws_io.h).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "httpd.h"
#include "http_connection.h"
#include "http_core.h"
#include "util_filter.h"
#include "apr_optional.h"
#include "apr_strings.h"

#include "ws_io.h"

/* Never hand the core output filter more than this at once: above its
 * FlushMaxThreshold (64K by default) it would block until written. */
#define WS_IO_WRITE_CHUNK  (32 * 1024)
/* Frames one writev takes at most. */
#define WS_IO_IOVECS       64

/* mod_logio's byte counters (%I, %O), for what direct mode moves. */
static APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_in) *logio_add_bytes_in;
static APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_out) *logio_add_bytes_out;

void ws_io_child_init(void)
{
    logio_add_bytes_in = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_in);
    logio_add_bytes_out = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_out);
}

apr_status_t ws_io_init(ws_io *io, ws_conn *wc, apr_pool_t *p)
{
    memset(io, 0, sizeof(*io));
    io->wc = wc;
    io->c = wc->c;
    io->in = apr_brigade_create(p, io->c->bucket_alloc);
    io->out = apr_brigade_create(p, io->c->bucket_alloc);
    io->upgrade_eos = io->c->master != NULL;
    return APR_SUCCESS;
}

/* Only the core's filters on the connection (no mod_ssl, no third-party
 * connection filter; mod_logio's input counter is fine, its counts are
 * kept by hand): reading and writing the socket directly is then exactly
 * what the filters would do. */
static ap_filter_t *below_logio(conn_rec *c)
{
    ap_filter_t *in = c->input_filters;

    if (in && logio_add_bytes_in && !strcasecmp(in->frec->name,
                                                "log_input_output")) {
        in = in->next;
    }
    return in;
}

static int core_filters_only(conn_rec *c)
{
    ap_filter_t *in = below_logio(c);

    return in && c->output_filters
           && in->frec == ap_core_input_filter_handle && !in->next
           && c->output_filters->frec == ap_core_output_filter_handle
           && !c->output_filters->next;
}

/* A reader paused in the middle of what the core input filter had does
 * not know whether it holds more: a speculative read of one byte says,
 * and leaves it in place.  Below mod_logio, which would count it. */
static void check_filters_drained(ws_io *io)
{
    apr_status_t rv;

    rv = ap_get_brigade(below_logio(io->c), io->in, AP_MODE_SPECULATIVE,
                        APR_NONBLOCK_READ, 1);
    if (APR_STATUS_IS_EAGAIN(rv)
        || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(io->in))) {
        io->filters_drained = 1;
    }
    apr_brigade_cleanup(io->in);
}

int ws_io_try_direct(ws_io *io)
{
    conn_rec *c = io->c;

    if (io->direct) {
        return 1;                /* and c may be gone (ws_detach.c) */
    }
    /* A socket of our own from here on: no write may wait for it.  (The
     * filters' non-blocking reads set this themselves; the writes of the
     * core output filter and mod_ssl's close_notify do not.) */
    if (!c->master) {
        apr_socket_timeout_set(ap_get_conn_socket(c), 0);
    }
    if (c->master || !core_filters_only(c) || c->data_in_output_filters) {
        return 0;
    }
    if (!io->filters_drained) {
        check_filters_drained(io);
        if (!io->filters_drained) {
            return 0;
        }
    }
    if (apr_os_sock_get(&io->fd, ap_get_conn_socket(c)) != APR_SUCCESS) {
        return 0;
    }
    io->direct = 1;
    return 1;
}

void ws_io_detach(ws_io *io, int fd)
{
    io->fd = fd;
    io->c = NULL;
    io->in = io->out = NULL;
}

static void count_in(ws_io *io, apr_size_t len)
{
    if (!io->c) {
        io->bytes_in += (apr_off_t)len;
    }
    else if (logio_add_bytes_in) {
        logio_add_bytes_in(io->c, (apr_off_t)len);
    }
}

static void count_out(ws_io *io, apr_size_t len)
{
    if (!io->c) {
        io->bytes_out += (apr_off_t)len;
    }
    else if (logio_add_bytes_out) {
        logio_add_bytes_out(io->c, (apr_off_t)len);
    }
}

/* ---- reading ---- */

/* recv(2) and send(2)/sendmsg(2) rather than APR's read(2) and writev(2):
 * the socket calls skip the file layer (its position lock, permission and
 * notification hooks) that the generic ones go through, one less layer per
 * message each way; the socket is non-blocking (ws_io_try_direct), so
 * APR's wait for a timeout is never wanted.  -1 with errno as they set
 * it, EINTR retried. */
static ssize_t sock_recv(int fd, void *buf, size_t len)
{
    ssize_t n;

    do {
        n = recv(fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t sock_sendv(int fd, struct iovec *vec, int n, int flags)
{
    struct msghdr msg;
    ssize_t done;

    flags |= MSG_NOSIGNAL;
    do {
        if (n == 1) {
            done = send(fd, vec[0].iov_base, vec[0].iov_len, flags);
        }
        else {
            memset(&msg, 0, sizeof(msg));
            msg.msg_iov = vec;
            msg.msg_iovlen = (size_t)n;
            done = sendmsg(fd, &msg, flags);
        }
    } while (done < 0 && errno == EINTR);
    return done;
}

static int would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

static apr_status_t read_direct(ws_io *io, uint8_t *scratch, apr_size_t size,
                                apr_size_t budget)
{
    ws_conn *wc = io->wc;
    apr_size_t done = 0;

    /* Nothing is read past input that still waits unparsed (a pause
     * that ended while the parser was stopping left it): it goes first. */
    while (!wc->peer_closed && !wc->paused && !ws_conn_input_paused(wc)
           && !wc->unparsed && done < budget) {
        ssize_t got = sock_recv(io->fd, scratch, size);
        apr_size_t len;
        apr_status_t rv;

        if (got < 0) {
            return would_block() ? APR_SUCCESS : APR_FROM_OS_ERROR(errno);
        }
        if (got == 0) {
            return APR_EOF;
        }
        len = (apr_size_t)got;
        count_in(io, len);
        wc->stats.bytes_in += len;
        done += len;
        if ((rv = ws_conn_feed_input(wc, scratch, len)) != APR_SUCCESS) {
            return rv;
        }
        /* A short read says the socket is empty (the poll is level
         * triggered: no need for another, empty, read). */
        if (len < size) {
            return APR_SUCCESS;
        }
    }
    return APR_SUCCESS;
}

/* mod_http2 ends the body of the GET it made of an extended CONNECT
 * (RFC 8441) with an EOS that it puts first in the stream's input: the
 * first read of the stream returns it alone, and the WebSocket's bytes
 * come after it.  Whether this read was that EOS (then skipped, once). */
static int skip_upgrade_eos(ws_io *io)
{
    int lone_eos = !APR_BRIGADE_EMPTY(io->in)
                   && APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(io->in))
                   && APR_BRIGADE_FIRST(io->in) == APR_BRIGADE_LAST(io->in);

    io->upgrade_eos = 0;
    if (lone_eos) {
        apr_brigade_cleanup(io->in);
    }
    return lone_eos;
}

/* The core input filter says "nothing now" with an empty brigade and the
 * end of the stream with EOS; mod_ssl says "nothing now" with EAGAIN;
 * an HTTP/2 stream (mod_http2) says it with EAGAIN, and drains its pipe
 * before it does. */
static apr_status_t read_filters(ws_io *io, uint8_t *scratch, apr_size_t size,
                                 apr_size_t budget, int *more)
{
    ws_conn *wc = io->wc;
    apr_size_t done = 0;

    io->filters_drained = 0;
    while (!wc->peer_closed && !wc->paused && !ws_conn_input_paused(wc)
           && !wc->unparsed) {
        apr_size_t len = size;
        apr_status_t rv;
        int eos;

        if (done >= budget) {
            *more = 1;               /* the filters may hold more */
            return APR_SUCCESS;
        }
        rv = ap_get_brigade(io->c->input_filters, io->in, AP_MODE_READBYTES,
                            APR_NONBLOCK_READ, size);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            io->upgrade_eos = 0;
            io->filters_drained = 1;
            return APR_SUCCESS;
        }
        if (rv != APR_SUCCESS) {
            apr_brigade_cleanup(io->in);
            return rv;
        }
        if (io->upgrade_eos && skip_upgrade_eos(io)) {
            continue;
        }
        eos = !APR_BRIGADE_EMPTY(io->in)
              && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(io->in));
        rv = apr_brigade_flatten(io->in, (char *)scratch, &len);
        apr_brigade_cleanup(io->in);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (len == 0) {
            io->filters_drained = !eos;
            return eos ? APR_EOF : APR_SUCCESS;
        }
        done += len;
        wc->stats.bytes_in += len;
        if ((rv = ws_conn_feed_input(wc, scratch, len)) != APR_SUCCESS) {
            return rv;
        }
        if (eos) {
            return APR_EOF;
        }
    }
    return APR_SUCCESS;
}

apr_status_t ws_io_read(ws_io *io, uint8_t *scratch, apr_size_t size,
                        apr_size_t budget, int *more)
{
    *more = 0;
    return io->direct ? read_direct(io, scratch, size, budget)
                      : read_filters(io, scratch, size, budget, more);
}

/* ---- writing ---- */

/* Takes what plugins queued since the last look; a message counts when
 * its last frame (FIN, a data or continuation opcode) is taken. */
static ws_out_frame *take_frames(ws_io *io)
{
    ws_out_frame *head = ws_conn_take_output(io->wc), *f;

    for (f = head; f; f = f->next) {
        uint8_t b0 = WS_FRAME_BYTES(f)[0];

        if (f->shared) {
            io->wc->msgs_out += f->shared->messages;   /* a run of a topic */
        }
        else if ((b0 & WS_FIN) && (b0 & 0x0F) < WS_OP_CLOSE) {
            io->wc->msgs_out++;
        }
    }
    return head;
}

/* Frees the frames the first 'written' bytes completed. */
static void advance_sending(ws_io *io, apr_size_t written)
{
    io->wc->stats.bytes_out += written;
    ws_conn_output_written(io->wc, written);
    while (io->sending && written >= io->sending->len - io->sent) {
        ws_out_frame *done = io->sending;

        written -= done->len - io->sent;
        io->sending = done->next;
        io->sent = 0;
        done->next = NULL;
        ws_out_frames_free(done);    /* a topic's shared bytes too */
    }
    io->sent += written;
}

/* Our Close answers the peer's: nothing may follow it (RFC 6455 5.5.1),
 * so the FIN goes with it, in the same segment (MSG_MORE holds the bytes
 * until shutdown adds the FIN), instead of a packet of its own later;
 * Apache's lingering close then finds the write side already shut. */
static int ends_closing_handshake(const ws_io *io, const ws_out_frame *last)
{
    return io->wc->peer_closed && !last->next && !last->shared
           && (WS_FRAME_BYTES(last)[0] & 0x0F) == WS_OP_CLOSE;
}

static apr_status_t write_direct(ws_io *io, apr_size_t budget)
{
    apr_size_t done = 0;

    for (;;) {
        struct iovec vec[WS_IO_IOVECS];
        apr_size_t total = 0, written = 0;
        ws_out_frame *f, *last = NULL;
        apr_status_t rv;
        ssize_t sent;
        int n = 0, fin;

        if (!io->sending && !(io->sending = take_frames(io))) {
            return APR_SUCCESS;
        }
        for (f = io->sending; f && n < WS_IO_IOVECS; f = f->next, n++) {
            apr_size_t skip = (f == io->sending) ? io->sent : 0;

            vec[n].iov_base = WS_FRAME_BYTES(f) + skip;
            vec[n].iov_len = f->len - skip;
            total += vec[n].iov_len;
            last = f;
        }
        fin = ends_closing_handshake(io, last);
        sent = sock_sendv(io->fd, vec, n, fin ? MSG_MORE : 0);
        if (fin && sent >= 0 && (apr_size_t)sent == total) {
            shutdown(io->fd, SHUT_WR);
        }
        rv = sent >= 0 ? APR_SUCCESS
           : would_block() ? APR_EAGAIN : APR_FROM_OS_ERROR(errno);
        written = sent > 0 ? (apr_size_t)sent : 0;
        if (written) {
            count_out(io, written);
        }
        advance_sending(io, written);
        done += written;
        if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && written < total)) {
            return APR_SUCCESS;          /* socket full: wait for POLLOUT */
        }
        if (rv != APR_SUCCESS || (budget && done >= budget)) {
            return rv;
        }
    }
}

/* The polyfill of ap_filter_output_pending (2.4 has none): calling the
 * core output filter with no brigade makes it write what it set aside,
 * without blocking. */
static apr_status_t push_set_aside(conn_rec *c)
{
    ap_filter_t *f = c->output_filters;

    while (f->next) {
        f = f->next;
    }
    return f->frec->filter_func.out_func(f, NULL);
}

/* Transient buckets over the frames being sent, from where the last pass
 * stopped, up to max bytes (0: all).  Whatever a filter must keep, it
 * copies (setaside), so a frame can be freed as soon as it is passed. */
static apr_size_t fill_out(ws_io *io, apr_size_t max)
{
    apr_bucket_alloc_t *ba = io->c->bucket_alloc;
    apr_size_t total = 0;
    ws_out_frame *f;

    for (f = io->sending; f && (!max || total < max); f = f->next) {
        apr_size_t skip = (f == io->sending) ? io->sent : 0;
        apr_size_t len = f->len - skip;

        if (max && len > max - total) {
            len = max - total;
        }
        APR_BRIGADE_INSERT_TAIL(io->out, apr_bucket_transient_create(
                                    (const char *)WS_FRAME_BYTES(f) + skip,
                                    len, ba));
        total += len;
    }
    return total;
}

/* A stream of HTTP/2 has no POLLOUT: everything goes at once, and the
 * write waits in mod_http2 as its flow control says. */
static apr_status_t write_blocking(ws_io *io)
{
    apr_size_t len;
    apr_status_t rv;

    if (!io->sending && !(io->sending = take_frames(io))) {
        return APR_SUCCESS;
    }
    len = fill_out(io, 0);
    APR_BRIGADE_INSERT_TAIL(io->out, apr_bucket_flush_create(io->c->bucket_alloc));
    rv = ap_pass_brigade(io->c->output_filters, io->out);
    apr_brigade_cleanup(io->out);
    advance_sending(io, len);
    return rv;
}

static apr_status_t write_filters(ws_io *io, apr_size_t budget)
{
    conn_rec *c = io->c;
    apr_size_t done = 0;
    apr_status_t rv;

    for (;;) {
        apr_size_t len;

        if (c->data_in_output_filters) {
            if ((rv = push_set_aside(c)) != APR_SUCCESS) {
                return rv;
            }
            if (c->data_in_output_filters) {
                return APR_SUCCESS;      /* socket full: wait for POLLOUT */
            }
        }
        if (budget && done >= budget) {
            return APR_SUCCESS;
        }
        if (!io->sending && !(io->sending = take_frames(io))) {
            return APR_SUCCESS;
        }
        len = fill_out(io, WS_IO_WRITE_CHUNK);
        rv = ap_pass_brigade(c->output_filters, io->out);
        apr_brigade_cleanup(io->out);
        /* What the filters took is theirs: at most one chunk waits there
         * while data_in_output_filters holds us back. */
        advance_sending(io, len);
        done += len;
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
}

apr_status_t ws_io_write(ws_io *io, apr_size_t budget)
{
    apr_status_t rv;

    if (ws_conn_take_discard(io->wc)) {
        ws_io_discard(io, 1);
    }
    rv = io->direct ? write_direct(io, budget)
       : io->blocking_writes ? write_blocking(io)
       : write_filters(io, budget);
    /* Engines read, then write, each turn: one look per turn at what
     * the connection moved, for mod_status. */
    ws_stats_flush(io->wc);
    return rv;
}

int ws_io_send_now(ws_io *io, const uint8_t *frame, apr_size_t len)
{
    struct iovec vec;
    apr_size_t n;
    ssize_t sent;

    if (!io->direct || io->sent) {
        return 0;
    }
    vec.iov_base = (void *)frame;
    vec.iov_len = len;
    sent = sock_sendv(io->fd, &vec, 1, 0);
    if (sent <= 0) {
        return 0;
    }
    n = (apr_size_t)sent;
    count_out(io, n);
    return n == len;
}

ws_io_peer_state ws_io_peek_peer(ws_io *io)
{
    char byte;
    ssize_t n;

    if (!io->direct) {
        return WS_IO_PEER_UNKNOWN;
    }
    do {
        n = recv(io->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        return WS_IO_PEER_DATA_WAITS;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return WS_IO_PEER_UNKNOWN;
    }
    return WS_IO_PEER_GONE;
}

int ws_io_output_pending(const ws_io *io)
{
    return io->sending || (io->c && io->c->data_in_output_filters);
}

void ws_io_discard(ws_io *io, int keep_partial)
{
    ws_out_frame *drop = io->sending;
    apr_size_t unwritten = 0, skip = io->sent;
    ws_out_frame *f;

    /* A frame whose start went out must go out whole, or the peer would
     * read what follows as its payload. */
    if (keep_partial && io->sent && drop) {
        drop = drop->next;
        io->sending->next = NULL;
        skip = 0;
    }
    else {
        io->sending = NULL;
        io->sent = 0;
    }
    for (f = drop; f; f = f->next) {
        unwritten += f->len - (f == drop ? skip : 0);
    }
    ws_out_frames_free(drop);
    if (io->c) {
        apr_brigade_cleanup(io->out);
        apr_brigade_cleanup(io->in);
    }
    ws_conn_output_written(io->wc, unwritten);
}
