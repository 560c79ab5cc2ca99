/* SPDX-License-Identifier: Apache-2.0
 *
 * test_revoke.c -- the revocation rules (revoke.c) and the CRL made from the store (crl.c):
 * unknown CA / serial, a second revocation, bad reasons and dates each refused with their code
 * and nothing changed; the audit detail; the CRL policy file (unknown keys, bounds, per-CA over
 * default, the {ca} URL); a CRL made from the store lists the revoked DACs of a PAI with reason
 * and invalidityDate, and a PAA's revoked PAIs, with a CRL number that grows. A revocation is
 * recorded as one cert.revoke entry (actor, role, target, detail) with its store change, and a
 * second one of the same serial racing it changes nothing and writes no entry.
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
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/revoke.h"
#include "hsmca/store_audit.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"

#include "fixture.h"

struct ctx {
    char dir[512];
    struct hsmca_store *st;
    EVP_PKEY *key;
    unsigned char *pai_der, *paa_der;
    size_t pai_len, paa_len;
};

static unsigned char *
make_ca(EVP_PKEY *k, const char *cn, long serial, size_t *len)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    ASN1_OCTET_STRING *skid = ASN1_OCTET_STRING_new();
    unsigned char id[20], *der = NULL;
    int l;

    memset(id, (int)serial, sizeof(id));
    assert_non_null(x);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    ASN1_OCTET_STRING_set(skid, id, sizeof(id));
    X509_add1_ext_i2d(x, NID_subject_key_identifier, skid, 0, 0);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    l = i2d_X509(x, &der);
    assert_true(l > 0);
    *len = (size_t)l;
    ASN1_OCTET_STRING_free(skid);
    X509_NAME_free(n);
    X509_free(x);
    return der;
}

static struct hsmca_cert_rec
cert(unsigned n, int64_t issued_ms)
{
    static unsigned char der[64];
    struct hsmca_cert_rec r;

    memset(&r, 0, sizeof(r));
    snprintf(r.ca, sizeof(r.ca), "pai-8000");
    r.serial[0] = 0x40;
    r.serial[15] = (unsigned char)n;
    r.serial_len = 16;
    r.vid = 0xFFF1;
    r.pid = 0x8000;
    r.not_before = 1700000000;
    r.not_after = 253402300799;
    r.issued_ms = issued_ms;
    r.reason = -1;
    memset(der, 0x30, sizeof(der));
    r.der = der;
    r.der_len = sizeof(der);
    return r;
}

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct hsmca_ca_rec paa = {0}, pai = {0};
    char db[600];
    unsigned i;

    if (c == NULL || fx_tmpdir("revoke", c->dir, sizeof(c->dir)) != 0)
        return -1;
    snprintf(db, sizeof(db), "%s/hsmca.db", c->dir);
    if (hsmca_store_open(db, &c->st) != HSMCA_OK)
        return -1;
    c->key = EVP_EC_gen("P-256");
    c->paa_der = make_ca(c->key, "paa", 1, &c->paa_len);
    c->pai_der = make_ca(c->key, "pai", 2, &c->pai_len);
    snprintf(paa.id, sizeof(paa.id), "paa");
    snprintf(paa.kind, sizeof(paa.kind), "paa");
    snprintf(paa.token_uri, sizeof(paa.token_uri), "pkcs11:token=hsmca-paa");
    snprintf(paa.key_uri, sizeof(paa.key_uri), "pkcs11:token=hsmca-paa;object=k");
    paa.vid = 0xFFF1;
    paa.pid = -1;
    paa.cert_der = c->paa_der;
    paa.cert_len = c->paa_len;
    pai = paa;
    snprintf(pai.id, sizeof(pai.id), "pai-8000");
    snprintf(pai.kind, sizeof(pai.kind), "pai");
    snprintf(pai.parent, sizeof(pai.parent), "paa");
    pai.pid = 0x8000;
    pai.cert_der = c->pai_der;
    pai.cert_len = c->pai_len;
    if (hsmca_store_ca_put(c->st, &paa) != HSMCA_OK || hsmca_store_ca_put(c->st, &pai) != HSMCA_OK)
        return -1;
    for (i = 1; i <= 3; i++) {
        struct hsmca_cert_rec r = cert(i, 1000 * i);

        if (hsmca_store_cert_insert(c->st, &r) != HSMCA_OK)
            return -1;
    }
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    struct ctx *c = *state;

    hsmca_store_close(c->st);
    fx_rmtree(c->dir);
    EVP_PKEY_free(c->key);
    OPENSSL_free(c->pai_der);
    OPENSSL_free(c->paa_der);
    free(c);
    return 0;
}

#define S1 "40000000000000000000000000000001"
#define S2 "40000000000000000000000000000002"

static void
the_rules_of_a_revocation(void **state)
{
    struct ctx *c = *state;
    struct hsmca_revocation rv;
    struct hsmca_cert_rec r;
    int64_t now = 1800000000000;
    char detail[256];

    /* refusals: nothing changes */
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-9", S1, NULL, -1, -1, now, &rv),
                     HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", "zz", NULL, -1, -1, now, &rv),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", "", NULL, -1, -1, now, &rv),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", "4000000000000000000000000000ffff",
                                          NULL, -1, -1, now, &rv),
                     HSMCA_E_REVOKE_SERIAL_UNKNOWN);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S1, "removeFromCRL", -1, -1, now, &rv),
                     HSMCA_E_CRL_REASON);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S1, "bogus", -1, -1, now, &rv),
                     HSMCA_E_CRL_REASON);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S1, NULL, now + 1, -1, now, &rv),
                     HSMCA_E_CRL_DATE);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S1, NULL, -1, now + 1, now, &rv),
                     HSMCA_E_CRL_DATE);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S1, NULL, now - 10, now - 5, now, &rv),
                     HSMCA_E_CRL_DATE); /* compromised after its revocation */
    assert_int_equal(hsmca_store_cert_get(c->st, "pai-8000", rv.serial, 16, &r), HSMCA_OK);
    assert_false(r.revoked);
    hsmca_cert_rec_clear(&r);

    /* a revocation with a reason and the time of compromise */
    assert_int_equal(
        hsmca_revoke_prepare(c->st, "pai-8000", S1, "keyCompromise", -1, now - 3600000, now, &rv),
        HSMCA_OK);
    assert_int_equal(rv.reason, 1);
    assert_int_equal(rv.revoked_ms, now);
    assert_int_equal(rv.invalidity_ms, now - 3600000);
    assert_int_equal(hsmca_revoke_detail(&rv, detail, sizeof(detail)), 0);
    assert_string_equal(detail, "{\"invalidity_ms\":1799996400000,\"reason\":\"keyCompromise\","
                                "\"revoked_ms\":1800000000000,\"serial\":\"" S1 "\"}");
    assert_int_equal(hsmca_revoke_detail(&rv, detail, 20), -1);
    assert_int_equal(hsmca_revoke_apply(c->st, &rv), HSMCA_OK);
    assert_int_equal(hsmca_store_cert_get(c->st, "pai-8000", rv.serial, 16, &r), HSMCA_OK);
    assert_true(r.revoked);
    assert_int_equal(r.reason, 1);
    assert_int_equal(r.invalidity_ms, now - 3600000);
    hsmca_cert_rec_clear(&r);

    /* twice: refused before and inside the entry, the first revocation kept */
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S1, "superseded", -1, -1, now, &rv),
                     HSMCA_E_REVOKE_ALREADY);
    rv.reason = 4;
    assert_int_equal(hsmca_revoke_apply(c->st, &rv), HSMCA_E_REVOKE_ALREADY);
    assert_int_equal(hsmca_store_cert_get(c->st, "pai-8000", rv.serial, 16, &r), HSMCA_OK);
    assert_int_equal(r.reason, 1);
    hsmca_cert_rec_clear(&r);
    /* no reason given: unspecified, revoked at the given time */
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S2, NULL, now - 5, -1, now, &rv),
                     HSMCA_OK);
    assert_int_equal(rv.reason, 0);
    assert_int_equal(rv.revoked_ms, now - 5);
    assert_int_equal(rv.invalidity_ms, 0);
}

