/*
 * slow.c - a test plugin that blocks in on_message when asked to, like a
 * plugin waiting on a database.
 *
 *   sleep:<ms>[anything]   logs "slow begin <message>" (WS_TEST_LOG), so a
 *                          test knows on_message is under way; sleeps ms
 *                          milliseconds, then echoes the message
 *   anything else          is echoed at once, with its type
 */
#include "websocket_plugin.h"
#include "test_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static size_t CALLBACK slow_on_message(void *priv,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t size)
{
    (void)priv;
    if (type == MESSAGE_TYPE_TEXT && size > 6 && size < 64
        && memcmp(buffer, "sleep:", 6) == 0) {
        char num[64];
        long ms;

        memcpy(num, buffer + 6, size - 6);
        num[size - 6] = '\0';
        ms = strtol(num, NULL, 10);
        logf_("slow begin %.*s", (int)size, (const char *)buffer);
        if (ms > 0 && ms <= 10000)
            sleep_ms(ms);
    }
    return server->send(server, type, buffer, size);
}

static WebSocketPlugin slow_plugin = {
    sizeof(WebSocketPlugin),
    WEBSOCKET_PLUGIN_VERSION_0,
    NULL,
    NULL,                   /* on_connect: every connection is accepted */
    slow_on_message,
    NULL
};

EXPORT WebSocketPlugin *CALLBACK slow_init(void)
{
    return &slow_plugin;
}
