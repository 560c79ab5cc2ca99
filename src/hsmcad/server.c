/* SPDX-License-Identifier: Apache-2.0
 *
 * server.c -- libmicrohttpd + GnuTLS: the only file that speaks HTTP and TLS. Owns the MHD daemon
 * (internal polling threads, a pool of two threads per core, suspend/resume), per-connection
 * principal (client certificate verified against the client CA, then looked up by SHA-256 in
 * roles.json), per-request state (three phases: route + authorize; consume the body; dispatch or
 * answer), the problem+json refusals and the Audit-Receipt header. Holds no PKI logic.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/gbuf.h"
#include "hsmca/log.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#include "gate.h"
#include "hsmcad.h"
#include "http_parse.h"
#include "problem.h"

#define HDR_VALUE_MAX 255
#define HDR_MAX 4 /* extra response headers per request (Location, Vary, Serial, ...) */
#define AUDIT_DETAIL_MAX 1024
/* libmicrohttpd's per-connection pool: request line, headers, read buffer (bodies are streamed to
 * the handler, so any request hsmcad takes fits). It zeroes the pool's unused part at every request
 * on a connection, so a bigger pool costs time per request: 64 KiB took about 2 % of the daemon's
 * CPU per DAC (tools/bench, perf), 16 KiB under 1 %. */
#define CONN_POOL 16384
/* A reply with up to CORK_MAX bytes of body leaves in one write (see cork_reply), when the
 * socket's send buffer has CORK_ROOM bytes free. */
#define CORK_MAX 16384
#define CORK_ROOM 65536

struct hsmcad_server {
    struct hsmcad *d;
    struct MHD_Daemon *mhd;
    int stopping;
    unsigned suspended; /* requests parked on other threads */
    uint64_t next_id;
    struct hsmcad_gate *gate; /* connections not yet authenticated (gate.h) */
};

/* Query parameters a request may carry: the routes take at most six, and libmicrohttpd's
 * connection pool cannot hold a few hundred (it closed the connection without a reply). */
#define QUERY_PARAMS_MAX 32

/* Per connection: who the peer is, decided once per TLS session. */
struct conn_ctx {
    int checked;
    int verified;                          /* the certificate chains to the client CA: fp is set */
    unsigned char fp[HSMCA_SHA256_LEN];    /* SHA-256 of the verified certificate's DER */
    struct hsmcad_roles *roles;            /* the table who was looked up in (a reference) */
    const struct hsmcad_principal *who;    /* borrowed from roles */
    char client[80];                       /* principal name, or "anon:<client address>" */
    char anon[64];                         /* "anon:<client address>" */
    char presented[HSMCA_SHA256_HEX_SIZE]; /* SHA-256 prefix of an unverified or unbound
                                              certificate, or "" */
    struct hsmcad_gate_node gate;
    int have_spki;
    unsigned char spki_sha256[HSMCA_SHA256_LEN];
};

enum req_state { RS_NEW, RS_BODY, RS_SUSPENDED, RS_READY, RS_DONE };

struct hsmcad_req {
    struct hsmcad_server *srv;
    struct MHD_Connection *conn;
    struct conn_ctx *cc;
    const struct hsmcad_route *rt; /* NULL: no route */
    unsigned rt_index;
    enum req_state state;
    char params[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1];
    char id[32];
    char ctype[64];
    uint64_t t0_us;
    size_t body_max;
    unsigned char *body;
    size_t body_len, body_cap;
    int body_too_large;
    /* reply */
    int status;
    char *resp;
    size_t resp_len;
    const char *resp_ctype;
    enum hsmca_err err; /* the refusal code when the reply is a problem */
    struct {
        char name[40], value[HDR_VALUE_MAX + 1];
    } hdr[HDR_MAX];
    struct hsmcad_stream *stream; /* a streamed body (hsmcad_reply_stream) instead of resp */
    uint64_t stream_size;
    char allow[32]; /* methods of the path, for a 405 */
    /* audit */
    char target[HSMCA_REQUEST_ID_MAX + 16];
    char *detail;
    int has_receipt;
    int engine_audited; /* the engine wrote (or deliberately only counted) the entry */
    struct hsmca_audit_receipt receipt;
    /* hsmcad_req_resume_later: the reply is made on the worker */
    void (*later)(struct hsmcad_req *, void *, int);
    void *later_arg;
    int whole;               /* the request, body and all, has been read */
    int query_overflow;      /* more than QUERY_PARAMS_MAX query parameters (dropped unparsed) */
    gnutls_session_t corked; /* the reply is held in the TLS layer until completed() */
    int fd;
};

/* ---- the request API for handlers ---- */

struct hsmcad *
hsmcad_req_daemon(struct hsmcad_req *r)
{
    return r->srv->d;
}

