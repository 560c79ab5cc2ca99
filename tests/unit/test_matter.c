/* SPDX-License-Identifier: Apache-2.0
 *
 * test_matter.c -- the Matter validator and builders: hostile input first (unparsable and
 * oversized certificates, missing PAI/PAA, every VID/PID encoding rule of section 3), then the
 * CHIP test chains of tests/vectors/chip/attestation with its docs/matter-rules.md verdict,
 * then PAA -> PAI -> DAC built in SoftHSM: DER-exact extensions, scope refusals, the lint listing
 * every broken rule, `hsmca verify` and `openssl verify -x509_strict` on the result.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/csr.h"
#include "hsmca/limits.h"
#include "hsmca/matter.h"
#include "hsmca/matter_tbs.h"
#include "hsmca/profile.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "fixture.h"

#define VID_OID "1.3.6.1.4.1.37244.2.1"
#define PID_OID "1.3.6.1.4.1.37244.2.2"

static X509 *
load_att(const char *name)
{
    char path[1024];
    unsigned char *buf = NULL;
    size_t len = 0;
    X509 *x = NULL;

    snprintf(path, sizeof(path), "%s/chip/attestation/%s-Cert.der", getenv("HSMCA_VECTORS_DIR"),
             name);
    assert_int_equal(hsmca_read_file(path, 1 << 16, &buf, &len), HSMCA_OK);
    assert_int_equal(hsmca_matter_cert_parse(buf, len, &x), HSMCA_OK);
    free(buf);
    return x;
}

static void
load_profile(const char *name, struct hsmca_profile *p)
{
    char path[1024];

    snprintf(path, sizeof(path), "%s/policies/profiles/%s.json", getenv("HSMCA_SOURCE_DIR"), name);
    assert_int_equal(hsmca_profile_load(path, p), HSMCA_OK);
}

/* ---- the to-be-signed preview of a CA (matter_tbs.h) ---- */

static void
ca_preview_is_what_the_fixed_build_makes(void **state)
{
    struct hsmca_profile ppaa, ppai, longer;
    struct hsmca_matter_ca_subject spaa = {.has_vid = 1, .vid = 0xFFF1},
                                   spai = {
                                       .has_vid = 1, .vid = 0xFFF1, .has_pid = 1, .pid = 0x8000};
    struct hsmca_matter_ca_fixed f, back;
    EVP_PKEY *kpaa = EVP_EC_gen("P-256"), *kpai = EVP_EC_gen("P-256");
    json_t *blind = NULL, *known = NULL, *made_blind, *made_known, *other = NULL;
    X509 *paa = NULL, *pai = NULL, *pai2 = NULL;
    time_t now = 1796600000; /* 2026-12-07 */

    (void)state;
    assert_non_null(kpaa);
    assert_non_null(kpai);
    load_profile("matter-paa", &ppaa);
    load_profile("matter-pai", &ppai);
    assert_int_equal(hsmca_matter_ca_fix(&ppaa, now, &f), HSMCA_OK);
    assert_true(f.not_before == now - (time_t)ppaa.backdate);
    /* a PAA whose key is made at execution: the preview says so, and the rest is exact */
    assert_int_equal(hsmca_matter_ca_preview(&ppaa, &spaa, NULL, NULL, &f, &blind), HSMCA_OK);
    assert_string_equal(json_string_value(json_object_get(blind, "public_key")),
                        "EC P-256, generated in the CA's token at execution");
    assert_int_equal(hsmca_matter_ca_build_fixed(&ppaa, &spaa, kpaa, NULL, kpaa, &f, &paa),
                     HSMCA_OK);
    made_blind = hsmca_matter_ca_describe(paa, 0);
    made_known = hsmca_matter_ca_describe(paa, 1);
    assert_true(json_equal(made_blind, blind));
    assert_false(json_equal(made_known, blind));
    assert_int_equal(hsmca_matter_ca_preview(&ppaa, &spaa, kpaa, NULL, &f, &known), HSMCA_OK);
    assert_true(json_equal(made_known, known));
    assert_string_equal(json_string_value(json_object_get(known, "subject")),
                        "CN=hsmca Matter PAA FFF1, MatterVID=FFF1");
    assert_string_equal(json_string_value(json_object_get(known, "issuer")),
                        json_string_value(json_object_get(known, "subject")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(known, "extensions"), 0)),
                        "X509v3 Basic Constraints (critical): CA:TRUE, pathlen:1");
    /* the fixed inputs come back from the description */
    assert_int_equal(hsmca_matter_ca_fixed_of(known, &back), HSMCA_OK);
    assert_true(back.not_before == f.not_before);
    assert_memory_equal(back.serial, f.serial, sizeof(f.serial));
    json_decref(blind);
    json_decref(known);
    json_decref(made_blind);
    json_decref(made_known);
    /* a PAI under it: signed by the PAA's key, same preview as build */
    assert_int_equal(hsmca_matter_ca_fix(&ppai, now, &f), HSMCA_OK);
    assert_int_equal(hsmca_matter_ca_preview(&ppai, &spai, kpai, paa, &f, &known), HSMCA_OK);
    assert_int_equal(hsmca_matter_ca_build_fixed(&ppai, &spai, kpai, paa, kpaa, &f, &pai),
                     HSMCA_OK);
    made_known = hsmca_matter_ca_describe(pai, 1);
    assert_true(json_equal(made_known, known));
    assert_string_equal(json_string_value(json_object_get(known, "not_after")),
                        "9999-12-31T23:59:59Z");
    /* another profile (a changed validity) makes another certificate: the execution's check */
    longer = ppai;
    longer.no_expiry = 0;
    longer.days = 3650;
    assert_int_equal(hsmca_matter_ca_build_fixed(&longer, &spai, kpai, paa, kpaa, &f, &pai2),
                     HSMCA_OK);
    other = hsmca_matter_ca_describe(pai2, 1);
    assert_false(json_equal(other, known));
    /* a PAI outside its PAA's VID: no preview, as no build */
    spai.vid = 0xFFF2;
    blind = NULL;
    assert_int_equal(hsmca_matter_ca_preview(&ppai, &spai, NULL, paa, &f, &blind),
                     HSMCA_E_MATTER_SCOPE);
    assert_null(blind);
    /* malformed fixed inputs are refused */
    json_object_set_new(known, "serial", json_string("12"));
    assert_int_equal(hsmca_matter_ca_fixed_of(known, &back), HSMCA_E_INVALID_ARG);
    json_object_set_new(known, "serial", json_string("41A24F4FFD60929C3F9AA03D6864BC8B"));
    json_object_set_new(known, "not_before", json_string("2026-13-07T07:01:52Z"));
    assert_int_equal(hsmca_matter_ca_fixed_of(known, &back), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_matter_ca_fixed_of(NULL, &back), HSMCA_E_INVALID_ARG);
    json_decref(other);
    json_decref(made_known);
    json_decref(known);
    X509_free(pai2);
    X509_free(pai);
    X509_free(paa);
    EVP_PKEY_free(kpai);
    EVP_PKEY_free(kpaa);
}

