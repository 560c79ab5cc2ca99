/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_approver.c -- the approver's side (hsmca approve): the envelope parsed and described,
 * its shares unsealed and re-sealed to the request key, the signed approval, the enrolment proof
 * of possession.
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

/* ---- approver side ---- */

void
hsmca_q_env_view_clear(struct env_view *e)
{
    json_decref(e->root);
    free(e->bytes);
    hsmca_q_req_view_clear(&e->v);
    memset(e, 0, sizeof(*e));
}

enum hsmca_err
hsmca_q_env_parse(const char *text, size_t len, struct env_view *e)
{
    json_t *view = NULL; /* hsmcad's view in a person's terms: never signed, never trusted */
    char hex[HSMCA_SHA256_HEX_SIZE];

    memset(e, 0, sizeof(*e));
    if (text == NULL || len == 0 || len > HSMCA_QUORUM_ENVELOPE_MAX)
        return HSMCA_E_QUORUM_ENVELOPE;
    e->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (e->root == NULL ||
        json_unpack_ex(e->root, NULL, JSON_STRICT, "{s?o, s:o, s:s, s:s, s:o, s:s, s:I, s?o}",
                       "alt_shares", &e->alt_shares, "approvals", &e->approvals, "digest",
                       &e->digest, "request", &e->request_b64, "shares", &e->shares, "status",
                       &e->status, "threshold", &e->threshold, "view", &view) != 0 ||
        !json_is_object(e->shares) || (e->alt_shares != NULL && !json_is_object(e->alt_shares)))
        goto bad;
    if (hsmca_b64_decode(e->request_b64, HSMCA_QUORUM_REQUEST_MAX, &e->bytes, &e->len) !=
            HSMCA_OK ||
        hsmca_q_req_parse(e->bytes, e->len, &e->v) != HSMCA_OK)
        goto bad;
    hsmca_q_hex32(e->v.digest, hex);
    if (strcmp(hex, e->digest) != 0)
        goto bad;
    return HSMCA_OK;
bad:
    hsmca_q_env_view_clear(e);
    return HSMCA_E_QUORUM_ENVELOPE;
}

/* RFC 3339 UTC to the second (util.c, the one formatter); "?" when it cannot be written. */
static void
fmt_time(int64_t ms, char *out, size_t n)
{
    if (hsmca_time_format(ms, 0, out, n) == 0)
        snprintf(out, n, "?");
}

/* Sign a 32-byte digest with the signer (token or software key): DER into sig. */
static enum hsmca_err
signer_sign(const struct hsmca_quorum_signer *s, const unsigned char dgst[HSMCA_SHA256_LEN],
            unsigned char *sig, size_t sig_max, size_t *sig_len)
{
    EVP_PKEY_CTX *c;
    size_t n = sig_max;
    enum hsmca_err rc = HSMCA_E_SIGN_FAILED;

    if (s->key != NULL)
        return hsmca_key_sign_digest(s->key, dgst, HSMCA_SHA256_LEN, sig, sig_max, sig_len);
    c = EVP_PKEY_CTX_new(s->soft, NULL);
    if (c != NULL && EVP_PKEY_sign_init(c) == 1 &&
        EVP_PKEY_sign(c, sig, &n, dgst, HSMCA_SHA256_LEN) == 1) {
        *sig_len = n;
        rc = HSMCA_OK;
    }
    EVP_PKEY_CTX_free(c);
    return rc;
}