const struct hsmcad_principal *
hsmcad_req_principal(struct hsmcad_req *r)
{
    return r->cc != NULL ? r->cc->who : NULL;
}

const unsigned char *
hsmcad_req_spki_sha256(struct hsmcad_req *r)
{
    return r->cc != NULL && r->cc->have_spki ? r->cc->spki_sha256 : NULL;
}

const char *
hsmcad_req_param(struct hsmcad_req *r, unsigned i)
{
    return i < HSMCAD_PARAMS_MAX ? r->params[i] : "";
}

const char *
hsmcad_req_header(struct hsmcad_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct hcount {
    const char *name;
    unsigned n;
};

static enum MHD_Result
hcount_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct hcount *h = cls;

    (void)kind;
    (void)value;
    if (key != NULL && strcasecmp(key, h->name) == 0)
        h->n++;
    return MHD_YES;
}

unsigned
hsmcad_req_header_count(struct hsmcad_req *r, const char *name)
{
    struct hcount h = {name, 0};

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, hcount_one, &h);
    return h.n;
}

const char *
hsmcad_req_query(struct hsmcad_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct qcheck {
    const char *const *allowed;
    const char *seen[16];
    unsigned nseen;
    int bad;
};

static enum MHD_Result
qcheck_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct qcheck *q = cls;
    const char *const *a;
    unsigned i;

    (void)kind;
    (void)value;
    for (a = q->allowed; *a != NULL; a++) {
        if (strcmp(*a, key) == 0)
            break;
    }
    if (*a == NULL || q->nseen == 16) {
        q->bad = 1;
        return MHD_NO;
    }
    for (i = 0; i < q->nseen; i++) {
        if (q->seen[i] == *a) {
            q->bad = 1;
            return MHD_NO;
        }
    }
    q->seen[q->nseen++] = *a;
    return MHD_YES;
}

enum hsmca_err
hsmcad_req_query_check(struct hsmcad_req *r, const char *const *allowed)
{
    struct qcheck q;

    memset(&q, 0, sizeof(q));
    q.allowed = allowed;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, qcheck_one, &q);
    return q.bad ? HSMCA_E_HTTP_BAD_QUERY : HSMCA_OK;
}

const char *
hsmcad_req_ctype(struct hsmcad_req *r)
{
    return r->ctype;
}

int
hsmcad_req_accepts(struct hsmcad_req *r, const char *type)
{
    return hsmcad_accepts(hsmcad_req_header(r, MHD_HTTP_HEADER_ACCEPT), type);
}

const unsigned char *
hsmcad_req_body(struct hsmcad_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body != NULL ? r->body : (const unsigned char *)"";
}

const char *
hsmcad_req_id(struct hsmcad_req *r)
{
    return r->id;
}

static void
stream_free_cb(void *cls)
{
    struct hsmcad_stream *st = cls;

    if (st == NULL)
        return;
    if (st->free != NULL)
        st->free(st->arg);
    free(st);
}

static ssize_t
stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct hsmcad_stream *st = cls;
    ssize_t n = st->read(st->arg, pos, buf, max);

    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return n;
}

void
hsmcad_reply_stream(struct hsmcad_req *r, int status, const char *ctype, uint64_t size,
                    struct hsmcad_stream *st)
{
    hsmcad_reply(r, status, ctype, NULL, 0);
    r->stream = st;
    r->stream_size = size;
}

void
hsmcad_reply(struct hsmcad_req *r, int status, const char *ctype, char *body, size_t len)
{
    stream_free_cb(r->stream);
    r->stream = NULL;
    free(r->resp);
    r->status = status;
    r->resp_ctype = ctype;
    r->resp = body;
    r->resp_len = body != NULL ? len : 0;
    r->err = HSMCA_OK;
}

void
hsmcad_reply_json(struct hsmcad_req *r, int status, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    json_decref(j);
    if (s == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        return;
    }
    hsmcad_reply(r, status, "application/json", s, strlen(s));
}

void
hsmcad_reply_problem(struct hsmcad_req *r, enum hsmca_err e, const char *detail)
{
    size_t len = 0;
    char *s = hsmcad_problem_json(e, detail, r->id, &len);

    hsmcad_reply(r, hsmca_err_http_status(e), "application/problem+json", s, len);
    if (s == NULL)
        r->status = 503;
    r->err = e;
}

void
hsmcad_reply_problem_json(struct hsmcad_req *r, enum hsmca_err e, json_t *problem)
{
    char *s = problem != NULL ? json_dumps(problem, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    json_decref(problem);
    if (s == NULL) {
        hsmcad_reply_problem(r, e, NULL);
        return;
    }
    hsmcad_reply(r, hsmca_err_http_status(e), "application/problem+json", s, strlen(s));
    r->err = e;
}

void
hsmcad_reply_header(struct hsmcad_req *r, const char *name, const char *value)
{
    unsigned i;

    for (i = 0; i < HDR_MAX; i++) {
        if (r->hdr[i].name[0] == '\0' || strcasecmp(r->hdr[i].name, name) == 0)
            break;
    }
    if (i == HDR_MAX) {
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "header-dropped", "name=%s", name);
        return;
    }
    snprintf(r->hdr[i].name, sizeof(r->hdr[i].name), "%s", name);
    snprintf(r->hdr[i].value, sizeof(r->hdr[i].value), "%s", value);
}

