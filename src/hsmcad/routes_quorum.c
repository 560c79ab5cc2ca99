/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_quorum.c -- POST /v1/requests (an admin asks for a quorum operation), GET
 * /v1/requests/{id} (the envelope approvers sign), POST /v1/requests/{id}/approvals (an approver's
 * signed approval with its re-sealed shares; the request executes once the threshold is met) and
 * GET /v1/approvers. The checks, PIN handling and audit entries are the quorum module's; the
 * side effects (tokens by label, new CAs, activation windows) are the CA registry's (ca.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/audit.h"
#include "hsmca/log.h"
#include "hsmca/quorum.h"
#include "hsmca/request_view.h"

#include "hsmcad.h"
#include "hsmcad_mdl.h"
#include "problem.h"
#include "routes.h"

#define REQUEST_TTL_DEFAULT_S 3600

/* ---- handlers ---- */

static void
who_of(struct hsmcad_req *r, struct hsmca_quorum_principal *w)
{
    const struct hsmcad_principal *p = hsmcad_req_principal(r);

    w->name = p->name;
    w->role = hsmcad_role_name(p->role);
    w->key_sha256 = hsmcad_req_spki_sha256(r);
}

/* A refusal naming the cap (policies/bounds.json) in its detail and as cap_s. */
static void
refuse_bound(struct hsmcad_req *r, uint64_t cap_s, const char *what, const char *key)
{
    char detail[256];
    json_t *p;

    snprintf(detail, sizeof(detail), "%s is capped at %llu s (policies/bounds.json %s)", what,
             (unsigned long long)cap_s, key);
    p = hsmcad_problem_object(HSMCA_E_HTTP_TIME_BOUND, detail, hsmcad_req_id(r));
    if (p != NULL)
        json_object_set_new(p, "cap_s", json_integer((json_int_t)cap_s));
    hsmcad_reply_problem_json(r, HSMCA_E_HTTP_TIME_BOUND, p);
}

/* 1 (and the reply made) when the request asks for a time bound beyond its cap. */
static int
beyond_bounds(struct hsmcad_req *r, struct hsmcad *d, const char *op, json_t *params,
              json_int_t ttl_s)
{
    json_t *until = json_object_get(params, "until");

    if ((uint64_t)ttl_s > d->bounds.request_ttl_max_s) {
        refuse_bound(r, d->bounds.request_ttl_max_s, "a quorum request's ttl_s",
                     "quorum_request.ttl_max_s");
        return 1;
    }
    if ((strcmp(op, "ca.activate") == 0 || strcmp(op, "mdl.activate") == 0) &&
        json_is_integer(until) && json_integer_value(until) > hsmcad_now_ms() &&
        (uint64_t)(json_integer_value(until) - hsmcad_now_ms()) / 1000 > d->bounds.window_max_s) {
        refuse_bound(r, d->bounds.window_max_s, "an activation window (until - now)",
                     "ca.activate.window_max_s");
        return 1;
    }
    return 0;
}

