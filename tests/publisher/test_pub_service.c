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
#define PUB_EXIT_COMMIT_PENDING 4 /* pub_service.h */
#define CS_XSTR(x) #x
#define CS_STR(x) CS_XSTR(x)

static pts_emu_env emu_env;     /* the emulator fixture's env file */
static const char *g_auth_yaml; /* NULL: auth: secret with the emulator's secret file */
/* The mechanics tests move certificates between users (user0 gets user3's): the address rule is off for them;
 * the policy and secrets tests run with the default policy (""). */
static const char *g_policy_yaml = "policy.check_address: false\n";
/* Extra keys of the batch mapping and of the kafka mapping (apply_time_bounded_batches). */
static const char *g_batch_extra = "";
static const char *g_kafka_extra = "";
static char work[256];
static unsigned char *cert[N_CERTS], *smime[N_CERTS];
static size_t cert_len[N_CERTS], smime_len[N_CERTS];

/* ------------------------------------------------------------------ small helpers */

static void sha256_hex(const unsigned char *d, size_t n, char out[65])
{
    pts_sha256_hex(d, n, out);
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
    char upn[320];
    guid_of(user, g);
    upn_of(user, upn, sizeof upn);
    pts_emu_seed_mailbox(emu_env.admin, upn, g, 8000, user, write_scope, 0);
}

static void world_new(world *w, int parts)
{
    pts_topics_new(w, "svc", parts, 0, 1);
    assert_int_equal(emu("POST", "/reset", NULL), 200);
}

static void produce_raw(world *w, int32_t part, const char *key, const void *val, size_t len)
{
    pts_produce(w->prod, w->events, part, key, val, len);
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
    snprintf(path, cap, "%s/pub-%d.yaml", work, port);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    pts_publisher_yaml_head(f, w, w->instance, &emu_env, g_auth_yaml);
    fprintf(f,
            "resolve.order: [immutable_id, upn]\n"
            "batch: {max_events: 100, max_wait: 300ms%s}\n"
            "admin.listen: 127.0.0.1:%d\n"
            "%s"
            "kafka:\n  bootstrap.servers: %s\n  group.id: %s\n  session.timeout.ms: 6000\n%s",
            g_batch_extra, port, g_policy_yaml, kt_bootstrap(), w->group, g_kafka_extra);
    fclose(f);
}

/* Starts the binary with `config`; `once` adds --once; `fault` sets CERTSYNC_PUB_FAULT. Output goes to
 * <work>/<port>.log. */
static pid_t spawn(const char *config, int once, const char *fault, int port)
{
    return pts_pub_spawn(work, port, config, once, fault);
}

static void dump_log(int port)
{
    pts_pub_dump_log(work, port);
}

/* Waits (bounded) for `pid` to exit; returns the raw wait status; fails the test on timeout. */
static int wait_exit(pid_t pid, int port, long long timeout_ms)
{
    return pts_pub_wait_exit(work, port, pid, timeout_ms);
}

static void expect_exit_code(int st, int code, int port)
{
    pts_pub_expect_exit(work, port, st, code);
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
    return pts_pub_admin_get(port, path, out);
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
    return pts_emu_last_seq(emu_env.admin);
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
    return pts_emu_requests(emu_env.admin, since, "Set-");
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
    Certsync__V1__DeadLetter *dl[16];
    int keep = cap < 16 ? cap : 16;
    int n = pts_read_dead_letters(w->dlq, "svc-dlq-reader", dl, keep);
    for (int i = 0; i < n && i < keep; i++) {
        reasons[i] = dl[i]->reason;
        certsync__v1__dead_letter__free_unpacked(dl[i], NULL);
    }
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
    return pts_smime_cert(key, email, serial, nb, na, len);
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
    char *group = kt_unique_name("svc-results-reader");
    rd_kafka_t *c = pts_partition_reader(w->results, group);
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

/* Waits until /metrics shows certsync_publisher_applied_total `n`. */
static void await_applied(int port, int n)
{
    char want[80];
    snprintf(want, sizeof want, "certsync_publisher_applied_total %d\n", n);
    long long end = pts_mono_ms() + WAIT_MS;
    for (;;) {
        char *text = NULL;
        assert_int_equal(admin_get(port, "/metrics", &text), 200);
        int done = strstr(text, want) != NULL;
        free(text);
        if (done)
            return;
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("%s not reached in /metrics", want);
        }
        pts_nap_ms(100);
    }
}

/* Replaces the file at `path` atomically (write a temporary file, rename), as a Secret update does. */
static void replace_file(const char *path, const char *text)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

