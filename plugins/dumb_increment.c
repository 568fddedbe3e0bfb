/*
 * dumb-increment - the libwebsockets demo protocol: every connection gets
 * a counter, sent as text every 50 ms; the message "reset\n" sets it back
 * to 0.
 *
 * The counters are sent by a thread of the plugin's own, not from
 * on_message: this is how a plugin pushes data that does not answer a
 * client's message, and why WebSocketServer.send works from any thread.
 *
 *     <Location /dumb-increment>
 *         SetHandler websocket-handler
 *         WebSocketHandler modules/mod_websocket_dumb_increment.so dumb_increment_init
 *     </Location>
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "websocket_plugin.h"

#define TICK_NS (50 * 1000 * 1000)

typedef struct counter {
    const WebSocketServer *server;
    unsigned long value;
    struct counter *prev, *next;
} counter;

/* Every open connection of this process, walked by the ticker. */
static pthread_mutex_t counters_lock = PTHREAD_MUTEX_INITIALIZER;
static counter *counters;
static pthread_once_t ticker_once = PTHREAD_ONCE_INIT;

static void sleep_one_tick(void)
{
    struct timespec ts = { 0, TICK_NS };

    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* send() never blocks on the network, so holding the lock while sending
 * costs little and keeps on_disconnect from freeing a counter in use. */
static void *ticker(void *unused)
{
    (void)unused;
    for (;;) {
        counter *c;

        sleep_one_tick();
        pthread_mutex_lock(&counters_lock);
        for (c = counters; c; c = c->next) {
            char text[32];
            int n = snprintf(text, sizeof(text), "%lu", c->value++);

            c->server->send(c->server, MESSAGE_TYPE_TEXT,
                            (const unsigned char *)text, (size_t)n);
        }
        pthread_mutex_unlock(&counters_lock);
    }
    return NULL;
}

/* Threads do not survive httpd's fork, so the ticker starts in the child
 * that serves the first connection, not in dumb_increment_init. */
static void start_ticker(void)
{
    pthread_t thread;
    pthread_attr_t attr;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&thread, &attr, ticker, NULL);
    pthread_attr_destroy(&attr);
}

static void *CALLBACK dumb_increment_on_connect(const WebSocketServer *server)
{
    counter *c = calloc(1, sizeof(*c));

    if (!c) {
        return NULL;
    }
    pthread_once(&ticker_once, start_ticker);
    c->server = server;
    pthread_mutex_lock(&counters_lock);
    c->next = counters;
    if (counters) {
        counters->prev = c;
    }
    counters = c;
    pthread_mutex_unlock(&counters_lock);
    return c;
}

static size_t CALLBACK dumb_increment_on_message(void *plugin_private,
                                                 const WebSocketServer *server,
                                                 const int type,
                                                 unsigned char *buffer,
                                                 const size_t buffer_size)
{
    counter *c = plugin_private;

    (void)server;
    if (type == MESSAGE_TYPE_TEXT && buffer_size == 6
        && !memcmp(buffer, "reset\n", 6)) {
        pthread_mutex_lock(&counters_lock);
        c->value = 0;
        pthread_mutex_unlock(&counters_lock);
    }
    return 0;
}

static void CALLBACK dumb_increment_on_disconnect(void *plugin_private,
                                                  const WebSocketServer *server)
{
    counter *c = plugin_private;

    (void)server;
    pthread_mutex_lock(&counters_lock);
    if (c->prev) {
        c->prev->next = c->next;
    }
    else {
        counters = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&counters_lock);
    free(c);
}

static WebSocketPlugin dumb_increment_plugin = {
    sizeof(WebSocketPlugin),
    WEBSOCKET_PLUGIN_VERSION_0,
    NULL,
    dumb_increment_on_connect,
    dumb_increment_on_message,
    dumb_increment_on_disconnect
};

extern EXPORT WebSocketPlugin *CALLBACK dumb_increment_init(void)
{
    return &dumb_increment_plugin;
}