void
hsmcad_h_request_create(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_quorum_principal who;
    struct hsmca_audit_checkpoint cp;
    struct hsmca_audit_receipt receipt;
    const unsigned char *b;
    size_t blen;
    json_t *body = NULL, *params = NULL, *env = NULL;
    json_error_t jerr;
    const char *op = NULL;
    json_int_t ttl_s = REQUEST_TTL_DEFAULT_S;
    char *params_s = NULL, *env_s = NULL;
    char id[HSMCA_QUORUM_ID_LEN + 1], loc[64];
    int have_cp;
    enum hsmca_err rc;

    memset(&cp, 0, sizeof(cp));
    b = hsmcad_req_body(r, &blen);
    body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL ||
        json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s, s:o, s?I}", "op", &op, "params", &params,
                       "ttl_s", &ttl_s) != 0 ||
        !json_is_object(params) || ttl_s < 1 || ttl_s > HSMCA_QUORUM_TTL_MAX_MS / 1000) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST,
                             "expected {\"op\": string, \"params\": object, \"ttl_s\"?: 1..86400}");
        goto out;
    }
    if (beyond_bounds(r, d, op, params, ttl_s))
        goto out;
    {
        char why[256];

        /* refused before any approver is asked; the server audits the refusal */
        if (hsmcad_request_precheck(d, op, params, why, sizeof(why))) {
            hsmcad_reply_problem(r, HSMCA_E_QUORUM_PARAMS, why);
            goto out;
        }
    }
    params_s = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    if (params_s == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    who_of(r, &who);
    have_cp = hsmca_audit_latest_checkpoint(d->audit, &cp) == HSMCA_OK;
    rc = hsmca_quorum_request_create(d->quorum, &who, op, params_s, (int64_t)ttl_s * 1000,
                                     have_cp ? cp.text : NULL, have_cp ? cp.sig : NULL,
                                     have_cp ? cp.sig_len : 0, id, &receipt);
    hsmcad_req_engine_audited(r); /* the quorum module audits requests and their refusals */
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        goto out;
    }
    hsmcad_req_receipt(r, &receipt);
    if (hsmca_quorum_request_envelope(d->quorum, id, &env_s) == HSMCA_OK)
        env = json_loads(env_s, 0, NULL);
    snprintf(loc, sizeof(loc), "/v1/requests/%s", id);
    hsmcad_reply_header(r, "Location", loc);
    hsmcad_reply_json(
        r, 201, json_pack("{s:s, s:o}", "id", id, "envelope", env != NULL ? env : json_null()));
out:
    free(env_s);
    free(params_s);
    hsmca_audit_checkpoint_clear(&cp);
    json_decref(body);
}

void
hsmcad_h_request_get(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    char *env = NULL;
    json_t *j, *view = NULL;
    enum hsmca_err rc;

    rc = hsmca_quorum_request_envelope(d->quorum, hsmcad_req_param(r, 0), &env);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, rc == HSMCA_E_NOT_FOUND ? "no request with that id" : NULL);
        return;
    }
    /* the envelope, plus the request in a person's terms ("view": VID/PID in hex, times in ISO
     * 8601 UTC, the window's count); approvers sign the request bytes, never the view */
    j = json_loads(env, 0, NULL);
    if (j != NULL && hsmca_request_view_envelope(env, strlen(env), &view) == HSMCA_OK) {
        json_object_set_new(j, "view", view);
        free(env);
        hsmcad_reply_json(r, 200, j);
        return;
    }
    json_decref(j);
    hsmcad_reply(r, 200, "application/json", env, strlen(env));
}

void
hsmcad_h_approval(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_quorum_principal who;
    struct hsmca_quorum_status st;
    struct hsmca_quorum_exec ex;
    const unsigned char *b;
    size_t blen;
    json_t *res = NULL;
    char *result = NULL;
    enum hsmca_err rc;

    b = hsmcad_req_body(r, &blen);
    if (blen > HSMCA_QUORUM_APPROVAL_MAX) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BODY_TOO_LARGE, NULL);
        return;
    }
    /* an approval is bound to its sender: the principal of the client certificate that submits
     * it must be the approver who signed it (docs/config.md); a relayed one is refused, and the
     * server audits the refusal (quorum.approve.refuse) */
    {
        json_t *a = json_loadb((const char *)b, blen, 0, NULL);
        const char *signer = json_string_value(json_object_get(a, "approver"));
        const struct hsmcad_principal *p = hsmcad_req_principal(r);
        char detail[256];

        if (signer != NULL && strcmp(signer, p->name) != 0) {
            snprintf(detail, sizeof(detail),
                     "the approval is signed by %.64s and submitted by %s: each approver submits "
                     "their own approval with their own client certificate",
                     signer, p->name);
            json_decref(a);
            hsmcad_reply_problem(r, HSMCA_E_QUORUM_APPROVAL_RELAYED, detail);
            return;
        }
        json_decref(a);
    }
    memset(&st, 0, sizeof(st));
    who_of(r, &who);
    rc = hsmca_quorum_approve(d->quorum, &who, hsmcad_req_param(r, 0), (const char *)b, blen, &st);
    hsmcad_req_engine_audited(r);
    if (rc == HSMCA_E_QUORUM_EPOCH_STALE) { /* say what to do (quorum_request.c) */
        char advice[512];

        hsmca_quorum_stale_advice(d->quorum, hsmcad_req_param(r, 0), advice, sizeof(advice));
        hsmcad_reply_problem(r, rc, advice);
        return;
    }
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    if (st.ready) {
        /* the profiles stay as they are while the operation runs (a reload waits) */
        pthread_rwlock_rdlock(&d->prof_lock);
        hsmcad_quorum_exec(d, &ex);
        rc = hsmca_quorum_execute(d->quorum, hsmcad_req_param(r, 0), &ex, &result);
        pthread_rwlock_unlock(&d->prof_lock);
        if (rc == HSMCA_E_QUORUM_EPOCH_STALE) {
            char advice[512];

            hsmca_quorum_stale_advice(d->quorum, hsmcad_req_param(r, 0), advice, sizeof(advice));
            hsmcad_reply_problem(r, rc, advice);
            return;
        }
        if (rc != HSMCA_OK) {
            hsmcad_reply_problem(r, rc, "the approval was recorded; the execution failed");
            return;
        }
        res = result != NULL ? json_loads(result, 0, NULL) : NULL;
        free(result);
    }
    hsmcad_reply_json(r, 200,
                      json_pack("{s:s, s:i, s:i, s:b, s:b, s:o}", "request_id",
                                hsmcad_req_param(r, 0), "approvals", (int)st.approvals, "threshold",
                                (int)st.threshold, "ready", st.ready, "executed", res != NULL,
                                "result", res != NULL ? res : json_null()));
}

