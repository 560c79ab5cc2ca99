/* SPDX-License-Identifier: Apache-2.0
 *
 * mdl_cert.c -- the IACA root and document-signer certificates of ISO/IEC 18013-5 Annex B: the
 * builders (from a loaded mdl profile, the keys in their tokens) and the rule-by-rule check of an
 * IACA -> DS chain that lists every broken rule (hsmca mdl verify, and every certificate the
 * builders make before it leaves them). Rules and their sources: docs/mdl.md. Owns no state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "hsmca/log.h"
#include "hsmca/mdl.h"

#define SECONDS_PER_DAY 86400

/* ---- shared ---- */

static unsigned
key_curve(EVP_PKEY *k)
{
    char group[64];
    size_t n = 0;

    if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &n) !=
            1)
        return 0;
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
        return HSMCA_MDL_CURVE_P256;
    if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
        return HSMCA_MDL_CURVE_P384;
    if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
        return HSMCA_MDL_CURVE_P521;
    if (strcmp(group, "brainpoolP256r1") == 0)
        return HSMCA_MDL_CURVE_BP256;
    if (strcmp(group, "brainpoolP320r1") == 0)
        return HSMCA_MDL_CURVE_BP320;
    if (strcmp(group, "brainpoolP384r1") == 0)
        return HSMCA_MDL_CURVE_BP384;
    if (strcmp(group, "brainpoolP512r1") == 0)
        return HSMCA_MDL_CURVE_BP512;
    return 0;
}

/* The digest a signature by a key on this curve uses (Annex B: ECDSA with SHA-2 of the size). */
static const EVP_MD *
curve_md(unsigned curve)
{
    if (curve & (HSMCA_MDL_CURVE_P384 | HSMCA_MDL_CURVE_BP320 | HSMCA_MDL_CURVE_BP384))
        return EVP_sha384();
    if (curve & (HSMCA_MDL_CURVE_P521 | HSMCA_MDL_CURVE_BP512))
        return EVP_sha512();
    return EVP_sha256();
}

static int
country_ok(const char *c)
{
    return c != NULL && strlen(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z';
}

static int
text_ok(const char *s)
{
    return s == NULL || (strlen(s) >= 1 && strlen(s) <= HSMCA_MDL_NAME_MAX);
}

/* Expand "{ca}" in t into out. */
static int
expand(const char *t, const char *ca, char *out, size_t n)
{
    size_t o = 0, alen;
    const char *s;

    for (s = t; *s != '\0';) {
        const char *add = s;

        alen = 1;
        if (strncmp(s, "{ca}", 4) == 0) {
            add = ca;
            alen = strlen(ca);
            s += 4;
        } else {
            s++;
        }
        if (o + alen + 1 > n)
            return -1;
        memcpy(out + o, add, alen);
        o += alen;
    }
    out[o] = '\0';
    return 0;
}

static GENERAL_NAMES *
one_name(int type, const char *value)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    if (gens == NULL || g == NULL || s == NULL ||
        ASN1_STRING_set(s, value, (int)strlen(value)) != 1)
        goto fail;
    GENERAL_NAME_set0_value(g, type, s);
    s = NULL;
    if (sk_GENERAL_NAME_push(gens, g) <= 0)
        goto fail;
    return gens;
fail:
    ASN1_IA5STRING_free(s);
    GENERAL_NAME_free(g);
    GENERAL_NAMES_free(gens);
    return NULL;
}

