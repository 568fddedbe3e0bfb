/*
 * exec_conf.c - the exec plugin's parameters (WebSocketParam NAME VALUE in
 * the location), read for each connection: the plugin cannot see the
 * configuration before a request comes, and reading a handful of table
 * entries costs nothing next to starting a process.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpd.h"
#include "apr_strings.h"
#include "http_config.h"

#include "exec.h"

#define DEFAULT_MAX_PROCESSES  100
#define DEFAULT_STOP_GRACE     apr_time_from_sec(2)
#define DEFAULT_KILL_GRACE     apr_time_from_sec(3)
#define DEFAULT_MAX_LINE       (1024 * 1024)
#define MIN_MAX_LINE           16
#define MAX_GRACE              apr_time_from_sec(3600)

/* The endpoint's own path: the request's minus what lies beyond the
 * <Location> (path_info). */
static const char *location_of(const WebSocketServer *server, request_rec *r)
{
    const char *rest = server->path_info(server);
    size_t ulen = strlen(r->uri), rlen = rest ? strlen(rest) : 0;

    if (rlen && rlen <= ulen && !strcmp(r->uri + ulen - rlen, rest)) {
        return apr_pstrmemdup(r->pool, r->uri, ulen - rlen);
    }
    return r->uri;
}

static int is_executable_file(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode)
           && access(path, X_OK) == 0;
}

/* A name without a slash is looked for in httpd's PATH, as a shell
 * would; a relative path is relative to ServerRoot, as WebSocketHandler's. */
static const char *resolve_program(request_rec *r, const char *name)
{
    const char *path;
    char *dirs, *dir, *last;

    if (ap_strchr_c(name, '/')) {
        path = ap_server_root_relative(r->pool, name);
        return path && is_executable_file(path) ? path : NULL;
    }
    path = getenv("PATH");
    dirs = apr_pstrdup(r->pool, path && *path ? path : DEFAULT_PATH);
    for (dir = apr_strtok(dirs, ":", &last); dir;
         dir = apr_strtok(NULL, ":", &last)) {
        const char *candidate = apr_pstrcat(r->pool, *dir ? dir : ".", "/",
                                            name, NULL);

        if (is_executable_file(candidate)) {
            return candidate;
        }
    }
    return NULL;
}

static const char *read_command(exec_conf *conf, const WebSocketServer *server,
                                request_rec *r)
{
    const char *command = server->param(server, "command");
    char **argv;

    if (!command || !*command) {
        return "no WebSocketParam command";
    }
    if (apr_tokenize_to_argv(command, &argv, r->pool) != APR_SUCCESS
        || !argv[0] || !*argv[0]) {
        return apr_psprintf(r->pool, "command '%s' names no program", command);
    }
    conf->program = resolve_program(r, argv[0]);
    if (!conf->program) {
        return apr_psprintf(r->pool, "command: '%s' is not an executable file"
                            " (or not one httpd's user may run)", argv[0]);
    }
    conf->argv = (const char *const *)argv;
    return NULL;
}

static const char *read_duration(request_rec *r, const WebSocketServer *server,
                                 const char *name, apr_interval_time_t *out)
{
    const char *value = server->param(server, name);

    if (!value) {
        return NULL;
    }
    if (ap_timeout_parameter_parse(value, out, "s") != APR_SUCCESS
        || *out < 0 || *out > MAX_GRACE) {
        return apr_psprintf(r->pool, "%s '%s' is not a duration of at most an "
                            "hour (seconds, or a number with ms, s, mi, h)",
                            name, value);
    }
    return NULL;
}

static const char *read_max_processes(exec_conf *conf,
                                      const WebSocketServer *server,
                                      request_rec *r)
{
    const char *value = server->param(server, "max_processes");
    char *end;
    long n;

    if (!value) {
        return NULL;
    }
    if (!strcasecmp(value, "Off")) {
        conf->max_processes = 0;
        return NULL;
    }
    n = strtol(value, &end, 10);
    if (end == value || *end || n < 1 || n > 1000000) {
        return apr_psprintf(r->pool, "max_processes '%s' is not a number from "
                            "1 to 1000000, or Off", value);
    }
    conf->max_processes = (int)n;
    return NULL;
}

static const char *read_max_line(exec_conf *conf, const WebSocketServer *server,
                                 request_rec *r)
{
    const char *value = server->param(server, "max_line");
    apr_off_t n;
    char *end;

    if (!value) {
        return NULL;
    }
    if (apr_strtoff(&n, value, &end, 10) != APR_SUCCESS || end == value) {
        n = -1;
    }
    else if (*end == 'K' || *end == 'k') {
        n *= 1024, end++;
    }
    else if (*end == 'M' || *end == 'm') {
        n *= 1024 * 1024, end++;
    }
    if (*end || n < MIN_MAX_LINE || n > APR_INT32_MAX) {
        return apr_psprintf(r->pool, "max_line '%s' is not a size of at least "
                            "%d bytes (K and M suffixes allowed)", value,
                            MIN_MAX_LINE);
    }
    conf->max_line = (apr_size_t)n;
    return NULL;
}

static const char *read_mode(exec_conf *conf, const WebSocketServer *server,
                             request_rec *r)
{
    const char *mode = server->param(server, "mode");

    if (!mode || !strcasecmp(mode, "text")) {
        conf->binary = 0;
    }
    else if (!strcasecmp(mode, "binary")) {
        conf->binary = 1;
    }
    else {
        return apr_psprintf(r->pool, "mode '%s' is neither text nor binary",
                            mode);
    }
    return NULL;
}

const char *exec_conf_read(exec_conf *conf, const WebSocketServer *server,
                           request_rec *r)
{
    const char *err;

    memset(conf, 0, sizeof(*conf));
    conf->location = location_of(server, r);
    conf->max_processes = DEFAULT_MAX_PROCESSES;
    conf->stop_grace = DEFAULT_STOP_GRACE;
    conf->kill_grace = DEFAULT_KILL_GRACE;
    conf->max_line = DEFAULT_MAX_LINE;
    conf->pass_env = server->param(server, "pass_env");
    conf->subprotocols = server->param(server, "subprotocols");
    if ((err = read_command(conf, server, r))
        || (err = read_mode(conf, server, r))
        || (err = read_max_processes(conf, server, r))
        || (err = read_duration(r, server, "stop_grace", &conf->stop_grace))
        || (err = read_duration(r, server, "kill_grace", &conf->kill_grace))
        || (err = read_max_line(conf, server, r))) {
        return err;
    }
    return NULL;
}
