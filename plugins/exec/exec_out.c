/*
 * exec_out.c - the program's stdout to messages, its stderr to the log.
 *
 * Text mode: each line is a text message, without its newline.  A line
 * longer than max_line (or than an eighth of WebSocketSendQueueLimit)
 * goes out as several messages cut at character boundaries; bytes that
 * are not UTF-8 become U+FFFD, since a text message must be UTF-8; what
 * the program writes last without a newline is a message of its own.
 * Binary mode: what each read of the pipe brings is one binary message.
 *
 * Back-pressure: after a send that leaves more than half of
 * WebSocketSendQueueLimit queued, stdout is not read until on_drain (the
 * module calls it under a quarter), so a program that writes faster than
 * the client reads blocks in write(2), and the connection holds at most
 * half the limit plus one message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "ws_log.h"

#define READ_SIZE     (64 * 1024)
#define READ_BUDGET   (256 * 1024)    /* per call: the other programs' turn */
#define ERR_LINE_MAX  2048

/* ---- UTF-8 ---- */

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n, i;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    }
    else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

static int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0, n;

    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if (!(n = utf8_sequence(s + i, len - i))) {
            return 0;
        }
        i += n;
    }
    return 1;
}

/* s with each byte that starts no valid sequence replaced by U+FFFD
 * (malloc'd, its length in *out_len), or NULL. */
static unsigned char *utf8_repair(const unsigned char *s, size_t len,
                                  size_t *out_len)
{
    unsigned char *out = malloc(len * 3 + 1);
    size_t i = 0, o = 0, n;

    if (!out) {
        return NULL;
    }
    while (i < len) {
        if ((n = utf8_sequence(s + i, len - i))) {
            memcpy(out + o, s + i, n);
            o += n, i += n;
        }
        else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3, i++;
        }
    }
    *out_len = o;
    return out;
}

/* A cut at most max bytes into s that splits no character. */
static size_t cut_at_character(const unsigned char *s, size_t max)
{
    size_t cut = max;

    while (cut > 0 && (s[cut] & 0xC0) == 0x80 && max - cut < 3) {
        cut--;
    }
    return cut ? cut : max;
}

/* ---- sending ---- */

/* One message to the client; 0 when the connection takes no more. */
static int send_message(exec_proc *p, const char *data, size_t len)
{
    const unsigned char *bytes = (const unsigned char *)data;
    unsigned char *repaired = NULL;
    size_t sent;

    if (!p->binary && !utf8_valid(bytes, len)) {
        repaired = utf8_repair(bytes, len, &len);
        if (!repaired) {
            return 0;
        }
        bytes = repaired;
    }
    sent = p->server->send(p->server, p->binary ? MESSAGE_TYPE_BINARY
                                                : MESSAGE_TYPE_TEXT,
                           bytes, len);
    free(repaired);
    return sent == len;
}

/* The next message in p->out: its length, and how much of the buffer it
 * uses (with its newline); 0 when it needs more bytes. */
static int next_message(exec_proc *p, size_t *len, size_t *used)
{
    const char *data = p->out.data + p->out.off;
    const char *nl;

    if (p->binary) {
        *len = *used = p->out.len;
        return 1;
    }
    nl = memchr(data, '\n', p->out.len < p->max_message + 1
                            ? p->out.len : p->max_message + 1);
    if (nl) {
        *len = (size_t)(nl - data);
        *used = *len + 1;
        return 1;
    }
    if (p->out.len > p->max_message) {
        *len = *used = cut_at_character((const unsigned char *)data,
                                        p->max_message);
        return 1;
    }
    if (p->fd[EXEC_FD_OUT] < 0) {
        *len = *used = p->out.len;    /* the last line, unfinished */
        return 1;
    }
    return 0;
}

