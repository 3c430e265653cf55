/*
 * pub_token: the client assertion (header, claims, signature verified with OpenSSL, x5t against
 * `openssl x509 -fingerprint`), scope derivation and AADSTS error classification from golden bodies
 * (tests/data/o365/token_error_*.json, o365-contract.md section 1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "pub_codec.h"
#include "pub_test_support.h"
#include "pub_token.h"

static char tmpdir[] = "/tmp/test_pub_token.XXXXXX";
static char cert_path[256], key_path[256], other_key_path[256];
static char *key_pem, *other_key_pem;

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(cert_path, sizeof cert_path, "%s/app.pem", tmpdir);
    snprintf(key_path, sizeof key_path, "%s/app.key", tmpdir);
    snprintf(other_key_path, sizeof other_key_path, "%s/other.key", tmpdir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 -subj /CN=certsync-test "
             ">/dev/null 2>&1 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s "
             ">/dev/null 2>&1",
             key_path, cert_path, other_key_path);
    if (system(cmd) != 0)
        return -1;
    key_pem = pts_slurp(key_path, NULL);
    other_key_pem = pts_slurp(other_key_path, NULL);
    return key_pem && other_key_pem ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(key_pem);
    free(other_key_pem);
    unlink(cert_path);
    unlink(key_path);
    unlink(other_key_path);
    rmdir(tmpdir);
    return 0;
}

static pub_token_opts base_opts(pub_assertion_alg alg)
{
    pub_token_opts o = {
        .authority_url = "https://login.example.test/",
        .tenant_id = "8b6d1c2e-5f4a-4e3b-9c7d-0a1b2c3d4e5f",
        .client_id = "11111111-aaaa-4bbb-8ccc-000000000001",
        .exchange_url = "https://outlook.office365.com",
        .graph_url = "https://graph.microsoft.com/",
        .auth = PUB_AUTH_CERTIFICATE,
        .certificate_file = cert_path,
        .private_key_pem = key_pem,
        .alg = alg,
        .http = {.max_inflight = 1, .timeout_ms = 5000},
    };
    return o;
}

/* The thumbprint as `openssl x509 -fingerprint` prints it, turned into base64url. */
static void openssl_x5t(const char *digest, char *out, size_t cap)
{
    char cmd[512], line[512];
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s -noout -fingerprint -%s", cert_path, digest);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    char *eq = strchr(line, '=');
    assert_non_null(eq);
    unsigned char bin[64];
    size_t n = 0;
    for (char *c = eq + 1;
         isxdigit((unsigned char)c[0]) && isxdigit((unsigned char)c[1]) && n < sizeof bin;) {
        unsigned v;
        sscanf(c, "%2x", &v);
        bin[n++] = (unsigned char)v;
        c += 2;
        if (*c == ':')
            c++;
    }
    cs_buf b;
    cs_buf_init(&b, 256);
    assert_true(pub_b64url_encode(&b, bin, n));
    snprintf(out, cap, "%s", cs_buf_str(&b));
    cs_buf_free(&b);
}

static json_t *decode_part(const char *s, size_t len)
{
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    assert_true(pub_b64url_decode(s, len, &raw, &raw_len));
    json_error_t e;
    json_t *j = json_loadb((const char *)raw, raw_len, 0, &e);
    free(raw);
    assert_non_null(j);
    return j;
}

/* Verifies a JWT's signature with the certificate's public key; returns OpenSSL's verdict. */
static bool verify_jwt(const char *jwt, bool pss)
{
    const char *dot2 = strrchr(jwt, '.');
    FILE *f = fopen(cert_path, "r");
    assert_non_null(f);
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(cert);
    EVP_PKEY *pub = X509_get_pubkey(cert);
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    assert_true(pub_b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &sig_len));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pub), 1);
    if (pss) {
        /* RFC 7518 PS256: salt exactly 32 bytes (what Entra and the emulator check). */
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32), 1);
    }
    int rc = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)jwt, (size_t)(dot2 - jwt));
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pub);
    X509_free(cert);
    free(sig);
    return rc == 1;
}

