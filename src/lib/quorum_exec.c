/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_exec.c -- execution of an approved request: the stored approvals re-checked, every PIN
 * rebuilt and checked before the first C_Login, the operation run through its table entry, the
 * PIN rotation, the quorum.execute entry; and hsmca_quorum_deactivate.
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
#include "hsmca/store_audit.h"
#include "hsmca/store_quorum.h"
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h"
#include "quorum_revoke.h"

/* ---- execution ---- */

void
hsmca_q_exec_state_clear(struct exec_state *x)
{
    size_t i;

    for (i = 0; i < x->nc; i++)
        free(x->c[i].body);
    for (i = 0; i < HSMCA_QUORUM_TOKENS_MAX; i++) {
        hsmca_secret_clear(&x->pin[i]);
        hsmca_secret_clear(&x->alt_pin[i]);
    }
    hsmca_qrequest_clear(&x->r);
    hsmca_qepoch_clear(&x->e);
    hsmca_q_req_view_clear(&x->v);
    json_decref(x->result);
    json_decref(x->nodes);
}

struct collect_ctx {
    struct hsmca_quorum *q;
    struct exec_state *x;
};

/* Copy the stored approvals (the store is locked while this runs: no queries here). */
static enum hsmca_err
collect_raw(void *arg, const struct hsmca_qapproval *r)
{
    struct collect_ctx *c = arg;
    struct exec_state *x = c->x;

    if (x->nc >= HSMCA_QUORUM_APPROVERS_MAX)
        return HSMCA_OK;
    x->c[x->nc].body = malloc(r->body_len + 1);
    if (x->c[x->nc].body == NULL)
        return HSMCA_E_NOMEM;
    memcpy(x->c[x->nc].body, r->body, r->body_len);
    x->c[x->nc].body[r->body_len] = '\0';
    x->c[x->nc].len = r->body_len;
    snprintf(x->c[x->nc].name, sizeof(x->c[0].name), "%s", r->approver);
    x->nc++;
    return HSMCA_OK;
}

/* The request's stored row, its parsed bytes and the current epoch, into x. */
enum hsmca_err
hsmca_q_exec_load(struct hsmca_quorum *q, const char *id, struct exec_state *x)
{
    enum hsmca_err rc = hsmca_store_qrequest_get(hsmca_q_rd(q), id, &x->r);

    if (rc == HSMCA_OK)
        rc = hsmca_q_req_parse(x->r.bytes, x->r.len, &x->v);
    if (rc == HSMCA_OK)
        rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &x->e);
    return rc;
}

/* Copy the stored approvals of x->r.id into x->c. */
enum hsmca_err
hsmca_q_collect_approvals(struct hsmca_quorum *q, struct exec_state *x)
{
    struct collect_ctx cc;

    cc.q = q;
    cc.x = x;
    return hsmca_store_qapproval_list(hsmca_q_rd(q), x->r.id, collect_raw, &cc);
}

/* Re-check each stored approval (signature, approver active, not the requester, one per
 * approver) and keep only the valid ones. */
void
hsmca_q_keep_valid(struct hsmca_quorum *q, struct exec_state *x)
{
    size_t i, j, k = 0;

    for (i = 0; i < x->nc; i++) {
        struct appr_view a;
        struct hsmca_qapprover ap;
        EVP_PKEY *pub = NULL;
        char fpr[HSMCA_SHA256_HEX_SIZE];
        int ok = 0;

        memset(&ap, 0, sizeof(ap));
        if (hsmca_q_appr_parse(x->c[i].body, x->c[i].len, &a) == HSMCA_OK &&
            strcmp(a.request_id, x->r.id) == 0 && strcmp(a.approver, x->c[i].name) == 0 &&
            hsmca_store_qapprover_get(hsmca_q_rd(q), a.approver, &ap) == HSMCA_OK &&
            hsmca_q_approver_active(&ap, (uint64_t)x->v.epoch)) {
            hsmca_q_hex32(ap.fingerprint, fpr);
            pub = hsmca_q_spki_parse(ap.spki, ap.spki_len);
            ok = !hsmca_approval_by_requester(ap.name, fpr, x->v.principal, x->v.req_key) &&
                 pub != NULL && hsmca_approval_sig_valid(pub, x->v.digest, a.sig, a.sig_len);
        }
        for (j = 0; ok && j < k; j++)
            ok = strcmp(x->c[j].name, x->c[i].name) != 0;
        EVP_PKEY_free(pub);
        hsmca_qapprover_clear(&ap);
        hsmca_q_appr_view_clear(&a);
        if (ok) {
            struct counted t = x->c[k];

            x->c[k] = x->c[i];
            x->c[i] = t;
            k++;
        }
    }
    for (i = k; i < x->nc; i++) {
        free(x->c[i].body);
        x->c[i].body = NULL;
    }
    x->nc = k;
}

