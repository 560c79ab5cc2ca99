/* SPDX-License-Identifier: Apache-2.0
 *
 * test_mdl.c -- mDL (ISO/IEC 18013-5): the shipped profiles load and every Annex B rule a profile
 * could break is refused with the rule named; an IACA and a DS built from them pass the chain
 * check with no finding, and mutated ones (wrong EKU, EKU not critical, missing country, validity
 * too long, DS not signed by the IACA, IACA pathLen absent) fail with the rule named; an MSO made
 * by @auth0/mdl is accepted (both forms), hostile CBOR is refused without allocation (huge counts,
 * indefinite lengths, trailing bytes, truncation); an IssuerAuth assembled from a token-style DER
 * signature verifies, and fails after one byte of its payload changes. The CA operations on
 * SoftHSM tokens and a real store and audit log: an IACA in its own token, a DS with its key in
 * another token and one from a CSR, both passing the chain check; a taken id, a DS under a DS, a
 * second revocation and the revocation of an IACA are refused; the IACA's CRL lists the revoked
 * DS and verifies against the IACA.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/mdl.h"
#include "hsmca/mdl_ca.h"
#include "hsmca/store.h"
#include "hsmca/store_mdl.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "fixture.h"

/* MobileSecurityObjectBytes written by @auth0/mdl 3.0.1 (Document.sign), signed 2026-01-01,
 * valid until 2027-01-01, docType org.iso.18013.5.1.mDL, SHA-256. */
static const char mso_hex[] =
    "d81859019da66776657273696f6e63312e306f646967657374416c676f726974686d675348412d3235366c76"
    "616c756544696765737473a1716f72672e69736f2e31383031332e352e31a30058202fdc5f93ef805b4d5a82"
    "66bfff1d93efbc136f1c438e495c8eb2e4ba67aeaee7015820fee49bb23474b11d9f080e96e256101a84b932"
    "c16719f986f8323dad2e1e130e025820b963aa5e168ff3682265272469e03e329ff6e1654284d4ceaf891e9e"
    "f0000ea66d6465766963654b6579496e666fa1696465766963654b6579a401022158205b691bc421c6ab823f"
    "42f64555b72e83917d7b4d0853f1ca86b03cc20ed5a03d225820b059bd29c8189196001fb8f5df3b1e7b205a"
    "dfba905a79ed6588b007718b0466200167646f6354797065756f72672e69736f2e31383031332e352e312e6d"
    "444c6c76616c6964697479496e666fa3667369676e6564c074323032362d30312d30315430303a30303a3030"
    "5a6976616c696446726f6dc074323032362d30312d30315430303a30303a30305a6a76616c6964556e74696c"
    "c074323032372d30312d30315430303a30303a30305a";

static unsigned char *
unhex(const char *h, size_t *len)
{
    size_t n = strlen(h) / 2;
    unsigned char *b = malloc(n);

    assert_non_null(b);
    assert_int_equal(hsmca_hex_decode(h, strlen(h), b, n, len), HSMCA_OK);
    return b;
}

static char *
slurp(const char *name, size_t *len)
{
    char path[1024];
    unsigned char *b = NULL;
    const char *src = getenv("HSMCA_SOURCE_DIR");

    assert_non_null(src);
    snprintf(path, sizeof(path), "%s/policies/profiles/%s", src, name);
    char *t;

    assert_int_equal(hsmca_read_file(path, 65536, &b, len), HSMCA_OK);
    t = calloc(1, *len + 1);
    assert_non_null(t);
    memcpy(t, b, *len);
    free(b);
    return t;
}

/* Parse the shipped profile name with one substring replaced; return the code, rule in why. */
static enum hsmca_err
mutated(const char *name, const char *from, const char *to, char *why, size_t n)
{
    size_t len = 0, fl = strlen(from), tl = strlen(to);
    char *text = slurp(name, &len), buf[8192];
    size_t off;
    struct hsmca_mdl_profile p;
    enum hsmca_err rc;

    assert_non_null(strstr(text, from));
    off = (size_t)(strstr(text, from) - text);
    assert_true(len - fl + tl < sizeof(buf));
    memcpy(buf, text, off);
    memcpy(buf + off, to, tl);
    memcpy(buf + off + tl, text + off + fl, len - off - fl);
    rc = hsmca_mdl_profile_parse(buf, len - fl + tl, &p, why, n);
    free(text);
    return rc;
}

