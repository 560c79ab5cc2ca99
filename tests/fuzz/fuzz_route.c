/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_route.c -- libFuzzer target for the daemon's request-text parsers (src/hsmcad/
 * http_parse.c): the input is split at its first newline into a URL path and an Accept header.
 * Invariants beyond "no crash": matching is deterministic, every parameter of a match is 1..N
 * bytes of the allowed characters and occurs in the URL, and a match of the DAC route implies the
 * URL is exactly "/v1/cas/" + parameter + "/dacs". For Accept: every quality is within
 * 0..HSMCAD_Q_MAX, accepts agrees with it, and the negotiated pick is an offered type of the
 * highest quality (the first of equals) or -1 exactly when none has a quality above 0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf, *nl, *accept;
    char a[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1], b[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1];
    int ma, mb;

    if (size > 65536)
        return 0;
    buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    nl = strchr(buf, '\n');
    accept = nl != NULL ? nl + 1 : NULL;
    if (nl != NULL)
        *nl = '\0';
    ma = hsmcad_route_match("/v1/cas/{ca}/dacs", buf, a);
    mb = hsmcad_route_match("/v1/cas/{ca}/dacs", buf, b);
    if (ma != mb)
        abort();
    if (ma) {
        size_t n = strlen(a[0]), i;

        if (n == 0 || n > HSMCAD_PARAM_MAX || strcmp(a[0], b[0]) != 0)
            abort();
        for (i = 0; i < n; i++) {
            if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~:@+=-",
                       a[0][i]) == NULL)
                abort();
        }
        if (strcmp(a[0], ".") == 0 || strcmp(a[0], "..") == 0)
            abort();
        if (strncmp(buf, "/v1/cas/", 8) != 0 || strncmp(buf + 8, a[0], n) != 0 ||
            strcmp(buf + 8 + n, "/dacs") != 0)
            abort();
    }
    (void)hsmcad_route_match("/v1/requests/{id}/approvals", buf, a);
    if (hsmcad_accepts(accept, "application/json") != hsmcad_accepts(accept, "application/json"))
        abort();
    {
        static const char *const t[] = {"application/json", "application/pkix-cert",
                                        "application/pem-certificate-chain", "text/csv"};
        int q[4], best = -1, bq = 0, i, pick = hsmcad_accept_pick(accept, t, 4);

        for (i = 0; i < 4; i++) {
            q[i] = hsmcad_accept_quality(accept, t[i]);
            if (q[i] < 0 || q[i] > HSMCAD_Q_MAX || (q[i] > 0) != hsmcad_accepts(accept, t[i]))
                abort();
            if (q[i] > bq) {
                bq = q[i];
                best = i;
            }
        }
        if (pick != best)
            abort();
    }
    free(buf);
    return 0;
}