/*
 * Rebuild token i's PIN from the first m counted approvals and check the PIN commitment; with alt,
 * its alternate PIN from the first m counted approvals that carry a share of it
 * (HSMCA_E_NOT_FOUND when fewer than m do).
 */
enum hsmca_err
hsmca_q_rebuild_pin(struct hsmca_quorum *q, struct exec_state *x, size_t i, int alt)
{
    struct hsmca_secret buf = {NULL, 0}, pin = {NULL, 0};
    unsigned char c[HSMCA_SHA256_LEN];
    enum hsmca_err rc;
    unsigned m = x->e.m, got = 0;
    size_t k;

    rc = hsmca_secret_set(&buf, NULL, (size_t)m * SHARE_LEN);
    if (rc != HSMCA_OK)
        return rc;
    for (k = 0; k < x->nc && got < m; k++) {
        struct appr_view a;
        struct hsmca_secret s = {NULL, 0};
        const char *sealed;

        rc = hsmca_q_appr_parse(x->c[k].body, x->c[k].len, &a);
        if (rc != HSMCA_OK)
            goto out;
        /* a named node of a ca.activate of several nodes opens the shares sealed to its key */
        sealed = json_string_value(json_object_get(
            alt ? a.alt_shares
                : (x->node != NULL ? json_object_get(a.node_shares, x->node) : a.shares),
            x->label[i]));
        if (sealed == NULL && alt) {
            hsmca_q_appr_view_clear(&a);
            continue;
        }
        rc = hsmca_q_open_share(q, &x->v, x->rkey, a.approver, x->label[i], alt, sealed, &s);
        hsmca_q_appr_view_clear(&a);
        if (rc != HSMCA_OK)
            goto out;
        memcpy(buf.p + got * SHARE_LEN, s.p, SHARE_LEN);
        got++;
        hsmca_secret_clear(&s);
    }
    if (got < m) {
        rc = alt ? HSMCA_E_NOT_FOUND : HSMCA_E_QUORUM_THRESHOLD_NOT_MET;
        goto out;
    }
    rc = hsmca_secret_set(&pin, NULL, HSMCA_QUORUM_PIN_LEN);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_shamir_combine(buf.p, SHARE_LEN, m, pin.p);
    if (rc != HSMCA_OK)
        goto out;
    if (hsmca_q_pin_commit(alt ? x->qt[i].alt_pin_salt : x->qt[i].pin_salt, x->label[i],
                           alt ? x->qt[i].alt_epoch : x->qt[i].epoch, &pin, c) != 0 ||
        CRYPTO_memcmp(c, alt ? x->qt[i].alt_pin_commit : x->qt[i].pin_commit, HSMCA_SHA256_LEN) !=
            0) {
        rc = HSMCA_E_QUORUM_PIN_COMMITMENT;
        goto out;
    }
    if (alt)
        x->alt_pin[i] = pin;
    else
        x->pin[i] = pin;
    pin.p = NULL;
    pin.len = 0;
out:
    hsmca_secret_clear(&pin);
    hsmca_secret_clear(&buf);
    return rc;
}

struct status_apply {
    const char *id;
    const char *status;
    const char *node; /* several nodes: the executor's own row, "in" to "joined", or NULL */
};

static enum hsmca_err
apply_status(struct hsmca_store *st, void *arg)
{
    struct status_apply *a = arg;
    enum hsmca_err rc = hsmca_store_qrequest_set_status(st, a->id, a->status);

    if (rc == HSMCA_OK && a->node != NULL)
        rc = hsmca_store_qnode_move(st, a->id, a->node, "in",
                                    strcmp(a->status, "executed") == 0 ? "joined" : "failed", NULL,
                                    NULL, 0, NULL);
    return rc;
}

