/*
 * t/fuzz_handshake.c - libFuzzer target for the opening handshake's
 * validation (ws_handshake.c): headers in, decision out.
 *
 *   make fuzz                          (all targets; see the Makefile)
 *   t/fuzz_handshake_replay file-or-dir...   (make unit, without libFuzzer)
 *
 * Input: byte 0 picks the origin mode, HTTP/2, the method and the HTTP
 * version; byte 1 the deflate policy; the rest is lines "Name: value".
 * Lines whose name starts with '@' describe the server instead:
 * @name, @alias, @wild (ServerAlias patterns), @trusted, @scheme, @port.
 * Repeated headers are joined with ", " as httpd does.  Every string is a
 * buffer of its exact size, so ASan sees any read past its end.
 *
 * The decision is checked against what each outcome promises: a status
 * from the known set with a printable reason, and for an accepted
 * handshake a GET of HTTP/1.1+, a valid key, a supported version, no
 * body, a token list of subprotocols, an origin that an independent
 * (simpler) comparison also accepts, and a well-formed extension answer.
 * Validating twice gives the same decision.
 */
#include "../ws_handshake.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FUZZ_NAME "fuzz_handshake"
#include "fuzz.h"

#define MAX_FIELDS 32
#define MAX_NAMES  8

typedef struct field {
    char *name;
    char *value;
} field;

typedef struct input {
    field headers[MAX_FIELDS];
    size_t nheaders;
    char *names[4][MAX_NAMES];        /* @alias, @wild, @trusted, others */
    size_t nnames[4];
    char *server_name, *scheme;
    unsigned port;
} input;

static const char *const methods[8] = {
    "GET", "HEAD", "POST", "get", "", "GET ", "CONNECT", "OPTIONS"
};
static const int versions[4] = { 1001, 1000, 2000, 1002 };

static char *copy(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static char *join(char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + 2 + lb + 1);

    memcpy(s, a, la);
    memcpy(s + la, ", ", 2);
    memcpy(s + la + 2, b, lb + 1);
    free(a);
    return s;
}

static void add_server_item(input *in, const char *name, char *value)
{
    static const char *const lists[3] = { "@alias", "@wild", "@trusted" };
    size_t i;

    for (i = 0; i < 3; i++) {
        if (!strcasecmp(name, lists[i]) && in->nnames[i] < MAX_NAMES) {
            in->names[i][in->nnames[i]++] = value;
            return;
        }
    }
    if (!strcasecmp(name, "@name") && !in->server_name) {
        in->server_name = value;
    }
    else if (!strcasecmp(name, "@scheme") && !in->scheme) {
        in->scheme = value;
    }
    else {
        if (!strcasecmp(name, "@port")) {
            in->port = (unsigned)strtoul(value, NULL, 10) & 0xffff;
        }
        free(value);
    }
}

static void add_line(input *in, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len), *v;
    char *name, *value;
    size_t i;

    if (!colon) {
        return;
    }
    v = colon + 1;
    while (v < line + len && (*v == ' ' || *v == '\t')) {
        v++;
    }
    name = copy(line, (size_t)(colon - line));
    value = copy(v, (size_t)(line + len - v));
    if (name[0] == '@') {
        add_server_item(in, name, value);
        free(name);
        return;
    }
    for (i = 0; i < in->nheaders; i++) {
        if (!strcasecmp(in->headers[i].name, name)) {
            in->headers[i].value = join(in->headers[i].value, value);
            free(value);
            free(name);
            return;
        }
    }
    if (in->nheaders == MAX_FIELDS) {
        free(name);
        free(value);
        return;
    }
    in->headers[in->nheaders].name = name;
    in->headers[in->nheaders++].value = value;
}

static void parse_input(input *in, const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;

    memset(in, 0, sizeof(*in));
    in->port = 80;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);

        if (!memchr(p, '\0', len)) {
            add_line(in, p, len && p[len - 1] == '\r' ? len - 1 : len);
        }
        p += len + 1;
    }
}

