/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_ops.c -- the quorum's operation table: per operation, the check of its params at request
 * time, and what execution does with the tokens logged in (quorum_int.h, struct hsmca_qop).
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
#include "hsmca/sizes.h"
#include "hsmca/store_quorum.h"
#include "hsmca/store_windows.h"
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h"
#include "quorum_mdl.h"
#include "quorum_revoke.h"

/* Verify an enrolment proof of possession. */
static int
pop_valid(const char *name, const unsigned char *spki, size_t spki_len, const char *serial,
          const unsigned char *sig, size_t sig_len, EVP_PKEY *pub)
{
    unsigned char d[HSMCA_SHA256_LEN];

    if (hsmca_q_sha256v(d, POP_DOMAIN, sizeof(POP_DOMAIN), name, strlen(name) + 1, spki, spki_len,
                        serial, strlen(serial), (const void *)NULL) != 0)
        return 0;
    return hsmca_approval_sig_valid(pub, d, sig, sig_len); /* an approval's signature form */
}

struct dup_ctx {
    const char *name;
    const unsigned char *fpr;
    const char *serial;
    int dup;
};

static enum hsmca_err
find_dup(void *arg, const struct hsmca_qapprover *r)
{
    struct dup_ctx *c = arg;

    /* names are never reused; keys and serials of removed approvers neither (one person one key) */
    if (strcmp(r->name, c->name) == 0 || memcmp(r->fingerprint, c->fpr, HSMCA_SHA256_LEN) == 0 ||
        (c->serial[0] != '\0' && strcmp(r->token_serial, c->serial) == 0))
        c->dup = 1;
    return HSMCA_OK;
}

/* Check an approver.enroll params object; on OK fill *rec (caller clears). */
static enum hsmca_err
enrol_params(struct hsmca_store *st, json_t *params, struct hsmca_qapprover *rec)
{
    const char *name = NULL, *spki_b64 = NULL, *serial = NULL, *pop_b64 = NULL;
    unsigned char *spki = NULL, *pop = NULL;
    size_t spki_len = 0, pop_len = 0;
    EVP_PKEY *pub = NULL;
    struct dup_ctx d;
    enum hsmca_err rc = HSMCA_E_QUORUM_PARAMS;

    memset(rec, 0, sizeof(*rec));
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s, s:s, s:s}", "name", &name, "spki",
                       &spki_b64, "token_serial", &serial, "pop", &pop_b64) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    if (!hsmca_q_name_ok(name) || strlen(serial) > HSMCA_TOKEN_SERIAL_MAX)
        return HSMCA_E_QUORUM_PARAMS;
    if (hsmca_b64_decode(spki_b64, 512, &spki, &spki_len) != HSMCA_OK ||
        hsmca_b64_decode(pop_b64, HSMCA_ECDSA_P256_DER_MAX, &pop, &pop_len) != HSMCA_OK)
        goto out;
    pub = hsmca_q_spki_parse(spki, spki_len);
    if (pub == NULL)
        goto out;
    if (!pop_valid(name, spki, spki_len, serial, pop, pop_len, pub)) {
        rc = HSMCA_E_QUORUM_POP_INVALID;
        goto out;
    }
    snprintf(rec->name, sizeof(rec->name), "%s", name);
    snprintf(rec->token_serial, sizeof(rec->token_serial), "%s", serial);
    SHA256(spki, spki_len, rec->fingerprint);
    d.name = rec->name;
    d.fpr = rec->fingerprint;
    d.serial = rec->token_serial;
    d.dup = 0;
    rc = hsmca_store_qapprover_list(st, find_dup, &d);
    if (rc != HSMCA_OK)
        goto out;
    if (d.dup) {
        rc = HSMCA_E_QUORUM_APPROVER_DUPLICATE;
        goto out;
    }
    rec->spki = spki;
    rec->spki_len = spki_len;
    spki = NULL;
    rc = HSMCA_OK;
out:
    free(spki);
    free(pop);
    EVP_PKEY_free(pub);
    return rc;
}

