/*
 * pub_o365: resolve + Set-* per write, concurrently, as a pub_applier.
 */
#include "pub_o365.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_log.h"
#include "pub_graph.h"
#include "pub_http.h"

struct pub_o365 {
    pub_http *http;
    pub_token_provider *tokens;
    pub_exchange *exo;
    pub_graph *graph;
    pub_resolver *resolver;
    /* retry.not_found.* (defaults when the config leaves them 0, e.g. a config built by a test) */
    long long nf_first_ms, nf_max_ms;
    int nf_factor, nf_attempts;
    size_t window;   /* writes in progress at once in apply_until(): keeps http.max_inflight busy */
    bool cancelling; /* apply_until() cancels at its deadline: callbacks report "cancelled", start nothing */
};

/* retry_after_ms of a write cancelled at the deadline: soon, since the cause was one slow request, not a
 * throttle (which says its own Retry-After). */
#define CANCELLED_RETRY_MS 5000

typedef struct write_op {
    pub_o365 *o;
    const pub_write *w;
    pub_apply_outcome *out;
    pub_recipient rec;
    bool done;
    size_t *n_done; /* the apply_until() call's count of finished writes */
    cs_err *fatal;  /* credentials / config: fails the batch */
    char mail[256];
} write_op;

cs_err *pub_o365_new(const pub_config *cfg, const pub_o365_opts *opts, pub_o365 **out)
{
    cs_err *err = NULL;
    pub_o365_opts none = {0};
    if (!opts)
        opts = &none;
    *out = NULL;
    pub_o365 *o = calloc(1, sizeof *o);
    if (!o)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
    o->nf_first_ms =
        cfg->not_found_first_delay_ms > 0 ? cfg->not_found_first_delay_ms : PUB_O365_NOT_FOUND_FIRST_DELAY_MS;
    o->nf_max_ms =
        cfg->not_found_max_delay_ms > 0 ? cfg->not_found_max_delay_ms : PUB_O365_NOT_FOUND_MAX_DELAY_MS;
    if (o->nf_max_ms < o->nf_first_ms)
        o->nf_max_ms = o->nf_first_ms;
    o->nf_factor = cfg->not_found_factor > 0 ? cfg->not_found_factor : PUB_O365_NOT_FOUND_FACTOR;
    o->nf_attempts = cfg->not_found_attempts > 0 ? cfg->not_found_attempts : PUB_O365_NOT_FOUND_ATTEMPTS;
    /* A write is up to three requests in a row (lookup, Get-Recipient, Set-*): with twice as many writes in
     * progress as slots, a slot freed by one write's step finds another write's request queued. */
    o->window = 2 * (size_t)(cfg->http_max_inflight > 0 ? cfg->http_max_inflight : 1);
    pub_http_opts ho = {.max_inflight = cfg->http_max_inflight,
                        .timeout_ms = cfg->http_timeout_ms,
                        .ca_file = cfg->o365_ca_file,
                        .max_retry_after_ms = PUB_O365_MAX_INLINE_WAIT_MS,
                        .observe = opts->observe_api,
                        .observe_ctx = opts->observe_ctx};
    err = pub_http_new(&ho, &o->http);
    if (err)
        goto cleanup;
    pub_token_opts to = {
        .authority_url = cfg->o365_authority_url,
        .tenant_id = cfg->o365_tenant_id,
        .client_id = cfg->o365_client_id,
        .exchange_url = cfg->o365_exchange_url,
        .graph_url = cfg->o365_graph_url,
        .exchange_resource = opts->exchange_resource,
        .graph_resource = opts->graph_resource,
        .auth = cfg->o365_auth,
        .client_secret = cfg->o365_client_secret,
        .certificate_file = cfg->o365_certificate_file,
        .private_key_pem = cfg->o365_private_key,
        .alg = cfg->o365_assertion_alg,
        .http = {.max_inflight = 1,
                 .timeout_ms = cfg->http_timeout_ms,
                 .ca_file = cfg->o365_ca_file,
                 .observe = opts->observe_token,
                 .observe_ctx = opts->observe_ctx},
    };
    err = pub_token_provider_new(&to, &o->tokens);
    if (err)
        goto cleanup;
    pub_exchange_opts xo = {.exchange_url = cfg->o365_exchange_url,
                            .tenant_id = cfg->o365_tenant_id,
                            .tenant_domain = cfg->o365_tenant_domain};
    err = pub_exchange_new(&xo, o->http, o->tokens, &o->exo);
    if (err)
        goto cleanup;
    err = pub_graph_new(cfg->o365_graph_url, o->http, o->tokens, &o->graph);
    if (err)
        goto cleanup;
    err = pub_resolver_new(cfg->resolve_order, cfg->resolve_count,
                           opts->resolver_cache_entries ? opts->resolver_cache_entries : 100000,
                           opts->resolver_ttl_ms ? opts->resolver_ttl_ms : 3600 * 1000LL, o->graph, o->exo,
                           &o->resolver);
    if (err)
        goto cleanup;
    *out = o;
    o = NULL;
cleanup:
    pub_o365_free(o);
    return err;
}

