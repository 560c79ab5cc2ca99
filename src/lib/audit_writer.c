/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_writer.c -- the writer: an item's line built, hashed and inserted at the next seq, one
 * batch of items in one transaction (a savepoint each), the commit histogram.
 */
#include "hsmca/sizes.h"

#include "audit_core.h"

/* ---- the writer: one batch in one transaction ---- */

/* Build, hash and insert the line of it at seq a->size+1 with time ms (inside the txn). */
static enum hsmca_err
write_line(struct hsmca_audit *a, const struct item *it, int64_t ms,
           unsigned char hash_out[HSMCA_SHA256_LEN])
{
    char prev[HSMCA_SHA256_HEX_SIZE], seq[24], tbuf[HSMCA_AUDIT_TIME_LEN + 1];
    char *line;
    size_t len, sl, off = 0;
    enum hsmca_err rc;
    uint64_t s = a->size + 1;

    hsmca_hex_encode(a->head, HSMCA_SHA256_LEN, prev, sizeof(prev));
    sl = (size_t)snprintf(seq, sizeof(seq), "%llu", (unsigned long long)s);
    hsmca_audit_time_format(ms, tbuf);
    len = it->pre_len + HSMCA_SHA256_HEX_LEN + it->mid_len + sl + it->post_len +
          HSMCA_AUDIT_TIME_LEN + 2;
    line = malloc(len + 1);
    if (line == NULL)
        return HSMCA_E_NOMEM;
#define PUT(p, n)                                                                                  \
    do {                                                                                           \
        memcpy(line + off, (p), (n));                                                              \
        off += (n);                                                                                \
    } while (0)
    PUT(it->pre, it->pre_len);
    PUT(prev, HSMCA_SHA256_HEX_LEN);
    PUT(it->mid, it->mid_len);
    PUT(seq, sl);
    PUT(it->post, it->post_len);
    PUT(tbuf, HSMCA_AUDIT_TIME_LEN);
    PUT("\"}", 2);
#undef PUT
    rc = audit_sha256(a, line, len, hash_out);
    if (rc == HSMCA_OK)
        rc = hsmca_store_audit_put(a->st, s, line, len, hash_out);
    if (rc == HSMCA_OK && it->is_intent)
        rc = hsmca_store_audit_intent_open(a->st, s, it->action);
    if (rc == HSMCA_OK && it->closes_intent != 0)
        rc = hsmca_store_audit_intent_close(a->st, it->closes_intent);
    free(line);
    if (rc == HSMCA_OK) {
        a->size = s;
        memcpy(a->head, hash_out, HSMCA_SHA256_LEN);
    }
    return rc;
}

struct item *
audit_system_item(const char *action, const char *detail)
{
    struct hsmca_audit_event ev = {"system", "system", action, "audit", "ok", detail, "", 0, 0};
    struct item *it = NULL;

    if (audit_item_new(&ev, &it) != HSMCA_OK)
        return NULL;
    return it;
}

