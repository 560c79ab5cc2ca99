/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_request.c -- quorum requests: creation (params checked through the operation table, the
 * one-time request key), the strict parse of stored request bytes, and the envelope approvers
 * read.
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

/* ---- requests ---- */

static enum hsmca_err
collect_label(void *arg, const struct hsmca_qtoken *t)
{
    struct labels *l = arg;

    if (l->n >= HSMCA_QUORUM_TOKENS_MAX)
        return HSMCA_E_TOO_LARGE;
    snprintf(l->v[l->n++], sizeof(l->v[0]), "%s", t->label);
    return HSMCA_OK;
}

struct uri_find {
    const char *uri;
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
};

static enum hsmca_err
find_uri(void *arg, const struct hsmca_qtoken *t)
{
    struct uri_find *f = arg;

    if (strcmp(t->uri, f->uri) == 0 && f->label[0] == '\0')
        snprintf(f->label, sizeof(f->label), "%s", t->label);
    return HSMCA_OK;
}

/* The quorum token label holding CA ca_id's key. */
enum hsmca_err
hsmca_q_ca_token_label(struct hsmca_store *st, const char *ca_id,
                       char label[HSMCA_TOKEN_LABEL_MAX + 1], struct hsmca_ca_rec *rec_out)
{
    struct hsmca_ca_rec rec;
    struct uri_find f;
    enum hsmca_err rc;

    memset(&f, 0, sizeof(f));
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_store_ca_get(st, ca_id, &rec);
    if (rc != HSMCA_OK)
        return rc;
    f.uri = rec.token_uri;
    rc = hsmca_store_qtoken_list(st, find_uri, &f);
    if (rc == HSMCA_OK && f.label[0] == '\0')
        rc = HSMCA_E_NOT_FOUND;
    if (rc == HSMCA_OK) {
        snprintf(label, HSMCA_TOKEN_LABEL_MAX + 1, "%s", f.label);
        if (rec_out != NULL) {
            *rec_out = rec;
            return HSMCA_OK;
        }
    }
    hsmca_ca_rec_clear(&rec);
    return rc;
}

/*
 * Check params for op against the current state (the op's table entry), and add "tokens". On OK
 * params holds the canonical params of the request.
 */
static enum hsmca_err
check_params(struct hsmca_quorum *q, const struct hsmca_qepoch *e, const char *op, json_t *params)
{
    const struct hsmca_qop *o = hsmca_qop_find(op);
    struct labels all, need;
    json_t *toks;
    enum hsmca_err rc;
    size_t i;

    memset(&all, 0, sizeof(all));
    memset(&need, 0, sizeof(need));
    if (!json_is_object(params) || json_object_get(params, "tokens") != NULL ||
        json_object_get(params, "tbs") != NULL)
        return HSMCA_E_QUORUM_PARAMS;
    rc = hsmca_store_qtoken_list(hsmca_q_rd(q), collect_label, &all);
    if (rc != HSMCA_OK)
        return rc;
    if (o == NULL)
        return HSMCA_E_QUORUM_OP_UNKNOWN;
    rc = o->check(q, e, params, &need);
    if (rc != HSMCA_OK)
        return rc;
    if (o->all_tokens)
        need = all;
    if (o->preview != NULL) {
        json_t *tbs = NULL;

        rc = o->preview(q, params, &tbs);
        if (rc != HSMCA_OK)
            return rc;
        if (tbs != NULL)
            json_object_set_new(params, "tbs", tbs);
    }
    toks = json_array();
    if (toks == NULL)
        return HSMCA_E_NOMEM;
    for (i = 0; i < need.n; i++)
        json_array_append_new(toks, json_string(need.v[i]));
    json_object_set_new(params, "tokens", toks);
    return HSMCA_OK;
}

struct request_apply {
    struct hsmca_qrequest r;
};

static enum hsmca_err
apply_request(struct hsmca_store *st, void *arg)
{
    struct request_apply *a = arg;

    return hsmca_store_qrequest_put(st, &a->r);
}

