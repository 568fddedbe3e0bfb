/*
 * mod_websocket.c - Apache glue: directives, the opening handshake of
 * RFC 6455, plugin loading, and the choice of engine for a connection.
 *
 *     <Location /echo>
 *         SetHandler websocket-handler
 *         WebSocketHandler modules/mod_websocket_echo.so echo_init
 *     </Location>
 *
 * The handler runs after Apache's own access control (Require, auth
 * modules), has the handshake validated (ws_handshake.h), lets the plugin
 * accept or refuse it, answers 101 and hands the connection to an engine
 * (ws_conn.h).
 */
/* stddef.h first: APR then uses offsetof instead of NULL arithmetic. */
#include <stddef.h>
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "apr_base64.h"
#include "apr_lib.h"
#include "apr_sha1.h"
#include "apr_strings.h"

#include "ws_async.h"
#include "ws_blocks.h"
#include "ws_detach.h"
#include "ws_conn.h"
#include "ws_handshake.h"
#include "ws_io.h"
#include "ws_limits.h"
#include "ws_log.h"
#include "ws_mem.h"
#include "ws_redis.h"
#include "ws_publish.h"
#include "ws_shm.h"
#include "ws_stats.h"
#include "ws_topic.h"
#include "ws_version.h"

module AP_MODULE_DECLARE_DATA websocket_module;

#define WS_HANDLER_NAME   "websocket-handler"
#define WS_GUID           "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* WebSocketEventThreads: event-loop threads per child (event MPM). */
static int event_threads = 1;
/* WebSocketDispatchThreads: most threads per child running slow plugins. */
static int dispatch_threads = 16;
/* WebSocketMemoryLimit: all WebSocket buffers of a child (0: no limit). */
static apr_off_t memory_limit = WS_DEFAULT_MEMORY_LIMIT;
/* WebSocketTopicBuffer: the topics' ring shared by all children (0: no
 * topics). */
static apr_off_t topic_buffer = 16 * 1024 * 1024;

/* ---- configuration ---- */

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    ws_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    (void)dir;
    conf->max_message_size = -1;
    conf->send_queue_limit = -1;
    conf->close_timeout = -1;
    conf->idle_timeout = -1;
    conf->slow_plugin = -1;
    conf->origin_check = WS_ORIGIN_UNSET;
    conf->allow_reserved_codes = -1;
    conf->compression = -1;
    conf->compression_level = -1;
    conf->server_context_takeover = -1;
    conf->client_context_takeover = -1;
    conf->server_window_bits = -1;
    conf->client_window_bits = -1;
    conf->compression_min_size = -1;
    conf->ping_interval = -1;
    conf->ping_timeout = -1;
    conf->max_lifetime = -1;
    conf->fragment_size = -1;
    conf->topic_history = -1;
    conf->topic_overflow = -1;
    conf->max_connections = -1;
    conf->max_connections_per_ip = -1;
    return conf;
}

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    ws_dir_conf *base = basev, *add = addv;
    ws_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

/* Unset numbers are -1 (WS_ORIGIN_UNSET too), unset pointers NULL. */
#define MERGE_SET(field) conf->field = add->field >= 0 ? add->field : base->field
#define MERGE_PTR(field) conf->field = add->field ? add->field : base->field
    MERGE_PTR(handler);
    MERGE_PTR(trusted_origins);
    MERGE_SET(max_message_size);
    MERGE_SET(send_queue_limit);
    MERGE_SET(close_timeout);
    MERGE_SET(idle_timeout);
    MERGE_SET(slow_plugin);
    MERGE_SET(origin_check);
    MERGE_SET(allow_reserved_codes);
    MERGE_SET(compression);
    MERGE_SET(compression_level);
    MERGE_SET(server_context_takeover);
    MERGE_SET(client_context_takeover);
    MERGE_SET(server_window_bits);
    MERGE_SET(client_window_bits);
    MERGE_SET(compression_min_size);
    MERGE_SET(ping_interval);
    MERGE_SET(ping_timeout);
    MERGE_SET(max_lifetime);
    MERGE_SET(fragment_size);
    MERGE_SET(topic_history);
    MERGE_SET(topic_overflow);
    MERGE_SET(max_connections_per_ip);
    MERGE_SET(max_connections);
    /* The limit counts for the section that set it, as a whole. */
    conf->limit_server = add->max_connections >= 0 ? add->limit_server
                                                   : base->limit_server;
    conf->limit_section = add->max_connections >= 0 ? add->limit_section
                                                     : base->limit_section;
    /* Inner parameters first: apr_table_get finds them before the outer. */
    conf->params = add->params && base->params
                   ? apr_table_overlay(p, add->params, base->params)
                   : add->params ? add->params : base->params;
