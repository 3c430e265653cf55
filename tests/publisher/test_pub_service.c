/*
 * The certsync-publisher binary end to end: real Kafka (fixture kafka) and the Office 365 emulator (fixture
 * o365emu). Each test makes its own topics, group and instance id, resets the emulator, seeds recipients
 * whose immutable id is base64 of the objectGUID in the events, produces change events built with the
 * common protobuf code (real certificates made with openssl), runs the real binary and proves the outcome
 * from the emulator's journal and state and from the Kafka topics.
 *
 *   test_pub_service <name>   runs one test (ctest registers one entry per test)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certsync/v1/change_event.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "certsync/v1/publish_result.pb-c.h"
#include "cs_event.h"
#include "kafka_test_util.h"
#include "pub_test_support.h"

#define N_CERTS 6
#define WAIT_MS 90000

static pts_emu_env emu_env;     /* the emulator fixture's env file */
static const char *g_auth_yaml; /* NULL: auth: secret with the emulator's secret file */
/* The mechanics tests move certificates between users (user0 gets user3's): the address rule is off for them;
 * the policy and secrets tests run with the default policy (""). */
static const char *g_policy_yaml = "policy.check_address: false\n";
static char work[256];
static unsigned char *cert[N_CERTS], *smime[N_CERTS];
static size_t cert_len[N_CERTS], smime_len[N_CERTS];

/* ------------------------------------------------------------------ small helpers */

