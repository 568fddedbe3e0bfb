/*
 * test_log.h - the test plugins' event log: one line per call, appended to
 * the file named by the environment variable WS_TEST_LOG (t/harness.py
 * sets it; the tests read the file to see what a plugin saw or did).
 *
 * Each line is one write() on a descriptor opened with O_APPEND, so lines
 * from several threads and processes never interleave.
 */
#ifndef WS_TEST_LOG_H
#define WS_TEST_LOG_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* static inline: a plugin that includes this and logs nothing gets no
 * unused-function warning. */
static inline void logf_(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static inline void logf_(const char *fmt, ...)
{
    const char *path = getenv("WS_TEST_LOG");
    char line[2048];
    va_list ap;
    int n, fd;

    if (path == NULL || *path == '\0')
        return;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)n) < 0) {
        /* nothing to do: a test that needs the line fails without it */
    }
    close(fd);
}

#endif
