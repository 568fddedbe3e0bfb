/*
 * ws_config.c - the configuration's accessors: what an unset directive
 * means (ws_config.h).
 */
#include "ws_config.h"

apr_off_t ws_conf_max_message_size(const ws_dir_conf *conf)
{
    return conf->max_message_size >= 0 ? conf->max_message_size
                                       : WS_DEFAULT_MAX_MESSAGE_SIZE;
}

apr_off_t ws_conf_send_queue_limit(const ws_dir_conf *conf)
{
    return conf->send_queue_limit >= 0 ? conf->send_queue_limit
                                       : WS_DEFAULT_SEND_QUEUE_LIMIT;
}

apr_interval_time_t ws_conf_close_timeout(const ws_dir_conf *conf)
{
    return conf->close_timeout >= 0 ? conf->close_timeout
                                    : WS_DEFAULT_CLOSE_TIMEOUT;
}

apr_interval_time_t ws_conf_idle_timeout(const ws_dir_conf *conf)
{
    return conf->idle_timeout > 0 ? conf->idle_timeout : 0;
}

apr_interval_time_t ws_conf_slow_plugin(const ws_dir_conf *conf)
{
    return conf->slow_plugin >= 0 ? conf->slow_plugin : WS_DEFAULT_SLOW_PLUGIN;
}

static int conf_flag(int value, int fallback)
{
    return value >= 0 ? value : fallback;
}

/* Defaults keep an idle connection free of zlib memory: no context
 * takeover either way, so both zlib streams exist only while a message
 * is being compressed or inflated (docs/deflate-memory.md). */
void ws_conf_deflate_policy(const ws_dir_conf *conf, ws_deflate_policy *policy)
{
    ws_deflate_policy_default(policy);
    policy->enabled = conf_flag(conf->compression, 1);
    policy->level = conf_flag(conf->compression_level,
                              WS_DEFAULT_COMPRESSION_LEVEL);
    policy->server_no_context_takeover = !conf_flag(conf->server_context_takeover, 0);
    policy->client_no_context_takeover = !conf_flag(conf->client_context_takeover, 0);
    policy->server_max_window_bits = conf_flag(conf->server_window_bits, 15);
    policy->client_max_window_bits = conf_flag(conf->client_window_bits, 0);
    policy->min_size = (size_t)(conf->compression_min_size >= 0
                                ? conf->compression_min_size
                                : WS_DEFAULT_COMPRESSION_MIN);
}

apr_interval_time_t ws_conf_ping_interval(const ws_dir_conf *conf)
{
    return conf->ping_interval > 0 ? conf->ping_interval : 0;
}

apr_interval_time_t ws_conf_ping_timeout(const ws_dir_conf *conf)
{
    return conf->ping_timeout > 0 ? conf->ping_timeout : WS_DEFAULT_PING_TIMEOUT;
}

apr_interval_time_t ws_conf_max_lifetime(const ws_dir_conf *conf)
{
    return conf->max_lifetime > 0 ? conf->max_lifetime : 0;
}

apr_size_t ws_conf_fragment_size(const ws_dir_conf *conf)
{
    return conf->fragment_size > 0 ? (apr_size_t)conf->fragment_size : 0;
}

int ws_conf_max_connections(const ws_dir_conf *conf)
{
    return conf->max_connections > 0 ? conf->max_connections : 0;
}

int ws_conf_max_connections_per_ip(const ws_dir_conf *conf)
{
    return conf->max_connections_per_ip > 0 ? conf->max_connections_per_ip : 0;
}

int ws_conf_topic_history(const ws_dir_conf *conf)
{
    return conf->topic_history > 0 ? conf->topic_history : 0;
}

int ws_conf_topic_overflow(const ws_dir_conf *conf)
{
    return conf->topic_overflow > 0 ? conf->topic_overflow : WS_OVERFLOW_CLOSE;
}
