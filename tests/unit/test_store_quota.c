/* SPDX-License-Identifier: Apache-2.0
 *
 * test_store_quota.c -- issuance quotas counted in the store (store_quota.h): a reservation
 * never takes the live sum past the limit, buckets leave the sliding minute and day exactly on
 * time, give-backs and releases lower the count and never below zero, nodes (handles and threads)
 * reserving at once together take exactly the limit, and blocks in memory (hsmca_quota_take)
 * hand out no more than the store granted. And mDL signing windows in the store (store_windows.h):
 * their count reserved in blocks never beyond max_signatures, given back, ended by time or by a
 * revocation, kept apart from DAC windows. On the store HSMCA_TEST_STORE_SPEC names (e.g. a
 * PostgreSQL one), else a fresh SQLite file; each run uses CA ids of its own.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "hsmca/store_mdl.h"
#include "hsmca/store_quota.h"
#include "hsmca/store_windows.h"

#include "fixture.h"

#define T0 INT64_C(1800000000000) /* on a day's boundary: buckets start here */
#define THREADS 4

struct ctx {
    char dir[512];
    char spec[700];
    char ca[40];
    struct hsmca_store *st;
};

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct timespec ts;

    if (c == NULL ||
        fx_store_open("quota", 1, c->dir, sizeof(c->dir), c->spec, sizeof(c->spec), &c->st) != 0)
        return -1;
    /* a CA id of this run's own: a shared PostgreSQL store keeps earlier runs' rows */
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(c->ca, sizeof(c->ca), "pai-q%u-%u", (unsigned)ts.tv_sec, (unsigned)ts.tv_nsec);
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    struct ctx *c = *state;

    fx_store_close(c->st, c->dir);
    free(c);
    return 0;
}

static uint64_t
sum_at(struct ctx *c, char period, int64_t t)
{
    uint64_t n = 99999;

    assert_int_equal(hsmca_store_quota_sum(c->st, c->ca, period, t, &n), HSMCA_OK);
    return n;
}

static void
bad_arguments_are_refused(void **state)
{
    struct ctx *c = *state;
    uint64_t got = 7, sum = 7;

    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'x', T0, 10, 1, 0, 0, &got, &sum),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'm', T0, 10, 0, 0, 0, &got, &sum),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'm', T0, 0, 1, 0, 0, &got, &sum),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_quota_reserve(c->st, NULL, 'm', T0, 10, 1, 0, 0, &got, &sum),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_quota_bucket('x', T0), -1);
    assert_int_equal(hsmca_quota_bucket(HSMCA_QUOTA_MINUTE, T0 + 1999), T0 + 1000);
    assert_int_equal(hsmca_quota_bucket(HSMCA_QUOTA_DAY, T0 + 119999), T0 + 60000);
    /* nothing was written */
    assert_int_equal(sum_at(c, HSMCA_QUOTA_MINUTE, T0), 0);
}

static void
reserve_stops_at_the_limit(void **state)
{
    struct ctx *c = *state;
    uint64_t got = 0, sum = 0;

    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'm', T0, 10, 4, 0, 0, &got, &sum),
                     HSMCA_OK);
    assert_int_equal(got, 4);
    assert_int_equal(sum, 4);
    /* asks 8, 6 are left: takes 6 */
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'm', T0 + 500, 10, 8, 0, 0, &got, &sum), HSMCA_OK);
    assert_int_equal(got, 6);
    assert_int_equal(sum, 10);
    /* N + 1: refused, the minute's code */
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'm', T0 + 900, 10, 1, 0, 0, &got, &sum),
        HSMCA_E_ISSUE_QUOTA_MINUTE);
    assert_int_equal(got, 0);
    assert_int_equal(sum_at(c, 'm', T0 + 900), 10);
    /* the day's count is apart, and refuses with the day's code */
    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'd', T0, 3, 5, 0, 0, &got, &sum),
                     HSMCA_OK);
    assert_int_equal(got, 3);
    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'd', T0, 3, 1, 0, 0, &got, &sum),
                     HSMCA_E_ISSUE_QUOTA_DAY);
    /* another CA's count is its own */
    {
        char other[80];

        snprintf(other, sizeof(other), "%s-b", c->ca);
        assert_int_equal(hsmca_store_quota_reserve(c->st, other, 'm', T0, 10, 10, 0, 0, &got, &sum),
                         HSMCA_OK);
        assert_int_equal(got, 10);
    }
}