static int
add_ian_cdp(X509 *x, const struct hsmca_mdl_profile *p, const char *ca)
{
    char buf[HSMCA_MDL_URL_MAX * 2 + 1];
    GENERAL_NAMES *ian = NULL;
    CRL_DIST_POINTS *cdps = NULL;
    DIST_POINT *dp = NULL;
    int ok = 0;

    if (expand(p->ian, ca, buf, sizeof(buf)) != 0)
        return 0;
    ian = one_name(p->ian_is_email ? GEN_EMAIL : GEN_URI, buf);
    if (ian == NULL || X509_add1_ext_i2d(x, NID_issuer_alt_name, ian, 0, X509V3_ADD_DEFAULT) != 1)
        goto out;
    if (expand(p->crl_url, ca, buf, sizeof(buf)) != 0)
        goto out;
    cdps = sk_DIST_POINT_new_null();
    dp = DIST_POINT_new();
    if (cdps == NULL || dp == NULL)
        goto out;
    dp->distpoint = DIST_POINT_NAME_new();
    if (dp->distpoint == NULL)
        goto out;
    dp->distpoint->type = 0;
    dp->distpoint->name.fullname = one_name(GEN_URI, buf);
    if (dp->distpoint->name.fullname == NULL || sk_DIST_POINT_push(cdps, dp) <= 0)
        goto out;
    dp = NULL;
    ok = X509_add1_ext_i2d(x, NID_crl_distribution_points, cdps, 0, X509V3_ADD_DEFAULT) == 1;
out:
    GENERAL_NAMES_free(ian);
    DIST_POINT_free(dp);
    sk_DIST_POINT_pop_free(cdps, DIST_POINT_free);
    return ok;
}

static int
add_ku(X509 *x, unsigned bits)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int ok = ku != NULL;

    if (ok && (bits & 0x80u))
        ok = ASN1_BIT_STRING_set_bit(ku, 0, 1) == 1;
    if (ok && (bits & 0x04u))
        ok = ASN1_BIT_STRING_set_bit(ku, 5, 1) == 1;
    if (ok && (bits & 0x02u))
        ok = ASN1_BIT_STRING_set_bit(ku, 6, 1) == 1;
    ok = ok && X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) == 1;
    ASN1_BIT_STRING_free(ku);
    return ok;
}

static int
add_skid(X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *o = ASN1_OCTET_STRING_new();
    int ok = o != NULL && X509_pubkey_digest(x, EVP_sha1(), md, &mdlen) == 1 &&
             ASN1_OCTET_STRING_set(o, md, (int)mdlen) == 1 &&
             X509_add1_ext_i2d(x, NID_subject_key_identifier, o, 0, X509V3_ADD_DEFAULT) == 1;

    ASN1_OCTET_STRING_free(o);
    return ok;
}

static int
serial_random(X509 *x)
{
    unsigned char b[20];
    ASN1_INTEGER *a = NULL;
    BIGNUM *bn = NULL;
    int ok;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return 0;
    b[0] = (unsigned char)((b[0] & 0x7Fu) | 0x40u); /* positive, 20 octets, 158 random bits */
    bn = BN_bin2bn(b, sizeof(b), NULL);
    a = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    ok = a != NULL && X509_set_serialNumber(x, a) == 1;
    ASN1_INTEGER_free(a);
    BN_free(bn);
    OPENSSL_cleanse(b, sizeof(b));
    return ok;
}

/* v3, a random serial, subject, issuer, notBefore nb, notAfter days later less 1 s, pub: 1 or 0 */
static int
frame(X509 *x, const X509_NAME *subject, const X509_NAME *issuer, time_t nb, uint32_t days,
      EVP_PKEY *pub)
{
    return X509_set_version(x, X509_VERSION_3) == 1 && serial_random(x) &&
           X509_set_subject_name(x, subject) == 1 && X509_set_issuer_name(x, issuer) == 1 &&
           X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb) != NULL &&
           X509_time_adj_ex(X509_getm_notAfter(x), (int)days, -1, &nb) != NULL &&
           X509_set_pubkey(x, pub) == 1;
}

static int
name_add(X509_NAME *n, int nid, int type, const char *v)
{
    if (v == NULL)
        return 1;
    return X509_NAME_add_entry_by_NID(n, nid, type, (const unsigned char *)v, -1, -1, 0) == 1;
}