static void
the_crl_policy(void **state)
{
    struct hsmca_crl_policies *p = NULL;
    struct hsmca_crl_policy pol;
    static const char *const bad[] = {
        "[]",
        "{\"default\": {\"next_update\": 60}}",
        "{\"default\": {\"next_update_s\": 10}}",
        "{\"default\": {\"next_update_s\": 3600, \"refresh_before_s\": 3600}}",
        "{\"default\": {\"batch_delay_ms\": -1}}",
        "{\"default\": {\"url\": \"ftp://x/{ca}.crl\"}}",
        "{\"Not An Id\": {}}",
        "{\"default\": {\"warn_before_s\": \"1\"}}",
        "{\"default\": {\"idp\": 1}}",
    };
    const char *good =
        "{\"default\": {\"next_update_s\": 86400, \"batch_delay_ms\": 100, "
        "\"url\": \"http://crl.example.com/{ca}.crl\"}, \"pai-8000\": "
        "{\"next_update_s\": 7200, \"refresh_before_s\": 600, \"idp\": true}, \"pai-long\": "
        "{\"url\": \"http://crl.example.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/{ca}.crl\"}}";
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hsmca_crl_policies_parse(bad[i], strlen(bad[i]), &p),
                         HSMCA_E_CRL_POLICY_INVALID);
    /* no policy: the built-in defaults */
    hsmca_crl_policy_for(NULL, "pai-8000", &pol);
    assert_int_equal(pol.next_update_s, 30 * 86400);
    assert_int_equal(pol.refresh_before_s, 7 * 86400);
    assert_int_equal(pol.batch_delay_ms, 2000);
    assert_string_equal(pol.url, "");
    assert_int_equal(hsmca_crl_policies_parse(good, strlen(good), &p), HSMCA_OK);
    hsmca_crl_policy_for(p, "pai-8000", &pol);
    assert_int_equal(pol.next_update_s, 7200);
    assert_int_equal(pol.refresh_before_s, 600);
    assert_int_equal(pol.batch_delay_ms, 100);
    assert_string_equal(pol.url, "http://crl.example.com/pai-8000.crl");
    assert_int_equal(pol.idp, 1);
    hsmca_crl_policy_for(p, "paa", &pol);
    assert_int_equal(pol.idp, 0);
    assert_int_equal(pol.next_update_s, 86400);
    assert_string_equal(pol.url, "http://crl.example.com/paa.crl");
    /* a URL over Matter's 100 bytes once expanded: no IDP rather than a bad one */
    hsmca_crl_policy_for(p, "pai-long", &pol);
    assert_string_equal(pol.url, "");
    hsmca_crl_policies_free(p);
    assert_int_equal(hsmca_crl_policies_load("", &p), HSMCA_OK);
    hsmca_crl_policies_free(p);
    assert_int_equal(hsmca_crl_policies_load("/nonexistent/crl.json", &p),
                     HSMCA_E_CRL_POLICY_INVALID);
}