static int
has_header(struct hsmcad_req *r, const char *name)
{
    unsigned i;

    for (i = 0; i < HDR_MAX; i++) {
        if (strcasecmp(r->hdr[i].name, name) == 0)
            return 1;
    }
    return 0;
}

int
hsmcad_req_negotiate(struct hsmcad_req *r, const char *const *types, unsigned n)
{
    if (n > 1)
        hsmcad_reply_header(r, "Vary", "Accept");
    return hsmcad_accept_pick(hsmcad_req_header(r, MHD_HTTP_HEADER_ACCEPT), types, n);
}

void
hsmcad_req_audit_detail(struct hsmcad_req *r, const char *target, const char *detail_json)
{
    if (target != NULL)
        snprintf(r->target, sizeof(r->target), "%s", target);
    free(r->detail);
    r->detail = detail_json != NULL ? strdup(detail_json) : NULL;
}

void
hsmcad_req_receipt(struct hsmcad_req *r, const struct hsmca_audit_receipt *rc)
{
    if (rc == NULL)
        return;
    r->receipt = *rc;
    r->has_receipt = 1;
}

void
hsmcad_req_engine_audited(struct hsmcad_req *r)
{
    r->engine_audited = 1;
}

void
hsmcad_req_suspend(struct hsmcad_req *r)
{
    r->state = RS_SUSPENDED;
    __atomic_fetch_add(&r->srv->suspended, 1, __ATOMIC_ACQ_REL);
    MHD_suspend_connection(r->conn);
}

void
hsmcad_req_resume(struct hsmcad_req *r)
{
    struct hsmcad_server *srv = r->srv;
    struct MHD_Connection *c = r->conn;

    __atomic_store_n(&r->state, RS_READY, __ATOMIC_RELEASE);
    MHD_resume_connection(c);
    __atomic_fetch_sub(&srv->suspended, 1, __ATOMIC_ACQ_REL);
}

void
hsmcad_req_resume_later(struct hsmcad_req *r, void (*fn)(struct hsmcad_req *, void *, int),
                        void *arg)
{
    r->later = fn;
    r->later_arg = arg; /* published to the worker by the release store in hsmcad_req_resume */
    hsmcad_req_resume(r);
}

/* ---- routing ---- */

/* Find the route; *method_mismatch set when the path exists with another method. */
static const struct hsmcad_route *
route(struct hsmcad_req *r, const char *method, const char *url, int *method_mismatch)
{
    unsigned i;
    char params[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1];

    *method_mismatch = 0;
    for (i = 0; i < hsmcad_nroutes; i++) {
        if (!hsmcad_route_match(hsmcad_routes[i].pattern, url, params))
            continue;
        if (strcmp(hsmcad_routes[i].method, method) != 0 &&
            !(strcmp(method, "HEAD") == 0 && strcmp(hsmcad_routes[i].method, "GET") == 0)) {
            size_t n = strlen(r->allow);

            *method_mismatch = 1;
            snprintf(r->allow + n, sizeof(r->allow) - n, "%s%s", n ? ", " : "",
                     hsmcad_routes[i].method);
            continue;
        }
        memcpy(r->params, params, sizeof(params));
        r->rt_index = i;
        return &hsmcad_routes[i];
    }
    r->rt_index = hsmcad_nroutes;
    return NULL;
}

/* ---- client certificates ---- */

/*
 * Look the verified certificate up in the daemon's current role table: once per connection, and
 * again on the connection's next request after a reload replaced the table (reload.c), so a
 * binding added, changed or removed applies to open connections too.
 */
static void
bind_principal(struct hsmcad_server *srv, struct MHD_Connection *conn, struct conn_ctx *cc)
{
    struct hsmcad_roles *now = hsmcad_roles_get(srv->d);
    int was = cc->who != NULL;

    if (now == cc->roles) {
        hsmcad_roles_free(now);
        return;
    }
    hsmcad_roles_free(cc->roles);
    cc->roles = now;
    cc->who = hsmcad_roles_lookup_fp(now, cc->fp);
    if (cc->who == NULL) {
        snprintf(cc->client, sizeof(cc->client), "%s", cc->anon);
        return;
    }
    snprintf(cc->client, sizeof(cc->client), "%s", cc->who->name);
    if (!was) {
        /* out of the gate, and the whole idle timeout from now on */
        hsmcad_gate_authenticated(srv->gate, &cc->gate);
        (void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, srv->d->cfg.timeout_s);
    }
}

