/* SPDX-License-Identifier: Apache-2.0
 *
 * bounds.h -- the caps on the time bounds an operation may ask for (policies/bounds.json,
 * docs/hardening.md): how far ahead a ca.activate window may end, and how long a quorum request
 * may wait for its approvals. A request beyond a cap is refused with 400 time-bound-exceeded,
 * the cap named in the problem (cap_s).
 */
#ifndef HSMCAD_BOUNDS_H
#define HSMCAD_BOUNDS_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"

#define HSMCAD_BOUNDS_MAX 4096                  /* bytes of the file */
#define HSMCAD_WINDOW_MAX_S_DEFAULT 7776000u    /* 90 days */
#define HSMCAD_WINDOW_MAX_S_LIMIT 315360000u    /* 10 years */
#define HSMCAD_REQUEST_TTL_MAX_S_DEFAULT 86400u /* 24 h, the quorum module's own limit */

struct hsmcad_bounds {
    uint64_t window_max_s;      /* ca.activate: until - now, in seconds */
    uint64_t request_ttl_max_s; /* POST /v1/requests: ttl_s */
};

/* The defaults above. */
void hsmcad_bounds_defaults(struct hsmcad_bounds *b);

/*
 * Parse {"version": 1, "ca.activate": {"window_max_s": N}, "quorum_request": {"ttl_max_s": N}}
 * (both sections optional, nothing else; window_max_s 60..10 years, ttl_max_s 60..86400) into *b
 * (defaults first). HSMCA_E_CONFIG_INVALID with a reason in why otherwise.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_bounds_parse(const char *text, size_t len,
                                                   struct hsmcad_bounds *b, char *why,
                                                   size_t why_len);

/* Read the file at path and parse it. */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_bounds_load(const char *path, struct hsmcad_bounds *b,
                                                  char *why, size_t why_len);

#endif
