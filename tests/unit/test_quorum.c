/* SPDX-License-Identifier: Apache-2.0
 *
 * test_quorum.c -- m-of-n control of CA tokens against real SoftHSM tokens (through the counting
 * PKCS#11 shim), a real store and a real audit log. Approvers use software P-256 keys here (the
 * token path of the approver tool is exercised by the ceremony demo script).
 * Hostile approvals first (each refusal its own code, audited, and never a C_Login), then the
 * promises: m-1 approvals cannot log in and m can; PINs never reach the disk or the output; shares
 * do not open with another approver's key; after enrolling a 4th approver the new share works and
 * shares of earlier epochs rebuild nothing that logs in; PAA -> PAI -> activation window.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/log.h"
#include "hsmca/matter.h"
#include "hsmca/matter_tbs.h"
#include "hsmca/profile.h"
#include "hsmca/quorum.h"
#include "hsmca/seal.h"
#include "hsmca/shamir.h"
#include "hsmca/store_quorum.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "fixture.h"
#include "quorum_int.h"

#define SO_PIN "so-secret-1"
#define AUDIT_PIN "audit-pin-1234"
#define FIRST_PIN "first-pin-1234"
#define NAPPR 4

typedef unsigned long (*shim_count_fn)(const char *);

static const char *const names[NAPPR] = {"alice", "bob", "carol", "dave"};

struct ctx {
    struct fx_hsm hsm;
    char dir[512], db[600];
    struct hsmca_p11 *p11;
    void *dl;
    shim_count_fn count;
    struct hsmca_token *audit_tok, *paa_tok, *pai_tok;
    struct hsmca_key *audit_key;
    struct hsmca_store *st;
    struct hsmca_audit *a;
    struct hsmca_quorum *q;
    EVP_PKEY *appr[NAPPR];
    struct hsmca_profile paa_prof, pai_prof;
    int64_t fake_ms; /* 0 = real clock */
    /* activation hooks */
    char activated[HSMCA_CA_ID_MAX + 1];
    int64_t until;
    uint64_t max_dacs;
    int deactivated, created;
};

static int64_t
clock_ms(void *arg)
{
    struct ctx *c = arg;
    struct timespec ts;

    if (c->fake_ms != 0)
        return c->fake_ms;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct hsmca_token *
tok_cb(void *arg, const char *label)
{
    struct ctx *c = arg;

    if (strcmp(label, "hsmca-paa") == 0)
        return c->paa_tok;
    if (strcmp(label, "hsmca-pai") == 0)
        return c->pai_tok;
    return NULL;
}

static enum hsmca_err
activate_cb(void *arg, const char *ca, int64_t until, uint64_t max)
{
    struct ctx *c = arg;

    snprintf(c->activated, sizeof(c->activated), "%s", ca);
    c->until = until;
    c->max_dacs = max;
    return HSMCA_OK;
}

static enum hsmca_err
deactivate_cb(void *arg, const char *ca)
{
    struct ctx *c = arg;

    (void)ca;
    c->deactivated++;
    return hsmca_token_logout(c->pai_tok);
}

static enum hsmca_err
created_cb(void *arg, const struct hsmca_ca_rec *ca)
{
    struct ctx *c = arg;

    (void)ca;
    c->created++;
    return HSMCA_OK;
}

/* the quorum's profiles hook: the CA requests' to-be-signed preview */
static enum hsmca_err
profiles_cb(void *arg, struct hsmca_profile *paa, struct hsmca_profile *pai)
{
    struct ctx *c = arg;

    *paa = c->paa_prof;
    *pai = c->pai_prof;
    return HSMCA_OK;
}

static void
exec_of(struct ctx *c, struct hsmca_quorum_exec *ex)
{
    memset(ex, 0, sizeof(*ex));
    ex->arg = c;
    ex->token = tok_cb;
    ex->activate = activate_cb;
    ex->deactivate = deactivate_cb;
    ex->ca_created = created_cb;
    ex->paa_profile = &c->paa_prof;
    ex->pai_profile = &c->pai_prof;
}

static char *
read_policy(size_t *len)
{
    char path[1024];
    unsigned char *buf = NULL;

    snprintf(path, sizeof(path), "%s/policies/quorum.json", getenv("HSMCA_SOURCE_DIR"));
    if (hsmca_read_file(path, 8192, &buf, len) != HSMCA_OK)
        return NULL;
    return (char *)buf;
}

static int
ceremony(struct ctx *c, size_t napprovers)
{
    struct hsmca_secret so = fx_secret(SO_PIN);
    struct hsmca_quorum_token_in t[2] = {
        {"hsmca-paa", "pkcs11:token=hsmca-paa", c->paa_tok, &so},
        {"hsmca-pai", "pkcs11:token=hsmca-pai", c->pai_tok, &so},
    };
    struct hsmca_quorum_approver_in ap[NAPPR];
    struct hsmca_quorum_init in;
    struct hsmca_quorum_principal who = {"ceremony", "admin", NULL};
    size_t i, plen = 0;
    char *policy = read_policy(&plen), serial[8];
    enum hsmca_err rc;

    for (i = 0; i < napprovers; i++) {
        snprintf(serial, sizeof(serial), "s%zu", i);
        ap[i].name = names[i];
        ap[i].pub = c->appr[i];
        ap[i].token_serial = strdup(serial);
    }
    memset(&in, 0, sizeof(in));
    in.tokens = t;
    in.ntokens = 2;
    in.approvers = ap;
    in.napprovers = napprovers;
    in.m = 2;
    in.policy_json = policy;
    in.policy_len = plen;
    in.ceremony_id = "test";
    rc = hsmca_quorum_ceremony_init(c->q, &in, &who);
    for (i = 0; i < napprovers; i++)
        free((char *)ap[i].token_serial);
    free(policy);
    hsmca_secret_clear(&so);
    if (rc != HSMCA_OK)
        fprintf(stderr, "ceremony: %s\n", hsmca_err_code(rc));
    return rc == HSMCA_OK ? 0 : -1;
}

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct hsmca_secret pin = fx_secret(AUDIT_PIN);
    struct hsmca_audit_config acfg;
    struct hsmca_quorum_config qcfg;
    const char *shim = getenv("HSMCA_P11SHIM");
    char path[1024], why[256];
    size_t i;

    if (c == NULL || shim == NULL || hsmca_secure_heap_init(0) != HSMCA_OK)
        return -1;
    if (fx_hsm_setup(&c->hsm) != 0 ||
        fx_hsm_add_token(&c->hsm, "hsmca-audit", SO_PIN, AUDIT_PIN) != 0 ||
        fx_hsm_add_token(&c->hsm, "hsmca-paa", SO_PIN, FIRST_PIN) != 0 ||
        fx_hsm_add_token(&c->hsm, "hsmca-pai", SO_PIN, FIRST_PIN) != 0)
        return -1;
    if (hsmca_p11_open(shim, &c->p11) != HSMCA_OK)
        return -1;
    c->dl = dlopen(shim, RTLD_NOW | RTLD_NOLOAD);
    if (c->dl == NULL)
        return -1;
    *(void **)&c->count = dlsym(c->dl, "hsmca_shim_count");
    if (c->count == NULL ||
        hsmca_token_open(c->p11, "pkcs11:token=hsmca-audit", &c->audit_tok) != HSMCA_OK ||
        hsmca_token_open(c->p11, "pkcs11:token=hsmca-paa", &c->paa_tok) != HSMCA_OK ||
        hsmca_token_open(c->p11, "pkcs11:token=hsmca-pai", &c->pai_tok) != HSMCA_OK)
        return -1;
    if (hsmca_token_login(c->audit_tok, &pin) != HSMCA_OK ||
        hsmca_token_generate_key(c->audit_tok, "audit-key", NULL, 0, HSMCA_KEY_USAGE_SIGN,
                                 &c->audit_key) != HSMCA_OK)
        return -1;
    hsmca_secret_clear(&pin);
    for (i = 0; i < NAPPR; i++) {
        c->appr[i] = EVP_EC_gen("P-256");
        if (c->appr[i] == NULL)
            return -1;
    }
    snprintf(path, sizeof(path), "%s/policies/profiles/matter-paa.json",
             getenv("HSMCA_SOURCE_DIR"));
    if (hsmca_profile_load(path, &c->paa_prof) != HSMCA_OK)
        return -1;
    snprintf(path, sizeof(path), "%s/policies/profiles/matter-pai.json",
             getenv("HSMCA_SOURCE_DIR"));
    if (hsmca_profile_load(path, &c->pai_prof) != HSMCA_OK)
        return -1;
    if (fx_tmpdir("quorum", c->dir, sizeof(c->dir)) != 0)
        return -1;
    snprintf(c->db, sizeof(c->db), "%s/hsmca.db", c->dir);
    if (hsmca_store_open(c->db, &c->st) != HSMCA_OK)
        return -1;
    memset(&acfg, 0, sizeof(acfg));
    acfg.store = c->st;
    acfg.token = c->audit_tok;
    acfg.key = c->audit_key;
    acfg.origin = "hsmca/test";
    acfg.genesis_detail_json = "{\"ceremony\":\"test\"}";
    if (hsmca_audit_open(&acfg, &c->a, why, sizeof(why)) != HSMCA_OK)
        return -1;
    memset(&qcfg, 0, sizeof(qcfg));
    qcfg.store = c->st;
    qcfg.audit = c->a;
    qcfg.now_ms = clock_ms;
    qcfg.now_arg = c;
    qcfg.profiles = profiles_cb;
    qcfg.profiles_arg = c;
    if (hsmca_quorum_open(&qcfg, &c->q) != HSMCA_OK)
        return -1;
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    struct ctx *c = *state;
    size_t i;

    hsmca_quorum_free(c->q);
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    hsmca_store_close(c->st);
    hsmca_key_free(c->audit_key);
    assert_int_equal(hsmca_token_logout(c->audit_tok), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(c->paa_tok), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(c->pai_tok), HSMCA_OK);
    assert_int_equal(hsmca_token_free(c->audit_tok), HSMCA_OK);
    assert_int_equal(hsmca_token_free(c->paa_tok), HSMCA_OK);
    assert_int_equal(hsmca_token_free(c->pai_tok), HSMCA_OK);
    if (hsmca_p11_free(c->p11) != HSMCA_OK)
        abort();
    dlclose(c->dl);
    for (i = 0; i < NAPPR; i++)
        EVP_PKEY_free(c->appr[i]);
    fx_hsm_teardown(&c->hsm);
    fx_rmtree(c->dir);
    free(c);
    return 0;
}