/*
 * The publisher never prints a secret: with the client secret (service mode: /metrics, /healthz, /readyz scraped
 * while it works; the secret is rotated in Entra (the emulator) and in its file while it runs, and the next write
 * uses the new one without a restart) and with the certificate's private key (--once), every line of its logs and every scrape is
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
    seed_recipient(3, 0);
    seed_recipient(4, 0);
    char scrapes[4][300];
    int n_scrapes = 0;

    /* 1. client secret (a copy the test rotates), service mode, scraped while working. */
    char secret_path[400], auth1[600], new_secret[64], body[300];
    snprintf(secret_path, sizeof secret_path, "%s/rotating-secret", work);
    char *old_secret = pts_slurp(emu_env.secret_file, NULL);
    assert_non_null(old_secret);
    replace_file(secret_path, old_secret);
    free(old_secret);
    snprintf(new_secret, sizeof new_secret, "Rotated-Secret-%d-%lld", (int)getpid(), pts_mono_ms());
    needle_add(&nd, new_secret, strlen(new_secret));
    snprintf(auth1, sizeof auth1, "  auth: secret\n  client_secret_file: %s\n", secret_path);
    g_auth_yaml = auth1;
    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    g_auth_yaml = NULL;
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
    /* Rotation: Entra gets the new secret only (the old one stops working), then the file; SIGHUP makes the
       publisher compare at once. The next write needs a token from the new secret: the cached one is dropped. */
    snprintf(body, sizeof body, "{\"secrets\":[{\"value\":\"%s\"}]}", new_secret);
    snprintf(planted, sizeof planted, "/apps/%s", emu_env.client);
    assert_int_equal(pts_emu_call(emu_env.admin, "PUT", planted, body, NULL), 200);
    replace_file(secret_path, new_secret);
    assert_int_equal(kill(pid, SIGHUP), 0);
    produce_event(&w, 0, 3, 1, 3);
    await_applied(port, 2);
    {
        char logp[300];
        snprintf(logp, sizeof logp, "%s/pub-%d.log", work, port);
        char *log = pts_slurp(logp, NULL);
        assert_non_null(log);
        assert_non_null(strstr(log, "\"key\":\"o365.client_secret_file\""));
        assert_non_null(strstr(log, secret_path));
        assert_non_null(strstr(log, "Office 365 credential replaced"));
        free(log);
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
    assert_int_equal(emu("POST", "/reset", NULL), 200); /* the emulator's own secret again */
    seed_recipient(5, 0);
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

/* ------------------------------------------------------------------ Kafka paused mid-commit */

/* A private Kafka for the pause test: pausing the shared one would stall every other test. */
static char pause_kdir[300];
static pid_t pause_kpid;

static void private_kafka_start(void)
{
    const char *ksh = getenv("CS_KAFKA_SH");
    assert_non_null(ksh);
    snprintf(pause_kdir, sizeof pause_kdir, "%s/kafka", work);
    char cmd[1024], env[400];
    snprintf(cmd, sizeof cmd, "'%s' start '%s' >'%s.log' 2>&1", ksh, pause_kdir, pause_kdir);
    if (system(cmd) != 0) {
        snprintf(env, sizeof env, "%s.log", pause_kdir);
        pts_dump_tail("kafka.sh start", env);
        fail_msg("private Kafka did not start");
    }
    snprintf(env, sizeof env, "%s/env", pause_kdir);
    char *text = pts_slurp(env, NULL);
    assert_non_null(text);
    const char *p = strstr(text, "KAFKA_NODE1_PID=");
    assert_non_null(p);
    pause_kpid = (pid_t)strtol(p + strlen("KAFKA_NODE1_PID="), NULL, 10);
    free(text);
    assert_true(pause_kpid > 1);
    /* Every kt_* helper of this process reads its bootstrap from here (read lazily, not yet read). */
    setenv("CS_KAFKA_ENV", env, 1);
}

static int private_kafka_stop(void **state)
{
    (void)state;
    if (pause_kpid > 1)
        kill(pause_kpid, SIGCONT);
    if (pause_kdir[0]) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "'%s' stop '%s' >/dev/null 2>&1", getenv("CS_KAFKA_SH"), pause_kdir);
        if (system(cmd) != 0)
            fprintf(stderr, "kafka.sh stop %s failed\n", pause_kdir);
    }
    return 0;
}

/* Occurrences of `needle` in the publisher's log. */
static int log_count(int port, const char *needle)
{
    char log[300];
    snprintf(log, sizeof log, "%s/pub-%d.log", work, port);
    char *text = pts_slurp(log, NULL);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* Waits (bounded) until the log holds `needle` at least `n` times, or `path` exists when needle is NULL. */
static void await_event(int port, pid_t pid, const char *needle, int n, const char *path)
{
    long long end = pts_mono_ms() + WAIT_MS;
    while (needle ? log_count(port, needle) < n : access(path, F_OK) != 0) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            dump_log(port);
            fail_msg("publisher exited while waiting for %s", needle ? needle : path);
        }
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("no %s within %d ms", needle ? needle : path, WAIT_MS);
        }
        pts_nap_ms(50);
    }
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

