/* SPDX-License-Identifier: Apache-2.0
 *
 * issue.c -- the DAC issuance engine: activation windows, quotas, idempotent request ids, dry
 * runs, batches, and the audit entry of every issuance, replay and refusal. Owns per-CA counters
 * (one mutex per CA, held for a few instructions), a pool of read-only store handles for request
 * id lookups, helper threads for batches, and the per-principal refusal limiter. Never writes the
 * store itself: the certificate row is written by the audit writer inside the entry's
 * transaction, and a DAC is released only from the audit's done callback.
 */
#include "hsmca/issue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "hsmca/csr.h"
#include "hsmca/log.h"
#include "hsmca/util.h"

#define QUOTA_MAX 1000000000ull
#define WINDOW_MAX (1ull << 40)
#define LIMITER_SLOTS 1024
#define LIMITER_PROBE 8
#define INFLIGHT_MIN 64
#define MINUTE_BUCKETS 60 /* one per second */
#define DAY_BUCKETS 1440  /* one per minute */
#define DETAIL_JSON_MAX 1024

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

static enum hsmca_err
quotas_dup(const struct hsmca_issue_quotas *q, struct hsmca_issue_quotas **out)
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

/* ---------------------------------------------------------------- sliding counters */

/* Buckets of unit_ms each over nb units; total is the sum of the live buckets. */
struct slide {
    int64_t unit_ms;
    unsigned nb;
    int64_t head; /* the newest unit */
    uint64_t total;
    uint32_t *b;
};

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

static uint64_t
slide_count(struct slide *s, int64_t t_ms)
{
    slide_advance(s, t_ms / s->unit_ms);
    return s->total;
}

static int64_t
slide_add(struct slide *s, int64_t t_ms, uint32_t n)
{
    slide_advance(s, t_ms / s->unit_ms);
    s->b[s->head % s->nb] += n;
    s->total += n;
    return s->head;
}

/* Give back n counted in unit (if that unit is still inside the window). */
static void
slide_sub(struct slide *s, int64_t unit)
{
    if (unit > s->head - (int64_t)s->nb && unit <= s->head && s->b[unit % s->nb] > 0) {
        s->b[unit % s->nb]--;
        s->total--;
    }
}

/* ---------------------------------------------------------------- engine and CA */

struct reader {
    pthread_mutex_t mu;
    struct hsmca_store *st;
};

struct limit_slot {
    char principal[HSMCA_AUDIT_FIELD_MAX + 1]; /* "" = free */
    char role[HSMCA_AUDIT_FIELD_MAX + 1];
    int64_t minute;      /* the minute (ms / 60000) being counted */
    uint64_t full;       /* entries written in that minute */
    uint64_t suppressed; /* refusals only counted */
    int64_t since_ms;    /* first suppressed refusal */
};

struct batch_ctl;

struct hsmca_issuer {
    struct hsmca_audit *audit;
    struct hsmca_issue_quotas *quotas;
    struct reader *rd;
    unsigned nrd;
    atomic_uint rd_next;
    unsigned burst;
    uint64_t max_unsigned; /* audit entries beyond the last signed checkpoint; 0 = no bound */
    pthread_mutex_t lim_mu;
    struct limit_slot *lim; /* LIMITER_SLOTS */
    /* batch helpers */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    struct batch_ctl *queue; /* singly linked, oldest first */
    int stop;
    pthread_t *th;
    unsigned nth;
};

struct hsmca_issue_ca {
    struct hsmca_issuer *iss;
    struct hsmca_ca_rec rec; /* cert_der owned */
    X509 *pai, *paa;
    struct hsmca_profile profile;
    struct hsmca_matter_vidpid scope;
    char target[HSMCA_CA_ID_MAX + 8];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* window (under mu) */
    struct hsmca_matter_issuer *mi; /* non-NULL while keyed */
    char kid[2 * HSMCA_KEY_ID_MAX + 1];
    int open;
    int64_t until_ms;
    uint64_t max_dacs, reserved, issued, in_flight;
    unsigned signing; /* users of mi (drained by deactivate) */
    unsigned jobs;    /* submitted jobs whose result is not yet delivered (drained by free) */
    /* quotas (under mu) */
    uint64_t per_minute, per_day;
    struct slide minute, day;
    uint32_t minute_b[MINUTE_BUCKETS], day_b[DAY_BUCKETS];
    /* request ids the store may hold (Bloom filter; words updated atomically): a request id
     * that is surely absent needs no store lookup */
    _Atomic uint64_t *known;
    uint64_t known_mask; /* bits - 1 */
    /* request ids in flight (under mu): open addressing, tombstones */
    char **ids;
    size_t ids_cap, ids_used;
    /* statistics */
    atomic_uint_fast64_t total_issued, total_replayed, total_refused, total_dry;
};

