/*
 * pub_exchange: InvokeCommand requests, the [observed] certificate encoding, paging and error classes.
 */
#include "pub_exchange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cs_log.h"
#include "pub_codec.h"

#define PUB_EXO_FAC "exchange"
#define PUB_EXO_MAX_BODY (2u * 1024 * 1024) /* 2 x 15 values of at most 32 KiB, base64: ~1.3 MiB */
#define PUB_EXO_MAX_VALUES 64               /* per attribute, when parsing reads: bound, not policy */
#define PUB_EXO_MAX_RECIPIENTS 100000
#define PUB_EXO_ANCHOR "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"

struct pub_exchange {
    pub_http *http;
    pub_token_provider *tokens;
    char *invoke_url;
    char *anchor_header;
    size_t max_pages;
};

typedef struct exo_op {
    pub_exchange *x;
    char cmdlet[40];
    char *identity; /* for messages */
    bool is_read;
    cs_buf body;
    char *url;        /* current page */
    pub_token *token; /* the token the current attempt carried */
    bool refreshed;   /* a 401 refresh was spent */
    size_t pages;
    pub_exo_recipient *recs;
    size_t n_recs;
    pub_exo_done_fn done;
    void *ctx;
} exo_op;

const char *pub_exo_kind_name(pub_exo_kind k)
{
    static const char *const names[] = {"ok",        "not_found",     "write_scope",
                                        "throttled", "invalid_value", "unavailable",
                                        "auth",      "other",         "cancelled"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

void pub_exo_recipients_free(pub_exo_recipient *r, size_t n)
{
    if (!r)
        return;
    for (size_t i = 0; i < n; i++) {
        free(r[i].identity);
        free(r[i].external_directory_object_id);
        free(r[i].primary_smtp_address);
        free(r[i].recipient_type_details);
        free(r[i].user_principal_name);
        for (size_t j = 0; j < r[i].n_user_certificate; j++)
            free(r[i].user_certificate[j].data);
        free(r[i].user_certificate);
        for (size_t j = 0; j < r[i].n_user_smime_certificate; j++)
            free(r[i].user_smime_certificate[j].data);
        free(r[i].user_smime_certificate);
    }
    free(r);
}

const char *pub_exchange_set_cmdlet_for(const char *t)
{
    if (!t || !*t)
        return NULL;
    if (strcmp(t, "MailUser") == 0 || strcmp(t, "GuestMailUser") == 0)
        return "Set-MailUser";
    if (strcmp(t, "MailContact") == 0)
        return "Set-MailContact";
    /* UserMailbox, SharedMailbox, RoomMailbox, EquipmentMailbox, SchedulingMailbox, ... A RemoteUserMailbox
     * lives on-premises (hybrid): Exchange Online holds only a mail user for it. */
    if (strcmp(t, "RemoteUserMailbox") == 0)
        return "Set-MailUser";
    size_t n = strlen(t);
    if (n > 7 && strcmp(t + n - 7, "Mailbox") == 0)
        return "Set-Mailbox";
    return NULL;
}

/* [observed] o365-contract.md section 2: the admin API binds MultiValuedProperty<byte[]> from a collection
 * of {"Data": <base64>} hashtables annotated #Collection(Exchange.ByteArrayType); .NET serialises byte[]
 * as base64. Confirm against a real tenant before the first production run; keep it only here. */
bool pub_exchange_add_cert_param(cs_buf *out, const char *param, const pub_blob *values, size_t n)
{
    if (!cs_buf_printf(out, "\"%s@odata.type\":\"#Collection(Exchange.ByteArrayType)\",\"%s\":[", param,
                       param))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!cs_buf_add_str(out, i ? ",{\"Data\":\"" : "{\"Data\":\"") ||
            !pub_b64_encode(out, values[i].data, values[i].len) || !cs_buf_add_str(out, "\"}"))
            return false;
    }
    return cs_buf_add(out, "]", 1);
}

static bool cmdlet_ok(const char *c)
{
    static const char *const known[] = {"Set-Mailbox",  "Set-MailUser",    "Set-MailContact", "Get-Mailbox",
                                        "Get-MailUser", "Get-MailContact", "Get-Recipient"};
    for (size_t i = 0; c && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(c, known[i]) == 0)
            return true;
    return false;
}

