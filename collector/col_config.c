#include "col_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_service_config.h"

static const char *const mode_values[] = {"auto", "dirsync", "usn", "syncrepl", NULL};
static const char *const sasl_values[] = {"none", "GSSAPI", NULL};
static const char *const election_values[] = {"none", "lockfile", "kubernetes-lease", NULL};

#define MS(x) (x)
#define SEC(x) ((x)*1000LL)
#define MIN(x) ((x)*60000LL)
#define HOUR(x) ((x)*3600000LL)

/* The collector's keys. Keep descriptions short: they are the --help-config text. */
static const cs_config_row col_rows[] = {
    {.name = "source.id",
     .type = CS_CONFIG_STRING,
     .required = true,
     .check = cs_config_check_id,
     .desc =
         "Stable id of this directory source (letters, digits, . _ -). It names the checkpoint and the "
         "Kafka transactional.id certsync-collector-<id>: replicas with one id fence each other, so never "
         "reuse it for another directory."},
    {.name = "source.site",
     .type = CS_CONFIG_STRING,
     .def = "",
     .desc = "Free-form site or forest name copied into every event's source (e.g. \"emea\")."},
    {.name = "ldap.url",
     .type = CS_CONFIG_STRING,
     .required = true,
     .check = cs_config_check_ldap_url,
     .desc = "Directory server: ldap://host[:port] or ldaps://host[:port]."},
    {.name = "ldap.starttls",
     .type = CS_CONFIG_BOOL,
     .def = "false",
     .desc = "Upgrade an ldap:// connection with StartTLS before binding."},
    {.name = "ldap.bind_dn",
     .type = CS_CONFIG_STRING,
     .desc = "DN (or user@domain on AD) for a simple bind; needs ldap.password_file. Unset: anonymous, or "
             "SASL with ldap.sasl_mech."},
    {.name = "ldap.password_file",
     .type = CS_CONFIG_SECRET,
     .desc = "File holding the bind password (a Kubernetes Secret); read at start."},
    {.name = "ldap.sasl_mech",
     .type = CS_CONFIG_ENUM,
     .def = "none",
     .allowed = sasl_values,
     .desc = "SASL mechanism: none (simple bind) or GSSAPI (Kerberos; credentials from the keytab/ccache in "
             "the environment)."},
    {.name = "ldap.tls.ca_file",
     .type = CS_CONFIG_FILE,
     .desc = "PEM bundle of CAs that signed the directory's certificate. Unset: the system CAs."},
    {.name = "ldap.tls.verify",
     .type = CS_CONFIG_BOOL,
     .def = "true",
     .desc = "Verify the directory's TLS certificate and host name. false is for tests only and is logged "
             "as a warning."},
    {.name = "ldap.allow_plaintext_bind",
     .type = CS_CONFIG_BOOL,
     .def = "false",
     .desc = "Allow a simple bind (password) over ldap:// without StartTLS. For tests only."},
    {.name = "ldap.base_dns",
     .type = CS_CONFIG_LIST,
     .required = true,
     .desc = "Search bases, e.g. [\"DC=corp,DC=example,DC=com\"]. DirSync needs naming-context roots; other "
             "DNs are filtered on the client."},
    {.name = "ldap.filter",
     .type = CS_CONFIG_STRING,
     .check = cs_config_check_ldap_filter,
     .def_doc = "per directory: AD " COL_CONFIG_FILTER_AD ", OpenLDAP " COL_CONFIG_FILTER_OPENLDAP,
     .desc = "LDAP filter selecting the users to sync."},
    {.name = "ldap.group_dn",
     .type = CS_CONFIG_STRING,
     .desc = "When set, only direct members of this group (its member or uniqueMember values; nested groups "
             "only with ldap.group_nested) that match ldap.filter under ldap.base_dns are in scope. The "
             "group is watched: a "
             "user added to it arrives with full state, a user removed from it gets an out_of_scope removal. "
             "Unset: every user the filter matches."},
    {.name = "ldap.group_nested",
     .type = CS_CONFIG_BOOL,
     .def = "false",
     .desc = "With ldap.group_dn: true also brings in the members of nested groups (a member that is a "
             "group, objectClass group, groupOfNames or groupOfUniqueNames, adds its own members, "
             "recursively; cycles are cut, at most 10,000 groups). Every nested group is watched, so a "
             "change anywhere in the closure is seen. false: direct members only."},
    {.name = "ldap.mode",
     .type = CS_CONFIG_ENUM,
     .def = "auto",
     .allowed = mode_values,
     .desc =
         "Change tracking: dirsync (AD, needs Replicating Directory Changes), usn (AD uSNChanged polling), "
         "syncrepl (OpenLDAP RFC 4533), auto (pick from the server's capabilities)."},
    {.name = "ldap.dirsync_object_security",
     .type = CS_CONFIG_BOOL,
     .def = "false",
     .desc = "DirSync with the object-security flag (LDAP_DIRSYNC_OBJECT_SECURITY): no Replicating "
             "Directory Changes right needed, but only objects and attributes the bind account can read are "
             "tracked, and deletions only if it can read CN=Deleted Objects (checked at start)."},
    {.name = "ldap.poll_interval",
     .type = CS_CONFIG_DURATION,
     .def = "1s",
     .min = MS(100),
     .max = HOUR(1),
     .desc = "Pause between incremental polls (dirsync, usn)."},
    {.name = "ldap.page_size",
     .type = CS_CONFIG_INT,
     .def = "500",
     .min = 1,
     .max = 5000,
     .desc = "Entries per page of paged searches (AD's MaxPageSize is 1000 by default)."},
    {.name = "ldap.timeout",
     .type = CS_CONFIG_DURATION,
     .def = "30s",
     .min = SEC(1),
     .max = MIN(10),
     .desc = "Limit for connecting and for each LDAP operation."},
    {.name = "topics.events",
     .type = CS_CONFIG_STRING,
     .def = "certsync.changes.v1",
     .check = cs_config_check_topic,
     .desc = "Compacted topic of change events (key = object id)."},
    {.name = "topics.checkpoint",
     .type = CS_CONFIG_STRING,
     .def = "certsync.collector-state.v1",
     .check = cs_config_check_topic,
     .desc = "Compacted topic of collector checkpoints (key = source id)."},
    {.name = "topics.held",
     .type = CS_CONFIG_STRING,
     .def = "certsync.held.v1",
     .check = cs_config_check_topic,
     .desc = "Topic of events held back by the mass-removal guard until released."},
    CS_SERVICE_CONFIG_BATCH_ROWS("1000", "500ms"),
    {.name = "guard.mass_removal_threshold",
     .type = CS_CONFIG_INT,
     .def = "500",
     .min = 1,
     .max = 10000000,
     .desc = "Hold removals when one pass would remove or empty the certificates of more objects than this."},
    CS_SERVICE_CONFIG_ROWS(9464),
    CS_SERVICE_CONFIG_KAFKA_ROW("transactional.id is set from source.id."),
    {.name = "election.mode",
     .type = CS_CONFIG_ENUM,
     .def = "none",
     .allowed = election_values,
     .desc = "Active/passive election before Kafka is touched, so replicas with one source.id do not fence "
             "each other on every restart: none (fencing alone), lockfile (an exclusive lock on "
             "election.lock_file on a shared volume), kubernetes-lease (a coordination.k8s.io Lease, "
             "election.kubernetes.*)."},
    {.name = "election.lock_file",
     .type = CS_CONFIG_STRING,
     .desc = "With election.mode: lockfile, the file every replica locks (fcntl); it is created when "
             "missing. It must be on a volume all replicas share (one node, or a file system with working "
             "POSIX locks)."},
    {.name = "election.kubernetes.api_url",
     .type = CS_CONFIG_STRING,
     .check = cs_config_check_https_url,
     .def_doc = "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
     .desc = "Kubernetes API server for the Lease."},
    {.name = "election.kubernetes.token_file",
     .type = CS_CONFIG_STRING,
     .def_doc = "/var/run/secrets/kubernetes.io/serviceaccount/token",
     .desc = "Bearer token file; re-read for every request (projected tokens rotate)."},
    {.name = "election.kubernetes.ca_file",
     .type = CS_CONFIG_FILE,
     .def_doc = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
     .desc = "PEM CA bundle that signed the API server's certificate."},
    {.name = "election.kubernetes.namespace",
     .type = CS_CONFIG_STRING,
     .def_doc = "the pod's namespace (service account namespace file)",
     .desc = "Namespace of the Lease."},
    {.name = "election.kubernetes.lease_name",
     .type = CS_CONFIG_STRING,
     .def_doc = "certsync-collector-<source.id>",
     .desc = "Name of the Lease every replica of this source competes for (the Role's resourceNames)."},
    {.name = "election.kubernetes.identity",
     .type = CS_CONFIG_STRING,
     .def_doc = "$POD_NAME, else the host name",
     .desc = "This replica's holderIdentity; unique per replica."},
    {.name = "election.kubernetes.lease_duration",
     .type = CS_CONFIG_DURATION,
     .def = "15s",
     .min = SEC(1),
     .max = MIN(10),
     .desc = "How long a standby waits after it last saw the Lease change before taking it (whole "
             "seconds; client-go's LeaseDuration)."},
    {.name = "election.kubernetes.renew_deadline",
     .type = CS_CONFIG_DURATION,
     .def = "10s",
     .min = MS(100),
     .max = MIN(10),
     .desc = "The active replica stops producing and exits (code 6) when it could not renew for this long; "
             "must be below lease_duration."},
    {.name = "election.kubernetes.retry_period",
     .type = CS_CONFIG_DURATION,
     .def = "2s",
     .min = MS(50),
     .max = MIN(1),
     .desc = "Interval of renewals (active) and polls (standby); must be below renew_deadline."},
    {.name = NULL},
};

