/* SPDX-License-Identifier: Apache-2.0
 *
 * replay.c -- runs a libFuzzer target over its seed files under plain `meson test`, so every seed
 * (and every crash found and added as a seed) is checked on every build, without clang.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
main(int argc, char **argv)
{
    int i, n = 0;

    for (i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *de;

        if (d == NULL) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        while ((de = readdir(d)) != NULL) {
            char path[4096];
            unsigned char *buf = NULL;
            size_t len = 0;

            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (hsmca_read_file(path, 1 << 20, &buf, &len) != HSMCA_OK) {
                fprintf(stderr, "replay: cannot read %s\n", path);
                closedir(d);
                return 1;
            }
            LLVMFuzzerTestOneInput(buf, len);
            free(buf);
            n++;
        }
        closedir(d);
    }
    printf("replayed %d seeds\n", n);
    return n > 0 ? 0 : 1;
}
