/* SPDX-License-Identifier: Apache-2.0
 *
 * test_csr.c -- every CSR refusal reason has its own code (size at N and N+1, PEM armour, malformed
 * and trailing DER, version, key type, curve, signature algorithm, forged signature), then DER and
 * PEM forms of one request give the same exact DER and key; the PEM armour's accepted and refused
 * forms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/csr.h"
#include "hsmca/limits.h"
#include "hsmca/util.h"

static unsigned char *
make_csr(EVP_PKEY *k, const EVP_MD *md, size_t *len)
{
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    unsigned char *der = NULL;
    int l;

    assert_non_null(r);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"device-1", -1, -1, 0);
    assert_int_equal(X509_REQ_set_subject_name(r, n), 1);
    assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
    assert_true(X509_REQ_sign(r, k, md) > 0);
    l = i2d_X509_REQ(r, &der);
    assert_true(l > 0);
    *len = (size_t)l;
    X509_NAME_free(n);
    X509_REQ_free(r);
    return der;
}

static void
expect(const unsigned char *in, size_t len, enum hsmca_err want)
{
    struct hsmca_csr *c = NULL;
    enum hsmca_err got = hsmca_csr_parse(in, len, &c);

    if (got != want)
        fail_msg("got %s, want %s", hsmca_err_code(got), hsmca_err_code(want));
    assert_null(c);
}

static void
refusals_each_have_their_code(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *p384 = EVP_EC_gen("P-384"), *rsa = EVP_RSA_gen(2048);
    unsigned char *der, *buf;
    size_t len;

    (void)state;
    assert_non_null(ec);
    /* size: N+1 refused before parsing; N bytes of garbage reach the parser */
    buf = calloc(1, HSMCA_CSR_MAX + 1);
    assert_non_null(buf);
    expect(buf, HSMCA_CSR_MAX + 1, HSMCA_E_CSR_TOO_LARGE);
    expect(buf, HSMCA_CSR_MAX, HSMCA_E_CSR_MALFORMED);
    expect(buf, 0, HSMCA_E_CSR_MALFORMED);
    free(buf);
    expect((const unsigned char *)"\x30\x03\x02\x01", 4, HSMCA_E_CSR_MALFORMED);

    der = make_csr(ec, EVP_sha256(), &len);
    /* trailing byte, truncation, a flipped signature byte */
    buf = malloc(len + 1);
    memcpy(buf, der, len);
    buf[len] = 0;
    expect(buf, len + 1, HSMCA_E_CSR_TRAILING);
    expect(buf, len - 1, HSMCA_E_CSR_MALFORMED);
    buf[len - 5] ^= 0x01;
    expect(buf, len, HSMCA_E_CSR_SIGNATURE);
    /* version 2 (value 1): the first INTEGER of the DER, 02 01 00 */
    memcpy(buf, der, len);
    {
        unsigned char *v = memmem(buf, len, "\x02\x01\x00", 3);

        assert_non_null(v);
        assert_true(v - buf < 10);
        v[2] = 0x01;
    }
    expect(buf, len, HSMCA_E_CSR_VERSION);
    /* the subject changed after signing: proof of possession fails */
    memcpy(buf, der, len);
    {
        unsigned char *cn = memmem(buf, len, "device-1", 8);

        assert_non_null(cn);
        cn[7] = '2';
    }
    expect(buf, len, HSMCA_E_CSR_SIGNATURE);
    free(buf);
    OPENSSL_free(der);

    der = make_csr(rsa, EVP_sha256(), &len);
    expect(der, len, HSMCA_E_CSR_KEY_TYPE);
    OPENSSL_free(der);
    der = make_csr(p384, EVP_sha256(), &len);
    expect(der, len, HSMCA_E_CSR_CURVE);
    OPENSSL_free(der);
    der = make_csr(ec, EVP_sha384(), &len);
    expect(der, len, HSMCA_E_CSR_SIG_ALG);
    OPENSSL_free(der);
    der = make_csr(ec, EVP_sha1(), &len);
    expect(der, len, HSMCA_E_CSR_SIG_ALG);
    OPENSSL_free(der);

    /* PEM armour: wrong label, two blocks, trailing text */
    {
        const char *cert_label = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        BIO *b = BIO_new(BIO_s_mem());
        X509_REQ *r = NULL;
        const unsigned char *p;
        char *pem, *two;
        long pl;

        expect((const unsigned char *)cert_label, strlen(cert_label), HSMCA_E_CSR_PEM);
        der = make_csr(ec, EVP_sha256(), &len);
        p = der;
        r = d2i_X509_REQ(NULL, &p, (long)len);
        PEM_write_bio_X509_REQ(b, r);
        pl = BIO_get_mem_data(b, &pem);
        two = malloc((size_t)pl * 2 + 8);
        memcpy(two, pem, (size_t)pl);
        memcpy(two + pl, pem, (size_t)pl);
        expect((unsigned char *)two, (size_t)pl * 2, HSMCA_E_CSR_PEM);
        memcpy(two + pl, "junk", 4);
        expect((unsigned char *)two, (size_t)pl + 4, HSMCA_E_CSR_PEM);
        free(two);
        X509_REQ_free(r);
        BIO_free(b);
        OPENSSL_free(der);
    }
    EVP_PKEY_free(ec);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
}

