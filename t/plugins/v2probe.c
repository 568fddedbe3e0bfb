/*
 * v2probe.c - a test plugin of API version 2: it logs every callback to
 * WS_TEST_LOG (test_log.h) and answers text commands with the calls of
 * version 2.  Log lines start with "v2 <event> <id>", the id being the
 * X-Conn-Id request header (or "-").
 *
 * Commands (anything else is echoed with send()):
 *   info               -> "info pid=<pid> ip=<client_ip> user=<user>
 *                         proto=<subprotocol> ext=<extensions>
 *                         query=<query> path=<path_info>"
 *   param:<name>       -> "param <name>=<value or (null)>"
 *   frag:<n>:<size>    -> one text message sent in n pieces of size bytes
 *                         ('a' + piece number); logs each return
 *   fragbusy           -> opens a message in pieces, tries a whole send
 *                         (logs its return: 0 expected) and a ping, then
 *                         ends the message ("fragbusy done")
 *   closewith:<code>:<reason> -> close_with; logs its return
 *   pingv2:<payload>   -> ping; logs its return
 *   queued             -> "queued <bytes>"
 *   pause:<ms>         -> pause_input(1), then a thread resumes after ms
 *   blink              -> from now on every message is echoed, then the
 *                         input paused; a thread that spins resumes it at
 *                         once (a resume racing the pause's own return)
 *   sub:<topic>[:ids[:<resume id>]] / unsub:<topic> -> logs the return
 *   pub:<topic>:<text> / pubx:<topic>:<text> (excluding this connection)
 *   pubn:<topic>:<count>:<size>[v] / pubxn:...: many at once (publish_many)
 *                      -> logs the return
 *   userdata           -> set_user_data then user_data: "userdata ok"
 *   flood:<size>:<n>   -> n binary messages of size bytes; on_drain logs
 *
 * v2stream_init is the same plugin with on_fragment: what comes in pieces
 * is sent back in pieces (send_fragment), each piece logged.
 */
#include "websocket_plugin.h"
#include "test_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
    const WebSocketServer *server;
    char id[64];
    pthread_t resumer;
    int resuming;
    long pause_ms;
    pthread_mutex_t lock;            /* guards gone, for the resumer */
    pthread_cond_t gone_cond;
    int gone;                        /* on_disconnect came: stop waiting */
    int blinking;                    /* "blink" mode: see blink_resumer */
    int blink_pending;               /* atomic: a pause awaits its resume */
} conn;

static const char *or_null(const char *s)
{
    return s ? s : "(null)";
}

static void *CALLBACK v2_on_connect(const WebSocketServer *server)
{
    conn *c = calloc(1, sizeof(*c));
    const char *id = server->header_get(server, "X-Conn-Id");

    if (!c) {
        return NULL;
    }
    c->server = server;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->gone_cond, NULL);
    snprintf(c->id, sizeof(c->id), "%s", id ? id : "-");
    if (server->protocol_count(server) > 0) {
        server->protocol_set(server, server->protocol_index(server, 0));
    }
    return c;
}

static void CALLBACK v2_on_open(void *priv, const WebSocketServer *server)
{
    conn *c = priv;

    logf_("v2 open %s version=%u", c->id, server->version);
}

static void send_text(const WebSocketServer *server, const char *text)
{
    server->send(server, MESSAGE_TYPE_TEXT, (const unsigned char *)text,
                 strlen(text));
}

static void *resume_later(void *arg)
{
    conn *c = arg;
    struct timespec until;
    int gone;

    /* Waits out the pause, or less if the connection ends first (its
     * on_disconnect wakes and joins this thread). */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += c->pause_ms / 1000;
    until.tv_nsec += (c->pause_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->lock);
    while (!c->gone
           && pthread_cond_timedwait(&c->gone_cond, &c->lock, &until) == 0) {
    }
    gone = c->gone;
    pthread_mutex_unlock(&c->lock);
    /* After the end too: such a late call must be refused harmlessly. */
    logf_("v2 resume%s %s", gone ? " early" : "", c->id);
    c->server->pause_input(c->server, 0);
    return NULL;
}

