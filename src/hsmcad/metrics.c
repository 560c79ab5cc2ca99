/* SPDX-License-Identifier: Apache-2.0
 *
 * metrics.c -- counters behind /metrics and their Prometheus text rendering. Fixed-size tables
 * (routes x status classes, a bounded set of CA labels), relaxed atomics, no lock on the request
 * path; a new CA label is published once under a mutex. Never labels with untrusted text other
 * than CA ids, which the router has already checked against [a-z0-9._-].
 */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hsmca/limits.h"
#include "hsmca/util.h"

#include "buf.h"
#include "build_info.h"

#ifndef HSMCA_VERSION
#define HSMCA_VERSION "unknown"
#endif

/* Refusals by code: indexed by the code's value (error.h's ranges stay below this). */
#define CODES_MAX 1000

static const int statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 406,
                               409, 413, 415, 429, 500, 501, 502, 503, 507};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]) + 1) /* + "other" */

/* A latency histogram in hsmca_lat_bucket's buckets, updated with relaxed atomics; its count is
 * the sum of the buckets. */
struct hist {
    uint64_t n[HSMCA_LAT_NBUCKET + 1];
    uint64_t sum_us;
};

struct ca_slot {
    char id[HSMCA_CA_ID_MAX + 1];
    uint64_t issued, refused;
};

struct hsmcad_metrics {
    const char *const *routes;
    unsigned nroutes;
    uint64_t *req;    /* (nroutes + 1) * NSTATUS */
    struct hist lat;  /* requests */
    struct hist sign; /* DACs built and signed */
    pthread_mutex_t ca_mu;
    unsigned nca;                                   /* published with release */
    struct ca_slot cas[HSMCAD_METRICS_CAS_MAX + 1]; /* last: "other" */
    uint64_t ckpt_runs, ckpt_rewinds;               /* hsmcad_metrics_store */
    uint64_t refused_by_code[CODES_MAX + 1];        /* last: codes beyond CODES_MAX */
};

enum hsmca_err
hsmcad_metrics_new(const char *const *route_names, unsigned nroutes, struct hsmcad_metrics **out)
{
    struct hsmcad_metrics *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return HSMCA_E_NOMEM;
    m->req = calloc((size_t)(nroutes + 1) * NSTATUS, sizeof(uint64_t));
    if (m->req == NULL) {
        free(m);
        return HSMCA_E_NOMEM;
    }
    m->routes = route_names;
    m->nroutes = nroutes;
    pthread_mutex_init(&m->ca_mu, NULL);
    snprintf(m->cas[HSMCAD_METRICS_CAS_MAX].id, sizeof(m->cas[0].id), "other");
    *out = m;
    return HSMCA_OK;
}

void
hsmcad_metrics_free(struct hsmcad_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->ca_mu);
    free(m->req);
    free(m);
}

static unsigned
status_index(int status)
{
    unsigned i;

    for (i = 0; i < NSTATUS - 1; i++) {
        if (statuses[i] == status)
            return i;
    }
    return NSTATUS - 1;
}