static json_t *
execute_detail(struct exec_state *x, unsigned threshold)
{
    json_t *ap = json_array(), *d;
    char *b = hsmca_b64_encode(x->r.bytes, x->r.len);
    size_t i;

    for (i = 0; ap != NULL && i < x->nc; i++) {
        struct appr_view a;

        if (hsmca_q_appr_parse(x->c[i].body, x->c[i].len, &a) == HSMCA_OK)
            json_array_append_new(
                ap, json_pack("{s:s, s:s}", "approver", a.approver, "sig", a.sig_b64));
        hsmca_q_appr_view_clear(&a);
    }
    d = b != NULL && ap != NULL
            ? json_pack("{s:s, s:I, s:I, s:s, s:O}", "op", x->v.op, "epoch", (json_int_t)x->v.epoch,
                        "threshold", (json_int_t)threshold, "request", b, "approvals", ap)
            : NULL;
    if (d != NULL && x->nodes != NULL)
        json_object_set(d, "nodes",
                        x->nodes); /* ca.activate of several nodes: each one's outcome */
    free(b);
    json_decref(ap);
    return d;
}

enum hsmca_err
hsmca_quorum_execute(struct hsmca_quorum *q, const char *id, const struct hsmca_quorum_exec *ex,
                     char **result)
{
    struct exec_state *x = NULL;
    struct collect_ctx cc;
    struct status_apply sa;
    struct hsmca_audit_receipt xr;
    char target[48], xh[HSMCA_SHA256_HEX_SIZE];
    unsigned threshold = 0;
    enum hsmca_err rc, act_rc = HSMCA_OK;
    json_t *d = NULL;
    int started = 0, intents_locked = 0;
    size_t i;

    if (q == NULL || id == NULL || ex == NULL || ex->token == NULL)
        return HSMCA_E_INVALID_ARG;
    if (strlen(id) != HSMCA_QUORUM_ID_LEN)
        return HSMCA_E_NOT_FOUND;
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_lock(&q->lock);
    snprintf(target, sizeof(target), "request/%s", id);
    rc = hsmca_q_exec_load(q, id, x);
    if (rc != HSMCA_OK)
        goto out;
    if (strcmp(x->r.status, "pending") != 0) {
        rc = hsmca_q_refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_REQUEST_EXECUTED,
                            NULL);
        goto out;
    }
    if (hsmca_q_now_ms(q) >= x->v.expires) {
        rc =
            hsmca_q_refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_REQUEST_EXPIRED, NULL);
        goto out;
    }
    if (!hsmca_q_epoch_holds(q, (uint64_t)x->v.epoch, x->v.policy_hash, &x->e)) {
        rc = hsmca_q_refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_EPOCH_STALE, NULL);
        goto out;
    }
    x->rkey = hsmca_q_pending_key(q, id);
    if (x->rkey == NULL) {
        rc = hsmca_q_refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_REQUEST_VOID, NULL);
        goto out;
    }
    /* the operation's table entry, and the executor's hooks it needs */
    x->op = hsmca_qop_find(x->v.op);
    if (x->op == NULL || (x->op->can_run != NULL && !x->op->can_run(ex))) {
        rc = hsmca_q_refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_OP_UNKNOWN, NULL);
        goto out;
    }
    cc.q = q;
    cc.x = x;
    rc = hsmca_store_qapproval_list(hsmca_q_rd(q), id, collect_raw, &cc);
    if (rc != HSMCA_OK)
        goto out;
    hsmca_q_keep_valid(q, x);
    threshold = hsmca_q_policy_threshold(x->e.policy, x->v.op);
    if (threshold < x->e.m || x->nc < threshold) {
        rc = hsmca_q_refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_THRESHOLD_NOT_MET,
                            json_pack("{s:I, s:I}", "approvals", (json_int_t)x->nc, "threshold",
                                      (json_int_t)threshold));
        goto out;
    }
    /* one execution at a time across the nodes of a store, and never while a starting node
     * reconciles open intents (hsmca_store_intents_lock) */
    rc = hsmca_store_intents_lock(q->cfg.store, 120000);
    if (rc != HSMCA_OK) {
        rc = hsmca_q_refuse(q, NULL, "quorum.execute", target, rc, NULL);
        goto out;
    }
    intents_locked = 1;
    started = 1;
    /* every PIN rebuilt and checked before the first C_Login */
    x->ntok = json_array_size(x->v.tokens);
    for (i = 0; i < x->ntok; i++) {
        snprintf(x->label[i], sizeof(x->label[0]), "%s", hsmca_q_req_token(&x->v, i));
        rc = hsmca_store_qtoken_get(hsmca_q_rd(q), x->label[i], &x->qt[i]);
        if (rc == HSMCA_OK)
            rc = hsmca_q_rebuild_pin(q, x, i, 0);
        if (rc == HSMCA_OK && x->qt[i].alt_epoch != 0) {
            rc = hsmca_q_rebuild_pin(q, x, i, 1);
            if (rc == HSMCA_E_NOT_FOUND) {
                hsmca_log(HSMCA_LOG_WARN, "quorum", "alt-pin-short",
                          "request=%s token=%s reason=\"fewer than m approvals carry a share of "
                          "the alternate PIN\"",
                          id, x->label[i]);
                rc = HSMCA_OK;
            }
        }
        if (rc != HSMCA_OK)
            goto fail;
        x->tok[i] = ex->token(ex->arg, x->label[i]);
        if (x->tok[i] == NULL) {
            rc = HSMCA_E_TOKEN_NOT_FOUND;
            goto fail;
        }
    }
    for (i = 0; i < x->ntok; i++) {
        rc = hsmca_token_login(x->tok[i], &x->pin[i]);
        /* a token held by an open activation window (another PAI's, or this one's for an op
         * other than ca.activate): its PIN passed its commitment, the token is logged in with
         * it, and the rotation's C_SetPIN works in that login; the window stays open */
        if (rc == HSMCA_E_ALREADY_LOGGED_IN && strcmp(x->v.op, "ca.activate") != 0 &&
            x->qt[i].alt_epoch == 0) {
            x->held[i] = 1;
            rc = HSMCA_OK;
        }
        /* an unconfirmed rotation: the token answers to the current or the alternate PIN, and
         * both passed their commitments; at most one login attempt is refused (docs/custody.md) */
        if (rc == HSMCA_E_PIN_INCORRECT && x->alt_pin[i].p != NULL) {
            rc = hsmca_token_login(x->tok[i], &x->alt_pin[i]);
            x->live_alt[i] = rc == HSMCA_OK;
        }
        if (rc != HSMCA_OK)
            goto fail;
        x->logged_in[i] = 1;
    }
    hsmca_log(HSMCA_LOG_INFO, "quorum", "login", "request=%s op=%s tokens=%zu", id, x->v.op,
              x->ntok);
    x->ex = ex;
    if (x->op->act != NULL)
        act_rc = x->op->act(q, x, ex);
    /* proactive refresh: whatever the act did, the PINs used here change now */
    rc = hsmca_q_rotate(q, x);
    if (rc == HSMCA_OK && act_rc == HSMCA_OK && x->op->after != NULL)
        act_rc = x->op->after(q, x, ex);
    if (rc == HSMCA_OK)
        rc = act_rc;
    if (rc != HSMCA_OK)
        goto fail;
    d = execute_detail(x, threshold);
    sa.id = id;
    sa.status = "executed";
    sa.node = x->nodes != NULL ? q->node : NULL; /* its window is open: it joined */
    rc = d != NULL ? hsmca_q_audit_ex(q, NULL, "quorum.execute", target, "ok", d, apply_status, &sa,
                                      0, &xr)
                   : HSMCA_E_NOMEM;
    if (rc != HSMCA_OK)
        goto fail;
    if (result != NULL) {
        json_t *res = x->result != NULL ? json_deep_copy(x->result) : json_object();
        uint64_t ne = x->e.epoch + 1;

        json_object_set_new(res, "op", json_string(x->v.op));
        json_object_set_new(res, "request_id", json_string(id));
        json_object_set_new(res, "epoch", json_integer((json_int_t)ne));
        hsmca_hex_encode(xr.entry_hash, HSMCA_SHA256_LEN, xh, sizeof(xh));
        json_object_set_new(res, "audit",
                            json_pack("{s:I, s:s}", "seq", (json_int_t)xr.seq, "entry_hash", xh));
        *result = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(res);
    }
    hsmca_log(HSMCA_LOG_INFO, "quorum", "executed", "request=%s op=%s", id, x->v.op);
    goto done;
