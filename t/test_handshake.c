/*
 * t/test_handshake.c - unit tests of ws_handshake.c, the opening
 * handshake's validation (the integration tests in t/test_handshake.py
 * cover the same rules through a real httpd).
 *
 * Prints each failure with file:line, then "N passed, N failed"; exits 1
 * on any failure.
 */
#include "../ws_handshake.h"
#include "check.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* A request: name/value pairs ending with NULL, over a valid base. */
typedef struct fake {
    const char *const *fields;
} fake;

static const char *const base_fields[] = {
    "Upgrade", "websocket",
    "Connection", "keep-alive, Upgrade",
    "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version", "13",
    NULL
};

static const char *lookup(void *baton, const char *name)
{
    const char *const *f = ((fake *)baton)->fields;
    size_t i;

    /* The test's own fields first, so they can replace the base's; a
     * value of NULL removes the header. */
    for (i = 0; f && f[i]; i += 2) {
        if (!strcasecmp(f[i], name)) {
            return f[i + 1];
        }
    }
    for (i = 0; base_fields[i]; i += 2) {
        if (!strcasecmp(base_fields[i], name)) {
            return base_fields[i + 1];
        }
    }
    return NULL;
}

static const char *const aliases[] = { "alias.example.com" };
static const char *const wild[] = { "*.wild.example", "ws?.example.net" };
static const char *const trusted[] = { "https://good.example" };

static ws_origin_policy same_policy(void)
{
    ws_origin_policy p;

    memset(&p, 0, sizeof(p));
    p.mode = WS_ORIGIN_CHECK_SAME;
    p.scheme = "https";
    p.port = 443;
    p.name = "ws.example.com";
    p.aliases = aliases;
    p.alias_count = 1;
    p.wild_aliases = wild;
    p.wild_alias_count = 2;
    p.trusted = trusted;
    p.trusted_count = 1;
    return p;
}

static int validate(const char *method, int http_version, int http2,
                    const ws_origin_policy *origin,
                    const char *const *fields, ws_handshake_result *res)
{
    fake f = { fields };
    ws_handshake_request req;

    memset(&req, 0, sizeof(req));
    req.method = method;
    req.http_version = http_version;
    req.http2 = http2;
    req.header = lookup;
    req.baton = &f;
    req.origin = origin;
    return ws_handshake_validate(&req, res);
}

static int status_of(const char *const *fields)
{
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;

    return validate("GET", 1001, 0, &pol, fields, &res);
}

static int has_header(const ws_handshake_result *res, const char *name,
                      const char *value)
{
    size_t i;

    for (i = 0; i < res->header_count; i++) {
        if (!strcmp(res->headers[i].name, name)
            && !strcmp(res->headers[i].value, value)) {
            return 1;
        }
    }
    return 0;
}

