/*
 * ws_handshake.h - validation of the opening handshake (RFC 6455 4.2.1,
 * RFC 8441), sans-I/O.
 *
 * No socket, no pool, no Apache or APR header: the caller gathers what
 * the request says (method, HTTP version, a way to look headers up) and
 * what the server wants (origin and deflate policies), and gets back a
 * decision: accept, or the HTTP status to refuse with, a reason for the
 * log line and the headers that go with the refusal.  Building the 101
 * stays with the caller.
 *
 *     ws_handshake_request req = { .method = "GET", .http_version = 1001,
 *                                  .header = lookup, .baton = r,
 *                                  .origin = &origins, .deflate = &policy };
 *     ws_handshake_result res;
 *     if (ws_handshake_validate(&req, &res) != 0)
 *         refuse with res.status, res.headers, log res.reason;
 *     else
 *         answer 101 with res.key, res.deflate.response (res.deflate_result
 *         == WS_DEFLATE_ACCEPTED), subprotocols from res.protocols;
 *
 * Every string of the result points into the header values the lookup
 * returned, or into the result itself; nothing is allocated.
 */
#ifndef WS_HANDSHAKE_H
#define WS_HANDSHAKE_H

#include <stddef.h>

#include "ws_deflate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What Sec-WebSocket-Version names in refusals: the versions we speak. */
#define WS_HANDSHAKE_VERSIONS "13, 8, 7"

/* The value of a request header, NULL when absent.  Several lines of one
 * header come joined by ", " (as httpd does). */
typedef const char *(*ws_header_lookup)(void *baton, const char *name);

typedef enum ws_origin_mode {
    WS_ORIGIN_CHECK_OFF = 0,     /* any origin */
    WS_ORIGIN_CHECK_SAME,        /* one of the server's names (below) */
    WS_ORIGIN_CHECK_TRUSTED      /* one of trusted[] */
} ws_origin_mode;

/*
 * Who the server is, for WS_ORIGIN_CHECK_SAME: an origin passes when its
 * scheme is `scheme`, its port is `port` (the scheme's default port when
 * the origin has none) and its host is `name` or one of `aliases`
 * (compared case-insensitively) or matches one of `wild_aliases` (`*`
 * any run of characters, `?` one).  With httpd: ServerName and
 * ServerAlias; the scheme and port of `ServerName scheme://host:port`
 * where given, else those the connection came in on.
 */
typedef struct ws_origin_policy {
    ws_origin_mode mode;
    const char *const *trusted;     /* exact origins, case-insensitively */
    size_t trusted_count;
    const char *scheme;             /* "http" or "https" */
    unsigned port;
    const char *name;
    const char *const *aliases;
    size_t alias_count;
    const char *const *wild_aliases;
    size_t wild_alias_count;
} ws_origin_policy;

typedef struct ws_handshake_request {
    const char *method;             /* exactly as sent: "GET" */
    int http_version;               /* major * 1000 + minor (httpd's) */
    /* An RFC 8441 stream of HTTP/2: there is no Connection header, and
     * the stream's DATA are the WebSocket's bytes, not a request body
     * (mod_http2 adds Transfer-Encoding: chunked to such requests). */
    int http2;
    ws_header_lookup header;
    void *baton;
    const ws_origin_policy *origin;
    const ws_deflate_policy *deflate;
} ws_handshake_request;

/* Long enough for every reason; quoted header values are cut to fit. */
#define WS_HANDSHAKE_REASON_MAX 256
#define WS_HANDSHAKE_HEADERS_MAX 2

typedef struct ws_handshake_header {
    const char *name;
    const char *value;
} ws_handshake_header;

typedef struct ws_handshake_result {
    /* 0: accepted; else the HTTP status to refuse with (400, 403, 426). */
    int status;
    /* Why it was refused, for the log: names the header and quotes the
     * offending value (non-printable bytes escaped).  Empty if accepted. */
    char reason[WS_HANDSHAKE_REASON_MAX];
    /* Headers for the refusal (Upgrade, Sec-WebSocket-Version). */
    ws_handshake_header headers[WS_HANDSHAKE_HEADERS_MAX];
    size_t header_count;
    /* The rest is filled as far as validation got; all of it when
     * accepted. */
    const char *key;                /* Sec-WebSocket-Key, valid */
    int version;                    /* 13, 8 or 7 */
    /* The offered subprotocols: Sec-WebSocket-Protocol as sent (NULL if
     * absent), a valid token list; protocol_count non-empty elements,
     * read them with ws_handshake_next_token. */
    const char *protocols;
    size_t protocol_count;
    /* permessage-deflate: the offer (NULL if none), the outcome, and on
     * WS_DEFLATE_ACCEPTED the agreed parameters and response header. */
    const char *extensions;
    ws_deflate_result deflate_result;
    ws_deflate_negotiation deflate;
} ws_handshake_result;

/* Fills res; returns res->status (0 when the handshake is accepted). */
int ws_handshake_validate(const ws_handshake_request *req,
                          ws_handshake_result *res);

/*
 * The next non-empty element of a comma-separated list (RFC 7230 #rule),
 * without the spaces and tabs around it.  *cursor starts at the list and
 * moves on; returns 0 at the end.
 */
int ws_handshake_next_token(const char **cursor, const char **token,
                            size_t *len);

/* Whether host matches a ServerAlias pattern: case-insensitive, `*` any
 * run of characters (also none), `?` exactly one. */
int ws_handshake_name_matches(const char *pattern, const char *host,
                              size_t host_len);

#ifdef __cplusplus
}
#endif
#endif /* WS_HANDSHAKE_H */
