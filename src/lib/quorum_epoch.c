/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_epoch.c -- epochs: the approvers of an epoch, a token's PIN split and sealed to them,
 * the quorum.epoch entry and its store writes; the initial ceremony; the crash-safe PIN rotation
 * after every execution (docs/custody.md).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsmca/log.h"
#include "hsmca/matter.h"
#include "hsmca/quorum.h"
#include "hsmca/seal.h"
#include "hsmca/shamir.h"
#include "hsmca/store_quorum.h"
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h"
#include "quorum_revoke.h"

/* ---- epochs: split, seal, commit ---- */

void
hsmca_q_approver_list_clear(struct approver_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        hsmca_qapprover_clear(&l->a[i]);
    l->n = 0;
}

struct active_ctx {
    struct approver_list *l;
    uint64_t epoch;
};

static enum hsmca_err
collect_active(void *arg, const struct hsmca_qapprover *r)
{
    struct active_ctx *c = arg;
    struct hsmca_qapprover *d;

    if (r->since_epoch > c->epoch || (r->until_epoch != 0 && r->until_epoch <= c->epoch))
        return HSMCA_OK;
    if (c->l->n >= HSMCA_QUORUM_APPROVERS_MAX)
        return HSMCA_E_TOO_LARGE;
    d = &c->l->a[c->l->n];
    *d = *r;
    d->spki = malloc(r->spki_len);
    if (d->spki == NULL)
        return HSMCA_E_NOMEM;
    memcpy(d->spki, r->spki, r->spki_len);
    c->l->n++;
    return HSMCA_OK;
}

/* The approvers active in epoch, in (since_epoch, name) order: share index = position + 1. */
enum hsmca_err
hsmca_q_active_approvers(struct hsmca_store *st, uint64_t epoch, struct approver_list *l)
{
    struct active_ctx c = {l, epoch};
    enum hsmca_err rc;

    l->n = 0;
    rc = hsmca_store_qapprover_list(st, collect_active, &c);
    if (rc != HSMCA_OK)
        hsmca_q_approver_list_clear(l);
    return rc;
}

static void
epoch_change_clear(struct epoch_change *c)
{
    size_t i, j;

    for (i = 0; i < c->ntok; i++) {
        for (j = 0; j < c->tok[i].n; j++)
            hsmca_qshare_clear(&c->tok[i].s[j]);
    }
    c->ntok = 0;
    json_decref(c->detail);
    c->detail = NULL;
}

/* Free an epoch change and its approver list (either may be NULL). */
static void
epoch_change_free(struct epoch_change *c, struct approver_list *l)
{
    if (c != NULL) {
        hsmca_qepoch_clear(&c->e);
        epoch_change_clear(c);
    }
    if (l != NULL)
        hsmca_q_approver_list_clear(l);
    free(c);
    free(l);
}

/*
 * Fill tok with a fresh split of pin for the approvers of the new epoch: salt, PIN commitment,
 * shares sealed to each approver with their commitments.
 * CT: the shares live on the secure heap and are wiped before return.
 */
