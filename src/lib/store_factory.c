/* SPDX-License-Identifier: Apache-2.0
 *
 * store_factory.c -- production lines, bundles and the re-enrolment lookup (store_factory.h).
 * Writes run inside the audit writer's transaction (the apply callback of their entry).
 */
#include "hsmca/store_factory.h"

#include <stdio.h>
#include <string.h>

#include "hsmca/sizes.h"
#include "hsmca/store_certs.h"

#include "store_internal.h"

enum hsmca_err
hsmca_store_line_put(struct hsmca_store *st, const char *name, const unsigned char *der, size_t len,
                     const unsigned char sha256[HSMCA_SHA256_LEN], const char *registered_by,
                     int64_t now_ms)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || name == NULL || der == NULL || len == 0 || registered_by == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "INSERT INTO factory_lines (name, cert, sha256, registered_by, "
                              "created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, name);
        hsmca_q_blob(s, 2, der, len);
        hsmca_q_blob(s, 3, sha256, HSMCA_SHA256_LEN);
        hsmca_q_text(s, 4, registered_by);
        hsmca_q_int(s, 5, now_ms);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_rc(st, src, 1);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc == HSMCA_E_STORE_CONSTRAINT ? HSMCA_E_LINE_EXISTS : rc;
}

enum hsmca_err
hsmca_store_line_get(struct hsmca_store *st, const char *name, unsigned char **der, size_t *len)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || name == NULL || der == NULL || len == NULL)
        return HSMCA_E_INVALID_ARG;
    *der = NULL;
    *len = 0;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT cert FROM factory_lines WHERE name = ?1", &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, name);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_row_rc(st, src);
    if (rc == HSMCA_OK && hsmca_store_copy_blob(der, len, s, 0) != 0)
        rc = HSMCA_E_NOMEM;
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc == HSMCA_E_NOT_FOUND ? HSMCA_E_LINE_NOT_FOUND : rc;
}

enum hsmca_err
hsmca_store_bundle_put(struct hsmca_store *st, const struct hsmca_bundle_rec *b)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || b == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "INSERT INTO factory_bundles (id, ca, line, count, manifest_sha256, "
                              "envelope_sha256, requester, created_ms) VALUES (?1, ?2, ?3, ?4, "
                              "?5, ?6, ?7, ?8)",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, b->id);
        hsmca_q_text(s, 2, b->ca);
        hsmca_q_text(s, 3, b->line);
        hsmca_q_int(s, 4, b->count);
        hsmca_q_blob(s, 5, b->manifest_sha256, HSMCA_SHA256_LEN);
        hsmca_q_blob(s, 6, b->envelope_sha256, HSMCA_SHA256_LEN);
        hsmca_q_text(s, 7, b->requester);
        hsmca_q_int(s, 8, b->created_ms);
        src = hsmca_q_step(s);
    }
    return hsmca_store_done(st, s, src);
}

static enum hsmca_err
bundle_row(void *dst, struct hsmca_q *s)
{
    struct hsmca_bundle_rec *out = dst;

    hsmca_store_copy_text(out->id, sizeof(out->id), s, 0);
    hsmca_store_copy_text(out->ca, sizeof(out->ca), s, 1);
    hsmca_store_copy_text(out->line, sizeof(out->line), s, 2);
    out->count = hsmca_q_int64(s, 3);
    hsmca_store_copy_fixed(out->manifest_sha256, sizeof(out->manifest_sha256), s, 4);
    hsmca_store_copy_fixed(out->envelope_sha256, sizeof(out->envelope_sha256), s, 5);
    hsmca_store_copy_text(out->requester, sizeof(out->requester), s, 6);
    out->created_ms = hsmca_q_int64(s, 7);
    out->received_ms = hsmca_q_int64(s, 8);
    hsmca_store_copy_text(out->received_by, sizeof(out->received_by), s, 9);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_bundle_get(struct hsmca_store *st, const char *id, struct hsmca_bundle_rec *out)
{
    enum hsmca_err rc;

    if (st == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    rc = hsmca_store_get_by_text(st,
                                 "SELECT id, ca, line, count, manifest_sha256, envelope_sha256, "
                                 "requester, created_ms, received_ms, received_by FROM "
                                 "factory_bundles WHERE id = ?1",
                                 id, bundle_row, out);
    return rc == HSMCA_E_NOT_FOUND ? HSMCA_E_BUNDLE_NOT_FOUND : rc;
}

enum hsmca_err
hsmca_store_bundle_receive(struct hsmca_store *st, const char *id, const char *who, int64_t now_ms)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src, changed = 0;

    if (st == NULL || id == NULL || who == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "UPDATE factory_bundles SET received_ms = ?2, received_by = ?3 "
                              "WHERE id = ?1 AND received_ms IS NULL",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, id);
        hsmca_q_int(s, 2, now_ms);
        hsmca_q_text(s, 3, who);
        src = hsmca_q_step(s);
        changed = hsmca_q_changes(s);
    }
    rc = hsmca_store_rc(st, src, 1);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    if (rc == HSMCA_OK && changed == 0)
        rc = HSMCA_E_BUNDLE_ALREADY_RECEIVED;
    return rc;
}

enum hsmca_err
hsmca_store_cert_by_point(struct hsmca_store *st, const char *ca, const unsigned char point[65],
                          unsigned char serial[20], size_t *serial_len, int *revoked, char *rid,
                          size_t rid_size, unsigned char csr_sha256[HSMCA_SHA256_LEN],
                          unsigned char **der, size_t *der_len)
{
    struct hsmca_cert_rec r;
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || ca == NULL || point == NULL || serial == NULL || serial_len == NULL ||
        revoked == NULL || rid == NULL || rid_size == 0 || csr_sha256 == NULL || der == NULL ||
        der_len == NULL)
        return HSMCA_E_INVALID_ARG;
    *der = NULL;
    *der_len = 0;
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&st->lock);
    /* the byte-string search: SQLite's instr, PostgreSQL's position */
    src = hsmca_store_prepare2(st,
                               "SELECT " CERT_COLS ", der FROM certificates "
                               "WHERE ca = ?1 AND instr(der, ?2) > 0 "
                               "ORDER BY issued_ms DESC, serial DESC LIMIT 1",
                               "SELECT " CERT_COLS ", der FROM certificates "
                               "WHERE ca = $1 AND position($2 in der) > 0 "
                               "ORDER BY issued_ms DESC, serial DESC LIMIT 1",
                               &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_blob(s, 2, point, 65);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_row_rc(st, src);
    if (rc == HSMCA_OK)
        rc = hsmca_store_cert_row(s, &r, 13);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    if (rc == HSMCA_OK && r.serial_len == 0)
        rc = HSMCA_E_STORE_READ;
    if (rc == HSMCA_OK) {
        memcpy(serial, r.serial, r.serial_len);
        *serial_len = r.serial_len;
        *revoked = r.revoked;
        snprintf(rid, rid_size, "%s", r.request_id);
        memcpy(csr_sha256, r.csr_sha256, HSMCA_SHA256_LEN);
        *der = r.der;
        *der_len = r.der_len;
        r.der = NULL;
    }
    hsmca_cert_rec_clear(&r);
    return rc;
}
