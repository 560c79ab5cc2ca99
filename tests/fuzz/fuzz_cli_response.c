/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_cli_response.c -- libFuzzer target for what `hsmca issue` and `issue-batch` read in an
 * answer body (src/hsmca/response.c; HTTP itself is the client library's): the first byte picks
 * 0 a problem+json body, 1 a JSON body given as a problem, 2 an issuance answer whose
 * "certificate" and "chain" become the PEM text. Invariants beyond "no crash": the problem text is
 * terminated, within its buffer, starts with "HTTP <status>" and holds no control character; the
 * chain text, when made, is as long as its parts and their newlines allow.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *body = data + 1;
    size_t len = size - 1, i;
    char out[512];

    if (size < 1)
        return 0;
    if (data[0] % 3 < 2) {
        memset(out, 'x', sizeof(out));
        cli_problem_text(503, data[0] % 3 == 0 ? "application/problem+json" : "application/json",
                         body, len, out, sizeof(out));
        if (memchr(out, '\0', sizeof(out)) == NULL || strncmp(out, "HTTP 503", 8) != 0)
            abort();
        for (i = 0; out[i] != '\0'; i++) {
            if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] == 0x7f)
                abort();
        }
    } else {
        json_t *j = json_loadb((const char *)body, len, 0, NULL);
        json_t *cert = json_object_get(j, "certificate"), *chain = json_object_get(j, "chain");
        char *t = cli_chain_text(cert, json_is_array(chain) ? chain : NULL);

        if (t != NULL) {
            size_t want = json_string_length(cert) + 1;
            json_t *v;

            json_array_foreach(json_is_array(chain) ? chain : NULL, i, v) want +=
                json_string_length(v) + 1;
            if (strlen(t) > want)
                abort();
        }
        free(t);
        json_decref(j);
    }
    return 0;
}
