/* SPDX-License-Identifier: Apache-2.0
 *
 * cli.c -- helpers shared by the subcommands: PIN input from a private file or a no-echo prompt,
 * durable file output, and the one error-printing format. The PIN goes straight into secure memory;
 * the line buffer is wiped on every path.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsmca/gbuf.h"
#include "hsmca/limits.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

int
cli_write_file(const char *path, const void *data, size_t len, int newline, unsigned mode,
               int force)
{
    char tmp[HSMCA_PATH_MAX + 8];
    const unsigned char *p = data;
    size_t left = len;
    int fd, e;

    if (!force && access(path, F_OK) == 0) {
        errno = EEXIST;
        return -1;
    }
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -1;
    while (left > 0 || newline) {
        ssize_t w = left > 0 ? write(fd, p, left) : write(fd, "\n", 1);

        if (w <= 0)
            goto fail;
        if (left > 0) {
            p += w;
            left -= (size_t)w;
        } else {
            newline = 0;
        }
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
    return -1;
}

enum hsmca_err
cli_read_input(const char *path, size_t max, unsigned char **out, size_t *len)
{
    struct hsmca_gbuf b;

    if (strcmp(path, "-") != 0)
        return hsmca_read_file(path, max, out, len);
    hsmca_gbuf_init(&b, max);
    hsmca_gbuf_read_fd(&b, STDIN_FILENO);
    *out = hsmca_gbuf_take(&b, len);
    return b.err;
}

int
cli_write_output(const char *path, const void *data, size_t len, int newline, unsigned mode,
                 int force)
{
    if (strcmp(path, "-") != 0)
        return cli_write_file(path, data, len, newline, mode, force);
    if ((len > 0 && fwrite(data, 1, len, stdout) != len) || (newline && putchar('\n') == EOF) ||
        fflush(stdout) != 0)
        return -1;
    return 0;
}

int
cli_exists(const char *path)
{
    return strcmp(path, "-") != 0 && access(path, F_OK) == 0;
}

const char *
cli_module(const char *given, const char *uri, struct hsmca_uri *scratch)
{
    if (given != NULL)
        return given;
    if (uri != NULL && hsmca_uri_parse(uri, strlen(uri), scratch) == HSMCA_OK &&
        (scratch->have & HSMCA_URI_HAVE_MODULE_PATH))
        return scratch->module_path;
    return CLI_DEFAULT_MODULE;
}

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

int
cli_getopt(const char *cmd, int argc, char **argv, int first, const struct cli_opt *opts,
           void (*usage)(FILE *f))
{
    struct option lo[CLI_OPTS_MAX + 2];
    char shorts[3 * CLI_OPTS_MAX + 2];
    size_t n = 0, k = 0;
    int c;

    while (opts[n].name != NULL)
        n++;
    if (n > CLI_OPTS_MAX) { /* never drop an option silently: the table is the program's own */
        fprintf(stderr, "hsmca %s: internal error: %zu options, more than CLI_OPTS_MAX (%d)\n", cmd,
                n, CLI_OPTS_MAX);
        return CLI_EXIT_FAIL;
    }
    for (n = 0; opts[n].name != NULL; n++) {
        int arg = opts[n].flag == NULL;

        lo[n] = (struct option){opts[n].name, arg ? required_argument : no_argument, NULL,
                                256 + (int)n};
        if (opts[n].short_name != 0) {
            shorts[k++] = opts[n].short_name;
            if (arg)
                shorts[k++] = ':';
        }
    }
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    shorts[k++] = 'h';
    shorts[k] = '\0';
    optind = first;
    while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        const struct cli_opt *o = NULL;
        size_t i;

        if (c == 'h') {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        for (i = 0; i < n && o == NULL; i++)
            if (c == 256 + (int)i || (c < 256 && c == opts[i].short_name))
                o = &opts[i];
        if (o == NULL) {
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        if (o->flag != NULL) {
            *o->flag = 1;
        } else if (o->check != NULL) {
            if (o->check(optarg, o->dst) != 0) {
                fprintf(stderr, "hsmca %s: %s\n", cmd, o->why);
                return CLI_EXIT_USAGE;
            }
        } else {
            *o->str = optarg;
        }
    }
    return -1;
}

int
cli_hex16(const char *s, uint16_t *out)
{
    unsigned char b[2];
    size_t n = 0, len = strlen(s);

    if (len != 4 || hsmca_hex_decode(s, len, b, sizeof(b), &n) != HSMCA_OK || n != 2)
        return -1;
    *out = (uint16_t)(b[0] << 8 | b[1]);
    return 0;
}

int
cli_once(const char *arg, void *dst)
{
    const char **slot = dst;

    if (*slot != NULL)
        return -1;
    *slot = arg;
    return 0;
}

int
cli_list_add(const char *arg, void *dst)
{
    struct cli_list *l = dst;

    if (l->n >= l->max)
        return -1;
    l->v[l->n++] = arg;
    return 0;
}

int
cli_u64(const char *arg, void *dst)
{
    const struct cli_u64 *r = dst;
    uint64_t v;

    if (hsmca_parse_u64(arg, strlen(arg), r->max, &v) != HSMCA_OK || v < r->min)
        return -1;
    *r->v = v;
    return 0;
}

int
cli_subcommand(int argc, char **argv, void (*usage)(FILE *f))
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    return -1;
}

int
cli_dispatch(const char *cmd, int argc, char **argv, const struct cli_verb *verbs,
             void (*usage)(FILE *f))
{
    int rc = cli_subcommand(argc, argv, usage);

    if (rc >= 0)
        return rc;
    for (; verbs->name != NULL; verbs++)
        if (strcmp(argv[1], verbs->name) == 0)
            return verbs->run(argc - 1, argv + 1);
    fprintf(stderr, "hsmca %s: unknown subcommand '%s'\n", cmd, argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}

int
cli_print_json(const char *what, const json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    if (s == NULL)
        return cli_fail(what, HSMCA_E_NOMEM);
    printf("%s\n", s);
    free(s);
    return CLI_EXIT_OK;
}
