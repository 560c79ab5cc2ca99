/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_revoke.c -- ca.revoke and crl.sign, run by hsmca_quorum_execute between the login of
 * the signer's token and the PIN rotation (quorum_revoke.h). A PAI is revoked in this order: its
 * window closes (the daemon drains its signing and logs its token out), the revocation and its
 * audit entry commit, the daemon marks it revoked (no window opens again), then the PAA's CRL
 * carrying its serial is signed in the PAA's token and stored with its own entry.
 */
#include "quorum_revoke.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/x509.h>

#include "hsmca/crl.h"
#include "hsmca/revoke.h"
#include "hsmca/store_certs.h"
#include "hsmca/util.h"

enum hsmca_err
hsmca_qop_revocation_params(struct hsmca_store *st, const char *op, json_t *params, int64_t now_ms,
                            char *signer)
{
    const char *ca = NULL, *reason = NULL;
    json_int_t inval = -1;
    struct hsmca_ca_rec rec, parent;
    enum hsmca_err rc = HSMCA_OK;
    int code;

    memset(&rec, 0, sizeof(rec));
    memset(&parent, 0, sizeof(parent));
    if (strcmp(op, "ca.revoke") == 0) {
        if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s, s?:s, s?:I}", "ca", &ca, "reason",
                           &reason, "invalidity", &inval) != 0)
            return HSMCA_E_QUORUM_PARAMS;
        if (reason != NULL && hsmca_crl_reason_from_name(reason, &code) != HSMCA_OK)
            return HSMCA_E_QUORUM_PARAMS;
        if (json_object_get(params, "invalidity") != NULL && (inval <= 0 || inval > now_ms))
            return HSMCA_E_QUORUM_PARAMS;
    } else if (json_unpack_ex(params, NULL, JSON_STRICT, "{s:s}", "ca", &ca) != 0) {
        return HSMCA_E_QUORUM_PARAMS;
    }
    if (!hsmca_ca_id_valid(ca) || hsmca_store_ca_get(st, ca, &rec) != HSMCA_OK)
        return HSMCA_E_QUORUM_PARAMS;
    if (rec.cert_der == NULL)
        rc = HSMCA_E_QUORUM_PARAMS;
    else if (rec.revoked)
        rc = HSMCA_E_REVOKE_CA_REVOKED;
    else if (strcmp(op, "crl.sign") == 0)
        snprintf(signer, HSMCA_CA_ID_MAX + 1, "%s", rec.id);
    else if (strcmp(rec.kind, "pai") != 0 ||
             hsmca_store_ca_get(st, rec.parent, &parent) != HSMCA_OK || parent.cert_der == NULL)
        rc = HSMCA_E_QUORUM_PARAMS; /* only a PAI is revoked this way: onto its PAA's CRL */
    else
        snprintf(signer, HSMCA_CA_ID_MAX + 1, "%s", parent.id);
    hsmca_ca_rec_clear(&parent);
    hsmca_ca_rec_clear(&rec);
    return rc;
}

/* The serial of a DER certificate as big-endian minimal bytes. */
static enum hsmca_err
cert_serial(const unsigned char *der, size_t len, unsigned char *out, size_t *out_len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    BIGNUM *bn = x != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;
    int n;

    if (bn != NULL && !BN_is_negative(bn) && !BN_is_zero(bn) && BN_num_bytes(bn) <= 19) {
        /* a leading zero octet keeps a high first bit positive, as DER does */
        n = BN_bn2bin(bn, out + 1);
        out[0] = 0;
        if (n > 0 && (out[1] & 0x80) != 0) {
            *out_len = (size_t)n + 1;
        } else {
            memmove(out, out + 1, (size_t)n);
            *out_len = (size_t)n;
        }
        rc = HSMCA_OK;
    }
    BN_free(bn);
    X509_free(x);
    return rc;
}

struct ca_revoke_apply {
    const char *ca;
    unsigned char serial[20];
    size_t serial_len;
    int64_t revoked_ms, invalidity_ms;
    int reason;
};

static enum hsmca_err
apply_ca_revoke(struct hsmca_store *st, void *arg)
{
    struct ca_revoke_apply *a = arg;
    enum hsmca_err rc = hsmca_store_ca_revoke(st, a->ca, a->serial, a->serial_len, a->revoked_ms,
                                              a->reason, a->invalidity_ms);

    return rc == HSMCA_E_EXISTS ? HSMCA_E_REVOKE_CA_REVOKED : rc;
}

