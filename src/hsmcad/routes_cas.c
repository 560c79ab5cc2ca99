/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_cas.c -- GET /v1/cas, GET /v1/cas/{ca}, GET /v1/cas/{ca}/certificates (the inventory:
 * keyset-paged, filtered by status and issue time, JSON or CSV), POST /v1/cas/{ca}/revocations
 * (through the audit writer: the revocation and its entry commit together) and GET
 * /v1/cas/{ca}/crl (the latest CRL, DER) and GET /v1/cas/{ca}/report (issued and revoked
 * certificates in a range, signed by the audit key; docs/revocation.md). Reads go through the
 * worker's read-only store handle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/issue.h"
#include "hsmca/revoke.h"
#include "hsmca/sizes.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "buf.h"
#include "hsmcad.h"
#include "routes.h"

#define INVENTORY_DEFAULT_LIMIT 100

static json_t *
vidpid(int v)
{
    char hex[8];

    if (v < 0)
        return json_null();
    snprintf(hex, sizeof(hex), "%04X", (unsigned)v & 0xffffu);
    return json_string(hex);
}

/* The issuance state of a PAI the engine knows ({"active", "until_ms", ..., "quota"}), or null. */
static json_t *
issuance_state(struct hsmcad *d, const char *id)
{
    struct hsmca_ca *c = hsmca_ca_find(d->cas, id);
    struct hsmca_issue_ca *ica = c != NULL ? __atomic_load_n(&c->ica, __ATOMIC_ACQUIRE) : NULL;
    json_t *s = ica != NULL ? hsmca_issue_ca_state_json(ica, hsmcad_now_ms()) : NULL;

    return s != NULL ? s : json_null();
}

static json_t *
ca_json(struct hsmcad *d, const struct hsmca_ca_rec *ca)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "id", ca->id, "kind",
                          ca->kind, "parent", ca->parent, "token_uri", ca->token_uri, "key_uri",
                          ca->key_uri, "vid", vidpid(ca->vid), "pid", vidpid(ca->pid), "created_ms",
                          (json_int_t)ca->created_ms);

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "issuance", issuance_state(d, ca->id));
    {
        struct hsmca_crl_policy pol;
        struct hsmca_ca *c = hsmca_ca_find(d->cas, ca->id);

        hsmca_crl_policy_for(d->crl_policies, ca->id, &pol);
        json_object_set_new(
            o, "crl",
            json_pack(
                "{s:s?, s:I, s:I, s:I}", "url", pol.url[0] ? pol.url : NULL, "number",
                (json_int_t)(c != NULL ? __atomic_load_n(&c->crl_number, __ATOMIC_ACQUIRE) : 0),
                "this_update",
                (json_int_t)(c != NULL ? __atomic_load_n(&c->crl_this, __ATOMIC_RELAXED) : 0),
                "next_update",
                (json_int_t)(c != NULL ? __atomic_load_n(&c->crl_next, __ATOMIC_RELAXED) : 0)));
        if (ca->revoked) {
            const char *rn = hsmca_crl_reason_name(ca->reason);

            json_object_set_new(o, "revoked",
                                json_pack("{s:I, s:s}", "revoked_ms", (json_int_t)ca->revoked_ms,
                                          "reason", rn != NULL ? rn : "unspecified"));
        }
    }
    if (ca->cert_der != NULL) {
        unsigned char h[HSMCA_SHA256_LEN];
        unsigned int hl = 0;
        char hex[HSMCA_SHA256_HEX_SIZE];
        char *pem = hsmca_pem_armour("CERTIFICATE", ca->cert_der, ca->cert_len);

        if (EVP_Digest(ca->cert_der, ca->cert_len, h, &hl, EVP_sha256(), NULL) == 1) {
            hsmca_hex_encode(h, HSMCA_SHA256_LEN, hex, sizeof(hex));
            json_object_set_new(o, "certificate_sha256", json_string(hex));
        }
        json_object_set_new(o, "certificate", pem != NULL ? json_string(pem) : json_null());
        free(pem);
    } else {
        json_object_set_new(o, "certificate", json_null());
    }
    return o;
}

