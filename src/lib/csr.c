/* SPDX-License-Identifier: Apache-2.0
 *
 * csr.c -- checks PKCS#10 requests from untrusted clients: size first, then armour, DER
 * exactness, version, key type and curve, signature algorithm, and the proof of possession.
 * Owns the request's subject, its key and a copy of its exact DER. Refuses, never repairs.
 */
#include "hsmca/csr.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "hsmca/der.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

struct hsmca_csr {
    X509_NAME *subject;
    X509_PUBKEY *xpub; /* the SubjectPublicKeyInfo exactly as the request encodes it */
    EVP_PKEY *pub;     /* made on first use by hsmca_csr_pubkey (atomic: see there) */
    unsigned char *der;
    size_t der_len;
    unsigned char sha256[HSMCA_SHA256_LEN];
};

/*
 * Why not d2i_X509_REQ: OpenSSL 3.0 decodes the request's key through its provider decoders,
 * which costs about 300 us, three times the signature check itself, on every DAC. The request is
 * small and its shape is fixed, so it is walked here with a strict DER reader instead; the raw
 * point goes into the thread's verification key (thread_key) and the signature is checked over the
 * exact certificationRequestInfo bytes. The request's own EVP_PKEY is made only if asked for
 * (hsmca_csr_pubkey); the DAC's key comes from the encoded SubjectPublicKeyInfo.
 */

/* AlgorithmIdentifier contents: id-ecPublicKey, and the named curve prime256v1 (RFC 5480) */
static const unsigned char oid_ec_public_key[] = {0x06, 0x07, 0x2a, 0x86, 0x48,
                                                  0xce, 0x3d, 0x02, 0x01};
static const unsigned char oid_prime256v1[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                               0xce, 0x3d, 0x03, 0x01, 0x07};
/* ecdsa-with-SHA256 with absent parameters (RFC 5758 3.2) */
static const unsigned char alg_ecdsa_sha256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                                 0xce, 0x3d, 0x04, 0x03, 0x02};

/* Every element inside el's contents is well-formed DER TLV, recursively for constructed ones. */
static int
der_strict(const struct hsmca_der_el *el, int depth)
{
    struct hsmca_der d;
    struct hsmca_der_el in;

    if (depth > 16)
        return 0;
    hsmca_der_sub(&d, el);
    while (!d.err && d.p < d.end) {
        int tag = hsmca_der_tag(&d);

        if ((tag & 0x1f) == 0x1f || !hsmca_der_read(&d, (unsigned char)tag, &in))
            return 0;
        if ((tag & 0x20) != 0 && !der_strict(&in, depth + 1))
            return 0;
    }
    return !d.err;
}

/* The P-256 domain parameters, made once and shared read-only by every thread. */
static EVP_PKEY *p256_params;
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;

static void
make_params(void)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM ps[2];

    ps[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0);
    ps[1] = OSSL_PARAM_construct_end();
    if (pc == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
        EVP_PKEY_fromdata(pc, &p256_params, EVP_PKEY_KEY_PARAMETERS, ps) != 1)
        p256_params = NULL;
    EVP_PKEY_CTX_free(pc);
}

/*
 * The key a thread checks proofs of possession with: one EVP_PKEY per thread, made once, whose
 * point is replaced for each request. OpenSSL 3.0 walks its whole name map
 * (EVP_PKEY_set_type_by_keymgmt) for every new provider key, which cost about 20 us per request in
 * hsmcad (three times what it costs in a small program, the map being larger there); replacing the
 * point costs no walk. A point that is not on the curve fails the replacement and the check stops
 * there, so no request is ever checked with an earlier request's key.
 */
static pthread_key_t verify_key;
static pthread_once_t verify_once = PTHREAD_ONCE_INIT;
static int verify_key_ok;

static void
verify_key_free(void *k)
{
    EVP_PKEY_free(k);
}

static void
make_verify_key(void)
{
    verify_key_ok = pthread_key_create(&verify_key, verify_key_free) == 0;
}

static EVP_PKEY *p256_from_point(const unsigned char *pt, size_t len);

