/*
 * certsync-publisher under faults, end to end: real Kafka (fixture kafka) and the Office 365 emulator (fixture
 * o365emu). Every test proves its outcome from the emulator's journal:
 *   - the final state of every recipient is the newest event produced for it;
 *   - no recipient ever received an older state after a newer one (each written certificate is unique per
 *     (user, version), so a write maps to exactly one version and the versions written only go up);
 *   - every repeated write (journaled "unchanged") is identical to the write before it and follows a restart
 *     of a publisher (a start time lies between the two writes).
 * The checks live in tests/support/pub_journal_check.c; tests/unit/test_pub_journal_check.c shows each of them
 * failing on a crafted journal.
 *
 *   test_pub_chaos <name>        runs one test (ctest registers one entry per test)
 *   CS_CHAOS_CYCLES=N            cycles of chaos_random_kills (default 20); CS_CHAOS_SEED=S its base seed
 *                                (default: from the clock; printed, so a failing run can be replayed)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certsync/v1/change_event.pb-c.h"
#include "certsync/v1/dead_letter.pb-c.h"
#include "cs_event.h"
#include "kafka_test_util.h"
#include "pub_journal_check.h"
#include "pub_test_support.h"

#define WAIT_MS 90000
#define MAX_USERS 12
#define MAX_VERSIONS 2048
#define MAX_RESTARTS 256
#define REMOVAL_EVERY 8 /* every 8th version of a user is a removal */

static pts_emu_env emu_env;
static char work[256];
static EVP_PKEY *key; /* one P-256 key signs every generated certificate */

/* What the test produced: per user and version the SHA-256 hex of the written userCertificate ("" for a
 * removal), the newest version, and the publisher start/stop times (epoch seconds) that separate writes. */
static char vhash[MAX_USERS][MAX_VERSIONS][65];
static uint32_t newest[MAX_USERS];
static double restarts[MAX_RESTARTS];
static int n_restarts;

/* ------------------------------------------------------------------ small helpers */