static enum hsmca_err
seal_token(struct token_epoch *tok, const char *label, const char *uri, uint64_t epoch, unsigned m,
           const struct approver_list *l, const struct hsmca_secret *pin)
{
    struct hsmca_secret shares = {NULL, 0};
    EVP_PKEY *pub = NULL;
    enum hsmca_err rc;
    size_t i;

    memset(tok, 0, sizeof(*tok));
    snprintf(tok->t.label, sizeof(tok->t.label), "%s", label);
    snprintf(tok->t.uri, sizeof(tok->t.uri), "%s", uri);
    tok->t.epoch = epoch;
    tok->rotated = 1;
    if (RAND_bytes(tok->t.pin_salt, sizeof(tok->t.pin_salt)) != 1)
        return HSMCA_E_RANDOM;
    if (hsmca_q_pin_commit(tok->t.pin_salt, label, epoch, pin, tok->t.pin_commit) != 0)
        return HSMCA_E_INTERNAL;
    rc = hsmca_secret_set(&shares, NULL, l->n * SHARE_LEN);
    if (rc != HSMCA_OK)
        return rc;
    rc = hsmca_shamir_split(pin->p, pin->len, m, (unsigned)l->n, shares.p);
    if (rc != HSMCA_OK)
        goto out;
    for (i = 0; i < l->n; i++) {
        struct hsmca_qshare *s = &tok->s[i];
        struct hsmca_seal_ad ad;
        const unsigned char *sh = shares.p + i * SHARE_LEN;

        snprintf(s->label, sizeof(s->label), "%s", label);
        s->epoch = epoch;
        snprintf(s->approver, sizeof(s->approver), "%s", l->a[i].name);
        s->idx = (unsigned)i + 1;
        if (hsmca_q_share_commit(label, epoch, s->idx, sh, SHARE_LEN, s->commit) != 0) {
            rc = HSMCA_E_INTERNAL;
            goto out;
        }
        pub = hsmca_q_spki_parse(l->a[i].spki, l->a[i].spki_len);
        if (pub == NULL) {
            rc = HSMCA_E_SEAL_KEY;
            goto out;
        }
        memset(&ad, 0, sizeof(ad));
        ad.token_label = label;
        ad.epoch = epoch;
        ad.share_index = s->idx;
        ad.approver = l->a[i].name;
        rc = hsmca_seal(pub, &ad, sh, SHARE_LEN, &s->sealed, &s->sealed_len);
        EVP_PKEY_free(pub);
        pub = NULL;
        if (rc != HSMCA_OK)
            goto out;
        tok->n++;
    }
    rc = HSMCA_OK;
out:
    hsmca_secret_clear(&shares);
    return rc;
}

/* Build the quorum.epoch detail of c (docs/design.md "Audit log"). */
static enum hsmca_err
epoch_detail(struct epoch_change *c)
{
    json_t *d = json_object(), *ap = json_array(), *com = json_object(), *pol = NULL;
    char hex[HSMCA_SHA256_HEX_SIZE];
    size_t i, j;

    if (d == NULL || ap == NULL || com == NULL)
        goto nomem;
    for (i = 0; i < c->approvers->n; i++) {
        char *b = hsmca_b64_encode(c->approvers->a[i].spki, c->approvers->a[i].spki_len);

        if (b == NULL)
            goto nomem;
        json_array_append_new(ap,
                              json_pack("{s:s, s:s}", "name", c->approvers->a[i].name, "spki", b));
        free(b);
    }
    for (i = 0; i < c->ntok; i++) {
        json_t *sh = json_array(), *t;

        if (sh == NULL)
            goto nomem;
        for (j = 0; j < c->tok[i].n; j++) {
            hsmca_q_hex32(c->tok[i].s[j].commit, hex);
            json_array_append_new(sh, json_string(hex));
        }
        hsmca_q_hex32(c->tok[i].t.pin_commit, hex);
        t = json_pack("{s:s, s:o}", "pin", hex, "shares", sh);
        if (t == NULL)
            goto nomem;
        json_object_set_new(com, c->tok[i].t.label, t);
    }
    pol = json_loads(c->e.policy, 0, NULL);
    if (pol == NULL)
        goto nomem;
    c->detail = json_pack("{s:I, s:o, s:O, s:s, s:o}", "epoch", (json_int_t)c->e.epoch, "approvers",
                          ap, "thresholds", json_object_get(pol, "thresholds"), "policy_hash",
                          c->e.policy_hash, "commitments", com);
    json_decref(pol);
    json_decref(d);
    return c->detail != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
nomem:
    json_decref(d);
    json_decref(ap);
    json_decref(com);
    json_decref(pol);
    return HSMCA_E_NOMEM;
}

static enum hsmca_err
apply_epoch(struct hsmca_store *st, void *arg)
{
    struct epoch_change *c = arg;
    enum hsmca_err rc;
    size_t i, j;

    rc = hsmca_store_qepoch_put(st, &c->e);
    for (i = 0; rc == HSMCA_OK && c->insert_all && i < c->approvers->n; i++)
        rc = hsmca_store_qapprover_put(st, &c->approvers->a[i]);
    if (rc == HSMCA_OK && c->enrol != NULL)
        rc = hsmca_store_qapprover_put(st, c->enrol);
    if (rc == HSMCA_OK && c->remove != NULL)
        rc = hsmca_store_qapprover_remove(st, c->remove, c->e.epoch);
    for (i = 0; rc == HSMCA_OK && i < c->ntok; i++) {
        if (!c->tok[i].rotated)
            continue;
        rc = hsmca_store_qtoken_put(st, &c->tok[i].t);
        for (j = 0; rc == HSMCA_OK && j < c->tok[i].n; j++)
            rc = hsmca_store_qshare_put(st, &c->tok[i].s[j]);
        if (rc == HSMCA_OK)
            rc = hsmca_store_qshare_prune(st, c->tok[i].t.label, c->tok[i].t.epoch,
                                          c->tok[i].t.alt_epoch);
    }
    return rc;
}

