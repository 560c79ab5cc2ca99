/* SPDX-License-Identifier: Apache-2.0
 *
 * response.c -- the CLI's reading of hsmcad's answer bodies (response.h).
 */
#include "response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "code: title: detail" of a problem+json body, or the status alone. */
void
cli_problem_text(int status, const char *ctype, const unsigned char *body, size_t len, char *out,
                 size_t out_max)
{
    json_t *p = NULL;
    const char *code = NULL, *title = NULL, *detail = NULL;

    if (ctype != NULL && body != NULL &&
        (strcmp(ctype, "application/problem+json") == 0 || strcmp(ctype, "application/json") == 0))
        p = json_loadb((const char *)body, len, 0, NULL);
    if (p != NULL) {
        code = json_string_value(json_object_get(p, "code"));
        title = json_string_value(json_object_get(p, "title"));
        detail = json_string_value(json_object_get(p, "detail"));
    }
    snprintf(out, out_max, "HTTP %d%s%s%s%s%s%s", status, code ? ": " : "", code ? code : "",
             title ? ": " : "", title ? title : "", detail ? ": " : "", detail ? detail : "");
    json_decref(p);
    /* the text goes to a terminal: no control characters from the network */
    for (char *c = out; out_max > 0 && *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
            *c = '?';
    }
}

/* certificate PEM + chain PEMs of a JSON issuance answer, concatenated. Caller frees. */
char *
cli_chain_text(json_t *cert, json_t *chain)
{
    size_t len, i, total;
    json_t *v;
    char *out;

    if (!json_is_string(cert))
        return NULL;
    total = json_string_length(cert) + 2;
    json_array_foreach(chain, i, v)
    {
        if (!json_is_string(v))
            return NULL;
        total += json_string_length(v) + 1;
    }
    out = malloc(total + 1);
    if (out == NULL)
        return NULL;
    len = json_string_length(cert);
    memcpy(out, json_string_value(cert), len);
    if (len > 0 && out[len - 1] != '\n')
        out[len++] = '\n';
    json_array_foreach(chain, i, v)
    {
        size_t l = json_string_length(v);

        memcpy(out + len, json_string_value(v), l);
        len += l;
        if (l > 0 && out[len - 1] != '\n')
            out[len++] = '\n';
    }
    out[len] = '\0';
    return out;
}
