/*
 * The certsync-publisher commands end to end: replay, replay --dry-run, redrive, preflight and readiness,
 * with the real binary against real Kafka (fixture kafka) and the Office 365 emulator (fixture o365emu).
 * Each test makes its own topics, group and instance id, resets the emulator and seeds its recipients
 * (immutable id = base64 of the objectGUID in the events); certificates are made with OpenSSL
 * (tests/unit/testcert.c) for the user's own address, so the publisher's certificate policy passes them.
 * Outcomes are proven from the emulator's journal and state and from the commands' reports (stdout).
 *
 *   test_pub_commands <name>   runs one test (ctest registers one entry per test)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
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

#include "certsync/v1/change_event.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "cs_event.h"
#include "kafka_test_util.h"
#include "pub_test_support.h"
#include "testcert.h"

#define N_USERS 4
#define N_VARIANTS 2
#define WAIT_MS 90000
#define DAY 86400

static pts_emu_env emu_env; /* the emulator fixture's env file */
static char work[256];

/* Per user and variant: a good S/MIME certificate for the user's address (DER) and its PKCS#7 form. */
static unsigned char *cert[N_USERS][N_VARIANTS], *smime[N_USERS][N_VARIANTS];
static size_t cert_len[N_USERS][N_VARIANTS], smime_len[N_USERS][N_VARIANTS];

/* ------------------------------------------------------------------ small helpers */

static void upn_of(int user, char *out, size_t cap)
{
    snprintf(out, cap, "user%d@%s", user, emu_env.domain);
}

/* A DER certificate for `email` valid [nb, na] and its PKCS#7 form; caller frees both with free(). */
static void make_cert(const char *email, int64_t nb, int64_t na, long serial, unsigned char **der,
                      size_t *len, unsigned char **p7, size_t *p7len)
{
    tc_opts o = {.kind = "rsa2048",
                 .cn = email,
                 .san_email = email,
                 .not_before = nb,
                 .not_after = na,
                 .ku = "critical,digitalSignature,keyEncipherment",
                 .eku = "emailProtection",
                 .serial = serial};
    X509 *x = tc_cert(&o);
    *der = tc_der(x, len);
    *p7 = tc_p7_der(&x, 1, p7len);
    X509_free(x);
}

/* ------------------------------------------------------------------ setup */

