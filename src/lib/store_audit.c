/* SPDX-License-Identifier: Apache-2.0
 *
 * store_audit.c -- SQL for the audit log (store_audit.h): entries, checkpoints, open intents.
 * Stores line bytes exactly as given (BLOB, never re-encoded). Never commits and never deletes an
 * entry or a checkpoint: the only writer is the audit writer thread, inside its transaction.
 */
#include "hsmca/store_audit.h"

#include <stdlib.h>
#include <string.h>

#include "hsmca/sizes.h"

#include "store_internal.h"

enum hsmca_err
hsmca_store_audit_put(struct hsmca_store *st, uint64_t seq, const char *line, size_t len,
                      const unsigned char hash[HSMCA_SHA256_LEN])
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || line == NULL || hash == NULL || seq == 0 || seq > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_AUDIT_LINE_MAX)
        return HSMCA_E_TOO_LARGE;
    if (hsmca_store_lock_txn(st) != HSMCA_OK)
        return HSMCA_E_INVALID_ARG;
    src =
        hsmca_store_prepare(st, "INSERT INTO audit_entries(seq, line, hash) VALUES(?1,?2,?3)", &s);
    if (src == SQLITE_OK)
        hsmca_q_int(s, 1, (int64_t)seq);
    if (src == SQLITE_OK)
        hsmca_q_blob(s, 2, line, len);
    if (src == SQLITE_OK)
        hsmca_q_blob(s, 3, hash, HSMCA_SHA256_LEN);
    return hsmca_store_step_done(st, s, src);
}

enum hsmca_err
hsmca_store_audit_head(struct hsmca_store *st, uint64_t *seq, unsigned char hash[HSMCA_SHA256_LEN])
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    int src;

    if (st == NULL || seq == NULL || hash == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1",
                              &s);
    if (src == SQLITE_OK)
        src = hsmca_q_step(s);
    if (src == SQLITE_ROW) {
        const void *h = hsmca_q_blobp(s, 1);

        if (h == NULL || hsmca_q_bytes(s, 1) != HSMCA_SHA256_LEN) {
            rc = HSMCA_E_STORE_READ;
        } else {
            *seq = (uint64_t)hsmca_q_int64(s, 0);
            memcpy(hash, h, HSMCA_SHA256_LEN);
        }
    } else if (src == SQLITE_DONE) {
        *seq = 0;
        memset(hash, 0, HSMCA_SHA256_LEN);
    } else {
        rc = hsmca_store_rc(st, src, 0);
        if (rc == HSMCA_OK)
            rc = HSMCA_E_STORE_READ;
    }
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_audit_get(struct hsmca_store *st, uint64_t seq, char **line, size_t *len,
                      unsigned char hash[HSMCA_SHA256_LEN])
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    int src;

    if (st == NULL || line == NULL || len == NULL || hash == NULL || seq > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT line, hash FROM audit_entries WHERE seq = ?1", &s);
    if (src == SQLITE_OK)
        hsmca_q_int(s, 1, (int64_t)seq);
    if (src == SQLITE_OK)
        src = hsmca_q_step(s);
    rc = hsmca_store_row_rc(st, src);
    if (rc == HSMCA_OK) {
        const void *l = hsmca_q_blobp(s, 0);
        int n = hsmca_q_bytes(s, 0);
        const void *h = hsmca_q_blobp(s, 1);
        char *copy;

        if (h == NULL || hsmca_q_bytes(s, 1) != HSMCA_SHA256_LEN || n < 0) {
            rc = HSMCA_E_STORE_READ;
            goto out;
        }
        copy = malloc((size_t)n + 1);
        if (copy == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        if (n > 0)
            memcpy(copy, l, (size_t)n);
        copy[n] = '\0';
        memcpy(hash, h, HSMCA_SHA256_LEN);
        *line = copy;
        *len = (size_t)n;
    }
out:
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* PostgreSQL hands a query's rows over all at once: a scan reads pages of this many entries, so
 * an extract of a long log streams in bounded memory (SQLite steps row by row by itself). */
#define SCAN_PAGE 2000
static const char scan_sql[] =
    "SELECT seq, line, hash FROM audit_entries WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq";

enum hsmca_err
hsmca_store_audit_scan(struct hsmca_store *st, uint64_t from, uint64_t to,
                       hsmca_store_audit_line_fn fn, void *arg)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    int src, rows = 0;
    uint64_t page_to;

    if (st == NULL || fn == NULL || from > INT64_MAX || to > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, scan_sql, &s);
next_page:
    page_to = hsmca_store_is_pg(st) && to - from >= SCAN_PAGE ? from + SCAN_PAGE - 1 : to;
    if (src == SQLITE_OK) {
        hsmca_q_int(s, 1, (int64_t)from);
        hsmca_q_int(s, 2, (int64_t)page_to);
    }
    if (src != SQLITE_OK) {
        rc = hsmca_store_rc(st, src, 0);
        goto out;
    }
    while (hsmca_store_next(st, s, &rc)) {
        const void *l, *h;
        int n;

        l = hsmca_q_blobp(s, 1);
        n = hsmca_q_bytes(s, 1);
        h = hsmca_q_blobp(s, 2);
        if (l == NULL || h == NULL || hsmca_q_bytes(s, 2) != HSMCA_SHA256_LEN || n <= 0) {
            rc = HSMCA_E_STORE_READ;
            goto out;
        }
        rows++;
        rc = fn(arg, (uint64_t)hsmca_q_int64(s, 0), l, (size_t)n, h);
        if (rc != HSMCA_OK)
            goto out;
    }
    if (rc != HSMCA_OK)
        goto out;
    /* the next page; seqs are dense, so a page short of full is the end of the log */
    if (page_to < to && (uint64_t)rows == page_to - from + 1) {
        hsmca_store_release(st, s);
        from = page_to + 1;
        rows = 0;
        src = hsmca_store_prepare(st, scan_sql, &s);
        goto next_page;
    }
out:
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_audit_cp_put(struct hsmca_store *st, const struct hsmca_audit_checkpoint *cp)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || cp == NULL || cp->text == NULL || cp->sig == NULL || cp->size == 0 ||
        cp->size > INT64_MAX || cp->text_len > 1024 || cp->sig_len > 80)
        return HSMCA_E_INVALID_ARG;
    if (hsmca_store_lock_txn(st) != HSMCA_OK)
        return HSMCA_E_INVALID_ARG;
    src = hsmca_store_prepare(st,
                              "INSERT INTO audit_checkpoints(size, text, sig, hash, head) "
                              "VALUES(?1,?2,?3,?4,?5)",
                              &s);
    if (src == SQLITE_OK)
        hsmca_q_int(s, 1, (int64_t)cp->size);
    if (src == SQLITE_OK)
        hsmca_q_blob(s, 2, cp->text, cp->text_len);
    if (src == SQLITE_OK)
        hsmca_q_blob(s, 3, cp->sig, cp->sig_len);
    if (src == SQLITE_OK)
        hsmca_q_blob(s, 4, cp->hash, HSMCA_SHA256_LEN);
    if (src == SQLITE_OK)
        hsmca_q_blob(s, 5, cp->head, HSMCA_SHA256_LEN);
    return hsmca_store_step_done(st, s, src);
}

