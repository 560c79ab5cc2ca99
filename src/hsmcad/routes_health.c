/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_health.c -- GET /healthz (liveness: the process answers; touches no token), GET /readyz
 * (every token reachable through C_GetTokenInfo, the store readable with WAL + synchronous=FULL and
 * its file writable, the audit log open on a verified chain) and GET /metrics (Prometheus text).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsmca/audit.h"
#include "hsmca/custody.h"
#include "hsmca/token.h"

#include "buf.h"
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

/* A token's readiness: "ok", or its fault (tokens.c) with what to do, as one string. */
static int
token_check(struct hsmcad *d, struct hsmca_token *tok, const char *fault_buf, json_t *faults,
            const char *label, const char *ca, json_t **out)
{
    char fault[HSMCAD_FAULT_MAX];
    int ok;

    hsmca_ca_lock(d->cas);
    snprintf(fault, sizeof(fault), "%s", fault_buf);
    hsmca_ca_unlock(d->cas);
    if (fault[0] == '\0' && !token_ok(tok))
        snprintf(fault, sizeof(fault), "%s", tok == NULL ? "missing" : "removed");
    ok = fault[0] == '\0';
    *out = json_string(ok ? "ok" : fault);
    if (!ok && faults != NULL) {
        json_t *f = json_pack("{s:s, s:s, s:s}", "token", label, "fault", fault, "action",
                              hsmcad_token_fault_action(fault));

        if (f != NULL && ca != NULL)
            json_object_set_new(f, "ca", json_string(ca));
        json_array_append_new(faults, f);
    }
    return ok;
}

/* The token label of a pkcs11: URI (the URI itself if it names none). */
static const char *
uri_label(const char *uri, struct hsmca_uri *u)
{
    if (hsmca_uri_parse(uri, strlen(uri), u) == HSMCA_OK && (u->have & HSMCA_URI_HAVE_TOKEN))
        return u->token;
    return uri;
}

int
hsmcad_readiness(struct hsmcad *d, json_t *checks)
{
    struct hsmca_store *ro = hsmcad_ro(d);
    json_t *cas = json_object(), *faults = json_array(), *v = NULL;
    struct hsmca_uri u;
    uint64_t unsigned_n;
    int ok = 1, t, failing = 0;
    unsigned i, n;

    t = token_check(d, d->audit_tok, d->audit_fault, faults, uri_label(d->cfg.audit_token, &u),
                    NULL, &v);
    ok &= t;
    if (checks != NULL)
        json_object_set_new(checks, "audit_token", v);
    else
        json_decref(v);
    n = hsmca_ca_count(d->cas);
    for (i = 0; i < n; i++) {
        struct hsmca_ca *c = hsmca_ca_at(d->cas, i);

        t = token_check(d, __atomic_load_n(&c->tok, __ATOMIC_ACQUIRE), c->fault, faults,
                        uri_label(c->token_uri, &u), c->id, &v);
        ok &= t;
        if (cas != NULL)
            json_object_set_new(cas, c->id, v);
        else
            json_decref(v);
    }
    /* DACs stop while too much of the log lies beyond the last signed checkpoint */
    unsigned_n = hsmca_audit_unsigned(d->audit, &failing);
    t = !(failing && unsigned_n > d->cfg.max_unsigned_entries); /* as issue.c decides */
    ok &= t;
    if (checks != NULL) {
        json_object_set_new(checks, "audit_unsigned", json_integer((json_int_t)unsigned_n));
        json_object_set_new(checks, "audit_checkpoints",
                            json_string(!t        ? "issuance-stopped"
                                        : failing ? "failing"
                                                  : "ok"));
        json_object_set_new(checks, "token_faults", faults);
        faults = NULL;
    }
    json_decref(faults);
    t = ro != NULL && hsmca_store_check_durable(ro) == HSMCA_OK &&
        (hsmca_store_is_pg(ro) || access(d->cfg.store, W_OK) == 0);
    ok &= t;
    if (checks != NULL) {
        json_object_set_new(checks, "ca_tokens", cas);
        cas = NULL;
        json_object_set_new(checks, "store", json_string(t ? "ok" : "not writable"));
    }
    /* tokens whose PIN rotation was interrupted stay reachable by the quorum: named, not unready */
    if (checks != NULL && ro != NULL) {
        struct hsmca_custody_doubt dbt;

        if (hsmca_custody_in_doubt(ro, &dbt) == HSMCA_OK && dbt.n != 0) {
            json_t *l = json_array();

            for (i = 0; l != NULL && i < dbt.n; i++)
                json_array_append_new(l, json_string(dbt.label[i]));
            json_object_set_new(checks, "tokens_in_doubt", l);
            json_object_set_new(checks, "recovery",
                                json_string("a PIN rotation was interrupted: the next quorum "
                                            "operation on these tokens confirms their PIN"));
        }
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
    struct hsmcad_buf b;
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
    /* the CRL gauges appended, or (out of memory) left out whole */
    b = (struct hsmcad_buf){s, len, len + 1, 0};
    hsmcad_crl_metrics(d, &b);
    if (b.err) {
        b.len = len;
        b.p[len] = '\0';
    }
    hsmcad_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
}