static char tombstone[1];

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    while (*s != '\0') {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

/* Register id as in flight; 0 if it already is, -1 on NOMEM, 1 when added. Under ca->mu. */
static int
ids_add(struct hsmca_issue_ca *ca, const char *id)
{
    size_t i, mask, tomb = SIZE_MAX;

    if ((ca->ids_used + 1) * 2 > ca->ids_cap) {
        size_t ncap = ca->ids_cap ? ca->ids_cap * 2 : INFLIGHT_MIN, k;
        char **n = calloc(ncap, sizeof(*n));

        if (n == NULL)
            return -1;
        for (k = 0; k < ca->ids_cap; k++) {
            char *s = ca->ids[k];

            if (s == NULL || s == tombstone)
                continue;
            for (i = fnv1a(s) & (ncap - 1); n[i] != NULL; i = (i + 1) & (ncap - 1))
                ;
            n[i] = s;
        }
        free(ca->ids);
        ca->ids = n;
        ca->ids_cap = ncap;
        ca->ids_used = 0;
        for (k = 0; k < ncap; k++)
            ca->ids_used += n[k] != NULL;
    }
    mask = ca->ids_cap - 1;
    for (i = fnv1a(id) & mask; ca->ids[i] != NULL; i = (i + 1) & mask) {
        if (ca->ids[i] == tombstone) {
            if (tomb == SIZE_MAX)
                tomb = i;
        } else if (strcmp(ca->ids[i], id) == 0) {
            return 0;
        }
    }
    if (tomb != SIZE_MAX) {
        i = tomb;
    } else {
        ca->ids_used++;
    }
    ca->ids[i] = strdup(id);
    if (ca->ids[i] == NULL) {
        ca->ids[i] = tomb != SIZE_MAX ? tombstone : NULL;
        if (tomb == SIZE_MAX)
            ca->ids_used--;
        return -1;
    }
    return 1;
}

/* Under ca->mu. */
static void
ids_del(struct hsmca_issue_ca *ca, const char *id)
{
    size_t i, mask;

    if (ca->ids_cap == 0)
        return;
    mask = ca->ids_cap - 1;
    for (i = fnv1a(id) & mask; ca->ids[i] != NULL; i = (i + 1) & mask) {
        if (ca->ids[i] != tombstone && strcmp(ca->ids[i], id) == 0) {
            free(ca->ids[i]);
            ca->ids[i] = tombstone;
            return;
        }
    }
}

/* Two independent 64-bit hashes of a request id for the Bloom filter (k = 4 probes). */
static void
known_hashes(const char *id, uint64_t *h1, uint64_t *h2)
{
    uint64_t a = fnv1a(id), b = 0x9e3779b97f4a7c15ull;
    const unsigned char *p = (const unsigned char *)id;

    while (*p != '\0') {
        b ^= *p++;
        b *= 0xff51afd7ed558ccdull;
        b ^= b >> 33;
    }
    *h1 = a;
    *h2 = b | 1;
}

static void
known_add(struct hsmca_issue_ca *ca, const char *id)
{
    uint64_t h1, h2, bit;
    int k;

    known_hashes(id, &h1, &h2);
    for (k = 0; k < 4; k++) {
        bit = (h1 + (uint64_t)k * h2) & ca->known_mask;
        atomic_fetch_or_explicit(&ca->known[bit >> 6], 1ull << (bit & 63), memory_order_release);
    }
}

static int
known_maybe(struct hsmca_issue_ca *ca, const char *id)
{
    uint64_t h1, h2, bit;
    int k;

    known_hashes(id, &h1, &h2);
    for (k = 0; k < 4; k++) {
        bit = (h1 + (uint64_t)k * h2) & ca->known_mask;
        if ((atomic_load_explicit(&ca->known[bit >> 6], memory_order_acquire) &
             (1ull << (bit & 63))) == 0)
            return 0;
    }
    return 1;
}

static enum hsmca_err
known_load_id(void *arg, const char *request_id)
{
    if (request_id != NULL && request_id[0] != '\0')
        known_add(arg, request_id);
    return HSMCA_OK;
}

/* Size the filter for what the store holds (16 bits per id, at least 2^20 bits) and fill it
 * from one sequential scan of the request-id index. */
static enum hsmca_err
known_load(struct hsmca_issue_ca *ca, struct hsmca_store *st, uint64_t total)
{
    uint64_t bits = 1ull << 20;

    while (bits < total * 16 && bits < (1ull << 36))
        bits <<= 1;
    ca->known = calloc((size_t)(bits / 64), sizeof(*ca->known));
    if (ca->known == NULL)
        return HSMCA_E_NOMEM;
    ca->known_mask = bits - 1;
    return hsmca_store_request_ids(st, ca->rec.id, known_load_id, ca);
}

/* ---------------------------------------------------------------- jobs */

enum job_kind { JOB_ISSUE, JOB_REPLAY, JOB_REFUSE, JOB_DRY };

struct batch_acc;

struct job {
    struct hsmca_issuer *iss;
    struct hsmca_issue_ca *ca;
    struct hsmca_issue_result *res;
    struct batch_acc *acc; /* NULL for a single request */
    hsmca_issue_done_fn done;
    void *done_arg;
    enum job_kind kind;
    struct hsmca_cert_rec rec; /* JOB_ISSUE: the row apply writes (der borrowed from res) */
    int slot;                  /* a window slot and quota units are reserved */
    int64_t q_min_unit, q_day_unit;
    int id_held; /* rec.request_id is registered in flight */
    char principal[HSMCA_AUDIT_FIELD_MAX + 1];
    char role[HSMCA_AUDIT_FIELD_MAX + 1];
    /* batch items hand their entries to the writer a chunk at a time (bigger group commits) */
    struct defer_q *defer;
    const char *ev_action, *ev_outcome; /* static strings */
    char *ev_detail;                    /* owned until submitted */
    hsmca_audit_apply_fn ev_apply;
};

/* Entries of batch items waiting to be submitted together by one batch worker. */
#define DEFER_CHUNK 64
struct defer_q {
    struct job *j[DEFER_CHUNK];
    size_t n;
};

struct batch_acc {
    atomic_size_t pending; /* items not yet finished, +1 while the submitter hands them out */
    struct hsmca_issue_batch_result *br;
    struct job *jobs;
    hsmca_issue_batch_done_fn done;
    void *done_arg;
    struct hsmca_issue_ca *ca;
};

static void
result_clear(struct hsmca_issue_result *r)
{
    OPENSSL_free(r->dac_der);
    r->dac_der = NULL;
    r->dac_len = 0;
    json_decref(r->doc);
    r->doc = NULL;
}

void
hsmca_issue_result_free(struct hsmca_issue_result *res)
{
    if (res == NULL)
        return;
    result_clear(res);
    free(res);
}

void
hsmca_issue_batch_result_free(struct hsmca_issue_batch_result *br)
{
    size_t i;

    if (br == NULL)
        return;
    for (i = 0; i < br->n; i++)
        result_clear(&br->items[i]);
    free(br->items);
    free(br);
}

static void
batch_finish(struct batch_acc *acc)
{
    struct hsmca_issue_batch_result *br = acc->br;
    size_t i;

    for (i = 0; i < br->n; i++) {
        if (br->items[i].rc != HSMCA_OK)
            br->failed++;
        else if (br->items[i].replayed)
            br->replayed++;
        else
            br->issued++;
    }
    acc->done(acc->done_arg, br);
    free(acc->jobs);
    free(acc);
}

/* Deliver a job's result: the last thing that touches the job. */
static void
job_finish(struct job *j)
{
    struct hsmca_issue_ca *ca = j->ca;

    if (j->res->rc != HSMCA_OK)
        atomic_fetch_add(&ca->total_refused, 1);
    if (j->acc != NULL) {
        if (atomic_fetch_sub(&j->acc->pending, 1) == 1)
            batch_finish(j->acc);
    } else {
        j->done(j->done_arg, j->res);
        free(j);
    }
    pthread_mutex_lock(&ca->mu);
    if (--ca->jobs == 0)
        pthread_cond_broadcast(&ca->cv);
    pthread_mutex_unlock(&ca->mu);
}

/* Give back what a job reserved (window slot, quota units, request id). */
static void
job_release(struct job *j, int committed)
{
    struct hsmca_issue_ca *ca = j->ca;

    pthread_mutex_lock(&ca->mu);
    if (j->slot) {
        ca->in_flight--;
        if (committed) {
            ca->issued++;
        } else {
            ca->reserved--;
            slide_sub(&ca->minute, j->q_min_unit);
            slide_sub(&ca->day, j->q_day_unit);
        }
        j->slot = 0;
    }
    if (j->id_held) {
        ids_del(ca, j->rec.request_id);
        j->id_held = 0;
    }
    pthread_mutex_unlock(&ca->mu);
}

static void
sha256_hex(const void *p, size_t len, char out[65])
{
    unsigned char d[32];

    SHA256(p, len, d);
    hsmca_hex_encode(d, sizeof(d), out, 65);
}

/* ---------------------------------------------------------------- refusal limiter */

/* Returns 1 if a full entry may be written for principal now; 0 if the refusal is only counted.
 * A summary owed for an ended minute is written into *sum (principal "" = none). */
static int
limiter_admit(struct hsmca_issuer *iss, const char *principal, const char *role, int64_t t_ms,
              struct limit_slot *sum)
{
    int64_t minute = t_ms / 60000;
    size_t h = (size_t)(fnv1a(principal) % LIMITER_SLOTS), k, victim = h;
    struct limit_slot *s = NULL;
    int admit;

    sum->principal[0] = '\0';
    pthread_mutex_lock(&iss->lim_mu);
    for (k = 0; k < LIMITER_PROBE; k++) {
        struct limit_slot *c = &iss->lim[(h + k) % LIMITER_SLOTS];

        if (c->principal[0] != '\0' && strcmp(c->principal, principal) == 0) {
            s = c;
            break;
        }
        if (c->principal[0] == '\0' || c->minute < iss->lim[victim].minute)
            victim = (h + k) % LIMITER_SLOTS;
        if (c->principal[0] == '\0' && s == NULL)
            break;
    }
    if (s == NULL) {
        s = &iss->lim[victim];
        if (s->principal[0] != '\0' && s->suppressed > 0)
            *sum = *s; /* evicted: its count is written now */
        memset(s, 0, sizeof(*s));
        snprintf(s->principal, sizeof(s->principal), "%s", principal);
        s->minute = minute;
    }
    snprintf(s->role, sizeof(s->role), "%s", role);
    if (s->minute != minute) {
        if (s->suppressed > 0 && sum->principal[0] == '\0')
            *sum = *s;
        s->minute = minute;
        s->full = 0;
        s->suppressed = 0;
    }
    admit = s->full < iss->burst;
    if (admit) {
        s->full++;
    } else {
        if (s->suppressed++ == 0)
            s->since_ms = t_ms;
    }
    pthread_mutex_unlock(&iss->lim_mu);
    return admit;
}

/* Done callback of entries nobody waits for: a lost entry is at least in the log. */
static void
done_ignore(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    (void)arg;
    (void)receipt;
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "issue", "refusal-entry-lost", "code=%s", hsmca_err_code(rc));
}

