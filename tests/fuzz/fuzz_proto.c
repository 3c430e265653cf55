/*
 * libFuzzer target for the protobuf records certsync reads back from Kafka, where any producer with write
 * access can put bytes. The first input byte chooses the record, the rest is the record value:
 *   0  change event (events topic): cs_event_decode, then everything the publisher does with a decoded
 *      event: content hash, the decision against nothing applied and against the event's own version
 *      (pub_decide), and every accessor of the decision;
 *   1  applied-state record (state topic): pub_state_put under an obj/ and an rcpt/ key, then the gate's
 *      view of the object, then a tombstone and a partition drop;
 *   2  collector checkpoint (checkpoint topic): col_checkpoint_decode and the deep copy;
 *   3  dead letter (dead-letter topic): its original event decoded as the redrive/latest commands do;
 *   4  two versions (the index and the pipeline compare stored versions): cs_version_compare must be
 *      antisymmetric and reflexive.
 * Built as a real fuzzer with -DCS_FUZZ=ON and clang; always built into fuzz_proto_replay
 * (fuzz_corpus_main.c), a unit test replaying tests/fuzz/corpus/proto.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "certsync/v1/dead_letter.pb-c.h"
#include "col_checkpoint.h"
#include "cs_event.h"
#include "cs_version.h"
#include "pub_decide.h"
#include "pub_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1735689600

static size_t touch(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

static void decision(const Certsync__V1__ChangeEvent *ev, const pub_applied_view *view)
{
    pub_decision *d = NULL;
    cs_err *err = pub_decide(ev, view, NOW, &d);
    if (err != NULL) {
        if (touch(cs_err_message(err)) == 0)
            __builtin_trap();
        cs_err_free(err);
        return;
    }
    size_t sum = touch(pub_decision_kind_name(pub_decision_get_kind(d))) + touch(pub_decision_sha256(d)) +
                 touch(pub_decision_detail(d)) + touch(cs_version_order_name(pub_decision_order(d)));
    static const cs_cert_attr attrs[] = {CS_CERT_ATTR_USER_CERTIFICATE, CS_CERT_ATTR_USER_SMIME_CERTIFICATE};
    for (size_t a = 0; a < 2; a++) {
        size_t n = 0;
        const ProtobufCBinaryData *v = pub_decision_values(d, attrs[a], &n);
        for (size_t i = 0; i < n; i++)
            if (v[i].len > 0 && v[i].data == NULL)
                __builtin_trap();
    }
    for (size_t i = 0; i < pub_decision_refusal_count(d); i++)
        sum += touch(pub_decision_refusal_message(d, i));
    (void)sum;
    pub_decision_free(d);
}

static void change_event(const uint8_t *v, size_t n)
{
    Certsync__V1__ChangeEvent *ev = NULL;
    char sha[CS_SHA256_HEX_LEN];
    cs_err *err = cs_event_decode(v, n, &ev);
    if (err != NULL) {
        if (ev != NULL || touch(cs_err_message(err)) == 0)
            __builtin_trap();
        cs_err_free(err);
        return;
    }
    err = cs_event_content_sha256(ev, sha);
    if (err == NULL && strlen(sha) != CS_SHA256_HEX_LEN - 1)
        __builtin_trap();
    cs_err_free(err);
    decision(ev, NULL);
    pub_applied_view view = {.version = ev->version, .written_sha256 = "00"};
    decision(ev, &view);
    certsync__v1__change_event__free_unpacked(ev, NULL);
}

static void applied_state(const uint8_t *v, size_t n)
{
    static const char *const keys[] = {PUB_STATE_OBJ_PREFIX "src/obj", PUB_STATE_RCPT_PREFIX "rcpt-id"};
    pub_state *s = NULL;
    cs_err *err = pub_state_new(&s);
    if (err != NULL) {
        cs_err_free(err);
        return;
    }
    for (size_t k = 0; k < 2; k++) {
        err = pub_state_put(s, (int32_t)k, keys[k], strlen(keys[k]), v, n);
        cs_err_free(err);
    }
    pub_applied_view view;
    if (pub_state_view(s, "src/obj", &view) && view.written_sha256 != NULL)
        (void)touch(view.written_sha256);
    const Certsync__V1__ObjectState *o = pub_state_object(s, "src/obj");
    if (o != NULL)
        (void)touch(pub_state_recipient_id(o->recipient));
    cs_err_free(pub_state_put(s, 0, keys[0], strlen(keys[0]), NULL, 0));
    pub_state_drop_partition(s, 1);
    if (pub_state_count(s) != 0)
        __builtin_trap();
    pub_state_free(s);
}

static void checkpoint(const uint8_t *v, size_t n)
{
    Certsync__V1__CollectorCheckpoint *cp = NULL, *copy = NULL;
    cs_err *err = col_checkpoint_decode(v, n, &cp);
    if (err != NULL) {
        cs_err_free(err);
        return;
    }
    err = col_checkpoint_copy(cp, &copy);
    if (err == NULL && strcmp(copy->source_id, cp->source_id) != 0)
        __builtin_trap();
    cs_err_free(err);
    col_checkpoint_free(copy);
    col_checkpoint_free(cp);
}

static void dead_letter(const uint8_t *v, size_t n)
{
    Certsync__V1__DeadLetter *dl = certsync__v1__dead_letter__unpack(NULL, n, v);
    if (dl == NULL)
        return;
    if (dl->has_original_value)
        change_event(dl->original_value.data, dl->original_value.len);
    certsync__v1__dead_letter__free_unpacked(dl, NULL);
}

static void versions(const uint8_t *v, size_t n)
{
    size_t half = n > 0 ? v[0] : 0;
    if (half > n - (n > 0 ? 1 : 0))
        half = n > 0 ? n - 1 : 0;
    const uint8_t *a = n > 0 ? v + 1 : v;
    Certsync__V1__Version *va = certsync__v1__version__unpack(NULL, half, a);
    Certsync__V1__Version *vb = certsync__v1__version__unpack(NULL, n > 0 ? n - 1 - half : 0, a + half);
    if (va != NULL && vb != NULL) {
        cs_version_order ab = cs_version_compare(va, vb), ba = cs_version_compare(vb, va);
        (void)touch(cs_version_order_name(ab));
        if (cs_version_compare(va, va) != CS_VERSION_EQUAL)
            __builtin_trap();
        if ((ab == CS_VERSION_NEWER) != (ba == CS_VERSION_OLDER) ||
            (ab == CS_VERSION_EQUAL) != (ba == CS_VERSION_EQUAL))
            __builtin_trap();
    }
    if (va != NULL)
        certsync__v1__version__free_unpacked(va, NULL);
    if (vb != NULL)
        certsync__v1__version__free_unpacked(vb, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *v = data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0:
        change_event(v, n);
        break;
    case 1:
        applied_state(v, n);
        break;
    case 2:
        checkpoint(v, n);
        break;
    case 3:
        dead_letter(v, n);
        break;
    default:
        versions(v, n);
        break;
    }
    return 0;
}
