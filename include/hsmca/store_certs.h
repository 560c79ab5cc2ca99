/* SPDX-License-Identifier: Apache-2.0
 *
 * store_certs.h -- the CAs and the certificates they issued, in the store (schema: the "CAs and
 * certificates" migration in store.c). The inventory pages by (issued time, serial) so a page costs
 * the same with ten or ten million certificates. Functions that change state are meant to run
 * inside the transaction that also appends their audit entry (see audit.h); none of them commits.
 * Strings in records are NUL-terminated copies; blobs are owned by the record and freed by
 * hsmca_cert_rec_clear / hsmca_ca_rec_clear.
 */
#ifndef HSMCA_STORE_CERTS_H
#define HSMCA_STORE_CERTS_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"
#include "hsmca/store.h"

#define HSMCA_WINDOW_ID_MAX 64

struct hsmca_ca_rec {
    char id[HSMCA_CA_ID_MAX + 1];
    char kind[4];                      /* "paa" or "pai" */
    char parent[HSMCA_CA_ID_MAX + 1];  /* the issuing CA's id; "" for a PAA */
    char token_uri[HSMCA_URI_MAX + 1]; /* the token that holds the key */
    char key_uri[HSMCA_URI_MAX + 1];   /* the key in it */
    int vid, pid;                      /* -1 when the CA has none */
    unsigned char *cert_der;           /* NULL until the CA's certificate exists */
    size_t cert_len;
    int64_t created_ms;
    int revoked;           /* 1 once the CA is revoked (its serial is on its parent's CRL) */
    int64_t revoked_ms;    /* when revoked */
    int reason;            /* RFC 5280 reason, -1 none */
    int64_t invalidity_ms; /* RFC 5280 invalidityDate, 0 none */
};

struct hsmca_cert_rec {
    char ca[HSMCA_CA_ID_MAX + 1];
    unsigned char serial[20];
    size_t serial_len;
    char request_id[HSMCA_REQUEST_ID_MAX + 1]; /* "" when the client gave none */
    unsigned char csr_sha256[HSMCA_SHA256_LEN];
    unsigned char sha256[HSMCA_SHA256_LEN]; /* of der */
    int vid, pid;
    int64_t not_before, not_after; /* seconds since the epoch (UTC) */
    int64_t issued_ms;
    int revoked; /* 0 issued, 1 revoked */
    int64_t revoked_ms;
    int reason;            /* RFC 5280 reason, -1 none */
    int64_t invalidity_ms; /* RFC 5280 invalidityDate (time of compromise), 0 none */
    unsigned char *der;
    size_t der_len;
    char window[HSMCA_WINDOW_ID_MAX + 1]; /* the shared window issued under; "" none (written
                                           * by cert_insert only, store_windows.h) */
};

/* Free the blobs of a record (the record itself is the caller's). NULL is fine. */
void hsmca_ca_rec_clear(struct hsmca_ca_rec *r);
void hsmca_cert_rec_clear(struct hsmca_cert_rec *r);

/*
 * Insert a CA, or update the certificate of an existing one (other fields of an existing CA never
 * change). Returns HSMCA_E_STORE_CONSTRAINT (unknown parent), HSMCA_E_STORE_WRITE.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_ca_put(struct hsmca_store *st,
                                                  const struct hsmca_ca_rec *ca);
/* Read one CA into *out (caller clears it). Returns HSMCA_E_NOT_FOUND. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_ca_get(struct hsmca_store *st, const char *id,
                                                  struct hsmca_ca_rec *out);
/* Call fn for every CA in id order; a non-OK return from fn stops and is returned. */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_ca_list(struct hsmca_store *st,
                    enum hsmca_err (*fn)(void *arg, const struct hsmca_ca_rec *ca), void *arg);

