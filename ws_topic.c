/*
 * ws_topic.c - topics (ws_topic.h).
 */
#include "ws_topic.h"

int ws_topic_subscribe(ws_conn *wc, const char *topic, size_t len)
{
    (void)wc; (void)topic; (void)len;
    return WEBSOCKET_ENOTOPICS;
}

int ws_topic_unsubscribe(ws_conn *wc, const char *topic, size_t len)
{
    (void)wc; (void)topic; (void)len;
    return WEBSOCKET_ENOTOPICS;
}

long ws_topic_publish(const char *topic, size_t len, int opcode,
                      const uint8_t *data, size_t size, ws_conn *exclude)
{
    (void)topic; (void)len; (void)opcode; (void)data; (void)size; (void)exclude;
    return WEBSOCKET_ENOTOPICS;
}

void ws_topic_forget(ws_conn *wc)
{
    (void)wc;
}
