/* SPDX-License-Identifier: Apache-2.0
 *
 * matter_tbs.h -- the to-be-signed certificate of a PAA or PAI, fixed when a quorum request is
 * made and shown to its approvers (docs/renewal.md): its notBefore and serial are chosen at the
 * request, the rest follows from the profile, the subject, the parent and the key, so the
 * execution builds exactly the certificate the approvers saw and signed (the description is in
 * the request's params, which the approval signature covers) or nothing.
 */
#ifndef HSMCA_MATTER_TBS_H
#define HSMCA_MATTER_TBS_H

#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/error.h"
#include "hsmca/matter.h"
#include "hsmca/profile.h"

/* What a request fixes of a CA certificate beyond the profile and the subject. */
struct hsmca_matter_ca_fixed {
    time_t not_before; /* seconds since the epoch (UTC): the request's time - profile backdate */
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
};

/* notBefore = now - p->backdate and a fresh serial. HSMCA_E_RANDOM, HSMCA_E_INVALID_ARG. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_ca_fix(const struct hsmca_profile *p, time_t now,
                                                   struct hsmca_matter_ca_fixed *out);

/*
 * Build and sign a PAA (parent NULL, self-signed by signer) or a PAI (signed by the PAA parent's
 * key signer) for pub with the fixed notBefore and serial; same checks and codes as
 * hsmca_matter_paa_build / hsmca_matter_pai_build.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_matter_ca_build_fixed(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                            EVP_PKEY *pub, X509 *parent, EVP_PKEY *signer,
                            const struct hsmca_matter_ca_fixed *f, X509 **out);

/*
 * The description of x's to-be-signed fields, as an approver reads them: {"version", "serial"
 * (hex), "signature_algorithm", "issuer", "subject", "not_before", "not_after" (ISO 8601 UTC),
 * "public_key", "extensions": ["name (critical): value", ...]}. key_known 0: the key is made at
 * execution, so "public_key" and the key identifiers derived from it say so instead of their
 * values. NULL when out of memory or x is not a certificate it can read.
 */
json_t *hsmca_matter_ca_describe(X509 *x, int key_known);

/*
 * The description of the certificate hsmca_matter_ca_build_fixed would make with these inputs;
 * pub NULL: a key made at execution (described as such). On HSMCA_OK *out (json_decref). Returns
 * the builder's codes (HSMCA_E_MATTER_SCOPE...).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_ca_preview(const struct hsmca_profile *p,
                                                       const struct hsmca_matter_ca_subject *s,
                                                       EVP_PKEY *pub, X509 *parent,
                                                       const struct hsmca_matter_ca_fixed *f,
                                                       json_t **out);

/* The fixed inputs back from a description (its "serial" and "not_before"). HSMCA_E_INVALID_ARG
 * when they are missing or malformed. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_ca_fixed_of(const json_t *tbs,
                                                        struct hsmca_matter_ca_fixed *out);

#endif
