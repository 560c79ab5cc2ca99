/* SPDX-License-Identifier: Apache-2.0
 *
 * matter.c -- the Matter attestation rules (docs/matter-rules.md) in code: format checks per
 * certificate type, VID/PID extraction with the legacy CN encoding, the DAC -> PAI -> PAA chain
 * verdicts of a commissioner, and the PAA/PAI/DAC builders that sign through token-backed keys
 * and validate every certificate before releasing it. Owns the per-PAI issuer context. Never
 * copies a subject from a CSR; never relies on X509_verify_cert alone.
 */
#include "hsmca/matter.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "hsmca/limits.h"
#include "hsmca/util.h"

#define SKID_LEN 20

/* DER of the Matter VID / PID attribute types (N1, N2), without tag and length. */
static const unsigned char oid_vid[] = {0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0xA2, 0x7C, 0x02, 0x01};
static const unsigned char oid_pid[] = {0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0xA2, 0x7C, 0x02, 0x02};

/*
 * A DAC template: the exact TBSCertificate of one DAC for a given PID, and where in it the fields
 * that differ between DACs sit (serial, validity, key, SKID). Made by the full builder and checked
 * by the full validator (signature included) once, then only copied and patched (see
 * dac_build_fast).
 */
struct dac_template {
    uint16_t pid;
    unsigned char tbs[HSMCA_MATTER_CERT_MAX];
    size_t tbs_len;
    size_t off_serial, off_key, off_skid;
    size_t off_nb, off_na;        /* contents of notBefore / notAfter */
    unsigned char nb_tag, na_tag; /* 0x17 UTCTime or 0x18 GeneralizedTime */
    size_t nb_len, na_len;        /* content lengths */
};

#define DAC_TEMPLATES 8

struct hsmca_matter_issuer {
    struct hsmca_profile profile; /* DAC profile (copied) */
    X509 *pai;                    /* up-ref'd */
    X509 *paa;                    /* up-ref'd */
    X509_NAME *issuer;            /* PAI subject (copied) */
    EVP_PKEY *priv;               /* borrowed token key */
    hsmca_matter_sign_fn sign;    /* the template path's signer: evp_signer(priv) by default */
    void *sign_arg;               /* borrowed */
    EVP_PKEY *pai_pub;            /* borrowed from pai */
    ASN1_OBJECT *vid_obj, *pid_obj;
    unsigned char akid_ext[4 + SKID_LEN]; /* DER of the AKID extension value */
    unsigned char pai_skid[SKID_LEN];
    struct hsmca_matter_vidpid scope;
    /* the PAI's and the PAA's validity in seconds, for plan_dac's V3 check per DAC */
    time_t pai_not_before, pai_not_after, paa_not_before, paa_not_after;
    /* DAC templates, made on first use of each PID under tlock (makers only); entries never
     * change once published by the release store of ntmpl, so the hot path reads without a lock */
    pthread_mutex_t tlock;
    struct dac_template *tmpl[DAC_TEMPLATES];
    atomic_uint ntmpl;
    X509_PUBKEY *marker_key; /* a random key whose point and SKID mark their place in a template */
    unsigned char marker_skid[SKID_LEN];
};

static enum hsmca_err make_marker(struct hsmca_matter_issuer *is);
static const struct dac_template *template_for(const struct hsmca_matter_issuer *cis, uint16_t pid,
                                               time_t now);

/* ---------------------------------------------------------------- verdicts */

