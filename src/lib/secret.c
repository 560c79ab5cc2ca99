/* SPDX-License-Identifier: Apache-2.0
 *
 * secret.c -- secret bytes on OpenSSL's secure heap. Owns the heap's initialisation.
 * Never prints, logs or copies a secret outside secure memory.
 */
#include "hsmca/secret.h"

#include <string.h>

#include <openssl/crypto.h>

#define SECRET_MAX 65536

enum hsmca_err
hsmca_secure_heap_init(size_t size)
{
    if (CRYPTO_secure_malloc_initialized())
        return HSMCA_OK;
    if (size == 0)
        size = 64 * 1024;
    if (CRYPTO_secure_malloc_init(size, 32) == 0)
        return HSMCA_E_SECURE_HEAP;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_secret_set(struct hsmca_secret *out, const void *src, size_t len)
{
    unsigned char *p;

    if (out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > SECRET_MAX)
        return HSMCA_E_TOO_LARGE;
    p = OPENSSL_secure_zalloc(len + 1);
    if (p == NULL)
        return HSMCA_E_NOMEM;
    if (src != NULL && len > 0)
        memcpy(p, src, len);
    out->p = p;
    out->len = len;
    return HSMCA_OK;
}

void
hsmca_secret_clear(struct hsmca_secret *s)
{
    if (s == NULL || s->p == NULL)
        return;
    OPENSSL_secure_clear_free(s->p, s->len + 1);
    s->p = NULL;
    s->len = 0;
}