cs_err *pub_exchange_build_set_body(const char *cmdlet, const char *identity, const pub_blob *user_certs,
                                    size_t n_user, const pub_blob *smime_certs, size_t n_smime, cs_buf *out)
{
    if (!cmdlet_ok(cmdlet) || strncmp(cmdlet, "Set-", 4) != 0)
        return cs_err_new(CS_ERR_INTERNAL, 0, "Set body: '%s' is not a Set-* cmdlet we send",
                          cmdlet ? cmdlet : "");
    if (!identity || !*identity)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: empty Identity: resolve the recipient first", cmdlet);
    bool ok =
        cs_buf_printf(out, "{\"CmdletInput\":{\"CmdletName\":\"%s\",\"Parameters\":{\"Identity\":", cmdlet) &&
        cs_buf_add_json_string(out, identity) && cs_buf_add(out, ",", 1) &&
        pub_exchange_add_cert_param(out, "UserCertificate", user_certs, n_user) && cs_buf_add(out, ",", 1) &&
        pub_exchange_add_cert_param(out, "UserSMimeCertificate", smime_certs, n_smime) &&
        cs_buf_add_str(out, "}}}");
    if (!ok)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s %s: the request body is over %zu bytes", cmdlet,
                          identity, out->max);
    return NULL;
}

cs_err *pub_exchange_build_get_body(const char *cmdlet, const char *identity, const char *filter, cs_buf *out)
{
    if (!cmdlet_ok(cmdlet) || strncmp(cmdlet, "Get-", 4) != 0)
        return cs_err_new(CS_ERR_INTERNAL, 0, "Get body: '%s' is not a Get-* cmdlet we send",
                          cmdlet ? cmdlet : "");
    if ((!identity || !*identity) && (!filter || !*filter))
        return cs_err_new(CS_ERR_INTERNAL, 0, "%s: needs an Identity or a Filter", cmdlet);
    bool ok = cs_buf_printf(out, "{\"CmdletInput\":{\"CmdletName\":\"%s\",\"Parameters\":{", cmdlet);
    if (identity && *identity)
        ok = ok && cs_buf_add_str(out, "\"Identity\":") && cs_buf_add_json_string(out, identity);
    else
        ok = ok && cs_buf_add_str(out, "\"Filter\":") && cs_buf_add_json_string(out, filter) &&
             cs_buf_add_str(out, ",\"ResultSize\":\"Unlimited\"");
    ok = ok && cs_buf_add_str(out, "}}}");
    if (!ok)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s: the request body is too large", cmdlet);
    return NULL;
}

static char *jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return strdup(json_is_string(v) ? json_string_value(v) : "");
}

static bool decode_list(json_t *obj, const char *key, pub_blob **out, size_t *n)
{
    json_t *arr = json_object_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr))
        return true;
    if (!json_is_array(arr) || json_array_size(arr) > PUB_EXO_MAX_VALUES)
        return false;
    size_t count = json_array_size(arr);
    if (count == 0)
        return true;
    *out = calloc(count, sizeof **out);
    if (!*out)
        return false;
    for (size_t i = 0; i < count; i++) {
        json_t *v = json_array_get(arr, i);
        /* Reads come back as #Collection(String) of base64; tolerate the {"Data":...} shape as well. */
        if (json_is_object(v))
            v = json_object_get(v, "Data");
        if (!json_is_string(v) ||
            !pub_b64_decode(json_string_value(v), json_string_length(v), &(*out)[i].data, &(*out)[i].len))
            return false; /* *n counts the decoded ones, so the caller frees them */
        *n = i + 1;
    }
    return true;
}

