/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_uri.c -- libFuzzer target for the RFC 7512 URI parser (config and CLI input).
 * Invariants beyond "no crash": a parse is deterministic, every accepted string field is
 * NUL-terminated within its PKCS#11 bound, and the id fits its buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hsmca_uri a, b;
    enum hsmca_err ra, rb;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ra = hsmca_uri_parse((const char *)data, size, &a);
    rb = hsmca_uri_parse((const char *)data, size, &b);
    if (ra != rb)
        abort();
    if (ra == HSMCA_OK) {
        if (memcmp(&a, &b, sizeof(a)) != 0)
            abort();
        if (strlen(a.token) > HSMCA_TOKEN_LABEL_MAX || strlen(a.serial) > HSMCA_TOKEN_SERIAL_MAX ||
            strlen(a.object) > HSMCA_KEY_LABEL_MAX || a.id_len > HSMCA_KEY_ID_MAX)
            abort();
        if (size < 7 || memcmp(data, "pkcs11:", 7) != 0)
            abort();
    } else if (ra != HSMCA_E_URI_INVALID && ra != HSMCA_E_INVALID_ARG) {
        abort();
    }
    return 0;
}