static void sha256_hex(const unsigned char *d, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(d, n, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static long emu(const char *method, const char *path, const char *json)
{
    return pts_emu_call(emu_env.admin, method, path, json, NULL);
}

/* Seconds of an ISO time "YYYY-MM-DDThh:mm:ss.ffffffZ" since midnight (tests run for minutes). */
static double iso_secs(const char *t)
{
    int h = 0, m = 0;
    double s = 0;
    if (!t || sscanf(t + 11, "%d:%d:%lf", &h, &m, &s) != 3)
        fail_msg("bad journal time %s", t ? t : "(null)");
    return h * 3600.0 + m * 60.0 + s;
}

static unsigned char *run_der(const char *cmd, size_t *len)
{
    char tmp[300], full[1024];
    snprintf(tmp, sizeof tmp, "%s/der.tmp", work);
    snprintf(full, sizeof full, "%s > %s 2>/dev/null", cmd, tmp);
    if (system(full) != 0)
        return NULL;
    unsigned char *d = (unsigned char *)pts_slurp(tmp, len);
    unlink(tmp);
    return d;
}

/* ------------------------------------------------------------------ setup */

static int setup(void **state)
{
    (void)state;
    if (pts_emu_env_load(&emu_env) != 0)
        return -1;
    snprintf(work, sizeof work, "/tmp/test_pub_service.XXXXXX");
    if (!mkdtemp(work))
        return -1;
    for (int i = 0; i < N_CERTS; i++) {
        char cmd[1024], pem[300];
        snprintf(pem, sizeof pem, "%s/c%d.pem", work, i);
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s/k%d.pem "
                 "-subj /CN=user%d -addext subjectAltName=email:user%d@%s -days 365 -out %s 2>/dev/null",
                 work, i, i, i, emu_env.domain, pem);
        if (system(cmd) != 0)
            return -1;
        snprintf(cmd, sizeof cmd, "openssl x509 -in %s -outform DER", pem);
        cert[i] = run_der(cmd, &cert_len[i]);
        snprintf(cmd, sizeof cmd, "openssl crl2pkcs7 -nocrl -certfile %s -outform DER", pem);
        smime[i] = run_der(cmd, &smime_len[i]);
        if (!cert[i] || !smime[i])
            return -1;
    }
    return emu_env.url[0] && emu_env.admin[0] ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_CERTS; i++) {
        free(cert[i]);
        free(smime[i]);
    }
    if (getenv("CS_TEST_KEEP_WORK")) { /* debugging: keep the logs and configs */
        fprintf(stderr, "kept %s\n", work);
        return 0;
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", work);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ one test's world */

typedef pts_topics world; /* per-test topics, group, instance id, partitions and producer */

static void guid_of(int user, unsigned char g[16])
{
    for (int i = 0; i < 16; i++)
        g[i] = (unsigned char)(0x10 + i);
    g[15] = (unsigned char)user;
    g[14] = (unsigned char)(getpid() & 0xff);
}

static void upn_of(int user, char *out, size_t cap)
{
    snprintf(out, cap, "user%d@%s", user, emu_env.domain);
}

/* Seeds recipient `user` (a mailbox; write_scope: directory-synced and not cloud-managed). */
static void seed_recipient(int user, int write_scope)
{
    unsigned char g[16];
    char id[40], upn[320], json[1024];
    guid_of(user, g);
    pts_b64(g, 16, id);
    upn_of(user, upn, sizeof upn);
    snprintf(json, sizeof json,
             "{\"UserPrincipalName\":\"%s\",\"PrimarySmtpAddress\":\"%s\",\"RecipientTypeDetails\":"
             "\"UserMailbox\",\"ExternalDirectoryObjectId\":\"00000000-0000-4000-8000-%012d\","
             "\"onPremisesImmutableId\":\"%s\",\"IsDirSynced\":%s,\"IsExchangeCloudManaged\":false}",
             upn, upn, user, id, write_scope ? "true" : "false");
    assert_int_equal(emu("POST", "/state/recipients", json), 200);
}

static void world_new(world *w, int parts)
{
    pts_topics_new(w, "svc", parts, 0, 1);
    assert_int_equal(emu("POST", "/reset", NULL), 200);
}

static void produce_raw(world *w, int32_t part, const char *key, const void *val, size_t len)
{
    rd_kafka_resp_err_t e =
        rd_kafka_producev(w->prod, RD_KAFKA_V_TOPIC(w->events), RD_KAFKA_V_PARTITION(part),
                          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)(uintptr_t)val, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(w->prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Produces a change event of `user` at `version` carrying certificate `c` in both attributes (userCertificate
 * DER, userSMIMECertificate PKCS#7), or a removal when c < 0, to partition `part`. */
static void produce_event(world *w, int32_t part, int user, uint32_t version, int c)
{
    char key[48], upn[320];
    unsigned char g[16];
    guid_of(user, g);
    upn_of(user, upn, sizeof upn);
    snprintf(key, sizeof key, "src/user%d", user);
    size_t len = 0;
    /* mail = upn: the policy's address rule matches the certificate's address against mail */
    uint8_t *buf = c < 0 ? pts_encode_change_event(user, g, upn, upn, version, NULL, 0, NULL, 0, &len)
                         : pts_encode_change_event(user, g, upn, upn, version, cert[c], cert_len[c], smime[c],
                                                   smime_len[c], &len);
    produce_raw(w, part, key, buf, len);
    free(buf);
}

/* Writes the publisher's config for this world; returns the path (static per port). */
static void write_config(const world *w, int port, char *path, size_t cap)
{
    char auth[1400];
    if (g_auth_yaml)
        snprintf(auth, sizeof auth, "%s", g_auth_yaml);
    else
        snprintf(auth, sizeof auth, "  auth: secret\n  client_secret_file: %s\n", emu_env.secret_file);
    snprintf(path, cap, "%s/pub-%d.yaml", work, port);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "publisher.instance_id: %s\n"
            "topics: {events: %s, state: %s, results: %s, dlq: %s, retry: %s}\n"
            "o365:\n"
            "  tenant_id: %s\n  tenant_domain: %s\n  client_id: %s\n"
            "  authority_url: %s\n  graph_url: %s\n  exchange_url: %s\n"
            "  exchange_resource: https://outlook.office365.com\n"
            "  graph_resource: https://graph.microsoft.com\n"
            "%s  ca_file: %s\n"
            "resolve.order: [immutable_id, upn]\n"
            "batch: {max_events: 100, max_wait: 300ms}\n"
            "admin.listen: 127.0.0.1:%d\n"
            "%s"
            "kafka:\n  bootstrap.servers: %s\n  group.id: %s\n  session.timeout.ms: 6000\n",
            w->instance, w->events, w->state, w->results, w->dlq, w->retry, emu_env.tenant, emu_env.domain,
            emu_env.client, emu_env.url, emu_env.url, emu_env.url, auth, emu_env.ca, port, g_policy_yaml,
            kt_bootstrap(), w->group);
    fclose(f);
}

/* Starts the binary with `config`; `once` adds --once; `fault` sets CERTSYNC_PUB_FAULT. Output goes to
 * <work>/<port>.log. */
static pid_t spawn(const char *config, int once, const char *fault, int port)
{
    char log[300];
    snprintf(log, sizeof log, "%s/pub-%d.log", work, port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (fault)
            setenv("CERTSYNC_PUB_FAULT", fault, 1);
        else
            unsetenv("CERTSYNC_PUB_FAULT");
        const char *bin = getenv("CERTSYNC_PUBLISHER");
        if (once)
            execl(bin, bin, "--config", config, "--once", (char *)NULL);
        else
            execl(bin, bin, "--config", config, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void dump_log(int port)
{
    char log[300];
    snprintf(log, sizeof log, "%s/pub-%d.log", work, port);
    pts_dump_tail("publisher log", log);
}

/* Waits (bounded) for `pid` to exit; returns the raw wait status; fails the test on timeout. */
static int wait_exit(pid_t pid, int port, long long timeout_ms)
{
    int st = 0;
    if (!pts_wait_pid(pid, timeout_ms, &st)) {
        dump_log(port);
        fail_msg("publisher pid %d did not exit within %lld ms", (int)pid, timeout_ms);
    }
    return st;
}

static void expect_exit_code(int st, int code, int port)
{
    if (!WIFEXITED(st) || WEXITSTATUS(st) != code) {
        dump_log(port);
        fail_msg("publisher: wanted exit %d, got %s %d", code, WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
}

/* Runs the binary with --once and expects exit 0; returns the port its log is named after. */
static int run_once(const world *w, const char *fault, int expect_sigkill)
{
    char cfg[400];
    int port = pts_free_port();
    write_config(w, port, cfg, sizeof cfg);
    int st = wait_exit(spawn(cfg, 1, fault, port), port, WAIT_MS);
    if (expect_sigkill) {
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
            dump_log(port);
            fail_msg("publisher was to kill itself before the commit");
        }
        return port;
    }
    expect_exit_code(st, 0, port);
    return port;
}

static long admin_get(int port, const char *path, char **out)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    return pts_http("GET", url, NULL, out);
}

static void wait_ready(int port, pid_t pid)
{
    long long end = pts_mono_ms() + WAIT_MS;
    while (admin_get(port, "/readyz", NULL) != 200) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            dump_log(port);
            fail_msg("publisher exited before it was ready");
        }
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("publisher not ready within %d ms", WAIT_MS);
        }
        pts_nap_ms(100);
    }
}

/* ------------------------------------------------------------------ journal checks */

static long long last_seq(void)
{
    json_t *j = pts_emu_json(emu_env.admin, "/journal?kind=request&since=999999999");
    long long s = json_integer_value(json_object_get(j, "last_seq"));
    json_decref(j);
    return s;
}

/* Change entries of `attr` for recipient `user` after `since`: count of those that changed something and of
 * identical re-writes; `after` of the last one compared with `want_sha` ("" = empty list, NULL = any). */
typedef struct changes {
    int changed, unchanged;
    char last_after[80]; /* first hash of the last entry's after ("" when empty) */
    double first_time;
} changes;

static changes changes_of(long long since, int user, const char *attr)
{
    char path[128], upn[320];
    snprintf(path, sizeof path, "/journal?kind=change&since=%lld", since);
    upn_of(user, upn, sizeof upn);
    json_t *j = pts_emu_json(emu_env.admin, path);
    changes c;
    memset(&c, 0, sizeof c);
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        const char *smtp = json_string_value(json_object_get(e, "primary_smtp"));
        const char *a = json_string_value(json_object_get(e, "attribute"));
        if (!smtp || !a || strcasecmp(smtp, upn) != 0 || strcmp(a, attr) != 0)
            continue;
        json_t *after = json_object_get(e, "after");
        const char *h = json_array_size(after) > 0 ? json_string_value(json_array_get(after, 0)) : "";
        if (json_array_size(after) > 1)
            fail_msg("%s of user%d: %zu values written, want at most 1", attr, user, json_array_size(after));
        if (json_is_true(json_object_get(e, "unchanged"))) {
            /* An identical re-write must repeat exactly the state before it: never a regression. */
            if (c.changed + c.unchanged > 0)
                assert_string_equal(h, c.last_after);
            c.unchanged++;
        } else {
            c.changed++;
        }
        if (c.changed + c.unchanged == 1)
            c.first_time = iso_secs(json_string_value(json_object_get(e, "time")));
        snprintf(c.last_after, sizeof c.last_after, "%s", h);
    }
    json_decref(j);
    return c;
}

/* Exactly one real write of certificate `c` (both attributes) for `user` since `since`, no re-writes. */
static void expect_written_once(long long since, int user, int c)
{
    char hc[65], hs[65];
    sha256_hex(cert[c], cert_len[c], hc);
    sha256_hex(smime[c], smime_len[c], hs);
    changes uc = changes_of(since, user, "UserCertificate");
    changes us = changes_of(since, user, "UserSMimeCertificate");
    if (uc.changed != 1 || uc.unchanged != 0 || us.changed != 1 || us.unchanged != 0)
        fail_msg("user%d: UserCertificate %d+%d writes, UserSMimeCertificate %d+%d, want exactly 1 each",
                 user, uc.changed, uc.unchanged, us.changed, us.unchanged);
    assert_string_equal(uc.last_after, hc);
    assert_string_equal(us.last_after, hs);
}

static void expect_no_write(long long since, int user)
{
    changes uc = changes_of(since, user, "UserCertificate");
    changes us = changes_of(since, user, "UserSMimeCertificate");
    if (uc.changed + uc.unchanged + us.changed + us.unchanged != 0)
        fail_msg("user%d: %d writes since seq %lld, want none", user,
                 uc.changed + uc.unchanged + us.changed + us.unchanged, since);
}

/* The emulator's state of `user`: its UserCertificate is exactly certificate `c` (-1: empty). */
static void expect_state(int user, int c)
{
    char path[400], upn[320];
    upn_of(user, upn, sizeof upn);
    snprintf(path, sizeof path, "/state/recipients/%s", upn);
    json_t *r = pts_emu_json(emu_env.admin, path);
    json_t *uc = json_object_get(r, "UserCertificate");
    if (c < 0) {
        assert_int_equal(json_array_size(uc), 0);
    } else {
        char *want = malloc(cert_len[c] * 2 + 4);
        pts_b64(cert[c], cert_len[c], want);
        assert_int_equal(json_array_size(uc), 1);
        assert_string_equal(json_string_value(json_array_get(uc, 0)), want);
        free(want);
    }
    json_decref(r);
}

/* Set-* requests since `since` (any recipient). */
static int set_requests(long long since)
{
    char path[128];
    snprintf(path, sizeof path, "/journal?kind=request&since=%lld", since);
    json_t *j = pts_emu_json(emu_env.admin, path);
    json_t *e;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        const char *c = json_string_value(json_object_get(e, "cmdlet"));
        n += c && strncmp(c, "Set-", 4) == 0;
    }
    json_decref(j);
    return n;
}

/* ------------------------------------------------------------------ tests */

/* Apply, update, clear; a stale and a duplicate event write nothing; a restart re-reads nothing. */
static void apply_update_clear_restart(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1);
    for (int u = 0; u < 3; u++)
        seed_recipient(u, 0);
    long long s0 = last_seq();
    produce_event(&w, 0, 0, 1, 0);
    produce_event(&w, 0, 1, 1, 1);
    produce_event(&w, 0, 2, 1, 2);
    run_once(&w, NULL, 0);
    expect_written_once(s0, 0, 0);
    expect_written_once(s0, 1, 1);
    expect_written_once(s0, 2, 2);

    long long s1 = last_seq();
    produce_event(&w, 0, 0, 2, 3);  /* update */
    produce_event(&w, 0, 1, 1, 4);  /* stale: version 1 again (with other content) */
    produce_event(&w, 0, 1, 3, 1);  /* duplicate: newer version, same content */
    produce_event(&w, 0, 2, 2, -1); /* removal */
    run_once(&w, NULL, 0);
    expect_written_once(s1, 0, 3);
    expect_no_write(s1, 1);
    changes cu = changes_of(s1, 2, "UserCertificate"), cs = changes_of(s1, 2, "UserSMimeCertificate");
    assert_int_equal(cu.changed, 1);
    assert_int_equal(cs.changed, 1);
    assert_string_equal(cu.last_after, "");
    assert_string_equal(cs.last_after, "");
    expect_state(0, 3);
    expect_state(1, 1);
    expect_state(2, -1);

    /* Restart: everything is committed, nothing is read or written again. */
    long long s2 = last_seq();
    run_once(&w, NULL, 0);
    assert_int_equal(set_requests(s2), 0);
    pts_topics_free(&w);
}

/* The service mode: probes answer, the metrics count the write, SIGTERM exits 0. */
static void service_probes_sigterm(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1);
    seed_recipient(0, 0);
    long long s0 = last_seq();
    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    pid_t pid = spawn(cfg, 0, NULL, port);
    wait_ready(port, pid);
    char *text = NULL;
    assert_int_equal(admin_get(port, "/healthz", &text), 200);
    assert_non_null(strstr(text, "\"ok\""));
    free(text);
    produce_event(&w, 0, 0, 1, 0);
    long long end = pts_mono_ms() + WAIT_MS;
    for (;;) {
        assert_int_equal(admin_get(port, "/metrics", &text), 200);
        int done = strstr(text, "certsync_publisher_applied_total 1") != NULL &&
                   strstr(text, "certsync_publisher_transactions_total{result=\"commit\"}") != NULL;
        if (done) {
            assert_non_null(strstr(text, "certsync_publisher_events_total 1"));
            assert_non_null(
                strstr(text, "certsync_publisher_http_requests_total{api=\"o365\",status=\"200\"}"));
            assert_non_null(
                strstr(text, "certsync_publisher_http_requests_total{api=\"token\",status=\"200\"}"));
            assert_non_null(strstr(text, "certsync_publisher_token_refreshes_total"));
            assert_non_null(strstr(text, "certsync_publisher_consumer_lag{partition=\"0\"} 0"));
            assert_non_null(strstr(text, "certsync_publisher_apply_seconds_count 1"));
        }
        free(text);
        if (done)
            break;
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("the write was not counted in /metrics");
        }
        pts_nap_ms(100);
    }
    expect_written_once(s0, 0, 0);
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), 0, port);
    /* Restarted, it re-reads nothing committed. */
    long long s1 = last_seq();
    run_once(&w, NULL, 0);
    assert_int_equal(set_requests(s1), 0);
    pts_topics_free(&w);
}

