/* SPDX-License-Identifier: Apache-2.0
 *
 * profile.c -- loads certificate profiles (policies/profiles/matter-*.json) and checks each field
 * against the Matter rules for the profile's type (docs/matter-rules.md), so that a profile
 * can never ask the builders for a certificate a commissioner would refuse. Owns no state; never
 * touches keys.
 */
#include "hsmca/profile.h"

#include <regex.h>
#include <stdarg.h>
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

/* The template may use {vid}, {pid} and (a DAC whose device id goes in the common name, once)
 * {device_id}; "Mvid:"/"Mpid:" would collide with the legacy CN encoding (N8) and are refused. */
static enum hsmca_err
check_template(const char *t, const struct hsmca_profile *p)
{
    const char *s = t;
    int ndev = 0;

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
        } else if (strncmp(s, "{device_id}", 11) == 0) {
            if (p->device_id.attr != HSMCA_DEVID_COMMON_NAME)
                return rule("device-id", "{device_id} in a profile whose device id is not in the "
                                         "common name");
            ndev++;
            s += 11;
        } else {
            return HSMCA_E_PROFILE_INVALID;
        }
    }
    if (strchr(t, '}') != NULL && strstr(t, "{vid}") == NULL && strstr(t, "{pid}") == NULL &&
        ndev == 0)
        return HSMCA_E_PROFILE_INVALID;
    if (p->device_id.attr == HSMCA_DEVID_COMMON_NAME && ndev != 1)
        return rule("device-id", "a device id in the common name needs {device_id} once in "
                                 "the template");
    return HSMCA_OK;
}

const char *
hsmca_profile_devid_attr_name(enum hsmca_profile_devid_attr a)
{
    switch (a) {
    case HSMCA_DEVID_COMMON_NAME:
        return "commonName";
    case HSMCA_DEVID_SERIAL_NUMBER:
        return "serialNumber";
    case HSMCA_DEVID_NONE:
        break;
    }
    return "none";
}

/* Compile "^(pattern)$" (the whole value must match); 0 on success (then regfree). */
static int
devid_regex(const char *pattern, regex_t *re)
{
    char full[HSMCA_DEVICE_ID_PATTERN_MAX + 8];

    if (snprintf(full, sizeof(full), "^(%s)$", pattern) >= (int)sizeof(full))
        return -1;
    return regcomp(re, full, REG_EXTENDED | REG_NOSUB) == 0 ? 0 : -1;
}

/*
 * A pattern's cost stays bounded (glibc's regcomp copies a bounded repetition's subtree once per
 * count, and back-references make regexec exponential): no back-reference, counts of at most
 * 64 (a device id's longest), at most 3 bounded repetitions. 0 when the pattern is acceptable.
 */
static int
pattern_costly(const char *pat)
{
    const char *s;
    unsigned braces = 0;

    for (s = pat; *s != '\0'; s++) {
        if (*s == '\\' && s[1] >= '0' && s[1] <= '9')
            return 1;
        if (*s == '\\' && s[1] != '\0') {
            s++;
            continue;
        }
        if (*s == '{') {
            unsigned n = 0, digits = 0;

            if (++braces > 3)
                return 1;
            for (s++; *s != '\0' && *s != '}'; s++) {
                if (*s >= '0' && *s <= '9') {
                    n = n * 10 + (unsigned)(*s - '0');
                    if (++digits > 2 || n > HSMCA_DEVICE_ID_MAX)
                        return 1;
                } else if (*s == ',') {
                    n = 0;
                    digits = 0;
                } else {
                    return 1;
                }
            }
            if (*s == '\0')
                return 1;
        }
    }
    return 0;
}

