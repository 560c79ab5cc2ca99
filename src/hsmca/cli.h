/* SPDX-License-Identifier: Apache-2.0
 *
 * cli.h -- what the subcommands of the hsmca command share: the command table entry, PIN input,
 * and the module default. Exit codes: 0 success, 1 the operation failed or the input is invalid,
 * 2 usage error.
 */
#ifndef HSMCA_CLI_H
#define HSMCA_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "hsmca/error.h"
#include "hsmca/secret.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

#define CLI_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

struct cli_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    void (*usage)(FILE *f);
};

/*
 * Read a PIN: from the first line of file when file is not NULL (the file must not be readable by
 * group or others), else from the terminal with echo off, prompting with prompt.
 * On HSMCA_OK the caller clears *out with hsmca_secret_clear().
 */
HSMCA_MUSTCHECK enum hsmca_err cli_read_pin(const char *file, const char *prompt,
                                            struct hsmca_secret *out);

/*
 * Write data (and a newline when newline is set) to path durably: into path.tmp (created with
 * mode, less the umask), fsync, then renamed over path. Refuses an existing path (EEXIST) unless
 * force. 0 on success, else -1 with errno set and no path.tmp left behind.
 */
int cli_write_file(const char *path, const void *data, size_t len, int newline, unsigned mode,
                   int force);

/*
 * Read path whole (at most max bytes, NUL-terminated; caller frees *out), or standard input when
 * path is "-". Returns what hsmca_read_file returns (HSMCA_E_TOO_LARGE over max).
 */
HSMCA_MUSTCHECK enum hsmca_err cli_read_input(const char *path, size_t max, unsigned char **out,
                                              size_t *len);

/* cli_write_file, or standard output when path is "-" (then mode and force do not apply). */
int cli_write_output(const char *path, const void *data, size_t len, int newline, unsigned mode,
                     int force);

/* 1 when path names an existing file ("-", standard output, never does). */
int cli_exists(const char *path);

/*
 * The PKCS#11 module to load: --module when given, else the module-path= of uri (kept in
 * *scratch), else CLI_DEFAULT_MODULE. hsmca_token_open refuses a URI whose module-path differs.
 */
struct hsmca_uri;
const char *cli_module(const char *given, const char *uri, struct hsmca_uri *scratch);

/* Print "hsmca: <what>: <code>: <title>" on stderr and return CLI_EXIT_FAIL. */
int cli_fail(const char *what, enum hsmca_err e);

/* j as one line of compact JSON with sorted keys on standard output: CLI_EXIT_OK, or (j NULL or
 * out of memory) cli_fail(what, HSMCA_E_NOMEM). j stays the caller's. */
int cli_print_json(const char *what, const json_t *j);

/*
 * One option of a command for cli_getopt: a string option stores its argument in *str, a flag
 * sets *flag to 1, a checked option hands its argument to check(arg, dst), which returns 0 to
 * accept it; a refused one prints "hsmca CMD: why" and is a usage error. short_name, if not 0,
 * is the one-letter form. A table ends with an entry whose name is NULL.
 */
struct cli_opt {
    const char *name;
    char short_name;
    const char **str;
    int *flag;
    int (*check)(const char *arg, void *dst);
    void *dst;
    const char *why;
};
#define CLI_OPTS_MAX 32
/* clang-format off */
#define CLI_STR(n, c, p) {.name = (n), .short_name = (c), .str = (p)}
#define CLI_FLAG(n, c, p) {.name = (n), .short_name = (c), .flag = (p)}
#define CLI_CHECK(n, c, fn, d, w) {.name = (n), .short_name = (c), .check = (fn), .dst = (d), .why = (w)}
#define CLI_END {.name = NULL}
/* clang-format on */
/* a numeric macro as a string, for a why */
#define CLI_NUM_(x) #x
#define CLI_NUM(x) CLI_NUM_(x)
/* --url --cert --key --cacert into a struct http_client_config (http_client.h) */
#define CLI_CONN_OPTS(cfg)                                                                         \
    CLI_STR("url", 0, &(cfg)->url), CLI_STR("cert", 0, &(cfg)->cert),                              \
        CLI_STR("key", 0, &(cfg)->key), CLI_STR("cacert", 0, &(cfg)->cacert)
/* 1 when all four were given */
#define CLI_CONN_GIVEN(cfg)                                                                        \
    ((cfg)->url != NULL && (cfg)->cert != NULL && (cfg)->key != NULL && (cfg)->cacert != NULL)

/* CLI_CHECK helpers. cli_once: dst is a const char **, refused when already set (a flag given
 * twice). cli_list_add: dst is a struct cli_list, refused when it is full. cli_u64: dst is a
 * struct cli_u64, refused when the argument is not a decimal number in min..max. */
struct cli_list {
    const char **v;
    size_t n, max;
};
struct cli_u64 {
    uint64_t *v;
    uint64_t min, max;
};
int cli_once(const char *arg, void *dst);
/* A VID or PID: exactly 4 hex digits. 0, or -1. */
int cli_hex16(const char *s, uint16_t *out);
int cli_list_add(const char *arg, void *dst);
int cli_u64(const char *arg, void *dst);

/*
 * Parse argv from index first (getopt_long) by the table: --help (and -h) prints usage to
 * standard output (CLI_EXIT_OK), an unknown option prints it to standard error (CLI_EXIT_USAGE),
 * as does a refused checked argument. -1 when every option was taken: the operands start at
 * optind. A table of more than CLI_OPTS_MAX options is the program's error (CLI_EXIT_FAIL, said on
 * standard error), never options dropped.
 */
int cli_getopt(const char *cmd, int argc, char **argv, int first, const struct cli_opt *opts,
               void (*usage)(FILE *f));

/*
 * The subcommand words' prelude: no word prints usage to standard error (CLI_EXIT_USAGE),
 * --help or -h prints it to standard output (CLI_EXIT_OK); -1 when argv[1] is a word to run.
 */
int cli_subcommand(int argc, char **argv, void (*usage)(FILE *f));

/* A subcommand word and what runs it (argv[0] is the word). A table ends with a NULL name. */
struct cli_verb {
    const char *name;
    int (*run)(int argc, char **argv);
};
/*
 * cli_subcommand's prelude, then the verb argv[1] names, run with argv from it; an unknown word
 * prints "hsmca CMD: unknown subcommand 'WORD'" and the usage on standard error (CLI_EXIT_USAGE).
 */
int cli_dispatch(const char *cmd, int argc, char **argv, const struct cli_verb *verbs,
                 void (*usage)(FILE *f));

int cmd_approve(int argc, char **argv);
void usage_approve(FILE *f);
int cmd_audit(int argc, char **argv);
void usage_audit(FILE *f);
int cmd_bundle(int argc, char **argv);
void usage_bundle(FILE *f);
int cmd_ceremony(int argc, char **argv);
void usage_ceremony(FILE *f);
int cmd_custody(int argc, char **argv);
void usage_custody(FILE *f);
int cmd_dcl(int argc, char **argv);
void usage_dcl(FILE *f);
int cmd_mdl(int argc, char **argv);
void usage_mdl(FILE *f);
int cmd_report(int argc, char **argv);
void usage_report(FILE *f);
int cmd_issue(int argc, char **argv);
void usage_issue(FILE *f);
int cmd_issue_batch(int argc, char **argv);
void usage_issue_batch(FILE *f);
int cmd_request(int argc, char **argv);
void usage_request(FILE *f);
int cmd_token(int argc, char **argv);
void usage_token(FILE *f);
int cmd_verify(int argc, char **argv);
void usage_verify(FILE *f);

#endif
