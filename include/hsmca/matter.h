/* SPDX-License-Identifier: Apache-2.0
 *
 * matter.h -- Matter device attestation certificates (PAA, PAI, DAC): the rules of
 * docs/matter-rules.md enforced in code, builders that sign through the token layer, a
 * per-PAI issuer context for the DAC hot path, a dry-run (lint) of a DAC request, and the chain
 * validator behind `hsmca verify`. Never signs a certificate that it would not accept itself, and
 * never copies a subject from a CSR.
 */
#ifndef HSMCA_MATTER_H
#define HSMCA_MATTER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/csr.h"
#include "hsmca/error.h"
#include "hsmca/profile.h"
#include "hsmca/sizes.h"

/* connectedhomeip AttestationVerificationResult values used as verdict sub-codes. */
#define HSMCA_CHIP_SUCCESS 0
#define HSMCA_CHIP_PAA_NOT_FOUND 101
#define HSMCA_CHIP_PAA_FORMAT_INVALID 105
#define HSMCA_CHIP_PAI_FORMAT_INVALID 203
#define HSMCA_CHIP_PAI_VENDOR_ID_MISMATCH 205
#define HSMCA_CHIP_PAI_MISSING 207
#define HSMCA_CHIP_DAC_EXPIRED 300
#define HSMCA_CHIP_DAC_SIGNATURE_INVALID 301
#define HSMCA_CHIP_DAC_FORMAT_INVALID 303
#define HSMCA_CHIP_DAC_VENDOR_ID_MISMATCH 305
#define HSMCA_CHIP_DAC_PRODUCT_ID_MISMATCH 306
#define HSMCA_CHIP_INVALID_ARGUMENT 701

/* Serial numbers: 16 bytes, 6 of issue time (first byte 0x40..0x7F) then 80 random bits. */
#define HSMCA_MATTER_SERIAL_LEN 16

/* A Matter VID/PID pair as read from a subject (OIDs, else the legacy CN encoding). */
struct hsmca_matter_vidpid {
    int has_vid, has_pid;
    uint16_t vid, pid;
};

/*
 * Why a certificate or chain was refused. rule is a static string naming the rule of the rule
 * sheet ("C7", "N9", "V3", ...) or a per-type rule ("pai-pathlen", "dac-key-usage", ...); cert is
 * "paa", "pai", "dac" or "chain"; chip is the connectedhomeip AttestationVerificationResult;
 * detail is a short English sentence (no untrusted bytes beyond hex VID/PID values).
 */
struct hsmca_matter_verdict {
    enum hsmca_err code; /* HSMCA_OK or the 4xx code returned */
    const char *rule;
    const char *cert;
    int chip;
    char detail[160];
};

/*
 * Parse one certificate from in[0..len) given as DER or as exactly one PEM CERTIFICATE block.
 * len <= HSMCA_MATTER_INPUT_MAX. The certificate itself may be larger than 600 bytes here: that
 * limit (C13) is a verdict of the validator, not a parse error. On HSMCA_OK the caller frees *out
 * with X509_free. Returns HSMCA_E_MATTER_CERT_MALFORMED (not a certificate, trailing bytes, more
 * than one PEM block), HSMCA_E_TOO_LARGE.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_cert_parse(const unsigned char *in, size_t len,
                                                       X509 **out);

/*
 * Read the VID/PID of x's subject with connectedhomeip's precedence: Matter OID attributes
 * (N1-N5); if neither is present, the first common name's legacy "Mvid:XXXX"/"Mpid:XXXX"
 * encoding within its first 64 bytes (N8-N10). Returns HSMCA_E_MATTER_DN on a malformed value or
 * duplicate attribute (rule in *v if v is not NULL). *out is written only on HSMCA_OK.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_get_vidpid(X509 *x, struct hsmca_matter_vidpid *out,
                                                       struct hsmca_matter_verdict *v);

/*
 * docs/matter-rules.md's C, N and per-type rules for one certificate of type t (no chain or time).
 * Returns HSMCA_OK, HSMCA_E_MATTER_FORMAT, HSMCA_E_MATTER_DN or HSMCA_E_MATTER_CERT_TOO_LARGE with
 * *v saying which rule failed (v must not be NULL).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_check_format(X509 *x, enum hsmca_profile_type t,
                                                         struct hsmca_matter_verdict *v);

/* What the device reports in Basic Information; a commissioner compares it with the DAC. */
struct hsmca_matter_expect {
    int has_vid, has_pid;
    uint16_t vid, pid;
};