/*
 * Record an issued certificate. Returns HSMCA_E_STORE_CONSTRAINT when the issuer already has that
 * serial or that request id (the caller then retries with a new serial, or answers the
 * idempotent retry), HSMCA_E_INVALID_ARG on an empty serial or DER, HSMCA_E_STORE_WRITE.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_cert_insert(struct hsmca_store *st,
                                                       const struct hsmca_cert_rec *c);
/* Look a certificate up by issuer and request id, or by issuer and serial. HSMCA_E_NOT_FOUND. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_cert_by_request(struct hsmca_store *st, const char *ca,
                                                           const char *request_id,
                                                           struct hsmca_cert_rec *out);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_cert_get(struct hsmca_store *st, const char *ca,
                                                    const unsigned char *serial, size_t serial_len,
                                                    struct hsmca_cert_rec *out);
/* Whether the issuer already used a serial (for the builder's uniqueness check). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_serial_exists(struct hsmca_store *st, const char *ca,
                                                         const unsigned char *serial,
                                                         size_t serial_len, int *exists);
/* Number of certificates the issuer issued at or after since_ms. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_cert_count(struct hsmca_store *st, const char *ca,
                                                      int64_t since_ms, uint64_t *out);

/*
 * Call fn with every request id the issuer's certificates carry, in no particular order (one
 * sequential scan of the request-id index; for loading the issuance engine's filter at start).
 * A non-OK return from fn stops and is returned.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_request_ids(struct hsmca_store *st, const char *ca,
                        enum hsmca_err (*fn)(void *arg, const char *request_id), void *arg);

/* A page request of the inventory. */
struct hsmca_cert_query {
    int status;             /* -1 any, 0 issued only, 1 revoked only */
    int64_t from_ms, to_ms; /* issued within [from_ms, to_ms]; 0/INT64_MAX for open ends */
    /* keyset cursor: start after (after_ms, after_serial); after_serial_len 0 = from the start
     * (after_ms is then ignored) */
    int64_t after_ms;
    unsigned char after_serial[20];
    size_t after_serial_len;
    unsigned limit; /* 1..HSMCA_PAGE_MAX */
    int with_der;   /* also load each certificate's DER */
};

/*
 * Call fn for up to q->limit certificates of ca in (issued_ms, serial) order after the cursor.
 * *more_out is set to 1 if more rows follow (the last row passed to fn is the next cursor).
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_cert_list(struct hsmca_store *st, const char *ca, const struct hsmca_cert_query *q,
                      enum hsmca_err (*fn)(void *arg, const struct hsmca_cert_rec *c), void *arg,
                      int *more_out);

/*
 * Mark a certificate revoked at revoked_ms with reason and invalidity_ms (0 = none). Returns
 * HSMCA_E_NOT_FOUND, or HSMCA_E_EXISTS when it is already revoked (nothing changes).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_cert_revoke(struct hsmca_store *st, const char *ca,
                                                       const unsigned char *serial,
                                                       size_t serial_len, int64_t revoked_ms,
                                                       int reason, int64_t invalidity_ms);

/*
 * Mark CA id revoked (its certificate's serial given, for its parent's CRL). Returns
 * HSMCA_E_NOT_FOUND, or HSMCA_E_EXISTS when it is already revoked (nothing changes).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_ca_revoke(struct hsmca_store *st, const char *id,
                                                     const unsigned char *serial, size_t serial_len,
                                                     int64_t revoked_ms, int reason,
                                                     int64_t invalidity_ms);

/* One entry of an issuer's CRL. */
struct hsmca_revoked_rec {
    unsigned char serial[20];
    size_t serial_len;
    int64_t revoked_ms;
    int reason;            /* -1 none */
    int64_t invalidity_ms; /* 0 none */
};

/*
 * Call fn for everything issuer ca revoked: its revoked certificates (in serial order), then its
 * revoked child CAs. A non-OK return from fn stops and is returned.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_revoked_list(struct hsmca_store *st, const char *ca,
                         enum hsmca_err (*fn)(void *arg, const struct hsmca_revoked_rec *r),
                         void *arg);

/*
 * Call fn (in (issued_ms, serial) order) for every certificate of ca issued or revoked within
 * [from_ms, to_ms]: a report's rows. More than max rows is HSMCA_E_TOO_LARGE (nothing past max
 * is passed to fn).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_cert_activity(
    struct hsmca_store *st, const char *ca, int64_t from_ms, int64_t to_ms, size_t max,
    enum hsmca_err (*fn)(void *arg, const struct hsmca_cert_rec *c), void *arg);

/* The issuer's latest CRL: number, thisUpdate, nextUpdate (seconds) and DER. */
struct hsmca_crl_rec {
    uint64_t number;
    int64_t this_update, next_update;
    unsigned char *der;
    size_t der_len;
};
void hsmca_crl_rec_clear(struct hsmca_crl_rec *r);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_crl_put(struct hsmca_store *st, const char *ca,
                                                   const struct hsmca_crl_rec *crl);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_crl_get(struct hsmca_store *st, const char *ca,
                                                   struct hsmca_crl_rec *out);

#endif
