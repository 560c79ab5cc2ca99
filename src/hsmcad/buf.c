/* SPDX-License-Identifier: Apache-2.0
 *
 * buf.c -- the daemon's growable text buffer (buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/gbuf.h"

/* Room for n more bytes and the NUL, at most HSMCAD_BUF_MAX in all; 0 on success. */
static int
reserve(struct hsmcad_buf *b, size_t n)
{
    if (b->err)
        return -1;
    if (n > HSMCAD_BUF_MAX - b->len ||
        hsmca_grow(&b->p, &b->cap, b->len + n + 1, 1, HSMCAD_BUF_MAX + 1) != HSMCA_OK) {
        b->err = 1;
        return -1;
    }
    return 0;
}

void
hsmcad_buf_put(struct hsmcad_buf *b, const char *s, size_t n)
{
    if (reserve(b, n) != 0)
        return;
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void
hsmcad_buf_str(struct hsmcad_buf *b, const char *s)
{
    hsmcad_buf_put(b, s, strlen(s));
}

void
hsmcad_buf_printf(struct hsmcad_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = 1;
        return;
    }
    if (reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void
hsmcad_buf_json_str(struct hsmcad_buf *b, const char *s)
{
    static const char short_esc[] = "\"\\\b\f\n\r\t";
    const char *run = s, *k;

    hsmcad_buf_put(b, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        hsmcad_buf_put(b, run, (size_t)(s - run));
        /* the two-character escapes jansson uses; \u00XX for the other control characters */
        k = strchr(short_esc, c);
        if (k != NULL)
            hsmcad_buf_put(b, (const char[]){'\\', "\"\\bfnrt"[k - short_esc]}, 2);
        else
            hsmcad_buf_put(b, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04X", c));
        run = s + 1;
    }
    hsmcad_buf_put(b, run, (size_t)(s - run));
    hsmcad_buf_put(b, "\"", 1);
}
