/* SPDX-License-Identifier: Apache-2.0
 *
 * mdl_pki.c -- test helper of tests/integration/mdl.sh (never used outside tests):
 *   mdl_pki setup DIR MODULE POLICY_JSON TOKEN...
 *     with the audit token hsmca-audit (key audit-key, PIN in DIR/audit.pin) and the CA tokens
 *     (user PIN user-pin-1234, SO PIN so-pin-1234) already made: open DIR/hsmca.db (or the
 *     store $HSMCA_TEST_STORE_SPEC names) and the audit log, and hold the quorum ceremony over
 *     the CA tokens with three software approvers (bob-approver, dave-approver, erin-approver;
 *     keys in DIR/<name>.key.pem, as `hsmca_pki approve` reads them), m = 2. The tokens' PINs
 *     are then known to nobody: every mDL CA is made by quorum.
 *   mdl_pki twin IACA.pem DS.pem KIND OUTDIR
 *     the chain as it would be with software keys, for mutations the real IACA key (in its
 *     token) cannot sign: OUTDIR/iaca.pem (the IACA's subject, validity and extensions with a new
 *     key, self-signed) and OUTDIR/ds.pem (the DS re-signed by that key), with one mutation of
 *     KIND: none, ds-eku (serverAuth instead of the mDL DS EKU), iaca-country (the IACA's subject
 *     without C; the DS then names an issuer the IACA is not), ds-validity (the DS valid 500
 *     days).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/audit.h"
#include "hsmca/quorum.h"
#include "hsmca/secret.h"
#include "hsmca/store.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "pki_common.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        enum hsmca_err rc_ = (x);                                                                  \
        if (rc_ != HSMCA_OK) {                                                                     \
            fprintf(stderr, "mdl_pki: %s: %s\n", #x, hsmca_err_code(rc_));                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define TOKENS_MAX 4

static int
setup(const char *dir, const char *module, const char *policy_path, int ntok, char **labels)
{
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *ta = NULL, *toks[TOKENS_MAX];
    struct hsmca_key *ka = NULL;
    struct hsmca_store *st = NULL;
    struct hsmca_audit *a = NULL;
    struct hsmca_quorum *q = NULL;
    struct hsmca_secret so = {NULL, 0};
    struct hsmca_quorum_token_in t[TOKENS_MAX];
    char uris[TOKENS_MAX][128];
    unsigned char *policy = NULL;
    size_t plen = 0;
    int i;

    if (ntok < 1 || ntok > TOKENS_MAX)
        return 2;
    CHECK(hsmca_secure_heap_init(0));
    CHECK(hsmca_secret_set(&so, "so-pin-1234", 11));
    CHECK(hsmca_p11_open(module, &p11));
    for (i = 0; i < ntok; i++) {
        snprintf(uris[i], sizeof(uris[i]), "pkcs11:token=%s", labels[i]);
        CHECK(hsmca_token_open(p11, uris[i], &toks[i]));
        t[i].label = labels[i];
        t[i].uri = uris[i];
        t[i].tok = toks[i];
        t[i].so_pin = &so;
    }
    CHECK(pki_store_open(dir, &st));
    if (pki_log_open(dir, p11, st, "mdl-integration-test", &ta, &ka, &a, &q) != 0)
        return 1;
    CHECK(hsmca_read_file(policy_path, 1u << 16, &policy, &plen));
    if (pki_ceremony(q, dir, t, (size_t)ntok, (const char *)policy, plen, "mdl-integration-test") !=
        0)
        return 1;
    free(policy);
    hsmca_quorum_free(q);
    CHECK(hsmca_audit_close(a));
    hsmca_store_close(st);
    hsmca_key_free(ka);
    CHECK(hsmca_token_logout(ta));
    CHECK(hsmca_token_free(ta));
    for (i = 0; i < ntok; i++)
        CHECK(hsmca_token_free(toks[i]));
    CHECK(hsmca_p11_free(p11));
    hsmca_secret_clear(&so);
    return 0;
}

static X509 *
read_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

    if (f != NULL)
        fclose(f);
    if (x == NULL) {
        fprintf(stderr, "mdl_pki: %s: not a PEM certificate\n", path);
        exit(1);
    }
    return x;
}

static void
write_pem(const char *dir, const char *name, X509 *x)
{
    char path[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL || PEM_write_X509(f, x) != 1 || fclose(f) != 0) {
        fprintf(stderr, "mdl_pki: cannot write %s\n", path);
        exit(1);
    }
}

static void
replace_ext(X509 *x, int nid, int crit, void *value)
{
    int i = X509_get_ext_by_NID(x, nid, -1);

    if (i >= 0)
        X509_EXTENSION_free(X509_delete_ext(x, i));
    if (value != NULL && X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_DEFAULT) != 1)
        exit(1);
}

/* A new subjectKeyIdentifier for x's (new) key, as the builders make it. */
static void
new_skid(X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ASN1_OCTET_STRING *o = ASN1_OCTET_STRING_new();

    if (o == NULL || X509_pubkey_digest(x, EVP_sha1(), md, &n) != 1 ||
        ASN1_OCTET_STRING_set(o, md, (int)n) != 1)
        exit(1);
    replace_ext(x, NID_subject_key_identifier, 0, o);
    ASN1_OCTET_STRING_free(o);
}

static int
twin(const char *iaca_path, const char *ds_path, const char *kind, const char *out)
{
    X509 *iaca = read_pem(iaca_path), *ds = read_pem(ds_path);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();

    if (k == NULL || akid == NULL || X509_set_pubkey(iaca, k) != 1)
        return 1;
    new_skid(iaca);
    if (strcmp(kind, "iaca-country") == 0) {
        X509_NAME *n = X509_NAME_new();

        X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)"hsmca IACA without a country", -1, -1,
                                   0);
        X509_set_subject_name(iaca, n);
        X509_set_issuer_name(iaca, n);
        X509_NAME_free(n);
    }
    if (X509_sign(iaca, k, EVP_sha256()) <= 0)
        return 1;
    akid->keyid = ASN1_OCTET_STRING_dup(X509_get0_subject_key_id(iaca));
    replace_ext(ds, NID_authority_key_identifier, 0, akid);
    if (strcmp(kind, "ds-eku") == 0) {
        EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();

        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth));
        replace_ext(ds, NID_ext_key_usage, 1, eku);
        sk_ASN1_OBJECT_free(eku);
    } else if (strcmp(kind, "ds-validity") == 0) {
        time_t nb = time(NULL) - 60;

        if (X509_time_adj_ex(X509_getm_notBefore(ds), 0, 0, &nb) == NULL ||
            X509_time_adj_ex(X509_getm_notAfter(ds), 500, 0, &nb) == NULL)
            return 1;
    } else if (strcmp(kind, "none") != 0 && strcmp(kind, "iaca-country") != 0) {
        fprintf(stderr, "mdl_pki: unknown mutation %s\n", kind);
        return 2;
    }
    if (X509_sign(ds, k, EVP_sha256()) <= 0)
        return 1;
    write_pem(out, "iaca.pem", iaca);
    write_pem(out, "ds.pem", ds);
    AUTHORITY_KEYID_free(akid);
    EVP_PKEY_free(k);
    X509_free(iaca);
    X509_free(ds);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "setup") == 0)
        return setup(argv[2], argv[3], argv[4], argc - 5, argv + 5);
    if (argc == 6 && strcmp(argv[1], "twin") == 0)
        return twin(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: mdl_pki setup DIR MODULE POLICY_JSON TOKEN...\n"
                    "       mdl_pki twin IACA.pem DS.pem KIND OUTDIR\n");
    return 2;
}
