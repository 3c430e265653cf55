/*
 * Unit tests for the collector's directory side without a server: GUID/SID formatting,
 * replPropertyMetaData parsing (valid, truncated, lying counts), col_object and col_event_build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_event_build.h"
#include "cs_metrics.h"
#include "cs_policy.h"
#include "testcert.h"
#include "col_object.h"
#include "col_replmeta.h"
#include "cs_err.h"
#include "cs_event.h"
#include "cs_log.h"

static const char dn_ad[] = "CN=Alice,OU=People,DC=corp,DC=example,DC=test";

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A replPropertyMetaData blob: header + entries (attid, version, nttime seconds, inv byte, usn). */
typedef struct meta_entry {
    uint32_t attid, version;
    uint64_t nttime;
    unsigned char inv;
    int64_t usn;
} meta_entry;

static size_t make_meta(unsigned char *buf, size_t cap, const meta_entry *e, size_t n)
{
    size_t len = 16 + 48 * n;
    assert_true(len <= cap);
    memset(buf, 0, len);
    put32(buf, 1);
    put32(buf + 8, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = buf + 16 + 48 * i;
        put32(p, e[i].attid);
        put32(p + 4, e[i].version);
        put64(p + 8, e[i].nttime);
        memset(p + 16, e[i].inv, 16);
        put64(p + 32, (uint64_t)e[i].usn);
        put64(p + 40, (uint64_t)e[i].usn + 1000);
    }
    return len;
}

static void guid_formats(void **state)
{
    (void)state;
    unsigned char g[16];
    char out[COL_GUID_STR_LEN];
    for (int i = 0; i < 16; i++)
        g[i] = (unsigned char)i;
    col_guid_format_ad(g, out);
    /* AD: the first three fields are little-endian. */
    assert_string_equal(out, "03020100-0504-0706-0809-0a0b0c0d0e0f");
    col_uuid_format(g, out);
    assert_string_equal(out, "00010203-0405-0607-0809-0a0b0c0d0e0f");
}

static void sid_formats(void **state)
{
    (void)state;
    /* S-1-5-21-1004336348-1177238915-682003330-512 */
    unsigned char sid[] = {1,    5,    0,    0,    0,    0,    0,    5,    21,   0,
                           0,    0,    0xdc, 0xf4, 0xdc, 0x3b, 0x83, 0x3d, 0x2b, 0x46,
                           0x82, 0x8b, 0xa6, 0x28, 0x00, 0x02, 0x00, 0x00};
    char out[COL_SID_STR_LEN];
    cs_err *err = col_sid_format(sid, sizeof sid, dn_ad, out);
    assert_null(err);
    assert_string_equal(out, "S-1-5-21-1004336348-1177238915-682003330-512");

    /* Truncated: the count says 5 sub-authorities, the bytes hold 4. */
    err = col_sid_format(sid, sizeof sid - 4, dn_ad, out);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), dn_ad));
    assert_non_null(strstr(cs_err_message(err), "sub-authorities"));
    cs_err_free(err);
    /* Shorter than the header. */
    err = col_sid_format(sid, 3, dn_ad, out);
    assert_non_null(err);
    cs_err_free(err);
    /* Wrong revision. */
    sid[0] = 2;
    err = col_sid_format(sid, sizeof sid, dn_ad, out);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "revision"));
    cs_err_free(err);
    /* More than 15 sub-authorities. */
    sid[0] = 1;
    sid[1] = 16;
    err = col_sid_format(sid, sizeof sid, dn_ad, out);
    assert_non_null(err);
    cs_err_free(err);
}