/* Reads every record of the (single-partition) dead-letter topic (read_committed). */
static int read_dead_letters(const world *w, Certsync__V1__DeadLetterReason *reasons, int cap)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kt_conf();
    char *group = kt_unique_name("svc-dlq-reader");
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, w->dlq, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0;
    long long end = pts_mono_ms() + 30000;
    while (pts_mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        assert_int_equal(m->err, 0);
        Certsync__V1__DeadLetter *d = certsync__v1__dead_letter__unpack(NULL, m->len, m->payload);
        assert_non_null(d);
        if (n < cap)
            reasons[n] = d->reason;
        n++;
        certsync__v1__dead_letter__free_unpacked(d, NULL);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(group);
    return n;
}

/* Undecodable record and write-scope recipient go to the dead-letter topic and the partition moves on; a
 * 429 with Retry-After is honoured for its recipient without holding up the others. */
static void dead_letters_and_throttling(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1);
    seed_recipient(0, 1); /* write scope */
    seed_recipient(1, 0);
    seed_recipient(2, 0);
    seed_recipient(3, 0);
    char upn1[320], rule[800];
    upn_of(1, upn1, sizeof upn1);
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"exchange\",\"identity\":\"%s\",\"action\":\"status\",\"status\":429,"
             "\"retry_after\":2,\"count\":1}",
             upn1);
    assert_int_equal(emu("POST", "/faults", rule), 200);
    long long s0 = last_seq();
    produce_raw(&w, 0, "src/garbage", "\xff\xff not a protobuf", 17);
    produce_event(&w, 0, 0, 1, 0);
    produce_event(&w, 0, 1, 1, 1);
    produce_event(&w, 0, 2, 1, 2);
    produce_event(&w, 0, 3, 1, 3);
    run_once(&w, NULL, 0);

    Certsync__V1__DeadLetterReason reasons[8];
    int n = read_dead_letters(&w, reasons, 8);
    assert_int_equal(n, 2);
    int undecodable = 0, scope = 0;
    for (int i = 0; i < n; i++) {
        undecodable += reasons[i] == CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNDECODABLE;
        scope += reasons[i] == CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_WRITE_SCOPE;
    }
    assert_int_equal(undecodable, 1);
    assert_int_equal(scope, 1);
    expect_no_write(s0, 0);
    expect_written_once(s0, 1, 1);
    expect_written_once(s0, 2, 2);
    expect_written_once(s0, 3, 3);

    /* The 429's time, from the request journal. */
    char path[128];
    snprintf(path, sizeof path, "/journal?kind=request&since=%lld", s0);
    json_t *j = pts_emu_json(emu_env.admin, path);
    json_t *e;
    size_t i;
    double t429 = -1;
    int n429 = 0;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        if (json_integer_value(json_object_get(e, "status")) == 429) {
            t429 = iso_secs(json_string_value(json_object_get(e, "time")));
            n429++;
        }
    }
    json_decref(j);
    assert_int_equal(n429, 1);
    double t1 = changes_of(s0, 1, "UserCertificate").first_time;
    double t2 = changes_of(s0, 2, "UserCertificate").first_time;
    double t3 = changes_of(s0, 3, "UserCertificate").first_time;
    /* Retry-After 2 s honoured (journal times have microseconds; allow 50 ms of clock rounding). */
    if (t1 - t429 < 1.95)
        fail_msg("user1 re-sent %.3f s after its 429 with Retry-After 2", t1 - t429);
    /* The others were not held up by user1's wait. */
    if (t2 - t429 >= 1.95 || t3 - t429 >= 1.95)
        fail_msg("other recipients waited for user1's Retry-After (%.3f s, %.3f s)", t2 - t429, t3 - t429);
    pts_topics_free(&w);
}

