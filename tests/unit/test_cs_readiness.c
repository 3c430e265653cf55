/*
 * cs_readiness: every reason, Outlook's preference for userSMIMECertificate, the table
 * and CSV output byte for byte, and the metrics tally.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_readiness.h"
#include "testcert.h"

#define NOW INT64_C(1735689600) /* 2025-01-01T00:00:00Z */
#define DAY INT64_C(86400)

static const char *const addrs[] = {"alice@example.com"};

/* A certificate value kept alive for one test. */
typedef struct val {
    unsigned char *der;
    size_t len;
    X509 *x;
} val;

static tc_opts enc_cert(int64_t not_after)
{
    return (tc_opts){.kind = "rsa2048",
                     .san_email = "alice@example.com",
                     .not_before = NOW - 30 * DAY,
                     .not_after = not_after,
                     .ku = "critical,digitalSignature,keyEncipherment",
                     .eku = "emailProtection"};
}

static val make(const tc_opts *o, bool as_p7)
{
    val v = {.x = tc_cert(o)};
    v.der = as_p7 ? tc_p7_der(&v.x, 1, &v.len) : tc_der(v.x, &v.len);
    return v;
}

static void drop(val *v)
{
    free(v->der);
    X509_free(v->x);
}

static cs_readiness *judge(const cs_readiness_value *uc, size_t n_uc, const cs_readiness_value *sc,
                           size_t n_sc, unsigned soon_days)
{
    cs_policy *p = NULL;
    assert_null(cs_policy_new(NULL, &p));
    cs_readiness_input in = {.label = "alice@corp.example",
                             .user_certificate = uc,
                             .n_user_certificate = n_uc,
                             .user_smime_certificate = sc,
                             .n_user_smime_certificate = n_sc,
                             .addresses = addrs,
                             .n_addresses = 1,
                             .now = NOW,
                             .expiring_soon_days = soon_days};
    cs_readiness *r = NULL;
    cs_err *err = cs_readiness_judge(p, &in, &r);
    if (err)
        fail_msg("cs_readiness_judge: %s", cs_err_message(err));
    cs_policy_free(p);
    return r;
}

static void ok_and_expiring_soon(void **state)
{
    (void)state;
    tc_opts o = enc_cert(NOW + 365 * DAY);
    val good = make(&o, false);
    o = enc_cert(NOW + 10 * DAY);
    val soon = make(&o, false);
    cs_readiness_value uc[] = {{soon.der, soon.len}, {good.der, good.len}};

    cs_readiness *r = judge(uc, 2, NULL, 0, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_OK);
    bool has = false;
    assert_int_equal(cs_readiness_attribute(r, &has), CS_CERT_ATTR_USER_CERTIFICATE);
    assert_true(has);
    assert_int_equal(cs_readiness_not_after(r), NOW + 365 * DAY); /* the best one */
    cs_readiness_free(r);

    r = judge(uc, 1, NULL, 0, 0); /* only the one expiring in 10 days */
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_EXPIRING_SOON);
    assert_string_equal(cs_readiness_detail(r),
                        "the newest valid encryption certificate in userCertificate expires on "
                        "2025-01-11T00:00:00Z (in 10 days): the user should renew it now");
    cs_readiness_free(r);

    r = judge(uc, 1, NULL, 0, 7); /* a 7-day window */
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_OK);
    cs_readiness_free(r);
    drop(&good);
    drop(&soon);
}

static void expired_mismatch_and_unusable(void **state)
{
    (void)state;
    tc_opts o = enc_cert(NOW - DAY);
    val expired = make(&o, false);
    o = enc_cert(NOW + 365 * DAY);
    o.san_email = "bob@example.com";
    val other = make(&o, false);
    o = enc_cert(NOW + 365 * DAY);
    o.ku = "critical,digitalSignature";
    val signing = make(&o, false);
    o = enc_cert(NOW + 365 * DAY);
    o.kind = "rsa1024";
    val weak = make(&o, false);

    cs_readiness_value v1[] = {{expired.der, expired.len}};
    cs_readiness *r = judge(v1, 1, NULL, 0, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_EXPIRED);
    assert_int_equal(cs_readiness_not_after(r), NOW - DAY);
    cs_readiness_free(r);

    /* a valid certificate for someone else beats an expired one of ours in the diagnosis */
    cs_readiness_value v2[] = {{expired.der, expired.len}, {other.der, other.len}};
    r = judge(v2, 2, NULL, 0, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_ADDRESS_MISMATCH);
    cs_readiness_free(r);

    /* a signing-only and a weak certificate: nothing Outlook can encrypt to */
    cs_readiness_value v3[] = {{signing.der, signing.len}, {weak.der, weak.len}};
    r = judge(v3, 2, NULL, 0, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_NO_USABLE_CERTIFICATE);
    assert_string_equal(cs_readiness_fingerprint(r), "");
    assert_non_null(strstr(cs_readiness_detail(r), "none of the 2 values in userCertificate is usable"));
    assert_non_null(strstr(cs_readiness_detail(r), "fails: not fit for encryption"));
    cs_readiness_free(r);

    /* nothing at all */
    r = judge(NULL, 0, NULL, 0, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_NO_USABLE_CERTIFICATE);
    bool has = true;
    cs_readiness_attribute(r, &has);
    assert_false(has);
    cs_readiness_free(r);
    drop(&expired);
    drop(&other);
    drop(&signing);
    drop(&weak);
}