static double now_epoch(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void note_restart(void)
{
    assert_true(n_restarts < MAX_RESTARTS);
    restarts[n_restarts++] = now_epoch();
}

/* Epoch seconds of the journal's "YYYY-MM-DDThh:mm:ss.ffffffZ" (UTC). */
static double iso_epoch(const char *t)
{
    double e = pjc_iso_epoch(t);
    if (e < 0)
        fail_msg("bad journal time %s", t ? t : "(null)");
    return e;
}

static long emu(const char *method, const char *path, const char *json)
{
    return pts_emu_call(emu_env.admin, method, path, json, NULL);
}

static void upn_of(int user, char *out, size_t cap)
{
    snprintf(out, cap, "user%d@%s", user, emu_env.domain);
}

static void guid_of(int user, unsigned char g[16])
{
    for (int i = 0; i < 16; i++)
        g[i] = (unsigned char)(0x30 + i);
    g[15] = (unsigned char)user;
    g[14] = (unsigned char)(getpid() & 0xff);
}

/* A fresh self-signed S/MIME certificate of `user`, unique per (user, version) by its serial. Caller frees with
 * OPENSSL_free(). */
static unsigned char *make_cert(int user, uint32_t version, size_t *len)
{
    char upn[320];
    upn_of(user, upn, sizeof upn);
    time_t now = time(NULL);
    return pts_smime_cert(key, upn, (long)user * 100000L + (long)version, now - 3600, now + 30 * 86400, len);
}

/* ------------------------------------------------------------------ setup */

static int setup(void **state)
{
    (void)state;
    if (pts_emu_env_load(&emu_env) != 0 || !emu_env.url[0] || !emu_env.admin[0])
        return -1;
    snprintf(work, sizeof work, "/tmp/test_pub_chaos.XXXXXX");
    if (!mkdtemp(work))
        return -1;
    key = EVP_EC_gen("P-256");
    return key ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key);
    if (getenv("CS_TEST_KEEP_WORK")) {
        fprintf(stderr, "kept %s\n", work);
        return 0;
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", work);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ one test's world */

typedef pts_topics world;

static void seed_recipient(int user)
{
    unsigned char g[16];
    char upn[320];
    guid_of(user, g);
    upn_of(user, upn, sizeof upn);
    pts_emu_seed_mailbox(emu_env.admin, upn, g, 9000, user, 0, 0);
}

static void world_new(world *w, int parts, int users)
{
    pts_topics_new(w, "chaos", parts, 0, 1);
    assert_int_equal(emu("POST", "/reset", NULL), 200);
    memset(vhash, 0, sizeof vhash);
    memset(newest, 0, sizeof newest);
    n_restarts = 0;
    for (int u = 0; u < users; u++)
        seed_recipient(u);
}

static void produce_raw(world *w, int32_t part, const char *key_s, const void *val, size_t len)
{
    pts_produce(w->prod, w->events, part, key_s, val, len);
}

/* Produces the next version of `user` (a unique certificate, or a removal every REMOVAL_EVERY versions) to its
 * partition (user % parts), and records what it must become. Returns the version. */
static uint32_t produce_next(world *w, int user)
{
    uint32_t v = ++newest[user];
    assert_true(v < MAX_VERSIONS);
    char key_s[48], upn[320];
    unsigned char g[16];
    guid_of(user, g);
    upn_of(user, upn, sizeof upn);
    snprintf(key_s, sizeof key_s, "src/user%d", user);
    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    Certsync__V1__Version ver = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__AttributeStamp st = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__CertificateValue cv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT, *cvp = &cv;
    char oid[32], src_id[] = "src";
    snprintf(oid, sizeof oid, "user%d", user);
    src.source_id = src_id;
    id.object_id = oid;
    id.has_object_guid = 1;
    id.object_guid.data = g;
    id.object_guid.len = 16;
    id.user_principal_name = upn;
    id.mail = upn;
    st.has_version = 1;
    st.version = v;
    ver.user_certificate = &st;
    ev.has_kind = 1;
    ev.source = &src;
    ev.identity = &id;
    ev.version = &ver;
    unsigned char *der = NULL;
    size_t der_len = 0;
    if (v % REMOVAL_EVERY == 0) {
        ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL;
        vhash[user][v][0] = '\0';
    } else {
        ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
        der = make_cert(user, v, &der_len);
        pts_sha256_hex(der, der_len, vhash[user][v]);
        cv.has_raw = 1;
        cv.raw.data = der;
        cv.raw.len = der_len;
        ev.user_certificate = &cvp;
        ev.n_user_certificate = 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_null(cs_event_encode(&ev, &buf, &len));
    produce_raw(w, user % w->parts, key_s, buf, len);
    free(buf);
    OPENSSL_free(der);
    return v;
}

/* Writes the publisher's config: `instance` (NULL: the world's), `static_member` adds kafka.group.instance.id =
 * the instance id (a restarted instance takes its place in the group at once, no session timeout). */
static void write_config(const world *w, const char *instance, int static_member, int port, char *path,
                         size_t cap)
{
    const char *inst = instance ? instance : w->instance;
    snprintf(path, cap, "%s/pub-%d.yaml", work, port);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    pts_publisher_yaml_head(f, w, inst, &emu_env, NULL);
    fprintf(f,
            "resolve.order: [immutable_id, upn]\n"
            "batch: {max_events: 100, max_wait: 200ms}\n"
            "admin.listen: 127.0.0.1:%d\n"
            "policy.check_address: false\n"
            "kafka:\n  bootstrap.servers: %s\n  group.id: %s\n  session.timeout.ms: 6000\n"
            "  heartbeat.interval.ms: 500\n",
            port, kt_bootstrap(), w->group);
    if (static_member)
        fprintf(f, "  group.instance.id: %s\n", inst);
    fclose(f);
}

/* Starts the binary with `config`; `fault` sets CERTSYNC_PUB_FAULT. Output goes to <work>/pub-<port>.log. Notes
 * the start as a restart. */
static pid_t spawn(const char *config, int once, const char *fault, int port)
{
    note_restart();
    return pts_pub_spawn(work, port, config, once, fault);
}

static void dump_log(int port)
{
    pts_pub_dump_log(work, port);
}

static int log_count(int port, const char *needle)
{
    char log[300];
    pts_pub_log_path(work, port, log, sizeof log);
    char *text = pts_slurp(log, NULL);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

static int wait_exit(pid_t pid, int port, long long timeout_ms)
{
    return pts_pub_wait_exit(work, port, pid, timeout_ms);
}

static void expect_exit(int st, int code, int port)
{
    pts_pub_expect_exit(work, port, st, code);
}

static void expect_sigkill(int st, int port, const char *point)
{
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        dump_log(port);
        fail_msg("publisher was to SIGKILL itself at %s", point);
    }
    char needle[96];
    snprintf(needle, sizeof needle, "\"point\":\"%s\"", point);
    if (log_count(port, needle) < 1) {
        dump_log(port);
        fail_msg("the log does not name the fault point %s", point);
    }
}

/* Runs the binary with --once (`fault`: expect it to SIGKILL itself at that point, else exit 0). */
static int run_once(const world *w, const char *fault)
{
    char cfg[400];
    int port = pts_free_port();
    write_config(w, NULL, 0, port, cfg, sizeof cfg);
    int st = wait_exit(spawn(cfg, 1, fault, port), port, WAIT_MS);
    if (fault)
        expect_sigkill(st, port, fault);
    else
        expect_exit(st, 0, port);
    return port;
}

/* certsync_publisher_applied_total of the instance on `port` (-1: no answer). */
static long applied_total(int port)
{
    char *text = NULL;
    long n = -1;
    if (pts_pub_admin_get(port, "/metrics", &text) == 200) {
        const char *p = strstr(text, "\ncertsync_publisher_applied_total ");
        if (p)
            n = strtol(p + strlen("\ncertsync_publisher_applied_total "), NULL, 10);
    }
    free(text);
    return n;
}

/* Waits until the instance on `port` has applied at least `n` writes, producing the next version of a user
 * (round robin from *rr) every `every_ms` meanwhile (0: none). */
static void await_applied(world *w, int port, pid_t pid, long n, int users, int every_ms, int *rr)
{
    long long end = pts_mono_ms() + WAIT_MS, next = pts_mono_ms();
    while (applied_total(port) < n) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            dump_log(port);
            fail_msg("publisher exited while %ld writes were awaited", n);
        }
        if (pts_mono_ms() > end) {
            dump_log(port);
            fail_msg("fewer than %ld writes within %d ms", n, WAIT_MS);
        }
        if (every_ms > 0 && pts_mono_ms() >= next) {
            produce_next(w, (*rr)++ % users);
            next = pts_mono_ms() + every_ms;
        }
        pts_nap_ms(50);
    }
}

/* ------------------------------------------------------------------ journal checks */

/* Every journal entry of `kind` after `since`, paged (the admin API answers at most 10,000 per call). Caller
 * frees with json_decref(). */
static json_t *journal(long long since, const char *kind)
{
    json_t *all = json_array();
    for (int page = 0; page < 100; page++) {
        char path[128];
        snprintf(path, sizeof path, "/journal?kind=%s&since=%lld", kind, since);
        json_t *j = pts_emu_json(emu_env.admin, path);
        json_t *ents = json_object_get(j, "entries");
        size_t n = json_array_size(ents);
        if (n > 0)
            since = json_integer_value(json_object_get(json_array_get(ents, n - 1), "seq"));
        json_array_extend(all, ents);
        json_decref(j);
        if (n == 0)
            break;
    }
    return all;
}

static long long last_seq(void)
{
    return pts_emu_last_seq(emu_env.admin);
}

typedef struct history_stats {
    int writes, repeats;
} history_stats;

/* The SHA-256 hex of the one certificate `smtp` holds now in the emulator into hash; returns how many it holds. */
static size_t final_certificate(const char *smtp, char hash[65])
{
    char path[400];
    snprintf(path, sizeof path, "/state/recipients/%s", smtp);
    json_t *r = pts_emu_json(emu_env.admin, path);
    json_t *uc = json_object_get(r, "UserCertificate");
    size_t n = json_array_size(uc);
    hash[0] = '\0';
    if (n == 1) {
        const char *b64 = json_string_value(json_array_get(uc, 0));
        unsigned char *der = malloc(strlen(b64) + 1);
        assert_non_null(der);
        int len = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)strlen(b64));
        assert_true(len > 0);
        size_t l = strlen(b64);
        while (l > 0 && b64[l - 1] == '=') { /* EVP_DecodeBlock counts padding as zero bytes */
            len--;
            l--;
        }
        pts_sha256_hex(der, (size_t)len, hash);
        free(der);
    }
    json_decref(r);
    return n;
}