/* A renewed or re-keyed CA names its successor (docs/renewal.md). Never inside a store row
 * callback: the store is locked while one runs. */
static void
add_successor(struct hsmcad *d, json_t *o)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    char *succ = NULL;

    if (id != NULL && hsmcad_ro(d) != NULL &&
        hsmca_quorum_ca_successor(hsmcad_ro(d), id, &succ) == HSMCA_OK)
        json_object_set_new(o, "superseded_by", json_string(succ));
    free(succ);
}

struct ca_list {
    struct hsmcad *d;
    json_t *arr;
};

static enum hsmca_err
ca_list_one(void *arg, const struct hsmca_ca_rec *ca)
{
    struct ca_list *l = arg;
    json_t *o = ca_json(l->d, ca);

    if (o == NULL)
        return HSMCA_E_NOMEM;
    return json_array_append_new(l->arr, o) == 0 ? HSMCA_OK : HSMCA_E_NOMEM;
}

void
hsmcad_h_cas_list(struct hsmcad_req *r)
{
    struct hsmca_store *ro = hsmcad_ro(hsmcad_req_daemon(r));
    json_t *arr = json_array();
    enum hsmca_err rc;

    if (ro == NULL || arr == NULL) {
        json_decref(arr);
        hsmcad_reply_problem(r, ro == NULL ? HSMCA_E_STORE_OPEN : HSMCA_E_NOMEM, NULL);
        return;
    }
    {
        struct ca_list l = {hsmcad_req_daemon(r), arr};

        rc = hsmca_store_ca_list(ro, ca_list_one, &l);
    }
    if (rc != HSMCA_OK) {
        json_decref(arr);
        hsmcad_reply_problem(r, rc, NULL);
        return;
    }
    {
        size_t i;
        json_t *o;

        json_array_foreach(arr, i, o)
        {
            add_successor(hsmcad_req_daemon(r), o);
        }
    }
    hsmcad_reply_json(r, 200, json_pack("{s:o}", "cas", arr));
}

/* Load {ca} into *out or answer 404; returns 0 when found. */
static int
load_ca(struct hsmcad_req *r, struct hsmca_store *ro, struct hsmca_ca_rec *out)
{
    enum hsmca_err rc;

    memset(out, 0, sizeof(*out));
    if (ro == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_STORE_OPEN, NULL);
        return -1;
    }
    rc = hsmca_store_ca_get(ro, hsmcad_req_param(r, 0), out);
    if (rc == HSMCA_E_NOT_FOUND) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
        return -1;
    }
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        return -1;
    }
    return 0;
}

/* The representations of a certificate, in the routes' order of preference (JSON first). */
enum { CERT_JSON, CERT_DER, CERT_PEM };
static const char *const cert_types[] = {"application/json", "application/pkix-cert",
                                         "application/pem-certificate-chain"};
#define CERT_TYPES_DETAIL                                                                          \
    "application/json, application/pkix-cert or application/pem-certificate-chain"

/* Answer 200 with one certificate as DER (application/pkix-cert), or as PEM followed by its
 * issuer's PEM when issuer_der is given (application/pem-certificate-chain). */
