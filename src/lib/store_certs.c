/* SPDX-License-Identifier: Apache-2.0
 *
 * store_certs.c -- SQL for CAs, issued certificates, revocations and CRLs (store_certs.h).
 * Takes its prepared statements from the connection's cache (store_internal.h). Never commits:
 * callers run these inside the transaction that also holds the audit entry. Serials are blobs
 * (big-endian bytes), times are integers, so the inventory's keyset paging is one index range scan.
 */
#include "hsmca/store_certs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

void
hsmca_ca_rec_clear(struct hsmca_ca_rec *r)
{
    if (r != NULL)
        hsmca_store_free_blob(&r->cert_der, &r->cert_len);
}

void
hsmca_cert_rec_clear(struct hsmca_cert_rec *r)
{
    if (r != NULL)
        hsmca_store_free_blob(&r->der, &r->der_len);
}

void
hsmca_crl_rec_clear(struct hsmca_crl_rec *r)
{
    if (r != NULL)
        hsmca_store_free_blob(&r->der, &r->der_len);
}

/* ---- CAs ---- */

#define CA_COLS                                                                                    \
    "id, kind, parent, token_uri, key_uri, vid, pid, cert, created_ms, revoked_ms, reason, "       \
    "invalidity_ms"

static enum hsmca_err
ca_row(void *dst, struct hsmca_q *s)
{
    struct hsmca_ca_rec *r = dst;

    memset(r, 0, sizeof(*r));
    hsmca_store_copy_text(r->id, sizeof(r->id), s, 0);
    hsmca_store_copy_text(r->kind, sizeof(r->kind), s, 1);
    hsmca_store_copy_text(r->parent, sizeof(r->parent), s, 2);
    hsmca_store_copy_text(r->token_uri, sizeof(r->token_uri), s, 3);
    hsmca_store_copy_text(r->key_uri, sizeof(r->key_uri), s, 4);
    r->vid = hsmca_q_null(s, 5) ? -1 : (int)hsmca_q_int64(s, 5);
    r->pid = hsmca_q_null(s, 6) ? -1 : (int)hsmca_q_int64(s, 6);
    if (hsmca_store_copy_blob(&r->cert_der, &r->cert_len, s, 7) != 0)
        return HSMCA_E_NOMEM;
    r->created_ms = hsmca_q_int64(s, 8);
    r->revoked = !hsmca_q_null(s, 9);
    r->revoked_ms = r->revoked ? hsmca_q_int64(s, 9) : 0;
    r->reason = hsmca_q_null(s, 10) ? -1 : (int)hsmca_q_int64(s, 10);
    r->invalidity_ms = hsmca_q_int64(s, 11);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_ca_put(struct hsmca_store *st, const struct hsmca_ca_rec *ca)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || ca == NULL || ca->id[0] == '\0' ||
        (strcmp(ca->kind, "paa") != 0 && strcmp(ca->kind, "pai") != 0))
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "INSERT INTO cas(id, kind, parent, token_uri, key_uri, vid, pid, "
                              "cert, created_ms) VALUES(?1, ?2, NULLIF(?3, ''), ?4, ?5, ?6, ?7, "
                              "?8, ?9) "
                              "ON CONFLICT(id) DO UPDATE SET cert = excluded.cert",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca->id);
        hsmca_q_text(s, 2, ca->kind);
        hsmca_q_text(s, 3, ca->parent);
        hsmca_q_text(s, 4, ca->token_uri);
        hsmca_q_text(s, 5, ca->key_uri);
        if (ca->vid >= 0)
            hsmca_q_int(s, 6, ca->vid);
        if (ca->pid >= 0)
            hsmca_q_int(s, 7, ca->pid);
        if (ca->cert_der != NULL)
            hsmca_q_blob(s, 8, ca->cert_der, ca->cert_len);
        hsmca_q_int(s, 9, ca->created_ms);
        src = hsmca_q_step(s);
    }
    return hsmca_store_done(st, s, src);
}