/*
 * The three journal properties (pub_journal_check.h) for users 0..users-1 over the change entries after
 * `since`, against what the test produced (vhash, newest), the restarts it noted and the emulator's final
 * state. Fails the test naming the first violation.
 */
static history_stats verify_history(long long since, int users)
{
    json_t *ents = journal(since, "change");
    pjc_user pu[MAX_USERS];
    char smtp[MAX_USERS][320], final_hash[MAX_USERS][65];
    assert_true(users > 0 && users <= MAX_USERS);
    for (int u = 0; u < users; u++) {
        upn_of(u, smtp[u], sizeof smtp[u]);
        pu[u].smtp = smtp[u];
        pu[u].newest = newest[u];
        pu[u].vhash = (const char(*)[65])vhash[u];
        pu[u].final_count = final_certificate(smtp[u], final_hash[u]);
        pu[u].final_hash = final_hash[u];
    }
    pjc_result r;
    pjc_check(ents, pu, (size_t)users, restarts, (size_t)n_restarts, &r);
    json_decref(ents);
    if (r.first != PJC_OK)
        fail_msg("journal check: %s (%d violation(s)): %s", pjc_violation_name(r.first), r.violations,
                 r.message);
    history_stats hs = {r.writes, r.repeats};
    return hs;
}

/* ------------------------------------------------------------------ named kill points */

/* SIGKILL with the commit request on the wire (the commit started, a timer kills a few ms later). */
static void kill9_mid_commit(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1, 3);
    long long s0 = last_seq();
    for (int u = 0; u < 3; u++)
        produce_next(&w, u);
    run_once(&w, "kill_mid_commit");
    for (int u = 0; u < 3; u++)
        produce_next(&w, u);
    run_once(&w, NULL);
    history_stats hs = verify_history(s0, 3);
    assert_true(hs.writes >= 3);
    /* Committed now: another run writes nothing. */
    long long s1 = last_seq();
    run_once(&w, NULL);
    assert_int_equal(verify_history(s1, 3).writes, 0);
    pts_topics_free(&w);
}

/* SIGKILL in the assign callback while the applied state is read back; the next start restores it fully. */
static void kill9_during_restore(void **state)
{
    (void)state;
    world w;
    world_new(&w, 1, 3);
    long long s0 = last_seq();
    for (int u = 0; u < 3; u++)
        produce_next(&w, u);
    run_once(&w, NULL); /* commits applied state records */
    for (int u = 0; u < 3; u++)
        produce_next(&w, u);
    int port = run_once(&w, "kill_in_restore");
    /* Killed before anything of the new versions was written. */
    assert_int_equal(log_count(port, "\"msg\":\"restored "), 0);
    run_once(&w, NULL);
    history_stats hs = verify_history(s0, 3);
    assert_int_equal(hs.writes, 6); /* two versions each, none written twice with another state */
    pts_topics_free(&w);
}

/*
 * SIGKILL inside the revoke callback: instance A runs a stream; instance B joins the group, the rebalance revokes
 * A's partitions and A dies in its revoke callback. Exchange answers slowly meanwhile (delay fault), so A's batches
 * keep requests on the wire; the applier finishes or cancels them before a batch's commit, and the revoke
 * callback runs between batches (pub_o365: apply() returns with nothing in flight; quiesce is the safety net).
 * B takes over after A's session times out and applies the rest.
 */
