/*
 * websocket_plugin.h - the plugin API of mod_websocket.
 *
 * A plugin is a shared object with an initialisation function, named in
 * httpd.conf by
 *
 *     WebSocketHandler modules/mod_websocket_echo.so echo_init
 *
 * The function returns a WebSocketPlugin that mod_websocket calls for each
 * connection.  The structures, their field order and the constants of
 * version 0/1 are those of the apache-websocket module, so a plugin
 * written for it builds against this header and runs unchanged.
 *
 * Versioning: every structure starts with its size and version.  New
 * capabilities are added only at the end of a structure, under a new
 * version number; the module reads a field only when the plugin's size
 * covers it, and plugins test server->version (or server->size) before
 * calling a function of a later version than WEBSOCKET_SERVER_VERSION_1:
 *
 *     if (server->version >= WEBSOCKET_SERVER_VERSION_2)
 *         server->close_with(server, 4000, "bye");
 *
 * ---------------------------------------------------------------------
 * THREADS: WHO MAY CALL WHAT, AND WHEN
 *
 * The callbacks of one connection never overlap: on_connect, then (v2)
 * on_open, then on_message / on_fragment / on_ping / on_pong / on_drain
 * one at a time, then (v2) on_close, then on_disconnect, each exactly
 * once or not at all.  They run on the thread that drives the connection
 * (an event loop, or a worker), or on a dispatch thread for plugins that
 * block (WebSocketSlowPlugin): never two at once for one connection.
 *
 * From any thread, from on_connect until on_disconnect has returned:
 *     send, send_fragment, close, close_with, ping, queued, pause_input,
 *     publish, subscribe, unsubscribe, header_get, client_ip, user,
 *     subprotocol, extensions, query, path_info, param, user_data,
 *     set_user_data, queue_limit, plugin
 * Only in on_connect, on its own thread:
 *     header_set, protocol_set, refuse_with
 * Only in callbacks (the request's pool is not for other threads):
 *     request
 * After on_disconnect has returned: nothing.  A plugin that keeps the
 * WebSocketServer in its own threads must stop using it in on_disconnect
 * (a call racing the end of the connection is refused, never unsafe,
 * until on_disconnect returns).
 *
 * Nothing of the API blocks on the network: sends queue, and the queue of
 * each connection is bounded (WebSocketSendQueueLimit).
 * ---------------------------------------------------------------------
 */
#ifndef WEBSOCKET_PLUGIN_H
#define WEBSOCKET_PLUGIN_H

#include <stddef.h>
#include <stdlib.h>

#if defined(__cplusplus)
extern "C" {
#endif

#if defined(_WIN32)
#define EXPORT __declspec(dllexport)
#define CALLBACK __stdcall
#else
#define EXPORT
#define CALLBACK
#endif

/* Message types, as passed to on_message and send. */
#define MESSAGE_TYPE_INVALID  -1
#define MESSAGE_TYPE_TEXT      0
#define MESSAGE_TYPE_BINARY  128
#define MESSAGE_TYPE_CLOSE   255
#define MESSAGE_TYPE_PING    256
#define MESSAGE_TYPE_PONG    257

/* Results of the version 2 calls: 0, or one of these (negative). */
#define WEBSOCKET_OK            0
#define WEBSOCKET_ECLOSED      -1  /* the connection is closing or closed */
#define WEBSOCKET_EFULL        -2  /* over WebSocketSendQueueLimit: the
                                      connection is being closed (1008) */
#define WEBSOCKET_EINVAL       -3  /* invalid argument (type, size, UTF-8,
                                      close code, topic) */
#define WEBSOCKET_EBUSY        -4  /* another message is being sent in
                                      pieces (send_fragment) */
#define WEBSOCKET_ENOTOPICS    -5  /* topics are off (WebSocketTopicBuffer
                                      Off) or could not be set up */
