/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_approve.c -- `hsmca approve`: the approver's side of a quorum operation, on the approver's
 * own machine with the approver's own token. Shows what is being approved, witnesses the audit
 * log (the request's checkpoint must verify and be consistent with the last one this approver
 * saw, kept in a local state file), asks for confirmation, then signs the request and re-seals the
 * approver's shares to the request's one-time key inside the token. Online: fetches the request
 * from hsmcad and submits the approval (mTLS); offline: request file in, approval file out.
 * Never prints or stores a share or a PIN.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/quorum.h"
#include "hsmca/request_view.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "cli.h"
#include "http_client.h"

void
usage_approve(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca approve --url URL --cert FILE --key FILE --cacert FILE REQUEST-ID\n"
        "         --name NAME --key-uri URI [--pin-file F] --audit-pub AUDIT.pem --state FILE\n"
        "         [--out APPROVAL-FILE] [--yes] [--module PATH]\n"
        "       hsmca approve --offline REQUEST-FILE --out APPROVAL-FILE --name NAME\n"
        "         --key-uri URI [--pin-file F] --audit-pub AUDIT.pem --state FILE [--yes]\n"
        "         [--module PATH]\n"
        "       hsmca approve --enroll --name NAME --key-uri URI [--pin-file F] [--module PATH]\n"
        "\n"
        "Online, the request is fetched from hsmcad (GET /v1/requests/ID, with your client\n"
        "certificate --cert/--key, the server checked against --cacert) and the approval is\n"
        "submitted (POST /v1/requests/ID/approvals); the answer says how many approvals the\n"
        "request has and whether it ran. Offline, the request comes from a file and the\n"
        "approval goes to --out (for `hsmca ceremony run` on an air-gapped host).\n"
        "--enroll prints the params of an approver.enroll request for a new approver: name,\n"
        "public key, token serial, and a proof of possession signed by the token.\n"
        "\n"
        "Shows the request (operation, parameters, requester, expiry, digest, and the same\n"
        "in short: VID/PID as 4 hex digits, times in ISO 8601 UTC, a window's count), checks\n"
        "the audit checkpoint it carries: signed by the audit key (--audit-pub, the PEM from\n"
        "the ceremony record or an extract's audit.pub.pem), and consistent with the last\n"
        "checkpoint this approver saw (--state; created on first use, updated before the\n"
        "approval is written). A shorter log (truncation) or another head at the same size\n"
        "(fork) is refused. Then asks for confirmation (--yes skips it), logs in to the\n"
        "approver's token (--key-uri names the approver key, e.g.\n"
        "pkcs11:token=approver-alice;object=approver-key; PIN from --pin-file, mode 600, or\n"
        "prompted), signs SHA-256(\"hsmca-approval-v1\\0\" || request) and re-seals the\n"
        "approver's share of each token to the request's one-time key, inside the token.\n"
        "--module defaults to the --key-uri's module-path=, else %s.\n"
        "REQUEST - reads standard input; --out - writes standard output.\n",
        CLI_DEFAULT_MODULE);
}

static int
confirm(void)
{
    FILE *tty = fopen("/dev/tty", "r+e");
    char line[16];
    int ok = 0;

    if (tty == NULL)
        return 0;
    fprintf(tty, "Approve this request with your token? Type 'yes': ");
    fflush(tty);
    if (fgets(line, sizeof(line), tty) != NULL)
        ok = strncmp(line, "yes", 3) == 0 && (line[3] == '\n' || line[3] == '\0');
    fclose(tty);
    return ok;
}

/*
 * Open the approver's token named by key_uri, log in with the PIN (file or prompt) and find the
 * key. ti (may be NULL) receives the token's info. 0 on success; on failure the error is printed
 * and whatever was opened is left in *p11 / *tok for the caller's cleanup.
 */
static int
open_approver_key(const char *module, const char *key_uri, const char *pin_file,
                  struct hsmca_p11 **p11, struct hsmca_token **tok, struct hsmca_key **key,
                  struct hsmca_token_info *ti)
{
    struct hsmca_secret pin = {NULL, 0};
    struct hsmca_uri u;
    enum hsmca_err e = hsmca_p11_open(cli_module(module, key_uri, &u), p11);

    if (e == HSMCA_OK)
        e = hsmca_token_open(*p11, key_uri, tok);
    if (e == HSMCA_OK && ti != NULL)
        e = hsmca_token_info(*tok, ti);
    if (e != HSMCA_OK) {
        cli_fail(key_uri, e);
        return -1;
    }
    e = cli_read_pin(pin_file, "Approver token PIN: ", &pin);
    if (e == HSMCA_OK)
        e = hsmca_token_login(*tok, &pin);
    hsmca_secret_clear(&pin);
    if (e == HSMCA_OK)
        e = hsmca_token_find_key(*tok, key_uri, key);
    if (e != HSMCA_OK) {
        cli_fail("approver token", e);
        return -1;
    }
    return 0;
}