static void kill9_in_revoke(void **state)
{
    (void)state;
    world w;
    const int users = 4;
    world_new(&w, 2, users);
    assert_int_equal(emu("POST", "/faults",
                         "{\"endpoint\":\"exchange\",\"action\":\"delay\",\"delay_ms\":150,\"rate\":1}"),
                     200);
    long long s0 = last_seq();
    char cfg_a[400], cfg_b[400], inst_b[200];
    int port_a = pts_free_port(), port_b = pts_free_port();
    while (port_b == port_a)
        port_b = pts_free_port();
    snprintf(inst_b, sizeof inst_b, "%s-b", w.instance);
    write_config(&w, NULL, 0, port_a, cfg_a, sizeof cfg_a);
    write_config(&w, inst_b, 0, port_b, cfg_b, sizeof cfg_b);
    pid_t a = spawn(cfg_a, 0, "kill_in_revoke", port_a);
    int rr = 0;
    await_applied(&w, port_a, a, 4, users, 100, &rr);
    pid_t b = spawn(cfg_b, 0, NULL, port_b);
    /* The stream goes on while A dies in its revoke callback. */
    long long end = pts_mono_ms() + WAIT_MS;
    int st = 0;
    while (waitpid(a, &st, WNOHANG) != a) {
        if (pts_mono_ms() > end) {
            dump_log(port_a);
            fail_msg("instance A was not killed in its revoke callback");
        }
        produce_next(&w, rr++ % users);
        pts_nap_ms(100);
    }
    expect_sigkill(st, port_a, "kill_in_revoke");
    note_restart();
    for (int i = 0; i < 8; i++)
        produce_next(&w, rr++ % users);
    /* B owns everything once A's session expired; it applies up to the newest versions. */
    long long want = 0;
    for (int u = 0; u < users; u++)
        want += newest[u] % REMOVAL_EVERY != 0;
    (void)want;
    assert_int_equal(kill(b, SIGTERM), 0);
    expect_exit(wait_exit(b, port_b, WAIT_MS), 0, port_b);
    note_restart();
    assert_int_equal(emu("DELETE", "/faults", NULL), 200);
    run_once(&w, NULL);
    history_stats hs = verify_history(s0, users);
    assert_true(hs.writes >= users);
    pts_topics_free(&w);
}

/* Epoch seconds of the first log line of the publisher on `port` whose text contains `needle` (-1: none). */
static double log_time_of(int port, const char *needle)
{
    char log[300];
    pts_pub_log_path(work, port, log, sizeof log);
    char *text = pts_slurp(log, NULL);
    double t = -1;
    const char *hit = text ? strstr(text, needle) : NULL;
    if (hit) {
        const char *line = hit;
        while (line > text && line[-1] != '\n')
            line--;
        char stamp[40] = "";
        if (sscanf(line, "{\"ts\":\"%39[^\"]\"", stamp) == 1)
            t = pjc_iso_epoch(stamp);
    }
    free(text);
    return t;
}

/* The first request entry after `since` whose fault field starts with `fault` ("delay"), or NULL. Caller frees
 * with json_decref(). */
static json_t *request_with_fault(long long since, const char *fault)
{
    json_t *req = journal(since, "request"), *found = NULL, *e;
    size_t i;
    json_array_foreach(req, i, e)
    {
        const char *f = json_string_value(json_object_get(e, "fault"));
        if (f && strncmp(f, fault, strlen(fault)) == 0) {
            found = json_incref(e);
            break;
        }
    }
    json_decref(req);
    return found;
}

/* Requests after `since` with cmdlet `cmdlet` (journaled when answered). */
static int requests_of(long long since, const char *cmdlet)
{
    return pts_emu_requests(emu_env.admin, since, cmdlet);
}

/*
 * Fencing does not stop HTTP (design.md "Hard cases"): a rebalance that starts while instance A has a write on
 * the wire reaches A's revoke callback only after that write has finished. librdkafka runs the rebalance
 * callback only from the consumer's poll and the pipeline does not poll while it applies a batch
 * (pub_consumer.h "Revoke versus HTTP"), so the group waits for A. The emulator holds A's first Set-Mailbox
 * (user 0, version 1) for HOLD_MS; the moment its Get-Recipient lookup is answered that write is on the wire,
 * and instance B starts into the group while user 0's version 2 is produced. Proven from logs and journal:
 *   - B was subscribed (so joining, which starts the rebalance) before the held write was answered;
 *   - A's revoke callback ran after the held write was answered (status 200: completed, not cancelled);
 *   - the held write committed or was discarded without harm: no older state after the newer one, the final
 *     state is the newest, and a repeat only after a membership change (verify_history).
 */