/*
 * Validate DAC -> PAI -> PAA like a Matter commissioner (DefaultDACVerifier + chip-cert
 * validate-att-cert): formats, VID/PID consistency (and against expect, may be NULL), PAA chosen
 * by the PAI's AKID (paa NULL means "not in the trust store"), DAC valid at now, chain signatures
 * and names with the chain judged at the DAC's notBefore, then OpenSSL strict path validation at
 * that time as a second opinion. pai NULL is a verdict (kPaiMissing), dac NULL is
 * HSMCA_E_INVALID_ARG. Returns HSMCA_OK or the code of the first failed rule, with *v filled
 * either way. Thread-safe; the certificates are not modified (OpenSSL may cache extensions).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_validate(X509 *dac, X509 *pai, X509 *paa,
                                                     const struct hsmca_matter_expect *expect,
                                                     time_t now, struct hsmca_matter_verdict *v);

/*
 * The same from encoded certificates (each DER or one PEM block, <= HSMCA_MATTER_INPUT_MAX bytes;
 * pai/paa may be NULL): a certificate that does not parse is a verdict (rule "der",
 * HSMCA_E_MATTER_CERT_MALFORMED, sub-code the type's format code), as for a commissioner.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_validate_der(const unsigned char *dac, size_t dac_len,
                                                         const unsigned char *pai, size_t pai_len,
                                                         const unsigned char *paa, size_t paa_len,
                                                         const struct hsmca_matter_expect *expect,
                                                         time_t now,
                                                         struct hsmca_matter_verdict *v);

/* A verdict as JSON {"valid", "code", "rule", "cert", "chip_code", "detail"}; NULL on NOMEM. */
json_t *hsmca_matter_verdict_json(const struct hsmca_matter_verdict *v);

/* Subject of a PAA or PAI: common name (<= HSMCA_MATTER_CN_MAX bytes of UTF-8, NULL = the
 * profile's template) and the VID/PID scope. */
struct hsmca_matter_ca_subject {
    const char *cn;
    int has_vid, has_pid;
    uint16_t vid, pid;
};

/*
 * Build the self-signed PAA for the token key (priv: token-backed private key; pub: its public
 * half) with profile p (type PAA), valid from now - p->backdate. serial_out (16 bytes) receives
 * the serial. The result passed hsmca_matter_check_format and its own signature check before it
 * is returned. On HSMCA_OK the caller frees *out with X509_free. Returns HSMCA_E_INVALID_ARG,
 * HSMCA_E_MATTER_SCOPE (subject breaks a profile/type rule), HSMCA_E_SIGN_FAILED,
 * HSMCA_E_MATTER_SELF_CHECK, HSMCA_E_RANDOM, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_paa_build(const struct hsmca_profile *p,
                                                      const struct hsmca_matter_ca_subject *s,
                                                      EVP_PKEY *priv, EVP_PKEY *pub, time_t now,
                                                      unsigned char *serial_out, X509 **out);

/*
 * Build a PAI for pai_pub (a token key's public half), signed by the PAA's token key paa_priv,
 * with profile p (type PAI). The PAI must carry a VID, equal to the PAA's VID if it has one.
 * Same contract as hsmca_matter_paa_build; the result is checked against the PAA (format, VID,
 * AKID, names, signature) before it is returned.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_pai_build(const struct hsmca_profile *p,
                                                      const struct hsmca_matter_ca_subject *s,
                                                      EVP_PKEY *pai_pub, X509 *paa,
                                                      EVP_PKEY *paa_priv, time_t now,
                                                      unsigned char *serial_out, X509 **out);

/* Per-PAI issuer context for the DAC hot path (immutable once made; shared by threads). */
struct hsmca_matter_issuer;

