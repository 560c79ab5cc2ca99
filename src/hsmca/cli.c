/* SPDX-License-Identifier: Apache-2.0
 *
 * cli.c -- helpers shared by the subcommands: PIN input from a private file or a no-echo prompt,
 * and the one error-printing format. The PIN goes straight into secure memory; the line buffer is
 * wiped on every path.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsmca/limits.h"

int
cli_fail(const char *what, enum hsmca_err e)
{
    fprintf(stderr, "hsmca: %s: %s: %s\n", what, hsmca_err_code(e), hsmca_err_title(e));
    return CLI_EXIT_FAIL;
}

enum hsmca_err
cli_read_pin(const char *file, const char *prompt, struct hsmca_secret *out)
{
    char line[HSMCA_PIN_MAX + 2];
    enum hsmca_err rc = HSMCA_E_IO;
    FILE *f = NULL;
    struct termios old, noecho;
    int restore = 0;
    size_t n;

    if (file != NULL) {
        rc = hsmca_secret_read_pin_file(file, out);
        if (rc == HSMCA_E_PIN_FILE_MODE)
            fprintf(stderr,
                    "hsmca: %s: a PIN file must be readable by its owner only "
                    "(chmod 600)\n",
                    file);
        return rc;
    }
    memset(line, 0, sizeof(line));
    f = fopen("/dev/tty", "r+e");
    if (f == NULL)
        goto out;
    fprintf(f, "%s", prompt != NULL ? prompt : "PIN: ");
    fflush(f);
    if (tcgetattr(fileno(f), &old) == 0) {
        noecho = old;
        noecho.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(fileno(f), TCSAFLUSH, &noecho) == 0;
    }
    if (fgets(line, sizeof(line), f) == NULL)
        goto out;
    n = strcspn(line, "\r\n");
    if (n == strlen(line) && !feof(f) && n == sizeof(line) - 1) {
        rc = HSMCA_E_PIN_INVALID;
        goto out;
    }
    if (n < HSMCA_PIN_MIN || n > HSMCA_PIN_MAX) {
        rc = HSMCA_E_PIN_INVALID;
        goto out;
    }
    rc = hsmca_secret_set(out, line, n);
out:
    if (restore) {
        (void)tcsetattr(fileno(f), TCSAFLUSH, &old);
        fprintf(f, "\n");
    }
    if (f != NULL)
        fclose(f);
    OPENSSL_cleanse(line, sizeof(line));
    return rc;
}
