/* SPDX-License-Identifier: Apache-2.0
 *
 * test_crl.c -- CRLs: hostile parameters refused, the CHIP test CRLs accepted by the checker and
 * their tampered copies refused, and a CRL signed in SoftHSM that `openssl crl` verifies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/crl.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "fixture.h"

static X509 *
load_cert(const char *rel)
{
    char path[1024];
    unsigned char *buf = NULL;
    const unsigned char *p;
    size_t len = 0;
    X509 *x;

    snprintf(path, sizeof(path), "%s/chip/revoked-attestation-certificates/%s",
             getenv("HSMCA_VECTORS_DIR"), rel);
    assert_int_equal(hsmca_read_file(path, 1 << 20, &buf, &len), HSMCA_OK);
    p = buf;
    x = d2i_X509(NULL, &p, (long)len);
    free(buf);
    assert_non_null(x);
    return x;
}

static void
reason_names(void **state)
{
    int r = -5, i;

    (void)state;
    assert_int_equal(hsmca_crl_reason_from_name("removeFromCRL", &r), HSMCA_E_CRL_REASON);
    assert_int_equal(hsmca_crl_reason_from_name("keycompromise", &r), HSMCA_E_CRL_REASON);
    assert_int_equal(hsmca_crl_reason_from_name("", &r), HSMCA_E_CRL_REASON);
    assert_int_equal(hsmca_crl_reason_from_name(NULL, &r), HSMCA_E_INVALID_ARG);
    assert_int_equal(r, -5);
    assert_null(hsmca_crl_reason_name(7));
    assert_null(hsmca_crl_reason_name(11));
    assert_null(hsmca_crl_reason_name(-1));
    for (i = 0; i <= 10; i++) {
        const char *n = hsmca_crl_reason_name(i);

        if (n == NULL || i == 8)
            continue;
        assert_int_equal(hsmca_crl_reason_from_name(n, &r), HSMCA_OK);
        assert_int_equal(r, i);
    }
    assert_int_equal(hsmca_crl_reason_from_name("keyCompromise", &r), HSMCA_OK);
    assert_int_equal(r, 1);
}

static void
chip_test_crls_check_and_tampering_is_caught(void **state)
{
    char path[1024];
    unsigned char *der = NULL, *copy;
    size_t len = 0;
    struct hsmca_crl_info info;
    X509 *paa = load_cert("Chip-Test-PAA-FFF1-Cert.der");
    X509 *pai = load_cert("Chip-Test-PAI-FFF1-noPID-Revoked-Cert.der");

    (void)state;
    snprintf(path, sizeof(path), "%s/chip/revoked-attestation-certificates/%s",
             getenv("HSMCA_VECTORS_DIR"), "Chip-Test-PAA-FFF1-CRL.der");
    assert_int_equal(hsmca_read_file(path, 1 << 20, &der, &len), HSMCA_OK);
    assert_int_equal(hsmca_crl_check(der, len, paa, &info), HSMCA_OK);
    assert_int_equal(info.number, 2);
    assert_int_equal(info.entries, 1);
    assert_true(info.next_update > info.this_update);
    /* the wrong issuer, a flipped signature byte, a trailing byte, a truncation */
    assert_int_equal(hsmca_crl_check(der, len, pai, NULL), HSMCA_E_CRL_INVALID);
    copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, der, len);
    copy[len - 3] ^= 0x01;
    assert_int_not_equal(hsmca_crl_check(copy, len, paa, NULL), HSMCA_OK);
    memcpy(copy, der, len);
    copy[len] = 0;
    assert_int_equal(hsmca_crl_check(copy, len + 1, paa, NULL), HSMCA_E_CRL_INVALID);
    assert_int_equal(hsmca_crl_check(copy, len - 1, paa, NULL), HSMCA_E_CRL_INVALID);
    assert_int_equal(hsmca_crl_check(copy, 0, paa, NULL), HSMCA_E_INVALID_ARG);
    free(copy);
    free(der);
    der = NULL;
    /* the PAI's CRL checks under the PAI */
    snprintf(path, sizeof(path), "%s/chip/revoked-attestation-certificates/%s",
             getenv("HSMCA_VECTORS_DIR"), "Chip-Test-PAI-FFF1-noPID-Revoked-CRL.der");
    assert_int_equal(hsmca_read_file(path, 1 << 20, &der, &len), HSMCA_OK);
    assert_int_equal(hsmca_crl_check(der, len, pai, &info), HSMCA_OK);
    assert_int_equal(hsmca_crl_check(der, len, paa, NULL), HSMCA_E_CRL_INVALID);
    free(der);
    X509_free(paa);
    X509_free(pai);
}

/* A self-signed CA certificate for the token key, with SKID (and one without, for refusals). */
static X509 *
make_ca(EVP_PKEY *priv, EVP_PKEY *pub, int with_skid)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"hsmca CRL test CA",
                               -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pub);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:1");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (with_skid) {
        ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, priv, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return x;
}

