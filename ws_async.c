/*
 * ws_async.c - the asynchronous engine, for the event MPM: an upgraded
 * connection leaves its worker thread and is driven by a few event-loop
 * threads that the module starts in each child.
 *
 * How a connection gets here (../shared/design/apache-async.md has the
 * httpd source references):
 *   1. the handler sends the 101 and returns SUSPENDED; the MPM marks the
 *      connection suspended and forgets it: no timeout, no poll;
 *   2. the MPM runs the suspend_connection hook on the worker thread; we
 *      put the connection in a loop's inbox there (not in the handler,
 *      where the MPM could still decide to close it);
 *   3. the loop polls the socket itself and does all I/O through the
 *      connection's filters, non-blocking, so mod_ssl keeps working;
 *   4. at the end the loop logs the request (access log with the real
 *      duration), closes as Apache would (lingering close), and destroys
 *      the connection's pool, which is what tells the MPM it is gone.
 *
 * Ownership: after the hand-over only the loop thread touches the
 * connection, its pools and its bucket allocator.  Other threads (plugin
 * senders) touch the ws_conn queue under its lock, then put the
 * connection on the loop's dirty list and wake the loop.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_request.h"
#include "util_filter.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "apr_atomic.h"
#include "apr_optional.h"
#include "apr_poll.h"
#include "apr_network_io.h"
#include <sys/uio.h>
#include "apr_thread_proc.h"

#include "ws_conn.h"
#include "ws_async.h"

APLOG_USE_MODULE(websocket);
extern module AP_MODULE_DECLARE_DATA websocket_module;

/* Large enough that a 64 KB message arrives whole in one read and is
 * unmasked in place instead of being assembled (one buffer per loop). */
#define LOOP_READ_SIZE    (256 * 1024)
/* Never hand the core output filter more than this at once: above its
 * FlushMaxThreshold (64K by default) it would block until written. */
#define LOOP_WRITE_CHUNK  (32 * 1024)
/* Timers (close deadlines, idle timeouts, lingering) are looked at this
 * often at least. */
#define LOOP_TICK         apr_time_from_msec(250)
/* Apache's lingering close: read what the client still sends for at most
 * this long after our FIN, so that our last bytes are not lost to a RST. */
#define LINGER_TIME       apr_time_from_sec(2)
/* The worker that handed a connection over still writes two fields of it
 * after the hook returns; its pool is never destroyed sooner than this
 * after the hand-over. */
#define HANDOVER_GRACE    apr_time_from_msec(200)
/* On a hard stop, how long the 1001 Close may take to go out. */
#define HARD_STOP_GRACE   apr_time_from_sec(1)

typedef enum { AC_WAITING, AC_OPEN, AC_LINGER, AC_DEAD } ac_phase;

typedef struct ws_loop ws_loop;

/* A message for a slow plugin, copied off the event loop. */
typedef struct dispatch_job {
    struct dispatch_job *next;
    int type;
    size_t len;
    uint8_t data[1];                 /* len bytes and a NUL */
} dispatch_job;

typedef struct async_conn {
    ws_conn *wc;
    conn_rec *c;
    ws_loop *loop;
    ac_phase phase;
    apr_pollfd_t pfd;
    apr_int16_t polled;              /* events registered, 0 if none */
    apr_bucket_brigade *in;
    apr_bucket_brigade *held;        /* taken from the queue, not yet passed */
    apr_bucket_brigade *out;
    /* Direct mode: the filter chain is the core's alone, so the loop reads
     * and writes the socket itself, as the core filters would but without
     * their 8 KB reads, extra empty reads and buckets. */
    int direct;
    apr_socket_t *sock;
    ws_out_frame *sending;           /* taken from the queue, being written */
    apr_size_t sent;                 /* bytes of the first one written */
    apr_time_t handed_over;
    apr_time_t linger_until;
    int on_dirty;                    /* under loop->lock */
    struct async_conn *next_inbox;   /* under loop->lock */
    struct async_conn *next_dirty;   /* under loop->lock */
    struct async_conn *prev, *next;  /* loop->conns, loop thread only */
    dispatch_job *jobs, *jobs_tail;  /* under dispatch_lock */
    int jobs_running;                /* under dispatch_lock: queued for, or
                                        owned by, a dispatch thread */
    struct async_conn *next_run;     /* under dispatch_lock: run queue */
    int ever_dispatched;             /* loop thread: jobs were ever given */
} async_conn;

/*
 * What a loop is running a plugin for, published for the watchdog:
 * 'started' is written last when a call begins and cleared when it ends,
 * so a reader that sees the same 'started' before and after reading the
 * rest has a consistent view.  Only config memory is referenced: the
 * connection itself may be gone by the time the watchdog looks.
 */
typedef struct plugin_call {
    ws_plugin_ref *ref;
    apr_interval_time_t limit;       /* WebSocketSlowPlugin, 0 = Off */
    server_rec *s;
    apr_time_t started;              /* 0 when no call runs */
} plugin_call;