static void
shipped_profiles_load(void **state)
{
    struct hsmca_mdl_profile iaca, ds;
    char why[256], path[1024];

    (void)state;
    snprintf(path, sizeof(path), "%s/policies/profiles/mdl-iaca.json", getenv("HSMCA_SOURCE_DIR"));
    assert_int_equal(hsmca_mdl_profile_load(path, &iaca, why, sizeof(why)), HSMCA_OK);
    snprintf(path, sizeof(path), "%s/policies/profiles/mdl-ds.json", getenv("HSMCA_SOURCE_DIR"));
    assert_int_equal(hsmca_mdl_profile_load(path, &ds, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(iaca.type, HSMCA_MDL_IACA);
    assert_int_equal(ds.type, HSMCA_MDL_DS);
    assert_int_equal(iaca.curves, HSMCA_MDL_CURVE_P256);
    assert_true(ds.days <= HSMCA_MDL_DS_MAX_DAYS);
    assert_string_equal(iaca.crl_url, "http://127.0.0.1/crl/{ca}.crl");
}

static void
profile_rules(void **state)
{
    static const struct {
        const char *file, *from, *to, *rule;
        enum hsmca_err want;
    } cases[] = {
        {"mdl-ds.json", "\"days\": 365", "\"days\": 458", "rule ds-validity", HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "\"days\": 365", "\"days\": 457", NULL, HSMCA_OK},
        {"mdl-iaca.json", "\"days\": 3650", "\"days\": 7306", "rule iaca-validity",
         HSMCA_E_PROFILE_RULE},
        {"mdl-iaca.json", "\"days\": 3650", "\"days\": 7305", NULL, HSMCA_OK},
        {"mdl-ds.json", "\"critical\": true, \"oids\"", "\"critical\": false, \"oids\"",
         "rule ds-eku", HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "[\"1.0.18013.5.1.2\"]", "[\"1.3.6.1.5.5.7.3.1\"]", "rule ds-eku",
         HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "\"extended_key_usage\"", "\"x_extended_key_usage\"", NULL,
         HSMCA_E_PROFILE_INVALID},
        {"mdl-iaca.json", "[\"keyCertSign\", \"cRLSign\"]",
         "[\"keyCertSign\", \"cRLSign\", \"digitalSignature\"]", "rule iaca-key-usage",
         HSMCA_E_PROFILE_RULE},
        {"mdl-iaca.json", "\"path_len\": 0", "\"path_len\": 1", "rule iaca-basic-constraints",
         HSMCA_E_PROFILE_RULE},
        {"mdl-iaca.json", "\"critical\": true, \"ca\"", "\"critical\": false, \"ca\"",
         "rule iaca-basic-constraints", HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "[\"digitalSignature\"]", "[\"digitalSignature\", \"keyCertSign\"]",
         "rule ds-key-usage", HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "\"key_usage\": {\"critical\": true", "\"key_usage\": {\"critical\": false",
         "rule ds-key-usage", HSMCA_E_PROFILE_RULE},
        {"mdl-iaca.json", "[\"P-256\"]", "[\"P-256\", \"secp256k1\"]", "rule iaca-curve",
         HSMCA_E_PROFILE_RULE},
        {"mdl-iaca.json", "[\"P-256\"]", "[\"P-256\", \"P-384\", \"brainpoolP256r1\"]", NULL,
         HSMCA_OK},
        {"mdl-ds.json", "{\"uri\": \"https://", "{\"uri\": \"ftp:", "rule ds-issuer-alt-name",
         HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "\"http://127.0.0.1/crl/{ca}.crl\"", "\"http://x/{id}.crl\"",
         "rule ds-crl-distribution-point", HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "\"crl_distribution_points\": {\"critical\": false}",
         "\"crl_distribution_points\": {\"critical\": true}", "rule ds-crl-distribution-point",
         HSMCA_E_PROFILE_RULE},
        {"mdl-iaca.json", "\"subject_key_identifier\": {\"critical\": false},",
         "\"subject_key_identifier\": {\"critical\": false}, \"extended_key_usage\": "
         "{\"critical\": true, \"oids\": [\"1.0.18013.5.1.2\"]},",
         "rule iaca-eku", HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "\"key_usage\"",
         "\"basic_constraints\": {\"critical\": true, \"ca\": "
         "false}, \"key_usage\"",
         "rule ds-basic-constraints", HSMCA_E_PROFILE_RULE},
        {"mdl-ds.json", "\"name\": \"mdl-ds\"", "\"name\": \"mdl-ds\", \"name\": \"x\"", NULL,
         HSMCA_E_PROFILE_INVALID},
        {"mdl-ds.json", "\"type\": \"ds\"", "\"type\": \"dac\"", NULL, HSMCA_E_PROFILE_INVALID},
    };
    size_t i;
    char why[256];

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum hsmca_err rc = mutated(cases[i].file, cases[i].from, cases[i].to, why, sizeof(why));

        if (rc != cases[i].want)
            fail_msg("case %zu: %s -> %s: got %s (%s)", i, cases[i].from, cases[i].to,
                     hsmca_err_code(rc), why);
        if (cases[i].rule != NULL && strncmp(why, cases[i].rule, strlen(cases[i].rule)) != 0)
            fail_msg("case %zu: rule %s expected, got \"%s\"", i, cases[i].rule, why);
    }
}

struct chain {
    struct hsmca_mdl_profile piaca, pds;
    EVP_PKEY *kiaca, *kds;
    X509 *iaca, *ds;
};

static void
chain_make(struct chain *c)
{
    char path[1024], why[256];
    struct hsmca_mdl_subject s = {"US", "CA", "hsmca test DMV", NULL};
    time_t now = time(NULL);

    snprintf(path, sizeof(path), "%s/policies/profiles/mdl-iaca.json", getenv("HSMCA_SOURCE_DIR"));
    assert_int_equal(hsmca_mdl_profile_load(path, &c->piaca, why, sizeof(why)), HSMCA_OK);
    snprintf(path, sizeof(path), "%s/policies/profiles/mdl-ds.json", getenv("HSMCA_SOURCE_DIR"));
    assert_int_equal(hsmca_mdl_profile_load(path, &c->pds, why, sizeof(why)), HSMCA_OK);
    c->kiaca = EVP_EC_gen("P-256");
    c->kds = EVP_EC_gen("P-256");
    assert_non_null(c->kiaca);
    assert_non_null(c->kds);
    assert_int_equal(
        hsmca_mdl_iaca_build(&c->piaca, &s, "iaca-us", c->kiaca, c->kiaca, now, &c->iaca),
        HSMCA_OK);
    assert_int_equal(
        hsmca_mdl_ds_build(&c->pds, NULL, "iaca-us", c->kds, c->iaca, c->kiaca, now, &c->ds),
        HSMCA_OK);
}

static void
chain_free(struct chain *c)
{
    X509_free(c->iaca);
    X509_free(c->ds);
    EVP_PKEY_free(c->kiaca);
    EVP_PKEY_free(c->kds);
}

static int
has_rule(const struct hsmca_mdl_report *r, const char *rule)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        if (strcmp(r->f[i].rule, rule) == 0)
            return 1;
    return 0;
}

