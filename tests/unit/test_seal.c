/* SPDX-License-Identifier: Apache-2.0
 *
 * test_seal.c -- sealing shares to P-256 keys. Hostile input first (bad keys, bad associated data,
 * truncation, every byte flipped, foreign points), then the promises: the format is exactly the one
 * documented (re-derived here with plain OpenSSL calls), round trips with a software key and with
 * a key inside a SoftHSM token, any change of context or key refuses, and the plaintext lands only
 * on the secure heap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "hsmca/seal.h"
#include "hsmca/token.h"

#include "fixture.h"

#define SO_PIN "so-secret-1"
#define USER_PIN "user-pin-1234"

static const unsigned char digest_a[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                           12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                           23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static struct hsmca_seal_ad
ad_approver(void)
{
    struct hsmca_seal_ad ad = {"pai-8000", 7, 3, "alice", NULL, NULL};

    return ad;
}

static struct hsmca_seal_ad
ad_request(void)
{
    struct hsmca_seal_ad ad = {"pai-8000", 7, 3, "alice", "req-0123456789abcdef", digest_a};

    return ad;
}

static void
share(unsigned char *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 37 + 11);
}

/* ---- hostile input ---- */

static void
bad_keys_are_refused(void **state)
{
    struct hsmca_seal_ad ad = ad_approver();
    unsigned char pt[33], *out = NULL, fake[HSMCA_SEAL_OVERHEAD + 33] = {1};
    size_t out_len = 0;
    struct hsmca_secret s = {NULL, 0};
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

    (void)state;
    share(pt, sizeof(pt));
    assert_non_null(p384);
    assert_non_null(ed);
    assert_int_equal(hsmca_seal(p384, &ad, pt, sizeof(pt), &out, &out_len), HSMCA_E_SEAL_KEY);
    assert_int_equal(hsmca_seal(ed, &ad, pt, sizeof(pt), &out, &out_len), HSMCA_E_SEAL_KEY);
    assert_int_equal(hsmca_unseal_soft(p384, &ad, fake, sizeof(fake), &s), HSMCA_E_SEAL_KEY);
    assert_int_equal(hsmca_unseal_soft(ed, &ad, fake, sizeof(fake), &s), HSMCA_E_SEAL_KEY);
    assert_null(out);
    assert_int_equal(out_len, 0);
    assert_null(s.p);
    /* a P-256 public key cannot unseal: it has no private half */
    {
        EVP_PKEY *k = EVP_EC_gen("P-256"), *pub = NULL;
        unsigned char *der = NULL, *sealed = NULL;
        const unsigned char *p;
        int der_len = i2d_PUBKEY(k, &der);
        size_t len = 0;

        assert_true(der_len > 0);
        p = der;
        pub = d2i_PUBKEY(NULL, &p, der_len);
        assert_non_null(pub);
        assert_int_equal(hsmca_seal(pub, &ad, pt, sizeof(pt), &sealed, &len), HSMCA_OK);
        assert_int_equal(hsmca_unseal_soft(pub, &ad, sealed, len, &s), HSMCA_E_SEAL_KEY);
        assert_null(s.p);
        free(sealed);
        OPENSSL_free(der);
        EVP_PKEY_free(pub);
        EVP_PKEY_free(k);
    }
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
}

