/*
 * t/fuzz.h - what the fuzz targets share: a failed check prints the
 * target's name and where, then aborts (libFuzzer keeps the input).
 * Define FUZZ_NAME before including it.
 */
#ifndef T_FUZZ_H
#define T_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FAIL(...) do { \
        fprintf(stderr, FUZZ_NAME ": " __VA_ARGS__); \
        fprintf(stderr, "\n"); \
        abort(); \
    } while (0)
#define ASSERT(cond) do { \
        if (!(cond)) \
            FAIL("%s:%d: %s", __FILE__, __LINE__, #cond); \
    } while (0)

#endif
