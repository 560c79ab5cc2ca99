/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_approval.c -- approvals: the strict parse, the one-time request keys held in memory,
 * the opening of re-sealed shares against their commitments, every check an approval must pass,
 * and hsmca_quorum_approve.
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
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h"
#include "quorum_revoke.h"

/* ---- approvals ---- */

void
hsmca_q_appr_view_clear(struct appr_view *a)
{
    json_decref(a->root);
    free(a->sig);
    memset(a, 0, sizeof(*a));
}

enum hsmca_err
hsmca_q_appr_parse(const char *json, size_t len, struct appr_view *a)
{
    const char *k;
    json_t *val;

    memset(a, 0, sizeof(*a));
    if (json == NULL || len == 0 || len > HSMCA_QUORUM_APPROVAL_MAX)
        return HSMCA_E_QUORUM_APPROVAL_MALFORMED;
    a->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (a->root == NULL ||
        json_unpack_ex(a->root, NULL, JSON_STRICT, "{s?o, s:s, s?o, s:s, s:o, s:s}", "alt_shares",
                       &a->alt_shares, "approver", &a->approver, "node_shares", &a->node_shares,
                       "request_id", &a->request_id, "shares", &a->shares, "sig", &a->sig_b64) != 0)
        goto bad;
    if (!hsmca_q_name_ok(a->approver) || strlen(a->request_id) != HSMCA_QUORUM_ID_LEN ||
        !json_is_object(a->shares) || json_object_size(a->shares) > HSMCA_QUORUM_TOKENS_MAX ||
        (a->alt_shares != NULL && (!json_is_object(a->alt_shares) ||
                                   json_object_size(a->alt_shares) > HSMCA_QUORUM_TOKENS_MAX)))
        goto bad;
    json_object_foreach(a->shares, k, val)
    {
        if (!json_is_string(val))
            goto bad;
    }
    json_object_foreach(a->alt_shares, k, val)
    {
        if (!json_is_string(val))
            goto bad;
    }
    if (a->node_shares != NULL) {
        json_t *sh;
        const char *l;

        if (!json_is_object(a->node_shares) ||
            json_object_size(a->node_shares) > HSMCA_QUORUM_NODES_MAX)
            goto bad;
        json_object_foreach(a->node_shares, k, val)
        {
            if (!json_is_object(val) || json_object_size(val) > HSMCA_QUORUM_TOKENS_MAX ||
                strlen(k) == 0 || strlen(k) > HSMCA_QNODE_NAME_MAX)
                goto bad;
            json_object_foreach(val, l, sh)
            {
                if (!json_is_string(sh))
                    goto bad;
            }
        }
    }
    if (hsmca_approval_sig_decode(a->sig_b64, &a->sig, &a->sig_len) != HSMCA_OK)
        goto bad;
    return HSMCA_OK;
bad:
    hsmca_q_appr_view_clear(a);
    return HSMCA_E_QUORUM_APPROVAL_MALFORMED;
}

EVP_PKEY *
hsmca_q_pending_key(struct hsmca_quorum *q, const char *id)
{
    struct pending *p;

    for (p = q->pending; p != NULL; p = p->next) {
        if (strcmp(p->id, id) == 0)
            return p->key;
    }
    return NULL;
}

void
hsmca_q_pending_drop(struct hsmca_quorum *q, const char *id)
{
    struct pending **pp, *p;

    for (pp = &q->pending; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            p = *pp;
            *pp = p->next;
            EVP_PKEY_free(p->key);
            free(p);
            return;
        }
    }
}

struct share_find {
    const char *approver;
    struct hsmca_qshare s; /* sealed blob not copied */
    int found;
};

static enum hsmca_err
find_share(void *arg, const struct hsmca_qshare *s)
{
    struct share_find *f = arg;

    if (strcmp(s->approver, f->approver) == 0) {
        f->s = *s;
        f->s.sealed = NULL;
        f->s.sealed_len = 0;
        f->found = 1;
    }
    return HSMCA_OK;
}

/*
 * Open approver's re-sealed share of token label with the request key and check it against its
 * commitment. On OK *share (secure heap) holds the SHARE_LEN bytes. Any failure is
 * HSMCA_E_QUORUM_SHARE_INVALID (or a store error).
 */