static void
bad_arguments_and_context_are_refused(void **state)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    unsigned char pt[HSMCA_SEAL_PT_MAX + 1], *out = NULL;
    size_t out_len = 0;
    char long_label[HSMCA_TOKEN_LABEL_MAX + 2], long_name[HSMCA_SEAL_NAME_MAX + 2];
    char long_id[HSMCA_REQUEST_ID_MAX + 2];
    struct hsmca_seal_ad ad;
    struct hsmca_secret s = {NULL, 0};

    (void)state;
    share(pt, sizeof(pt));
    memset(long_label, 'l', sizeof(long_label) - 1);
    long_label[sizeof(long_label) - 1] = '\0';
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    memset(long_id, 'i', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    ad = ad_approver();
    assert_int_equal(hsmca_seal(NULL, &ad, pt, 33, &out, &out_len), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_seal(k, NULL, pt, 33, &out, &out_len), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_seal(k, &ad, NULL, 33, &out, &out_len), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_seal(k, &ad, pt, 0, &out, &out_len), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_seal(k, &ad, pt, 33, NULL, &out_len), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_seal(k, &ad, pt, HSMCA_SEAL_PT_MAX + 1, &out, &out_len),
                     HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_unseal_soft(NULL, &ad, pt, 200, &s), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_unseal_soft(k, &ad, NULL, 200, &s), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_unseal_soft(k, &ad, pt, 200, NULL), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_unseal_token(NULL, &ad, pt, 200, &s), HSMCA_E_INVALID_ARG);

#define REFUSED(field, value)                                                                      \
    do {                                                                                           \
        ad = ad_request();                                                                         \
        ad.field = value;                                                                          \
        assert_int_equal(hsmca_seal(k, &ad, pt, 33, &out, &out_len), HSMCA_E_INVALID_ARG);         \
        assert_int_equal(hsmca_unseal_soft(k, &ad, pt, 200, &s), HSMCA_E_INVALID_ARG);             \
    } while (0)
    REFUSED(token_label, NULL);
    REFUSED(token_label, "");
    REFUSED(token_label, long_label);
    REFUSED(approver, NULL);
    REFUSED(approver, "");
    REFUSED(approver, long_name);
    REFUSED(share_index, 0);
    REFUSED(share_index, HSMCA_SHAMIR_N_MAX + 1);
    REFUSED(request_id, NULL);     /* digest without id */
    REFUSED(request_digest, NULL); /* id without digest */
    REFUSED(request_id, "");
    REFUSED(request_id, long_id);
#undef REFUSED
    assert_null(out);
    assert_null(s.p);
    /* the bounds themselves are accepted */
    long_label[HSMCA_TOKEN_LABEL_MAX] = '\0';
    long_name[HSMCA_SEAL_NAME_MAX] = '\0';
    long_id[HSMCA_REQUEST_ID_MAX] = '\0';
    ad = ad_request();
    ad.token_label = long_label;
    ad.approver = long_name;
    ad.request_id = long_id;
    ad.share_index = HSMCA_SHAMIR_N_MAX;
    ad.epoch = UINT64_MAX;
    assert_int_equal(hsmca_seal(k, &ad, pt, HSMCA_SEAL_PT_MAX, &out, &out_len), HSMCA_OK);
    assert_int_equal(out_len, HSMCA_SEAL_PT_MAX + HSMCA_SEAL_OVERHEAD);
    assert_int_equal(hsmca_unseal_soft(k, &ad, out, out_len, &s), HSMCA_OK);
    assert_int_equal(s.len, HSMCA_SEAL_PT_MAX);
    assert_memory_equal(s.p, pt, HSMCA_SEAL_PT_MAX);
    hsmca_secret_clear(&s);
    free(out);
    EVP_PKEY_free(k);
}

static void
truncated_extended_and_flipped_are_refused(void **state)
{
    struct hsmca_seal_ad ad = ad_request();
    EVP_PKEY *k = EVP_EC_gen("P-256");
    unsigned char pt[33], *sealed = NULL, *buf;
    size_t len = 0, i;
    struct hsmca_secret s = {NULL, 0};

    (void)state;
    share(pt, sizeof(pt));
    assert_int_equal(hsmca_seal(k, &ad, pt, sizeof(pt), &sealed, &len), HSMCA_OK);
    buf = malloc(len + 1);
    assert_non_null(buf);
    /* too short to hold even one byte of plaintext: a format error */
    for (i = 0; i <= HSMCA_SEAL_OVERHEAD; i++)
        assert_int_equal(hsmca_unseal_soft(k, &ad, sealed, i, &s), HSMCA_E_SEAL_FORMAT);
    /* shorter but still well-formed: the tag no longer matches */
    for (i = HSMCA_SEAL_OVERHEAD + 1; i < len; i++)
        assert_int_equal(hsmca_unseal_soft(k, &ad, sealed, i, &s), HSMCA_E_SEAL_AUTH);
    /* one byte appended */
    memcpy(buf, sealed, len);
    buf[len] = 0;
    assert_int_equal(hsmca_unseal_soft(k, &ad, buf, len + 1, &s), HSMCA_E_SEAL_AUTH);
    /* longer than any seal */
    assert_int_equal(
        hsmca_unseal_soft(k, &ad, sealed, HSMCA_SEAL_OVERHEAD + HSMCA_SEAL_PT_MAX + 1, &s),
        HSMCA_E_SEAL_FORMAT);
    /* every byte flipped, in its low and in its high bit */
    for (i = 0; i < len; i++) {
        unsigned bit;

        for (bit = 0x01; bit <= 0x80; bit <<= 7) {
            enum hsmca_err rc;

            memcpy(buf, sealed, len);
            buf[i] ^= (unsigned char)bit;
            rc = hsmca_unseal_soft(k, &ad, buf, len, &s);
            if (i == 0 || i == 1) /* version, point format byte */
                assert_int_equal(rc, HSMCA_E_SEAL_FORMAT);
            else if (i < 1 + 65) /* the ephemeral point: off the curve, or another point */
                assert_true(rc == HSMCA_E_SEAL_FORMAT || rc == HSMCA_E_SEAL_AUTH);
            else /* nonce, ciphertext, tag */
                assert_int_equal(rc, HSMCA_E_SEAL_AUTH);
            assert_null(s.p);
        }
    }
    /* the ephemeral point replaced by another valid point: the key no longer matches */
    {
        EVP_PKEY *other = EVP_EC_gen("P-256");
        size_t plen = 0;

        memcpy(buf, sealed, len);
        assert_int_equal(EVP_PKEY_get_octet_string_param(other, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                         buf + 1, 65, &plen),
                         1);
        assert_int_equal(plen, 65);
        assert_int_equal(hsmca_unseal_soft(k, &ad, buf, len, &s), HSMCA_E_SEAL_AUTH);
        /* a compressed point in an uncompressed slot, and all zeros */
        buf[1] = 0x02;
        assert_int_equal(hsmca_unseal_soft(k, &ad, buf, len, &s), HSMCA_E_SEAL_FORMAT);
        memset(buf + 1, 0, 65);
        assert_int_equal(hsmca_unseal_soft(k, &ad, buf, len, &s), HSMCA_E_SEAL_FORMAT);
        EVP_PKEY_free(other);
    }
    /* version 2 */
    memcpy(buf, sealed, len);
    buf[0] = 2;
    assert_int_equal(hsmca_unseal_soft(k, &ad, buf, len, &s), HSMCA_E_SEAL_FORMAT);
    free(buf);
    free(sealed);
    EVP_PKEY_free(k);
}