struct ws_loop {
    int index;
    pid_t tid;                       /* for /proc/self/task/<tid>/stat */
    plugin_call call;
    apr_time_t watched_call;         /* watchdog: call seen over the limit */
    unsigned long watched_cpu;       /* watchdog: CPU ticks then */
    apr_thread_t *thread;
    apr_pollset_t *pollset;
    apr_thread_mutex_t *lock;
    async_conn *inbox;               /* under lock */
    async_conn *dirty;               /* under lock */
    async_conn *conns;               /* loop thread only */
    async_conn *graveyard;           /* loop thread only, via next */
    volatile apr_uint32_t stop;      /* 0, STOP_GRACEFUL, STOP_NOW */
    int stop_announced;
    async_conn *servicing;           /* progress() follows for this one */
    apr_time_t hard_stop_at;
    apr_time_t next_tick;
    uint8_t *scratch;
};

#define STOP_GRACEFUL 1
#define STOP_NOW      2

static ws_loop *loops;
static int loop_count;
static apr_thread_t *watchdog;
static volatile apr_uint32_t watchdog_stop;
/* mod_logio's byte counters (%I, %O), for what direct mode moves. */
static APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_in) *logio_add_bytes_in;
static APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_out) *logio_add_bytes_out;
/* The dispatch threads: a queue of connections with messages for a slow
 * plugin, and threads started when no idle one is left.  (apr-util's
 * thread pool counts a thread as idle until it has taken a task, so a
 * second task could wait behind a first that sleeps: here a pusher
 * claims an idle thread when it signals one.) */
static pthread_mutex_t dispatch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dispatch_cond = PTHREAD_COND_INITIALIZER;
static async_conn *run_head, *run_tail;   /* under dispatch_lock */
static int dispatch_running, dispatch_idle, dispatch_max;
static int dispatch_ready;                /* the lock exists */
static apr_uint32_t next_loop;
static __thread ws_loop *current_loop;

/* ---- polling ---- */

static apr_status_t set_poll_events(async_conn *ac, apr_int16_t want)
{
    ws_loop *loop = ac->loop;
    apr_status_t rv = APR_SUCCESS;

    if (want == ac->polled) {
        return APR_SUCCESS;
    }
    if (ac->polled) {
        apr_pollset_remove(loop->pollset, &ac->pfd);
    }
    ac->polled = 0;
    if (want) {
        ac->pfd.reqevents = want;
        rv = apr_pollset_add(loop->pollset, &ac->pfd);
        if (rv == APR_SUCCESS) {
            ac->polled = want;
        }
    }
    return rv;
}

/* ---- writing ---- */

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

static void take_queued_frames(async_conn *ac)
{
    ws_out_frame *f = ws_conn_take_output(ac->wc);

    while (f) {
        ws_out_frame *next = f->next;

        APR_BRIGADE_INSERT_TAIL(ac->held, ws_out_frame_bucket(f, ac->c->bucket_alloc));
        ac->wc->msgs_out++;
        f = next;
    }
}

/* Moves at most LOOP_WRITE_CHUNK bytes from held to out. */
static apr_status_t next_write_chunk(async_conn *ac)
{
    apr_bucket *cut;
    apr_status_t rv = apr_brigade_partition(ac->held, LOOP_WRITE_CHUNK, &cut);

    if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
        return rv;
    }
    while (APR_BRIGADE_FIRST(ac->held) != cut
           && !APR_BRIGADE_EMPTY(ac->held)) {
        apr_bucket *b = APR_BRIGADE_FIRST(ac->held);

        APR_BUCKET_REMOVE(b);
        APR_BRIGADE_INSERT_TAIL(ac->out, b);
    }
    return APR_SUCCESS;
}

#define DIRECT_IOVECS 64

/* Drops the first 'written' bytes of the frames being sent. */
static void advance_sending(async_conn *ac, apr_size_t written)
{
    while (ac->sending && written >= ac->sending->len - ac->sent) {
        ws_out_frame *done = ac->sending;

        written -= done->len - ac->sent;
        ac->sending = done->next;
        ac->sent = 0;
        free(done);
    }
    ac->sent += written;
}

/* Direct mode: one writev for as many queued frames as fit, until the
 * socket is full. */
static apr_status_t write_direct(async_conn *ac)
{
    for (;;) {
        struct iovec vec[DIRECT_IOVECS];
        apr_size_t total = 0, written = 0;
        ws_out_frame *f;
        apr_status_t rv;
        int n = 0;

        if (!ac->sending) {
            ac->sending = ws_conn_take_output(ac->wc);
            for (f = ac->sending; f; f = f->next) {
                ac->wc->msgs_out++;
            }
            if (!ac->sending) {
                return APR_SUCCESS;
            }
        }
        for (f = ac->sending; f && n < DIRECT_IOVECS; f = f->next, n++) {
            apr_size_t skip = (f == ac->sending) ? ac->sent : 0;

            vec[n].iov_base = f->bytes + skip;
            vec[n].iov_len = f->len - skip;
            total += vec[n].iov_len;
        }
        rv = apr_socket_sendv(ac->sock, vec, n, &written);
        if (written && logio_add_bytes_out) {
            logio_add_bytes_out(ac->c, (apr_off_t)written);
        }
        advance_sending(ac, written);
        if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && written < total)) {
            return APR_SUCCESS;          /* socket full: wait for POLLOUT */
        }
        if (rv != APR_SUCCESS || !ac->sending) {
            /* All written.  Frames queued since by other threads put the
             * connection on the dirty list: no need to look again now. */
            return rv;
        }
    }
}