static void smime_is_preferred(void **state)
{
    (void)state;
    tc_opts o = enc_cert(NOW + 365 * DAY);
    val good = make(&o, false);
    o = enc_cert(NOW - 5 * DAY);
    val expired_p7 = make(&o, true);
    o = enc_cert(NOW + 200 * DAY);
    val good_p7 = make(&o, true);
    cs_readiness_value uc[] = {{good.der, good.len}};
    cs_readiness_value bad_sc[] = {{expired_p7.der, expired_p7.len}};
    cs_readiness_value good_sc[] = {{good_p7.der, good_p7.len}};

    /* a good userCertificate does not help when userSMIMECertificate has values */
    cs_readiness *r = judge(uc, 1, bad_sc, 1, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_EXPIRED);
    bool has = false;
    assert_int_equal(cs_readiness_attribute(r, &has), CS_CERT_ATTR_USER_SMIME_CERTIFICATE);
    assert_non_null(strstr(cs_readiness_detail(r), "but Outlook prefers userSMIMECertificate"));
    cs_readiness_free(r);

    /* the user's certificate from the PKCS#7 value is what counts */
    r = judge(uc, 1, good_sc, 1, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_OK);
    assert_int_equal(cs_readiness_not_after(r), NOW + 200 * DAY);
    assert_int_equal(cs_readiness_attribute(r, &has), CS_CERT_ATTR_USER_SMIME_CERTIFICATE);
    cs_readiness_free(r);
    drop(&good);
    drop(&expired_p7);
    drop(&good_p7);
}

static void over_15_values(void **state)
{
    (void)state;
    tc_opts o = enc_cert(NOW + 365 * DAY);
    val good = make(&o, false);
    cs_readiness_value uc[16];
    for (size_t i = 0; i < 16; i++)
        uc[i] = (cs_readiness_value){good.der, good.len};
    cs_readiness *r = judge(uc, 15, NULL, 0, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_OK);
    cs_readiness_free(r);
    r = judge(uc, 16, NULL, 0, 0);
    assert_int_equal(cs_readiness_get_reason(r), CS_READINESS_OVER_15_VALUES);
    assert_non_null(strstr(cs_readiness_detail(r), "userCertificate holds 16 values"));
    cs_readiness_free(r);
    drop(&good);
}

static void table_and_csv_are_exact(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 8192);
    assert_true(cs_readiness_table_header(&b));
    assert_string_equal(cs_buf_str(&b), "USER                                    REASON                "
                                        "ATTRIBUTE           NOT_AFTER           CERTIFICATE      DETAIL\n");
    cs_buf_reset(&b);

    cs_readiness *r = judge(NULL, 0, NULL, 0, 0);
    assert_true(cs_readiness_table_row(r, &b));
    assert_string_equal(cs_buf_str(&b), "alice@corp.example                      no_usable_certificate "
                                        "                                                         "
                                        "no certificate in userCertificate or "
                                        "userSMIMECertificate: the user must enrol an S/MIME certificate\n");
    cs_buf_reset(&b);
    assert_true(cs_readiness_csv_header(&b));
    assert_true(cs_readiness_csv_row(r, &b));
    assert_string_equal(cs_buf_str(&b),
                        "user,reason,attribute,not_after,certificate_sha256,detail\r\n"
                        "alice@corp.example,no_usable_certificate,,,,no certificate in "
                        "userCertificate or userSMIMECertificate: the user must enrol an S/MIME "
                        "certificate\r\n");
    cs_readiness_free(r);
    cs_buf_reset(&b);

    tc_opts o = enc_cert(NOW + 365 * DAY);
    val good = make(&o, false);
    cs_readiness_value uc[] = {{good.der, good.len}};
    r = judge(uc, 1, NULL, 0, 0);
    const char *fp = cs_readiness_fingerprint(r);
    assert_int_equal(strlen(fp), 64);
    char want[1024];
    snprintf(
        want, sizeof want,
        "alice@corp.example                      ok                    userCertificate     "
        "2026-01-01T00:00:00Z %.16s Outlook finds a valid encryption certificate in userCertificate (valid "
        "until 2026-01-01T00:00:00Z)\n",
        fp);
    assert_true(cs_readiness_table_row(r, &b));
    assert_string_equal(cs_buf_str(&b), want);
    cs_buf_reset(&b);
    snprintf(want, sizeof want,
             "alice@corp.example,ok,userCertificate,2026-01-01T00:00:00Z,%s,Outlook finds a valid encryption "
             "certificate in userCertificate (valid until 2026-01-01T00:00:00Z)\r\n",
             fp);
    assert_true(cs_readiness_csv_row(r, &b));
    assert_string_equal(cs_buf_str(&b), want);
    cs_readiness_free(r);
    cs_buf_reset(&b);

    /* quoting and the formula guard, from a hostile label */
    cs_policy *p = NULL;
    assert_null(cs_policy_new(NULL, &p));
    cs_readiness_input in = {.label = "=HYPERLINK(\"x\"),evil", .now = NOW};
    assert_null(cs_readiness_judge(p, &in, &r));
    assert_true(cs_readiness_csv_row(r, &b));
    assert_memory_equal(cs_buf_str(&b), "\"'=HYPERLINK(\"\"x\"\"),evil\",no_usable_certificate,", 47);
    cs_buf_reset(&b);
    /* a long label is printed whole, then one space */
    cs_readiness_free(r);
    in.label = "a-very-long-user-principal-name-0123456789@corp.example";
    assert_null(cs_readiness_judge(p, &in, &r));
    assert_true(cs_readiness_table_row(r, &b));
    assert_memory_equal(cs_buf_str(&b),
                        "a-very-long-user-principal-name-0123456789@corp.example no_usable_certificate ", 78);
    cs_readiness_free(r);
    cs_policy_free(p);

    /* a full buffer leaves nothing half-written */
    cs_buf small;
    cs_buf_init(&small, 20);
    r = judge(uc, 1, NULL, 0, 0);
    assert_false(cs_readiness_table_row(r, &small));
    assert_false(cs_readiness_csv_row(r, &small));
    assert_int_equal(cs_buf_len(&small), 0);
    cs_readiness_free(r);
    cs_buf_free(&small);
    cs_buf_free(&b);
    drop(&good);
}

