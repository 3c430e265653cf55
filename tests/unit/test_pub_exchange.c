/*
 * pub_exchange: Set-* bodies byte-exact against golden JSON (tests/data/o365, o365-contract.md section 2
 * [observed] encoding), error-envelope classification from golden bodies, reads with paging links,
 * the cmdlet for each recipient type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pub_exchange.h"

static char *golden(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/o365/%s", CS_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return s;
}

static unsigned char c1[] = {0x30, 0x03, 0x02, 0x01, 0x01};
static unsigned char c2[] = {0x30, 0x03, 0x02, 0x01, 0x02};
static unsigned char s1[] = {0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                             0x0d, 0x01, 0x07, 0x02, 0xa0, 0x00, 0x00, 0x00};

static void set_mailbox_body_is_exact(void **state)
{
    (void)state;
    pub_blob user[] = {{sizeof c1, c1}, {sizeof c2, c2}};
    pub_blob smime[] = {{sizeof s1, s1}};
    cs_buf b;
    cs_buf_init(&b, 1 << 20);
    assert_null(pub_exchange_build_set_body("Set-Mailbox", "5eed0001-0000-4000-8000-000000000001", user, 2,
                                            smime, 1, &b));
    size_t len;
    char *want = golden("exo_set_mailbox_body.json", &len);
    assert_string_equal(cs_buf_str(&b), want);
    free(want);
    cs_buf_free(&b);
}

static void clear_body_is_exact(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 1 << 20);
    assert_null(pub_exchange_build_set_body("Set-MailContact", "o'brien \"x\"@partner.example", NULL, 0, NULL,
                                            0, &b));
    size_t len;
    char *want = golden("exo_set_mailcontact_clear_body.json", &len);
    assert_string_equal(cs_buf_str(&b), want);
    free(want);
    cs_buf_free(&b);
}

static void set_body_refuses_bad_input(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 64);
    cs_err *err = pub_exchange_build_set_body("Get-Mailbox", "x", NULL, 0, NULL, 0, &b);
    assert_non_null(err);
    cs_err_free(err);
    err = pub_exchange_build_set_body("Set-Mailbox", "", NULL, 0, NULL, 0, &b);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "Identity"));
    cs_err_free(err);
    /* Bounded: a body over the buffer's maximum is an error, not a truncated request. */
    cs_buf_reset(&b);
    pub_blob big[] = {{sizeof s1, s1}, {sizeof s1, s1}, {sizeof s1, s1}};
    err = pub_exchange_build_set_body("Set-Mailbox", "someone", big, 3, NULL, 0, &b);
    assert_non_null(err);
    cs_err_free(err);
    cs_buf_free(&b);
}

static void get_bodies(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 4096);
    assert_null(pub_exchange_build_get_body("Get-Mailbox", "alice@contoso.com", NULL, &b));
    assert_string_equal(cs_buf_str(&b),
                        "{\"CmdletInput\":{\"CmdletName\":\"Get-Mailbox\",\"Parameters\":{\"Identity\":"
                        "\"alice@contoso.com\"}}}");
    cs_buf_reset(&b);
    assert_null(pub_exchange_build_get_body("Get-Recipient", NULL, "ExternalDirectoryObjectId -eq 'x'", &b));
    assert_string_equal(cs_buf_str(&b),
                        "{\"CmdletInput\":{\"CmdletName\":\"Get-Recipient\",\"Parameters\":{\"Filter\":"
                        "\"ExternalDirectoryObjectId -eq 'x'\",\"ResultSize\":\"Unlimited\"}}}");
    cs_err *err = pub_exchange_build_get_body("Get-Recipient", NULL, NULL, &b);
    assert_non_null(err);
    cs_err_free(err);
    cs_buf_free(&b);
}

static pub_exo_kind classify_golden(const char *name, long status, char *detail, size_t cap)
{
    size_t len;
    char *body = golden(name, &len);
    pub_exo_kind k = pub_exchange_classify(status, body, len, detail, cap);
    free(body);
    return k;
}