/* One item inside the open transaction, in its own savepoint. */
void
audit_run_item(struct hsmca_audit *a, struct item *it)
{
    uint64_t size0 = a->size;
    unsigned char head0[HSMCA_SHA256_LEN];
    int64_t ms0 = a->last_ms, ms;
    int behind0 = a->clock_behind;
    unsigned char hash[HSMCA_SHA256_LEN];
    enum hsmca_err rc;

    memcpy(head0, a->head, HSMCA_SHA256_LEN);
    rc = hsmca_store_savepoint(a->st);
    if (rc != HSMCA_OK) {
        it->rc = HSMCA_E_AUDIT_WRITE;
        return;
    }
    if (it->apply != NULL) {
        rc = it->apply(a->st, it->apply_arg);
        if (rc != HSMCA_OK) {
            it->rc = rc;
            goto undo;
        }
    }
    ms = audit_wall_ms(a);
    if (ms >= a->last_ms)
        a->clock_behind = 0;
    else if (a->clock_behind)
        ms = a->last_ms;
    if (ms < a->last_ms) {
        /* the clock stepped back: say so in the log and keep time monotonic */
        char det[96];
        struct item *step;

        snprintf(det, sizeof(det), "{\"clock_ms\":%lld,\"last_ms\":%lld}", (long long)ms,
                 (long long)a->last_ms);
        step = audit_system_item("clock.step_back", det);
        if (step == NULL) {
            it->rc = HSMCA_E_NOMEM;
            goto undo;
        }
        hsmca_log(HSMCA_LOG_WARN, "audit", "clock-step-back", "clock_ms=%lld last_ms=%lld",
                  (long long)ms, (long long)a->last_ms);
        rc = write_line(a, step, a->last_ms, hash);
        audit_item_free(step);
        if (rc != HSMCA_OK) {
            it->rc = HSMCA_E_AUDIT_WRITE;
            goto undo;
        }
        ms = a->last_ms;
        a->clock_behind = 1;
    }
    rc = write_line(a, it, ms, hash);
    if (rc != HSMCA_OK) {
        it->rc = rc == HSMCA_E_NOT_FOUND ? HSMCA_E_INVALID_ARG : HSMCA_E_AUDIT_WRITE;
        goto undo;
    }
    a->last_ms = ms;
    if (hsmca_store_savepoint_release(a->st) != HSMCA_OK) {
        it->rc = HSMCA_E_AUDIT_WRITE;
        goto undo;
    }
    it->rc = HSMCA_OK;
    it->receipt.seq = a->size;
    memcpy(it->receipt.entry_hash, hash, HSMCA_SHA256_LEN);
    return;
undo:
    if (hsmca_store_savepoint_rollback(a->st) != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "rollback-failed", "seq=%llu",
                  (unsigned long long)size0 + 1);
        a->batch_broken = 1;
    }
    a->size = size0;
    memcpy(a->head, head0, HSMCA_SHA256_LEN);
    a->last_ms = ms0;
    a->clock_behind = behind0;
}

static void
hist_add(struct hsmca_audit *a, size_t n)
{
    static const size_t lim[7] = {1, 3, 7, 15, 63, 255, 1023};
    int i;

    for (i = 0; i < 7 && n > lim[i]; i++)
        ;
    a->stats.batch_hist[i]++;
    a->stats.batch_items += n;
}

/*
 * Several nodes on one PostgreSQL store write one chain (docs/postgresql.md): inside the writer's
 * transaction, take the chain's lock in the database and adopt the head another node may have
 * moved (its seq, hash and time), so that this node's next entry links to it and its time does not
 * go back. On SQLite (one writer) the head in memory is the store's: nothing to do.
 */
enum hsmca_err
audit_adopt_head(struct hsmca_audit *a)
{
    struct hsmca_audit_line l;
    unsigned char h[HSMCA_SHA256_LEN], lh[HSMCA_SHA256_LEN];
    const char *why = NULL;
    uint64_t sz = 0;
    char *line = NULL;
    size_t len = 0;
    enum hsmca_err rc;

    if (!hsmca_store_is_pg(a->st))
        return HSMCA_OK;
    rc = hsmca_store_audit_lock(a->st);
    if (rc == HSMCA_OK)
        rc = hsmca_store_audit_head(a->st, &sz, h);
    if (rc != HSMCA_OK || (sz == a->size && CRYPTO_memcmp(h, a->head, HSMCA_SHA256_LEN) == 0))
        return rc;
    if (sz < a->size) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "store-behind",
                  "store=%llu writer=%llu reason=\"the shared log lost entries\"",
                  (unsigned long long)sz, (unsigned long long)a->size);
        return HSMCA_E_AUDIT_CHAIN;
    }
    rc = hsmca_store_audit_get(a->st, sz, &line, &len, lh);
    if (rc == HSMCA_OK && hsmca_audit_line_parse(line, len, &l, &why) == HSMCA_OK) {
        int64_t t = hsmca_audit_time_parse(l.time);

        if (t > a->last_ms)
            a->last_ms = t;
    }
    free(line);
    if (rc != HSMCA_OK)
        return rc;
    a->size = sz;
    memcpy(a->head, h, HSMCA_SHA256_LEN);
    return HSMCA_OK;
}

