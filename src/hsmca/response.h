/* SPDX-License-Identifier: Apache-2.0
 *
 * response.h -- what the CLI reads in hsmcad's answers, apart from HTTP itself: the text of a
 * problem+json refusal and the PEM chain of a JSON issuance answer. Bodies come from the network,
 * so these take any bytes (tests/fuzz/fuzz_cli_response.c).
 */
#ifndef HSMCA_CLI_RESPONSE_H
#define HSMCA_CLI_RESPONSE_H

#include <stddef.h>

#include <jansson.h>

/* "HTTP status: code: title: detail" of a problem+json (or JSON) body, or the status alone, into
 * out[0..out_max) (always terminated). ctype: the answer's media type, lower case, no parameters.
 */
void cli_problem_text(int status, const char *ctype, const unsigned char *body, size_t len,
                      char *out, size_t out_max);

/* The certificate PEM and the chain's PEMs (strings of the array chain, which may be NULL) of an
 * issuance answer, each ended by a newline. NULL if cert or a chain member is not a string, or
 * out of memory; else free(). */
char *cli_chain_text(json_t *cert, json_t *chain);

#endif
