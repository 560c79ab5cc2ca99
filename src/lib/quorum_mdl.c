/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_mdl.c -- the mDL operations of the quorum's table (quorum_ops.c, docs/mdl.md):
 *   mdl.create_iaca {"ca", "token", "key_label", "country", "state"?, "org"?, "cn"?}
 *   mdl.create_ds   {"ca", "iaca", "token" + "key_label" | "csr" (base64 DER), "cn"?}
 *   mdl.activate    {"ca", "until": ms, "max_signatures"}: opens a DS's signing window (in the
 *                   store, its id the request's, when the executor shares windows), or
 *                   {"ca", "window": id}: this node joins that open window (its own approval)
 *   mdl.revoke      {"ca", "reason"?, "invalidity"?: ms}
 *   mdl.crl_sign    {"ca"}
 * The checks run at request time against the store; the acts run with the tokens logged in and
 * call mdl_ca.c, which audits each step with its store change. An IACA gets a token of its own
 * (no other CA, Matter or mDL, has a key there); a DS's token is never its IACA's. The entries
 * of the table (quorum_ops.c) name the hooks below (quorum_mdl.h).
 */
#include "quorum_mdl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/b64.h"
#include "hsmca/crl.h"
#include "hsmca/csr.h"
#include "hsmca/mdl.h"
#include "hsmca/mdl_ca.h"
#include "hsmca/quorum.h"
#include "hsmca/store_certs.h"
#include "hsmca/store_mdl.h"
#include "hsmca/store_quorum.h"
#include "hsmca/store_windows.h"
#include "hsmca/util.h"

#include "quorum_int.h"

#define CSR_B64_MAX 8192

static int
label_ok(const char *s)
{
    size_t i, n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > HSMCA_KEY_LABEL_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == ';' || s[i] == '%' || s[i] == '?')
            return 0;
    return 1;
}

static int
text_ok(const char *s)
{
    return s == NULL || (strlen(s) >= 1 && strlen(s) <= HSMCA_MDL_NAME_MAX);
}

/* ---- who uses a token ---- */

struct uses {
    const char *uri;
    int used;
};

static enum hsmca_err
matter_use(void *arg, const struct hsmca_ca_rec *r)
{
    struct uses *u = arg;

    u->used |= strcmp(r->token_uri, u->uri) == 0;
    return HSMCA_OK;
}

static enum hsmca_err
mdl_use(void *arg, const struct hsmca_mdl_ca_rec *r)
{
    struct uses *u = arg;

    u->used |= strcmp(r->token_uri, u->uri) == 0;
    return HSMCA_OK;
}

/* 1 when a CA of either kind keeps its key in the token with this URI. */
static int
token_used(struct hsmca_store *st, const char *uri)
{
    struct uses u = {uri, 0};

    if (hsmca_store_ca_list(st, matter_use, &u) != HSMCA_OK ||
        hsmca_store_mdl_ca_list(st, mdl_use, &u) != HSMCA_OK)
        return 1;
    return u.used;
}

struct by_uri {
    const char *uri;
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
};

static enum hsmca_err
find_uri(void *arg, const struct hsmca_qtoken *t)
{
    struct by_uri *b = arg;

    if (strcmp(t->uri, b->uri) == 0)
        snprintf(b->label, sizeof(b->label), "%s", t->label);
    return HSMCA_OK;
}

/* The quorum label of mDL CA id's token, and its record (caller clears). */
static enum hsmca_err
mdl_ca_token(struct hsmca_store *st, const char *id, char label[HSMCA_TOKEN_LABEL_MAX + 1],
             struct hsmca_mdl_ca_rec *rec)
{
    struct by_uri b;
    enum hsmca_err rc;

    memset(rec, 0, sizeof(*rec));
    if (!hsmca_ca_id_valid(id))
        return HSMCA_E_QUORUM_PARAMS;
    rc = hsmca_store_mdl_ca_get(st, id, rec);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOT_FOUND ? HSMCA_E_QUORUM_PARAMS : rc;
    memset(&b, 0, sizeof(b));
    b.uri = rec->token_uri;
    rc = rec->token_uri[0] != '\0' ? hsmca_store_qtoken_list(st, find_uri, &b) : HSMCA_OK;
    if (rc == HSMCA_OK && b.label[0] == '\0')
        rc = HSMCA_E_QUORUM_PARAMS; /* no key here, or its token is not under quorum */
    if (rc != HSMCA_OK) {
        hsmca_mdl_ca_rec_clear(rec);
        return rc;
    }
    snprintf(label, HSMCA_TOKEN_LABEL_MAX + 1, "%s", b.label);
    return HSMCA_OK;
}