static void
buckets_leave_the_minute_and_the_day_on_time(void **state)
{
    struct ctx *c = *state;
    uint64_t got = 0, sum = 0;

    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'm', T0, 5, 5, 0, 0, &got, &sum),
                     HSMCA_OK);
    /* 59.999 s later the bucket of T0 is still live: refused */
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'm', T0 + 59999, 5, 1, 0, 0, &got, &sum),
        HSMCA_E_ISSUE_QUOTA_MINUTE);
    assert_int_equal(sum_at(c, 'm', T0 + 59999), 5);
    /* 60 s later it has left: admitted */
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'm', T0 + 60000, 5, 2, 0, 0, &got, &sum), HSMCA_OK);
    assert_int_equal(got, 2);
    assert_int_equal(sum, 2);

    /* the day: buckets of a minute, live for 24 h */
    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'd', T0, 4, 4, 0, 0, &got, &sum),
                     HSMCA_OK);
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'd', T0 + 86399999, 4, 1, 0, 0, &got, &sum),
        HSMCA_E_ISSUE_QUOTA_DAY);
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'd', T0 + 86400000, 4, 1, 0, 0, &got, &sum),
        HSMCA_OK);
    assert_int_equal(sum, 1);
}

static void
give_back_and_release_lower_the_count(void **state)
{
    struct ctx *c = *state;
    uint64_t got = 0, sum = 0;

    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'm', T0, 10, 8, 0, 0, &got, &sum),
                     HSMCA_OK);
    /* the next bucket's reservation gives 3 of T0's back in the same transaction */
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'm', T0 + 1000, 10, 4, T0, 3, &got, &sum),
        HSMCA_OK);
    assert_int_equal(got, 4);
    assert_int_equal(sum, 9);
    /* a refused reservation keeps its give-back */
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'm', T0 + 1000, 9, 1, T0, 2, &got, &sum), HSMCA_OK);
    assert_int_equal(sum, 8);
    assert_int_equal(
        hsmca_store_quota_reserve(c->st, c->ca, 'm', T0 + 1000, 8, 1, T0 + 1000, 1, &got, &sum),
        HSMCA_OK);
    assert_int_equal(sum_at(c, 'm', T0 + 1000), 8);
    /* release: lowers the bucket, never below zero */
    assert_int_equal(hsmca_store_quota_release(c->st, c->ca, 'm', T0 + 1000, 5), HSMCA_OK);
    assert_int_equal(sum_at(c, 'm', T0 + 1000), 3);
    assert_int_equal(hsmca_store_quota_release(c->st, c->ca, 'm', T0 + 1000, 100), HSMCA_OK);
    assert_int_equal(sum_at(c, 'm', T0 + 1000), 3);
    assert_int_equal(hsmca_store_quota_release(c->st, c->ca, 'm', T0 + 7000, 1), HSMCA_OK);
    assert_int_equal(sum_at(c, 'm', T0 + 1000), 3);
}

/* ---- nodes at once: each its own handle, reserving until refused ---- */

struct racer {
    struct ctx *c;
    struct hsmca_store *st;
    uint64_t got;
    enum hsmca_err last;
};

static void *
race(void *arg)
{
    struct racer *r = arg;
    unsigned i;

    for (i = 0; i < 400; i++) { /* bounded: the limit is 100 */
        uint64_t got = 0, sum = 0;

        r->last = hsmca_store_quota_reserve(r->st, r->c->ca, 'm', T0 + 100, 100, 1 + i % 3, 0, 0,
                                            &got, &sum);
        if (r->last == HSMCA_E_STORE_BUSY)
            continue;
        if (r->last != HSMCA_OK)
            break;
        r->got += got;
    }
    return NULL;
}

