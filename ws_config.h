/*
 * ws_config.h - what the directives set: the per-directory configuration
 * (merged for each request) and the accessors that apply the defaults.
 * ws_config.c has the accessors; the directives themselves are
 * described in docs/directives.def.
 */
#ifndef WS_CONFIG_H
#define WS_CONFIG_H

#include "httpd.h"
#include "http_config.h"
#include "apr_dso.h"
#include "apr_tables.h"

#include "websocket_plugin.h"
#include "ws_deflate.h"

#define WS_ORIGIN_UNSET   -1
#define WS_ORIGIN_OFF      0
#define WS_ORIGIN_SAME     1
#define WS_ORIGIN_TRUSTED  2

#define WS_DEFAULT_MAX_MESSAGE_SIZE   (16 * 1024 * 1024)
#define WS_DEFAULT_SEND_QUEUE_LIMIT   (16 * 1024 * 1024)
#define WS_DEFAULT_CLOSE_TIMEOUT      apr_time_from_sec(5)
#define WS_DEFAULT_COMPRESSION_LEVEL  1
#define WS_DEFAULT_COMPRESSION_MIN    64
#define WS_DEFAULT_SLOW_PLUGIN        apr_time_from_msec(20)
#define WS_SLOW_PLUGIN_ALWAYS         1     /* WebSocketSlowPlugin Always */
#define WS_DEFAULT_PING_TIMEOUT       apr_time_from_sec(10)

typedef struct ws_plugin_ref {
    const char *path;          /* as resolved against ServerRoot */
    const char *symbol;        /* the init function's name */
    /* The <Location> (or <Directory>) whose WebSocketHandler this is:
     * what path_info() is the rest of.  section_regex: the compiled
     * pattern of a <LocationMatch> (or <Location ~>), whose match's end
     * is where the rest begins; section_is_location: 0 for <Directory>
     * and .htaccess, where Apache's own path_info is the rest. */
    const char *section;
    ap_regex_t *section_regex;
    int section_is_location;
    apr_dso_handle_t *dso;
    WebSocketPlugin *plugin;
    /* Set (per child) once an on_message call of this plugin took longer
     * than WebSocketSlowPlugin: its messages then leave the event loop. */
    volatile apr_uint32_t slow;
} ws_plugin_ref;

/* Unset fields are -1 (or NULL) so that merging can tell them apart. */
typedef struct ws_dir_conf {
    ws_plugin_ref *handler;
    apr_off_t max_message_size;
    apr_off_t send_queue_limit;
    apr_interval_time_t close_timeout;
    apr_interval_time_t idle_timeout;     /* 0: none */
    apr_interval_time_t slow_plugin;      /* 0: never offload */
    int origin_check;
    int allow_reserved_codes;
    apr_array_header_t *trusted_origins;   /* of const char * */
    /* permessage-deflate */
    int compression;                  /* On/Off */
    int compression_level;
    int server_context_takeover;      /* On/Off */
    int client_context_takeover;      /* On/Off */
    int server_window_bits;           /* 9..15 */
    int client_window_bits;           /* 8..15, 0 = do not ask */
    apr_off_t compression_min_size;
    /* keepalive and lifetime; 0: off */
    apr_interval_time_t ping_interval;
    apr_interval_time_t ping_timeout;
    apr_interval_time_t max_lifetime;
    apr_off_t fragment_size;          /* 0: whole messages */
    apr_table_t *params;              /* WebSocketParam name -> value */
    /* topics */
    int topic_history;                /* messages a resume may replay */
    int topic_overflow;               /* WS_OVERFLOW_CLOSE or _DROP */
    /* WebSocketMaxConnections: the limit (0: Off), and where it was set:
     * the section it counts for, in its server (ws_limits.c). */
    int max_connections;
    const server_rec *limit_server;
    const char *limit_section;
    int max_connections_per_ip;       /* WebSocketMaxConnectionsPerIP */
} ws_dir_conf;

#define WS_OVERFLOW_CLOSE  1
#define WS_OVERFLOW_DROP   2

apr_off_t ws_conf_max_message_size(const ws_dir_conf *conf);
apr_off_t ws_conf_send_queue_limit(const ws_dir_conf *conf);
apr_interval_time_t ws_conf_close_timeout(const ws_dir_conf *conf);
apr_interval_time_t ws_conf_idle_timeout(const ws_dir_conf *conf);
apr_interval_time_t ws_conf_slow_plugin(const ws_dir_conf *conf);
apr_interval_time_t ws_conf_ping_interval(const ws_dir_conf *conf);
apr_interval_time_t ws_conf_ping_timeout(const ws_dir_conf *conf);
apr_interval_time_t ws_conf_max_lifetime(const ws_dir_conf *conf);
apr_size_t ws_conf_fragment_size(const ws_dir_conf *conf);
int ws_conf_max_connections(const ws_dir_conf *conf);
int ws_conf_max_connections_per_ip(const ws_dir_conf *conf);
int ws_conf_topic_history(const ws_dir_conf *conf);
int ws_conf_topic_overflow(const ws_dir_conf *conf);
/* The permessage-deflate policy the directives make. */
void ws_conf_deflate_policy(const ws_dir_conf *conf, ws_deflate_policy *policy);

#endif /* WS_CONFIG_H */