enum hsmca_err
hsmca_quorum_describe(const char *envelope, size_t len, char **text)
{
    struct env_view e;
    const struct hsmca_qop *op;
    char *params = NULL, *cp = NULL, created[32], expires[32], *out = NULL;
    size_t n;
    enum hsmca_err rc;

    if (text == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_q_env_parse(envelope, len, &e);
    if (rc != HSMCA_OK)
        return rc;
    op = hsmca_qop_find(e.v.op);
    params = op != NULL && op->describe != NULL
                 ? op->describe(e.v.params)
                 : json_dumps(e.v.params, JSON_INDENT(2) | JSON_SORT_KEYS);
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
    hsmca_q_env_view_clear(&e);
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
        hsmca_b64_decode(sealed_b64, 512, &sealed, &sealed_len) != HSMCA_OK)
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
    re_b64 = hsmca_b64_encode(re, re_len);
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
    json_t *mine, *shares = NULL, *alt_shares = NULL, *a = NULL, *node_shares = NULL;
    EVP_PKEY *rkey = NULL;
    unsigned char *spki = NULL, sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t spki_len = 0, sig_len = 0, i;
    char *sig_b64 = NULL;
    enum hsmca_err rc;
    struct timespec ts;

    if (s == NULL || approval == NULL || !hsmca_q_name_ok(s->name) ||
        (s->key == NULL) == (s->soft == NULL))
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_q_env_parse(envelope, len, &e);
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
    if (hsmca_b64_decode(e.v.request_key, 512, &spki, &spki_len) != HSMCA_OK ||
        (rkey = hsmca_q_spki_parse(spki, spki_len)) == NULL) {
        rc = HSMCA_E_QUORUM_ENVELOPE;
        goto out;
    }
    shares = json_object();
    if (shares == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    for (i = 0; i < json_array_size(e.v.tokens); i++) {
        const char *label = hsmca_q_req_token(&e.v, i);
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
    /* several nodes: the same shares re-sealed to every other named node's request key */
    if (e.v.node_keys != NULL) {
        const char *node, *k64;
        json_t *kv;

        node_shares = json_object();
        if (node_shares == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        json_object_foreach(e.v.node_keys, node, kv)
        {
            unsigned char *nspki = NULL;
            size_t nspki_len = 0;
            EVP_PKEY *nkey = NULL;
            json_t *ns;

            k64 = json_string_value(kv);
            if (strcmp(k64, e.v.request_key) == 0)
                continue; /* the requesting node: "shares" */
            ns = json_object();
            if (ns == NULL || json_object_set_new(node_shares, node, ns) != 0) {
                rc = HSMCA_E_NOMEM;
                goto out;
            }
            if (hsmca_b64_decode(k64, 512, &nspki, &nspki_len) != HSMCA_OK ||
                (nkey = hsmca_q_spki_parse(nspki, nspki_len)) == NULL) {
                free(nspki);
                rc = HSMCA_E_QUORUM_ENVELOPE;
                goto out;
            }
            free(nspki);
            for (i = 0; rc == HSMCA_OK && i < json_array_size(e.v.tokens); i++) {
                const char *label = hsmca_q_req_token(&e.v, i);

                rc = reseal(&e, s, nkey, label, json_object_get(mine, label), ns);
            }
            EVP_PKEY_free(nkey);
            if (rc != HSMCA_OK)
                goto out;
        }
    }
    rc = signer_sign(s, e.v.digest, sig, sizeof(sig), &sig_len);
    if (rc != HSMCA_OK)
        goto out;
    sig_b64 = hsmca_b64_encode(sig, sig_len);
    a = sig_b64 != NULL ? json_pack("{s:s, s:s, s:O, s:s}", "approver", s->name, "request_id",
                                    e.v.id, "shares", shares, "sig", sig_b64)
                        : NULL;
    if (a != NULL && alt_shares != NULL)
        json_object_set(a, "alt_shares", alt_shares);
    if (a != NULL && node_shares != NULL)
        json_object_set(a, "node_shares", node_shares);
    *approval = a != NULL ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = *approval != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
out:
    free(sig_b64);
    free(spki);
    EVP_PKEY_free(rkey);
    json_decref(shares);
    json_decref(alt_shares);
    json_decref(node_shares);
    json_decref(a);
    hsmca_q_env_view_clear(&e);
    return rc;
}

enum hsmca_err
hsmca_quorum_enroll_pop(const struct hsmca_quorum_signer *s, EVP_PKEY *pub,
                        const char *token_serial, char **pop_b64)
{
    unsigned char *spki = NULL, d[HSMCA_SHA256_LEN], sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t spki_len = 0, sig_len = 0;
    enum hsmca_err rc;

    if (s == NULL || pub == NULL || token_serial == NULL || pop_b64 == NULL ||
        !hsmca_q_name_ok(s->name))
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_q_spki_der(pub, &spki, &spki_len);
    if (rc != HSMCA_OK)
        return rc;
    if (hsmca_q_sha256v(d, POP_DOMAIN, sizeof(POP_DOMAIN), s->name, strlen(s->name) + 1, spki,
                        spki_len, token_serial, strlen(token_serial), (const void *)NULL) != 0) {
        OPENSSL_free(spki);
        return HSMCA_E_INTERNAL;
    }
    OPENSSL_free(spki);
    rc = signer_sign(s, d, sig, sizeof(sig), &sig_len);
    if (rc != HSMCA_OK)
        return rc;
    *pop_b64 = hsmca_b64_encode(sig, sig_len);
    return *pop_b64 != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
}