static enum hsmca_err
cp_query(struct hsmca_store *st, const char *sql, uint64_t bound,
         struct hsmca_audit_checkpoint *out)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    int src;

    if (st == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (bound > INT64_MAX)
        bound = INT64_MAX;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, sql, &s);
    if (src == SQLITE_OK)
        hsmca_q_int(s, 1, (int64_t)bound);
    if (src == SQLITE_OK)
        src = hsmca_q_step(s);
    rc = hsmca_store_row_rc(st, src);
    if (rc == HSMCA_OK) {
        struct hsmca_audit_checkpoint cp;
        const void *text = hsmca_q_blobp(s, 1), *sig = hsmca_q_blobp(s, 2);
        const void *hash = hsmca_q_blobp(s, 3), *head = hsmca_q_blobp(s, 4);
        int tl = hsmca_q_bytes(s, 1), sl = hsmca_q_bytes(s, 2);

        memset(&cp, 0, sizeof(cp));
        if (text == NULL || sig == NULL || hash == NULL || head == NULL ||
            hsmca_q_bytes(s, 3) != HSMCA_SHA256_LEN || hsmca_q_bytes(s, 4) != HSMCA_SHA256_LEN ||
            tl <= 0 || sl <= 0) {
            rc = HSMCA_E_STORE_READ;
            goto out;
        }
        cp.size = (uint64_t)hsmca_q_int64(s, 0);
        cp.text = malloc((size_t)tl + 1);
        cp.sig = malloc((size_t)sl);
        if (cp.text == NULL || cp.sig == NULL) {
            free(cp.text);
            free(cp.sig);
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        memcpy(cp.text, text, (size_t)tl);
        cp.text[tl] = '\0';
        cp.text_len = (size_t)tl;
        memcpy(cp.sig, sig, (size_t)sl);
        cp.sig_len = (size_t)sl;
        memcpy(cp.hash, hash, HSMCA_SHA256_LEN);
        memcpy(cp.head, head, HSMCA_SHA256_LEN);
        *out = cp;
    }
out:
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_audit_cp_at_most(struct hsmca_store *st, uint64_t max_size,
                             struct hsmca_audit_checkpoint *out)
{
    return cp_query(st,
                    "SELECT size, text, sig, hash, head FROM audit_checkpoints WHERE size <= ?1 "
                    "ORDER BY size DESC LIMIT 1",
                    max_size, out);
}

enum hsmca_err
hsmca_store_audit_cp_at_least(struct hsmca_store *st, uint64_t min_size,
                              struct hsmca_audit_checkpoint *out)
{
    return cp_query(st,
                    "SELECT size, text, sig, hash, head FROM audit_checkpoints WHERE size >= ?1 "
                    "ORDER BY size ASC LIMIT 1",
                    min_size, out);
}

enum hsmca_err
hsmca_store_audit_intent_open(struct hsmca_store *st, uint64_t seq, const char *action)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || action == NULL || seq == 0 || seq > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "INSERT INTO audit_intents(seq, action) VALUES(?1, ?2)", &s);
    if (src == SQLITE_OK)
        hsmca_q_int(s, 1, (int64_t)seq);
    if (src == SQLITE_OK)
        hsmca_q_text(s, 2, action);
    return hsmca_store_step_done(st, s, src);
}