#define HOLD_MS 8000
static void revoke_waits_for_write(void **state)
{
    (void)state;
    world w;
    world_new(&w, 2, 1);
    long long s0 = last_seq();
    char body[200];
    snprintf(body, sizeof body,
             "{\"endpoint\":\"exchange\",\"cmdlet\":\"Set-Mailbox\",\"action\":\"delay\",\"delay_ms\":%d,"
             "\"count\":1}",
             HOLD_MS);
    assert_int_equal(emu("POST", "/faults", body), 200);
    char cfg_a[400], cfg_b[400], inst_b[200];
    int port_a = pts_free_port(), port_b = pts_free_port();
    while (port_b == port_a)
        port_b = pts_free_port();
    snprintf(inst_b, sizeof inst_b, "%s-b", w.instance);
    write_config(&w, NULL, 0, port_a, cfg_a, sizeof cfg_a);
    write_config(&w, inst_b, 0, port_b, cfg_b, sizeof cfg_b);
    pid_t a = spawn(cfg_a, 0, NULL, port_a);
    produce_next(&w, 0);
    /* A's lookup answered: its Set-Mailbox is the next request, held by the emulator. */
    long long end = pts_mono_ms() + WAIT_MS;
    while (requests_of(s0, "Get-Recipient") < 1) {
        int st;
        if (waitpid(a, &st, WNOHANG) == a || pts_mono_ms() > end) {
            dump_log(port_a);
            fail_msg("instance A never looked user 0 up");
        }
        pts_nap_ms(20);
    }
    pid_t b = spawn(cfg_b, 0, NULL, port_b);
    produce_next(&w, 0);
    /* The held write is answered, then user 0's version 2 is written (by whichever instance owns it). */
    json_t *held = NULL;
    end = pts_mono_ms() + WAIT_MS;
    while (!(held = request_with_fault(s0, "delay"))) {
        if (pts_mono_ms() > end) {
            dump_log(port_a);
            fail_msg("the held Set-Mailbox was never answered");
        }
        pts_nap_ms(50);
    }
    double answered = iso_epoch(json_string_value(json_object_get(held, "time")));
    long status = (long)json_integer_value(json_object_get(held, "status"));
    const char *cmdlet = json_string_value(json_object_get(held, "cmdlet"));
    if (!cmdlet || strcmp(cmdlet, "Set-Mailbox") != 0 || status != 200)
        fail_msg("the held request is %s with status %ld, want Set-Mailbox answered 200",
                 cmdlet ? cmdlet : "?", status);
    json_decref(held);
    end = pts_mono_ms() + WAIT_MS;
    while (log_time_of(port_a, "\"msg\":\"revoking ") < 0 || applied_total(port_b) < 0) {
        if (pts_mono_ms() > end) {
            dump_log(port_a);
            dump_log(port_b);
            fail_msg("no rebalance reached instance A after B joined");
        }
        pts_nap_ms(50);
    }
    double b_running = log_time_of(port_b, "\"msg\":\"publisher running\"");
    double a_revoked = log_time_of(port_a, "\"msg\":\"revoking ");
    fprintf(stderr,
            "revoke: B subscribed %.3f s before the held write was answered; A revoked %.3f s after it\n",
            answered - b_running, a_revoked - answered);
    if (b_running < 0 || b_running >= answered) {
        dump_log(port_b);
        fail_msg("B subscribed %.3f s after the held write was answered (%d ms hold): the rebalance did not "
                 "start during the write, the test proves nothing (machine too slow?)",
                 b_running - answered, HOLD_MS);
    }
    if (a_revoked <= answered) {
        dump_log(port_a);
        fail_msg("A's revoke callback ran %.3f s BEFORE its write in flight was answered: a revoke "
                 "reached A while a write was on the wire",
                 answered - a_revoked);
    }
    /* Both go on until version 2 is applied somewhere, then stop; a clean run finishes what is left. */
    end = pts_mono_ms() + WAIT_MS;
    while (requests_of(s0, "Set-Mailbox") < 2 && pts_mono_ms() < end)
        pts_nap_ms(50);
    assert_int_equal(kill(b, SIGTERM), 0);
    expect_exit(wait_exit(b, port_b, 30000), 0, port_b);
    assert_int_equal(kill(a, SIGTERM), 0);
    expect_exit(wait_exit(a, port_a, 30000), 0, port_a);
    note_restart();
    assert_int_equal(emu("DELETE", "/faults", NULL), 200);
    run_once(&w, NULL);
    history_stats hs = verify_history(s0, 1);
    fprintf(stderr, "revoke: %d writes, %d repeats\n", hs.writes, hs.repeats);
    assert_true(hs.writes >= 2);
    pts_topics_free(&w);
}

/* ------------------------------------------------------------------ seeded random kills */

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/*
 * CS_CHAOS_CYCLES times (default 20): a publisher starts with CERTSYNC_PUB_FAULT=random:<seed>:0.6 (with chance 0.6 it
 * kills itself at a point and visit drawn from the seed: before the commit, mid-commit, while restoring state) while the test produces a
 * stream of changes for 8 recipients; if it is still alive after a delay drawn from the same seed (0.6-2.5 s),
 * the test kills it with SIGKILL. The instance keeps its transactional id and static group membership, so the
 * next start fences the dead one and takes its place at once. Then a clean publisher runs to completion and the
 * journal is checked (verify_history).
 */
