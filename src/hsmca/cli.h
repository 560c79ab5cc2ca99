/* SPDX-License-Identifier: Apache-2.0
 *
 * cli.h -- what the subcommands of the hsmca command share: the command table entry, PIN input,
 * and the module default. Exit codes: 0 success, 1 the operation failed or the input is invalid,
 * 2 usage error.
 */
#ifndef HSMCA_CLI_H
#define HSMCA_CLI_H

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
    void (*usage)(void);
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

/* Print "hsmca: <what>: <code>: <title>" on stderr and return CLI_EXIT_FAIL. */
int cli_fail(const char *what, enum hsmca_err e);

int cmd_approve(int argc, char **argv);
void usage_approve(void);
int cmd_audit(int argc, char **argv);
void usage_audit(void);
int cmd_bundle(int argc, char **argv);
void usage_bundle(void);
int cmd_ceremony(int argc, char **argv);
void usage_ceremony(void);
int cmd_issue(int argc, char **argv);
void usage_issue(void);
int cmd_issue_batch(int argc, char **argv);
void usage_issue_batch(void);
int cmd_token(int argc, char **argv);
void usage_token(void);
int cmd_verify(int argc, char **argv);
void usage_verify(void);

#endif
