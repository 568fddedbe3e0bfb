/*
 * exec_proc.c - one program: started with posix_spawn (its own session
 * and process group, default signal dispositions, an empty signal mask,
 * pipes on 0, 1 and 2 and no other descriptor of httpd's: every one above
 * 2 is closed in the child, whatever its close-on-exec flag), watched
 * through a pidfd so that it is reaped by pid and httpd's own children are
 * never waited for, and ended by signals to its process group.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apr_strings.h"

#include "exec.h"
#include "ws_log.h"

/* Without pidfds (a kernel before 5.3, or a seccomp filter), a program's
 * end is looked for this often. */
#define REAP_POLL_INTERVAL  apr_time_from_msec(200)

/* ---- buffers ---- */

int exec_buf_reserve(exec_buf *b, size_t more)
{
    size_t need;
    char *data;

    if (b->off && b->off + b->len + more > b->cap) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    need = b->len + more;
    if (need <= b->cap) {
        return 1;
    }
    if (need < 2 * b->cap) {
        need = 2 * b->cap;
    }
    data = realloc(b->data, need);
    if (!data) {
        return 0;
    }
    b->data = data;
    b->cap = need;
    return 1;
}

int exec_buf_append(exec_buf *b, const void *data, size_t len)
{
    if (!exec_buf_reserve(b, len)) {
        return 0;
    }
    memcpy(b->data + b->off + b->len, data, len);
    b->len += len;
    return 1;
}

/* Consumed bytes are dropped; a large buffer left empty is freed, so
 * that a quiet program does not keep the memory of its busiest moment. */
void exec_buf_consume(exec_buf *b, size_t len)
{
    b->off += len;
    b->len -= len;
    if (!b->len) {
        b->off = 0;
        if (b->cap > 64 * 1024) {
            exec_buf_free(b);
        }
    }
}

void exec_buf_free(exec_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- life ---- */

exec_proc *exec_proc_create(server_rec *s, const exec_conf *conf,
                            const WebSocketServer *server)
{
    exec_proc *p = calloc(1, sizeof(*p));
    int i;

    if (!p) {
        return NULL;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    p->server = server;
    p->s = s;
    p->binary = conf->binary;
    p->stop_grace = conf->stop_grace;
    p->kill_grace = conf->kill_grace;
    for (i = 0; i < EXEC_FD_COUNT; i++) {
        p->fd[i] = -1;
        p->tag[i].proc = p;
        p->tag[i].which = i;
    }
    snprintf(p->label, sizeof(p->label), "exec %s: %s", conf->location,
             conf->program);
    return p;
}

static void close_pair(int fds[2])
{
    if (fds[0] >= 0) {
        close(fds[0]);
    }
    if (fds[1] >= 0) {
        close(fds[1]);
    }
}

/* The child's side of the spawn: its stdio, no other descriptor, its
 * program's directory (as for CGI), its own session, clean signals. */
static int spawn_child(pid_t *pid, const exec_conf *conf, char **envp,
                       int in, int out, int err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    char *dir = strdup(conf->program), *slash;
    int rc;

    if (!dir) {
        return ENOMEM;
    }
    slash = strrchr(dir, '/');
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
    }
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    rc = posix_spawn_file_actions_adddup2(&fa, in, 0);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(&fa, out, 1);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(&fa, err, 2);
    rc = rc ? rc : posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    rc = rc ? rc : (slash ? posix_spawn_file_actions_addchdir_np(&fa, dir) : 0);
    rc = rc ? rc : posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID
                                            | POSIX_SPAWN_SETSIGMASK
                                            | POSIX_SPAWN_SETSIGDEF);
    rc = rc ? rc : posix_spawnattr_setsigmask(&attr, &none);
    rc = rc ? rc : posix_spawnattr_setsigdefault(&attr, &all);
    rc = rc ? rc : posix_spawn(pid, conf->program, &fa, &attr,
                               (char *const *)conf->argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    free(dir);
    return rc;
}

/* pidfds are close-on-exec.  WS_EXEC_NO_PIDFD in httpd's environment
 * makes the plugin do without them, as on a kernel before 5.3 (the tests
 * use it to run the fallback). */
static int pidfds_usable(void)
{
    const char *off = getenv("WS_EXEC_NO_PIDFD");

    return !off || !*off || !strcmp(off, "0");
}

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

int exec_proc_spawn(exec_proc *p, const exec_conf *conf, char **envp)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
    int rc;

    /* Close-on-exec from the start: no other program started meanwhile
     * by another thread may inherit them. */
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        rc = errno;
        close_pair(in), close_pair(out), close_pair(err);
        return rc;
    }
    rc = spawn_child(&p->pid, conf, envp, in[0], out[1], err[1]);
    close(in[0]), close(out[1]), close(err[1]);
    if (rc != 0 || !set_nonblocking(in[1]) || !set_nonblocking(out[0])
        || !set_nonblocking(err[0])) {
        close(in[1]), close(out[0]), close(err[0]);
        if (rc == 0) {
            /* Started, but unusable: it must not run unwatched. */
            rc = errno ? errno : EIO;
            kill(-p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
        }
        p->pid = 0;
        return rc;
    }
    p->fd[EXEC_FD_IN] = in[1];
    p->fd[EXEC_FD_OUT] = out[0];
    p->fd[EXEC_FD_ERR] = err[0];
    /* Its pid stays valid until we reap it (nobody in httpd waits for
     * any child), so the pidfd names this very process. */
    p->fd[EXEC_FD_PID] = pidfds_usable() ? pidfd_open(p->pid, 0) : -1;
    if (p->fd[EXEC_FD_PID] < 0) {
        p->reap_at = apr_time_now() + REAP_POLL_INTERVAL;
    }
    snprintf(p->label, sizeof(p->label), "exec %s: %s[%ld]", conf->location,
             conf->program, (long)p->pid);
    return 0;
}

