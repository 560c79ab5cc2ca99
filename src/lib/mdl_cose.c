/* SPDX-License-Identifier: Apache-2.0
 *
 * mdl_cose.c -- the Mobile Security Object of ISO/IEC 18013-5 (9.1.2.4) and its IssuerAuth, an
 * untagged COSE_Sign1 (RFC 9052) with alg ES256 in the protected header and the DS certificate
 * in the unprotected x5chain header (label 33). The only file that includes libcbor
 * (tools/check-walls): every byte of CBOR is parsed and written by libcbor, never by hand.
 * Untrusted input is pre-scanned with libcbor's streaming decoder so that no declared length or
 * count may exceed the bytes that are there (cbor_load would allocate it first), and
 * indefinite-length items are refused. Owns no state; never touches keys.
 */
#include <cbor.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/sha.h>

#include "hsmca/mdl.h"
#include "hsmca/sizes.h"

#define COSE_LABEL_ALG 1
#define COSE_LABEL_X5CHAIN 33
#define COSE_ALG_ES256 (-7)
#define TAG_ENCODED_CBOR 24
#define TAG_TDATE 0
#define ITEMS_MAX 65536u /* items of one MSO or COSE message */

static enum hsmca_err why_set(char *why, size_t n, enum hsmca_err rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum hsmca_err
why_set(char *why, size_t n, enum hsmca_err rc, const char *fmt, ...)
{
    va_list ap;

    if (why != NULL && n > 0) {
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- bounded pre-scan ---- */

struct scan {
    size_t remaining; /* bytes after the current header */
    size_t items;
    int bad;
};

static void
scan_item(struct scan *s)
{
    if (++s->items > ITEMS_MAX)
        s->bad = 1;
}
static void
scan_u8(void *c, uint8_t v)
{
    (void)v;
    scan_item(c);
}
static void
scan_u16(void *c, uint16_t v)
{
    (void)v;
    scan_item(c);
}
static void
scan_u32(void *c, uint32_t v)
{
    (void)v;
    scan_item(c);
}
static void
scan_u64(void *c, uint64_t v)
{
    (void)v;
    scan_item(c);
}
static void
scan_simple(void *c)
{
    scan_item(c);
}
static void
scan_indef(void *c)
{
    ((struct scan *)c)->bad = 1; /* indefinite lengths are refused */
}
static void
scan_string(void *c, cbor_data d, size_t n)
{
    (void)d;
    (void)n; /* the streaming decoder only reports a definite string that is all there */
    scan_item(c);
}
static void
scan_collection(void *c, size_t n)
{
    struct scan *s = c;

    scan_item(s);
    if (n > s->remaining || n > ITEMS_MAX)
        s->bad = 1;
}
static void
scan_map(void *c, size_t n)
{
    struct scan *s = c;

    scan_item(s);
    if (n > s->remaining / 2 || n > ITEMS_MAX)
        s->bad = 1;
}
static void
scan_float(void *c, float f)
{
    (void)f;
    scan_item(c);
}
static void
scan_double(void *c, double f)
{
    (void)f;
    scan_item(c);
}
static void
scan_bool(void *c, bool b)
{
    (void)b;
    scan_item(c);
}

/* Parse exactly one definite item from in[0..len): NULL if malformed, truncated, followed by
 * more bytes, with an indefinite length, or with a count beyond the bytes there. */
static cbor_item_t *
load_bounded(const unsigned char *in, size_t len)
{
    struct cbor_callbacks cb = cbor_empty_callbacks;
    struct scan s = {0, 0, 0};
    struct cbor_load_result res;
    cbor_item_t *item;
    size_t off = 0;

    if (in == NULL || len == 0)
        return NULL;
    cb.uint8 = scan_u8;
    cb.uint16 = scan_u16;
    cb.uint32 = scan_u32;
    cb.uint64 = scan_u64;
    cb.negint8 = scan_u8;
    cb.negint16 = scan_u16;
    cb.negint32 = scan_u32;
    cb.negint64 = scan_u64;
    cb.byte_string = scan_string;
    cb.string = scan_string;
    cb.byte_string_start = scan_indef;
    cb.string_start = scan_indef;
    cb.indef_array_start = scan_indef;
    cb.indef_map_start = scan_indef;
    cb.indef_break = scan_indef;
    cb.array_start = scan_collection;
    cb.map_start = scan_map;
    cb.tag = scan_u64;
    cb.float2 = scan_float;
    cb.float4 = scan_float;
    cb.float8 = scan_double;
    cb.undefined = scan_simple;
    cb.null = scan_simple;
    cb.boolean = scan_bool;
    while (off < len) {
        struct cbor_decoder_result r;

        s.remaining = len - off;
        r = cbor_stream_decode(in + off, len - off, &cb, &s);
        if (r.status != CBOR_DECODER_FINISHED || r.read == 0 || s.bad)
            return NULL;
        off += r.read;
    }
    item = cbor_load(in, len, &res);
    if (item == NULL)
        return NULL;
    if (res.error.code != CBOR_ERR_NONE || res.read != len) {
        cbor_decref(&item);
        return NULL;
    }
    return item;
}

/* ---- small readers ---- */

static cbor_item_t *
map_get_text(const cbor_item_t *map, const char *key)
{
    struct cbor_pair *p = cbor_map_handle(map);
    size_t i, n = cbor_map_size(map), kl = strlen(key);

    for (i = 0; i < n; i++) {
        if (cbor_isa_string(p[i].key) && cbor_string_length(p[i].key) == kl &&
            memcmp(cbor_string_handle(p[i].key), key, kl) == 0)
            return p[i].value;
    }
    return NULL;
}

static cbor_item_t *
map_get_int(const cbor_item_t *map, int64_t key)
{
    struct cbor_pair *p = cbor_map_handle(map);
    size_t i, n = cbor_map_size(map);

    for (i = 0; i < n; i++) {
        const cbor_item_t *k = p[i].key;

        if (key >= 0 && cbor_isa_uint(k) && cbor_get_int(k) == (uint64_t)key)
            return p[i].value;
        if (key < 0 && cbor_isa_negint(k) && cbor_get_int(k) == (uint64_t)(-1 - key))
            return p[i].value;
    }
    return NULL;
}

static int
text_copy(const cbor_item_t *t, char *out, size_t n)
{
    size_t l;

    if (t == NULL || !cbor_isa_string(t))
        return -1;
    l = cbor_string_length(t);
    if (l + 1 > n || memchr(cbor_string_handle(t), 0, l) != NULL)
        return -1;
    memcpy(out, cbor_string_handle(t), l);
    out[l] = '\0';
    return 0;
}

static int
digits(const char *s, size_t n, int *out)
{
    int v = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* tdate: #6.0("YYYY-MM-DDTHH:MM:SSZ") (RFC 3339, no fraction, UTC) -> seconds. */
static int
tdate(const cbor_item_t *it, int64_t *out)
{
    cbor_item_t *t;
    char s[32];
    int y, mo, d, h, mi, se, rc;
    struct tm tm;

    if (it == NULL || !cbor_isa_tag(it) || cbor_tag_value(it) != TAG_TDATE)
        return -1;
    t = cbor_tag_item(it);
    rc = text_copy(t, s, sizeof(s));
    cbor_decref(&t);
    if (rc != 0 || strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z' || digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
        digits(s + 8, 2, &d) || digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) ||
        digits(s + 17, 2, &se) || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || se > 60)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* ---- the MSO ---- */

static enum hsmca_err
mso_fields(const cbor_item_t *mso, struct hsmca_mdl_mso_info *info, char *why, size_t n)
{
    const cbor_item_t *v, *vi, *dk;

    if (!cbor_isa_map(mso))
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID, "the MSO is not a map");
    v = map_get_text(mso, "version");
    if (v == NULL || !cbor_isa_string(v) || cbor_string_length(v) != 3 ||
        memcmp(cbor_string_handle(v), "1.0", 3) != 0)
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID, "version is not \"1.0\"");
    if (text_copy(map_get_text(mso, "digestAlgorithm"), info->digest_alg,
                  sizeof(info->digest_alg)) != 0 ||
        (strcmp(info->digest_alg, "SHA-256") != 0 && strcmp(info->digest_alg, "SHA-384") != 0 &&
         strcmp(info->digest_alg, "SHA-512") != 0))
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID,
                       "digestAlgorithm is not SHA-256, SHA-384 or SHA-512");
    v = map_get_text(mso, "valueDigests");
    if (v == NULL || !cbor_isa_map(v) || cbor_map_size(v) == 0)
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID, "valueDigests is not a non-empty map");
    v = map_get_text(mso, "deviceKeyInfo");
    dk = v != NULL && cbor_isa_map(v) ? map_get_text(v, "deviceKey") : NULL;
    if (dk == NULL || !cbor_isa_map(dk))
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID, "deviceKeyInfo.deviceKey is missing");
    if (text_copy(map_get_text(mso, "docType"), info->doc_type, sizeof(info->doc_type)) != 0 ||
        info->doc_type[0] == '\0')
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID, "docType is not a text of 1..127 bytes");
    vi = map_get_text(mso, "validityInfo");
    if (vi == NULL || !cbor_isa_map(vi) || tdate(map_get_text(vi, "signed"), &info->signed_s) ||
        tdate(map_get_text(vi, "validFrom"), &info->valid_from_s) ||
        tdate(map_get_text(vi, "validUntil"), &info->valid_until_s))
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID,
                       "validityInfo lacks signed, validFrom or validUntil as tdate");
    if (info->valid_from_s < info->signed_s || info->valid_until_s <= info->valid_from_s)
        return why_set(why, n, HSMCA_E_MDL_MSO_INVALID,
                       "validityInfo is not signed <= validFrom < validUntil");
    return HSMCA_OK;
}

