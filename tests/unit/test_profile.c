/* SPDX-License-Identifier: Apache-2.0
 *
 * test_profile.c -- certificate profiles: malformed JSON and every Matter rule a profile could
 * break are refused (size at N and N+1, unknown and duplicate fields, criticality, pathLen, key
 * usage, VID/PID presence, common-name template), then the three shipped profiles load with the
 * values chip-cert's reference profile has (docs/matter-rules.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hsmca/limits.h"
#include "hsmca/profile.h"

/* A DAC profile with one substitution: "%s" pieces filled from the arguments. */
#define DAC_FMT                                                                                    \
    "{\"name\": \"t\", \"type\": \"%s\", \"subject\": {\"common_name\": \"%s\", \"vid\": \"%s\", " \
    "\"pid\": \"%s\"}, \"validity\": {%s, \"backdate_seconds\": 60}, \"extensions\": {"            \
    "\"basic_constraints\": {\"critical\": %s, \"ca\": %s%s}, \"key_usage\": {\"critical\": "      \
    "true, "                                                                                       \
    "\"usages\": [%s]}, \"subject_key_identifier\": {\"critical\": false}, "                       \
    "\"authority_key_identifier\": {\"critical\": %s}%s}}"

struct pcase {
    const char *type, *cn, *vid, *pid, *validity, *bc_crit, *ca, *pathlen, *ku, *akid_crit, *extra;
    enum hsmca_err want;
};

static enum hsmca_err
try_case(const struct pcase *c, struct hsmca_profile *out)
{
    char buf[2048];
    int n = snprintf(buf, sizeof(buf), DAC_FMT, c->type, c->cn, c->vid, c->pid, c->validity,
                     c->bc_crit, c->ca, c->pathlen, c->ku, c->akid_crit, c->extra);

    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return hsmca_profile_parse(buf, (size_t)n, out);
}

#define DAC_OK                                                                                     \
    "dac", "DAC {vid}/{pid}", "required", "required", "\"not_after\": \"99991231235959Z\"",        \
        "true", "false", "", "\"digitalSignature\"", "false", ""

