/* SPDX-License-Identifier: Apache-2.0
 *
 * auth.h -- who a client certificate is: policies/roles.json binds the SHA-256 of a client
 * certificate's DER to one principal with one role (admin, approver, operator, auditor) and, for an
 * operator, to the CAs it may issue under. A loaded table is immutable, so lookups need no lock;
 * a reload (reload.c) replaces the daemon's table with a new one, and a table is freed once its
 * last holder lets it go (reference counted). Knows nothing of TLS: server.c hands it the peer
 * certificate's DER.
 */
#ifndef HSMCAD_AUTH_H
#define HSMCAD_AUTH_H

#include <stddef.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"

#define HSMCAD_ROLES_MAX_BYTES (1u << 20)
#define HSMCAD_PRINCIPAL_MAX 64
#define HSMCAD_PRINCIPAL_CAS_MAX 64
#define HSMCAD_BINDINGS_MAX 10000

enum hsmcad_role {
    HSMCAD_ROLE_ADMIN = 1u << 0,
    HSMCAD_ROLE_APPROVER = 1u << 1,
    HSMCAD_ROLE_OPERATOR = 1u << 2,
    HSMCAD_ROLE_AUDITOR = 1u << 3,
};
#define HSMCAD_ROLE_ANY                                                                            \
    (HSMCAD_ROLE_ADMIN | HSMCAD_ROLE_APPROVER | HSMCAD_ROLE_OPERATOR | HSMCAD_ROLE_AUDITOR)

struct hsmcad_principal {
    unsigned char fingerprint[HSMCA_SHA256_LEN]; /* SHA-256 of the certificate DER */
    char name[HSMCAD_PRINCIPAL_MAX + 1];
    enum hsmcad_role role;
    unsigned ncas;
    char (*cas)[HSMCA_CA_ID_MAX + 1]; /* operator only */
};

struct hsmcad_roles;

/* "admin", ... for a role; "none" for anything else. */
const char *hsmcad_role_name(enum hsmcad_role r);

/*
 * Parse roles JSON text[0..len) (<= HSMCAD_ROLES_MAX_BYTES):
 *   {"version": 1, "certificates": {"<sha256 hex of DER>": {"principal": NAME, "role": ROLE,
 *    "cas": [CA...]}}}
 * Unknown keys, duplicate fingerprints, a principal bound to two roles, "cas" on a role other than
 * operator, or an operator without CAs are refused with HSMCA_E_ROLES_INVALID and a reason in why.
 * On HSMCA_OK the caller frees *out with hsmcad_roles_free().
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_roles_parse(const char *text, size_t len,
                                                  struct hsmcad_roles **out, char *why,
                                                  size_t why_len);
HSMCA_MUSTCHECK enum hsmca_err hsmcad_roles_load(const char *path, struct hsmcad_roles **out,
                                                 char *why, size_t why_len);
/* Drop one reference (the parser's, or one taken with hsmcad_roles_ref); the last frees. */
void hsmcad_roles_free(struct hsmcad_roles *r);
/* Take one more reference to r (NULL allowed); returns r. */
struct hsmcad_roles *hsmcad_roles_ref(struct hsmcad_roles *r);
unsigned hsmcad_roles_count(const struct hsmcad_roles *r);

/*
 * The principal bound to the certificate with DER der[0..len), or NULL (unknown certificate).
 * The result is borrowed from r and lives as long as r. Thread-safe.
 */
const struct hsmcad_principal *hsmcad_roles_lookup(const struct hsmcad_roles *r,
                                                   const unsigned char *der, size_t len);
const struct hsmcad_principal *hsmcad_roles_lookup_fp(const struct hsmcad_roles *r,
                                                      const unsigned char fp[HSMCA_SHA256_LEN]);

/*
 * May p use an endpoint open to the roles in mask, on CA ca (NULL when the endpoint names none;
 * the CA binding is checked only when ca_bound is set)? Returns HSMCA_OK,
 * HSMCA_E_HTTP_UNAUTHENTICATED (p NULL), HSMCA_E_HTTP_FORBIDDEN, HSMCA_E_HTTP_CA_FORBIDDEN.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_authorize(const struct hsmcad_principal *p, unsigned mask,
                                                int ca_bound, const char *ca);

#endif