static void
report_print(const struct hsmca_mdl_report *r)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        print_message("  %s: %s\n", r->f[i].rule, r->f[i].detail);
}

static void
built_chain_passes(void **state)
{
    struct chain c;
    struct hsmca_mdl_report r;
    struct hsmca_mdl_subject bad = {"us", NULL, NULL, NULL};
    X509 *x = NULL;
    char buf[256];
    const ASN1_OCTET_STRING *ski;

    (void)state;
    memset(&c, 0, sizeof(c));
    chain_make(&c);
    if (hsmca_mdl_check(c.iaca, c.ds, time(NULL), &r) != HSMCA_OK)
        report_print(&r);
    assert_int_equal(hsmca_mdl_check(c.iaca, c.ds, time(NULL), &r), HSMCA_OK);
    assert_int_equal(r.n, 0);
    /* what the builders wrote */
    X509_NAME_get_text_by_NID(X509_get_subject_name(c.ds), NID_countryName, buf, sizeof(buf));
    assert_string_equal(buf, "US");
    X509_NAME_get_text_by_NID(X509_get_subject_name(c.ds), NID_stateOrProvinceName, buf,
                              sizeof(buf));
    assert_string_equal(buf, "CA");
    X509_NAME_get_text_by_NID(X509_get_subject_name(c.ds), NID_commonName, buf, sizeof(buf));
    assert_string_equal(buf, "hsmca mDL Document Signer");
    ski = X509_get0_subject_key_id(c.iaca);
    assert_non_null(ski);
    assert_int_equal(X509_check_issued(c.iaca, c.ds), X509_V_OK);
    assert_int_equal(X509_EXTENSION_get_critical(
                         X509_get_ext(c.ds, X509_get_ext_by_NID(c.ds, NID_ext_key_usage, -1))),
                     1);
    /* a lower-case country is refused before anything is signed */
    assert_int_equal(
        hsmca_mdl_iaca_build(&c.piaca, &bad, "iaca-us", c.kiaca, c.kiaca, time(NULL), &x),
        HSMCA_E_INVALID_ARG);
    /* the DS profile cannot build an IACA and the other way round */
    assert_int_equal(hsmca_mdl_iaca_build(&c.pds,
                                          &(struct hsmca_mdl_subject){"US", NULL, NULL, NULL}, "i",
                                          c.kiaca, c.kiaca, time(NULL), &x),
                     HSMCA_E_INVALID_ARG);
    chain_free(&c);
}

