/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_revoke.h -- the revocation operations of the quorum (internal to libhsmca; quorum_ops.c's
 * operation table dispatches to them, docs/revocation.md):
 *   ca.revoke {"ca": PAI, "reason"?: RFC 5280 name, "invalidity"?: ms} -- the PAA's token: the
 *             PAI's window closes, it is marked revoked (ca.revoke entry), stops issuing, and the
 *             PAA's CRL is signed with its serial on it (crl.sign entry)
 *   crl.sign  {"ca": CA} -- that CA's token: its CRL is signed now (a PAA's, or a PAI's with no
 *             window open)
 */
#ifndef HSMCA_QUORUM_REVOKE_H
#define HSMCA_QUORUM_REVOKE_H

#include <jansson.h>

#include "hsmca/quorum.h"

/*
 * Check params of op against the store; on HSMCA_OK signer (HSMCA_CA_ID_MAX + 1) names the CA
 * whose token the op needs. HSMCA_E_QUORUM_PARAMS, HSMCA_E_REVOKE_CA_REVOKED.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_qop_revocation_params(struct hsmca_store *st, const char *op,
                                                           json_t *params, int64_t now_ms,
                                                           char *signer);

/* Run op with the signer's token logged in (tok). *result (owned by the caller) is set. */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_qop_revocation_execute(struct hsmca_audit *a, struct hsmca_store *ro, const char *op,
                             json_t *params, const char *request_id, struct hsmca_token *tok,
                             const struct hsmca_quorum_exec *ex, int64_t now_ms, json_t **result);

#endif
