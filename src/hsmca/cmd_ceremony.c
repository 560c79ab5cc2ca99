/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_ceremony.c -- `hsmca ceremony`: the key ceremonies run on the CA host, often air-gapped.
 * init sets a random user PIN on each CA token (with the SO PIN), splits and seals it to the
 * approvers, leaves each CA token an SO PIN nobody knows (random, then wiped) and writes the
 * genesis of the audit log; run makes one quorum request, writes it as a
 * file for the approvers, waits for their approval files and executes it. The one-time request key
 * lives only in this process. Never prints, logs or stores a PIN or a share.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/ca.h"
#include "hsmca/csr.h"
#include "hsmca/custody.h"
#include "hsmca/matter.h"
#include "hsmca/mdl.h"
#include "hsmca/profile.h"
#include "hsmca/quorum.h"
#include "hsmca/sizes.h"
#include "hsmca/softhsm_guard.h"
#include "hsmca/store_audit.h"
#include "hsmca/store_certs.h"
#include "hsmca/util.h"

#include "batch_dir.h"
#include "cli.h"

#define MAX_TOKENS HSMCA_QUORUM_TOKENS_MAX
#define MAX_APPROVERS HSMCA_QUORUM_APPROVERS_MAX

void
usage_ceremony(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca ceremony init --store DB --audit-token URI [--audit-pin-file F]\n"
        "         --token URI [--token URI ...] [--init-tokens | --so-pin-file F]\n"
        "         --approver NAME=PUBKEY.pem[:SERIAL] [--approver ...] --m M\n"
        "         [--policy policies/quorum.json] [--id CEREMONY-ID] [--module PATH]\n"
        "       hsmca ceremony run --store DB --audit-token URI [--audit-pin-file F]\n"
        "         --op OP --params JSON --requester NAME --out-request FILE --approvals-dir DIR\n"
        "         [--wait SECONDS] [--ttl SECONDS] [--profiles DIR] [--out-cert FILE]\n"
        "         [--csr FILE --out-dac FILE] [--module PATH]\n"
        "\n"
        "init: the initial key ceremony. Each --token is a CA token the HSM administrator\n"
        "initialised (label and SO PIN); hsmca sets a random 32-byte user PIN on it with the SO\n"
        "PIN, splits it M-of-N (Shamir) and seals each share to one approver's public key (from\n"
        "`hsmca token pubkey` on the approver's token). Then it replaces the SO PIN with 32\n"
        "random bytes it wipes: the administrator's SO PIN stops working, and nobody can reset\n"
        "the user PIN around the quorum (docs/custody-so-pin.md). With --init-tokens the\n"
        "tokens do not exist yet: hsmca initialises each (label from the URI) with a random SO\n"
        "PIN that only this process ever holds. Nothing secret is written anywhere: no\n"
        "person and no file ever holds a CA token's PIN. The audit log starts here (genesis);\n"
        "the genesis and checkpoint hashes printed at the end go into the ceremony record.\n"
        "The audit key (object audit-key in the audit token) is generated if absent.\n"
        "\n"
        "run: one quorum operation offline. Writes the request (with the approvers' sealed\n"
        "shares) to --out-request, then waits up to --wait seconds (default 600) for approval\n"
        "files (*.json) in --approvals-dir, made by `hsmca approve --offline`. Each is checked\n"
        "and recorded; with enough valid approvals the operation runs and its result (e.g. the\n"
        "new certificate, PEM) is printed and written to --out-cert. OP is one of\n"
        "ca.create_paa, ca.create_pai, ca.activate, approver.enroll, approver.remove,\n"
        "policy.update, ca.revoke, crl.sign, or an mDL operation (mdl.create_iaca,\n"
        "mdl.create_ds, mdl.revoke, mdl.crl_sign; docs/mdl.md; mdl.activate only through\n"
        "hsmcad, which holds the window). Offline, ca.activate opens the PAI's window just long "
        "enough to issue\n"
        "one test DAC for --csr (written to --out-dac, checked like `hsmca verify`), then\n"
        "deactivates it; production windows are held by the daemon.\n"
        "PINs are read from the files given (mode 600) or prompted for.\n"
        "--module defaults to the --audit-token URI's module-path=, else %s;\n"
        "--profiles to policies/profiles. --csr - reads standard input; --out-request,\n"
        "--out-cert and --out-dac take - for standard output.\n",
        CLI_DEFAULT_MODULE);
}

