/*
 * wsload_handshake.c - the opening handshake: the upgrade request with a
 * fresh key, and the check of the server's 101 (Upgrade, Connection,
 * Sec-WebSocket-Accept, the permessage-deflate answer, the subprotocol).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wsload.h"

static void base64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = digits[v >> 18];
        *out++ = digits[(v >> 12) & 63];
        *out++ = digits[(v >> 6) & 63];
        *out++ = digits[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *out++ = digits[v >> 18];
        *out++ = digits[(v >> 12) & 63];
        *out++ = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

/* Sec-WebSocket-Accept for a key: base64(SHA1(key + GUID)), 28 chars. */
static void websocket_accept(const char *key, char out[29])
{
    char joined[128];
    int n = snprintf(joined, sizeof joined, "%s%s", key, WS_GUID);
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)joined, (size_t)n, digest);
    base64_encode(digest, sizeof digest, out);
}

/* Guards against a broken crypto build: the example from RFC 6455 1.3. */
void check_accept_computation(void)
{
    char accept[29];
    websocket_accept("dGhlIHNhbXBsZSBub25jZQ==", accept);
    if (strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0)
        die("Sec-WebSocket-Accept self-check failed (%s)", accept);
}

void send_upgrade_request(struct worker *w, struct conn *c)
{
    uint8_t nonce[16];
    uint64_t r1 = rng_next(&w->rng), r2 = rng_next(&w->rng);
    memcpy(nonce, &r1, 8);
    memcpy(nonce + 8, &r2, 8);
    char key[25];
    base64_encode(nonce, sizeof nonce, key);

    c->hs = calloc(1, sizeof *c->hs);
    if (!c->hs)
        die("out of memory (handshake)");
    websocket_accept(key, c->hs->accept);

    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s%s"
                     "\r\n",
                     opt.path, opt.host_header, key,
                     opt.protocol[0] ? "Sec-WebSocket-Protocol: " : "",
                     opt.protocol, opt.protocol[0] ? "\r\n" : "",
                     !opt.deflate ? "" : opt.deflate_takeover
                         ? "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                         : "Sec-WebSocket-Extensions: permessage-deflate; "
                           "client_no_context_takeover; server_no_context_takeover\r\n");
    memcpy(outbuf_reserve(&c->out, (size_t)n), req, (size_t)n);
    c->out.len += (size_t)n;
    c->state = CS_HANDSHAKE;
}
static bool header_value_is(const char *value, const char *want)
{
    return strcasecmp(value, want) == 0;
}

/* The server's permessage-deflate answer (RFC 7692 7.1): sets *pmd;
 * returns NULL when acceptable.  Only what we offered may come back. */
static const char *parse_extension_answer(char *value, uint8_t *pmd)
{
    if (!opt.deflate)
        return "server selected an extension that was not offered";
    if (*pmd & PMD_ON)
        return "server selected permessage-deflate twice";
    char *save = NULL;
    char *tok = strtok_r(value, ";", &save);
    while (tok && isspace((unsigned char)*tok))
        tok++;
    if (!tok || strncasecmp(tok, "permessage-deflate", 18) != 0 ||
        (tok[18] && !isspace((unsigned char)tok[18])))
        return "server selected an extension other than permessage-deflate";
    uint8_t flags = PMD_ON;
    if (!opt.deflate_takeover)
        flags |= PMD_CLIENT_NO_CTX;    /* we promised it in the offer */
    while ((tok = strtok_r(NULL, ";", &save)) != NULL) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        char *eq = strchr(tok, '=');
        char *val = NULL;
        if (eq) {
            *eq = '\0';
            val = eq + 1;
            for (char *t = eq; t > tok && isspace((unsigned char)t[-1]);)
                *--t = '\0';
            while (isspace((unsigned char)*val))
                val++;
            if (*val == '"') {
                val++;
                char *q = strchr(val, '"');
                if (q)
                    *q = '\0';
            }
        }
        if (strcasecmp(tok, "server_no_context_takeover") == 0 && !val) {
            flags |= PMD_SERVER_NO_CTX;
        } else if (strcasecmp(tok, "client_no_context_takeover") == 0 && !val) {
            flags |= PMD_CLIENT_NO_CTX;
        } else if (strcasecmp(tok, "server_max_window_bits") == 0 && val) {
            long bits = strtol(val, &end, 10);
            if (*end || bits < 8 || bits > 15)     /* our inflater takes any */
                return "bad server_max_window_bits";
        } else if (strcasecmp(tok, "client_max_window_bits") == 0) {
            return "server sent client_max_window_bits, which was not offered";
        } else {
            return "unknown permessage-deflate parameter";
        }
    }
    *pmd = flags;
    return NULL;
}

