/*
 * broadcast.c - a test plugin that sends from a thread of its own to
 * many connections at once, the way a chat or a ticker does.
 *
 * Every connection of the process is on one list (under a mutex).  The
 * sender thread starts with the first on_connect (threads do not survive
 * httpd's fork, so not in the init function) and works through a queue
 * of jobs that the connections' messages post.  Text commands:
 *
 *   go:<tag>:<n>[:<size>]  the thread sends "<tag> <i>" for i < n to every
 *                          open connection of the process, padded with '.'
 *                          to size bytes when size is given, then
 *                          "<tag> end" to each
 *   flood:<size>:<count>   the thread sends up to count binary messages of
 *                          size bytes to this connection only, as fast as
 *                          send() takes them, and stops at the first one
 *                          that send() refuses; then logs
 *                          "flood id=<id> accepted=<k> first_reject=<i> ms=<t>"
 *                          (first_reject -1 when none was refused)
 *   count                  answers "count <open connections in this process>"
 *   anything else          is echoed with its type
 *
 * X-Conn-Id names a connection in the log lines (WS_TEST_LOG), as in
 * probe.c: "connect id=<id> pid=<pid>", "disconnect id=<id> pid=<pid>".
 */
#include "websocket_plugin.h"
#include "test_log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct member {
    const WebSocketServer *server;
    unsigned long serial;          /* tells a reused address from the old */
    char id[64];
    struct member *prev, *next;
} member;

typedef struct job {
    struct job *next;
    int flood;                     /* 0: go, 1: flood */
    char tag[64];
    long n;
    long size;
    member *target;                /* flood: the connection ... */
    unsigned long target_serial;   /* ... while it has this serial */
    char target_id[64];
} job;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static member *members;            /* under lock */
static long member_count;          /* under lock */
static unsigned long next_serial;  /* under lock */
static job *jobs, *jobs_tail;      /* under lock */
static pthread_once_t sender_once = PTHREAD_ONCE_INIT;

static long ms_since(const struct timeval *t0)
{
    struct timeval t1;

    gettimeofday(&t1, NULL);
    return (long)((t1.tv_sec - t0->tv_sec) * 1000
                  + (t1.tv_usec - t0->tv_usec) / 1000);
}

/* Under lock: whether the flood's target is still connected. */
static int target_alive(const job *j)
{
    member *m;

    for (m = members; m; m = m->next) {
        if (m == j->target && m->serial == j->target_serial)
            return 1;
    }
    return 0;
}

static void run_go(const job *j)
{
    size_t cap = (size_t)(j->size > 128 ? j->size : 128) + 1;
    char *msg = malloc(cap);
    member *m;
    long i;

    if (msg == NULL)
        return;
    for (i = 0; i < j->n; i++) {
        int len = snprintf(msg, cap, "%s %ld", j->tag, i);

        if (j->size > len) {
            memset(msg + len, '.', (size_t)(j->size - len));
            len = (int)j->size;
        }
        /* send() only queues: holding the lock while sending is cheap and
         * keeps on_disconnect from freeing a member in use. */
        pthread_mutex_lock(&lock);
        for (m = members; m; m = m->next)
            m->server->send(m->server, MESSAGE_TYPE_TEXT,
                            (const unsigned char *)msg, (size_t)len);
        pthread_mutex_unlock(&lock);
    }
    snprintf(msg, cap, "%s end", j->tag);
    pthread_mutex_lock(&lock);
    for (m = members; m; m = m->next)
        m->server->send(m->server, MESSAGE_TYPE_TEXT,
                        (const unsigned char *)msg, strlen(msg));
    pthread_mutex_unlock(&lock);
    free(msg);
}

static void run_flood(const job *j)
{
    size_t size = j->size > 8 ? (size_t)j->size : 8;
    unsigned char *data = malloc(size);
    long i, accepted = 0, first_reject = -1;
    struct timeval t0;

    if (data == NULL)
        return;
    memset(data, 'f', size);
    gettimeofday(&t0, NULL);
    for (i = 0; i < j->n; i++) {
        size_t r = 0;

        memcpy(data, &i, sizeof(i) < 8 ? sizeof(i) : 8);
        pthread_mutex_lock(&lock);
        if (target_alive(j))
            r = j->target->server->send(j->target->server,
                                        MESSAGE_TYPE_BINARY, data, size);
        pthread_mutex_unlock(&lock);
        if (r != size) {
            first_reject = i;
            break;
        }
        accepted++;
    }
    free(data);
    logf_("flood id=%s accepted=%ld first_reject=%ld ms=%ld", j->target_id,
          accepted, first_reject, ms_since(&t0));
}

