/*
 * ws_mem.c - the child's WebSocket buffers and their ceiling (ws_mem.h).
 */
#include <stddef.h>
#include <pthread.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"

#include "ws_mem.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

/* At most this many connections are shed per pass: the ceiling is a
 * safety net, not a scheduler. */
#define SHED_MAX_PER_PASS  64

static apr_off_t limit;
static apr_off_t total;                  /* atomic */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
APR_RING_HEAD(mem_registry, _WebSocketState);
static struct mem_registry *registry;   /* from pchild */
static int registry_ready;
static int over_announced;               /* under registry_lock */

static apr_status_t forget_registry(void *unused)
{
    (void)unused;
    registry_ready = 0;
    return APR_SUCCESS;
}

void ws_mem_child_init(apr_pool_t *pchild, apr_off_t ceiling)
{
    limit = ceiling;
    registry = apr_pcalloc(pchild, sizeof(*registry));
    APR_RING_INIT(registry, _WebSocketState, mem_link);
    registry_ready = 1;
    apr_pool_cleanup_register(pchild, NULL, forget_registry,
                              apr_pool_cleanup_null);
}

void ws_mem_register(ws_conn *wc)
{
    if (!registry_ready) {
        return;
    }
    pthread_mutex_lock(&registry_lock);
    APR_RING_INSERT_TAIL(registry, wc, _WebSocketState, mem_link);
    wc->mem_registered = 1;
    pthread_mutex_unlock(&registry_lock);
}

void ws_mem_unregister(ws_conn *wc)
{
    apr_off_t held;

    if (wc->mem_registered) {
        pthread_mutex_lock(&registry_lock);
        APR_RING_REMOVE(wc, mem_link);
        wc->mem_registered = 0;
        pthread_mutex_unlock(&registry_lock);
    }
    /* Whatever it still counted is gone with it. */
    held = __atomic_exchange_n(&wc->mem_held, 0, __ATOMIC_ACQ_REL);
    if (held) {
        __atomic_sub_fetch(&total, held, __ATOMIC_RELAXED);
    }
}

/* With registry_lock held: the connection holding the most that has not
 * been shed yet. */
static ws_conn *largest_holder(void)
{
    ws_conn *wc, *best = NULL;
    apr_off_t most = 0;

    for (wc = APR_RING_FIRST(registry);
         wc != APR_RING_SENTINEL(registry, _WebSocketState, mem_link);
         wc = APR_RING_NEXT(wc, mem_link)) {
        apr_off_t held = __atomic_load_n(&wc->mem_held, __ATOMIC_RELAXED);

        if (held > most && !__atomic_load_n(&wc->shed, __ATOMIC_RELAXED)) {
            most = held;
            best = wc;
        }
    }
    return best;
}

static void shed(void)
{
    apr_off_t target = limit - limit / 5, before, freed = 0;
    int closed = 0;

    /* One thread sheds at a time; the others carry on. */
    if (pthread_mutex_trylock(&registry_lock) != 0) {
        return;
    }
    before = __atomic_load_n(&total, __ATOMIC_RELAXED);
    while (closed < SHED_MAX_PER_PASS
           && __atomic_load_n(&total, __ATOMIC_RELAXED) > target) {
        ws_conn *wc = largest_holder();

        if (!wc) {
            break;
        }
        freed += __atomic_load_n(&wc->mem_held, __ATOMIC_RELAXED);
        ws_conn_shed(wc);
        closed++;
    }
    if (closed && !over_announced) {
        over_announced = 1;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     WSLOGNO(00033) "WebSocket buffers of this child hold %" APR_OFF_T_FMT
                     " bytes, over WebSocketMemoryLimit %" APR_OFF_T_FMT
                     ": closing the %d connection(s) holding the most (%"
                     APR_OFF_T_FMT " bytes) with 1013; new handshakes get "
                     "503 until under %" APR_OFF_T_FMT, before, limit, closed,
                     freed, target);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Each thread adds its changes to the child's total in batches of at
 * least this much: a message queued and written is two changes, and a
 * locked add on a word all threads share cost more than the rest of the
 * accounting.  The total is then off by less than this per thread (a
 * few MB in a child of a hundred threads, against a ceiling in GB). */
#define MEM_BATCH  (16 * 1024)

static __thread __attribute__((tls_model("initial-exec"))) apr_off_t unbatched;

void ws_mem_add(ws_conn *wc, apr_off_t delta)
{
    apr_off_t now;

    if (!delta) {
        return;
    }
    __atomic_add_fetch(&wc->mem_held, delta, __ATOMIC_RELAXED);
    unbatched += delta;
    if (unbatched < MEM_BATCH && unbatched > -MEM_BATCH) {
        return;
    }
    delta = unbatched;
    unbatched = 0;
    now = __atomic_add_fetch(&total, delta, __ATOMIC_RELAXED);
    if (limit && delta > 0 && now > limit && registry_ready) {
        shed();
    }
    else if (over_announced && now < limit - limit / 5) {
        /* Under again: the next episode gets its own log line. */
        over_announced = 0;
    }
}

size_t ws_mem_connections(ws_conn **out, size_t max)
{
    ws_conn *wc;
    size_t n = 0;

    if (!registry_ready || pthread_mutex_trylock(&registry_lock) != 0) {
        return 0;
    }
    for (wc = APR_RING_FIRST(registry);
         wc != APR_RING_SENTINEL(registry, _WebSocketState, mem_link) && n < max;
         wc = APR_RING_NEXT(wc, mem_link)) {
        out[n++] = wc;
    }
    pthread_mutex_unlock(&registry_lock);
    return n;
}

int ws_mem_over_limit(void)
{
    return limit && __atomic_load_n(&total, __ATOMIC_RELAXED) > limit - limit / 10;
}

apr_off_t ws_mem_held(void)
{
    return __atomic_load_n(&total, __ATOMIC_RELAXED);
}

apr_off_t ws_mem_limit(void)
{
    return limit;
}