static enum hsmca_err
finish(X509 *x, EVP_PKEY *signer, unsigned signer_curve, X509 *iaca, X509 **out)
{
    struct hsmca_mdl_report *r = OPENSSL_zalloc(sizeof(*r));
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (r == NULL)
        return HSMCA_E_NOMEM;
    unsigned char *der = NULL;
    const unsigned char *q;
    X509 *y = NULL;
    int n;

    if (X509_sign(x, signer, curve_md(signer_curve)) <= 0)
        goto out;
    /* check what leaves: the certificate as its DER reads back */
    n = i2d_X509(x, &der);
    q = der;
    if (n <= 0 || (y = d2i_X509(NULL, &q, n)) == NULL)
        goto out;
    rc = hsmca_mdl_check(iaca != NULL ? iaca : y, iaca != NULL ? y : NULL, 0, r);
    if (rc != HSMCA_OK) {
        size_t i;

        for (i = 0; i < r->n; i++)
            hsmca_log(HSMCA_LOG_ERROR, "mdl", "built-cert-rule", "rule=%s reason=\"%s\"",
                      r->f[i].rule, r->f[i].detail);
        goto out;
    }
    *out = y;
    y = NULL;
out:
    X509_free(x);
    X509_free(y);
    OPENSSL_free(der);
    OPENSSL_free(r);
    return rc;
}

enum hsmca_err
hsmca_mdl_iaca_build(const struct hsmca_mdl_profile *p, const struct hsmca_mdl_subject *s,
                     const char *ca_id, EVP_PKEY *priv, EVP_PKEY *pub, time_t now, X509 **out)
{
    X509 *x = NULL;
    X509_NAME *n = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    unsigned curve;
    time_t nb;
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (p == NULL || s == NULL || ca_id == NULL || priv == NULL || pub == NULL || out == NULL ||
        p->type != HSMCA_MDL_IACA || !country_ok(s->country) || !text_ok(s->state) ||
        !text_ok(s->org) || !text_ok(s->cn) || strlen(ca_id) == 0 || strlen(ca_id) > 64)
        return HSMCA_E_INVALID_ARG;
    curve = key_curve(pub);
    if ((curve & p->curves) == 0)
        return HSMCA_E_MDL_PROFILE_VIOLATION;
    nb = now - (time_t)p->backdate;
    x = X509_new();
    n = X509_NAME_new();
    bc = BASIC_CONSTRAINTS_new();
    if (x == NULL || n == NULL || bc == NULL)
        goto out;
    if (!name_add(n, NID_countryName, V_ASN1_PRINTABLESTRING, s->country) ||
        !name_add(n, NID_stateOrProvinceName, MBSTRING_UTF8, s->state) ||
        !name_add(n, NID_organizationName, MBSTRING_UTF8, s->org) ||
        !name_add(n, NID_commonName, MBSTRING_UTF8, s->cn != NULL ? s->cn : p->cn_default))
        goto out;
    if (!frame(x, n, n, nb, p->days, pub))
        goto out;
    bc->ca = 0xFF;
    bc->pathlen = ASN1_INTEGER_new();
    if (bc->pathlen == NULL || ASN1_INTEGER_set(bc->pathlen, 0) != 1 ||
        X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) != 1 ||
        !add_ku(x, 0x04u | 0x02u) || !add_skid(x) || !add_ian_cdp(x, p, ca_id))
        goto out;
    rc = finish(x, priv, curve, NULL, out);
    x = NULL;
out:
    X509_free(x);
    X509_NAME_free(n);
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

/* Copy the IACA's C and ST (Annex B: a DS names its IACA's country and state). */
static int
copy_entry(X509_NAME *dst, const X509_NAME *src, int nid)
{
    int i = X509_NAME_get_index_by_NID(src, nid, -1);
    X509_NAME_ENTRY *e;

    if (i < 0)
        return 1;
    e = X509_NAME_get_entry(src, i);
    return X509_NAME_add_entry(dst, e, -1, 0) == 1;
}