#undef MERGE_SET
#undef MERGE_PTR
    return conf;
}

/* The plugin's destroy runs when the configuration pool goes away; this
 * cleanup is registered after apr_dso_load's own, so it runs before the
 * library is unloaded. */
static apr_status_t destroy_plugin(void *data)
{
    ws_plugin_ref *ref = data;

    if (ref->plugin && ref->plugin->destroy) {
        ref->plugin->destroy(ref->plugin);
    }
    ref->plugin = NULL;
    return APR_SUCCESS;
}

static const char *check_plugin(apr_pool_t *p, const WebSocketPlugin *plugin)
{
    const WebSocketPlugin2 *v2 = (const WebSocketPlugin2 *)(const void *)plugin;

    if (!plugin) {
        return "it returned NULL";
    }
    if (plugin->version != WEBSOCKET_PLUGIN_VERSION_0
        && plugin->version != WEBSOCKET_PLUGIN_VERSION_2) {
        return apr_psprintf(p, "unsupported plugin version %u (this "
                            "mod_websocket supports versions %u and %u)",
                            plugin->version, WEBSOCKET_PLUGIN_VERSION_0,
                            WEBSOCKET_PLUGIN_VERSION_2);
    }
    if (plugin->size < (plugin->version == WEBSOCKET_PLUGIN_VERSION_2
                        ? sizeof(WebSocketPlugin2) : sizeof(WebSocketPlugin))) {
        return apr_psprintf(p, "plugin structure size %u is smaller than "
                            "%u for version %u; was it built against another "
                            "websocket_plugin.h?", plugin->size,
                            (unsigned)(plugin->version == WEBSOCKET_PLUGIN_VERSION_2
                                       ? sizeof(WebSocketPlugin2)
                                       : sizeof(WebSocketPlugin)),
                            plugin->version);
    }
    if (!plugin->on_message
        && !(plugin->version == WEBSOCKET_PLUGIN_VERSION_2 && v2->on_fragment)) {
        return plugin->version == WEBSOCKET_PLUGIN_VERSION_2
               ? "both its on_message and on_fragment are NULL"
               : "its on_message is NULL";
    }
    return NULL;
}

static const char *set_handler(cmd_parms *cmd, void *dconf, const char *path,
                               const char *symbol)
{
    ws_dir_conf *conf = dconf;
    ws_plugin_ref *ref = apr_pcalloc(cmd->pool, sizeof(*ref));
    apr_dso_handle_sym_t sym;
    char err[256];
    const char *problem;

    ref->path = ap_server_root_relative(cmd->pool, path);
    ref->symbol = apr_pstrdup(cmd->pool, symbol);
    ref->section = cmd->path ? apr_pstrdup(cmd->pool, cmd->path) : NULL;
    ref->section_is_location = cmd->path && cmd->directive
        && cmd->directive->parent
        && !ap_cstr_casecmpn(cmd->directive->parent->directive, "<Location", 9);
    if (ref->section_is_location
        && (!ap_cstr_casecmp(cmd->directive->parent->directive, "<LocationMatch")
            || (cmd->directive->parent->args
                && cmd->directive->parent->args[0] == '~'))) {
        /* Compiled as core compiled it, to find where its match ends. */
        ref->section_regex = ap_pregcomp(cmd->pool, cmd->path, AP_REG_EXTENDED);
    }
    if (!ref->path) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: invalid path '%s'",
                            path);
    }
    if (apr_dso_load(&ref->dso, ref->path, cmd->pool) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: cannot load %s: %s",
                            ref->path, apr_dso_error(ref->dso, err, sizeof(err)));
    }
    if (apr_dso_sym(&sym, ref->dso, symbol) != APR_SUCCESS || !sym) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: %s has no "
                            "initialization function '%s'", ref->path, symbol);
    }
    ref->plugin = ((WS_Init)sym)();
    problem = check_plugin(cmd->pool, ref->plugin);
    if (problem) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: the initialization "
                            "function '%s' of %s is not usable: %s", symbol,
                            ref->path, problem);
    }
    apr_pool_cleanup_register(cmd->pool, ref, destroy_plugin,
                              apr_pool_cleanup_null);
    conf->handler = ref;
    return NULL;
}