/* This thread's verification key, set to pt; NULL if pt is not a P-256 point (or no memory). */
static EVP_PKEY *
thread_key(const unsigned char *pt, size_t len)
{
    EVP_PKEY *k;

    pthread_once(&verify_once, make_verify_key);
    if (!verify_key_ok)
        return NULL;
    k = pthread_getspecific(verify_key);
    if (k != NULL)
        return EVP_PKEY_set1_encoded_public_key(k, pt, len) == 1 ? k : NULL;
    k = p256_from_point(pt, len);
    if (k != NULL && pthread_setspecific(verify_key, k) != 0) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

/* The encoded point of the request's key, as its SubjectPublicKeyInfo holds it; 1 if there. */
static int
spki_point(const X509_PUBKEY *x, const unsigned char **pt, size_t *len)
{
    int n = 0;

    if (X509_PUBKEY_get0_param(NULL, pt, &n, NULL, x) != 1 || n <= 0)
        return 0;
    *len = (size_t)n;
    return 1;
}

/* A P-256 public key made from an encoded point (uncompressed or compressed). */
static EVP_PKEY *
p256_from_point(const unsigned char *pt, size_t len)
{
    EVP_PKEY *k;

    pthread_once(&p256_once, make_params);
    if (p256_params == NULL)
        return NULL;
    k = EVP_PKEY_new();
    if (k == NULL || EVP_PKEY_copy_parameters(k, p256_params) != 1 ||
        EVP_PKEY_set1_encoded_public_key(k, pt, len) != 1) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

static int
is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* "-----BEGIN " or "-----END " at p, then one of the two CSR labels and "-----": the label's index
 * (0, 1), -1 if none. *after is set past the closing dashes. */
static int
pem_boundary(const unsigned char *p, const unsigned char *end, const char *what,
             const unsigned char **after)
{
    static const char *const labels[] = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"};
    size_t wl = strlen(what), i;

    if ((size_t)(end - p) < 5 + wl || memcmp(p, "-----", 5) != 0 || memcmp(p + 5, what, wl) != 0)
        return -1;
    p += 5 + wl;
    for (i = 0; i < 2; i++) {
        size_t ll = strlen(labels[i]);

        if ((size_t)(end - p) >= ll + 5 && memcmp(p, labels[i], ll) == 0 &&
            memcmp(p + ll, "-----", 5) == 0) {
            *after = p + ll + 5;
            return (int)i;
        }
    }
    return -1;
}

static int
is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/*
 * Decode one PEM block labelled CERTIFICATE REQUEST (or NEW CERTIFICATE REQUEST), RFC 7468: the
 * BEGIN line, base64 (whitespace anywhere between characters, '=' padding only at the end), the END
 * line with the same label, and nothing around it but whitespace: no headers, no second block.
 * Written here rather than through PEM_read_bio: one pass over the bytes, no BIO, about 1.5 % of a
 * DAC's CPU in batches (tools/bench). The DER is checked strictly by the caller.
 */
static enum hsmca_err
pem_to_der(const unsigned char *in, size_t len, unsigned char **der, long *der_len)
{
    const unsigned char *p = in, *end = in + len, *q;
    unsigned char text[HSMCA_CSR_MAX], *out; /* the base64 body; the caller bounds len */
    size_t n = 0, pad = 0;
    int label, dl;

    if (len > sizeof(text))
        return HSMCA_E_CSR_TOO_LARGE;
    while (p < end && is_space(*p))
        p++;
    label = pem_boundary(p, end, "BEGIN ", &p);
    if (label < 0 || (p < end && *p != '\r' && *p != '\n'))
        return HSMCA_E_CSR_PEM;
    /* the base64 body, whitespace dropped, up to the END line */
    for (;;) {
        if (p == end)
            return HSMCA_E_CSR_PEM;
        if (*p == '-')
            break;
        if (is_space(*p)) {
            p++;
            continue;
        }
        if (*p == '=') {
            if (++pad > 2)
                return HSMCA_E_CSR_PEM;
        } else if (!is_b64(*p) || pad > 0) {
            return HSMCA_E_CSR_PEM; /* a header line (':'), another character, data after '=' */
        }
        text[n++] = *p++;
    }
    if (pem_boundary(p, end, "END ", &q) != label || n == 0 || n % 4 != 0)
        return HSMCA_E_CSR_PEM;
    for (; q < end; q++) {
        if (!is_space(*q))
            return HSMCA_E_CSR_PEM; /* a second block or trailing text */
    }
    out = OPENSSL_malloc(n / 4 * 3);
    if (out == NULL)
        return HSMCA_E_NOMEM;
    dl = EVP_DecodeBlock(out, text, (int)n);
    if (dl < 0 || (size_t)dl < pad) {
        OPENSSL_free(out);
        return HSMCA_E_CSR_PEM;
    }
    *der = out;
    *der_len = (long)((size_t)dl - pad);
    return HSMCA_OK;
}

/* certificationRequestInfo and the key: version, subject, SPKI, attributes (RFC 2986 4.1) */
static enum hsmca_err
parse_info(struct hsmca_csr *c, const unsigned char *v, size_t vlen)
{
    struct hsmca_der d, k;
    struct hsmca_der_el ver, name, spki, alg, bits, oid;
    const unsigned char *p;

    hsmca_der_init(&d, v, vlen);
    hsmca_der_read(&d, 0x02, &ver);
    if (!hsmca_der_read(&d, 0x30, &name))
        return HSMCA_E_CSR_MALFORMED;
    p = name.tlv;
    c->subject = d2i_X509_NAME(NULL, &p, (long)name.tlv_len);
    if (c->subject == NULL || p != name.tlv + name.tlv_len)
        return HSMCA_E_CSR_MALFORMED;
    hsmca_der_read(&d, 0x30, &spki);
    hsmca_der_read(&d, 0xa0, NULL); /* attributes */
    if (!hsmca_der_end(&d))
        return HSMCA_E_CSR_MALFORMED;
    if (ver.len > 1 &&
        ((ver.v[0] == 0 && ver.v[1] < 0x80) || (ver.v[0] == 0xff && ver.v[1] >= 0x80)))
        return HSMCA_E_CSR_MALFORMED; /* a non-minimal INTEGER */
    if (ver.len != 1 || ver.v[0] != 0)
        return HSMCA_E_CSR_VERSION;
    hsmca_der_sub(&k, &spki);
    hsmca_der_read(&k, 0x30, &alg);
    hsmca_der_read(&k, 0x03, &bits);
    if (!hsmca_der_end(&k) || bits.len < 2 || bits.v[0] != 0)
        return HSMCA_E_CSR_MALFORMED;
    hsmca_der_sub(&k, &alg);
    if (!hsmca_der_read(&k, 0x06, &oid))
        return HSMCA_E_CSR_MALFORMED;
    if (oid.tlv_len != sizeof(oid_ec_public_key) ||
        memcmp(oid.tlv, oid_ec_public_key, sizeof(oid_ec_public_key)) != 0)
        return HSMCA_E_CSR_KEY_TYPE;
    if ((size_t)(k.end - k.p) != sizeof(oid_prime256v1) ||
        memcmp(k.p, oid_prime256v1, sizeof(oid_prime256v1)) != 0)
        return HSMCA_E_CSR_CURVE;
    c->xpub = X509_PUBKEY_new();
    if (c->xpub == NULL)
        return HSMCA_E_NOMEM;
    {
        unsigned char *pt = OPENSSL_memdup(bits.v + 1, bits.len - 1);

        if (pt == NULL || X509_PUBKEY_set0_param(c->xpub, OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                                                 V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1),
                                                 pt, (int)(bits.len - 1)) != 1) {
            OPENSSL_free(pt);
            return HSMCA_E_NOMEM;
        }
    }
    return HSMCA_OK;
}

enum hsmca_err
hsmca_csr_parse(const unsigned char *in, size_t len, struct hsmca_csr **out)
{
    struct hsmca_csr *c = NULL;
    unsigned char *pem_der = NULL;
    const unsigned char *der;
    struct hsmca_der_el body, info, alg, sig;
    size_t i = 0;
    long der_len;
    struct hsmca_der d, r;
    EVP_MD_CTX *m = NULL;
    EVP_PKEY *vk;
    const unsigned char *pt;
    size_t pt_len = 0;
    enum hsmca_err rc;

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
    /* the outer SEQUENCE, then nothing after it */
    hsmca_der_init(&d, der, (size_t)der_len);
    rc = HSMCA_E_CSR_MALFORMED;
    if (!hsmca_der_read(&d, 0x30, &body) || !der_strict(&body, 0))
        goto out;
    if (!hsmca_der_end(&d)) {
        rc = HSMCA_E_CSR_TRAILING;
        goto out;
    }
    hsmca_der_sub(&r, &body);
    hsmca_der_read(&r, 0x30, &info);
    hsmca_der_read(&r, 0x30, &alg);
    hsmca_der_read(&r, 0x03, &sig);
    if (!hsmca_der_end(&r) || sig.len < 2 || sig.v[0] != 0)
        goto out;
    rc = parse_info(c, info.v, info.len);
    if (rc != HSMCA_OK)
        goto out;
    if (alg.len != sizeof(alg_ecdsa_sha256) ||
        memcmp(alg.v, alg_ecdsa_sha256, sizeof(alg_ecdsa_sha256)) != 0) {
        rc = HSMCA_E_CSR_SIG_ALG;
        goto out;
    }
    /* proof of possession: the signature over the exact certificationRequestInfo bytes */
    vk = spki_point(c->xpub, &pt, &pt_len) ? thread_key(pt, pt_len) : NULL;
    if (vk == NULL) {
        rc = HSMCA_E_CSR_MALFORMED; /* not a point on the curve */
        goto out;
    }
    m = EVP_MD_CTX_new();
    if (m == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    if (EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, vk) != 1 ||
        EVP_DigestVerify(m, sig.v + 1, sig.len - 1, info.tlv, info.tlv_len) != 1) {
        rc = HSMCA_E_CSR_SIGNATURE;
        goto out;
    }
    c->der = OPENSSL_memdup(der, (size_t)der_len);
    if (c->der == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    c->der_len = (size_t)der_len;
    SHA256(c->der, c->der_len, c->sha256);
    *out = c;
    c = NULL;
    rc = HSMCA_OK;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(m);
    OPENSSL_free(pem_der);
    hsmca_csr_free(c);
    return rc;
}

void
hsmca_csr_free(struct hsmca_csr *csr)
{
    if (csr == NULL)
        return;
    X509_NAME_free(csr->subject);
    X509_PUBKEY_free(csr->xpub);
    EVP_PKEY_free(csr->pub);
    OPENSSL_free(csr->der);
    free(csr);
}

EVP_PKEY *
hsmca_csr_pubkey(const struct hsmca_csr *csr)
{
    struct hsmca_csr *c = (struct hsmca_csr *)csr; /* pub is a cache, set once */
    EVP_PKEY *k, *none = NULL;
    const unsigned char *pt;
    size_t pt_len = 0;

    if (c == NULL)
        return NULL;
    k = __atomic_load_n(&c->pub, __ATOMIC_ACQUIRE);
    if (k != NULL)
        return k;
    if (!spki_point(c->xpub, &pt, &pt_len))
        return NULL;
    k = p256_from_point(pt, pt_len);
    if (k == NULL)
        return NULL;
    if (!__atomic_compare_exchange_n(&c->pub, &none, k, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EVP_PKEY_free(k); /* another thread made it first */
        return none;
    }
    return k;
}

const X509_NAME *
hsmca_csr_subject(const struct hsmca_csr *csr)
{
    return csr != NULL ? csr->subject : NULL;
}

const X509_PUBKEY *
hsmca_csr_x509_pubkey(const struct hsmca_csr *csr)
{
    return csr != NULL ? csr->xpub : NULL;
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