static void
nodes_at_once_take_exactly_the_limit(void **state)
{
    struct ctx *c = *state;
    struct racer r[THREADS];
    pthread_t th[THREADS];
    uint64_t total = 0;
    unsigned i;

    for (i = 0; i < THREADS; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].c = c;
        assert_int_equal(hsmca_store_open(c->spec, &r[i].st), HSMCA_OK);
    }
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].last, HSMCA_E_ISSUE_QUOTA_MINUTE);
        total += r[i].got;
        hsmca_store_close(r[i].st);
    }
    assert_int_equal(total, 100);
    assert_int_equal(sum_at(c, 'm', T0 + 100), 100);
}

/* ---- blocks in memory: two nodes, each its own handle, mutex and block ---- */

struct node {
    struct hsmca_store *st;
    pthread_mutex_t mu, st_mu;
    pthread_cond_t cv;
    struct hsmca_quota_blk b;
};

static void
node_init(struct node *n, const char *spec)
{
    assert_int_equal(hsmca_store_open(spec, &n->st), HSMCA_OK);
    pthread_mutex_init(&n->mu, NULL);
    pthread_mutex_init(&n->st_mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    hsmca_quota_blk_init(&n->b);
}

static void
node_free(struct node *n)
{
    hsmca_store_close(n->st);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->st_mu);
    pthread_mutex_destroy(&n->mu);
}

static enum hsmca_err
take(struct node *n, const char *ca, uint64_t limit, uint64_t cap, int64_t t, int64_t *bucket)
{
    enum hsmca_err rc;

    pthread_mutex_lock(&n->mu);
    rc = hsmca_quota_take(&n->b, &n->mu, &n->cv, n->st, &n->st_mu, ca, 'm', limit, cap, t, bucket);
    pthread_mutex_unlock(&n->mu);
    return rc;
}

static void
blocks_never_hand_out_more_than_the_store_granted(void **state)
{
    struct ctx *c = *state;
    struct node a, b;
    uint64_t taken = 0, reserved_before;
    int64_t bucket = -1;
    unsigned i;
    enum hsmca_err ra = HSMCA_OK, rb = HSMCA_OK;

    node_init(&a, c->spec);
    node_init(&b, c->spec);
    /* the first block is an eighth of the limit (80: 10), at most cap */
    assert_int_equal(take(&a, c->ca, 80, 64, T0 + 2000, &bucket), HSMCA_OK);
    assert_int_equal(bucket, T0 + 2000);
    assert_int_equal(a.b.n, 9);
    assert_int_equal(sum_at(c, 'm', T0 + 2000), 10);
    /* a slot given back returns to the block; one of another bucket is lost */
    hsmca_quota_blk_give(&a.b, T0 + 2000);
    assert_int_equal(a.b.n, 10);
    hsmca_quota_blk_give(&a.b, T0 + 1000);
    assert_int_equal(a.b.n, 10);
    a.b.n = 9;
    taken = 1;
    /* both nodes take in turn until both are refused: exactly the limit */
    for (i = 0; i < 400 && (ra == HSMCA_OK || rb == HSMCA_OK); i++) {
        if (ra == HSMCA_OK && (ra = take(&a, c->ca, 80, 64, T0 + 2000, &bucket)) == HSMCA_OK)
            taken++;
        if (rb == HSMCA_OK && (rb = take(&b, c->ca, 80, 64, T0 + 2300, &bucket)) == HSMCA_OK)
            taken++;
    }
    assert_int_equal(ra, HSMCA_E_ISSUE_QUOTA_MINUTE);
    assert_int_equal(rb, HSMCA_E_ISSUE_QUOTA_MINUTE);
    assert_int_equal(taken, 80);
    assert_int_equal(sum_at(c, 'm', T0 + 2000), 80);
    /* refused only once its block is empty: no slot is left unused by either */
    assert_true(a.b.n == 0 && b.b.n == 0);
    /* a refused bucket is not asked again; the next second's is */
    assert_int_equal(take(&a, c->ca, 80, 64, T0 + 2999, &bucket), HSMCA_E_ISSUE_QUOTA_MINUTE);
    /* a new limit above the count: the next bucket's reservation gets a block again, an eighth
     * of what the last known sum (80) leaves */
    reserved_before = sum_at(c, 'm', T0 + 3000);
    assert_int_equal(take(&a, c->ca, 160, 64, T0 + 3000, &bucket), HSMCA_OK);
    assert_int_equal(bucket, T0 + 3000);
    assert_int_equal(sum_at(c, 'm', T0 + 3000), reserved_before + 10);
    /* the next bucket's reservation gives the rest of the block back in its transaction */
    assert_int_equal(take(&a, c->ca, 160, 64, T0 + 4000, &bucket), HSMCA_OK);
    assert_int_equal(a.b.n, 7); /* (160 - 90) / 8 = 8, one taken */
    assert_int_equal(sum_at(c, 'm', T0 + 4000), reserved_before + 1 + 8);
    /* a request older than the block's bucket takes one slot straight from the store */
    assert_int_equal(take(&a, c->ca, 160, 64, T0 + 3500, &bucket), HSMCA_OK);
    assert_int_equal(bucket, T0 + 3000);
    assert_int_equal(a.b.start, T0 + 4000);
    assert_int_equal(sum_at(c, 'm', T0 + 4000), reserved_before + 2 + 8);
    /* closing: the unused block goes back; what is left is what was taken */
    assert_int_equal(hsmca_store_quota_release(a.st, c->ca, 'm', a.b.start, a.b.n), HSMCA_OK);
    assert_int_equal(sum_at(c, 'm', T0 + 4000), reserved_before + 2 + 1);
    node_free(&a);
    node_free(&b);
}

