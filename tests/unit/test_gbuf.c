/* SPDX-License-Identifier: Apache-2.0
 *
 * test_gbuf.c -- the one growable buffer (hsmca/gbuf.h): arrays and bytes grow to their maximum
 * and never past it (a request over it is refused and leaves the contents as they were), errors
 * are sticky, the bytes stay NUL-terminated, reading a descriptor stops at the maximum.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hsmca/gbuf.h"

struct pair {
    int a, b;
};

static void
grow_array_to_its_maximum_and_no_further(void **state)
{
    struct pair *v = NULL;
    size_t cap = 0, i;

    (void)state;
    for (i = 0; i < 1000; i++) {
        assert_int_equal(hsmca_grow(&v, &cap, i + 1, sizeof(*v), 1000), HSMCA_OK);
        assert_true(cap >= i + 1 && cap <= 1000);
        v[i].a = (int)i;
        v[i].b = -(int)i;
    }
    assert_int_equal(cap, 1000);
    /* one more is refused and the array is untouched */
    assert_int_equal(hsmca_grow(&v, &cap, 1001, sizeof(*v), 1000), HSMCA_E_TOO_LARGE);
    assert_int_equal(cap, 1000);
    assert_int_equal(v[999].a, 999);
    assert_int_equal(v[0].b, 0);
    /* asking for less than held is a no-op */
    assert_int_equal(hsmca_grow(&v, &cap, 10, sizeof(*v), 1000), HSMCA_OK);
    assert_int_equal(cap, 1000);
    free(v);
    /* a size whose bytes overflow is refused, not wrapped */
    v = NULL;
    cap = 0;
    assert_int_equal(hsmca_grow(&v, &cap, SIZE_MAX / 4, 8, SIZE_MAX), HSMCA_E_TOO_LARGE);
    assert_null(v);
    assert_int_equal(cap, 0);
    assert_int_equal(hsmca_grow(NULL, &cap, 1, 1, 1), HSMCA_E_INVALID_ARG);
}

static void
bytes_up_to_max_then_sticky_refusal(void **state)
{
    static char fill[4998];
    struct hsmca_gbuf b;
    unsigned char *p;
    size_t len = 99, i;

    (void)state;
    memset(fill, 'a', sizeof(fill));
    hsmca_gbuf_init(&b, 10000);
    for (i = 0; i < 5000; i++)
        assert_int_equal(hsmca_gbuf_printf(&b, "%zu", i % 10), HSMCA_OK);
    assert_int_equal(hsmca_gbuf_str(&b, "xy"), HSMCA_OK);
    assert_int_equal(b.len, 5002);
    assert_int_equal(strlen((char *)b.p), b.len);
    assert_int_equal(hsmca_gbuf_put(&b, fill, sizeof(fill)), HSMCA_OK);
    assert_int_equal(b.len, 10000); /* exactly the maximum fits */
    assert_true(b.cap <= 10001);
    /* one byte more is refused, nothing is written, and the refusal sticks */
    assert_int_equal(hsmca_gbuf_put(&b, "z", 1), HSMCA_E_TOO_LARGE);
    assert_int_equal(b.len, 10000);
    assert_int_equal(b.p[10000], '\0');
    assert_int_equal(hsmca_gbuf_put(&b, "", 0), HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_gbuf_printf(&b, "%d", 1), HSMCA_E_TOO_LARGE);
    assert_null(hsmca_gbuf_take(&b, &len));
    assert_null(b.p);
    assert_int_equal(b.err, HSMCA_E_TOO_LARGE);
    /* a printf over the maximum is refused whole */
    hsmca_gbuf_init(&b, 8);
    assert_int_equal(hsmca_gbuf_printf(&b, "%s", "12345"), HSMCA_OK);
    assert_int_equal(hsmca_gbuf_printf(&b, "%s", "6789"), HSMCA_E_TOO_LARGE);
    assert_string_equal((char *)b.p, "12345");
    hsmca_gbuf_free(&b);
    /* an empty buffer hands back an empty string */
    hsmca_gbuf_init(&b, 0);
    p = hsmca_gbuf_take(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 0);
    assert_int_equal(p[0], '\0');
    free(p);
}

static void
read_fd_stops_at_max(void **state)
{
    static unsigned char data[20000];
    struct hsmca_gbuf b;
    unsigned char *p;
    size_t len, i;
    int fds[2];

    (void)state;
    for (i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7);
    for (i = 0; i < 3; i++) {
        /* max = the input's size (fits), one less (refused), far more (fits) */
        size_t max = i == 0 ? sizeof(data) : i == 1 ? sizeof(data) - 1 : 1u << 20;
        FILE *f = tmpfile();

        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, sizeof(data), f), sizeof(data));
        fflush(f);
        rewind(f);
        hsmca_gbuf_init(&b, max);
        if (i == 1) {
            assert_int_equal(hsmca_gbuf_read_fd(&b, fileno(f)), HSMCA_E_TOO_LARGE);
            assert_true(b.len <= max);
            hsmca_gbuf_free(&b);
        } else {
            assert_int_equal(hsmca_gbuf_read_fd(&b, fileno(f)), HSMCA_OK);
            p = hsmca_gbuf_take(&b, &len);
            assert_int_equal(len, sizeof(data));
            assert_memory_equal(p, data, sizeof(data));
            assert_int_equal(p[len], '\0');
            free(p);
        }
        fclose(f);
    }
    /* a bad descriptor is an I/O error */
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    hsmca_gbuf_init(&b, 100);
    assert_int_equal(hsmca_gbuf_read_fd(&b, fds[0]), HSMCA_E_IO);
    hsmca_gbuf_free(&b);
    close(fds[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grow_array_to_its_maximum_and_no_further),
        cmocka_unit_test(bytes_up_to_max_then_sticky_refusal),
        cmocka_unit_test(read_fd_stops_at_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
