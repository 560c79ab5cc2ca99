/* SPDX-License-Identifier: Apache-2.0
 *
 * test_der.c -- the DER cursor (hsmca/der.h): elements read in order with their contents and
 * whole encodings, the first failed read makes every later read fail and hand back an empty
 * element, sub-cursors of an unread element start in error, bytes left over fail the end check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hsmca/der.h"

/* SEQUENCE { INTEGER 5, SEQUENCE { OCTET STRING "ab" }, [0] {} } */
static const unsigned char seq[] = {0x30, 0x0b, 0x02, 0x01, 0x05, 0x30, 0x04,
                                    0x04, 0x02, 'a',  'b',  0xa0, 0x00};

static void
reads_in_order(void **state)
{
    struct hsmca_der d, in, in2;
    struct hsmca_der_el el, n, s, o, ctx;

    (void)state;
    hsmca_der_init(&d, seq, sizeof(seq));
    assert_int_equal(hsmca_der_tag(&d), 0x30);
    assert_true(hsmca_der_read(&d, 0x30, &el));
    assert_ptr_equal(el.tlv, seq);
    assert_int_equal(el.tlv_len, sizeof(seq));
    assert_ptr_equal(el.v, seq + 2);
    assert_int_equal(el.len, 11);
    assert_true(hsmca_der_end(&d));
    hsmca_der_sub(&in, &el);
    assert_true(hsmca_der_read(&in, 0x02, &n));
    assert_int_equal(n.len, 1);
    assert_int_equal(n.v[0], 5);
    assert_true(hsmca_der_read(&in, 0x30, &s));
    hsmca_der_sub(&in2, &s);
    assert_true(hsmca_der_read(&in2, 0x04, &o));
    assert_memory_equal(o.v, "ab", 2);
    assert_true(hsmca_der_end(&in2));
    assert_true(hsmca_der_read(&in, 0xa0, &ctx));
    assert_int_equal(ctx.len, 0);
    assert_int_equal(ctx.tlv_len, 2);
    assert_true(hsmca_der_end(&in));
    assert_int_equal(hsmca_der_tag(&in), -1); /* nothing left: an error */
    assert_int_equal(in.err, 1);
}

static void
first_failure_sticks(void **state)
{
    struct hsmca_der d, in, sub;
    struct hsmca_der_el el, a, b;

    (void)state;
    hsmca_der_init(&d, seq, sizeof(seq));
    hsmca_der_read(&d, 0x30, &el);
    hsmca_der_sub(&in, &el);
    /* wrong tag: fails, empties the element, and the next (right) read fails too */
    assert_false(hsmca_der_read(&in, 0x04, &a));
    assert_null(a.v);
    assert_null(a.tlv);
    assert_int_equal(a.len, 0);
    assert_false(hsmca_der_read(&in, 0x02, &b));
    assert_null(b.v);
    assert_int_equal(hsmca_der_tag(&in), -1);
    assert_false(hsmca_der_end(&in));
    /* a cursor over an element never read starts in error */
    hsmca_der_sub(&sub, &b);
    assert_int_equal(sub.err, 1);
    assert_false(hsmca_der_read(&sub, 0x30, NULL));
    /* bytes left over fail the end check, which then sticks */
    hsmca_der_init(&d, seq, sizeof(seq));
    hsmca_der_read(&d, 0x30, &el);
    hsmca_der_sub(&in, &el);
    assert_true(hsmca_der_read(&in, 0x02, NULL));
    assert_false(hsmca_der_end(&in));
    assert_false(hsmca_der_read(&in, 0x30, NULL));
}

static void
bad_lengths_refused(void **state)
{
    /* truncated, non-minimal long form, indefinite, three length bytes, longer than the input */
    static const unsigned char bad[][6] = {
        {0x30},
        {0x30, 0x81, 0x05, 0, 0, 0},
        {0x30, 0x80, 0, 0, 0, 0},
        {0x30, 0x83, 0, 0, 1, 0},
        {0x30, 0x05, 0, 0, 0, 0},
    };
    static const size_t bad_len[] = {1, 6, 6, 6, 6};
    /* a long-form length that is minimal: 0x81 0x80 (128 bytes) */
    static unsigned char long_ok[3 + 128] = {0x04, 0x81, 0x80};
    struct hsmca_der d;
    struct hsmca_der_el el;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) {
        hsmca_der_init(&d, bad[i], bad_len[i]);
        assert_false(hsmca_der_read(&d, 0x30, &el));
        assert_null(el.v);
    }
    hsmca_der_init(&d, long_ok, sizeof(long_ok));
    assert_true(hsmca_der_read(&d, 0x04, &el));
    assert_int_equal(el.len, 128);
    assert_true(hsmca_der_end(&d));
    /* no input at all */
    hsmca_der_init(&d, NULL, 0);
    assert_false(hsmca_der_read(&d, 0x30, NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_in_order),
        cmocka_unit_test(first_failure_sticks),
        cmocka_unit_test(bad_lengths_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
