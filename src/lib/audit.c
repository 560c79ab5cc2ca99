/* SPDX-License-Identifier: Apache-2.0
 *
 * audit.c -- the hash-chained audit log: the single writer thread with group commit, entry lines
 * (compact JSON, sorted keys, written once), signed checkpoints, the token anchor, the start-up
 * self-check and intent reconciliation. Owns the store handle's writes while open.
 * Never releases a result before its entry is durable; never re-serialises a written line; never
 * logs a secret (details come from callers, who log hashes and serials only).
 *
 * This file holds the small helpers and the queue (submit, append, expect, stats);
 * audit_writer.c the writer's batches, audit_checkpoint.c checkpoints, the anchor and the writer
 * thread, audit_open.c start-up and shut-down; they share audit_core.h. The line and checkpoint
 * formats are audit_format.c's.
 */
#include "hsmca/sizes.h"

#include "audit_core.h"

/* ---- small helpers ---- */

int64_t
audit_wall_ms(struct hsmca_audit *a)
{
    struct timespec ts;

    if (a->clock_ms != NULL)
        return a->clock_ms(a->clock_arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum hsmca_err
audit_sha256(struct hsmca_audit *a, const void *data, size_t len,
             unsigned char out[HSMCA_SHA256_LEN])
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

enum hsmca_err
audit_cp_copy(struct hsmca_audit_checkpoint *dst, const struct hsmca_audit_checkpoint *src)
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

void
audit_item_free(struct item *it)
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
enum hsmca_err
audit_item_new(const struct hsmca_audit_event *ev, struct item **out)
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
    if (it->pre_len + it->mid_len + it->post_len + HSMCA_SHA256_HEX_LEN + 20 +
            HSMCA_AUDIT_TIME_LEN + 2 >
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
    audit_item_free(it);
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

void
hsmca_audit_event_set(struct hsmca_audit_event *ev, const char *actor, const char *role,
                      const char *action, const char *target, const char *outcome,
                      const char *detail_json)
{
    *ev = (struct hsmca_audit_event){.actor = actor,
                                     .role = role,
                                     .action = action,
                                     .target = target,
                                     .outcome = outcome,
                                     .detail_json = detail_json,
                                     .kid = ""};
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
    rc = audit_item_new(ev, &it);
    if (rc != HSMCA_OK)
        return rc;
    it->apply = apply;
    it->apply_arg = apply_arg;
    it->done = done;
    it->done_arg = done_arg;
    rc = enqueue(a, it);
    if (rc != HSMCA_OK)
        audit_item_free(it);
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
        audit_item_free(it);
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
    rc = audit_item_new(ev, &it);
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