/* Writes what the socket takes now.  Output that remains is either set
 * aside in the core filter or held here; the queue behind it is what
 * WebSocketSendQueueLimit bounds. */
static apr_status_t write_some(async_conn *ac)
{
    conn_rec *c = ac->c;
    apr_status_t rv;

    if (ac->direct) {
        return write_direct(ac);
    }
    for (;;) {
        if (c->data_in_output_filters) {
            if ((rv = push_set_aside(c)) != APR_SUCCESS) {
                return rv;
            }
            if (c->data_in_output_filters) {
                return APR_SUCCESS;      /* socket full: wait for POLLOUT */
            }
        }
        if (APR_BRIGADE_EMPTY(ac->held)) {
            take_queued_frames(ac);
            if (APR_BRIGADE_EMPTY(ac->held)) {
                return APR_SUCCESS;
            }
        }
        if ((rv = next_write_chunk(ac)) != APR_SUCCESS) {
            return rv;
        }
        rv = ap_pass_brigade(c->output_filters, ac->out);
        apr_brigade_cleanup(ac->out);
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
}

static int output_pending(async_conn *ac)
{
    return ac->sending || ac->c->data_in_output_filters
           || !APR_BRIGADE_EMPTY(ac->held);
}

/* ---- slow plugins: messages run on dispatch threads ---- */

/* Whether a dispatch thread has work of this connection (then neither
 * its input is parsed nor may it end). */
static int dispatch_busy(async_conn *ac)
{
    int busy;

    if (!ac->ever_dispatched) {
        return 0;                    /* the common case costs no lock */
    }
    pthread_mutex_lock(&dispatch_lock);
    busy = ac->jobs != NULL || ac->jobs_running;
    pthread_mutex_unlock(&dispatch_lock);
    return busy;
}

static void push_dirty_locked(ws_loop *loop, async_conn *ac)
{
    if (!ac->on_dirty) {
        ac->on_dirty = 1;
        ac->next_dirty = loop->dirty;
        loop->dirty = ac;
    }
}

/* On a dispatch thread: the connection's messages, in order.  The loop
 * neither finishes the connection nor runs on_disconnect while
 * jobs_running is set, so the plugin never sees the two overlap. */
static void run_jobs(async_conn *ac)
{
    ws_loop *loop = ac->loop;

    for (;;) {
        dispatch_job *job;

        pthread_mutex_lock(&dispatch_lock);
        job = ac->jobs;
        if (!job) {
            /* Done: hand the connection back to its loop before letting
             * go, so that the loop finds it and may finish it. */
            ac->jobs_running = 0;
            apr_thread_mutex_lock(loop->lock);
            push_dirty_locked(loop, ac);
            apr_thread_mutex_unlock(loop->lock);
            pthread_mutex_unlock(&dispatch_lock);
            apr_pollset_wakeup(loop->pollset);
            return;
        }
        ac->jobs = job->next;
        if (!ac->jobs) {
            ac->jobs_tail = NULL;
        }
        pthread_mutex_unlock(&dispatch_lock);

        ws_conn_call_plugin(ac->wc, job->type, job->data, job->len);
        free(job);
    }
}

/* With dispatch_lock held. */
static async_conn *next_runnable(void)
{
    async_conn *ac = run_head;

    if (ac) {
        run_head = ac->next_run;
        if (!run_head) {
            run_tail = NULL;
        }
        ac->next_run = NULL;
    }
    return ac;
}

/* A dispatch thread: runs connections from the queue; leaves after a
 * minute without work. */
static void *dispatch_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&dispatch_lock);
    for (;;) {
        async_conn *ac = next_runnable();

        if (!ac) {
            struct timespec until;
            int rc;

            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 60;
            dispatch_idle++;
            rc = pthread_cond_timedwait(&dispatch_cond, &dispatch_lock, &until);
            if (rc != 0 && !run_head) {
                /* Timed out: no pusher claimed this thread. */
                dispatch_idle--;
                dispatch_running--;
                pthread_mutex_unlock(&dispatch_lock);
                return NULL;
            }
            continue;
        }
        pthread_mutex_unlock(&dispatch_lock);
        run_jobs(ac);
        pthread_mutex_lock(&dispatch_lock);
    }
}

/* With dispatch_lock held: a thread will run the queue.  0 when none can
 * be had. */
static int wake_dispatcher(void)
{
    pthread_attr_t attr;
    pthread_t thread;
    int rc;

    if (dispatch_idle > 0) {
        dispatch_idle--;             /* claimed: its wake-up is ours */
        pthread_cond_signal(&dispatch_cond);
        return 1;
    }
    if (dispatch_running >= dispatch_max) {
        return 1;                    /* busy ones will come back for it */
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&thread, &attr, dispatch_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        return dispatch_running > 0;
    }
    dispatch_running++;
    return 1;
}