/* Validates the 101 response (NUL-terminated head); NULL when acceptable.
 * *pmd gets what permessage-deflate negotiated (0: none). */
static const char *check_upgrade_response(char *head, const char *accept, uint8_t *pmd)
{
    *pmd = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0 && strncmp(head, "HTTP/1.0 101", 12) != 0)
        return "status is not 101";
    bool upgrade = false, connection = false, accepted = false;
    char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        char *eol = strstr(line, "\r\n");
        if (eol)
            *eol = '\0';
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            char *value = colon + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            for (char *end = value + strlen(value); end > value && isspace((unsigned char)end[-1]);)
                *--end = '\0';
            if (header_value_is(line, "Upgrade"))
                upgrade = header_value_is(value, "websocket");
            else if (header_value_is(line, "Connection"))
                connection = strcasestr(value, "upgrade") != NULL;
            else if (header_value_is(line, "Sec-WebSocket-Accept"))
                accepted = strcmp(value, accept) == 0;
            else if (header_value_is(line, "Sec-WebSocket-Extensions")) {
                const char *why = parse_extension_answer(value, pmd);
                if (why)
                    return why;
            }
            else if (header_value_is(line, "Sec-WebSocket-Protocol") &&
                     (!opt.protocol[0] || strcmp(value, opt.protocol) != 0))
                return "server selected a subprotocol that was not offered";
        }
        line = eol;
    }
    if (!upgrade)
        return "missing or wrong Upgrade header";
    if (!connection)
        return "Connection header lacks 'upgrade'";
    if (!accepted)
        return "missing or wrong Sec-WebSocket-Accept";
    return NULL;
}

static void log_bad_response(struct worker *w, struct conn *c, const char *why)
{
    char *eol = strstr(c->hs->buf, "\r\n");
    if (eol)
        *eol = '\0';
    /* counted by attempt_failed; this adds the detail */
    if (w->reported < MAX_REPORTED_ERRORS)
        fprintf(stderr, "wsload: worker %d conn %ld: bad handshake response: %s (%.80s)\n",
                w->id, w->first + conn_index(w, c), why, c->hs->buf);
}

bool handshake_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    struct handshake *hs = c->hs;
    size_t room = HANDSHAKE_MAX - hs->len;
    size_t take = n < room ? n : room;
    size_t search_from = hs->len >= 3 ? hs->len - 3 : 0;
    memcpy(hs->buf + hs->len, p, take);
    hs->len += take;
    hs->buf[hs->len] = '\0';
    char *end = memmem(hs->buf + search_from, hs->len - search_from, "\r\n\r\n", 4);
    if (!end) {
        if (hs->len < HANDSHAKE_MAX)
            return true;
        attempt_failed(w, c, 0, "handshake (response head too large)");
        return false;
    }
    size_t head_len = (size_t)(end - hs->buf) + 4;
    hs->buf[head_len - 2] = '\0';     /* leaves "\r\n" after the last header */
    uint8_t pmd = 0;
    const char *why = check_upgrade_response(hs->buf, hs->accept, &pmd);
    if (why) {
        log_bad_response(w, c, why);
        attempt_failed(w, c, 0, "handshake");
        return false;
    }
    c->pmd = pmd;                     /* before a mode queues its first message */
    if (pmd)
        w->res.pmd_conns++;
    conn_opened(w, c);
    /* frames sent right behind the 101 must not be lost */
    bool ok = ws_input(w, c, (uint8_t *)hs->buf + head_len, hs->len - head_len) &&
              ws_input(w, c, p + take, n - take);
    if (ok) {
        free(c->hs);
        c->hs = NULL;
    }
    return ok;
}
