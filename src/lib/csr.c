/* SPDX-License-Identifier: Apache-2.0
 *
 * csr.c -- checks PKCS#10 requests from untrusted clients: size first, then armour, DER
 * exactness, version, key type and curve, signature algorithm, and the proof of possession.
 * Owns the parsed request and a copy of its exact DER. Refuses, never repairs.
 */
#include "hsmca/csr.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "hsmca/limits.h"

struct hsmca_csr {
    X509_REQ *req;
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

enum hsmca_err
hsmca_csr_parse(const unsigned char *in, size_t len, struct hsmca_csr **out)
{
    struct hsmca_csr *c = NULL;
    unsigned char *pem_der = NULL, *re = NULL;
    const unsigned char *der, *p;
    long der_len;
    EVP_PKEY *pub;
    char group[32];
    size_t glen = 0, i = 0;
    enum hsmca_err rc;
    int relen;

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
    c->req = d2i_X509_REQ(NULL, &p, der_len);
    if (c->req == NULL) {
        rc = HSMCA_E_CSR_MALFORMED;
        goto out;
    }
    if (p != der + der_len) {
        rc = HSMCA_E_CSR_TRAILING;
        goto out;
    }
    /* DER-exact: re-encoding gives the same bytes (refuses BER and non-minimal lengths) */
    relen = i2d_X509_REQ(c->req, &re);
    if (relen != der_len || memcmp(re, der, (size_t)der_len) != 0) {
        rc = HSMCA_E_CSR_MALFORMED;
        goto out;
    }
    if (X509_REQ_get_version(c->req) != X509_REQ_VERSION_1) {
        rc = HSMCA_E_CSR_VERSION;
        goto out;
    }
    pub = X509_REQ_get0_pubkey(c->req);
    if (pub == NULL || EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC) {
        rc = pub == NULL ? HSMCA_E_CSR_MALFORMED : HSMCA_E_CSR_KEY_TYPE;
        goto out;
    }
    if (!EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        &glen) ||
        strcmp(group, "prime256v1") != 0) {
        rc = HSMCA_E_CSR_CURVE;
        goto out;
    }
    if (X509_REQ_get_signature_nid(c->req) != NID_ecdsa_with_SHA256) {
        rc = HSMCA_E_CSR_SIG_ALG;
        goto out;
    }
    if (X509_REQ_verify(c->req, pub) != 1) {
        rc = HSMCA_E_CSR_SIGNATURE;
        goto out;
    }
    c->der = re;
    c->der_len = (size_t)relen;
    re = NULL;
    SHA256(c->der, c->der_len, c->sha256);
    *out = c;
    c = NULL;
    rc = HSMCA_OK;
out:
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
    OPENSSL_free(csr->der);
    free(csr);
}

EVP_PKEY *
hsmca_csr_pubkey(const struct hsmca_csr *csr)
{
    return csr != NULL ? X509_REQ_get0_pubkey(csr->req) : NULL;
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
