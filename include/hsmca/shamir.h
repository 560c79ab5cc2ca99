/* SPDX-License-Identifier: Apache-2.0
 *
 * shamir.h -- Shamir secret sharing over GF(2^8) (AES polynomial 0x11b), threshold m of n.
 * Used to split a CA token's user PIN among approvers. Constant time: no table lookups, no branch
 * or index on a secret byte. Coefficients come from the CSPRNG. Shares carry no integrity of their
 * own: callers check them against commitments before combining.
 */
#ifndef HSMCA_SHAMIR_H
#define HSMCA_SHAMIR_H

#include <stddef.h>

#include "hsmca/error.h"

#define HSMCA_SHAMIR_N_MAX 32
#define HSMCA_SHAMIR_SECRET_MAX 64

/* A share is 1 byte x-coordinate (1..n) followed by len bytes: len + 1 bytes. */

/*
 * Split secret[0..len) (1 <= len <= HSMCA_SHAMIR_SECRET_MAX) into n shares, any m of which
 * (2 <= m <= n <= HSMCA_SHAMIR_N_MAX) rebuild it. Share i (0-based) is written to
 * shares_out + i * (len + 1) with x-coordinate i + 1. shares_out is the caller's (secure) memory of
 * n * (len + 1) bytes; it is written only on HSMCA_OK.
 * Returns HSMCA_E_SHAMIR_PARAMS, HSMCA_E_INVALID_ARG (NULL pointers), HSMCA_E_RANDOM,
 * HSMCA_E_NOMEM.
 * CT: time depends on len, m and n only; the polynomial coefficients live on the secure heap and
 * are wiped before return.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_shamir_split(const unsigned char *secret, size_t len,
                                                  unsigned m, unsigned n,
                                                  unsigned char *shares_out);

/*
 * Rebuild the secret from count shares (2 <= count <= HSMCA_SHAMIR_N_MAX), each share_len bytes
 * (2 <= share_len <= HSMCA_SHAMIR_SECRET_MAX + 1), laid out one after the other in shares. Writes
 * share_len - 1 bytes into secret_out on HSMCA_OK only. With count >= m distinct shares of one
 * split the result is the secret; with fewer it is an unrelated value (no error can tell).
 * Returns HSMCA_E_SHAMIR_PARAMS (share_len out of bounds, count > HSMCA_SHAMIR_N_MAX),
 * HSMCA_E_SHAMIR_SHARES (count < 2, an x of 0 or above HSMCA_SHAMIR_N_MAX, a duplicate x),
 * HSMCA_E_INVALID_ARG (NULL pointers), HSMCA_E_NOMEM.
 * CT: the x-coordinates are public (checked with branches); the share bytes and the result are
 * handled without secret-dependent branches or indexes.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_shamir_combine(const unsigned char *shares, size_t share_len,
                                                    unsigned count, unsigned char *secret_out);

#endif