/*
 * Kafka paused (SIGSTOP of the broker) right before a commit, by the pause_before_commit fault point:
 *   1. the commit stays pending ("commit pending" logged, /readyz not ready, commit_pending gauge 1, ready
 *      gauge 0); after SIGCONT the same commit completes: the write was applied exactly once (the batch
 *      was not aborted and re-processed) and the instance is ready again;
 *   2. SIGTERM during a pause that does not end: exit 4 (documented in --help) with a clear log line;
 *      after SIGCONT a restart resumes from the committed offsets: the final state is the expected one
 *      and the one repeated write is identical to the first.
 */
static void kafka_pause_mid_commit(void **state)
{
    (void)state;
    private_kafka_start();
    world w;
    world_new(&w, 1);
    seed_recipient(0, 0);
    seed_recipient(1, 0);
    char fdir[300], marker[400], go[400];
    snprintf(fdir, sizeof fdir, "%s/fault", work);
    assert_int_equal(mkdir(fdir, 0700), 0);
    snprintf(marker, sizeof marker, "%s/before_commit", fdir);
    snprintf(go, sizeof go, "%s/go", fdir);
    setenv("CERTSYNC_PUB_FAULT_DIR", fdir, 1);
    long long s0 = last_seq();
    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    produce_event(&w, 0, 0, 1, 0);
    pid_t pid = spawn(cfg, 0, "pause_before_commit", port);

    /* 1. paused mid-commit, then resumed */
    await_event(port, pid, NULL, 0, marker);
    assert_int_equal(kill(pause_kpid, SIGSTOP), 0);
    touch(go);
    await_event(port, pid, "commit pending: resuming it", 1, NULL);
    char *text = NULL;
    assert_int_not_equal(admin_get(port, "/readyz", NULL), 200);
    assert_int_equal(admin_get(port, "/metrics", &text), 200);
    if (!strstr(text, "certsync_publisher_commit_pending 1") || !strstr(text, "certsync_publisher_ready 0"))
        fail_msg("while the commit is pending the gauges do not say so:\n%s", text);
    free(text);
    assert_int_equal(kill(pause_kpid, SIGCONT), 0);
    await_event(port, pid, "pending commit completed", 1, NULL);
    wait_ready(port, pid);
    expect_written_once(s0, 0, 0);
    assert_int_equal(log_count(port, "transaction failed, aborting"), 0);

    /* 2. SIGTERM during the pause */
    unlink(marker);
    unlink(go);
    produce_event(&w, 0, 1, 1, 1);
    await_event(port, pid, NULL, 0, marker);
    assert_int_equal(kill(pause_kpid, SIGSTOP), 0);
    touch(go);
    await_event(port, pid, "commit pending: resuming it", 2, NULL);
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), PUB_EXIT_COMMIT_PENDING, port);
    assert_int_equal(log_count(port, "stopped while a Kafka commit was pending"), 1);
    assert_int_equal(kill(pause_kpid, SIGCONT), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "'%s' --help | grep -q '^  4  stopped while a Kafka commit was pending'",
             getenv("CERTSYNC_PUBLISHER"));
    assert_int_equal(system(cmd), 0);

    unsetenv("CERTSYNC_PUB_FAULT_DIR");
    run_once(&w, NULL, 0);
    expect_state(0, 0);
    expect_state(1, 1);
    expect_written_once(s0, 0, 0); /* committed in part 1: never applied again */
    changes uc = changes_of(s0, 1, "UserCertificate");
    if (uc.changed != 1 || uc.unchanged > 1)
        fail_msg(
            "user1: %d changing and %d identical writes, want 1 and at most 1 (the repeat after the stop)",
            uc.changed, uc.unchanged);
    pts_topics_free(&w);
}

/* ------------------------------------------------------------------ S/MIME readiness gauge (issue 6) */

/* PKCS#7 (certs-only, DER) around certificate `der`, as a userSMIMECertificate value; caller frees. */
static unsigned char *p7_of(const unsigned char *der, size_t len, size_t *out_len)
{
    char path[300], cmd[1100];
    snprintf(path, sizeof path, "%s/p7in.der", work);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(der, 1, len, f), len);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "openssl x509 -inform DER -in %s -out %s.pem && openssl crl2pkcs7 -nocrl -certfile %s.pem "
             "-outform DER",
             path, path, path);
    unsigned char *p7 = run_der(cmd, out_len);
    assert_non_null(p7);
    return p7;
}