/* election.kubernetes.*: the timing rule client-go enforces, checked at load so --check-config sees it. */
static void col_election_finalize(cs_config *c)
{
    const char *k[] = {"election.kubernetes.lease_duration", "election.kubernetes.renew_deadline",
                       "election.kubernetes.retry_period"};
    bool lease = strcmp(cs_config_get_string(c, "election.mode"), "kubernetes-lease") == 0;
    if (!lease) {
        static const char *const all[] = {
            "election.kubernetes.api_url",        "election.kubernetes.token_file",
            "election.kubernetes.ca_file",        "election.kubernetes.namespace",
            "election.kubernetes.lease_name",     "election.kubernetes.identity",
            "election.kubernetes.lease_duration", "election.kubernetes.renew_deadline",
            "election.kubernetes.retry_period"};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (cs_config_is_set(c, all[i]))
                cs_config_add_warning(c, all[i], "%s is ignored: election.mode is not kubernetes-lease",
                                      all[i]);
        return;
    }
    for (size_t i = 0; i < 3; i++)
        if (!cs_config_key_ok(c, k[i]))
            return;
    long long dur = cs_config_get_duration_ms(c, k[0]);
    long long dl = cs_config_get_duration_ms(c, k[1]);
    long long rp = cs_config_get_duration_ms(c, k[2]);
    if (dur % 1000 != 0)
        cs_config_add_error(
            c, k[0], "%s: %lld ms is not whole seconds (a Lease holds leaseDurationSeconds); use e.g. 15s",
            k[0], dur);
    if (!(dur > dl && dl > rp))
        cs_config_add_error(
            c, k[1],
            "election.kubernetes: need lease_duration (%lld ms) > renew_deadline (%lld ms) > "
            "retry_period (%lld ms), so the active replica gives up before a standby may take "
            "over; the defaults are 15s, 10s, 2s",
            dur, dl, rp);
}

