/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_est.c -- EST (RFC 7030, with RFC 8951's base64 clarification) under
 * /.well-known/est/{ca}/: cacerts (the PAI and its PAA), csrattrs (P-256 and ecdsa-with-SHA256,
 * the only CSRs a DAC is made from), simpleenroll and simplereenroll. Another door to the issuance
 * engine of POST /v1/cas/{ca}/dacs: the same CSR checks, window, quotas, idempotency
 * (Idempotency-Key) and audit entries; only the encodings differ (base64 DER PKCS#10 in, base64
 * DER PKCS#7 certs-only out). A closed window or a used-up quota answers 503 with Retry-After, as
 * RFC 7030 section 4.2.3 allows. docs/factory.md describes the mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "hsmca/issue.h"
#include "hsmca/sizes.h"
#include "hsmca/store_certs.h"
#include "hsmca/store_factory.h"
#include "hsmca/util.h"

#include "hsmcad.h"
#include "problem.h"
#include "routes.h"
#include "routes_issue.h"

#define EST_CERTS_TYPE "application/pkcs7-mime; smime-type=certs-only"
/* Retry-After (seconds) for a refusal that time may lift: a quota's minute or day, or a window a
 * new quorum activation must open. */
#define EST_RETRY_MINUTE 60
#define EST_RETRY_DAY 3600
#define EST_RETRY_WINDOW 600

/* CsrAttrs (RFC 7030 4.5.2): SEQUENCE { ecdsa-with-SHA256, Attribute { id-ecPublicKey,
 * SET { prime256v1 } } }: sign with SHA-256, on a P-256 key. */
static const unsigned char csr_attrs_der[] = {0x30, 0x21, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
                                              0x04, 0x03, 0x02, 0x30, 0x15, 0x06, 0x07, 0x2a, 0x86,
                                              0x48, 0xce, 0x3d, 0x02, 0x01, 0x31, 0x0a, 0x06, 0x08,
                                              0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

/* ---- base64 ---- */

/* base64 of der in lines of 64 characters (openssl base64 -d reads it); malloc'd. */
static char *
b64_lines(const unsigned char *der, size_t len, size_t *out_len)
{
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    size_t cap = (len + 2) / 3 * 4 + len / 48 + 4;
    char *s = malloc(cap + 1);
    int n = 0, m = 0;

    if (ctx == NULL || s == NULL || len > (size_t)1 << 24) {
        EVP_ENCODE_CTX_free(ctx);
        free(s);
        return NULL;
    }
    EVP_EncodeInit(ctx);
    if (EVP_EncodeUpdate(ctx, (unsigned char *)s, &n, der, (int)len) != 1) {
        EVP_ENCODE_CTX_free(ctx);
        free(s);
        return NULL;
    }
    EVP_EncodeFinal(ctx, (unsigned char *)s + n, &m);
    EVP_ENCODE_CTX_free(ctx);
    s[n + m] = '\0';
    *out_len = (size_t)(n + m);
    return s;
}

/* Decode base64 (whitespace and line breaks ignored, '=' padding only at the end) into out. */
static int
b64_decode(const unsigned char *in, size_t len, unsigned char *out, size_t cap, size_t *out_len)
{
    char buf[(HSMCA_CSR_MAX / 3 + 2) * 4 + 4];
    size_t i, n = 0, pad = 0;
    int r;

    for (i = 0; i < len; i++) {
        unsigned char c = in[i];

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (n >= sizeof(buf) - 1)
            return -1;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '='))
            return -1;
        if (c == '=')
            pad++;
        else if (pad > 0)
            return -1;
        buf[n++] = (char)c;
    }
    if (n == 0 || n % 4 != 0 || pad > 2 || (n / 4) * 3 > cap)
        return -1;
    buf[n] = '\0';
    r = EVP_DecodeBlock(out, (const unsigned char *)buf, (int)n);
    if (r < 0 || (size_t)r < pad)
        return -1;
    *out_len = (size_t)r - pad;
    return 0;
}

/* Base64 of a PKCS#7 certs-only SignedData (no signers, no content) holding certs. */
static char *
certs_only(X509 *const *certs, size_t n, size_t *out_len)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL;
    char *s = NULL;
    size_t i;
    int len = -1;

    if (p7 != NULL && PKCS7_set_type(p7, NID_pkcs7_signed) == 1 &&
        PKCS7_content_new(p7, NID_pkcs7_data) == 1) {
        for (i = 0; i < n; i++) {
            if (PKCS7_add_certificate(p7, certs[i]) != 1)
                break;
        }
        if (i == n)
            len = i2d_PKCS7(p7, &der);
    }
    if (len > 0)
        s = b64_lines(der, (size_t)len, out_len);
    OPENSSL_free(der);
    PKCS7_free(p7);
    return s;
}

