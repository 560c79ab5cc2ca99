/* SPDX-License-Identifier: Apache-2.0
 *
 * problem.h -- RFC 9457 problem details: the only place an error code becomes an HTTP body.
 * Members: type (urn:hsmca:problem:<code>), title, status, detail (bounded, never secret),
 * instance (the request's id), code (the stable hsmca_err_code name).
 */
#ifndef HSMCAD_PROBLEM_H
#define HSMCAD_PROBLEM_H

#include <stddef.h>

#include <jansson.h>

#include "hsmca/error.h"

#define HSMCAD_PROBLEM_DETAIL_MAX 256
#define HSMCAD_PROBLEM_TYPE_PREFIX "urn:hsmca:problem:"

/*
 * The problem object for e (detail and instance may be NULL; detail is cut to
 * HSMCAD_PROBLEM_DETAIL_MAX bytes at a UTF-8 boundary and control bytes are replaced).
 * Returns a new reference, NULL on NOMEM.
 */
json_t *hsmcad_problem_object(enum hsmca_err e, const char *detail, const char *instance);

/* The same, serialised compactly; caller frees with free(). NULL on NOMEM. */
char *hsmcad_problem_json(enum hsmca_err e, const char *detail, const char *instance,
                          size_t *len_out);

#endif
