/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c -- the hsmca command: dispatches to one subcommand per file (cmd_<name>.c).
 * Owns process set-up and teardown: the secure heap at start, OpenSSL's cleanup at exit (after
 * every subcommand has unloaded its PKCS#11 module).
 */
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include "cli.h"

static const struct cli_cmd cmds[] = {
    {"approve", "approve a quorum request with your approver token (offline files)", cmd_approve,
     usage_approve},
    {"audit", "verify audit extracts and receipts, archive ranges of the log", cmd_audit,
     usage_audit},
    {"bundle", "offline bundles of device identities sealed to a production line", cmd_bundle,
     usage_bundle},
    {"ceremony", "key ceremonies: initial PIN split (init), one quorum operation (run)",
     cmd_ceremony, usage_ceremony},
    {"custody", "what a crash left behind, and how to recover (read-only)", cmd_custody,
     usage_custody},
    {"dcl", "the DCL's revocation distribution point record of a CA (revocation-point)", cmd_dcl,
     usage_dcl},
    {"issue", "issue one DAC from a CSR through hsmcad (or dry-run it)", cmd_issue, usage_issue},
    {"issue-batch", "issue DACs for a directory of CSRs through hsmcad, resumably", cmd_issue_batch,
     usage_issue_batch},
    {"mdl", "mDL (ISO/IEC 18013-5): check IACA/DS certificates, profiles, IssuerAuth", cmd_mdl,
     usage_mdl},
    {"report", "a signed report of the certificates a CA issued or revoked in a range", cmd_report,
     usage_report},
    {"request", "create, list and show quorum requests through hsmcad (admin)", cmd_request,
     usage_request},
    {"token", "inspect tokens and generate CA keys inside them", cmd_token, usage_token},
    {"verify", "judge a Matter DAC -> PAI -> PAA chain like a commissioner", cmd_verify,
     usage_verify},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void
usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: hsmca <command> [options]\n       hsmca help <command>\n"
               "       hsmca --version\n\ncommands:\n");
    for (i = 0; i < NCMDS; i++)
        fprintf(f, "  %-14s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f,
            "\nA file argument of - is standard input (standard output for --out and\n"
            "--out-*). --help works on every command and subcommand. Exit status: 0 success,\n"
            "1 failure (the message names the stable error code), 2 usage error (on stderr).\n"
            "Online commands use libcurl: https_proxy/no_proxy apply, IPv6 as https://[::1]:P.\n");
}

int
main(int argc, char **argv)
{
    struct rlimit nocore = {0, 0};
    size_t i;
    int rc;

    /* secrets pass through this process: no core dumps, no ptrace by other users */
    (void)setrlimit(RLIMIT_CORE, &nocore);
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (hsmca_secure_heap_init(0) != HSMCA_OK)
        fprintf(stderr, "hsmca: warning: no secure heap (mlock limit); secrets are wiped but "
                        "may be swapped\n");
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("hsmca %s\n", HSMCA_VERSION);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        for (i = 0; i < NCMDS; i++) {
            if (strcmp(argv[2], cmds[i].name) == 0) {
                cmds[i].usage(stdout);
                return CLI_EXIT_OK;
            }
        }
        fprintf(stderr, "hsmca: unknown command '%s'\n", argv[2]);
        return CLI_EXIT_USAGE;
    }
    for (i = 0; i < NCMDS; i++) {
        if (strcmp(argv[1], cmds[i].name) == 0) {
            rc = cmds[i].run(argc - 1, argv + 1);
            OPENSSL_cleanup();
            return rc;
        }
    }
    fprintf(stderr, "hsmca: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