static void
summary_write(struct hsmca_issuer *iss, const struct limit_slot *s, int64_t t_ms)
{
    json_t *d = json_pack("{s:s, s:I, s:I, s:I}", "principal", s->principal, "suppressed",
                          (json_int_t)s->suppressed, "since_ms", (json_int_t)s->since_ms,
                          "until_ms", (json_int_t)t_ms);
    char *txt = d != NULL ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct hsmca_audit_event ev = {.actor = s->principal,
                                   .role = s->role,
                                   .action = "dac.refuse.summary",
                                   .target = "",
                                   .outcome = "refused",
                                   .detail_json = txt,
                                   .kid = ""};

    if (txt == NULL ||
        hsmca_audit_submit(iss->audit, &ev, NULL, NULL, done_ignore, NULL) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "issue", "refusal-summary-lost", "suppressed=%llu",
                  (unsigned long long)s->suppressed);
    free(txt);
    json_decref(d);
}

void
hsmca_issuer_flush_refusals(struct hsmca_issuer *iss)
{
    int64_t t = now_ms(), minute = t / 60000;
    size_t i;

    if (iss == NULL)
        return;
    for (i = 0; i < LIMITER_SLOTS; i++) {
        struct limit_slot s;

        pthread_mutex_lock(&iss->lim_mu);
        s = iss->lim[i];
        if (s.principal[0] == '\0' || s.suppressed == 0 || s.minute == minute) {
            pthread_mutex_unlock(&iss->lim_mu);
            continue;
        }
        iss->lim[i].suppressed = 0;
        iss->lim[i].full = 0;
        iss->lim[i].minute = minute;
        pthread_mutex_unlock(&iss->lim_mu);
        summary_write(iss, &s, t);
    }
}