static enum hsmca_err fail(struct hsmca_matter_verdict *v, enum hsmca_err code, const char *rule,
                           const char *cert, int chip, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum hsmca_err
fail(struct hsmca_matter_verdict *v, enum hsmca_err code, const char *rule, const char *cert,
     int chip, const char *fmt, ...)
{
    va_list ap;

    if (v != NULL) {
        v->code = code;
        v->rule = rule;
        v->cert = cert;
        v->chip = chip;
        va_start(ap, fmt);
        vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
        va_end(ap);
    }
    return code;
}

static void
ok_verdict(struct hsmca_matter_verdict *v)
{
    if (v == NULL)
        return;
    v->code = HSMCA_OK;
    v->rule = "";
    v->cert = "";
    v->chip = HSMCA_CHIP_SUCCESS;
    snprintf(v->detail, sizeof(v->detail), "valid");
}

json_t *
hsmca_matter_verdict_json(const struct hsmca_matter_verdict *v)
{
    if (v == NULL)
        return NULL;
    return json_pack("{s:b, s:s, s:s, s:s, s:i, s:s}", "valid", v->code == HSMCA_OK, "code",
                     hsmca_err_code(v->code), "rule", v->rule != NULL ? v->rule : "", "cert",
                     v->cert != NULL ? v->cert : "", "chip_code", v->chip, "detail", v->detail);
}

static const char *
tname(enum hsmca_profile_type t)
{
    return hsmca_profile_type_name(t);
}

static int
chip_format(enum hsmca_profile_type t)
{
    return t == HSMCA_PROFILE_PAA   ? HSMCA_CHIP_PAA_FORMAT_INVALID
           : t == HSMCA_PROFILE_PAI ? HSMCA_CHIP_PAI_FORMAT_INVALID
                                    : HSMCA_CHIP_DAC_FORMAT_INVALID;
}

/* ---------------------------------------------------------------- parsing */

enum hsmca_err
hsmca_matter_cert_parse(const unsigned char *in, size_t len, X509 **out)
{
    BIO *b = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    const unsigned char *der, *p;
    long dlen = 0;
    size_t i = 0;
    X509 *x = NULL;
    char c;
    enum hsmca_err rc = HSMCA_E_MATTER_CERT_MALFORMED;

    if (in == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_MATTER_INPUT_MAX)
        return HSMCA_E_TOO_LARGE;
    while (i < len && (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n'))
        i++;
    if (len - i >= 5 && memcmp(in + i, "-----", 5) == 0) {
        b = BIO_new_mem_buf(in, (int)len);
        if (b == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        if (PEM_read_bio(b, &name, &header, &data, &dlen) != 1 ||
            strcmp(name, "CERTIFICATE") != 0 || (header != NULL && header[0] != '\0'))
            goto out;
        while (BIO_read(b, &c, 1) == 1) {
            if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
                goto out;
        }
        der = data;
    } else {
        der = in;
        dlen = (long)len;
    }
    p = der;
    x = d2i_X509(NULL, &p, dlen);
    if (x == NULL || p != der + dlen)
        goto out;
    /* DER-exact (STYLE 24): the whole certificate, TBS included, re-encodes to the same bytes.
     * OpenSSL keeps the received TBS bytes for the signature, so re-encode it explicitly. */
    {
        unsigned char *tbs = NULL, *all = NULL;
        int tlen = i2d_re_X509_tbs(x, &tbs), alen = i2d_X509(x, &all);
        int same = tlen > 0 && alen == dlen && memcmp(all, der, (size_t)dlen) == 0;

        OPENSSL_free(tbs);
        OPENSSL_free(all);
        if (!same)
            goto out;
    }
    *out = x;
    x = NULL;
    rc = HSMCA_OK;
out:
    X509_free(x);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(b);
    return rc;
}

/* ---------------------------------------------------------------- VID / PID (section 3) */

static int
upper_hex4(const unsigned char *s, uint16_t *out)
{
    unsigned v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned d;

        if (s[i] >= '0' && s[i] <= '9')
            d = s[i] - '0';
        else if (s[i] >= 'A' && s[i] <= 'F')
            d = s[i] - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = (uint16_t)v;
    return 0;
}

/* N8/N9: find prefix followed by 4 uppercase hex in s[0..len). 1 found, 0 absent, -1 a prefix is
 * present but no occurrence is followed by a valid value. */
static int
find_after_prefix(const unsigned char *s, size_t len, const char *prefix, uint16_t *out)
{
    size_t plen = strlen(prefix), i;
    int seen = 0;

    for (i = 0; i + plen <= len; i++) {
        if (memcmp(s + i, prefix, plen) != 0)
            continue;
        seen = 1;
        if (i + plen + 4 <= len && upper_hex4(s + i + plen, out) == 0)
            return 1;
    }
    return seen ? -1 : 0;
}

static int
obj_is(const ASN1_OBJECT *o, const unsigned char *der, size_t len)
{
    return (size_t)OBJ_length(o) == len && memcmp(OBJ_get0_data(o), der, len) == 0;
}

static enum hsmca_err name_vidpid(const X509_NAME *n, struct hsmca_matter_vidpid *out,
                                  struct hsmca_matter_verdict *v);

enum hsmca_err
hsmca_matter_get_vidpid(X509 *x, struct hsmca_matter_vidpid *out, struct hsmca_matter_verdict *v)
{
    if (x == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return name_vidpid(X509_get_subject_name(x), out, v);
}

/* VID/PID of a subject name (hsmca_matter_get_vidpid; plan_dac reads a CSR's subject with it). */
static enum hsmca_err
name_vidpid(const X509_NAME *n, struct hsmca_matter_vidpid *out, struct hsmca_matter_verdict *v)
{
    struct hsmca_matter_vidpid oid = {0, 0, 0, 0}, cn = {0, 0, 0, 0};
    int i, count, cn_done = 0;

    count = X509_NAME_entry_count(n);
    for (i = 0; i < count; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
        const ASN1_OBJECT *o = X509_NAME_ENTRY_get_object(e);
        const ASN1_STRING *d = X509_NAME_ENTRY_get_data(e);
        const unsigned char *s = ASN1_STRING_get0_data(d);
        size_t len = (size_t)ASN1_STRING_length(d);
        int is_vid = obj_is(o, oid_vid, sizeof(oid_vid));
        int is_pid = obj_is(o, oid_pid, sizeof(oid_pid));
        uint16_t val;

        if (is_vid || is_pid) {
            /* N3: exactly 4 uppercase hex characters, whatever the string type (N4) */
            if (len != 4 || upper_hex4(s, &val) != 0)
                return fail(v, HSMCA_E_MATTER_DN, "N3", "", 0,
                            "the Matter %s attribute is not 4 uppercase hex digits",
                            is_vid ? "VID" : "PID");
            if (is_vid ? oid.has_vid : oid.has_pid)
                return fail(v, HSMCA_E_MATTER_DN, "N5", "", 0,
                            "the subject carries two Matter %s attributes", is_vid ? "VID" : "PID");
            if (is_vid) {
                oid.has_vid = 1;
                oid.vid = val;
            } else {
                oid.has_pid = 1;
                oid.pid = val;
            }
        } else if (OBJ_obj2nid(o) == NID_commonName && !cn_done) {
            /* N8/N9: only the first 64 bytes; parsed (and its errors count) until one CN gave a
             * value */
            int r;

            if (len > HSMCA_MATTER_CN_MAX)
                len = HSMCA_MATTER_CN_MAX;
            r = find_after_prefix(s, len, "Mvid:", &val);
            if (r < 0)
                return fail(v, HSMCA_E_MATTER_DN, "N9", "", 0,
                            "the common name has 'Mvid:' not followed by 4 uppercase hex digits");
            if (r > 0) {
                cn.has_vid = 1;
                cn.vid = val;
            }
            r = find_after_prefix(s, len, "Mpid:", &val);
            if (r < 0)
                return fail(v, HSMCA_E_MATTER_DN, "N9", "", 0,
                            "the common name has 'Mpid:' not followed by 4 uppercase hex digits");
            if (r > 0) {
                cn.has_pid = 1;
                cn.pid = val;
            }
            cn_done = cn.has_vid || cn.has_pid;
        }
    }
    /* N10: any Matter OID attribute wins; the CN is then ignored */
    *out = (oid.has_vid || oid.has_pid) ? oid : cn;
    return HSMCA_OK;
}

/* ---------------------------------------------------------------- format (sections 1-2) */

/*
 * C3/C4 from the encoded SubjectPublicKeyInfo, without decoding the key (OpenSSL 3's decoders cost
 * more than the token signature): id-ecPublicKey, namedCurve prime256v1, a 65-byte uncompressed
 * point. 1 ok, 0 not EC P-256 (C3), 2 not 65 bytes uncompressed (C4). *pt gets the point.
 */
static int
raw_p256(const X509_PUBKEY *xp, const unsigned char **pt)
{
    ASN1_OBJECT *alg = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0, ptype = 0;
    const void *pval = NULL;
    X509_ALGOR *a = NULL;

    if (xp == NULL || X509_PUBKEY_get0_param(&alg, &pk, &pklen, &a, (X509_PUBKEY *)xp) != 1 ||
        OBJ_obj2nid(alg) != NID_X9_62_id_ecPublicKey)
        return 0;
    X509_ALGOR_get0(NULL, &ptype, &pval, a);
    if (ptype != V_ASN1_OBJECT || OBJ_obj2nid(pval) != NID_X9_62_prime256v1)
        return 0;
    if (pklen != 65 || pk[0] != 0x04)
        return 2;
    if (pt != NULL)
        *pt = pk;
    return 1;
}

/* keyIdentifier of the SKID / AKID, or NULL. */
static const ASN1_OCTET_STRING *
skid_of(X509 *x)
{
    return X509_get0_subject_key_id(x);
}

static const ASN1_OCTET_STRING *
akid_of(X509 *x)
{
    return X509_get0_authority_key_id(x);
}

/* The checks of VerifyAttestationCertificateFormat plus C12, C13 and the subject rules. */
static enum hsmca_err
check_format(X509 *x, enum hsmca_profile_type t, struct hsmca_matter_verdict *v,
             struct hsmca_matter_vidpid *vp_out)
{
    const char *c = tname(t);
    int chip = chip_format(t);
    int i, n, bc = 0, ku = 0, skid = 0, akid = 0, der_len, pk;
    uint32_t flags;
    struct hsmca_matter_vidpid vp;
    enum hsmca_err rc;

    der_len = i2d_X509(x, NULL);
    if (der_len <= 0)
        return fail(v, HSMCA_E_MATTER_CERT_MALFORMED, "C13", c, chip, "cannot encode");
    if (der_len > HSMCA_MATTER_CERT_MAX)
        return fail(v, HSMCA_E_MATTER_CERT_TOO_LARGE, "C13", c, chip,
                    "the %s is %d bytes of DER; the limit is %d", c, der_len,
                    HSMCA_MATTER_CERT_MAX);
    if (X509_get_version(x) != X509_VERSION_3)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C1", c, chip,
                    "the %s is not an X.509 v3 "
                    "certificate",
                    c);
    if (X509_get_signature_nid(x) != NID_ecdsa_with_SHA256)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C2", c, chip,
                    "the %s is not signed with ecdsa-with-SHA256", c);
    pk = raw_p256(X509_get_X509_PUBKEY(x), NULL);
    if (pk == 0)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C3", c, chip, "the %s's key is not EC P-256", c);
    if (pk == 2)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C4", c, chip,
                    "the %s's key does not encode as a 65-byte uncompressed point", c);
    if (X509_get0_serialNumber(x) == NULL)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C5", c, chip, "no serial number");
    if (X509_get_issuer_name(x) == NULL || X509_get_subject_name(x) == NULL ||
        X509_get0_notBefore(x) == NULL || X509_get0_notAfter(x) == NULL)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C6", c, chip, "issuer, subject or validity absent");
    flags = X509_get_extension_flags(x); /* also caches the decoded extensions */
    n = X509_get_ext_count(x);
    /* C12: an extension of any kind present twice (OpenSSL then refuses the whole chain) */
    for (i = 0; i < n; i++) {
        const ASN1_OBJECT *o = X509_EXTENSION_get_object(X509_get_ext(x, i));

        if (X509_get_ext_by_OBJ(x, o, i) != -1)
            return fail(v, HSMCA_E_MATTER_FORMAT, "C12", c, chip,
                        "the %s carries an extension twice", c);
    }
    for (i = 0; i < n; i++) {
        X509_EXTENSION *e = X509_get_ext(x, i);
        int crit = X509_EXTENSION_get_critical(e) == 1;

        switch (OBJ_obj2nid(X509_EXTENSION_get_object(e))) {
        case NID_basic_constraints: {
            BASIC_CONSTRAINTS *b;
            int ca, has_path;
            long path = -1;

            if (!crit || bc)
                return fail(v, HSMCA_E_MATTER_FORMAT, "C7", c, chip,
                            "basicConstraints must be critical and present once");
            bc = 1;
            b = X509V3_EXT_d2i(e);
            if (b == NULL)
                return fail(v, HSMCA_E_MATTER_FORMAT, "C7", c, chip,
                            "basicConstraints does not decode");
            ca = b->ca != 0;
            has_path = b->pathlen != NULL;
            if (has_path)
                path = ASN1_INTEGER_get(b->pathlen);
            BASIC_CONSTRAINTS_free(b);
            if (t == HSMCA_PROFILE_DAC && (ca || has_path))
                return fail(v, HSMCA_E_MATTER_FORMAT, ca ? "dac-basic-ca" : "dac-pathlen", c, chip,
                            "a DAC is not a CA and carries no pathLen");
            if (t == HSMCA_PROFILE_PAI && (!ca || !has_path || path != 0))
                return fail(v, HSMCA_E_MATTER_FORMAT, !ca ? "pai-basic-ca" : "pai-pathlen", c, chip,
                            "a PAI is a CA with pathLen exactly 0");
            if (t == HSMCA_PROFILE_PAA && (!ca || (has_path && path != 1)))
                return fail(v, HSMCA_E_MATTER_FORMAT, !ca ? "paa-basic-ca" : "paa-pathlen", c, chip,
                            "a PAA is a CA with pathLen absent or 1");
            break;
        }
        case NID_key_usage: {
            uint32_t k;

            if (!crit || ku)
                return fail(v, HSMCA_E_MATTER_FORMAT, "C8", c, chip,
                            "keyUsage must be critical and present once");
            ku = 1;
            k = X509_get_key_usage(x);
            if (t == HSMCA_PROFILE_DAC && k != KU_DIGITAL_SIGNATURE)
                return fail(v, HSMCA_E_MATTER_FORMAT, "dac-key-usage", c, chip,
                            "a DAC's key usage is exactly digitalSignature");
            if (t != HSMCA_PROFILE_DAC &&
                ((k & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != (KU_KEY_CERT_SIGN | KU_CRL_SIGN) ||
                 (k & ~(uint32_t)(KU_KEY_CERT_SIGN | KU_CRL_SIGN | KU_DIGITAL_SIGNATURE)) != 0))
                return fail(v, HSMCA_E_MATTER_FORMAT,
                            t == HSMCA_PROFILE_PAA ? "paa-key-usage" : "pai-key-usage", c, chip,
                            "a CA's key usage is keyCertSign and cRLSign (and at most "
                            "digitalSignature)");
            break;
        }
        case NID_subject_key_identifier: {
            const ASN1_OCTET_STRING *s = skid_of(x);

            if (crit || skid || s == NULL || ASN1_STRING_length(s) != SKID_LEN)
                return fail(v, HSMCA_E_MATTER_FORMAT, "C9", c, chip,
                            "subjectKeyIdentifier must be non-critical, once, 20 bytes");
            skid = 1;
            break;
        }
        case NID_authority_key_identifier: {
            const ASN1_OCTET_STRING *a = akid_of(x);

            if (crit || akid || a == NULL || ASN1_STRING_length(a) != SKID_LEN)
                return fail(v, HSMCA_E_MATTER_FORMAT, "C10", c, chip,
                            "authorityKeyIdentifier must be non-critical, once, with a 20-byte "
                            "keyIdentifier");
            akid = 1;
            break;
        }
        default:
            break; /* C11 */
        }
    }
    if (!bc)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C7", c, chip, "basicConstraints is missing");
    if (!ku)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C8", c, chip, "keyUsage is missing");
    if (!skid)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C9", c, chip, "subjectKeyIdentifier is missing");
    if (!akid && t != HSMCA_PROFILE_PAA)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C10", c, chip, "authorityKeyIdentifier is missing");
    /* C12: duplicate extensions of any kind (OpenSSL marks the certificate invalid) */
    if ((flags & EXFLAG_INVALID) != 0)
        return fail(v, HSMCA_E_MATTER_FORMAT, "C12", c, chip,
                    "the %s has a duplicate or undecodable extension", c);
    rc = hsmca_matter_get_vidpid(x, &vp, v);
    if (rc != HSMCA_OK) {
        v->cert = c;
        v->chip = chip;
        return rc;
    }
    if (t == HSMCA_PROFILE_PAA && vp.has_pid)
        return fail(v, HSMCA_E_MATTER_FORMAT, "paa-pid", c, HSMCA_CHIP_PAA_FORMAT_INVALID,
                    "a PAA must not carry a PID");
    if (vp_out != NULL)
        *vp_out = vp;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_matter_check_format(X509 *x, enum hsmca_profile_type t, struct hsmca_matter_verdict *v)
{
    enum hsmca_err rc;

    if (x == NULL || v == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = check_format(x, t, v, NULL);
    if (rc == HSMCA_OK)
        ok_verdict(v);
    return rc;
}

/* ---------------------------------------------------------------- chain (section 4) */

static int
same_octets(const ASN1_OCTET_STRING *a, const ASN1_OCTET_STRING *b)
{
    return a != NULL && b != NULL && ASN1_STRING_cmp(a, b) == 0;
}

/* An ASN1_TIME in seconds since 1970; 0 if it does not convert. */
static int
time_of(const ASN1_TIME *a, time_t *out)
{
    struct tm tm;

    if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
        return 0;
    *out = timegm(&tm);
    return 1;
}

/* V3: issuer valid at t (the DAC's notBefore), with OpenSSL's semantics: not after notAfter,
 * not before notBefore. */
static int
valid_at(X509 *issuer, const ASN1_TIME *t)
{
    return ASN1_TIME_compare(X509_get0_notBefore(issuer), t) <= 0 &&
           ASN1_TIME_compare(X509_get0_notAfter(issuer), t) > 0;
}

/* Names, AKID links and V3 of DAC->PAI->PAA; signatures only when sigs. */
static enum hsmca_err
check_links(X509 *dac, X509 *pai, X509 *paa, int sigs, struct hsmca_matter_verdict *v)
{
    const ASN1_TIME *t = X509_get0_notBefore(dac);

    if (X509_NAME_cmp(X509_get_issuer_name(dac), X509_get_subject_name(pai)) != 0 ||
        !same_octets(akid_of(dac), skid_of(pai)))
        return fail(v, HSMCA_E_MATTER_CHAIN, "V9", "dac", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                    "the DAC's issuer name or AKID is not the PAI's subject or SKID");
    if (X509_NAME_cmp(X509_get_issuer_name(pai), X509_get_subject_name(paa)) != 0)
        return fail(v, HSMCA_E_MATTER_CHAIN, "V9", "pai", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                    "the PAI's issuer name is not the PAA's subject");
    if (!valid_at(paa, t))
        return fail(v, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3", "paa", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                    "the PAA was not valid at the DAC's notBefore");
    if (!valid_at(pai, t))
        return fail(v, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3", "pai", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                    "the PAI was not valid at the DAC's notBefore");
    if (ASN1_TIME_compare(X509_get0_notAfter(dac), t) <= 0)
        return fail(v, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3", "dac", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                    "the DAC's notAfter is not after its notBefore");
    if (sigs) {
        if (X509_verify(pai, X509_get0_pubkey(paa)) != 1)
            return fail(v, HSMCA_E_MATTER_CHAIN, "V9", "pai", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                        "the PAI's signature does not verify with the PAA's key");
        if (X509_verify(dac, X509_get0_pubkey(pai)) != 1)
            return fail(v, HSMCA_E_MATTER_CHAIN, "V9", "dac", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                        "the DAC's signature does not verify with the PAI's key");
    }
    return HSMCA_OK;
}

/* V6: OpenSSL strict path validation at the DAC's notBefore, as the SDK's OpenSSL backend does. */
static enum hsmca_err
openssl_strict(X509 *dac, X509 *pai, X509 *paa, struct hsmca_matter_verdict *v)
{
    X509_STORE *st = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *chain = NULL;
    struct tm tm;
    time_t t;
    int ok = 0, err = 0;
    enum hsmca_err rc = HSMCA_E_NOMEM;

    st = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    chain = sk_X509_new_null();
    if (st == NULL || ctx == NULL || chain == NULL || X509_STORE_add_cert(st, paa) != 1 ||
        sk_X509_push(chain, pai) <= 0)
        goto out;
    if (X509_STORE_CTX_init(ctx, st, dac, chain) != 1)
        goto out;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(dac), &tm) != 1) {
        rc = fail(v, HSMCA_E_MATTER_FORMAT, "C6", "dac", HSMCA_CHIP_DAC_FORMAT_INVALID,
                  "the DAC's notBefore does not decode");
        goto out;
    }
    t = timegm(&tm);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), t);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
    ok = X509_verify_cert(ctx);
    err = X509_STORE_CTX_get_error(ctx);
    if (ok != 1) {
        rc = fail(v, HSMCA_E_MATTER_CHAIN, "V6", "chain", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                  "strict X.509 path validation at the DAC's notBefore fails: %s",
                  X509_verify_cert_error_string(err));
        goto out;
    }
    rc = HSMCA_OK;
out:
    sk_X509_free(chain);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return rc;
}

enum hsmca_err
hsmca_matter_validate(X509 *dac, X509 *pai, X509 *paa, const struct hsmca_matter_expect *expect,
                      time_t now, struct hsmca_matter_verdict *v)
{
    struct hsmca_matter_vidpid dvp, ivp, avp;
    enum hsmca_err rc;

    if (dac == NULL || v == NULL)
        return HSMCA_E_INVALID_ARG;
    if (pai == NULL)
        return fail(v, HSMCA_E_MATTER_PAI_MISSING, "V1", "pai", HSMCA_CHIP_PAI_MISSING,
                    "a DAC is only accepted with its PAI");
    /* [VER] order: PAI format, DAC format, VID/PID, PAA lookup, PAA VID/PID, time, chain */
    rc = check_format(pai, HSMCA_PROFILE_PAI, v, &ivp);
    if (rc != HSMCA_OK)
        return rc;
    rc = check_format(dac, HSMCA_PROFILE_DAC, v, &dvp);
    if (rc != HSMCA_OK)
        return rc;
    if (!dvp.has_vid || !ivp.has_vid || dvp.vid != ivp.vid)
        return fail(v, HSMCA_E_MATTER_VIDPID, !ivp.has_vid ? "pai-vid" : "dac-vid", "dac",
                    HSMCA_CHIP_DAC_VENDOR_ID_MISMATCH,
                    "the DAC and the PAI must carry the same VID (DAC %s%04X, PAI %s%04X)",
                    dvp.has_vid ? "" : "none/", dvp.vid, ivp.has_vid ? "" : "none/", ivp.vid);
    if (!dvp.has_pid)
        return fail(v, HSMCA_E_MATTER_VIDPID, "dac-pid", "dac", HSMCA_CHIP_DAC_PRODUCT_ID_MISMATCH,
                    "the DAC carries no PID");
    if (ivp.has_pid && ivp.pid != dvp.pid)
        return fail(v, HSMCA_E_MATTER_VIDPID, "pai-pid-scope", "dac",
                    HSMCA_CHIP_DAC_PRODUCT_ID_MISMATCH,
                    "the DAC's PID %04X is not the PAI's PID %04X", dvp.pid, ivp.pid);
    if (paa == NULL || !same_octets(akid_of(pai), skid_of(paa)))
        return fail(v, HSMCA_E_MATTER_PAA_NOT_FOUND, "V2", "paa", HSMCA_CHIP_PAA_NOT_FOUND,
                    "no trusted PAA has the PAI's AKID as its SKID");
    rc = check_format(paa, HSMCA_PROFILE_PAA, v, &avp);
    if (rc != HSMCA_OK)
        return rc;
    if (avp.has_vid && avp.vid != ivp.vid)
        return fail(v, HSMCA_E_MATTER_VIDPID, "paa-vid", "pai", HSMCA_CHIP_PAI_VENDOR_ID_MISMATCH,
                    "the PAI's VID %04X is not the PAA's VID %04X", ivp.vid, avp.vid);
    if (expect != NULL && expect->has_vid && expect->vid != dvp.vid)
        return fail(v, HSMCA_E_MATTER_EXPECTED_VIDPID, "basic-info-vid", "dac",
                    HSMCA_CHIP_DAC_VENDOR_ID_MISMATCH,
                    "the DAC's VID %04X is not the device's reported VID %04X", dvp.vid,
                    expect->vid);
    if (expect != NULL && expect->has_pid && expect->pid != dvp.pid)
        return fail(v, HSMCA_E_MATTER_EXPECTED_VIDPID, "basic-info-pid", "dac",
                    HSMCA_CHIP_DAC_PRODUCT_ID_MISMATCH,
                    "the DAC's PID %04X is not the device's reported PID %04X", dvp.pid,
                    expect->pid);
    /* V4: the DAC, and only the DAC, is judged at the current time */
    if (X509_cmp_time(X509_get0_notBefore(dac), &now) != -1 ||
        X509_cmp_time(X509_get0_notAfter(dac), &now) != 1)
        return fail(v, HSMCA_E_MATTER_DAC_VALIDITY, "V4", "dac", HSMCA_CHIP_DAC_EXPIRED,
                    "the DAC is not valid at the current time");
    rc = check_links(dac, pai, paa, 1, v);
    if (rc != HSMCA_OK)
        return rc;
    rc = openssl_strict(dac, pai, paa, v);
    if (rc != HSMCA_OK)
        return rc;
    ok_verdict(v);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_matter_validate_der(const unsigned char *dac, size_t dac_len, const unsigned char *pai,
                          size_t pai_len, const unsigned char *paa, size_t paa_len,
                          const struct hsmca_matter_expect *expect, time_t now,
                          struct hsmca_matter_verdict *v)
{
    X509 *d = NULL, *i = NULL, *a = NULL;
    enum hsmca_err rc;

    if (dac == NULL || v == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_matter_cert_parse(dac, dac_len, &d);
    if (rc != HSMCA_OK) {
        rc = fail(v, rc, "der", "dac", HSMCA_CHIP_DAC_FORMAT_INVALID,
                  "the DAC is not one DER or PEM certificate");
        goto out;
    }
    if (pai != NULL) {
        rc = hsmca_matter_cert_parse(pai, pai_len, &i);
        if (rc != HSMCA_OK) {
            rc = fail(v, rc, "der", "pai", HSMCA_CHIP_PAI_FORMAT_INVALID,
                      "the PAI is not one DER or PEM certificate");
            goto out;
        }
    }
    if (paa != NULL) {
        rc = hsmca_matter_cert_parse(paa, paa_len, &a);
        if (rc != HSMCA_OK) {
            rc = fail(v, rc, "der", "paa", HSMCA_CHIP_PAA_FORMAT_INVALID,
                      "the PAA is not one DER or PEM certificate");
            goto out;
        }
    }
    rc = hsmca_matter_validate(d, i, a, expect, now, v);
out:
    X509_free(a);
    X509_free(i);
    X509_free(d);
    return rc;
}

/* ---------------------------------------------------------------- building */

/*
 * A serial: 6 bytes of issue time, then 10 bytes (80 bits) from the CSPRNG. The time is
 * milliseconds since 1970 with bit 46 set (0x40 in the first byte), so the serial is positive, its
 * first byte is never zero (minimal DER at a fixed length), and serials rise with time. Rising
 * serials append to the store's (ca, serial) key instead of dirtying a random page of it per
 * certificate (tools/bench: the writer's page writes); unpredictability and uniqueness come from
 * the 80 random bits (CA/B BR 7.1 asks for 64), and the store still refuses a duplicate.
 */
#define SERIAL_RAND (HSMCA_MATTER_SERIAL_LEN - 6)
#define SERIAL_DRAW 32 /* serials' random parts drawn per RAND_bytes call */

/* Each thread draws random parts for SERIAL_DRAW serials at once (RAND_bytes costs a DRBG update
 * per call, about 1 % of a DAC's CPU when called per serial), uses each part once and wipes it.
 * A fork child drops the parent's unused draw. */
static _Thread_local unsigned char serial_draw[SERIAL_DRAW * SERIAL_RAND];
static _Thread_local size_t serial_left;
static pthread_once_t serial_once = PTHREAD_ONCE_INIT;

static void
serial_forget(void)
{
    OPENSSL_cleanse(serial_draw, sizeof(serial_draw));
    serial_left = 0;
}

static void
serial_init(void)
{
    (void)pthread_atfork(NULL, NULL, serial_forget);
}

static int
serial_random(unsigned char *out)
{
    unsigned char *p;

    (void)pthread_once(&serial_once, serial_init);
    if (serial_left == 0) {
        if (RAND_bytes(serial_draw, (int)sizeof(serial_draw)) != 1)
            return 0;
        serial_left = SERIAL_DRAW;
    }
    p = serial_draw + (--serial_left) * SERIAL_RAND;
    memcpy(out, p, SERIAL_RAND);
    OPENSSL_cleanse(p, SERIAL_RAND);
    return 1;
}

enum hsmca_err
hsmca_matter_serial(int64_t ms, unsigned char out[HSMCA_MATTER_SERIAL_LEN])
{
    uint64_t t;
    int i;

    if (out == NULL || ms < 0)
        return HSMCA_E_INVALID_ARG;
    if (!serial_random(out + 6))
        return HSMCA_E_RANDOM;
    t = ((uint64_t)ms & 0x3FFFFFFFFFFFull) | 0x400000000000ull;
    for (i = 5; i >= 0; i--, t >>= 8)
        out[i] = (unsigned char)t;
    return HSMCA_OK;
}

static enum hsmca_err
make_serial(unsigned char *s)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return hsmca_matter_serial((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, s);
}

/* Add an extension whose value is the exact DER in der[0..len). */
static int
add_ext(X509 *x, int nid, int crit, const unsigned char *der, int len)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    X509_EXTENSION *e = NULL;
    int ok = 0;

    if (os == NULL || ASN1_OCTET_STRING_set(os, der, len) != 1)
        goto out;
    e = X509_EXTENSION_create_by_NID(NULL, nid, crit, os);
    if (e == NULL || X509_add_ext(x, e, -1) != 1)
        goto out;
    ok = 1;
out:
    X509_EXTENSION_free(e);
    ASN1_OCTET_STRING_free(os);
    return ok;
}

/* Extensions in chip-cert's order: BC, KU, SKID, AKID; each value DER-exact (section 7). */
static int
add_exts(X509 *x, const struct hsmca_profile *p, const unsigned char *skid,
         const unsigned char *akid)
{
    unsigned char bc[8], ku[4], sk[2 + SKID_LEN], ak[4 + SKID_LEN];
    int bclen = 0, kulen;
    unsigned bits = p->ku;

    bc[bclen++] = 0x30;
    if (!p->ca) {
        bc[bclen++] = 0x00; /* CA:FALSE is the DEFAULT: empty SEQUENCE */
    } else {
        bc[bclen++] = (unsigned char)(p->pathlen >= 0 ? 6 : 3);
        bc[bclen++] = 0x01;
        bc[bclen++] = 0x01;
        bc[bclen++] = 0xFF;
        if (p->pathlen >= 0) {
            bc[bclen++] = 0x02;
            bc[bclen++] = 0x01;
            bc[bclen++] = (unsigned char)p->pathlen;
        }
    }
    /* KeyUsage BIT STRING, minimal: bit 0 = digitalSignature (0x80), 5 keyCertSign (0x04),
     * 6 cRLSign (0x02); unused bits = trailing zero bits of the last byte */
    ku[0] = 0x03;
    ku[1] = 0x02;
    {
        unsigned unused = 0;

        while (unused < 7 && ((bits >> unused) & 1u) == 0)
            unused++;
        ku[2] = (unsigned char)unused;
        ku[3] = (unsigned char)bits;
    }
    kulen = 4;
    sk[0] = 0x04;
    sk[1] = SKID_LEN;
    memcpy(sk + 2, skid, SKID_LEN);
    if (!add_ext(x, NID_basic_constraints, 1, bc, bclen) ||
        !add_ext(x, NID_key_usage, 1, ku, kulen) ||
        !add_ext(x, NID_subject_key_identifier, 0, sk, (int)sizeof(sk)))
        return 0;
    if (akid != NULL) {
        ak[0] = 0x30;
        ak[1] = 2 + SKID_LEN;
        ak[2] = 0x80;
        ak[3] = SKID_LEN;
        memcpy(ak + 4, akid, SKID_LEN);
        if (!add_ext(x, NID_authority_key_identifier, 0, ak, (int)sizeof(ak)))
            return 0;
    }
    return 1;
}

/* S6: SHA-1 over the subjectPublicKey BIT STRING contents. */
static int
key_skid(const X509_PUBKEY *xp, unsigned char *out)
{
    const unsigned char *pt = NULL;

    if (raw_p256(xp, &pt) != 1)
        return 0;
    SHA1(pt, 65, out);
    return 1;
}

/* Copy the key of xp into x as encoded (no decode / encode round trip). */
static int
copy_pubkey(X509 *x, const X509_PUBKEY *xp)
{
    const unsigned char *pt = NULL;
    unsigned char *copy;

    if (raw_p256(xp, &pt) != 1)
        return 0;
    copy = OPENSSL_memdup(pt, 65);
    if (copy == NULL)
        return 0;
    if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                               V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1), copy, 65) != 1) {
        OPENSSL_free(copy);
        return 0;
    }
    return 1;
}

static int
add_rdn(X509_NAME *n, const ASN1_OBJECT *o, const char *s, int len)
{
    return X509_NAME_add_entry_by_OBJ(n, o, MBSTRING_UTF8, (const unsigned char *)s, len, -1, 0) ==
           1;
}

/* Subject: CN, VID, PID as single-attribute RDNs (N6), UTF8String (N4). */
static enum hsmca_err
make_name(const ASN1_OBJECT *vid_obj, const ASN1_OBJECT *pid_obj, const char *cn, int has_vid,
          uint16_t vid, int has_pid, uint16_t pid, X509_NAME **out)
{
    X509_NAME *n = X509_NAME_new();
    ASN1_OBJECT *cn_obj = OBJ_nid2obj(NID_commonName);
    char hex[5];
    enum hsmca_err rc = HSMCA_E_NOMEM;

    if (n == NULL || !add_rdn(n, cn_obj, cn, (int)strlen(cn)))
        goto out;
    if (has_vid) {
        snprintf(hex, sizeof(hex), "%04X", (unsigned)vid);
        if (!add_rdn(n, vid_obj, hex, 4))
            goto out;
    }
    if (has_pid) {
        snprintf(hex, sizeof(hex), "%04X", (unsigned)pid);
        if (!add_rdn(n, pid_obj, hex, 4))
            goto out;
    }
    *out = n;
    n = NULL;
    rc = HSMCA_OK;
out:
    X509_NAME_free(n);
    return rc;
}

static int
set_validity(X509 *x, const struct hsmca_profile *p, time_t now)
{
    time_t nb = now - (time_t)p->backdate;
    ASN1_TIME *t;

    if (X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &nb) == NULL)
        return 0;
    if (p->no_expiry)
        return ASN1_TIME_set_string_X509(X509_getm_notAfter(x), "99991231235959Z") == 1;
    t = X509_time_adj_ex(X509_getm_notAfter(x), (int)p->days, -1, &nb);
    return t != NULL;
}

static int
set_serial(X509 *x, const unsigned char *s)
{
    BIGNUM *bn = BN_bin2bn(s, HSMCA_MATTER_SERIAL_LEN, NULL);
    int ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

    BN_free(bn);
    return ok;
}

/* Sign, re-encode and re-parse: the checks below see exactly the bytes that are released. */
static enum hsmca_err
sign_and_reparse(X509 *x, EVP_PKEY *priv, X509 **out, unsigned char **der_out, size_t *der_len)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int n;
    X509 *y;

    if (X509_sign(x, priv, EVP_sha256()) <= 0)
        return HSMCA_E_SIGN_FAILED;
    n = i2d_X509(x, &der);
    if (n <= 0)
        return HSMCA_E_NOMEM;
    p = der;
    y = d2i_X509(NULL, &p, n);
    if (y == NULL || p != der + n) {
        X509_free(y);
        OPENSSL_free(der);
        return HSMCA_E_MATTER_SELF_CHECK;
    }
    *out = y;
    if (der_out != NULL) {
        *der_out = der;
        *der_len = (size_t)n;
    } else {
        OPENSSL_free(der);
    }
    return HSMCA_OK;
}

