/* SPDX-License-Identifier: Apache-2.0
 *
 * gbuf.h -- the one growable buffer, with a hard maximum.
 *
 * hsmca_grow is the growth rule every growable array in the code follows: room for `need`
 * elements of `elem` bytes, doubling from about 4 KiB, never more than `max` elements; a request
 * over max is refused with HSMCA_E_TOO_LARGE and leaves the array as it was (never exceeded).
 *
 * struct hsmca_gbuf is a byte buffer on that rule whose errors are sticky: after the first refusal
 * (HSMCA_E_TOO_LARGE or HSMCA_E_NOMEM in err) every append is a no-op, so a producer appends
 * without checking and looks at err once at the end. Its bytes are always followed by a NUL that
 * len does not count, so text in it is a C string. The owner frees p with free() (or
 * hsmca_gbuf_free) or takes it with hsmca_gbuf_take.
 */
#ifndef HSMCA_GBUF_H
#define HSMCA_GBUF_H

#include <stddef.h>

#include "hsmca/error.h"

struct hsmca_gbuf {
    unsigned char *p;
    size_t len; /* bytes held, the NUL after them not counted */
    size_t cap; /* bytes allocated, the NUL's included */
    size_t max; /* the most bytes it ever holds */
    enum hsmca_err err;
};

/* Make the array whose pointer is at arrp (the address of any object pointer, as &s->items) room
 * for at least need elements of elem bytes (*cap counts elements), at most max. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_grow(void *arrp, size_t *cap, size_t need, size_t elem,
                                          size_t max);

/* An empty buffer that holds at most max bytes (nothing allocated yet). */
void hsmca_gbuf_init(struct hsmca_gbuf *b, size_t max);
/* Room for n more bytes and the NUL; the sticky err (HSMCA_OK when there is room). */
enum hsmca_err hsmca_gbuf_reserve(struct hsmca_gbuf *b, size_t n);
/* Append s[0..n); the sticky err. */
enum hsmca_err hsmca_gbuf_put(struct hsmca_gbuf *b, const void *s, size_t n);
/* Append the NUL-terminated s. */
enum hsmca_err hsmca_gbuf_str(struct hsmca_gbuf *b, const char *s);
/* Append printf-formatted text. */
enum hsmca_err hsmca_gbuf_printf(struct hsmca_gbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Read fd to its end into b: HSMCA_E_TOO_LARGE if it holds more than b's max, HSMCA_E_IO on a
 * read error (EINTR retried). */
enum hsmca_err hsmca_gbuf_read_fd(struct hsmca_gbuf *b, int fd);
/* Hand the bytes (NUL-terminated, never NULL) to the caller, who frees them; b is emptied.
 * NULL with b->err set when the buffer failed or the allocation of an empty one did. */
unsigned char *hsmca_gbuf_take(struct hsmca_gbuf *b, size_t *len);
/* Free the bytes and empty b (its max kept). */
void hsmca_gbuf_free(struct hsmca_gbuf *b);

#endif