enum hsmca_err
hsmca_mdl_ds_build(const struct hsmca_mdl_profile *p, const char *cn, const char *iaca_id,
                   EVP_PKEY *pub, X509 *iaca, EVP_PKEY *priv, time_t now, X509 **out)
{
    X509 *x = NULL;
    X509_NAME *n = NULL;
    AUTHORITY_KEYID *akid = NULL;
    EXTENDED_KEY_USAGE *eku = NULL;
    ASN1_OBJECT *oid = NULL;
    const ASN1_OCTET_STRING *iskid;
    const X509_NAME *in;
    unsigned curve, icurve;
    time_t nb;
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (p == NULL || iaca_id == NULL || pub == NULL || iaca == NULL || priv == NULL ||
        out == NULL || p->type != HSMCA_MDL_DS || !text_ok(cn) || strlen(iaca_id) == 0 ||
        strlen(iaca_id) > 64)
        return HSMCA_E_INVALID_ARG;
    curve = key_curve(pub);
    icurve = key_curve(X509_get0_pubkey(iaca));
    iskid = X509_get0_subject_key_id(iaca);
    if ((curve & p->curves) == 0 || icurve == 0 || iskid == NULL)
        return HSMCA_E_MDL_PROFILE_VIOLATION;
    in = X509_get_subject_name(iaca);
    nb = now - (time_t)p->backdate;
    x = X509_new();
    n = X509_NAME_new();
    akid = AUTHORITY_KEYID_new();
    eku = sk_ASN1_OBJECT_new_null();
    oid = OBJ_txt2obj(HSMCA_MDL_EKU_DS, 1);
    if (x == NULL || n == NULL || akid == NULL || eku == NULL || oid == NULL)
        goto out;
    if (!copy_entry(n, in, NID_countryName) || !copy_entry(n, in, NID_stateOrProvinceName) ||
        !copy_entry(n, in, NID_organizationName) ||
        !name_add(n, NID_commonName, MBSTRING_UTF8, cn != NULL ? cn : p->cn_default))
        goto out;
    if (!frame(x, n, in, nb, p->days, pub))
        goto out;
    /* never beyond the IACA */
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(iaca)) > 0 &&
        X509_set1_notAfter(x, X509_get0_notAfter(iaca)) != 1)
        goto out;
    if (ASN1_TIME_compare(X509_get0_notBefore(x), X509_get0_notBefore(iaca)) < 0 &&
        X509_set1_notBefore(x, X509_get0_notBefore(iaca)) != 1)
        goto out;
    akid->keyid = ASN1_OCTET_STRING_dup(iskid);
    if (akid->keyid == NULL || sk_ASN1_OBJECT_push(eku, oid) <= 0)
        goto out;
    oid = NULL;
    if (X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) != 1 ||
        !add_skid(x) || !add_ku(x, 0x80u) ||
        X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 1, X509V3_ADD_DEFAULT) != 1 ||
        !add_ian_cdp(x, p, iaca_id))
        goto out;
    rc = finish(x, priv, icurve, iaca, out);
    x = NULL;
out:
    X509_free(x);
    X509_NAME_free(n);
    AUTHORITY_KEYID_free(akid);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    ASN1_OBJECT_free(oid);
    return rc;
}

/* ---- the check ---- */

