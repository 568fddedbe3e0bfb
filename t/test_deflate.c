/*
 * t/test_deflate.c - unit tests of ws_deflate (permessage-deflate).
 *
 *   gcc -std=gnu99 -Wall -Wextra -O2 -g -o t/test_deflate \
 *       t/test_deflate.c ws_deflate.c ws_frame.c -lz
 *
 * Prints each failure with file:line, then "N passed, N failed"; exits 1
 * when anything failed.  Uses nothing from ws_frame.c.
 */
#include "../ws_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int passed, failed;

static int check(int ok, const char *file, int line, const char *what)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("%s:%d: FAILED: %s\n", file, line, what);
    }
    return ok;
}

#define CHECK(cond) check(!!(cond), __FILE__, __LINE__, #cond)

/* Like CHECK, with a description of the case for loops and tables. */
#define CHECK_CASE(cond, ...)                                          \
    do {                                                               \
        if (!CHECK(cond)) {                                            \
            printf("    case: ");                                      \
            printf(__VA_ARGS__);                                       \
            printf("\n");                                              \
        }                                                              \
    } while (0)

/* ---------------------------------------------------------------------
 * Negotiation
 * ------------------------------------------------------------------- */

static ws_deflate_policy default_policy(void)
{
    ws_deflate_policy p;
    ws_deflate_policy_default(&p);
    return p;
}

/* Checks the result and, when accepted, the exact response. */
static void expect_with(const ws_deflate_policy *policy, const char *header,
                        ws_deflate_result want, const char *response,
                        const char *file, int line)
{
    ws_deflate_negotiation neg;
    ws_deflate_result got;
    char what[512];

    memset(&neg, 0, sizeof neg);
    got = ws_deflate_negotiate(header, policy, &neg);
    snprintf(what, sizeof what, "header [%s]: got %s [%s], want %s [%s]",
             header ? header : "(null)", ws_deflate_result_name(got),
             got == WS_DEFLATE_ACCEPTED ? neg.response : "",
             ws_deflate_result_name(want), response ? response : "");
    check(got == want && (want != WS_DEFLATE_ACCEPTED ||
                          strcmp(neg.response, response) == 0),
          file, line, what);
}

#define EXPECT_P(policy, header, result, response) \
    expect_with(policy, header, result, response, __FILE__, __LINE__)

#define ACCEPTS(header, response) \
    EXPECT_P(&defaults, header, WS_DEFLATE_ACCEPTED, response)
#define DECLINES(header) \
    EXPECT_P(&defaults, header, WS_DEFLATE_DECLINED, NULL)
#define IGNORES(header) \
    EXPECT_P(&defaults, header, WS_DEFLATE_NOT_OFFERED, NULL)
#define MALFORMED(header) \
    EXPECT_P(&defaults, header, WS_DEFLATE_MALFORMED, NULL)

#define PMD "permessage-deflate"

static void test_negotiate_basic(void)
{
    ws_deflate_policy defaults = default_policy();
    ws_deflate_policy off = default_policy();
    off.enabled = 0;

    IGNORES(NULL);
    IGNORES("");
    IGNORES("   ");
    IGNORES(", ,");
    IGNORES("x-webkit-deflate-frame");
    IGNORES("foo, bar; baz=1; q=\"a, b; c\"");
    IGNORES("Permessage-Deflate");          /* names are case-sensitive */
    IGNORES("permessage-deflate-x");
    EXPECT_P(&off, PMD, WS_DEFLATE_NOT_OFFERED, NULL);

    ACCEPTS(PMD, PMD);
    ACCEPTS("  " PMD "  ", PMD);
    ACCEPTS("\t" PMD "\t;\tserver_no_context_takeover\t",
            PMD "; server_no_context_takeover");
    ACCEPTS(PMD ";server_no_context_takeover;client_no_context_takeover",
            PMD "; server_no_context_takeover; client_no_context_takeover");
    ACCEPTS(", , " PMD " ,", PMD);          /* empty list elements */
    ACCEPTS("x-webkit-deflate-frame, " PMD, PMD);
    ACCEPTS("foo; a=\"x, y\"; b, " PMD "; client_max_window_bits", PMD);
    ACCEPTS("foo;bar=\"permessage-deflate\"," PMD, PMD);
    ACCEPTS(PMD " ; server_max_window_bits = 10",
            PMD "; server_max_window_bits=10");
}

static void test_negotiate_values(void)
{
    ws_deflate_policy defaults = default_policy();

    /* Quoted values are values like any other. */
    ACCEPTS(PMD "; client_max_window_bits=\"10\"",
            PMD "; client_max_window_bits=10");
    ACCEPTS(PMD "; server_max_window_bits=\"12\"",
            PMD "; server_max_window_bits=12");
    ACCEPTS(PMD "; server_max_window_bits=\"1\\2\"",   /* quoted-pair */
            PMD "; server_max_window_bits=12");
    ACCEPTS(PMD "; client_max_window_bits=9", PMD "; client_max_window_bits=9");
    ACCEPTS(PMD "; client_max_window_bits=8", PMD "; client_max_window_bits=8");
    ACCEPTS(PMD "; client_max_window_bits=15", PMD);
    ACCEPTS(PMD "; server_max_window_bits=15",
            PMD "; server_max_window_bits=15");
    ACCEPTS(PMD "; server_max_window_bits=9",
            PMD "; server_max_window_bits=9");

    /* Bad window values make the offer unacceptable. */
    DECLINES(PMD "; server_max_window_bits=7");
    DECLINES(PMD "; server_max_window_bits=16");
    DECLINES(PMD "; server_max_window_bits=010");
    DECLINES(PMD "; server_max_window_bits=09");
    DECLINES(PMD "; server_max_window_bits=0");
    DECLINES(PMD "; server_max_window_bits=100");
    DECLINES(PMD "; server_max_window_bits=1a");
    DECLINES(PMD "; server_max_window_bits=+9");
    DECLINES(PMD "; server_max_window_bits=-9");
    DECLINES(PMD "; server_max_window_bits=9.0");
    DECLINES(PMD "; server_max_window_bits=0x9");
    DECLINES(PMD "; server_max_window_bits=\"\"");
    DECLINES(PMD "; server_max_window_bits=\"1 0\"");
    DECLINES(PMD "; server_max_window_bits=\" 10\"");
    DECLINES(PMD "; server_max_window_bits=\"10 \"");
    DECLINES(PMD "; server_max_window_bits=\"1000000000000000000010\"");
    DECLINES(PMD "; server_max_window_bits");          /* needs a value */
    DECLINES(PMD "; server_max_window_bits=8");        /* zlib cannot */
    DECLINES(PMD "; client_max_window_bits=7");
    DECLINES(PMD "; client_max_window_bits=16");
    DECLINES(PMD "; client_max_window_bits=010");
    DECLINES(PMD "; client_max_window_bits=\"\"");
    DECLINES(PMD "; client_max_window_bits=\"1 0\"");
    DECLINES(PMD "; server_no_context_takeover=1");
    DECLINES(PMD "; server_no_context_takeover=\"\"");
    DECLINES(PMD "; client_no_context_takeover=true");
    DECLINES(PMD "; client_no_context_takeover=\"\"");
}

