/* SPDX-License-Identifier: Apache-2.0
 *
 * secret.h -- PINs, shares and other secret bytes on OpenSSL's secure heap (STYLE 15).
 * A struct hsmca_secret owns len bytes of secure memory plus a terminating NUL (so a PIN can be
 * handed to APIs that want a C string). It never logs, prints or copies its bytes anywhere else.
 */
#ifndef HSMCA_SECRET_H
#define HSMCA_SECRET_H

#include <stddef.h>

#include "hsmca/error.h"

struct hsmca_secret {
    unsigned char *p; /* len bytes + NUL, on the secure heap; NULL when empty */
    size_t len;
};

/*
 * Initialise OpenSSL's secure heap (size bytes, a power of two; 0 picks 64 KiB). Call once at
 * start, before any secret is made. Idempotent. Returns HSMCA_E_SECURE_HEAP if the heap cannot be
 * set up (mlock limit); secrets then fall back to the ordinary heap, still wiped on free.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_secure_heap_init(size_t size);

/*
 * Make *out a secret of len bytes (len <= 65536) copied from src (src may be NULL: zero-filled).
 * On HSMCA_OK the caller frees *out with hsmca_secret_clear(). Returns HSMCA_E_NOMEM,
 * HSMCA_E_TOO_LARGE. CT: copies without branching on the bytes.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_secret_set(struct hsmca_secret *out, const void *src,
                                                size_t len);

/* Wipe and free the bytes of s; s itself becomes empty. NULL and empty secrets are fine. */
void hsmca_secret_clear(struct hsmca_secret *s);

/*
 * The PIN in the first line of the file at path (up to CR or LF), which must be a regular file,
 * not a symbolic link, owned by this user and readable by nobody else. Returns HSMCA_E_IO,
 * HSMCA_E_PIN_FILE_MODE (group or others may read it, or another user owns it),
 * HSMCA_E_PIN_INVALID (not HSMCA_PIN_MIN..HSMCA_PIN_MAX bytes), HSMCA_E_NOMEM. The read buffer is
 * wiped.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_secret_read_pin_file(const char *path,
                                                          struct hsmca_secret *out);

#endif
