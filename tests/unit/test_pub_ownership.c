/*
 * pub_ownership: the multi-site step of one batch against an in-memory applied state (no Kafka).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certsync/v1/applied_state.pb-c.h"
#include "cs_event.h"
#include "pub_ownership.h"

/* An upsert of "<src>/<obj>" at version `v` with one userCertificate `content` (none when NULL). Caller frees
 * with certsync__v1__change_event__free_unpacked (it is decoded from its own encoding). */
static Certsync__V1__ChangeEvent *event(const char *obj, uint32_t v, const char *content, uint8_t **bytes,
                                        size_t *len)
{
    Certsync__V1__ChangeEvent ev = CERTSYNC__V1__CHANGE_EVENT__INIT;
    Certsync__V1__Identity id = CERTSYNC__V1__IDENTITY__INIT;
    Certsync__V1__Source src = CERTSYNC__V1__SOURCE__INIT;
    Certsync__V1__Version ver = CERTSYNC__V1__VERSION__INIT;
    Certsync__V1__AttributeStamp st = CERTSYNC__V1__ATTRIBUTE_STAMP__INIT;
    Certsync__V1__CertificateValue cv = CERTSYNC__V1__CERTIFICATE_VALUE__INIT;
    Certsync__V1__CertificateValue *cvp = &cv;
    id.object_id = (char *)(uintptr_t)obj;
    src.source_id = (char *)(uintptr_t) "src";
    ev.source = &src;
    st.has_version = 1;
    st.version = v;
    ver.user_certificate = &st;
    ev.has_kind = 1;
    ev.kind = CERTSYNC__V1__CHANGE_KIND__CHANGE_KIND_UPSERT;
    ev.identity = &id;
    ev.version = &ver;
    if (content) {
        cv.has_raw = 1;
        cv.raw.data = (uint8_t *)(uintptr_t)content;
        cv.raw.len = strlen(content);
        ev.user_certificate = &cvp;
        ev.n_user_certificate = 1;
    }
    assert_null(cs_event_encode(&ev, bytes, len));
    Certsync__V1__ChangeEvent *out = NULL;
    assert_null(cs_event_decode(*bytes, *len, &out));
    return out;
}

static void put(pub_state *s, const char *key, const Certsync__V1__AppliedStateRecord *rec)
{
    size_t n = protobuf_c_message_get_packed_size(&rec->base);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(&rec->base, buf);
    assert_null(pub_state_put(s, 0, key, strlen(key), buf, n));
    free(buf);
}

/* obj/<key> mapping to recipient `rid`, with `values` certificate values and (when `bytes`) its event. */
static void put_object(pub_state *s, const char *key, const char *rid, uint32_t values, const uint8_t *bytes,
                       size_t len)
{
    char skey[256];
    Certsync__V1__Recipient r = CERTSYNC__V1__RECIPIENT__INIT;
    r.external_directory_object_id = (char *)(uintptr_t)rid;
    r.recipient_type_details = (char *)(uintptr_t) "UserMailbox";
    Certsync__V1__ObjectState os = CERTSYNC__V1__OBJECT_STATE__INIT;
    os.object_key = (char *)(uintptr_t)key;
    os.recipient = &r;
    os.has_certificate_values = 1;
    os.certificate_values = values;
    if (bytes) {
        os.has_event = 1;
        os.event.data = (uint8_t *)(uintptr_t)bytes;
        os.event.len = len;
    }
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_OBJECT;
    rec.object = &os;
    snprintf(skey, sizeof skey, "obj/%s", key);
    put(s, skey, &rec);
}

