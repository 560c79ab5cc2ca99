/* SPDX-License-Identifier: Apache-2.0
 *
 * seal.c -- seals a short secret (a Shamir share) to a P-256 public key: ephemeral ECDH,
 * HKDF-SHA256, AES-256-GCM, with the share's context (token, epoch, index, approver, request) as
 * associated data. Unseals with a token key (the ECDH runs in the token) or a software key.
 * Owns only short-lived buffers: the shared secret and the AES key are wiped on every path, and an
 * unsealed plaintext exists only on the secure heap. Never logs a key, share or shared secret.
 */
#include "hsmca/seal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define SEAL_VERSION 1
#define POINT_LEN 65
#define NONCE_LEN 12
#define TAG_LEN 16
#define Z_LEN 32
#define KEY_LEN 32
#define SEAL_INFO "hsmca-seal-v1"
#define AD_TAG "hsmca-seal-ad-v1"

/* Derives the 32-byte ECDH shared x-coordinate with peer into z. */
typedef enum hsmca_err (*derive_fn)(const void *arg, EVP_PKEY *peer, unsigned char *z);

static size_t
put_str(unsigned char *p, const char *s, size_t n)
{
    p[0] = (unsigned char)(n >> 8);
    p[1] = (unsigned char)n;
    memcpy(p + 2, s, n);
    return 2 + n;
}

enum hsmca_err
hsmca_seal_ad_encode(const struct hsmca_seal_ad *ad, unsigned char *buf, size_t buf_max,
                     size_t *len_out)
{
    size_t label_len, name_len, id_len = 0, n = 0;
    int i;

    if (ad == NULL || buf == NULL || len_out == NULL || buf_max < HSMCA_SEAL_AD_MAX)
        return HSMCA_E_INVALID_ARG;
    if (ad->token_label == NULL || ad->approver == NULL)
        return HSMCA_E_INVALID_ARG;
    label_len = strnlen(ad->token_label, HSMCA_TOKEN_LABEL_MAX + 1);
    name_len = strnlen(ad->approver, HSMCA_SEAL_NAME_MAX + 1);
    if (label_len == 0 || label_len > HSMCA_TOKEN_LABEL_MAX || name_len == 0 ||
        name_len > HSMCA_SEAL_NAME_MAX)
        return HSMCA_E_INVALID_ARG;
    if (ad->share_index < 1 || ad->share_index > HSMCA_SHAMIR_N_MAX)
        return HSMCA_E_INVALID_ARG;
    if ((ad->request_id == NULL) != (ad->request_digest == NULL))
        return HSMCA_E_INVALID_ARG;
    if (ad->request_id != NULL) {
        id_len = strnlen(ad->request_id, HSMCA_REQUEST_ID_MAX + 1);
        if (id_len == 0 || id_len > HSMCA_REQUEST_ID_MAX)
            return HSMCA_E_INVALID_ARG;
    }
    memcpy(buf, AD_TAG, strlen(AD_TAG));
    n = strlen(AD_TAG);
    n += put_str(buf + n, ad->token_label, label_len);
    for (i = 7; i >= 0; i--)
        buf[n++] = (unsigned char)(ad->epoch >> (8 * i));
    buf[n++] = (unsigned char)ad->share_index;
    n += put_str(buf + n, ad->approver, name_len);
    if (ad->request_id == NULL) {
        buf[n++] = 0;
    } else {
        buf[n++] = 1;
        n += put_str(buf + n, ad->request_id, id_len);
        memcpy(buf + n, ad->request_digest, HSMCA_SEAL_DIGEST_LEN);
        n += HSMCA_SEAL_DIGEST_LEN;
    }
    *len_out = n;
    return HSMCA_OK;
}

/* HSMCA_OK if pk is an EC key on P-256, else HSMCA_E_SEAL_KEY. */
static enum hsmca_err
check_p256(EVP_PKEY *pk)
{
    char name[64];
    size_t name_len = 0;

    if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC)
        return HSMCA_E_SEAL_KEY;
    if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
                                       &name_len) != 1)
        return HSMCA_E_SEAL_KEY;
    if (strcmp(name, SN_X9_62_prime256v1) != 0)
        return HSMCA_E_SEAL_KEY;
    return HSMCA_OK;
}

