/*
 * pub_readiness: per-object readiness verdicts in the applied state (see pub_readiness.h).
 */
#include "pub_readiness.h"

#include <stdlib.h>
#include <string.h>

#define DAY_SECONDS 86400

cs_err *pub_readiness_judge_event(const cs_policy *policy, const Certsync__V1__ChangeEvent *ev,
                                  const char *key, int64_t now, unsigned expiring_soon_days,
                                  cs_readiness **out)
{
    cs_err *err = NULL;
    cs_policy_addresses addrs = {0};
    cs_readiness_value *uv = NULL, *sv = NULL;
    const Certsync__V1__Identity *id = ev->identity;
    bool removed = ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    size_t n_uc = removed ? 0 : ev->n_user_certificate, n_sm = removed ? 0 : ev->n_user_smime_certificate;
    *out = NULL;
    uv = calloc(n_uc ? n_uc : 1, sizeof(*uv));
    sv = calloc(n_sm ? n_sm : 1, sizeof(*sv));
    if (!uv || !sv) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n_uc; i++)
        if (ev->user_certificate[i]->has_raw)
            uv[i] = (cs_readiness_value){.der = ev->user_certificate[i]->raw.data,
                                         .len = ev->user_certificate[i]->raw.len};
    for (size_t i = 0; i < n_sm; i++)
        if (ev->user_smime_certificate[i]->has_raw)
            sv[i] = (cs_readiness_value){.der = ev->user_smime_certificate[i]->raw.data,
                                         .len = ev->user_smime_certificate[i]->raw.len};
    cs_policy_identity pid = {0};
    const char *label = key;
    if (id) {
        pid.proxies = (const char *const *)id->proxy_addresses;
        pid.n_proxies = id->n_proxy_addresses;
        pid.mail = id->mail;
        pid.upn = id->user_principal_name;
        if (id->user_principal_name && *id->user_principal_name)
            label = id->user_principal_name;
        else if (id->dn && *id->dn)
            label = id->dn;
    }
    err = cs_policy_addresses_collect(policy, &pid, &addrs);
    if (err)
        goto cleanup;
    cs_readiness_input in = {.label = label,
                             .user_certificate = uv,
                             .n_user_certificate = n_uc,
                             .user_smime_certificate = sv,
                             .n_user_smime_certificate = n_sm,
                             .addresses = (const char *const *)addrs.v,
                             .n_addresses = addrs.n,
                             .now = now,
                             .expiring_soon_days = expiring_soon_days};
    err = cs_readiness_judge(policy, &in, out);
cleanup:
    cs_policy_addresses_free(&addrs);
    free(uv);
    free(sv);
    if (err)
        err = cs_err_wrap(err, "judging the readiness of %s", key);
    return err;
}

cs_readiness_reason pub_readiness_at(cs_readiness_reason judged, int64_t not_after, int64_t now,
                                     unsigned expiring_soon_days)
{
    int64_t soon =
        (int64_t)(expiring_soon_days ? expiring_soon_days : CS_READINESS_DEFAULT_EXPIRING_SOON_DAYS) *
        DAY_SECONDS;
    if (not_after <= 0)
        return judged;
    switch (judged) {
    case CS_READINESS_OK:
    case CS_READINESS_EXPIRING_SOON:
        /* The best usable certificate had the latest notAfter, so when it is past every usable one is. The
         * same comparison as cs_readiness_judge's, so a re-evaluation at the judging time agrees with it. */
        if (not_after <= now)
            return CS_READINESS_EXPIRED;
        return not_after - now <= soon ? CS_READINESS_EXPIRING_SOON : CS_READINESS_OK;
    case CS_READINESS_ADDRESS_MISMATCH:
        return not_after <= now ? CS_READINESS_EXPIRED : judged;
    default:
        return judged;
    }
}

bool pub_readiness_reason_parse(const char *name, cs_readiness_reason *out)
{
    for (int r = 0; name && r < CS_READINESS_REASON_COUNT; r++) {
        if (strcmp(name, cs_readiness_reason_name((cs_readiness_reason)r)) == 0) {
            *out = (cs_readiness_reason)r;
            return true;
        }
    }
    return false;
}

typedef struct tally_ctx {
    int64_t now;
    unsigned days;
    cs_readiness_tally *t;
} tally_ctx;

static void count_object(void *ctx, int32_t partition, const Certsync__V1__ObjectState *obj)
{
    tally_ctx *tc = ctx;
    (void)partition;
    cs_readiness_reason r;
    if (obj->has_removed && obj->removed)
        return;
    if (obj->readiness) {
        if (!pub_readiness_reason_parse(obj->readiness, &r))
            return; /* an empty verdict: a multi-site non-owner */
        r = pub_readiness_at(r, obj->has_readiness_not_after ? obj->readiness_not_after : 0, tc->now,
                             tc->days);
    } else if (obj->has_certificate_values && obj->certificate_values == 0) {
        r = CS_READINESS_NO_USABLE_CERTIFICATE; /* written before verdicts were stored, but nothing to judge */
    } else {
        return;
    }
    tc->t->users[r]++;
}

void pub_readiness_tally_state(const pub_state *s, int64_t now, unsigned expiring_soon_days,
                               cs_readiness_tally *out)
{
    memset(out, 0, sizeof(*out));
    tally_ctx tc = {.now = now, .days = expiring_soon_days, .t = out};
    pub_state_each_object(s, count_object, &tc);
}
