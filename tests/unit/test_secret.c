/* SPDX-License-Identifier: Apache-2.0
 *
 * test_secret.c -- secrets on the secure heap: limits, NUL terminator, wipe on clear.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "hsmca/secret.h"

#include "fixture.h"

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

static void
write_pin(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* A PIN file: first line only, owner-only regular file, PIN length limits. */
static void
pin_file_rules(void **state)
{
    char dir[512], path[600], link[600];
    struct hsmca_secret s = {NULL, 0};

    (void)state;
    assert_int_equal(fx_tmpdir("secret", dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/pin", dir);
    snprintf(link, sizeof(link), "%s/pin-link", dir);
    assert_int_equal(hsmca_secret_read_pin_file(path, &s), HSMCA_E_IO); /* missing */
    write_pin(path, "user-pin-1234\r\nsecond line\n", 0600);
    assert_int_equal(hsmca_secret_read_pin_file(path, &s), HSMCA_OK);
    assert_int_equal(s.len, 13);
    assert_memory_equal(s.p, "user-pin-1234", 14);
    hsmca_secret_clear(&s);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(hsmca_secret_read_pin_file(link, &s), HSMCA_E_IO); /* no symlinks */
    assert_int_equal(hsmca_secret_read_pin_file(dir, &s), HSMCA_E_IO);  /* not a file */
    write_pin(path, "user-pin-1234\n", 0640);
    assert_int_equal(hsmca_secret_read_pin_file(path, &s), HSMCA_E_PIN_FILE_MODE);
    write_pin(path, "abc\n", 0600);
    assert_int_equal(hsmca_secret_read_pin_file(path, &s), HSMCA_E_PIN_INVALID);
    assert_null(s.p);
    fx_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(secret_limits_and_lifecycle),
        cmocka_unit_test(pin_file_rules),
    };

    return cmocka_run_group_tests_name("secret", tests, NULL, NULL);
}