/* Cross-field rules: what a single row cannot say. */
static void col_finalize(cs_config *c)
{
    cs_policy_config_finalize(c);
    const char *url = cs_config_get_string(c, "ldap.url");
    bool ldaps = url && strncmp(url, "ldaps://", 8) == 0;
    bool starttls = cs_config_get_bool(c, "ldap.starttls");
    bool sasl = strcmp(cs_config_get_string(c, "ldap.sasl_mech"), "none") != 0;
    bool has_dn = cs_config_get_string(c, "ldap.bind_dn") != NULL;
    bool has_pw = cs_config_is_set(c, "ldap.password_file");
    bool urls_ok = url && cs_config_key_ok(c, "ldap.url") && cs_config_key_ok(c, "ldap.starttls");

    if (urls_ok && ldaps && starttls)
        cs_config_add_error(
            c, "ldap.starttls",
            "ldap.starttls: true with an ldaps:// URL: ldaps is already encrypted; use one or "
            "the other");
    if (!sasl && has_dn && !has_pw && cs_config_key_ok(c, "ldap.password_file"))
        cs_config_add_error(
            c, "ldap.bind_dn",
            "ldap.bind_dn is set but ldap.password_file is not: a simple bind needs a password "
            "file (or set ldap.sasl_mech: GSSAPI)");
    if (!sasl && !has_dn && has_pw)
        cs_config_add_error(c, "ldap.password_file",
                            "ldap.password_file is set but ldap.bind_dn is not: set the DN to bind as");
    if (sasl && has_pw)
        cs_config_add_warning(c, "ldap.password_file",
                              "ldap.password_file is ignored with ldap.sasl_mech: GSSAPI");
    if (urls_ok && !sasl && has_dn && !ldaps && !starttls) {
        if (!cs_config_get_bool(c, "ldap.allow_plaintext_bind"))
            cs_config_add_error(
                c, "ldap.bind_dn",
                "ldap.bind_dn: a simple bind over %s without StartTLS would send the password in clear text: "
                "use ldaps://, set ldap.starttls: true, or (tests only) set "
                "ldap.allow_plaintext_bind: true",
                url);
        else
            cs_config_add_warning(
                c, "ldap.allow_plaintext_bind",
                "the bind password is sent in clear text (ldap.allow_plaintext_bind: true)");
    }
    if (!cs_config_get_bool(c, "ldap.tls.verify"))
        cs_config_add_warning(c, "ldap.tls.verify",
                              "ldap.tls.verify: false: the directory's certificate is not checked; anyone on "
                              "the path can impersonate it");
    if (urls_ok && !ldaps && !starttls && cs_config_is_set(c, "ldap.tls.ca_file"))
        cs_config_add_warning(c, "ldap.tls.ca_file", "ldap.tls.ca_file is unused: the connection is not TLS");
    if (cs_config_get_bool(c, "ldap.dirsync_object_security") && cs_config_key_ok(c, "ldap.mode") &&
        (strcmp(cs_config_get_string(c, "ldap.mode"), "usn") == 0 ||
         strcmp(cs_config_get_string(c, "ldap.mode"), "syncrepl") == 0))
        cs_config_add_warning(c, "ldap.dirsync_object_security",
                              "ldap.dirsync_object_security is ignored: ldap.mode is %s, not dirsync",
                              cs_config_get_string(c, "ldap.mode"));
    if (cs_config_get_bool(c, "ldap.group_nested") && !cs_config_is_set(c, "ldap.group_dn"))
        cs_config_add_warning(c, "ldap.group_nested",
                              "ldap.group_nested is ignored: ldap.group_dn is not set");
    cs_service_config_finalize_kafka(c, COL_CONFIG_TXN_ID_PREFIX, "source.id", "choose");
    col_election_finalize(c);
}