static int
has_invalidity(const X509_REVOKED *rev)
{
    ASN1_GENERALIZEDTIME *t = X509_REVOKED_get_ext_d2i(rev, NID_invalidity_date, NULL, NULL);
    int ok = t != NULL;

    ASN1_GENERALIZEDTIME_free(t);
    return ok;
}

static int
has_reason(const X509_REVOKED *rev)
{
    ASN1_ENUMERATED *r = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
    int ok = r != NULL;

    ASN1_ENUMERATED_free(r);
    return ok;
}

static void
crls_made_from_the_store(void **state)
{
    struct ctx *c = *state;
    struct hsmca_crl_policy pol;
    struct hsmca_crl_rec rec, rec2;
    struct hsmca_crl_info info;
    struct hsmca_ca_rec pai, paa;
    struct hsmca_revocation rv;
    const unsigned char *p;
    X509 *issuer;
    X509_CRL *crl;
    size_t n = 0;
    time_t now = time(NULL);
    int64_t now_ms = (int64_t)now * 1000;
    unsigned char ser[1] = {0x02};

    hsmca_crl_policy_for(NULL, "pai-8000", &pol);
    snprintf(pol.url, sizeof(pol.url), "http://127.0.0.1/crl/pai-8000.crl");
    assert_int_equal(hsmca_store_ca_get(c->st, "pai-8000", &pai), HSMCA_OK);
    assert_int_equal(hsmca_store_ca_get(c->st, "paa", &paa), HSMCA_OK);
    /* an empty first CRL: number 1 */
    assert_int_equal(hsmca_crl_make(c->st, &pai, c->key, &pol, now, &rec, &n), HSMCA_OK);
    assert_int_equal(rec.number, 1);
    assert_int_equal(n, 0);
    assert_int_equal(rec.next_update - rec.this_update, 30 * 86400);
    assert_int_equal(hsmca_store_crl_put(c->st, "pai-8000", &rec), HSMCA_OK);
    hsmca_crl_rec_clear(&rec);
    /* two revocations, one with an invalidity date */
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", S1, "keyCompromise", -1,
                                          now_ms - 60000, now_ms, &rv),
                     HSMCA_OK);
    assert_int_equal(hsmca_revoke_apply(c->st, &rv), HSMCA_OK);
    assert_int_equal(
        hsmca_revoke_prepare(c->st, "pai-8000", S2, "cessationOfOperation", -1, -1, now_ms, &rv),
        HSMCA_OK);
    assert_int_equal(hsmca_revoke_apply(c->st, &rv), HSMCA_OK);
    assert_int_equal(hsmca_revoke_prepare(c->st, "pai-8000", "40000000000000000000000000000003",
                                          NULL, -1, -1, now_ms, &rv),
                     HSMCA_OK);
    assert_int_equal(hsmca_revoke_apply(c->st, &rv), HSMCA_OK);
    pol.idp = 1;
    assert_int_equal(hsmca_crl_make(c->st, &pai, c->key, &pol, now, &rec2, &n), HSMCA_OK);
    assert_int_equal(rec2.number, 2);
    assert_int_equal(n, 3);
    p = pai.cert_der;
    issuer = d2i_X509(NULL, &p, (long)pai.cert_len);
    assert_int_equal(hsmca_crl_check(rec2.der, rec2.der_len, issuer, &info), HSMCA_OK);
    assert_int_equal(info.entries, 3);
    p = rec2.der;
    crl = d2i_X509_CRL(NULL, &p, (long)rec2.der_len);
    assert_non_null(crl);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 3);
    /* keyCompromise and cessationOfOperation carry a reasonCode, unspecified none (RFC 5280) */
    assert_int_equal(has_reason(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), 0)) +
                         has_reason(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), 1)) +
                         has_reason(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), 2)),
                     2);
    assert_true(X509_CRL_get_ext_by_NID(crl, NID_issuing_distribution_point, -1) >= 0);
    assert_true(has_invalidity(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), 0)) +
                    has_invalidity(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), 1)) +
                    has_invalidity(sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), 2)) ==
                1);
    X509_CRL_free(crl);
    X509_free(issuer);
    hsmca_crl_rec_clear(&rec2);

    /* a PAA's CRL carries its revoked PAIs; a CA is revoked once */
    pol.idp = 0;
    assert_int_equal(hsmca_crl_make(c->st, &paa, c->key, &pol, now, &rec, &n), HSMCA_OK);
    assert_int_equal(n, 0);
    p = rec.der;
    crl = d2i_X509_CRL(NULL, &p, (long)rec.der_len);
    assert_non_null(crl);
    assert_true(X509_CRL_get_ext_by_NID(crl, NID_issuing_distribution_point, -1) < 0);
    X509_CRL_free(crl);
    hsmca_crl_rec_clear(&rec);
    assert_int_equal(hsmca_store_ca_revoke(c->st, "pai-8000", ser, 1, now_ms, 2, 0), HSMCA_OK);
    assert_int_equal(hsmca_store_ca_revoke(c->st, "pai-8000", ser, 1, now_ms, 2, 0),
                     HSMCA_E_EXISTS);
    assert_int_equal(hsmca_store_ca_revoke(c->st, "pai-9", ser, 1, now_ms, 2, 0),
                     HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_crl_make(c->st, &paa, c->key, &pol, now, &rec, &n), HSMCA_OK);
    assert_int_equal(n, 1);
    hsmca_crl_rec_clear(&rec);
    hsmca_ca_rec_clear(&pai);
    assert_int_equal(hsmca_store_ca_get(c->st, "pai-8000", &pai), HSMCA_OK);
    assert_true(pai.revoked);
    assert_int_equal(pai.reason, 2);
    hsmca_ca_rec_clear(&pai);
    hsmca_ca_rec_clear(&paa);
}