/* ---- the initial ceremony ---- */

static enum hsmca_err
random_pin(struct hsmca_secret *pin)
{
    enum hsmca_err rc = hsmca_secret_set(pin, NULL, HSMCA_QUORUM_PIN_LEN);

    if (rc != HSMCA_OK)
        return rc;
    if (RAND_priv_bytes(pin->p, HSMCA_QUORUM_PIN_LEN) != 1) {
        hsmca_secret_clear(pin);
        return HSMCA_E_RANDOM;
    }
    return HSMCA_OK;
}

enum hsmca_err
hsmca_quorum_ceremony_init(struct hsmca_quorum *q, const struct hsmca_quorum_init *in,
                           const struct hsmca_quorum_principal *who)
{
    struct approver_list *l = NULL;
    struct epoch_change *c = NULL;
    struct hsmca_secret pin = {NULL, 0};
    struct hsmca_qepoch cur;
    unsigned char *der = NULL;
    size_t der_len = 0, i, j;
    enum hsmca_err rc;
    json_t *cer = NULL;

    if (q == NULL || in == NULL || in->ntokens == 0 || in->ntokens > HSMCA_QUORUM_TOKENS_MAX ||
        in->napprovers < 2 || in->napprovers > HSMCA_QUORUM_APPROVERS_MAX || in->m < 2 ||
        in->m > in->napprovers)
        return HSMCA_E_INVALID_ARG;
    memset(&cur, 0, sizeof(cur));
    pthread_mutex_lock(&q->lock);
    rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &cur);
    hsmca_qepoch_clear(&cur);
    if (rc == HSMCA_OK) {
        rc = hsmca_q_refuse(q, who, "quorum.ceremony", "quorum", HSMCA_E_QUORUM_INITIALISED, NULL);
        goto out;
    }
    if (rc != HSMCA_E_NOT_FOUND)
        goto out;
    l = calloc(1, sizeof(*l));
    c = calloc(1, sizeof(*c));
    if (l == NULL || c == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    /* approvers: valid names and P-256 keys, pairwise distinct names, keys and serials */
    for (i = 0; i < in->napprovers; i++) {
        const struct hsmca_quorum_approver_in *a = &in->approvers[i];
        struct hsmca_qapprover *d = &l->a[i];

        if (!hsmca_q_name_ok(a->name) || !hsmca_q_is_p256(a->pub) ||
            (a->token_serial != NULL && strlen(a->token_serial) > HSMCA_TOKEN_SERIAL_MAX)) {
            rc = HSMCA_E_INVALID_ARG;
            goto out;
        }
        rc = hsmca_q_spki_der(a->pub, &der, &der_len);
        if (rc != HSMCA_OK)
            goto out;
        snprintf(d->name, sizeof(d->name), "%s", a->name);
        d->spki = malloc(der_len);
        if (d->spki == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        memcpy(d->spki, der, der_len);
        d->spki_len = der_len;
        SHA256(der, der_len, d->fingerprint);
        OPENSSL_free(der);
        der = NULL;
        snprintf(d->token_serial, sizeof(d->token_serial), "%s",
                 a->token_serial != NULL ? a->token_serial : "");
        d->since_epoch = 1;
        l->n++;
        for (j = 0; j < i; j++) {
            if (strcmp(l->a[j].name, d->name) == 0 ||
                memcmp(l->a[j].fingerprint, d->fingerprint, HSMCA_SHA256_LEN) == 0 ||
                (d->token_serial[0] != '\0' &&
                 strcmp(l->a[j].token_serial, d->token_serial) == 0)) {
                rc = hsmca_q_refuse(q, who, "quorum.ceremony", "quorum",
                                    HSMCA_E_QUORUM_APPROVER_DUPLICATE,
                                    json_pack("{s:s}", "approver", d->name));
                goto out;
            }
        }
    }
    c->approvers = l;
    c->insert_all = 1;
    c->e.epoch = 1;
    c->e.m = in->m;
    c->e.created_ms = hsmca_q_now_ms(q);
    rc = hsmca_q_policy_canon(in->policy_json, in->policy_len, in->m, l->n, &c->e.policy,
                              c->e.policy_hash);
    if (rc != HSMCA_OK) {
        rc = hsmca_q_refuse(q, who, "quorum.ceremony", "quorum", rc, NULL);
        goto out;
    }
    /* the tokens: a fresh random user PIN each, set by the SO, split and sealed */
    for (i = 0; i < in->ntokens; i++) {
        const struct hsmca_quorum_token_in *t = &in->tokens[i];

        if (t->label == NULL || t->uri == NULL || t->tok == NULL || t->so_pin == NULL ||
            strlen(t->label) == 0 || strlen(t->label) > HSMCA_TOKEN_LABEL_MAX ||
            strlen(t->uri) > HSMCA_URI_MAX) {
            rc = HSMCA_E_INVALID_ARG;
            goto out;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(in->tokens[j].label, t->label) == 0) {
                rc = HSMCA_E_INVALID_ARG;
                goto out;
            }
        }
        rc = random_pin(&pin);
        if (rc != HSMCA_OK)
            goto out;
        rc = seal_token(&c->tok[i], t->label, t->uri, 1, in->m, l, &pin);
        c->ntok++;
        if (rc != HSMCA_OK)
            goto out;
        /* everything is sealed before the token changes: only the commit can fail after it */
        rc = hsmca_token_init_pin(t->tok, t->so_pin, &pin);
        hsmca_secret_clear(&pin);
        if (rc != HSMCA_OK) {
            hsmca_log(HSMCA_LOG_ERROR, "quorum", "init-pin-failed", "token=%s code=%s", t->label,
                      hsmca_err_code(rc));
            goto out;
        }
    }
    rc = epoch_detail(c);
    if (rc != HSMCA_OK)
        goto out;
    cer = json_pack("{s:s, s:I}", "ceremony", in->ceremony_id != NULL ? in->ceremony_id : "", "m",
                    (json_int_t)in->m);
    json_object_set(cer, "epoch", json_object_get(c->detail, "epoch"));
    rc = hsmca_q_audit(q, who, "quorum.ceremony", "quorum", "ok", cer, NULL, NULL);
    if (rc == HSMCA_OK)
        rc = hsmca_q_audit(q, who, "quorum.epoch", "quorum", "ok", c->detail, apply_epoch, c);
out:
    pthread_mutex_unlock(&q->lock);
    hsmca_secret_clear(&pin);
    OPENSSL_free(der);
    json_decref(cer);
    epoch_change_free(c, l);
    return rc;
}