enum hsmca_err
hsmca_q_open_share(struct hsmca_quorum *q, const struct req_view *v, EVP_PKEY *rkey,
                   const char *approver, const char *label, int alt, const char *sealed_b64,
                   struct hsmca_secret *share)
{
    struct hsmca_qtoken t;
    struct share_find f;
    struct hsmca_seal_ad ad;
    struct hsmca_secret s = {NULL, 0};
    unsigned char *sealed = NULL, c[HSMCA_SHA256_LEN];
    size_t sealed_len = 0;
    enum hsmca_err rc;

    memset(&f, 0, sizeof(f));
    f.approver = approver;
    rc = hsmca_store_qtoken_get(hsmca_q_rd(q), label, &t);
    if (rc == HSMCA_OK && alt) {
        if (t.alt_epoch == 0)
            return HSMCA_E_QUORUM_SHARE_INVALID;
        t.epoch = t.alt_epoch;
    }
    if (rc == HSMCA_OK)
        rc = hsmca_store_qshare_list(hsmca_q_rd(q), label, t.epoch, find_share, &f);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOT_FOUND ? HSMCA_E_QUORUM_SHARE_INVALID : rc;
    if (!f.found || sealed_b64 == NULL)
        return HSMCA_E_QUORUM_SHARE_INVALID;
    if (hsmca_b64_decode(sealed_b64, 512, &sealed, &sealed_len) != HSMCA_OK)
        return HSMCA_E_QUORUM_SHARE_INVALID;
    memset(&ad, 0, sizeof(ad));
    ad.token_label = label;
    ad.epoch = t.epoch;
    ad.share_index = f.s.idx;
    ad.approver = approver;
    ad.request_id = v->id;
    ad.request_digest = v->digest;
    rc = hsmca_unseal_soft(rkey, &ad, sealed, sealed_len, &s);
    free(sealed);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOMEM ? rc : HSMCA_E_QUORUM_SHARE_INVALID;
    /* the x-coordinate must be the approver's index, and the bytes the committed ones */
    if (s.len != SHARE_LEN || s.p[0] != (unsigned char)f.s.idx) {
        hsmca_secret_clear(&s);
        return HSMCA_E_QUORUM_SHARE_INVALID;
    }
    if (hsmca_q_share_commit(label, t.epoch, f.s.idx, s.p, s.len, c) != 0 ||
        CRYPTO_memcmp(c, f.s.commit, HSMCA_SHA256_LEN) != 0) {
        hsmca_secret_clear(&s);
        return HSMCA_E_QUORUM_SHARE_INVALID;
    }
    *share = s;
    return HSMCA_OK;
}

int
hsmca_q_approver_active(const struct hsmca_qapprover *a, uint64_t epoch)
{
    return a->since_epoch <= epoch && (a->until_epoch == 0 || a->until_epoch > epoch);
}

struct approval_apply {
    struct hsmca_qapproval r;
};

static enum hsmca_err
apply_approval(struct hsmca_store *st, void *arg)
{
    struct approval_apply *a = arg;
    enum hsmca_err rc = hsmca_store_qapproval_put(st, &a->r);

    return rc == HSMCA_E_STORE_CONSTRAINT ? HSMCA_E_QUORUM_DUPLICATE_APPROVAL : rc;
}

struct count_ctx {
    const char *approver;
    unsigned n;
    int seen;
};

static enum hsmca_err
count_approval(void *arg, const struct hsmca_qapproval *r)
{
    struct count_ctx *c = arg;

    c->n++;
    if (c->approver != NULL && strcmp(r->approver, c->approver) == 0)
        c->seen = 1;
    return HSMCA_OK;
}

/*
 * Every check on one approval, in order, without side effects. On a refusal *code is set and
 * HSMCA_OK returned (the caller audits it); for a bad share bad_token names the token.
 */