enum hsmca_err
hsmca_quorum_request_create(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                            const char *op, const char *params_json, int64_t ttl_ms,
                            const char *checkpoint_text, const unsigned char *checkpoint_sig,
                            size_t checkpoint_sig_len, char *id_out,
                            struct hsmca_audit_receipt *receipt)
{
    struct hsmca_qepoch e;
    struct request_apply a;
    struct pending *p = NULL;
    json_t *params = NULL, *req = NULL, *cp = NULL, *detail = NULL, *node_keys = NULL;
    EVP_PKEY *key = NULL;
    unsigned char rnd[16], *spki = NULL, d[HSMCA_SHA256_LEN];
    size_t spki_len = 0;
    char id[HSMCA_QUORUM_ID_LEN + 1], fpr[HSMCA_SHA256_HEX_SIZE] = "", target[48],
                                      hex[HSMCA_SHA256_HEX_SIZE];
    char *spki_b64 = NULL, *bytes = NULL, *req_b64 = NULL, *sig_b64 = NULL;
    int64_t now = hsmca_q_now_ms(q);
    enum hsmca_err rc;

    memset(&e, 0, sizeof(e));
    memset(&a, 0, sizeof(a));
    if (q == NULL || who == NULL || !hsmca_q_name_ok(who->name) || op == NULL ||
        params_json == NULL || id_out == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&q->lock);
    if (hsmca_qop_find(op) == NULL) {
        rc = hsmca_q_refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_OP_UNKNOWN, NULL);
        goto out;
    }
    rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &e);
    if (rc == HSMCA_E_NOT_FOUND) {
        rc = hsmca_q_refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_NOT_INITIALISED,
                            NULL);
        goto out;
    }
    if (rc != HSMCA_OK)
        goto out;
    if (ttl_ms < 1 || ttl_ms > HSMCA_QUORUM_TTL_MAX_MS || strlen(params_json) > 8192 ||
        (checkpoint_text != NULL && (checkpoint_sig == NULL || checkpoint_sig_len == 0 ||
                                     strlen(checkpoint_text) > 2048 || checkpoint_sig_len > 256))) {
        rc = hsmca_q_refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_PARAMS,
                            json_pack("{s:s}", "op", op));
        goto out;
    }
    params = json_loads(params_json, JSON_REJECT_DUPLICATES, NULL);
    rc = params == NULL ? HSMCA_E_QUORUM_PARAMS : check_params(q, &e, op, params);
    if (rc != HSMCA_OK) {
        if (rc == HSMCA_E_QUORUM_PARAMS || rc == HSMCA_E_QUORUM_POP_INVALID ||
            rc == HSMCA_E_QUORUM_APPROVER_DUPLICATE || rc == HSMCA_E_QUORUM_TOO_FEW_APPROVERS ||
            rc == HSMCA_E_QUORUM_APPROVER_INACTIVE || rc == HSMCA_E_QUORUM_POLICY ||
            rc == HSMCA_E_QUORUM_CA_SUPERSEDED || rc == HSMCA_E_MATTER_SCOPE ||
            rc == HSMCA_E_QUORUM_OP_UNKNOWN || rc == HSMCA_E_REVOKE_CA_REVOKED ||
            rc == HSMCA_E_QUORUM_NODE_UNKNOWN || rc == HSMCA_E_QUORUM_NODE_DUPLICATE ||
            rc == HSMCA_E_QUORUM_NODES_INVALID || rc == HSMCA_E_QUORUM_NODES_UNSUPPORTED)
            rc = hsmca_q_refuse(q, who, "quorum.request", "request", rc,
                                json_pack("{s:s}", "op", op));
        goto out;
    }
    /* the one-time key: its private half never leaves this process's memory */
    key = EVP_EC_gen("P-256");
    if (key == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        rc = key == NULL ? HSMCA_E_INTERNAL : HSMCA_E_RANDOM;
        goto out;
    }
    rc = hsmca_q_spki_der(key, &spki, &spki_len);
    if (rc != HSMCA_OK)
        goto out;
    spki_b64 = hsmca_b64_encode(spki, spki_len);
    hsmca_hex_encode(rnd, sizeof(rnd), id, sizeof(id));
    if (who->key_sha256 != NULL)
        hsmca_q_hex32(who->key_sha256, fpr);
    if (checkpoint_text != NULL) {
        sig_b64 = hsmca_b64_encode(checkpoint_sig, checkpoint_sig_len);
        cp = sig_b64 != NULL ? json_pack("{s:s, s:s}", "sig", sig_b64, "text", checkpoint_text)
                             : NULL;
    } else {
        cp = json_null();
    }
    if (spki_b64 == NULL || cp == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    /* ca.activate naming several nodes: each named node's one-time key, made in its own memory
     * and posted through the store (quorum_nodes.c), goes into the bytes the approvers sign */
    if (json_object_get(params, "nodes") != NULL) {
        rc = hsmca_q_nodes_gather(q, who, id, op, params, spki_b64, &node_keys);
        if (rc != HSMCA_OK)
            goto out;
        now = hsmca_q_now_ms(q);
    }
    req = json_pack("{s:I, s:O, s:I, s:I, s:s, s:s, s:O, s:s, s:s, s:{s:s, s:s}}", "approver_epoch",
                    (json_int_t)e.epoch, "checkpoint", cp, "created", (json_int_t)now, "expires",
                    (json_int_t)(now + ttl_ms), "id", id, "op", op, "params", params, "policy_hash",
                    e.policy_hash, "request_key", spki_b64, "requester", "key", fpr, "principal",
                    who->name);
    if (req != NULL && node_keys != NULL)
        json_object_set(req, "node_keys", node_keys);
    bytes = req != NULL ? json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (bytes == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    if (strlen(bytes) > HSMCA_QUORUM_REQUEST_MAX) {
        rc = hsmca_q_refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_PARAMS,
                            json_pack("{s:s}", "op", op));
        goto out;
    }
    snprintf(a.r.id, sizeof(a.r.id), "%s", id);
    snprintf(a.r.op, sizeof(a.r.op), "%s", op);
    a.r.bytes = (unsigned char *)bytes;
    a.r.len = strlen(bytes);
    a.r.epoch = e.epoch;
    snprintf(a.r.requester, sizeof(a.r.requester), "%s", who->name);
    a.r.created_ms = now;
    a.r.expires_ms = now + ttl_ms;
    req_b64 = hsmca_b64_encode(a.r.bytes, a.r.len);
    SHA256(a.r.bytes, a.r.len, d);
    hsmca_q_hex32(d, hex);
    detail = req_b64 != NULL ? json_pack("{s:s, s:s}", "request", req_b64, "sha256", hex) : NULL;
    p = calloc(1, sizeof(*p));
    if (detail == NULL || p == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    snprintf(target, sizeof(target), "request/%s", id);
    rc = hsmca_q_audit_ex(q, who, "quorum.request", target, "ok", detail, apply_request, &a, 0,
                          receipt);
    if (rc != HSMCA_OK)
        goto out;
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->key = key;
    key = NULL;
    p->next = q->pending;
    q->pending = p;
    p = NULL;
    memcpy(id_out, id, sizeof(id));
    hsmca_log(HSMCA_LOG_INFO, "quorum", "request", "id=%s op=%s epoch=%llu", id, op,
              (unsigned long long)e.epoch);
out:
    pthread_mutex_unlock(&q->lock);
    free(p);
    EVP_PKEY_free(key);
    OPENSSL_free(spki);
    free(spki_b64);
    free(sig_b64);
    free(bytes);
    free(req_b64);
    json_decref(params);
    json_decref(req);
    json_decref(cp);
    json_decref(detail);
    json_decref(node_keys);
    hsmca_qepoch_clear(&e);
    return rc;
}

/* ---- parsed requests ---- */

void
hsmca_q_req_view_clear(struct req_view *v)
{
    json_decref(v->root);
    memset(v, 0, sizeof(*v));
}

/* Parse request bytes strictly (the shape this module writes). */
enum hsmca_err
hsmca_q_req_parse(const unsigned char *bytes, size_t len, struct req_view *v)
{
    json_error_t jerr;
    size_t i;

    memset(v, 0, sizeof(*v));
    if (len == 0 || len > HSMCA_QUORUM_REQUEST_MAX)
        return HSMCA_E_QUORUM_ENVELOPE;
    v->root = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v->root == NULL ||
        json_unpack_ex(v->root, &jerr, JSON_STRICT,
                       "{s:I, s:o, s:I, s:I, s:s, s?o, s:s, s:o, s:s, s:s, s:{s:s, s:s}}",
                       "approver_epoch", &v->epoch, "checkpoint", &v->checkpoint, "created",
                       &v->created, "expires", &v->expires, "id", &v->id, "node_keys",
                       &v->node_keys, "op", &v->op, "params", &v->params, "policy_hash",
                       &v->policy_hash, "request_key", &v->request_key, "requester", "key",
                       &v->req_key, "principal", &v->principal) != 0)
        goto bad;
    v->tokens = json_object_get(v->params, "tokens");
    if (strlen(v->id) != HSMCA_QUORUM_ID_LEN || !json_is_array(v->tokens) ||
        json_array_size(v->tokens) == 0 || json_array_size(v->tokens) > HSMCA_QUORUM_TOKENS_MAX ||
        v->epoch < 1)
        goto bad;
    if (v->node_keys != NULL &&
        hsmca_q_node_keys_check(v->node_keys, v->request_key, v->params) != HSMCA_OK)
        goto bad;
    for (i = 0; i < json_array_size(v->tokens); i++) {
        const char *l = json_string_value(json_array_get(v->tokens, i));

        if (l == NULL || strlen(l) == 0 || strlen(l) > HSMCA_TOKEN_LABEL_MAX)
            goto bad;
    }
    if (hsmca_approval_digest(bytes, len, v->digest) != 0)
        goto bad;
    return HSMCA_OK;
bad:
    hsmca_q_req_view_clear(v);
    return HSMCA_E_QUORUM_ENVELOPE;
}