static X509 *
x509_of(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;

    return der != NULL ? d2i_X509(NULL, &p, (long)len) : NULL;
}

/* ---- refusals ---- */

/* How long a client should wait before a refusal may be lifted; 0 = not a matter of time. */
static int
retry_after(enum hsmca_err e)
{
    switch (e) {
    case HSMCA_E_ISSUE_QUOTA_MINUTE:
        return EST_RETRY_MINUTE;
    case HSMCA_E_ISSUE_QUOTA_DAY:
        return EST_RETRY_DAY;
    case HSMCA_E_ISSUE_CA_INACTIVE:
    case HSMCA_E_ISSUE_WINDOW_EXHAUSTED:
    case HSMCA_E_ISSUE_WINDOW_EXPIRED:
        return EST_RETRY_WINDOW;
    default:
        return 0;
    }
}

/* A problem reply; a refusal time may lift is 503 with Retry-After (RFC 7030 4.2.3). */
static void
est_problem(struct hsmcad_req *r, enum hsmca_err e, const char *detail)
{
    int after = retry_after(e);
    json_t *pj;
    char *s, secs[16];

    if (after == 0) {
        hsmcad_reply_problem(r, e, detail);
        return;
    }
    pj = hsmcad_problem_object(e, detail, hsmcad_req_id(r));
    if (pj == NULL || json_object_set_new(pj, "status", json_integer(503)) != 0 ||
        json_object_set_new(pj, "retry_after", json_integer(after)) != 0 ||
        (s = json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        json_decref(pj);
        hsmcad_reply_problem(r, e, detail);
        return;
    }
    json_decref(pj);
    hsmcad_reply(r, 503, "application/problem+json", s, strlen(s));
    snprintf(secs, sizeof(secs), "%d", after);
    hsmcad_reply_header(r, "Retry-After", secs);
}

/* Refuse before the engine, counted and audited through the engine's limiter as the REST path
 * does. */
static void
pre_refuse(struct hsmcad_req *r, enum hsmca_err e, const char *detail)
{
    est_problem(r, e, detail);
    hsmcad_issue_refused(r, e);
}

/* ---- cacerts, csrattrs ---- */

void
hsmcad_h_est_cacerts(struct hsmcad_req *r)
{
    struct hsmca_store *ro = hsmcad_ro(hsmcad_req_daemon(r));
    struct hsmca_ca_rec pai, paa;
    X509 *certs[2] = {NULL, NULL};
    size_t n = 0, len = 0;
    char *body = NULL, target[HSMCA_CA_ID_MAX + 4];
    enum hsmca_err rc;

    memset(&pai, 0, sizeof(pai));
    memset(&paa, 0, sizeof(paa));
    snprintf(target, sizeof(target), "ca/%s", hsmcad_req_param(r, 0));
    hsmcad_req_audit_detail(r, target, NULL);
    if (ro == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_STORE_OPEN, NULL);
        return;
    }
    rc = hsmca_store_ca_get(ro, hsmcad_req_param(r, 0), &pai);
    if (rc != HSMCA_OK || pai.cert_der == NULL) {
        hsmcad_reply_problem(
            r, rc == HSMCA_E_NOT_FOUND || rc == HSMCA_OK ? HSMCA_E_HTTP_CA_NOT_FOUND : rc, NULL);
        goto out;
    }
    certs[n++] = x509_of(pai.cert_der, pai.cert_len);
    if (pai.parent[0] != '\0' && hsmca_store_ca_get(ro, pai.parent, &paa) == HSMCA_OK &&
        paa.cert_der != NULL)
        certs[n++] = x509_of(paa.cert_der, paa.cert_len);
    if (certs[0] == NULL || (n == 2 && certs[1] == NULL) ||
        (body = certs_only(certs, n, &len)) == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_INTERNAL, NULL);
        goto out;
    }
    hsmcad_reply(r, 200, "application/pkcs7-mime", body, len);
    hsmcad_reply_header(r, "Content-Transfer-Encoding", "base64");