/* rcpt/<rid> written by `owner` with `values` userCertificate values. */
static void put_recipient(pub_state *s, const char *rid, const char *owner, uint32_t values)
{
    char skey[256];
    Certsync__V1__Recipient r = CERTSYNC__V1__RECIPIENT__INIT;
    r.external_directory_object_id = (char *)(uintptr_t)rid;
    r.identity = (char *)(uintptr_t)rid;
    r.recipient_type_details = (char *)(uintptr_t) "UserMailbox";
    Certsync__V1__RecipientState rs = CERTSYNC__V1__RECIPIENT_STATE__INIT;
    rs.recipient = &r;
    rs.owner_object_key = (char *)(uintptr_t)owner;
    rs.has_user_certificate_count = 1;
    rs.user_certificate_count = values;
    Certsync__V1__AppliedStateRecord rec = CERTSYNC__V1__APPLIED_STATE_RECORD__INIT;
    rec.state_case = CERTSYNC__V1__APPLIED_STATE_RECORD__STATE_RECIPIENT;
    rec.recipient = &rs;
    snprintf(skey, sizeof skey, "rcpt/%s", rid);
    put(s, skey, &rec);
}

static pub_write write_of(const char *key, const Certsync__V1__ChangeEvent *ev)
{
    pub_write w = {.object_key = key, .event = ev, .partition = 0, .offset = 1, .attempt = 1};
    w.user_certificate = ev->n_user_certificate ? &ev->user_certificate[0]->raw : NULL;
    w.n_user_certificate = ev->n_user_certificate;
    return w;
}

static pub_owner_rules *rules_ab(void)
{
    const char *prio[] = {"a", "b"};
    pub_owner_rules *r = NULL;
    assert_null(pub_owner_rules_new(prio, 2, &r));
    return r;
}

/* b/x changes while a/x (listed first, with certificates) owns dora: skipped, nothing extra. */
static void non_owner_is_skipped(void **state)
{
    (void)state;
    pub_state *s = NULL;
    pub_owner_rules *r = rules_ab();
    uint8_t *ab = NULL, *bb = NULL;
    size_t al = 0, bl = 0;
    Certsync__V1__ChangeEvent *a = event("x", 1, "a1", &ab, &al), *b = event("x", 2, "b2", &bb, &bl);
    assert_null(pub_state_new(&s));
    put_object(s, "a/x", "dora", 1, ab, al);
    put_recipient(s, "dora", "a/x", 1);
    pub_write w = write_of("b/x", b);
    pub_apply_outcome res = {0};
    snprintf(res.recipient_id, sizeof res.recipient_id, "dora");
    pub_ownership_in in = {.state = s, .rules = r, .now = 0, .writes = &w, .n = 1, .resolved = &res};
    pub_ownership *o = NULL;
    assert_null(pub_ownership_plan(&in, &o));
    assert_true(pub_ownership_skipped(o, 0));
    assert_non_null(strstr(pub_ownership_detail(o, 0), "a/x"));
    assert_string_equal(pub_ownership_recipient(o, 0)->external_directory_object_id, "dora");
    assert_int_equal(pub_ownership_extra_count(o), 0);
    pub_ownership_free(o);

    /* Without sources.priority both rank equal; these stamps carry no times, so the key order decides (a/x):
     * still skipped, deterministically. */
    in.rules = NULL;
    assert_null(pub_ownership_plan(&in, &o));
    assert_true(pub_ownership_skipped(o, 0));
    pub_ownership_free(o);
    certsync__v1__change_event__free_unpacked(a, NULL);
    certsync__v1__change_event__free_unpacked(b, NULL);
    free(ab);
    free(bb);
    pub_state_free(s);
    pub_owner_rules_free(r);
}

/* a/x loses its certificates: b/x (kept event) takes dora over with its own values; without a kept event
 * there is nothing to write. */
