/* SPDX-License-Identifier: Apache-2.0
 *
 * store_mdl.h -- the mDL CAs (ISO/IEC 18013-5, docs/mdl.md) in the store: IACA roots and the
 * document signers they issued (table mdl_cas, migration 8), and each IACA's latest CRL
 * (mdl_crls). Their own tables, apart from the Matter `cas`, so that nothing of the Matter
 * issuance path can ever pick an mDL key. Writes happen inside audit apply callbacks as every
 * other state change.
 */
#ifndef HSMCA_STORE_MDL_H
#define HSMCA_STORE_MDL_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/store.h"
#include "hsmca/store_certs.h"

struct hsmca_mdl_ca_rec {
    char id[HSMCA_CA_ID_MAX + 1];
    char kind[8];                      /* "iaca" or "ds" */
    char parent[HSMCA_CA_ID_MAX + 1];  /* the IACA of a DS; "" for an IACA */
    char token_uri[HSMCA_URI_MAX + 1]; /* "" for a DS whose key lives with the issuing system */
    char key_uri[HSMCA_URI_MAX + 1];
    unsigned char *cert_der;
    size_t cert_len;
    unsigned char serial[20];
    size_t serial_len;
    int64_t created_ms;
    int revoked;
    int64_t revoked_ms;
    int reason;            /* -1 none */
    int64_t invalidity_ms; /* 0 none */
};

void hsmca_mdl_ca_rec_clear(struct hsmca_mdl_ca_rec *r);

/* Insert a new mDL CA (an id already used by an mDL or a Matter CA is HSMCA_E_EXISTS). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_ca_put(struct hsmca_store *st,
                                                      const struct hsmca_mdl_ca_rec *r);
/* HSMCA_E_NOT_FOUND when there is none. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_ca_get(struct hsmca_store *st, const char *id,
                                                      struct hsmca_mdl_ca_rec *out);
/* Call fn for every mDL CA (IACAs first, then by id); a non-OK return stops and is returned. */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_mdl_ca_list(struct hsmca_store *st,
                        enum hsmca_err (*fn)(void *arg, const struct hsmca_mdl_ca_rec *r),
                        void *arg);
/* Mark DS id revoked. HSMCA_E_REVOKE_ALREADY, HSMCA_E_NOT_FOUND. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_ca_revoke(struct hsmca_store *st, const char *id,
                                                         int64_t revoked_ms, int reason,
                                                         int64_t invalidity_ms);
/* Every DS iaca revoked, in serial order. */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_mdl_revoked_list(struct hsmca_store *st, const char *iaca,
                             enum hsmca_err (*fn)(void *arg, const struct hsmca_revoked_rec *r),
                             void *arg);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_crl_put(struct hsmca_store *st, const char *ca,
                                                       const struct hsmca_crl_rec *crl);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_crl_get(struct hsmca_store *st, const char *ca,
                                                       struct hsmca_crl_rec *out);

#endif