/* Produces an upsert of `user` to partition `part` with the given userCertificate and userSMIMECertificate
 * values (mail = UPN). */
static void produce_lists(world *w, int32_t part, int user, unsigned char *const *uc, const size_t *ucl,
                          size_t nuc, unsigned char *const *sm, const size_t *sml, size_t nsm)
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
    Certsync__V1__CertificateValue cv[20], *cvp[20], sv[4], *svp[4];
    char src_id[] = "src";
    assert_true(nuc <= 20 && nsm <= 4);
    src.source_id = src_id;
    id.object_id = oid;
    id.has_object_guid = 1;
    id.object_guid.data = g;
    id.object_guid.len = 16;
    id.user_principal_name = upn;
    id.mail = upn;
    st.has_version = 1;
    st.version = 1;
    ver.user_certificate = &st;
    ver.user_smime_certificate = &st;
    ev.has_kind = 1;
    ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    ev.source = &src;
    ev.identity = &id;
    ev.version = &ver;
    for (size_t i = 0; i < nuc; i++) {
        certsync__v1__certificate_value__init(&cv[i]);
        cv[i].has_raw = 1;
        cv[i].raw.data = uc[i];
        cv[i].raw.len = ucl[i];
        cvp[i] = &cv[i];
    }
    for (size_t i = 0; i < nsm; i++) {
        certsync__v1__certificate_value__init(&sv[i]);
        sv[i].has_raw = 1;
        sv[i].raw.data = sm[i];
        sv[i].raw.len = sml[i];
        svp[i] = &sv[i];
    }
    ev.user_certificate = cvp;
    ev.n_user_certificate = nuc;
    ev.user_smime_certificate = svp;
    ev.n_user_smime_certificate = nsm;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_null(cs_event_encode(&ev, &buf, &len));
    produce_raw(w, part, key, buf, len);
    free(buf);
}

