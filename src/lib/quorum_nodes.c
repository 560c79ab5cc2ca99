/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_nodes.c -- one ca.activate that logs in every node named in it (docs/postgresql.md,
 * "One quorum for several nodes"). The nodes talk only through the store (quorum_nodes rows,
 * every change an audit entry):
 *   request   the requesting node asks each named node for a one-time request key (rows "asked",
 *             quorum.node.ask); each node makes one in its own memory and posts its public half
 *             (quorum.node.key: "key"); the request bytes the approvers sign carry every node's
 *             key ("node_keys"), so an approval cannot be replayed to another node or request.
 *             A node that posts none in time: the request is refused (quorum-node-unavailable).
 *   approval  each approver re-seals its share to every named node's key ("node_shares").
 *   execute   the executing node logs in as for one node, then says go (quorum.node.go); each
 *             other node opens its own shares, rebuilds the PIN, checks its commitment, logs in
 *             (quorum.node.login: "in"); the executor waits for them (bounded), marks the silent
 *             ones failed (quorum.node.timeout), rotates the PIN once and opens the window; the
 *             logged-in nodes see the request executed and join it (quorum.node.join).
 * A node never sees another node's PIN or shares; the executor's rotation never waits past its
 * deadline; a node left logged in by an executor that died logs out after its own deadline.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "hsmca/log.h"
#include "hsmca/quorum.h"
#include "hsmca/store.h"
#include "hsmca/store_quorum.h"
#include "hsmca/store_windows.h"
#include "hsmca/util.h"

#include "quorum_int.h"

/* how long a request waits for the named nodes' keys, an execution for their logins, and a
 * logged-in node for the execution's end (then it logs out) */
#define KEY_WAIT_MS 10000
#define LOGIN_WAIT_MS 30000
#define IN_WAIT_MS 120000
#define POLL_MS 200

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A node name as the config takes it (hsmca_custody_set_node): [a-z0-9._-], 1..32. */
static int
node_name_ok(const char *s)
{
    size_t i, n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > HSMCA_QNODE_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return 0;
    }
    return 1;
}

/* ---- the shapes (request bytes, approvals) ---- */

/*
 * The request's "node_keys": 2..8 nodes, each a base64 key, one of them the request key, and
 * exactly the nodes of params.nodes.
 */
enum hsmca_err
hsmca_q_node_keys_check(json_t *node_keys, const char *request_key, json_t *params)
{
    json_t *nodes = json_object_get(params, "nodes"), *v;
    const char *k;
    size_t i, mine = 0;

    if (!json_is_object(node_keys) || json_object_size(node_keys) < 2 ||
        json_object_size(node_keys) > HSMCA_QUORUM_NODES_MAX || !json_is_array(nodes) ||
        json_array_size(nodes) != json_object_size(node_keys) || request_key == NULL)
        return HSMCA_E_QUORUM_ENVELOPE;
    json_object_foreach(node_keys, k, v)
    {
        const char *key = json_string_value(v);

        if (!node_name_ok(k) || key == NULL || strlen(key) == 0 ||
            strlen(key) > HSMCA_QNODE_KEY_MAX)
            return HSMCA_E_QUORUM_ENVELOPE;
        mine += strcmp(key, request_key) == 0;
    }
    for (i = 0; i < json_array_size(nodes); i++) {
        const char *n = json_string_value(json_array_get(nodes, i));

        if (n == NULL || json_object_get(node_keys, n) == NULL)
            return HSMCA_E_QUORUM_ENVELOPE;
    }
    return mine == 1 ? HSMCA_OK : HSMCA_E_QUORUM_ENVELOPE;
}

/* An approval's "node_shares" for request v: absent without node_keys; else one object per named
 * node but the requesting one, each with a share of exactly the request's tokens. */
enum hsmca_err
hsmca_q_node_shares_check(const struct req_view *v, json_t *node_shares)
{
    const char *node;
    json_t *key;
    size_t i, n = 0;

    if (v->node_keys == NULL)
        return node_shares == NULL ? HSMCA_OK : HSMCA_E_QUORUM_SHARE_INVALID;
    if (!json_is_object(node_shares))
        return HSMCA_E_QUORUM_SHARE_INVALID;
    json_object_foreach(v->node_keys, node, key)
    {
        json_t *ns;

        if (strcmp(json_string_value(key), v->request_key) == 0)
            continue;
        n++;
        ns = json_object_get(node_shares, node);
        if (!json_is_object(ns) || json_object_size(ns) != json_array_size(v->tokens))
            return HSMCA_E_QUORUM_SHARE_INVALID;
        for (i = 0; i < json_array_size(v->tokens); i++) {
            if (!json_is_string(json_object_get(ns, hsmca_q_req_token(v, i))))
                return HSMCA_E_QUORUM_SHARE_INVALID;
        }
    }
    return json_object_size(node_shares) == n ? HSMCA_OK : HSMCA_E_QUORUM_SHARE_INVALID;
}