static enum hsmca_err
act_create_paa(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    return hsmca_qca_act_create(q, x, ex, 1);
}

static enum hsmca_err
act_create_pai(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    return hsmca_qca_act_create(q, x, ex, 0);
}

/* ---- checks at request time ---- */

static enum hsmca_err
check_create_paa(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                 struct labels *need)
{
    return hsmca_qca_check_create(q, params, need, 1);
}

static enum hsmca_err
check_create_pai(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                 struct labels *need)
{
    return hsmca_qca_check_create(q, params, need, 0);
}

static enum hsmca_err
check_activate(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
               struct labels *need)
{
    const char *ca = NULL, *win = NULL;
    json_int_t until = 0, max = 0;
    json_t *nodes = NULL;
    struct hsmca_ca_rec rec;
    enum hsmca_err rc;

    if (json_object_get(params, "nodes") != NULL && json_object_get(params, "window") != NULL)
        return HSMCA_E_QUORUM_NODES_INVALID; /* a node joins a window by a request of its own */
    /* {"ca", "window"}: this node joins an open window shared through the store */
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s}", "ca", &ca, "window", &win) == 0) {
        struct hsmca_window_rec w;

        if (hsmca_store_window_get(hsmca_q_rd(q), win, &w) != HSMCA_OK || strcmp(w.ca, ca) != 0 ||
            w.until_ms <= hsmca_q_now_ms(q) || w.used >= w.max_dacs)
            return HSMCA_E_QUORUM_PARAMS; /* no such window open for this CA */
        until = w.until_ms;
        max = (json_int_t)w.max_dacs;
    } else if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:I, s:I, s?o}", "ca", &ca, "until",
                              &until, "max_dacs", &max, "nodes", &nodes) != 0) {
        return HSMCA_E_QUORUM_PARAMS;
    }
    if (nodes != NULL) {
        rc = hsmca_q_nodes_check(q, nodes); /* several nodes, one approval (quorum_nodes.c) */
        if (rc != HSMCA_OK)
            return rc;
    }
    if (until <= hsmca_q_now_ms(q) || max < 1 || max > 100000000)
        return HSMCA_E_QUORUM_PARAMS;
    if (!hsmca_ca_id_valid(ca) ||
        hsmca_q_ca_token_label(hsmca_q_rd(q), ca, need->v[0], &rec) != HSMCA_OK)
        return HSMCA_E_QUORUM_PARAMS;
    rc = strcmp(rec.kind, "pai") == 0 && rec.cert_der != NULL ? HSMCA_OK : HSMCA_E_QUORUM_PARAMS;
    if (rc == HSMCA_OK && rec.revoked)
        rc = HSMCA_E_REVOKE_CA_REVOKED; /* a revoked PAI never opens a window again */
    if (rc == HSMCA_OK)
        rc = hsmca_qca_superseded(hsmca_q_rd(q), ca); /* renewed: its successor opens windows */
    hsmca_ca_rec_clear(&rec);
    if (rc != HSMCA_OK)
        return rc;
    need->n = 1;
    return HSMCA_OK;
}

/* ca.revoke, crl.sign: quorum_revoke.c checks the params and names the signing CA */
static enum hsmca_err
check_revocation(struct hsmca_quorum *q, const char *op, json_t *params, struct labels *need)
{
    char signer[HSMCA_CA_ID_MAX + 1];
    enum hsmca_err rc;

    rc = hsmca_qop_revocation_params(hsmca_q_rd(q), op, params, hsmca_q_now_ms(q), signer);
    if (rc == HSMCA_OK &&
        hsmca_q_ca_token_label(hsmca_q_rd(q), signer, need->v[0], NULL) != HSMCA_OK)
        rc = HSMCA_E_QUORUM_PARAMS; /* the signer's token is not under quorum */
    if (rc != HSMCA_OK)
        return rc;
    need->n = 1;
    return HSMCA_OK;
}