static void
identify(struct hsmcad_server *srv, struct MHD_Connection *conn, struct conn_ctx *cc)
{
    const union MHD_ConnectionInfo *ci;
    gnutls_session_t s;
    const gnutls_datum_t *peers;
    unsigned int n = 0, status = 0, fl = 0;
    unsigned char fp[HSMCA_SHA256_LEN];
    char hex[HSMCA_SHA256_HEX_SIZE];

    cc->checked = 1;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL)
        return;
    s = (gnutls_session_t)ci->tls_session;
    peers = gnutls_certificate_get_peers(s, &n);
    if (peers == NULL || n == 0)
        return;
    if (EVP_Digest(peers[0].data, peers[0].size, fp, &fl, EVP_sha256(), NULL) != 1)
        return;
    hsmca_hex_encode(fp, 16, hex, sizeof(hex));
    snprintf(cc->presented, sizeof(cc->presented), "%s", hex);
    if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0) {
        hsmca_log(HSMCA_LOG_INFO, "hsmcad", "client-cert-rejected", "fp=%s status=0x%x", hex,
                  status);
        return;
    }
    cc->verified = 1;
    memcpy(cc->fp, fp, sizeof(cc->fp));
    bind_principal(srv, conn, cc);
    {
        const unsigned char *p = peers[0].data;
        X509 *x = d2i_X509(NULL, &p, (long)peers[0].size);
        unsigned char *spki = NULL;
        int sl = x != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki) : -1;

        if (sl > 0 && EVP_Digest(spki, (size_t)sl, cc->spki_sha256, &fl, EVP_sha256(), NULL) == 1)
            cc->have_spki = 1;
        OPENSSL_free(spki);
        X509_free(x);
    }
}

static void
notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode toe)
{
    struct hsmcad_server *srv = cls;
    struct conn_ctx *cc;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ai, *fi;
        char ip[INET6_ADDRSTRLEN] = "?";
        unsigned ev;

        cc = calloc(1, sizeof(*cc));
        *socket_context = cc;
        if (cc == NULL)
            return;
        ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ai != NULL && ai->client_addr != NULL) {
            const struct sockaddr *sa = ai->client_addr;

            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip,
                          sizeof(ip));
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip,
                          sizeof(ip));
        }
        snprintf(cc->anon, sizeof(cc->anon), "anon:%s", ip);
        snprintf(cc->client, sizeof(cc->client), "%s", cc->anon);
        ev = hsmcad_gate_open(srv->gate, &cc->gate, fi != NULL ? fi->connect_fd : -1,
                              ai != NULL ? ai->client_addr : NULL);
        if (ev > 0)
            hsmca_log(HSMCA_LOG_DEBUG, "hsmcad", "connection-evicted", "n=%u by=%s", ev, ip);
        /* until it authenticates, the connection has the handshake's deadline */
        (void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                        srv->d->cfg.handshake_timeout_s);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        cc = *socket_context;
        if (cc != NULL) {
            hsmcad_gate_close(srv->gate, &cc->gate);
            hsmcad_roles_free(cc->roles);
        }
        free(cc);
        *socket_context = NULL;
    }
}

/* ---- audit ---- */

/* Entry of a request decided by the server or a sync handler; run on the writer thread. */
static void
audit_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct hsmcad_req *r = arg;

    if (rc == HSMCA_OK && receipt != NULL) {
        hsmcad_req_receipt(r, receipt);
    } else if (rc != HSMCA_OK) {
        /* fail closed: nothing is released without its entry */
        hsmcad_reply_problem(r, rc, "the audit entry of this request could not be written");
    }
    hsmcad_req_resume(r);
}

/*
 * Write the entry of r (outcome from its status) and suspend until it is durable. Returns 0 when
 * the request is suspended, -1 when no entry is written (the reply leaves at once).
 */
