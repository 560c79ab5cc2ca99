/* SPDX-License-Identifier: Apache-2.0
 *
 * ct_shamir.c -- a ctgrind-style check that shamir.c is constant time in its secrets. Run under
 * valgrind memcheck: the secret, the polynomial coefficients and the share bytes are marked
 * undefined, so any branch on them ("Conditional jump ... depends on uninitialised value") or any
 * memory index computed from them ("Use of uninitialised value") is an error and the test fails
 * (--error-exitcode). The x-coordinates stay defined: they are public and checked with branches.
 */
#include <stdio.h>
#include <string.h>
#include <valgrind/memcheck.h>

#include "hsmca/shamir.h"

#include "shamir_internal.h"

static int
undefined_coef(void *arg, unsigned char *buf, size_t len)
{
    (void)arg;
    memset(buf, 0x3c, len);
    VALGRIND_MAKE_MEM_UNDEFINED(buf, len);
    return 1;
}

int
main(void)
{
    unsigned char secret[HSMCA_SHAMIR_SECRET_MAX], back[HSMCA_SHAMIR_SECRET_MAX];
    unsigned char shares[HSMCA_SHAMIR_N_MAX * (HSMCA_SHAMIR_SECRET_MAX + 1)];
    unsigned char a, b, p;
    unsigned i;

    /* the field operations themselves */
    a = 0x57;
    b = 0x83;
    VALGRIND_MAKE_MEM_UNDEFINED(&a, 1);
    VALGRIND_MAKE_MEM_UNDEFINED(&b, 1);
    p = hsmca_gf256_mul(a, b);
    p ^= hsmca_gf256_inv(a);
    VALGRIND_MAKE_MEM_DEFINED(&p, 1);

    /* split: secret and coefficients undefined */
    memset(secret, 0xa7, sizeof(secret));
    VALGRIND_MAKE_MEM_UNDEFINED(secret, sizeof(secret));
    if (hsmca_shamir_split_with(secret, sizeof(secret), 5, HSMCA_SHAMIR_N_MAX, shares,
                                undefined_coef, NULL) != HSMCA_OK) {
        fprintf(stderr, "ct_shamir: split failed\n");
        return 1;
    }
    /* combine: share bytes undefined, x-coordinates defined (public) */
    for (i = 0; i < HSMCA_SHAMIR_N_MAX; i++) {
        VALGRIND_MAKE_MEM_DEFINED(shares + i * (sizeof(secret) + 1), 1);
        VALGRIND_MAKE_MEM_UNDEFINED(shares + i * (sizeof(secret) + 1) + 1, sizeof(secret));
    }
    if (hsmca_shamir_combine(shares + 3 * (sizeof(secret) + 1), sizeof(secret) + 1, 7, back) !=
        HSMCA_OK) {
        fprintf(stderr, "ct_shamir: combine failed\n");
        return 1;
    }
    /* the result is as secret as its inputs: its validity bits say undefined */
    if (RUNNING_ON_VALGRIND) {
        unsigned char vbits[HSMCA_SHAMIR_SECRET_MAX];

        if (VALGRIND_GET_VBITS(back, vbits, sizeof(back)) != 1 || vbits[0] == 0) {
            fprintf(stderr, "ct_shamir: the rebuilt secret lost its taint\n");
            return 1;
        }
    }
    printf("ct_shamir: %s\n",
           RUNNING_ON_VALGRIND ? "checked under memcheck" : "not under valgrind");
    return 0;
}