static void add(struct hsmca_mdl_report *r, const char *cert, const char *rule, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

static void
add(struct hsmca_mdl_report *r, const char *cert, const char *rule, const char *fmt, ...)
{
    va_list ap;
    struct hsmca_mdl_finding *f;

    if (r->n >= HSMCA_MDL_FINDINGS_MAX) {
        r->dropped++;
        return;
    }
    f = &r->f[r->n++];
    snprintf(f->cert, sizeof(f->cert), "%s", cert);
    snprintf(f->rule, sizeof(f->rule), "%s-%s", cert, rule);
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
    va_end(ap);
}

/* The one entry nid of name (NULL and *count if absent or repeated). */
static const ASN1_STRING *
entry(const X509_NAME *name, int nid, int *count)
{
    int i = -1, c = 0;
    const ASN1_STRING *v = NULL;

    while ((i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0) {
        c++;
        v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    }
    *count = c;
    return c == 1 ? v : NULL;
}

static int
names_only_uri_email(const GENERAL_NAMES *g)
{
    int i;

    if (g == NULL || sk_GENERAL_NAME_num(g) < 1)
        return 0;
    for (i = 0; i < sk_GENERAL_NAME_num(g); i++) {
        int t = sk_GENERAL_NAME_value(g, i)->type;

        if (t != GEN_URI && t != GEN_EMAIL)
            return 0;
    }
    return 1;
}

static int
crit_of(X509 *x, int nid, int *count)
{
    int i = -1, c = 0, crit = 0;

    while ((i = X509_get_ext_by_NID(x, nid, i)) >= 0) {
        c++;
        crit = X509_EXTENSION_get_critical(X509_get_ext(x, i));
    }
    *count = c;
    return crit;
}

static void
check_common(X509 *x, const char *c, int is_iaca, time_t now, struct hsmca_mdl_report *r)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    BIGNUM *bn = sn != NULL ? ASN1_INTEGER_to_BN(sn, NULL) : NULL;
    int sig = X509_get_signature_nid(x), cnt = 0, i, days = 0, secs = 0, crit;
    unsigned curve = key_curve(X509_get0_pubkey(x));
    const ASN1_STRING *cc;
    GENERAL_NAMES *ian;
    CRL_DIST_POINTS *cdp;
    static const int forbidden[] = {NID_name_constraints, NID_policy_mappings,
                                    NID_policy_constraints, NID_freshest_crl,
                                    NID_inhibit_any_policy};
    static const int known[] = {NID_basic_constraints,
                                NID_key_usage,
                                NID_ext_key_usage,
                                NID_subject_key_identifier,
                                NID_authority_key_identifier,
                                NID_issuer_alt_name,
                                NID_crl_distribution_points};

    if (X509_get_version(x) != X509_VERSION_3)
        add(r, c, "version", "the certificate is not X.509 v3");
    if (bn == NULL || BN_is_negative(bn) || BN_is_zero(bn) || BN_num_bytes(bn) > 20 ||
        BN_num_bits(bn) < 63)
        add(r, c, "serial", "the serial is not a positive integer of 63 bits to 20 octets");
    BN_free(bn);
    if (sig != NID_ecdsa_with_SHA256 && sig != NID_ecdsa_with_SHA384 &&
        sig != NID_ecdsa_with_SHA512)
        add(r, c, "signature-algorithm", "the signature is not ECDSA with SHA-256/384/512");
    if (curve == 0)
        add(r, c, "curve", "the key is not on a curve Annex B allows");
    cc = entry(X509_get_subject_name(x), NID_countryName, &cnt);
    if (cc == NULL)
        add(r, c, "country", "the subject has %s countryName", cnt == 0 ? "no" : "more than one");
    else if (ASN1_STRING_type(cc) != V_ASN1_PRINTABLESTRING || ASN1_STRING_length(cc) != 2 ||
             ASN1_STRING_get0_data(cc)[0] < 'A' || ASN1_STRING_get0_data(cc)[0] > 'Z' ||
             ASN1_STRING_get0_data(cc)[1] < 'A' || ASN1_STRING_get0_data(cc)[1] > 'Z')
        add(r, c, "country", "countryName is not an upper-case ISO 3166 alpha-2 PrintableString");
    if (entry(X509_get_subject_name(x), NID_commonName, &cnt) == NULL)
        add(r, c, "common-name", "the subject has %s commonName",
            cnt == 0 ? "no" : "more than one");
    if (ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)) != 1 ||
        days < 0 || secs < 0)
        add(r, c, "validity", "notAfter is before notBefore");
    else if ((unsigned)days >= (is_iaca ? HSMCA_MDL_IACA_MAX_DAYS : HSMCA_MDL_DS_MAX_DAYS) &&
             !((unsigned)days == (is_iaca ? HSMCA_MDL_IACA_MAX_DAYS : HSMCA_MDL_DS_MAX_DAYS) &&
               secs == 0))
        add(r, c, "validity", "valid for %d days, more than the %u Annex B allows", days + 1,
            is_iaca ? HSMCA_MDL_IACA_MAX_DAYS : HSMCA_MDL_DS_MAX_DAYS);
    if (now != 0) {
        if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0)
            add(r, c, "not-yet-valid", "notBefore is after the time of the check");
        if (X509_cmp_time(X509_get0_notAfter(x), &now) < 0)
            add(r, c, "expired", "notAfter is before the time of the check");
    }
    /* extensions: forbidden ones, unknown critical ones, duplicates */
    for (i = 0; i < X509_get_ext_count(x); i++) {
        X509_EXTENSION *e = X509_get_ext(x, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(e)), k, isknown = 0;

        for (k = 0; k < (int)(sizeof(forbidden) / sizeof(forbidden[0])); k++)
            if (nid == forbidden[k])
                add(r, c, "forbidden-extension", "%s is not allowed", OBJ_nid2sn(nid));
        for (k = 0; k < (int)(sizeof(known) / sizeof(known[0])); k++)
            isknown |= nid == known[k];
        if (!isknown && X509_EXTENSION_get_critical(e))
            add(r, c, "unknown-critical-extension", "an unknown extension is critical");
        if (X509_get_ext_by_OBJ(x, X509_EXTENSION_get_object(e), i) >= 0)
            add(r, c, "duplicate-extension", "an extension appears twice");
    }
    /* keyUsage: critical (its value is checked per type) */
    crit = crit_of(x, NID_key_usage, &cnt);
    if (cnt != 1 || !crit)
        add(r, c, "key-usage", "keyUsage is %s", cnt == 0 ? "missing" : "not critical");
    /* subjectKeyIdentifier: present, not critical */
    crit = crit_of(x, NID_subject_key_identifier, &cnt);
    if (cnt != 1 || crit)
        add(r, c, "ski", "subjectKeyIdentifier is %s", cnt == 0 ? "missing" : "critical");
    /* issuerAlternativeName: present, not critical, URI or rfc822 names only */
    crit = crit_of(x, NID_issuer_alt_name, &cnt);
    ian = X509_get_ext_d2i(x, NID_issuer_alt_name, NULL, NULL);
    if (cnt == 0)
        add(r, c, "issuer-alt-name", "issuerAlternativeName is missing");
    else if (crit || !names_only_uri_email(ian))
        add(r, c, "issuer-alt-name",
            "issuerAlternativeName is critical or names something else than a URI or an email");
    GENERAL_NAMES_free(ian);
    /* CRLDistributionPoints: present, not critical, a fullName URI, no reasons or cRLIssuer */
    crit = crit_of(x, NID_crl_distribution_points, &cnt);
    cdp = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    if (cnt == 0) {
        add(r, c, "crl-distribution-point", "CRLDistributionPoints is missing");
    } else {
        int okdp = !crit && cdp != NULL && sk_DIST_POINT_num(cdp) >= 1;

        for (i = 0; okdp && i < sk_DIST_POINT_num(cdp); i++) {
            DIST_POINT *dp = sk_DIST_POINT_value(cdp, i);
            int k;

            okdp = dp->reasons == NULL && dp->CRLissuer == NULL && dp->distpoint != NULL &&
                   dp->distpoint->type == 0;
            for (k = 0; okdp && k < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); k++)
                okdp = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, k)->type == GEN_URI;
        }
        if (!okdp)
            add(r, c, "crl-distribution-point",
                "CRLDistributionPoints is critical, or not a fullName URI without reasons and "
                "cRLIssuer");
    }
    sk_DIST_POINT_pop_free(cdp, DIST_POINT_free);
}