/* Sizes: a number of bytes with an optional K, M or G (powers of 1024). */
static const char *parse_size(apr_pool_t *p, const char *name, const char *arg,
                              apr_off_t min, apr_off_t *out)
{
    char *end;
    apr_off_t value;

    if (apr_strtoff(&value, arg, &end, 10) != APR_SUCCESS || end == arg) {
        return apr_psprintf(p, "%s: '%s' is not a size", name, arg);
    }
    switch (apr_toupper(*end)) {
    case 'K': value *= 1024; end++; break;
    case 'M': value *= 1024 * 1024; end++; break;
    case 'G': value *= 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end || value < min) {
        return apr_psprintf(p, "%s: '%s' must be a size of at least %"
                            APR_OFF_T_FMT " bytes (K, M or G suffixes allowed)",
                            name, arg, min);
    }
    *out = value;
    return NULL;
}

static const char *set_max_message_size(cmd_parms *cmd, void *dconf,
                                        const char *arg)
{
    ws_dir_conf *conf = dconf;

    if (!strcasecmp(cmd->cmd->name, "MaxMessageSize")) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cmd->server,
                     WSLOGNO(00001) "%s:%d: MaxMessageSize is deprecated; use "
                     "WebSocketMaxMessageSize", cmd->directive->filename,
                     cmd->directive->line_num);
    }
    return parse_size(cmd->pool, cmd->cmd->name, arg, 1,
                      &conf->max_message_size);
}

static const char *set_send_queue_limit(cmd_parms *cmd, void *dconf,
                                        const char *arg)
{
    ws_dir_conf *conf = dconf;

    return parse_size(cmd->pool, cmd->cmd->name, arg, 1,
                      &conf->send_queue_limit);
}

/* Durations as for Timeout: seconds, or a number with ms, s, mi or h.
 * (ap_timeout_parameter_parse alone would read "soon" as 0 seconds.) */
static const char *parse_duration(cmd_parms *cmd, const char *arg,
                                  apr_interval_time_t *out)
{
    static const char *const units[] = { "", "ms", "s", "mi", "h" };
    const char *unit = arg;
    apr_interval_time_t value;
    size_t i;

    while (apr_isdigit(*unit)) {
        unit++;
    }
    for (i = 0; unit > arg && i < sizeof(units) / sizeof(units[0]); i++) {
        if (!strcasecmp(unit, units[i])
            && ap_timeout_parameter_parse(arg, &value, "s") == APR_SUCCESS) {
            *out = value;
            return NULL;
        }
    }
    return apr_psprintf(cmd->pool, "%s: '%s' is not a duration (seconds, or "
                        "a number with ms, s, mi or h)", cmd->cmd->name, arg);
}

static const char *set_close_timeout(cmd_parms *cmd, void *dconf,
                                     const char *arg)
{
    return parse_duration(cmd, arg, &((ws_dir_conf *)dconf)->close_timeout);
}

static const char *set_idle_timeout(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    ws_dir_conf *conf = dconf;

    if (!strcasecmp(arg, "Off")) {
        conf->idle_timeout = 0;
        return NULL;
    }
    return parse_duration(cmd, arg, &conf->idle_timeout);
}

static const char *set_slow_plugin(cmd_parms *cmd, void *dconf,
                                   const char *arg)
{
    ws_dir_conf *conf = dconf;

    if (!strcasecmp(arg, "Off")) {
        conf->slow_plugin = 0;
        return NULL;
    }
    if (!strcasecmp(arg, "Always")) {
        conf->slow_plugin = WS_SLOW_PLUGIN_ALWAYS;
        return NULL;
    }
    return parse_duration(cmd, arg, &conf->slow_plugin);
}

