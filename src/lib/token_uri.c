/* SPDX-License-Identifier: Apache-2.0
 *
 * token_uri.c -- RFC 7512 PKCS#11 URIs: the strict parser hsmca_uri_parse.
 */
#include "hsmca/util.h"

#include "token_internal.h"

/* ---- RFC 7512 URIs ---- */

/* Percent-decode v[0..n) into out[0..max); *out_len gets the length. -1 on a bad escape/overflow.
 */
static int
pct_decode(const char *v, size_t n, unsigned char *out, size_t max, size_t *out_len)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];

        if (c == '%') {
            int hi, lo;

            if (n - i < 3)
                return -1;
            hi = hsmca_hex_digit(v[i + 1]);
            lo = hsmca_hex_digit(v[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c < 0x21 || c > 0x7e) {
            return -1; /* RFC 7512 values are percent-encoded outside the unreserved set */
        }
        if (o >= max)
            return -1;
        out[o++] = c;
    }
    *out_len = o;
    return 0;
}

struct uri_attr {
    const char *name;
    unsigned bit;
    size_t max; /* decoded bytes */
    int is_id;  /* binary, stored in id[] */
    size_t off; /* offset of the char[] field */
};

static const struct uri_attr uri_attrs[] = {
    {"token", HSMCA_URI_HAVE_TOKEN, HSMCA_TOKEN_LABEL_MAX, 0, offsetof(struct hsmca_uri, token)},
    {"manufacturer", HSMCA_URI_HAVE_MANUFACTURER, HSMCA_TOKEN_LABEL_MAX, 0,
     offsetof(struct hsmca_uri, manufacturer)},
    {"serial", HSMCA_URI_HAVE_SERIAL, HSMCA_TOKEN_SERIAL_MAX, 0,
     offsetof(struct hsmca_uri, serial)},
    {"model", HSMCA_URI_HAVE_MODEL, HSMCA_TOKEN_SERIAL_MAX, 0, offsetof(struct hsmca_uri, model)},
    {"object", HSMCA_URI_HAVE_OBJECT, HSMCA_KEY_LABEL_MAX, 0, offsetof(struct hsmca_uri, object)},
    {"id", HSMCA_URI_HAVE_ID, HSMCA_KEY_ID_MAX, 1, 0},
    {"type", HSMCA_URI_HAVE_TYPE, 15, 0, offsetof(struct hsmca_uri, type)},
};

static int
valid_type(const char *t)
{
    return strcmp(t, "private") == 0 || strcmp(t, "public") == 0 || strcmp(t, "cert") == 0 ||
           strcmp(t, "data") == 0 || strcmp(t, "secret-key") == 0;
}

