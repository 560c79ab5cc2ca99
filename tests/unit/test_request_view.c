/* SPDX-License-Identifier: Apache-2.0
 *
 * test_request_view.c -- a quorum request in a person's terms: VID/PID as 4 uppercase hex
 * digits, times in ISO 8601 UTC, an activation window's end and count, the summary sentence, and
 * any params (even hostile ones) shown without a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "hsmca/request_view.h"

static json_t *
view(const char *op, const char *params)
{
    json_t *p = json_loads(params, 0, NULL), *v;

    assert_non_null(p);
    v = hsmca_request_view(op, p);
    json_decref(p);
    assert_non_null(v);
    return v;
}

static void
activate_in_person_terms(void **state)
{
    /* 2026-12-07T04:50:00Z */
    json_t *v = view("ca.activate", "{\"ca\": \"pai-8000\", \"until\": 1796619000000, "
                                    "\"max_dacs\": 250, \"tokens\": [\"hsmca-pai-8000\"]}");
    char *text;

    (void)state;
    assert_string_equal(json_string_value(json_object_get(v, "until")), "2026-12-07T04:50:00Z");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "window"), "max_dacs")),
                     250);
    assert_string_equal(
        json_string_value(json_object_get(v, "summary")),
        "open the issuance window of PAI pai-8000 until 2026-12-07T04:50:00Z for at most 250 DACs");
    text = hsmca_request_view_text(v);
    assert_non_null(text);
    assert_non_null(strstr(text, "  summary    open the issuance window"));
    assert_null(strstr(text, "1796619000000"));
    free(text);
    json_decref(v);
}

static void
activate_names_its_nodes(void **state)
{
    json_t *v = view("ca.activate", "{\"ca\": \"pai-8000\", \"until\": 1796619000000, "
                                    "\"max_dacs\": 250, \"nodes\": [\"node-1\", \"node-2\"]}");

    (void)state;
    assert_string_equal(json_string_value(json_object_get(v, "summary")),
                        "open the issuance window of PAI pai-8000 until 2026-12-07T04:50:00Z for "
                        "at most 250 DACs, shared by the nodes node-1, node-2 (each logged in by "
                        "this one approval)");
    assert_int_equal(json_array_size(json_object_get(v, "nodes")), 2);
    json_decref(v);
}

static void
renewal_shows_the_certificate(void **state)
{
    json_t *v =
        view("ca.rekey",
             "{\"ca\": \"pai-8000\", \"new_ca\": \"pai-8000-k1\", \"token\": \"t2\", "
             "\"key_label\": \"k\", \"tbs\": {\"subject\": \"CN=P, MatterVID=FFF1\", \"serial\": "
             "\"41A2\", \"not_before\": \"2026-12-07T07:01:52Z\", \"public_key\": \"EC P-256, "
             "generated in the CA's token at execution\", \"extensions\": [\"X509v3 Key Usage "
             "(critical): Certificate Sign, CRL Sign\"]}}");
    char *text;

    (void)state;
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(v, "certificate"), "subject")),
        "CN=P, MatterVID=FFF1");
    assert_null(json_object_get(v, "tbs"));
    assert_non_null(strstr(json_string_value(json_object_get(v, "summary")),
                           "re-key CA pai-8000 as pai-8000-k1"));
    text = hsmca_request_view_text(v);
    assert_non_null(text);
    assert_non_null(strstr(text, "  certificate to be signed exactly as below"));
    assert_non_null(strstr(text, "    subject  CN=P, MatterVID=FFF1\n"));
    assert_non_null(strstr(text, "    not_before 2026-12-07T07:01:52Z\n"));
    assert_non_null(strstr(text, "    public_key EC P-256, generated in the CA's token"));
    assert_non_null(
        strstr(text, "    extension X509v3 Key Usage (critical): Certificate Sign, CRL Sign\n"));
    free(text);
    json_decref(v);
}

static void
vid_pid_hex(void **state)
{
    json_t *v = view("ca.create_pai", "{\"ca\": \"pai-8001\", \"parent\": \"paa-1\", \"token\": "
                                      "\"t\", \"key_label\": \"k\", \"vid\": 65521, \"pid\": 10}");

    (void)state;
    assert_string_equal(json_string_value(json_object_get(v, "vid")), "FFF1");
    assert_string_equal(json_string_value(json_object_get(v, "pid")), "000A");
    assert_non_null(strstr(json_string_value(json_object_get(v, "summary")), "VID FFF1, PID 000A"));
    json_decref(v);
}

static void
hostile_params_shown_as_given(void **state)
{
    json_t *v = view("ca.activate", "{\"vid\": 70000, \"until\": \"soon\", \"max_dacs\": []}");
    json_t *w = view(NULL, "{}");
    char *text = hsmca_request_view_text(v);

    (void)state;
    assert_int_equal(json_integer_value(json_object_get(v, "vid")), 70000); /* out of range */
    assert_string_equal(json_string_value(json_object_get(v, "until")), "soon");
    assert_non_null(text);
    assert_string_equal(json_string_value(json_object_get(w, "summary")), "unknown operation");
    free(text);
    json_decref(v);
    json_decref(w);
}

static void
envelope_view(void **state)
{
    /* {"op":"crl.sign","params":{"ca":"paa-1"},"id":"x","created":0,"expires":1000,
     *  "requester":{"principal":"alice"}} */
    const char *req = "{\"created\":0,\"expires\":1000,\"id\":\"x\",\"op\":\"crl.sign\","
                      "\"params\":{\"ca\":\"paa-1\"},\"requester\":{\"principal\":\"alice\"}}";
    unsigned char b64[512];
    char env[1024];
    json_t *v = NULL;
    int n = EVP_EncodeBlock(b64, (const unsigned char *)req, (int)strlen(req));

    (void)state;
    assert_true(n > 0);
    snprintf(env, sizeof(env),
             "{\"approvals\":[\"bob\"],\"status\":\"pending\",\"threshold\":2,\"request\":\"%s\"}",
             b64);
    assert_int_equal(hsmca_request_view_envelope(env, strlen(env), &v), HSMCA_OK);
    assert_string_equal(json_string_value(json_object_get(v, "approvals")), "1 of 2");
    assert_string_equal(json_string_value(json_object_get(v, "expires")), "1970-01-01T00:00:01Z");
    assert_string_equal(json_string_value(json_object_get(v, "requester")), "alice");
    json_decref(v);
    assert_int_equal(hsmca_request_view_envelope("{\"request\":\"!!!!\"}", 18, &v),
                     HSMCA_E_QUORUM_ENVELOPE);
    assert_null(v);
    assert_int_equal(hsmca_request_view_envelope("nope", 4, &v), HSMCA_E_QUORUM_ENVELOPE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(activate_in_person_terms),
        cmocka_unit_test(activate_names_its_nodes),
        cmocka_unit_test(vid_pid_hex),
        cmocka_unit_test(renewal_shows_the_certificate),
        cmocka_unit_test(hostile_params_shown_as_given),
        cmocka_unit_test(envelope_view),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
