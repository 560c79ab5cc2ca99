/* SPDX-License-Identifier: Apache-2.0
 *
 * audit.c -- the hash-chained audit log: the single writer thread with group commit, entry lines
 * (compact JSON, sorted keys, written once), signed checkpoints, the token anchor, the start-up
 * self-check and intent reconciliation. Owns the store handle's writes while open.
 * Never releases a result before its entry is durable; never re-serialises a written line; never
 * logs a secret (details come from callers, who log hashes and serials only).
 */
#include "hsmca/audit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "hsmca/limits.h"
#include "hsmca/log.h"
#include "hsmca/store_audit.h"
#include "hsmca/util.h"

#include "audit_internal.h"

#define QUEUE_MAX 100000

enum item_kind { ITEM_ENTRY, ITEM_CHECKPOINT };

struct item {
    struct item *next;
    enum item_kind kind;
    /* the line around the parts only the writer knows (prev, seq, time) */
    char *pre;  /* {"action":..,"actor":..,"detail":..,"kid":..,"outcome":..,"prev":" */
    char *mid;  /* ","role":..,"seq": */
    char *post; /* ,"target":..,"time":" */
    size_t pre_len, mid_len, post_len;
    char action[HSMCA_AUDIT_FIELD_MAX + 1];
    int is_intent;
    uint64_t closes_intent;
    hsmca_audit_apply_fn apply;
    void *apply_arg;
    hsmca_audit_done_fn done;
    void *done_arg;
    enum hsmca_err rc;
    struct hsmca_audit_receipt receipt;
    struct hsmca_audit_checkpoint *cp_out; /* ITEM_CHECKPOINT */
};

struct hsmca_audit {
    struct hsmca_store *st;
    struct hsmca_token *token;
    struct hsmca_key *key;
    EVP_PKEY *pub;
    char origin[HSMCA_AUDIT_FIELD_MAX + 1];
    unsigned char kid[32];
    char kid_hex[65];
    uint64_t cp_entries, cp_ms;
    unsigned batch_max;
    unsigned linger_us; /* cfg->linger_us */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    char *cert_pem;
    EVP_MD *sha256;
    EVP_MD_CTX *mdctx;

    /* writer state (writer thread, or open/close before/after it runs) */
    uint64_t size;
    unsigned char head[32];
    int64_t last_ms;
    struct hsmca_audit_checkpoint last_cp; /* size 0 = none */
    uint64_t last_cp_us;                   /* hsmca_mono_us() at the last checkpoint */

    pthread_mutex_t lock;
    pthread_cond_t work_cv, sync_cv;
    struct item *q_head, *q_tail;
    size_t q_len;
    long expected; /* entries announced by hsmca_audit_expect, not yet submitted (atomic) */
    int stopping;
    int thread_started;
    pthread_t thread;
    uint64_t pub_size; /* durable size, readable under lock */
    int clock_behind;  /* the wall clock is behind the last entry (step-back already logged) */
    int batch_broken;  /* a savepoint could not be rolled back: the whole batch must go */
    struct hsmca_audit_stats stats;
    /* last_cp.size and "the last checkpoint attempt failed": written under lock, read without
     * it (atomics) by hsmca_audit_unsigned on every DAC, which must not contend for the lock */
    uint64_t pub_cp_size;
    int pub_cp_failing;

    /* checkpoints while the audit token is away (writer thread) */
    enum hsmca_err (*heal)(void *arg, struct hsmca_key **key);
    void *heal_arg;
    uint64_t retry_us;
    int cp_failing;       /* the last attempt failed */
    uint64_t cp_retry_at; /* hsmca_mono_us() before which maybe_checkpoint does not try again */

    /*
     * The anchor mover: a checkpoint's anchor is written to the token on this thread, so the
     * writer, and every DAC waiting for its entry, does not stop for it (SoftHSM replaces a data
     * object in 4-12 ms; a slower token would stall longer). All under anchor_lock.
     */
    pthread_mutex_t anchor_lock;
    pthread_cond_t anchor_cv;
    pthread_t anchor_thread;
    int anchor_started, anchor_stop, anchor_pending, anchor_busy;
    struct hsmca_audit_checkpoint anchor_cp; /* size, head and hash only */
    enum hsmca_err anchor_rc;                /* of the last write */
};

/* ---- small helpers ---- */

