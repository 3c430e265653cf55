/*
 * pub_preflight: writable / unwritable / unknown recipients (see pub_preflight.h).
 */
#include "pub_preflight.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pub_cmd.h"
#include "pub_inspect.h"
#include "pub_latest.h"

enum { WRITABLE, UNWRITABLE, UNKNOWN, FAILED, N_CLASSES };

static const char *const class_names[N_CLASSES] = {"writable", "unwritable", "unknown", "error"};

static const char *const class_fix[N_CLASSES] = {
    NULL,
    "unwritable (write scope): these recipients are synced from Active Directory and their Exchange "
    "attributes "
    "are managed on-premises, so Exchange Online refuses the write. Fix: make the Exchange attributes "
    "cloud-managed (Exchange Online PowerShell: Set-Mailbox -Identity <recipient> -IsExchangeCloudManaged "
    "$true, Set-MailUser for mail users), or write the certificates in Active Directory and let Entra "
    "Connect "
    "sync them instead of certsync",
    "unknown (not found): no Exchange Online recipient matches these objects by resolve.order. Fix: run an "
    "Entra Connect sync cycle (Start-ADSyncSyncCycle -PolicyType Delta) and wait for it, check the objects "
    "are "
    "in the sync scope and mail-enabled (licensed mailbox or mail user), or change resolve.order to a key "
    "both sides share (immutable_id needs ms-DS-ConsistencyGuid or objectGUID as the source anchor)",
    "error: the recipient could not be read (see each line: throttling, an outage or an ambiguous identity). "
    "Fix: run preflight again; for an ambiguous identity, make the key unique in the directory",
};

static const char *label_of(const Certsync__V1__ChangeEvent *ev, const char *key)
{
    const Certsync__V1__Identity *id = ev->identity;
    if (id && id->user_principal_name && *id->user_principal_name)
        return id->user_principal_name;
    if (id && id->dn && *id->dn)
        return id->dn;
    return key;
}

int pub_preflight_command(const pub_config *cfg, int argc, char **argv)
{
    int rc = PUB_CMD_EXIT_FAIL;
    pub_latest *set = NULL;
    pub_o365 *o = NULL;
    const Certsync__V1__ChangeEvent **evs = NULL;
    const pub_latest_entry **ents = NULL;
    pub_inspect_result *res = NULL;
    uint64_t counts[N_CLASSES] = {0};
    cs_err *err = NULL;
    if (argc > 0)
        return pub_cmd_usage("preflight", "unknown argument \"%s\"", argv[0]);
    err = pub_latest_read_events(cfg, 0, &set);
    if (!err)
        err = pub_cmd_o365(cfg, &o);
    if (err) {
        rc = pub_cmd_fail("preflight", err);
        goto cleanup;
    }
    size_t n = 0;
    evs = calloc(set->n ? set->n : 1, sizeof(*evs));
    ents = calloc(set->n ? set->n : 1, sizeof(*ents));
    res = calloc(set->n ? set->n : 1, sizeof(*res));
    if (!evs || !ents || !res) {
        rc = pub_cmd_fail("preflight", cs_err_new(CS_ERR_NOMEM, 0, "out of memory for %zu objects", set->n));
        goto cleanup;
    }
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].event->kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL)
            continue;
        ents[n] = &set->v[i];
        evs[n++] = set->v[i].event;
    }
    err = pub_inspect_run(o, evs, n, res);
    if (err) {
        rc = pub_cmd_fail("preflight", err);
        goto cleanup;
    }
    printf("%-11s %-40s %-40s %-20s %s\n", "CLASS", "OBJECT", "USER", "RECIPIENT_TYPE", "DETAIL");
    for (size_t i = 0; i < n; i++) {
        const pub_inspect_result *r = &res[i];
        int cls = r->status == PUB_INSPECT_NOT_FOUND                  ? UNKNOWN
                  : r->status != PUB_INSPECT_FOUND                    ? FAILED
                  : r->is_dir_synced && !r->is_exchange_cloud_managed ? UNWRITABLE
                                                                      : WRITABLE;
        counts[cls]++;
        if (cls == WRITABLE)
            continue;
        char detail[600];
        if (cls == UNWRITABLE)
            snprintf(detail, sizeof detail, "%s: IsDirSynced=true IsExchangeCloudManaged=false",
                     r->rcpt.primary_smtp_address);
        else
            snprintf(detail, sizeof detail, "%s", r->detail);
        printf("%-11s %-40s %-40s %-20s %s\n", class_names[cls], ents[i]->key, label_of(evs[i], ents[i]->key),
               r->rcpt.recipient_type_details[0] ? r->rcpt.recipient_type_details : "-", detail);
    }
    printf("preflight: %zu objects: %" PRIu64 " writable, %" PRIu64 " unwritable (write scope), %" PRIu64
           " unknown (not found), %" PRIu64 " error\n",
           n, counts[WRITABLE], counts[UNWRITABLE], counts[UNKNOWN], counts[FAILED]);
    for (int c = UNWRITABLE; c < N_CLASSES; c++)
        if (counts[c])
            printf("fix for %s\n", class_fix[c]);
    rc = counts[UNWRITABLE] + counts[UNKNOWN] + counts[FAILED] ? PUB_CMD_EXIT_PROBLEMS : PUB_CMD_EXIT_OK;
cleanup:
    free(evs);
    free(ents);
    free(res);
    pub_o365_free(o);
    pub_latest_free(set);
    return rc;
}
