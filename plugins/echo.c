/*
 * echo - sends every message back as it came, text as text, binary as
 * binary.  The smallest useful plugin, and the one to copy.
 *
 *     <Location /echo>
 *         SetHandler websocket-handler
 *         WebSocketHandler modules/mod_websocket_echo.so echo_init
 *     </Location>
 */
#include "websocket_plugin.h"

static size_t CALLBACK echo_on_message(void *plugin_private,
                                       const WebSocketServer *server,
                                       const int type, unsigned char *buffer,
                                       const size_t buffer_size)
{
    (void)plugin_private;
    return server->send(server, type, buffer, buffer_size);
}

/* on_connect must return non-NULL to accept; echo keeps no state. */
static void *CALLBACK echo_on_connect(const WebSocketServer *server)
{
    (void)server;
    return (void *)1;
}

static WebSocketPlugin echo_plugin = {
    sizeof(WebSocketPlugin),
    WEBSOCKET_PLUGIN_VERSION_0,
    NULL,                   /* destroy */
    echo_on_connect,
    echo_on_message,
    NULL                    /* on_disconnect */
};

extern EXPORT WebSocketPlugin *CALLBACK echo_init(void)
{
    return &echo_plugin;
}