enum hsmca_err
hsmca_uri_parse(const char *s, size_t len, struct hsmca_uri *out)
{
    struct hsmca_uri u;
    size_t i, start;
    int in_query = 0;

    if (s == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_URI_MAX)
        return HSMCA_E_URI_INVALID;
    if (len < 7 || memcmp(s, "pkcs11:", 7) != 0)
        return HSMCA_E_URI_INVALID;
    memset(&u, 0, sizeof(u));
    start = 7;
    for (i = 7; i <= len; i++) {
        const char *a, *eq;
        size_t alen, nlen, k;
        const struct uri_attr *at = NULL;
        unsigned char buf[HSMCA_KEY_ID_MAX + 1];
        size_t dlen;
        char sep = i < len ? s[i] : '\0';

        if (i < len && sep != ';' && sep != '?' && sep != '&')
            continue;
        if (i < len && sep == '?' && in_query)
            return HSMCA_E_URI_INVALID;
        if (i < len && sep == '&' && !in_query)
            return HSMCA_E_URI_INVALID;
        if (i < len && sep == ';' && in_query)
            return HSMCA_E_URI_INVALID;
        a = s + start;
        alen = i - start;
        start = i + 1;
        if (alen == 0) {
            /* "pkcs11:" alone, or "pkcs11:?..." are fine; an empty attribute elsewhere is not */
            if (a == s + 7 && (i == len || sep == '?')) {
                if (sep == '?')
                    in_query = 1;
                continue;
            }
            return HSMCA_E_URI_INVALID;
        }
        eq = memchr(a, '=', alen);
        if (eq == NULL)
            return HSMCA_E_URI_INVALID;
        nlen = (size_t)(eq - a);
        if (in_query) {
            /* query attributes: hsmca takes the module and PIN from its config, never here */
            if ((nlen == 9 && memcmp(a, "pin-value", 9) == 0))
                return HSMCA_E_URI_INVALID;
            if (nlen == 11 && memcmp(a, "module-path", 11) == 0) {
                if ((u.have & HSMCA_URI_HAVE_MODULE_PATH) ||
                    pct_decode(eq + 1, alen - nlen - 1, (unsigned char *)u.module_path,
                               sizeof(u.module_path) - 1, &dlen) != 0 ||
                    dlen == 0 || u.module_path[0] != '/' ||
                    memchr(u.module_path, '\0', dlen) != NULL)
                    return HSMCA_E_URI_INVALID;
                u.module_path[dlen] = '\0';
                u.have |= HSMCA_URI_HAVE_MODULE_PATH;
                if (sep == '?')
                    return HSMCA_E_URI_INVALID;
                continue;
            }
            if (!((nlen == 10 && memcmp(a, "pin-source", 10) == 0) ||
                  (nlen == 11 && memcmp(a, "module-name", 11) == 0)))
                return HSMCA_E_URI_INVALID;
            if (sep == '?')
                return HSMCA_E_URI_INVALID;
            continue;
        }
        for (k = 0; k < sizeof(uri_attrs) / sizeof(uri_attrs[0]); k++) {
            if (strlen(uri_attrs[k].name) == nlen && memcmp(uri_attrs[k].name, a, nlen) == 0) {
                at = &uri_attrs[k];
                break;
            }
        }
        if (at == NULL)
            return HSMCA_E_URI_INVALID; /* includes slot-id, slot-description, library-* */
        if (u.have & at->bit)
            return HSMCA_E_URI_INVALID;
        if (pct_decode(eq + 1, alen - nlen - 1, buf, at->max, &dlen) != 0 || dlen == 0)
            return HSMCA_E_URI_INVALID;
        if (at->is_id) {
            memcpy(u.id, buf, dlen);
            u.id_len = dlen;
        } else {
            char *field = (char *)&u + at->off;

            if (memchr(buf, '\0', dlen) != NULL)
                return HSMCA_E_URI_INVALID;
            memcpy(field, buf, dlen);
            field[dlen] = '\0';
            if (at->bit == HSMCA_URI_HAVE_TYPE && !valid_type(field))
                return HSMCA_E_URI_INVALID;
        }
        u.have |= at->bit;
        if (sep == '?')
            in_query = 1;
    }
    *out = u;
    return HSMCA_OK;
}

int
tok_matches(const struct hsmca_uri *u, const CK_TOKEN_INFO *ti)
{
    char buf[HSMCA_TOKEN_LABEL_MAX + 1];

    if (!(ti->flags & CKF_TOKEN_INITIALIZED))
        return 0;
    if (u->have & HSMCA_URI_HAVE_TOKEN) {
        tok_trim_copy(buf, sizeof(buf), ti->label, sizeof(ti->label));
        if (strcmp(buf, u->token) != 0)
            return 0;
    }
    if (u->have & HSMCA_URI_HAVE_SERIAL) {
        tok_trim_copy(buf, sizeof(buf), ti->serialNumber, sizeof(ti->serialNumber));
        if (strcmp(buf, u->serial) != 0)
            return 0;
    }
    if (u->have & HSMCA_URI_HAVE_MANUFACTURER) {
        tok_trim_copy(buf, sizeof(buf), ti->manufacturerID, sizeof(ti->manufacturerID));
        if (strcmp(buf, u->manufacturer) != 0)
            return 0;
    }
    if (u->have & HSMCA_URI_HAVE_MODEL) {
        tok_trim_copy(buf, sizeof(buf), ti->model, sizeof(ti->model));
        if (strcmp(buf, u->model) != 0)
            return 0;
    }
    return 1;
}