enum hsmca_err
hsmca_mdl_mso_check(const unsigned char *in, size_t len, unsigned char **payload,
                    size_t *payload_len, struct hsmca_mdl_mso_info *info, char *why,
                    size_t why_size)
{
    cbor_item_t *top = NULL, *inner = NULL, *mso = NULL, *wrapped = NULL;
    struct hsmca_mdl_mso_info i;
    unsigned char *buf = NULL;
    size_t blen = 0, n;
    enum hsmca_err rc;

    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (in == NULL || payload == NULL || payload_len == NULL || info == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_MDL_MSO_MAX)
        return why_set(why, why_size, HSMCA_E_MDL_MSO_INVALID, "the MSO is over %u bytes",
                       HSMCA_MDL_MSO_MAX);
    memset(&i, 0, sizeof(i));
    top = load_bounded(in, len);
    if (top == NULL)
        return why_set(why, why_size, HSMCA_E_MDL_MSO_INVALID,
                       "not one well-formed definite-length CBOR item");
    if (cbor_isa_tag(top)) {
        /* MobileSecurityObjectBytes: #6.24(bstr .cbor MobileSecurityObject) */
        if (cbor_tag_value(top) != TAG_ENCODED_CBOR) {
            rc = why_set(why, why_size, HSMCA_E_MDL_MSO_INVALID, "a tag other than 24");
            goto out;
        }
        inner = cbor_tag_item(top);
        if (!cbor_isa_bytestring(inner) || !cbor_bytestring_is_definite(inner)) {
            rc = why_set(why, why_size, HSMCA_E_MDL_MSO_INVALID, "tag 24 holds no byte string");
            goto out;
        }
        mso = load_bounded(cbor_bytestring_handle(inner), cbor_bytestring_length(inner));
        if (mso == NULL) {
            rc = why_set(why, why_size, HSMCA_E_MDL_MSO_INVALID,
                         "tag 24's byte string is not one well-formed CBOR item");
            goto out;
        }
        rc = mso_fields(mso, &i, why, why_size);
        if (rc != HSMCA_OK)
            goto out;
        buf = malloc(len);
        if (buf == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        memcpy(buf, in, len);
        blen = len;
    } else {
        rc = mso_fields(top, &i, why, why_size);
        if (rc != HSMCA_OK)
            goto out;
        wrapped = cbor_build_tag(TAG_ENCODED_CBOR, cbor_move(cbor_build_bytestring(in, len)));
        if (wrapped == NULL) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        n = cbor_serialize_alloc(wrapped, &buf, &blen);
        if (n == 0) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        blen = n;
    }
    SHA256(buf, blen, i.payload_sha256);
    *payload = buf;
    *payload_len = blen;
    *info = i;
    buf = NULL;
    rc = HSMCA_OK;
out:
    free(buf);
    if (wrapped != NULL)
        cbor_decref(&wrapped);
    if (mso != NULL)
        cbor_decref(&mso);
    if (inner != NULL)
        cbor_decref(&inner);
    cbor_decref(&top);
    return rc;
}

/* ---- COSE_Sign1 ---- */

/* The protected header's bytes: the map {1: -7}. */
static enum hsmca_err
protected_bytes(unsigned char **out, size_t *len)
{
    cbor_item_t *m = cbor_new_definite_map(1);
    size_t n, cap = 0;
    int ok;

    *out = NULL;
    if (m == NULL)
        return HSMCA_E_NOMEM;
    ok = cbor_map_add(m, (struct cbor_pair){.key = cbor_move(cbor_build_uint8(COSE_LABEL_ALG)),
                                            .value = cbor_move(cbor_build_negint8(6))});
    n = ok ? cbor_serialize_alloc(m, out, &cap) : 0;
    cbor_decref(&m);
    if (n == 0) {
        free(*out);
        *out = NULL;
        return HSMCA_E_NOMEM;
    }
    *len = n;
    return HSMCA_OK;
}

static enum hsmca_err
tbs(const unsigned char *prot, size_t prot_len, const unsigned char *payload, size_t payload_len,
    unsigned char out[HSMCA_SHA256_LEN])
{
    cbor_item_t *a = cbor_new_definite_array(4);
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;

    if (a == NULL)
        return HSMCA_E_NOMEM;
    if (cbor_array_push(a, cbor_move(cbor_build_string("Signature1"))) &&
        cbor_array_push(a, cbor_move(cbor_build_bytestring(prot, prot_len))) &&
        cbor_array_push(a, cbor_move(cbor_build_bytestring(NULL, 0))) &&
        cbor_array_push(a, cbor_move(cbor_build_bytestring(payload, payload_len))))
        n = cbor_serialize_alloc(a, &buf, &cap);
    cbor_decref(&a);
    if (n == 0) {
        free(buf);
        return HSMCA_E_NOMEM;
    }
    SHA256(buf, n, out);
    free(buf);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_mdl_tbs_digest(const unsigned char *payload, size_t payload_len,
                     unsigned char out[HSMCA_SHA256_LEN])
{
    unsigned char *prot = NULL;
    size_t plen = 0;
    enum hsmca_err rc;

    if (payload == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = protected_bytes(&prot, &plen);
    if (rc == HSMCA_OK)
        rc = tbs(prot, plen, payload, payload_len, out);
    free(prot);
    return rc;
}

enum hsmca_err
hsmca_mdl_sig_raw(const unsigned char *der, size_t len, unsigned char out[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *s;
    const BIGNUM *r, *sv;
    int ok;

    if (der == NULL || out == NULL || len > 256)
        return HSMCA_E_INVALID_ARG;
    s = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (s == NULL || p != der + len) {
        ECDSA_SIG_free(s);
        return HSMCA_E_MDL_SIGNATURE_INVALID;
    }
    ECDSA_SIG_get0(s, &r, &sv);
    ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(sv, out + 32, 32) == 32;
    ECDSA_SIG_free(s);
    return ok ? HSMCA_OK : HSMCA_E_MDL_SIGNATURE_INVALID;
}

enum hsmca_err
hsmca_mdl_sign1_assemble(const unsigned char *payload, size_t payload_len,
                         const unsigned char *ds_der, size_t ds_len, const unsigned char *sig_der,
                         size_t sig_der_len, unsigned char **out, size_t *out_len)
{
    unsigned char raw[64], *prot = NULL, *buf = NULL;
    size_t plen = 0, n = 0, cap = 0;
    cbor_item_t *a = NULL, *u = NULL;
    enum hsmca_err rc;
    int ok;

    if (ds_der == NULL || ds_len == 0 || sig_der == NULL || out == NULL || out_len == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_mdl_sig_raw(sig_der, sig_der_len, raw);
    if (rc != HSMCA_OK)
        return rc;
    rc = protected_bytes(&prot, &plen);
    if (rc != HSMCA_OK)
        return rc;
    a = cbor_new_definite_array(4);
    u = cbor_new_definite_map(1);
    ok = a != NULL && u != NULL &&
         cbor_map_add(
             u, (struct cbor_pair){.key = cbor_move(cbor_build_uint8(COSE_LABEL_X5CHAIN)),
                                   .value = cbor_move(cbor_build_bytestring(ds_der, ds_len))}) &&
         cbor_array_push(a, cbor_move(cbor_build_bytestring(prot, plen))) &&
         cbor_array_push(a, u) &&
         cbor_array_push(a, cbor_move(payload != NULL ? cbor_build_bytestring(payload, payload_len)
                                                      : cbor_new_null())) &&
         cbor_array_push(a, cbor_move(cbor_build_bytestring(raw, sizeof(raw))));
    if (ok)
        n = cbor_serialize_alloc(a, &buf, &cap);
    if (u != NULL)
        cbor_decref(&u);
    if (a != NULL)
        cbor_decref(&a);
    free(prot);
    if (n == 0) {
        free(buf);
        return HSMCA_E_NOMEM;
    }
    *out = buf;
    *out_len = n;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_mdl_sign1_verify(const unsigned char *cose, size_t len, const unsigned char *detached_payload,
                       size_t detached_len, X509 *ds)
{
    cbor_item_t *top, **el, *prot = NULL, *alg, *x5 = NULL;
    const unsigned char *payload, *p;
    size_t payload_len;
    unsigned char dgst[HSMCA_SHA256_LEN];
    X509 *cert = NULL;
    EVP_PKEY *pub;
    ECDSA_SIG *sig = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *der = NULL;
    int dlen;
    EVP_PKEY_CTX *ctx = NULL;
    enum hsmca_err rc = HSMCA_E_MDL_COSE_INVALID;

    if (cose == NULL || len > HSMCA_MDL_MSO_MAX * 2)
        return HSMCA_E_MDL_COSE_INVALID;
    top = load_bounded(cose, len);
    if (top == NULL)
        return HSMCA_E_MDL_COSE_INVALID;
    if (!cbor_isa_array(top) || cbor_array_size(top) != 4)
        goto out;
    el = cbor_array_handle(top);
    if (!cbor_isa_bytestring(el[0]) || !cbor_isa_map(el[1]) || !cbor_isa_bytestring(el[3]) ||
        cbor_bytestring_length(el[3]) != 64)
        goto out;
    prot = load_bounded(cbor_bytestring_handle(el[0]), cbor_bytestring_length(el[0]));
    alg = prot != NULL && cbor_isa_map(prot) ? map_get_int(prot, COSE_LABEL_ALG) : NULL;
    if (alg == NULL || !cbor_isa_negint(alg) || cbor_get_int(alg) != 6)
        goto out;
    x5 = map_get_int(el[1], COSE_LABEL_X5CHAIN);
    if (x5 == NULL || !cbor_isa_bytestring(x5))
        goto out;
    p = cbor_bytestring_handle(x5);
    cert = d2i_X509(NULL, &p, (long)cbor_bytestring_length(x5));
    if (cert == NULL || p != cbor_bytestring_handle(x5) + cbor_bytestring_length(x5))
        goto out;
    if (ds != NULL && X509_cmp(cert, ds) != 0)
        goto out;
    if (cbor_isa_bytestring(el[2])) {
        payload = cbor_bytestring_handle(el[2]);
        payload_len = cbor_bytestring_length(el[2]);
    } else if (cbor_is_null(el[2]) && detached_payload != NULL) {
        payload = detached_payload;
        payload_len = detached_len;
    } else {
        goto out;
    }
    if (tbs(cbor_bytestring_handle(el[0]), cbor_bytestring_length(el[0]), payload, payload_len,
            dgst) != HSMCA_OK)
        goto out;
    rc = HSMCA_E_MDL_SIGNATURE_INVALID;
    pub = X509_get0_pubkey(cert);
    sig = ECDSA_SIG_new();
    r = BN_bin2bn(cbor_bytestring_handle(el[3]), 32, NULL);
    s = BN_bin2bn(cbor_bytestring_handle(el[3]) + 32, 32, NULL);
    if (pub == NULL || sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1)
        goto out;
    r = s = NULL;
    dlen = i2d_ECDSA_SIG(sig, &der);
    ctx = EVP_PKEY_CTX_new(pub, NULL);
    if (dlen > 0 && ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
        EVP_PKEY_verify(ctx, der, (size_t)dlen, dgst, sizeof(dgst)) == 1)
        rc = HSMCA_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    X509_free(cert);
    if (prot != NULL)
        cbor_decref(&prot);
    cbor_decref(&top);
    return rc;
}
