/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_http_parse.c -- route matching and Accept parsing (src/hsmcad/http_parse.c):
 * hostile paths (empty, traversal, encoded, over-long parameters at N+1, extra segments) never
 * match, parameters at N do; Accept headers with parameters, q=0, wildcards and case; q-values
 * (the most specific range decides, malformed ones are ignored) and the pick among the types a
 * route offers (highest quality, the server's order among equals, -1 for a 406).
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

static void
accept_qualities(void **state)
{
    (void)state;
    assert_int_equal(hsmcad_accept_quality(NULL, "application/json"), HSMCAD_Q_MAX);
    assert_int_equal(hsmcad_accept_quality(" \t", "application/json"), HSMCAD_Q_MAX);
    assert_int_equal(hsmcad_accept_quality("application/json;q=0.5", "application/json"), 500);
    assert_int_equal(hsmcad_accept_quality("application/json ; Q=0.125 ", "application/json"), 125);
    assert_int_equal(hsmcad_accept_quality("application/json;q=1.000", "application/json"), 1000);
    assert_int_equal(hsmcad_accept_quality("application/json;q=1.", "application/json"), 1000);
    assert_int_equal(hsmcad_accept_quality("application/json;q=0.5;level=1", "application/json"),
                     500);
    assert_int_equal(
        hsmcad_accept_quality("application/json;charset=utf-8;q=0.3", "application/json"), 300);
    /* the most specific range decides, even when a wildcard gives more */
    assert_int_equal(hsmcad_accept_quality("*/*, application/json;q=0", "application/json"), 0);
    assert_int_equal(hsmcad_accept_quality("application/*;q=0.2, */*;q=0.9", "application/json"),
                     200);
    assert_int_equal(hsmcad_accept_quality("application/*;q=0.2, */*;q=0.9", "text/csv"), 900);
    /* two ranges of the same specificity: the higher q */
    assert_int_equal(
        hsmcad_accept_quality("application/json;q=0.1, application/json;q=0.7", "application/json"),
        700);
    /* malformed q-values are ignored: above 1, more than 3 decimals, empty, signs, spaces */
    static const char *const bad[] = {
        "application/json;q=1.5", "application/json;q=0.1234", "application/json;q=",
        "application/json;q=-1",  "application/json;q=+0.5",   "application/json;q=0.5x",
        "application/json;q=2",   "application/json;q= 0.5",   "application/json;q=.5",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (hsmcad_accept_quality(bad[i], "application/json") != 0)
            fail_msg("\"%s\" was not ignored", bad[i]);
    }
    /* a malformed range beside a good one: the good one counts */
    assert_int_equal(hsmcad_accept_quality("application/json;q=9, */*;q=0.4", "application/json"),
                     400);
    /* not media ranges at all */
    assert_int_equal(hsmcad_accept_quality("*/json", "application/json"), 0);
    assert_int_equal(hsmcad_accept_quality("application", "application/json"), 0);
    assert_int_equal(hsmcad_accept_quality("application/", "application/json"), 0);
}

static void
accept_pick(void **state)
{
    static const char *const t[] = {"application/json", "application/pkix-cert",
                                    "application/pem-certificate-chain"};

    (void)state;
    /* no preference: the server's first */
    assert_int_equal(hsmcad_accept_pick(NULL, t, 3), 0);
    assert_int_equal(hsmcad_accept_pick("*/*", t, 3), 0);
    assert_int_equal(hsmcad_accept_pick("application/*", t, 3), 0);
    /* one named */
    assert_int_equal(hsmcad_accept_pick("application/pkix-cert", t, 3), 1);
    assert_int_equal(hsmcad_accept_pick("APPLICATION/PKIX-CERT", t, 3), 1);
    /* q decides, whatever the order in the header */
    assert_int_equal(hsmcad_accept_pick("application/json;q=0.5, application/pkix-cert", t, 3), 1);
    assert_int_equal(hsmcad_accept_pick("application/pkix-cert;q=0.5, application/json", t, 3), 0);
    assert_int_equal(hsmcad_accept_pick("application/pem-certificate-chain;q=0.9, "
                                        "application/json;q=0.8, */*;q=0.1",
                                        t, 3),
                     2);
    /* equal q: the server's order */
    assert_int_equal(hsmcad_accept_pick("application/pkix-cert, application/json", t, 3), 0);
    /* excluded by q=0 even under a wildcard */
    assert_int_equal(hsmcad_accept_pick("application/json;q=0, */*;q=0.1", t, 3), 1);
    /* nothing acceptable: 406 */
    assert_int_equal(hsmcad_accept_pick("text/html", t, 3), -1);
    assert_int_equal(hsmcad_accept_pick("*/*;q=0", t, 3), -1);
    assert_int_equal(hsmcad_accept_pick("application/json;q=0", t, 1), -1);
    assert_int_equal(hsmcad_accept_pick("application/json", t, 0), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_paths_do_not_match),
        cmocka_unit_test(paths_match_with_parameters),
        cmocka_unit_test(accept_headers),
        cmocka_unit_test(accept_qualities),
        cmocka_unit_test(accept_pick),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
