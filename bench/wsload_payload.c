/*
 * wsload_payload.c - message payloads: text, binary or JSON bodies with
 * the sequence number written in, masked copies, and the check of an echo
 * against what was sent.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "json_doc.h"
#include "wsload.h"

static size_t json_variants(void)
{
    size_t v = ((size_t)64 << 20) / opt.size;      /* at most 64 MiB of them */
    return v < 1 ? 1 : v > JSON_VARIANTS ? JSON_VARIANTS : v;
}

void build_pattern(struct worker *w)
{
    if (opt.json) {
        size_t v = json_variants();
        w->json = malloc(v * opt.size + 1);
        if (!w->json)
            die("out of memory (json documents)");
        for (size_t k = 0; k < v; k++)
            json_doc(w->json + k * opt.size, opt.size, k);
        return;
    }
    size_t n = opt.size + PATTERN_PERIOD;
    w->pattern = malloc(n);
    if (!w->pattern)
        die("out of memory (pattern)");
    for (size_t i = 0; i < n; i++) {
        if (opt.binary)
            w->pattern[i] = (uint8_t)rng_next(&w->rng);   /* all byte values */
        else
            w->pattern[i] = (uint8_t)('!' + (i * 7 + i / 89) % 94);  /* printable ASCII */
    }
}

static void make_tag(uint32_t seq, uint8_t tag[TAG_LEN])
{
    static const char hex[] = "0123456789abcdef";
    /* least significant digit first, so short messages keep the digits
     * that change */
    for (int i = 0; i < TAG_LEN; i++)
        tag[i] = (uint8_t)hex[(seq >> (4 * i)) & 15];
}

/* The opt.size bytes message seq is made of, before the tag goes in. */
static const uint8_t *body_for(const struct worker *w, uint32_t seq)
{
    if (opt.json)
        return w->json + (seq % json_variants()) * opt.size;
    return w->pattern + seq % PATTERN_PERIOD;
}

/* Where the tag sits in a message, and how long it is. */
static size_t tag_offset(void)
{
    return opt.json ? JSON_TAG_OFF : 0;
}

static size_t tag_length(void)
{
    return opt.size < TAG_LEN ? opt.size : TAG_LEN;
}

/* dst = src XOR mask, 8 bytes at a time; phase is the payload offset of
 * src[0] modulo 4, so a payload can be masked in several pieces. */
void mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
                      const uint8_t key[4], size_t phase)
{
    uint8_t k[8];
    for (int j = 0; j < 8; j++)
        k[j] = key[(phase + (size_t)j) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 7];
}

static void copy_piece(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *key,
                       size_t phase)
{
    if (key)
        mask_copy(dst, src, n, key, phase);
    else
        memcpy(dst, src, n);
}

/* Writes the payload of message seq; masked when key is non-NULL. */
void write_payload(const struct worker *w, uint8_t *dst, uint32_t seq,
                          const uint8_t *key)
{
    uint8_t tag[TAG_LEN];
    size_t a = tag_offset(), b = a + tag_length();
    const uint8_t *body = body_for(w, seq);
    make_tag(seq, tag);
    copy_piece(dst, body, a, key, 0);
    copy_piece(dst + a, tag, b - a, key, a);
    copy_piece(dst + b, body + b, opt.size - b, key, b);
}

/* Do the n bytes at offset off of an echo match message seq? */
bool payload_matches(const struct worker *w, uint32_t seq, size_t off,
                            const uint8_t *p, size_t n)
{
    size_t a = tag_offset(), b = a + tag_length();
    const uint8_t *body = body_for(w, seq);
    if (off + n > opt.size)
        return false;
    if (off < a) {
        size_t k = a - off < n ? a - off : n;
        if (memcmp(p, body + off, k) != 0)
            return false;
        p += k;
        off += k;
        n -= k;
    }
    if (n > 0 && off < b) {
        uint8_t tag[TAG_LEN];
        make_tag(seq, tag);
        size_t k = b - off < n ? b - off : n;
        if (memcmp(p, tag + (off - a), k) != 0)
            return false;
        p += k;
        off += k;
        n -= k;
    }
    return n == 0 || memcmp(p, body + off, n) == 0;
}