static void
reply_cert(struct hsmcad_req *r, int fmt, const unsigned char *der, size_t len,
           const unsigned char *issuer_der, size_t issuer_len)
{
    char *pem, *ipem = NULL;
    struct hsmcad_buf b = {NULL, 0, 0, 0};

    if (fmt == CERT_DER) {
        char *copy = malloc(len != 0 ? len : 1);

        if (copy == NULL) {
            hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
            return;
        }
        memcpy(copy, der, len);
        hsmcad_reply(r, 200, "application/pkix-cert", copy, len);
        return;
    }
    pem = hsmca_pem_armour("CERTIFICATE", der, len);
    if (issuer_der != NULL)
        ipem = hsmca_pem_armour("CERTIFICATE", issuer_der, issuer_len);
    if (pem != NULL)
        hsmcad_buf_str(&b, pem);
    if (ipem != NULL)
        hsmcad_buf_str(&b, ipem);
    if (pem == NULL || (issuer_der != NULL && ipem == NULL) || b.err) {
        free(b.p);
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
    } else {
        hsmcad_reply(r, 200, "application/pem-certificate-chain", b.p, b.len);
    }
    free(pem);
    free(ipem);
}

void
hsmcad_h_ca_get(struct hsmcad_req *r)
{
    struct hsmca_ca_rec ca;
    int fmt = hsmcad_req_negotiate(r, cert_types, 3);

    if (fmt < 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_ACCEPTABLE, CERT_TYPES_DETAIL);
        return;
    }
    if (load_ca(r, hsmcad_ro(hsmcad_req_daemon(r)), &ca) != 0)
        return;
    if (fmt == CERT_JSON) {
        json_t *o = ca_json(hsmcad_req_daemon(r), &ca);

        if (o != NULL)
            add_successor(hsmcad_req_daemon(r), o);
        hsmcad_reply_json(r, 200, o);
    } else if (ca.cert_der == NULL)
        hsmcad_reply_problem(r, HSMCA_E_NOT_FOUND, "this CA has no certificate yet");
    else
        reply_cert(r, fmt, ca.cert_der, ca.cert_len, NULL, 0);
    hsmca_ca_rec_clear(&ca);
}

/* ---- inventory ---- */

struct inv {
    int csv;
    json_t *items;
    struct hsmcad_buf out; /* the CSV */
    int64_t last_ms;
    unsigned char last_serial[20];
    size_t last_serial_len;
};

static void
rfc3339(int64_t t, char *out, size_t n)
{
    if (t > INT64_MAX / 1000 || t < INT64_MIN / 1000 || hsmca_time_format(t * 1000, 0, out, n) == 0)
        snprintf(out, n, "invalid");
}

/* The text fields of a certificate record. */
struct cert_text {
    char serial[41], sha[HSMCA_SHA256_HEX_SIZE], nb[32], na[32], vid[8], pid[8];
};

static void
cert_text(const struct hsmca_cert_rec *c, struct cert_text *t)
{
    memset(t, 0, sizeof(*t));
    hsmca_hex_encode(c->serial, c->serial_len, t->serial, sizeof(t->serial));
    hsmca_hex_encode(c->sha256, HSMCA_SHA256_LEN, t->sha, sizeof(t->sha));
    rfc3339(c->not_before, t->nb, sizeof(t->nb));
    rfc3339(c->not_after, t->na, sizeof(t->na));
    if (c->vid >= 0)
        snprintf(t->vid, sizeof(t->vid), "%04X", (unsigned)c->vid & 0xffffu);
    if (c->pid >= 0)
        snprintf(t->pid, sizeof(t->pid), "%04X", (unsigned)c->pid & 0xffffu);
}

/* A certificate's record as the API shows it (the inventory's items, GET of one certificate). */
static json_t *
cert_json(const struct hsmca_cert_rec *c, const struct cert_text *t)
{
    json_t *o =
        json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:s, s:s, s:s, s:I}", "serial", t->serial, "vid",
                  t->vid[0] ? t->vid : NULL, "pid", t->pid[0] ? t->pid : NULL, "not_before", t->nb,
                  "not_after", t->na, "sha256", t->sha, "status", c->revoked ? "revoked" : "issued",
                  "request_id", c->request_id, "issued_ms", (json_int_t)c->issued_ms);

    if (o != NULL && c->revoked) {
        const char *rn = hsmca_crl_reason_name(c->reason);

        json_object_set_new(o, "revoked_ms", json_integer((json_int_t)c->revoked_ms));
        json_object_set_new(o, "reason", rn != NULL ? json_string(rn) : json_null());
    }
    return o;
}

