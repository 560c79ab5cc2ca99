/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_custody.c -- `hsmca custody status`: what a crash may have left behind, read from the store
 * (read-only, with hsmcad running or not) and, with --module, from the tokens, each finding with
 * the command that recovers from it (docs/custody.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "hsmca/custody.h"
#include "hsmca/store_audit.h"
#include "hsmca/store_quorum.h"
#include "hsmca/token.h"

#include "cli.h"

void
usage_custody(FILE *f)
{
    fprintf(f,
            "usage: hsmca custody status --store DB [--module PATH]\n"
            "\n"
            "Reads the store (read-only; hsmcad may be running) and reports, each with its\n"
            "recovery:\n"
            "  - operations a crash interrupted (open intents in the audit log);\n"
            "  - a last run of hsmcad that did not stop cleanly;\n"
            "  - CA tokens whose PIN rotation is unconfirmed (they answer to one of two known\n"
            "    PINs; the next quorum operation on them confirms which);\n"
            "  - issuance windows left open by a crash.\n"
            "With --module (default %s) it also opens every CA token under quorum by its URI:\n"
            "a token the module does not list (for SoftHSM: an empty token file, which hsmcad\n"
            "puts back from its verified copy at start), or whose PIN is locked or was entered\n"
            "wrongly.\n"
            "Exit status: 0 nothing to recover, 1 findings (or an error), 2 usage error.\n",
            CLI_DEFAULT_MODULE);
}

struct status_ctx {
    struct hsmca_p11 *p11; /* NULL: store only */
    const char *store;
    unsigned findings;
};

static enum hsmca_err
token_status(void *arg, const struct hsmca_qtoken *t)
{
    struct status_ctx *c = arg;

    printf("token %s: epoch %llu", t->label, (unsigned long long)t->epoch);
    if (t->alt_epoch != 0) {
        printf(", rotation UNCONFIRMED (answers to the PIN of epoch %llu or %llu)\n"
               "  recovery: any quorum operation on this token, e.g. the admin requests\n"
               "  ca.activate for its CA and m approvers approve with `hsmca approve` (they\n"
               "  re-seal the shares of both PINs; hsmcad logs in with the one that works)\n",
               (unsigned long long)t->epoch, (unsigned long long)t->alt_epoch);
        c->findings++;
    } else {
        printf(", PIN confirmed\n");
    }
    if (c->p11 != NULL) {
        struct hsmca_token *tok = NULL;
        struct hsmca_token_info ti;
        enum hsmca_err rc = hsmca_token_open(c->p11, t->uri, &tok);

        if (rc == HSMCA_OK)
            rc = hsmca_token_info(tok, &ti);
        if (rc != HSMCA_OK) {
            printf("  token NOT READABLE (%s): %s\n"
                   "  recovery: for SoftHSM, start hsmcad: it puts an emptied token file back\n"
                   "  from its verified copy (custody.token-restored); otherwise check the\n"
                   "  module and the token's presence\n",
                   t->uri, hsmca_err_code(rc));
            c->findings++;
        } else if (ti.pin_locked || ti.pin_final_try || ti.pin_count_low) {
            printf("  PIN flags: %s%s%s\n"
                   "  a wrong PIN was entered since the last login; the quorum's next operation\n"
                   "  logs in with a PIN checked against its commitment, which clears the flag\n",
                   ti.pin_locked ? "LOCKED " : "", ti.pin_final_try ? "final-try " : "",
                   ti.pin_count_low ? "count-low" : "");
            c->findings++;
        }
        if (tok != NULL && hsmca_token_free(tok) != HSMCA_OK)
            c->findings++;
    }
    return HSMCA_OK;
}

int
cmd_custody(int argc, char **argv)
{
    const char *store = NULL, *module = NULL;
    const struct cli_opt opts[] = {CLI_STR("store", 0, &store), CLI_STR("module", 0, &module),
                                   CLI_END};
    struct hsmca_store *st = NULL;
    struct hsmca_store_audit_intent *in = NULL;
    struct status_ctx c;
    char *v = NULL;
    size_t n = 0, i;
    enum hsmca_err e;
    int ch, rc = CLI_EXIT_FAIL;

    if (argc < 2 || strcmp(argv[1], "status") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            usage_custody(stdout);
            return CLI_EXIT_OK;
        }
        fprintf(stderr, "usage: hsmca custody status --store DB [--module PATH]\n");
        return CLI_EXIT_USAGE;
    }
    ch = cli_getopt("custody", argc, argv, 2, opts, usage_custody);
    if (ch >= 0)
        return ch;
    if (store == NULL || optind != argc) {
        fprintf(stderr, "usage: hsmca custody status --store DB [--module PATH]\n");
        return CLI_EXIT_USAGE;
    }
    memset(&c, 0, sizeof(c));
    c.store = store;
    e = hsmca_store_open_readonly(store, &st);
    if (e != HSMCA_OK)
        return cli_fail("custody: store", e);
    in = calloc(256, sizeof(*in));
    if (in == NULL) {
        e = HSMCA_E_NOMEM;
        goto out;
    }
    e = hsmca_store_audit_intents(st, in, 256, &n);
    if (e != HSMCA_OK)
        goto out;
    for (i = 0; i < n; i++) {
        printf("interrupted: %s (audit seq %llu)\n"
               "  recovery: start hsmcad; it closes the intent in the log (%s.recovered or\n"
               "  %s.orphan) and reports what is left in the lines below\n",
               in[i].action, (unsigned long long)in[i].seq, in[i].action, in[i].action);
        c.findings++;
    }
    if (hsmca_store_meta_get(st, "daemon.running", &v) == HSMCA_OK && strcmp(v, "1") == 0) {
        printf("hsmcad: running, or its last run ended without a clean stop\n"
               "  if it is not running: start it; it logs daemon.crash-detected\n");
        c.findings++;
    }
    free(v);
    v = NULL;
    if (hsmca_store_meta_get(st, "windows.open", &v) == HSMCA_OK) {
        json_t *o = json_loads(v, 0, NULL);
        const char *ca;
        json_t *val;

        json_object_foreach(o, ca, val)
        {
            (void)val;
            printf("window: %s open (or left open by a crash: closed in the log at the next "
                   "start)\n",
                   ca);
        }
        json_decref(o);
    }
    if (module != NULL) {
        e = hsmca_p11_open(module, &c.p11);
        if (e != HSMCA_OK)
            goto out;
    }
    e = hsmca_store_qtoken_list(st, token_status, &c);
    if (e == HSMCA_OK) {
        printf("%u finding%s\n", c.findings, c.findings == 1 ? "" : "s");
        rc = c.findings == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
out:
    free(v);
    free(in);
    hsmca_store_close(st);
    if (c.p11 != NULL && hsmca_p11_free(c.p11) != HSMCA_OK)
        rc = CLI_EXIT_FAIL;
    if (e != HSMCA_OK)
        return cli_fail("custody status", e);
    return rc;
}
