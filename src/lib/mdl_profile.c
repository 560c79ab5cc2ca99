/* SPDX-License-Identifier: Apache-2.0
 *
 * mdl_profile.c -- loads the mDL certificate profiles (policies/profiles/mdl-iaca.json,
 * mdl-ds.json) and checks every field against ISO/IEC 18013-5 Annex B for the profile's type, so
 * that a profile can never ask the builders (mdl_cert.c) for a certificate a reader would refuse.
 * The rule names are those of docs/mdl.md and of hsmca_mdl_check. Owns no state; never touches
 * keys.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/log.h"
#include "hsmca/mdl.h"
#include "hsmca/util.h"

static enum hsmca_err broken(char *why, size_t why_size, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum hsmca_err
broken(char *why, size_t why_size, const char *rule, const char *fmt, ...)
{
    char text[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (why != NULL && why_size > 0)
        snprintf(why, why_size, "rule %s: %s", rule, text);
    hsmca_log(HSMCA_LOG_WARN, "mdl", "profile-rule", "rule=%s reason=\"%s\"", rule, text);
    return HSMCA_E_PROFILE_RULE;
}

static enum hsmca_err
invalid(char *why, size_t why_size, const char *what)
{
    if (why != NULL && why_size > 0)
        snprintf(why, why_size, "%s", what);
    return HSMCA_E_PROFILE_INVALID;
}

static int
curve_bit(const char *s, unsigned *bit)
{
    static const struct {
        const char *name;
        unsigned bit;
    } tab[] = {
        {"P-256", HSMCA_MDL_CURVE_P256},
        {"P-384", HSMCA_MDL_CURVE_P384},
        {"P-521", HSMCA_MDL_CURVE_P521},
        {"brainpoolP256r1", HSMCA_MDL_CURVE_BP256},
        {"brainpoolP320r1", HSMCA_MDL_CURVE_BP320},
        {"brainpoolP384r1", HSMCA_MDL_CURVE_BP384},
        {"brainpoolP512r1", HSMCA_MDL_CURVE_BP512},
    };
    size_t i;

    for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        if (strcmp(s, tab[i].name) == 0) {
            *bit = tab[i].bit;
            return 0;
        }
    }
    return -1;
}

/* A template may hold "{ca}" and nothing else in braces; printable ASCII without spaces. */
static int
template_ok(const char *t, size_t max)
{
    const char *s;

    if (strlen(t) == 0 || strlen(t) > max)
        return 0;
    for (s = t; *s != '\0'; s++) {
        if (*s <= ' ' || *s > '~')
            return 0;
        if (*s == '{') {
            if (strncmp(s, "{ca}", 4) != 0)
                return 0;
            s += 3;
        } else if (*s == '}') {
            return 0;
        }
    }
    return 1;
}

static unsigned
usages(json_t *arr, int *bad)
{
    size_t i;
    json_t *v;
    unsigned ku = 0;

    *bad = !json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 9;
    if (*bad)
        return 0;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        unsigned bit;

        if (s == NULL) {
            *bad = 1;
            return 0;
        }
        if (strcmp(s, "digitalSignature") == 0)
            bit = 0x80u;
        else if (strcmp(s, "keyCertSign") == 0)
            bit = 0x04u;
        else if (strcmp(s, "cRLSign") == 0)
            bit = 0x02u;
        else
            bit = 0x100u; /* any other usage: named below as a broken rule */
        ku |= bit;
    }
    return ku;
}