static void replmeta_valid(void **state)
{
    (void)state;
    unsigned char blob[16 + 48 * 4];
    const meta_entry e[] = {
        {COL_ATTID_CN, 9, 13000000000ULL, 0x11, 100},
        {COL_ATTID_USER_CERTIFICATE, 3, 13380000000ULL, 0xab, 4242},
        {COL_ATTID_USER_SMIME_CERTIFICATE, 1, 13380000100ULL, 0xcd, 4243},
        {COL_ATTID_NAME, 2, 13370000000ULL, 0xef, 17},
    };
    size_t len = make_meta(blob, sizeof blob, e, 4);
    col_stamp st;
    assert_null(col_replmeta_find(blob, len, dn_ad, COL_ATTID_USER_CERTIFICATE, &st));
    assert_true(st.present);
    assert_int_equal(st.version, 3);
    /* NTTIME_1sec: seconds since 1601. */
    assert_int_equal(st.originating_time, 13380000000LL - 11644473600LL);
    assert_int_equal(st.invocation_id[0], 0xab);
    assert_int_equal(st.invocation_id[15], 0xab);
    assert_int_equal(st.originating_usn, 4242);
    assert_int_equal(st.local_usn, 5242);
    assert_null(col_replmeta_find(blob, len, dn_ad, COL_ATTID_USER_SMIME_CERTIFICATE, &st));
    assert_true(st.present);
    assert_int_equal(st.version, 1);
    /* An attribute without a stamp is not an error. */
    assert_null(col_replmeta_find(blob, len, dn_ad, COL_ATTID_IS_DELETED, &st));
    assert_false(st.present);
    /* Trailing bytes after the entries are tolerated (NDR padding). */
    assert_null(col_replmeta_find(blob, sizeof blob, dn_ad, COL_ATTID_NAME, &st));
    assert_true(st.present);
}

static void replmeta_malformed(void **state)
{
    (void)state;
    unsigned char blob[16 + 48 * 2];
    const meta_entry e[] = {{COL_ATTID_USER_CERTIFICATE, 3, 13380000000ULL, 1, 1},
                            {COL_ATTID_NAME, 1, 1, 1, 1}};
    size_t len = make_meta(blob, sizeof blob, e, 2);
    col_stamp st;
    cs_err *err;

    /* Truncated in the middle of the second entry. */
    err = col_replmeta_find(blob, len - 10, dn_ad, COL_ATTID_NAME, &st);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_INVALID_INPUT);
    assert_non_null(strstr(cs_err_message(err), dn_ad));
    assert_false(st.present);
    cs_err_free(err);
    /* Shorter than the header. */
    err = col_replmeta_find(blob, 12, dn_ad, COL_ATTID_NAME, &st);
    assert_non_null(err);
    cs_err_free(err);
    err = col_replmeta_find(NULL, 0, dn_ad, COL_ATTID_NAME, &st);
    assert_non_null(err);
    cs_err_free(err);
    /* A lying count: 2^32-1 entries in a 112-byte blob must not overflow the bounds check. */
    put32(blob + 8, 0xffffffffu);
    err = col_replmeta_find(blob, len, dn_ad, COL_ATTID_NAME, &st);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "4294967295"));
    cs_err_free(err);
    /* 0x05555556 * 48 wraps a 32-bit multiplication to a small number. */
    put32(blob + 8, 0x05555556u);
    err = col_replmeta_find(blob, len, dn_ad, COL_ATTID_NAME, &st);
    assert_non_null(err);
    cs_err_free(err);
    /* Unknown version. */
    put32(blob + 8, 2);
    put32(blob, 2);
    err = col_replmeta_find(blob, len, dn_ad, COL_ATTID_NAME, &st);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "version 2"));
    cs_err_free(err);
}

static void stamp_ordering(void **state)
{
    (void)state;
    col_stamp a = {.present = true, .version = 2, .originating_time = 100};
    col_stamp b = a, none = {0};
    assert_int_equal(col_stamp_compare(&a, &b), 0);
    b.version = 3;
    b.originating_time = 50; /* version wins over time */
    assert_true(col_stamp_compare(&a, &b) < 0);
    b = a;
    b.originating_time = 101;
    assert_true(col_stamp_compare(&b, &a) > 0);
    b = a;
    b.invocation_id[0] = 1; /* then the invocation id, bytewise */
    assert_true(col_stamp_compare(&a, &b) < 0);
    assert_true(col_stamp_compare(&none, &a) < 0);
    assert_int_equal(col_stamp_compare(&none, &none), 0);
}

