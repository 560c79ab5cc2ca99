/* SPDX-License-Identifier: Apache-2.0
 *
 * daemon.c -- small shared services of the daemon's state: per-thread read-only store handles,
 * the clock, and the per-client limiter of audited refusals (so a flood of refused
 * requests cannot bloat the audit log). No HTTP, no PKI.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "hsmca/audit.h"
#include "hsmca/limiter.h"
#include "hsmca/log.h"

#include "hsmcad.h"

#define LIM_SLOTS 4096
#define LIM_PROBE 8

#define LIM_CODES 16

/* Refusals only counted since the last summary entry, by code. */
struct lim_summary {
    uint64_t suppressed, clients, other;
    int64_t since_ms;
    struct {
        enum hsmca_err code;
        uint64_t n;
    } codes[LIM_CODES];
    unsigned ncodes;
};

/* The per-client counts are the library's refusal limiter (hsmca/limiter.h); the daemon keeps
 * only its summary, which counts by code over all clients. */
struct hsmcad_limiter {
    struct hsmca_limiter *lim;
    struct lim_summary sum;
};

int64_t
hsmcad_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct hsmca_store *
hsmcad_ro(struct hsmcad *d)
{
    struct hsmca_store *st = pthread_getspecific(d->ro_key);
    enum hsmca_err rc;

    if (st != NULL)
        return st;
    pthread_mutex_lock(&d->ro_mu);
    if (d->nro < HSMCAD_READERS_MAX) {
        rc = hsmca_store_open_readonly(d->cfg.store, &st);
        if (rc == HSMCA_OK) {
            d->ro[d->nro++] = st;
            pthread_setspecific(d->ro_key, st);
        } else {
            hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "store-readonly-open", "code=%s",
                      hsmca_err_code(rc));
            st = NULL;
        }
    }
    pthread_mutex_unlock(&d->ro_mu);
    return st;
}

/* Under lim_mu: count a refusal that gets no entry of its own (first: the client's first such
 * refusal in its minute). */
static void
suppress(struct hsmcad_limiter *l, int first, enum hsmca_err code, int64_t now)
{
    struct lim_summary *m = &l->sum;
    unsigned i;

    if (m->suppressed++ == 0)
        m->since_ms = now;
    if (first)
        m->clients++;
    for (i = 0; i < m->ncodes && m->codes[i].code != code; i++)
        ;
    if (i == m->ncodes && m->ncodes < LIM_CODES) {
        m->codes[i].code = code;
        m->codes[i].n = 0;
        m->ncodes++;
    }
    if (i < m->ncodes)
        m->codes[i].n++;
    else
        m->other++;
}

int
hsmcad_refusal_allowed(struct hsmcad *d, const char *client, enum hsmca_err code)
{
    int64_t now = hsmcad_now_ms();
    struct hsmca_limiter_slot s;
    int ok;

    pthread_mutex_lock(&d->lim_mu);
    if (d->lim == NULL) {
        d->lim = calloc(1, sizeof(*d->lim));
        if (d->lim != NULL &&
            hsmca_limiter_new(LIM_SLOTS, LIM_PROBE, d->cfg.refusals_per_minute,
                              d->cfg.refusal_entries_per_second, &d->lim->lim) != HSMCA_OK) {
            free(d->lim);
            d->lim = NULL;
        }
    }
    if (d->lim == NULL) {
        pthread_mutex_unlock(&d->lim_mu);
        return 1; /* fail towards auditing */
    }
    /* per client and minute, and for all clients together per second */
    ok = hsmca_limiter_admit(d->lim->lim, client, NULL, now, NULL, &s);
    if (!ok)
        suppress(d->lim, s.suppressed == 1, code, now);
    pthread_mutex_unlock(&d->lim_mu);
    return ok;
}

void
hsmcad_limiter_free(struct hsmcad_limiter *l)
{
    if (l == NULL)
        return;
    hsmca_limiter_free(l->lim);
    free(l);
}

static void
summary_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    (void)arg;
    (void)receipt;
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "refusal-summary-lost", "code=%s", hsmca_err_code(rc));
}

void
hsmcad_flush_refusals(struct hsmcad *d, int force)
{
    struct lim_summary m;
    json_t *det, *codes;
    char *txt = NULL;
    unsigned i;
    struct hsmca_audit_event ev;

    pthread_mutex_lock(&d->lim_mu);
    /* one summary a minute at most: when the minute of its first counted refusal has ended */
    if (d->lim == NULL || d->lim->sum.suppressed == 0 ||
        (!force && d->lim->sum.since_ms / 60000 == hsmcad_now_ms() / 60000)) {
        pthread_mutex_unlock(&d->lim_mu);
        return;
    }
    m = d->lim->sum;
    memset(&d->lim->sum, 0, sizeof(d->lim->sum));
    pthread_mutex_unlock(&d->lim_mu);
    codes = json_object();
    for (i = 0; codes != NULL && i < m.ncodes; i++)
        json_object_set_new(codes, hsmca_err_code(m.codes[i].code),
                            json_integer((json_int_t)m.codes[i].n));
    if (codes != NULL && m.other > 0)
        json_object_set_new(codes, "other", json_integer((json_int_t)m.other));
    det = json_pack("{s:I, s:I, s:o, s:I, s:I}", "suppressed", (json_int_t)m.suppressed, "clients",
                    (json_int_t)m.clients, "codes", codes, "since_ms", (json_int_t)m.since_ms,
                    "until_ms", (json_int_t)hsmcad_now_ms());
    if (det != NULL)
        txt = json_dumps(det, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(det);
    hsmca_audit_event_set(&ev, "hsmcad", "system", "http.refuse.summary", "", "refused", txt);
    if (txt == NULL || d->audit == NULL ||
        hsmca_audit_submit(d->audit, &ev, NULL, NULL, summary_done, NULL) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "refusal-summary-lost", "suppressed=%llu",
                  (unsigned long long)m.suppressed);
    free(txt);
}
