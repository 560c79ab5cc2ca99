/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_mdl.c -- libFuzzer target for the mDL parsers of untrusted CBOR (mdl_cose.c): the MSO a
 * caller sends to POST /v1/cas/{ds}/mso-signatures, and an IssuerAuth (COSE_Sign1) handed to
 * `hsmca mdl issuer-auth`. Invariants beyond "no crash": an accepted MSO's payload is accepted
 * again as it is (the tag-24 form is a fixed point) with the same facts and hash; a refusal is
 * mso-invalid and leaves nothing allocated; a COSE_Sign1 is malformed, or its signature does not
 * verify, or it does and then fails once one byte of its signature changes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/mdl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *p = NULL, *p2 = NULL;
    size_t n = 0, n2 = 0;
    struct hsmca_mdl_mso_info a, b;
    char why[128];
    enum hsmca_err rc = hsmca_mdl_mso_check(data, size, &p, &n, &a, why, sizeof(why)), vc;

    if (rc != HSMCA_OK) {
        if (rc != HSMCA_E_MDL_MSO_INVALID || p != NULL)
            abort();
    } else {
        if (hsmca_mdl_mso_check(p, n, &p2, &n2, &b, why, sizeof(why)) != HSMCA_OK || n2 != n ||
            memcmp(p, p2, n) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
            abort();
        free(p);
        free(p2);
    }
    vc = hsmca_mdl_sign1_verify(data, size, NULL, 0, NULL);
    if (vc == HSMCA_OK) {
        unsigned char *c = malloc(size);

        if (c == NULL)
            abort();
        memcpy(c, data, size);
        c[size - 1] ^= 0x01; /* the signature is the last item: its last byte */
        if (hsmca_mdl_sign1_verify(c, size, NULL, 0, NULL) != HSMCA_E_MDL_SIGNATURE_INVALID)
            abort();
        free(c);
    } else if (vc != HSMCA_E_MDL_COSE_INVALID && vc != HSMCA_E_MDL_SIGNATURE_INVALID) {
        abort();
    }
    return 0;
}
