/* SPDX-License-Identifier: Apache-2.0
 *
 * test_cli_getopt.c -- the command's option table (src/hsmca/cli.c): string, flag and checked
 * options by long and short name, --help and -h to standard output with exit 0, an unknown
 * option and a refused checked argument as usage errors (exit 2), the operands after the options,
 * the connection options into a struct http_client_config, the subcommand prelude, and a table
 * longer than CLI_OPTS_MAX refused rather than cut.
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "http_client.h"

static int usage_calls;
static FILE *usage_to;

static void
usage(FILE *f)
{
    usage_calls++;
    usage_to = f;
}

static int
even(const char *arg, void *dst)
{
    size_t n = strlen(arg);

    if (n % 2 != 0)
        return -1;
    *(size_t *)dst = n;
    return 0;
}

/* run cli_getopt over the words of a NULL-terminated list, argv[0] "cmd" */
static int
run(const char *const *words, const struct cli_opt *opts, int *operand)
{
    static char *argv[16];
    int argc = 0, rc;

    argv[argc++] = (char *)"cmd";
    while (*words != NULL && argc < 15)
        argv[argc++] = (char *)*words++;
    argv[argc] = NULL;
    usage_calls = 0;
    usage_to = NULL;
    opterr = 0; /* no getopt message in the test log */
    rc = cli_getopt("test", argc, argv, 1, opts, usage);
    if (operand != NULL)
        *operand = argc - optind;
    return rc;
}

/* a table longer than CLI_OPTS_MAX is refused whole: its last option was once dropped silently */
static void
table_too_long(void **state)
{
    struct cli_opt opts[CLI_OPTS_MAX + 2];
    const char *str[CLI_OPTS_MAX + 1];
    char names[CLI_OPTS_MAX + 1][8], last[16];
    size_t i;

    (void)state;
    for (i = 0; i < CLI_OPTS_MAX + 1; i++) {
        snprintf(names[i], sizeof(names[i]), "o%zu", i);
        str[i] = NULL;
        opts[i] = (struct cli_opt)CLI_STR(names[i], 0, &str[i]);
    }
    opts[CLI_OPTS_MAX + 1] = (struct cli_opt)CLI_END;
    assert_int_equal(run((const char *[]){"--o0", "a", NULL}, opts, NULL), 1);
    assert_null(str[0]);
    /* CLI_OPTS_MAX exactly is taken, its last option included */
    opts[CLI_OPTS_MAX] = (struct cli_opt)CLI_END;
    snprintf(last, sizeof(last), "--o%d", CLI_OPTS_MAX - 1);
    assert_int_equal(run((const char *[]){last, "z", NULL}, opts, NULL), -1);
    assert_string_equal(str[CLI_OPTS_MAX - 1], "z");
}

static void
options_taken(void **state)
{
    const char *name = NULL, *out = NULL;
    int flag = 0, left = -1;
    size_t len = 0;
    const struct cli_opt opts[] = {
        CLI_STR("name", 'n', &name), CLI_STR("out", 0, &out), CLI_FLAG("json", 'j', &flag),
        CLI_CHECK("even", 'e', even, &len, "--even takes an even word"), CLI_END};

    (void)state;
    assert_int_equal(
        run((const char *[]){"--name", "a", "-j", "--out=o", "-e", "abcd", "x", "y", NULL}, opts,
            &left),
        -1);
    assert_string_equal(name, "a");
    assert_string_equal(out, "o");
    assert_int_equal(flag, 1);
    assert_int_equal(len, 4);
    assert_int_equal(left, 2);
    assert_int_equal(usage_calls, 0);
    /* short form with its argument attached */
    name = NULL;
    assert_int_equal(run((const char *[]){"-nb", NULL}, opts, &left), -1);
    assert_string_equal(name, "b");
    assert_int_equal(left, 0);
}

static void
help_and_refusals(void **state)
{
    const char *name = NULL;
    size_t len = 0;
    const struct cli_opt opts[] = {CLI_STR("name", 0, &name),
                                   CLI_CHECK("even", 0, even, &len, "--even takes an even word"),
                                   CLI_END};

    (void)state;
    assert_int_equal(run((const char *[]){"--help", NULL}, opts, NULL), CLI_EXIT_OK);
    assert_int_equal(usage_calls, 1);
    assert_ptr_equal(usage_to, stdout);
    assert_int_equal(run((const char *[]){"-h", NULL}, opts, NULL), CLI_EXIT_OK);
    assert_ptr_equal(usage_to, stdout);
    assert_int_equal(run((const char *[]){"--bogus", NULL}, opts, NULL), CLI_EXIT_USAGE);
    assert_int_equal(usage_calls, 1);
    assert_ptr_equal(usage_to, stderr);
    /* no short form was given for --name: -n is unknown */
    assert_int_equal(run((const char *[]){"-n", "x", NULL}, opts, NULL), CLI_EXIT_USAGE);
    /* a missing argument is a usage error too */
    assert_int_equal(run((const char *[]){"--name", NULL}, opts, NULL), CLI_EXIT_USAGE);
    /* a refused checked argument: no usage text, nothing stored */
    assert_int_equal(run((const char *[]){"--even", "abc", NULL}, opts, NULL), CLI_EXIT_USAGE);
    assert_int_equal(usage_calls, 0);
    assert_int_equal(len, 0);
}

static void
connection_options(void **state)
{
    struct http_client_config cfg;
    const struct cli_opt opts[] = {CLI_CONN_OPTS(&cfg), CLI_END};

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(
        run((const char *[]){"--url", "https://h", "--cert", "c", "--key", "k", NULL}, opts, NULL),
        -1);
    assert_false(CLI_CONN_GIVEN(&cfg));
    assert_int_equal(run((const char *[]){"--cacert", "a", NULL}, opts, NULL), -1);
    assert_true(CLI_CONN_GIVEN(&cfg));
    assert_string_equal(cfg.url, "https://h");
    assert_string_equal(cfg.cert, "c");
    assert_string_equal(cfg.key, "k");
    assert_string_equal(cfg.cacert, "a");
}

static void
subcommand_prelude(void **state)
{
    char *none[] = {(char *)"cmd", NULL};
    char *help[] = {(char *)"cmd", (char *)"--help", NULL};
    char *word[] = {(char *)"cmd", (char *)"verify", NULL};

    (void)state;
    usage_calls = 0;
    assert_int_equal(cli_subcommand(1, none, usage), CLI_EXIT_USAGE);
    assert_ptr_equal(usage_to, stderr);
    assert_int_equal(cli_subcommand(2, help, usage), CLI_EXIT_OK);
    assert_ptr_equal(usage_to, stdout);
    assert_int_equal(cli_subcommand(2, word, usage), -1);
    assert_int_equal(usage_calls, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_taken),      cmocka_unit_test(table_too_long),
        cmocka_unit_test(help_and_refusals),  cmocka_unit_test(connection_options),
        cmocka_unit_test(subcommand_prelude),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