/* ---- the format, re-derived with plain OpenSSL ---- */

static void
ad_encoding_is_canonical(void **state)
{
    static const unsigned char want_approver[] = {
        'h', 's', 'm', 'c', 'a', '-', 's', 'e', 'a', 'l', '-', 'a', 'd', '-', 'v', '1', /* tag */
        0,   8,   'p', 'a', 'i', '-', '8', '0', '0', '0',                               /* label */
        0,   0,   0,   0,   0,   0,   0,   7,                                           /* epoch */
        3,                                                                              /* x */
        0,   5,   'a', 'l', 'i', 'c', 'e',                                              /* name */
        0};                                                                             /* kind */
    unsigned char buf[HSMCA_SEAL_AD_MAX], buf2[HSMCA_SEAL_AD_MAX];
    struct hsmca_seal_ad ad = ad_approver(), ad2;
    size_t len = 0, len2 = 0;

    (void)state;
    assert_int_equal(hsmca_seal_ad_encode(&ad, buf, sizeof(buf), &len), HSMCA_OK);
    assert_int_equal(len, sizeof(want_approver));
    assert_memory_equal(buf, want_approver, len);
    assert_int_equal(hsmca_seal_ad_encode(&ad, buf, sizeof(buf) - 1, &len), HSMCA_E_INVALID_ARG);
    ad = ad_request();
    assert_int_equal(hsmca_seal_ad_encode(&ad, buf, sizeof(buf), &len), HSMCA_OK);
    assert_int_equal(len, sizeof(want_approver) + 2 + 20 + 32);
    assert_memory_equal(buf, want_approver, sizeof(want_approver) - 1);
    assert_int_equal(buf[sizeof(want_approver) - 1], 1);
    assert_memory_equal(buf + sizeof(want_approver) + 2, "req-0123456789abcdef", 20);
    assert_memory_equal(buf + len - 32, digest_a, 32);
    /* moving bytes between adjacent fields changes the encoding */
    ad = ad_approver();
    ad.token_label = "pai-8000a";
    ad.approver = "lice";
    assert_int_equal(hsmca_seal_ad_encode(&ad, buf2, sizeof(buf2), &len2), HSMCA_OK);
    ad2 = ad_approver();
    assert_int_equal(hsmca_seal_ad_encode(&ad2, buf, sizeof(buf), &len), HSMCA_OK);
    assert_int_equal(len, len2);
    assert_memory_not_equal(buf, buf2, len);
}

