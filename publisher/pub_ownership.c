/*
 * pub_ownership: claims per recipient, owner per recipient, skips and extra writes (contract in
 * pub_ownership.h).
 */
#include "pub_ownership.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_event.h"
#include "cs_log.h"

#define FAC "ownership"
#define RID_MAX                                                                                              \
    128 /* recipient ids are Entra object ids (36 chars) or identities; pub_apply_outcome bounds it */
/* Claims weighed per recipient: one person is in a handful of sources; more than this many objects mapping to
 * one recipient is a directory mistake, and the rest are left out (logged). */
#define CLAIMS_MAX 512

/* A recipient as written into state and handed to the applier; strings are copies. */
typedef struct rcpt_copy {
    Certsync__V1__Recipient pb;
    char id[RID_MAX];
    char identity[256];
    char type[64];
    char smtp[256];
    char by[32];
} rcpt_copy;

/* One claim on a recipient: a batch write (index >= 0) or a stored ObjectState (write < 0). */
typedef struct claim {
    pub_owner_claim c;
    const char *rid;
    int write; /* index into the writes, or -1 */
    int32_t partition;
    const Certsync__V1__ObjectState *obj; /* stored claims */
} claim;

typedef struct extra {
    pub_write w;
    Certsync__V1__ChangeEvent *event; /* decoded from the state (handover); NULL when borrowed */
    pub_decision *dec;
    const Certsync__V1__ChangeEvent *cause; /* the event of the batch write that led to it (borrowed) */
    rcpt_copy rcpt;
    char key[PUB_STATE_KEY_MAX + 1];
    char detail[512];
} extra;