#define WEBSOCKET_ETOOBIG      -6  /* over WebSocketSendQueueLimit, or over
                                      the largest message a topic carries */
#define WEBSOCKET_ENOMEM       -7

struct _WebSocketServer;
struct request_rec;

/* The request that opened the connection (valid until on_disconnect).  On
 * the async engine an idle connection whose plugin never called this lets
 * go of the request's memory; a later call gets a copy rebuilt from what
 * was kept (the handshake's URI, method, protocol, user, headers, notes,
 * the client's addresses), whose per-directory configuration is the
 * server's defaults.  header_get needs no request: it always answers. */
typedef struct request_rec *(CALLBACK *WS_Request)(const struct _WebSocketServer *server);
/* A request header of the opening handshake, or NULL. */
typedef const char *(CALLBACK *WS_Header_Get)(const struct _WebSocketServer *server,
                                             const char *key);
/* Sets a header of the 101 response; only meaningful in on_connect.  The
 * handshake's own headers (Sec-WebSocket-*, Upgrade, Connection) are
 * refused. */
typedef void (CALLBACK *WS_Header_Set)(const struct _WebSocketServer *server,
                                      const char *key, const char *value);
/* The subprotocols the client offered, in its order of preference. */
typedef size_t (CALLBACK *WS_Protocol_Count)(const struct _WebSocketServer *server);
typedef const char *(CALLBACK *WS_Protocol_Index)(const struct _WebSocketServer *server,
                                                 const size_t index);
/* Chooses the subprotocol answered in the 101; only in on_connect. */
typedef void (CALLBACK *WS_Protocol_Set)(const struct _WebSocketServer *server,
                                        const char *protocol);
/*
 * Sends one whole message of the given type; callable from any thread,
 * never blocks on the network.  Returns buffer_size when the message was
 * accepted for sending and 0 when it was not (connection closing or
 * closed, send queue full, invalid type).  A message larger than
 * WebSocketFragmentSize goes out as several frames.
 */
typedef size_t (CALLBACK *WS_Send)(const struct _WebSocketServer *server,
                                  const int type, const unsigned char *buffer,
                                  const size_t buffer_size);
/* Starts the closing handshake: a Close frame without a status code. */
typedef void (CALLBACK *WS_Close)(const struct _WebSocketServer *server);

/* ---- version 2 ---- */

/* Sends a message in pieces: each call one frame, type the same for all
 * the pieces of a message (MESSAGE_TYPE_TEXT or _BINARY), final set on
 * the last.  Text pieces may split UTF-8 sequences; the whole must be
 * valid.  While a message is open, whole sends of data from any thread
 * return 0 (WEBSOCKET_EBUSY here); control frames go between pieces. */
typedef int (CALLBACK *WS_Send_Fragment)(const struct _WebSocketServer *server,
                                        int type, const unsigned char *buffer,
                                        size_t buffer_size, int final);
/* Starts the closing handshake with a status code (1000, 1001, 1003,
 * 1007-1014, 3000-4999) and a UTF-8 reason of at most 123 bytes (cut at
 * a character boundary when longer); reason may be NULL. */
typedef int (CALLBACK *WS_Close_With)(const struct _WebSocketServer *server,
                                     unsigned int code, const char *reason);
/* Sends a Ping with a payload of at most 125 bytes. */
typedef int (CALLBACK *WS_Ping)(const struct _WebSocketServer *server,
                               const unsigned char *payload, size_t size);
/* Bytes accepted for sending and not yet written to the connection. */
typedef size_t (CALLBACK *WS_Queued)(const struct _WebSocketServer *server);
/* Strings about the connection, valid until on_disconnect returns, NULL
 * when there is none: the client's address (the request's useragent_ip:
 * mod_remoteip's when it is loaded), the authenticated user, the
 * subprotocol and extensions answered in the 101, the query string, the
 * part of the path after the <Location> that configured the handler
 * ("/news" for /sub/news under <Location /sub>), and a WebSocketParam by
 * name (the innermost of the location's). */