/* Re-sign x with k after a mutation. */
static void
resign(X509 *x, EVP_PKEY *k)
{
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
}

static void
replace_ext(X509 *x, int nid, int crit, void *value)
{
    int i = X509_get_ext_by_NID(x, nid, -1);

    if (i >= 0)
        X509_EXTENSION_free(X509_delete_ext(x, i));
    if (value != NULL)
        assert_int_equal(X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_DEFAULT), 1);
}

static void
mutated_chains_fail(void **state)
{
    struct chain c;
    struct hsmca_mdl_report r;
    X509 *ds, *iaca;
    EXTENDED_KEY_USAGE *eku;
    X509_NAME *n;
    BASIC_CONSTRAINTS *bc;
    time_t far;

    (void)state;
    memset(&c, 0, sizeof(c));
    chain_make(&c);

    /* wrong EKU: serverAuth instead of the mDL DS EKU */
    ds = X509_dup(c.ds);
    eku = sk_ASN1_OBJECT_new_null();
    sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth));
    replace_ext(ds, NID_ext_key_usage, 1, eku);
    sk_ASN1_OBJECT_free(eku);
    resign(ds, c.kiaca);
    assert_int_equal(hsmca_mdl_check(c.iaca, ds, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "ds-eku"));
    assert_int_equal(r.n, 1);
    /* the right EKU, not critical */
    eku = sk_ASN1_OBJECT_new_null();
    sk_ASN1_OBJECT_push(eku, OBJ_txt2obj(HSMCA_MDL_EKU_DS, 1));
    replace_ext(ds, NID_ext_key_usage, 0, eku);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    resign(ds, c.kiaca);
    assert_int_equal(hsmca_mdl_check(c.iaca, ds, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "ds-eku"));
    /* no EKU at all */
    replace_ext(ds, NID_ext_key_usage, 0, NULL);
    resign(ds, c.kiaca);
    assert_int_equal(hsmca_mdl_check(c.iaca, ds, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "ds-eku"));
    X509_free(ds);

    /* validity too long: a DS valid for 500 days */
    ds = X509_dup(c.ds);
    far = time(NULL) + 499L * 86400;
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(ds), 0, 0, &far));
    resign(ds, c.kiaca);
    assert_int_equal(hsmca_mdl_check(c.iaca, ds, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "ds-validity"));
    assert_int_equal(r.n, 1);
    X509_free(ds);

    /* a DS signed by another key */
    ds = X509_dup(c.ds);
    resign(ds, c.kds);
    assert_int_equal(hsmca_mdl_check(c.iaca, ds, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "ds-signature"));
    X509_free(ds);

    /* missing country: an IACA whose subject has no C (its DS still has one) */
    iaca = X509_dup(c.iaca);
    n = X509_NAME_new();
    X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)"x", -1, -1,
                               0);
    X509_set_subject_name(iaca, n);
    X509_set_issuer_name(iaca, n);
    X509_NAME_free(n);
    resign(iaca, c.kiaca);
    assert_int_equal(hsmca_mdl_check(iaca, NULL, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "iaca-country"));
    assert_int_equal(r.n, 1);
    /* with the old DS: also its issuer name and signature are not the IACA's */
    assert_int_equal(hsmca_mdl_check(iaca, c.ds, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "iaca-country"));
    assert_true(has_rule(&r, "ds-issuer"));
    assert_false(has_rule(&r, "ds-state")); /* this IACA names no state */
    X509_free(iaca);

    /* an IACA whose basicConstraints lacks pathLen, and that is valid for 21 years */
    iaca = X509_dup(c.iaca);
    bc = BASIC_CONSTRAINTS_new();
    bc->ca = 0xFF;
    replace_ext(iaca, NID_basic_constraints, 1, bc);
    BASIC_CONSTRAINTS_free(bc);
    far = time(NULL) + 21L * 366 * 86400;
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(iaca), 0, 0, &far));
    resign(iaca, c.kiaca);
    assert_int_equal(hsmca_mdl_check(iaca, NULL, 0, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "iaca-basic-constraints"));
    assert_true(has_rule(&r, "iaca-validity"));
    assert_int_equal(r.n, 2);
    X509_free(iaca);

    /* the check at a time after the DS's end names ds-expired only */
    far = time(NULL) + 400L * 86400;
    assert_int_equal(hsmca_mdl_check(c.iaca, c.ds, far, &r), HSMCA_E_MDL_PROFILE_VIOLATION);
    assert_true(has_rule(&r, "ds-expired"));
    assert_int_equal(r.n, 1);
    chain_free(&c);
}