static void
hist_observe(struct hist *h, uint64_t us)
{
    __atomic_fetch_add(&h->n[hsmca_lat_bucket(us)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_us, us, __ATOMIC_RELAXED);
}

void
hsmcad_metrics_request(struct hsmcad_metrics *m, unsigned route, int status, uint64_t latency_us)
{
    if (m == NULL)
        return;
    if (route > m->nroutes)
        route = m->nroutes;
    __atomic_fetch_add(&m->req[route * NSTATUS + status_index(status)], 1, __ATOMIC_RELAXED);
    hist_observe(&m->lat, latency_us);
}

void
hsmcad_metrics_sign(struct hsmcad_metrics *m, uint64_t us)
{
    if (m != NULL)
        hist_observe(&m->sign, us);
}

static struct ca_slot *
ca_slot(struct hsmcad_metrics *m, const char *ca)
{
    unsigned i, n = __atomic_load_n(&m->nca, __ATOMIC_ACQUIRE);
    struct ca_slot *s = NULL;

    for (i = 0; i < n; i++) {
        if (strcmp(m->cas[i].id, ca) == 0)
            return &m->cas[i];
    }
    pthread_mutex_lock(&m->ca_mu);
    n = m->nca;
    for (i = 0; i < n; i++) {
        if (strcmp(m->cas[i].id, ca) == 0)
            s = &m->cas[i];
    }
    if (s == NULL && n < HSMCAD_METRICS_CAS_MAX && strlen(ca) <= HSMCA_CA_ID_MAX) {
        s = &m->cas[n];
        snprintf(s->id, sizeof(s->id), "%s", ca);
        __atomic_store_n(&m->nca, n + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&m->ca_mu);
    return s != NULL ? s : &m->cas[HSMCAD_METRICS_CAS_MAX];
}

void
hsmcad_metrics_dac(struct hsmcad_metrics *m, const char *ca, int refused, uint64_t n)
{
    struct ca_slot *s;

    if (m == NULL || ca == NULL)
        return;
    s = ca_slot(m, ca);
    __atomic_fetch_add(refused ? &s->refused : &s->issued, n, __ATOMIC_RELAXED);
}

void
hsmcad_metrics_dac_refused(struct hsmcad_metrics *m, const char *ca, enum hsmca_err code,
                           uint64_t n)
{
    unsigned i = (unsigned)code <= CODES_MAX - 1 ? (unsigned)code : CODES_MAX;

    if (m == NULL || n == 0)
        return;
    hsmcad_metrics_dac(m, ca, 1, n);
    __atomic_fetch_add(&m->refused_by_code[i], n, __ATOMIC_RELAXED);
}

static uint64_t
ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* One histogram's series: buckets n[0..HSMCA_LAT_NBUCKET] (not cumulative), in seconds; the count
 * is the +Inf bucket, so the two always agree. */
static void
hist_render(struct hsmcad_buf *b, const char *name, const char *help, const uint64_t *n,
            uint64_t sum_us)
{
    uint64_t cum = 0;
    unsigned i;

    hsmcad_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (i = 0; i < HSMCA_LAT_NBUCKET; i++) {
        cum += ld(&n[i]);
        hsmcad_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name,
                          (double)hsmca_lat_bound_us[i] / 1e6, (unsigned long long)cum);
    }
    cum += ld(&n[HSMCA_LAT_NBUCKET]);
    hsmcad_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    hsmcad_buf_printf(b, "%s_sum %.6f\n", name, (double)sum_us / 1e6);
    hsmcad_buf_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

/* A Prometheus label value: backslash, double quote and newline escaped, at most 64 bytes. */
static void
label_value(struct hsmcad_buf *b, const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i < 64; i++) {
        if (s[i] == '\\' || s[i] == '"')
            hsmcad_buf_printf(b, "\\%c", s[i]);
        else if (s[i] == '\n')
            hsmcad_buf_str(b, "\\n");
        else
            hsmcad_buf_put(b, &s[i], 1);
    }
}

static void
build_info(struct hsmcad_buf *b)
{
    hsmcad_buf_str(b,
                   "# HELP hsmca_build_info The daemon's build: version, git commit (\"unknown\" "
                   "outside a checkout), OpenSSL version at run time.\n"
                   "# TYPE hsmca_build_info gauge\nhsmca_build_info{version=\"");
    label_value(b, HSMCA_VERSION);
    hsmcad_buf_str(b, "\",commit=\"");
    label_value(b, HSMCAD_BUILD_COMMIT);
    hsmcad_buf_str(b, "\",openssl=\"");
    label_value(b, OpenSSL_version(OPENSSL_VERSION_STRING));
    hsmcad_buf_str(b, "\"} 1\n");
}

/* The audit writer's batch sizes as a histogram: hist[i] counts the batches of the i-th range
 * (1, 2-3, 4-7, 8-15, 16-63, 64-255, 256-1023, 1024+), so the bucket bounds are the ranges'
 * upper ends; the sum is the entries of all batches and the count the batches. */
static void
batch_render(struct hsmcad_buf *b, const struct hsmca_audit_stats *a)
{
    static const char *const le[] = {"1", "3", "7", "15", "63", "255", "1023", "+Inf"};
    uint64_t cum = 0;
    unsigned i;

    hsmcad_buf_str(b, "# HELP hsmca_audit_batch_size Entries per group commit of the audit "
                      "writer.\n# TYPE hsmca_audit_batch_size histogram\n");
    for (i = 0; i < 8; i++) {
        cum += a->batch_hist[i];
        hsmcad_buf_printf(b, "hsmca_audit_batch_size_bucket{le=\"%s\"} %llu\n", le[i],
                          (unsigned long long)cum);
    }
    hsmcad_buf_printf(b, "hsmca_audit_batch_size_sum %llu\nhsmca_audit_batch_size_count %llu\n",
                      (unsigned long long)a->batch_items, (unsigned long long)cum);
}

void
hsmcad_metrics_store(struct hsmcad_metrics *m, uint64_t checkpoints, uint64_t rewinds)
{
    if (m == NULL)
        return;
    __atomic_store_n(&m->ckpt_runs, checkpoints, __ATOMIC_RELAXED);
    __atomic_store_n(&m->ckpt_rewinds, rewinds, __ATOMIC_RELAXED);
}

/* A counter by CA under its HELP and TYPE: issued, or refused when refused; the row of the CAs
 * past HSMCAD_METRICS_CAS_MAX only when not 0. */
static void
per_ca(struct hsmcad_buf *b, const struct hsmcad_metrics *m, unsigned nca, const char *name,
       const char *help, int refused)
{
    unsigned i;

    hsmcad_buf_printf(b, "# HELP %s %s, by CA.\n# TYPE %s counter\n", name, help, name);
    for (i = 0; i <= HSMCAD_METRICS_CAS_MAX; i++) {
        uint64_t v = ld(refused ? &m->cas[i].refused : &m->cas[i].issued);

        if ((i >= nca && i != HSMCAD_METRICS_CAS_MAX) || (i == HSMCAD_METRICS_CAS_MAX && v == 0))
            continue;
        hsmcad_buf_printf(b, "%s{ca=\"%s\"} %llu\n", name, m->cas[i].id, (unsigned long long)v);
    }
}

char *
hsmcad_metrics_render(struct hsmcad_metrics *m, const struct hsmca_audit_stats *audit, int ready,
                      size_t *len_out)
{
    struct hsmcad_buf b = {NULL, 0, 0, 0};
    unsigned r, s, i, nca;

    b.cap = 8192;
    b.p = malloc(b.cap);
    if (b.p == NULL)
        return NULL;
    b.p[0] = '\0';
    build_info(&b);
    hsmcad_buf_printf(
        &b, "# HELP hsmca_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE hsmca_http_requests_total counter\n");
    for (r = 0; r <= m->nroutes; r++) {
        for (s = 0; s < NSTATUS; s++) {
            uint64_t v = ld(&m->req[r * NSTATUS + s]);
            char st[16];

            if (v == 0)
                continue;
            if (s == NSTATUS - 1)
                snprintf(st, sizeof(st), "other");
            else
                snprintf(st, sizeof(st), "%d", statuses[s]);
            hsmcad_buf_printf(&b, "hsmca_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                              r < m->nroutes ? m->routes[r] : "unmatched", st,
                              (unsigned long long)v);
        }
    }
    hist_render(&b, "hsmca_http_request_duration_seconds", "Time from request start to response.",
                m->lat.n, ld(&m->lat.sum_us));
    hist_render(&b, "hsmca_dac_sign_duration_seconds",
                "Time to build and sign one DAC, the wait for the token included.", m->sign.n,
                ld(&m->sign.sum_us));

    nca = __atomic_load_n(&m->nca, __ATOMIC_ACQUIRE);
    per_ca(&b, m, nca, "hsmca_dacs_issued_total", "DACs issued", 0);
    per_ca(&b, m, nca, "hsmca_dacs_refused_total", "DAC requests refused", 1);
    hsmcad_buf_str(&b, "# HELP hsmca_dacs_refused_by_code_total DAC requests refused, by problem "
                       "code (docs/api.md).\n"
                       "# TYPE hsmca_dacs_refused_by_code_total counter\n");
    for (i = 0; i <= CODES_MAX; i++) {
        uint64_t v = ld(&m->refused_by_code[i]);

        if (v != 0)
            hsmcad_buf_printf(&b, "hsmca_dacs_refused_by_code_total{code=\"%s\"} %llu\n",
                              i < CODES_MAX ? hsmca_err_code((enum hsmca_err)i) : "other",
                              (unsigned long long)v);
    }
    if (audit != NULL) {
        hsmcad_buf_printf(&b,
                          "# HELP hsmca_audit_entries_total Audit entries appended since start.\n"
                          "# TYPE hsmca_audit_entries_total counter\n"
                          "hsmca_audit_entries_total %llu\n",
                          (unsigned long long)audit->entries);
        hsmcad_buf_printf(
            &b,
            "# HELP hsmca_audit_commits_total Durable group commits of the audit writer.\n"
            "# TYPE hsmca_audit_commits_total counter\n"
            "hsmca_audit_commits_total %llu\n",
            (unsigned long long)audit->commits);
        hsmcad_buf_printf(
            &b,
            "# HELP hsmca_audit_checkpoints_total Signed audit checkpoints since start.\n"
            "# TYPE hsmca_audit_checkpoints_total counter\n"
            "hsmca_audit_checkpoints_total %llu\n",
            (unsigned long long)audit->checkpoints);
        hsmcad_buf_printf(&b,
                          "# HELP hsmca_audit_checkpoint_failures_total Checkpoint attempts that "
                          "failed (audit token away).\n"
                          "# TYPE hsmca_audit_checkpoint_failures_total counter\n"
                          "hsmca_audit_checkpoint_failures_total %llu\n"
                          "# HELP hsmca_audit_key_heals_total Times the audit key was made usable "
                          "again after its token came back.\n"
                          "# TYPE hsmca_audit_key_heals_total counter\n"
                          "hsmca_audit_key_heals_total %llu\n",
                          (unsigned long long)audit->checkpoint_failures,
                          (unsigned long long)audit->heals);
        batch_render(&b, audit);
        hist_render(&b, "hsmca_audit_commit_duration_seconds",
                    "Time of each group commit of the audit writer (WAL write and fdatasync); "
                    "every DAC waits for one.",
                    audit->commit_hist, audit->commit_us_sum);
    }
    hsmcad_buf_printf(
        &b,
        "# HELP hsmca_store_checkpoints_total WAL checkpoints that copied pages into the "
        "database.\n"
        "# TYPE hsmca_store_checkpoints_total counter\n"
        "hsmca_store_checkpoints_total %llu\n"
        "# HELP hsmca_store_wal_rewinds_total Checkpoints that held the writer briefly so the WAL "
        "starts again from its beginning.\n"
        "# TYPE hsmca_store_wal_rewinds_total counter\n"
        "hsmca_store_wal_rewinds_total %llu\n",
        (unsigned long long)ld(&m->ckpt_runs), (unsigned long long)ld(&m->ckpt_rewinds));
    hsmcad_buf_printf(&b,
                      "# HELP hsmca_ready 1 when the last readiness check passed.\n"
                      "# TYPE hsmca_ready gauge\n"
                      "hsmca_ready %d\n",
                      ready ? 1 : 0);
    if (b.err) {
        free(b.p);
        return NULL;
    }
    if (len_out != NULL)
        *len_out = b.len;
    return b.p;
}