/* ---- helpers ---- */

static size_t
idx_of(const char *name)
{
    size_t i;

    for (i = 0; i < NAPPR; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    fail_msg("unknown approver %s", name);
    return 0;
}

static char *
request(struct ctx *c, const char *requester, const unsigned char *key_sha256, const char *op,
        const char *params, int64_t ttl_ms, enum hsmca_err expect)
{
    struct hsmca_quorum_principal who = {requester, "admin", key_sha256};
    char id[HSMCA_QUORUM_ID_LEN + 1];

    assert_int_equal(
        hsmca_quorum_request_create(c->q, &who, op, params, ttl_ms, NULL, NULL, 0, id, NULL),
        expect);
    return expect == HSMCA_OK ? strdup(id) : NULL;
}

/* The approval of approver name for request id, made as `hsmca approve` makes it. */
static char *
make_approval(struct ctx *c, const char *name, const char *id)
{
    struct hsmca_quorum_signer s = {name, NULL, c->appr[idx_of(name)]};
    char *env = NULL, *ap = NULL;

    assert_int_equal(hsmca_quorum_request_envelope(c->q, id, &env), HSMCA_OK);
    assert_int_equal(hsmca_quorum_approval_make(env, strlen(env), &s, &ap), HSMCA_OK);
    free(env);
    return ap;
}

static enum hsmca_err
submit(struct ctx *c, const char *name, const char *id, const char *approval,
       struct hsmca_quorum_status *st)
{
    struct hsmca_quorum_principal who = {name, "approver", NULL};

    return hsmca_quorum_approve(c->q, &who, id, approval, strlen(approval), st);
}

static void
approve_ok(struct ctx *c, const char *name, const char *id)
{
    char *ap = make_approval(c, name, id);

    assert_int_equal(submit(c, name, id, ap, NULL), HSMCA_OK);
    free(ap);
}

/* Count audit lines containing all of the given substrings. */
static int
audit_count(struct ctx *c, const char *a, const char *b)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int n = 0;

    assert_int_equal(sqlite3_open_v2(c->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT line FROM audit_entries ORDER BY seq", -1, &s, NULL),
        SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(s, 0);

        if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL))
            n++;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static void
assert_refusal_audited(struct ctx *c, const char *code)
{
    char needle[128];

    snprintf(needle, sizeof(needle), "\"code\":\"%s\"", code);
    if (audit_count(c, needle, "\"outcome\":\"refused\"") < 1)
        fail_msg("no refused audit entry with %s", code);
}

/* Replace the JSON string member key of json with value (returns a new string). */
static char *
json_with(const char *json, const char *key, const char *value)
{
    json_t *o = json_loads(json, 0, NULL);
    char *out;

    assert_non_null(o);
    json_object_set_new(o, key, json_string(value));
    out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return out;
}

static const char *
paa_params(void)
{
    return "{\"ca\":\"paa-1\",\"token\":\"hsmca-paa\",\"key_label\":\"paa-key\",\"vid\":65521}";
}

/* Unseal approver i's stored share of label in epoch (as only that approver could). */
struct grab {
    const char *approver;
    unsigned char sealed[512];
    size_t len;
    unsigned idx;
    uint64_t epoch;
};

static enum hsmca_err
grab_cb(void *arg, const struct hsmca_qshare *s)
{
    struct grab *g = arg;

    if (strcmp(s->approver, g->approver) == 0 && s->sealed_len <= sizeof(g->sealed)) {
        memcpy(g->sealed, s->sealed, s->sealed_len);
        g->len = s->sealed_len;
        g->idx = s->idx;
        g->epoch = s->epoch;
    }
    return HSMCA_OK;
}

static void
grab_share(struct ctx *c, const char *label, const char *approver, struct grab *g)
{
    struct hsmca_qtoken t;

    memset(g, 0, sizeof(*g));
    g->approver = approver;
    assert_int_equal(hsmca_store_qtoken_get(c->st, label, &t), HSMCA_OK);
    assert_int_equal(hsmca_store_qshare_list(c->st, label, t.epoch, grab_cb, g), HSMCA_OK);
    assert_true(g->len > 0);
}

static enum hsmca_err
unseal_grab(const struct grab *g, const char *label, EVP_PKEY *key, const char *as,
            struct hsmca_secret *out)
{
    struct hsmca_seal_ad ad;

    memset(&ad, 0, sizeof(ad));
    ad.token_label = label;
    ad.epoch = g->epoch;
    ad.share_index = g->idx;
    ad.approver = as;
    return hsmca_unseal_soft(key, &ad, g->sealed, g->len, out);
}

/* The current PIN of label, rebuilt by the test from two approvers' shares. */
static void
rebuild(struct ctx *c, const char *label, const char *a1, const char *a2, struct hsmca_secret *pin)
{
    struct grab g;
    struct hsmca_secret s1 = {NULL, 0}, s2 = {NULL, 0};
    unsigned char buf[2 * 33];

    grab_share(c, label, a1, &g);
    assert_int_equal(unseal_grab(&g, label, c->appr[idx_of(a1)], a1, &s1), HSMCA_OK);
    grab_share(c, label, a2, &g);
    assert_int_equal(unseal_grab(&g, label, c->appr[idx_of(a2)], a2, &s2), HSMCA_OK);
    memcpy(buf, s1.p, 33);
    memcpy(buf + 33, s2.p, 33);
    assert_int_equal(hsmca_secret_set(pin, NULL, 32), HSMCA_OK);
    assert_int_equal(hsmca_shamir_combine(buf, 33, 2, pin->p), HSMCA_OK);
    memset(buf, 0, sizeof(buf));
    hsmca_secret_clear(&s1);
    hsmca_secret_clear(&s2);
}

static void
pin_flags_clear(struct hsmca_token *t)
{
    struct hsmca_token_info ti;

    assert_int_equal(hsmca_token_info(t, &ti), HSMCA_OK);
    assert_false(ti.pin_count_low);
    assert_false(ti.pin_locked);
}

/* ---- hostile input first ---- */

static void
ceremony_and_request_refusals(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_principal who = {"admin", "admin", NULL};
    char id[HSMCA_QUORUM_ID_LEN + 1];

    /* before the ceremony nothing can be requested */
    assert_int_equal(hsmca_quorum_request_create(c->q, &who, "ca.create_paa", paa_params(), 60000,
                                                 NULL, NULL, 0, id, NULL),
                     HSMCA_E_QUORUM_NOT_INITIALISED);
    assert_int_equal(ceremony(c, 3), 0);
    assert_int_equal(ceremony(c, 3), -1); /* once only */
    assert_refusal_audited(c, "quorum-already-initialised");
    (void)request(c, "admin", NULL, "ca.frobnicate", "{}", 60000, HSMCA_E_QUORUM_OP_UNKNOWN);
    (void)request(c, "admin", NULL, "ca.create_paa", "{\"ca\":\"x\"}", 60000,
                  HSMCA_E_QUORUM_PARAMS);
    (void)request(c, "admin", NULL, "ca.create_paa",
                  "{\"ca\":\"paa-1\",\"token\":\"hsmca-nope\",\"key_label\":\"k\"}", 60000,
                  HSMCA_E_QUORUM_PARAMS); /* not a token under quorum */
    (void)request(c, "admin", NULL, "ca.create_paa",
                  "{\"ca\":\"paa-1\",\"token\":\"hsmca-paa\",\"key_label\":\"k\",\"tokens\":[]}",
                  60000, HSMCA_E_QUORUM_PARAMS); /* tokens are the server's to fill in */
    (void)request(c, "admin", NULL, "ca.create_paa", paa_params(), HSMCA_QUORUM_TTL_MAX_MS + 1,
                  HSMCA_E_QUORUM_PARAMS);
    (void)request(c, "admin", NULL, "ca.activate",
                  "{\"ca\":\"pai-1\",\"until\":99999999999999,\"max_dacs\":10}", 60000,
                  HSMCA_E_QUORUM_PARAMS); /* no such PAI */
    (void)request(c, "admin", NULL, "approver.remove", "{\"name\":\"zed\"}", 60000,
                  HSMCA_E_QUORUM_APPROVER_INACTIVE);
    (void)request(c, "admin", NULL, "policy.update",
                  "{\"policy\":{\"version\":1,\"thresholds\":{\"ca.create_paa\":1}}}", 60000,
                  HSMCA_E_QUORUM_POLICY);
    assert_refusal_audited(c, "quorum-op-unknown");
    assert_refusal_audited(c, "quorum-params-invalid");
}

static void
approval_refusals_each_own_code_audited_no_login(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_status st;
    struct hsmca_qapprover bob;
    unsigned long logins;
    char *r1, *r2, *r3, *ap, *bad;
    size_t n;

    assert_int_equal(ceremony(c, 3), 0);
    logins = c->count("C_Login");

    /* self-approval by principal: alice asks, alice approves */
    r1 = request(c, "alice", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    ap = make_approval(c, "alice", r1);
    assert_int_equal(submit(c, "alice", r1, ap, NULL), HSMCA_E_QUORUM_SELF_APPROVAL);
    free(ap);
    assert_refusal_audited(c, "quorum-self-approval");

    /* self-approval by key: "ops" asks with bob's key */
    assert_int_equal(hsmca_store_qapprover_get(c->st, "bob", &bob), HSMCA_OK);
    r2 = request(c, "ops", bob.fingerprint, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    hsmca_qapprover_clear(&bob);
    ap = make_approval(c, "bob", r2);
    assert_int_equal(submit(c, "bob", r2, ap, NULL), HSMCA_E_QUORUM_SELF_APPROVAL);
    free(ap);

    /* double approval */
    ap = make_approval(c, "carol", r1);
    assert_int_equal(submit(c, "carol", r1, ap, &st), HSMCA_OK);
    assert_int_equal(st.approvals, 1);
    assert_int_equal(st.threshold, 2);
    assert_false(st.ready);
    assert_int_equal(submit(c, "carol", r1, ap, NULL), HSMCA_E_QUORUM_DUPLICATE_APPROVAL);
    assert_refusal_audited(c, "quorum-duplicate-approval");

    /* replay of carol's approval of r1 on r2; and with its request_id edited to r2 */
    assert_int_equal(submit(c, "carol", r2, ap, NULL), HSMCA_E_QUORUM_REQUEST_MISMATCH);
    assert_refusal_audited(c, "quorum-request-mismatch");
    bad = json_with(ap, "request_id", r2);
    assert_int_equal(submit(c, "carol", r2, bad, NULL), HSMCA_E_QUORUM_SIGNATURE_INVALID);
    free(bad);
    free(ap);

    /* forged signature: bob's approval signed by carol's key */
    {
        struct hsmca_quorum_signer forger = {"bob", NULL, c->appr[idx_of("carol")]};
        char *env = NULL;

        assert_int_equal(hsmca_quorum_request_envelope(c->q, r1, &env), HSMCA_OK);
        /* carol's key cannot unseal bob's share: the forger copies bob's approval shape instead */
        assert_int_equal(hsmca_quorum_approval_make(env, strlen(env), &forger, &ap),
                         HSMCA_E_SEAL_AUTH);
        free(env);
        ap = make_approval(c, "bob", r1);
        {
            json_t *o = json_loads(ap, 0, NULL);
            const char *sig = json_string_value(json_object_get(o, "sig"));
            unsigned char *der = NULL;
            size_t len = 0;
            char *b64 = NULL;

            /* decode, flip the last byte of s, re-encode */
            n = strlen(sig);
            der = malloc(n);
            (void)EVP_DecodeBlock(der, (const unsigned char *)sig, (int)n);
            len = n / 4 * 3 - (size_t)(sig[n - 1] == '=') - (size_t)(sig[n - 2] == '=');
            der[len - 1] ^= 0x01;
            b64 = malloc(n + 1);
            EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
            bad = json_with(ap, "sig", b64);
            free(b64);
            free(der);
            json_decref(o);
        }
        assert_int_equal(submit(c, "bob", r1, bad, NULL), HSMCA_E_QUORUM_SIGNATURE_INVALID);
        assert_refusal_audited(c, "quorum-signature-invalid");
        free(bad);
    }

    /* a wrong share: well sealed to the request key, but not the committed share */
    {
        json_t *o = json_loads(ap, 0, NULL), *req;
        char *env = NULL, *reqb = NULL, *b64 = NULL;
        unsigned char *bytes, fake[33], *sealed = NULL, dg[32];
        size_t blen, slen = 0;
        struct hsmca_seal_ad ad;
        struct grab g;
        EVP_PKEY *rk;
        const unsigned char *p;
        unsigned char spki[256];
        int spki_len;
        json_t *e;

        assert_int_equal(hsmca_quorum_request_envelope(c->q, r1, &env), HSMCA_OK);
        e = json_loads(env, 0, NULL);
        reqb = strdup(json_string_value(json_object_get(e, "request")));
        bytes = malloc(strlen(reqb));
        blen = (size_t)EVP_DecodeBlock(bytes, (unsigned char *)reqb, (int)strlen(reqb));
        while (blen > 0 && bytes[blen - 1] == 0)
            blen--; /* JSON never ends in NUL: strip base64 padding bytes */
        req = json_loadb((const char *)bytes, blen, 0, NULL);
        assert_non_null(req);
        spki_len = EVP_DecodeBlock(
            spki, (const unsigned char *)json_string_value(json_object_get(req, "request_key")),
            (int)strlen(json_string_value(json_object_get(req, "request_key"))));
        p = spki;
        rk = d2i_PUBKEY(NULL, &p, spki_len);
        assert_non_null(rk);
        assert_int_equal(
            hsmca_hex_decode(json_string_value(json_object_get(e, "digest")), 64, dg, 32, &blen),
            HSMCA_OK);
        grab_share(c, "hsmca-paa", "bob", &g);
        memset(fake, 0x5a, sizeof(fake));
        fake[0] = (unsigned char)g.idx;
        memset(&ad, 0, sizeof(ad));
        ad.token_label = "hsmca-paa";
        ad.epoch = g.epoch;
        ad.share_index = g.idx;
        ad.approver = "bob";
        ad.request_id = r1;
        ad.request_digest = dg;
        assert_int_equal(hsmca_seal(rk, &ad, fake, sizeof(fake), &sealed, &slen), HSMCA_OK);
        b64 = malloc(4 * ((slen + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *)b64, sealed, (int)slen);
        json_object_set_new(json_object_get(o, "shares"), "hsmca-paa", json_string(b64));
        bad = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        assert_int_equal(submit(c, "bob", r1, bad, NULL), HSMCA_E_QUORUM_SHARE_INVALID);
        assert_refusal_audited(c, "quorum-share-invalid");
        /* the refusal names the approver and the token */
        assert_true(audit_count(c, "quorum-share-invalid",
                                "\"approver\":\"bob\",\"code\":\"quorum-share-invalid\","
                                "\"token\":\"hsmca-paa\"") >= 1);
        /* with only carol's valid approval the request cannot run */
        {
            struct hsmca_quorum_exec ex;

            exec_of(c, &ex);
            assert_int_equal(hsmca_quorum_execute(c->q, r1, &ex, NULL),
                             HSMCA_E_QUORUM_THRESHOLD_NOT_MET);
            assert_refusal_audited(c, "quorum-threshold-not-met");
        }
        free(bad);
        free(b64);
        free(sealed);
        free(bytes);
        free(reqb);
        free(env);
        EVP_PKEY_free(rk);
        json_decref(req);
        json_decref(e);
        json_decref(o);
    }
    free(ap); /* bob's genuine approval, made again below */
    /* nothing above ever reached the token */
    assert_int_equal(c->count("C_Login"), logins);
    pin_flags_clear(c->paa_tok);

    /* an expired request */
    r3 = request(c, "admin", NULL, "ca.create_paa", paa_params(), 1000, HSMCA_OK);
    ap = make_approval(c, "bob", r3);
    c->fake_ms = clock_ms(c) + 2000;
    assert_int_equal(submit(c, "bob", r3, ap, NULL), HSMCA_E_QUORUM_REQUEST_EXPIRED);
    assert_refusal_audited(c, "quorum-request-expired");
    c->fake_ms = 0;
    free(ap);

    /* malformed approvals and unknown requests */
    assert_int_equal(submit(c, "bob", r1, "{\"x\":1}", NULL), HSMCA_E_QUORUM_APPROVAL_MALFORMED);
    assert_int_equal(submit(c, "bob", "00000000000000000000000000000000", "{}", NULL),
                     HSMCA_E_QUORUM_APPROVAL_MALFORMED);
    ap = make_approval(c, "bob", r1);
    assert_int_equal(submit(c, "bob", "00000000000000000000000000000000", ap, NULL),
                     HSMCA_E_NOT_FOUND);
    /* bob's genuine approval makes r1 ready: execution then works */
    assert_int_equal(submit(c, "bob", r1, ap, &st), HSMCA_OK);
    assert_true(st.ready);
    free(ap);
    assert_int_equal(c->count("C_Login"), logins);
    free(r1);
    free(r2);
    free(r3);
}

/* ---- the promises ---- */

static void
m_minus_1_cannot_login_m_can(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_exec ex;
    struct hsmca_quorum_status st;
    struct hsmca_token_info ti;
    struct hsmca_matter_verdict v;
    unsigned long logins, setpins;
    char *id, *res = NULL, *ap;
    json_t *r;
    unsigned char *der;
    const unsigned char *p;
    X509 *paa;
    int n;

    assert_int_equal(ceremony(c, 3), 0);
    exec_of(c, &ex);
    logins = c->count("C_Login");
    setpins = c->count("C_SetPIN");
    id = request(c, "admin", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    ap = make_approval(c, "alice", id);
    assert_int_equal(submit(c, "alice", id, ap, &st), HSMCA_OK);
    free(ap);
    assert_false(st.ready);
    assert_true(st.receipt.seq > 0); /* the approver's receipt of the quorum.approve entry */
    /* m-1 = 1 approval: no login is even attempted */
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, &res), HSMCA_E_QUORUM_THRESHOLD_NOT_MET);
    assert_int_equal(c->count("C_Login"), logins);
    /* and one share alone rebuilds nothing: combine needs two */
    {
        struct grab g;
        struct hsmca_secret s = {NULL, 0};
        unsigned char out[32];

        grab_share(c, "hsmca-paa", "alice", &g);
        assert_int_equal(unseal_grab(&g, "hsmca-paa", c->appr[0], "alice", &s), HSMCA_OK);
        assert_int_equal(hsmca_shamir_combine(s.p, 33, 1, out), HSMCA_E_SHAMIR_SHARES);
        hsmca_secret_clear(&s);
    }
    /* m = 2 approvals: the PAA is made in its token */
    ap = make_approval(c, "carol", id); /* kept for a replay after execution */
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, &res), HSMCA_OK);
    assert_int_equal(c->count("C_Login"), logins + 1);
    assert_int_equal(c->count("C_SetPIN"), setpins + 1); /* rotated */
    assert_int_equal(c->created, 1);
    assert_int_equal(hsmca_token_info(c->paa_tok, &ti), HSMCA_OK);
    assert_false(ti.logged_in); /* logged out after the operation */
    r = json_loads(res, 0, NULL);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "op")), "ca.create_paa");
    assert_int_equal(json_integer_value(json_object_get(r, "epoch")), 2);
    assert_true(json_integer_value(json_object_get(json_object_get(r, "audit"), "seq")) > 0);
    {
        const char *b64 = json_string_value(json_object_get(json_object_get(r, "ca"), "cert"));

        der = malloc(strlen(b64));
        n = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)strlen(b64));
        n -= (b64[strlen(b64) - 1] == '=') + (b64[strlen(b64) - 2] == '=');
        p = der;
        paa = d2i_X509(NULL, &p, n);
        assert_non_null(paa);
        assert_int_equal(hsmca_matter_check_format(paa, HSMCA_PROFILE_PAA, &v), HSMCA_OK);
        X509_free(paa);
        free(der);
    }
    json_decref(r);
    free(res);
    res = NULL;
    /* executed is final: a late approval after execution is refused */
    assert_int_equal(submit(c, "carol", id, ap, NULL), HSMCA_E_QUORUM_REQUEST_EXECUTED);
    free(ap);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, &res), HSMCA_E_QUORUM_REQUEST_EXECUTED);
    /* the audit log has the whole story */
    assert_true(audit_count(c, "\"action\":\"quorum.request\"", NULL) >= 1);
    assert_int_equal(audit_count(c, "\"action\":\"quorum.approve\"", "\"outcome\":\"ok\""), 2);
    assert_int_equal(audit_count(c, "\"action\":\"quorum.execute\"", "\"outcome\":\"ok\""), 1);
    assert_int_equal(audit_count(c, "\"action\":\"quorum.epoch\"", NULL), 2);
    assert_int_equal(audit_count(c, "\"action\":\"ca.keygen\"", "\"outcome\":\"intent\""), 1);
    assert_int_equal(audit_count(c, "\"action\":\"ca.create\"", NULL), 1);
    free(id);
}