static const cs_config_spec col_spec = {
    .service = "certsync-collector",
    .rows = col_rows,
    .finalize = col_finalize,
};

const cs_config_spec *col_config_spec(void)
{
    return &col_spec;
}

cs_err *col_config_load(const char *path, col_config **out)
{
    cs_config *raw = NULL;
    col_config *cfg = NULL;
    *out = NULL;
    cs_err *err = cs_config_load(&col_spec, path, &raw);
    if (err)
        goto cleanup;
    cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        err = cs_err_new(CS_ERR_NOMEM, 0, "%s: out of memory", path);
        goto cleanup;
    }
    cfg->raw = raw;
    cfg->source_id = cs_config_get_string(raw, "source.id");
    cfg->source_site = cs_config_get_string(raw, "source.site");
    cfg->ldap_url = cs_config_get_string(raw, "ldap.url");
    cfg->ldap_starttls = cs_config_get_bool(raw, "ldap.starttls");
    cfg->ldap_bind_dn = cs_config_get_string(raw, "ldap.bind_dn");
    cfg->ldap_password = cs_config_get_secret(raw, "ldap.password_file");
    cfg->ldap_sasl_mech = (col_sasl_mech)cs_config_get_enum_index(raw, "ldap.sasl_mech");
    cfg->ldap_tls_ca_file = cs_config_get_string(raw, "ldap.tls.ca_file");
    cfg->ldap_tls_verify = cs_config_get_bool(raw, "ldap.tls.verify");
    cfg->ldap_allow_plaintext_bind = cs_config_get_bool(raw, "ldap.allow_plaintext_bind");
    cfg->ldap_base_dn_count = cs_config_get_list(raw, "ldap.base_dns", &cfg->ldap_base_dns);
    cfg->ldap_filter = cs_config_get_string(raw, "ldap.filter");
    cfg->ldap_group_dn = cs_config_get_string(raw, "ldap.group_dn");
    cfg->ldap_group_nested = cs_config_get_bool(raw, "ldap.group_nested");
    cfg->ldap_mode = (col_ldap_mode)cs_config_get_enum_index(raw, "ldap.mode");
    cfg->ldap_dirsync_object_security = cs_config_get_bool(raw, "ldap.dirsync_object_security");
    cfg->ldap_poll_interval_ms = cs_config_get_duration_ms(raw, "ldap.poll_interval");
    cfg->ldap_page_size = (int)cs_config_get_int(raw, "ldap.page_size");
    cfg->ldap_timeout_ms = cs_config_get_duration_ms(raw, "ldap.timeout");
    cfg->topic_events = cs_config_get_string(raw, "topics.events");
    cfg->topic_checkpoint = cs_config_get_string(raw, "topics.checkpoint");
    cfg->topic_held = cs_config_get_string(raw, "topics.held");
    cfg->batch_max_events = (int)cs_config_get_int(raw, "batch.max_events");
    cfg->batch_max_wait_ms = cs_config_get_duration_ms(raw, "batch.max_wait");
    cfg->guard_mass_removal_threshold = (int)cs_config_get_int(raw, "guard.mass_removal_threshold");
    cfg->admin_listen = cs_config_get_string(raw, "admin.listen");
    cs_config_get_listen(raw, "admin.listen", &cfg->admin_host, &cfg->admin_port);
    cfg->log_level = (cs_log_level)cs_config_get_enum_index(raw, "log.level");
    /* source.id is at most 100 characters (cs_config_check_id), so this always fits. */
    snprintf(cfg->transactional_id, sizeof(cfg->transactional_id), "%s%s", COL_CONFIG_TXN_ID_PREFIX,
             cfg->source_id);
    cfg->readiness_expiring_soon_days = cs_policy_config_expiring_soon_days(raw);
    /* The collector reports without the issuer and revocation rules (a full parse of every value); the
     * files are still loaded here, so a bad one stops startup and --check-config. */
    err = cs_policy_config_build(raw, CS_POLICY_CONFIG_CHEAP, &cfg->policy);
    if (err)
        goto cleanup;
    *out = cfg;
    cfg = NULL;
    raw = NULL;