static void check_assertion(pub_assertion_alg alg)
{
    bool pss = alg == PUB_ASSERTION_PS256;
    pub_token_opts o = base_opts(alg);
    pub_token_provider *p = NULL;
    cs_err *err = pub_token_provider_new(&o, &p);
    assert_null(err);
    char *jwt = NULL, *jwt2 = NULL;
    time_t now = 1714557600;
    assert_null(pub_token_build_assertion(p, now, &jwt));
    assert_null(pub_token_build_assertion(p, now, &jwt2));
    const char *dot1 = strchr(jwt, '.');
    const char *dot2 = strrchr(jwt, '.');
    assert_true(dot1 && dot2 && dot1 < dot2);

    json_t *hdr = decode_part(jwt, (size_t)(dot1 - jwt));
    assert_string_equal(json_string_value(json_object_get(hdr, "alg")), pss ? "PS256" : "RS256");
    assert_string_equal(json_string_value(json_object_get(hdr, "typ")), "JWT");
    char expect[128];
    openssl_x5t(pss ? "sha256" : "sha1", expect, sizeof expect);
    assert_string_equal(json_string_value(json_object_get(hdr, pss ? "x5t#S256" : "x5t")), expect);
    assert_null(json_object_get(hdr, pss ? "x5t" : "x5t#S256"));

    json_t *cl = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    assert_string_equal(json_string_value(json_object_get(cl, "aud")),
                        "https://login.example.test/8b6d1c2e-5f4a-4e3b-9c7d-0a1b2c3d4e5f/oauth2/v2.0/token");
    assert_string_equal(json_string_value(json_object_get(cl, "aud")), pub_token_url(p));
    assert_string_equal(json_string_value(json_object_get(cl, "iss")), o.client_id);
    assert_string_equal(json_string_value(json_object_get(cl, "sub")), o.client_id);
    assert_int_equal(json_integer_value(json_object_get(cl, "nbf")), now);
    assert_int_equal(json_integer_value(json_object_get(cl, "iat")), now);
    assert_int_equal(json_integer_value(json_object_get(cl, "exp")), now + 600);
    const char *jti = json_string_value(json_object_get(cl, "jti"));
    assert_non_null(jti);
    assert_int_equal(strlen(jti), 36);
    assert_int_equal(jti[14], '4'); /* UUID v4 */

    /* A second assertion differs in its jti (Entra rejects replays). */
    const char *d1b = strchr(jwt2, '.');
    json_t *cl2 = decode_part(d1b + 1, (size_t)(strrchr(jwt2, '.') - d1b - 1));
    assert_string_not_equal(json_string_value(json_object_get(cl2, "jti")), jti);

    assert_true(verify_jwt(jwt, pss));
    /* The check can fail: flip one byte of the signed part. */
    jwt[dot1 - jwt + 3] ^= 0x01;
    assert_false(verify_jwt(jwt, pss));

    json_decref(hdr);
    json_decref(cl);
    json_decref(cl2);
    free(jwt);
    free(jwt2);
    pub_token_provider_free(p);
}

static void assertion_rs256(void **state)
{
    (void)state;
    check_assertion(PUB_ASSERTION_RS256);
}

static void assertion_ps256(void **state)
{
    (void)state;
    check_assertion(PUB_ASSERTION_PS256);
}

static void key_must_match_certificate(void **state)
{
    (void)state;
    pub_token_opts o = base_opts(PUB_ASSERTION_RS256);
    o.private_key_pem = other_key_pem;
    pub_token_provider *p = NULL;
    cs_err *err = pub_token_provider_new(&o, &p);
    assert_non_null(err);
    assert_null(p);
    assert_non_null(strstr(cs_err_message(err), "o365.private_key_file"));
    assert_non_null(strstr(cs_err_message(err), "does not belong"));
    assert_true(cs_err_is_fatal(err));
    cs_err_free(err);

    o = base_opts(PUB_ASSERTION_RS256);
    o.private_key_pem = "not a key";
    err = pub_token_provider_new(&o, &p);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "o365.private_key_file"));
    cs_err_free(err);

    o = base_opts(PUB_ASSERTION_RS256);
    o.certificate_file = "/nonexistent/app.pem";
    err = pub_token_provider_new(&o, &p);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "o365.certificate_file"));
    cs_err_free(err);
}

