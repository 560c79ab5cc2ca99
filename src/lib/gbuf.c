/* SPDX-License-Identifier: Apache-2.0
 *
 * gbuf.c -- the one growable buffer with a hard maximum (hsmca/gbuf.h).
 */
#include "hsmca/gbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GROW_FIRST_BYTES 4096

enum hsmca_err
hsmca_grow(void *arrp, size_t *cap, size_t need, size_t elem, size_t max)
{
    size_t ncap;
    void *p, *np;

    if (arrp == NULL || cap == NULL || elem == 0)
        return HSMCA_E_INVALID_ARG;
    if (need <= *cap)
        return HSMCA_OK;
    if (need > max || need > SIZE_MAX / elem)
        return HSMCA_E_TOO_LARGE;
    ncap = *cap != 0 ? *cap : (GROW_FIRST_BYTES / elem != 0 ? GROW_FIRST_BYTES / elem : 1);
    while (ncap < need && ncap <= SIZE_MAX / 2)
        ncap *= 2;
    if (ncap < need)
        ncap = need;
    if (ncap > max)
        ncap = max;
    if (ncap > SIZE_MAX / elem)
        ncap = need;
    /* arrp is the address of any object pointer: read and written as bytes */
    memcpy(&p, arrp, sizeof(p));
    np = realloc(p, ncap * elem);
    if (np == NULL)
        return HSMCA_E_NOMEM;
    memcpy(arrp, &np, sizeof(np));
    *cap = ncap;
    return HSMCA_OK;
}

void
hsmca_gbuf_init(struct hsmca_gbuf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

enum hsmca_err
hsmca_gbuf_reserve(struct hsmca_gbuf *b, size_t n)
{
    if (b->err != HSMCA_OK)
        return b->err;
    if (n > b->max - b->len) {
        b->err = HSMCA_E_TOO_LARGE;
        return b->err;
    }
    /* the NUL after the bytes is one element more than max allows of them */
    b->err =
        hsmca_grow(&b->p, &b->cap, b->len + n + 1, 1, b->max == SIZE_MAX ? SIZE_MAX : b->max + 1);
    return b->err;
}

enum hsmca_err
hsmca_gbuf_put(struct hsmca_gbuf *b, const void *s, size_t n)
{
    if (hsmca_gbuf_reserve(b, n) != HSMCA_OK)
        return b->err;
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return HSMCA_OK;
}

enum hsmca_err
hsmca_gbuf_str(struct hsmca_gbuf *b, const char *s)
{
    return hsmca_gbuf_put(b, s, strlen(s));
}

enum hsmca_err
hsmca_gbuf_printf(struct hsmca_gbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->err != HSMCA_OK)
        return b->err;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = HSMCA_E_INTERNAL;
        return b->err;
    }
    if (hsmca_gbuf_reserve(b, (size_t)n) != HSMCA_OK)
        return b->err;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_gbuf_read_fd(struct hsmca_gbuf *b, int fd)
{
    for (;;) {
        unsigned char probe;
        ssize_t n;

        if (b->len == b->max) {
            /* full: one byte more than max is too large, the end of the input is not */
            n = read(fd, &probe, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                b->err = HSMCA_E_IO;
            else if (n > 0)
                b->err = HSMCA_E_TOO_LARGE;
            break;
        }
        if (hsmca_gbuf_reserve(b, 1) != HSMCA_OK)
            break;
        n = read(fd, b->p + b->len, b->cap - 1 - b->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            b->err = HSMCA_E_IO;
            break;
        }
        if (n == 0)
            break;
        b->len += (size_t)n;
        b->p[b->len] = '\0';
    }
    return b->err;
}

unsigned char *
hsmca_gbuf_take(struct hsmca_gbuf *b, size_t *len)
{
    unsigned char *p;

    if (b->err == HSMCA_OK && b->p == NULL)
        hsmca_gbuf_reserve(b, 0);
    if (b->err != HSMCA_OK) {
        hsmca_gbuf_free(b);
        return NULL;
    }
    p = b->p;
    p[b->len] = '\0'; /* reserved but never written, as after reading an empty input */
    if (len != NULL)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void
hsmca_gbuf_free(struct hsmca_gbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
