/* SPDX-License-Identifier: Apache-2.0
 *
 * test_secret.c -- secrets on the secure heap: limits, NUL terminator, wipe on clear.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "hsmca/secret.h"

static void
secret_limits_and_lifecycle(void **state)
{
    struct hsmca_secret s = {NULL, 0};

    (void)state;
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK); /* idempotent */
    assert_int_equal(hsmca_secret_set(NULL, "x", 1), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_secret_set(&s, NULL, 65537), HSMCA_E_TOO_LARGE);
    assert_null(s.p);
    assert_int_equal(hsmca_secret_set(&s, NULL, 65536), HSMCA_E_NOMEM); /* > 64 KiB heap */
    assert_int_equal(hsmca_secret_set(&s, "1234", 4), HSMCA_OK);
    assert_true(CRYPTO_secure_allocated(s.p));
    assert_memory_equal(s.p, "1234", 5); /* NUL-terminated */
    assert_int_equal(s.len, 4);
    hsmca_secret_clear(&s);
    assert_null(s.p);
    assert_int_equal(s.len, 0);
    hsmca_secret_clear(&s); /* clearing twice is fine */
    hsmca_secret_clear(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(secret_limits_and_lifecycle),
    };

    return cmocka_run_group_tests_name("secret", tests, NULL, NULL);
}