static void free_input(input *in)
{
    size_t i, j;

    for (i = 0; i < in->nheaders; i++) {
        free(in->headers[i].name);
        free(in->headers[i].value);
    }
    for (i = 0; i < 4; i++) {
        for (j = 0; j < in->nnames[i]; j++) {
            free(in->names[i][j]);
        }
    }
    free(in->server_name);
    free(in->scheme);
}

static const char *lookup(void *baton, const char *name)
{
    input *in = baton;
    size_t i;

    for (i = 0; i < in->nheaders; i++) {
        if (!strcasecmp(in->headers[i].name, name)) {
            return in->headers[i].value;
        }
    }
    return NULL;
}

static void deflate_policy(uint8_t b, ws_deflate_policy *p)
{
    ws_deflate_policy_default(p);
    p->enabled = (b & 1) != 0 || (b & 2) != 0;
    p->server_no_context_takeover = (b >> 2) & 1;
    p->client_no_context_takeover = (b >> 3) & 1;
    p->server_max_window_bits = 8 + ((b >> 4) & 7) + 1;
    p->client_max_window_bits = (b & 0x80) ? 8 + ((b >> 4) & 7) : 0;
}

/* ---- the independent checks ---- */

static int printable(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    const char *p;

    if (!nul) {
        return 0;
    }
    for (p = s; p < nul; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static int has_token(const char *value, const char *token)
{
    const char *cursor = value, *t;
    size_t len;

    while (ws_handshake_next_token(&cursor, &t, &len)) {
        if (len == strlen(token) && !strncasecmp(t, token, len)) {
            return 1;
        }
    }
    return 0;
}

/* scheme://host[:port] spelled out for one name: equal, ignoring case. */
static int origin_names(const char *origin, const ws_origin_policy *pol,
                        const char *name)
{
    char want[512];
    int dflt = ((!strcasecmp(pol->scheme, "http")
                 || !strcasecmp(pol->scheme, "ws")) && pol->port == 80)
               || ((!strcasecmp(pol->scheme, "https")
                    || !strcasecmp(pol->scheme, "wss")) && pol->port == 443);

    if (strlen(name) > 200 || strlen(pol->scheme) > 200) {
        return 0;
    }
    snprintf(want, sizeof(want), "%s://%s:%u", pol->scheme, name, pol->port);
    if (!strcasecmp(origin, want)) {
        return 1;
    }
    snprintf(want, sizeof(want), "%s://%s", pol->scheme, name);
    return dflt && !strcasecmp(origin, want);
}

static int origin_oracle(const char *origin, const ws_origin_policy *pol)
{
    size_t i;

    if (pol->mode == WS_ORIGIN_CHECK_TRUSTED) {
        for (i = 0; i < pol->trusted_count; i++) {
            if (!strcasecmp(origin, pol->trusted[i])) {
                return 1;
            }
        }
        return 0;
    }
    if (!pol->scheme) {
        return 0;
    }
    if (pol->wild_alias_count) {
        return 1;                      /* patterns: not checked here */
    }
    if (pol->name && origin_names(origin, pol, pol->name)) {
        return 1;
    }
    for (i = 0; i < pol->alias_count; i++) {
        if (origin_names(origin, pol, pol->aliases[i])) {
            return 1;
        }
    }
    /* An IPv6 literal name is written without brackets by some configs. */
    return strchr(origin, '[') != NULL;
}

static void check_accepted(const ws_handshake_request *req,
                           const ws_handshake_result *res)
{
    const char *cl = req->header(req->baton, "Content-Length");
    const char *cursor = res->protocols, *t, *origin;
    size_t n = 0, len, i;

    ASSERT(!strcmp(req->method, "GET"));
    ASSERT(req->http_version >= 1001);
    ASSERT(res->reason[0] == '\0' && res->header_count == 0);
    ASSERT(res->key && strlen(res->key) == 24 && res->key[23] == '=');
    ASSERT(res->key == req->header(req->baton, "Sec-WebSocket-Key"));
    ASSERT(res->version == 13 || res->version == 8 || res->version == 7);
    ASSERT(has_token(req->header(req->baton, "Upgrade"), "websocket"));
    if (!req->http2) {
        ASSERT(has_token(req->header(req->baton, "Connection"), "upgrade"));
        ASSERT(!req->header(req->baton, "Transfer-Encoding"));
        ASSERT(!cl || !strcmp(cl, "0"));
    }
    ASSERT(res->protocols == req->header(req->baton, "Sec-WebSocket-Protocol"));
    while (ws_handshake_next_token(&cursor, &t, &len)) {
        for (i = 0; i < len; i++) {
            ASSERT(t[i] > 0x20 && t[i] < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", t[i]));
        }
        n++;
    }
    ASSERT(n == res->protocol_count);
    ASSERT(!res->protocols || n > 0);
    if (req->origin->mode != WS_ORIGIN_CHECK_OFF) {
        if ((origin = req->header(req->baton, "Origin")) != NULL) {
            ASSERT(origin_oracle(origin, req->origin));
        }
        if ((origin = req->header(req->baton, "Sec-WebSocket-Origin")) != NULL) {
            ASSERT(origin_oracle(origin, req->origin));
        }
    }
    ASSERT(res->extensions == req->header(req->baton, "Sec-WebSocket-Extensions"));
    if (res->deflate_result == WS_DEFLATE_ACCEPTED) {
        ASSERT(req->deflate->enabled && res->extensions);
        ASSERT(memchr(res->deflate.response, '\0', WS_DEFLATE_RESPONSE_MAX));
        ASSERT(!strncmp(res->deflate.response, "permessage-deflate", 18));
    }
}

static void check_result(const ws_handshake_request *req,
                         const ws_handshake_result *res, int status)
{
    size_t i;

    ASSERT(status == res->status);
    ASSERT(status == 0 || status == 400 || status == 403 || status == 426);
    ASSERT(printable(res->reason, sizeof(res->reason)));
    ASSERT((status == 0) == (res->reason[0] == '\0'));
    ASSERT(res->header_count <= WS_HANDSHAKE_HEADERS_MAX);
    for (i = 0; i < res->header_count; i++) {
        ASSERT(res->headers[i].name && res->headers[i].value);
    }
    if (status == 426) {
        ASSERT(res->header_count >= 1);
        ASSERT(!strcmp(res->headers[res->header_count - 1].value,
                       WS_HANDSHAKE_VERSIONS));
    }
    if (status == 403) {
        ASSERT(req->origin->mode != WS_ORIGIN_CHECK_OFF);
        ASSERT(req->header(req->baton, "Origin")
               || req->header(req->baton, "Sec-WebSocket-Origin"));
    }
    if (status == 0) {
        check_accepted(req, res);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ws_handshake_result res, again;
    ws_handshake_request req;
    ws_origin_policy pol;
    ws_deflate_policy deflate;
    input in;
    int status;

    if (size < 2) {
        return 0;
    }
    parse_input(&in, data + 2, size - 2);
    memset(&pol, 0, sizeof(pol));
    pol.mode = (ws_origin_mode)((data[0] & 3) % 3);
    pol.scheme = in.scheme ? in.scheme : "http";
    pol.port = in.port;
    pol.name = in.server_name ? in.server_name : "127.0.0.1";
    pol.aliases = (const char *const *)in.names[0];
    pol.alias_count = in.nnames[0];
    pol.wild_aliases = (const char *const *)in.names[1];
    pol.wild_alias_count = in.nnames[1];
    pol.trusted = (const char *const *)in.names[2];
    pol.trusted_count = in.nnames[2];
    deflate_policy(data[1], &deflate);

    memset(&req, 0, sizeof(req));
    req.http2 = (data[0] >> 2) & 1;
    req.method = methods[(data[0] >> 3) & 7];
    req.http_version = versions[(data[0] >> 6) & 3];
    req.header = lookup;
    req.baton = &in;
    req.origin = &pol;
    req.deflate = (data[1] & 3) == 3 ? NULL : &deflate;

    status = ws_handshake_validate(&req, &res);
    check_result(&req, &res, status);
    ASSERT(ws_handshake_validate(&req, &again) == status);
    ASSERT(!strcmp(res.reason, again.reason));
    ASSERT(res.protocol_count == again.protocol_count);
    free_input(&in);
    return 0;
}