static void
mso_forms(void **state)
{
    size_t len = 0, plen = 0, plen2 = 0;
    unsigned char *mso = unhex(mso_hex, &len), *payload = NULL, *payload2 = NULL;
    struct hsmca_mdl_mso_info info;
    char why[200];

    (void)state;
    /* the tag-24 form is taken as it is */
    assert_int_equal(hsmca_mdl_mso_check(mso, len, &payload, &plen, &info, why, sizeof(why)),
                     HSMCA_OK);
    assert_int_equal(plen, len);
    assert_memory_equal(payload, mso, len);
    assert_string_equal(info.doc_type, "org.iso.18013.5.1.mDL");
    assert_string_equal(info.digest_alg, "SHA-256");
    assert_int_equal(info.signed_s, 1767225600);
    assert_int_equal(info.valid_until_s, 1798761600);
    /* the bare MSO (inside the byte string) is wrapped into the same payload */
    assert_int_equal(
        hsmca_mdl_mso_check(mso + 5, len - 5, &payload2, &plen2, &info, why, sizeof(why)),
        HSMCA_OK);
    assert_int_equal(plen2, plen);
    assert_memory_equal(payload2, payload, plen);
    free(payload2);
    payload2 = NULL;
    /* trailing byte, truncation */
    {
        unsigned char *t = malloc(len + 1);

        memcpy(t, mso, len);
        t[len] = 0x00;
        assert_int_equal(
            hsmca_mdl_mso_check(t, len + 1, &payload2, &plen2, &info, why, sizeof(why)),
            HSMCA_E_MDL_MSO_INVALID);
        assert_int_equal(
            hsmca_mdl_mso_check(t, len - 1, &payload2, &plen2, &info, why, sizeof(why)),
            HSMCA_E_MDL_MSO_INVALID);
        free(t);
    }
    free(payload);
    free(mso);
}

static void
mso_hostile(void **state)
{
    static const char *const bad[] = {
        "9bffffffffffffffff00",       /* an array of 2^64-1 items in 10 bytes */
        "bb00000000ffffffff00",       /* a map of 2^32-1 pairs */
        "9f00ff",                     /* an indefinite-length array */
        "5f4100ff",                   /* an indefinite-length byte string */
        "d8185bffffffffffffffff",     /* tag 24 of a byte string longer than everything */
        "d81843a10102",               /* tag 24 of {1: 2}: not an MSO */
        "a16776657273696f6e63312e31", /* {"version": "1.1"} */
        "c1190000",                   /* tag 1, not an MSO */
        "",
        "ff",
    };
    size_t i, len, plen;
    unsigned char *b, *payload = NULL;
    struct hsmca_mdl_mso_info info;
    char why[200];

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = strlen(bad[i]) > 0 ? unhex(bad[i], &len) : malloc(1);
        if (strlen(bad[i]) == 0)
            len = 0;
        assert_int_equal(hsmca_mdl_mso_check(b, len, &payload, &plen, &info, why, sizeof(why)),
                         HSMCA_E_MDL_MSO_INVALID);
        assert_null(payload);
        free(b);
    }
    /* too large */
    b = calloc(1, HSMCA_MDL_MSO_MAX + 1);
    assert_int_equal(
        hsmca_mdl_mso_check(b, HSMCA_MDL_MSO_MAX + 1, &payload, &plen, &info, why, sizeof(why)),
        HSMCA_E_MDL_MSO_INVALID);
    free(b);
}