static int async_dispatch(ws_conn *wc, int type, const uint8_t *data,
                          size_t len)
{
    async_conn *ac = wc->engine_data;
    dispatch_job *job;
    int queued = 1;

    if (!dispatch_ready || !(job = malloc(sizeof(*job) + len))) {
        return 0;
    }
    job->next = NULL;
    job->type = type;
    job->len = len;
    memcpy(job->data, data, len);
    job->data[len] = '\0';

    pthread_mutex_lock(&dispatch_lock);
    if (ac->jobs_tail) {
        ac->jobs_tail->next = job;
    }
    else {
        ac->jobs = job;
    }
    ac->jobs_tail = job;
    if (!ac->jobs_running) {
        ac->jobs_running = 1;
        if (run_tail) {
            run_tail->next_run = ac;
        }
        else {
            run_head = ac;
        }
        run_tail = ac;
        queued = wake_dispatcher();
        if (!queued) {
            /* No thread at all: undo, and run the message right here. */
            next_runnable();
            ac->jobs = ac->jobs_tail = NULL;
            ac->jobs_running = 0;
        }
    }
    pthread_mutex_unlock(&dispatch_lock);
    if (!queued) {
        free(job);
        return 0;
    }
    /* Nothing behind this message is parsed before the plugin is done
     * with it: replies and errors keep the order of the wire. */
    wc->paused = 1;
    ac->ever_dispatched = 1;
    return 1;
}

/* ---- telling a blocking plugin from a busy machine ---- */

/*
 * Timing on_message on the loop would blame a plugin for the time its
 * thread spent preempted on a loaded machine.  Instead the loop only
 * publishes which plugin it is in and since when, and a watchdog thread
 * looks at the loop thread while a call lasts longer than the limit:
 * asleep (blocked in a system call) means the plugin blocks; running and
 * burning another limit's worth of CPU means it computes for too long;
 * runnable but not running is the machine, not the plugin.
 */
static void async_call_inline(ws_conn *wc, int type, uint8_t *data, size_t len)
{
    async_conn *ac = wc->engine_data;
    plugin_call *call = &ac->loop->call;

    call->ref = wc->conf->handler;
    call->limit = ws_conf_slow_plugin(wc->conf);
    call->s = wc->s;
    __atomic_store_n(&call->started, apr_time_now(), __ATOMIC_RELEASE);
    ws_conn_call_plugin(wc, type, data, len);
    __atomic_store_n(&call->started, 0, __ATOMIC_RELEASE);
}