static void test_accept(void)
{
    const char *const fields[] = {
        "Sec-WebSocket-Protocol", "chat, , superchat",
        "Sec-WebSocket-Extensions", "permessage-deflate", NULL
    };
    ws_origin_policy pol = same_policy();
    ws_deflate_policy deflate;
    ws_handshake_request req;
    ws_handshake_result res;
    fake f = { fields };
    const char *cursor, *token;
    size_t len;

    CHECK(validate("GET", 1001, 0, &pol, fields, &res) == 0);
    CHECK(res.status == 0 && res.reason[0] == '\0');
    CHECK(res.version == 13);
    CHECK(!strcmp(res.key, "dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(res.protocol_count == 2);
    cursor = res.protocols;
    CHECK(ws_handshake_next_token(&cursor, &token, &len)
          && len == 4 && !strncmp(token, "chat", 4));
    CHECK(ws_handshake_next_token(&cursor, &token, &len)
          && len == 9 && !strncmp(token, "superchat", 9));
    CHECK(!ws_handshake_next_token(&cursor, &token, &len));
    /* No deflate policy: the extension is not taken. */
    CHECK(res.deflate_result == WS_DEFLATE_NOT_OFFERED);

    ws_deflate_policy_default(&deflate);
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.http_version = 1001;
    req.header = lookup;
    req.baton = &f;
    req.origin = &pol;
    req.deflate = &deflate;
    CHECK(ws_handshake_validate(&req, &res) == 0);
    CHECK(res.deflate_result == WS_DEFLATE_ACCEPTED);
    CHECK(!strncmp(res.deflate.response, "permessage-deflate", 18));
}

static void test_request_line(void)
{
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;

    CHECK(validate("HEAD", 1001, 0, &pol, NULL, &res) == 400);
    CHECK(strstr(res.reason, "'HEAD'") != NULL);
    CHECK(validate("get", 1001, 0, &pol, NULL, &res) == 400);
    CHECK(validate("POST", 1001, 0, &pol, NULL, &res) == 400);
    CHECK(validate("GET", 1000, 0, &pol, NULL, &res) == 400);
    CHECK(strstr(res.reason, "HTTP/1.0") != NULL);
    CHECK(validate("GET", 2000, 0, &pol, NULL, &res) == 0);
}

static void test_upgrade_and_connection(void)
{
    const char *const no_upgrade[] = { "Upgrade", NULL, NULL };
    const char *const h2c[] = { "Upgrade", "h2c", NULL };
    const char *const versioned[] = { "Upgrade", "foo/2, WebSocket", NULL };
    const char *const no_conn[] = { "Connection", NULL, NULL };
    const char *const upgrades[] = { "Connection", "upgrades", NULL };
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;

    CHECK(validate("GET", 1001, 0, &pol, no_upgrade, &res) == 426);
    CHECK(has_header(&res, "Upgrade", "websocket"));
    CHECK(has_header(&res, "Sec-WebSocket-Version", WS_HANDSHAKE_VERSIONS));
    /* 426 comes first, whatever else is wrong. */
    CHECK(validate("HEAD", 1000, 0, &pol, h2c, &res) == 426);
    CHECK(status_of(versioned) == 0);
    CHECK(status_of(no_conn) == 400);
    CHECK(status_of(upgrades) == 400);
    /* HTTP/2 (RFC 8441): no Connection header. */
    CHECK(validate("GET", 2000, 1, &pol, no_conn, &res) == 0);
}

static void test_body(void)
{
    const char *const cl[] = { "Content-Length", "12", NULL };
    const char *const cl0[] = { "Content-Length", "0", NULL };
    const char *const cl00[] = { "Content-Length", "00", NULL };
    const char *const te[] = { "Transfer-Encoding", "chunked", NULL };
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;

    CHECK(validate("GET", 1001, 0, &pol, cl, &res) == 400);
    CHECK(strstr(res.reason, "Content-Length '12'") != NULL);
    CHECK(validate("GET", 1001, 0, &pol, te, &res) == 400);
    CHECK(strstr(res.reason, "Transfer-Encoding 'chunked'") != NULL);
    CHECK(status_of(cl0) == 0);
    CHECK(status_of(cl00) == 400);
    /* mod_http2 adds Transfer-Encoding: chunked to an RFC 8441 stream. */
    CHECK(validate("GET", 2000, 1, &pol, te, &res) == 0);
}

static void test_versions(void)
{
    static const struct { const char *v; int status; } cases[] = {
        { "13", 0 }, { "8", 0 }, { "7", 0 }, { "0", 426 }, { "12", 426 },
        { "255", 426 }, { "256", 400 }, { "999", 400 }, { "1000", 400 },
        { "013", 400 }, { "", 400 }, { "13a", 400 }, { "-13", 400 },
        { " 13", 400 }, { NULL, 400 },
    };
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const f[] = { "Sec-WebSocket-Version", cases[i].v, NULL };
        int status = validate("GET", 1001, 0, &pol, f, &res);

        if (!CHECK(status == cases[i].status)) {
            printf("  version '%s': %d\n", cases[i].v ? cases[i].v : "(none)",
                   status);
        }
        if (status) {
            CHECK(has_header(&res, "Sec-WebSocket-Version",
                             WS_HANDSHAKE_VERSIONS));
        }
    }
}

static void test_keys_and_protocols(void)
{
    static const char *const bad_keys[] = {
        "", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZR==",
        "!!!!!!!!!!!!!!!!!!!!!!==", "dGhlIHNhbXBsZSBub25jZQ==, x", NULL
    };
    static const char *const bad_protocols[] = {
        "a b", "a;b", "\"x\"", "a/b", "chat, a b", ", ,", "", "caf\xc3\xa9",
        NULL
    };
    size_t i;

    for (i = 0; bad_keys[i]; i++) {
        const char *const f[] = { "Sec-WebSocket-Key", bad_keys[i], NULL };
        CHECK(status_of(f) == 400);
    }
    for (i = 0; bad_protocols[i]; i++) {
        const char *const f[] = { "Sec-WebSocket-Protocol", bad_protocols[i],
                                  NULL };
        CHECK(status_of(f) == 400);
    }
}

static void test_origin_same(void)
{
    static const struct { const char *origin; int status; } cases[] = {
        { "https://ws.example.com", 0 },
        { "HTTPS://WS.EXAMPLE.COM", 0 },
        { "https://ws.example.com:443", 0 },
        { "https://alias.example.com", 0 },
        { "https://a.wild.example", 0 },
        { "https://ws1.example.net", 0 },
        { "https://ws12.example.net", 403 },
        { "https://wild.example", 403 },
        { "http://ws.example.com", 403 },
        { "https://ws.example.com:8443", 403 },
        { "https://ws.example.com:0443", 403 },
        { "https://ws.example.com:", 403 },
        { "https://ws.example.com/", 403 },
        { "https://user@ws.example.com", 403 },
        { "https://ws.example.com.evil.example", 403 },
        { "https://evil.example", 403 },
        { "null", 403 },
        { "", 403 },
    };
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const f[] = { "Origin", cases[i].origin, NULL };
        int status = validate("GET", 1001, 0, &pol, f, &res);

        if (!CHECK(status == cases[i].status)) {
            printf("  origin '%s': %d (%s)\n", cases[i].origin, status,
                   res.reason);
        }
    }
    {
        const char *const f[] = { "Origin", "https://evil.example", NULL };
        validate("GET", 1001, 0, &pol, f, &res);
        CHECK(strstr(res.reason, "'https://ws.example.com:443'") != NULL);
    }
}