static unsigned char *read_file(const char *rel, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/testdata/certs/%s", CS_SHARED_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("cannot open %s", path);
        return NULL;
    }
    unsigned char *buf = malloc(65536);
    assert_non_null(buf);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

static void add(col_object *o, const char *attr, const void *v, size_t len)
{
    cs_err *err = col_object_add_value(o, attr, v, len);
    if (err != NULL)
        fail_msg("add %s: %s", attr, cs_err_message(err));
}

static void adds(col_object *o, const char *attr, const char *v)
{
    add(o, attr, v, strlen(v));
}

/* A complete AD user: two certificate attributes, metadata where `name` is newer than isDeleted. */
static col_object *make_ad_user(unsigned char *junk, size_t junk_len)
{
    col_object *o = NULL;
    unsigned char guid[16], meta[16 + 48 * 4];
    unsigned char sid[] = {1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0};
    size_t alice_len = 0, p7_len = 0, mlen;
    unsigned char *alice = read_file("rfc4134/AliceRSASignByCarl.cer", &alice_len);
    unsigned char *p7 = read_file("rfc4134/4.4.bin", &p7_len);
    const meta_entry e[] = {
        {COL_ATTID_USER_CERTIFICATE, 4, 13380000000ULL, 0xaa, 500},
        {COL_ATTID_USER_SMIME_CERTIFICATE, 2, 13380000001ULL, 0xaa, 501},
        {COL_ATTID_NAME, 3, 13380000005ULL, 0xbb, 502},
        {COL_ATTID_IS_DELETED, 2, 13380000009ULL, 0xcc, 503},
    };

    for (int i = 0; i < 16; i++)
        guid[i] = (unsigned char)(0xf0 + i);
    mlen = make_meta(meta, sizeof meta, e, 4);
    assert_null(col_object_new(COL_DIR_AD, dn_ad, &o));
    add(o, "objectGUID", guid, 16);
    add(o, "objectSid", sid, sizeof sid);
    adds(o, "userPrincipalName", "alice@corp.example.test");
    adds(o, "mail", "alice@example.test");
    adds(o, "proxyAddresses", "SMTP:alice@example.test");
    adds(o, "proxyAddresses", "smtp:a@example.test");
    adds(o, "sAMAccountName", "alice");
    adds(o, "somethingElse", "ignored");
    add(o, "userCertificate", alice, alice_len);
    if (junk != NULL)
        add(o, "userCertificate", junk, junk_len);
    add(o, "userSMIMECertificate", p7, p7_len);
    add(o, "replPropertyMetaData", meta, mlen);
    free(alice);
    free(p7);
    return o;
}

static void ad_object(void **state)
{
    (void)state;
    col_object *o = make_ad_user(NULL, 0);
    size_t len = 0;
    assert_null(col_object_finish(o));
    assert_string_equal(col_object_id(o), "f3f2f1f0-f5f4-f7f6-f8f9-fafbfcfdfeff");
    assert_string_equal(col_object_sid(o), "S-1-5-32-544");
    assert_string_equal(col_object_upn(o), "alice@corp.example.test");
    assert_int_equal(col_object_proxy_address_count(o), 2);
    assert_string_equal(col_object_proxy_address(o, 1), "smtp:a@example.test");
    assert_int_equal(col_object_cert_count(o, CS_CERT_ATTR_USER_CERTIFICATE), 1);
    assert_int_equal(col_object_cert_count(o, CS_CERT_ATTR_USER_SMIME_CERTIFICATE), 1);
    assert_non_null(col_object_cert(o, CS_CERT_ATTR_USER_CERTIFICATE, 0, &len));
    assert_true(len > 100);
    assert_null(col_object_cert(o, CS_CERT_ATTR_USER_CERTIFICATE, 1, &len));
    assert_int_equal(col_object_stamp(o, COL_STAMP_USER_CERTIFICATE)->version, 4);
    assert_int_equal(col_object_stamp(o, COL_STAMP_USER_SMIME_CERTIFICATE)->version, 2);
    /* Lifecycle: name (version 3) beats isDeleted (version 2). */
    assert_int_equal(col_object_stamp(o, COL_STAMP_LIFECYCLE)->version, 3);
    assert_int_equal(col_object_stamp(o, COL_STAMP_LIFECYCLE)->invocation_id[0], 0xbb);
    assert_false(col_object_is_deleted(o));
    col_object_free(o);
}

