/* SPDX-License-Identifier: Apache-2.0
 *
 * mdl_ca.c -- the mDL CA operations the quorum runs (mdl_ca.h): IACA and DS creation, DS
 * revocation, the IACA's CRL. Builders and rules are mdl_cert.c's, CRLs crl.c's; every change is
 * an audit entry whose apply callback writes the store (store_mdl.c).
 */
#include "hsmca/mdl_ca.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "hsmca/csr.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

static enum hsmca_err
entry(const struct hsmca_mdl_ctx *c, const char *action, const char *target, const char *outcome,
      json_t *detail, hsmca_audit_apply_fn apply, void *arg, uint64_t closes,
      struct hsmca_audit_receipt *out)
{
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    char *d;
    enum hsmca_err rc;

    if (c->request_id != NULL && c->request_id[0] != '\0')
        json_object_set_new(detail, "request_id", json_string(c->request_id));
    d = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
    if (d == NULL)
        return HSMCA_E_NOMEM;
    hsmca_audit_event_set(&ev, "system", "system", action, target, outcome, d);
    ev.closes_intent = closes;
    rc = hsmca_audit_append(c->audit, &ev, apply, arg, &r);
    free(d);
    if (rc == HSMCA_OK && out != NULL)
        *out = r;
    return rc;
}

/* Key generation as an intent and its outcome (a crash between them leaves a visible intent). */
static enum hsmca_err
keygen(const struct hsmca_mdl_ctx *c, struct hsmca_token *tok, const char *ca_id,
       const char *token_uri, const char *key_label, struct hsmca_key **key)
{
    unsigned char id[16];
    char hex[33], target[HSMCA_CA_ID_MAX + 8];
    struct hsmca_audit_receipt ir;
    json_t *d;
    enum hsmca_err rc, arc;

    if (RAND_bytes(id, sizeof(id)) != 1)
        return HSMCA_E_RANDOM;
    hsmca_hex_encode(id, sizeof(id), hex, sizeof(hex));
    snprintf(target, sizeof(target), "ca/%s", ca_id);
    d = json_pack("{s:s, s:s, s:s}", "token", token_uri, "key_label", key_label, "key_id", hex);
    if (d == NULL)
        return HSMCA_E_NOMEM;
    rc = entry(c, "mdl.keygen", target, "intent", d, NULL, NULL, 0, &ir);
    if (rc == HSMCA_OK) {
        rc = hsmca_token_generate_key(tok, key_label, id, sizeof(id), HSMCA_KEY_USAGE_SIGN, key);
        json_object_set_new(d, "code", json_string(hsmca_err_code(rc)));
        arc = entry(c, "mdl.keygen", target, rc == HSMCA_OK ? "ok" : "failed", d, NULL, NULL,
                    ir.seq, NULL);
        if (arc != HSMCA_OK && rc == HSMCA_OK)
            rc = arc;
    }
    json_decref(d);
    return rc;
}

static enum hsmca_err
apply_put(struct hsmca_store *st, void *arg)
{
    return hsmca_store_mdl_ca_put(st, arg);
}

/* Store rec (its certificate x) with an mdl.ca.create entry; fills rec's cert and serial. */
static enum hsmca_err
store_rec(const struct hsmca_mdl_ctx *c, struct hsmca_mdl_ca_rec *rec, X509 *x)
{
    unsigned char *der = NULL, d[HSMCA_SHA256_LEN];
    char hex[HSMCA_SHA256_HEX_SIZE], ser[41], target[HSMCA_CA_ID_MAX + 8];
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    json_t *detail;
    enum hsmca_err rc;
    int n = i2d_X509(x, &der);

    if (n <= 0 || sn == NULL || ASN1_STRING_length(sn) < 1 || ASN1_STRING_length(sn) > 20) {
        OPENSSL_free(der);
        return HSMCA_E_INTERNAL;
    }
    rec->cert_der = malloc((size_t)n);
    if (rec->cert_der == NULL) {
        OPENSSL_free(der);
        return HSMCA_E_NOMEM;
    }
    memcpy(rec->cert_der, der, (size_t)n);
    rec->cert_len = (size_t)n;
    OPENSSL_free(der);
    rec->serial_len = (size_t)ASN1_STRING_length(sn);
    memcpy(rec->serial, ASN1_STRING_get0_data(sn), rec->serial_len);
    rec->created_ms = c->now_ms;
    rec->reason = -1;
    SHA256(rec->cert_der, rec->cert_len, d);
    hsmca_hex_encode(d, sizeof(d), hex, sizeof(hex));
    hsmca_hex_encode(rec->serial, rec->serial_len, ser, sizeof(ser));
    snprintf(target, sizeof(target), "ca/%s", rec->id);
    detail = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "ca", rec->id, "kind", rec->kind, "parent",
                       rec->parent, "cert_sha256", hex, "serial", ser, "key_in_token",
                       rec->key_uri[0] != '\0');
    if (detail == NULL)
        return HSMCA_E_NOMEM;
    rc = entry(c, "mdl.ca.create", target, "ok", detail, apply_put, rec, 0, NULL);
    json_decref(detail);
    return rc;
}

