/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum.c -- m-of-n control of the CA tokens (quorum.h, docs/design.md "Quorum").
 * Owns: the request and approval formats, every check an approval must pass, the PIN's life
 * (rebuilt from shares in secure memory, checked against its commitment before any C_Login,
 * rotated after use, re-split and re-sealed: a new epoch), and the one-time request keys (memory
 * only). Writes state only through hsmca_audit_append with the store writes in apply callbacks.
 * Never stores, logs or prints a PIN or an unsealed share.
 * This file: open/free, the policy, the audit helpers and the small helpers the pieces share
 * (quorum_int.h lists the pieces), the approvers' list, and the parsers the fuzz targets call.
 */
#include "hsmca/quorum.h"

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
#include "hsmca/seal.h"
#include "hsmca/shamir.h"
#include "hsmca/sizes.h"
#include "hsmca/store_quorum.h"
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h"
#include "quorum_revoke.h"

/* ---- small helpers ---- */

int64_t
hsmca_q_now_ms(const struct hsmca_quorum *q)
{
    struct timespec ts;

    if (q != NULL && q->cfg.now_ms != NULL)
        return q->cfg.now_ms(q->cfg.now_arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct hsmca_store *
hsmca_q_rd(const struct hsmca_quorum *q)
{
    return q->cfg.ro != NULL ? q->cfg.ro : q->cfg.store;
}

/* A name: 1..64 of [A-Za-z0-9._-]. */
int
hsmca_q_name_ok(const char *s)
{
    return s != NULL && hsmca_word_ok(s, strlen(s), HSMCA_QUORUM_NAME_MAX, 0, "._-");
}

void
hsmca_q_hex32(const unsigned char *in, char out[HSMCA_SHA256_HEX_SIZE])
{
    hsmca_hex_encode(in, HSMCA_SHA256_LEN, out, HSMCA_SHA256_HEX_SIZE);
}

static void
be64(unsigned char out[8], uint64_t v)
{
    int i;

    for (i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/*
 * SHA-256 over (pointer, length) pairs ended by a NULL pointer. Returns 0, or -1 (out zeroed) if
 * OpenSSL fails.
 */
int
hsmca_q_sha256v(unsigned char out[HSMCA_SHA256_LEN], ...)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    const void *p;
    va_list ap;
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;

    va_start(ap, out);
    for (p = va_arg(ap, const void *); p != NULL; p = va_arg(ap, const void *)) {
        size_t n = va_arg(ap, size_t);

        ok = ok && EVP_DigestUpdate(c, p, n) == 1;
    }
    va_end(ap);
    ok = ok && EVP_DigestFinal_ex(c, out, NULL) == 1;
    EVP_MD_CTX_free(c);
    if (!ok)
        memset(out, 0, HSMCA_SHA256_LEN);
    return ok ? 0 : -1;
}

/* c_i = SHA-256("hsmca-share-commit-v1\0" || label || "\0" || epoch(8, BE) || index(1) || share) */
int
hsmca_q_share_commit(const char *label, uint64_t epoch, unsigned idx, const unsigned char *share,
                     size_t len, unsigned char out[HSMCA_SHA256_LEN])
{
    unsigned char e[8], x = (unsigned char)idx;

    be64(e, epoch);
    return hsmca_q_sha256v(out, SHARE_DOMAIN, sizeof(SHARE_DOMAIN), label, strlen(label) + 1, e,
                           (size_t)8, &x, (size_t)1, share, len, (const void *)NULL);
}

/* c_pin = SHA-256("hsmca-pin-commit-v1\0" || salt(32) || label || "\0" || epoch(8, BE) || PIN) */
int
hsmca_q_pin_commit(const unsigned char salt[32], const char *label, uint64_t epoch,
                   const struct hsmca_secret *pin, unsigned char out[HSMCA_SHA256_LEN])
{
    unsigned char e[8];

    be64(e, epoch);
    return hsmca_q_sha256v(out, PIN_DOMAIN, sizeof(PIN_DOMAIN), salt, (size_t)32, label,
                           strlen(label) + 1, e, (size_t)8, pin->p, pin->len, (const void *)NULL);
}

enum hsmca_err
hsmca_q_spki_der(EVP_PKEY *k, unsigned char **out, size_t *out_len)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);

    if (n <= 0)
        return HSMCA_E_INTERNAL;
    *out = der; /* OPENSSL_free */
    *out_len = (size_t)n;
    return HSMCA_OK;
}

int
hsmca_q_is_p256(EVP_PKEY *k)
{
    char curve[32];
    size_t n = 0;

    if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)
        return 0;
    if (EVP_PKEY_get_utf8_string_param(k, "group", curve, sizeof(curve), &n) != 1)
        return 0;
    return strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0;
}