/* Resumes each pause the moment it sees it, from another core: the
 * resume lands while the module is still returning from the message
 * that paused, the moment where what it read behind that message must
 * be kept and not dropped. */
static void *blink_resumer(void *arg)
{
    conn *c = arg;
    unsigned seed = 1, idle = 0;

    while (!__atomic_load_n(&c->gone, __ATOMIC_ACQUIRE)) {
        if (__atomic_exchange_n(&c->blink_pending, 0, __ATOMIC_ACQ_REL)) {
            /* A varying short delay, so that some resumes land in each
             * instant of the module's return from the message. */
            volatile unsigned spin = rand_r(&seed) % 400;

            while (spin) {
                spin--;
            }
            c->server->pause_input(c->server, 0);
            idle = 0;
        }
        else if (++idle > 100000) {
            /* No message for a while: stop spinning a core. */
            struct timespec nap = { 0, 50000 };

            nanosleep(&nap, NULL);
        }
    }
    return NULL;
}

static void send_in_pieces(conn *c, long n, long size)
{
    const WebSocketServer *server = c->server;
    unsigned char *piece = malloc(size > 0 ? (size_t)size : 1);
    long i;

    for (i = 0; i < n && piece; i++) {
        int rc;

        memset(piece, 'a' + (int)(i % 26), (size_t)size);
        rc = server->send_fragment(server, MESSAGE_TYPE_TEXT, piece,
                                   (size_t)size, i == n - 1);
        logf_("v2 frag %s %ld rc=%d", c->id, i, rc);
    }
    free(piece);
}

/* pubn:<topic>:<count>:<size>: count messages in one go, faster than a
 * child's reader delivers them, each "<i> " and letters up to size bytes
 * (at least "<i>"); the sizes vary when size ends with "v" (i * 37 % size),
 * so that some are compressed and some not. */
static void publish_many(conn *c, const char *topic, const char *rest,
                         int exclude)
{
    const WebSocketServer *server = c->server;
    long count = 0, size = 0, i, ok = 0;
    char *end = (char *)"", *msg;

    count = rest ? strtol(rest, &end, 10) : 0;
    if (rest && *end == ':') {
        size = strtol(end + 1, &end, 10);
    }
    msg = malloc((size_t)size + 32);
    for (i = 0; i < count && msg; i++) {
        long want = *end == 'v' && size ? i * 37 % size : size;
        int n = snprintf(msg, 32, "%ld ", i);

        if (want > n) {
            memset(msg + n, 'a' + (int)(i % 26), (size_t)(want - n));
            n = (int)want;
        }
        ok += server->publish(server, topic, MESSAGE_TYPE_TEXT,
                              (const unsigned char *)msg, (size_t)n,
                              exclude ? WEBSOCKET_PUBLISH_EXCLUDE_SELF : 0)
              >= 0;
    }
    free(msg);
    logf_("v2 pubn %s %s ok=%ld", c->id, topic, ok);
}

static void topic_command(conn *c, char *cmd)
{
    const WebSocketServer *server = c->server;
    char *topic = strchr(cmd, ':') + 1, *rest = strchr(topic, ':');

    if (rest) {
        *rest++ = '\0';
    }
    if (!strncmp(cmd, "sub:", 4)) {
        int ids = rest && !strncmp(rest, "ids", 3);
        const char *resume = ids && rest[3] == ':' ? rest + 4 : NULL;

        logf_("v2 sub %s %s rc=%d", c->id, topic,
              server->subscribe(server, topic,
                                ids ? WEBSOCKET_SUBSCRIBE_IDS : 0, resume));
    }
    else if (!strncmp(cmd, "unsub:", 6)) {
        logf_("v2 unsub %s %s rc=%d", c->id, topic,
              server->unsubscribe(server, topic));
    }
    else if (!strncmp(cmd, "pubn:", 5) || !strncmp(cmd, "pubxn:", 6)) {
        publish_many(c, topic, rest, cmd[3] == 'x');
    }
    else {
        int exclude = !strncmp(cmd, "pubx:", 5);
        const char *text = rest ? rest : "";

        logf_("v2 pub %s %s rc=%ld", c->id, topic,
              server->publish(server, topic, MESSAGE_TYPE_TEXT,
                              (const unsigned char *)text, strlen(text),
                              exclude ? WEBSOCKET_PUBLISH_EXCLUDE_SELF : 0));
    }
}

