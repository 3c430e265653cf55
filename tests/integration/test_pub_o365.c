/*
 * The publisher's Office 365 client against the emulator (tests/emulator, fixture o365emu): tokens with a
 * secret and with RS256/PS256 assertions (and a certificate the app does not know), a Set-Mailbox write
 * read back with Get-Mailbox, a write-scope rejection, a not-found, an injected 429 Retry-After (seconds
 * and HTTP date) honoured without holding up another recipient, a 401 that refreshes the token, and
 * the resolver by immutable id. The emulator is reset through its admin API before every test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "pub_exchange.h"
#include "pub_graph.h"
#include "pub_http.h"
#include "pub_o365.h"
#include "pub_resolver.h"
#include "pub_test_support.h"
#include "pub_token.h"

static pts_emu_env emu_env; /* the emulator fixture's env file */
static char *secret, *key_pem, *other_key_pem;
static unsigned char *cert_der, *smime_der;
static size_t cert_der_len, smime_der_len;

static long admin(const char *method, const char *path, const char *body)
{
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof url, "%s%s", emu_env.admin, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    fclose(devnull);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static unsigned char *der_of(const char *cmd, size_t *len)
{
    char tmp[] = "/tmp/test_pub_o365.XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
        return NULL;
    char full[1024];
    snprintf(full, sizeof full, "%s > %s", cmd, tmp);
    unsigned char *out = system(full) == 0 ? (unsigned char *)pts_slurp(tmp, len) : NULL;
    unlink(tmp);
    return out;
}

static int setup(void **state)
{
    (void)state;
    if (pts_emu_env_load(&emu_env) != 0)
        return -1;
    secret = pts_slurp(emu_env.secret_file, NULL);
    key_pem = pts_slurp(emu_env.key_file, NULL);
    other_key_pem = pts_slurp(emu_env.other_key_file, NULL);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s -outform DER", emu_env.cert_file);
    cert_der = der_of(cmd, &cert_der_len);
    snprintf(cmd, sizeof cmd, "openssl crl2pkcs7 -nocrl -certfile %s -outform DER", emu_env.cert_file);
    smime_der = der_of(cmd, &smime_der_len);
    return emu_env.url[0] && secret && key_pem && other_key_pem && cert_der && smime_der ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(secret);
    free(key_pem);
    free(other_key_pem);
    free(cert_der);
    free(smime_der);
    return 0;
}

static int reset(void **state)
{
    (void)state;
    return admin("POST", "/reset", NULL) == 200 ? 0 : -1;
}

static pub_http_opts http_opts(void)
{
    pub_http_opts o = {.max_inflight = 4, .timeout_ms = 10000, .ca_file = emu_env.ca, .backoff_base_ms = 100};
    return o;
}

static pub_token_opts token_opts(pub_auth auth, pub_assertion_alg alg)
{
    pub_token_opts o = {
        .authority_url = emu_env.url,
        .tenant_id = emu_env.tenant,
        .client_id = emu_env.client,
        .exchange_url = emu_env.url,
        .graph_url = emu_env.url,
        /* The emulator serves every API on one host: name the real resources, as behind a proxy. */
        .exchange_resource = "https://outlook.office365.com",
        .graph_resource = "https://graph.microsoft.com",
        .auth = auth,
        .client_secret = secret,
        .certificate_file = emu_env.cert_file,
        .private_key_pem = key_pem,
        .alg = alg,
        .http = http_opts(),
    };
    return o;
}

static void token_with(pub_auth auth, pub_assertion_alg alg)
{
    pub_token_opts o = token_opts(auth, alg);
    pub_token_provider *p = NULL;
    assert_null(pub_token_provider_new(&o, &p));
    pub_token *a = NULL, *b = NULL, *c = NULL, *g = NULL;
    cs_err *err = pub_token_get(p, PUB_RESOURCE_EXCHANGE, &a);
    if (err)
        fail_msg("token: %s", cs_err_message(err));
    assert_true(strlen(pub_token_value(a)) > 20);
    assert_true(pub_token_expires_at(a) > time(NULL) + 600);
    assert_null(pub_token_get(p, PUB_RESOURCE_EXCHANGE, &b));
    assert_ptr_equal(a, b); /* cached */
    assert_int_equal(pub_token_refreshes(p), 1);
    /* After a 401 the next get fetches a new token, and the old one stays valid for its holder. */
    pub_token_invalidate(p, PUB_RESOURCE_EXCHANGE, a);
    assert_null(pub_token_get(p, PUB_RESOURCE_EXCHANGE, &c));
    assert_ptr_not_equal(a, c);
    assert_int_equal(pub_token_refreshes(p), 2);
    assert_true(strlen(pub_token_value(a)) > 20);
    assert_null(pub_token_get(p, PUB_RESOURCE_GRAPH, &g));
    assert_string_not_equal(pub_token_value(g), pub_token_value(c));
    pub_token_unref(a);
    pub_token_unref(b);
    pub_token_unref(c);
    pub_token_unref(g);
    pub_token_provider_free(p);
}

static void token_secret(void **state)
{
    (void)state;
    token_with(PUB_AUTH_SECRET, PUB_ASSERTION_RS256);
}

static void token_rs256(void **state)
{
    (void)state;
    token_with(PUB_AUTH_CERTIFICATE, PUB_ASSERTION_RS256);
}

static void token_ps256(void **state)
{
    (void)state;
    token_with(PUB_AUTH_CERTIFICATE, PUB_ASSERTION_PS256);
}

static void token_unknown_certificate(void **state)
{
    (void)state;
    pub_token_opts o = token_opts(PUB_AUTH_CERTIFICATE, PUB_ASSERTION_RS256);
    o.certificate_file = emu_env.other_cert_file;
    o.private_key_pem = other_key_pem;
    pub_token_provider *p = NULL;
    assert_null(pub_token_provider_new(&o, &p));
    pub_token *t = NULL;
    cs_err *err = pub_token_get(p, PUB_RESOURCE_EXCHANGE, &t);
    assert_non_null(err);
    assert_null(t);
    assert_non_null(strstr(cs_err_message(err), "AADSTS700027"));
    assert_non_null(strstr(cs_err_message(err), "o365.certificate_file"));
    assert_true(cs_err_is_fatal(err));
    cs_err_free(err);
    pub_token_provider_free(p);
}

/* A client stack for the API tests. */
typedef struct stack {
    pub_http *http;
    pub_token_provider *tokens;
    pub_exchange *exo;
    pub_graph *graph;
} stack;

static void stack_new(stack *s)
{
    pub_http_opts ho = http_opts();
    pub_token_opts to = token_opts(PUB_AUTH_SECRET, PUB_ASSERTION_RS256);
    assert_null(pub_http_new(&ho, &s->http));
    assert_null(pub_token_provider_new(&to, &s->tokens));
    pub_exchange_opts xo = {
        .exchange_url = emu_env.url, .tenant_id = emu_env.tenant, .tenant_domain = emu_env.domain};
    assert_null(pub_exchange_new(&xo, s->http, s->tokens, &s->exo));
    assert_null(pub_graph_new(emu_env.url, s->http, s->tokens, &s->graph));
}

static void stack_free(stack *s)
{
    pub_graph_free(s->graph);
    pub_exchange_free(s->exo);
    pub_http_free(s->http);
    pub_token_provider_free(s->tokens);
}

typedef struct exo_wait {
    bool done;
    pub_exo_kind kind;
    char msg[2048];
    long long finished_ms;
    size_t n;
    pub_blob user[4], smime[4];
    size_t n_user, n_smime;
    char type[64];
} exo_wait;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void exo_done(void *ctx, const pub_exo_result *res)
{
    exo_wait *w = ctx;
    w->done = true;
    w->kind = res->kind;
    w->finished_ms = now_ms();
    snprintf(w->msg, sizeof w->msg, "%s", res->err ? cs_err_message(res->err) : "");
    w->n = res->n_recipients;
    if (res->n_recipients == 1) {
        const pub_exo_recipient *r = &res->recipients[0];
        snprintf(w->type, sizeof w->type, "%s", r->recipient_type_details);
        for (size_t i = 0; i < r->n_user_certificate && i < 4; i++) {
            w->user[i].len = r->user_certificate[i].len;
            w->user[i].data = malloc(w->user[i].len);
            memcpy(w->user[i].data, r->user_certificate[i].data, w->user[i].len);
            w->n_user = i + 1;
        }
        for (size_t i = 0; i < r->n_user_smime_certificate && i < 4; i++) {
            w->smime[i].len = r->user_smime_certificate[i].len;
            w->smime[i].data = malloc(w->smime[i].len);
            memcpy(w->smime[i].data, r->user_smime_certificate[i].data, w->smime[i].len);
            w->n_smime = i + 1;
        }
    }
}

static void exo_wait_free(exo_wait *w)
{
    for (size_t i = 0; i < w->n_user; i++)
        free(w->user[i].data);
    for (size_t i = 0; i < w->n_smime; i++)
        free(w->smime[i].data);
}

static void run_until(stack *s, const bool *flag)
{
    long long deadline = now_ms() + 30000;
    while (!*flag && now_ms() < deadline)
        assert_null(pub_http_run(s->http, 1000, NULL));
    assert_true(*flag);
}

static void write_and_read_back(void **state)
{
    (void)state;
    stack s = {0};
    stack_new(&s);
    pub_blob user[] = {{cert_der_len, cert_der}};
    pub_blob smime[] = {{smime_der_len, smime_der}};
    exo_wait w = {0};
    assert_null(pub_exchange_set_certificates(s.exo, "Set-Mailbox", "alice@contoso.onmicrosoft.com", user, 1,
                                              smime, 1, exo_done, &w));
    run_until(&s, &w.done);
    if (w.kind != PUB_EXO_OK)
        fail_msg("Set-Mailbox: %s", w.msg);
    exo_wait r = {0};
    assert_null(pub_exchange_get(s.exo, "Get-Mailbox", "alice@contoso.onmicrosoft.com", NULL, exo_done, &r));
    run_until(&s, &r.done);
    assert_int_equal(r.kind, PUB_EXO_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.type, "UserMailbox");
    assert_int_equal(r.n_user, 1);
    assert_int_equal(r.user[0].len, cert_der_len);
    assert_memory_equal(r.user[0].data, cert_der, cert_der_len);
    assert_int_equal(r.n_smime, 1);
    assert_memory_equal(r.smime[0].data, smime_der, smime_der_len);
    exo_wait_free(&r);

    /* An empty list clears. */
    exo_wait c = {0}, r2 = {0};
    assert_null(pub_exchange_set_certificates(s.exo, "Set-Mailbox", "alice@contoso.onmicrosoft.com", NULL, 0,
                                              NULL, 0, exo_done, &c));
    run_until(&s, &c.done);
    assert_int_equal(c.kind, PUB_EXO_OK);
    assert_null(pub_exchange_get(s.exo, "Get-Mailbox", "alice@contoso.onmicrosoft.com", NULL, exo_done, &r2));
    run_until(&s, &r2.done);
    assert_int_equal(r2.n_user + r2.n_smime, 0);
    stack_free(&s);
}

static void write_scope_and_not_found(void **state)
{
    (void)state;
    stack s = {0};
    stack_new(&s);
    pub_blob user[] = {{cert_der_len, cert_der}};
    exo_wait ws = {0}, nf = {0};
    assert_null(pub_exchange_set_certificates(s.exo, "Set-Mailbox", "bob@contoso.onmicrosoft.com", user, 1,
                                              NULL, 0, exo_done, &ws));
    assert_null(pub_exchange_set_certificates(s.exo, "Set-Mailbox", "nobody@contoso.onmicrosoft.com", user, 1,
                                              NULL, 0, exo_done, &nf));
    run_until(&s, &ws.done);
    run_until(&s, &nf.done);
    assert_int_equal(ws.kind, PUB_EXO_WRITE_SCOPE);
    assert_non_null(strstr(ws.msg, "IsExchangeCloudManaged $true"));
    assert_non_null(strstr(ws.msg, "client-request-id"));
    assert_int_equal(nf.kind, PUB_EXO_NOT_FOUND);
    stack_free(&s);
}

static void throttled_request_waits_without_blocking(const char *format)
{
    stack s = {0};
    stack_new(&s);
    char rule[512];
    snprintf(
        rule, sizeof rule,
        "{\"endpoint\":\"exchange\",\"identity\":\"alice@contoso.onmicrosoft.com\",\"action\":\"status\","
        "\"status\":429,\"retry_after\":2,\"retry_after_format\":\"%s\",\"count\":1}",
        format);
    assert_int_equal(admin("POST", "/faults", rule), 200);
    pub_token *warm = NULL; /* fetch the token first so timing measures only the API */
    assert_null(pub_token_get(s.tokens, PUB_RESOURCE_EXCHANGE, &warm));
    pub_token_unref(warm);
    exo_wait a = {0}, c = {0};
    long long start = now_ms();
    assert_null(pub_exchange_get(s.exo, "Get-Mailbox", "alice@contoso.onmicrosoft.com", NULL, exo_done, &a));
    assert_null(pub_exchange_get(s.exo, "Get-Mailbox", "carol@contoso.onmicrosoft.com", NULL, exo_done, &c));
    run_until(&s, &a.done);
    assert_true(c.done);
    assert_int_equal(a.kind, PUB_EXO_OK);
    assert_int_equal(c.kind, PUB_EXO_OK);
    /* carol was not held up by alice's wait; alice waited the Retry-After (an HTTP date has 1 s resolution). */
    assert_true(c.finished_ms - start < 1500);
    long long waited = a.finished_ms - start;
    if (strcmp(format, "seconds") == 0)
        assert_true(waited >= 2000);
    else
        assert_true(waited >= 1000);
    assert_true(waited < 6000);
    stack_free(&s);
}

static void throttled_seconds(void **state)
{
    (void)state;
    throttled_request_waits_without_blocking("seconds");
}

static void throttled_http_date(void **state)
{
    (void)state;
    throttled_request_waits_without_blocking("http-date");
}

/* Counts attempts and 429 answers of the API (observe callback of pub_http). */
typedef struct status_count {
    int attempts, throttled;
} status_count;

static void count_status(void *ctx, long status)
{
    status_count *c = ctx;
    c->attempts++;
    if (status == 429)
        c->throttled++;
}

#define PACE_REQUESTS 12

/* PACE_REQUESTS reads against a budget of 4 per 2 s window on the Exchange API; returns what the client saw.
 * Every read must succeed either way. */
static status_count paced_run(bool pacing)
{
    assert_int_equal(admin("PUT", "/throttle", "{\"budget\":4,\"window_s\":2,\"apis\":[\"exchange\"]}"), 200);
    status_count c = {0};
    stack s = {0};
    pub_http_opts ho = http_opts();
    ho.observe = count_status;
    ho.observe_ctx = &c;
    ho.no_pacing = !pacing;
    ho.max_attempts = 10; /* without pacing, a request may meet several full windows */
    pub_token_opts to = token_opts(PUB_AUTH_SECRET, PUB_ASSERTION_RS256);
    assert_null(pub_http_new(&ho, &s.http));
    assert_null(pub_token_provider_new(&to, &s.tokens));
    pub_exchange_opts xo = {
        .exchange_url = emu_env.url, .tenant_id = emu_env.tenant, .tenant_domain = emu_env.domain};
    assert_null(pub_exchange_new(&xo, s.http, s.tokens, &s.exo));
    assert_null(pub_graph_new(emu_env.url, s.http, s.tokens, &s.graph));
    pub_token *warm = NULL; /* the token endpoint is not throttled here; take it out of the count */
    assert_null(pub_token_get(s.tokens, PUB_RESOURCE_EXCHANGE, &warm));
    pub_token_unref(warm);
    c.attempts = c.throttled = 0;
    exo_wait w[PACE_REQUESTS];
    memset(w, 0, sizeof w);
    static const char *const who[] = {"alice@contoso.onmicrosoft.com", "carol@contoso.onmicrosoft.com"};
    for (int i = 0; i < PACE_REQUESTS; i++)
        assert_null(pub_exchange_get(s.exo, "Get-Mailbox", who[i % 2], NULL, exo_done, &w[i]));
    for (int i = 0; i < PACE_REQUESTS; i++) {
        run_until(&s, &w[i].done);
        if (w[i].kind != PUB_EXO_OK)
            fail_msg("read %d (pacing %s): %s", i, pacing ? "on" : "off", w[i].msg);
        exo_wait_free(&w[i]);
    }
    stack_free(&s);
    assert_int_equal(admin("DELETE", "/throttle", NULL), 200);
    return c;
}

/*
 * Rate-Limit-* pacing: with a small budget, the paced client sends no request that the window cannot take:
 * no 429 at all, so no request inside a Retry-After window (in the emulator's fixed window every request
 * sent inside one is a 429), and every read went out exactly once. The same load without pacing runs into
 * 429s, which shows the assertion can fail.
 */
static void rate_limit_pacing_avoids_429(void **state)
{
    (void)state;
    status_count off = paced_run(false);
    assert_int_equal(admin("POST", "/reset", NULL), 200);
    status_count on = paced_run(true);
    printf("pacing off: %d attempts, %d throttled; pacing on: %d attempts, %d throttled\n", off.attempts,
           off.throttled, on.attempts, on.throttled);
    if (off.throttled == 0)
        fail_msg("without pacing the small budget produced no 429: the test cannot tell pacing apart");
    assert_int_equal(on.throttled, 0);
    assert_int_equal(on.attempts, PACE_REQUESTS);
}

static void expired_token_refreshes_on_401(void **state)
{
    (void)state;
    stack s = {0};
    stack_new(&s);
    exo_wait a = {0}, b = {0};
    assert_null(pub_exchange_get(s.exo, "Get-Mailbox", "carol@contoso.onmicrosoft.com", NULL, exo_done, &a));
    run_until(&s, &a.done);
    assert_int_equal(a.kind, PUB_EXO_OK);
    assert_int_equal(pub_token_refreshes(s.tokens), 1);
    /* Two hours later on the emulator's clock the cached token is expired there; ours still looks fresh. */
    assert_int_equal(admin("PUT", "/clock", "{\"offset_s\":7200}"), 200);
    assert_null(pub_exchange_get(s.exo, "Get-Mailbox", "carol@contoso.onmicrosoft.com", NULL, exo_done, &b));
    run_until(&s, &b.done);
    if (b.kind != PUB_EXO_OK)
        fail_msg("after 401: %s", b.msg);
    assert_int_equal(pub_token_refreshes(s.tokens), 2);
    stack_free(&s);
}

typedef struct res_wait {
    bool done;
    pub_resolve_status st;
    pub_recipient rec;
    char msg[1024];
} res_wait;

static void res_done(void *ctx, pub_resolve_status st, const pub_recipient *r, const cs_err *err,
                     long long ra)
{
    (void)ra;
    res_wait *w = ctx;
    w->done = true;
    w->st = st;
    if (r)
        w->rec = *r;
    snprintf(w->msg, sizeof w->msg, "%s", err ? cs_err_message(err) : "");
}

static void resolver_by_immutable_id_and_not_found(void **state)
{
    (void)state;
    stack s = {0};
    stack_new(&s);
    pub_resolve order[] = {PUB_RESOLVE_IMMUTABLE_ID, PUB_RESOLVE_SID, PUB_RESOLVE_UPN, PUB_RESOLVE_MAIL};
    pub_resolver *r = NULL;
    assert_null(pub_resolver_new(order, 4, 100, 60000, s.graph, s.exo, &r));
    const unsigned char guid[16] = {0x02, 0x00, 0xed, 0x5e, 0x00, 0x00, 0x00, 0x40,
                                    0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02};
    pub_resolve_input bob = {.object_guid = guid, .upn = "wrong@contoso.onmicrosoft.com"};
    res_wait w = {0};
    assert_null(pub_resolver_resolve(r, "src/bob", &bob, res_done, &w));
    run_until(&s, &w.done);
    if (w.st != PUB_RESOLVE_FOUND)
        fail_msg("resolve bob: %d %s", w.st, w.msg);
    assert_string_equal(w.rec.external_directory_object_id, "5eed0002-0000-4000-8000-000000000002");
    assert_string_equal(w.rec.identity, "5eed0002-0000-4000-8000-000000000002");
    assert_string_equal(w.rec.recipient_type_details, "UserMailbox");
    assert_string_equal(w.rec.resolved_by, "immutable_id");
    assert_int_equal(pub_resolver_cached(r), 1);

    /* A mail contact is no Graph user: found through Exchange by address. */
    pub_resolve_input erin = {.mail = "erin@external.example"};
    res_wait e = {0};
    assert_null(pub_resolver_resolve(r, "src/erin", &erin, res_done, &e));
    run_until(&s, &e.done);
    if (e.st != PUB_RESOLVE_FOUND)
        fail_msg("resolve erin: %d %s", e.st, e.msg);
    assert_string_equal(e.rec.recipient_type_details, "MailContact");
    assert_string_equal(e.rec.resolved_by, "mail");

    pub_resolve_input ghost = {.upn = "ghost@contoso.onmicrosoft.com", .sid = "S-1-5-21-1-2-3-9999"};
    res_wait g = {0};
    assert_null(pub_resolver_resolve(r, "src/ghost", &ghost, res_done, &g));
    run_until(&s, &g.done);
    assert_int_equal(g.st, PUB_RESOLVE_NOT_FOUND);
    assert_int_equal(pub_resolver_cached(r), 2); /* not found is not cached */
    pub_resolver_free(r);
    stack_free(&s);
}

/* The pub_applier a pipeline calls: one batch with a writable, a write-scope and an unknown recipient. */
static void applier_batch_outcomes(void **state)
{
    (void)state;
    pub_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.o365_tenant_id = emu_env.tenant;
    cfg.o365_tenant_domain = emu_env.domain;
    cfg.o365_client_id = emu_env.client;
    cfg.o365_authority_url = emu_env.url;
    cfg.o365_graph_url = emu_env.url;
    cfg.o365_exchange_url = emu_env.url;
    cfg.o365_auth = PUB_AUTH_CERTIFICATE;
    cfg.o365_certificate_file = emu_env.cert_file;
    cfg.o365_private_key = key_pem;
    cfg.o365_ca_file = emu_env.ca;
    cfg.o365_assertion_alg = PUB_ASSERTION_PS256;
    cfg.http_max_inflight = 4;
    cfg.http_timeout_ms = 10000;
    cfg.resolve_order[0] = PUB_RESOLVE_IMMUTABLE_ID;
    cfg.resolve_order[1] = PUB_RESOLVE_UPN;
    cfg.resolve_count = 2;
    pub_o365_opts oo = {.exchange_resource = "https://outlook.office365.com",
                        .graph_resource = "https://graph.microsoft.com"};
    pub_o365 *o = NULL;
    cs_err *err = pub_o365_new(&cfg, &oo, &o);
    if (err)
        fail_msg("pub_o365_new: %s", cs_err_message(err));
    pub_applier a = pub_o365_applier(o);

    Certsync__V1__Identity ids[3] = {CERTSYNC__V1__IDENTITY__INIT, CERTSYNC__V1__IDENTITY__INIT,
                                     CERTSYNC__V1__IDENTITY__INIT};
    Certsync__V1__ChangeEvent evs[3] = {CERTSYNC__V1__CHANGE_EVENT__INIT, CERTSYNC__V1__CHANGE_EVENT__INIT,
                                        CERTSYNC__V1__CHANGE_EVENT__INIT};
    static unsigned char bob_guid[16] = {0x02, 0x00, 0xed, 0x5e, 0x00, 0x00, 0x00, 0x40,
                                         0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02};
    ids[0].user_principal_name = (char *)(uintptr_t) "carol@contoso.onmicrosoft.com";
    ids[1].has_object_guid = 1;
    ids[1].object_guid.len = 16;
    ids[1].object_guid.data = bob_guid;
    ids[2].user_principal_name = (char *)(uintptr_t) "ghost@contoso.onmicrosoft.com";
    for (int i = 0; i < 3; i++)
        evs[i].identity = &ids[i];
    pub_blob user[] = {{cert_der_len, cert_der}};
    pub_write w[3] = {
        {.object_key = "s/carol",
         .event = &evs[0],
         .user_certificate = user,
         .n_user_certificate = 1,
         .attempt = 1},
        {.object_key = "s/bob",
         .event = &evs[1],
         .user_certificate = user,
         .n_user_certificate = 1,
         .attempt = 1},
        {.object_key = "s/ghost",
         .event = &evs[2],
         .user_certificate = user,
         .n_user_certificate = 1,
         .attempt = 1},
    };
    pub_apply_outcome out[3];
    memset(out, 0, sizeof out);
    err = a.apply(a.ctx, w, 3, out);
    if (err)
        fail_msg("apply: %s", cs_err_message(err));
    assert_int_equal(out[0].status, PUB_APPLY_APPLIED);
    assert_string_equal(out[0].cmdlet, "Set-Mailbox");
    assert_string_equal(out[0].recipient_id, "5eed0003-0000-4000-8000-000000000003");
    assert_string_equal(out[0].resolved_by, "upn");
    assert_int_equal(out[1].status, PUB_APPLY_PERMANENT);
    assert_int_equal(out[1].reason, CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_WRITE_SCOPE);
    assert_non_null(strstr(out[1].detail, "IsExchangeCloudManaged"));
    assert_int_equal(out[2].status, PUB_APPLY_RETRY_LATER);
    assert_true(out[2].retry_after_ms >= 5 * 60 * 1000);
    /* The same not-found on its last attempt is dead-lettered. */
    w[2].attempt = PUB_O365_NOT_FOUND_ATTEMPTS;
    memset(out, 0, sizeof out);
    assert_null(a.apply(a.ctx, &w[2], 1, out));
    assert_int_equal(out[0].status, PUB_APPLY_PERMANENT);
    assert_int_equal(out[0].reason, CERTSYNC__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_RECIPIENT_NOT_FOUND);
    a.quiesce(a.ctx);
    pub_o365_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(token_secret, reset),
        cmocka_unit_test_setup(token_rs256, reset),
        cmocka_unit_test_setup(token_ps256, reset),
        cmocka_unit_test_setup(token_unknown_certificate, reset),
        cmocka_unit_test_setup(write_and_read_back, reset),
        cmocka_unit_test_setup(write_scope_and_not_found, reset),
        cmocka_unit_test_setup(throttled_seconds, reset),
        cmocka_unit_test_setup(throttled_http_date, reset),
        cmocka_unit_test_setup(rate_limit_pacing_avoids_429, reset),
        cmocka_unit_test_setup(expired_token_refreshes_on_401, reset),
        cmocka_unit_test_setup(resolver_by_immutable_id_and_not_found, reset),
        cmocka_unit_test_setup(applier_batch_outcomes, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
