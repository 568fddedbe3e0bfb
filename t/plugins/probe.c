/*
 * probe.c - a test plugin that exercises every WebSocketServer function
 * and every WebSocketPlugin callback.  It writes what it sees to the file
 * named by the environment variable WS_TEST_LOG (one line per event).
 *
 * on_connect:
 *   X-Refuse present          -> refuses (returns NULL)
 *   X-Echo-Header: v          -> response header X-Echoed: v
 *   X-Conn-Id: id             -> the id used in the log lines
 *   subprotocol               -> "probe.v2" if offered, else X-Pick's value
 *                                if given, else the first offered; none when
 *                                X-No-Protocol is present
 * on_message, text commands (anything else is echoed with its type):
 *   close                     -> server->close()
 *   info                      -> JSON about the request and the handshake
 *   ping:<p> / pong:<p>       -> sends a Ping / Pong with payload p
 *   sendclose:<hex>           -> sends a Close whose payload is the bytes
 *   closethen                 -> close(), then a send that must return 0
 *   badtype                   -> send()s that must fail (invalid type, invalid
 *                                UTF-8 text, 126-byte ping/pong); reports
 *                                their returns
 *   ret:<text>                -> sends text, then "ret=<send's return>"
 *   binary:<n>                -> n binary bytes, byte i = i & 255
 *   burst:<n>                 -> a new thread sends "burst <i>", i < n, then
 *                                "burst done <accepted>"
 *   multi:<k>:<n>             -> k threads, each sends "t<j> <i>", i < n,
 *                                then "t<j> done <accepted>"
 *   drip                      -> a thread sends "drip <i>" every 10 ms until
 *                                a send fails or the connection ends
 *   threadclose               -> a thread calls close() after 50 ms
 *   queue:<size>:<count>      -> count binary messages of size bytes sent at
 *                                once; logs how many send() accepted
 *   lateset                   -> header_set/protocol_set outside on_connect
 */
#include "httpd.h"
#include "websocket_plugin.h"
#include "test_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16

typedef struct conn conn_t;

typedef struct {
    conn_t *c;
    int kind;          /* 0 burst, 1 multi, 2 drip, 3 threadclose */
    int index;
    long n;
} job_t;

struct conn {
    char id[128];
    const WebSocketServer *server;
    pthread_mutex_t lock;
    pthread_t threads[MAX_THREADS];
    job_t jobs[MAX_THREADS];
    int nthreads;
    volatile int stop;
    int disconnects;
};

typedef struct {
    WebSocketPlugin plugin;     /* first: the module sees only this */
    pid_t pid;
} probe_plugin_t;

static size_t send_text(const WebSocketServer *s, const char *text)
{
    return s->send(s, MESSAGE_TYPE_TEXT, (const unsigned char *)text,
                   strlen(text));
}

/* ---- JSON ------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void b_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void b_str(buf_t *b, const char *s)
{
    b_add(b, s, strlen(s));
}

static void b_json(buf_t *b, const char *s)
{
    if (s == NULL) {
        b_str(b, "null");
        return;
    }
    b_str(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            b_add(b, esc, 2);
        }
        else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            b_str(b, esc);
        }
        else {
            b_add(b, (const char *)&ch, 1);
        }
    }
    b_str(b, "\"");
}

static void send_info(conn_t *c)
{
    const WebSocketServer *s = c->server;
    request_rec *r = s->request(s);
    size_t i, count = s->protocol_count(s);
    buf_t b = {0};
    char num[64];

    b_str(&b, "{\"uri\":");
    b_json(&b, r ? r->uri : NULL);
    b_str(&b, ",\"args\":");
    b_json(&b, r ? r->args : NULL);
    b_str(&b, ",\"method\":");
    b_json(&b, r ? r->method : NULL);
    b_str(&b, ",\"protocol\":");
    b_json(&b, r ? r->protocol : NULL);
    b_str(&b, ",\"x_info\":");
    b_json(&b, s->header_get(s, "X-Info"));
    b_str(&b, ",\"x_info_lower\":");
    b_json(&b, s->header_get(s, "x-info"));
    b_str(&b, ",\"missing\":");
    b_json(&b, s->header_get(s, "X-Surely-Not-Sent"));
    b_str(&b, ",\"host\":");
    b_json(&b, s->header_get(s, "Host"));
    snprintf(num, sizeof(num), ",\"count\":%zu,\"protocols\":[", count);
    b_str(&b, num);
    for (i = 0; i < count; i++) {
        if (i)
            b_str(&b, ",");
        b_json(&b, s->protocol_index(s, i));
    }
    b_str(&b, "],\"out_of_range\":");
    b_str(&b, s->protocol_index(s, count) == NULL ? "null" : "\"non-null\"");
    snprintf(num, sizeof(num), ",\"server_version\":%u,\"server_size\":%u",
             s->version, s->size);
    b_str(&b, num);
    b_str(&b, ",\"id\":");
    b_json(&b, c->id);
    b_str(&b, "}");
    send_text(s, b.p);
    free(b.p);
}

/* ---- threads ----------------------------------------------------------- */

