/* SPDX-License-Identifier: Apache-2.0
 *
 * token_sign.c -- the signing pool (a key's own sessions and its session copy) and what a key
 * does: digest signing, ECDH derivation, attribute reports.
 */
#include "token_internal.h"

/* Take a signing session of key's pool, opening one if none is idle and fewer than the maximum are
 * open; waits for one otherwise. */
static enum hsmca_err
pool_get(const struct hsmca_key *key, CK_SESSION_HANDLE *s)
{
    struct sign_pool *p = key->pool;
    CK_SLOT_ID slot_id;
    CK_RV rv;

    pthread_mutex_lock(&p->mu);
    while (p->nidle == 0 && p->nopen + p->opening >= SIGN_SESSIONS_MAX)
        pthread_cond_wait(&p->cv, &p->mu);
    if (p->nidle > 0) {
        *s = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        return HSMCA_OK;
    }
    p->opening++;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_lock(&key->tok->lock);
    slot_id = key->tok->slot_id;
    pthread_mutex_unlock(&key->tok->lock);
    rv = key->tok->p11->f->C_OpenSession(slot_id, CKF_SERIAL_SESSION, NULL, NULL, s);
    pthread_mutex_lock(&p->mu);
    p->opening--;
    if (rv == CKR_OK)
        p->open[p->nopen++] = *s;
    else
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rv == CKR_OK ? HSMCA_OK : tok_ckr("C_OpenSession", rv, HSMCA_E_TOKEN_FAILED);
}

