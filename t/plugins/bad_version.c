/* bad_version.c - a plugin whose structure has version 99. */
#include "websocket_plugin.h"

static size_t CALLBACK bad_version_on_message(void *priv,
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
} bad_version_plugin = {
    { sizeof(WebSocketPlugin), 99, NULL, NULL, bad_version_on_message, NULL },
    { NULL, NULL, NULL, NULL }
};

EXPORT WebSocketPlugin *CALLBACK bad_version_init(void)
{
    return &bad_version_plugin.plugin;
}