/* Global thread counts: "Name N", N in [min, max], server config only. */
static const char *set_global_count(cmd_parms *cmd, const char *arg, int min,
                                    int max, const char *meaning, int *out)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    long n;

    if (err) {
        return err;
    }
    n = strtol(arg, &end, 10);
    if (end == arg || *end || n < min || n > max) {
        return apr_psprintf(cmd->pool, "%s must be a number from %d%s to %d",
                            cmd->cmd->name, min, meaning, max);
    }
    *out = (int)n;
    return NULL;
}

static const char *set_dispatch_threads(cmd_parms *cmd, void *dconf,
                                        const char *arg)
{
    (void)dconf;
    return set_global_count(cmd, arg, 1, 1024, "", &dispatch_threads);
}

static const char *set_event_threads(cmd_parms *cmd, void *dconf,
                                     const char *arg)
{
    (void)dconf;
    return set_global_count(cmd, arg, 0, 64, " (no event loops: every "
                            "WebSocket keeps its worker thread)",
                            &event_threads);
}

static const char *set_memory_limit(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "Off")) {
        memory_limit = 0;
        return NULL;
    }
    return parse_size(cmd->pool, cmd->cmd->name, arg, 1024 * 1024,
                      &memory_limit);
}

static const char *set_origin_check(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    ws_dir_conf *conf = dconf;

    (void)cmd;
    if (!strcasecmp(arg, "Same")) {
        conf->origin_check = WS_ORIGIN_SAME;
    }
    else if (!strcasecmp(arg, "Trusted")) {
        conf->origin_check = WS_ORIGIN_TRUSTED;
    }
    else if (!strcasecmp(arg, "Off")) {
        conf->origin_check = WS_ORIGIN_OFF;
    }
    else {
        return "WebSocketOriginCheck must be Same, Trusted or Off";
    }
    return NULL;
}

static const char *add_trusted_origin(cmd_parms *cmd, void *dconf,
                                      const char *arg)
{
    ws_dir_conf *conf = dconf;

    if (!conf->trusted_origins) {
        conf->trusted_origins = apr_array_make(cmd->pool, 4, sizeof(char *));
    }
    APR_ARRAY_PUSH(conf->trusted_origins, const char *) =
        apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const char *set_allow_reserved(cmd_parms *cmd, void *dconf, int on)
{
    ws_dir_conf *conf = dconf;

    (void)cmd;
    conf->allow_reserved_codes = on;
    return NULL;
}

/* Integer directives of the form "Name N" with N in [min, max]; the
 * offset of the int field in ws_dir_conf is the directive's cmd_data. */
static const char *set_int_in_range(cmd_parms *cmd, const char *arg, int min,
                                    int max, int *out)
{
    char *end;
    long value = strtol(arg, &end, 10);

    if (end == arg || *end || value < min || value > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' must be a number from %d "
                            "to %d", cmd->cmd->name, arg, min, max);
    }
    *out = (int)value;
    return NULL;
}

static const char *set_compression_flag(cmd_parms *cmd, void *dconf, int on)
{
    int *field = (int *)((char *)dconf + (apr_size_t)cmd->info);

    *field = on;
    return NULL;
}

static const char *set_compression_level(cmd_parms *cmd, void *dconf,
                                         const char *arg)
{
    return set_int_in_range(cmd, arg, 0, 9,
                            &((ws_dir_conf *)dconf)->compression_level);
}

static const char *set_server_window_bits(cmd_parms *cmd, void *dconf,
                                          const char *arg)
{
    return set_int_in_range(cmd, arg, 9, 15,
                            &((ws_dir_conf *)dconf)->server_window_bits);
}

static const char *set_client_window_bits(cmd_parms *cmd, void *dconf,
                                          const char *arg)
{
    ws_dir_conf *conf = dconf;

    if (!strcasecmp(arg, "Off")) {
        conf->client_window_bits = 0;
        return NULL;
    }
    return set_int_in_range(cmd, arg, 8, 15, &conf->client_window_bits);
}

static const char *set_compression_min_size(cmd_parms *cmd, void *dconf,
                                            const char *arg)
{
    return parse_size(cmd->pool, cmd->cmd->name, arg, 0,
                      &((ws_dir_conf *)dconf)->compression_min_size);
}

#define WS_CONF_OFFSET(field) ((void *)APR_OFFSETOF(ws_dir_conf, field))

