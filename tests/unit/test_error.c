/* SPDX-License-Identifier: Apache-2.0
 *
 * test_error.c -- the error table: names unique and kebab-case, statuses real, lookups total.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "hsmca/error.h"

static void
unknown_codes_have_safe_answers(void **state)
{
    enum hsmca_err e;

    (void)state;
    assert_string_equal(hsmca_err_code((enum hsmca_err)99999), "unknown-error");
    assert_string_equal(hsmca_err_title((enum hsmca_err)99999), "Unknown error");
    assert_int_equal(hsmca_err_http_status((enum hsmca_err)99999), 500);
    assert_int_equal(hsmca_err_from_code("no-such-code", &e), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_err_from_code(NULL, &e), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_err_at(hsmca_err_count()), HSMCA_E_INVALID_ARG);
}

static void
every_row_is_well_formed_and_unique(void **state)
{
    unsigned i, j, n = hsmca_err_count();

    (void)state;
    assert_true(n > 30);
    for (i = 0; i < n; i++) {
        enum hsmca_err e = hsmca_err_at(i), back;
        const char *name = hsmca_err_code(e);
        size_t k;

        assert_true(strlen(name) > 1);
        for (k = 0; name[k] != '\0'; k++)
            assert_true((name[k] >= 'a' && name[k] <= 'z') || (name[k] >= '0' && name[k] <= '9') ||
                        (name[k] == '-' && k > 0 && name[k + 1] != '\0'));
        assert_true(hsmca_err_http_status(e) >= 200 && hsmca_err_http_status(e) <= 599);
        assert_true(strlen(hsmca_err_title(e)) > 3);
        assert_int_equal(hsmca_err_from_code(name, &back), HSMCA_OK);
        assert_int_equal(back, e);
        for (j = i + 1; j < n; j++) {
            assert_int_not_equal(hsmca_err_at(j), e);
            assert_string_not_equal(hsmca_err_code(hsmca_err_at(j)), name);
        }
    }
    assert_string_equal(hsmca_err_code(HSMCA_E_PIN_INCORRECT), "pin-incorrect");
    assert_int_equal(hsmca_err_http_status(HSMCA_OK), 200);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unknown_codes_have_safe_answers),
        cmocka_unit_test(every_row_is_well_formed_and_unique),
    };

    return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
