/* SPDX-License-Identifier: Apache-2.0
 *
 * profile.c -- loads certificate profiles (policies/profiles/matter-*.json) and checks each field
 * against the Matter rules for the profile's type (docs/matter-rules.md), so that a profile
 * can never ask the builders for a certificate a commissioner would refuse. Owns no state; never
 * touches keys.
 */
#include "hsmca/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/log.h"
#include "hsmca/util.h"

const char *
hsmca_profile_type_name(enum hsmca_profile_type t)
{
    switch (t) {
    case HSMCA_PROFILE_PAA:
        return "paa";
    case HSMCA_PROFILE_PAI:
        return "pai";
    case HSMCA_PROFILE_DAC:
        return "dac";
    }
    return "unknown";
}

static enum hsmca_err
rule(const char *name, const char *why)
{
    hsmca_log(HSMCA_LOG_WARN, "profile", "rule", "rule=%s reason=\"%s\"", name, why);
    return HSMCA_E_PROFILE_RULE;
}

static int
presence(const char *s, enum hsmca_profile_presence *out)
{
    if (strcmp(s, "forbidden") == 0)
        *out = HSMCA_PRESENCE_FORBIDDEN;
    else if (strcmp(s, "optional") == 0)
        *out = HSMCA_PRESENCE_OPTIONAL;
    else if (strcmp(s, "required") == 0)
        *out = HSMCA_PRESENCE_REQUIRED;
    else
        return -1;
    return 0;
}

/* The template may use {vid} and {pid} only; "Mvid:"/"Mpid:" would collide with the legacy CN
 * encoding (N8) and are refused. */
static enum hsmca_err
check_template(const char *t, const struct hsmca_profile *p)
{
    const char *s = t;

    if (strstr(t, "Mvid:") != NULL || strstr(t, "Mpid:") != NULL)
        return rule("N8", "the common name may not carry the legacy Mvid:/Mpid: encoding");
    while ((s = strchr(s, '{')) != NULL) {
        if (strncmp(s, "{vid}", 5) == 0) {
            if (p->vid == HSMCA_PRESENCE_FORBIDDEN)
                return rule("N11", "{vid} in a profile without a VID");
            s += 5;
        } else if (strncmp(s, "{pid}", 5) == 0) {
            if (p->pid == HSMCA_PRESENCE_FORBIDDEN)
                return rule("paa-pid", "{pid} in a profile without a PID");
            s += 5;
        } else {
            return HSMCA_E_PROFILE_INVALID;
        }
    }
    if (strchr(t, '}') != NULL && strstr(t, "{vid}") == NULL && strstr(t, "{pid}") == NULL)
        return HSMCA_E_PROFILE_INVALID;
    return HSMCA_OK;
}

/* The Matter rules for each type (sections 2-3); the profile must say exactly this. */
static enum hsmca_err
check_rules(const struct hsmca_profile *p, int bc_crit, int ku_crit, int skid_crit, int akid_crit)
{
    if (!bc_crit)
        return rule("C7", "basicConstraints must be critical");
    if (!ku_crit)
        return rule("C8", "keyUsage must be critical");
    if (skid_crit)
        return rule("C9", "subjectKeyIdentifier must not be critical");
    if (akid_crit)
        return rule("C10", "authorityKeyIdentifier must not be critical");
    switch (p->type) {
    case HSMCA_PROFILE_PAA:
        if (!p->ca || (p->pathlen != -1 && p->pathlen != 1))
            return rule("paa-basic-constraints", "a PAA is cA with pathLen absent or 1");
        if (p->pid != HSMCA_PRESENCE_FORBIDDEN)
            return rule("paa-pid", "a PAA must not carry a PID");
        break;
    case HSMCA_PROFILE_PAI:
        if (!p->ca || p->pathlen != 0)
            return rule("pai-pathlen", "a PAI is cA with pathLen 0");
        if (p->vid != HSMCA_PRESENCE_REQUIRED)
            return rule("pai-vid", "a PAI must carry a VID");
        if (!p->akid)
            return rule("C10", "a PAI must carry an authorityKeyIdentifier");
        break;
    case HSMCA_PROFILE_DAC:
        if (p->ca || p->pathlen != -1)
            return rule("dac-basic-constraints", "a DAC is not a CA and has no pathLen");
        if (p->vid != HSMCA_PRESENCE_REQUIRED || p->pid != HSMCA_PRESENCE_REQUIRED)
            return rule("dac-vidpid", "a DAC must carry a VID and a PID");
        if (!p->akid)
            return rule("C10", "a DAC must carry an authorityKeyIdentifier");
        if (p->ku != HSMCA_KU_DIGITAL_SIGNATURE)
            return rule("dac-key-usage", "a DAC's key usage is exactly digitalSignature");
        break;
    }
    if (p->type != HSMCA_PROFILE_DAC &&
        ((p->ku & (HSMCA_KU_KEY_CERT_SIGN | HSMCA_KU_CRL_SIGN)) !=
             (HSMCA_KU_KEY_CERT_SIGN | HSMCA_KU_CRL_SIGN) ||
         (p->ku & ~(HSMCA_KU_KEY_CERT_SIGN | HSMCA_KU_CRL_SIGN | HSMCA_KU_DIGITAL_SIGNATURE)) != 0))
        return rule("ca-key-usage", "a PAA/PAI has keyCertSign and cRLSign, at most also "
                                    "digitalSignature");
    return HSMCA_OK;
}