/* Does hay[0..n) contain needle[0..m)? */
static int
contains(const unsigned char *hay, size_t n, const unsigned char *needle, size_t m)
{
    size_t i;

    for (i = 0; i + m <= n; i++) {
        if (memcmp(hay + i, needle, m) == 0)
            return 1;
    }
    return 0;
}

static void
assert_absent(const char *path, const struct hsmca_secret *pin)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    char hex[65], HEX[65], b64[64];
    size_t i;

    if (hsmca_read_file(path, 256u << 20, &buf, &len) != HSMCA_OK) {
        size_t n = strlen(path);

        if (n > 4 && strcmp(path + n - 4, "-wal") == 0)
            return; /* no WAL left after the checkpoint: nothing to search */
        fail_msg("cannot read %s", path);
    }
    hsmca_hex_encode(pin->p, pin->len, hex, sizeof(hex));
    for (i = 0; i < 64; i++)
        HEX[i] = (char)((hex[i] >= 'a' && hex[i] <= 'f') ? hex[i] - 32 : hex[i]);
    HEX[64] = '\0';
    EVP_EncodeBlock((unsigned char *)b64, pin->p, (int)pin->len);
    if (contains(buf, len, pin->p, pin->len) || contains(buf, len, (unsigned char *)hex, 64) ||
        contains(buf, len, (unsigned char *)HEX, 64) ||
        contains(buf, len, (unsigned char *)b64, strlen(b64)))
        fail_msg("a PIN's bytes or encodings are in %s", path);
    free(buf);
}