static void object_errors(void **state)
{
    (void)state;
    col_object *o = NULL;
    unsigned char meta[16] = {1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0};
    cs_err *err;

    /* No id at all. */
    assert_null(col_object_new(COL_DIR_AD, dn_ad, &o));
    adds(o, "mail", "x@example.test");
    err = col_object_finish(o);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), dn_ad));
    cs_err_free(err);
    col_object_free(o);
    /* A GUID of the wrong length. */
    assert_null(col_object_new(COL_DIR_AD, dn_ad, &o));
    adds(o, "objectGUID", "short");
    err = col_object_finish(o);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "objectGUID"));
    cs_err_free(err);
    col_object_free(o);
    /* Metadata that claims 9 entries in 16 bytes. */
    assert_null(col_object_new(COL_DIR_AD, dn_ad, &o));
    add(o, "objectGUID", "0123456789abcdef", 16);
    add(o, "replPropertyMetaData", meta, sizeof meta);
    err = col_object_finish(o);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "replPropertyMetaData"));
    assert_non_null(strstr(cs_err_message(err), dn_ad));
    cs_err_free(err);
    col_object_free(o);
}

static void openldap_object(void **state)
{
    (void)state;
    col_object *o = NULL;
    const char *csn = "20261128120000.123456Z#000000#000#000000";
    assert_null(col_object_new(COL_DIR_OPENLDAP, "uid=bob,ou=people,dc=example,dc=test", &o));
    adds(o, "entryUUID", "6D5C4B3A-1111-2222-3333-444455556666");
    adds(o, "entryCSN", csn);
    adds(o, "uid", "bob");
    /* slapd answers userCertificate;binary; the same values under the plain name are not added twice. */
    adds(o, "userCertificate;binary", "AAA");
    adds(o, "USERCERTIFICATE;BINARY", "BBB");
    adds(o, "userCertificate", "AAA");
    assert_null(col_object_finish(o));
    assert_string_equal(col_object_id(o), "6d5c4b3a-1111-2222-3333-444455556666");
    assert_null(col_object_guid(o));
    assert_int_equal(col_object_cert_count(o, CS_CERT_ATTR_USER_CERTIFICATE), 2);
    assert_string_equal(col_object_entry_csn(o), csn);

    col_source_info src = {.source_id = "ldap1",
                           .server = "127.0.0.1:389",
                           .directory = COL_DIR_OPENLDAP,
                           .mode = COL_LDAP_MODE_SYNCREPL};
    Certsync__V1__ChangeEvent *ev = NULL;
    assert_null(col_event_build(o, &src, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT, 0,
                                CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE, 1735689600000LL, &ev));
    assert_string_equal(ev->version->user_certificate->csn, csn);
    assert_string_equal(ev->version->lifecycle->csn, csn);
    assert_false(ev->version->user_certificate->has_version);
    assert_string_equal(ev->identity->uid, "bob");
    assert_int_equal(ev->source->directory, CERTSYNC__V1__DIRECTORY_KIND__DIRECTORY_KIND_OPENLDAP);
    /* "AAA" is not a certificate: kept raw, flagged. */
    assert_int_equal(ev->n_user_certificate, 2);
    assert_memory_equal(ev->user_certificate[0]->raw.data, "AAA", 3);
    assert_int_equal(ev->user_certificate[0]->n_problems, 1);
    assert_int_equal(ev->user_certificate[0]->problems[0],
                     CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_UNPARSEABLE);
    assert_non_null(ev->user_certificate[0]->problem_detail);
    col_event_free(ev);
    col_object_free(o);
}