static int
id_free(struct hsmca_store *st, const char *id)
{
    struct hsmca_ca_rec m;
    struct hsmca_mdl_ca_rec r;
    enum hsmca_err a, b;

    memset(&m, 0, sizeof(m));
    memset(&r, 0, sizeof(r));
    a = hsmca_store_ca_get(st, id, &m);
    b = hsmca_store_mdl_ca_get(st, id, &r);
    hsmca_ca_rec_clear(&m);
    hsmca_mdl_ca_rec_clear(&r);
    return a == HSMCA_E_NOT_FOUND && b == HSMCA_E_NOT_FOUND;
}

/* ---- checks ---- */

enum hsmca_err
hsmca_qmdl_check_create_iaca(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                             struct labels *need)
{
    struct hsmca_store *st = hsmca_q_rd(q);
    const char *ca = NULL, *token = NULL, *key_label = NULL, *country = NULL, *state = NULL,
               *org = NULL, *cn = NULL;
    struct hsmca_qtoken qt;

    (void)e;
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s, s:s, s:s, s?s, s?s, s?s}", "ca", &ca,
                       "token", &token, "key_label", &key_label, "country", &country, "state",
                       &state, "org", &org, "cn", &cn) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    if (!hsmca_ca_id_valid(ca) || !label_ok(key_label) || strlen(country) != 2 ||
        country[0] < 'A' || country[0] > 'Z' || country[1] < 'A' || country[1] > 'Z' ||
        !text_ok(state) || !text_ok(org) || !text_ok(cn) || !id_free(st, ca))
        return HSMCA_E_QUORUM_PARAMS;
    memset(&qt, 0, sizeof(qt));
    if (hsmca_store_qtoken_get(st, token, &qt) != HSMCA_OK)
        return HSMCA_E_QUORUM_PARAMS; /* not a token under quorum */
    if (token_used(st, qt.uri))
        return HSMCA_E_QUORUM_PARAMS; /* an IACA has a token of its own */
    snprintf(need->v[0], sizeof(need->v[0]), "%s", token);
    need->n = 1;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_qmdl_check_create_ds(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                           struct labels *need)
{
    struct hsmca_store *st = hsmca_q_rd(q);
    const char *ca = NULL, *iaca = NULL, *token = NULL, *key_label = NULL, *csr = NULL, *cn = NULL;
    struct hsmca_mdl_ca_rec irec;
    struct hsmca_qtoken qt;
    enum hsmca_err rc;

    (void)e;
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s, s?s, s?s, s?s, s?s}", "ca", &ca,
                       "iaca", &iaca, "token", &token, "key_label", &key_label, "csr", &csr, "cn",
                       &cn) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    if (!hsmca_ca_id_valid(ca) || !text_ok(cn) || !id_free(st, ca) ||
        (csr != NULL) == (token != NULL) || (token != NULL) != (key_label != NULL) ||
        (key_label != NULL && !label_ok(key_label)))
        return HSMCA_E_QUORUM_PARAMS;
    rc = mdl_ca_token(st, iaca, need->v[0], &irec);
    if (rc != HSMCA_OK)
        return rc;
    rc = strcmp(irec.kind, "iaca") == 0 ? HSMCA_OK : HSMCA_E_QUORUM_PARAMS;
    hsmca_mdl_ca_rec_clear(&irec);
    if (rc != HSMCA_OK)
        return rc;
    need->n = 1;
    if (csr != NULL) {
        unsigned char *der = NULL;
        size_t len = 0;
        struct hsmca_csr *c = NULL;

        if (strlen(csr) > CSR_B64_MAX || hsmca_b64_decode(csr, CSR_B64_MAX, &der, &len) != HSMCA_OK)
            return HSMCA_E_QUORUM_PARAMS;
        rc = hsmca_csr_parse(der, len, &c);
        hsmca_csr_free(c);
        free(der);
        return rc == HSMCA_OK ? HSMCA_OK : HSMCA_E_QUORUM_PARAMS;
    }
    memset(&qt, 0, sizeof(qt));
    if (hsmca_store_qtoken_get(st, token, &qt) != HSMCA_OK || strcmp(token, need->v[0]) == 0)
        return HSMCA_E_QUORUM_PARAMS; /* not under quorum, or the IACA's own token */
    {
        struct uses u = {qt.uri, 0};

        if (hsmca_store_ca_list(st, matter_use, &u) != HSMCA_OK || u.used)
            return HSMCA_E_QUORUM_PARAMS; /* a Matter CA's token */
    }
    snprintf(need->v[1], sizeof(need->v[1]), "%s", token);
    need->n = 2;
    return HSMCA_OK;
}

