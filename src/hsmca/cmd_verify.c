/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_verify.c -- `hsmca verify`: judge a DAC -> PAI -> PAA chain as a Matter commissioner would
 * (the validator of matter.c), and say which rule failed with the connectedhomeip result code.
 * Offline: reads three files, touches no token and no store.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "hsmca/limits.h"
#include "hsmca/matter.h"
#include "hsmca/util.h"

#include "cli.h"

void
usage_verify(FILE *f)
{
    fprintf(
        f, "usage: hsmca verify --dac FILE --pai FILE --paa FILE\n"
           "                    [--expect-vid HEX] [--expect-pid HEX] [--json]\n"
           "\n"
           "Checks a Matter attestation chain like a commissioner (connectedhomeip's\n"
           "DefaultDACVerifier and chip-cert validate-att-cert): the format of each certificate,\n"
           "VID/PID along the chain (Matter OIDs, or the legacy Mvid:/Mpid: common name), the PAA\n"
           "found by the PAI's authority key id, the chain signatures with PAA and PAI judged at\n"
           "the DAC's notBefore, and the DAC at the current time. Files are DER or PEM; one of\n"
           "them may be - (standard input).\n"
           "--expect-vid/--expect-pid are the VID/PID the device reports in Basic Information\n"
           "(4 hex digits, e.g. FFF1). --json prints the verdict as one JSON object.\n"
           "Exit status: 0 valid, 1 invalid (the rule is printed), 2 usage error.\n");
}

/* --expect-vid and --expect-pid: 4 hex digits into ex, marked as given */
static int
expect_vid(const char *arg, void *dst)
{
    struct hsmca_matter_expect *ex = dst;

    ex->has_vid = 1;
    return cli_hex16(arg, &ex->vid);
}

static int
expect_pid(const char *arg, void *dst)
{
    struct hsmca_matter_expect *ex = dst;

    ex->has_pid = 1;
    return cli_hex16(arg, &ex->pid);
}

int
cmd_verify(int argc, char **argv)
{
    const char *files[3] = {NULL, NULL, NULL};
    static const char *what[3] = {"DAC", "PAI", "PAA"};
    unsigned char *buf[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0};
    struct hsmca_matter_expect ex = {0, 0, 0, 0};
    struct hsmca_matter_verdict v;
    json_t *j = NULL;
    enum hsmca_err e;
    int i, json = 0, rc = CLI_EXIT_USAGE;
    const struct cli_opt opts[] = {
        CLI_STR("dac", 'd', &files[0]),
        CLI_STR("pai", 'i', &files[1]),
        CLI_STR("paa", 'a', &files[2]),
        CLI_CHECK("expect-vid", 'V', expect_vid, &ex, "--expect-vid takes 4 hex digits"),
        CLI_CHECK("expect-pid", 'P', expect_pid, &ex, "--expect-pid takes 4 hex digits"),
        CLI_FLAG("json", 'j', &json),
        CLI_END};

    rc = cli_getopt("verify", argc, argv, 1, opts, usage_verify);
    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_USAGE;
    if (optind != argc || files[0] == NULL || files[1] == NULL || files[2] == NULL) {
        fprintf(stderr, "hsmca verify: --dac, --pai and --paa are all required\n");
        goto out;
    }
    if ((strcmp(files[0], "-") == 0) + (strcmp(files[1], "-") == 0) + (strcmp(files[2], "-") == 0) >
        1) {
        fprintf(stderr, "hsmca verify: only one of --dac, --pai and --paa can be - (stdin)\n");
        goto out;
    }
    rc = CLI_EXIT_FAIL;
    for (i = 0; i < 3; i++) {
        e = cli_read_input(files[i], HSMCA_MATTER_INPUT_MAX, &buf[i], &len[i]);
        if (e != HSMCA_OK) {
            fprintf(stderr, "hsmca verify: %s file %s: %s: %s\n", what[i], files[i],
                    hsmca_err_code(e), hsmca_err_title(e));
            goto out;
        }
    }
    memset(&v, 0, sizeof(v));
    e = hsmca_matter_validate_der(buf[0], len[0], buf[1], len[1], buf[2], len[2], &ex, time(NULL),
                                  &v);
    if (e == HSMCA_E_INVALID_ARG || e == HSMCA_E_NOMEM) {
        rc = cli_fail("verify", e);
        goto out;
    }
    if (json) {
        j = hsmca_matter_verdict_json(&v);
        rc = cli_print_json("verify", j);
        if (rc != CLI_EXIT_OK)
            goto out;
    } else if (e == HSMCA_OK) {
        printf("valid: DAC -> PAI -> PAA chain accepted\n");
    } else {
        printf("invalid: rule %s (%s, %s; chip result %d): %s\n", v.rule, v.cert,
               hsmca_err_code(v.code), v.chip, v.detail);
    }
    rc = e == HSMCA_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(j);
    for (i = 0; i < 3; i++)
        free(buf[i]);
    return rc;
}
