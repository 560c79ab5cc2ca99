/* SPDX-License-Identifier: Apache-2.0
 *
 * problem_codes.c -- the table of problem codes in docs/api.md, made from src/lib/error.c so the
 * two cannot drift. Between the lines "<!-- problem-codes:begin -->" and
 * "<!-- problem-codes:end -->" the document holds one row per code (error.c's order, "ok" left
 * out): `code`, HTTP status, title.
 *
 *   problem_codes --check FILE   exit 0 when FILE's table is exactly the generated one; else print
 *                                the first difference and exit 1 (the problem-codes test)
 *   problem_codes --write FILE   replace FILE's table with the generated one (meson compile -C
 *                                build problem-codes-doc), after adding or renaming codes
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/error.h"

#define BEGIN "<!-- problem-codes:begin -->\n"
#define END "<!-- problem-codes:end -->\n"
#define FILE_MAX (1024 * 1024)

struct text {
    char *p;
    size_t len, cap;
};

static int
put(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap != 0 ? t->cap : 8192;
        char *q;

        while (cap < t->len + n + 1)
            cap *= 2;
        q = realloc(t->p, cap);
        if (q == NULL)
            return -1;
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
    return 0;
}

static int
puts_(struct text *t, const char *s)
{
    return put(t, s, strlen(s));
}

/* The table, header included; a '|' in a title is escaped for Markdown. */
static int
table(struct text *t)
{
    unsigned i, n = hsmca_err_count();
    char num[16];

    if (puts_(t, "| code | HTTP | title |\n| --- | --- | --- |\n") != 0)
        return -1;
    for (i = 0; i < n; i++) {
        enum hsmca_err e = hsmca_err_at(i);
        const char *s;

        if (e == HSMCA_OK)
            continue;
        snprintf(num, sizeof(num), "%d", hsmca_err_http_status(e));
        if (puts_(t, "| `") != 0 || puts_(t, hsmca_err_code(e)) != 0 || puts_(t, "` | ") != 0 ||
            puts_(t, num) != 0 || puts_(t, " | ") != 0)
            return -1;
        for (s = hsmca_err_title(e); *s != '\0'; s++) {
            if ((*s == '|' && put(t, "\\", 1) != 0) || put(t, s, 1) != 0)
                return -1;
        }
        if (puts_(t, " |\n") != 0)
            return -1;
    }
    return 0;
}

static int
slurp(const char *path, struct text *t)
{
    FILE *f = fopen(path, "rb");
    char buf[8192];
    size_t n;
    int rc = 0;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        rc = t->len + n > FILE_MAX ? -1 : put(t, buf, n);
    if (ferror(f))
        rc = -1;
    fclose(f);
    return t->p != NULL ? rc : -1;
}

int
main(int argc, char **argv)
{
    struct text doc = {NULL, 0, 0}, want = {NULL, 0, 0};
    char *b, *e;
    int rc = 1;

    if (argc != 3 || (strcmp(argv[1], "--check") != 0 && strcmp(argv[1], "--write") != 0)) {
        fprintf(stderr, "usage: problem_codes --check|--write FILE\n");
        return 2;
    }
    if (slurp(argv[2], &doc) != 0 || table(&want) != 0) {
        fprintf(stderr, "problem_codes: cannot read %s\n", argv[2]);
        goto out;
    }
    b = strstr(doc.p, BEGIN);
    e = b != NULL ? strstr(b, END) : NULL;
    if (b == NULL || e == NULL) {
        fprintf(stderr, "problem_codes: %s has no %s ... %s", argv[2], BEGIN, END);
        goto out;
    }
    b += strlen(BEGIN);
    if (strcmp(argv[1], "--write") == 0) {
        FILE *f = fopen(argv[2], "wb");

        if (f == NULL || fwrite(doc.p, 1, (size_t)(b - doc.p), f) != (size_t)(b - doc.p) ||
            fwrite(want.p, 1, want.len, f) != want.len || fwrite(e, 1, strlen(e), f) != strlen(e)) {
            perror(argv[2]);
            if (f != NULL)
                fclose(f);
            goto out;
        }
        rc = fclose(f) == 0 ? 0 : 1;
        printf("problem_codes: wrote %s (%u codes)\n", argv[2], hsmca_err_count() - 1);
        goto out;
    }
    if ((size_t)(e - b) == want.len && memcmp(b, want.p, want.len) == 0) {
        printf("problem_codes: %s lists the %u codes of src/lib/error.c\n", argv[2],
               hsmca_err_count() - 1);
        rc = 0;
        goto out;
    }
    {
        /* the first line that differs */
        const char *x = b, *y = want.p;

        while (x < e && *y != '\0' && *x == *y) {
            x++;
            y++;
        }
        while (x > b && x[-1] != '\n')
            x--;
        while (y > want.p && y[-1] != '\n')
            y--;
        fprintf(stderr,
                "problem_codes: the table in %s differs from src/lib/error.c\n"
                "  document: %.*s\n  error.c:  %.*s\n"
                "regenerate it: meson compile -C build problem-codes-doc\n",
                argv[2], (int)strcspn(x, "\n"), x, (int)strcspn(y, "\n"), y);
    }
out:
    free(doc.p);
    free(want.p);
    return rc;
}
