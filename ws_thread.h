/*
 * ws_thread.h - the threads mod_websocket starts, and the signals of a
 * prefork child while a plugin may start its own (see ws_thread.c).
 */
#ifndef WS_THREAD_H
#define WS_THREAD_H

#include <pthread.h>
#include <signal.h>

/* pthread_create, the new thread blocking every signal it can. */
int ws_thread_create(pthread_t *thread, void *(*main_fn)(void *), void *arg);

/* Blocks the signals httpd's children act on, in the calling thread, and
 * keeps the mask it had in *saved. */
void ws_signals_hold(sigset_t *saved);

/* Puts back the mask ws_signals_hold saved: a signal that came meanwhile
 * is delivered now, to this thread. */
void ws_signals_release(const sigset_t *saved);

#endif