/* The public point of pk, uncompressed, into out[0..65). pk is known to be P-256. */
static enum hsmca_err
point_of(EVP_PKEY *pk, unsigned char *out)
{
    unsigned char buf[POINT_LEN];
    size_t len = 0;
    EC_GROUP *group = NULL;
    EC_POINT *pt = NULL;
    enum hsmca_err rc = HSMCA_E_SEAL_KEY;

    if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof(buf),
                                        &len) != 1)
        goto out;
    group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    pt = group != NULL ? EC_POINT_new(group) : NULL;
    if (pt == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    if (EC_POINT_oct2point(group, pt, buf, len, NULL) != 1)
        goto out;
    if (EC_POINT_point2oct(group, pt, POINT_CONVERSION_UNCOMPRESSED, out, POINT_LEN, NULL) !=
        POINT_LEN)
        goto out;
    rc = HSMCA_OK;
out:
    EC_POINT_free(pt);
    EC_GROUP_free(group);
    return rc;
}

/* A software public key from an untrusted uncompressed point; HSMCA_E_SEAL_FORMAT if it is not a
 * point of P-256 other than infinity. */
static enum hsmca_err
peer_from_point(const unsigned char *p, EVP_PKEY **out)
{
    EC_GROUP *group = NULL;
    EC_POINT *pt = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    OSSL_PARAM params[3];
    enum hsmca_err rc = HSMCA_E_SEAL_FORMAT;

    if (p[0] != POINT_CONVERSION_UNCOMPRESSED)
        return HSMCA_E_SEAL_FORMAT;
    group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    pt = group != NULL ? EC_POINT_new(group) : NULL;
    if (pt == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    /* oct2point refuses points off the curve */
    if (EC_POINT_oct2point(group, pt, p, POINT_LEN, NULL) != 1 ||
        EC_POINT_is_at_infinity(group, pt))
        goto out;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)SN_X9_62_prime256v1, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)p, POINT_LEN);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    if (EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    *out = pk;
    pk = NULL;
    rc = HSMCA_OK;
out:
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    EC_POINT_free(pt);
    EC_GROUP_free(group);
    return rc;
}

/* HKDF-SHA256(ikm = z, salt = eph || rcpt, info = "hsmca-seal-v1") -> key[0..32). */
static enum hsmca_err
kdf(const unsigned char *z, const unsigned char *eph, const unsigned char *rcpt, unsigned char *key)
{
    unsigned char salt[2 * POINT_LEN];
    EVP_KDF *k = NULL;
    EVP_KDF_CTX *ctx = NULL;
    OSSL_PARAM params[5];
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    memcpy(salt, eph, POINT_LEN);
    memcpy(salt + POINT_LEN, rcpt, POINT_LEN);
    k = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
    ctx = k != NULL ? EVP_KDF_CTX_new(k) : NULL;
    if (ctx == NULL)
        goto out;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, Z_LEN);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof(salt));
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)SEAL_INFO,
                                                  strlen(SEAL_INFO));
    params[4] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, key, KEY_LEN, params) != 1)
        goto out;
    rc = HSMCA_OK;
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(k);
    return rc;
}