static enum hsmca_err
check_approval(struct hsmca_quorum *q, const char *request_id, const struct appr_view *a,
               const struct hsmca_qrequest *r, const struct req_view *v, enum hsmca_err *code,
               char bad_token[HSMCA_TOKEN_LABEL_MAX + 1])
{
    struct hsmca_qapprover ap;
    struct hsmca_qepoch e;
    struct count_ctx cc;
    EVP_PKEY *pub = NULL, *rkey;
    enum hsmca_err rc;
    size_t i;

    memset(&ap, 0, sizeof(ap));
    memset(&e, 0, sizeof(e));
    *code = HSMCA_OK;
    if (strcmp(a->request_id, request_id) != 0) {
        *code = HSMCA_E_QUORUM_REQUEST_MISMATCH;
        return HSMCA_OK;
    }
    if (strcmp(r->status, "pending") != 0) { /* executed, failed or cancelled */
        *code = HSMCA_E_QUORUM_REQUEST_EXECUTED;
        return HSMCA_OK;
    }
    if (hsmca_q_now_ms(q) >= v->expires) {
        *code = HSMCA_E_QUORUM_REQUEST_EXPIRED;
        return HSMCA_OK;
    }
    rc = hsmca_store_qapprover_get(hsmca_q_rd(q), a->approver, &ap);
    if (rc == HSMCA_E_NOT_FOUND ||
        (rc == HSMCA_OK && !hsmca_q_approver_active(&ap, (uint64_t)v->epoch))) {
        *code = HSMCA_E_QUORUM_APPROVER_INACTIVE;
        rc = HSMCA_OK;
        goto out;
    }
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &e);
    if (rc != HSMCA_OK)
        goto out;
    if (!hsmca_q_epoch_holds(q, (uint64_t)v->epoch, v->policy_hash, &e)) {
        *code = HSMCA_E_QUORUM_EPOCH_STALE;
        goto out;
    }
    /* separation of duties: never the requester, by principal or by key */
    {
        char fpr[HSMCA_SHA256_HEX_SIZE];

        hsmca_q_hex32(ap.fingerprint, fpr);
        if (hsmca_approval_by_requester(ap.name, fpr, v->principal, v->req_key)) {
            *code = HSMCA_E_QUORUM_SELF_APPROVAL;
            goto out;
        }
    }
    pub = hsmca_q_spki_parse(ap.spki, ap.spki_len);
    if (pub == NULL || !hsmca_approval_sig_valid(pub, v->digest, a->sig, a->sig_len)) {
        *code = HSMCA_E_QUORUM_SIGNATURE_INVALID;
        goto out;
    }
    memset(&cc, 0, sizeof(cc));
    cc.approver = ap.name;
    rc = hsmca_store_qapproval_list(hsmca_q_rd(q), request_id, count_approval, &cc);
    if (rc != HSMCA_OK)
        goto out;
    if (cc.seen) {
        *code = HSMCA_E_QUORUM_DUPLICATE_APPROVAL;
        goto out;
    }
    rkey = hsmca_q_pending_key(q, request_id);
    if (rkey == NULL) {
        *code = HSMCA_E_QUORUM_REQUEST_VOID;
        goto out;
    }
    if (json_object_size(a->shares) != json_array_size(v->tokens)) {
        *code = HSMCA_E_QUORUM_SHARE_INVALID; /* a token missing, or one the request does not use */
        goto out;
    }
    for (i = 0; i < json_array_size(v->tokens); i++) {
        const char *label = hsmca_q_req_token(v, i);
        struct hsmca_secret s = {NULL, 0};

        rc = hsmca_q_open_share(q, v, rkey, ap.name, label, 0,
                                json_string_value(json_object_get(a->shares, label)), &s);
        hsmca_secret_clear(&s);
        /* a share of an alternate PIN, where given, must open too */
        if (rc == HSMCA_OK && json_object_get(a->alt_shares, label) != NULL) {
            rc = hsmca_q_open_share(q, v, rkey, ap.name, label, 1,
                                    json_string_value(json_object_get(a->alt_shares, label)), &s);
            hsmca_secret_clear(&s);
        }
        if (rc == HSMCA_E_QUORUM_SHARE_INVALID) {
            *code = rc;
            rc = HSMCA_OK;
            snprintf(bad_token, HSMCA_TOKEN_LABEL_MAX + 1, "%s", label);
            hsmca_log(HSMCA_LOG_WARN, "quorum", "share-invalid", "request=%s approver=%s token=%s",
                      request_id, ap.name, label);
            goto out;
        }
        if (rc != HSMCA_OK)
            goto out;
    }
    /* several nodes: one share per token for every other named node (each opens its own at the
     * execution; here only their shape can be checked) */
    if (hsmca_q_node_shares_check(v, a->node_shares) != HSMCA_OK) {
        *code = HSMCA_E_QUORUM_SHARE_INVALID;
        snprintf(bad_token, HSMCA_TOKEN_LABEL_MAX + 1, "%s", "node_shares");
        goto out;
    }