static void command(conn *c, char *cmd)
{
    const WebSocketServer *server = c->server;
    char out[2048];
    long a, b;

    if (!strcmp(cmd, "info")) {
        snprintf(out, sizeof(out), "info pid=%d ip=%s user=%s proto=%s ext=%s "
                 "query=%s path=%s", (int)getpid(),
                 or_null(server->client_ip(server)), or_null(server->user(server)),
                 or_null(server->subprotocol(server)),
                 or_null(server->extensions(server)),
                 or_null(server->query(server)), or_null(server->path_info(server)));
        send_text(server, out);
    }
    else if (!strncmp(cmd, "param:", 6)) {
        snprintf(out, sizeof(out), "param %s=%s", cmd + 6,
                 or_null(server->param(server, cmd + 6)));
        send_text(server, out);
    }
    else if (sscanf(cmd, "frag:%ld:%ld", &a, &b) == 2) {
        send_in_pieces(c, a, b);
    }
    else if (!strcmp(cmd, "fragbusy")) {
        int first = server->send_fragment(server, MESSAGE_TYPE_TEXT,
                                          (const unsigned char *)"one ", 4, 0);
        size_t whole = server->send(server, MESSAGE_TYPE_TEXT,
                                    (const unsigned char *)"whole", 5);
        int ping = server->ping(server, (const unsigned char *)"between", 7);
        int last = server->send_fragment(server, MESSAGE_TYPE_TEXT,
                                         (const unsigned char *)"two", 3, 1);

        logf_("v2 fragbusy %s first=%d whole=%zu ping=%d last=%d", c->id,
              first, whole, ping, last);
        send_text(server, "fragbusy done");
    }
    else if (!strncmp(cmd, "closewith:", 10)) {
        char *reason = strchr(cmd + 10, ':');

        logf_("v2 closewith %s rc=%d", c->id,
              server->close_with(server, (unsigned)atol(cmd + 10),
                                 reason ? reason + 1 : NULL));
    }
    else if (!strncmp(cmd, "pingv2:", 7)) {
        logf_("v2 ping-sent %s rc=%d", c->id,
              server->ping(server, (const unsigned char *)cmd + 7,
                           strlen(cmd + 7)));
    }
    else if (!strcmp(cmd, "queued")) {
        snprintf(out, sizeof(out), "queued %zu", server->queued(server));
        send_text(server, out);
    }
    else if (!strcmp(cmd, "blink") && !c->resuming) {
        c->blinking = 1;
        c->resuming = pthread_create(&c->resumer, NULL, blink_resumer, c) == 0;
        send_text(server, "blinking");
    }
    else if (!strncmp(cmd, "pause:", 6) && !c->resuming) {
        c->pause_ms = atol(cmd + 6);
        server->pause_input(server, 1);
        logf_("v2 paused %s", c->id);
        c->resuming = pthread_create(&c->resumer, NULL, resume_later, c) == 0;
    }
    else if (!strncmp(cmd, "sub:", 4) || !strncmp(cmd, "unsub:", 6)
             || !strncmp(cmd, "pub:", 4) || !strncmp(cmd, "pubx:", 5)
             || !strncmp(cmd, "pubn:", 5) || !strncmp(cmd, "pubxn:", 6)) {
        topic_command(c, cmd);
    }
    else if (!strcmp(cmd, "userdata")) {
        server->set_user_data(server, c);
        send_text(server, server->user_data(server) == c ? "userdata ok"
                                                         : "userdata BAD");
    }
    else if (sscanf(cmd, "flood:%ld:%ld", &a, &b) == 2) {
        unsigned char *data = calloc(1, a > 0 ? (size_t)a : 1);
        long i, sent = 0;

        for (i = 0; i < b && data; i++) {
            sent += server->send(server, MESSAGE_TYPE_BINARY, data, (size_t)a)
                    == (size_t)a;
        }
        free(data);
        logf_("v2 flood %s sent=%ld queued=%zu", c->id, sent,
              server->queued(server));
    }
    else {
        send_text(server, cmd);
    }
}