static void ad_event(void **state)
{
    (void)state;
    unsigned char junk[] = {0x30, 0x82, 0xff, 0xff, 0x01};
    col_object *o = make_ad_user(junk, sizeof junk);
    Certsync__V1__ChangeEvent *ev = NULL, *back = NULL;
    col_source_info src = {.source_id = "corp-ad",
                           .site = "emea",
                           .server = "dc1:636",
                           .naming_context = "DC=corp,DC=example,DC=test",
                           .directory = COL_DIR_AD,
                           .mode = COL_LDAP_MODE_DIRSYNC};
    char hash[CS_SHA256_HEX_LEN];
    uint8_t *buf = NULL;
    size_t len = 0;
    FILE *logf = tmpfile();
    char line[4096];
    int unparseable_lines = 0;

    assert_null(col_object_finish(o));
    cs_log_set_output(logf);
    assert_null(col_event_build(o, &src, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT, 0,
                                CERTSYNC__V1__EMIT_REASON__EMIT_REASON_SNAPSHOT, 1735689600000LL, &ev));
    cs_log_set_output(NULL);
    /* The unparseable value is logged once, with DN and attribute. */
    rewind(logf);
    while (fgets(line, sizeof line, logf) != NULL) {
        if (strstr(line, "cannot be parsed") != NULL) {
            unparseable_lines++;
            assert_non_null(strstr(line, dn_ad));
            assert_non_null(strstr(line, "\"attribute\":\"userCertificate\""));
        }
    }
    fclose(logf);
    assert_int_equal(unparseable_lines, 1);

    assert_int_equal(ev->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT);
    assert_int_equal(ev->emit_reason, CERTSYNC__V1__EMIT_REASON__EMIT_REASON_SNAPSHOT);
    assert_false(ev->has_removal_reason);
    assert_int_equal(ev->observed_at_ms, 1735689600000LL);
    assert_string_equal(ev->source->source_id, "corp-ad");
    assert_string_equal(ev->source->site, "emea");
    assert_string_equal(ev->source->naming_context, "DC=corp,DC=example,DC=test");
    assert_int_equal(ev->source->mode, CERTSYNC__V1__TRACKING_MODE__TRACKING_MODE_DIRSYNC);
    assert_string_equal(ev->identity->object_id, "f3f2f1f0-f5f4-f7f6-f8f9-fafbfcfdfeff");
    assert_int_equal(ev->identity->object_guid.len, 16);
    assert_int_equal(ev->identity->object_guid.data[0], 0xf0);
    assert_string_equal(ev->identity->object_sid, "S-1-5-32-544");
    assert_string_equal(ev->identity->dn, dn_ad);
    assert_int_equal(ev->identity->n_proxy_addresses, 2);
    assert_string_equal(ev->identity->sam_account_name, "alice");
    assert_int_equal(ev->version->user_certificate->version, 4);
    assert_int_equal(ev->version->user_certificate->originating_usn, 500);
    assert_int_equal(ev->version->user_certificate->originating_time, 13380000000LL - 11644473600LL);
    assert_int_equal(ev->version->user_certificate->originating_invocation_id.len, 16);
    assert_null(ev->version->user_certificate->csn);
    assert_int_equal(ev->version->lifecycle->version, 3);

    /* The good certificate: summarised. */
    assert_int_equal(ev->n_user_certificate, 2);
    Certsync__V1__CertificateValue *v = ev->user_certificate[0];
    assert_int_equal(v->format, CERTSYNC__V1__VALUE_FORMAT__VALUE_FORMAT_X509_DER);
    assert_int_equal(v->n_certificates, 1);
    assert_int_equal(v->user_index, 0);
    assert_int_equal(v->n_problems, 0);
    assert_string_equal(v->certificates[0]->email_addresses[0], "AliceRSA@example.com");
    assert_non_null(strstr(v->certificates[0]->subject, "AliceRSA"));
    assert_string_equal(v->certificates[0]->key_algorithm, "rsa");
    assert_true(v->certificates[0]->not_after > v->certificates[0]->not_before);
    char sha[CS_SHA256_HEX_LEN];
    cs_sha256_hex(v->raw.data, v->raw.len, sha);
    assert_string_equal(v->sha256, sha);
    /* The junk value: kept byte for byte, flagged UNPARSEABLE with a reason. */
    v = ev->user_certificate[1];
    assert_int_equal(v->raw.len, sizeof junk);
    assert_memory_equal(v->raw.data, junk, sizeof junk);
    /* The format is what the attribute holds (cs_cert reports it even for damaged DER). */
    assert_int_equal(v->format, CERTSYNC__V1__VALUE_FORMAT__VALUE_FORMAT_X509_DER);
    assert_int_equal(v->n_problems, 1);
    assert_int_equal(v->problems[0], CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_UNPARSEABLE);
    assert_int_equal(v->user_index, -1);
    /* The PKCS#7 value: three certificates, the user's one found. */
    assert_int_equal(ev->n_user_smime_certificate, 1);
    v = ev->user_smime_certificate[0];
    assert_int_equal(v->format, CERTSYNC__V1__VALUE_FORMAT__VALUE_FORMAT_PKCS7);
    assert_int_equal(v->n_certificates, 3);
    assert_true(v->user_index >= 0);

    assert_null(cs_event_content_sha256(ev, hash));
    assert_string_equal(ev->content_sha256, hash);
    /* It encodes and decodes as a valid event. */
    assert_null(cs_event_encode(ev, &buf, &len));
    assert_null(cs_event_decode(buf, len, &back));
    assert_string_equal(back->identity->object_id, ev->identity->object_id);
    assert_int_equal(back->n_user_certificate, 2);
    certsync__v1__change_event__free_unpacked(back, NULL);
    free(buf);
    col_event_free(ev);

    /* A removal of the same object: identity and version, no values, a reason. */
    assert_null(col_event_build(o, &src, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL,
                                CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_DELETED,
                                CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE, 1735689600000LL, &ev));
    assert_int_equal(ev->kind, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL);
    assert_true(ev->has_removal_reason);
    assert_int_equal(ev->removal_reason, CERTSYNC__V1__REMOVAL_REASON__REMOVAL_REASON_DELETED);
    assert_int_equal(ev->n_user_certificate, 0);
    assert_int_equal(ev->n_user_smime_certificate, 0);
    assert_non_null(ev->content_sha256);
    assert_string_not_equal(ev->content_sha256, hash);
    assert_int_equal(ev->version->lifecycle->version, 3);
    col_event_free(ev);
    col_object_free(o);
}