static void chaos_random_kills(void **state)
{
    (void)state;
    const char *cyc = getenv("CS_CHAOS_CYCLES");
    const char *seed_s = getenv("CS_CHAOS_SEED");
    int cycles = cyc ? atoi(cyc) : 20;
    uint64_t base = seed_s ? strtoull(seed_s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    assert_true(cycles > 0 && cycles < MAX_RESTARTS - 4);
    fprintf(stderr, "chaos: seed %llu, %d cycles (replay: CS_CHAOS_SEED=%llu CS_CHAOS_CYCLES=%d)\n",
            (unsigned long long)base, cycles, (unsigned long long)base, cycles);
    const int users = 8;
    world w;
    world_new(&w, 2, users);
    long long s0 = last_seq();
    int self_kills = 0;
    long long t_start = pts_mono_ms();
    for (int c = 0; c < cycles; c++) {
        uint64_t s = base + (uint64_t)c;
        uint64_t r = s;
        long long delay = 600 + (long long)(mix(&r) % 1900);
        char fault[96], cfg[400];
        snprintf(fault, sizeof fault, "random:%llu:0.6", (unsigned long long)s);
        int port = pts_free_port();
        write_config(&w, NULL, 1, port, cfg, sizeof cfg);
        pid_t pid = spawn(cfg, 0, fault, port);
        long long t0 = pts_mono_ms(), next = t0;
        int st = 0, self = 0;
        for (;;) {
            if (waitpid(pid, &st, WNOHANG) == pid) {
                self = 1;
                break;
            }
            if (pts_mono_ms() - t0 >= delay) {
                kill(pid, SIGKILL);
                st = wait_exit(pid, port, 30000);
                break;
            }
            if (pts_mono_ms() >= next) {
                produce_next(&w, (int)(mix(&r) % (uint64_t)users));
                next = pts_mono_ms() + 60;
            }
            pts_nap_ms(10);
        }
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
            dump_log(port);
            fail_msg("cycle %d (seed %llu): the publisher stopped otherwise than by SIGKILL", c,
                     (unsigned long long)s);
        }
        note_restart(); /* the crash */
        const char *point = "driver";
        static const char *const points[] = {"kill_before_commit", "kill_mid_commit", "kill_in_restore",
                                             "kill_in_revoke"};
        for (size_t i = 0; self && i < 4; i++) {
            char needle[96];
            snprintf(needle, sizeof needle, "\"point\":\"%s\"", points[i]);
            if (log_count(port, needle) > 0)
                point = points[i];
        }
        self_kills += self;
        fprintf(stderr, "chaos: cycle %d seed %llu: SIGKILL by %s after %lld ms\n", c, (unsigned long long)s,
                point, pts_mono_ms() - t0);
    }
    fprintf(stderr, "chaos: %d cycles in %lld ms, %d self-inflicted kills\n", cycles, pts_mono_ms() - t_start,
            self_kills);
    run_once(&w, NULL);
    history_stats hs = verify_history(s0, users);
    int produced = 0;
    for (int u = 0; u < users; u++)
        produced += (int)newest[u];
    fprintf(stderr, "chaos: %d events produced, %d writes, %d repeated writes (each after a restart)\n",
            produced, hs.writes, hs.repeats);
    assert_true(hs.writes > 0);
    pts_topics_free(&w);
}

/* ------------------------------------------------------------------ throttling, tokens, poison, two instances */

/*
 * A throttling storm: every Exchange request answers 429 with Retry-After for a while (fault rules, seconds and
 * HTTP-date formats), then the emulator's throttling model (a budget per window; 429 with Rate-Limit-Remaining 0
 * and Retry-After to the window's end). From the journal: after each 429 of a recipient, its next request
 * arrives (journal time minus duration) no earlier than the 429's answer plus Retry-After; under the budget model
 * no Exchange request is sent inside the window after a 429 (a request already on the wire when the 429 was
 * answered may arrive up to 250 ms later). Everything is applied in the end.
 */
