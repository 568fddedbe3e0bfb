/* bad_size.c - a plugin whose structure has a size
 * that does not cover on_message. */
#include "websocket_plugin.h"

static size_t CALLBACK bad_size_on_message(void *priv,
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
} bad_size_plugin = {
    { (unsigned int)(2 * sizeof(unsigned int)), WEBSOCKET_PLUGIN_VERSION_0,
      NULL, NULL, bad_size_on_message, NULL },
    { NULL, NULL, NULL, NULL }
};

EXPORT WebSocketPlugin *CALLBACK bad_size_init(void)
{
    return &bad_size_plugin.plugin;
}
