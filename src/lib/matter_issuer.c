/* SPDX-License-Identifier: Apache-2.0
 *
 * matter_issuer.c -- the per-PAI issuer context (signer, scope, validity) and the plan of one
 * DAC request: every rule it breaks, then its TBSCertificate built by the full builder.
 */
#include "matter_internal.h"

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
int
mt_digest_verifies(EVP_PKEY *pub, const unsigned char *sig, size_t siglen,
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
    if (siglen > HSMCA_ECDSA_P256_DER_MAX || !mt_digest_verifies(pub, sig, siglen, dgst))
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
    rc = mt_check_format(pai, HSMCA_PROFILE_PAI, &v, &is->scope);
    if (rc != HSMCA_OK)
        goto out;
    rc = mt_check_format(paa, HSMCA_PROFILE_PAA, &v, &avp);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_MATTER_VIDPID;
    if (!is->scope.has_vid || (avp.has_vid && avp.vid != is->scope.vid))
        goto out;
    rc = HSMCA_E_MATTER_PAA_NOT_FOUND;
    if (!mt_same_octets(mt_akid_of(pai), mt_skid_of(paa)))
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
    if (!mt_time_of(X509_get0_notBefore(pai), &is->pai_not_before) ||
        !mt_time_of(X509_get0_notAfter(pai), &is->pai_not_after) ||
        !mt_time_of(X509_get0_notBefore(paa), &is->paa_not_before) ||
        !mt_time_of(X509_get0_notAfter(paa), &is->paa_not_after))
        goto out;
    rc = HSMCA_E_NOMEM;
    sk = mt_skid_of(pai);
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
    rc = mt_make_marker(is);
    if (rc != HSMCA_OK)
        goto out;
    /* a PAI bound to one PID gets its DAC template now, so each DAC costs one token signature */
    if (is->scope.has_pid)
        (void)mt_template_for(is, is->scope.pid, time(NULL));
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
void
mt_plan_dac(const struct hsmca_matter_issuer *is, const struct hsmca_csr *req, int pid_given,
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
}

/* The unsigned DAC for key pub (pl->pid_ok must hold). */
enum hsmca_err
mt_dac_tbs(const struct hsmca_matter_issuer *is, const X509_PUBKEY *pub, uint16_t pid, time_t now,
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
    rc = mt_make_name(is->vid_obj, is->pid_obj, cn, 1, is->scope.vid, 1, pid, &name);
    if (rc != HSMCA_OK)
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
