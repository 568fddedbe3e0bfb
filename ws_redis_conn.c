/*
 * ws_redis_conn.c - one connection to Redis with hiredis, driven by our
 * own poll() and deadlines: hiredis's contexts are non-blocking, so no
 * call waits longer than WebSocketRedisTimeout for a Redis that is slow,
 * stopped or not Redis at all, and every wait also ends when the child
 * stops (stop_fd readable).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "apr_strings.h"

#include "ws_redis_int.h"

static void fail(ws_redis_link *l, const char *what, const char *why)
{
    apr_snprintf(l->err, sizeof(l->err), "%s: %s", what, why);
}

/* Waits until the socket is ready for events or deadline passes.  1
 * ready, 0 timeout or stop (err set), -1 poll failed. */
static int wait_for(ws_redis_link *l, short events, apr_time_t deadline)
{
    struct pollfd fds[2];

    for (;;) {
        apr_time_t left = deadline - apr_time_now();
        int n;

        if (left <= 0) {
            fail(l, "timeout", events & POLLOUT ? "Redis does not read"
                                                : "Redis does not answer");
            return 0;
        }
        fds[0].fd = l->c->fd;
        fds[0].events = events;
        fds[1].fd = l->stop_fd;
        fds[1].events = POLLIN;
        n = poll(fds, l->stop_fd >= 0 ? 2 : 1,
                 (int)((left + 999) / 1000));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fail(l, "poll", strerror(errno));
            return -1;
        }
        if (l->stop_fd >= 0 && (fds[1].revents & POLLIN)) {
            fail(l, "stopping", "the child stops");
            return 0;
        }
        if (fds[0].revents) {
            return 1;
        }
    }
}

int ws_redis_link_flush(ws_redis_link *l, apr_time_t deadline)
{
    int done = 0;

    while (!done) {
        if (redisBufferWrite(l->c, &done) != REDIS_OK) {
            fail(l, "write", l->c->errstr);
            return 0;
        }
        if (!done && wait_for(l, POLLOUT, deadline) <= 0) {
            return 0;
        }
    }
    return 1;
}

int ws_redis_link_poll_reply(ws_redis_link *l, redisReply **reply)
{
    void *r = NULL;
    struct pollfd pfd;

    if (redisReaderGetReply(l->c->reader, &r) != REDIS_OK) {
        fail(l, "protocol", l->c->reader->errstr);
        return -1;
    }
    if (!r) {
        pfd.fd = l->c->fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, 0) == 1) {
            if (redisBufferRead(l->c) != REDIS_OK) {
                fail(l, "read", l->c->errstr);
                return -1;
            }
            if (redisReaderGetReply(l->c->reader, &r) != REDIS_OK) {
                fail(l, "protocol", l->c->reader->errstr);
                return -1;
            }
        }
    }
    *reply = r;
    return r != NULL;
}

int ws_redis_link_reply(ws_redis_link *l, apr_time_t deadline,
                        redisReply **reply)
{
    for (;;) {
        int rc = ws_redis_link_poll_reply(l, reply);

        if (rc) {
            return rc > 0;
        }
        if (wait_for(l, POLLIN, deadline) <= 0) {
            return 0;
        }
    }
}

int ws_redis_link_append(ws_redis_link *l, int argc, const char **argv,
                         const size_t *lens)
{
    if (redisAppendCommandArgv(l->c, argc, argv, lens) != REDIS_OK) {
        fail(l, "command", l->c->errstr);
        return 0;
    }
    return 1;
}

/* One command of the handshake, its answer checked: 1, or 0 (err set). */
static int handshake_command(ws_redis_link *l, const char *what, int argc,
                             const char **argv, apr_time_t deadline)
{
    redisReply *reply = NULL;
    int ok;

    if (!ws_redis_link_append(l, argc, argv, NULL)
        || !ws_redis_link_flush(l, deadline)
        || !ws_redis_link_reply(l, deadline, &reply)) {
        return 0;
    }
    ok = reply->type != REDIS_REPLY_ERROR;
    if (!ok) {
        fail(l, what, reply->str);
    }
    freeReplyObject(reply);
    return ok;
}

/* The non-blocking connect: done when the socket is writable. */
static int connect_wait(ws_redis_link *l, apr_time_t deadline)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (wait_for(l, POLLOUT, deadline) <= 0) {
        if (!strncmp(l->err, "timeout", 7)) {
            fail(l, "connect", "timed out");
        }
        return 0;
    }
    if (getsockopt(l->c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
        fail(l, "connect", strerror(err ? err : errno));
        return 0;
    }
    return 1;
}

int ws_redis_link_open(ws_redis_link *l, const ws_redis_conf *conf)
{
    apr_time_t deadline = apr_time_now() + conf->timeout;
    const char *argv[3];
    char db[16];
    int ok;

    l->err[0] = '\0';
    l->c = conf->socket_path ? redisConnectUnixNonBlock(conf->socket_path)
                             : redisConnectNonBlock(conf->host, conf->port);
    if (!l->c || l->c->err) {
        fail(l, "connect", l->c ? l->c->errstr : "out of memory");
        ws_redis_link_close(l);
        return 0;
    }
    /* Not for the programs a child may run (mod_cgi, piped logs). */
    fcntl(l->c->fd, F_SETFD, FD_CLOEXEC);
    if (!conf->socket_path) {
        redisEnableKeepAlive(l->c);
    }
    ok = connect_wait(l, deadline);
    if (ok && conf->password) {
        argv[0] = "AUTH";
        argv[1] = conf->user ? conf->user : conf->password;
        argv[2] = conf->password;
        ok = handshake_command(l, "AUTH", conf->user ? 3 : 2, argv, deadline);
    }
    if (ok && conf->db > 0) {
        apr_snprintf(db, sizeof(db), "%d", conf->db);
        argv[0] = "SELECT";
        argv[1] = db;
        ok = handshake_command(l, "SELECT", 2, argv, deadline);
    }
    if (ok) {
        /* Proves that a Redis answers, even without AUTH or SELECT. */
        argv[0] = "PING";
        ok = handshake_command(l, "PING", 1, argv, deadline);
    }
    if (!ok) {
        ws_redis_link_close(l);
    }
    return ok;
}

void ws_redis_link_close(ws_redis_link *l)
{
    if (l->c) {
        redisFree(l->c);
        l->c = NULL;
    }
}
