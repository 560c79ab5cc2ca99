/* SPDX-License-Identifier: Apache-2.0
 *
 * revoke.h -- the rules of a certificate revocation, apart from any transport: the serial is one
 * the CA issued (else HSMCA_E_REVOKE_SERIAL_UNKNOWN, 404), not revoked yet (else
 * HSMCA_E_REVOKE_ALREADY, 409: a revocation is never changed or repeated), an RFC 5280 reason,
 * a revocation time and an optional invalidityDate (the time of compromise) that are not in the
 * future, the invalidityDate not after the revocation. The daemon's route and the quorum's
 * ca.revoke both use it; the store change runs inside the revocation's audit entry.
 */
#ifndef HSMCA_REVOKE_H
#define HSMCA_REVOKE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/store.h"

struct hsmca_revocation {
    char ca[HSMCA_CA_ID_MAX + 1];
    unsigned char serial[20];
    size_t serial_len;
    int64_t revoked_ms;
    int reason;            /* RFC 5280 code; "unspecified" (0) when none was given */
    int64_t invalidity_ms; /* 0 = none */
};

/*
 * Check a DAC revocation against the store (a read handle) and fill *out. serial_hex: 1..20
 * bytes of hex; reason: an RFC 5280 name or NULL ("unspecified"); revoked_ms / invalidity_ms: -1
 * for now / none. Returns HSMCA_E_INVALID_ARG (serial), HSMCA_E_CRL_REASON, HSMCA_E_CRL_DATE,
 * HSMCA_E_NOT_FOUND (no such CA), HSMCA_E_REVOKE_SERIAL_UNKNOWN, HSMCA_E_REVOKE_ALREADY.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_revoke_prepare(struct hsmca_store *ro, const char *ca,
                                                    const char *serial_hex, const char *reason,
                                                    int64_t revoked_ms, int64_t invalidity_ms,
                                                    int64_t now_ms, struct hsmca_revocation *out);

/* The audit apply callback (arg: a struct hsmca_revocation): marks the certificate revoked;
 * HSMCA_E_REVOKE_ALREADY / HSMCA_E_REVOKE_SERIAL_UNKNOWN when the store changed meanwhile. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_revoke_apply(struct hsmca_store *st, void *arg);

/* The audit entry's detail: compact sorted JSON {"invalidity_ms"?, "reason", "revoked_ms",
 * "serial"} into buf; returns 0, or -1 if it does not fit. */
int hsmca_revoke_detail(const struct hsmca_revocation *rv, char *buf, size_t len);

/*
 * Record the prepared revocation rv (hsmca_revoke_prepare) by actor in role: one cert.revoke
 * entry (target "ca/<ca>", detail hsmca_revoke_detail) with its store change
 * (hsmca_revoke_apply) in the same transaction, through the audit writer. rv must stay valid
 * until done runs; done gets HSMCA_E_REVOKE_ALREADY / HSMCA_E_REVOKE_SERIAL_UNKNOWN when the store
 * changed since the check (nothing written). Returns HSMCA_E_INVALID_ARG (no log), HSMCA_E_INTERNAL
 * or hsmca_audit_submit's codes, and then done never runs.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_revoke_submit(struct hsmca_audit *a,
                                                   struct hsmca_revocation *rv, const char *actor,
                                                   const char *role, hsmca_audit_done_fn done,
                                                   void *done_arg);

/* The revocation as the API answers it: {"ca", "serial" (hex), "status": "revoked", "reason",
 * "revoked_ms", "invalidity_ms"?}; NULL on NOMEM. */
json_t *hsmca_revoke_json(const struct hsmca_revocation *rv);

/*
 * Make CA ca's next CRL (hsmca_crl_make, signed with key) and store it inside its own crl.sign
 * audit entry (actor "system", detail {"ca", "entries", "next_update", "number", "sha256",
 * "this_update", "trigger", "request_id"?}). trigger says why ("revocation", "activation",
 * "window-end", "refresh", "quorum"). On HSMCA_OK fills *info (may be NULL).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_crl_issue(struct hsmca_audit *a, struct hsmca_store *ro,
                                               const struct hsmca_ca_rec *ca, EVP_PKEY *key,
                                               const struct hsmca_crl_policy *pol, time_t now,
                                               const char *trigger, const char *request_id,
                                               struct hsmca_crl_info *info);

#endif
