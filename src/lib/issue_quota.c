/* SPDX-License-Identifier: Apache-2.0
 *
 * issue_quota.c -- issuance quotas: the quota file (per CA, per minute and per day) and the
 * sliding counts that enforce them, kept in the store for every node (store_quota.h) and taken
 * by this node in blocks.
 */
#include "issue_internal.h"

/* ---------------------------------------------------------------- quotas */

struct quota_entry {
    char id[HSMCA_CA_ID_MAX + 1];
    uint64_t per_minute, per_day;
};

struct hsmca_issue_quotas {
    int has_default;
    uint64_t def_minute, def_day;
    size_t n;
    struct quota_entry *e;
};

static enum hsmca_err
quota_limits(json_t *v, const char *key, uint64_t *pm, uint64_t *pd)
{
    json_error_t e;
    json_int_t m = 0, d = 0;

    if (json_unpack_ex(v, &e, JSON_STRICT, "{s?I, s?I}", "per_minute", &m, "per_day", &d) != 0) {
        char k[300];

        hsmca_log(HSMCA_LOG_ERROR, "issue", "quotas-invalid", "key=%s why=\"%s\"",
                  hsmca_log_escape(key, strlen(key), k, sizeof(k)), "not {per_minute, per_day}");
        return HSMCA_E_ISSUE_QUOTAS_INVALID;
    }
    if (m < 0 || d < 0 || (uint64_t)m > QUOTA_MAX || (uint64_t)d > QUOTA_MAX) {
        hsmca_log(HSMCA_LOG_ERROR, "issue", "quotas-invalid", "why=\"limit out of 0..10^9\"");
        return HSMCA_E_ISSUE_QUOTAS_INVALID;
    }
    *pm = (uint64_t)m;
    *pd = (uint64_t)d;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_issue_quotas_parse(const char *json, size_t len, struct hsmca_issue_quotas **out)
{
    struct hsmca_issue_quotas *q = NULL;
    json_t *root = NULL, *v;
    json_error_t e;
    const char *key;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (json == NULL || out == NULL)
        goto out;
    rc = HSMCA_E_TOO_LARGE;
    if (len > HSMCA_ISSUE_QUOTAS_MAX)
        goto out;
    rc = HSMCA_E_ISSUE_QUOTAS_INVALID;
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    if (root == NULL || !json_is_object(root)) {
        hsmca_log(HSMCA_LOG_ERROR, "issue", "quotas-invalid", "line=%d why=\"not a JSON object\"",
                  e.line);
        goto out;
    }
    rc = HSMCA_E_NOMEM;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        goto out;
    if (json_object_size(root) > 0) {
        q->e = calloc(json_object_size(root), sizeof(*q->e));
        if (q->e == NULL)
            goto out;
    }
    json_object_foreach(root, key, v)
    {
        uint64_t pm = 0, pd = 0;

        rc = quota_limits(v, key, &pm, &pd);
        if (rc != HSMCA_OK)
            goto out;
        if (strcmp(key, "default") == 0) {
            q->has_default = 1;
            q->def_minute = pm;
            q->def_day = pd;
            continue;
        }
        rc = HSMCA_E_ISSUE_QUOTAS_INVALID;
        if (!hsmca_ca_id_valid(key)) {
            char k[300];

            hsmca_log(HSMCA_LOG_ERROR, "issue", "quotas-invalid", "key=%s why=\"not a CA id\"",
                      hsmca_log_escape(key, strlen(key), k, sizeof(k)));
            goto out;
        }
        snprintf(q->e[q->n].id, sizeof(q->e[q->n].id), "%s", key);
        q->e[q->n].per_minute = pm;
        q->e[q->n].per_day = pd;
        q->n++;
    }
    *out = q;
    q = NULL;
    rc = HSMCA_OK;
out:
    hsmca_issue_quotas_free(q);
    json_decref(root);
    return rc;
}

enum hsmca_err
hsmca_issue_quotas_load(const char *path, struct hsmca_issue_quotas **out)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    enum hsmca_err rc;

    if (path == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_read_file(path, HSMCA_ISSUE_QUOTAS_MAX, &buf, &len);
    if (rc == HSMCA_OK)
        rc = hsmca_issue_quotas_parse((const char *)buf, len, out);
    free(buf);
    return rc;
}

void
hsmca_issue_quotas_free(struct hsmca_issue_quotas *q)
{
    if (q == NULL)
        return;
    free(q->e);
    free(q);
}

void
hsmca_issue_quotas_get(const struct hsmca_issue_quotas *q, const char *ca_id, uint64_t *per_minute,
                       uint64_t *per_day)
{
    size_t i;

    *per_minute = 0;
    *per_day = 0;
    if (q == NULL)
        return;
    for (i = 0; ca_id != NULL && i < q->n; i++) {
        if (strcmp(q->e[i].id, ca_id) == 0) {
            *per_minute = q->e[i].per_minute;
            *per_day = q->e[i].per_day;
            return;
        }
    }
    if (q->has_default) {
        *per_minute = q->def_minute;
        *per_day = q->def_day;
    }
}

enum hsmca_err
issue_quotas_dup(const struct hsmca_issue_quotas *q, struct hsmca_issue_quotas **out)
{
    struct hsmca_issue_quotas *c;

    *out = NULL;
    if (q == NULL)
        return HSMCA_OK;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return HSMCA_E_NOMEM;
    *c = *q;
    c->e = NULL;
    if (q->n > 0) {
        c->e = calloc(q->n, sizeof(*c->e));
        if (c->e == NULL) {
            free(c);
            return HSMCA_E_NOMEM;
        }
        memcpy(c->e, q->e, q->n * sizeof(*c->e));
    }
    *out = c;
    return HSMCA_OK;
}

/* ---- new quotas while running (a reload, docs/reload.md) ---- */

void
hsmca_issuer_take_quotas(struct hsmca_issuer *iss, struct hsmca_issue_quotas *q)
{
    struct hsmca_issue_quotas *old;

    if (iss == NULL) {
        hsmca_issue_quotas_free(q);
        return;
    }
    old = iss->quotas;
    iss->quotas = q;
    hsmca_issue_quotas_free(old);
}

void
hsmca_issue_ca_profile_update(struct hsmca_issue_ca *ca, const struct hsmca_profile *p)
{
    if (ca == NULL || p == NULL || p->type != HSMCA_PROFILE_DAC)
        return;
    pthread_mutex_lock(&ca->mu);
    ca->profile = *p; /* read under mu only, by hsmca_issue_ca_activate */
    pthread_mutex_unlock(&ca->mu);
}

void
hsmca_issue_ca_quotas_update(struct hsmca_issue_ca *ca)
{
    uint64_t pm = 0, pd = 0;
    int changed, on_m, on_d;
    enum hsmca_err rc;

    if (ca == NULL)
        return;
    hsmca_issue_quotas_get(ca->iss->quotas, ca->rec.id, &pm, &pd);
    pthread_mutex_lock(&ca->mu);
    changed = ca->per_minute != pm || ca->per_day != pd;
    on_m = ca->per_minute == 0 && pm > 0;
    on_d = ca->per_day == 0 && pd > 0;
    pthread_mutex_unlock(&ca->mu);
    /* a quota turned on counts what the store holds first (nobody counted while it was off) */
    rc = issue_quota_seed(ca, on_m, on_d, 0);
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "issue", "quota-seed-failed", "ca=%s code=%s", ca->rec.id,
                  hsmca_err_code(rc));
    pthread_mutex_lock(&ca->mu);
    ca->per_minute = pm;
    ca->per_day = pd;
    pthread_mutex_unlock(&ca->mu);
    if (changed) /* blocks reserved under the old limits go back: the new ones hold at once */
        issue_quota_return(ca);
}

