/*
 * wsload_cycle.c - the modes where connections come and go.
 *
 * --cycle: each of the -c slots loops over one whole WebSocket life:
 * connect, upgrade, one echo, our Close, the server's end of TCP; then
 * the slot starts over.  --raw-get PATH: the same loop with a plain
 * HTTP/1.1 GET of PATH and "Connection: close" (the server ends the
 * connection after the response), Apache's own floor for the same work.
 * An operation counts when it ends inside the measured interval; its time
 * (from the first connect to the end of TCP) goes into the histogram.
 *
 * --reconnect: idle connections, as --idle, except that a connection the
 * server closes (a Close frame, or just the end of TCP) is reopened at
 * once and echoes one message; attempts that fail meanwhile are retried
 * every --retry-delay, as often as it takes.  The worker is done when
 * every connection has come back, or at the end of --hold.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wsload.h"

/* ---- slots that start over ---- */

void slot_again(struct worker *w, struct conn *c, bool delayed)
{
    c->attempts = 0;
    if (delayed) {
        c->state = CS_RETRY_WAIT;
        c->deadline = now_ns() + opt.retry_delay_ns;
        w->retry_ring[(w->retry_head + w->retry_count) % w->n] = conn_index(w, c);
        w->retry_count++;
    } else {
        c->state = CS_NEW;
        w->again_ring[(w->again_head + w->again_count) % w->n] = conn_index(w, c);
        w->again_count++;
    }
}

/* Where a failed attempt is not retried a few times and then given up,
 * but counted and started over. */
bool restarts_failed_attempts(const struct worker *w)
{
    return (opt.cycle && w->phase == PH_RUN) || w->phase == PH_RECONNECT;
}

/* --cycle: each failed attempt is a failed operation (an error);
 * --reconnect: a server that restarts refuses for a while, which is what
 * is being measured, not an error. */
void attempt_failed_again(struct worker *w, struct conn *c, int err, const char *what)
{
    outbuf_free(&c->out);
    if (w->phase == PH_RECONNECT) {
        w->res.attempts_failed++;
        if (err == ECONNREFUSED)
            w->res.refused++;
    } else {
        w->res.failed++;
        report_error(w, c, "%s failed: %s", what, err ? strerror(err) : "rejected");
    }
    slot_again(w, c, true);
}

/* ---- --cycle ---- */

void cycle_begin(struct worker *w, uint64_t t0)
{
    w->measure_start = t0 + secs_to_ns(opt.warmup);
    w->measure_end = w->measure_start + secs_to_ns(opt.duration);
    w->phase = PH_RUN;
}

/* The upgrade went through: one message, echoed before the Close. */
void cycle_opened(struct worker *w, struct conn *c)
{
    queue_message(w, c, now_ns());
}

void cycle_echoed(struct worker *w, struct conn *c, uint64_t now)
{
    static const uint8_t normal_closure[2] = { 0x03, 0xe8 };   /* 1000 */
    queue_control(w, c, WS_OP_CLOSE, normal_closure, sizeof normal_closure);
    c->deadline = now + secs_to_ns(opt.timeout);
    c->state = CS_CLOSING;
    w->n_open--;
    w->n_closing++;
}

static void operation_done(struct worker *w, struct conn *c)
{
    uint64_t now = now_ns();
    if (now >= w->measure_start && now < w->measure_end) {
        w->res.cycles++;
        result_add_latency(&w->res, now - c->started);
    }
    if (w->phase == PH_RUN && now < w->measure_end)
        slot_again(w, c, false);
    else
        c->state = CS_DONE;
}

/* The server ended TCP after the closing handshake (or we gave up on it). */
void cycle_closed(struct worker *w, struct conn *c)
{
    operation_done(w, c);
}

/* ---- --raw-get ---- */