static void owner_leaves_hands_over(void **state)
{
    (void)state;
    pub_state *s = NULL;
    pub_owner_rules *r = rules_ab();
    uint8_t *ab = NULL, *bb = NULL;
    size_t al = 0, bl = 0;
    Certsync__V1__ChangeEvent *a = event("x", 3, NULL, &ab, &al), *b = event("x", 2, "b2", &bb, &bl);
    assert_null(pub_state_new(&s));
    put_object(s, "a/x", "dora", 1, NULL, 0);
    put_object(s, "b/x", "dora", 1, bb, bl);
    put_recipient(s, "dora", "a/x", 1);
    pub_write w = write_of("a/x", a);
    pub_apply_outcome res = {0};
    snprintf(res.recipient_id, sizeof res.recipient_id, "dora");
    pub_ownership_in in = {.state = s, .rules = r, .now = 0, .writes = &w, .n = 1, .resolved = &res};
    pub_ownership *o = NULL;
    assert_null(pub_ownership_plan(&in, &o));
    assert_true(pub_ownership_skipped(o, 0)); /* a's empty lists must not clear what b now owns */
    assert_int_equal(pub_ownership_extra_count(o), 1);
    const pub_write *x = pub_ownership_extra(o, 0);
    assert_string_equal(x->object_key, "b/x");
    assert_false(x->clear);
    assert_int_equal(x->n_user_certificate, 1);
    assert_memory_equal(x->user_certificate[0].data, "b2", 2);
    assert_string_equal(x->recipient->external_directory_object_id, "dora");
    assert_non_null(strstr(pub_ownership_extra_detail(o, 0), "handover from a/x"));
    pub_ownership_free(o);

    /* b/x's state keeps no event: no handover can be written. */
    put_object(s, "b/x", "dora", 1, NULL, 0);
    assert_null(pub_ownership_plan(&in, &o));
    assert_int_equal(pub_ownership_extra_count(o), 0);
    pub_ownership_free(o);
    certsync__v1__change_event__free_unpacked(a, NULL);
    certsync__v1__change_event__free_unpacked(b, NULL);
    free(ab);
    free(bb);
    pub_state_free(s);
    pub_owner_rules_free(r);
}

/* remap_only: src/o moved from alice to bob; alice (written by it) is cleared once, bob is left alone; an
 * unresolved (not written) write moves nothing. */
static void remap_clears_old(void **state)
{
    (void)state;
    pub_state *s = NULL;
    uint8_t *eb = NULL;
    size_t el = 0;
    Certsync__V1__ChangeEvent *e = event("o", 2, "c2", &eb, &el);
    assert_null(pub_state_new(&s));
    put_object(s, "src/o", "alice", 1, eb, el);
    put_recipient(s, "alice", "src/o", 1);
    pub_write w = write_of("src/o", e);
    pub_apply_outcome res = {0};
    snprintf(res.recipient_id, sizeof res.recipient_id, "bob");
    pub_ownership_in in = {.state = s, .writes = &w, .n = 1, .resolved = &res, .remap_only = true};
    pub_ownership *o = NULL;
    assert_null(pub_ownership_plan(&in, &o));
    assert_false(pub_ownership_skipped(o, 0));
    assert_int_equal(pub_ownership_extra_count(o), 1);
    const pub_write *x = pub_ownership_extra(o, 0);
    assert_true(x->clear);
    assert_string_equal(x->recipient->external_directory_object_id, "alice");
    assert_string_equal(x->object_key, "src/o");
    pub_ownership_free(o);

    /* Still on alice: nothing to settle. */
    snprintf(res.recipient_id, sizeof res.recipient_id, "alice");
    assert_null(pub_ownership_plan(&in, &o));
    assert_int_equal(pub_ownership_extra_count(o), 0);
    pub_ownership_free(o);
    /* Not written (e.g. parked): no recipient, nothing moves. */
    res.recipient_id[0] = '\0';
    assert_null(pub_ownership_plan(&in, &o));
    assert_int_equal(pub_ownership_extra_count(o), 0);
    pub_ownership_free(o);
    certsync__v1__change_event__free_unpacked(e, NULL);
    free(eb);
    pub_state_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(non_owner_is_skipped),
        cmocka_unit_test(owner_leaves_hands_over),
        cmocka_unit_test(remap_clears_old),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
