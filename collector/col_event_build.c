/*
 * col_event_build: ChangeEvent construction (see col_event_build.h).
 */
#include "col_event_build.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "cs_event.h"
#include "cs_log.h"

#define FAC "event"

/* strdup that reports failure through *ok (so a chain of copies checks once). */
static char *dup_opt(const char *s, bool *ok)
{
    char *d;
    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *ok = false;
    return d;
}

Certsync__V1__CertProblem col_event_cert_problem(cs_cert_problem p)
{
    return (Certsync__V1__CertProblem)((int)p + 1);
}

uint32_t col_event_key_usage(uint32_t b)
{
    static const struct {
        uint32_t cs, ossl;
    } map[] = {
        {CS_CERT_KU_DIGITAL_SIGNATURE, KU_DIGITAL_SIGNATURE},
        {CS_CERT_KU_NON_REPUDIATION, KU_NON_REPUDIATION},
        {CS_CERT_KU_KEY_ENCIPHERMENT, KU_KEY_ENCIPHERMENT},
        {CS_CERT_KU_DATA_ENCIPHERMENT, KU_DATA_ENCIPHERMENT},
        {CS_CERT_KU_KEY_AGREEMENT, KU_KEY_AGREEMENT},
        {CS_CERT_KU_KEY_CERT_SIGN, KU_KEY_CERT_SIGN},
        {CS_CERT_KU_CRL_SIGN, KU_CRL_SIGN},
        {CS_CERT_KU_ENCIPHER_ONLY, KU_ENCIPHER_ONLY},
        {CS_CERT_KU_DECIPHER_ONLY, KU_DECIPHER_ONLY},
    };
    uint32_t out = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (b & map[i].cs)
            out |= map[i].ossl;
    }
    return out;
}

/* Problems set -> newly allocated array of proto enums. */
static bool problems_to_proto(cs_cert_problems set, Certsync__V1__CertProblem **out, size_t *n_out)
{
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    for (unsigned p = 0; p < CS_CERT_PROBLEM_COUNT; p++)
        n += (set & CS_CERT_PROBLEM_BIT(p)) != 0;
    if (n == 0)
        return true;
    *out = calloc(n, sizeof **out);
    if (*out == NULL)
        return false;
    for (unsigned p = 0; p < CS_CERT_PROBLEM_COUNT; p++) {
        if (set & CS_CERT_PROBLEM_BIT(p))
            (*out)[(*n_out)++] = col_event_cert_problem((cs_cert_problem)p);
    }
    return true;
}

static void summary_free(Certsync__V1__CertificateSummary *s)
{
    if (s == NULL)
        return;
    free(s->sha256_fingerprint);
    free(s->subject);
    free(s->issuer);
    free(s->serial_hex);
    for (size_t i = 0; i < s->n_email_addresses; i++)
        free(s->email_addresses[i]);
    free(s->email_addresses);
    free(s->key_algorithm);
    free(s->key_curve);
    free(s->problems);
    free(s);
}