/* SIGKILL after the Office 365 write and before the commit: the next run re-applies identically. */
static void kill9_before_commit_idempotent(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1);
    seed_recipient(0, 0);
    seed_recipient(1, 0);
    long long s0 = last_seq();
    produce_event(&w, 0, 0, 1, 0);
    produce_event(&w, 0, 1, 1, 1);
    run_once(&w, "kill_before_commit", 1);
    /* The writes landed, the commit did not. */
    changes c0 = changes_of(s0, 0, "UserCertificate");
    assert_int_equal(c0.changed, 1);
    long long s1 = last_seq();
    run_once(&w, NULL, 0);
    /* Re-applied: at most an identical write per attribute, never another state. */
    for (int u = 0; u < 2; u++) {
        changes a = changes_of(s0, u, "UserCertificate"), b = changes_of(s0, u, "UserSMimeCertificate");
        assert_int_equal(a.changed, 1);
        assert_int_equal(b.changed, 1);
        assert_true(a.unchanged <= 1 && b.unchanged <= 1);
        expect_state(u, u);
    }
    /* Now committed: a third run writes nothing. */
    long long s2 = last_seq();
    (void)s1;
    run_once(&w, NULL, 0);
    assert_int_equal(set_requests(s2), 0);
    pts_topics_free(&w);
}

