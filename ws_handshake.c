/*
 * ws_handshake.c - validation of the opening handshake, sans-I/O
 * (see ws_handshake.h).
 *
 * The checks run in a fixed order, so that a request with several faults
 * always gets the same answer: not a WebSocket request at all (426),
 * then the request line, the connection, the body, the version, the key,
 * the subprotocols, the origin; extensions never refuse a handshake.
 */
#include "ws_handshake.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HTTP_BAD_REQUEST      400
#define HTTP_FORBIDDEN        403
#define HTTP_UPGRADE_REQUIRED 426

/* Quoted header values in reasons are cut to this many bytes. */
#define QUOTE_MAX 96

/* ---- small text helpers (locale-independent) ---- */

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int same_text(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i;

    if (alen != blen) {
        return 0;
    }
    for (i = 0; i < alen; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

/* RFC 7230 tchar. */
static int is_tchar(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/*
 * 'value' for a reason string, NUL-terminated in out[QUOTE_MAX + 8]:
 * bytes outside printable ASCII become \xNN, a long value ends in "...",
 * and a missing one reads (missing).
 */
static const char *quote(char *out, const char *value)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    if (!value) {
        return strcpy(out, "(missing)");
    }
    out[n++] = '\'';
    for (; *value && n < QUOTE_MAX; value++) {
        unsigned char c = (unsigned char)*value;

        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out[n++] = (char)c;
            continue;
        }
        out[n++] = '\\';
        out[n++] = 'x';
        out[n++] = hex[c >> 4];
        out[n++] = hex[c & 15];
    }
    if (*value) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n++] = '\'';
    out[n] = '\0';
    return out;
}

static int refuse(ws_handshake_result *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(ws_handshake_result *res, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
    res->status = status;
    return status;
}

static void add_header(ws_handshake_result *res, const char *name,
                       const char *value)
{
    if (res->header_count < WS_HANDSHAKE_HEADERS_MAX) {
        res->headers[res->header_count].name = name;
        res->headers[res->header_count].value = value;
        res->header_count++;
    }
}

/* ---- lists of tokens ---- */

int ws_handshake_next_token(const char **cursor, const char **token,
                            size_t *len)
{
    const char *p = *cursor;

    while (p && *p) {
        const char *end;
        size_t n;

        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        end = p;
        while (*end && *end != ',') {
            end++;
        }
        n = (size_t)(end - p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
            n--;
        }
        *cursor = end;
        if (n) {
            *token = p;
            *len = n;
            return 1;
        }
        p = end;
    }
    *cursor = p;
    return 0;
}

/* Whether a comma-separated header holds token, case-insensitively.
 * Elements may carry "/version" (Upgrade); only whole elements count. */
static int header_has_token(const char *value, const char *token)
{
    const char *elem;
    size_t len;

    while (ws_handshake_next_token(&value, &elem, &len)) {
        if (same_text(elem, len, token, strlen(token))) {
            return 1;
        }
    }
    return 0;
}

/*
 * A strict 1#token list (RFC 7230 7): elements separated by commas with
 * optional spaces and tabs around them; empty elements are allowed and
 * not counted.  Returns NULL and the count, or what is wrong.
 */
static const char *check_token_list(const char *list, size_t *count,
                                    char *problem, size_t cap)
{
    const char *p = list;

    *count = 0;
    while (*p) {
        const char *start;

        while (*p == ' ' || *p == '\t') {
            p++;
        }
        start = p;
        while (is_tchar((unsigned char)*p)) {
            p++;
        }
        *count += p > start;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == ',') {
            p++;
        }
        else if (*p) {
            snprintf(problem, cap, "%s '\\x%02x' at offset %u",
                     is_tchar((unsigned char)*p) ? "space inside a token"
                                                 : "illegal character",
                     (unsigned)(unsigned char)*p, (unsigned)(p - list));
            return problem;
        }
    }
    return *count ? NULL : "no subprotocol in it";
}

/* ---- the fields ---- */

/* A key is valid when it is the base64 of exactly 16 bytes: 22 characters
 * whose last one leaves no stray bits, then "==" (RFC 6455 4.1). */
static int key_is_valid(const char *key)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    return key && strlen(key) == 24 && strspn(key, alphabet) == 22
           && strchr("AQgw", key[21]) && key[22] == '=' && key[23] == '=';
}

