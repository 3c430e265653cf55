/*
 * pub_decide: the version gate, pruning and duplicate check (rules in pub_decide.h).
 */
#include "pub_decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_buf.h"

#define DETAIL_MAX 512

/* The kept values of one attribute: pointers into the event. */
typedef struct kept_list {
    Certsync__V1__CertificateValue **values; /* for the content hash framing */
    ProtobufCBinaryData *raw;                /* for the applier */
    size_t n;
} kept_list;

/* One value the policy refused: the log line and the failed rules. */
typedef struct refusal {
    char *message; /* cs_policy_verdict_message() */
    cs_policy_rules rules;
} refusal;

struct pub_decision {
    pub_decision_kind kind;
    cs_version_order order;
    kept_list kept[2]; /* indexed by cs_cert_attr */
    Certsync__V1__DroppedValue **dropped;
    size_t n_dropped;
    char sha256[CS_SHA256_HEX_LEN];
    Certsync__V1__DeadLetterReason dl_reason;
    char detail[DETAIL_MAX];
    refusal *refusals;
    size_t n_refusals;
    cs_policy_rules refused_rules; /* union, for the detail line */
};

/* One candidate during pruning. */
typedef struct candidate {
    size_t index; /* in the event's list */
    cs_cert_problems problems;
    int64_t not_after;
    bool keep;
} candidate;

const char *pub_decision_kind_name(pub_decision_kind kind)
{
    switch (kind) {
    case PUB_DECISION_WRITE:
        return "write";
    case PUB_DECISION_CLEAR:
        return "clear";
    case PUB_DECISION_SKIP_STALE:
        return "skip_stale";
    case PUB_DECISION_SKIP_DUPLICATE:
        return "skip_duplicate";
    case PUB_DECISION_DEAD_LETTER:
        return "dead_letter";
    }
    return "unknown";
}

static const char *attr_name(cs_cert_attr attr)
{
    return attr == CS_CERT_ATTR_USER_CERTIFICATE ? "userCertificate" : "userSMIMECertificate";
}

static void dropped_free(Certsync__V1__DroppedValue *dv)
{
    if (!dv)
        return;
    free(dv->attribute);
    free(dv->sha256);
    free(dv->reason);
    free(dv->problems);
    free(dv);
}

void pub_decision_free(pub_decision *d)
{
    if (!d)
        return;
    for (size_t a = 0; a < 2; a++) {
        free(d->kept[a].values);
        free(d->kept[a].raw);
    }
    for (size_t i = 0; i < d->n_dropped; i++)
        dropped_free(d->dropped[i]);
    free(d->dropped);
    for (size_t i = 0; i < d->n_refusals; i++)
        free(d->refusals[i].message);
    free(d->refusals);
    free(d);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

/* Records one dropped value: the reason text and the problem set (proto CertProblem = cs problem + 1). */
static cs_err *add_dropped(pub_decision *d, cs_cert_attr attr, const Certsync__V1__CertificateValue *v,
                           cs_cert_problems problems, const char *reason)
{
    Certsync__V1__DroppedValue *dv = NULL;
    Certsync__V1__DroppedValue **grown = realloc(d->dropped, (d->n_dropped + 1) * sizeof(*grown));
    if (!grown)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory recording a dropped value");
    d->dropped = grown;
    dv = calloc(1, sizeof(*dv));
    if (!dv)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory recording a dropped value");
    certsync__v1__dropped_value__init(dv);
    char sha[CS_SHA256_HEX_LEN];
    cs_sha256_hex(v->raw.data, v->raw.len, sha);
    dv->attribute = dup_str(attr_name(attr));
    dv->sha256 = dup_str(sha);
    dv->reason = dup_str(reason);
    dv->problems = calloc(CS_CERT_PROBLEM_COUNT, sizeof(*dv->problems));
    if (!dv->attribute || !dv->sha256 || !dv->reason || !dv->problems) {
        dropped_free(dv);
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory recording a dropped value");
    }
    for (unsigned p = 0; p < CS_CERT_PROBLEM_COUNT; p++)
        if (problems & CS_CERT_PROBLEM_BIT(p))
            dv->problems[dv->n_problems++] = (Certsync__V1__CertProblem)(p + 1);
    d->dropped[d->n_dropped++] = dv;
    return NULL;
}

/* Newest notAfter first; equal ones keep directory order (stable by index). */
static int by_not_after_desc(const void *a, const void *b)
{
    const candidate *x = *(candidate *const *)a;
    const candidate *y = *(candidate *const *)b;
    if (x->not_after != y->not_after)
        return x->not_after > y->not_after ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index ? 1 : 0);
}