enum hsmca_err
hsmca_store_ca_get(struct hsmca_store *st, const char *id, struct hsmca_ca_rec *out)
{
    if (st == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return hsmca_store_get_by_text(st, "SELECT " CA_COLS " FROM cas WHERE id = ?1", id, ca_row,
                                   out);
}

struct ca_each {
    enum hsmca_err (*fn)(void *arg, const struct hsmca_ca_rec *ca);
    void *arg;
};

static enum hsmca_err
ca_each_row(void *ctx, struct hsmca_q *s)
{
    struct ca_each *e = ctx;
    struct hsmca_ca_rec r;
    enum hsmca_err rc = ca_row(&r, s);

    if (rc == HSMCA_OK)
        rc = e->fn(e->arg, &r);
    hsmca_ca_rec_clear(&r);
    return rc;
}

enum hsmca_err
hsmca_store_ca_list(struct hsmca_store *st,
                    enum hsmca_err (*fn)(void *arg, const struct hsmca_ca_rec *ca), void *arg)
{
    struct ca_each e = {fn, arg};
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT " CA_COLS " FROM cas ORDER BY id", &s);
    rc = hsmca_store_rows(st, s, src, ca_each_row, &e);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- certificates ---- */

enum hsmca_err
hsmca_store_cert_row(struct hsmca_q *s, struct hsmca_cert_rec *r, int der_col)
{
    memset(r, 0, sizeof(*r));
    hsmca_store_copy_text(r->ca, sizeof(r->ca), s, 0);
    hsmca_store_copy_serial(r->serial, &r->serial_len, s, 1);
    hsmca_store_copy_text(r->request_id, sizeof(r->request_id), s, 2);
    hsmca_store_copy_fixed(r->csr_sha256, sizeof(r->csr_sha256), s, 3);
    hsmca_store_copy_fixed(r->sha256, sizeof(r->sha256), s, 4);
    r->vid = (int)hsmca_q_int64(s, 5);
    r->pid = (int)hsmca_q_int64(s, 6);
    r->not_before = hsmca_q_int64(s, 7);
    r->not_after = hsmca_q_int64(s, 8);
    r->issued_ms = hsmca_q_int64(s, 9);
    r->revoked = !hsmca_q_null(s, 10);
    r->revoked_ms = r->revoked ? hsmca_q_int64(s, 10) : 0;
    r->reason = hsmca_q_null(s, 11) ? -1 : (int)hsmca_q_int64(s, 11);
    r->invalidity_ms = hsmca_q_int64(s, 12);
    if (der_col >= 0 && hsmca_store_copy_blob(&r->der, &r->der_len, s, der_col) != 0)
        return HSMCA_E_NOMEM;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_cert_insert(struct hsmca_store *st, const struct hsmca_cert_rec *c)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || c == NULL || c->serial_len == 0 || c->serial_len > sizeof(c->serial) ||
        c->der == NULL || c->der_len == 0 || c->der_len > HSMCA_CERT_DER_MAX)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "INSERT INTO certificates(" CERT_COLS ", der, window_id) VALUES(?1, "
                              "?2, NULLIF(?3, ''), ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, NULL, "
                              "?11, NULLIF(?12, ''))",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, c->ca);
        hsmca_q_blob(s, 2, c->serial, c->serial_len);
        hsmca_q_text(s, 3, c->request_id);
        hsmca_q_blob(s, 4, c->csr_sha256, HSMCA_SHA256_LEN);
        hsmca_q_blob(s, 5, c->sha256, HSMCA_SHA256_LEN);
        hsmca_q_int(s, 6, c->vid);
        hsmca_q_int(s, 7, c->pid);
        hsmca_q_int(s, 8, c->not_before);
        hsmca_q_int(s, 9, c->not_after);
        hsmca_q_int(s, 10, c->issued_ms);
        hsmca_q_blob(s, 11, c->der, c->der_len);
        hsmca_q_text(s, 12, c->window);
        src = hsmca_q_step(s);
    }
    return hsmca_store_done(st, s, src);
}