void pub_o365_free(pub_o365 *o)
{
    if (!o)
        return;
    if (o->http)
        pub_http_cancel_all(o->http);
    pub_resolver_free(o->resolver);
    pub_graph_free(o->graph);
    pub_exchange_free(o->exo);
    pub_http_free(o->http);
    pub_token_provider_free(o->tokens);
    free(o);
}

uint64_t pub_o365_token_refreshes(const pub_o365 *o)
{
    return pub_token_refreshes(o->tokens);
}

cs_err *pub_o365_warm_up(pub_o365 *o)
{
    pub_token *t = NULL;
    cs_err *err = pub_token_get(o->tokens, PUB_RESOURCE_EXCHANGE, &t);
    pub_token_unref(t);
    t = NULL;
    if (!err)
        err = pub_token_get(o->tokens, PUB_RESOURCE_GRAPH, &t);
    pub_token_unref(t);
    return err;
}

/* first x factor^(attempt-1), at most max; the loop stops at max, so it is bounded and cannot overflow. */
static long long not_found_delay_ms(const pub_o365 *o, int attempt)
{
    long long d = o->nf_first_ms;
    for (int i = 1; i < attempt && d < o->nf_max_ms; i++)
        d *= o->nf_factor;
    return d < o->nf_max_ms ? d : o->nf_max_ms;
}

static void set_detail(write_op *op, const char *s)
{
    snprintf(op->out->detail, sizeof op->out->detail, "%s", s ? s : "");
}

/* Marks `op` finished (once) and counts it for the apply_until() driving it. */
static void op_done(write_op *op)
{
    if (op->done)
        return;
    op->done = true;
    if (op->n_done)
        (*op->n_done)++;
}

/* The write was cancelled at apply_until()'s deadline: not applied, to be tried again (pub_apply_outcome). */
static void cancelled(write_op *op, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg,
             "cancelled at the batch deadline (batch.max_apply_time + batch.cancel_grace) %s", what);
    set_detail(op, msg);
    op->out->status = PUB_APPLY_RETRY_LATER;
    op->out->retry_after_ms = CANCELLED_RETRY_MS;
    op->out->cancelled = 1;
    op_done(op);
}

static void not_found(write_op *op, const char *what)
{
    int attempt = op->w->attempt > 0 ? op->w->attempt : 1;
    char msg[512];
    snprintf(msg, sizeof msg, "%.32s: no Exchange recipient for %.400s (attempt %d)", what, op->w->object_key,
             attempt);
    set_detail(op, msg);
    if (attempt >= op->o->nf_attempts) {
        op->out->status = PUB_APPLY_PERMANENT;
        op->out->reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_RECIPIENT_NOT_FOUND;
    } else {
        op->out->status = PUB_APPLY_RETRY_LATER;
        op->out->retry_after_ms = not_found_delay_ms(op->o, attempt);
    }
    op_done(op);
}