static unsigned
ku_bits(X509 *x)
{
    uint32_t u = X509_get_key_usage(x);

    return u == UINT32_MAX ? 0 : (unsigned)u;
}

static void
check_iaca(X509 *x, time_t now, struct hsmca_mdl_report *r)
{
    BASIC_CONSTRAINTS *bc;
    int crit, cnt;
    EVP_PKEY *pub = X509_get0_pubkey(x);

    check_common(x, "iaca", 1, now, r);
    if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) != 0)
        add(r, "iaca", "self-issued", "the IACA's issuer is not its subject");
    if (pub == NULL || X509_verify(x, pub) != 1)
        add(r, "iaca", "signature", "the IACA's self-signature does not verify");
    crit = crit_of(x, NID_basic_constraints, &cnt);
    bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    if (cnt != 1 || !crit || bc == NULL || !bc->ca || bc->pathlen == NULL ||
        ASN1_INTEGER_get(bc->pathlen) != 0)
        add(r, "iaca", "basic-constraints", "basicConstraints is not critical cA true pathLen 0");
    BASIC_CONSTRAINTS_free(bc);
    if (ku_bits(x) != (KU_KEY_CERT_SIGN | KU_CRL_SIGN))
        add(r, "iaca", "key-usage", "keyUsage is not exactly keyCertSign and cRLSign");
}