/* The value of the series `series` (name{labels}) on the page, or -1 when absent. */
static double metric_value(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = strstr(page, series); p; p = strstr(p + 1, series)) {
        if ((p == page || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

static const char *const readiness_reasons[6] = {
    "ok", "expiring_soon", "expired", "address_mismatch", "no_usable_certificate", "over_15_values"};

/* Reads the readiness gauge of the instance on `port` into v[6] (order of readiness_reasons). */
static void readiness_of(int port, double v[6])
{
    char *text = NULL;
    assert_int_equal(admin_get(port, "/metrics", &text), 200);
    for (int i = 0; i < 6; i++) {
        char series[128];
        snprintf(series, sizeof series, "certsync_smime_readiness_users{reason=\"%s\"}",
                 readiness_reasons[i]);
        v[i] = metric_value(text, series);
    }
    free(text);
}

/* Waits until the gauge of `port` reads want[6]; fails with what it read. */
static void await_readiness(int port, pid_t pid, const double want[6], const char *when)
{
    long long end = pts_mono_ms() + WAIT_MS;
    double v[6];
    for (;;) {
        readiness_of(port, v);
        if (memcmp(v, want, sizeof v) == 0)
            return;
        if (pts_mono_ms() > end || waitpid(pid, NULL, WNOHANG) == pid) {
            dump_log(port);
            fail_msg("%s: readiness gauge ok=%g expiring_soon=%g expired=%g address_mismatch=%g "
                     "no_usable_certificate=%g over_15_values=%g, wanted %g %g %g %g %g %g",
                     when, v[0], v[1], v[2], v[3], v[4], v[5], want[0], want[1], want[2], want[3], want[4],
                     want[5]);
        }
        pts_nap_ms(200);
    }
}

/* Number of certsync_publisher_consumer_lag series on the page of `port`. */
static int lag_series(int port)
{
    char *text = NULL;
    int n = 0;
    assert_int_equal(admin_get(port, "/metrics", &text), 200);
    for (const char *p = strstr(text, "\ncertsync_publisher_consumer_lag{"); p;
         p = strstr(p + 1, "\ncertsync_publisher_consumer_lag{"))
        n++;
    free(text);
    return n;
}

/*
 * The running publisher keeps certsync_smime_readiness_users{reason} for the objects it holds: one user per
 * reason (default policy: the written values pass it, the values Outlook reads do not), the same after a
 * restart (restored with the applied state, nothing re-read), and, when a second instance takes one of the
 * two partitions, the first counts only its own users and drops the lag series of the partition it lost.
 */
static void readiness_gauge_by_reason(void **state)
{
    (void)state;
    world w;
    world_new(&w, 2);
    g_policy_yaml = ""; /* the default policy */
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    time_t now = time(NULL);
    char me[6][320], other[320];
    unsigned char *good[6], *soon = NULL, *old = NULL, *elsewhere = NULL;
    size_t good_len[6], soon_len = 0, old_len = 0, elsewhere_len = 0;
    for (int u = 0; u < 6; u++) {
        seed_recipient(30 + u, 0);
        upn_of(30 + u, me[u], sizeof me[u]);
        good[u] = policy_cert(key, me[u], 100 + u, now - 86400, now + 365 * 86400, &good_len[u]);
    }
    snprintf(other, sizeof other, "someone.else@%s", emu_env.domain);
    soon = policy_cert(key, me[1], 201, now - 86400, now + 10 * 86400, &soon_len);
    old = policy_cert(key, me[2], 202, now - 400 * 86400, now - 86400, &old_len);
    elsewhere = policy_cert(key, other, 203, now - 86400, now + 365 * 86400, &elsewhere_len);
    size_t p7_old_len = 0, p7_else_len = 0;
    unsigned char *p7_old = p7_of(old, old_len, &p7_old_len);
    unsigned char *p7_else = p7_of(elsewhere, elsewhere_len, &p7_else_len);
    static unsigned char garbage[] = "not a certificate";
    unsigned char *garbage_p = garbage;
    size_t garbage_len = sizeof garbage - 1;
    unsigned char *many[16];
    size_t many_len[16];
    for (int i = 0; i < 16; i++) {
        many[i] = good[5];
        many_len[i] = good_len[5];
    }
    /* users 30-32 on partition 0, 33-35 on partition 1 */
    produce_lists(&w, 0, 30, &good[0], &good_len[0], 1, NULL, NULL, 0);             /* ok */
    produce_lists(&w, 0, 31, &soon, &soon_len, 1, NULL, NULL, 0);                   /* expiring_soon */
    produce_lists(&w, 0, 32, &good[2], &good_len[2], 1, &p7_old, &p7_old_len, 1);   /* expired (SMIME read) */
    produce_lists(&w, 1, 33, &good[3], &good_len[3], 1, &p7_else, &p7_else_len, 1); /* address_mismatch */
    produce_lists(&w, 1, 34, &good[4], &good_len[4], 1, &garbage_p, &garbage_len, 1); /* no usable */
    produce_lists(&w, 1, 35, many, many_len, 16, NULL, NULL, 0);                      /* over_15_values */

    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    pid_t pid = spawn(cfg, 0, NULL, port);
    wait_ready(port, pid);
    static const double all[6] = {1, 1, 1, 1, 1, 1};
    await_readiness(port, pid, all, "first run");
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), 0, port);

    /* Restarted: the verdicts come back with the applied state; nothing is written again. */
    long long s1 = last_seq();
    pid = spawn(cfg, 0, NULL, port);
    wait_ready(port, pid);
    await_readiness(port, pid, all, "after a restart");
    assert_int_equal(set_requests(s1), 0);
    long long end = pts_mono_ms() + WAIT_MS;
    while (lag_series(port) != 2) {
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("no lag series for both partitions");
        }
        pts_nap_ms(200);
    }

    /* A second instance in the group takes one partition: the first keeps three users and one lag series. */
    char cfg2[400], text2[4000];
    int port2 = pts_free_port();
    write_config(&w, port2, cfg2, sizeof cfg2);
    char *body = pts_slurp(cfg2, NULL);
    assert_non_null(body);
    const char *rest = strchr(body, '\n');
    assert_non_null(rest);
    snprintf(text2, sizeof text2, "publisher.instance_id: %s-b%s", w.instance, rest);
    free(body);
    FILE *f = fopen(cfg2, "w");
    assert_non_null(f);
    fputs(text2, f);
    fclose(f);
    pid_t pid2 = spawn(cfg2, 0, NULL, port2);
    wait_ready(port2, pid2);
    end = pts_mono_ms() + WAIT_MS;
    double a[6], b[6];
    for (;;) {
        readiness_of(port, a);
        readiness_of(port2, b);
        double sa = 0, sb = 0;
        for (int i = 0; i < 6; i++) {
            sa += a[i];
            sb += b[i];
        }
        if (sa == 3 && sb == 3 && lag_series(port) == 1 && lag_series(port2) == 1)
            break;
        if (pts_mono_ms() > end) {
            dump_log(port);
            dump_log(port2);
            fail_msg(
                "after the rebalance: %g users and %d lag series on the first instance, %g and %d on the "
                "second (wanted 3 and 1 each)",
                sa, lag_series(port), sb, lag_series(port2));
        }
        pts_nap_ms(200);
    }
    for (int i = 0; i < 6; i++)
        assert_true(a[i] + b[i] == 1); /* each user counted once, by the instance that owns it */
    assert_int_equal(kill(pid2, SIGTERM), 0);
    expect_exit_code(wait_exit(pid2, port2, 30000), 0, port2);
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), 0, port);
    for (int u = 0; u < 6; u++)
        OPENSSL_free(good[u]);
    OPENSSL_free(soon);
    OPENSSL_free(old);
    OPENSSL_free(elsewhere);
    free(p7_old);
    free(p7_else);
    EVP_PKEY_free(key);
    g_policy_yaml = "policy.check_address: false\n";
    pts_topics_free(&w);
}