/* The state letter and CPU ticks (utime + stime) of a loop thread. */
static int thread_state(pid_t tid, char *state, unsigned long *cpu)
{
    char path[64], buf[512];
    unsigned long utime, stime;
    const char *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    if ((fd = open(path, O_RDONLY)) < 0) {
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

static void watch_loop(ws_loop *loop, apr_time_t now, long ticks_per_sec)
{
    plugin_call *call = &loop->call;
    apr_time_t started = __atomic_load_n(&call->started, __ATOMIC_ACQUIRE);
    ws_plugin_ref *ref = call->ref;
    apr_interval_time_t limit = call->limit;
    server_rec *s = call->s;
    unsigned long cpu;
    char state;

    if (!started || started != __atomic_load_n(&call->started, __ATOMIC_ACQUIRE)
        || !limit || ref->slow || now - started <= limit
        || !thread_state(loop->tid, &state, &cpu)) {
        return;
    }
    if (state == 'S' || state == 'D') {
        ws_plugin_mark_slow(ref, s, "blocked for longer than "
                            "WebSocketSlowPlugin");
        return;
    }
    if (loop->watched_call != started) {
        loop->watched_call = started;
        loop->watched_cpu = cpu;
    }
    else if ((apr_interval_time_t)(cpu - loop->watched_cpu) * APR_USEC_PER_SEC
             / ticks_per_sec >= limit) {
        ws_plugin_mark_slow(ref, s, "computed for longer than "
                            "WebSocketSlowPlugin");
    }
}

static void *APR_THREAD_FUNC watchdog_main(apr_thread_t *thread, void *data)
{
    long ticks_per_sec = sysconf(_SC_CLK_TCK);

    (void)thread;
    (void)data;
    while (!__atomic_load_n(&watchdog_stop, __ATOMIC_ACQUIRE)) {
        apr_time_t now;
        int i;

        apr_sleep(apr_time_from_msec(10));
        now = apr_time_now();
        for (i = 0; i < loop_count; i++) {
            watch_loop(&loops[i], now, ticks_per_sec > 0 ? ticks_per_sec : 100);
        }
    }
    return NULL;
}

/* ---- ending a connection ---- */

static void unlink_conn(async_conn *ac)
{
    ws_loop *loop = ac->loop;

    if (ac->prev) {
        ac->prev->next = ac->next;
    }
    else if (loop->conns == ac) {
        loop->conns = ac->next;
    }
    if (ac->next) {
        ac->next->prev = ac->prev;
    }
    ac->prev = ac->next = NULL;
}

static void bury(async_conn *ac)
{
    ws_loop *loop = ac->loop;

    set_poll_events(ac, 0);
    ac->phase = AC_DEAD;
    ac->next = loop->graveyard;
    loop->graveyard = ac;
}

/* Frees the connection for good: its pool holds the socket, and its
 * cleanup is what the MPM counts connections with. */
static void destroy_dead(ws_loop *loop, apr_time_t now)
{
    async_conn **link = &loop->graveyard;

    while (*link) {
        async_conn *ac = *link;

        if (now - ac->handed_over < HANDOVER_GRACE) {
            link = &ac->next;
            continue;
        }
        *link = ac->next;
        apr_pool_destroy(ac->c->pool);
    }
}

static void take_off_dirty_list(async_conn *ac)
{
    ws_loop *loop = ac->loop;
    async_conn **link;

    apr_thread_mutex_lock(loop->lock);
    for (link = &loop->dirty; ac->on_dirty && *link; link = &(*link)->next_dirty) {
        if (*link == ac) {
            *link = ac->next_dirty;
            ac->on_dirty = 0;
            break;
        }
    }
    apr_thread_mutex_unlock(loop->lock);
}

/*
 * The WebSocket is over: tell the plugin, log the request, and start the
 * TCP close the way Apache does it.
 */
static void finish(async_conn *ac, apr_time_t now)
{
    ws_conn *wc = ac->wc;
    conn_rec *c = ac->c;

    ws_conn_finish(wc);              /* no more wake-ups after this */
    take_off_dirty_list(ac);
    unlink_conn(ac);
    if (output_pending(ac)) {
        /* A peer that stopped reading: flushing would block this loop. */
        c->aborted = 1;
    }
    apr_brigade_cleanup(ac->held);
    apr_brigade_cleanup(ac->in);
    ws_out_frames_free(ac->sending);
    ac->sending = NULL;
    ac->wc = NULL;

    /* Writes the access log line (EOR bucket) and frees r->pool. */
    ap_process_request_after_handler(wc->r);
    /* That set a state for the MPM's next step; the connection is still
     * ours, and the MPM counts it as suspended until its pool goes. */
    c->cs->state = CONN_STATE_SUSPENDED;

    if (ap_start_lingering_close(c)) {
        bury(ac);
        return;
    }
    ac->phase = AC_LINGER;
    ac->linger_until = now + LINGER_TIME;
    /* The socket keeps the Timeout of the request: reads must not wait. */
    apr_socket_timeout_set(ap_get_conn_socket(c), 0);
    if (set_poll_events(ac, APR_POLLIN) != APR_SUCCESS) {
        bury(ac);
        return;
    }
    ac->next = ac->loop->conns;      /* timers still look at it */
    if (ac->next) {
        ac->next->prev = ac;
    }
    ac->loop->conns = ac;
}

/* Reads and drops what the client sends after our FIN. */
static void linger(async_conn *ac, apr_time_t now)
{
    apr_socket_t *sock = ap_get_conn_socket(ac->c);

    for (;;) {
        apr_size_t len = LOOP_READ_SIZE;
        apr_status_t rv = apr_socket_recv(sock, (char *)ac->loop->scratch, &len);

        if (APR_STATUS_IS_EAGAIN(rv) && now < ac->linger_until) {
            return;
        }
        if (rv != APR_SUCCESS || len == 0 || now >= ac->linger_until) {
            unlink_conn(ac);
            bury(ac);
            return;
        }
    }
}

/* ---- driving a connection ---- */

/* Direct mode: reads until the socket has no more for now; a short read
 * says so without another (empty) read, as the poll is level-triggered. */
static apr_status_t read_direct(async_conn *ac)
{
    ws_conn *wc = ac->wc;
    uint8_t *scratch = ac->loop->scratch;

    while (!wc->peer_closed && !wc->paused) {
        apr_size_t len = LOOP_READ_SIZE;
        apr_status_t rv = apr_socket_recv(ac->sock, (char *)scratch, &len);

        if (APR_STATUS_IS_EAGAIN(rv)) {
            return APR_SUCCESS;
        }
        if (rv != APR_SUCCESS || len == 0) {
            return rv == APR_SUCCESS ? APR_EOF : rv;
        }
        if (logio_add_bytes_in) {
            logio_add_bytes_in(ac->c, (apr_off_t)len);
        }
        if ((rv = ws_conn_feed_input(wc, scratch, len)) != APR_SUCCESS) {
            return rv;
        }
        if (len < LOOP_READ_SIZE) {
            return APR_SUCCESS;
        }
    }
    return APR_SUCCESS;
}

static void read_in(async_conn *ac)
{
    apr_status_t rv = ac->direct
        ? read_direct(ac)
        : ws_conn_read_available(ac->wc, ac->in, ac->loop->scratch,
                                 LOOP_READ_SIZE);

    if (rv != APR_SUCCESS) {
        ws_conn_abort(ac->wc, rv, rv == APR_EOF ? "peer closed the TCP "
                      "connection" : "read failed");
    }
}

/* The dispatch thread is done with the message that paused the input:
 * parse what waited behind it, then what the filters hold. */
static void resume_input(async_conn *ac)
{
    ws_conn *wc = ac->wc;
    apr_status_t rv = ws_conn_resume(wc, ac->loop->scratch, LOOP_READ_SIZE);

    if (rv != APR_SUCCESS) {
        ws_conn_abort(wc, rv, "out of memory");
    }
    else if (!wc->paused) {
        read_in(ac);
    }
}

static void progress(async_conn *ac, apr_time_t now)
{
    ws_conn *wc = ac->wc;
    int busy = dispatch_busy(ac);
    apr_status_t rv;
    apr_int16_t want;

    if (wc->paused && !busy) {
        resume_input(ac);
        busy = dispatch_busy(ac);
    }
    rv = write_some(ac);
    if (rv != APR_SUCCESS) {
        ws_conn_abort(wc, rv, "write failed");
    }
    /* A plugin still busy with this connection's messages on a dispatch
     * thread must finish before on_disconnect may run. */
    if (!busy
        && (rv != APR_SUCCESS || ws_conn_done(wc, now, output_pending(ac)))) {
        finish(ac, now);
        return;
    }
    /* Nothing to watch (a broken socket, or the peer's Close read while a
     * dispatch thread is busy) is fine: the end of the dispatch and the
     * timers bring the connection back here. */
    want = rv != APR_SUCCESS ? 0
         : (wc->peer_closed || wc->paused ? 0 : APR_POLLIN)
           | (output_pending(ac) ? APR_POLLOUT : 0);
    if (set_poll_events(ac, want) != APR_SUCCESS) {
        ws_conn_abort(wc, APR_EGENERAL, "cannot poll");
        finish(ac, now);
    }
}

static void service(async_conn *ac, apr_int16_t events, apr_time_t now)
{
    if (ac->phase == AC_LINGER) {
        linger(ac, now);
        return;
    }
    if (ac->phase != AC_OPEN) {
        return;
    }
    if (events & (APR_POLLIN | APR_POLLHUP | APR_POLLERR)) {
        ac->loop->servicing = ac;
        read_in(ac);
        ac->loop->servicing = NULL;
    }
    progress(ac, now);
}

static void announce_stop(ws_loop *loop)
{
    async_conn *ac;

    for (ac = loop->conns; ac; ac = ac->next) {
        if (ac->phase == AC_OPEN) {
            ws_conn_close(ac->wc, WS_CLOSE_GOING_AWAY, "server shutting down");
        }
    }
}

/* Only the core's filters on the connection (no mod_ssl, no third-party
 * connection filter; mod_logio's input counter is fine, its counts are
 * kept by hand): reading and writing the socket directly is then exactly
 * what the filters would do. */
static int core_filters_only(conn_rec *c)
{
    ap_filter_t *in = c->input_filters;

    if (in && logio_add_bytes_in && !strcasecmp(in->frec->name,
                                                "log_input_output")) {
        in = in->next;
    }
    return in && c->output_filters
           && in->frec == ap_core_input_filter_handle && !in->next
           && c->output_filters->frec == ap_core_output_filter_handle
           && !c->output_filters->next;
}

static void adopt(ws_loop *loop, async_conn *ac, apr_time_t now)
{
    ac->phase = AC_OPEN;
    ac->next = loop->conns;
    if (ac->next) {
        ac->next->prev = ac;
    }
    loop->conns = ac;
    if (loop->stop_announced) {
        ws_conn_close(ac->wc, WS_CLOSE_GOING_AWAY, "server shutting down");
    }
    /* Bytes that came with the handshake wait in the input filters, where
     * polling the socket would never see them: read before polling. */
    service(ac, APR_POLLIN, now);
    if (ac->phase == AC_OPEN && core_filters_only(ac->c) && !ac->wc->paused
        && !ac->wc->peer_closed && APR_BRIGADE_EMPTY(ac->held)
        && !ac->c->data_in_output_filters) {
        /* The filters hold nothing now: from here on the socket alone. */
        ac->direct = 1;
        ac->sock = ap_get_conn_socket(ac->c);
        apr_socket_timeout_set(ac->sock, 0);
    }
    ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, ac->c, "WebSocket on event loop "
                  "%d, %s I/O (in: %s%s, out: %s%s)", loop->index,
                  ac->direct ? "direct socket" : "connection filter",
                  ac->c->input_filters->frec->name,
                  ac->c->input_filters->next ? ",..." : "",
                  ac->c->output_filters->frec->name,
                  ac->c->output_filters->next ? ",..." : "");
}

static void adopt_inbox(ws_loop *loop, apr_time_t now)
{
    async_conn *ac;

    apr_thread_mutex_lock(loop->lock);
    ac = loop->inbox;
    loop->inbox = NULL;
    apr_thread_mutex_unlock(loop->lock);
    while (ac) {
        async_conn *next = ac->next_inbox;

        adopt(loop, ac, now);
        ac = next;
    }
}

static void write_dirty(ws_loop *loop, apr_time_t now)
{
    async_conn *ac;

    apr_thread_mutex_lock(loop->lock);
    ac = loop->dirty;
    loop->dirty = NULL;
    for (async_conn *d = ac; d; d = d->next_dirty) {
        d->on_dirty = 0;
    }
    apr_thread_mutex_unlock(loop->lock);
    while (ac) {
        async_conn *next = ac->next_dirty;

        if (ac->phase == AC_OPEN) {
            progress(ac, now);
        }
        ac = next;
    }
}

/* Deadlines: the closing handshake, lingering, idle sockets, stops. */
static void run_timers(ws_loop *loop, apr_time_t now)
{
    async_conn *ac, *next;

    if (loop->stop && !loop->stop_announced) {
        loop->stop_announced = 1;
        loop->hard_stop_at = now + HARD_STOP_GRACE;
        announce_stop(loop);
    }
    if (now < loop->next_tick && !loop->stop) {
        return;
    }
    loop->next_tick = now + LOOP_TICK;
    for (ac = loop->conns; ac; ac = next) {
        next = ac->next;
        if (ac->phase == AC_LINGER) {
            linger(ac, now);
        }
        else if (loop->stop == STOP_NOW && now >= loop->hard_stop_at) {
            ws_conn_abort(ac->wc, APR_SUCCESS, "server stopped");
            ac->c->aborted = 1;
            finish(ac, now);
        }
        else if (ac->phase == AC_OPEN) {
            ws_conn_tick(ac->wc, now);
            progress(ac, now);
        }
    }
}

static int loop_finished(ws_loop *loop)
{
    int empty;

    if (!loop->stop || loop->conns || loop->graveyard) {
        return 0;
    }
    apr_thread_mutex_lock(loop->lock);
    empty = !loop->inbox;
    apr_thread_mutex_unlock(loop->lock);
    return empty;
}

static void *APR_THREAD_FUNC loop_main(apr_thread_t *thread, void *data)
{
    ws_loop *loop = data;

    current_loop = loop;
    loop->tid = (pid_t)syscall(SYS_gettid);
    while (!loop_finished(loop)) {
        apr_int32_t n = 0;
        const apr_pollfd_t *ready;
        apr_status_t rv;
        apr_time_t now;
        apr_int32_t i;

        rv = apr_pollset_poll(loop->pollset, LOOP_TICK, &n, &ready);
        now = apr_time_now();
        if (rv != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(rv)
            && !APR_STATUS_IS_EINTR(rv)) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, ap_server_conf,
                         "WebSocket event loop %d: poll failed", loop->index);
            n = 0;
        }
        for (i = 0; rv == APR_SUCCESS && i < n; i++) {
            service(ready[i].client_data, ready[i].rtnevents, now);
        }
        adopt_inbox(loop, now);
        write_dirty(loop, now);
        run_timers(loop, now);
        destroy_dead(loop, now);
    }
    /* A plain return, not apr_thread_exit(): pthread_exit's unwinding is
     * what ASan trips over at child exit, and the thread's pool goes
     * with pchild anyway. */
    (void)thread;
    return NULL;
}

