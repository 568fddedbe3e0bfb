/*
 * mod_ws_test_hooks.c - an Apache module for mod_websocket's tests: it
 * makes the MPM's worker slow after the suspend_connection hook, the
 * moment at which mod_websocket's event loop already owns the connection
 * while the worker has not yet let go of it.
 *
 *   X-Test-Suspend-Delay: <ms>   the worker sleeps that long in a
 *                                suspend_connection hook that runs after
 *                                mod_websocket's, then reads the
 *                                connection again (under ASan, a read of
 *                                a freed connection is reported)
 */
#include <string.h>
#include <time.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mpm_common.h"
#include "apr_strings.h"

module AP_MODULE_DECLARE_DATA ws_test_hooks_module;

#define NOTE "ws-test-suspend-delay"

static int note_delay(request_rec *r)
{
    const char *delay = apr_table_get(r->headers_in, "X-Test-Suspend-Delay");

    if (delay && !r->main) {
        apr_table_setn(r->connection->notes, NOTE,
                       apr_pstrdup(r->connection->pool, delay));
    }
    return DECLINED;
}

static void delay_after_suspend(conn_rec *c, request_rec *r)
{
    const char *delay = apr_table_get(c->notes, NOTE);
    struct timespec ts;
    long ms;

    (void)r;
    if (!delay) {
        return;
    }
    ms = atol(delay);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
    /* What the MPM does after the hooks: touch the connection. */
    if (!apr_table_get(c->notes, NOTE)) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, NULL, "BUG: connection memory "
                     "corrupted under the suspending worker");
    }
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, NULL,
                 "ws_test_hooks: the suspending worker is back");
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_post_read_request(note_delay, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(delay_after_suspend, NULL, NULL,
                               APR_HOOK_REALLY_LAST);
}

AP_DECLARE_MODULE(ws_test_hooks) = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, NULL, NULL, NULL,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
