/*
 * ws_watchdog.c - tells a plugin that blocks an event loop from a busy
 * machine, and does something about it.
 *
 * Timing plugin calls on the loop would blame a plugin for the time its
 * thread spent preempted on a loaded machine.  Instead the loop only
 * publishes which plugin call it is in and since when (loop->call), and
 * this thread looks at the loop thread while a call lasts longer than
 * WebSocketSlowPlugin: asleep in the kernel means the plugin blocks;
 * running and burning another limit's worth of CPU means it computes for
 * too long; runnable but not running is the machine, not the plugin.
 *
 * A plugin found blocking is marked slow (its messages go to the dispatch
 * threads from then on), and the loop is taken over by a new thread
 * (ws_async_loop.c), so that the call in progress holds only its own
 * connection, whatever it is: on_message or on_disconnect.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"

#include "ws_async_int.h"
#include "ws_thread.h"

APLOG_USE_MODULE(websocket);

#define WATCH_INTERVAL  apr_time_from_msec(10)

static pthread_t watchdog;
static int watchdog_running;
static volatile apr_uint32_t watchdog_stop;

/* The state letter and CPU ticks (utime + stime) of a thread. */
static int thread_state(pid_t tid, char *state, unsigned long *cpu)
{
    char path[64], buf[512];
    unsigned long utime, stime;
    const char *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    /* After "(comm)", which may hold spaces: state, then 10 fields to
     * utime and stime. */
    if (!(p = strrchr(buf, ')'))
        || sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                  state, &utime, &stime) != 3) {
        return 0;
    }
    *cpu = utime + stime;
    return 1;
}

static void stalled(ws_loop *loop, apr_time_t started, const char *why)
{
    loop_call *call = &loop->call;

    ws_plugin_mark_slow(call->ref, call->s, why);
    ws_loop_take_over(loop, started);
}

static void watch_loop(ws_loop *loop, apr_time_t now, long ticks_per_sec)
{
    loop_call *call = &loop->call;
    apr_time_t started = __atomic_load_n(&call->started, __ATOMIC_ACQUIRE);
    apr_interval_time_t limit = call->limit;
    pid_t tid = __atomic_load_n(&loop->tid, __ATOMIC_ACQUIRE);
    unsigned long cpu;
    char state;

    if (!started || started == CALL_TAKEN_OVER || !limit || !tid
        || now - started <= limit || !thread_state(tid, &state, &cpu)) {
        return;
    }
    /* The fields were read while the same call ran. */
    if (started != __atomic_load_n(&call->started, __ATOMIC_ACQUIRE)) {
        return;
    }
    if (state == 'S' || state == 'D') {
        stalled(loop, started, "blocked for longer than WebSocketSlowPlugin");
        return;
    }
    if (call->seen_call != started) {
        call->seen_call = started;
        call->seen_cpu = cpu;
    }
    else if ((apr_interval_time_t)(cpu - call->seen_cpu) * APR_USEC_PER_SEC
             / ticks_per_sec >= limit) {
        stalled(loop, started, "computed for longer than WebSocketSlowPlugin");
    }
}

static void *watchdog_main(void *unused)
{
    long ticks_per_sec = sysconf(_SC_CLK_TCK);

    (void)unused;
    if (ticks_per_sec <= 0) {
        ticks_per_sec = 100;
    }
    while (!__atomic_load_n(&watchdog_stop, __ATOMIC_ACQUIRE)) {
        apr_time_t now;
        int i;

        apr_sleep(WATCH_INTERVAL);
        now = apr_time_now();
        for (i = 0; i < ws_loop_count; i++) {
            watch_loop(&ws_loops[i], now, ticks_per_sec);
        }
    }
    return NULL;
}

apr_status_t ws_watchdog_start(void)
{
    watchdog_stop = 0;
    if (ws_thread_create(&watchdog, watchdog_main, NULL) != 0) {
        return APR_EGENERAL;
    }
    watchdog_running = 1;
    return APR_SUCCESS;
}

void ws_watchdog_stop(void)
{
    if (watchdog_running) {
        __atomic_store_n(&watchdog_stop, 1, __ATOMIC_RELEASE);
        pthread_join(watchdog, NULL);
        watchdog_running = 0;
    }
}