/* The entries come from docs/directives.def, which also makes the
 * reference and the README's entries; each names its setter above. */
#define WS_DIRECTIVE(args, name, setter, data, where, help) \
    AP_INIT_##args(name, setter, data, where, help),
static const char *set_topic_buffer(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "Off")) {
        topic_buffer = 0;
        return NULL;
    }
    err = parse_size(cmd->pool, cmd->cmd->name, arg, 64 * 1024, &topic_buffer);
    if (!err && topic_buffer > ((apr_off_t)1 << 40)) {
        return "WebSocketTopicBuffer: at most 1T";
    }
    return err;
}

/* Durations that may be Off (0). */
static const char *set_duration_or_off(cmd_parms *cmd, void *dconf,
                                       const char *arg)
{
    apr_interval_time_t *field =
        (apr_interval_time_t *)((char *)dconf + (apr_size_t)cmd->info);

    if (!strcasecmp(arg, "Off")) {
        *field = 0;
        return NULL;
    }
    return parse_duration(cmd, arg, field);
}

static const char *set_ping_timeout(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    return parse_duration(cmd, arg, &((ws_dir_conf *)dconf)->ping_timeout);
}

static const char *set_fragment_size(cmd_parms *cmd, void *dconf,
                                     const char *arg)
{
    ws_dir_conf *conf = dconf;

    if (!strcasecmp(arg, "Off")) {
        conf->fragment_size = 0;
        return NULL;
    }
    return parse_size(cmd->pool, cmd->cmd->name, arg, 16, &conf->fragment_size);
}

static const char *set_param(cmd_parms *cmd, void *dconf, const char *name,
                             const char *value)
{
    ws_dir_conf *conf = dconf;

    if (!conf->params) {
        conf->params = apr_table_make(cmd->pool, 4);
    }
    apr_table_set(conf->params, name, value);
    return NULL;
}

static const char *set_topic_history(cmd_parms *cmd, void *dconf,
                                     const char *arg)
{
    return set_int_in_range(cmd, arg, 0, 100000,
                            &((ws_dir_conf *)dconf)->topic_history);
}

static const char *set_topic_overflow(cmd_parms *cmd, void *dconf,
                                      const char *arg)
{
    ws_dir_conf *conf = dconf;

    (void)cmd;
    if (!strcasecmp(arg, "Close")) {
        conf->topic_overflow = WS_OVERFLOW_CLOSE;
    }
    else if (!strcasecmp(arg, "Drop")) {
        conf->topic_overflow = WS_OVERFLOW_DROP;
    }
    else {
        return "WebSocketTopicOverflow must be Close or Drop";
    }
    return NULL;
}

/* WebSocketMaxConnections (which remembers where it was set: the count
 * is that section's) and WebSocketMaxConnectionsPerIP: a number or Off;
 * cmd->info is the field. */
static const char *set_connection_limit(cmd_parms *cmd, void *dconf,
                                        const char *arg)
{
    ws_dir_conf *conf = dconf;
    int *field = (int *)((char *)dconf + (apr_size_t)cmd->info);

    if (field == &conf->max_connections) {
        conf->limit_server = cmd->server;
        conf->limit_section = cmd->path ? apr_pstrdup(cmd->pool, cmd->path)
                                        : NULL;
    }
    if (!strcasecmp(arg, "Off")) {
        *field = 0;
        return NULL;
    }
    return set_int_in_range(cmd, arg, 1, 1000000000, field);
}

static const command_rec ws_directives[] = {
#include "ws_directives.h"
    { NULL, { NULL }, NULL, 0, 0, NULL }
};
#undef WS_DIRECTIVE

/* ---- the opening handshake ---- */

/* What the validator (ws_handshake.c) decided, in the pool's terms. */
typedef struct handshake {
    const char *key;
    int version;
    apr_array_header_t *protocols;
    int deflate;                     /* permessage-deflate agreed */
    ws_deflate_negotiation deflate_neg;
} handshake;

/* A refusal: one log line, and the status the client gets.  The client
 * is the user agent (mod_remoteip's), not the proxy in front of us. */
static int refuse(request_rec *r, int status, const char *why)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  WSLOGNO(00002) "WebSocket handshake from %s refused with %d: %s",
                  r->useragent_ip, status, why);
    return status;
}