static enum hsmca_err
inv_one(void *arg, const struct hsmca_cert_rec *c)
{
    struct inv *v = arg;
    struct cert_text t;

    cert_text(c, &t);
    v->last_ms = c->issued_ms;
    memcpy(v->last_serial, c->serial, c->serial_len);
    v->last_serial_len = c->serial_len;
    if (v->csv) {
        char line[512];
        int n = snprintf(line, sizeof(line), "%s,%s,%s,%s,%s,%s,%s,%s,%lld\n", t.serial, t.vid,
                         t.pid, t.nb, t.na, t.sha, c->revoked ? "revoked" : "issued", c->request_id,
                         (long long)c->issued_ms);

        if (n < 0 || (size_t)n >= sizeof(line))
            return HSMCA_E_INTERNAL;
        hsmcad_buf_put(&v->out, line, (size_t)n);
        return v->out.err ? HSMCA_E_NOMEM : HSMCA_OK;
    }
    {
        json_t *o = cert_json(c, &t);

        if (o == NULL)
            return HSMCA_E_NOMEM;
        return json_array_append_new(v->items, o) == 0 ? HSMCA_OK : HSMCA_E_NOMEM;
    }
}

static enum hsmca_err
q_u64(struct hsmcad_req *r, const char *name, uint64_t max, uint64_t *out)
{
    const char *s = hsmcad_req_query(r, name);

    if (s == NULL)
        return HSMCA_E_NOT_FOUND;
    return hsmca_parse_u64(s, strlen(s), max, out) == HSMCA_OK ? HSMCA_OK : HSMCA_E_HTTP_BAD_QUERY;
}