void exec_out_flush(exec_proc *p)
{
    size_t len, used;

    if (!p->server) {
        /* Nobody to send to: the program's output is read and dropped,
         * so that it never blocks on a full pipe. */
        exec_buf_consume(&p->out, p->out.len);
        p->out_paused = 0;
        return;
    }
    while (p->out.len && !p->out_paused && next_message(p, &len, &used)) {
        if (!send_message(p, p->out.data + p->out.off, len)) {
            /* Closing (or over its queue limit, which closes it). */
            exec_buf_consume(&p->out, p->out.len);
            p->out_paused = 1;
            return;
        }
        exec_buf_consume(&p->out, used);
        if (p->server->queued(p->server) > p->high_water) {
            p->out_paused = 1;
        }
    }
}

int exec_out_done(const exec_proc *p)
{
    return p->fd[EXEC_FD_OUT] < 0 && !p->out.len;
}

/* The end of stdout: EOF, or, once the program is reaped, an empty pipe
 * (what a child it left behind writes later is not waited for). */
static void end_of_output(exec_proc *p)
{
    exec_proc_close_fd(p, EXEC_FD_OUT);
    exec_out_flush(p);
}

void exec_out_read(exec_proc *p)
{
    size_t budget = READ_BUDGET;

    while (p->fd[EXEC_FD_OUT] >= 0 && !p->out_paused && budget) {
        size_t want = p->binary ? p->max_message : READ_SIZE;
        ssize_t n;

        if (!exec_buf_reserve(&p->out, want)) {
            ap_log_error(APLOG_MARK, APLOG_ERR, ENOMEM, p->s, WSLOGNO(00081) "%s: no memory "
                         "for its output", p->label);
            end_of_output(p);
            return;
        }
        n = read(p->fd[EXEC_FD_OUT], p->out.data + p->out.off + p->out.len,
                 want);
        if (n > 0) {
            p->out.len += (size_t)n;
            budget = budget > (size_t)n ? budget - (size_t)n : 0;
            exec_out_flush(p);
            if ((size_t)n < want && !p->exited) {
                return;          /* the pipe is empty: no read for EAGAIN */
            }
        }
        else if (n < 0 && errno == EINTR) {
            continue;
        }
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                 && !p->exited) {
            return;
        }
        else {
            end_of_output(p);
        }
    }
}

/* ---- stderr ---- */

static void log_line(exec_proc *p, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r') {
        len--;
    }
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, p->s, WSLOGNO(00082) "%s: %.*s", p->label,
                 (int)len, line);
}

/* Each complete line to the log; a line longer than ERR_LINE_MAX in
 * pieces; at the end, what is left. */
static void log_lines(exec_proc *p, int at_end)
{
    for (;;) {
        const char *data = p->err.data + p->err.off;
        const char *nl = memchr(data, '\n', p->err.len);

        if (nl) {
            log_line(p, data, (size_t)(nl - data));
            exec_buf_consume(&p->err, (size_t)(nl - data) + 1);
        }
        else if (p->err.len && (at_end || p->err.len >= ERR_LINE_MAX)) {
            log_line(p, data, p->err.len);
            exec_buf_consume(&p->err, p->err.len);
        }
        else {
            return;
        }
    }
}

void exec_err_read(exec_proc *p)
{
    size_t budget = READ_BUDGET;

    while (p->fd[EXEC_FD_ERR] >= 0 && budget) {
        ssize_t n;

        if (!exec_buf_reserve(&p->err, ERR_LINE_MAX)) {
            exec_proc_close_fd(p, EXEC_FD_ERR);
            return;
        }
        /* log_lines leaves less than a line's worth. */
        n = read(p->fd[EXEC_FD_ERR], p->err.data + p->err.off + p->err.len,
                 ERR_LINE_MAX - p->err.len);
        if (n > 0) {
            p->err.len += (size_t)n;
            budget = budget > (size_t)n ? budget - (size_t)n : 0;
            log_lines(p, 0);
        }
        else if (n < 0 && errno == EINTR) {
            continue;
        }
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                 && !p->exited) {
            return;
        }
        else {
            log_lines(p, 1);
            exec_proc_close_fd(p, EXEC_FD_ERR);
        }
    }
}
