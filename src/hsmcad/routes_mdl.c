/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_mdl.c -- mobile driving licences in the daemon (docs/mdl.md): the registry of IACAs and
 * document signers, the signing windows the quorum opens on a DS (its token stays logged in until
 * the window's time or count runs out, it is deactivated, or the daemon stops), and the routes.
 * POST /v1/cas/{ds}/mso-signatures checks the MSO (mdl_cose.c), takes a slot of the window and of
 * the DS's quotas (policies/quotas.json, as for DACs), signs the COSE Sig_structure's digest in
 * the token, and answers the IssuerAuth only once its audit entry (mso.sign, with the payload's
 * SHA-256) is durable.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/issue.h"
#include "hsmca/log.h"
#include "hsmca/sizes.h"
#include "hsmca/store_mdl.h"
#include "hsmca/store_quota.h"
#include "hsmca/store_windows.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "hsmcad.h"
#include "hsmcad_mdl.h"
#include "problem.h"
#include "routes.h"

#define MDL_CAS_MAX 128
#define DRAIN_WAIT_MS 5000
#define SIGNED_SKEW_S 86400 /* an MSO's "signed" lies within a day of now */
#define MDL_BLOCK 64        /* the most of a shared count one node reserves at once */
#define MDL_BLOCK_ONE 1024  /* the same on SQLite (one node) */

struct mdl_ca {
    char id[HSMCA_CA_ID_MAX + 1];
    char kind[8];
    char parent[HSMCA_CA_ID_MAX + 1];
    char token_uri[HSMCA_URI_MAX + 1];
    char key_uri[HSMCA_URI_MAX + 1];
    unsigned char *cert_der;
    size_t cert_len;
    int64_t not_before, not_after; /* seconds */
    int revoked;
    /* the window (DS with a key in a token) */
    struct hsmca_token *tok;
    struct hsmca_key *key;
    int64_t until_ms;
    uint64_t max, used; /* used: this node's signatures in the window */
    unsigned inflight;
    /* the window in the store (mdl_windows, store_windows.h), shared by the nodes: its id, this
     * node's reserved and unused part of its count, and the count every node had reserved at the
     * last reservation */
    char win[HSMCA_WINDOW_ID_MAX + 1];
    uint64_t blk, win_used;
    /* quotas: this node's blocks of the DS's counts in the store (store_quota.h) */
    struct hsmca_quota_blk qmin, qday;
};

struct hsmcad_mdl {
    pthread_mutex_t mu;
    pthread_cond_t idle;
    struct hsmca_mdl_profile iaca, ds;
    int have_iaca, have_ds;
    unsigned n;
    struct mdl_ca *cas[MDL_CAS_MAX];
    /* the read-write handle of the shared windows and quotas, opened at the first use; one user
     * at a time (st_mu, taken after mu) */
    pthread_mutex_t st_mu;
    struct hsmca_store *wst;
};

static struct mdl_ca *
find_locked(struct hsmcad_mdl *m, const char *id)
{
    unsigned i;

    for (i = 0; i < m->n; i++)
        if (strcmp(m->cas[i]->id, id) == 0)
            return m->cas[i];
    return NULL;
}

static int64_t
asn1_secs(const ASN1_TIME *t)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

static enum hsmca_err
add_locked(struct hsmcad_mdl *m, const struct hsmca_mdl_ca_rec *r)
{
    struct mdl_ca *c;
    const unsigned char *p = r->cert_der;
    X509 *x;

    if (find_locked(m, r->id) != NULL)
        return HSMCA_OK;
    if (m->n >= MDL_CAS_MAX)
        return HSMCA_E_TOO_LARGE;
    x = d2i_X509(NULL, &p, (long)r->cert_len);
    c = calloc(1, sizeof(*c));
    if (x == NULL || c == NULL) {
        X509_free(x);
        free(c);
        return x == NULL ? HSMCA_E_INTERNAL : HSMCA_E_NOMEM;
    }
    snprintf(c->id, sizeof(c->id), "%s", r->id);
    snprintf(c->kind, sizeof(c->kind), "%s", r->kind);
    snprintf(c->parent, sizeof(c->parent), "%s", r->parent);
    snprintf(c->token_uri, sizeof(c->token_uri), "%s", r->token_uri);
    snprintf(c->key_uri, sizeof(c->key_uri), "%s", r->key_uri);
    c->cert_der = malloc(r->cert_len);
    if (c->cert_der == NULL) {
        X509_free(x);
        free(c);
        return HSMCA_E_NOMEM;
    }
    memcpy(c->cert_der, r->cert_der, r->cert_len);
    c->cert_len = r->cert_len;
    c->not_before = asn1_secs(X509_get0_notBefore(x));
    c->not_after = asn1_secs(X509_get0_notAfter(x));
    c->revoked = r->revoked;
    hsmca_quota_blk_init(&c->qmin);
    hsmca_quota_blk_init(&c->qday);
    X509_free(x);
    m->cas[m->n++] = c;
    return HSMCA_OK;
}

static enum hsmca_err
load_one(void *arg, const struct hsmca_mdl_ca_rec *r)
{
    return add_locked(arg, r);
}

enum hsmca_err
hsmcad_mdl_start(struct hsmcad *d)
{
    struct hsmcad_mdl *m = calloc(1, sizeof(*m));
    struct hsmca_store *ro;
    char path[HSMCA_PATH_MAX + 32], why[256];
    enum hsmca_err rc = HSMCA_OK;
    int i;

    if (m == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->idle, NULL);
    pthread_mutex_init(&m->st_mu, NULL);
    d->mdl = m;
    for (i = 0; i < 2 && d->cfg.profiles_dir[0] != '\0'; i++) {
        struct hsmca_mdl_profile *p = i == 0 ? &m->iaca : &m->ds;

        snprintf(path, sizeof(path), "%s/%s", d->cfg.profiles_dir,
                 i == 0 ? "mdl-iaca.json" : "mdl-ds.json");
        rc = hsmca_mdl_profile_load(path, p, why, sizeof(why));
        if (rc == HSMCA_E_IO) {
            rc = HSMCA_OK; /* no mDL profile: no mDL CA can be created */
            continue;
        }
        if (rc != HSMCA_OK || p->type != (i == 0 ? HSMCA_MDL_IACA : HSMCA_MDL_DS)) {
            hsmca_log(HSMCA_LOG_ERROR, "mdl", "profile-refused", "path=%s code=%s reason=\"%s\"",
                      path, hsmca_err_code(rc != HSMCA_OK ? rc : HSMCA_E_PROFILE_INVALID), why);
            return rc != HSMCA_OK ? rc : HSMCA_E_PROFILE_INVALID;
        }
        if (i == 0)
            m->have_iaca = 1;
        else
            m->have_ds = 1;
    }
    ro = hsmcad_ro(d);
    if (ro != NULL) {
        pthread_mutex_lock(&m->mu);
        rc = hsmca_store_mdl_ca_list(ro, load_one, m);
        pthread_mutex_unlock(&m->mu);
    }
    if (rc == HSMCA_OK)
        hsmca_log(HSMCA_LOG_INFO, "mdl", "started", "cas=%u iaca_profile=%d ds_profile=%d", m->n,
                  m->have_iaca, m->have_ds);
    return rc;
}

/* The shared windows' and quotas' handle (opened at the first use); NULL with *rc on failure. */
static struct hsmca_store *
mdl_store(struct hsmcad *d, enum hsmca_err *rc)
{
    struct hsmcad_mdl *m = d->mdl;
    struct hsmca_store *st;

    pthread_mutex_lock(&m->st_mu);
    *rc = HSMCA_OK;
    if (m->wst == NULL)
        *rc = hsmca_store_open(d->cfg.store, &m->wst);
    st = m->wst;
    pthread_mutex_unlock(&m->st_mu);
    return st;
}

/* Under mu: give back what c holds unused of its shared window's count and of its quotas. */
static void
give_back_locked(struct hsmcad *d, struct mdl_ca *c)
{
    struct hsmcad_mdl *m = d->mdl;
    struct hsmca_quota_blk *bs[2] = {&c->qmin, &c->qday};
    const char periods[2] = {HSMCA_QUOTA_MINUTE, HSMCA_QUOTA_DAY};
    struct hsmca_store *st;
    enum hsmca_err rc = HSMCA_OK;
    unsigned i;

    for (i = 0; i < 2; i++)
        while (bs[i]->busy)
            pthread_cond_wait(&m->idle, &m->mu);
    if ((c->win[0] == '\0' || c->blk == 0) && c->qmin.n == 0 && c->qday.n == 0)
        return;
    st = mdl_store(d, &rc);
    pthread_mutex_lock(&m->st_mu);
    if (rc == HSMCA_OK && c->win[0] != '\0' && c->blk > 0)
        rc = hsmca_store_mdl_window_release(st, c->win, c->blk);
    for (i = 0; i < 2 && rc == HSMCA_OK; i++)
        if (bs[i]->n > 0)
            rc = hsmca_store_quota_release(st, c->id, periods[i], bs[i]->start, bs[i]->n);
    pthread_mutex_unlock(&m->st_mu);
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "mdl", "window-rest-kept", "ca=%s code=%s", c->id,
                  hsmca_err_code(rc));
    c->blk = 0;
    for (i = 0; i < 2; i++) {
        bs[i]->n = 0;
        bs[i]->refused = -1;
    }
}

