/* SPDX-License-Identifier: Apache-2.0
 *
 * mdl.h -- mobile driving licences (ISO/IEC 18013-5): the IACA root and document-signer (DS)
 * certificates of Annex B, their profiles as data (policies/profiles/mdl-{iaca,ds}.json, checked
 * against the standard's rules at load), a rule-by-rule check of an IACA -> DS chain, and the
 * IssuerAuth: a COSE_Sign1 (ES256, the DS certificate in the unprotected x5chain header) over an
 * mdoc's Mobile Security Object. docs/mdl.md lists every rule. CBOR goes through libcbor
 * (mdl_cose.c only). Owns no state; the keys stay in their tokens (EVP_PKEY from
 * hsmca_key_private, or hsmca_key_sign_digest).
 */
#ifndef HSMCA_MDL_H
#define HSMCA_MDL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"

/* The mDL document-signer extended key usage (ISO/IEC 18013-5 Annex B). */
#define HSMCA_MDL_EKU_DS "1.0.18013.5.1.2"
#define HSMCA_MDL_IACA_MAX_DAYS 7305u /* 20 years */
#define HSMCA_MDL_DS_MAX_DAYS 457u
#define HSMCA_MDL_PROFILE_MAX 8192u
#define HSMCA_MDL_URL_MAX 255u
#define HSMCA_MDL_NAME_MAX 64u
#define HSMCA_MDL_MSO_MAX 65536u /* bytes of an MSO the signing route takes */

enum hsmca_mdl_type {
    HSMCA_MDL_IACA = 0,
    HSMCA_MDL_DS = 1,
};

/* Curves Annex B allows for IACA and DS keys (bits of hsmca_mdl_profile.curves). */
#define HSMCA_MDL_CURVE_P256 0x01u
#define HSMCA_MDL_CURVE_P384 0x02u
#define HSMCA_MDL_CURVE_P521 0x04u
#define HSMCA_MDL_CURVE_BP256 0x08u
#define HSMCA_MDL_CURVE_BP320 0x10u
#define HSMCA_MDL_CURVE_BP384 0x20u
#define HSMCA_MDL_CURVE_BP512 0x40u

struct hsmca_mdl_profile {
    char name[HSMCA_MDL_NAME_MAX + 1];
    enum hsmca_mdl_type type;
    char cn_default[HSMCA_MDL_NAME_MAX + 1]; /* commonName when the request names none */
    uint32_t days;                           /* validity, <= 7305 (IACA) or 457 (DS) */
    uint32_t backdate;                       /* seconds notBefore lies before now */
    unsigned curves;                         /* HSMCA_MDL_CURVE_* the profile accepts */
    /* issuerAlternativeName: one URI or one rfc822 name; "{ca}" expands to the IACA's id */
    char ian[HSMCA_MDL_URL_MAX + 1];
    int ian_is_email;
    /* CRLDistributionPoints fullName URI of the IACA's CRL; "{ca}" expands to the IACA's id */
    char crl_url[HSMCA_MDL_URL_MAX + 1];
};

/*
 * Parse a profile (len <= HSMCA_MDL_PROFILE_MAX). Unknown or missing fields and duplicate keys
 * are HSMCA_E_PROFILE_INVALID; a field the standard forbids (an IACA keyUsage other than
 * keyCertSign+cRLSign, a DS EKU that is not critical or not 1.0.18013.5.1.2, validity over the
 * limit, a curve Annex B does not list, a non-critical basicConstraints...) is HSMCA_E_PROFILE_RULE
 * with the rule written into why (may be NULL). On HSMCA_OK fills *out.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_profile_parse(const char *json, size_t len,
                                                       struct hsmca_mdl_profile *out, char *why,
                                                       size_t why_size);
HSMCA_MUSTCHECK enum hsmca_err
hsmca_mdl_profile_load(const char *path, struct hsmca_mdl_profile *out, char *why, size_t why_size);

/* The subject of an IACA (the DS copies country and state from its IACA). */
struct hsmca_mdl_subject {
    const char *country; /* ISO 3166-1 alpha-2, upper case (required) */
    const char *state;   /* stateOrProvinceName or NULL */
    const char *org;     /* organizationName or NULL */
    const char *cn;      /* commonName or NULL for the profile's default */
};

