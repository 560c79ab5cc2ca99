/* SPDX-License-Identifier: Apache-2.0
 *
 * store_windows.c -- activation windows shared by the nodes of one store (store_windows.h): a
 * PAI's DAC windows and a DS's mDL signing windows, each in its table. The same SQL on both
 * backends (the store's statement interface); every statement its own
 * transaction, so a reservation is one atomic UPDATE that the table's CHECK backs up.
 */
#include "hsmca/store_windows.h"

#include <stdio.h>
#include <string.h>

#include "store_internal.h"

/* reservation tries when other nodes change the count between our read and our UPDATE */
#define RESERVE_TRIES 16

/* The two tables of windows: a PAI's DACs ("windows"), a DS's MSO signatures ("mdl_windows",
 * whose CA is an mdl_cas row). The same statements on either. */
struct wtab {
    const char *open, *get, *take, *release, *issued;
};

static const struct wtab DAC_WINDOWS = {
    "INSERT INTO windows(id, ca, until_ms, max_dacs, used, opened_ms) "
    "VALUES(?1, ?2, ?3, ?4, 0, ?5) ON CONFLICT (id) DO NOTHING",
    "SELECT id, ca, until_ms, max_dacs, used, opened_ms FROM windows WHERE id = ?1",
    "UPDATE windows SET used = used + ?2 WHERE id = ?1 AND used + ?2 <= max_dacs AND until_ms > ?3",
    "UPDATE windows SET used = used - ?2 WHERE id = ?1 AND used >= ?2",
    "SELECT count(*) FROM certificates WHERE window_id = ?1",
};

static const struct wtab MDL_WINDOWS = {
    "INSERT INTO mdl_windows(id, ca, until_ms, max_signatures, used, opened_ms) "
    "VALUES(?1, ?2, ?3, ?4, 0, ?5) ON CONFLICT (id) DO NOTHING",
    "SELECT id, ca, until_ms, max_signatures, used, opened_ms FROM mdl_windows WHERE id = ?1",
    "UPDATE mdl_windows SET used = used + ?2 WHERE id = ?1 AND used + ?2 <= max_signatures AND "
    "until_ms > ?3",
    "UPDATE mdl_windows SET used = used - ?2 WHERE id = ?1 AND used >= ?2",
    NULL,
};

static enum hsmca_err window_get(struct hsmca_store *st, const struct wtab *t, const char *id,
                                 struct hsmca_window_rec *out);

static enum hsmca_err
window_open(struct hsmca_store *st, const struct wtab *t, const struct hsmca_window_rec *w)
{
    struct hsmca_window_rec old;
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || w == NULL || w->id[0] == '\0' || w->max_dacs == 0 || w->max_dacs > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, t->open, &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, w->id);
        hsmca_q_text(s, 2, w->ca);
        hsmca_q_int(s, 3, w->until_ms);
        hsmca_q_int(s, 4, (int64_t)w->max_dacs);
        hsmca_q_int(s, 5, w->opened_ms);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_rc(st, src, 1);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    if (rc != HSMCA_OK)
        return rc;
    memset(&old, 0, sizeof(old));
    rc = window_get(st, t, w->id, &old);
    if (rc == HSMCA_OK && strcmp(old.ca, w->ca) != 0)
        rc = HSMCA_E_STORE_CONSTRAINT;
    return rc;
}

static enum hsmca_err
window_row(void *dst, struct hsmca_q *s)
{
    struct hsmca_window_rec *w = dst;

    hsmca_store_copy_text(w->id, sizeof(w->id), s, 0);
    hsmca_store_copy_text(w->ca, sizeof(w->ca), s, 1);
    w->until_ms = hsmca_q_int64(s, 2);
    w->max_dacs = (uint64_t)hsmca_q_int64(s, 3);
    w->used = (uint64_t)hsmca_q_int64(s, 4);
    w->opened_ms = hsmca_q_int64(s, 5);
    return HSMCA_OK;
}

static enum hsmca_err
window_get(struct hsmca_store *st, const struct wtab *t, const char *id,
           struct hsmca_window_rec *out)
{
    if (st == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    return hsmca_store_get_by_text(st, t->get, id, window_row, out);
}

/* UPDATE windows SET used = used + n WHERE it fits: 1 when taken, 0 when not, -1 on error. */
static int
take(struct hsmca_store *st, const struct wtab *t, const char *id, uint64_t n, int64_t now_ms,
     enum hsmca_err *rc)
{
    struct hsmca_q *s = NULL;
    int src, changed = 0;

    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, t->take, &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, id);
        hsmca_q_int(s, 2, (int64_t)n);
        hsmca_q_int(s, 3, now_ms);
        src = hsmca_q_step(s);
    }
    *rc = hsmca_store_rc(st, src, 1);
    if (*rc == HSMCA_OK)
        changed = hsmca_q_changes(s);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return *rc != HSMCA_OK ? -1 : changed == 1;
}