static int
audit_request(struct hsmcad_req *r)
{
    struct hsmcad *d = r->srv->d;
    struct hsmca_audit_event ev;
    json_t *det = NULL;
    char *det_s = NULL;
    char action[96];
    const char *role =
        r->cc != NULL && r->cc->who != NULL ? hsmcad_role_name(r->cc->who->role) : "none";
    int refused = r->status >= 400;
    enum hsmca_err rc;

    if (d->audit == NULL)
        return -1;
    /* refusals of a client are limited by its principal, or by its address while it has none:
     * never by a certificate nobody verified */
    if (refused && !hsmcad_refusal_allowed(d, r->cc != NULL ? r->cc->client : "anon:?", r->err))
        return -1;
    snprintf(action, sizeof(action), "%s%s", r->rt != NULL ? r->rt->action : "http.unmatched",
             refused ? ".refuse" : "");
    if (r->detail != NULL && !refused) {
        det = json_loads(r->detail, 0, NULL);
    } else {
        unsigned char h[HSMCA_SHA256_LEN];
        unsigned int hl = 0;
        char hex[HSMCA_SHA256_HEX_SIZE] = "";
        EVP_MD_CTX *md = EVP_MD_CTX_new();

        if (md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
            EVP_DigestUpdate(md, r->body != NULL ? r->body : (unsigned char *)"", r->body_len) ==
                1 &&
            EVP_DigestFinal_ex(md, h, &hl) == 1)
            hsmca_hex_encode(h, HSMCA_SHA256_LEN, hex, sizeof(hex));
        EVP_MD_CTX_free(md);
        det = refused ? json_pack("{s:s, s:i, s:s}", "code", hsmca_err_code(r->err), "status",
                                  r->status, "input_sha256", hex)
                      : json_pack("{s:i}", "status", r->status);
        if (refused && det != NULL && r->cc != NULL && r->cc->who == NULL &&
            r->cc->presented[0] != '\0')
            json_object_set_new(det, "presented_cert_sha256_prefix", json_string(r->cc->presented));
    }
    if (det != NULL)
        det_s = json_dumps(det, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(det);
    hsmca_audit_event_set(&ev, r->cc != NULL ? r->cc->client : "anon:?", role, action, r->target,
                          refused ? "refused" : "ok", det_s);
    hsmcad_req_suspend(r);
    rc = hsmca_audit_submit(d->audit, &ev, NULL, NULL, audit_done, r);
    free(det_s);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, "the audit log refused the entry");
        hsmcad_req_resume(r);
    }
    return 0;
}

/* ---- responses ---- */

/* libmicrohttpd sends a TLS reply's header and body as two TLS records in two sendmsg calls (it
 * joins them in one call only without TLS). For a small reply, cork the session instead: GnuTLS
 * keeps both writes and completed() sends them as one record in one call, so the client gets the
 * whole reply in one segment. Only once the whole request has been read: a refusal made on the
 * headers alone is followed by closing the connection with the body unread, and corked it did not
 * reach the client (tests/integration/http.sh, the 413 by Content-Length). And only when the socket
 * has room for the reply, so that uncorking does not wait on a client that has stopped reading. */
static void
cork_reply(struct hsmcad_req *r, size_t body_len)
{
    const union MHD_ConnectionInfo *ti, *fi;
    int sndbuf = 0, queued = 0;
    socklen_t sl = sizeof(sndbuf);

    if (!r->whole || body_len > CORK_MAX)
        return;
    ti = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    fi = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ti == NULL || ti->tls_session == NULL || fi == NULL)
        return;
    if (getsockopt(fi->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) != 0 ||
        ioctl(fi->connect_fd, SIOCOUTQ, &queued) != 0 || sndbuf - queued < CORK_ROOM)
        return;
    r->corked = (gnutls_session_t)ti->tls_session;
    r->fd = fi->connect_fd;
    gnutls_record_cork(r->corked);
}

/* Send a corked reply. EAGAIN cannot come with the room cork_reply asked for; if it does, wait
 * for the socket (bounded) rather than leave the reply behind. */
static void
uncork_reply(struct hsmcad_req *r)
{
    int i, ret;

    for (i = 0; i < 100; i++) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLOUT};

        ret = gnutls_record_uncork(r->corked, 0);
        if (ret != GNUTLS_E_AGAIN && ret != GNUTLS_E_INTERRUPTED)
            break;
        (void)poll(&pfd, 1, 100);
    }
    r->corked = NULL;
    /* libmicrohttpd corked the socket (TCP_CORK) for the header and, the body written, pushed
     * with TCP_NODELAY: that pushes what the kernel holds then, and GnuTLS held it all. What the
     * uncork above wrote would wait for the kernel's 200 ms cork timer; uncork the socket to send
     * it now. libmicrohttpd still believes the socket corked, so it never corks it again. */
    (void)setsockopt(r->fd, IPPROTO_TCP, TCP_CORK, &(int){0}, sizeof(int));
}