/*
 * Fills d->kept[attr] from `values`: all of them when there are at most PUB_DECIDE_MAX_VALUES, otherwise
 * the pruned set (see pub_decide.h), recording what was dropped.
 */
static cs_err *prune_attr(pub_decision *d, cs_cert_attr attr, Certsync__V1__CertificateValue *const *values,
                          size_t n, int64_t now)
{
    cs_err *err = NULL;
    candidate *cands = NULL;
    candidate **valid = NULL;
    kept_list *k = &d->kept[attr];
    if (n == 0)
        return NULL;
    k->values = calloc(n, sizeof(*k->values));
    k->raw = calloc(n, sizeof(*k->raw));
    cands = calloc(n, sizeof(*cands));
    valid = calloc(n, sizeof(*valid));
    if (!k->values || !k->raw || !cands || !valid) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory pruning %zu values", n);
        goto cleanup;
    }
    size_t n_valid = 0;
    for (size_t i = 0; i < n; i++) {
        cands[i].index = i;
        cands[i].keep = n <= PUB_DECIDE_MAX_VALUES;
        if (n <= PUB_DECIDE_MAX_VALUES)
            continue;
        /* Over the limit: re-judge at `now` from the raw bytes, never from the event's stale summary. */
        cs_cert_value *cv = NULL;
        err = cs_cert_value_parse(attr, values[i]->raw.data, values[i]->raw.len, now, &cv);
        if (err)
            goto cleanup;
        cands[i].problems = cs_cert_value_verdict(cv);
        const cs_cert_info *user = cs_cert_value_user_cert(cv);
        cands[i].not_after = user ? user->not_after : 0;
        cs_cert_value_free(cv);
        if (cands[i].problems == 0)
            valid[n_valid++] = &cands[i];
    }
    if (n > PUB_DECIDE_MAX_VALUES) {
        qsort(valid, n_valid, sizeof(*valid), by_not_after_desc);
        for (size_t i = 0; i < n_valid && i < PUB_DECIDE_MAX_VALUES; i++)
            valid[i]->keep = true;
    }
    for (size_t i = 0; i < n; i++) {
        if (cands[i].keep) {
            k->values[k->n] = values[i];
            k->raw[k->n] = values[i]->raw;
            k->n++;
            continue;
        }
        char reason[160];
        if (cands[i].problems) {
            cs_buf names;
            cs_buf_init(&names, 128);
            if (cs_cert_problems_format(cands[i].problems, &names))
                snprintf(reason, sizeof(reason), "%s", cs_buf_str(&names));
            else
                snprintf(reason, sizeof(reason), "unusable");
            cs_buf_free(&names);
        } else {
            snprintf(reason, sizeof(reason), "over the %d-value limit (older notAfter)",
                     PUB_DECIDE_MAX_VALUES);
        }
        err = add_dropped(d, attr, values[i], cands[i].problems, reason);
        if (err)
            goto cleanup;
    }
cleanup:
    free(cands);
    free(valid);
    return err;
}

/* The refused rules' names, comma separated ("" when none). */
static void refused_rules_text(const pub_decision *d, char *out, size_t cap)
{
    cs_buf b;
    cs_buf_init(&b, cap);
    out[0] = '\0';
    if (cs_policy_rules_format(d->refused_rules, &b))
        snprintf(out, cap, "%s", cs_buf_str(&b));
    cs_buf_free(&b);
}

/* Who the event is about, for refusal messages: UPN, else DN, else the object id. */
static const char *user_label(const Certsync__V1__ChangeEvent *event)
{
    const Certsync__V1__Identity *id = event->identity;
    if (id && id->user_principal_name && *id->user_principal_name)
        return id->user_principal_name;
    if (id && id->dn && *id->dn)
        return id->dn;
    if (id && id->object_id && *id->object_id)
        return id->object_id;
    return NULL;
}

/*
 * The policy step of one attribute: judges every value at `now` against the recipient's addresses; a refused
 * value becomes a DroppedValue (reason "policy: <rules>", the rules as problems) and a refusal; the accepted
 * ones are put in `passed` (capacity n) in directory order, *n_passed their count.
 */
