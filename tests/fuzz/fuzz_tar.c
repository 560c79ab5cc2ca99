/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_tar.c -- libFuzzer target for the strict ustar reader of `hsmca audit verify` (an extract
 * downloaded from GET /v1/audit/extract, or any file an auditor is handed). Invariants beyond "no
 * crash": an accepted archive's extract directory lies inside the private temporary directory,
 * a refused one leaves nothing behind, and tar_extract_remove removes everything. tar_extract
 * makes its directory under TMPDIR: unless TMPDIR is set, the target points it at /dev/shm (a
 * tmpfs) when that is a writable directory, so each input's mkdtemp, writes and removal cost no
 * disk I/O (on the disk, a run spent most of its time waiting for the file system).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tar_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int tmp_set;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char tmp[4200], dir[4200], why[300];
    struct stat sb;
    FILE *f;
    int rc;

    if (!tmp_set) {
        const char *t = getenv("TMPDIR");

        if ((t == NULL || t[0] == '\0') && access("/dev/shm", W_OK | X_OK) == 0)
            setenv("TMPDIR", "/dev/shm", 1);
        tmp_set = 1;
    }
    if (size == 0)
        return 0;
    f = fmemopen((void *)data, size, "rb");
    if (f == NULL)
        return 0;
    rc = tar_extract(f, tmp, sizeof(tmp), dir, sizeof(dir), why, sizeof(why));
    fclose(f);
    if (rc == 0) {
        if (strncmp(dir, tmp, strlen(tmp)) != 0 || stat(tmp, &sb) != 0 || !S_ISDIR(sb.st_mode))
            abort();
        {
            char keep[sizeof(tmp)];

            memcpy(keep, tmp, sizeof(keep));
            tar_extract_remove(tmp);
            if (tmp[0] != '\0' || stat(keep, &sb) == 0)
                abort();
        }
    } else if (tmp[0] != '\0' || why[0] == '\0') {
        abort();
    }
    return 0;
}