static void test_negotiate_offers(void)
{
    ws_deflate_policy defaults = default_policy();

    /* Duplicates and unknown parameters spoil that offer only. */
    DECLINES(PMD "; server_no_context_takeover; server_no_context_takeover");
    DECLINES(PMD "; client_no_context_takeover; client_no_context_takeover");
    DECLINES(PMD "; server_max_window_bits=10; server_max_window_bits=10");
    DECLINES(PMD "; client_max_window_bits; client_max_window_bits");
    DECLINES(PMD "; client_max_window_bits=9; client_max_window_bits");
    DECLINES(PMD "; foo");
    DECLINES(PMD "; foo=1");
    DECLINES(PMD "; Server_No_Context_Takeover");
    DECLINES(PMD "; foo, " PMD "; bar");
    ACCEPTS(PMD "; foo, " PMD "; client_max_window_bits=11",
            PMD "; client_max_window_bits=11");
    ACCEPTS(PMD "; server_max_window_bits=8, " PMD
            "; server_max_window_bits=9",
            PMD "; server_max_window_bits=9");
    ACCEPTS(PMD "; server_max_window_bits=16, x-foo, " PMD, PMD);
    ACCEPTS(PMD "; client_max_window_bits=\"x\"," PMD
            ";server_no_context_takeover",
            PMD "; server_no_context_takeover");

    /* The first acceptable offer wins, not the best one. */
    ACCEPTS(PMD "; server_max_window_bits=10, " PMD,
            PMD "; server_max_window_bits=10");
    ACCEPTS(PMD ", " PMD "; server_max_window_bits=10", PMD);
    ACCEPTS(PMD "; client_no_context_takeover, " PMD,
            PMD "; client_no_context_takeover");
    ACCEPTS("foo, " PMD "; server_no_context_takeover, bar, " PMD,
            PMD "; server_no_context_takeover");

    /* Parameter order does not matter. */
    ACCEPTS(PMD "; client_max_window_bits=10; server_max_window_bits=11;"
            " client_no_context_takeover; server_no_context_takeover",
            PMD "; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=11; client_max_window_bits=10");
}

static void test_negotiate_malformed(void)
{
    ws_deflate_policy defaults = default_policy();

    MALFORMED(PMD ";");
    MALFORMED(PMD "; ");
    MALFORMED(PMD ";;server_no_context_takeover");
    MALFORMED(PMD "; server_no_context_takeover;");
    MALFORMED("; " PMD);
    MALFORMED("=" PMD);
    MALFORMED(PMD "=1");
    MALFORMED(PMD " x");
    MALFORMED(PMD "; a b");
    MALFORMED(PMD "; a=");
    MALFORMED(PMD "; a= ;b");
    MALFORMED(PMD "; a==1");
    MALFORMED(PMD "; a=1 2");
    MALFORMED(PMD "; a=\"x\"y");
    MALFORMED(PMD "; client_max_window_bits=\"10");      /* unbalanced */
    MALFORMED(PMD "; client_max_window_bits=10\"");
    MALFORMED(PMD "; client_max_window_bits=\"10\\\"");  /* escaped end */
    MALFORMED(PMD "; a=\"\\");
    MALFORMED(PMD "; a=\"\x01\"");                       /* CTL in quotes */
    MALFORMED(PMD "; a=\"\\\x01\"");
    MALFORMED(PMD "; a=(b)");
    MALFORMED(PMD "; a=b@c");
    MALFORMED(PMD "; a/b");
    MALFORMED("\"" PMD "\"");
    MALFORMED(PMD ", (comment)");
    MALFORMED("perm\x01" "essage-deflate");
    MALFORMED("permessage-deflat\xc3\xa9");
    MALFORMED(PMD "\r\n");
    MALFORMED(PMD ",\n" PMD);
    /* Broken syntax anywhere spoils the header, even after a good offer. */
    MALFORMED(PMD ", " PMD "; a=\"");
    MALFORMED(PMD ", foo bar");
    MALFORMED("foo; a=\"b, " PMD);
}

/* Builds an offer from its parts; cbits: -1 absent, 0 no value. */
static void build_offer(char *buf, size_t cap, int snct, int cnct, int sbits,
                        int cbits, int reversed)
{
    char parts[4][48];
    int n = 0, i;
    if (snct)
        snprintf(parts[n++], sizeof parts[0], "server_no_context_takeover");
    if (cnct)
        snprintf(parts[n++], sizeof parts[0], "client_no_context_takeover");
    if (sbits)
        snprintf(parts[n++], sizeof parts[0], "server_max_window_bits=%d",
                 sbits);
    if (cbits == 0)
        snprintf(parts[n++], sizeof parts[0], "client_max_window_bits");
    if (cbits > 0)
        snprintf(parts[n++], sizeof parts[0], "client_max_window_bits=%d",
                 cbits);
    snprintf(buf, cap, PMD);
    for (i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "; %s",
                 parts[reversed ? n - 1 - i : i]);
    }
}

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

