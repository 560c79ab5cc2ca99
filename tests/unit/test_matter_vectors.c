/* SPDX-License-Identifier: Apache-2.0
 *
 * test_matter_vectors.c -- walks every struct_dac_* and struct_pai_* commissioner vector under
 * tests/vectors/chip/commissioner_dut/ and requires the verdict its test_case_vector.json
 * gives (is_success_case), with VID FFF1 and the case's basic_info_pid as the device's report and
 * the PAA found among tests/vectors/chip by SKID == the PAI's AKID. Every case is counted;
 * struct_cd_* (Certification Declarations) are out of scope.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/matter.h"
#include "hsmca/util.h"

#define MAX_PAAS 512

static X509 *paas[MAX_PAAS];
static size_t npaas;

static void
load_paas(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[1024];
        unsigned char *buf = NULL;
        size_t len = 0, n = strlen(e->d_name);
        X509 *x = NULL;

        if (n < 5 || strcmp(e->d_name + n - 4, ".der") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (hsmca_read_file(path, 1 << 16, &buf, &len) != HSMCA_OK)
            continue;
        if (hsmca_matter_cert_parse(buf, len, &x) == HSMCA_OK && X509_get0_subject_key_id(x) &&
            npaas < MAX_PAAS)
            paas[npaas++] = x;
        else
            X509_free(x);
        free(buf);
    }
    closedir(d);
}

/* The PAA whose SKID is the PAI's AKID (NULL if none: "not in the trust store"). */
static X509 *
find_paa(X509 *pai)
{
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(pai);
    size_t i;

    if (akid == NULL)
        return NULL;
    for (i = 0; i < npaas; i++) {
        if (ASN1_STRING_cmp(X509_get0_subject_key_id(paas[i]), akid) == 0)
            return paas[i];
    }
    return NULL;
}

static size_t
hex_field(json_t *root, const char *field, unsigned char *der, size_t max)
{
    const char *hex = json_string_value(json_object_get(root, field));
    size_t len = 0;

    assert_non_null(hex);
    assert_int_equal(hsmca_hex_decode(hex, strlen(hex), der, max, &len), HSMCA_OK);
    return len;
}

/* The trust store's answer for this PAI (bytes of the PAA, or NULL if none or the PAI does not
 * parse). */
static const unsigned char *
paa_for(const unsigned char *pai_der, size_t pai_len, unsigned char **buf, size_t *len)
{
    X509 *pai = NULL, *paa;

    *buf = NULL;
    *len = 0;
    if (hsmca_matter_cert_parse(pai_der, pai_len, &pai) != HSMCA_OK)
        return NULL;
    paa = find_paa(pai);
    if (paa != NULL) {
        int n = i2d_X509(paa, buf);

        assert_true(n > 0);
        *len = (size_t)n;
    }
    X509_free(pai);
    return *buf;
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
every_dac_and_pai_case_gets_its_verdict(void **state)
{
    char base[1024], path[1200];
    const char *vectors = getenv("HSMCA_VECTORS_DIR");
    DIR *d;
    struct dirent *e;
    char *names[256];
    size_t nnames = 0, i, passed = 0, ok_cases = 0, expected_dirs = 0;
    time_t now = time(NULL);

    (void)state;
    assert_non_null(vectors);
    snprintf(base, sizeof(base), "%s/chip/attestation", vectors);
    load_paas(base);
    snprintf(base, sizeof(base), "%s/chip/paa-root-certs", vectors);
    load_paas(base);
    snprintf(base, sizeof(base), "%s/chip/commissioner_dut", vectors);
    assert_true(npaas > 100);
    d = opendir(base);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "struct_dac_", 11) == 0 ||
            strncmp(e->d_name, "struct_pai_", 11) == 0) {
            assert_true(nnames < 256);
            names[nnames++] = strdup(e->d_name);
            expected_dirs++;
        }
    }
    closedir(d);
    qsort(names, nnames, sizeof(names[0]), cmp_names);
    for (i = 0; i < nnames; i++) {
        json_error_t jerr;
        json_t *root;
        const char *succ;
        json_int_t pid;
        unsigned char dac[2048], pai[2048], *paa = NULL;
        size_t dac_len, pai_len, paa_len = 0;
        struct hsmca_matter_expect ex;
        struct hsmca_matter_verdict v;
        enum hsmca_err rc;
        int want, got;

        snprintf(path, sizeof(path), "%s/%s/test_case_vector.json", base, names[i]);
        root = json_load_file(path, 0, &jerr);
        assert_non_null(root);
        succ = json_string_value(json_object_get(root, "is_success_case"));
        assert_non_null(succ);
        want = strcmp(succ, "true") == 0;
        pid = json_integer_value(json_object_get(root, "basic_info_pid"));
        dac_len = hex_field(root, "dac_cert", dac, sizeof(dac));
        pai_len = hex_field(root, "pai_cert", pai, sizeof(pai));
        ex = (struct hsmca_matter_expect){1, 1, 0xFFF1, (uint16_t)pid};
        memset(&v, 0, sizeof(v));
        (void)paa_for(pai, pai_len, &paa, &paa_len);
        rc = hsmca_matter_validate_der(dac, dac_len, pai, pai_len, paa, paa_len, &ex, now, &v);
        got = rc == HSMCA_OK;
        printf("%-48s want=%-7s got=%-7s %s%s%s (chip %d) %s\n", names[i],
               want ? "valid" : "invalid", got ? "valid" : "invalid", got ? "" : v.rule,
               got ? "" : " ", got ? "" : hsmca_err_code(v.code), v.chip, got ? "" : v.detail);
        if (want == got)
            passed++;
        ok_cases += (size_t)want;
        assert_true(rc == HSMCA_OK ? v.chip == 0 : (v.chip > 0 && v.rule[0] != '\0'));
        OPENSSL_free(paa);
        json_decref(root);
        free(names[i]);
    }
    printf("commissioner vectors (struct_dac_*, struct_pai_*): %zu total, %zu passed, %zu of them "
           "success cases\n",
           nnames, passed, ok_cases);
    assert_int_equal(nnames, expected_dirs);
    assert_true(nnames >= 75);
    assert_int_equal(passed, nnames);
    for (i = 0; i < npaas; i++)
        X509_free(paas[i]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_dac_and_pai_case_gets_its_verdict),
    };

    return cmocka_run_group_tests_name("matter_vectors", tests, NULL, NULL);
}
