/*
 * libFuzzer target for the collector's parsers of untrusted AD binary attributes: replPropertyMetaData
 * (col_replmeta_find, col_stamp_compare) and objectSid (col_sid_format). The first input byte chooses the
 * parser (even: replPropertyMetaData, odd: SID), the rest is the value. Every stamp found is read in full
 * and the SID string must be NUL-terminated inside its buffer, so ASan sees any bad pointer or length.
 * Built as a real fuzzer with -DCS_FUZZ=ON and clang; always built into fuzz_col_replmeta_replay
 * (fuzz_col_replay_main.c), a unit test that replays seeds and mutations of them.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "col_object.h"
#include "col_replmeta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t attids[] = {COL_ATTID_USER_CERTIFICATE, COL_ATTID_USER_SMIME_CERTIFICATE,
                                      COL_ATTID_NAME, COL_ATTID_IS_DELETED, 0xffffffffu};
    const unsigned char *v = data + 1;
    size_t n = size > 0 ? size - 1 : 0;
    cs_err *err;

    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        col_stamp prev = {0};
        for (size_t i = 0; i < sizeof attids / sizeof attids[0]; i++) {
            col_stamp s;
            err = col_replmeta_find(v, n, "CN=fuzz", attids[i], &s);
            if (err != NULL) {
                /* An error must leave an absent stamp and carry a message. */
                if (s.present || strlen(cs_err_message(err)) == 0)
                    __builtin_trap();
                cs_err_free(err);
                continue;
            }
            /* Comparison must be antisymmetric and reflexive. */
            if (col_stamp_compare(&s, &s) != 0 ||
                col_stamp_compare(&s, &prev) != -col_stamp_compare(&prev, &s))
                __builtin_trap();
            prev = s;
        }
    } else {
        char out[COL_SID_STR_LEN];
        err = col_sid_format(v, n, "CN=fuzz", out);
        if (err != NULL) {
            cs_err_free(err);
        } else if (memchr(out, '\0', sizeof out) == NULL || strncmp(out, "S-1-", 4) != 0) {
            __builtin_trap();
        }
    }
    return 0;
}