/*
 * ca.activate's "nodes" at the request: an array of 2..8 distinct node names, this node one of
 * them, each a node that started on this store (its daemon.running.NAME key), on PostgreSQL.
 */
enum hsmca_err
hsmca_q_nodes_check(struct hsmca_quorum *q, json_t *nodes)
{
    size_t i, j, n;
    int mine = 0;

    if (q->node[0] == '\0' || !hsmca_store_is_pg(q->cfg.store))
        return HSMCA_E_QUORUM_NODES_UNSUPPORTED;
    if (!json_is_array(nodes))
        return HSMCA_E_QUORUM_NODES_INVALID;
    n = json_array_size(nodes);
    if (n < 2 || n > HSMCA_QUORUM_NODES_MAX)
        return HSMCA_E_QUORUM_NODES_INVALID;
    for (i = 0; i < n; i++) {
        const char *a = json_string_value(json_array_get(nodes, i));

        if (!node_name_ok(a))
            return HSMCA_E_QUORUM_NODES_INVALID;
        for (j = 0; j < i; j++) {
            if (strcmp(a, json_string_value(json_array_get(nodes, j))) == 0)
                return HSMCA_E_QUORUM_NODE_DUPLICATE;
        }
        mine |= strcmp(a, q->node) == 0;
    }
    if (!mine)
        return HSMCA_E_QUORUM_NODES_INVALID;
    for (i = 0; i < n; i++) {
        char key[64], *val = NULL;
        enum hsmca_err rc;

        snprintf(key, sizeof(key), "daemon.running.%s",
                 json_string_value(json_array_get(nodes, i)));
        rc = hsmca_store_meta_get(hsmca_q_rd(q), key, &val);
        free(val);
        if (rc == HSMCA_E_NOT_FOUND)
            return HSMCA_E_QUORUM_NODE_UNKNOWN;
        if (rc != HSMCA_OK)
            return rc;
    }
    return HSMCA_OK;
}

/* ---- rows ---- */

struct rows {
    struct hsmca_qnode r[HSMCA_QUORUM_NODES_MAX * 8];
    size_t n;
};

static enum hsmca_err
row_copy(void *arg, const struct hsmca_qnode *r)
{
    struct rows *l = arg;

    if (l->n < sizeof(l->r) / sizeof(l->r[0]))
        l->r[l->n++] = *r;
    return HSMCA_OK;
}

static enum hsmca_err
rows_of(struct hsmca_quorum *q, const char *id, struct rows *l)
{
    memset(l, 0, sizeof(*l));
    return hsmca_store_qnode_list(hsmca_q_rd(q), id, NULL, 0, row_copy, l);
}

/*
 * The other nodes of l in state whose process is gone (no session holds their liveness lock:
 * hsmca_store_node_alive), appended to down (cleared first). They will never answer; a node
 * alive but slow is still waited for.
 */
static enum hsmca_err
nodes_down(struct hsmca_quorum *q, const struct rows *l, const char *state, json_t *down)
{
    enum hsmca_err rc = HSMCA_OK;
    size_t i;

    json_array_clear(down);
    for (i = 0; rc == HSMCA_OK && i < l->n; i++) {
        int alive = 1;

        if (strcmp(l->r[i].state, state) != 0 || strcmp(l->r[i].node, q->node) == 0)
            continue;
        rc = hsmca_store_node_alive(hsmca_q_rd(q), l->r[i].node, &alive);
        if (rc == HSMCA_OK && !alive && json_array_append_new(down, json_string(l->r[i].node)) != 0)
            rc = HSMCA_E_NOMEM;
    }
    return rc;
}

/* the rows of one request, as the apply callbacks write them */
struct ask_apply {
    struct hsmca_quorum *q;
    const char *id;
    json_t *nodes;
    const char *my_key;
    int64_t now;
};

