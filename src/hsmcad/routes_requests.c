/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_requests.c -- GET /v1/requests: the quorum requests, newest first, each with its view in
 * a person's terms (request_view.h: VID/PID in hex, times in ISO 8601 UTC, "1 of 2" approvals),
 * for `hsmca request list`. status=pending|executed|failed|expired, limit=1..500 (100).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/quorum.h"
#include "hsmca/request_view.h"
#include "hsmca/store_quorum.h"
#include "hsmca/util.h"

#include "hsmcad.h"
#include "routes.h"

#define LIST_DEFAULT 100
#define LIST_MAX 500

struct ids {
    unsigned n;
    char (*id)[HSMCA_QUORUM_ID_LEN + 1];
};

static enum hsmca_err
collect(void *arg, const struct hsmca_qrequest *q)
{
    struct ids *s = arg;

    snprintf(s->id[s->n++], sizeof(s->id[0]), "%s", q->id);
    return HSMCA_OK;
}

void
hsmcad_h_request_list(struct hsmcad_req *r)
{
    static const char *const allowed[] = {"status", "limit", NULL};
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    const char *status = hsmcad_req_query(r, "status"), *lim = hsmcad_req_query(r, "limit");
    const char *stored;
    struct ids s = {0, NULL};
    uint64_t limit = LIST_DEFAULT;
    json_t *items = NULL;
    enum hsmca_err rc;
    unsigned i;

    if (hsmcad_req_query_check(r, allowed) != HSMCA_OK ||
        (status != NULL && strcmp(status, "pending") != 0 && strcmp(status, "executed") != 0 &&
         strcmp(status, "failed") != 0 && strcmp(status, "cancelled") != 0 &&
         strcmp(status, "expired") != 0) ||
        (lim != NULL &&
         (hsmca_parse_u64(lim, strlen(lim), LIST_MAX, &limit) != HSMCA_OK || limit == 0))) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY,
                             "status=pending|executed|failed|cancelled|expired and limit=1..500, "
                             "once each");
        return;
    }
    if (ro == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, "no store handle");
        return;
    }
    /* an expired request is a pending one whose time ran out */
    stored = status == NULL ? "" : strcmp(status, "expired") == 0 ? "pending" : status;
    s.id = calloc(LIST_MAX, sizeof(*s.id));
    items = json_array();
    if (s.id == NULL || items == NULL) {
        rc = HSMCA_E_NOMEM;
        goto fail;
    }
    rc = hsmca_store_qrequest_list(ro, stored, (unsigned)limit, collect, &s);
    if (rc != HSMCA_OK)
        goto fail;
    for (i = 0; i < s.n; i++) {
        char *env = NULL;
        json_t *v = NULL;
        const char *st;

        if (hsmca_quorum_request_envelope(d->quorum, s.id[i], &env) != HSMCA_OK ||
            hsmca_request_view_envelope(env, strlen(env), &v) != HSMCA_OK) {
            free(env);
            continue; /* not readable now (e.g. removed tokens): left out, never guessed */
        }
        free(env);
        st = json_string_value(json_object_get(v, "status"));
        if (st == NULL || (status != NULL && strcmp(st, status) != 0)) {
            json_decref(v);
            continue;
        }
        json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:o}", "id", s.id[i], "op",
                                               json_string_value(json_object_get(v, "operation")),
                                               "status", st, "view", v));
    }
    free(s.id);
    hsmcad_reply_json(r, 200, json_pack("{s:o}", "items", items));
    return;
fail:
    free(s.id);
    json_decref(items);
    hsmcad_reply_problem(r, rc, NULL);
}