struct snap_ctx {
    struct token_epoch *t;
};

static enum hsmca_err
snap_share(void *arg, const struct hsmca_qshare *s)
{
    struct snap_ctx *c = arg;

    if (c->t->n >= HSMCA_QUORUM_APPROVERS_MAX + 1)
        return HSMCA_E_TOO_LARGE;
    c->t->s[c->t->n] = *s;
    c->t->s[c->t->n].sealed = NULL;
    c->t->s[c->t->n].sealed_len = 0;
    c->t->n++;
    return HSMCA_OK;
}

struct all_tokens {
    struct hsmca_qtoken t[HSMCA_QUORUM_TOKENS_MAX];
    size_t n;
};

static enum hsmca_err
collect_token(void *arg, const struct hsmca_qtoken *t)
{
    struct all_tokens *a = arg;

    if (a->n >= HSMCA_QUORUM_TOKENS_MAX)
        return HSMCA_E_TOO_LARGE;
    a->t[a->n++] = *t;
    return HSMCA_OK;
}

/* The confirmation of a rotation (docs/custody.md): per token, rotated or kept its PIN. */
struct rotate_confirm {
    struct epoch_change *c;
    const int *set_ok; /* indexed like c->tok */
};

/*
 * Step 4 of the rotation: a token that took its new PIN drops the alternate record and the
 * shares of the old one. A token whose C_SetPIN failed may still have taken it (a module can
 * fail after the change, a network token can lose the reply): the PIN it answered to becomes
 * current again and the new one stays as the alternate, with both sets of shares, so the next
 * operation logs in with whichever it has.
 */