/* Close c's window: wait (bounded) for signatures in flight, give back what this node reserved
 * and did not sign, free the key, log the token out. */
static void
close_locked(struct hsmcad *d, struct mdl_ca *c, const char *why)
{
    struct hsmcad_mdl *m = d->mdl;
    struct timespec ts;
    struct hsmca_audit_event ev;
    char target[HSMCA_CA_ID_MAX + 8], detail[160];

    if (c->key == NULL)
        return;
    hsmca_deadline_us(&ts, (uint64_t)DRAIN_WAIT_MS * 1000);
    while (c->inflight > 0)
        if (pthread_cond_timedwait(&m->idle, &m->mu, &ts) != 0)
            break;
    give_back_locked(d, c);
    c->win[0] = '\0';
    hsmca_key_free(c->key);
    c->key = NULL;
    if (c->tok != NULL && hsmca_token_logout(c->tok) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "mdl", "logout-failed", "ca=%s", c->id);
    c->tok = NULL;
    hsmca_log(HSMCA_LOG_INFO, "mdl", "window-closed", "ca=%s why=%s used=%llu", c->id, why,
              (unsigned long long)c->used);
    if (d->audit == NULL)
        return;
    snprintf(target, sizeof(target), "ca/%s", c->id);
    snprintf(detail, sizeof(detail), "{\"reason\":\"%s\",\"signatures\":%llu}", why,
             (unsigned long long)c->used);
    hsmca_audit_event_set(&ev, "system", "system", "mdl.window.end", target, "ok", detail);
    if (hsmca_audit_append(d->audit, &ev, NULL, NULL, NULL) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "mdl", "audit-failed", "ca=%s action=mdl.window.end", c->id);
}

