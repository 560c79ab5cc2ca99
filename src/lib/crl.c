/* SPDX-License-Identifier: Apache-2.0
 *
 * crl.c -- builds and checks CRLs. A CRL is signed with the CA's token-backed key (the private key
 * never leaves the token) and re-checked like a consumer would before it is handed out.
 * Owns nothing between calls; never signs a CRL it cannot verify.
 */
#include "hsmca/crl.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static const char *const reason_names[] = {
    "unspecified",          /* 0 */
    "keyCompromise",        /* 1 */
    "cACompromise",         /* 2 */
    "affiliationChanged",   /* 3 */
    "superseded",           /* 4 */
    "cessationOfOperation", /* 5 */
    "certificateHold",      /* 6 */
    NULL,                   /* 7 is not used */
    "removeFromCRL",        /* 8: delta CRLs only; refused here */
    "privilegeWithdrawn",   /* 9 */
    "aACompromise",         /* 10 */
};

#define NREASONS (int)(sizeof(reason_names) / sizeof(reason_names[0]))
#define ENTRIES_MAX 1000000u

enum hsmca_err
hsmca_crl_reason_from_name(const char *name, int *reason)
{
    int i;

    if (name == NULL || reason == NULL)
        return HSMCA_E_INVALID_ARG;
    for (i = 0; i < NREASONS; i++) {
        if (reason_names[i] != NULL && i != 8 && strcmp(reason_names[i], name) == 0) {
            *reason = i;
            return HSMCA_OK;
        }
    }
    return HSMCA_E_CRL_REASON;
}

const char *
hsmca_crl_reason_name(int reason)
{
    if (reason < 0 || reason >= NREASONS)
        return NULL;
    return reason_names[reason];
}

static int
reason_ok(int r)
{
    return r == HSMCA_CRL_REASON_NONE || (r >= 0 && r <= 10 && r != 7 && r != 8);
}

static int
uri_ok(const char *u)
{
    size_t n = strlen(u), i;

    if (n > HSMCA_CRL_URI_MAX)
        return 0;
    if (!((n > 7 && strncmp(u, "http://", 7) == 0) || (n > 8 && strncmp(u, "https://", 8) == 0)))
        return 0;
    for (i = 0; i < n; i++) {
        if ((unsigned char)u[i] <= 0x20 || (unsigned char)u[i] >= 0x7f)
            return 0;
    }
    return 1;
}

static time_t
asn1_to_time(const ASN1_TIME *t)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return (time_t)-1;
    return timegm(&tm);
}

static ASN1_INTEGER *
u64_integer(uint64_t v)
{
    BIGNUM *bn = BN_new();
    ASN1_INTEGER *ai = NULL;
    unsigned char b[8];
    int i;

    for (i = 7; i >= 0; i--) {
        b[i] = (unsigned char)v;
        v >>= 8;
    }
    if (bn != NULL && BN_bin2bn(b, sizeof(b), bn) != NULL)
        ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    return ai;
}

static enum hsmca_err
add_entry(X509_CRL *crl, const struct hsmca_crl_entry *e)
{
    X509_REVOKED *rev = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *reason = NULL;
    BIGNUM *bn = NULL;
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (e->serial_len == 0 || e->serial_len > HSMCA_SERIAL_MAX || (e->serial[0] & 0x80) != 0 ||
        (e->serial_len > 1 && e->serial[0] == 0 && (e->serial[1] & 0x80) == 0))
        return HSMCA_E_INVALID_ARG; /* positive and minimal, as hsmca issues them */
    if (!reason_ok(e->reason))
        return HSMCA_E_CRL_REASON;
    rev = X509_REVOKED_new();
    bn = BN_bin2bn(e->serial, (int)e->serial_len, NULL);
    serial = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    when = ASN1_TIME_set(NULL, e->revoked_at);
    if (rev == NULL || serial == NULL || when == NULL ||
        X509_REVOKED_set_serialNumber(rev, serial) != 1 ||
        X509_REVOKED_set_revocationDate(rev, when) != 1)
        goto out;
    if (e->reason != HSMCA_CRL_REASON_NONE) {
        reason = ASN1_ENUMERATED_new();
        if (reason == NULL || ASN1_ENUMERATED_set(reason, e->reason) != 1 ||
            X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0) != 1)
            goto out;
    }
    if (X509_CRL_add0_revoked(crl, rev) != 1)
        goto out;
    rev = NULL;
    rc = HSMCA_OK;
