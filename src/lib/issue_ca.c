/* SPDX-License-Identifier: Apache-2.0
 *
 * issue_ca.c -- a CA in the engine and its activation window: creation, activation with a key
 * until a time or a number of DACs, deactivation (drains signers), state reports.
 */
#include "issue_internal.h"

/* ---------------------------------------------------------------- CA life */

enum hsmca_err
hsmca_issue_ca_new(struct hsmca_issuer *iss, const struct hsmca_ca_rec *rec, X509 *paa,
                   const struct hsmca_profile *dac_profile, struct hsmca_issue_ca **out)
{
    struct hsmca_issue_ca *ca = NULL;
    struct hsmca_matter_verdict v;
    struct hsmca_store *st = NULL;
    uint64_t n = 0;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (iss == NULL || rec == NULL || paa == NULL || dac_profile == NULL || out == NULL ||
        strcmp(rec->kind, "pai") != 0 || rec->cert_der == NULL || rec->cert_len == 0 ||
        dac_profile->type != HSMCA_PROFILE_DAC || !hsmca_ca_id_valid(rec->id))
        return HSMCA_E_INVALID_ARG;
    rc = HSMCA_E_NOMEM;
    ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return rc;
    pthread_mutex_init(&ca->mu, NULL);
    pthread_cond_init(&ca->cv, NULL);
    ca->iss = iss;
    ca->rec = *rec;
    ca->rec.cert_der = NULL;
    ca->profile = *dac_profile;
    snprintf(ca->target, sizeof(ca->target), "ca/%s", rec->id);
    hsmca_quota_blk_init(&ca->qmin);
    hsmca_quota_blk_init(&ca->qday);
    hsmca_issue_quotas_get(iss->quotas, rec->id, &ca->per_minute, &ca->per_day);
    ca->rec.cert_der = OPENSSL_memdup(rec->cert_der, rec->cert_len);
    if (ca->rec.cert_der == NULL)
        goto out;
    rc = hsmca_matter_cert_parse(rec->cert_der, rec->cert_len, &ca->pai);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_matter_check_format(ca->pai, HSMCA_PROFILE_PAI, &v);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_matter_get_vidpid(ca->pai, &ca->scope, &v);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_MATTER_CHAIN;
    if (X509_verify(ca->pai, X509_get0_pubkey(paa)) != 1)
        goto out;
    rc = HSMCA_E_NOMEM;
    if (X509_up_ref(paa) != 1)
        goto out;
    ca->paa = paa;
    /* quotas are counted in the store (store_quota.h): what it holds before this node counts
     * (the certificates of buckets nobody counted), and one node alone on SQLite counts its
     * buckets again from the certificates (what a killed process had reserved and not signed is
     * not lost). Then learn which request ids the store holds */
    rc = issue_quota_seed(ca, ca->per_minute > 0, ca->per_day > 0, 1);
    if (rc != HSMCA_OK)
        goto out;
    {
        struct reader *r = &iss->rd[0];

        pthread_mutex_lock(&r->mu);
        st = r->st;
        rc = hsmca_store_cert_count(st, rec->id, 0, &n);
        if (rc == HSMCA_OK)
            rc = issue_known_load(ca, st, n);
        pthread_mutex_unlock(&r->mu);
    }
    if (rc != HSMCA_OK)
        goto out;
    *out = ca;
    ca = NULL;
    rc = HSMCA_OK;
out:
    hsmca_issue_ca_free(ca);
    return rc;
}

void
hsmca_issue_ca_free(struct hsmca_issue_ca *ca)
{
    if (ca == NULL)
        return;
    hsmca_issue_ca_deactivate(ca);
    pthread_mutex_lock(&ca->mu);
    while (ca->jobs > 0)
        pthread_cond_wait(&ca->cv, &ca->mu);
    pthread_mutex_unlock(&ca->mu);
    issue_quota_return(ca); /* slots of jobs that failed after the deactivation */
    issue_ids_free(ca);
    X509_free(ca->pai);
    X509_free(ca->paa);
    OPENSSL_free(ca->rec.cert_der);
    pthread_cond_destroy(&ca->cv);
    pthread_mutex_destroy(&ca->mu);
    free(ca);
}

const char *
hsmca_issue_ca_id(const struct hsmca_issue_ca *ca)
{
    return ca != NULL ? ca->rec.id : "";
}