static int setup(void **state)
{
    (void)state;
    if (pts_emu_env_load(&emu_env) != 0)
        return -1;
    snprintf(work, sizeof work, "/tmp/test_pub_commands.XXXXXX");
    if (!mkdtemp(work))
        return -1;
    int64_t now = (int64_t)time(NULL);
    for (int u = 0; u < N_USERS; u++) {
        char upn[320];
        upn_of(u, upn, sizeof upn);
        for (int v = 0; v < N_VARIANTS; v++)
            make_cert(upn, now - DAY, now + 365 * DAY + v * DAY, 100 + u * 10 + v, &cert[u][v],
                      &cert_len[u][v], &smime[u][v], &smime_len[u][v]);
    }
    return emu_env.url[0] && emu_env.admin[0] ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    for (int u = 0; u < N_USERS; u++)
        for (int v = 0; v < N_VARIANTS; v++) {
            free(cert[u][v]);
            free(smime[u][v]);
        }
    tc_free_keys();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", work);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ one test's world */

typedef pts_topics world; /* per-test topics, group, instance id and producer */

static void guid_of(int user, unsigned char g[16])
{
    for (int i = 0; i < 16; i++)
        g[i] = (unsigned char)(0x20 + i);
    g[15] = (unsigned char)user;
    g[14] = (unsigned char)(getpid() & 0xff);
}

/* Seeds (or replaces, emptying its certificates) recipient `user`, a mailbox. */
static void seed_recipient(int user, int dir_synced, int cloud_managed)
{
    unsigned char g[16];
    char upn[320];
    guid_of(user, g);
    upn_of(user, upn, sizeof upn);
    pts_emu_seed_mailbox(emu_env.admin, upn, g, 9000, user, dir_synced, cloud_managed);
}

static void world_new(world *w)
{
    pts_topics_new(w, "cmd", 1, 1, 1);
    assert_int_equal(pts_emu_call(emu_env.admin, "POST", "/reset", NULL, NULL), 200);
}

/* Encodes a change event of `user` at `version` with the given values (NULL der: a removal). Caller frees. */
static uint8_t *encode_event(int user, uint32_t version, const unsigned char *der, size_t len,
                             const unsigned char *p7, size_t p7len, const char *mail, size_t *out_len)
{
    char upn[320];
    unsigned char g[16];
    guid_of(user, g);
    upn_of(user, upn, sizeof upn);
    return pts_encode_change_event(user, g, upn, mail, version, der, len, p7, p7len, out_len);
}

static void produce_to(world *w, const char *topic, int user, const uint8_t *val, size_t len,
                       const char *attempt)
{
    char key[48];
    snprintf(key, sizeof key, "src/user%d", user);
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    if (attempt) {
        rd_kafka_header_add(h, "certsync-attempt", -1, attempt, -1);
        rd_kafka_header_add(h, "certsync-not-before-ms", -1, "0", -1);
    }
    rd_kafka_resp_err_t e =
        rd_kafka_producev(w->prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)(uintptr_t)val, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(h);
    assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(w->prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* An event of `user` at `version` with its certificate `variant` (-1: a removal) to the events topic. */
static void produce_event(world *w, int user, uint32_t version, int variant)
{
    size_t len = 0;
    uint8_t *buf = variant < 0 ? encode_event(user, version, NULL, 0, NULL, 0, NULL, &len)
                               : encode_event(user, version, cert[user][variant], cert_len[user][variant],
                                              smime[user][variant], smime_len[user][variant], NULL, &len);
    produce_to(w, w->events, user, buf, len, NULL);
    free(buf);
}

static void write_config(const world *w, int port, char *path, size_t cap)
{
    snprintf(path, cap, "%s/pub-%d.yaml", work, port);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    pts_publisher_yaml_head(f, w, w->instance, &emu_env, NULL);
    fprintf(f,
            "resolve.order: [upn]\n" /* not immutable_id: pub_graph sends no ConsistencyLevel */
            "batch: {max_events: 100, max_wait: 300ms}\n"
            "admin.listen: 127.0.0.1:%d\n"
            "kafka:\n  bootstrap.servers: %s\n  group.id: %s\n  session.timeout.ms: 6000\n",
            port, kt_bootstrap(), w->group);
    fclose(f);
}

/* One run of the binary: its files and process. */
typedef struct run {
    pid_t pid;
    char out[300], log[300];
} run;

/* Starts `certsync-publisher --config <cfg> args...` (args NULL-terminated); stdout to run->out, stderr to
 * run->log; `env_name`/`env_value` (may be NULL) set for the child. */
static void start(run *r, const char *cfg, const char *env_name, const char *env_value,
                  const char *const *args)
{
    static int seq;
    seq++;
    snprintf(r->out, sizeof r->out, "%s/run-%d.out", work, seq);
    snprintf(r->log, sizeof r->log, "%s/run-%d.log", work, seq);
    const char *argv[16];
    const char *bin = getenv("CERTSYNC_PUBLISHER");
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--config";
    argv[n++] = cfg;
    for (size_t i = 0; args && args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        int fo = open(r->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fl = open(r->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo >= 0)
            dup2(fo, 1);
        if (fl >= 0)
            dup2(fl, 2);
        if (env_name)
            setenv(env_name, env_value, 1);
        execv(bin, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
}

/* Waits (bounded) for the run to exit with `code`; returns its stdout (caller frees). */
static char *finish(run *r, int code)
{
    int st = 0;
    if (!pts_wait_pid(r->pid, WAIT_MS, &st)) {
        pts_dump_tail("stderr", r->log);
        fail_msg("publisher pid %d did not exit within %d ms", (int)r->pid, WAIT_MS);
    }
    char *out = pts_slurp(r->out, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != code) {
        pts_dump_tail("stdout", r->out);
        pts_dump_tail("stderr", r->log);
        fail_msg("publisher: wanted exit %d, got %s %d", code, WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
    return out ? out : strdup("");
}

/* Runs the binary to completion (expects `code`) and returns its stdout (caller frees). */
static char *run_cmd(const world *w, int code, const char *env_name, const char *env_value,
                     const char *const *args)
{
    char cfg[400];
    run r;
    write_config(w, pts_free_port(), cfg, sizeof cfg);
    start(&r, cfg, env_name, env_value, args);
    return finish(&r, code);
}

/* The live publisher until caught up (--once). */
static void run_once(const world *w)
{
    static const char *const args[] = {"--once", NULL};
    free(run_cmd(w, 0, NULL, NULL, args));
}

/* The report line of `object` (first column, or second when `col2`) contains the word `word`. */
static void expect_line(const char *report, const char *object, const char *word)
{
    char pat[128];
    snprintf(pat, sizeof pat, "%s ", object);
    for (const char *p = report; p && *p;) {
        size_t len = strcspn(p, "\n");
        char line[2048];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line - 1 ? len : sizeof line - 1), p);
        char wpat[96];
        snprintf(wpat, sizeof wpat, " %s ", word);
        if (strstr(line, pat) && (strstr(line, wpat) || strncmp(line, word, strlen(word)) == 0))
            return;
        p += len + (p[len] == '\n');
    }
    fail_msg("no report line for %s with \"%s\" in:\n%s", object, word, report);
}

/* ------------------------------------------------------------------ journal checks */

static long long last_seq(void)
{
    return pts_emu_last_seq(emu_env.admin);
}

/* Requests since `since` whose cmdlet starts with `prefix` ("Set-", "Get-Mailbox"); `upn` (may be NULL)
 * limits them to Set-* writes that changed that recipient's UserCertificate. */
static int requests(long long since, const char *prefix)
{
    return pts_emu_requests(emu_env.admin, since, prefix);
}

/* Journal changes of recipient `user` since `since` (writes that changed or re-wrote UserCertificate). */
static int changes_of(long long since, int user)
{
    char path[128], upn[320];
    snprintf(path, sizeof path, "/journal?kind=change&since=%lld", since);
    upn_of(user, upn, sizeof upn);
    json_t *j = pts_emu_json(emu_env.admin, path);
    json_t *e;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(j, "entries"), i, e)
    {
        const char *smtp = json_string_value(json_object_get(e, "primary_smtp"));
        const char *a = json_string_value(json_object_get(e, "attribute"));
        n += smtp && a && strcasecmp(smtp, upn) == 0 && strcmp(a, "UserCertificate") == 0;
    }
    json_decref(j);
    return n;
}

/* The emulator's UserCertificate of `user` is exactly its certificate `variant` (-1: empty). */
static void expect_state(int user, int variant)
{
    char path[400], upn[320];
    upn_of(user, upn, sizeof upn);
    snprintf(path, sizeof path, "/state/recipients/%s", upn);
    json_t *r = pts_emu_json(emu_env.admin, path);
    json_t *uc = json_object_get(r, "UserCertificate");
    if (variant < 0) {
        assert_int_equal(json_array_size(uc), 0);
    } else {
        char *want = malloc(cert_len[user][variant] * 2 + 4);
        pts_b64(cert[user][variant], cert_len[user][variant], want);
        if (json_array_size(uc) != 1 || strcmp(json_string_value(json_array_get(uc, 0)), want) != 0)
            fail_msg("user%d: Exchange does not hold its certificate variant %d", user, variant);
        free(want);
    }
    json_decref(r);
}

/* ------------------------------------------------------------------ tests */

/* The tenant is emptied after a sync: the live publisher's gate says "done" and writes nothing, replay
 * writes everything back; a replay from a future time writes nothing; the live publisher is unaffected. */
static void replay_rebuilds_emptied_tenant(void **state)
{
    (void)state;
    world w;
    world_new(&w);
    for (int u = 0; u < 3; u++) {
        seed_recipient(u, 0, 0);
        produce_event(&w, u, 1, 0);
    }
    run_once(&w);
    for (int u = 0; u < 3; u++)
        expect_state(u, 0);
    for (int u = 0; u < 3; u++)
        seed_recipient(u, 0, 0); /* emptied: a restored or new tenant */
    long long s1 = last_seq();
    run_once(&w);
    assert_int_equal(requests(s1, "Set-"), 0); /* the gate: applied state says done */
    expect_state(0, -1);

    static const char *const future[] = {"replay", "--from-time", "2999-01-01T00:00:00Z", NULL};
    free(run_cmd(&w, 0, NULL, NULL, future));
    assert_int_equal(requests(s1, "Set-"), 0);

    static const char *const replay[] = {"replay", "--from-beginning", NULL};
    char *out = run_cmd(&w, 0, NULL, NULL, replay);
    for (int u = 0; u < 3; u++) {
        char obj[32];
        snprintf(obj, sizeof obj, "src/user%d", u);
        expect_line(out, obj, "applied");
        expect_state(u, 0);
    }
    assert_non_null(strstr(out, "replay: 3 objects: 3 written"));
    free(out);
    assert_int_equal(requests(s1, "Set-"), 3);

    /* The live publisher goes on as before: nothing new to write. */
    long long s2 = last_seq();
    run_once(&w);
    assert_int_equal(requests(s2, "Set-"), 0);
    pts_topics_free(&w);
}

/* --dry-run reads Exchange and reports none / write / clear / not_found, and writes nothing. */
static void replay_dry_run_reports_only(void **state)
{
    (void)state;
    world w;
    world_new(&w);
    for (int u = 0; u < 3; u++) {
        seed_recipient(u, 0, 0);
        produce_event(&w, u, 1, 0);
    }
    run_once(&w);
    seed_recipient(1, 0, 0);     /* user1 emptied: Exchange differs */
    produce_event(&w, 2, 2, -1); /* user2 removed in the directory, still holds values in Exchange */
    produce_event(&w, 3, 1, 0);  /* user3 has no recipient */
    long long s0 = last_seq();
    static const char *const args[] = {"replay", "--dry-run", NULL};
    char *out = run_cmd(&w, 1, NULL, NULL, args);
    expect_line(out, "src/user0", "none");
    expect_line(out, "src/user1", "write");
    expect_line(out, "src/user2", "clear");
    expect_line(out, "src/user3", "not_found");
    assert_non_null(strstr(out, "4 objects: 1 write, 1 clear, 1 none, 1 not_found"));
    free(out);
    assert_int_equal(requests(s0, "Set-"), 0);     /* nothing written */
    assert_true(requests(s0, "Get-Mailbox") >= 3); /* what Exchange holds was read */
    expect_state(1, -1);
    expect_state(2, 0);
    pts_topics_free(&w);
}

/* A replay that read v1 of user0 must not write it over v2, which the live publisher applied after the
 * replay recorded its end offset; user1 (emptied) is still rebuilt by the same replay. */
static void replay_does_not_regress_newer(void **state)
{
    (void)state;
    world w;
    world_new(&w);
    seed_recipient(0, 0, 0);
    seed_recipient(1, 0, 0);
    produce_event(&w, 0, 1, 0);
    produce_event(&w, 1, 1, 0);
    run_once(&w);
    seed_recipient(1, 0, 0);

    char cfg[400], hold[400], ready[420];
    snprintf(hold, sizeof hold, "%s/hold", work);
    snprintf(ready, sizeof ready, "%s.ready", hold);
    write_config(&w, pts_free_port(), cfg, sizeof cfg);
    static const char *const args[] = {"replay", NULL};
    run r;
    start(&r, cfg, "CERTSYNC_PUB_REPLAY_HOLD", hold, args);
    /* The replay has read the events (v1 only) and waits before its first batch. */
    struct stat st;
    long long end = pts_mono_ms() + WAIT_MS;
    while (stat(ready, &st) != 0) {
        if (pts_mono_ms() > end) {
            pts_dump_tail("replay stderr", r.log);
            fail_msg("the replay never reached its hold point");
        }
        pts_nap_ms(50);
    }
    produce_event(&w, 0, 2, 1); /* v2, after the recorded end offset */
    run_once(&w);               /* the live publisher applies it */
    expect_state(0, 1);
    long long s1 = last_seq();
    FILE *f = fopen(hold, "w");
    assert_non_null(f);
    fclose(f);
    char *out = finish(&r, 0);
    expect_line(out, "skipped_newer", "src/user0");
    expect_line(out, "applied", "src/user1");
    free(out);
    expect_state(0, 1); /* not regressed to v1 */
    assert_int_equal(changes_of(s1, 0), 0);
    expect_state(1, 0);
    pts_topics_free(&w);
}

/* Reads the dead-letter topic's record count (read_committed). */
static int dead_letter_count(const world *w)
{
    rd_kafka_t *c = pts_partition_reader(w->dlq, "unused");
    int n = 0;
    long long end = pts_mono_ms() + 20000;
    while (pts_mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        int eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
        n += !m->err;
        rd_kafka_message_destroy(m);
        if (eof)
            break;
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

/* A recipient not found past its retries is dead-lettered; redrive before it exists fails again (exit 1),
 * --dry-run writes nothing, and redrive after it was seeded applies the event; a second redrive is stale. */
static void redrive_after_recipient_appears(void **state)
{
    (void)state;
    world w;
    world_new(&w);
    seed_recipient(1, 0, 0);
    produce_event(&w, 1, 1, 0);
    /* user0's event comes back from the retry topic on its last not-found attempt: the live publisher
     * dead-letters it (RECIPIENT_NOT_FOUND), as after hours of retries. */
    size_t len = 0;
    uint8_t *ev = encode_event(0, 1, cert[0][0], cert_len[0][0], smime[0][0], smime_len[0][0], NULL, &len);
    produce_to(&w, w.retry, 0, ev, len, "7");
    free(ev);
    char cfg[400];
    write_config(&w, pts_free_port(), cfg, sizeof cfg);
    run svc;
    start(&svc, cfg, NULL, NULL, NULL);
    long long end = pts_mono_ms() + WAIT_MS;
    while (dead_letter_count(&w) < 1) {
        if (pts_mono_ms() > end || waitpid(svc.pid, NULL, WNOHANG) == svc.pid) {
            pts_dump_tail("service stderr", svc.log);
            pts_dump_tail("service stdout", svc.out);
            fail_msg("user0 was not dead-lettered");
        }
        pts_nap_ms(200);
    }
    assert_int_equal(kill(svc.pid, SIGTERM), 0);
    free(finish(&svc, 0));
    expect_state(1, 0);

    long long s0 = last_seq();
    static const char *const dry[] = {"redrive", "--dry-run", NULL};
    char *out = run_cmd(&w, 0, NULL, NULL, dry);
    expect_line(out, "would_applied", "src/user0");
    free(out);
    static const char *const again[] = {"redrive", "--reason", "recipient_not_found", NULL};
    out = run_cmd(&w, 1, NULL, NULL, again); /* still missing */
    expect_line(out, "recipient_not_found", "src/user0");
    free(out);
    assert_int_equal(requests(s0, "Set-"), 0);

    seed_recipient(0, 0, 0);
    out = run_cmd(&w, 0, NULL, NULL, again);
    expect_line(out, "applied", "src/user0");
    free(out);
    expect_state(0, 0);
    long long s1 = last_seq();
    static const char *const all[] = {"redrive", NULL};
    out = run_cmd(&w, 0, NULL, NULL, all);
    expect_line(out, "skipped_stale", "src/user0");
    free(out);
    assert_int_equal(requests(s1, "Set-"), 0);
    pts_topics_free(&w);
}

/* preflight: two writable (cloud-only, and synced but cloud-managed), one write scope, one unknown. */
static void preflight_counts_classes(void **state)
{
    (void)state;
    world w;
    world_new(&w);
    seed_recipient(0, 0, 0);
    seed_recipient(1, 1, 1);
    seed_recipient(2, 1, 0);
    for (int u = 0; u < 4; u++)
        produce_event(&w, u, 1, 0);
    long long s0 = last_seq();
    static const char *const args[] = {"preflight", NULL};
    char *out = run_cmd(&w, 1, NULL, NULL, args);
    assert_non_null(strstr(out,
                           "preflight: 4 objects: 2 writable, 1 unwritable (write scope), 1 unknown (not "
                           "found), 0 error"));
    expect_line(out, "unwritable", "src/user2");
    expect_line(out, "unknown", "src/user3");
    assert_null(strstr(out, "src/user0"));
    assert_non_null(strstr(out, "IsExchangeCloudManaged $true"));
    assert_non_null(strstr(out, "Start-ADSyncSyncCycle"));
    free(out);
    assert_int_equal(requests(s0, "Set-"), 0);

    /* Fixed: every recipient writable, exit 0. */
    seed_recipient(2, 1, 1);
    seed_recipient(3, 0, 0);
    out = run_cmd(&w, 0, NULL, NULL, args);
    assert_non_null(strstr(out, "4 writable, 0 unwritable"));
    free(out);
    pts_topics_free(&w);
}

/* Sets the app roles the emulator grants (Entra ID admin consent), per resource. */
static void set_roles(const char *exchange_roles, const char *graph_roles)
{
    char path[300], body[600];
    snprintf(path, sizeof path, "/apps/%s", emu_env.client);
    snprintf(body, sizeof body,
             "{\"roles\":{\"https://outlook.office365.com\":[%s],\"https://graph.microsoft.com\":[%s]}}",
             exchange_roles, graph_roles);
    assert_int_equal(pts_emu_call(emu_env.admin, "PUT", path, body, NULL), 200);
}

/* preflight reads the roles claim of its own tokens and names each missing permission with the exact fix. */
static void preflight_names_missing_permissions(void **state)
{
    (void)state;
    world w;
    world_new(&w);
    seed_recipient(0, 0, 0);
    produce_event(&w, 0, 1, 0);
    static const char *const args[] = {"preflight", NULL};

    set_roles("", "\"User.Read.All\"");
    char *out = run_cmd(&w, 1, NULL, NULL, args);
    assert_non_null(
        strstr(out, "the app has no Exchange.ManageAsApp application permission: grant it in Entra ID > "
                    "App registrations"));
    assert_non_null(strstr(out, "Office 365 Exchange Online"));
    assert_non_null(strstr(out, "then grant admin consent"));
    assert_null(strstr(out, "no User.Read.All"));
    free(out);

    set_roles("\"Exchange.ManageAsApp\"", "");
    out = run_cmd(&w, 1, NULL, NULL, args);
    assert_non_null(strstr(out, "the app has no User.Read.All application permission on Microsoft Graph"));
    assert_null(strstr(out, "no Exchange.ManageAsApp"));
    free(out);

    set_roles("\"Exchange.ManageAsApp\"", "\"User.Read.All\"");
    out = run_cmd(&w, 0, NULL, NULL, args);
    assert_non_null(strstr(out, "permission  ok"));
    assert_non_null(strstr(out, "1 writable"));
    free(out);
    assert_int_equal(pts_emu_call(emu_env.admin, "POST", "/reset", NULL, NULL), 200);
    pts_topics_free(&w);
}

/* readiness: ok, expired, expiring soon and address mismatch, as a table and as CSV. */
static void readiness_reasons(void **state)
{
    (void)state;
    world w;
    world_new(&w);
    int64_t now = (int64_t)time(NULL);
    char upn[4][320];
    for (int u = 0; u < 4; u++)
        upn_of(u, upn[u], sizeof upn[u]);
    struct {
        const char *email;
        int64_t nb, na;
    } spec[4] = {{upn[0], now - DAY, now + 365 * DAY},
                 {upn[1], now - 30 * DAY, now - DAY},
                 {upn[2], now - DAY, now + 5 * DAY},
                 {"someone.else@example.org", now - DAY, now + 365 * DAY}};
    for (int u = 0; u < 4; u++) {
        unsigned char *der = NULL, *p7 = NULL;
        size_t dl = 0, pl = 0, len = 0;
        make_cert(spec[u].email, spec[u].nb, spec[u].na, 500 + u, &der, &dl, &p7, &pl);
        uint8_t *ev = encode_event(u, 1, der, dl, p7, pl, NULL, &len);
        produce_to(&w, w.events, u, ev, len, NULL);
        free(ev);
        free(der);
        free(p7);
    }
    static const char *const table[] = {"readiness", NULL};
    char *out = run_cmd(&w, 1, NULL, NULL, table);
    assert_non_null(strstr(out, "USER"));
    expect_line(out, upn[0], "ok");
    expect_line(out, upn[1], "expired");
    expect_line(out, upn[2], "expiring_soon");
    expect_line(out, upn[3], "address_mismatch");
    free(out);
    static const char *const csv[] = {"readiness", "--csv", NULL};
    out = run_cmd(&w, 1, NULL, NULL, csv);
    assert_non_null(strstr(out, "user,reason,attribute,not_after,certificate_sha256,detail\r\n"));
    char row[400];
    snprintf(row, sizeof row, "%s,expired,", upn[1]);
    assert_non_null(strstr(out, row));
    snprintf(row, sizeof row, "%s,ok,", upn[0]);
    assert_non_null(strstr(out, row));
    free(out);
    pts_topics_free(&w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replay_rebuilds_emptied_tenant),
        cmocka_unit_test(replay_dry_run_reports_only),
        cmocka_unit_test(replay_does_not_regress_newer),
        cmocka_unit_test(redrive_after_recipient_appears),
        cmocka_unit_test(preflight_counts_classes),
        cmocka_unit_test(preflight_names_missing_permissions),
        cmocka_unit_test(readiness_reasons),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
