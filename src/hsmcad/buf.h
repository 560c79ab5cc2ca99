/* SPDX-License-Identifier: Apache-2.0
 *
 * buf.h -- a growable text buffer for the daemon's generated bodies (metrics, CSV inventory, batch
 * replies), and a certificate's PEM armour. A failed allocation sets err and makes every later call
 * a no-op; the text is kept NUL-terminated; the owner frees p with free().
 */
#ifndef HSMCAD_BUF_H
#define HSMCAD_BUF_H

#include <stddef.h>

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
/* The PEM armour (CERTIFICATE) of len bytes of DER, in a new string the caller frees with free();
 * NULL if len is 0 or over 1 MiB, or on allocation failure. The DER is not parsed. */
char *hsmcad_der_to_pem(const unsigned char *der, size_t len);

#endif
