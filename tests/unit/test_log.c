/* SPDX-License-Identifier: Apache-2.0
 *
 * test_log.c -- escaping of untrusted values: controls, CR/LF and quotes escaped, cut to 64 bytes;
 * journald priority prefixes exactly when JOURNAL_STREAM names stderr's device and inode, plain
 * timestamped lines otherwise (a mismatched, malformed or absent JOURNAL_STREAM).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

enum js { JS_MATCH, JS_OTHER_INODE, JS_DASH, JS_NO_DEVICE, JS_UNSET };

/* Run the log calls with stderr on a temporary file and JOURNAL_STREAM set as js says (naming the
 * file, another inode, malformed, unset); return the detection and the text written. */
static int
logged(enum js js, char *out, size_t out_size)
{
    char path[] = "/tmp/hsmca-test-log-XXXXXX", env[96];
    int fd = mkstemp(path), saved = dup(STDERR_FILENO), det;
    unsigned long long dev, ino;
    struct stat st;
    FILE *f;
    size_t n;

    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    dev = (unsigned long long)st.st_dev;
    ino = (unsigned long long)st.st_ino;
    fflush(stderr);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    if (js == JS_MATCH)
        snprintf(env, sizeof(env), "%llu:%llu", dev, ino);
    else if (js == JS_OTHER_INODE)
        snprintf(env, sizeof(env), "%llu:%llu", dev, ino + 1);
    else if (js == JS_DASH)
        snprintf(env, sizeof(env), "%llu-%llu", dev, ino);
    else
        snprintf(env, sizeof(env), ":%llu", ino);
    if (js == JS_UNSET)
        unsetenv("JOURNAL_STREAM");
    else
        setenv("JOURNAL_STREAM", env, 1);
    det = hsmca_log_detect_journal();
    hsmca_log(HSMCA_LOG_ERROR, "test", "broken", "k=%d", 1);
    hsmca_log(HSMCA_LOG_WARN, "test", "odd", "k=%d", 2);
    hsmca_log(HSMCA_LOG_INFO, "test", "fine", "k=%d", 3);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(out, 1, out_size - 1, f);
    out[n] = '\0';
    fclose(f);
    close(fd);
    unlink(path);
    unsetenv("JOURNAL_STREAM");
    return det;
}

static void
journald_prefixes_only_on_the_journal(void **state)
{
    char out[1024];

    (void)state;
    /* stderr is the stream JOURNAL_STREAM names: sd-daemon(3) priorities, no timestamp */
    assert_int_equal(logged(JS_MATCH, out, sizeof(out)), 1);
    assert_string_equal(out, "<3>error test broken k=1\n<4>warn test odd k=2\n"
                             "<6>info test fine k=3\n");
    /* another stream (stderr redirected by a service's child, say): plain lines */
    assert_int_equal(logged(JS_OTHER_INODE, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "Z error test broken k=1\n"));
    assert_null(strchr(out, '<'));
    assert_true(out[0] >= '1' && out[0] <= '9' && out[4] == '-'); /* a timestamp first */
    /* malformed or absent */
    assert_int_equal(logged(JS_DASH, out, sizeof(out)), 0);
    assert_null(strchr(out, '<'));
    assert_int_equal(logged(JS_NO_DEVICE, out, sizeof(out)), 0);
    assert_int_equal(logged(JS_UNSET, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "Z info test fine k=3\n"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escape_neutralises_hostile_bytes),
        cmocka_unit_test(journald_prefixes_only_on_the_journal),
    };

    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
