/* SPDX-License-Identifier: Apache-2.0
 *
 * test_shamir.c -- Shamir m-of-n over GF(2^8). Hostile parameters and shares first, then the field
 * checked exhaustively against a log/exp-table reference written here, known answers with fixed
 * coefficients (evaluated by the reference, term by term), every m-subset of small n rebuilding
 * the secret, m-1 shares giving nothing, and the CSPRNG feeding real splits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hsmca/secret.h"
#include "hsmca/shamir.h"

#include "shamir_internal.h"

/* ---- reference GF(2^8): log/exp tables over the generator 3, built with a branching xtime ---- */

static unsigned char ref_exp[510];
static unsigned char ref_log[256];

static void
ref_init(void)
{
    unsigned v = 1, i;

    for (i = 0; i < 255; i++) {
        unsigned x2;

        ref_exp[i] = (unsigned char)v;
        ref_exp[i + 255] = (unsigned char)v;
        ref_log[v] = (unsigned char)i;
        x2 = v << 1;
        if (x2 & 0x100)
            x2 ^= 0x11b;
        v = x2 ^ v; /* v * 3 */
    }
}

static unsigned char
ref_mul(unsigned char a, unsigned char b)
{
    if (a == 0 || b == 0)
        return 0;
    return ref_exp[ref_log[a] + ref_log[b]];
}

static unsigned char
ref_inv(unsigned char a)
{
    return a == 0 ? 0 : ref_exp[255 - ref_log[a]];
}

static unsigned char
ref_pow(unsigned char a, unsigned e)
{
    unsigned char r = 1;

    while (e-- > 0)
        r = ref_mul(r, a);
    return r;
}

/* ---- coefficient sources ---- */

struct fixed {
    const unsigned char *bytes;
    size_t len;
    int calls;
};

static int
fixed_coef(void *arg, unsigned char *buf, size_t len)
{
    struct fixed *f = arg;

    f->calls++;
    if (len != f->len)
        return 0;
    memcpy(buf, f->bytes, len);
    return 1;
}

static int
failing_coef(void *arg, unsigned char *buf, size_t len)
{
    (void)arg;
    (void)buf;
    (void)len;
    return 0;
}

/* ---- hostile input ---- */

static void
split_refuses_bad_parameters(void **state)
{
    unsigned char secret[HSMCA_SHAMIR_SECRET_MAX + 1] = {1, 2, 3};
    unsigned char out[(HSMCA_SHAMIR_N_MAX + 1) * (HSMCA_SHAMIR_SECRET_MAX + 2)];
    unsigned char ff[sizeof(out)];

    (void)state;
    memset(out, 0xa5, sizeof(out));
    memcpy(ff, out, sizeof(out));
    assert_int_equal(hsmca_shamir_split(secret, 3, 1, 3, out), HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_split(secret, 3, 0, 3, out), HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_split(secret, 3, 4, 3, out), HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_split(secret, 3, 2, HSMCA_SHAMIR_N_MAX + 1, out),
                     HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_split(secret, 0, 2, 3, out), HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_split(secret, HSMCA_SHAMIR_SECRET_MAX + 1, 2, 3, out),
                     HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_split(NULL, 3, 2, 3, out), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_shamir_split(secret, 3, 2, 3, NULL), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_shamir_split_with(secret, 3, 2, 3, out, failing_coef, NULL),
                     HSMCA_E_RANDOM);
    assert_int_equal(hsmca_shamir_split_with(secret, 3, 2, 3, out, NULL, NULL),
                     HSMCA_E_INVALID_ARG);
    assert_memory_equal(out, ff, sizeof(out)); /* nothing written on refusal */
    /* the limits themselves are accepted */
    assert_int_equal(hsmca_shamir_split(secret, HSMCA_SHAMIR_SECRET_MAX, HSMCA_SHAMIR_N_MAX,
                                        HSMCA_SHAMIR_N_MAX, out),
                     HSMCA_OK);
    assert_int_equal(hsmca_shamir_split(secret, 1, 2, 2, out), HSMCA_OK);
}