const char *
hsmca_q_req_token(const struct req_view *v, size_t i)
{
    return json_string_value(json_array_get(v->tokens, i));
}

/* ---- envelope ---- */

struct env_ctx {
    json_t *shares; /* {approver: {label: {...}}} */
    json_t *names;  /* [approver] */
    enum hsmca_err rc;
};

static enum hsmca_err
env_share(void *arg, const struct hsmca_qshare *s)
{
    struct env_ctx *c = arg;
    json_t *a = json_object_get(c->shares, s->approver), *o;
    char *b = hsmca_b64_encode(s->sealed, s->sealed_len);

    if (b == NULL)
        return HSMCA_E_NOMEM;
    if (a == NULL) {
        a = json_object();
        json_object_set_new(c->shares, s->approver, a);
    }
    o = json_pack("{s:I, s:I, s:s}", "epoch", (json_int_t)s->epoch, "index", (json_int_t)s->idx,
                  "sealed", b);
    free(b);
    if (a == NULL || o == NULL)
        return HSMCA_E_NOMEM;
    json_object_set_new(a, s->label, o);
    return HSMCA_OK;
}

static enum hsmca_err
env_approval(void *arg, const struct hsmca_qapproval *r)
{
    struct env_ctx *c = arg;

    json_array_append_new(c->names, json_string(r->approver));
    return HSMCA_OK;
}

