/*
 * cs_readiness: S/MIME readiness of one user (rules in cs_readiness.h).
 */
#include "cs_readiness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DETAIL_MAX 1024
#define DAY_SECONDS INT64_C(86400)

static const char *const reason_names[CS_READINESS_REASON_COUNT] = {
    "ok", "no_usable_certificate", "address_mismatch", "expired", "expiring_soon", "over_15_values",
};

struct cs_readiness {
    cs_readiness_reason reason;
    char *label;
    bool has_attr;
    cs_cert_attr attr;
    char fingerprint[65];
    int64_t not_after;
    char *detail;
};

const char *cs_readiness_reason_name(cs_readiness_reason r)
{
    if ((unsigned)r >= CS_READINESS_REASON_COUNT)
        return "unknown";
    return reason_names[r];
}

static const char *attr_name(cs_cert_attr a)
{
    return a == CS_CERT_ATTR_USER_CERTIFICATE ? "userCertificate" : "userSMIMECertificate";
}

static void format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "@%lld", (long long)t);
}

/* The outcome of judging the values of one attribute. */
typedef struct attr_outcome {
    cs_readiness_reason reason;
    char fingerprint[65];
    int64_t not_after;
    cs_policy_rules first_rules; /* failed rules of the first value, for no_usable_certificate */
    char first_fp[65];
    bool first_fit_encryption;
    size_t n;
} attr_outcome;

/* Rules that make a certificate unusable whatever the date and the recipient. */
#define TIME_OR_ADDRESS                                                                                      \
    (CS_POLICY_RULE_BIT(CS_POLICY_RULE_NOT_YET_VALID) | CS_POLICY_RULE_BIT(CS_POLICY_RULE_EXPIRED) |         \
     CS_POLICY_RULE_BIT(CS_POLICY_RULE_ADDRESS_MISMATCH))

/*
 * Judges the values of one attribute: the best good certificate (latest notAfter), else the
 * best valid one for another address, else the latest expired one.
 */
static cs_err *judge_attr(const cs_policy *policy, const cs_readiness_input *in, cs_cert_attr attr,
                          const cs_readiness_value *vals, size_t n, attr_outcome *o)
{
    cs_err *err = NULL;
    int64_t soon =
        (int64_t)(in->expiring_soon_days ? in->expiring_soon_days : CS_READINESS_DEFAULT_EXPIRING_SOON_DAYS) *
        DAY_SECONDS;
    /* best candidate per class: 0 good, 1 address mismatch, 2 expired / not yet valid */
    bool have[3] = {false, false, false};
    int64_t best_na[3] = {0, 0, 0};
    char best_fp[3][65];

    memset(o, 0, sizeof(*o));
    o->n = n;
    for (size_t i = 0; i < n; i++) {
        cs_policy_verdict *v = NULL;
        err = cs_policy_check_value(policy, attr, vals[i].der, vals[i].len, in->addresses, in->n_addresses,
                                    in->now, in->label, &v);
        if (err)
            return err;
        cs_policy_rules rules = cs_policy_verdict_rules(v);
        if (i == 0) {
            o->first_rules = rules;
            o->first_fit_encryption = cs_policy_verdict_fit_encryption(v);
            memcpy(o->first_fp, cs_policy_verdict_fingerprint(v), sizeof o->first_fp);
        }
        if (cs_policy_verdict_fit_encryption(v) && (rules & ~(cs_policy_rules)TIME_OR_ADDRESS) == 0) {
            int cls;
            if (rules & (CS_POLICY_RULE_BIT(CS_POLICY_RULE_EXPIRED) |
                         CS_POLICY_RULE_BIT(CS_POLICY_RULE_NOT_YET_VALID)))
                cls = 2;
            else if (rules & CS_POLICY_RULE_BIT(CS_POLICY_RULE_ADDRESS_MISMATCH))
                cls = 1;
            else
                cls = 0;
            int64_t na = cs_policy_verdict_not_after(v);
            if (!have[cls] || na > best_na[cls]) {
                have[cls] = true;
                best_na[cls] = na;
                memcpy(best_fp[cls], cs_policy_verdict_fingerprint(v), sizeof best_fp[cls]);
            }
        }
        cs_policy_verdict_free(v);
    }
    int cls = -1;
    if (have[0]) {
        cls = 0;
        o->reason = best_na[0] - in->now <= soon ? CS_READINESS_EXPIRING_SOON : CS_READINESS_OK;
    } else if (have[1]) {
        cls = 1;
        o->reason = CS_READINESS_ADDRESS_MISMATCH;
    } else if (have[2]) {
        cls = 2;
        o->reason = CS_READINESS_EXPIRED;
    } else {
        o->reason = CS_READINESS_NO_USABLE_CERTIFICATE;
    }
    if (cls >= 0) {
        memcpy(o->fingerprint, best_fp[cls], sizeof o->fingerprint);
        o->not_after = best_na[cls];
    }
    return NULL;
}

