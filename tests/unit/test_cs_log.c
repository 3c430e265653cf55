#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_log.h"

/* Runs `emit`, returns what it logged (caller frees). */
static char *capture(void (*emit)(void))
{
    FILE *f = tmpfile();
    assert_non_null(f);
    cs_log_set_output(f);
    emit();
    cs_log_set_output(NULL);
    long n = ftell(f);
    rewind(f);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return out;
}

static void emit_info(void)
{
    cs_log_info("test", "hello %s \"quoted\"", "world");
}

static void writes_one_json_line(void **state)
{
    (void)state;
    cs_log_set_level(CS_LOG_INFO);
    char *out = capture(emit_info);
    assert_int_equal(out[0], '{');
    assert_non_null(
        strstr(out, "\"level\":\"info\",\"facility\":\"test\",\"msg\":\"hello world \\\"quoted\\\"\"}\n"));
    assert_non_null(strstr(out, "\"ts\":\"20"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    free(out);
}

static void emit_debug(void)
{
    cs_log_debug("test", "invisible");
}

static void drops_lines_below_level(void **state)
{
    (void)state;
    cs_log_set_level(CS_LOG_INFO);
    char *out = capture(emit_debug);
    assert_string_equal(out, "");
    free(out);
}

static void emit_kv(void)
{
    cs_log_kv(CS_LOG_WARN, "cert", "unparseable value", "dn", "cn=a\nb", "attr", NULL, NULL);
}

static void writes_fields_and_null(void **state)
{
    (void)state;
    char *out = capture(emit_kv);
    assert_non_null(strstr(out, "\"msg\":\"unparseable value\",\"dn\":\"cn=a\\nb\",\"attr\":null}\n"));
    free(out);
}

static void emit_huge(void)
{
    static char big[100000];
    memset(big, 'x', sizeof(big) - 1);
    cs_log_kv(CS_LOG_ERROR, "test", "huge", "field", big, NULL);
}

static void huge_field_is_dropped_not_broken(void **state)
{
    (void)state;
    char *out = capture(emit_huge);
    assert_non_null(strstr(out, "\"msg\":\"huge\"}\n"));
    free(out);
}

static void parses_level_names(void **state)
{
    (void)state;
    cs_log_level l;
    assert_null(cs_log_level_parse("warn", &l));
    assert_int_equal(l, CS_LOG_WARN);
    cs_err *err = cs_log_level_parse("loud", &l);
    assert_non_null(err);
    assert_non_null(strstr(cs_err_message(err), "debug, info, warn or error"));
    cs_err_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writes_one_json_line),   cmocka_unit_test(drops_lines_below_level),
        cmocka_unit_test(writes_fields_and_null), cmocka_unit_test(huge_field_is_dropped_not_broken),
        cmocka_unit_test(parses_level_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
