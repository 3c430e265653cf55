/*
 * pub_graph: user lookups over Graph v1.0 with OData filters.
 */
#include "pub_graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cs_log.h"
#include "pub_codec.h"

#define PUB_GRAPH_FAC "graph"
#define PUB_GRAPH_SELECT "id,userPrincipalName,mail,onPremisesImmutableId,onPremisesSecurityIdentifier"

struct pub_graph {
    pub_http *http;
    pub_token_provider *tokens;
    char *base;
};

typedef struct graph_op {
    pub_graph *g;
    char *url;
    char what[300];
    pub_token *token;
    bool refreshed;
    pub_graph_done_fn done;
    void *ctx;
} graph_op;

bool pub_odata_quote(cs_buf *out, const char *s)
{
    if (!cs_buf_add(out, "'", 1))
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '\'' ? !cs_buf_add(out, "''", 2) : !cs_buf_add(out, p, 1))
            return false;
    }
    return cs_buf_add(out, "'", 1);
}

bool pub_graph_immutable_id(const unsigned char guid[16], char out[25])
{
    cs_buf b;
    cs_buf_init(&b, 24);
    bool ok = pub_b64_encode(&b, guid, 16) && cs_buf_len(&b) == 24;
    if (ok)
        memcpy(out, cs_buf_str(&b), 25);
    cs_buf_free(&b);
    return ok;
}

cs_err *pub_graph_build_url(const char *graph_url, pub_resolve key, const char *value, cs_buf *out)
{
    cs_err *err = NULL;
    cs_buf filter;
    cs_buf_init(&filter, 4096);
    if (!value || !*value)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "Graph lookup by %s: empty value", pub_resolve_name(key));
    bool ok;
    switch (key) {
    case PUB_RESOLVE_IMMUTABLE_ID:
        ok = cs_buf_add_str(&filter, "onPremisesImmutableId eq ") && pub_odata_quote(&filter, value);
        break;
    case PUB_RESOLVE_SID:
        ok = cs_buf_add_str(&filter, "onPremisesSecurityIdentifier eq ") && pub_odata_quote(&filter, value);
        break;
    case PUB_RESOLVE_UPN:
        ok = cs_buf_add_str(&filter, "userPrincipalName eq ") && pub_odata_quote(&filter, value);
        break;
    case PUB_RESOLVE_MAIL: {
        cs_buf addr;
        cs_buf_init(&addr, 1024);
        ok = cs_buf_add_str(&addr, "smtp:") && cs_buf_add_str(&addr, value) &&
             cs_buf_add_str(&filter, "proxyAddresses/any(p:p eq ") &&
             pub_odata_quote(&filter, cs_buf_str(&addr)) && cs_buf_add_str(&filter, ")");
        cs_buf_free(&addr);
        break;
    }
    default:
        ok = false;
    }
    if (!ok) {
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "Graph lookup by %s: value too long or unknown key",
                         pub_resolve_name(key));
        goto cleanup;
    }
    size_t bl = strlen(graph_url);
    while (bl > 0 && graph_url[bl - 1] == '/')
        bl--;
    ok = cs_buf_add(out, graph_url, bl) && cs_buf_add_str(out, "/v1.0/users?%24filter=") &&
         pub_url_encode(out, cs_buf_str(&filter)) && cs_buf_add_str(out, "&%24select=") &&
         pub_url_encode(out, PUB_GRAPH_SELECT) && cs_buf_add_str(out, "&%24count=true");
    if (!ok)
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "Graph lookup URL too long");
cleanup:
    cs_buf_free(&filter);
    return err;
}

cs_err *pub_graph_new(const char *graph_url, pub_http *http, pub_token_provider *tokens, pub_graph **out)
{
    *out = NULL;
    pub_graph *g = calloc(1, sizeof *g);
    if (!g)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    g->http = http;
    g->tokens = tokens;
    g->base = strdup(graph_url);
    if (!g->base) {
        free(g);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    }
    *out = g;
    return NULL;
}

void pub_graph_free(pub_graph *g)
{
    if (!g)
        return;
    free(g->base);
    free(g);
}

static void op_free(graph_op *op)
{
    if (!op)
        return;
    free(op->url);
    pub_token_unref(op->token);
    free(op);
}

static void on_done(void *ctx, const pub_http_response *resp);

static cs_err *op_send(graph_op *op)
{
    pub_token_unref(op->token);
    op->token = NULL;
    cs_err *err = pub_token_get(op->g->tokens, PUB_RESOURCE_GRAPH, &op->token);
    if (err)
        return err;
    char auth[64 + 32 * 1024];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", pub_token_value(op->token));
    /* Microsoft's filter table marks some of these properties (onPremisesImmutableId among them) as
       advanced queries, which need ConsistencyLevel: eventual with $count=true; both are harmless
       where a property does not need them, so every lookup sends them (graph/aad-advanced-queries). */
    const char *headers[] = {auth, "Accept: application/json", "ConsistencyLevel: eventual", NULL};
    pub_http_request req = {.method = "GET", .url = op->url, .headers = headers, .done = on_done, .ctx = op};
    err = pub_http_submit(op->g->http, &req, NULL);
    memset(auth, 0, sizeof auth);
    return err;
}