fail : {
    json_t *fd = json_pack("{s:s, s:s}", "code", hsmca_err_code(rc), "op", x->v.op);
    enum hsmca_err arc;

    sa.id = id;
    sa.status = "failed";
    sa.node = x->nodes != NULL ? q->node : NULL;
    arc = fd != NULL
              ? hsmca_q_audit(q, NULL, "quorum.execute", target, "failed", fd, apply_status, &sa)
              : HSMCA_E_NOMEM;
    json_decref(fd);
    if (arc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "quorum", "audit-failed", "request=%s code=%s", id,
                  hsmca_err_code(arc));
    hsmca_log(HSMCA_LOG_WARN, "quorum", "execute-failed", "request=%s code=%s", id,
              hsmca_err_code(rc));
}
done:
    for (i = 0; i < x->ntok; i++) {
        if (x->logged_in[i] && !x->activated && !x->held[i]) {
            if (hsmca_token_logout(x->tok[i]) != HSMCA_OK)
                hsmca_log(HSMCA_LOG_ERROR, "quorum", "logout-failed", "token=%s", x->label[i]);
        }
    }
    if (started)
        hsmca_q_pending_drop(q, id);
out:
    if (intents_locked)
        hsmca_store_intents_unlock(q->cfg.store);
    pthread_mutex_unlock(&q->lock);
    json_decref(d);
    hsmca_q_exec_state_clear(x);
    free(x);
    return rc;
}

