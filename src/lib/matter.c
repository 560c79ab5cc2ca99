/* SPDX-License-Identifier: Apache-2.0
 *
 * matter.c -- the Matter attestation rules (docs/matter-rules.md) in code: format checks per
 * certificate type, VID/PID extraction with the legacy CN encoding, the DAC -> PAI -> PAA chain
 * verdicts of a commissioner, and the PAA/PAI/DAC builders that sign through token-backed keys
 * and validate every certificate before releasing it. Owns the per-PAI issuer context. Never
 * copies a subject from a CSR; never relies on X509_verify_cert alone.
 *
 * This file holds the checks (verdicts, parsing, VID/PID, format, chain); matter_build.c the
 * builders, matter_issuer.c the issuer context, matter_dac.c the DAC plan and templates; they
 * share matter_internal.h.
 */
#include "matter_internal.h"

/* DER of the Matter VID / PID attribute types (N1, N2), without tag and length. */
static const unsigned char oid_vid[] = {0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0xA2, 0x7C, 0x02, 0x01};
static const unsigned char oid_pid[] = {0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0xA2, 0x7C, 0x02, 0x02};

/* ---------------------------------------------------------------- verdicts */

enum hsmca_err
mt_fail(struct hsmca_matter_verdict *v, enum hsmca_err code, const char *rule, const char *cert,
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

enum hsmca_err
hsmca_matter_get_vidpid(X509 *x, struct hsmca_matter_vidpid *out, struct hsmca_matter_verdict *v)
{
    if (x == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return mt_name_vidpid(X509_get_subject_name(x), out, v);
}

/* VID/PID of a subject name (hsmca_matter_get_vidpid; plan_dac reads a CSR's subject with it). */
enum hsmca_err
mt_name_vidpid(const X509_NAME *n, struct hsmca_matter_vidpid *out, struct hsmca_matter_verdict *v)
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
                return mt_fail(v, HSMCA_E_MATTER_DN, "N3", "", 0,
                               "the Matter %s attribute is not 4 uppercase hex digits",
                               is_vid ? "VID" : "PID");
            if (is_vid ? oid.has_vid : oid.has_pid)
                return mt_fail(v, HSMCA_E_MATTER_DN, "N5", "", 0,
                               "the subject carries two Matter %s attributes",
                               is_vid ? "VID" : "PID");
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
                return mt_fail(
                    v, HSMCA_E_MATTER_DN, "N9", "", 0,
                    "the common name has 'Mvid:' not followed by 4 uppercase hex digits");
            if (r > 0) {
                cn.has_vid = 1;
                cn.vid = val;
            }
            r = find_after_prefix(s, len, "Mpid:", &val);
            if (r < 0)
                return mt_fail(
                    v, HSMCA_E_MATTER_DN, "N9", "", 0,
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
int
mt_raw_p256(const X509_PUBKEY *xp, const unsigned char **pt)
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
const ASN1_OCTET_STRING *
mt_skid_of(X509 *x)
{
    return X509_get0_subject_key_id(x);
}

const ASN1_OCTET_STRING *
mt_akid_of(X509 *x)
{
    return X509_get0_authority_key_id(x);
}

/* The checks of VerifyAttestationCertificateFormat plus C12, C13 and the subject rules. */
enum hsmca_err
mt_check_format(X509 *x, enum hsmca_profile_type t, struct hsmca_matter_verdict *v,
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
        return mt_fail(v, HSMCA_E_MATTER_CERT_MALFORMED, "C13", c, chip, "cannot encode");
    if (der_len > HSMCA_MATTER_CERT_MAX)
        return mt_fail(v, HSMCA_E_MATTER_CERT_TOO_LARGE, "C13", c, chip,
                       "the %s is %d bytes of DER; the limit is %d", c, der_len,
                       HSMCA_MATTER_CERT_MAX);
    if (X509_get_version(x) != X509_VERSION_3)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C1", c, chip,
                       "the %s is not an X.509 v3 "
                       "certificate",
                       c);
    if (X509_get_signature_nid(x) != NID_ecdsa_with_SHA256)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C2", c, chip,
                       "the %s is not signed with ecdsa-with-SHA256", c);
    pk = mt_raw_p256(X509_get_X509_PUBKEY(x), NULL);
    if (pk == 0)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C3", c, chip, "the %s's key is not EC P-256", c);
    if (pk == 2)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C4", c, chip,
                       "the %s's key does not encode as a 65-byte uncompressed point", c);
    if (X509_get0_serialNumber(x) == NULL)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C5", c, chip, "no serial number");
    if (X509_get_issuer_name(x) == NULL || X509_get_subject_name(x) == NULL ||
        X509_get0_notBefore(x) == NULL || X509_get0_notAfter(x) == NULL)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C6", c, chip,
                       "issuer, subject or validity absent");
    flags = X509_get_extension_flags(x); /* also caches the decoded extensions */
    n = X509_get_ext_count(x);
    /* C12: an extension of any kind present twice (OpenSSL then refuses the whole chain) */
    for (i = 0; i < n; i++) {
        const ASN1_OBJECT *o = X509_EXTENSION_get_object(X509_get_ext(x, i));

        if (X509_get_ext_by_OBJ(x, o, i) != -1)
            return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C12", c, chip,
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
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C7", c, chip,
                               "basicConstraints must be critical and present once");
            bc = 1;
            b = X509V3_EXT_d2i(e);
            if (b == NULL)
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C7", c, chip,
                               "basicConstraints does not decode");
            ca = b->ca != 0;
            has_path = b->pathlen != NULL;
            if (has_path)
                path = ASN1_INTEGER_get(b->pathlen);
            BASIC_CONSTRAINTS_free(b);
            if (t == HSMCA_PROFILE_DAC && (ca || has_path))
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, ca ? "dac-basic-ca" : "dac-pathlen", c,
                               chip, "a DAC is not a CA and carries no pathLen");
            if (t == HSMCA_PROFILE_PAI && (!ca || !has_path || path != 0))
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, !ca ? "pai-basic-ca" : "pai-pathlen", c,
                               chip, "a PAI is a CA with pathLen exactly 0");
            if (t == HSMCA_PROFILE_PAA && (!ca || (has_path && path != 1)))
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, !ca ? "paa-basic-ca" : "paa-pathlen", c,
                               chip, "a PAA is a CA with pathLen absent or 1");
            break;
        }
        case NID_key_usage: {
            uint32_t k;

            if (!crit || ku)
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C8", c, chip,
                               "keyUsage must be critical and present once");
            ku = 1;
            k = X509_get_key_usage(x);
            if (t == HSMCA_PROFILE_DAC && k != KU_DIGITAL_SIGNATURE)
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, "dac-key-usage", c, chip,
                               "a DAC's key usage is exactly digitalSignature");
            if (t != HSMCA_PROFILE_DAC &&
                ((k & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != (KU_KEY_CERT_SIGN | KU_CRL_SIGN) ||
                 (k & ~(uint32_t)(KU_KEY_CERT_SIGN | KU_CRL_SIGN | KU_DIGITAL_SIGNATURE)) != 0))
                return mt_fail(v, HSMCA_E_MATTER_FORMAT,
                               t == HSMCA_PROFILE_PAA ? "paa-key-usage" : "pai-key-usage", c, chip,
                               "a CA's key usage is keyCertSign and cRLSign (and at most "
                               "digitalSignature)");
            break;
        }
        case NID_subject_key_identifier: {
            const ASN1_OCTET_STRING *s = mt_skid_of(x);

            if (crit || skid || s == NULL || ASN1_STRING_length(s) != SKID_LEN)
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C9", c, chip,
                               "subjectKeyIdentifier must be non-critical, once, 20 bytes");
            skid = 1;
            break;
        }
        case NID_authority_key_identifier: {
            const ASN1_OCTET_STRING *a = mt_akid_of(x);

            if (crit || akid || a == NULL || ASN1_STRING_length(a) != SKID_LEN)
                return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C10", c, chip,
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
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C7", c, chip, "basicConstraints is missing");
    if (!ku)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C8", c, chip, "keyUsage is missing");
    if (!skid)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C9", c, chip, "subjectKeyIdentifier is missing");
    if (!akid && t != HSMCA_PROFILE_PAA)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C10", c, chip,
                       "authorityKeyIdentifier is missing");
    /* C12: duplicate extensions of any kind (OpenSSL marks the certificate invalid) */
    if ((flags & EXFLAG_INVALID) != 0)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "C12", c, chip,
                       "the %s has a duplicate or undecodable extension", c);
    rc = hsmca_matter_get_vidpid(x, &vp, v);
    if (rc != HSMCA_OK) {
        v->cert = c;
        v->chip = chip;
        return rc;
    }
    if (t == HSMCA_PROFILE_PAA && vp.has_pid)
        return mt_fail(v, HSMCA_E_MATTER_FORMAT, "paa-pid", c, HSMCA_CHIP_PAA_FORMAT_INVALID,
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
    rc = mt_check_format(x, t, v, NULL);
    if (rc == HSMCA_OK)
        ok_verdict(v);
    return rc;
}