static void
pool_put(const struct hsmca_key *key, CK_SESSION_HANDLE s)
{
    struct sign_pool *p = key->pool;

    pthread_mutex_lock(&p->mu);
    p->idle[p->nidle++] = s;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Make the session copy of key on session s (which must stay open as long as the copy is used).
 * Returns its handle, or CK_INVALID_HANDLE when the token refuses or the copy is weaker than the
 * original (then nothing is left behind). */
static CK_OBJECT_HANDLE
copy_key(const struct hsmca_key *key, CK_SESSION_HANDLE s)
{
    CK_FUNCTION_LIST_PTR f = key->tok->p11->f;
    CK_BBOOL no = CK_FALSE, tok_b = CK_TRUE, sens = CK_FALSE, extr = CK_TRUE, priv = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}, {CKA_LABEL, (void *)"", 0}};
    CK_ATTRIBUTE check[] = {{CKA_TOKEN, &tok_b, sizeof(tok_b)},
                            {CKA_SENSITIVE, &sens, sizeof(sens)},
                            {CKA_EXTRACTABLE, &extr, sizeof(extr)},
                            {CKA_PRIVATE, &priv, sizeof(priv)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv;

    pthread_mutex_lock(&key->tok->p11->lock); /* object creation, serialised (SoftHSM #573) */
    rv = f->C_CopyObject(s, key->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    pthread_mutex_unlock(&key->tok->p11->lock);
    if (rv != CKR_OK)
        return CK_INVALID_HANDLE;
    rv = f->C_GetAttributeValue(s, h, check, sizeof(check) / sizeof(check[0]));
    if (rv != CKR_OK || tok_b != CK_FALSE || sens != CK_TRUE || extr != CK_FALSE ||
        priv != CK_TRUE) {
        (void)f->C_DestroyObject(s, h);
        return CK_INVALID_HANDLE;
    }
    return h;
}

/* Encode a raw r || s (2 x 32 bytes, CKM_ECDSA's output for P-256) as a DER ECDSA-Sig-Value. */
static int
ecdsa_raw_to_der(const unsigned char *raw, size_t raw_len, unsigned char *sig, size_t sig_max,
                 size_t *sig_len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = NULL, *sv = NULL;
    unsigned char *p = sig;
    int n, ok = 0;

    if (es == NULL || raw_len != 64)
        goto out;
    r = BN_bin2bn(raw, 32, NULL);
    sv = BN_bin2bn(raw + 32, 32, NULL);
    if (r == NULL || sv == NULL || ECDSA_SIG_set0(es, r, sv) != 1)
        goto out;
    r = sv = NULL;
    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || (size_t)n > sig_max || i2d_ECDSA_SIG(es, &p) != n)
        goto out;
    *sig_len = (size_t)n;
    ok = 1;
out:
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(es);
    return ok;
}

enum hsmca_err
hsmca_key_sign_digest(const struct hsmca_key *key, const unsigned char *dgst, size_t dgst_len,
                      unsigned char *sig, size_t sig_max, size_t *sig_len)
{
    CK_FUNCTION_LIST_PTR f;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE obj;
    unsigned char raw[132];
    CK_ULONG raw_len = sizeof(raw);
    struct sign_pool *p;
    enum hsmca_err rc;
    CK_RV rv;

    if (key == NULL || dgst == NULL || sig == NULL || sig_len == NULL)
        return HSMCA_E_INVALID_ARG;
    if (dgst_len < 20 || dgst_len > HSMCA_DIGEST_MAX || sig_max < HSMCA_ECDSA_P256_DER_MAX)
        return HSMCA_E_INVALID_ARG;
    f = key->tok->p11->f;
    p = key->pool;
    rc = pool_get(key, &s);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&p->mu);
    if (!p->decided && p->signed_once) {
        /* the second signature makes the copy (a one-shot signer, such as an approval, never
         * creates an object), on a session that stays open until free */
        p->copy = copy_key(key, s);
        p->copy_session = s;
        p->decided = 1;
    }
    obj = p->copy != CK_INVALID_HANDLE ? p->copy : key->handle;
    p->signed_once = 1;
    pthread_mutex_unlock(&p->mu);
    rv = f->C_SignInit(s, &mech, obj);
    if (rv == CKR_OK)
        rv = f->C_Sign(s, (CK_BYTE_PTR)dgst, dgst_len, raw, &raw_len);
    pool_put(key, s);
    if (rv != CKR_OK)
        return tok_ckr("C_Sign", rv, HSMCA_E_SIGN_FAILED);
    if (!ecdsa_raw_to_der(raw, raw_len, sig, sig_max, sig_len))
        return HSMCA_E_SIGN_FAILED;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_key_derive(const struct hsmca_key *key, EVP_PKEY *peer, struct hsmca_secret *out)
{
    struct hsmca_token *tok;
    CK_FUNCTION_LIST_PTR f;
    unsigned char point[65];
    size_t plen = 0;
    CK_ECDH1_DERIVE_PARAMS params;
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &params, sizeof(params)};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG vlen = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},       {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &vlen, sizeof(vlen)}, {CKA_TOKEN, &no, sizeof(no)},
        {CKA_SENSITIVE, &no, sizeof(no)},     {CKA_EXTRACTABLE, &yes, sizeof(yes)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    struct hsmca_secret s = {NULL, 0};
    enum hsmca_err rc;
    CK_RV rv;

    if (key == NULL || peer == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (EVP_PKEY_get_base_id(peer) != EVP_PKEY_EC)
        return HSMCA_E_INVALID_ARG;
    {
        char group[32];
        size_t glen = 0;

        if (!EVP_PKEY_get_utf8_string_param(peer, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &glen) ||
            strcmp(group, "prime256v1") != 0)
            return HSMCA_E_INVALID_ARG;
    }
    if (!EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                         sizeof(point), &plen) ||
        plen != 65)
        return HSMCA_E_INVALID_ARG;
    memset(&params, 0, sizeof(params));
    params.kdf = CKD_NULL;
    params.pPublicData = point;
    params.ulPublicDataLen = plen;
    tok = key->tok;
    f = tok->p11->f;
    rc = hsmca_secret_set(&s, NULL, 32);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    rv = f->C_DeriveKey(tok->session, &mech, key->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    if (rv != CKR_OK) {
        rc = tok_ckr("C_DeriveKey", rv, HSMCA_E_TOKEN_FAILED);
        goto out;
    }
    {
        CK_ATTRIBUTE v = {CKA_VALUE, s.p, 32};

        rv = f->C_GetAttributeValue(tok->session, h, &v, 1);
        if (rv != CKR_OK || v.ulValueLen != 32) {
            rc = tok_ckr("C_GetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
            if (rc == HSMCA_OK)
                rc = HSMCA_E_TOKEN_FAILED;
            goto out;
        }
    }
    *out = s;
    s.p = NULL;
    s.len = 0;
    rc = HSMCA_OK;
out:
    if (h != CK_INVALID_HANDLE)
        (void)f->C_DestroyObject(tok->session, h);
    pthread_mutex_unlock(&tok->lock);
    hsmca_secret_clear(&s);
    return rc;
}

enum hsmca_err
hsmca_key_attrs(const struct hsmca_key *key, struct hsmca_key_attrs *out)
{
    struct hsmca_token *tok;
    CK_ATTRIBUTE v = {CKA_VALUE, NULL, 0};
    CK_RV rv;

    if (key == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    tok = key->tok;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&tok->lock);
    out->token = tok_get_bool(tok, key->handle, CKA_TOKEN);
    out->private_ = tok_get_bool(tok, key->handle, CKA_PRIVATE);
    out->sensitive = tok_get_bool(tok, key->handle, CKA_SENSITIVE);
    out->always_sensitive = tok_get_bool(tok, key->handle, CKA_ALWAYS_SENSITIVE);
    out->extractable = tok_get_bool(tok, key->handle, CKA_EXTRACTABLE);
    out->never_extractable = tok_get_bool(tok, key->handle, CKA_NEVER_EXTRACTABLE);
    out->local = tok_get_bool(tok, key->handle, CKA_LOCAL);
    out->sign = tok_get_bool(tok, key->handle, CKA_SIGN);
    out->derive = tok_get_bool(tok, key->handle, CKA_DERIVE);
    out->decrypt = tok_get_bool(tok, key->handle, CKA_DECRYPT);
    out->unwrap = tok_get_bool(tok, key->handle, CKA_UNWRAP);
    rv = tok->p11->f->C_GetAttributeValue(tok->session, key->handle, &v, 1);
    out->value_rv = (unsigned long)rv;
    out->value_readable = rv == CKR_OK && v.ulValueLen != CK_UNAVAILABLE_INFORMATION;
    pthread_mutex_unlock(&tok->lock);
    return HSMCA_OK;
}