enum hsmca_err
hsmca_quorum_deactivate(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                        const char *ca_id, const struct hsmca_quorum_exec *ex)
{
    struct hsmca_ca_rec rec;
    char target[HSMCA_CA_ID_MAX + 8];
    json_t *d;
    enum hsmca_err rc;

    if (q == NULL || ca_id == NULL || ex == NULL || !hsmca_ca_id_valid(ca_id))
        return HSMCA_E_INVALID_ARG;
    snprintf(target, sizeof(target), "ca/%s", ca_id);
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_store_ca_get(hsmca_q_rd(q), ca_id, &rec);
    hsmca_ca_rec_clear(&rec);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOT_FOUND ? hsmca_q_refuse(q, who, "ca.deactivate", target, rc, NULL)
                                       : rc;
    /* drain and log out first: the entry records a window that is closed */
    rc = ex->deactivate != NULL ? ex->deactivate(ex->arg, ca_id) : HSMCA_OK;
    d = json_pack("{s:s, s:s}", "ca", ca_id, "code", hsmca_err_code(rc));
    if (d == NULL)
        return HSMCA_E_NOMEM;
    {
        enum hsmca_err arc = hsmca_q_audit(q, who, "ca.deactivate", target,
                                           rc == HSMCA_OK ? "ok" : "failed", d, NULL, NULL);

        if (rc == HSMCA_OK)
            rc = arc;
    }
    json_decref(d);
    return rc;
}

enum hsmca_err
hsmca_quorum_cancel(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                    const char *id, const char *reason)
{
    struct hsmca_qrequest r;
    struct status_apply sa;
    char target[HSMCA_QUORUM_ID_LEN + 16];
    json_t *d;
    enum hsmca_err rc;

    if (q == NULL || who == NULL || id == NULL || strlen(id) != HSMCA_QUORUM_ID_LEN ||
        (reason != NULL && strlen(reason) > 256))
        return HSMCA_E_INVALID_ARG;
    snprintf(target, sizeof(target), "request/%s", id);
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&q->lock);
    rc = hsmca_store_qrequest_get(hsmca_q_rd(q), id, &r);
    if (rc == HSMCA_OK && strcmp(r.status, "pending") != 0)
        rc = HSMCA_E_QUORUM_REQUEST_EXECUTED; /* closed already: nothing left to cancel */
    if (rc != HSMCA_OK) {
        rc = rc == HSMCA_E_NOT_FOUND || rc == HSMCA_E_QUORUM_REQUEST_EXECUTED
                 ? hsmca_q_refuse(q, who, "quorum.cancel", target, rc, NULL)
                 : rc;
        goto out;
    }
    /* a cancelled request is closed as cancelled; its one-time key goes, so no approval opens it */
    d = json_pack("{s:s, s:s}", "op", r.op, "reason", reason != NULL ? reason : "");
    sa.id = id;
    sa.status = "cancelled";
    sa.node = NULL;
    rc = d != NULL ? hsmca_q_audit(q, who, "quorum.cancel", target, "ok", d, apply_status, &sa)
                   : HSMCA_E_NOMEM;
    json_decref(d);
    if (rc == HSMCA_OK)
        hsmca_q_pending_drop(q, id);
out:
    pthread_mutex_unlock(&q->lock);
    hsmca_qrequest_clear(&r);
    return rc;
}