static void on_set(void *ctx, const pub_exo_result *res)
{
    write_op *op = ctx;
    pub_apply_outcome *out = op->out;
    snprintf(out->client_request_id, sizeof out->client_request_id, "%s", res->client_request_id);
    out->http_status = (int)res->status;
    if (res->kind == PUB_EXO_CANCELLED && op->o->cancelling) {
        cancelled(op, "while writing");
        return;
    }
    switch (res->kind) {
    case PUB_EXO_OK:
        out->status = op->w->clear ? PUB_APPLY_CLEARED : PUB_APPLY_APPLIED;
        op_done(op);
        return;
    case PUB_EXO_NOT_FOUND:
        pub_resolver_forget(op->o->resolver, op->w->object_key); /* moved or deleted since it was cached */
        not_found(op, out->cmdlet);
        return;
    case PUB_EXO_WRITE_SCOPE:
        out->status = PUB_APPLY_PERMANENT;
        out->reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_WRITE_SCOPE;
        break;
    case PUB_EXO_INVALID_VALUE:
    case PUB_EXO_OTHER:
        out->status = PUB_APPLY_PERMANENT;
        out->reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED;
        break;
    case PUB_EXO_THROTTLED:
        out->status = PUB_APPLY_RETRY_LATER;
        out->retry_after_ms = res->retry_after_ms >= 0 ? res->retry_after_ms : 60000;
        break;
    case PUB_EXO_UNAVAILABLE:
    case PUB_EXO_CANCELLED:
        out->status = PUB_APPLY_RETRY_LATER;
        out->retry_after_ms = 30000;
        break;
    case PUB_EXO_AUTH:
        if (res->err && cs_err_is_fatal(res->err))
            op->fatal = cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "%s", cs_err_message(res->err));
        out->status = PUB_APPLY_RETRY_LATER;
        out->retry_after_ms = 60000;
        break;
    }
    set_detail(op, res->err ? cs_err_message(res->err) : pub_exo_kind_name(res->kind));
    op_done(op);
}

static void on_resolved(void *ctx, pub_resolve_status st, const pub_recipient *r, const cs_err *err,
                        long long retry_after_ms)
{
    write_op *op = ctx;
    pub_apply_outcome *out = op->out;
    if (op->o->cancelling) {
        /* A lookup ended by the cancellation (it failed or missed only because it was cut): start nothing. */
        cancelled(op, "while resolving the recipient");
        return;
    }
    if (st == PUB_RESOLVE_NOT_FOUND) {
        not_found(op, "resolve");
        return;
    }
    if (st == PUB_RESOLVE_FAILED) {
        set_detail(op, err ? cs_err_message(err) : "resolve failed");
        if (err && cs_err_is_fatal(err))
            op->fatal = cs_err_new(CS_ERR_HTTP, CS_ERR_F_FATAL, "%s", cs_err_message(err));
        if (err && !cs_err_is_retriable(err) && !cs_err_is_fatal(err)) {
            out->status = PUB_APPLY_PERMANENT; /* ambiguous identity: needs a directory fix */
            out->reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED;
        } else {
            out->status = PUB_APPLY_RETRY_LATER;
            out->retry_after_ms = retry_after_ms >= 0 ? retry_after_ms : 30000;
        }
        op_done(op);
        return;
    }
    op->rec = *r;
    snprintf(out->recipient_id, sizeof out->recipient_id, "%s", r->external_directory_object_id);
    snprintf(out->recipient_identity, sizeof out->recipient_identity, "%s", r->identity);
    snprintf(out->recipient_type, sizeof out->recipient_type, "%s", r->recipient_type_details);
    snprintf(out->primary_smtp_address, sizeof out->primary_smtp_address, "%s", r->primary_smtp_address);
    snprintf(out->resolved_by, sizeof out->resolved_by, "%s", r->resolved_by);
    const char *cmdlet = pub_exchange_set_cmdlet_for(r->recipient_type_details);
    if (!cmdlet) {
        char msg[512];
        snprintf(msg, sizeof msg, "recipient %.256s is a %.64s: it holds no certificates we can write",
                 r->identity, r->recipient_type_details);
        set_detail(op, msg);
        out->status = PUB_APPLY_PERMANENT;
        out->reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED;
        op_done(op);
        return;
    }
    snprintf(out->cmdlet, sizeof out->cmdlet, "%s", cmdlet);
    const pub_write *w = op->w;
    cs_err *e = pub_exchange_set_certificates(
        op->o->exo, cmdlet, r->identity, w->clear ? NULL : w->user_certificate,
        w->clear ? 0 : w->n_user_certificate, w->clear ? NULL : w->user_smime_certificate,
        w->clear ? 0 : w->n_user_smime_certificate, on_set, op);
    if (e) {
        set_detail(op, cs_err_message(e));
        if (cs_err_is_fatal(e))
            op->fatal = e;
        else
            cs_err_free(e);
        out->status = PUB_APPLY_RETRY_LATER;
        out->retry_after_ms = 30000;
        op_done(op);
    }
}

