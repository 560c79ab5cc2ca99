/* SPDX-License-Identifier: Apache-2.0
 *
 * store_quota.c -- issuance quotas counted in the store (store_quota.h): a reservation is one
 * transaction that reads the live buckets' sum and raises the bucket of now under a lock every
 * node takes (SQLite: BEGIN IMMEDIATE's write lock; PostgreSQL: an advisory transaction lock per
 * CA, so the sum each node reads is the one its UPSERT adds to); and a node's blocks in memory.
 */
#include "hsmca/store_quota.h"

#include <string.h>

#include "store_internal.h"

/* pg_advisory_xact_lock(QUOTA_LOCK_KEY, hashtext(ca)): the two-int4 key space, apart from the
 * bigint keys of the audit chain and the intents ("hsqu") */
#define QUOTA_LOCK_KEY "1752395125"

static int
geometry(char period, int64_t *width, int64_t *span)
{
    if (period == HSMCA_QUOTA_MINUTE) {
        *width = 1000;
        *span = 60000;
        return 0;
    }
    if (period == HSMCA_QUOTA_DAY) {
        *width = 60000;
        *span = 86400000;
        return 0;
    }
    return -1;
}

int64_t
hsmca_quota_bucket(char period, int64_t t_ms)
{
    int64_t w, s;

    if (geometry(period, &w, &s) != 0 || t_ms < 0)
        return -1;
    return t_ms / w * w;
}

static enum hsmca_err
refusal(char period)
{
    return period == HSMCA_QUOTA_MINUTE ? HSMCA_E_ISSUE_QUOTA_MINUTE : HSMCA_E_ISSUE_QUOTA_DAY;
}

