/* col_index without Kafka: verdicts, the apply-record path the rebuild uses, and the removal sweep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_index.h"
#include "cs_event.h"

/* An event of object `obj` at entryCSN `csn` with one userCertificate value `cert` (NULL: none). */
typedef struct test_ev {
    Certsync__V1__ChangeEvent ev;
    Certsync__V1__Identity id;
    Certsync__V1__Source src;
    Certsync__V1__Version ver;
    Certsync__V1__AttributeStamp stamp;
    Certsync__V1__CertificateValue val;
    Certsync__V1__CertificateValue *vals[1];
    char csn[64];
    char sha[CS_SHA256_HEX_LEN];
} test_ev;

static void make_ev(test_ev *t, const char *obj, const char *csn, const char *cert, bool removal)
{
    memset(t, 0, sizeof(*t));
    certsync__v1__change_event__init(&t->ev);
    certsync__v1__identity__init(&t->id);
    certsync__v1__source__init(&t->src);
    certsync__v1__version__init(&t->ver);
    certsync__v1__attribute_stamp__init(&t->stamp);
    certsync__v1__certificate_value__init(&t->val);
    snprintf(t->csn, sizeof(t->csn), "%s", csn);
    t->stamp.csn = t->csn;
    t->ver.user_certificate = &t->stamp;
    t->ver.lifecycle = &t->stamp;
    t->id.object_id = (char *)(uintptr_t)obj;
    t->src.source_id = (char *)(uintptr_t) "src1";
    t->ev.has_kind = 1;
    t->ev.kind = removal ? CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL
                         : CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    t->ev.identity = &t->id;
    t->ev.source = &t->src;
    t->ev.version = &t->ver;
    if (cert) {
        t->val.has_raw = 1;
        t->val.raw.data = (uint8_t *)(uintptr_t)cert;
        t->val.raw.len = strlen(cert);
        t->vals[0] = &t->val;
        t->ev.user_certificate = t->vals;
        t->ev.n_user_certificate = 1;
    }
    cs_err *err = cs_event_content_sha256(&t->ev, t->sha);
    assert_null(err);
}

static void must(cs_err *err)
{
    if (err)
        fail_msg("%s", cs_err_message(err));
}

static col_index_verdict judge(col_index *idx, const char *key, test_ev *t)
{
    col_index_verdict v;
    must(col_index_judge(idx, key, &t->ev, t->sha, &v));
    return v;
}