static void
issuer_auth_roundtrip(void **state)
{
    struct chain c;
    size_t len = 0, plen = 0, clen = 0, siglen = 0, dlen;
    unsigned char *mso = unhex(mso_hex, &len), *payload = NULL, *cose = NULL, dgst[32], sig[80],
                  *der = NULL, *cose2 = NULL;
    struct hsmca_mdl_mso_info info;
    EVP_PKEY_CTX *ctx;
    char why[200];
    size_t clen2 = 0;

    (void)state;
    memset(&c, 0, sizeof(c));
    chain_make(&c);
    assert_int_equal(hsmca_mdl_mso_check(mso, len, &payload, &plen, &info, why, sizeof(why)),
                     HSMCA_OK);
    assert_int_equal(hsmca_mdl_tbs_digest(payload, plen, dgst), HSMCA_OK);
    ctx = EVP_PKEY_CTX_new(c.kds, NULL);
    siglen = sizeof(sig);
    assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
    assert_int_equal(EVP_PKEY_sign(ctx, sig, &siglen, dgst, sizeof(dgst)), 1);
    EVP_PKEY_CTX_free(ctx);
    dlen = (size_t)i2d_X509(c.ds, &der);
    assert_int_equal(hsmca_mdl_sign1_assemble(payload, plen, der, dlen, sig, siglen, &cose, &clen),
                     HSMCA_OK);
    /* an untagged 4-array whose protected header is {1: -7} */
    assert_int_equal(cose[0], 0x84);
    assert_int_equal(cose[1], 0x43);
    assert_int_equal(cose[2], 0xa1);
    assert_int_equal(cose[3], 0x01);
    assert_int_equal(cose[4], 0x26);
    assert_int_equal(hsmca_mdl_sign1_verify(cose, clen, NULL, 0, c.ds), HSMCA_OK);
    assert_int_equal(hsmca_mdl_sign1_verify(cose, clen, NULL, 0, c.iaca),
                     HSMCA_E_MDL_COSE_INVALID); /* not that certificate */
    /* one byte of the MSO changes: the signature no longer verifies */
    {
        unsigned char *at = memmem(cose, clen, payload + 40, 16);

        assert_non_null(at);
        at[3] ^= 0x01;
        assert_int_equal(hsmca_mdl_sign1_verify(cose, clen, NULL, 0, c.ds),
                         HSMCA_E_MDL_SIGNATURE_INVALID);
        at[3] ^= 0x01;
    }
    /* detached: payload nil, verified against the payload given apart */
    assert_int_equal(hsmca_mdl_sign1_assemble(NULL, 0, der, dlen, sig, siglen, &cose2, &clen2),
                     HSMCA_OK);
    assert_int_equal(hsmca_mdl_sign1_verify(cose2, clen2, payload, plen, c.ds), HSMCA_OK);
    assert_int_equal(hsmca_mdl_sign1_verify(cose2, clen2, NULL, 0, c.ds), HSMCA_E_MDL_COSE_INVALID);
    /* garbage and a truncated message */
    assert_int_equal(hsmca_mdl_sign1_verify(cose, clen - 1, NULL, 0, NULL),
                     HSMCA_E_MDL_COSE_INVALID);
    assert_int_equal(hsmca_mdl_sign1_verify((const unsigned char *)"\x80", 1, NULL, 0, NULL),
                     HSMCA_E_MDL_COSE_INVALID);
    /* a signature that is not DER */
    assert_int_equal(hsmca_mdl_sign1_assemble(payload, plen, der, dlen, (const unsigned char *)"x",
                                              1, &cose2, &clen2) == HSMCA_OK,
                     0);
    free(cose2);
    free(cose);
    OPENSSL_free(der);
    free(payload);
    free(mso);
    chain_free(&c);
}

static X509 *
rec_cert(const struct hsmca_mdl_ca_rec *r)
{
    const unsigned char *p = r->cert_der;
    X509 *x = d2i_X509(NULL, &p, (long)r->cert_len);

    assert_non_null(x);
    return x;
}