struct wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    enum hsmca_err rc;
    uint64_t seq;
};

static void
recorded(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct wait *w = arg;

    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->seq = rc == HSMCA_OK && receipt != NULL ? receipt->seq : 0;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Submit rv and wait for its done: its rc. */
static enum hsmca_err
submit_and_wait(struct hsmca_audit *a, struct hsmca_revocation *rv, uint64_t *seq)
{
    struct wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, HSMCA_OK, 0};

    assert_int_equal(hsmca_revoke_submit(a, rv, "ops-alice", "operator", recorded, &w), HSMCA_OK);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    *seq = w.seq;
    return w.rc;
}

struct revokes {
    unsigned n;
    char line[2048];
};

static enum hsmca_err
revoke_entry(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    struct revokes *r = arg;

    (void)seq;
    (void)hash;
    if (len < sizeof(r->line) && memmem(line, len, "cert.revoke", 11) != NULL) {
        r->n++;
        memcpy(r->line, line, len);
        r->line[len] = '\0';
    }
    return HSMCA_OK;
}

static void
a_revocation_is_one_audit_entry(void **state)
{
    struct ctx *c = *state;
    struct fx_hsm hsm;
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *tok = NULL;
    struct hsmca_key *key = NULL;
    struct hsmca_secret pin;
    struct hsmca_audit_config ac;
    struct hsmca_audit *a = NULL;
    struct hsmca_revocation rv, twice;
    struct hsmca_cert_rec r;
    struct revokes found;
    unsigned char h[32];
    uint64_t head, seq = 0;
    int64_t now = (int64_t)time(NULL) * 1000;
    char why[256], *text;
    json_t *j;

    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    assert_int_equal(fx_hsm_setup(&hsm), 0);
    assert_int_equal(fx_hsm_add_token(&hsm, "audit", "so-pin-1234", "user-pin-1234"), 0);
    assert_int_equal(hsmca_p11_open(fx_module(), &p11), HSMCA_OK);
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=audit", &tok), HSMCA_OK);
    pin = fx_secret("user-pin-1234");
    assert_int_equal(hsmca_token_login(tok, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
    assert_int_equal(
        hsmca_token_generate_key(tok, "audit-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &key), HSMCA_OK);
    memset(&ac, 0, sizeof(ac));
    ac.store = c->st;
    ac.token = tok;
    ac.key = key;
    ac.origin = "hsmca/test-revoke";
    assert_int_equal(hsmca_audit_open(&ac, &a, why, sizeof(why)), HSMCA_OK);

    assert_int_equal(
        hsmca_revoke_prepare(c->st, "pai-8000", S1, "keyCompromise", -1, now - 60000, now, &rv),
        HSMCA_OK);
    twice = rv;
    /* no log: refused, nothing written */
    assert_int_equal(hsmca_revoke_submit(NULL, &rv, "ops-alice", "operator", recorded, NULL),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(submit_and_wait(a, &rv, &seq), HSMCA_OK);
    assert_true(seq > 0);
    /* the same serial again, checked before the first was recorded: refused inside the entry */
    assert_int_equal(submit_and_wait(a, &twice, &seq), HSMCA_E_REVOKE_ALREADY);
    /* the answer */
    j = hsmca_revoke_json(&rv);
    assert_non_null(j);
    text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"ca\":\"pai-8000\""));
    assert_non_null(strstr(text, "\"reason\":\"keyCompromise\""));
    assert_non_null(strstr(text, "\"serial\":\"" S1 "\""));
    assert_non_null(strstr(text, "\"status\":\"revoked\""));
    assert_non_null(strstr(text, "\"invalidity_ms\":"));
    free(text);
    json_decref(j);
    assert_int_equal(hsmca_audit_close(a), HSMCA_OK);

    /* one entry, with who, the CA and the detail; the certificate revoked with it */
    memset(&found, 0, sizeof(found));
    assert_int_equal(hsmca_store_audit_head(c->st, &head, h), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_scan(c->st, 1, head, revoke_entry, &found), HSMCA_OK);
    assert_int_equal(found.n, 1);
    assert_non_null(strstr(found.line, "ops-alice"));
    assert_non_null(strstr(found.line, "operator"));
    assert_non_null(strstr(found.line, "ca/pai-8000"));
    assert_non_null(strstr(found.line, "keyCompromise"));
    assert_int_equal(hsmca_store_cert_get(c->st, "pai-8000", rv.serial, 16, &r), HSMCA_OK);
    assert_true(r.revoked);
    assert_int_equal(r.reason, 1);
    hsmca_cert_rec_clear(&r);

    hsmca_key_free(key);
    assert_int_equal(hsmca_token_logout(tok), HSMCA_OK);
    assert_int_equal(hsmca_token_free(tok), HSMCA_OK);
    assert_int_equal(hsmca_p11_free(p11), HSMCA_OK);
    fx_hsm_teardown(&hsm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_rules_of_a_revocation, setup, teardown),
        cmocka_unit_test(the_crl_policy),
        cmocka_unit_test_setup_teardown(crls_made_from_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(a_revocation_is_one_audit_entry, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
