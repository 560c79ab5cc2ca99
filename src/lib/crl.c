/* SPDX-License-Identifier: Apache-2.0
 *
 * crl.c -- builds and checks CRLs. A CRL is signed with the CA's token-backed key (the private key
 * never leaves the token) and re-checked like a consumer would before it is handed out.
 * Owns nothing between calls; never signs a CRL it cannot verify.
 */
#include "hsmca/crl.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/gbuf.h"
#include "hsmca/util.h"

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

/* The reasonCode extensions, encoded once per CRL (a 100,000-entry CRL shares ten of them). */
struct reason_exts {
    X509_EXTENSION *x[11];
};

static void
reason_exts_free(struct reason_exts *r)
{
    int i;

    for (i = 0; i < 11; i++)
        X509_EXTENSION_free(r->x[i]);
}

static X509_EXTENSION *
reason_ext(struct reason_exts *r, int reason)
{
    ASN1_ENUMERATED *e;

    if (r->x[reason] != NULL)
        return r->x[reason];
    e = ASN1_ENUMERATED_new();
    if (e != NULL && ASN1_ENUMERATED_set(e, reason) == 1)
        r->x[reason] = X509V3_EXT_i2d(NID_crl_reason, 0, e);
    ASN1_ENUMERATED_free(e);
    return r->x[reason];
}

static enum hsmca_err
add_entry(X509_CRL *crl, const struct hsmca_crl_entry *e, struct reason_exts *rx)
{
    X509_REVOKED *rev = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_GENERALIZEDTIME *inval = NULL;
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (e->serial_len == 0 || e->serial_len > HSMCA_SERIAL_MAX || (e->serial[0] & 0x80) != 0 ||
        (e->serial_len > 1 && e->serial[0] == 0 && (e->serial[1] & 0x80) == 0))
        return HSMCA_E_INVALID_ARG; /* positive and minimal, as hsmca issues them */
    if (!reason_ok(e->reason))
        return HSMCA_E_CRL_REASON;
    rev = X509_REVOKED_new();
    /* positive and minimal: the content octets are the serial's bytes as they are */
    serial = ASN1_INTEGER_new();
    if (serial != NULL && ASN1_STRING_set(serial, e->serial, (int)e->serial_len) != 1) {
        ASN1_INTEGER_free(serial);
        serial = NULL;
    }
    when = ASN1_TIME_set(NULL, e->revoked_at);
    if (rev == NULL || serial == NULL || when == NULL ||
        X509_REVOKED_set_serialNumber(rev, serial) != 1 ||
        X509_REVOKED_set_revocationDate(rev, when) != 1)
        goto out;
    if (e->invalidity > 0) {
        inval = ASN1_GENERALIZEDTIME_set(NULL, e->invalidity);
        if (inval == NULL || X509_REVOKED_add1_ext_i2d(rev, NID_invalidity_date, inval, 0, 0) != 1)
            goto out;
    }
    if (e->reason != HSMCA_CRL_REASON_NONE) {
        X509_EXTENSION *x = reason_ext(rx, e->reason);

        if (x == NULL || X509_REVOKED_add_ext(rev, x, -1) != 1)
            goto out;
    }
    if (X509_CRL_add0_revoked(crl, rev) != 1)
        goto out;
    rev = NULL;
    rc = HSMCA_OK;
out:
    ASN1_GENERALIZEDTIME_free(inval);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
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
    struct reason_exts rx;
    const ASN1_OCTET_STRING *skid;
    unsigned char *der = NULL;
    enum hsmca_err rc = HSMCA_E_INTERNAL;
    size_t i;
    int len;

    memset(&rx, 0, sizeof(rx));
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
        if (entries[i].revoked_at > p->this_update || entries[i].revoked_at < 0 ||
            entries[i].invalidity < 0 || entries[i].invalidity > p->this_update)
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
        rc = add_entry(crl, &entries[i], &rx);
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
    reason_exts_free(&rx);
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

/* ---- policy ---- */

#define POLICY_FILE_MAX 65536
#define DEF_NEXT_UPDATE_S (30ull * 86400)
#define DEF_REFRESH_S (7ull * 86400)
#define DEF_WARN_S (3ull * 86400)
#define DEF_BATCH_MS 2000ull
#define PERIOD_MAX_S (5ull * 366 * 86400)

struct hsmca_crl_policies {
    json_t *root; /* validated: {"default"?: {...}, "<ca>": {...}} */
};

static int
policy_entry_ok(const char *name, json_t *o)
{
    const char *k;
    json_t *v;
    json_int_t nu = -1, rb = -1;

    if (!json_is_object(o) || (strcmp(name, "default") != 0 && !hsmca_ca_id_valid(name)))
        return 0;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "idp") == 0) {
            if (!json_is_boolean(v))
                return 0;
            continue;
        }
        if (strcmp(k, "url") == 0) {
            const char *u = json_string_value(v);

            if (json_is_null(v))
                continue;
            if (u == NULL || strlen(u) > 256 || strncmp(u, "http", 4) != 0)
                return 0;
            continue;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return 0;
        if (strcmp(k, "next_update_s") == 0) {
            nu = json_integer_value(v);
            if (nu < 60 || (uint64_t)nu > PERIOD_MAX_S)
                return 0;
        } else if (strcmp(k, "refresh_before_s") == 0) {
            rb = json_integer_value(v);
        } else if (strcmp(k, "warn_before_s") == 0) {
            if ((uint64_t)json_integer_value(v) > PERIOD_MAX_S)
                return 0;
        } else if (strcmp(k, "batch_delay_ms") == 0) {
            if (json_integer_value(v) > 3600000)
                return 0;
        } else {
            return 0; /* unknown key */
        }
    }
    return nu < 0 || rb < 0 || rb < nu;
}

