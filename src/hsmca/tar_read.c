/* SPDX-License-Identifier: Apache-2.0
 *
 * tar_read.c -- unpack an audit extract as GET /v1/audit/extract returns it (a ustar archive,
 * members under hsmca-audit-extract/) into a private temporary directory, so `hsmca audit verify`
 * and `check-receipts` take the download as it is. Strict: regular files and directories only
 * (no links, devices or pax/GNU extensions), no absolute name, no "..", every header's checksum
 * checked, bounded member count and sizes; anything else is refused, never guessed at.
 */
#define _XOPEN_SOURCE 700
#include "tar_read.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsmca/limits.h"
#include "hsmca/util.h"

#define TAR_MEMBERS_MAX 1000000u
#define TAR_MEMBER_MAX ((unsigned long long)16 << 30) /* entries.jsonl of a very long log */

static int
octal(const unsigned char *p, size_t n, unsigned long long *out)
{
    unsigned long long v = 0;
    size_t i = 0;

    while (i < n && p[i] == ' ')
        i++;
    if (i == n || p[i] < '0' || p[i] > '7')
        return -1;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
        if (v > (~0ULL >> 3))
            return -1;
        v = v * 8 + (unsigned)(p[i] - '0');
    }
    for (; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\0')
            return -1;
    }
    *out = v;
    return 0;
}

/* a relative name of [A-Za-z0-9._/-] components, none empty (but a trailing /), "." or ".." */
static int
safe_name(const char *name)
{
    const char *p = name;

    if (*p == '\0' || *p == '/')
        return 0;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);

        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.') ||
            !hsmca_word_ok(p, n, SIZE_MAX, 0, "._-"))
            return 0;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 1;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void
tar_extract_remove(char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return;
    (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
}

static int
fail(char *why, size_t why_len, const char *what, const char *name)
{
    snprintf(why, why_len, "%s%s%.200s", what, name != NULL ? ": " : "", name != NULL ? name : "");
    return -1;
}

int
tar_extract(FILE *in, char *tmpdir, size_t tmpdir_len, char *extract, size_t extract_len, char *why,
            size_t why_len)
{
    unsigned char h[512];
    char *buf = NULL, top[101] = "";
    unsigned members = 0;
    int zeros = 0, rc = -1, one_top = 1;
    const char *base = getenv("TMPDIR");

    tmpdir[0] = '\0';
    if (snprintf(tmpdir, tmpdir_len, "%s/hsmca-extract.XXXXXX",
                 base != NULL && base[0] == '/' ? base : "/tmp") >= (int)tmpdir_len ||
        mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        return fail(why, why_len, "cannot make a temporary directory", strerror(errno));
    }
    buf = malloc(1 << 16);
    if (buf == NULL) {
        fail(why, why_len, "out of memory", NULL);
        goto out;
    }
    for (;;) {
        char name[256], path[HSMCA_PATH_MAX + 1];
        unsigned long long size, sum, mine = 0;
        size_t i, nl;

        if (fread(h, 1, 512, in) != 512) {
            if (zeros > 0 && feof(in))
                break; /* one zero block then the end: accepted, as tar does */
            fail(why, why_len, "not a tar archive (truncated)", NULL);
            goto out;
        }
        for (i = 0; i < 512 && h[i] == 0; i++)
            ;
        if (i == 512) {
            if (++zeros == 2)
                break;
            continue;
        }
        if (zeros > 0 || ++members > TAR_MEMBERS_MAX) {
            fail(why, why_len, "not a tar archive of an extract (too many members)", NULL);
            goto out;
        }
        if (octal(h + 148, 8, &sum) != 0) {
            fail(why, why_len, "not a tar archive (no header checksum)", NULL);
            goto out;
        }
        for (i = 0; i < 512; i++)
            mine += i >= 148 && i < 156 ? ' ' : h[i];
        if (sum != mine || memcmp(h + 257, "ustar", 5) != 0) {
            fail(why, why_len, "not a ustar archive (header checksum or magic)", NULL);
            goto out;
        }
        if (octal(h + 124, 12, &size) != 0 || size > TAR_MEMBER_MAX) {
            fail(why, why_len, "a member's size is unreadable or too large", NULL);
            goto out;
        }
        /* name: the prefix field (345..500), a slash, then the name field (0..100) */
        nl = 0;
        if (h[345] != '\0') {
            size_t pl = strnlen((const char *)h + 345, 155);

            memcpy(name, h + 345, pl);
            name[pl] = '/';
            nl = pl + 1;
        }
        i = strnlen((const char *)h, 100);
        memcpy(name + nl, h, i);
        name[nl + i] = '\0';
        if (!safe_name(name)) {
            fail(why, why_len, "refused member name (absolute, .. or odd characters)", name);
            goto out;
        }
        {
            const char *slash = strchr(name, '/');
            size_t tl = slash != NULL ? (size_t)(slash - name) : strlen(name);

            if (members == 1 && tl < sizeof(top)) {
                memcpy(top, name, tl);
                top[tl] = '\0';
            }
            /* every member inside one top directory: the extract is that directory */
            if (slash == NULL || tl != strlen(top) || memcmp(name, top, tl) != 0)
                one_top = 0;
        }
        if (snprintf(path, sizeof(path), "%s/%s", tmpdir, name) >= (int)sizeof(path)) {
            fail(why, why_len, "member name too long", name);
            goto out;
        }
        if (h[156] == '5') {
            size_t pl = strlen(path);

            if (pl > 0 && path[pl - 1] == '/')
                path[pl - 1] = '\0';
            if (size != 0 || (mkdir(path, 0700) != 0 && errno != EEXIST)) {
                fail(why, why_len, "cannot make directory", name);
                goto out;
            }
            continue;
        }
        if (h[156] != '0' && h[156] != '\0') {
            fail(why, why_len, "refused member type (only files and directories)", name);
            goto out;
        }
        {
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
            unsigned long long left = size, pad = (512 - size % 512) % 512;

            if (fd < 0) {
                fail(why, why_len, "cannot write member (twice, or its directory is missing)",
                     name);
                goto out;
            }
            while (left > 0) {
                size_t k = left < (1 << 16) ? (size_t)left : (1 << 16);

                if (fread(buf, 1, k, in) != k || write(fd, buf, k) != (ssize_t)k) {
                    close(fd);
                    fail(why, why_len, "truncated member or write error", name);
                    goto out;
                }
                left -= k;
            }
            if (close(fd) != 0 || (pad > 0 && fread(buf, 1, (size_t)pad, in) != pad)) {
                fail(why, why_len, "truncated member", name);
                goto out;
            }
        }
    }
    if (members == 0) {
        fail(why, why_len, "an empty tar archive", NULL);
        goto out;
    }
    if (snprintf(extract, extract_len, "%s%s%s", tmpdir, one_top && top[0] ? "/" : "",
                 one_top ? top : "") >= (int)extract_len) {
        fail(why, why_len, "path too long", NULL);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    if (rc != 0)
        tar_extract_remove(tmpdir);
    return rc;
}

int
tar_is_archive(const char *path)
{
    struct stat sb;

    return strcmp(path, "-") == 0 || (stat(path, &sb) == 0 && S_ISREG(sb.st_mode));
}