/* RFC 6455 4.1: version = DIGIT | (NZDIGIT DIGIT) | ("1" DIGIT DIGIT) |
 * ("2" DIGIT DIGIT), 0 to 255.  -1 when it is not that. */
static int parse_version(const char *v)
{
    size_t len = v ? strlen(v) : 0;
    int value = 0;
    size_t i;

    if (len == 0 || len > 3 || (len > 1 && v[0] == '0')) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (!is_digit((unsigned char)v[i])) {
            return -1;
        }
        value = value * 10 + (v[i] - '0');
    }
    return value <= 255 ? value : -1;
}

static int version_supported(int version)
{
    return version == 13 || version == 8 || version == 7;
}

/* ---- origins ---- */

typedef struct origin_parts {
    const char *scheme;
    size_t scheme_len;
    const char *host;          /* without the brackets of an IPv6 literal */
    size_t host_len;
    unsigned port;             /* the scheme's default when not written */
} origin_parts;

static unsigned default_port(const char *scheme, size_t len)
{
    if (same_text(scheme, len, "http", 4) || same_text(scheme, len, "ws", 2)) {
        return 80;
    }
    if (same_text(scheme, len, "https", 5) || same_text(scheme, len, "wss", 3)) {
        return 443;
    }
    return 0;
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'f');
}

static int is_host_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_';
}

/* A port: 1 to 5 digits without a leading zero, 1..65535. */
static int parse_port(const char *p, unsigned *port)
{
    unsigned value = 0;
    size_t n = 0;

    if (*p == '0') {
        return 0;
    }
    for (; is_digit((unsigned char)p[n]) && n < 5; n++) {
        value = value * 10 + (unsigned)(p[n] - '0');
    }
    if (n == 0 || p[n] || value > 65535) {
        return 0;
    }
    *port = value;
    return 1;
}

/* RFC 6454 6.2 serialisation: scheme "://" host [ ":" port ], nothing
 * else (no path, no userinfo); "null" and the like are no origin. */
static int parse_origin(const char *origin, origin_parts *o)
{
    const char *p = origin, *end;

    if (!is_alpha((unsigned char)*p)) {
        return 0;
    }
    while (is_alpha((unsigned char)*p) || is_digit((unsigned char)*p)
           || *p == '+' || *p == '-' || *p == '.') {
        p++;
    }
    if (strncmp(p, "://", 3)) {
        return 0;
    }
    o->scheme = origin;
    o->scheme_len = (size_t)(p - origin);
    p += 3;
    if (*p == '[') {
        end = ++p;
        while (is_hex((unsigned char)*end) || *end == ':' || *end == '.') {
            end++;
        }
        if (*end != ']') {
            return 0;
        }
        o->host = p;
        o->host_len = (size_t)(end - p);
        end++;
    }
    else {
        end = p;
        while (is_host_char((unsigned char)*end)) {
            end++;
        }
        o->host = p;
        o->host_len = (size_t)(end - p);
    }
    if (o->host_len == 0) {
        return 0;
    }
    if (*end == ':') {
        return parse_port(end + 1, &o->port);
    }
    o->port = default_port(o->scheme, o->scheme_len);
    return *end == '\0' && o->port != 0;
}

/* The host of a ServerName or ServerAlias, without IPv6 brackets. */
static int host_is(const char *name, const char *host, size_t host_len)
{
    size_t len;

    if (!name) {
        return 0;
    }
    len = strlen(name);
    if (len >= 2 && name[0] == '[' && name[len - 1] == ']') {
        name++;
        len -= 2;
    }
    return same_text(name, len, host, host_len);
}

int ws_handshake_name_matches(const char *pattern, const char *host,
                              size_t host_len)
{
    const char *star = NULL;        /* the last '*' seen in pattern */
    size_t h = 0, star_h = 0;       /* where host was when it was seen */

    while (h < host_len) {
        if (*pattern == '*') {
            star = pattern++;
            star_h = h;
        }
        else if (*pattern && (*pattern == '?'
                 || lower((unsigned char)*pattern)
                    == lower((unsigned char)host[h]))) {
            pattern++;
            h++;
        }
        else if (star) {
            /* Let the last '*' take one more character and retry. */
            pattern = star + 1;
            h = ++star_h;
        }
        else {
            return 0;
        }
    }
    while (*pattern == '*') {
        pattern++;
    }
    return *pattern == '\0';
}