static enum hsmca_err
key_signer(void *arg, const unsigned char dgst[HSMCA_SHA256_LEN], unsigned char *sig,
           size_t sig_max, size_t *sig_len)
{
    return hsmca_key_sign_digest(arg, dgst, HSMCA_SHA256_LEN, sig, sig_max, sig_len);
}

/* ---------------------------------------------------------------- shared windows */

/* The issuer's read-write store handle for shared windows, opened at the first use. */
static struct hsmca_store *
win_store(struct hsmca_issuer *iss, enum hsmca_err *rc)
{
    struct hsmca_store *st;

    pthread_mutex_lock(&iss->win_mu);
    *rc = HSMCA_OK;
    if (iss->wst == NULL)
        *rc = hsmca_store_open(iss->store_path, &iss->wst);
    st = iss->wst;
    pthread_mutex_unlock(&iss->win_mu);
    return st;
}

/* How much of a shared window to reserve at once: an eighth of what the window has left, at
 * least 1, so that near its end one node does not sit on what another could sign; at most
 * ISSUE_WINDOW_BLOCK on PostgreSQL (nodes share it), ISSUE_WINDOW_BLOCK_ONE on SQLite (one node:
 * a block costs a commit with its fsync, and starves nobody) */
static uint64_t
block_want(const struct hsmca_issue_ca *ca, const struct hsmca_store *st)
{
    uint64_t left = ca->max_dacs > ca->win_used ? ca->max_dacs - ca->win_used : 1, n = left / 8;
    uint64_t cap = hsmca_store_is_pg(st) ? ISSUE_WINDOW_BLOCK : ISSUE_WINDOW_BLOCK_ONE;

    if (n < 1)
        n = 1;
    return n > cap ? cap : n;
}

enum hsmca_err
issue_window_slot(struct hsmca_issue_ca *ca, int64_t t_ms)
{
    char id[HSMCA_WINDOW_ID_MAX + 1];
    struct hsmca_store *st;
    uint64_t gen, got = 0, used = 0, want;
    enum hsmca_err rc;

    for (;;) {
        while (ca->refilling)
            pthread_cond_wait(&ca->cv, &ca->mu);
        if (ca->mi == NULL || !ca->open || ca->win[0] == '\0')
            return HSMCA_E_ISSUE_CA_INACTIVE;
        if (ca->blk > 0) {
            ca->blk--;
            return HSMCA_OK;
        }
        /* reserve the next block in the store, ca->mu dropped meanwhile */
        ca->refilling = 1;
        gen = ca->win_gen;
        memcpy(id, ca->win, sizeof(id));
        st = win_store(ca->iss, &rc); /* opened at activation (window_bind) */
        want = block_want(ca, st);
        pthread_mutex_unlock(&ca->mu);
        if (rc == HSMCA_OK)
            rc = hsmca_store_window_reserve(st, id, want, t_ms, &got, &used);
        pthread_mutex_lock(&ca->mu);
        ca->refilling = 0;
        pthread_cond_broadcast(&ca->cv);
        if (rc == HSMCA_E_ISSUE_WINDOW_EXHAUSTED && gen == ca->win_gen)
            ca->win_used = ca->max_dacs; /* every node's share is taken: the window ends */
        if (rc != HSMCA_OK)
            return rc;
        if (gen != ca->win_gen) { /* another activation since: that block is lost, not reused */
            hsmca_log(HSMCA_LOG_WARN, "issue", "window-block-dropped", "ca=%s window=%s n=%llu",
                      ca->rec.id, id, (unsigned long long)got);
            continue;
        }
        ca->blk += got;
        ca->win_used = used;
    }
}

/*
 * Tie ca's next activation to the shared window id: open it (until_ms, *max_dacs) in the store,
 * or with join take its end and count from the store into *until_ms and *max_dacs.
 */