/*
 * What RFC 7692 section 7.1 lets the server answer, with our choices:
 * mention the window the client capped (and ours when below 15), grant
 * the client's own client_max_window_bits value or the policy's smaller
 * one, echo both no_context_takeover parameters.
 */
static void expected_response(char *buf, size_t cap,
                              const ws_deflate_policy *p, int snct, int cnct,
                              int sbits, int cbits, ws_deflate_params *want)
{
    int s = min_int(p->server_max_window_bits, sbits ? sbits : 15);
    int c = 15;
    if (cbits >= 0) {
        c = p->client_max_window_bits ? p->client_max_window_bits : 15;
        if (cbits > 0)
            c = min_int(c, cbits);
    }
    want->server_max_window_bits = s;
    want->client_max_window_bits = c;
    want->server_no_context_takeover = snct || p->server_no_context_takeover;
    want->client_no_context_takeover = cnct || p->client_no_context_takeover;
    snprintf(buf, cap, "%s%s%s", PMD,
             want->server_no_context_takeover
                 ? "; server_no_context_takeover" : "",
             want->client_no_context_takeover
                 ? "; client_no_context_takeover" : "");
    if (sbits || s < 15)
        snprintf(buf + strlen(buf), cap - strlen(buf),
                 "; server_max_window_bits=%d", s);
    if (cbits >= 0 && c < 15)
        snprintf(buf + strlen(buf), cap - strlen(buf),
                 "; client_max_window_bits=%d", c);
}

static void check_combination(const ws_deflate_policy *policy, int snct,
                              int cnct, int sbits, int cbits, int reversed)
{
    char offer[256], want_text[WS_DEFLATE_RESPONSE_MAX];
    ws_deflate_params want;
    ws_deflate_negotiation neg;
    ws_deflate_result r;

    build_offer(offer, sizeof offer, snct, cnct, sbits, cbits, reversed);
    expected_response(want_text, sizeof want_text, policy, snct, cnct, sbits,
                      cbits, &want);
    memset(&neg, 0, sizeof neg);
    r = ws_deflate_negotiate(offer, policy, &neg);
    CHECK_CASE(r == WS_DEFLATE_ACCEPTED &&
               strcmp(neg.response, want_text) == 0 &&
               neg.params.server_max_window_bits ==
                   want.server_max_window_bits &&
               neg.params.client_max_window_bits ==
                   want.client_max_window_bits &&
               neg.params.server_no_context_takeover ==
                   want.server_no_context_takeover &&
               neg.params.client_no_context_takeover ==
                   want.client_no_context_takeover,
               "offer [%s] policy s%d c%d snct%d cnct%d: got %s [%s] want [%s]",
               offer, policy->server_max_window_bits,
               policy->client_max_window_bits,
               policy->server_no_context_takeover,
               policy->client_no_context_takeover,
               ws_deflate_result_name(r), neg.response, want_text);
}

/* Every combination of the four parameters against several policies. */
static void test_negotiate_combinations(void)
{
    static const int sbits_list[] = { 0, 9, 12, 15 };
    static const int cbits_list[] = { -1, 0, 8, 9, 12, 15 };
    static const int policy_sbits[] = { 15, 12, 9 };
    static const int policy_cbits[] = { 0, 8, 10, 15 };
    unsigned ps, pc, pflags, si, ci, flags;

    for (ps = 0; ps < 3; ps++)
    for (pc = 0; pc < 4; pc++)
    for (pflags = 0; pflags < 4; pflags++) {
        ws_deflate_policy p = default_policy();
        p.server_max_window_bits = policy_sbits[ps];
        p.client_max_window_bits = policy_cbits[pc];
        p.server_no_context_takeover = pflags & 1;
        p.client_no_context_takeover = (pflags >> 1) & 1;
        for (si = 0; si < 4; si++)
        for (ci = 0; ci < 6; ci++)
        for (flags = 0; flags < 8; flags++)
            check_combination(&p, flags & 1, (flags >> 1) & 1,
                              sbits_list[si], cbits_list[ci],
                              (flags >> 2) & 1);
    }
}

/* Hand-checked answers for policies that ask for something. */
static void test_negotiate_policy(void)
{
    ws_deflate_policy p = default_policy();

    p.server_no_context_takeover = 1;
    p.client_max_window_bits = 10;
    EXPECT_P(&p, PMD "; client_max_window_bits", WS_DEFLATE_ACCEPTED,
             PMD "; server_no_context_takeover; client_max_window_bits=10");
    /* Not offered: client_max_window_bits must not be answered. */
    EXPECT_P(&p, PMD, WS_DEFLATE_ACCEPTED,
             PMD "; server_no_context_takeover");
    EXPECT_P(&p, PMD "; client_max_window_bits=9", WS_DEFLATE_ACCEPTED,
             PMD "; server_no_context_takeover; client_max_window_bits=9");

    p = default_policy();
    p.server_max_window_bits = 11;
    p.client_no_context_takeover = 1;
    EXPECT_P(&p, PMD, WS_DEFLATE_ACCEPTED,
             PMD "; client_no_context_takeover; server_max_window_bits=11");
    EXPECT_P(&p, PMD "; server_max_window_bits=10", WS_DEFLATE_ACCEPTED,
             PMD "; client_no_context_takeover; server_max_window_bits=10");
    EXPECT_P(&p, PMD "; server_max_window_bits=13", WS_DEFLATE_ACCEPTED,
             PMD "; client_no_context_takeover; server_max_window_bits=11");

    /* A policy window of 8 works as 9: zlib cannot deflate with 8. */
    p = default_policy();
    p.server_max_window_bits = 8;
    EXPECT_P(&p, PMD, WS_DEFLATE_ACCEPTED, PMD "; server_max_window_bits=9");

    /* Out-of-range policy values fall back to the defaults. */
    p = default_policy();
    p.server_max_window_bits = 42;
    p.client_max_window_bits = 3;
    EXPECT_P(&p, PMD "; client_max_window_bits", WS_DEFLATE_ACCEPTED, PMD);

    {
        ws_deflate_negotiation neg;
        p = default_policy();
        p.level = 3;
        p.min_size = 77;
        CHECK(ws_deflate_negotiate(PMD, &p, &neg) == WS_DEFLATE_ACCEPTED);
        CHECK(neg.params.level == 3 && neg.params.min_size == 77 &&
              neg.params.mem_level == 8 &&
              neg.params.server_max_window_bits == 15 &&
              neg.params.client_max_window_bits == 15 &&
              !neg.params.server_no_context_takeover &&
              !neg.params.client_no_context_takeover);
    }
}

