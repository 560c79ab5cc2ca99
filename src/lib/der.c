/* SPDX-License-Identifier: Apache-2.0
 *
 * der.c -- the DER cursor with a sticky error (hsmca/der.h).
 */
#include "hsmca/der.h"

#include <string.h>

#include "hsmca/util.h"

void
hsmca_der_init(struct hsmca_der *d, const unsigned char *p, size_t len)
{
    d->p = p;
    d->end = p != NULL ? p + len : NULL;
    d->err = p == NULL;
}

void
hsmca_der_sub(struct hsmca_der *d, const struct hsmca_der_el *el)
{
    hsmca_der_init(d, el->v, el->len);
}

int
hsmca_der_read(struct hsmca_der *d, unsigned char tag, struct hsmca_der_el *el)
{
    struct hsmca_der_el e;

    memset(&e, 0, sizeof(e));
    if (!d->err && !hsmca_der_next(&d->p, d->end, tag, &e.v, &e.len, &e.tlv, &e.tlv_len))
        d->err = 1;
    if (d->err)
        memset(&e, 0, sizeof(e));
    if (el != NULL)
        *el = e;
    return !d->err;
}

int
hsmca_der_tag(struct hsmca_der *d)
{
    if (d->err || d->p >= d->end) {
        d->err = 1;
        return -1;
    }
    return d->p[0];
}

int
hsmca_der_end(struct hsmca_der *d)
{
    if (d->p != d->end)
        d->err = 1;
    return !d->err;
}
