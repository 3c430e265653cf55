/*
 * libFuzzer target for cs_cert: every input is parsed as both attributes and
 * every field of the summary is read, so ASan sees any bad pointer or length.
 * Built as a real fuzzer with -DCS_FUZZ=ON and clang; always built into
 * fuzz_cs_cert_replay (fuzz_replay_main.c), a unit test that replays the
 * corpus and mutations of it.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cs_cert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every byte of a string so a dangling or unterminated one is caught. */
static size_t touch(const char *s)
{
    return s ? strlen(s) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const cs_cert_attr attrs[] = {CS_CERT_ATTR_USER_CERTIFICATE, CS_CERT_ATTR_USER_SMIME_CERTIFICATE};
    for (size_t a = 0; a < 2; a++) {
        cs_cert_value *v = NULL;
        cs_err *err = cs_cert_value_parse(attrs[a], data, size, 1735689600, &v);
        if (err) { /* only out of memory may fail: not a parser bug, but say so */
            cs_err_free(err);
            continue;
        }
        size_t sum = touch(cs_cert_value_reason(v)) + touch(cs_cert_format_name(cs_cert_value_format(v)));
        cs_cert_problems all = cs_cert_value_verdict(v);
        for (size_t i = 0; i < cs_cert_value_cert_count(v); i++) {
            const cs_cert_info *c = cs_cert_value_cert(v, i);
            sum += touch(c->sha256_hex) + touch(c->subject) + touch(c->issuer) + touch(c->serial_hex) +
                   touch(c->reason) + touch(c->ec_curve) + touch(cs_cert_key_alg_name(c->key_alg));
            for (size_t k = 0; k < c->n_emails; k++)
                sum += touch(c->emails[k]);
            /* A certificate's DER range must lie inside the value. */
            if (c->der_offset > size || c->der_len > size - c->der_offset)
                __builtin_trap();
            all |= c->problems;
        }
        int u = cs_cert_value_user_index(v);
        if (u >= (int)cs_cert_value_cert_count(v))
            __builtin_trap();
        /* Certificates but no user certificate: none was readable, which must not look usable. */
        if (u < 0 && cs_cert_value_cert_count(v) > 0 && cs_cert_value_verdict(v) == 0)
            __builtin_trap();
        if (all >> CS_CERT_PROBLEM_COUNT)
            __builtin_trap();
        (void)sum;
        cs_cert_value_free(v);
    }
    return 0;
}
