/* SPDX-License-Identifier: Apache-2.0
 *
 * b64.h -- base64 (RFC 4648 section 4: the standard alphabet, padded) for the formats this
 * project writes and reads back: approvals, requests, envelopes, the quorum's audit details.
 * The decoder is strict: one text per byte string (no whitespace, no missing or extra padding,
 * no non-zero bits after the last byte), so a signature or a key has exactly one encoding and
 * an auditor's re-encoding matches what was signed and logged.
 */
#ifndef HSMCA_B64_H
#define HSMCA_B64_H

#include <stddef.h>

#include "hsmca/error.h"

/* Encode len bytes of in; NUL-terminated, malloc'd (free()), NULL when out of memory. */
char *hsmca_b64_encode(const unsigned char *in, size_t len);

/*
 * Decode s (NUL-terminated) strictly into at most max bytes. On HSMCA_OK *out (malloc'd, free())
 * holds *out_len bytes. HSMCA_E_BAD_ENCODING for anything but the canonical encoding of 1..max
 * bytes (an empty text too), HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_b64_decode(const char *s, size_t max, unsigned char **out,
                                                size_t *out_len);

#endif
