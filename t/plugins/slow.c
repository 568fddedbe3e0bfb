/*
 * slow.c - a test plugin that blocks in on_message (or on_disconnect)
 * when asked to, like a plugin waiting on a database.
 *
 *   sleep:<ms>[anything]   sleeps ms milliseconds in on_message, then
 *                          echoes the message
 *   sleepclose:<ms>        echoes; on_disconnect will sleep ms milliseconds
 *   anything else          is echoed at once, with its type
 *
 * With WS_TEST_LOG set, it writes one line per event to that file
 * (test_log.h), so that tests know a call is under way and can check the
 * order of calls: "begin <conn> <msg>", "end <conn> <msg>",
 * "disconnect-begin <conn>", "disconnect <conn>".
 */
#include "websocket_plugin.h"
#include "test_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slow_conn {
    long id;
    long disconnect_sleep_ms;
} slow_conn;

static long next_id;

static void sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void log_event(const char *what, const slow_conn *c,
                      const unsigned char *msg, size_t len)
{
    logf_("%s %ld %.*s", what, c->id, (int)(len > 64 ? 64 : len),
          msg ? (const char *)msg : "");
}

/* The number after a prefix such as "sleep:", or -1. */
static long number_after(const unsigned char *buf, size_t size,
                         const char *prefix)
{
    size_t plen = strlen(prefix);
    char num[64];
    long ms;

    if (size <= plen || size - plen >= sizeof(num)
        || memcmp(buf, prefix, plen) != 0) {
        return -1;
    }
    memcpy(num, buf + plen, size - plen);
    num[size - plen] = '\0';
    ms = strtol(num, NULL, 10);
    return ms > 0 && ms <= 10000 ? ms : -1;
}

static void *CALLBACK slow_on_connect(const WebSocketServer *server)
{
    slow_conn *c = calloc(1, sizeof(*c));

    (void)server;
    if (c) {
        c->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    }
    return c;
}

static size_t CALLBACK slow_on_message(void *priv,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t size)
{
    slow_conn *c = priv;
    long ms;

    log_event("begin", c, buffer, size);
    if (type == MESSAGE_TYPE_TEXT && size < 64) {
        if ((ms = number_after(buffer, size, "sleep:")) > 0) {
            sleep_ms(ms);
        }
        else if ((ms = number_after(buffer, size, "sleepclose:")) > 0) {
            c->disconnect_sleep_ms = ms;
        }
    }
    log_event("end", c, buffer, size);
    return server->send(server, type, buffer, size);
}

static void CALLBACK slow_on_disconnect(void *priv,
                                        const WebSocketServer *server)
{
    slow_conn *c = priv;

    (void)server;
    log_event("disconnect-begin", c, NULL, 0);
    if (c->disconnect_sleep_ms > 0) {
        sleep_ms(c->disconnect_sleep_ms);
    }
    log_event("disconnect", c, NULL, 0);
    free(c);
}

static WebSocketPlugin slow_plugin = {
    sizeof(WebSocketPlugin),
    WEBSOCKET_PLUGIN_VERSION_0,
    NULL,
    slow_on_connect,
    slow_on_message,
    slow_on_disconnect
};

EXPORT WebSocketPlugin *CALLBACK slow_init(void)
{
    return &slow_plugin;
}