enum hsmca_err
hsmca_crl_policies_parse(const char *text, size_t len, struct hsmca_crl_policies **out)
{
    struct hsmca_crl_policies *p;
    json_t *root;
    const char *k;
    json_t *v;

    if (out == NULL || (text == NULL && len > 0) || len > POLICY_FILE_MAX)
        return HSMCA_E_INVALID_ARG;
    *out = NULL;
    root = text != NULL ? json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL) : json_object();
    if (!json_is_object(root)) {
        json_decref(root);
        return HSMCA_E_CRL_POLICY_INVALID;
    }
    json_object_foreach(root, k, v)
    {
        if (!policy_entry_ok(k, v)) {
            json_decref(root);
            return HSMCA_E_CRL_POLICY_INVALID;
        }
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        json_decref(root);
        return HSMCA_E_NOMEM;
    }
    p->root = root;
    *out = p;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_crl_policies_load(const char *path, struct hsmca_crl_policies **out)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    enum hsmca_err rc;

    if (path == NULL || path[0] == '\0')
        return hsmca_crl_policies_parse(NULL, 0, out);
    rc = hsmca_read_file(path, POLICY_FILE_MAX, &buf, &len);
    if (rc != HSMCA_OK)
        return rc == HSMCA_E_NOMEM ? rc : HSMCA_E_CRL_POLICY_INVALID;
    rc = hsmca_crl_policies_parse((const char *)buf, len, out);
    free(buf);
    return rc;
}

void
hsmca_crl_policies_free(struct hsmca_crl_policies *p)
{
    if (p == NULL)
        return;
    json_decref(p->root);
    free(p);
}

static void
policy_apply(json_t *o, const char *ca, struct hsmca_crl_policy *out)
{
    json_t *v;
    const char *u;

    if (!json_is_object(o))
        return;
    if ((v = json_object_get(o, "next_update_s")) != NULL)
        out->next_update_s = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(o, "refresh_before_s")) != NULL)
        out->refresh_before_s = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(o, "warn_before_s")) != NULL)
        out->warn_before_s = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(o, "batch_delay_ms")) != NULL)
        out->batch_delay_ms = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(o, "idp")) != NULL)
        out->idp = json_is_true(v);
    v = json_object_get(o, "url");
    if (v == NULL)
        return;
    out->url[0] = '\0';
    u = json_string_value(v);
    if (u != NULL) {
        /* expand "{ca}"; a result too long or not a usable URI leaves no URL */
        char buf[512];
        size_t n = 0;

        while (*u != '\0' && n < sizeof(buf) - 1) {
            if (strncmp(u, "{ca}", 4) == 0) {
                size_t l = strlen(ca);

                if (n + l >= sizeof(buf) - 1)
                    break;
                memcpy(buf + n, ca, l);
                n += l;
                u += 4;
            } else {
                buf[n++] = *u++;
            }
        }
        buf[n] = '\0';
        if (*u == '\0' && uri_ok(buf))
            memcpy(out->url, buf, strlen(buf) + 1); /* uri_ok: <= HSMCA_CRL_URI_MAX */
    }
}

