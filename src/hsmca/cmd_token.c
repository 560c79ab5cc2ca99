/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_token.c -- `hsmca token`: show a token, generate a P-256 key inside it (sensitive, never
 * extractable), print a key's public half. For key ceremonies and for checking a deployment.
 * Never prints or stores a PIN.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "hsmca/token.h"

#include "cli.h"

void
usage_token(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca token init   [--module PATH] [--pin-file FILE] LABEL\n"
        "       hsmca token info   [--module PATH] TOKEN-URI\n"
        "       hsmca token keygen [--module PATH] [--pin-file FILE] [--derive] KEY-URI\n"
        "       hsmca token pubkey [--module PATH] KEY-URI\n"
        "\n"
        "TOKEN-URI names a token by label or serial (RFC 7512), never by slot:\n"
        "  pkcs11:token=hsmca-pai-8000\n"
        "KEY-URI also names the key by label (object=) and/or id (id=%%01%%02):\n"
        "  pkcs11:token=hsmca-pai-8000;object=pai-key\n"
        "\n"
        "keygen makes a P-256 key pair inside the token with CKA_SENSITIVE=true and\n"
        "CKA_EXTRACTABLE=false, refuses a label or id already present, and prints the public\n"
        "key as PEM. --derive also allows ECDH (approver keys). The user PIN is read from\n"
        "--pin-file (mode 600) or prompted for on the terminal.\n"
        "\n"
        "init initialises the module's free token with LABEL and the user PIN of --pin-file\n"
        "(or the prompt). Its SO PIN is 32 random bytes that hsmca wipes at once: nobody ever\n"
        "holds it, so nobody can reset the user PIN (docs/custody-so-pin.md). For audit and\n"
        "approver tokens; CA tokens are initialised by `hsmca ceremony init --init-tokens`.\n"
        "--module defaults to the URI's module-path= (pkcs11:token=T?module-path=/x.so),\n"
        "else to %s; a module-path naming another module than --module is\n"
        "refused (uri-module-mismatch). p11-kit's proxy and p11-kit-client.so work as modules.\n",
        CLI_DEFAULT_MODULE);
}

/* hsmca token init: a free token gets LABEL, the user PIN given, and a random SO PIN that no one
 * ever sees (it exists only in this process's secure memory, and is wiped). */