/* ---- the engine interface ---- */

static apr_status_t async_attach(ws_conn *wc)
{
    conn_rec *c = wc->c;
    async_conn *ac = apr_pcalloc(c->pool, sizeof(*ac));
    apr_interval_time_t unused;
    apr_status_t rv;

    ac->wc = wc;
    ac->c = c;
    ac->phase = AC_WAITING;
    /* A WebSocket lives long and allocates little from its pools after
     * the handshake (direct I/O uses the loop's buffer): blocks it frees
     * from now on (the 101's buffer, filter buffers) go back to malloc,
     * for other connections, instead of idling on its own free list. */
    apr_allocator_max_free_set(apr_pool_allocator_get(c->pool), 1);
    ac->loop = &loops[apr_atomic_inc32(&next_loop) % (apr_uint32_t)loop_count];
    ac->in = apr_brigade_create(c->pool, c->bucket_alloc);
    ac->held = apr_brigade_create(c->pool, c->bucket_alloc);
    ac->out = apr_brigade_create(c->pool, c->bucket_alloc);
    ac->pfd.p = c->pool;
    rv = ap_get_pollfd_from_conn(c, &ac->pfd, &unused);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ac->pfd.client_data = ac;
    wc->engine_data = ac;
    return APR_SUCCESS;
}

