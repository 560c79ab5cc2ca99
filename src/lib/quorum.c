/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum.c -- m-of-n control of the CA tokens (quorum.h, docs/design.md "Quorum").
 * Owns: the request and approval formats, every check an approval must pass, the PIN's life
 * (rebuilt from shares in secure memory, checked against its commitment before any C_Login,
 * rotated after use, re-split and re-sealed: a new epoch), and the one-time request keys (memory
 * only). Writes state only through hsmca_audit_append with the store writes in apply callbacks.
 * Never stores, logs or prints a PIN or an unsealed share.
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
#include "hsmca/store_quorum.h"
#include "hsmca/util.h"

#include "quorum_revoke.h"

#define SHARE_LEN (HSMCA_QUORUM_PIN_LEN + 1)
#define APPROVAL_DOMAIN "hsmca-approval-v1"
#define POP_DOMAIN "hsmca-enroll-pop-v1"
#define SHARE_DOMAIN "hsmca-share-commit-v1"
#define PIN_DOMAIN "hsmca-pin-commit-v1"

struct pending {
    char id[HSMCA_QUORUM_ID_LEN + 1];
    EVP_PKEY *key; /* the one-time request key (private) */
    struct pending *next;
};

struct hsmca_quorum {
    struct hsmca_quorum_config cfg;
    pthread_mutex_t lock;
    struct pending *pending;
};

static const char *const known_ops[] = {
    "ca.create_paa",   "ca.create_pai", "ca.activate", "approver.enroll",
    "approver.remove", "policy.update", "ca.revoke",   "crl.sign",
};
#define NOPS (sizeof(known_ops) / sizeof(known_ops[0]))
/* ops a policy must name; a policy written before ca.revoke and crl.sign existed gives them the
 * threshold of ca.create_pai (policy_threshold) */
#define NOPS_REQUIRED 6

/* ---- small helpers ---- */

static int64_t
now_ms(const struct hsmca_quorum *q)
{
    struct timespec ts;

    if (q != NULL && q->cfg.now_ms != NULL)
        return q->cfg.now_ms(q->cfg.now_arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct hsmca_store *
rd(const struct hsmca_quorum *q)
{
    return q->cfg.ro != NULL ? q->cfg.ro : q->cfg.store;
}

static int
op_known(const char *op)
{
    size_t i;

    for (i = 0; i < NOPS; i++) {
        if (strcmp(op, known_ops[i]) == 0)
            return 1;
    }
    return 0;
}

/* A name: 1..64 of [A-Za-z0-9._-]. */
static int
name_ok(const char *s)
{
    size_t i, n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > HSMCA_QUORUM_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static char *
b64enc(const unsigned char *in, size_t len)
{
    size_t n = 4 * ((len + 2) / 3) + 1;
    char *out = malloc(n);

    if (out == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

/* Strict base64 (standard alphabet, padded, no whitespace). *out is malloc'd (free()). */
static enum hsmca_err
b64dec(const char *s, size_t max, unsigned char **out, size_t *out_len)
{
    size_t n = s != NULL ? strlen(s) : 0, pad = 0, len;
    unsigned char *buf;
    char *check;
    int r;

    if (n == 0 || n % 4 != 0 || n / 4 * 3 > max + 2)
        return HSMCA_E_BAD_ENCODING;
    if (s[n - 1] == '=')
        pad++;
    if (s[n - 2] == '=')
        pad++;
    buf = malloc(n / 4 * 3 + 1);
    if (buf == NULL)
        return HSMCA_E_NOMEM;
    r = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
    if (r < 0 || (size_t)r < pad) {
        free(buf);
        return HSMCA_E_BAD_ENCODING;
    }
    len = (size_t)r - pad;
    check = b64enc(buf, len);
    if (check == NULL || strcmp(check, s) != 0 || len > max) {
        free(check);
        free(buf);
        return check == NULL ? HSMCA_E_NOMEM : HSMCA_E_BAD_ENCODING;
    }
    free(check);
    *out = buf;
    *out_len = len;
    return HSMCA_OK;
}

static void
hex32(const unsigned char *in, char out[65])
{
    hsmca_hex_encode(in, 32, out, 65);
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
static int
sha256v(unsigned char out[32], ...)
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
        memset(out, 0, 32);
    return ok ? 0 : -1;
}

/* SHA-256("hsmca-approval-v1\0" || bytes): what approvers sign. */
static int
approval_digest(const unsigned char *bytes, size_t len, unsigned char out[32])
{
    return sha256v(out, APPROVAL_DOMAIN, sizeof(APPROVAL_DOMAIN), bytes, len, (const void *)NULL);
}

/* c_i = SHA-256("hsmca-share-commit-v1\0" || label || "\0" || epoch(8, BE) || index(1) || share) */
static int
share_commit(const char *label, uint64_t epoch, unsigned idx, const unsigned char *share,
             size_t len, unsigned char out[32])
{
    unsigned char e[8], x = (unsigned char)idx;

    be64(e, epoch);
    return sha256v(out, SHARE_DOMAIN, sizeof(SHARE_DOMAIN), label, strlen(label) + 1, e, (size_t)8,
                   &x, (size_t)1, share, len, (const void *)NULL);
}

/* c_pin = SHA-256("hsmca-pin-commit-v1\0" || salt(32) || label || "\0" || epoch(8, BE) || PIN) */
static int
pin_commit(const unsigned char salt[32], const char *label, uint64_t epoch,
           const struct hsmca_secret *pin, unsigned char out[32])
{
    unsigned char e[8];

    be64(e, epoch);
    return sha256v(out, PIN_DOMAIN, sizeof(PIN_DOMAIN), salt, (size_t)32, label, strlen(label) + 1,
                   e, (size_t)8, pin->p, pin->len, (const void *)NULL);
}

static enum hsmca_err
spki_der(EVP_PKEY *k, unsigned char **out, size_t *out_len)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);

    if (n <= 0)
        return HSMCA_E_INTERNAL;
    *out = der; /* OPENSSL_free */
    *out_len = (size_t)n;
    return HSMCA_OK;
}

static int
is_p256(EVP_PKEY *k)
{
    char curve[32];
    size_t n = 0;

    if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)
        return 0;
    if (EVP_PKEY_get_utf8_string_param(k, "group", curve, sizeof(curve), &n) != 1)
        return 0;
    return strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0;
}

static EVP_PKEY *
spki_parse(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);

    if (k == NULL || p != der + len || !is_p256(k)) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

/* Verify a DER ECDSA signature over a 32-byte digest. 1 valid, 0 not. */
static int
verify_digest(EVP_PKEY *pub, const unsigned char dgst[32], const unsigned char *sig, size_t sig_len)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
    int ok = 0;

    if (c != NULL && EVP_PKEY_verify_init(c) == 1)
        ok = EVP_PKEY_verify(c, sig, sig_len, dgst, 32) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

/* Sign a 32-byte digest with the signer (token or software key): DER into sig. */
static enum hsmca_err
signer_sign(const struct hsmca_quorum_signer *s, const unsigned char dgst[32], unsigned char *sig,
            size_t sig_max, size_t *sig_len)
{
    EVP_PKEY_CTX *c;
    size_t n = sig_max;
    enum hsmca_err rc = HSMCA_E_SIGN_FAILED;

    if (s->key != NULL)
        return hsmca_key_sign_digest(s->key, dgst, 32, sig, sig_max, sig_len);
    c = EVP_PKEY_CTX_new(s->soft, NULL);
    if (c != NULL && EVP_PKEY_sign_init(c) == 1 && EVP_PKEY_sign(c, sig, &n, dgst, 32) == 1) {
        *sig_len = n;
        rc = HSMCA_OK;
    }
    EVP_PKEY_CTX_free(c);
    return rc;
}

/* ---- policy ---- */

/*
 * Parse and check a policy {"thresholds": {op: n, ...}, "version": 1} for split threshold m and n
 * approvers: every known op present, each threshold in m..n. On HSMCA_OK *canon (free()) is the
 * canonical text (sorted, compact) and hash its hex SHA-256.
 */
static enum hsmca_err
policy_canon(const char *text, size_t len, unsigned m, size_t n, char **canon, char hash[65])
{
    json_t *root = NULL, *th = NULL, *v;
    json_error_t jerr;
    const char *k;
    unsigned char d[32];
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

        if (!op_known(k) || !json_is_integer(v))
            goto out;
        t = json_integer_value(v);
        if (t < (json_int_t)m || t > (json_int_t)n)
            goto out;
    }
    for (i = 0; i < NOPS_REQUIRED; i++) {
        if (json_object_get(th, known_ops[i]) == NULL)
            goto out;
    }
    out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (out == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    SHA256((const unsigned char *)out, strlen(out), d);
    hex32(d, hash);
    *canon = out;
    out = NULL;
    rc = HSMCA_OK;
out:
    free(out);
    json_decref(root);
    return rc;
}

static unsigned
policy_threshold(const char *canon, const char *op)
{
    json_t *root = json_loads(canon, 0, NULL);
    json_t *v = root != NULL ? json_object_get(json_object_get(root, "thresholds"), op) : NULL;
    unsigned t;

    if (v == NULL && root != NULL && hsmca_qop_revocation(op))
        v = json_object_get(json_object_get(root, "thresholds"), "ca.create_pai");
    t = json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;

    json_decref(root);
    return t;
}

/* ---- audit helpers ---- */

/* Append one entry; closes (0 = none) is the seq of the intent it completes; *out (may be NULL)
 * receives the entry's receipt. */
static enum hsmca_err
audit_ex(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who, const char *action,
         const char *target, const char *outcome, json_t *detail, hsmca_audit_apply_fn apply,
         void *arg, uint64_t closes, struct hsmca_audit_receipt *out)
{
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    char *d = detail != NULL ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    enum hsmca_err rc;

    if (detail != NULL && d == NULL)
        return HSMCA_E_NOMEM;
    memset(&ev, 0, sizeof(ev));
    ev.actor = who != NULL && who->name != NULL ? who->name : "system";
    ev.role = who != NULL && who->role != NULL ? who->role : "system";
    ev.action = action;
    ev.target = target;
    ev.outcome = outcome;
    ev.detail_json = d;
    ev.kid = "";
    ev.closes_intent = closes;
    rc = hsmca_audit_append(q->cfg.audit, &ev, apply, arg, &r);
    free(d);
    if (rc == HSMCA_OK && out != NULL)
        *out = r;
    return rc;
}

static enum hsmca_err
audit(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who, const char *action,
      const char *target, const char *outcome, json_t *detail, hsmca_audit_apply_fn apply,
      void *arg)
{
    return audit_ex(q, who, action, target, outcome, detail, apply, arg, 0, NULL);
}

/* Audit a refusal {"code": ..., extra...}; returns code (or the audit failure). */
static enum hsmca_err
refuse(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who, const char *action,
       const char *target, enum hsmca_err code, json_t *extra)
{
    json_t *d = extra != NULL ? extra : json_object();
    enum hsmca_err rc;

    if (d == NULL)
        return HSMCA_E_NOMEM;
    json_object_set_new(d, "code", json_string(hsmca_err_code(code)));
    rc = audit(q, who, action, target, "refused", d, NULL, NULL);
    json_decref(d);
    hsmca_log(HSMCA_LOG_INFO, "quorum", "refused", "action=%s code=%s", action,
              hsmca_err_code(code));
    return rc != HSMCA_OK ? rc : code;
}

/* ---- epochs: split, seal, commit ---- */

struct approver_list {
    struct hsmca_qapprover a[HSMCA_QUORUM_APPROVERS_MAX + 1];
    size_t n;
};

static void
approver_list_clear(struct approver_list *l)
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
static enum hsmca_err
active_approvers(struct hsmca_store *st, uint64_t epoch, struct approver_list *l)
{
    struct active_ctx c = {l, epoch};
    enum hsmca_err rc;

    l->n = 0;
    rc = hsmca_store_qapprover_list(st, collect_active, &c);
    if (rc != HSMCA_OK)
        approver_list_clear(l);
    return rc;
}

/* The new sealed material of one token in a new epoch. */
struct token_epoch {
    struct hsmca_qtoken t;
    struct hsmca_qshare s[HSMCA_QUORUM_APPROVERS_MAX + 1];
    size_t n;
    int rotated; /* 1: new PIN and shares in this epoch; 0: unchanged, listed for the snapshot */
};

struct epoch_change {
    struct hsmca_qepoch e;
    struct token_epoch tok[HSMCA_QUORUM_TOKENS_MAX];
    size_t ntok;
    struct approver_list *approvers;     /* the set of the new epoch */
    const struct hsmca_qapprover *enrol; /* a new approver to insert, or NULL */
    const char *remove;                  /* an approver to retire, or NULL */
    int insert_all;                      /* the ceremony: insert every approver */
    json_t *detail;                      /* the quorum.epoch detail */
};

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
    if (RAND_bytes(tok->t.pin_salt, 32) != 1)
        return HSMCA_E_RANDOM;
    if (pin_commit(tok->t.pin_salt, label, epoch, pin, tok->t.pin_commit) != 0)
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
        if (share_commit(label, epoch, s->idx, sh, SHARE_LEN, s->commit) != 0) {
            rc = HSMCA_E_INTERNAL;
            goto out;
        }
        pub = spki_parse(l->a[i].spki, l->a[i].spki_len);
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
    char hex[65];
    size_t i, j;

    if (d == NULL || ap == NULL || com == NULL)
        goto nomem;
    for (i = 0; i < c->approvers->n; i++) {
        char *b = b64enc(c->approvers->a[i].spki, c->approvers->a[i].spki_len);

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
            hex32(c->tok[i].s[j].commit, hex);
            json_array_append_new(sh, json_string(hex));
        }
        hex32(c->tok[i].t.pin_commit, hex);
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
    rc = hsmca_store_qepoch_current(rd(q), &e);
    if (rc == HSMCA_E_NOT_FOUND) {
        *out = 0;
        return HSMCA_OK;
    }
    if (rc == HSMCA_OK)
        *out = e.epoch;
    hsmca_qepoch_clear(&e);
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
    rc = hsmca_store_qepoch_current(rd(q), &cur);
    hsmca_qepoch_clear(&cur);
    if (rc == HSMCA_OK) {
        rc = refuse(q, who, "quorum.ceremony", "quorum", HSMCA_E_QUORUM_INITIALISED, NULL);
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

        if (!name_ok(a->name) || !is_p256(a->pub) ||
            (a->token_serial != NULL && strlen(a->token_serial) > HSMCA_TOKEN_SERIAL_MAX)) {
            rc = HSMCA_E_INVALID_ARG;
            goto out;
        }
        rc = spki_der(a->pub, &der, &der_len);
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
                memcmp(l->a[j].fingerprint, d->fingerprint, 32) == 0 ||
                (d->token_serial[0] != '\0' &&
                 strcmp(l->a[j].token_serial, d->token_serial) == 0)) {
                rc = refuse(q, who, "quorum.ceremony", "quorum", HSMCA_E_QUORUM_APPROVER_DUPLICATE,
                            json_pack("{s:s}", "approver", d->name));
                goto out;
            }
        }
    }
    c->approvers = l;
    c->insert_all = 1;
    c->e.epoch = 1;
    c->e.m = in->m;
    c->e.created_ms = now_ms(q);
    rc = policy_canon(in->policy_json, in->policy_len, in->m, l->n, &c->e.policy, c->e.policy_hash);
    if (rc != HSMCA_OK) {
        rc = refuse(q, who, "quorum.ceremony", "quorum", rc, NULL);
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
    rc = audit(q, who, "quorum.ceremony", "quorum", "ok", cer, NULL, NULL);
    if (rc == HSMCA_OK)
        rc = audit(q, who, "quorum.epoch", "quorum", "ok", c->detail, apply_epoch, c);
out:
    pthread_mutex_unlock(&q->lock);
    hsmca_secret_clear(&pin);
    OPENSSL_free(der);
    json_decref(cer);
    if (c != NULL) {
        hsmca_qepoch_clear(&c->e);
        epoch_change_clear(c);
    }
    if (l != NULL)
        approver_list_clear(l);
    free(c);
    free(l);
    return rc;
}

