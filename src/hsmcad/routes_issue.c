/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_issue.c -- the issuance plumbing of the routes (routes_issue.h). The engine's done
 * callback runs on the audit writer's thread: it only records the receipt and the metrics and
 * wakes the connection; the reply is made back on the connection's worker.
 */
#include "routes_issue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmcad.h"
#include "problem.h"

struct hsmca_issue_ca *
hsmcad_issuing_ca(struct hsmcad_req *r)
{
    struct hsmca_ca *c = hsmca_ca_find(hsmcad_req_daemon(r)->cas, hsmcad_req_param(r, 0));

    return c != NULL ? __atomic_load_n(&c->ica, __ATOMIC_ACQUIRE) : NULL;
}

static void
refuse_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct hsmcad_req *r = arg;

    if (rc == HSMCA_OK)
        hsmcad_req_receipt(r, receipt);
    else
        hsmcad_reply_problem(r, rc, "the refusal could not be audited");
    hsmcad_req_resume(r);
}

void
hsmcad_issue_refused(struct hsmcad_req *r, enum hsmca_err e)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    const struct hsmcad_principal *p = hsmcad_req_principal(r);
    const unsigned char *b;
    size_t blen;

    hsmcad_metrics_dac_refused(d->metrics, hsmcad_req_param(r, 0), e, 1);
    if (d->issuer == NULL)
        return; /* the server audits it */
    b = hsmcad_req_body(r, &blen);
    hsmcad_req_engine_audited(r);
    hsmcad_req_suspend(r);
    hsmca_issue_refuse(d->issuer, hsmcad_req_param(r, 0), p->name, hsmcad_role_name(p->role), e, b,
                       blen, refuse_done, r);
}

struct one {
    struct hsmcad_req *r;
    char ca[HSMCA_CA_ID_MAX + 1];
    hsmcad_issue_reply_fn reply;
    void *arg;
    struct hsmca_issue_result *res; /* set by one_done */
};

/* On the connection's worker (hsmcad_req_resume_later). */
static void
one_reply(struct hsmcad_req *r, void *arg, int do_reply)
{
    struct one *o = arg;

    o->reply(r, o->arg, o->res, do_reply);
    free(o);
}

/* On the audit writer's thread: the result is durable; wake the connection, nothing more. */
static void
one_done(void *arg, struct hsmca_issue_result *res)
{
    struct one *o = arg;
    struct hsmcad_req *r = o->r;
    struct hsmcad *d = hsmcad_req_daemon(r);

    if (res->has_receipt)
        hsmcad_req_receipt(r, &res->receipt);
    hsmcad_req_engine_audited(r);
    if (res->rc != HSMCA_OK)
        hsmcad_metrics_dac_refused(d->metrics, o->ca, res->rc, 1);
    else
        hsmcad_metrics_dac(d->metrics, o->ca, 0, 1);
    if (res->sign_us > 0)
        hsmcad_metrics_sign(d->metrics, res->sign_us);
    o->res = res;
    hsmcad_req_resume_later(r, one_reply, o);
}

void
hsmcad_issue_one(struct hsmcad_req *r, struct hsmca_issue_ca *ica, const struct hsmca_issue_req *rq,
                 hsmcad_issue_reply_fn reply, void *arg)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct one *o = calloc(1, sizeof(*o));

    if (o == NULL) {
        free(arg);
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        return;
    }
    o->r = r;
    o->reply = reply;
    o->arg = arg;
    snprintf(o->ca, sizeof(o->ca), "%s", hsmcad_req_param(r, 0));
    hsmcad_req_suspend(r);
    if (hsmca_issue_submit(d->issuer, ica, rq, one_done, o) != HSMCA_OK) {
        free(o);
        free(arg);
        hsmcad_reply_problem(r, HSMCA_E_INVALID_ARG, NULL);
        hsmcad_req_resume(r);
    }
}