static cs_err *policy_filter(pub_decision *d, const cs_policy *policy, cs_cert_attr attr,
                             Certsync__V1__CertificateValue *const *values, size_t n,
                             const cs_policy_addresses *addrs, const char *label, int64_t now,
                             Certsync__V1__CertificateValue **passed, size_t *n_passed)
{
    cs_err *err = NULL;
    cs_policy_verdict *v = NULL;
    *n_passed = 0;
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *raw = &values[i]->raw;
        err = cs_policy_check_value(policy, attr, raw->data, raw->len, (const char *const *)addrs->v,
                                    addrs->n, now, label, &v);
        if (err)
            goto cleanup;
        if (cs_policy_verdict_ok(v)) {
            passed[(*n_passed)++] = values[i];
        } else {
            err = add_dropped(d, attr, values[i], cs_policy_verdict_problems(v),
                              cs_policy_verdict_dropped_reason(v));
            if (err)
                goto cleanup;
            refusal *grown = realloc(d->refusals, (d->n_refusals + 1) * sizeof(*grown));
            if (!grown) {
                err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory recording a policy refusal");
                goto cleanup;
            }
            d->refusals = grown;
            grown[d->n_refusals].message = dup_str(cs_policy_verdict_message(v));
            grown[d->n_refusals].rules = cs_policy_verdict_rules(v);
            if (!grown[d->n_refusals].message) {
                err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory recording a policy refusal");
                goto cleanup;
            }
            d->refused_rules |= grown[d->n_refusals].rules;
            d->n_refusals++;
        }
        cs_policy_verdict_free(v);
        v = NULL;
    }
cleanup:
    cs_policy_verdict_free(v);
    return err;
}

/* Policy (when given and enabled), then pruning, for one attribute. */
static cs_err *judge_attr(pub_decision *d, const cs_policy *policy, cs_cert_attr attr,
                          Certsync__V1__CertificateValue *const *values, size_t n,
                          const cs_policy_addresses *addrs, const char *label, int64_t now)
{
    cs_err *err = NULL;
    Certsync__V1__CertificateValue **passed = NULL;
    size_t n_passed = 0;
    if (n == 0)
        return NULL;
    if (!policy)
        return prune_attr(d, attr, values, n, now);
    passed = calloc(n, sizeof(*passed));
    if (!passed)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory judging %zu values", n);
    err = policy_filter(d, policy, attr, values, n, addrs, label, now, passed, &n_passed);
    if (!err)
        err = prune_attr(d, attr, passed, n_passed, now);
    free(passed);
    return err;
}

/* SHA-256 of exactly what is written, in cs_event_content_sha256's framing, over the kept values. */
static cs_err *written_sha(pub_decision *d)
{
    Certsync__V1__ChangeEvent shallow;
    certsync__v1__change_event__init(&shallow);
    shallow.user_certificate = d->kept[CS_CERT_ATTR_USER_CERTIFICATE].values;
    shallow.n_user_certificate = d->kept[CS_CERT_ATTR_USER_CERTIFICATE].n;
    shallow.user_smime_certificate = d->kept[CS_CERT_ATTR_USER_SMIME_CERTIFICATE].values;
    shallow.n_user_smime_certificate = d->kept[CS_CERT_ATTR_USER_SMIME_CERTIFICATE].n;
    return cs_event_content_sha256(&shallow, d->sha256);
}

cs_err *pub_decide(const Certsync__V1__ChangeEvent *event, const pub_applied_view *applied, int64_t now,
                   pub_decision **out)
{
    return pub_decide_with_policy(event, applied, NULL, now, out);
}