static void
refusals(void **state)
{
    static const struct pcase cases[] = {
        /* the good one, as a control */
        {DAC_OK, HSMCA_OK},
        /* C7/C8/C9/C10 criticality */
        {"dac", "x", "required", "required", "\"days\": 10", "false", "false", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"dac", "x", "required", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\"", "true", "", HSMCA_E_PROFILE_RULE},
        /* DAC: CA, pathLen, key usage, VID/PID */
        {"dac", "x", "required", "required", "\"days\": 10", "true", "true", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"dac", "x", "required", "required", "\"days\": 10", "true", "false", ", \"path_len\": 0",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"dac", "x", "required", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\", \"keyCertSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"dac", "x", "required", "optional", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_RULE},
        /* PAI: pathLen exactly 0, VID required */
        {"pai", "x", "required", "optional", "\"days\": 10", "true", "true", ", \"path_len\": 1",
         "\"keyCertSign\", \"cRLSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"pai", "x", "required", "optional", "\"days\": 10", "true", "true", "",
         "\"keyCertSign\", \"cRLSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"pai", "x", "optional", "optional", "\"days\": 10", "true", "true", ", \"path_len\": 0",
         "\"keyCertSign\", \"cRLSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"pai", "x", "required", "optional", "\"days\": 10", "true", "true", ", \"path_len\": 0",
         "\"keyCertSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"pai", "x", "required", "optional", "\"days\": 10", "true", "true", ", \"path_len\": 0",
         "\"keyCertSign\", \"cRLSign\", \"digitalSignature\"", "false", "", HSMCA_OK},
        /* PAA: pathLen absent or 1, never a PID */
        {"paa", "x", "optional", "forbidden", "\"days\": 10", "true", "true", ", \"path_len\": 2",
         "\"keyCertSign\", \"cRLSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"paa", "x", "optional", "optional", "\"days\": 10", "true", "true", "",
         "\"keyCertSign\", \"cRLSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"paa", "x", "optional", "forbidden", "\"days\": 10", "true", "true", "",
         "\"keyCertSign\", \"cRLSign\"", "false", "", HSMCA_OK},
        /* templates: legacy CN encoding, unknown placeholder, {pid} without a PID, > 64 bytes */
        {"dac", "ACME Mvid:FFF1", "required", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"dac", "ACME {serial}", "required", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_INVALID},
        {"paa", "PAA {pid}", "optional", "forbidden", "\"days\": 10", "true", "true", "",
         "\"keyCertSign\", \"cRLSign\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"dac", "0123456789012345678901234567890123456789012345678901234567890123", "required",
         "required", "\"days\": 10", "true", "false", "", "\"digitalSignature\"", "false", "",
         HSMCA_OK},
        {"dac", "01234567890123456789012345678901234567890123456789012345678901234", "required",
         "required", "\"days\": 10", "true", "false", "", "\"digitalSignature\"", "false", "",
         HSMCA_E_PROFILE_RULE},
        /* validity: only 99991231235959Z as a fixed end; days in 1..36500; not both */
        {"dac", "x", "required", "required", "\"not_after\": \"20301231235959Z\"", "true", "false",
         "", "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_INVALID},
        {"dac", "x", "required", "required", "\"days\": 0", "true", "false", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_INVALID},
        {"dac", "x", "required", "required", "\"days\": 1, \"not_after\": \"99991231235959Z\"",
         "true", "false", "", "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_INVALID},
        /* JSON shape: unknown usage, duplicate usage, unknown extension, wrong type */
        {"dac", "x", "required", "required", "\"days\": 10", "true", "false", "",
         "\"nonRepudiation\"", "false", "", HSMCA_E_PROFILE_RULE},
        {"dac", "x", "required", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\", \"digitalSignature\"", "false", "", HSMCA_E_PROFILE_INVALID},
        {"dac", "x", "required", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\"", "false", ", \"extended_key_usage\": {}", HSMCA_E_PROFILE_INVALID},
        {"ica", "x", "required", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_INVALID},
        {"dac", "x", "maybe", "required", "\"days\": 10", "true", "false", "",
         "\"digitalSignature\"", "false", "", HSMCA_E_PROFILE_INVALID},
    };
    struct hsmca_profile p;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum hsmca_err rc = try_case(&cases[i], &p);

        if (rc != cases[i].want)
            fail_msg("case %zu (%s %s): got %s want %s", i, cases[i].type, cases[i].cn,
                     hsmca_err_code(rc), hsmca_err_code(cases[i].want));
    }
    assert_int_equal(hsmca_profile_parse("{", 1, &p), HSMCA_E_PROFILE_INVALID);
    assert_int_equal(hsmca_profile_parse("{\"name\": \"a\", \"name\": \"b\"}", 26, &p),
                     HSMCA_E_PROFILE_INVALID);
    assert_int_equal(hsmca_profile_parse(NULL, 0, &p), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_profile_load("/nonexistent/profile.json", &p), HSMCA_E_IO);
}

static void
size_limit_at_n_and_n_plus_1(void **state)
{
    char good[2048], *buf = malloc(HSMCA_PROFILE_MAX + 1);
    struct pcase c = {DAC_OK, HSMCA_OK};
    struct hsmca_profile p;
    int n;

    (void)state;
    assert_non_null(buf);
    n = snprintf(good, sizeof(good), DAC_FMT, c.type, c.cn, c.vid, c.pid, c.validity, c.bc_crit,
                 c.ca, c.pathlen, c.ku, c.akid_crit, c.extra);
    memset(buf, ' ', HSMCA_PROFILE_MAX + 1);
    memcpy(buf, good, (size_t)n); /* valid JSON followed by whitespace */
    assert_int_equal(hsmca_profile_parse(buf, HSMCA_PROFILE_MAX, &p), HSMCA_OK);
    assert_int_equal(hsmca_profile_parse(buf, HSMCA_PROFILE_MAX + 1, &p), HSMCA_E_TOO_LARGE);
    free(buf);
}

static void
shipped_profiles_and_common_names(void **state)
{
    char path[1024], cn[HSMCA_MATTER_CN_MAX + 1];
    struct hsmca_profile paa, pai, dac;
    const char *src = getenv("HSMCA_SOURCE_DIR");

    (void)state;
    snprintf(path, sizeof(path), "%s/policies/profiles/matter-paa.json", src);
    assert_int_equal(hsmca_profile_load(path, &paa), HSMCA_OK);
    snprintf(path, sizeof(path), "%s/policies/profiles/matter-pai.json", src);
    assert_int_equal(hsmca_profile_load(path, &pai), HSMCA_OK);
    snprintf(path, sizeof(path), "%s/policies/profiles/matter-dac.json", src);
    assert_int_equal(hsmca_profile_load(path, &dac), HSMCA_OK);
    assert_int_equal(paa.type, HSMCA_PROFILE_PAA);
    assert_int_equal(paa.pathlen, 1);
    assert_int_equal(paa.pid, HSMCA_PRESENCE_FORBIDDEN);
    assert_int_equal(pai.pathlen, 0);
    assert_int_equal(pai.vid, HSMCA_PRESENCE_REQUIRED);
    assert_int_equal(dac.pathlen, -1);
    assert_false(dac.ca);
    assert_int_equal(dac.ku, HSMCA_KU_DIGITAL_SIGNATURE);
    assert_int_equal(pai.ku, HSMCA_KU_KEY_CERT_SIGN | HSMCA_KU_CRL_SIGN);
    assert_true(dac.no_expiry && dac.akid);
    assert_int_equal(hsmca_profile_cn(&dac, 1, 0xFFF1, 1, 0x00B1, cn, sizeof(cn)), HSMCA_OK);
    assert_string_equal(cn, "hsmca Matter DAC FFF1/00B1");
    assert_int_equal(hsmca_profile_cn(&dac, 1, 0xFFF1, 0, 0, cn, sizeof(cn)),
                     HSMCA_E_INVALID_ARG); /* {pid} needs a PID */
    assert_int_equal(hsmca_profile_cn(&dac, 1, 0xFFF1, 1, 1, cn, 8), HSMCA_E_INVALID_ARG);
    assert_string_equal(hsmca_profile_type_name(HSMCA_PROFILE_PAI), "pai");
}

/* A DAC (or type) profile whose subject carries device_id (a JSON object, or "" for none). */
static enum hsmca_err
devid_parse(const char *type, const char *cn, const char *devid, struct hsmca_profile *out)
{
    char buf[2048];
    int n = snprintf(
        buf, sizeof(buf),
        "{\"name\": \"dev\", \"type\": \"%s\", \"subject\": {\"common_name\": \"%s\", \"vid\": "
        "\"required\", \"pid\": \"%s\"%s%s}, \"validity\": {\"days\": 365, "
        "\"backdate_seconds\": 60}, \"extensions\": {\"basic_constraints\": {\"critical\": true, "
        "\"ca\": %s%s}, \"key_usage\": {\"critical\": true, \"usages\": [%s]}, "
        "\"subject_key_identifier\": {\"critical\": false}, \"authority_key_identifier\": "
        "{\"critical\": false}}}",
        type, cn, strcmp(type, "dac") == 0 ? "required" : "optional",
        devid[0] ? ", \"device_id\": " : "", devid, strcmp(type, "dac") == 0 ? "false" : "true",
        strcmp(type, "dac") == 0 ? "" : ", \"path_len\": 0",
        strcmp(type, "dac") == 0 ? "\"digitalSignature\"" : "\"keyCertSign\", \"cRLSign\"");

    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return hsmca_profile_parse(buf, (size_t)n, out);
}

#define SN_DEVID                                                                                   \
    "{\"attribute\": \"serialNumber\", \"pattern\": \"[0-9A-F]{16}\", \"max_length\": 16, "        \
    "\"required\": true}"

/* subject.device_id: what a profile may say, and every way it can be wrong. */
static void
device_id_profiles(void **state)
{
    static const struct {
        const char *type, *cn, *devid;
        enum hsmca_err want;
    } cases[] = {
        {"dac", "DAC {vid}/{pid}", SN_DEVID, HSMCA_OK},
        {"dac", "DAC {device_id}",
         "{\"attribute\": \"commonName\", \"pattern\": \"DEV-[0-9]+\", \"max_length\": 20, "
         "\"required\": true, \"from_csr\": true}",
         HSMCA_OK},
        /* commonName: {device_id} once in the template, and required */
        {"dac", "DAC {vid}",
         "{\"attribute\": \"commonName\", \"pattern\": \"x\", \"max_length\": 5, "
         "\"required\": true}",
         HSMCA_E_PROFILE_RULE},
        {"dac", "{device_id} {device_id}",
         "{\"attribute\": \"commonName\", \"pattern\": \"x\", \"max_length\": 5, "
         "\"required\": true}",
         HSMCA_E_PROFILE_RULE},
        {"dac", "DAC {device_id}",
         "{\"attribute\": \"commonName\", \"pattern\": \"x\", \"max_length\": 5}",
         HSMCA_E_PROFILE_RULE},
        /* {device_id} without a common-name device id */
        {"dac", "DAC {device_id}", SN_DEVID, HSMCA_E_PROFILE_RULE},
        {"dac", "DAC {device_id}", "", HSMCA_E_PROFILE_RULE},
        /* attribute, length, pattern, unknown members */
        {"dac", "DAC", "{\"attribute\": \"emailAddress\", \"pattern\": \"x\", \"max_length\": 5}",
         HSMCA_E_PROFILE_INVALID},
        {"dac", "DAC", "{\"attribute\": \"serialNumber\", \"pattern\": \"x\", \"max_length\": 0}",
         HSMCA_E_PROFILE_RULE},
        {"dac", "DAC", "{\"attribute\": \"serialNumber\", \"pattern\": \"x\", \"max_length\": 65}",
         HSMCA_E_PROFILE_RULE},
        {"dac", "DAC", "{\"attribute\": \"serialNumber\", \"pattern\": \"(\", \"max_length\": 5}",
         HSMCA_E_PROFILE_INVALID},
        {"dac", "DAC", "{\"attribute\": \"serialNumber\", \"pattern\": \"\", \"max_length\": 5}",
         HSMCA_E_PROFILE_INVALID},
        {"dac", "DAC",
         "{\"attribute\": \"serialNumber\", \"pattern\": \"x\", \"max_length\": 5, \"free\": 1}",
         HSMCA_E_PROFILE_INVALID},
        {"dac", "DAC", "\"serialNumber\"", HSMCA_E_PROFILE_INVALID},
        /* a pattern whose cost is bounded: no back-reference, counts <= 64, at most 3 */
        {"dac", "DAC",
         "{\"attribute\": \"serialNumber\", \"pattern\": \"(a)\\\\1\", \"max_length\": 5}",
         HSMCA_E_PROFILE_RULE},
        {"dac", "DAC",
         "{\"attribute\": \"serialNumber\", \"pattern\": \"a{65}\", \"max_length\": 5}",
         HSMCA_E_PROFILE_RULE},
        {"dac", "DAC",
         "{\"attribute\": \"serialNumber\", \"pattern\": \"((a{1,9}){9}){9}b{2}c{3}\", "
         "\"max_length\": 5}",
         HSMCA_E_PROFILE_RULE},
        {"dac", "DAC",
         "{\"attribute\": \"serialNumber\", \"pattern\": \"[0-9]{1,64}-\\\\{x\", "
         "\"max_length\": 5}",
         HSMCA_OK},
        /* only a DAC takes one */
        {"pai", "PAI {vid}", SN_DEVID, HSMCA_E_PROFILE_RULE},
    };
    struct hsmca_profile p;
    char longpat[HSMCA_DEVICE_ID_PATTERN_MAX + 2], obj[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&p, 0, sizeof(p));
        if (devid_parse(cases[i].type, cases[i].cn, cases[i].devid, &p) != cases[i].want)
            fail_msg("case %zu: want %s", i, hsmca_err_code(cases[i].want));
    }
    /* the pattern at its limit and one byte over */
    memset(longpat, 'a', sizeof(longpat));
    longpat[HSMCA_DEVICE_ID_PATTERN_MAX] = '\0';
    snprintf(obj, sizeof(obj),
             "{\"attribute\": \"serialNumber\", \"pattern\": \"%s\", \"max_length\": 5}", longpat);
    assert_int_equal(devid_parse("dac", "DAC", obj, &p), HSMCA_OK);
    longpat[HSMCA_DEVICE_ID_PATTERN_MAX] = 'a';
    longpat[HSMCA_DEVICE_ID_PATTERN_MAX + 1] = '\0';
    snprintf(obj, sizeof(obj),
             "{\"attribute\": \"serialNumber\", \"pattern\": \"%s\", \"max_length\": 5}", longpat);
    assert_int_equal(devid_parse("dac", "DAC", obj, &p), HSMCA_E_PROFILE_INVALID);
    /* what the good one holds; a finite validity */
    assert_int_equal(devid_parse("dac", "DAC {vid}/{pid}", SN_DEVID, &p), HSMCA_OK);
    assert_int_equal(p.device_id.attr, HSMCA_DEVID_SERIAL_NUMBER);
    assert_int_equal(p.device_id.max_len, 16);
    assert_true(p.device_id.required && !p.device_id.from_csr);
    assert_string_equal(p.device_id.pattern, "[0-9A-F]{16}");
    assert_false(p.no_expiry);
    assert_int_equal(p.days, 365);
    assert_string_equal(hsmca_profile_devid_attr_name(p.device_id.attr), "serialNumber");
    assert_false(p.within_issuer);
    /* validity.within_issuer is a DAC's policy only */
    {
        struct pcase dac = {"dac",
                            "x",
                            "required",
                            "required",
                            "\"days\": 10, \"within_issuer\": true",
                            "true",
                            "false",
                            "",
                            "\"digitalSignature\"",
                            "false",
                            "",
                            HSMCA_OK};
        struct pcase pai = {"pai",
                            "x",
                            "required",
                            "optional",
                            "\"days\": 10, \"within_issuer\": true",
                            "true",
                            "true",
                            ", \"path_len\": 0",
                            "\"keyCertSign\", \"cRLSign\"",
                            "false",
                            "",
                            HSMCA_E_PROFILE_RULE};

        assert_int_equal(try_case(&dac, &p), HSMCA_OK);
        assert_true(p.within_issuer);
        assert_int_equal(try_case(&pai, &p), HSMCA_E_PROFILE_RULE);
    }
}

/* A per-device value against its profile: each refusal its code, a reason without the value. */
static void
device_id_values(void **state)
{
    struct hsmca_profile sn, cn, none, opt;
    char why[160], cnout[HSMCA_MATTER_CN_MAX + 1], v64[HSMCA_DEVICE_ID_MAX + 1];

    (void)state;
    assert_int_equal(devid_parse("dac", "DAC {vid}/{pid}", SN_DEVID, &sn), HSMCA_OK);
    assert_int_equal(
        devid_parse("dac", "ACME Matter DAC {vid} {device_id}",
                    "{\"attribute\": \"commonName\", \"pattern\": \"[A-Za-z0-9 \\\"\\\\\\\\-]+\", "
                    "\"max_length\": 64, \"required\": true}",
                    &cn),
        HSMCA_OK);
    assert_int_equal(devid_parse("dac", "DAC {vid}/{pid}", "", &none), HSMCA_OK);
    assert_int_equal(devid_parse("dac", "DAC {vid}/{pid}",
                                 "{\"attribute\": \"serialNumber\", \"pattern\": \"[0-9]+\", "
                                 "\"max_length\": 8}",
                                 &opt),
                     HSMCA_OK);

    assert_int_equal(hsmca_profile_device_id_check(&sn, "0123456789ABCDEF", why, sizeof(why)),
                     HSMCA_OK);
    assert_int_equal(hsmca_profile_device_id_check(&sn, NULL, why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_PATTERN); /* required */
    assert_non_null(strstr(why, "requires a device_id"));
    assert_int_equal(hsmca_profile_device_id_check(&sn, "0123456789abcdef", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_PATTERN);
    assert_non_null(strstr(why, "[0-9A-F]{16}"));
    assert_null(strstr(why, "0123456789abcdef")); /* never the value */
    assert_int_equal(hsmca_profile_device_id_check(&sn, "0123456789ABCDEF0", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_PATTERN); /* max_length + 1 */
    assert_int_equal(hsmca_profile_device_id_check(&sn, "", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_PATTERN);
    assert_int_equal(hsmca_profile_device_id_check(&sn, "0123456789ABCDE*", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_RULE); /* not a PrintableString */
    assert_int_equal(hsmca_profile_device_id_check(&sn, "0123456789ABCDE\x01", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_RULE);
    assert_int_equal(hsmca_profile_device_id_check(&sn, "0123456789ABCDE\xc3", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_RULE); /* not ASCII */
    /* a partial match is no match: the pattern is anchored */
    assert_int_equal(hsmca_profile_device_id_check(&opt, "12a", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_PATTERN);
    assert_int_equal(hsmca_profile_device_id_check(&opt, NULL, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(hsmca_profile_device_id_check(&opt, "12", NULL, 0), HSMCA_OK);
    /* a profile without device_id takes none */
    assert_int_equal(hsmca_profile_device_id_check(&none, NULL, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(hsmca_profile_device_id_check(&none, "1", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_PATTERN);
    /* Matter rules in a common name: no legacy VID/PID (N8), at most 64 bytes (N7) */
    assert_int_equal(hsmca_profile_device_id_check(&cn, "Mvid:FFF2", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_RULE);
    assert_int_equal(hsmca_profile_device_id_check(&cn, "x Mpid:8001", why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_RULE);
    memset(v64, 'A', HSMCA_DEVICE_ID_MAX);
    v64[HSMCA_DEVICE_ID_MAX] = '\0';
    assert_int_equal(hsmca_profile_device_id_check(&cn, v64, why, sizeof(why)),
                     HSMCA_E_DEVICE_ID_RULE); /* "ACME Matter DAC FFF1 " + 64 > 64 */
    assert_non_null(strstr(why, "64 bytes"));
    v64[64 - strlen("ACME Matter DAC FFF1 ")] = '\0';
    assert_int_equal(hsmca_profile_device_id_check(&cn, v64, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(hsmca_profile_cn_dev(&cn, 1, 0xFFF1, 1, 0x8000, v64, cnout, sizeof(cnout)),
                     HSMCA_OK);
    assert_int_equal(strlen(cnout), HSMCA_MATTER_CN_MAX);
    assert_int_equal(
        hsmca_profile_cn_dev(&cn, 1, 0xFFF1, 1, 0x8000, "id \"7\"", cnout, sizeof(cnout)),
        HSMCA_OK);
    assert_string_equal(cnout, "ACME Matter DAC FFF1 id \"7\"");
    assert_int_equal(hsmca_profile_cn(&cn, 1, 0xFFF1, 1, 0x8000, cnout, sizeof(cnout)),
                     HSMCA_E_INVALID_ARG); /* {device_id} needs a value */
    assert_int_equal(hsmca_profile_device_id_check(NULL, "x", why, sizeof(why)),
                     HSMCA_E_INVALID_ARG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refusals),
        cmocka_unit_test(size_limit_at_n_and_n_plus_1),
        cmocka_unit_test(shipped_profiles_and_common_names),
        cmocka_unit_test(device_id_profiles),
        cmocka_unit_test(device_id_values),
    };

    return cmocka_run_group_tests_name("profile", tests, NULL, NULL);
}