static enum hsmca_err
parse_ku(json_t *arr, unsigned *out)
{
    size_t i;
    json_t *v;
    unsigned ku = 0, bit;

    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 3)
        return HSMCA_E_PROFILE_INVALID;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);

        if (s == NULL)
            return HSMCA_E_PROFILE_INVALID;
        if (strcmp(s, "digitalSignature") == 0)
            bit = HSMCA_KU_DIGITAL_SIGNATURE;
        else if (strcmp(s, "keyCertSign") == 0)
            bit = HSMCA_KU_KEY_CERT_SIGN;
        else if (strcmp(s, "cRLSign") == 0)
            bit = HSMCA_KU_CRL_SIGN;
        else
            return rule("key-usage", "only digitalSignature, keyCertSign and cRLSign are allowed");
        if ((ku & bit) != 0)
            return HSMCA_E_PROFILE_INVALID;
        ku |= bit;
    }
    *out = ku;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_profile_parse(const char *json, size_t len, struct hsmca_profile *out)
{
    json_t *root = NULL, *pathlen = NULL, *ku = NULL, *akid = NULL, *days = NULL, *not_after = NULL;
    json_error_t jerr;
    struct hsmca_profile p;
    const char *name = NULL, *type = NULL, *cn = NULL, *vid = NULL, *pid = NULL;
    json_int_t backdate = 0;
    int bc_crit = 0, ku_crit = 0, skid_crit = 0, akid_crit = 0, ca = 0;
    enum hsmca_err rc = HSMCA_E_PROFILE_INVALID;

    if (json == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_PROFILE_MAX)
        return HSMCA_E_TOO_LARGE;
    memset(&p, 0, sizeof(p));
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        goto out;
    if (json_unpack_ex(root, &jerr, JSON_STRICT,
                       "{s:s, s:s, s:{s:s, s:s, s:s}, s:{s?o, s?o, s:I}, "
                       "s:{s:{s:b, s:b, s?o}, s:{s:b, s:o}, s:{s:b}, s?o}}",
                       "name", &name, "type", &type, "subject", "common_name", &cn, "vid", &vid,
                       "pid", &pid, "validity", "days", &days, "not_after", &not_after,
                       "backdate_seconds", &backdate, "extensions", "basic_constraints", "critical",
                       &bc_crit, "ca", &ca, "path_len", &pathlen, "key_usage", "critical", &ku_crit,
                       "usages", &ku, "subject_key_identifier", "critical", &skid_crit,
                       "authority_key_identifier", &akid) != 0)
        goto out;
    if (strlen(name) == 0 || strlen(name) > HSMCA_PROFILE_NAME_MAX)
        goto out;
    memcpy(p.name, name, strlen(name) + 1);
    if (strcmp(type, "paa") == 0)
        p.type = HSMCA_PROFILE_PAA;
    else if (strcmp(type, "pai") == 0)
        p.type = HSMCA_PROFILE_PAI;
    else if (strcmp(type, "dac") == 0)
        p.type = HSMCA_PROFILE_DAC;
    else
        goto out;
    if (presence(vid, &p.vid) != 0 || presence(pid, &p.pid) != 0)
        goto out;
    if (strlen(cn) == 0 || strlen(cn) > HSMCA_MATTER_CN_MAX) {
        rc = rule("N7", "the common-name template is empty or longer than 64 bytes");
        goto out;
    }
    memcpy(p.cn_template, cn, strlen(cn) + 1);
    /* exactly one of days / not_after */
    if ((days == NULL) == (not_after == NULL))
        goto out;
    if (not_after != NULL) {
        if (!json_is_string(not_after) ||
            strcmp(json_string_value(not_after), "99991231235959Z") != 0)
            goto out; /* the only fixed end date is "no well-defined expiration" (V7) */
        p.no_expiry = 1;
    } else {
        if (!json_is_integer(days) || json_integer_value(days) < 1 ||
            json_integer_value(days) > 36500)
            goto out;
        p.days = (uint32_t)json_integer_value(days);
    }
    if (backdate < 0 || backdate > 86400)
        goto out;
    p.backdate = (uint32_t)backdate;
    p.ca = ca;
    p.pathlen = -1;
    if (pathlen != NULL) {
        if (!json_is_integer(pathlen) || json_integer_value(pathlen) < 0 ||
            json_integer_value(pathlen) > 8)
            goto out;
        p.pathlen = (int)json_integer_value(pathlen);
    }
    rc = parse_ku(ku, &p.ku);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_PROFILE_INVALID;
    if (akid != NULL) {
        if (json_unpack_ex(akid, &jerr, JSON_STRICT, "{s:b}", "critical", &akid_crit) != 0)
            goto out;
        p.akid = 1;
    }
    rc = check_rules(&p, bc_crit, ku_crit, skid_crit, akid_crit);
    if (rc != HSMCA_OK)
        goto out;
    rc = check_template(p.cn_template, &p);
    if (rc != HSMCA_OK)
        goto out;
    *out = p;
    rc = HSMCA_OK;
out:
    json_decref(root);
    return rc;
}

