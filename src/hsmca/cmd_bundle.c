/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_bundle.c -- `hsmca bundle`: the factory's offline bundles through hsmcad (docs/factory.md).
 *   create         POST /v1/cas/{ca}/bundles: N device identities sealed to a line, written as
 *                  the DER CMS envelope (openssl cms -decrypt opens it with the line's key)
 *   receipt        POST /v1/cas/{ca}/bundles/{id}/receipt with the SHA-256 of the opened
 *                  manifest.json (bundle id and CA read from it)
 *   line-register  POST /v1/lines (admin): a production line's certificate
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "hsmca/bundle.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#include "cli.h"
#include "http_client.h"
#include "response.h"

static void
print_usage(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca bundle create --url URL --ca ID --line NAME --count N --out FILE\n"
        "                           --cert FILE --key FILE --cacert FILE [--force]\n"
        "       hsmca bundle receipt --url URL --manifest FILE --cert FILE --key FILE --cacert "
        "FILE\n"
        "       hsmca bundle line-register --url URL --name NAME --line-cert FILE\n"
        "                           --cert FILE --key FILE --cacert FILE\n"
        "\n"
        "create asks hsmcad for N (1..1000) device identities for production line NAME: keys made\n"
        "for this bundle only, each DAC issued and audited, all sealed to the line's certificate\n"
        "as CMS EnvelopedData, written to --out (DER, mode 600). Open it on the line with\n"
        "  openssl cms -decrypt -inform DER -in FILE -recip line.pem -inkey line.key -binary | tar "
        "-x\n"
        "receipt acknowledges the opened bundle with the SHA-256 of its manifest.json (as the\n"
        "certificate policy's key-delivery rule asks); line-register (admin) registers a line.\n"
        "Layout of the bundle: docs/factory.md. Exit status: 0 done, 1 refused or failed, 2 "
        "usage.\n");
}

/* hsmca help bundle, --help: standard output */
void
usage_bundle(FILE *f)
{
    print_usage(f);
}

/* a usage error: standard error, exit 2 */
static int
usage_error(void)
{
    print_usage(stderr);
    return CLI_EXIT_USAGE;
}

struct args {
    struct http_client_config conn;
    const char *ca, *line, *out, *manifest, *name, *line_cert;
    long long count;
    int force;
};

static int
send(const struct args *a, const char *path, const char *body, const char *accept, int want,
     int (*ok)(const struct args *, const struct http_response *))
{
    struct http_client_config hcfg = a->conn;
    struct http_client *hc = NULL;
    struct http_response resp;
    char why[256], msg[512];
    enum hsmca_err e;
    int rc;

    hcfg.timeout_s = 300;
    why[0] = '\0';
    e = http_client_new(&hcfg, &hc, why, sizeof(why));
    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca bundle: %s\n", why);
        return cli_fail("client", e);
    }
    memset(&resp, 0, sizeof(resp));
    e = http_client_request(hc, "POST", path, "application/json", accept, body, strlen(body), &resp,
                            why, sizeof(why));
    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca bundle: %s\n", why);
        http_client_free(hc);
        return cli_fail("request", e);
    }
    if (resp.status != want) {
        cli_problem_text(resp.status, resp.content_type, resp.body, resp.body_len, msg,
                         sizeof(msg));
        fprintf(stderr, "hsmca bundle: refused: %s\n", msg);
        http_client_free(hc);
        return CLI_EXIT_FAIL;
    }
    rc = ok(a, &resp);
    http_client_free(hc);
    return rc;
}

static int
created(const struct args *a, const struct http_response *r)
{
    if (cli_write_file(a->out, r->body, r->body_len, 0, 0600, a->force) != 0) {
        perror(a->out);
        return CLI_EXIT_FAIL;
    }
    fprintf(stderr, "hsmca bundle: %zu bytes sealed to line %s written to %s\n", r->body_len,
            a->line, a->out);
    return CLI_EXIT_OK;
}

static int
printed(const struct args *a, const struct http_response *r)
{
    (void)a;
    printf("%.*s\n", (int)r->body_len, (const char *)r->body);
    return CLI_EXIT_OK;
}

/* --count: 1..HSMCA_BUNDLE_MAX */
static int
count_arg(const char *arg, void *dst)
{
    uint64_t n;

    if (hsmca_parse_u64(arg, strlen(arg), HSMCA_BUNDLE_MAX, &n) != HSMCA_OK || n == 0)
        return -1;
    *(long long *)dst = (long long)n;
    return 0;
}