/* ---------------------------------------------------------------- audit callbacks */

static void
done_entry(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct job *j = arg;

    if (rc == HSMCA_OK && receipt != NULL) {
        j->res->has_receipt = 1;
        j->res->receipt = *receipt;
    }
    switch (j->kind) {
    case JOB_ISSUE:
        /* known before the id leaves the in-flight set: a retry then looks the store up */
        if (rc == HSMCA_OK && j->rec.request_id[0] != '\0')
            known_add(j->ca, j->rec.request_id);
        job_release(j, rc == HSMCA_OK);
        if (rc == HSMCA_OK) {
            atomic_fetch_add(&j->ca->total_issued, 1);
        } else {
            /* nothing is released: neither the row nor the entry exists */
            j->res->rc = rc;
            snprintf(j->res->detail, sizeof(j->res->detail), "%s", hsmca_err_title(rc));
            result_clear(j->res);
        }
        break;
    case JOB_REPLAY:
        if (rc == HSMCA_OK) {
            atomic_fetch_add(&j->ca->total_replayed, 1);
        } else {
            j->res->rc = rc;
            result_clear(j->res);
        }
        break;
    case JOB_DRY:
        if (rc == HSMCA_OK) {
            atomic_fetch_add(&j->ca->total_dry, 1);
        } else {
            j->res->rc = rc;
            result_clear(j->res);
        }
        break;
    case JOB_REFUSE:
        /* the refusal stands whether or not its entry could be written */
        break;
    }
    job_finish(j);
}

static enum hsmca_err
apply_issue(struct hsmca_store *st, void *arg)
{
    struct job *j = arg;
    struct hsmca_cert_rec other;
    enum hsmca_err rc;

    rc = hsmca_store_cert_insert(st, &j->rec);
    if (rc != HSMCA_E_STORE_CONSTRAINT || j->rec.request_id[0] == '\0')
        return rc;
    /* another writer of this database took the request id after our lookup */
    memset(&other, 0, sizeof(other));
    if (hsmca_store_cert_by_request(st, j->rec.ca, j->rec.request_id, &other) == HSMCA_OK)
        rc = HSMCA_E_ISSUE_REQUEST_ID_CONFLICT;
    hsmca_cert_rec_clear(&other);
    return rc;
}

/* Submit the job's prepared entry (ev_* fields); on a synchronous failure the job finishes here
 * with that code. */
static void
job_submit_now(struct job *j)
{
    struct hsmca_audit_event ev;
    enum hsmca_err rc = HSMCA_E_NOMEM;
    const char *action = j->ev_action;
    char *detail = j->ev_detail;

    /* once submitted, the job belongs to the writer (it may be finished and freed already) */
    j->ev_detail = NULL;
    if (detail != NULL) {
        ev = (struct hsmca_audit_event){.actor = j->principal,
                                        .role = j->role,
                                        .action = action,
                                        .target = j->ca->target,
                                        .outcome = j->ev_outcome,
                                        .detail_json = detail,
                                        .detail_canonical = 1, /* job_submit, issue_detail_text */
                                        .kid = j->ca->kid};
        rc = hsmca_audit_submit(j->iss->audit, &ev, j->ev_apply, j, done_entry, j);
    }
    free(detail);
    if (rc == HSMCA_OK)
        return;
    hsmca_log(HSMCA_LOG_ERROR, "issue", "audit-submit-failed", "ca=%s action=%s code=%s",
              j->ca->rec.id, action, hsmca_err_code(rc));
    if (j->kind == JOB_REFUSE) {
        job_finish(j);
        return;
    }
    if (j->kind == JOB_ISSUE)
        job_release(j, 0);
    j->res->rc = rc;
    snprintf(j->res->detail, sizeof(j->res->detail), "%s", hsmca_err_title(rc));
    result_clear(j->res);
    job_finish(j);
}

static void
defer_flush(struct defer_q *q)
{
    size_t i, n = q->n;

    q->n = 0;
    for (i = 0; i < n; i++)
        job_submit_now(q->j[i]);
}

