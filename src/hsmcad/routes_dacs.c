/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_dacs.c -- POST /v1/cas/{ca}/dacs (one CSR: DER application/pkcs10, or JSON {"csr": PEM,
 * "request_id", "pid", "dry_run"}; Idempotency-Key header = request id; ?dry_run=true) and POST
 * /v1/cas/{ca}/dacs/batch (up to limits.batch_max items, one result each, a bad item fails
 * alone). The issuance engine checks, builds, signs and audits; the connection is suspended until
 * the engine's done callback (on the audit writer thread) has the durable result. That callback
 * only wakes the connection; the PEM and JSON of the reply are made back on the connection's
 * worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/issue.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#include "buf.h"
#include "hsmcad.h"
#include "problem.h"
#include "routes.h"
#include "routes_issue.h"

/* ---- shared ---- */

static json_t *
receipt_json(const struct hsmca_issue_result *res)
{
    char hex[HSMCA_SHA256_HEX_SIZE];

    if (!res->has_receipt)
        return json_null();
    hsmca_hex_encode(res->receipt.entry_hash, HSMCA_SHA256_LEN, hex, sizeof(hex));
    return json_pack("{s:I, s:s}", "seq", (json_int_t)res->receipt.seq, "entry_hash", hex);
}

/* "8001" (4 hex digits) or an integer 0..65535. */
static int
parse_pid(json_t *v, uint16_t *out)
{
    unsigned char b[2];
    size_t n = 0;

    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 0xffff) {
        *out = (uint16_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && json_string_length(v) == 4 &&
        hsmca_hex_decode(json_string_value(v), 4, b, 2, &n) == HSMCA_OK && n == 2) {
        *out = (uint16_t)(b[0] << 8 | b[1]);
        return 0;
    }
    return -1;
}

static int
query_dry_run(struct hsmcad_req *r, int *dry)
{
    const char *s = hsmcad_req_query(r, "dry_run");

    *dry = 0;
    if (s == NULL || strcmp(s, "false") == 0)
        return 0;
    if (strcmp(s, "true") == 0) {
        *dry = 1;
        return 0;
    }
    return -1;
}

/* Refuse before the engine: reply, count, audit through the engine's limiter. */
static void
pre_refuse(struct hsmcad_req *r, enum hsmca_err e, const char *detail)
{
    hsmcad_reply_problem(r, e, detail);
    hsmcad_issue_refused(r, e);
}

/* ---- one DAC ---- */

enum { DAC_JSON, DAC_PEM, DAC_DER };

struct single {
    int fmt; /* DAC_JSON, DAC_PEM (application/pem-certificate-chain) or DAC_DER (pkix-cert) */
    char ca[HSMCA_CA_ID_MAX + 1];
};