/* One statement inside the open transaction: ca ?1, period ?2, then a, b as ?3, ?4 (when given). */
static enum hsmca_err
txn_step(struct hsmca_store *st, const char *sql, const char *ca, char period, int nargs, int64_t a,
         int64_t b, uint64_t *row0, int *changed)
{
    struct hsmca_q *s = NULL;
    char p[2] = {period, '\0'};
    enum hsmca_err rc;
    int src;

    rc = hsmca_store_lock_txn(st);
    if (rc != HSMCA_OK)
        return rc;
    src = hsmca_store_prepare(st, sql, &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        if (nargs >= 2)
            hsmca_q_text(s, 2, p);
        if (nargs >= 3)
            hsmca_q_int(s, 3, a);
        if (nargs >= 4)
            hsmca_q_int(s, 4, b);
        src = hsmca_q_step(s);
    }
    if (row0 != NULL) {
        rc = hsmca_store_row_rc(st, src);
        if (rc == HSMCA_OK)
            *row0 = (uint64_t)hsmca_q_int64(s, 0);
    } else {
        rc = hsmca_store_rc(st, src, 1);
        if (rc == HSMCA_OK && changed != NULL)
            *changed = hsmca_q_changes(s);
    }
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_quota_reserve(struct hsmca_store *st, const char *ca, char period, int64_t t_ms,
                          uint64_t limit, uint64_t want, int64_t give_start, uint64_t give_n,
                          uint64_t *got, uint64_t *sum_out)
{
    int64_t width, span, b;
    uint64_t sum = 0, n = 0;
    enum hsmca_err rc;
    int changed = 0;

    if (st == NULL || ca == NULL || got == NULL || sum_out == NULL || want == 0 || limit == 0 ||
        geometry(period, &width, &span) != 0 || t_ms < 0 || limit > INT64_MAX || want > INT64_MAX ||
        give_n > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    *got = 0;
    b = t_ms / width * width;
    rc = hsmca_store_begin(st);
    if (rc != HSMCA_OK)
        return rc;
    if (hsmca_store_is_pg(st))
        rc = txn_step(st, "SELECT 1 FROM pg_advisory_xact_lock(" QUOTA_LOCK_KEY ", hashtext(?1))",
                      ca, period, 1, 0, 0, &sum, NULL);
    if (rc == HSMCA_OK && give_n > 0)
        rc = txn_step(st,
                      "UPDATE quota_buckets SET used = used - ?4 WHERE ca = ?1 AND period = ?2 "
                      "AND start_ms = ?3 AND used >= ?4",
                      ca, period, 4, give_start, (int64_t)give_n, NULL, NULL);
    /* buckets two periods old: no clock a node may have (they agree by NTP) still counts them */
    if (rc == HSMCA_OK)
        rc = txn_step(st,
                      "DELETE FROM quota_buckets WHERE ca = ?1 AND period = ?2 AND start_ms <= ?3",
                      ca, period, 3, b - 2 * span, 0, NULL, NULL);
    /* the live sum, and any bucket ahead of ours (a node whose clock runs ahead): each window
     * that holds our bucket is within it */
    if (rc == HSMCA_OK)
        rc = txn_step(
            st,
            "SELECT CAST(coalesce(sum(used), 0) AS BIGINT) FROM quota_buckets WHERE ca = ?1 AND "
            "period = ?2 AND start_ms > ?3",
            ca, period, 3, b - span, 0, &sum, NULL);
    if (rc == HSMCA_OK && sum < limit) {
        n = limit - sum < want ? limit - sum : want;
        rc = txn_step(st,
                      "INSERT INTO quota_buckets(ca, period, start_ms, used) VALUES(?1, ?2, ?3, "
                      "?4) ON CONFLICT (ca, period, start_ms) DO UPDATE SET used = "
                      "quota_buckets.used + excluded.used",
                      ca, period, 4, b, (int64_t)n, NULL, &changed);
        if (rc == HSMCA_OK && changed != 1)
            rc = HSMCA_E_STORE_CONSTRAINT;
    }
    if (rc != HSMCA_OK) {
        hsmca_store_rollback(st);
        return rc;
    }
    rc = hsmca_store_commit(st);
    if (rc != HSMCA_OK)
        return rc;
    *got = n;
    *sum_out = sum + n;
    return n > 0 ? HSMCA_OK : refusal(period);
}

enum hsmca_err
hsmca_store_quota_release(struct hsmca_store *st, const char *ca, char period, int64_t start,
                          uint64_t n)
{
    struct hsmca_q *s = NULL;
    char p[2] = {period, '\0'};
    int64_t w, sp;
    int src;

    if (st == NULL || ca == NULL || geometry(period, &w, &sp) != 0 || n > INT64_MAX)
        return HSMCA_E_INVALID_ARG;
    if (n == 0)
        return HSMCA_OK;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "UPDATE quota_buckets SET used = used - ?4 WHERE ca = ?1 AND "
                              "period = ?2 AND start_ms = ?3 AND used >= ?4",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_text(s, 2, p);
        hsmca_q_int(s, 3, start);
        hsmca_q_int(s, 4, (int64_t)n);
    }
    return hsmca_store_step_done(st, s, src);
}

enum hsmca_err
hsmca_store_quota_sum(struct hsmca_store *st, const char *ca, char period, int64_t t_ms,
                      uint64_t *out)
{
    struct hsmca_q *s = NULL;
    char p[2] = {period, '\0'};
    int64_t w, sp;
    enum hsmca_err rc;
    int src;

    if (st == NULL || ca == NULL || out == NULL || geometry(period, &w, &sp) != 0)
        return HSMCA_E_INVALID_ARG;
    *out = 0;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(
        st,
        "SELECT CAST(coalesce(sum(used), 0) AS BIGINT) FROM quota_buckets WHERE ca = ?1 AND "
        "period = ?2 AND start_ms > ?3",
        &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_text(s, 2, p);
        hsmca_q_int(s, 3, t_ms / w * w - sp);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_row_rc(st, src);
    if (rc == HSMCA_OK)
        *out = (uint64_t)hsmca_q_int64(s, 0);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_quota_seed(struct hsmca_store *st, const char *ca, char period, int64_t t_ms)
{
    struct hsmca_q *s = NULL;
    char p[2] = {period, '\0'};
    int64_t w, sp;
    int src;

    if (st == NULL || ca == NULL || geometry(period, &w, &sp) != 0)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "INSERT INTO quota_buckets(ca, period, start_ms, used) "
                              "SELECT ca, ?2, issued_ms / ?3 * ?3, count(*) FROM certificates "
                              "WHERE ca = ?1 AND issued_ms >= ?4 GROUP BY ca, 3 "
                              "ON CONFLICT (ca, period, start_ms) DO NOTHING",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_text(s, 2, p);
        hsmca_q_int(s, 3, w);
        hsmca_q_int(s, 4, t_ms / w * w - sp + w);
    }
    return hsmca_store_step_done(st, s, src);
}

enum hsmca_err
hsmca_store_quota_recount(struct hsmca_store *st, const char *ca, int64_t t_ms)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st == NULL || ca == NULL || hsmca_store_is_pg(st))
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(
        st,
        "UPDATE quota_buckets SET used = (SELECT count(*) FROM certificates c WHERE c.ca = ?1 AND "
        "c.issued_ms >= quota_buckets.start_ms AND c.issued_ms < quota_buckets.start_ms + "
        "CASE quota_buckets.period WHEN 'm' THEN 1000 ELSE 60000 END) "
        "WHERE ca = ?1 AND start_ms > ?2",
        &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_int(s, 2, t_ms - 86400000 - 60000);
    }
    return hsmca_store_step_done(st, s, src);
}