/* ------------------------------------------------------------------ not found is "not yet" (issue 5) */

/* Times (seconds since midnight) of the Graph lookups of `user`'s UPN since `since`: one per try, the last
 * step of resolve.order [immutable_id, upn]. Returns how many (all counted, at most `cap` stored). */
static int upn_lookups(long long since, int user, double *times, int cap)
{
    char path[128], upn[320];
    snprintf(path, sizeof path, "/journal?kind=request&since=%lld", since);
    upn_of(user, upn, sizeof upn);
    json_t *j = pts_emu_json(emu_env.admin, path);
    json_t *e;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        const char *ep = json_string_value(json_object_get(e, "endpoint"));
        const char *id = json_string_value(json_object_get(e, "identity"));
        if (!ep || strcmp(ep, "graph") != 0 || !id || !strstr(id, upn))
            continue;
        if (n < cap)
            times[n] = iso_secs(json_string_value(json_object_get(e, "time")));
        n++;
    }
    json_decref(j);
    return n;
}

/* Waits (bounded) until `user` has had at least `n` UPN lookups since `since`. */
static void await_lookups(long long since, int user, int n, int port, pid_t pid)
{
    double t[1];
    long long end = pts_mono_ms() + WAIT_MS;
    while (upn_lookups(since, user, t, 0) < n) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            dump_log(port);
            fail_msg("publisher exited while user%d waited for lookup %d", user, n);
        }
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("user%d: %d lookups within %d ms, want %d", user, upn_lookups(since, user, t, 0),
                     WAIT_MS, n);
        }
        pts_nap_ms(100);
    }
}

/*
 * retry.not_found.* with delays of seconds: a recipient that is not found is tried again through the retry
 * topic after 1 s, 2 s, 3 s (first 1s, factor 2, max 3s: the waits grow and stop at the maximum, measured
 * from the emulator's lookup times) and dead-lettered RECIPIENT_NOT_FOUND on try 4 (attempts 4); a recipient
 * of the same partition that exists is applied meanwhile, not after the waits; one that appears (seeded)
 * after its first try is applied by a retry.
 */
static void not_found_retried_then_dead_lettered(void **state)
{
    (void)state;
    enum { NEVER = 0, LATER = 1, PRESENT = 2, TRIES = 4 };
    const double want_gap[TRIES - 1] = {1.0, 2.0, 3.0};
    world w;
    world_new(&w, 1);
    seed_recipient(PRESENT, 0);
    const char *saved_policy = g_policy_yaml;
    g_policy_yaml = "policy.check_address: false\n"
                    "retry.not_found: {first_delay: 1s, factor: 2, max_delay: 3s, attempts: 4}\n";
    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    g_policy_yaml = saved_policy;
    long long s0 = last_seq();
    produce_event(&w, 0, NEVER, 1, 0);
    produce_event(&w, 0, LATER, 1, 1);
    produce_event(&w, 0, PRESENT, 1, 2);
    pid_t pid = spawn(cfg, 0, NULL, port);

    /* The late recipient appears after its first (failed) try, as after an Entra Connect cycle. */
    await_lookups(s0, LATER, 1, port, pid);
    seed_recipient(LATER, 0);
    await_lookups(s0, NEVER, TRIES, port, pid);
    Certsync__V1__DeadLetterReason reasons[4];
    int n_dlq = 0;
    long long end = pts_mono_ms() + WAIT_MS;
    while ((n_dlq = read_dead_letters(&w, reasons, 4)) == 0 && pts_mono_ms() < end)
        pts_nap_ms(200);
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), 0, port);

    /* Exactly the configured tries, with the configured, growing waits between them. */
    double t[TRIES + 2];
    int tries = upn_lookups(s0, NEVER, t, TRIES + 2);
    if (tries != TRIES) {
        dump_log(port);
        fail_msg("user%d looked up %d times, want %d (retry.not_found.attempts)", NEVER, tries, TRIES);
    }
    for (int i = 0; i + 1 < TRIES; i++) {
        double gap = t[i + 1] - t[i];
        /* journal times have microseconds; allow 50 ms of clock rounding, and a generous upper bound */
        if (gap < want_gap[i] - 0.05 || gap > want_gap[i] + 10.0)
            fail_msg("wait %d of user%d was %.3f s, want %.0f s", i + 1, NEVER, gap, want_gap[i]);
    }
    assert_int_equal(n_dlq, 1);
    assert_int_equal(reasons[0], CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_RECIPIENT_NOT_FOUND);
    expect_no_write(s0, NEVER);
    /* The present recipient behind it on the same partition did not wait for its retries. */
    expect_written_once(s0, PRESENT, 2);
    double t_present = changes_of(s0, PRESENT, "UserCertificate").first_time;
    if (t_present >= t[1])
        fail_msg("user%d was applied %.3f s after user%d's first try: blocked by its retry", PRESENT,
                 t_present - t[0], NEVER);
    /* The late one was applied by a retry (found by its immutable id then): after its first wait. */
    expect_written_once(s0, LATER, 1);
    double tl[1];
    assert_int_equal(upn_lookups(s0, LATER, tl, 1), 1);
    double t_late = changes_of(s0, LATER, "UserCertificate").first_time;
    if (t_late - tl[0] < want_gap[0] - 0.05)
        fail_msg("user%d was written %.3f s after its failed try, want a retry after %.0f s", LATER,
                 t_late - tl[0], want_gap[0]);
    expect_state(LATER, 1);
    pts_topics_free(&w);
}