static void
combine_refuses_bad_shares(void **state)
{
    unsigned char shares[(HSMCA_SHAMIR_N_MAX + 1) * 4];
    unsigned char out[8], ff[8];
    unsigned i;

    (void)state;
    memset(out, 0x5a, sizeof(out));
    memcpy(ff, out, sizeof(out));
    for (i = 0; i <= HSMCA_SHAMIR_N_MAX; i++) {
        shares[i * 4] = (unsigned char)(i + 1);
        shares[i * 4 + 1] = shares[i * 4 + 2] = shares[i * 4 + 3] = (unsigned char)(7 * i);
    }
    assert_int_equal(hsmca_shamir_combine(shares, 4, 0, out), HSMCA_E_SHAMIR_SHARES);
    assert_int_equal(hsmca_shamir_combine(shares, 4, 1, out), HSMCA_E_SHAMIR_SHARES);
    assert_int_equal(hsmca_shamir_combine(shares, 4, HSMCA_SHAMIR_N_MAX + 1, out),
                     HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_combine(shares, 1, 2, out), HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_combine(shares, 0, 2, out), HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_combine(shares, HSMCA_SHAMIR_SECRET_MAX + 2, 2, out),
                     HSMCA_E_SHAMIR_PARAMS);
    assert_int_equal(hsmca_shamir_combine(NULL, 4, 2, out), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_shamir_combine(shares, 4, 2, NULL), HSMCA_E_INVALID_ARG);
    /* x = 0 anywhere */
    shares[2 * 4] = 0;
    assert_int_equal(hsmca_shamir_combine(shares, 4, 3, out), HSMCA_E_SHAMIR_SHARES);
    /* a duplicate x, adjacent or not */
    shares[2 * 4] = 1;
    assert_int_equal(hsmca_shamir_combine(shares, 4, 3, out), HSMCA_E_SHAMIR_SHARES);
    shares[2 * 4] = 2;
    assert_int_equal(hsmca_shamir_combine(shares, 4, 3, out), HSMCA_E_SHAMIR_SHARES);
    /* an x no split makes (above N_MAX) */
    shares[2 * 4] = HSMCA_SHAMIR_N_MAX + 1;
    assert_int_equal(hsmca_shamir_combine(shares, 4, 3, out), HSMCA_E_SHAMIR_SHARES);
    shares[2 * 4] = 0xff;
    assert_int_equal(hsmca_shamir_combine(shares, 4, 3, out), HSMCA_E_SHAMIR_SHARES);
    assert_memory_equal(out, ff, sizeof(out)); /* nothing written on refusal */
    /* the limits themselves are accepted */
    shares[2 * 4] = 3;
    assert_int_equal(hsmca_shamir_combine(shares, 4, HSMCA_SHAMIR_N_MAX, out), HSMCA_OK);
    {
        static const unsigned char two[] = {1, 9, 2, 8};

        assert_int_equal(hsmca_shamir_combine(two, 2, 2, out), HSMCA_OK);
    }
}

/* ---- the field ---- */

static void
field_matches_reference_exhaustively(void **state)
{
    unsigned a, b, c;

    (void)state;
    for (a = 0; a < 256; a++) {
        for (b = 0; b < 256; b++) {
            unsigned char p = hsmca_gf256_mul((unsigned char)a, (unsigned char)b);

            assert_int_equal(p, ref_mul((unsigned char)a, (unsigned char)b));
            assert_int_equal(p, hsmca_gf256_mul((unsigned char)b, (unsigned char)a));
        }
        /* identities */
        assert_int_equal(hsmca_gf256_mul((unsigned char)a, 1), a);
        assert_int_equal(hsmca_gf256_mul((unsigned char)a, 0), 0);
        assert_int_equal(hsmca_gf256_inv((unsigned char)a), ref_inv((unsigned char)a));
        if (a != 0)
            assert_int_equal(hsmca_gf256_mul((unsigned char)a, hsmca_gf256_inv((unsigned char)a)),
                             1);
    }
    assert_int_equal(hsmca_gf256_inv(0), 0);
    /* FIPS-197 4.2 worked examples: {57}.{83} = {c1}, {57}.{13} = {fe} */
    assert_int_equal(hsmca_gf256_mul(0x57, 0x83), 0xc1);
    assert_int_equal(hsmca_gf256_mul(0x57, 0x13), 0xfe);
    /* associativity and distributivity over all a, b and a spread of c */
    for (a = 0; a < 256; a++) {
        for (b = 0; b < 256; b++) {
            for (c = 0; c < 256; c += 17) {
                unsigned char A = (unsigned char)a, B = (unsigned char)b, C = (unsigned char)c;

                assert_int_equal(hsmca_gf256_mul(hsmca_gf256_mul(A, B), C),
                                 hsmca_gf256_mul(A, hsmca_gf256_mul(B, C)));
                assert_int_equal(hsmca_gf256_mul(A, B ^ C),
                                 hsmca_gf256_mul(A, B) ^ hsmca_gf256_mul(A, C));
            }
        }
    }
}

/* ---- known answers ---- */