static enum hsmca_err
ca_build(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s, EVP_PKEY *pub,
         X509 *parent, EVP_PKEY *signer, time_t now, unsigned char *serial_out, X509 **out)
{
    ASN1_OBJECT *vid_obj = NULL, *pid_obj = NULL;
    X509_NAME *name = NULL;
    X509 *x = NULL, *y = NULL;
    unsigned char skid[SKID_LEN], serial[HSMCA_MATTER_SERIAL_LEN];
    const ASN1_OCTET_STRING *pskid = NULL;
    char cn[HSMCA_MATTER_CN_MAX + 1];
    struct hsmca_matter_verdict v;
    enum hsmca_profile_type want = parent == NULL ? HSMCA_PROFILE_PAA : HSMCA_PROFILE_PAI;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (p == NULL || s == NULL || pub == NULL || signer == NULL || out == NULL ||
        serial_out == NULL || p->type != want)
        goto out;
    rc = HSMCA_E_MATTER_SCOPE;
    if ((p->vid == HSMCA_PRESENCE_REQUIRED && !s->has_vid) ||
        (p->vid == HSMCA_PRESENCE_FORBIDDEN && s->has_vid) ||
        (p->pid == HSMCA_PRESENCE_REQUIRED && !s->has_pid) ||
        (p->pid == HSMCA_PRESENCE_FORBIDDEN && s->has_pid))
        goto out;
    if (s->cn != NULL) {
        size_t l = strlen(s->cn);

        if (l == 0 || l > HSMCA_MATTER_CN_MAX || strstr(s->cn, "Mvid:") != NULL ||
            strstr(s->cn, "Mpid:") != NULL)
            goto out;
        memcpy(cn, s->cn, l + 1);
    } else {
        rc = hsmca_profile_cn(p, s->has_vid, s->vid, s->has_pid, s->pid, cn, sizeof(cn));
        if (rc != HSMCA_OK)
            goto out;
    }
    if (parent != NULL) {
        struct hsmca_matter_vidpid avp;

        rc = check_format(parent, HSMCA_PROFILE_PAA, &v, &avp);
        if (rc != HSMCA_OK)
            goto out;
        rc = HSMCA_E_MATTER_SCOPE;
        if (avp.has_vid && avp.vid != s->vid)
            goto out; /* paa-vid */
        pskid = skid_of(parent);
    }
    rc = HSMCA_E_NOMEM;
    vid_obj = OBJ_txt2obj("1.3.6.1.4.1.37244.2.1", 1);
    pid_obj = OBJ_txt2obj("1.3.6.1.4.1.37244.2.2", 1);
    x = X509_new();
    if (vid_obj == NULL || pid_obj == NULL || x == NULL)
        goto out;
    rc = make_name(vid_obj, pid_obj, cn, s->has_vid, s->vid, s->has_pid, s->pid, &name);
    if (rc != HSMCA_OK)
        goto out;
    rc = make_serial(serial);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_NOMEM;
    if (X509_set_version(x, X509_VERSION_3) != 1 || !set_serial(x, serial) ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, parent != NULL ? X509_get_subject_name(parent) : name) != 1 ||
        !set_validity(x, p, now) || X509_set_pubkey(x, pub) != 1)
        goto out;
    rc = HSMCA_E_INVALID_ARG;
    if (!key_skid(X509_get_X509_PUBKEY(x), skid))
        goto out;
    rc = HSMCA_E_NOMEM;
    if (!add_exts(x, p, skid,
                  parent != NULL ? ASN1_STRING_get0_data(pskid) : (p->akid ? skid : NULL)))
        goto out;
    rc = sign_and_reparse(x, signer, &y, NULL, NULL);
    if (rc != HSMCA_OK)
        goto out;
    /* self check: the validator's format rules, then the link and signature */
    rc = HSMCA_E_MATTER_SELF_CHECK;
    if (check_format(y, want, &v, NULL) != HSMCA_OK)
        goto out;
    if (parent == NULL) {
        if (X509_verify(y, pub) != 1)
            goto out;
    } else {
        if (X509_NAME_cmp(X509_get_issuer_name(y), X509_get_subject_name(parent)) != 0 ||
            !same_octets(akid_of(y), skid_of(parent)) ||
            X509_verify(y, X509_get0_pubkey(parent)) != 1)
            goto out;
    }
    memcpy(serial_out, serial, sizeof(serial));
    *out = y;
    y = NULL;
    rc = HSMCA_OK;
