/* SPDX-License-Identifier: Apache-2.0
 *
 * pki_common.h -- what the test helpers pki.c and mdl_pki.c share (never used outside tests).
 */
#ifndef HSMCA_TEST_PKI_COMMON_H
#define HSMCA_TEST_PKI_COMMON_H

#include <stddef.h>

#include "hsmca/quorum.h"

/* The three software approvers, m = 2; each key is DIR/<name>.key.pem (`hsmca_pki approve`). */
extern const char *const pki_names[3];

/*
 * The quorum ceremony over the ntok tokens t with the three approvers, whose fresh P-256 keys
 * are written to dir first, under policy[0..plen) and the ceremony id id. 0, or 1 (said on
 * stderr).
 */
int pki_ceremony(struct hsmca_quorum *q, const char *dir, struct hsmca_quorum_token_in *t,
                 size_t ntok, const char *policy, size_t plen, const char *id);

#endif