static enum hsmca_err
cert_one(struct hsmca_store *st, const char *sql, const char *ca, const char *text,
         const unsigned char *blob, size_t blob_len, struct hsmca_cert_rec *out)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, sql, &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        if (text != NULL)
            hsmca_q_text(s, 2, text);
        else
            hsmca_q_blob(s, 2, blob, blob_len);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_row_rc(st, src);
    if (rc == HSMCA_OK)
        rc = hsmca_store_cert_row(s, out, 13);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_cert_by_request(struct hsmca_store *st, const char *ca, const char *request_id,
                            struct hsmca_cert_rec *out)
{
    if (st == NULL || ca == NULL || request_id == NULL || request_id[0] == '\0' || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return cert_one(st,
                    "SELECT " CERT_COLS ", der FROM certificates WHERE ca = ?1 AND request_id = ?2",
                    ca, request_id, NULL, 0, out);
}

enum hsmca_err
hsmca_store_cert_get(struct hsmca_store *st, const char *ca, const unsigned char *serial,
                     size_t serial_len, struct hsmca_cert_rec *out)
{
    if (st == NULL || ca == NULL || serial == NULL || serial_len == 0 || serial_len > 20 ||
        out == NULL)
        return HSMCA_E_INVALID_ARG;
    return cert_one(st, "SELECT " CERT_COLS ", der FROM certificates WHERE ca = ?1 AND serial = ?2",
                    ca, NULL, serial, serial_len, out);
}

enum hsmca_err
hsmca_store_serial_exists(struct hsmca_store *st, const char *ca, const unsigned char *serial,
                          size_t serial_len, int *exists)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || ca == NULL || serial == NULL || serial_len == 0 || exists == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT 1 FROM certificates WHERE ca = ?1 AND serial = ?2", &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_blob(s, 2, serial, serial_len);
        src = hsmca_q_step(s);
    }
    rc = src == SQLITE_ROW || src == SQLITE_DONE ? HSMCA_OK : hsmca_store_rc(st, src, 0);
    if (rc == HSMCA_OK)
        *exists = src == SQLITE_ROW;
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_cert_count(struct hsmca_store *st, const char *ca, int64_t since_ms, uint64_t *out)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || ca == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(
        st, "SELECT count(*) FROM certificates WHERE ca = ?1 AND issued_ms >= ?2", &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_int(s, 2, since_ms);
        src = hsmca_q_step(s);
    }
    rc = src == SQLITE_ROW ? HSMCA_OK : hsmca_store_rc(st, src, 0);
    if (rc == HSMCA_OK && src != SQLITE_ROW)
        rc = HSMCA_E_STORE_READ;
    if (rc == HSMCA_OK)
        *out = (uint64_t)hsmca_q_int64(s, 0);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_request_ids(struct hsmca_store *st, const char *ca,
                        enum hsmca_err (*fn)(void *arg, const char *request_id), void *arg)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    int src;

    if (st == NULL || ca == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    /* covered by the partial index certificates_request: no table row is read */
    src = hsmca_store_prepare(st,
                              "SELECT request_id FROM certificates "
                              "WHERE ca = ?1 AND request_id IS NOT NULL",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        while ((src = hsmca_q_step(s)) == SQLITE_ROW && rc == HSMCA_OK)
            rc = fn(arg, (const char *)hsmca_q_textp(s, 0));
    }
    if (rc == HSMCA_OK && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = hsmca_store_rc(st, src, 0);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_cert_list(struct hsmca_store *st, const char *ca, const struct hsmca_cert_query *q,
                      enum hsmca_err (*fn)(void *arg, const struct hsmca_cert_rec *c), void *arg,
                      int *more_out)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    unsigned seen = 0;
    int src;

    if (st == NULL || ca == NULL || q == NULL || fn == NULL || more_out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (q->limit == 0 || q->limit > HSMCA_PAGE_MAX || q->status < -1 || q->status > 1 ||
        q->after_serial_len > sizeof(q->after_serial))
        return HSMCA_E_INVALID_ARG;
    *more_out = 0;
    pthread_mutex_lock(&st->lock);
    /* (issued_ms, serial) > cursor, in index order; one row more than the page says "more" */
    src = hsmca_store_prepare(
        st,
        q->with_der
            ? "SELECT " CERT_COLS ", der FROM certificates WHERE ca = ?1 AND issued_ms BETWEEN ?2 "
              "AND ?3 AND (issued_ms, serial) > (?4, ?5) AND (?6 < 0 OR (CASE WHEN revoked_ms IS "
              "NULL THEN 0 ELSE 1 END) = ?6) ORDER BY issued_ms, serial LIMIT ?7"
            : "SELECT " CERT_COLS " FROM certificates WHERE ca = ?1 AND issued_ms BETWEEN ?2 "
              "AND ?3 AND (issued_ms, serial) > (?4, ?5) AND (?6 < 0 OR (CASE WHEN revoked_ms IS "
              "NULL THEN 0 ELSE 1 END) = ?6) ORDER BY issued_ms, serial LIMIT ?7",
        &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_int(s, 2, q->from_ms);
        hsmca_q_int(s, 3, q->to_ms);
        hsmca_q_int(s, 4, q->after_serial_len > 0 ? q->after_ms : INT64_MIN);
        hsmca_q_blob(s, 5, q->after_serial, q->after_serial_len);
        hsmca_q_int(s, 6, q->status);
        hsmca_q_int(s, 7, (int64_t)q->limit + 1);
    }
    while (src == SQLITE_OK || src == SQLITE_ROW) {
        struct hsmca_cert_rec r;

        src = hsmca_q_step(s);
        if (src != SQLITE_ROW)
            break;
        if (seen == q->limit) {
            *more_out = 1;
            src = SQLITE_DONE;
            break;
        }
        seen++;
        rc = hsmca_store_cert_row(s, &r, q->with_der ? 13 : -1);
        if (rc == HSMCA_OK)
            rc = fn(arg, &r);
        hsmca_cert_rec_clear(&r);
        if (rc != HSMCA_OK)
            break;
    }
    if (rc == HSMCA_OK && src != SQLITE_DONE)
        rc = hsmca_store_rc(st, src, 0);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Run one revoking UPDATE: ?1 key, ?2 serial, ?3 revoked_ms, ?4 reason, ?5 invalidity_ms;
 * *changed is the rows it changed. */
static enum hsmca_err
revoke_update(struct hsmca_store *st, const char *sql, const char *key, const unsigned char *serial,
              size_t serial_len, int64_t revoked_ms, int reason, int64_t invalidity_ms,
              int *changed)
{
    struct hsmca_q *s = NULL;
    int src;

    *changed = 0;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, sql, &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, key);
        hsmca_q_blob(s, 2, serial, serial_len);
        hsmca_q_int(s, 3, revoked_ms);
        hsmca_q_int(s, 4, reason);
        hsmca_q_int(s, 5, invalidity_ms);
        src = hsmca_q_step(s);
        *changed = hsmca_q_changes(s);
    }
    return hsmca_store_done(st, s, src);
}

enum hsmca_err
hsmca_store_cert_revoke(struct hsmca_store *st, const char *ca, const unsigned char *serial,
                        size_t serial_len, int64_t revoked_ms, int reason, int64_t invalidity_ms)
{
    enum hsmca_err rc;
    int changed = 0, exists = 0;

    if (st == NULL || ca == NULL || serial == NULL || serial_len == 0 || serial_len > 20)
        return HSMCA_E_INVALID_ARG;
    rc = revoke_update(st,
                       "UPDATE certificates SET revoked_ms = ?3, reason = NULLIF(?4, -1), "
                       "invalidity_ms = NULLIF(?5, 0) "
                       "WHERE ca = ?1 AND serial = ?2 AND revoked_ms IS NULL",
                       ca, serial, serial_len, revoked_ms, reason, invalidity_ms, &changed);
    if (rc != HSMCA_OK || changed == 1)
        return rc;
    rc = hsmca_store_serial_exists(st, ca, serial, serial_len, &exists);
    if (rc != HSMCA_OK)
        return rc;
    return exists ? HSMCA_E_EXISTS : HSMCA_E_NOT_FOUND;
}

enum hsmca_err
hsmca_store_ca_revoke(struct hsmca_store *st, const char *id, const unsigned char *serial,
                      size_t serial_len, int64_t revoked_ms, int reason, int64_t invalidity_ms)
{
    struct hsmca_ca_rec r;
    enum hsmca_err rc;
    int changed = 0;

    if (st == NULL || id == NULL || serial == NULL || serial_len == 0 || serial_len > 20)
        return HSMCA_E_INVALID_ARG;
    rc = revoke_update(st,
                       "UPDATE cas SET serial = ?2, revoked_ms = ?3, reason = NULLIF(?4, -1), "
                       "invalidity_ms = NULLIF(?5, 0) WHERE id = ?1 AND revoked_ms IS NULL",
                       id, serial, serial_len, revoked_ms, reason, invalidity_ms, &changed);
    if (rc != HSMCA_OK || changed == 1)
        return rc;
    rc = hsmca_store_ca_get(st, id, &r);
    hsmca_ca_rec_clear(&r);
    return rc == HSMCA_OK ? HSMCA_E_EXISTS : rc;
}

void
hsmca_store_revoked_row(struct hsmca_q *s, struct hsmca_revoked_rec *r)
{
    memset(r, 0, sizeof(*r));
    hsmca_store_copy_serial(r->serial, &r->serial_len, s, 0);
    r->revoked_ms = hsmca_q_int64(s, 1);
    r->reason = hsmca_q_null(s, 2) ? -1 : (int)hsmca_q_int64(s, 2);
    r->invalidity_ms = hsmca_q_int64(s, 3);
}

struct revoked_each {
    enum hsmca_err (*fn)(void *arg, const struct hsmca_revoked_rec *r);
    void *arg;
};

static enum hsmca_err
revoked_each_row(void *ctx, struct hsmca_q *q)
{
    struct revoked_each *e = ctx;
    struct hsmca_revoked_rec r;

    hsmca_store_revoked_row(q, &r);
    return e->fn(e->arg, &r);
}

enum hsmca_err
hsmca_store_revoked_rows(struct hsmca_store *st, struct hsmca_q *q, int src,
                         enum hsmca_err (*fn)(void *arg, const struct hsmca_revoked_rec *r),
                         void *arg)
{
    struct revoked_each e = {fn, arg};

    return hsmca_store_rows(st, q, src, revoked_each_row, &e);
}

enum hsmca_err
hsmca_store_revoked_list(struct hsmca_store *st, const char *ca,
                         enum hsmca_err (*fn)(void *arg, const struct hsmca_revoked_rec *r),
                         void *arg)
{
    static const char *const sql[] = {
        /* the partial index certificates_revoked: only revoked rows are visited */
        "SELECT serial, revoked_ms, reason, invalidity_ms FROM certificates "
        "WHERE ca = ?1 AND revoked_ms IS NOT NULL ORDER BY serial",
        "SELECT serial, revoked_ms, reason, invalidity_ms FROM cas "
        "WHERE parent = ?1 AND revoked_ms IS NOT NULL AND serial IS NOT NULL ORDER BY id",
    };
    enum hsmca_err rc = HSMCA_OK;
    unsigned i;

    if (st == NULL || ca == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    for (i = 0; i < 2 && rc == HSMCA_OK; i++) {
        struct hsmca_q *s = NULL;
        int src = hsmca_store_prepare(st, sql[i], &s);

        if (src == SQLITE_OK)
            hsmca_q_text(s, 1, ca);
        rc = hsmca_store_revoked_rows(st, s, src, fn, arg);
        hsmca_store_release(st, s);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_cert_activity(struct hsmca_store *st, const char *ca, int64_t from_ms, int64_t to_ms,
                          size_t max,
                          enum hsmca_err (*fn)(void *arg, const struct hsmca_cert_rec *c),
                          void *arg)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    size_t seen = 0;
    int src;

    if (st == NULL || ca == NULL || fn == NULL || from_ms > to_ms)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    /* the issue-time range is one index range; revocations in range are few */
    src = hsmca_store_prepare(st,
                              "SELECT " CERT_COLS " FROM certificates WHERE ca = ?1 AND "
                              "(issued_ms BETWEEN ?2 AND ?3 OR revoked_ms BETWEEN ?2 AND ?3) "
                              "ORDER BY issued_ms, serial",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_int(s, 2, from_ms);
        hsmca_q_int(s, 3, to_ms);
    }
    while (src == SQLITE_OK || src == SQLITE_ROW) {
        struct hsmca_cert_rec r;

        src = hsmca_q_step(s);
        if (src != SQLITE_ROW)
            break;
        if (seen++ == max) {
            rc = HSMCA_E_TOO_LARGE;
            break;
        }
        rc = hsmca_store_cert_row(s, &r, -1);
        if (rc == HSMCA_OK)
            rc = fn(arg, &r);
        hsmca_cert_rec_clear(&r);
        if (rc != HSMCA_OK)
            break;
    }
    if (rc == HSMCA_OK && src != SQLITE_DONE)
        rc = hsmca_store_rc(st, src, 0);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- CRLs ---- */

enum hsmca_err
hsmca_store_crl_put(struct hsmca_store *st, const char *ca, const struct hsmca_crl_rec *crl)
{
    if (st == NULL || ca == NULL || crl == NULL || crl->der == NULL || crl->der_len == 0 ||
        crl->number > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    return hsmca_store_crl_put_sql(st,
                                   "INSERT INTO crls(ca, number, this_update, next_update, der) "
                                   "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(ca) DO UPDATE SET "
                                   "number = excluded.number, this_update = excluded.this_update, "
                                   "next_update = excluded.next_update, der = excluded.der "
                                   "WHERE excluded.number > crls.number",
                                   ca, crl);
}

enum hsmca_err
hsmca_store_crl_get(struct hsmca_store *st, const char *ca, struct hsmca_crl_rec *out)
{
    if (st == NULL || ca == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return hsmca_store_crl_get_sql(
        st, "SELECT number, this_update, next_update, der FROM crls WHERE ca = ?1", ca, out);
}