cs_err *pub_exchange_parse_recipients(const char *body, size_t len, pub_exo_recipient **recs, size_t *n,
                                      char **next_link)
{
    cs_err *err = NULL;
    json_error_t jerr;
    *next_link = NULL;
    json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *value = json_object_get(root, "value");
    if (!json_is_array(value)) {
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0,
                         "Exchange answer is not a result envelope (no \"value\" array): %s",
                         root ? "unexpected JSON" : jerr.text);
        goto cleanup;
    }
    size_t add = json_array_size(value);
    if (*n + add > PUB_EXO_MAX_RECIPIENTS) {
        err = cs_err_new(CS_ERR_INVALID_INPUT, 0,
                         "Exchange answered more than %d recipients: narrow the filter",
                         PUB_EXO_MAX_RECIPIENTS);
        goto cleanup;
    }
    if (add > 0) {
        pub_exo_recipient *grown = realloc(*recs, (*n + add) * sizeof **recs);
        if (!grown) {
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
            goto cleanup;
        }
        *recs = grown;
    }
    for (size_t i = 0; i < add; i++) {
        json_t *o = json_array_get(value, i);
        pub_exo_recipient *r = &(*recs)[*n];
        memset(r, 0, sizeof *r);
        (*n)++;
        if (!json_is_object(o)) {
            err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "Exchange result %zu is not an object", i);
            goto cleanup;
        }
        r->identity = jstr(o, "Identity");
        r->external_directory_object_id = jstr(o, "ExternalDirectoryObjectId");
        r->primary_smtp_address = jstr(o, "PrimarySmtpAddress");
        r->recipient_type_details = jstr(o, "RecipientTypeDetails");
        r->user_principal_name = jstr(o, "UserPrincipalName");
        r->is_dir_synced = json_is_true(json_object_get(o, "IsDirSynced"));
        r->is_exchange_cloud_managed = json_is_true(json_object_get(o, "IsExchangeCloudManaged"));
        if (!r->identity || !r->external_directory_object_id || !r->primary_smtp_address ||
            !r->recipient_type_details || !r->user_principal_name) {
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
            goto cleanup;
        }
        if (!decode_list(o, "UserCertificate", &r->user_certificate, &r->n_user_certificate) ||
            !decode_list(o, "UserSMimeCertificate", &r->user_smime_certificate,
                         &r->n_user_smime_certificate)) {
            err =
                cs_err_new(CS_ERR_INVALID_INPUT, 0,
                           "Exchange recipient '%s': UserCertificate / UserSMimeCertificate is not a list of "
                           "base64 strings",
                           r->identity);
            goto cleanup;
        }
    }
    json_t *nl = json_object_get(root, "@odata.nextLink");
    if (json_is_string(nl) && json_string_length(nl) > 0) {
        *next_link = strdup(json_string_value(nl));
        if (!*next_link)
            err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    }
cleanup:
    json_decref(root);
    return err;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t nl = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, nl) == 0)
            return true;
    return false;
}

pub_exo_kind pub_exchange_classify(long status, const char *body, size_t len, char *detail, size_t cap)
{
    json_error_t jerr;
    json_t *root = body && len ? json_loadb(body, len, 0, &jerr) : NULL;
    const char *code = "", *msg = "", *dmsg = "";
    json_t *e = json_object_get(root, "error");
    if (json_is_object(e)) {
        json_t *v = json_object_get(e, "code");
        code = json_is_string(v) ? json_string_value(v) : "";
        v = json_object_get(e, "message");
        msg = json_is_string(v) ? json_string_value(v) : "";
        json_t *d = json_array_get(json_object_get(e, "details"), 0);
        v = json_object_get(d, "message");
        dmsg = json_is_string(v) ? json_string_value(v) : "";
    }
    if (cap > 0)
        snprintf(detail, cap, "%s%s%s", msg, *dmsg ? ": " : "", dmsg);
    pub_exo_kind k;
    if (status == 429 || strcmp(code, "TooManyRequests") == 0)
        k = PUB_EXO_THROTTLED;
    else if (status == 401)
        k = PUB_EXO_AUTH;
    else if (status >= 500 || status == 408 || status == 0)
        k = PUB_EXO_UNAVAILABLE;
    else if (contains_ci(dmsg, "ManagementObjectNotFoundException") || strcmp(code, "NotFound") == 0 ||
             contains_ci(dmsg, "couldn't be found"))
        k = PUB_EXO_NOT_FOUND;
    else if (contains_ci(dmsg, "write scope") || contains_ci(dmsg, "ADScopeException") ||
             contains_ci(dmsg, "being synchronized from your on-premises"))
        k = PUB_EXO_WRITE_SCOPE;
    else if (contains_ci(dmsg, "DataValidationException") || contains_ci(dmsg, "ParameterBinding"))
        k = PUB_EXO_INVALID_VALUE;
    else
        k = PUB_EXO_OTHER;
    json_decref(root);
    return k;
}

cs_err *pub_exchange_new(const pub_exchange_opts *o, pub_http *http, pub_token_provider *tokens,
                         pub_exchange **out)
{
    *out = NULL;
    if (!o->exchange_url || !o->tenant_id || !o->tenant_domain || !*o->tenant_domain)
        return cs_err_new(CS_ERR_CONFIG, CS_ERR_F_FATAL,
                          "o365.exchange_url, o365.tenant_id and o365.tenant_domain are required");
    pub_exchange *x = calloc(1, sizeof *x);
    if (!x)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    x->http = http;
    x->tokens = tokens;
    x->max_pages = o->max_pages ? o->max_pages : 100;
    cs_buf b;
    cs_buf_init(&b, 4096);
    size_t ul = strlen(o->exchange_url);
    while (ul > 0 && o->exchange_url[ul - 1] == '/')
        ul--;
    bool ok = cs_buf_add(&b, o->exchange_url, ul) && cs_buf_add_str(&b, "/adminapi/beta/") &&
              pub_url_encode(&b, o->tenant_id) && cs_buf_add_str(&b, "/InvokeCommand");
    x->invoke_url = ok ? cs_buf_take(&b) : NULL;
    cs_buf_free(&b);
    cs_buf_init(&b, 1024);
    ok = cs_buf_printf(&b, "X-AnchorMailbox: UPN:%s@%s", PUB_EXO_ANCHOR, o->tenant_domain);
    x->anchor_header = ok ? cs_buf_take(&b) : NULL;
    cs_buf_free(&b);
    if (!x->invoke_url || !x->anchor_header) {
        pub_exchange_free(x);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    }
    *out = x;
    return NULL;
}