static enum hsmca_err
check_revoke(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
             struct labels *need)
{
    return check_revocation(q, "ca.revoke", params, need);
}

static enum hsmca_err
check_crl_sign(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
               struct labels *need)
{
    return check_revocation(q, "crl.sign", params, need);
}

/* The number of approvers active in epoch, and whether name (may be NULL) is one of them. */
static enum hsmca_err
active_count(struct hsmca_quorum *q, uint64_t epoch, const char *name, size_t *n, int *found)
{
    struct approver_list *l = calloc(1, sizeof(*l));
    enum hsmca_err rc;
    size_t i;

    if (l == NULL)
        return HSMCA_E_NOMEM;
    rc = hsmca_q_active_approvers(hsmca_q_rd(q), epoch, l);
    *n = l->n;
    for (i = 0; rc == HSMCA_OK && name != NULL && i < l->n; i++)
        *found |= strcmp(l->a[i].name, name) == 0;
    hsmca_q_approver_list_clear(l);
    free(l);
    return rc;
}

static enum hsmca_err
check_enroll(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
             struct labels *need)
{
    struct hsmca_qapprover rec;
    enum hsmca_err rc;
    size_t n = 0;

    rc = enrol_params(hsmca_q_rd(q), params, &rec);
    hsmca_qapprover_clear(&rec);
    if (rc == HSMCA_OK)
        rc = active_count(q, e->epoch, NULL, &n, NULL);
    if (rc == HSMCA_OK && n + 1 > HSMCA_QUORUM_APPROVERS_MAX)
        rc = HSMCA_E_QUORUM_PARAMS;
    return rc;
}

static enum hsmca_err
check_remove(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
             struct labels *need)
{
    const char *name = NULL;
    enum hsmca_err rc;
    int found = 0;
    size_t n = 0;

    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s}", "name", &name) != 0 ||
        !hsmca_q_name_ok(name))
        return HSMCA_E_QUORUM_PARAMS;
    rc = active_count(q, e->epoch, name, &n, &found);
    if (rc == HSMCA_OK && !found)
        rc = HSMCA_E_QUORUM_APPROVER_INACTIVE;
    /* every threshold must stay reachable by the approvers left */
    if (rc == HSMCA_OK &&
        hsmca_quorum_policy_check(e->policy, strlen(e->policy), e->m, (unsigned)n - 1) != HSMCA_OK)
        rc = HSMCA_E_QUORUM_TOO_FEW_APPROVERS;
    return rc;
}

static enum hsmca_err
check_policy(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
             struct labels *need)
{
    json_t *pol = NULL;
    char *text = NULL;
    enum hsmca_err rc = HSMCA_E_QUORUM_PARAMS;
    size_t n = 0;

    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:o}", "policy", &pol) == 0) {
        text = json_dumps(pol, JSON_COMPACT | JSON_SORT_KEYS);
        rc = active_count(q, e->epoch, NULL, &n, NULL);
        if (rc == HSMCA_OK)
            rc = text == NULL ? HSMCA_E_NOMEM
                              : hsmca_quorum_policy_check(text, strlen(text), e->m, (unsigned)n);
    }
    free(text);
    return rc;
}

/* ---- execution: acts, epoch effects, after the rotation ---- */

static enum hsmca_err
act_revocation(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    return hsmca_qop_revocation_execute(q->cfg.audit, hsmca_q_rd(q), x->v.op, x->v.params, x->r.id,
                                        x->tok[0], ex, hsmca_q_now_ms(q), &x->result);
}

/* approver.enroll: the new approver joins the new epoch's set */
static enum hsmca_err
epoch_enroll(struct hsmca_quorum *q, const struct exec_state *x, struct epoch_change *c,
             struct approver_list *l, struct hsmca_qapprover *enrol)
{
    json_t *p = json_deep_copy(x->v.params);
    enum hsmca_err rc;