static void classifies_error_envelopes(void **state)
{
    (void)state;
    char d[1024];
    assert_int_equal(classify_golden("exo_error_not_found.json", 404, d, sizeof d), PUB_EXO_NOT_FOUND);
    assert_non_null(strstr(d, "couldn't be found"));
    assert_int_equal(classify_golden("exo_error_write_scope.json", 400, d, sizeof d), PUB_EXO_WRITE_SCOPE);
    assert_non_null(strstr(d, "write scope"));
    assert_int_equal(classify_golden("exo_error_invalid_value.json", 400, d, sizeof d),
                     PUB_EXO_INVALID_VALUE);
    assert_int_equal(classify_golden("exo_error_throttled.json", 429, d, sizeof d), PUB_EXO_THROTTLED);
    assert_int_equal(pub_exchange_classify(503, "", 0, d, sizeof d), PUB_EXO_UNAVAILABLE);
    assert_int_equal(pub_exchange_classify(401, "", 0, d, sizeof d), PUB_EXO_AUTH);
    const char *other = "{\"error\":{\"code\":\"BadRequest\",\"message\":\"x\"}}";
    assert_int_equal(pub_exchange_classify(400, other, strlen(other), d, sizeof d), PUB_EXO_OTHER);
    assert_int_equal(pub_exchange_classify(400, "not json", 8, d, sizeof d), PUB_EXO_OTHER);
}

static void parses_recipients_and_next_link(void **state)
{
    (void)state;
    size_t len;
    char *body = golden("exo_get_paged.json", &len);
    pub_exo_recipient *r = NULL;
    size_t n = 0;
    char *next = NULL;
    assert_null(pub_exchange_parse_recipients(body, len, &r, &n, &next));
    assert_int_equal(n, 2);
    assert_non_null(next);
    assert_non_null(strstr(next, "skiptoken=abc"));
    assert_string_equal(r[0].recipient_type_details, "UserMailbox");
    assert_string_equal(r[0].external_directory_object_id, "5eed0003-0000-4000-8000-000000000003");
    assert_string_equal(r[0].primary_smtp_address, "carol@contoso.com");
    assert_true(r[0].is_dir_synced);
    assert_true(r[0].is_exchange_cloud_managed);
    assert_int_equal(r[0].n_user_certificate, 2);
    assert_memory_equal(r[0].user_certificate[1].data, c2, sizeof c2);
    assert_int_equal(r[0].n_user_smime_certificate, 0);
    assert_string_equal(r[1].user_principal_name, ""); /* null -> "" */
    assert_int_equal(r[1].n_user_smime_certificate, 1);
    assert_int_equal(r[1].user_smime_certificate[0].len, sizeof s1);
    assert_memory_equal(r[1].user_smime_certificate[0].data, s1, sizeof s1);
    /* A second page appends. */
    free(next);
    assert_null(pub_exchange_parse_recipients(body, len, &r, &n, &next));
    assert_int_equal(n, 4);
    free(next);
    pub_exo_recipients_free(r, n);
    free(body);

    r = NULL;
    n = 0;
    const char *bad = "{\"value\":[{\"Identity\":\"x\",\"UserCertificate\":[\"not base64!\"]}]}";
    cs_err *err = pub_exchange_parse_recipients(bad, strlen(bad), &r, &n, &next);
    assert_non_null(err);
    cs_err_free(err);
    pub_exo_recipients_free(r, n);
    r = NULL;
    n = 0;
    err = pub_exchange_parse_recipients("{}", 2, &r, &n, &next);
    assert_non_null(err);
    cs_err_free(err);
}

static void cmdlet_by_recipient_type(void **state)
{
    (void)state;
    assert_string_equal(pub_exchange_set_cmdlet_for("UserMailbox"), "Set-Mailbox");
    assert_string_equal(pub_exchange_set_cmdlet_for("SharedMailbox"), "Set-Mailbox");
    assert_string_equal(pub_exchange_set_cmdlet_for("RoomMailbox"), "Set-Mailbox");
    assert_string_equal(pub_exchange_set_cmdlet_for("EquipmentMailbox"), "Set-Mailbox");
    assert_string_equal(pub_exchange_set_cmdlet_for("MailUser"), "Set-MailUser");
    assert_string_equal(pub_exchange_set_cmdlet_for("GuestMailUser"), "Set-MailUser");
    assert_string_equal(pub_exchange_set_cmdlet_for("MailContact"), "Set-MailContact");
    assert_null(pub_exchange_set_cmdlet_for("MailUniversalDistributionGroup"));
    assert_null(pub_exchange_set_cmdlet_for(""));
    assert_null(pub_exchange_set_cmdlet_for(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_mailbox_body_is_exact),  cmocka_unit_test(clear_body_is_exact),
        cmocka_unit_test(set_body_refuses_bad_input), cmocka_unit_test(get_bodies),
        cmocka_unit_test(classifies_error_envelopes), cmocka_unit_test(parses_recipients_and_next_link),
        cmocka_unit_test(cmdlet_by_recipient_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
