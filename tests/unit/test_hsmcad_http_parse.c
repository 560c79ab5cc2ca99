/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_http_parse.c -- route matching and Accept parsing (src/hsmcad/http_parse.c):
 * hostile paths (empty, traversal, encoded, over-long parameters at N+1, extra segments) never
 * match, parameters at N do; Accept headers with parameters, q=0, wildcards and case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_parse.h"

static void
hostile_paths_do_not_match(void **state)
{
    static const char *const bad[] = {
        "",
        "/",
        "/v1/cas//dacs",
        "/v1/cas/../dacs",
        "/v1/cas/a%2Fb/dacs",
        "/v1/cas/./dacs",
        "/v1/cas/a b/dacs",
        "/v1/cas/pai/dacs/",
        "/v1/cas/pai/dacs/batch",
        "/v1/cas/pai",
        "/v1/cas/pai/dacsx",
        "/v1/cas/pai/dac",
        "/V1/cas/pai/dacs",
        "/v1/cas/p\xc3\xa9/dacs",
    };
    char params[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1];
    char longp[HSMCAD_PARAM_MAX + 32];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (hsmcad_route_match("/v1/cas/{ca}/dacs", bad[i], params))
            fail_msg("\"%s\" matched", bad[i]);
    }
    /* a parameter of N bytes matches, N+1 does not */
    memcpy(longp, "/v1/cas/", 8);
    memset(longp + 8, 'a', HSMCAD_PARAM_MAX);
    memcpy(longp + 8 + HSMCAD_PARAM_MAX, "/dacs", 6);
    assert_true(hsmcad_route_match("/v1/cas/{ca}/dacs", longp, params));
    assert_int_equal(strlen(params[0]), HSMCAD_PARAM_MAX);
    memset(longp + 8, 'a', HSMCAD_PARAM_MAX + 1);
    memcpy(longp + 9 + HSMCAD_PARAM_MAX, "/dacs", 6);
    assert_false(hsmcad_route_match("/v1/cas/{ca}/dacs", longp, params));
    /* more parameters than the table holds */
    assert_false(hsmcad_route_match("/{a}/{b}/{c}", "/x/y/z", params));
}

static void
paths_match_with_parameters(void **state)
{
    char params[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1];

    (void)state;
    assert_true(hsmcad_route_match("/v1/cas/{ca}/dacs", "/v1/cas/pai-8000/dacs", params));
    assert_string_equal(params[0], "pai-8000");
    assert_true(hsmcad_route_match("/v1/requests/{id}/approvals", "/v1/requests/0123abcd/approvals",
                                   params));
    assert_string_equal(params[0], "0123abcd");
    assert_true(hsmcad_route_match("/{a}/{b}", "/x.y/z~:@+=-", params));
    assert_string_equal(params[1], "z~:@+=-");
    assert_true(hsmcad_route_match("/healthz", "/healthz", params));
}

static void
accept_headers(void **state)
{
    (void)state;
    assert_true(hsmcad_accepts(NULL, "application/json"));
    assert_true(hsmcad_accepts("", "application/json"));
    assert_true(hsmcad_accepts("*/*", "application/json"));
    assert_true(hsmcad_accepts("application/*", "application/json"));
    assert_true(hsmcad_accepts("Application/JSON", "application/json"));
    assert_true(hsmcad_accepts("text/html, application/json;q=0.5", "application/json"));
    assert_true(hsmcad_accepts(" application/pem-certificate-chain ; charset=x ",
                               "application/pem-certificate-chain"));
    assert_false(hsmcad_accepts("text/html", "application/json"));
    assert_false(hsmcad_accepts("application/json;q=0", "application/json"));
    assert_false(hsmcad_accepts("application/json; q=0.000", "application/json"));
    assert_true(hsmcad_accepts("application/json; q=0.1", "application/json"));
    assert_false(hsmcad_accepts("application/jsonx", "application/json"));
    assert_false(hsmcad_accepts("text/*", "application/json"));
    assert_false(hsmcad_accepts(",,;,", "application/json"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_paths_do_not_match),
        cmocka_unit_test(paths_match_with_parameters),
        cmocka_unit_test(accept_headers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
