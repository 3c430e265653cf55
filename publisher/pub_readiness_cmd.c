/*
 * pub_readiness_cmd: the S/MIME readiness report from the events topic (see pub_readiness_cmd.h).
 */
#include "pub_readiness_cmd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cs_buf.h"
#include "cs_readiness.h"
#include "pub_cmd.h"
#include "pub_latest.h"

#define LINE_MAX_BYTES (64 * 1024)

/* Judges one object into *out (caller frees with cs_readiness_free()). */
static cs_err *judge(const pub_config *cfg, const cs_policy *policy, const pub_latest_entry *e, int64_t now,
                     cs_readiness **out)
{
    cs_err *err = NULL;
    cs_policy_addresses addrs = {0};
    cs_readiness_value *uv = NULL, *sv = NULL;
    const Certsync__V1__ChangeEvent *ev = e->event;
    const Certsync__V1__Identity *id = ev->identity;
    bool removed = ev->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
    size_t n_uc = removed ? 0 : ev->n_user_certificate, n_sm = removed ? 0 : ev->n_user_smime_certificate;
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
    const char *label = e->key;
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
                             .expiring_soon_days = cfg->readiness_expiring_soon_days};
    err = cs_readiness_judge(policy, &in, out);
cleanup:
    cs_policy_addresses_free(&addrs);
    free(uv);
    free(sv);
    if (err)
        err = cs_err_wrap(err, "judging the readiness of %s", e->key);
    return err;
}

int pub_readiness_command(const pub_config *cfg, int argc, char **argv)
{
    bool csv = false;
    int rc = PUB_CMD_EXIT_FAIL;
    pub_latest *set = NULL;
    cs_policy *own = NULL;
    cs_err *err = NULL;
    cs_readiness_tally tally;
    memset(&tally, 0, sizeof tally);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--csv") == 0)
            csv = true;
        else
            return pub_cmd_usage("readiness", "unknown argument \"%s\"", argv[i]);
    }
    const cs_policy *policy = cfg->policy;
    if (!policy) {
        err = cs_policy_new(NULL, &own);
        policy = own;
    }
    if (!err)
        err = pub_latest_read_events(cfg, 0, &set);
    if (err) {
        rc = pub_cmd_fail("readiness", err);
        goto cleanup;
    }
    int64_t now = (int64_t)time(NULL);
    cs_buf line;
    cs_buf_init(&line, LINE_MAX_BYTES);
    bool ok = csv ? cs_readiness_csv_header(&line) : cs_readiness_table_header(&line);
    if (ok)
        fwrite(cs_buf_str(&line), 1, cs_buf_len(&line), stdout);
    for (size_t i = 0; i < set->n && !err; i++) {
        cs_readiness *r = NULL;
        err = judge(cfg, policy, &set->v[i], now, &r);
        if (err)
            break;
        cs_readiness_tally_add(&tally, r);
        cs_buf_reset(&line);
        ok = csv ? cs_readiness_csv_row(r, &line) : cs_readiness_table_row(r, &line);
        if (ok)
            fwrite(cs_buf_str(&line), 1, cs_buf_len(&line), stdout);
        cs_readiness_free(r);
    }
    cs_buf_free(&line);
    if (err) {
        rc = pub_cmd_fail("readiness", err);
        goto cleanup;
    }
    uint64_t not_ok = 0;
    fprintf(stderr, "readiness: %zu users:", set->n);
    for (int r = 0; r < CS_READINESS_REASON_COUNT; r++) {
        fprintf(stderr, " %" PRIu64 " %s", tally.users[r], cs_readiness_reason_name((cs_readiness_reason)r));
        if (r != CS_READINESS_OK)
            not_ok += tally.users[r];
    }
    fprintf(stderr, "\n");
    rc = not_ok ? PUB_CMD_EXIT_PROBLEMS : PUB_CMD_EXIT_OK;
cleanup:
    cs_policy_free(own);
    pub_latest_free(set);
    return rc;
}