/* The handler is done with the connection: the MPM hands it to us in
 * ws_async_suspended(). */
static void async_detach(ws_conn *wc)
{
    take_off_dirty_list(wc->engine_data);
}

static int async_run(ws_conn *wc)
{
    /* The MPM lingering-closes an aborted connection instead of
     * suspending it (the 101 could not be written): it never reaches a
     * loop, so it ends here. */
    if (wc->c->aborted) {
        ws_conn_abort(wc, APR_ECONNABORTED, "the 101 could not be sent");
        ws_conn_finish(wc);
        async_detach(wc);
        return DONE;
    }
    ap_set_module_config(wc->c->conn_config, &websocket_module, wc);
    return SUSPENDED;
}

/* With wc->lock held (ws_conn.c), from any thread. */
static void async_wake(ws_conn *wc)
{
    async_conn *ac = wc->engine_data;
    ws_loop *loop = ac->loop;
    int was_dirty;

    /* A reply from on_message on this loop: progress() writes it next. */
    if (current_loop == loop && loop->servicing == ac) {
        return;
    }
    apr_thread_mutex_lock(loop->lock);
    was_dirty = ac->on_dirty;
    push_dirty_locked(loop, ac);
    apr_thread_mutex_unlock(loop->lock);
    /* The loop looks at its dirty list at the end of every iteration, so
     * it needs no wake-up from itself, nor a second one. */
    if (!was_dirty && current_loop != loop) {
        apr_pollset_wakeup(loop->pollset);
    }
}

