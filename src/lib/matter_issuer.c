/* SPDX-License-Identifier: Apache-2.0
 *
 * matter_issuer.c -- the per-PAI issuer context: signer, scope, validity, its DAC templates
 * (made by matter_dac.c).
 */
#include "hsmca/sizes.h"

#include "matter_internal.h"

/* ---------------------------------------------------------------- issuer context */

/* The issuer's default signer: EVP_PKEY_sign of the digest with arg, the token key's EVP_PKEY. */
static enum hsmca_err
evp_signer(void *arg, const unsigned char dgst[HSMCA_SHA256_LEN], unsigned char *sig,
           size_t sig_max, size_t *sig_len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(arg, NULL);
    size_t n = sig_max;
    int ok = ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 &&
             EVP_PKEY_sign(ctx, sig, &n, dgst, HSMCA_SHA256_LEN) == 1;

    EVP_PKEY_CTX_free(ctx);
    if (!ok)
        return HSMCA_E_SIGN_FAILED;
    *sig_len = n;
    return HSMCA_OK;
}

/* One test signature through fn, verified with pub: HSMCA_OK, fn's error, or
 * HSMCA_E_MATTER_KEY_MISMATCH. */
static enum hsmca_err
signer_check(hsmca_matter_sign_fn fn, void *arg, EVP_PKEY *pub)
{
    static const unsigned char msg[] = "hsmca issuer key check";
    unsigned char dgst[HSMCA_SHA256_LEN], sig[HSMCA_ECDSA_P256_DER_MAX + 8];
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
