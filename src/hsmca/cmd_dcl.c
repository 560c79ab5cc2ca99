/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_dcl.c -- `hsmca dcl revocation-point` and `hsmca report` (docs/revocation.md), both
 * online through hsmcad with a client certificate.
 *   dcl revocation-point: the DCL's PKI revocation distribution point record of a CA, from its
 *     certificate and CRL policy as hsmcad knows them: the fields of the public DCL schema
 *     (PkiRevocationDistributionPoint: vid, label, issuerSubjectKeyID, pid, isPAA,
 *     crlSignerCertificate, dataURL, dataFileSize, dataDigest, dataDigestType, revocationType,
 *     schemaVersion, crlSignerDelegator), as JSON; with --dcl-response, several CAs in the shape
 *     of the DCL's all-revocation-points answer.
 *   report: the CA's issued and revoked certificates in a time range (CSV or JSON) and the
 *     audit key's detached DER ECDSA signature over it, as hsmcad signs and audits it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/limits.h"
#include "hsmca/util.h"

#include "cli.h"
#include "http_client.h"
#include "response.h"

#define DCL_CAS_MAX 16

void
usage_dcl(FILE *f)
{
    fprintf(f,
            "usage: hsmca dcl revocation-point --url URL --ca ID [--ca ID...] --cert C --key K\n"
            "                                  --cacert CA [--label L] [--data-url URL]\n"
            "                                  [--vid HEX] [--dcl-response]\n"
            "\n"
            "Print the DCL's PKI revocation distribution point record of each CA as JSON: what a\n"
            "vendor submits with `dcld tx pki add-revocation-point` (docs/revocation.md). The CRL\n"
            "signer is the CA itself (its certificate and subject key id); dataURL is the CA's\n"
            "CRL URL from policies/crl.json (or --data-url); isPAA for a PAA; pid 0 when the CA\n"
            "has none; revocationType 1 (CRL). --label defaults to the CA id (one --ca only).\n"
            "--vid gives a VID-less PAA its vendor. --dcl-response wraps the records as the DCL's\n"
            "all-revocation-points answer {\"PkiRevocationDistributionPoint\": [...]}.\n"
            "Exit status: 0 printed, 1 failure, 2 usage error.\n");
}

void
usage_report(FILE *f)
{
    fprintf(f, "usage: hsmca report --url URL --ca ID --from DATE --to DATE --cert C --key K\n"
               "                    --cacert CA --out FILE [--format csv|json] [--force]\n"
               "\n"
               "Fetch the CA's signed report of the certificates it issued or revoked between\n"
               "--from and --to (YYYY-MM-DD, UTC, inclusive days; or ms since the epoch): serial,\n"
               "VID, PID, validity, issue time, status, revocation time, reason, invalidity date.\n"
               "Writes FILE and FILE.sig, the audit key's DER ECDSA signature over FILE, which\n"
               "anyone checks with the audit public key:\n"
               "  openssl dgst -sha256 -verify audit.pub.pem -signature FILE.sig FILE\n"
               "hsmcad records the report (its range, rows and SHA-256) as a report.make audit\n"
               "entry. Exit status: 0 written, 1 failure, 2 usage error.\n");
}

static int
hex16(const char *s, unsigned *out)
{
    unsigned char b[2];
    size_t n = 0;

    if (s == NULL || strlen(s) != 4 || hsmca_hex_decode(s, 4, b, 2, &n) != HSMCA_OK || n != 2)
        return -1;
    *out = (unsigned)b[0] << 8 | b[1];
    return 0;
}

/* One CA's record from GET /v1/cas/{ca}; NULL with why on failure. */
static json_t *
rp_record(json_t *ca, const char *label, const char *data_url, int vid_override, char *why,
          size_t why_len)
{
    const char *pem = json_string_value(json_object_get(ca, "certificate"));
    const char *kind = json_string_value(json_object_get(ca, "kind"));
    const char *url = data_url != NULL
                          ? data_url
                          : json_string_value(json_object_get(json_object_get(ca, "crl"), "url"));
    const char *id = json_string_value(json_object_get(ca, "id"));
    unsigned vid = 0, pid = 0;
    int has_vid = hex16(json_string_value(json_object_get(ca, "vid")), &vid) == 0;
    const ASN1_OCTET_STRING *skid;
    char skid_hex[2 * 64 + 1];
    BIO *b;
    X509 *x;
    json_t *o = NULL;
    size_t i;

    if (pem == NULL || kind == NULL || id == NULL) {
        snprintf(why, why_len, "the CA has no certificate yet");
        return NULL;
    }
    if (url == NULL) {
        snprintf(why, why_len,
                 "%s has no CRL URL: set \"url\" in policies/crl.json or give --data-url", id);
        return NULL;
    }
    (void)hex16(json_string_value(json_object_get(ca, "pid")), &pid);
    if (vid_override >= 0) {
        vid = (unsigned)vid_override;
        has_vid = 1;
    }
    if (!has_vid) {
        snprintf(why, why_len, "%s has no VID: give --vid", id);
        return NULL;
    }
    b = BIO_new_mem_buf(pem, -1);
    x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    skid = x != NULL ? X509_get0_subject_key_id(x) : NULL;
    if (skid == NULL || ASN1_STRING_length(skid) > 64) {
        snprintf(why, why_len, "%s's certificate has no subject key id", id);
        X509_free(x);
        return NULL;
    }
    for (i = 0; i < (size_t)ASN1_STRING_length(skid); i++)
        snprintf(skid_hex + 2 * i, 3, "%02X", ASN1_STRING_get0_data(skid)[i]);
    skid_hex[2 * i] = '\0';
    X509_free(x);
    /* field names and types as the DCL answers them (uint64 as strings where its JSON does) */
    o = json_pack("{s:i, s:s, s:s, s:i, s:b, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s}", "vid",
                  (int)vid, "label", label != NULL ? label : id, "issuerSubjectKeyID", skid_hex,
                  "pid", (int)pid, "isPAA", strcmp(kind, "paa") == 0, "crlSignerCertificate", pem,
                  "dataURL", url, "dataFileSize", "0", "dataDigest", "", "dataDigestType", 0,
                  "revocationType", 1, "schemaVersion", 0, "crlSignerDelegator", "");
    if (o == NULL)
        snprintf(why, why_len, "out of memory");
    return o;
}