static enum MHD_Result
send_reply(struct hsmcad_req *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char receipt[96];

    if (r->resp == NULL && r->status == 0)
        hsmcad_reply_problem(r, HSMCA_E_INTERNAL, "the handler produced no reply");
    if (r->status == 401 && !has_header(r, "WWW-Authenticate"))
        hsmcad_reply_header(r, "WWW-Authenticate", HSMCAD_AUTH_SCHEME " realm=\"hsmca\"");
    if (r->stream != NULL) {
        /* read 64 KiB at a time, as the client takes it: constant memory whatever the size */
        resp = MHD_create_response_from_callback(r->stream_size, 65536, stream_cb, r->stream,
                                                 stream_free_cb);
        if (resp == NULL)
            return MHD_NO;
        r->stream = NULL; /* the response frees it now */
    } else {
        resp = MHD_create_response_from_buffer(r->resp_len, r->resp != NULL ? r->resp : (void *)"",
                                               MHD_RESPMEM_MUST_FREE);
        if (resp == NULL)
            return MHD_NO;
        r->resp = NULL; /* owned by the response now */
    }
    if (r->resp_ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->resp_ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (unsigned i = 0; i < HDR_MAX && r->hdr[i].name[0] != '\0'; i++)
        MHD_add_response_header(resp, r->hdr[i].name, r->hdr[i].value);
    if (r->has_receipt) {
        char hex[HSMCA_SHA256_HEX_SIZE];

        hsmca_hex_encode(r->receipt.entry_hash, HSMCA_SHA256_LEN, hex, sizeof(hex));
        snprintf(receipt, sizeof(receipt), "%llu:%s", (unsigned long long)r->receipt.seq, hex);
        MHD_add_response_header(resp, "Audit-Receipt", receipt);
    }
    if (r->status == 405 && r->allow[0] != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->stream_size == 0)
        cork_reply(r, r->resp_len);
    ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->state = RS_DONE;
    return ret;
}

/* Answer now, after the request's audit entry (if any) is durable. */
static enum MHD_Result
finish(struct hsmcad_req *r)
{
    int no_audit = r->rt != NULL && (r->rt->flags & HSMCAD_ROUTE_NO_AUDIT) != 0;

    if (!r->has_receipt && !r->engine_audited && (r->status >= 400 || !no_audit)) {
        if (audit_request(r) == 0)
            return MHD_YES; /* suspended until the entry is durable */
    }
    return send_reply(r);
}

static void
refuse(struct hsmcad_req *r, enum hsmca_err e, const char *detail)
{
    hsmcad_reply_problem(r, e, detail);
}

static int
ctype_ok(const struct hsmcad_route *rt, const char *ct)
{
    const char *const *a;

    if (rt->ctypes == NULL)
        return 1;
    for (a = rt->ctypes; *a != NULL; a++) {
        if (strcmp(*a, ct) == 0)
            return 1;
    }
    return 0;
}

/* First call: route, authenticate, authorize, check the declared body. 0: go on, -1: refused. */
static int
first_call(struct hsmcad_server *srv, struct hsmcad_req *r, const char *url, const char *method)
{
    int mismatch = 0;
    const char *cl, *ct;
    enum hsmca_err rc;
    uint64_t len = 0;
    size_t i;

    r->rt = route(r, method, url, &mismatch);
    if (r->cc == NULL || r->cc->who == NULL) {
        int none = r->cc != NULL && r->cc->presented[0] == '\0';

        refuse(r, HSMCA_E_HTTP_UNAUTHENTICATED,
               none ? "no client certificate was presented"
                    : "the client certificate is not trusted or not bound in roles.json");
        /* RFC 9110 11.6.1: a 401 carries a challenge. The only credential is a TLS client
         * certificate (docs/api.md "Authentication: mutual TLS"); the error names TLS's own alerts.
         */
        hsmcad_reply_header(
            r, "WWW-Authenticate",
            none ? HSMCAD_AUTH_SCHEME " realm=\"hsmca\", error=\"certificate_required\""
                 : HSMCAD_AUTH_SCHEME " realm=\"hsmca\", error=\"certificate_unknown\"");
        return -1;
    }
    if (r->query_overflow) {
        refuse(r, HSMCA_E_HTTP_QUERY_TOO_LARGE, NULL);
        return -1;
    }
    if (r->rt == NULL) {
        refuse(r, mismatch ? HSMCA_E_HTTP_METHOD : HSMCA_E_HTTP_NOT_FOUND, NULL);
        return -1;
    }
    if (strncmp(r->rt->pattern, "/v1/cas/{ca}", 12) == 0 ||
        strncmp(r->rt->pattern, "/.well-known/est/{ca}", 21) == 0)
        snprintf(r->target, sizeof(r->target), "ca/%s", r->params[0]);
    else if (strncmp(r->rt->pattern, "/v1/requests/{id}", 17) == 0)
        snprintf(r->target, sizeof(r->target), "request/%s", r->params[0]);
    rc = hsmcad_authorize(r->cc->who, r->rt->roles, r->rt->ca_bound,
                          r->rt->ca_bound ? r->params[0] : NULL);
    if (rc != HSMCA_OK) {
        refuse(r, rc, NULL);
        return -1;
    }
    if (__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE)) {
        refuse(r, HSMCA_E_HTTP_SHUTTING_DOWN, NULL);
        return -1;
    }
    ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct != NULL) {
        size_t n = strcspn(ct, "; \t");

        if (n >= sizeof(r->ctype))
            n = sizeof(r->ctype) - 1;
        for (i = 0; i < n; i++)
            r->ctype[i] = (char)((ct[i] >= 'A' && ct[i] <= 'Z') ? ct[i] + 32 : ct[i]);
        r->ctype[n] = '\0';
    }
    r->body_max = (r->rt->flags & HSMCAD_ROUTE_BIG_BODY) ? (size_t)srv->d->cfg.body_max
                                                         : HSMCAD_SMALL_BODY_MAX;
    if (!(r->rt->flags & HSMCAD_ROUTE_BODY))
        r->body_max = 0;
    cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && hsmca_parse_u64(cl, strlen(cl), UINT64_MAX, &len) == HSMCA_OK &&
        len > r->body_max) {
        if (r->body_max == 0) {
            refuse(r, HSMCA_E_HTTP_BAD_REQUEST, "this endpoint takes no request body");
            return -1;
        }
        refuse(r, HSMCA_E_HTTP_BODY_TOO_LARGE, NULL);
        return -1;
    }
    if ((r->rt->flags & HSMCAD_ROUTE_BODY) && !ctype_ok(r->rt, r->ctype)) {
        refuse(r, HSMCA_E_HTTP_UNSUPPORTED_MEDIA, NULL);
        return -1;
    }
    return 0;
}

