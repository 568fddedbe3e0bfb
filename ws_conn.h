/*
 * ws_conn.h - one upgraded WebSocket connection, independent of the engine
 * that drives its I/O.
 *
 * The connection owns the codec, the plugin and a queue of outgoing frames.
 * An engine (ws_sync.c, ws_async*.c) moves bytes with ws_io.c: it feeds
 * what it read to ws_conn_feed_input(), writes what ws_conn_take_output()
 * hands it (and says so with ws_conn_output_written()), runs the timers
 * when ws_conn_next_deadline() says, and asks ws_conn_done() whether the
 * connection is over.
 *
 * Threads: plugins may call send/close from any thread.  Those only touch
 * the queue, under wc->lock, and then call engine->wake().  Everything else
 * (the request, the connection's filters, pools and buckets) belongs to the
 * one thread the engine runs the connection on.
 */
#ifndef WS_CONN_H
#define WS_CONN_H

#include <time.h>

#include "httpd.h"
#include "http_config.h"
#include "apr_buckets.h"
#include "apr_dso.h"
#include "apr_ring.h"
#include "apr_thread_mutex.h"
#include "apr_portable.h"

#include <pthread.h>

#include "websocket_plugin.h"
#include "ws_deflate.h"
#include "ws_frame.h"

#include "ws_config.h"
#include "ws_stats.h"

/* A line about the connection: through its conn_rec while it has one
 * (the error log then names the client and the connection), else through
 * its server, naming the client as ap_log_cerror does (a detached
 * connection: ws_detach.c). */
