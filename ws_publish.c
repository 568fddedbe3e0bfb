/*
 * ws_publish.c - the websocket-publish handler: topics over plain HTTP,
 * for admins and scripts that publish without writing C.
 *
 *     POST|PUT /pub/<topic>   publishes the body as one message (text for
 *                             text/..., application/json and +json types,
 *                             binary otherwise): 202 and a JSON answer
 *     GET|HEAD /pub/<topic>   the topic's subscribers (and history): 200
 *     DELETE /pub/<topic>     closes its subscribers with 1000: 200
 *
 * The topic is the rest of the path after the <Location> that set the
 * handler, as Apache decoded it.  Access is Apache's (Require, the auth
 * modules): they ran before this handler.  Every refusal answers a JSON
 * {"error": ...} with the status, and writes one info line.
 *
 * 202, not 200: the message is in the topics' ring when the answer goes
 * out, and every child's reader thread delivers it after that.
 */
#include <stddef.h>
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_fnmatch.h"
#include "apr_strings.h"

#include "ws_conn.h"
#include "ws_publish.h"
#include "ws_shm.h"
#include "ws_topic.h"
#include "ws_log.h"

APLOG_USE_MODULE(websocket);

extern module AP_MODULE_DECLARE_DATA websocket_module;

#define ALLOWED_METHODS  "GET, HEAD, POST, PUT, DELETE"

/* ---- JSON ---- */

/* s as a JSON string, quoted.  Bytes that are not UTF-8 become U+FFFD:
 * topics are any bytes, JSON text is UTF-8. */
static const char *json_string(apr_pool_t *p, const char *s, size_t len)
{
    char *out = apr_palloc(p, len * 6 + 3), *o = out;
    size_t i = 0;

    *o++ = '"';
    while (i < len) {
        unsigned char ch = (unsigned char)s[i];
        size_t n = ch < 0x80 ? 1 : ch >= 0xc2 && ch <= 0xdf ? 2
                 : ch >= 0xe0 && ch <= 0xef ? 3 : ch >= 0xf0 && ch <= 0xf4 ? 4 : 0;

        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        }
        else if (ch < 0x20) {
            o += apr_snprintf(o, 7, "\\u%04x", ch);
        }
        else if (n == 1 || (n && i + n <= len
                            && ws_utf8_feed(WS_UTF8_ACCEPT, (const uint8_t *)s + i, n)
                               == WS_UTF8_ACCEPT)) {
            memcpy(o, s + i, n);
            o += n;
            i += n;
            continue;
        }
        else {
            memcpy(o, "\\ufffd", 6);
            o += 6;
        }
        i++;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* ---- answers ---- */

typedef struct pub_request {
    request_rec *r;
    const char *topic;
    size_t topic_len;
    int history;                     /* WebSocketTopicHistory here */
} pub_request;

static int answer(request_rec *r, int status, const char *json)
{
    r->status = status;
    ap_set_content_type(r, "application/json");
    ap_rvputs(r, json, "\n", NULL);
    return OK;
}

/* A refusal: one info line, and {"error": why} with the status.  A body
 * still unread is not read: the connection closes after the answer. */
static int refuse(const pub_request *pr, int status, const char *why)
{
    request_rec *r = pr->r;

    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, WSLOGNO(00041) "WebSocket publish %s %s "
                  "from %s refused with %d: %s", r->method, r->uri,
                  r->useragent_ip, status, why);
    if (ap_request_has_body(r)) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    if (status == HTTP_METHOD_NOT_ALLOWED) {
        apr_table_setn(r->headers_out, "Allow", ALLOWED_METHODS);
    }
    return answer(r, status, apr_psprintf(r->pool, "{\"error\":%s}",
                                          json_string(r->pool, why,
                                                      strlen(why))));
}

/* The answer to a publish, in one place: fields are added here. */
static int published(const pub_request *pr, int opcode, size_t bytes,
                     long subscribers, const char *id)
{
    request_rec *r = pr->r;

    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, WSLOGNO(00042) "WebSocket publish: %"
                  APR_SIZE_T_FMT " bytes to topic %s, id %s, %ld subscribers",
                  bytes, pr->topic, id, subscribers);
    return answer(r, HTTP_ACCEPTED, apr_psprintf(r->pool,
                  "{\"topic\":%s,\"id\":\"%s\",\"type\":\"%s\",\"bytes\":%"
                  APR_SIZE_T_FMT ",\"subscribers\":%ld}",
                  json_string(r->pool, pr->topic, pr->topic_len), id,
                  opcode == WS_OP_TEXT ? "text" : "binary", bytes,
                  subscribers));
}

/* An error of ws_topic.h (< 0) as a refusal. */
static int topic_error(const pub_request *pr, long rc)
{
    switch (rc) {
    case WEBSOCKET_ENOTOPICS:
        return refuse(pr, HTTP_SERVICE_UNAVAILABLE, "topics are off on this "
                      "server (WebSocketTopicBuffer Off, or its shared memory "
                      "could not be set up: see the error log at startup)");
    case WEBSOCKET_ETOOBIG:
        return refuse(pr, HTTP_REQUEST_ENTITY_TOO_LARGE, "the message is "
                      "larger than a topic carries (WebSocketTopicBuffer / 8)");
    default:
        return refuse(pr, HTTP_BAD_REQUEST, apr_psprintf(pr->r->pool,
                      "the topics refused the message (error %ld)", rc));
    }
}

