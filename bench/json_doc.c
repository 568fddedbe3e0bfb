/*
 * bench/json_doc.c - see json_doc.h.
 */
#include "json_doc.h"

#include <stdio.h>
#include <string.h>

/* xorshift64*: the same sequence on every machine */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* An array of user records with repeated keys, a few word values,
 * numbers and timestamps, padded with blanks to the exact size. */
void json_doc(uint8_t *dst, size_t size, uint64_t variant)
{
    static const char *const first[] = {
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil",
    };
    static const char *const last[] = {
        "smith", "jones", "garcia", "miller", "davis", "martin", "lopez",
        "wilson", "moore", "taylor", "thomas", "white",
    };
    static const char *const tags[] = {
        "admin", "beta", "billing", "support", "staff", "trial", "premium",
        "mobile", "desktop", "eu", "us", "apac",
    };
    uint64_t rng = 0x9E3779B97F4A7C15ull * (variant + 1);
    char *out = (char *)dst;
    size_t len = (size_t)snprintf(out, size + 1, "{\"seq\":\"%.*s\",\"items\":[",
                                  8, "????????");
    int first_item = 1;
    for (;;) {
        char item[512];
        uint64_t r = next_random(&rng);
        const char *fn = first[r % 16], *ln = last[(r >> 8) % 12];
        unsigned id = (unsigned)(1000 + (r >> 16) % 90000);
        int n = snprintf(item, sizeof item,
            "%s{\"id\":%u,\"name\":\"%s %s\",\"email\":\"%s.%s@example.com\","
            "\"active\":%s,\"score\":%u.%02u,\"tags\":[\"%s\",\"%s\"],"
            "\"created\":\"2024-%02u-%02uT%02u:%02u:%02uZ\"}",
            first_item ? "" : ",", id, fn, ln, fn, ln, (r >> 40) & 1 ? "true" : "false",
            (unsigned)((r >> 24) % 100), (unsigned)((r >> 32) % 100),
            tags[(r >> 44) % 12], tags[(r >> 50) % 12],
            (unsigned)(1 + (r >> 20) % 12), (unsigned)(1 + (r >> 28) % 28),
            (unsigned)((r >> 36) % 24), (unsigned)((r >> 42) % 60),
            (unsigned)((r >> 48) % 60));
        if (len + (size_t)n + 2 > size)
            break;
        memcpy(out + len, item, (size_t)n);
        len += (size_t)n;
        first_item = 0;
    }
    memset(out + len, ' ', size - 2 - len);       /* whitespace is valid JSON */
    memcpy(out + size - 2, "]}", 2);
}