/* The sentence for an attribute's outcome: why, and the fix. */
static void describe(cs_buf *b, cs_cert_attr attr, const attr_outcome *o, const cs_readiness_input *in)
{
    char t[32];
    format_time(o->not_after, t);
    switch (o->reason) {
    case CS_READINESS_OK:
        cs_buf_printf(b, "Outlook finds a valid encryption certificate in %s (valid until %s)",
                      attr_name(attr), t);
        break;
    case CS_READINESS_EXPIRING_SOON:
        cs_buf_printf(b,
                      "the newest valid encryption certificate in %s expires on %s (in %lld days): the user "
                      "should renew it now",
                      attr_name(attr), t, (long long)((o->not_after - in->now) / DAY_SECONDS));
        break;
    case CS_READINESS_ADDRESS_MISMATCH:
        cs_buf_printf(
            b,
            "the encryption certificates in %s are for other addresses than the user's %zu: the user "
            "must enrol a certificate for their own address",
            attr_name(attr), in->n_addresses);
        break;
    case CS_READINESS_EXPIRED:
        cs_buf_printf(
            b, "every encryption certificate in %s has expired (the newest on %s): the user must renew it",
            attr_name(attr), t);
        break;
    case CS_READINESS_NO_USABLE_CERTIFICATE:
        if (o->n == 0) {
            cs_buf_add_str(
                b, "no certificate in userCertificate or userSMIMECertificate: the user must enrol an "
                   "S/MIME certificate");
        } else {
            cs_buf_printf(
                b, "none of the %zu values in %s is usable for encryption (the first, %.16s, fails: ", o->n,
                attr_name(attr), o->first_fp);
            if (o->first_rules & ~(cs_policy_rules)TIME_OR_ADDRESS)
                cs_policy_rules_format(o->first_rules & ~(cs_policy_rules)TIME_OR_ADDRESS, b);
            else if (!o->first_fit_encryption)
                cs_buf_add_str(b, "not fit for encryption");
            else
                cs_policy_rules_format(o->first_rules, b);
            cs_buf_add_str(b, "): the user must enrol an S/MIME encryption certificate");
        }
        break;
    case CS_READINESS_OVER_15_VALUES:
        break;
    }
}