/* Two instances with one instance id: the older is fenced and exits with code 3; the newer goes on. */
static void fencing_older_instance(void **state)
{
    (void)state;
    world w;
    world_new(&w, 2);
    seed_recipient(0, 0);
    seed_recipient(1, 0);
    char cfg_a[400], cfg_b[400];
    int port_a = pts_free_port(), port_b = pts_free_port();
    while (port_b == port_a)
        port_b = pts_free_port();
    write_config(&w, port_a, cfg_a, sizeof cfg_a);
    write_config(&w, port_b, cfg_b, sizeof cfg_b);
    pid_t a = spawn(cfg_a, 0, NULL, port_a);
    wait_ready(port_a, a);
    pid_t b = spawn(cfg_b, 0, NULL, port_b);
    wait_ready(port_b, b);
    /* An event on each partition: whichever A owns, its next transaction meets the fence. */
    long long s0 = last_seq();
    produce_event(&w, 0, 0, 1, 0);
    produce_event(&w, 1, 1, 1, 1);
    int st = wait_exit(a, port_a, WAIT_MS);
    expect_exit_code(st, 3, port_a);
    /* B takes over everything; both recipients end up written with their certificates. */
    long long end = pts_mono_ms() + WAIT_MS;
    while (changes_of(s0, 0, "UserCertificate").changed + changes_of(s0, 1, "UserCertificate").changed < 2) {
        if (pts_mono_ms() > end) {
            dump_log(port_b);
            fail_msg("the newer instance did not apply both events");
        }
        pts_nap_ms(200);
    }
    expect_state(0, 0);
    expect_state(1, 1);
    assert_int_equal(kill(b, SIGTERM), 0);
    expect_exit_code(wait_exit(b, port_b, 30000), 0, port_b);
    pts_topics_free(&w);
}

