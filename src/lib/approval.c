/* SPDX-License-Identifier: Apache-2.0
 *
 * approval.c -- the checks that make an approval valid, shared by the quorum and the auditor's
 * verifier (approval.h).
 */
#include "approval.h"

#include <string.h>

#include "hsmca/b64.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"

int
hsmca_approval_digest(const unsigned char *request, size_t len, unsigned char out[HSMCA_SHA256_LEN])
{
    static const char dom[] = HSMCA_APPROVAL_DOMAIN;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(c, dom, sizeof(dom)) == 1 && EVP_DigestUpdate(c, request, len) == 1 &&
             EVP_DigestFinal_ex(c, out, NULL) == 1;

    EVP_MD_CTX_free(c);
    if (!ok)
        memset(out, 0, HSMCA_SHA256_LEN);
    return ok ? 0 : -1;
}

int
hsmca_approval_sig_valid(EVP_PKEY *pub, const unsigned char digest[HSMCA_SHA256_LEN],
                         const unsigned char *sig, size_t sig_len)
{
    EVP_PKEY_CTX *c;
    int ok = 0;

    if (pub == NULL || sig == NULL || sig_len == 0 || sig_len > HSMCA_ECDSA_P256_DER_MAX)
        return 0;
    c = EVP_PKEY_CTX_new(pub, NULL);
    if (c != NULL && EVP_PKEY_verify_init(c) == 1)
        ok = EVP_PKEY_verify(c, sig, sig_len, digest, HSMCA_SHA256_LEN) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

enum hsmca_err
hsmca_approval_sig_decode(const char *b64, unsigned char **sig, size_t *sig_len)
{
    return hsmca_b64_decode(b64, HSMCA_ECDSA_P256_DER_MAX, sig, sig_len);
}

int
hsmca_approval_by_requester(const char *approver, const char *approver_fpr, const char *requester,
                            const char *requester_key)
{
    return strcmp(approver, requester) == 0 || strcmp(approver_fpr, requester_key) == 0;
}