/* Write the job's entry (takes detail, canonical JSON text from malloc): now, or with its batch
 * worker's chunk. */
static void
job_submit_text(struct job *j, const char *action, const char *outcome, char *detail,
                hsmca_audit_apply_fn apply)
{
    j->ev_action = action;
    j->ev_outcome = outcome;
    j->ev_apply = apply;
    j->ev_detail = detail;
    if (j->defer != NULL && j->ev_detail != NULL) {
        struct defer_q *q = j->defer;

        q->j[q->n++] = j;
        if (q->n == DEFER_CHUNK)
            defer_flush(q);
        return;
    }
    job_submit_now(j);
}

/* job_submit_text with detail a JSON object (taken). */
static void
job_submit(struct job *j, const char *action, const char *outcome, json_t *detail,
           hsmca_audit_apply_fn apply)
{
    char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    json_decref(detail);
    job_submit_text(j, action, outcome, text, apply);
}

/* Refuse the job with code (and a short English reason): a rate-limited "dac.refuse" entry, or
 * "dac.issue" outcome "failed" for a server-side failure. input hashes the raw request when the
 * CSR could not be read. */
static void
job_refuse(struct job *j, enum hsmca_err code, const char *why, const void *input, size_t len)
{
    struct limit_slot sum;
    json_t *d;
    int64_t t = now_ms();
    int server = hsmca_err_http_status(code) >= 500;

    if (j->kind == JOB_ISSUE)
        job_release(j, 0);
    j->kind = JOB_REFUSE;
    result_clear(j->res);
    j->res->rc = code;
    snprintf(j->res->detail, sizeof(j->res->detail), "%s",
             why != NULL ? why : hsmca_err_title(code));
    if (!limiter_admit(j->iss, j->principal, j->role, t, &sum)) {
        if (sum.principal[0] != '\0')
            summary_write(j->iss, &sum, t);
        job_finish(j);
        return;
    }
    if (sum.principal[0] != '\0')
        summary_write(j->iss, &sum, t);
    d = json_pack("{s:s}", "code", hsmca_err_code(code));
    if (d != NULL && j->res->csr_sha256[0] != '\0') {
        json_object_set_new(d, "csr_sha256", json_string(j->res->csr_sha256));
    } else if (d != NULL && input != NULL) {
        char h[65];

        sha256_hex(input, len, h);
        json_object_set_new(d, "input_sha256", json_string(h));
    }
    if (d != NULL && j->rec.request_id[0] != '\0')
        json_object_set_new(d, "request_id", json_string(j->rec.request_id));
    job_submit(j, server ? "dac.issue" : "dac.refuse", server ? "failed" : "refused", d, NULL);
}

/* ---------------------------------------------------------------- the request path */

static int
request_id_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > HSMCA_REQUEST_ID_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._~:@+=-", c) != NULL) ||
            c == '\0')
            return 0;
    }
    return 1;
}

