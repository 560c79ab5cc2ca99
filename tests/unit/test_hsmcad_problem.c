/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_problem.c -- RFC 9457 bodies (src/hsmcad/problem.c): hostile details (control
 * bytes, invalid UTF-8, over-long) are bounded and sanitised, then every error code of the table
 * renders a problem whose type, status, title and code agree with error.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "problem.h"

static void
hostile_detail_is_bounded(void **state)
{
    char big[2000];
    json_t *o;
    const char *d;

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[5] = '\n';
    big[6] = '\x1b';
    big[7] = (char)0xff; /* invalid UTF-8 */
    big[8] = (char)0xc3; /* truncated sequence */
    o = hsmcad_problem_object(HSMCA_E_HTTP_BAD_REQUEST, big, "urn:hsmca:request:1");
    assert_non_null(o);
    d = json_string_value(json_object_get(o, "detail"));
    assert_non_null(d);
    assert_int_equal(strlen(d), HSMCAD_PROBLEM_DETAIL_MAX);
    assert_memory_equal(d, "xxxxx????x", 10);
    assert_string_equal(json_string_value(json_object_get(o, "instance")), "urn:hsmca:request:1");
    json_decref(o);
    /* a multi-byte character is never cut in half */
    memset(big, 'y', sizeof(big));
    memcpy(big + HSMCAD_PROBLEM_DETAIL_MAX - 1, "\xc3\xa9", 2);
    big[HSMCAD_PROBLEM_DETAIL_MAX + 5] = '\0';
    o = hsmcad_problem_object(HSMCA_E_HTTP_BAD_REQUEST, big, NULL);
    d = json_string_value(json_object_get(o, "detail"));
    assert_int_equal(strlen(d), HSMCAD_PROBLEM_DETAIL_MAX - 1);
    assert_null(json_object_get(o, "instance"));
    json_decref(o);
}

static void
every_code_renders(void **state)
{
    unsigned i;

    (void)state;
    for (i = 0; i < hsmca_err_count(); i++) {
        enum hsmca_err e = hsmca_err_at(i);
        size_t len = 0;
        char *s = hsmcad_problem_json(e, NULL, NULL, &len);
        json_t *o;
        char type[128];

        assert_non_null(s);
        assert_int_equal(strlen(s), len);
        o = json_loads(s, 0, NULL);
        assert_non_null(o);
        snprintf(type, sizeof(type), "urn:hsmca:problem:%s", hsmca_err_code(e));
        assert_string_equal(json_string_value(json_object_get(o, "type")), type);
        assert_string_equal(json_string_value(json_object_get(o, "code")), hsmca_err_code(e));
        assert_string_equal(json_string_value(json_object_get(o, "title")), hsmca_err_title(e));
        assert_int_equal(json_integer_value(json_object_get(o, "status")),
                         hsmca_err_http_status(e));
        assert_null(json_object_get(o, "detail"));
        json_decref(o);
        free(s);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_detail_is_bounded),
        cmocka_unit_test(every_code_renders),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
