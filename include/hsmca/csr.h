/* SPDX-License-Identifier: Apache-2.0
 *
 * csr.h -- intake of PKCS#10 certificate requests from untrusted clients (factories).
 * Accepts DER or one PEM block, at most HSMCA_CSR_MAX bytes, DER-exact, version 1, an EC P-256 key
 * and a valid ecdsa-with-SHA256 self-signature (proof of possession). Everything else is refused
 * with its own error code. Only the key (and the hash of the request) goes further: the DAC's
 * subject is never copied from a CSR.
 */
#ifndef HSMCA_CSR_H
#define HSMCA_CSR_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/error.h"

struct hsmca_csr;

/*
 * Parse and check in[0..len). len > HSMCA_CSR_MAX is refused before any parsing.
 * On HSMCA_OK the caller frees *out with hsmca_csr_free(). Returns HSMCA_E_CSR_TOO_LARGE,
 * HSMCA_E_CSR_PEM, HSMCA_E_CSR_MALFORMED, HSMCA_E_CSR_TRAILING, HSMCA_E_CSR_VERSION,
 * HSMCA_E_CSR_KEY_TYPE, HSMCA_E_CSR_CURVE, HSMCA_E_CSR_SIG_ALG, HSMCA_E_CSR_SIGNATURE, in that
 * order of checking.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_csr_parse(const unsigned char *in, size_t len,
                                               struct hsmca_csr **out);

/* Free a parsed request. NULL is a no-op. */
void hsmca_csr_free(struct hsmca_csr *csr);

/* The request's public key (borrowed until hsmca_csr_free). Made on the first call (the parse
 * checks the proof of possession without it); NULL only if memory runs out. Thread-safe. */
EVP_PKEY *hsmca_csr_pubkey(const struct hsmca_csr *csr);
/* The request's subject name, and its SubjectPublicKeyInfo exactly as encoded (borrowed). */
const X509_NAME *hsmca_csr_subject(const struct hsmca_csr *csr);
const X509_PUBKEY *hsmca_csr_x509_pubkey(const struct hsmca_csr *csr);
/* The exact DER of the request (borrowed), and its SHA-256. */
const unsigned char *hsmca_csr_der(const struct hsmca_csr *csr, size_t *len_out);
const unsigned char *hsmca_csr_sha256(const struct hsmca_csr *csr);

#endif