/* ---------------------------------------------------------------- chain (section 4) */

int
mt_same_octets(const ASN1_OCTET_STRING *a, const ASN1_OCTET_STRING *b)
{
    return a != NULL && b != NULL && ASN1_STRING_cmp(a, b) == 0;
}

/* An ASN1_TIME in seconds since 1970; 0 if it does not convert. */
int
mt_time_of(const ASN1_TIME *a, time_t *out)
{
    struct tm tm;

    if (a == NULL || ASN1_TIME_to_tm(a, &tm) != 1)
        return 0;
    *out = timegm(&tm);
    return 1;
}

/* V3: issuer valid at t (the DAC's notBefore), with OpenSSL's semantics: not after notAfter,
 * not before notBefore. */
int
mt_valid_at(X509 *issuer, const ASN1_TIME *t)
{
    return ASN1_TIME_compare(X509_get0_notBefore(issuer), t) <= 0 &&
           ASN1_TIME_compare(X509_get0_notAfter(issuer), t) > 0;
}

/* Names, AKID links and V3 of DAC->PAI->PAA; signatures only when sigs. */
enum hsmca_err
mt_check_links(X509 *dac, X509 *pai, X509 *paa, int sigs, struct hsmca_matter_verdict *v)
{
    const ASN1_TIME *t = X509_get0_notBefore(dac);

    if (X509_NAME_cmp(X509_get_issuer_name(dac), X509_get_subject_name(pai)) != 0 ||
        !mt_same_octets(mt_akid_of(dac), mt_skid_of(pai)))
        return mt_fail(v, HSMCA_E_MATTER_CHAIN, "V9", "dac", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                       "the DAC's issuer name or AKID is not the PAI's subject or SKID");
    if (X509_NAME_cmp(X509_get_issuer_name(pai), X509_get_subject_name(paa)) != 0)
        return mt_fail(v, HSMCA_E_MATTER_CHAIN, "V9", "pai", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                       "the PAI's issuer name is not the PAA's subject");
    if (!mt_valid_at(paa, t))
        return mt_fail(v, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3", "paa",
                       HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                       "the PAA was not valid at the DAC's notBefore");
    if (!mt_valid_at(pai, t))
        return mt_fail(v, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3", "pai",
                       HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                       "the PAI was not valid at the DAC's notBefore");
    if (ASN1_TIME_compare(X509_get0_notAfter(dac), t) <= 0)
        return mt_fail(v, HSMCA_E_MATTER_CHAIN_VALIDITY, "V3", "dac",
                       HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                       "the DAC's notAfter is not after its notBefore");
    if (sigs) {
        if (X509_verify(pai, X509_get0_pubkey(paa)) != 1)
            return mt_fail(v, HSMCA_E_MATTER_CHAIN, "V9", "pai", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
                           "the PAI's signature does not verify with the PAA's key");
        if (X509_verify(dac, X509_get0_pubkey(pai)) != 1)
            return mt_fail(v, HSMCA_E_MATTER_CHAIN, "V9", "dac", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
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
        rc = mt_fail(v, HSMCA_E_MATTER_FORMAT, "C6", "dac", HSMCA_CHIP_DAC_FORMAT_INVALID,
                     "the DAC's notBefore does not decode");
        goto out;
    }
    t = timegm(&tm);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), t);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
    ok = X509_verify_cert(ctx);
    err = X509_STORE_CTX_get_error(ctx);
    if (ok != 1) {
        rc = mt_fail(v, HSMCA_E_MATTER_CHAIN, "V6", "chain", HSMCA_CHIP_DAC_SIGNATURE_INVALID,
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
        return mt_fail(v, HSMCA_E_MATTER_PAI_MISSING, "V1", "pai", HSMCA_CHIP_PAI_MISSING,
                       "a DAC is only accepted with its PAI");
    /* [VER] order: PAI format, DAC format, VID/PID, PAA lookup, PAA VID/PID, time, chain */
    rc = mt_check_format(pai, HSMCA_PROFILE_PAI, v, &ivp);
    if (rc != HSMCA_OK)
        return rc;
    rc = mt_check_format(dac, HSMCA_PROFILE_DAC, v, &dvp);
    if (rc != HSMCA_OK)
        return rc;
    if (!dvp.has_vid || !ivp.has_vid || dvp.vid != ivp.vid)
        return mt_fail(v, HSMCA_E_MATTER_VIDPID, !ivp.has_vid ? "pai-vid" : "dac-vid", "dac",
                       HSMCA_CHIP_DAC_VENDOR_ID_MISMATCH,
                       "the DAC and the PAI must carry the same VID (DAC %s%04X, PAI %s%04X)",
                       dvp.has_vid ? "" : "none/", dvp.vid, ivp.has_vid ? "" : "none/", ivp.vid);
    if (!dvp.has_pid)
        return mt_fail(v, HSMCA_E_MATTER_VIDPID, "dac-pid", "dac",
                       HSMCA_CHIP_DAC_PRODUCT_ID_MISMATCH, "the DAC carries no PID");
    if (ivp.has_pid && ivp.pid != dvp.pid)
        return mt_fail(v, HSMCA_E_MATTER_VIDPID, "pai-pid-scope", "dac",
                       HSMCA_CHIP_DAC_PRODUCT_ID_MISMATCH,
                       "the DAC's PID %04X is not the PAI's PID %04X", dvp.pid, ivp.pid);
    if (paa == NULL || !mt_same_octets(mt_akid_of(pai), mt_skid_of(paa)))
        return mt_fail(v, HSMCA_E_MATTER_PAA_NOT_FOUND, "V2", "paa", HSMCA_CHIP_PAA_NOT_FOUND,
                       "no trusted PAA has the PAI's AKID as its SKID");
    rc = mt_check_format(paa, HSMCA_PROFILE_PAA, v, &avp);
    if (rc != HSMCA_OK)
        return rc;
    if (avp.has_vid && avp.vid != ivp.vid)
        return mt_fail(v, HSMCA_E_MATTER_VIDPID, "paa-vid", "pai",
                       HSMCA_CHIP_PAI_VENDOR_ID_MISMATCH,
                       "the PAI's VID %04X is not the PAA's VID %04X", ivp.vid, avp.vid);
    if (expect != NULL && expect->has_vid && expect->vid != dvp.vid)
        return mt_fail(v, HSMCA_E_MATTER_EXPECTED_VIDPID, "basic-info-vid", "dac",
                       HSMCA_CHIP_DAC_VENDOR_ID_MISMATCH,
                       "the DAC's VID %04X is not the device's reported VID %04X", dvp.vid,
                       expect->vid);
    if (expect != NULL && expect->has_pid && expect->pid != dvp.pid)
        return mt_fail(v, HSMCA_E_MATTER_EXPECTED_VIDPID, "basic-info-pid", "dac",
                       HSMCA_CHIP_DAC_PRODUCT_ID_MISMATCH,
                       "the DAC's PID %04X is not the device's reported PID %04X", dvp.pid,
                       expect->pid);
    /* V4: the DAC, and only the DAC, is judged at the current time */
    if (X509_cmp_time(X509_get0_notBefore(dac), &now) != -1 ||
        X509_cmp_time(X509_get0_notAfter(dac), &now) != 1)
        return mt_fail(v, HSMCA_E_MATTER_DAC_VALIDITY, "V4", "dac", HSMCA_CHIP_DAC_EXPIRED,
                       "the DAC is not valid at the current time");
    rc = mt_check_links(dac, pai, paa, 1, v);
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
        rc = mt_fail(v, rc, "der", "dac", HSMCA_CHIP_DAC_FORMAT_INVALID,
                     "the DAC is not one DER or PEM certificate");
        goto out;
    }
    if (pai != NULL) {
        rc = hsmca_matter_cert_parse(pai, pai_len, &i);
        if (rc != HSMCA_OK) {
            rc = mt_fail(v, rc, "der", "pai", HSMCA_CHIP_PAI_FORMAT_INVALID,
                         "the PAI is not one DER or PEM certificate");
            goto out;
        }
    }
    if (paa != NULL) {
        rc = hsmca_matter_cert_parse(paa, paa_len, &a);
        if (rc != HSMCA_OK) {
            rc = mt_fail(v, rc, "der", "paa", HSMCA_CHIP_PAA_FORMAT_INVALID,
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
