/*
 * t/check.h - the C unit tests' checks: CHECK(cond) counts a pass or
 * prints the failure with file:line; CHECK_CASE also prints which case
 * of a loop or table failed.  The test's main() prints
 * "N passed, N failed" from passed and failed, and exits 1 on a failure.
 * One test program per header inclusion (the counters are static).
 */
#ifndef T_CHECK_H
#define T_CHECK_H

#include <stdio.h>

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

#endif /* T_CHECK_H */
