/*
 * exec.h - the parts of the exec plugin (plugins/exec.c and
 * plugins/exec/exec_*.c): one program per WebSocket, its stdout made
 * messages, the messages written to its stdin.
 *
 *   exec.c         the plugin: init, destroy, the connection's callbacks
 *   exec_conf.c    the location's WebSocketParams, read per connection
 *   exec_env.c     the program's environment (CGI variables)
 *   exec_limit.c   max_processes: a count per location in shared memory
 *   exec_proc.c    starting, signalling and reaping a program
 *   exec_in.c      messages to the program's stdin, with back-pressure
 *   exec_out.c     the program's stdout to messages, its stderr to the log
 *   exec_poll.c    the poller: one thread per httpd child watching every
 *                  program's pipes and pidfd, the grace timers, the end
 *
 * Threads.  A program (exec_proc) is shared by the connection's callbacks
 * and the poller thread; both hold proc->lock while they touch it, and
 * the poller calls the WebSocketServer only under that lock and only
 * while proc->server is set, which on_disconnect clears (under the lock):
 * so no call reaches a connection after its on_disconnect returned.  The
 * poller alone frees a program, once the connection has let go of it
 * (detached) and the program is reaped with every descriptor closed.
 * Lock order: proc->lock, then the module's own locks (inside the server
 * calls), then the poller's kick lock.
 */
#ifndef EXEC_H
#define EXEC_H

#include <pthread.h>
#include <sys/types.h>

#include "httpd.h"
#include "http_log.h"

#include "websocket_plugin.h"

/* ---- settings (exec_conf.c) ---- */

typedef struct exec_conf {
    const char *location;          /* the endpoint's path, for log lines */
    const char *program;           /* the program's resolved path */
    const char *const *argv;       /* argv[0] as written in command */
    int binary;                    /* mode binary */
    int max_processes;             /* 0: no limit */
    apr_interval_time_t stop_grace;   /* stdin closed -> SIGTERM */
    apr_interval_time_t kill_grace;   /* SIGTERM -> SIGKILL */
    apr_size_t max_line;           /* text mode: longest message sent */
    const char *pass_env;          /* names, space-separated, or NULL */
    const char *subprotocols;      /* names, space-separated, or NULL */
} exec_conf;

/* Reads the location's parameters into conf (allocated in r->pool);
 * NULL, or what is wrong with them. */
const char *exec_conf_read(exec_conf *conf, const WebSocketServer *server,
                           request_rec *r);

/* ---- environment (exec_env.c) ---- */

/* The program's environment, NULL-terminated, in r->pool: CGI's
 * variables from Apache's helpers, filtered (see the README). */
char **exec_env_build(request_rec *r, const exec_conf *conf,
                      const char *subprotocol);

/* ---- the process limit (exec_limit.c) ---- */

typedef struct exec_limit exec_limit;

/* In the parent, at configuration time: NULL when shared memory cannot
 * be had (then no limit is enforced, and the caller logs it). */
exec_limit *exec_limit_create(void);
void exec_limit_destroy(exec_limit *limit);
/* Takes a place if fewer than max are taken in the whole server: 1, or
 * 0 when full. */
int exec_limit_take(exec_limit *limit, int max);
void exec_limit_give(exec_limit *limit);

/* ---- a program and its connection ---- */

enum { EXEC_FD_OUT, EXEC_FD_ERR, EXEC_FD_IN, EXEC_FD_PID, EXEC_FD_COUNT };
enum { EXEC_NEW, EXEC_LISTED, EXEC_DEAD };

#define EXEC_UNKNOWN      -1       /* ended, its status lost */
#define EXEC_NOT_STARTED  -2

/* What epoll hands back: which descriptor of which program. */
typedef struct exec_tag {
    struct exec_proc *proc;
    int which;
} exec_tag;

typedef struct exec_buf {
    char *data;
    size_t len;                   /* bytes held, from data[off] */
    size_t off;                   /* bytes already consumed */
    size_t cap;
} exec_buf;