static enum hsmca_err
revoke_pai(struct hsmca_audit *a, struct hsmca_store *ro, json_t *params, const char *request_id,
           const struct hsmca_quorum_exec *ex, int64_t now_ms, struct hsmca_ca_rec *pai)
{
    struct hsmca_audit_event ev;
    struct ca_revoke_apply ap;
    const char *reason = "unspecified";
    json_int_t inval = 0;
    char hex[41], target[HSMCA_CA_ID_MAX + 8], *detail = NULL;
    json_t *d;
    enum hsmca_err rc;

    memset(&ap, 0, sizeof(ap));
    (void)json_unpack(params, "{s?:s, s?:I}", "reason", &reason, "invalidity", &inval);
    rc = hsmca_crl_reason_from_name(reason, &ap.reason);
    if (rc == HSMCA_OK)
        rc = cert_serial(pai->cert_der, pai->cert_len, ap.serial, &ap.serial_len);
    if (rc != HSMCA_OK)
        return rc;
    /* the PAI stops issuing first: its window closes, in-flight signing drains */
    if (ex->deactivate != NULL) {
        rc = ex->deactivate(ex->arg, pai->id);
        if (rc != HSMCA_OK && rc != HSMCA_E_NOT_FOUND && rc != HSMCA_E_HTTP_CA_NOT_FOUND)
            return rc;
    }
    ap.ca = pai->id;
    ap.revoked_ms = now_ms;
    ap.invalidity_ms = inval > 0 ? (int64_t)inval : 0;
    hsmca_hex_encode(ap.serial, ap.serial_len, hex, sizeof(hex));
    d = json_pack("{s:s, s:s, s:s, s:I, s:s}", "ca", pai->id, "serial", hex, "reason", reason,
                  "revoked_ms", (json_int_t)now_ms, "request_id", request_id);
    if (d != NULL && ap.invalidity_ms > 0)
        json_object_set_new(d, "invalidity_ms", json_integer((json_int_t)ap.invalidity_ms));
    detail = d != NULL ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(d);
    if (detail == NULL)
        return HSMCA_E_NOMEM;
    snprintf(target, sizeof(target), "ca/%s", pai->id);
    hsmca_audit_event_set(&ev, "system", "system", "ca.revoke", target, "ok", detail);
    rc = hsmca_audit_append(a, &ev, apply_ca_revoke, &ap, NULL);
    free(detail);
    (void)ro;
    if (rc == HSMCA_OK && ex->ca_revoked != NULL)
        ex->ca_revoked(ex->arg, pai->id);
    return rc;
}

enum hsmca_err
hsmca_qop_revocation_execute(struct hsmca_audit *a, struct hsmca_store *ro, const char *op,
                             json_t *params, const char *request_id, struct hsmca_token *tok,
                             const struct hsmca_quorum_exec *ex, int64_t now_ms, json_t **result)
{
    struct hsmca_ca_rec rec, signer;
    struct hsmca_crl_policy pol;
    struct hsmca_crl_info info;
    struct hsmca_key *key = NULL;
    const char *ca = NULL;
    int revoke = strcmp(op, "ca.revoke") == 0;
    enum hsmca_err rc;

    memset(&rec, 0, sizeof(rec));
    memset(&signer, 0, sizeof(signer));
    memset(&info, 0, sizeof(info));
    if (json_unpack(params, "{s:s}", "ca", &ca) != 0)
        return HSMCA_E_QUORUM_PARAMS;
    rc = hsmca_store_ca_get(ro, ca, &rec);
    if (rc == HSMCA_OK)
        rc = hsmca_store_ca_get(ro, revoke ? rec.parent : rec.id, &signer);
    if (rc == HSMCA_OK && revoke)
        rc = revoke_pai(a, ro, params, request_id, ex, now_ms, &rec);
    if (rc == HSMCA_OK)
        rc = hsmca_token_find_key(tok, signer.key_uri, &key);
    if (rc == HSMCA_OK) {
        hsmca_crl_policy_for(ex->crl_policies, signer.id, &pol);
        rc = hsmca_crl_issue(a, ro, &signer, hsmca_key_private(key), &pol, (time_t)(now_ms / 1000),
                             revoke ? "ca.revoke" : "crl.sign", request_id, &info);
    }
    if (rc == HSMCA_OK && ex->crl_signed != NULL)
        ex->crl_signed(ex->arg, signer.id, &info);
    if (rc == HSMCA_OK) {
        json_t *crl = json_pack("{s:s, s:I, s:I, s:I}", "ca", signer.id, "number",
                                (json_int_t)info.number, "next_update",
                                (json_int_t)info.next_update, "entries", (json_int_t)info.entries);

        *result = revoke ? json_pack("{s:s, s:o}", "revoked", rec.id, "crl", crl)
                         : json_pack("{s:o}", "crl", crl);
        if (*result == NULL)
            rc = HSMCA_E_NOMEM;
    }
    hsmca_key_free(key);
    hsmca_ca_rec_clear(&signer);
    hsmca_ca_rec_clear(&rec);
    return rc;
}