/* The extensions object, exactly as Annex B wants them for the type. */
static enum hsmca_err
check_extensions(json_t *ext, enum hsmca_mdl_type type, char *why, size_t why_size)
{
    json_error_t jerr;
    json_t *bc = NULL, *ku = NULL, *eku = NULL, *skid = NULL, *akid = NULL, *ian = NULL,
           *cdp = NULL, *arr = NULL, *pathlen = NULL;
    int crit = 0, ca = 0, bad = 0;
    const char *pfx = type == HSMCA_MDL_IACA ? "iaca" : "ds";
    char rule[40];
    unsigned bits;

    if (json_unpack_ex(ext, &jerr, JSON_STRICT, "{s?o, s:o, s?o, s:o, s?o, s:o, s:o}",
                       "basic_constraints", &bc, "key_usage", &ku, "extended_key_usage", &eku,
                       "subject_key_identifier", &skid, "authority_key_identifier", &akid,
                       "issuer_alt_name", &ian, "crl_distribution_points", &cdp) != 0)
        return invalid(why, why_size, "extensions: unknown or missing member");
    /* basicConstraints: the IACA is a CA with pathLen 0, critical; a DS carries none */
    snprintf(rule, sizeof(rule), "%s-basic-constraints", pfx);
    if (type == HSMCA_MDL_IACA) {
        if (bc == NULL)
            return broken(why, why_size, rule, "an IACA carries basicConstraints");
        if (json_unpack_ex(bc, &jerr, JSON_STRICT, "{s:b, s:b, s?o}", "critical", &crit, "ca", &ca,
                           "path_len", &pathlen) != 0)
            return invalid(why, why_size, "basic_constraints: unknown or missing member");
        if (!crit || !ca || pathlen == NULL || !json_is_integer(pathlen) ||
            json_integer_value(pathlen) != 0)
            return broken(why, why_size, rule,
                          "an IACA's basicConstraints is critical, cA true, pathLen 0");
    } else if (bc != NULL) {
        return broken(why, why_size, rule, "a DS certificate carries no basicConstraints");
    }
    /* keyUsage, critical */
    snprintf(rule, sizeof(rule), "%s-key-usage", pfx);
    if (json_unpack_ex(ku, &jerr, JSON_STRICT, "{s:b, s:o}", "critical", &crit, "usages", &arr) !=
        0)
        return invalid(why, why_size, "key_usage: unknown or missing member");
    bits = usages(arr, &bad);
    if (bad)
        return invalid(why, why_size, "key_usage.usages: a list of names");
    if (!crit)
        return broken(why, why_size, rule, "keyUsage must be critical");
    if (type == HSMCA_MDL_IACA && bits != (0x04u | 0x02u))
        return broken(why, why_size, rule, "an IACA's keyUsage is exactly keyCertSign, cRLSign");
    if (type == HSMCA_MDL_DS && bits != 0x80u)
        return broken(why, why_size, rule, "a DS keyUsage is exactly digitalSignature");
    /* extendedKeyUsage: the DS's critical 1.0.18013.5.1.2; none on the IACA */
    if (type == HSMCA_MDL_DS) {
        json_t *oid;

        if (eku == NULL)
            return broken(why, why_size, "ds-eku", "a DS certificate carries the mDL DS EKU");
        if (json_unpack_ex(eku, &jerr, JSON_STRICT, "{s:b, s:o}", "critical", &crit, "oids",
                           &arr) != 0 ||
            !json_is_array(arr))
            return invalid(why, why_size, "extended_key_usage: unknown or missing member");
        oid = json_array_get(arr, 0);
        if (json_array_size(arr) != 1 || !json_is_string(oid) ||
            strcmp(json_string_value(oid), HSMCA_MDL_EKU_DS) != 0)
            return broken(why, why_size, "ds-eku", "the EKU is exactly %s", HSMCA_MDL_EKU_DS);
        if (!crit)
            return broken(why, why_size, "ds-eku", "the EKU must be critical");
    } else if (eku != NULL) {
        return broken(why, why_size, "iaca-eku", "an IACA carries no extendedKeyUsage");
    }
    /* the identifiers and names: present, never critical */
    if (json_unpack_ex(skid, &jerr, JSON_STRICT, "{s:b}", "critical", &crit) != 0)
        return invalid(why, why_size, "subject_key_identifier: {\"critical\": false}");
    if (crit)
        return broken(why, why_size, type == HSMCA_MDL_IACA ? "iaca-ski" : "ds-ski",
                      "subjectKeyIdentifier must not be critical");
    if (type == HSMCA_MDL_DS) {
        if (akid == NULL)
            return broken(why, why_size, "ds-aki", "a DS carries authorityKeyIdentifier");
        if (json_unpack_ex(akid, &jerr, JSON_STRICT, "{s:b}", "critical", &crit) != 0)
            return invalid(why, why_size, "authority_key_identifier: {\"critical\": false}");
        if (crit)
            return broken(why, why_size, "ds-aki", "authorityKeyIdentifier must not be critical");
    } else if (akid != NULL) {
        return broken(why, why_size, "iaca-aki",
                      "this IACA profile is self-signed and names no authority key");
    }
    if (json_unpack_ex(ian, &jerr, JSON_STRICT, "{s:b}", "critical", &crit) != 0)
        return invalid(why, why_size, "issuer_alt_name: {\"critical\": false}");
    snprintf(rule, sizeof(rule), "%s-issuer-alt-name", pfx);
    if (crit)
        return broken(why, why_size, rule, "issuerAlternativeName must not be critical");
    if (json_unpack_ex(cdp, &jerr, JSON_STRICT, "{s:b}", "critical", &crit) != 0)
        return invalid(why, why_size, "crl_distribution_points: {\"critical\": false}");
    snprintf(rule, sizeof(rule), "%s-crl-distribution-point", pfx);
    if (crit)
        return broken(why, why_size, rule, "CRLDistributionPoints must not be critical");
    return HSMCA_OK;
}

