/*
 * wsload_util.c - what every part of wsload uses: dying with a message,
 * the monotonic clock, and a cheap random number generator.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "wsload.h"

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t secs_to_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

/* xorshift64*: masks and keys only need to be unpredictable to proxies,
 * not cryptographically strong, and this costs a few cycles per frame. */
uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t rng_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = now_ns() ^ ((uint64_t)getpid() << 32);
    return seed ? seed : 0x9E3779B97F4A7C15ull;
}