void
hsmcad_mdl_stop(struct hsmcad *d)
{
    struct hsmcad_mdl *m = d->mdl;
    unsigned i;

    if (m == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < m->n; i++) {
        close_locked(d, m->cas[i], "stop");
        free(m->cas[i]->cert_der);
        free(m->cas[i]);
    }
    m->n = 0;
    pthread_mutex_unlock(&m->mu);
    hsmca_store_close(m->wst);
    pthread_mutex_destroy(&m->st_mu);
    pthread_cond_destroy(&m->idle);
    pthread_mutex_destroy(&m->mu);
    free(m);
    d->mdl = NULL;
}

const struct hsmca_mdl_profile *
hsmcad_mdl_profile(struct hsmcad *d, enum hsmca_mdl_type t)
{
    if (d->mdl == NULL)
        return NULL;
    if (t == HSMCA_MDL_IACA)
        return d->mdl->have_iaca ? &d->mdl->iaca : NULL;
    return d->mdl->have_ds ? &d->mdl->ds : NULL;
}

int
hsmcad_mdl_known(struct hsmcad *d, const char *ca_id)
{
    int known;

    if (d->mdl == NULL || ca_id == NULL)
        return 0;
    pthread_mutex_lock(&d->mdl->mu);
    known = find_locked(d->mdl, ca_id) != NULL;
    pthread_mutex_unlock(&d->mdl->mu);
    return known;
}

enum hsmca_err
hsmcad_mdl_created(void *arg, const struct hsmca_mdl_ca_rec *rec)
{
    struct hsmcad *d = arg;
    enum hsmca_err rc;

    if (d->mdl == NULL)
        return HSMCA_E_INTERNAL;
    pthread_mutex_lock(&d->mdl->mu);
    rc = add_locked(d->mdl, rec);
    pthread_mutex_unlock(&d->mdl->mu);
    return rc;
}

/*
 * Tie c's next window to the shared window id: open it (until_ms, max) in the store, or with join
 * take its end and count from the store. Under mu.
 */
static enum hsmca_err
window_bind_locked(struct hsmcad *d, struct mdl_ca *c, const char *id, int join, int64_t *until_ms,
                   uint64_t *max, uint64_t *used)
{
    struct hsmcad_mdl *m = d->mdl;
    struct hsmca_window_rec w;
    struct hsmca_store *st;
    int64_t now = hsmcad_now_ms();
    enum hsmca_err rc;

    if (strlen(id) == 0 || strlen(id) > HSMCA_WINDOW_ID_MAX)
        return HSMCA_E_INVALID_ARG;
    st = mdl_store(d, &rc);
    if (rc != HSMCA_OK)
        return rc;
    memset(&w, 0, sizeof(w));
    pthread_mutex_lock(&m->st_mu);
    if (!join) {
        snprintf(w.id, sizeof(w.id), "%s", id);
        snprintf(w.ca, sizeof(w.ca), "%s", c->id);
        w.until_ms = *until_ms;
        w.max_dacs = *max;
        w.opened_ms = now;
        rc = *until_ms > now && *max > 0 ? hsmca_store_mdl_window_open(st, &w)
                                         : HSMCA_E_ISSUE_WINDOW_INVALID;
    }
    if (rc == HSMCA_OK)
        rc = hsmca_store_mdl_window_get(st, id, &w);
    pthread_mutex_unlock(&m->st_mu);
    if (rc != HSMCA_OK)
        return rc;
    if (strcmp(w.ca, c->id) != 0)
        return HSMCA_E_ISSUE_WINDOW_INVALID;
    if (now >= w.until_ms)
        return HSMCA_E_ISSUE_WINDOW_EXPIRED;
    if (w.used >= w.max_dacs)
        return HSMCA_E_ISSUE_WINDOW_EXHAUSTED;
    *until_ms = w.until_ms;
    *max = w.max_dacs;
    *used = w.used;
    return HSMCA_OK;
}