static enum hsmca_err
ds_token(struct hsmca_quorum *q, const char *ca, struct labels *need, int for_window)
{
    struct hsmca_mdl_ca_rec rec;
    enum hsmca_err rc;

    rc = mdl_ca_token(hsmca_q_rd(q), ca, need->v[0], &rec);
    if (rc != HSMCA_OK)
        return rc;
    rc = strcmp(rec.kind, "ds") == 0 ? HSMCA_OK : HSMCA_E_MDL_NOT_DS;
    if (rc == HSMCA_OK && rec.revoked)
        rc = HSMCA_E_REVOKE_CA_REVOKED;
    hsmca_mdl_ca_rec_clear(&rec);
    (void)for_window;
    if (rc == HSMCA_OK)
        need->n = 1;
    return rc;
}

enum hsmca_err
hsmca_qmdl_check_activate(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                          struct labels *need)
{
    const char *ca = NULL, *win = NULL;
    json_int_t until = 0, max = 0;

    (void)e;
    /* {"ca", "window"}: this node joins a DS's open signing window shared through the store */
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s}", "ca", &ca, "window", &win) == 0) {
        struct hsmca_window_rec w;

        if (hsmca_store_mdl_window_get(hsmca_q_rd(q), win, &w) != HSMCA_OK ||
            strcmp(w.ca, ca) != 0 || w.until_ms <= hsmca_q_now_ms(q) || w.used >= w.max_dacs)
            return HSMCA_E_QUORUM_PARAMS; /* no such window open for this DS */
        return ds_token(q, ca, need, 1);
    }
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:I, s:I}", "ca", &ca, "until", &until,
                       "max_signatures", &max) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    if (until <= hsmca_q_now_ms(q) || max < 1 || max > 100000000)
        return HSMCA_E_QUORUM_PARAMS;
    return ds_token(q, ca, need, 1);
}

/* The IACA of DS ca (revocation), or IACA ca itself (CRL), and its token. */
static enum hsmca_err
iaca_of(struct hsmca_quorum *q, const char *ca, int is_ds, char iaca[HSMCA_CA_ID_MAX + 1],
        struct labels *need)
{
    struct hsmca_store *st = hsmca_q_rd(q);
    struct hsmca_mdl_ca_rec rec;
    enum hsmca_err rc;

    memset(&rec, 0, sizeof(rec));
    if (!hsmca_ca_id_valid(ca))
        return HSMCA_E_QUORUM_PARAMS;
    rc = hsmca_store_mdl_ca_get(st, ca, &rec);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOT_FOUND ? HSMCA_E_QUORUM_PARAMS : rc;
    if (is_ds && strcmp(rec.kind, "ds") != 0)
        rc = HSMCA_E_MDL_NOT_DS;
    else if (!is_ds && strcmp(rec.kind, "iaca") != 0)
        rc = HSMCA_E_QUORUM_PARAMS;
    else if (is_ds && rec.revoked)
        rc = HSMCA_E_REVOKE_ALREADY;
    if (rc == HSMCA_OK)
        snprintf(iaca, HSMCA_CA_ID_MAX + 1, "%s", is_ds ? rec.parent : rec.id);
    hsmca_mdl_ca_rec_clear(&rec);
    if (rc != HSMCA_OK)
        return rc;
    rc = mdl_ca_token(st, iaca, need->v[0], &rec);
    hsmca_mdl_ca_rec_clear(&rec);
    if (rc == HSMCA_OK)
        need->n = 1;
    return rc;
}

enum hsmca_err
hsmca_qmdl_check_revoke(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                        struct labels *need)
{
    const char *ca = NULL, *reason = NULL;
    json_int_t inval = 0;
    char iaca[HSMCA_CA_ID_MAX + 1];
    int r = -1;

    (void)e;
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s?s, s?I}", "ca", &ca, "reason", &reason,
                       "invalidity", &inval) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    if ((reason != NULL && hsmca_crl_reason_from_name(reason, &r) != HSMCA_OK) || inval < 0 ||
        inval > hsmca_q_now_ms(q))
        return HSMCA_E_QUORUM_PARAMS;
    return iaca_of(q, ca, 1, iaca, need);
}

enum hsmca_err
hsmca_qmdl_check_crl_sign(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                          struct labels *need)
{
    const char *ca = NULL;
    char iaca[HSMCA_CA_ID_MAX + 1];

    (void)e;
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s}", "ca", &ca) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    return iaca_of(q, ca, 0, iaca, need);
}

/* ---- execution ---- */

