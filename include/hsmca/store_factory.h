/* SPDX-License-Identifier: Apache-2.0
 *
 * store_factory.h -- the store's rows of the factory floor (store_factory.c): production lines
 * (the certificate offline bundles are sealed to) and bundles (hashes of what was sealed, and the
 * receipt), and the certificate lookup of EST re-enrolment. Never a device key.
 */
#ifndef HSMCA_STORE_FACTORY_H
#define HSMCA_STORE_FACTORY_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/sizes.h"
#include "hsmca/store.h"

/* A line name: [a-z0-9-], 1..HSMCA_LINE_NAME_MAX bytes. */
#define HSMCA_LINE_NAME_MAX 64
/* A bundle id: 32 lower-case hex digits (128 random bits). */
#define HSMCA_BUNDLE_ID_LEN 32

/* ---- store (store_factory.c) ---- */

/* Register a line. Returns HSMCA_E_LINE_EXISTS, HSMCA_E_STORE_WRITE. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_line_put(struct hsmca_store *st, const char *name,
                                                    const unsigned char *der, size_t len,
                                                    const unsigned char sha256[HSMCA_SHA256_LEN],
                                                    const char *registered_by, int64_t now_ms);
/* A line's certificate (*der malloc'd). Returns HSMCA_E_LINE_NOT_FOUND, HSMCA_E_STORE_READ. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_line_get(struct hsmca_store *st, const char *name,
                                                    unsigned char **der, size_t *len);

struct hsmca_bundle_rec {
    char id[HSMCA_BUNDLE_ID_LEN + 1];
    char ca[65];
    char line[HSMCA_LINE_NAME_MAX + 1];
    int64_t count;
    unsigned char manifest_sha256[HSMCA_SHA256_LEN];
    unsigned char envelope_sha256[HSMCA_SHA256_LEN];
    char requester[65];
    int64_t created_ms;
    int64_t received_ms; /* 0 = not yet */
    char received_by[65];
};

/* Record a sealed bundle. Returns HSMCA_E_STORE_CONSTRAINT, HSMCA_E_STORE_WRITE. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_bundle_put(struct hsmca_store *st,
                                                      const struct hsmca_bundle_rec *b);
/* Read bundle id. Returns HSMCA_E_BUNDLE_NOT_FOUND, HSMCA_E_STORE_READ. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_bundle_get(struct hsmca_store *st, const char *id,
                                                      struct hsmca_bundle_rec *out);
/* Mark bundle id received by who. Returns HSMCA_E_BUNDLE_ALREADY_RECEIVED,
 * HSMCA_E_BUNDLE_NOT_FOUND, HSMCA_E_STORE_WRITE. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_bundle_receive(struct hsmca_store *st, const char *id,
                                                          const char *who, int64_t now_ms);

/*
 * Re-enrolment: the newest certificate of ca whose DER holds the 65-byte uncompressed point
 * (a scan of the CA's certificates), with its serial (up to 20 bytes), revocation, request id
 * ("" if none; rid_size bytes at most) and CSR hash. *der malloc'd. Returns HSMCA_E_NOT_FOUND,
 * HSMCA_E_STORE_READ.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_cert_by_point(struct hsmca_store *st, const char *ca, const unsigned char point[65],
                          unsigned char serial[20], size_t *serial_len, int *revoked, char *rid,
                          size_t rid_size, unsigned char csr_sha256[HSMCA_SHA256_LEN],
                          unsigned char **der, size_t *der_len);

#endif