static void *sender(void *unused)
{
    (void)unused;
    for (;;) {
        job *j;

        pthread_mutex_lock(&lock);
        while (jobs == NULL)
            pthread_cond_wait(&work, &lock);
        j = jobs;
        jobs = j->next;
        if (jobs == NULL)
            jobs_tail = NULL;
        pthread_mutex_unlock(&lock);

        if (j->flood)
            run_flood(j);
        else
            run_go(j);
        free(j);
    }
    return NULL;
}

static void start_sender(void)
{
    pthread_t thread;
    pthread_attr_t attr;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thread, &attr, sender, NULL) != 0)
        logf_("BUG broadcast: cannot start the sender thread");
    pthread_attr_destroy(&attr);
}

static void post(job *j)
{
    pthread_mutex_lock(&lock);
    j->next = NULL;
    if (jobs_tail)
        jobs_tail->next = j;
    else
        jobs = j;
    jobs_tail = j;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&lock);
}

static void *CALLBACK broadcast_on_connect(const WebSocketServer *server)
{
    const char *id = server->header_get(server, "X-Conn-Id");
    member *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    pthread_once(&sender_once, start_sender);
    snprintf(m->id, sizeof(m->id), "%s", id ? id : "anon");
    m->server = server;
    pthread_mutex_lock(&lock);
    m->serial = ++next_serial;
    m->next = members;
    if (members)
        members->prev = m;
    members = m;
    member_count++;
    pthread_mutex_unlock(&lock);
    if (id != NULL)
        logf_("connect id=%s pid=%d", m->id, (int)getpid());
    return m;
}

static size_t CALLBACK broadcast_on_message(void *priv,
                                            const WebSocketServer *server,
                                            const int type,
                                            unsigned char *buffer,
                                            const size_t size)
{
    member *m = priv;
    char cmd[256];

    if (m == NULL || m->server != server) {
        logf_("BUG broadcast on_message with priv=%p", priv);
        return 0;
    }
    if (type != MESSAGE_TYPE_TEXT || size >= sizeof(cmd))
        return server->send(server, type, buffer, size);
    memcpy(cmd, buffer, size);
    cmd[size] = '\0';

    if (strncmp(cmd, "go:", 3) == 0) {
        job *j = calloc(1, sizeof(*j));
        char *colon;

        if (j == NULL)
            return 0;
        colon = strchr(cmd + 3, ':');
        if (colon == NULL || colon - (cmd + 3) >= (long)sizeof(j->tag)) {
            free(j);
            return server->send(server, MESSAGE_TYPE_TEXT,
                                (const unsigned char *)"bad go", 6);
        }
        memcpy(j->tag, cmd + 3, (size_t)(colon - (cmd + 3)));
        colon++;
        j->n = strtol(colon, &colon, 10);
        if (*colon == ':')
            j->size = strtol(colon + 1, NULL, 10);
        post(j);
    }
    else if (strncmp(cmd, "flood:", 6) == 0) {
        job *j = calloc(1, sizeof(*j));
        char *colon;

        if (j == NULL)
            return 0;
        j->flood = 1;
        j->size = strtol(cmd + 6, &colon, 10);
        j->n = *colon == ':' ? strtol(colon + 1, NULL, 10) : 1;
        j->target = m;
        j->target_serial = m->serial;
        memcpy(j->target_id, m->id, sizeof(j->target_id));
        post(j);
    }
    else if (strcmp(cmd, "count") == 0) {
        char msg[64];
        long n;

        pthread_mutex_lock(&lock);
        n = member_count;
        pthread_mutex_unlock(&lock);
        snprintf(msg, sizeof(msg), "count %ld", n);
        return server->send(server, MESSAGE_TYPE_TEXT,
                            (const unsigned char *)msg, strlen(msg));
    }
    else {
        return server->send(server, type, buffer, size);
    }
    return 0;
}

static void CALLBACK broadcast_on_disconnect(void *priv,
                                             const WebSocketServer *server)
{
    member *m = priv;

    if (m == NULL || m->server != server) {
        logf_("BUG broadcast on_disconnect with priv=%p", priv);
        return;
    }
    pthread_mutex_lock(&lock);
    if (m->prev)
        m->prev->next = m->next;
    else
        members = m->next;
    if (m->next)
        m->next->prev = m->prev;
    member_count--;
    pthread_mutex_unlock(&lock);
    if (strcmp(m->id, "anon") != 0)
        logf_("disconnect id=%s pid=%d", m->id, (int)getpid());
    free(m);
}

static WebSocketPlugin broadcast_plugin = {
    sizeof(WebSocketPlugin),
    WEBSOCKET_PLUGIN_VERSION_0,
    NULL,
    broadcast_on_connect,
    broadcast_on_message,
    broadcast_on_disconnect
};

EXPORT WebSocketPlugin *CALLBACK broadcast_init(void)
{
    return &broadcast_plugin;
}