static void
format_matches_the_documented_construction(void **state)
{
    struct hsmca_seal_ad ad = ad_request();
    EVP_PKEY *k = EVP_EC_gen("P-256"), *eph = NULL;
    unsigned char pt[33], *sealed = NULL, z[32], key[32], salt[130], adbuf[HSMCA_SEAL_AD_MAX];
    unsigned char back[33], tag[16];
    size_t len = 0, zlen = sizeof(z), plen = 0, ad_len = 0;
    EVP_PKEY_CTX *pc = NULL;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    OSSL_PARAM params[5];
    int n = 0;

    (void)state;
    share(pt, sizeof(pt));
    assert_int_equal(hsmca_seal(k, &ad, pt, sizeof(pt), &sealed, &len), HSMCA_OK);
    assert_int_equal(len, sizeof(pt) + HSMCA_SEAL_OVERHEAD);
    assert_int_equal(sealed[0], 1);
    assert_int_equal(sealed[1], 0x04);
    /* ephemeral public key from the blob */
    pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, sealed + 1, 65);
    params[2] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_PKEY_fromdata_init(pc), 1);
    assert_int_equal(EVP_PKEY_fromdata(pc, &eph, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(pc);
    /* ECDH with the recipient's private key */
    pc = EVP_PKEY_CTX_new(k, NULL);
    assert_int_equal(EVP_PKEY_derive_init(pc), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(pc, eph), 1);
    assert_int_equal(EVP_PKEY_derive(pc, z, &zlen), 1);
    assert_int_equal(zlen, 32);
    EVP_PKEY_CTX_free(pc);
    /* HKDF-SHA256, salt = eph || recipient, info = "hsmca-seal-v1" */
    memcpy(salt, sealed + 1, 65);
    assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                     salt + 65, 65, &plen),
                     1);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z, 32);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, 130);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, "hsmca-seal-v1", 13);
    params[4] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_KDF_derive(kc, key, 32, params), 1);
    /* AES-256-GCM, nonce at 66, tag at the end, AD = the canonical encoding */
    assert_int_equal(hsmca_seal_ad_encode(&ad, adbuf, sizeof(adbuf), &ad_len), HSMCA_OK);
    memcpy(tag, sealed + len - 16, 16);
    assert_int_equal(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, sealed + 66), 1);
    assert_int_equal(EVP_DecryptUpdate(c, NULL, &n, adbuf, (int)ad_len), 1);
    assert_int_equal(EVP_DecryptUpdate(c, back, &n, sealed + 78, 33), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag), 1);
    assert_int_equal(EVP_DecryptFinal_ex(c, back + n, &n), 1);
    assert_memory_equal(back, pt, 33);
    EVP_CIPHER_CTX_free(c);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    EVP_PKEY_free(eph);
    EVP_PKEY_free(k);
    free(sealed);
}

/* ---- software key ---- */

