/* SPDX-License-Identifier: Apache-2.0
 *
 * test_store_audit.c -- the audit tables and the savepoints: writes only inside a transaction,
 * a duplicate seq refused, lines stored and read back byte for byte, scans in order, checkpoint
 * lookups by size bound, intents opened and closed once, savepoint rollback keeping the rest of
 * its transaction, and the limits at N and N+1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hsmca/store_audit.h"

#include "fixture.h"

struct ctx {
    char dir[512];
    struct hsmca_store *st;
};

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));

    if (c == NULL || fx_store_open("store-audit", 0, c->dir, sizeof(c->dir), NULL, 0, &c->st) != 0)
        return -1;
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

static const unsigned char H[32] = {1, 2, 3};

static void
writes_need_a_transaction(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_checkpoint cp;
    static char big[HSMCA_AUDIT_LINE_MAX + 1];

    memset(&cp, 0, sizeof(cp));
    assert_int_equal(hsmca_store_audit_put(c->st, 1, "{}", 2, H), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_savepoint(c->st), HSMCA_E_INVALID_ARG);
    cp.size = 1;
    cp.text = "t";
    cp.text_len = 1;
    cp.sig = (unsigned char *)"s";
    cp.sig_len = 1;
    assert_int_equal(hsmca_store_audit_cp_put(c->st, &cp), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_begin(c->st), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_put(c->st, 0, "{}", 2, H), HSMCA_E_INVALID_ARG);
    memset(big, 'x', sizeof(big));
    assert_int_equal(hsmca_store_audit_put(c->st, 1, big, HSMCA_AUDIT_LINE_MAX + 1, H),
                     HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_store_audit_put(c->st, 1, big, HSMCA_AUDIT_LINE_MAX, H), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_put(c->st, 1, "{}", 2, H), HSMCA_E_STORE_CONSTRAINT);
    assert_int_equal(hsmca_store_commit(c->st), HSMCA_OK);
}

static enum hsmca_err
collect(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    uint64_t *v = arg;

    if (len != 3 || line[0] != 'L' || hash[0] != (unsigned char)seq)
        return HSMCA_E_INTERNAL;
    v[v[0] + 1] = seq;
    v[0]++;
    return seq == 7 ? HSMCA_E_NOT_FOUND : HSMCA_OK;
}

static void
entries_and_savepoints(void **state)
{
    struct ctx *c = *state;
    unsigned char h[32], got[32];
    uint64_t head = 99, v[16] = {0};
    char *line = NULL;
    size_t len = 0, n = 0;
    int i;

    assert_int_equal(hsmca_store_audit_head(c->st, &head, got), HSMCA_OK);
    assert_int_equal(head, 0);
    assert_int_equal(hsmca_store_audit_get(c->st, 1, &line, &len, got), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_store_begin(c->st), HSMCA_OK);
    for (i = 1; i <= 8; i++) {
        char l[4];

        snprintf(l, sizeof(l), "L%02d", i);
        memset(h, 0, sizeof(h));
        h[0] = (unsigned char)i;
        assert_int_equal(hsmca_store_savepoint(c->st), HSMCA_OK);
        assert_int_equal(hsmca_store_audit_put(c->st, (uint64_t)i, l, 3, h), HSMCA_OK);
        if (i == 4) {
            assert_int_equal(hsmca_store_audit_intent_open(c->st, 4, "key.generate"), HSMCA_OK);
            assert_int_equal(hsmca_store_savepoint_release(c->st), HSMCA_OK);
        } else if (i == 8) {
            assert_int_equal(hsmca_store_savepoint_rollback(c->st), HSMCA_OK); /* 8 undone */
        } else {
            assert_int_equal(hsmca_store_savepoint_release(c->st), HSMCA_OK);
        }
    }
    assert_int_equal(hsmca_store_commit(c->st), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_head(c->st, &head, got), HSMCA_OK);
    assert_int_equal(head, 7);
    assert_int_equal(got[0], 7);
    assert_int_equal(hsmca_store_audit_get(c->st, 3, &line, &len, got), HSMCA_OK);
    assert_int_equal(len, 3);
    assert_string_equal(line, "L03");
    free(line);
    /* a scan stops at the callback's code */
    assert_int_equal(hsmca_store_audit_scan(c->st, 2, 100, collect, v), HSMCA_E_NOT_FOUND);
    assert_int_equal(v[0], 6);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[6], 7);
    /* intents: listed, closed once */
    {
        struct hsmca_store_audit_intent in[4];

        assert_int_equal(hsmca_store_audit_intents(c->st, in, 4, &n), HSMCA_OK);
        assert_int_equal(n, 1);
        assert_int_equal(in[0].seq, 4);
        assert_string_equal(in[0].action, "key.generate");
        assert_int_equal(hsmca_store_audit_intent_close(c->st, 4), HSMCA_OK);
        assert_int_equal(hsmca_store_audit_intent_close(c->st, 4), HSMCA_E_NOT_FOUND);
        assert_int_equal(hsmca_store_audit_intents(c->st, in, 4, &n), HSMCA_OK);
        assert_int_equal(n, 0);
    }
}

static void
checkpoints_by_size(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_checkpoint cp, got;
    static const uint64_t sizes[] = {1, 10, 20};
    size_t i;

    memset(&got, 0, sizeof(got));
    assert_int_equal(hsmca_store_audit_cp_at_most(c->st, UINT64_MAX, &got), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_store_begin(c->st), HSMCA_OK);
    for (i = 0; i < 3; i++) {
        char text[32];

        memset(&cp, 0, sizeof(cp));
        snprintf(text, sizeof(text), "cp %llu\n", (unsigned long long)sizes[i]);
        cp.size = sizes[i];
        cp.text = text;
        cp.text_len = strlen(text);
        cp.sig = (unsigned char *)"\x30\x06sig";
        cp.sig_len = 5;
        cp.head[0] = (unsigned char)sizes[i];
        cp.hash[0] = 0xcc;
        assert_int_equal(hsmca_store_audit_cp_put(c->st, &cp), HSMCA_OK);
    }
    assert_int_equal(hsmca_store_audit_cp_put(c->st, &cp), HSMCA_E_STORE_CONSTRAINT);
    assert_int_equal(hsmca_store_commit(c->st), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_cp_at_most(c->st, 15, &got), HSMCA_OK);
    assert_int_equal(got.size, 10);
    assert_string_equal(got.text, "cp 10\n");
    assert_int_equal(got.sig_len, 5);
    assert_int_equal(got.head[0], 10);
    hsmca_audit_checkpoint_clear(&got);
    assert_int_equal(hsmca_store_audit_cp_at_least(c->st, 11, &got), HSMCA_OK);
    assert_int_equal(got.size, 20);
    hsmca_audit_checkpoint_clear(&got);
    assert_int_equal(hsmca_store_audit_cp_at_least(c->st, 21, &got), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_store_audit_cp_at_most(c->st, 0, &got), HSMCA_E_NOT_FOUND);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writes_need_a_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(entries_and_savepoints, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoints_by_size, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
