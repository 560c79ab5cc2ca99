/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_config.c -- the daemon config (src/hsmcad/config.c): every hostile shape refused
 * with a reason naming the key (unknown keys, wrong types, out-of-range numbers, PINs in URIs,
 * bad listen addresses, missing required keys), limits at N and N+1, then the happy path with
 * defaults and relative paths resolved against the config's directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

#define BASE                                                                                       \
    "\"store\": \"db\", \"roles\": \"roles.json\", "                                               \
    "\"tls\": {\"cert\": \"c.pem\", \"key\": \"k.pem\", \"client_ca\": \"ca.pem\"}, "              \
    "\"audit\": {\"token\": \"pkcs11:token=a\", \"key\": \"pkcs11:token=a;object=k\", "            \
    "\"pin_file\": \"/etc/pin\"}"

static enum hsmca_err
parse(const char *text, char *why, size_t why_len)
{
    static struct hsmcad_config c;

    return hsmcad_config_parse(text, strlen(text), "/etc/hsmca", &c, why, why_len);
}

static void
refuses_hostile_configs(void **state)
{
    static const struct {
        const char *text;
        const char *why; /* substring of the reason */
    } bad[] = {
        {"", "not valid JSON"},
        {"[]", "must be a JSON object"},
        {"{" BASE ", \"store\": \"x\"}", "not valid JSON"}, /* duplicate key */
        {"{" BASE ", \"bogus\": 1}", "unknown key \"bogus\""},
        {"{" BASE ", \"limits\": {\"threadz\": 1}}", "limits.threadz: unknown key"},
        {"{" BASE ", \"limits\": {\"threads\": \"4\"}}", "limits.threads: must be an integer"},
        {"{" BASE ", \"limits\": {\"threads\": -1}}", "limits.threads: must lie in 0..256"},
        {"{" BASE ", \"limits\": {\"threads\": 257}}", "limits.threads: must lie in 0..256"},
        {"{" BASE ", \"limits\": {\"body_max\": 4095}}", "limits.body_max"},
        {"{" BASE ", \"limits\": {\"batch_max\": 1001}}", "limits.batch_max"},
        {"{" BASE ", \"limits\": {\"batch_max\": 0}}", "limits.batch_max"},
        {"{" BASE ", \"limits\": []}", "limits: must be an object"},
        {"{" BASE ", \"listen\": \"localhost:8443\"}", "numeric IPv4 or IPv6"},
        {"{" BASE ", \"listen\": \"127.0.0.1\"}", "listen"},
        {"{" BASE ", \"listen\": \"127.0.0.1:65536\"}", "port must be"},
        {"{" BASE ", \"listen\": \"127.0.0.1:08443\"}", "port must be"},
        {"{" BASE ", \"listen\": 8443}", "listen"},
        {"{" BASE ", \"publish_listen\": \"localhost:80\"}", "publish_listen"},
        {"{" BASE ", \"publish_listen\": 80}", "publish_listen"},
        {"{" BASE ", \"crl_policy\": 1}", "crl_policy"},
        {"{" BASE ", \"allow_root\": 1}", "allow_root: must be true or false"},
        {"{" BASE ", \"allow_root\": \"yes\"}", "allow_root: must be true or false"},
        {"{" BASE ", \"pkcs11_module\": \"\"}", "non-empty printable"},
        {"{" BASE ", \"pkcs11_module\": \"a\\nb\"}", "non-empty printable"},
        {"{\"store\": \"db\", \"roles\": \"r\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", "
         "\"client_ca\": \"ca\"}, \"audit\": {\"token\": \"pkcs11:token=a;pin-value=1234\", "
         "\"key\": \"pkcs11:token=a;object=k\", \"pin_file\": \"p\"}}",
         "a PIN never belongs in a URI"},
        {"{\"store\": \"db\", \"roles\": \"r\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", "
         "\"client_ca\": \"ca\"}, \"audit\": {\"token\": \"token=a\", "
         "\"key\": \"pkcs11:token=a;object=k\", \"pin_file\": \"p\"}}",
         "audit.token: must be a pkcs11: URI"},
        {"{\"roles\": \"r\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", \"client_ca\": \"ca\"}, "
         "\"audit\": {\"token\": \"pkcs11:token=a\", \"key\": \"pkcs11:token=a;object=k\", "
         "\"pin_file\": \"p\"}}",
         "store: is required"},
        {"{\"store\": \"db\", \"roles\": \"r\", \"audit\": {\"token\": \"pkcs11:token=a\", "
         "\"key\": \"pkcs11:token=a;object=k\", \"pin_file\": \"p\"}}",
         "tls: is required"},
        {"{\"store\": \"db\", \"roles\": \"r\", \"tls\": {\"cert\": \"c\", \"key\": \"k\"}, "
         "\"audit\": {\"token\": \"pkcs11:token=a\", \"key\": \"pkcs11:token=a;object=k\", "
         "\"pin_file\": \"p\"}}",
         "tls.client_ca: is required"},
    };
    char why[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(parse(bad[i].text, why, sizeof(why)), HSMCA_E_CONFIG_INVALID);
        if (strstr(why, bad[i].why) == NULL)
            fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, why, bad[i].why);
    }
}

static void
refuses_oversized_text(void **state)
{
    char *big = malloc(HSMCAD_CONFIG_MAX + 2);
    struct hsmcad_config c;
    char why[128];

    (void)state;
    assert_non_null(big);
    memset(big, ' ', HSMCAD_CONFIG_MAX + 1);
    big[0] = '{';
    big[HSMCAD_CONFIG_MAX + 1] = '\0';
    assert_int_equal(hsmcad_config_parse(big, HSMCAD_CONFIG_MAX + 1, NULL, &c, why, sizeof(why)),
                     HSMCA_E_CONFIG_INVALID);
    free(big);
}