static void *job_main(void *arg)
{
    job_t *j = arg;
    conn_t *c = j->c;
    const WebSocketServer *s = c->server;
    char msg[128];
    long i, accepted = 0;

    switch (j->kind) {
    case 0:
        for (i = 0; i < j->n; i++) {
            snprintf(msg, sizeof(msg), "burst %ld", i);
            if (send_text(s, msg))
                accepted++;
        }
        snprintf(msg, sizeof(msg), "burst done %ld", accepted);
        send_text(s, msg);
        break;
    case 1:
        for (i = 0; i < j->n; i++) {
            snprintf(msg, sizeof(msg), "t%d %ld", j->index, i);
            if (send_text(s, msg))
                accepted++;
        }
        snprintf(msg, sizeof(msg), "t%d done %ld", j->index, accepted);
        send_text(s, msg);
        break;
    case 2:
        for (i = 0; !c->stop; i++) {
            snprintf(msg, sizeof(msg), "drip %ld", i);
            if (!send_text(s, msg))
                break;
            accepted++;
            usleep(10000);
        }
        logf_("drip end id=%s accepted=%ld stopped=%d", c->id, accepted,
              c->stop);
        break;
    case 3:
        usleep(50000);
        s->close(s);
        logf_("threadclose id=%s", c->id);
        break;
    }
    return NULL;
}

static void start_job(conn_t *c, int kind, int index, long n)
{
    job_t *j;

    pthread_mutex_lock(&c->lock);
    if (c->nthreads == MAX_THREADS) {
        pthread_mutex_unlock(&c->lock);
        send_text(c->server, "too many threads");
        return;
    }
    j = &c->jobs[c->nthreads];
    j->c = c;
    j->kind = kind;
    j->index = index;
    j->n = n;
    if (pthread_create(&c->threads[c->nthreads], NULL, job_main, j) == 0)
        c->nthreads++;
    pthread_mutex_unlock(&c->lock);
}

/* ---- callbacks --------------------------------------------------------- */

