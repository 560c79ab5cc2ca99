/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_issue.h -- the plumbing every door to the issuance engine shares (POST
 * /v1/cas/{ca}/dacs in routes_dacs.c, EST's simpleenroll in routes_est.c): the engine CA of the
 * path's {ca}, a refusal audited through the engine's limiter before the engine sees the request,
 * and one request handed to the engine with the connection suspended until its result is durable.
 */
#ifndef HSMCAD_ROUTES_ISSUE_H
#define HSMCAD_ROUTES_ISSUE_H

#include "hsmca/issue.h"

#include "server.h"

/* The issuance engine CA of the path's first parameter, or NULL (no such PAI, or it cannot
 * issue). */
struct hsmca_issue_ca *hsmcad_issuing_ca(struct hsmcad_req *r);

/*
 * A refusal before the engine, whose problem the caller has just replied: count it (metrics,
 * by code) and audit it through the engine's per-principal limiter (dac.refuse), the connection
 * suspended until the entry is durable. Without an engine the server audits it as usual.
 */
void hsmcad_issue_refused(struct hsmcad_req *r, enum hsmca_err e);

/*
 * Hand rq to the engine for the path's CA (ica): the connection is suspended; once the result is
 * durable (on the audit writer's thread) its receipt and metrics are recorded and reply(r, arg,
 * res, do_reply) runs back on the connection's worker, owning res (hsmca_issue_result_free) and
 * arg. Should the engine refuse the call itself, arg is freed and the reply is a problem.
 */
typedef void (*hsmcad_issue_reply_fn)(struct hsmcad_req *r, void *arg,
                                      struct hsmca_issue_result *res, int do_reply);
void hsmcad_issue_one(struct hsmcad_req *r, struct hsmca_issue_ca *ica,
                      const struct hsmca_issue_req *rq, hsmcad_issue_reply_fn reply, void *arg);

#endif