/*
 * Make the issuer context of one PAI: validates pai against paa (both formats, VID rules, AKID,
 * signature), checks that pai_priv is the PAI's key (a test signature verified with the PAI's
 * public key), copies the issuer name, SKID, VID/PID scope and validity, and keeps the DAC profile
 * (copied). pai_priv is borrowed: keep the token key alive until hsmca_matter_issuer_free.
 * On HSMCA_OK the caller frees *out with hsmca_matter_issuer_free. Returns the validator codes,
 * HSMCA_E_MATTER_KEY_MISMATCH, HSMCA_E_INVALID_ARG, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_issuer_new(const struct hsmca_profile *dac_profile,
                                                       X509 *pai, X509 *paa, EVP_PKEY *pai_priv,
                                                       struct hsmca_matter_issuer **out);
void hsmca_matter_issuer_free(struct hsmca_matter_issuer *is);

/* Signs a SHA-256 digest with the PAI's key: a DER ECDSA-Sig-Value into sig[0..*sig_len). */
typedef enum hsmca_err (*hsmca_matter_sign_fn)(void *arg,
                                               const unsigned char dgst[HSMCA_SHA256_LEN],
                                               unsigned char *sig, size_t sig_max, size_t *sig_len);

/*
 * Sign the template path's digests with fn(arg, ...) instead of EVP_PKEY_sign on pai_priv: a way to
 * the same key without libp11's glue (hsmca_key_sign_digest). One test signature is made through
 * fn and verified with the PAI's public key first; on failure the issuer is unchanged
 * (HSMCA_E_MATTER_KEY_MISMATCH, or fn's error). arg is borrowed like pai_priv. Call before the
 * issuer is shared between threads. The X509 builds (first DAC per PID, HSMCA_MATTER_FULL_BUILD)
 * still sign through pai_priv.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_issuer_set_signer(struct hsmca_matter_issuer *is,
                                                              hsmca_matter_sign_fn fn, void *arg);
/* The issuer's DAC profile (its own copy, for the issuer's life). */
const struct hsmca_profile *hsmca_matter_issuer_profile(const struct hsmca_matter_issuer *is);

/* The issuer's PAI (borrowed) and its VID/PID scope. */
X509 *hsmca_matter_issuer_pai(const struct hsmca_matter_issuer *is);
struct hsmca_matter_vidpid hsmca_matter_issuer_scope(const struct hsmca_matter_issuer *is);

/* How many DAC templates (one per PID, at most 8) the issuer has made (tests and metrics). */
unsigned hsmca_matter_issuer_templates(const struct hsmca_matter_issuer *is);

/* Flags of hsmca_matter_dac_build. */
#define HSMCA_MATTER_VERIFY_SIGNATURE 0x1u /* re-verify the DAC signature with the PAI key */
#define HSMCA_MATTER_FULL_BUILD 0x2u       /* build through X509 objects, not the template */
#define HSMCA_MATTER_SERIAL_IN 0x4u        /* use serial_out's 16 bytes as the serial */

/* One DAC request. pid_given = 0 means "the PAI's PID" (refused if the PAI has none). */
struct hsmca_matter_dac_request {
    const struct hsmca_csr *csr; /* parsed and checked by hsmca_csr_parse */
    int pid_given;
    uint16_t pid;
    time_t now;
    /* The per-device subject value (NULL: none), placed where the DAC profile says
     * (subject.device_id) once hsmca_matter_dac_device_id accepts it. A DAC with one is always
     * built through X509 objects (its subject differs from every template's). */
    const char *device_id;
};