/* ---- requests ---- */

struct labels {
    char v[HSMCA_QUORUM_TOKENS_MAX][HSMCA_TOKEN_LABEL_MAX + 1];
    size_t n;
};

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
static enum hsmca_err
ca_token_label(struct hsmca_store *st, const char *ca_id, char label[HSMCA_TOKEN_LABEL_MAX + 1],
               struct hsmca_ca_rec *rec_out)
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

    if (sha256v(d, POP_DOMAIN, sizeof(POP_DOMAIN), name, strlen(name) + 1, spki, spki_len, serial,
                strlen(serial), (const void *)NULL) != 0)
        return 0;
    return verify_digest(pub, d, sig, sig_len);
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
    if (!name_ok(name) || strlen(serial) > HSMCA_TOKEN_SERIAL_MAX)
        return HSMCA_E_QUORUM_PARAMS;
    if (b64dec(spki_b64, 512, &spki, &spki_len) != HSMCA_OK ||
        b64dec(pop_b64, HSMCA_ECDSA_P256_DER_MAX, &pop, &pop_len) != HSMCA_OK)
        goto out;
    pub = spki_parse(spki, spki_len);
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

/*
 * Check params for op against the current state, and add "tokens". On OK params holds the
 * canonical params of the request.
 */
static enum hsmca_err
check_params(struct hsmca_quorum *q, const struct hsmca_qepoch *e, const char *op, json_t *params)
{
    struct hsmca_store *st = rd(q);
    struct labels all, need;
    json_t *toks;
    enum hsmca_err rc;
    size_t i;

    memset(&all, 0, sizeof(all));
    memset(&need, 0, sizeof(need));
    if (!json_is_object(params) || json_object_get(params, "tokens") != NULL)
        return HSMCA_E_QUORUM_PARAMS;
    rc = hsmca_store_qtoken_list(st, collect_label, &all);
    if (rc != HSMCA_OK)
        return rc;
    if (strcmp(op, "ca.create_paa") == 0 || strcmp(op, "ca.create_pai") == 0) {
        const char *ca = NULL, *token = NULL, *key_label = NULL, *cn = NULL, *parent = NULL;
        json_int_t vid = -1, pid = -1;
        struct hsmca_ca_rec rec;
        struct hsmca_qtoken qt;
        int paa = strcmp(op, "ca.create_paa") == 0;

        if (paa) {
            if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:s, s:s, s?:s, s?:I}", "ca", &ca,
                               "token", &token, "key_label", &key_label, "cn", &cn, "vid",
                               &vid) != 0)
                return HSMCA_E_QUORUM_PARAMS;
        } else if (json_unpack_ex(params, NULL, JSON_STRICT,
                                  "{s:s, s:s, s:s, s:s, s?:s, s:I, s?:I}", "ca", &ca, "parent",
                                  &parent, "token", &token, "key_label", &key_label, "cn", &cn,
                                  "vid", &vid, "pid", &pid) != 0) {
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

            if (ca_token_label(st, parent, plabel, &prec) != HSMCA_OK)
                return HSMCA_E_QUORUM_PARAMS;
            rc = strcmp(prec.kind, "paa") == 0 && prec.cert_der != NULL ? HSMCA_OK
                                                                        : HSMCA_E_QUORUM_PARAMS;
            hsmca_ca_rec_clear(&prec);
            if (rc != HSMCA_OK || strcmp(plabel, token) == 0)
                return HSMCA_E_QUORUM_PARAMS;
            snprintf(need.v[need.n++], sizeof(need.v[0]), "%s", plabel);
        }
        snprintf(need.v[need.n++], sizeof(need.v[0]), "%s", token);
    } else if (strcmp(op, "ca.activate") == 0) {
        const char *ca = NULL;
        json_int_t until = 0, max = 0;
        struct hsmca_ca_rec rec;

        if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s:I, s:I}", "ca", &ca, "until", &until,
                           "max_dacs", &max) != 0)
            return HSMCA_E_QUORUM_PARAMS;
        if (until <= now_ms(q) || max < 1 || max > 100000000)
            return HSMCA_E_QUORUM_PARAMS;
        if (!hsmca_ca_id_valid(ca) || ca_token_label(st, ca, need.v[0], &rec) != HSMCA_OK)
            return HSMCA_E_QUORUM_PARAMS;
        rc =
            strcmp(rec.kind, "pai") == 0 && rec.cert_der != NULL ? HSMCA_OK : HSMCA_E_QUORUM_PARAMS;
        if (rc == HSMCA_OK && rec.revoked)
            rc = HSMCA_E_REVOKE_CA_REVOKED; /* a revoked PAI never opens a window again */
        hsmca_ca_rec_clear(&rec);
        if (rc != HSMCA_OK)
            return rc;
        need.n = 1;
    } else if (hsmca_qop_revocation(op)) {
        char signer[HSMCA_CA_ID_MAX + 1];

        rc = hsmca_qop_revocation_params(st, op, params, now_ms(q), signer);
        if (rc == HSMCA_OK && ca_token_label(st, signer, need.v[0], NULL) != HSMCA_OK)
            rc = HSMCA_E_QUORUM_PARAMS; /* the signer's token is not under quorum */
        if (rc != HSMCA_OK)
            return rc;
        need.n = 1;
    } else if (strcmp(op, "approver.enroll") == 0) {
        struct hsmca_qapprover rec;
        struct approver_list *l = calloc(1, sizeof(*l));

        if (l == NULL)
            return HSMCA_E_NOMEM;
        rc = enrol_params(st, params, &rec);
        hsmca_qapprover_clear(&rec);
        if (rc == HSMCA_OK)
            rc = active_approvers(st, e->epoch, l);
        if (rc == HSMCA_OK && l->n + 1 > HSMCA_QUORUM_APPROVERS_MAX)
            rc = HSMCA_E_QUORUM_PARAMS;
        approver_list_clear(l);
        free(l);
        if (rc != HSMCA_OK)
            return rc;
        need = all;
    } else if (strcmp(op, "approver.remove") == 0) {
        const char *name = NULL;
        struct approver_list *l = calloc(1, sizeof(*l));
        int found = 0;

        if (l == NULL)
            return HSMCA_E_NOMEM;
        if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s}", "name", &name) != 0 ||
            !name_ok(name)) {
            free(l);
            return HSMCA_E_QUORUM_PARAMS;
        }
        rc = active_approvers(st, e->epoch, l);
        for (i = 0; rc == HSMCA_OK && i < l->n; i++)
            found |= strcmp(l->a[i].name, name) == 0;
        if (rc == HSMCA_OK && !found)
            rc = HSMCA_E_QUORUM_APPROVER_INACTIVE;
        if (rc == HSMCA_OK) {
            /* every threshold must stay reachable by the approvers left */
            char *canon = NULL, hash[65];

            if (policy_canon(e->policy, strlen(e->policy), e->m, l->n - 1, &canon, hash) !=
                HSMCA_OK)
                rc = HSMCA_E_QUORUM_TOO_FEW_APPROVERS;
            free(canon);
        }
        approver_list_clear(l);
        free(l);
        if (rc != HSMCA_OK)
            return rc;
        need = all;
    } else if (strcmp(op, "policy.update") == 0) {
        json_t *pol = NULL;
        struct approver_list *l = calloc(1, sizeof(*l));
        char *text = NULL, *canon = NULL, hash[65];

        if (l == NULL)
            return HSMCA_E_NOMEM;
        rc = HSMCA_E_QUORUM_PARAMS;
        if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:o}", "policy", &pol) == 0) {
            text = json_dumps(pol, JSON_COMPACT | JSON_SORT_KEYS);
            rc = active_approvers(st, e->epoch, l);
            if (rc == HSMCA_OK)
                rc = text == NULL ? HSMCA_E_NOMEM
                                  : policy_canon(text, strlen(text), e->m, l->n, &canon, hash);
        }
        free(text);
        free(canon);
        approver_list_clear(l);
        free(l);
        if (rc != HSMCA_OK)
            return rc;
        need = all;
    } else {
        return HSMCA_E_QUORUM_OP_UNKNOWN;
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
    json_t *params = NULL, *req = NULL, *cp = NULL, *detail = NULL;
    EVP_PKEY *key = NULL;
    unsigned char rnd[16], *spki = NULL, d[32];
    size_t spki_len = 0;
    char id[HSMCA_QUORUM_ID_LEN + 1], fpr[65] = "", target[48], hex[65];
    char *spki_b64 = NULL, *bytes = NULL, *req_b64 = NULL, *sig_b64 = NULL;
    int64_t now = now_ms(q);
    enum hsmca_err rc;

    memset(&e, 0, sizeof(e));
    memset(&a, 0, sizeof(a));
    if (q == NULL || who == NULL || !name_ok(who->name) || op == NULL || params_json == NULL ||
        id_out == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&q->lock);
    if (!op_known(op)) {
        rc = refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_OP_UNKNOWN, NULL);
        goto out;
    }
    rc = hsmca_store_qepoch_current(rd(q), &e);
    if (rc == HSMCA_E_NOT_FOUND) {
        rc = refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_NOT_INITIALISED, NULL);
        goto out;
    }
    if (rc != HSMCA_OK)
        goto out;
    if (ttl_ms < 1 || ttl_ms > HSMCA_QUORUM_TTL_MAX_MS || strlen(params_json) > 8192 ||
        (checkpoint_text != NULL && (checkpoint_sig == NULL || checkpoint_sig_len == 0 ||
                                     strlen(checkpoint_text) > 2048 || checkpoint_sig_len > 256))) {
        rc = refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_PARAMS,
                    json_pack("{s:s}", "op", op));
        goto out;
    }
    params = json_loads(params_json, JSON_REJECT_DUPLICATES, NULL);
    rc = params == NULL ? HSMCA_E_QUORUM_PARAMS : check_params(q, &e, op, params);
    if (rc != HSMCA_OK) {
        if (rc == HSMCA_E_QUORUM_PARAMS || rc == HSMCA_E_QUORUM_POP_INVALID ||
            rc == HSMCA_E_QUORUM_APPROVER_DUPLICATE || rc == HSMCA_E_QUORUM_TOO_FEW_APPROVERS ||
            rc == HSMCA_E_QUORUM_APPROVER_INACTIVE || rc == HSMCA_E_QUORUM_POLICY)
            rc = refuse(q, who, "quorum.request", "request", rc, json_pack("{s:s}", "op", op));
        goto out;
    }
    /* the one-time key: its private half never leaves this process's memory */
    key = EVP_EC_gen("P-256");
    if (key == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        rc = key == NULL ? HSMCA_E_INTERNAL : HSMCA_E_RANDOM;
        goto out;
    }
    rc = spki_der(key, &spki, &spki_len);
    if (rc != HSMCA_OK)
        goto out;
    spki_b64 = b64enc(spki, spki_len);
    hsmca_hex_encode(rnd, sizeof(rnd), id, sizeof(id));
    if (who->key_sha256 != NULL)
        hex32(who->key_sha256, fpr);
    if (checkpoint_text != NULL) {
        sig_b64 = b64enc(checkpoint_sig, checkpoint_sig_len);
        cp = sig_b64 != NULL ? json_pack("{s:s, s:s}", "sig", sig_b64, "text", checkpoint_text)
                             : NULL;
    } else {
        cp = json_null();
    }
    if (spki_b64 == NULL || cp == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    req = json_pack("{s:I, s:O, s:I, s:I, s:s, s:s, s:O, s:s, s:s, s:{s:s, s:s}}", "approver_epoch",
                    (json_int_t)e.epoch, "checkpoint", cp, "created", (json_int_t)now, "expires",
                    (json_int_t)(now + ttl_ms), "id", id, "op", op, "params", params, "policy_hash",
                    e.policy_hash, "request_key", spki_b64, "requester", "key", fpr, "principal",
                    who->name);
    bytes = req != NULL ? json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (bytes == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    if (strlen(bytes) > HSMCA_QUORUM_REQUEST_MAX) {
        rc = refuse(q, who, "quorum.request", "request", HSMCA_E_QUORUM_PARAMS,
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
    req_b64 = b64enc(a.r.bytes, a.r.len);
    SHA256(a.r.bytes, a.r.len, d);
    hex32(d, hex);
    detail = req_b64 != NULL ? json_pack("{s:s, s:s}", "request", req_b64, "sha256", hex) : NULL;
    p = calloc(1, sizeof(*p));
    if (detail == NULL || p == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    snprintf(target, sizeof(target), "request/%s", id);
    rc = audit_ex(q, who, "quorum.request", target, "ok", detail, apply_request, &a, 0, receipt);
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
    hsmca_qepoch_clear(&e);
    return rc;
}

/* ---- parsed requests ---- */

struct req_view {
    json_t *root;
    const char *id, *op, *policy_hash, *request_key, *principal, *req_key;
    json_t *params, *tokens, *checkpoint;
    json_int_t epoch, created, expires;
    unsigned char digest[32];
};

static void
req_view_clear(struct req_view *v)
{
    json_decref(v->root);
    memset(v, 0, sizeof(*v));
}

/* Parse request bytes strictly (the shape this module writes). */
static enum hsmca_err
req_parse(const unsigned char *bytes, size_t len, struct req_view *v)
{
    json_error_t jerr;
    size_t i;

    memset(v, 0, sizeof(*v));
    if (len == 0 || len > HSMCA_QUORUM_REQUEST_MAX)
        return HSMCA_E_QUORUM_ENVELOPE;
    v->root = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v->root == NULL ||
        json_unpack_ex(v->root, &jerr, JSON_STRICT,
                       "{s:I, s:o, s:I, s:I, s:s, s:s, s:o, s:s, s:s, s:{s:s, s:s}}",
                       "approver_epoch", &v->epoch, "checkpoint", &v->checkpoint, "created",
                       &v->created, "expires", &v->expires, "id", &v->id, "op", &v->op, "params",
                       &v->params, "policy_hash", &v->policy_hash, "request_key", &v->request_key,
                       "requester", "key", &v->req_key, "principal", &v->principal) != 0)
        goto bad;
    v->tokens = json_object_get(v->params, "tokens");
    if (strlen(v->id) != HSMCA_QUORUM_ID_LEN || !json_is_array(v->tokens) ||
        json_array_size(v->tokens) == 0 || json_array_size(v->tokens) > HSMCA_QUORUM_TOKENS_MAX ||
        v->epoch < 1)
        goto bad;
    for (i = 0; i < json_array_size(v->tokens); i++) {
        const char *l = json_string_value(json_array_get(v->tokens, i));

        if (l == NULL || strlen(l) == 0 || strlen(l) > HSMCA_TOKEN_LABEL_MAX)
            goto bad;
    }
    if (approval_digest(bytes, len, v->digest) != 0)
        goto bad;
    return HSMCA_OK;
bad:
    req_view_clear(v);
    return HSMCA_E_QUORUM_ENVELOPE;
}

static const char *
req_token(const struct req_view *v, size_t i)
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
    char *b = b64enc(s->sealed, s->sealed_len);

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
    char *b = NULL, hex[65];
    const char *status;
    enum hsmca_err rc;
    size_t i;

    memset(&r, 0, sizeof(r));
    memset(&e, 0, sizeof(e));
    memset(&v, 0, sizeof(v));
    if (q == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (strlen(id) != HSMCA_QUORUM_ID_LEN)
        return HSMCA_E_NOT_FOUND;
    rc = hsmca_store_qrequest_get(rd(q), id, &r);
    if (rc != HSMCA_OK)
        return rc;
    rc = req_parse(r.bytes, r.len, &v);
    if (rc == HSMCA_OK)
        rc = hsmca_store_qepoch_current(rd(q), &e);
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
    for (i = 0; e.epoch == (uint64_t)v.epoch && i < json_array_size(v.tokens); i++) {
        struct hsmca_qtoken t;

        rc = hsmca_store_qtoken_get(rd(q), req_token(&v, i), &t);
        if (rc == HSMCA_OK)
            rc = hsmca_store_qshare_list(rd(q), t.label, t.epoch, env_share, &c);
        if (rc == HSMCA_OK && t.alt_epoch != 0)
            rc = hsmca_store_qshare_list(rd(q), t.label, t.alt_epoch, env_share, &alt);
        if (rc != HSMCA_OK)
            goto out;
    }
    rc = hsmca_store_qapproval_list(rd(q), id, env_approval, &c);
    if (rc != HSMCA_OK)
        goto out;
    status = r.status;
    if (strcmp(status, "pending") == 0 && v.expires <= now_ms(q))
        status = "expired";
    b = b64enc(r.bytes, r.len);
    hex32(v.digest, hex);
    env = b != NULL ? json_pack("{s:O, s:s, s:s, s:O, s:s, s:I}", "approvals", c.names, "digest",
                                hex, "request", b, "shares", c.shares, "status", status,
                                "threshold", (json_int_t)policy_threshold(e.policy, v.op))
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
    req_view_clear(&v);
    hsmca_qrequest_clear(&r);
    hsmca_qepoch_clear(&e);
    return rc;
}

/* ---- approvals ---- */

struct appr_view {
    json_t *root;
    const char *request_id, *approver, *sig_b64;
    json_t *shares;
    json_t *alt_shares; /* re-sealed shares of alternate PINs, or NULL (docs/custody.md) */
    unsigned char *sig;
    size_t sig_len;
};

static void
appr_view_clear(struct appr_view *a)
{
    json_decref(a->root);
    free(a->sig);
    memset(a, 0, sizeof(*a));
}

static enum hsmca_err
appr_parse(const char *json, size_t len, struct appr_view *a)
{
    const char *k;
    json_t *val;

    memset(a, 0, sizeof(*a));
    if (json == NULL || len == 0 || len > HSMCA_QUORUM_APPROVAL_MAX)
        return HSMCA_E_QUORUM_APPROVAL_MALFORMED;
    a->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (a->root == NULL ||
        json_unpack_ex(a->root, NULL, JSON_STRICT, "{s?o, s:s, s:s, s:o, s:s}", "alt_shares",
                       &a->alt_shares, "approver", &a->approver, "request_id", &a->request_id,
                       "shares", &a->shares, "sig", &a->sig_b64) != 0)
        goto bad;
    if (!name_ok(a->approver) || strlen(a->request_id) != HSMCA_QUORUM_ID_LEN ||
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
    if (b64dec(a->sig_b64, HSMCA_ECDSA_P256_DER_MAX, &a->sig, &a->sig_len) != HSMCA_OK)
        goto bad;
    return HSMCA_OK;
bad:
    appr_view_clear(a);
    return HSMCA_E_QUORUM_APPROVAL_MALFORMED;
}

static EVP_PKEY *
pending_key(struct hsmca_quorum *q, const char *id)
{
    struct pending *p;

    for (p = q->pending; p != NULL; p = p->next) {
        if (strcmp(p->id, id) == 0)
            return p->key;
    }
    return NULL;
}

static void
pending_drop(struct hsmca_quorum *q, const char *id)
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
static enum hsmca_err
open_share(struct hsmca_quorum *q, const struct req_view *v, EVP_PKEY *rkey, const char *approver,
           const char *label, int alt, const char *sealed_b64, struct hsmca_secret *share)
{
    struct hsmca_qtoken t;
    struct share_find f;
    struct hsmca_seal_ad ad;
    struct hsmca_secret s = {NULL, 0};
    unsigned char *sealed = NULL, c[32];
    size_t sealed_len = 0;
    enum hsmca_err rc;

    memset(&f, 0, sizeof(f));
    f.approver = approver;
    rc = hsmca_store_qtoken_get(rd(q), label, &t);
    if (rc == HSMCA_OK && alt) {
        if (t.alt_epoch == 0)
            return HSMCA_E_QUORUM_SHARE_INVALID;
        t.epoch = t.alt_epoch;
    }
    if (rc == HSMCA_OK)
        rc = hsmca_store_qshare_list(rd(q), label, t.epoch, find_share, &f);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOT_FOUND ? HSMCA_E_QUORUM_SHARE_INVALID : rc;
    if (!f.found || sealed_b64 == NULL)
        return HSMCA_E_QUORUM_SHARE_INVALID;
    if (b64dec(sealed_b64, 512, &sealed, &sealed_len) != HSMCA_OK)
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
    if (share_commit(label, t.epoch, f.s.idx, s.p, s.len, c) != 0 ||
        CRYPTO_memcmp(c, f.s.commit, 32) != 0) {
        hsmca_secret_clear(&s);
        return HSMCA_E_QUORUM_SHARE_INVALID;
    }
    *share = s;
    return HSMCA_OK;
}

static int
approver_active(const struct hsmca_qapprover *a, uint64_t epoch)
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
    if (strcmp(r->status, "executed") == 0 || strcmp(r->status, "failed") == 0) {
        *code = HSMCA_E_QUORUM_REQUEST_EXECUTED;
        return HSMCA_OK;
    }
    if (now_ms(q) >= v->expires) {
        *code = HSMCA_E_QUORUM_REQUEST_EXPIRED;
        return HSMCA_OK;
    }
    rc = hsmca_store_qapprover_get(rd(q), a->approver, &ap);
    if (rc == HSMCA_E_NOT_FOUND || (rc == HSMCA_OK && !approver_active(&ap, (uint64_t)v->epoch))) {
        *code = HSMCA_E_QUORUM_APPROVER_INACTIVE;
        rc = HSMCA_OK;
        goto out;
    }
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_store_qepoch_current(rd(q), &e);
    if (rc != HSMCA_OK)
        goto out;
    if (e.epoch != (uint64_t)v->epoch || strcmp(e.policy_hash, v->policy_hash) != 0) {
        *code = HSMCA_E_QUORUM_EPOCH_STALE;
        goto out;
    }
    /* separation of duties: never the requester, by principal or by key */
    {
        char fpr[65];

        hex32(ap.fingerprint, fpr);
        if (strcmp(ap.name, v->principal) == 0 || strcmp(fpr, v->req_key) == 0) {
            *code = HSMCA_E_QUORUM_SELF_APPROVAL;
            goto out;
        }
    }
    pub = spki_parse(ap.spki, ap.spki_len);
    if (pub == NULL || !verify_digest(pub, v->digest, a->sig, a->sig_len)) {
        *code = HSMCA_E_QUORUM_SIGNATURE_INVALID;
        goto out;
    }
    memset(&cc, 0, sizeof(cc));
    cc.approver = ap.name;
    rc = hsmca_store_qapproval_list(rd(q), request_id, count_approval, &cc);
    if (rc != HSMCA_OK)
        goto out;
    if (cc.seen) {
        *code = HSMCA_E_QUORUM_DUPLICATE_APPROVAL;
        goto out;
    }
    rkey = pending_key(q, request_id);
    if (rkey == NULL) {
        *code = HSMCA_E_QUORUM_REQUEST_VOID;
        goto out;
    }
    if (json_object_size(a->shares) != json_array_size(v->tokens)) {
        *code = HSMCA_E_QUORUM_SHARE_INVALID; /* a token missing, or one the request does not use */
        goto out;
    }
    for (i = 0; i < json_array_size(v->tokens); i++) {
        const char *label = req_token(v, i);
        struct hsmca_secret s = {NULL, 0};

        rc = open_share(q, v, rkey, ap.name, label, 0,
                        json_string_value(json_object_get(a->shares, label)), &s);
        hsmca_secret_clear(&s);
        /* a share of an alternate PIN, where given, must open too */
        if (rc == HSMCA_OK && json_object_get(a->alt_shares, label) != NULL) {
            rc = open_share(q, v, rkey, ap.name, label, 1,
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
    rc = appr_parse(json, len, &a);
    if (rc != HSMCA_OK) {
        rc = refuse(q, who, "quorum.approve", target, rc, NULL);
        goto out;
    }
    rc = strlen(request_id) == HSMCA_QUORUM_ID_LEN ? hsmca_store_qrequest_get(rd(q), request_id, &r)
                                                   : HSMCA_E_NOT_FOUND;
    if (rc == HSMCA_E_NOT_FOUND) {
        rc = refuse(q, who, "quorum.approve", target, rc,
                    json_pack("{s:s}", "approver", a.approver));
        goto out;
    }
    if (rc == HSMCA_OK)
        rc = req_parse(r.bytes, r.len, &v);
    if (rc == HSMCA_OK)
        rc = check_approval(q, request_id, &a, &r, &v, &code, bad_token);
    if (rc != HSMCA_OK)
        goto out;
    if (code != HSMCA_OK) {
        json_t *x = json_pack("{s:s}", "approver", a.approver);

        if (code == HSMCA_E_QUORUM_SHARE_INVALID)
            json_object_set_new(x, "token", json_string(bad_token));
        rc = refuse(q, who, "quorum.approve", target, code, x);
        goto out;
    }
    memset(&ap, 0, sizeof(ap));
    snprintf(ap.r.request_id, sizeof(ap.r.request_id), "%s", request_id);
    snprintf(ap.r.approver, sizeof(ap.r.approver), "%s", a.approver);
    ap.r.body = (unsigned char *)json;
    ap.r.body_len = len;
    ap.r.received_ms = now_ms(q);
    detail = json_pack("{s:s, s:s}", "approver", a.approver, "sig", a.sig_b64);
    if (detail == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    rc = audit_ex(q, who, "quorum.approve", target, "ok", detail, apply_approval, &ap, 0,
                  st != NULL ? &st->receipt : NULL);
    if (rc == HSMCA_E_QUORUM_DUPLICATE_APPROVAL) {
        rc = refuse(q, who, "quorum.approve", target, rc,
                    json_pack("{s:s}", "approver", a.approver));
        goto out;
    }
    if (rc != HSMCA_OK)
        goto out;
    memset(&cc, 0, sizeof(cc));
    rc = hsmca_store_qapproval_list(rd(q), request_id, count_approval, &cc);
    if (rc == HSMCA_OK)
        rc = hsmca_store_qepoch_current(rd(q), &e);
    if (rc == HSMCA_OK && st != NULL) {
        st->approvals = cc.n;
        st->threshold = policy_threshold(e.policy, v.op);
        st->ready = st->threshold > 0 && cc.n >= st->threshold;
    }
out:
    pthread_mutex_unlock(&q->lock);
    json_decref(detail);
    appr_view_clear(&a);
    req_view_clear(&v);
    hsmca_qrequest_clear(&r);
    hsmca_qepoch_clear(&e);
    return rc;
}

/* ---- execution ---- */

struct counted {
    char name[HSMCA_QUORUM_NAME_MAX + 1];
    char *body; /* approval JSON */
    size_t len;
};

struct exec_state {
    struct hsmca_qrequest r;
    struct hsmca_qepoch e;
    struct req_view v;
    EVP_PKEY *rkey;
    struct counted c[HSMCA_QUORUM_APPROVERS_MAX];
    size_t nc;
    size_t ntok;
    char label[HSMCA_QUORUM_TOKENS_MAX][HSMCA_TOKEN_LABEL_MAX + 1];
    struct hsmca_qtoken qt[HSMCA_QUORUM_TOKENS_MAX];
    struct hsmca_secret pin[HSMCA_QUORUM_TOKENS_MAX];
    /* a token's alternate PIN while its rotation is unconfirmed (qt[i].alt_epoch != 0), rebuilt
     * where m approvals carry its shares; live_alt: the token answered to it */
    struct hsmca_secret alt_pin[HSMCA_QUORUM_TOKENS_MAX];
    int live_alt[HSMCA_QUORUM_TOKENS_MAX];
    struct hsmca_token *tok[HSMCA_QUORUM_TOKENS_MAX];
    int logged_in[HSMCA_QUORUM_TOKENS_MAX];
    json_t *result;
};

static void
exec_state_clear(struct exec_state *x)
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
    req_view_clear(&x->v);
    json_decref(x->result);
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

/* Re-check each stored approval (signature, approver active, not the requester, one per
 * approver) and keep only the valid ones. */
static void
keep_valid(struct hsmca_quorum *q, struct exec_state *x)
{
    size_t i, j, k = 0;

    for (i = 0; i < x->nc; i++) {
        struct appr_view a;
        struct hsmca_qapprover ap;
        EVP_PKEY *pub = NULL;
        char fpr[65];
        int ok = 0;

        memset(&ap, 0, sizeof(ap));
        if (appr_parse(x->c[i].body, x->c[i].len, &a) == HSMCA_OK &&
            strcmp(a.request_id, x->r.id) == 0 && strcmp(a.approver, x->c[i].name) == 0 &&
            hsmca_store_qapprover_get(rd(q), a.approver, &ap) == HSMCA_OK &&
            approver_active(&ap, (uint64_t)x->v.epoch) && strcmp(ap.name, x->v.principal) != 0) {
            hex32(ap.fingerprint, fpr);
            pub = spki_parse(ap.spki, ap.spki_len);
            ok = strcmp(fpr, x->v.req_key) != 0 && pub != NULL &&
                 verify_digest(pub, x->v.digest, a.sig, a.sig_len);
        }
        for (j = 0; ok && j < k; j++)
            ok = strcmp(x->c[j].name, x->c[i].name) != 0;
        EVP_PKEY_free(pub);
        hsmca_qapprover_clear(&ap);
        appr_view_clear(&a);
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
static enum hsmca_err
rebuild_pin(struct hsmca_quorum *q, struct exec_state *x, size_t i, int alt)
{
    struct hsmca_secret buf = {NULL, 0}, pin = {NULL, 0};
    unsigned char c[32];
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

        rc = appr_parse(x->c[k].body, x->c[k].len, &a);
        if (rc != HSMCA_OK)
            goto out;
        sealed = json_string_value(json_object_get(alt ? a.alt_shares : a.shares, x->label[i]));
        if (sealed == NULL && alt) {
            appr_view_clear(&a);
            continue;
        }
        rc = open_share(q, &x->v, x->rkey, a.approver, x->label[i], alt, sealed, &s);
        appr_view_clear(&a);
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
    if (pin_commit(alt ? x->qt[i].alt_pin_salt : x->qt[i].pin_salt, x->label[i],
                   alt ? x->qt[i].alt_epoch : x->qt[i].epoch, &pin, c) != 0 ||
        CRYPTO_memcmp(c, alt ? x->qt[i].alt_pin_commit : x->qt[i].pin_commit, 32) != 0) {
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
    rc = d != NULL ? audit_ex(q, NULL, "ca.keygen", target, "intent", d, NULL, NULL, 0, &ir)
                   : HSMCA_E_NOMEM;
    if (rc == HSMCA_OK) {
        enum hsmca_err arc;

        rc = hsmca_token_generate_key(tok, key_label, id, sizeof(id), HSMCA_KEY_USAGE_SIGN, key);
        json_object_set_new(d, "code", json_string(hsmca_err_code(rc)));
        arc = audit_ex(q, NULL, "ca.keygen", target, rc == HSMCA_OK ? "ok" : "failed", d, NULL,
                       NULL, ir.seq, NULL);
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
    a.rec.created_ms = now_ms(q);
    SHA256(der, (size_t)n, d);
    hex32(d, hex);
    hsmca_hex_encode(serial, HSMCA_MATTER_SERIAL_LEN, ser, sizeof(ser));
    snprintf(target, sizeof(target), "ca/%s", ca);
    detail = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "ca", ca, "kind", kind, "parent", parent,
                       "cert_sha256", hex, "serial", ser, "request_id", x->r.id);
    rc = detail != NULL ? audit(q, NULL, "ca.create", target, "ok", detail, apply_ca, &a)
                        : HSMCA_E_NOMEM;
    if (rc == HSMCA_OK && ex->ca_created != NULL)
        rc = ex->ca_created(ex->arg, &a.rec);
    if (rc == HSMCA_OK) {
        b = b64enc(der, (size_t)n);
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
act_create(struct hsmca_quorum *q, struct exec_state *x, const struct hsmca_quorum_exec *ex)
{
    const char *ca = NULL, *token = NULL, *key_label = NULL, *cn = NULL, *parent = NULL;
    json_int_t vid = -1, pid = -1;
    struct hsmca_matter_ca_subject subj;
    struct hsmca_ca_rec prec;
    struct hsmca_key *key = NULL, *pkey = NULL;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    const unsigned char *p;
    X509 *cert = NULL, *paa = NULL;
    int is_paa = strcmp(x->v.op, "ca.create_paa") == 0;
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
        rc = hsmca_store_ca_get(rd(q), parent, &prec);
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
        if (!rc_->set_ok[i]) {
            struct hsmca_qtoken n = t;

            t.epoch = n.alt_epoch;
            memcpy(t.pin_salt, n.alt_pin_salt, 32);
            memcpy(t.pin_commit, n.alt_pin_commit, 32);
            t.alt_epoch = n.epoch;
            memcpy(t.alt_pin_salt, n.pin_salt, 32);
            memcpy(t.alt_pin_commit, n.pin_commit, 32);
            rc = hsmca_store_qtoken_put(st, &t);
            continue;
        }
        t.alt_epoch = 0;
        memset(t.alt_pin_salt, 0, 32);
        memset(t.alt_pin_commit, 0, 32);
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
static enum hsmca_err
rotate(struct hsmca_quorum *q, struct exec_state *x)
{
    struct epoch_change *c = calloc(1, sizeof(*c));
    struct approver_list *l = calloc(1, sizeof(*l));
    struct all_tokens *all = calloc(1, sizeof(*all));
    struct hsmca_qapprover enrol;
    struct hsmca_secret newpin[HSMCA_QUORUM_TOKENS_MAX];
    size_t tok_of[HSMCA_QUORUM_TOKENS_MAX]; /* c->tok index -> x index, for rotated tokens */
    int set_ok[HSMCA_QUORUM_TOKENS_MAX];
    const char *remove = NULL;
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
    c->e.created_ms = now_ms(q);
    snprintf(c->e.policy_hash, sizeof(c->e.policy_hash), "%s", x->e.policy_hash);
    c->e.policy = strdup(x->e.policy);
    if (c->e.policy == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    rc = active_approvers(rd(q), x->e.epoch, l);
    if (rc != HSMCA_OK)
        goto out;
    if (strcmp(x->v.op, "approver.enroll") == 0) {
        json_t *p = json_deep_copy(x->v.params);

        if (p != NULL)
            json_object_del(p, "tokens");
        rc = p != NULL ? enrol_params(rd(q), p, &enrol) : HSMCA_E_NOMEM;
        json_decref(p);
        if (rc == HSMCA_OK) {
            enrol.since_epoch = c->e.epoch;
            l->a[l->n] = enrol;
            l->a[l->n].spki = malloc(enrol.spki_len);
            if (l->a[l->n].spki == NULL) {
                rc = HSMCA_E_NOMEM;
                goto out;
            }
            memcpy(l->a[l->n].spki, enrol.spki, enrol.spki_len);
            l->n++;
            c->enrol = &enrol;
        }
    } else if (strcmp(x->v.op, "approver.remove") == 0) {
        remove = json_string_value(json_object_get(x->v.params, "name"));
        for (i = 0; i < l->n; i++) {
            if (strcmp(l->a[i].name, remove) == 0) {
                hsmca_qapprover_clear(&l->a[i]);
                memmove(&l->a[i], &l->a[i + 1], (l->n - i - 1) * sizeof(l->a[0]));
                l->n--;
                break;
            }
        }
        c->remove = remove;
    } else if (strcmp(x->v.op, "policy.update") == 0) {
        char *text =
            json_dumps(json_object_get(x->v.params, "policy"), JSON_COMPACT | JSON_SORT_KEYS);

        free(c->e.policy);
        c->e.policy = NULL;
        rc = text != NULL
                 ? policy_canon(text, strlen(text), c->e.m, l->n, &c->e.policy, c->e.policy_hash)
                 : HSMCA_E_NOMEM;
        free(text);
    }
    if (rc != HSMCA_OK)
        goto out;
    if (l->n < c->e.m) {
        rc = HSMCA_E_QUORUM_TOO_FEW_APPROVERS;
        goto out;
    }
    c->approvers = l;
    /* 1. new PINs, sealed before any token changes */
    rc = hsmca_store_qtoken_list(rd(q), collect_token, all);
    if (rc != HSMCA_OK)
        goto out;
    labels = json_array();
    for (i = 0; i < all->n; i++) {
        struct token_epoch *te = &c->tok[c->ntok];

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
                   32);
            memcpy(te->t.alt_pin_commit,
                   x->live_alt[j] ? x->qt[j].alt_pin_commit : x->qt[j].pin_commit, 32);
            tok_of[c->ntok] = j;
            json_array_append_new(labels, json_string(all->t[i].label));
        } else {
            struct snap_ctx sc = {te};

            memset(te, 0, sizeof(*te));
            te->t = all->t[i];
            rc = hsmca_store_qshare_list(rd(q), te->t.label, te->t.epoch, snap_share, &sc);
        }
        c->ntok++;
        if (rc != HSMCA_OK)
            goto out;
    }
    /* 2. write ahead: the epoch with both PINs of every rotated token */
    rc = epoch_detail(c);
    if (rc == HSMCA_OK) {
        json_object_set(c->detail, "tokens", labels);
        json_object_set_new(c->detail, "request_id", json_string(x->r.id));
        rc = audit_ex(q, NULL, "quorum.epoch", "quorum", "intent", c->detail, apply_epoch, c, 0,
                      &ir);
    }
    if (rc != HSMCA_OK)
        goto out;
    /* 3. the token changes */
    for (i = 0; i < c->ntok; i++) {
        if (!c->tok[i].rotated)
            continue;
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
                                json_string(set_ok[i] ? "rotated" : "kept"));
    }
    conf.c = c;
    conf.set_ok = set_ok;
    {
        json_t *d = res != NULL
                        ? json_pack("{s:I, s:O}", "epoch", (json_int_t)c->e.epoch, "tokens", res)
                        : NULL;
        enum hsmca_err erc = d != NULL ? audit_ex(q, NULL, "quorum.rotate", "quorum",
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
    json_decref(labels);
    json_decref(res);
    hsmca_qapprover_clear(&enrol);
    if (c != NULL) {
        hsmca_qepoch_clear(&c->e);
        epoch_change_clear(c);
    }
    if (l != NULL)
        approver_list_clear(l);
    free(c);
    free(l);
    free(all);
    return rc;
}

struct status_apply {
    const char *id;
    const char *status;
};

static enum hsmca_err
apply_status(struct hsmca_store *st, void *arg)
{
    struct status_apply *a = arg;

    return hsmca_store_qrequest_set_status(st, a->id, a->status);
}

static json_t *
execute_detail(struct exec_state *x, unsigned threshold)
{
    json_t *ap = json_array(), *d;
    char *b = b64enc(x->r.bytes, x->r.len);
    size_t i;

    for (i = 0; ap != NULL && i < x->nc; i++) {
        struct appr_view a;

        if (appr_parse(x->c[i].body, x->c[i].len, &a) == HSMCA_OK)
            json_array_append_new(
                ap, json_pack("{s:s, s:s}", "approver", a.approver, "sig", a.sig_b64));
        appr_view_clear(&a);
    }
    d = b != NULL && ap != NULL
            ? json_pack("{s:s, s:I, s:I, s:s, s:O}", "op", x->v.op, "epoch", (json_int_t)x->v.epoch,
                        "threshold", (json_int_t)threshold, "request", b, "approvals", ap)
            : NULL;
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
    char target[48], xh[65];
    unsigned threshold = 0;
    enum hsmca_err rc, act_rc = HSMCA_OK;
    json_t *d = NULL;
    int activated = 0, started = 0;
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
    rc = hsmca_store_qrequest_get(rd(q), id, &x->r);
    if (rc == HSMCA_OK)
        rc = req_parse(x->r.bytes, x->r.len, &x->v);
    if (rc == HSMCA_OK)
        rc = hsmca_store_qepoch_current(rd(q), &x->e);
    if (rc != HSMCA_OK)
        goto out;
    if (strcmp(x->r.status, "pending") != 0) {
        rc = refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_REQUEST_EXECUTED, NULL);
        goto out;
    }
    if (now_ms(q) >= x->v.expires) {
        rc = refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_REQUEST_EXPIRED, NULL);
        goto out;
    }
    if (x->e.epoch != (uint64_t)x->v.epoch || strcmp(x->e.policy_hash, x->v.policy_hash) != 0) {
        rc = refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_EPOCH_STALE, NULL);
        goto out;
    }
    x->rkey = pending_key(q, id);
    if (x->rkey == NULL) {
        rc = refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_REQUEST_VOID, NULL);
        goto out;
    }
    if (strcmp(x->v.op, "ca.activate") == 0 && ex->activate == NULL) {
        rc = refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_OP_UNKNOWN, NULL);
        goto out;
    }
    cc.q = q;
    cc.x = x;
    rc = hsmca_store_qapproval_list(rd(q), id, collect_raw, &cc);
    if (rc != HSMCA_OK)
        goto out;
    keep_valid(q, x);
    threshold = policy_threshold(x->e.policy, x->v.op);
    if (threshold < x->e.m || x->nc < threshold) {
        rc = refuse(q, NULL, "quorum.execute", target, HSMCA_E_QUORUM_THRESHOLD_NOT_MET,
                    json_pack("{s:I, s:I}", "approvals", (json_int_t)x->nc, "threshold",
                              (json_int_t)threshold));
        goto out;
    }
    started = 1;
    /* every PIN rebuilt and checked before the first C_Login */
    x->ntok = json_array_size(x->v.tokens);
    for (i = 0; i < x->ntok; i++) {
        snprintf(x->label[i], sizeof(x->label[0]), "%s", req_token(&x->v, i));
        rc = hsmca_store_qtoken_get(rd(q), x->label[i], &x->qt[i]);
        if (rc == HSMCA_OK)
            rc = rebuild_pin(q, x, i, 0);
        if (rc == HSMCA_OK && x->qt[i].alt_epoch != 0) {
            rc = rebuild_pin(q, x, i, 1);
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
    if (strcmp(x->v.op, "ca.create_paa") == 0 || strcmp(x->v.op, "ca.create_pai") == 0)
        act_rc = act_create(q, x, ex);
    else if (hsmca_qop_revocation(x->v.op))
        act_rc = hsmca_qop_revocation_execute(q->cfg.audit, rd(q), x->v.op, x->v.params, x->r.id,
                                              x->tok[0], ex, now_ms(q), &x->result);
    /* proactive refresh: whatever the act did, the PINs used here change now */
    rc = rotate(q, x);
    if (rc == HSMCA_OK && act_rc == HSMCA_OK && strcmp(x->v.op, "ca.activate") == 0) {
        json_int_t until = 0, max = 0;
        const char *ca = NULL;

        if (json_unpack(x->v.params, "{s:s, s:I, s:I}", "ca", &ca, "until", &until, "max_dacs",
                        &max) != 0)
            act_rc = HSMCA_E_QUORUM_PARAMS;
        else
            act_rc = ex->activate(ex->arg, ca, (int64_t)until, (uint64_t)max);
        activated = act_rc == HSMCA_OK;
        if (activated)
            x->result =
                json_pack("{s:s, s:I, s:I}", "activated", ca, "until", until, "max_dacs", max);
    }
    if (rc == HSMCA_OK)
        rc = act_rc;
    if (rc != HSMCA_OK)
        goto fail;
    d = execute_detail(x, threshold);
    sa.id = id;
    sa.status = "executed";
    rc = d != NULL ? audit_ex(q, NULL, "quorum.execute", target, "ok", d, apply_status, &sa, 0, &xr)
                   : HSMCA_E_NOMEM;
    if (rc != HSMCA_OK)
        goto fail;
    if (result != NULL) {
        json_t *res = x->result != NULL ? json_deep_copy(x->result) : json_object();
        uint64_t ne = x->e.epoch + 1;

        json_object_set_new(res, "op", json_string(x->v.op));
        json_object_set_new(res, "request_id", json_string(id));
        json_object_set_new(res, "epoch", json_integer((json_int_t)ne));
        hsmca_hex_encode(xr.entry_hash, 32, xh, sizeof(xh));
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
    arc = fd != NULL ? audit(q, NULL, "quorum.execute", target, "failed", fd, apply_status, &sa)
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
        if (x->logged_in[i] && !activated) {
            if (hsmca_token_logout(x->tok[i]) != HSMCA_OK)
                hsmca_log(HSMCA_LOG_ERROR, "quorum", "logout-failed", "token=%s", x->label[i]);
        }
    }
    if (started)
        pending_drop(q, id);
out:
    pthread_mutex_unlock(&q->lock);
    json_decref(d);
    exec_state_clear(x);
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
    rc = hsmca_store_ca_get(rd(q), ca_id, &rec);
    hsmca_ca_rec_clear(&rec);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOT_FOUND ? refuse(q, who, "ca.deactivate", target, rc, NULL) : rc;
    /* drain and log out first: the entry records a window that is closed */
    rc = ex->deactivate != NULL ? ex->deactivate(ex->arg, ca_id) : HSMCA_OK;
    d = json_pack("{s:s, s:s}", "ca", ca_id, "code", hsmca_err_code(rc));
    if (d == NULL)
        return HSMCA_E_NOMEM;
    {
        enum hsmca_err arc =
            audit(q, who, "ca.deactivate", target, rc == HSMCA_OK ? "ok" : "failed", d, NULL, NULL);

        if (rc == HSMCA_OK)
            rc = arc;
    }
    json_decref(d);
    return rc;
}

struct appr_json_ctx {
    json_t *arr;
};

static enum hsmca_err
approver_json(void *arg, const struct hsmca_qapprover *r)
{
    struct appr_json_ctx *c = arg;
    char *b = b64enc(r->spki, r->spki_len), fpr[65];
    json_t *o;

    if (b == NULL)
        return HSMCA_E_NOMEM;
    hex32(r->fingerprint, fpr);
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
    rc = hsmca_store_qepoch_current(rd(q), &e);
    if (rc == HSMCA_E_NOT_FOUND)
        return HSMCA_E_QUORUM_NOT_INITIALISED;
    if (rc != HSMCA_OK)
        return rc;
    c.arr = json_array();
    rc = c.arr != NULL ? hsmca_store_qapprover_list(rd(q), approver_json, &c) : HSMCA_E_NOMEM;
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

/* ---- approver side ---- */

struct env_view {
    json_t *root;
    const char *digest, *request_b64, *status;
    json_t *shares, *approvals;
    json_t *alt_shares; /* shares of alternate PINs (docs/custody.md), or NULL */
    json_int_t threshold;
    unsigned char *bytes;
    size_t len;
    struct req_view v;
};

static void
env_view_clear(struct env_view *e)
{
    json_decref(e->root);
    free(e->bytes);
    req_view_clear(&e->v);
    memset(e, 0, sizeof(*e));
}

static enum hsmca_err
env_parse(const char *text, size_t len, struct env_view *e)
{
    char hex[65];

    memset(e, 0, sizeof(*e));
    if (text == NULL || len == 0 || len > HSMCA_QUORUM_ENVELOPE_MAX)
        return HSMCA_E_QUORUM_ENVELOPE;
    e->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (e->root == NULL ||
        json_unpack_ex(e->root, NULL, JSON_STRICT, "{s?o, s:o, s:s, s:s, s:o, s:s, s:I}",
                       "alt_shares", &e->alt_shares, "approvals", &e->approvals, "digest",
                       &e->digest, "request", &e->request_b64, "shares", &e->shares, "status",
                       &e->status, "threshold", &e->threshold) != 0 ||
        !json_is_object(e->shares) || (e->alt_shares != NULL && !json_is_object(e->alt_shares)))
        goto bad;
    if (b64dec(e->request_b64, HSMCA_QUORUM_REQUEST_MAX, &e->bytes, &e->len) != HSMCA_OK ||
        req_parse(e->bytes, e->len, &e->v) != HSMCA_OK)
        goto bad;
    hex32(e->v.digest, hex);
    if (strcmp(hex, e->digest) != 0)
        goto bad;
    return HSMCA_OK;
bad:
    env_view_clear(e);
    return HSMCA_E_QUORUM_ENVELOPE;
}

static void
fmt_time(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, n, "?");
}

enum hsmca_err
hsmca_quorum_describe(const char *envelope, size_t len, char **text)
{
    struct env_view e;
    char *params = NULL, *cp = NULL, created[32], expires[32], *out = NULL;
    size_t n;
    enum hsmca_err rc;

    if (text == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = env_parse(envelope, len, &e);
    if (rc != HSMCA_OK)
        return rc;
    params = json_dumps(e.v.params, JSON_INDENT(2) | JSON_SORT_KEYS);
    cp = json_is_object(e.v.checkpoint)
             ? strdup(json_string_value(json_object_get(e.v.checkpoint, "text")) != NULL
                          ? json_string_value(json_object_get(e.v.checkpoint, "text"))
                          : "")
             : strdup("(none)\n");
    fmt_time(e.v.created, created, sizeof(created));
    fmt_time(e.v.expires, expires, sizeof(expires));
    n = 1024 + (params != NULL ? strlen(params) : 0) + (cp != NULL ? strlen(cp) : 0);
    out = params != NULL && cp != NULL ? malloc(n) : NULL;
    if (out == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    snprintf(out, n,
             "request:   %s\n"
             "operation: %s\n"
             "params:    %s\n"
             "requester: %s (key %s)\n"
             "created:   %s\n"
             "expires:   %s\n"
             "epoch:     %lld (policy %s)\n"
             "digest:    %s\n"
             "status:    %s (%zu of %lld approvals)\n"
             "checkpoint:\n%s",
             e.v.id, e.v.op, params, e.v.principal, e.v.req_key[0] != '\0' ? e.v.req_key : "-",
             created, expires, (long long)e.v.epoch, e.v.policy_hash, e.digest, e.status,
             json_array_size(e.approvals), (long long)e.threshold, cp);
    *text = out;
    out = NULL;
    rc = HSMCA_OK;
out:
    free(out);
    free(params);
    free(cp);
    env_view_clear(&e);
    return rc;
}

/*
 * Unseal one share of the envelope (entry {epoch, index, sealed}) with the approver's key and
 * re-seal it to the request key, bound to the request; out[label] = the re-sealed share.
 */
static enum hsmca_err
reseal(const struct env_view *e, const struct hsmca_quorum_signer *s, EVP_PKEY *rkey,
       const char *label, json_t *entry, json_t *out)
{
    const char *sealed_b64 = NULL;
    json_int_t epoch = 0, index = 0;
    unsigned char *sealed = NULL, *re = NULL;
    size_t sealed_len = 0, re_len = 0;
    struct hsmca_seal_ad ad;
    struct hsmca_secret sh = {NULL, 0};
    enum hsmca_err rc;
    char *re_b64;

    if (json_unpack_ex(entry, NULL, JSON_STRICT, "{s:I, s:I, s:s}", "epoch", &epoch, "index",
                       &index, "sealed", &sealed_b64) != 0)
        return HSMCA_E_QUORUM_NO_SHARE;
    if (epoch < 1 || index < 1 || index > HSMCA_QUORUM_APPROVERS_MAX ||
        b64dec(sealed_b64, 512, &sealed, &sealed_len) != HSMCA_OK)
        return HSMCA_E_QUORUM_ENVELOPE;
    memset(&ad, 0, sizeof(ad));
    ad.token_label = label;
    ad.epoch = (uint64_t)epoch;
    ad.share_index = (unsigned)index;
    ad.approver = s->name;
    rc = s->key != NULL ? hsmca_unseal_token(s->key, &ad, sealed, sealed_len, &sh)
                        : hsmca_unseal_soft(s->soft, &ad, sealed, sealed_len, &sh);
    free(sealed);
    if (rc != HSMCA_OK)
        return rc;
    ad.request_id = e->v.id;
    ad.request_digest = e->v.digest;
    rc = hsmca_seal(rkey, &ad, sh.p, sh.len, &re, &re_len);
    hsmca_secret_clear(&sh);
    if (rc != HSMCA_OK)
        return rc;
    re_b64 = b64enc(re, re_len);
    free(re);
    if (re_b64 == NULL)
        return HSMCA_E_NOMEM;
    rc = json_object_set_new(out, label, json_string(re_b64)) == 0 ? HSMCA_OK : HSMCA_E_NOMEM;
    free(re_b64);
    return rc;
}

enum hsmca_err
hsmca_quorum_approval_make(const char *envelope, size_t len, const struct hsmca_quorum_signer *s,
                           char **approval)
{
    struct env_view e;
    json_t *mine, *shares = NULL, *alt_shares = NULL, *a = NULL;
    EVP_PKEY *rkey = NULL;
    unsigned char *spki = NULL, sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t spki_len = 0, sig_len = 0, i;
    char *sig_b64 = NULL;
    enum hsmca_err rc;
    struct timespec ts;

    if (s == NULL || approval == NULL || !name_ok(s->name) || (s->key == NULL) == (s->soft == NULL))
        return HSMCA_E_INVALID_ARG;
    rc = env_parse(envelope, len, &e);
    if (rc != HSMCA_OK)
        return rc;
    clock_gettime(CLOCK_REALTIME, &ts);
    if ((int64_t)ts.tv_sec * 1000 >= e.v.expires) {
        rc = HSMCA_E_QUORUM_REQUEST_EXPIRED;
        goto out;
    }
    mine = json_object_get(e.shares, s->name);
    if (!json_is_object(mine)) {
        rc = HSMCA_E_QUORUM_NO_SHARE;
        goto out;
    }
    if (b64dec(e.v.request_key, 512, &spki, &spki_len) != HSMCA_OK ||
        (rkey = spki_parse(spki, spki_len)) == NULL) {
        rc = HSMCA_E_QUORUM_ENVELOPE;
        goto out;
    }
    shares = json_object();
    if (shares == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    for (i = 0; i < json_array_size(e.v.tokens); i++) {
        const char *label = req_token(&e.v, i);
        json_t *alt = json_object_get(json_object_get(e.alt_shares, s->name), label);

        rc = reseal(&e, s, rkey, label, json_object_get(mine, label), shares);
        /* an unconfirmed rotation: the share of the token's alternate PIN too */
        if (rc == HSMCA_OK && alt != NULL) {
            if (alt_shares == NULL && (alt_shares = json_object()) == NULL)
                rc = HSMCA_E_NOMEM;
            if (rc == HSMCA_OK)
                rc = reseal(&e, s, rkey, label, alt, alt_shares);
        }
        if (rc != HSMCA_OK)
            goto out;
    }
    rc = signer_sign(s, e.v.digest, sig, sizeof(sig), &sig_len);
    if (rc != HSMCA_OK)
        goto out;
    sig_b64 = b64enc(sig, sig_len);
    a = sig_b64 != NULL ? json_pack("{s:s, s:s, s:O, s:s}", "approver", s->name, "request_id",
                                    e.v.id, "shares", shares, "sig", sig_b64)
                        : NULL;
    if (a != NULL && alt_shares != NULL)
        json_object_set(a, "alt_shares", alt_shares);
    *approval = a != NULL ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = *approval != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
out:
    free(sig_b64);
    free(spki);
    EVP_PKEY_free(rkey);
    json_decref(shares);
    json_decref(alt_shares);
    json_decref(a);
    env_view_clear(&e);
    return rc;
}

enum hsmca_err
hsmca_quorum_enroll_pop(const struct hsmca_quorum_signer *s, EVP_PKEY *pub,
                        const char *token_serial, char **pop_b64)
{
    unsigned char *spki = NULL, d[32], sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t spki_len = 0, sig_len = 0;
    enum hsmca_err rc;

    if (s == NULL || pub == NULL || token_serial == NULL || pop_b64 == NULL || !name_ok(s->name))
        return HSMCA_E_INVALID_ARG;
    rc = spki_der(pub, &spki, &spki_len);
    if (rc != HSMCA_OK)
        return rc;
    if (sha256v(d, POP_DOMAIN, sizeof(POP_DOMAIN), s->name, strlen(s->name) + 1, spki, spki_len,
                token_serial, strlen(token_serial), (const void *)NULL) != 0) {
        OPENSSL_free(spki);
        return HSMCA_E_INTERNAL;
    }
    OPENSSL_free(spki);
    rc = signer_sign(s, d, sig, sizeof(sig), &sig_len);
    if (rc != HSMCA_OK)
        return rc;
    *pop_b64 = b64enc(sig, sig_len);
    return *pop_b64 != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
}

/* ---- the approver as a witness of the audit log ---- */

enum hsmca_err
hsmca_quorum_witness(const char *envelope, size_t len, EVP_PKEY *audit_pub, const char *state,
                     char **state_out)
{
    struct env_view e;
    struct hsmca_audit_cp_fields f;
    const char *text = NULL, *sig_b64 = NULL;
    unsigned char *sig = NULL, *spki = NULL, kid[32], h[32];
    size_t sig_len = 0, spki_len = 0;
    EVP_MD_CTX *md = NULL;
    json_t *old = NULL, *neu = NULL;
    char head[65], hash[65];
    enum hsmca_err rc;

    if (audit_pub == NULL || state_out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = env_parse(envelope, len, &e);
    if (rc != HSMCA_OK)
        return rc;
    rc = HSMCA_E_QUORUM_CHECKPOINT;
    if (!json_is_object(e.v.checkpoint) ||
        json_unpack_ex(e.v.checkpoint, NULL, JSON_STRICT, "{s:s, s:s}", "sig", &sig_b64, "text",
                       &text) != 0 ||
        hsmca_audit_checkpoint_parse(text, strlen(text), &f) != HSMCA_OK ||
        b64dec(sig_b64, 256, &sig, &sig_len) != HSMCA_OK)
        goto out;
    /* signed by this audit key, and naming it */
    if (spki_der(audit_pub, &spki, &spki_len) != HSMCA_OK ||
        sha256v(kid, spki, spki_len, (const void *)NULL) != 0 || memcmp(kid, f.key, 32) != 0)
        goto out;
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, audit_pub) != 1 ||
        EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)text, strlen(text)) != 1)
        goto out;
    if (sha256v(h, text, strlen(text), (const void *)NULL) != 0)
        goto out;
    hex32(f.head, head);
    hex32(h, hash);
    /* consistency with what this approver saw last */
    if (state != NULL && state[0] != '\0') {
        json_int_t osize = 0;
        const char *ohead = NULL, *ohash = NULL;

        old = json_loads(state, JSON_REJECT_DUPLICATES, NULL);
        if (old == NULL || json_unpack_ex(old, NULL, JSON_STRICT, "{s:I, s:s, s:s}", "size", &osize,
                                          "head", &ohead, "hash", &ohash) != 0) {
            rc = HSMCA_E_INVALID_ARG;
            goto out;
        }
        /* A larger size is accepted as an extension: a checkpoint names only its predecessor,
         * so without the checkpoints in between a fork inside the new range is found by the
         * auditor's extract check (hsmca audit verify --previous), not here. */
        if ((uint64_t)osize > f.size) {
            rc = HSMCA_E_QUORUM_FORK; /* the log is shorter than it was: truncated */
            goto out;
        }
        if ((uint64_t)osize == f.size && strcmp(ohead, head) != 0) {
            rc = HSMCA_E_QUORUM_FORK; /* same size, another head: a fork */
            goto out;
        }
    }
    neu = json_pack("{s:I, s:s, s:s}", "size", (json_int_t)f.size, "head", head, "hash", hash);
    *state_out = neu != NULL ? json_dumps(neu, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = *state_out != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
out:
    EVP_MD_CTX_free(md);
    OPENSSL_free(spki);
    free(sig);
    json_decref(old);
    json_decref(neu);
    env_view_clear(&e);
    return rc;
}

/* ---- parsers on their own (for the fuzz targets: tests/fuzz/fuzz_approval.c) ---- */

enum hsmca_err
hsmca_quorum_approval_check(const char *json, size_t len)
{
    struct appr_view a;
    enum hsmca_err rc = appr_parse(json, len, &a);

    if (rc == HSMCA_OK)
        appr_view_clear(&a);
    return rc;
}

enum hsmca_err
hsmca_quorum_policy_check(const char *text, size_t len, unsigned m, unsigned n)
{
    char *canon = NULL, hash[65];
    enum hsmca_err rc = policy_canon(text, len, m, n, &canon, hash);

    free(canon);
    return rc;
}