static size_t CALLBACK v2_on_message(void *priv, const WebSocketServer *server,
                                     const int type, unsigned char *buffer,
                                     const size_t size)
{
    conn *c = priv;
    char *cmd;

    if (c->blinking) {
        size_t sent = server->send(server, type, buffer, size);

        server->pause_input(server, 1);
        __atomic_store_n(&c->blink_pending, 1, __ATOMIC_RELEASE);
        return sent;
    }
    if (type != MESSAGE_TYPE_TEXT || size > 65536 || !(cmd = malloc(size + 1))) {
        return server->send(server, type, buffer, size);
    }
    memcpy(cmd, buffer, size);
    cmd[size] = '\0';
    command(c, cmd);
    free(cmd);
    return 0;
}

static void CALLBACK v2_on_close(void *priv, const WebSocketServer *server,
                                 unsigned int code, const char *reason,
                                 size_t size)
{
    conn *c = priv;

    (void)server;
    logf_("v2 close %s code=%u reason=%.*s", c->id, code, (int)size, reason);
}

static void CALLBACK v2_on_ping(void *priv, const WebSocketServer *server,
                                const unsigned char *payload, size_t size)
{
    conn *c = priv;

    (void)server;
    logf_("v2 ping %s %.*s", c->id, (int)size, (const char *)payload);
}

static void CALLBACK v2_on_pong(void *priv, const WebSocketServer *server,
                                const unsigned char *payload, size_t size)
{
    conn *c = priv;

    (void)server;
    logf_("v2 pong %s %.*s", c->id, (int)size, (const char *)payload);
}

static void CALLBACK v2_on_drain(void *priv, const WebSocketServer *server)
{
    conn *c = priv;

    logf_("v2 drain %s queued=%zu", c->id, server->queued(server));
}

static void CALLBACK v2_on_fragment(void *priv, const WebSocketServer *server,
                                    int type, unsigned char *buffer,
                                    size_t size, int flags)
{
    conn *c = priv;
    int rc = server->send_fragment(server, type, buffer, size,
                                   (flags & WEBSOCKET_FRAGMENT_LAST) != 0);

    logf_("v2 fragment %s type=%d flags=%d len=%zu rc=%d", c->id, type, flags,
          size, rc);
}

static void CALLBACK v2_on_disconnect(void *priv, const WebSocketServer *server)
{
    conn *c = priv;

    (void)server;
    pthread_mutex_lock(&c->lock);
    __atomic_store_n(&c->gone, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&c->gone_cond);
    pthread_mutex_unlock(&c->lock);
    if (c->resuming) {
        pthread_join(c->resumer, NULL);
    }
    pthread_cond_destroy(&c->gone_cond);
    pthread_mutex_destroy(&c->lock);
    logf_("v2 disconnect %s", c->id);
    free(c);
}

static WebSocketPlugin2 v2_plugin = {
    sizeof(WebSocketPlugin2), WEBSOCKET_PLUGIN_VERSION_2,
    NULL, v2_on_connect, v2_on_message, v2_on_disconnect,
    v2_on_open, v2_on_close, v2_on_ping, v2_on_pong, v2_on_drain, NULL
};

static WebSocketPlugin2 v2_stream_plugin = {
    sizeof(WebSocketPlugin2), WEBSOCKET_PLUGIN_VERSION_2,
    NULL, v2_on_connect, NULL, v2_on_disconnect,
    v2_on_open, v2_on_close, NULL, NULL, NULL, v2_on_fragment
};

EXPORT WebSocketPlugin *CALLBACK v2probe_init(void)
{
    return WEBSOCKET_PLUGIN2(&v2_plugin);
}

EXPORT WebSocketPlugin *CALLBACK v2stream_init(void)
{
    return WEBSOCKET_PLUGIN2(&v2_stream_plugin);
}
