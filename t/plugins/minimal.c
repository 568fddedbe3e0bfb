/*
 * minimal.c - a plugin with only on_message (destroy, on_connect and
 * on_disconnect are NULL): text comes back upper-cased, binary reversed.
 */
#include "websocket_plugin.h"

#include <stdlib.h>

static size_t CALLBACK minimal_on_message(void *priv,
                                          const WebSocketServer *server,
                                          const int type,
                                          unsigned char *buffer,
                                          const size_t size)
{
    unsigned char *out = malloc(size ? size : 1);
    size_t i, r;

    (void)priv;
    for (i = 0; i < size; i++) {
        if (type == MESSAGE_TYPE_TEXT) {
            unsigned char ch = buffer[i];
            out[i] = (ch >= 'a' && ch <= 'z') ? (unsigned char)(ch - 32) : ch;
        }
        else {
            out[i] = buffer[size - 1 - i];
        }
    }
    r = server->send(server, type, out, size);
    free(out);
    return r;
}

static WebSocketPlugin minimal_plugin = {
    sizeof(WebSocketPlugin),
    WEBSOCKET_PLUGIN_VERSION_0,
    NULL,
    NULL,
    minimal_on_message,
    NULL
};

EXPORT WebSocketPlugin *CALLBACK minimal_init(void)
{
    return &minimal_plugin;
}
