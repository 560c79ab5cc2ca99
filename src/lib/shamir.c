/* SPDX-License-Identifier: Apache-2.0
 *
 * shamir.c -- Shamir secret sharing over GF(2^8) (AES polynomial 0x11b), m of n.
 * Owns only its scratch buffers (secure heap, wiped). Constant time in the secret: multiplication
 * is shift-and-xor with masks, inversion is a^254 by a fixed chain of multiplications; there is no
 * lookup table and no branch or index on a share or secret byte. Only the public x-coordinates and
 * the sizes steer control flow. Never logs a byte of a secret or a share.
 */
#include "hsmca/shamir.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "shamir_internal.h"

unsigned char
hsmca_gf256_mul(unsigned char a, unsigned char b)
{
    unsigned x = a, y = b, r = 0;
    int i;

    for (i = 0; i < 8; i++) {
        r ^= (0u - (y & 1u)) & x;                  /* add x if the low bit of y is set */
        x = (x << 1) ^ ((0u - (x >> 7)) & 0x11bu); /* x *= X, reduced mod 0x11b */
        y >>= 1;
    }
    return (unsigned char)r;
}

unsigned char
hsmca_gf256_inv(unsigned char a)
{
    /* a^254 = a^-1 for a != 0 (the multiplicative group has order 255), and 0 for a = 0.
     * 254 = 0b11111110: square-and-multiply over the public exponent. */
    unsigned char r = 1;
    int i;

    for (i = 7; i >= 0; i--) {
        r = hsmca_gf256_mul(r, r);
        if ((254 >> i) & 1) /* public exponent bit, not secret */
            r = hsmca_gf256_mul(r, a);
    }
    return r;
}

static int
rand_coef(void *arg, unsigned char *buf, size_t len)
{
    (void)arg;
    return RAND_priv_bytes(buf, (int)len);
}

enum hsmca_err
hsmca_shamir_split_with(const unsigned char *secret, size_t len, unsigned m, unsigned n,
                        unsigned char *shares_out, hsmca_shamir_coef_fn coef, void *arg)
{
    enum hsmca_err rc;
    unsigned char *c = NULL, *tmp = NULL;
    size_t clen, tlen, k;
    unsigned i, j;

    if (secret == NULL || shares_out == NULL || coef == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len < 1 || len > HSMCA_SHAMIR_SECRET_MAX || m < 2 || m > n || n > HSMCA_SHAMIR_N_MAX)
        return HSMCA_E_SHAMIR_PARAMS;
    clen = (size_t)(m - 1) * len;
    tlen = (size_t)n * (len + 1);
    c = OPENSSL_secure_malloc(clen);
    tmp = OPENSSL_secure_malloc(tlen);
    if (c == NULL || tmp == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    if (coef(arg, c, clen) != 1) {
        rc = HSMCA_E_RANDOM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        unsigned char x = (unsigned char)(i + 1);
        unsigned char *share = tmp + (size_t)i * (len + 1);

        share[0] = x;
        for (k = 0; k < len; k++) {
            /* Horner: f(x) = s + c1 x + ... + c(m-1) x^(m-1) */
            unsigned char y = c[(size_t)(m - 2) * len + k];

            for (j = m - 1; j >= 2; j--)
                y = hsmca_gf256_mul(y, x) ^ c[(size_t)(j - 2) * len + k];
            y = hsmca_gf256_mul(y, x) ^ secret[k];
            share[1 + k] = y;
        }
    }
    memcpy(shares_out, tmp, tlen);
    rc = HSMCA_OK;
out:
    OPENSSL_secure_clear_free(tmp, tlen);
    OPENSSL_secure_clear_free(c, clen);
    return rc;
}

enum hsmca_err
hsmca_shamir_split(const unsigned char *secret, size_t len, unsigned m, unsigned n,
                   unsigned char *shares_out)
{
    return hsmca_shamir_split_with(secret, len, m, n, shares_out, rand_coef, NULL);
}

enum hsmca_err
hsmca_shamir_combine(const unsigned char *shares, size_t share_len, unsigned count,
                     unsigned char *secret_out)
{
    unsigned char basis[HSMCA_SHAMIR_N_MAX];
    unsigned char *acc = NULL;
    size_t len, k;
    unsigned i, j;

    if (shares == NULL || secret_out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (share_len < 2 || share_len > HSMCA_SHAMIR_SECRET_MAX + 1 || count > HSMCA_SHAMIR_N_MAX)
        return HSMCA_E_SHAMIR_PARAMS;
    if (count < 2)
        return HSMCA_E_SHAMIR_SHARES;
    len = share_len - 1;
    /* The x-coordinates are public: check them with ordinary branches. */
    for (i = 0; i < count; i++) {
        unsigned char xi = shares[(size_t)i * share_len];

        if (xi == 0 || xi > HSMCA_SHAMIR_N_MAX)
            return HSMCA_E_SHAMIR_SHARES;
        for (j = 0; j < i; j++) {
            if (shares[(size_t)j * share_len] == xi)
                return HSMCA_E_SHAMIR_SHARES;
        }
    }
    /* Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); subtraction is xor. */
    for (i = 0; i < count; i++) {
        unsigned char xi = shares[(size_t)i * share_len], num = 1, den = 1;

        for (j = 0; j < count; j++) {
            unsigned char xj = shares[(size_t)j * share_len];

            if (j == i)
                continue;
            num = hsmca_gf256_mul(num, xj);
            den = hsmca_gf256_mul(den, xj ^ xi);
        }
        basis[i] = hsmca_gf256_mul(num, hsmca_gf256_inv(den));
    }
    acc = OPENSSL_secure_zalloc(len);
    if (acc == NULL)
        return HSMCA_E_NOMEM;
    for (i = 0; i < count; i++) {
        const unsigned char *y = shares + (size_t)i * share_len + 1;

        for (k = 0; k < len; k++)
            acc[k] ^= hsmca_gf256_mul(y[k], basis[i]);
    }
    memcpy(secret_out, acc, len);
    OPENSSL_secure_clear_free(acc, len);
    return HSMCA_OK;
}