static void
soft_round_trip_and_every_context_change_refuses(void **state)
{
    EVP_PKEY *k = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    unsigned char pt[33], *a = NULL, *b = NULL, digest_b[32];
    size_t alen = 0, blen = 0;
    struct hsmca_seal_ad ad = ad_request(), bad;
    struct hsmca_secret s = {NULL, 0};
    size_t used;

    (void)state;
    share(pt, sizeof(pt));
    assert_int_equal(hsmca_seal(k, &ad, pt, sizeof(pt), &a, &alen), HSMCA_OK);
    assert_int_equal(hsmca_seal(k, &ad, pt, sizeof(pt), &b, &blen), HSMCA_OK);
    assert_int_equal(alen, blen);
    assert_memory_not_equal(a + 1, b + 1, 65 + 12); /* fresh ephemeral key and nonce */
    used = CRYPTO_secure_used();
    assert_int_equal(hsmca_unseal_soft(k, &ad, a, alen, &s), HSMCA_OK);
    assert_int_equal(s.len, sizeof(pt));
    assert_memory_equal(s.p, pt, sizeof(pt));
    assert_int_equal(s.p[s.len], 0);
    assert_true(CRYPTO_secure_allocated(s.p)); /* plaintext on the secure heap */
    assert_true(CRYPTO_secure_used() > used);
    hsmca_secret_clear(&s);
    assert_int_equal(CRYPTO_secure_used(), used); /* and nothing else left there */

    assert_int_equal(hsmca_unseal_soft(other, &ad, a, alen, &s), HSMCA_E_SEAL_AUTH);
    memcpy(digest_b, digest_a, 32);
    digest_b[31] ^= 1;
#define AUTH_FAILS(field, value)                                                                   \
    do {                                                                                           \
        bad = ad;                                                                                  \
        bad.field = value;                                                                         \
        assert_int_equal(hsmca_unseal_soft(k, &bad, a, alen, &s), HSMCA_E_SEAL_AUTH);              \
        assert_null(s.p);                                                                          \
    } while (0)
    AUTH_FAILS(token_label, "pai-8001");
    AUTH_FAILS(epoch, 8);
    AUTH_FAILS(epoch, 7 + (1ull << 32));
    AUTH_FAILS(share_index, 4);
    AUTH_FAILS(approver, "alicE");
    AUTH_FAILS(request_id, "req-0123456789abcdeF");
    AUTH_FAILS(request_digest, digest_b);
#undef AUTH_FAILS
    /* sealed to a request, opened as if sealed to the approver */
    bad = ad;
    bad.request_id = NULL;
    bad.request_digest = NULL;
    assert_int_equal(hsmca_unseal_soft(k, &bad, a, alen, &s), HSMCA_E_SEAL_AUTH);
    /* and the reverse */
    free(b);
    b = NULL;
    assert_int_equal(hsmca_seal(k, &bad, pt, sizeof(pt), &b, &blen), HSMCA_OK);
    assert_int_equal(hsmca_unseal_soft(k, &ad, b, blen, &s), HSMCA_E_SEAL_AUTH);
    assert_int_equal(hsmca_unseal_soft(k, &bad, b, blen, &s), HSMCA_OK);
    hsmca_secret_clear(&s);
    free(a);
    free(b);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

/* A recipient key given as a compressed SPKI (how some tools export it) seals the same way. */
static void
compressed_recipient_key_is_accepted(void **state)
{
    struct hsmca_seal_ad ad = ad_approver();
    EVP_PKEY *k = EVP_EC_gen("P-256"), *pub = NULL;
    unsigned char pt[5] = {9, 8, 7, 6, 5}, *der = NULL, *sealed = NULL;
    const unsigned char *p;
    int der_len;
    size_t len = 0;
    struct hsmca_secret s = {NULL, 0};

    (void)state;
    assert_int_equal(
        EVP_PKEY_set_utf8_string_param(k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
        1);
    der_len = i2d_PUBKEY(k, &der);
    assert_true(der_len > 0);
    p = der;
    pub = d2i_PUBKEY(NULL, &p, der_len);
    assert_non_null(pub);
    assert_int_equal(hsmca_seal(pub, &ad, pt, sizeof(pt), &sealed, &len), HSMCA_OK);
    assert_int_equal(hsmca_unseal_soft(k, &ad, sealed, len, &s), HSMCA_OK);
    assert_memory_equal(s.p, pt, sizeof(pt));
    hsmca_secret_clear(&s);
    free(sealed);
    OPENSSL_free(der);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k);
}

/* ---- token key ---- */

struct ctx {
    struct fx_hsm hsm;
    struct hsmca_p11 *p11;
    struct hsmca_token *tok;
    struct hsmca_secret pin;
};

static int
setup_token(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));

    if (c == NULL || hsmca_secure_heap_init(0) != HSMCA_OK)
        return -1;
    if (fx_hsm_setup(&c->hsm) != 0 || fx_hsm_add_token(&c->hsm, "approver-1", SO_PIN, USER_PIN))
        return -1;
    if (hsmca_p11_open(fx_module(), &c->p11) != HSMCA_OK)
        return -1;
    if (hsmca_token_open(c->p11, "pkcs11:token=approver-1", &c->tok) != HSMCA_OK)
        return -1;
    c->pin = fx_secret(USER_PIN);
    *state = c;
    return 0;
}

static int
teardown_token(void **state)
{
    struct ctx *c = *state;

    hsmca_secret_clear(&c->pin);
    if (c->tok != NULL) {
        assert_int_equal(hsmca_token_logout(c->tok), HSMCA_OK);
        assert_int_equal(hsmca_token_free(c->tok), HSMCA_OK);
    }
    if (hsmca_p11_free(c->p11) != HSMCA_OK)
        abort();
    fx_hsm_teardown(&c->hsm);
    free(c);
    return 0;
}

/* The approver's path: unseal the ceremony share inside the token, re-seal it to the request's
 * one-time key with the request bound, and the daemon opens it with that software key. */
