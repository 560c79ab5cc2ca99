/* SPDX-License-Identifier: Apache-2.0
 *
 * issue_quota.c -- issuance quotas: the quota file (per CA, per minute and per day) and the
 * sliding counters that enforce them.
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

    if (ca == NULL)
        return;
    hsmca_issue_quotas_get(ca->iss->quotas, ca->rec.id, &pm, &pd);
    pthread_mutex_lock(&ca->mu);
    ca->per_minute = pm;
    ca->per_day = pd;
    pthread_mutex_unlock(&ca->mu);
}

/* ---------------------------------------------------------------- sliding counters */

static void
slide_advance(struct slide *s, int64_t unit)
{
    int64_t k;

    if (unit <= s->head)
        return;
    if (unit - s->head >= (int64_t)s->nb) {
        memset(s->b, 0, s->nb * sizeof(*s->b));
        s->total = 0;
    } else {
        for (k = s->head + 1; k <= unit; k++) {
            s->total -= s->b[k % s->nb];
            s->b[k % s->nb] = 0;
        }
    }
    s->head = unit;
}

uint64_t
issue_slide_count(struct slide *s, int64_t t_ms)
{
    slide_advance(s, t_ms / s->unit_ms);
    return s->total;
}

int64_t
issue_slide_add(struct slide *s, int64_t t_ms, uint32_t n)
{
    slide_advance(s, t_ms / s->unit_ms);
    s->b[s->head % s->nb] += n;
    s->total += n;
    return s->head;
}

/* Give back n counted in unit (if that unit is still inside the window). */
void
issue_slide_sub(struct slide *s, int64_t unit)
{
    if (unit > s->head - (int64_t)s->nb && unit <= s->head && s->b[unit % s->nb] > 0) {
        s->b[unit % s->nb]--;
        s->total--;
    }
}
