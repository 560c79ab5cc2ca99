/* SPDX-License-Identifier: Apache-2.0
 *
 * issue_batch.c -- batches and the helper-thread pool that works them, and the engine's life
 * (hsmca_issuer_new / hsmca_issuer_free).
 */
#include "issue_internal.h"

/* ---------------------------------------------------------------- batches */

static void
batch_work(struct batch_ctl *b)
{
    struct defer_q q;

    q.n = 0;
    for (;;) {
        size_t i = atomic_fetch_add(&b->claim, 1);

        if (i >= b->n)
            break;
        b->acc->jobs[i].defer = &q;
        issue_process(&b->acc->jobs[i], &b->items[i]);
    }
    issue_defer_flush(&q);
}

static void *
helper_main(void *arg)
{
    struct hsmca_issuer *iss = arg;

    pthread_mutex_lock(&iss->pool_mu);
    for (;;) {
        struct batch_ctl *b;

        while (iss->queue == NULL && !iss->stop)
            pthread_cond_wait(&iss->pool_cv, &iss->pool_mu);
        if (iss->stop)
            break;
        b = iss->queue;
        if (atomic_load(&b->claim) >= b->n) {
            iss->queue = b->next; /* used up: the submitter waits only for helpers inside */
            continue;
        }
        pthread_mutex_lock(&b->mu);
        b->workers++;
        pthread_mutex_unlock(&b->mu);
        pthread_mutex_unlock(&iss->pool_mu);
        batch_work(b);
        pthread_mutex_lock(&b->mu);
        if (--b->workers == 0)
            pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_mutex_lock(&iss->pool_mu);
    }
    pthread_mutex_unlock(&iss->pool_mu);
    return NULL;
}

static void
job_init(struct job *j, struct hsmca_issuer *iss, struct hsmca_issue_ca *ca,
         struct hsmca_issue_result *res)
{
    memset(j, 0, sizeof(*j));
    j->iss = iss;
    j->ca = ca;
    j->res = res;
    j->kind = JOB_ISSUE;
}

static void
jobs_add(struct hsmca_issue_ca *ca, size_t n)
{
    pthread_mutex_lock(&ca->mu);
    ca->jobs += (unsigned)n;
    pthread_mutex_unlock(&ca->mu);
}