    if (p != NULL)
        json_object_del(p, "tokens");
    rc = p != NULL ? enrol_params(hsmca_q_rd(q), p, enrol) : HSMCA_E_NOMEM;
    json_decref(p);
    if (rc != HSMCA_OK)
        return rc;
    enrol->since_epoch = c->e.epoch;
    l->a[l->n] = *enrol;
    l->a[l->n].spki = malloc(enrol->spki_len);
    if (l->a[l->n].spki == NULL)
        return HSMCA_E_NOMEM;
    memcpy(l->a[l->n].spki, enrol->spki, enrol->spki_len);
    l->n++;
    c->enrol = enrol;
    return HSMCA_OK;
}

/* approver.remove: the approver leaves the new epoch's set */
static enum hsmca_err
epoch_remove(struct hsmca_quorum *q, const struct exec_state *x, struct epoch_change *c,
             struct approver_list *l, struct hsmca_qapprover *enrol)
{
    const char *remove = json_string_value(json_object_get(x->v.params, "name"));
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (strcmp(l->a[i].name, remove) == 0) {
            hsmca_qapprover_clear(&l->a[i]);
            memmove(&l->a[i], &l->a[i + 1], (l->n - i - 1) * sizeof(l->a[0]));
            l->n--;
            break;
        }
    }
    c->remove = remove;
    return HSMCA_OK;
}

/* policy.update: the new epoch's policy */
static enum hsmca_err
epoch_policy(struct hsmca_quorum *q, const struct exec_state *x, struct epoch_change *c,
             struct approver_list *l, struct hsmca_qapprover *enrol)
{
    char *text = json_dumps(json_object_get(x->v.params, "policy"), JSON_COMPACT | JSON_SORT_KEYS);
    enum hsmca_err rc;

    free(c->e.policy);
    c->e.policy = NULL;
    rc = text != NULL ? hsmca_q_policy_canon(text, strlen(text), c->e.m, l->n, &c->e.policy,
                                             c->e.policy_hash)
                      : HSMCA_E_NOMEM;
    free(text);
    return rc;
}

static int
can_activate(const struct hsmca_quorum_exec *ex)
{
    return ex->activate != NULL;
}

/* ca.activate naming several nodes: before the rotation, every other named node logs in with
 * the PIN it rebuilds from its own shares (quorum_nodes.c); the one rotation comes after */
static enum hsmca_err
act_activate(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    (void)ex;
    if (json_object_get(x->v.params, "nodes") == NULL)
        return HSMCA_OK;
    return hsmca_q_nodes_login(q, x);
}

/* ca.activate: the PAI's signing window opens (its token stays logged in) */
static enum hsmca_err
after_activate(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    json_int_t until = 0, max = 0;
    const char *ca = NULL, *win = NULL;
    enum hsmca_err rc;

    /* a window shared by the nodes of the store: opened under this request's id, or joined */
    if (json_unpack(x->v.params, "{s:s, s:s}", "ca", &ca, "window", &win) == 0) {
        if (ex->activate_shared == NULL)
            return HSMCA_E_QUORUM_PARAMS;
        rc = ex->activate_shared(ex->arg, ca, win, 1, 0, 0);
    } else if (json_unpack(x->v.params, "{s:s, s:I, s:I}", "ca", &ca, "until", &until, "max_dacs",
                           &max) != 0) {
        return HSMCA_E_QUORUM_PARAMS;
    } else if (ex->activate_shared != NULL) {
        win = x->r.id;
        rc = ex->activate_shared(ex->arg, ca, win, 0, (int64_t)until, (uint64_t)max);
    } else {
        rc = ex->activate(ex->arg, ca, (int64_t)until, (uint64_t)max);
    }
    x->activated = rc == HSMCA_OK;
    if (x->activated && win != NULL) {
        struct hsmca_window_rec w;

        if (hsmca_store_window_get(hsmca_q_rd(q), win, &w) == HSMCA_OK) {
            until = w.until_ms;
            max = (json_int_t)w.max_dacs;
        }
        x->result = json_pack("{s:s, s:I, s:I, s:s}", "activated", ca, "until", until, "max_dacs",
                              max, "window", win);
    } else if (x->activated) {
        x->result = json_pack("{s:s, s:I, s:I}", "activated", ca, "until", until, "max_dacs", max);
    }
    if (x->result != NULL && x->nodes != NULL)
        json_object_set(x->result, "nodes", x->nodes);
    return rc;
}