/* ---------------------------------------------------------------- counts in the store */

/* The issuer's handle for quota reservations, opened at the first one. */
static struct hsmca_store *
quota_store(struct hsmca_issuer *iss, enum hsmca_err *rc)
{
    struct hsmca_store *st;

    pthread_mutex_lock(&iss->win_mu);
    *rc = HSMCA_OK;
    if (iss->qst == NULL)
        *rc = hsmca_store_open(iss->store_path, &iss->qst);
    st = iss->qst;
    pthread_mutex_unlock(&iss->win_mu);
    return st;
}

enum hsmca_err
issue_quota_seed(struct hsmca_issue_ca *ca, int minute, int day, int recount)
{
    int64_t t = issue_now_ms();
    struct hsmca_store *st;
    enum hsmca_err rc;

    /* the recount is SQLite's alone: without quotas, a PostgreSQL node opens no handle for it */
    if (!minute && !day && (!recount || hsmca_store_spec_is_pg(ca->iss->store_path)))
        return HSMCA_OK;
    st = quota_store(ca->iss, &rc);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&ca->iss->qst_mu);
    if (minute)
        rc = hsmca_store_quota_seed(st, ca->rec.id, HSMCA_QUOTA_MINUTE, t);
    if (rc == HSMCA_OK && day)
        rc = hsmca_store_quota_seed(st, ca->rec.id, HSMCA_QUOTA_DAY, t);
    if (rc == HSMCA_OK && recount && !hsmca_store_is_pg(st))
        rc = hsmca_store_quota_recount(st, ca->rec.id, t);
    pthread_mutex_unlock(&ca->iss->qst_mu);
    return rc;
}

