/* SPDX-License-Identifier: Apache-2.0
 *
 * der.h -- a DER cursor with a sticky error, for the small fixed-shape structures hsmca reads
 * (CSRs, the certificates it builds).
 *
 * A parser reads element after element without checking each read: the first read that fails
 * (wrong tag, bad or non-minimal length, past the end) sets err, and from then on every read
 * fails too and hands back an empty element, so the parser looks at the cursor once, where it
 * must decide. An element's contents open as a cursor of their own (hsmca_der_sub), which starts
 * in error when the element was not read. Reads follow hsmca_der_next (util.h): low tag numbers,
 * a minimal definite length of at most two length bytes.
 */
#ifndef HSMCA_DER_H
#define HSMCA_DER_H

#include <stddef.h>

struct hsmca_der {
    const unsigned char *p, *end;
    int err; /* sticky: 1 once a read failed */
};

/* One element read: its contents and the whole element; all NULL and 0 after a failed read. */
struct hsmca_der_el {
    const unsigned char *v, *tlv;
    size_t len, tlv_len;
};

/* A cursor over [p, p + len). */
void hsmca_der_init(struct hsmca_der *d, const unsigned char *p, size_t len);
/* A cursor over el's contents, in error if el was not read. */
void hsmca_der_sub(struct hsmca_der *d, const struct hsmca_der_el *el);
/* Read the next element, which must have tag; el (may be NULL) receives it. 1 while no read of
 * d has failed. */
int hsmca_der_read(struct hsmca_der *d, unsigned char tag, struct hsmca_der_el *el);
/* The next element's tag, -1 (and err set) at the end or after an error. */
int hsmca_der_tag(struct hsmca_der *d);
/* 1 when no read failed and every byte was read; sets err when bytes are left. */
int hsmca_der_end(struct hsmca_der *d);

#endif