/* f(x) = secret[k] + sum_j coef[(j-1)*len + k] x^j, term by term with the table reference */
static void
ref_split(const unsigned char *secret, size_t len, unsigned m, unsigned n,
          const unsigned char *coef, unsigned char *out)
{
    unsigned i, j;
    size_t k;

    for (i = 0; i < n; i++) {
        unsigned char x = (unsigned char)(i + 1);

        out[i * (len + 1)] = x;
        for (k = 0; k < len; k++) {
            unsigned char y = secret[k];

            for (j = 1; j < m; j++)
                y ^= ref_mul(coef[(j - 1) * len + k], ref_pow(x, j));
            out[i * (len + 1) + 1 + k] = y;
        }
    }
}

static void
known_answers_with_fixed_coefficients(void **state)
{
    static const struct {
        unsigned m, n;
        size_t len;
    } cases[] = {{2, 2, 1}, {2, 3, 5}, {3, 5, 32}, {5, 7, 33}, {7, 32, 64}, {32, 32, 64}};
    /* by hand: s = 01, c1 = 02: f(1) = 03, f(2) = 01^04 = 05, f(3) = 01^06 = 07 */
    static const unsigned char hand_coef[] = {0x02};
    static const unsigned char hand[] = {1, 0x03, 2, 0x05, 3, 0x07};
    unsigned char secret[HSMCA_SHAMIR_SECRET_MAX], coef[31 * HSMCA_SHAMIR_SECRET_MAX];
    unsigned char got[HSMCA_SHAMIR_N_MAX * (HSMCA_SHAMIR_SECRET_MAX + 1)];
    unsigned char want[sizeof(got)];
    struct fixed f = {hand_coef, 1, 0};
    size_t i, k;

    (void)state;
    secret[0] = 1;
    assert_int_equal(hsmca_shamir_split_with(secret, 1, 2, 3, got, fixed_coef, &f), HSMCA_OK);
    assert_int_equal(f.calls, 1);
    assert_memory_equal(got, hand, sizeof(hand));

    for (k = 0; k < sizeof(secret); k++)
        secret[k] = (unsigned char)(0x31 * k + 7);
    for (k = 0; k < sizeof(coef); k++)
        coef[k] = (unsigned char)((k * 0x9d) ^ (k >> 3) ^ 0x5c);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t slen = cases[i].n * (cases[i].len + 1);
        unsigned char back[HSMCA_SHAMIR_SECRET_MAX];

        f.bytes = coef;
        f.len = (cases[i].m - 1) * cases[i].len;
        f.calls = 0;
        ref_split(secret, cases[i].len, cases[i].m, cases[i].n, coef, want);
        assert_int_equal(hsmca_shamir_split_with(secret, cases[i].len, cases[i].m, cases[i].n, got,
                                                 fixed_coef, &f),
                         HSMCA_OK);
        assert_int_equal(f.calls, 1);
        assert_memory_equal(got, want, slen);
        /* the last m shares rebuild it */
        assert_int_equal(hsmca_shamir_combine(got + (cases[i].n - cases[i].m) * (cases[i].len + 1),
                                              cases[i].len + 1, cases[i].m, back),
                         HSMCA_OK);
        assert_memory_equal(back, secret, cases[i].len);
    }
}

/* ---- properties ---- */

/* Every subset of {0..n-1} as a bit mask; rebuild from it. */
static void
every_subset_of_m_rebuilds_and_m_minus_1_does_not(void **state)
{
    unsigned char secret[32], shares[8 * 33], pick[8 * 33], back[32];
    unsigned n, m, mask;
    unsigned long checked = 0;

    (void)state;
    assert_int_equal(RAND_bytes(secret, sizeof(secret)), 1);
    for (n = 2; n <= 7; n++) {
        for (m = 2; m <= n; m++) {
            assert_int_equal(hsmca_shamir_split(secret, sizeof(secret), m, n, shares), HSMCA_OK);
            for (mask = 1; mask < (1u << n); mask++) {
                unsigned cnt = 0, i;

                for (i = 0; i < n; i++) {
                    if (mask & (1u << i)) {
                        memcpy(pick + cnt * 33, shares + i * 33, 33);
                        cnt++;
                    }
                }
                if (cnt < 2)
                    continue;
                assert_int_equal(hsmca_shamir_combine(pick, 33, cnt, back), HSMCA_OK);
                if (cnt >= m)
                    assert_memory_equal(back, secret, sizeof(secret));
                else /* 2^-256 chance of a false failure */
                    assert_memory_not_equal(back, secret, sizeof(secret));
                checked++;
            }
        }
    }
    assert_true(checked > 500);
}

