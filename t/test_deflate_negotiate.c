/*
 * t/test_deflate_negotiate.c - unit tests of ws_deflate_negotiate.c, the
 * negotiation of permessage-deflate (RFC 7692 section 7.1); the
 * compression itself is t/test_deflate.c's.
 *
 * Prints each failure with file:line, then "N passed, N failed"; exits 1
 * when anything failed.
 */
#include "../ws_deflate.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
    test_negotiate_basic();
    test_negotiate_values();
    test_negotiate_offers();
    test_negotiate_malformed();
    test_negotiate_combinations();
    test_negotiate_policy();
    test_longest_response_fits();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
