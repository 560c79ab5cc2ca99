/* SPDX-License-Identifier: Apache-2.0
 *
 * test_util.c -- bounded number parsing, hex, PEM armour (as OpenSSL's PEM writer makes it), the
 * size-capped file reader (limits at N, N+1), the CA id rule and cond-wait deadlines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/pem.h>

#include "hsmca/limits.h"
#include "hsmca/util.h"

#include "fixture.h"

static void
parse_u64_refuses_hostile_text(void **state)
{
    static const char *const bad[] = {"",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "01",
                                      "1a",
                                      "0x10",
                                      "1.0",
                                      "18446744073709551616",
                                      "99999999999999999999",
                                      "123456789012345678901"};
    uint64_t v = 42;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(hsmca_parse_u64(bad[i], strlen(bad[i]), UINT64_MAX, &v),
                         HSMCA_E_PARSE_NUMBER);
        assert_int_equal(v, 42); /* OUT untouched on failure */
    }
    assert_int_equal(hsmca_parse_u64(NULL, 0, 10, &v), HSMCA_E_PARSE_NUMBER);
    /* bound at N and N+1 */
    assert_int_equal(hsmca_parse_u64("1000", 4, 1000, &v), HSMCA_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(hsmca_parse_u64("1001", 4, 1000, &v), HSMCA_E_PARSE_NUMBER);
    assert_int_equal(hsmca_parse_u64("0", 1, 0, &v), HSMCA_OK);
    assert_int_equal(v, 0);
    assert_int_equal(hsmca_parse_u64("18446744073709551615", 20, UINT64_MAX, &v), HSMCA_OK);
    assert_true(v == UINT64_MAX);
    /* length is honoured: no read past len */
    assert_int_equal(hsmca_parse_u64("12x", 2, 100, &v), HSMCA_OK);
    assert_int_equal(v, 12);
}

static void
hex_round_trip_and_refusals(void **state)
{
    unsigned char out[4];
    char txt[9];
    size_t n = 0;

    (void)state;
    assert_int_equal(hsmca_hex_decode("abc", 3, out, sizeof(out), &n), HSMCA_E_BAD_ENCODING);
    assert_int_equal(hsmca_hex_decode("zz", 2, out, sizeof(out), &n), HSMCA_E_BAD_ENCODING);
    assert_int_equal(hsmca_hex_decode("0011223344", 10, out, sizeof(out), &n), HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_hex_decode("DeadBEEF", 8, out, sizeof(out), &n), HSMCA_OK);
    assert_int_equal(n, 4);
    hsmca_hex_encode(out, n, txt, sizeof(txt));
    assert_string_equal(txt, "deadbeef");
    hsmca_hex_encode(out, n, txt, 5); /* truncates safely */
    assert_string_equal(txt, "dead");
}