void pub_exchange_free(pub_exchange *x)
{
    if (!x)
        return;
    free(x->invoke_url);
    free(x->anchor_header);
    free(x);
}

static void op_free(exo_op *op)
{
    if (!op)
        return;
    free(op->identity);
    cs_buf_free(&op->body);
    free(op->url);
    pub_token_unref(op->token);
    pub_exo_recipients_free(op->recs, op->n_recs);
    free(op);
}

static void on_http_done(void *ctx, const pub_http_response *resp);

/* Sends the op's body to op->url with a current token. */
static cs_err *op_send(exo_op *op)
{
    cs_err *err = NULL;
    pub_token_unref(op->token);
    op->token = NULL;
    err = pub_token_get(op->x->tokens, PUB_RESOURCE_EXCHANGE, &op->token);
    if (err)
        return err;
    char auth[64 + 32 * 1024];
    char cmdlet_h[80];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", pub_token_value(op->token));
    snprintf(cmdlet_h, sizeof cmdlet_h, "X-CmdletName: %s", op->cmdlet);
    const char *headers[] = {auth,     "Content-Type: application/json", "Accept: application/json",
                             cmdlet_h, "X-ResponseFormat: json",         op->x->anchor_header,
                             NULL};
    pub_http_request req = {.method = "POST",
                            .url = op->url,
                            .headers = headers,
                            .body = cs_buf_str(&op->body),
                            .body_len = cs_buf_len(&op->body),
                            .done = on_http_done,
                            .ctx = op};
    err = pub_http_submit(op->x->http, &req, NULL);
    memset(auth, 0, sizeof auth);
    return err;
}

static const char *fix_for(pub_exo_kind k)
{
    switch (k) {
    case PUB_EXO_WRITE_SCOPE:
        return " (fix: make the recipient's Exchange attributes cloud-managed with Set-Mailbox "
               "-IsExchangeCloudManaged $true, or leave the attribute to Entra Connect)";
    case PUB_EXO_NOT_FOUND:
        return " (the recipient may not exist yet: next Entra Connect cycle)";
    case PUB_EXO_AUTH:
        return " (check the app's Exchange.ManageAsApp permission and Exchange administrator role)";
    default:
        return "";
    }
}

static void op_finish(exo_op *op, pub_exo_kind kind, const cs_err *cause, const pub_http_response *resp,
                      const char *detail)
{
    cs_err *err = NULL;
    if (kind != PUB_EXO_OK) {
        unsigned flags = kind == PUB_EXO_THROTTLED || kind == PUB_EXO_UNAVAILABLE ? CS_ERR_F_RETRIABLE : 0;
        if (cause && cs_err_is_fatal(cause))
            flags |= CS_ERR_F_FATAL;
        const char *text = detail && *detail ? detail : cause ? cs_err_message(cause) : "failed";
        /* The fix before Exchange's (long) text, so a bounded copy of the message keeps it. */
        err = cs_err_new(CS_ERR_HTTP, flags, "%s %s: %s%s: %s (HTTP %ld, client-request-id %s)", op->cmdlet,
                         op->identity, pub_exo_kind_name(kind), fix_for(kind), text, resp ? resp->status : 0L,
                         resp ? resp->client_request_id : "-");
        if (kind != PUB_EXO_CANCELLED)
            cs_log_kv(CS_LOG_WARN, PUB_EXO_FAC, "cmdlet failed", "kind", pub_exo_kind_name(kind), "cmdlet",
                      op->cmdlet, "identity", op->identity, "client_request_id",
                      resp ? resp->client_request_id : NULL, "error", cs_err_message(err), NULL);
    }
    pub_exo_result res = {
        .kind = kind,
        .err = err,
        .status = resp ? resp->status : 0,
        .client_request_id = resp ? resp->client_request_id : "",
        .retry_after_ms = resp ? resp->retry_after_ms : -1,
        .rate_limit_remaining = resp ? resp->rate_limit_remaining : -1,
        .recipients = kind == PUB_EXO_OK ? op->recs : NULL,
        .n_recipients = kind == PUB_EXO_OK ? op->n_recs : 0,
    };
    op->done(op->ctx, &res);
    cs_err_free(err);
    op_free(op);
}

