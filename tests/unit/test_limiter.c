/* SPDX-License-Identifier: Apache-2.0
 *
 * test_limiter.c -- the refusal limiter (limiter.c) on a fake clock: the per-key budget of a
 * minute and its summary owed when the minute ends, the bound per second over all keys, probing
 * and eviction of the key counting the oldest minute, keys cut to HSMCA_LIMITER_KEY_MAX, the
 * drain of ended minutes (or of every count), and refused arguments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hsmca/limiter.h"

#define MIN 60000LL /* one minute in ms */

static void
per_key_budget_and_owed_summary(void **state)
{
    struct hsmca_limiter *l = NULL;
    struct hsmca_limiter_slot owed, now;
    int64_t t = 10 * MIN + 5;
    int i;

    (void)state;
    assert_int_equal(hsmca_limiter_new(64, 8, 3, HSMCA_LIMITER_UNBOUNDED, &l), HSMCA_OK);
    for (i = 0; i < 3; i++) {
        assert_int_equal(hsmca_limiter_admit(l, "alice", "operator", t + i, &owed, &now), 1);
        assert_string_equal(owed.key, "");
    }
    assert_int_equal(now.full, 3);
    /* beyond the budget: only counted, from the first such refusal on */
    for (i = 0; i < 5; i++)
        assert_int_equal(hsmca_limiter_admit(l, "alice", "operator", t + 100 + i, &owed, &now), 0);
    assert_int_equal(now.suppressed, 5);
    assert_int_equal(now.since_ms, t + 100);
    /* another key has its own budget */
    assert_int_equal(hsmca_limiter_admit(l, "bob", "admin", t, NULL, NULL), 1);
    /* the next minute: admitted again, and the ended minute's count is owed */
    assert_int_equal(hsmca_limiter_admit(l, "alice", "approver", t + MIN, &owed, &now), 1);
    assert_string_equal(owed.key, "alice");
    assert_string_equal(owed.tag, "approver"); /* what the key was called last */
    assert_int_equal(owed.suppressed, 5);
    assert_int_equal(owed.since_ms, t + 100);
    assert_int_equal(owed.minute, 10);
    assert_int_equal(now.full, 1);
    assert_int_equal(now.suppressed, 0);
    assert_string_equal(now.tag, "approver");
    hsmca_limiter_free(l);
}

static void
per_second_bound_over_all_keys(void **state)
{
    struct hsmca_limiter *l = NULL;
    char key[16];
    int i, admitted = 0;

    (void)state;
    assert_int_equal(hsmca_limiter_new(4096, 8, 60, 10, &l), HSMCA_OK);
    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "10.0.0.%d", i);
        admitted += hsmca_limiter_admit(l, key, NULL, 5000, NULL, NULL);
    }
    assert_int_equal(admitted, 10);
    /* the next second has its own 10 */
    for (i = 0, admitted = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "10.0.0.%d", i);
        admitted += hsmca_limiter_admit(l, key, NULL, 6000, NULL, NULL);
    }
    assert_int_equal(admitted, 10);
    hsmca_limiter_free(l);
    /* 0 a second or 0 a minute: nothing gets an entry of its own */
    assert_int_equal(hsmca_limiter_new(16, 1, 60, 0, &l), HSMCA_OK);
    assert_int_equal(hsmca_limiter_admit(l, "a", NULL, 0, NULL, NULL), 0);
    hsmca_limiter_free(l);
    assert_int_equal(hsmca_limiter_new(16, 1, 0, HSMCA_LIMITER_UNBOUNDED, &l), HSMCA_OK);
    assert_int_equal(hsmca_limiter_admit(l, "a", NULL, 0, NULL, NULL), 0);
    hsmca_limiter_free(l);
}

static void
eviction_hands_back_the_count(void **state)
{
    struct hsmca_limiter *l = NULL;
    struct hsmca_limiter_slot owed, now;

    (void)state;
    /* one slot: every key meets every other */
    assert_int_equal(hsmca_limiter_new(1, 1, 1, HSMCA_LIMITER_UNBOUNDED, &l), HSMCA_OK);
    assert_int_equal(hsmca_limiter_admit(l, "a", "r", 0, &owed, NULL), 1);
    assert_int_equal(hsmca_limiter_admit(l, "a", "r", 1, &owed, NULL), 0);
    assert_int_equal(hsmca_limiter_admit(l, "a", "r", 2, &owed, NULL), 0);
    assert_int_equal(hsmca_limiter_admit(l, "b", "r", 3, &owed, &now), 1);
    assert_string_equal(owed.key, "a"); /* evicted with 2 refusals only counted */
    assert_int_equal(owed.suppressed, 2);
    assert_string_equal(now.key, "b");
    assert_int_equal(now.full, 1);
    hsmca_limiter_free(l);

    /* two slots probed: two keys live side by side, a third evicts the older minute */
    assert_int_equal(hsmca_limiter_new(2, 2, 1, HSMCA_LIMITER_UNBOUNDED, &l), HSMCA_OK);
    assert_int_equal(hsmca_limiter_admit(l, "a", NULL, 0, &owed, NULL), 1);
    assert_int_equal(hsmca_limiter_admit(l, "b", NULL, MIN, &owed, NULL), 1);
    assert_int_equal(hsmca_limiter_admit(l, "a", NULL, 10, &owed, NULL), 0); /* still known */
    assert_int_equal(hsmca_limiter_admit(l, "b", NULL, MIN + 1, &owed, NULL), 0);
    assert_int_equal(hsmca_limiter_admit(l, "c", NULL, 2 * MIN, &owed, &now), 1);
    assert_string_equal(owed.key, "a"); /* minute 0 is older than b's minute 1 */
    assert_int_equal(owed.minute, 0);
    assert_int_equal(hsmca_limiter_admit(l, "b", NULL, 2 * MIN, &owed, NULL), 1);
    assert_string_equal(owed.key, "b"); /* b's minute ended with 1 only counted */
    hsmca_limiter_free(l);
}