static enum hsmca_err
apply_ask(struct hsmca_store *st, void *arg)
{
    struct ask_apply *a = arg;
    enum hsmca_err rc = HSMCA_OK;
    size_t i;

    for (i = 0; rc == HSMCA_OK && i < json_array_size(a->nodes); i++) {
        struct hsmca_qnode r;
        const char *n = json_string_value(json_array_get(a->nodes, i));
        int me = strcmp(n, a->q->node) == 0;

        memset(&r, 0, sizeof(r));
        snprintf(r.request_id, sizeof(r.request_id), "%s", a->id);
        snprintf(r.node, sizeof(r.node), "%s", n);
        snprintf(r.state, sizeof(r.state), "%s", me ? "key" : "asked");
        if (me)
            snprintf(r.request_key, sizeof(r.request_key), "%s", a->my_key);
        r.updated_ms = a->now;
        rc = hsmca_store_qnode_put(st, &r);
    }
    return rc;
}

/* several rows of one request moved from one state to another (node NULL: all of them) */
struct move_apply {
    const char *id, *node, *from, *to, *key, *code;
    const char *from2, *to2, *node2; /* a second move in the same entry, or NULL */
    int64_t now;
    int need_one; /* the first move must change a row (else HSMCA_E_NOT_FOUND) */
};

static enum hsmca_err
apply_move(struct hsmca_store *st, void *arg)
{
    struct move_apply *m = arg;
    enum hsmca_err rc;
    int n = 0;

    rc = hsmca_store_qnode_move(st, m->id, m->node, m->from, m->to, m->key, m->code, m->now, &n);
    if (rc == HSMCA_OK && m->need_one && n == 0)
        rc = HSMCA_E_NOT_FOUND;
    if (rc == HSMCA_OK && m->from2 != NULL)
        rc =
            hsmca_store_qnode_move(st, m->id, m->node2, m->from2, m->to2, NULL, NULL, m->now, NULL);
    return rc;
}

/* ---- the requesting node: every named node's key ---- */

/*
 * Called by hsmca_quorum_request_create with q->lock held, which this releases while it waits:
 * ask the named nodes of params.nodes for their keys, wait up to KEY_WAIT_MS (less once every
 * node still silent is found not running), and on HSMCA_OK set *node_keys to {node: key}. A node
 * that posts none: the request is refused and audited (quorum.request, quorum-node-unavailable,
 * the nodes missing, and those found down), its rows "void".
 */