static enum hsmca_err
activate(struct hsmcad *d, const char *ca_id, const char *window_id, int join, int64_t until_ms,
         uint64_t max)
{
    struct hsmcad_mdl *m = d->mdl;
    struct mdl_ca *c;
    struct hsmca_uri u;
    struct hsmca_token *tok;
    struct hsmca_key *key = NULL;
    uint64_t used = 0;
    enum hsmca_err rc;

    if (m == NULL)
        return HSMCA_E_NOT_FOUND;
    pthread_mutex_lock(&m->mu);
    c = find_locked(m, ca_id);
    if (c == NULL) { /* made by another node since this one started: the store has it */
        struct hsmca_store *ro = hsmcad_ro(d);
        struct hsmca_mdl_ca_rec rec;

        memset(&rec, 0, sizeof(rec));
        rc = ro != NULL ? hsmca_store_mdl_ca_get(ro, ca_id, &rec) : HSMCA_E_NOT_FOUND;
        if (rc == HSMCA_OK)
            rc = add_locked(m, &rec);
        hsmca_mdl_ca_rec_clear(&rec);
        c = rc == HSMCA_OK ? find_locked(m, ca_id) : NULL;
    }
    if (c == NULL) {
        rc = HSMCA_E_NOT_FOUND;
        goto out;
    }
    if (strcmp(c->kind, "ds") != 0 || c->key_uri[0] == '\0') {
        rc = HSMCA_E_MDL_NOT_DS;
        goto out;
    }
    if (c->revoked) {
        rc = HSMCA_E_REVOKE_CA_REVOKED;
        goto out;
    }
    if (c->key != NULL) {
        rc = HSMCA_E_ISSUE_CA_ACTIVE;
        goto out;
    }
    if (window_id != NULL) {
        rc = window_bind_locked(d, c, window_id, join, &until_ms, &max, &used);
        if (rc != HSMCA_OK)
            goto out;
    }
    rc = hsmca_uri_parse(c->token_uri, strlen(c->token_uri), &u);
    if (rc != HSMCA_OK)
        goto out;
    tok = hsmca_ca_token(d->cas, u.token, c->token_uri, 0);
    if (tok == NULL) {
        rc = HSMCA_E_TOKEN_NOT_FOUND;
        goto out;
    }
    rc = hsmca_token_find_key(tok, c->key_uri, &key);
    if (rc != HSMCA_OK)
        goto out;
    c->tok = tok;
    c->key = key;
    c->until_ms = until_ms;
    c->max = max;
    c->used = 0;
    snprintf(c->win, sizeof(c->win), "%s", window_id != NULL ? window_id : "");
    c->blk = 0;
    c->win_used = used;
    hsmca_log(HSMCA_LOG_INFO, "mdl", "window-opened", "ca=%s until_ms=%lld max=%llu window=%s",
              ca_id, (long long)until_ms, (unsigned long long)max,
              window_id != NULL ? window_id : "-");
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

enum hsmca_err
hsmcad_mdl_activate(void *arg, const char *ca_id, int64_t until_ms, uint64_t max)
{
    return activate(arg, ca_id, NULL, 0, until_ms, max);
}

enum hsmca_err
hsmcad_mdl_activate_shared(void *arg, const char *ca_id, const char *window_id, int join,
                           int64_t until_ms, uint64_t max)
{
    return activate(arg, ca_id, window_id, join, until_ms, max);
}

void
hsmcad_mdl_revoked(void *arg, const char *ca_id)
{
    struct hsmcad *d = arg;
    struct mdl_ca *c;

    if (d->mdl == NULL)
        return;
    pthread_mutex_lock(&d->mdl->mu);
    c = find_locked(d->mdl, ca_id);
    if (c != NULL) {
        c->revoked = 1;
        close_locked(d, c, "revoked");
    }
    { /* the other nodes' windows of this DS end too (at their next block) */
        enum hsmca_err rc = HSMCA_OK;
        struct hsmca_store *st = mdl_store(d, &rc);

        if (rc == HSMCA_OK) {
            pthread_mutex_lock(&d->mdl->st_mu);
            rc = hsmca_store_mdl_windows_end(st, ca_id, hsmcad_now_ms());
            pthread_mutex_unlock(&d->mdl->st_mu);
        }
        if (rc != HSMCA_OK)
            hsmca_log(HSMCA_LOG_WARN, "mdl", "windows-end-failed", "ca=%s code=%s", ca_id,
                      hsmca_err_code(rc));
    }
    pthread_mutex_unlock(&d->mdl->mu);
}

/* ---- POST /v1/cas/{ds}/mso-signatures ---- */

struct sign_job {
    struct hsmcad_req *r;
    char ds[HSMCA_CA_ID_MAX + 1];
    unsigned char *cose;
    size_t cose_len;
    char payload_hex[HSMCA_SHA256_HEX_SIZE];
    int raw; /* answer application/cose */
};

static char *
b64(const unsigned char *in, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);

    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

static void
sign_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct sign_job *j = arg;
    struct hsmcad_req *r = j->r;

    if (rc != HSMCA_OK) {
        /* never hand out a signature the log does not hold */
        hsmcad_reply_problem(r, rc, "the signature was not recorded");
    } else {
        char hex[HSMCA_SHA256_HEX_SIZE];

        hsmcad_req_receipt(r, receipt);
        hsmca_hex_encode(receipt->entry_hash, sizeof(receipt->entry_hash), hex, sizeof(hex));
        if (j->raw) {
            hsmcad_reply(r, 200, "application/cose; cose-type=\"cose-sign1\"", (char *)j->cose,
                         j->cose_len);
            j->cose = NULL;
        } else {
            char *s = b64(j->cose, j->cose_len);

            hsmcad_reply_json(r, 200,
                              s == NULL ? NULL
                                        : json_pack("{s:s, s:s, s:s, s:{s:I, s:s}}", "ds", j->ds,
                                                    "issuer_auth", s, "payload_sha256",
                                                    j->payload_hex, "audit", "seq",
                                                    (json_int_t)receipt->seq, "entry_hash", hex));
            free(s);
        }
    }
    hsmcad_req_engine_audited(r);
    free(j->cose);
    free(j);
    hsmcad_req_resume(r);
}