struct session {
    struct hsmca_guard guard; /* SoftHSM token files (softhsm_guard.h, docs/custody.md) */
    struct hsmca_p11 *p11;
    struct hsmca_token *audit_tok;
    struct hsmca_key *audit_key;
    struct hsmca_store *st;
    struct hsmca_audit *a;
    struct hsmca_quorum *q;
    /* init: the CA tokens it sets up */
    struct hsmca_token *tok[MAX_TOKENS];
    char label[MAX_TOKENS][HSMCA_TOKEN_LABEL_MAX + 1];
    size_t ntok;
    /* run: the CA registry (ca.h), as hsmcad's, and for ca.activate the issuance engine that
     * issues the test DAC */
    struct hsmca_ca_registry *cas;
    struct hsmca_store *ro; /* the registry's read handle */
    struct hsmca_issuer *issuer;
    struct hsmca_profile dac_profile;
    const char *out_cert;
};

struct common {
    const char *module, *store, *audit_uri, *audit_pin_file;
};

/* The options init and run share: --module --store --audit-token --audit-pin-file. */
#define COMMON_OPTS(cm)                                                                            \
    CLI_STR("module", 'M', &(cm)->module), CLI_STR("store", 's', &(cm)->store),                    \
        CLI_STR("audit-token", 'a', &(cm)->audit_uri),                                             \
        CLI_STR("audit-pin-file", 'A', &(cm)->audit_pin_file)

/* Open the module, the audit token (logged in) and key, the store and the audit log. */
static int
session_open(struct session *s, const struct common *c, int create_key, const char *genesis)
{
    struct hsmca_secret pin = {NULL, 0};
    struct hsmca_audit_config acfg;
    struct hsmca_quorum_config qcfg;
    char why[256] = "";
    enum hsmca_err e;

    struct hsmca_uri u;
    const char *module = cli_module(c->module, c->audit_uri, &u);

    memset(s, 0, sizeof(*s));
    {
        /* as hsmcad does: token files a crash emptied come back, and each rewrite is copied */
        /* (a PostgreSQL store has no directory: the copies go beside the current one) */
        e = c->store != NULL
                ? hsmca_guard_init_beside(
                      &s->guard, hsmca_store_spec_is_pg(c->store) ? "./hsmcad.pg" : c->store)
                : HSMCA_E_NOT_FOUND;
        if (e == HSMCA_OK)
            e = hsmca_guard_restore(&s->guard, NULL, NULL);
        else if (e == HSMCA_E_NOT_FOUND)
            s->guard.backup_dir[0] = '\0';
        if (e != HSMCA_OK && e != HSMCA_E_NOT_FOUND)
            return cli_fail("softhsm-backup/ beside the store", e);
    }
    e = hsmca_p11_open(module, &s->p11);
    if (e != HSMCA_OK)
        return cli_fail(module, e);
    if (s->guard.backup_dir[0] != '\0')
        hsmca_p11_set_before_write(s->p11, hsmca_guard_before_write, &s->guard);
    e = hsmca_token_open(s->p11, c->audit_uri, &s->audit_tok);
    if (e != HSMCA_OK)
        return cli_fail(c->audit_uri, e);
    e = cli_read_pin(c->audit_pin_file, "Audit token user PIN: ", &pin);
    if (e == HSMCA_OK)
        e = hsmca_token_login(s->audit_tok, &pin);
    hsmca_secret_clear(&pin);
    if (e != HSMCA_OK)
        return cli_fail("audit token login", e);
    e = hsmca_token_find_key(s->audit_tok, "pkcs11:object=audit-key", &s->audit_key);
    if (e == HSMCA_E_KEY_NOT_FOUND && create_key)
        e = hsmca_token_generate_key(s->audit_tok, "audit-key", NULL, 0, HSMCA_KEY_USAGE_SIGN,
                                     &s->audit_key);
    if (e != HSMCA_OK)
        return cli_fail("audit key", e);
    e = hsmca_store_open(c->store, &s->st);
    if (e != HSMCA_OK)
        return cli_fail(c->store, e);
    memset(&acfg, 0, sizeof(acfg));
    acfg.store = s->st;
    acfg.token = s->audit_tok;
    acfg.key = s->audit_key;
    acfg.origin = "hsmca";
    acfg.genesis_detail_json = genesis;
    acfg.reconcile = hsmca_custody_reconcile;
    e = hsmca_audit_open(&acfg, &s->a, why, sizeof(why));
    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca: audit log: %s\n", why);
        return cli_fail("audit open", e);
    }
    memset(&qcfg, 0, sizeof(qcfg));
    qcfg.store = s->st;
    qcfg.audit = s->a;
    e = hsmca_quorum_open(&qcfg, &s->q);
    if (e != HSMCA_OK)
        return cli_fail("quorum", e);
    return CLI_EXIT_OK;
}