int
hsmca_qmdl_can_create(const struct hsmca_quorum_exec *ex)
{
    return ex->mdl_iaca_profile != NULL && ex->mdl_ds_profile != NULL;
}

int
hsmca_qmdl_can_activate(const struct hsmca_quorum_exec *ex)
{
    return ex->mdl_activate != NULL || ex->mdl_activate_shared != NULL;
}

static void
ctx_of(struct hsmca_quorum *q, const struct exec_state *x, const struct hsmca_quorum_exec *ex,
       struct hsmca_mdl_ctx *c)
{
    memset(c, 0, sizeof(*c));
    c->audit = q->cfg.audit;
    c->ro = hsmca_q_rd(q);
    c->iaca_profile = ex->mdl_iaca_profile;
    c->ds_profile = ex->mdl_ds_profile;
    c->request_id = x->v.id;
    c->now_ms = hsmca_q_now_ms(q);
}

/* The new CA as the result, and the executor told. */
static enum hsmca_err
created(struct exec_state *x, const struct hsmca_quorum_exec *ex, struct hsmca_mdl_ca_rec *rec)
{
    enum hsmca_err rc = HSMCA_OK;
    char *b;

    if (ex->mdl_created != NULL)
        rc = ex->mdl_created(ex->mdl_arg, rec);
    if (rc != HSMCA_OK)
        return rc;
    b = hsmca_b64_encode(rec->cert_der, rec->cert_len);
    json_decref(x->result);
    x->result = b != NULL
                    ? json_pack("{s:{s:s, s:s, s:s?, s:s}}", "ca", "id", rec->id, "kind", rec->kind,
                                "parent", rec->parent[0] != '\0' ? rec->parent : NULL, "cert", b)
                    : NULL;
    free(b);
    return x->result != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
}

