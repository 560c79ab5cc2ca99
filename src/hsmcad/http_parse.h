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

/* Qualities are in thousandths: q=1 is HSMCAD_Q_MAX, q=0.5 is 500. */
#define HSMCAD_Q_MAX 1000

/*
 * The quality (0..HSMCAD_Q_MAX) the Accept header value accept gives type ("a/b"), RFC 9110
 * 12.5.1: the most specific media range that names it decides (a/b over a/star over star/star;
 * of two equally specific ranges, the higher q). Ranges compare case-insensitively, without
 * their parameters other than q. A range with a malformed q is ignored; a type no range names
 * gets 0. NULL, empty or blank accept gives every type HSMCAD_Q_MAX.
 */
int hsmcad_accept_quality(const char *accept, const char *type);

/*
 * Content negotiation: of types[0..n) (the server's order of preference), the index of the one
 * with the highest quality under accept, the first of equals; -1 when all have quality 0 (406).
 */
int hsmcad_accept_pick(const char *accept, const char *const *types, unsigned n);

/* Does accept admit type at all (quality > 0)? */
int hsmcad_accepts(const char *accept, const char *type);

#endif
