/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_audit.c -- GET /v1/audit/extract?from=&to=: a signed extract of the audit log (entries,
 * the checkpoints around and in the range with signatures, the audit certificate, the approver
 * sets in force, verify.sh) as one ustar archive, built by the audit module in a temporary
 * directory and streamed from its files in constant memory. At most
 * limits.extract_max_entries requested entries per reply; a longer range gets a Link rel="next".
 */
#include <stdlib.h>
#include <string.h>

#include "hsmca/audit.h"
#include "hsmca/util.h"

#include "hsmcad.h"
#include "routes.h"

#define HSMCAD_NEXT_LINK_MAX 128

static ssize_t
tar_read(void *arg, uint64_t pos, char *buf, size_t max)
{
    return hsmca_audit_tar_read(arg, pos, (unsigned char *)buf, max);
}

static void
tar_free(void *arg)
{
    hsmca_audit_tar_free(arg);
}

void
hsmcad_h_audit_extract(struct hsmcad_req *r)
{
    static const char *const allowed[] = {"from", "to", NULL};
    struct hsmcad *d = hsmcad_req_daemon(r);
    const char *s;
    uint64_t from = 1, to = 0, head, end;
    struct hsmca_audit_tar *tar = NULL;
    struct hsmcad_stream *st = NULL;
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
    /* one extract holds at most extract_max_entries requested entries (docs/hardening.md): the
     * bundle is built in memory, so a whole log in one reply would cost its size in RSS. A longer
     * range ends early, and the Link header names the next part. */
    head = hsmca_audit_size(d->audit);
    end = to != 0 ? to : head;
    if (end >= from && end - from >= d->cfg.extract_max_entries) {
        char link[HSMCAD_NEXT_LINK_MAX];

        end = from + d->cfg.extract_max_entries - 1;
        if (to != 0)
            snprintf(link, sizeof(link), "</v1/audit/extract?from=%llu&to=%llu>; rel=\"next\"",
                     (unsigned long long)end + 1, (unsigned long long)to);
        else
            snprintf(link, sizeof(link), "</v1/audit/extract?from=%llu>; rel=\"next\"",
                     (unsigned long long)end + 1);
        hsmcad_reply_header(r, "Link", link);
        to = end;
    }
    rc = hsmca_audit_extract_tar_open(d->audit, from, to, NULL, &tar);
    if (rc == HSMCA_OK && (st = calloc(1, sizeof(*st))) == NULL)
        rc = HSMCA_E_NOMEM;
    if (rc != HSMCA_OK) {
        hsmca_audit_tar_free(tar);
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    st->read = tar_read;
    st->free = tar_free;
    st->arg = tar;
    hsmcad_reply_header(r, "Content-Disposition", "attachment; filename=\"hsmca-extract.tar\"");
    hsmcad_reply_stream(r, 200, "application/x-tar", hsmca_audit_tar_size(tar), st);
}
