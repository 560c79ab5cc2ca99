/* SPDX-License-Identifier: Apache-2.0
 *
 * shamir_internal.h -- hooks of shamir.c for its unit test only: the GF(2^8) operations and a split
 * whose coefficients come from a caller-given source (known-answer tests). Not part of the API;
 * nothing outside shamir.c and tests/unit/test_shamir.c includes it.
 */
#ifndef HSMCA_SHAMIR_INTERNAL_H
#define HSMCA_SHAMIR_INTERNAL_H

#include <stddef.h>

#include "hsmca/error.h"

/* Product and inverse in GF(2^8) mod x^8+x^4+x^3+x+1 (0x11b); inv(0) = 0. CT: no table, no branch
 * or index on a or b. */
unsigned char hsmca_gf256_mul(unsigned char a, unsigned char b);
unsigned char hsmca_gf256_inv(unsigned char a);

/*
 * Fill buf[0..len) with polynomial coefficients; return 1 on success, 0 on failure (like
 * RAND_priv_bytes). hsmca_shamir_split calls it once with len = (m - 1) * secret_len: the
 * coefficient of x^j (1 <= j < m) for secret byte k is buf[(j - 1) * secret_len + k].
 */
typedef int (*hsmca_shamir_coef_fn)(void *arg, unsigned char *buf, size_t len);

/* hsmca_shamir_split with the coefficients taken from coef(arg, ...) instead of the CSPRNG. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_shamir_split_with(const unsigned char *secret, size_t len,
                                                       unsigned m, unsigned n,
                                                       unsigned char *shares_out,
                                                       hsmca_shamir_coef_fn coef, void *arg);

#endif