static void event_needs_ids(void **state)
{
    (void)state;
    col_object *o = NULL;
    Certsync__V1__ChangeEvent *ev = NULL;
    col_source_info src = {.source_id = NULL};
    assert_null(col_object_new(COL_DIR_AD, dn_ad, &o));
    assert_null(col_object_set_id(o, "ABC"));
    assert_string_equal(col_object_id(o), "abc");
    cs_err *err = col_event_build(o, &src, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT, 0, 0, 0, &ev);
    assert_non_null(err);
    assert_null(ev);
    cs_err_free(err);
    col_event_free(NULL);
    col_object_free(o);
}

static void mappings(void **state)
{
    (void)state;
    assert_int_equal(col_event_cert_problem(CS_CERT_PROBLEM_UNPARSEABLE),
                     CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_UNPARSEABLE);
    assert_int_equal(col_event_cert_problem(CS_CERT_PROBLEM_TRAILING_DATA),
                     CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_TRAILING_DATA);
    assert_int_equal(col_event_cert_problem(CS_CERT_PROBLEM_NO_EMAIL_ADDRESS),
                     CERTSYNC__V1__CERT_PROBLEM__CERT_PROBLEM_NO_EMAIL_ADDRESS);
    /* OpenSSL's KU_ mask: digitalSignature 0x80, keyEncipherment 0x20, decipherOnly 0x8000. */
    assert_int_equal(col_event_key_usage(CS_CERT_KU_DIGITAL_SIGNATURE | CS_CERT_KU_KEY_ENCIPHERMENT), 0xa0);
    assert_int_equal(col_event_key_usage(CS_CERT_KU_DECIPHER_ONLY), 0x8000);
}