/* POST /v1/requests/{id}/cancellation {"reason"?}: the admin withdraws a pending request. */
void
hsmcad_h_request_cancel(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_quorum_principal who;
    const unsigned char *b;
    size_t blen;
    json_t *body = NULL;
    const char *reason = NULL;
    enum hsmca_err rc;

    b = hsmcad_req_body(r, &blen);
    if (blen > 0) {
        body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, NULL);
        if (body == NULL ||
            json_unpack_ex(body, NULL, JSON_STRICT, "{s?s}", "reason", &reason) != 0 ||
            (reason != NULL && strlen(reason) > 256)) {
            json_decref(body);
            hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST,
                                 "expected no body or {\"reason\"?: string of at most 256}");
            return;
        }
    }
    if (strlen(hsmcad_req_param(r, 0)) != HSMCA_QUORUM_ID_LEN) {
        json_decref(body);
        hsmcad_reply_problem(r, HSMCA_E_NOT_FOUND, "no request with that id");
        return;
    }
    who_of(r, &who);
    rc = hsmca_quorum_cancel(d->quorum, &who, hsmcad_req_param(r, 0), reason);
    hsmcad_req_engine_audited(r); /* quorum.cancel, or its refusal, is the quorum module's */
    json_decref(body);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc,
                             rc == HSMCA_E_QUORUM_REQUEST_EXECUTED
                                 ? "the request is executed or closed already"
                                 : NULL);
        return;
    }
    hsmcad_reply_json(
        r, 200,
        json_pack("{s:s, s:s}", "request_id", hsmcad_req_param(r, 0), "status", "cancelled"));
}

void
hsmcad_h_approvers(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    char *s = NULL;
    enum hsmca_err rc = hsmca_quorum_approvers_json(d->quorum, &s);

    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    hsmcad_reply(r, 200, "application/json", s, strlen(s));
}

/* POST /v1/cas/{ca}/deactivation: close a PAI's window now (no quorum needed, docs/design.md). */
void
hsmcad_h_deactivate(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_quorum_principal who;
    struct hsmca_quorum_exec ex;
    enum hsmca_err rc;

    if (hsmca_ca_find(d->cas, hsmcad_req_param(r, 0)) == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
        return;
    }
    who_of(r, &who);
    hsmcad_quorum_exec(d, &ex);
    rc = hsmca_quorum_deactivate(d->quorum, &who, hsmcad_req_param(r, 0), &ex);
    hsmcad_req_engine_audited(r); /* ca.deactivate (or its refusal) is the quorum module's entry */
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    hsmcad_reply_json(r, 200, json_pack("{s:s, s:b}", "ca", hsmcad_req_param(r, 0), "active", 0));
}