static const char *request_header(void *baton, const char *name)
{
    return apr_table_get(((request_rec *)baton)->headers_in, name);
}

static const char *const *string_array(const apr_array_header_t *a,
                                       size_t *count)
{
    *count = a ? (size_t)a->nelts : 0;
    return a ? (const char *const *)a->elts : NULL;
}

/* Who this server is, for WebSocketOriginCheck Same: its ServerName and
 * ServerAlias names, with the scheme and port of "ServerName
 * scheme://host:port" where given (TLS offload, port mappings; a scheme
 * without a port means its default port), else those of the connection.
 * Never the request's own Host: a DNS rebinding page sends its own name
 * in both Host and Origin. */
static void origin_policy(request_rec *r, const ws_dir_conf *conf,
                          ws_origin_policy *pol)
{
    server_rec *s = r->server;
    apr_port_t local_port = r->connection->local_addr->port;
    apr_port_t scheme_port = s->server_scheme
                             ? apr_uri_port_of_scheme(s->server_scheme) : 0;

    memset(pol, 0, sizeof(*pol));
    pol->mode = conf->origin_check == WS_ORIGIN_OFF ? WS_ORIGIN_CHECK_OFF
                : conf->origin_check == WS_ORIGIN_TRUSTED
                ? WS_ORIGIN_CHECK_TRUSTED : WS_ORIGIN_CHECK_SAME;
    pol->trusted = string_array(conf->trusted_origins, &pol->trusted_count);
    pol->scheme = s->server_scheme ? s->server_scheme : ap_http_scheme(r);
    pol->port = s->port ? s->port : scheme_port ? scheme_port
                : local_port ? local_port : ap_default_port(r);
    pol->name = s->server_hostname;
    pol->aliases = string_array(s->names, &pol->alias_count);
    pol->wild_aliases = string_array(s->wild_names, &pol->wild_alias_count);
}

static apr_array_header_t *protocol_array(apr_pool_t *p,
                                          const ws_handshake_result *res)
{
    apr_array_header_t *list;
    const char *cursor = res->protocols, *token;
    size_t len;

    if (!res->protocol_count) {
        return NULL;
    }
    list = apr_array_make(p, (int)res->protocol_count, sizeof(char *));
    while (ws_handshake_next_token(&cursor, &token, &len)) {
        APR_ARRAY_PUSH(list, const char *) = apr_pstrmemdup(p, token, len);
    }
    return list;
}

static int check_request(request_rec *r, const ws_dir_conf *conf, handshake *hs)
{
    ws_origin_policy origins;
    ws_deflate_policy deflate;
    ws_handshake_request req;
    ws_handshake_result res;
    size_t i;

    memset(&req, 0, sizeof(req));
    req.method = r->method;
    req.http_version = r->proto_num;
    req.http2 = r->connection->master != NULL;
    req.header = request_header;
    req.baton = r;
    origin_policy(r, conf, &origins);
    req.origin = &origins;
    ws_conf_deflate_policy(conf, &deflate);
    req.deflate = &deflate;
    if (ws_handshake_validate(&req, &res) != 0) {
        for (i = 0; i < res.header_count; i++) {
            apr_table_setn(r->err_headers_out, res.headers[i].name,
                           res.headers[i].value);
        }
        return refuse(r, res.status, res.reason);
    }
    if (res.extensions && res.deflate_result != WS_DEFLATE_ACCEPTED) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, WSLOGNO(00003) "extensions '%s' not "
                      "taken: %s", res.extensions,
                      ws_deflate_result_name(res.deflate_result));
    }
    hs->key = res.key;
    hs->version = res.version;
    hs->protocols = protocol_array(r->pool, &res);
    hs->deflate = res.deflate_result == WS_DEFLATE_ACCEPTED;
    hs->deflate_neg = res.deflate;
    return OK;
}

static const char *accept_value(apr_pool_t *p, const char *key)
{
    apr_sha1_ctx_t sha;
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    char *out = apr_palloc(p, apr_base64_encode_len(sizeof(digest)));

    apr_sha1_init(&sha);
    apr_sha1_update(&sha, key, (unsigned int)strlen(key));
    apr_sha1_update(&sha, WS_GUID, (unsigned int)strlen(WS_GUID));
    apr_sha1_final(digest, &sha);
    apr_base64_encode_binary(out, digest, sizeof(digest));
    return out;
}