static int64_t
wall_ms(struct hsmca_audit *a)
{
    struct timespec ts;

    if (a->clock_ms != NULL)
        return a->clock_ms(a->clock_arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum hsmca_err
sha256(struct hsmca_audit *a, const void *data, size_t len, unsigned char out[32])
{
    if (EVP_DigestInit_ex2(a->mdctx, a->sha256, NULL) != 1 ||
        EVP_DigestUpdate(a->mdctx, data, len) != 1 || EVP_DigestFinal_ex(a->mdctx, out, NULL) != 1)
        return HSMCA_E_INTERNAL;
    return HSMCA_OK;
}

void
hsmca_audit_checkpoint_clear(struct hsmca_audit_checkpoint *cp)
{
    if (cp == NULL)
        return;
    free(cp->text);
    free(cp->sig);
    memset(cp, 0, sizeof(*cp));
}

static enum hsmca_err
cp_copy(struct hsmca_audit_checkpoint *dst, const struct hsmca_audit_checkpoint *src)
{
    struct hsmca_audit_checkpoint c = *src;

    c.text = malloc(src->text_len + 1);
    c.sig = malloc(src->sig_len > 0 ? src->sig_len : 1);
    if (c.text == NULL || c.sig == NULL) {
        free(c.text);
        free(c.sig);
        return HSMCA_E_NOMEM;
    }
    memcpy(c.text, src->text, src->text_len + 1);
    memcpy(c.sig, src->sig, src->sig_len);
    *dst = c;
    return HSMCA_OK;
}

static void
item_free(struct item *it)
{
    if (it == NULL)
        return;
    free(it->pre);
    free(it->mid);
    free(it->post);
    free(it);
}

/* A JSON string literal for s ("" if NULL), bounded. NULL on bad UTF-8 or length. */
static char *
json_str(const char *s, size_t max)
{
    json_t *j;
    char *out;

    if (s == NULL)
        s = "";
    if (strlen(s) > max)
        return NULL;
    j = json_string(s);
    if (j == NULL)
        return NULL;
    out = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    return out;
}

static char *
concat(const char *const *parts, size_t n, size_t *len_out)
{
    size_t i, len = 0;
    char *out, *p;

    for (i = 0; i < n; i++)
        len += strlen(parts[i]);
    out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    p = out;
    for (i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);

        memcpy(p, parts[i], l);
        p += l;
    }
    *p = '\0';
    *len_out = len;
    return out;
}

/* Check and pre-encode an event (on the caller's thread). */
static enum hsmca_err
item_new(const struct hsmca_audit_event *ev, struct item **out)
{
    static const char *const outcomes[] = {"ok", "refused", "failed", "intent"};
    char *action = NULL, *actor = NULL, *kid = NULL, *outcome = NULL, *role = NULL;
    char *target = NULL, *detail = NULL;
    json_t *d = NULL;
    struct item *it = NULL;
    enum hsmca_err rc = HSMCA_E_AUDIT_EVENT_INVALID;
    json_error_t jerr;
    size_t i;
    int outcome_ok = 0;

    if (ev == NULL || ev->action == NULL || ev->action[0] == '\0' || ev->outcome == NULL)
        return HSMCA_E_AUDIT_EVENT_INVALID;
    for (i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
        outcome_ok |= strcmp(ev->outcome, outcomes[i]) == 0;
    if (!outcome_ok)
        return HSMCA_E_AUDIT_EVENT_INVALID;
    if (ev->closes_intent != 0 && strcmp(ev->outcome, "intent") == 0)
        return HSMCA_E_AUDIT_EVENT_INVALID;
    if (ev->detail_json != NULL && strlen(ev->detail_json) > HSMCA_AUDIT_DETAIL_MAX)
        return HSMCA_E_TOO_LARGE;
    it = calloc(1, sizeof(*it));
    if (it == NULL)
        return HSMCA_E_NOMEM;
    action = json_str(ev->action, HSMCA_AUDIT_FIELD_MAX);
    actor = json_str(ev->actor, HSMCA_AUDIT_FIELD_MAX);
    kid = json_str(ev->kid, HSMCA_AUDIT_FIELD_MAX);
    outcome = json_str(ev->outcome, HSMCA_AUDIT_FIELD_MAX);
    role = json_str(ev->role, HSMCA_AUDIT_FIELD_MAX);
    target = json_str(ev->target, HSMCA_AUDIT_FIELD_MAX);
    if (action == NULL || actor == NULL || kid == NULL || outcome == NULL || role == NULL ||
        target == NULL)
        goto out;
    if (ev->detail_canonical && ev->detail_json != NULL && ev->closes_intent == 0) {
        size_t dl = strlen(ev->detail_json);

        if (dl < 2 || ev->detail_json[0] != '{' || ev->detail_json[dl - 1] != '}')
            goto out;
        detail = strdup(ev->detail_json);
        if (detail == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
    } else if (ev->detail_json != NULL) {
        d = json_loads(ev->detail_json, JSON_REJECT_DUPLICATES, &jerr);
        if (d == NULL || !json_is_object(d))
            goto out;
    } else {
        d = json_object();
        if (d == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
    }
    if (d != NULL && ev->closes_intent != 0 &&
        json_object_set_new(d, "intent", json_integer((json_int_t)ev->closes_intent)) != 0)
        goto out;
    if (detail == NULL)
        detail = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    if (detail == NULL || strlen(detail) > HSMCA_AUDIT_DETAIL_MAX) {
        rc = detail == NULL ? HSMCA_E_AUDIT_EVENT_INVALID : HSMCA_E_TOO_LARGE;
        goto out;
    }
    {
        const char *pre[] = {"{\"action\":",  action,  ",\"actor\":", actor,
                             ",\"detail\":",  detail,  ",\"kid\":",   kid,
                             ",\"outcome\":", outcome, ",\"prev\":\""};
        const char *mid[] = {"\",\"role\":", role, ",\"seq\":"};
        const char *post[] = {",\"target\":", target, ",\"time\":\""};

        it->pre = concat(pre, sizeof(pre) / sizeof(pre[0]), &it->pre_len);
        it->mid = concat(mid, sizeof(mid) / sizeof(mid[0]), &it->mid_len);
        it->post = concat(post, sizeof(post) / sizeof(post[0]), &it->post_len);
    }
    if (it->pre == NULL || it->mid == NULL || it->post == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    /* 64 prev + 20 seq + 24 time + 2 closing */
    if (it->pre_len + it->mid_len + it->post_len + 64 + 20 + HSMCA_AUDIT_TIME_LEN + 2 >
        HSMCA_AUDIT_LINE_MAX) {
        rc = HSMCA_E_TOO_LARGE;
        goto out;
    }
    snprintf(it->action, sizeof(it->action), "%s", ev->action);
    it->is_intent = strcmp(ev->outcome, "intent") == 0;
    it->closes_intent = ev->closes_intent;
    it->kind = ITEM_ENTRY;
    *out = it;
    it = NULL;
    rc = HSMCA_OK;
out:
    item_free(it);
    free(action);
    free(actor);
    free(kid);
    free(outcome);
    free(role);
    free(target);
    free(detail);
    json_decref(d);
    return rc;
}

/* ---- the writer: one batch in one transaction ---- */

/* Build, hash and insert the line of it at seq a->size+1 with time ms (inside the txn). */
static enum hsmca_err
write_line(struct hsmca_audit *a, const struct item *it, int64_t ms, unsigned char hash_out[32])
{
    char prev[65], seq[24], tbuf[HSMCA_AUDIT_TIME_LEN + 1];
    char *line;
    size_t len, sl, off = 0;
    enum hsmca_err rc;
    uint64_t s = a->size + 1;

    hsmca_hex_encode(a->head, 32, prev, sizeof(prev));
    sl = (size_t)snprintf(seq, sizeof(seq), "%llu", (unsigned long long)s);
    hsmca_audit_time_format(ms, tbuf);
    len = it->pre_len + 64 + it->mid_len + sl + it->post_len + HSMCA_AUDIT_TIME_LEN + 2;
    line = malloc(len + 1);
    if (line == NULL)
        return HSMCA_E_NOMEM;
#define PUT(p, n)                                                                                  \
    do {                                                                                           \
        memcpy(line + off, (p), (n));                                                              \
        off += (n);                                                                                \
    } while (0)
    PUT(it->pre, it->pre_len);
    PUT(prev, 64);
    PUT(it->mid, it->mid_len);
    PUT(seq, sl);
    PUT(it->post, it->post_len);
    PUT(tbuf, HSMCA_AUDIT_TIME_LEN);
    PUT("\"}", 2);
#undef PUT
    rc = sha256(a, line, len, hash_out);
    if (rc == HSMCA_OK)
        rc = hsmca_store_audit_put(a->st, s, line, len, hash_out);
    if (rc == HSMCA_OK && it->is_intent)
        rc = hsmca_store_audit_intent_open(a->st, s, it->action);
    if (rc == HSMCA_OK && it->closes_intent != 0)
        rc = hsmca_store_audit_intent_close(a->st, it->closes_intent);
    free(line);
    if (rc == HSMCA_OK) {
        a->size = s;
        memcpy(a->head, hash_out, 32);
    }
    return rc;
}

static struct item *
system_item(const char *action, const char *detail)
{
    struct hsmca_audit_event ev = {"system", "system", action, "audit", "ok", detail, "", 0, 0};
    struct item *it = NULL;

    if (item_new(&ev, &it) != HSMCA_OK)
        return NULL;
    return it;
}

/* One item inside the open transaction, in its own savepoint. */
static void
run_item(struct hsmca_audit *a, struct item *it)
{
    uint64_t size0 = a->size;
    unsigned char head0[32];
    int64_t ms0 = a->last_ms, ms;
    int behind0 = a->clock_behind;
    unsigned char hash[32];
    enum hsmca_err rc;

    memcpy(head0, a->head, 32);
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
    ms = wall_ms(a);
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
        step = system_item("clock.step_back", det);
        if (step == NULL) {
            it->rc = HSMCA_E_NOMEM;
            goto undo;
        }
        hsmca_log(HSMCA_LOG_WARN, "audit", "clock-step-back", "clock_ms=%lld last_ms=%lld",
                  (long long)ms, (long long)a->last_ms);
        rc = write_line(a, step, a->last_ms, hash);
        item_free(step);
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
    memcpy(it->receipt.entry_hash, hash, 32);
    return;
undo:
    if (hsmca_store_savepoint_rollback(a->st) != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "rollback-failed", "seq=%llu",
                  (unsigned long long)size0 + 1);
        a->batch_broken = 1;
    }
    a->size = size0;
    memcpy(a->head, head0, 32);
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

/* Run items[0..n) in one transaction; sets each item's rc and receipt. */
static void
run_batch(struct hsmca_audit *a, struct item **items, size_t n)
{
    uint64_t size0 = a->size, t0, commit_us = 0;
    unsigned char head0[32];
    int64_t ms0 = a->last_ms;
    size_t i, ok = 0;
    enum hsmca_err rc;

    memcpy(head0, a->head, 32);
    rc = hsmca_store_begin(a->st);
    if (rc != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "audit", "write-failed", "stage=begin code=%s",
                  hsmca_err_code(rc));
        for (i = 0; i < n; i++)
            items[i]->rc = HSMCA_E_AUDIT_WRITE;
        return;
    }
    a->batch_broken = 0;
    for (i = 0; i < n; i++) {
        run_item(a, items[i]);
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
        memcpy(a->head, head0, 32);
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

/* ---- checkpoints and the anchor ---- */

static enum hsmca_err
write_anchor(struct hsmca_audit *a, const struct hsmca_audit_checkpoint *cp)
{
    char buf[200], head[65], h[65];
    enum hsmca_err rc;
    int n;

    hsmca_hex_encode(cp->head, 32, head, sizeof(head));
    hsmca_hex_encode(cp->hash, 32, h, sizeof(h));
    n = snprintf(buf, sizeof(buf), "%llu %s %s", (unsigned long long)cp->size, head, h);
    rc =
        hsmca_token_data_write(a->token, AUDIT_ANCHOR_LABEL, (const unsigned char *)buf, (size_t)n);
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "audit", "anchor-write-failed", "size=%llu code=%s",
                  (unsigned long long)cp->size, hsmca_err_code(rc));
    return rc;
}

static void *
anchor_mover(void *arg)
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
        rc = write_anchor(a, &cp);
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
        return write_anchor(a, cp);
    pthread_mutex_lock(&a->anchor_lock);
    memset(&a->anchor_cp, 0, sizeof(a->anchor_cp));
    a->anchor_cp.size = cp->size;
    memcpy(a->anchor_cp.head, cp->head, 32);
    memcpy(a->anchor_cp.hash, cp->hash, 32);
    a->anchor_pending = 1;
    pthread_cond_signal(&a->anchor_cv);
    pthread_mutex_unlock(&a->anchor_lock);
    return HSMCA_OK;
}

/* Wait until every anchor handed over is written; the last write's result. */
static enum hsmca_err
anchor_settle(struct hsmca_audit *a)
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
static void
anchor_mover_stop(struct hsmca_audit *a)
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
static enum hsmca_err
make_checkpoint(struct hsmca_audit *a)
{
    struct hsmca_audit_checkpoint cp;
    char head[65], prev[65], tbuf[HSMCA_AUDIT_TIME_LEN + 1], text[1024];
    unsigned char sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t sig_len = 0;
    enum hsmca_err rc;
    int n;

    memset(&cp, 0, sizeof(cp));
    hsmca_hex_encode(a->head, 32, head, sizeof(head));
    hsmca_hex_encode(a->last_cp.hash, 32, prev, sizeof(prev));
    if (a->last_cp.size == 0)
        memset(prev, '0', 64);
    hsmca_audit_time_format(a->last_ms > wall_ms(a) ? a->last_ms : wall_ms(a), tbuf);
    n = snprintf(text, sizeof(text),
                 "hsmca-checkpoint/v1\norigin %s\nsize %llu\nhead %s\ntime %s\nprev %s\nkey %s\n",
                 a->origin, (unsigned long long)a->size, head, tbuf, prev, a->kid_hex);
    if (n < 0 || (size_t)n >= sizeof(text))
        return HSMCA_E_INTERNAL;
    cp.size = a->size;
    memcpy(cp.head, a->head, 32);
    cp.text = text;
    cp.text_len = (size_t)n;
    rc = sha256(a, text, (size_t)n, cp.hash);
    if (rc != HSMCA_OK)
        return rc;
    rc = a->key != NULL ? hsmca_key_sign_digest(a->key, cp.hash, 32, sig, sizeof(sig), &sig_len)
                        : HSMCA_E_TOKEN_REMOVED;
    if (rc != HSMCA_OK && a->heal != NULL && rc != HSMCA_E_INVALID_ARG) {
        /* the token went away or lost its login: re-probe it, log in again, retry once */
        enum hsmca_err hrc = a->heal(a->heal_arg, &a->key);

        if (hrc == HSMCA_OK && a->key != NULL) {
            pthread_mutex_lock(&a->lock);
            a->stats.heals++;
            pthread_mutex_unlock(&a->lock);
            rc = hsmca_key_sign_digest(a->key, cp.hash, 32, sig, sizeof(sig), &sig_len);
        }
    }
    if (rc != HSMCA_OK) {
        if (!a->cp_failing)
            hsmca_log(HSMCA_LOG_ERROR, "audit", "checkpoint-sign-failed",
                      "size=%llu code=%s action=\"checkpoints are retried every %llu ms; DACs "
                      "stop once audit.max_unsigned_entries lie beyond the last one\"",
                      (unsigned long long)a->size, hsmca_err_code(rc),
                      (unsigned long long)(a->retry_us / 1000));
        cp_failed(a);
        return rc;
    }
    cp.sig = sig;
    cp.sig_len = sig_len;
    rc = hsmca_store_begin(a->st);
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
    if (cp_copy(&a->last_cp, &cp) != HSMCA_OK) {
        memset(&a->last_cp, 0, sizeof(a->last_cp));
        a->last_cp.size = cp.size;
        memcpy(a->last_cp.hash, cp.hash, 32);
        memcpy(a->last_cp.head, cp.head, 32);
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
        (void)make_checkpoint(a);
        return;
    }
    if (hsmca_mono_us() < cp_due_us(a))
        return;
    if (since == 0) {
        struct item *hb = system_item("audit.heartbeat", NULL);

        if (hb == NULL)
            return;
        run_batch(a, &hb, 1);
        item_free(hb);
    }
    if (a->size > a->last_cp.size)
        (void)make_checkpoint(a);
}

static void
finish(struct hsmca_audit *a, struct item *it)
{
    if (it->kind == ITEM_CHECKPOINT) {
        enum hsmca_err rc = HSMCA_OK;

        if (a->size > a->last_cp.size)
            rc = make_checkpoint(a);
        if (rc == HSMCA_OK)
            rc = anchor_settle(a);
        if (rc == HSMCA_OK && it->cp_out != NULL)
            rc = cp_copy(it->cp_out, &a->last_cp);
        it->rc = rc;
    }
    it->done(it->done_arg, it->rc, it->rc == HSMCA_OK ? &it->receipt : NULL);
    item_free(it);
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

static void *
writer(void *arg)
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
            run_batch(a, batch, n);
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

/* ---- the queue ---- */

/*
 * Lock-free on the signing path: the count is an atomic, and the lock is taken only to wake a
 * lingering writer when the count reaches zero (it waits under the lock, so no wake-up is lost).
 */
void
hsmca_audit_expect(struct hsmca_audit *a, int delta)
{
    long old, now;

    if (a == NULL || delta == 0)
        return;
    old = __atomic_load_n(&a->expected, __ATOMIC_RELAXED);
    do {
        now = old + delta < 0 ? 0 : old + delta;
    } while (!__atomic_compare_exchange_n(&a->expected, &old, now, 1, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    if (now == 0 && delta < 0) {
        pthread_mutex_lock(&a->lock);
        pthread_cond_signal(&a->work_cv); /* a lingering writer need wait no more */
        pthread_mutex_unlock(&a->lock);
    }
}

static enum hsmca_err
enqueue(struct hsmca_audit *a, struct item *it)
{
    pthread_mutex_lock(&a->lock);
    if (a->stopping) {
        pthread_mutex_unlock(&a->lock);
        return HSMCA_E_AUDIT_CLOSED;
    }
    if (a->q_len >= QUEUE_MAX) {
        pthread_mutex_unlock(&a->lock);
        return HSMCA_E_BUSY;
    }
    if (a->q_tail != NULL)
        a->q_tail->next = it;
    else
        a->q_head = it;
    a->q_tail = it;
    a->q_len++;
    pthread_cond_signal(&a->work_cv);
    pthread_mutex_unlock(&a->lock);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_audit_submit(struct hsmca_audit *a, const struct hsmca_audit_event *ev,
                   hsmca_audit_apply_fn apply, void *apply_arg, hsmca_audit_done_fn done,
                   void *done_arg)
{
    struct item *it = NULL;
    enum hsmca_err rc;

    if (a == NULL || done == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = item_new(ev, &it);
    if (rc != HSMCA_OK)
        return rc;
    it->apply = apply;
    it->apply_arg = apply_arg;
    it->done = done;
    it->done_arg = done_arg;
    rc = enqueue(a, it);
    if (rc != HSMCA_OK)
        item_free(it);
    return rc;
}

struct waiter {
    struct hsmca_audit *a;
    int finished;
    enum hsmca_err rc;
    struct hsmca_audit_receipt receipt;
};

static void
wake(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *r)
{
    struct waiter *w = arg;

    pthread_mutex_lock(&w->a->lock);
    w->rc = rc;
    if (r != NULL)
        w->receipt = *r;
    w->finished = 1;
    pthread_cond_broadcast(&w->a->sync_cv);
    pthread_mutex_unlock(&w->a->lock);
}

static enum hsmca_err
wait_for(struct hsmca_audit *a, struct item *it, struct waiter *w)
{
    enum hsmca_err rc;

    w->a = a;
    w->finished = 0;
    it->done = wake;
    it->done_arg = w;
    rc = enqueue(a, it);
    if (rc != HSMCA_OK) {
        item_free(it);
        return rc;
    }
    pthread_mutex_lock(&a->lock);
    while (!w->finished)
        pthread_cond_wait(&a->sync_cv, &a->lock);
    pthread_mutex_unlock(&a->lock);
    return w->rc;
}

enum hsmca_err
hsmca_audit_append(struct hsmca_audit *a, const struct hsmca_audit_event *ev,
                   hsmca_audit_apply_fn apply, void *apply_arg, struct hsmca_audit_receipt *out)
{
    struct item *it = NULL;
    struct waiter w;
    enum hsmca_err rc;

    if (a == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = item_new(ev, &it);
    if (rc != HSMCA_OK)
        return rc;
    it->apply = apply;
    it->apply_arg = apply_arg;
    memset(&w, 0, sizeof(w));
    rc = wait_for(a, it, &w);
    if (rc == HSMCA_OK && out != NULL)
        *out = w.receipt;
    return rc;
}

enum hsmca_err
hsmca_audit_checkpoint(struct hsmca_audit *a, struct hsmca_audit_checkpoint *out)
{
    struct hsmca_audit_checkpoint cp;
    struct item *it;
    struct waiter w;
    enum hsmca_err rc;

    if (a == NULL)
        return HSMCA_E_INVALID_ARG;
    it = calloc(1, sizeof(*it));
    if (it == NULL)
        return HSMCA_E_NOMEM;
    memset(&cp, 0, sizeof(cp));
    it->kind = ITEM_CHECKPOINT;
    it->cp_out = &cp;
    memset(&w, 0, sizeof(w));
    rc = wait_for(a, it, &w);
    if (rc == HSMCA_OK && out != NULL)
        *out = cp;
    else
        hsmca_audit_checkpoint_clear(&cp);
    return rc;
}

enum hsmca_err
hsmca_audit_latest_checkpoint(struct hsmca_audit *a, struct hsmca_audit_checkpoint *out)
{
    if (a == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return hsmca_store_audit_cp_at_most(a->st, UINT64_MAX, out);
}

uint64_t
hsmca_audit_unsigned(struct hsmca_audit *a, int *failing)
{
    uint64_t size, cp;

    if (failing != NULL)
        *failing = 0;
    if (a == NULL)
        return 0;
    size = __atomic_load_n(&a->pub_size, __ATOMIC_ACQUIRE);
    cp = __atomic_load_n(&a->pub_cp_size, __ATOMIC_ACQUIRE);
    if (failing != NULL)
        *failing = __atomic_load_n(&a->pub_cp_failing, __ATOMIC_ACQUIRE);
    return size > cp ? size - cp : 0;
}

uint64_t
hsmca_audit_size(struct hsmca_audit *a)
{
    uint64_t n;

    if (a == NULL)
        return 0;
    pthread_mutex_lock(&a->lock);
    n = a->pub_size;
    pthread_mutex_unlock(&a->lock);
    return n;
}

void
hsmca_audit_stats(struct hsmca_audit *a, struct hsmca_audit_stats *out)
{
    if (a == NULL || out == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    *out = a->stats;
    pthread_mutex_unlock(&a->lock);
}

/* ---- open: self-check, anchor, genesis ---- */

struct chain_ck {
    struct hsmca_audit *a;
    uint64_t expect;
    unsigned char prev[32];
    char *why;
    size_t why_len;
    int64_t last_ms;
};

static enum hsmca_err
chain_step(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    struct chain_ck *c = arg;
    struct hsmca_audit_line l;
    unsigned char h[32];
    const char *why = NULL;

    if (seq != c->expect) {
        snprintf(c->why, c->why_len, "seq %llu: missing from the store (next stored is %llu)",
                 (unsigned long long)c->expect, (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (sha256(c->a, line, len, h) != HSMCA_OK)
        return HSMCA_E_INTERNAL;
    if (hsmca_audit_line_parse(line, len, &l, &why) != HSMCA_OK) {
        snprintf(c->why, c->why_len, "seq %llu: malformed entry (%s)", (unsigned long long)seq,
                 why);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (l.seq != seq) {
        snprintf(c->why, c->why_len, "seq %llu: the entry says seq %llu", (unsigned long long)seq,
                 (unsigned long long)l.seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (CRYPTO_memcmp(h, hash, 32) != 0) {
        snprintf(c->why, c->why_len, "seq %llu: line bytes do not match their stored hash",
                 (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (c->expect > 0 && c->expect != c->a->last_cp.size &&
        CRYPTO_memcmp(l.prev, c->prev, 32) != 0) {
        snprintf(c->why, c->why_len,
                 "seq %llu: changed or replaced: its hash is not the prev of seq %llu",
                 (unsigned long long)seq - 1, (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (seq == c->a->last_cp.size && CRYPTO_memcmp(h, c->a->last_cp.head, 32) != 0) {
        snprintf(c->why, c->why_len, "seq %llu: not the head of the last checkpoint",
                 (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    memcpy(c->prev, h, 32);
    c->last_ms = hsmca_audit_time_parse(l.time);
    c->expect++;
    return HSMCA_OK;
}

static enum hsmca_err
check_cp(struct hsmca_audit *a, const struct hsmca_audit_checkpoint *cp, char *why, size_t why_len)
{
    struct hsmca_audit_cp_fields f;
    unsigned char h[32];

    if (sha256(a, cp->text, cp->text_len, h) != HSMCA_OK)
        return HSMCA_E_INTERNAL;
    if (CRYPTO_memcmp(h, cp->hash, 32) != 0 ||
        hsmca_audit_checkpoint_parse(cp->text, cp->text_len, &f) != HSMCA_OK ||
        f.size != cp->size || CRYPTO_memcmp(f.head, cp->head, 32) != 0) {
        snprintf(why, why_len, "checkpoint %llu: malformed or altered in the store",
                 (unsigned long long)cp->size);
        return HSMCA_E_AUDIT_CHECKPOINT;
    }
    if (memcmp(f.key, a->kid, 32) != 0) {
        snprintf(why, why_len, "checkpoint %llu: signed by another audit key",
                 (unsigned long long)cp->size);
        return HSMCA_E_AUDIT_CHECKPOINT;
    }
    if (hsmca_audit_sig_verify(a->pub, cp->text, cp->text_len, cp->sig, cp->sig_len) != HSMCA_OK) {
        snprintf(why, why_len, "checkpoint %llu: signature does not verify with the audit key",
                 (unsigned long long)cp->size);
        return HSMCA_E_AUDIT_CHECKPOINT_SIG;
    }
    return HSMCA_OK;
}

/* The anchor: "<size> <head hex> <cp hash hex>". */
static enum hsmca_err
check_anchor(struct hsmca_audit *a, uint64_t store_size, char *why, size_t why_len)
{
    unsigned char buf[HSMCA_DATA_OBJECT_MAX + 1], head[32], cph[32];
    struct hsmca_audit_checkpoint cp;
    size_t len = 0, n = 0;
    uint64_t size = 0;
    const char *sp1, *sp2;
    enum hsmca_err rc;

    rc = hsmca_token_data_read(a->token, AUDIT_ANCHOR_LABEL, buf, sizeof(buf) - 1, &len);
    if (rc == HSMCA_E_NOT_FOUND) {
        if (store_size == 0)
            return HSMCA_E_NOT_FOUND; /* a new log */
        snprintf(why, why_len,
                 "the audit token holds no anchor object (%s) but the store has %llu entries",
                 AUDIT_ANCHOR_LABEL, (unsigned long long)store_size);
        return HSMCA_E_AUDIT_ANCHOR;
    }
    if (rc != HSMCA_OK) {
        snprintf(why, why_len, "cannot read the anchor from the audit token: %s",
                 hsmca_err_code(rc));
        return rc;
    }
    buf[len] = '\0';
    sp1 = strchr((char *)buf, ' ');
    sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL ||
        hsmca_parse_u64((char *)buf, (size_t)(sp1 - (char *)buf), INT64_MAX, &size) != HSMCA_OK ||
        hsmca_hex_decode(sp1 + 1, (size_t)(sp2 - sp1 - 1), head, 32, &n) != HSMCA_OK || n != 32 ||
        hsmca_hex_decode(sp2 + 1, strlen(sp2 + 1), cph, 32, &n) != HSMCA_OK || n != 32) {
        snprintf(why, why_len, "the anchor object in the audit token is malformed");
        return HSMCA_E_AUDIT_ANCHOR;
    }
    if (store_size < size) {
        snprintf(why, why_len,
                 "anchor checkpoint %llu missing: the store ends at seq %llu (restored older "
                 "database or truncated log)",
                 (unsigned long long)size, (unsigned long long)store_size);
        return HSMCA_E_AUDIT_ANCHOR;
    }
    memset(&cp, 0, sizeof(cp));
    rc = hsmca_store_audit_cp_at_most(a->st, size, &cp);
    if (rc != HSMCA_OK || cp.size != size || CRYPTO_memcmp(cp.hash, cph, 32) != 0 ||
        CRYPTO_memcmp(cp.head, head, 32) != 0) {
        snprintf(why, why_len,
                 "anchor checkpoint %llu missing from the store or different (restored or "
                 "rewritten database)",
                 (unsigned long long)size);
        hsmca_audit_checkpoint_clear(&cp);
        return HSMCA_E_AUDIT_ANCHOR;
    }
    rc = check_cp(a, &cp, why, why_len);
    hsmca_audit_checkpoint_clear(&cp);
    return rc;
}

static enum hsmca_err
genesis(struct hsmca_audit *a, const char *detail_json, char *why, size_t why_len)
{
    unsigned char id[16];
    char idhex[33], *det = NULL, *pem = NULL;
    json_t *d = NULL;
    json_error_t jerr;
    struct item *it = NULL;
    BIO *bio = NULL;
    BUF_MEM *bm = NULL;
    enum hsmca_err rc = HSMCA_E_AUDIT_EVENT_INVALID;

    if (RAND_bytes(id, sizeof(id)) != 1)
        return HSMCA_E_RANDOM;
    hsmca_hex_encode(id, sizeof(id), idhex, sizeof(idhex));
    d = detail_json != NULL ? json_loads(detail_json, JSON_REJECT_DUPLICATES, &jerr)
                            : json_object();
    if (d == NULL || !json_is_object(d))
        goto out;
    if (json_object_set_new(d, "log_id", json_string(idhex)) != 0 ||
        json_object_set_new(d, "audit_key", json_string(a->kid_hex)) != 0)
        goto out;
    det = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    if (det == NULL)
        goto out;
    if (a->origin[0] == '\0')
        snprintf(a->origin, sizeof(a->origin), "hsmca/%s", idhex);
    {
        struct hsmca_audit_event ev = {"ceremony", "system", "log.genesis", "audit", "ok", det, "",
                                       0,          0};

        rc = item_new(&ev, &it);
        if (rc != HSMCA_OK)
            goto out;
    }
    /* the public key goes into meta in the same transaction, so archives can verify */
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_PUBKEY(bio, a->pub) != 1) {
        rc = HSMCA_E_INTERNAL;
        goto out;
    }
    BIO_get_mem_ptr(bio, &bm);
    pem = strndup(bm->data, bm->length);
    if (pem == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    a->last_ms = wall_ms(a);
    rc = hsmca_store_begin(a->st);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_store_meta_set(a->st, AUDIT_META_PUBKEY, pem);
    if (rc == HSMCA_OK)
        rc = hsmca_store_meta_set(a->st, "audit.origin", a->origin);
    if (rc != HSMCA_OK) {
        hsmca_store_rollback(a->st);
        goto out;
    }
    run_item(a, it);
    rc = it->rc;
    if (rc != HSMCA_OK) {
        hsmca_store_rollback(a->st);
        goto out;
    }
    rc = hsmca_store_commit(a->st);
    if (rc != HSMCA_OK) {
        a->size = 0;
        memset(a->head, 0, 32);
        goto out;
    }
    a->stats.commits++;
    a->stats.entries++;
    rc = make_checkpoint(a);
    if (rc != HSMCA_OK)
        snprintf(why, why_len, "the first checkpoint could not be made: %s", hsmca_err_code(rc));
    else
        hsmca_log(HSMCA_LOG_INFO, "audit", "genesis", "log_id=%s key=%s", idhex, a->kid_hex);
out:
    if (rc != HSMCA_OK && why[0] == '\0')
        snprintf(why, why_len, "cannot write log.genesis: %s", hsmca_err_code(rc));
    item_free(it);
    free(det);
    free(pem);
    BIO_free(bio);
    json_decref(d);
    return rc;
}

static void
audit_free(struct hsmca_audit *a)
{
    struct item *it;

    if (a == NULL)
        return;
    anchor_mover_stop(a);
    while (a->q_head != NULL) {
        it = a->q_head;
        a->q_head = it->next;
        item_free(it);
    }
    hsmca_audit_checkpoint_clear(&a->last_cp);
    EVP_MD_CTX_free(a->mdctx);
    EVP_MD_free(a->sha256);
    free(a->cert_pem);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->work_cv);
    pthread_cond_destroy(&a->sync_cv);
    pthread_mutex_destroy(&a->anchor_lock);
    pthread_cond_destroy(&a->anchor_cv);
    free(a);
}

static enum hsmca_err
reconcile(struct hsmca_audit *a, const struct hsmca_audit_config *cfg)
{
    struct hsmca_store_audit_intent *v = NULL;
    size_t n = 0, i;
    enum hsmca_err rc;

    v = calloc(256, sizeof(*v));
    if (v == NULL)
        return HSMCA_E_NOMEM;
    rc = hsmca_store_audit_intents(a->st, v, 256, &n);
    for (i = 0; rc == HSMCA_OK && i < n; i++) {
        char action[HSMCA_AUDIT_FIELD_MAX + 16];
        struct hsmca_audit_event ev = {"system", "system", action,   "audit", "ok",
                                       NULL,     "",       v[i].seq, 0};
        int done;

        if (cfg->reconcile == NULL) {
            hsmca_log(HSMCA_LOG_WARN, "audit", "open-intent", "seq=%llu",
                      (unsigned long long)v[i].seq);
            continue;
        }
        done = cfg->reconcile(cfg->reconcile_arg, v[i].seq, v[i].action);
        snprintf(action, sizeof(action), "%.*s%s", HSMCA_AUDIT_FIELD_MAX - 10, v[i].action,
                 done ? ".recovered" : ".orphan");
        rc = hsmca_audit_append(a, &ev, NULL, NULL, NULL);
    }
    free(v);
    return rc;
}

enum hsmca_err
hsmca_audit_open(const struct hsmca_audit_config *cfg, struct hsmca_audit **out, char *why,
                 size_t why_len)
{
    struct hsmca_audit *a = NULL;
    struct chain_ck ck;
    char dummy[8], *origin = NULL;
    uint64_t store_size = 0;
    unsigned char store_head[32];
    enum hsmca_err rc;

    if (why == NULL || why_len == 0) {
        why = dummy;
        why_len = sizeof(dummy);
    }
    why[0] = '\0';
    if (cfg == NULL || out == NULL || cfg->store == NULL || cfg->token == NULL ||
        cfg->key == NULL || (cfg->origin != NULL && strlen(cfg->origin) > 200))
        return HSMCA_E_INVALID_ARG;
    if (cfg->origin != NULL && strpbrk(cfg->origin, "\n\r") != NULL)
        return HSMCA_E_INVALID_ARG;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work_cv, NULL);
    pthread_cond_init(&a->sync_cv, NULL);
    pthread_mutex_init(&a->anchor_lock, NULL);
    pthread_cond_init(&a->anchor_cv, NULL);
    a->st = cfg->store;
    a->token = cfg->token;
    a->key = cfg->key;
    a->pub = hsmca_key_public(cfg->key);
    a->cp_entries = cfg->checkpoint_entries != 0 ? cfg->checkpoint_entries : 10000;
    a->cp_ms = cfg->checkpoint_ms != 0 ? cfg->checkpoint_ms : 60000;
    a->heal = cfg->heal;
    a->heal_arg = cfg->heal_arg;
    a->retry_us = (cfg->retry_ms != 0 ? cfg->retry_ms : 1000) * 1000u;
    a->batch_max = cfg->batch_max != 0 ? cfg->batch_max : 1024;
    a->linger_us = cfg->linger_us != 0 ? cfg->linger_us : 1000;
    a->clock_ms = cfg->clock_ms;
    a->clock_arg = cfg->clock_arg;
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    a->mdctx = EVP_MD_CTX_new();
    if (cfg->audit_cert_pem != NULL)
        a->cert_pem = strdup(cfg->audit_cert_pem);
    if (a->sha256 == NULL || a->mdctx == NULL || a->pub == NULL ||
        (cfg->audit_cert_pem != NULL && a->cert_pem == NULL)) {
        rc = HSMCA_E_NOMEM;
        goto fail;
    }
    rc = hsmca_audit_key_id(a->pub, a->kid);
    if (rc != HSMCA_OK)
        goto fail;
    hsmca_hex_encode(a->kid, 32, a->kid_hex, sizeof(a->kid_hex));
    if (cfg->origin != NULL)
        snprintf(a->origin, sizeof(a->origin), "%s", cfg->origin);
    a->last_cp_us = hsmca_mono_us();

    rc = hsmca_store_audit_head(a->st, &store_size, store_head);
    if (rc != HSMCA_OK) {
        snprintf(why, why_len, "cannot read the audit log: %s", hsmca_err_code(rc));
        goto fail;
    }
    rc = check_anchor(a, store_size, why, why_len);
    if (rc == HSMCA_E_NOT_FOUND) {
        rc = genesis(a, cfg->genesis_detail_json, why, why_len);
        if (rc != HSMCA_OK)
            goto fail;
    } else if (rc != HSMCA_OK) {
        goto fail;
    } else {
        /* verify from the last checkpoint to the head */
        rc = hsmca_store_audit_cp_at_most(a->st, UINT64_MAX, &a->last_cp);
        if (rc != HSMCA_OK) {
            snprintf(why, why_len, "no checkpoint in a non-empty audit log");
            rc = HSMCA_E_AUDIT_CHECKPOINT;
            goto fail;
        }
        rc = check_cp(a, &a->last_cp, why, why_len);
        if (rc != HSMCA_OK)
            goto fail;
        if (hsmca_store_meta_get(a->st, "audit.origin", &origin) == HSMCA_OK) {
            snprintf(a->origin, sizeof(a->origin), "%s", origin);
            free(origin);
        }
        memset(&ck, 0, sizeof(ck));
        ck.a = a;
        ck.expect = a->last_cp.size;
        ck.why = why;
        ck.why_len = why_len;
        rc = hsmca_store_audit_scan(a->st, a->last_cp.size, store_size, chain_step, &ck);
        if (rc == HSMCA_OK && ck.expect != store_size + 1) {
            snprintf(why, why_len, "seq %llu: missing from the store",
                     (unsigned long long)ck.expect);
            rc = HSMCA_E_AUDIT_CHAIN;
        }
        if (rc != HSMCA_OK) {
            hsmca_log(HSMCA_LOG_ERROR, "audit", "self-check-failed", "code=%s", hsmca_err_code(rc));
            goto fail;
        }
        a->size = store_size;
        memcpy(a->head, ck.prev, 32);
        a->last_ms = ck.last_ms;
        /* the store may be ahead of the anchor (crash between the two): move the anchor up */
        rc = write_anchor(a, &a->last_cp);
        if (rc != HSMCA_OK) {
            snprintf(why, why_len, "cannot write the anchor: %s", hsmca_err_code(rc));
            goto fail;
        }
    }
    a->pub_size = a->size;
    __atomic_store_n(&a->pub_cp_size, a->last_cp.size, __ATOMIC_RELEASE);
    if (pthread_create(&a->anchor_thread, NULL, anchor_mover, a) != 0) {
        rc = HSMCA_E_INTERNAL;
        goto fail;
    }
    a->anchor_started = 1;
    if (pthread_create(&a->thread, NULL, writer, a) != 0) {
        rc = HSMCA_E_INTERNAL;
        goto fail;
    }
    a->thread_started = 1;
    rc = reconcile(a, cfg);
    if (rc != HSMCA_OK) {
        snprintf(why, why_len, "cannot reconcile open intents: %s", hsmca_err_code(rc));
        if (hsmca_audit_close(a) != HSMCA_OK)
            hsmca_log(HSMCA_LOG_WARN, "audit", "close-failed", "stage=open");
        return rc;
    }
    *out = a;
    return HSMCA_OK;
fail:
    audit_free(a);
    return rc;
}

enum hsmca_err
hsmca_audit_close(struct hsmca_audit *a)
{
    enum hsmca_err rc = HSMCA_OK;

    if (a == NULL)
        return HSMCA_OK;
    if (a->thread_started) {
        pthread_mutex_lock(&a->lock);
        a->stopping = 1;
        pthread_cond_signal(&a->work_cv);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->thread, NULL);
    }
    if (a->size > a->last_cp.size)
        rc = make_checkpoint(a);
    if (rc == HSMCA_OK)
        rc = anchor_settle(a);
    audit_free(a);
    return rc;
}

struct hsmca_store *
audit_store(struct hsmca_audit *a)
{
    return a->st;
}

const char *
audit_cert(struct hsmca_audit *a)
{
    return a->cert_pem;
}
