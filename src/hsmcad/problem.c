/* SPDX-License-Identifier: Apache-2.0
 *
 * problem.c -- build RFC 9457 application/problem+json bodies from an hsmca error code.
 * JSON out through jansson only (STYLE 23); the detail is bounded and sanitised here so no caller
 * can put raw untrusted bytes or an unbounded string into a response.
 */
#include "problem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy s into out, at most HSMCAD_PROBLEM_DETAIL_MAX bytes, control bytes as '?', cut on a UTF-8
 * boundary; invalid UTF-8 bytes become '?'. */
static void
sanitize(const char *s, char *out)
{
    size_t i = 0, o = 0, n = strlen(s);

    while (i < n && o < HSMCAD_PROBLEM_DETAIL_MAX) {
        unsigned char c = (unsigned char)s[i];
        size_t k = 0, j;

        if (c < 0x80) {
            out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0 && c >= 0xc2)
            k = 1;
        else if ((c & 0xf0) == 0xe0)
            k = 2;
        else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
            k = 3;
        for (j = 1; k != 0 && j <= k; j++) {
            if (i + j >= n || ((unsigned char)s[i + j] & 0xc0) != 0x80)
                k = 0;
        }
        if (k == 0) {
            out[o++] = '?';
            i++;
            continue;
        }
        if (o + k + 1 > HSMCAD_PROBLEM_DETAIL_MAX)
            break;
        memcpy(out + o, s + i, k + 1);
        o += k + 1;
        i += k + 1;
    }
    out[o] = '\0';
}

json_t *
hsmcad_problem_object(enum hsmca_err e, const char *detail, const char *instance)
{
    char type[128], det[HSMCAD_PROBLEM_DETAIL_MAX + 1];
    json_t *o;

    snprintf(type, sizeof(type), "%s%s", HSMCAD_PROBLEM_TYPE_PREFIX, hsmca_err_code(e));
    o = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", hsmca_err_title(e), "status",
                  hsmca_err_http_status(e), "code", hsmca_err_code(e));
    if (o == NULL)
        return NULL;
    if (detail != NULL && detail[0] != '\0') {
        sanitize(detail, det);
        if (json_object_set_new(o, "detail", json_string(det)) != 0)
            goto fail;
    }
    if (instance != NULL && instance[0] != '\0') {
        sanitize(instance, det);
        if (json_object_set_new(o, "instance", json_string(det)) != 0)
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

char *
hsmcad_problem_json(enum hsmca_err e, const char *detail, const char *instance, size_t *len_out)
{
    json_t *o = hsmcad_problem_object(e, detail, instance);
    char *s;

    if (o == NULL)
        return NULL;
    s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (s != NULL && len_out != NULL)
        *len_out = strlen(s);
    return s;
}
