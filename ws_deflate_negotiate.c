/*
 * ws_deflate_negotiate.c - permessage-deflate (RFC 7692): the client's
 * Sec-WebSocket-Extensions offers parsed, the agreed parameters and the
 * response header.  See ws_deflate.h for the API.
 */
#include "ws_deflate_int.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define EXTENSION_NAME   "permessage-deflate"
#define MIN_ZLIB_BITS    WS_DEFLATE_MIN_ZLIB_BITS
#define MAX_BITS         WS_DEFLATE_MAX_BITS

/* ======================================================================
 * Header parsing (RFC 6455 section 9.1, RFC 7230 sections 3.2.6 and 7)
 *
 *   extension-list  = 1#extension
 *   extension       = token *( OWS ";" OWS param )
 *   param           = token [ OWS "=" OWS ( token / quoted-string ) ]
 *
 * The whole header is checked, even after an acceptable offer was found:
 * a broken header is ignored as a whole.  Empty list elements (", ,")
 * are legal in RFC 7230 lists and arise when empty header lines are
 * joined, so they are skipped; an empty token anywhere else is an error.
 * Names compare case-sensitively, as RFC 7692 spells them.
 * ====================================================================== */

/* A parameter value: token or unescaped quoted-string, kept only as far
 * as a window-bits value could reach. */
#define VALUE_KEEP 8
typedef struct param_value {
    int    present;
    size_t len;                 /* full unescaped length */
    char   text[VALUE_KEEP];    /* first bytes, NUL terminated if short */
} param_value;

/* Bits of pmd_offer.seen, to catch duplicate parameters. */
enum {
    SEEN_SERVER_NCT  = 1,
    SEEN_CLIENT_NCT  = 2,
    SEEN_SERVER_BITS = 4,
    SEEN_CLIENT_BITS = 8
};

/* One permessage-deflate offer as the client made it. */
typedef struct pmd_offer {
    int acceptable;
    int seen;
    int server_no_context_takeover;
    int client_no_context_takeover;
    int server_max_window_bits;     /* 0: absent */
    int client_max_window_bits;     /* 0: absent or without value */
} pmd_offer;

typedef struct header_scan {
    const char *s;                  /* next unread character */
    int         found_offer;        /* some permessage-deflate offer seen */
    int         found_acceptable;   /* ...and one of them was acceptable */
    pmd_offer   chosen;
} header_scan;

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void skip_ows(header_scan *hs)
{
    while (is_ows(*hs->s))
        hs->s++;
}

/* Returns the token's length (0: none there). */
static size_t take_token(header_scan *hs, const char **start)
{
    *start = hs->s;
    while (is_tchar((unsigned char)*hs->s))
        hs->s++;
    return (size_t)(hs->s - *start);
}

static void value_append(param_value *v, char c)
{
    if (v->len + 1 < VALUE_KEEP)
        v->text[v->len] = c;
    v->len++;
}

