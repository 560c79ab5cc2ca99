/* SPDX-License-Identifier: Apache-2.0
 *
 * test_quorum_nodes.c -- the shapes of a ca.activate naming several nodes (quorum_nodes.c): the
 * request's "node_keys" in the strict request parse, an approval's "node_shares" in the strict
 * approval parse and against the request, the store's quorum_nodes rows (put, move, list), and
 * the nodes' liveness locks (on PostgreSQL, through tests/integration/store_backend.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "hsmca/store.h"
#include "hsmca/store_quorum.h"

#include "../../src/lib/quorum_int.h"
#include "../../src/lib/store_internal.h"
#include "fixture.h"

#define KEY1 "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAAAA"
#define KEY2 "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBBBB"
#define ID "0123456789abcdef0123456789abcdef"

/* A request's bytes as quorum_request.c writes them, with node_keys (NULL: none) and nodes. */
static char *
request_bytes(json_t *node_keys, json_t *nodes)
{
    json_t *params =
        json_pack("{s:s, s:I, s:I, s:[s]}", "ca", "pai-1", "until", (json_int_t)4102444800000LL,
                  "max_dacs", (json_int_t)10, "tokens", "hsmca-pai-1");
    json_t *r;
    char *s;

    if (nodes != NULL)
        json_object_set(params, "nodes", nodes);
    r = json_pack("{s:I, s:n, s:I, s:I, s:s, s:s, s:o, s:s, s:s, s:{s:s, s:s}}", "approver_epoch",
                  (json_int_t)1, "checkpoint", "created", (json_int_t)1, "expires",
                  (json_int_t)4102444800000LL, "id", ID, "op", "ca.activate", "params", params,
                  "policy_hash", "00", "request_key", KEY1, "requester", "key", "", "principal",
                  "admin");
    if (node_keys != NULL)
        json_object_set(r, "node_keys", node_keys);
    s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(r);
    return s;
}

static enum hsmca_err
parse(json_t *node_keys, json_t *nodes, struct req_view *v)
{
    char *b = request_bytes(node_keys, nodes);
    enum hsmca_err rc = hsmca_q_req_parse((const unsigned char *)b, strlen(b), v);

    free(b);
    return rc;
}

