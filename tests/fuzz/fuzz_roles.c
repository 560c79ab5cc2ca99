/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_roles.c -- libFuzzer target for the daemon's own files: the role bindings
 * (policies/roles.json, hsmcad_roles_parse) when the first byte is even, the daemon's config
 * (hsmcad_config_parse) when it is odd; the rest of the input is the file. Invariants beyond "no
 * crash": each parser answers OK or its own invalid code, the same way twice; a refusal leaves
 * its output NULL and says why; parsed bindings answer lookups.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data + 1;
    char why[256], why2[256];

    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        struct hsmcad_roles *r = NULL, *r2 = NULL;
        enum hsmca_err a, b;
        unsigned char fp[32];

        why[0] = '\0';
        a = hsmcad_roles_parse(text, size - 1, &r, why, sizeof(why));
        b = hsmcad_roles_parse(text, size - 1, &r2, why2, sizeof(why2));
        if (a != b || (a != HSMCA_OK && a != HSMCA_E_ROLES_INVALID && a != HSMCA_E_NOMEM))
            abort();
        if (a != HSMCA_OK && (r != NULL || why[0] == '\0'))
            abort();
        if (a == HSMCA_OK) {
            memset(fp, data[0], sizeof(fp));
            (void)hsmcad_roles_lookup_fp(r, fp);
            (void)hsmcad_roles_lookup(r, data, size);
        }
        hsmcad_roles_free(r);
        hsmcad_roles_free(r2);
    } else {
        struct hsmcad_config c, c2;
        enum hsmca_err a, b;

        why[0] = '\0';
        a = hsmcad_config_parse(text, size - 1, "/etc/hsmca", &c, why, sizeof(why));
        b = hsmcad_config_parse(text, size - 1, "/etc/hsmca", &c2, why2, sizeof(why2));
        if (a != b || (a != HSMCA_OK && a != HSMCA_E_CONFIG_INVALID))
            abort();
        if (a != HSMCA_OK && why[0] == '\0')
            abort();
        if (a == HSMCA_OK && (c.connections < 1 || c.timeout_s < 1 || c.store[0] == '\0' ||
                              memcmp(&c, &c2, sizeof(c)) != 0))
            abort();
    }
    return 0;
}