/* A slot of c's quota of period (limit > 0) at now_ms, under mu (dropped while the store
 * reserves a block): its bucket in *bucket. */
static enum hsmca_err
quota_locked(struct hsmcad *d, struct mdl_ca *c, struct hsmca_quota_blk *b, char period,
             uint64_t limit, int64_t now_ms, int64_t *bucket)
{
    struct hsmca_store *st;
    enum hsmca_err rc;

    if (!b->busy && b->n > 0 && b->start == hsmca_quota_bucket(period, now_ms)) {
        b->n--;
        *bucket = b->start;
        return HSMCA_OK;
    }
    st = mdl_store(d, &rc);
    if (rc != HSMCA_OK)
        return rc;
    return hsmca_quota_take(b, &d->mdl->mu, &d->mdl->idle, st, &d->mdl->st_mu, c->id, period, limit,
                            hsmca_store_is_pg(st) ? MDL_BLOCK : MDL_BLOCK_ONE, now_ms, bucket);
}

/* A slot of c's shared window (under mu): from this node's block, or a block reserved in the
 * store (an eighth of what the window has left, 1..MDL_BLOCK, as for DAC windows). */
static enum hsmca_err
window_slot_locked(struct hsmcad *d, struct mdl_ca *c, int64_t now_ms)
{
    struct hsmca_store *st;
    uint64_t left, want, got = 0, used = 0;
    enum hsmca_err rc;

    if (c->blk > 0) {
        c->blk--;
        return HSMCA_OK;
    }
    st = mdl_store(d, &rc);
    if (rc != HSMCA_OK)
        return rc;
    left = c->max > c->win_used ? c->max - c->win_used : 1;
    want = left / 8 < 1 ? 1 : left / 8;
    if (want > (hsmca_store_is_pg(st) ? MDL_BLOCK : MDL_BLOCK_ONE))
        want = hsmca_store_is_pg(st) ? MDL_BLOCK : MDL_BLOCK_ONE;
    pthread_mutex_lock(&d->mdl->st_mu);
    rc = hsmca_store_mdl_window_reserve(st, c->win, want, now_ms, &got, &used);
    pthread_mutex_unlock(&d->mdl->st_mu);
    if (rc == HSMCA_E_ISSUE_WINDOW_EXHAUSTED) {
        c->win_used = c->max; /* every node's share is taken: the window ends */
        close_locked(d, c, "exhausted");
    } else if (rc == HSMCA_E_ISSUE_WINDOW_EXPIRED) {
        close_locked(d, c, "expired");
    }
    if (rc != HSMCA_OK)
        return rc;
    c->blk = got - 1;
    c->win_used = used;
    return HSMCA_OK;
}

/* Take one slot of c's window and quotas at now_ms (under mu, which a reservation in the store
 * may drop for a while). */
