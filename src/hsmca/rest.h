/* SPDX-License-Identifier: Apache-2.0
 *
 * rest.h -- the hsmcad REST API as the online commands use it (over http_client.h): the
 * connection options every online command takes (--url --cert --key --cacert), the client made
 * from them, the DAC resources' paths and request bodies, and a refusal as one line of text.
 */
#ifndef HSMCA_CLI_REST_H
#define HSMCA_CLI_REST_H

#include <stddef.h>

#include <jansson.h>

#include "hsmca/error.h"

#include "http_client.h"

/* --url, --cert, --key, --cacert (cli.h's CLI_CONN_OPTS and CLI_CONN_GIVEN take them). */
struct rest_opts {
    const char *url, *cert, *key, *cacert;
};

/*
 * The client for o (timeout_s 0 = the client's default). On failure says why on stderr, after
 * "cmd: ", and returns the code.
 */
HSMCA_MUSTCHECK enum hsmca_err rest_client(const struct rest_opts *o, int timeout_s,
                                           const char *cmd, struct http_client **out);

/* "/v1/cas/<ca>/dacs<suffix>" into out; -1 if ca is no CA id or it does not fit. */
int rest_dacs_path(const char *ca, const char *suffix, char *out, size_t out_max);
/* The CSR as PEM text (DER is armoured here; PEM is passed as read); NULL if too large or out of
 * memory. Caller frees. */
char *rest_csr_pem(const unsigned char *buf, size_t len);
/* One DAC request's JSON {"csr", "request_id"?, "pid"? (pid >= 0, as 4 hex digits),
 * "dry_run"? (only when true)}; NULL on NOMEM. */
json_t *rest_dac_request(const char *csr_pem, const char *request_id, int pid, int dry_run);
/* "HTTP status: code: title: detail" of a refusal, or the status alone. */
void rest_problem_text(const struct http_response *r, char *out, size_t out_max);

#endif