static int
token_init(const char *module, const char *pin_file, const char *label)
{
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *tok = NULL;
    struct hsmca_secret pin = {NULL, 0}, so = {NULL, 0};
    enum hsmca_err e;
    int rc = CLI_EXIT_FAIL;

    if (label[0] == '\0' || strlen(label) > HSMCA_TOKEN_LABEL_MAX || strchr(label, ':') != NULL) {
        fprintf(stderr, "hsmca token init: LABEL is a token label (1..%d bytes), not a URI\n",
                HSMCA_TOKEN_LABEL_MAX);
        return CLI_EXIT_USAGE;
    }
    e = cli_read_pin(pin_file, "User PIN: ", &pin);
    if (e != HSMCA_OK) {
        cli_fail("user PIN", e);
        return CLI_EXIT_FAIL;
    }
    e = hsmca_token_random_pin(HSMCA_SO_PIN_LEN, &so);
    if (e == HSMCA_OK)
        e = hsmca_p11_open(module, &p11);
    if (e == HSMCA_OK)
        e = hsmca_token_init(p11, label, &so, &pin, &tok);
    hsmca_secret_clear(&so);
    hsmca_secret_clear(&pin);
    if (e != HSMCA_OK) {
        cli_fail(label, e);
    } else {
        printf("token: %s (initialised; its SO PIN was random and is destroyed)\n", label);
        rc = CLI_EXIT_OK;
    }
    if (hsmca_token_close_all(p11, tok, NULL) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    return rc;
}

int
cmd_token(int argc, char **argv)
{
    const char *module = NULL, *pin_file = NULL, *verb, *uri;
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *tok = NULL;
    struct hsmca_key *key = NULL;
    struct hsmca_secret pin = {NULL, 0};
    struct hsmca_uri u;
    EVP_PKEY *pub = NULL;
    enum hsmca_err e;
    int derive = 0, rc = CLI_EXIT_FAIL;
    const struct cli_opt opts[] = {CLI_STR("module", 'm', &module),
                                   CLI_STR("pin-file", 'p', &pin_file),
                                   CLI_FLAG("derive", 'd', &derive), CLI_END};

    rc = cli_subcommand(argc, argv, usage_token);
    if (rc < 0)
        rc = cli_getopt("token", argc, argv, 2, opts, usage_token);
    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_FAIL;
    verb = argv[1];
    if (optind != argc - 1) {
        usage_token(stderr);
        return CLI_EXIT_USAGE;
    }
    uri = argv[optind];
    if (strcmp(verb, "init") == 0)
        return token_init(module, pin_file, uri);
    if (strcmp(verb, "info") != 0 && strcmp(verb, "keygen") != 0 && strcmp(verb, "pubkey") != 0) {
        fprintf(stderr, "hsmca token: unknown verb '%s'\n", verb);
        return CLI_EXIT_USAGE;
    }
    e = hsmca_uri_parse(uri, strlen(uri), &u);
    if (e != HSMCA_OK) {
        cli_fail(uri, e);
        return CLI_EXIT_USAGE;
    }
    /* a module-path= in the URI chooses the module when --module does not (and must agree with
     * it when it does: hsmca_token_open refuses a mismatch with uri-module-mismatch) */
    module = cli_module(module, uri, &u);
    e = hsmca_p11_open(module, &p11);
    if (e != HSMCA_OK) {
        cli_fail(module, e);
        goto out;
    }
    e = hsmca_token_open(p11, uri, &tok);
    if (e != HSMCA_OK) {
        cli_fail(uri, e);
        goto out;
    }
    if (strcmp(verb, "info") == 0) {
        struct hsmca_token_info ti;

        e = hsmca_token_info(tok, &ti);
        if (e != HSMCA_OK) {
            cli_fail("token info", e);
            goto out;
        }
        printf("label: %s\nserial: %s\nmanufacturer: %s\nmodel: %s\n"
               "user-pin: %s%s%s%s\n",
               ti.label, ti.serial, ti.manufacturer, ti.model, ti.user_pin_set ? "set" : "not set",
               ti.pin_count_low ? ", count low" : "", ti.pin_final_try ? ", final try" : "",
               ti.pin_locked ? ", LOCKED" : "");
        rc = CLI_EXIT_OK;
        goto out;
    }
    if (strcmp(verb, "pubkey") == 0) {
        e = hsmca_token_public_key(tok, uri, &pub);
        if (e != HSMCA_OK) {
            cli_fail(uri, e);
            goto out;
        }
        rc = PEM_write_PUBKEY(stdout, pub) == 1 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
        goto out;
    }
    /* keygen */
    if (!(u.have & HSMCA_URI_HAVE_OBJECT)) {
        fprintf(stderr, "hsmca token keygen: the URI must name the key: ;object=LABEL\n");
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    e = cli_read_pin(pin_file, "User PIN: ", &pin);
    if (e == HSMCA_OK)
        e = hsmca_token_login(tok, &pin);
    hsmca_secret_clear(&pin);
    if (e != HSMCA_OK) {
        cli_fail("login", e);
        goto out;
    }
    e = hsmca_token_generate_key(
        tok, u.object, (u.have & HSMCA_URI_HAVE_ID) ? u.id : NULL, u.id_len,
        derive ? HSMCA_KEY_USAGE_SIGN | HSMCA_KEY_USAGE_DERIVE : HSMCA_KEY_USAGE_SIGN, &key);
    if (e != HSMCA_OK) {
        cli_fail("keygen", e);
        goto out;
    }
    rc = PEM_write_PUBKEY(stdout, hsmca_key_public(key)) == 1 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    EVP_PKEY_free(pub);
    if (hsmca_token_close_all(p11, tok, key) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    return rc;
}