cs_err *cs_readiness_judge(const cs_policy *policy, const cs_readiness_input *in, cs_readiness **out)
{
    cs_err *err = NULL;
    cs_readiness *r = NULL;
    attr_outcome used, other;
    cs_buf detail;
    cs_buf_init(&detail, DETAIL_MAX);

    if (!policy || !in || !out || (!in->user_certificate && in->n_user_certificate) ||
        (!in->user_smime_certificate && in->n_user_smime_certificate) || (!in->addresses && in->n_addresses))
        return cs_err_new(CS_ERR_INVALID_INPUT, 0, "cs_readiness_judge: policy, input or out is NULL");
    *out = NULL;
    if (in->n_user_certificate > CS_READINESS_MAX_INPUT_VALUES ||
        in->n_user_smime_certificate > CS_READINESS_MAX_INPUT_VALUES)
        return cs_err_new(
            CS_ERR_INVALID_INPUT, 0,
            "readiness of %s: %zu userCertificate and %zu userSMIMECertificate values, more than "
            "%d: the directory cannot hold this many, check the input",
            in->label ? in->label : "unknown user", in->n_user_certificate, in->n_user_smime_certificate,
            CS_READINESS_MAX_INPUT_VALUES);
    r = calloc(1, sizeof(*r));
    if (!r) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "readiness: out of memory");
        goto cleanup;
    }
    r->label = strdup(in->label ? in->label : "");
    if (!r->label) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "readiness: out of memory");
        goto cleanup;
    }

    bool smime = in->n_user_smime_certificate > 0;
    r->has_attr = smime || in->n_user_certificate > 0;
    r->attr = smime ? CS_CERT_ATTR_USER_SMIME_CERTIFICATE : CS_CERT_ATTR_USER_CERTIFICATE;
    if (smime)
        err =
            judge_attr(policy, in, r->attr, in->user_smime_certificate, in->n_user_smime_certificate, &used);
    else
        err = judge_attr(policy, in, r->attr, in->user_certificate, in->n_user_certificate, &used);
    if (err)
        goto cleanup;
    r->reason = used.reason;
    memcpy(r->fingerprint, used.fingerprint, sizeof r->fingerprint);
    r->not_after = used.not_after;

    if (in->n_user_certificate > CS_READINESS_MAX_VALUES ||
        in->n_user_smime_certificate > CS_READINESS_MAX_VALUES) {
        /* Exchange refuses the whole list: whatever is in it, Outlook finds nothing new. */
        r->reason = CS_READINESS_OVER_15_VALUES;
        cs_buf_printf(
            &detail,
            "%s holds %zu values, Exchange Online keeps at most %d: remove expired and unused "
            "certificates from the directory (certsync prunes to the newest valid ones when it publishes)",
            in->n_user_smime_certificate > CS_READINESS_MAX_VALUES ? "userSMIMECertificate"
                                                                   : "userCertificate",
            in->n_user_smime_certificate > CS_READINESS_MAX_VALUES ? in->n_user_smime_certificate
                                                                   : in->n_user_certificate,
            CS_READINESS_MAX_VALUES);
    } else {
        describe(&detail, r->attr, &used, in);
    }

    /* Outlook's preference hides a good userCertificate behind a bad userSMIMECertificate: say so. */
    if (smime && in->n_user_certificate > 0 && r->reason != CS_READINESS_OK &&
        r->reason != CS_READINESS_OVER_15_VALUES) {
        err = judge_attr(policy, in, CS_CERT_ATTR_USER_CERTIFICATE, in->user_certificate,
                         in->n_user_certificate, &other);
        if (err)
            goto cleanup;
        if (other.reason == CS_READINESS_OK || other.reason == CS_READINESS_EXPIRING_SOON)
            cs_buf_printf(&detail,
                          "; userCertificate holds a usable certificate (%.16s) but Outlook prefers "
                          "userSMIMECertificate when it has values: renew or remove the userSMIMECertificate "
                          "values",
                          other.fingerprint);
    }
    r->detail = cs_buf_take(&detail);
    if (!r->detail) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "readiness: out of memory");
        goto cleanup;
    }
    *out = r;
    r = NULL;

cleanup:
    cs_buf_free(&detail);
    cs_readiness_free(r);
    return err;
}

void cs_readiness_free(cs_readiness *r)
{
    if (!r)
        return;
    free(r->label);
    free(r->detail);
    free(r);
}

cs_readiness_reason cs_readiness_get_reason(const cs_readiness *r)
{
    return r ? r->reason : CS_READINESS_NO_USABLE_CERTIFICATE;
}

cs_cert_attr cs_readiness_attribute(const cs_readiness *r, bool *has)
{
    if (has)
        *has = r && r->has_attr;
    return r ? r->attr : CS_CERT_ATTR_USER_CERTIFICATE;
}

const char *cs_readiness_fingerprint(const cs_readiness *r)
{
    return r ? r->fingerprint : "";
}

int64_t cs_readiness_not_after(const cs_readiness *r)
{
    return r ? r->not_after : 0;
}

const char *cs_readiness_detail(const cs_readiness *r)
{
    return r && r->detail ? r->detail : "";
}

/* ------------------------------------------------------------------ output */

#define COL_USER 40
#define COL_REASON 22
#define COL_ATTR 20
#define COL_TIME 20
#define COL_FP 16

/* The printable columns of a result. */
typedef struct row {
    const char *user, *reason, *attr, *fp, *detail;
    char not_after[32];
} row;

static void row_of(const cs_readiness *r, row *w)
{
    bool has = false;
    cs_cert_attr a = cs_readiness_attribute(r, &has);
    w->user = r->label;
    w->reason = cs_readiness_reason_name(r->reason);
    w->attr = has ? attr_name(a) : "";
    w->fp = r->fingerprint;
    w->detail = cs_readiness_detail(r);
    if (r->fingerprint[0])
        format_time(r->not_after, w->not_after);
    else
        w->not_after[0] = '\0';
}