static enum hsmca_err
window_bind(struct hsmca_issue_ca *ca, const char *id, int join, int64_t *until_ms,
            uint64_t *max_dacs, uint64_t *used)
{
    struct hsmca_window_rec w;
    struct hsmca_store *st;
    enum hsmca_err rc;

    if (strlen(id) == 0 || strlen(id) > HSMCA_WINDOW_ID_MAX)
        return HSMCA_E_INVALID_ARG;
    st = win_store(ca->iss, &rc);
    if (rc != HSMCA_OK)
        return rc;
    memset(&w, 0, sizeof(w));
    if (!join) {
        if (*until_ms <= issue_now_ms() || *max_dacs == 0 || *max_dacs > WINDOW_MAX)
            return HSMCA_E_ISSUE_WINDOW_INVALID;
        snprintf(w.id, sizeof(w.id), "%s", id);
        snprintf(w.ca, sizeof(w.ca), "%s", ca->rec.id);
        w.until_ms = *until_ms;
        w.max_dacs = *max_dacs;
        w.opened_ms = issue_now_ms();
        rc = hsmca_store_window_open(st, &w);
        if (rc != HSMCA_OK)
            return rc;
    }
    rc = hsmca_store_window_get(st, id, &w);
    if (rc != HSMCA_OK)
        return rc;
    if (strcmp(w.ca, ca->rec.id) != 0)
        return HSMCA_E_ISSUE_WINDOW_INVALID;
    if (issue_now_ms() >= w.until_ms)
        return HSMCA_E_ISSUE_WINDOW_EXPIRED;
    if (w.used >= w.max_dacs)
        return HSMCA_E_ISSUE_WINDOW_EXHAUSTED;
    *until_ms = w.until_ms;
    *max_dacs = w.max_dacs;
    *used = w.used;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_issue_ca_activate(struct hsmca_issue_ca *ca, struct hsmca_key *key, int64_t until_ms,
                        uint64_t max_dacs)
{
    return hsmca_issue_ca_activate_shared(ca, key, NULL, 0, until_ms, max_dacs);
}

enum hsmca_err
hsmca_issue_ca_activate_shared(struct hsmca_issue_ca *ca, struct hsmca_key *key,
                               const char *window_id, int join, int64_t until_ms, uint64_t max_dacs)
{
    uint64_t used = 0;
    struct hsmca_matter_issuer *mi = NULL;
    struct hsmca_profile prof;
    const unsigned char *id;
    size_t id_len = 0;
    int keyed;
    enum hsmca_err rc;

    if (ca == NULL || key == NULL || (join && window_id == NULL))
        return HSMCA_E_INVALID_ARG;
    if (window_id != NULL) {
        pthread_mutex_lock(&ca->mu);
        keyed = ca->mi != NULL;
        pthread_mutex_unlock(&ca->mu);
        if (keyed)
            return HSMCA_E_ISSUE_CA_ACTIVE;
        rc = window_bind(ca, window_id, join, &until_ms, &max_dacs, &used);
        if (rc != HSMCA_OK)
            return rc;
    }
    if (until_ms <= issue_now_ms() || max_dacs == 0 || max_dacs > WINDOW_MAX)
        return HSMCA_E_ISSUE_WINDOW_INVALID;
    pthread_mutex_lock(&ca->mu);
    keyed = ca->mi != NULL;
    prof = ca->profile; /* the window's DAC profile: the issuer keeps its own copy */
    pthread_mutex_unlock(&ca->mu);
    if (keyed)
        return HSMCA_E_ISSUE_CA_ACTIVE;
    /* validates the PAI against the PAA and the key against the PAI (one test signature) */
    rc = hsmca_matter_issuer_new(&prof, ca->pai, ca->paa, hsmca_key_private(key), &mi);
    if (rc == HSMCA_OK) /* DACs signed on the key's own sessions (token.c's struct sign_pool) */
        rc = hsmca_matter_issuer_set_signer(mi, key_signer, key);
    if (rc != HSMCA_OK) {
        hsmca_matter_issuer_free(mi);
        return rc;
    }
    pthread_mutex_lock(&ca->mu);
    if (ca->mi != NULL) {
        pthread_mutex_unlock(&ca->mu);
        hsmca_matter_issuer_free(mi);
        return HSMCA_E_ISSUE_CA_ACTIVE;
    }
    ca->mi = mi;
    id = hsmca_key_id(key, &id_len);
    if (id != NULL && id_len <= HSMCA_KEY_ID_MAX)
        hsmca_hex_encode(id, id_len, ca->kid, sizeof(ca->kid));
    else
        ca->kid[0] = '\0';
    ca->open = 1;
    ca->until_ms = until_ms;
    ca->max_dacs = max_dacs;
    ca->reserved = ca->in_flight; /* signings of an earlier window still finishing */
    ca->issued = 0;
    snprintf(ca->win, sizeof(ca->win), "%s", window_id != NULL ? window_id : "");
    ca->blk = 0;
    ca->win_used = used;
    ca->win_gen++;
    pthread_mutex_unlock(&ca->mu);
    hsmca_log(HSMCA_LOG_INFO, "issue", "ca-activated",
              "ca=%s until_ms=%lld max_dacs=%llu window=%s", ca->rec.id, (long long)until_ms,
              (unsigned long long)max_dacs, window_id != NULL ? window_id : "-");
    return HSMCA_OK;
}

void
hsmca_issue_ca_deactivate(struct hsmca_issue_ca *ca)
{
    struct hsmca_matter_issuer *mi;
    char win[HSMCA_WINDOW_ID_MAX + 1];
    uint64_t rest;

    if (ca == NULL)
        return;
    pthread_mutex_lock(&ca->mu);
    ca->open = 0;
    while (ca->signing > 0)
        pthread_cond_wait(&ca->cv, &ca->mu);
    mi = ca->mi;
    ca->mi = NULL;
    while (ca->refilling)
        pthread_cond_wait(&ca->cv, &ca->mu);
    rest = ca->blk;
    ca->blk = 0;
    memcpy(win, ca->win, sizeof(win));
    ca->win_gen++; /* slots given back after this are not this node's to reuse */
    pthread_mutex_unlock(&ca->mu);
    issue_quota_return(ca); /* the quota blocks, too */
    /* what this node reserved and did not sign goes back to the other nodes */
    if (rest > 0 && win[0] != '\0') {
        enum hsmca_err rc = HSMCA_OK;
        struct hsmca_store *st = win_store(ca->iss, &rc);

        if (rc == HSMCA_OK)
            rc = hsmca_store_window_release(st, win, rest);
        if (rc != HSMCA_OK)
            hsmca_log(HSMCA_LOG_WARN, "issue", "window-rest-kept", "ca=%s window=%s n=%llu code=%s",
                      ca->rec.id, win, (unsigned long long)rest, hsmca_err_code(rc));
    }
    if (mi != NULL) {
        hsmca_matter_issuer_free(mi);
        hsmca_log(HSMCA_LOG_INFO, "issue", "ca-deactivated", "ca=%s", ca->rec.id);
    }
}

void
hsmca_issue_ca_state(struct hsmca_issue_ca *ca, int64_t t, struct hsmca_issue_ca_state *out)
{
    memset(out, 0, sizeof(*out));
    if (ca == NULL)
        return;
    pthread_mutex_lock(&ca->mu);
    out->keyed = ca->mi != NULL;
    out->until_ms = ca->until_ms;
    out->max_dacs = ca->max_dacs;
    out->issued = ca->issued;
    out->in_flight = ca->in_flight;
    if (ca->win[0] != '\0') { /* shared: this node's block and what the store had left */
        uint64_t left = ca->blk + (ca->max_dacs > ca->win_used ? ca->max_dacs - ca->win_used : 0);

        out->active = out->keyed && ca->open && t < ca->until_ms && left > 0;
        out->remaining = out->active ? left : 0;
    } else {
        out->active = out->keyed && ca->open && t < ca->until_ms && ca->reserved < ca->max_dacs;
        out->remaining = out->active ? ca->max_dacs - ca->reserved : 0;
    }
    out->per_minute = ca->per_minute;
    out->per_day = ca->per_day;
    pthread_mutex_unlock(&ca->mu);
    issue_quota_counts(ca, t, &out->minute_count, &out->day_count);
    out->total_issued = atomic_load(&ca->total_issued);
    out->total_replayed = atomic_load(&ca->total_replayed);
    out->total_refused = atomic_load(&ca->total_refused);
    out->total_dry_runs = atomic_load(&ca->total_dry);
}

json_t *
hsmca_issue_ca_state_json(struct hsmca_issue_ca *ca, int64_t t)
{
    struct hsmca_issue_ca_state s;

    hsmca_issue_ca_state(ca, t, &s);
    return json_pack("{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}}", "active",
                     s.active, "keyed", s.keyed, "until_ms", (json_int_t)s.until_ms, "max_dacs",
                     (json_int_t)s.max_dacs, "issued", (json_int_t)s.issued, "in_flight",
                     (json_int_t)s.in_flight, "remaining", (json_int_t)s.remaining, "quota",
                     "per_minute", (json_int_t)s.per_minute, "per_day", (json_int_t)s.per_day,
                     "minute_count", (json_int_t)s.minute_count, "day_count",
                     (json_int_t)s.day_count);
}