static void
ca_ops_in_tokens(void **state)
{
    struct fx_hsm hsm;
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *ta = NULL, *ti = NULL, *td = NULL;
    struct hsmca_key *ka = NULL;
    struct hsmca_secret pin;
    struct hsmca_store *st = NULL;
    struct hsmca_audit *a = NULL;
    struct hsmca_audit_config acfg;
    struct hsmca_mdl_profile piaca, pds;
    struct hsmca_mdl_ctx c;
    struct hsmca_mdl_ca_rec iaca, ds, ds2, got;
    struct hsmca_mdl_subject subj = {"DE", NULL, "hsmca test", "hsmca test IACA"};
    struct hsmca_mdl_report r;
    struct hsmca_crl_policy pol;
    struct hsmca_crl_rec crl;
    struct hsmca_crl_info info;
    char dir[600], db[700], path[1024], why[256];
    unsigned char *csr;
    size_t csr_len = 0;
    EVP_PKEY *dk;
    X509 *xi, *xd, *xd2;
    X509_CRL *xcrl;
    const unsigned char *p;
    int found = 0, i;

    (void)state;
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    assert_int_equal(fx_hsm_setup(&hsm), 0);
    assert_int_equal(fx_hsm_add_token(&hsm, "audit", "so-1234", "audit-1234"), 0);
    assert_int_equal(fx_hsm_add_token(&hsm, "mdl-iaca", "so-1234", "user-1234"), 0);
    assert_int_equal(fx_hsm_add_token(&hsm, "mdl-ds", "so-1234", "user-1234"), 0);
    assert_int_equal(hsmca_p11_open(fx_module(), &p11), HSMCA_OK);
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=audit", &ta), HSMCA_OK);
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=mdl-iaca", &ti), HSMCA_OK);
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=mdl-ds", &td), HSMCA_OK);
    pin = fx_secret("audit-1234");
    assert_int_equal(hsmca_token_login(ta, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
    pin = fx_secret("user-1234");
    assert_int_equal(hsmca_token_login(ti, &pin), HSMCA_OK);
    assert_int_equal(hsmca_token_login(td, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
    assert_int_equal(hsmca_token_generate_key(ta, "audit-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &ka),
                     HSMCA_OK);
    assert_int_equal(fx_tmpdir("mdl", dir, sizeof(dir)), 0);
    snprintf(db, sizeof(db), "%s/hsmca.db", dir);
    assert_int_equal(hsmca_store_open(db, &st), HSMCA_OK);
    memset(&acfg, 0, sizeof(acfg));
    acfg.store = st;
    acfg.token = ta;
    acfg.key = ka;
    acfg.origin = "hsmca/test";
    assert_int_equal(hsmca_audit_open(&acfg, &a, why, sizeof(why)), HSMCA_OK);
    snprintf(path, sizeof(path), "%s/policies/profiles/mdl-iaca.json", getenv("HSMCA_SOURCE_DIR"));
    assert_int_equal(hsmca_mdl_profile_load(path, &piaca, why, sizeof(why)), HSMCA_OK);
    snprintf(path, sizeof(path), "%s/policies/profiles/mdl-ds.json", getenv("HSMCA_SOURCE_DIR"));
    assert_int_equal(hsmca_mdl_profile_load(path, &pds, why, sizeof(why)), HSMCA_OK);
    memset(&c, 0, sizeof(c));
    c.audit = a;
    c.ro = st;
    c.iaca_profile = &piaca;
    c.ds_profile = &pds;
    c.request_id = "";
    c.now_ms = (int64_t)time(NULL) * 1000;

    assert_int_equal(hsmca_mdl_ca_create_iaca(&c, ti, "pkcs11:token=mdl-iaca", "iaca-de",
                                              "iaca-key", &subj, &iaca),
                     HSMCA_OK);
    assert_string_equal(iaca.key_uri, "pkcs11:token=mdl-iaca;object=iaca-key");
    /* the same id again */
    assert_int_equal(hsmca_mdl_ca_create_iaca(&c, ti, "pkcs11:token=mdl-iaca", "iaca-de",
                                              "iaca-key2", &subj, &got),
                     HSMCA_E_EXISTS);
    assert_int_equal(hsmca_mdl_ca_create_ds(&c, ti, "iaca-de", td, "pkcs11:token=mdl-ds", "ds-key",
                                            NULL, 0, "ds-de-1", NULL, &ds),
                     HSMCA_OK);
    dk = EVP_EC_gen("P-256");
    csr = fx_csr(dk, NULL, &csr_len);
    assert_non_null(csr);
    assert_int_equal(hsmca_mdl_ca_create_ds(&c, ti, "iaca-de", NULL, NULL, NULL, csr, csr_len,
                                            "ds-de-2", "issuing system DS", &ds2),
                     HSMCA_OK);
    assert_string_equal(ds2.key_uri, "");
    /* a DS under a DS is refused */
    assert_int_equal(hsmca_mdl_ca_create_ds(&c, ti, "ds-de-1", td, "pkcs11:token=mdl-ds", "ds-key3",
                                            NULL, 0, "ds-de-3", NULL, &got),
                     HSMCA_E_INVALID_ARG);
    xi = rec_cert(&iaca);
    xd = rec_cert(&ds);
    xd2 = rec_cert(&ds2);
    if (hsmca_mdl_check(xi, xd, time(NULL), &r) != HSMCA_OK)
        report_print(&r);
    assert_int_equal(hsmca_mdl_check(xi, xd, time(NULL), &r), HSMCA_OK);
    assert_int_equal(hsmca_mdl_check(xi, xd2, time(NULL), &r), HSMCA_OK);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(xd2), dk), 1);
    /* stored as built */
    assert_int_equal(hsmca_store_mdl_ca_get(st, "ds-de-1", &got), HSMCA_OK);
    assert_string_equal(got.parent, "iaca-de");
    assert_int_equal(got.cert_len, ds.cert_len);
    assert_memory_equal(got.cert_der, ds.cert_der, ds.cert_len);
    hsmca_mdl_ca_rec_clear(&got);

    /* revocation: once, not twice, never an IACA */
    assert_int_equal(hsmca_mdl_ca_revoke_ds(&c, "ds-de-2", 1, 0), HSMCA_OK);
    assert_int_equal(hsmca_mdl_ca_revoke_ds(&c, "ds-de-2", 1, 0), HSMCA_E_REVOKE_ALREADY);
    assert_int_equal(hsmca_mdl_ca_revoke_ds(&c, "iaca-de", -1, 0), HSMCA_E_MDL_NOT_DS);
    assert_int_equal(hsmca_mdl_ca_revoke_ds(&c, "nope", -1, 0), HSMCA_E_NOT_FOUND);
    /* the IACA's CRL lists ds-de-2 only */
    memset(&pol, 0, sizeof(pol));
    pol.next_update_s = 86400;
    memset(&crl, 0, sizeof(crl));
    assert_int_equal(hsmca_mdl_crl_sign(&c, ti, "iaca-de", &pol, &crl), HSMCA_OK);
    assert_int_equal(crl.number, 1);
    assert_int_equal(hsmca_crl_check(crl.der, crl.der_len, xi, &info), HSMCA_OK);
    assert_int_equal(info.entries, 1);
    p = crl.der;
    xcrl = d2i_X509_CRL(NULL, &p, (long)crl.der_len);
    assert_non_null(xcrl);
    for (i = 0; i < sk_X509_REVOKED_num(X509_CRL_get_REVOKED(xcrl)); i++) {
        X509_REVOKED *rv = sk_X509_REVOKED_value(X509_CRL_get_REVOKED(xcrl), i);

        found |=
            ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(rv), X509_get0_serialNumber(xd2)) == 0;
        assert_int_not_equal(
            ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(rv), X509_get0_serialNumber(xd)), 0);
    }
    assert_true(found);
    X509_CRL_free(xcrl);
    hsmca_crl_rec_clear(&crl);
    assert_int_equal(hsmca_mdl_crl_sign(&c, ti, "iaca-de", &pol, &crl), HSMCA_OK);
    assert_int_equal(crl.number, 2);
    hsmca_crl_rec_clear(&crl);

    X509_free(xi);
    X509_free(xd);
    X509_free(xd2);
    EVP_PKEY_free(dk);
    OPENSSL_free(csr);
    hsmca_mdl_ca_rec_clear(&iaca);
    hsmca_mdl_ca_rec_clear(&ds);
    hsmca_mdl_ca_rec_clear(&ds2);
    assert_int_equal(hsmca_audit_close(a), HSMCA_OK);
    hsmca_store_close(st);
    hsmca_key_free(ka);
    assert_int_equal(hsmca_token_logout(ta), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(ti), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(td), HSMCA_OK);
    assert_int_equal(hsmca_token_free(ta), HSMCA_OK);
    assert_int_equal(hsmca_token_free(ti), HSMCA_OK);
    assert_int_equal(hsmca_token_free(td), HSMCA_OK);
    assert_int_equal(hsmca_p11_free(p11), HSMCA_OK);
    fx_rmtree(dir);
    fx_hsm_teardown(&hsm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_profiles_load),
        cmocka_unit_test(profile_rules),
        cmocka_unit_test(built_chain_passes),
        cmocka_unit_test(mutated_chains_fail),
        cmocka_unit_test(mso_forms),
        cmocka_unit_test(mso_hostile),
        cmocka_unit_test(issuer_auth_roundtrip),
        cmocka_unit_test(ca_ops_in_tokens),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