/* ------------------------------------------------------------------ certificate policy (issue 6) */

/* DER of a self-signed P-256 S/MIME certificate for `email` valid from `nb` to `na` (unix seconds); caller frees
 * with OPENSSL_free(). */
static unsigned char *policy_cert(EVP_PKEY *key, const char *email, long serial, time_t nb, time_t na,
                                  size_t *len)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)email, -1, -1, 0);
    assert_true(X509_set_issuer_name(x, nm));
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), nb));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), na));
    assert_true(X509_set_pubkey(x, key));
    char san[400];
    snprintf(san, sizeof san, "email:%s", email);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
    assert_non_null(ext);
    assert_true(X509_add_ext(x, ext, -1));
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    X509_free(x);
    *len = (size_t)n;
    return der;
}

/* Produces an upsert of `user` with the given userCertificate values (userSMIMECertificate empty). */
static void produce_values(world *w, int user, uint32_t version, unsigned char *const *vals,
                           const size_t *lens, size_t n)
{
    char oid[32], key[48], upn[320];
    unsigned char g[16];
    guid_of(user, g);
    upn_of(user, upn, sizeof upn);
    snprintf(oid, sizeof oid, "user%d", user);
    snprintf(key, sizeof key, "src/user%d", user);
    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    Certsync__V1__Version ver = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__AttributeStamp st = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__CertificateValue cv[4], *cvp[4];
    char src_id[] = "src";
    assert_true(n <= 4);
    src.source_id = src_id;
    id.object_id = oid;
    id.has_object_guid = 1;
    id.object_guid.data = g;
    id.object_guid.len = 16;
    id.user_principal_name = upn;
    id.mail = upn;
    st.has_version = 1;
    st.version = version;
    ver.user_certificate = &st;
    ev.has_kind = 1;
    ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    ev.source = &src;
    ev.identity = &id;
    ev.version = &ver;
    for (size_t i = 0; i < n; i++) {
        certsync__v1__certificate_value__init(&cv[i]);
        cv[i].has_raw = 1;
        cv[i].raw.data = vals[i];
        cv[i].raw.len = lens[i];
        cvp[i] = &cv[i];
    }
    ev.user_certificate = cvp;
    ev.n_user_certificate = n;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_null(cs_event_encode(&ev, &buf, &len));
    produce_raw(w, 0, key, buf, len);
    free(buf);
}

/* The last committed PublishResult of `key` on the results topic (caller frees with
 * certsync__v1__publish_result__free_unpacked()), or NULL. */