static void
parse_refuses_what_is_not_one_certificate(void **state)
{
    X509 *good = load_att("Chip-Test-PAA-FFF1"), *x = NULL;
    unsigned char *der = NULL, *buf;
    int n = i2d_X509(good, &der);
    char *pem = NULL, *two;
    long pl;
    BIO *b = BIO_new(BIO_s_mem());

    (void)state;
    assert_int_equal(hsmca_matter_cert_parse(NULL, 1, &x), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_matter_cert_parse(der, (size_t)n, NULL), HSMCA_E_INVALID_ARG);
    buf = calloc(1, HSMCA_MATTER_INPUT_MAX + 1);
    assert_non_null(buf);
    assert_int_equal(hsmca_matter_cert_parse(buf, HSMCA_MATTER_INPUT_MAX + 1, &x),
                     HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_matter_cert_parse(buf, HSMCA_MATTER_INPUT_MAX, &x),
                     HSMCA_E_MATTER_CERT_MALFORMED);
    memcpy(buf, der, (size_t)n);
    assert_int_equal(hsmca_matter_cert_parse(buf, (size_t)n + 1, &x),
                     HSMCA_E_MATTER_CERT_MALFORMED); /* trailing byte */
    assert_int_equal(hsmca_matter_cert_parse(buf, (size_t)n - 1, &x),
                     HSMCA_E_MATTER_CERT_MALFORMED); /* truncated */
    assert_int_equal(hsmca_matter_cert_parse(buf, 0, &x), HSMCA_E_MATTER_CERT_MALFORMED);
    free(buf);
    /* found by fuzz_matter: OpenSSL parses it, but it is not DER-exact */
    {
        char path[1024];
        unsigned char *ber = NULL;
        size_t blen = 0;

        snprintf(path, sizeof(path), "%s/tests/fuzz/fuzz_matter.in/regress_not_der_exact.der",
                 getenv("HSMCA_SOURCE_DIR"));
        assert_int_equal(hsmca_read_file(path, 4096, &ber, &blen), HSMCA_OK);
        assert_int_equal(hsmca_matter_cert_parse(ber, blen, &x), HSMCA_E_MATTER_CERT_MALFORMED);
        free(ber);
    }
    PEM_write_bio_X509(b, good);
    pl = BIO_get_mem_data(b, &pem);
    two = malloc((size_t)pl * 2);
    assert_non_null(two);
    memcpy(two, pem, (size_t)pl);
    memcpy(two + pl, pem, (size_t)pl);
    assert_int_equal(hsmca_matter_cert_parse((unsigned char *)two, (size_t)pl * 2, &x),
                     HSMCA_E_MATTER_CERT_MALFORMED);
    {
        const char *req = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n"
                          "-----END CERTIFICATE REQUEST-----\n";

        assert_int_equal(hsmca_matter_cert_parse((const unsigned char *)req, strlen(req), &x),
                         HSMCA_E_MATTER_CERT_MALFORMED);
    }
    assert_null(x);
    /* the one good PEM block and the DER give the same certificate */
    assert_int_equal(hsmca_matter_cert_parse((unsigned char *)two, (size_t)pl, &x), HSMCA_OK);
    assert_int_equal(X509_cmp(x, good), 0);
    X509_free(x);
    free(two);
    BIO_free(b);
    OPENSSL_free(der);
    X509_free(good);
}

/* A certificate holding only a subject, for the VID/PID parser. */
static X509 *
subject(const char *spec[][2], int n)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int i;

    for (i = 0; i < n; i++) {
        ASN1_OBJECT *o = OBJ_txt2obj(spec[i][0], 0);
        int type = V_ASN1_UTF8STRING;

        if (spec[i][1][0] == '\x01') { /* PrintableString marker */
            type = V_ASN1_PRINTABLESTRING;
            assert_int_equal(X509_NAME_add_entry_by_OBJ(
                                 name, o, type, (const unsigned char *)spec[i][1] + 1, -1, -1, 0),
                             1);
        } else {
            assert_int_equal(X509_NAME_add_entry_by_OBJ(
                                 name, o, type, (const unsigned char *)spec[i][1], -1, -1, 0),
                             1);
        }
        ASN1_OBJECT_free(o);
    }
    assert_int_equal(X509_set_subject_name(x, name), 1);
    X509_NAME_free(name);
    return x;
}

static void
vidpid(const char *spec[][2], int n, enum hsmca_err want_rc, const char *want_rule, int has_vid,
       unsigned vid, int has_pid, unsigned pid)
{
    X509 *x = subject(spec, n);
    struct hsmca_matter_vidpid vp = {9, 9, 9, 9};
    struct hsmca_matter_verdict v;
    enum hsmca_err rc;

    memset(&v, 0, sizeof(v));
    rc = hsmca_matter_get_vidpid(x, &vp, &v);
    if (rc != want_rc)
        fail_msg("%s: got %s want %s", spec[0][1], hsmca_err_code(rc), hsmca_err_code(want_rc));
    if (rc != HSMCA_OK) {
        assert_string_equal(v.rule, want_rule);
        assert_int_equal(vp.has_vid, 9); /* untouched */
    } else {
        assert_int_equal(vp.has_vid, has_vid);
        assert_int_equal(vp.has_pid, has_pid);
        if (has_vid)
            assert_int_equal(vp.vid, vid);
        if (has_pid)
            assert_int_equal(vp.pid, pid);
    }
    X509_free(x);
}

static void
vidpid_encoding_rules(void **state)
{
    (void)state;
    /* N3: exactly 4 uppercase hex */
    vidpid((const char *[][2]){{"CN", "x"}, {VID_OID, "fff1"}}, 2, HSMCA_E_MATTER_DN, "N3", 0, 0, 0,
           0);
    vidpid((const char *[][2]){{VID_OID, "FF1"}}, 1, HSMCA_E_MATTER_DN, "N3", 0, 0, 0, 0);
    vidpid((const char *[][2]){{VID_OID, "0FFF1"}}, 1, HSMCA_E_MATTER_DN, "N3", 0, 0, 0, 0);
    vidpid((const char *[][2]){{PID_OID, "80G0"}}, 1, HSMCA_E_MATTER_DN, "N3", 0, 0, 0, 0);
    /* N5: twice */
    vidpid((const char *[][2]){{VID_OID, "FFF1"}, {VID_OID, "FFF1"}}, 2, HSMCA_E_MATTER_DN, "N5", 0,
           0, 0, 0);
    /* N9: a prefix never followed by 4 uppercase hex */
    vidpid((const char *[][2]){{"CN", "ACME Mvid:fff1 Mpid:00B1"}}, 1, HSMCA_E_MATTER_DN, "N9", 0,
           0, 0, 0);
    vidpid((const char *[][2]){{"CN", "ACME Mvid:FFF1 Mpid:"}}, 1, HSMCA_E_MATTER_DN, "N9", 0, 0, 0,
           0);
    /* happy paths: OIDs (N1/N2), any string type (N4) */
    vidpid((const char *[][2]){{"CN", "Matter DAC"}, {VID_OID, "FFF1"}, {PID_OID, "8000"}}, 3,
           HSMCA_OK, NULL, 1, 0xFFF1, 1, 0x8000);
    vidpid((const char *[][2]){{VID_OID, "\x01"
                                         "FFF1"}},
           1, HSMCA_OK, NULL, 1, 0xFFF1, 0, 0);
    /* N8: legacy CN encoding, any order, any separator */
    vidpid((const char *[][2]){{"CN", "ACME Matter Devel DAC 5CDA9899 Mvid:FFF1 Mpid:00B1"}}, 1,
           HSMCA_OK, NULL, 1, 0xFFF1, 1, 0x00B1);
    vidpid((const char *[][2]){{"CN", "Mpid:00B1,ACME Matter Devel DAC 5CDA9899,Mvid:FFF1"}}, 1,
           HSMCA_OK, NULL, 1, 0xFFF1, 1, 0x00B1);
    vidpid((const char *[][2]){{"CN", "Mvid:FFF1Mpid:00B1"}}, 1, HSMCA_OK, NULL, 1, 0xFFF1, 1,
           0x00B1);
    /* N9: case-sensitive prefix (simply absent), only the first 64 bytes are searched */
    vidpid((const char *[][2]){{"CN", "MVID:FFF1"}}, 1, HSMCA_OK, NULL, 0, 0, 0, 0);
    /* 60 + "Mvid:": the prefix does not fit in the first 64 bytes: absent */
    vidpid((const char *[][2]){{"CN", "012345678901234567890123456789012345678901234567890123456789"
                                      "Mvid:FFF1"}},
           1, HSMCA_OK, NULL, 0, 0, 0, 0);
    /* 55 + 9 = 64: the value fits exactly */
    vidpid((const char *[][2]){{"CN", "0123456789012345678901234567890123456789012345678901234"
                                      "Mvid:FFF1"}},
           1, HSMCA_OK, NULL, 1, 0xFFF1, 0, 0);
    /* 58 + "Mvid:" + 1 hex digit inside the window: the value is cut, so malformed */
    vidpid((const char *[][2]){{"CN", "0123456789012345678901234567890123456789012345678901234567"
                                      "Mvid:FFF1"}},
           1, HSMCA_E_MATTER_DN, "N9", 0, 0, 0, 0);
    /* N10: any Matter OID wins; the CN is ignored */
    vidpid((const char *[][2]){{"CN", "Mvid:FFF1"}, {PID_OID, "8000"}}, 2, HSMCA_OK, NULL, 0, 0, 1,
           0x8000);
}

struct chain_case {
    const char *dac, *pai, *paa;
    int at_dac_start; /* judge "now" as the DAC's notBefore + 1 s (historic test chains) */
    enum hsmca_err want;
    const char *rule;
    int chip;
};