/* ---- token.enroll: a free token joins the quorum's custody (docs/lifecycle.md) ---- */

struct enrol_token_ctx {
    const char *label;
    struct labels *need;
    int dup;
};

static enum hsmca_err
enrol_token_other(void *arg, const struct hsmca_qtoken *t)
{
    struct enrol_token_ctx *c = arg;

    if (strcmp(t->label, c->label) == 0) {
        c->dup = 1;
        return HSMCA_OK;
    }
    if (c->need->n >= HSMCA_QUORUM_TOKENS_MAX - 1)
        return HSMCA_E_QUORUM_PARAMS; /* no room for one more token */
    snprintf(c->need->v[c->need->n++], sizeof(c->need->v[0]), "%s", t->label);
    return HSMCA_OK;
}

/*
 * {"token": LABEL}: a label no token under quorum has (hsmcad checks that the module has no token
 * with it either). The approvals prove themselves on every token already under quorum: the
 * execution logs in to each (their PINs rotate as in every operation) and the new token's PIN is
 * split and sealed to the current approvers in the same new epoch.
 */
static enum hsmca_err
check_token_enroll(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                   struct labels *need)
{
    struct enrol_token_ctx c;
    const char *label = NULL;
    enum hsmca_err rc;
    size_t i, n;

    (void)e;
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s}", "token", &label) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    n = strlen(label);
    if (n == 0 || n > HSMCA_TOKEN_LABEL_MAX)
        return HSMCA_E_QUORUM_PARAMS;
    for (i = 0; i < n; i++) {
        if (label[i] <= ' ' || label[i] > '~' || label[i] == ';' || label[i] == '%' ||
            label[i] == '?' || label[i] == '/')
            return HSMCA_E_QUORUM_PARAMS;
    }
    c.label = label;
    c.need = need;
    c.dup = 0;
    rc = hsmca_store_qtoken_list(hsmca_q_rd(q), enrol_token_other, &c);
    if (rc != HSMCA_OK)
        return rc;
    if (c.dup || need->n == 0)
        return HSMCA_E_QUORUM_PARAMS; /* under quorum already, or no quorum to prove */
    return HSMCA_OK;
}

static int
can_token_init(const struct hsmca_quorum_exec *ex)
{
    return ex->token_init != NULL;
}

/* the rotation that follows seals the new token's PIN and initialises it (quorum_epoch.c) */
static enum hsmca_err
act_token_enroll(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    const char *label = json_string_value(json_object_get(x->v.params, "token"));

    (void)q;
    (void)ex;
    if (label == NULL)
        return HSMCA_E_QUORUM_PARAMS;
    snprintf(x->fresh, sizeof(x->fresh), "%s", label);
    return HSMCA_OK;
}

static enum hsmca_err
after_token_enroll(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    (void)q;
    (void)ex;
    x->result = json_pack("{s:s}", "enrolled", x->fresh);
    return x->result != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
}

/* ---- the table ---- */

/*
 * One entry per operation. To add one (an mDL issuer CA, a new CA token's enrolment...):
 *   1. write its check (params strict: json_unpack_ex with JSON_STRICT; name the tokens it logs
 *      in to in need, in the order act finds them in x->tok, or set all_tokens) and the hooks
 *      it needs: act for
 *      work with the tokens logged in, epoch for a change of approvers or policy, after for
 *      what must follow a successful PIN rotation, can_run when it needs an executor hook
 *      (struct hsmca_quorum_exec); a big one goes in its own quorum_<area>.c, as
 *      quorum_revoke.c does;
 *   2. add its entry below (the order matters nowhere), with threshold_of naming an existing op
 *      so that the policies written before it still load (NULL: every policy must name it);
 *   3. document it in quorum.h's operation list, docs/design.md "Quorum", docs/usage.md,
 *      docs/api/openapi.json (the op enum of POST /v1/requests and its params schema) and
 *      `hsmca help`'s list (src/hsmca/cmd_ceremony.c); test it in tests/unit/test_quorum.c.
 * hsmca_audit_verify re-checks any op's approvals by name alone: nothing to add there.
 */