static Certsync__V1__CertificateSummary *summary_new(const cs_cert_info *ci)
{
    Certsync__V1__CertificateSummary *s = malloc(sizeof *s);
    bool ok = true;
    bool readable = (ci->problems & CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE)) == 0;

    if (s == NULL)
        return NULL;
    certsync__v1__certificate_summary__init(s);
    s->sha256_fingerprint = dup_opt(ci->sha256_hex, &ok);
    if (readable) {
        s->subject = dup_opt(ci->subject, &ok);
        s->issuer = dup_opt(ci->issuer, &ok);
        s->serial_hex = dup_opt(ci->serial_hex, &ok);
        if (ci->n_emails > 0) {
            s->email_addresses = calloc(ci->n_emails, sizeof *s->email_addresses);
            ok = ok && s->email_addresses != NULL;
            for (size_t i = 0; ok && i < ci->n_emails; i++) {
                s->email_addresses[i] = dup_opt(ci->emails[i], &ok);
                s->n_email_addresses = i + 1;
            }
        }
        s->has_not_before = s->has_not_after = 1;
        s->not_before = ci->not_before;
        s->not_after = ci->not_after;
        s->has_key_usage_present = 1;
        s->key_usage_present = ci->has_key_usage;
        if (ci->has_key_usage) {
            s->has_key_usage = 1;
            s->key_usage = col_event_key_usage(ci->key_usage);
        }
        s->has_eku_present = s->has_eku_email_protection = s->has_eku_any = 1;
        s->eku_present = ci->has_eku;
        s->eku_email_protection = ci->eku_email_protection;
        s->eku_any = ci->eku_any;
        s->key_algorithm = dup_opt(cs_cert_key_alg_name(ci->key_alg), &ok);
        if (ci->key_bits > 0) {
            s->has_key_bits = 1;
            s->key_bits = ci->key_bits;
        }
        s->key_curve = dup_opt(ci->ec_curve, &ok);
        s->has_self_issued = 1;
        s->self_issued = ci->self_issued;
    }
    ok = ok && problems_to_proto(ci->problems, &s->problems, &s->n_problems);
    if (!ok) {
        summary_free(s);
        return NULL;
    }
    return s;
}

static void value_free(Certsync__V1__CertificateValue *v)
{
    if (v == NULL)
        return;
    free(v->raw.data);
    free(v->sha256);
    for (size_t i = 0; i < v->n_certificates; i++)
        summary_free(v->certificates[i]);
    free(v->certificates);
    free(v->problems);
    free(v->problem_detail);
    free(v);
}

static Certsync__V1__ValueFormat format_to_proto(cs_cert_format f)
{
    switch (f) {
    case CS_CERT_FORMAT_X509:
        return CERTSYNC__V1__VALUE_FORMAT__VALUE_FORMAT_X509_DER;
    case CS_CERT_FORMAT_PKCS7:
        return CERTSYNC__V1__VALUE_FORMAT__VALUE_FORMAT_PKCS7;
    case CS_CERT_FORMAT_MSOXOABK:
        return CERTSYNC__V1__VALUE_FORMAT__VALUE_FORMAT_MS_OXOABK_TAGGED;
    case CS_CERT_FORMAT_UNKNOWN:
        break;
    }
    return CERTSYNC__V1__VALUE_FORMAT__VALUE_FORMAT_UNKNOWN;
}

static cs_err *report_policy(const col_object *o, const col_source_info *src,
                             const cs_policy_addresses *addrs, cs_cert_attr attr, const unsigned char *raw,
                             size_t len, const cs_cert_value *cv, int64_t now);