/* ---- the topic ---- */

static int location_matches(const core_dir_config *d, const char *uri)
{
    size_t len;

    if (d->r) {
        return !ap_regexec(d->r, uri, 0, NULL, 0);
    }
    if (d->d_is_fnmatch) {
        return apr_fnmatch(d->d, uri, APR_FNM_PATHNAME) == APR_SUCCESS;
    }
    len = strlen(d->d);
    return !strncmp(d->d, uri, len)
           && (len == 0 || d->d[len - 1] == '/' || uri[len] == '/'
               || uri[len] == '\0');
}

/* The prefix of the <Location> whose SetHandler is in force: the last of
 * the matching ones (location_walk's order) that sets a handler.  NULL
 * when that one is a regex or a wildcard (no prefix to take off), or
 * when no <Location> sets the handler. */
static const char *configuring_location(request_rec *r)
{
    core_server_config *sconf =
        ap_get_core_module_config(r->server->module_config);
    ap_conf_vector_t **sections = (ap_conf_vector_t **)sconf->sec_url->elts;
    const char *found = NULL;
    int i;

    for (i = 0; i < sconf->sec_url->nelts; i++) {
        core_dir_config *d = ap_get_core_module_config(sections[i]);

        if (d->d && d->expr_handler && location_matches(d, r->uri)) {
            found = d->r || d->d_is_fnmatch ? NULL : d->d;
        }
    }
    return found;
}

/* The rest of the path after the configuring <Location> ("news" for
 * /pub/news under <Location /pub>); Apache's path_info otherwise. */
static const char *topic_of(request_rec *r)
{
    const char *prefix = configuring_location(r);
    const char *rest = prefix ? r->uri + strlen(prefix)
                     : r->path_info ? r->path_info : "";

    return *rest == '/' ? rest + 1 : rest;
}

/* ---- the methods ---- */

/* Text for text/..., application/json and any +json type (JSON is UTF-8
 * by definition); binary for everything else, no type included. */
static int opcode_of(request_rec *r)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    size_t len;

    if (!ct) {
        return WS_OP_BINARY;
    }
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    len = strcspn(ct, "; \t");
    if (!strncasecmp(ct, "text/", 5)
        || (len == 16 && !strncasecmp(ct, "application/json", 16))
        || (len > 5 && !strncasecmp(ct + len - 5, "+json", 5))) {
        return WS_OP_TEXT;
    }
    return WS_OP_BINARY;
}

typedef struct body {
    char *data;
    apr_size_t len;
    apr_off_t limit;
    const char *limit_name;
} body;

static int too_large(const pub_request *pr, const body *b, apr_off_t size,
                     int known)
{
    return refuse(pr, HTTP_REQUEST_ENTITY_TOO_LARGE, apr_psprintf(pr->r->pool,
                  "the body is %s%" APR_OFF_T_FMT " bytes, over %s (%"
                  APR_OFF_T_FMT " bytes)", known ? "" : "more than ",
                  known ? size : b->limit, b->limit_name, b->limit));
}

/* Reads the whole body into b, through Apache's input filters (which
 * decode chunks, send 100 Continue and apply LimitRequestBody), never
 * more than b->limit bytes.  OK, a refusal answered, or a status for
 * Apache to answer (a read error). */
static int read_body(const pub_request *pr, body *b, int *answered)
{
    request_rec *r = pr->r;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool,
                                                r->connection->bucket_alloc);
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_size_t cap = 0;
    int eos = 0;

    *answered = 0;
    if (cl && !r->read_chunked) {
        apr_off_t n = apr_atoi64(cl);

        if (n > b->limit) {
            *answered = 1;
            return too_large(pr, b, n, 1);
        }
        cap = (apr_size_t)n;
    }
    b->data = apr_palloc(r->pool, cap + 1);
    b->len = 0;
    while (!eos) {
        apr_bucket *e;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, HUGE_STRING_LEN);

        if (rv != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r, WSLOGNO(00043) "WebSocket publish "
                          "to %s: reading the body failed", pr->topic);
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *data;
            apr_size_t len;

            if (APR_BUCKET_IS_EOS(e)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e)) {
                continue;
            }
            rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            }
            if ((apr_off_t)(b->len + len) > b->limit) {
                *answered = 1;
                r->connection->keepalive = AP_CONN_CLOSE;
                return too_large(pr, b, 0, 0);
            }
            if (b->len + len > cap) {
                /* Chunked: double, within the limit. */
                char *grown;

                cap = (b->len + len) * 2;
                if ((apr_off_t)cap > b->limit) {
                    cap = (apr_size_t)b->limit;
                }
                grown = apr_palloc(r->pool, cap + 1);
                memcpy(grown, b->data, b->len);
                b->data = grown;
            }
            memcpy(b->data + b->len, data, len);
            b->len += len;
        }
        apr_brigade_cleanup(bb);
    }
    return OK;
}

