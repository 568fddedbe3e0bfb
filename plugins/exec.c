/*
 * exec - one program per WebSocket: what it writes to stdout goes to the
 * client, what the client sends goes to its stdin, its stderr to the
 * error log.  The websocketd idea, inside Apache.
 *
 *     <Location /stream>
 *         SetHandler websocket-handler
 *         WebSocketHandler modules/mod_websocket_exec.so exec_init
 *         WebSocketParam command /usr/local/bin/ticker.sh
 *     </Location>
 *
 * The parameters (command, mode, max_processes, stop_grace, kill_grace,
 * max_line, pass_env, subprotocols) and what the program sees are in the
 * README ("The exec plugin").  The parts are listed in exec/exec.h.
 *
 * A connection's life: on_connect reads the parameters, takes a place
 * under max_processes (or refuses with 503) and builds the environment
 * while the request is at hand; on_open, after the 101, starts the
 * program and hands it to the poller; on_message writes to its stdin;
 * on_drain lets the poller read its stdout again; on_disconnect lets go
 * of it, and the poller ends it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apr_strings.h"

#include "exec/exec.h"
#include "ws_log.h"

/* What init returns: one per WebSocketHandler line, so that each
 * location has its own process count. */
typedef struct exec_site {
    WebSocketPlugin2 plugin;       /* first: the module hands it back */
    exec_limit *limit;
} exec_site;

/* One connection. */
typedef struct exec_conn {
    exec_conf conf;
    char **envp;
    exec_proc *proc;
} exec_conn;

#define DEFAULT_QUEUE_LIMIT  (16 * 1024 * 1024)
#define RETRY_AFTER          "5"

static void refuse(const WebSocketServer *server, int status)
{
    server->refuse_with(server, status);
    if (status == 503) {
        server->header_set(server, "Retry-After", RETRY_AFTER);
    }
}

/* The first subprotocol the client offered that the location lists. */
static const char *choose_subprotocol(const WebSocketServer *server,
                                      const exec_conf *conf, request_rec *r)
{
    size_t i, n = server->protocol_count(server);

    for (i = 0; conf->subprotocols && i < n; i++) {
        const char *offered = server->protocol_index(server, i);
        char *list = apr_pstrdup(r->pool, conf->subprotocols), *name, *last;

        for (name = apr_strtok(list, " \t", &last); name;
             name = apr_strtok(NULL, " \t", &last)) {
            if (!strcmp(name, offered)) {
                server->protocol_set(server, offered);
                return offered;
            }
        }
    }
    return NULL;
}

/* How much output one message may carry and when to stop reading, from
 * the connection's WebSocketSendQueueLimit: reading stops above half of
 * it, and one more message must still fit after that: a binary one of a
 * quarter, or a text one of an eighth, which U+FFFD for each bad byte may
 * make three times longer. */
static void size_output(exec_proc *p, const WebSocketServer *server,
                        const exec_conf *conf)
{
    size_t limit = server->queue_limit(server);
    size_t most;

    limit = limit ? limit : DEFAULT_QUEUE_LIMIT;
    most = conf->binary ? limit / 4 : limit / 8;
    p->max_message = conf->binary ? 64 * 1024 : conf->max_line;
    if (p->max_message > most) {
        p->max_message = most ? most : 1;
    }
    p->high_water = limit / 2;
}

static void *CALLBACK exec_on_connect(const WebSocketServer *server)
{
    request_rec *r = server->request(server);
    exec_site *site;
    exec_conn *c;
    const char *err, *protocol;

    if (!WEBSOCKET_SERVER_HAS(server, plugin)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, WSLOGNO(00069) "exec: this mod_websocket "
                      "is older than the plugin (no refuse_with, queue_limit "
                      "and plugin calls)");
        return NULL;
    }
    site = (exec_site *)(void *)server->plugin(server);
    c = apr_pcalloc(r->pool, sizeof(*c));
    if ((err = exec_conf_read(&c->conf, server, r)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, WSLOGNO(00070) "exec %s: %s",
                      c->conf.location, err);
        refuse(server, 500);
        return NULL;
    }
    protocol = choose_subprotocol(server, &c->conf, r);
    c->proc = exec_proc_create(r->server, &c->conf, server);
    if (!c->proc) {
        refuse(server, 500);
        return NULL;
    }
    if (c->conf.max_processes && site->limit) {
        if (!exec_limit_take(site->limit, c->conf.max_processes)) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, WSLOGNO(00071) "exec %s: %d programs "
                          "run already (max_processes): refused with 503",
                          c->conf.location, c->conf.max_processes);
            exec_proc_free(c->proc);
            refuse(server, 503);
            return NULL;
        }
        c->proc->limit = site->limit;
    }
    size_output(c->proc, server, &c->conf);
    c->envp = exec_env_build(r, &c->conf, protocol);
    return c;
}