static enum hsmca_err
slot_locked(struct hsmcad *d, struct mdl_ca *c, int64_t now_ms)
{
    uint64_t per_min = 0, per_day = 0;
    int64_t qm = -1, qd = -1;
    enum hsmca_err rc = HSMCA_OK;

    if (c->revoked)
        return HSMCA_E_REVOKE_CA_REVOKED;
    if (c->key == NULL)
        return HSMCA_E_ISSUE_CA_INACTIVE;
    if (now_ms >= c->until_ms) {
        close_locked(d, c, "expired");
        return HSMCA_E_ISSUE_WINDOW_EXPIRED;
    }
    if (c->win[0] == '\0' && c->used >= c->max) {
        close_locked(d, c, "exhausted");
        return HSMCA_E_ISSUE_WINDOW_EXHAUSTED;
    }
    /* the quotas (counted in the store for every node), then the window's shared count */
    if (d->quotas != NULL)
        hsmca_issue_quotas_get(d->quotas, c->id, &per_min, &per_day);
    if (per_min > 0)
        rc = quota_locked(d, c, &c->qmin, HSMCA_QUOTA_MINUTE, per_min, now_ms, &qm);
    if (rc == HSMCA_OK && per_day > 0)
        rc = quota_locked(d, c, &c->qday, HSMCA_QUOTA_DAY, per_day, now_ms, &qd);
    if (rc == HSMCA_OK && (c->key == NULL || c->revoked))
        rc = HSMCA_E_ISSUE_CA_INACTIVE; /* closed while the store reserved */
    if (rc == HSMCA_OK && c->win[0] != '\0')
        rc = window_slot_locked(d, c, now_ms);
    if (rc != HSMCA_OK) {
        hsmca_quota_blk_give(&c->qmin, qm);
        hsmca_quota_blk_give(&c->qday, qd);
        if (c->key == NULL) /* the window closed meanwhile: these go back to the store too */
            give_back_locked(d, c);
        return rc;
    }
    c->used++;
    c->inflight++;
    return HSMCA_OK;
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* The request: MSO bytes (application/cbor, or JSON {"mso": base64}) or a tbs digest (JSON
 * {"tbs_sha256": 64 lower-case hex}). */
static enum hsmca_err
parse_body(struct hsmcad_req *r, unsigned char **mso, size_t *mso_len,
           unsigned char dg[HSMCA_SHA256_LEN], int *digest_only, const char **why)
{
    const unsigned char *b;
    size_t blen, i;
    json_t *j = NULL, *jm = NULL, *jd = NULL;
    json_error_t jerr;
    enum hsmca_err rc = HSMCA_E_HTTP_BAD_REQUEST;

    *mso = NULL;
    *digest_only = 0;
    b = hsmcad_req_body(r, &blen);
    if (strcmp(hsmcad_req_ctype(r), "application/cbor") == 0) {
        if (blen == 0 || blen > HSMCA_MDL_MSO_MAX) {
            *why = "the body is 1..65536 bytes of CBOR";
            return HSMCA_E_MDL_MSO_INVALID;
        }
        *mso = malloc(blen);
        if (*mso == NULL)
            return HSMCA_E_NOMEM;
        memcpy(*mso, b, blen);
        *mso_len = blen;
        return HSMCA_OK;
    }
    *why = "expected {\"mso\": base64 CBOR} or {\"tbs_sha256\": 64 hex}";
    j = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL ||
        json_unpack_ex(j, &jerr, JSON_STRICT, "{s?o, s?o}", "mso", &jm, "tbs_sha256", &jd) != 0 ||
        (jm == NULL) == (jd == NULL))
        goto out;
    if (jd != NULL) {
        const char *h = json_string_value(jd);

        if (h == NULL || strlen(h) != HSMCA_SHA256_HEX_LEN)
            goto out;
        for (i = 0; i < HSMCA_SHA256_LEN; i++) {
            int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);

            if (hi < 0 || lo < 0)
                goto out;
            dg[i] = (unsigned char)(hi << 4 | lo);
        }
        *digest_only = 1;
        rc = HSMCA_OK;
    } else {
        const char *s = json_string_value(jm);
        size_t sl = s != NULL ? strlen(s) : 0;
        int n;

        if (s == NULL || sl == 0 || sl % 4 != 0 || sl / 4 * 3 > HSMCA_MDL_MSO_MAX + 2)
            goto out;
        *mso = malloc(sl / 4 * 3 + 1);
        if (*mso == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        n = EVP_DecodeBlock(*mso, (const unsigned char *)s, (int)sl);
        if (n < 0) {
            free(*mso);
            *mso = NULL;
            goto out;
        }
        if (sl >= 1 && s[sl - 1] == '=')
            n--;
        if (sl >= 2 && s[sl - 2] == '=')
            n--;
        *mso_len = (size_t)n;
        rc = HSMCA_OK;
    }
out:
    json_decref(j);
    return rc;
}