static enum hsmca_err
apply_confirm(struct hsmca_store *st, void *arg)
{
    struct rotate_confirm *rc_ = arg;
    struct epoch_change *c = rc_->c;
    enum hsmca_err rc = HSMCA_OK;
    size_t i;

    for (i = 0; rc == HSMCA_OK && i < c->ntok; i++) {
        struct hsmca_qtoken t = c->tok[i].t;

        if (!c->tok[i].rotated)
            continue;
        if (c->tok[i].fresh && !rc_->set_ok[i]) {
            /* token.enroll: the token was not initialised, it never joins */
            rc = hsmca_store_qtoken_delete(st, t.label);
            continue;
        }
        if (!rc_->set_ok[i]) {
            struct hsmca_qtoken n = t;

            t.epoch = n.alt_epoch;
            memcpy(t.pin_salt, n.alt_pin_salt, sizeof(t.pin_salt));
            memcpy(t.pin_commit, n.alt_pin_commit, HSMCA_SHA256_LEN);
            t.alt_epoch = n.epoch;
            memcpy(t.alt_pin_salt, n.pin_salt, sizeof(t.alt_pin_salt));
            memcpy(t.alt_pin_commit, n.pin_commit, HSMCA_SHA256_LEN);
            rc = hsmca_store_qtoken_put(st, &t);
            continue;
        }
        t.alt_epoch = 0;
        memset(t.alt_pin_salt, 0, sizeof(t.alt_pin_salt));
        memset(t.alt_pin_commit, 0, HSMCA_SHA256_LEN);
        rc = hsmca_store_qtoken_put(st, &t);
        if (rc == HSMCA_OK)
            rc = hsmca_store_qshare_prune(st, t.label, t.epoch, 0);
    }
    return rc;
}

/*
 * Rotate the PINs of the logged-in tokens of x into a new epoch, crash-safe (docs/custody.md):
 *   1. new random PINs, split and sealed to the new approver set, in memory;
 *   2. write ahead: the quorum.epoch entry (outcome "intent") commits the whole epoch change with
 *      each rotated token's new PIN record as current and the PIN it answered to as alternate,
 *      with the shares of both, so that whatever happens next m approvers reach the token;
 *   3. C_SetPIN on each token;
 *   4. the quorum.rotate entry closes the intent and confirms: the alternate records and their
 *      shares go (or, for a token that refused the new PIN, the alternate becomes current again).
 * A crash between 2 and 4 leaves tokens whose PIN is one of two known ones: the next quorum
 * operation on such a token rebuilds both, logs in with the one that works, and rotates from it.
 */