void
hsmcad_h_certificates(struct hsmcad_req *r)
{
    static const char *const allowed[] = {"status", "from",   "to", "limit",
                                          "cursor", "format", NULL};
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    struct hsmca_cert_query q;
    struct hsmca_ca_rec ca;
    struct inv v;
    const char *s, *fmt;
    uint64_t x;
    int more = 0;
    enum hsmca_err rc;
    char cursor[96] = "";

    memset(&q, 0, sizeof(q));
    memset(&v, 0, sizeof(v));
    q.status = -1;
    q.from_ms = 0;
    q.to_ms = INT64_MAX;
    q.limit = INVENTORY_DEFAULT_LIMIT;
    if (hsmcad_req_query_check(r, allowed) != HSMCA_OK) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY,
                             "allowed once each: status, from, to, limit, cursor, format");
        return;
    }
    s = hsmcad_req_query(r, "status");
    if (s != NULL) {
        if (strcmp(s, "issued") == 0)
            q.status = 0;
        else if (strcmp(s, "revoked") == 0)
            q.status = 1;
        else if (strcmp(s, "any") != 0) {
            hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY, "status is issued, revoked or any");
            return;
        }
    }
    rc = q_u64(r, "from", INT64_MAX, &x);
    if (rc == HSMCA_OK)
        q.from_ms = (int64_t)x;
    else if (rc != HSMCA_E_NOT_FOUND)
        goto bad_query;
    rc = q_u64(r, "to", INT64_MAX, &x);
    if (rc == HSMCA_OK)
        q.to_ms = (int64_t)x;
    else if (rc != HSMCA_E_NOT_FOUND)
        goto bad_query;
    rc = q_u64(r, "limit", HSMCA_PAGE_MAX, &x);
    if (rc == HSMCA_OK && x >= 1)
        q.limit = (unsigned)x;
    else if (rc != HSMCA_E_NOT_FOUND)
        goto bad_query;
    s = hsmcad_req_query(r, "cursor");
    if (s != NULL) {
        const char *dot = strchr(s, '.');

        if (dot == NULL || hsmca_parse_u64(s, (size_t)(dot - s), INT64_MAX, &x) != HSMCA_OK ||
            hsmca_hex_decode(dot + 1, strlen(dot + 1), q.after_serial, sizeof(q.after_serial),
                             &q.after_serial_len) != HSMCA_OK ||
            q.after_serial_len == 0)
            goto bad_query;
        q.after_ms = (int64_t)x;
    }
    fmt = hsmcad_req_query(r, "format");
    if (fmt != NULL && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0)
        goto bad_query;
    {
        static const char *const types[] = {"application/json", "text/csv"};
        int pick = hsmcad_req_negotiate(r, types, 2);

        if (fmt == NULL && pick < 0) {
            hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_ACCEPTABLE, "application/json or text/csv");
            return;
        }
        v.csv = fmt != NULL ? strcmp(fmt, "csv") == 0 : pick == 1;
    }
    if (load_ca(r, ro, &ca) != 0)
        return;
    hsmca_ca_rec_clear(&ca);
    if (v.csv) {
        static const char head[] =
            "serial,vid,pid,not_before,not_after,sha256,status,request_id,issued_ms\n";

        hsmcad_buf_put(&v.out, head, sizeof(head) - 1);
    } else {
        v.items = json_array();
    }
    if (v.out.err || (!v.csv && v.items == NULL)) {
        rc = HSMCA_E_NOMEM;
        goto fail;
    }
    rc = hsmca_store_cert_list(ro, hsmcad_req_param(r, 0), &q, inv_one, &v, &more);
    if (rc != HSMCA_OK)
        goto fail;
    if (more) {
        char hex[41];

        hsmca_hex_encode(v.last_serial, v.last_serial_len, hex, sizeof(hex));
        snprintf(cursor, sizeof(cursor), "%lld.%s", (long long)v.last_ms, hex);
        hsmcad_reply_header(r, "Next-Cursor", cursor);
    }
    hsmcad_req_audit_detail(r, NULL, NULL);
    if (v.csv) {
        hsmcad_reply(r, 200, "text/csv; charset=utf-8", v.out.p, v.out.len);
        return;
    }
    hsmcad_reply_json(r, 200,
                      json_pack("{s:o, s:o}", "items", v.items, "next",
                                more ? json_string(cursor) : json_null()));
    return;
fail:
    free(v.out.p);
    json_decref(v.items);
    hsmcad_reply_problem(r, rc, NULL);
    return;
bad_query:
    hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY,
                         "from/to are ms since the epoch, limit 1..1000, cursor as returned, "
                         "format csv or json");
}

/* ---- revocation (the rules are revoke.c's; this is the transport) ---- */

struct revoke {
    struct hsmcad_req *r;
    struct hsmca_revocation rv;
};

static void
revoke_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct revoke *v = arg;
    struct hsmcad_req *r = v->r;

    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, "the revocation was not recorded");
    } else {
        hsmcad_crl_dirty(hsmcad_req_daemon(r), v->rv.ca);
        hsmcad_req_receipt(r, receipt);
        hsmcad_reply_json(r, 200, hsmca_revoke_json(&v->rv));
    }
    hsmcad_req_engine_audited(r);
    free(v);
    hsmcad_req_resume(r);
}