void
hsmcad_h_mso_sign(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmcad_mdl *m = d->mdl;
    const struct hsmcad_principal *who = hsmcad_req_principal(r);
    const char *id = hsmcad_req_param(r, 0), *why = NULL;
    unsigned char *mso = NULL, *payload = NULL, dg[HSMCA_SHA256_LEN], sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t mso_len = 0, payload_len = 0, sig_len = 0;
    struct hsmca_mdl_mso_info info;
    struct sign_job *j = NULL;
    struct hsmca_audit_event ev;
    struct mdl_ca *c;
    struct hsmca_key *key;
    char mwhy[200], target[HSMCA_CA_ID_MAX + 8], *detail = NULL, kid[2 * HSMCA_KEY_ID_MAX + 1] = "";
    int digest_only = 0, slot = 0;
    int64_t now_ms = hsmcad_now_ms();
    enum hsmca_err rc;

    memset(&info, 0, sizeof(info));
    if (m == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_READY, NULL);
        return;
    }
    pthread_mutex_lock(&m->mu);
    c = find_locked(m, id);
    rc = c == NULL                                             ? HSMCA_E_HTTP_CA_NOT_FOUND
         : strcmp(c->kind, "ds") != 0 || c->key_uri[0] == '\0' ? HSMCA_E_MDL_NOT_DS
                                                               : HSMCA_OK;
    pthread_mutex_unlock(&m->mu);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    rc = parse_body(r, &mso, &mso_len, dg, &digest_only, &why);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, why);
        goto out;
    }
    if (!digest_only) {
        rc = hsmca_mdl_mso_check(mso, mso_len, &payload, &payload_len, &info, mwhy, sizeof(mwhy));
        if (rc != HSMCA_OK) {
            hsmcad_reply_problem(r, rc, mwhy);
            goto out;
        }
        pthread_mutex_lock(&m->mu);
        if (info.signed_s < c->not_before || info.signed_s > c->not_after ||
            info.valid_until_s > c->not_after + (int64_t)HSMCA_MDL_DS_MAX_DAYS * 86400)
            rc = HSMCA_E_MDL_MSO_VALIDITY;
        pthread_mutex_unlock(&m->mu);
        if (rc == HSMCA_OK && (info.signed_s > now_ms / 1000 + SIGNED_SKEW_S ||
                               info.signed_s < now_ms / 1000 - SIGNED_SKEW_S))
            rc = HSMCA_E_MDL_MSO_VALIDITY;
        if (rc != HSMCA_OK) {
            hsmcad_reply_problem(r, rc,
                                 "validityInfo.signed must lie within the DS certificate's "
                                 "validity and within a day of now");
            goto out;
        }
        rc = hsmca_mdl_tbs_digest(payload, payload_len, dg);
        if (rc != HSMCA_OK) {
            hsmcad_reply_problem(r, rc, NULL);
            goto out;
        }
    }
    if (d->audit == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_READY, NULL);
        goto out;
    }
    pthread_mutex_lock(&m->mu);
    rc = slot_locked(d, c, now_ms);
    key = c->key;
    pthread_mutex_unlock(&m->mu);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        goto out;
    }
    slot = 1;
    /* the key stays valid while inflight > 0: a closing window waits for it */
    rc = hsmca_key_sign_digest(key, dg, sizeof(dg), sig, sizeof(sig), &sig_len);
    {
        size_t idl = 0;
        const unsigned char *kidb = hsmca_key_id(key, &idl);

        if (kidb != NULL && idl <= HSMCA_KEY_ID_MAX)
            hsmca_hex_encode(kidb, idl, kid, sizeof(kid));
    }
    j = calloc(1, sizeof(*j));
    if (rc == HSMCA_OK && j == NULL)
        rc = HSMCA_E_NOMEM;
    if (rc == HSMCA_OK)
        rc = hsmca_mdl_sign1_assemble(digest_only ? NULL : payload, payload_len, c->cert_der,
                                      c->cert_len, sig, sig_len, &j->cose, &j->cose_len);
    pthread_mutex_lock(&m->mu);
    c->inflight--;
    pthread_cond_broadcast(&m->idle);
    pthread_mutex_unlock(&m->mu);
    slot = 0;
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        goto out;
    }
    j->r = r;
    snprintf(j->ds, sizeof(j->ds), "%s", id);
    j->raw =
        hsmcad_req_accepts(r, "application/cose") && !hsmcad_req_accepts(r, "application/json");
    if (digest_only)
        hsmca_hex_encode(dg, sizeof(dg), j->payload_hex, sizeof(j->payload_hex));
    else
        hsmca_hex_encode(info.payload_sha256, sizeof(info.payload_sha256), j->payload_hex,
                         sizeof(j->payload_hex));
    {
        json_t *dj = digest_only ? json_pack("{s:s, s:s, s:b}", "ds", id, "tbs_sha256",
                                             j->payload_hex, "detached", 1)
                                 : json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:b}", "ds", id,
                                             "payload_sha256", j->payload_hex, "doc_type",
                                             info.doc_type, "digest_algorithm", info.digest_alg,
                                             "signed", (json_int_t)info.signed_s, "valid_from",
                                             (json_int_t)info.valid_from_s, "valid_until",
                                             (json_int_t)info.valid_until_s, "detached", 0);

        detail = dj != NULL ? json_dumps(dj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(dj);
    }
    if (detail == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    snprintf(target, sizeof(target), "ca/%s", id);
    hsmca_audit_event_set(&ev, who->name, hsmcad_role_name(who->role), "mso.sign", target, "ok",
                          detail);
    ev.kid = kid; /* the DS key's CKA_ID */
    hsmcad_req_suspend(r);
    rc = hsmca_audit_submit(d->audit, &ev, NULL, NULL, sign_done, j);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        hsmcad_req_resume(r);
        goto out;
    }
    j = NULL; /* sign_done owns it */
out:
    if (slot) {
        pthread_mutex_lock(&m->mu);
        c->inflight--;
        pthread_cond_broadcast(&m->idle);
        pthread_mutex_unlock(&m->mu);
    }
    if (j != NULL) {
        free(j->cose);
        free(j);
    }
    free(detail);
    free(payload);
    free(mso);
}

/* ---- GET /v1/mdl/cas, /v1/mdl/cas/{ca}, /v1/mdl/cas/{ca}/crl ---- */