static void test_origin_headers_and_modes(void)
{
    const char *const v8_origin[] = { "Sec-WebSocket-Version", "8",
                                      "Origin", "https://evil.example", NULL };
    const char *const v8_sec[] = { "Sec-WebSocket-Version", "8",
                                   "Sec-WebSocket-Origin",
                                   "https://evil.example", NULL };
    const char *const v13_sec[] = { "Sec-WebSocket-Origin",
                                    "https://evil.example", NULL };
    const char *const both[] = { "Origin", "https://ws.example.com",
                                 "Sec-WebSocket-Origin",
                                 "https://evil.example", NULL };
    const char *const good[] = { "Origin", "https://GOOD.example", NULL };
    const char *const ours[] = { "Origin", "https://ws.example.com", NULL };
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;

    CHECK(validate("GET", 1001, 0, &pol, v8_origin, &res) == 403);
    CHECK(!strncmp(res.reason, "Origin ", 7));
    CHECK(validate("GET", 1001, 0, &pol, v8_sec, &res) == 403);
    CHECK(!strncmp(res.reason, "Sec-WebSocket-Origin ", 21));
    CHECK(status_of(v13_sec) == 403);
    CHECK(status_of(both) == 403);

    pol.mode = WS_ORIGIN_CHECK_TRUSTED;
    CHECK(validate("GET", 1001, 0, &pol, good, &res) == 0);
    CHECK(validate("GET", 1001, 0, &pol, ours, &res) == 403);
    CHECK(strstr(res.reason, "WebSocketTrustedOrigin") != NULL);
    pol.mode = WS_ORIGIN_CHECK_OFF;
    CHECK(validate("GET", 1001, 0, &pol, v8_sec, &res) == 0);
    CHECK(validate("GET", 1001, 0, NULL, v8_sec, &res) == 0);
}

static void test_reason_is_printable(void)
{
    char key[400];
    const char *const f[] = { "Sec-WebSocket-Key", key, NULL };
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;
    size_t i;

    memset(key, 'A', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    key[3] = '\x01';
    key[4] = '\xff';
    CHECK(validate("GET", 1001, 0, &pol, f, &res) == 400);
    CHECK(strstr(res.reason, "AAA\\x01\\xffAAA") != NULL);
    CHECK(strstr(res.reason, "...'") != NULL);
    for (i = 0; res.reason[i]; i++) {
        CHECK(res.reason[i] >= 0x20 && res.reason[i] < 0x7f);
    }
}

/* Found by fuzz_handshake: the server's own name and scheme went into
 * the reason unescaped. */
static void test_reason_escapes_server_names(void)
{
    const char *const f[] = { "Origin", "http://evil.example", NULL };
    ws_origin_policy pol = same_policy();
    ws_handshake_result res;
    size_t i;

    pol.name = "ws.\x01" "example\xe9";
    pol.scheme = "h\x85";
    CHECK(validate("GET", 1001, 0, &pol, f, &res) == 403);
    CHECK(strstr(res.reason, "'h\\x85://ws.\\x01example\\xe9:443'") != NULL);
    for (i = 0; res.reason[i]; i++) {
        CHECK(res.reason[i] >= 0x20 && res.reason[i] < 0x7f);
    }
}

static void test_name_matches(void)
{
    const char *h = "a.b.example.com";

    CHECK(ws_handshake_name_matches("*.example.com", h, strlen(h)));
    CHECK(ws_handshake_name_matches("*", h, strlen(h)));
    CHECK(ws_handshake_name_matches("A.?.EXAMPLE.*", h, strlen(h)));
    CHECK(ws_handshake_name_matches("*b*com", h, strlen(h)));
    CHECK(!ws_handshake_name_matches("*.example.org", h, strlen(h)));
    CHECK(!ws_handshake_name_matches("?.example.com", h, strlen(h)));
    CHECK(!ws_handshake_name_matches("*.example.com", "example.com", 11));
    CHECK(ws_handshake_name_matches("", "", 0));
    CHECK(!ws_handshake_name_matches("?", "", 0));
}

int main(void)
{
    test_accept();
    test_request_line();
    test_upgrade_and_connection();
    test_body();
    test_versions();
    test_keys_and_protocols();
    test_origin_same();
    test_origin_headers_and_modes();
    test_reason_is_printable();
    test_reason_escapes_server_names();
    test_name_matches();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