/*
 * From here on the connection speaks WebSocket: nothing of HTTP may touch
 * its bytes again.
 */
static void switch_protocols(request_rec *r, const handshake *hs, ws_conn *wc)
{
    conn_rec *c = r->connection;

    apr_table_setn(r->headers_out, "Upgrade", "websocket");
    apr_table_setn(r->headers_out, "Connection", "Upgrade");
    apr_table_setn(r->headers_out, "Sec-WebSocket-Accept",
                   accept_value(r->pool, hs->key));
    if (wc->chosen_protocol) {
        apr_table_setn(r->headers_out, "Sec-WebSocket-Protocol",
                       wc->chosen_protocol);
    }
    if (hs->deflate) {
        apr_table_setn(r->headers_out, "Sec-WebSocket-Extensions",
                       apr_pstrdup(r->pool, hs->deflate_neg.response));
    }
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = NULL;
    ap_send_interim_response(r, 1);

    /* mod_reqtimeout would cut a long-lived socket; the SSL coalescing
     * filter would hold small frames back. */
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    ap_remove_output_filter_byhandle(c->output_filters,
                                     "SSL/TLS Coalescing Filter");
    /* No HTTP filter may touch the connection again: not this request's,
     * nor those of the requests an internal redirect came from, which
     * are finalized after we return (their HTTP_HEADER filter would send
     * this request's 101 once more). */
    for (; r; r = r->prev) {
        r->input_filters = r->proto_input_filters = c->input_filters;
        r->output_filters = r->proto_output_filters = c->output_filters;
    }
    /* The request must not be followed by keep-alive or by a body read. */
    c->keepalive = AP_CONN_CLOSE;
}

/* on_connect returned NULL: 403, or the status it gave refuse_with, with
 * the headers it set (an error response sends only err_headers_out). */
static int refuse_for_plugin(request_rec *r, const ws_conn *wc)
{
    if (!wc->refuse_status) {
        return refuse(r, HTTP_FORBIDDEN, apr_psprintf(r->pool,
                      "plugin %s declined the connection",
                      wc->conf->handler->symbol));
    }
    apr_table_overlap(r->err_headers_out, r->headers_out,
                      APR_OVERLAP_TABLES_SET);
    return refuse(r, wc->refuse_status, apr_psprintf(r->pool,
                  "plugin %s refused the connection",
                  wc->conf->handler->symbol));
}

/* The event loops can only hold a connection the MPM lets go of: an
 * HTTP/1 connection on the event MPM, whose request the MPM itself is
 * processing.  HTTP/2 streams (c->master), the other MPMs, and requests
 * that reached us through an internal redirect (mod_rewrite in a
 * directory context, ErrorDocument, Action: r->prev is set; the MPM only
 * sees the handler of the first request, which returns OK, and would go
 * on with a connection we suspended) keep the handler's thread. */
static const ws_engine *choose_engine(request_rec *r)
{
    conn_rec *c = r->connection;
    const char *why = NULL;

    if (c->master) {
        why = "HTTP/2 stream";
    }
    else if (r->prev) {
        why = "internal redirect";
    }
    else if (!c->cs || !ws_async_available()) {
        why = "no event loops in this MPM";
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, WSLOGNO(00004) "WebSocket engine: %s%s%s%s",
                  why ? "sync" : "async", why ? " (" : "", why ? why : "",
                  why ? ")" : "");
    return why ? &ws_engine_sync : &ws_engine_async;
}

