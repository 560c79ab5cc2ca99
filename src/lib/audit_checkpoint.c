/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_checkpoint.c -- signed checkpoints and the token anchor (moved by its own thread), and
 * the writer thread's loop that makes them when due.
 */
#include "hsmca/sizes.h"

#include "audit_core.h"

/* ---- checkpoints and the anchor ---- */

enum hsmca_err
audit_write_anchor(struct hsmca_audit *a, const struct hsmca_audit_checkpoint *cp)
{
    char buf[200], head[HSMCA_SHA256_HEX_SIZE], h[HSMCA_SHA256_HEX_SIZE];
    enum hsmca_err rc;
    int n;

    hsmca_hex_encode(cp->head, HSMCA_SHA256_LEN, head, sizeof(head));
    hsmca_hex_encode(cp->hash, HSMCA_SHA256_LEN, h, sizeof(h));
    n = snprintf(buf, sizeof(buf), "%llu %s %s", (unsigned long long)cp->size, head, h);
    rc =
        hsmca_token_data_write(a->token, AUDIT_ANCHOR_LABEL, (const unsigned char *)buf, (size_t)n);
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "audit", "anchor-write-failed", "size=%llu code=%s",
                  (unsigned long long)cp->size, hsmca_err_code(rc));
    return rc;
}

void *
audit_anchor_mover(void *arg)
{
    struct hsmca_audit *a = arg;
    struct hsmca_audit_checkpoint cp;
    enum hsmca_err rc;

    pthread_mutex_lock(&a->anchor_lock);
    for (;;) {
        while (!a->anchor_pending && !a->anchor_stop)
            pthread_cond_wait(&a->anchor_cv, &a->anchor_lock);
        if (!a->anchor_pending)
            break;
        cp = a->anchor_cp;
        a->anchor_pending = 0;
        a->anchor_busy = 1;
        pthread_mutex_unlock(&a->anchor_lock);
        rc = audit_write_anchor(a, &cp);
        pthread_mutex_lock(&a->anchor_lock);
        a->anchor_busy = 0;
        a->anchor_rc = rc;
        pthread_cond_broadcast(&a->anchor_cv);
    }
    pthread_mutex_unlock(&a->anchor_lock);
    return NULL;
}

/*
 * Move the anchor up to cp, which the store already holds durably (so a crash leaves the anchor
 * behind the store, which open accepts and repairs, never ahead of it). With the mover running,
 * the write is handed over and this returns at once; a newer anchor handed over before the mover
 * took the older one replaces it. Before the mover starts (genesis) it is written here.
 */
static enum hsmca_err
move_anchor(struct hsmca_audit *a, const struct hsmca_audit_checkpoint *cp)
{
    if (!a->anchor_started)
        return audit_write_anchor(a, cp);
    pthread_mutex_lock(&a->anchor_lock);
    memset(&a->anchor_cp, 0, sizeof(a->anchor_cp));
    a->anchor_cp.size = cp->size;
    memcpy(a->anchor_cp.head, cp->head, HSMCA_SHA256_LEN);
    memcpy(a->anchor_cp.hash, cp->hash, HSMCA_SHA256_LEN);
    a->anchor_pending = 1;
    pthread_cond_signal(&a->anchor_cv);
    pthread_mutex_unlock(&a->anchor_lock);
    return HSMCA_OK;
}

/* Wait until every anchor handed over is written; the last write's result. */
enum hsmca_err
audit_anchor_settle(struct hsmca_audit *a)
{
    enum hsmca_err rc;

    if (!a->anchor_started)
        return HSMCA_OK;
    pthread_mutex_lock(&a->anchor_lock);
    while (a->anchor_pending || a->anchor_busy)
        pthread_cond_wait(&a->anchor_cv, &a->anchor_lock);
    rc = a->anchor_rc;
    pthread_mutex_unlock(&a->anchor_lock);
    return rc;
}

