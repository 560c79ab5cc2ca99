/* SPDX-License-Identifier: Apache-2.0
 *
 * test_ca.c -- the CA registry (ca.c) on SoftHSM: one handle per token label; CAs registered
 * once, each with its token; a window opens only on an attached PAI whose token is logged in, not
 * twice and never on a revoked CA, and each opening and closing is audited (window.start /
 * window.end with its reason) and told to the hooks; a window whose time ran out is closed with
 * reason "time"; the quorum's execution hooks register a new CA, activate, deactivate, revoke and
 * keep the CRL state; a full registry refuses more CAs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/ca.h"
#include "hsmca/issue.h"
#include "hsmca/matter.h"
#include "hsmca/store_audit.h"

#include "fixture.h"

#define PIN "user-pin-1234"
/* Each test gets a fresh log, so a fresh audit token (the token keeps the log's anchor). */
#define AUDIT_TOKENS 5

/* The tokens, keys and PAA -> PAI chain (made once), and per test a store, log and engine. */
struct world {
    struct fx_hsm hsm;
    struct hsmca_p11 *p11;
    struct hsmca_token *taudit[AUDIT_TOKENS];
    struct hsmca_key *kaudit[AUDIT_TOKENS];
    int next_audit;
    struct hsmca_profile pdac;
    unsigned char *paa_der, *pai_der;
    size_t paa_len, pai_len;
    char dir[512], db[600];
    struct hsmca_store *st, *ro;
    struct hsmca_audit *audit;
    struct hsmca_issuer *iss;
    struct hsmca_ca_registry *reg;
    unsigned opened, closing, created;
};

static struct world W;

static void
load_profile(const char *name, struct hsmca_profile *p)
{
    char path[1024];

    snprintf(path, sizeof(path), "%s/policies/profiles/%s.json", getenv("HSMCA_SOURCE_DIR"), name);
    assert_int_equal(hsmca_profile_load(path, p), HSMCA_OK);
}

static unsigned char *
der_of(X509 *x, size_t *len)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);

    assert_true(n > 0);
    *len = (size_t)n;
    return der;
}