static json_t *
ca_json_locked(struct mdl_ca *c, int64_t now_ms, int with_cert)
{
    json_t *o = json_pack("{s:s, s:s, s:s?, s:b, s:b, s:I, s:I}", "id", c->id, "kind", c->kind,
                          "parent", c->parent[0] != '\0' ? c->parent : NULL, "revoked", c->revoked,
                          "key_in_token", c->key_uri[0] != '\0', "not_before",
                          (json_int_t)c->not_before, "not_after", (json_int_t)c->not_after);

    if (o == NULL)
        return NULL;
    if (strcmp(c->kind, "ds") == 0) {
        /* a shared window: what every node reserved less this node's unused block */
        int shared = c->win[0] != '\0';
        uint64_t sigs = shared ? (c->win_used > c->blk ? c->win_used - c->blk : 0) : c->used;
        int left = shared ? c->blk > 0 || c->win_used < c->max : c->used < c->max;

        json_object_set_new(o, "window",
                            c->key != NULL && now_ms < c->until_ms && left
                                ? json_pack("{s:b, s:I, s:I, s:I, s:s?}", "active", 1, "until_ms",
                                            (json_int_t)c->until_ms, "max_signatures",
                                            (json_int_t)c->max, "signatures", (json_int_t)sigs,
                                            "id", shared ? c->win : NULL)
                                : json_pack("{s:b}", "active", 0));
    }
    if (with_cert) {
        char *pem = hsmca_pem_armour("CERTIFICATE", c->cert_der, c->cert_len);

        if (pem != NULL)
            json_object_set_new(o, "certificate", json_string(pem));
        free(pem);
    }
    return o;
}

void
hsmcad_h_mdl_cas(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    json_t *arr = json_array();
    int64_t now = hsmcad_now_ms();
    unsigned i;

    if (d->mdl != NULL && arr != NULL) {
        pthread_mutex_lock(&d->mdl->mu);
        for (i = 0; i < d->mdl->n; i++)
            json_array_append_new(arr, ca_json_locked(d->mdl->cas[i], now, 0));
        pthread_mutex_unlock(&d->mdl->mu);
    }
    hsmcad_reply_json(r, 200, arr != NULL ? json_pack("{s:o}", "items", arr) : NULL);
}

void
hsmcad_h_mdl_ca(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct mdl_ca *c;
    json_t *o = NULL;

    if (d->mdl != NULL) {
        pthread_mutex_lock(&d->mdl->mu);
        c = find_locked(d->mdl, hsmcad_req_param(r, 0));
        if (c != NULL)
            o = ca_json_locked(c, hsmcad_now_ms(), 1);
        pthread_mutex_unlock(&d->mdl->mu);
        if (c == NULL) {
            hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
            return;
        }
    }
    if (d->mdl == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
        return;
    }
    hsmcad_reply_json(r, 200, o);
}

void
hsmcad_h_mdl_crl(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    struct hsmca_crl_rec crl;
    static const char *const types[] = {"application/pkix-crl", "application/x-pem-file"};
    enum hsmca_err rc;
    int t;

    if (!hsmcad_mdl_known(d, hsmcad_req_param(r, 0))) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
        return;
    }
    if (ro == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_STORE_OPEN, NULL);
        return;
    }
    t = hsmcad_req_negotiate(r, types, 2);
    if (t < 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_ACCEPTABLE, NULL);
        return;
    }
    rc = hsmca_store_mdl_crl_get(ro, hsmcad_req_param(r, 0), &crl);
    if (rc == HSMCA_E_NOT_FOUND)
        rc = HSMCA_E_CRL_NONE;
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    if (t == 0) {
        hsmcad_reply(r, 200, "application/pkix-crl", (char *)crl.der, crl.der_len);
        crl.der = NULL;
    } else {
        char *pem = hsmca_pem_armour("X509 CRL", crl.der, crl.der_len);

        if (pem == NULL)
            hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        else
            hsmcad_reply(r, 200, "application/x-pem-file", pem, strlen(pem));
    }
    hsmca_crl_rec_clear(&crl);
}

/* ---- POST /v1/mdl/cas/{ds}/deactivation ---- */

void
hsmcad_h_mdl_deactivate(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct mdl_ca *c;
    int was = 0;

    if (d->mdl == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
        return;
    }
    pthread_mutex_lock(&d->mdl->mu);
    c = find_locked(d->mdl, hsmcad_req_param(r, 0));
    if (c != NULL && strcmp(c->kind, "ds") == 0) {
        was = c->key != NULL;
        close_locked(d, c, "deactivation");
    }
    pthread_mutex_unlock(&d->mdl->mu);
    if (c == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
        return;
    }
    if (strcmp(c->kind, "ds") != 0) {
        hsmcad_reply_problem(r, HSMCA_E_MDL_NOT_DS, NULL);
        return;
    }
    hsmcad_reply_json(
        r, 200,
        json_pack("{s:s, s:b, s:b}", "ca", hsmcad_req_param(r, 0), "active", 0, "was_active", was));
}