/* On the connection's worker, once the result is durable: PEM and JSON for one DAC. */
static void
single_reply(struct hsmcad_req *r, void *arg, struct hsmca_issue_result *res, int reply)
{
    struct single *s = arg;
    char *dac = NULL, *pai = NULL, serial[41];

    if (!reply)
        goto out;
    if (res->rc != HSMCA_OK) {
        hsmcad_reply_problem(r, res->rc, res->detail[0] ? res->detail : NULL);
        goto out;
    }
    if (res->dry_run) {
        hsmcad_reply_json(r, 200, json_incref(res->doc));
        goto out;
    }
    hsmca_hex_encode(res->serial, res->serial_len, serial, sizeof(serial));
    if (!res->replayed) {
        char loc[HSMCA_CA_ID_MAX + 64];

        /* the new certificate's own resource (GET /v1/cas/{ca}/certificates/{serial}) */
        snprintf(loc, sizeof(loc), "/v1/cas/%s/certificates/%s", s->ca, serial);
        hsmcad_reply_header(r, "Location", loc);
    }
    if (s->fmt == DAC_DER) {
        char *der = malloc(res->dac_len);

        if (der == NULL) {
            hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
            goto out;
        }
        memcpy(der, res->dac_der, res->dac_len);
        hsmcad_reply_header(r, "Serial", serial);
        hsmcad_reply(r, res->replayed ? 200 : 201, "application/pkix-cert", der, res->dac_len);
        goto out;
    }
    dac = hsmca_pem_armour("CERTIFICATE", res->dac_der, res->dac_len);
    pai = hsmca_pem_armour("CERTIFICATE", res->pai_der, res->pai_len);
    if (dac == NULL || pai == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    if (s->fmt == DAC_PEM) {
        size_t dl = strlen(dac), pl = strlen(pai);
        char *chain = malloc(dl + pl + 1);

        if (chain == NULL) {
            hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
            goto out;
        }
        memcpy(chain, dac, dl);
        memcpy(chain + dl, pai, pl + 1);
        hsmcad_reply_header(r, "Serial", serial);
        hsmcad_reply(r, res->replayed ? 200 : 201, "application/pem-certificate-chain", chain,
                     dl + pl);
        goto out;
    }
    hsmcad_reply_json(r, res->replayed ? 200 : 201,
                      json_pack("{s:s, s:[s], s:s, s:b, s:s, s:o}", "certificate", dac, "chain",
                                pai, "serial", serial, "replayed", res->replayed, "csr_sha256",
                                res->csr_sha256, "receipt", receipt_json(res)));
out:
    free(dac);
    free(pai);
    hsmca_issue_result_free(res);
    free(s);
}

void
hsmcad_h_dac(struct hsmcad_req *r)
{
    static const char *const allowed[] = {"dry_run", NULL};
    const struct hsmcad_principal *p = hsmcad_req_principal(r);
    struct hsmca_issue_ca *ica = hsmcad_issuing_ca(r);
    struct hsmca_issue_req rq;
    struct single *s = NULL;
    const unsigned char *b;
    size_t blen;
    json_t *body = NULL, *pid = NULL;
    json_error_t jerr;
    const char *csr = NULL, *rid = NULL, *devid = NULL;
    const char *key = hsmcad_req_header(r, "Idempotency-Key");
    int dry = 0, jdry = 0, fmt;
    /* the route's order of preference: a PEM chain for a DER request, JSON for a JSON one */
    static const char *const der_order[] = {"application/pem-certificate-chain", "application/json",
                                            "application/pkix-cert"};
    static const char *const json_order[] = {
        "application/json", "application/pem-certificate-chain", "application/pkix-cert"};
    static const int der_fmt[] = {DAC_PEM, DAC_JSON, DAC_DER};
    static const int json_fmt[] = {DAC_JSON, DAC_PEM, DAC_DER};
    int json_req = strcmp(hsmcad_req_ctype(r), "application/json") == 0;

    memset(&rq, 0, sizeof(rq));
    if (hsmcad_req_query_check(r, allowed) != HSMCA_OK || query_dry_run(r, &dry) != 0) {
        pre_refuse(r, HSMCA_E_HTTP_BAD_QUERY, "the only query parameter is dry_run=true|false");
        return;
    }
    /* an empty key would turn idempotency off, and of two keys only the first would count */
    if (hsmcad_req_header_count(r, "Idempotency-Key") > 1 ||
        (key != NULL && (key[0] == '\0' || strlen(key) > HSMCA_REQUEST_ID_MAX))) {
        pre_refuse(r, HSMCA_E_HTTP_IDEMPOTENCY_KEY,
                   "send Idempotency-Key once, with 1 to 128 characters of [A-Za-z0-9._~:@+=-]");
        return;
    }
    if (ica == NULL) {
        pre_refuse(r, HSMCA_E_HTTP_CA_NOT_FOUND, "no PAI with that id issues DACs here");
        return;
    }
    b = hsmcad_req_body(r, &blen);
    if (strcmp(hsmcad_req_ctype(r), "application/json") == 0) {
        body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
        if (body == NULL ||
            json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s, s?s, s?o, s?b, s?s}", "csr", &csr,
                           "request_id", &rid, "pid", &pid, "dry_run", &jdry, "device_id",
                           &devid) != 0 ||
            (pid != NULL && parse_pid(pid, &rq.pid) != 0)) {
            pre_refuse(r, HSMCA_E_HTTP_BAD_REQUEST,
                       "expected {\"csr\": PEM, \"request_id\"?: string, \"pid\"?: \"XXXX\", "
                       "\"device_id\"?: string, \"dry_run\"?: bool}");
            goto out;
        }
        rq.device_id = devid;
        rq.csr = (const unsigned char *)csr;
        rq.csr_len = strlen(csr);
        rq.pid_given = pid != NULL;
        dry |= jdry;
    } else {
        rq.csr = b;
        rq.csr_len = blen;
    }
    if (rid != NULL && rid[0] == '\0') { /* as an empty Idempotency-Key: never "none" */
        pre_refuse(r, HSMCA_E_ISSUE_REQUEST_ID_INVALID,
                   "request_id must not be empty; leave it out for a request without one");
        goto out;
    }
    if (key != NULL && rid != NULL && strcmp(key, rid) != 0) {
        pre_refuse(r, HSMCA_E_HTTP_BAD_REQUEST,
                   "Idempotency-Key and request_id differ; send one of them");
        goto out;
    }
    rq.request_id = rid != NULL ? rid : key;
    rq.principal = p->name;
    rq.role = hsmcad_role_name(p->role);
    rq.dry_run = dry;
    fmt = hsmcad_req_negotiate(r, json_req ? json_order : der_order, 3);
    if (fmt < 0) {
        pre_refuse(r, HSMCA_E_HTTP_NOT_ACCEPTABLE,
                   "application/pem-certificate-chain, application/json or application/pkix-cert");
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    snprintf(s->ca, sizeof(s->ca), "%s", hsmcad_req_param(r, 0));
    s->fmt = json_req ? json_fmt[fmt] : der_fmt[fmt];
    hsmcad_issue_one(r, ica, &rq, single_reply, s);
out:
    json_decref(body);
}