static void
check_ds(X509 *x, X509 *iaca, time_t now, struct hsmca_mdl_report *r)
{
    BASIC_CONSTRAINTS *bc;
    EXTENDED_KEY_USAGE *eku;
    AUTHORITY_KEYID *akid;
    const ASN1_OCTET_STRING *iskid = X509_get0_subject_key_id(iaca);
    const ASN1_STRING *a, *b;
    int crit, cnt, cnt2, ok;
    EVP_PKEY *ipub = X509_get0_pubkey(iaca);

    check_common(x, "ds", 0, now, r);
    if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(iaca)) != 0)
        add(r, "ds", "issuer", "the DS's issuer is not the IACA's subject");
    if (ipub == NULL || X509_verify(x, ipub) != 1)
        add(r, "ds", "signature", "the DS is not signed by the IACA's key");
    a = entry(X509_get_subject_name(x), NID_countryName, &cnt);
    b = entry(X509_get_subject_name(iaca), NID_countryName, &cnt2);
    if (a != NULL && b != NULL && ASN1_STRING_cmp(a, b) != 0)
        add(r, "ds", "country", "the DS's countryName is not the IACA's");
    b = entry(X509_get_subject_name(iaca), NID_stateOrProvinceName, &cnt2);
    a = entry(X509_get_subject_name(x), NID_stateOrProvinceName, &cnt);
    if (cnt2 == 1 && (a == NULL || ASN1_STRING_cmp(a, b) != 0))
        add(r, "ds", "state", "the DS's stateOrProvinceName is not the IACA's");
    if (ASN1_TIME_compare(X509_get0_notBefore(x), X509_get0_notBefore(iaca)) < 0 ||
        ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(iaca)) > 0)
        add(r, "ds", "within-iaca", "the DS's validity is not within the IACA's");
    crit = crit_of(x, NID_basic_constraints, &cnt);
    bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    if (cnt > 0 && (bc == NULL || bc->ca))
        add(r, "ds", "basic-constraints", "a DS certificate is not a CA");
    BASIC_CONSTRAINTS_free(bc);
    if (ku_bits(x) != KU_DIGITAL_SIGNATURE)
        add(r, "ds", "key-usage", "keyUsage is not exactly digitalSignature");
    crit = crit_of(x, NID_ext_key_usage, &cnt);
    eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    ok = cnt == 1 && crit && eku != NULL && sk_ASN1_OBJECT_num(eku) == 1;
    if (ok) {
        char oid[64];

        ok = OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, 0), 1) > 0 &&
             strcmp(oid, HSMCA_MDL_EKU_DS) == 0;
    }
    if (!ok)
        add(r, "ds", "eku", "extendedKeyUsage is %s",
            cnt == 0 ? "missing"
            : !crit  ? "not critical"
                     : "not exactly " HSMCA_MDL_EKU_DS);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    crit = crit_of(x, NID_authority_key_identifier, &cnt);
    akid = X509_get_ext_d2i(x, NID_authority_key_identifier, NULL, NULL);
    if (cnt != 1 || crit || akid == NULL || akid->keyid == NULL || iskid == NULL ||
        ASN1_OCTET_STRING_cmp(akid->keyid, iskid) != 0)
        add(r, "ds", "aki",
            "authorityKeyIdentifier is missing, critical, or not the IACA's subjectKeyIdentifier");
    AUTHORITY_KEYID_free(akid);
}

enum hsmca_err
hsmca_mdl_check(X509 *iaca, X509 *ds, time_t now, struct hsmca_mdl_report *r)
{
    if (iaca == NULL || r == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(r, 0, sizeof(*r));
    check_iaca(iaca, now, r);
    if (ds != NULL)
        check_ds(ds, iaca, now, r);
    return r->n == 0 && r->dropped == 0 ? HSMCA_OK : HSMCA_E_MDL_PROFILE_VIOLATION;
}
