/* future.c - a plugin whose structure is larger (a later
 * layout), still version 0. */
#include "websocket_plugin.h"

static size_t CALLBACK future_on_message(void *priv,
                                          const WebSocketServer *server,
                                          const int type,
                                          unsigned char *buffer,
                                          const size_t size)
{
    (void)priv;
    return server->send(server, type, buffer, size);
}

static struct {
    WebSocketPlugin plugin;
    void *later_fields[4];
} future_plugin = {
    { (unsigned int)(sizeof(WebSocketPlugin) + 32), WEBSOCKET_PLUGIN_VERSION_0,
      NULL, NULL, future_on_message, NULL },
    { NULL, NULL, NULL, NULL }
};

EXPORT WebSocketPlugin *CALLBACK future_init(void)
{
    return &future_plugin.plugin;
}