static void scopes_follow_base_urls(void **state)
{
    (void)state;
    pub_token_opts o = base_opts(PUB_ASSERTION_RS256);
    pub_token_provider *p = NULL;
    assert_null(pub_token_provider_new(&o, &p));
    assert_string_equal(pub_token_scope(p, PUB_RESOURCE_EXCHANGE), "https://outlook.office365.com/.default");
    assert_string_equal(pub_token_scope(p, PUB_RESOURCE_GRAPH), "https://graph.microsoft.com/.default");
    pub_token_provider_free(p);

    /* A sovereign cloud (GCC High): set the base URLs, the scopes follow. */
    o.exchange_url = "https://Outlook.Office365.us/adminapi";
    o.graph_url = "https://graph.microsoft.us";
    assert_null(pub_token_provider_new(&o, &p));
    assert_string_equal(pub_token_scope(p, PUB_RESOURCE_EXCHANGE), "https://outlook.office365.us/.default");
    assert_string_equal(pub_token_scope(p, PUB_RESOURCE_GRAPH), "https://graph.microsoft.us/.default");
    pub_token_provider_free(p);

    o.exchange_url = "https://127.0.0.1:8443";
    o.exchange_resource = "https://outlook.office365.com/";
    assert_null(pub_token_provider_new(&o, &p));
    assert_string_equal(pub_token_scope(p, PUB_RESOURCE_EXCHANGE), "https://outlook.office365.com/.default");
    pub_token_provider_free(p);

    char res[64];
    assert_false(pub_token_resource_of("ftp://x", res, sizeof res));
    assert_false(pub_token_resource_of("https://", res, sizeof res));
    assert_true(pub_token_resource_of("https://h:1/p?q", res, sizeof res));
    assert_string_equal(res, "https://h:1");

    /* Secret auth: an empty secret is refused, naming the key. */
    o = base_opts(PUB_ASSERTION_RS256);
    o.auth = PUB_AUTH_SECRET;
    o.client_secret = "";
    cs_err *err = pub_token_provider_new(&o, &p);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "o365.client_secret_file"));
    cs_err_free(err);
    o.client_secret = "s3cret\n";
    assert_null(pub_token_provider_new(&o, &p));
    char *jwt = NULL;
    err = pub_token_build_assertion(p, 0, &jwt);
    assert_non_null(err); /* no assertion with a secret */
    cs_err_free(err);
    pub_token_provider_free(p);
}

static cs_err *golden_error(const char *name, long status)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/o365/%s", CS_SOURCE_DIR, name);
    size_t len = 0;
    char *body = pts_slurp(path, &len);
    assert_non_null(body);
    cs_err *err = pub_token_error_from_response(status, body, len, "crid-1234");
    free(body);
    assert_non_null(err);
    return err;
}

static void classifies_aadsts_errors(void **state)
{
    (void)state;
    cs_err *err = golden_error("token_error_7000222.json", 401);
    const char *m = cs_err_message(err);
    assert_non_null(strstr(m, "AADSTS7000222"));
    assert_non_null(strstr(m, "o365.client_secret_file"));
    assert_non_null(strstr(m, "create a new secret"));
    assert_non_null(strstr(m, "crid-1234"));
    assert_null(strstr(m, "Trace ID")); /* only the description's first line */
    assert_true(cs_err_is_fatal(err));
    assert_false(cs_err_is_retriable(err));
    cs_err_free(err);

    err = golden_error("token_error_700027.json", 401);
    assert_non_null(strstr(cs_err_message(err), "AADSTS700027"));
    assert_non_null(strstr(cs_err_message(err), "o365.certificate_file"));
    assert_true(cs_err_is_fatal(err));
    cs_err_free(err);

    err = golden_error("token_error_700016.json", 400);
    assert_non_null(strstr(cs_err_message(err), "o365.client_id"));
    assert_true(cs_err_is_fatal(err));
    cs_err_free(err);

    err = golden_error("token_error_90055.json", 429);
    assert_non_null(strstr(cs_err_message(err), "AADSTS90055"));
    assert_true(cs_err_is_retriable(err));
    assert_false(cs_err_is_fatal(err));
    cs_err_free(err);

    err = pub_token_error_from_response(503, "<html>oops</html>", 17, "c");
    assert_true(cs_err_is_retriable(err));
    assert_non_null(strstr(cs_err_message(err), "HTTP 503"));
    cs_err_free(err);

    /* Unknown 4xx: neither retried nor called a credential problem. */
    err = pub_token_error_from_response(400, "{\"error\":\"invalid_request\",\"error_codes\":[12345]}", 49,
                                        "c");
    assert_false(cs_err_is_retriable(err));
    assert_false(cs_err_is_fatal(err));
    assert_non_null(strstr(cs_err_message(err), "AADSTS12345"));
    cs_err_free(err);
}