out:
    X509_free(y);
    X509_free(x);
    X509_NAME_free(name);
    ASN1_OBJECT_free(vid_obj);
    ASN1_OBJECT_free(pid_obj);
    return rc;
}

enum hsmca_err
hsmca_matter_paa_build(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                       EVP_PKEY *priv, EVP_PKEY *pub, time_t now, unsigned char *serial_out,
                       X509 **out)
{
    return ca_build(p, s, pub, NULL, priv, now, serial_out, out);
}

enum hsmca_err
hsmca_matter_pai_build(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                       EVP_PKEY *pai_pub, X509 *paa, EVP_PKEY *paa_priv, time_t now,
                       unsigned char *serial_out, X509 **out)
{
    if (paa == NULL)
        return HSMCA_E_INVALID_ARG;
    return ca_build(p, s, pai_pub, paa, paa_priv, now, serial_out, out);
}

/* ---------------------------------------------------------------- issuer context */

/* The issuer's default signer: EVP_PKEY_sign of the digest with arg, the token key's EVP_PKEY. */
static enum hsmca_err
evp_signer(void *arg, const unsigned char dgst[32], unsigned char *sig, size_t sig_max,
           size_t *sig_len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(arg, NULL);
    size_t n = sig_max;
    int ok =
        ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 && EVP_PKEY_sign(ctx, sig, &n, dgst, 32) == 1;

    EVP_PKEY_CTX_free(ctx);
    if (!ok)
        return HSMCA_E_SIGN_FAILED;
    *sig_len = n;
    return HSMCA_OK;
}

