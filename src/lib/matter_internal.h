/* SPDX-License-Identifier: Apache-2.0
 *
 * matter_internal.h -- what the matter*.c pieces share: the issuer context, DAC templates and
 * the helpers more than one piece calls (prefixed mt_; each is documented at its definition).
 * Private to src/lib/matter*.c.
 */
#ifndef HSMCA_MATTER_INTERNAL_H
#define HSMCA_MATTER_INTERNAL_H

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
#include "hsmca/matter.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#define SKID_LEN 20

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

/* matter.c */
enum hsmca_err mt_fail(struct hsmca_matter_verdict *v, enum hsmca_err code, const char *rule,
                       const char *cert, int chip, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

enum hsmca_err mt_name_vidpid(const X509_NAME *n, struct hsmca_matter_vidpid *out,
                              struct hsmca_matter_verdict *v);

int mt_raw_p256(const X509_PUBKEY *xp, const unsigned char **pt);

const ASN1_OCTET_STRING *mt_skid_of(X509 *x);

const ASN1_OCTET_STRING *mt_akid_of(X509 *x);

enum hsmca_err mt_check_format(X509 *x, enum hsmca_profile_type t, struct hsmca_matter_verdict *v,
                               struct hsmca_matter_vidpid *vp_out);

int mt_same_octets(const ASN1_OCTET_STRING *a, const ASN1_OCTET_STRING *b);

int mt_time_of(const ASN1_TIME *a, time_t *out);

int mt_valid_at(X509 *issuer, const ASN1_TIME *t);

enum hsmca_err mt_check_links(X509 *dac, X509 *pai, X509 *paa, int sigs,
                              struct hsmca_matter_verdict *v);

/* matter_build.c */
enum hsmca_err mt_make_serial(unsigned char *s);

int mt_add_exts(X509 *x, const struct hsmca_profile *p, const unsigned char *skid,
                const unsigned char *akid);

int mt_key_skid(const X509_PUBKEY *xp, unsigned char *out);

int mt_copy_pubkey(X509 *x, const X509_PUBKEY *xp);

enum hsmca_err mt_make_name(const ASN1_OBJECT *vid_obj, const ASN1_OBJECT *pid_obj, const char *cn,
                            int has_vid, uint16_t vid, int has_pid, uint16_t pid, X509_NAME **out);

int mt_set_validity(X509 *x, const struct hsmca_profile *p, time_t now);

int mt_set_serial(X509 *x, const unsigned char *s);

int mt_digest_verifies(EVP_PKEY *pub, const unsigned char *sig, size_t siglen,
                       const unsigned char dgst[HSMCA_SHA256_LEN]);

/* matter_dac.c */
enum hsmca_err mt_make_marker(struct hsmca_matter_issuer *is);

const struct dac_template *mt_template_for(const struct hsmca_matter_issuer *cis, uint16_t pid,
                                           time_t now);

/* matter_build.c: the unsigned PAA/PAI certificate (matter_tbs.c previews it) */
enum hsmca_err mt_ca_tbs(const struct hsmca_profile *p, const struct hsmca_matter_ca_subject *s,
                         EVP_PKEY *pub, X509 *parent, time_t now, const unsigned char *serial,
                         X509 **out);

#endif /* HSMCA_MATTER_INTERNAL_H */
