/* SPDX-License-Identifier: Apache-2.0
 *
 * test_bundle.c -- bundle.c: the hand-encoded CSRs pass the engine's strict CSR check and verify
 * with OpenSSL; the hand-encoded PKCS#8 is byte for byte OpenSSL's own encoding of the same key;
 * line names and certificates are checked; a sealed bundle opens with the line's key (OpenSSL's
 * CMS API) into a ustar archive whose headers' checksums hold, with the manifest, the PAI and
 * each issued device's DAC, key and PAI (a device without a DAC left out and listed missing); an
 * EC and an RSA line both work.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/bundle.h"
#include "hsmca/csr.h"

static void
test_keys_and_csrs(void **state)
{
    struct hsmca_bundle_keys *k = NULL;
    size_t i;

    (void)state;
    assert_int_equal(hsmca_bundle_keys_new(0, 0, &k), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_bundle_keys_new(HSMCA_BUNDLE_MAX + 1, 0, &k), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_bundle_keys_new(9, 3, &k), HSMCA_OK);
    assert_int_equal(k->n, 9);
    for (i = 0; i < k->n; i++) {
        struct hsmca_csr *c = NULL;
        const unsigned char *p = k->csr[i];
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)k->csr_len[i]);

        /* the engine's own CSR check, and OpenSSL's */
        assert_int_equal(hsmca_csr_parse(k->csr[i], k->csr_len[i], &c), HSMCA_OK);
        assert_true(EVP_PKEY_eq(hsmca_csr_pubkey(c), k->keys[i]) == 1);
        hsmca_csr_free(c);
        assert_non_null(req);
        assert_ptr_equal(p, k->csr[i] + k->csr_len[i]);
        assert_int_equal(X509_REQ_verify(req, k->keys[i]), 1);
        X509_REQ_free(req);
    }
    hsmca_bundle_keys_free(k);
    hsmca_bundle_keys_free(NULL);
}

static void
test_line_names(void **state)
{
    (void)state;
    assert_true(hsmca_line_name_ok("line-1"));
    assert_false(hsmca_line_name_ok(""));
    assert_false(hsmca_line_name_ok("-line"));
    assert_false(hsmca_line_name_ok("Line"));
    assert_false(hsmca_line_name_ok("line/1"));
    assert_false(hsmca_line_name_ok(NULL));
}

/* A self-signed certificate for key, valid from nb_days to na_days from now. */
static X509 *
self_signed(EVP_PKEY *key, long nb_days, long na_days)
{
    X509 *x = X509_new();

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), nb_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), na_days * 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"line", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static char *
pem_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *s;
    long n;

    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &p);
    s = malloc((size_t)n + 1);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static void
test_line_cert(void **state)
{
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    X509 *good = self_signed(ec, -1, 30), *expired = self_signed(ec, -30, -1);
    X509 *weak = self_signed(rsa_small, -1, 30);
    char *pem = pem_of(good), *pem_exp = pem_of(expired), *pem_weak = pem_of(weak);
    unsigned char *der = NULL, sha[32];
    size_t len = 0;
    int64_t now = (int64_t)time(NULL) * 1000;

    (void)state;
    assert_int_equal(hsmca_line_cert_check((unsigned char *)pem, strlen(pem), now, &der, &len, sha),
                     HSMCA_OK);
    assert_true(len > 100);
    free(der);
    assert_int_equal(
        hsmca_line_cert_check((unsigned char *)pem_exp, strlen(pem_exp), now, &der, &len, sha),
        HSMCA_E_LINE_CERT_INVALID);
    assert_int_equal(
        hsmca_line_cert_check((unsigned char *)pem_weak, strlen(pem_weak), now, &der, &len, sha),
        HSMCA_E_LINE_CERT_INVALID);
    assert_int_equal(hsmca_line_cert_check((const unsigned char *)"junk", 4, now, &der, &len, sha),
                     HSMCA_E_LINE_CERT_INVALID);
    free(pem);
    free(pem_exp);
    free(pem_weak);
    X509_free(good);
    X509_free(expired);
    X509_free(weak);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa_small);
}

/* ustar: find name in the archive; checks every header's checksum on the way. */
static const unsigned char *
tar_find(const unsigned char *t, size_t len, const char *name, size_t *flen, unsigned *mode)
{
    size_t off = 0;

    while (off + 512 <= len && t[off] != '\0') {
        unsigned sum = 0, want = 0, i;
        size_t sz = 0;

        for (i = 0; i < 512; i++)
            sum += (i >= 148 && i < 156) ? ' ' : t[off + i];
        for (i = 148; i < 154; i++)
            want = want * 8 + (unsigned)(t[off + i] - '0');
        assert_int_equal(sum, want);
        assert_memory_equal(t + off + 257, "ustar", 6);
        for (i = 124; i < 135; i++)
            sz = sz * 8 + (size_t)(t[off + i] - '0');
        if (strcmp((const char *)t + off, name) == 0) {
            *flen = sz;
            *mode = 0;
            for (i = 100; i < 107; i++)
                *mode = *mode * 8 + (unsigned)(t[off + i] - '0');
            return t + off + 512;
        }
        off += 512 + (sz + 511) / 512 * 512;
    }
    return NULL;
}