/* store_rec, then rec moves into *out (rec is left empty) */
static enum hsmca_err
store_ca(const struct hsmca_mdl_ctx *c, struct hsmca_mdl_ca_rec *rec, X509 *x,
         struct hsmca_mdl_ca_rec *out)
{
    enum hsmca_err rc = store_rec(c, rec, x);

    if (rc == HSMCA_OK) {
        *out = *rec;
        memset(rec, 0, sizeof(*rec));
    }
    return rc;
}

static int
id_ok(const char *id)
{
    return id != NULL && hsmca_ca_id_valid(id);
}

/* HSMCA_OK when no mDL CA has the id yet, HSMCA_E_EXISTS when one has, else the store's code */
static enum hsmca_err
id_unused(const struct hsmca_mdl_ctx *c, const char *id)
{
    struct hsmca_mdl_ca_rec old;
    enum hsmca_err rc;

    memset(&old, 0, sizeof(old));
    rc = hsmca_store_mdl_ca_get(c->ro, id, &old);
    hsmca_mdl_ca_rec_clear(&old);
    return rc == HSMCA_OK ? HSMCA_E_EXISTS : rc == HSMCA_E_NOT_FOUND ? HSMCA_OK : rc;
}

static int
label_ok(const char *s)
{
    size_t i, n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > 64)
        return 0;
    for (i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == ';' || s[i] == '%')
            return 0;
    return 1;
}

enum hsmca_err
hsmca_mdl_ca_create_iaca(const struct hsmca_mdl_ctx *c, struct hsmca_token *tok,
                         const char *token_uri, const char *ca_id, const char *key_label,
                         const struct hsmca_mdl_subject *s, struct hsmca_mdl_ca_rec *out)
{
    struct hsmca_mdl_ca_rec rec;
    struct hsmca_key *key = NULL;
    X509 *x = NULL;
    enum hsmca_err rc;

    if (c == NULL || c->iaca_profile == NULL || tok == NULL || token_uri == NULL || !id_ok(ca_id) ||
        !label_ok(key_label) || s == NULL || out == NULL ||
        strlen(token_uri) + strlen(key_label) + 9 > HSMCA_URI_MAX)
        return HSMCA_E_INVALID_ARG;
    memset(&rec, 0, sizeof(rec));
    rc = id_unused(c, ca_id);
    if (rc != HSMCA_OK)
        return rc;
    rc = keygen(c, tok, ca_id, token_uri, key_label, &key);
    if (rc != HSMCA_OK)
        return rc;
    rc = hsmca_mdl_iaca_build(c->iaca_profile, s, ca_id, hsmca_key_private(key),
                              hsmca_key_public(key), (time_t)(c->now_ms / 1000), &x);
    if (rc != HSMCA_OK)
        goto out;
    snprintf(rec.id, sizeof(rec.id), "%s", ca_id);
    snprintf(rec.kind, sizeof(rec.kind), "iaca");
    snprintf(rec.token_uri, sizeof(rec.token_uri), "%s", token_uri);
    snprintf(rec.key_uri, sizeof(rec.key_uri), "%s;object=%s", token_uri, key_label);
    rc = store_ca(c, &rec, x, out);
out:
    hsmca_mdl_ca_rec_clear(&rec);
    X509_free(x);
    hsmca_key_free(key);
    return rc;
}

/* The IACA record id and its certificate (caller clears *rec and frees *out on every path). */
static enum hsmca_err
iaca_load(const struct hsmca_mdl_ctx *c, const char *id, struct hsmca_mdl_ca_rec *rec, X509 **out)
{
    const unsigned char *p;
    enum hsmca_err rc = hsmca_store_mdl_ca_get(c->ro, id, rec);

    if (rc != HSMCA_OK)
        return rc;
    if (strcmp(rec->kind, "iaca") != 0)
        return HSMCA_E_INVALID_ARG;
    p = rec->cert_der;
    *out = d2i_X509(NULL, &p, (long)rec->cert_len);
    return *out != NULL ? HSMCA_OK : HSMCA_E_INTERNAL;
}