cleanup:
    if (cfg)
        cs_policy_free(cfg->policy);
    free(cfg);
    cs_config_free(raw);
    return err;
}

void col_config_free(col_config *cfg)
{
    if (!cfg)
        return;
    cs_policy_free(cfg->policy);
    cs_config_free(cfg->raw);
    free(cfg);
}

const char *col_config_filter(const col_config *cfg, bool active_directory)
{
    if (cfg->ldap_filter)
        return cfg->ldap_filter;
    return active_directory ? COL_CONFIG_FILTER_AD : COL_CONFIG_FILTER_OPENLDAP;
}

cs_err *col_config_kafka_conf(const col_config *cfg, rd_kafka_conf_t **out)
{
    char errstr[512];
    cs_err *err = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    *out = NULL;
    err = cs_config_apply_kafka(cfg->raw, conf);
    if (err)
        goto cleanup;
    if (rd_kafka_conf_set(conf, "transactional.id", cfg->transactional_id, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        err = cs_err_new(CS_ERR_CONFIG, 0, "%s: transactional.id \"%s\" (from source.id) rejected: %s",
                         cs_config_path(cfg->raw), cfg->transactional_id, errstr);
        goto cleanup;
    }
    *out = conf;
    conf = NULL;
cleanup:
    if (conf)
        rd_kafka_conf_destroy(conf);
    return err;
}
