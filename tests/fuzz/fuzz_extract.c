/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_extract.c -- libFuzzer target for `hsmca audit verify` (hsmca_audit_verify_extract): the
 * manifest, entries, checkpoints, anchor, approver sets and key of an extract. The input is the
 * extract's files, each introduced by a line "--- NAME" (NAME one of the extract's own file names,
 * checkpoints/N.txt|sig included; others are skipped), written into a fresh directory per input
 * (under TMPDIR, else /dev/shm if it is a writable directory, else /tmp; removed at exit: a tmpfs
 * spares each input the disk I/O that dominated the target's time on the disk). Invariants beyond
 * "no crash": the verdict is OK or one of the audit module's codes, the same twice, and a failure
 * says why.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsmca/audit.h"
#include "hsmca/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];

static void
clean(void)
{
    char p[600];
    struct dirent *de;
    DIR *d;

    snprintf(p, sizeof(p), "%s/checkpoints", dir);
    d = opendir(p);
    while (d != NULL && (de = readdir(d)) != NULL) {
        char f[900];

        if (de->d_name[0] == '.')
            continue;
        snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
        unlink(f);
    }
    if (d != NULL)
        closedir(d);
    d = opendir(dir);
    while (d != NULL && (de = readdir(d)) != NULL) {
        char f[600];

        if (de->d_name[0] == '.' || strcmp(de->d_name, "checkpoints") == 0)
            continue;
        snprintf(f, sizeof(f), "%s/%s", dir, de->d_name);
        unlink(f);
    }
    if (d != NULL)
        closedir(d);
}

static void
at_exit(void)
{
    char p[300];

    clean();
    snprintf(p, sizeof(p), "%s/checkpoints", dir);
    rmdir(p);
    rmdir(dir);
}

/* A name the extract may hold: a fixed file or checkpoints/DIGITS.(txt|sig). */
static int
name_ok(const char *n, size_t len)
{
    static const char *const fixed[] = {
        "manifest.json",  "entries.jsonl", "audit.pub.pem", "audit.crt.pem",
        "approvers.json", "anchor.txt",    "anchor.sig",    NULL};
    size_t i;

    for (i = 0; fixed[i] != NULL; i++) {
        if (len == strlen(fixed[i]) && memcmp(n, fixed[i], len) == 0)
            return 1;
    }
    if (len < 17 || len > 40 || memcmp(n, "checkpoints/", 12) != 0)
        return 0;
    for (i = 12; i < len - 4; i++) {
        if (n[i] < '0' || n[i] > '9')
            return 0;
    }
    return memcmp(n + len - 4, ".txt", 4) == 0 || memcmp(n + len - 4, ".sig", 4) == 0;
}

static void
write_files(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;

    while (p < end) {
        const char *nl, *name, *next;
        char path[400];
        FILE *f;

        if (end - p < 4 || memcmp(p, "--- ", 4) != 0) { /* skip to the next file line */
            const char *q = p;

            while (q < end && !(end - q >= 5 && memcmp(q, "\n--- ", 5) == 0))
                q++;
            p = q < end ? q + 1 : end;
            continue;
        }
        name = p + 4;
        nl = memchr(name, '\n', (size_t)(end - name));
        if (nl == NULL)
            return;
        next = nl + 1;
        while (next < end && !(end - next >= 5 && memcmp(next - 1, "\n--- ", 5) == 0))
            next++;
        if (name_ok(name, (size_t)(nl - name))) {
            snprintf(path, sizeof(path), "%s/%.*s", dir, (int)(nl - name), name);
            f = fopen(path, "wb");
            if (f != NULL) {
                /* the file's bytes end before the newline of the next "--- " line */
                size_t n = (size_t)(next - (nl + 1));

                if (next < end && n > 0)
                    n--;
                fwrite(nl + 1, 1, n, f);
                fclose(f);
            }
        }
        p = next;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hsmca_audit_verify_result r1, r2;
    enum hsmca_err a, b;

    if (dir[0] == '\0') {
        const char *t = getenv("TMPDIR");
        char p[300];

        if (t == NULL || t[0] == '\0' || strlen(t) >= 200)
            t = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof(dir), "%s/fuzz-extract-XXXXXX", t);
        if (mkdtemp(dir) == NULL)
            abort();
        snprintf(p, sizeof(p), "%s/checkpoints", dir);
        if (mkdir(p, 0700) != 0)
            abort();
        atexit(at_exit);
        hsmca_log_set_level(HSMCA_LOG_ERROR);
    }
    clean();
    write_files(data, size);
    a = hsmca_audit_verify_extract(dir, NULL, &r1);
    b = hsmca_audit_verify_extract(dir, NULL, &r2);
    if (a != b)
        abort();
    if (a >= 500 && a <= 599 && r1.why[0] == '\0')
        abort();
    if (a != HSMCA_OK && (a < 500 || a > 599) && a != HSMCA_E_NOMEM && a != HSMCA_E_IO &&
        a != HSMCA_E_TOO_LARGE && a != HSMCA_E_INVALID_ARG)
        abort();
    return 0;
}