static enum hsmca_err
window_reserve(struct hsmca_store *st, const struct wtab *t, const char *id, uint64_t want,
               int64_t now_ms, uint64_t *got, uint64_t *used_out)
{
    struct hsmca_window_rec w;
    enum hsmca_err rc = HSMCA_OK;
    unsigned i;

    if (st == NULL || id == NULL || want == 0 || got == NULL || used_out == NULL)
        return HSMCA_E_INVALID_ARG;
    *got = 0;
    for (i = 0; i < RESERVE_TRIES; i++) {
        uint64_t n;
        int r;

        rc = window_get(st, t, id, &w);
        if (rc != HSMCA_OK)
            return rc;
        *used_out = w.used;
        if (now_ms >= w.until_ms)
            return HSMCA_E_ISSUE_WINDOW_EXPIRED;
        if (w.used >= w.max_dacs)
            return HSMCA_E_ISSUE_WINDOW_EXHAUSTED;
        n = w.max_dacs - w.used < want ? w.max_dacs - w.used : want;
        r = take(st, t, id, n, now_ms, &rc);
        if (r < 0)
            return rc;
        if (r == 1) {
            *got = n;
            *used_out = w.used + n;
            return HSMCA_OK;
        }
        want = n > 1 ? n / 2 : 1; /* another node took some meanwhile: ask for less */
    }
    return HSMCA_E_STORE_BUSY;
}

static enum hsmca_err
window_release(struct hsmca_store *st, const struct wtab *t, const char *id, uint64_t n)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || id == NULL)
        return HSMCA_E_INVALID_ARG;
    if (n == 0)
        return HSMCA_OK;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, t->release, &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, id);
        hsmca_q_int(s, 2, (int64_t)n);
        src = hsmca_q_step(s);
    }
    return hsmca_store_done(st, s, src);
}

static enum hsmca_err
count_row(void *dst, struct hsmca_q *s)
{
    *(uint64_t *)dst = (uint64_t)hsmca_q_int64(s, 0);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_window_issued(struct hsmca_store *st, const char *id, uint64_t *out)
{
    if (st == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    *out = 0;
    return hsmca_store_get_by_text(st, DAC_WINDOWS.issued, id, count_row, out);
}

/* ---- the two tables ---- */

enum hsmca_err
hsmca_store_window_open(struct hsmca_store *st, const struct hsmca_window_rec *w)
{
    return window_open(st, &DAC_WINDOWS, w);
}

enum hsmca_err
hsmca_store_window_get(struct hsmca_store *st, const char *id, struct hsmca_window_rec *out)
{
    return window_get(st, &DAC_WINDOWS, id, out);
}

enum hsmca_err
hsmca_store_window_reserve(struct hsmca_store *st, const char *id, uint64_t want, int64_t now_ms,
                           uint64_t *got, uint64_t *used_out)
{
    return window_reserve(st, &DAC_WINDOWS, id, want, now_ms, got, used_out);
}

enum hsmca_err
hsmca_store_window_release(struct hsmca_store *st, const char *id, uint64_t n)
{
    return window_release(st, &DAC_WINDOWS, id, n);
}

enum hsmca_err
hsmca_store_mdl_window_open(struct hsmca_store *st, const struct hsmca_window_rec *w)
{
    return window_open(st, &MDL_WINDOWS, w);
}

enum hsmca_err
hsmca_store_mdl_window_get(struct hsmca_store *st, const char *id, struct hsmca_window_rec *out)
{
    return window_get(st, &MDL_WINDOWS, id, out);
}

enum hsmca_err
hsmca_store_mdl_window_reserve(struct hsmca_store *st, const char *id, uint64_t want,
                               int64_t now_ms, uint64_t *got, uint64_t *used_out)
{
    return window_reserve(st, &MDL_WINDOWS, id, want, now_ms, got, used_out);
}

enum hsmca_err
hsmca_store_mdl_window_release(struct hsmca_store *st, const char *id, uint64_t n)
{
    return window_release(st, &MDL_WINDOWS, id, n);
}

enum hsmca_err
hsmca_store_mdl_windows_end(struct hsmca_store *st, const char *ca, int64_t now_ms)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || ca == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(
        st, "UPDATE mdl_windows SET until_ms = ?2 WHERE ca = ?1 AND until_ms > ?2", &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_int(s, 2, now_ms);
    }
    return hsmca_store_step_done(st, s, src);
}