/*
 * `hsmca approve --enroll`: what a new approver hands to the ceremony administrator for
 * approver.enroll: their name, public key, token serial and a proof of possession signed by the
 * token, as the params JSON of the request.
 */
static int
do_enroll(const char *module, const char *name, const char *key_uri, const char *pin_file)
{
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *tok = NULL;
    struct hsmca_key *key = NULL;
    struct hsmca_token_info ti;
    struct hsmca_quorum_signer signer;
    unsigned char *spki = NULL;
    char *pop = NULL, *spki_b64 = NULL;
    json_t *o = NULL;
    enum hsmca_err e;
    int n, rc = CLI_EXIT_FAIL;

    if (open_approver_key(module, key_uri, pin_file, &p11, &tok, &key, &ti) != 0)
        goto out;
    signer.name = name;
    signer.key = key;
    signer.soft = NULL;
    e = hsmca_quorum_enroll_pop(&signer, hsmca_key_public(key), ti.serial, &pop);
    if (e != HSMCA_OK) {
        cli_fail("proof of possession", e);
        goto out;
    }
    n = i2d_PUBKEY(hsmca_key_public(key), &spki);
    spki_b64 = n > 0 ? malloc(4 * (((size_t)n + 2) / 3) + 1) : NULL;
    if (spki_b64 == NULL) {
        cli_fail("public key", HSMCA_E_INTERNAL);
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)spki_b64, spki, n);
    o = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "spki", spki_b64, "token_serial", ti.serial,
                  "pop", pop);
    if (cli_print_json("params", o) != CLI_EXIT_OK)
        goto out;
    rc = CLI_EXIT_OK;
out:
    if (hsmca_token_close_all(p11, tok, key) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    OPENSSL_free(spki);
    free(pop);
    free(spki_b64);
    json_decref(o);
    return rc;
}