typedef const char *(CALLBACK *WS_Info)(const struct _WebSocketServer *server);
typedef const char *(CALLBACK *WS_Param)(const struct _WebSocketServer *server,
                                        const char *name);
/* A pointer of the plugin's own for the connection (NULL at first). */
typedef void *(CALLBACK *WS_User_Data)(const struct _WebSocketServer *server);
typedef void (CALLBACK *WS_Set_User_Data)(const struct _WebSocketServer *server,
                                         void *data);
/* Stops (paused 1) or resumes (0) reading from the client: what it sends
 * meanwhile waits in the kernel, and TCP tells the client to slow down.
 * Pings are not answered while paused, and a client's Close or its going
 * away is only noticed when reading resumes (or, with
 * WebSocketPingInterval, when its Pong does not come).  Called from
 * on_fragment with a compressed message, the pause takes effect after the
 * pieces inflated from what was already read of that frame. */
typedef void (CALLBACK *WS_Pause_Input)(const struct _WebSocketServer *server,
                                       int paused);

/* Topics: exact strings of 1 to 1024 bytes.  A subscribed connection gets
 * every message published to the topic afterwards, from any child
 * process of the server (and from every node with WebSocketRedis), in
 * publish order, straight to the client (the plugin is not called); one
 * whose queue is full is closed with 1013 (or, with WebSocketTopicOverflow
 * Drop, misses the message and the next one it gets says so), never
 * silently.
 *
 * Flags of subscribe: */
#define WEBSOCKET_SUBSCRIBE_IDS  1   /* each message comes with its id:
                                        "id: <id>\n", "gap: <n>\n" when
                                        messages were missed before it,
                                        a blank line, then the message */
/* resume_after: with WEBSOCKET_SUBSCRIBE_IDS, the id of the last message
 * the client saw (or NULL): the messages published since that the topic's
 * history still holds (WebSocketTopicHistory) come first, then the live
 * ones, none twice; a "gap" line says when the history could not cover
 * them all. */
typedef int (CALLBACK *WS_Subscribe)(const struct _WebSocketServer *server,
                                    const char *topic, int flags,
                                    const char *resume_after);
typedef int (CALLBACK *WS_Unsubscribe)(const struct _WebSocketServer *server,
                                      const char *topic);
/* Flags of publish: do not deliver the message to this connection. */
#define WEBSOCKET_PUBLISH_EXCLUDE_SELF  1
/* Publishes a whole message to a topic.  Returns, when the message was
 * accepted, how many connections of the whole server were subscribed to
 * the topic as it was published (0 or more: it is queued for each of
 * them); otherwise an error (WEBSOCKET_ENOTOPICS, _ETOOBIG, _EINVAL). */
typedef long (CALLBACK *WS_Publish)(const struct _WebSocketServer *server,
                                   const char *topic, int type,
                                   const unsigned char *buffer,
                                   size_t buffer_size, int flags);

/* The last calls of version 2, added after its first release: a plugin
 * that wants them tests WEBSOCKET_SERVER_HAS(server, refuse_with) (or
 * queue_limit, or plugin).
 *
 * refuse_with: only in on_connect, on its thread.  When on_connect then
 * returns NULL, the handshake is answered with status (400-599) instead
 * of 403, and the headers set with header_set go out with it (a
 * Retry-After with a 503, say).  WEBSOCKET_OK, or WEBSOCKET_EINVAL
 * outside on_connect or for another status. */
typedef int (CALLBACK *WS_Refuse_With)(const struct _WebSocketServer *server,
                                      int status);
/* queue_limit: the connection's WebSocketSendQueueLimit in bytes, which
 * queued() may not pass (a send that would is refused, and the
 * connection closed with 1008); on_drain comes when queued() falls back
 * under a quarter of it. */