enum hsmca_err
hsmca_issue_submit(struct hsmca_issuer *iss, struct hsmca_issue_ca *ca,
                   const struct hsmca_issue_req *rq, hsmca_issue_done_fn done, void *done_arg)
{
    struct job *j;

    if (iss == NULL || ca == NULL || rq == NULL || done == NULL || ca->iss != iss)
        return HSMCA_E_INVALID_ARG;
    /* the result lives in its own allocation: the done callback owns it */
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return HSMCA_E_NOMEM;
    job_init(j, iss, ca, calloc(1, sizeof(struct hsmca_issue_result)));
    if (j->res == NULL) {
        free(j);
        return HSMCA_E_NOMEM;
    }
    j->done = done;
    j->done_arg = done_arg;
    jobs_add(ca, 1);
    /* announced to the audit writer, so a commit waits briefly to carry it with the others */
    hsmca_audit_expect(iss->audit, 1);
    issue_process(j, rq);
    hsmca_audit_expect(iss->audit, -1);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_issue_batch_submit(struct hsmca_issuer *iss, struct hsmca_issue_ca *ca,
                         const struct hsmca_issue_req *items, size_t n,
                         hsmca_issue_batch_done_fn done, void *done_arg)
{
    struct batch_acc *acc = NULL;
    struct batch_ctl b;
    struct batch_ctl **pp;
    size_t i;

    if (iss == NULL || ca == NULL || done == NULL || ca->iss != iss || (items == NULL && n > 0))
        return HSMCA_E_INVALID_ARG;
    if (n == 0)
        return HSMCA_E_ISSUE_BATCH_MALFORMED;
    if (n > HSMCA_ISSUE_BATCH_MAX)
        return HSMCA_E_ISSUE_BATCH_TOO_LARGE;
    acc = calloc(1, sizeof(*acc));
    if (acc == NULL)
        return HSMCA_E_NOMEM;
    acc->br = calloc(1, sizeof(*acc->br));
    acc->jobs = calloc(n, sizeof(*acc->jobs));
    if (acc->br != NULL)
        acc->br->items = calloc(n, sizeof(*acc->br->items));
    if (acc->br == NULL || acc->jobs == NULL || acc->br->items == NULL) {
        if (acc->br != NULL)
            free(acc->br->items);
        free(acc->br);
        free(acc->jobs);
        free(acc);
        return HSMCA_E_NOMEM;
    }
    acc->br->n = n;
    acc->done = done;
    acc->done_arg = done_arg;
    acc->ca = ca;
    atomic_init(&acc->pending, n + 1);
    for (i = 0; i < n; i++) {
        job_init(&acc->jobs[i], iss, ca, &acc->br->items[i]);
        acc->jobs[i].acc = acc;
        acc->br->items[i].index = i;
    }
    jobs_add(ca, n + 1);

    memset(&b, 0, sizeof(b));
    b.iss = iss;
    b.ca = ca;
    b.items = items;
    b.acc = acc;
    b.n = n;
    atomic_init(&b.claim, 0);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    if (iss->nth > 0 && n > 1) {
        pthread_mutex_lock(&iss->pool_mu);
        for (pp = &iss->queue; *pp != NULL; pp = &(*pp)->next)
            ;
        *pp = &b;
        pthread_cond_broadcast(&iss->pool_cv);
        pthread_mutex_unlock(&iss->pool_mu);
    }
    batch_work(&b);
    if (iss->nth > 0 && n > 1) {
        /* no helper may enter after this; then wait for those inside */
        pthread_mutex_lock(&iss->pool_mu);
        for (pp = &iss->queue; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == &b) {
                *pp = b.next;
                break;
            }
        }
        pthread_mutex_unlock(&iss->pool_mu);
        pthread_mutex_lock(&b.mu);
        while (b.workers > 0)
            pthread_cond_wait(&b.cv, &b.mu);
        pthread_mutex_unlock(&b.mu);
    }
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    /* drop the submitter's hold: the last finisher delivers the batch */
    if (atomic_fetch_sub(&acc->pending, 1) == 1)
        issue_batch_finish(acc);
    pthread_mutex_lock(&ca->mu);
    if (--ca->jobs == 0)
        pthread_cond_broadcast(&ca->cv);
    pthread_mutex_unlock(&ca->mu);
    return HSMCA_OK;
}

void
hsmca_issue_refuse(struct hsmca_issuer *iss, const char *ca_id, const char *principal,
                   const char *role, enum hsmca_err code, const void *input, size_t len,
                   hsmca_audit_done_fn done, void *done_arg)
{
    struct hsmca_limiter_slot sum;
    char target[HSMCA_CA_ID_MAX + 8], h[HSMCA_SHA256_HEX_SIZE];
    json_t *d = NULL;
    char *txt = NULL;
    struct hsmca_audit_event ev;
    int64_t t = issue_now_ms();
    enum hsmca_err rc = HSMCA_E_NOMEM;
    int admit;

    if (iss == NULL) {
        if (done != NULL)
            done(done_arg, HSMCA_E_INVALID_ARG, NULL);
        return;
    }
    principal = principal != NULL ? principal : "";
    role = role != NULL ? role : "";
    admit = hsmca_limiter_admit(iss->lim, principal, role, t, &sum, NULL);
    if (sum.key[0] != '\0')
        issue_summary_write(iss, &sum, t);
    if (!admit) {
        if (done != NULL)
            done(done_arg, HSMCA_OK, NULL);
        return;
    }
    snprintf(target, sizeof(target), "%s%.*s", ca_id != NULL ? "ca/" : "", HSMCA_CA_ID_MAX,
             ca_id != NULL ? ca_id : "");
    d = json_pack("{s:s}", "code", hsmca_err_code(code));
    if (d != NULL && input != NULL) {
        issue_sha256_hex(input, len, h);
        json_object_set_new(d, "input_sha256", json_string(h));
    }
    txt = d != NULL ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(d);
    if (txt != NULL) {
        ev = (struct hsmca_audit_event){.actor = principal,
                                        .role = role,
                                        .action = "dac.refuse",
                                        .target = target,
                                        .outcome = "refused",
                                        .detail_json = txt,
                                        .kid = ""};
        rc = hsmca_audit_submit(iss->audit, &ev, NULL, NULL,
                                done != NULL ? done : issue_done_ignore, done_arg);
    }
    free(txt);
    if (rc != HSMCA_OK && done != NULL)
        done(done_arg, rc, NULL);
}

