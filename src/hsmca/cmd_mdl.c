/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_mdl.c -- `hsmca mdl`: mobile driving licences (ISO/IEC 18013-5, docs/mdl.md).
 *   verify        judge an IACA (and a DS) against Annex B, listing every broken rule
 *   profile-check load an mdl profile and say which rule it breaks
 *   issuer-auth   verify a COSE_Sign1 IssuerAuth with its DS certificate
 * Offline: reads files, touches no token and no store.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/mdl.h"
#include "hsmca/util.h"

#include "cli.h"

#define CERT_MAX 65536

void
usage_mdl(FILE *f)
{
    fprintf(
        f, "usage: hsmca mdl verify --iaca FILE [--ds FILE] [--at UNIX-SECONDS] [--json]\n"
           "       hsmca mdl profile-check FILE\n"
           "       hsmca mdl issuer-auth --cose FILE --ds FILE [--payload FILE]\n"
           "\n"
           "verify checks an IACA root certificate (and a document signer certificate it\n"
           "issued) against ISO/IEC 18013-5 Annex B and lists every broken rule, one per line\n"
           "(\"invalid: rule ds-eku (ds): ...\"; the rules are in docs/mdl.md). --at also judges\n"
           "validity at that time (default: now; 0 skips it). Files are DER or PEM, one may be -.\n"
           "profile-check loads a profile (policies/profiles/mdl-iaca.json, mdl-ds.json) and\n"
           "names the rule it breaks. issuer-auth verifies an IssuerAuth (COSE_Sign1, ES256)\n"
           "against the DS certificate; --payload gives a detached payload.\n"
           "Exit status: 0 valid, 1 invalid, 2 usage error.\n");
}

static X509 *
read_cert(const char *path)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    X509 *x = NULL;
    enum hsmca_err e = cli_read_input(path, CERT_MAX, &buf, &len);

    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca mdl: %s: %s: %s\n", path, hsmca_err_code(e), hsmca_err_title(e));
        return NULL;
    }
    x = hsmca_x509_read(buf, len);
    if (x == NULL)
        fprintf(stderr, "hsmca mdl: %s: not one DER or PEM certificate\n", path);
    free(buf);
    return x;
}

/* --at: seconds since 1970, up to the end of year 9999 */
static int
parse_at(const char *arg, void *dst)
{
    uint64_t v;

    if (hsmca_parse_u64(arg, strlen(arg), 253402300799ULL, &v) != HSMCA_OK)
        return -1;
    *(time_t *)dst = (time_t)v;
    return 0;
}

static int
mdl_verify(int argc, char **argv)
{
    const char *fi = NULL, *fd = NULL;
    X509 *iaca = NULL, *ds = NULL;
    struct hsmca_mdl_report *r = NULL;
    time_t at = time(NULL);
    int c, json = 0, rc = CLI_EXIT_USAGE;
    enum hsmca_err e;
    size_t i;
    const struct cli_opt opts[] = {
        CLI_STR("iaca", 'i', &fi), CLI_STR("ds", 'd', &fd),
        CLI_CHECK("at", 't', parse_at, &at, "--at takes seconds since 1970"),
        CLI_FLAG("json", 'j', &json), CLI_END};

    c = cli_getopt("mdl verify", argc, argv, 1, opts, usage_mdl);
    if (c >= 0)
        return c;
    if (optind != argc || fi == NULL) {
        fprintf(stderr, "hsmca mdl verify: --iaca is required\n");
        return CLI_EXIT_USAGE;
    }
    if (fd != NULL && strcmp(fi, "-") == 0 && strcmp(fd, "-") == 0) {
        fprintf(stderr, "hsmca mdl verify: only one of --iaca and --ds can be - (stdin)\n");
        return CLI_EXIT_USAGE;
    }
    rc = CLI_EXIT_FAIL;
    iaca = read_cert(fi);
    if (iaca == NULL || (fd != NULL && (ds = read_cert(fd)) == NULL))
        goto out;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        rc = cli_fail("mdl verify", HSMCA_E_NOMEM);
        goto out;
    }
    e = hsmca_mdl_check(iaca, ds, at, r);
    if (e != HSMCA_OK && e != HSMCA_E_MDL_PROFILE_VIOLATION) {
        rc = cli_fail("mdl verify", e);
        goto out;
    }
    if (json) {
        json_t *j = json_object(), *arr = json_array();

        for (i = 0; i < r->n; i++)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "cert", r->f[i].cert, "rule",
                                                 r->f[i].rule, "detail", r->f[i].detail));
        json_object_set_new(j, "valid", json_boolean(e == HSMCA_OK));
        json_object_set_new(j, "broken", arr);
        json_object_set_new(j, "code", json_string(hsmca_err_code(e)));
        rc = cli_print_json("mdl verify", j);
        json_decref(j);
        if (rc != CLI_EXIT_OK)
            goto out;
    } else if (e == HSMCA_OK) {
        printf("valid: %s accepted under ISO/IEC 18013-5 Annex B\n",
               ds != NULL ? "IACA -> DS chain" : "IACA");
    } else {
        for (i = 0; i < r->n; i++)
            printf("invalid: rule %s (%s): %s\n", r->f[i].rule, r->f[i].cert, r->f[i].detail);
        if (r->dropped > 0)
            printf("invalid: %zu more broken rules not listed\n", r->dropped);
    }
    rc = e == HSMCA_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    free(r);
    X509_free(iaca);
    X509_free(ds);
    return rc;
}

