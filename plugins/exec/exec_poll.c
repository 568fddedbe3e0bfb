/*
 * exec_poll.c - the poller: one thread per httpd child, started with the
 * child's first program, that polls every program's stdout, stderr,
 * stdin (when input waits) and pidfd with one epoll, runs the grace
 * timers, reaps, and frees.  No thread per connection: the module's event
 * loops poll the sockets, this thread the pipes.
 *
 * Others reach it through kicks: a program added, a drain, a
 * disconnect, input waiting for stdin.  A kick puts the program on a list
 * and wakes the thread through an eventfd; the thread then looks at the
 * program again (reconcile), which is the one place that decides what to
 * watch, what to send and when the program is done.
 *
 * The end: when the child exits (atexit: the event MPM's children, and
 * prefork's, exit through exit()) or the plugin's last instance is
 * destroyed, the thread lets go of every connection, ends every program
 * as at a connection's end (stdin closed, SIGTERM after stop_grace,
 * SIGKILL after kill_grace), reaps them all, and only then returns.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "apr_strings.h"

#include "exec.h"
#include "ws_log.h"

#define MAX_EVENTS  64

static pthread_mutex_t poll_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t poller_pid;          /* the process whose thread runs, or 0 */
static pthread_t poller;
static int epfd = -1, wakefd = -1;
static int stopping;              /* atomic: let go of everything, end */
static pid_t atexit_pid;

static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;
static exec_proc *kicks;

/* The poller thread's own. */
static exec_proc *procs;          /* every program it knows */
static exec_proc *dead;           /* to free at the end of the round */
static exec_tag wake_tag;

/* ---- what to watch ---- */

/* events 0: not watched at all (a read end kept registered without
 * EPOLLIN would report its hang-up at every round). */
void exec_poll_watch(exec_proc *p, int which, unsigned events)
{
    struct epoll_event ev;
    int op;

    if (p->fd[which] < 0 || p->watched[which] == events) {
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.ptr = &p->tag[which];
    op = !events ? EPOLL_CTL_DEL
       : p->watched[which] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epfd, op, p->fd[which], &ev) == 0 || op == EPOLL_CTL_DEL) {
        p->watched[which] = events;
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, p->s, WSLOGNO(00083) "%s: cannot poll "
                     "its pipes", p->label);
    }
}

void exec_poll_kick(exec_proc *p)
{
    int wake = 0;

    pthread_mutex_lock(&kick_lock);
    if (!p->kicked) {
        p->kicked = 1;
        p->kick_next = kicks;
        wake = !kicks;
        kicks = p;
    }
    pthread_mutex_unlock(&kick_lock);
    if (wake) {
        uint64_t one = 1;

        if (write(wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
            ap_log_error(APLOG_MARK, APLOG_ERR, errno, p->s, WSLOGNO(00084) "%s: cannot "
                         "wake the poller", p->label);
        }
    }
}

/* ---- one program's state, looked at again ---- */

static void tell_end(exec_proc *p)
{
    char how[64];
    int ok = p->wait_status == 0;

    exec_proc_describe_end(p, how, sizeof(how));
    ap_log_error(APLOG_MARK, ok ? APLOG_DEBUG : APLOG_INFO, 0, p->s, WSLOGNO(00085) "%s: %s",
                 p->label, how);
    if (p->server && !p->close_sent) {
        char reason[80];

        apr_snprintf(reason, sizeof(reason), "program %s", how);
        p->server->close_with(p->server, ok ? 1000 : 1011, ok ? NULL : reason);
    }
    p->close_sent = 1;
}

/* The connection is gone: stdin closed now, SIGTERM after stop_grace. */
static void let_go(exec_proc *p, apr_time_t now)
{
    exec_in_close(p);
    if (!p->exited && !p->term_at) {
        p->term_at = now + p->stop_grace;
    }
}

/* Starts the program the connection asked for, unless it is gone. */
static void start(exec_proc *p)
{
    int rc;

    if (p->detached) {
        exec_proc_not_started(p);
        p->close_sent = 1;         /* nothing to tell anybody */
        return;
    }
    rc = exec_proc_spawn(p, p->start_conf, p->start_env);
    p->start_conf = NULL;
    p->start_env = NULL;
    if (rc != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rc, p->s, WSLOGNO(00086) "%s: cannot start it",
                     p->label);
        exec_proc_not_started(p);
        exec_in_close(p);
        p->server->close_with(p->server, 1011, "cannot start the program");
        p->close_sent = 1;
    }
}

