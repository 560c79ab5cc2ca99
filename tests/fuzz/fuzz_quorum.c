/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_quorum.c -- libFuzzer target for the quorum request envelope (what `hsmca approve` reads
 * from a file or GET /v1/requests/{id}): hsmca_quorum_describe, then hsmca_quorum_approval_make
 * with a fixed software approver key (made here, secret to nobody). Invariants beyond "no crash":
 * describe answers OK or quorum-envelope-invalid only, the same way twice; approval_make refuses
 * exactly what describe refuses (one parser), and otherwise answers only with the codes its
 * contract names; a refusal leaves its output NULL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "hsmca/quorum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *
fuzz_key(void)
{
    static EVP_PKEY *key;

    if (key == NULL) {
        key = EVP_EC_gen("P-256");
        if (key == NULL)
            abort();
    }
    return key;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hsmca_quorum_signer s = {"alice", NULL, NULL};
    char *text = NULL, *text2 = NULL, *ap = NULL;
    enum hsmca_err d1, d2, a;

    s.soft = fuzz_key();
    d1 = hsmca_quorum_describe((const char *)data, size, &text);
    d2 = hsmca_quorum_describe((const char *)data, size, &text2);
    if (d1 != d2 || (d1 != HSMCA_OK && d1 != HSMCA_E_QUORUM_ENVELOPE))
        abort();
    if (d1 == HSMCA_OK && (text == NULL || text2 == NULL || strcmp(text, text2) != 0))
        abort();
    a = hsmca_quorum_approval_make((const char *)data, size, &s, &ap);
    if (d1 != HSMCA_OK && a != HSMCA_E_QUORUM_ENVELOPE)
        abort();
    if (a != HSMCA_OK && ap != NULL)
        abort();
    if (a != HSMCA_OK && a != HSMCA_E_QUORUM_ENVELOPE && a != HSMCA_E_QUORUM_NO_SHARE &&
        a != HSMCA_E_QUORUM_REQUEST_EXPIRED && a != HSMCA_E_SEAL_FORMAT && a != HSMCA_E_SEAL_AUTH &&
        a != HSMCA_E_SEAL_KEY && a != HSMCA_E_INVALID_ARG && a != HSMCA_E_NOMEM)
        abort();
    free(text);
    free(text2);
    free(ap);
    return 0;
}