/* The address to try for resolve.order "mail": mail, else the primary proxy address. */
static const char *primary_mail(const Certsync__V1__Identity *id, char *buf, size_t cap)
{
    if (id->mail && *id->mail)
        return id->mail;
    for (size_t i = 0; i < id->n_proxy_addresses; i++) {
        if (strncmp(id->proxy_addresses[i], "SMTP:", 5) == 0) {
            snprintf(buf, cap, "%s", id->proxy_addresses[i] + 5);
            return buf;
        }
    }
    return NULL;
}

void pub_o365_resolve_input(const Certsync__V1__Identity *id, pub_resolve_input *in, char *mail_buf,
                            size_t cap)
{
    /* ms-DS-ConsistencyGuid, when set, is the immutable id Entra Connect uses (design.md). */
    const ProtobufCBinaryData *guid = id->has_consistency_guid && id->consistency_guid.len == 16
                                          ? &id->consistency_guid
                                      : id->has_object_guid && id->object_guid.len == 16 ? &id->object_guid
                                                                                         : NULL;
    memset(in, 0, sizeof *in);
    in->object_guid = guid ? guid->data : NULL;
    in->sid = id->object_sid;
    in->upn = id->user_principal_name;
    in->mail = primary_mail(id, mail_buf, cap);
}

pub_http *pub_o365_http(pub_o365 *o)
{
    return o->http;
}

pub_exchange *pub_o365_exchange(pub_o365 *o)
{
    return o->exo;
}

pub_token_provider *pub_o365_tokens(pub_o365 *o)
{
    return o->tokens;
}

pub_resolver *pub_o365_resolver(pub_o365 *o)
{
    return o->resolver;
}

/* A pub_recipient from its proto form (bounded copies). */
static void recipient_from_proto(const Certsync__V1__Recipient *in, pub_recipient *r)
{
    memset(r, 0, sizeof *r);
    const char *oid = in->external_directory_object_id ? in->external_directory_object_id : "";
    snprintf(r->external_directory_object_id, sizeof r->external_directory_object_id, "%s", oid);
    snprintf(r->identity, sizeof r->identity, "%s", in->identity && in->identity[0] ? in->identity : oid);
    snprintf(r->recipient_type_details, sizeof r->recipient_type_details, "%s",
             in->recipient_type_details ? in->recipient_type_details : "");
    snprintf(r->primary_smtp_address, sizeof r->primary_smtp_address, "%s",
             in->primary_smtp_address ? in->primary_smtp_address : "");
    snprintf(r->resolved_by, sizeof r->resolved_by, "%s", in->resolved_by ? in->resolved_by : "");
}

