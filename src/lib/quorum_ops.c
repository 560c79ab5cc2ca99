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
#include "hsmca/store_quorum.h"
#include "hsmca/store_windows.h"
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h"
#include "quorum_mdl.h"
#include "quorum_revoke.h"

static int
key_label_ok(const char *s)
{
    size_t i, n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > HSMCA_KEY_LABEL_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] > '~' || s[i] == ';' || s[i] == '%' || s[i] == '?')
            return 0;
    }
    return 1;
}

/* Verify an enrolment proof of possession. */
static int
pop_valid(const char *name, const unsigned char *spki, size_t spki_len, const char *serial,
          const unsigned char *sig, size_t sig_len, EVP_PKEY *pub)
{
    unsigned char d[32];

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
    if (strcmp(r->name, c->name) == 0 || memcmp(r->fingerprint, c->fpr, 32) == 0 ||
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

struct ca_apply {
    struct hsmca_ca_rec rec;
};

static enum hsmca_err
apply_ca(struct hsmca_store *st, void *arg)
{
    struct ca_apply *a = arg;

    return hsmca_store_ca_put(st, &a->rec);
}

/* Generate a CA key in tok with intent -> effect -> commit entries. */
static enum hsmca_err
ca_keygen(struct hsmca_quorum *q, struct hsmca_token *tok, const char *ca, const char *label,
          const char *key_label, struct hsmca_key **key)
{
    unsigned char id[16];
    char hex[33], target[HSMCA_CA_ID_MAX + 8];
    struct hsmca_audit_receipt ir;
    json_t *d;
    enum hsmca_err rc;

    memset(&ir, 0, sizeof(ir));
    if (RAND_bytes(id, sizeof(id)) != 1)
        return HSMCA_E_RANDOM;
    hsmca_hex_encode(id, sizeof(id), hex, sizeof(hex));
    snprintf(target, sizeof(target), "ca/%s", ca);
    d = json_pack("{s:s, s:s, s:s}", "token", label, "key_label", key_label, "key_id", hex);
    rc = d != NULL ? hsmca_q_audit_ex(q, NULL, "ca.keygen", target, "intent", d, NULL, NULL, 0, &ir)
                   : HSMCA_E_NOMEM;
    if (rc == HSMCA_OK) {
        enum hsmca_err arc;

        rc = hsmca_token_generate_key(tok, key_label, id, sizeof(id), HSMCA_KEY_USAGE_SIGN, key);
        json_object_set_new(d, "code", json_string(hsmca_err_code(rc)));
        arc = hsmca_q_audit_ex(q, NULL, "ca.keygen", target, rc == HSMCA_OK ? "ok" : "failed", d,
                               NULL, NULL, ir.seq, NULL);
        if (arc != HSMCA_OK && rc == HSMCA_OK)
            rc = arc;
    }
    json_decref(d);
    return rc;
}

/* Store a built CA certificate (ca.create entry) and tell the caller. */
static enum hsmca_err
ca_store(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex,
         const char *ca, const char *kind, const char *parent, size_t tok_i, const char *key_label,
         int vid, int pid, X509 *cert, const unsigned char *serial)
{
    struct ca_apply a;
    unsigned char *der = NULL, d[32];
    char hex[65], ser[2 * HSMCA_MATTER_SERIAL_LEN + 1], target[HSMCA_CA_ID_MAX + 8], *b = NULL;
    json_t *detail = NULL;
    enum hsmca_err rc;
    int n;

    memset(&a, 0, sizeof(a));
    n = i2d_X509(cert, &der);
    if (n <= 0)
        return HSMCA_E_INTERNAL;
    snprintf(a.rec.id, sizeof(a.rec.id), "%s", ca);
    snprintf(a.rec.kind, sizeof(a.rec.kind), "%s", kind);
    snprintf(a.rec.parent, sizeof(a.rec.parent), "%s", parent);
    snprintf(a.rec.token_uri, sizeof(a.rec.token_uri), "%s", x->qt[tok_i].uri);
    snprintf(a.rec.key_uri, sizeof(a.rec.key_uri), "%s;object=%s", x->qt[tok_i].uri, key_label);
    a.rec.vid = vid;
    a.rec.pid = pid;
    a.rec.cert_der = der;
    a.rec.cert_len = (size_t)n;
    a.rec.created_ms = hsmca_q_now_ms(q);
    SHA256(der, (size_t)n, d);
    hsmca_q_hex32(d, hex);
    hsmca_hex_encode(serial, HSMCA_MATTER_SERIAL_LEN, ser, sizeof(ser));
    snprintf(target, sizeof(target), "ca/%s", ca);
    detail = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "ca", ca, "kind", kind, "parent", parent,
                       "cert_sha256", hex, "serial", ser, "request_id", x->r.id);
    rc = detail != NULL ? hsmca_q_audit(q, NULL, "ca.create", target, "ok", detail, apply_ca, &a)
                        : HSMCA_E_NOMEM;
    if (rc == HSMCA_OK && ex->ca_created != NULL)
        rc = ex->ca_created(ex->arg, &a.rec);
    if (rc == HSMCA_OK) {
        b = hsmca_b64_encode(der, (size_t)n);
        json_decref(x->result);
        x->result = b != NULL
                        ? json_pack("{s:{s:s, s:s, s:s}}", "ca", "id", ca, "kind", kind, "cert", b)
                        : NULL;
        if (x->result == NULL)
            rc = HSMCA_E_NOMEM;
    }
    free(b);
    json_decref(detail);
    OPENSSL_free(der);
    return rc;
}

static enum hsmca_err
act_create(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex,
           int is_paa)
{
    const char *ca = NULL, *token = NULL, *key_label = NULL, *cn = NULL, *parent = NULL;
    json_int_t vid = -1, pid = -1;
    struct hsmca_matter_ca_subject subj;
    struct hsmca_ca_rec prec;
    struct hsmca_key *key = NULL, *pkey = NULL;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    const unsigned char *p;
    X509 *cert = NULL, *paa = NULL;
    size_t ti = is_paa ? 0 : 1;
    enum hsmca_err rc;

    memset(&prec, 0, sizeof(prec));
    memset(&subj, 0, sizeof(subj));
    if (json_unpack(x->v.params, "{s:s, s?:s, s:s, s:s, s?:s, s?:I, s?:I}", "ca", &ca, "parent",
                    &parent, "token", &token, "key_label", &key_label, "cn", &cn, "vid", &vid,
                    "pid", &pid) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    if ((is_paa ? ex->paa_profile : ex->pai_profile) == NULL)
        return HSMCA_E_QUORUM_OP_UNKNOWN;
    subj.cn = cn;
    subj.has_vid = vid >= 0;
    subj.vid = (uint16_t)(vid >= 0 ? vid : 0);
    subj.has_pid = pid >= 0;
    subj.pid = (uint16_t)(pid >= 0 ? pid : 0);
    rc = ca_keygen(q, x->tok[ti], ca, x->label[ti], key_label, &key);
    if (rc != HSMCA_OK)
        goto out;
    if (is_paa) {
        rc = hsmca_matter_paa_build(ex->paa_profile, &subj, hsmca_key_private(key),
                                    hsmca_key_public(key), time(NULL), serial, &cert);
    } else {
        rc = hsmca_store_ca_get(hsmca_q_rd(q), parent, &prec);
        if (rc != HSMCA_OK)
            goto out;
        p = prec.cert_der;
        paa = p != NULL ? d2i_X509(NULL, &p, (long)prec.cert_len) : NULL;
        if (paa == NULL) {
            rc = HSMCA_E_QUORUM_PARAMS;
            goto out;
        }
        rc = hsmca_token_find_key(x->tok[0], prec.key_uri, &pkey);
        if (rc == HSMCA_OK)
            rc = hsmca_matter_pai_build(ex->pai_profile, &subj, hsmca_key_public(key), paa,
                                        hsmca_key_private(pkey), time(NULL), serial, &cert);
    }
    if (rc != HSMCA_OK)
        goto out;
    rc = ca_store(q, x, ex, ca, is_paa ? "paa" : "pai", is_paa ? "" : parent, ti, key_label,
                  (int)vid, (int)pid, cert, serial);
out:
    X509_free(cert);
    X509_free(paa);
    hsmca_key_free(pkey);
    hsmca_key_free(key);
    hsmca_ca_rec_clear(&prec);
    return rc;
}

static enum hsmca_err
act_create_paa(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    return act_create(q, x, ex, 1);
}

static enum hsmca_err
act_create_pai(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    return act_create(q, x, ex, 0);
}

/* ---- checks at request time ---- */

static enum hsmca_err
check_create(struct hsmca_quorum *q, json_t *params, struct labels *need, int paa)
{
    struct hsmca_store *st = hsmca_q_rd(q);
    const char *ca = NULL, *token = NULL, *key_label = NULL, *cn = NULL, *parent = NULL;
    json_int_t vid = -1, pid = -1;
    struct hsmca_ca_rec rec;
    struct hsmca_qtoken qt;
    enum hsmca_err rc;

    if (paa) {
        if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s, s:s, s?:s, s?:I}", "ca", &ca,
                           "token", &token, "key_label", &key_label, "cn", &cn, "vid", &vid) != 0)
            return HSMCA_E_QUORUM_PARAMS;
    } else if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s, s:s, s:s, s?:s, s:I, s?:I}",
                              "ca", &ca, "parent", &parent, "token", &token, "key_label",
                              &key_label, "cn", &cn, "vid", &vid, "pid", &pid) != 0) {
        return HSMCA_E_QUORUM_PARAMS;
    }
    if (!hsmca_ca_id_valid(ca) || !key_label_ok(key_label) || vid < -1 || vid > 0xffff ||
        pid < -1 || pid > 0xffff ||
        (cn != NULL && (strlen(cn) == 0 || strlen(cn) > HSMCA_MATTER_CN_MAX)))
        return HSMCA_E_QUORUM_PARAMS;
    if (hsmca_store_qtoken_get(st, token, &qt) != HSMCA_OK)
        return HSMCA_E_QUORUM_PARAMS; /* not a token under quorum */
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_store_ca_get(st, ca, &rec);
    hsmca_ca_rec_clear(&rec);
    if (rc == HSMCA_OK)
        return HSMCA_E_QUORUM_PARAMS; /* the CA exists */
    if (!paa) {
        char plabel[HSMCA_TOKEN_LABEL_MAX + 1];
        struct hsmca_ca_rec prec;

        if (hsmca_q_ca_token_label(st, parent, plabel, &prec) != HSMCA_OK)
            return HSMCA_E_QUORUM_PARAMS;
        rc = strcmp(prec.kind, "paa") == 0 && prec.cert_der != NULL ? HSMCA_OK
                                                                    : HSMCA_E_QUORUM_PARAMS;
        hsmca_ca_rec_clear(&prec);
        if (rc != HSMCA_OK || strcmp(plabel, token) == 0)
            return HSMCA_E_QUORUM_PARAMS;
        snprintf(need->v[need->n++], sizeof(need->v[0]), "%s", plabel);
    }
    snprintf(need->v[need->n++], sizeof(need->v[0]), "%s", token);
    return HSMCA_OK;
}