/* profiles carry no reason text: their errors are their codes */
static enum hsmca_err
profile_parse(const char *text, size_t len, void *out, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    return hsmca_profile_parse(text, len, out);
}

enum hsmca_err
hsmca_profile_load(const char *path, struct hsmca_profile *out)
{
    if (path == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    return hsmca_policy_load(path, HSMCA_PROFILE_MAX, profile_parse, out, NULL, NULL, 0);
}

enum hsmca_err
hsmca_profile_cn(const struct hsmca_profile *p, int has_vid, uint16_t vid, int has_pid,
                 uint16_t pid, char *out, size_t out_size)
{
    const char *s;
    size_t n = 0;
    char hex[5];

    if (p == NULL || out == NULL || out_size == 0)
        return HSMCA_E_INVALID_ARG;
    for (s = p->cn_template; *s != '\0';) {
        const char *add = NULL;
        size_t alen;

        if (strncmp(s, "{vid}", 5) == 0 || strncmp(s, "{pid}", 5) == 0) {
            int is_vid = s[1] == 'v';

            if (is_vid ? !has_vid : !has_pid)
                return HSMCA_E_INVALID_ARG;
            snprintf(hex, sizeof(hex), "%04X", (unsigned)(is_vid ? vid : pid));
            add = hex;
            alen = 4;
            s += 5;
        } else {
            add = s;
            alen = 1;
            s++;
        }
        if (n + alen > HSMCA_MATTER_CN_MAX)
            return HSMCA_E_PROFILE_RULE;
        if (n + alen + 1 > out_size)
            return HSMCA_E_INVALID_ARG;
        memcpy(out + n, add, alen);
        n += alen;
    }
    out[n] = '\0';
    return HSMCA_OK;
}
