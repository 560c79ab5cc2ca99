/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_internal.h -- what audit.c (writer, checkpoints, anchor), audit_extract.c (bundles) and
 * audit_verify.c (line scanner, checkpoint parser, extract verifier) share. Not installed.
 */
#ifndef HSMCA_AUDIT_INTERNAL_H
#define HSMCA_AUDIT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "hsmca/audit.h"

#define AUDIT_ANCHOR_LABEL "hsmca-audit-anchor"
#define AUDIT_META_PUBKEY "audit.pubkey"
#define AUDIT_TIME_LEN 24 /* 2026-01-02T03:04:05.678Z */

/* Format ms since the epoch as AUDIT_TIME_LEN chars + NUL into out[25+]. */
void audit_time_format(int64_t ms, char *out);

/* SHA-256 of the audit key's SubjectPublicKeyInfo DER. */
HSMCA_MUSTCHECK enum hsmca_err audit_key_id(EVP_PKEY *pub, unsigned char out[32]);

/* Verify a DER ECDSA signature over SHA-256(data) with pub. HSMCA_E_AUDIT_CHECKPOINT_SIG. */
HSMCA_MUSTCHECK enum hsmca_err audit_sig_verify(EVP_PKEY *pub, const void *data, size_t len,
                                                const unsigned char *sig, size_t sig_len);

/* audit.c, for audit_extract.c: the handle's store and audit certificate (borrowed). */
struct hsmca_store *audit_store(struct hsmca_audit *a);
const char *audit_cert(struct hsmca_audit *a);

#endif