/*
 * Build the self-signed IACA root for key pub (private half priv, in its token) under profile p
 * (type IACA), for CA id ca_id (expands "{ca}"), valid from now - backdate. The serial is 20
 * random bytes (positive, >= 63 bits of entropy). Checks the result with hsmca_mdl_check before
 * returning it. On HSMCA_OK *out is the new certificate. Returns HSMCA_E_INVALID_ARG (a country
 * that is not two upper-case letters, names too long), HSMCA_E_MDL_PROFILE_VIOLATION, crypto
 * codes.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_iaca_build(const struct hsmca_mdl_profile *p,
                                                    const struct hsmca_mdl_subject *s,
                                                    const char *ca_id, EVP_PKEY *priv,
                                                    EVP_PKEY *pub, time_t now, X509 **out);

/*
 * Build a DS certificate for pub under profile p (type DS), issued by iaca (whose key priv
 * signs; iaca_id expands "{ca}" in the CRL URL and issuer name). cn NULL: the profile's
 * default. Never valid beyond the IACA. Checked with hsmca_mdl_check before it is returned.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_ds_build(const struct hsmca_mdl_profile *p, const char *cn,
                                                  const char *iaca_id, EVP_PKEY *pub, X509 *iaca,
                                                  EVP_PKEY *priv, time_t now, X509 **out);

/* One broken rule. */
struct hsmca_mdl_finding {
    char cert[8];  /* "iaca" or "ds" */
    char rule[40]; /* e.g. "ds-eku", "iaca-country" (docs/mdl.md) */
    char detail[160];
};

#define HSMCA_MDL_FINDINGS_MAX 48
struct hsmca_mdl_report {
    size_t n;
    size_t dropped; /* findings beyond HSMCA_MDL_FINDINGS_MAX */
    struct hsmca_mdl_finding f[HSMCA_MDL_FINDINGS_MAX];
};

/*
 * Check iaca (and ds, if not NULL, as issued by iaca) against Annex B, listing every broken rule
 * in *r (emptied first). now != 0: also the validity at that time (iaca-expired, ds-expired...).
 * Returns HSMCA_OK when no rule is broken, HSMCA_E_MDL_PROFILE_VIOLATION otherwise,
 * HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_check(X509 *iaca, X509 *ds, time_t now,
                                               struct hsmca_mdl_report *r);

/* ---- the Mobile Security Object and its IssuerAuth (mdl_cose.c, libcbor) ---- */

/* What the MSO says, as far as the signer checks it. */
struct hsmca_mdl_mso_info {
    char doc_type[128];
    char digest_alg[16];
    int64_t signed_s, valid_from_s, valid_until_s;  /* seconds since the epoch */
    unsigned char payload_sha256[HSMCA_SHA256_LEN]; /* of the COSE payload bytes */
};

/*
 * Check an MSO (len <= HSMCA_MDL_MSO_MAX): either MobileSecurityObject CBOR or
 * MobileSecurityObjectBytes (#6.24(bstr .cbor MobileSecurityObject)). One well-formed definite
 * item, nothing after it; a map with version "1.0", digestAlgorithm SHA-256/384/512, valueDigests,
 * deviceKeyInfo.deviceKey, docType, validityInfo {signed, validFrom, validUntil} (tdate, tag 0)
 * with signed <= validFrom < validUntil. On HSMCA_OK *payload (free()) is the COSE payload (the
 * tag-24 form) and *info is filled. Returns HSMCA_E_MDL_MSO_INVALID (why says what), HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_mso_check(const unsigned char *in, size_t len,
                                                   unsigned char **payload, size_t *payload_len,
                                                   struct hsmca_mdl_mso_info *info, char *why,
                                                   size_t why_size);

/* SHA-256 of the COSE Sig_structure ["Signature1", protected {1: -7}, h'', payload] the
 * IssuerAuth signs: what a caller sending only a digest must send. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_tbs_digest(const unsigned char *payload,
                                                    size_t payload_len,
                                                    unsigned char out[HSMCA_SHA256_LEN]);

/*
 * Assemble the untagged COSE_Sign1 [protected {1: -7}, {33: ds_der}, payload or nil (payload
 * NULL: detached), signature] from a DER ECDSA-Sig-Value over the tbs digest (as the token gives
 * it), converted to the 64-byte r||s form. On HSMCA_OK *out (free()).
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_mdl_sign1_assemble(const unsigned char *payload, size_t payload_len,
                         const unsigned char *ds_der, size_t ds_len, const unsigned char *sig_der,
                         size_t sig_der_len, unsigned char **out, size_t *out_len);

/*
 * Verify an IssuerAuth: a COSE_Sign1 with alg ES256, one x5chain certificate, an attached
 * payload (or detached_payload when the message's payload is nil), and a valid signature by that
 * certificate's key. If ds is not NULL the x5chain certificate must be ds. Returns HSMCA_OK,
 * HSMCA_E_MDL_COSE_INVALID, HSMCA_E_MDL_SIGNATURE_INVALID.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_sign1_verify(const unsigned char *cose, size_t len,
                                                      const unsigned char *detached_payload,
                                                      size_t detached_len, X509 *ds);

/* ECDSA DER -> raw r||s of 2*field bytes (P-256: 64). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_sig_raw(const unsigned char *der, size_t len,
                                                 unsigned char out[64]);

#endif