enum hsmca_err
hsmca_qmdl_act_create_iaca(struct hsmca_quorum *q, struct exec_state *x,
                           const struct hsmca_quorum_exec *ex)
{
    const char *ca = NULL, *token = NULL, *key_label = NULL, *country = NULL, *state = NULL,
               *org = NULL, *cn = NULL;
    struct hsmca_mdl_subject s;
    struct hsmca_mdl_ctx c;
    struct hsmca_mdl_ca_rec rec;
    enum hsmca_err rc;

    if (json_unpack(x->v.params, "{s:s, s:s, s:s, s:s, s?s, s?s, s?s}", "ca", &ca, "token", &token,
                    "key_label", &key_label, "country", &country, "state", &state, "org", &org,
                    "cn", &cn) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    ctx_of(q, x, ex, &c);
    s.country = country;
    s.state = state;
    s.org = org;
    s.cn = cn;
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_mdl_ca_create_iaca(&c, x->tok[0], x->qt[0].uri, ca, key_label, &s, &rec);
    if (rc == HSMCA_OK)
        rc = created(x, ex, &rec);
    hsmca_mdl_ca_rec_clear(&rec);
    return rc;
}

enum hsmca_err
hsmca_qmdl_act_create_ds(struct hsmca_quorum *q, struct exec_state *x,
                         const struct hsmca_quorum_exec *ex)
{
    const char *ca = NULL, *iaca = NULL, *token = NULL, *key_label = NULL, *csr = NULL, *cn = NULL;
    unsigned char *der = NULL;
    size_t len = 0;
    struct hsmca_mdl_ctx c;
    struct hsmca_mdl_ca_rec rec;
    enum hsmca_err rc;

    if (json_unpack(x->v.params, "{s:s, s:s, s?s, s?s, s?s, s?s}", "ca", &ca, "iaca", &iaca,
                    "token", &token, "key_label", &key_label, "csr", &csr, "cn", &cn) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    if (csr != NULL && hsmca_b64_decode(csr, CSR_B64_MAX, &der, &len) != HSMCA_OK)
        return HSMCA_E_QUORUM_PARAMS;
    ctx_of(q, x, ex, &c);
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_mdl_ca_create_ds(&c, x->tok[0], iaca, csr != NULL ? NULL : x->tok[1],
                                csr != NULL ? NULL : x->qt[1].uri, key_label, der, len, ca, cn,
                                &rec);
    if (rc == HSMCA_OK)
        rc = created(x, ex, &rec);
    hsmca_mdl_ca_rec_clear(&rec);
    free(der);
    return rc;
}

/* mdl.activate: the DS's signing window opens (its token stays logged in) */
enum hsmca_err
hsmca_qmdl_after_activate(struct hsmca_quorum *q, struct exec_state *x,
                          const struct hsmca_quorum_exec *ex)
{
    json_int_t until = 0, max = 0;
    const char *ca = NULL, *win = NULL;
    struct hsmca_window_rec w;
    enum hsmca_err rc;

    /* a window shared by the nodes of the store: opened under this request's id, or joined */
    if (json_unpack(x->v.params, "{s:s, s:s}", "ca", &ca, "window", &win) == 0) {
        if (ex->mdl_activate_shared == NULL)
            return HSMCA_E_QUORUM_PARAMS;
        rc = ex->mdl_activate_shared(ex->mdl_arg, ca, win, 1, 0, 0);
    } else if (json_unpack(x->v.params, "{s:s, s:I, s:I}", "ca", &ca, "until", &until,
                           "max_signatures", &max) != 0) {
        return HSMCA_E_QUORUM_PARAMS;
    } else if (ex->mdl_activate_shared != NULL) {
        win = x->r.id;
        rc = ex->mdl_activate_shared(ex->mdl_arg, ca, win, 0, (int64_t)until, (uint64_t)max);
    } else {
        rc = ex->mdl_activate(ex->mdl_arg, ca, (int64_t)until, (uint64_t)max);
    }
    x->activated = rc == HSMCA_OK;
    if (x->activated && win != NULL &&
        hsmca_store_mdl_window_get(hsmca_q_rd(q), win, &w) == HSMCA_OK) {
        until = w.until_ms;
        max = (json_int_t)w.max_dacs;
    }
    if (x->activated)
        x->result = json_pack("{s:s, s:I, s:I, s:s?}", "activated", ca, "until", until,
                              "max_signatures", max, "window", win);
    return rc;
}

static enum hsmca_err
sign_crl(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex,
         const struct hsmca_mdl_ctx *c, const char *iaca)
{
    struct hsmca_crl_policy pol;
    struct hsmca_crl_rec crl;
    enum hsmca_err rc;

    (void)q;
    hsmca_crl_policy_for(ex->crl_policies, iaca, &pol);
    memset(&crl, 0, sizeof(crl));
    rc = hsmca_mdl_crl_sign(c, x->tok[0], iaca, &pol, &crl);
    if (rc == HSMCA_OK) {
        json_t *r = json_pack("{s:s, s:I, s:I}", "ca", iaca, "number", (json_int_t)crl.number,
                              "next_update", (json_int_t)crl.next_update);

        if (r == NULL) {
            rc = HSMCA_E_NOMEM;
        } else if (x->result != NULL) {
            json_object_set_new(x->result, "crl", r);
        } else {
            x->result = json_pack("{s:o}", "crl", r);
        }
    }
    hsmca_crl_rec_clear(&crl);
    return rc;
}

enum hsmca_err
hsmca_qmdl_act_revoke(struct hsmca_quorum *q, struct exec_state *x,
                      const struct hsmca_quorum_exec *ex)
{
    const char *ca = NULL, *reason = NULL;
    json_int_t inval = 0;
    struct hsmca_mdl_ctx c;
    struct hsmca_mdl_ca_rec rec;
    enum hsmca_err rc;
    int r = -1;

    if (json_unpack(x->v.params, "{s:s, s?s, s?I}", "ca", &ca, "reason", &reason, "invalidity",
                    &inval) != 0 ||
        (reason != NULL && hsmca_crl_reason_from_name(reason, &r) != HSMCA_OK))
        return HSMCA_E_QUORUM_PARAMS;
    ctx_of(q, x, ex, &c);
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_store_mdl_ca_get(c.ro, ca, &rec);
    if (rc == HSMCA_OK)
        rc = hsmca_mdl_ca_revoke_ds(&c, ca, r, (int64_t)inval);
    if (rc == HSMCA_OK) {
        if (ex->mdl_revoked != NULL)
            ex->mdl_revoked(ex->mdl_arg, ca);
        x->result = json_pack("{s:s, s:s}", "revoked", ca, "reason",
                              reason != NULL ? reason : "unspecified");
        /* the IACA's token is logged in now: its next CRL lists the DS at once */
        rc = sign_crl(q, x, ex, &c, rec.parent);
    }
    hsmca_mdl_ca_rec_clear(&rec);
    return rc;
}

enum hsmca_err
hsmca_qmdl_act_crl_sign(struct hsmca_quorum *q, struct exec_state *x,
                        const struct hsmca_quorum_exec *ex)
{
    const char *ca = NULL;
    struct hsmca_mdl_ctx c;

    if (json_unpack(x->v.params, "{s:s}", "ca", &ca) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    ctx_of(q, x, ex, &c);
    return sign_crl(q, x, ex, &c, ca);
}