static void
chip_test_chains_get_the_predicted_verdict(void **state)
{
    static const struct chain_case cases[] = {
        /* well-formed chains */
        {"Chip-Test-DAC-FFF1-8000-0000", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1", 0,
         HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF1-8000-0007", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1", 0,
         HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF2-8001-0008", "Chip-Test-PAI-FFF2-8001", "Chip-Test-PAA-NoVID", 0,
         HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF2-8002-0010", "Chip-Test-PAI-FFF2-NoPID-Resigned",
         "Chip-Test-PAA-NoVID-ToResignPAIs", 0, HSMCA_OK, "", 0},
        /* legacy CN encoding (FB = fallback) */
        {"Chip-Test-DAC-FFF2-8003-0018-FB", "Chip-Test-PAI-FFF2-NoPID-FB", "Chip-Test-PAA-NoVID", 0,
         HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF2-8004-001C-FB", "Chip-Test-PAI-FFF2-8004-FB", "Chip-Test-PAA-NoVID", 0,
         HSMCA_OK, "", 0},
        /* CDP variants: R1-R5 make the CDP unusable for revocation, not the certificate */
        {"Chip-Test-DAC-FFF1-8000-0000-CDP", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1", 0,
         HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF1-8000-0000-CDP-2DPs", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1",
         0, HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF1-8000-0000-CDP-2URIs", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1",
         0, HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF1-8000-0000-CDP-Wrong-Prefix", "Chip-Test-PAI-FFF1-8000",
         "Chip-Test-PAA-FFF1", 0, HSMCA_OK, "", 0},
        /* 599 bytes: under the C13 limit */
        {"Chip-Test-DAC-FFF1-8000-0000-CDP-Long", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1",
         0, HSMCA_OK, "", 0},
        /* C12: two CDP extensions (600 bytes: exactly at the C13 limit, so C12 is what fails) */
        {"Chip-Test-DAC-FFF1-8000-0000-2CDPs", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1", 0,
         HSMCA_E_MATTER_FORMAT, "C12", HSMCA_CHIP_DAC_FORMAT_INVALID},
        /* C13: a 656-byte PAI */
        {"Chip-Test-DAC-FFF1-8000-0000-CDP-Issuer-PAI-FFF2-8004",
         "Chip-Test-DAC-FFF1-8000-0000-CDP-Issuer-PAI-FFF2-8004-Long", "Chip-Test-PAA-NoVID", 0,
         HSMCA_E_MATTER_CERT_TOO_LARGE, "C13", HSMCA_CHIP_PAI_FORMAT_INVALID},
        /* wrong PAA: the PAI's AKID is not its SKID (V2) */
        {"Chip-Test-DAC-FFF1-8000-0000", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-NoVID", 0,
         HSMCA_E_MATTER_PAA_NOT_FOUND, "V2", HSMCA_CHIP_PAA_NOT_FOUND},
        /* re-signed PAI under the other PAA name: same key, other issuer name (V9) */
        {"Chip-Test-DAC-FFF2-8001-0008", "Chip-Test-PAI-FFF2-8001",
         "Chip-Test-PAA-NoVID-ToResignPAIs", 0, HSMCA_E_MATTER_CHAIN, "V9",
         HSMCA_CHIP_DAC_SIGNATURE_INVALID},
        /* DAC under a PAI of another VID (PAI FFF1 vs DAC FFF2) */
        {"Chip-Test-DAC-FFF2-8001-0008", "Chip-Test-PAI-FFF1-8000", "Chip-Test-PAA-FFF1", 0,
         HSMCA_E_MATTER_VIDPID, "dac-vid", HSMCA_CHIP_DAC_VENDOR_ID_MISMATCH},
        /* V3/V5: judged at the DAC's notBefore */
        {"Chip-Test-DAC-FFF2-8006-0024-ValInPast", "Chip-Test-PAI-FFF2-8006-ValInPast",
         "Chip-Test-PAA-FFF2-ValInPast", 1, HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF2-8006-0025-ValInFuture", "Chip-Test-PAI-FFF2-8006-ValInFuture",
         "Chip-Test-PAA-FFF2-ValInFuture", 1, HSMCA_OK, "", 0},
        {"Chip-Test-DAC-FFF2-8006-0034-ValInFuture", "Chip-Test-PAI-FFF2-8006-ValInPast",
         "Chip-Test-PAA-FFF2-ValInPast", 1, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3",
         HSMCA_CHIP_DAC_SIGNATURE_INVALID},
        {"Chip-Test-DAC-FFF2-8005-0033-Val1SecBefore", "Chip-Test-PAI-FFF2-8005-ValInFuture",
         "Chip-Test-PAA-NoVID", 1, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3",
         HSMCA_CHIP_DAC_SIGNATURE_INVALID},
        {"Chip-Test-DAC-FFF2-8006-0035-Val1SecBefore", "Chip-Test-PAI-FFF2-8006-ValInFuture",
         "Chip-Test-PAA-FFF2-ValInFuture", 1, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3",
         HSMCA_CHIP_DAC_SIGNATURE_INVALID},
        /* V4: the same valid-in-the-past chain judged today: only the DAC's time counts */
        {"Chip-Test-DAC-FFF2-8006-0034-ValInFuture", "Chip-Test-PAI-FFF2-8006-ValInFuture",
         "Chip-Test-PAA-FFF2-ValInFuture", 0, HSMCA_E_MATTER_DAC_VALIDITY, "V4",
         HSMCA_CHIP_DAC_EXPIRED},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct chain_case *c = &cases[i];
        X509 *dac = load_att(c->dac), *pai = load_att(c->pai), *paa = load_att(c->paa);
        struct hsmca_matter_verdict v;
        time_t now = time(NULL);
        enum hsmca_err rc;

        if (c->at_dac_start) {
            struct tm tm;

            assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(dac), &tm), 1);
            now = timegm(&tm) + 1;
        }
        memset(&v, 0, sizeof(v));
        rc = hsmca_matter_validate(dac, pai, paa, NULL, now, &v);
        if (rc != c->want || strcmp(v.rule, c->rule) != 0 || v.chip != c->chip)
            fail_msg("%s: got %s rule %s chip %d (%s), want %s rule %s chip %d", c->dac,
                     hsmca_err_code(rc), v.rule, v.chip, v.detail, hsmca_err_code(c->want), c->rule,
                     c->chip);
        X509_free(dac);
        X509_free(pai);
        X509_free(paa);
    }
    /* no PAI, no PAA, no DAC */
    {
        X509 *dac = load_att("Chip-Test-DAC-FFF1-8000-0000"),
             *pai = load_att("Chip-Test-PAI-FFF1-8000");
        struct hsmca_matter_verdict v;

        assert_int_equal(hsmca_matter_validate(dac, NULL, NULL, NULL, time(NULL), &v),
                         HSMCA_E_MATTER_PAI_MISSING);
        assert_int_equal(v.chip, HSMCA_CHIP_PAI_MISSING);
        assert_int_equal(hsmca_matter_validate(dac, pai, NULL, NULL, time(NULL), &v),
                         HSMCA_E_MATTER_PAA_NOT_FOUND);
        assert_int_equal(hsmca_matter_validate(NULL, pai, NULL, NULL, time(NULL), &v),
                         HSMCA_E_INVALID_ARG);
        /* the device reports another PID / VID than the DAC carries */
        {
            X509 *paa = load_att("Chip-Test-PAA-FFF1");

            assert_int_equal(hsmca_matter_validate(
                                 dac, pai, paa, &(struct hsmca_matter_expect){1, 1, 0xFFF1, 0x8001},
                                 time(NULL), &v),
                             HSMCA_E_MATTER_EXPECTED_VIDPID);
            assert_string_equal(v.rule, "basic-info-pid");
            assert_int_equal(hsmca_matter_validate(dac, pai, paa,
                                                   &(struct hsmca_matter_expect){1, 0, 0xFFF2, 0},
                                                   time(NULL), &v),
                             HSMCA_E_MATTER_EXPECTED_VIDPID);
            assert_int_equal(v.chip, HSMCA_CHIP_DAC_VENDOR_ID_MISMATCH);
            assert_int_equal(hsmca_matter_validate(
                                 dac, pai, paa, &(struct hsmca_matter_expect){1, 1, 0xFFF1, 0x8000},
                                 time(NULL), &v),
                             HSMCA_OK);
            X509_free(paa);
        }
        X509_free(dac);
        X509_free(pai);
    }
}

static unsigned char *
make_csr(EVP_PKEY *k, const char *vid, size_t *len)
{
    unsigned char *der = fx_csr(k, vid, len);

    assert_non_null(der);
    return der;
}