void
hsmca_crl_policy_for(const struct hsmca_crl_policies *p, const char *ca,
                     struct hsmca_crl_policy *out)
{
    *out = (struct hsmca_crl_policy){.next_update_s = DEF_NEXT_UPDATE_S,
                                     .refresh_before_s = DEF_REFRESH_S,
                                     .warn_before_s = DEF_WARN_S,
                                     .batch_delay_ms = DEF_BATCH_MS};
    if (p == NULL || ca == NULL)
        return;
    policy_apply(json_object_get(p->root, "default"), ca, out);
    policy_apply(json_object_get(p->root, ca), ca, out);
    if (out->refresh_before_s >= out->next_update_s)
        out->refresh_before_s = out->next_update_s / 4;
}

/* ---- making a CA's CRL from the store ---- */

enum hsmca_err
hsmca_crl_entries_add(void *arg, const struct hsmca_revoked_rec *r)
{
    struct hsmca_crl_entries *l = arg;
    struct hsmca_crl_entry *e;
    enum hsmca_err rc = hsmca_grow(&l->e, &l->cap, l->n + 1, sizeof(*l->e), ENTRIES_MAX);

    if (rc != HSMCA_OK)
        return rc;
    e = &l->e[l->n++];
    memset(e, 0, sizeof(*e));
    memcpy(e->serial, r->serial, r->serial_len);
    e->serial_len = r->serial_len;
    e->revoked_at = (time_t)(r->revoked_ms / 1000);
    e->reason = r->reason;
    e->invalidity = (time_t)(r->invalidity_ms / 1000);
    return HSMCA_OK;
}

struct gather {
    struct hsmca_crl_entries l;
    time_t now;
};

/* hsmca_crl_entries_add, then the CRL's rules: no time after now, no reasonCode unspecified */
static enum hsmca_err
gather_one(void *arg, const struct hsmca_revoked_rec *r)
{
    struct gather *g = arg;
    struct hsmca_crl_entry *e;
    enum hsmca_err rc = hsmca_crl_entries_add(&g->l, r);

    if (rc != HSMCA_OK)
        return rc;
    e = &g->l.e[g->l.n - 1];
    if (e->revoked_at > g->now)
        e->revoked_at = g->now;
    /* RFC 5280 5.3.1: no reasonCode rather than unspecified (0) */
    e->reason = r->reason <= 0 ? HSMCA_CRL_REASON_NONE : r->reason;
    if (e->invalidity > g->now)
        e->invalidity = g->now;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_crl_make(struct hsmca_store *ro, const struct hsmca_ca_rec *ca, EVP_PKEY *key,
               const struct hsmca_crl_policy *pol, time_t now, struct hsmca_crl_rec *out,
               size_t *entries_out)
{
    struct hsmca_crl_params p;
    struct hsmca_crl_rec prev;
    struct gather g;
    const unsigned char *cp;
    X509 *issuer = NULL;
    unsigned char *der = NULL;
    size_t len = 0;
    enum hsmca_err rc;

    if (ro == NULL || ca == NULL || key == NULL || pol == NULL || out == NULL ||
        ca->cert_der == NULL || now <= 0)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    memset(&g, 0, sizeof(g));
    memset(&prev, 0, sizeof(prev));
    g.now = now;
    cp = ca->cert_der;
    issuer = d2i_X509(NULL, &cp, (long)ca->cert_len);
    if (issuer == NULL)
        return HSMCA_E_CRL_INVALID;
    memset(&p, 0, sizeof(p));
    p.issuer = issuer;
    p.key = key;
    p.this_update = now;
    p.next_update = now + (time_t)pol->next_update_s;
    p.idp_uri = pol->idp && pol->url[0] != '\0' ? pol->url : NULL;
    rc = hsmca_store_crl_get(ro, ca->id, &prev);
    if (rc == HSMCA_OK) {
        p.number = prev.number + 1;
        if (p.this_update <= prev.this_update) /* thisUpdate never goes back */
            p.this_update = (time_t)prev.this_update;
    } else if (rc == HSMCA_E_NOT_FOUND) {
        p.number = 1;
    } else {
        goto out;
    }
    if (p.next_update <= p.this_update)
        p.next_update = p.this_update + (time_t)pol->next_update_s;
    g.now = p.this_update;
    rc = hsmca_store_revoked_list(ro, ca->id, gather_one, &g);
    if (rc == HSMCA_OK)
        rc = hsmca_crl_build(&p, g.l.e, g.l.n, &der, &len);
    if (rc != HSMCA_OK)
        goto out;
    out->der = malloc(len);
    if (out->der == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    memcpy(out->der, der, len);
    out->der_len = len;
    out->number = p.number;
    out->this_update = p.this_update;
    out->next_update = p.next_update;
    if (entries_out != NULL)
        *entries_out = g.l.n;
out:
    OPENSSL_free(der);
    free(g.l.e);
    hsmca_crl_rec_clear(&prev);
    X509_free(issuer);
    return rc;
}