static void throttling_storm(void **state)
{
    (void)state;
    const int users = 6;
    world w;
    world_new(&w, 1, users);
    long long s0 = last_seq();
    /* 1. fault storm: the first 12 Exchange requests get 429, Retry-After 2 s */
    assert_int_equal(emu("POST", "/faults",
                         "{\"endpoint\":\"exchange\",\"action\":\"status\",\"status\":429,\"retry_after\":2,"
                         "\"count\":12}"),
                     200);
    for (int u = 0; u < users; u++)
        produce_next(&w, u);
    run_once(&w, NULL);
    /* 2. the same as HTTP dates */
    assert_int_equal(emu("PUT", "/config", "{\"retry_after_format\":\"http-date\"}"), 200);
    assert_int_equal(emu("POST", "/faults",
                         "{\"endpoint\":\"exchange\",\"action\":\"status\",\"status\":429,\"retry_after\":2,"
                         "\"count\":8}"),
                     200);
    for (int u = 0; u < users; u++)
        produce_next(&w, u);
    run_once(&w, NULL);
    long long s_model = last_seq();
    /* 3. the throttling model: 4 Exchange requests per 3 s window. The publisher paces itself from the
     * Rate-Limit-* headers, so it only meets a 429 when it starts more requests than the budget before the
     * first answer tells it the budget: 6 users (more than the budget) are ready at once in one batch, and the
     * first 6 Exchange requests (each write's Get-Recipient) are answered 800 ms late, so all 6 arrive in the
     * first window before any answer and at least 2 of them get 429 (the model counts at arrival). */
    assert_int_equal(emu("PUT", "/config", "{\"retry_after_format\":\"seconds\"}"), 200);
    assert_int_equal(emu("PUT", "/throttle", "{\"budget\":4,\"window_s\":3,\"apis\":[\"exchange\"]}"), 200);
    assert_int_equal(emu("POST", "/faults",
                         "{\"endpoint\":\"exchange\",\"action\":\"delay\",\"delay_ms\":800,\"count\":6}"),
                     200);
    for (int u = 0; u < users; u++)
        produce_next(&w, u);
    run_once(&w, NULL);
    assert_int_equal(emu("DELETE", "/throttle", NULL), 200);

    json_t *req = journal(s0, "request");
    int n429 = 0, checked = 0, n_model429 = 0;
    json_t *e, *f;
    size_t i, k;
    json_array_foreach(req, i, e)
    {
        const char *ep = json_string_value(json_object_get(e, "endpoint"));
        if (!ep || strcmp(ep, "exchange") != 0 || json_integer_value(json_object_get(e, "status")) != 429)
            continue;
        n429++;
        const char *id = json_string_value(json_object_get(e, "identity"));
        double t = iso_epoch(json_string_value(json_object_get(e, "time")));
        long long seq = json_integer_value(json_object_get(e, "seq"));
        if (seq > s_model) {
            /* budget model: the 429's window began at the first Exchange request not inside an earlier window
             * (fixed windows of 3 s); nothing may be sent from 250 ms after the 429 until that window ends. */
            n_model429++;
            double ws = -1;
            json_array_foreach(req, k, f)
            {
                const char *ep2 = json_string_value(json_object_get(f, "endpoint"));
                if (json_integer_value(json_object_get(f, "seq")) <= s_model || !ep2 ||
                    strcmp(ep2, "exchange") != 0)
                    continue;
                double arr = iso_epoch(json_string_value(json_object_get(f, "time"))) -
                             (double)json_integer_value(json_object_get(f, "ms")) / 1000.0;
                if (arr > t)
                    break;
                if (ws < 0 || arr >= ws + 3.0)
                    ws = arr;
            }
            json_array_foreach(req, k, f)
            {
                const char *ep2 = json_string_value(json_object_get(f, "endpoint"));
                if (json_integer_value(json_object_get(f, "seq")) <= seq || !ep2 ||
                    strcmp(ep2, "exchange") != 0)
                    continue;
                double arr = iso_epoch(json_string_value(json_object_get(f, "time"))) -
                             (double)json_integer_value(json_object_get(f, "ms")) / 1000.0;
                if (arr > t + 0.25 && arr < ws + 3.0 - 0.05)
                    fail_msg(
                        "Exchange request seq %lld sent %.3f s after the 429 seq %lld, %.3f s before its "
                        "window ended",
                        (long long)json_integer_value(json_object_get(f, "seq")), arr - t, seq,
                        ws + 3.0 - arr);
            }
            checked++;
            continue;
        }
        if (!id)
            continue;
        /* fault storm: this recipient's next request */
        json_array_foreach(req, k, f)
        {
            const char *id2 = json_string_value(json_object_get(f, "identity"));
            if (json_integer_value(json_object_get(f, "seq")) <= seq || !id2 || strcmp(id2, id) != 0)
                continue;
            double arr = iso_epoch(json_string_value(json_object_get(f, "time"))) -
                         (double)json_integer_value(json_object_get(f, "ms")) / 1000.0;
            if (arr < t + 2.0 - 0.05)
                fail_msg("%s: request seq %lld sent %.3f s after the 429 seq %lld with Retry-After 2", id,
                         (long long)json_integer_value(json_object_get(f, "seq")), arr - t, seq);
            checked++;
            break;
        }
    }
    json_decref(req);
    fprintf(stderr, "storm: %d answers 429 (%d from the budget model), %d windows checked\n", n429,
            n_model429, checked);
    assert_true(n429 >= 20);
    assert_true(n_model429 >= users - 4); /* at least the first window's overflow, see phase 3 */
    assert_true(checked >= 20);
    verify_history(s0, users);
    pts_topics_free(&w);
}

/* Token expiry mid-stream: the emulator's clock jumps two hours, the cached token is refused with 401, the
 * publisher gets a new one and goes on; every event of the stream is applied (final state, journal). */
static void token_expiry_mid_stream(void **state)
{
    (void)state;
    const int users = 4;
    world w;
    world_new(&w, 1, users);
    long long s0 = last_seq();
    char cfg[400];
    int port = pts_free_port(), rr = 0;
    write_config(&w, NULL, 0, port, cfg, sizeof cfg);
    pid_t pid = spawn(cfg, 0, NULL, port);
    await_applied(&w, port, pid, 4, users, 100, &rr);
    long long s1 = last_seq();
    assert_int_equal(emu("PUT", "/clock", "{\"offset_s\":7200}"), 200);
    long applied = applied_total(port);
    await_applied(&w, port, pid, applied + 6, users, 100, &rr);
    /* The last versions of every user, then wait until they are applied. */
    long before = applied_total(port);
    int removals = 0;
    for (int u = 0; u < users; u++)
        removals += produce_next(&w, u) % REMOVAL_EVERY == 0;
    (void)removals;
    long long end = pts_mono_ms() + WAIT_MS;
    while (applied_total(port) < before + 1 && pts_mono_ms() < end)
        pts_nap_ms(100);
    assert_int_equal(kill(pid, SIGTERM), 0);
    expect_exit(wait_exit(pid, port, 30000), 0, port);
    run_once(&w, NULL); /* picks up whatever the service had not committed: nothing may be lost */
    json_t *req = journal(s1, "request");
    int n401 = 0, tokens_after = 0;
    json_t *e;
    size_t i;
    json_array_foreach(req, i, e)
    {
        const char *ep = json_string_value(json_object_get(e, "endpoint"));
        long st = (long)json_integer_value(json_object_get(e, "status"));
        if (ep && strcmp(ep, "token") == 0 && st == 200 && n401 > 0)
            tokens_after++;
        n401 += st == 401;
    }
    json_decref(req);
    if (n401 < 1 || tokens_after < 1)
        fail_msg("want a 401 for the expired token and a new token after it: %d 401s, %d tokens", n401,
                 tokens_after);
    verify_history(s0, users);
    pts_topics_free(&w);
}