static int
world_setup(void **state)
{
    struct hsmca_secret pin;
    struct hsmca_profile ppaa, ppai;
    struct hsmca_token *tpaa, *tpai;
    struct hsmca_key *kpaa, *kpai;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    X509 *paa = NULL, *pai = NULL;
    time_t now = time(NULL);
    int i;

    (void)state;
    memset(&W, 0, sizeof(W));
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    load_profile("matter-paa", &ppaa);
    load_profile("matter-pai", &ppai);
    load_profile("matter-dac", &W.pdac);
    assert_int_equal(fx_hsm_setup(&W.hsm), 0);
    assert_int_equal(fx_hsm_add_token(&W.hsm, "paa", "so-pin-1234", PIN), 0);
    assert_int_equal(fx_hsm_add_token(&W.hsm, "pai", "so-pin-1234", PIN), 0);
    for (i = 0; i < AUDIT_TOKENS; i++) {
        char label[32];

        snprintf(label, sizeof(label), "audit-%d", i);
        assert_int_equal(fx_hsm_add_token(&W.hsm, label, "so-pin-1234", PIN), 0);
    }
    assert_int_equal(hsmca_p11_open(fx_module(), &W.p11), HSMCA_OK);
    assert_int_equal(hsmca_token_open(W.p11, "pkcs11:token=paa", &tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_open(W.p11, "pkcs11:token=pai", &tpai), HSMCA_OK);
    pin = fx_secret(PIN);
    for (i = 0; i < AUDIT_TOKENS; i++) {
        char uri[64];

        snprintf(uri, sizeof(uri), "pkcs11:token=audit-%d", i);
        assert_int_equal(hsmca_token_open(W.p11, uri, &W.taudit[i]), HSMCA_OK);
        assert_int_equal(hsmca_token_login(W.taudit[i], &pin), HSMCA_OK);
        assert_int_equal(hsmca_token_generate_key(W.taudit[i], "audit-key", NULL, 0,
                                                  HSMCA_KEY_USAGE_SIGN, &W.kaudit[i]),
                         HSMCA_OK);
    }
    assert_int_equal(hsmca_token_login(tpaa, &pin), HSMCA_OK);
    assert_int_equal(hsmca_token_login(tpai, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
    assert_int_equal(
        hsmca_token_generate_key(tpaa, "paa-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &kpaa), HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(tpai, "pai-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &kpai), HSMCA_OK);
    assert_int_equal(
        hsmca_matter_paa_build(&ppaa, &(struct hsmca_matter_ca_subject){NULL, 1, 0, 0xFFF1, 0},
                               hsmca_key_private(kpaa), hsmca_key_public(kpaa), now, serial, &paa),
        HSMCA_OK);
    assert_int_equal(hsmca_matter_pai_build(
                         &ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 1, 0xFFF1, 0x8000},
                         hsmca_key_public(kpai), paa, hsmca_key_private(kpaa), now, serial, &pai),
                     HSMCA_OK);
    W.paa_der = der_of(paa, &W.paa_len);
    W.pai_der = der_of(pai, &W.pai_len);
    X509_free(paa);
    X509_free(pai);
    hsmca_key_free(kpaa);
    hsmca_key_free(kpai);
    /* the CA tokens start logged out: the registry opens its own handles */
    assert_int_equal(hsmca_token_logout(tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(tpai), HSMCA_OK);
    assert_int_equal(hsmca_token_free(tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_free(tpai), HSMCA_OK);
    return 0;
}

static int
world_teardown(void **state)
{
    int i;

    (void)state;
    OPENSSL_free(W.paa_der);
    OPENSSL_free(W.pai_der);
    for (i = 0; i < AUDIT_TOKENS; i++) {
        hsmca_key_free(W.kaudit[i]);
        assert_int_equal(hsmca_token_logout(W.taudit[i]), HSMCA_OK);
        assert_int_equal(hsmca_token_free(W.taudit[i]), HSMCA_OK);
    }
    assert_int_equal(hsmca_p11_free(W.p11), HSMCA_OK);
    fx_hsm_teardown(&W.hsm);
    return 0;
}

static void
rec_of(struct hsmca_ca_rec *r, const char *id, const char *kind)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->kind, sizeof(r->kind), "%s", kind);
    r->vid = 0xFFF1;
    if (strcmp(kind, "paa") == 0) {
        snprintf(r->token_uri, sizeof(r->token_uri), "pkcs11:token=paa");
        snprintf(r->key_uri, sizeof(r->key_uri), "pkcs11:object=paa-key");
        r->pid = -1;
        r->cert_der = W.paa_der;
        r->cert_len = W.paa_len;
    } else {
        snprintf(r->parent, sizeof(r->parent), "paa-1");
        snprintf(r->token_uri, sizeof(r->token_uri), "pkcs11:token=pai");
        snprintf(r->key_uri, sizeof(r->key_uri), "pkcs11:object=pai-key");
        r->pid = 0x8000;
        r->cert_der = W.pai_der;
        r->cert_len = W.pai_len;
    }
}

static struct hsmca_store *
reader(void *arg)
{
    (void)arg;
    return W.ro;
}

static void
opened(void *arg, struct hsmca_ca *c)
{
    (void)arg;
    assert_non_null(c->key); /* told with the key held */
    W.opened++;
}

static void
closing(void *arg, struct hsmca_ca *c)
{
    (void)arg;
    assert_non_null(c->key);
    W.closing++;
}

static enum hsmca_err
created(void *arg, const struct hsmca_ca_rec *ca)
{
    (void)arg;
    assert_non_null(hsmca_ca_find(W.reg, ca->id)); /* registered first */
    W.created++;
    return HSMCA_OK;
}

/* A store with the PAA (and the PAI when with_pai), its log, the engine and a registry over
 * them; issuing: the registry gets the engine. */
static int
setup(void **state)
{
    struct hsmca_ca_registry_config cfg;
    struct hsmca_audit_config ac;
    struct hsmca_issuer_config ic;
    struct hsmca_ca_rec paa, pai;
    char why[256];

    (void)state;
    W.opened = W.closing = W.created = 0;
    assert_int_equal(fx_tmpdir("ca", W.dir, sizeof(W.dir)), 0);
    snprintf(W.db, sizeof(W.db), "%s/hsmca.db", W.dir);
    assert_int_equal(hsmca_store_open(W.db, &W.st), HSMCA_OK);
    rec_of(&paa, "paa-1", "paa");
    rec_of(&pai, "pai-1", "pai");
    assert_int_equal(hsmca_store_begin(W.st), HSMCA_OK);
    assert_int_equal(hsmca_store_ca_put(W.st, &paa), HSMCA_OK);
    assert_int_equal(hsmca_store_ca_put(W.st, &pai), HSMCA_OK);
    assert_int_equal(hsmca_store_commit(W.st), HSMCA_OK);
    memset(&ac, 0, sizeof(ac));
    ac.store = W.st;
    assert_true(W.next_audit < AUDIT_TOKENS);
    ac.token = W.taudit[W.next_audit];
    ac.key = W.kaudit[W.next_audit];
    W.next_audit++;
    ac.origin = "hsmca/test-ca";
    assert_int_equal(hsmca_audit_open(&ac, &W.audit, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(hsmca_store_open_readonly(W.db, &W.ro), HSMCA_OK);
    memset(&ic, 0, sizeof(ic));
    ic.audit = W.audit;
    ic.store_path = W.db;
    ic.threads = 1;
    ic.readers = 1;
    assert_int_equal(hsmca_issuer_new(&ic, &W.iss), HSMCA_OK);
    assert_int_equal(hsmca_ca_registry_new(&W.reg), HSMCA_OK);
    memset(&cfg, 0, sizeof(cfg));
    cfg.p11 = W.p11;
    cfg.audit = W.audit;
    cfg.issuer = W.iss;
    cfg.dac_profile = &W.pdac;
    cfg.reader = reader;
    cfg.window_opened = opened;
    cfg.window_closing = closing;
    cfg.ca_created = created;
    hsmca_ca_registry_configure(W.reg, &cfg);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    hsmca_ca_registry_stop(W.reg, "stop");
    hsmca_issuer_free(W.iss);
    assert_int_equal(hsmca_audit_close(W.audit), HSMCA_OK);
    assert_int_equal(hsmca_ca_registry_free(W.reg), HSMCA_OK);
    hsmca_store_close(W.ro);
    hsmca_store_close(W.st);
    fx_rmtree(W.dir);
    return 0;
}

struct count {
    const char *a, *b;
    unsigned n;
};

static enum hsmca_err
count_one(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    struct count *c = arg;
    char buf[4096];

    (void)seq;
    (void)hash;
    snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
    if (strstr(buf, c->a) != NULL && (c->b == NULL || strstr(buf, c->b) != NULL))
        c->n++;
    return HSMCA_OK;
}

/* Entries of the log holding a (and b, when not NULL). */
static unsigned
entries(const char *a, const char *b)
{
    struct count c = {a, b, 0};
    unsigned char h[32];
    uint64_t head;

    assert_int_equal(hsmca_store_audit_head(W.ro, &head, h), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_scan(W.ro, 1, head, count_one, &c), HSMCA_OK);
    return c.n;
}

/* The quorum's part: log the token of ca in. */
static void
login(const char *label)
{
    struct hsmca_secret pin = fx_secret(PIN);
    struct hsmca_token *t = hsmca_ca_token(W.reg, label, NULL, 0);

    assert_non_null(t);
    assert_int_equal(hsmca_token_login(t, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
}

static int
logged_in(const char *label)
{
    struct hsmca_token_probe pr;

    assert_int_equal(hsmca_token_probe(hsmca_ca_token(W.reg, label, NULL, 0), &pr), HSMCA_OK);
    return pr.logged_in;
}

static int64_t
now_ms(void)
{
    return (int64_t)time(NULL) * 1000;
}

static void
one_handle_per_token_and_ca(void **state)
{
    struct hsmca_ca_rec r;
    struct hsmca_token *t;

    (void)state;
    assert_int_equal(hsmca_ca_load(W.reg, W.st), HSMCA_OK);
    assert_int_equal(hsmca_ca_count(W.reg), 2);
    assert_non_null(hsmca_ca_find(W.reg, "paa-1"));
    assert_null(hsmca_ca_find(W.reg, "pai-2"));
    assert_null(hsmca_ca_at(W.reg, 2));
    /* the CA's token is the table's, found by label */
    t = hsmca_ca_token(W.reg, "pai", NULL, 0);
    assert_non_null(t);
    assert_ptr_equal(hsmca_ca_find(W.reg, "pai-1")->tok, t);
    assert_ptr_equal(hsmca_ca_token(W.reg, "pai", "pkcs11:token=pai", 1), t);
    assert_int_equal(hsmca_ca_find(W.reg, "pai-1")->index, 1);
    /* a second registration is a no-op */
    rec_of(&r, "pai-1", "pai");
    assert_int_equal(hsmca_ca_add(W.reg, &r), HSMCA_OK);
    assert_int_equal(hsmca_ca_count(W.reg), 2);
    /* an absent token: no handle, the CA is still known */
    assert_null(hsmca_ca_token(W.reg, "no-such-token", NULL, 1));
    rec_of(&r, "pai-9", "pai");
    snprintf(r.token_uri, sizeof(r.token_uri), "pkcs11:token=no-such-token");
    assert_int_equal(hsmca_ca_add(W.reg, &r), HSMCA_OK);
    assert_null(hsmca_ca_find(W.reg, "pai-9")->tok);
    /* nothing was activated */
    assert_int_equal(entries("window.start", NULL), 0);
}

static void
a_full_registry_refuses(void **state)
{
    struct hsmca_ca_rec r;
    unsigned i;

    (void)state;
    for (i = 0; i < HSMCA_CA_REG_CAS_MAX; i++) {
        rec_of(&r, "x", "paa");
        snprintf(r.id, sizeof(r.id), "ca-%u", i);
        assert_int_equal(hsmca_ca_add(W.reg, &r), HSMCA_OK);
    }
    rec_of(&r, "one-more", "paa");
    assert_int_equal(hsmca_ca_add(W.reg, &r), HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_ca_count(W.reg), HSMCA_CA_REG_CAS_MAX);
    assert_null(hsmca_ca_find(W.reg, "one-more"));
}

static void
the_window_rules(void **state)
{
    struct hsmca_ca *pai, *paa;
    int64_t until = now_ms() + 600000;

    (void)state;
    assert_int_equal(hsmca_ca_load(W.reg, W.st), HSMCA_OK);
    pai = hsmca_ca_find(W.reg, "pai-1");
    paa = hsmca_ca_find(W.reg, "paa-1");
    assert_int_equal(hsmca_ca_activate(W.reg, "pai-2", until, 10), HSMCA_E_HTTP_CA_NOT_FOUND);
    /* not attached to the engine yet */
    assert_int_equal(hsmca_ca_activate(W.reg, "pai-1", until, 10), HSMCA_E_ISSUE_CA_INACTIVE);
    assert_int_equal(hsmca_ca_attach_all(W.reg, W.ro), HSMCA_OK);
    assert_non_null(pai->ica);
    assert_null(paa->ica); /* a PAA issues no DACs */
    assert_int_equal(hsmca_ca_activate(W.reg, "paa-1", until, 10), HSMCA_E_ISSUE_CA_INACTIVE);
    /* the token is not logged in: the key cannot be used */
    assert_int_not_equal(hsmca_ca_activate(W.reg, "pai-1", until, 10), HSMCA_OK);
    assert_null(pai->key);
    assert_int_equal(W.opened, 0);
    login("pai");
    assert_int_equal(hsmca_ca_activate(W.reg, "pai-1", until, 10), HSMCA_OK);
    assert_non_null(pai->key);
    assert_int_equal(W.opened, 1);
    assert_int_equal(entries("window.start", "pai-1"), 1);
    assert_int_equal(hsmca_ca_activate(W.reg, "pai-1", until, 10), HSMCA_E_ISSUE_CA_ACTIVE);
    assert_int_equal(W.opened, 1);
    /* deactivation: key freed, token logged out, audited, hook told */
    assert_int_equal(hsmca_ca_deactivate(W.reg, "pai-2", "deactivation"), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_ca_deactivate(W.reg, "pai-1", "deactivation"), HSMCA_OK);
    assert_null(pai->key);
    assert_int_equal(W.closing, 1);
    assert_false(logged_in("pai"));
    assert_int_equal(entries("window.end", "deactivation"), 1);
    /* no window: nothing more is audited */
    assert_int_equal(hsmca_ca_deactivate(W.reg, "pai-1", "deactivation"), HSMCA_OK);
    assert_int_equal(entries("window.end", NULL), 1);
    assert_int_equal(W.closing, 1);
}

static void
a_window_ends_by_time_and_a_revoked_ca_never_opens(void **state)
{
    struct hsmca_ca *pai;

    (void)state;
    assert_int_equal(hsmca_ca_load(W.reg, W.st), HSMCA_OK);
    assert_int_equal(hsmca_ca_attach_all(W.reg, W.ro), HSMCA_OK);
    pai = hsmca_ca_find(W.reg, "pai-1");
    login("pai");
    assert_int_equal(hsmca_ca_activate(W.reg, "pai-1", now_ms() + 600000, 10), HSMCA_OK);
    /* still open now */
    hsmca_ca_close_ended(W.reg, now_ms());
    assert_non_null(pai->key);
    /* seen from after its end: closed, reason time */
    hsmca_ca_close_ended(W.reg, now_ms() + 3600000);
    assert_null(pai->key);
    assert_int_equal(entries("window.end", "\"time\""), 1);
    assert_false(logged_in("pai"));
    /* revoked: an open window closes, none opens again */
    login("pai");
    assert_int_equal(hsmca_ca_activate(W.reg, "pai-1", now_ms() + 600000, 10), HSMCA_OK);
    assert_int_equal(W.closing, 1);
    hsmca_ca_revoked(W.reg, "pai-1");
    assert_int_equal(pai->revoked, 1);
    assert_null(pai->key);
    assert_int_equal(W.closing, 1); /* a revoked CA's hook is not told (it signs nothing) */
    assert_int_equal(entries("window.end", "revoked"), 1);
    login("pai");
    assert_int_equal(hsmca_ca_activate(W.reg, "pai-1", now_ms() + 600000, 10),
                     HSMCA_E_REVOKE_CA_REVOKED);
    assert_null(pai->key);
    assert_int_equal(entries("window.start", NULL), 2);
}

static void
the_quorum_hooks(void **state)
{
    struct hsmca_quorum_exec ex;
    struct hsmca_ca_rec pai;
    struct hsmca_crl_info info = {7, 1700000000, 1700086400, 3};
    struct hsmca_ca *c;

    (void)state;
    rec_of(&pai, "paa-1", "paa");
    assert_int_equal(hsmca_ca_add(W.reg, &pai), HSMCA_OK);
    hsmca_ca_quorum_exec(W.reg, &ex);
    assert_ptr_equal(ex.arg, W.reg);
    assert_null(ex.paa_profile); /* the caller's */
    /* tokens by label, from the table */
    assert_ptr_equal(ex.token(ex.arg, "pai"), hsmca_ca_token(W.reg, "pai", NULL, 0));
    /* a new CA: registered, attached, then the caller's hook */
    rec_of(&pai, "pai-1", "pai");
    assert_int_equal(ex.ca_created(ex.arg, &pai), HSMCA_OK);
    assert_int_equal(W.created, 1);
    c = hsmca_ca_find(W.reg, "pai-1");
    assert_non_null(c);
    assert_non_null(c->ica);
    /* activation and deactivation */
    login("pai");
    assert_int_equal(ex.activate(ex.arg, "pai-1", now_ms() + 600000, 5), HSMCA_OK);
    assert_non_null(c->key);
    assert_int_equal(ex.deactivate(ex.arg, "pai-1"), HSMCA_OK);
    assert_null(c->key);
    assert_int_equal(ex.deactivate(ex.arg, "pai-2"), HSMCA_E_NOT_FOUND);
    assert_int_equal(entries("window.end", "deactivation"), 1);
    /* the CRL state */
    ex.crl_signed(ex.arg, "pai-1", &info);
    assert_int_equal(c->crl_number, 7);
    assert_int_equal(c->crl_this, 1700000000);
    assert_int_equal(c->crl_next, 1700086400);
    ex.crl_signed(ex.arg, "pai-2", &info); /* unknown: ignored */
    /* revocation */
    ex.ca_revoked(ex.arg, "pai-1");
    assert_int_equal(c->revoked, 1);
    login("pai");
    assert_int_equal(ex.activate(ex.arg, "pai-1", now_ms() + 600000, 5), HSMCA_E_REVOKE_CA_REVOKED);
    assert_int_equal(hsmca_token_logout(hsmca_ca_token(W.reg, "pai", NULL, 0)), HSMCA_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(one_handle_per_token_and_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(a_full_registry_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(the_window_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(a_window_ends_by_time_and_a_revoked_ca_never_opens, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_quorum_hooks, setup, teardown),
    };

    return cmocka_run_group_tests(tests, world_setup, world_teardown);
}