enum hsmca_err
hsmca_q_nodes_gather(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                     const char *id, const char *op, json_t *params, const char *my_key_b64,
                     json_t **node_keys)
{
    struct ask_apply a;
    struct move_apply m;
    struct rows *l = NULL;
    json_t *nodes = json_object_get(params, "nodes"), *d = NULL, *keys = NULL, *missing = NULL;
    json_t *down = json_array();
    char target[48];
    int64_t until;
    enum hsmca_err rc;
    size_t i;

    snprintf(target, sizeof(target), "request/%s", id);
    l = calloc(1, sizeof(*l));
    keys = json_object();
    missing = json_array();
    d = json_pack("{s:s, s:O}", "op", op, "nodes", nodes);
    if (l == NULL || keys == NULL || missing == NULL || down == NULL || d == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    a.q = q;
    a.id = id;
    a.nodes = nodes;
    a.my_key = my_key_b64;
    a.now = hsmca_q_now_ms(q);
    rc = hsmca_q_audit(q, who, "quorum.node.ask", target, "ok", d, apply_ask, &a);
    if (rc != HSMCA_OK)
        goto out;
    /* the other nodes' polling threads answer through the store; this node's quorum stays
     * usable meanwhile */
    pthread_mutex_unlock(&q->lock);
    until = mono_ms() + KEY_WAIT_MS;
    for (;;) {
        size_t have = 0;

        rc = rows_of(q, id, l);
        for (i = 0; rc == HSMCA_OK && i < l->n; i++)
            have += strcmp(l->r[i].state, "key") == 0;
        if (rc != HSMCA_OK || have == json_array_size(nodes) || mono_ms() >= until)
            break;
        /* a node that is not running never answers: stop once no silent node runs */
        rc = nodes_down(q, l, "asked", down);
        if (rc != HSMCA_OK || have + json_array_size(down) == json_array_size(nodes))
            break;
        sleep_ms(POLL_MS);
    }
    pthread_mutex_lock(&q->lock);
    if (rc != HSMCA_OK)
        goto out;
    for (i = 0; i < l->n; i++) {
        if (strcmp(l->r[i].state, "key") == 0)
            json_object_set_new(keys, l->r[i].node, json_string(l->r[i].request_key));
        else
            json_array_append_new(missing, json_string(l->r[i].node));
    }
    if (json_array_size(missing) == 0 && json_object_size(keys) == json_array_size(nodes)) {
        *node_keys = keys;
        keys = NULL;
        goto out;
    }
    /* refused: the rows void (a late key is never used), the missing nodes named */
    json_decref(d);
    d = json_pack("{s:s, s:s, s:O, s:O}", "code", hsmca_err_code(HSMCA_E_QUORUM_NODE_UNAVAILABLE),
                  "op", op, "missing", missing, "down", down);
    memset(&m, 0, sizeof(m));
    m.id = id;
    m.from = "asked";
    m.to = "void";
    m.from2 = "key";
    m.to2 = "void";
    m.now = hsmca_q_now_ms(q);
    rc = d != NULL ? hsmca_q_audit(q, who, "quorum.request", target, "refused", d, apply_move, &m)
                   : HSMCA_E_NOMEM;
    hsmca_log(HSMCA_LOG_WARN, "quorum", "nodes-unavailable", "request=%s missing=%zu down=%zu", id,
              json_array_size(missing), json_array_size(down));
    if (rc == HSMCA_OK)
        rc = HSMCA_E_QUORUM_NODE_UNAVAILABLE;
out:
    json_decref(d);
    json_decref(keys);
    json_decref(missing);
    json_decref(down);
    free(l);
    return rc;
}

/* ---- the executing node: every named node logs in before the one rotation ---- */

/* A node found not running while the execution awaits its login: its row go -> failed
 * (quorum-node-down), one quorum.node.down entry. A node that logged in or failed meanwhile
 * keeps its own outcome (no row moved, no entry). */
static enum hsmca_err
node_down(struct hsmca_quorum *q, const char *target, const char *id, const char *node)
{
    struct move_apply m;
    json_t *d;
    enum hsmca_err rc;

    memset(&m, 0, sizeof(m));
    m.id = id;
    m.node = node;
    m.from = "go";
    m.to = "failed";
    m.code = hsmca_err_code(HSMCA_E_QUORUM_NODE_DOWN);
    m.now = hsmca_q_now_ms(q);
    m.need_one = 1;
    d = json_pack("{s:s, s:s}", "code", m.code, "node", node);
    rc = d != NULL ? hsmca_q_audit(q, NULL, "quorum.node.down", target, "failed", d, apply_move, &m)
                   : HSMCA_E_NOMEM;
    json_decref(d);
    if (rc == HSMCA_E_NOT_FOUND)
        return HSMCA_OK;
    if (rc == HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "quorum", "node-down", "request=%s node=%s", id, node);
    return rc;
}

/*
 * ca.activate's act (quorum_ops.c), the executor's own login done: say go to the other named
 * nodes, wait up to LOGIN_WAIT_MS for each to log in or fail, mark a node found not running
 * failed at once (quorum.node.down, quorum-node-down) and the silent ones failed at the deadline
 * (quorum-node-timeout), and put each node's outcome in x->nodes ({"activated": [names],
 * "failed": [{"node", "code"}]}). Always HSMCA_OK but for the store and audit: a node that fails
 * never stops the others, and the rotation comes next whatever they did.
 */
enum hsmca_err
hsmca_q_nodes_login(struct hsmca_quorum *q, struct exec_state *x)
{
    struct move_apply m;
    struct rows *l = calloc(1, sizeof(*l));
    json_t *d = NULL, *act = NULL, *failed = NULL, *down = json_array();
    char target[48];
    int64_t until;
    enum hsmca_err rc;
    size_t i, go = 0;

    if (l == NULL || down == NULL) {
        free(l);
        json_decref(down);
        return HSMCA_E_NOMEM;
    }
    snprintf(target, sizeof(target), "request/%s", x->r.id);
    memset(&m, 0, sizeof(m));
    m.id = x->r.id;
    m.from = "key";
    m.to = "go";
    m.from2 = "go"; /* this node is logged in already */
    m.to2 = "in";
    m.node2 = q->node;
    m.now = hsmca_q_now_ms(q);
    d = json_pack("{s:O, s:s}", "nodes", json_object_get(x->v.params, "nodes"), "executor",
                  q->node);
    rc = d != NULL ? hsmca_q_audit(q, NULL, "quorum.node.go", target, "ok", d, apply_move, &m)
                   : HSMCA_E_NOMEM;
    json_decref(d);
    d = NULL;
    if (rc != HSMCA_OK)
        goto out;
    until = mono_ms() + LOGIN_WAIT_MS;
    for (;;) {
        rc = rows_of(q, x->r.id, l);
        for (go = 0, i = 0; rc == HSMCA_OK && i < l->n; i++)
            go += strcmp(l->r[i].state, "go") == 0;
        if (rc != HSMCA_OK || go == 0 || mono_ms() >= until)
            break;
        /* a node that is not running will never log in: failed now, not at the deadline */
        rc = nodes_down(q, l, "go", down);
        for (i = 0; rc == HSMCA_OK && i < json_array_size(down); i++)
            rc = node_down(q, target, x->r.id, json_string_value(json_array_get(down, i)));
        if (rc != HSMCA_OK)
            break;
        if (json_array_size(down) == 0)
            sleep_ms(POLL_MS);
    }
    if (rc != HSMCA_OK)
        goto out;
    if (go > 0) {
        json_t *late = json_array();

        for (i = 0; late != NULL && i < l->n; i++) {
            if (strcmp(l->r[i].state, "go") == 0)
                json_array_append_new(late, json_string(l->r[i].node));
        }
        memset(&m, 0, sizeof(m));
        m.id = x->r.id;
        m.from = "go";
        m.to = "failed";
        m.code = hsmca_err_code(HSMCA_E_QUORUM_NODE_TIMEOUT);
        m.now = hsmca_q_now_ms(q);
        d = late != NULL ? json_pack("{s:s, s:o}", "code", m.code, "nodes", late) : NULL;
        rc = d != NULL ? hsmca_q_audit(q, NULL, "quorum.node.timeout", target, "failed", d,
                                       apply_move, &m)
                       : HSMCA_E_NOMEM;
        json_decref(d);
        if (rc == HSMCA_OK)
            rc = rows_of(q, x->r.id, l);
        if (rc != HSMCA_OK)
            goto out;
    }
    act = json_array();
    failed = json_array();
    for (i = 0; act != NULL && failed != NULL && i < l->n; i++) {
        if (strcmp(l->r[i].state, "in") == 0)
            json_array_append_new(act, json_string(l->r[i].node));
        else
            json_array_append_new(
                failed, json_pack("{s:s, s:s}", "node", l->r[i].node, "code",
                                  l->r[i].code[0] != '\0' ? l->r[i].code : l->r[i].state));
    }
    x->nodes = act != NULL && failed != NULL
                   ? json_pack("{s:O, s:O}", "activated", act, "failed", failed)
                   : NULL;
    rc = x->nodes != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
    hsmca_log(HSMCA_LOG_INFO, "quorum", "nodes-login", "request=%s in=%zu failed=%zu", x->r.id,
              json_array_size(act), json_array_size(failed));
out:
    json_decref(act);
    json_decref(failed);
    json_decref(down);
    free(l);
    return rc;
}

/* ---- a named node's side ---- */

static enum hsmca_err
node_entry(struct hsmca_quorum *q, const char *action, const char *id, const char *outcome,
           enum hsmca_err code, struct move_apply *m)
{
    char target[48];
    json_t *d = json_pack("{s:s}", "node", q->node);
    enum hsmca_err rc;

    if (d == NULL)
        return HSMCA_E_NOMEM;
    if (code != HSMCA_OK)
        json_object_set_new(d, "code", json_string(hsmca_err_code(code)));
    snprintf(target, sizeof(target), "request/%s", id);
    rc = hsmca_q_audit(q, NULL, action, target, outcome, d, m != NULL ? apply_move : NULL, m);
    json_decref(d);
    return rc;
}

/* "asked": a one-time key made here, its public half posted; the private half stays here */
static enum hsmca_err
node_post_key(struct hsmca_quorum *q, const struct hsmca_qnode *r)
{
    struct move_apply m;
    struct pending *p = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    char *b64 = NULL;
    enum hsmca_err rc;

    if (key == NULL)
        return HSMCA_E_INTERNAL;
    rc = hsmca_q_spki_der(key, &spki, &spki_len);
    if (rc == HSMCA_OK) {
        b64 = hsmca_b64_encode(spki, spki_len);
        p = calloc(1, sizeof(*p));
        rc = b64 != NULL && p != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
    }
    if (rc != HSMCA_OK)
        goto out;
    memset(&m, 0, sizeof(m));
    m.id = r->request_id;
    m.node = q->node;
    m.from = "asked";
    m.to = "key";
    m.key = b64;
    m.now = hsmca_q_now_ms(q);
    m.need_one = 1;
    rc = node_entry(q, "quorum.node.key", r->request_id, "ok", HSMCA_OK, &m);
    if (rc != HSMCA_OK)
        goto out; /* the request gave up on this node meanwhile ("void"): the key goes */
    snprintf(p->id, sizeof(p->id), "%s", r->request_id);
    p->key = key;
    key = NULL;
    p->next = q->pending;
    q->pending = p;
    p = NULL;
    hsmca_log(HSMCA_LOG_INFO, "quorum", "node-key", "request=%s node=%s", r->request_id, q->node);
out:
    OPENSSL_free(spki);
    free(b64);
    free(p);
    EVP_PKEY_free(key);
    return rc;
}

/* The checks of a "go" and the PIN rebuilt from this node's shares; the token logged in. */
static enum hsmca_err
node_login_checked(struct hsmca_quorum *q, const struct hsmca_quorum_exec *ex, struct exec_state *x,
                   const char *id)
{
    unsigned char *spki = NULL;
    size_t spki_len = 0;
    char *mine = NULL;
    unsigned threshold;
    enum hsmca_err rc;

    x->rkey = hsmca_q_pending_key(q, id);
    if (x->rkey == NULL)
        return HSMCA_E_QUORUM_REQUEST_VOID; /* this node restarted since it posted its key */
    rc = hsmca_q_exec_load(q, id, x);
    if (rc != HSMCA_OK)
        return rc;
    /* the bytes the approvers signed name this node with this key */
    rc = hsmca_q_spki_der(x->rkey, &spki, &spki_len);
    if (rc != HSMCA_OK)
        return rc;
    mine = hsmca_b64_encode(spki, spki_len);
    OPENSSL_free(spki);
    if (mine == NULL)
        return HSMCA_E_NOMEM;
    rc = strcmp(x->v.op, "ca.activate") == 0 && x->v.node_keys != NULL &&
                 json_is_string(json_object_get(x->v.node_keys, q->node)) &&
                 strcmp(json_string_value(json_object_get(x->v.node_keys, q->node)), mine) == 0
             ? HSMCA_OK
             : HSMCA_E_QUORUM_ENVELOPE;
    free(mine);
    if (rc != HSMCA_OK)
        return rc;
    if (strcmp(x->r.status, "pending") != 0)
        return HSMCA_E_QUORUM_REQUEST_EXECUTED;
    if (!hsmca_q_epoch_holds(q, (uint64_t)x->v.epoch, x->v.policy_hash, &x->e))
        return HSMCA_E_QUORUM_EPOCH_STALE;
    /* the approvals checked here again: m valid signatures over the bytes naming this key */
    rc = hsmca_q_collect_approvals(q, x);
    if (rc != HSMCA_OK)
        return rc;
    hsmca_q_keep_valid(q, x);
    threshold = hsmca_q_policy_threshold(x->e.policy, x->v.op);
    if (threshold < x->e.m || x->nc < threshold)
        return HSMCA_E_QUORUM_THRESHOLD_NOT_MET;
    x->node = q->node;
    x->ntok = json_array_size(x->v.tokens);
    if (x->ntok != 1)
        return HSMCA_E_QUORUM_ENVELOPE;
    snprintf(x->label[0], sizeof(x->label[0]), "%s", hsmca_q_req_token(&x->v, 0));
    rc = hsmca_store_qtoken_get(hsmca_q_rd(q), x->label[0], &x->qt[0]);
    if (rc == HSMCA_OK)
        rc = hsmca_q_rebuild_pin(q, x, 0, 0); /* checked against its commitment */
    if (rc != HSMCA_OK)
        return rc;
    x->tok[0] = ex->token(ex->arg, x->label[0]);
    if (x->tok[0] == NULL)
        return HSMCA_E_TOKEN_NOT_FOUND;
    rc = hsmca_token_login(x->tok[0], &x->pin[0]);
    hsmca_secret_clear(&x->pin[0]);
    if (rc == HSMCA_OK)
        x->logged_in[0] = 1;
    return rc;
}

/* After a login: the request's entry in the pending list keeps no key (no second login with
 * it), only the mark that this process logged in for it (node_join logs out only its own). */
static void
in_here(struct hsmca_quorum *q, const char *id)
{
    struct pending *p;

    for (p = q->pending; p != NULL; p = p->next) {
        if (strcmp(p->id, id) == 0) {
            EVP_PKEY_free(p->key);
            p->key = NULL;
            return;
        }
    }
}

static int
is_in_here(struct hsmca_quorum *q, const char *id)
{
    struct pending *p;

    for (p = q->pending; p != NULL; p = p->next) {
        if (strcmp(p->id, id) == 0 && p->key == NULL)
            return 1;
    }
    return 0;
}

/* "go": log in with this node's own shares, and say so (or why not) */
static enum hsmca_err
node_login(struct hsmca_quorum *q, const struct hsmca_quorum_exec *ex, const struct hsmca_qnode *r)
{
    struct exec_state *x = calloc(1, sizeof(*x));
    struct move_apply m;
    enum hsmca_err rc, code;

    if (x == NULL)
        return HSMCA_E_NOMEM;
    code = node_login_checked(q, ex, x, r->request_id);
    memset(&m, 0, sizeof(m));
    m.id = r->request_id;
    m.node = q->node;
    m.from = "go";
    m.now = hsmca_q_now_ms(q);
    m.need_one = 1;
    if (code == HSMCA_OK) {
        m.to = "in";
        rc = node_entry(q, "quorum.node.login", r->request_id, "ok", HSMCA_OK, &m);
        if (rc == HSMCA_E_NOT_FOUND) {
            /* the executor's deadline passed meanwhile: it no longer counts on this login */
            code = HSMCA_E_QUORUM_NODE_TIMEOUT;
            (void)node_entry(q, "quorum.node.login", r->request_id, "failed", code, NULL);
        }
        if (rc != HSMCA_OK && hsmca_token_logout(x->tok[0]) != HSMCA_OK)
            hsmca_log(HSMCA_LOG_ERROR, "quorum", "logout-failed", "token=%s", x->label[0]);
    } else {
        m.to = "failed";
        m.code = hsmca_err_code(code);
        rc = node_entry(q, "quorum.node.login", r->request_id, "failed", code, &m);
        /* a token this node had logged in already (an open window) stays as it was */
    }
    hsmca_log(code == HSMCA_OK ? HSMCA_LOG_INFO : HSMCA_LOG_WARN, "quorum", "node-login",
              "request=%s node=%s code=%s", r->request_id, q->node, hsmca_err_code(code));
    if (code == HSMCA_OK && rc == HSMCA_OK)
        in_here(q, r->request_id); /* the key's one use is over; the login is this process's */
    else
        hsmca_q_pending_drop(q, r->request_id);
    hsmca_q_exec_state_clear(x);
    free(x);
    return rc;
}

/* "in": join the window once the request is executed; log out when it failed or went silent */
static enum hsmca_err
node_join(struct hsmca_quorum *q, const struct hsmca_quorum_exec *ex, const struct hsmca_qnode *r)
{
    struct hsmca_qrequest req;
    struct req_view v;
    struct move_apply m;
    struct hsmca_token *tok = NULL;
    const char *ca = NULL;
    enum hsmca_err rc, code = HSMCA_OK;
    int mine;

    memset(&req, 0, sizeof(req));
    memset(&v, 0, sizeof(v));
    rc = hsmca_store_qrequest_get(hsmca_q_rd(q), r->request_id, &req);
    if (rc == HSMCA_OK)
        rc = hsmca_q_req_parse(req.bytes, req.len, &v);
    if (rc != HSMCA_OK)
        goto out;
    mine = is_in_here(q, r->request_id);
    if (mine && strcmp(req.status, "pending") == 0 &&
        hsmca_q_now_ms(q) - r->updated_ms < IN_WAIT_MS) {
        rc = HSMCA_OK; /* the executor is still at it */
        goto out;
    }
    ca = json_string_value(json_object_get(v.params, "ca"));
    tok = ex->token(ex->arg, hsmca_q_req_token(&v, 0));
    if (!mine) /* logged in by this node before it restarted: that login is gone */
        code = HSMCA_E_QUORUM_REQUEST_VOID;
    else if (strcmp(req.status, "executed") == 0 && ca != NULL && ex->activate_shared != NULL)
        code = ex->activate_shared(ex->arg, ca, r->request_id, 1, 0, 0);
    else
        code = strcmp(req.status, "pending") == 0 ? HSMCA_E_QUORUM_NODE_TIMEOUT
                                                  : HSMCA_E_QUORUM_REQUEST_EXECUTED;
    /* a login of this process's that no window took: out again */
    if (mine && code != HSMCA_OK && tok != NULL && hsmca_token_logout(tok) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "quorum", "logout-failed", "request=%s", r->request_id);
    hsmca_q_pending_drop(q, r->request_id);
    memset(&m, 0, sizeof(m));
    m.id = r->request_id;
    m.node = q->node;
    m.from = "in";
    m.to = code == HSMCA_OK ? "joined" : "failed";
    m.code = code == HSMCA_OK ? NULL : hsmca_err_code(code);
    m.now = hsmca_q_now_ms(q);
    rc = node_entry(q, "quorum.node.join", r->request_id, code == HSMCA_OK ? "ok" : "failed", code,
                    &m);
    hsmca_log(code == HSMCA_OK ? HSMCA_LOG_INFO : HSMCA_LOG_WARN, "quorum", "node-join",
              "request=%s node=%s status=%s code=%s", r->request_id, q->node, req.status,
              hsmca_err_code(code));
out:
    hsmca_q_req_view_clear(&v);
    hsmca_qrequest_clear(&req);
    return rc;
}

/* The one-time keys of requests that can no longer execute (closed, expired, or never made:
 * their node row "void"), dropped from memory; the marks of logins are node_join's. */
#define SWEEP_EVERY 40 /* passes: 10 s at the daemon's 250 ms */
static void
sweep(struct hsmca_quorum *q)
{
    struct pending **pp = &q->pending;
    size_t n = 0;

    while (*pp != NULL && n++ < 1024) {
        struct pending *p = *pp;
        struct hsmca_qrequest r;
        struct rows *l;
        enum hsmca_err rc;
        int drop = 0;

        memset(&r, 0, sizeof(r));
        if (p->key != NULL) {
            rc = hsmca_store_qrequest_get(hsmca_q_rd(q), p->id, &r);
            if (rc == HSMCA_OK) {
                drop = strcmp(r.status, "pending") != 0 || r.expires_ms <= hsmca_q_now_ms(q);
            } else if (rc == HSMCA_E_NOT_FOUND && (l = calloc(1, sizeof(*l))) != NULL) {
                /* still being gathered ("asked", "key"), or refused ("void") */
                if (hsmca_store_qnode_list(hsmca_q_rd(q), p->id, q->node, 0, row_copy, l) ==
                        HSMCA_OK &&
                    l->n == 1 && strcmp(l->r[0].state, "void") == 0)
                    drop = 1;
                free(l);
            }
            hsmca_qrequest_clear(&r);
        }
        if (drop) {
            hsmca_log(HSMCA_LOG_INFO, "quorum", "request-key-dropped",
                      "request=%s reason=\"the request can no longer execute\"", p->id);
            *pp = p->next;
            EVP_PKEY_free(p->key);
            free(p);
        } else {
            pp = &p->next;
        }
    }
}

enum hsmca_err
hsmca_quorum_node_poll(struct hsmca_quorum *q, const struct hsmca_quorum_exec *ex)
{
    struct rows *l;
    enum hsmca_err rc = HSMCA_OK, r1;
    size_t i;

    if (q == NULL || ex == NULL || ex->token == NULL)
        return HSMCA_E_INVALID_ARG;
    if (q->node[0] == '\0' || !hsmca_store_is_pg(q->cfg.store))
        return HSMCA_OK;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_lock(&q->lock);
    r1 = hsmca_store_qnode_list(hsmca_q_rd(q), NULL, q->node, 1, row_copy, l);
    for (i = 0; r1 == HSMCA_OK && i < l->n; i++) {
        const struct hsmca_qnode *r = &l->r[i];
        enum hsmca_err e = HSMCA_OK;

        if (strcmp(r->state, "asked") == 0)
            e = node_post_key(q, r);
        else if (strcmp(r->state, "go") == 0)
            e = node_login(q, ex, r);
        else if (strcmp(r->state, "in") == 0)
            e = node_join(q, ex, r);
        if (e != HSMCA_OK && rc == HSMCA_OK)
            rc = e;
    }
    if (++q->polls % SWEEP_EVERY == 0)
        sweep(q);
    pthread_mutex_unlock(&q->lock);
    free(l);
    return r1 != HSMCA_OK ? r1 : rc;
}