static int
has_bytes(const unsigned char *der, size_t len, const char *hex)
{
    unsigned char pat[64];
    size_t plen = 0;

    assert_int_equal(hsmca_hex_decode(hex, strlen(hex), pat, sizeof(pat), &plen), HSMCA_OK);
    return memmem(der, len, pat, plen) != NULL;
}

static void
write_pem(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static double
elapsed_us(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 + (double)(b->tv_nsec - a->tv_nsec) / 1e3;
}

struct worker {
    const struct hsmca_matter_issuer *is;
    const struct hsmca_csr *csr;
    X509 *pai, *paa;
    int n, ok;
};

/* Many threads share one issuer context; each DAC must validate. */
static void *
worker_run(void *arg)
{
    struct worker *w = arg;
    struct hsmca_matter_dac_request rq = {w->csr, 0, 0, time(NULL), NULL};
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN], *der = NULL;
    size_t len = 0;
    int k;

    for (k = 0; k < w->n; k++) {
        X509 *x = NULL;
        struct hsmca_matter_verdict v;

        if (hsmca_matter_dac_build(w->is, &rq, k & 1 ? HSMCA_MATTER_VERIFY_SIGNATURE : 0, serial,
                                   &der, &len) != HSMCA_OK ||
            hsmca_matter_cert_parse(der, len, &x) != HSMCA_OK ||
            hsmca_matter_validate(x, w->pai, w->paa, NULL, time(NULL), &v) != HSMCA_OK) {
            OPENSSL_free(der);
            X509_free(x);
            return NULL;
        }
        OPENSSL_free(der);
        X509_free(x);
        der = NULL;
        w->ok++;
    }
    return NULL;
}

/* der parses as one certificate and passes the full validator, chained to pai and paa, VID FFF1 */
static void
assert_dac_chains(const unsigned char *der, size_t len, X509 *pai, X509 *paa, uint16_t pid)
{
    struct hsmca_matter_verdict v;
    X509 *x = NULL;

    assert_int_equal(hsmca_matter_cert_parse(der, len, &x), HSMCA_OK);
    assert_int_equal(hsmca_matter_validate(x, pai, paa,
                                           &(struct hsmca_matter_expect){1, 1, 0xFFF1, pid},
                                           time(NULL), &v),
                     HSMCA_OK);
    X509_free(x);
}

/* A template-path signer for hsmca_matter_issuer_set_signer: the daemon's way (the key's own
 * signing sessions), counted, or failing with a chosen code. */
struct test_signer {
    const struct hsmca_key *key;
    int calls;
    enum hsmca_err fail;
};

static enum hsmca_err
test_sign(void *arg, const unsigned char dgst[32], unsigned char *sig, size_t sig_max,
          size_t *sig_len)
{
    struct test_signer *ts = arg;

    if (ts->fail != HSMCA_OK)
        return ts->fail;
    ts->calls++;
    return hsmca_key_sign_digest(ts->key, dgst, 32, sig, sig_max, sig_len);
}

/* A DAC profile with a per-device subject value: subject_extra goes into "subject", validity is
 * the "validity" members. */
static void
devid_profile(const char *cn, const char *subject_extra, const char *validity,
              struct hsmca_profile *out)
{
    char buf[1024];
    int n = snprintf(
        buf, sizeof(buf),
        "{\"name\": \"dac-dev\", \"type\": \"dac\", \"subject\": {\"common_name\": \"%s\", "
        "\"vid\": \"required\", \"pid\": \"required\", \"device_id\": %s}, \"validity\": {%s, "
        "\"backdate_seconds\": 60}, \"extensions\": {\"basic_constraints\": {\"critical\": true, "
        "\"ca\": false}, \"key_usage\": {\"critical\": true, \"usages\": [\"digitalSignature\"]}, "
        "\"subject_key_identifier\": {\"critical\": false}, \"authority_key_identifier\": "
        "{\"critical\": false}}}",
        cn, subject_extra, validity);

    assert_true(n > 0 && (size_t)n < sizeof(buf));
    assert_int_equal(hsmca_profile_parse(buf, (size_t)n, out), HSMCA_OK);
}

/* The value of the one attribute nid of x's subject, and its ASN.1 string type. */
static void
assert_subject_attr(X509 *x, int nid, const char *want, int want_type)
{
    const X509_NAME *n = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(n, nid, -1);
    const ASN1_STRING *v;

    assert_true(i >= 0);
    assert_true(X509_NAME_get_index_by_NID(n, nid, i) < 0);
    v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
    assert_int_equal(ASN1_STRING_type(v), want_type);
    assert_int_equal((size_t)ASN1_STRING_length(v), strlen(want));
    assert_memory_equal(ASN1_STRING_get0_data(v), want, strlen(want));
}

/*
 * Per-device subject values in real DACs signed in the PAI's token: a serialNumber (finite
 * validity of 365 days) and a common-name device id taken from the CSR; both chain and pass the
 * validator; refusals sign nothing; no template is ever made for them (each subject differs).
 */
static void
device_id_dacs(X509 *pai, X509 *paa, struct hsmca_key *kpai, const struct hsmca_csr *csr,
               const unsigned char *cder, size_t clen, time_t now)
{
    struct hsmca_profile psn, pcn;
    struct hsmca_matter_issuer *isn = NULL, *icn = NULL;
    struct hsmca_matter_dac_request rq;
    struct hsmca_matter_verdict v;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN], *der = NULL;
    size_t len = 0;
    X509 *x = NULL;
    int days = -1, secs = -1;
    unsigned ntmpl;
    json_t *lint = NULL;

    devid_profile("ACME {vid}/{pid}",
                  "{\"attribute\": \"serialNumber\", \"pattern\": \"[0-9A-F]{16}\", "
                  "\"max_length\": 16, \"required\": true}",
                  "\"days\": 365", &psn);
    devid_profile("ACME {device_id}",
                  "{\"attribute\": \"commonName\", \"pattern\": \"factory-[a-z]+|DEV-[0-9]+\", "
                  "\"max_length\": 20, \"required\": true, \"from_csr\": true}",
                  "\"not_after\": \"99991231235959Z\"", &pcn);
    assert_int_equal(hsmca_matter_issuer_new(&psn, pai, paa, hsmca_key_private(kpai), &isn),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_issuer_new(&pcn, pai, paa, hsmca_key_private(kpai), &icn),
                     HSMCA_OK);

    /* serialNumber: PrintableString after the CN, VID/PID from the PAI, 365 days */
    ntmpl = hsmca_matter_issuer_templates(isn);
    rq = (struct hsmca_matter_dac_request){csr, 0, 0, now, "0123456789ABCDEF"};
    assert_int_equal(
        hsmca_matter_dac_build(isn, &rq, HSMCA_MATTER_VERIFY_SIGNATURE, serial, &der, &len),
        HSMCA_OK);
    assert_dac_chains(der, len, pai, paa, 0x8000);
    assert_int_equal(hsmca_matter_cert_parse(der, len, &x), HSMCA_OK);
    assert_subject_attr(x, NID_serialNumber, "0123456789ABCDEF", V_ASN1_PRINTABLESTRING);
    assert_subject_attr(x, NID_commonName, "ACME FFF1/8000", V_ASN1_UTF8STRING);
    assert_int_equal(
        OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(X509_get_subject_name(x), 1))),
        NID_serialNumber); /* CN, serialNumber, VID, PID */
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_int_equal(days, 364);
    assert_int_equal(secs, 86399);
    assert_int_equal(hsmca_matter_validate(x, pai, paa,
                                           &(struct hsmca_matter_expect){1, 1, 0xFFF1, 0x8000},
                                           time(NULL), &v),
                     HSMCA_OK);
    X509_free(x);
    x = NULL;
    OPENSSL_free(der);
    der = NULL;
    assert_int_equal(hsmca_matter_issuer_templates(isn), ntmpl); /* no template for it */

    /* refusals sign nothing */
    rq.device_id = "0123";
    assert_int_equal(hsmca_matter_dac_build(isn, &rq, 0, serial, &der, &len),
                     HSMCA_E_DEVICE_ID_PATTERN);
    rq.device_id = "0123456789ABCDE*";
    assert_int_equal(hsmca_matter_dac_build(isn, &rq, 0, serial, &der, &len),
                     HSMCA_E_DEVICE_ID_RULE);
    rq.device_id = NULL;
    assert_int_equal(hsmca_matter_dac_build(isn, &rq, 0, serial, &der, &len),
                     HSMCA_E_DEVICE_ID_PATTERN);
    assert_null(der);

    /* commonName from the CSR ("factory-device"), or the request's value when it gives one */
    rq = (struct hsmca_matter_dac_request){csr, 0, 0, now, NULL};
    assert_int_equal(hsmca_matter_dac_build(icn, &rq, 0, serial, &der, &len), HSMCA_OK);
    assert_dac_chains(der, len, pai, paa, 0x8000);
    assert_int_equal(hsmca_matter_cert_parse(der, len, &x), HSMCA_OK);
    assert_subject_attr(x, NID_commonName, "ACME factory-device", V_ASN1_UTF8STRING);
    assert_int_equal(X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_serialNumber, -1),
                     -1);
    X509_free(x);
    x = NULL;
    OPENSSL_free(der);
    der = NULL;
    rq.device_id = "DEV-42";
    assert_int_equal(hsmca_matter_dac_build(icn, &rq, HSMCA_MATTER_FULL_BUILD, serial, &der, &len),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_cert_parse(der, len, &x), HSMCA_OK);
    assert_subject_attr(x, NID_commonName, "ACME DEV-42", V_ASN1_UTF8STRING);
    X509_free(x);
    OPENSSL_free(der);
    der = NULL;
    rq.device_id = "Mvid:FFF2";
    assert_int_equal(hsmca_matter_dac_build(icn, &rq, 0, serial, &der, &len),
                     HSMCA_E_DEVICE_ID_RULE); /* N8: the VID is the PAI's */
    assert_null(der);

    /* the lint names the rule and shows the subject it would make */
    assert_int_equal(hsmca_matter_dac_lint(isn, cder, clen, 0, 0, "zz", now, &lint), HSMCA_OK);
    assert_false(json_boolean_value(json_object_get(lint, "ok")));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(lint, "problems"), 0), "rule")),
                        "device-id");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(lint, "problems"), 0), "code")),
                        "dac-device-id-pattern");
    assert_null(strstr(json_string_value(json_object_get(
                           json_array_get(json_object_get(lint, "problems"), 0), "detail")),
                       "zz")); /* the detail never repeats the value */
    json_decref(lint);
    assert_int_equal(hsmca_matter_dac_lint(isn, cder, clen, 0, 0, "00000000000000C1", now, &lint),
                     HSMCA_OK);
    assert_true(json_boolean_value(json_object_get(lint, "ok")));
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(lint, "dac"), "subject")),
               "00000000000000C1"));
    json_decref(lint);
    hsmca_matter_issuer_free(isn);
    hsmca_matter_issuer_free(icn);
}

