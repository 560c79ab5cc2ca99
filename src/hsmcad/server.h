/* SPDX-License-Identifier: Apache-2.0
 *
 * server.h -- the HTTPS front of hsmcad: libmicrohttpd with GnuTLS, client certificates required,
 * a worker thread pool, body limits, routing, problem+json refusals, the audit receipt on every
 * response, and suspended connections for work that finishes on another thread (the audit
 * writer). Route handlers (routes_*.c) see only this interface, never microhttpd.h: they read the
 * request, call the core library, and set a reply.
 */
#ifndef HSMCAD_SERVER_H
#define HSMCAD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "hsmca/audit.h"
#include "hsmca/error.h"

#include "auth.h"
#include "http_parse.h"

struct hsmcad;
struct hsmcad_req;

typedef void (*hsmcad_handler_fn)(struct hsmcad_req *r);

#define HSMCAD_ROUTE_BODY 0x1u     /* the route takes a request body */
#define HSMCAD_ROUTE_BIG_BODY 0x2u /* up to limits.body_max (else HSMCAD_SMALL_BODY_MAX) */
#define HSMCAD_ROUTE_NO_AUDIT 0x4u /* health, readiness, metrics: no audit entry */

#define HSMCAD_SMALL_BODY_MAX 65536u

/* The authentication scheme of WWW-Authenticate on a 401: the API's only credential is a TLS
 * client certificate (OpenAPI's mutualTLS security scheme). */
#define HSMCAD_AUTH_SCHEME "MutualTLS"

struct hsmcad_route {
    const char *method;
    const char *pattern; /* "/v1/cas/{ca}/dacs": a {name} matches one segment */
    const char *action;  /* audit action and metrics label, e.g. "cas.list" */
    unsigned roles;      /* HSMCAD_ROLE_* mask */
    int ca_bound;        /* the first parameter is a CA an operator must be bound to */
    unsigned flags;
    const char *const *ctypes; /* accepted request Content-Types (NULL-terminated), if BODY */
    hsmcad_handler_fn fn;
};

/* The route table (routes.c) and its length. */
extern const struct hsmcad_route hsmcad_routes[];
extern const unsigned hsmcad_nroutes;

/* ---- for route handlers ---- */
struct hsmcad *hsmcad_req_daemon(struct hsmcad_req *r);
const struct hsmcad_principal *hsmcad_req_principal(struct hsmcad_req *r);
/* SHA-256 of the client certificate's SubjectPublicKeyInfo (32 bytes), or NULL. */
const unsigned char *hsmcad_req_spki_sha256(struct hsmcad_req *r);
/* Path parameter i (0-based, in pattern order); "" if absent. Checked: [A-Za-z0-9._~:@+=-]. */
const char *hsmcad_req_param(struct hsmcad_req *r, unsigned i);
/* A request header or query argument (NULL if absent). Borrowed until the request ends. */
const char *hsmcad_req_header(struct hsmcad_req *r, const char *name);
/* How many times the request carries the header name (case-insensitive). */
unsigned hsmcad_req_header_count(struct hsmcad_req *r, const char *name);
const char *hsmcad_req_query(struct hsmcad_req *r, const char *name);
/* Refuse query arguments other than the NULL-terminated allowed names (and repeated ones). */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_req_query_check(struct hsmcad_req *r,
                                                      const char *const *allowed);
/* The media type of Content-Type without parameters, lower case ("" if absent). */
const char *hsmcad_req_ctype(struct hsmcad_req *r);
/* Whether the Accept header admits type (absent Accept, star/star and type/star admit). */
int hsmcad_req_accepts(struct hsmcad_req *r, const char *type);
/*
 * Negotiate the reply's media type among types[0..n) (the route's order of preference) by the
 * Accept header and its q-values (hsmcad_accept_pick): the index, or -1 (answer 406). With more
 * than one type the reply carries "Vary: Accept", refusals included.
 */
int hsmcad_req_negotiate(struct hsmcad_req *r, const char *const *types, unsigned n);
const unsigned char *hsmcad_req_body(struct hsmcad_req *r, size_t *len);
/* The request's id ("r-<n>"), used as problem instance. */
const char *hsmcad_req_id(struct hsmcad_req *r);

/* Replies (the last call wins). body is taken over (freed with free()). */
void hsmcad_reply(struct hsmcad_req *r, int status, const char *ctype, char *body, size_t len);
/* Serialise j (reference taken) compactly with sorted keys. */
void hsmcad_reply_json(struct hsmcad_req *r, int status, json_t *j);
void hsmcad_reply_problem(struct hsmcad_req *r, enum hsmca_err e, const char *detail);
/* A problem object built by the caller (hsmcad_problem_object plus extension members; reference
 * taken) for code e. */
void hsmcad_reply_problem_json(struct hsmcad_req *r, enum hsmca_err e, json_t *problem);
/* A body produced piece by piece (constant memory): read copies up to max bytes at pos into buf and
 * returns how many, 0 at the end, -1 on an error (the connection is then closed); free(arg) runs
 * once the reply is done or dropped. */
struct hsmcad_stream {
    ssize_t (*read)(void *arg, uint64_t pos, char *buf, size_t max);
    void (*free)(void *arg);
    void *arg;
};
/* Reply status with a streamed body of size bytes; takes st (malloc'd) whatever happens. */
void hsmcad_reply_stream(struct hsmcad_req *r, int status, const char *ctype, uint64_t size,
                         struct hsmcad_stream *st);
/* An extra response header (up to four per request, the same name replaces; name and value
 * copied, value <= 255 bytes). */
void hsmcad_reply_header(struct hsmcad_req *r, const char *name, const char *value);
/* Audit detail of the entry the server writes for this request (JSON object text; copied). */
void hsmcad_req_audit_detail(struct hsmcad_req *r, const char *target, const char *detail_json);
/* Record the receipt of an entry the handler's engine wrote (SELF_AUDIT routes). */
void hsmcad_req_receipt(struct hsmcad_req *r, const struct hsmca_audit_receipt *rc);
/* The engine audited this request itself (or its limiter only counted a refusal): no entry by the
 * server. */
void hsmcad_req_engine_audited(struct hsmcad_req *r);

/*
 * Work finishing on another thread: suspend before handing the request off; the other thread sets
 * the reply and calls hsmcad_req_resume exactly once. The response leaves on the next turn of the
 * connection's worker. While suspended the request may not be touched by the handler's thread.
 */
void hsmcad_req_suspend(struct hsmcad_req *r);
void hsmcad_req_resume(struct hsmcad_req *r);
/*
 * Resume, leaving the reply to fn(r, arg, 1), called on the connection's worker before the
 * response leaves: the audit writer, which resumes DAC requests, then only wakes them, and PEM and
 * JSON are made on the worker threads. If the connection ends first, fn(r, arg, 0) only frees.
 */
void hsmcad_req_resume_later(struct hsmcad_req *r, void (*fn)(struct hsmcad_req *, void *, int),
                             void *arg);

/* ---- for main.c ---- */
struct hsmcad_server;

/*
 * Start serving d on the configured address with TLS (PEM texts, borrowed until stop). On HSMCA_OK
 * *port_out is the bound port. Returns HSMCA_E_TLS_SETUP, HSMCA_E_LISTEN, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_server_start(struct hsmcad *d, const char *cert_pem,
                                                   const char *key_pem, const char *ca_pem,
                                                   struct hsmcad_server **out, unsigned *port_out);
/* Refuse new work (503 shutting-down), wait up to wait_ms for suspended requests, stop, free. */
void hsmcad_server_stop(struct hsmcad_server *s, unsigned wait_ms);

#endif