/* 1 if sig is pub's signature of the 32-byte digest dgst. */
static int
digest_verifies(EVP_PKEY *pub, const unsigned char *sig, size_t siglen,
                const unsigned char dgst[32])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    int ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
             EVP_PKEY_verify(ctx, sig, siglen, dgst, 32) == 1;

    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/* One test signature through fn, verified with pub: HSMCA_OK, fn's error, or
 * HSMCA_E_MATTER_KEY_MISMATCH. */
static enum hsmca_err
signer_check(hsmca_matter_sign_fn fn, void *arg, EVP_PKEY *pub)
{
    static const unsigned char msg[] = "hsmca issuer key check";
    unsigned char dgst[32], sig[HSMCA_ECDSA_P256_DER_MAX + 8];
    size_t siglen = 0;
    enum hsmca_err rc;

    SHA256(msg, sizeof(msg), dgst);
    rc = fn(arg, dgst, sig, sizeof(sig), &siglen);
    if (rc != HSMCA_OK)
        return rc;
    if (siglen > HSMCA_ECDSA_P256_DER_MAX || !digest_verifies(pub, sig, siglen, dgst))
        return HSMCA_E_MATTER_KEY_MISMATCH;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_matter_issuer_set_signer(struct hsmca_matter_issuer *is, hsmca_matter_sign_fn fn, void *arg)
{
    enum hsmca_err rc;

    if (is == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = signer_check(fn, arg, is->pai_pub);
    if (rc != HSMCA_OK)
        return rc;
    is->sign = fn;
    is->sign_arg = arg;
    return HSMCA_OK;
}

void
hsmca_matter_issuer_free(struct hsmca_matter_issuer *is)
{
    if (is == NULL)
        return;
    X509_free(is->pai);
    X509_free(is->paa);
    X509_NAME_free(is->issuer);
    ASN1_OBJECT_free(is->vid_obj);
    ASN1_OBJECT_free(is->pid_obj);
    X509_PUBKEY_free(is->marker_key);
    for (unsigned i = 0; i < atomic_load(&is->ntmpl); i++)
        free(is->tmpl[i]);
    pthread_mutex_destroy(&is->tlock);
    free(is);
}

enum hsmca_err
hsmca_matter_issuer_new(const struct hsmca_profile *dac_profile, X509 *pai, X509 *paa,
                        EVP_PKEY *pai_priv, struct hsmca_matter_issuer **out)
{
    struct hsmca_matter_issuer *is = NULL;
    struct hsmca_matter_verdict v;
    struct hsmca_matter_vidpid avp;
    const ASN1_OCTET_STRING *sk;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (dac_profile == NULL || dac_profile->type != HSMCA_PROFILE_DAC || pai == NULL ||
        paa == NULL || pai_priv == NULL || out == NULL)
        goto out;
    rc = HSMCA_E_NOMEM;
    is = calloc(1, sizeof(*is));
    if (is == NULL)
        goto out;
    pthread_mutex_init(&is->tlock, NULL);
    rc = check_format(pai, HSMCA_PROFILE_PAI, &v, &is->scope);
    if (rc != HSMCA_OK)
        goto out;
    rc = check_format(paa, HSMCA_PROFILE_PAA, &v, &avp);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_MATTER_VIDPID;
    if (!is->scope.has_vid || (avp.has_vid && avp.vid != is->scope.vid))
        goto out;
    rc = HSMCA_E_MATTER_PAA_NOT_FOUND;
    if (!same_octets(akid_of(pai), skid_of(paa)))
        goto out;
    rc = HSMCA_E_MATTER_CHAIN;
    if (X509_NAME_cmp(X509_get_issuer_name(pai), X509_get_subject_name(paa)) != 0 ||
        X509_verify(pai, X509_get0_pubkey(paa)) != 1)
        goto out;
    rc = HSMCA_E_MATTER_KEY_MISMATCH;
    if (signer_check(evp_signer, pai_priv, X509_get0_pubkey(pai)) != HSMCA_OK)
        goto out;
    rc = HSMCA_E_NOMEM;
    is->profile = *dac_profile;
    is->issuer = X509_NAME_dup(X509_get_subject_name(pai));
    is->vid_obj = OBJ_txt2obj("1.3.6.1.4.1.37244.2.1", 1);
    is->pid_obj = OBJ_txt2obj("1.3.6.1.4.1.37244.2.2", 1);
    if (is->issuer == NULL || is->vid_obj == NULL || is->pid_obj == NULL || X509_up_ref(pai) != 1)
        goto out;
    is->pai = pai;
    if (X509_up_ref(paa) != 1)
        goto out;
    is->paa = paa;
    rc = HSMCA_E_MATTER_CHAIN_VALIDITY;
    if (!time_of(X509_get0_notBefore(pai), &is->pai_not_before) ||
        !time_of(X509_get0_notAfter(pai), &is->pai_not_after) ||
        !time_of(X509_get0_notBefore(paa), &is->paa_not_before) ||
        !time_of(X509_get0_notAfter(paa), &is->paa_not_after))
        goto out;
    rc = HSMCA_E_NOMEM;
    sk = skid_of(pai);
    memcpy(is->pai_skid, ASN1_STRING_get0_data(sk), SKID_LEN);
    is->priv = pai_priv;
    is->sign = evp_signer;
    is->sign_arg = pai_priv;
    is->pai_pub = X509_get0_pubkey(pai);
    /* warm OpenSSL's lazy caches (decoded extensions, key) now, on the control path, so that
     * worker threads only read the shared PAI and PAA */
    (void)X509_get_extension_flags(pai);
    (void)X509_get_extension_flags(paa);
    (void)X509_get0_pubkey(paa);
    if (is->pai_pub == NULL)
        goto out;
    rc = make_marker(is);
    if (rc != HSMCA_OK)
        goto out;
    /* a PAI bound to one PID gets its DAC template now, so each DAC costs one token signature */
    if (is->scope.has_pid)
        (void)template_for(is, is->scope.pid, time(NULL));
    *out = is;
    is = NULL;
    rc = HSMCA_OK;
out:
    hsmca_matter_issuer_free(is);
    return rc;
}

X509 *
hsmca_matter_issuer_pai(const struct hsmca_matter_issuer *is)
{
    return is != NULL ? is->pai : NULL;
}

struct hsmca_matter_vidpid
hsmca_matter_issuer_scope(const struct hsmca_matter_issuer *is)
{
    struct hsmca_matter_vidpid none = {0, 0, 0, 0};

    return is != NULL ? is->scope : none;
}

/* ---------------------------------------------------------------- DAC */

/* One rule a DAC request breaks. */
struct problem {
    const char *rule;
    enum hsmca_err code;
    char detail[128];
};

#define MAX_PROBLEMS 8

struct plan {
    uint16_t pid;
    int pid_ok, key_ok;
    struct problem p[MAX_PROBLEMS];
    size_t n;
};

static void add_problem(struct plan *pl, const char *rule, enum hsmca_err code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

static void
add_problem(struct plan *pl, const char *rule, enum hsmca_err code, const char *fmt, ...)
{
    va_list ap;

    if (pl->n >= MAX_PROBLEMS)
        return;
    pl->p[pl->n].rule = rule;
    pl->p[pl->n].code = code;
    va_start(ap, fmt);
    vsnprintf(pl->p[pl->n].detail, sizeof(pl->p[pl->n].detail), fmt, ap);
    va_end(ap);
    pl->n++;
}

/* Every rule of the request itself (scope and validity; the CSR's own checks are csr.c's). */
static void
plan_dac(const struct hsmca_matter_issuer *is, const struct hsmca_csr *req, int pid_given,
         uint16_t pid, time_t now, struct plan *pl)
{
    time_t nb = now - (time_t)is->profile.backdate;

    memset(pl, 0, sizeof(*pl));
    /* PID: from the request, within the PAI's scope (2: PAI PID == DAC PID) */
    if (pid_given) {
        if (is->scope.has_pid && pid != is->scope.pid)
            add_problem(pl, "pai-pid-scope", HSMCA_E_MATTER_SCOPE,
                        "PID %04X requested but the PAI only covers PID %04X", pid, is->scope.pid);
        else if (pid == 0)
            add_problem(pl, "N11", HSMCA_E_MATTER_SCOPE, "PID 0000 means 'no PID'");
        else
            pl->pid_ok = 1;
        pl->pid = pid;
    } else if (is->scope.has_pid) {
        pl->pid = is->scope.pid;
        pl->pid_ok = 1;
    } else {
        add_problem(pl, "dac-pid", HSMCA_E_MATTER_SCOPE,
                    "the PAI covers every PID of its vendor: the request must name one");
    }
    /* C4: the DAC key is copied as encoded, so it must already be a 65-byte uncompressed point */
    if (req != NULL) {
        if (raw_p256(hsmca_csr_x509_pubkey(req), NULL) != 1)
            add_problem(pl, "C4", HSMCA_E_CSR_POINT_FORMAT,
                        "the CSR's P-256 key is not an uncompressed 65-byte point");
        else
            pl->key_ok = 1;
    }
    /* VID/PID the CSR carries in its subject must match the scope (docs/design.md) */
    if (req != NULL) {
        struct hsmca_matter_vidpid cvp;

        if (name_vidpid(hsmca_csr_subject(req), &cvp, NULL) != HSMCA_OK) {
            add_problem(pl, "csr-vidpid", HSMCA_E_MATTER_SCOPE,
                        "the CSR's subject carries a malformed VID or PID");
        } else {
            if (cvp.has_vid && cvp.vid != is->scope.vid)
                add_problem(pl, "csr-vid-scope", HSMCA_E_MATTER_SCOPE,
                            "the CSR names VID %04X but the PAI is for VID %04X", cvp.vid,
                            is->scope.vid);
            if (cvp.has_pid && (!pl->pid_ok || cvp.pid != pl->pid))
                add_problem(pl, "csr-pid-scope", HSMCA_E_MATTER_SCOPE,
                            "the CSR names PID %04X, not the PID being issued", cvp.pid);
        }
    }
    /* V3/V5: the DAC's notBefore must lie inside the PAI's and the PAA's validity (as valid_at,
     * in seconds read once from the certificates) */
    if (nb < is->pai_not_before || nb >= is->pai_not_after)
        add_problem(pl, "V3", HSMCA_E_MATTER_CHAIN_VALIDITY,
                    "the PAI is not valid at the DAC's notBefore");
    if (nb < is->paa_not_before || nb >= is->paa_not_after)
        add_problem(pl, "V3", HSMCA_E_MATTER_CHAIN_VALIDITY,
                    "the PAA is not valid at the DAC's notBefore");
}

/* The unsigned DAC for key pub (pl->pid_ok must hold). */
static enum hsmca_err
dac_tbs(const struct hsmca_matter_issuer *is, const X509_PUBKEY *pub, uint16_t pid, time_t now,
        const unsigned char *serial, X509 **out)
{
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    unsigned char skid[SKID_LEN];
    char cn[HSMCA_MATTER_CN_MAX + 1];
    enum hsmca_err rc = HSMCA_E_NOMEM;

    if (x == NULL)
        goto out;
    rc = hsmca_profile_cn(&is->profile, 1, is->scope.vid, 1, pid, cn, sizeof(cn));
    if (rc != HSMCA_OK)
        goto out;
    rc = make_name(is->vid_obj, is->pid_obj, cn, 1, is->scope.vid, 1, pid, &name);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_INVALID_ARG;
    if (!key_skid(pub, skid))
        goto out;
    rc = HSMCA_E_NOMEM;
    if (X509_set_version(x, X509_VERSION_3) != 1 || !set_serial(x, serial) ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, is->issuer) != 1 ||
        !set_validity(x, &is->profile, now) || !copy_pubkey(x, pub) ||
        !add_exts(x, &is->profile, skid, is->pai_skid))
        goto out;
    *out = x;
    x = NULL;
    rc = HSMCA_OK;
out:
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

/* ---------------------------------------------------------------- DAC templates (hot path) */

/*
 * Why templates: building a DAC through OpenSSL's X509 objects costs more than the token's
 * signature (names and extensions are copied, the TBS is encoded twice), and the result could not
 * be re-parsed for checking without OpenSSL 3.0 decoding its key again (about 250 us). Every DAC of
 * one PAI and PID has the same bytes but for five fields, so the first one per PID is built by the
 * full builder, signed in the token, and checked by the full validator (format, VID/PID, links,
 * signature); later DACs copy its TBSCertificate and patch serial, validity, key and SKID. Each
 * patched field is checked where it is made (plan_dac: key format and validity window; the serial
 * rule; the size limit), and a unit test shows a patched DAC equals, byte for byte, the one the
 * full builder makes from the same inputs.
 */

static enum hsmca_err
make_marker(struct hsmca_matter_issuer *is)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    unsigned char pt[65], *copy;
    size_t ptlen = 0;
    enum hsmca_err rc = HSMCA_E_NOMEM;

    if (k == NULL ||
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen) != 1 ||
        ptlen != 65 || pt[0] != 0x04)
        goto out;
    is->marker_key = X509_PUBKEY_new();
    copy = OPENSSL_memdup(pt, 65);
    if (is->marker_key == NULL || copy == NULL ||
        X509_PUBKEY_set0_param(is->marker_key, OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                               OBJ_nid2obj(NID_X9_62_prime256v1), copy, 65) != 1) {
        OPENSSL_free(copy);
        goto out;
    }
    SHA1(pt, 65, is->marker_skid);
    rc = HSMCA_OK;
out:
    EVP_PKEY_free(k);
    return rc;
}

/* The unique position of needle in hay, or 0 when it is absent or appears twice. */
static size_t
unique_at(const unsigned char *hay, size_t hay_len, const unsigned char *needle, size_t n)
{
    const unsigned char *a = memmem(hay, hay_len, needle, n), *b;

    if (a == NULL)
        return 0;
    b = memmem(a + 1, hay_len - (size_t)(a + 1 - hay), needle, n);
    return b == NULL ? (size_t)(a - hay) : 0;
}

/* Locate the variable fields of a signed DAC's TBSCertificate (see struct dac_template). */
static int
template_offsets(struct dac_template *t, const unsigned char *marker_pt,
                 const unsigned char *marker_skid)
{
    const unsigned char *p = t->tbs, *end = t->tbs + t->tbs_len, *v, *q, *tv;
    size_t vlen, tvlen;

    if (!hsmca_der_next(&p, end, 0x30, &v, &vlen, NULL, NULL) || p != end)
        return 0;
    p = v;
    end = v + vlen;
    if (!hsmca_der_next(&p, end, 0xa0, &v, &vlen, NULL, NULL) || /* version */
        !hsmca_der_next(&p, end, 0x02, &v, &vlen, NULL, NULL) || vlen != HSMCA_MATTER_SERIAL_LEN)
        return 0;
    t->off_serial = (size_t)(v - t->tbs);
    if (!hsmca_der_next(&p, end, 0x30, &v, &vlen, NULL, NULL) || /* signature algorithm */
        !hsmca_der_next(&p, end, 0x30, &v, &vlen, NULL, NULL) || /* issuer */
        !hsmca_der_next(&p, end, 0x30, &v, &vlen, NULL, NULL))   /* validity */
        return 0;
    q = v;
    if (q >= v + vlen)
        return 0;
    t->nb_tag = q[0];
    if (!hsmca_der_next(&q, v + vlen, t->nb_tag, &tv, &tvlen, NULL, NULL))
        return 0;
    t->off_nb = (size_t)(tv - t->tbs);
    t->nb_len = tvlen;
    if (q >= v + vlen)
        return 0;
    t->na_tag = q[0];
    if (!hsmca_der_next(&q, v + vlen, t->na_tag, &tv, &tvlen, NULL, NULL) || q != v + vlen)
        return 0;
    t->off_na = (size_t)(tv - t->tbs);
    t->na_len = tvlen;
    t->off_key = unique_at(t->tbs, t->tbs_len, marker_pt, 65);
    t->off_skid = unique_at(t->tbs, t->tbs_len, marker_skid, SKID_LEN);
    return t->off_key != 0 && t->off_skid != 0 && t->off_serial != 0;
}

/* Make, fully check and publish the template for pid; NULL if it cannot be made. */
static const struct dac_template *
make_template(struct hsmca_matter_issuer *is, uint16_t pid, time_t now)
{
    static const unsigned char marker_serial[HSMCA_MATTER_SERIAL_LEN] = {
        0x5a, 0xc3, 0x11, 0x7e, 0x42, 0x99, 0x0d, 0x63,
        0xa5, 0x3c, 0x71, 0x18, 0xe4, 0x2f, 0x86, 0x0b};
    struct dac_template *t = NULL;
    struct hsmca_matter_verdict v;
    struct hsmca_matter_vidpid dvp;
    const unsigned char *pt = NULL;
    unsigned char *tbs = NULL;
    X509 *x = NULL;
    int n;

    if (raw_p256(is->marker_key, &pt) != 1 ||
        dac_tbs(is, is->marker_key, pid, now, marker_serial, &x) != HSMCA_OK)
        goto out;
    if (X509_sign(x, is->priv, EVP_sha256()) <= 0)
        goto out;
    /* the full validator, signature included, on the template DAC */
    if (check_format(x, HSMCA_PROFILE_DAC, &v, &dvp) != HSMCA_OK || !dvp.has_vid || !dvp.has_pid ||
        dvp.vid != is->scope.vid || dvp.pid != pid ||
        check_links(x, is->pai, is->paa, 1, &v) != HSMCA_OK)
        goto out;
    n = i2d_re_X509_tbs(x, &tbs);
    t = calloc(1, sizeof(*t));
    if (n <= 0 || t == NULL || (size_t)n > sizeof(t->tbs))
        goto fail;
    memcpy(t->tbs, tbs, (size_t)n);
    t->tbs_len = (size_t)n;
    t->pid = pid;
    if (!template_offsets(t, pt, is->marker_skid) ||
        memcmp(t->tbs + t->off_serial, marker_serial, sizeof(marker_serial)) != 0)
        goto fail;
    goto out;
fail:
    free(t);
    t = NULL;
out:
    OPENSSL_free(tbs);
    X509_free(x);
    return t;
}

static const struct dac_template *
find_template(const struct hsmca_matter_issuer *is, uint16_t pid, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (is->tmpl[i]->pid == pid)
            return is->tmpl[i];
    }
    return NULL;
}