/* Write what is handed over, then stop the mover (idempotent). */
void
audit_anchor_mover_stop(struct hsmca_audit *a)
{
    if (!a->anchor_started)
        return;
    pthread_mutex_lock(&a->anchor_lock);
    a->anchor_stop = 1;
    pthread_cond_signal(&a->anchor_cv);
    pthread_mutex_unlock(&a->anchor_lock);
    pthread_join(a->anchor_thread, NULL);
    a->anchor_started = 0;
}

/* A checkpoint attempt failed: note it, and wait retry_us before maybe_checkpoint tries again. */
static void
cp_failed(struct hsmca_audit *a)
{
    a->cp_failing = 1;
    a->cp_retry_at = hsmca_mono_us() + a->retry_us;
    pthread_mutex_lock(&a->lock);
    a->stats.checkpoint_failures++;
    __atomic_store_n(&a->pub_cp_failing, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&a->lock);
}

/* When the next checkpoint is due by time (hsmca_mono_us() clock). */
static uint64_t
cp_due_us(const struct hsmca_audit *a)
{
    return a->cp_failing ? a->cp_retry_at : a->last_cp_us + a->cp_ms * 1000u;
}

/*
 * Sign and store a checkpoint of the current head (writer context), then hand its anchor to the
 * mover. Callers that promise an anchored checkpoint (an explicit request, close) settle after.
 */
