/* SPDX-License-Identifier: Apache-2.0
 *
 * buf.h -- a growable text buffer for the daemon's generated bodies (metrics, CSV inventory, batch
 * replies). A failed allocation sets err and makes every later call a no-op; the text is kept
 * NUL-terminated; the owner frees p with free(). It grows by the library's rule (hsmca_grow,
 * hsmca/gbuf.h) and never past HSMCAD_BUF_MAX bytes: an append beyond sets err.
 */
#ifndef HSMCAD_BUF_H
#define HSMCAD_BUF_H

#include <stddef.h>

/* The largest body the daemon generates (the inventory CSV of a very large fleet included). */
#define HSMCAD_BUF_MAX ((size_t)1 << 30)

struct hsmcad_buf {
    char *p;
    size_t len, cap;
    int err;
};

/* Append s[0..n). */
void hsmcad_buf_put(struct hsmcad_buf *b, const char *s, size_t n);
/* Append the NUL-terminated s. */
void hsmcad_buf_str(struct hsmcad_buf *b, const char *s);
/* Append printf-formatted text. */
void hsmcad_buf_printf(struct hsmcad_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string, quotes included, escaped as jansson escapes it (UTF-8 as is). */
void hsmcad_buf_json_str(struct hsmcad_buf *b, const char *s);

#endif