static void
field_copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* Find (ca, request id) through one of the read-only handles. */
static enum hsmca_err
lookup(struct hsmca_issuer *iss, const char *ca, const char *id, struct hsmca_cert_rec *out)
{
    unsigned start = atomic_fetch_add(&iss->rd_next, 1) % iss->nrd, k;
    struct reader *r = NULL;
    enum hsmca_err rc;

    for (k = 0; k < iss->nrd; k++) {
        struct reader *c = &iss->rd[(start + k) % iss->nrd];

        if (pthread_mutex_trylock(&c->mu) == 0) {
            r = c;
            break;
        }
    }
    if (r == NULL) {
        r = &iss->rd[start];
        pthread_mutex_lock(&r->mu);
    }
    rc = hsmca_store_cert_by_request(r->st, ca, id, out);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* Take a user of ca->mi (for a dry run); NULL when the CA holds no key. */
static struct hsmca_matter_issuer *
mi_take(struct hsmca_issue_ca *ca)
{
    struct hsmca_matter_issuer *mi;

    pthread_mutex_lock(&ca->mu);
    mi = ca->mi;
    if (mi != NULL && ca->open)
        ca->signing++;
    else
        mi = NULL;
    pthread_mutex_unlock(&ca->mu);
    return mi;
}

static void
mi_drop(struct hsmca_issue_ca *ca)
{
    pthread_mutex_lock(&ca->mu);
    if (--ca->signing == 0)
        pthread_cond_broadcast(&ca->cv);
    pthread_mutex_unlock(&ca->mu);
}

/* Are too many audit entries waiting for a checkpoint the audit token cannot sign? */
static int
backlog_full(struct hsmca_issuer *iss)
{
    int failing = 0;
    uint64_t n = hsmca_audit_unsigned(iss->audit, &failing);

    return failing && n > iss->max_unsigned;
}

/* Reserve a window slot and quota units and become a signer. Returns the refusal code. */
static enum hsmca_err
reserve(struct hsmca_issue_ca *ca, struct job *j, int64_t t, struct hsmca_matter_issuer **mi)
{
    enum hsmca_err rc = HSMCA_OK;

    pthread_mutex_lock(&ca->mu);
    if (ca->mi == NULL || !ca->open)
        rc = HSMCA_E_ISSUE_CA_INACTIVE;
    else if (t >= ca->until_ms)
        rc = HSMCA_E_ISSUE_WINDOW_EXPIRED;
    else if (ca->reserved >= ca->max_dacs)
        rc = HSMCA_E_ISSUE_WINDOW_EXHAUSTED;
    else if (ca->per_minute > 0 && slide_count(&ca->minute, t) >= ca->per_minute)
        rc = HSMCA_E_ISSUE_QUOTA_MINUTE;
    else if (ca->per_day > 0 && slide_count(&ca->day, t) >= ca->per_day)
        rc = HSMCA_E_ISSUE_QUOTA_DAY;
    if (rc == HSMCA_OK) {
        ca->reserved++;
        ca->in_flight++;
        ca->signing++;
        j->q_min_unit = slide_add(&ca->minute, t, 1);
        j->q_day_unit = slide_add(&ca->day, t, 1);
        j->slot = 1;
        *mi = ca->mi;
    }
    pthread_mutex_unlock(&ca->mu);
    return rc;
}

/* The "dac.issue" detail as canonical JSON (keys sorted, compact), written directly: jansson's
 * pack, dump and free cost more than the entry's SQLite insert. Every value is hex or a request
 * id (request_id_ok: no character JSON escapes). */
static char *
issue_detail_text(const struct job *j)
{
    char serial[41], sha[65], text[96 + 64 + HSMCA_REQUEST_ID_MAX + 40 + 64 + 8];
    int n;

    hsmca_hex_encode(j->rec.serial, j->rec.serial_len, serial, sizeof(serial));
    hsmca_hex_encode(j->rec.sha256, sizeof(j->rec.sha256), sha, sizeof(sha));
    n = snprintf(text, sizeof(text),
                 "{\"csr_sha256\":\"%s\",\"pid\":\"%04X\",\"request_id\":\"%s\",\"serial\":\"%s\","
                 "\"sha256\":\"%s\",\"vid\":\"%04X\"}",
                 j->res->csr_sha256, (unsigned)j->rec.pid & 0xFFFFu, j->rec.request_id, serial, sha,
                 (unsigned)j->rec.vid & 0xFFFFu);
    return n > 0 && (size_t)n < sizeof(text) ? strdup(text) : NULL;
}

/* Dry run: lint, sign nothing, store nothing; audited as "dac.dry_run". */
static void
dry_run(struct job *j, const struct hsmca_issue_req *rq)
{
    struct hsmca_issue_ca *ca = j->ca;
    struct hsmca_matter_issuer *mi;
    struct hsmca_csr *csr = NULL;
    json_t *d, *rules, *p;
    enum hsmca_err rc;
    size_t i;

    if (hsmca_csr_parse(rq->csr, rq->csr_len, &csr) == HSMCA_OK)
        hsmca_hex_encode(hsmca_csr_sha256(csr), 32, j->res->csr_sha256, sizeof(j->res->csr_sha256));
    hsmca_csr_free(csr);
    mi = mi_take(ca);
    if (mi == NULL) {
        job_refuse(j, HSMCA_E_ISSUE_CA_INACTIVE, NULL, rq->csr, rq->csr_len);
        return;
    }
    rc = hsmca_matter_dac_lint(mi, rq->csr, rq->csr_len, rq->pid_given, rq->pid,
                               (time_t)(now_ms() / 1000), &j->res->doc);
    mi_drop(ca);
    if (rc != HSMCA_OK) {
        job_refuse(j, rc, NULL, rq->csr, rq->csr_len);
        return;
    }
    j->kind = JOB_DRY;
    j->res->dry_run = 1;
    rules = json_array();
    json_array_foreach(json_object_get(j->res->doc, "problems"), i, p)
        json_array_append(rules, json_object_get(p, "rule"));
    d = json_pack("{s:b, s:o}", "ok", json_is_true(json_object_get(j->res->doc, "ok")), "problems",
                  rules);
    if (d != NULL && j->res->csr_sha256[0] != '\0') {
        json_object_set_new(d, "csr_sha256", json_string(j->res->csr_sha256));
    } else if (d != NULL) {
        char h[65];

        sha256_hex(rq->csr, rq->csr_len, h);
        json_object_set_new(d, "input_sha256", json_string(h));
    }
    job_submit(j, "dac.dry_run", "ok", d, NULL);
}

/* A stored DAC for the same request id and CSR: hand it back, audited as "dac.replay". */
static void
replay(struct job *j, struct hsmca_cert_rec *old)
{
    char serial[41], sha[65];
    json_t *d;

    j->kind = JOB_REPLAY;
    j->res->replayed = 1;
    j->res->dac_der = OPENSSL_memdup(old->der, old->der_len);
    if (j->res->dac_der == NULL) {
        job_refuse(j, HSMCA_E_NOMEM, NULL, NULL, 0);
        return;
    }
    j->res->dac_len = old->der_len;
    memcpy(j->res->serial, old->serial, old->serial_len);
    j->res->serial_len = old->serial_len;
    hsmca_hex_encode(old->serial, old->serial_len, serial, sizeof(serial));
    hsmca_hex_encode(old->sha256, sizeof(old->sha256), sha, sizeof(sha));
    d = json_pack("{s:s, s:s, s:s, s:s}", "serial", serial, "sha256", sha, "csr_sha256",
                  j->res->csr_sha256, "request_id", j->rec.request_id);
    job_submit(j, "dac.replay", "ok", d, NULL);
}

/* One request, start to hand-off. The job is finished (or handed to the writer) on return. */
static void
process(struct job *j, const struct hsmca_issue_req *rq)
{
    struct hsmca_issue_ca *ca = j->ca;
    struct hsmca_csr *csr = NULL;
    struct hsmca_matter_issuer *mi = NULL;
    struct hsmca_cert_rec old;
    struct hsmca_matter_dac_request mr;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    unsigned char *der = NULL;
    size_t der_len = 0, idlen;
    int64_t t = now_ms();
    time_t now = (time_t)(t / 1000);
    uint64_t started, signed_at;
    enum hsmca_err rc;
    int added;

    field_copy(j->principal, sizeof(j->principal), rq->principal);
    field_copy(j->role, sizeof(j->role), rq->role);
    j->res->pai_der = ca->rec.cert_der;
    j->res->pai_len = ca->rec.cert_len;
    snprintf(j->rec.ca, sizeof(j->rec.ca), "%s", ca->rec.id);
    idlen = rq->request_id != NULL ? strnlen(rq->request_id, HSMCA_REQUEST_ID_MAX + 1) : 0;
    if (idlen > 0 && !request_id_ok(rq->request_id, idlen)) {
        job_refuse(j, HSMCA_E_ISSUE_REQUEST_ID_INVALID, NULL, rq->csr,
                   rq->csr != NULL ? rq->csr_len : 0);
        return;
    }
    if (idlen > 0)
        memcpy(j->rec.request_id, rq->request_id, idlen + 1);
    if (rq->csr == NULL) {
        job_refuse(j, HSMCA_E_CSR_MALFORMED, "no CSR", NULL, 0);
        return;
    }
    if (rq->dry_run) {
        dry_run(j, rq);
        return;
    }
    rc = hsmca_csr_parse(rq->csr, rq->csr_len, &csr);
    if (rc != HSMCA_OK) {
        job_refuse(j, rc, NULL, rq->csr, rq->csr_len > HSMCA_CSR_MAX ? 0 : rq->csr_len);
        return;
    }
    memcpy(j->rec.csr_sha256, hsmca_csr_sha256(csr), 32);
    hsmca_hex_encode(j->rec.csr_sha256, 32, j->res->csr_sha256, sizeof(j->res->csr_sha256));

    if (idlen > 0) {
        pthread_mutex_lock(&ca->mu);
        added = ids_add(ca, j->rec.request_id);
        pthread_mutex_unlock(&ca->mu);
        if (added <= 0) {
            hsmca_csr_free(csr);
            job_refuse(j, added < 0 ? HSMCA_E_NOMEM : HSMCA_E_ISSUE_REQUEST_ID_IN_FLIGHT, NULL,
                       NULL, 0);
            return;
        }
        j->id_held = 1;
        memset(&old, 0, sizeof(old));
        /* an id the store surely lacks needs no lookup; a "maybe" is looked up */
        rc = known_maybe(ca, j->rec.request_id)
                 ? lookup(j->iss, ca->rec.id, j->rec.request_id, &old)
                 : HSMCA_E_NOT_FOUND;
        if (rc == HSMCA_OK) {
            job_release(j, 0);
            if (CRYPTO_memcmp(old.csr_sha256, j->rec.csr_sha256, 32) == 0)
                replay(j, &old);
            else
                job_refuse(j, HSMCA_E_ISSUE_REQUEST_ID_CONFLICT, NULL, NULL, 0);
            hsmca_cert_rec_clear(&old);
            hsmca_csr_free(csr);
            return;
        }
        hsmca_cert_rec_clear(&old);
        if (rc != HSMCA_E_NOT_FOUND) {
            hsmca_csr_free(csr);
            job_refuse(j, rc, NULL, NULL, 0);
            return;
        }
    }

    /* nothing is signed that the audit log cannot soon cover with a signed checkpoint: while
     * checkpoints fail, at most max_unsigned entries lie beyond the last one (a working token
     * never gets there, so a burst between a batch and its checkpoint is never refused) */
    if (j->iss->max_unsigned > 0 && backlog_full(j->iss))
        rc = HSMCA_E_AUDIT_UNSIGNED_BACKLOG;
    else
        rc = reserve(ca, j, t, &mi);
    if (rc != HSMCA_OK) {
        hsmca_csr_free(csr);
        job_refuse(j, rc, NULL, NULL, 0);
        return;
    }
    mr = (struct hsmca_matter_dac_request){csr, rq->pid_given, rq->pid, now};
    started = hsmca_mono_us();
    rc = hsmca_matter_dac_build(mi, &mr, 0, serial, &der, &der_len);
    signed_at = hsmca_mono_us();
    mi_drop(ca);
    hsmca_csr_free(csr);
    if (rc != HSMCA_OK) {
        job_refuse(j, rc, NULL, NULL, 0);
        return;
    }
    j->res->sign_us = signed_at - started;
    j->res->dac_der = der;
    j->res->dac_len = der_len;
    memcpy(j->res->serial, serial, sizeof(serial));
    j->res->serial_len = sizeof(serial);
    memcpy(j->rec.serial, serial, sizeof(serial));
    j->rec.serial_len = sizeof(serial);
    SHA256(der, der_len, j->rec.sha256);
    j->rec.vid = ca->scope.vid;
    j->rec.pid = rq->pid_given ? rq->pid : ca->scope.pid;
    j->rec.not_before = (int64_t)now - (int64_t)ca->profile.backdate;
    j->rec.not_after = ca->profile.no_expiry
                           ? INT64_C(253402300799)
                           : j->rec.not_before + (int64_t)ca->profile.days * 86400 - 1;
    j->rec.issued_ms = t;
    j->rec.der = der; /* borrowed from the result */
    j->rec.der_len = der_len;
    job_submit_text(j, "dac.issue", "ok", issue_detail_text(j), apply_issue);
}

/* ---------------------------------------------------------------- batches */

struct batch_ctl {
    struct batch_ctl *next; /* in the issuer's queue */
    struct hsmca_issuer *iss;
    struct hsmca_issue_ca *ca;
    const struct hsmca_issue_req *items;
    struct batch_acc *acc;
    size_t n;
    atomic_size_t claim;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned workers; /* helpers inside (under mu) */
};

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
        process(&b->acc->jobs[i], &b->items[i]);
    }
    defer_flush(&q);
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
    process(j, rq);
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
        batch_finish(acc);
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
    struct limit_slot sum;
    char target[HSMCA_CA_ID_MAX + 8], h[65];
    json_t *d = NULL;
    char *txt = NULL;
    struct hsmca_audit_event ev;
    int64_t t = now_ms();
    enum hsmca_err rc = HSMCA_E_NOMEM;
    int admit;

    if (iss == NULL) {
        if (done != NULL)
            done(done_arg, HSMCA_E_INVALID_ARG, NULL);
        return;
    }
    principal = principal != NULL ? principal : "";
    role = role != NULL ? role : "";
    admit = limiter_admit(iss, principal, role, t, &sum);
    if (sum.principal[0] != '\0')
        summary_write(iss, &sum, t);
    if (!admit) {
        if (done != NULL)
            done(done_arg, HSMCA_OK, NULL);
        return;
    }
    snprintf(target, sizeof(target), "%s%.*s", ca_id != NULL ? "ca/" : "", HSMCA_CA_ID_MAX,
             ca_id != NULL ? ca_id : "");
    d = json_pack("{s:s}", "code", hsmca_err_code(code));
    if (d != NULL && input != NULL) {
        sha256_hex(input, len, h);
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
        rc = hsmca_audit_submit(iss->audit, &ev, NULL, NULL, done != NULL ? done : done_ignore,
                                done_arg);
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
    pthread_mutex_init(&iss->lim_mu, NULL);
    pthread_mutex_init(&iss->pool_mu, NULL);
    pthread_cond_init(&iss->pool_cv, NULL);
    iss->lim = calloc(LIMITER_SLOTS, sizeof(*iss->lim));
    if (iss->lim == NULL)
        goto out;
    rc = quotas_dup(cfg->quotas, &iss->quotas);
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
    if (iss->lim != NULL && iss->audit != NULL) {
        /* every counted refusal gets its summary, minute ended or not */
        for (i = 0; i < LIMITER_SLOTS; i++) {
            if (iss->lim[i].principal[0] != '\0' && iss->lim[i].suppressed > 0)
                summary_write(iss, &iss->lim[i], now_ms());
        }
    }
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
    hsmca_issue_quotas_free(iss->quotas);
    free(iss->lim);
    pthread_cond_destroy(&iss->pool_cv);
    pthread_mutex_destroy(&iss->pool_mu);
    pthread_mutex_destroy(&iss->lim_mu);
    free(iss);
}