cs_err *pub_decide_with_policy(const Certsync__V1__ChangeEvent *event, const pub_applied_view *applied,
                               const cs_policy *policy, int64_t now, pub_decision **out)
{
    cs_err *err = NULL;
    pub_decision *d = NULL;
    cs_policy_addresses addrs = {0};
    if (!event || !out)
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "pub_decide: event and out are required");
    *out = NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory deciding an event");
    d->order = CS_VERSION_NEWER;
    if (applied && applied->version) {
        d->order = cs_version_compare(event->version, applied->version);
        if (d->order == CS_VERSION_OLDER || d->order == CS_VERSION_EQUAL) {
            d->kind = PUB_DECISION_SKIP_STALE;
            snprintf(d->detail, sizeof(d->detail), "version %s than the applied one",
                     d->order == CS_VERSION_OLDER ? "older" : "equal to");
            goto done;
        }
    }
    if (event->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL) {
        d->kind = PUB_DECISION_CLEAR;
        snprintf(d->detail, sizeof(d->detail), "removal: clear both attributes");
    } else {
        const char *label = user_label(event);
        if (policy && !cs_policy_enabled(policy))
            policy = NULL; /* policy.enabled: false writes every value */
        if (policy) {
            /* The recipient's addresses as the directory gives them (see pub_decide.h for why not Exchange's). */
            const Certsync__V1__Identity *idp = event->identity;
            cs_policy_identity id = {0};
            if (idp) {
                id.mail = idp->mail;
                id.proxies = (const char *const *)idp->proxy_addresses;
                id.n_proxies = idp->n_proxy_addresses;
                id.upn = idp->user_principal_name;
            }
            err = cs_policy_addresses_collect(policy, &id, &addrs);
            if (err)
                goto cleanup;
        }
        err = judge_attr(d, policy, CS_CERT_ATTR_USER_CERTIFICATE, event->user_certificate,
                         event->n_user_certificate, &addrs, label, now);
        if (!err)
            err = judge_attr(d, policy, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, event->user_smime_certificate,
                             event->n_user_smime_certificate, &addrs, label, now);
        if (err)
            goto cleanup;
        size_t had = event->n_user_certificate + event->n_user_smime_certificate;
        size_t kept = d->kept[0].n + d->kept[1].n;
        if (had > 0 && kept == 0) {
            d->kind = PUB_DECISION_DEAD_LETTER;
            d->dl_reason = CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_NOTHING_VALID;
            char rules[256] = "";
            refused_rules_text(d, rules, sizeof(rules));
            snprintf(d->detail, sizeof(d->detail),
                     "nothing valid to write: all %zu values were dropped (%zu refused by policy%s%s, the "
                     "others expired or unusable); renew the user's certificates in the directory",
                     had, d->n_refusals, rules[0] ? ": " : "", rules);
            goto done;
        }
        d->kind = PUB_DECISION_WRITE;
        snprintf(d->detail, sizeof(d->detail),
                 "write %zu userCertificate and %zu userSMIMECertificate values, %zu dropped (%zu refused by "
                 "policy)",
                 d->kept[0].n, d->kept[1].n, d->n_dropped, d->n_refusals);
    }
    err = written_sha(d);
    if (err)
        goto cleanup;
    if (applied && applied->written_sha256 && strcmp(applied->written_sha256, d->sha256) == 0) {
        d->kind = PUB_DECISION_SKIP_DUPLICATE;
        snprintf(d->detail, sizeof(d->detail), "same content as already written (sha256 %.16s...)",
                 d->sha256);
    }
done:
    if (d->kind != PUB_DECISION_WRITE && d->kind != PUB_DECISION_CLEAR) {
        /* Skips and dead letters write nothing: do not hand out values. */
        for (size_t a = 0; a < 2; a++)
            d->kept[a].n = 0;
        if (d->kind != PUB_DECISION_SKIP_DUPLICATE)
            d->sha256[0] = '\0';
    }
    *out = d;
    d = NULL;
cleanup:
    cs_policy_addresses_free(&addrs);
    pub_decision_free(d);
    return err;
}

pub_decision_kind pub_decision_get_kind(const pub_decision *d)
{
    return d->kind;
}

cs_version_order pub_decision_order(const pub_decision *d)
{
    return d->order;
}

const ProtobufCBinaryData *pub_decision_values(const pub_decision *d, cs_cert_attr attr, size_t *n)
{
    size_t a = attr == CS_CERT_ATTR_USER_CERTIFICATE ? 0 : 1;
    *n = d->kept[a].n;
    return d->kept[a].n ? d->kept[a].raw : NULL;
}

Certsync__V1__DroppedValue *const *pub_decision_dropped(const pub_decision *d, size_t *n)
{
    *n = d->n_dropped;
    return d->dropped;
}

const char *pub_decision_sha256(const pub_decision *d)
{
    return d->sha256;
}

Certsync__V1__DeadLetterReason pub_decision_dead_letter_reason(const pub_decision *d)
{
    return d->dl_reason;
}

const char *pub_decision_detail(const pub_decision *d)
{
    return d->detail;
}

Certsync__V1__Outcome pub_decision_outcome(const pub_decision *d)
{
    switch (d->kind) {
    case PUB_DECISION_WRITE:
        return CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED;
    case PUB_DECISION_CLEAR:
        return CERTSYNC__V1__OUTCOME__OUTCOME_CLEARED;
    case PUB_DECISION_SKIP_STALE:
        return CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_STALE;
    case PUB_DECISION_SKIP_DUPLICATE:
        return CERTSYNC__V1__OUTCOME__OUTCOME_SKIPPED_DUPLICATE;
    case PUB_DECISION_DEAD_LETTER:
        return CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED;
    }
    return CERTSYNC__V1__OUTCOME__OUTCOME_UNSPECIFIED;
}

size_t pub_decision_refusal_count(const pub_decision *d)
{
    return d->n_refusals;
}

const char *pub_decision_refusal_message(const pub_decision *d, size_t i)
{
    return i < d->n_refusals ? d->refusals[i].message : "";
}

cs_policy_rules pub_decision_refusal_rules(const pub_decision *d, size_t i)
{
    return i < d->n_refusals ? d->refusals[i].rules : 0;
}
