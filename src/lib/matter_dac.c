/* SPDX-License-Identifier: Apache-2.0
 *
 * matter_dac.c -- a DAC: the plan of one request (every rule it breaks, then its TBSCertificate
 * from the full builder) and the templates of the hot path (one checked TBSCertificate per PID,
 * copied and patched per DAC); hsmca_matter_dac_build and the DAC lint.
 */
#include "hsmca/der.h"

#include "matter_internal.h"

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
    int has_devid; /* devid holds the checked per-device subject value */
    char devid[HSMCA_DEVICE_ID_MAX + 1];
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

/* The value of the one attribute nid in name, as UTF-8, into out; 0 none, 1 one, -1 more than one
 * or unreadable or too long. */
static int
name_attr(const X509_NAME *name, int nid, char *out, size_t out_size)
{
    int i = X509_NAME_get_index_by_NID(name, nid, -1), len;
    unsigned char *u = NULL;

    if (i < 0)
        return 0;
    if (X509_NAME_get_index_by_NID(name, nid, i) >= 0)
        return -1;
    len = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (len < 0 || (size_t)len >= out_size || memchr(u, 0, (size_t)len) != NULL) {
        OPENSSL_free(u);
        return -1;
    }
    memcpy(out, u, (size_t)len);
    out[len] = '\0';
    OPENSSL_free(u);
    return 1;
}

enum hsmca_err
hsmca_matter_dac_device_id(const struct hsmca_profile *p, const struct hsmca_csr *csr,
                           const char *requested, int *has, char *out, size_t out_size, char *why,
                           size_t why_len)
{
    char from[HSMCA_DEVICE_ID_MAX + 1];
    const char *v = requested;
    enum hsmca_err rc;

    if (p == NULL || has == NULL || out == NULL || out_size < HSMCA_DEVICE_ID_MAX + 1)
        return HSMCA_E_INVALID_ARG;
    *has = 0;
    if (v == NULL && p->device_id.from_csr && csr != NULL) {
        int nid = p->device_id.attr == HSMCA_DEVID_COMMON_NAME ? NID_commonName : NID_serialNumber;
        int n = name_attr(hsmca_csr_subject(csr), nid, from, sizeof(from));

        if (n < 0) {
            if (why != NULL && why_len > 0)
                snprintf(why, why_len,
                         "the CSR's subject has more than one %s, or one longer than 64 bytes",
                         hsmca_profile_devid_attr_name(p->device_id.attr));
            return HSMCA_E_DEVICE_ID_RULE;
        }
        if (n == 1)
            v = from;
    }
    rc = hsmca_profile_device_id_check(p, v, why, why_len);
    if (rc != HSMCA_OK || v == NULL)
        return rc;
    snprintf(out, out_size, "%s", v);
    *has = 1;
    return HSMCA_OK;
}

/* Every rule of the request itself (scope, validity, the per-device subject value; the CSR's own
 * checks are csr.c's). */