/*
 * The template for pid, made on first use; NULL when none can be made (the caller goes slow).
 * Finding one takes no lock: nothing on the DAC hot path but the token serialises signers.
 */
static const struct dac_template *
template_for(const struct hsmca_matter_issuer *cis, uint16_t pid, time_t now)
{
    struct hsmca_matter_issuer *is = (struct hsmca_matter_issuer *)cis; /* the cache only */
    const struct dac_template *t =
        find_template(is, pid, atomic_load_explicit(&is->ntmpl, memory_order_acquire));
    unsigned n;

    if (t != NULL)
        return t;
    pthread_mutex_lock(&is->tlock);
    n = atomic_load_explicit(&is->ntmpl, memory_order_relaxed);
    t = find_template(is, pid, n); /* another thread may have made it meanwhile */
    if (t == NULL && n < DAC_TEMPLATES) {
        struct dac_template *m = (struct dac_template *)make_template(is, pid, now);

        if (m != NULL) {
            is->tmpl[n] = m;
            atomic_store_explicit(&is->ntmpl, n + 1, memory_order_release);
        }
        t = m;
    }
    pthread_mutex_unlock(&is->tlock);
    return t;
}

unsigned
hsmca_matter_issuer_templates(const struct hsmca_matter_issuer *is)
{
    return is != NULL ? atomic_load_explicit(&is->ntmpl, memory_order_acquire) : 0;
}