/* Reads the dead-letter topic (one partition, read_committed) into `out` (cap entries); returns the count.
 * Caller frees each with certsync__v1__dead_letter__free_unpacked(). */
static int read_dead_letters(const world *w, Certsync__V1__DeadLetter **out, int cap)
{
    int n = pts_read_dead_letters(w->dlq, "chaos-dlq-reader", out, cap);
    return n < cap ? n : cap;
}

/* Poison messages between good events: garbage bytes, JSON, an empty record and a protobuf of another schema
 * (a DeadLetter) each land in the dead-letter topic with their original bytes and offset; the good events
 * around them are applied (the partition moves on). */
static void poison_messages(void **state)
{
    (void)state;
    const int users = 3;
    world w;
    world_new(&w, 1, users);
    long long s0 = last_seq();
    Certsync__V1__DeadLetter other = CERTSYNC__V1__DEAD_LETTER__INIT;
    char detail[] = "not a change event";
    other.detail = detail;
    other.has_attempts = 1;
    other.attempts = 7;
    uint8_t wrong[64];
    size_t wrong_len = certsync__v1__dead_letter__pack(&other, wrong);
    struct {
        const void *v;
        size_t len;
    } poison[] = {{"\xff\xfe\x00garbage\x01\x02", 12},
                  {"{\"user\":\"x\",\"version\":3}", 25},
                  {"", 0},
                  {wrong, wrong_len}};
    const size_t n_poison = sizeof poison / sizeof poison[0];
    produce_next(&w, 0);
    for (size_t i = 0; i < n_poison; i++) {
        char key_s[32];
        snprintf(key_s, sizeof key_s, "src/poison%zu", i);
        produce_raw(&w, 0, key_s, poison[i].v, poison[i].len);
        produce_next(&w, (int)(i % (size_t)users));
    }
    produce_next(&w, 2);
    run_once(&w, NULL);
    Certsync__V1__DeadLetter *dl[16];
    int n = read_dead_letters(&w, dl, 16);
    if (n != (int)n_poison)
        fail_msg("%d dead letters, want %zu (one per poison record)", n, n_poison);
    for (size_t i = 0; i < n_poison; i++) {
        Certsync__V1__DeadLetter *d = dl[i];
        if (!d->has_original_value || d->original_value.len != poison[i].len ||
            (poison[i].len && memcmp(d->original_value.data, poison[i].v, poison[i].len) != 0))
            fail_msg("dead letter %zu: original bytes differ from the poison record", i);
        if (d->reason != CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNDECODABLE &&
            d->reason != CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_REJECTED)
            fail_msg("dead letter %zu: reason %d, want undecodable or rejected", i, (int)d->reason);
        assert_true(d->has_source_offset);
        assert_string_equal(d->source_topic, w.events);
        certsync__v1__dead_letter__free_unpacked(d, NULL);
    }
    verify_history(s0, users);
    pts_topics_free(&w);
}

/*
 * Two publishers in one group: A runs a stream on 4 partitions, B starts mid-stream (the partitions are shared),
 * then A stops (SIGTERM) and B takes everything; the stream flows throughout. The journal shows no regression
 * and the final state is the newest; identical repeats only around a membership change.
 */
static void two_publishers_share(void **state)
{
    (void)state;
    const int users = 8;
    world w;
    world_new(&w, 4, users);
    long long s0 = last_seq();
    char cfg_a[400], cfg_b[400], inst_b[200];
    int port_a = pts_free_port(), port_b = pts_free_port(), rr = 0;
    while (port_b == port_a)
        port_b = pts_free_port();
    snprintf(inst_b, sizeof inst_b, "%s-b", w.instance);
    write_config(&w, NULL, 0, port_a, cfg_a, sizeof cfg_a);
    write_config(&w, inst_b, 0, port_b, cfg_b, sizeof cfg_b);
    pid_t a = spawn(cfg_a, 0, NULL, port_a);
    await_applied(&w, port_a, a, 8, users, 50, &rr);
    pid_t b = spawn(cfg_b, 0, NULL, port_b);
    await_applied(&w, port_b, b, 4, users, 50, &rr); /* B owns partitions and writes */
    long a_mid = applied_total(port_a);
    await_applied(&w, port_a, a, a_mid + 2, users, 50, &rr); /* and A still does */
    assert_int_equal(kill(a, SIGTERM), 0);
    expect_exit(wait_exit(a, port_a, 30000), 0, port_a);
    note_restart();
    long b_now = applied_total(port_b);
    await_applied(&w, port_b, b, b_now + 6, users, 50, &rr);
    assert_int_equal(kill(b, SIGTERM), 0);
    expect_exit(wait_exit(b, port_b, 30000), 0, port_b);
    note_restart();
    run_once(&w, NULL);
    history_stats hs = verify_history(s0, users);
    fprintf(stderr, "two publishers: %d writes, %d repeats\n", hs.writes, hs.repeats);
    pts_topics_free(&w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill9_mid_commit),       cmocka_unit_test(kill9_during_restore),
        cmocka_unit_test(kill9_in_revoke),        cmocka_unit_test(chaos_random_kills),
        cmocka_unit_test(throttling_storm),       cmocka_unit_test(token_expiry_mid_stream),
        cmocka_unit_test(poison_messages),        cmocka_unit_test(two_publishers_share),
        cmocka_unit_test(revoke_waits_for_write),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