static struct hsmcad_req *
req_new(struct hsmcad_server *srv, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci;
    struct hsmcad_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->srv = srv;
    r->conn = conn;
    r->t0_us = hsmca_mono_us();
    r->rt_index = hsmcad_nroutes;
    snprintf(r->id, sizeof(r->id), "urn:hsmca:request:%llu",
             (unsigned long long)__atomic_add_fetch(&srv->next_id, 1, __ATOMIC_RELAXED));
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->cc = ci != NULL ? ci->socket_context : NULL;
    return r;
}

/* Called with the request line's URI before libmicrohttpd parses its query. Too many parameters
 * would exhaust the connection's pool (libmicrohttpd then closes without a reply), so the query is
 * cut off here, in libmicrohttpd's own buffer, and the request is refused with a 414 once it
 * reaches the access handler. Allocates the request (libmicrohttpd hands it in as req_cls). */
static void *
uri_seen(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct hsmcad_server *srv = cls;
    struct hsmcad_req *r = req_new(srv, conn);
    char *q = strchr(uri, '?');
    unsigned n = 0;

    if (r == NULL || q == NULL)
        return r;
    for (const char *p = q + 1; *p != '\0'; p++)
        n += *p == '&' || *p == ';';
    if (n + 1 > QUERY_PARAMS_MAX) {
        r->query_overflow = 1;
        q[1] = '\0'; /* the buffer is libmicrohttpd's and writable; it parses from q + 1 */
    }
    return r;
}

static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
               const char *version, const char *upload_data, size_t *upload_data_size,
               void **req_cls)
{
    struct hsmcad_server *srv = cls;
    struct hsmcad_req *r = *req_cls;

    (void)version;
    if (r == NULL) {
        r = req_new(srv, conn);
        if (r == NULL)
            return MHD_NO;
        *req_cls = r;
    }
    if (r->state == RS_NEW) {
        if (r->cc != NULL && !r->cc->checked)
            identify(srv, conn, r->cc);
        else if (r->cc != NULL && r->cc->verified && hsmcad_roles_current(srv->d) != r->cc->roles)
            bind_principal(srv, conn, r->cc); /* the role bindings were reloaded */
        if (first_call(srv, r, url, method) != 0)
            return finish(r);
        r->state = RS_BODY;
        return MHD_YES;
    }
    if (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == RS_READY) {
        if (r->later != NULL) {
            void (*fn)(struct hsmcad_req *, void *, int) = r->later;

            r->later = NULL;
            fn(r, r->later_arg, 1);
        }
        return send_reply(r);
    }
    if (r->state != RS_BODY)
        return MHD_YES; /* a stray call while suspended */
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        if (r->body_too_large || r->body_len + n > r->body_max) {
            r->body_too_large = 1;
            return MHD_YES; /* keep reading, stop buffering */
        }
        if (hsmca_grow(&r->body, &r->body_cap, r->body_len + n, 1, r->body_max) != HSMCA_OK)
            return MHD_NO;
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        return MHD_YES;
    }
    r->whole = 1;
    if (r->body_too_large) {
        refuse(r, HSMCA_E_HTTP_BODY_TOO_LARGE, NULL);
        return finish(r);
    }
    r->rt->fn(r);
    if (r->state == RS_SUSPENDED || r->state == RS_READY)
        return MHD_YES; /* the handler parked the request; it answers on resume */
    return finish(r);
}

static void
completed(void *cls, struct MHD_Connection *conn, void **req_cls,
          enum MHD_RequestTerminationCode toe)
{
    struct hsmcad_server *srv = cls;
    struct hsmcad_req *r = *req_cls;