/*
 * The per-device subject value of one DAC under profile p: requested (NULL: none given), else,
 * when the profile says from_csr, the value of its attribute in the CSR's subject (csr may be
 * NULL; two such attributes are refused); then checked (hsmca_profile_device_id_check). On
 * HSMCA_OK *has says whether there is one, copied into out[0..out_size). Returns
 * HSMCA_E_DEVICE_ID_PATTERN, HSMCA_E_DEVICE_ID_RULE (why, if not NULL, says why, never
 * quoting the value), HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_dac_device_id(const struct hsmca_profile *p,
                                                          const struct hsmca_csr *csr,
                                                          const char *requested, int *has,
                                                          char *out, size_t out_size, char *why,
                                                          size_t why_len);

/*
 * A serial as hsmca issues them: 6 bytes of the issue time ms (milliseconds since 1970, masked to
 * 46 bits, with bit 46 set: positive, first byte never zero, rising with time), then 10 bytes (80
 * bits) from the CSPRNG. HSMCA_E_RANDOM, HSMCA_E_INVALID_ARG (out NULL, ms negative).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_serial(int64_t ms,
                                                   unsigned char out[HSMCA_MATTER_SERIAL_LEN]);

/*
 * Build and sign one DAC: subject from the profile and the PAI scope (never from the CSR),
 * VID from the PAI, PID from the request and the PAI scope, key from the CSR, serial made by
 * hsmca_matter_serial at the current time and written to serial_out (or, with
 * HSMCA_MATTER_SERIAL_IN, taken from it). Signs with the
 * issuer's token key (the one ECDSA in the token). The first DAC per PID is built through X509
 * objects, signed, and checked by the full validator (format, VID/PID, links, signature); it
 * becomes the PID's template, and later DACs patch a copy of its TBS (serial, validity, key,
 * SKID), each patched field checked where it is made. HSMCA_MATTER_FULL_BUILD builds through X509
 * objects and re-checks the result with the format and chain rules every time;
 * HSMCA_MATTER_VERIFY_SIGNATURE adds the signature check against the PAI key on either path. On
 * HSMCA_OK *der_out (caller frees with OPENSSL_free) holds the DER of *der_len bytes. Returns
 * HSMCA_E_MATTER_SCOPE (CSR VID/PID outside the PAI scope, missing or mismatched PID),
 * HSMCA_E_MATTER_ISSUER_VALIDITY, HSMCA_E_SIGN_FAILED, HSMCA_E_MATTER_SELF_CHECK, HSMCA_E_RANDOM,
 * HSMCA_E_INVALID_ARG, HSMCA_E_NOMEM. Thread-safe.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_dac_build(const struct hsmca_matter_issuer *is,
                                                      const struct hsmca_matter_dac_request *r,
                                                      unsigned flags, unsigned char *serial_out,
                                                      unsigned char **der_out, size_t *der_len);

/*
 * Dry run of a DAC request: csr[0..csr_len) (raw bytes, parsed here), requested PID (pid_given
 * as above), device_id (NULL: none) as in hsmca_matter_dac_request. Signs nothing. *out (caller
 * json_decref) is
 * {"ok": bool, "dac": {"subject", "vid", "pid", "not_before", "not_after", "serial": "random
 * 16 bytes", "extensions": [...], "public_key_sha256"} (or null when no key is usable),
 * "problems": [{"rule", "code", "detail"}, ...]} with EVERY rule the request breaks.
 * Returns HSMCA_OK whenever *out was made (problems or not), HSMCA_E_NOMEM, HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_matter_dac_lint(const struct hsmca_matter_issuer *is,
                                                     const unsigned char *csr, size_t csr_len,
                                                     int pid_given, uint16_t pid,
                                                     const char *device_id, time_t now,
                                                     json_t **out);

#endif