static void
recount_sets_buckets_to_the_certificates(void **state)
{
    struct ctx *c = *state;
    uint64_t got = 0, sum = 0;
    int64_t now = (int64_t)time(NULL) * 1000;

    if (hsmca_store_is_pg(c->st)) {
        /* a shared store is never recounted: nodes may hold blocks */
        assert_int_equal(hsmca_store_quota_recount(c->st, c->ca, now), HSMCA_E_INVALID_ARG);
        return;
    }
    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'm', now, 50, 20, 0, 0, &got, &sum),
                     HSMCA_OK);
    assert_int_equal(hsmca_store_quota_reserve(c->st, c->ca, 'd', now, 50, 20, 0, 0, &got, &sum),
                     HSMCA_OK);
    /* no certificate of this CA: a killed node's reservations are counted again as 0 */
    assert_int_equal(hsmca_store_quota_recount(c->st, c->ca, now), HSMCA_OK);
    assert_int_equal(sum_at(c, 'm', now), 0);
    assert_int_equal(sum_at(c, 'd', now), 0);
}

/* ---- mDL signing windows ---- */

static void
mdl_ca(struct ctx *c, const char *id, const char *kind, const char *parent)
{
    static unsigned char cert[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    struct hsmca_mdl_ca_rec r;

    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.kind, sizeof(r.kind), "%s", kind);
    snprintf(r.parent, sizeof(r.parent), "%s", parent);
    snprintf(r.token_uri, sizeof(r.token_uri), "pkcs11:token=mdl-ds");
    snprintf(r.key_uri, sizeof(r.key_uri), "pkcs11:token=mdl-ds;object=ds-key");
    r.cert_der = cert;
    r.cert_len = sizeof(cert);
    r.serial[0] = 1;
    r.serial_len = 1;
    r.created_ms = T0;
    assert_int_equal(hsmca_store_mdl_ca_put(c->st, &r), HSMCA_OK);
}