out:
    EVP_PKEY_free(pub);
    hsmca_qapprover_clear(&ap);
    hsmca_qepoch_clear(&e);
    return rc;
}

enum hsmca_err
hsmca_quorum_approve(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                     const char *request_id, const char *json, size_t len,
                     struct hsmca_quorum_status *st)
{
    struct appr_view a;
    struct hsmca_qrequest r;
    struct hsmca_qepoch e;
    struct req_view v;
    struct approval_apply ap;
    struct count_ctx cc;
    char target[48], bad_token[HSMCA_TOKEN_LABEL_MAX + 1] = "";
    enum hsmca_err rc, code = HSMCA_OK;
    json_t *detail = NULL;

    memset(&a, 0, sizeof(a));
    memset(&r, 0, sizeof(r));
    memset(&e, 0, sizeof(e));
    memset(&v, 0, sizeof(v));
    if (q == NULL || request_id == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&q->lock);
    snprintf(target, sizeof(target), "request/%.32s", request_id);
    rc = hsmca_q_appr_parse(json, len, &a);
    if (rc != HSMCA_OK) {
        rc = hsmca_q_refuse(q, who, "quorum.approve", target, rc, NULL);
        goto out;
    }
    rc = strlen(request_id) == HSMCA_QUORUM_ID_LEN
             ? hsmca_store_qrequest_get(hsmca_q_rd(q), request_id, &r)
             : HSMCA_E_NOT_FOUND;
    if (rc == HSMCA_E_NOT_FOUND) {
        rc = hsmca_q_refuse(q, who, "quorum.approve", target, rc,
                            json_pack("{s:s}", "approver", a.approver));
        goto out;
    }
    if (rc == HSMCA_OK)
        rc = hsmca_q_req_parse(r.bytes, r.len, &v);
    if (rc == HSMCA_OK)
        rc = check_approval(q, request_id, &a, &r, &v, &code, bad_token);
    if (rc != HSMCA_OK)
        goto out;
    if (code != HSMCA_OK) {
        json_t *x = json_pack("{s:s}", "approver", a.approver);

        if (code == HSMCA_E_QUORUM_SHARE_INVALID)
            json_object_set_new(x, "token", json_string(bad_token));
        rc = hsmca_q_refuse(q, who, "quorum.approve", target, code, x);
        goto out;
    }
    memset(&ap, 0, sizeof(ap));
    snprintf(ap.r.request_id, sizeof(ap.r.request_id), "%s", request_id);
    snprintf(ap.r.approver, sizeof(ap.r.approver), "%s", a.approver);
    ap.r.body = (unsigned char *)json;
    ap.r.body_len = len;
    ap.r.received_ms = hsmca_q_now_ms(q);
    detail = json_pack("{s:s, s:s}", "approver", a.approver, "sig", a.sig_b64);
    if (detail == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    rc = hsmca_q_audit_ex(q, who, "quorum.approve", target, "ok", detail, apply_approval, &ap, 0,
                          st != NULL ? &st->receipt : NULL);
    if (rc == HSMCA_E_QUORUM_DUPLICATE_APPROVAL) {
        rc = hsmca_q_refuse(q, who, "quorum.approve", target, rc,
                            json_pack("{s:s}", "approver", a.approver));
        goto out;
    }
    if (rc != HSMCA_OK)
        goto out;
    memset(&cc, 0, sizeof(cc));
    rc = hsmca_store_qapproval_list(hsmca_q_rd(q), request_id, count_approval, &cc);
    if (rc == HSMCA_OK)
        rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &e);
    if (rc == HSMCA_OK && st != NULL) {
        st->approvals = cc.n;
        st->threshold = hsmca_q_policy_threshold(e.policy, v.op);
        st->ready = st->threshold > 0 && cc.n >= st->threshold;
    }
out:
    pthread_mutex_unlock(&q->lock);
    json_decref(detail);
    hsmca_q_appr_view_clear(&a);
    hsmca_q_req_view_clear(&v);
    hsmca_qrequest_clear(&r);
    hsmca_qepoch_clear(&e);
    return rc;
}