/* Encode t (UTC) as the same ASN.1 time type X509_time_adj_ex picks; 0 if not tag/len. */
static int
time_bytes(time_t when, int days, unsigned char tag, size_t len, unsigned char *out)
{
    ASN1_TIME *a = X509_time_adj_ex(NULL, days, days ? -1 : 0, &when);
    int ok = a != NULL &&
             (unsigned char)(ASN1_STRING_type(a) == V_ASN1_UTCTIME ? 0x17 : 0x18) == tag &&
             (size_t)ASN1_STRING_length(a) == len;

    if (ok)
        memcpy(out, ASN1_STRING_get0_data(a), len);
    ASN1_TIME_free(a);
    return ok;
}

/* DER length bytes (minimal) of n into out; returns how many. n < 65536. */
static size_t
der_len_bytes(size_t n, unsigned char *out)
{
    if (n < 0x80) {
        out[0] = (unsigned char)n;
        return 1;
    }
    if (n < 0x100) {
        out[0] = 0x81;
        out[1] = (unsigned char)n;
        return 2;
    }
    out[0] = 0x82;
    out[1] = (unsigned char)(n >> 8);
    out[2] = (unsigned char)n;
    return 3;
}

/*
 * The hot path: copy the template, patch the five fields, sign the digest in the token, wrap.
 * Returns HSMCA_E_NOT_FOUND when this request needs the full builder (no template, or validity
 * times whose ASN.1 type differs from the template's).
 */