void send_get_request(struct worker *w, struct conn *c)
{
    (void)w;
    c->hs = calloc(1, sizeof *c->hs);
    if (!c->hs)
        die("out of memory (GET)");
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Connection: close\r\n"
                     "\r\n", opt.get_path, opt.host_header);
    memcpy(outbuf_reserve(&c->out, (size_t)n), req, (size_t)n);
    c->out.len += (size_t)n;
    c->state = CS_HANDSHAKE;
}

bool get_response_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    struct handshake *hs = c->hs;
    if (n > HANDSHAKE_MAX - hs->len) {
        attempt_failed(w, c, 0, "GET (response larger than 4 KiB)");
        return false;
    }
    memcpy(hs->buf + hs->len, p, n);
    hs->len += n;
    hs->buf[hs->len] = '\0';
    return true;
}

/* NULL when the response is a 200 whose body is as long as it says. */
static const char *check_get_response(const struct handshake *hs)
{
    if (strncmp(hs->buf, "HTTP/1.1 200 ", 13) != 0)
        return "status is not 200";
    const char *end = strstr(hs->buf, "\r\n\r\n");
    if (!end)
        return "incomplete response head";
    const char *cl = strcasestr(hs->buf, "\r\nContent-Length:");
    if (!cl || cl > end)
        return "no Content-Length";
    char *stop;
    unsigned long long len = strtoull(cl + 17, &stop, 10);
    size_t body = hs->len - (size_t)(end + 4 - hs->buf);
    if (stop == cl + 17 || body != len)
        return "body length differs from Content-Length";
    return NULL;
}

/* The server's end of TCP: the response is complete. */
void get_response_end(struct worker *w, struct conn *c)
{
    const char *why = check_get_response(c->hs);
    if (why) {
        char *eol = strstr(c->hs->buf, "\r\n");
        if (eol)
            *eol = '\0';
        if (w->reported < MAX_REPORTED_ERRORS)
            fprintf(stderr, "wsload: worker %d conn %ld: bad GET response: %s (%.80s)\n",
                    w->id, w->first + conn_index(w, c), why, c->hs->buf);
        attempt_failed(w, c, 0, "GET");
        return;
    }
    conn_close_fd(c);
    outbuf_free(&c->out);
    w->pending--;
    w->res.opened++;
    operation_done(w, c);
}

/* ---- --reconnect ---- */

void reconnect_begin(struct worker *w, uint64_t t0)
{
    w->phase = PH_RECONNECT;
    w->phase_deadline = t0 + secs_to_ns(opt.hold);
    w->reconnect_target = w->n_open;
}

/* Answers the server's Close (or takes note of its end of TCP), lets the
 * socket go and queues the connection to be opened again at once. */
void reconnect_closed(struct worker *w, struct conn *c, unsigned code)
{
    uint64_t now = now_ns();
    if (code) {
        uint8_t echo[2] = { (uint8_t)(code >> 8), (uint8_t)code };
        queue_control(w, c, WS_OP_CLOSE, echo, sizeof echo);
        outbuf_flush(&c->out, c->fd);
    }
    if (code == 1001)
        w->res.closed_1001++;
    else if (code == 1012)
        w->res.closed_1012++;
    else if (code)
        w->res.closed_other++;
    else
        w->res.closed_eof++;
    if (!w->res.first_close_ns || now < w->res.first_close_ns)
        w->res.first_close_ns = now;
    if (!c->closed_by_server) {
        c->closed_by_server = 1;
        c->down_since = now;
    }
    conn_close_fd(c);
    outbuf_free(&c->out);
    c->recv_seq = c->next_seq;      /* an echo in flight is gone with it */
    w->n_open--;
    slot_again(w, c, false);
}

void reconnect_opened(struct worker *w, struct conn *c)
{
    queue_message(w, c, now_ns());
}

/* The first echo on a reopened connection: it is back. */
void reconnect_echoed(struct worker *w, struct conn *c, uint64_t now)
{
    if (!c->closed_by_server || c->back)
        return;
    c->back = 1;
    w->res.back++;
    result_add_latency(&w->res, now - c->down_since);
    if (now > w->res.last_back_ns)
        w->res.last_back_ns = now;
}
