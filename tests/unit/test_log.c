/* SPDX-License-Identifier: Apache-2.0
 *
 * test_log.c -- escaping of untrusted values: controls, CR/LF and quotes escaped, cut to 64 bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "hsmca/log.h"

static void
escape_neutralises_hostile_bytes(void **state)
{
    char out[300], big[200];

    (void)state;
    hsmca_log_escape("a\r\nb=\"c\\", 8, out, sizeof(out));
    assert_string_equal(out, "a\\x0d\\x0ab\\x3d\\x22c\\x5c");
    memset(big, 'x', sizeof(big));
    hsmca_log_escape(big, sizeof(big), out, sizeof(out));
    assert_int_equal(strlen(out), 64);
    hsmca_log_escape("\x01\x02", 2, out, 6); /* room for one escape only */
    assert_string_equal(out, "\\x01");
    hsmca_log_escape(NULL, 10, out, sizeof(out));
    assert_string_equal(out, "");
    hsmca_log(HSMCA_LOG_DEBUG, "test", "quiet", "k=%d", 1); /* below the level: no output */
    hsmca_log(HSMCA_LOG_INFO, "test", "event", "k=%s", out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escape_neutralises_hostile_bytes),
    };

    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