/* With p->lock held; returns 1 when p can be freed. */
static int reconcile(exec_proc *p, apr_time_t now)
{
    if (!p->pid && !p->exited) {
        start(p);
    }
    if (p->detached) {
        let_go(p, now);
    }
    exec_proc_signal_due(p, now);
    exec_out_flush(p);
    if (p->exited) {
        /* Its output is in the pipes by now: read to the end (or to
         * what a child it left behind has not written yet). */
        exec_out_read(p);
        exec_err_read(p);
        exec_in_close(p);
    }
    exec_poll_watch(p, EXEC_FD_OUT, p->out_paused ? 0 : EPOLLIN);
    exec_poll_watch(p, EXEC_FD_ERR, EPOLLIN);
    exec_poll_watch(p, EXEC_FD_IN, p->in.len ? EPOLLOUT : 0);
    exec_poll_watch(p, EXEC_FD_PID, EPOLLIN);
    if (p->exited && exec_out_done(p) && !p->close_sent) {
        tell_end(p);
    }
    return p->detached && p->exited && exec_out_done(p)
           && p->fd[EXEC_FD_ERR] < 0 && p->fd[EXEC_FD_IN] < 0;
}

static void link_proc(exec_proc *p)
{
    p->listed = EXEC_LISTED;
    p->prev = NULL;
    p->next = procs;
    if (procs) {
        procs->prev = p;
    }
    procs = p;
}

static void unlink_proc(exec_proc *p)
{
    if (p->prev) {
        p->prev->next = p->next;
    }
    else {
        procs = p->next;
    }
    if (p->next) {
        p->next->prev = p->prev;
    }
}

/* What one of p's descriptors said (which: EXEC_FD_*). */
static void serve_fd(exec_proc *p, int which)
{
    if (p->fd[which] < 0 && which != EXEC_FD_PID) {
        return;                    /* closed earlier this round */
    }
    switch (which) {
    case EXEC_FD_OUT: exec_out_read(p); break;
    case EXEC_FD_ERR: exec_err_read(p); break;
    case EXEC_FD_IN:  exec_in_flush(p); break;
    case EXEC_FD_PID: exec_proc_reap(p); break;
    }
}

/* Looks at p again, after what its descriptor which said (-1: none); a
 * program that is over leaves the list, to be freed once the round's
 * events (which may name it) are handled. */
static void revisit(exec_proc *p, int which, apr_time_t now)
{
    int over;

    pthread_mutex_lock(&p->lock);
    if (which >= 0) {
        serve_fd(p, which);
    }
    if (__atomic_load_n(&stopping, __ATOMIC_ACQUIRE) && !p->detached) {
        /* The child is exiting: its connections are over. */
        p->server = NULL;
        p->detached = 1;
    }
    over = reconcile(p, now);
    pthread_mutex_unlock(&p->lock);
    if (over && p->listed == EXEC_LISTED) {
        unlink_proc(p);
        p->listed = EXEC_DEAD;
        p->dead_next = dead;
        dead = p;
    }
}

static void run_kicks(apr_time_t now)
{
    exec_proc *list, *p, *next;
    uint64_t count;

    if (read(wakefd, &count, sizeof(count)) < 0) {
        /* EAGAIN: woken already this round. */
    }
    pthread_mutex_lock(&kick_lock);
    list = kicks;
    kicks = NULL;
    for (p = list; p; p = p->kick_next) {
        p->kicked = 0;
    }
    pthread_mutex_unlock(&kick_lock);
    for (p = list; p; p = next) {
        next = p->kick_next;
        if (p->listed == EXEC_NEW) {
            link_proc(p);
        }
        if (p->listed == EXEC_LISTED) {
            revisit(p, -1, now);
        }
    }
}

