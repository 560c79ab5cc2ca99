/* SPDX-License-Identifier: Apache-2.0
 *
 * http_client.h -- the small HTTPS client of the hsmca command for the online subcommands: one
 * keep-alive connection with a client certificate (mTLS), the server checked against a CA file and
 * the URL's host name, bounded responses (Content-Length or chunked). Never follows redirects,
 * never sends credentials other than the client certificate.
 */
#ifndef HSMCA_HTTP_CLIENT_H
#define HSMCA_HTTP_CLIENT_H

#include <stddef.h>

#include "hsmca/error.h"

/* Largest response body accepted (a batch of 1,000 DACs is well under 4 MiB). */
#define HTTP_RESPONSE_MAX (16u << 20)
/* Longest URL accepted. */
#define HTTP_URL_MAX 2048

struct http_client;

struct http_client_config {
    const char *url;    /* https://host[:port][/prefix] */
    const char *cert;   /* client certificate (PEM) */
    const char *key;    /* its private key (PEM, unencrypted) */
    const char *cacert; /* CA certificates that sign the server's certificate (PEM) */
    int timeout_s;      /* socket timeout; 0 = 60 */
};

/*
 * Prepare a client (the connection opens on the first request). On HSMCA_OK the caller frees *out
 * with http_client_free. Returns HSMCA_E_INVALID_ARG (not an https URL, or too long; why says
 * which), HSMCA_E_IO (a certificate or key file unreadable or not matching), HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err http_client_new(const struct http_client_config *cfg,
                                               struct http_client **out, char *why, size_t why_len);
void http_client_free(struct http_client *c);

struct http_response {
    int status;
    char content_type[128]; /* lower case, parameters cut ("application/json") */
    unsigned char *body;    /* NUL-terminated; owned by the client until the next request */
    size_t body_len;
};

/*
 * Send one request (path is appended to the URL's prefix and must start with '/') and read its
 * response. Reconnects once if a kept-alive connection was closed by the server before any byte
 * of the response arrived. Returns HSMCA_E_IO (connection, TLS or protocol failure; why says
 * which), HSMCA_E_TOO_LARGE (response body over HTTP_RESPONSE_MAX), HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err http_client_request(struct http_client *c, const char *method,
                                                   const char *path, const char *content_type,
                                                   const char *accept, const void *body,
                                                   size_t body_len, struct http_response *out,
                                                   char *why, size_t why_len);

#endif
