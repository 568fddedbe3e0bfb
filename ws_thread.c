/*
 * ws_thread.c - threads and signals.
 *
 * A signal sent to a process goes to any of its threads that does not
 * block it.  httpd's children act on SIGTERM, SIGHUP, SIGUSR1 and
 * SIGWINCH in a handler that expects to run on the thread that serves
 * connections (prefork's just_die destroys the child's pool and exits
 * right there).  Run on a thread of ours or of a plugin, it destroys the
 * pools under the thread that really serves, or races a second handler:
 * a child crashed so at stop, with dumb-increment's ticker thread in the
 * handler.  So every thread we start blocks all signals, and a prefork
 * child holds the stop signals back while it runs plugin code, so that
 * the threads a plugin starts inherit the block; the sync engine lets
 * them through while it waits on the network (ws_sync.c).
 */
#include <signal.h>

#include "ws_thread.h"

int ws_thread_create(pthread_t *thread, void *(*main_fn)(void *), void *arg)
{
    sigset_t all, saved;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    rc = pthread_create(thread, NULL, main_fn, arg);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    return rc;
}

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGWINCH);
    sigaddset(set, SIGINT);
}

void ws_signals_hold(sigset_t *saved)
{
    sigset_t set;

    stop_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, saved);
}

void ws_signals_release(const sigset_t *saved)
{
    pthread_sigmask(SIG_SETMASK, saved, NULL);
}