static void finish(graph_op *op, pub_graph_status st, const pub_graph_user *u, const cs_err *err,
                   long long ra)
{
    pub_graph_result res = {.status = st, .user = u, .err = err, .retry_after_ms = ra};
    op->done(op->ctx, &res);
    op_free(op);
}

static void copy_str(char *dst, size_t cap, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

pub_graph_status pub_graph_parse_lookup(const char *body, size_t len, pub_graph_user *user, const char **why,
                                        bool *retriable)
{
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, len, 0, &jerr) : NULL;
    json_t *value = json_object_get(root, "value");
    pub_graph_status st = PUB_GRAPH_ERROR;
    memset(user, 0, sizeof *user);
    *why = "";
    *retriable = false;
    if (!json_is_array(value)) {
        *why = "no \"value\" array";
        *retriable = true;
    } else if (json_array_size(value) == 0) {
        st = PUB_GRAPH_NOT_FOUND;
    } else if (json_array_size(value) > 1) {
        st = PUB_GRAPH_AMBIGUOUS;
    } else {
        json_t *u = json_array_get(value, 0);
        copy_str(user->id, sizeof user->id, u, "id");
        copy_str(user->user_principal_name, sizeof user->user_principal_name, u, "userPrincipalName");
        copy_str(user->mail, sizeof user->mail, u, "mail");
        copy_str(user->on_premises_immutable_id, sizeof user->on_premises_immutable_id, u,
                 "onPremisesImmutableId");
        if (user->id[0])
            st = PUB_GRAPH_FOUND;
        else
            *why = "user without an id";
    }
    json_decref(root);
    return st;
}

static void on_done(void *ctx, const pub_http_response *resp)
{
    graph_op *op = ctx;
    cs_err *err = NULL;
    if (resp->outcome == PUB_HTTP_UNAUTHORIZED && !op->refreshed) {
        op->refreshed = true;
        pub_token_invalidate(op->g->tokens, PUB_RESOURCE_GRAPH, op->token);
        err = op_send(op);
        if (!err)
            return;
        finish(op, PUB_GRAPH_ERROR, NULL, err, -1);
        cs_err_free(err);
        return;
    }
    if (resp->outcome != PUB_HTTP_OK) {
        err = cs_err_new(CS_ERR_HTTP, cs_err_flags(resp->err), "Graph lookup %s: %.300s: %s", op->what,
                         resp->body, cs_err_message(resp->err));
        finish(op, PUB_GRAPH_ERROR, NULL, err, resp->retry_after_ms);
        cs_err_free(err);
        return;
    }
    pub_graph_user user;
    const char *why = NULL;
    bool retriable = false;
    switch (pub_graph_parse_lookup(resp->body, resp->body_len, &user, &why, &retriable)) {
    case PUB_GRAPH_FOUND:
        finish(op, PUB_GRAPH_FOUND, &user, NULL, -1);
        break;
    case PUB_GRAPH_NOT_FOUND:
        finish(op, PUB_GRAPH_NOT_FOUND, NULL, NULL, -1);
        break;
    case PUB_GRAPH_AMBIGUOUS:
        cs_log_kv(CS_LOG_WARN, PUB_GRAPH_FAC, "lookup matched more than one user", "lookup", op->what, NULL);
        finish(op, PUB_GRAPH_AMBIGUOUS, NULL, NULL, -1);
        break;
    case PUB_GRAPH_ERROR:
        /* No "value" array: a proxy or an outage page, worth a retry; a user without an id is not. */
        err =
            cs_err_new(CS_ERR_HTTP, retriable ? CS_ERR_F_RETRIABLE : 0,
                       "Graph lookup %s: %s (client-request-id %s)", op->what, why, resp->client_request_id);
        finish(op, PUB_GRAPH_ERROR, NULL, err, -1);
        cs_err_free(err);
        break;
    }
}

cs_err *pub_graph_find_user(pub_graph *g, pub_resolve key, const char *value, pub_graph_done_fn done,
                            void *ctx)
{
    cs_err *err = NULL;
    cs_buf url;
    cs_buf_init(&url, 8192);
    graph_op *op = calloc(1, sizeof *op);
    if (!op) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        goto cleanup;
    }
    op->g = g;
    op->done = done;
    op->ctx = ctx;
    snprintf(op->what, sizeof op->what, "%s=%s", pub_resolve_name(key), value ? value : "");
    err = pub_graph_build_url(g->base, key, value, &url);
    if (err)
        goto cleanup;
    op->url = cs_buf_take(&url);
    if (!op->url) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        goto cleanup;
    }
    err = op_send(op);
    if (!err)
        op = NULL; /* owned by the request now */
cleanup:
    op_free(op);
    cs_buf_free(&url);
    return err;
}
