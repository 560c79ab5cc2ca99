/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_audit.c -- GET /v1/audit/extract?from=&to=: a signed extract of the audit log (entries,
 * the checkpoints around and in the range with signatures, the audit certificate, the approver
 * sets in force, verify.sh) as one ustar archive, built by the audit module.
 */
#include <stdlib.h>
#include <string.h>

#include "hsmca/audit.h"
#include "hsmca/util.h"

#include "hsmcad.h"
#include "routes.h"

void
hsmcad_h_audit_extract(struct hsmcad_req *r)
{
    static const char *const allowed[] = {"from", "to", NULL};
    struct hsmcad *d = hsmcad_req_daemon(r);
    const char *s;
    uint64_t from = 1, to = 0;
    unsigned char *tar = NULL;
    size_t len = 0;
    enum hsmca_err rc;

    if (hsmcad_req_query_check(r, allowed) != HSMCA_OK) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY, "allowed once each: from, to");
        return;
    }
    s = hsmcad_req_query(r, "from");
    if (s != NULL && (hsmca_parse_u64(s, strlen(s), INT64_MAX, &from) != HSMCA_OK || from == 0)) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY, "from is an entry seq >= 1");
        return;
    }
    s = hsmcad_req_query(r, "to");
    if (s != NULL &&
        (hsmca_parse_u64(s, strlen(s), INT64_MAX, &to) != HSMCA_OK || (to != 0 && to < from))) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY, "to is an entry seq >= from (0 = head)");
        return;
    }
    if (!hsmcad_req_accepts(r, "application/x-tar")) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_ACCEPTABLE, "application/x-tar");
        return;
    }
    if (d->audit == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_READY, NULL);
        return;
    }
    rc = hsmca_audit_extract_tar(d->audit, from, to, NULL, &tar, &len);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    hsmcad_reply_header(r, "Content-Disposition", "attachment; filename=\"hsmca-extract.tar\"");
    hsmcad_reply(r, 200, "application/x-tar", (char *)tar, len);
}