#define WS_CONN_LOG(level, status, wc, fmt, ...)                         \
    do {                                                                 \
        if ((wc)->c) {                                                   \
            ap_log_cerror(APLOG_MARK, level, status, (wc)->c, fmt,       \
                          ##__VA_ARGS__);                                \
        }                                                                \
        else {                                                           \
            ap_log_error(APLOG_MARK, level, status, (wc)->s,             \
                         "[client %s] " fmt,                             \
                         (wc)->log_client ? (wc)->log_client : "-",      \
                         ##__VA_ARGS__);                                 \
        }                                                                \
    } while (0)

/* ---- engines ---- */

typedef struct _WebSocketState ws_conn;

typedef struct ws_engine {
    const char *name;
    /* Prepares the connection before on_connect, so that plugin threads
     * can wake the engine from the first moment.  APR_EOF: the client
     * can send nothing (an HTTP/2 stream it ended). */
    apr_status_t (*attach)(ws_conn *wc);
    /* Drives the connection after the 101 was sent.  Returns what the
     * handler returns (DONE when the connection is over). */
    int (*run)(ws_conn *wc);
    /* Another thread queued output or asked to close.  Called with
     * wc->lock held; must be safe from any thread. */
    void (*wake)(ws_conn *wc);
    /* Optional: takes a job (ws_conn_run_job) to run elsewhere, copying
     * its data, and returns 1, or returns 0 to have it run right here. */
    int (*dispatch)(ws_conn *wc, int job, const uint8_t *data, size_t len);
    /* Optional: the connection will never run (the plugin refused it):
     * forget it before its pool goes. */
    void (*detach)(ws_conn *wc);
    /* Optional: a plugin callback is about to run on the engine's thread
     * (what: its name, for logs), and has returned; call_end answers 0
     * when the engine's thread was replaced meanwhile (an event loop taken
     * over from a blocking plugin): the connection then parses nothing
     * more on this thread. */
    void (*call_begin)(ws_conn *wc, const char *what);
    int (*call_end)(ws_conn *wc);
    /* Optional: wake for n connections at once (a topic's subscribers),
     * without their locks, from a thread that keeps them from being freed
     * until it returns (the topics' reader, under their lock: a
     * connection leaves its topics before its engine lets it go). */
    void (*wake_many)(ws_conn *const *wcs, size_t n);
} ws_engine;

extern const ws_engine ws_engine_sync;

/* child_stopping: a hard stop of a child without threads (prefork) ends
 * its connections here, since its loop will not run again. */
void ws_sync_child_stopping(int graceful);

/* ---- the connection ---- */

/* One frame for many connections: a topic's message, made once.  The
 * thread that makes it is the one that hands it to connections (the
 * topics' reader); it takes their references in bulk (spare), so that
 * the engines that release them, on other cores, do not pull the line it
 * reads for every connection away from it, nor it theirs. */
typedef struct ws_shared_frame {
    size_t len;                /* of bytes: headers and payloads */
    size_t payload_len;
    apr_uint32_t spare;        /* its maker's references, not handed out */
    char apart[64];            /* what follows is the engines' line */
    apr_uint32_t refs;         /* atomic */
    apr_uint32_t messages;     /* whole messages in bytes: 1, or more
                                  when several were joined */
    uint8_t bytes[1];
} ws_shared_frame;

typedef struct ws_out_frame {
    struct ws_out_frame *next;
    size_t len;
    ws_shared_frame *shared;   /* the bytes are its, when set */
    unsigned char is_close;
    unsigned char is_control;
    /* The connection's own node for a shared frame (ws_conn.topic_node):
     * freeing it only marks it free again (in_use, atomic), so that a
     * subscriber that keeps up costs no allocation per delivery. */
    unsigned char embedded;
    unsigned char in_use;
    uint8_t bytes[1];          /* frame header and payload, len bytes */
} ws_out_frame;

#define WS_FRAME_BYTES(f) ((f)->shared ? (f)->shared->bytes : (f)->bytes)

/* The time for stamps taken per message (the peer's last activity, our
 * last data out, a plugin call's start for the watchdog): the kernel's
 * last tick, read from the vDSO without a clock read.  apr_time_now()
 * reads the clock source, which costs 90-200 ns on a virtual machine
 * whose TSC is not trusted (this one's, docs/performance.md), three times
 * per echoed message; this costs ~15 ns and lags by at most one tick
 * (ws_coarse_resolution(): 1-10 ms), nothing against timeouts in seconds
 * or the watchdog's 10 ms rounds. */
static APR_INLINE apr_time_t ws_coarse_now(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0) {
        return apr_time_now();
    }
    return apr_time_from_sec(ts.tv_sec) + ts.tv_nsec / 1000;
}

/* How far ws_coarse_now() may lag behind apr_time_now(). */
static APR_INLINE apr_interval_time_t ws_coarse_resolution(void)
{
    struct timespec ts;

    if (clock_getres(CLOCK_REALTIME_COARSE, &ts) != 0) {
        return 0;
    }
    return apr_time_from_sec(ts.tv_sec) + (ts.tv_nsec + 999) / 1000;
}

/* Buffers above this are freed after use, so that an idle connection does
 * not keep the memory of its largest message. */
#define WS_KEEP_BUFFER_MAX  (64 * 1024)

/* A table copied out of a pool (ws_detach.c): the request's headers, for
 * header_get, and what a detached connection keeps for its log line. */
typedef struct ws_table ws_table;
/* What a detached connection keeps of its request (ws_detach.c). */
typedef struct ws_detached ws_detached;

struct _WebSocketState {
    /* NULL once the connection is detached from Apache's pools
     * (ws_detach.c): r_late is then what request() rebuilt. */
    request_rec *r;
    conn_rec *c;
    server_rec *s;                   /* outlives r: for logs from any thread */
    const ws_dir_conf *conf;         /* &conf_copy */
    ws_dir_conf conf_copy;           /* outlives the request's merge */
    ws_table *params;                /* WebSocketParam's, copied */
    ws_table *headers_in;            /* the handshake's, copied */
    ws_detached *detached;           /* set once detached */
    const char *log_client;          /* detached: "ip:port" for logs */
    request_rec *r_late;             /* request() after detaching */
    int request_taken;               /* under lock: request() was called */
    struct ws_owned *owned;          /* strings malloc'd for it */
    WebSocketPlugin *plugin;
    void *plugin_private;
    WebSocketServer server;          /* what the plugin sees */
    apr_array_header_t *protocols;   /* offered subprotocols */
    const char *chosen_protocol;
    int in_on_connect;               /* header_set/protocol_set allowed */
    apr_os_thread_t connect_thread;  /* the thread running on_connect */
    int refuse_status;               /* refuse_with's, 0: 403 */
    /* The client's address for log lines from any thread: the request's
     * useragent_ip (mod_remoteip's), copied where it outlives r; and the
     * other strings API v2 gives plugins, copied the same way. */
    const char *client_ip;
    const char *user;
    const char *query;
    const char *path_info;
    const char *extensions;
    void *user_data;                 /* atomic: set_user_data's */
    apr_uint64_t id;                 /* unique in the server: a publish
                                        that excludes its sender names it */
    apr_time_t opened;               /* when the 101 went out */

    const ws_engine *engine;
    void *engine_data;

    /* permessage-deflate, when negotiated.  The compressing side is used
     * under send_lock by whichever thread sends; the inflating side by the
     * engine thread only. */
    ws_deflate_ctx *deflate;
    pthread_mutex_t send_lock;       /* compress and queue, atomically */
    ws_deflate_buf deflated;         /* under send_lock */
    ws_deflate_buf inflated;         /* engine thread */

    /* Shared with sending threads, under lock. */
    pthread_mutex_t lock;
    int locks_made;
    ws_out_frame *out_head, *out_tail;
    apr_size_t out_bytes;            /* queued, not yet handed to engine */
    apr_size_t out_control_bytes;    /* of which control frames */
    apr_size_t out_limit;
    /* Taken by the engine and not yet written (atomic: the engine lowers
     * it without the lock); with out_bytes, what WebSocketSendQueueLimit
     * bounds. */
    apr_size_t engine_bytes;
    int close_queued;                /* no more sends accepted */
    int send_overflow;               /* a sender hit out_limit */
    int finished;                    /* on_disconnect has run */
    int oversize_logged;             /* a send larger than out_limit */
    int out_open_message;            /* send_fragment's message is open */
    int drain_armed;                 /* on_drain when the queue empties */
    unsigned int close_code_sent;    /* our Close's code, 0 before it */
    apr_time_t last_data_out;        /* atomic: a data message queued */
    ws_out_frame topic_node;         /* queues a shared frame, when free */
    apr_size_t frag_size;            /* WebSocketFragmentSize, 0: off */
    /* send_fragment's message, under send_lock. */
    int out_piece_opcode;
    ws_utf8_state out_piece_utf8;

    /* The child's memory accounting (ws_mem.c). */
    APR_RING_ENTRY(_WebSocketState) mem_link;   /* under its lock */
    int mem_registered;
    apr_off_t mem_held;              /* atomic: bytes this connection holds */
    int shed;                        /* atomic: closed by WebSocketMemoryLimit */
    int discard_output;              /* atomic: the engine drops its output */
    size_t parser_held;              /* engine thread: accounted parser buffer */

    /* Topics this connection is subscribed to (ws_topic.c, under its
     * lock). */
    struct ws_subscription *subscriptions;

    int input_paused;                /* atomic: pause_input's */

    /* Engine thread only. */
    ws_parser *parser;
    int peer_closed;                 /* the peer's Close (or a protocol
                                        error) ended the reading side */
    apr_time_t close_deadline;       /* when the closing handshake is given
                                        up, 0 while none has begun */
    apr_time_t last_activity;        /* bytes last read from the peer */
    apr_time_t idle_anchor;          /* the idle timer counts from here */
    int paused;                      /* a message is with a dispatch thread:
                                        parse nothing more until it is done */
    uint8_t *unparsed;               /* input behind that message */
    size_t unparsed_len;
    apr_uint64_t msgs_in;
    apr_uint64_t msgs_out;
    /* The end of the WebSocket, for on_close and the log: the peer's
     * Close (code 0: none came), or why the module failed it. */
    unsigned int peer_close_code;
    unsigned int fail_code;
    size_t peer_reason_len;
    char peer_reason[WS_MAX_CONTROL_SIZE];
    /* Keepalive: a Ping went out at ping_sent (0: none outstanding). */
    apr_time_t ping_sent;
    apr_time_t last_ping;
    /* on_fragment: the message being streamed to the plugin. */
    int stream_opcode;
    int stream_first;
    ws_utf8_state stream_utf8;

    /* Operations: what it moved, for mod_status and the access log
     * (ws_stats.h); its place in WebSocketMaxConnections (ws_limits.h). */
    ws_conn_stats stats;
    struct ws_limit_hold *limit_hold;
};

/* NULL when memory runs out.  deflate: the negotiated permessage-deflate
 * parameters, or NULL when the extension is not in use; extensions: the
 * Sec-WebSocket-Extensions answered, or NULL. */
ws_conn *ws_conn_create(request_rec *r, const ws_dir_conf *conf,
                        apr_array_header_t *protocols,
                        const ws_deflate_params *deflate,
                        const char *extensions);

/* Memory the connection frees when it goes (ws_conn_release): what it
 * keeps for plugins outside Apache's pools.  NULL when memory runs out. */
void *ws_conn_alloc(ws_conn *wc, size_t size);
const char *ws_conn_strdup(ws_conn *wc, const char *s);

/* Frees the connection and what it holds: a cleanup of the connection's
 * pool, unless the async engine detached it from that pool. */
apr_status_t ws_conn_release(void *wc);

/* Runs the plugin's on_connect; 0 when the plugin refused (then nothing
 * it queued is sent, and the engine has let go of the connection). */
int ws_conn_connect_plugin(ws_conn *wc);

/* Parses bytes read from the peer and dispatches what they complete.
 * buf is scratch the codec may write into, with one writable byte past
 * len (text messages are handed to plugins NUL-terminated).  Returns the
 * bytes consumed: all of them, unless the engine paused the connection
 * (a message went to a dispatch thread). */
size_t ws_conn_feed(ws_conn *wc, uint8_t *buf, size_t len);

/* Feeds bytes the engine read itself (scratch: len + 1 writable bytes);
 * what a pause leaves unparsed is kept for ws_conn_resume. */
apr_status_t ws_conn_feed_input(ws_conn *wc, uint8_t *scratch, size_t len);

/* The engine's dispatch of a message finished, or the plugin resumed the
 * input: parses what was left unparsed (scratch: size + 1 bytes).  Due
 * when wc->paused or wc->unparsed, and the input is not paused. */
apr_status_t ws_conn_resume(ws_conn *wc, uint8_t *scratch, apr_size_t size);

/* The 101 went out: the plugin's on_open, on the engine's thread. */
void ws_conn_open(ws_conn *wc);

/* ws_conn_take_drain said so: the plugin's on_drain, on the engine's
 * thread. */
void ws_conn_drained(ws_conn *wc);

/* pause_input: stops (1) or resumes (0) reading from the peer; any
 * thread.  Engines read nothing while ws_conn_input_paused() says so. */
void ws_conn_pause_input(ws_conn *wc, int paused);
int ws_conn_input_paused(const ws_conn *wc);

/* Frees a list of frames taken with ws_conn_take_output. */
void ws_out_frames_free(ws_out_frame *f);

/* ---- sending (ws_out.c); any thread ---- */

/* Queues one whole message (cut at WebSocketFragmentSize, compressed
 * when negotiated): WEBSOCKET_OK or an error of websocket_plugin.h. */
int ws_conn_send_message(ws_conn *wc, int opcode, const uint8_t *data,
                         size_t len);
/* The same, answering as API v0's send does: len, or 0 if refused. */
size_t ws_conn_send(ws_conn *wc, int opcode, const uint8_t *data, size_t len);
/* A piece of a message sent in pieces (send_fragment). */
int ws_conn_send_piece(ws_conn *wc, int opcode, const uint8_t *data,
                       size_t len, int final);
/* Connections whose engines' wake-ups wait to be made together. */
typedef struct ws_wake_batch {
    ws_conn **conns;
    size_t count, cap;
} ws_wake_batch;
/* Queues a frame shared with other connections (a topic's message), from
 * the thread that made it; it takes a reference.  A full queue gives
 * WEBSOCKET_EFULL and nothing more: the caller applies its own policy.
 * An engine with wake_many is woken by ws_conn_wake_batch, which the
 * caller must call while it still keeps the connections from being
 * freed; others at once (wb NULL: all at once). */
int ws_conn_queue_shared_batched(ws_conn *wc, ws_shared_frame *sf,
                                 ws_wake_batch *wb);
void ws_conn_wake_batch(ws_wake_batch *wb);
void ws_wake_batch_free(ws_wake_batch *wb);
/* The same for a message of its own (a topic's message for one
 * subscriber): queued whole if it fits, else WEBSOCKET_EFULL. */
int ws_conn_offer_message(ws_conn *wc, int opcode, const uint8_t *data,
                          size_t len);
ws_shared_frame *ws_shared_frame_create(int opcode, int flags,
                                        const uint8_t *payload, size_t len);
/* Several whole frames one after the other, in one (a topic's messages
 * that reached a child together: one node, one lock, one wake-up and one
 * write for each subscriber).  NULL when out of memory. */
ws_shared_frame *ws_shared_frame_join(ws_shared_frame *const *parts,
                                      size_t count);
/* An engine's reference, once written. */
void ws_shared_frame_release(ws_shared_frame *sf);
/* Its maker's own reference, and the spare ones. */
void ws_shared_frame_drop(ws_shared_frame *sf);
/* Bytes held for sending: queued, or taken and not yet written. */
apr_size_t ws_conn_queued(ws_conn *wc);

/* Queues a Close (code 0: none) and stops accepting sends; any thread. */
void ws_conn_close(ws_conn *wc, uint16_t code, const char *reason);

/* Takes every queued frame, oldest first; the caller frees each, and
 * reports the bytes it wrote with ws_conn_output_written. */
ws_out_frame *ws_conn_take_output(ws_conn *wc);

/* The engine wrote (or dropped) len bytes of the output it took. */
void ws_conn_output_written(ws_conn *wc, apr_size_t len);

/* Whether the queue drained (on_drain is due); asks once.  Engines call
 * it after writing, and then ws_conn_drained. */
int ws_conn_take_drain(ws_conn *wc);

/* With wc->lock held: empties the queue into *dropped, returning the
 * bytes it held. */
apr_size_t ws_conn_drop_queue_locked(ws_conn *wc, ws_out_frame **dropped);

/* Whether the engine must drop the output it holds (the connection was
 * shed); asks once.  Engines call it before taking output. */
int ws_conn_take_discard(ws_conn *wc);

/* WebSocketMemoryLimit: drops what the connection queued, refuses its
 * sends and closes it with 1013; any thread. */
void ws_conn_shed(ws_conn *wc);

/* Whether the engine should stop driving the connection now.
 * engine_output: the engine still holds bytes it could not write. */
int ws_conn_done(ws_conn *wc, apr_time_t now, int engine_output);

/* When the connection's timers (closing handshake, idle timeout) need
 * ws_conn_timers next; 0 for never.  Cheap: it changes only when a timer
 * ran or the closing handshake began, not with every message. */
apr_time_t ws_conn_next_deadline(const ws_conn *wc);

/* Runs the timers that are due. */
void ws_conn_timers(ws_conn *wc, apr_time_t now);

/* httpd stops or restarts: queues the Close that says which, 1012
 * (Service Restart: a new generation of children serves, reconnect now)
 * or 1001 (Going Away: httpd stops, or only this child does); any
 * thread.  ws_conn_stop_code() is that code. */
void ws_conn_close_for_stop(ws_conn *wc);
uint16_t ws_conn_stop_code(void);

/* The peer vanished or I/O failed: no closing handshake is possible. */
void ws_conn_abort(ws_conn *wc, apr_status_t why, const char *what);

/* Runs the plugin's on_message for one message; data[len] must be
 * writable (it is NUL for the call).  Any thread, one at a time per
 * connection. */
void ws_conn_call_plugin(ws_conn *wc, int type, uint8_t *data, size_t len);

/* A plugin callback on the engine's thread, watched where the engine
 * watches: call between ws_conn_watch_begin and ws_conn_watch_end, which
 * answers 0 (and pauses the input) when the engine's thread was replaced
 * meanwhile. */
void ws_conn_watch_begin(ws_conn *wc, const char *what);
int ws_conn_watch_end(ws_conn *wc);

/* The plugin's version 2 callbacks, or NULL for a version 0 plugin. */
const WebSocketPlugin2 *ws_conn_plugin_v2(const ws_conn *wc);

/* Fails the connection: the peer broke the protocol or a limit (code:
 * 1002, 1007, 1009...); one info line. */
void ws_conn_fail(ws_conn *wc, uint16_t code, const char *why);

/* The WebSocketServer functions (ws_api.c). */
void ws_api_init(ws_conn *wc);

/* What an engine's dispatch() is handed: a message for on_message (its
 * MESSAGE_TYPE_ as the job), or the compressed rest of a large message,
 * to inflate before on_message. */
#define WS_JOB_INFLATE_TEXT    (-2)
#define WS_JOB_INFLATE_BINARY  (-3)

/* Runs a job an engine dispatched (data[len] writable); on a dispatch
 * thread, while the engine parses nothing more of the connection. */
void ws_conn_run_job(ws_conn *wc, int job, uint8_t *data, size_t len);

/* From now on the plugin's messages go to the engine's dispatch threads;
 * logs why, once.  Any thread. */
void ws_plugin_mark_slow(ws_plugin_ref *ref, server_rec *s, const char *why);

/* Ends the connection for the plugin (on_disconnect, once) and frees what
 * the connection holds outside its pool. */
void ws_conn_finish(ws_conn *wc);

#endif /* WS_CONN_H */