EVP_PKEY *
hsmca_q_spki_parse(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);

    if (k == NULL || p != der + len || !hsmca_q_is_p256(k)) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

/* ---- policy ---- */

/*
 * Parse and check a policy {"thresholds": {op: n, ...}, "version": 1} for split threshold m and n
 * approvers: every known op present, each threshold in m..n. On HSMCA_OK *canon (free()) is the
 * canonical text (sorted, compact) and hash its hex SHA-256.
 */
enum hsmca_err
hsmca_q_policy_canon(const char *text, size_t len, unsigned m, size_t n, char **canon,
                     char hash[HSMCA_SHA256_HEX_SIZE])
{
    json_t *root = NULL, *th = NULL, *v;
    json_error_t jerr;
    const char *k;
    const struct hsmca_qop *op;
    unsigned char d[HSMCA_SHA256_LEN];
    int version = 0;
    size_t i;
    char *out = NULL;
    enum hsmca_err rc = HSMCA_E_QUORUM_POLICY;

    if (text == NULL || len == 0 || len > HSMCA_QUORUM_POLICY_MAX)
        return HSMCA_E_QUORUM_POLICY;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || json_unpack_ex(root, &jerr, JSON_STRICT, "{s:i, s:o}", "version", &version,
                                       "thresholds", &th) != 0)
        goto out;
    if (version != 1 || !json_is_object(th))
        goto out;
    json_object_foreach(th, k, v)
    {
        json_int_t t;

        if (hsmca_qop_find(k) == NULL || !json_is_integer(v))
            goto out;
        t = json_integer_value(v);
        if (t < (json_int_t)m || t > (json_int_t)n)
            goto out;
    }
    for (i = 0; (op = hsmca_qop_at(i)) != NULL; i++) {
        if (op->threshold_of == NULL && json_object_get(th, op->name) == NULL)
            goto out;
    }
    out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (out == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    SHA256((const unsigned char *)out, strlen(out), d);
    hsmca_q_hex32(d, hash);
    *canon = out;
    out = NULL;
    rc = HSMCA_OK;
out:
    free(out);
    json_decref(root);
    return rc;
}

unsigned
hsmca_q_policy_threshold(const char *canon, const char *op)
{
    json_t *root = json_loads(canon, 0, NULL);
    json_t *v = root != NULL ? json_object_get(json_object_get(root, "thresholds"), op) : NULL;
    const struct hsmca_qop *o = hsmca_qop_find(op);
    unsigned t;

    if (v == NULL && root != NULL && o != NULL && o->threshold_of != NULL)
        v = json_object_get(json_object_get(root, "thresholds"), o->threshold_of);
    t = json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;

    json_decref(root);
    return t;
}

/* ---- audit helpers ---- */

/* Append one entry; closes (0 = none) is the seq of the intent it completes; *out (may be NULL)
 * receives the entry's receipt. */
enum hsmca_err
hsmca_q_audit_ex(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                 const char *action, const char *target, const char *outcome, json_t *detail,
                 hsmca_audit_apply_fn apply, void *arg, uint64_t closes,
                 struct hsmca_audit_receipt *out)
{
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    char *d = detail != NULL ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    enum hsmca_err rc;

    if (detail != NULL && d == NULL)
        return HSMCA_E_NOMEM;
    hsmca_audit_event_set(&ev, who != NULL && who->name != NULL ? who->name : "system",
                          who != NULL && who->role != NULL ? who->role : "system", action, target,
                          outcome, d);
    ev.closes_intent = closes;
    rc = hsmca_audit_append(q->cfg.audit, &ev, apply, arg, &r);
    free(d);
    if (rc == HSMCA_OK && out != NULL)
        *out = r;
    return rc;
}

enum hsmca_err
hsmca_q_audit(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who, const char *action,
              const char *target, const char *outcome, json_t *detail, hsmca_audit_apply_fn apply,
              void *arg)
{
    return hsmca_q_audit_ex(q, who, action, target, outcome, detail, apply, arg, 0, NULL);
}

/* Audit a refusal {"code": ..., extra...}; returns code (or the audit failure). */
enum hsmca_err
hsmca_q_refuse(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who, const char *action,
               const char *target, enum hsmca_err code, json_t *extra)
{
    json_t *d = extra != NULL ? extra : json_object();
    enum hsmca_err rc;

    if (d == NULL)
        return HSMCA_E_NOMEM;
    json_object_set_new(d, "code", json_string(hsmca_err_code(code)));
    rc = hsmca_q_audit(q, who, action, target, "refused", d, NULL, NULL);
    json_decref(d);
    hsmca_log(HSMCA_LOG_INFO, "quorum", "refused", "action=%s code=%s", action,
              hsmca_err_code(code));
    return rc != HSMCA_OK ? rc : code;
}