typedef size_t (CALLBACK *WS_Queue_Limit)(const struct _WebSocketServer *server);
/* plugin: what the init function returned for the WebSocketHandler that
 * serves this connection.  Each WebSocketHandler line calls the init
 * function once: one that returns a new structure each time (larger than
 * WebSocketPlugin2, with its own fields after it) keeps state per
 * location. */
typedef struct _WebSocketPlugin *(CALLBACK *WS_Plugin_Of)(
        const struct _WebSocketServer *server);

#define WEBSOCKET_SERVER_VERSION_1 1
#define WEBSOCKET_SERVER_VERSION_2 2

typedef struct _WebSocketServer {
    unsigned int size;        /* sizeof the structure the module filled */
    unsigned int version;     /* WEBSOCKET_SERVER_VERSION_1 or later */
    struct _WebSocketState *state;   /* private to mod_websocket */
    WS_Request request;
    WS_Header_Get header_get;
    WS_Header_Set header_set;
    WS_Protocol_Count protocol_count;
    WS_Protocol_Index protocol_index;
    WS_Protocol_Set protocol_set;
    WS_Send send;
    WS_Close close;
    /* ---- version 2 ---- */
    WS_Send_Fragment send_fragment;
    WS_Close_With close_with;
    WS_Ping ping;
    WS_Queued queued;
    WS_Info client_ip;
    WS_Info user;
    WS_Info subprotocol;
    WS_Info extensions;
    WS_Info query;
    WS_Info path_info;
    WS_Param param;
    WS_User_Data user_data;
    WS_Set_User_Data set_user_data;
    WS_Pause_Input pause_input;
    WS_Subscribe subscribe;
    WS_Unsubscribe unsubscribe;
    WS_Publish publish;
    WS_Refuse_With refuse_with;   /* test WEBSOCKET_SERVER_HAS first */
    WS_Queue_Limit queue_limit;   /* test WEBSOCKET_SERVER_HAS first */
    WS_Plugin_Of plugin;          /* test WEBSOCKET_SERVER_HAS first */
    /* Fields of later versions go here, never above. */
} WebSocketServer;

/* Whether the module that filled server has the call named field. */
#define WEBSOCKET_SERVER_HAS(server, field) \
    ((server)->size >= offsetof(WebSocketServer, field) + sizeof((server)->field))

struct _WebSocketPlugin;

/* The function named in WebSocketHandler. */
typedef struct _WebSocketPlugin *(CALLBACK *WS_Init)();
/* Called once when the configuration that loaded the plugin goes away. */
typedef void (CALLBACK *WS_Destroy)(struct _WebSocketPlugin *plugin);

/*
 * Called before the 101 is sent.  Returns the plugin's per-connection
 * data; NULL refuses the connection (the client gets 403, or the status
 * given to refuse_with).
 */
typedef void *(CALLBACK *WS_OnConnect)(const WebSocketServer *server);
/* Called with each whole text or binary message; the return is ignored.
 * The buffer is the module's, valid during the call, with a NUL after
 * buffer_size bytes (for plugins that treat text as a C string). */
typedef size_t (CALLBACK *WS_OnMessage)(void *plugin_private,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t buffer_size);
/* Called exactly once when a connection that on_connect accepted ends. */
typedef void (CALLBACK *WS_OnDisconnect)(void *plugin_private,
                                        const WebSocketServer *server);

/* ---- version 2 ---- */

/* After the 101 went out: the WebSocket is open. */
typedef void (CALLBACK *WS_OnOpen)(void *plugin_private,
                                  const WebSocketServer *server);
/* The end of the WebSocket, before on_disconnect: the peer's Close code
 * and reason (1005 when its Close had none), 1006 when the connection
 * ended without a Close from the peer, or the code of the Close the
 * module sent for a protocol error (1002, 1007, 1009) or a full queue
 * (1008).  The reason is not NUL-terminated. */
typedef void (CALLBACK *WS_OnClose)(void *plugin_private,
                                   const WebSocketServer *server,
                                   unsigned int code, const char *reason,
                                   size_t reason_size);