static int is_qdtext(unsigned char c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

static int is_quotable(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Reads a quoted-string after its opening quote; 0 when it never ends. */
static int take_quoted(header_scan *hs, param_value *v)
{
    for (;;) {
        unsigned char c = (unsigned char)*hs->s;
        if (c == '"') {
            hs->s++;
            return 1;
        }
        if (c == '\\' && is_quotable((unsigned char)hs->s[1])) {
            value_append(v, hs->s[1]);
            hs->s += 2;
        } else if (is_qdtext(c)) {
            value_append(v, (char)c);
            hs->s++;
        } else {
            return 0;   /* end of string, control character, lone '\' */
        }
    }
}

/* Reads "= value" if present; 0 on a syntax error. */
static int take_value(header_scan *hs, param_value *v)
{
    memset(v, 0, sizeof *v);
    if (*hs->s != '=')
        return 1;
    hs->s++;
    skip_ows(hs);
    v->present = 1;
    if (*hs->s == '"') {
        hs->s++;
        if (!take_quoted(hs, v))
            return 0;
    } else {
        const char *tok;
        size_t n = take_token(hs, &tok), i;
        if (n == 0)
            return 0;
        for (i = 0; i < n; i++)
            value_append(v, tok[i]);
    }
    v->text[v->len < VALUE_KEEP ? v->len : VALUE_KEEP - 1] = '\0';
    skip_ows(hs);
    return 1;
}

/* "8".."15" exactly: no sign, no leading zero, no blanks. */
static int parse_window_bits(const param_value *v)
{
    const char *t = v->text;
    if (v->len == 1 && (t[0] == '8' || t[0] == '9'))
        return t[0] - '0';
    if (v->len == 2 && t[0] == '1' && t[1] >= '0' && t[1] <= '5')
        return 10 + (t[1] - '0');
    return 0;
}

static int name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(name, want, n) == 0;
}

/* Marks a parameter seen; 0 when it was already. */
static int first_time(pmd_offer *o, int bit)
{
    if (o->seen & bit)
        return 0;
    o->seen |= bit;
    return 1;
}

/* Applies one parameter to an offer; any doubt makes it unacceptable. */
static void offer_add_param(pmd_offer *o, const char *name, size_t n,
                            const param_value *v)
{
    int ok;
    if (name_is(name, n, "server_no_context_takeover")) {
        ok = first_time(o, SEEN_SERVER_NCT) && !v->present;
        o->server_no_context_takeover = 1;
    } else if (name_is(name, n, "client_no_context_takeover")) {
        ok = first_time(o, SEEN_CLIENT_NCT) && !v->present;
        o->client_no_context_takeover = 1;
    } else if (name_is(name, n, "server_max_window_bits")) {
        ok = first_time(o, SEEN_SERVER_BITS) && v->present;
        o->server_max_window_bits = ok ? parse_window_bits(v) : 0;
        ok = ok && o->server_max_window_bits != 0;
    } else if (name_is(name, n, "client_max_window_bits")) {
        ok = first_time(o, SEEN_CLIENT_BITS);
        if (ok && v->present) {
            o->client_max_window_bits = parse_window_bits(v);
            ok = o->client_max_window_bits != 0;
        }
    } else {
        ok = 0;     /* unknown parameter */
    }
    if (!ok)
        o->acceptable = 0;
}

/*
 * Raw deflate with a 256-byte window is refused by zlib (older versions
 * silently used 512 bytes, which a peer inflating with 256 bytes would
 * reject), so a client that insists on server_max_window_bits=8 is
 * declined: RFC 7692 section 7.1.2.1 lets a server decline such an offer.
 */
static int offer_is_supported(const pmd_offer *o)
{
    return o->acceptable && o->server_max_window_bits != 8;
}

static void remember_offer(header_scan *hs, const pmd_offer *o)
{
    hs->found_offer = 1;
    if (!hs->found_acceptable && offer_is_supported(o)) {
        hs->found_acceptable = 1;
        hs->chosen = *o;
    }
}

/* Reads "*( ; param )" after an extension name; 0 on a syntax error. */
static int take_params(header_scan *hs, pmd_offer *o)
{
    while (*hs->s == ';') {
        const char *name;
        size_t n;
        param_value v;
        hs->s++;
        skip_ows(hs);
        n = take_token(hs, &name);
        if (n == 0)
            return 0;
        skip_ows(hs);
        if (!take_value(hs, &v))
            return 0;
        if (o)
            offer_add_param(o, name, n, &v);
    }
    return 1;
}

/* Reads one list element (possibly empty); 0 on a syntax error. */
static int take_extension(header_scan *hs)
{
    const char *name;
    size_t n;
    pmd_offer offer;
    int is_pmd;

    skip_ows(hs);
    if (*hs->s == ',' || *hs->s == '\0')
        return 1;                       /* empty list element */
    n = take_token(hs, &name);
    if (n == 0)
        return 0;
    skip_ows(hs);
    is_pmd = name_is(name, n, EXTENSION_NAME);
    memset(&offer, 0, sizeof offer);
    offer.acceptable = 1;
    if (!take_params(hs, is_pmd ? &offer : NULL))
        return 0;
    if (is_pmd)
        remember_offer(hs, &offer);
    return 1;
}

/* Walks the whole list; 0 when the header is malformed. */
static int scan_header(header_scan *hs)
{
    for (;;) {
        if (!take_extension(hs))
            return 0;
        if (*hs->s == '\0')
            return 1;
        if (*hs->s != ',')
            return 0;                   /* garbage after an element */
        hs->s++;
    }
}

/* ======================================================================
 * Deciding the agreed parameters (RFC 7692 section 7.1)
 * ====================================================================== */

void ws_deflate_policy_default(ws_deflate_policy *policy)
{
    memset(policy, 0, sizeof *policy);
    policy->enabled = 1;
    policy->server_max_window_bits = MAX_BITS;
    policy->level = Z_DEFAULT_COMPRESSION;
    policy->mem_level = 8;
}

/* Our window: the policy's, never above what the client allows. */
static int agree_server_bits(const pmd_offer *o, const ws_deflate_policy *p)
{
    int bits = ws_deflate_clamp(p->server_max_window_bits, 8, MAX_BITS,
                                MAX_BITS);
    if (bits < MIN_ZLIB_BITS)
        bits = MIN_ZLIB_BITS;
    if (o->server_max_window_bits)
        bits = ws_deflate_min(bits, o->server_max_window_bits);
    return bits;
}

/*
 * The client's window: the policy may shrink it, and a value in the
 * offer is a promise we can hold the client to by echoing it, which
 * saves inflate memory.  Without client_max_window_bits in the offer we
 * may not answer with it (section 7.1.2.2), so the window stays 15.
 */
static int agree_client_bits(const pmd_offer *o, const ws_deflate_policy *p)
{
    int bits = MAX_BITS;
    if (!(o->seen & SEEN_CLIENT_BITS))
        return MAX_BITS;
    if (p->client_max_window_bits)
        bits = ws_deflate_clamp(p->client_max_window_bits, 8, MAX_BITS,
                                MAX_BITS);
    if (o->client_max_window_bits)
        bits = ws_deflate_min(bits, o->client_max_window_bits);
    return bits;
}

static void agree(const pmd_offer *o, const ws_deflate_policy *p,
                  ws_deflate_params *params)
{
    memset(params, 0, sizeof *params);
    params->server_max_window_bits = agree_server_bits(o, p);
    params->client_max_window_bits = agree_client_bits(o, p);
    params->server_no_context_takeover =
        o->server_no_context_takeover || p->server_no_context_takeover;
    /* A client offering client_no_context_takeover has promised it
     * (section 7.1.1.2); echoing it lets us drop the inflate window. */
    params->client_no_context_takeover =
        o->client_no_context_takeover || p->client_no_context_takeover;
    params->level = ws_deflate_clamp(p->level, -1, 9, Z_DEFAULT_COMPRESSION);
    params->mem_level = ws_deflate_clamp(p->mem_level, 1, 9, 8);
    params->min_size = p->min_size;
}

/* The longest response build_response can produce must fit. */
#define LONGEST_RESPONSE EXTENSION_NAME "; server_no_context_takeover; " \
    "client_no_context_takeover; server_max_window_bits=15; "             \
    "client_max_window_bits=15"
typedef char response_fits[sizeof LONGEST_RESPONSE <= WS_DEFLATE_RESPONSE_MAX
                           ? 1 : -1];

static void append(char *buf, size_t cap, const char *text)
{
    size_t used = strlen(buf);
    snprintf(buf + used, cap - used, "%s", text);
}

static void append_bits(char *buf, size_t cap, const char *name, int bits)
{
    char item[48];
    snprintf(item, sizeof item, "; %s=%d", name, bits);
    append(buf, cap, item);
}

/* Mentions only what differs from the defaults, plus the windows the
 * client asked about (it must be told the server window it asked to cap). */
static void build_response(const pmd_offer *o, const ws_deflate_params *a,
                           char *buf, size_t cap)
{
    buf[0] = '\0';
    append(buf, cap, EXTENSION_NAME);
    if (a->server_no_context_takeover)
        append(buf, cap, "; server_no_context_takeover");
    if (a->client_no_context_takeover)
        append(buf, cap, "; client_no_context_takeover");
    if (o->server_max_window_bits || a->server_max_window_bits < MAX_BITS)
        append_bits(buf, cap, "server_max_window_bits",
                    a->server_max_window_bits);
    if ((o->seen & SEEN_CLIENT_BITS) && a->client_max_window_bits < MAX_BITS)
        append_bits(buf, cap, "client_max_window_bits",
                    a->client_max_window_bits);
}

ws_deflate_result ws_deflate_negotiate(const char *header,
                                       const ws_deflate_policy *policy,
                                       ws_deflate_negotiation *neg)
{
    header_scan hs;

    if (!policy->enabled || header == NULL)
        return WS_DEFLATE_NOT_OFFERED;
    memset(&hs, 0, sizeof hs);
    hs.s = header;
    if (!scan_header(&hs))
        return WS_DEFLATE_MALFORMED;
    if (!hs.found_offer)
        return WS_DEFLATE_NOT_OFFERED;
    if (!hs.found_acceptable)
        return WS_DEFLATE_DECLINED;
    agree(&hs.chosen, policy, &neg->params);
    build_response(&hs.chosen, &neg->params, neg->response,
                   sizeof neg->response);
    return WS_DEFLATE_ACCEPTED;
}

const char *ws_deflate_result_name(ws_deflate_result r)
{
    switch (r) {
    case WS_DEFLATE_ACCEPTED:    return "accepted";
    case WS_DEFLATE_NOT_OFFERED: return "not offered";
    case WS_DEFLATE_DECLINED:    return "declined";
    case WS_DEFLATE_MALFORMED:   return "malformed header";
    }
    return "unknown";
}