enum hsmca_err
hsmca_mdl_profile_parse(const char *json, size_t len, struct hsmca_mdl_profile *out, char *why,
                        size_t why_size)
{
    json_t *root = NULL, *curves = NULL, *ext = NULL, *v;
    json_error_t jerr;
    struct hsmca_mdl_profile p;
    const char *name = NULL, *type = NULL, *cn = NULL, *uri = NULL, *email = NULL, *crl = NULL;
    json_int_t days = 0, backdate = 0;
    size_t i;
    enum hsmca_err rc = HSMCA_E_PROFILE_INVALID;

    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (json == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_MDL_PROFILE_MAX)
        return HSMCA_E_TOO_LARGE;
    memset(&p, 0, sizeof(p));
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = invalid(why, why_size, "not JSON (or a duplicate key)");
        goto out;
    }
    if (json_unpack_ex(root, &jerr, JSON_STRICT,
                       "{s:s, s:s, s:{s:s}, s:{s:o}, s:{s:I, s:I}, s:{s?s, s?s}, s:s, s:o}", "name",
                       &name, "type", &type, "subject", "common_name", &cn, "key", "curves",
                       &curves, "validity", "days", &days, "backdate_seconds", &backdate,
                       "issuer_alt_name", "uri", &uri, "email", &email, "crl_distribution_point",
                       &crl, "extensions", &ext) != 0) {
        rc = invalid(why, why_size, jerr.text);
        goto out;
    }
    if (strlen(name) == 0 || strlen(name) > HSMCA_MDL_NAME_MAX) {
        rc = invalid(why, why_size, "name: 1..64 bytes");
        goto out;
    }
    memcpy(p.name, name, strlen(name) + 1);
    if (strcmp(type, "iaca") == 0) {
        p.type = HSMCA_MDL_IACA;
    } else if (strcmp(type, "ds") == 0) {
        p.type = HSMCA_MDL_DS;
    } else {
        rc = invalid(why, why_size, "type: \"iaca\" or \"ds\"");
        goto out;
    }
    if (strlen(cn) == 0 || strlen(cn) > HSMCA_MDL_NAME_MAX) {
        rc = broken(why, why_size, p.type == HSMCA_MDL_IACA ? "iaca-common-name" : "ds-common-name",
                    "the commonName is 1..64 characters");
        goto out;
    }
    memcpy(p.cn_default, cn, strlen(cn) + 1);
    if (!json_is_array(curves) || json_array_size(curves) == 0 || json_array_size(curves) > 7) {
        rc = invalid(why, why_size, "key.curves: a list of 1..7 curve names");
        goto out;
    }
    json_array_foreach(curves, i, v)
    {
        unsigned bit;

        if (!json_is_string(v)) {
            rc = invalid(why, why_size, "key.curves: names");
            goto out;
        }
        if (curve_bit(json_string_value(v), &bit) != 0) {
            rc = broken(why, why_size, p.type == HSMCA_MDL_IACA ? "iaca-curve" : "ds-curve",
                        "curve %.40s is not one Annex B allows", json_string_value(v));
            goto out;
        }
        p.curves |= bit;
    }
    if (days < 1 || (p.type == HSMCA_MDL_IACA && days > HSMCA_MDL_IACA_MAX_DAYS) ||
        (p.type == HSMCA_MDL_DS && days > HSMCA_MDL_DS_MAX_DAYS)) {
        rc = broken(why, why_size, p.type == HSMCA_MDL_IACA ? "iaca-validity" : "ds-validity",
                    "validity.days %lld is not 1..%u", (long long)days,
                    p.type == HSMCA_MDL_IACA ? HSMCA_MDL_IACA_MAX_DAYS : HSMCA_MDL_DS_MAX_DAYS);
        goto out;
    }
    p.days = (uint32_t)days;
    if (backdate < 0 || backdate > 86400) {
        rc = invalid(why, why_size, "validity.backdate_seconds: 0..86400");
        goto out;
    }
    p.backdate = (uint32_t)backdate;
    if ((uri == NULL) == (email == NULL)) {
        rc = broken(why, why_size,
                    p.type == HSMCA_MDL_IACA ? "iaca-issuer-alt-name" : "ds-issuer-alt-name",
                    "issuer_alt_name is one \"uri\" or one \"email\"");
        goto out;
    }
    p.ian_is_email = email != NULL;
    if (!template_ok(email != NULL ? email : uri, HSMCA_MDL_URL_MAX) ||
        (email != NULL && strchr(email, '@') == NULL) ||
        (uri != NULL && strstr(uri, "://") == NULL)) {
        rc = broken(why, why_size,
                    p.type == HSMCA_MDL_IACA ? "iaca-issuer-alt-name" : "ds-issuer-alt-name",
                    "issuer_alt_name is a URI or an rfc822 address (printable, <= 255 bytes)");
        goto out;
    }
    memcpy(p.ian, email != NULL ? email : uri, strlen(email != NULL ? email : uri) + 1);
    if (!template_ok(crl, HSMCA_MDL_URL_MAX) ||
        (strncmp(crl, "http://", 7) != 0 && strncmp(crl, "https://", 8) != 0)) {
        rc = broken(why, why_size,
                    p.type == HSMCA_MDL_IACA ? "iaca-crl-distribution-point"
                                             : "ds-crl-distribution-point",
                    "crl_distribution_point is an http(s) URI of <= 255 printable bytes");
        goto out;
    }
    memcpy(p.crl_url, crl, strlen(crl) + 1);
    rc = check_extensions(ext, p.type, why, why_size);
    if (rc != HSMCA_OK)
        goto out;
    *out = p;
    rc = HSMCA_OK;
out:
    json_decref(root);
    return rc;
}

HSMCA_POLICY_PARSER(mdl_profile_parse, hsmca_mdl_profile_parse, struct hsmca_mdl_profile)

enum hsmca_err
hsmca_mdl_profile_load(const char *path, struct hsmca_mdl_profile *out, char *why, size_t why_size)
{
    if (path == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return hsmca_policy_load(path, HSMCA_MDL_PROFILE_MAX, mdl_profile_parse, out, NULL, why,
                             why_size);
}
