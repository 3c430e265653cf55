#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cs_err.h"

static void new_error_keeps_code_flags_and_message(void **state)
{
    (void)state;
    cs_err *err = cs_err_new(CS_ERR_CONFIG, CS_ERR_F_RETRIABLE, "key %s: bad value %d", "port", 70000);
    assert_non_null(err);
    assert_int_equal(cs_err_code_of(err), CS_ERR_CONFIG);
    assert_string_equal(cs_err_message(err), "key port: bad value 70000");
    assert_true(cs_err_is_retriable(err));
    assert_false(cs_err_is_fatal(err));
    assert_false(cs_err_txn_requires_abort(err));
    assert_string_equal(cs_err_code_name(cs_err_code_of(err)), "config");
    cs_err_free(err);
}

static void wrap_prefixes_context_and_passes_null_through(void **state)
{
    (void)state;
    assert_null(cs_err_wrap(NULL, "never %s", "used"));
    cs_err *err = cs_err_wrap(cs_err_new(CS_ERR_IO, CS_ERR_F_FATAL, "no such file"), "reading %s", "/x.yaml");
    assert_string_equal(cs_err_message(err), "reading /x.yaml: no such file");
    assert_true(cs_err_is_fatal(err));
    cs_err_free(err);
}

static void long_messages_are_bounded(void **state)
{
    (void)state;
    char big[10000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cs_err *err = cs_err_new(CS_ERR_INVALID_INPUT, 0, "%s", big);
    assert_true(strlen(cs_err_message(err)) < 4096);
    err = cs_err_wrap(err, "%s", big);
    assert_true(strlen(cs_err_message(err)) < 4096);
    cs_err_free(err);
}

static void null_is_success(void **state)
{
    (void)state;
    assert_string_equal(cs_err_message(NULL), "success");
    assert_false(cs_err_is_retriable(NULL));
    cs_err_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_error_keeps_code_flags_and_message),
        cmocka_unit_test(wrap_prefixes_context_and_passes_null_through),
        cmocka_unit_test(long_messages_are_bounded),
        cmocka_unit_test(null_is_success),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
