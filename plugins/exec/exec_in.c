/*
 * exec_in.c - the client's messages to the program's stdin.
 *
 * A message is written at once from on_message when the pipe takes it
 * (the common case: no copy, no thread hop).  What the pipe does not take
 * waits in proc->in, the client is paused (pause_input: the module stops
 * reading its socket, TCP slows the client down), and the poller writes
 * the rest when the pipe drains, then resumes the client.  So the memory
 * held for a program that does not read is one message and what came
 * with it in the same read, never more.
 *
 * Messages that come before the program is started (the poller starts it
 * just after the 101) wait in proc->in the same way.
 *
 * Text mode adds a newline after each message.  A message that contains
 * newlines is written as it is: the program reads several lines.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "exec.h"
#include "ws_log.h"

static void pause_client(exec_proc *p, int paused)
{
    if (p->input_paused != paused && p->server) {
        p->server->pause_input(p->server, paused);
        p->input_paused = paused;
    }
}

void exec_in_close(exec_proc *p)
{
    exec_proc_close_fd(p, EXEC_FD_IN);
    exec_buf_free(&p->in);
    pause_client(p, 0);
}

/* The program will never read again (it closed stdin, or ended). */
static void stdin_gone(exec_proc *p, int err)
{
    ap_log_error(APLOG_MARK, APLOG_DEBUG, err, p->s, WSLOGNO(00079) "%s: stdin closed by the "
                 "program; the client's messages are dropped from now on",
                 p->label);
    exec_in_close(p);
}

/* Bytes written, or -1 when the program is gone. */
static ssize_t write_some(exec_proc *p, const struct iovec *iov, int n)
{
    ssize_t done;

    do {
        done = writev(p->fd[EXEC_FD_IN], iov, n);
    } while (done < 0 && errno == EINTR);
    if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    if (done < 0) {
        stdin_gone(p, errno);
    }
    return done;
}

/* Keeps what the pipe did not take of the message (and its newline). */
static int keep_rest(exec_proc *p, const unsigned char *data, size_t len,
                     size_t written, int newline)
{
    if (written < len && !exec_buf_append(&p->in, data + written, len - written)) {
        return 0;
    }
    return !newline || exec_buf_append(&p->in, "\n", 1);
}

void exec_in_message(exec_proc *p, const unsigned char *data, size_t len)
{
    int newline = !p->binary;
    struct iovec iov[2];
    ssize_t written = 0;

    if (p->fd[EXEC_FD_IN] < 0 && (p->pid || p->exited)) {
        return;                   /* stdin closed: dropped */
    }
    /* Before the program started, the message waits like one the pipe
     * did not take. */
    if (!p->in.len && p->fd[EXEC_FD_IN] >= 0) {
        iov[0].iov_base = (void *)data;
        iov[0].iov_len = len;
        iov[1].iov_base = (void *)"\n";
        iov[1].iov_len = 1;
        written = write_some(p, iov, newline ? 2 : 1);
        if (written < 0 || (size_t)written == len + newline) {
            return;
        }
    }
    if ((size_t)written >= len) {
        /* Only the newline is left. */
        written = (ssize_t)len;
    }
    if (!keep_rest(p, data, len, (size_t)written, newline)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, ENOMEM, p->s, WSLOGNO(00080) "%s: no memory for "
                     "a message to the program; closing its stdin", p->label);
        exec_in_close(p);
        return;
    }
    pause_client(p, 1);
    exec_poll_watch(p, EXEC_FD_IN, EPOLLOUT);
}

void exec_in_flush(exec_proc *p)
{
    while (p->in.len && p->fd[EXEC_FD_IN] >= 0) {
        struct iovec iov;
        ssize_t written;

        iov.iov_base = p->in.data + p->in.off;
        iov.iov_len = p->in.len;
        written = write_some(p, &iov, 1);
        if (written <= 0) {
            return;
        }
        exec_buf_consume(&p->in, (size_t)written);
    }
    if (!p->in.len) {
        exec_poll_watch(p, EXEC_FD_IN, 0);
        pause_client(p, 0);
    }
}
