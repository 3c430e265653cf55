/*
 * pub_inspect: resolve + Get-* per object, concurrently (see pub_inspect.h).
 */
#include "pub_inspect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_event.h"

#define MAX_DIGEST_VALUES 1024

typedef struct inspect_op {
    pub_o365 *o;
    pub_inspect_result *out;
    char key[32];
    char mail[256];
    bool done;
    cs_err *fatal;
} inspect_op;

const char *pub_inspect_status_name(pub_inspect_status s)
{
    switch (s) {
    case PUB_INSPECT_FOUND:
        return "found";
    case PUB_INSPECT_NOT_FOUND:
        return "not_found";
    case PUB_INSPECT_ERROR:
        return "error";
    }
    return "error";
}

static int cmp_hex(const void *a, const void *b)
{
    return memcmp(a, b, 64);
}

void pub_inspect_digest(const ProtobufCBinaryData *values, size_t n, char out[65])
{
    if (n > MAX_DIGEST_VALUES)
        n = MAX_DIGEST_VALUES;
    char(*h)[64] = calloc(n ? n : 1, sizeof(*h));
    if (!h) {
        out[0] = '\0';
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char one[CS_SHA256_HEX_LEN];
        cs_sha256_hex(values[i].data, values[i].len, one);
        memcpy(h[i], one, 64);
    }
    qsort(h, n, sizeof(*h), cmp_hex);
    char all[CS_SHA256_HEX_LEN];
    cs_sha256_hex(h, n * sizeof(*h), all);
    snprintf(out, 65, "%s", all);
    free(h);
}

static void fail(inspect_op *op, pub_inspect_status st, const char *detail)
{
    op->out->status = st;
    snprintf(op->out->detail, sizeof op->out->detail, "%s", detail ? detail : "");
    op->done = true;
}

static void on_get(void *ctx, const pub_exo_result *res)
{
    inspect_op *op = ctx;
    pub_inspect_result *out = op->out;
    if (res->kind == PUB_EXO_NOT_FOUND || (res->kind == PUB_EXO_OK && res->n_recipients == 0)) {
        fail(op, PUB_INSPECT_NOT_FOUND, res->err ? cs_err_message(res->err) : "Get-* found no recipient");
        return;
    }
    if (res->kind != PUB_EXO_OK) {
        if (res->err && cs_err_is_fatal(res->err))
            op->fatal = cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "%s", cs_err_message(res->err));
        fail(op, PUB_INSPECT_ERROR, res->err ? cs_err_message(res->err) : pub_exo_kind_name(res->kind));
        return;
    }
    const pub_exo_recipient *r = &res->recipients[0];
    out->status = PUB_INSPECT_FOUND;
    out->is_dir_synced = r->is_dir_synced;
    out->is_exchange_cloud_managed = r->is_exchange_cloud_managed;
    out->n_user_certificate = r->n_user_certificate;
    out->n_user_smime_certificate = r->n_user_smime_certificate;
    pub_inspect_digest(r->user_certificate, r->n_user_certificate, out->user_certificate_digest);
    pub_inspect_digest(r->user_smime_certificate, r->n_user_smime_certificate,
                       out->user_smime_certificate_digest);
    if (res->n_recipients > 1)
        snprintf(out->detail, sizeof out->detail, "%zu recipients answered, the first was used",
                 res->n_recipients);
    op->done = true;
}

static void on_resolved(void *ctx, pub_resolve_status st, const pub_recipient *r, const cs_err *err,
                        long long retry_after_ms)
{
    inspect_op *op = ctx;
    (void)retry_after_ms;
    if (st == PUB_RESOLVE_NOT_FOUND) {
        fail(op, PUB_INSPECT_NOT_FOUND, "no Exchange recipient by any key of resolve.order");
        return;
    }
    if (st != PUB_RESOLVE_FOUND) {
        if (err && cs_err_is_fatal(err))
            op->fatal = cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "%s", cs_err_message(err));
        fail(op, PUB_INSPECT_ERROR, err ? cs_err_message(err) : "resolve failed");
        return;
    }
    op->out->rcpt = *r;
    const char *set = pub_exchange_set_cmdlet_for(r->recipient_type_details);
    if (!set) {
        char msg[256];
        snprintf(msg, sizeof msg, "a %.64s holds no certificates we can write", r->recipient_type_details);
        fail(op, PUB_INSPECT_ERROR, msg);
        return;
    }
    /* Set-Mailbox -> Get-Mailbox: the read that shows what the write would change. */
    char get[32];
    snprintf(get, sizeof get, "Get-%s", set + 4);
    cs_err *e = pub_exchange_get(pub_o365_exchange(op->o), get, r->identity, NULL, on_get, op);
    if (e) {
        if (cs_err_is_fatal(e))
            op->fatal = cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "%s", cs_err_message(e));
        fail(op, PUB_INSPECT_ERROR, cs_err_message(e));
        cs_err_free(e);
    }
}

static cs_err *run_chunk(pub_o365 *o, const Certsync__V1__ChangeEvent *const *events, size_t n,
                         pub_inspect_result *out)
{
    cs_err *err = NULL;
    inspect_op *ops = calloc(n ? n : 1, sizeof(*ops));
    if (!ops)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    for (size_t i = 0; i < n; i++) {
        inspect_op *op = &ops[i];
        op->o = o;
        op->out = &out[i];
        memset(op->out, 0, sizeof(*op->out));
        const Certsync__V1__Identity *id = events[i] ? events[i]->identity : NULL;
        if (!id) {
            fail(op, PUB_INSPECT_ERROR, "event without identity");
            continue;
        }
        pub_resolve_input in;
        pub_o365_resolve_input(id, &in, op->mail, sizeof op->mail);
        /* A cache key of our own: the resolver's cache is per process here, and the tool runs once. */
        snprintf(op->key, sizeof op->key, "inspect/%zu", i);
        cs_err *e = pub_resolver_resolve(pub_o365_resolver(o), op->key, &in, on_resolved, op);
        if (e) {
            fail(op, PUB_INSPECT_ERROR, cs_err_message(e));
            cs_err_free(e);
        }
    }
    pub_http *http = pub_o365_http(o);
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all = all && ops[i].done;
        if (all || pub_http_pending(http) == 0)
            break;
        err = pub_http_run(http, 1000, NULL);
        if (err)
            break;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ops[i].done && !ops[i].fatal)
            fail(&ops[i], PUB_INSPECT_ERROR, "the read never completed");
        if (ops[i].fatal) {
            if (!err)
                err = ops[i].fatal;
            else
                cs_err_free(ops[i].fatal);
        }
        pub_resolver_forget(pub_o365_resolver(o), ops[i].key);
    }
    if (err)
        pub_http_cancel_all(http);
    free(ops);
    return err;
}

cs_err *pub_inspect_run(pub_o365 *o, const Certsync__V1__ChangeEvent *const *events, size_t n,
                        pub_inspect_result *out)
{
    for (size_t at = 0; at < n; at += PUB_INSPECT_CHUNK) {
        size_t k = n - at < PUB_INSPECT_CHUNK ? n - at : PUB_INSPECT_CHUNK;
        cs_err *err = run_chunk(o, events + at, k, out + at);
        if (err)
            return err;
    }
    return NULL;
}