enum hsmca_err
audit_make_checkpoint(struct hsmca_audit *a)
{
    struct hsmca_audit_checkpoint cp;
    char head[HSMCA_SHA256_HEX_SIZE], prev[HSMCA_SHA256_HEX_SIZE], tbuf[HSMCA_AUDIT_TIME_LEN + 1],
        text[1024];
    unsigned char sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t sig_len = 0;
    enum hsmca_err rc;
    int n, held = 0;

    memset(&cp, 0, sizeof(cp));
    if (hsmca_store_is_pg(a->st)) {
        /* several nodes: under the chain's lock, the checkpoint of the store's head, after the
         * store's last checkpoint (another node may have signed one since) */
        rc = hsmca_store_begin(a->st);
        if (rc == HSMCA_OK) {
            held = 1;
            rc = audit_adopt_head(a);
        }
        if (rc == HSMCA_OK)
            rc = audit_adopt_checkpoint(a);
        if (rc != HSMCA_OK) {
            if (held)
                hsmca_store_rollback(a->st);
            hsmca_log(HSMCA_LOG_ERROR, "audit", "checkpoint-write-failed", "stage=lock code=%s",
                      hsmca_err_code(rc));
            cp_failed(a);
            return HSMCA_E_AUDIT_WRITE;
        }
        if (a->last_cp.size >= a->size) { /* another node covered the head already */
            hsmca_store_rollback(a->st);
            a->cp_failing = 0;
            a->last_cp_us = hsmca_mono_us();
            return HSMCA_OK;
        }
    }
    hsmca_hex_encode(a->head, HSMCA_SHA256_LEN, head, sizeof(head));
    hsmca_hex_encode(a->last_cp.hash, HSMCA_SHA256_LEN, prev, sizeof(prev));
    if (a->last_cp.size == 0)
        memset(prev, '0', HSMCA_SHA256_HEX_LEN);
    hsmca_audit_time_format(a->last_ms > audit_wall_ms(a) ? a->last_ms : audit_wall_ms(a), tbuf);
    n = snprintf(text, sizeof(text),
                 "hsmca-checkpoint/v1\norigin %s\nsize %llu\nhead %s\ntime %s\nprev %s\nkey %s\n",
                 a->origin, (unsigned long long)a->size, head, tbuf, prev, a->kid_hex);
    if (n < 0 || (size_t)n >= sizeof(text)) {
        if (held)
            hsmca_store_rollback(a->st);
        return HSMCA_E_INTERNAL;
    }
    cp.size = a->size;
    memcpy(cp.head, a->head, HSMCA_SHA256_LEN);
    cp.text = text;
    cp.text_len = (size_t)n;
    rc = audit_sha256(a, text, (size_t)n, cp.hash);
    if (rc != HSMCA_OK) {
        if (held)
            hsmca_store_rollback(a->st);
        return rc;
    }
    rc = a->key != NULL
             ? hsmca_key_sign_digest(a->key, cp.hash, HSMCA_SHA256_LEN, sig, sizeof(sig), &sig_len)
             : HSMCA_E_TOKEN_REMOVED;
    if (rc != HSMCA_OK && a->heal != NULL && rc != HSMCA_E_INVALID_ARG) {
        /* the token went away or lost its login: re-probe it, log in again, retry once */
        enum hsmca_err hrc = a->heal(a->heal_arg, &a->key);

        if (hrc == HSMCA_OK && a->key != NULL) {
            pthread_mutex_lock(&a->lock);
            a->stats.heals++;
            pthread_mutex_unlock(&a->lock);
            rc = hsmca_key_sign_digest(a->key, cp.hash, HSMCA_SHA256_LEN, sig, sizeof(sig),
                                       &sig_len);
        }
    }
    if (rc != HSMCA_OK) {
        if (!a->cp_failing)
            hsmca_log(HSMCA_LOG_ERROR, "audit", "checkpoint-sign-failed",
                      "size=%llu code=%s action=\"checkpoints are retried every %llu ms; DACs "
                      "stop once audit.max_unsigned_entries lie beyond the last one\"",
                      (unsigned long long)a->size, hsmca_err_code(rc),
                      (unsigned long long)(a->retry_us / 1000));
        if (held)
            hsmca_store_rollback(a->st);
        cp_failed(a);
        return rc;
    }
    cp.sig = sig;
    cp.sig_len = sig_len;
    rc = held ? HSMCA_OK : hsmca_store_begin(a->st);
    if (rc == HSMCA_OK) {
        rc = hsmca_store_audit_cp_put(a->st, &cp);
        if (rc == HSMCA_OK)
            rc = hsmca_store_commit(a->st);
        else
            hsmca_store_rollback(a->st);
    }
    if (rc != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "checkpoint-write-failed", "size=%llu code=%s",
                  (unsigned long long)a->size, hsmca_err_code(rc));
        cp_failed(a);
        return HSMCA_E_AUDIT_WRITE;
    }
    if (a->cp_failing)
        hsmca_log(HSMCA_LOG_INFO, "audit", "checkpoint-resumed", "size=%llu",
                  (unsigned long long)a->size);
    a->cp_failing = 0;
    pthread_mutex_lock(&a->lock);
    a->stats.commits++;
    a->stats.checkpoints++;
    __atomic_store_n(&a->pub_cp_size, cp.size, __ATOMIC_RELEASE);
    __atomic_store_n(&a->pub_cp_failing, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&a->lock);
    /* the store holds it durably first, then the anchor moves */
    rc = move_anchor(a, &cp);
    hsmca_audit_checkpoint_clear(&a->last_cp);
    if (audit_cp_copy(&a->last_cp, &cp) != HSMCA_OK) {
        memset(&a->last_cp, 0, sizeof(a->last_cp));
        a->last_cp.size = cp.size;
        memcpy(a->last_cp.hash, cp.hash, HSMCA_SHA256_LEN);
        memcpy(a->last_cp.head, cp.head, HSMCA_SHA256_LEN);
    }
    a->last_cp_us = hsmca_mono_us();
    return rc;
}

/* A checkpoint if N entries or T ms have passed (heartbeat: append one entry when idle). */
static void
maybe_checkpoint(struct hsmca_audit *a)
{
    uint64_t since = a->size - a->last_cp.size;

    if (a->cp_failing && hsmca_mono_us() < a->cp_retry_at)
        return; /* the token is away: try again at cp_retry_at, not on every batch */
    if (since >= a->cp_entries) {
        (void)audit_make_checkpoint(a);
        return;
    }
    if (hsmca_mono_us() < cp_due_us(a))
        return;
    if (since == 0) {
        struct item *hb = audit_system_item("audit.heartbeat", NULL);

        if (hb == NULL)
            return;
        audit_run_batch(a, &hb, 1);
        audit_item_free(hb);
    }
    if (a->size > a->last_cp.size)
        (void)audit_make_checkpoint(a);
}