static void
token_round_trip_and_reseal_to_request(void **state)
{
    struct ctx *c = *state;
    struct hsmca_key *k = NULL, *signonly = NULL;
    struct hsmca_seal_ad to_approver = ad_approver(), to_request = ad_request(), bad;
    EVP_PKEY *request_key = EVP_EC_gen("P-256"), *stranger = EVP_EC_gen("P-256");
    unsigned char pt[33], *sealed = NULL, *resealed = NULL, *flipped;
    size_t len = 0, rlen = 0;
    struct hsmca_secret s = {NULL, 0}, s2 = {NULL, 0};

    share(pt, sizeof(pt));
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_generate_key(c->tok, "approver", NULL, 0,
                                              HSMCA_KEY_USAGE_SIGN | HSMCA_KEY_USAGE_DERIVE, &k),
                     HSMCA_OK);
    assert_int_equal(hsmca_seal(hsmca_key_public(k), &to_approver, pt, sizeof(pt), &sealed, &len),
                     HSMCA_OK);
    assert_int_equal(hsmca_unseal_token(k, &to_approver, sealed, len, &s), HSMCA_OK);
    assert_int_equal(s.len, sizeof(pt));
    assert_memory_equal(s.p, pt, sizeof(pt));
    assert_true(CRYPTO_secure_allocated(s.p));
    /* re-seal to the request key, request bound */
    assert_int_equal(hsmca_seal(request_key, &to_request, s.p, s.len, &resealed, &rlen), HSMCA_OK);
    assert_int_equal(hsmca_unseal_soft(request_key, &to_request, resealed, rlen, &s2), HSMCA_OK);
    assert_memory_equal(s2.p, pt, sizeof(pt));
    hsmca_secret_clear(&s2);
    /* the re-sealed share opens for no other request and no other key */
    bad = to_request;
    bad.request_id = "req-another";
    assert_int_equal(hsmca_unseal_soft(request_key, &bad, resealed, rlen, &s2), HSMCA_E_SEAL_AUTH);
    assert_int_equal(hsmca_unseal_soft(stranger, &to_request, resealed, rlen, &s2),
                     HSMCA_E_SEAL_AUTH);
    /* the token refuses a wrong context, a tampered blob, and a blob sealed to someone else */
    bad = to_approver;
    bad.epoch = 8;
    assert_int_equal(hsmca_unseal_token(k, &bad, sealed, len, &s2), HSMCA_E_SEAL_AUTH);
    flipped = malloc(len);
    assert_non_null(flipped);
    memcpy(flipped, sealed, len);
    flipped[len - 1] ^= 0x40;
    assert_int_equal(hsmca_unseal_token(k, &to_approver, flipped, len, &s2), HSMCA_E_SEAL_AUTH);
    assert_int_equal(hsmca_unseal_token(k, &to_approver, flipped, HSMCA_SEAL_OVERHEAD, &s2),
                     HSMCA_E_SEAL_FORMAT);
    assert_int_equal(hsmca_unseal_soft(stranger, &to_approver, sealed, len, &s2),
                     HSMCA_E_SEAL_AUTH);
    /* a sign-only key cannot derive, so it unseals nothing */
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "ca", NULL, 0, HSMCA_KEY_USAGE_SIGN, &signonly), HSMCA_OK);
    free(resealed);
    resealed = NULL;
    assert_int_equal(
        hsmca_seal(hsmca_key_public(signonly), &to_approver, pt, sizeof(pt), &resealed, &rlen),
        HSMCA_OK);
    assert_int_not_equal(hsmca_unseal_token(signonly, &to_approver, resealed, rlen, &s2), HSMCA_OK);
    assert_null(s2.p);
    hsmca_secret_clear(&s);
    free(flipped);
    free(sealed);
    free(resealed);
    EVP_PKEY_free(request_key);
    EVP_PKEY_free(stranger);
    hsmca_key_free(k);
    hsmca_key_free(signonly);
}

static int
setup_heap(void **state)
{
    (void)state;
    return hsmca_secure_heap_init(0) == HSMCA_OK ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_keys_are_refused),
        cmocka_unit_test(bad_arguments_and_context_are_refused),
        cmocka_unit_test(truncated_extended_and_flipped_are_refused),
        cmocka_unit_test(ad_encoding_is_canonical),
        cmocka_unit_test(format_matches_the_documented_construction),
        cmocka_unit_test(soft_round_trip_and_every_context_change_refuses),
        cmocka_unit_test(compressed_recipient_key_is_accepted),
        cmocka_unit_test_setup_teardown(token_round_trip_and_reseal_to_request, setup_token,
                                        teardown_token),
    };

    return cmocka_run_group_tests_name("seal", tests, setup_heap, NULL);
}