/* ---------------------------------------------------------------- CA life */

enum hsmca_err
hsmca_issue_ca_new(struct hsmca_issuer *iss, const struct hsmca_ca_rec *rec, X509 *paa,
                   const struct hsmca_profile *dac_profile, struct hsmca_issue_ca **out)
{
    struct hsmca_issue_ca *ca = NULL;
    struct hsmca_matter_verdict v;
    struct hsmca_store *st = NULL;
    uint64_t n = 0;
    int64_t t = now_ms();
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
            slide_add(&ca->day, t, (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n));
            rc = hsmca_store_cert_count(st, rec->id, t - 60000, &n);
            if (rc == HSMCA_OK && n > 0)
                slide_add(&ca->minute, t, (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n));
        }
        if (rc == HSMCA_OK)
            rc = hsmca_store_cert_count(st, rec->id, 0, &n);
        if (rc == HSMCA_OK)
            rc = known_load(ca, st, n);
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
    size_t i;

    if (ca == NULL)
        return;
    hsmca_issue_ca_deactivate(ca);
    pthread_mutex_lock(&ca->mu);
    while (ca->jobs > 0)
        pthread_cond_wait(&ca->cv, &ca->mu);
    pthread_mutex_unlock(&ca->mu);
    for (i = 0; i < ca->ids_cap; i++) {
        if (ca->ids[i] != tombstone)
            free(ca->ids[i]);
    }
    free(ca->ids);
    free(ca->known);
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
    const unsigned char *id;
    size_t id_len = 0;
    int keyed;
    enum hsmca_err rc;

    if (ca == NULL || key == NULL)
        return HSMCA_E_INVALID_ARG;
    if (until_ms <= now_ms() || max_dacs == 0 || max_dacs > WINDOW_MAX)
        return HSMCA_E_ISSUE_WINDOW_INVALID;
    pthread_mutex_lock(&ca->mu);
    keyed = ca->mi != NULL;
    pthread_mutex_unlock(&ca->mu);
    if (keyed)
        return HSMCA_E_ISSUE_CA_ACTIVE;
    /* validates the PAI against the PAA and the key against the PAI (one test signature) */
    rc = hsmca_matter_issuer_new(&ca->profile, ca->pai, ca->paa, hsmca_key_private(key), &mi);
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
    out->minute_count = slide_count(&ca->minute, t);
    out->day_count = slide_count(&ca->day, t);
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
