/* SPDX-License-Identifier: Apache-2.0
 *
 * ca.c -- the CA registry (ca.h): the token table, the CAs, their keys and activation windows,
 * and the quorum's execution hooks over them. The window rules live here once for hsmcad and
 * `hsmca ceremony`: a window opens only on a PAI with an engine CA, a token and no open window,
 * never on a revoked CA; each opening and closing is one custody entry (custody.h).
 */
#include "hsmca/ca.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "hsmca/custody.h"
#include "hsmca/log.h"

struct reg_tok {
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    struct hsmca_token *tok;
};

struct hsmca_ca_registry {
    struct hsmca_ca_registry_config cfg;
    pthread_mutex_t mu;
    unsigned ntoks;
    struct reg_tok toks[HSMCA_CA_REG_TOKENS_MAX];
    unsigned ncas; /* atomic: readers walk cas[0..ncas) without the lock */
    struct hsmca_ca cas[HSMCA_CA_REG_CAS_MAX];
};

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
mod(const struct hsmca_ca_registry *reg)
{
    return reg->cfg.log_module != NULL ? reg->cfg.log_module : "hsmca";
}

enum hsmca_err
hsmca_ca_registry_new(struct hsmca_ca_registry **out)
{
    struct hsmca_ca_registry *reg = calloc(1, sizeof(*reg));

    *out = NULL;
    if (reg == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_init(&reg->mu, NULL);
    *out = reg;
    return HSMCA_OK;
}

void
hsmca_ca_registry_configure(struct hsmca_ca_registry *reg,
                            const struct hsmca_ca_registry_config *cfg)
{
    reg->cfg = *cfg;
}

void
hsmca_ca_registry_stop(struct hsmca_ca_registry *reg, const char *why)
{
    unsigned i;

    if (reg == NULL)
        return;
    pthread_mutex_lock(&reg->mu);
    for (i = 0; i < reg->ncas; i++)
        hsmca_ca_deactivate_locked(reg, &reg->cas[i], why);
    for (i = 0; i < reg->ncas; i++) {
        hsmca_issue_ca_free(reg->cas[i].ica);
        __atomic_store_n(&reg->cas[i].ica, NULL, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&reg->mu);
}

enum hsmca_err
hsmca_ca_registry_free(struct hsmca_ca_registry *reg)
{
    enum hsmca_err rc = HSMCA_OK, e;
    unsigned i;

    if (reg == NULL)
        return HSMCA_OK;
    hsmca_ca_registry_stop(reg, "stop");
    for (i = 0; i < reg->ntoks; i++) {
        e = hsmca_token_logout(reg->toks[i].tok);
        if (e == HSMCA_OK)
            e = hsmca_token_free(reg->toks[i].tok);
        if (e != HSMCA_OK && rc == HSMCA_OK)
            rc = e;
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg);
    return rc;
}

void
hsmca_ca_lock(struct hsmca_ca_registry *reg)
{
    pthread_mutex_lock(&reg->mu);
}

void
hsmca_ca_unlock(struct hsmca_ca_registry *reg)
{
    pthread_mutex_unlock(&reg->mu);
}

unsigned
hsmca_ca_count(struct hsmca_ca_registry *reg)
{
    return __atomic_load_n(&reg->ncas, __ATOMIC_ACQUIRE);
}

struct hsmca_ca *
hsmca_ca_at(struct hsmca_ca_registry *reg, unsigned i)
{
    return i < hsmca_ca_count(reg) ? &reg->cas[i] : NULL;
}

struct hsmca_ca *
hsmca_ca_find(struct hsmca_ca_registry *reg, const char *id)
{
    unsigned i, n = hsmca_ca_count(reg);

    for (i = 0; i < n; i++) {
        if (strcmp(reg->cas[i].id, id) == 0)
            return &reg->cas[i];
    }
    return NULL;
}

/* ---- tokens ---- */

/* Under the lock. quiet: an absent token is not logged (a prober re-tries and logs once). */
static struct hsmca_token *
token_locked(struct hsmca_ca_registry *reg, const char *label, const char *uri, int quiet)
{
    struct reg_tok *t;
    char u[HSMCA_URI_MAX + 1];
    unsigned i;
    enum hsmca_err rc;

    for (i = 0; i < reg->ntoks; i++) {
        if (strcmp(reg->toks[i].label, label) == 0)
            return reg->toks[i].tok;
    }
    if (reg->ntoks >= HSMCA_CA_REG_TOKENS_MAX || strlen(label) > HSMCA_TOKEN_LABEL_MAX ||
        reg->cfg.p11 == NULL)
        return NULL;
    if (uri == NULL) {
        snprintf(u, sizeof(u), "pkcs11:token=%s", label);
        uri = u;
    }
    t = &reg->toks[reg->ntoks];
    rc = hsmca_token_open(reg->cfg.p11, uri, &t->tok);
    if (rc != HSMCA_OK) {
        if (!quiet)
            hsmca_log(HSMCA_LOG_WARN, mod(reg), "token-absent", "label=%s code=%s", label,
                      hsmca_err_code(rc));
        return NULL;
    }
    snprintf(t->label, sizeof(t->label), "%s", label);
    reg->ntoks++;
    return t->tok;
}

struct hsmca_token *
hsmca_ca_token(struct hsmca_ca_registry *reg, const char *label, const char *uri, int quiet)
{
    struct hsmca_token *tok;

    pthread_mutex_lock(&reg->mu);
    tok = token_locked(reg, label, uri, quiet);
    pthread_mutex_unlock(&reg->mu);
    return tok;
}

void
hsmca_ca_tokens_each(struct hsmca_ca_registry *reg,
                     void (*fn)(void *arg, const char *label, struct hsmca_token *tok), void *arg)
{
    unsigned i;

    pthread_mutex_lock(&reg->mu);
    for (i = 0; i < reg->ntoks; i++)
        fn(arg, reg->toks[i].label, reg->toks[i].tok);
    pthread_mutex_unlock(&reg->mu);
}

/* ---- CAs ---- */

enum hsmca_err
hsmca_ca_add(struct hsmca_ca_registry *reg, const struct hsmca_ca_rec *rec)
{
    struct hsmca_uri u;
    struct hsmca_ca *c;
    enum hsmca_err rc = HSMCA_OK;
    unsigned i;

    pthread_mutex_lock(&reg->mu);
    for (i = 0; i < reg->ncas; i++) {
        if (strcmp(reg->cas[i].id, rec->id) == 0)
            goto out; /* known already */
    }
    if (reg->ncas >= HSMCA_CA_REG_CAS_MAX) {
        rc = HSMCA_E_TOO_LARGE;
        goto out;
    }
    c = &reg->cas[reg->ncas];
    memset(c, 0, sizeof(*c));
    c->index = reg->ncas;
    snprintf(c->id, sizeof(c->id), "%s", rec->id);
    snprintf(c->kind, sizeof(c->kind), "%s", rec->kind);
    snprintf(c->token_uri, sizeof(c->token_uri), "%s", rec->token_uri);
    snprintf(c->key_uri, sizeof(c->key_uri), "%s", rec->key_uri);
    if (hsmca_uri_parse(rec->token_uri, strlen(rec->token_uri), &u) == HSMCA_OK &&
        (u.have & HSMCA_URI_HAVE_TOKEN) != 0)
        c->tok = token_locked(reg, u.token, rec->token_uri, 0);
    __atomic_store_n(&reg->ncas, reg->ncas + 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

static enum hsmca_err
add_one(void *arg, const struct hsmca_ca_rec *rec)
{
    return hsmca_ca_add(arg, rec);
}

enum hsmca_err
hsmca_ca_load(struct hsmca_ca_registry *reg, struct hsmca_store *st)
{
    return hsmca_store_ca_list(st, add_one, reg);
}

enum hsmca_err
hsmca_ca_attach(struct hsmca_ca_registry *reg, struct hsmca_store *st,
                const struct hsmca_ca_rec *rec)
{
    struct hsmca_ca_rec paa;
    struct hsmca_ca *c;
    struct hsmca_issue_ca *ica = NULL;
    const unsigned char *p;
    X509 *paa_x = NULL;
    enum hsmca_err rc = HSMCA_OK;

    if (strcmp(rec->kind, "pai") != 0 || rec->cert_der == NULL || reg->cfg.issuer == NULL ||
        reg->cfg.dac_profile == NULL)
        return HSMCA_OK; /* nothing to issue with */
    c = hsmca_ca_find(reg, rec->id);
    if (c == NULL || __atomic_load_n(&c->ica, __ATOMIC_ACQUIRE) != NULL)
        return HSMCA_OK;
    memset(&paa, 0, sizeof(paa));
    rc = hsmca_store_ca_get(st, rec->parent, &paa);
    if (rc != HSMCA_OK)
        goto out;
    p = paa.cert_der;
    paa_x = p != NULL ? d2i_X509(NULL, &p, (long)paa.cert_len) : NULL;
    if (paa_x == NULL) {
        rc = HSMCA_E_MATTER_PAA_NOT_FOUND;
        goto out;
    }
    rc = hsmca_issue_ca_new(reg->cfg.issuer, rec, paa_x, reg->cfg.dac_profile, &ica);
    if (rc != HSMCA_OK)
        goto out;
    pthread_mutex_lock(&reg->mu);
    if (c->ica == NULL) {
        __atomic_store_n(&c->ica, ica, __ATOMIC_RELEASE);
        ica = NULL;
    }
    pthread_mutex_unlock(&reg->mu);
out:
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, mod(reg), "ca-not-issuing", "ca=%s code=%s", rec->id,
                  hsmca_err_code(rc));
    hsmca_issue_ca_free(ica);
    X509_free(paa_x);
    hsmca_ca_rec_clear(&paa);
    return rc;
}

enum hsmca_err
hsmca_ca_attach_all(struct hsmca_ca_registry *reg, struct hsmca_store *st)
{
    unsigned i, n = hsmca_ca_count(reg);

    for (i = 0; i < n; i++) {
        struct hsmca_ca_rec rec;

        memset(&rec, 0, sizeof(rec));
        /* a CA that cannot issue is logged; the others still can */
        if (hsmca_store_ca_get(st, reg->cas[i].id, &rec) == HSMCA_OK &&
            hsmca_ca_attach(reg, st, &rec) != HSMCA_OK)
            hsmca_log(HSMCA_LOG_WARN, mod(reg), "ca-attach-failed", "ca=%s", rec.id);
        hsmca_ca_rec_clear(&rec);
    }
    return HSMCA_OK;
}

/* ---- activation windows ---- */

enum hsmca_err
hsmca_ca_activate(struct hsmca_ca_registry *reg, const char *ca_id, int64_t until_ms,
                  uint64_t max_dacs)
{
    return hsmca_ca_activate_shared(reg, ca_id, NULL, 0, until_ms, max_dacs);
}

enum hsmca_err
hsmca_ca_activate_shared(struct hsmca_ca_registry *reg, const char *ca_id, const char *window_id,
                         int join, int64_t until_ms, uint64_t max_dacs)
{
    struct hsmca_ca *c = hsmca_ca_find(reg, ca_id);
    enum hsmca_err rc;

    if (c == NULL)
        return HSMCA_E_HTTP_CA_NOT_FOUND;
    pthread_mutex_lock(&reg->mu);
    if (c->ica == NULL || c->tok == NULL) {
        rc = HSMCA_E_ISSUE_CA_INACTIVE;
        goto out;
    }
    if (c->key != NULL) {
        rc = HSMCA_E_ISSUE_CA_ACTIVE;
        goto out;
    }
    if (__atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE)) {
        rc = HSMCA_E_REVOKE_CA_REVOKED;
        goto out;
    }
    rc = hsmca_token_find_key(c->tok, c->key_uri, &c->key);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_issue_ca_activate_shared(c->ica, c->key, window_id, join, until_ms, max_dacs);
    if (rc != HSMCA_OK) {
        hsmca_key_free(c->key);
        c->key = NULL;
        goto out;
    }
    if (window_id != NULL) { /* a shared window's end and count are the store's */
        struct hsmca_issue_ca_state ws;

        hsmca_issue_ca_state(c->ica, now_ms(), &ws);
        until_ms = ws.until_ms;
        max_dacs = ws.max_dacs;
    }
    hsmca_log(HSMCA_LOG_INFO, mod(reg), "ca-activated", "ca=%s until_ms=%lld max_dacs=%llu", c->id,
              (long long)until_ms, (unsigned long long)max_dacs);
    if (reg->cfg.audit != NULL &&
        hsmca_custody_window(reg->cfg.audit, c->id, 1, NULL, 0, max_dacs, until_ms) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, mod(reg), "window-start-not-logged", "ca=%s", c->id);
    if (reg->cfg.window_opened != NULL)
        reg->cfg.window_opened(reg->cfg.arg, c);
out:
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

void
hsmca_ca_deactivate_locked(struct hsmca_ca_registry *reg, struct hsmca_ca *c, const char *why)
{
    struct hsmca_issue_ca_state st;

    memset(&st, 0, sizeof(st));
    if (c->ica != NULL)
        hsmca_issue_ca_deactivate(c->ica); /* drains signing under way */
    if (c->key == NULL)
        return;
    if (c->ica != NULL)
        hsmca_issue_ca_state(c->ica, now_ms(), &st);
    if (why == NULL)
        why = st.max_dacs != 0 && st.issued >= st.max_dacs ? "count" : "time";
    if (reg->cfg.audit != NULL && hsmca_custody_window(reg->cfg.audit, c->id, 0, why, st.issued,
                                                       st.max_dacs, st.until_ms) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, mod(reg), "window-end-not-logged", "ca=%s reason=%s", c->id,
                  why);
    if (!__atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE) && reg->cfg.window_closing != NULL)
        reg->cfg.window_closing(reg->cfg.arg, c);
    hsmca_key_free(c->key);
    c->key = NULL;
    if (c->tok != NULL && hsmca_token_logout(c->tok) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, mod(reg), "logout-failed", "ca=%s", c->id);
    hsmca_log(HSMCA_LOG_INFO, mod(reg), "ca-deactivated", "ca=%s", c->id);
}

enum hsmca_err
hsmca_ca_deactivate(struct hsmca_ca_registry *reg, const char *ca_id, const char *why)
{
    struct hsmca_ca *c = hsmca_ca_find(reg, ca_id);

    if (c == NULL)
        return HSMCA_E_NOT_FOUND;
    pthread_mutex_lock(&reg->mu);
    hsmca_ca_deactivate_locked(reg, c, why);
    pthread_mutex_unlock(&reg->mu);
    return HSMCA_OK;
}

void
hsmca_ca_close_ended(struct hsmca_ca_registry *reg, int64_t now_ms)
{
    struct hsmca_issue_ca_state st;
    unsigned i;

    pthread_mutex_lock(&reg->mu);
    for (i = 0; i < reg->ncas; i++) {
        struct hsmca_ca *c = &reg->cas[i];

        if (c->key == NULL || c->ica == NULL)
            continue;
        hsmca_issue_ca_state(c->ica, now_ms, &st);
        if (!st.active && st.in_flight == 0)
            hsmca_ca_deactivate_locked(reg, c, NULL);
    }
    pthread_mutex_unlock(&reg->mu);
}

void
hsmca_ca_revoked(struct hsmca_ca_registry *reg, const char *ca_id)
{
    struct hsmca_ca *c = hsmca_ca_find(reg, ca_id);

    if (c == NULL)
        return;
    pthread_mutex_lock(&reg->mu);
    __atomic_store_n(&c->revoked, 1, __ATOMIC_RELEASE); /* no window opens again */
    hsmca_ca_deactivate_locked(reg, c, "revoked");
    pthread_mutex_unlock(&reg->mu);
    hsmca_log(HSMCA_LOG_WARN, mod(reg), "ca-revoked", "ca=%s", ca_id);
}

/* ---- the quorum's execution hooks ---- */

static struct hsmca_token *
ex_token(void *arg, const char *label)
{
    return hsmca_ca_token(arg, label, NULL, 0);
}

static enum hsmca_err
ex_ca_created(void *arg, const struct hsmca_ca_rec *ca)
{
    struct hsmca_ca_registry *reg = arg;
    struct hsmca_store *ro = reg->cfg.reader != NULL ? reg->cfg.reader(reg->cfg.arg) : NULL;
    enum hsmca_err rc = hsmca_ca_add(reg, ca);

    if (rc == HSMCA_OK && ro != NULL)
        rc = hsmca_ca_attach(reg, ro, ca);
    if (rc == HSMCA_OK && reg->cfg.ca_created != NULL)
        rc = reg->cfg.ca_created(reg->cfg.arg, ca);
    return rc;
}

static enum hsmca_err
ex_activate(void *arg, const char *ca_id, int64_t until_ms, uint64_t max_dacs)
{
    return hsmca_ca_activate(arg, ca_id, until_ms, max_dacs);
}

static enum hsmca_err
ex_activate_shared(void *arg, const char *ca_id, const char *window_id, int join, int64_t until_ms,
                   uint64_t max_dacs)
{
    return hsmca_ca_activate_shared(arg, ca_id, window_id, join, until_ms, max_dacs);
}

static enum hsmca_err
ex_deactivate(void *arg, const char *ca_id)
{
    return hsmca_ca_deactivate(arg, ca_id, "deactivation");
}

static void
ex_ca_revoked(void *arg, const char *ca_id)
{
    hsmca_ca_revoked(arg, ca_id);
}

static void
ex_crl_signed(void *arg, const char *ca_id, const struct hsmca_crl_info *info)
{
    struct hsmca_ca *c = hsmca_ca_find(arg, ca_id);

    if (c == NULL)
        return;
    __atomic_store_n(&c->crl_this, (int64_t)info->this_update, __ATOMIC_RELAXED);
    __atomic_store_n(&c->crl_next, (int64_t)info->next_update, __ATOMIC_RELAXED);
    __atomic_store_n(&c->crl_number, info->number, __ATOMIC_RELEASE);
}

/* token.enroll (the quorum's token_init hook): a new CA token, initialised with a random SO PIN
 * that is wiped at once (as `hsmca ceremony init --init-tokens` does: nobody ever knows it) and
 * the quorum's user PIN, then opened in the registry's token table. */
enum hsmca_err
hsmca_ca_token_init(void *arg, const char *label, const struct hsmca_secret *user_pin)
{
    struct hsmca_ca_registry *reg = arg;
    struct hsmca_secret so = {NULL, 0};
    struct hsmca_token *tok = NULL;
    enum hsmca_err rc, frc;

    if (reg == NULL || reg->cfg.p11 == NULL || label == NULL || user_pin == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_token_random_pin(HSMCA_SO_PIN_LEN, &so);
    if (rc == HSMCA_OK)
        rc = hsmca_token_init(reg->cfg.p11, label, &so, user_pin, &tok);
    hsmca_secret_clear(&so);
    frc = hsmca_token_free(tok);
    if (rc == HSMCA_OK)
        rc = frc;
    if (rc == HSMCA_OK && hsmca_ca_token(reg, label, NULL, 0) == NULL)
        rc = HSMCA_E_TOKEN_NOT_FOUND;
    hsmca_log(rc == HSMCA_OK ? HSMCA_LOG_INFO : HSMCA_LOG_ERROR, mod(reg), "token-initialised",
              "token=%s code=%s", label, hsmca_err_code(rc));
    return rc;
}

void
hsmca_ca_quorum_exec(struct hsmca_ca_registry *reg, struct hsmca_quorum_exec *ex)
{
    memset(ex, 0, sizeof(*ex));
    ex->arg = reg;
    ex->token = ex_token;
    ex->ca_created = ex_ca_created;
    ex->activate = ex_activate;
    ex->activate_shared = ex_activate_shared;
    ex->deactivate = ex_deactivate;
    ex->ca_revoked = ex_ca_revoked;
    ex->crl_signed = ex_crl_signed;
}