int
cmd_bundle(int argc, char **argv)
{
    struct args a;
    const char *sub;
    char path[512];
    char *body = NULL;
    json_t *j = NULL;
    int rc = CLI_EXIT_USAGE;
    const struct cli_opt opts[] = {
        CLI_CONN_OPTS(&a.conn),
        CLI_STR("ca", 0, &a.ca),
        CLI_STR("line", 0, &a.line),
        CLI_CHECK("count", 0, count_arg, &a.count, "--count is 1.." CLI_NUM(HSMCA_BUNDLE_MAX)),
        CLI_STR("out", 0, &a.out),
        CLI_STR("manifest", 0, &a.manifest),
        CLI_STR("name", 0, &a.name),
        CLI_STR("line-cert", 0, &a.line_cert),
        CLI_FLAG("force", 0, &a.force),
        CLI_END};

    memset(&a, 0, sizeof(a));
    if (argc < 2)
        return usage_error();
    sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage_bundle(stdout);
        return CLI_EXIT_OK;
    }
    rc = cli_getopt("bundle", argc - 1, argv + 1, 1, opts, usage_bundle);
    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_USAGE;
    argc--;
    if (optind != argc || !CLI_CONN_GIVEN(&a.conn)) {
        return usage_error();
    }
    if (strcmp(sub, "create") == 0) {
        if (a.ca == NULL || a.line == NULL || a.count == 0 || a.out == NULL) {
            return usage_error();
        }
        j = json_pack("{s:s, s:I}", "line", a.line, "count", (json_int_t)a.count);
        body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        snprintf(path, sizeof(path), "/v1/cas/%s/bundles", a.ca);
        rc = body != NULL ? send(&a, path, body, "application/pkcs7-mime", 201, created)
                          : cli_fail("bundle", HSMCA_E_NOMEM);
    } else if (strcmp(sub, "receipt") == 0) {
        unsigned char *m = NULL, h[HSMCA_SHA256_LEN];
        unsigned int hl = 0;
        size_t ml = 0;
        char hex[HSMCA_SHA256_HEX_SIZE];
        json_t *man = NULL;
        const char *id, *ca;
        enum hsmca_err e;

        if (a.manifest == NULL) {
            return usage_error();
        }
        e = hsmca_read_file(a.manifest, 16u << 20, &m, &ml);
        if (e != HSMCA_OK)
            return cli_fail(a.manifest, e);
        man = json_loadb((const char *)m, ml, 0, NULL);
        id = json_string_value(json_object_get(man, "bundle"));
        ca = json_string_value(json_object_get(man, "ca"));
        if (id == NULL || ca == NULL || EVP_Digest(m, ml, h, &hl, EVP_sha256(), NULL) != 1) {
            fprintf(stderr, "hsmca bundle: %s is not a bundle manifest\n", a.manifest);
            json_decref(man);
            free(m);
            return CLI_EXIT_FAIL;
        }
        hsmca_hex_encode(h, HSMCA_SHA256_LEN, hex, sizeof(hex));
        snprintf(path, sizeof(path), "/v1/cas/%s/bundles/%s/receipt", ca, id);
        j = json_pack("{s:s}", "manifest_sha256", hex);
        body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        rc = body != NULL ? send(&a, path, body, "application/json", 200, printed)
                          : cli_fail("bundle", HSMCA_E_NOMEM);
        json_decref(man);
        free(m);
    } else if (strcmp(sub, "line-register") == 0) {
        unsigned char *pem = NULL;
        size_t pl = 0;
        enum hsmca_err e;

        if (a.name == NULL || a.line_cert == NULL) {
            return usage_error();
        }
        e = hsmca_read_file(a.line_cert, HSMCA_LINE_CERT_MAX * 2, &pem, &pl);
        if (e != HSMCA_OK)
            return cli_fail(a.line_cert, e);
        j = json_pack("{s:s, s:s%}", "name", a.name, "certificate", (const char *)pem, pl);
        body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        free(pem);
        rc = body != NULL ? send(&a, "/v1/lines", body, "application/json", 201, printed)
                          : cli_fail("bundle", HSMCA_E_NOMEM);
    } else {
        rc = usage_error();
    }
    json_decref(j);
    free(body);
    return rc;
}