static void
request_node_keys_are_checked(void **state)
{
    struct req_view v;
    json_t *two = json_pack("[s, s]", "node-1", "node-2");
    json_t *keys = json_pack("{s:s, s:s}", "node-1", KEY1, "node-2", KEY2), *bad, *nodes;

    (void)state;
    /* no node_keys: as before */
    assert_int_equal(parse(NULL, NULL, &v), HSMCA_OK);
    assert_null(v.node_keys);
    hsmca_q_req_view_clear(&v);
    /* two nodes, the requesting node's key the request key */
    assert_int_equal(parse(keys, two, &v), HSMCA_OK);
    assert_non_null(v.node_keys);
    assert_int_equal(json_object_size(v.node_keys), 2);
    hsmca_q_req_view_clear(&v);
    /* node_keys without params.nodes, or naming other nodes */
    assert_int_equal(parse(keys, NULL, &v), HSMCA_E_QUORUM_ENVELOPE);
    bad = json_pack("[s, s]", "node-1", "node-3");
    assert_int_equal(parse(keys, bad, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(bad);
    /* no node's key is the request key, or two are */
    bad = json_pack("{s:s, s:s}", "node-1", KEY2, "node-2", KEY2);
    assert_int_equal(parse(bad, two, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(bad);
    bad = json_pack("{s:s, s:s}", "node-1", KEY1, "node-2", KEY1);
    assert_int_equal(parse(bad, two, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(bad);
    /* one node, a bad name, a key that is no string */
    bad = json_pack("{s:s}", "node-1", KEY1);
    nodes = json_pack("[s]", "node-1");
    assert_int_equal(parse(bad, nodes, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(nodes);
    json_decref(bad);
    bad = json_pack("{s:s, s:s}", "node-1", KEY1, "Node 2", KEY2);
    nodes = json_pack("[s, s]", "node-1", "Node 2");
    assert_int_equal(parse(bad, nodes, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(nodes);
    json_decref(bad);
    bad = json_pack("{s:s, s:i}", "node-1", KEY1, "node-2", 7);
    assert_int_equal(parse(bad, two, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(bad);
    /* node_keys that is no object */
    bad = json_pack("[s]", KEY1);
    assert_int_equal(parse(bad, two, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(bad);
    json_decref(keys);
    json_decref(two);
}

static void
request_of_nine_nodes_is_refused(void **state)
{
    struct req_view v;
    json_t *keys = json_object(), *nodes = json_array();
    char name[16];
    int i;

    (void)state;
    for (i = 1; i <= 9; i++) {
        snprintf(name, sizeof(name), "node-%d", i);
        json_object_set_new(keys, name, json_string(i == 1 ? KEY1 : KEY2));
        json_array_append_new(nodes, json_string(name));
    }
    assert_int_equal(parse(keys, nodes, &v), HSMCA_E_QUORUM_ENVELOPE);
    json_decref(keys);
    json_decref(nodes);
}

/* An approval with node_shares (NULL: none) for the parse. */
static enum hsmca_err
appr(json_t *node_shares, struct appr_view *a)
{
    json_t *j = json_pack("{s:s, s:s, s:{s:s}, s:s}", "approver", "bob", "request_id", ID, "shares",
                          "hsmca-pai-1", "AAAA", "sig", "MEUCIQ==");
    char *s;
    enum hsmca_err rc;

    if (node_shares != NULL)
        json_object_set_new(j, "node_shares", node_shares);
    s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    rc = hsmca_q_appr_parse(s, strlen(s), a);
    free(s);
    return rc;
}

static void
approval_node_shares_are_checked(void **state)
{
    struct appr_view a;
    struct req_view v;
    json_t *two = json_pack("[s, s]", "node-1", "node-2");
    json_t *keys = json_pack("{s:s, s:s}", "node-1", KEY1, "node-2", KEY2), *many;
    int i;

    (void)state;
    /* the parse: an object of objects of strings, at most 8 nodes */
    assert_int_equal(appr(NULL, &a), HSMCA_OK);
    assert_null(a.node_shares);
    assert_int_equal(hsmca_q_node_shares_check(&(struct req_view){0}, a.node_shares), HSMCA_OK);
    hsmca_q_appr_view_clear(&a);
    assert_int_equal(appr(json_pack("{s:{s:s}}", "node-2", "hsmca-pai-1", "BBBB"), &a), HSMCA_OK);
    assert_non_null(a.node_shares);
    /* ... and against a request naming both nodes: node-2's share of the one token */
    assert_int_equal(parse(keys, two, &v), HSMCA_OK);
    assert_int_equal(hsmca_q_node_shares_check(&v, a.node_shares), HSMCA_OK);
    assert_int_equal(hsmca_q_node_shares_check(&v, NULL), HSMCA_E_QUORUM_SHARE_INVALID);
    hsmca_q_appr_view_clear(&a);
    /* a share for the requesting node too, a token missing, another token, a node missing */
    assert_int_equal(appr(json_pack("{s:{s:s}, s:{s:s}}", "node-2", "hsmca-pai-1", "BBBB", "node-1",
                                    "hsmca-pai-1", "AAAA"),
                          &a),
                     HSMCA_OK);
    assert_int_equal(hsmca_q_node_shares_check(&v, a.node_shares), HSMCA_E_QUORUM_SHARE_INVALID);
    hsmca_q_appr_view_clear(&a);
    assert_int_equal(appr(json_pack("{s:{}}", "node-2"), &a), HSMCA_OK);
    assert_int_equal(hsmca_q_node_shares_check(&v, a.node_shares), HSMCA_E_QUORUM_SHARE_INVALID);
    hsmca_q_appr_view_clear(&a);
    assert_int_equal(appr(json_pack("{s:{s:s}}", "node-2", "hsmca-paa", "BBBB"), &a), HSMCA_OK);
    assert_int_equal(hsmca_q_node_shares_check(&v, a.node_shares), HSMCA_E_QUORUM_SHARE_INVALID);
    hsmca_q_appr_view_clear(&a);
    assert_int_equal(appr(json_object(), &a), HSMCA_OK);
    assert_int_equal(hsmca_q_node_shares_check(&v, a.node_shares), HSMCA_E_QUORUM_SHARE_INVALID);
    hsmca_q_appr_view_clear(&a);
    hsmca_q_req_view_clear(&v);
    /* node_shares on a request of one node */
    assert_int_equal(parse(NULL, NULL, &v), HSMCA_OK);
    assert_int_equal(appr(json_pack("{s:{s:s}}", "node-2", "hsmca-pai-1", "BBBB"), &a), HSMCA_OK);
    assert_int_equal(hsmca_q_node_shares_check(&v, a.node_shares), HSMCA_E_QUORUM_SHARE_INVALID);
    hsmca_q_appr_view_clear(&a);
    hsmca_q_req_view_clear(&v);
    /* malformed: not an object, a node's shares not an object, a share not a string, 9 nodes,
     * an empty node name */
    assert_int_equal(appr(json_pack("[s]", "x"), &a), HSMCA_E_QUORUM_APPROVAL_MALFORMED);
    assert_int_equal(appr(json_pack("{s:s}", "node-2", "BBBB"), &a),
                     HSMCA_E_QUORUM_APPROVAL_MALFORMED);
    assert_int_equal(appr(json_pack("{s:{s:i}}", "node-2", "hsmca-pai-1", 3), &a),
                     HSMCA_E_QUORUM_APPROVAL_MALFORMED);
    assert_int_equal(appr(json_pack("{s:{s:s}}", "", "hsmca-pai-1", "BBBB"), &a),
                     HSMCA_E_QUORUM_APPROVAL_MALFORMED);
    many = json_object();
    for (i = 1; i <= 9; i++) {
        char name[16];

        snprintf(name, sizeof(name), "node-%d", i);
        json_object_set_new(many, name, json_pack("{s:s}", "hsmca-pai-1", "BBBB"));
    }
    assert_int_equal(appr(many, &a), HSMCA_E_QUORUM_APPROVAL_MALFORMED);
    json_decref(keys);
    json_decref(two);
}

/* ---- the store's rows ---- */

struct seen {
    struct hsmca_qnode r[8];
    size_t n;
};

static enum hsmca_err
keep(void *arg, const struct hsmca_qnode *r)
{
    struct seen *s = arg;

    if (s->n < 8)
        s->r[s->n++] = *r;
    return HSMCA_OK;
}

static void
put(struct hsmca_store *st, const char *id, const char *node, const char *state, int64_t ms)
{
    struct hsmca_qnode r;

    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "%s", id);
    snprintf(r.node, sizeof(r.node), "%s", node);
    snprintf(r.state, sizeof(r.state), "%s", state);
    r.updated_ms = ms;
    assert_int_equal(hsmca_store_qnode_put(st, &r), HSMCA_OK);
}

static void
store_rows_put_move_list(void **state)
{
    char dir[512];
    struct hsmca_store *st = NULL;
    struct hsmca_qnode dup;
    struct seen s;
    int n = -1;

    (void)state;
    assert_int_equal(fx_store_open("qnodes", 1, dir, sizeof(dir), NULL, 0, &st), 0);
    put(st, ID, "node-1", "key", 1);
    put(st, ID, "node-2", "asked", 2);
    put(st, "fedcba9876543210fedcba9876543210", "node-2", "void", 3);
    /* one row per request and node */
    memset(&dup, 0, sizeof(dup));
    snprintf(dup.request_id, sizeof(dup.request_id), "%s", ID);
    snprintf(dup.node, sizeof(dup.node), "node-1");
    snprintf(dup.state, sizeof(dup.state), "key");
    assert_int_not_equal(hsmca_store_qnode_put(st, &dup), HSMCA_OK);
    /* a state the table does not know */
    snprintf(dup.node, sizeof(dup.node), "node-3");
    snprintf(dup.state, sizeof(dup.state), "bogus");
    assert_int_not_equal(hsmca_store_qnode_put(st, &dup), HSMCA_OK);
    /* node-2's live rows: only the asked one */
    memset(&s, 0, sizeof(s));
    assert_int_equal(hsmca_store_qnode_list(st, NULL, "node-2", 1, keep, &s), HSMCA_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.r[0].state, "asked");
    memset(&s, 0, sizeof(s));
    assert_int_equal(hsmca_store_qnode_list(st, NULL, "node-2", 0, keep, &s), HSMCA_OK);
    assert_int_equal(s.n, 2);
    /* asked -> key with its key; only from the state given */
    assert_int_equal(hsmca_store_qnode_move(st, ID, "node-2", "go", "in", NULL, NULL, 5, &n),
                     HSMCA_OK);
    assert_int_equal(n, 0);
    assert_int_equal(hsmca_store_qnode_move(st, ID, "node-2", "asked", "key", KEY2, NULL, 6, &n),
                     HSMCA_OK);
    assert_int_equal(n, 1);
    /* every row of the request: key -> go */
    assert_int_equal(hsmca_store_qnode_move(st, ID, NULL, "key", "go", NULL, NULL, 7, &n),
                     HSMCA_OK);
    assert_int_equal(n, 2);
    assert_int_equal(hsmca_store_qnode_move(st, ID, "node-2", "go", "failed", NULL,
                                            "quorum-node-timeout", 8, &n),
                     HSMCA_OK);
    memset(&s, 0, sizeof(s));
    assert_int_equal(hsmca_store_qnode_list(st, ID, NULL, 0, keep, &s), HSMCA_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.r[0].node, "node-1");
    assert_string_equal(s.r[0].state, "go");
    assert_string_equal(s.r[1].node, "node-2");
    assert_string_equal(s.r[1].state, "failed");
    assert_string_equal(s.r[1].request_key, KEY2); /* kept when not given */
    assert_string_equal(s.r[1].code, "quorum-node-timeout");
    assert_int_equal(s.r[1].updated_ms, 8);
    fx_store_close(st, dir);
}

/* hsmca_store_node_alive's answer (it must succeed) */
static int
is_alive(struct hsmca_store *st, const char *node)
{
    int alive = -1;

    assert_int_equal(hsmca_store_node_alive(st, node, &alive), HSMCA_OK);
    return alive;
}

/* hsmca_store_node_keep's *held (it must succeed) */
static int
keeps(struct hsmca_store *st, const char *node)
{
    int held = -1;

    assert_int_equal(hsmca_store_node_keep(st, node, &held), HSMCA_OK);
    return held;
}

/* alive(st, node) == want within 5 s (the server lets a closed session's locks go a moment after
 * the client leaves); returns the last answer */
static int
alive_within(struct hsmca_store *st, const char *node, int want)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    int alive = -1, i;

    for (i = 0; i < 100; i++) {
        assert_int_equal(hsmca_store_node_alive(st, node, &alive), HSMCA_OK);
        if (alive == want)
            break;
        nanosleep(&ts, NULL);
    }
    return alive;
}

static void
store_node_liveness(void **state)
{
    char dir[512], spec[1024], n1[64], n2[64], sql[256];
    struct hsmca_store *a = NULL, *b = NULL, *c = NULL, *ro = NULL;
    enum hsmca_err rc = HSMCA_E_INTERNAL;
    int held = -1, alive = -1, i;

    (void)state;
    assert_int_equal(fx_store_open("qlive", 1, dir, sizeof(dir), spec, sizeof(spec), &a), 0);
    assert_int_equal(hsmca_store_node_keep(a, "", &held), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_node_keep(a, "n", NULL), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_node_alive(NULL, "n", &alive), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_node_alive(a, NULL, &alive), HSMCA_E_INVALID_ARG);
    if (!hsmca_store_is_pg(a)) { /* SQLite: one node; nothing held, every node counts as up */
        assert_int_equal(keeps(a, "node-1"), 0);
        assert_int_equal(is_alive(a, "node-2"), 1);
        fx_store_close(a, dir);
        return;
    }
    /* names of this run only: the cluster may be shared */
    snprintf(n1, sizeof(n1), "live-%ld-1", (long)getpid());
    snprintf(n2, sizeof(n2), "live-%ld-2", (long)getpid());
    assert_int_equal(hsmca_store_open(spec, &b), HSMCA_OK);
    assert_int_equal(hsmca_store_open(spec, &c), HSMCA_OK);
    assert_int_equal(hsmca_store_open_readonly(spec, &ro), HSMCA_OK);
    /* no session holds n1: down, twice (asking let go of what it took) */
    assert_int_equal(is_alive(ro, n1), 0);
    assert_int_equal(is_alive(ro, n1), 0);
    /* a keeps n1: up, seen from a read-only handle and a write one; n2 still down */
    assert_int_equal(keeps(a, n1), 1);
    assert_int_equal(is_alive(ro, n1), 1);
    assert_int_equal(is_alive(b, n1), 1);
    assert_int_equal(is_alive(ro, n2), 0);
    /* kept again (the connection checked): still held, still one holder */
    for (i = 0; i < 3; i++) {
        assert_int_equal(keeps(a, n1), 1);
    }
    /* a second session cannot take a name a running one holds */
    assert_int_equal(keeps(c, n1), 0);
    /* the server ends a's session (a failover, a restart): n1 is down until a keeps it again on
     * its new connection (the first keep finds the connection lost, the next makes it again) */
    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND "
             "classid = 1752395126 AND objid::text::bigint = "
             "(hashtext('hsmca-node:%s')::bigint & 4294967295)",
             n1);
    assert_int_equal(hsmca_pg_exec(b, sql), 0);
    assert_int_equal(alive_within(ro, n1, 0), 0);
    for (i = 0, held = 0; i < 3 && !held; i++)
        rc = hsmca_store_node_keep(a, n1, &held); /* the first fails: the connection was lost */
    assert_int_equal(rc, HSMCA_OK);
    assert_int_equal(held, 1);
    assert_int_equal(is_alive(ro, n1), 1);
    /* a closes (the node stops or dies): n1 is down, and c may take it */
    hsmca_store_close(a);
    assert_int_equal(alive_within(ro, n1, 0), 0);
    assert_int_equal(keeps(c, n1), 1);
    assert_int_equal(is_alive(b, n1), 1);
    hsmca_store_close(c);
    hsmca_store_close(ro);
    fx_store_close(b, dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_node_keys_are_checked),
        cmocka_unit_test(request_of_nine_nodes_is_refused),
        cmocka_unit_test(approval_node_shares_are_checked),
        cmocka_unit_test(store_rows_put_move_list),
        cmocka_unit_test(store_node_liveness),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