/* The collector reports the policy (issue 6): refusals are counted by rule, the event keeps every value. */
static void policy_report(void **state)
{
    (void)state;
    const int64_t now = 1767225600; /* 2026-01-01 */
    col_object *o = NULL;
    assert_null(col_object_new(COL_DIR_OPENLDAP, "uid=carol,ou=people,dc=example,dc=test", &o));
    adds(o, "entryUUID", "6D5C4B3A-1111-2222-3333-444455557777");
    adds(o, "entryCSN", "20261128120000.123456Z#000000#000#000000");
    adds(o, "uid", "carol");
    adds(o, "mail", "carol@example.test");
    tc_opts g = {.kind = "P-256",
                 .san_email = "carol@example.test",
                 .not_before = now - 86400,
                 .not_after = now + 365 * 86400,
                 .ku = "critical,digitalSignature,keyAgreement",
                 .eku = "emailProtection"};
    tc_opts expired = g, other = g;
    expired.not_after = now - 86400;
    expired.serial = 2;
    other.san_email = "mallory@example.test";
    other.serial = 3;
    const tc_opts *all[] = {&g, &expired, &other};
    for (size_t i = 0; i < 3; i++) {
        X509 *x = tc_cert(all[i]);
        size_t len = 0;
        unsigned char *der = tc_der(x, &len);
        add(o, "userCertificate;binary", der, len);
        free(der);
        X509_free(x);
    }
    assert_null(col_object_finish(o));

    cs_metrics *reg = NULL;
    cs_metric *fam = NULL;
    static const char *const labels[] = {"rule", NULL};
    assert_null(cs_metrics_new(&reg));
    assert_null(cs_metrics_register(
        reg,
        &(cs_metric_def){
            .type = CS_METRIC_COUNTER, .name = "test_policy_refusals_total", .help = "x", .labels = labels},
        &fam));
    cs_counter *counters[CS_POLICY_RULE_COUNT];
    for (unsigned r = 0; r < CS_POLICY_RULE_COUNT; r++)
        counters[r] = cs_metrics_counter_with(fam, cs_policy_rule_name((cs_policy_rule)r));
    cs_policy *policy = NULL;
    assert_null(cs_policy_new(NULL, &policy));
    col_source_info src = {.source_id = "ldap1",
                           .directory = COL_DIR_OPENLDAP,
                           .mode = COL_LDAP_MODE_SYNCREPL,
                           .policy = policy,
                           .policy_refusals = counters};
    Certsync__V1__ChangeEvent *ev = NULL;
    assert_null(col_event_build(o, &src, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT, 0,
                                CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE, now * 1000, &ev));
    assert_int_equal(ev->n_user_certificate, 3); /* reported, never dropped */
    assert_true(cs_metrics_counter_value(counters[CS_POLICY_RULE_EXPIRED]) == 1.0);
    assert_true(cs_metrics_counter_value(counters[CS_POLICY_RULE_ADDRESS_MISMATCH]) == 1.0);
    assert_true(cs_metrics_counter_value(counters[CS_POLICY_RULE_EKU]) == 0.0);
    assert_true(cs_metrics_counter_value(counters[CS_POLICY_RULE_WEAK_KEY]) == 0.0);
    col_event_free(ev);
    /* Without a policy nothing is judged. */
    src.policy = NULL;
    assert_null(col_event_build(o, &src, CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT, 0,
                                CERTSYNC__V1__EMIT_REASON__EMIT_REASON_CHANGE, now * 1000, &ev));
    assert_true(cs_metrics_counter_value(counters[CS_POLICY_RULE_EXPIRED]) == 1.0);
    col_event_free(ev);
    cs_policy_free(policy);
    cs_metrics_free(reg);
    col_object_free(o);
    tc_free_keys();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(guid_formats),   cmocka_unit_test(sid_formats),
        cmocka_unit_test(replmeta_valid), cmocka_unit_test(replmeta_malformed),
        cmocka_unit_test(stamp_ordering), cmocka_unit_test(ad_object),
        cmocka_unit_test(object_errors),  cmocka_unit_test(openldap_object),
        cmocka_unit_test(ad_event),       cmocka_unit_test(event_needs_ids),
        cmocka_unit_test(mappings),       cmocka_unit_test(policy_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