static int
mdl_profile_check(int argc, char **argv)
{
    struct hsmca_mdl_profile p;
    char why[256];
    enum hsmca_err e;

    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage_mdl(stdout);
        return CLI_EXIT_OK;
    }
    if (argc != 2) {
        fprintf(stderr, "hsmca mdl profile-check: one profile file\n");
        return CLI_EXIT_USAGE;
    }
    e = hsmca_mdl_profile_load(argv[1], &p, why, sizeof(why));
    if (e != HSMCA_OK) {
        printf("invalid: %s: %s%s%s\n", argv[1], hsmca_err_code(e), why[0] != '\0' ? ": " : "",
               why);
        return CLI_EXIT_FAIL;
    }
    printf("valid: %s profile %s (%u days)\n", p.type == HSMCA_MDL_IACA ? "IACA" : "DS", p.name,
           p.days);
    return CLI_EXIT_OK;
}

static int
mdl_issuer_auth(int argc, char **argv)
{
    const char *fc = NULL, *fd = NULL, *fp = NULL;
    unsigned char *cose = NULL, *payload = NULL;
    size_t clen = 0, plen = 0;
    X509 *ds = NULL;
    enum hsmca_err e;
    int c, rc = CLI_EXIT_FAIL;
    const struct cli_opt opts[] = {CLI_STR("cose", 'c', &fc), CLI_STR("ds", 'd', &fd),
                                   CLI_STR("payload", 'p', &fp), CLI_END};

    c = cli_getopt("mdl issuer-auth", argc, argv, 1, opts, usage_mdl);
    if (c >= 0)
        return c;
    if (optind != argc || fc == NULL || fd == NULL) {
        fprintf(stderr, "hsmca mdl issuer-auth: --cose and --ds are required\n");
        return CLI_EXIT_USAGE;
    }
    ds = read_cert(fd);
    if (ds == NULL)
        goto out;
    e = cli_read_input(fc, HSMCA_MDL_MSO_MAX * 2, &cose, &clen);
    if (e == HSMCA_OK && fp != NULL)
        e = cli_read_input(fp, HSMCA_MDL_MSO_MAX, &payload, &plen);
    if (e != HSMCA_OK) {
        rc = cli_fail("mdl issuer-auth", e);
        goto out;
    }
    e = hsmca_mdl_sign1_verify(cose, clen, payload, plen, ds);
    if (e == HSMCA_OK)
        printf("valid: IssuerAuth signed by the DS certificate\n");
    else
        printf("invalid: %s: %s\n", hsmca_err_code(e), hsmca_err_title(e));
    rc = e == HSMCA_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    free(cose);
    free(payload);
    X509_free(ds);
    return rc;
}

int
cmd_mdl(int argc, char **argv)
{
    static const struct cli_verb verbs[] = {{"verify", mdl_verify},
                                            {"profile-check", mdl_profile_check},
                                            {"issuer-auth", mdl_issuer_auth},
                                            {NULL, NULL}};

    return cli_dispatch("mdl", argc, argv, verbs, usage_mdl);
}