enum hsmca_err
hsmca_quorum_request_envelope(struct hsmca_quorum *q, const char *id, char **out)
{
    struct hsmca_qrequest r;
    struct hsmca_qepoch e;
    struct req_view v;
    struct env_ctx c = {NULL, NULL, HSMCA_OK}, alt = {NULL, NULL, HSMCA_OK};
    json_t *env = NULL;
    char *b = NULL, hex[HSMCA_SHA256_HEX_SIZE];
    const char *status;
    enum hsmca_err rc;
    size_t i;
    int holds;

    memset(&r, 0, sizeof(r));
    memset(&e, 0, sizeof(e));
    memset(&v, 0, sizeof(v));
    if (q == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (strlen(id) != HSMCA_QUORUM_ID_LEN)
        return HSMCA_E_NOT_FOUND;
    rc = hsmca_store_qrequest_get(hsmca_q_rd(q), id, &r);
    if (rc != HSMCA_OK)
        return rc;
    rc = hsmca_q_req_parse(r.bytes, r.len, &v);
    if (rc == HSMCA_OK)
        rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &e);
    if (rc != HSMCA_OK)
        goto out;
    c.shares = json_object();
    c.names = json_array();
    if (c.shares == NULL || c.names == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    /* the sealed shares of the request's tokens (current ones: only while the epoch holds), and
     * of a token's alternate PIN while a rotation is unconfirmed (docs/custody.md) */
    alt.shares = json_object();
    if (alt.shares == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    holds = hsmca_q_epoch_holds(q, (uint64_t)v.epoch, v.policy_hash, &e);
    for (i = 0; holds && i < json_array_size(v.tokens); i++) {
        struct hsmca_qtoken t;

        rc = hsmca_store_qtoken_get(hsmca_q_rd(q), hsmca_q_req_token(&v, i), &t);
        if (rc == HSMCA_OK)
            rc = hsmca_store_qshare_list(hsmca_q_rd(q), t.label, t.epoch, env_share, &c);
        if (rc == HSMCA_OK && t.alt_epoch != 0)
            rc = hsmca_store_qshare_list(hsmca_q_rd(q), t.label, t.alt_epoch, env_share, &alt);
        if (rc != HSMCA_OK)
            goto out;
    }
    rc = hsmca_store_qapproval_list(hsmca_q_rd(q), id, env_approval, &c);
    if (rc != HSMCA_OK)
        goto out;
    status = r.status;
    if (strcmp(status, "pending") == 0 && v.expires <= hsmca_q_now_ms(q))
        status = "expired";
    b = hsmca_b64_encode(r.bytes, r.len);
    hsmca_q_hex32(v.digest, hex);
    env = b != NULL ? json_pack("{s:O, s:s, s:s, s:O, s:s, s:I}", "approvals", c.names, "digest",
                                hex, "request", b, "shares", c.shares, "status", status,
                                "threshold", (json_int_t)hsmca_q_policy_threshold(e.policy, v.op))
                    : NULL;
    if (env != NULL && json_object_size(alt.shares) != 0)
        json_object_set(env, "alt_shares", alt.shares);
    *out = env != NULL ? json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = *out != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
out:
    free(b);
    json_decref(env);
    json_decref(alt.shares);
    json_decref(c.shares);
    json_decref(c.names);
    hsmca_q_req_view_clear(&v);
    hsmca_qrequest_clear(&r);
    hsmca_qepoch_clear(&e);
    return rc;
}

void
hsmca_quorum_stale_advice(struct hsmca_quorum *q, const char *id, char *out, size_t out_size)
{
    struct hsmca_qrequest r;
    const char *op = "OP";

    if (out == NULL || out_size == 0)
        return;
    memset(&r, 0, sizeof(r));
    /* only a stored request's id and an op from the op table: no untrusted text */
    if (q != NULL && id != NULL && strlen(id) == HSMCA_QUORUM_ID_LEN &&
        hsmca_store_qrequest_get(hsmca_q_rd(q), id, &r) == HSMCA_OK && hsmca_qop_find(r.op) != NULL)
        op = r.op;
    else
        id = "ID";
    /* at most 255 bytes with a 31-byte op: a problem detail's bound (HSMCAD_PROBLEM_DETAIL_MAX) */
    snprintf(out, out_size,
             "the approvers or policy this request relied on changed: create it again (hsmca "
             "request create %s, flags as hsmca request show lists), get it approved, and cancel "
             "this one (hsmca request cancel %s)",
             op, id);
    hsmca_qrequest_clear(&r);
}
