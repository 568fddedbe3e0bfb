/* null_on_message.c - a plugin without the required on_message. */
#include "websocket_plugin.h"

static WebSocketPlugin null_on_message_plugin = {
    sizeof(WebSocketPlugin), WEBSOCKET_PLUGIN_VERSION_0, NULL, NULL, NULL, NULL
};

EXPORT WebSocketPlugin *CALLBACK null_on_message_init(void)
{
    return &null_on_message_plugin;
}