struct pub_ownership {
    size_t n;
    bool *skipped;
    char (*detail)[320];
    rcpt_copy *rcpts; /* per write; rcpts[i].id[0] == 0: unresolved */
    extra *extras;
    size_t n_extras;
    /* planning scratch */
    const char **rids; /* affected recipient ids, sorted, unique */
    size_t n_rids;
    const char **keys; /* batch object keys with a resolved recipient, sorted */
    size_t n_keys;
    claim *claims;
    size_t n_claims, cap_claims;
    cs_err *err; /* out of memory inside the state pass */
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool in_sorted(const char **arr, size_t n, const char *s)
{
    return s && n > 0 && bsearch(&s, arr, n, sizeof(*arr), cmp_str) != NULL;
}

static void rcpt_fill(rcpt_copy *r, const char *id, const char *identity, const char *type, const char *smtp,
                      const char *by)
{
    certsync__v1__recipient__init(&r->pb);
    snprintf(r->id, sizeof r->id, "%s", id ? id : "");
    snprintf(r->identity, sizeof r->identity, "%s", identity ? identity : "");
    snprintf(r->type, sizeof r->type, "%s", type ? type : "");
    snprintf(r->smtp, sizeof r->smtp, "%s", smtp ? smtp : "");
    snprintf(r->by, sizeof r->by, "%s", by ? by : "");
    r->pb.external_directory_object_id = r->id;
    r->pb.identity = r->identity[0] ? r->identity : NULL;
    r->pb.recipient_type_details = r->type[0] ? r->type : NULL;
    r->pb.primary_smtp_address = r->smtp[0] ? r->smtp : NULL;
    r->pb.resolved_by = r->by[0] ? r->by : NULL;
}

static void rcpt_from_pb(rcpt_copy *r, const Certsync__V1__Recipient *in)
{
    rcpt_fill(r, pub_state_recipient_id(in), in->identity, in->recipient_type_details,
              in->primary_smtp_address, in->resolved_by);
}

static bool event_eligible(const Certsync__V1__ChangeEvent *ev)
{
    return ev && ev->kind != CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL &&
           ev->n_user_certificate + ev->n_user_smime_certificate > 0;
}

static bool state_eligible(const Certsync__V1__ObjectState *obj)
{
    if (obj->has_removed && obj->removed)
        return false;
    /* A record written before certificate_values existed counts as eligible only if it can be written. */
    return obj->has_certificate_values ? obj->certificate_values > 0 : obj->has_event;
}

static cs_err *add_claim(pub_ownership *o, const claim *c)
{
    if (o->n_claims == o->cap_claims) {
        size_t cap = o->cap_claims ? o->cap_claims * 2 : 64;
        claim *grown = realloc(o->claims, cap * sizeof(*grown));
        if (!grown)
            return cs_err_new(CS_ERR_NOMEM, CS_ERR_F_RETRIABLE, "out of memory gathering recipient claims");
        o->claims = grown;
        o->cap_claims = cap;
    }
    o->claims[o->n_claims++] = *c;
    return NULL;
}

/* The state pass: every stored object that resolves to an affected recipient and is not in the batch. */
static void gather(void *ctx, int32_t partition, const Certsync__V1__ObjectState *obj)
{
    pub_ownership *o = ctx;
    const char *rid = pub_state_recipient_id(obj->recipient);
    if (o->err || !obj->object_key || !in_sorted(o->rids, o->n_rids, rid) ||
        in_sorted(o->keys, o->n_keys, obj->object_key))
        return;
    claim c = {.c = {.object_key = obj->object_key, .version = obj->version, .eligible = state_eligible(obj)},
               .rid = rid,
               .write = -1,
               .partition = partition,
               .obj = obj};
    o->err = add_claim(o, &c);
}

static extra *new_extra(pub_ownership *o)
{
    extra *x = &o->extras[o->n_extras++];
    memset(x, 0, sizeof(*x));
    x->w.attempt = 1;
    return x;
}

/* A handover: write `c`'s kept event to recipient `target`. False (logged) when it cannot be written. */
static bool plan_handover(pub_ownership *o, const pub_ownership_in *in, const claim *c,
                          const Certsync__V1__Recipient *target, const char *from, const pub_write *why)
{
    const Certsync__V1__ObjectState *obj = c->obj;
    Certsync__V1__ChangeEvent *ev = NULL;
    pub_decision *dec = NULL;
    cs_err *e = NULL;
    if (!obj->has_event) {
        cs_log_warn(FAC,
                    "recipient %s passes to %s, but its state keeps no event to write (written before "
                    "multi-site support): it is written at that object's next change",
                    c->rid, c->c.object_key);
        return false;
    }
    e = cs_event_decode(obj->event.data, obj->event.len, &ev);
    if (!e)
        e = pub_decide_with_policy(ev, NULL, in->policy, in->now, &dec);
    if (e || pub_decision_get_kind(dec) != PUB_DECISION_WRITE) {
        cs_log_warn(FAC, "recipient %s passes to %s, but its kept event cannot be written: %s", c->rid,
                    c->c.object_key, e ? cs_err_message(e) : pub_decision_detail(dec));
        cs_err_free(e);
        pub_decision_free(dec);
        if (ev)
            certsync__v1__change_event__free_unpacked(ev, NULL);
        return false;
    }
    extra *x = new_extra(o);
    x->event = ev;
    x->dec = dec;
    x->cause = why->event;
    x->w.attempt =
        why->attempt > 0 ? why->attempt : 1; /* a not-found target ends in the DLQ like its cause */
    snprintf(x->key, sizeof x->key, "%s", c->c.object_key);
    rcpt_from_pb(&x->rcpt, target);
    snprintf(x->detail, sizeof x->detail, "handover from %s", from ? from : "(none)");
    x->w.object_key = x->key;
    x->w.event = ev;
    x->w.user_certificate = pub_decision_values(dec, CS_CERT_ATTR_USER_CERTIFICATE, &x->w.n_user_certificate);
    x->w.user_smime_certificate =
        pub_decision_values(dec, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, &x->w.n_user_smime_certificate);
    x->w.written_sha256 = pub_decision_sha256(dec);
    x->w.partition = c->partition;
    x->w.offset = obj->has_event_offset ? obj->event_offset : -1;
    x->w.recipient = &x->rcpt.pb;
    return true;
}

/* A clear of `target`, recorded as owned by `owner_key`, for the batch write `why` (its event and partition). */
static void plan_clear(pub_ownership *o, const pub_write *why, const char *owner_key,
                       const Certsync__V1__Recipient *target)
{
    extra *x = new_extra(o);
    x->cause = why->event;
    x->w.attempt = why->attempt > 0 ? why->attempt : 1;
    snprintf(x->key, sizeof x->key, "%s", owner_key);
    rcpt_from_pb(&x->rcpt, target);
    snprintf(x->detail, sizeof x->detail, "cleared: no object with certificates maps to it after %s changed",
             why->object_key);
    x->w.object_key = x->key;
    x->w.event = why->event;
    x->w.clear = 1;
    x->w.written_sha256 = "";
    x->w.partition = why->partition;
    x->w.offset = why->offset;
    x->w.recipient = &x->rcpt.pb;
}

/* Settles recipient `rid`: skips for non-owners in the batch, or one extra write. */
static void settle(pub_ownership *o, const pub_ownership_in *in, const char *rid)
{
    pub_owner_claim cl[CLAIMS_MAX] = {{0}};
    const claim *src[CLAIMS_MAX] = {0};
    size_t n = 0;
    for (size_t k = 0; k < o->n_claims; k++) {
        if (strcmp(o->claims[k].rid, rid) != 0)
            continue;
        if (n == CLAIMS_MAX) {
            cs_log_warn(FAC, "recipient %s has more than %d claims: %s and later ones are left out", rid,
                        CLAIMS_MAX, o->claims[k].c.object_key);
            break;
        }
        cl[n] = o->claims[k].c;
        src[n++] = &o->claims[k];
    }
    const Certsync__V1__RecipientState *rs = pub_state_recipient(in->state, rid);
    size_t best = pub_owner_pick(in->rules, cl, n);
    bool owner_in_batch = best != SIZE_MAX && src[best]->write >= 0;
    for (size_t k = 0; k < n; k++) {
        int w = src[k]->write;
        if (w < 0 || k == best)
            continue;
        o->skipped[w] = true;
        snprintf(o->detail[w], sizeof o->detail[w],
                 "recipient %.64s is owned by %.160s (multi-site precedence: sources.priority, then newest)",
                 rid, cl[best].object_key);
    }
    if (owner_in_batch)
        return; /* its own write goes ahead as decided */
    /* Which batch write touched this recipient (for the event and partition of a clear). */
    const pub_write *why = NULL;
    for (size_t i = 0; i < in->n && !why; i++) {
        if (!o->rcpts[i].id[0])
            continue;
        const Certsync__V1__ObjectState *old = pub_state_object(in->state, in->writes[i].object_key);
        const char *old_rid = old ? pub_state_recipient_id(old->recipient) : NULL;
        if (strcmp(o->rcpts[i].id, rid) == 0 || (old_rid && strcmp(old_rid, rid) == 0))
            why = &in->writes[i];
    }
    const char *applied_owner = rs ? rs->owner_object_key : NULL;
    bool applied_eligible = rs && rs->user_certificate_count + rs->user_smime_certificate_count > 0;
    pub_owner_verdict v = pub_owner_decide(in->rules, cl, n, applied_owner, applied_eligible, NULL);
    const Certsync__V1__Recipient *target = rs && rs->recipient ? rs->recipient : NULL;
    if (!target && best != SIZE_MAX)
        target = src[best]->obj->recipient;
    if (!target || !why)
        return;
    if (v.action == PUB_OWNER_WRITE)
        plan_handover(o, in, src[v.owner], target, applied_owner, why);
    else if (v.action == PUB_OWNER_CLEAR)
        plan_clear(o, why, best != SIZE_MAX ? cl[best].object_key : why->object_key, target);
}

void pub_ownership_free(pub_ownership *o)
{
    if (!o)
        return;
    for (size_t j = 0; j < o->n_extras; j++) {
        pub_decision_free(o->extras[j].dec);
        if (o->extras[j].event)
            certsync__v1__change_event__free_unpacked(o->extras[j].event, NULL);
    }
    free(o->extras);
    free(o->skipped);
    free(o->detail);
    free(o->rcpts);
    free(o->rids);
    free(o->keys);
    free(o->claims);
    cs_err_free(o->err);
    free(o);
}

cs_err *pub_ownership_plan(const pub_ownership_in *in, pub_ownership **out)
{
    cs_err *err = NULL;
    pub_ownership *o = calloc(1, sizeof(*o));
    size_t m = in->n ? in->n : 1;
    *out = NULL;
    if (o) {
        o->n = in->n;
        o->skipped = calloc(m, sizeof(*o->skipped));
        o->detail = calloc(m, sizeof(*o->detail));
        o->rcpts = calloc(m, sizeof(*o->rcpts));
        o->rids = calloc(2 * m, sizeof(*o->rids));
        o->keys = calloc(m, sizeof(*o->keys));
        /* At most one extra per affected recipient. */
        o->extras = calloc(2 * m, sizeof(*o->extras));
    }
    if (!o || !o->skipped || !o->detail || !o->rcpts || !o->rids || !o->keys || !o->extras) {
        err = cs_err_new(CS_ERR_NOMEM, CS_ERR_F_RETRIABLE, "out of memory planning %zu writes", in->n);
        goto cleanup;
    }
    /* Affected recipients: each write's new one, and its old one when it moved (a re-map). */
    for (size_t i = 0; i < in->n; i++) {
        const pub_apply_outcome *r = &in->resolved[i];
        if (!r->recipient_id[0])
            continue; /* unresolved: apply() reports it; its stored claim stays as it was */
        rcpt_fill(&o->rcpts[i], r->recipient_id, r->recipient_identity, r->recipient_type,
                  r->primary_smtp_address, r->resolved_by);
        o->keys[o->n_keys++] = in->writes[i].object_key;
        if (!in->remap_only)
            o->rids[o->n_rids++] = o->rcpts[i].id;
        const Certsync__V1__ObjectState *old = pub_state_object(in->state, in->writes[i].object_key);
        const char *old_rid = old ? pub_state_recipient_id(old->recipient) : NULL;
        if (old_rid && strcmp(old_rid, o->rcpts[i].id) != 0) {
            cs_log_info(FAC, "%s moved from recipient %s to %s: the old one is settled too",
                        in->writes[i].object_key, old_rid, o->rcpts[i].id);
            o->rids[o->n_rids++] = old_rid;
        }
        claim c = {.c = {.object_key = in->writes[i].object_key,
                         .version = in->writes[i].event ? in->writes[i].event->version : NULL,
                         .eligible = event_eligible(in->writes[i].event)},
                   .rid = o->rcpts[i].id,
                   .write = (int)i,
                   .partition = in->writes[i].partition};
        err = add_claim(o, &c);
        if (err)
            goto cleanup;
    }
    qsort(o->keys, o->n_keys, sizeof(*o->keys), cmp_str);
    qsort(o->rids, o->n_rids, sizeof(*o->rids), cmp_str);
    size_t u = 0;
    for (size_t k = 0; k < o->n_rids; k++)
        if (u == 0 || strcmp(o->rids[u - 1], o->rids[k]) != 0)
            o->rids[u++] = o->rids[k];
    o->n_rids = u;
    if (o->n_rids > 0)
        pub_state_each_object(in->state, gather, o);
    if (o->err) {
        err = o->err;
        o->err = NULL;
        goto cleanup;
    }
    for (size_t k = 0; k < o->n_rids; k++)
        settle(o, in, o->rids[k]);
    if (in->remap_only)
        memset(o->skipped, 0, m * sizeof(*o->skipped)); /* already written */
    *out = o;
    o = NULL;
cleanup:
    pub_ownership_free(o);
    return err;
}

bool pub_ownership_skipped(const pub_ownership *o, size_t i)
{
    return i < o->n && o->skipped[i];
}

const char *pub_ownership_detail(const pub_ownership *o, size_t i)
{
    return i < o->n ? o->detail[i] : "";
}

Certsync__V1__Recipient *pub_ownership_recipient(const pub_ownership *o, size_t i)
{
    return i < o->n && o->rcpts[i].id[0] ? &o->rcpts[i].pb : NULL;
}

size_t pub_ownership_extra_count(const pub_ownership *o)
{
    return o->n_extras;
}

const pub_write *pub_ownership_extra(const pub_ownership *o, size_t j)
{
    return j < o->n_extras ? &o->extras[j].w : NULL;
}

const Certsync__V1__ChangeEvent *pub_ownership_extra_cause(const pub_ownership *o, size_t j)
{
    return j < o->n_extras ? o->extras[j].cause : NULL;
}

const char *pub_ownership_extra_detail(const pub_ownership *o, size_t j)
{
    return j < o->n_extras ? o->extras[j].detail : "";
}
