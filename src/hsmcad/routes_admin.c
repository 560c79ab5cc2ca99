/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_admin.c -- POST /v1/admin/reload: the admin's SIGHUP (docs/reload.md). The reload
 * writes its own audit entry (config.reload, or config.reload.refuse with the file and the
 * reason), whose receipt the reply carries.
 */
#include <jansson.h>

#include "hsmcad.h"
#include "problem.h"
#include "routes.h"

void
hsmcad_h_reload(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    const struct hsmcad_principal *p = hsmcad_req_principal(r);
    struct hsmca_audit_receipt receipt;
    enum hsmca_err rc, cause = HSMCA_OK;
    json_t *report = NULL, *prob;
    char why[512];

    rc = hsmcad_reload(d, "api", p->name, hsmcad_role_name(p->role), &report, &cause, why,
                       sizeof(why), &receipt);
    if (rc == HSMCA_OK || rc == HSMCA_E_RELOAD_REFUSED) {
        hsmcad_req_engine_audited(r);
        hsmcad_req_receipt(r, &receipt);
    }
    if (rc == HSMCA_E_RELOAD_REFUSED) {
        prob = hsmcad_problem_object(rc, why, hsmcad_req_id(r));
        if (prob != NULL)
            json_object_set_new(prob, "cause", json_string(hsmca_err_code(cause)));
        hsmcad_reply_problem_json(r, rc, prob);
        return;
    }
    if (rc != HSMCA_OK) {
        json_decref(report);
        hsmcad_reply_problem(r, rc, "the reload's audit entry could not be written");
        return;
    }
    hsmcad_reply_json(r, 200, report);
}