static void
token_signed_crl_verifies_with_openssl(void **state)
{
    struct fx_hsm hsm;
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *tok = NULL;
    struct hsmca_key *key = NULL;
    struct hsmca_secret pin;
    struct hsmca_crl_entry e[3];
    struct hsmca_crl_params p;
    struct hsmca_crl_info info;
    unsigned char *der = NULL;
    size_t len = 0;
    time_t now = time(NULL);
    char crl_path[700], ca_path[700], out[8192], big_uri[128];
    X509 *ca, *noskid;
    X509_CRL *parsed;
    const unsigned char *pp;
    int crit = 0;
    FILE *f;

    (void)state;
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    assert_int_equal(fx_hsm_setup(&hsm), 0);
    assert_int_equal(fx_hsm_add_token(&hsm, "crl-ca", "so-pin-1234", "user-pin-1234"), 0);
    assert_int_equal(hsmca_p11_open(fx_module(), &p11), HSMCA_OK);
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=crl-ca", &tok), HSMCA_OK);
    pin = fx_secret("user-pin-1234");
    assert_int_equal(hsmca_token_login(tok, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
    assert_int_equal(hsmca_token_generate_key(tok, "ca-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &key),
                     HSMCA_OK);
    ca = make_ca(hsmca_key_private(key), hsmca_key_public(key), 1);
    noskid = make_ca(hsmca_key_private(key), hsmca_key_public(key), 0);

    memset(e, 0, sizeof(e));
    e[0] = (struct hsmca_crl_entry){{0x12, 0x34}, 2, now - 100, 1, now - 200};
    e[1] = (struct hsmca_crl_entry){{0x7f, 0xff, 0x01}, 3, now - 50, HSMCA_CRL_REASON_NONE, 0};
    e[2] = (struct hsmca_crl_entry){{0x01}, 1, now - 10, 5, 0};
    p = (struct hsmca_crl_params){
        ca,  hsmca_key_private(key), 7,
        now, now + 86400 * 30,       "http://crl.example.test/pai-8000.crl"};

    /* hostile parameters first: nothing is signed */
    e[2].revoked_at = now + 60;
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_CRL_DATE);
    e[2].revoked_at = now - 10;
    e[1].reason = 7;
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_CRL_REASON);
    e[1].reason = 8; /* removeFromCRL belongs to delta CRLs */
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_CRL_REASON);
    e[1].reason = HSMCA_CRL_REASON_NONE;
    e[0].serial[0] = 0x92; /* negative */
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_INVALID_ARG);
    e[0].serial[0] = 0x00; /* non-minimal */
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_INVALID_ARG);
    e[0].serial[0] = 0x12;
    p.next_update = p.this_update;
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_CRL_DATE);
    p.next_update = now + 86400 * 30;
    p.idp_uri = "ftp://crl.example.test/x.crl";
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_INVALID_ARG);
    memset(big_uri, 'a', sizeof(big_uri));
    memcpy(big_uri, "http://", 7);
    big_uri[HSMCA_CRL_URI_MAX] = '\0'; /* exactly the limit is fine */
    p.idp_uri = big_uri;
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_OK);
    OPENSSL_free(der);
    der = NULL;
    big_uri[HSMCA_CRL_URI_MAX] = 'a';
    big_uri[HSMCA_CRL_URI_MAX + 1] = '\0';
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_INVALID_ARG);
    p.idp_uri = "http://crl.example.test/pai-8000.crl";
    p.issuer = noskid;
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_E_CRL_AKID);
    p.issuer = ca;
    assert_null(der);

    /* the real thing */
    assert_int_equal(hsmca_crl_build(&p, e, 3, &der, &len), HSMCA_OK);
    assert_int_equal(hsmca_crl_check(der, len, ca, &info), HSMCA_OK);
    assert_int_equal(info.number, 7);
    assert_int_equal(info.entries, 3);
    assert_true(info.this_update == now);
    pp = der;
    parsed = d2i_X509_CRL(NULL, &pp, (long)len);
    assert_non_null(parsed);
    ISSUING_DIST_POINT_free(
        X509_CRL_get_ext_d2i(parsed, NID_issuing_distribution_point, &crit, NULL));
    assert_int_equal(crit, 1);
    X509_CRL_free(parsed);
    /* an empty CRL is a valid CRL too */
    {
        unsigned char *empty = NULL;
        size_t elen = 0;

        assert_int_equal(hsmca_crl_build(&p, NULL, 0, &empty, &elen), HSMCA_OK);
        OPENSSL_free(empty);
    }

    snprintf(crl_path, sizeof(crl_path), "%s/crl.der", hsm.dir);
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", hsm.dir);
    f = fopen(crl_path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(der, 1, len, f), len);
    fclose(f);
    f = fopen(ca_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, ca);
    fclose(f);
    {
        char *argv[] = {"openssl", "crl",   "-inform", "DER",   "-in", crl_path,
                        "-CAfile", ca_path, "-noout",  "-text", NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
        assert_non_null(strstr(out, "verify OK"));
        assert_non_null(strstr(out, "Key Compromise"));
        assert_non_null(strstr(out, "Cessation Of Operation"));
        assert_non_null(strstr(out, "CRL Number"));
        assert_non_null(strstr(out, "http://crl.example.test/pai-8000.crl"));
    }

    OPENSSL_free(der);
    X509_free(ca);
    X509_free(noskid);
    hsmca_key_free(key);
    assert_int_equal(hsmca_token_logout(tok), HSMCA_OK);
    assert_int_equal(hsmca_token_free(tok), HSMCA_OK);
    assert_int_equal(hsmca_p11_free(p11), HSMCA_OK);
    fx_hsm_teardown(&hsm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reason_names),
        cmocka_unit_test(chip_test_crls_check_and_tampering_is_caught),
        cmocka_unit_test(token_signed_crl_verifies_with_openssl),
    };

    return cmocka_run_group_tests_name("crl", tests, NULL, NULL);
}