static enum hsmca_err
dac_build_fast(const struct hsmca_matter_issuer *is, const struct plan *pl,
               const struct hsmca_csr *csr, time_t now, const unsigned char *serial, unsigned flags,
               unsigned char **der_out, size_t *der_len)
{
    static const unsigned char sigalg[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                           0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
    const struct dac_template *t = template_for(is, pl->pid, now);
    unsigned char tbs[HSMCA_MATTER_CERT_MAX], dgst[32], sig[HSMCA_ECDSA_P256_DER_MAX + 8];
    const unsigned char *pt = NULL;
    time_t nb = now - (time_t)is->profile.backdate;
    size_t siglen = sizeof(sig), body, total, o = 0;
    unsigned char hdr[4], *der;

    if (t == NULL)
        return HSMCA_E_NOT_FOUND;
    memcpy(tbs, t->tbs, t->tbs_len);
    if (!time_bytes(nb, 0, t->nb_tag, t->nb_len, tbs + t->off_nb))
        return HSMCA_E_NOT_FOUND;
    if (!is->profile.no_expiry &&
        !time_bytes(nb, (int)is->profile.days, t->na_tag, t->na_len, tbs + t->off_na))
        return HSMCA_E_NOT_FOUND;
    if (raw_p256(hsmca_csr_x509_pubkey(csr), &pt) != 1)
        return HSMCA_E_MATTER_SELF_CHECK; /* plan_dac refused this already */
    memcpy(tbs + t->off_serial, serial, HSMCA_MATTER_SERIAL_LEN);
    memcpy(tbs + t->off_key, pt, 65);
    SHA1(pt, 65, tbs + t->off_skid);
    SHA256(tbs, t->tbs_len, dgst);

    if (is->sign(is->sign_arg, dgst, sig, sizeof(sig), &siglen) != HSMCA_OK ||
        siglen > HSMCA_ECDSA_P256_DER_MAX)
        return HSMCA_E_SIGN_FAILED;
    if ((flags & HSMCA_MATTER_VERIFY_SIGNATURE) != 0 &&
        !digest_verifies(is->pai_pub, sig, siglen, dgst))
        return HSMCA_E_MATTER_SELF_CHECK;
    /* Certificate ::= SEQUENCE { tbs, signatureAlgorithm, BIT STRING { 0 unused, sig } } */
    body = t->tbs_len + sizeof(sigalg) + 2 + 1 + siglen;
    total = 1 + der_len_bytes(body, hdr) + body;
    if (total > HSMCA_MATTER_CERT_MAX)
        return HSMCA_E_MATTER_SELF_CHECK; /* C13 */
    der = OPENSSL_malloc(total);
    if (der == NULL)
        return HSMCA_E_NOMEM;
    der[o++] = 0x30;
    memcpy(der + o, hdr, der_len_bytes(body, hdr));
    o += der_len_bytes(body, hdr);
    memcpy(der + o, tbs, t->tbs_len);
    o += t->tbs_len;
    memcpy(der + o, sigalg, sizeof(sigalg));
    o += sizeof(sigalg);
    der[o++] = 0x03;
    der[o++] = (unsigned char)(siglen + 1);
    der[o++] = 0x00;
    memcpy(der + o, sig, siglen);
    *der_out = der;
    *der_len = total;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_matter_dac_build(const struct hsmca_matter_issuer *is,
                       const struct hsmca_matter_dac_request *r, unsigned flags,
                       unsigned char *serial_out, unsigned char **der_out, size_t *der_len)
{
    struct plan pl;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    struct hsmca_matter_verdict v;
    struct hsmca_matter_vidpid dvp;
    unsigned char *der = NULL;
    size_t len = 0;
    X509 *x = NULL, *y = NULL;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (is == NULL || r == NULL || r->csr == NULL || serial_out == NULL || der_out == NULL ||
        der_len == NULL)
        goto out;
    if (hsmca_csr_x509_pubkey(r->csr) == NULL)
        goto out;
    plan_dac(is, r->csr, r->pid_given, r->pid, r->now, &pl);
    if (pl.n > 0) {
        rc = pl.p[0].code;
        goto out;
    }
    if ((flags & HSMCA_MATTER_SERIAL_IN) != 0) {
        rc = HSMCA_E_INVALID_ARG;
        if (serial_out[0] == 0 || serial_out[0] > 0x7F)
            goto out; /* positive, minimal: the rule make_serial keeps */
        memcpy(serial, serial_out, sizeof(serial));
    } else {
        rc = make_serial(serial);
        if (rc != HSMCA_OK)
            goto out;
    }
    if ((flags & HSMCA_MATTER_FULL_BUILD) == 0) {
        rc = dac_build_fast(is, &pl, r->csr, r->now, serial, flags, der_out, der_len);
        if (rc != HSMCA_E_NOT_FOUND) {
            if (rc == HSMCA_OK)
                memcpy(serial_out, serial, sizeof(serial));
            goto out;
        }
    }
    rc = dac_tbs(is, hsmca_csr_x509_pubkey(r->csr), pl.pid, r->now, serial, &x);
    if (rc != HSMCA_OK)
        goto out;
    /* sign in the token; the checks below run on the signed object whose encoding is released
     * (no d2i round trip: OpenSSL 3 would decode the key again, which costs more than the sign) */
    rc = HSMCA_E_SIGN_FAILED;
    if (X509_sign(x, is->priv, EVP_sha256()) <= 0)
        goto out;
    rc = HSMCA_E_NOMEM;
    {
        int n = i2d_X509(x, &der);

        if (n <= 0)
            goto out;
        len = (size_t)n;
    }
    y = x;
    x = NULL;
    /* the validator's rules on what was just signed: format, VID/PID, links, times */
    rc = HSMCA_E_MATTER_SELF_CHECK;
    if (check_format(y, HSMCA_PROFILE_DAC, &v, &dvp) != HSMCA_OK || !dvp.has_vid || !dvp.has_pid ||
        dvp.vid != is->scope.vid || (is->scope.has_pid && dvp.pid != is->scope.pid))
        goto out;
    if (check_links(y, is->pai, is->paa, 0, &v) != HSMCA_OK)
        goto out;
    if ((flags & HSMCA_MATTER_VERIFY_SIGNATURE) != 0 && X509_verify(y, is->pai_pub) != 1)
        goto out;
    memcpy(serial_out, serial, sizeof(serial));
    *der_out = der;
    *der_len = len;
    der = NULL;
    rc = HSMCA_OK;
out:
    OPENSSL_free(der);
    X509_free(y);
    X509_free(x);
    return rc;
}

static json_t *
time_json(const ASN1_TIME *t)
{
    char buf[32];
    int n = ASN1_STRING_length(t);

    if (n <= 0 || (size_t)n >= sizeof(buf))
        return json_null();
    memcpy(buf, ASN1_STRING_get0_data(t), (size_t)n);
    buf[n] = '\0';
    return json_string(buf);
}

static json_t *
name_json(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    long len;
    json_t *j = NULL;

    if (b == NULL)
        return NULL;
    if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
        len = BIO_get_mem_data(b, &p);
        j = json_stringn(p, (size_t)len);
    }
    BIO_free(b);
    return j;
}

enum hsmca_err
hsmca_matter_dac_lint(const struct hsmca_matter_issuer *is, const unsigned char *csr,
                      size_t csr_len, int pid_given, uint16_t pid, time_t now, json_t **out)
{
    struct hsmca_csr *c = NULL;
    struct plan pl;
    X509 *x = NULL;
    json_t *root = NULL, *probs = NULL, *dac = NULL, *exts = NULL;
    unsigned char zero[HSMCA_MATTER_SERIAL_LEN];
    enum hsmca_err crc, rc = HSMCA_E_INVALID_ARG;
    size_t i;

    if (is == NULL || csr == NULL || out == NULL)
        goto out;
    rc = HSMCA_E_NOMEM;
    crc = hsmca_csr_parse(csr, csr_len, &c);
    plan_dac(is, c, pid_given, pid, now, &pl);
    probs = json_array();
    if (probs == NULL)
        goto out;
    if (crc != HSMCA_OK &&
        json_array_append_new(probs,
                              json_pack("{s:s, s:s, s:s}", "rule", "csr", "code",
                                        hsmca_err_code(crc), "detail", hsmca_err_title(crc))) != 0)
        goto out;
    for (i = 0; i < pl.n; i++) {
        if (json_array_append_new(probs, json_pack("{s:s, s:s, s:s}", "rule", pl.p[i].rule, "code",
                                                   hsmca_err_code(pl.p[i].code), "detail",
                                                   pl.p[i].detail)) != 0)
            goto out;
    }
    if (c != NULL && pl.pid_ok && pl.key_ok) {
        memset(zero, 0x7F, sizeof(zero));
        rc = dac_tbs(is, hsmca_csr_x509_pubkey(c), pl.pid, now, zero, &x);
        if (rc != HSMCA_OK)
            goto out;
        rc = HSMCA_E_NOMEM;
        exts = json_pack("[{s:s, s:b, s:s}, {s:s, s:b, s:s}, {s:s, s:b}, {s:s, s:b}]", "name",
                         "basicConstraints", "critical", 1, "value", "CA:FALSE", "name", "keyUsage",
                         "critical", 1, "value", "digitalSignature", "name", "subjectKeyIdentifier",
                         "critical", 0, "name", "authorityKeyIdentifier", "critical", 0);
        dac = json_pack("{s:o, s:o, s:s, s:s, s:o, s:o, s:s, s:o}", "subject",
                        name_json(X509_get_subject_name(x)), "issuer", name_json(is->issuer), "vid",
                        "", "pid", "", "not_before", time_json(X509_get0_notBefore(x)), "not_after",
                        time_json(X509_get0_notAfter(x)), "serial",
                        "16 random bytes, top bit clear", "extensions", exts);
        exts = NULL;
        if (dac == NULL)
            goto out;
        {
            char hex[5];

            snprintf(hex, sizeof(hex), "%04X", (unsigned)is->scope.vid);
            json_object_set_new(dac, "vid", json_string(hex));
            snprintf(hex, sizeof(hex), "%04X", (unsigned)pl.pid);
            json_object_set_new(dac, "pid", json_string(hex));
        }
    } else {
        dac = json_null();
    }
    root = json_pack("{s:b, s:o, s:o}", "ok", json_array_size(probs) == 0, "dac", dac, "problems",
                     probs);
    dac = NULL;
    probs = NULL;
    if (root == NULL)
        goto out;
    *out = root;
    root = NULL;
    rc = HSMCA_OK;
out:
    json_decref(exts);
    json_decref(dac);
    json_decref(probs);
    json_decref(root);
    X509_free(x);
    hsmca_csr_free(c);
    return rc;
}
