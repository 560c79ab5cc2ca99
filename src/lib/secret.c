/* SPDX-License-Identifier: Apache-2.0
 *
 * secret.c -- secret bytes on OpenSSL's secure heap. Owns the heap's initialisation.
 * Never prints, logs or copies a secret outside secure memory.
 */
#include "hsmca/secret.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsmca/limits.h"

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

enum hsmca_err
hsmca_secret_read_pin_file(const char *path, struct hsmca_secret *out)
{
    unsigned char buf[HSMCA_PIN_MAX + 2];
    struct stat st;
    ssize_t n;
    size_t len;
    int fd;
    enum hsmca_err rc;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return HSMCA_E_IO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return HSMCA_E_IO;
    }
    if ((st.st_mode & 077) != 0 || st.st_uid != geteuid()) {
        close(fd);
        return HSMCA_E_PIN_FILE_MODE;
    }
    n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < 0) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return HSMCA_E_IO;
    }
    len = 0;
    while (len < (size_t)n && buf[len] != '\n' && buf[len] != '\r')
        len++;
    if (len < HSMCA_PIN_MIN || len > HSMCA_PIN_MAX)
        rc = HSMCA_E_PIN_INVALID;
    else
        rc = hsmca_secret_set(out, buf, len);
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}
