/*
 * websocket_plugin.h - the plugin API of mod_websocket.
 *
 * A plugin is a shared object with an initialisation function, named in
 * httpd.conf by
 *
 *     WebSocketHandler modules/mod_websocket_echo.so echo_init
 *
 * The function returns a WebSocketPlugin that mod_websocket calls for each
 * connection.  The structures, their field order and the constants are
 * those of the apache-websocket module, so a plugin written for it builds
 * against this header and runs unchanged.
 *
 * Versioning: every structure starts with its size and version.  New
 * capabilities are added only at the end of a structure, under a new
 * version number; the module reads a field only when the plugin's size
 * covers it, and plugins should test server->version (and server->size)
 * before calling a function added after WEBSOCKET_SERVER_VERSION_1.
 */
#ifndef WEBSOCKET_PLUGIN_H
#define WEBSOCKET_PLUGIN_H

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

struct _WebSocketServer;
struct request_rec;

/* The request that opened the connection (valid until on_disconnect). */
typedef struct request_rec *(CALLBACK *WS_Request)(const struct _WebSocketServer *server);
/* A request header of the opening handshake, or NULL. */
typedef const char *(CALLBACK *WS_Header_Get)(const struct _WebSocketServer *server,
                                             const char *key);
/* Sets a header of the 101 response; only meaningful in on_connect. */
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
 * closed, send queue full, invalid type).
 */
typedef size_t (CALLBACK *WS_Send)(const struct _WebSocketServer *server,
                                  const int type, const unsigned char *buffer,
                                  const size_t buffer_size);
/* Starts the closing handshake: a Close frame without a status code. */
typedef void (CALLBACK *WS_Close)(const struct _WebSocketServer *server);

#define WEBSOCKET_SERVER_VERSION_1 1

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
    /* Fields of later versions go here, never above. */
} WebSocketServer;

struct _WebSocketPlugin;

/* The function named in WebSocketHandler. */
typedef struct _WebSocketPlugin *(CALLBACK *WS_Init)();
/* Called once when the configuration that loaded the plugin goes away. */
typedef void (CALLBACK *WS_Destroy)(struct _WebSocketPlugin *plugin);

/*
 * Called before the 101 is sent.  Returns the plugin's per-connection
 * data; NULL refuses the connection (the client gets 403).
 */
typedef void *(CALLBACK *WS_OnConnect)(const WebSocketServer *server);
/* Called with each whole text or binary message; the return is ignored. */
typedef size_t (CALLBACK *WS_OnMessage)(void *plugin_private,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t buffer_size);
/* Called exactly once when a connection that on_connect accepted ends. */
typedef void (CALLBACK *WS_OnDisconnect)(void *plugin_private,
                                        const WebSocketServer *server);

#define WEBSOCKET_PLUGIN_VERSION_0 0

typedef struct _WebSocketPlugin {
    unsigned int size;        /* sizeof(WebSocketPlugin) as the plugin saw it */
    unsigned int version;     /* WEBSOCKET_PLUGIN_VERSION_0 */
    WS_Destroy destroy;       /* may be NULL */
    WS_OnConnect on_connect;  /* may be NULL: every connection is accepted */
    WS_OnMessage on_message;  /* required */
    WS_OnDisconnect on_disconnect;   /* may be NULL */
    /* Fields of later versions go here, never above. */
} WebSocketPlugin;

#if defined(__cplusplus)
}
#endif

#endif /* WEBSOCKET_PLUGIN_H */
