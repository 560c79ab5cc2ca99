/* SPDX-License-Identifier: Apache-2.0
 *
 * request_view.h -- a quorum request in a person's terms, for whoever approves or manages it
 * (`hsmca approve`, `hsmca request show|list`, GET /v1/requests): VID and PID as 4 uppercase hex
 * digits, times in ISO 8601 UTC, an activation window's end and count, and one sentence saying
 * what the operation does. Only a view: what an approver signs is the request itself.
 */
#ifndef HSMCA_REQUEST_VIEW_H
#define HSMCA_REQUEST_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "hsmca/error.h"

/* "2026-12-07T04:50:00Z" for ms since the epoch (out >= 21 bytes; "?" if out of range). */
void hsmca_view_time(int64_t ms, char *out, size_t out_size);

/*
 * The view of operation op with params (as in the request): {"operation", "summary", and the
 * parameters in person's terms: "vid": "FFF1", "pid": "8000", "until": ISO 8601, "window":
 * {"until", "max_dacs"}, ...}. NULL when out of memory. Never fails on unexpected params: what it
 * does not know it shows as given.
 */
json_t *hsmca_request_view(const char *op, json_t *params);

/*
 * The view of a request envelope (GET /v1/requests/{id}): the request's own view plus "id",
 * "requester", "created", "expires", "status", "approvals" ("1 of 2"). HSMCA_E_QUORUM_ENVELOPE
 * when the text is not an envelope.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_request_view_envelope(const char *env, size_t len,
                                                           json_t **out);

/* The view as indented "key: value" lines for a terminal (malloc'd, NULL when out of memory). */
char *hsmca_request_view_text(json_t *view);

#endif
