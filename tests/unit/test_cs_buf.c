#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "cs_buf.h"

static void appends_and_formats(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 1024);
    assert_string_equal(cs_buf_str(&b), "");
    assert_true(cs_buf_add_str(&b, "a"));
    assert_true(cs_buf_printf(&b, "-%d-", 42));
    assert_string_equal(cs_buf_str(&b), "a-42-");
    assert_int_equal(cs_buf_len(&b), 5);
    cs_buf_reset(&b);
    assert_string_equal(cs_buf_str(&b), "");
    cs_buf_free(&b);
}

static void refuses_to_grow_past_max_and_stays_intact(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 8);
    assert_true(cs_buf_add_str(&b, "12345678"));
    assert_false(cs_buf_add_str(&b, "9"));
    assert_false(cs_buf_printf(&b, "%s", "x"));
    assert_string_equal(cs_buf_str(&b), "12345678");
    cs_buf_free(&b);
}

static void json_string_escapes_everything_needed(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 1024);
    assert_true(cs_buf_add_json_string(&b, "a\"b\\c\n\x01\x7f"));
    assert_string_equal(cs_buf_str(&b), "\"a\\\"b\\\\c\\n\\u0001\\u007f\"");
    cs_buf_free(&b);
}

static void json_string_is_all_or_nothing(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 6);
    assert_true(cs_buf_add_str(&b, "ab"));
    assert_false(cs_buf_add_json_string(&b, "toolong"));
    assert_string_equal(cs_buf_str(&b), "ab");
    cs_buf_free(&b);
}

static void take_hands_over_ownership(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b, 100);
    cs_buf_add_str(&b, "mine");
    char *s = cs_buf_take(&b);
    assert_string_equal(s, "mine");
    assert_int_equal(cs_buf_len(&b), 0);
    free(s);
    cs_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appends_and_formats),
        cmocka_unit_test(refuses_to_grow_past_max_and_stays_intact),
        cmocka_unit_test(json_string_escapes_everything_needed),
        cmocka_unit_test(json_string_is_all_or_nothing),
        cmocka_unit_test(take_hands_over_ownership),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