static void verdicts(void **state)
{
    (void)state;
    col_index *idx = NULL;
    test_ev a, b;
    must(col_index_new("src1", &idx));

    /* A removal of an object never emitted: nothing to clear downstream. */
    make_ev(&a, "o1", "20240101000000.000001Z#000000#000#000000", NULL, true);
    assert_int_equal(judge(idx, "src1/o1", &a), COL_INDEX_UNKNOWN_REMOVAL);
    make_ev(&a, "o1", "20240101000000.000001Z#000000#000#000000", "certA", false);
    assert_int_equal(judge(idx, "src1/o1", &a), COL_INDEX_NEW);
    must(col_index_put(idx, "src1/o1", &a.ev, a.sha, false));
    assert_int_equal(col_index_count(idx), 1);

    /* Same version, same content: a duplicate. */
    make_ev(&b, "o1", "20240101000000.000001Z#000000#000#000000", "certA", false);
    assert_int_equal(judge(idx, "src1/o1", &b), COL_INDEX_DUPLICATE);
    /* Same version, other content: stale (never emit two states under one version). */
    make_ev(&b, "o1", "20240101000000.000001Z#000000#000#000000", "certB", false);
    assert_int_equal(judge(idx, "src1/o1", &b), COL_INDEX_STALE);
    /* Older version: a duplicate with the same content, stale with other content. */
    make_ev(&b, "o1", "20230101000000.000001Z#000000#000#000000", "certA", false);
    assert_int_equal(judge(idx, "src1/o1", &b), COL_INDEX_DUPLICATE);
    make_ev(&b, "o1", "20230101000000.000001Z#000000#000#000000", "certZ", false);
    assert_int_equal(judge(idx, "src1/o1", &b), COL_INDEX_STALE);
    /* Newer version: emitted, even with the same content. */
    make_ev(&b, "o1", "20250101000000.000001Z#000000#000#000000", "certA", false);
    assert_int_equal(judge(idx, "src1/o1", &b), COL_INDEX_NEWER);
    /* A removal with the same version and the same (empty) content as an emptied upsert is not a duplicate. */
    make_ev(&a, "o2", "20240101000000.000001Z#000000#000#000000", NULL, false);
    must(col_index_put(idx, "src1/o2", &a.ev, a.sha, false));
    make_ev(&b, "o2", "20240101000000.000001Z#000000#000#000000", NULL, true);
    assert_int_equal(judge(idx, "src1/o2", &b), COL_INDEX_STALE);

    /* Diverged: one stamp newer, another older. */
    make_ev(&a, "o3", "20240101000000.000001Z#000000#000#000000", "x", false);
    must(col_index_put(idx, "src1/o3", &a.ev, a.sha, false));
    make_ev(&b, "o3", "20240101000000.000001Z#000000#000#000000", "x", false);
    Certsync__V1__AttributeStamp older = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__AttributeStamp newer = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    older.csn = (char *)(uintptr_t) "20200101000000.000001Z#000000#000#000000";
    newer.csn = (char *)(uintptr_t) "20290101000000.000001Z#000000#000#000000";
    b.ver.user_certificate = &newer;
    b.ver.lifecycle = &older;
    assert_int_equal(judge(idx, "src1/o3", &b), COL_INDEX_DIVERGED);

    /* An event without a version cannot be judged: a clear error, not a crash. */
    b.ev.version = NULL;
    col_index_verdict v;
    cs_err *err = col_index_judge(idx, "src1/o3", &b.ev, b.sha, &v);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "no version"));
    cs_err_free(err);
    /* A malformed hash is refused. */
    err = col_index_put(idx, "src1/o3", &a.ev, "xyz", false);
    assert_non_null(err);
    cs_err_free(err);

    col_index_entry e;
    assert_true(col_index_lookup(idx, "src1/o1", &e));
    assert_true(e.has_certificates);
    assert_false(e.removed);
    assert_true(col_index_lookup(idx, "src1/o2", &e));
    assert_false(e.has_certificates);
    assert_string_equal(e.content_sha256, col_index_empty_sha256());
    assert_false(col_index_lookup(idx, "src1/nope", NULL));
    col_index_free(idx);
}

static void apply_records(void **state)
{
    (void)state;
    col_index *idx = NULL;
    test_ev a;
    uint8_t *buf = NULL;
    size_t len = 0;
    must(col_index_new("src1", &idx));
    make_ev(&a, "o1", "20240101000000.000001Z#000000#000#000000", "certA", false);
    must(cs_event_encode(&a.ev, &buf, &len));

    /* Another source's record is ignored; so is one whose key merely starts with our id. */
    must(col_index_apply_record(idx, "src2/o1", 7, buf, len, false));
    must(col_index_apply_record(idx, "src1x/o1", 8, buf, len, false));
    assert_int_equal(col_index_count(idx), 0);
    must(col_index_apply_record(idx, "src1/o1", 7, buf, len, false));
    assert_int_equal(col_index_count(idx), 1);
    /* The rebuilt entry judges the same event as a duplicate: no (object, version) twice after a restart. */
    assert_int_equal(judge(idx, "src1/o1", &a), COL_INDEX_DUPLICATE);
    /* Garbage is an error naming the key. */
    cs_err *err = col_index_apply_record(idx, "src1/o9", 7, "\xff\xff\xff", 3, false);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "src1/o9"));
    cs_err_free(err);
    /* A null record removes the entry. */
    must(col_index_apply_record(idx, "src1/o1", 7, NULL, 0, false));
    assert_int_equal(col_index_count(idx), 0);
    free(buf);

    /* Many entries: the table grows and keeps every one. */
    for (int i = 0; i < 5000; i++) {
        char obj[32], key[48];
        snprintf(obj, sizeof(obj), "obj-%d", i);
        snprintf(key, sizeof(key), "src1/obj-%d", i);
        make_ev(&a, obj, "20240101000000.000001Z#000000#000#000000", "c", false);
        must(col_index_put(idx, key, &a.ev, a.sha, false));
    }
    assert_int_equal(col_index_count(idx), 5000);
    assert_true(col_index_lookup(idx, "src1/obj-4321", NULL));
    col_index_free(idx);

    err = col_index_new("bad/id", &idx);
    assert_non_null(err);
    cs_err_free(err);
}

