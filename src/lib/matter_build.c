/* SPDX-License-Identifier: Apache-2.0
 *
 * matter_build.c -- building Matter certificates: serials, extensions, names, validity, and the
 * PAA/PAI builders that sign through a token-backed key and re-parse what they signed.
 */
#include "hsmca/matter_tbs.h"
#include "hsmca/sizes.h"

#include "matter_internal.h"

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

enum hsmca_err
mt_make_serial(unsigned char *s)
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
int
mt_add_exts(X509 *x, const struct hsmca_profile *p, const unsigned char *skid,
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
int
mt_key_skid(const X509_PUBKEY *xp, unsigned char *out)
{
    const unsigned char *pt = NULL;

    if (mt_raw_p256(xp, &pt) != 1)
        return 0;
    SHA1(pt, 65, out);
    return 1;
}

/* Copy the key of xp into x as encoded (no decode / encode round trip). */
int
mt_copy_pubkey(X509 *x, const X509_PUBKEY *xp)
{
    const unsigned char *pt = NULL;
    unsigned char *copy;

    if (mt_raw_p256(xp, &pt) != 1)
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
enum hsmca_err
mt_make_name(const ASN1_OBJECT *vid_obj, const ASN1_OBJECT *pid_obj, const char *cn, int has_vid,
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

int
mt_set_validity(X509 *x, const struct hsmca_profile *p, time_t now)
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

int
mt_set_serial(X509 *x, const unsigned char *s)
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

/*
 * The unsigned certificate of a PAA (parent NULL) or PAI for pub with profile p, subject s, valid
 * from now - p->backdate, serial (16 bytes). On HSMCA_OK *out (X509_free) has every field but the
 * signature.
 */
enum hsmca_err
mt_ca_tbs(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s, EVP_PKEY *pub,
          X509 *parent, time_t now, const unsigned char *serial, X509 **out)
{
    ASN1_OBJECT *vid_obj = NULL, *pid_obj = NULL;
    X509_NAME *name = NULL;
    X509 *x = NULL;
    unsigned char skid[SKID_LEN];
    const ASN1_OCTET_STRING *pskid = NULL;
    char cn[HSMCA_MATTER_CN_MAX + 1];
    struct hsmca_matter_verdict v;
    enum hsmca_profile_type want = parent == NULL ? HSMCA_PROFILE_PAA : HSMCA_PROFILE_PAI;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (p == NULL || s == NULL || pub == NULL || out == NULL || serial == NULL || p->type != want)
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

        rc = mt_check_format(parent, HSMCA_PROFILE_PAA, &v, &avp);
        if (rc != HSMCA_OK)
            goto out;
        rc = HSMCA_E_MATTER_SCOPE;
        if (avp.has_vid && avp.vid != s->vid)
            goto out; /* paa-vid */
        pskid = mt_skid_of(parent);
    }
    rc = HSMCA_E_NOMEM;
    vid_obj = OBJ_txt2obj("1.3.6.1.4.1.37244.2.1", 1);
    pid_obj = OBJ_txt2obj("1.3.6.1.4.1.37244.2.2", 1);
    x = X509_new();
    if (vid_obj == NULL || pid_obj == NULL || x == NULL)
        goto out;
    rc = mt_make_name(vid_obj, pid_obj, cn, s->has_vid, s->vid, s->has_pid, s->pid, &name);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_NOMEM;
    if (X509_set_version(x, X509_VERSION_3) != 1 || !mt_set_serial(x, serial) ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, parent != NULL ? X509_get_subject_name(parent) : name) != 1 ||
        !mt_set_validity(x, p, now) || X509_set_pubkey(x, pub) != 1)
        goto out;
    rc = HSMCA_E_INVALID_ARG;
    if (!mt_key_skid(X509_get_X509_PUBKEY(x), skid))
        goto out;
    rc = HSMCA_E_NOMEM;
    if (!mt_add_exts(x, p, skid,
                     parent != NULL ? ASN1_STRING_get0_data(pskid) : (p->akid ? skid : NULL)))
        goto out;
    *out = x;
    x = NULL;
    rc = HSMCA_OK;
out:
    X509_free(x);
    X509_NAME_free(name);
    ASN1_OBJECT_free(vid_obj);
    ASN1_OBJECT_free(pid_obj);
    return rc;
}

static enum hsmca_err
ca_build(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s, EVP_PKEY *pub,
         X509 *parent, EVP_PKEY *signer, time_t now, const unsigned char *serial_in,
         unsigned char *serial_out, X509 **out)
{
    X509 *x = NULL, *y = NULL;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    struct hsmca_matter_verdict v;
    enum hsmca_profile_type want = parent == NULL ? HSMCA_PROFILE_PAA : HSMCA_PROFILE_PAI;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (signer == NULL || out == NULL || serial_out == NULL)
        goto out;
    if (serial_in != NULL)
        memcpy(serial, serial_in, sizeof(serial));
    else if ((rc = mt_make_serial(serial)) != HSMCA_OK)
        goto out;
    rc = mt_ca_tbs(p, s, pub, parent, now, serial, &x);
    if (rc != HSMCA_OK)
        goto out;
    rc = sign_and_reparse(x, signer, &y, NULL, NULL);
    if (rc != HSMCA_OK)
        goto out;
    /* self check: the validator's format rules, then the link and signature */
    rc = HSMCA_E_MATTER_SELF_CHECK;
    if (mt_check_format(y, want, &v, NULL) != HSMCA_OK)
        goto out;
    if (parent == NULL) {
        if (X509_verify(y, pub) != 1)
            goto out;
    } else {
        if (X509_NAME_cmp(X509_get_issuer_name(y), X509_get_subject_name(parent)) != 0 ||
            !mt_same_octets(mt_akid_of(y), mt_skid_of(parent)) ||
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
    return rc;
}

enum hsmca_err
hsmca_matter_paa_build(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                       EVP_PKEY *priv, EVP_PKEY *pub, time_t now, unsigned char *serial_out,
                       X509 **out)
{
    return ca_build(p, s, pub, NULL, priv, now, NULL, serial_out, out);
}

enum hsmca_err
hsmca_matter_pai_build(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                       EVP_PKEY *pai_pub, X509 *paa, EVP_PKEY *paa_priv, time_t now,
                       unsigned char *serial_out, X509 **out)
{
    if (paa == NULL)
        return HSMCA_E_INVALID_ARG;
    return ca_build(p, s, pai_pub, paa, paa_priv, now, NULL, serial_out, out);
}

enum hsmca_err
hsmca_matter_ca_build_fixed(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                            EVP_PKEY *pub, X509 *parent, EVP_PKEY *signer,
                            const struct hsmca_matter_ca_fixed *f, X509 **out)
{
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];

    if (p == NULL || f == NULL)
        return HSMCA_E_INVALID_ARG;
    return ca_build(p, s, pub, parent, signer, f->not_before + (time_t)p->backdate, f->serial,
                    serial, out);
}

/* 1 if sig is pub's signature of the 32-byte digest dgst. */
int
mt_digest_verifies(EVP_PKEY *pub, const unsigned char *sig, size_t siglen,
                   const unsigned char dgst[HSMCA_SHA256_LEN])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    int ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
             EVP_PKEY_verify(ctx, sig, siglen, dgst, HSMCA_SHA256_LEN) == 1;

    EVP_PKEY_CTX_free(ctx);
    return ok;
}