/* Builds the event's copy of one value; with a policy, also reports its verdict from the same parse. */
static cs_err *value_new(const col_object *o, const col_source_info *src, const cs_policy_addresses *addrs,
                         cs_cert_attr attr, const unsigned char *raw, size_t len, int64_t now,
                         Certsync__V1__CertificateValue **out)
{
    const char *attr_name =
        attr == CS_CERT_ATTR_USER_CERTIFICATE ? "userCertificate" : "userSMIMECertificate";
    Certsync__V1__CertificateValue *v = NULL;
    cs_cert_value *cv = NULL;
    cs_err *err = NULL;
    char hex[CS_SHA256_HEX_LEN];
    size_t n;
    bool ok = true;

    *out = NULL;
    v = malloc(sizeof *v);
    if (v == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the event of %s", col_object_dn(o));
    certsync__v1__certificate_value__init(v);
    v->has_raw = 1;
    v->raw.len = len;
    v->raw.data = malloc(len > 0 ? len : 1);
    if (v->raw.data == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the event of %s", col_object_dn(o));
        goto cleanup;
    }
    if (len > 0)
        memcpy(v->raw.data, raw, len);
    err = cs_cert_value_parse(attr, raw, len, now, &cv);
    if (err != NULL)
        goto cleanup;
    /* The parse hashed the value (once, shared with a bare certificate's fingerprint). */
    cs_cert_value_sha256_hex(cv, hex);
    v->sha256 = strdup(hex);
    if (v->sha256 == NULL) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the event of %s", col_object_dn(o));
        goto cleanup;
    }
    v->has_format = 1;
    v->format = format_to_proto(cs_cert_value_format(cv));
    v->has_user_index = 1;
    v->user_index = cs_cert_value_user_index(cv);
    n = cs_cert_value_cert_count(cv);
    if (n > 0) {
        v->certificates = calloc(n, sizeof *v->certificates);
        ok = v->certificates != NULL;
        for (size_t i = 0; ok && i < n; i++) {
            v->certificates[i] = summary_new(cs_cert_value_cert(cv, i));
            ok = v->certificates[i] != NULL;
            v->n_certificates = ok ? i + 1 : i;
        }
    }
    ok = ok && problems_to_proto(cs_cert_value_problems(cv), &v->problems, &v->n_problems);
    v->problem_detail = dup_opt(cs_cert_value_reason(cv), &ok);
    if (!ok) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the event of %s", col_object_dn(o));
        goto cleanup;
    }
    if (cs_cert_value_problems(cv) & CS_CERT_PROBLEM_BIT(CS_CERT_PROBLEM_UNPARSEABLE))
        /* Kept raw and flagged, never dropped: say so once, with where it lives. */
        cs_log_kv(CS_LOG_WARN, FAC, "certificate value cannot be parsed; kept raw and flagged", "dn",
                  col_object_dn(o), "object_id", col_object_id(o), "attribute", attr_name, "sha256", hex,
                  "reason", cs_cert_value_reason(cv), NULL);
    if (src->policy != NULL && (err = report_policy(o, src, addrs, attr, raw, len, cv, now)) != NULL)
        goto cleanup;
    *out = v;
    v = NULL;
cleanup:
    cs_cert_value_free(cv);
    value_free(v);
    return err;
}

static Certsync__V1__AttributeStamp *stamp_new(const col_object *o, col_stamp_kind kind, bool *ok)
{
    const col_stamp *st = col_object_stamp(o, kind);
    const char *csn = col_object_entry_csn(o);
    Certsync__V1__AttributeStamp *s;

    if (!st->present && csn == NULL)
        return NULL;
    s = malloc(sizeof *s);
    if (s == NULL) {
        *ok = false;
        return NULL;
    }
    certsync__v1__attribute_stamp__init(s);
    if (st->present) {
        s->has_version = s->has_originating_time = s->has_originating_invocation_id = s->has_originating_usn =
            1;
        s->version = st->version;
        s->originating_time = st->originating_time;
        s->originating_usn = st->originating_usn;
        s->originating_invocation_id.len = 16;
        s->originating_invocation_id.data = malloc(16);
        if (s->originating_invocation_id.data == NULL)
            *ok = false;
        else
            memcpy(s->originating_invocation_id.data, st->invocation_id, 16);
    }
    s->csn = dup_opt(csn, ok);
    return s;
}

static void stamp_free(Certsync__V1__AttributeStamp *s)
{
    if (s == NULL)
        return;
    free(s->originating_invocation_id.data);
    free(s->csn);
    free(s);
}

static Certsync__V1__DirectoryKind kind_to_proto(col_dir_kind k)
{
    switch (k) {
    case COL_DIR_AD:
        return CERTSYNC__V1__DIRECTORY_KIND__DIRECTORY_KIND_ACTIVE_DIRECTORY;
    case COL_DIR_OPENLDAP:
        return CERTSYNC__V1__DIRECTORY_KIND__DIRECTORY_KIND_OPENLDAP;
    case COL_DIR_OTHER:
        break;
    }
    return CERTSYNC__V1__DIRECTORY_KIND__DIRECTORY_KIND_OTHER_LDAP;
}