/*
 * The hand-walked DER (csr.c does not use d2i_X509_REQ): non-minimal and indefinite lengths, a
 * point off the curve, a signature algorithm with parameters, an empty attribute set missing.
 */
static void
strict_der_of_the_hand_parser(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    unsigned char *der, *buf, *pt;
    size_t len;

    (void)state;
    der = make_csr(ec, EVP_sha256(), &len);
    assert_true(len > 128 && len < 256); /* outer length is 0x81 XX */
    assert_int_equal(der[1], 0x81);
    buf = malloc(len + 8);
    assert_non_null(buf);

    /* the outer length in three bytes (82 00 XX) where two suffice */
    buf[0] = 0x30;
    buf[1] = 0x82;
    buf[2] = 0x00;
    memcpy(buf + 3, der + 2, len - 2);
    buf[3] = der[2];
    memcpy(buf + 4, der + 3, len - 3);
    expect(buf, len + 1, HSMCA_E_CSR_MALFORMED);
    /* indefinite length */
    memcpy(buf, der, len);
    buf[1] = 0x80;
    expect(buf, len, HSMCA_E_CSR_MALFORMED);
    /* the point's X coordinate changed: not on the curve */
    memcpy(buf, der, len);
    pt = memmem(buf, len, "\x03\x42\x00\x04", 4);
    assert_non_null(pt);
    pt[10] ^= 0x01;
    expect(buf, len, HSMCA_E_CSR_MALFORMED);
    /* a long-form length byte slipped inside the subject (0x0c 0x81 0x08 "device-1"): refused */
    {
        unsigned char *cn = memmem(der, len,
                                   "\x0c\x08"
                                   "device-1",
                                   10);
        size_t off;

        assert_non_null(cn);
        off = (size_t)(cn - der);
        memcpy(buf, der, off + 1);
        buf[off + 1] = 0x81;
        memcpy(buf + off + 2, der + off + 1, len - off - 1);
        expect(buf, len + 1, HSMCA_E_CSR_MALFORMED);
    }
    /* the good request still parses, and gives its subject and encoded key */
    {
        struct hsmca_csr *c = NULL;
        const X509_NAME *n;
        char cn[32];

        assert_int_equal(hsmca_csr_parse(der, len, &c), HSMCA_OK);
        n = hsmca_csr_subject(c);
        assert_true(X509_NAME_get_text_by_NID((X509_NAME *)n, NID_commonName, cn, sizeof(cn)) > 0);
        assert_string_equal(cn, "device-1");
        assert_int_equal(EVP_PKEY_eq(hsmca_csr_pubkey(c), ec), 1);
        hsmca_csr_free(c);
    }
    free(buf);
    OPENSSL_free(der);
    EVP_PKEY_free(ec);
}