static void
limits_at_bounds(void **state)
{
    char why[256];

    (void)state;
    assert_int_equal(parse("{" BASE ", \"limits\": {\"threads\": 256, \"batch_max\": 1000, "
                           "\"body_max\": 4096}}",
                           why, sizeof(why)),
                     HSMCA_OK);
    assert_int_equal(parse("{" BASE ", \"limits\": {\"body_max\": 67108864}}", why, sizeof(why)),
                     HSMCA_OK);
    assert_int_equal(parse("{" BASE ", \"limits\": {\"body_max\": 67108865}}", why, sizeof(why)),
                     HSMCA_E_CONFIG_INVALID);
}

static void
happy_path_defaults_and_paths(void **state)
{
    struct hsmcad_config c;
    char why[256];
    const char *text = "{" BASE ", \"listen\": \"[::1]:0\", \"limits\": {\"threads\": 3}}";

    (void)state;
    assert_int_equal(hsmcad_config_parse(text, strlen(text), "/etc/hsmca", &c, why, sizeof(why)),
                     HSMCA_OK);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.store, "/etc/hsmca/db");
    assert_string_equal(c.tls_client_ca, "/etc/hsmca/ca.pem");
    assert_string_equal(c.audit_pin_file, "/etc/pin");
    assert_string_equal(c.audit_token, "pkcs11:token=a");
    assert_string_equal(c.pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so");
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.batch_max, HSMCAD_BATCH_MAX_DEFAULT);
    assert_int_equal(c.body_max, HSMCAD_BODY_MAX_DEFAULT);
    assert_int_equal(c.timeout_s, 30);
    assert_int_equal(c.allow_root, 0);
    text = "{" BASE ", \"allow_root\": true}";
    assert_int_equal(hsmcad_config_parse(text, strlen(text), NULL, &c, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(c.allow_root, 1);
    text = "{" BASE ", \"allow_root\": false}";
    assert_int_equal(hsmcad_config_parse(text, strlen(text), NULL, &c, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(c.allow_root, 0);
    text = "{" BASE "}";
    assert_int_equal(hsmcad_config_parse(text, strlen(text), NULL, &c, why, sizeof(why)), HSMCA_OK);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8443);
    assert_string_equal(c.store, "db");
    assert_string_equal(c.publish_host, ""); /* the plain listener is off by default */
    assert_string_equal(c.crl_policy, "");
    text = "{" BASE ", \"publish_listen\": \"127.0.0.1:0\", \"crl_policy\": \"crl.json\"}";
    assert_int_equal(hsmcad_config_parse(text, strlen(text), "/etc/hsmca", &c, why, sizeof(why)),
                     HSMCA_OK);
    assert_string_equal(c.publish_host, "127.0.0.1");
    assert_int_equal(c.publish_port, 0);
    assert_string_equal(c.crl_policy, "/etc/hsmca/crl.json");
}

#define AUDIT_WITH(extra)                                                                          \
    "\"store\": \"db\", \"roles\": \"roles.json\", "                                               \
    "\"tls\": {\"cert\": \"c.pem\", \"key\": \"k.pem\", \"client_ca\": \"ca.pem\"}, "              \
    "\"audit\": {\"token\": \"pkcs11:token=a\", \"key\": \"pkcs11:token=a;object=k\", "            \
    "\"pin_file\": \"/etc/pin\"" extra "}"

/* audit.max_unsigned_entries: checkpoint_entries + 1000 by default, more than checkpoint_entries
 * when given (a smaller bound would stop DACs with a working audit token) */
static void
max_unsigned_entries_bounds(void **state)
{
    struct hsmcad_config c;
    char why[256];
    const char *t;

    (void)state;
    t = "{" BASE "}";
    assert_int_equal(hsmcad_config_parse(t, strlen(t), NULL, &c, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(c.max_unsigned_entries, 10000 + HSMCAD_UNSIGNED_MARGIN_DEFAULT);
    t = "{" AUDIT_WITH(", \"checkpoint_entries\": 50") "}";
    assert_int_equal(hsmcad_config_parse(t, strlen(t), NULL, &c, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(c.max_unsigned_entries, 50 + HSMCAD_UNSIGNED_MARGIN_DEFAULT);
    t = "{" AUDIT_WITH(", \"checkpoint_entries\": 50, \"max_unsigned_entries\": 51") "}";
    assert_int_equal(hsmcad_config_parse(t, strlen(t), NULL, &c, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(c.max_unsigned_entries, 51);
    t = "{" AUDIT_WITH(", \"checkpoint_entries\": 50, \"max_unsigned_entries\": 50") "}";
    assert_int_equal(hsmcad_config_parse(t, strlen(t), NULL, &c, why, sizeof(why)),
                     HSMCA_E_CONFIG_INVALID);
    assert_non_null(strstr(why, "audit.max_unsigned_entries"));
    t = "{" AUDIT_WITH(", \"max_unsigned_entries\": 0") "}";
    assert_int_equal(hsmcad_config_parse(t, strlen(t), NULL, &c, why, sizeof(why)),
                     HSMCA_E_CONFIG_INVALID);
    t = "{" AUDIT_WITH(", \"max_unsigned_entries\": \"100\"") "}";
    assert_int_equal(hsmcad_config_parse(t, strlen(t), NULL, &c, why, sizeof(why)),
                     HSMCA_E_CONFIG_INVALID);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuses_hostile_configs),
        cmocka_unit_test(refuses_oversized_text),
        cmocka_unit_test(limits_at_bounds),
        cmocka_unit_test(happy_path_defaults_and_paths),
        cmocka_unit_test(max_unsigned_entries_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
