/*
 * t/fuzz_extensions.c - libFuzzer target for the negotiation of
 * permessage-deflate (ws_deflate_negotiate, RFC 7692 5 and 7.1).
 *
 *   make fuzz                           (all targets; see the Makefile)
 *   t/fuzz_extensions_replay file-or-dir...  (make unit, without libFuzzer)
 *
 * Input: bytes 0 and 1 make the server's policy, the rest (up to a NUL)
 * is the client's Sec-WebSocket-Extensions value, in a buffer of its
 * exact size.  An accepted offer must give parameters within the policy
 * and RFC 7692's ranges and a response that fits and names the
 * extension; offered back as it is, the response must be accepted with
 * the same parameters and the same response (a client that echoes what
 * it was told gets the same agreement), and a context must be creatable
 * from the parameters.
 */
#include "../ws_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz_extensions"
#include "fuzz.h"

static void make_policy(const uint8_t *b, ws_deflate_policy *p)
{
    ws_deflate_policy_default(p);
    p->enabled = (b[0] & 7) != 0;
    p->server_no_context_takeover = (b[0] >> 3) & 1;
    p->client_no_context_takeover = (b[0] >> 4) & 1;
    p->level = (int)(b[0] >> 5) - 1;                       /* -1..6 */
    p->server_max_window_bits = 8 + (b[1] & 7);            /* 8..15 */
    p->client_max_window_bits = (b[1] & 0x80) ? 8 + ((b[1] >> 3) & 7) : 0;
    p->min_size = (size_t)((b[1] >> 6) & 1) * 64;
}

static void check_params(const ws_deflate_params *a, const ws_deflate_policy *p)
{
    int server_cap = p->server_max_window_bits < 9 ? 9 : p->server_max_window_bits;

    ASSERT(a->server_max_window_bits >= 9 && a->server_max_window_bits <= server_cap);
    ASSERT(a->client_max_window_bits >= 8 && a->client_max_window_bits <= 15);
    if (p->client_max_window_bits && a->client_max_window_bits < 15)
        ASSERT(a->client_max_window_bits <= p->client_max_window_bits);
    ASSERT(a->server_no_context_takeover >= p->server_no_context_takeover);
    ASSERT(a->client_no_context_takeover >= p->client_no_context_takeover);
    ASSERT(a->level == p->level && a->min_size == p->min_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_deflate_policy policy;
    ws_deflate_negotiation neg, again;
    ws_deflate_result r;
    ws_deflate_ctx *z;
    const uint8_t *nul;
    char *header;
    size_t len;

    if (size < 2)
        return 0;
    make_policy(data, &policy);
    data += 2;
    size -= 2;
    nul = memchr(data, '\0', size);
    len = nul ? (size_t)(nul - data) : size;
    header = malloc(len + 1);
    memcpy(header, data, len);
    header[len] = '\0';

    memset(&neg, 0xa5, sizeof neg);
    r = ws_deflate_negotiate(header, &policy, &neg);
    ASSERT(r >= WS_DEFLATE_ACCEPTED && r <= WS_DEFLATE_MALFORMED);
    ASSERT(ws_deflate_result_name(r) != NULL);
    ASSERT(ws_deflate_negotiate(header, &policy, &again) == r);
    if (!policy.enabled)
        ASSERT(r == WS_DEFLATE_NOT_OFFERED);
    if (r == WS_DEFLATE_ACCEPTED) {
        ASSERT(memchr(neg.response, '\0', sizeof neg.response));
        ASSERT(!strncmp(neg.response, "permessage-deflate", 18));
        ASSERT(!memcmp(&neg.params, &again.params, sizeof neg.params));
        ASSERT(!strcmp(neg.response, again.response));
        check_params(&neg.params, &policy);

        ASSERT(ws_deflate_negotiate(neg.response, &policy, &again) == WS_DEFLATE_ACCEPTED);
        if (memcmp(&neg.params, &again.params, sizeof neg.params)
            || strcmp(neg.response, again.response))
            FAIL("offer '%s' -> '%s', offered back -> '%s'", header,
                 neg.response, again.response);

        z = ws_deflate_create(&neg.params, 1000);
        ASSERT(z != NULL);
        ws_deflate_destroy(z);
    }
    ASSERT(ws_deflate_negotiate(NULL, &policy, &again) == WS_DEFLATE_NOT_OFFERED);
    free(header);
    return 0;
}