static void
der_and_pem_are_the_same_request(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    struct hsmca_csr *a = NULL, *b = NULL;
    unsigned char *der, *pem_in;
    const unsigned char *p, *da, *db;
    size_t len, la = 0, lb = 0;
    X509_REQ *r;
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long pl;

    (void)state;
    der = make_csr(ec, EVP_sha256(), &len);
    assert_int_equal(hsmca_csr_parse(der, len, &a), HSMCA_OK);
    p = der;
    r = d2i_X509_REQ(NULL, &p, (long)len);
    PEM_write_bio_X509_REQ(bio, r);
    pl = BIO_get_mem_data(bio, &pem);
    pem_in = malloc((size_t)pl + 2);
    pem_in[0] = '\n'; /* leading and trailing whitespace are fine */
    memcpy(pem_in + 1, pem, (size_t)pl);
    pem_in[pl + 1] = '\n';
    assert_int_equal(hsmca_csr_parse(pem_in, (size_t)pl + 2, &b), HSMCA_OK);
    da = hsmca_csr_der(a, &la);
    db = hsmca_csr_der(b, &lb);
    assert_int_equal(la, len);
    assert_int_equal(lb, len);
    assert_memory_equal(da, der, len);
    assert_memory_equal(db, der, len);
    assert_memory_equal(hsmca_csr_sha256(a), hsmca_csr_sha256(b), 32);
    assert_int_equal(EVP_PKEY_eq(hsmca_csr_pubkey(a), ec), 1);
    assert_non_null(hsmca_csr_subject(b));
    assert_non_null(hsmca_csr_x509_pubkey(b));
    hsmca_csr_free(a);
    hsmca_csr_free(b);
    hsmca_csr_free(NULL);
    free(pem_in);
    X509_REQ_free(r);
    BIO_free(bio);
    OPENSSL_free(der);
    EVP_PKEY_free(ec);
}

/* The PEM armour, form by form: what RFC 7468 allows (CRLF, whitespace, the NEW label, long or
 * no line breaks) gives the request's exact DER; anything else around or inside the block is
 * refused as csr-pem. */
static void
pem_forms_accepted_and_refused(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    unsigned char *der;
    char b64[1024], body[2048], in[4096];
    size_t len, i, o;
    int bl;
#define BEGIN "-----BEGIN CERTIFICATE REQUEST-----"
#define END "-----END CERTIFICATE REQUEST-----"
    struct {
        const char *pre, *post; /* around the base64 body */
        int ok;                 /* 1 accepted, 0 csr-pem, -1 refused (PEM or DER) */
    } cases[] = {
        {BEGIN "\n", END "\n", 1},
        {BEGIN "\r\n", END "\r\n", 1},
        {"  \n-----BEGIN NEW CERTIFICATE REQUEST-----\n", "-----END NEW CERTIFICATE REQUEST-----",
         1},
        {BEGIN "\n", "-----END NEW CERTIFICATE REQUEST-----\n", 0},
        {BEGIN "\nProc-Type: 4,ENCRYPTED\n\n", END "\n", 0},
        {BEGIN "\n", END "\nx", 0},
        {"x" BEGIN "\n", END "\n", -1}, /* not PEM at all: read as DER */
        {BEGIN "x\n", END "\n", 0},
        {BEGIN "\n", "", 0},
        {BEGIN "\n", "!" END "\n", 0},
        {BEGIN "\n", "AAAA" END "\n", -1},
        {BEGIN "\n", "A" END "\n", 0},
        {"-----BEGIN X509 CRL-----\n", "-----END X509 CRL-----\n", 0},
    };
#undef BEGIN
#undef END

    (void)state;
    der = make_csr(ec, EVP_sha256(), &len);
    bl = EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
    assert_true(bl > 0);
    for (int form = 0; form < 3; form++) {
        /* 64-character lines; one line; 10-character lines with spaces and tabs */
        for (i = 0, o = 0; i < (size_t)bl; i++) {
            body[o++] = b64[i];
            if (form == 0 && (i % 64 == 63 || i + 1 == (size_t)bl))
                body[o++] = '\n';
            if (form == 2 && i % 10 == 9)
                body[o++] = (i / 10) % 2 ? ' ' : '\t';
        }
        if (form != 0)
            body[o++] = '\n';
        body[o] = '\0';
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            struct hsmca_csr *c = NULL;
            const unsigned char *got;
            size_t gl = 0;
            enum hsmca_err rc;
            int n = snprintf(in, sizeof(in), "%s%s%s", cases[i].pre, body, cases[i].post);

            assert_true(n > 0 && (size_t)n < sizeof(in));
            rc = hsmca_csr_parse((const unsigned char *)in, (size_t)n, &c);
            if (cases[i].ok == 1) {
                if (rc != HSMCA_OK)
                    fail_msg("form %d case %zu: %s", form, i, hsmca_err_code(rc));
                got = hsmca_csr_der(c, &gl);
                assert_int_equal(gl, len);
                assert_memory_equal(got, der, len);
                hsmca_csr_free(c);
            } else if (cases[i].ok == 0) {
                if (rc != HSMCA_E_CSR_PEM)
                    fail_msg("form %d case %zu: %s, want csr-pem", form, i, hsmca_err_code(rc));
                assert_null(c);
            } else {
                /* refused, as PEM or once decoded as DER */
                assert_int_not_equal(rc, HSMCA_OK);
                assert_null(c);
            }
        }
    }
    OPENSSL_free(der);
    EVP_PKEY_free(ec);
}