out:
    ASN1_ENUMERATED_free(reason);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_REVOKED_free(rev);
    return rc;
}

static enum hsmca_err
add_idp(X509_CRL *crl, const char *uri)
{
    ISSUING_DIST_POINT *idp = ISSUING_DIST_POINT_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (idp == NULL || gn == NULL || ia5 == NULL ||
        ASN1_STRING_set(ia5, uri, (int)strlen(uri)) != 1)
        goto out;
    GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
    ia5 = NULL;
    idp->distpoint = DIST_POINT_NAME_new();
    if (idp->distpoint == NULL)
        goto out;
    idp->distpoint->type = 0;
    idp->distpoint->name.fullname = sk_GENERAL_NAME_new_null();
    if (idp->distpoint->name.fullname == NULL ||
        sk_GENERAL_NAME_push(idp->distpoint->name.fullname, gn) <= 0)
        goto out;
    gn = NULL;
    /* RFC 5280 5.2.5: the IDP extension is critical */
    if (X509_CRL_add1_ext_i2d(crl, NID_issuing_distribution_point, idp, 1, 0) != 1)
        goto out;
    rc = HSMCA_OK;
out:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gn);
    ISSUING_DIST_POINT_free(idp);
    return rc;
}

enum hsmca_err
hsmca_crl_build(const struct hsmca_crl_params *p, const struct hsmca_crl_entry *entries, size_t n,
                unsigned char **der_out, size_t *der_len_out)
{
    X509_CRL *crl = NULL;
    ASN1_TIME *t = NULL;
    ASN1_INTEGER *num = NULL;
    AUTHORITY_KEYID *akid = NULL;
    const ASN1_OCTET_STRING *skid;
    unsigned char *der = NULL;
    enum hsmca_err rc = HSMCA_E_INTERNAL;
    size_t i;
    int len;

    if (p == NULL || p->issuer == NULL || p->key == NULL || der_out == NULL ||
        der_len_out == NULL || (entries == NULL && n > 0))
        return HSMCA_E_INVALID_ARG;
    if (n > ENTRIES_MAX)
        return HSMCA_E_TOO_LARGE;
    if (p->next_update <= p->this_update || p->this_update < 0)
        return HSMCA_E_CRL_DATE;
    if (p->idp_uri != NULL && !uri_ok(p->idp_uri))
        return HSMCA_E_INVALID_ARG;
    skid = X509_get0_subject_key_id(p->issuer);
    if (skid == NULL)
        return HSMCA_E_CRL_AKID;
    for (i = 0; i < n; i++) {
        if (entries[i].revoked_at > p->this_update || entries[i].revoked_at < 0)
            return HSMCA_E_CRL_DATE;
        if (!reason_ok(entries[i].reason))
            return HSMCA_E_CRL_REASON;
    }
    crl = X509_CRL_new();
    if (crl == NULL || X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(p->issuer)) != 1)
        goto out;
    t = ASN1_TIME_set(NULL, p->this_update);
    if (t == NULL || X509_CRL_set1_lastUpdate(crl, t) != 1)
        goto out;
    if (ASN1_TIME_set(t, p->next_update) == NULL || X509_CRL_set1_nextUpdate(crl, t) != 1)
        goto out;
    for (i = 0; i < n; i++) {
        rc = add_entry(crl, &entries[i]);
        if (rc != HSMCA_OK)
            goto out;
    }
    rc = HSMCA_E_INTERNAL;
    akid = AUTHORITY_KEYID_new();
    if (akid == NULL)
        goto out;
    akid->keyid = ASN1_OCTET_STRING_dup(skid);
    num = u64_integer(p->number);
    if (akid->keyid == NULL || num == NULL ||
        X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, 0) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1)
        goto out;
    if (p->idp_uri != NULL) {
        rc = add_idp(crl, p->idp_uri);
        if (rc != HSMCA_OK)
            goto out;
        rc = HSMCA_E_INTERNAL;
    }
    if (X509_CRL_sort(crl) != 1)
        goto out;
    if (X509_CRL_sign(crl, p->key, EVP_sha256()) <= 0) {
        rc = HSMCA_E_SIGN_FAILED;
        goto out;
    }
    len = i2d_X509_CRL(crl, &der);
    if (len <= 0)
        goto out;
    rc = hsmca_crl_check(der, (size_t)len, p->issuer, NULL);
    if (rc != HSMCA_OK)
        goto out;
    *der_out = der;
    *der_len_out = (size_t)len;
    der = NULL;
    rc = HSMCA_OK;