/* certsync_publisher_applied_total from /metrics (-1 when absent). */
static double applied_now(int port)
{
    char *text = NULL;
    assert_int_equal(admin_get(port, "/metrics", &text), 200);
    double v = metric_value(text, "certsync_publisher_applied_total");
    free(text);
    return v;
}

/*
 * Issue 5: a slow Office 365 (every Set-* delayed) and more writes than one batch.max_apply_time allows. Each
 * batch commits what it wrote and leaves the rest for the next one, so the consumer keeps polling within
 * kafka.max.poll.interval.ms (7 s here: applying the whole batch at once would take about 9 s); in the end
 * every recipient is written exactly once.
 */
#define SLOW_N 18
#define SLOW_DELAY_MS 500
static void apply_time_bounded_batches(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1);
    for (int u = 0; u < SLOW_N; u++)
        seed_recipient(u, 0);
    assert_int_equal(emu("POST", "/faults",
                         "{\"endpoint\":\"exchange\",\"cmdlet\":\"Set-Mailbox\",\"action\":\"delay\","
                         "\"delay_ms\":" CS_STR(SLOW_DELAY_MS) "}"),
                     200);
    long long s0 = last_seq();
    for (int u = 0; u < SLOW_N; u++)
        produce_event(&w, 0, u, 1, u % N_CERTS);
    /* One request at a time: 4 writes per applier call, ~2 s; the deadline (1 s) passes during the first. */
    g_policy_yaml = "policy.check_address: false\nhttp.max_inflight: 1\n";
    g_batch_extra = ", max_apply_time: 1s, cancel_grace: 3s";
    g_kafka_extra = "  max.poll.interval.ms: 7000\n";
    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    g_policy_yaml = "policy.check_address: false\n";
    g_batch_extra = g_kafka_extra = "";
    pid_t pid = spawn(cfg, 0, NULL, port);
    wait_ready(port, pid);

    /* The first batch is cut and committed in part: some, not all, events applied. */
    await_event(port, pid, "ran out after", 1, NULL);
    long long end = pts_mono_ms() + WAIT_MS;
    double first;
    while ((first = applied_now(port)) < 1) {
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("nothing committed after the first apply deadline");
        }
        pts_nap_ms(20);
    }
    if (first >= SLOW_N) {
        dump_log(port);
        fail_msg("%.0f of %d applied in the first commit: the batch was not cut", first, SLOW_N);
    }
    await_applied(port, SLOW_N);
    /* Never past the poll interval: librdkafka would have left the group. */
    if (log_count(port, "maximum poll interval") != 0 || log_count(port, "leaving group") != 0) {
        dump_log(port);
        fail_msg("max.poll.interval.ms exceeded");
    }
    assert_true(log_count(port, "ran out after") >= 2);
    for (int u = 0; u < SLOW_N; u++) {
        expect_written_once(s0, u, u % N_CERTS);
        expect_state(u, u % N_CERTS);
    }
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), 0, port);
    assert_int_equal(emu("DELETE", "/faults", NULL), 200);
    /* Restarted, it re-reads nothing committed. */
    long long s1 = last_seq();
    run_once(&w, NULL, 0);
    assert_int_equal(set_requests(s1), 0);
    pts_topics_free(&w);
}

/* Set-* requests since `since` that the emulator journaled with a fault: the hung one, once it is answered. */
static int faulted_sets(long long since)
{
    char path[200];
    snprintf(path, sizeof path, "/journal?since=%lld&kind=request", since);
    json_t *j = pts_emu_json(emu_env.admin, path);
    json_t *e;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        const char *cmdlet = json_string_value(json_object_get(e, "cmdlet"));
        if (cmdlet && strncmp(cmdlet, "Set-", 4) == 0 && json_string_value(json_object_get(e, "fault")))
            n++;
    }
    json_decref(j);
    return n;
}