enum hsmca_err
hsmca_store_audit_intent_close(struct hsmca_store *st, uint64_t seq)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || seq == 0 || seq > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "DELETE FROM audit_intents WHERE seq = ?1", &s);
    if (src == SQLITE_OK)
        hsmca_q_int(s, 1, (int64_t)seq);
    if (src == SQLITE_OK)
        src = hsmca_q_step(s);
    rc = hsmca_store_rc(st, src, 1);
    if (rc == HSMCA_OK && hsmca_q_changes(s) != 1)
        rc = HSMCA_E_NOT_FOUND;
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_audit_intents(struct hsmca_store *st, struct hsmca_store_audit_intent *out, size_t max,
                          size_t *n)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    size_t k = 0;
    int src;

    if (st == NULL || n == NULL || (out == NULL && max > 0))
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT seq, action FROM audit_intents ORDER BY seq", &s);
    if (src != SQLITE_OK) {
        rc = hsmca_store_rc(st, src, 0);
        goto out;
    }
    while (k < max && hsmca_store_next(st, s, &rc)) {
        const unsigned char *t;
        size_t tl;

        out[k].seq = (uint64_t)hsmca_q_int64(s, 0);
        t = hsmca_q_textp(s, 1);
        tl = t != NULL ? (size_t)hsmca_q_bytes(s, 1) : 0;
        if (tl > HSMCA_AUDIT_FIELD_MAX)
            tl = HSMCA_AUDIT_FIELD_MAX;
        if (tl > 0)
            memcpy(out[k].action, t, tl);
        out[k].action[tl] = '\0';
        k++;
    }
    if (rc != HSMCA_OK)
        goto out;
    *n = k;
out:
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* the advisory lock of the audit chain (PostgreSQL): "hsmca-audit-chain" */
#define AUDIT_CHAIN_LOCK "SELECT pg_advisory_xact_lock(7236837384531522114)"

enum hsmca_err
hsmca_store_audit_lock(struct hsmca_store *st)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL)
        return HSMCA_E_INVALID_ARG;
    if (!hsmca_store_is_pg(st)) /* SQLite: BEGIN IMMEDIATE already holds the one write lock */
        return HSMCA_OK;
    if (hsmca_store_lock_txn(st) != HSMCA_OK)
        return HSMCA_E_INVALID_ARG;
    src = hsmca_store_prepare(st, AUDIT_CHAIN_LOCK, &s);
    return hsmca_store_step_done(st, s, src);
}

/* the session advisory lock of the intents (PostgreSQL): "hsmca-audit-intents" */
#define INTENTS_LOCK_KEY "7236837384531522115"

static enum hsmca_err
intents_try(struct hsmca_store *st, int *got)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(
        st, "SELECT CASE WHEN pg_try_advisory_lock(" INTENTS_LOCK_KEY ") THEN 1 ELSE 0 END", &s);
    if (src == SQLITE_OK)
        src = hsmca_q_step(s);
    rc = hsmca_store_row_rc(st, src);
    if (rc == HSMCA_OK)
        *got = hsmca_q_int64(s, 0) == 1;
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_intents_lock(struct hsmca_store *st, unsigned wait_ms)
{
    unsigned waited = 0;
    enum hsmca_err rc;
    int got = 0;

    if (st == NULL)
        return HSMCA_E_INVALID_ARG;
    if (!hsmca_store_is_pg(st))
        return HSMCA_OK;
    for (;;) {
        rc = intents_try(st, &got);
        if (rc != HSMCA_OK || got)
            return rc;
        if (waited >= wait_ms)
            return HSMCA_E_STORE_BUSY;
        {
            struct timespec ts = {0, 50 * 1000 * 1000};

            nanosleep(&ts, NULL);
        }
        waited += 50;
    }
}

void
hsmca_store_intents_unlock(struct hsmca_store *st)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || !hsmca_store_is_pg(st))
        return;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT pg_advisory_unlock(" INTENTS_LOCK_KEY ")", &s);
    if (src == SQLITE_OK)
        (void)hsmca_q_step(s);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
}