static enum hsmca_err
soft_derive(const void *arg, EVP_PKEY *peer, unsigned char *z)
{
    EVP_PKEY *priv = (EVP_PKEY *)arg;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(priv, NULL);
    size_t len = Z_LEN;
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (ctx == NULL)
        return HSMCA_E_NOMEM;
    if (EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
        EVP_PKEY_derive(ctx, z, &len) != 1 || len != Z_LEN)
        goto out;
    rc = HSMCA_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/* As soft_derive, for the recipient's own key: a key without its private half (a public key
 * passed by mistake) cannot derive, and that is the caller's key, not an internal failure. */
static enum hsmca_err
soft_unseal_derive(const void *arg, EVP_PKEY *peer, unsigned char *z)
{
    enum hsmca_err rc = soft_derive(arg, peer, z);

    return rc == HSMCA_E_INTERNAL ? HSMCA_E_SEAL_KEY : rc;
}

static enum hsmca_err
token_derive(const void *arg, EVP_PKEY *peer, unsigned char *z)
{
    struct hsmca_secret s = {NULL, 0};
    enum hsmca_err rc;

    rc = hsmca_key_derive((const struct hsmca_key *)arg, peer, &s);
    if (rc != HSMCA_OK)
        return rc;
    if (s.len != Z_LEN) {
        hsmca_secret_clear(&s);
        return HSMCA_E_INTERNAL;
    }
    memcpy(z, s.p, Z_LEN);
    hsmca_secret_clear(&s);
    return HSMCA_OK;
}

/* A box's AES key: z from derive(arg, peer), then the KDF over z and the ephemeral and recipient
 * points; z wiped. */
static enum hsmca_err
box_key(derive_fn derive, const void *arg, EVP_PKEY *peer, const unsigned char *eph_pt,
        const unsigned char *rcpt, unsigned char *key)
{
    unsigned char z[Z_LEN];
    enum hsmca_err rc = derive(arg, peer, z);

    if (rc == HSMCA_OK)
        rc = kdf(z, eph_pt, rcpt, key);
    OPENSSL_cleanse(z, sizeof(z));
    return rc;
}

/* What sealing and opening check first: the associated data encoded into adbuf, a P-256 key. */
static enum hsmca_err
box_begin(const struct hsmca_seal_ad *ad, unsigned char *adbuf, size_t *ad_len, EVP_PKEY *pub)
{
    enum hsmca_err rc = hsmca_seal_ad_encode(ad, adbuf, HSMCA_SEAL_AD_MAX, ad_len);

    return rc == HSMCA_OK ? check_p256(pub) : rc;
}

enum hsmca_err
hsmca_seal(EVP_PKEY *recipient_pub, const struct hsmca_seal_ad *ad, const unsigned char *pt,
           size_t pt_len, unsigned char **out, size_t *out_len)
{
    unsigned char adbuf[HSMCA_SEAL_AD_MAX], rcpt[POINT_LEN], key[KEY_LEN];
    unsigned char *buf = NULL, *eph_pt, *nonce, *ct;
    size_t ad_len = 0, len = 0;
    EVP_PKEY *eph = NULL;
    EVP_CIPHER_CTX *c = NULL;
    int n = 0;
    enum hsmca_err rc;

    if (recipient_pub == NULL || pt == NULL || out == NULL || out_len == NULL)
        return HSMCA_E_INVALID_ARG;
    if (pt_len == 0)
        return HSMCA_E_INVALID_ARG;
    if (pt_len > HSMCA_SEAL_PT_MAX)
        return HSMCA_E_TOO_LARGE;
    rc = box_begin(ad, adbuf, &ad_len, recipient_pub);
    if (rc != HSMCA_OK)
        return rc;
    rc = point_of(recipient_pub, rcpt);
    if (rc != HSMCA_OK)
        goto out;
    len = pt_len + HSMCA_SEAL_OVERHEAD;
    buf = malloc(len);
    if (buf == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    eph_pt = buf + 1;
    nonce = eph_pt + POINT_LEN;
    ct = nonce + NONCE_LEN;
    buf[0] = SEAL_VERSION;
    eph = EVP_EC_gen(SN_X9_62_prime256v1);
    if (eph == NULL) {
        rc = HSMCA_E_INTERNAL;
        goto out;
    }
    rc = point_of(eph, eph_pt);
    if (rc == HSMCA_OK)
        rc = box_key(soft_derive, eph, recipient_pub, eph_pt, rcpt, key);
    if (rc != HSMCA_OK)
        goto out;
    if (RAND_bytes(nonce, NONCE_LEN) != 1) {
        rc = HSMCA_E_RANDOM;
        goto out;
    }
    rc = HSMCA_E_INTERNAL;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        goto out;
    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, adbuf, (int)ad_len) != 1 ||
        EVP_EncryptUpdate(c, ct, &n, pt, (int)pt_len) != 1 || (size_t)n != pt_len ||
        EVP_EncryptFinal_ex(c, ct + pt_len, &n) != 1 || n != 0 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + pt_len) != 1)
        goto out;
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = HSMCA_OK;
out:
    EVP_CIPHER_CTX_free(c);
    EVP_PKEY_free(eph);
    OPENSSL_cleanse(key, sizeof(key));
    free(buf);
    return rc;
}