/* With the chain's lock held (PostgreSQL): adopt a newer checkpoint another node signed. */
enum hsmca_err
audit_adopt_checkpoint(struct hsmca_audit *a)
{
    struct hsmca_audit_checkpoint cp;
    enum hsmca_err rc;

    memset(&cp, 0, sizeof(cp));
    rc = hsmca_store_audit_cp_at_most(a->st, UINT64_MAX, &cp);
    if (rc == HSMCA_E_NOT_FOUND)
        return HSMCA_OK;
    if (rc != HSMCA_OK)
        return rc;
    if (cp.size > a->last_cp.size) {
        hsmca_audit_checkpoint_clear(&a->last_cp);
        a->last_cp = cp;
        pthread_mutex_lock(&a->lock);
        __atomic_store_n(&a->pub_cp_size, cp.size, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&a->lock);
        return HSMCA_OK;
    }
    hsmca_audit_checkpoint_clear(&cp);
    return HSMCA_OK;
}

/* Run items[0..n) in one transaction; sets each item's rc and receipt. */
void
audit_run_batch(struct hsmca_audit *a, struct item **items, size_t n)
{
    uint64_t size0 = a->size, t0, commit_us = 0;
    unsigned char head0[HSMCA_SHA256_LEN];
    int64_t ms0 = a->last_ms;
    size_t i, ok = 0;
    enum hsmca_err rc;

    memcpy(head0, a->head, HSMCA_SHA256_LEN);
    rc = hsmca_store_begin(a->st);
    if (rc != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "write-failed", "stage=begin code=%s",
                  hsmca_err_code(rc));
        for (i = 0; i < n; i++)
            items[i]->rc = HSMCA_E_AUDIT_WRITE;
        return;
    }
    a->batch_broken = 0;
    rc = audit_adopt_head(a); /* several nodes: the chain's lock, and the head another moved */
    if (rc != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "write-failed", "stage=lock code=%s",
                  hsmca_err_code(rc));
        hsmca_store_rollback(a->st);
        for (i = 0; i < n; i++)
            items[i]->rc = HSMCA_E_AUDIT_WRITE;
        a->size = size0;
        memcpy(a->head, head0, HSMCA_SHA256_LEN);
        a->last_ms = ms0;
        return;
    }
    for (i = 0; i < n; i++) {
        audit_run_item(a, items[i]);
        ok += items[i]->rc == HSMCA_OK;
    }
    if (a->batch_broken) {
        hsmca_store_rollback(a->st);
        rc = HSMCA_E_AUDIT_WRITE;
    } else {
        t0 = hsmca_mono_us();
        rc = hsmca_store_commit(a->st);
        commit_us = hsmca_mono_us() - t0;
    }
    if (rc != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "write-failed", "stage=commit code=%s items=%zu",
                  hsmca_err_code(rc), n);
        for (i = 0; i < n; i++) {
            if (items[i]->rc == HSMCA_OK)
                items[i]->rc = HSMCA_E_AUDIT_WRITE;
        }
        a->size = size0;
        memcpy(a->head, head0, HSMCA_SHA256_LEN);
        a->last_ms = ms0;
        return;
    }
    pthread_mutex_lock(&a->lock);
    a->stats.commits++;
    a->stats.entries += ok;
    hist_add(a, n);
    a->stats.commit_hist[hsmca_lat_bucket(commit_us)]++;
    a->stats.commit_us_sum += commit_us;
    pthread_mutex_unlock(&a->lock);
}