static void metrics_count_users_by_reason(void **state)
{
    (void)state;
    cs_metrics *reg = NULL;
    cs_metric *fam = NULL;
    assert_null(cs_metrics_new(&reg));
    assert_null(cs_readiness_metrics_register(reg, &fam));
    tc_opts o = enc_cert(NOW + 365 * DAY);
    val good = make(&o, false);
    cs_readiness_value uc[] = {{good.der, good.len}};
    cs_readiness_tally t = {{0}};
    for (int i = 0; i < 2; i++) {
        cs_readiness *r = judge(uc, 1, NULL, 0, 0);
        cs_readiness_tally_add(&t, r);
        cs_readiness_free(r);
    }
    cs_readiness *r = judge(NULL, 0, NULL, 0, 0);
    cs_readiness_tally_add(&t, r);
    cs_readiness_free(r);
    cs_readiness_tally_publish(&t, fam);
    cs_buf b;
    cs_buf_init(&b, 1 << 16);
    assert_null(cs_metrics_render(reg, &b));
    const char *page = cs_buf_str(&b);
    assert_non_null(strstr(page, "# TYPE certsync_smime_readiness_users gauge\n"));
    assert_non_null(strstr(page, "certsync_smime_readiness_users{reason=\"ok\"} 2\n"));
    assert_non_null(strstr(page, "certsync_smime_readiness_users{reason=\"no_usable_certificate\"} 1\n"));
    assert_non_null(strstr(page, "certsync_smime_readiness_users{reason=\"over_15_values\"} 0\n"));
    /* the next pass replaces the counts */
    memset(&t, 0, sizeof t);
    cs_readiness_tally_publish(&t, fam);
    cs_buf_reset(&b);
    assert_null(cs_metrics_render(reg, &b));
    assert_non_null(strstr(cs_buf_str(&b), "certsync_smime_readiness_users{reason=\"ok\"} 0\n"));
    cs_buf_free(&b);
    cs_metrics_free(reg);
    drop(&good);
}

static void names_and_bad_input(void **state)
{
    (void)state;
    static const char *const want[CS_READINESS_REASON_COUNT] = {
        "ok", "no_usable_certificate", "address_mismatch", "expired", "expiring_soon", "over_15_values"};
    for (unsigned i = 0; i < CS_READINESS_REASON_COUNT; i++)
        assert_string_equal(cs_readiness_reason_name((cs_readiness_reason)i), want[i]);
    cs_policy *p = NULL;
    assert_null(cs_policy_new(NULL, &p));
    cs_readiness *r = NULL;
    cs_readiness_input in = {.label = "x", .n_user_certificate = 2}; /* count without values */
    cs_err *err = cs_readiness_judge(p, &in, &r);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    assert_null(r);
    cs_err_free(err);
    cs_policy_free(p);
}

static int teardown_keys(void **state)
{
    (void)state;
    tc_free_keys();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ok_and_expiring_soon),    cmocka_unit_test(expired_mismatch_and_unusable),
        cmocka_unit_test(smime_is_preferred),      cmocka_unit_test(over_15_values),
        cmocka_unit_test(table_and_csv_are_exact), cmocka_unit_test(metrics_count_users_by_reason),
        cmocka_unit_test(names_and_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_keys);
}