/* ---- batch ---- */

struct batch {
    struct hsmcad_req *r;
    char ca[HSMCA_CA_ID_MAX + 1];
    struct hsmca_issue_req *items;
    struct hsmca_issue_batch_result *br; /* set by batch_done */
};

/* ---- the batch reply: written directly (jansson escaped 100 PEMs byte by byte: 11 % of the
 * daemon's CPU in batches); refused and dry-run items, rare, still go through jansson ---- */

static void
sb_json(struct hsmcad_buf *b, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    json_decref(j);
    if (s == NULL) {
        b->err = 1;
        return;
    }
    hsmcad_buf_str(b, s);
    free(s);
}

/* One issued item, keys sorted as JSON_SORT_KEYS writes them. */
static void
sb_issued(struct hsmcad_buf *b, size_t i, const struct hsmca_issue_result *res, const char *dac)
{
    char serial[41], hex[HSMCA_SHA256_HEX_SIZE];

    hsmca_hex_encode(res->serial, res->serial_len, serial, sizeof(serial));
    hsmcad_buf_str(b, "{\"certificate\":");
    hsmcad_buf_json_str(b, dac);
    hsmcad_buf_printf(b, ",\"index\":%zu,\"receipt\":", i);
    if (res->has_receipt) {
        hsmca_hex_encode(res->receipt.entry_hash, HSMCA_SHA256_LEN, hex, sizeof(hex));
        hsmcad_buf_printf(b, "{\"entry_hash\":\"%s\",\"seq\":%llu}", hex,
                          (unsigned long long)res->receipt.seq);
    } else {
        hsmcad_buf_str(b, "null");
    }
    hsmcad_buf_printf(b, ",\"replayed\":%s,\"serial\":\"%s\",\"status\":%d}",
                      res->replayed ? "true" : "false", serial, res->replayed ? 200 : 201);
}

/* On the connection's worker (hsmcad_req_resume_later): the batch's JSON, PEM made once for the
 * PAI. */
static void
batch_reply(struct hsmcad_req *r, void *arg, int reply)
{
    struct batch *bt = arg;
    struct hsmca_issue_batch_result *br = bt->br;
    struct hsmcad_buf b = {NULL, 0, 0, 0};
    char *pai = NULL;
    size_t i;

    if (!reply)
        goto out; /* the connection is gone: nothing to answer */
    hsmcad_buf_str(&b, "{\"chain\":[");
    for (i = 0; i < br->n && pai == NULL; i++)
        if (br->items[i].rc == HSMCA_OK && !br->items[i].dry_run)
            pai = hsmca_pem_armour("CERTIFICATE", br->items[i].pai_der, br->items[i].pai_len);
    if (pai != NULL)
        hsmcad_buf_json_str(&b, pai);
    hsmcad_buf_printf(&b, "],\"failed\":%zu,\"issued\":%zu,\"replayed\":%zu,\"results\":[",
                      (size_t)br->failed, (size_t)br->issued, (size_t)br->replayed);
    for (i = 0; i < br->n && !b.err; i++) {
        struct hsmca_issue_result *res = &br->items[i];

        if (i > 0)
            hsmcad_buf_put(&b, ",", 1);
        if (res->rc != HSMCA_OK) {
            sb_json(&b, json_pack("{s:I, s:i, s:o, s:o}", "index", (json_int_t)i, "status",
                                  hsmca_err_http_status(res->rc), "problem",
                                  hsmcad_problem_object(res->rc,
                                                        res->detail[0] ? res->detail : NULL, NULL),
                                  "receipt", receipt_json(res)));
        } else if (res->dry_run) {
            sb_json(&b, json_pack("{s:I, s:i, s:O, s:o}", "index", (json_int_t)i, "status", 200,
                                  "lint", res->doc, "receipt", receipt_json(res)));
        } else {
            char *dac = hsmca_pem_armour("CERTIFICATE", res->dac_der, res->dac_len);

            if (dac == NULL)
                b.err = 1;
            else
                sb_issued(&b, i, res, dac);
            free(dac);
        }
    }
    hsmcad_buf_str(&b, "]}");
    if (b.err) {
        free(b.p);
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
    } else {
        hsmcad_reply(r, 200, "application/json", b.p, b.len);
    }
out:
    free(pai);
    hsmca_issue_batch_result_free(br);
    free(bt->items);
    free(bt);
}