static const struct hsmca_qop ops[] = {
    {.name = "ca.create_paa",
     .check = check_create_paa,
     .preview = hsmca_qca_preview_paa,
     .act = act_create_paa},
    {.name = "ca.create_pai",
     .check = check_create_pai,
     .preview = hsmca_qca_preview_pai,
     .act = act_create_pai},
    /* renewal and re-key (quorum_ca.c, docs/renewal.md) */
    {.name = "ca.renew",
     .threshold_of = "ca.create_pai",
     .check = hsmca_qca_check_renew,
     .preview = hsmca_qca_preview,
     .act = hsmca_qca_act_renew,
     .after = hsmca_qca_after_renew},
    {.name = "ca.rekey",
     .threshold_of = "ca.create_pai",
     .check = hsmca_qca_check_rekey,
     .preview = hsmca_qca_preview,
     .act = hsmca_qca_act_renew,
     .after = hsmca_qca_after_renew},
    {.name = "ca.activate",
     .check = check_activate,
     .can_run = can_activate,
     .act = act_activate,
     .after = after_activate},
    {.name = "approver.enroll", .all_tokens = 1, .check = check_enroll, .epoch = epoch_enroll},
    {.name = "approver.remove", .all_tokens = 1, .check = check_remove, .epoch = epoch_remove},
    {.name = "policy.update", .all_tokens = 1, .check = check_policy, .epoch = epoch_policy},
    {.name = "ca.revoke",
     .threshold_of = "ca.create_pai",
     .check = check_revoke,
     .act = act_revocation},
    {.name = "crl.sign",
     .threshold_of = "ca.create_pai",
     .check = check_crl_sign,
     .act = act_revocation},
    {.name = "token.enroll",
     .threshold_of = "approver.enroll",
     .check = check_token_enroll,
     .can_run = can_token_init,
     .act = act_token_enroll,
     .after = after_token_enroll},
    /* mobile driving licences (quorum_mdl.c, docs/mdl.md) */
    {.name = "mdl.create_iaca",
     .threshold_of = "ca.create_paa",
     .check = hsmca_qmdl_check_create_iaca,
     .can_run = hsmca_qmdl_can_create,
     .act = hsmca_qmdl_act_create_iaca},
    {.name = "mdl.create_ds",
     .threshold_of = "ca.create_pai",
     .check = hsmca_qmdl_check_create_ds,
     .can_run = hsmca_qmdl_can_create,
     .act = hsmca_qmdl_act_create_ds},
    {.name = "mdl.activate",
     .threshold_of = "ca.activate",
     .check = hsmca_qmdl_check_activate,
     .can_run = hsmca_qmdl_can_activate,
     .after = hsmca_qmdl_after_activate},
    {.name = "mdl.revoke",
     .threshold_of = "ca.create_pai",
     .check = hsmca_qmdl_check_revoke,
     .act = hsmca_qmdl_act_revoke},
    {.name = "mdl.crl_sign",
     .threshold_of = "ca.create_pai",
     .check = hsmca_qmdl_check_crl_sign,
     .act = hsmca_qmdl_act_crl_sign},
};

const struct hsmca_qop *
hsmca_qop_at(size_t i)
{
    return i < sizeof(ops) / sizeof(ops[0]) ? &ops[i] : NULL;
}

const struct hsmca_qop *
hsmca_qop_find(const char *name)
{
    size_t i;

    for (i = 0; name != NULL && i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strcmp(name, ops[i].name) == 0)
            return &ops[i];
    }
    return NULL;
}