static Certsync__V1__PublishResult *read_result(const world *w, const char *key)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kt_conf();
    char *group = kt_unique_name("svc-results-reader");
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, w->results, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    Certsync__V1__PublishResult *last = NULL;
    long long end = pts_mono_ms() + 30000;
    while (pts_mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        assert_int_equal(m->err, 0);
        if (m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0) {
            if (last)
                certsync__v1__publish_result__free_unpacked(last, NULL);
            last = certsync__v1__publish_result__unpack(NULL, m->len, m->payload);
            assert_non_null(last);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(group);
    return last;
}

/*
 * The publisher applies the policy before it writes: of a valid certificate, an expired one and one for another
 * address only the valid one is written, the results topic carries the other two as DroppedValues with their
 * policy reasons, and the log names user, fingerprint and rule; a user whose only value is refused is
 * dead-lettered NOTHING_VALID and not written.
 */
static void policy_refusals(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1);
    g_policy_yaml = ""; /* the default policy */
    seed_recipient(10, 0);
    seed_recipient(11, 0);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    char me[320], other[320];
    upn_of(10, me, sizeof me);
    snprintf(other, sizeof other, "mallory@%s", emu_env.domain);
    time_t now = time(NULL);
    unsigned char *v[3];
    size_t len[3];
    v[0] = policy_cert(key, me, 1, now - 86400, now + 365 * 86400, &len[0]);    /* valid */
    v[1] = policy_cert(key, me, 2, now - 400 * 86400, now - 86400, &len[1]);    /* expired */
    v[2] = policy_cert(key, other, 3, now - 86400, now + 365 * 86400, &len[2]); /* another address */
    char sha[3][65];
    for (int i = 0; i < 3; i++)
        sha256_hex(v[i], len[i], sha[i]);
    long long s0 = last_seq();
    produce_values(&w, 10, 1, v, len, 3);
    produce_values(&w, 11, 1, &v[1], &len[1], 1); /* only an expired one (user11's address does not matter) */
    int port = run_once(&w, NULL, 0);

    changes uc = changes_of(s0, 10, "UserCertificate");
    assert_int_equal(uc.changed, 1);
    assert_string_equal(uc.last_after, sha[0]);
    expect_no_write(s0, 11);

    Certsync__V1__PublishResult *r = read_result(&w, "src/user10");
    assert_non_null(r);
    assert_int_equal(r->outcome, CERTSYNC__V1__OUTCOME__OUTCOME_APPLIED);
    assert_int_equal(r->user_certificate_count, 1);
    assert_int_equal(r->n_dropped, 2);
    int seen = 0;
    for (size_t i = 0; i < r->n_dropped; i++) {
        const Certsync__V1__DroppedValue *d = r->dropped[i];
        if (strcmp(d->sha256, sha[1]) == 0) {
            assert_string_equal(d->reason, "policy: expired");
            seen |= 1;
        } else if (strcmp(d->sha256, sha[2]) == 0) {
            assert_string_equal(d->reason, "policy: address_mismatch");
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    certsync__v1__publish_result__free_unpacked(r, NULL);
    r = read_result(&w, "src/user11");
    assert_non_null(r);
    assert_int_equal(r->outcome, CERTSYNC__V1__OUTCOME__OUTCOME_DEAD_LETTERED);
    assert_int_equal(r->n_dropped, 1);
    assert_string_equal(r->dropped[0]->reason, "policy: expired,address_mismatch");
    certsync__v1__publish_result__free_unpacked(r, NULL);
    Certsync__V1__DeadLetterReason reasons[4];
    assert_int_equal(read_dead_letters(&w, reasons, 4), 1);
    assert_int_equal(reasons[0], CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_NOTHING_VALID);

    /* One log line per refusal with the user, the certificate's fingerprint and the rule. */
    char logp[300];
    snprintf(logp, sizeof logp, "%s/pub-%d.log", work, port);
    char *log = pts_slurp(logp, NULL);
    assert_non_null(log);
    char want[600];
    snprintf(want, sizeof want, "user %s: userCertificate certificate %s refused by policy: expired: ", me,
             sha[1]);
    if (!strstr(log, want)) {
        dump_log(port);
        fail_msg("no refusal line \"%s\"", want);
    }
    snprintf(want, sizeof want,
             "userCertificate certificate %s refused by policy: address_mismatch: ", sha[2]);
    assert_non_null(strstr(log, want));
    free(log);
    for (int i = 0; i < 3; i++)
        OPENSSL_free(v[i]);
    EVP_PKEY_free(key);
    g_policy_yaml = "policy.check_address: false\n";
    pts_topics_free(&w);
}

/* ------------------------------------------------------------------ secrets never printed (issue 6) */

/* Appends `n` bytes of `text` as a needle when it is long enough to be distinctive. */
typedef struct needles {
    char *v[256];
    size_t n;
} needles;

static void needle_add(needles *nd, const char *text, size_t n)
{
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    if (n < 12 || nd->n >= sizeof nd->v / sizeof nd->v[0])
        return;
    nd->v[nd->n] = strndup(text, n);
    assert_non_null(nd->v[nd->n]);
    nd->n++;
}

/* The needles of a secret file: its contents, and for a PEM key every body line and the body joined (the
 * base64 of the key) and the base64 of its contents. */
static void needles_of_file(needles *nd, const char *path)
{
    size_t len = 0;
    char *t = pts_slurp(path, &len);
    assert_non_null(t);
    const char *pem = strstr(t, "-----BEGIN");
    if (!pem) {
        needle_add(nd, t, len);
    } else {
        char joined[16384] = "";
        size_t jn = 0;
        for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
            if (strncmp(line, "-----", 5) == 0)
                continue;
            needle_add(nd, line, strlen(line));
            size_t ln = strlen(line);
            if (jn + ln < sizeof joined) {
                memcpy(joined + jn, line, ln);
                jn += ln;
                joined[jn] = '\0';
            }
        }
        needle_add(nd, joined, jn);
    }
    free(t);
    t = pts_slurp(path, &len);
    char *enc = malloc(len * 2 + 8);
    assert_non_null(enc);
    pts_b64((const unsigned char *)t, len, enc);
    needle_add(nd, enc, strlen(enc));
    free(enc);
    free(t);
}

/* Returns the first needle found in `hay` (NULL when clean). JWTs (access tokens, client assertions) start with
 * "eyJ" (base64 of '{"'): none may be printed either. */
static const char *leak_in(const needles *nd, const char *hay)
{
    for (size_t i = 0; i < nd->n; i++)
        if (strstr(hay, nd->v[i]))
            return nd->v[i];
    if (strstr(hay, "eyJ"))
        return "eyJ (a JWT)";
    return NULL;
}

/*
 * The publisher never prints a secret: with the client secret (service mode: /metrics, /healthz, /readyz scraped
 * while it works) and with the certificate's private key (--once), every line of its logs and every scrape is
 * searched for the secret, the key's PEM lines, the base64 of both files, and for any JWT. The search itself is
 * proven to find a planted secret first.
 */
static void secrets_never_printed(void **state)
{
    (void)state;
    needles nd = {.n = 0};
    needles_of_file(&nd, emu_env.secret_file);
    needles_of_file(&nd, emu_env.key_file);
    assert_true(nd.n >= 4);
    /* The check can fail: a planted secret and a planted key line are found. */
    char planted[2048];
    snprintf(planted, sizeof planted, "{\"msg\":\"x\",\"detail\":\"%s\"}", nd.v[0]);
    assert_non_null(leak_in(&nd, planted));
    snprintf(planted, sizeof planted, "{\"msg\":\"%s\"}", nd.v[nd.n / 2]);
    assert_non_null(leak_in(&nd, planted));

    world w;
    world_new(&w, 1);
    g_policy_yaml = ""; /* the default policy */
    seed_recipient(4, 0);
    seed_recipient(5, 0);
    char scrapes[4][300];
    int n_scrapes = 0;

    /* 1. client secret, service mode, scraped while working. */
    g_auth_yaml = NULL;
    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    pid_t pid = spawn(cfg, 0, NULL, port);
    wait_ready(port, pid);
    produce_event(&w, 0, 4, 1, 4);
    long long end = pts_mono_ms() + WAIT_MS;
    for (;;) {
        char *text = NULL;
        assert_int_equal(admin_get(port, "/metrics", &text), 200);
        int done = strstr(text, "certsync_publisher_applied_total 1") != NULL;
        free(text);
        if (done)
            break;
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("the write was not counted in /metrics");
        }
        pts_nap_ms(100);
    }
    static const char *const paths[] = {"/metrics", "/healthz", "/readyz"};
    for (size_t i = 0; i < 3; i++) {
        char *text = NULL;
        admin_get(port, paths[i], &text);
        snprintf(scrapes[n_scrapes], sizeof scrapes[0], "%s/scrape-%d-%zu.txt", work, port, i);
        FILE *f = fopen(scrapes[n_scrapes], "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        n_scrapes++;
        free(text);
    }
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), 0, port);
    int ports[2] = {port, 0};

    /* 2. certificate + private key, --once. */
    char auth[1400];
    snprintf(auth, sizeof auth, "  auth: certificate\n  certificate_file: %s\n  private_key_file: %s\n",
             emu_env.cert_file, emu_env.key_file);
    g_auth_yaml = auth;
    long long s1 = last_seq();
    produce_event(&w, 0, 5, 1, 5);
    ports[1] = run_once(&w, NULL, 0);
    g_auth_yaml = NULL;
    g_policy_yaml = "policy.check_address: false\n";
    expect_written_once(s1, 5, 5); /* the key was really used */

    /* Every log line of both runs and every scrape. */
    int checked = 0;
    for (int i = 0; i < 2 + n_scrapes; i++) {
        char path[300];
        if (i < 2)
            snprintf(path, sizeof path, "%s/pub-%d.log", work, ports[i]);
        else
            snprintf(path, sizeof path, "%s", scrapes[i - 2]);
        char *text = pts_slurp(path, NULL);
        assert_non_null(text);
        const char *leak = leak_in(&nd, text);
        if (leak)
            fail_msg("%s prints a secret (%.12s...)", path, leak);
        checked += (int)strlen(text) > 0;
        free(text);
    }
    assert_int_equal(checked, 2 + n_scrapes);
    for (size_t i = 0; i < nd.n; i++)
        free(nd.v[i]);
    pts_topics_free(&w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(apply_update_clear_restart),  cmocka_unit_test(service_probes_sigterm),
        cmocka_unit_test(dead_letters_and_throttling), cmocka_unit_test(kill9_before_commit_idempotent),
        cmocka_unit_test(fencing_older_instance),      cmocka_unit_test(policy_refusals),
        cmocka_unit_test(secrets_never_printed),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
