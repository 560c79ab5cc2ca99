/* SPDX-License-Identifier: Apache-2.0
 *
 * daemon.c -- small shared services of the daemon's state: per-thread read-only store handles,
 * the CA table, the clock, and the per-client limiter of audited refusals (so a flood of refused
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

struct hsmcad_ca *
hsmcad_ca_find(struct hsmcad *d, const char *id)
{
    unsigned i, n = __atomic_load_n(&d->ncas, __ATOMIC_ACQUIRE);

    for (i = 0; i < n; i++) {
        if (strcmp(d->cas[i].id, id) == 0)
            return &d->cas[i];
    }
    return NULL;
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
    memset(&ev, 0, sizeof(ev));
    ev.actor = "hsmcad";
    ev.role = "system";
    ev.action = "http.refuse.summary";
    ev.target = "";
    ev.outcome = "refused";
    ev.detail_json = txt;
    ev.kid = "";
    if (txt == NULL || d->audit == NULL ||
        hsmca_audit_submit(d->audit, &ev, NULL, NULL, summary_done, NULL) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "refusal-summary-lost", "suppressed=%llu",
                  (unsigned long long)m.suppressed);
    free(txt);
}

/* Under cas_mu. quiet: an absent token is not logged (tokens.c re-tries every second and logs
 * the fault once). */
static struct hsmca_token *
token_locked(struct hsmcad *d, const char *label, const char *uri, int quiet)
{
    struct hsmcad_tok *t;
    char u[HSMCA_URI_MAX + 1];
    unsigned i;
    enum hsmca_err rc;

    for (i = 0; i < d->ntoks; i++) {
        if (strcmp(d->toks[i].label, label) == 0)
            return d->toks[i].tok;
    }
    if (d->ntoks >= HSMCAD_TOKENS_MAX || strlen(label) > HSMCA_TOKEN_LABEL_MAX)
        return NULL;
    if (uri == NULL) {
        snprintf(u, sizeof(u), "pkcs11:token=%s", label);
        uri = u;
    }
    t = &d->toks[d->ntoks];
    rc = hsmca_token_open(d->p11, uri, &t->tok);
    if (rc != HSMCA_OK) {
        if (!quiet)
            hsmca_log(HSMCA_LOG_WARN, "hsmcad", "token-absent", "label=%s code=%s", label,
                      hsmca_err_code(rc));
        return NULL;
    }
    snprintf(t->label, sizeof(t->label), "%s", label);
    d->ntoks++;
    return t->tok;
}

struct hsmca_token *
hsmcad_token(struct hsmcad *d, const char *label, const char *uri)
{
    struct hsmca_token *tok;

    pthread_mutex_lock(&d->cas_mu);
    tok = token_locked(d, label, uri, 0);
    pthread_mutex_unlock(&d->cas_mu);
    return tok;
}

struct hsmca_token *
hsmcad_token_quiet(struct hsmcad *d, const char *label, const char *uri)
{
    struct hsmca_token *tok;

    pthread_mutex_lock(&d->cas_mu);
    tok = token_locked(d, label, uri, 1);
    pthread_mutex_unlock(&d->cas_mu);
    return tok;
}

enum hsmca_err
hsmcad_ca_add(struct hsmcad *d, const struct hsmca_ca_rec *ca)
{
    struct hsmca_uri u;
    struct hsmcad_ca *c;
    enum hsmca_err rc = HSMCA_OK;
    unsigned i;

    pthread_mutex_lock(&d->cas_mu);
    for (i = 0; i < d->ncas; i++) {
        if (strcmp(d->cas[i].id, ca->id) == 0)
            goto out; /* known already */
    }
    if (d->ncas >= HSMCAD_CAS_MAX) {
        rc = HSMCA_E_TOO_LARGE;
        goto out;
    }
    c = &d->cas[d->ncas];
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", ca->id);
    snprintf(c->kind, sizeof(c->kind), "%s", ca->kind);
    snprintf(c->token_uri, sizeof(c->token_uri), "%s", ca->token_uri);
    snprintf(c->key_uri, sizeof(c->key_uri), "%s", ca->key_uri);
    if (hsmca_uri_parse(ca->token_uri, strlen(ca->token_uri), &u) == HSMCA_OK &&
        (u.have & HSMCA_URI_HAVE_TOKEN) != 0)
        c->tok = token_locked(d, u.token, ca->token_uri, 0);
    __atomic_store_n(&d->ncas, d->ncas + 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&d->cas_mu);
    return rc;
}