    (void)conn;
    (void)toe;
    if (r == NULL)
        return;
    if (r->later != NULL) /* resumed, but the connection ended before its reply was made */
        r->later(r, r->later_arg, 0);
    if (r->corked != NULL)
        uncork_reply(r);
    if (r->state != RS_NEW) /* else libmicrohttpd refused it before the handler (431, 414) */
        hsmcad_metrics_request(srv->d->metrics, r->rt_index, r->status != 0 ? r->status : 500,
                               hsmca_mono_us() - r->t0_us);
    stream_free_cb(r->stream);
    free(r->body);
    free(r->resp);
    free(r->detail);
    free(r);
    *req_cls = NULL;
}

static void __attribute__((format(printf, 2, 0))) mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];
    char esc[4 * 64 + 4];
    size_t n;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    hsmca_log(HSMCA_LOG_DEBUG, "hsmcad", "mhd", "msg=%s",
              hsmca_log_escape(msg, n, esc, sizeof(esc)));
}

/* Each connection is a descriptor: let the process hold the configured number of connections and
 * its files (raising the soft limit up to the hard one; a lower hard limit is logged). */
static void
raise_fd_limit(unsigned connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)connections + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "fd-limit-low", "nofile=%llu wanted=%llu",
                  (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

enum hsmca_err
hsmcad_server_start(struct hsmcad *d, const char *cert_pem, const char *key_pem, const char *ca_pem,
                    struct hsmcad_server **out, unsigned *port_out)
{
    struct hsmcad_server *srv;
    struct sockaddr_storage ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    unsigned threads = d->cfg.threads;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_EPOLL;
    const union MHD_DaemonInfo *di;
    unsigned pending_max;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, d->cfg.listen_host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)d->cfg.listen_port);
    } else if (inet_pton(AF_INET6, d->cfg.listen_host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)d->cfg.listen_port);
        flags |= MHD_USE_IPv6;
    } else {
        return HSMCA_E_LISTEN;
    }
    if (threads == 0) {
        /* two per core: a DAC handler spends part of its time waiting on the token's lock and
         * on SoftHSM's object files, and a second thread per core keeps the core busy then
         * (tools/bench on 2 cores: about 1.3x the DACs/s of one thread per core) */
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        threads = n > 0 ? 2 * (unsigned)n : 2;
    }
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return HSMCA_E_NOMEM;
    srv->d = d;
    pending_max = d->cfg.unauthenticated_connections != 0 ? d->cfg.unauthenticated_connections
                                                          : d->cfg.connections / 4 * 3;
    if (pending_max == 0 || pending_max > d->cfg.connections)
        pending_max = d->cfg.connections;
    srv->gate = hsmcad_gate_new(pending_max, d->cfg.per_ip_unauthenticated);
    if (srv->gate == NULL) {
        free(srv);
        return HSMCA_E_NOMEM;
    }
    raise_fd_limit(d->cfg.connections);
    srv->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_HTTPS_MEM_CERT, cert_pem, MHD_OPTION_HTTPS_MEM_KEY, key_pem,
        MHD_OPTION_HTTPS_MEM_TRUST, ca_pem, MHD_OPTION_HTTPS_PRIORITIES,
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, d->cfg.connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        d->cfg.per_ip_connections, MHD_OPTION_CONNECTION_TIMEOUT, d->cfg.timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_POOL, MHD_OPTION_NOTIFY_COMPLETED,
        completed, srv, MHD_OPTION_NOTIFY_CONNECTION, notify_connection, srv,
        MHD_OPTION_URI_LOG_CALLBACK, uri_seen, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
        MHD_OPTION_END);
    if (srv->mhd == NULL) {
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "listen-failed", "host=%s port=%u errno=%d",
                  d->cfg.listen_host, d->cfg.listen_port, errno);
        hsmcad_gate_free(srv->gate);
        free(srv);
        return HSMCA_E_LISTEN;
    }
    di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = di != NULL ? di->port : d->cfg.listen_port;
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "listening",
              "host=%s port=%u threads=%u connections=%u unauthenticated=%u", d->cfg.listen_host,
              *port_out, threads, d->cfg.connections, pending_max);
    *out = srv;
    return HSMCA_OK;
}

void
hsmcad_server_stop(struct hsmcad_server *s, unsigned wait_ms)
{
    unsigned waited = 0;

    if (s == NULL)
        return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&s->suspended, __ATOMIC_ACQUIRE) != 0 && waited < wait_ms) {
        usleep(10000);
        waited += 10;
    }
    if (__atomic_load_n(&s->suspended, __ATOMIC_ACQUIRE) != 0)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "stop-with-suspended", "n=%u", s->suspended);
    MHD_stop_daemon(s->mhd);
    hsmcad_gate_free(s->gate);
    free(s);
}