const ws_engine ws_engine_async = {
    "async",
    async_attach,
    async_run,
    async_wake,
    async_dispatch,
    async_detach,
    async_call_inline
};

/* suspend_connection hook, on the worker thread that ran the handler. */
void ws_async_suspended(conn_rec *c, request_rec *r)
{
    ws_conn *wc = ap_get_module_config(c->conn_config, &websocket_module);
    async_conn *ac;
    ws_loop *loop;

    (void)r;
    if (!wc || wc->engine != &ws_engine_async) {
        return;
    }
    ap_set_module_config(c->conn_config, &websocket_module, NULL);
    ac = wc->engine_data;
    loop = ac->loop;
    ac->handed_over = apr_time_now();
    apr_thread_mutex_lock(loop->lock);
    ac->next_inbox = loop->inbox;
    loop->inbox = ac;
    apr_thread_mutex_unlock(loop->lock);
    apr_pollset_wakeup(loop->pollset);
}

int ws_async_available(void)
{
    return loop_count > 0;
}

/* ---- starting and stopping the loops ---- */

static void ask_loops_to_stop(int how)
{
    int i;

    for (i = 0; i < loop_count; i++) {
        if (loops[i].stop < (apr_uint32_t)how) {
            loops[i].stop = (apr_uint32_t)how;
        }
        apr_pollset_wakeup(loops[i].pollset);
    }
}

void ws_async_child_stopping(apr_pool_t *pchild, int graceful)
{
    (void)pchild;
    ask_loops_to_stop(graceful ? STOP_GRACEFUL : STOP_NOW);
}

/* Runs before pchild's subpools and the MPM's own teardown. */
static apr_status_t join_loops(void *unused)
{
    int i;

    (void)unused;
    ask_loops_to_stop(STOP_NOW);
    if (watchdog) {
        apr_status_t ignored;

        __atomic_store_n(&watchdog_stop, 1, __ATOMIC_RELEASE);
        apr_thread_join(&ignored, watchdog);
        watchdog = NULL;
    }
    for (i = 0; i < loop_count; i++) {
        apr_status_t ignored;

        if (loops[i].thread) {
            apr_thread_join(&ignored, loops[i].thread);
        }
    }
    loop_count = 0;
    return APR_SUCCESS;
}

static apr_status_t start_loop(apr_pool_t *pchild, ws_loop *loop, int index,
                               int max_events)
{
    apr_status_t rv;

    loop->index = index;
    loop->scratch = apr_palloc(pchild, LOOP_READ_SIZE + 1);
    rv = apr_thread_mutex_create(&loop->lock, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (rv == APR_SUCCESS) {
        /* The size is how many events one poll returns, not a limit on
         * the descriptors a pollset holds (epoll). */
        rv = apr_pollset_create(&loop->pollset, (apr_uint32_t)max_events,
                                pchild, APR_POLLSET_WAKEABLE | APR_POLLSET_NOCOPY);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_thread_create(&loop->thread, NULL, loop_main, loop, pchild);
    }
    return rv;
}

/* Threads start on demand: a server whose plugins never block has none. */
static void start_dispatch_pool(int max)
{
    dispatch_max = max;
    dispatch_ready = 1;
}

void ws_async_child_init(apr_pool_t *pchild, server_rec *s, int threads,
                         int dispatch_threads)
{
    int is_async = 0, i;

    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &is_async) != APR_SUCCESS || !is_async
        || threads <= 0) {
        return;
    }
    start_dispatch_pool(dispatch_threads);
    logio_add_bytes_in = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_in);
    logio_add_bytes_out = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_out);
    loops = apr_pcalloc(pchild, sizeof(*loops) * (apr_size_t)threads);
    for (i = 0; i < threads; i++) {
        apr_status_t rv = start_loop(pchild, &loops[i], i, 512);

        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "cannot start WebSocket "
                         "event loop %d; WebSockets use the synchronous engine",
                         i);
            break;
        }
        loop_count = i + 1;
    }
    if (loop_count > 0
        && apr_thread_create(&watchdog, NULL, watchdog_main, NULL, pchild)
           != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "cannot start the WebSocket "
                     "watchdog; blocking plugins will not be detected");
        watchdog = NULL;
    }
    apr_pool_pre_cleanup_register(pchild, NULL, join_loops);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "%d WebSocket event loop "
                 "thread(s) started", loop_count);
}