/* Out of the poller's set first: a copy of the descriptor that a program
 * being started holds for a moment would keep it there. */
void exec_proc_close_fd(exec_proc *p, int which)
{
    if (p->fd[which] >= 0) {
        exec_poll_watch(p, which, 0);
        close(p->fd[which]);
        p->fd[which] = -1;
    }
}

static void give_place(exec_proc *p)
{
    if (p->limit) {
        exec_limit_give(p->limit);
        p->limit = NULL;
    }
}

void exec_proc_not_started(exec_proc *p)
{
    p->exited = 1;
    p->wait_status = EXEC_NOT_STARTED;
    give_place(p);
}

/* The program's end, from its pidfd (or, without one, from waitpid by
 * pid): a no-op while it runs. */
void exec_proc_reap(exec_proc *p)
{
    siginfo_t info;
    int rc;

    if (p->exited || !p->pid) {
        return;
    }
    memset(&info, 0, sizeof(info));
    if (p->fd[EXEC_FD_PID] >= 0) {
        rc = waitid(P_PIDFD, (id_t)p->fd[EXEC_FD_PID], &info, WEXITED | WNOHANG);
    }
    else {
        rc = waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG);
    }
    if (rc == 0 && info.si_pid == 0) {
        p->reap_at = apr_time_now() + REAP_POLL_INTERVAL;
        return;                                 /* still running */
    }
    if (rc != 0) {
        /* SIGCHLD ignored by someone: the kernel reaped it, and its
         * status is lost. */
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, p->s, WSLOGNO(00087) "%s: ended, "
                     "exit status unknown", p->label);
        p->wait_status = EXEC_UNKNOWN;
    }
    else if (info.si_code == CLD_EXITED) {
        p->wait_status = info.si_status;
    }
    else {
        p->wait_status = 256 + info.si_status;  /* killed by this signal */
    }
    p->exited = 1;
    exec_proc_close_fd(p, EXEC_FD_PID);
    give_place(p);
}

const char *exec_proc_describe_end(const exec_proc *p, char *buf, size_t size)
{
    if (p->wait_status == EXEC_NOT_STARTED) {
        snprintf(buf, size, "could not start");
    }
    else if (p->wait_status < 0) {
        snprintf(buf, size, "ended (status unknown)");
    }
    else if (p->wait_status >= 256) {
        snprintf(buf, size, "killed by signal %d", p->wait_status - 256);
    }
    else {
        snprintf(buf, size, "exited with status %d", p->wait_status);
    }
    return buf;
}

/* Signals go to the program's process group, so that a script's own
 * children get them too.  While the program is not reaped its pid, and
 * so its group's id, cannot be anybody else's. */
static void signal_group(exec_proc *p, int sig)
{
    if (kill(-p->pid, sig) != 0 && errno == ESRCH) {
        kill(p->pid, sig);
    }
}

void exec_proc_signal_due(exec_proc *p, apr_time_t now)
{
    if (p->exited || !p->pid) {
        return;
    }
    if (p->term_at && !p->sent_term && now >= p->term_at) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, p->s, WSLOGNO(00088) "%s: still running %"
                     APR_TIME_T_FMT " ms after its stdin was closed: SIGTERM",
                     p->label, apr_time_as_msec(p->stop_grace));
        signal_group(p, SIGTERM);
        /* A stopped program would not act on it. */
        signal_group(p, SIGCONT);
        p->sent_term = 1;
        p->kill_at = now + p->kill_grace;
    }
    if (p->sent_term && !p->sent_kill && now >= p->kill_at) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, p->s, WSLOGNO(00089) "%s: still running %"
                     APR_TIME_T_FMT " ms after SIGTERM: SIGKILL", p->label,
                     apr_time_as_msec(p->kill_grace));
        signal_group(p, SIGKILL);
        p->sent_kill = 1;
    }
}

apr_time_t exec_proc_next_deadline(const exec_proc *p)
{
    apr_time_t next = 0;

    if (p->exited || !p->pid) {
        return 0;
    }
    if (p->term_at && !p->sent_term) {
        next = p->term_at;
    }
    else if (p->sent_term && !p->sent_kill) {
        next = p->kill_at;
    }
    if (p->fd[EXEC_FD_PID] < 0 && (!next || p->reap_at < next)) {
        next = p->reap_at;
    }
    return next;
}

void exec_proc_free(exec_proc *p)
{
    int i;

    for (i = 0; i < EXEC_FD_COUNT; i++) {
        exec_proc_close_fd(p, i);
    }
    give_place(p);
    exec_buf_free(&p->in);
    exec_buf_free(&p->out);
    exec_buf_free(&p->err);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