/*
 * Issue 5: a hung Exchange write (one Set-Mailbox that Office 365 answers only after HUNG_DELAY_MS, far past
 * batch.max_apply_time + batch.cancel_grace) does not keep its batch open until http.timeout (30 s): it is
 * cancelled at the deadline, the batch commits the others without recording the hung recipient as applied,
 * and that recipient is written again from the retry topic and applied then.
 */
#define HUNG_N 4
#define HUNG_USER 1
#define HUNG_DELAY_MS 20000
static void hung_write_cancelled_at_deadline(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1);
    for (int u = 0; u < HUNG_N; u++)
        seed_recipient(u, 0);
    char rule[600], upn[320];
    upn_of(HUNG_USER, upn, sizeof upn);
    snprintf(rule, sizeof rule,
             "{\"endpoint\":\"exchange\",\"cmdlet\":\"Set-Mailbox\",\"identity\":\"%s\",\"action\":\"delay\","
             "\"delay_ms\":%d,\"count\":1}",
             upn, HUNG_DELAY_MS);
    assert_int_equal(emu("POST", "/faults", rule), 200);
    long long s0 = last_seq();
    for (int u = 0; u < HUNG_N; u++)
        produce_event(&w, 0, u, 1, u % N_CERTS);
    g_batch_extra = ", max_apply_time: 1s, cancel_grace: 1s";
    char cfg[400];
    int port = pts_free_port();
    write_config(&w, port, cfg, sizeof cfg);
    g_batch_extra = "";
    pid_t pid = spawn(cfg, 0, NULL, port);
    wait_ready(port, pid);

    /* Cancelled at the deadline: the batch commits the other three, the hung one is parked, not applied. */
    await_event(port, pid, "writes unfinished: cancelled", 1, NULL);
    long long t_cancel = pts_mono_ms();
    long long end = t_cancel + WAIT_MS;
    char *text = NULL;
    double applied = 0, parked = 0;
    while (applied < HUNG_N - 1 || parked < 1) {
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("the batch with the hung write did not commit (applied %.0f, parked %.0f)", applied,
                     parked);
        }
        pts_nap_ms(20);
        assert_int_equal(admin_get(port, "/metrics", &text), 200);
        applied = metric_value(text, "certsync_publisher_applied_total");
        parked = metric_value(text, "certsync_publisher_parked_total");
        free(text);
        text = NULL;
    }
    /* Committed while the hung request was still unanswered: the deadline, not http.timeout, ended it. */
    if (faulted_sets(s0) != 0) {
        dump_log(port);
        fail_msg("the batch committed only after the hung request was answered: it was not cancelled");
    }
    if (applied != HUNG_N - 1) {
        dump_log(port);
        fail_msg("%.0f writes recorded as applied with the hung one unanswered, want %d", applied,
                 HUNG_N - 1);
    }
    /* Retried from topics.retry (the fault answered once): applied then. */
    await_applied(port, HUNG_N);
    for (int u = 0; u < HUNG_N; u++) {
        if (u != HUNG_USER)
            expect_written_once(s0, u, u % N_CERTS);
        expect_state(u, u % N_CERTS);
    }
    /* The hung request lands in the end, as the same full state (an identical re-write): await it, so it
     * cannot touch the next test's tenant. */
    end = pts_mono_ms() + WAIT_MS;
    while (faulted_sets(s0) < 1) {
        if (pts_mono_ms() > end)
            fail_msg("the emulator never journaled the hung request");
        pts_nap_ms(100);
    }
    expect_state(HUNG_USER, HUNG_USER % N_CERTS);
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit_code(wait_exit(pid, port, 30000), 0, port);
    assert_int_equal(emu("DELETE", "/faults", NULL), 200);
    pts_topics_free(&w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(apply_update_clear_restart),
        cmocka_unit_test(service_probes_sigterm),
        cmocka_unit_test(dead_letters_and_throttling),
        cmocka_unit_test(kill9_before_commit_idempotent),
        cmocka_unit_test(fencing_older_instance),
        cmocka_unit_test(policy_refusals),
        cmocka_unit_test(secrets_never_printed),
        cmocka_unit_test(readiness_gauge_by_reason),
        cmocka_unit_test(not_found_retried_then_dead_lettered),
        cmocka_unit_test(apply_time_bounded_batches),
        cmocka_unit_test(hung_write_cancelled_at_deadline),
        cmocka_unit_test_teardown(kafka_pause_mid_commit, private_kafka_stop),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