static void
pins_never_reach_disk_or_output(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_exec ex;
    struct hsmca_secret pins[4];
    char out[700], wal[700], *id;
    int saved1, saved2, fd;
    size_t i;

    memset(pins, 0, sizeof(pins));
    snprintf(out, sizeof(out), "%s/output.txt", c->dir);
    fflush(stdout);
    fflush(stderr);
    saved1 = dup(1);
    saved2 = dup(2);
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    hsmca_log_set_level(HSMCA_LOG_DEBUG);

    assert_int_equal(ceremony(c, 3), 0);
    rebuild(c, "hsmca-paa", "alice", "carol", &pins[0]);
    rebuild(c, "hsmca-pai", "bob", "carol", &pins[1]);
    exec_of(c, &ex);
    id = request(c, "admin", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);
    rebuild(c, "hsmca-paa", "alice", "bob", &pins[2]); /* the rotated PIN */
    /* sanity: the test's own rebuild is the token's PIN, and it changed */
    assert_int_equal(hsmca_token_login(c->paa_tok, &pins[2]), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(c->paa_tok), HSMCA_OK);
    assert_int_not_equal(memcmp(pins[0].p, pins[2].p, 32), 0);

    hsmca_log_set_level(HSMCA_LOG_INFO);
    fflush(stdout);
    fflush(stderr);
    dup2(saved1, 1);
    dup2(saved2, 2);
    close(saved1);
    close(saved2);
    {
        char ex_dir[700];

        snprintf(ex_dir, sizeof(ex_dir), "%s/extract", c->dir);
        assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, ex_dir), HSMCA_OK);
        snprintf(ex_dir, sizeof(ex_dir), "%s/extract/entries.jsonl", c->dir);
        for (i = 0; i < 3; i++)
            assert_absent(ex_dir, &pins[i]); /* the audit log as an auditor gets it */
    }
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    c->a = NULL;
    {
        struct hsmca_audit_config acfg;
        char why[256];

        /* reopen so teardown has a log to close; the files were scanned in between */
        snprintf(wal, sizeof(wal), "%s-wal", c->db);
        for (i = 0; i < 3; i++) {
            assert_absent(c->db, &pins[i]);
            assert_absent(wal, &pins[i]);
            assert_absent(out, &pins[i]);
        }
        memset(&acfg, 0, sizeof(acfg));
        acfg.store = c->st;
        acfg.token = c->audit_tok;
        acfg.key = c->audit_key;
        acfg.origin = "hsmca/test";
        assert_int_equal(hsmca_audit_open(&acfg, &c->a, why, sizeof(why)), HSMCA_OK);
    }
    for (i = 0; i < 4; i++)
        hsmca_secret_clear(&pins[i]);
}

static void
sealed_shares_do_not_open_with_another_key(void **state)
{
    struct ctx *c = *state;
    struct grab g;
    struct hsmca_secret s = {NULL, 0};

    assert_int_equal(ceremony(c, 3), 0);
    grab_share(c, "hsmca-paa", "alice", &g);
    assert_int_equal(unseal_grab(&g, "hsmca-paa", c->appr[1], "alice", &s), HSMCA_E_SEAL_AUTH);
    assert_int_equal(unseal_grab(&g, "hsmca-paa", c->appr[1], "bob", &s), HSMCA_E_SEAL_AUTH);
    assert_int_equal(unseal_grab(&g, "hsmca-pai", c->appr[0], "alice", &s), HSMCA_E_SEAL_AUTH);
    assert_null(s.p);
    assert_int_equal(unseal_grab(&g, "hsmca-paa", c->appr[0], "alice", &s), HSMCA_OK);
    hsmca_secret_clear(&s);
}

