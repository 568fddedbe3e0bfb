/* init_null.c - a plugin whose init function fails (returns NULL). */
#include "websocket_plugin.h"

EXPORT WebSocketPlugin *CALLBACK init_null_init(void)
{
    return NULL;
}