static void
read_file_honours_its_limit(void **state)
{
    char dir[512], path[600];
    unsigned char *buf = NULL;
    size_t len = 0;
    FILE *f;
    int i;

    (void)state;
    assert_int_equal(fx_tmpdir("util", dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/f", dir);
    assert_int_equal(hsmca_read_file(path, 10, &buf, &len), HSMCA_E_IO);
    f = fopen(path, "w");
    assert_non_null(f);
    for (i = 0; i < 5000; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    assert_int_equal(hsmca_read_file(path, 4999, &buf, &len), HSMCA_E_TOO_LARGE);
    assert_null(buf);
    assert_int_equal(hsmca_read_file(path, 5000, &buf, &len), HSMCA_OK);
    assert_int_equal(len, 5000);
    assert_int_equal(buf[5000], '\0');
    assert_int_equal(buf[27], 'b');
    free(buf);
    fx_rmtree(dir);
}

/* CA ids: 1..64 of [a-z0-9-]; nothing else, no NULL. */
static void
ca_id_rule(void **state)
{
    char max[HSMCA_CA_ID_MAX + 2];

    (void)state;
    assert_true(hsmca_ca_id_valid("pai-fff1-8000"));
    assert_true(hsmca_ca_id_valid("0"));
    assert_false(hsmca_ca_id_valid(NULL));
    assert_false(hsmca_ca_id_valid(""));
    assert_false(hsmca_ca_id_valid("PAI-1"));
    assert_false(hsmca_ca_id_valid("pai_1"));
    assert_false(hsmca_ca_id_valid("pai/../1"));
    assert_false(hsmca_ca_id_valid("pai 1"));
    memset(max, 'a', HSMCA_CA_ID_MAX);
    max[HSMCA_CA_ID_MAX] = '\0';
    assert_true(hsmca_ca_id_valid(max));
    max[HSMCA_CA_ID_MAX] = 'a';
    max[HSMCA_CA_ID_MAX + 1] = '\0';
    assert_false(hsmca_ca_id_valid(max));
}

/* A deadline is now + us on CLOCK_REALTIME, with nanoseconds kept below one second. */
static void
deadline_adds_and_normalises(void **state)
{
    static const uint64_t us[] = {0, 1, 999999, 1000000, 1500000, 2000000, 60000000};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
        struct timespec before, dl, after;
        int64_t b, d, a;

        clock_gettime(CLOCK_REALTIME, &before);
        hsmca_deadline_us(&dl, us[i]);
        clock_gettime(CLOCK_REALTIME, &after);
        assert_true(dl.tv_nsec >= 0 && dl.tv_nsec < 1000000000L);
        b = (int64_t)before.tv_sec * 1000000000 + before.tv_nsec;
        d = (int64_t)dl.tv_sec * 1000000000 + dl.tv_nsec;
        a = (int64_t)after.tv_sec * 1000000000 + after.tv_nsec;
        assert_true(d >= b + (int64_t)us[i] * 1000);
        assert_true(d <= a + (int64_t)us[i] * 1000);
    }
}

/* hsmca_pem_armour writes what OpenSSL's PEM writer writes, at every line-length edge, for a
 * certificate and a CSR label */
static void
pem_armour_matches_openssl(void **state)
{
    static const size_t lens[] = {1, 2, 3, 47, 48, 49, 95, 96, 97, 431, 432, 433, 700};
    static const char *const labels[] = {PEM_STRING_X509, PEM_STRING_X509_REQ};
    unsigned char der[700];
    size_t i, l;

    (void)state;
    for (i = 0; i < sizeof(der); i++)
        der[i] = (unsigned char)(i * 37u + 11u);
    for (l = 0; l < 2; l++) {
        for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            BIO *b = BIO_new(BIO_s_mem());
            BUF_MEM *bm = NULL;
            char *got = hsmca_pem_armour(labels[l], der, lens[i]);

            assert_non_null(b);
            assert_true(PEM_write_bio(b, labels[l], "", der, (long)lens[i]) > 0);
            BIO_get_mem_ptr(b, &bm);
            assert_non_null(got);
            assert_int_equal(strlen(got), bm->length);
            assert_memory_equal(got, bm->data, bm->length);
            free(got);
            BIO_free(b);
        }
    }
    assert_null(hsmca_pem_armour(PEM_STRING_X509, der, 0));
    assert_null(hsmca_pem_armour(PEM_STRING_X509, NULL, 10));
    assert_null(hsmca_pem_armour(NULL, der, 10));
}

/* Every latency lands in the first bucket whose bound holds it; past the last, the overflow. */
static void
latency_buckets(void **state)
{
    unsigned b;
    uint64_t t0, t1;

    (void)state;
    assert_int_equal(hsmca_lat_bucket(0), 0);
    assert_int_equal(hsmca_lat_bucket(100), 0);
    assert_int_equal(hsmca_lat_bucket(101), 1);
    for (b = 1; b < HSMCA_LAT_NBUCKET; b++) {
        assert_true(hsmca_lat_bound_us[b] > hsmca_lat_bound_us[b - 1]);
        assert_int_equal(hsmca_lat_bucket(hsmca_lat_bound_us[b]), b);
        assert_int_equal(hsmca_lat_bucket(hsmca_lat_bound_us[b - 1] + 1), b);
    }
    assert_int_equal(hsmca_lat_bucket(10000000), HSMCA_LAT_NBUCKET - 1);
    assert_int_equal(hsmca_lat_bucket(10000001), HSMCA_LAT_NBUCKET);
    assert_int_equal(hsmca_lat_bucket(UINT64_MAX), HSMCA_LAT_NBUCKET);
    t0 = hsmca_mono_us();
    t1 = hsmca_mono_us();
    assert_true(t1 >= t0);
}

static void
time_format_rfc3339(void **state)
{
    char t[HSMCA_TIME_MAX], small[20];

    (void)state;
    assert_int_equal(hsmca_time_format(0, 0, t, sizeof(t)), 20);
    assert_string_equal(t, "1970-01-01T00:00:00Z");
    assert_int_equal(hsmca_time_format(0, 1, t, sizeof(t)), 24);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    assert_int_equal(hsmca_time_format(1767323045678LL, 1, t, sizeof(t)), 24);
    assert_string_equal(t, "2026-01-02T03:04:05.678Z");
    assert_int_equal(hsmca_time_format(1767323045678LL, 0, t, sizeof(t)), 20);
    assert_string_equal(t, "2026-01-02T03:04:05Z");
    /* before the epoch (a 1950 notBefore): floored, not truncated towards zero */
    assert_int_equal(hsmca_time_format(-1, 1, t, sizeof(t)), 24);
    assert_string_equal(t, "1969-12-31T23:59:59.999Z");
    assert_int_equal(hsmca_time_format(-631152000000LL, 0, t, sizeof(t)), 20);
    assert_string_equal(t, "1950-01-01T00:00:00Z");
    /* a DAC's "no well-defined expiration": 99991231235959Z */
    assert_int_equal(hsmca_time_format(253402300799000LL, 0, t, sizeof(t)), 20);
    assert_string_equal(t, "9999-12-31T23:59:59Z");
    /* no room: 0 and an empty string, never a cut time */
    memset(small, 'x', sizeof(small));
    assert_int_equal(hsmca_time_format(0, 0, small, sizeof(small)), 0);
    assert_string_equal(small, "");
    assert_int_equal(hsmca_time_format(0, 0, t, 0), 0);
    assert_int_equal(hsmca_time_format(0, 0, NULL, 32), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_u64_refuses_hostile_text),
        cmocka_unit_test(hex_round_trip_and_refusals),
        cmocka_unit_test(read_file_honours_its_limit),
        cmocka_unit_test(ca_id_rule),
        cmocka_unit_test(deadline_adds_and_normalises),
        cmocka_unit_test(pem_armour_matches_openssl),
        cmocka_unit_test(latency_buckets),
        cmocka_unit_test(time_format_rfc3339),
    };

    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
