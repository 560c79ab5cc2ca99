/* SPDX-License-Identifier: Apache-2.0
 *
 * mdl_ca.h -- the mDL CA operations (docs/mdl.md) as the quorum runs them, once the tokens they
 * need are logged in: create an IACA (key generated in its own token), create a DS (key generated
 * in a token, or a CSR from the issuing system), revoke a DS, sign an IACA's CRL. Each is audited
 * (mdl.keygen intent/ok, mdl.ca.create, mdl.ds.revoke, mdl.crl.sign) with its store change in the
 * same transaction (store_mdl.h). The caller owns the tokens and their logins.
 */
#ifndef HSMCA_MDL_CA_H
#define HSMCA_MDL_CA_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/error.h"
#include "hsmca/mdl.h"
#include "hsmca/store.h"
#include "hsmca/store_mdl.h"
#include "hsmca/token.h"

struct hsmca_mdl_ctx {
    struct hsmca_audit *audit;
    struct hsmca_store *ro; /* a read handle */
    const struct hsmca_mdl_profile *iaca_profile, *ds_profile;
    const char *request_id; /* the quorum request, named in the entries ("" none) */
    int64_t now_ms;
};

/*
 * Generate the IACA key (key_label) in tok (logged in; its URI token_uri), build the IACA under
 * the IACA profile for subject s, check it, store it as ca_id. On HSMCA_OK *out (clear with
 * hsmca_mdl_ca_rec_clear) is the new record. HSMCA_E_EXISTS when the id is taken.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_mdl_ca_create_iaca(const struct hsmca_mdl_ctx *c, struct hsmca_token *tok,
                         const char *token_uri, const char *ca_id, const char *key_label,
                         const struct hsmca_mdl_subject *s, struct hsmca_mdl_ca_rec *out);

/*
 * Issue DS ca_id under IACA iaca_id (its token iaca_tok logged in). Either ds_tok (logged in,
 * URI ds_token_uri) gets a new key key_label, or csr_der[0..csr_len) (a PKCS#10 whose signature
 * verifies, P-256) gives the public key and the DS has no key in hsmca (it cannot sign MSOs
 * here). cn NULL: the profile's. The result passes hsmca_mdl_check against the IACA.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_mdl_ca_create_ds(const struct hsmca_mdl_ctx *c, struct hsmca_token *iaca_tok,
                       const char *iaca_id, struct hsmca_token *ds_tok, const char *ds_token_uri,
                       const char *key_label, const unsigned char *csr_der, size_t csr_len,
                       const char *ca_id, const char *cn, struct hsmca_mdl_ca_rec *out);

/* Revoke DS ds_id (reason -1 none, invalidity_ms 0 none): it goes on its IACA's next CRL.
 * HSMCA_E_REVOKE_ALREADY, HSMCA_E_NOT_FOUND, HSMCA_E_MDL_NOT_DS. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_ca_revoke_ds(const struct hsmca_mdl_ctx *c,
                                                      const char *ds_id, int reason,
                                                      int64_t invalidity_ms);

/*
 * Sign IACA iaca_id's next CRL (number + 1) with its key in iaca_tok (logged in), listing every
 * DS it revoked (crl.c's builder, checked before it is stored), nextUpdate per pol. On HSMCA_OK
 * *out (may be NULL; clear with hsmca_crl_rec_clear) is the stored CRL.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_mdl_crl_sign(const struct hsmca_mdl_ctx *c,
                                                  struct hsmca_token *iaca_tok, const char *iaca_id,
                                                  const struct hsmca_crl_policy *pol,
                                                  struct hsmca_crl_rec *out);

#endif