/* subject.device_id: {"attribute", "pattern", "max_length", "required"?, "from_csr"?} */
static enum hsmca_err
parse_device_id(json_t *o, struct hsmca_profile *p)
{
    json_error_t jerr;
    const char *attr = NULL, *pattern = NULL;
    json_int_t max_len = 0;
    int required = 0, from_csr = 0;
    regex_t re;

    if (json_unpack_ex(o, &jerr, JSON_STRICT, "{s:s, s:s, s:I, s?b, s?b}", "attribute", &attr,
                       "pattern", &pattern, "max_length", &max_len, "required", &required,
                       "from_csr", &from_csr) != 0)
        return HSMCA_E_PROFILE_INVALID;
    if (p->type != HSMCA_PROFILE_DAC)
        return rule("device-id", "only a DAC profile takes a per-device subject value");
    if (strcmp(attr, "commonName") == 0)
        p->device_id.attr = HSMCA_DEVID_COMMON_NAME;
    else if (strcmp(attr, "serialNumber") == 0)
        p->device_id.attr = HSMCA_DEVID_SERIAL_NUMBER;
    else
        return HSMCA_E_PROFILE_INVALID;
    if (max_len < 1 || max_len > HSMCA_DEVICE_ID_MAX)
        return rule("N7", "a device id is 1 to 64 bytes");
    if (strlen(pattern) == 0 || strlen(pattern) > HSMCA_DEVICE_ID_PATTERN_MAX)
        return HSMCA_E_PROFILE_INVALID;
    if (pattern_costly(pattern))
        return rule("device-id-pattern", "no back-reference, repetition counts of at most 64, "
                                         "at most 3 of them");
    if (devid_regex(pattern, &re) != 0)
        return HSMCA_E_PROFILE_INVALID;
    regfree(&re);
    if (p->device_id.attr == HSMCA_DEVID_COMMON_NAME && !required)
        return rule("device-id", "a device id in the common name must be required");
    p->device_id.max_len = (uint32_t)max_len;
    p->device_id.required = required;
    p->device_id.from_csr = from_csr;
    memcpy(p->device_id.pattern, pattern, strlen(pattern) + 1);
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
    json_t *root = NULL, *pathlen = NULL, *ku = NULL, *akid = NULL, *days = NULL, *not_after = NULL,
           *devid = NULL;
    json_error_t jerr;
    struct hsmca_profile p;
    const char *name = NULL, *type = NULL, *cn = NULL, *vid = NULL, *pid = NULL;
    json_int_t backdate = 0;
    int bc_crit = 0, ku_crit = 0, skid_crit = 0, akid_crit = 0, ca = 0, within = 0;
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
                       "{s:s, s:s, s:{s:s, s:s, s:s, s?o}, s:{s?o, s?o, s:I, s?b}, "
                       "s:{s:{s:b, s:b, s?o}, s:{s:b, s:o}, s:{s:b}, s?o}}",
                       "name", &name, "type", &type, "subject", "common_name", &cn, "vid", &vid,
                       "pid", &pid, "device_id", &devid, "validity", "days", &days, "not_after",
                       &not_after, "backdate_seconds", &backdate, "within_issuer", &within,
                       "extensions", "basic_constraints", "critical", &bc_crit, "ca", &ca,
                       "path_len", &pathlen, "key_usage", "critical", &ku_crit, "usages", &ku,
                       "subject_key_identifier", "critical", &skid_crit, "authority_key_identifier",
                       &akid) != 0)
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
    if (devid != NULL) {
        rc = parse_device_id(devid, &p);
        if (rc != HSMCA_OK)
            goto out;
        rc = HSMCA_E_PROFILE_INVALID;
    }
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
    if (within && p.type != HSMCA_PROFILE_DAC) {
        rc = rule("within-issuer", "only a DAC profile says within_issuer");
        goto out;
    }
    p.within_issuer = within;
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
    return hsmca_profile_cn_dev(p, has_vid, vid, has_pid, pid, NULL, out, out_size);
}

enum hsmca_err
hsmca_profile_cn_dev(const struct hsmca_profile *p, int has_vid, uint16_t vid, int has_pid,
                     uint16_t pid, const char *device_id, char *out, size_t out_size)
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
        } else if (strncmp(s, "{device_id}", 11) == 0) {
            if (device_id == NULL)
                return HSMCA_E_INVALID_ARG;
            add = device_id;
            alen = strlen(device_id);
            s += 11;
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

/* PrintableString (X.680 41.4): letters, digits, space and '()+,-./:=? */
static int
printable_string_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr(" '()+,-./:=?", c) != NULL;
}