/* ---- open / free ---- */

enum hsmca_err
hsmca_quorum_open(const struct hsmca_quorum_config *cfg, struct hsmca_quorum **out)
{
    struct hsmca_quorum *q;

    if (cfg == NULL || cfg->store == NULL || cfg->audit == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return HSMCA_E_NOMEM;
    q->cfg = *cfg;
    if (cfg->node != NULL)
        snprintf(q->node, sizeof(q->node), "%s", cfg->node);
    q->cfg.node = q->node;
    pthread_mutex_init(&q->lock, NULL);
    *out = q;
    return HSMCA_OK;
}

void
hsmca_quorum_free(struct hsmca_quorum *q)
{
    struct pending *p, *n;

    if (q == NULL)
        return;
    for (p = q->pending; p != NULL; p = n) {
        n = p->next;
        EVP_PKEY_free(p->key);
        free(p);
    }
    pthread_mutex_destroy(&q->lock);
    free(q);
}

enum hsmca_err
hsmca_quorum_epoch(struct hsmca_quorum *q, uint64_t *out)
{
    struct hsmca_qepoch e;
    enum hsmca_err rc;

    if (q == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &e);
    if (rc == HSMCA_E_NOT_FOUND) {
        *out = 0;
        return HSMCA_OK;
    }
    if (rc == HSMCA_OK)
        *out = e.epoch;
    hsmca_qepoch_clear(&e);
    return rc;
}

struct appr_json_ctx {
    json_t *arr;
};

static enum hsmca_err
approver_json(void *arg, const struct hsmca_qapprover *r)
{
    struct appr_json_ctx *c = arg;
    char *b = hsmca_b64_encode(r->spki, r->spki_len), fpr[HSMCA_SHA256_HEX_SIZE];
    json_t *o;

    if (b == NULL)
        return HSMCA_E_NOMEM;
    hsmca_q_hex32(r->fingerprint, fpr);
    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "name", r->name, "spki", b, "fingerprint", fpr,
                  "token_serial", r->token_serial, "status",
                  r->until_epoch == 0 ? "active" : "removed", "since_epoch",
                  (json_int_t)r->since_epoch);
    free(b);
    if (o == NULL)
        return HSMCA_E_NOMEM;
    if (r->until_epoch != 0)
        json_object_set_new(o, "until_epoch", json_integer((json_int_t)r->until_epoch));
    json_array_append_new(c->arr, o);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_quorum_approvers_json(struct hsmca_quorum *q, char **out)
{
    struct hsmca_qepoch e;
    struct appr_json_ctx c;
    json_t *o = NULL;
    enum hsmca_err rc;

    if (q == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(&e, 0, sizeof(e));
    rc = hsmca_store_qepoch_current(hsmca_q_rd(q), &e);
    if (rc == HSMCA_E_NOT_FOUND)
        return HSMCA_E_QUORUM_NOT_INITIALISED;
    if (rc != HSMCA_OK)
        return rc;
    c.arr = json_array();
    rc = c.arr != NULL ? hsmca_store_qapprover_list(hsmca_q_rd(q), approver_json, &c)
                       : HSMCA_E_NOMEM;
    if (rc == HSMCA_OK) {
        o = json_pack("{s:I, s:I, s:O, s:s}", "epoch", (json_int_t)e.epoch, "threshold",
                      (json_int_t)e.m, "approvers", c.arr, "policy_hash", e.policy_hash);
        *out = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        rc = *out != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
    }
    json_decref(o);
    json_decref(c.arr);
    hsmca_qepoch_clear(&e);
    return rc;
}

/* ---- parsers on their own (for the fuzz targets: tests/fuzz/fuzz_approval.c) ---- */

enum hsmca_err
hsmca_quorum_approval_check(const char *json, size_t len)
{
    struct appr_view a;
    enum hsmca_err rc = hsmca_q_appr_parse(json, len, &a);

    if (rc == HSMCA_OK)
        hsmca_q_appr_view_clear(&a);
    return rc;
}

enum hsmca_err
hsmca_quorum_policy_check(const char *text, size_t len, unsigned m, unsigned n)
{
    char *canon = NULL, hash[HSMCA_SHA256_HEX_SIZE];
    enum hsmca_err rc = hsmca_q_policy_canon(text, len, m, n, &canon, hash);

    free(canon);
    return rc;
}