static enum hsmca_err
quota_slot(struct hsmca_issue_ca *ca, struct hsmca_quota_blk *b, char period, uint64_t limit,
           int64_t t, int64_t *bucket)
{
    struct hsmca_store *st;
    enum hsmca_err rc;

    /* the block in memory first: no store on the fast path */
    if (!b->busy && b->n > 0 && b->start == hsmca_quota_bucket(period, t)) {
        b->n--;
        *bucket = b->start;
        return HSMCA_OK;
    }
    st = quota_store(ca->iss, &rc);
    if (rc != HSMCA_OK)
        return rc;
    return hsmca_quota_take(b, &ca->mu, &ca->cv, st, &ca->iss->qst_mu, ca->rec.id, period, limit,
                            hsmca_store_is_pg(st) ? ISSUE_QUOTA_BLOCK : ISSUE_QUOTA_BLOCK_ONE, t,
                            bucket);
}

enum hsmca_err
issue_quota_slots(struct hsmca_issue_ca *ca, struct job *j, int64_t t)
{
    enum hsmca_err rc = HSMCA_OK;

    j->q_min_bucket = -1;
    j->q_day_bucket = -1;
    if (ca->per_minute > 0)
        rc = quota_slot(ca, &ca->qmin, HSMCA_QUOTA_MINUTE, ca->per_minute, t, &j->q_min_bucket);
    if (rc == HSMCA_OK && ca->per_day > 0)
        rc = quota_slot(ca, &ca->qday, HSMCA_QUOTA_DAY, ca->per_day, t, &j->q_day_bucket);
    if (rc != HSMCA_OK)
        issue_quota_give(ca, j);
    return rc;
}

void
issue_quota_give(struct hsmca_issue_ca *ca, struct job *j)
{
    hsmca_quota_blk_give(&ca->qmin, j->q_min_bucket);
    hsmca_quota_blk_give(&ca->qday, j->q_day_bucket);
    j->q_min_bucket = -1;
    j->q_day_bucket = -1;
}

void
issue_quota_return(struct hsmca_issue_ca *ca)
{
    struct hsmca_quota_blk *bs[2] = {&ca->qmin, &ca->qday};
    const char periods[2] = {HSMCA_QUOTA_MINUTE, HSMCA_QUOTA_DAY};
    int64_t start[2];
    uint64_t n[2];
    unsigned i;

    pthread_mutex_lock(&ca->mu);
    for (i = 0; i < 2; i++) {
        while (bs[i]->busy)
            pthread_cond_wait(&ca->cv, &ca->mu);
        start[i] = bs[i]->start;
        n[i] = bs[i]->n;
        bs[i]->n = 0;
        bs[i]->refused = -1;
    }
    pthread_mutex_unlock(&ca->mu);
    for (i = 0; i < 2; i++) {
        enum hsmca_err rc = HSMCA_OK;
        struct hsmca_store *st;

        if (n[i] == 0)
            continue;
        st = quota_store(ca->iss, &rc);
        if (rc == HSMCA_OK) {
            pthread_mutex_lock(&ca->iss->qst_mu);
            rc = hsmca_store_quota_release(st, ca->rec.id, periods[i], start[i], n[i]);
            pthread_mutex_unlock(&ca->iss->qst_mu);
        }
        if (rc != HSMCA_OK)
            hsmca_log(HSMCA_LOG_WARN, "issue", "quota-rest-kept", "ca=%s period=%c n=%llu code=%s",
                      ca->rec.id, periods[i], (unsigned long long)n[i], hsmca_err_code(rc));
    }
}

void
issue_quota_counts(struct hsmca_issue_ca *ca, int64_t t, uint64_t *minute, uint64_t *day)
{
    struct reader *r = &ca->iss->rd[0];
    uint64_t pm, pd, unused_m = 0, unused_d = 0;

    *minute = 0;
    *day = 0;
    pthread_mutex_lock(&ca->mu);
    pm = ca->per_minute;
    pd = ca->per_day;
    if (ca->qmin.start > hsmca_quota_bucket(HSMCA_QUOTA_MINUTE, t) - 60000)
        unused_m = ca->qmin.n;
    if (ca->qday.start > hsmca_quota_bucket(HSMCA_QUOTA_DAY, t) - 86400000)
        unused_d = ca->qday.n;
    pthread_mutex_unlock(&ca->mu);
    /* what every node reserved, less what this node holds unused */
    pthread_mutex_lock(&r->mu);
    if (pm > 0 &&
        hsmca_store_quota_sum(r->st, ca->rec.id, HSMCA_QUOTA_MINUTE, t, minute) == HSMCA_OK)
        *minute = *minute > unused_m ? *minute - unused_m : 0;
    if (pd > 0 && hsmca_store_quota_sum(r->st, ca->rec.id, HSMCA_QUOTA_DAY, t, day) == HSMCA_OK)
        *day = *day > unused_d ? *day - unused_d : 0;
    pthread_mutex_unlock(&r->mu);
}