enum hsmca_err
hsmca_mdl_ca_create_ds(const struct hsmca_mdl_ctx *c, struct hsmca_token *iaca_tok,
                       const char *iaca_id, struct hsmca_token *ds_tok, const char *ds_token_uri,
                       const char *key_label, const unsigned char *csr_der, size_t csr_len,
                       const char *ca_id, const char *cn, struct hsmca_mdl_ca_rec *out)
{
    struct hsmca_mdl_ca_rec rec, irec;
    struct hsmca_key *ikey = NULL, *key = NULL;
    struct hsmca_csr *csr = NULL;
    X509 *iaca = NULL, *x = NULL;
    EVP_PKEY *pub;
    enum hsmca_err rc;

    if (c == NULL || c->ds_profile == NULL || iaca_tok == NULL || !id_ok(iaca_id) ||
        !id_ok(ca_id) || out == NULL || (ds_tok == NULL) == (csr_der == NULL) ||
        (ds_tok != NULL && (ds_token_uri == NULL || !label_ok(key_label) ||
                            strlen(ds_token_uri) + strlen(key_label) + 9 > HSMCA_URI_MAX)))
        return HSMCA_E_INVALID_ARG;
    memset(&rec, 0, sizeof(rec));
    memset(&irec, 0, sizeof(irec));
    rc = id_unused(c, ca_id);
    if (rc != HSMCA_OK)
        return rc;
    rc = iaca_load(c, iaca_id, &irec, &iaca);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_token_find_key(iaca_tok, irec.key_uri, &ikey);
    if (rc != HSMCA_OK)
        goto out;
    if (csr_der != NULL) {
        rc = hsmca_csr_parse(csr_der, csr_len, &csr);
        if (rc != HSMCA_OK)
            goto out;
        pub = hsmca_csr_pubkey(csr);
    } else {
        rc = keygen(c, ds_tok, ca_id, ds_token_uri, key_label, &key);
        if (rc != HSMCA_OK)
            goto out;
        pub = hsmca_key_public(key);
    }
    if (pub == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    rc = hsmca_mdl_ds_build(c->ds_profile, cn, iaca_id, pub, iaca, hsmca_key_private(ikey),
                            (time_t)(c->now_ms / 1000), &x);
    if (rc != HSMCA_OK)
        goto out;
    snprintf(rec.id, sizeof(rec.id), "%s", ca_id);
    snprintf(rec.kind, sizeof(rec.kind), "ds");
    snprintf(rec.parent, sizeof(rec.parent), "%s", iaca_id);
    if (ds_tok != NULL) {
        snprintf(rec.token_uri, sizeof(rec.token_uri), "%s", ds_token_uri);
        snprintf(rec.key_uri, sizeof(rec.key_uri), "%s;object=%s", ds_token_uri, key_label);
    }
    rc = store_ca(c, &rec, x, out);
out:
    hsmca_mdl_ca_rec_clear(&rec);
    hsmca_mdl_ca_rec_clear(&irec);
    X509_free(x);
    X509_free(iaca);
    hsmca_csr_free(csr);
    hsmca_key_free(key);
    hsmca_key_free(ikey);
    return rc;
}

struct revoke_apply {
    const char *id;
    int64_t at_ms, invalidity_ms;
    int reason;
};

static enum hsmca_err
apply_revoke(struct hsmca_store *st, void *arg)
{
    struct revoke_apply *a = arg;

    return hsmca_store_mdl_ca_revoke(st, a->id, a->at_ms, a->reason, a->invalidity_ms);
}

enum hsmca_err
hsmca_mdl_ca_revoke_ds(const struct hsmca_mdl_ctx *c, const char *ds_id, int reason,
                       int64_t invalidity_ms)
{
    struct hsmca_mdl_ca_rec rec;
    struct revoke_apply a;
    char target[HSMCA_CA_ID_MAX + 8], ser[41];
    json_t *d;
    enum hsmca_err rc;

    if (c == NULL || !id_ok(ds_id) || reason < -1 || reason > 10 || reason == 7 ||
        invalidity_ms < 0 || invalidity_ms > c->now_ms)
        return HSMCA_E_INVALID_ARG;
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_store_mdl_ca_get(c->ro, ds_id, &rec);
    if (rc != HSMCA_OK)
        return rc;
    if (strcmp(rec.kind, "ds") != 0) {
        hsmca_mdl_ca_rec_clear(&rec);
        return HSMCA_E_MDL_NOT_DS;
    }
    if (rec.revoked) {
        hsmca_mdl_ca_rec_clear(&rec);
        return HSMCA_E_REVOKE_ALREADY;
    }
    a.id = ds_id;
    a.at_ms = c->now_ms;
    a.reason = reason;
    a.invalidity_ms = invalidity_ms;
    hsmca_hex_encode(rec.serial, rec.serial_len, ser, sizeof(ser));
    snprintf(target, sizeof(target), "ca/%s", ds_id);
    d = json_pack("{s:s, s:s, s:s, s:s?}", "ds", ds_id, "iaca", rec.parent, "serial", ser, "reason",
                  reason >= 0 ? hsmca_crl_reason_name(reason) : NULL);
    rc = d != NULL ? entry(c, "mdl.ds.revoke", target, "ok", d, apply_revoke, &a, 0, NULL)
                   : HSMCA_E_NOMEM;
    json_decref(d);
    hsmca_mdl_ca_rec_clear(&rec);
    return rc;
}

struct crl_apply {
    const char *ca;
    const struct hsmca_crl_rec *crl;
};

static enum hsmca_err
apply_crl(struct hsmca_store *st, void *arg)
{
    struct crl_apply *a = arg;

    return hsmca_store_mdl_crl_put(st, a->ca, a->crl);
}

enum hsmca_err
hsmca_mdl_crl_sign(const struct hsmca_mdl_ctx *c, struct hsmca_token *iaca_tok, const char *iaca_id,
                   const struct hsmca_crl_policy *pol, struct hsmca_crl_rec *out)
{
    struct hsmca_mdl_ca_rec irec;
    struct hsmca_crl_rec prev, crl;
    struct hsmca_crl_entries cc = {NULL, 0, 0};
    struct hsmca_crl_params cp;
    struct hsmca_key *key = NULL;
    struct crl_apply a;
    X509 *iaca = NULL;
    unsigned char *der = NULL, dg[HSMCA_SHA256_LEN];
    size_t der_len = 0;
    char target[HSMCA_CA_ID_MAX + 8], hex[HSMCA_SHA256_HEX_SIZE];
    json_t *d;
    enum hsmca_err rc;
    time_t now = (time_t)(c != NULL ? c->now_ms / 1000 : 0);

    if (c == NULL || iaca_tok == NULL || !id_ok(iaca_id) || pol == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(&irec, 0, sizeof(irec));
    memset(&prev, 0, sizeof(prev));
    memset(&crl, 0, sizeof(crl));
    rc = iaca_load(c, iaca_id, &irec, &iaca);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_store_mdl_crl_get(c->ro, iaca_id, &prev);
    if (rc != HSMCA_OK && rc != HSMCA_E_NOT_FOUND)
        goto out;
    rc = hsmca_store_mdl_revoked_list(c->ro, iaca_id, hsmca_crl_entries_add, &cc);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_token_find_key(iaca_tok, irec.key_uri, &key);
    if (rc != HSMCA_OK)
        goto out;
    memset(&cp, 0, sizeof(cp));
    cp.issuer = iaca;
    cp.key = hsmca_key_private(key);
    cp.number = prev.number + 1;
    cp.this_update = now;
    cp.next_update = now + (time_t)pol->next_update_s;
    rc = hsmca_crl_build(&cp, cc.e, cc.n, &der, &der_len);
    if (rc != HSMCA_OK)
        goto out;
    crl.number = cp.number;
    crl.this_update = cp.this_update;
    crl.next_update = cp.next_update;
    crl.der = der;
    crl.der_len = der_len;
    a.ca = iaca_id;
    a.crl = &crl;
    SHA256(der, der_len, dg);
    hsmca_hex_encode(dg, sizeof(dg), hex, sizeof(hex));
    snprintf(target, sizeof(target), "ca/%s", iaca_id);
    d = json_pack("{s:s, s:I, s:I, s:I, s:s}", "ca", iaca_id, "number", (json_int_t)cp.number,
                  "entries", (json_int_t)cc.n, "next_update", (json_int_t)cp.next_update,
                  "crl_sha256", hex);
    rc = d != NULL ? entry(c, "mdl.crl.sign", target, "ok", d, apply_crl, &a, 0, NULL)
                   : HSMCA_E_NOMEM;
    json_decref(d);
    if (rc == HSMCA_OK && out != NULL) {
        out->number = crl.number;
        out->this_update = crl.this_update;
        out->next_update = crl.next_update;
        out->der = malloc(der_len);
        if (out->der == NULL) {
            rc = HSMCA_E_NOMEM;
        } else {
            memcpy(out->der, der, der_len);
            out->der_len = der_len;
        }
    }
out:
    OPENSSL_free(der);
    free(cc.e);
    hsmca_crl_rec_clear(&prev);
    hsmca_mdl_ca_rec_clear(&irec);
    hsmca_key_free(key);
    X509_free(iaca);
    return rc;
}
