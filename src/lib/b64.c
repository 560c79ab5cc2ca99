/* SPDX-License-Identifier: Apache-2.0
 *
 * b64.c -- strict base64 (b64.h). The decoder re-encodes what it decoded and compares: the one
 * canonical text passes, any other spelling of the same bytes is refused.
 */
#include "hsmca/b64.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

char *
hsmca_b64_encode(const unsigned char *in, size_t len)
{
    size_t n = 4 * ((len + 2) / 3) + 1;
    char *out;

    if (len > (size_t)0x7fffffff / 4 * 3)
        return NULL; /* EVP_EncodeBlock takes an int */
    out = malloc(n);
    if (out == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

enum hsmca_err
hsmca_b64_decode(const char *s, size_t max, unsigned char **out, size_t *out_len)
{
    size_t n = s != NULL ? strlen(s) : 0, pad = 0, len;
    unsigned char *buf;
    char *check;
    int r;

    if (out == NULL || out_len == NULL)
        return HSMCA_E_INVALID_ARG;
    if (n == 0 || n % 4 != 0 || n > 0x7fffffff || n / 4 * 3 > max + 2)
        return HSMCA_E_BAD_ENCODING;
    if (s[n - 1] == '=')
        pad++;
    if (s[n - 2] == '=')
        pad++;
    buf = malloc(n / 4 * 3 + 1);
    if (buf == NULL)
        return HSMCA_E_NOMEM;
    r = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
    if (r < 0 || (size_t)r < pad) {
        free(buf);
        return HSMCA_E_BAD_ENCODING;
    }
    len = (size_t)r - pad;
    check = hsmca_b64_encode(buf, len);
    if (check == NULL || strcmp(check, s) != 0 || len > max) {
        free(check);
        free(buf);
        return check == NULL ? HSMCA_E_NOMEM : HSMCA_E_BAD_ENCODING;
    }
    free(check);
    *out = buf;
    *out_len = len;
    return HSMCA_OK;
}