/* Timers, and reaping without pidfds: every program with a deadline. */
static apr_time_t run_timers(apr_time_t now)
{
    exec_proc *p, *next;
    apr_time_t first = 0;

    for (p = procs; p; p = next) {
        apr_time_t at = exec_proc_next_deadline(p);

        next = p->next;
        if (at && at <= now) {
            /* Without a pidfd, the timer is when to look for its end. */
            revisit(p, p->fd[EXEC_FD_PID] < 0 ? EXEC_FD_PID : -1, now);
            at = exec_proc_next_deadline(p);
        }
        if (at && (!first || at < first)) {
            first = at;
        }
    }
    return first;
}

/* A program still on the kick list waits for the next round (nothing
 * kicks a program after its disconnect, so this is only prudence). */
static void free_dead(void)
{
    exec_proc *p = dead, *next, *keep = NULL;

    dead = NULL;
    for (; p; p = next) {
        int kicked;

        next = p->dead_next;
        pthread_mutex_lock(&kick_lock);
        kicked = p->kicked;
        pthread_mutex_unlock(&kick_lock);
        if (kicked) {
            p->dead_next = keep;
            keep = p;
        }
        else {
            exec_proc_free(p);
        }
    }
    dead = keep;
}

static int wait_ms(apr_time_t first, apr_time_t now)
{
    apr_interval_time_t left;

    if (!first) {
        return -1;
    }
    left = first > now ? first - now : 0;
    return (int)((left + 999) / 1000);
}

static void *poll_main(void *unused)
{
    struct epoll_event events[MAX_EVENTS];
    apr_time_t first = 0;

    (void)unused;
    for (;;) {
        int i, n = epoll_wait(epfd, events, MAX_EVENTS,
                              wait_ms(first, apr_time_now()));
        apr_time_t now = apr_time_now();

        for (i = 0; i < n; i++) {
            exec_tag *tag = events[i].data.ptr;

            if (tag != &wake_tag && tag->proc->listed != EXEC_DEAD) {
                revisit(tag->proc, tag->which, now);
            }
        }
        run_kicks(now);
        if (__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
            exec_proc *p, *next;

            for (p = procs; p; p = next) {
                next = p->next;
                revisit(p, -1, now);
            }
        }
        first = run_timers(now);
        free_dead();
        if (!procs && !dead && __atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
            return NULL;
        }
    }
}

/* ---- start and end ---- */

static void stop_poller(void)
{
    uint64_t one = 1;

    pthread_mutex_lock(&poll_lock);
    if (poller_pid != getpid()) {
        pthread_mutex_unlock(&poll_lock);
        return;
    }
    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    if (write(wakefd, &one, sizeof(one)) < 0) {
        /* Full: it is awake anyway. */
    }
    pthread_join(poller, NULL);
    close(epfd);
    close(wakefd);
    epfd = wakefd = -1;
    poller_pid = 0;
    __atomic_store_n(&stopping, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&poll_lock);
}

static void at_exit(void)
{
    stop_poller();
}

void exec_poll_shutdown(void)
{
    stop_poller();
}

/* The poller takes no signal: httpd's own threads handle them. */
static int start_thread(void)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&poller, NULL, poll_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* With poll_lock held: 0, or an errno. */
static int start_poller(void)
{
    struct epoll_event ev;
    int rc;

    if (poller_pid == getpid()) {
        return 0;
    }
    /* A fork copied a parent's state (httpd -X serves in the parent):
     * its descriptors are not ours to keep. */
    procs = dead = NULL;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &wake_tag;
    if (epfd < 0 || wakefd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev)) {
        rc = errno;
    }
    else {
        rc = start_thread();
    }
    if (rc) {
        if (epfd >= 0) {
            close(epfd);
        }
        if (wakefd >= 0) {
            close(wakefd);
        }
        epfd = wakefd = -1;
        return rc;
    }
    poller_pid = getpid();
    if (atexit_pid != getpid()) {
        atexit_pid = getpid();
        atexit(at_exit);
    }
    return 0;
}

int exec_poll_add(exec_proc *p)
{
    int rc;

    pthread_mutex_lock(&poll_lock);
    rc = start_poller();
    pthread_mutex_unlock(&poll_lock);
    if (!rc) {
        exec_poll_kick(p);
    }
    return rc;
}