static void
plan_dac(const struct hsmca_matter_issuer *is, const struct hsmca_csr *req, int pid_given,
         uint16_t pid, const char *device_id, time_t now, struct plan *pl)
{
    time_t nb = now - (time_t)is->profile.backdate;
    enum hsmca_err drc;
    char why[128];

    memset(pl, 0, sizeof(*pl));
    /* the per-device subject value, from the request (or the CSR if the profile says so) */
    drc = hsmca_matter_dac_device_id(&is->profile, req, device_id, &pl->has_devid, pl->devid,
                                     sizeof(pl->devid), why, sizeof(why));
    if (drc != HSMCA_OK)
        add_problem(pl, "device-id", drc, "%s", why);
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
        if (mt_raw_p256(hsmca_csr_x509_pubkey(req), NULL) != 1)
            add_problem(pl, "C4", HSMCA_E_CSR_POINT_FORMAT,
                        "the CSR's P-256 key is not an uncompressed 65-byte point");
        else
            pl->key_ok = 1;
    }
    /* VID/PID the CSR carries in its subject must match the scope (docs/design.md) */
    if (req != NULL) {
        struct hsmca_matter_vidpid cvp;

        if (mt_name_vidpid(hsmca_csr_subject(req), &cvp, NULL) != HSMCA_OK) {
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
    /* the profile's own policy beyond Matter: the DAC ends no later than its issuers */
    if (is->profile.within_issuer) {
        time_t na = is->profile.no_expiry ? (time_t)INT64_C(253402300799)
                                          : nb + (time_t)is->profile.days * 86400 - 1;

        if (na > is->pai_not_after || na > is->paa_not_after)
            add_problem(pl, "within-issuer", HSMCA_E_DAC_OUTLIVES_ISSUER,
                        "the DAC would end after its %s (the DAC profile %s says within_issuer)",
                        na > is->pai_not_after ? "PAI" : "PAA", is->profile.name);
    }
}

/* The unsigned DAC for key pub (pl->pid_ok must hold); devid NULL: none (checked by plan_dac). */
static enum hsmca_err
dac_tbs(const struct hsmca_matter_issuer *is, const X509_PUBKEY *pub, uint16_t pid,
        const char *devid, time_t now, const unsigned char *serial, X509 **out)
{
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    unsigned char skid[SKID_LEN];
    char cn[HSMCA_MATTER_CN_MAX + 1];
    enum hsmca_err rc = HSMCA_E_NOMEM;

    if (x == NULL)
        goto out;
    rc = hsmca_profile_cn_dev(&is->profile, 1, is->scope.vid, 1, pid,
                              is->profile.device_id.attr == HSMCA_DEVID_COMMON_NAME ? devid : NULL,
                              cn, sizeof(cn));
    if (rc != HSMCA_OK)
        goto out;
    rc = mt_make_name(is->vid_obj, is->pid_obj, cn, 1, is->scope.vid, 1, pid, &name);
    if (rc != HSMCA_OK)
        goto out;
    /* a serialNumber device id: its own RDN after the CN (PrintableString, checked) */
    rc = HSMCA_E_NOMEM;
    if (devid != NULL && is->profile.device_id.attr == HSMCA_DEVID_SERIAL_NUMBER &&
        X509_NAME_add_entry_by_NID(name, NID_serialNumber, V_ASN1_PRINTABLESTRING,
                                   (const unsigned char *)devid, (int)strlen(devid), 1, 0) != 1)
        goto out;
    rc = HSMCA_E_INVALID_ARG;
    if (!mt_key_skid(pub, skid))
        goto out;
    rc = HSMCA_E_NOMEM;
    if (X509_set_version(x, X509_VERSION_3) != 1 || !mt_set_serial(x, serial) ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, is->issuer) != 1 ||
        !mt_set_validity(x, &is->profile, now) || !mt_copy_pubkey(x, pub) ||
        !mt_add_exts(x, &is->profile, skid, is->pai_skid))
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

enum hsmca_err
mt_make_marker(struct hsmca_matter_issuer *is)
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
    struct hsmca_der d, tbs, val;
    struct hsmca_der_el el, serial, validity, nb, na;

    hsmca_der_init(&d, t->tbs, t->tbs_len);
    hsmca_der_read(&d, 0x30, &el);
    hsmca_der_end(&d);
    hsmca_der_sub(&tbs, &el);
    hsmca_der_read(&tbs, 0xa0, NULL); /* version */
    hsmca_der_read(&tbs, 0x02, &serial);
    hsmca_der_read(&tbs, 0x30, NULL); /* signature algorithm */
    hsmca_der_read(&tbs, 0x30, NULL); /* issuer */
    hsmca_der_read(&tbs, 0x30, &validity);
    hsmca_der_sub(&val, &validity);
    t->nb_tag = (unsigned char)hsmca_der_tag(&val);
    hsmca_der_read(&val, t->nb_tag, &nb);
    t->na_tag = (unsigned char)hsmca_der_tag(&val);
    hsmca_der_read(&val, t->na_tag, &na);
    if (d.err || !hsmca_der_end(&val) || serial.len != HSMCA_MATTER_SERIAL_LEN)
        return 0;
    t->off_serial = (size_t)(serial.v - t->tbs);
    t->off_nb = (size_t)(nb.v - t->tbs);
    t->nb_len = nb.len;
    t->off_na = (size_t)(na.v - t->tbs);
    t->na_len = na.len;
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

    if (mt_raw_p256(is->marker_key, &pt) != 1 ||
        dac_tbs(is, is->marker_key, pid, NULL, now, marker_serial, &x) != HSMCA_OK)
        goto out;
    if (X509_sign(x, is->priv, EVP_sha256()) <= 0)
        goto out;
    /* the full validator, signature included, on the template DAC */
    if (mt_check_format(x, HSMCA_PROFILE_DAC, &v, &dvp) != HSMCA_OK || !dvp.has_vid ||
        !dvp.has_pid || dvp.vid != is->scope.vid || dvp.pid != pid ||
        mt_check_links(x, is->pai, is->paa, 1, &v) != HSMCA_OK)
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
const struct dac_template *
mt_template_for(const struct hsmca_matter_issuer *cis, uint16_t pid, time_t now)
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

const struct hsmca_profile *
hsmca_matter_issuer_profile(const struct hsmca_matter_issuer *is)
{
    return is != NULL ? &is->profile : NULL;
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
    const struct dac_template *t = mt_template_for(is, pl->pid, now);
    unsigned char tbs[HSMCA_MATTER_CERT_MAX], dgst[HSMCA_SHA256_LEN],
        sig[HSMCA_ECDSA_P256_DER_MAX + 8];
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
    if (mt_raw_p256(hsmca_csr_x509_pubkey(csr), &pt) != 1)
        return HSMCA_E_MATTER_SELF_CHECK; /* plan_dac refused this already */
    memcpy(tbs + t->off_serial, serial, HSMCA_MATTER_SERIAL_LEN);
    memcpy(tbs + t->off_key, pt, 65);
    SHA1(pt, 65, tbs + t->off_skid);
    SHA256(tbs, t->tbs_len, dgst);

    if (is->sign(is->sign_arg, dgst, sig, sizeof(sig), &siglen) != HSMCA_OK ||
        siglen > HSMCA_ECDSA_P256_DER_MAX)
        return HSMCA_E_SIGN_FAILED;
    if ((flags & HSMCA_MATTER_VERIFY_SIGNATURE) != 0 &&
        !mt_digest_verifies(is->pai_pub, sig, siglen, dgst))
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
    plan_dac(is, r->csr, r->pid_given, r->pid, r->device_id, r->now, &pl);
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
        rc = mt_make_serial(serial);
        if (rc != HSMCA_OK)
            goto out;
    }
    if ((flags & HSMCA_MATTER_FULL_BUILD) == 0 && !pl.has_devid) {
        rc = dac_build_fast(is, &pl, r->csr, r->now, serial, flags, der_out, der_len);
        if (rc != HSMCA_E_NOT_FOUND) {
            if (rc == HSMCA_OK)
                memcpy(serial_out, serial, sizeof(serial));
            goto out;
        }
    }
    rc = dac_tbs(is, hsmca_csr_x509_pubkey(r->csr), pl.pid, pl.has_devid ? pl.devid : NULL, r->now,
                 serial, &x);
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
    if (mt_check_format(y, HSMCA_PROFILE_DAC, &v, &dvp) != HSMCA_OK || !dvp.has_vid ||
        !dvp.has_pid || dvp.vid != is->scope.vid || (is->scope.has_pid && dvp.pid != is->scope.pid))
        goto out;
    if (mt_check_links(y, is->pai, is->paa, 0, &v) != HSMCA_OK)
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
                      size_t csr_len, int pid_given, uint16_t pid, const char *device_id,
                      time_t now, json_t **out)
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
    plan_dac(is, c, pid_given, pid, device_id, now, &pl);
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
    if (c != NULL && pl.pid_ok && pl.key_ok && (pl.has_devid || !is->profile.device_id.required)) {
        memset(zero, 0x7F, sizeof(zero));
        rc = dac_tbs(is, hsmca_csr_x509_pubkey(c), pl.pid, pl.has_devid ? pl.devid : NULL, now,
                     zero, &x);
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