enum hsmca_err
hsmca_q_rotate(struct hsmca_quorum *q, struct exec_state *x)
{
    struct epoch_change *c = calloc(1, sizeof(*c));
    struct approver_list *l = calloc(1, sizeof(*l));
    struct all_tokens *all = calloc(1, sizeof(*all));
    struct hsmca_qapprover enrol;
    struct hsmca_secret newpin[HSMCA_QUORUM_TOKENS_MAX], freshpin = {NULL, 0};
    size_t tok_of[HSMCA_QUORUM_TOKENS_MAX]; /* c->tok index -> x index, for rotated tokens */
    int set_ok[HSMCA_QUORUM_TOKENS_MAX];
    struct hsmca_audit_receipt ir;
    struct rotate_confirm conf;
    json_t *labels = NULL, *res = NULL;
    enum hsmca_err rc = HSMCA_OK, set_rc = HSMCA_OK;
    size_t i, j;

    memset(&enrol, 0, sizeof(enrol));
    memset(&ir, 0, sizeof(ir));
    memset(newpin, 0, sizeof(newpin));
    memset(set_ok, 0, sizeof(set_ok));
    if (c == NULL || l == NULL || all == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    c->e.epoch = x->e.epoch + 1;
    c->e.m = x->e.m;
    c->e.created_ms = hsmca_q_now_ms(q);
    snprintf(c->e.policy_hash, sizeof(c->e.policy_hash), "%s", x->e.policy_hash);
    c->e.policy = strdup(x->e.policy);
    if (c->e.policy == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    rc = hsmca_q_active_approvers(hsmca_q_rd(q), x->e.epoch, l);
    if (rc != HSMCA_OK)
        goto out;
    /* the op's effect on the new epoch: its approvers, its policy */
    if (x->op->epoch != NULL)
        rc = x->op->epoch(q, x, c, l, &enrol);
    if (rc != HSMCA_OK)
        goto out;
    if (l->n < c->e.m) {
        rc = HSMCA_E_QUORUM_TOO_FEW_APPROVERS;
        goto out;
    }
    c->approvers = l;
    /* 1. new PINs, sealed before any token changes */
    rc = hsmca_store_qtoken_list(hsmca_q_rd(q), collect_token, all);
    if (rc != HSMCA_OK)
        goto out;
    labels = json_array();
    for (i = 0; i < all->n; i++) {
        struct token_epoch *te = &c->tok[c->ntok];

        if (strcmp(all->t[i].label, x->fresh) == 0)
            continue; /* token.enroll replaces a record that never got its token */
        for (j = 0; j < x->ntok; j++) {
            if (x->logged_in[j] && strcmp(x->label[j], all->t[i].label) == 0)
                break;
        }
        if (j < x->ntok) {
            rc = random_pin(&newpin[j]);
            if (rc == HSMCA_OK)
                rc = seal_token(te, all->t[i].label, all->t[i].uri, c->e.epoch, c->e.m, l,
                                &newpin[j]);
            /* the PIN the token answered to stays reachable until the new one is confirmed */
            te->t.alt_epoch = x->live_alt[j] ? x->qt[j].alt_epoch : x->qt[j].epoch;
            memcpy(te->t.alt_pin_salt, x->live_alt[j] ? x->qt[j].alt_pin_salt : x->qt[j].pin_salt,
                   sizeof(te->t.alt_pin_salt));
            memcpy(te->t.alt_pin_commit,
                   x->live_alt[j] ? x->qt[j].alt_pin_commit : x->qt[j].pin_commit,
                   HSMCA_SHA256_LEN);
            tok_of[c->ntok] = j;
            json_array_append_new(labels, json_string(all->t[i].label));
        } else {
            struct snap_ctx sc = {te};

            memset(te, 0, sizeof(*te));
            te->t = all->t[i];
            rc = hsmca_store_qshare_list(hsmca_q_rd(q), te->t.label, te->t.epoch, snap_share, &sc);
        }
        c->ntok++;
        if (rc != HSMCA_OK)
            goto out;
    }
    /* token.enroll: the new token's PIN, split and sealed to the approvers like the others, is
     * written ahead with them; the token is initialised with it only after (step 3) */
    if (x->fresh[0] != '\0') {
        struct token_epoch *te = &c->tok[c->ntok];
        char uri[HSMCA_TOKEN_LABEL_MAX + 16];

        if (c->ntok >= HSMCA_QUORUM_TOKENS_MAX || x->ex == NULL || x->ex->token_init == NULL) {
            rc = HSMCA_E_QUORUM_PARAMS;
            goto out;
        }
        snprintf(uri, sizeof(uri), "pkcs11:token=%s", x->fresh);
        rc = random_pin(&freshpin);
        if (rc == HSMCA_OK)
            rc = seal_token(te, x->fresh, uri, c->e.epoch, c->e.m, l, &freshpin);
        te->fresh = 1;
        c->ntok++;
        if (rc != HSMCA_OK)
            goto out;
        json_array_append_new(labels, json_string(x->fresh));
    }
    /* 2. write ahead: the epoch with both PINs of every rotated token */
    rc = epoch_detail(c);
    if (rc == HSMCA_OK) {
        json_object_set(c->detail, "tokens", labels);
        json_object_set_new(c->detail, "request_id", json_string(x->r.id));
        rc = hsmca_q_audit_ex(q, NULL, "quorum.epoch", "quorum", "intent", c->detail, apply_epoch,
                              c, 0, &ir);
    }
    if (rc != HSMCA_OK)
        goto out;
    /* 3. the token changes */
    for (i = 0; i < c->ntok; i++) {
        if (!c->tok[i].rotated)
            continue;
        if (c->tok[i].fresh) {
            set_rc = x->ex->token_init(x->ex->arg, x->fresh, &freshpin);
            set_ok[i] = set_rc == HSMCA_OK;
            if (set_rc != HSMCA_OK) {
                hsmca_log(HSMCA_LOG_ERROR, "quorum", "token-init-failed", "token=%s code=%s",
                          x->fresh, hsmca_err_code(set_rc));
                rc = set_rc;
            }
            continue;
        }
        j = tok_of[i];
        set_rc = hsmca_token_set_pin(x->tok[j], x->live_alt[j] ? &x->alt_pin[j] : &x->pin[j],
                                     &newpin[j]);
        set_ok[i] = set_rc == HSMCA_OK;
        if (set_rc != HSMCA_OK) {
            /* this token keeps both PINs reachable: the one it answered to, and the new one */
            hsmca_log(HSMCA_LOG_ERROR, "quorum", "set-pin-failed", "token=%s code=%s", x->label[j],
                      hsmca_err_code(set_rc));
            rc = set_rc;
        }
    }
    /* 4. confirm (closes the intent) */
    res = json_object();
    for (i = 0; res != NULL && i < c->ntok; i++) {
        if (c->tok[i].rotated)
            json_object_set_new(res, c->tok[i].t.label,
                                json_string(c->tok[i].fresh ? (set_ok[i] ? "joined" : "not-joined")
                                            : set_ok[i]     ? "rotated"
                                                            : "kept"));
    }
    conf.c = c;
    conf.set_ok = set_ok;
    {
        json_t *d = res != NULL
                        ? json_pack("{s:I, s:O}", "epoch", (json_int_t)c->e.epoch, "tokens", res)
                        : NULL;
        enum hsmca_err erc = d != NULL ? hsmca_q_audit_ex(q, NULL, "quorum.rotate", "quorum",
                                                          rc == HSMCA_OK ? "ok" : "failed", d,
                                                          apply_confirm, &conf, ir.seq, NULL)
                                       : HSMCA_E_NOMEM;

        json_decref(d);
        if (erc != HSMCA_OK) {
            /* the epoch stands with both PINs reachable: the next operation confirms */
            hsmca_log(HSMCA_LOG_ERROR, "quorum", "rotation-unconfirmed",
                      "epoch=%llu code=%s reason=\"the token answers to the new or the previous "
                      "PIN; the next quorum operation on it confirms which\"",
                      (unsigned long long)c->e.epoch, hsmca_err_code(erc));
            if (rc == HSMCA_OK)
                rc = erc;
        }
    }
out:
    for (j = 0; j < HSMCA_QUORUM_TOKENS_MAX; j++)
        hsmca_secret_clear(&newpin[j]);
    hsmca_secret_clear(&freshpin);
    json_decref(labels);
    json_decref(res);
    hsmca_qapprover_clear(&enrol);
    epoch_change_free(c, l);
    free(all);
    return rc;
}

/*
 * Does a request made in epoch req_epoch under policy req_policy_hash still hold in epoch cur?
 * Yes when nothing it relies on changed since: the same policy and the same approvers (names and
 * keys). An epoch that only rotated PINs (every ca.create, ca.activate, token.enroll...) leaves
 * other pending requests usable: their tokens' shares are read at each token's own epoch.
 */
int
hsmca_q_epoch_holds(struct hsmca_quorum *q, uint64_t req_epoch, const char *req_policy_hash,
                    const struct hsmca_qepoch *cur)
{
    struct approver_list *a, *b;
    int same = 0;
    size_t i;

    if (cur->epoch == req_epoch)
        return strcmp(cur->policy_hash, req_policy_hash) == 0;
    if (cur->epoch < req_epoch || strcmp(cur->policy_hash, req_policy_hash) != 0)
        return 0;
    a = calloc(1, sizeof(*a));
    b = calloc(1, sizeof(*b));
    if (a != NULL && b != NULL &&
        hsmca_q_active_approvers(hsmca_q_rd(q), req_epoch, a) == HSMCA_OK &&
        hsmca_q_active_approvers(hsmca_q_rd(q), cur->epoch, b) == HSMCA_OK && a->n == b->n) {
        same = 1;
        for (i = 0; same && i < a->n; i++)
            same = strcmp(a->a[i].name, b->a[i].name) == 0 &&
                   memcmp(a->a[i].fingerprint, b->a[i].fingerprint, HSMCA_SHA256_LEN) == 0;
    }
    if (a != NULL)
        hsmca_q_approver_list_clear(a);
    if (b != NULL)
        hsmca_q_approver_list_clear(b);
    free(a);
    free(b);
    return same;
}