/* With m = 2, one share (x, y) is consistent with every secret: for each candidate s exactly one
 * first coefficient c gives y at x. */
static void
one_share_of_two_reveals_nothing(void **state)
{
    unsigned x, s, c;

    (void)state;
    for (x = 1; x <= 4; x++) {
        unsigned char target = 0x6b; /* the observed y of share x */

        for (s = 0; s < 256; s++) {
            unsigned hits = 0;

            for (c = 0; c < 256; c++) {
                unsigned char coef = (unsigned char)c, sec = (unsigned char)s;
                unsigned char out[4 * 2];
                struct fixed f = {&coef, 1, 0};

                assert_int_equal(hsmca_shamir_split_with(&sec, 1, 2, 4, out, fixed_coef, &f),
                                 HSMCA_OK);
                if (out[(x - 1) * 2 + 1] == target)
                    hits++;
            }
            assert_int_equal(hits, 1);
        }
    }
}

/* With m = 3, two shares: for each candidate secret exactly one coefficient pair matches both
 * observed y values, so the two shares do not narrow the secret down. */
static void
two_shares_of_three_reveal_nothing(void **state)
{
    unsigned s, c1, c2;
    unsigned char y1 = 0x11, y2 = 0xe4;

    (void)state;
    for (s = 0; s < 256; s += 15) {
        unsigned hits = 0;

        for (c1 = 0; c1 < 256; c1++) {
            for (c2 = 0; c2 < 256; c2++) {
                unsigned char sec = (unsigned char)s,
                              coef[2] = {(unsigned char)c1, (unsigned char)c2};
                unsigned char out[3 * 2];
                struct fixed f = {coef, 2, 0};

                assert_int_equal(hsmca_shamir_split_with(&sec, 1, 3, 3, out, fixed_coef, &f),
                                 HSMCA_OK);
                if (out[1] == y1 && out[3] == y2)
                    hits++;
            }
        }
        assert_int_equal(hits, 1);
    }
}

static void
splits_use_fresh_randomness(void **state)
{
    unsigned char secret[32] = {0}, a[5 * 33], b[5 * 33], back[32];

    (void)state;
    assert_int_equal(hsmca_shamir_split(secret, 32, 3, 5, a), HSMCA_OK);
    assert_int_equal(hsmca_shamir_split(secret, 32, 3, 5, b), HSMCA_OK);
    assert_memory_not_equal(a, b, sizeof(a));
    /* an all-zero secret does not give all-zero shares */
    assert_memory_not_equal(a + 1, secret, 32);
    /* mixing shares of two splits of the same secret does not rebuild it (fresh coefficients) */
    memcpy(a + 33, b + 33, 33);
    assert_int_equal(hsmca_shamir_combine(a, 33, 3, back), HSMCA_OK);
    assert_memory_not_equal(back, secret, 32);
}

static void
works_in_secure_memory(void **state)
{
    unsigned char *shares, *back;
    unsigned char pin[32];
    size_t used;

    (void)state;
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    assert_int_equal(RAND_bytes(pin, sizeof(pin)), 1);
    shares = OPENSSL_secure_malloc(32 * 33);
    back = OPENSSL_secure_malloc(32);
    assert_non_null(shares);
    assert_true(CRYPTO_secure_allocated(shares));
    used = CRYPTO_secure_used();
    assert_int_equal(hsmca_shamir_split(pin, 32, 20, 32, shares), HSMCA_OK);
    assert_int_equal(hsmca_shamir_combine(shares + 12 * 33, 33, 20, back), HSMCA_OK);
    assert_memory_equal(back, pin, 32);
    /* the scratch buffers of split and combine went back to the secure heap */
    assert_int_equal(CRYPTO_secure_used(), used);
    OPENSSL_secure_clear_free(shares, 32 * 33);
    OPENSSL_secure_clear_free(back, 32);
    OPENSSL_cleanse(pin, sizeof(pin));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_refuses_bad_parameters),
        cmocka_unit_test(combine_refuses_bad_shares),
        cmocka_unit_test(field_matches_reference_exhaustively),
        cmocka_unit_test(known_answers_with_fixed_coefficients),
        cmocka_unit_test(every_subset_of_m_rebuilds_and_m_minus_1_does_not),
        cmocka_unit_test(one_share_of_two_reveals_nothing),
        cmocka_unit_test(two_shares_of_three_reveal_nothing),
        cmocka_unit_test(splits_use_fresh_randomness),
        cmocka_unit_test(works_in_secure_memory),
    };

    ref_init();
    return cmocka_run_group_tests_name("shamir", tests, NULL, NULL);
}