int
cmd_approve(int argc, char **argv)
{
    const char *req_path = NULL, *out = NULL, *name = NULL, *key_uri = NULL, *pin_file = NULL;
    const char *audit_pub_path = NULL, *state_path = NULL, *module = NULL;
    const char *url = NULL, *cert = NULL, *tls_key = NULL, *cacert = NULL, *id = NULL;
    struct http_client *http = NULL;
    struct http_client_config hc;
    struct http_response resp;
    char why[256] = "", path[128];
    unsigned char *env = NULL, *state = NULL;
    size_t env_len = 0, state_len = 0;
    char *text = NULL, *state_out = NULL, *approval = NULL;
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *tok = NULL;
    struct hsmca_key *key = NULL;
    struct hsmca_quorum_signer signer;
    EVP_PKEY *audit_pub = NULL;
    FILE *f;
    enum hsmca_err e;
    int c, yes = 0, enroll = 0, rc = CLI_EXIT_FAIL;

    const struct cli_opt opts[] = {CLI_STR("offline", 'o', &req_path),
                                   CLI_STR("out", 'O', &out),
                                   CLI_STR("name", 'n', &name),
                                   CLI_STR("key-uri", 'k', &key_uri),
                                   CLI_STR("pin-file", 'p', &pin_file),
                                   CLI_STR("audit-pub", 'a', &audit_pub_path),
                                   CLI_STR("state", 's', &state_path),
                                   CLI_FLAG("yes", 'y', &yes),
                                   CLI_STR("module", 'M', &module),
                                   CLI_STR("url", 'u', &url),
                                   CLI_STR("cert", 'c', &cert),
                                   CLI_STR("key", 'K', &tls_key),
                                   CLI_STR("cacert", 'C', &cacert),
                                   CLI_FLAG("enroll", 'E', &enroll),
                                   CLI_END};

    c = cli_getopt("approve", argc, argv, 1, opts, usage_approve);
    if (c >= 0)
        return c;
    if (enroll) {
        if (optind != argc || name == NULL || key_uri == NULL || url != NULL || req_path != NULL) {
            usage_approve(stderr);
            return CLI_EXIT_USAGE;
        }
        return do_enroll(module, name, key_uri, pin_file);
    }
    if (url != NULL && optind == argc - 1)
        id = argv[optind++];
    if (optind != argc || name == NULL || key_uri == NULL || audit_pub_path == NULL ||
        state_path == NULL || (url == NULL && (req_path == NULL || out == NULL)) ||
        (url != NULL &&
         (req_path != NULL || id == NULL || cert == NULL || tls_key == NULL || cacert == NULL))) {
        usage_approve(stderr);
        return CLI_EXIT_USAGE;
    }
    if (url != NULL) {
        size_t i, n = strlen(id);

        for (i = 0; i < n; i++) {
            if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
                break;
        }
        if (n != HSMCA_QUORUM_ID_LEN || i != n) {
            fprintf(stderr, "hsmca approve: a request id is 32 lowercase hex digits\n");
            return CLI_EXIT_USAGE;
        }
        memset(&hc, 0, sizeof(hc));
        hc.url = url;
        hc.cert = cert;
        hc.key = tls_key;
        hc.cacert = cacert;
        e = http_client_new(&hc, &http, why, sizeof(why));
        if (e == HSMCA_OK) {
            snprintf(path, sizeof(path), "/v1/requests/%s", id);
            e = http_client_request(http, "GET", path, NULL, "application/json", NULL, 0, &resp,
                                    why, sizeof(why));
        }
        if (e != HSMCA_OK) {
            fprintf(stderr, "hsmca approve: %s: %s\n", url, why);
            rc = cli_fail("fetch request", e);
            goto out;
        }
        if (resp.status != 200) {
            fprintf(stderr, "hsmca approve: GET %s: HTTP %d: %.*s\n", path, resp.status,
                    (int)(resp.body_len > 400 ? 400 : resp.body_len), (const char *)resp.body);
            goto out;
        }
        env = malloc(resp.body_len + 1);
        if (env == NULL) {
            rc = cli_fail("fetch request", HSMCA_E_NOMEM);
            goto out;
        }
        memcpy(env, resp.body, resp.body_len);
        env[resp.body_len] = '\0';
        env_len = resp.body_len;
        e = HSMCA_OK;
    } else {
        e = cli_read_input(req_path, HSMCA_QUORUM_ENVELOPE_MAX, &env, &env_len);
        if (e != HSMCA_OK)
            return cli_fail(req_path, e);
    }
    while (env_len > 0 && (env[env_len - 1] == '\n' || env[env_len - 1] == '\r'))
        env_len--;
    /* 1. what is being approved */
    e = hsmca_quorum_describe((const char *)env, env_len, &text);
    if (e != HSMCA_OK) {
        cli_fail(req_path != NULL ? req_path : id, e);
        goto out;
    }
    printf("%s", text);
    {
        /* the same in a person's terms: VID/PID in hex, times in ISO 8601 UTC, the window */
        json_t *view = NULL;
        char *vt = NULL;

        if (hsmca_request_view_envelope((const char *)env, env_len, &view) == HSMCA_OK)
            vt = hsmca_request_view_text(view);
        if (vt != NULL)
            printf("in short:\n%s", vt);
        free(vt);
        json_decref(view);
    }
    /* 2. witness the log before signing anything */
    f = fopen(audit_pub_path, "re");
    audit_pub = f != NULL ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    if (audit_pub == NULL) {
        fprintf(stderr, "hsmca approve: %s: not a PEM public key\n", audit_pub_path);
        goto out;
    }
    e = hsmca_read_file(state_path, 4096, &state, &state_len);
    if (e != HSMCA_OK && e != HSMCA_E_IO) {
        cli_fail(state_path, e);
        goto out;
    }
    if (e == HSMCA_E_IO && access(state_path, F_OK) == 0) {
        cli_fail(state_path, e); /* present but unreadable: never start over silently */
        goto out;
    }
    e = hsmca_quorum_witness((const char *)env, env_len, audit_pub, (const char *)state,
                             &state_out);
    if (e != HSMCA_OK) {
        cli_fail("audit checkpoint", e);
        goto out;
    }
    printf("checkpoint: verified with the audit key, consistent with %s\n",
           state != NULL ? "the last one you saw" : "nothing yet (first request)");
    if (cli_write_file(state_path, state_out, strlen(state_out), 1, 0666, 1) != 0) {
        cli_fail(state_path, HSMCA_E_IO);
        goto out;
    }
    /* 3. confirmation */
    fflush(stdout);
    if (!yes && !confirm()) {
        fprintf(stderr, "hsmca approve: not approved\n");
        goto out;
    }
    /* 4. sign and re-seal inside the approver's token */
    if (open_approver_key(module, key_uri, pin_file, &p11, &tok, &key, NULL) != 0)
        goto out;
    signer.name = name;
    signer.key = key;
    signer.soft = NULL;
    e = hsmca_quorum_approval_make((const char *)env, env_len, &signer, &approval);
    if (e != HSMCA_OK) {
        cli_fail("approval", e);
        goto out;
    }
    if (out != NULL) {
        if (cli_write_output(out, approval, strlen(approval), 1, 0666, 1) != 0) {
            cli_fail(out, HSMCA_E_IO);
            goto out;
        }
        printf("approval: written to %s\n", out);
    }
    if (http != NULL) {
        snprintf(path, sizeof(path), "/v1/requests/%s/approvals", id);
        e = http_client_request(http, "POST", path, "application/json", "application/json",
                                approval, strlen(approval), &resp, why, sizeof(why));
        if (e != HSMCA_OK) {
            fprintf(stderr, "hsmca approve: %s: %s\n", url, why);
            cli_fail("submit approval", e);
            goto out;
        }
        printf("server: HTTP %d %.*s\n", resp.status,
               (int)(resp.body_len > 2000 ? 2000 : resp.body_len), (const char *)resp.body);
        if (resp.status != 200)
            goto out;
    }
    rc = CLI_EXIT_OK;
out:
    if (hsmca_token_close_all(p11, tok, key) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    EVP_PKEY_free(audit_pub);
    http_client_free(http);
    free(env);
    free(state);
    free(text);
    free(state_out);
    free(approval);
    return rc;
}