static void
enrol_fourth_then_old_shares_useless(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_exec ex;
    struct hsmca_quorum_signer dave = {"dave", NULL, NULL};
    struct hsmca_secret old = {NULL, 0}, mid = {NULL, 0}, cur = {NULL, 0};
    unsigned char *spki = NULL;
    char *b64, *pop = NULL, params[1024], *id, *ap, *env = NULL;
    unsigned long logins;
    int n;

    assert_int_equal(ceremony(c, 3), 0);
    exec_of(c, &ex);
    rebuild(c, "hsmca-paa", "alice", "bob", &old); /* kept from epoch 1 */

    dave.soft = c->appr[3];
    n = i2d_PUBKEY(c->appr[3], &spki);
    b64 = malloc(4 * ((size_t)n + 2) / 3 + 4);
    EVP_EncodeBlock((unsigned char *)b64, spki, n);
    /* a PoP by another key is refused */
    {
        struct hsmca_quorum_signer eve = {"dave", NULL, c->appr[2]};

        assert_int_equal(hsmca_quorum_enroll_pop(&eve, c->appr[3], "s3", &pop), HSMCA_OK);
        snprintf(params, sizeof(params),
                 "{\"name\":\"dave\",\"spki\":\"%s\",\"token_serial\":\"s3\",\"pop\":\"%s\"}", b64,
                 pop);
        free(pop);
        (void)request(c, "admin", NULL, "approver.enroll", params, 60000,
                      HSMCA_E_QUORUM_POP_INVALID);
        assert_refusal_audited(c, "quorum-pop-invalid");
    }
    /* dave's key under carol's name, or dave with carol's serial: duplicates */
    assert_int_equal(hsmca_quorum_enroll_pop(&dave, c->appr[3], "s2", &pop), HSMCA_OK);
    snprintf(params, sizeof(params),
             "{\"name\":\"dave\",\"spki\":\"%s\",\"token_serial\":\"s2\",\"pop\":\"%s\"}", b64,
             pop);
    free(pop);
    (void)request(c, "admin", NULL, "approver.enroll", params, 60000,
                  HSMCA_E_QUORUM_APPROVER_DUPLICATE);
    assert_int_equal(hsmca_quorum_enroll_pop(&dave, c->appr[3], "s3", &pop), HSMCA_OK);
    snprintf(params, sizeof(params),
             "{\"name\":\"dave\",\"spki\":\"%s\",\"token_serial\":\"s3\",\"pop\":\"%s\"}", b64,
             pop);
    free(pop);
    id = request(c, "admin", NULL, "approver.enroll", params, 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "carol", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);

    rebuild(c, "hsmca-paa", "dave", "alice", &mid); /* kept from epoch 2, dave's own share */

    /* the new approver's share works: dave + bob make the PAA */
    id = request(c, "admin", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    assert_int_equal(hsmca_quorum_request_envelope(c->q, id, &env), HSMCA_OK);
    assert_non_null(strstr(env, "\"dave\""));
    free(env);
    approve_ok(c, "dave", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);

    /* a corrupt share never costs a C_Login (the failed-login flags stay clear) */
    logins = c->count("C_Login");
    id = request(c, "admin", NULL, "policy.update",
                 "{\"policy\":{\"version\":1,\"thresholds\":{\"ca.create_paa\":3,"
                 "\"ca.create_pai\":2,\"ca.activate\":2,\"approver.enroll\":2,"
                 "\"approver.remove\":2,\"policy.update\":2}}}",
                 60000, HSMCA_OK);
    ap = make_approval(c, "dave", id);
    {
        json_t *o = json_loads(ap, 0, NULL);
        json_t *sh = json_object_get(o, "shares");
        char *s = strdup(json_string_value(json_object_get(sh, "hsmca-pai")));
        char *bad;

        s[10] = s[10] == 'A' ? 'B' : 'A'; /* flip bits in the sealed ephemeral point */
        json_object_set_new(sh, "hsmca-pai", json_string(s));
        bad = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        assert_int_equal(submit(c, "dave", id, bad, NULL), HSMCA_E_QUORUM_SHARE_INVALID);
        free(bad);
        free(s);
        json_decref(o);
    }
    assert_int_equal(c->count("C_Login"), logins);
    pin_flags_clear(c->pai_tok);
    assert_int_equal(submit(c, "dave", id, ap, NULL), HSMCA_OK);
    free(ap);
    approve_ok(c, "alice", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);

    /* the PIN rebuilt from epoch-1 shares no longer logs in; today's does */
    rebuild(c, "hsmca-paa", "dave", "carol", &cur);
    assert_int_not_equal(memcmp(old.p, cur.p, 32), 0);
    assert_int_equal(hsmca_token_login(c->paa_tok, &old), HSMCA_E_PIN_INCORRECT);
    assert_int_equal(hsmca_token_login(c->paa_tok, &mid), HSMCA_E_PIN_INCORRECT);
    assert_int_equal(hsmca_token_login(c->paa_tok, &cur), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(c->paa_tok), HSMCA_OK);

    /* removal: carol's share is useless afterwards, and her approvals are refused */
    id = request(c, "admin", NULL, "approver.remove", "{\"name\":\"carol\"}", 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);
    id = request(c, "admin", NULL, "ca.create_pai",
                 "{\"ca\":\"pai-1\",\"parent\":\"paa-1\",\"token\":\"hsmca-pai\","
                 "\"key_label\":\"pai-key\",\"vid\":65521,\"pid\":32768}",
                 60000, HSMCA_OK);
    assert_int_equal(hsmca_quorum_request_envelope(c->q, id, &env), HSMCA_OK);
    assert_null(strstr(env, "\"carol\""));
    {
        struct hsmca_quorum_signer carol = {"carol", NULL, c->appr[2]};

        assert_int_equal(hsmca_quorum_approval_make(env, strlen(env), &carol, &ap),
                         HSMCA_E_QUORUM_NO_SHARE);
        /* even a well-formed approval signed by her key is refused as inactive */
        {
            json_t *o = json_pack("{s:s, s:s, s:{}, s:s}", "approver", "carol", "request_id", id,
                                  "shares", "sig", "MEUCIQ==");
            char *bad = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

            assert_int_equal(submit(c, "carol", id, bad, NULL), HSMCA_E_QUORUM_APPROVER_INACTIVE);
            assert_refusal_audited(c, "quorum-approver-inactive");
            free(bad);
            json_decref(o);
        }
    }
    free(env);
    free(id);
    hsmca_secret_clear(&old);
    hsmca_secret_clear(&mid);
    hsmca_secret_clear(&cur);
    OPENSSL_free(spki);
    free(b64);
}

/* One ca.create_paa (ca and key label numbered n) approved by alice and bob, executed. */
static enum hsmca_err
create_paa_n(struct ctx *c, int n)
{
    struct hsmca_quorum_exec ex;
    char params[256], *id;
    enum hsmca_err rc;

    exec_of(c, &ex);
    snprintf(params, sizeof(params),
             "{\"ca\":\"paa-%d\",\"token\":\"hsmca-paa\",\"key_label\":\"paa-key-%d\","
             "\"vid\":65521}",
             n, n);
    id = request(c, "admin", NULL, "ca.create_paa", params, 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    rc = hsmca_quorum_execute(c->q, id, &ex, NULL);
    free(id);
    return rc;
}

/*
 * docs/custody.md: a C_SetPIN that reports a failure leaves the token answering to the PIN it
 * had or to the new one; both stay reachable (current and alternate, with their shares), the
 * envelope hands approvers both, and the next operation logs in with whichever the token has
 * (at most one refused login) and confirms its rotation.
 */
static void
setpin_failure_keeps_both_pins_reachable(void **state)
{
    struct ctx *c = *state;
    void (*shim_fail)(const char *, unsigned long);
    struct hsmca_qtoken t;
    char *id, *env = NULL;
    unsigned long logins;

    *(void **)&shim_fail = dlsym(c->dl, "hsmca_shim_fail");
    assert_non_null(shim_fail);
    assert_int_equal(ceremony(c, 3), 0);

    /* the token takes the new PIN but the call reports a failure */
    shim_fail("C_SetPIN:after", 0x30 /* CKR_DEVICE_ERROR */);
    assert_int_not_equal(create_paa_n(c, 1), HSMCA_OK);
    shim_fail("", 0);
    assert_int_equal(hsmca_store_qtoken_get(c->st, "hsmca-paa", &t), HSMCA_OK);
    assert_int_not_equal(t.alt_epoch, 0);
    assert_true(t.alt_epoch > t.epoch); /* the new PIN is the alternate */
    /* an envelope of the next request carries the alternate shares */
    id = request(c, "admin", NULL, "ca.create_paa",
                 "{\"ca\":\"paa-9\",\"token\":\"hsmca-paa\",\"key_label\":\"k9\",\"vid\":65521}",
                 60000, HSMCA_OK);
    assert_int_equal(hsmca_quorum_request_envelope(c->q, id, &env), HSMCA_OK);
    assert_non_null(strstr(env, "\"alt_shares\""));
    free(env);
    free(id);
    logins = c->count("C_Login");
    assert_int_equal(create_paa_n(c, 2), HSMCA_OK);
    assert_int_equal(c->count("C_Login") - logins, 2); /* the old PIN refused, the new one in */
    assert_int_equal(hsmca_store_qtoken_get(c->st, "hsmca-paa", &t), HSMCA_OK);
    assert_int_equal(t.alt_epoch, 0);

    /* the token refuses the change: the next operation logs in with the PIN it kept */
    shim_fail("C_SetPIN", 0x30);
    assert_int_not_equal(create_paa_n(c, 3), HSMCA_OK);
    shim_fail("", 0);
    assert_int_equal(hsmca_store_qtoken_get(c->st, "hsmca-paa", &t), HSMCA_OK);
    assert_int_not_equal(t.alt_epoch, 0);
    logins = c->count("C_Login");
    assert_int_equal(create_paa_n(c, 4), HSMCA_OK);
    assert_int_equal(c->count("C_Login") - logins, 1);
    assert_int_equal(hsmca_store_qtoken_get(c->st, "hsmca-paa", &t), HSMCA_OK);
    assert_int_equal(t.alt_epoch, 0);
    assert_int_equal(audit_count(c, "\"action\":\"quorum.rotate\"", NULL), 4);
}

#define PAI1_PARAMS                                                                                \
    "{\"ca\":\"pai-1\",\"parent\":\"paa-1\",\"token\":\"hsmca-pai\",\"key_label\":\"pai-key\","    \
    "\"vid\":65521,\"pid\":32768}"

/* The request's params.tbs, as the approvers sign it (the envelope's request bytes). */
static json_t *
signed_tbs(struct ctx *c, const char *id)
{
    char *env = NULL;
    json_t *e, *req, *tbs;
    unsigned char *b = NULL;
    size_t n = 0;

    assert_int_equal(hsmca_quorum_request_envelope(c->q, id, &env), HSMCA_OK);
    e = json_loads(env, 0, NULL);
    assert_non_null(e);
    assert_int_equal(
        hsmca_b64_decode(json_string_value(json_object_get(e, "request")), 65536, &b, &n),
        HSMCA_OK);
    req = json_loadb((const char *)b, n, 0, NULL);
    assert_non_null(req);
    tbs = json_incref(json_object_get(json_object_get(req, "params"), "tbs"));
    assert_non_null(tbs);
    json_decref(req);
    json_decref(e);
    free(b);
    free(env);
    return tbs;
}

static X509 *
stored_cert(struct ctx *c, const char *ca, struct hsmca_ca_rec *rec)
{
    const unsigned char *p;
    X509 *x;

    assert_int_equal(hsmca_store_ca_get(c->st, ca, rec), HSMCA_OK);
    p = rec->cert_der;
    x = d2i_X509(NULL, &p, (long)rec->cert_len);
    assert_non_null(x);
    return x;
}

static void
renewal_preview_and_key_cleanup(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_exec ex;
    struct hsmca_profile saved;
    struct hsmca_ca_rec paa, pai, pair;
    EVP_PKEY *pub = NULL;
    json_t *tbs, *made;
    X509 *xpaa, *xpai, *xpair;
    char *id, *res = NULL, *succ = NULL;

    assert_int_equal(ceremony(c, 3), 0);
    exec_of(c, &ex);
    id = request(c, "admin", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);
    /* the PAI profile changes between the request and its execution: nothing is signed, and the
     * key generated for it is destroyed in its token */
    id = request(c, "admin", NULL, "ca.create_pai", PAI1_PARAMS, 60000, HSMCA_OK);
    approve_ok(c, "carol", id);
    approve_ok(c, "bob", id);
    saved = c->pai_prof;
    c->pai_prof.no_expiry = 0;
    c->pai_prof.days = 3650;
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_E_QUORUM_TBS_MISMATCH);
    c->pai_prof = saved;
    free(id);
    assert_int_equal(hsmca_store_ca_get(c->st, "pai-1", &pai), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_token_public_key(c->pai_tok, "pkcs11:object=pai-key", &pub),
                     HSMCA_E_KEY_NOT_FOUND);
    assert_null(pub);
    assert_int_equal(audit_count(c, "\"action\":\"ca.keygen\"", "\"outcome\":\"ok\""), 2);
    assert_int_equal(audit_count(c, "\"action\":\"ca.key_destroy\"", "quorum-tbs-mismatch"), 1);
    /* unchanged: made exactly as the approvers saw it */
    id = request(c, "admin", NULL, "ca.create_pai", PAI1_PARAMS, 60000, HSMCA_OK);
    tbs = signed_tbs(c, id);
    assert_string_equal(json_string_value(json_object_get(tbs, "public_key")),
                        "EC P-256, generated in the CA's token at execution");
    approve_ok(c, "carol", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);
    xpai = stored_cert(c, "pai-1", &pai);
    made = hsmca_matter_ca_describe(xpai, 0);
    assert_true(json_equal(made, tbs));
    json_decref(made);
    json_decref(tbs);
    /* a client never fixes the certificate itself */
    (void)request(c, "admin", NULL, "ca.renew",
                  "{\"ca\":\"pai-1\",\"new_ca\":\"pai-1r\",\"tbs\":{}}", 60000,
                  HSMCA_E_QUORUM_PARAMS);
    (void)request(c, "admin", NULL, "ca.renew", "{\"ca\":\"pai-9\",\"new_ca\":\"pai-1r\"}", 60000,
                  HSMCA_E_QUORUM_PARAMS);
    (void)request(c, "admin", NULL, "ca.rekey",
                  "{\"ca\":\"pai-1\",\"new_ca\":\"pai-1k\",\"token\":\"hsmca-paa\","
                  "\"key_label\":\"k\"}",
                  60000, HSMCA_E_QUORUM_PARAMS); /* one CA key per token */
    /* renewal: the same key, a new certificate signed by the PAA, exactly as previewed */
    id = request(c, "admin", NULL, "ca.renew", "{\"ca\":\"pai-1\",\"new_ca\":\"pai-1r\"}", 60000,
                 HSMCA_OK);
    tbs = signed_tbs(c, id);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, &res), HSMCA_OK);
    assert_non_null(strstr(res, "\"supersedes\":\"pai-1\""));
    free(res);
    free(id);
    xpair = stored_cert(c, "pai-1r", &pair);
    made = hsmca_matter_ca_describe(xpair, 1);
    assert_true(json_equal(made, tbs));
    assert_string_equal(pair.key_uri, pai.key_uri);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(xpair), X509_get0_pubkey(xpai)), 1);
    assert_int_not_equal(
        ASN1_INTEGER_cmp(X509_get0_serialNumber(xpair), X509_get0_serialNumber(xpai)), 0);
    xpaa = stored_cert(c, "paa-1", &paa);
    assert_int_equal(X509_verify(xpair, X509_get0_pubkey(xpaa)), 1);
    /* the old PAI stays, superseded: no window, no second renewal */
    assert_int_equal(hsmca_quorum_ca_successor(c->st, "pai-1", &succ), HSMCA_OK);
    assert_string_equal(succ, "pai-1r");
    free(succ);
    succ = NULL;
    assert_int_equal(hsmca_quorum_ca_successor(c->st, "pai-1r", &succ), HSMCA_E_NOT_FOUND);
    assert_true(c->deactivated >= 1); /* its window closed (none was open) */
    (void)request(c, "admin", NULL, "ca.renew", "{\"ca\":\"pai-1\",\"new_ca\":\"pai-1s\"}", 60000,
                  HSMCA_E_QUORUM_CA_SUPERSEDED);
    {
        char params[160];

        snprintf(params, sizeof(params), "{\"ca\":\"pai-1\",\"until\":%lld,\"max_dacs\":5}",
                 (long long)(clock_ms(c) + 600000));
        (void)request(c, "admin", NULL, "ca.activate", params, 60000, HSMCA_E_QUORUM_CA_SUPERSEDED);
    }
    json_decref(made);
    json_decref(tbs);
    X509_free(xpaa);
    X509_free(xpair);
    X509_free(xpai);
    hsmca_ca_rec_clear(&paa);
    hsmca_ca_rec_clear(&pair);
    hsmca_ca_rec_clear(&pai);
}