out:
    OPENSSL_free(der);
    AUTHORITY_KEYID_free(akid);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return rc;
}

enum hsmca_err
hsmca_crl_check(const unsigned char *der, size_t len, X509 *issuer, struct hsmca_crl_info *info)
{
    const unsigned char *p = der;
    X509_CRL *crl = NULL;
    AUTHORITY_KEYID *akid = NULL;
    ASN1_INTEGER *num = NULL;
    const ASN1_OCTET_STRING *skid;
    const ASN1_TIME *lu, *nu;
    enum hsmca_err rc = HSMCA_E_CRL_INVALID;
    EVP_PKEY *pub;
    int crit = 0;

    if (der == NULL || issuer == NULL || len == 0 || len > (64u << 20))
        return HSMCA_E_INVALID_ARG;
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl == NULL || p != der + len)
        goto out; /* malformed, or trailing bytes */
    if (X509_CRL_get_version(crl) != X509_CRL_VERSION_2 ||
        X509_CRL_get_signature_nid(crl) != NID_ecdsa_with_SHA256)
        goto out;
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0)
        goto out;
    lu = X509_CRL_get0_lastUpdate(crl);
    nu = X509_CRL_get0_nextUpdate(crl);
    if (lu == NULL || nu == NULL || ASN1_TIME_compare(nu, lu) <= 0)
        goto out;
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    if (num == NULL || crit != 0)
        goto out; /* absent, duplicated (-2) or critical */
    akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
    skid = X509_get0_subject_key_id(issuer);
    if (akid == NULL || crit != 0 || akid->keyid == NULL || skid == NULL ||
        ASN1_OCTET_STRING_cmp(akid->keyid, skid) != 0) {
        rc = HSMCA_E_CRL_AKID;
        goto out;
    }
    pub = X509_get0_pubkey(issuer);
    if (pub == NULL || X509_CRL_verify(crl, pub) != 1) {
        rc = HSMCA_E_CRL_SIGNATURE;
        goto out;
    }
    if (info != NULL) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(num, NULL);
        const STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);

        info->number = 0;
        if (bn != NULL && BN_num_bytes(bn) <= 8) {
            unsigned char b[8] = {0};
            int k, nb = BN_bn2binpad(bn, b, 8);

            for (k = 0; k < nb; k++)
                info->number = info->number << 8 | b[k];
        }
        BN_free(bn);
        info->this_update = asn1_to_time(lu);
        info->next_update = asn1_to_time(nu);
        info->entries = revs != NULL ? (size_t)sk_X509_REVOKED_num(revs) : 0;
    }
    rc = HSMCA_OK;
out:
    ASN1_INTEGER_free(num);
    AUTHORITY_KEYID_free(akid);
    X509_CRL_free(crl);
    return rc;
}