static enum hsmca_err
check_create_paa(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                 struct labels *need)
{
    return check_create(q, params, need, 1);
}

static enum hsmca_err
check_create_pai(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                 struct labels *need)
{
    return check_create(q, params, need, 0);
}

static enum hsmca_err
check_activate(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
               struct labels *need)
{
    const char *ca = NULL, *win = NULL;
    json_int_t until = 0, max = 0;
    struct hsmca_ca_rec rec;
    enum hsmca_err rc;

    /* {"ca", "window"}: this node joins an open window shared through the store */
    if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s}", "ca", &ca, "window", &win) == 0) {
        struct hsmca_window_rec w;

        if (hsmca_store_window_get(hsmca_q_rd(q), win, &w) != HSMCA_OK || strcmp(w.ca, ca) != 0 ||
            w.until_ms <= hsmca_q_now_ms(q) || w.used >= w.max_dacs)
            return HSMCA_E_QUORUM_PARAMS; /* no such window open for this CA */
        until = w.until_ms;
        max = (json_int_t)w.max_dacs;
    } else if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:I, s:I}", "ca", &ca, "until",
                              &until, "max_dacs", &max) != 0) {
        return HSMCA_E_QUORUM_PARAMS;
    }
    if (until <= hsmca_q_now_ms(q) || max < 1 || max > 100000000)
        return HSMCA_E_QUORUM_PARAMS;
    if (!hsmca_ca_id_valid(ca) ||
        hsmca_q_ca_token_label(hsmca_q_rd(q), ca, need->v[0], &rec) != HSMCA_OK)
        return HSMCA_E_QUORUM_PARAMS;
    rc = strcmp(rec.kind, "pai") == 0 && rec.cert_der != NULL ? HSMCA_OK : HSMCA_E_QUORUM_PARAMS;
    if (rc == HSMCA_OK && rec.revoked)
        rc = HSMCA_E_REVOKE_CA_REVOKED; /* a revoked PAI never opens a window again */
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
    {.name = "ca.create_paa", .check = check_create_paa, .act = act_create_paa},
    {.name = "ca.create_pai", .check = check_create_pai, .act = act_create_pai},
    {.name = "ca.activate",
     .check = check_activate,
     .can_run = can_activate,
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