static void
seal_and_open(EVP_PKEY *line_key)
{
    X509 *line = self_signed(line_key, -1, 30);
    EVP_PKEY *ca = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *pai = self_signed(ca, -1, 30);
    struct hsmca_bundle_keys *k = NULL;
    struct hsmca_bundle_device dev[3];
    struct hsmca_bundle_info info;
    unsigned char *line_der = NULL, *pai_der = NULL, *env = NULL, mh[32], eh[32], h[32];
    int ll = i2d_X509(line, &line_der), pl = i2d_X509(pai, &pai_der);
    size_t env_len = 0, issued = 0, flen = 0, i;
    unsigned int hl = 0;
    unsigned mode = 0;
    const unsigned char *p, *f;
    CMS_ContentInfo *cms;
    BIO *out = BIO_new(BIO_s_mem());
    unsigned char *tar;
    long tl;
    json_t *man;
    char name[128];

    assert_int_equal(hsmca_bundle_keys_new(3, 1, &k), HSMCA_OK);
    memset(dev, 0, sizeof(dev));
    for (i = 0; i < 3; i++) {
        dev[i].key = k->keys[i];
        dev[i].pub = k->pub[i];
        dev[i].serial_hex = "0102";
        dev[i].request_id = "r";
        if (i != 1) { /* device 1 got no DAC: the PAI stands in as its "DAC" bytes elsewhere */
            dev[i].dac = pai_der;
            dev[i].dac_len = (size_t)pl;
        }
    }
    memset(&info, 0, sizeof(info));
    info.id = "00112233445566778899aabbccddeeff";
    info.ca = "pai-8000";
    info.line = "line-1";
    info.requester = "factory-1";
    info.created_ms = 1700000000000;
    info.pai = pai_der;
    info.pai_len = (size_t)pl;
    assert_int_equal(
        hsmca_bundle_seal(&info, dev, 3, line_der, (size_t)ll, &env, &env_len, mh, eh, &issued),
        HSMCA_OK);
    assert_int_equal(issued, 2);
    EVP_Digest(env, env_len, h, &hl, EVP_sha256(), NULL);
    assert_memory_equal(h, eh, 32);
    p = env;
    cms = d2i_CMS_ContentInfo(NULL, &p, (long)env_len);
    assert_non_null(cms);
    assert_int_equal(OBJ_obj2nid(CMS_get0_type(cms)), NID_pkcs7_enveloped);
    assert_int_equal(CMS_decrypt(cms, line_key, line, NULL, out, CMS_BINARY), 1);
    tl = BIO_get_mem_data(out, (char **)&tar);
    f = tar_find(tar, (size_t)tl, "bundle-00112233445566778899aabbccddeeff/manifest.json", &flen,
                 &mode);
    assert_non_null(f);
    EVP_Digest(f, flen, h, &hl, EVP_sha256(), NULL);
    assert_memory_equal(h, mh, 32);
    man = json_loadb((const char *)f, flen, 0, NULL);
    assert_non_null(man);
    assert_int_equal(json_integer_value(json_object_get(man, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(man, "requested")), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(man, "missing"), 0)), 1);
    assert_string_equal(json_string_value(json_object_get(man, "line")), "line-1");
    json_decref(man);
    for (i = 0; i < 3; i++) {
        snprintf(name, sizeof(name),
                 "bundle-00112233445566778899aabbccddeeff/devices/%04zu/key.der", i);
        f = tar_find(tar, (size_t)tl, name, &flen, &mode);
        if (i == 1) {
            assert_null(f);
            continue;
        }
        assert_non_null(f);
        assert_int_equal(flen, HSMCA_BUNDLE_P8_LEN);
        assert_int_equal(mode, 0600);
        {
            /* byte for byte OpenSSL's own PKCS#8 encoding of the same key */
            PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k->keys[i]);
            unsigned char *ref = NULL;
            int rl = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &ref) : -1;
            const unsigned char *kp = f;
            EVP_PKEY *back = d2i_AutoPrivateKey(NULL, &kp, (long)flen);

            assert_int_equal(rl, HSMCA_BUNDLE_P8_LEN);
            assert_memory_equal(f, ref, HSMCA_BUNDLE_P8_LEN);
            assert_non_null(back);
            assert_true(EVP_PKEY_eq(back, k->keys[i]) == 1);
            EVP_PKEY_free(back);
            OPENSSL_clear_free(ref, (size_t)rl);
            PKCS8_PRIV_KEY_INFO_free(p8);
        }
        snprintf(name, sizeof(name),
                 "bundle-00112233445566778899aabbccddeeff/devices/%04zu/pai.der", i);
        f = tar_find(tar, (size_t)tl, name, &flen, &mode);
        assert_non_null(f);
        assert_int_equal(flen, (size_t)pl);
        assert_memory_equal(f, pai_der, (size_t)pl);
    }
    CMS_ContentInfo_free(cms);
    BIO_free(out);
    free(env);
    OPENSSL_free(line_der);
    OPENSSL_free(pai_der);
    hsmca_bundle_keys_free(k);
    X509_free(line);
    X509_free(pai);
    EVP_PKEY_free(ca);
}

static void
test_seal_ec_line(void **state)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    (void)state;
    seal_and_open(k);
    EVP_PKEY_free(k);
}

static void
test_seal_rsa_line(void **state)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);

    (void)state;
    seal_and_open(k);
    EVP_PKEY_free(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_csrs), cmocka_unit_test(test_line_names),
        cmocka_unit_test(test_line_cert),     cmocka_unit_test(test_seal_ec_line),
        cmocka_unit_test(test_seal_rsa_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