static void
paa_pai_activation_window(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_exec ex;
    struct hsmca_quorum_principal admin = {"admin", "admin", NULL};
    struct hsmca_token_info ti;
    struct hsmca_ca_rec paa, pai;
    struct hsmca_matter_verdict v;
    char *id, params[256], *res = NULL;
    int64_t until = clock_ms(c) + 3600 * 1000;
    X509 *xpaa, *xpai;
    const unsigned char *p;

    assert_int_equal(ceremony(c, 3), 0);
    exec_of(c, &ex);
    id = request(c, "admin", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);
    /* the PAI needs both tokens' shares in every approval */
    id = request(c, "admin", NULL, "ca.create_pai",
                 "{\"ca\":\"pai-1\",\"parent\":\"paa-1\",\"token\":\"hsmca-pai\","
                 "\"key_label\":\"pai-key\",\"vid\":65521,\"pid\":32768}",
                 60000, HSMCA_OK);
    approve_ok(c, "carol", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, &res), HSMCA_OK);
    free(res);
    free(id);
    assert_int_equal(hsmca_store_ca_get(c->st, "paa-1", &paa), HSMCA_OK);
    assert_int_equal(hsmca_store_ca_get(c->st, "pai-1", &pai), HSMCA_OK);
    p = paa.cert_der;
    xpaa = d2i_X509(NULL, &p, (long)paa.cert_len);
    p = pai.cert_der;
    xpai = d2i_X509(NULL, &p, (long)pai.cert_len);
    assert_non_null(xpaa);
    assert_non_null(xpai);
    assert_int_equal(hsmca_matter_check_format(xpai, HSMCA_PROFILE_PAI, &v), HSMCA_OK);
    assert_int_equal(X509_verify(xpai, X509_get0_pubkey(xpaa)), 1);
    X509_free(xpaa);
    X509_free(xpai);
    hsmca_ca_rec_clear(&paa);
    hsmca_ca_rec_clear(&pai);
    /* activation: the window opens, the token stays logged in with its rotated PIN */
    snprintf(params, sizeof(params), "{\"ca\":\"pai-1\",\"until\":%lld,\"max_dacs\":1000}",
             (long long)until);
    id = request(c, "admin", NULL, "ca.activate", params, 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "carol", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);
    assert_string_equal(c->activated, "pai-1");
    assert_int_equal(c->until, until);
    assert_int_equal(c->max_dacs, 1000);
    assert_int_equal(hsmca_token_info(c->pai_tok, &ti), HSMCA_OK);
    assert_true(ti.logged_in);
    /* deactivation needs no quorum; the caller drains and logs out */
    assert_int_equal(hsmca_quorum_deactivate(c->q, &admin, "pai-1", &ex), HSMCA_OK);
    assert_int_equal(c->deactivated, 1);
    assert_int_equal(hsmca_token_info(c->pai_tok, &ti), HSMCA_OK);
    assert_false(ti.logged_in);
    assert_int_equal(hsmca_quorum_deactivate(c->q, &admin, "pai-9", &ex), HSMCA_E_NOT_FOUND);
    assert_int_equal(audit_count(c, "\"action\":\"ca.deactivate\"", "\"outcome\":\"ok\""), 1);
    /* the auditor's verifier re-checks every quorum.execute from the quorum.epoch entries */
    {
        struct hsmca_audit_verify_result vr;
        char ex_dir[700];

        snprintf(ex_dir, sizeof(ex_dir), "%s/extract", c->dir);
        assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, ex_dir), HSMCA_OK);
        memset(&vr, 0, sizeof(vr));
        if (hsmca_audit_verify_extract(ex_dir, NULL, &vr) != HSMCA_OK)
            fail_msg("extract does not verify: seq %llu: %s", (unsigned long long)vr.bad_seq,
                     vr.why);
        assert_int_equal(vr.quorum_ops, 3);
    }
    {
        char *js = NULL;

        assert_int_equal(hsmca_quorum_approvers_json(c->q, &js), HSMCA_OK);
        assert_non_null(strstr(js, "\"alice\""));
        free(js);
    }
    /* revocation (quorum_revoke.c): only a PAI, onto its PAA's CRL, signed in the PAA's token */
    (void)request(c, "admin", NULL, "ca.revoke", "{\"ca\":\"paa-1\"}", 60000,
                  HSMCA_E_QUORUM_PARAMS);
    (void)request(c, "admin", NULL, "ca.revoke", "{\"ca\":\"pai-1\",\"reason\":\"bogus\"}", 60000,
                  HSMCA_E_QUORUM_PARAMS);
    (void)request(c, "admin", NULL, "crl.sign", "{\"ca\":\"pai-9\"}", 60000, HSMCA_E_QUORUM_PARAMS);
    id = request(c, "admin", NULL, "ca.revoke", "{\"ca\":\"pai-1\",\"reason\":\"keyCompromise\"}",
                 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, &res), HSMCA_OK);
    assert_non_null(strstr(res, "\"revoked\":\"pai-1\""));
    assert_non_null(strstr(res, "\"entries\":1"));
    free(res);
    free(id);
    assert_int_equal(hsmca_store_ca_get(c->st, "pai-1", &pai), HSMCA_OK);
    assert_true(pai.revoked);
    assert_int_equal(pai.reason, 1);
    hsmca_ca_rec_clear(&pai);
    {
        struct hsmca_crl_rec crl;
        struct hsmca_crl_info info;

        assert_int_equal(hsmca_store_ca_get(c->st, "paa-1", &paa), HSMCA_OK);
        p = paa.cert_der;
        xpaa = d2i_X509(NULL, &p, (long)paa.cert_len);
        assert_int_equal(hsmca_store_crl_get(c->st, "paa-1", &crl), HSMCA_OK);
        assert_int_equal(hsmca_crl_check(crl.der, crl.der_len, xpaa, &info), HSMCA_OK);
        assert_int_equal(info.number, 1);
        assert_int_equal(info.entries, 1);
        hsmca_crl_rec_clear(&crl);
        X509_free(xpaa);
        hsmca_ca_rec_clear(&paa);
    }
    assert_int_equal(hsmca_token_info(c->paa_tok, &ti), HSMCA_OK);
    assert_false(ti.logged_in); /* the PAA's token is logged out again, its PIN rotated */
    /* a revoked PAI: no second revocation, no window */
    (void)request(c, "admin", NULL, "ca.revoke", "{\"ca\":\"pai-1\"}", 60000,
                  HSMCA_E_REVOKE_CA_REVOKED);
    (void)request(c, "admin", NULL, "ca.activate", params, 60000, HSMCA_E_REVOKE_CA_REVOKED);
    /* the PAA's CRL again, by crl.sign: number 2 */
    id = request(c, "admin", NULL, "crl.sign", "{\"ca\":\"paa-1\"}", 60000, HSMCA_OK);
    approve_ok(c, "carol", id);
    approve_ok(c, "alice", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, &res), HSMCA_OK);
    assert_non_null(strstr(res, "\"number\":2"));
    free(res);
    free(id);
    assert_int_equal(audit_count(c, "\"action\":\"ca.revoke\"", "\"outcome\":\"ok\""), 1);
    assert_int_equal(audit_count(c, "\"action\":\"crl.sign\"", "\"outcome\":\"ok\""), 2);
    {
        struct hsmca_audit_verify_result vr;
        char ex_dir[700];

        snprintf(ex_dir, sizeof(ex_dir), "%s/extract2", c->dir);
        assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, ex_dir), HSMCA_OK);
        memset(&vr, 0, sizeof(vr));
        if (hsmca_audit_verify_extract(ex_dir, NULL, &vr) != HSMCA_OK)
            fail_msg("extract does not verify: seq %llu: %s", (unsigned long long)vr.bad_seq,
                     vr.why);
        assert_int_equal(vr.quorum_ops, 5);
    }
}

