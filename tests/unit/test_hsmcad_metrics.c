/* SPDX-License-Identifier: Apache-2.0
 *
 * test_hsmcad_metrics.c -- the Prometheus text of src/hsmcad/metrics.c: counters by route and
 * status (unknown statuses under "other", out-of-range routes under "unmatched"), cumulative
 * latency buckets with sum and count for requests, DAC signatures and audit commits, DAC counters
 * per CA (more than the label cap fold into "other") and refusals per code, the audit series with
 * the batch sizes as a histogram, the build's labels (hsmca_build_info), and counts that stay
 * exact under concurrent updates.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "metrics.h"

static const char *const routes[] = {"cas.list", "dac.issue"};

static void
labels_and_histogram(void **state)
{
    struct hsmcad_metrics *m = NULL;
    struct hsmca_audit_stats st;
    char *s, id[32];
    size_t len = 0;
    unsigned i;

    (void)state;
    assert_int_equal(hsmcad_metrics_new(routes, 2, &m), HSMCA_OK);
    hsmcad_metrics_request(m, 0, 200, 300);      /* 0.3 ms */
    hsmcad_metrics_request(m, 1, 201, 2000);     /* 2 ms */
    hsmcad_metrics_request(m, 1, 201, 2000);     /* 2 ms */
    hsmcad_metrics_request(m, 7, 404, 100);      /* unmatched */
    hsmcad_metrics_request(m, 0, 299, 20000000); /* 20 s: other status, +Inf bucket */
    for (i = 0; i < HSMCAD_METRICS_CAS_MAX + 3; i++) {
        snprintf(id, sizeof(id), "pai-%u", i);
        hsmcad_metrics_dac(m, id, 0, 2);
    }
    hsmcad_metrics_dac(m, "pai-0", 1, 5);
    hsmcad_metrics_dac_refused(m, "pai-1", HSMCA_E_HTTP_NOT_ACCEPTABLE, 2);
    hsmcad_metrics_dac_refused(m, "pai-1", HSMCA_E_HTTP_NOT_ACCEPTABLE, 1);
    hsmcad_metrics_dac_refused(m, "pai-0", HSMCA_E_HTTP_BAD_REQUEST, 1);
    hsmcad_metrics_dac_refused(m, "pai-0", (enum hsmca_err)5000, 1);     /* beyond the table */
    hsmcad_metrics_dac_refused(m, "pai-0", HSMCA_E_HTTP_BAD_REQUEST, 0); /* nothing */
    hsmcad_metrics_dac_refused(NULL, "pai-0", HSMCA_E_HTTP_BAD_REQUEST, 1);
    memset(&st, 0, sizeof(st));
    st.commits = 7;
    st.entries = 40;
    st.batch_hist[0] = 3; /* 3 batches of 1 */
    st.batch_hist[4] = 4; /* 4 of 16-63 */
    st.batch_items = 3 + 4 * 40;
    st.commit_hist[3] = 5;                 /* <= 1 ms */
    st.commit_hist[7] = 1;                 /* <= 25 ms */
    st.commit_hist[HSMCA_LAT_NBUCKET] = 1; /* > 10 s */
    st.commit_us_sum = 12345678;
    hsmcad_metrics_sign(m, 150);    /* <= 0.25 ms */
    hsmcad_metrics_sign(m, 180);    /* <= 0.25 ms */
    hsmcad_metrics_sign(m, 12000);  /* <= 25 ms */
    hsmcad_metrics_sign(NULL, 100); /* ignored */
    hsmcad_metrics_store(m, 12, 3);
    hsmcad_metrics_store(NULL, 1, 1);
    s = hsmcad_metrics_render(m, &st, 1, &len);
    assert_non_null(s);
    assert_non_null(strstr(s, "hsmca_store_checkpoints_total 12\n"));
    assert_non_null(strstr(s, "hsmca_store_wal_rewinds_total 3\n"));
    assert_int_equal(strlen(s), len);
    assert_non_null(strstr(s, "hsmca_http_requests_total{route=\"cas.list\",status=\"200\"} 1\n"));
    assert_non_null(strstr(s, "hsmca_http_requests_total{route=\"dac.issue\",status=\"201\"} 2\n"));
    assert_non_null(strstr(s, "hsmca_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"));
    assert_non_null(
        strstr(s, "hsmca_http_requests_total{route=\"cas.list\",status=\"other\"} 1\n"));
    assert_non_null(strstr(s, "hsmca_http_request_duration_seconds_bucket{le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(s, "hsmca_http_request_duration_seconds_bucket{le=\"0.0025\"} 4\n"));
    assert_non_null(strstr(s, "hsmca_http_request_duration_seconds_bucket{le=\"10\"} 4\n"));
    assert_non_null(strstr(s, "hsmca_http_request_duration_seconds_bucket{le=\"+Inf\"} 5\n"));
    assert_non_null(strstr(s, "hsmca_http_request_duration_seconds_count 5\n"));
    assert_non_null(strstr(s, "hsmca_http_request_duration_seconds_sum 20.004400\n"));
    assert_non_null(strstr(s, "hsmca_http_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
    assert_non_null(strstr(s, "hsmca_dac_sign_duration_seconds_bucket{le=\"0.0001\"} 0\n"));
    assert_non_null(strstr(s, "hsmca_dac_sign_duration_seconds_bucket{le=\"0.00025\"} 2\n"));
    assert_non_null(strstr(s, "hsmca_dac_sign_duration_seconds_bucket{le=\"0.01\"} 2\n"));
    assert_non_null(strstr(s, "hsmca_dac_sign_duration_seconds_bucket{le=\"0.025\"} 3\n"));
    assert_non_null(strstr(s, "hsmca_dac_sign_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(s, "hsmca_dac_sign_duration_seconds_sum 0.012330\n"));
    assert_non_null(strstr(s, "hsmca_dac_sign_duration_seconds_count 3\n"));
    assert_non_null(strstr(s, "hsmca_audit_commit_duration_seconds_bucket{le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(s, "hsmca_audit_commit_duration_seconds_bucket{le=\"0.001\"} 5\n"));
    assert_non_null(strstr(s, "hsmca_audit_commit_duration_seconds_bucket{le=\"0.025\"} 6\n"));
    assert_non_null(strstr(s, "hsmca_audit_commit_duration_seconds_bucket{le=\"10\"} 6\n"));
    assert_non_null(strstr(s, "hsmca_audit_commit_duration_seconds_bucket{le=\"+Inf\"} 7\n"));
    assert_non_null(strstr(s, "hsmca_audit_commit_duration_seconds_sum 12.345678\n"));
    assert_non_null(strstr(s, "hsmca_audit_commit_duration_seconds_count 7\n"));
    assert_non_null(strstr(s, "hsmca_dacs_issued_total{ca=\"pai-0\"} 2\n"));
    assert_non_null(strstr(s, "hsmca_dacs_issued_total{ca=\"other\"} 6\n"));
    /* refusals by CA: the by-code calls count there too */
    assert_non_null(strstr(s, "hsmca_dacs_refused_total{ca=\"pai-0\"} 7\n"));
    assert_non_null(strstr(s, "hsmca_dacs_refused_total{ca=\"pai-1\"} 3\n"));
    assert_non_null(strstr(s, "# TYPE hsmca_dacs_refused_by_code_total counter\n"));
    assert_non_null(
        strstr(s, "hsmca_dacs_refused_by_code_total{code=\"http-not-acceptable\"} 3\n"));
    assert_non_null(strstr(s, "hsmca_dacs_refused_by_code_total{code=\"http-bad-request\"} 1\n"));
    assert_non_null(strstr(s, "hsmca_dacs_refused_by_code_total{code=\"other\"} 1\n"));
    assert_null(strstr(s, "hsmca_dacs_refused_by_code_total{code=\"ok\"}"));
    assert_non_null(strstr(s, "hsmca_audit_commits_total 7\n"));
    /* batch sizes: a cumulative histogram with the ranges' upper ends as bounds */
    assert_non_null(strstr(s, "# TYPE hsmca_audit_batch_size histogram\n"));
    assert_non_null(strstr(s, "hsmca_audit_batch_size_bucket{le=\"1\"} 3\n"
                              "hsmca_audit_batch_size_bucket{le=\"3\"} 3\n"
                              "hsmca_audit_batch_size_bucket{le=\"7\"} 3\n"
                              "hsmca_audit_batch_size_bucket{le=\"15\"} 3\n"
                              "hsmca_audit_batch_size_bucket{le=\"63\"} 7\n"
                              "hsmca_audit_batch_size_bucket{le=\"255\"} 7\n"
                              "hsmca_audit_batch_size_bucket{le=\"1023\"} 7\n"
                              "hsmca_audit_batch_size_bucket{le=\"+Inf\"} 7\n"
                              "hsmca_audit_batch_size_sum 163\n"
                              "hsmca_audit_batch_size_count 7\n"));
    assert_null(strstr(s, "hsmca_audit_batches_total"));
    /* the build: one series, value 1, with the run-time OpenSSL */
    {
        char want[256];
        const char *bi = strstr(s, "hsmca_build_info{version=\"");

        assert_non_null(strstr(s, "# TYPE hsmca_build_info gauge\n"));
        assert_non_null(bi);
        assert_ptr_equal(strstr(bi + 1, "hsmca_build_info{"), NULL);
        snprintf(want, sizeof(want), "\",openssl=\"%s\"} 1\n",
                 OpenSSL_version(OPENSSL_VERSION_STRING));
        assert_non_null(strstr(bi, want));
        assert_true(strstr(bi, "\",commit=\"") < strstr(bi, want));
    }
    assert_non_null(strstr(s, "hsmca_ready 1\n"));
    free(s);
    s = hsmcad_metrics_render(m, NULL, 0, &len);
    assert_null(strstr(s, "hsmca_audit_commits_total"));
    assert_null(strstr(s, "hsmca_audit_commit_duration_seconds"));
    assert_null(strstr(s, "hsmca_audit_batch_size"));
    assert_non_null(strstr(s, "hsmca_build_info{"));
    assert_non_null(strstr(s, "hsmca_ready 0\n"));
    free(s);
    hsmcad_metrics_free(m);
    hsmcad_metrics_free(NULL);
}

static void *
hammer(void *arg)
{
    struct hsmcad_metrics *m = arg;
    int i;

    for (i = 0; i < 10000; i++) {
        hsmcad_metrics_request(m, 1, 201, 1000);
        hsmcad_metrics_dac(m, (i & 1) ? "pai-a" : "pai-b", 0, 1);
    }
    return NULL;
}

static void
concurrent_counts_are_exact(void **state)
{
    struct hsmcad_metrics *m = NULL;
    pthread_t t[4];
    char *s;
    int i;

    (void)state;
    assert_int_equal(hsmcad_metrics_new(routes, 2, &m), HSMCA_OK);
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    s = hsmcad_metrics_render(m, NULL, 1, NULL);
    assert_non_null(strstr(s, "route=\"dac.issue\",status=\"201\"} 40000\n"));
    assert_non_null(strstr(s, "hsmca_dacs_issued_total{ca=\"pai-a\"} 20000\n"));
    assert_non_null(strstr(s, "hsmca_dacs_issued_total{ca=\"pai-b\"} 20000\n"));
    free(s);
    hsmcad_metrics_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(labels_and_histogram),
        cmocka_unit_test(concurrent_counts_are_exact),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
