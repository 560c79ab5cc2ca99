/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_auth.c -- role bindings (src/hsmcad/auth.c): hostile roles.json refused (unknown
 * keys, bad fingerprints, unknown roles, CAs on a non-operator, operator without CAs, one
 * principal with two roles, the same fingerprint twice in another case), then lookups by
 * certificate DER and fingerprint and the authorization decision for every role.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "hsmca/util.h"

#include "auth.h"

#define FP_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define FP_A_UP "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define FP_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void
refuses_hostile_bindings(void **state)
{
    static const char *const bad[] = {
        "",
        "{}",
        "{\"version\": 2, \"certificates\": {}}",
        "{\"version\": 1, \"certificates\": {}, \"x\": 1}",
        "{\"version\": 1, \"certificates\": []}",
        "{\"version\": 1, \"certificates\": {\"abc\": {\"principal\": \"a\", \"role\": "
        "\"admin\"}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"root\"}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a b\", \"role\": "
        "\"admin\"}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"admin\", \"cas\": [\"pai-1\"]}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"operator\"}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"operator\", \"cas\": []}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"operator\", \"cas\": [\"bad/ca\"]}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"admin\", \"extra\": 1}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"admin\"}, \"" FP_B "\": {\"principal\": \"a\", \"role\": \"auditor\"}}}",
        "{\"version\": 1, \"certificates\": {\"" FP_A "\": {\"principal\": \"a\", \"role\": "
        "\"admin\"}, \"" FP_A_UP "\": {\"principal\": \"b\", \"role\": \"admin\"}}}",
    };
    struct hsmcad_roles *r = NULL;
    char why[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (hsmcad_roles_parse(bad[i], strlen(bad[i]), &r, why, sizeof(why)) !=
            HSMCA_E_ROLES_INVALID)
            fail_msg("case %zu accepted", i);
        assert_null(r);
    }
}

static void
lookup_and_authorize(void **state)
{
    static const unsigned char der[] = "not really a certificate, only bytes to hash";
    unsigned char fp[32];
    unsigned int fl = 0;
    char hex[65], text[1024], why[256];
    struct hsmcad_roles *r = NULL;
    const struct hsmcad_principal *p;

    (void)state;
    assert_int_equal(EVP_Digest(der, sizeof(der), fp, &fl, EVP_sha256(), NULL), 1);
    hsmca_hex_encode(fp, 32, hex, sizeof(hex));
    snprintf(text, sizeof(text),
             "{\"version\": 1, \"certificates\": {\"%s\": {\"principal\": \"factory-1\", "
             "\"role\": \"operator\", \"cas\": [\"pai-8000\", \"pai-8001\"]}, \"" FP_B
             "\": {\"principal\": \"carol\", \"role\": \"auditor\"}}}",
             hex);
    assert_int_equal(hsmcad_roles_parse(text, strlen(text), &r, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(hsmcad_roles_count(r), 2);
    p = hsmcad_roles_lookup(r, der, sizeof(der));
    assert_non_null(p);
    assert_string_equal(p->name, "factory-1");
    assert_int_equal(p->role, HSMCAD_ROLE_OPERATOR);
    assert_null(hsmcad_roles_lookup(r, der, sizeof(der) - 1));
    assert_int_equal(hsmcad_authorize(NULL, HSMCAD_ROLE_ANY, 0, NULL),
                     HSMCA_E_HTTP_UNAUTHENTICATED);
    assert_int_equal(hsmcad_authorize(p, HSMCAD_ROLE_OPERATOR, 1, "pai-8001"), HSMCA_OK);
    assert_int_equal(hsmcad_authorize(p, HSMCAD_ROLE_OPERATOR, 1, "pai-9999"),
                     HSMCA_E_HTTP_CA_FORBIDDEN);
    assert_int_equal(hsmcad_authorize(p, HSMCAD_ROLE_ADMIN | HSMCAD_ROLE_AUDITOR, 0, NULL),
                     HSMCA_E_HTTP_FORBIDDEN);
    assert_int_equal(hsmcad_authorize(p, HSMCAD_ROLE_ANY, 0, NULL), HSMCA_OK);
    memset(fp, 0xbb, sizeof(fp));
    p = hsmcad_roles_lookup_fp(r, fp);
    assert_non_null(p);
    assert_string_equal(p->name, "carol");
    /* a CA binding applies to operators only: an auditor on a non-bound route is fine */
    assert_int_equal(hsmcad_authorize(p, HSMCAD_ROLE_AUDITOR, 1, "pai-8000"), HSMCA_OK);
    assert_string_equal(hsmcad_role_name(p->role), "auditor");
    /* a reload's reference counting: the table lives until its last holder lets it go (run
     * under ASan, a use after the last free fails the test) */
    assert_ptr_equal(hsmcad_roles_ref(r), r);
    hsmcad_roles_free(r);
    assert_string_equal(hsmcad_roles_lookup_fp(r, fp)->name, "carol");
    hsmcad_roles_free(r);
    hsmcad_roles_free(NULL);
    assert_null(hsmcad_roles_ref(NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuses_hostile_bindings),
        cmocka_unit_test(lookup_and_authorize),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