/* The smaller of WebSocketMaxMessageSize and what the ring carries. */
static void body_limit(const pub_request *pr, body *b)
{
    const ws_dir_conf *conf = ap_get_module_config(pr->r->per_dir_config,
                                                   &websocket_module);
    apr_off_t ring_max = (apr_off_t)ws_ring_payload_max(ws_shm_ring());

    b->limit = ws_conf_max_message_size(conf);
    b->limit_name = "WebSocketMaxMessageSize";
    if (ring_max < b->limit) {
        b->limit = ring_max;
        b->limit_name = "the largest message a topic carries "
                        "(WebSocketTopicBuffer / 8)";
    }
}

static int do_publish(const pub_request *pr)
{
    request_rec *r = pr->r;
    int opcode = opcode_of(r), answered, status;
    char id[WS_TOPIC_ID_MAX];
    body b;
    long n;

    body_limit(pr, &b);
    if ((status = read_body(pr, &b, &answered)) != OK || answered) {
        return status;
    }
    if (opcode == WS_OP_TEXT
        && ws_utf8_feed(WS_UTF8_ACCEPT, (const uint8_t *)b.data, b.len)
           != WS_UTF8_ACCEPT) {
        return refuse(pr, HTTP_BAD_REQUEST, "the body is not valid UTF-8, "
                      "which a text message must be (its Content-Type is "
                      "text/*, application/json or +json; send other data as "
                      "application/octet-stream for a binary message)");
    }
    n = ws_topic_publish_id(pr->topic, pr->topic_len, opcode,
                            (const uint8_t *)b.data, b.len, id, sizeof(id));
    return n < 0 ? topic_error(pr, n) : published(pr, opcode, b.len, n, id);
}

static int do_state(const pub_request *pr)
{
    request_rec *r = pr->r;
    long n = ws_topic_subscribers(pr->topic, pr->topic_len);
    const char *history = "";

    if (n < 0) {
        return topic_error(pr, n);
    }
    if (pr->history > 0) {
        char last[WS_TOPIC_ID_MAX];
        long kept = ws_topic_history(pr->topic, pr->topic_len,
                                     (size_t)pr->history, last, sizeof(last));

        history = apr_psprintf(r->pool, ",\"history\":{\"messages\":%ld,"
                               "\"last_id\":%s%s%s}", kept > 0 ? kept : 0,
                               *last ? "\"" : "", *last ? last : "null",
                               *last ? "\"" : "");
    }
    return answer(r, HTTP_OK, apr_psprintf(r->pool, "{\"topic\":%s,"
                  "\"subscribers\":%ld%s}",
                  json_string(r->pool, pr->topic, pr->topic_len), n, history));
}

static int do_close(const pub_request *pr)
{
    request_rec *r = pr->r;
    long n = ws_topic_close(pr->topic, pr->topic_len);

    if (n < 0) {
        return topic_error(pr, n);
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, WSLOGNO(00044) "WebSocket topic %s closed "
                  "by %s: its %ld subscribers get 1000", pr->topic,
                  r->useragent_ip, n);
    return answer(r, HTTP_OK, apr_psprintf(r->pool, "{\"topic\":%s,"
                  "\"closed\":%ld}",
                  json_string(r->pool, pr->topic, pr->topic_len), n));
}

int ws_publish_handler(request_rec *r)
{
    const ws_dir_conf *conf;
    pub_request pr;

    if (!r->handler || strcmp(r->handler, WS_PUBLISH_HANDLER_NAME) || r->main) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &websocket_module);
    pr.r = r;
    pr.topic = topic_of(r);
    pr.topic_len = strlen(pr.topic);
    pr.history = ws_conf_topic_history(conf);
    if (r->method_number != M_GET && r->method_number != M_POST
        && r->method_number != M_PUT && r->method_number != M_DELETE) {
        return refuse(&pr, HTTP_METHOD_NOT_ALLOWED, apr_psprintf(r->pool,
                      "method %s; a topic takes " ALLOWED_METHODS, r->method));
    }
    if (!pr.topic_len) {
        return refuse(&pr, HTTP_NOT_FOUND, "no topic: the path names none "
                      "after the location");
    }
    if (pr.topic_len > WS_RING_TOPIC_MAX) {
        return refuse(&pr, HTTP_REQUEST_URI_TOO_LARGE, apr_psprintf(r->pool,
                      "the topic is %" APR_SIZE_T_FMT " bytes long, over %d",
                      pr.topic_len, WS_RING_TOPIC_MAX));
    }
    if (!ws_shm_ring()) {
        return topic_error(&pr, WEBSOCKET_ENOTOPICS);
    }
    switch (r->method_number) {
    case M_POST:
    case M_PUT:
        return do_publish(&pr);
    case M_DELETE:
        return do_close(&pr);
    default:
        return do_state(&pr);
    }
}