/*
 * A thread checks proofs of possession with one key whose point it replaces per request. A request
 * whose point is off the curve, but whose signature verifies over its own bytes with the previous
 * request's key, must still be refused: it is never checked with that earlier key.
 */
static void
off_curve_point_never_checked_with_the_previous_key(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    EVP_MD_CTX *md;
    struct hsmca_csr *c = NULL;
    unsigned char *good, *bad, *pt, sig[80];
    const unsigned char *p, *body, *v, *tlv;
    size_t len, good_len, body_len, vlen, tlv_len, siglen = 0;
    int tries;

    (void)state;
    assert_non_null(ec);
    good = make_csr(ec, EVP_sha256(), &good_len);
    bad = make_csr(ec, EVP_sha256(), &len);
    pt = memmem(bad, len, "\x03\x42\x00\x04", 4);
    assert_non_null(pt);
    pt[10] ^= 0x01; /* X changed: not on the curve */
    /* re-sign the changed certificationRequestInfo with the same key, same signature length */
    p = bad;
    assert_true(hsmca_der_next(&p, bad + len, 0x30, &body, &body_len, NULL, NULL));
    p = body;
    assert_true(hsmca_der_next(&p, body + body_len, 0x30, &v, &vlen, &tlv, &tlv_len));
    assert_true(hsmca_der_next(&p, body + body_len, 0x30, &v, &vlen, NULL, NULL));
    assert_true(hsmca_der_next(&p, body + body_len, 0x03, &v, &vlen, NULL, NULL));
    for (tries = 0; tries < 64 && siglen != vlen - 1; tries++) {
        siglen = sizeof(sig);
        md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ec), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &siglen, tlv, tlv_len), 1);
        EVP_MD_CTX_free(md);
    }
    assert_int_equal(siglen, vlen - 1);
    memcpy((unsigned char *)v + 1, sig, siglen);
    md = EVP_MD_CTX_new(); /* the signature is good for ec: only the point stops the request */
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, ec), 1);
    assert_int_equal(EVP_DigestVerify(md, v + 1, vlen - 1, tlv, tlv_len), 1);
    EVP_MD_CTX_free(md);

    assert_int_equal(hsmca_csr_parse(good, good_len, &c), HSMCA_OK); /* this thread's key: ec */
    hsmca_csr_free(c);
    expect(bad, len, HSMCA_E_CSR_MALFORMED);
    c = NULL;
    assert_int_equal(hsmca_csr_parse(good, good_len, &c), HSMCA_OK); /* and it recovers */
    assert_int_equal(EVP_PKEY_eq(hsmca_csr_pubkey(c), ec), 1);
    assert_ptr_equal(hsmca_csr_pubkey(c), hsmca_csr_pubkey(c)); /* made once */
    hsmca_csr_free(c);
    OPENSSL_free(good);
    OPENSSL_free(bad);
    EVP_PKEY_free(ec);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refusals_each_have_their_code),
        cmocka_unit_test(der_and_pem_are_the_same_request),
        cmocka_unit_test(pem_forms_accepted_and_refused),
        cmocka_unit_test(strict_der_of_the_hand_parser),
        cmocka_unit_test(off_curve_point_never_checked_with_the_previous_key),
    };

    return cmocka_run_group_tests_name("csr", tests, NULL, NULL);
}