static enum hsmca_err
unseal(EVP_PKEY *rcpt_pub, derive_fn derive, const void *arg, const struct hsmca_seal_ad *ad,
       const unsigned char *sealed, size_t sealed_len, struct hsmca_secret *out)
{
    unsigned char adbuf[HSMCA_SEAL_AD_MAX], rcpt[POINT_LEN], key[KEY_LEN];
    const unsigned char *eph_pt, *nonce, *ct, *tag;
    struct hsmca_secret pt = {NULL, 0};
    size_t ad_len = 0, ct_len;
    EVP_PKEY *peer = NULL;
    EVP_CIPHER_CTX *c = NULL;
    int n = 0;
    enum hsmca_err rc;

    if (sealed == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = box_begin(ad, adbuf, &ad_len, rcpt_pub);
    if (rc != HSMCA_OK)
        return rc;
    if (sealed_len <= HSMCA_SEAL_OVERHEAD || sealed_len > HSMCA_SEAL_OVERHEAD + HSMCA_SEAL_PT_MAX ||
        sealed[0] != SEAL_VERSION)
        return HSMCA_E_SEAL_FORMAT;
    eph_pt = sealed + 1;
    nonce = eph_pt + POINT_LEN;
    ct = nonce + NONCE_LEN;
    ct_len = sealed_len - HSMCA_SEAL_OVERHEAD;
    tag = ct + ct_len;
    rc = peer_from_point(eph_pt, &peer);
    if (rc != HSMCA_OK)
        goto out;
    rc = point_of(rcpt_pub, rcpt);
    if (rc == HSMCA_OK)
        rc = box_key(derive, arg, peer, eph_pt, rcpt, key);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_secret_set(&pt, NULL, ct_len);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_INTERNAL;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        goto out;
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, adbuf, (int)ad_len) != 1 ||
        EVP_DecryptUpdate(c, pt.p, &n, ct, (int)ct_len) != 1 || (size_t)n != ct_len ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)tag) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(c, pt.p + ct_len, &n) != 1) {
        rc = HSMCA_E_SEAL_AUTH;
        goto out;
    }
    pt.p[ct_len] = 0; /* the NUL terminator hsmca_secret promises */
    *out = pt;
    pt.p = NULL;
    pt.len = 0;
    rc = HSMCA_OK;
out:
    hsmca_secret_clear(&pt);
    EVP_CIPHER_CTX_free(c);
    EVP_PKEY_free(peer);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

enum hsmca_err
hsmca_unseal_token(const struct hsmca_key *recipient, const struct hsmca_seal_ad *ad,
                   const unsigned char *sealed, size_t sealed_len, struct hsmca_secret *out)
{
    if (recipient == NULL)
        return HSMCA_E_INVALID_ARG;
    return unseal(hsmca_key_public(recipient), token_derive, recipient, ad, sealed, sealed_len,
                  out);
}

enum hsmca_err
hsmca_unseal_soft(EVP_PKEY *recipient_priv, const struct hsmca_seal_ad *ad,
                  const unsigned char *sealed, size_t sealed_len, struct hsmca_secret *out)
{
    if (recipient_priv == NULL)
        return HSMCA_E_INVALID_ARG;
    return unseal(recipient_priv, soft_unseal_derive, recipient_priv, ad, sealed, sealed_len, out);
}