out:
    X509_free(certs[0]);
    X509_free(certs[1]);
    hsmca_ca_rec_clear(&pai);
    hsmca_ca_rec_clear(&paa);
}

void
hsmcad_h_est_csrattrs(struct hsmcad_req *r)
{
    struct hsmca_ca *c = hsmca_ca_find(hsmcad_req_daemon(r)->cas, hsmcad_req_param(r, 0));
    char *body, target[HSMCA_CA_ID_MAX + 4];
    size_t len = 0;

    snprintf(target, sizeof(target), "ca/%s", hsmcad_req_param(r, 0));
    hsmcad_req_audit_detail(r, target, NULL);
    if (c == NULL || strcmp(c->kind, "pai") != 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, NULL);
        return;
    }
    body = b64_lines(csr_attrs_der, sizeof(csr_attrs_der), &len);
    if (body == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        return;
    }
    hsmcad_reply(r, 200, "application/csrattrs", body, len);
    hsmcad_reply_header(r, "Content-Transfer-Encoding", "base64");
}

/* ---- simpleenroll, simplereenroll ---- */

/* On the connection's worker, once the result is durable: the certs-only reply, or the
 * refusal. */
static void
est_reply(struct hsmcad_req *r, void *arg, struct hsmca_issue_result *res, int reply)
{
    X509 *dac = NULL;
    char *body = NULL;
    size_t len = 0;

    if (!reply)
        goto out;
    if (res->rc != HSMCA_OK) {
        est_problem(r, res->rc, res->detail[0] ? res->detail : NULL);
        goto out;
    }
    dac = x509_of(res->dac_der, res->dac_len);
    body = dac != NULL ? certs_only(&dac, 1, &len) : NULL;
    if (body == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    hsmcad_reply(r, 200, EST_CERTS_TYPE, body, len);
    hsmcad_reply_header(r, "Content-Transfer-Encoding", "base64");
out:
    (void)arg;
    X509_free(dac);
    hsmca_issue_result_free(res);
}

/*
 * Re-enrolment (RFC 7030 4.2.2), renewal: the request carries the public key of a DAC this CA
 * issued and its subject. The operator's TLS certificate cannot stand for the device's, so a
 * rekey (a new key) is a new enrolment. The request id ties the new DAC to the renewed one
 * ("est-renew-<serial>"): a retry replays, and each DAC is renewed at most once (a second renewal
 * renews the newer DAC).
 */
static enum hsmca_err
renewal(struct hsmcad_req *r, const unsigned char *der, size_t len, char *rid, size_t rid_size)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    EVP_PKEY *pk = req != NULL ? X509_REQ_get0_pubkey(req) : NULL;
    unsigned char point[65], serial[20], *old_der = NULL, old_csr[HSMCA_SHA256_LEN],
                                         csr_hash[HSMCA_SHA256_LEN];
    unsigned int hl = 0;
    char old_rid[HSMCA_REQUEST_ID_MAX + 1];
    size_t plen = 0, slen = 0, old_len = 0;
    char hex[41];
    int revoked = 0;
    X509 *old = NULL;
    enum hsmca_err rc;

    if (pk == NULL || !EVP_PKEY_is_a(pk, "EC") ||
        EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                        sizeof(point), &plen) != 1 ||
        plen != 65) {
        rc = req == NULL                              ? HSMCA_E_CSR_MALFORMED
             : pk == NULL || !EVP_PKEY_is_a(pk, "EC") ? HSMCA_E_CSR_KEY_TYPE
                                                      : HSMCA_E_CSR_POINT_FORMAT;
        X509_REQ_free(req);
        return rc;
    }
    rc = ro != NULL
             ? hsmca_store_cert_by_point(ro, hsmcad_req_param(r, 0), point, serial, &slen, &revoked,
                                         old_rid, sizeof(old_rid), old_csr, &old_der, &old_len)
             : HSMCA_E_STORE_OPEN;
    if (rc == HSMCA_E_NOT_FOUND)
        rc = HSMCA_E_EST_REENROLL_UNKNOWN;
    if (rc == HSMCA_OK && revoked)
        rc = HSMCA_E_EST_REENROLL_REVOKED;
    if (rc == HSMCA_OK) {
        old = x509_of(old_der, old_len);
        if (old == NULL)
            rc = HSMCA_E_STORE_READ;
        else if (X509_NAME_cmp(X509_get_subject_name(old), X509_REQ_get_subject_name(req)) != 0)
            rc = HSMCA_E_EST_REENROLL_SUBJECT;
    }
    if (rc == HSMCA_OK && EVP_Digest(der, len, csr_hash, &hl, EVP_sha256(), NULL) != 1)
        rc = HSMCA_E_INTERNAL;
    if (rc == HSMCA_OK && strncmp(old_rid, "est-renew-", 10) == 0 &&
        memcmp(old_csr, csr_hash, HSMCA_SHA256_LEN) == 0) {
        /* the newest DAC with this key came from this very request: a retry, replayed */
        snprintf(rid, rid_size, "%s", old_rid);
    } else if (rc == HSMCA_OK) {
        hsmca_hex_encode(serial, slen, hex, sizeof(hex));
        snprintf(rid, rid_size, "est-renew-%s", hex);
    }
    X509_free(old);
    free(old_der);
    X509_REQ_free(req);
    return rc;
}