static void
mdl_windows_hold_their_count(void **state)
{
    struct ctx *c = *state;
    struct hsmca_window_rec w, got_w;
    char iaca[48], ds[48], ds2[48];
    uint64_t got = 0, used = 0;
    int64_t now = (int64_t)time(NULL) * 1000;

    snprintf(iaca, sizeof(iaca), "%s-iaca", c->ca);
    snprintf(ds, sizeof(ds), "%s-ds", c->ca);
    snprintf(ds2, sizeof(ds2), "%s-ds2", c->ca);
    mdl_ca(c, iaca, "iaca", "");
    mdl_ca(c, ds, "ds", iaca);
    mdl_ca(c, ds2, "ds", iaca);
    memset(&w, 0, sizeof(w));
    snprintf(w.id, sizeof(w.id), "%s-w1", c->ca);
    snprintf(w.ca, sizeof(w.ca), "%s", ds);
    w.until_ms = now + 600000;
    w.max_dacs = 10;
    w.opened_ms = now;
    assert_int_equal(hsmca_store_mdl_window_open(c->st, &w), HSMCA_OK);
    /* opening it again (another node's retry) keeps it; under another DS it is refused */
    w.max_dacs = 99;
    assert_int_equal(hsmca_store_mdl_window_open(c->st, &w), HSMCA_OK);
    snprintf(w.ca, sizeof(w.ca), "%s", ds2);
    assert_int_equal(hsmca_store_mdl_window_open(c->st, &w), HSMCA_E_STORE_CONSTRAINT);
    assert_int_equal(hsmca_store_mdl_window_get(c->st, w.id, &got_w), HSMCA_OK);
    assert_int_equal(got_w.max_dacs, 10);
    assert_string_equal(got_w.ca, ds);
    /* a DAC window of that id there is not: the tables are apart */
    assert_int_equal(hsmca_store_window_get(c->st, w.id, &got_w), HSMCA_E_NOT_FOUND);

    /* blocks: 4, then 6 of the 8 asked, then nothing */
    assert_int_equal(hsmca_store_mdl_window_reserve(c->st, w.id, 4, now, &got, &used), HSMCA_OK);
    assert_int_equal(got, 4);
    assert_int_equal(hsmca_store_mdl_window_reserve(c->st, w.id, 8, now, &got, &used), HSMCA_OK);
    assert_int_equal(got, 6);
    assert_int_equal(used, 10);
    assert_int_equal(hsmca_store_mdl_window_reserve(c->st, w.id, 1, now, &got, &used),
                     HSMCA_E_ISSUE_WINDOW_EXHAUSTED);
    assert_int_equal(got, 0);
    /* a closing node's unused block goes back, and only that */
    assert_int_equal(hsmca_store_mdl_window_release(c->st, w.id, 3), HSMCA_OK);
    assert_int_equal(hsmca_store_mdl_window_release(c->st, w.id, 50), HSMCA_OK);
    assert_int_equal(hsmca_store_mdl_window_reserve(c->st, w.id, 5, now, &got, &used), HSMCA_OK);
    assert_int_equal(got, 3);
    assert_int_equal(used, 10);
    /* its time */
    assert_int_equal(hsmca_store_mdl_window_release(c->st, w.id, 2), HSMCA_OK);
    assert_int_equal(hsmca_store_mdl_window_reserve(c->st, w.id, 1, now + 600000, &got, &used),
                     HSMCA_E_ISSUE_WINDOW_EXPIRED);
    /* a revoked DS: its windows end for every node */
    assert_int_equal(hsmca_store_mdl_windows_end(c->st, ds, now), HSMCA_OK);
    assert_int_equal(hsmca_store_mdl_window_reserve(c->st, w.id, 1, now, &got, &used),
                     HSMCA_E_ISSUE_WINDOW_EXPIRED);
    assert_int_equal(hsmca_store_mdl_window_get(c->st, w.id, &got_w), HSMCA_OK);
    assert_true(got_w.used <= got_w.max_dacs);
    /* no window for a CA the mDL table does not hold (the foreign key) */
    snprintf(w.id, sizeof(w.id), "%s-w2", c->ca);
    snprintf(w.ca, sizeof(w.ca), "%s-none", c->ca);
    assert_int_not_equal(hsmca_store_mdl_window_open(c->st, &w), HSMCA_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bad_arguments_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(reserve_stops_at_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(buckets_leave_the_minute_and_the_day_on_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(give_back_and_release_lower_the_count, setup, teardown),
        cmocka_unit_test_setup_teardown(nodes_at_once_take_exactly_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(blocks_never_hand_out_more_than_the_store_granted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(recount_sets_buckets_to_the_certificates, setup, teardown),
        cmocka_unit_test_setup_teardown(mdl_windows_hold_their_count, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