static void
finish(struct hsmca_audit *a, struct item *it)
{
    if (it->kind == ITEM_CHECKPOINT) {
        enum hsmca_err rc = HSMCA_OK;

        if (a->size > a->last_cp.size)
            rc = audit_make_checkpoint(a);
        if (rc == HSMCA_OK)
            rc = audit_anchor_settle(a);
        if (rc == HSMCA_OK && it->cp_out != NULL)
            rc = audit_cp_copy(it->cp_out, &a->last_cp);
        it->rc = rc;
    }
    it->done(it->done_arg, it->rc, it->rc == HSMCA_OK ? &it->receipt : NULL);
    audit_item_free(it);
}

/*
 * Move queued items into batch[*n..] (a->lock held), up to batch_max. A checkpoint request is
 * taken only alone, as the first item, and ends the batch; entries_only takes no checkpoint at all.
 */
static void
take(struct hsmca_audit *a, struct item **batch, size_t *n, int entries_only)
{
    while (a->q_head != NULL && *n < a->batch_max) {
        struct item *it = a->q_head;

        if (it->kind == ITEM_CHECKPOINT && (*n > 0 || entries_only))
            break;
        a->q_head = it->next;
        if (a->q_head == NULL)
            a->q_tail = NULL;
        a->q_len--;
        batch[(*n)++] = it;
        if (it->kind == ITEM_CHECKPOINT)
            break;
    }
}

void *
audit_writer_main(void *arg)
{
    struct hsmca_audit *a = arg;
    struct item **batch;

    batch = calloc(a->batch_max, sizeof(*batch));
    if (batch == NULL)
        abort(); /* checked at open: cannot happen */
    for (;;) {
        size_t n = 0, i;
        int stop;

        pthread_mutex_lock(&a->lock);
        while (a->q_head == NULL && !a->stopping) {
            uint64_t now = hsmca_mono_us(), due = cp_due_us(a);
            struct timespec dl;

            if (now >= due)
                break;
            hsmca_deadline_us(&dl, due - now);
            (void)pthread_cond_timedwait(&a->work_cv, &a->lock, &dl);
        }
        take(a, batch, &n, 0);
        /*
         * Linger: when callers announced entries that are on their way (a DAC being checked and
         * signed on a worker), wait up to linger_us (1 ms) for them so one commit and one fdatasync
         * carry the lot. At 16 clients commits carried 3 DACs; each fdatasync and its WAL frames
         * cost the writer about as much CPU as the workers need for a DAC.
         */
        if (n > 0 && n < a->batch_max && batch[0]->kind == ITEM_ENTRY &&
            __atomic_load_n(&a->expected, __ATOMIC_ACQUIRE) > 0 && !a->stopping) {
            struct timespec dl;

            hsmca_deadline_us(&dl, a->linger_us);
            while (__atomic_load_n(&a->expected, __ATOMIC_ACQUIRE) > 0 && !a->stopping &&
                   pthread_cond_timedwait(&a->work_cv, &a->lock, &dl) == 0)
                ;
            take(a, batch, &n, 1);
        }
        stop = a->stopping && a->q_head == NULL && n == 0;
        pthread_mutex_unlock(&a->lock);
        if (stop)
            break;
        if (n > 0 && batch[0]->kind == ITEM_ENTRY)
            audit_run_batch(a, batch, n);
        pthread_mutex_lock(&a->lock);
        __atomic_store_n(&a->pub_size, a->size, __ATOMIC_RELEASE);
        __atomic_store_n(&a->pub_cp_size, a->last_cp.size, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&a->lock);
        for (i = 0; i < n; i++)
            finish(a, batch[i]);
        maybe_checkpoint(a);
        pthread_mutex_lock(&a->lock);
        __atomic_store_n(&a->pub_size, a->size, __ATOMIC_RELEASE);
        __atomic_store_n(&a->pub_cp_size, a->last_cp.size, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&a->lock);
    }
    free(batch);
    return NULL;
}