static int ws_handler(request_rec *r)
{
    const ws_dir_conf *conf;
    handshake hs;
    ws_conn *wc;
    ws_limit_hold *hold;
    const char *why;
    apr_status_t rv;
    int status;

    if (!r->handler || strcmp(r->handler, WS_HANDLER_NAME) || r->main) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &websocket_module);
    if (!conf->handler) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, WSLOGNO(00005) "%s for %s but no "
                      "WebSocketHandler is configured here", WS_HANDLER_NAME,
                      r->uri);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((status = check_request(r, conf, &hs)) != OK) {
        return status;
    }
    if (ws_mem_over_limit()) {
        apr_table_setn(r->err_headers_out, "Retry-After", "5");
        return refuse(r, HTTP_SERVICE_UNAVAILABLE, "this child's WebSocket "
                      "buffers are near WebSocketMemoryLimit");
    }
    if ((status = ws_limits_admit(r, conf, &hold, &why)) != OK) {
        return refuse(r, status, why);
    }
    wc = ws_conn_create(r, conf, hs.protocols,
                        hs.deflate ? &hs.deflate_neg.params : NULL,
                        hs.deflate ? hs.deflate_neg.response : NULL);
    if (!wc) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_ENOMEM, r,
                      WSLOGNO(00006) "cannot set up a WebSocket connection");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    wc->limit_hold = hold;
    wc->engine = choose_engine(r);
    if ((rv = wc->engine->attach(wc)) == APR_EOF) {
        return refuse(r, HTTP_BAD_REQUEST, "the client ended its HTTP/2 "
                      "stream with the CONNECT: it could send no frame");
    }
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      WSLOGNO(00007) "cannot prepare the %s engine", wc->engine->name);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!ws_conn_connect_plugin(wc)) {
        return refuse_for_plugin(r, wc);
    }
    switch_protocols(r, &hs, wc);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, WSLOGNO(00008) "WebSocket version %d "
                  "open to plugin %s%s%s%s%s", hs.version, conf->handler->symbol,
                  wc->chosen_protocol ? ", subprotocol " : "",
                  wc->chosen_protocol ? wc->chosen_protocol : "",
                  hs.deflate ? ", extensions " : "",
                  hs.deflate ? hs.deflate_neg.response : "");
    return wc->engine->run(wc);
}

/* One info line per start and restart with the version, as mod_http2 and
 * mod_md write theirs (not in the configuration's dry run). */
static int log_version(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                       server_rec *s)
{
    (void)pconf, (void)plog, (void)ptemp;
    if (ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, WSLOGNO(00009) "mod_websocket %s "
                     "(plugin API version %d, server API version %d) "
                     "configured", WS_VERSION, WEBSOCKET_PLUGIN_VERSION_2,
                     WEBSOCKET_SERVER_VERSION_2);
    }
    return OK;
}

static int shared_memory(apr_pool_t *pconf, apr_pool_t *plog,
                         apr_pool_t *ptemp, server_rec *s)
{
    (void)plog, (void)ptemp;
    /* Failing leaves topics off and says so; the server still starts. */
    ws_stats_register();
    ws_limits_register();
    ws_shm_post_config(pconf, s, topic_buffer);
    ws_stats_post_config();
    ws_redis_post_config(s, topic_buffer > 0);
    return OK;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    ws_shm_child_init(pchild, s);
    /* Both engines move bytes with ws_io (and its direct mode must know
     * mod_logio, which Debian builds into httpd). */
    ws_io_child_init();
    ws_stats_child_init(pchild);
    ws_limits_child_init(pchild, s);
    ws_detach_child_init();
    ws_topic_child_init(pchild, s);
    ws_redis_child_init(pchild, s);
    ws_mem_child_init(pchild, memory_limit);
    ws_async_child_init(pchild, s, event_threads, dispatch_threads);
}

static void child_stopping(apr_pool_t *pchild, int graceful)
{
    ws_redis_child_stopping();
    ws_async_child_stopping(pchild, graceful);
    ws_sync_child_stopping(graceful);
}

/* A WebSocket's address names no file: when the DocumentRoot happens to
 * hold a directory of that name, mod_dir (a later fixup) would answer the
 * handshake with DirectorySlash's 301 instead of letting it reach us. */
static int not_a_directory(request_rec *r)
{
    if (r->handler && !strcmp(r->handler, WS_HANDLER_NAME)
        && r->finfo.filetype == APR_DIR) {
        r->finfo.filetype = APR_NOFILE;
    }
    return DECLINED;
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(ws_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ws_blocks_register_hooks();
    ap_hook_fixups(not_a_directory, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(ws_publish_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(log_version, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(shared_memory, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(ws_async_suspended, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ws_stats_register_hooks();
}

AP_DECLARE_MODULE(websocket) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    NULL,
    NULL,
    ws_directives,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
