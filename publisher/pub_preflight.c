/*
 * pub_preflight: writable / unwritable / unknown recipients (see pub_preflight.h).
 */
#include "pub_preflight.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pub_cmd.h"
#include "pub_codec.h"
#include "pub_inspect.h"
#include "pub_latest.h"
#include "pub_token.h"

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

/* The exact fixes for a missing application permission (token `roles` claim). */
#define FIX_EXCHANGE_ROLE                                                                                    \
    "the app has no Exchange.ManageAsApp application permission: grant it in Entra ID > App registrations "  \
    "> "                                                                                                     \
    "<the app> > API permissions > Add a permission > APIs my organization uses > Office 365 Exchange "      \
    "Online > Application permissions > Exchange.ManageAsApp, then grant admin consent"
#define FIX_GRAPH_ROLE                                                                                       \
    "the app has no User.Read.All application permission on Microsoft Graph (needed to look recipients "     \
    "up): "                                                                                                  \
    "grant it in Entra ID > App registrations > <the app> > API permissions > Add a permission > Microsoft " \
    "Graph > Application permissions > User.Read.All, then grant admin consent"
#define FIX_RBAC                                                                                             \
    "Exchange refused the app (403): it has Exchange.ManageAsApp but no Exchange role. In Exchange Online "  \
    "PowerShell: New-ServicePrincipal -AppId <client id> -ObjectId <enterprise app object id> -DisplayName " \
    "\"certsync publisher\"; New-ManagementScope -Name \"certsync recipients\" -RecipientRestrictionFilter " \
    "\"MemberOfGroup -eq '<DN of the managed group>'\"; New-RoleGroup -Name \"certsync publisher\" -Roles "  \
    "\"Mail Recipients\" -CustomRecipientWriteScope \"certsync recipients\"; Add-RoleGroupMember -Identity " \
    "\"certsync publisher\" -Member <service principal> (docs/security.md, Least privilege)"

/*
 * The `roles` claim of our own access token (no signature check: we only read what Entra granted us).
 * Returns true when `role` (or, for Graph, a wider directory read role) is in it; *readable false when the
 * token is not a JWT with a payload we can read (then nothing is claimed either way).
 */
static bool token_has_role(const char *jwt, const char *const *accepted, bool *readable)
{
    bool found = false;
    unsigned char *payload = NULL;
    size_t len = 0;
    json_t *root = NULL;
    const char *dot1 = strchr(jwt, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    *readable = false;
    if (!dot2 || !pub_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload, &len))
        goto cleanup;
    root = json_loadb((const char *)payload, len, 0, NULL);
    json_t *roles = json_object_get(root, "roles");
    if (!json_is_object(root))
        goto cleanup;
    *readable = true;
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        for (const char *const *a = accepted; *a && json_is_string(v); a++)
            if (strcmp(json_string_value(v), *a) == 0)
                found = true;
    }
cleanup:
    json_decref(root);
    free(payload);
    return found;
}

/*
 * Checks the application permissions in the Exchange and Graph tokens and prints the fix for each missing
 * one. Returns the number of problems, or -1 when no token could be obtained (the error is printed).
 */
static int check_permissions(pub_o365 *o)
{
    static const char *const exo_roles[] = {"Exchange.ManageAsApp", NULL};
    static const char *const graph_roles[] = {"User.Read.All", "Directory.Read.All",
                                              "Directory.ReadWrite.All", "User.ReadWrite.All", NULL};
    const pub_resource res[2] = {PUB_RESOURCE_EXCHANGE, PUB_RESOURCE_GRAPH};
    const char *const *accepted[2] = {exo_roles, graph_roles};
    const char *fixes[2] = {FIX_EXCHANGE_ROLE, FIX_GRAPH_ROLE};
    const char *names[2] = {"Exchange.ManageAsApp", "User.Read.All"};
    int problems = 0;
    for (int i = 0; i < 2; i++) {
        pub_token *t = NULL;
        bool readable = false;
        cs_err *err = pub_token_get(pub_o365_tokens(o), res[i], &t);
        if (err) {
            printf("permission  %-40s token request failed: %s\n",
                   pub_token_scope(pub_o365_tokens(o), res[i]), cs_err_message(err));
            cs_err_free(err);
            return -1;
        }
        bool ok = token_has_role(pub_token_value(t), accepted[i], &readable);
        pub_token_unref(t);
        if (!readable) {
            printf("permission  %-40s the token is not a readable JWT: cannot check %s\n",
                   pub_token_scope(pub_o365_tokens(o), res[i]), names[i]);
        } else if (!ok) {
            printf("permission  %-40s missing %s\nfix for permission: %s\n",
                   pub_token_scope(pub_o365_tokens(o), res[i]), names[i], fixes[i]);
            problems++;
        }
    }
    return problems;
}

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
    uint64_t rbac_refused = 0;
    cs_err *err = NULL;
    if (argc > 0)
        return pub_cmd_usage("preflight", "unknown argument \"%s\"", argv[0]);
    err = pub_cmd_o365(cfg, &o);
    if (err) {
        rc = pub_cmd_fail("preflight", err);
        goto cleanup;
    }
    /* Permissions first: without them every recipient would read as an error. */
    int perm = check_permissions(o);
    if (perm < 0) {
        rc = PUB_CMD_EXIT_FAIL;
        goto cleanup;
    }
    if (perm > 0) {
        printf("preflight: %d application permission(s) missing (above); recipients not checked\n", perm);
        rc = PUB_CMD_EXIT_PROBLEMS;
        goto cleanup;
    }
    printf("permission  ok: Exchange.ManageAsApp and User.Read.All granted\n");
    err = pub_latest_read_events(cfg, 0, &set);
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
        if (cls == FAILED && (strstr(r->detail, "403") || strstr(r->detail, "Unauthorized")))
            rbac_refused++;
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
    if (rbac_refused)
        printf("fix for permission: %s\n", FIX_RBAC);
    rc = counts[UNWRITABLE] + counts[UNKNOWN] + counts[FAILED] ? PUB_CMD_EXIT_PROBLEMS : PUB_CMD_EXIT_OK;
cleanup:
    free(evs);
    free(ents);
    free(res);
    pub_o365_free(o);
    pub_latest_free(set);
    return rc;
}