/* On the audit writer's thread: every item is durable (or refused); wake the connection. */
static void
batch_done(void *arg, struct hsmca_issue_batch_result *br)
{
    struct batch *bt = arg;
    struct hsmcad_req *r = bt->r;
    struct hsmcad *d = hsmcad_req_daemon(r);
    size_t i;

    hsmcad_req_engine_audited(r);
    hsmcad_metrics_dac(d->metrics, bt->ca, 0, br->issued);
    for (i = 0; i < br->n; i++) {
        if (br->items[i].rc != HSMCA_OK)
            hsmcad_metrics_dac_refused(d->metrics, bt->ca, br->items[i].rc, 1);
        if (br->items[i].sign_us > 0)
            hsmcad_metrics_sign(d->metrics, br->items[i].sign_us);
    }
    bt->br = br;
    hsmcad_req_resume_later(r, batch_reply, bt);
}

void
hsmcad_h_dac_batch(struct hsmcad_req *r)
{
    static const char *const allowed[] = {"dry_run", NULL};
    struct hsmcad *d = hsmcad_req_daemon(r);
    const struct hsmcad_principal *p = hsmcad_req_principal(r);
    struct hsmca_issue_ca *ica = hsmcad_issuing_ca(r);
    struct batch *bt = NULL;
    const unsigned char *b;
    size_t blen, i, n;
    json_t *body = NULL, *items = NULL, *it;
    json_error_t jerr;
    int dry = 0, jdry = 0;
    enum hsmca_err rc;

    if (hsmcad_req_query_check(r, allowed) != HSMCA_OK || query_dry_run(r, &dry) != 0) {
        pre_refuse(r, HSMCA_E_HTTP_BAD_QUERY, "the only query parameter is dry_run=true|false");
        return;
    }
    if (ica == NULL) {
        pre_refuse(r, HSMCA_E_HTTP_CA_NOT_FOUND, "no PAI with that id issues DACs here");
        return;
    }
    b = hsmcad_req_body(r, &blen);
    body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL ||
        json_unpack_ex(body, &jerr, JSON_STRICT, "{s:o, s?b}", "items", &items, "dry_run", &jdry) !=
            0 ||
        !json_is_array(items) || json_array_size(items) == 0) {
        pre_refuse(r, HSMCA_E_ISSUE_BATCH_MALFORMED,
                   "expected {\"items\": [{\"csr\": PEM, \"request_id\"?, \"pid\"?, "
                   "\"device_id\"?}...], "
                   "\"dry_run\"?: bool}");
        goto out;
    }
    n = json_array_size(items);
    if (n > d->cfg.batch_max || n > HSMCA_ISSUE_BATCH_MAX) {
        pre_refuse(r, HSMCA_E_ISSUE_BATCH_TOO_LARGE, NULL);
        goto out;
    }
    bt = calloc(1, sizeof(*bt));
    if (bt != NULL)
        bt->items = calloc(n, sizeof(*bt->items));
    if (bt == NULL || bt->items == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    dry |= jdry;
    json_array_foreach(items, i, it)
    {
        struct hsmca_issue_req *rq = &bt->items[i];
        const char *csr = "", *rid = NULL, *devid = NULL;
        json_t *pid = NULL;

        /* A malformed item reaches the engine with an empty CSR (or PID 0): it fails alone,
         * with its own refusal entry, and the others go on. */
        if (json_unpack_ex(it, &jerr, JSON_STRICT, "{s:s, s?s, s?o, s?s}", "csr", &csr,
                           "request_id", &rid, "pid", &pid, "device_id", &devid) != 0) {
            csr = "";
            rid = NULL;
            pid = NULL;
            devid = NULL;
        }
        rq->csr = (const unsigned char *)csr;
        rq->csr_len = strlen(csr);
        rq->request_id = rid;
        rq->device_id = devid; /* borrowed from body, as csr: read before the submit returns */
        if (pid != NULL) {
            rq->pid_given = 1;
            if (parse_pid(pid, &rq->pid) != 0)
                rq->pid = 0;
        }
        rq->principal = p->name;
        rq->role = hsmcad_role_name(p->role);
        rq->dry_run = dry;
    }
    bt->r = r;
    snprintf(bt->ca, sizeof(bt->ca), "%s", hsmcad_req_param(r, 0));
    hsmcad_req_suspend(r);
    rc = hsmca_issue_batch_submit(d->issuer, ica, bt->items, n, batch_done, bt);
    if (rc != HSMCA_OK) {
        free(bt->items);
        free(bt);
        hsmcad_reply_problem(r, rc, NULL);
        hsmcad_req_resume(r);
    }
    bt = NULL;
out:
    if (bt != NULL)
        free(bt->items);
    free(bt);
    json_decref(body);
}