static void
enroll(struct hsmcad_req *r, int renew)
{
    const struct hsmcad_principal *p = hsmcad_req_principal(r);
    struct hsmca_issue_ca *ica = hsmcad_issuing_ca(r);
    struct hsmca_issue_req rq;
    unsigned char der[HSMCA_CSR_MAX + 3];
    char rid[HSMCA_REQUEST_ID_MAX + 1];
    const unsigned char *b;
    const char *key = hsmcad_req_header(r, "Idempotency-Key");
    size_t blen, dlen = 0;
    enum hsmca_err rc;

    if (ica == NULL) {
        pre_refuse(r, HSMCA_E_HTTP_CA_NOT_FOUND, "no PAI with that id issues DACs here");
        return;
    }
    if (!hsmcad_req_accepts(r, "application/pkcs7-mime")) {
        pre_refuse(r, HSMCA_E_HTTP_NOT_ACCEPTABLE, "application/pkcs7-mime");
        return;
    }
    b = hsmcad_req_body(r, &blen);
    if (b64_decode(b, blen, der, sizeof(der), &dlen) != 0 || dlen == 0) {
        pre_refuse(r, HSMCA_E_EST_BAD_BASE64, NULL);
        return;
    }
    memset(&rq, 0, sizeof(rq));
    rq.request_id = key;
    if (renew) {
        if (key != NULL) {
            pre_refuse(r, HSMCA_E_HTTP_BAD_REQUEST,
                       "a re-enrolment's request id is the renewed DAC's; send no Idempotency-Key");
            return;
        }
        rc = renewal(r, der, dlen, rid, sizeof(rid));
        if (rc != HSMCA_OK) {
            pre_refuse(r, rc, NULL);
            return;
        }
        rq.request_id = rid;
    }
    rq.csr = der;
    rq.csr_len = dlen;
    rq.principal = p->name;
    rq.role = hsmcad_role_name(p->role);
    hsmcad_issue_one(r, ica, &rq, est_reply, NULL);
}

void
hsmcad_h_est_enroll(struct hsmcad_req *r)
{
    enroll(r, 0);
}

void
hsmcad_h_est_reenroll(struct hsmcad_req *r)
{
    enroll(r, 1);
}