/* GET path: the JSON of a 200 answer, else NULL with why (the problem's text for another status) */
static json_t *
get_json(struct http_client *hc, const char *path, char *why, size_t why_len)
{
    struct http_response resp;
    json_t *j;

    if (http_client_request(hc, "GET", path, NULL, "application/json", NULL, 0, &resp, why,
                            why_len) != HSMCA_OK)
        return NULL;
    if (resp.status != 200) {
        cli_problem_text(resp.status, resp.content_type, resp.body, resp.body_len, why, why_len);
        return NULL;
    }
    j = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    if (j == NULL)
        snprintf(why, why_len, "the server's answer is not JSON");
    return j;
}

/* the --ca list of cmd_dcl */
struct ca_list {
    const char *id[DCL_CAS_MAX];
    unsigned n;
};

static int
ca_arg(const char *arg, void *dst)
{
    struct ca_list *l = dst;

    if (l->n == DCL_CAS_MAX || !hsmca_ca_id_valid(arg))
        return -1;
    l->id[l->n++] = arg;
    return 0;
}

static int
vid_arg(const char *arg, void *dst)
{
    unsigned vid;

    if (hex16(arg, &vid) != 0)
        return -1;
    *(int *)dst = (int)vid;
    return 0;
}

int
cmd_dcl(int argc, char **argv)
{
    struct http_client_config cfg;
    const char *label = NULL, *data_url = NULL;
    struct ca_list cas;
    struct http_client *hc = NULL;
    unsigned i;
    int wrap = 0, vid_override = -1, rc = CLI_EXIT_USAGE;
    json_t *arr = NULL;
    char why[512] = "", path[HSMCA_CA_ID_MAX + 16], *text = NULL;
    const struct cli_opt opts[] = {
        CLI_CONN_OPTS(&cfg),
        CLI_CHECK("ca", 0, ca_arg, &cas,
                  "--ca takes a CA id, at most " CLI_NUM(DCL_CAS_MAX) " times"),
        CLI_STR("label", 0, &label),
        CLI_STR("data-url", 0, &data_url),
        CLI_CHECK("vid", 0, vid_arg, &vid_override, "--vid takes 4 hex digits"),
        CLI_FLAG("dcl-response", 0, &wrap),
        CLI_END};

    memset(&cfg, 0, sizeof(cfg));
    memset(&cas, 0, sizeof(cas));
    rc = cli_subcommand(argc, argv, usage_dcl);
    if (rc >= 0)
        return rc;
    if (strcmp(argv[1], "revocation-point") != 0) {
        usage_dcl(stderr);
        return CLI_EXIT_USAGE;
    }
    rc = cli_getopt("dcl", argc - 1, argv + 1, 1, opts, usage_dcl);
    if (rc >= 0)
        return rc;
    argc--;
    if (optind != argc || cas.n == 0 || !CLI_CONN_GIVEN(&cfg) ||
        ((label != NULL || data_url != NULL) && cas.n > 1)) {
        fprintf(stderr, "hsmca dcl: --url, --ca, --cert, --key and --cacert are required; "
                        "--label and --data-url go with one --ca (see --help)\n");
        return CLI_EXIT_USAGE;
    }
    rc = CLI_EXIT_FAIL;
    arr = json_array();
    if (arr == NULL || http_client_new(&cfg, &hc, why, sizeof(why)) != HSMCA_OK)
        goto fail;
    for (i = 0; i < cas.n; i++) {
        json_t *ca, *rec;

        snprintf(path, sizeof(path), "/v1/cas/%s", cas.id[i]);
        ca = get_json(hc, path, why, sizeof(why));
        rec = ca != NULL ? rp_record(ca, label, data_url, vid_override, why, sizeof(why)) : NULL;
        json_decref(ca);
        if (rec == NULL)
            goto fail;
        json_array_append_new(arr, rec);
    }
    {
        json_t *top = wrap || cas.n > 1 ? json_pack("{s:O}", "PkiRevocationDistributionPoint", arr)
                                        : json_incref(json_array_get(arr, 0));

        text = top != NULL ? json_dumps(top, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(top);
    }
    if (text == NULL)
        goto fail;
    printf("%s\n", text);
    rc = CLI_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "hsmca dcl: %s\n", why[0] ? why : "failed");
out:
    free(text);
    json_decref(arr);
    http_client_free(hc);
    return rc;
}