/* One token error body as Entra sends it (o365-contract.md section 1; texts as in tests/emulator/o365emu/aadsts.py). */
static cs_err *aadsts_error(long status, const char *error, long code, const char *text)
{
    char body[1024];
    int n = snprintf(body, sizeof body,
                     "{\"error\":\"%s\",\"error_description\":\"AADSTS%ld: %s\\r\\nTrace ID: t\","
                     "\"error_codes\":[%ld],\"trace_id\":\"t\",\"correlation_id\":\"c\"}",
                     error, code, text, code);
    assert_true(n > 0 && (size_t)n < sizeof body);
    cs_err *err = pub_token_error_from_response(status, body, (size_t)n, "crid-fix");
    assert_non_null(err);
    return err;
}

/* Each credential/configuration code names the setting to fix, is fatal (a retry cannot help) and keeps
 * Entra's own words and the client-request-id. */
static void aadsts_errors_name_the_setting(void **state)
{
    (void)state;
    static const struct {
        long status;
        const char *error;
        long code;
        const char *text;
        const char *settings[3]; /* each must appear in the message */
    } cases[] = {
        {401,
         "invalid_client",
         700027,
         "Client assertion failed signature validation. [Reason - The key was not found.]",
         {"o365.certificate_file", "o365.private_key_file", "o365.assertion_alg"}},
        {401,
         "invalid_client",
         7000215,
         "Invalid client secret provided.",
         {"o365.client_secret_file", NULL, NULL}},
        {400,
         "unauthorized_client",
         700016,
         "Application with identifier 'x' was not found in the directory 'y'.",
         {"o365.client_id", "o365.tenant_id", NULL}},
        {400,
         "invalid_scope",
         1002012,
         "The provided value for scope x is not valid.",
         {"o365.exchange_resource", "o365.graph_resource", "/.default"}},
        {400,
         "invalid_resource",
         500011,
         "The resource principal named x was not found in the tenant named y.",
         {"o365.exchange_resource", "o365.graph_resource", "o365.tenant_id"}},
        {400,
         "invalid_request",
         9000411,
         "The request is not properly formatted. The parameter 'scope' is duplicated.",
         {"o365.authority_url", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_err *err = aadsts_error(cases[i].status, cases[i].error, cases[i].code, cases[i].text);
        const char *m = cs_err_message(err);
        char code[32];
        snprintf(code, sizeof code, "AADSTS%ld", cases[i].code);
        if (!strstr(m, code))
            fail_msg("AADSTS%ld: code missing from: %s", cases[i].code, m);
        for (size_t k = 0; k < 3 && cases[i].settings[k]; k++)
            if (!strstr(m, cases[i].settings[k]))
                fail_msg("AADSTS%ld: message does not name %s: %s", cases[i].code, cases[i].settings[k], m);
        if (!strstr(m, "crid-fix") || !strstr(m, cases[i].error))
            fail_msg("AADSTS%ld: client-request-id or error missing: %s", cases[i].code, m);
        if (strstr(m, "Trace ID"))
            fail_msg("AADSTS%ld: more than the description's first line: %s", cases[i].code, m);
        assert_true(cs_err_is_fatal(err));
        assert_false(cs_err_is_retriable(err));
        cs_err_free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(assertion_rs256),
        cmocka_unit_test(assertion_ps256),
        cmocka_unit_test(key_must_match_certificate),
        cmocka_unit_test(scopes_follow_base_urls),
        cmocka_unit_test(classifies_aadsts_errors),
        cmocka_unit_test(aadsts_errors_name_the_setting),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