static enum hsmca_err devid_refuse(enum hsmca_err code, char *why, size_t why_len, const char *fmt,
                                   ...) __attribute__((format(printf, 4, 5)));

static enum hsmca_err
devid_refuse(enum hsmca_err code, char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;

    if (why != NULL && why_len > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

enum hsmca_err
hsmca_profile_device_id_check(const struct hsmca_profile *p, const char *value, char *why,
                              size_t why_len)
{
    const char *aname;
    char cn[HSMCA_MATTER_CN_MAX + 1];
    size_t i, n;
    regex_t re;
    int m;
    enum hsmca_err rc;

    if (p == NULL)
        return HSMCA_E_INVALID_ARG;
    if (why != NULL && why_len > 0)
        why[0] = '\0';
    aname = hsmca_profile_devid_attr_name(p->device_id.attr);
    if (p->device_id.attr == HSMCA_DEVID_NONE)
        return value == NULL ? HSMCA_OK
                             : devid_refuse(HSMCA_E_DEVICE_ID_PATTERN, why, why_len,
                                            "the DAC profile %s takes no device_id", p->name);
    if (value == NULL)
        return p->device_id.required
                   ? devid_refuse(HSMCA_E_DEVICE_ID_PATTERN, why, why_len,
                                  "the DAC profile %s requires a device_id (its %s)", p->name,
                                  aname)
                   : HSMCA_OK;
    n = strnlen(value, HSMCA_DEVICE_ID_MAX + 1);
    if (n == 0 || n > p->device_id.max_len)
        return devid_refuse(HSMCA_E_DEVICE_ID_PATTERN, why, why_len,
                            "the device_id must be 1 to %u bytes (DAC profile %s)",
                            (unsigned)p->device_id.max_len, p->name);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];

        if (c < 0x20 || c > 0x7e)
            return devid_refuse(HSMCA_E_DEVICE_ID_RULE, why, why_len,
                                "the device_id must be printable ASCII (byte %zu is not)", i);
        if (p->device_id.attr == HSMCA_DEVID_SERIAL_NUMBER && !printable_string_char(c))
            return devid_refuse(HSMCA_E_DEVICE_ID_RULE, why, why_len,
                                "a serialNumber is a PrintableString: A-Z a-z 0-9 space "
                                "'()+,-./:=? only (byte %zu is not)",
                                i);
    }
    if (strstr(value, "Mvid:") != NULL || strstr(value, "Mpid:") != NULL)
        return devid_refuse(HSMCA_E_DEVICE_ID_RULE, why, why_len,
                            "the device_id may not carry the legacy Mvid:/Mpid: encoding (N8): the "
                            "VID and PID are the PAI's");
    if (devid_regex(p->device_id.pattern, &re) != 0)
        return HSMCA_E_INTERNAL; /* checked at load */
    m = regexec(&re, value, 0, NULL, 0);
    regfree(&re);
    if (m != 0)
        return devid_refuse(HSMCA_E_DEVICE_ID_PATTERN, why, why_len,
                            "the device_id does not match the DAC profile %s's pattern %s", p->name,
                            p->device_id.pattern);
    if (p->device_id.attr == HSMCA_DEVID_COMMON_NAME) {
        rc = hsmca_profile_cn_dev(p, 1, 0, 1, 0, value, cn, sizeof(cn));
        if (rc == HSMCA_E_PROFILE_RULE || rc == HSMCA_E_INVALID_ARG)
            return devid_refuse(HSMCA_E_DEVICE_ID_RULE, why, why_len,
                                "with this device_id the common name would exceed 64 bytes (N7)");
        if (rc != HSMCA_OK)
            return rc;
    }
    return HSMCA_OK;
}