/* One lookup of resolve(): fills the recipient fields of `out` when found. */
typedef struct resolve_op {
    pub_apply_outcome *out;
    bool done;
    char mail[256];
} resolve_op;

static void on_looked_up(void *ctx, pub_resolve_status st, const pub_recipient *r, const cs_err *err,
                         long long retry_after_ms)
{
    resolve_op *op = ctx;
    (void)err;
    (void)retry_after_ms; /* apply() resolves again and reports the failure with its delay */
    if (st == PUB_RESOLVE_FOUND && r) {
        pub_apply_outcome *out = op->out;
        snprintf(out->recipient_id, sizeof out->recipient_id, "%s", r->external_directory_object_id);
        snprintf(out->recipient_identity, sizeof out->recipient_identity, "%s", r->identity);
        snprintf(out->recipient_type, sizeof out->recipient_type, "%s", r->recipient_type_details);
        snprintf(out->primary_smtp_address, sizeof out->primary_smtp_address, "%s", r->primary_smtp_address);
        snprintf(out->resolved_by, sizeof out->resolved_by, "%s", r->resolved_by);
    }
    op->done = true;
}

/* pub_applier.resolve: every lookup of the batch concurrently, cached by object key for apply(). */
static cs_err *resolve(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes)
{
    pub_o365 *o = ctx;
    cs_err *err = NULL;
    resolve_op *ops = calloc(n ? n : 1, sizeof *ops);
    if (!ops)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory resolving %zu recipients", n);
    for (size_t i = 0; i < n; i++) {
        resolve_op *op = &ops[i];
        op->out = &outcomes[i];
        const Certsync__V1__Identity *id = writes[i].event ? writes[i].event->identity : NULL;
        if (!id || writes[i].recipient) {
            op->done = true;
            continue;
        }
        pub_resolve_input in;
        pub_o365_resolve_input(id, &in, op->mail, sizeof op->mail);
        cs_err *e = pub_resolver_resolve(o->resolver, writes[i].object_key, &in, on_looked_up, op);
        if (e) {
            op->done = true; /* apply() meets the same error and reports it */
            cs_err_free(e);
        }
    }
    /* Bounded like apply(): every request ends within its timeouts x attempts. */
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all = all && ops[i].done;
        if (all || pub_http_pending(o->http) == 0)
            break;
        err = pub_http_run(o->http, 1000, NULL);
        if (err)
            break;
    }
    if (err)
        pub_http_cancel_all(o->http);
    free(ops);
    return err;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts write `op` (its lookup, or its Set-* when pre-resolved); a write that cannot start finishes here. */
static void start_write(pub_o365 *o, write_op *op)
{
    const pub_write *w = op->w;
    const Certsync__V1__Identity *id = w->event ? w->event->identity : NULL;
    if (!id) {
        set_detail(op, "event without identity");
        op->out->status = PUB_APPLY_PERMANENT;
        op->out->reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED;
        op_done(op);
        return;
    }
    if (w->recipient) {
        /* Pre-resolved (a clear of an old recipient, a handover): no lookup, the cmdlet from its type. */
        pub_recipient r;
        recipient_from_proto(w->recipient, &r);
        on_resolved(op, PUB_RESOLVE_FOUND, &r, NULL, 0);
        return;
    }
    pub_resolve_input in;
    pub_o365_resolve_input(id, &in, op->mail, sizeof op->mail);
    cs_err *e = pub_resolver_resolve(o->resolver, w->object_key, &in, on_resolved, op);
    if (e) {
        set_detail(op, cs_err_message(e));
        op->out->status = PUB_APPLY_PERMANENT;
        op->out->reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_RECIPIENT_NOT_FOUND;
        op_done(op);
        cs_err_free(e);
    }
}