static void sweep(void **state)
{
    (void)state;
    col_index *idx = NULL;
    test_ev a;
    must(col_index_new("src1", &idx));
    const char *objs[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++) {
        char key[16];
        snprintf(key, sizeof(key), "src1/%s", objs[i]);
        make_ev(&a, objs[i], "20240101000000.000001Z#000000#000#000000", "c", i == 3 /* d is removed */);
        must(col_index_put(idx, key, &a.ev, a.sha, false));
    }
    char **keys = NULL;
    size_t n = 0;
    cs_err *err = col_index_sweep_end(idx, &keys, &n);
    assert_non_null(err); /* end without begin */
    cs_err_free(err);

    must(col_index_sweep_begin(idx));
    err = col_index_sweep_begin(idx);
    assert_non_null(err);
    cs_err_free(err);
    col_index_sweep_mark(idx, "src1/b");
    col_index_sweep_mark(idx, "src1/unknown");
    /* A state recorded during the sweep counts as seen. */
    make_ev(&a, "e", "20240101000000.000001Z#000000#000#000000", "c", false);
    must(col_index_put(idx, "src1/e", &a.ev, a.sha, false));
    must(col_index_sweep_end(idx, &keys, &n));
    assert_int_equal(n, 2);
    assert_string_equal(keys[0], "src1/a");
    assert_string_equal(keys[1], "src1/c");
    assert_false(col_index_sweep_open(idx));
    col_index_keys_free(keys, n);

    /* A second sweep starts fresh: nothing marked, all live entries absent. */
    must(col_index_sweep_begin(idx));
    must(col_index_sweep_end(idx, &keys, &n));
    assert_int_equal(n, 4);
    col_index_keys_free(keys, n);
    col_index_free(idx);
}

/* col_index_put_packed records what col_index_put records from the same event; its bounds hold. */
static void put_packed_equals_put(void **state)
{
    (void)state;
    col_index *a = NULL, *b = NULL;
    test_ev e, r;
    must(col_index_new("src1", &a));
    must(col_index_new("src1", &b));
    make_ev(&e, "o1", "20240101000000.000001Z#000000#000#000000", "cert-a", false);
    make_ev(&r, "o2", "20240101000000.000002Z#000000#000#000000", NULL, true);
    test_ev *evs[] = {&e, &r};
    const char *keys[] = {"src1/o1", "src1/o2"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = certsync__v1__version__get_packed_size(evs[i]->ev.version);
        uint8_t *ver = malloc(n + 1);
        assert_non_null(ver);
        certsync__v1__version__pack(evs[i]->ev.version, ver);
        must(col_index_put(a, keys[i], &evs[i]->ev, evs[i]->sha, false));
        must(col_index_put_packed(b, keys[i], ver, n,
                                  evs[i]->ev.kind == CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_REMOVAL,
                                  evs[i]->sha, false));
        free(ver);
        col_index_entry x, y;
        assert_true(col_index_lookup(a, keys[i], &x));
        assert_true(col_index_lookup(b, keys[i], &y));
        assert_int_equal(x.version_len, y.version_len);
        assert_memory_equal(x.version, y.version, x.version_len);
        assert_string_equal(x.content_sha256, y.content_sha256);
        assert_int_equal(x.removed, y.removed);
        assert_int_equal(x.held, y.held);
        assert_int_equal(x.has_certificates, y.has_certificates);
    }
    /* and what put refuses, put_packed refuses */
    static uint8_t big[COL_INDEX_MAX_VERSION_BYTES + 1];
    cs_err *err = col_index_put_packed(b, "src1/o3", big, sizeof big, false, e.sha, false);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "version is"));
    cs_err_free(err);
    err = col_index_put_packed(b, "src1/o3", NULL, 0, false, e.sha, false);
    assert_non_null(err);
    cs_err_free(err);
    err = col_index_put_packed(b, "src1/o3", big, 1, false, "xyz", false);
    assert_non_null(err);
    cs_err_free(err);
    assert_false(col_index_lookup(b, "src1/o3", NULL));
    col_index_free(a);
    col_index_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verdicts),
        cmocka_unit_test(apply_records),
        cmocka_unit_test(sweep),
        cmocka_unit_test(put_packed_equals_put),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
