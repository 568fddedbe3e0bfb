/*
 * exec_env.c - the program's environment: what CGI gives a script, made
 * by Apache's own helpers (ap_add_common_vars, ap_add_cgi_vars: the
 * headers as HTTP_*, without Authorization, the client's address as
 * mod_remoteip sees it, ...), then cut down to the variables listed here,
 * the HTTP_* ones, WEBSOCKET_PROTOCOL, PATH and the location's pass_env
 * names: nothing else of httpd's own environment reaches the program.
 */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "apr_strings.h"
#include "http_core.h"
#include "http_ssl.h"
#include "util_script.h"

#include "exec.h"

static const char *const cgi_names[] = {
    "REMOTE_ADDR", "REMOTE_PORT", "QUERY_STRING", "REQUEST_URI",
    "SERVER_NAME", "SERVER_PORT", "HTTPS", "REMOTE_USER", "PATH", NULL
};

static int is_listed(const char *name, const char *const *names)
{
    for (; *names; names++) {
        if (!strcmp(name, *names)) {
            return 1;
        }
    }
    return 0;
}

static void keep(apr_table_t *env, const char *name, const char *value)
{
    if (value) {
        apr_table_setn(env, name, value);
    }
}

/* pass_env NAME...: from the request's environment (SetEnv, PassEnv,
 * the CGI variables not kept above), else from httpd's own. */
static void pass_through(request_rec *r, apr_table_t *env, const char *names)
{
    char *list = apr_pstrdup(r->pool, names), *name, *last;

    for (name = apr_strtok(list, " \t", &last); name;
         name = apr_strtok(NULL, " \t", &last)) {
        const char *value = apr_table_get(r->subprocess_env, name);

        keep(env, name, value ? value : apr_pstrdup(r->pool, getenv(name)));
    }
}

char **exec_env_build(request_rec *r, const exec_conf *conf,
                      const char *subprotocol)
{
    apr_table_t *env = apr_table_make(r->pool, 32);
    const apr_array_header_t *all;
    const apr_table_entry_t *e;
    char **out;
    int i, n = 0;

    ap_add_common_vars(r);
    ap_add_cgi_vars(r);
    all = apr_table_elts(r->subprocess_env);
    e = (const apr_table_entry_t *)all->elts;
    for (i = 0; i < all->nelts; i++) {
        if (e[i].key && (!strncmp(e[i].key, "HTTP_", 5)
                         || is_listed(e[i].key, cgi_names))) {
            keep(env, e[i].key, e[i].val);
        }
    }
    /* mod_ssl sets HTTPS only when its fixups ran for this request. */
    if (ap_ssl_conn_is_ssl(r->connection)) {
        keep(env, "HTTPS", "on");
    }
    /* The endpoint is a <Location>, not a file: its path is the script,
     * what follows it the path info (CGI's file-based split would cut
     * at the first directory missing from the DocumentRoot). */
    keep(env, "SCRIPT_NAME", conf->location);
    apr_table_unset(env, "PATH_INFO");
    if (strlen(r->uri) > strlen(conf->location)) {
        keep(env, "PATH_INFO", r->uri + strlen(conf->location));
    }
    keep(env, "WEBSOCKET_PROTOCOL", subprotocol);
    if (conf->pass_env) {
        pass_through(r, env, conf->pass_env);
    }

    all = apr_table_elts(env);
    e = (const apr_table_entry_t *)all->elts;
    out = apr_palloc(r->pool, (all->nelts + 1) * sizeof(*out));
    for (i = 0; i < all->nelts; i++) {
        out[n++] = apr_pstrcat(r->pool, e[i].key, "=", e[i].val, NULL);
    }
    out[n] = NULL;
    return out;
}