static void test_longest_response_fits(void)
{
    ws_deflate_policy p = default_policy();
    ws_deflate_negotiation neg;
    const char *all = PMD "; server_no_context_takeover; "
        "client_no_context_takeover; server_max_window_bits=10; "
        "client_max_window_bits=10";
    CHECK(ws_deflate_negotiate(all, &p, &neg) == WS_DEFLATE_ACCEPTED);
    CHECK(strcmp(neg.response, all) == 0);
    CHECK(strlen(all) < WS_DEFLATE_RESPONSE_MAX);
}

/* ---------------------------------------------------------------------
 * Helpers for compression tests
 * ------------------------------------------------------------------- */

static ws_deflate_params make_params(int server_bits, int client_bits,
                                     int snct, int cnct)
{
    ws_deflate_params p;
    memset(&p, 0, sizeof p);
    p.server_max_window_bits = server_bits;
    p.client_max_window_bits = client_bits;
    p.server_no_context_takeover = snct;
    p.client_no_context_takeover = cnct;
    p.level = -1;
    p.mem_level = 8;
    return p;
}

/*
 * A pair of endpoints over one direction: 'sender' compresses (its
 * server_* parameters), 'receiver' inflates (its client_* parameters).
 */
typedef struct channel {
    ws_deflate_ctx *sender;
    ws_deflate_ctx *receiver;
} channel;

static channel channel_open(int bits, int no_context_takeover, uint64_t limit)
{
    ws_deflate_params s = make_params(bits, 15, no_context_takeover, 0);
    ws_deflate_params r = make_params(15, bits, 0, no_context_takeover);
    channel l;
    l.sender = ws_deflate_create(&s, 0);
    l.receiver = ws_deflate_create(&r, limit);
    return l;
}

static void channel_close(channel *l)
{
    ws_deflate_destroy(l->sender);
    ws_deflate_destroy(l->receiver);
}

/* The bytes of buf from start on (buf may still be empty and NULL). */
static const uint8_t *tail_of(const ws_deflate_buf *buf, size_t start)
{
    return buf->data ? buf->data + start : NULL;
}

static ws_deflate_status inflate_all(ws_deflate_ctx *ctx, const uint8_t *p,
                                     size_t n, ws_deflate_buf *out)
{
    return ws_deflate_inflate(ctx, p, n, 1, ws_deflate_buf_sink, out);
}

static ws_deflate_status inflate_hex(ws_deflate_ctx *ctx, const char *hex,
                                     ws_deflate_buf *out)
{
    uint8_t bytes[256];
    size_t n = 0;
    unsigned v;
    while (n < sizeof bytes && sscanf(hex + 2 * n, "%2x", &v) == 1)
        bytes[n++] = (uint8_t)v;
    return inflate_all(ctx, bytes, n, out);
}

static int buf_is(const ws_deflate_buf *b, const void *p, size_t n)
{
    return b->len == n && (n == 0 || memcmp(b->data, p, n) == 0);
}

static int buf_is_hex(const ws_deflate_buf *b, const char *hex)
{
    size_t i;
    unsigned v;
    if (b->len != strlen(hex) / 2)
        return 0;
    for (i = 0; i < b->len; i++)
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || b->data[i] != v)
            return 0;
    return 1;
}