typedef struct exec_proc {
    pthread_mutex_t lock;
    const WebSocketServer *server; /* NULL once on_disconnect ran */
    server_rec *s;                 /* for log lines (the config's) */
    exec_limit *limit;             /* the place to give back, or NULL */
    char label[160];               /* "exec /stream: program[pid]" */
    int binary;
    size_t max_message;            /* what one message of output may hold */
    size_t high_water;             /* queued() above it: stop reading */
    apr_interval_time_t stop_grace, kill_grace;

    /* What the poller starts the program with (the connection's, in the
     * request's pool: cleared by on_disconnect), and whether the
     * connection handed it to the poller. */
    const exec_conf *start_conf;
    char **start_env;
    int handed;

    pid_t pid;                     /* 0 before the start */
    int fd[EXEC_FD_COUNT];         /* -1 when closed */
    exec_tag tag[EXEC_FD_COUNT];
    unsigned watched[EXEC_FD_COUNT];  /* the epoll events asked for */

    exec_buf in;                   /* for stdin, not yet written */
    int input_paused;              /* we paused the client */
    exec_buf out;                  /* stdout read, not yet sent */
    int out_paused;                /* queue above high_water: wait drain */
    exec_buf err;                  /* stderr's unfinished line */

    int detached;                  /* the connection is gone */
    int exited;                    /* reaped, or never started */
    int wait_status;               /* exit status, 256 + signal, or
                                      EXEC_UNKNOWN, EXEC_NOT_STARTED */
    int close_sent;
    apr_time_t term_at, kill_at;   /* 0: not scheduled */
    apr_time_t reap_at;            /* without a pidfd: next look */
    int sent_term, sent_kill;

    /* The poller's: its list of programs (listed: EXEC_NEW, _LISTED,
     * _DEAD), and the kick list (kicked, under the kick lock). */
    struct exec_proc *prev, *next, *dead_next;
    int listed;
    struct exec_proc *kick_next;
    int kicked;
} exec_proc;

/* exec_proc.c */
exec_proc *exec_proc_create(server_rec *s, const exec_conf *conf,
                            const WebSocketServer *server);
/* Starts the program (on the poller: posix_spawn waits for the exec,
 * which must not hold up an event loop): 0, or an errno. */
int exec_proc_spawn(exec_proc *p, const exec_conf *conf, char **envp);
/* It will never run: its place under max_processes goes back. */
void exec_proc_not_started(exec_proc *p);
/* The program ended (its pidfd said so): reaps it. */
void exec_proc_reap(exec_proc *p);
/* The grace timers, when due: SIGTERM, then SIGKILL, to its group. */
void exec_proc_signal_due(exec_proc *p, apr_time_t now);
/* The next timer of the program, or 0. */
apr_time_t exec_proc_next_deadline(const exec_proc *p);
void exec_proc_close_fd(exec_proc *p, int which);
void exec_proc_free(exec_proc *p);
/* "exited with status 3", "killed by signal 9", ... into buf. */
const char *exec_proc_describe_end(const exec_proc *p, char *buf,
                                   size_t size);

/* Growable buffers (exec_proc.c). */
int exec_buf_reserve(exec_buf *b, size_t more);
int exec_buf_append(exec_buf *b, const void *data, size_t len);
void exec_buf_consume(exec_buf *b, size_t len);
void exec_buf_free(exec_buf *b);

/* exec_in.c: with proc->lock held. */
/* A client's message for stdin (text: with a newline after it). */
void exec_in_message(exec_proc *p, const unsigned char *data, size_t len);
/* stdin is writable: writes what waits. */
void exec_in_flush(exec_proc *p);
/* No more input: stdin closed, the client resumed. */
void exec_in_close(exec_proc *p);

/* exec_out.c: with proc->lock held, on the poller. */
/* stdout is readable (or the program ended): reads and sends. */
void exec_out_read(exec_proc *p);
/* Sends what was read and not yet sent, as far as the queue allows. */
void exec_out_flush(exec_proc *p);
/* Everything of stdout is sent (or dropped): the program's output is
 * over. */
int exec_out_done(const exec_proc *p);
/* stderr is readable: each line to the error log. */
void exec_err_read(exec_proc *p);

/* exec_poll.c */
/* Hands a started program to the poller (started on first use). */
int exec_poll_add(exec_proc *p);
/* Something changed for p outside the poller (with p->lock held): the
 * poller looks at it again soon. */
void exec_poll_kick(exec_proc *p);
/* Asks the poller for the events it should watch on p's descriptor. */
void exec_poll_watch(exec_proc *p, int which, unsigned events);
/* The plugin goes away: ends every program of this process as at a
 * connection's end and stops the poller (a no-op where none runs). */
void exec_poll_shutdown(void);

/* Log lines: the module's (LogLevel websocket:...). */
APLOG_USE_MODULE(websocket);

#endif /* EXEC_H */