/* The poller starts the program: posix_spawn waits until the program is
 * exec'ed, which an event loop must not. */
static void CALLBACK exec_on_open(void *priv, const WebSocketServer *server)
{
    exec_conn *c = priv;
    exec_proc *p = c->proc;
    int rc;

    pthread_mutex_lock(&p->lock);
    p->start_conf = &c->conf;
    p->start_env = c->envp;
    rc = exec_poll_add(p);
    p->handed = rc == 0;
    pthread_mutex_unlock(&p->lock);
    if (rc != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rc, p->s, WSLOGNO(00072) "%s: cannot start the "
                     "thread that watches programs", p->label);
        server->close_with(server, 1011, "cannot start the program");
    }
}

static size_t CALLBACK exec_on_message(void *priv,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t size)
{
    exec_conn *c = priv;
    exec_proc *p = c->proc;

    if (!p->binary && type != MESSAGE_TYPE_TEXT) {
        server->close_with(server, 1003, "text messages only");
        return 0;
    }
    pthread_mutex_lock(&p->lock);
    exec_in_message(p, buffer, size);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* An on_drain may be older than the send that paused the output (the
 * engine drained before it, and the call waited for our lock): output
 * resumes only when the queue is low now.  When it is not, the send that
 * took it high armed another on_drain. */
static void CALLBACK exec_on_drain(void *priv, const WebSocketServer *server)
{
    exec_conn *c = priv;
    exec_proc *p = c->proc;

    pthread_mutex_lock(&p->lock);
    if (p->out_paused && p->handed
        && server->queued(server) <= p->high_water) {
        p->out_paused = 0;
        exec_poll_kick(p);
    }
    pthread_mutex_unlock(&p->lock);
}

/* On prefork's hard stop on_disconnect runs in a signal handler, perhaps
 * over our own on_message on the same thread: the lock is then taken
 * only if it comes within a second (the process exits right after). */
static int lock_for_disconnect(exec_proc *p)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    return pthread_mutex_timedlock(&p->lock, &until) == 0;
}

static void CALLBACK exec_on_disconnect(void *priv,
                                        const WebSocketServer *server)
{
    exec_conn *c = priv;
    exec_proc *p = c->proc;
    int locked;

    (void)server;
    if (!p->handed) {
        /* The poller never saw it. */
        exec_proc_free(p);
        return;
    }
    locked = lock_for_disconnect(p);
    p->server = NULL;
    p->start_conf = NULL;
    p->start_env = NULL;
    p->detached = 1;
    exec_poll_kick(p);
    if (locked) {
        pthread_mutex_unlock(&p->lock);
    }
}

/* The configuration goes away.  Where programs run in this very process
 * (httpd -X), they are ended first: they hold places in the counts, and
 * the plugin may be unloaded next.  Elsewhere (the parent) there is no
 * poller, and this stops nothing. */
static void CALLBACK exec_destroy(WebSocketPlugin *plugin)
{
    exec_site *site = (exec_site *)(void *)plugin;

    exec_poll_shutdown();
    exec_limit_destroy(site->limit);
    free(site);
}

/* Runs in the parent at configuration time (and at each restart), before
 * the children fork: the shared count must be made here. */
EXPORT WebSocketPlugin *CALLBACK exec_init(void)
{
    exec_site *site = calloc(1, sizeof(*site));
    WebSocketPlugin2 *p;

    if (!site) {
        return NULL;
    }
    p = &site->plugin;
    p->size = sizeof(*site);
    p->version = WEBSOCKET_PLUGIN_VERSION_2;
    p->destroy = exec_destroy;
    p->on_connect = exec_on_connect;
    p->on_message = exec_on_message;
    p->on_disconnect = exec_on_disconnect;
    p->on_open = exec_on_open;
    p->on_drain = exec_on_drain;
    site->limit = exec_limit_create();
    if (!site->limit) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, NULL, WSLOGNO(00073) "exec: no shared "
                     "memory for max_processes: it will not be enforced");
    }
    return WEBSOCKET_PLUGIN2(p);
}