void
hsmcad_h_revocations(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    const struct hsmcad_principal *who = hsmcad_req_principal(r);
    struct revoke *v = NULL;
    json_t *body = NULL;
    json_error_t jerr;
    const char *serial = NULL, *reason = NULL;
    json_int_t at = -1, inval = -1;
    const unsigned char *b;
    size_t blen;
    enum hsmca_err rc;

    b = hsmcad_req_body(r, &blen);
    body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL ||
        json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s, s?s, s?I, s?I}", "serial", &serial,
                       "reason", &reason, "revoked_at", &at, "invalidity_date", &inval) != 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST,
                             "expected {\"serial\": hex, \"reason\"?: RFC 5280 name, "
                             "\"revoked_at\"?: ms, \"invalidity_date\"?: ms}");
        goto out;
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        rc = HSMCA_E_NOMEM;
        goto refuse;
    }
    if (ro == NULL) {
        rc = HSMCA_E_STORE_OPEN;
        goto refuse;
    }
    rc = hsmca_revoke_prepare(ro, hsmcad_req_param(r, 0), serial, reason, (int64_t)at,
                              (int64_t)inval, hsmcad_now_ms(), &v->rv);
    if (rc == HSMCA_E_INVALID_ARG) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST, "serial must be 1..20 bytes of hex");
        goto out;
    }
    if (rc == HSMCA_E_NOT_FOUND)
        rc = HSMCA_E_HTTP_CA_NOT_FOUND;
    if (rc != HSMCA_OK)
        goto refuse;
    if (d->audit == NULL) {
        rc = HSMCA_E_HTTP_NOT_READY;
        goto refuse;
    }
    v->r = r;
    hsmcad_req_suspend(r);
    rc = hsmca_revoke_submit(d->audit, &v->rv, who->name, hsmcad_role_name(who->role), revoke_done,
                             v);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        free(v);
        hsmcad_req_resume(r);
    }
    v = NULL;
    goto out;
refuse:
    hsmcad_reply_problem(r, rc, NULL);
out:
    free(v);
    json_decref(body);
}

void
hsmcad_h_crl(struct hsmcad_req *r)
{
    struct hsmca_store *ro = hsmcad_ro(hsmcad_req_daemon(r));
    struct hsmca_crl_rec crl;
    struct hsmca_ca_rec ca;
    enum hsmca_err rc;

    memset(&crl, 0, sizeof(crl));
    if (load_ca(r, ro, &ca) != 0)
        return;
    hsmca_ca_rec_clear(&ca);
    if (!hsmcad_req_accepts(r, "application/pkix-crl")) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_ACCEPTABLE, "application/pkix-crl (DER)");
        return;
    }
    rc = hsmca_store_crl_get(ro, hsmcad_req_param(r, 0), &crl);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc == HSMCA_E_NOT_FOUND ? HSMCA_E_CRL_NONE : rc,
                             rc == HSMCA_E_NOT_FOUND
                                 ? "a PAI's CRL is signed while a window is open, a PAA's by quorum"
                                 : NULL);
        return;
    }
    hsmcad_reply(r, 200, "application/pkix-crl", (char *)crl.der, crl.der_len);
    crl.der = NULL;
    hsmca_crl_rec_clear(&crl);
}

void
hsmcad_h_certificate_get(struct hsmcad_req *r)
{
    struct hsmca_store *ro = hsmcad_ro(hsmcad_req_daemon(r));
    const char *hex = hsmcad_req_param(r, 1);
    unsigned char serial[20];
    size_t serial_len = 0;
    struct hsmca_cert_rec c;
    struct hsmca_ca_rec ca;
    struct cert_text t;
    enum hsmca_err rc;
    int fmt = hsmcad_req_negotiate(r, cert_types, 3);

    memset(&c, 0, sizeof(c));
    if (fmt < 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_ACCEPTABLE, CERT_TYPES_DETAIL);
        return;
    }
    if (hsmca_hex_decode(hex, strlen(hex), serial, sizeof(serial), &serial_len) != HSMCA_OK ||
        serial_len == 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST,
                             "the serial is 1 to 20 bytes in hex, as the inventory lists it");
        return;
    }
    if (load_ca(r, ro, &ca) != 0)
        return;
    rc = hsmca_store_cert_get(ro, ca.id, serial, serial_len, &c);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(
            r, rc,
            rc == HSMCA_E_NOT_FOUND ? "this CA issued no certificate with that serial" : NULL);
        goto out;
    }
    if (fmt != CERT_JSON) {
        reply_cert(r, fmt, c.der, c.der_len, fmt == CERT_PEM ? ca.cert_der : NULL, ca.cert_len);
        goto out;
    }
    cert_text(&c, &t);
    {
        json_t *o = cert_json(&c, &t);
        char *pem = hsmca_pem_armour("CERTIFICATE", c.der, c.der_len);

        if (o != NULL && pem != NULL)
            json_object_set_new(o, "certificate", json_string(pem));
        free(pem);
        hsmcad_reply_json(r, 200, o);
    }