/* ---------------------------------------------------------------- a node's blocks */

void
hsmca_quota_blk_init(struct hsmca_quota_blk *b)
{
    memset(b, 0, sizeof(*b));
    b->start = -1;
    b->refused = -1;
}

/* An eighth of what the quota had left at the last reservation (the whole limit before the
 * first), 1..cap. */
static uint64_t
block_want(const struct hsmca_quota_blk *b, uint64_t limit, uint64_t cap)
{
    uint64_t left = b->start < 0 ? limit : b->sum < limit ? limit - b->sum : 1, n = left / 8;

    if (n < 1)
        n = 1;
    return n > cap ? cap : n;
}

enum hsmca_err
hsmca_quota_take(struct hsmca_quota_blk *b, pthread_mutex_t *mu, pthread_cond_t *cv,
                 struct hsmca_store *st, pthread_mutex_t *st_mu, const char *ca, char period,
                 uint64_t limit, uint64_t cap, int64_t t_ms, int64_t *bucket)
{
    int64_t bk = hsmca_quota_bucket(period, t_ms), give_start;
    uint64_t want, give_n, got = 0, sum = 0;
    enum hsmca_err rc;
    int stale;

    if (b == NULL || mu == NULL || cv == NULL || st == NULL || st_mu == NULL || bucket == NULL ||
        bk < 0 || limit == 0 || cap == 0)
        return HSMCA_E_INVALID_ARG;
    for (;;) {
        while (b->busy)
            pthread_cond_wait(cv, mu);
        if (bk == b->start && b->n > 0) {
            b->n--;
            *bucket = bk;
            return HSMCA_OK;
        }
        if (bk == b->refused)
            return refusal(period);
        /* a new bucket (the block's rest goes back with this reservation), the same bucket
         * used up, or (a request that waited) an older one: one slot from the store */
        stale = b->start >= 0 && bk < b->start;
        give_start = b->start;
        give_n = stale ? 0 : b->n;
        want = stale ? 1 : block_want(b, limit, cap);
        if (!stale)
            b->n = 0;
        b->busy = 1;
        pthread_mutex_unlock(mu);
        pthread_mutex_lock(st_mu);
        rc = hsmca_store_quota_reserve(st, ca, period, t_ms, limit, want, give_start, give_n, &got,
                                       &sum);
        pthread_mutex_unlock(st_mu);
        pthread_mutex_lock(mu);
        b->busy = 0;
        pthread_cond_broadcast(cv);
        if (stale) {
            if (rc == HSMCA_OK)
                *bucket = bk;
            return rc;
        }
        if (rc != HSMCA_OK && rc != refusal(period)) {
            b->n += give_n; /* rolled back: given back with the next reservation */
            return rc;
        }
        b->n = bk == b->start ? b->n + got : got; /* slots given back meanwhile are kept */
        b->start = bk;
        b->sum = sum;
        if (rc != HSMCA_OK) {
            b->refused = bk;
            return rc;
        }
    }
}

void
hsmca_quota_blk_give(struct hsmca_quota_blk *b, int64_t bucket)
{
    if (b != NULL && bucket >= 0 && bucket == b->start)
        b->n++;
}

uint64_t
hsmca_quota_blk_count(const struct hsmca_quota_blk *b, char period, int64_t t_ms)
{
    int64_t w, sp;

    if (b == NULL || b->start < 0 || geometry(period, &w, &sp) != 0 ||
        b->start <= t_ms / w * w - sp)
        return 0;
    return b->sum > b->n ? b->sum - b->n : 0;
}