static int origin_is_ours(const ws_origin_policy *pol, const char *origin)
{
    origin_parts o;
    size_t i;

    if (!parse_origin(origin, &o) || !pol->scheme || o.port != pol->port
        || !same_text(o.scheme, o.scheme_len, pol->scheme,
                      strlen(pol->scheme))) {
        return 0;
    }
    if (host_is(pol->name, o.host, o.host_len)) {
        return 1;
    }
    for (i = 0; i < pol->alias_count; i++) {
        if (host_is(pol->aliases[i], o.host, o.host_len)) {
            return 1;
        }
    }
    for (i = 0; i < pol->wild_alias_count; i++) {
        if (pol->wild_aliases[i]
            && ws_handshake_name_matches(pol->wild_aliases[i], o.host,
                                         o.host_len)) {
            return 1;
        }
    }
    return 0;
}

static int origin_is_trusted(const ws_origin_policy *pol, const char *origin)
{
    size_t i;

    for (i = 0; i < pol->trusted_count; i++) {
        if (pol->trusted[i] && !strcasecmp(origin, pol->trusted[i])) {
            return 1;
        }
    }
    return 0;
}

/* One origin header, when present. */
static int check_origin_header(const ws_handshake_request *req,
                               ws_handshake_result *res, const char *header)
{
    const ws_origin_policy *pol = req->origin;
    const char *origin = req->header(req->baton, header);
    char q[QUOTE_MAX + 8], own[2 * QUOTE_MAX], qown[QUOTE_MAX + 8];

    if (!origin) {
        return 0;
    }
    if (pol->mode == WS_ORIGIN_CHECK_TRUSTED) {
        if (origin_is_trusted(pol, origin)) {
            return 0;
        }
        return refuse(res, HTTP_FORBIDDEN, "%s %s is not in "
                      "WebSocketTrustedOrigin", header, quote(q, origin));
    }
    if (origin_is_ours(pol, origin)) {
        return 0;
    }
    snprintf(own, sizeof(own), "%s://%s:%u", pol->scheme ? pol->scheme : "",
             pol->name ? pol->name : "", pol->port);
    return refuse(res, HTTP_FORBIDDEN, "%s %s is not this server's origin "
                  "%s (ServerName, ServerAlias)", header, quote(q, origin),
                  quote(qown, own));
}

/*
 * Browsers always send an origin; other clients may not, and a request
 * without one is no cross-site request, so it passes.  Version 13 and
 * drafts 11 and 12 (version 8) send Origin, drafts 7 to 10 (versions 7
 * and 8) Sec-WebSocket-Origin: each one present must pass.
 */
static int check_origin(const ws_handshake_request *req,
                        ws_handshake_result *res)
{
    int status;

    if (!req->origin || req->origin->mode == WS_ORIGIN_CHECK_OFF) {
        return 0;
    }
    if ((status = check_origin_header(req, res, "Origin")) != 0) {
        return status;
    }
    return check_origin_header(req, res, "Sec-WebSocket-Origin");
}

/* ---- the request ---- */

static int check_method_and_connection(const ws_handshake_request *req,
                                       ws_handshake_result *res)
{
    char q[QUOTE_MAX + 8];

    /* Exactly GET: HEAD would be upgraded with a response nobody reads. */
    if (!req->method || strcmp(req->method, "GET")) {
        return refuse(res, HTTP_BAD_REQUEST, "method %s instead of GET",
                      quote(q, req->method));
    }
    if (req->http_version < 1001) {
        return refuse(res, HTTP_BAD_REQUEST, "HTTP/%d.%d instead of HTTP/1.1 "
                      "or later", req->http_version / 1000,
                      req->http_version % 1000);
    }
    /* HTTP/2 (RFC 8441) streams carry no Connection header: mod_http2
     * turns the extended CONNECT into this request. */
    if (!req->http2
        && !header_has_token(req->header(req->baton, "Connection"),
                             "upgrade")) {
        return refuse(res, HTTP_BAD_REQUEST, "Connection header %s lacks "
                      "the 'upgrade' token",
                      quote(q, req->header(req->baton, "Connection")));
    }
    return 0;
}