out:
    hsmca_cert_rec_clear(&c);
    hsmca_ca_rec_clear(&ca);
}

/* ---- signed reports ---- */

#define REPORT_ROWS_MAX 100000

struct report {
    int csv;
    struct hsmcad_buf out;
    size_t rows;
};

static void
opt_time(int64_t ms, char *out, size_t n)
{
    if (ms <= 0)
        out[0] = '\0';
    else
        rfc3339(ms / 1000, out, n);
}

static enum hsmca_err
report_one(void *arg, const struct hsmca_cert_rec *c)
{
    struct report *v = arg;
    char serial[41], nb[32], na[32], iss[32], rev[32], inv[32], vid[8] = "", pid[8] = "";
    const char *rn = c->revoked ? hsmca_crl_reason_name(c->reason) : NULL;

    hsmca_hex_encode(c->serial, c->serial_len, serial, sizeof(serial));
    rfc3339(c->not_before, nb, sizeof(nb));
    rfc3339(c->not_after, na, sizeof(na));
    opt_time(c->issued_ms, iss, sizeof(iss));
    opt_time(c->revoked ? c->revoked_ms : 0, rev, sizeof(rev));
    opt_time(c->invalidity_ms, inv, sizeof(inv));
    if (c->vid >= 0)
        snprintf(vid, sizeof(vid), "%04X", (unsigned)c->vid & 0xffffu);
    if (c->pid >= 0)
        snprintf(pid, sizeof(pid), "%04X", (unsigned)c->pid & 0xffffu);
    if (c->revoked && rn == NULL)
        rn = "unspecified";
    if (v->csv) {
        hsmcad_buf_printf(&v->out, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", serial, vid, pid, nb, na, iss,
                          c->revoked ? "revoked" : "issued", rev, rn != NULL ? rn : "", inv);
    } else {
        if (v->rows > 0)
            hsmcad_buf_str(&v->out, ",\n");
        hsmcad_buf_printf(&v->out,
                          "{\"serial\":\"%s\",\"vid\":\"%s\",\"pid\":\"%s\",\"not_before\":\"%s\","
                          "\"not_after\":\"%s\",\"issued\":\"%s\",\"status\":\"%s\"",
                          serial, vid, pid, nb, na, iss, c->revoked ? "revoked" : "issued");
        if (c->revoked)
            hsmcad_buf_printf(&v->out, ",\"revoked\":\"%s\",\"reason\":\"%s\"", rev, rn);
        if (c->invalidity_ms > 0)
            hsmcad_buf_printf(&v->out, ",\"invalidity_date\":\"%s\"", inv);
        hsmcad_buf_str(&v->out, "}");
    }
    v->rows++;
    return v->out.err ? HSMCA_E_NOMEM : HSMCA_OK;
}

/* ms since the epoch, or YYYY-MM-DD (UTC; end_of_day: its last ms). -1 if neither. */
static int64_t
report_time(const char *s, int end_of_day)
{
    uint64_t v;
    struct tm tm;
    const char *e;

    if (s == NULL)
        return -1;
    if (strlen(s) == 10 && s[4] == '-' && s[7] == '-') {
        memset(&tm, 0, sizeof(tm));
        e = strptime(s, "%Y-%m-%d", &tm);
        if (e == NULL || *e != '\0')
            return -1;
        return (int64_t)timegm(&tm) * 1000 + (end_of_day ? 86399999 : 0);
    }
    if (hsmca_parse_u64(s, strlen(s), INT64_MAX, &v) != HSMCA_OK)
        return -1;
    return (int64_t)v;
}