/* ---------------------------------------------------------------- engine life */

enum hsmca_err
hsmca_issuer_new(const struct hsmca_issuer_config *cfg, struct hsmca_issuer **out)
{
    struct hsmca_issuer *iss = NULL;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;
    unsigned i;

    if (cfg == NULL || cfg->audit == NULL || cfg->store_path == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (cpus < 1)
        cpus = 1;
    if (cpus > 64)
        cpus = 64;
    rc = HSMCA_E_NOMEM;
    iss = calloc(1, sizeof(*iss));
    if (iss == NULL)
        return rc;
    iss->audit = cfg->audit;
    iss->burst = cfg->refusal_burst ? cfg->refusal_burst : HSMCA_ISSUE_REFUSAL_BURST;
    iss->max_unsigned = cfg->max_unsigned_entries;
    pthread_mutex_init(&iss->pool_mu, NULL);
    pthread_cond_init(&iss->pool_cv, NULL);
    pthread_mutex_init(&iss->win_mu, NULL);
    pthread_mutex_init(&iss->qst_mu, NULL);
    iss->store_path = strdup(cfg->store_path);
    if (iss->store_path == NULL)
        goto out;
    rc = hsmca_limiter_new(LIMITER_SLOTS, LIMITER_PROBE, iss->burst, HSMCA_LIMITER_UNBOUNDED,
                           &iss->lim);
    if (rc != HSMCA_OK)
        goto out;
    rc = issue_quotas_dup(cfg->quotas, &iss->quotas);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_NOMEM;
    iss->nrd = cfg->readers ? cfg->readers : (unsigned)cpus;
    if (iss->nrd > 64)
        iss->nrd = 64;
    iss->rd = calloc(iss->nrd, sizeof(*iss->rd));
    if (iss->rd == NULL)
        goto out;
    for (i = 0; i < iss->nrd; i++) {
        pthread_mutex_init(&iss->rd[i].mu, NULL);
        rc = hsmca_store_open_readonly(cfg->store_path, &iss->rd[i].st);
        if (rc != HSMCA_OK)
            goto out;
    }
    rc = HSMCA_E_NOMEM;
    iss->nth = cfg->threads ? cfg->threads : (unsigned)cpus - 1;
    if (iss->nth > 64)
        iss->nth = 64;
    if (iss->nth > 0) {
        iss->th = calloc(iss->nth, sizeof(*iss->th));
        if (iss->th == NULL)
            goto out;
        for (i = 0; i < iss->nth; i++) {
            if (pthread_create(&iss->th[i], NULL, helper_main, iss) != 0) {
                iss->nth = i;
                goto out;
            }
        }
    }
    *out = iss;
    iss = NULL;
    rc = HSMCA_OK;
out:
    hsmca_issuer_free(iss);
    return rc;
}

void
hsmca_issuer_free(struct hsmca_issuer *iss)
{
    unsigned i;

    if (iss == NULL)
        return;
    if (iss->lim != NULL && iss->audit != NULL)
        issue_summaries_flush(iss, 1); /* every counted refusal, minute ended or not */
    pthread_mutex_lock(&iss->pool_mu);
    iss->stop = 1;
    pthread_cond_broadcast(&iss->pool_cv);
    pthread_mutex_unlock(&iss->pool_mu);
    for (i = 0; i < iss->nth; i++)
        pthread_join(iss->th[i], NULL);
    free(iss->th);
    for (i = 0; iss->rd != NULL && i < iss->nrd; i++) {
        hsmca_store_close(iss->rd[i].st);
        pthread_mutex_destroy(&iss->rd[i].mu);
    }
    free(iss->rd);
    hsmca_store_close(iss->wst);
    hsmca_store_close(iss->qst);
    free(iss->store_path);
    pthread_mutex_destroy(&iss->qst_mu);
    pthread_mutex_destroy(&iss->win_mu);
    hsmca_issue_quotas_free(iss->quotas);
    hsmca_limiter_free(iss->lim);
    pthread_cond_destroy(&iss->pool_cv);
    pthread_mutex_destroy(&iss->pool_mu);
    free(iss);
}