/*
 * validity.within_issuer: under a PAI that ends in 30 days a 365-day DAC is refused
 * (dac-outlives-issuer), a 10-day one issues; without it the 365-day DAC issues (Matter judges
 * the chain at the DAC's notBefore, V3/V5) and still passes the validator.
 */
static void
within_issuer_dacs(X509 *paa, struct hsmca_key *kpaa, struct hsmca_key *kpai,
                   const struct hsmca_csr *csr, time_t now)
{
    static const char pai_json[] =
        "{\"name\": \"pai-30\", \"type\": \"pai\", \"subject\": {\"common_name\": \"PAI {vid}\", "
        "\"vid\": \"required\", \"pid\": \"optional\"}, \"validity\": {\"days\": 30, "
        "\"backdate_seconds\": 60}, \"extensions\": {\"basic_constraints\": {\"critical\": true, "
        "\"ca\": true, \"path_len\": 0}, \"key_usage\": {\"critical\": true, \"usages\": "
        "[\"keyCertSign\", \"cRLSign\"]}, \"subject_key_identifier\": {\"critical\": false}, "
        "\"authority_key_identifier\": {\"critical\": false}}}";
    struct hsmca_profile ppai, p365, p10, pfree;
    struct hsmca_matter_issuer *i365 = NULL, *i10 = NULL, *ifree = NULL;
    struct hsmca_matter_dac_request rq = {csr, 0, 0, now, "00000000000000AA"};
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN], *der = NULL;
    size_t len = 0;
    X509 *pai = NULL;
    const char *sn = "{\"attribute\": \"serialNumber\", \"pattern\": \"[0-9A-F]{16}\", "
                     "\"max_length\": 16}";

    assert_int_equal(hsmca_profile_parse(pai_json, strlen(pai_json), &ppai), HSMCA_OK);
    assert_int_equal(hsmca_matter_pai_build(
                         &ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 1, 0xFFF1, 0x8000},
                         hsmca_key_public(kpai), paa, hsmca_key_private(kpaa), now, serial, &pai),
                     HSMCA_OK);
    devid_profile("DAC {vid}/{pid}", sn, "\"days\": 365, \"within_issuer\": true", &p365);
    devid_profile("DAC {vid}/{pid}", sn, "\"days\": 10, \"within_issuer\": true", &p10);
    devid_profile("DAC {vid}/{pid}", sn, "\"days\": 365", &pfree);
    assert_true(p365.within_issuer && !pfree.within_issuer);
    assert_int_equal(hsmca_matter_issuer_new(&p365, pai, paa, hsmca_key_private(kpai), &i365),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_issuer_new(&p10, pai, paa, hsmca_key_private(kpai), &i10),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_issuer_new(&pfree, pai, paa, hsmca_key_private(kpai), &ifree),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_dac_build(i365, &rq, 0, serial, &der, &len),
                     HSMCA_E_DAC_OUTLIVES_ISSUER);
    assert_null(der);
    rq.device_id = NULL; /* the template path too */
    assert_int_equal(hsmca_matter_dac_build(i365, &rq, 0, serial, &der, &len),
                     HSMCA_E_DAC_OUTLIVES_ISSUER);
    assert_null(der);
    assert_int_equal(
        hsmca_matter_dac_build(i10, &rq, HSMCA_MATTER_VERIFY_SIGNATURE, serial, &der, &len),
        HSMCA_OK);
    assert_dac_chains(der, len, pai, paa, 0x8000);
    OPENSSL_free(der);
    der = NULL;
    assert_int_equal(
        hsmca_matter_dac_build(ifree, &rq, HSMCA_MATTER_VERIFY_SIGNATURE, serial, &der, &len),
        HSMCA_OK);
    assert_dac_chains(der, len, pai, paa, 0x8000); /* it outlives its PAI: Matter allows it */
    OPENSSL_free(der);
    hsmca_matter_issuer_free(i365);
    hsmca_matter_issuer_free(i10);
    hsmca_matter_issuer_free(ifree);
    X509_free(pai);
}

