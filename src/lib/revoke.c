/* SPDX-License-Identifier: Apache-2.0
 *
 * revoke.c -- the rules of a DAC revocation (revoke.h): checked against a read handle first, so
 * a refusal changes nothing, and again by the store update inside the audit entry, so two
 * revocations of one serial racing each other still give one revocation and one 409.
 */
#include "hsmca/revoke.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "hsmca/crl.h"
#include "hsmca/sizes.h"
#include "hsmca/store_certs.h"
#include "hsmca/util.h"

enum hsmca_err
hsmca_revoke_prepare(struct hsmca_store *ro, const char *ca, const char *serial_hex,
                     const char *reason, int64_t revoked_ms, int64_t invalidity_ms, int64_t now_ms,
                     struct hsmca_revocation *out)
{
    struct hsmca_cert_rec cert;
    struct hsmca_ca_rec rec;
    enum hsmca_err rc;

    if (ro == NULL || ca == NULL || serial_hex == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    if (!hsmca_ca_id_valid(ca))
        return HSMCA_E_NOT_FOUND;
    snprintf(out->ca, sizeof(out->ca), "%s", ca);
    if (hsmca_hex_decode(serial_hex, strlen(serial_hex), out->serial, sizeof(out->serial),
                         &out->serial_len) != HSMCA_OK ||
        out->serial_len == 0)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_crl_reason_from_name(reason != NULL ? reason : "unspecified", &out->reason);
    if (rc != HSMCA_OK)
        return rc;
    if (revoked_ms < -1 || revoked_ms > now_ms || invalidity_ms < -1 || invalidity_ms == 0 ||
        invalidity_ms > now_ms)
        return HSMCA_E_CRL_DATE;
    out->revoked_ms = revoked_ms >= 0 ? revoked_ms : now_ms;
    out->invalidity_ms = invalidity_ms > 0 ? invalidity_ms : 0;
    if (out->invalidity_ms > out->revoked_ms)
        return HSMCA_E_CRL_DATE; /* compromised after it was revoked? */
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_store_ca_get(ro, ca, &rec);
    hsmca_ca_rec_clear(&rec);
    if (rc != HSMCA_OK)
        return rc;
    memset(&cert, 0, sizeof(cert));
    rc = hsmca_store_cert_get(ro, ca, out->serial, out->serial_len, &cert);
    if (rc == HSMCA_OK && cert.revoked)
        rc = HSMCA_E_REVOKE_ALREADY;
    else if (rc == HSMCA_E_NOT_FOUND)
        rc = HSMCA_E_REVOKE_SERIAL_UNKNOWN;
    hsmca_cert_rec_clear(&cert);
    return rc;
}

enum hsmca_err
hsmca_revoke_apply(struct hsmca_store *st, void *arg)
{
    const struct hsmca_revocation *rv = arg;
    enum hsmca_err rc;

    if (rv == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_store_cert_revoke(st, rv->ca, rv->serial, rv->serial_len, rv->revoked_ms, rv->reason,
                                 rv->invalidity_ms);
    if (rc == HSMCA_E_EXISTS)
        return HSMCA_E_REVOKE_ALREADY;
    if (rc == HSMCA_E_NOT_FOUND)
        return HSMCA_E_REVOKE_SERIAL_UNKNOWN;
    return rc;
}

int
hsmca_revoke_detail(const struct hsmca_revocation *rv, char *buf, size_t len)
{
    const char *rn = hsmca_crl_reason_name(rv->reason);
    char hex[41], inv[48] = "";
    int n;

    hsmca_hex_encode(rv->serial, rv->serial_len, hex, sizeof(hex));
    if (rv->invalidity_ms > 0)
        snprintf(inv, sizeof(inv), "\"invalidity_ms\":%lld,", (long long)rv->invalidity_ms);
    n = snprintf(buf, len, "{%s\"reason\":\"%s\",\"revoked_ms\":%lld,\"serial\":\"%s\"}", inv,
                 rn != NULL ? rn : "unspecified", (long long)rv->revoked_ms, hex);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

enum hsmca_err
hsmca_revoke_submit(struct hsmca_audit *a, struct hsmca_revocation *rv, const char *actor,
                    const char *role, hsmca_audit_done_fn done, void *done_arg)
{
    struct hsmca_audit_event ev;
    char target[HSMCA_CA_ID_MAX + 8], detail[256];

    if (a == NULL || rv == NULL)
        return HSMCA_E_INVALID_ARG;
    if (hsmca_revoke_detail(rv, detail, sizeof(detail)) != 0)
        return HSMCA_E_INTERNAL;
    snprintf(target, sizeof(target), "ca/%s", rv->ca);
    hsmca_audit_event_set(&ev, actor, role, "cert.revoke", target, "ok", detail);
    return hsmca_audit_submit(a, &ev, hsmca_revoke_apply, rv, done, done_arg);
}

json_t *
hsmca_revoke_json(const struct hsmca_revocation *rv)
{
    const char *rn = hsmca_crl_reason_name(rv->reason);
    char hex[41];
    json_t *o;

    hsmca_hex_encode(rv->serial, rv->serial_len, hex, sizeof(hex));
    o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "ca", rv->ca, "serial", hex, "status", "revoked",
                  "reason", rn != NULL ? rn : "unspecified", "revoked_ms",
                  (json_int_t)rv->revoked_ms);
    if (o != NULL && rv->invalidity_ms > 0 &&
        json_object_set_new(o, "invalidity_ms", json_integer((json_int_t)rv->invalidity_ms)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

struct crl_put {
    const char *ca;
    const struct hsmca_crl_rec *rec;
};

static enum hsmca_err
crl_put_apply(struct hsmca_store *st, void *arg)
{
    const struct crl_put *p = arg;

    return hsmca_store_crl_put(st, p->ca, p->rec);
}

enum hsmca_err
hsmca_crl_issue(struct hsmca_audit *a, struct hsmca_store *ro, const struct hsmca_ca_rec *ca,
                EVP_PKEY *key, const struct hsmca_crl_policy *pol, time_t now, const char *trigger,
                const char *request_id, struct hsmca_crl_info *info)
{
    struct hsmca_audit_event ev;
    struct hsmca_crl_rec rec;
    struct crl_put put;
    unsigned char d[HSMCA_SHA256_LEN];
    char hex[HSMCA_SHA256_HEX_SIZE], target[HSMCA_CA_ID_MAX + 8], *detail = NULL;
    size_t entries = 0;
    json_t *o;
    enum hsmca_err rc;

    if (a == NULL || ro == NULL || ca == NULL || trigger == NULL)
        return HSMCA_E_INVALID_ARG;
    if (ca->revoked)
        return HSMCA_E_REVOKE_CA_REVOKED;
    rc = hsmca_crl_make(ro, ca, key, pol, now, &rec, &entries);
    if (rc != HSMCA_OK)
        return rc;
    SHA256(rec.der, rec.der_len, d);
    hsmca_hex_encode(d, HSMCA_SHA256_LEN, hex, sizeof(hex));
    o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "ca", ca->id, "entries",
                  (json_int_t)entries, "number", (json_int_t)rec.number, "this_update",
                  (json_int_t)rec.this_update, "next_update", (json_int_t)rec.next_update, "sha256",
                  hex, "trigger", trigger);
    if (o != NULL && request_id != NULL)
        json_object_set_new(o, "request_id", json_string(request_id));
    detail = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (detail == NULL) {
        hsmca_crl_rec_clear(&rec);
        return HSMCA_E_NOMEM;
    }
    snprintf(target, sizeof(target), "ca/%s", ca->id);
    hsmca_audit_event_set(&ev, "system", "system", "crl.sign", target, "ok", detail);
    put.ca = ca->id;
    put.rec = &rec;
    rc = hsmca_audit_append(a, &ev, crl_put_apply, &put, NULL);
    if (rc == HSMCA_OK && info != NULL) {
        info->number = rec.number;
        info->this_update = (time_t)rec.this_update;
        info->next_update = (time_t)rec.next_update;
        info->entries = entries;
    }
    free(detail);
    hsmca_crl_rec_clear(&rec);
    return rc;
}