int
cmd_report(int argc, char **argv)
{
    struct http_client_config cfg;
    const char *ca = NULL, *from = NULL, *to = NULL, *fmt = "csv", *out = NULL;
    struct http_client *hc = NULL;
    char why[512] = "", path[512], sigpath[HSMCA_PATH_MAX + 8];
    unsigned char sig[128];
    json_t *ans = NULL;
    const char *rep, *sig_b64;
    int force = 0, n, rc = CLI_EXIT_USAGE;
    size_t i;
    const struct cli_opt opts[] = {CLI_CONN_OPTS(&cfg),          CLI_STR("ca", 0, &ca),
                                   CLI_STR("from", 0, &from),    CLI_STR("to", 0, &to),
                                   CLI_STR("format", 0, &fmt),   CLI_STR("out", 0, &out),
                                   CLI_FLAG("force", 0, &force), CLI_END};

    memset(&cfg, 0, sizeof(cfg));
    rc = cli_getopt("report", argc, argv, 1, opts, usage_report);
    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_USAGE;
    if (optind != argc || !CLI_CONN_GIVEN(&cfg) || ca == NULL || from == NULL || to == NULL ||
        out == NULL || strlen(out) > HSMCA_PATH_MAX || !hsmca_ca_id_valid(ca) ||
        (strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0)) {
        fprintf(stderr, "hsmca report: --url, --ca, --from, --to, --cert, --key, --cacert and "
                        "--out are required; --format is csv or json (see --help)\n");
        return CLI_EXIT_USAGE;
    }
    for (i = 0; from[i] != '\0' || to[i] != '\0'; i++) {
        char f = from[i], t = to[i];

        if ((f != '\0' && !((f >= '0' && f <= '9') || f == '-')) ||
            (t != '\0' && !((t >= '0' && t <= '9') || t == '-'))) {
            fprintf(stderr, "hsmca report: --from and --to are YYYY-MM-DD or ms\n");
            return CLI_EXIT_USAGE;
        }
        if (f == '\0' || t == '\0')
            break;
    }
    rc = CLI_EXIT_FAIL;
    n = snprintf(path, sizeof(path), "/v1/cas/%s/report?from=%s&to=%s&format=%s", ca, from, to,
                 fmt);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        fprintf(stderr, "hsmca report: --from/--to too long\n");
        return CLI_EXIT_USAGE;
    }
    if (http_client_new(&cfg, &hc, why, sizeof(why)) != HSMCA_OK)
        goto fail;
    ans = get_json(hc, path, why, sizeof(why));
    if (ans == NULL)
        goto fail;
    rep = json_string_value(json_object_get(ans, "report"));
    sig_b64 = json_string_value(json_object_get(ans, "signature"));
    n = sig_b64 != NULL && strlen(sig_b64) <= 4 * sizeof(sig) / 3
            ? EVP_DecodeBlock(sig, (const unsigned char *)sig_b64, (int)strlen(sig_b64))
            : -1;
    if (rep == NULL || n <= 0) {
        snprintf(why, sizeof(why), "the server's answer has no report or signature");
        goto fail;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes: the DER length is in the DER */
    if (n >= 2 && sig[0] == 0x30 && sig[1] < 0x80 && (size_t)sig[1] + 2 <= (size_t)n)
        n = sig[1] + 2;
    snprintf(sigpath, sizeof(sigpath), "%s.sig", out);
    if (cli_write_file(out, rep, json_string_length(json_object_get(ans, "report")), 0, 0644,
                       force) != 0 ||
        cli_write_file(sigpath, sig, (size_t)n, 0, 0644, force) != 0) {
        snprintf(why, sizeof(why), "cannot write %.200s or its .sig (exists? use --force)", out);
        goto fail;
    }
    fprintf(stderr,
            "hsmca report: %s: %lld rows, SHA-256 %s; signature %s\n"
            "check: openssl dgst -sha256 -verify AUDIT.pub.pem -signature %s %s\n",
            out, (long long)json_integer_value(json_object_get(ans, "rows")),
            json_string_value(json_object_get(ans, "sha256")), sigpath, sigpath, out);
    rc = CLI_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "hsmca report: %s\n", why[0] ? why : "failed");
out:
    json_decref(ans);
    http_client_free(hc);
    return rc;
}