/* One table cell: the value padded to `width`, or whole plus one space when longer. */
static bool cell(cs_buf *out, const char *s, int width)
{
    if ((int)strlen(s) >= width)
        return cs_buf_printf(out, "%s ", s);
    return cs_buf_printf(out, "%-*s", width, s);
}

/* Appends one line, or nothing when `out` cannot take all of it. */
static bool table_line(cs_buf *out, const char *user, const char *reason, const char *attr, const char *t,
                       const char *fp, const char *detail)
{
    cs_buf line;
    cs_buf_init(&line, out->max);
    char fp16[COL_FP + 1];
    snprintf(fp16, sizeof fp16, "%s", fp);
    bool ok = cell(&line, user, COL_USER) && cell(&line, reason, COL_REASON) && cell(&line, attr, COL_ATTR) &&
              cell(&line, t, COL_TIME) && cell(&line, fp16, COL_FP + 1) &&
              cs_buf_printf(&line, "%s\n", detail) && cs_buf_add(out, cs_buf_str(&line), cs_buf_len(&line));
    cs_buf_free(&line);
    return ok;
}

bool cs_readiness_table_header(cs_buf *out)
{
    return table_line(out, "USER", "REASON", "ATTRIBUTE", "NOT_AFTER", "CERTIFICATE", "DETAIL");
}

bool cs_readiness_table_row(const cs_readiness *r, cs_buf *out)
{
    if (!r)
        return false;
    row w;
    row_of(r, &w);
    return table_line(out, w.user, w.reason, w.attr, w.not_after, w.fp, w.detail);
}

/* One RFC 4180 field, with the formula guard. */
static bool csv_field(cs_buf *out, const char *s, bool last)
{
    bool guard = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r';
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote && !cs_buf_add_str(out, "\""))
        return false;
    if (guard && !cs_buf_add_str(out, "'"))
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '"' && !cs_buf_add_str(out, "\"\""))
            return false;
        if (*p != '"' && !cs_buf_add(out, p, 1))
            return false;
    }
    if (quote && !cs_buf_add_str(out, "\""))
        return false;
    return cs_buf_add_str(out, last ? "\r\n" : ",");
}

static bool csv_line(cs_buf *out, const char *const f[6])
{
    cs_buf line;
    cs_buf_init(&line, out->max);
    bool ok = true;
    for (size_t i = 0; ok && i < 6; i++)
        ok = csv_field(&line, f[i], i == 5);
    ok = ok && cs_buf_add(out, cs_buf_str(&line), cs_buf_len(&line));
    cs_buf_free(&line);
    return ok;
}

bool cs_readiness_csv_header(cs_buf *out)
{
    const char *const f[6] = {"user", "reason", "attribute", "not_after", "certificate_sha256", "detail"};
    return csv_line(out, f);
}

bool cs_readiness_csv_row(const cs_readiness *r, cs_buf *out)
{
    if (!r)
        return false;
    row w;
    row_of(r, &w);
    const char *const f[6] = {w.user, w.reason, w.attr, w.not_after, w.fp, w.detail};
    return csv_line(out, f);
}

/* ------------------------------------------------------------------ metrics */

void cs_readiness_tally_add(cs_readiness_tally *t, const cs_readiness *r)
{
    if (t && r && (unsigned)r->reason < CS_READINESS_REASON_COUNT)
        t->users[r->reason]++;
}

cs_err *cs_readiness_metrics_register(cs_metrics *reg, cs_metric **out)
{
    static const char *const labels[] = {"reason", NULL};
    return cs_metrics_register(reg,
                               &(cs_metric_def){.type = CS_METRIC_GAUGE,
                                                .name = "certsync_smime_readiness_users",
                                                .help = "Users by S/MIME readiness reason (ok = Outlook can "
                                                        "encrypt to them), from the last readiness pass.",
                                                .labels = labels},
                               out);
}

void cs_readiness_tally_publish(const cs_readiness_tally *t, cs_metric *fam)
{
    for (unsigned i = 0; t && fam && i < CS_READINESS_REASON_COUNT; i++)
        cs_metrics_gauge_set(cs_metrics_gauge_with(fam, reason_names[i]), (double)t->users[i]);
}
