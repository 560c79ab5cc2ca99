/* SPDX-License-Identifier: Apache-2.0
 *
 * matter_tbs.c -- a PAA's or PAI's to-be-signed certificate, fixed at a quorum request and shown
 * to its approvers (matter_tbs.h). The preview is the builder's own unsigned certificate
 * (mt_ca_tbs) read back, so what the approvers see and what the execution makes come from one
 * piece of code.
 */
#include "hsmca/matter_tbs.h"

#include "hsmca/sizes.h"

#include "matter_internal.h"

#define VID_OID "1.3.6.1.4.1.37244.2.1"
#define PID_OID "1.3.6.1.4.1.37244.2.2"
#define NEW_KEY "generated in the CA's token at execution"
#define NEW_KEY_ID "SHA-1 of the new public key (made at execution)"

enum hsmca_err
hsmca_matter_ca_fix(const struct hsmca_profile *p, time_t now, struct hsmca_matter_ca_fixed *out)
{
    if (p == NULL || out == NULL || now < (time_t)p->backdate)
        return HSMCA_E_INVALID_ARG;
    out->not_before = now - (time_t)p->backdate;
    return hsmca_matter_serial((int64_t)now * 1000, out->serial);
}

/* "CN=..., VID=FFF1, PID=8000": each attribute by its short name, Matter's by name. */
static json_t *
name_text(const X509_NAME *n)
{
    char buf[512], oid[64];
    size_t used = 0;
    int i;

    buf[0] = '\0';
    for (i = 0; i < X509_NAME_entry_count(n); i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
        const ASN1_OBJECT *o = X509_NAME_ENTRY_get_object(e);
        unsigned char *v = NULL;
        const char *k;
        int w, nid = OBJ_obj2nid(o);

        if (OBJ_obj2txt(oid, sizeof(oid), o, 1) <= 0)
            return NULL;
        k = strcmp(oid, VID_OID) == 0   ? "MatterVID"
            : strcmp(oid, PID_OID) == 0 ? "MatterPID"
            : nid != NID_undef          ? OBJ_nid2sn(nid)
                                        : oid;
        if (ASN1_STRING_to_UTF8(&v, X509_NAME_ENTRY_get_data(e)) < 0)
            return NULL;
        w = snprintf(buf + used, sizeof(buf) - used, "%s%s=%s", i > 0 ? ", " : "", k,
                     (const char *)v);
        OPENSSL_free(v);
        if (w < 0 || (size_t)w >= sizeof(buf) - used)
            return NULL;
        used += (size_t)w;
    }
    return json_string(buf);
}

static json_t *
time_text(const ASN1_TIME *t)
{
    struct tm tm;
    char b[32];

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return NULL;
    return json_string(b);
}

/* One extension as "name (critical): value" (value as OpenSSL prints it, on one line). */
static json_t *
ext_text(X509_EXTENSION *e, const char *override)
{
    const ASN1_OBJECT *o = X509_EXTENSION_get_object(e);
    BIO *b = BIO_new(BIO_s_mem());
    char val[256], line[384], name[80];
    int n = 0, nid = OBJ_obj2nid(o);
    json_t *out = NULL;
    size_t i, j = 0;

    if (b == NULL)
        return NULL;
    if (nid != NID_undef)
        snprintf(name, sizeof(name), "%s", OBJ_nid2ln(nid));
    else if (OBJ_obj2txt(name, sizeof(name), o, 1) <= 0)
        goto out;
    if (override != NULL) {
        snprintf(val, sizeof(val), "%s", override);
    } else {
        if (X509V3_EXT_print(b, e, 0, 0) != 1)
            goto out;
        n = BIO_read(b, val, (int)sizeof(val) - 1);
        if (n < 0)
            n = 0;
        val[n] = '\0';
        /* one line: newlines become "; ", trailing blanks go */
        for (i = 0; val[i] != '\0'; i++) {
            if (val[i] == '\n') {
                if (val[i + 1] != '\0' && j + 2 < sizeof(val)) {
                    val[j++] = ';';
                    val[j++] = ' ';
                }
            } else if (val[i] != '\r') {
                val[j++] = val[i];
            }
        }
        val[j] = '\0';
        while (j > 0 && (val[j - 1] == ' ' || val[j - 1] == ';'))
            val[--j] = '\0';
    }
    snprintf(line, sizeof(line), "%s%s: %s", name,
             X509_EXTENSION_get_critical(e) ? " (critical)" : "", val);
    out = json_string(line);
out:
    BIO_free(b);
    return out;
}