/*
 * pub_applier.apply_until: starts writes in order, o->window in progress at once, so the HTTP client always
 * has the next write's requests queued (no drain between chunks); starts none at or after lim->start_until_ms
 * (but always the first); at lim->cancel_at_ms, or as soon as lim->stop says so (then not even the first
 * starts), cancels whatever is unfinished (RETRY_LATER, `cancelled`).
 * Bounded: every request ends within its timeouts x attempts, and the cancel time bounds them all.
 */
static cs_err *apply_until(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes,
                           const pub_apply_limits *lim, size_t *n_started)
{
    pub_o365 *o = ctx;
    cs_err *err = NULL;
    size_t started = 0, n_done = 0;
    int64_t start_until = lim ? lim->start_until_ms : 0, cancel_at = lim ? lim->cancel_at_ms : 0;
    *n_started = 0;
    write_op *ops = calloc(n ? n : 1, sizeof *ops);
    if (!ops)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory for %zu writes", n);
    for (;;) {
        int64_t now = mono_ms();
        /* Assignment lost (pub_apply_limits.stop): another member may own the partitions already, so its
         * writes could be overtaken by ours: cancel the unfinished ones as at the cancel time. */
        bool stop = lim && lim->stop && lim->stop(lim->stop_ctx);
        if (stop && n_done == started)
            break;
        if ((stop || (cancel_at > 0 && now >= cancel_at)) && n_done < started) {
            /* The cancellations complete every unfinished write through its callback (cancelled()). */
            o->cancelling = true;
            pub_http_cancel_all(o->http);
            o->cancelling = false;
            for (size_t i = 0; i < started; i++)
                if (!ops[i].done)
                    cancelled(&ops[i], "before it finished");
            break;
        }
        bool may_start =
            started == 0 || ((start_until <= 0 || now < start_until) && (cancel_at <= 0 || now < cancel_at));
        /* n_done counts only started writes, so started - n_done is the number in progress. */
        while (may_start && started < n && started - n_done < o->window) {
            write_op *op = &ops[started];
            op->o = o;
            op->w = &writes[started];
            op->out = &outcomes[started];
            op->n_done = &n_done;
            started++;
            start_write(o, op);
        }
        if (n_done == started && (started == n || !may_start))
            break;
        if (pub_http_pending(o->http) == 0) {
            if (n_done < started) /* in progress with nothing on the wire: a bug, reported below */
                break;
            continue; /* everything started finished at once (no request needed): start more */
        }
        long long wait = 1000;
        if (cancel_at > 0 && cancel_at - now < wait)
            wait = cancel_at - now > 0 ? cancel_at - now : 1;
        err = pub_http_run(o->http, wait, NULL);
        if (err)
            break;
    }
    for (size_t i = 0; i < started; i++) {
        if (!ops[i].done && !err)
            err = cs_err_new(CS_ERR_INTERNAL, 0, "write for %s never completed", writes[i].object_key);
        if (ops[i].fatal) {
            if (!err)
                err = ops[i].fatal;
            else
                cs_err_free(ops[i].fatal);
        }
    }
    if (err)
        pub_http_cancel_all(o->http);
    free(ops);
    *n_started = started;
    return err;
}

/* pub_applier.apply: every write, no time bound. */
static cs_err *apply(void *ctx, const pub_write *writes, size_t n, pub_apply_outcome *outcomes)
{
    size_t started = 0;
    return apply_until(ctx, writes, n, outcomes, NULL, &started);
}

static void quiesce(void *ctx)
{
    pub_o365 *o = ctx;
    /* apply() returns with nothing in flight; this is the safety net for a revoke mid-apply. */
    pub_http_cancel_all(o->http);
}

pub_applier pub_o365_applier(pub_o365 *o)
{
    pub_applier a = {
        .apply = apply, .quiesce = quiesce, .resolve = resolve, .apply_until = apply_until, .ctx = o};
    return a;
}
