/* SPDX-License-Identifier: Apache-2.0
 *
 * csr.c -- checks PKCS#10 requests from untrusted clients: size first, then armour, DER
 * exactness, version, key type and curve, signature algorithm, and the proof of possession.
 * Owns the parsed request and a copy of its exact DER. Refuses, never repairs.
 */
#include "hsmca/csr.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "hsmca/limits.h"

struct hsmca_csr {
    X509_REQ *req; /* subject and key only */
    EVP_PKEY *pub; /* imported from the point (no decoder round trip) */
    unsigned char *der;
    size_t der_len;
    unsigned char sha256[32];
};

static int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Decode one PEM block labelled CERTIFICATE REQUEST (or NEW CERTIFICATE REQUEST), nothing else
 * around it but whitespace. */
static enum hsmca_err
pem_to_der(const unsigned char *in, size_t len, unsigned char **der, long *der_len)
{
    BIO *b = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    enum hsmca_err rc = HSMCA_E_CSR_PEM;
    char rest;

    b = BIO_new_mem_buf(in, (int)len);
    if (b == NULL)
        return HSMCA_E_NOMEM;
    if (PEM_read_bio(b, &name, &header, &data, &dlen) != 1)
        goto out;
    if (strcmp(name, "CERTIFICATE REQUEST") != 0 && strcmp(name, "NEW CERTIFICATE REQUEST") != 0)
        goto out;
    if (header != NULL && header[0] != '\0')
        goto out; /* no encrypted or annotated blocks */
    while (BIO_read(b, &rest, 1) == 1) {
        if (!is_space((unsigned char)rest))
            goto out; /* a second block or trailing text */
    }
    *der = data;
    *der_len = dlen;
    data = NULL;
    rc = HSMCA_OK;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(b);
    return rc;
}

/*
 * The request as ASN.1 with the key left as encoded: d2i_X509_REQ would decode the key through
 * OpenSSL 3.0's decoder framework, which costs more than the signature check itself (it collects
 * every provider's decoders per call). Here the key is imported from its raw point instead.
 */
typedef struct {
    X509_ALGOR *alg;
    ASN1_BIT_STRING *key;
} CSR_SPKI;
typedef struct {
    ASN1_INTEGER *version;
    X509_NAME *subject;
    CSR_SPKI *spki;
    STACK_OF(X509_ATTRIBUTE) * attrs;
} CSR_INFO;
typedef struct {
    CSR_INFO *info;
    X509_ALGOR *sig_alg;
    ASN1_BIT_STRING *sig;
} CSR_RAW;