static void
approver_witness_refuses_fork_and_truncation(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_principal who = {"admin", "admin", NULL};
    struct hsmca_audit_checkpoint cp;
    char id[HSMCA_QUORUM_ID_LEN + 1], *env = NULL, *st1 = NULL, *st2 = NULL, *forged, *text = NULL;
    EVP_PKEY *pub = hsmca_key_public(c->audit_key), *other = c->appr[0];
    json_t *o;

    assert_int_equal(ceremony(c, 3), 0);
    memset(&cp, 0, sizeof(cp));
    assert_int_equal(hsmca_audit_checkpoint(c->a, &cp), HSMCA_OK);
    assert_int_equal(hsmca_quorum_request_create(c->q, &who, "ca.create_paa", paa_params(), 60000,
                                                 cp.text, cp.sig, cp.sig_len, id, NULL),
                     HSMCA_OK);
    hsmca_audit_checkpoint_clear(&cp);
    assert_int_equal(hsmca_quorum_request_envelope(c->q, id, &env), HSMCA_OK);
    assert_int_equal(hsmca_quorum_describe(env, strlen(env), &text), HSMCA_OK);
    assert_non_null(strstr(text, "ca.create_paa"));
    free(text);
    /* first sight, then the same checkpoint again */
    assert_int_equal(hsmca_quorum_witness(env, strlen(env), pub, NULL, &st1), HSMCA_OK);
    assert_int_equal(hsmca_quorum_witness(env, strlen(env), pub, st1, &st2), HSMCA_OK);
    free(st2);
    /* not the audit key */
    assert_int_equal(hsmca_quorum_witness(env, strlen(env), other, NULL, &st2),
                     HSMCA_E_QUORUM_CHECKPOINT);
    /* the approver saw a longer log: truncation */
    o = json_loads(st1, 0, NULL);
    json_object_set_new(o, "size",
                        json_integer(json_integer_value(json_object_get(o, "size")) + 5));
    forged = json_dumps(o, JSON_COMPACT);
    assert_int_equal(hsmca_quorum_witness(env, strlen(env), pub, forged, &st2),
                     HSMCA_E_QUORUM_FORK);
    free(forged);
    json_decref(o);
    /* the approver saw another head at this size: a fork */
    o = json_loads(st1, 0, NULL);
    json_object_set_new(
        o, "head", json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    forged = json_dumps(o, JSON_COMPACT);
    assert_int_equal(hsmca_quorum_witness(env, strlen(env), pub, forged, &st2),
                     HSMCA_E_QUORUM_FORK);
    free(forged);
    json_decref(o);
    /* a request without a checkpoint cannot be witnessed */
    free(env);
    assert_int_equal(hsmca_quorum_request_create(c->q, &who, "ca.create_paa", paa_params(), 60000,
                                                 NULL, NULL, 0, id, NULL),
                     HSMCA_OK);
    assert_int_equal(hsmca_quorum_request_envelope(c->q, id, &env), HSMCA_OK);
    assert_int_equal(hsmca_quorum_witness(env, strlen(env), pub, st1, &st2),
                     HSMCA_E_QUORUM_CHECKPOINT);
    free(env);
    free(st1);
}

static void
stale_and_void_requests_are_refused(void **state)
{
    struct ctx *c = *state;
    struct hsmca_quorum_exec ex;
    struct hsmca_quorum_config qcfg;
    char *old, *id, *ap;

    assert_int_equal(ceremony(c, 3), 0);
    exec_of(c, &ex);
    /* a request of epoch 1, approved by alice before another operation moves to epoch 2 */
    old = request(c, "admin", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
    ap = make_approval(c, "bob", old);
    approve_ok(c, "alice", old);
    id = request(c, "admin", NULL, "policy.update",
                 "{\"policy\":{\"version\":1,\"thresholds\":{\"ca.create_paa\":2,"
                 "\"ca.create_pai\":2,\"ca.activate\":2,\"approver.enroll\":2,"
                 "\"approver.remove\":2,\"policy.update\":3}}}",
                 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "carol", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_OK);
    free(id);
    assert_int_equal(submit(c, "bob", old, ap, NULL), HSMCA_E_QUORUM_EPOCH_STALE);
    assert_refusal_audited(c, "quorum-epoch-stale");
    assert_int_equal(hsmca_quorum_execute(c->q, old, &ex, NULL), HSMCA_E_QUORUM_EPOCH_STALE);
    /* the refusal's advice: what to do, with the op and the request's id, within a detail */
    {
        char advice[512], want[96], small[8];

        hsmca_quorum_stale_advice(c->q, old, advice, sizeof(advice));
        assert_true(strlen(advice) < 256);
        assert_non_null(strstr(advice, "create it again (hsmca request create ca.create_paa"));
        snprintf(want, sizeof(want), "(hsmca request cancel %s)", old);
        assert_non_null(strstr(advice, want));
        /* an id that names no request (or is no id) is never repeated */
        hsmca_quorum_stale_advice(c->q, "../../../etc/passwd/xxxxxxxxxxxx", advice, sizeof(advice));
        assert_null(strstr(advice, "passwd"));
        assert_non_null(strstr(advice, "hsmca request create OP"));
        assert_non_null(strstr(advice, "hsmca request cancel ID"));
        hsmca_quorum_stale_advice(NULL, NULL, small, sizeof(small));
        assert_int_equal(strlen(small), sizeof(small) - 1);
    }
    free(ap);
    /* a cancelled request is 'cancelled' (store migration 9): no approval opens it, and it
     * cannot be cancelled twice */
    {
        struct hsmca_quorum_principal admin = {"admin", "admin", NULL};
        struct hsmca_qrequest r;

        assert_int_equal(hsmca_quorum_cancel(c->q, &admin, old, "superseded"), HSMCA_OK);
        memset(&r, 0, sizeof(r));
        assert_int_equal(hsmca_store_qrequest_get(c->st, old, &r), HSMCA_OK);
        assert_string_equal(r.status, "cancelled");
        hsmca_qrequest_clear(&r);
        assert_int_equal(hsmca_quorum_cancel(c->q, &admin, old, NULL),
                         HSMCA_E_QUORUM_REQUEST_EXECUTED);
        assert_refusal_audited(c, "quorum-request-executed");
        id = request(c, "admin", NULL, "ca.create_paa", paa_params(), 60000, HSMCA_OK);
        ap = make_approval(c, "bob", id);
        assert_int_equal(hsmca_quorum_cancel(c->q, &admin, id, NULL), HSMCA_OK);
        assert_int_equal(submit(c, "bob", id, ap, NULL), HSMCA_E_QUORUM_REQUEST_EXECUTED);
        free(ap);
        free(id);
    }
    free(old);
    /* a removal that would leave policy.update's 3 out of reach is refused */
    (void)request(c, "admin", NULL, "approver.remove", "{\"name\":\"bob\"}", 60000,
                  HSMCA_E_QUORUM_TOO_FEW_APPROVERS);
    assert_refusal_audited(c, "quorum-too-few-approvers");
    /* the new policy holds: policy.update now needs 3 */
    id = request(c, "admin", NULL, "policy.update",
                 "{\"policy\":{\"version\":1,\"thresholds\":{\"ca.create_paa\":2,"
                 "\"ca.create_pai\":2,\"ca.activate\":2,\"approver.enroll\":2,"
                 "\"approver.remove\":2,\"policy.update\":2}}}",
                 60000, HSMCA_OK);
    approve_ok(c, "alice", id);
    approve_ok(c, "bob", id);
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_E_QUORUM_THRESHOLD_NOT_MET);
    /* a restart forgets the one-time request keys: pending requests are void */
    ap = make_approval(c, "carol", id);
    hsmca_quorum_free(c->q);
    memset(&qcfg, 0, sizeof(qcfg));
    qcfg.store = c->st;
    qcfg.audit = c->a;
    qcfg.now_ms = clock_ms;
    qcfg.now_arg = c;
    assert_int_equal(hsmca_quorum_open(&qcfg, &c->q), HSMCA_OK);
    assert_int_equal(submit(c, "carol", id, ap, NULL), HSMCA_E_QUORUM_REQUEST_VOID);
    assert_refusal_audited(c, "quorum-request-void");
    assert_int_equal(hsmca_quorum_execute(c->q, id, &ex, NULL), HSMCA_E_QUORUM_REQUEST_VOID);
    free(ap);
    free(id);
}

/* The operation table (quorum_ops.c): every entry named once, found by name, with a check and
 * something to do, every token when it changes the epoch; a fallback threshold names an op every
 * policy carries; a policy must name exactly the ops without a fallback and may name the others. */
static char *
policy_of(const char *skip, const char *extra)
{
    json_t *th = json_object(), *p;
    const struct hsmca_qop *op;
    char *s;
    size_t i;

    for (i = 0; (op = hsmca_qop_at(i)) != NULL; i++) {
        if (op->threshold_of == NULL && (skip == NULL || strcmp(op->name, skip) != 0))
            json_object_set_new(th, op->name, json_integer(2));
    }
    if (extra != NULL)
        json_object_set_new(th, extra, json_integer(2));
    p = json_pack("{s:i, s:o}", "version", 1, "thresholds", th);
    s = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    assert_non_null(s);
    return s;
}

static void
operation_table_is_whole(void **state)
{
    const struct hsmca_qop *op, *o2;
    size_t i, j, n = 0;
    char *pol;

    (void)state;
    for (i = 0; (op = hsmca_qop_at(i)) != NULL; i++, n++) {
        assert_non_null(op->name);
        assert_non_null(op->check);
        assert_true(op->act != NULL || op->epoch != NULL || op->after != NULL);
        if (op->epoch != NULL)
            assert_true(op->all_tokens); /* the new epoch re-splits every token's PIN */
        assert_ptr_equal(hsmca_qop_find(op->name), op);
        for (j = 0; j < i; j++)
            assert_string_not_equal(hsmca_qop_at(j)->name, op->name);
        if (op->threshold_of != NULL) {
            o2 = hsmca_qop_find(op->threshold_of);
            assert_non_null(o2);
            assert_null(o2->threshold_of);
        }
    }
    assert_int_equal(n, 16); /* ..., crl.sign, token.enroll, ca.renew, ca.rekey (quorum_ca.c), and
                                the 5 mdl.* of quorum_mdl.c */
    assert_null(hsmca_qop_find("ca.create"));
    assert_null(hsmca_qop_find(""));
    assert_null(hsmca_qop_find(NULL));
    pol = policy_of(NULL, NULL);
    assert_int_equal(hsmca_quorum_policy_check(pol, strlen(pol), 2, 3), HSMCA_OK);
    free(pol);
    pol = policy_of(NULL, "crl.sign"); /* an op with a fallback may be named */
    assert_int_equal(hsmca_quorum_policy_check(pol, strlen(pol), 2, 3), HSMCA_OK);
    free(pol);
    pol = policy_of(NULL, "ca.create"); /* no such op */
    assert_int_equal(hsmca_quorum_policy_check(pol, strlen(pol), 2, 3), HSMCA_E_QUORUM_POLICY);
    free(pol);
    for (i = 0; (op = hsmca_qop_at(i)) != NULL; i++) {
        if (op->threshold_of != NULL)
            continue;
        pol = policy_of(op->name, NULL); /* every op without a fallback is required */
        assert_int_equal(hsmca_quorum_policy_check(pol, strlen(pol), 2, 3), HSMCA_E_QUORUM_POLICY);
        free(pol);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(operation_table_is_whole),
        cmocka_unit_test_setup_teardown(ceremony_and_request_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(approval_refusals_each_own_code_audited_no_login, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(m_minus_1_cannot_login_m_can, setup, teardown),
        cmocka_unit_test_setup_teardown(pins_never_reach_disk_or_output, setup, teardown),
        cmocka_unit_test_setup_teardown(sealed_shares_do_not_open_with_another_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(enrol_fourth_then_old_shares_useless, setup, teardown),
        cmocka_unit_test_setup_teardown(paa_pai_activation_window, setup, teardown),
        cmocka_unit_test_setup_teardown(renewal_preview_and_key_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(setpin_failure_keeps_both_pins_reachable, setup, teardown),
        cmocka_unit_test_setup_teardown(approver_witness_refuses_fork_and_truncation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stale_and_void_requests_are_refused, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