json_t *
hsmca_matter_ca_describe(X509 *x, int key_known)
{
    ASN1_OCTET_STRING *skid = NULL;
    AUTHORITY_KEYID *akid = NULL;
    const ASN1_INTEGER *sn;
    BIGNUM *bn = NULL;
    char *hex = NULL, pk[160];
    json_t *o = NULL, *exts = NULL;
    int i;

    if (x == NULL)
        return NULL;
    sn = X509_get0_serialNumber(x);
    bn = sn != NULL ? ASN1_INTEGER_to_BN(sn, NULL) : NULL;
    hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    exts = json_array();
    if (hex == NULL || exts == NULL)
        goto fail;
    /* decoded from the extensions themselves: an unsigned certificate has no cached values */
    skid = X509_get_ext_d2i(x, NID_subject_key_identifier, NULL, NULL);
    akid = X509_get_ext_d2i(x, NID_authority_key_identifier, NULL, NULL);
    for (i = 0; i < X509_get_ext_count(x); i++) {
        X509_EXTENSION *e = X509_get_ext(x, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(e));
        const char *ovr = NULL;

        if (!key_known && nid == NID_subject_key_identifier)
            ovr = NEW_KEY_ID;
        if (!key_known && nid == NID_authority_key_identifier && akid != NULL &&
            akid->keyid != NULL && skid != NULL && ASN1_OCTET_STRING_cmp(akid->keyid, skid) == 0)
            ovr = NEW_KEY_ID; /* self-signed: the new key's own identifier */
        if (json_array_append_new(exts, ext_text(e, ovr)) != 0)
            goto fail;
    }
    if (key_known) {
        unsigned char *der = NULL, d[HSMCA_SHA256_LEN];
        char dh[HSMCA_SHA256_HEX_SIZE];
        int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);

        if (n <= 0)
            goto fail;
        SHA256(der, (size_t)n, d);
        OPENSSL_free(der);
        hsmca_hex_encode(d, sizeof(d), dh, sizeof(dh));
        snprintf(pk, sizeof(pk), "EC P-256, SPKI SHA-256 %s", dh);
    } else {
        snprintf(pk, sizeof(pk), "EC P-256, %s", NEW_KEY);
    }
    o = json_pack("{s:s, s:s, s:s, s:o?, s:o?, s:o?, s:o?, s:s, s:O}", "version", "3", "serial",
                  hex, "signature_algorithm", "ecdsa-with-SHA256", "issuer",
                  name_text(X509_get_issuer_name(x)), "subject",
                  name_text(X509_get_subject_name(x)), "not_before",
                  time_text(X509_get0_notBefore(x)), "not_after", time_text(X509_get0_notAfter(x)),
                  "public_key", pk, "extensions", exts);
    if (o != NULL &&
        (json_object_get(o, "issuer") == NULL || json_object_get(o, "subject") == NULL ||
         json_object_get(o, "not_before") == NULL || json_object_get(o, "not_after") == NULL)) {
        json_decref(o);
        o = NULL;
    }
fail:
    ASN1_OCTET_STRING_free(skid);
    AUTHORITY_KEYID_free(akid);
    json_decref(exts);
    OPENSSL_free(hex);
    BN_free(bn);
    return o;
}

enum hsmca_err
hsmca_matter_ca_preview(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                        EVP_PKEY *pub, X509 *parent, const struct hsmca_matter_ca_fixed *f,
                        json_t **out)
{
    EVP_PKEY *tmp = NULL;
    X509 *x = NULL;
    enum hsmca_err rc;

    if (p == NULL || f == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    *out = NULL;
    if (pub == NULL) {
        /* a stand-in for the key the token makes at execution: only its size is shown */
        tmp = EVP_EC_gen("P-256");
        if (tmp == NULL)
            return HSMCA_E_NOMEM;
    }
    rc = mt_ca_tbs(p, s, pub != NULL ? pub : tmp, parent, f->not_before + (time_t)p->backdate,
                   f->serial, &x);
    if (rc == HSMCA_OK) {
        *out = hsmca_matter_ca_describe(x, pub != NULL);
        if (*out == NULL)
            rc = HSMCA_E_NOMEM;
    }
    X509_free(x);
    EVP_PKEY_free(tmp);
    return rc;
}

enum hsmca_err
hsmca_matter_ca_fixed_of(const json_t *tbs, struct hsmca_matter_ca_fixed *out)
{
    const char *hex = json_string_value(json_object_get(tbs, "serial"));
    const char *nb = json_string_value(json_object_get(tbs, "not_before"));
    char gt[16];
    ASN1_GENERALIZEDTIME *t = NULL;
    struct tm tm;
    size_t i, j = 0, n = 0;
    int ok;

    if (out == NULL || hex == NULL || nb == NULL || strlen(hex) != 2 * HSMCA_MATTER_SERIAL_LEN ||
        strlen(nb) != 20)
        return HSMCA_E_INVALID_ARG;
    if (hsmca_hex_decode(hex, strlen(hex), out->serial, sizeof(out->serial), &n) != HSMCA_OK ||
        n != sizeof(out->serial))
        return HSMCA_E_INVALID_ARG;
    /* 2026-12-07T06:50:00Z -> 20261207065000Z */
    for (i = 0; nb[i] != '\0' && j < sizeof(gt) - 1; i++) {
        if (nb[i] != '-' && nb[i] != ':' && nb[i] != 'T')
            gt[j++] = nb[i];
    }
    gt[j] = '\0';
    t = ASN1_GENERALIZEDTIME_new();
    ok = t != NULL && j == 15 && ASN1_GENERALIZEDTIME_set_string(t, gt) == 1 &&
         ASN1_TIME_to_tm(t, &tm) == 1;
    ASN1_GENERALIZEDTIME_free(t);
    if (!ok)
        return HSMCA_E_INVALID_ARG;
    out->not_before = timegm(&tm);
    return HSMCA_OK;
}
