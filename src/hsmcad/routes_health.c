/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_health.c -- GET /healthz (liveness: the process answers; touches no token), GET /readyz
 * (every token reachable through C_GetTokenInfo, the store readable with WAL + synchronous=FULL and
 * its file writable, the audit log open on a verified chain) and GET /metrics (Prometheus text).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsmca/audit.h"
#include "hsmca/token.h"

#include "hsmcad.h"
#include "problem.h"
#include "routes.h"

void
hsmcad_h_healthz(struct hsmcad_req *r)
{
    hsmcad_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static int
token_ok(struct hsmca_token *tok)
{
    struct hsmca_token_info ti;

    return tok != NULL && hsmca_token_info(tok, &ti) == HSMCA_OK;
}

int
hsmcad_readiness(struct hsmcad *d, json_t *checks)
{
    struct hsmca_store *ro = hsmcad_ro(d);
    json_t *cas = json_object();
    int ok = 1, t;
    unsigned i, n;

    t = token_ok(d->audit_tok);
    ok &= t;
    if (checks != NULL)
        json_object_set_new(checks, "audit_token", json_string(t ? "ok" : "unreachable"));
    n = __atomic_load_n(&d->ncas, __ATOMIC_ACQUIRE);
    for (i = 0; i < n; i++) {
        t = token_ok(d->cas[i].tok);
        ok &= t;
        if (cas != NULL)
            json_object_set_new(cas, d->cas[i].id, json_string(t ? "ok" : "unreachable"));
    }
    t = ro != NULL && hsmca_store_check_durable(ro) == HSMCA_OK && access(d->cfg.store, W_OK) == 0;
    ok &= t;
    if (checks != NULL) {
        json_object_set_new(checks, "ca_tokens", cas);
        cas = NULL;
        json_object_set_new(checks, "store", json_string(t ? "ok" : "not writable"));
    }
    t = d->audit != NULL;
    ok &= t;
    if (checks != NULL) {
        json_object_set_new(checks, "audit_chain", json_string(t ? "verified" : "not open"));
        if (d->audit != NULL)
            json_object_set_new(checks, "audit_size",
                                json_integer((json_int_t)hsmca_audit_size(d->audit)));
    }
    json_decref(cas);
    if (checks != NULL) {
        /* a CRL near or past its nextUpdate warns; it does not make the daemon unready
         * (docs/revocation.md) */
        unsigned warnings = 0;
        json_t *crls = hsmcad_crl_status(d, &warnings);

        if (crls != NULL)
            json_object_set_new(checks, "crls", crls);
        json_object_set_new(checks, "crl_warnings", json_integer((json_int_t)warnings));
    }
    __atomic_store_n(&d->ready, ok, __ATOMIC_RELAXED);
    return ok;
}

void
hsmcad_h_readyz(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    json_t *checks = json_object(), *body;

    if (checks == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        return;
    }
    if (hsmcad_readiness(d, checks)) {
        hsmcad_reply_json(r, 200, json_pack("{s:s, s:o}", "status", "ready", "checks", checks));
        return;
    }
    body = hsmcad_problem_object(HSMCA_E_HTTP_NOT_READY, "a readiness check failed; see checks",
                                 hsmcad_req_id(r));
    if (body == NULL || json_object_set_new(body, "checks", checks) != 0) {
        json_decref(body);
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_READY, NULL);
        return;
    }
    hsmcad_reply_problem_json(r, HSMCA_E_HTTP_NOT_READY, body);
}

void
hsmcad_h_metrics(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_audit_stats st;
    size_t len = 0;
    char *s;

    if (d->audit != NULL)
        hsmca_audit_stats(d->audit, &st);
    if (d->ckpt != NULL) {
        unsigned long runs, rewinds;

        hsmca_store_checkpointer_counts(d->ckpt, &runs, &rewinds);
        hsmcad_metrics_store(d->metrics, runs, rewinds);
    }
    s = hsmcad_metrics_render(d->metrics, d->audit != NULL ? &st : NULL,
                              __atomic_load_n(&d->ready, __ATOMIC_RELAXED), &len);
    if (s == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        return;
    }
    {
        char *c = hsmcad_crl_metrics(d);
        size_t cl = c != NULL ? strlen(c) : 0;
        char *both = c != NULL ? realloc(s, len + cl + 1) : NULL;

        if (both != NULL) {
            memcpy(both + len, c, cl + 1);
            s = both;
            len += cl;
        }
        free(c);
    }
    hsmcad_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", s, len);
}
