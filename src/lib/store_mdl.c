/* SPDX-License-Identifier: Apache-2.0
 *
 * store_mdl.c -- the mDL CAs and their CRLs in the store, on either backend (store_mdl.h;
 * migration 8 of store.c and of store_pg.c).
 */
#include "hsmca/store_mdl.h"

#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define MDL_COLS                                                                                   \
    "id, kind, parent, token_uri, key_uri, cert, serial, created_ms, revoked_ms, reason, "         \
    "invalidity_ms"

void
hsmca_mdl_ca_rec_clear(struct hsmca_mdl_ca_rec *r)
{
    if (r != NULL)
        hsmca_store_free_blob(&r->cert_der, &r->cert_len);
}

static enum hsmca_err
mdl_row(void *dst, struct hsmca_q *s)
{
    struct hsmca_mdl_ca_rec *r = dst;

    memset(r, 0, sizeof(*r));
    hsmca_store_copy_text(r->id, sizeof(r->id), s, 0);
    hsmca_store_copy_text(r->kind, sizeof(r->kind), s, 1);
    hsmca_store_copy_text(r->parent, sizeof(r->parent), s, 2);
    hsmca_store_copy_text(r->token_uri, sizeof(r->token_uri), s, 3);
    hsmca_store_copy_text(r->key_uri, sizeof(r->key_uri), s, 4);
    if (hsmca_store_copy_blob(&r->cert_der, &r->cert_len, s, 5) != 0)
        return HSMCA_E_NOMEM;
    hsmca_store_copy_serial(r->serial, &r->serial_len, s, 6);
    r->created_ms = hsmca_q_int64(s, 7);
    r->revoked = !hsmca_q_null(s, 8);
    r->revoked_ms = r->revoked ? hsmca_q_int64(s, 8) : 0;
    r->reason = hsmca_q_null(s, 9) ? -1 : (int)hsmca_q_int64(s, 9);
    r->invalidity_ms = hsmca_q_int64(s, 10);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_mdl_ca_put(struct hsmca_store *st, const struct hsmca_mdl_ca_rec *r)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src, taken = 0;

    if (st == NULL || r == NULL || r->id[0] == '\0' || r->cert_der == NULL || r->serial_len == 0 ||
        r->serial_len > 20 || (strcmp(r->kind, "iaca") != 0 && strcmp(r->kind, "ds") != 0))
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    /* one namespace of CA ids for /v1/cas/{ca}: neither table may have it */
    src = hsmca_store_prepare(st,
                              "SELECT (SELECT count(*) FROM cas WHERE id = ?1) + "
                              "(SELECT count(*) FROM mdl_cas WHERE id = ?1)",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, r->id);
        src = hsmca_q_step(s);
        if (src == SQLITE_ROW)
            taken = (int)hsmca_q_int64(s, 0) > 0;
    }
    rc = hsmca_store_row_rc(st, src);
    hsmca_store_release(st, s);
    s = NULL;
    if (rc == HSMCA_OK && taken)
        rc = HSMCA_E_EXISTS;
    if (rc == HSMCA_OK) {
        src = hsmca_store_prepare(st,
                                  "INSERT INTO mdl_cas(id, kind, parent, token_uri, key_uri, cert, "
                                  "serial, created_ms) VALUES(?1, ?2, NULLIF(?3, ''), ?4, ?5, ?6, "
                                  "?7, ?8)",
                                  &s);
        if (src == SQLITE_OK) {
            hsmca_q_text(s, 1, r->id);
            hsmca_q_text(s, 2, r->kind);
            hsmca_q_text(s, 3, r->parent);
            hsmca_q_text(s, 4, r->token_uri);
            hsmca_q_text(s, 5, r->key_uri);
            hsmca_q_blob(s, 6, r->cert_der, r->cert_len);
            hsmca_q_blob(s, 7, r->serial, r->serial_len);
            hsmca_q_int(s, 8, (int64_t)r->created_ms);
            src = hsmca_q_step(s);
        }
        rc = hsmca_store_rc(st, src, 1);
        hsmca_store_release(st, s);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_mdl_ca_get(struct hsmca_store *st, const char *id, struct hsmca_mdl_ca_rec *out)
{
    if (st == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return hsmca_store_get_by_text(st, "SELECT " MDL_COLS " FROM mdl_cas WHERE id = ?1", id,
                                   mdl_row, out);
}

struct mdl_each {
    enum hsmca_err (*fn)(void *arg, const struct hsmca_mdl_ca_rec *r);
    void *arg;
};

static enum hsmca_err
mdl_each_row(void *ctx, struct hsmca_q *s)
{
    struct mdl_each *e = ctx;
    struct hsmca_mdl_ca_rec r;
    enum hsmca_err rc = mdl_row(&r, s);

    if (rc == HSMCA_OK)
        rc = e->fn(e->arg, &r);
    hsmca_mdl_ca_rec_clear(&r);
    return rc;
}

enum hsmca_err
hsmca_store_mdl_ca_list(struct hsmca_store *st,
                        enum hsmca_err (*fn)(void *arg, const struct hsmca_mdl_ca_rec *r),
                        void *arg)
{
    struct mdl_each e = {fn, arg};
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT " MDL_COLS " FROM mdl_cas ORDER BY kind = 'ds', id", &s);
    rc = hsmca_store_rows(st, s, src, mdl_each_row, &e);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_mdl_ca_revoke(struct hsmca_store *st, const char *id, int64_t revoked_ms, int reason,
                          int64_t invalidity_ms)
{
    struct hsmca_mdl_ca_rec r;
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src, changed = 0;

    if (st == NULL || id == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "UPDATE mdl_cas SET revoked_ms = ?2, reason = NULLIF(?3, -1), "
                              "invalidity_ms = NULLIF(?4, 0) WHERE id = ?1 AND kind = 'ds' AND "
                              "revoked_ms IS NULL",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, id);
        hsmca_q_int(s, 2, (int64_t)revoked_ms);
        hsmca_q_int(s, 3, reason);
        hsmca_q_int(s, 4, (int64_t)invalidity_ms);
        src = hsmca_q_step(s);
        changed = hsmca_q_changes(s);
    }
    rc = hsmca_store_rc(st, src, 1);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    if (rc != HSMCA_OK || changed == 1)
        return rc;
    rc = hsmca_store_mdl_ca_get(st, id, &r);
    if (rc == HSMCA_OK)
        rc = strcmp(r.kind, "ds") != 0 ? HSMCA_E_INVALID_ARG : HSMCA_E_REVOKE_ALREADY;
    hsmca_mdl_ca_rec_clear(&r);
    return rc;
}

enum hsmca_err
hsmca_store_mdl_revoked_list(struct hsmca_store *st, const char *iaca,
                             enum hsmca_err (*fn)(void *arg, const struct hsmca_revoked_rec *r),
                             void *arg)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || iaca == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "SELECT serial, revoked_ms, reason, invalidity_ms FROM mdl_cas "
                              "WHERE parent = ?1 AND revoked_ms IS NOT NULL ORDER BY serial",
                              &s);
    if (src == SQLITE_OK)
        hsmca_q_text(s, 1, iaca);
    rc = hsmca_store_revoked_rows(st, s, src, fn, arg);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_mdl_crl_put(struct hsmca_store *st, const char *ca, const struct hsmca_crl_rec *crl)
{
    if (st == NULL || ca == NULL || crl == NULL || crl->der == NULL)
        return HSMCA_E_INVALID_ARG;
    return hsmca_store_crl_put_sql(
        st,
        "INSERT INTO mdl_crls(ca, number, this_update, next_update, der) "
        "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(ca) DO UPDATE SET "
        "number = excluded.number, this_update = excluded.this_update, "
        "next_update = excluded.next_update, der = excluded.der",
        ca, crl);
}

enum hsmca_err
hsmca_store_mdl_crl_get(struct hsmca_store *st, const char *ca, struct hsmca_crl_rec *out)
{
    if (st == NULL || ca == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    return hsmca_store_crl_get_sql(
        st, "SELECT number, this_update, next_update, der FROM mdl_crls WHERE ca = ?1", ca, out);
}
