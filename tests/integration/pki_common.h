/* SPDX-License-Identifier: Apache-2.0
 *
 * pki_common.h -- what the test helpers pki.c and mdl_pki.c share (never used outside tests).
 */
#ifndef HSMCA_TEST_PKI_COMMON_H
#define HSMCA_TEST_PKI_COMMON_H

#include <stddef.h>

#include "hsmca/audit.h"
#include "hsmca/quorum.h"
#include "hsmca/store.h"
#include "hsmca/token.h"

/* The three software approvers, m = 2; each key is DIR/<name>.key.pem (`hsmca_pki approve`). */
extern const char *const pki_names[3];

/* Open DIR/hsmca.db, or the store $HSMCA_TEST_STORE_SPEC names (PostgreSQL). */
enum hsmca_err pki_store_open(const char *dir, struct hsmca_store **st);

/*
 * The audit token hsmca-audit logged in with the PIN in DIR/audit.pin, its key audit-key, the
 * audit log on st (genesis detail {"ceremony": id}) and the quorum over it. 0, or 1 (said on
 * stderr).
 */
int pki_log_open(const char *dir, struct hsmca_p11 *p11, struct hsmca_store *st, const char *id,
                 struct hsmca_token **ta, struct hsmca_key **ka, struct hsmca_audit **a,
                 struct hsmca_quorum **q);

/*
 * The quorum ceremony over the ntok tokens t with the three approvers, whose fresh P-256 keys
 * are written to dir first, under policy[0..plen) and the ceremony id id. 0, or 1 (said on
 * stderr).
 */
int pki_ceremony(struct hsmca_quorum *q, const char *dir, struct hsmca_quorum_token_in *t,
                 size_t ntok, const char *policy, size_t plen, const char *id);

#endif