/* After the 101 every byte is WebSocket: a body would be read as frames. */
static int check_no_body(const ws_handshake_request *req,
                         ws_handshake_result *res)
{
    const char *te, *cl;
    char q[QUOTE_MAX + 8];

    if (req->http2) {
        return 0;
    }
    te = req->header(req->baton, "Transfer-Encoding");
    if (te) {
        return refuse(res, HTTP_BAD_REQUEST, "a request body "
                      "(Transfer-Encoding %s) in a handshake", quote(q, te));
    }
    cl = req->header(req->baton, "Content-Length");
    if (cl && strcmp(cl, "0")) {
        return refuse(res, HTTP_BAD_REQUEST, "a request body "
                      "(Content-Length %s) in a handshake", quote(q, cl));
    }
    return 0;
}

static int check_version(const ws_handshake_request *req,
                         ws_handshake_result *res)
{
    const char *v = req->header(req->baton, "Sec-WebSocket-Version");
    char q[QUOTE_MAX + 8];

    res->version = parse_version(v);
    if (res->version >= 0 && version_supported(res->version)) {
        return 0;
    }
    add_header(res, "Sec-WebSocket-Version", WS_HANDSHAKE_VERSIONS);
    if (res->version < 0) {
        return refuse(res, HTTP_BAD_REQUEST, "Sec-WebSocket-Version %s is "
                      "not a version number (0 to 255)", quote(q, v));
    }
    return refuse(res, HTTP_UPGRADE_REQUIRED, "Sec-WebSocket-Version %d is "
                  "not supported (supported: " WS_HANDSHAKE_VERSIONS ")",
                  res->version);
}

static int check_key_and_protocols(const ws_handshake_request *req,
                                   ws_handshake_result *res)
{
    const char *offered, *problem;
    char q[QUOTE_MAX + 8], why[64];

    res->key = req->header(req->baton, "Sec-WebSocket-Key");
    if (!key_is_valid(res->key)) {
        return refuse(res, HTTP_BAD_REQUEST, "Sec-WebSocket-Key %s is not "
                      "the base64 of 16 bytes", quote(q, res->key));
    }
    offered = req->header(req->baton, "Sec-WebSocket-Protocol");
    if (!offered) {
        return 0;
    }
    problem = check_token_list(offered, &res->protocol_count, why,
                               sizeof(why));
    if (problem) {
        res->protocol_count = 0;
        return refuse(res, HTTP_BAD_REQUEST, "invalid Sec-WebSocket-Protocol "
                      "%s: %s", quote(q, offered), problem);
    }
    res->protocols = offered;
    return 0;
}

/* Extensions never fail a handshake: what we cannot honour is answered
 * by leaving it out of the 101 (RFC 6455 9.1). */
static void negotiate_extensions(const ws_handshake_request *req,
                                 ws_handshake_result *res)
{
    ws_deflate_policy off;

    if (!req->deflate) {
        ws_deflate_policy_default(&off);
        off.enabled = 0;
    }
    res->extensions = req->header(req->baton, "Sec-WebSocket-Extensions");
    res->deflate_result = ws_deflate_negotiate(res->extensions,
                                               req->deflate ? req->deflate
                                                            : &off,
                                               &res->deflate);
}

int ws_handshake_validate(const ws_handshake_request *req,
                          ws_handshake_result *res)
{
    int status;

    memset(res, 0, sizeof(*res));
    res->version = -1;
    res->deflate_result = WS_DEFLATE_NOT_OFFERED;
    if (!header_has_token(req->header(req->baton, "Upgrade"), "websocket")) {
        add_header(res, "Upgrade", "websocket");
        add_header(res, "Sec-WebSocket-Version", WS_HANDSHAKE_VERSIONS);
        return refuse(res, HTTP_UPGRADE_REQUIRED,
                      "not a WebSocket request (no Upgrade: websocket)");
    }
    if ((status = check_method_and_connection(req, res)) != 0
        || (status = check_no_body(req, res)) != 0
        || (status = check_version(req, res)) != 0
        || (status = check_key_and_protocols(req, res)) != 0
        || (status = check_origin(req, res)) != 0) {
        return status;
    }
    negotiate_extensions(req, res);
    return 0;
}
