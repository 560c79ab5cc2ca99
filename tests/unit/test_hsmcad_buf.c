/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_buf.c -- the daemon's text buffer: appends grow it past its first allocation, the
 * text stays NUL-terminated, JSON strings are escaped as jansson escapes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "buf.h"

static void
appends_grow_and_stay_terminated(void **state)
{
    struct hsmcad_buf b = {NULL, 0, 0, 0};
    size_t i;

    (void)state;
    hsmcad_buf_put(&b, "", 0);
    assert_non_null(b.p);
    assert_string_equal(b.p, "");
    for (i = 0; i < 5000; i++)
        hsmcad_buf_printf(&b, "%zu,", i % 10);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > 10000);
    assert_int_equal(strlen(b.p), b.len);
    assert_memory_equal(b.p + 9990, "5,6,7,8,9,", 10);
    hsmcad_buf_str(&b, "end");
    assert_string_equal(b.p + 10000, "end");
    assert_int_equal(b.err, 0);
    free(b.p);
    /* after a failure every call is a no-op */
    memset(&b, 0, sizeof(b));
    b.err = 1;
    hsmcad_buf_str(&b, "x");
    hsmcad_buf_printf(&b, "%d", 1);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

static void
json_strings_match_jansson(void **state)
{
    static const char *const cases[] = {
        "",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "quote \" backslash \\ tab \t cr \r bs \b ff \f bell \x07 unit \x1f",
        "caf\xc3\xa9 / slash",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hsmcad_buf b = {NULL, 0, 0, 0};
        json_t *j = json_string(cases[i]);
        char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);

        hsmcad_buf_json_str(&b, cases[i]);
        assert_non_null(want);
        assert_string_equal(b.p, want);
        free(want);
        json_decref(j);
        free(b.p);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appends_grow_and_stay_terminated),
        cmocka_unit_test(json_strings_match_jansson),
    };

    return cmocka_run_group_tests_name("hsmcad_buf", tests, NULL, NULL);
}
