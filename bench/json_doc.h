/*
 * bench/json_doc.h - the JSON documents of the compression benchmarks
 * (wsload -t json, bench/bench_deflate) and of t/test_deflate_fast.c's
 * corpus: an API's list reply, compressing 2.5-5x with zlib.
 */
#ifndef BENCH_JSON_DOC_H
#define BENCH_JSON_DOC_H

#include <stddef.h>
#include <stdint.h>

/* Writes exactly size (>= 32) bytes of JSON, a different document for
 * each variant; "seq" holds 8 placeholder characters ('?') at offset 8. */
void json_doc(uint8_t *dst, size_t size, uint64_t variant);

#endif