static void
long_keys_are_cut(void **state)
{
    struct hsmca_limiter *l = NULL;
    struct hsmca_limiter_slot now;
    char a[HSMCA_LIMITER_KEY_MAX + 40], b[HSMCA_LIMITER_KEY_MAX + 40];

    (void)state;
    memset(a, 'k', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[HSMCA_LIMITER_KEY_MAX + 10] = 'z'; /* differs only beyond the cut: the same key */
    assert_int_equal(hsmca_limiter_new(64, 8, 1, HSMCA_LIMITER_UNBOUNDED, &l), HSMCA_OK);
    assert_int_equal(hsmca_limiter_admit(l, a, NULL, 0, NULL, &now), 1);
    assert_int_equal(strlen(now.key), HSMCA_LIMITER_KEY_MAX);
    assert_int_equal(hsmca_limiter_admit(l, b, NULL, 1, NULL, &now), 0);
    assert_int_equal(now.suppressed, 1);
    hsmca_limiter_free(l);
}

struct seen {
    int n;
    char keys[4][HSMCA_LIMITER_KEY_MAX + 1];
    uint64_t suppressed[4];
};

static void
collect(void *arg, const struct hsmca_limiter_slot *s)
{
    struct seen *v = arg;

    assert_true(v->n < 4);
    snprintf(v->keys[v->n], sizeof(v->keys[v->n]), "%s", s->key);
    v->suppressed[v->n++] = s->suppressed;
}

static void
drain_ended_minutes_or_all(void **state)
{
    struct hsmca_limiter *l = NULL;
    struct seen v;

    (void)state;
    assert_int_equal(hsmca_limiter_new(64, 8, 0, HSMCA_LIMITER_UNBOUNDED, &l), HSMCA_OK);
    assert_int_equal(hsmca_limiter_admit(l, "old", NULL, 0, NULL, NULL), 0);
    assert_int_equal(hsmca_limiter_admit(l, "old", NULL, 1, NULL, NULL), 0);
    assert_int_equal(hsmca_limiter_admit(l, "new", NULL, MIN, NULL, NULL), 0);
    /* at minute 1 only minute 0's count is owed; it starts afresh */
    memset(&v, 0, sizeof(v));
    hsmca_limiter_drain(l, MIN + 5, 0, collect, &v);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.keys[0], "old");
    assert_int_equal(v.suppressed[0], 2);
    memset(&v, 0, sizeof(v));
    hsmca_limiter_drain(l, MIN + 6, 0, collect, &v);
    assert_int_equal(v.n, 0);
    /* all: the running minute's too (at the end) */
    hsmca_limiter_drain(l, MIN + 7, 1, collect, &v);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.keys[0], "new");
    assert_int_equal(v.suppressed[0], 1);
    memset(&v, 0, sizeof(v));
    hsmca_limiter_drain(l, MIN + 8, 1, collect, &v);
    assert_int_equal(v.n, 0);
    hsmca_limiter_free(l);
}

static void
refused_arguments(void **state)
{
    struct hsmca_limiter *l = NULL;

    (void)state;
    assert_int_equal(hsmca_limiter_new(0, 1, 1, 1, &l), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_limiter_new(4, 0, 1, 1, &l), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_limiter_new(4, 5, 1, 1, &l), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_limiter_new(4, 4, 1, 1, NULL), HSMCA_E_INVALID_ARG);
    assert_null(l);
    /* no limiter: fail towards auditing */
    assert_int_equal(hsmca_limiter_admit(NULL, "a", NULL, 0, NULL, NULL), 1);
    hsmca_limiter_free(NULL);
    hsmca_limiter_drain(NULL, 0, 1, collect, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_key_budget_and_owed_summary),
        cmocka_unit_test(per_second_bound_over_all_keys),
        cmocka_unit_test(eviction_hands_back_the_count),
        cmocka_unit_test(long_keys_are_cut),
        cmocka_unit_test(drain_ended_minutes_or_all),
        cmocka_unit_test(refused_arguments),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
