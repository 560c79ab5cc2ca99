/* SPDX-License-Identifier: Apache-2.0
 *
 * approval.h -- what an approval of a quorum request is, checked in one place (internal to
 * libhsmca): the digest approvers sign, the signature over it, its encoding, and the rule that a
 * requester never approves its own request. The quorum (quorum_approval.c, quorum_exec.c) and the
 * auditor's offline verifier (audit_verify.c) both call these, so the daemon and an auditor can
 * never disagree on what a valid approval is.
 */
#ifndef HSMCA_APPROVAL_H
#define HSMCA_APPROVAL_H

#include <stddef.h>

#include <openssl/evp.h>

#include "hsmca/error.h"
#include "hsmca/sizes.h"

/* The domain of the approval digest (with its NUL: SHA-256("hsmca-approval-v1\0" || request)). */
#define HSMCA_APPROVAL_DOMAIN "hsmca-approval-v1"

/* out = SHA-256(domain || NUL || the request's bytes as stored). 0, or -1 (out zeroed). */
int hsmca_approval_digest(const unsigned char *request, size_t len,
                          unsigned char out[HSMCA_SHA256_LEN]);

/* 1 if sig (DER ECDSA, at most HSMCA_ECDSA_P256_DER_MAX bytes) by pub verifies over digest. */
int hsmca_approval_sig_valid(EVP_PKEY *pub, const unsigned char digest[HSMCA_SHA256_LEN],
                             const unsigned char *sig, size_t sig_len);

/*
 * An approval's "sig" field: strict base64 (b64.h) of at most HSMCA_ECDSA_P256_DER_MAX bytes.
 * On HSMCA_OK *sig (free()) holds *sig_len bytes; HSMCA_E_BAD_ENCODING, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_approval_sig_decode(const char *b64, unsigned char **sig,
                                                         size_t *sig_len);

/*
 * Separation of duties: 1 if the approver (name, hex SHA-256 of its SPKI) is the requester (its
 * principal name, hex key fingerprint or "" when it had none).
 */
int hsmca_approval_by_requester(const char *approver, const char *approver_fpr,
                                const char *requester, const char *requester_key);

#endif
