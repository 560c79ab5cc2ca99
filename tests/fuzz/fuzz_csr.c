/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_csr.c -- libFuzzer target for CSR intake (untrusted bytes from factory lines).
 * Invariants beyond "no crash": an accepted request's DER parses again to the same DER and hash
 * (decode -> encode -> decode is stable), and a refusal is one of the CSR codes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hsmca_csr *a = NULL, *b = NULL;
    enum hsmca_err rc = hsmca_csr_parse(data, size, &a);
    const unsigned char *der;
    size_t len = 0, len2 = 0;

    if (rc != HSMCA_OK) {
        if (a != NULL || rc < HSMCA_E_CSR_TOO_LARGE || rc > HSMCA_E_CSR_VERSION)
            abort();
        return 0;
    }
    der = hsmca_csr_der(a, &len);
    if (hsmca_csr_parse(der, len, &b) != HSMCA_OK)
        abort();
    if (memcmp(hsmca_csr_der(b, &len2), der, len) != 0 || len2 != len ||
        memcmp(hsmca_csr_sha256(a), hsmca_csr_sha256(b), 32) != 0)
        abort();
    hsmca_csr_free(a);
    hsmca_csr_free(b);
    return 0;
}
