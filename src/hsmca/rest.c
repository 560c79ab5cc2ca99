/* SPDX-License-Identifier: Apache-2.0
 *
 * rest.c -- the hsmcad REST API as the online commands use it (rest.h).
 */
#include "rest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/limits.h"
#include "hsmca/util.h"

#include "response.h"

enum hsmca_err
rest_client(const struct rest_opts *o, int timeout_s, const char *cmd, struct http_client **out)
{
    struct http_client_config cfg;
    char why[512] = "";
    enum hsmca_err e;

    memset(&cfg, 0, sizeof(cfg));
    cfg.url = o->url;
    cfg.cert = o->cert;
    cfg.key = o->key;
    cfg.cacert = o->cacert;
    cfg.timeout_s = timeout_s;
    e = http_client_new(&cfg, out, why, sizeof(why));
    if (e != HSMCA_OK)
        fprintf(stderr, "%s: %s\n", cmd, why[0] ? why : hsmca_err_title(e));
    return e;
}

int
rest_dacs_path(const char *ca, const char *suffix, char *out, size_t out_max)
{
    if (!hsmca_ca_id_valid(ca))
        return -1;
    return snprintf(out, out_max, "/v1/cas/%s/dacs%s", ca, suffix) < (int)out_max ? 0 : -1;
}

char *
rest_csr_pem(const unsigned char *buf, size_t len)
{
    char *out;

    if (len >= 10 && memcmp(buf, "-----BEGIN", 10) == 0) {
        out = malloc(len + 1);
        if (out != NULL) {
            memcpy(out, buf, len);
            out[len] = '\0';
        }
        return out;
    }
    return len <= HSMCA_CSR_MAX ? hsmca_pem_armour("CERTIFICATE REQUEST", buf, len) : NULL;
}

json_t *
rest_dac_request(const char *csr_pem, const char *request_id, int pid, int dry_run)
{
    json_t *o = json_pack("{s:s}", "csr", csr_pem);
    char p[16];

    if (o == NULL)
        return NULL;
    if (request_id != NULL && json_object_set_new(o, "request_id", json_string(request_id)) != 0)
        goto fail;
    if (pid >= 0) {
        snprintf(p, sizeof(p), "%04X", (unsigned)pid & 0xffffu);
        if (json_object_set_new(o, "pid", json_string(p)) != 0)
            goto fail;
    }
    if (dry_run && json_object_set_new(o, "dry_run", json_true()) != 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

void
rest_problem_text(const struct http_response *r, char *out, size_t out_max)
{
    cli_problem_text(r->status, r->content_type, r->body, r->body_len, out, out_max);
}