/* xorshift: reproducible pseudo-random bytes. */
static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    size_t i;
    for (i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Text-like data with repeats near and far, so windows matter. */
static void fill_compressible(uint8_t *p, size_t n, uint32_t seed)
{
    static const char *words[] = { "websocket ", "frame ", "deflate ",
        "apache ", "message ", "window ", "context ", "takeover " };
    uint32_t x = seed ? seed : 7;
    size_t i = 0;
    while (i < n) {
        const char *w;
        size_t k;
        x = x * 1103515245u + 12345u;
        w = words[(x >> 16) % 8];
        for (k = 0; w[k] && i < n; k++)
            p[i++] = (uint8_t)w[k];
    }
}

/* ---------------------------------------------------------------------
 * RFC 7692 section 7.2.3 examples
 * ------------------------------------------------------------------- */

static void test_rfc_examples_inflate(void)
{
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *z = ws_deflate_create(&p, 0);
    ws_deflate_buf out = { 0 };
    static const uint8_t part1[] = { 0xf2, 0x48, 0xcd };
    static const uint8_t part2[] = { 0xc9, 0xc9, 0x07, 0x00 };

    /* 7.2.3.1: one message, then the same split over two frames. */
    CHECK(inflate_hex(z, "f248cdc9c90700", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    out.len = 0;
    CHECK(ws_deflate_inflate(z, part1, sizeof part1, 0, ws_deflate_buf_sink,
                             &out) == WS_DEFLATE_OK);
    CHECK(ws_deflate_inflate(z, part2, sizeof part2, 1, ws_deflate_buf_sink,
                             &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.2: a second message referring to the first. */
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.3: a stored block. */
    out.len = 0;
    CHECK(inflate_hex(z, "000500faff48656c6c6f00", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.4: a BFINAL block, and the context still carries over. */
    out.len = 0;
    CHECK(inflate_hex(z, "f348cdc9c9070000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* A BFINAL block without the empty block after it: tolerated. */
    out.len = 0;
    CHECK(inflate_hex(z, "f348cdc9c90700", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.5: two blocks in one message. */
    out.len = 0;
    CHECK(inflate_hex(z, "f24805000000ffffcac9c90700", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    /* 7.2.3.6: an empty message, and an empty payload. */
    out.len = 0;
    CHECK(inflate_hex(z, "00", &out) == WS_DEFLATE_OK);
    CHECK(out.len == 0);
    CHECK(ws_deflate_inflate(z, NULL, 0, 1, ws_deflate_buf_sink, &out) ==
          WS_DEFLATE_OK);
    CHECK(out.len == 0);
    out.len = 0;
    CHECK(inflate_hex(z, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "Hello", 5));
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(z);
}

static void test_rfc_examples_compress(void)
{
    ws_deflate_params nct = make_params(15, 15, 1, 0);
    ws_deflate_params ct = make_params(15, 15, 0, 0);
    ws_deflate_ctx *a = ws_deflate_create(&nct, 0);
    ws_deflate_ctx *b = ws_deflate_create(&ct, 0);
    ws_deflate_buf out = { 0 };
    size_t first;

    CHECK(ws_deflate_compress(a, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "f248cdc9c90700"));
    out.len = 0;
    CHECK(ws_deflate_compress(a, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "f248cdc9c90700"));   /* no context: same */

    out.len = 0;
    CHECK(ws_deflate_compress(b, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "f248cdc9c90700"));
    first = out.len;
    out.len = 0;
    CHECK(ws_deflate_compress(b, (const uint8_t *)"Hello", 5, &out) ==
          WS_DEFLATE_OK);
    CHECK(out.len < first);
    CHECK(buf_is_hex(&out, "f200110000"));       /* as in 7.2.3.2 */

    /* Empty messages: 0x00, before and after other messages. */
    out.len = 0;
    CHECK(ws_deflate_compress(b, NULL, 0, &out) == WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "00"));
    out.len = 0;
    CHECK(ws_deflate_compress(a, NULL, 0, &out) == WS_DEFLATE_OK);
    CHECK(buf_is_hex(&out, "00"));
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(a);
    ws_deflate_destroy(b);
}

/* ---------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------- */

static const size_t trip_sizes[] = { 0, 1, 125, 126, 65535, 65536, 1 << 20 };
#define N_TRIP_SIZES (sizeof trip_sizes / sizeof trip_sizes[0])

static int round_trip(channel *l, const uint8_t *msg, size_t n)
{
    ws_deflate_buf wire = { 0 }, back = { 0 };
    int ok = ws_deflate_compress(l->sender, msg, n, &wire) == WS_DEFLATE_OK &&
             inflate_all(l->receiver, wire.data, wire.len, &back) ==
                 WS_DEFLATE_OK &&
             buf_is(&back, msg, n);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&back);
    return ok;
}

/* Every size through one channel, so later messages use earlier context. */
static void test_round_trips(void)
{
    size_t big = 1 << 20;
    uint8_t *data = malloc(big);
    int bits, nct, kind;
    size_t i;

    for (kind = 0; kind < 2; kind++)
    for (nct = 0; nct < 2; nct++)
    for (bits = 9; bits <= 15; bits++) {
        channel l = channel_open(bits, nct, 0);
        for (i = 0; i < N_TRIP_SIZES; i++) {
            if (kind)
                fill_random(data, trip_sizes[i], (uint32_t)(i + 1));
            else
                fill_compressible(data, trip_sizes[i], (uint32_t)(i + 1));
            CHECK_CASE(round_trip(&l, data, trip_sizes[i]),
                       "%s size %zu bits %d no_context_takeover %d",
                       kind ? "random" : "text", trip_sizes[i], bits, nct);
        }
        if (nct)
            CHECK(ws_deflate_memory(l.sender) == 0 &&
                  ws_deflate_memory(l.receiver) == 0);
        channel_close(&l);
    }
    free(data);
}

/* Pieces of a message, compressed one by one, inflate to the whole. */
static void test_compress_chunks(void)
{
    static const size_t pieces[] = { 0, 1, 7, 126, 4096, 70000 };
    uint8_t data[80000];
    int nct;

    fill_compressible(data, sizeof data, 99);
    for (nct = 0; nct < 2; nct++) {
        channel l = channel_open(12, nct, 0);
        int round;
        for (round = 0; round < 3; round++) {
            ws_deflate_buf wire = { 0 }, back = { 0 };
            size_t off = 0, i;
            int ok = 1;
            for (i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
                size_t start = wire.len;
                ok &= ws_deflate_compress_chunk(l.sender, data + off,
                                                pieces[i], 0, &wire) ==
                      WS_DEFLATE_OK;
                off += pieces[i];
                /* each piece goes out as its own frame */
                ok &= ws_deflate_inflate(l.receiver, tail_of(&wire, start),
                                         wire.len - start, 0,
                                         ws_deflate_buf_sink, &back) ==
                      WS_DEFLATE_OK;
            }
            {
                size_t start = wire.len;
                ok &= ws_deflate_compress_chunk(l.sender, data + off, 3, 1,
                                                &wire) == WS_DEFLATE_OK;
                off += 3;
                ok &= ws_deflate_inflate(l.receiver, tail_of(&wire, start),
                                         wire.len - start, 1,
                                         ws_deflate_buf_sink, &back) ==
                      WS_DEFLATE_OK;
            }
            CHECK_CASE(ok && buf_is(&back, data, off),
                       "chunked round %d no_context_takeover %d", round, nct);
            ws_deflate_buf_free(&wire);
            ws_deflate_buf_free(&back);
        }
        /* A message of empty pieces is the empty message. */
        {
            ws_deflate_buf wire = { 0 }, back = { 0 };
            CHECK(ws_deflate_compress_chunk(l.sender, NULL, 0, 0, &wire) ==
                  WS_DEFLATE_OK);
            CHECK(ws_deflate_compress_chunk(l.sender, NULL, 0, 1, &wire) ==
                  WS_DEFLATE_OK);
            CHECK(buf_is_hex(&wire, "00"));
            CHECK(inflate_all(l.receiver, wire.data, wire.len, &back) ==
                  WS_DEFLATE_OK && back.len == 0);
            CHECK(round_trip(&l, data, 1000));
            ws_deflate_buf_free(&wire);
            ws_deflate_buf_free(&back);
        }
        channel_close(&l);
    }
}

/* zlib-compatible streams from a peer that is not us inflate too. */
static void test_foreign_stream(void)
{
    uint8_t msg[3000], wire[4000];
    z_stream zs;
    ws_deflate_params p = make_params(15, 10, 0, 0);
    ws_deflate_ctx *z = ws_deflate_create(&p, 0);
    ws_deflate_buf out = { 0 };
    int round;

    fill_compressible(msg, sizeof msg, 5);
    memset(&zs, 0, sizeof zs);
    CHECK(deflateInit2(&zs, 9, Z_DEFLATED, -10, 9, Z_DEFAULT_STRATEGY) ==
          Z_OK);
    for (round = 0; round < 3; round++) {
        size_t n;
        zs.next_in = msg;
        zs.avail_in = sizeof msg;
        zs.next_out = wire;
        zs.avail_out = sizeof wire;
        /* Z_FULL_FLUSH also ends with an empty stored block */
        CHECK(deflate(&zs, round == 1 ? Z_FULL_FLUSH : Z_SYNC_FLUSH) == Z_OK);
        n = sizeof wire - zs.avail_out;
        CHECK(n > 4 && memcmp(wire + n - 4, "\0\0\xff\xff", 4) == 0);
        out.len = 0;
        CHECK(inflate_all(z, wire, n - 4, &out) == WS_DEFLATE_OK);
        CHECK(buf_is(&out, msg, sizeof msg));
    }
    deflateEnd(&zs);
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(z);
}

/* ---------------------------------------------------------------------
 * Streaming inflate
 * ------------------------------------------------------------------- */

static void test_split_everywhere(void)
{
    static const char text[] = "Hello, hello, hello! How low? Hello, hello,"
        " hello! With the lights out, it's less dangerous.";
    size_t n = sizeof text - 1, cut;
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *tx = ws_deflate_create(&p, 0);
    ws_deflate_buf first = { 0 }, second = { 0 }, out = { 0 };
    int bad_two = 0, bad_bytes = 0;

    /* The second message leans on the first's context. */
    CHECK(ws_deflate_compress(tx, (const uint8_t *)text, n, &first) ==
          WS_DEFLATE_OK);
    CHECK(ws_deflate_compress(tx, (const uint8_t *)text, n, &second) ==
          WS_DEFLATE_OK);
    for (cut = 0; cut <= second.len; cut++) {
        ws_deflate_ctx *rx = ws_deflate_create(&p, 0);
        out.len = 0;
        inflate_all(rx, first.data, first.len, &out);
        out.len = 0;
        if (ws_deflate_inflate(rx, second.data, cut, 0, ws_deflate_buf_sink,
                               &out) != WS_DEFLATE_OK ||
            ws_deflate_inflate(rx, second.data + cut, second.len - cut, 1,
                               ws_deflate_buf_sink, &out) != WS_DEFLATE_OK ||
            !buf_is(&out, text, n))
            bad_two++;
        ws_deflate_destroy(rx);
    }
    CHECK(bad_two == 0);

    /* Byte by byte, then an empty final chunk. */
    {
        ws_deflate_ctx *rx = ws_deflate_create(&p, 0);
        size_t i;
        out.len = 0;
        for (i = 0; i < first.len; i++)
            bad_bytes += ws_deflate_inflate(rx, first.data + i, 1, 0,
                                            ws_deflate_buf_sink, &out) !=
                         WS_DEFLATE_OK;
        bad_bytes += ws_deflate_inflate(rx, NULL, 0, 1, ws_deflate_buf_sink,
                                        &out) != WS_DEFLATE_OK;
        CHECK(bad_bytes == 0 && buf_is(&out, text, n));
        out.len = 0;
        for (i = 0; i < second.len; i++)
            bad_bytes += ws_deflate_inflate(rx, second.data + i, 1,
                                            i + 1 == second.len,
                                            ws_deflate_buf_sink, &out) !=
                         WS_DEFLATE_OK;
        CHECK(bad_bytes == 0 && buf_is(&out, text, n));
        ws_deflate_destroy(rx);
    }
    ws_deflate_buf_free(&first);
    ws_deflate_buf_free(&second);
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(tx);
}

/* A sink that records the largest piece and the total it was given. */
typedef struct counting_sink {
    size_t total;
    size_t largest;
    int    fail_after;     /* calls before returning an error; 0: never */
    int    calls;
} counting_sink;

static int count_into(void *baton, const uint8_t *p, size_t n)
{
    counting_sink *c = baton;
    (void)p;
    c->total += n;
    if (n > c->largest)
        c->largest = n;
    c->calls++;
    return c->fail_after && c->calls >= c->fail_after;
}

/* ---------------------------------------------------------------------
 * Limits and bad input
 * ------------------------------------------------------------------- */

static void compress_zeros(ws_deflate_buf *wire, size_t n)
{
    ws_deflate_params p = make_params(15, 15, 1, 0);
    ws_deflate_ctx *tx = ws_deflate_create(&p, 0);
    uint8_t *zeros = calloc(1, n);
    CHECK(ws_deflate_compress(tx, zeros, n, wire) == WS_DEFLATE_OK);
    free(zeros);
    ws_deflate_destroy(tx);
}

static void test_bomb(void)
{
    size_t ten_mib = 10u << 20, one_mib = 1u << 20;
    ws_deflate_buf wire = { 0 }, out = { 0 };
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *rx;
    counting_sink sink = { 0, 0, 0, 0 };

    compress_zeros(&wire, ten_mib);
    CHECK(wire.len < 16384);
    printf("# bomb: 10 MiB of zeros compress to %zu bytes\n", wire.len);

    rx = ws_deflate_create(&p, one_mib);
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_TOO_BIG);
    CHECK(out.len <= one_mib);
    CHECK(out.cap <= one_mib);
    CHECK(ws_deflate_memory_peak(rx) < 64 * 1024);
    printf("# bomb: rejected after %zu bytes, zlib peak %zu bytes\n",
           out.len, ws_deflate_memory_peak(rx));
    /* the failure is sticky */
    CHECK(inflate_hex(rx, "f248cdc9c90700", &out) == WS_DEFLATE_TOO_BIG);
    CHECK(ws_deflate_close_code(WS_DEFLATE_TOO_BIG) == 1009);
    ws_deflate_destroy(rx);

    /* Fed in small frames, the bomb is caught just as early. */
    rx = ws_deflate_create(&p, one_mib);
    {
        size_t off = 0;
        ws_deflate_status st = WS_DEFLATE_OK;
        while (st == WS_DEFLATE_OK && off < wire.len) {
            size_t n = wire.len - off < 100 ? wire.len - off : 100;
            st = ws_deflate_inflate(rx, wire.data + off, n,
                                    off + n == wire.len, count_into, &sink);
            off += n;
        }
        CHECK(st == WS_DEFLATE_TOO_BIG);
        CHECK(sink.total <= one_mib);
        CHECK(sink.largest <= 16384);
    }
    ws_deflate_destroy(rx);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&out);
}

static void test_limit_edges(void)
{
    ws_deflate_buf wire = { 0 }, out = { 0 };
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *rx;
    size_t n = 100000;

    compress_zeros(&wire, n);
    rx = ws_deflate_create(&p, n);             /* exactly the limit */
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_OK);
    CHECK(out.len == n);
    out.len = 0;
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_OK);
    ws_deflate_destroy(rx);

    rx = ws_deflate_create(&p, n - 1);         /* one byte short */
    out.len = 0;
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_TOO_BIG);
    CHECK(out.len <= n - 1);
    ws_deflate_destroy(rx);

    /* The limit is per message, not per connection. */
    rx = ws_deflate_create(&p, 5);
    out.len = 0;
    CHECK(inflate_hex(rx, "f248cdc9c90700", &out) == WS_DEFLATE_OK);
    CHECK(inflate_hex(rx, "f200110000", &out) == WS_DEFLATE_OK);
    CHECK(buf_is(&out, "HelloHello", 10));
    ws_deflate_destroy(rx);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&out);
}

static ws_deflate_status inflate_fresh_hex(const char *hex, int bits)
{
    ws_deflate_params p = make_params(15, bits, 0, 0);
    ws_deflate_ctx *rx = ws_deflate_create(&p, 0);
    ws_deflate_buf out = { 0 };
    ws_deflate_status st = inflate_hex(rx, hex, &out);
    ws_deflate_buf_free(&out);
    ws_deflate_destroy(rx);
    return st;
}

static void test_corrupt(void)
{
    uint8_t noise[1000];
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *rx;
    ws_deflate_buf out = { 0 };

    CHECK(inflate_fresh_hex("ff", 15) == WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_fresh_hex("07", 15) == WS_DEFLATE_DATA_ERROR); /* BTYPE 11 */
    CHECK(inflate_fresh_hex("000500fbff48656c6c6f00", 15) ==
          WS_DEFLATE_DATA_ERROR);                      /* LEN != ~NLEN */
    CHECK(inflate_fresh_hex("f248cdc9c907", 15) ==
          WS_DEFLATE_DATA_ERROR);                      /* truncated */
    CHECK(inflate_fresh_hex("f248cdc9c9", 15) == WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_fresh_hex("f24805", 15) == WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_fresh_hex("f200110000", 15) ==
          WS_DEFLATE_DATA_ERROR);                      /* no history */
    CHECK(inflate_fresh_hex("f348cdc9c90700ff", 15) ==
          WS_DEFLATE_DATA_ERROR);              /* junk after BFINAL block */
    CHECK(ws_deflate_close_code(WS_DEFLATE_DATA_ERROR) == 1007);

    fill_random(noise, sizeof noise, 4242);
    rx = ws_deflate_create(&p, 0);
    CHECK(inflate_all(rx, noise, sizeof noise, &out) ==
          WS_DEFLATE_DATA_ERROR);
    CHECK(inflate_hex(rx, "f248cdc9c90700", &out) == WS_DEFLATE_DATA_ERROR);
    ws_deflate_destroy(rx);
    ws_deflate_buf_free(&out);
}

/*
 * A peer that uses a bigger window than agreed is caught when it refers
 * to an earlier message.  (Within one message zlib accepts any distance
 * that is still in its output buffer, so that is not checked here.)
 */
static void test_window_too_far(void)
{
    uint8_t msg[2048];
    channel big = channel_open(15, 0, 0);
    ws_deflate_params small = make_params(15, 9, 0, 0);
    ws_deflate_ctx *rx = ws_deflate_create(&small, 0);
    ws_deflate_buf wire = { 0 }, out = { 0 };

    fill_random(msg, sizeof msg, 3);
    CHECK(ws_deflate_compress(big.sender, msg, sizeof msg, &wire) ==
          WS_DEFLATE_OK);
    CHECK(inflate_all(rx, wire.data, wire.len, &out) == WS_DEFLATE_OK);
    CHECK(inflate_all(big.receiver, wire.data, wire.len, &out) ==
          WS_DEFLATE_OK);
    wire.len = 0;
    CHECK(ws_deflate_compress(big.sender, msg, sizeof msg, &wire) ==
          WS_DEFLATE_OK);
    CHECK(wire.len < 100);                     /* one match 2048 back */
    out.len = 0;
    CHECK(inflate_all(rx, wire.data, wire.len, &out) ==
          WS_DEFLATE_DATA_ERROR);
    out.len = 0;
    CHECK(inflate_all(big.receiver, wire.data, wire.len, &out) ==
          WS_DEFLATE_OK && buf_is(&out, msg, sizeof msg));
    ws_deflate_destroy(rx);
    channel_close(&big);
    ws_deflate_buf_free(&wire);
    ws_deflate_buf_free(&out);
}

static void test_sink_error(void)
{
    uint8_t msg[100000];
    channel l = channel_open(15, 0, 0);
    ws_deflate_buf wire = { 0 };
    counting_sink sink = { 0, 0, 2, 0 };

    fill_compressible(msg, sizeof msg, 8);
    CHECK(ws_deflate_compress(l.sender, msg, sizeof msg, &wire) ==
          WS_DEFLATE_OK);
    CHECK(ws_deflate_inflate(l.receiver, wire.data, wire.len, 1, count_into,
                             &sink) == WS_DEFLATE_SINK_ERROR);
    CHECK(sink.calls == 2);
    CHECK(ws_deflate_close_code(WS_DEFLATE_SINK_ERROR) == 1011);
    channel_close(&l);
    ws_deflate_buf_free(&wire);
}

/* ---------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------- */

/* Every zlib level round-trips; a failed inflate leaves compression be. */
static void test_levels_and_independence(void)
{
    uint8_t msg[20000];
    int level;
    fill_compressible(msg, sizeof msg, 11);
    for (level = -1; level <= 9; level++) {
        ws_deflate_params p = make_params(15, 15, 0, 0);
        channel l;
        p.level = level;
        l.sender = ws_deflate_create(&p, 0);
        p = make_params(15, 15, 0, 0);
        l.receiver = ws_deflate_create(&p, 0);
        CHECK_CASE(round_trip(&l, msg, sizeof msg) &&
                   round_trip(&l, msg, sizeof msg), "level %d", level);
        channel_close(&l);
    }
    {
        channel l = channel_open(15, 0, 0);
        ws_deflate_buf out = { 0 };
        CHECK(inflate_hex(l.sender, "ff", &out) == WS_DEFLATE_DATA_ERROR);
        CHECK(round_trip(&l, msg, sizeof msg));
        channel_close(&l);
        ws_deflate_buf_free(&out);
    }
}

static void test_should_compress(void)
{
    ws_deflate_params p = make_params(15, 15, 0, 0);
    ws_deflate_ctx *z;
    p.min_size = 64;
    z = ws_deflate_create(&p, 0);
    CHECK(!ws_deflate_should_compress(z, 0));
    CHECK(!ws_deflate_should_compress(z, 63));
    CHECK(ws_deflate_should_compress(z, 64));
    CHECK(ws_deflate_memory(z) == 0);
    ws_deflate_destroy(z);
    p.min_size = 0;
    z = ws_deflate_create(&p, 0);
    CHECK(ws_deflate_should_compress(z, 0));
    ws_deflate_destroy(z);
}

/* Memory after one message each way; prints the figures. */
static void report_mode(int bits, int nct)
{
    uint8_t msg[2000];
    channel l = channel_open(bits, nct, 0);
    size_t idle_tx = ws_deflate_memory(l.sender);
    size_t idle_rx = ws_deflate_memory(l.receiver);

    fill_compressible(msg, sizeof msg, 1);
    CHECK(idle_tx == 0 && idle_rx == 0);
    CHECK(round_trip(&l, msg, sizeof msg));
    printf("# memory: window %2d context takeover %-3s: deflate %6zu"
           " (peak %6zu), inflate %5zu (peak %5zu) bytes\n",
           bits, nct ? "off" : "on", ws_deflate_memory(l.sender),
           ws_deflate_memory_peak(l.sender), ws_deflate_memory(l.receiver),
           ws_deflate_memory_peak(l.receiver));
    if (nct) {
        CHECK(ws_deflate_memory(l.sender) == 0);
        CHECK(ws_deflate_memory(l.receiver) == 0);
    } else {
        CHECK(ws_deflate_memory(l.sender) > ((size_t)1 << bits));
        CHECK(ws_deflate_memory(l.receiver) >= ((size_t)1 << bits));
    }
    CHECK(ws_deflate_memory_peak(l.sender) > ((size_t)1 << bits));
    channel_close(&l);
}

static void test_memory(void)
{
    static const int windows[] = { 15, 12, 9 };
    unsigned i;
    for (i = 0; i < 3; i++) {
        report_mode(windows[i], 0);
        report_mode(windows[i], 1);
    }
}

/* Smaller windows and memLevel really cost less. */
static void test_memory_scales(void)
{
    uint8_t msg[100];
    ws_deflate_params p15 = make_params(15, 15, 0, 0);
    ws_deflate_params p9 = make_params(9, 9, 0, 0);
    ws_deflate_ctx *a, *b;
    ws_deflate_buf wire = { 0 };

    p9.mem_level = 1;
    a = ws_deflate_create(&p15, 0);
    b = ws_deflate_create(&p9, 0);
    fill_compressible(msg, sizeof msg, 2);
    CHECK(ws_deflate_compress(a, msg, sizeof msg, &wire) == WS_DEFLATE_OK);
    CHECK(ws_deflate_compress(b, msg, sizeof msg, &wire) == WS_DEFLATE_OK);
    CHECK(ws_deflate_memory(b) * 8 < ws_deflate_memory(a));
    ws_deflate_destroy(a);
    ws_deflate_destroy(b);
    ws_deflate_buf_free(&wire);
}

static void test_names(void)
{
    CHECK(strcmp(ws_deflate_result_name(WS_DEFLATE_MALFORMED),
                 "malformed header") == 0);
    CHECK(strcmp(ws_deflate_status_name(WS_DEFLATE_TOO_BIG),
                 "inflated message too big") == 0);
    CHECK(ws_deflate_close_code(WS_DEFLATE_NOMEM) == 1011);
    ws_deflate_destroy(NULL);
}

int main(void)
{
    test_negotiate_basic();
    test_negotiate_values();
    test_negotiate_offers();
    test_negotiate_malformed();
    test_negotiate_combinations();
    test_negotiate_policy();
    test_longest_response_fits();
    test_rfc_examples_inflate();
    test_rfc_examples_compress();
    test_round_trips();
    test_compress_chunks();
    test_foreign_stream();
    test_split_everywhere();
    test_bomb();
    test_limit_edges();
    test_corrupt();
    test_window_too_far();
    test_sink_error();
    test_levels_and_independence();
    test_should_compress();
    test_memory();
    test_memory_scales();
    test_names();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