ASN1_SEQUENCE(CSR_SPKI) =
    {
        ASN1_SIMPLE(CSR_SPKI, alg, X509_ALGOR),
        ASN1_SIMPLE(CSR_SPKI, key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(CSR_SPKI)

        ASN1_SEQUENCE(CSR_INFO) =
            {
                ASN1_SIMPLE(CSR_INFO, version, ASN1_INTEGER),
                ASN1_SIMPLE(CSR_INFO, subject, X509_NAME),
                ASN1_SIMPLE(CSR_INFO, spki, CSR_SPKI),
                ASN1_IMP_SET_OF(CSR_INFO, attrs, X509_ATTRIBUTE, 0),
} static_ASN1_SEQUENCE_END(CSR_INFO)

                ASN1_SEQUENCE(CSR_RAW) =
                    {
                        ASN1_SIMPLE(CSR_RAW, info, CSR_INFO),
                        ASN1_SIMPLE(CSR_RAW, sig_alg, X509_ALGOR),
                        ASN1_SIMPLE(CSR_RAW, sig, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(CSR_RAW)

    /* A P-256 key (the generator as its public point) whose group the request keys share: copying
     * it is far cheaper than building the group from its name for every request. */
    static const
    unsigned char p256_g[65] = {0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc,
                                0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d,
                                0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
                                0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb,
                                0x4a, 0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31,
                                0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5};
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;
static EVP_PKEY *p256_template; /* lives until exit */

static EVP_PKEY *
p256_fromdata(const unsigned char *pt, size_t len)
{
    OSSL_PARAM ps[3];
    EVP_PKEY_CTX *cx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;

    ps[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0);
    ps[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, len);
    ps[2] = OSSL_PARAM_construct_end();
    if (cx == NULL || EVP_PKEY_fromdata_init(cx) != 1 ||
        EVP_PKEY_fromdata(cx, &k, EVP_PKEY_PUBLIC_KEY, ps) != 1)
        k = NULL;
    EVP_PKEY_CTX_free(cx);
    return k;
}

static void
p256_init(void)
{
    p256_template = p256_fromdata(p256_g, sizeof(p256_g));
}

/* The EC public key of a P-256 point (any encoding EC accepts; the point must be on the curve,
 * which EC_POINT_oct2point checks). NULL if it is not one. */
static EVP_PKEY *
p256_key(const unsigned char *pt, size_t len)
{
    EVP_PKEY *k;

    (void)pthread_once(&p256_once, p256_init);
    if (p256_template == NULL)
        return p256_fromdata(pt, len);
    k = EVP_PKEY_dup(p256_template);
    if (k != NULL && EVP_PKEY_set1_encoded_public_key(k, pt, len) != 1) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

/* The subject and the key as an X509_REQ for the certificate builders (attributes and the
 * signature are not copied: the checked request is the DER kept beside it). */
static X509_REQ *
req_of(const CSR_RAW *r)
{
    X509_REQ *req = X509_REQ_new();
    ASN1_OBJECT *alg = NULL;
    const void *pval = NULL;
    int ptype = 0;
    unsigned char *pt = NULL;

    if (req == NULL || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
        X509_REQ_set_subject_name(req, r->info->subject) != 1)
        goto fail;
    X509_ALGOR_get0((const ASN1_OBJECT **)&alg, &ptype, &pval, r->info->spki->alg);
    pt = OPENSSL_memdup(ASN1_STRING_get0_data(r->info->spki->key),
                        (size_t)ASN1_STRING_length(r->info->spki->key));
    if (pt == NULL ||
        X509_PUBKEY_set0_param(X509_REQ_get_X509_PUBKEY(req), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                               V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1), pt,
                               ASN1_STRING_length(r->info->spki->key)) != 1)
        goto fail;
    return req;
fail:
    OPENSSL_free(pt);
    X509_REQ_free(req);
    return NULL;
}

enum hsmca_err
hsmca_csr_parse(const unsigned char *in, size_t len, struct hsmca_csr **out)
{
    struct hsmca_csr *c = NULL;
    CSR_RAW *raw = NULL;
    unsigned char *pem_der = NULL, *re = NULL, *tbs = NULL;
    const unsigned char *der, *p;
    const ASN1_OBJECT *obj = NULL;
    const void *pval = NULL;
    EVP_MD_CTX *md = NULL;
    long der_len;
    size_t i = 0;
    enum hsmca_err rc;
    int relen, tbs_len, ptype = 0;

    if (in == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_CSR_MAX)
        return HSMCA_E_CSR_TOO_LARGE;
    if (len == 0)
        return HSMCA_E_CSR_MALFORMED;
    while (i < len && is_space(in[i]))
        i++;
    if (len - i >= 5 && memcmp(in + i, "-----", 5) == 0) {
        rc = pem_to_der(in, len, &pem_der, &der_len);
        if (rc != HSMCA_OK)
            return rc;
        der = pem_der;
    } else {
        der = in;
        der_len = (long)len;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    p = der;
    raw = (CSR_RAW *)ASN1_item_d2i(NULL, &p, der_len, ASN1_ITEM_rptr(CSR_RAW));
    if (raw == NULL) {
        rc = HSMCA_E_CSR_MALFORMED;
        goto out;
    }
    if (p != der + der_len) {
        rc = HSMCA_E_CSR_TRAILING;
        goto out;
    }
    /* DER-exact: re-encoding gives the same bytes (refuses BER and non-minimal lengths) */
    relen = ASN1_item_i2d((const ASN1_VALUE *)raw, &re, ASN1_ITEM_rptr(CSR_RAW));
    if (relen != der_len || memcmp(re, der, (size_t)der_len) != 0) {
        rc = HSMCA_E_CSR_MALFORMED;
        goto out;
    }
    if (ASN1_INTEGER_get(raw->info->version) != X509_REQ_VERSION_1) {
        rc = HSMCA_E_CSR_VERSION;
        goto out;
    }
    X509_ALGOR_get0(&obj, &ptype, &pval, raw->info->spki->alg);
    if (OBJ_obj2nid(obj) != NID_X9_62_id_ecPublicKey) {
        rc = HSMCA_E_CSR_KEY_TYPE;
        goto out;
    }
    if (ptype != V_ASN1_OBJECT || OBJ_obj2nid(pval) != NID_X9_62_prime256v1) {
        rc = HSMCA_E_CSR_CURVE;
        goto out;
    }
    /* a key that is not a P-256 point is no key (as when OpenSSL's decode fails) */
    if ((raw->info->spki->key->flags & 0x07) != 0) { /* unused bits */
        rc = HSMCA_E_CSR_MALFORMED;
        goto out;
    }
    c->pub = p256_key(ASN1_STRING_get0_data(raw->info->spki->key),
                      (size_t)ASN1_STRING_length(raw->info->spki->key));
    if (c->pub == NULL) {
        rc = HSMCA_E_CSR_MALFORMED;
        goto out;
    }
    X509_ALGOR_get0(&obj, &ptype, &pval, raw->sig_alg);
    if (OBJ_obj2nid(obj) != NID_ecdsa_with_SHA256) {
        rc = HSMCA_E_CSR_SIG_ALG;
        goto out;
    }
    /* proof of possession: the signature over the exact CertificationRequestInfo bytes */
    rc = HSMCA_E_NOMEM;
    tbs_len = ASN1_item_i2d((const ASN1_VALUE *)raw->info, &tbs, ASN1_ITEM_rptr(CSR_INFO));
    md = EVP_MD_CTX_new();
    if (tbs_len <= 0 || md == NULL)
        goto out;
    if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, c->pub) != 1 ||
        (raw->sig->flags & 0x07) != 0 ||
        EVP_DigestVerify(md, ASN1_STRING_get0_data(raw->sig), (size_t)ASN1_STRING_length(raw->sig),
                         tbs, (size_t)tbs_len) != 1) {
        rc = HSMCA_E_CSR_SIGNATURE;
        goto out;
    }
    rc = HSMCA_E_NOMEM;
    c->req = req_of(raw);
    if (c->req == NULL)
        goto out;
    c->der = re;
    c->der_len = (size_t)relen;
    re = NULL;
    SHA256(c->der, c->der_len, c->sha256);
    *out = c;
    c = NULL;
    rc = HSMCA_OK;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    OPENSSL_free(tbs);
    ASN1_item_free((ASN1_VALUE *)raw, ASN1_ITEM_rptr(CSR_RAW));
    OPENSSL_free(re);
    OPENSSL_free(pem_der);
    hsmca_csr_free(c);
    return rc;
}

void
hsmca_csr_free(struct hsmca_csr *csr)
{
    if (csr == NULL)
        return;
    X509_REQ_free(csr->req);
    EVP_PKEY_free(csr->pub);
    OPENSSL_free(csr->der);
    free(csr);
}

EVP_PKEY *
hsmca_csr_pubkey(const struct hsmca_csr *csr)
{
    return csr != NULL ? csr->pub : NULL;
}

X509_REQ *
hsmca_csr_req(const struct hsmca_csr *csr)
{
    return csr != NULL ? csr->req : NULL;
}

const unsigned char *
hsmca_csr_der(const struct hsmca_csr *csr, size_t *len_out)
{
    if (csr == NULL)
        return NULL;
    if (len_out != NULL)
        *len_out = csr->der_len;
    return csr->der;
}

const unsigned char *
hsmca_csr_sha256(const struct hsmca_csr *csr)
{
    return csr != NULL ? csr->sha256 : NULL;
}