static void on_http_done(void *ctx, const pub_http_response *resp)
{
    exo_op *op = ctx;
    cs_err *err = NULL;
    char detail[1024] = "";
    switch (resp->outcome) {
    case PUB_HTTP_OK:
        break;
    case PUB_HTTP_CANCELLED:
        op_finish(op, PUB_EXO_CANCELLED, resp->err, resp, "cancelled");
        return;
    case PUB_HTTP_UNAUTHORIZED:
        if (!op->refreshed) {
            /* The token was revoked or expired early: one refresh, one resend. */
            op->refreshed = true;
            pub_token_invalidate(op->x->tokens, PUB_RESOURCE_EXCHANGE, op->token);
            err = op_send(op);
            if (!err)
                return;
            op_finish(op, PUB_EXO_AUTH, err, resp, NULL);
            cs_err_free(err);
            return;
        }
        op_finish(op, PUB_EXO_AUTH, resp->err, resp, "401 after a token refresh");
        return;
    case PUB_HTTP_THROTTLED:
    case PUB_HTTP_UNAVAILABLE:
    case PUB_HTTP_REJECTED:
    case PUB_HTTP_FAILED: {
        pub_exo_kind k =
            pub_exchange_classify(resp->status, resp->body, resp->body_len, detail, sizeof detail);
        if (resp->outcome == PUB_HTTP_FAILED && resp->status == 0)
            k = PUB_EXO_OTHER; /* TLS / URL failure: not something a retry fixes */
        op_finish(op, k, resp->err, resp, detail[0] ? detail : NULL);
        return;
    }
    }
    if (op->is_read) {
        char *next = NULL;
        err = pub_exchange_parse_recipients(resp->body, resp->body_len, &op->recs, &op->n_recs, &next);
        if (err) {
            op_finish(op, PUB_EXO_OTHER, err, resp, NULL);
            cs_err_free(err);
            return;
        }
        if (next) {
            if (++op->pages >= op->x->max_pages) {
                free(next);
                op_finish(op, PUB_EXO_OTHER, NULL, resp, "too many result pages: narrow the filter");
                return;
            }
            free(op->url);
            op->url = next;
            op->refreshed = false;
            err = op_send(op);
            if (err) {
                op_finish(op, PUB_EXO_AUTH, err, resp, NULL);
                cs_err_free(err);
            }
            return;
        }
    }
    op_finish(op, PUB_EXO_OK, NULL, resp, NULL);
}

static cs_err *op_new(pub_exchange *x, const char *cmdlet, const char *identity, bool is_read,
                      pub_exo_done_fn done, void *ctx, exo_op **out)
{
    exo_op *op = calloc(1, sizeof *op);
    if (!op)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    op->x = x;
    snprintf(op->cmdlet, sizeof op->cmdlet, "%s", cmdlet);
    op->identity = strdup(identity ? identity : "(filter)");
    op->url = strdup(x->invoke_url);
    op->is_read = is_read;
    op->done = done;
    op->ctx = ctx;
    cs_buf_init(&op->body, PUB_EXO_MAX_BODY);
    if (!op->identity || !op->url) {
        op_free(op);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    }
    *out = op;
    return NULL;
}

cs_err *pub_exchange_set_certificates(pub_exchange *x, const char *cmdlet, const char *identity,
                                      const pub_blob *user_certs, size_t n_user, const pub_blob *smime_certs,
                                      size_t n_smime, pub_exo_done_fn done, void *ctx)
{
    exo_op *op = NULL;
    cs_err *err = op_new(x, cmdlet ? cmdlet : "", identity, false, done, ctx, &op);
    if (err)
        return err;
    err = pub_exchange_build_set_body(cmdlet, identity, user_certs, n_user, smime_certs, n_smime, &op->body);
    if (!err)
        err = op_send(op);
    if (err)
        op_free(op);
    return err;
}

cs_err *pub_exchange_get(pub_exchange *x, const char *cmdlet, const char *identity, const char *filter,
                         pub_exo_done_fn done, void *ctx)
{
    exo_op *op = NULL;
    cs_err *err = op_new(x, cmdlet ? cmdlet : "", identity ? identity : filter, true, done, ctx, &op);
    if (err)
        return err;
    err = pub_exchange_build_get_body(cmdlet, identity, filter, &op->body);
    if (!err)
        err = op_send(op);
    if (err)
        op_free(op);
    return err;
}