/* A Ping (answered by the module whatever the plugin does) or a Pong. */
typedef void (CALLBACK *WS_OnControl)(void *plugin_private,
                                     const WebSocketServer *server,
                                     const unsigned char *payload,
                                     size_t size);
/* The send queue, which a send had taken above a quarter of
 * WebSocketSendQueueLimit, is back under it: time to send more.  It may
 * come after another thread's send took the queue up again: look at
 * queued() before sending much (such a send arms another on_drain). */
typedef void (CALLBACK *WS_OnDrain)(void *plugin_private,
                                   const WebSocketServer *server);
/* Flags of on_fragment. */
#define WEBSOCKET_FRAGMENT_FIRST  1   /* the first piece of a message */
#define WEBSOCKET_FRAGMENT_LAST   2   /* the last piece of a message */
/* With on_fragment set, data messages are not collected whole: their
 * bytes come as they are read (inflated, and for text checked to be
 * UTF-8 so far), in pieces of any size, a message's last piece flagged
 * (an empty message is one piece with both flags).  on_message is not
 * called for them.  WebSocketMaxMessageSize still bounds each message. */
typedef void (CALLBACK *WS_OnFragment)(void *plugin_private,
                                      const WebSocketServer *server,
                                      int type, unsigned char *buffer,
                                      size_t buffer_size, int flags);

#define WEBSOCKET_PLUGIN_VERSION_0 0

/* apache-websocket's plugin structure, unchanged: what a version 0
 * plugin's init function returns. */
typedef struct _WebSocketPlugin {
    unsigned int size;        /* sizeof(WebSocketPlugin) as the plugin saw it */
    unsigned int version;     /* WEBSOCKET_PLUGIN_VERSION_0 */
    WS_Destroy destroy;       /* may be NULL */
    WS_OnConnect on_connect;  /* may be NULL: every connection is accepted */
    WS_OnMessage on_message;  /* required */
    WS_OnDisconnect on_disconnect;   /* may be NULL */
} WebSocketPlugin;

#define WEBSOCKET_PLUGIN_VERSION_2 2

/*
 * A version 2 plugin: the fields of version 0 first, in the same order,
 * then the new callbacks.  Its init function returns it as a
 * WebSocketPlugin:
 *
 *     static WebSocketPlugin2 chat = {
 *         sizeof(WebSocketPlugin2), WEBSOCKET_PLUGIN_VERSION_2,
 *         NULL, chat_on_connect, chat_on_message, chat_on_disconnect,
 *         chat_on_open, chat_on_close, NULL, NULL, NULL, NULL
 *     };
 *     EXPORT WebSocketPlugin *CALLBACK chat_init(void)
 *     {
 *         return WEBSOCKET_PLUGIN2(&chat);
 *     }
 *
 * destroy gets that same pointer back.
 */
typedef struct _WebSocketPlugin2 {
    unsigned int size;        /* sizeof(WebSocketPlugin2) */
    unsigned int version;     /* WEBSOCKET_PLUGIN_VERSION_2 */
    WS_Destroy destroy;       /* may be NULL */
    WS_OnConnect on_connect;  /* may be NULL */
    WS_OnMessage on_message;  /* required, unless on_fragment is set */
    WS_OnDisconnect on_disconnect;   /* may be NULL */
    /* ---- version 2: each may be NULL ---- */
    WS_OnOpen on_open;
    WS_OnClose on_close;
    WS_OnControl on_ping;
    WS_OnControl on_pong;
    WS_OnDrain on_drain;
    WS_OnFragment on_fragment;
    /* Fields of later versions go here, never above. */
} WebSocketPlugin2;

#define WEBSOCKET_PLUGIN2(p) ((WebSocketPlugin *)(void *)(p))

#if defined(__cplusplus)
}
#endif

#endif /* WEBSOCKET_PLUGIN_H */