static void *CALLBACK probe_on_connect(const WebSocketServer *server)
{
    const char *id = server->header_get(server, "X-Conn-Id");
    const char *echo = server->header_get(server, "X-Echo-Header");
    request_rec *r = server->request(server);
    size_t i, count;
    conn_t *c;

    if (id == NULL)
        id = "anon";
    if (server->header_get(server, "X-Refuse") != NULL) {
        logf_("refuse id=%s", id);
        return NULL;
    }
    if (server->header_get(server, "X-Refuse-After-Send") != NULL) {
        /* Queued, then refused: must be dropped, never sent or touched
         * after the request is gone. */
        size_t r = send_text(server, "before refusal");
        logf_("refuse-after-send id=%s ret=%zu", id, r);
        return NULL;
    }
    if (echo != NULL)
        server->header_set(server, "X-Echoed", echo);
    count = server->protocol_count(server);
    if (count > 0 && server->header_get(server, "X-No-Protocol") == NULL) {
        const char *pick = server->protocol_index(server, 0);
        const char *want = server->header_get(server, "X-Pick");
        for (i = 0; i < count; i++) {
            const char *p = server->protocol_index(server, i);
            if (p != NULL && strcmp(p, "probe.v2") == 0) {
                pick = p;
                want = NULL;
                break;
            }
        }
        if (want != NULL)
            pick = want;
        server->protocol_set(server, pick);
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->server = server;
    pthread_mutex_init(&c->lock, NULL);
    logf_("connect id=%s pid=%d uri=%s count=%zu", c->id, (int)getpid(),
          r ? r->uri : "(null)", count);
    return c;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static size_t CALLBACK probe_on_message(void *priv,
                                        const WebSocketServer *server,
                                        const int type, unsigned char *buffer,
                                        const size_t size)
{
    conn_t *c = priv;
    char cmd[256];
    char msg[256];

    if (c == NULL || c->server != server) {
        logf_("BUG on_message with priv=%p server=%p", priv, (void *)server);
        return 0;
    }
    if (type != MESSAGE_TYPE_TEXT || size >= sizeof(cmd)) {
        if (type != MESSAGE_TYPE_TEXT && type != MESSAGE_TYPE_BINARY)
            logf_("BUG on_message type=%d id=%s", type, c->id);
        return server->send(server, type, buffer, size);
    }
    memcpy(cmd, buffer, size);
    cmd[size] = '\0';

    if (strcmp(cmd, "close") == 0) {
        server->close(server);
    }
    else if (strcmp(cmd, "info") == 0) {
        send_info(c);
    }
    else if (strncmp(cmd, "ping:", 5) == 0) {
        server->send(server, MESSAGE_TYPE_PING, buffer + 5, size - 5);
    }
    else if (strncmp(cmd, "pong:", 5) == 0) {
        server->send(server, MESSAGE_TYPE_PONG, buffer + 5, size - 5);
    }
    else if (strncmp(cmd, "sendclose:", 10) == 0) {
        unsigned char bytes[128];
        size_t n = 0, r1, r2;
        const char *h = cmd + 10;
        while (h[0] && h[1] && n < sizeof(bytes)) {
            bytes[n++] = (unsigned char)(hexval(h[0]) * 16 + hexval(h[1]));
            h += 2;
        }
        r1 = server->send(server, MESSAGE_TYPE_CLOSE, bytes, n);
        r2 = send_text(server, "after close");
        logf_("sendclose id=%s ret=%zu after=%zu", c->id, r1, r2);
    }
    else if (strcmp(cmd, "closethen") == 0) {
        size_t r;
        server->close(server);
        r = send_text(server, "late");
        logf_("closethen id=%s ret=%zu", c->id, r);
    }
    else if (strcmp(cmd, "badtype") == 0) {
        unsigned char big[126];
        size_t r1 = server->send(server, 12345, (const unsigned char *)"x", 1);
        size_t r2 = server->send(server, MESSAGE_TYPE_INVALID,
                                 (const unsigned char *)"x", 1);
        /* Text must be UTF-8; control payloads at most 125 bytes. */
        size_t r3 = server->send(server, MESSAGE_TYPE_TEXT,
                                 (const unsigned char *)"ok\xff", 3);
        size_t r4, r5;
        memset(big, 'p', sizeof(big));
        r4 = server->send(server, MESSAGE_TYPE_PING, big, sizeof(big));
        r5 = server->send(server, MESSAGE_TYPE_PONG, big, sizeof(big));
        snprintf(msg, sizeof(msg), "badtype ret=%zu,%zu,%zu,%zu,%zu", r1, r2,
                 r3, r4, r5);
        send_text(server, msg);
    }
    else if (strncmp(cmd, "ret:", 4) == 0) {
        size_t r = server->send(server, MESSAGE_TYPE_TEXT, buffer + 4,
                                size - 4);
        snprintf(msg, sizeof(msg), "ret=%zu", r);
        send_text(server, msg);
    }
    else if (strncmp(cmd, "binary:", 7) == 0) {
        long i, n = atol(cmd + 7);
        unsigned char *data = malloc(n > 0 ? (size_t)n : 1);
        for (i = 0; i < n; i++)
            data[i] = (unsigned char)(i & 255);
        server->send(server, MESSAGE_TYPE_BINARY, data, (size_t)n);
        free(data);
    }
    else if (strncmp(cmd, "burst:", 6) == 0) {
        start_job(c, 0, 0, atol(cmd + 6));
    }
    else if (strncmp(cmd, "multi:", 6) == 0) {
        int k = atoi(cmd + 6), j;
        const char *colon = strchr(cmd + 6, ':');
        long n = colon ? atol(colon + 1) : 0;
        for (j = 0; j < k; j++)
            start_job(c, 1, j, n);
    }
    else if (strcmp(cmd, "drip") == 0) {
        start_job(c, 2, 0, 0);
    }
    else if (strcmp(cmd, "threadclose") == 0) {
        start_job(c, 3, 0, 0);
    }
    else if (strncmp(cmd, "queue:", 6) == 0) {
        long sz = atol(cmd + 6), count = 0, i, accepted = 0, first_reject = -1;
        const char *colon = strchr(cmd + 6, ':');
        unsigned char *data;
        struct timeval t0, t1;
        if (colon)
            count = atol(colon + 1);
        data = malloc(sz > 8 ? (size_t)sz : 8);
        memset(data, 'q', sz > 8 ? (size_t)sz : 8);
        gettimeofday(&t0, NULL);
        for (i = 0; i < count; i++) {
            memcpy(data, &i, sizeof(i) < 8 ? sizeof(i) : 8);
            if (server->send(server, MESSAGE_TYPE_BINARY, data, (size_t)sz)
                == (size_t)sz)
                accepted++;
            else if (first_reject < 0)
                first_reject = i;
        }
        gettimeofday(&t1, NULL);
        free(data);
        logf_("queue id=%s accepted=%ld first_reject=%ld ms=%ld", c->id,
              accepted, first_reject,
              (long)((t1.tv_sec - t0.tv_sec) * 1000 +
                     (t1.tv_usec - t0.tv_usec) / 1000));
    }
    else if (strcmp(cmd, "lateset") == 0) {
        server->header_set(server, "X-Late", "1");
        server->protocol_set(server, "late");
        send_text(server, "lateset ok");
    }
    else {
        return server->send(server, type, buffer, size);
    }
    return 0;
}

static void CALLBACK probe_on_disconnect(void *priv,
                                         const WebSocketServer *server)
{
    conn_t *c = priv;
    request_rec *r;
    int i;

    if (c == NULL || c->server != server) {
        logf_("BUG on_disconnect with priv=%p", priv);
        return;
    }
    r = server->request(server);
    c->stop = 1;
    pthread_mutex_lock(&c->lock);
    for (i = 0; i < c->nthreads; i++)
        pthread_join(c->threads[i], NULL);
    c->nthreads = 0;
    pthread_mutex_unlock(&c->lock);
    logf_("disconnect id=%s pid=%d uri=%s", c->id, (int)getpid(),
          r ? r->uri : "(null)");
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void CALLBACK probe_destroy(WebSocketPlugin *plugin)
{
    probe_plugin_t *p = (probe_plugin_t *)plugin;
    logf_("destroy pid=%d plugin=%p init_pid=%d", (int)getpid(),
          (void *)p, (int)p->pid);
    free(p);
}

EXPORT WebSocketPlugin *CALLBACK probe_init(void)
{
    probe_plugin_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->plugin.size = sizeof(WebSocketPlugin);
    p->plugin.version = WEBSOCKET_PLUGIN_VERSION_0;
    p->plugin.destroy = probe_destroy;
    p->plugin.on_connect = probe_on_connect;
    p->plugin.on_message = probe_on_message;
    p->plugin.on_disconnect = probe_on_disconnect;
    p->pid = getpid();
    logf_("init pid=%d plugin=%p", (int)getpid(), (void *)p);
    return &p->plugin;
}
