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
    int64_t t = issue_now_ms();
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
    ca->minute = (struct slide){1000, MINUTE_BUCKETS, t / 1000, 0, ca->minute_b};
    ca->day = (struct slide){60000, DAY_BUCKETS, t / 60000, 0, ca->day_b};
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
    /* quotas survive restarts: count what the store holds for the last day and minute; and
     * learn which request ids it holds */
    {
        struct reader *r = &iss->rd[0];

        pthread_mutex_lock(&r->mu);
        st = r->st;
        rc = hsmca_store_cert_count(st, rec->id, t - 86400000, &n);
        if (rc == HSMCA_OK && n > 0) {
            issue_slide_add(&ca->day, t, (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n));
            rc = hsmca_store_cert_count(st, rec->id, t - 60000, &n);
            if (rc == HSMCA_OK && n > 0)
                issue_slide_add(&ca->minute, t, (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n));
        }
        if (rc == HSMCA_OK)
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
key_signer(void *arg, const unsigned char dgst[32], unsigned char *sig, size_t sig_max,
           size_t *sig_len)
{
    return hsmca_key_sign_digest(arg, dgst, 32, sig, sig_max, sig_len);
}

enum hsmca_err
hsmca_issue_ca_activate(struct hsmca_issue_ca *ca, struct hsmca_key *key, int64_t until_ms,
                        uint64_t max_dacs)
{
    struct hsmca_matter_issuer *mi = NULL;
    struct hsmca_profile prof;
    const unsigned char *id;
    size_t id_len = 0;
    int keyed;
    enum hsmca_err rc;

    if (ca == NULL || key == NULL)
        return HSMCA_E_INVALID_ARG;
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
    pthread_mutex_unlock(&ca->mu);
    hsmca_log(HSMCA_LOG_INFO, "issue", "ca-activated", "ca=%s until_ms=%lld max_dacs=%llu",
              ca->rec.id, (long long)until_ms, (unsigned long long)max_dacs);
    return HSMCA_OK;
}

void
hsmca_issue_ca_deactivate(struct hsmca_issue_ca *ca)
{
    struct hsmca_matter_issuer *mi;

    if (ca == NULL)
        return;
    pthread_mutex_lock(&ca->mu);
    ca->open = 0;
    while (ca->signing > 0)
        pthread_cond_wait(&ca->cv, &ca->mu);
    mi = ca->mi;
    ca->mi = NULL;
    pthread_mutex_unlock(&ca->mu);
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
    out->active = out->keyed && ca->open && t < ca->until_ms && ca->reserved < ca->max_dacs;
    out->remaining = out->active ? ca->max_dacs - ca->reserved : 0;
    out->per_minute = ca->per_minute;
    out->per_day = ca->per_day;
    out->minute_count = issue_slide_count(&ca->minute, t);
    out->day_count = issue_slide_count(&ca->day, t);
    pthread_mutex_unlock(&ca->mu);
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
