/* SPDX-License-Identifier: Apache-2.0
 *
 * http_parse.h -- the daemon's parsers of untrusted request text that libmicrohttpd leaves to the
 * application: matching a URL path against a route pattern (with its {parameters}) and deciding
 * whether an Accept header admits a media type. Pure functions, no allocation, bounded output.
 */
#ifndef HSMCAD_HTTP_PARSE_H
#define HSMCAD_HTTP_PARSE_H

#include <stddef.h>

#include "hsmca/limits.h"

#define HSMCAD_PARAMS_MAX 2
#define HSMCAD_PARAM_MAX HSMCA_REQUEST_ID_MAX

/*
 * Does url (NUL-terminated path, no query) match pattern ("/v1/cas/{ca}/dacs": a {name} matches
 * one segment of 1..HSMCAD_PARAM_MAX bytes of [A-Za-z0-9._~:@+=-], not "." or "..")? On a match
 * returns 1 and writes the parameters in order into params (NUL-terminated); else 0 (params
 * unspecified).
 */
int hsmcad_route_match(const char *pattern, const char *url,
                       char params[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1]);

/*
 * Does the Accept header value accept (NULL or empty: anything) admit type ("a/b")? Media ranges
 * are compared case-insensitively without their parameters; star/star and a/star admit. A range
 * with q=0 does not admit.
 */
int hsmcad_accepts(const char *accept, const char *type);

#endif
