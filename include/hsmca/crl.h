/* SPDX-License-Identifier: Apache-2.0
 *
 * crl.h -- certificate revocation lists signed by a CA key inside its token.
 * Builds RFC 5280 v2 CRLs with what Matter's revocation tooling reads (docs/matter-rules.md
 * "Revocation"): ecdsa-with-SHA256, AuthorityKeyIdentifier = the issuer's SKID, a CRL Number, a
 * nextUpdate, reason codes, and optionally an IssuingDistributionPoint with one http(s) URI. Checks
 * a CRL the way a consumer does before hsmca publishes it.
 */
#ifndef HSMCA_CRL_H
#define HSMCA_CRL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/error.h"
#include "hsmca/store.h"
#include "hsmca/store_certs.h"

/* RFC 5280 5.3.1 CRLReason values; HSMCA_CRL_REASON_NONE omits the extension. */
#define HSMCA_CRL_REASON_NONE (-1)
/* Serial numbers are at most 20 octets (RFC 5280 4.1.2.2). */
#define HSMCA_SERIAL_MAX 20
/* The IDP URI, bounded like Matter's CDP consumer buffer (rule R5). */
#define HSMCA_CRL_URI_MAX 100

struct hsmca_crl_entry {
    unsigned char serial[HSMCA_SERIAL_MAX]; /* big-endian, positive, minimal */
    size_t serial_len;
    time_t revoked_at;
    int reason;        /* 0..10 except 7, or HSMCA_CRL_REASON_NONE */
    time_t invalidity; /* RFC 5280 invalidityDate (time of compromise); 0 = none */
};

/* A growing list of CRL entries (the caller frees e). */
struct hsmca_crl_entries {
    struct hsmca_crl_entry *e;
    size_t n, cap;
};

/*
 * Append the revoked row r to the hsmca_crl_entries at arg as stored (serial, revocation and
 * invalidity time in seconds, reason), at most 1,000,000 (HSMCA_E_TOO_LARGE): the callback for
 * hsmca_store_revoked_list and hsmca_store_mdl_revoked_list.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_entries_add(void *arg, const struct hsmca_revoked_rec *r);

struct hsmca_crl_params {
    X509 *issuer;        /* the CA certificate (borrowed) */
    EVP_PKEY *key;       /* its private key, token-backed (borrowed) */
    uint64_t number;     /* CRL Number, increasing per issuer */
    time_t this_update;  /* thisUpdate */
    time_t next_update;  /* nextUpdate, > this_update */
    const char *idp_uri; /* NULL, or one http(s) URI <= HSMCA_CRL_URI_MAX for the IDP */
};

/* What hsmca_crl_check learned from a valid CRL. */
struct hsmca_crl_info {
    uint64_t number;
    time_t this_update, next_update;
    size_t entries;
};

/*
 * Map an RFC 5280 reason name ("keyCompromise", "cessationOfOperation", ... or "unspecified") to
 * its code. Returns HSMCA_E_CRL_REASON for anything else (including "removeFromCRL", which only
 * delta CRLs use).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_reason_from_name(const char *name, int *reason);
/* The RFC 5280 name of a reason code, or NULL. */
const char *hsmca_crl_reason_name(int reason);

/*
 * Build and sign a CRL over entries[0..n) (n <= 1,000,000). Refuses a revocation time after
 * this_update or before the epoch, a nextUpdate not after thisUpdate, a bad reason, a bad IDP URI.
 * The result is checked with hsmca_crl_check before it is returned.
 * On HSMCA_OK *der_out is a new buffer the caller frees with OPENSSL_free().
 * Returns HSMCA_E_CRL_DATE, HSMCA_E_CRL_REASON, HSMCA_E_INVALID_ARG, HSMCA_E_SIGN_FAILED,
 * HSMCA_E_CRL_INVALID.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_build(const struct hsmca_crl_params *p,
                                               const struct hsmca_crl_entry *entries, size_t n,
                                               unsigned char **der_out, size_t *der_len_out);

/*
 * Check der[0..len) as a CRL of issuer: DER-exact (no trailing bytes), v2, ecdsa-with-SHA256,
 * issuer name equal to the CA's subject, AKID equal to the CA's SKID (Matter R10), a CRL Number,
 * nextUpdate after thisUpdate, and the signature. Returns HSMCA_E_CRL_INVALID,
 * HSMCA_E_CRL_AKID, HSMCA_E_CRL_SIGNATURE; on HSMCA_OK fills *info if not NULL.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_check(const unsigned char *der, size_t len, X509 *issuer,
                                               struct hsmca_crl_info *info);

/*
 * The CRL policy of one CA (policies/crl.json, docs/revocation.md):
 *   {"default": {...}, "<ca id>": {...}} with, each optional:
 *   "next_update_s"    nextUpdate - thisUpdate (default 30 days)
 *   "refresh_before_s" re-sign when less than this is left before nextUpdate and the key is
 *                      reachable (default 7 days); must be < next_update_s
 *   "warn_before_s"    /readyz and the metric warn when less than this is left (default 3 days)
 *   "batch_delay_ms"   re-sign at most this long after a revocation (default 2000)
 *   "url"              the CRL's public URL, "{ca}" replaced by the CA id (<= 100 bytes once
 *                      expanded): the DCL's dataURL; null none
 *   "idp"              true: the CRL carries an issuing distribution point naming url (default
 *                      false: RFC 5280 consumers such as `openssl verify -crl_check` then apply
 *                      the CRL only to certificates whose CRL distribution point names that URL,
 *                      and hsmca's PAIs and DACs carry none; the DCL wants it only when several
 *                      revocation points share one VID and signer)
 * Unknown keys are refused.
 */
struct hsmca_crl_policy {
    uint64_t next_update_s, refresh_before_s, warn_before_s, batch_delay_ms;
    char url[HSMCA_CRL_URI_MAX + 1]; /* expanded; "" = none */
    int idp;                         /* put url in an issuing distribution point */
};
struct hsmca_crl_policies;

/* Load path (NULL or "": the built-in defaults only). HSMCA_E_CRL_POLICY_INVALID. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_policies_load(const char *path,
                                                       struct hsmca_crl_policies **out);
/* Parse the policy JSON text[0..len). HSMCA_E_CRL_POLICY_INVALID. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_policies_parse(const char *text, size_t len,
                                                        struct hsmca_crl_policies **out);
void hsmca_crl_policies_free(struct hsmca_crl_policies *p);
/* The policy of ca (its own entry over "default" over the built-in defaults). */
void hsmca_crl_policy_for(const struct hsmca_crl_policies *p, const char *ca,
                          struct hsmca_crl_policy *out);

/*
 * Make the next CRL of CA ca (its record, certificate included) from what the store says it
 * revoked (hsmca_store_revoked_list: its DACs for a PAI, its revoked PAIs for a PAA): number =
 * the stored CRL's + 1 (1 for the first), thisUpdate = now, nextUpdate = now + policy, the IDP
 * when the policy asks for one and names a URL. Signs with key (the CA's token key). On HSMCA_OK
 * *out is the record to store (hsmca_store_crl_put; caller clears) and *entries_out the number of
 * entries.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_make(struct hsmca_store *ro, const struct hsmca_ca_rec *ca,
                                              EVP_PKEY *key, const struct hsmca_crl_policy *pol,
                                              time_t now, struct hsmca_crl_rec *out,
                                              size_t *entries_out);

#endif