/* Close in order: quorum, windows, issuer, audit (final checkpoint), store, tokens, module. */
static int
session_close(struct session *s)
{
    int rc = CLI_EXIT_OK;
    size_t i;

    hsmca_quorum_free(s->q);
    hsmca_ca_registry_stop(s->cas, "stop"); /* a window left open is closed, audited */
    hsmca_issuer_free(s->issuer);
    if (s->a != NULL && hsmca_audit_close(s->a) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    hsmca_store_close(s->ro);
    hsmca_store_close(s->st);
    hsmca_key_free(s->audit_key);
    if (hsmca_ca_registry_free(s->cas) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    for (i = 0; i < s->ntok; i++) {
        if (hsmca_token_logout(s->tok[i]) != HSMCA_OK || hsmca_token_free(s->tok[i]) != HSMCA_OK)
            rc = CLI_EXIT_FAIL;
    }
    if (s->audit_tok != NULL && (hsmca_token_logout(s->audit_tok) != HSMCA_OK ||
                                 hsmca_token_free(s->audit_tok) != HSMCA_OK))
        rc = CLI_EXIT_FAIL;
    if (hsmca_p11_free(s->p11) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    return rc;
}

/* Print the head of the log and a fresh signed checkpoint: what goes on the paper record. */
static void
print_record(struct session *s)
{
    struct hsmca_audit_checkpoint cp;
    unsigned char h[HSMCA_SHA256_LEN];
    char hex[HSMCA_SHA256_HEX_SIZE], *line = NULL;
    size_t len = 0;

    memset(&cp, 0, sizeof(cp));
    if (hsmca_store_audit_get(s->st, 1, &line, &len, h) == HSMCA_OK) {
        hsmca_hex_encode(h, HSMCA_SHA256_LEN, hex, sizeof(hex));
        printf("genesis-sha256: %s\n", hex);
    }
    free(line);
    if (hsmca_audit_checkpoint(s->a, &cp) == HSMCA_OK) {
        hsmca_hex_encode(cp.hash, HSMCA_SHA256_LEN, hex, sizeof(hex));
        printf("log-size: %llu\ncheckpoint-sha256: %s\ncheckpoint:\n%s",
               (unsigned long long)cp.size, hex, cp.text);
    }
    hsmca_audit_checkpoint_clear(&cp);
}

static EVP_PKEY *
read_pubkey(const char *path)
{
    FILE *f = fopen(path, "re");
    EVP_PKEY *k = NULL;

    if (f == NULL)
        return NULL;
    k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/*
 * --init-tokens: initialise the free token named by uri's token= with a random SO PIN (into
 * *so, for the ceremony's C_InitPIN; the caller wipes it) and a throwaway random user PIN that the
 * ceremony replaces.
 */
static enum hsmca_err
init_token(struct hsmca_p11 *p11, const char *uri, struct hsmca_secret *so,
           struct hsmca_token **out)
{
    struct hsmca_secret user = {NULL, 0};
    struct hsmca_uri u;
    enum hsmca_err e;

    e = hsmca_uri_parse(uri, strlen(uri), &u);
    if (e != HSMCA_OK)
        return e;
    if (!(u.have & HSMCA_URI_HAVE_TOKEN))
        return HSMCA_E_URI_INVALID;
    e = hsmca_token_random_pin(HSMCA_SO_PIN_LEN, so);
    if (e == HSMCA_OK)
        e = hsmca_token_random_pin(HSMCA_SO_PIN_LEN, &user);
    if (e == HSMCA_OK)
        e = hsmca_token_init(p11, u.token, so, &user, out);
    hsmca_secret_clear(&user);
    return e;
}

/* Replace the administrator's SO PIN so of tok with random bytes that are wiped at once. */
static enum hsmca_err
destroy_so_pin(struct hsmca_token *tok, const char *label, struct hsmca_secret *so)
{
    struct hsmca_secret fresh = {NULL, 0};
    enum hsmca_err e;

    e = hsmca_token_random_pin(HSMCA_SO_PIN_LEN, &fresh);
    if (e == HSMCA_OK)
        e = hsmca_token_set_so_pin(tok, so, &fresh);
    hsmca_secret_clear(&fresh);
    hsmca_secret_clear(so);
    if (e != HSMCA_OK)
        fprintf(stderr,
                "hsmca ceremony init: %s: the SO PIN could not be replaced (%s); the token's\n"
                "user PIN is set and sealed, but its SO PIN still works: re-initialise the token\n"
                "and hold the ceremony again (ceremony/RUNBOOK.md)\n",
                label, hsmca_err_code(e));
    return e;
}

static int
do_init(int argc, char **argv)
{
    struct common cm = {NULL, NULL, NULL, NULL};
    const char *token_uri[MAX_TOKENS], *approver_arg[MAX_APPROVERS];
    const char *so_pin_file = NULL, *policy_path = "policies/quorum.json", *id = "ceremony";
    char names[MAX_APPROVERS][HSMCA_QUORUM_NAME_MAX + 1];
    char serials[MAX_APPROVERS][HSMCA_TOKEN_SERIAL_MAX + 1];
    struct hsmca_quorum_token_in tin[MAX_TOKENS];
    struct hsmca_quorum_approver_in ain[MAX_APPROVERS];
    struct hsmca_quorum_init in;
    struct hsmca_quorum_principal who = {"ceremony", "admin", NULL};
    struct hsmca_secret so[MAX_TOKENS];
    struct session s;
    size_t nt = 0, na = 0, i, plen = 0;
    unsigned char *policy = NULL;
    uint64_t m = 0;
    json_t *gen = NULL, *gt, *ga;
    char *genesis = NULL, prompt[96];
    enum hsmca_err e;
    int c, rc = CLI_EXIT_FAIL, opened = 0, init_tokens = 0;
    struct cli_list tokens = {token_uri, 0, MAX_TOKENS};
    struct cli_list approvers = {approver_arg, 0, MAX_APPROVERS};
    struct cli_u64 m_opt = {&m, 0, MAX_APPROVERS};
    const struct cli_opt opts[] = {
        COMMON_OPTS(&cm),
        CLI_CHECK("token", 't', cli_list_add, &tokens, "at most " CLI_NUM(MAX_TOKENS) " tokens"),
        CLI_STR("so-pin-file", 'S', &so_pin_file),
        CLI_FLAG("init-tokens", 'I', &init_tokens),
        CLI_CHECK("approver", 'p', cli_list_add, &approvers,
                  "at most " CLI_NUM(MAX_APPROVERS) " approvers"),
        CLI_CHECK("m", 'm', cli_u64, &m_opt, "--m must be a number 2.." CLI_NUM(MAX_APPROVERS)),
        CLI_STR("policy", 'P', &policy_path),
        CLI_STR("id", 'i', &id),
        CLI_END};

    memset(so, 0, sizeof(so));
    memset(ain, 0, sizeof(ain));
    c = cli_getopt("ceremony", argc, argv, 1, opts, usage_ceremony);
    if (c >= 0)
        return c;
    nt = tokens.n;
    na = approvers.n;
    if (optind != argc || cm.store == NULL || cm.audit_uri == NULL || nt == 0 || na < 2 || m < 2 ||
        m > na) {
        fprintf(stderr, "hsmca ceremony init: need --store, --audit-token, --token, at least two "
                        "--approver and 2 <= --m <= approvers\n");
        return CLI_EXIT_USAGE;
    }
    if (init_tokens && so_pin_file != NULL) {
        fprintf(stderr, "hsmca ceremony init: --init-tokens makes the SO PINs; no --so-pin-file\n");
        return CLI_EXIT_USAGE;
    }
    /* approvers: NAME=PUBKEY.pem[:SERIAL] */
    for (i = 0; i < na; i++) {
        const char *eq = strchr(approver_arg[i], '='), *col;
        char path[HSMCA_PATH_MAX + 1];
        size_t nlen;

        if (eq == NULL || (nlen = (size_t)(eq - approver_arg[i])) == 0 ||
            nlen > HSMCA_QUORUM_NAME_MAX) {
            fprintf(stderr, "hsmca ceremony: --approver NAME=PUBKEY.pem[:SERIAL]\n");
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        memcpy(names[i], approver_arg[i], nlen);
        names[i][nlen] = '\0';
        col = strchr(eq + 1, ':');
        snprintf(path, sizeof(path), "%.*s",
                 col != NULL ? (int)(col - eq - 1) : (int)strlen(eq + 1), eq + 1);
        snprintf(serials[i], sizeof(serials[i]), "%s", col != NULL ? col + 1 : "");
        ain[i].name = names[i];
        ain[i].token_serial = serials[i];
        ain[i].pub = read_pubkey(path);
        if (ain[i].pub == NULL) {
            fprintf(stderr, "hsmca ceremony: %s: not a PEM public key\n", path);
            goto out;
        }
    }
    e = hsmca_read_file(policy_path, HSMCA_QUORUM_POLICY_MAX, &policy, &plen);
    if (e != HSMCA_OK) {
        cli_fail(policy_path, e);
        goto out;
    }
    gen = json_pack("{s:s, s:[], s:[], s:I}", "ceremony", id, "tokens", "approvers", "m",
                    (json_int_t)m);
    gt = json_object_get(gen, "tokens");
    ga = json_object_get(gen, "approvers");
    for (i = 0; i < nt; i++)
        json_array_append_new(gt, json_string(token_uri[i]));
    for (i = 0; i < na; i++)
        json_array_append_new(ga, json_string(names[i]));
    genesis = json_dumps(gen, JSON_COMPACT | JSON_SORT_KEYS);
    rc = session_open(&s, &cm, 1, genesis);
    opened = 1;
    if (rc != CLI_EXIT_OK)
        goto out;
    rc = CLI_EXIT_FAIL;
    for (i = 0; i < nt; i++) {
        struct hsmca_token_info ti;

        if (init_tokens) {
            e = init_token(s.p11, token_uri[i], &so[i], &s.tok[i]);
        } else {
            e = hsmca_token_open(s.p11, token_uri[i], &s.tok[i]);
        }
        if (e != HSMCA_OK) {
            cli_fail(token_uri[i], e);
            goto out;
        }
        s.ntok++;
        e = hsmca_token_info(s.tok[i], &ti);
        if (e != HSMCA_OK) {
            cli_fail(token_uri[i], e);
            goto out;
        }
        snprintf(s.label[i], sizeof(s.label[i]), "%s", ti.label);
        if (!init_tokens) {
            snprintf(prompt, sizeof(prompt), "SO PIN of %s: ", ti.label);
            e = cli_read_pin(so_pin_file, prompt, &so[i]);
            if (e != HSMCA_OK) {
                cli_fail("SO PIN", e);
                goto out;
            }
        }
        tin[i].label = s.label[i];
        tin[i].uri = token_uri[i];
        tin[i].tok = s.tok[i];
        tin[i].so_pin = &so[i];
    }
    memset(&in, 0, sizeof(in));
    in.tokens = tin;
    in.ntokens = nt;
    in.approvers = ain;
    in.napprovers = na;
    in.m = (unsigned)m;
    in.policy_json = (const char *)policy;
    in.policy_len = plen;
    in.ceremony_id = id;
    e = hsmca_quorum_ceremony_init(s.q, &in, &who);
    if (e != HSMCA_OK) {
        cli_fail("ceremony init", e);
        goto out;
    }
    /* the SO PIN must not outlive the ceremony: a token the administrator initialised gets a
     * random one nobody learns (one made here, by --init-tokens, already is) */
    for (i = 0; i < nt; i++) {
        if (!init_tokens && destroy_so_pin(s.tok[i], s.label[i], &so[i]) != HSMCA_OK)
            goto out;
        hsmca_secret_clear(&so[i]);
    }
    printf("ceremony: %s\nepoch: 1\nthreshold: %u of %zu\n", id, (unsigned)m, na);
    for (i = 0; i < nt; i++)
        printf("token: %s (user PIN set, split and sealed; SO PIN random and destroyed)\n",
               s.label[i]);
    for (i = 0; i < na; i++)
        printf("approver: %s%s%s\n", names[i], serials[i][0] ? " token " : "", serials[i]);
    print_record(&s);
    rc = CLI_EXIT_OK;
out:
    for (i = 0; i < MAX_TOKENS; i++)
        hsmca_secret_clear(&so[i]);
    for (i = 0; i < na; i++)
        EVP_PKEY_free(ain[i].pub);
    if (opened && session_close(&s) != CLI_EXIT_OK)
        rc = CLI_EXIT_FAIL;
    free(policy);
    free(genesis);
    json_decref(gen);
    return rc;
}

/* ---- run ---- */

static enum hsmca_err
created_cb(void *arg, const struct hsmca_ca_rec *ca)
{
    struct session *s = arg;
    const unsigned char *p = ca->cert_der;
    X509 *x = d2i_X509(NULL, &p, (long)ca->cert_len);
    FILE *f;

    if (x == NULL)
        return HSMCA_E_INTERNAL;
    printf("ca: %s (%s)\n", ca->id, ca->kind);
    PEM_write_X509(stdout, x);
    if (s->out_cert != NULL) {
        int to_stdout = strcmp(s->out_cert, "-") == 0;

        f = to_stdout ? stdout : fopen(s->out_cert, "we");
        if (f == NULL || PEM_write_X509(f, x) != 1) {
            if (f != NULL && !to_stdout)
                fclose(f);
            X509_free(x);
            return HSMCA_E_IO;
        }
        if (!to_stdout)
            fclose(f);
    }
    X509_free(x);
    return HSMCA_OK;
}

static struct hsmca_store *
reader_cb(void *arg)
{
    return ((struct session *)arg)->ro;
}

/* The CA registry over the session's module, store and audit log, with every CA of the store;
 * with dac_profile (ca.activate) also the issuance engine, and each PAI attached to it. */
static int
session_cas(struct session *s, const char *store, const char *dac_profile)
{
    struct hsmca_ca_registry_config cfg;
    struct hsmca_issuer_config ic;
    enum hsmca_err e;

    memset(&cfg, 0, sizeof(cfg));
    cfg.p11 = s->p11;
    cfg.audit = s->a;
    cfg.arg = s;
    cfg.reader = reader_cb;
    cfg.ca_created = created_cb;
    e = hsmca_ca_registry_new(&s->cas);
    if (e == HSMCA_OK)
        e = hsmca_store_open_readonly(store, &s->ro);
    if (e == HSMCA_OK && dac_profile != NULL) {
        e = hsmca_profile_load(dac_profile, &s->dac_profile);
        if (e != HSMCA_OK)
            return cli_fail(dac_profile, e);
        memset(&ic, 0, sizeof(ic));
        ic.audit = s->a;
        ic.store_path = store;
        ic.threads = 1;
        ic.readers = 1;
        e = hsmca_issuer_new(&ic, &s->issuer);
        cfg.issuer = s->issuer;
        cfg.dac_profile = &s->dac_profile;
    }
    if (e == HSMCA_OK) {
        hsmca_ca_registry_configure(s->cas, &cfg);
        e = hsmca_ca_load(s->cas, s->ro);
    }
    if (e == HSMCA_OK)
        e = hsmca_ca_attach_all(s->cas, s->ro);
    if (e != HSMCA_OK)
        return cli_fail("CAs", e);
    return CLI_EXIT_OK;
}

/* The CA whose window the execution opened, or NULL. */
static struct hsmca_ca *
open_window(struct session *s)
{
    struct hsmca_ca *found = NULL;
    unsigned i;

    hsmca_ca_lock(s->cas);
    for (i = 0; found == NULL && i < hsmca_ca_count(s->cas); i++) {
        if (hsmca_ca_at(s->cas, i)->key != NULL)
            found = hsmca_ca_at(s->cas, i);
    }
    hsmca_ca_unlock(s->cas);
    return found;
}

struct test_dac {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hsmca_issue_result *res;
};

static void
test_dac_done(void *arg, struct hsmca_issue_result *res)
{
    struct test_dac *t = arg;

    pthread_mutex_lock(&t->mu);
    t->res = res;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* Issue one DAC for csr_path inside c's open window through the issuance engine (audited as
 * dac.issue, as the daemon's), written as PEM to out. */
static int
issue_test_dac(struct session *s, struct hsmca_ca *c, const char *csr_path, const char *out)
{
    struct test_dac t = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};
    struct hsmca_issue_req rq;
    unsigned char *csr = NULL;
    size_t csr_len = 0;
    const unsigned char *p;
    char ser[2 * sizeof(t.res->serial) + 1];
    X509 *dac = NULL;
    enum hsmca_err e;
    FILE *f = NULL;
    int rc = CLI_EXIT_FAIL;

    e = cli_read_input(csr_path, HSMCA_CSR_MAX, &csr, &csr_len);
    if (e == HSMCA_OK) {
        memset(&rq, 0, sizeof(rq));
        rq.csr = csr;
        rq.csr_len = csr_len;
        rq.principal = "ceremony";
        rq.role = "operator";
        e = hsmca_issue_submit(s->issuer, c->ica, &rq, test_dac_done, &t);
    }
    if (e == HSMCA_OK) {
        pthread_mutex_lock(&t.mu);
        while (t.res == NULL)
            pthread_cond_wait(&t.cv, &t.mu);
        pthread_mutex_unlock(&t.mu);
        e = t.res->rc;
    }
    if (e == HSMCA_OK && t.res->dac_der == NULL)
        e = HSMCA_E_INTERNAL;
    if (e != HSMCA_OK) {
        if (t.res != NULL && t.res->detail[0] != '\0')
            fprintf(stderr, "hsmca ceremony: test DAC: %s\n", t.res->detail);
        cli_fail("test DAC", e);
        goto out;
    }
    p = t.res->dac_der;
    dac = d2i_X509(NULL, &p, (long)t.res->dac_len);
    f = strcmp(out, "-") == 0 ? stdout : fopen(out, "we");
    if (dac == NULL || f == NULL || PEM_write_X509(f, dac) != 1) {
        cli_fail(out, HSMCA_E_IO);
        goto out;
    }
    hsmca_hex_encode(t.res->serial, t.res->serial_len, ser, sizeof(ser));
    printf("dac: %s (serial %s) written to %s\n", c->id, ser, out);
    rc = CLI_EXIT_OK;
out:
    if (f != NULL && (f == stdout ? fflush(f) : fclose(f)) != 0)
        rc = CLI_EXIT_FAIL;
    X509_free(dac);
    hsmca_issue_result_free(t.res);
    free(csr);
    return rc;
}

/* The approval files dropped for request id: each is checked and recorded once. */
struct approvals {
    struct hsmca_quorum *q;
    const char *id;
    int ready; /* enough approvals to execute */
};

static int
take_approval(void *arg, const char *path, const char *name)
{
    struct approvals *ap = arg;
    struct hsmca_quorum_principal sub = {"ceremony", "admin", NULL};
    struct hsmca_quorum_status st;
    unsigned char *body = NULL;
    size_t blen = 0;
    enum hsmca_err e;

    e = hsmca_read_file(path, HSMCA_QUORUM_APPROVAL_MAX, &body, &blen);
    while (e == HSMCA_OK && blen > 0 && (body[blen - 1] == '\n' || body[blen - 1] == '\r'))
        blen--;
    if (e == HSMCA_OK)
        e = hsmca_quorum_approve(ap->q, &sub, ap->id, (const char *)body, blen, &st);
    free(body);
    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca ceremony: %s refused: %s: %s\n", name, hsmca_err_code(e),
                hsmca_err_title(e));
        return 0;
    }
    printf("approval: %s accepted (%u of %u)\n", name, st.approvals, st.threshold);
    fflush(stdout);
    ap->ready = st.ready;
    return ap->ready;
}

static int
do_run(int argc, char **argv)
{
    struct common cm = {NULL, NULL, NULL, NULL};
    const char *op = NULL, *params = NULL, *requester = NULL, *out_req = NULL, *dir = NULL;
    const char *profiles = "policies/profiles", *out_cert = NULL, *csr = NULL, *out_dac = NULL;
    uint64_t wait_s = 600, ttl_s = 3600;
    struct session s;
    struct hsmca_quorum_principal who;
    struct hsmca_quorum_exec ex;
    struct hsmca_ca *act;
    struct hsmca_profile paa, pai;
    struct hsmca_mdl_profile mdl_iaca, mdl_ds;
    int have_mdl = 0;
    struct hsmca_audit_checkpoint cp;
    char id[HSMCA_QUORUM_ID_LEN + 1], path[HSMCA_PATH_MAX + 1], *env = NULL, *res = NULL;
    struct dir_seen seen;
    struct approvals ap;
    time_t deadline;
    enum hsmca_err e;
    int c, rc = CLI_EXIT_FAIL, opened = 0;
    struct cli_u64 wait_opt = {&wait_s, 0, 86400}, ttl_opt = {&ttl_s, 1, 86400};
    const struct cli_opt opts[] = {
        COMMON_OPTS(&cm),
        CLI_STR("op", 'o', &op),
        CLI_STR("params", 'p', &params),
        CLI_STR("requester", 'r', &requester),
        CLI_STR("out-request", 'O', &out_req),
        CLI_STR("approvals-dir", 'd', &dir),
        CLI_CHECK("wait", 'w', cli_u64, &wait_opt, "--wait takes 0..86400 seconds"),
        CLI_CHECK("ttl", 't', cli_u64, &ttl_opt, "--ttl takes 1..86400 seconds"),
        CLI_STR("profiles", 'P', &profiles),
        CLI_STR("out-cert", 'c', &out_cert),
        CLI_STR("csr", 'C', &csr),
        CLI_STR("out-dac", 'D', &out_dac),
        CLI_END};

    memset(&cp, 0, sizeof(cp));
    memset(&seen, 0, sizeof(seen));
    memset(&ap, 0, sizeof(ap));
    c = cli_getopt("ceremony", argc, argv, 1, opts, usage_ceremony);
    if (c >= 0)
        return c;
    if ((strcmp(op != NULL ? op : "", "ca.activate") == 0) != (csr != NULL && out_dac != NULL)) {
        fprintf(stderr,
                "hsmca ceremony run: ca.activate needs --csr and --out-dac (and only it)\n");
        return CLI_EXIT_USAGE;
    }
    if (optind != argc || cm.store == NULL || cm.audit_uri == NULL || op == NULL ||
        params == NULL || requester == NULL || out_req == NULL || dir == NULL) {
        fprintf(stderr, "hsmca ceremony run: need --store, --audit-token, --op, --params, "
                        "--requester, --out-request and --approvals-dir\n");
        return CLI_EXIT_USAGE;
    }
    snprintf(path, sizeof(path), "%s/matter-paa.json", profiles);
    e = hsmca_profile_load(path, &paa);
    if (e == HSMCA_OK) {
        snprintf(path, sizeof(path), "%s/matter-pai.json", profiles);
        e = hsmca_profile_load(path, &pai);
    }
    if (e != HSMCA_OK)
        return cli_fail(path, e);
    /* mDL (docs/mdl.md): both profiles, or neither (then the mdl.create_* ops are refused) */
    snprintf(path, sizeof(path), "%s/mdl-iaca.json", profiles);
    have_mdl = access(path, F_OK) == 0;
    if (have_mdl) {
        char why[256];

        e = hsmca_mdl_profile_load(path, &mdl_iaca, why, sizeof(why));
        if (e == HSMCA_OK) {
            snprintf(path, sizeof(path), "%s/mdl-ds.json", profiles);
            e = hsmca_mdl_profile_load(path, &mdl_ds, why, sizeof(why));
        }
        if (e != HSMCA_OK) {
            fprintf(stderr, "hsmca ceremony run: %s: %s\n", path, why);
            return cli_fail(path, e);
        }
    }
    rc = session_open(&s, &cm, 0, NULL);
    opened = 1;
    if (rc == CLI_EXIT_OK) {
        snprintf(path, sizeof(path), "%s/matter-dac.json", profiles);
        rc = session_cas(&s, cm.store, csr != NULL ? path : NULL);
    }
    if (rc != CLI_EXIT_OK)
        goto out;
    rc = CLI_EXIT_FAIL;
    s.out_cert = out_cert;
    /* the request embeds a fresh checkpoint: approvers witness the log before they sign */
    e = hsmca_audit_checkpoint(s.a, &cp);
    if (e != HSMCA_OK) {
        cli_fail("checkpoint", e);
        goto out;
    }
    who.name = requester;
    who.role = "admin";
    who.key_sha256 = NULL;
    e = hsmca_quorum_request_create(s.q, &who, op, params, (int64_t)ttl_s * 1000, cp.text, cp.sig,
                                    cp.sig_len, id, NULL);
    if (e == HSMCA_OK)
        e = hsmca_quorum_request_envelope(s.q, id, &env);
    if (e != HSMCA_OK) {
        cli_fail("request", e);
        goto out;
    }
    if (cli_write_output(out_req, env, strlen(env), 1, 0666, 1) != 0) {
        cli_fail(out_req, HSMCA_E_IO);
        goto out;
    }
    printf("request: %s\nop: %s\nwritten: %s\nwaiting for approvals in %s (%llu s)\n", id, op,
           out_req, dir, (unsigned long long)wait_s);
    fflush(stdout);
    deadline = time(NULL) + (time_t)wait_s;
    ap.q = s.q;
    ap.id = id;
    while (!ap.ready && time(NULL) <= deadline) {
        (void)dir_each_new(dir, ".json", &seen, take_approval, &ap);
        if (!ap.ready)
            sleep(1);
    }
    if (!ap.ready) {
        fprintf(stderr, "hsmca ceremony: not enough approvals before the deadline\n");
        goto out;
    }
    hsmca_ca_quorum_exec(s.cas, &ex);
    ex.paa_profile = &paa;
    ex.pai_profile = &pai;
    ex.mdl_iaca_profile = have_mdl ? &mdl_iaca : NULL;
    ex.mdl_ds_profile = have_mdl ? &mdl_ds : NULL;
    e = hsmca_quorum_execute(s.q, id, &ex, &res);
    if (e != HSMCA_OK) {
        cli_fail("execute", e);
        goto out;
    }
    printf("executed: %s\nresult: %s\n", id, res);
    rc = CLI_EXIT_OK;
    if ((act = open_window(&s)) != NULL) {
        rc = issue_test_dac(&s, act, csr, out_dac);
        e = hsmca_quorum_deactivate(s.q, &who, act->id, &ex);
        if (e != HSMCA_OK)
            rc = cli_fail("deactivate", e);
        else
            printf("deactivated: %s\n", act->id);
    }
    print_record(&s);
out:
    dir_seen_clear(&seen);
    hsmca_audit_checkpoint_clear(&cp);
    free(env);
    free(res);
    if (opened && session_close(&s) != CLI_EXIT_OK)
        rc = CLI_EXIT_FAIL;
    return rc;
}

int
cmd_ceremony(int argc, char **argv)
{
    static const struct cli_verb verbs[] = {{"init", do_init}, {"run", do_run}, {NULL, NULL}};

    return cli_dispatch("ceremony", argc, argv, verbs, usage_ceremony);
}
