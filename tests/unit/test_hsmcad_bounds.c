/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_bounds.c -- policies/bounds.json: the shipped file and the defaults agree, each cap
 * is read, and a file with an unknown key, a missing version or a cap out of bounds is refused
 * with a reason naming it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bounds.h"

static void
shipped_file_is_the_defaults(void **state)
{
    struct hsmcad_bounds b, def;
    char path[1024], why[256] = "";
    const char *src = getenv("HSMCA_SOURCE_DIR");

    (void)state;
    assert_non_null(src);
    snprintf(path, sizeof(path), "%s/policies/bounds.json", src);
    assert_int_equal(hsmcad_bounds_load(path, &b, why, sizeof(why)), HSMCA_OK);
    hsmcad_bounds_defaults(&def);
    assert_int_equal(b.window_max_s, def.window_max_s);
    assert_int_equal(b.request_ttl_max_s, def.request_ttl_max_s);
    assert_int_equal(def.window_max_s, 90 * 86400);
}

static void
caps_are_read(void **state)
{
    struct hsmcad_bounds b;
    char why[256] = "";
    const char *t =
        "{\"version\": 1, \"ca.activate\": {\"window_max_s\": 3600}, \"quorum_request\": "
        "{\"ttl_max_s\": 600}}";

    (void)state;
    assert_int_equal(hsmcad_bounds_parse(t, strlen(t), &b, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(b.window_max_s, 3600);
    assert_int_equal(b.request_ttl_max_s, 600);
    t = "{\"version\": 1}";
    assert_int_equal(hsmcad_bounds_parse(t, strlen(t), &b, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(b.window_max_s, HSMCAD_WINDOW_MAX_S_DEFAULT);
}

static void
bad_files_are_refused_with_a_reason(void **state)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"{\"version\": 1, \"ca.deactivate\": {}}", "unknown key"},
        {"{\"ca.activate\": {\"window_max_s\": 3600}}", "version"},
        {"{\"version\": 1, \"ca.activate\": {\"window_max_s\": 315360001}}", "window_max_s"},
        {"{\"version\": 1, \"quorum_request\": {\"ttl_max_s\": 86401}}", "ttl_max_s"},
        {"{\"version\": 1, \"quorum_request\": {\"ttl_max_s\": 600, \"x\": 1}}", "quorum_request"},
        {"[1]", "object"},
    };
    struct hsmcad_bounds b;
    char why[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(
            hsmcad_bounds_parse(bad[i].text, strlen(bad[i].text), &b, why, sizeof(why)),
            HSMCA_E_CONFIG_INVALID);
        assert_non_null(strstr(why, bad[i].why));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_file_is_the_defaults),
        cmocka_unit_test(caps_are_read),
        cmocka_unit_test(bad_files_are_refused_with_a_reason),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