void
hsmcad_h_report(struct hsmcad_req *r)
{
    static const char *const allowed[] = {"from", "to", "format", NULL};
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    struct hsmca_ca_rec ca;
    struct report v;
    const char *fmt = hsmcad_req_query(r, "format");
    int64_t from, to;
    unsigned char h[HSMCA_SHA256_LEN], sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t sig_len = 0;
    char hex[HSMCA_SHA256_HEX_SIZE], *sig_b64 = NULL, detail[384];
    enum hsmca_err rc;
    json_t *o;

    memset(&v, 0, sizeof(v));
    if (hsmcad_req_query_check(r, allowed) != HSMCA_OK) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY, "allowed once each: from, to, format");
        return;
    }
    from = report_time(hsmcad_req_query(r, "from"), 0);
    to = report_time(hsmcad_req_query(r, "to"), 1);
    if (from < 0 || to < 0 || from > to) {
        hsmcad_reply_problem(r, HSMCA_E_REPORT_RANGE, NULL);
        return;
    }
    if (fmt != NULL && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_QUERY, "format is csv or json");
        return;
    }
    v.csv = fmt == NULL || strcmp(fmt, "csv") == 0;
    if (load_ca(r, ro, &ca) != 0)
        return;
    hsmca_ca_rec_clear(&ca);
    if (d->audit_key == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_READY, "no audit key to sign with");
        return;
    }
    hsmcad_buf_str(&v.out, v.csv ? "serial,vid,pid,not_before,not_after,issued,status,revoked,"
                                   "reason,invalidity_date\n"
                                 : "[\n");
    rc = hsmca_store_cert_activity(ro, hsmcad_req_param(r, 0), from, to, REPORT_ROWS_MAX,
                                   report_one, &v);
    if (!v.csv)
        hsmcad_buf_str(&v.out, "\n]\n");
    if (rc == HSMCA_OK && v.out.err)
        rc = HSMCA_E_NOMEM;
    if (rc == HSMCA_OK) {
        SHA256((const unsigned char *)v.out.p, v.out.len, h);
        rc = hsmca_key_sign_digest(d->audit_key, h, sizeof(h), sig, sizeof(sig), &sig_len);
    }
    if (rc != HSMCA_OK) {
        free(v.out.p);
        hsmcad_reply_problem(
            r, rc, rc == HSMCA_E_TOO_LARGE ? "more than 100000 rows: narrow the range" : NULL);
        return;
    }
    sig_b64 = malloc(4 * ((sig_len + 2) / 3) + 1);
    if (sig_b64 != NULL)
        EVP_EncodeBlock((unsigned char *)sig_b64, sig, (int)sig_len);
    hsmca_hex_encode(h, HSMCA_SHA256_LEN, hex, sizeof(hex));
    snprintf(detail, sizeof(detail),
             "{\"format\":\"%s\",\"from_ms\":%lld,\"rows\":%zu,\"sha256\":\"%s\",\"to_ms\":%lld}",
             v.csv ? "csv" : "json", (long long)from, v.rows, hex, (long long)to);
    hsmcad_req_audit_detail(r, NULL, detail);
    o = sig_b64 != NULL
            ? json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s%, s:s}", "ca", hsmcad_req_param(r, 0),
                        "format", v.csv ? "csv" : "json", "from_ms", (json_int_t)from, "to_ms",
                        (json_int_t)to, "rows", (json_int_t)v.rows, "sha256", hex, "report",
                        v.out.p, v.out.len, "signature", sig_b64)
            : NULL;
    free(sig_b64);
    free(v.out.p);
    if (o == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        return;
    }
    hsmcad_reply_json(r, 200, o);
}