static Certsync__V1__TrackingMode mode_to_proto(col_ldap_mode m)
{
    switch (m) {
    case COL_LDAP_MODE_DIRSYNC:
        return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_DIRSYNC;
    case COL_LDAP_MODE_USN:
        return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_USN;
    case COL_LDAP_MODE_SYNCREPL:
        return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_SYNCREPL;
    case COL_LDAP_MODE_AUTO:
        break;
    }
    return CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_UNSPECIFIED;
}

/* The policy report of one value: log and count a refusal; never changes the event. */
static cs_err *report_policy(const col_object *o, const col_source_info *src,
                             const cs_policy_addresses *addrs, cs_cert_attr attr, const unsigned char *raw,
                             size_t len, const cs_cert_value *cv, int64_t now)
{
    cs_policy_verdict *v = NULL;
    const char *label = col_object_upn(o) != NULL ? col_object_upn(o) : col_object_dn(o);
    cs_err *err = cs_policy_check_parsed(src->policy, attr, raw, len, cv, (const char *const *)addrs->v,
                                         addrs->n, now, label, &v);
    if (err != NULL)
        return err;
    if (!cs_policy_verdict_ok(v)) {
        cs_policy_rules rules = cs_policy_verdict_rules(v);
        cs_log_kv(CS_LOG_INFO, "policy", cs_policy_verdict_message(v), "dn", col_object_dn(o), "object_id",
                  col_object_id(o), "reason", cs_policy_verdict_dropped_reason(v), NULL);
        for (unsigned r = 0; src->policy_refusals != NULL && r < CS_POLICY_RULE_COUNT; r++)
            if (rules & CS_POLICY_RULE_BIT(r))
                cs_metrics_counter_inc(src->policy_refusals[r]);
    }
    cs_policy_verdict_free(v);
    return NULL;
}

/* The object's addresses for the policy's address rule (the same identity fields the publisher uses). */
static cs_err *object_addresses(const col_object *o, const cs_policy *policy, cs_policy_addresses *out)
{
    size_t n = col_object_proxy_address_count(o);
    const char **proxies = NULL;
    cs_err *err;
    if (n > 0) {
        proxies = calloc(n, sizeof *proxies);
        if (proxies == NULL)
            return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the event of %s", col_object_dn(o));
        for (size_t i = 0; i < n; i++)
            proxies[i] = col_object_proxy_address(o, i);
    }
    cs_policy_identity id = {
        .proxies = proxies, .n_proxies = n, .mail = col_object_mail(o), .upn = col_object_upn(o)};
    err = cs_policy_addresses_collect(policy, &id, out);
    free(proxies);
    return err;
}