static void
softhsm_paa_pai_dac_chain(void **state)
{
    struct fx_hsm hsm;
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *tpaa = NULL, *tpai = NULL;
    struct hsmca_key *kpaa = NULL, *kpai = NULL, *kpai2 = NULL;
    struct hsmca_secret pin;
    struct hsmca_profile ppaa, ppai, pdac;
    struct hsmca_matter_issuer *is = NULL, *is2 = NULL, *bad = NULL;
    struct hsmca_matter_verdict v;
    struct hsmca_matter_dac_request rq;
    struct hsmca_csr *csr = NULL, *csr_vid = NULL;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN], serial2[HSMCA_MATTER_SERIAL_LEN];
    unsigned char *der = NULL, *cder = NULL, *pder = NULL, *ask;
    size_t len = 0, clen = 0;
    X509 *paa = NULL, *pai = NULL, *pai2 = NULL, *dac = NULL, *x = NULL;
    EVP_PKEY *dev = EVP_EC_gen("P-256");
    time_t now = time(NULL);
    char dir[700], paa_path[800], pai_path[800], dac_path[800], out[4096];
    struct timespec t0, t1;
    json_t *lint = NULL;
    struct test_signer ts = {NULL, 0, HSMCA_OK};
    int i, plen;

    (void)state;
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    load_profile("matter-paa", &ppaa);
    load_profile("matter-pai", &ppai);
    load_profile("matter-dac", &pdac);
    assert_int_equal(fx_hsm_setup(&hsm), 0);
    assert_int_equal(fx_hsm_add_token(&hsm, "paa", "so-pin-1234", "user-pin-1234"), 0);
    assert_int_equal(fx_hsm_add_token(&hsm, "pai", "so-pin-1234", "user-pin-1234"), 0);
    assert_int_equal(hsmca_p11_open(fx_module(), &p11), HSMCA_OK);
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=paa", &tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=pai", &tpai), HSMCA_OK);
    pin = fx_secret("user-pin-1234");
    assert_int_equal(hsmca_token_login(tpaa, &pin), HSMCA_OK);
    assert_int_equal(hsmca_token_login(tpai, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
    assert_int_equal(
        hsmca_token_generate_key(tpaa, "paa-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &kpaa), HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(tpai, "pai-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &kpai), HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(tpai, "pai2-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &kpai2),
        HSMCA_OK);

    /* hostile CA parameters first: nothing is built */
    assert_int_equal(
        hsmca_matter_paa_build(&ppaa, &(struct hsmca_matter_ca_subject){NULL, 1, 1, 0xFFF1, 0x8000},
                               hsmca_key_private(kpaa), hsmca_key_public(kpaa), now, serial, &paa),
        HSMCA_E_MATTER_SCOPE); /* paa-pid */
    assert_int_equal(
        hsmca_matter_paa_build(&ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 0, 0xFFF1, 0},
                               hsmca_key_private(kpaa), hsmca_key_public(kpaa), now, serial, &paa),
        HSMCA_E_INVALID_ARG); /* PAI profile for a PAA */
    assert_int_equal(
        hsmca_matter_paa_build(&ppaa,
                               &(struct hsmca_matter_ca_subject){"ACME Mvid:FFF1", 1, 0, 0xFFF1, 0},
                               hsmca_key_private(kpaa), hsmca_key_public(kpaa), now, serial, &paa),
        HSMCA_E_MATTER_SCOPE); /* N8 in a CN */
    assert_null(paa);
    assert_int_equal(
        hsmca_matter_paa_build(&ppaa, &(struct hsmca_matter_ca_subject){NULL, 1, 0, 0xFFF1, 0},
                               hsmca_key_private(kpaa), hsmca_key_public(kpaa), now, serial, &paa),
        HSMCA_OK);
    assert_int_equal(hsmca_matter_check_format(paa, HSMCA_PROFILE_PAA, &v), HSMCA_OK);
    assert_int_equal(hsmca_matter_pai_build(
                         &ppai, &(struct hsmca_matter_ca_subject){NULL, 0, 1, 0, 0x8000},
                         hsmca_key_public(kpai), paa, hsmca_key_private(kpaa), now, serial, &pai),
                     HSMCA_E_MATTER_SCOPE); /* pai-vid */
    assert_int_equal(hsmca_matter_pai_build(
                         &ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 1, 0xFFF2, 0x8000},
                         hsmca_key_public(kpai), paa, hsmca_key_private(kpaa), now, serial, &pai),
                     HSMCA_E_MATTER_SCOPE); /* paa-vid */
    assert_null(pai);
    assert_int_equal(hsmca_matter_pai_build(
                         &ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 1, 0xFFF1, 0x8000},
                         hsmca_key_public(kpai), paa, hsmca_key_private(kpaa), now, serial, &pai),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_pai_build(
                         &ppai, &(struct hsmca_matter_ca_subject){"Vendor PAI", 1, 0, 0xFFF1, 0},
                         hsmca_key_public(kpai2), paa, hsmca_key_private(kpaa), now, serial, &pai2),
                     HSMCA_OK);
    /* DER-exact CA extensions (chip-cert's profile, docs/matter-rules.md "Issuance rules") */
    plen = i2d_X509(pai, &pder);
    assert_true(plen > 0 && plen <= HSMCA_MATTER_CERT_MAX);
    assert_true(has_bytes(pder, (size_t)plen, "0603551d130101ff040830060101ff020100"));
    assert_true(has_bytes(pder, (size_t)plen, "0603551d0f0101ff040403020106"));
    OPENSSL_free(pder);

    /* issuer context: the wrong token key is refused */
    assert_int_equal(hsmca_matter_issuer_new(&pdac, pai, paa, hsmca_key_private(kpaa), &bad),
                     HSMCA_E_MATTER_KEY_MISMATCH);
    assert_int_equal(hsmca_matter_issuer_new(&ppai, pai, paa, hsmca_key_private(kpai), &bad),
                     HSMCA_E_INVALID_ARG);
    assert_null(bad);
    assert_int_equal(hsmca_matter_issuer_new(&pdac, pai, paa, hsmca_key_private(kpai), &is),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_issuer_new(&pdac, pai2, paa, hsmca_key_private(kpai2), &is2),
                     HSMCA_OK);
    assert_int_equal(hsmca_matter_issuer_scope(is).pid, 0x8000);

    cder = make_csr(dev, NULL, &clen);
    assert_int_equal(hsmca_csr_parse(cder, clen, &csr), HSMCA_OK);
    OPENSSL_free(cder);
    cder = make_csr(dev, "FFF2", &clen);
    assert_int_equal(hsmca_csr_parse(cder, clen, &csr_vid), HSMCA_OK);

    /* scope refusals: nothing is signed */
    rq = (struct hsmca_matter_dac_request){csr, 1, 0x8001, now, NULL};
    assert_int_equal(hsmca_matter_dac_build(is, &rq, 0, serial, &der, &len),
                     HSMCA_E_MATTER_SCOPE); /* PID outside a PID-scoped PAI */
    rq = (struct hsmca_matter_dac_request){csr_vid, 0, 0, now, NULL};
    assert_int_equal(hsmca_matter_dac_build(is, &rq, 0, serial, &der, &len),
                     HSMCA_E_MATTER_SCOPE); /* CSR names another VID */
    rq = (struct hsmca_matter_dac_request){csr, 0, 0, now, NULL};
    assert_int_equal(hsmca_matter_dac_build(is2, &rq, 0, serial, &der, &len),
                     HSMCA_E_MATTER_SCOPE); /* PAI without PID: the request must name one */
    rq = (struct hsmca_matter_dac_request){csr, 1, 0, now, NULL};
    assert_int_equal(hsmca_matter_dac_build(is2, &rq, 0, serial, &der, &len),
                     HSMCA_E_MATTER_SCOPE); /* PID 0000 is "no PID" */
    rq = (struct hsmca_matter_dac_request){csr, 0, 0, now, NULL};
    assert_int_equal(hsmca_matter_dac_build(NULL, &rq, 0, serial, &der, &len), HSMCA_E_INVALID_ARG);
    /* C4: a compressed point passes CSR intake but cannot become a DAC key */
    {
        EVP_PKEY *cp = EVP_EC_gen("P-256");
        struct hsmca_csr *ccsr = NULL;
        unsigned char *cd;
        size_t cl = 0;

        assert_int_equal(EVP_PKEY_set_utf8_string_param(cp, "point-format", "compressed"), 1);
        cd = make_csr(cp, NULL, &cl);
        assert_int_equal(hsmca_csr_parse(cd, cl, &ccsr), HSMCA_OK);
        rq = (struct hsmca_matter_dac_request){ccsr, 0, 0, now, NULL};
        assert_int_equal(hsmca_matter_dac_build(is, &rq, 0, serial, &der, &len),
                         HSMCA_E_CSR_POINT_FORMAT);
        hsmca_csr_free(ccsr);
        OPENSSL_free(cd);
        EVP_PKEY_free(cp);
    }
    assert_null(der);

    /* lint lists EVERY broken rule and signs nothing */
    assert_int_equal(hsmca_matter_dac_lint(is, cder, clen, 1, 0x8001, NULL, now, &lint), HSMCA_OK);
    assert_false(json_boolean_value(json_object_get(lint, "ok")));
    assert_int_equal(json_array_size(json_object_get(lint, "problems")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(lint, "problems"), 0), "rule")),
                        "pai-pid-scope");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(lint, "problems"), 1), "rule")),
                        "csr-vid-scope");
    json_decref(lint);
    assert_int_equal(
        hsmca_matter_dac_lint(is, (const unsigned char *)"junk", 4, 0, 0, NULL, now, &lint),
        HSMCA_OK);
    assert_true(json_is_null(json_object_get(lint, "dac"))); /* no key, no plan */
    assert_int_equal(json_array_size(json_object_get(lint, "problems")), 1);
    json_decref(lint);
    assert_int_equal(
        hsmca_matter_dac_lint(is2, (const unsigned char *)"junk", 4, 0, 0, NULL, now, &lint),
        HSMCA_OK);
    assert_int_equal(json_array_size(json_object_get(lint, "problems")), 2); /* csr + dac-pid */
    assert_true(json_is_null(json_object_get(lint, "dac")));
    json_decref(lint);
    OPENSSL_free(cder);
    cder = make_csr(dev, "FFF1", &clen);
    assert_int_equal(hsmca_matter_dac_lint(is, cder, clen, 0, 0, NULL, now, &lint), HSMCA_OK);
    assert_true(json_boolean_value(json_object_get(lint, "ok")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(lint, "dac"), "pid")),
                        "8000");
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(lint, "dac"), "subject")),
               "hsmca Matter DAC FFF1/8000"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(lint, "dac"), "not_after")),
        "99991231235959Z");
    json_decref(lint);
    OPENSSL_free(cder);

    /* per-device subject values and a finite validity (their own issuers, same PAI) */
    cder = make_csr(dev, NULL, &clen);
    device_id_dacs(pai, paa, kpai, csr, cder, clen, now);
    within_issuer_dacs(paa, kpaa, kpai2, csr, now);
    OPENSSL_free(cder);
    cder = NULL;

    /* the real thing, with the signature re-verified */
    rq = (struct hsmca_matter_dac_request){csr, 0, 0, now, NULL};
    assert_int_equal(
        hsmca_matter_dac_build(is, &rq, HSMCA_MATTER_VERIFY_SIGNATURE, serial, &der, &len),
        HSMCA_OK);
    assert_true(len <= HSMCA_MATTER_CERT_MAX);
    assert_int_equal(hsmca_matter_cert_parse(der, len, &dac), HSMCA_OK);
    /* DER-exact DAC extensions and AKID = PAI SKID */
    assert_true(has_bytes(der, len, "0603551d130101ff04023000"));
    assert_true(has_bytes(der, len, "0603551d0f0101ff040403020780"));
    ask = NULL;
    {
        char hex[2 * 20 + 9];

        memcpy(hex, "30168014", 8);
        hsmca_hex_encode(ASN1_STRING_get0_data(X509_get0_subject_key_id(pai)), 20, hex + 8,
                         sizeof(hex) - 8);
        assert_true(has_bytes(der, len, hex));
    }
    assert_true(has_bytes(der, len, "180f39393939313233313233353935395a")); /* GeneralizedTime */
    /* serial: 16 bytes, positive, no leading zero, the one reported */
    {
        const ASN1_INTEGER *sn = X509_get0_serialNumber(dac);

        assert_int_equal(ASN1_STRING_length(sn), HSMCA_MATTER_SERIAL_LEN);
        assert_memory_equal(ASN1_STRING_get0_data(sn), serial, HSMCA_MATTER_SERIAL_LEN);
        assert_true(serial[0] != 0 && (serial[0] & 0x80) == 0);
    }
    /* the subject came from the profile, not the CSR */
    assert_null(memmem(der, len, "factory-device", 14));
    assert_int_equal(hsmca_matter_validate(dac, pai, paa,
                                           &(struct hsmca_matter_expect){1, 1, 0xFFF1, 0x8000},
                                           time(NULL), &v),
                     HSMCA_OK);
    OPENSSL_free(der);
    der = NULL;

    /* the template path through a signer (the daemon's: hsmca_key_sign_digest). One with the
     * wrong key, or one that fails, is refused and leaves the issuer signing as before. */
    ts = (struct test_signer){kpaa, 0, HSMCA_OK};
    assert_int_equal(hsmca_matter_issuer_set_signer(is, test_sign, &ts),
                     HSMCA_E_MATTER_KEY_MISMATCH);
    ts = (struct test_signer){kpai, 0, HSMCA_E_TOKEN_REMOVED};
    assert_int_equal(hsmca_matter_issuer_set_signer(is, test_sign, &ts), HSMCA_E_TOKEN_REMOVED);
    assert_int_equal(hsmca_matter_issuer_set_signer(is, NULL, &ts), HSMCA_E_INVALID_ARG);
    ts = (struct test_signer){kpai, 0, HSMCA_OK};
    assert_int_equal(hsmca_matter_dac_build(is, &rq, 0, serial, &der, &len), HSMCA_OK);
    assert_int_equal(ts.calls, 0); /* not installed */
    OPENSSL_free(der);
    der = NULL;
    assert_int_equal(hsmca_matter_issuer_set_signer(is, test_sign, &ts), HSMCA_OK);
    assert_int_equal(ts.calls, 1); /* the test signature */
    assert_int_equal(
        hsmca_matter_dac_build(is, &rq, HSMCA_MATTER_VERIFY_SIGNATURE, serial, &der, &len),
        HSMCA_OK);
    assert_int_equal(ts.calls, 2);
    assert_dac_chains(der, len, pai, paa, 0x8000);
    OPENSSL_free(der);
    der = NULL;
    ts.fail = HSMCA_E_TOKEN_REMOVED; /* a failing token: no DAC, and the documented code */
    assert_int_equal(hsmca_matter_dac_build(is, &rq, 0, serial, &der, &len), HSMCA_E_SIGN_FAILED);
    assert_null(der);
    ts.fail = HSMCA_OK;

    /* a second DAC: a fresh serial */
    assert_int_equal(hsmca_matter_dac_build(is, &rq, 0, serial2, &der, &len), HSMCA_OK);
    assert_memory_not_equal(serial, serial2, sizeof(serial));
    /* serials: 6 bytes of issue time (ms, bit 46 set) that do not go down, then 80 random bits */
    {
        uint64_t ts1 = 0, ts2 = 0, wall = (uint64_t)time(NULL) * 1000u;
        int b;

        for (b = 0; b < 6; b++) {
            ts1 = ts1 << 8 | serial[b];
            ts2 = ts2 << 8 | serial2[b];
        }
        assert_int_equal(ts1 >> 40, 0x40 | (wall >> 40));
        assert_true(ts1 <= ts2);
        assert_true((ts2 & 0x3FFFFFFFFFFFull) + 5000 >= wall &&
                    (ts2 & 0x3FFFFFFFFFFFull) <= wall + 5000);
        assert_memory_not_equal(serial + 6, serial2 + 6, HSMCA_MATTER_SERIAL_LEN - 6);
    }
    OPENSSL_free(der);
    der = NULL;
    /* the PID-less PAI issues the requested PID */
    rq = (struct hsmca_matter_dac_request){csr, 1, 0x8123, now, NULL};
    assert_int_equal(hsmca_matter_dac_build(is2, &rq, 0, serial2, &der, &len), HSMCA_OK);
    assert_dac_chains(der, len, pai2, paa, 0x8123);
    OPENSSL_free(der);
    der = NULL;

    /*
     * The template path (the default) and the full builder give the same certificate, byte for
     * byte but for the signature, for the same serial, time and key: today, in 400 days, and past
     * 2049 where notBefore becomes a GeneralizedTime (the template's UTCTime no longer fits, so
     * the full builder takes over). Each one passes the full validator, signature included.
     */
    {
        const time_t when[] = {now, now + 86400 * 400, (time_t)2524608300}; /* 2050-01-01 00:05Z */
        unsigned char s1[HSMCA_MATTER_SERIAL_LEN];

        for (i = 0; i < 3; i++) {
            unsigned char *d1 = NULL, *d2 = NULL, *tb1 = NULL, *tb2 = NULL;
            size_t l1 = 0, l2 = 0;
            X509 *x1 = NULL, *x2 = NULL;
            int n1, n2;

            rq = (struct hsmca_matter_dac_request){csr, 0, 0, when[i], NULL};
            assert_int_equal(
                hsmca_matter_dac_build(is, &rq, HSMCA_MATTER_VERIFY_SIGNATURE, s1, &d1, &l1),
                HSMCA_OK);
            assert_int_equal(
                hsmca_matter_dac_build(is, &rq, HSMCA_MATTER_FULL_BUILD | HSMCA_MATTER_SERIAL_IN,
                                       s1, &d2, &l2),
                HSMCA_OK);
            assert_int_equal(hsmca_matter_cert_parse(d1, l1, &x1), HSMCA_OK);
            assert_int_equal(hsmca_matter_cert_parse(d2, l2, &x2), HSMCA_OK);
            n1 = i2d_re_X509_tbs(x1, &tb1);
            n2 = i2d_re_X509_tbs(x2, &tb2);
            assert_true(n1 > 0 && n1 == n2);
            assert_memory_equal(tb1, tb2, (size_t)n1);
            assert_int_equal(hsmca_matter_validate(
                                 x1, pai, paa, &(struct hsmca_matter_expect){1, 1, 0xFFF1, 0x8000},
                                 when[i] + 60, &v),
                             HSMCA_OK);
            if (i == 2)
                assert_true(has_bytes(d1, l1, "180f32303530303130313030303430305a"));
            OPENSSL_free(tb1);
            OPENSSL_free(tb2);
            X509_free(x1);
            X509_free(x2);
            OPENSSL_free(d1);
            OPENSSL_free(d2);
        }
        assert_int_equal(hsmca_matter_issuer_templates(is), 1); /* the fast path ran */
        /* a serial the caller gives must keep the serial rule (positive, minimal) */
        rq = (struct hsmca_matter_dac_request){csr, 0, 0, now, NULL};
        s1[0] = 0x00;
        assert_int_equal(hsmca_matter_dac_build(is, &rq, HSMCA_MATTER_SERIAL_IN, s1, &der, &len),
                         HSMCA_E_INVALID_ARG);
        s1[0] = 0x80;
        assert_int_equal(hsmca_matter_dac_build(is, &rq, HSMCA_MATTER_SERIAL_IN, s1, &der, &len),
                         HSMCA_E_INVALID_ARG);
        assert_null(der);
        /* more PIDs than the issuer keeps templates for: every DAC is still right */
        for (i = 0; i < 12; i++) {
            uint16_t want = (uint16_t)(0x8100 + i);

            rq = (struct hsmca_matter_dac_request){csr, 1, want, now, NULL};
            assert_int_equal(hsmca_matter_dac_build(is2, &rq, 0, s1, &der, &len), HSMCA_OK);
            assert_int_equal(hsmca_matter_cert_parse(der, len, &x), HSMCA_OK);
            assert_int_equal(hsmca_matter_validate(
                                 x, pai2, paa, &(struct hsmca_matter_expect){1, 1, 0xFFF1, want},
                                 time(NULL), &v),
                             HSMCA_OK);
            X509_free(x);
            OPENSSL_free(der);
            der = NULL;
        }
        assert_int_equal(hsmca_matter_issuer_templates(is2), 8);
    }

    /* hsmca verify and openssl verify -x509_strict */
    assert_int_equal(fx_tmpdir("matter", dir, sizeof(dir)), 0);
    snprintf(paa_path, sizeof(paa_path), "%s/paa.pem", dir);
    snprintf(pai_path, sizeof(pai_path), "%s/pai.pem", dir);
    snprintf(dac_path, sizeof(dac_path), "%s/dac.pem", dir);
    write_pem(paa_path, paa);
    write_pem(pai_path, pai);
    write_pem(dac_path, dac);
    {
        char *argv[] = {"openssl",    "verify", "-x509_strict", "-CAfile", paa_path,
                        "-untrusted", pai_path, dac_path,       NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
        assert_non_null(strstr(out, ": OK"));
    }
    {
        char *argv[] = {getenv("HSMCA_BIN"),
                        "verify",
                        "--dac",
                        dac_path,
                        "--pai",
                        pai_path,
                        "--paa",
                        paa_path,
                        "--expect-vid",
                        "FFF1",
                        "--expect-pid",
                        "8000",
                        NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
        assert_non_null(strstr(out, "valid"));
        argv[11] = "8001";
        assert_int_equal(fx_run(argv, out, sizeof(out)), 1);
        assert_non_null(strstr(out, "basic-info-pid"));
        assert_non_null(strstr(out, "306"));
        argv[11] = "80012";
        assert_int_equal(fx_run(argv, out, sizeof(out)), 2);
        argv[7] = dac_path; /* the DAC as its own PAA */
        argv[11] = "8000";
        assert_int_equal(fx_run(argv, out, sizeof(out)), 1);
        assert_non_null(strstr(out, "V2"));
    }
    {
        char *argv[] = {getenv("HSMCA_BIN"), "verify", "--dac", dac_path, "--pai", pai_path, NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 2);
    }
    fx_rmtree(dir);

    /* hot path numbers: build without and with the signature re-verification */
    rq = (struct hsmca_matter_dac_request){csr, 0, 0, now, NULL};
    for (i = 0; i < 2; i++) {
        int k, n = 200;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (k = 0; k < n; k++) {
            assert_int_equal(hsmca_matter_dac_build(is, &rq, i ? HSMCA_MATTER_VERIFY_SIGNATURE : 0,
                                                    serial, &der, &len),
                             HSMCA_OK);
            OPENSSL_free(der);
            der = NULL;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("dac_build%s: %d DACs, %.1f us per DAC (one thread, SoftHSM)\n",
               i ? " + signature re-verify" : "", n, elapsed_us(&t0, &t1) / n);
    }
    /* four threads on one issuer context */
    {
        struct worker w[4];
        pthread_t th[4];
        int k;

        for (k = 0; k < 4; k++) {
            w[k] = (struct worker){is, csr, pai, paa, 50, 0};
            assert_int_equal(pthread_create(&th[k], NULL, worker_run, &w[k]), 0);
        }
        for (k = 0; k < 4; k++) {
            assert_int_equal(pthread_join(th[k], NULL), 0);
            assert_int_equal(w[k].ok, 50);
        }
    }
    /* the floor: one token signature of the same DAC (X509_sign through libp11) */
    {
        int k, n = 200;

        assert_int_equal(hsmca_matter_dac_build(is, &rq, 0, serial, &der, &len), HSMCA_OK);
        assert_int_equal(hsmca_matter_cert_parse(der, len, &x), HSMCA_OK);
        OPENSSL_free(der);
        der = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (k = 0; k < n; k++)
            assert_true(X509_sign(x, hsmca_key_private(kpai), EVP_sha256()) > 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("X509_sign alone: %.1f us per signature (token floor)\n", elapsed_us(&t0, &t1) / n);
        X509_free(x);
    }
    (void)ask;

    X509_free(dac);
    hsmca_csr_free(csr);
    hsmca_csr_free(csr_vid);
    hsmca_matter_issuer_free(is);
    hsmca_matter_issuer_free(is2);
    X509_free(pai);
    X509_free(pai2);
    X509_free(paa);
    EVP_PKEY_free(dev);
    hsmca_key_free(kpaa);
    hsmca_key_free(kpai);
    hsmca_key_free(kpai2);
    assert_int_equal(hsmca_token_logout(tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(tpai), HSMCA_OK);
    assert_int_equal(hsmca_token_free(tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_free(tpai), HSMCA_OK);
    assert_int_equal(hsmca_p11_free(p11), HSMCA_OK);
    fx_hsm_teardown(&hsm);
}

/* Serials: issue time first (positive, first byte 0x40..0x7f, rising), then 80 random bits. */
static void
serial_layout(void **state)
{
    unsigned char a[HSMCA_MATTER_SERIAL_LEN], b[HSMCA_MATTER_SERIAL_LEN];
    unsigned char c[HSMCA_MATTER_SERIAL_LEN], zero[10] = {0};
    const unsigned char t[6] = {0x40 | 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00};
    int i;

    (void)state;
    /* 1700000000000 ms = 0x018BCFE56800 */
    assert_int_equal(hsmca_matter_serial(1700000000000, a), HSMCA_OK);
    assert_int_equal(hsmca_matter_serial(1700000000000, b), HSMCA_OK);
    assert_memory_equal(a, t, 6);
    assert_memory_equal(b, t, 6);
    assert_memory_not_equal(a + 6, b + 6, 10);
    assert_memory_not_equal(a + 6, zero, 10);
    /* a millisecond later sorts after any serial of the millisecond before */
    assert_int_equal(hsmca_matter_serial(1700000000001, c), HSMCA_OK);
    assert_true(memcmp(c, a, HSMCA_MATTER_SERIAL_LEN) > 0 &&
                memcmp(c, b, HSMCA_MATTER_SERIAL_LEN) > 0);
    /* time 0 and the largest 46-bit time still give a positive serial with a non-zero first byte */
    assert_int_equal(hsmca_matter_serial(0, a), HSMCA_OK);
    assert_int_equal(a[0], 0x40);
    for (i = 1; i < 6; i++)
        assert_int_equal(a[i], 0);
    assert_int_equal(hsmca_matter_serial(0x3FFFFFFFFFFF, a), HSMCA_OK);
    assert_int_equal(a[0], 0x7f);
    assert_int_equal(hsmca_matter_serial(-1, a), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_matter_serial(0, NULL), HSMCA_E_INVALID_ARG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_refuses_what_is_not_one_certificate),
        cmocka_unit_test(vidpid_encoding_rules),
        cmocka_unit_test(serial_layout),
        cmocka_unit_test(ca_preview_is_what_the_fixed_build_makes),
        cmocka_unit_test(chip_test_chains_get_the_predicted_verdict),
        cmocka_unit_test(softhsm_paa_pai_dac_chain),
    };

    return cmocka_run_group_tests_name("matter", tests, NULL, NULL);
}
