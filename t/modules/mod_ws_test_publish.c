/*
 * mod_ws_test_publish.c - an Apache module for mod_websocket's tests: a
 * stand-in for the HTTP publisher, answering as it is meant to, so that
 * the Redis tests (t/test_redis.py) can read a publish's answer before
 * the websocket-publish handler exists in this branch.
 *
 *   <Location /testpub>
 *       SetHandler ws-test-publish
 *   </Location>
 *   POST /testpub?topic=<%-escaped topic>[&binary]   body: the message
 *   -> 200 {"subscribers": n, "id": "...", "replicated": true|false|null}
 *   -> 400 {"error": code}
 *
 * It calls mod_websocket's ws_topic_publish_ex, which the dynamic linker
 * finds in mod_websocket.so (APR loads modules with RTLD_GLOBAL): load
 * this module after mod_websocket.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

module AP_MODULE_DECLARE_DATA ws_test_publish_module;

/* From mod_websocket (ws_topic.h); ws_conn * is opaque here. */
long ws_topic_publish_ex(const char *topic, size_t len, int opcode,
                         const unsigned char *data, size_t size, void *exclude,
                         char *id, size_t id_size, int *replicated);

#define MAX_BODY (4 * 1024 * 1024)

static int read_body(request_rec *r, char **out, apr_size_t *len)
{
    apr_size_t cap = 8192;
    long n;

    if (ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK) != OK
        || !ap_should_client_block(r)) {
        *out = "";
        *len = 0;
        return OK;
    }
    *out = apr_palloc(r->pool, cap);
    *len = 0;
    while ((n = ap_get_client_block(r, *out + *len, cap - *len)) > 0) {
        *len += (apr_size_t)n;
        if (*len == cap) {
            char *bigger;

            if (cap >= MAX_BODY) {
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
            bigger = apr_palloc(r->pool, cap * 2);
            memcpy(bigger, *out, *len);
            *out = bigger;
            cap *= 2;
        }
    }
    return n < 0 ? HTTP_BAD_REQUEST : OK;
}

static int publish_handler(request_rec *r)
{
    const char *args = r->args ? r->args : "", *topic;
    char *body, *end, id[64] = "";
    apr_size_t len;
    int rc, replicated = -1;
    long n;

    if (strcmp(r->handler, "ws-test-publish")) {
        return DECLINED;
    }
    if (r->method_number != M_POST) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (strncmp(args, "topic=", 6)) {
        return HTTP_BAD_REQUEST;
    }
    topic = apr_pstrdup(r->pool, args + 6);
    if ((end = strchr(topic, '&'))) {
        *end = '\0';
    }
    if (ap_unescape_url((char *)topic) != OK) {
        return HTTP_BAD_REQUEST;
    }
    if ((rc = read_body(r, &body, &len)) != OK) {
        return rc;
    }
    n = ws_topic_publish_ex(topic, strlen(topic),
                            strstr(args, "&binary") ? 2 : 1,
                            (const unsigned char *)body, len, NULL, id,
                            sizeof(id), &replicated);
    ap_set_content_type(r, "application/json");
    if (n < 0) {
        r->status = HTTP_BAD_REQUEST;
        ap_rprintf(r, "{\"error\": %ld}\n", n);
        return OK;
    }
    ap_rprintf(r, "{\"subscribers\": %ld, \"id\": \"%s\", \"replicated\": "
               "%s}\n", n, id, replicated < 0 ? "null"
                               : replicated ? "true" : "false");
    return OK;
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(publish_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(ws_test_publish) = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, NULL, NULL, NULL,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