static cs_err *add_values(const col_object *o, const col_source_info *src, const cs_policy_addresses *addrs,
                          cs_cert_attr attr, int64_t now, Certsync__V1__CertificateValue ***arr,
                          size_t *n_arr)
{
    size_t n = col_object_cert_count(o, attr);
    cs_err *err = NULL;

    if (n == 0)
        return NULL;
    *arr = calloc(n, sizeof **arr);
    if (*arr == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the event of %s", col_object_dn(o));
    for (size_t i = 0; i < n && err == NULL; i++) {
        size_t len = 0;
        const unsigned char *raw = col_object_cert(o, attr, i, &len);
        err = value_new(o, src, addrs, attr, raw, len, now, &(*arr)[i]);
        if (err == NULL)
            *n_arr = i + 1;
    }
    return err;
}

static int hex_nibble(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The values' digests back from their sha256 fields (set by value_new from the raw bytes); NULL for n 0. */
static cs_err *value_digests(Certsync__V1__CertificateValue **values, size_t n, unsigned char (**out)[32])
{
    *out = NULL;
    if (n == 0)
        return NULL;
    *out = calloc(n, sizeof **out);
    if (*out == NULL)
        return cs_err_new(CS_ERR_NOMEM, 0, "out of memory hashing %zu certificate values", n);
    for (size_t i = 0; i < n; i++) {
        const char *h = values[i]->sha256;
        for (size_t j = 0; j < 32; j++) {
            int hi = h ? hex_nibble(h[2 * j]) : -1, lo = hi >= 0 ? hex_nibble(h[2 * j + 1]) : -1;
            if (lo < 0)
                return cs_err_new(CS_ERR_INTERNAL, 0, "value %zu has no SHA-256 of its raw bytes", i);
            (*out)[i][j] = (unsigned char)(hi << 4 | lo);
        }
    }
    return NULL;
}

/* cs_event_content_sha256 without hashing every value again: value_new's digests are of the raw bytes. */
static cs_err *content_hash(const Certsync__V1__ChangeEvent *ev, char hash[CS_SHA256_HEX_LEN])
{
    unsigned char(*uc)[32] = NULL, (*sm)[32] = NULL;
    cs_err *err = value_digests(ev->user_certificate, ev->n_user_certificate, &uc);
    if (err == NULL)
        err = value_digests(ev->user_smime_certificate, ev->n_user_smime_certificate, &sm);
    if (err == NULL)
        err = cs_event_content_sha256_digests((const unsigned char(*)[32])uc, ev->n_user_certificate,
                                              (const unsigned char(*)[32])sm, ev->n_user_smime_certificate,
                                              hash);
    free(uc);
    free(sm);
    return err;
}

cs_err *col_event_build(const col_object *o, const col_source_info *src, Certsync__V1__ChangeKind kind,
                        Certsync__V1__RemovalReason removal_reason, Certsync__V1__EmitReason emit_reason,
                        int64_t observed_at_ms, Certsync__V1__ChangeEvent **out)
{
    Certsync__V1__ChangeEvent *ev = NULL;
    Certsync__V1__Source *s;
    Certsync__V1__Identity *id;
    Certsync__V1__Version *ver;
    cs_err *err = NULL;
    bool ok = true;
    const unsigned char *guid;
    size_t cg_len = 0, n_proxy;
    const unsigned char *cg;
    char hash[CS_SHA256_HEX_LEN];
    cs_policy_addresses addrs = {0};

    *out = NULL;
    if (src == NULL || src->source_id == NULL || col_object_id(o) == NULL)
        return cs_err_new(CS_ERR_INTERNAL, 0, "col_event_build: a source id and an object id are required");
    ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        goto nomem;
    certsync__v1__change_event__init(ev);
    ev->has_kind = 1;
    ev->kind = kind;
    ev->has_emit_reason = 1;
    ev->emit_reason = emit_reason;
    ev->has_observed_at_ms = 1;
    ev->observed_at_ms = observed_at_ms;
    if (kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL) {
        ev->has_removal_reason = 1;
        ev->removal_reason = removal_reason;
    }

    s = ev->source = malloc(sizeof *s);
    if (s == NULL)
        goto nomem;
    certsync__v1__source__init(s);
    s->source_id = dup_opt(src->source_id, &ok);
    s->site = dup_opt(src->site, &ok);
    s->server = dup_opt(src->server, &ok);
    s->naming_context = dup_opt(src->naming_context, &ok);
    s->has_directory = s->has_mode = 1;
    s->directory = kind_to_proto(src->directory);
    s->mode = mode_to_proto(src->mode);

    id = ev->identity = malloc(sizeof *id);
    if (id == NULL)
        goto nomem;
    certsync__v1__identity__init(id);
    id->object_id = dup_opt(col_object_id(o), &ok);
    guid = col_object_guid(o);
    if (guid != NULL) {
        id->has_object_guid = 1;
        id->object_guid.len = 16;
        id->object_guid.data = malloc(16);
        if (id->object_guid.data == NULL)
            goto nomem;
        memcpy(id->object_guid.data, guid, 16);
    }
    cg = col_object_consistency_guid(o, &cg_len);
    if (cg != NULL) {
        id->has_consistency_guid = 1;
        id->consistency_guid.len = cg_len;
        id->consistency_guid.data = malloc(cg_len > 0 ? cg_len : 1);
        if (id->consistency_guid.data == NULL)
            goto nomem;
        if (cg_len > 0)
            memcpy(id->consistency_guid.data, cg, cg_len);
    }
    id->object_sid = dup_opt(col_object_sid(o), &ok);
    id->dn = dup_opt(col_object_dn(o), &ok);
    id->user_principal_name = dup_opt(col_object_upn(o), &ok);
    id->mail = dup_opt(col_object_mail(o), &ok);
    id->sam_account_name = dup_opt(col_object_sam_account_name(o), &ok);
    id->uid = dup_opt(col_object_uid(o), &ok);
    n_proxy = col_object_proxy_address_count(o);
    if (n_proxy > 0) {
        id->proxy_addresses = calloc(n_proxy, sizeof *id->proxy_addresses);
        if (id->proxy_addresses == NULL)
            goto nomem;
        for (size_t i = 0; i < n_proxy && ok; i++) {
            id->proxy_addresses[i] = dup_opt(col_object_proxy_address(o, i), &ok);
            id->n_proxy_addresses = i + 1;
        }
    }

    ver = ev->version = malloc(sizeof *ver);
    if (ver == NULL)
        goto nomem;
    certsync__v1__version__init(ver);
    ver->user_certificate = stamp_new(o, COL_STAMP_USER_CERTIFICATE, &ok);
    ver->user_smime_certificate = stamp_new(o, COL_STAMP_USER_SMIME_CERTIFICATE, &ok);
    ver->lifecycle = stamp_new(o, COL_STAMP_LIFECYCLE, &ok);
    if (!ok)
        goto nomem;

    if (kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT) {
        int64_t now = observed_at_ms / 1000;
        if (src->policy != NULL)
            err = object_addresses(o, src->policy, &addrs);
        if (err == NULL)
            err = add_values(o, src, &addrs, CS_CERT_ATTR_USER_CERTIFICATE, now, &ev->user_certificate,
                             &ev->n_user_certificate);
        if (err == NULL)
            err = add_values(o, src, &addrs, CS_CERT_ATTR_USER_SMIME_CERTIFICATE, now,
                             &ev->user_smime_certificate, &ev->n_user_smime_certificate);
        if (err != NULL)
            goto cleanup;
    }
    err = content_hash(ev, hash);
    if (err != NULL)
        goto cleanup;
    ev->content_sha256 = strdup(hash);
    if (ev->content_sha256 == NULL)
        goto nomem;
    *out = ev;
    ev = NULL;
    goto cleanup;
nomem:
    err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory building the event of %s", col_object_dn(o));
cleanup:
    cs_policy_addresses_free(&addrs);
    col_event_free(ev);
    return err;
}

void col_event_free(Certsync__V1__ChangeEvent *ev)
{
    if (ev == NULL)
        return;
    if (ev->source != NULL) {
        free(ev->source->source_id);
        free(ev->source->site);
        free(ev->source->server);
        free(ev->source->naming_context);
        free(ev->source);
    }
    if (ev->identity != NULL) {
        Certsync__V1__Identity *id = ev->identity;
        free(id->object_id);
        free(id->object_guid.data);
        free(id->consistency_guid.data);
        free(id->object_sid);
        free(id->dn);
        free(id->user_principal_name);
        free(id->mail);
        for (size_t i = 0; i < id->n_proxy_addresses; i++)
            free(id->proxy_addresses[i]);
        free(id->proxy_addresses);
        free(id->sam_account_name);
        free(id->uid);
        free(id);
    }
    if (ev->version != NULL) {
        stamp_free(ev->version->user_certificate);
        stamp_free(ev->version->user_smime_certificate);
        stamp_free(ev->version->lifecycle);
        free(ev->version);
    }
    for (size_t i = 0; i < ev->n_user_certificate; i++)
        value_free(ev->user_certificate[i]);
    free(ev->user_certificate);
    for (size_t i = 0; i < ev->n_user_smime_certificate; i++)
        value_free(ev->user_smime_certificate[i]);
    free(ev->user_smime_certificate);
    free(ev->content_sha256);
    free(ev);
}
