/* SPDX-License-Identifier: Apache-2.0
 *
 * cli.h -- what the subcommands of the hsmca command share: the command table entry, PIN input,
 * and the module default. Exit codes: 0 success, 1 the operation failed or the input is invalid,
 * 2 usage error.
 */
#ifndef HSMCA_CLI_H
#define HSMCA_CLI_H

#include <stdio.h>

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
