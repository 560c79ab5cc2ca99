/* SPDX-License-Identifier: Apache-2.0
 *
 * test_issue.c -- the DAC issuance engine against SoftHSM (through the counting PKCS#11 shim) and
 * the real audit log: hostile input first (quota files, request ids, bad CSRs, inactive CAs,
 * window and quota bounds at N and N+1), then issuance that validates as a Matter chain,
 * idempotent replay, conflicts, dry runs that sign nothing, batches, draining on deactivate,
 * four threads at once, a failed write that releases nothing, and the refusal limiter.
 */
#include <dlfcn.h>
#include <pthread.h>
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
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/csr.h"
#include "hsmca/issue.h"
#include "hsmca/limits.h"
#include "hsmca/matter.h"
#include "hsmca/profile.h"
#include "hsmca/store.h"
#include "hsmca/store_audit.h"
#include "hsmca/store_certs.h"
#include "hsmca/store_windows.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "fixture.h"

#define VID_OID "1.3.6.1.4.1.37244.2.1"

/* Each test gets a fresh log, so a fresh audit token (the token keeps the log's anchor). */
#define AUDIT_TOKENS 13

typedef unsigned long (*shim_count_fn)(const char *);

/* Shared by every test: tokens, keys and the PAA -> PAI chain (made once). */
struct world {
    struct fx_hsm hsm;
    struct hsmca_p11 *p11;
    struct hsmca_token *tpaa, *tpai, *taudit[AUDIT_TOKENS];
    struct hsmca_key *kpaa, *kpai, *kpai2, *kaudit[AUDIT_TOKENS];
    int next_audit;
    struct hsmca_profile pdac;
    X509 *paa, *pai, *pai2;
    unsigned char *paa_der, *pai_der, *pai2_der;
    size_t paa_len, pai_len, pai2_len;
    shim_count_fn count;
    void *dl;
};

/* Per test: a store, the audit log over it, the engine and one CA. */
struct env {
    char dir[512], db[600];
    struct hsmca_store *st;
    struct hsmca_audit *audit;
    struct hsmca_issuer *iss;
    struct hsmca_issue_ca *ca;
};

static struct world W;
/* Batch helper threads of the engine in env_open (more than the cores, to shake out races). */
static unsigned env_threads = 3;

/* ---------------------------------------------------------------- helpers */

static void
load_profile(const char *name, struct hsmca_profile *p)
{
    char path[1024];

    snprintf(path, sizeof(path), "%s/policies/profiles/%s.json", getenv("HSMCA_SOURCE_DIR"), name);
    assert_int_equal(hsmca_profile_load(path, p), HSMCA_OK);
}

static unsigned char *
make_csr(EVP_PKEY *k, const char *vid, size_t *len)
{
    unsigned char *der = fx_csr(k, vid, len);

    assert_non_null(der);
    return der;
}

/* A fresh device key and its CSR (DER). */
static unsigned char *
fresh_csr(size_t *len)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    unsigned char *der;

    assert_non_null(k);
    der = make_csr(k, NULL, len);
    EVP_PKEY_free(k);
    return der;
}

static unsigned long
signs(void)
{
    return W.count("C_Sign");
}

/* Where a done callback leaves its result. */
struct sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    struct hsmca_issue_result *res;
    struct hsmca_issue_batch_result *br;
};

static void
sink_init(struct sink *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
}

static void
on_done(void *arg, struct hsmca_issue_result *res)
{
    struct sink *s = arg;

    pthread_mutex_lock(&s->mu);
    s->res = res;
    s->done++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void
on_batch(void *arg, struct hsmca_issue_batch_result *br)
{
    struct sink *s = arg;

    pthread_mutex_lock(&s->mu);
    s->br = br;
    s->done++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void
sink_wait(struct sink *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->done == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(s->done, 1);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

/* Submit one request and wait for its result (caller frees). */
static struct hsmca_issue_result *
issue(struct env *e, const unsigned char *csr, size_t len, const char *id, int dry)
{
    struct hsmca_issue_req rq = {csr, len, id, 0, 0, "operator-1", "operator", dry, NULL};
    struct sink s;

    sink_init(&s);
    assert_int_equal(hsmca_issue_submit(e->iss, e->ca, &rq, on_done, &s), HSMCA_OK);
    sink_wait(&s);
    assert_non_null(s.res);
    return s.res;
}

static void
expect_refused(struct env *e, const unsigned char *csr, size_t len, const char *id,
               enum hsmca_err code)
{
    struct hsmca_issue_result *r = issue(e, csr, len, id, 0);

    if (r->rc != code)
        fail_msg("got %s, want %s", hsmca_err_code(r->rc), hsmca_err_code(code));
    assert_null(r->dac_der);
    hsmca_issue_result_free(r);
}

static struct hsmca_issue_ca *
make_ca(struct env *e, const char *id, const unsigned char *der, size_t len, int put)
{
    struct hsmca_ca_rec rec;
    struct hsmca_issue_ca *ca = NULL;

    memset(&rec, 0, sizeof(rec));
    snprintf(rec.id, sizeof(rec.id), "%s", id);
    snprintf(rec.kind, sizeof(rec.kind), "pai");
    snprintf(rec.parent, sizeof(rec.parent), "paa-1");
    snprintf(rec.token_uri, sizeof(rec.token_uri), "pkcs11:token=pai");
    snprintf(rec.key_uri, sizeof(rec.key_uri), "pkcs11:object=pai-key");
    rec.vid = 0xFFF1;
    rec.pid = -1;
    rec.cert_der = (unsigned char *)der;
    rec.cert_len = len;
    if (put) {
        assert_int_equal(hsmca_store_begin(e->st), HSMCA_OK);
        assert_int_equal(hsmca_store_ca_put(e->st, &rec), HSMCA_OK);
        assert_int_equal(hsmca_store_commit(e->st), HSMCA_OK);
    }
    assert_int_equal(hsmca_issue_ca_new(e->iss, &rec, W.paa, &W.pdac, &ca), HSMCA_OK);
    return ca;
}

/* A fresh store with the PAA row, the audit log, the engine (quotas q, refusal burst) and CA
 * "pai-1" (inactive). */
static void
env_open(struct env *e, const struct hsmca_issue_quotas *q, unsigned burst)
{
    struct hsmca_ca_rec paa;
    struct hsmca_audit_config ac;
    struct hsmca_issuer_config ic;
    char why[256];

    memset(e, 0, sizeof(*e));
    assert_int_equal(fx_tmpdir("issue", e->dir, sizeof(e->dir)), 0);
    snprintf(e->db, sizeof(e->db), "%s/hsmca.db", e->dir);
    assert_int_equal(hsmca_store_open(e->db, &e->st), HSMCA_OK);
    memset(&paa, 0, sizeof(paa));
    snprintf(paa.id, sizeof(paa.id), "paa-1");
    snprintf(paa.kind, sizeof(paa.kind), "paa");
    snprintf(paa.token_uri, sizeof(paa.token_uri), "pkcs11:token=paa");
    snprintf(paa.key_uri, sizeof(paa.key_uri), "pkcs11:object=paa-key");
    paa.vid = 0xFFF1;
    paa.pid = -1;
    paa.cert_der = W.paa_der;
    paa.cert_len = W.paa_len;
    assert_int_equal(hsmca_store_begin(e->st), HSMCA_OK);
    assert_int_equal(hsmca_store_ca_put(e->st, &paa), HSMCA_OK);
    assert_int_equal(hsmca_store_commit(e->st), HSMCA_OK);
    memset(&ac, 0, sizeof(ac));
    ac.store = e->st;
    assert_true(W.next_audit < AUDIT_TOKENS);
    ac.token = W.taudit[W.next_audit];
    ac.key = W.kaudit[W.next_audit];
    W.next_audit++;
    ac.origin = "hsmca/test-issue";
    assert_int_equal(hsmca_audit_open(&ac, &e->audit, why, sizeof(why)), HSMCA_OK);
    memset(&ic, 0, sizeof(ic));
    ic.audit = e->audit;
    ic.store_path = e->db;
    ic.quotas = q;
    ic.threads = env_threads;
    ic.readers = 4;
    ic.refusal_burst = burst;
    assert_int_equal(hsmca_issuer_new(&ic, &e->iss), HSMCA_OK);
    e->ca = make_ca(e, "pai-1", W.pai_der, W.pai_len, 1);
}

static void
env_close(struct env *e)
{
    hsmca_issue_ca_free(e->ca);
    hsmca_issuer_free(e->iss);
    assert_int_equal(hsmca_audit_close(e->audit), HSMCA_OK);
    hsmca_store_close(e->st);
    fx_rmtree(e->dir);
}

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until everything queued is durable (a checkpoint is made after it). */
static void
sync_log(struct env *e)
{
    struct hsmca_audit_checkpoint cp;

    memset(&cp, 0, sizeof(cp));
    assert_int_equal(hsmca_audit_checkpoint(e->audit, &cp), HSMCA_OK);
    hsmca_audit_checkpoint_clear(&cp);
}

/* Entry seq has this action and outcome, and its detail contains want (NULL = anything). */
static void
assert_entry(struct env *e, uint64_t seq, const char *action, const char *outcome, const char *want)
{
    struct hsmca_store *ro = NULL;
    struct hsmca_audit_line al;
    unsigned char hash[32];
    const char *why = NULL;
    char *line = NULL;
    size_t len = 0;

    assert_int_equal(hsmca_store_open_readonly(e->db, &ro), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_get(ro, seq, &line, &len, hash), HSMCA_OK);
    assert_int_equal(hsmca_audit_line_parse(line, len, &al, &why), HSMCA_OK);
    if (al.action_len != strlen(action) || memcmp(al.action, action, al.action_len) != 0 ||
        al.outcome_len != strlen(outcome) || memcmp(al.outcome, outcome, al.outcome_len) != 0 ||
        (want != NULL && memmem(al.detail, al.detail_len, want, strlen(want)) == NULL))
        fail_msg("entry %llu is %s, want %s/%s with %s", (unsigned long long)seq, line, action,
                 outcome, want != NULL ? want : "-");
    free(line);
    hsmca_store_close(ro);
}

/* Entry seq's detail is canonical JSON: exactly what jansson writes for it, compact with keys
 * sorted (the engine writes some details directly, not through jansson). */
static void
assert_detail_canonical(struct env *e, uint64_t seq)
{
    struct hsmca_store *ro = NULL;
    struct hsmca_audit_line al;
    unsigned char hash[32];
    const char *why = NULL;
    char *line = NULL, *again;
    size_t len = 0;
    json_t *d;

    assert_int_equal(hsmca_store_open_readonly(e->db, &ro), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_get(ro, seq, &line, &len, hash), HSMCA_OK);
    assert_int_equal(hsmca_audit_line_parse(line, len, &al, &why), HSMCA_OK);
    d = json_loadb(al.detail, al.detail_len, 0, NULL);
    assert_non_null(d);
    again = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(again);
    assert_int_equal(strlen(again), al.detail_len);
    assert_memory_equal(again, al.detail, al.detail_len);
    free(again);
    json_decref(d);
    free(line);
    hsmca_store_close(ro);
}

static void
activate(struct env *e, int64_t for_ms, uint64_t max)
{
    assert_int_equal(hsmca_issue_ca_activate(e->ca, W.kpai, wall_ms() + for_ms, max), HSMCA_OK);
}

/* ---------------------------------------------------------------- world */

static int
world_setup(void **state)
{
    struct hsmca_secret pin;
    struct hsmca_profile ppaa, ppai;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    const char *shim = getenv("HSMCA_P11SHIM");
    time_t now = time(NULL);
    int n, i;

    (void)state;
    memset(&W, 0, sizeof(W));
    assert_int_equal(hsmca_secure_heap_init(0), HSMCA_OK);
    load_profile("matter-paa", &ppaa);
    load_profile("matter-pai", &ppai);
    load_profile("matter-dac", &W.pdac);
    assert_int_equal(fx_hsm_setup(&W.hsm), 0);
    assert_int_equal(fx_hsm_add_token(&W.hsm, "paa", "so-pin-1234", "user-pin-1234"), 0);
    assert_int_equal(fx_hsm_add_token(&W.hsm, "pai", "so-pin-1234", "user-pin-1234"), 0);
    for (i = 0; i < AUDIT_TOKENS; i++) {
        char label[32];

        snprintf(label, sizeof(label), "audit-%d", i);
        assert_int_equal(fx_hsm_add_token(&W.hsm, label, "so-pin-1234", "user-pin-1234"), 0);
    }
    /* SoftHSM behind the counting shim: tests can prove that nothing was signed */
    assert_non_null(shim);
    assert_int_equal(hsmca_p11_open(shim, &W.p11), HSMCA_OK);
    W.dl = dlopen(shim, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(W.dl);
    *(void **)&W.count = dlsym(W.dl, "hsmca_shim_count");
    assert_non_null(W.count);
    assert_int_equal(hsmca_token_open(W.p11, "pkcs11:token=paa", &W.tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_open(W.p11, "pkcs11:token=pai", &W.tpai), HSMCA_OK);
    pin = fx_secret("user-pin-1234");
    for (i = 0; i < AUDIT_TOKENS; i++) {
        char uri[64];

        snprintf(uri, sizeof(uri), "pkcs11:token=audit-%d", i);
        assert_int_equal(hsmca_token_open(W.p11, uri, &W.taudit[i]), HSMCA_OK);
        assert_int_equal(hsmca_token_login(W.taudit[i], &pin), HSMCA_OK);
        assert_int_equal(hsmca_token_generate_key(W.taudit[i], "audit-key", NULL, 0,
                                                  HSMCA_KEY_USAGE_SIGN, &W.kaudit[i]),
                         HSMCA_OK);
    }
    assert_int_equal(hsmca_token_login(W.tpaa, &pin), HSMCA_OK);
    assert_int_equal(hsmca_token_login(W.tpai, &pin), HSMCA_OK);
    hsmca_secret_clear(&pin);
    assert_int_equal(
        hsmca_token_generate_key(W.tpaa, "paa-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &W.kpaa),
        HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(W.tpai, "pai-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &W.kpai),
        HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(W.tpai, "pai2-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &W.kpai2),
        HSMCA_OK);
    assert_int_equal(hsmca_matter_paa_build(
                         &ppaa, &(struct hsmca_matter_ca_subject){NULL, 1, 0, 0xFFF1, 0},
                         hsmca_key_private(W.kpaa), hsmca_key_public(W.kpaa), now, serial, &W.paa),
                     HSMCA_OK);
    assert_int_equal(
        hsmca_matter_pai_build(&ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 1, 0xFFF1, 0x8000},
                               hsmca_key_public(W.kpai), W.paa, hsmca_key_private(W.kpaa), now,
                               serial, &W.pai),
        HSMCA_OK);
    /* a PAI for every PID of the vendor: requests must name one */
    assert_int_equal(
        hsmca_matter_pai_build(&ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 0, 0xFFF1, 0},
                               hsmca_key_public(W.kpai2), W.paa, hsmca_key_private(W.kpaa), now,
                               serial, &W.pai2),
        HSMCA_OK);
    n = i2d_X509(W.paa, &W.paa_der);
    assert_true(n > 0);
    W.paa_len = (size_t)n;
    n = i2d_X509(W.pai, &W.pai_der);
    assert_true(n > 0);
    W.pai_len = (size_t)n;
    n = i2d_X509(W.pai2, &W.pai2_der);
    assert_true(n > 0);
    W.pai2_len = (size_t)n;
    return 0;
}

static int
world_teardown(void **state)
{
    int i;

    (void)state;
    OPENSSL_free(W.paa_der);
    OPENSSL_free(W.pai_der);
    OPENSSL_free(W.pai2_der);
    X509_free(W.paa);
    X509_free(W.pai);
    X509_free(W.pai2);
    hsmca_key_free(W.kpaa);
    hsmca_key_free(W.kpai);
    hsmca_key_free(W.kpai2);
    for (i = 0; i < AUDIT_TOKENS; i++) {
        hsmca_key_free(W.kaudit[i]);
        assert_int_equal(hsmca_token_logout(W.taudit[i]), HSMCA_OK);
        assert_int_equal(hsmca_token_free(W.taudit[i]), HSMCA_OK);
    }
    assert_int_equal(hsmca_token_logout(W.tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(W.tpai), HSMCA_OK);
    assert_int_equal(hsmca_token_free(W.tpaa), HSMCA_OK);
    assert_int_equal(hsmca_token_free(W.tpai), HSMCA_OK);
    assert_int_equal(hsmca_p11_free(W.p11), HSMCA_OK);
    dlclose(W.dl);
    fx_hsm_teardown(&W.hsm);
    return 0;
}

/* ---------------------------------------------------------------- hostile input */

static void
quota_files_are_checked_strictly(void **state)
{
    struct hsmca_issue_quotas *q = NULL;
    uint64_t pm = 9, pd = 9;
    char *big;
    static const char *bad[] = {
        "[]",
        "{\"default\": {\"per_minute\": 1, \"per_hour\": 2}}", /* unknown key */
        "{\"default\": {\"per_minute\": -1}}",
        "{\"default\": {\"per_minute\": 1000000001}}",
        "{\"default\": {\"per_minute\": \"10\"}}",
        "{\"default\": 5}",
        "{\"PAI-1\": {\"per_minute\": 1}}", /* not a CA id */
        "{\"\": {\"per_minute\": 1}}",
        "{\"pai-1\": {\"per_day\": 1}, \"pai-1\": {\"per_day\": 2}}", /* duplicate */
        "{\"pai-1\": {\"per_day\": 1}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (hsmca_issue_quotas_parse(bad[i], strlen(bad[i]), &q) != HSMCA_E_ISSUE_QUOTAS_INVALID)
            fail_msg("accepted: %s", bad[i]);
        assert_null(q);
    }
    big = malloc(HSMCA_ISSUE_QUOTAS_MAX + 1);
    assert_non_null(big);
    memset(big, ' ', HSMCA_ISSUE_QUOTAS_MAX + 1);
    big[0] = '{';
    big[HSMCA_ISSUE_QUOTAS_MAX - 1] = '}';
    assert_int_equal(hsmca_issue_quotas_parse(big, HSMCA_ISSUE_QUOTAS_MAX + 1, &q),
                     HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_issue_quotas_parse(big, HSMCA_ISSUE_QUOTAS_MAX, &q), HSMCA_OK);
    hsmca_issue_quotas_get(q, "pai-1", &pm, &pd);
    assert_int_equal(pm, 0); /* empty file: no limits */
    assert_int_equal(pd, 0);
    hsmca_issue_quotas_free(q);
    free(big);
    q = NULL;
    {
        const char *good = "{\"default\": {\"per_minute\": 100, \"per_day\": 1000},"
                           " \"pai-8000\": {\"per_day\": 5}, \"pai-x\": {}}";

        assert_int_equal(hsmca_issue_quotas_parse(good, strlen(good), &q), HSMCA_OK);
    }
    hsmca_issue_quotas_get(q, "pai-8000", &pm, &pd);
    assert_int_equal(pm, 0);
    assert_int_equal(pd, 5);
    hsmca_issue_quotas_get(q, "pai-x", &pm, &pd);
    assert_int_equal(pm + pd, 0);
    hsmca_issue_quotas_get(q, "other", &pm, &pd);
    assert_int_equal(pm, 100);
    assert_int_equal(pd, 1000);
    hsmca_issue_quotas_free(q);
    hsmca_issue_quotas_free(NULL);
    {
        char path[1024];

        snprintf(path, sizeof(path), "%s/policies/quotas.json", getenv("HSMCA_SOURCE_DIR"));
        assert_int_equal(hsmca_issue_quotas_load(path, &q), HSMCA_OK); /* the shipped file */
        hsmca_issue_quotas_free(q);
        assert_int_equal(hsmca_issue_quotas_load("/nonexistent/quotas.json", &q), HSMCA_E_IO);
    }
}

static void
inactive_ca_and_bad_requests_are_refused_and_audited(void **state)
{
    struct env e;
    struct hsmca_issue_result *r;
    struct hsmca_issue_ca_state cs;
    unsigned char *csr;
    size_t len = 0;
    char id[HSMCA_REQUEST_ID_MAX + 2];
    uint64_t before;
    unsigned long s0;
    struct sink s;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    s0 = signs();
    before = hsmca_audit_size(e.audit);
    /* inactive: refused with its code, and the refusal is an entry with a receipt */
    r = issue(&e, csr, len, NULL, 0);
    assert_int_equal(r->rc, HSMCA_E_ISSUE_CA_INACTIVE);
    assert_int_equal(hsmca_err_http_status(r->rc), 409);
    assert_true(r->has_receipt);
    assert_int_equal(r->receipt.seq, before + 1);
    assert_null(r->dac_der);
    assert_int_equal(r->sign_us, 0);
    assert_int_equal(strlen(r->csr_sha256), 64);
    hsmca_issue_result_free(r);
    assert_int_equal(hsmca_audit_size(e.audit), before + 1);
    assert_entry(&e, before + 1, "dac.refuse", "refused", "\"code\":\"ca-inactive\"");
    assert_entry(&e, before + 1, "dac.refuse", "refused", "\"csr_sha256\":\"");
    /* a dry run needs a key too */
    r = issue(&e, csr, len, NULL, 1);
    assert_int_equal(r->rc, HSMCA_E_ISSUE_CA_INACTIVE);
    hsmca_issue_result_free(r);

    activate(&e, 60000, 100);
    /* request ids: 128 bytes of the charset pass the check, 129 or a forbidden byte do not */
    memset(id, 'a', sizeof(id));
    id[HSMCA_REQUEST_ID_MAX + 1] = '\0';
    expect_refused(&e, csr, len, id, HSMCA_E_ISSUE_REQUEST_ID_INVALID);
    expect_refused(&e, csr, len, "a b", HSMCA_E_ISSUE_REQUEST_ID_INVALID);
    expect_refused(&e, csr, len, "a/b", HSMCA_E_ISSUE_REQUEST_ID_INVALID);
    expect_refused(&e, csr, len, "a\nb", HSMCA_E_ISSUE_REQUEST_ID_INVALID);
    id[HSMCA_REQUEST_ID_MAX] = '\0';
    r = issue(&e, csr, len, id, 0);
    assert_int_equal(r->rc, HSMCA_OK);
    hsmca_issue_result_free(r);
    /* bad CSRs: their own codes, nothing signed */
    s0 = signs();
    expect_refused(&e, (const unsigned char *)"junk", 4, NULL, HSMCA_E_CSR_MALFORMED);
    expect_refused(&e, csr, len - 1, NULL, HSMCA_E_CSR_MALFORMED);
    csr[len - 3] ^= 0x55; /* the self-signature no longer verifies */
    expect_refused(&e, csr, len, NULL, HSMCA_E_CSR_SIGNATURE);
    csr[len - 3] ^= 0x55;
    {
        unsigned char *big = calloc(1, HSMCA_CSR_MAX + 1);

        assert_non_null(big);
        expect_refused(&e, big, HSMCA_CSR_MAX + 1, NULL, HSMCA_E_CSR_TOO_LARGE);
        free(big);
    }
    {
        EVP_PKEY *k = EVP_EC_gen("P-256");
        size_t l2 = 0;
        unsigned char *other = make_csr(k, "FFF2", &l2); /* a VID outside the PAI's scope */

        expect_refused(&e, other, l2, NULL, HSMCA_E_MATTER_SCOPE);
        OPENSSL_free(other);
        EVP_PKEY_free(k);
    }
    assert_int_equal(signs(), s0);
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_int_equal(cs.issued, 1);
    assert_int_equal(cs.in_flight, 0);
    assert_int_equal(cs.remaining, 99); /* refusals gave their slots back */
    /* API misuse: done never runs */
    sink_init(&s);
    assert_int_equal(hsmca_issue_submit(e.iss, e.ca, NULL, on_done, &s), HSMCA_E_INVALID_ARG);
    assert_int_equal(
        hsmca_issue_submit(NULL, e.ca,
                           &(struct hsmca_issue_req){csr, len, NULL, 0, 0, "", "", 0, NULL},
                           on_done, &s),
        HSMCA_E_INVALID_ARG);
    assert_int_equal(s.done, 0);
    /* activation bounds */
    hsmca_issue_ca_deactivate(e.ca);
    assert_int_equal(hsmca_issue_ca_activate(e.ca, W.kpai, wall_ms() - 1, 10),
                     HSMCA_E_ISSUE_WINDOW_INVALID);
    assert_int_equal(hsmca_issue_ca_activate(e.ca, W.kpai, wall_ms() + 1000, 0),
                     HSMCA_E_ISSUE_WINDOW_INVALID);
    assert_int_equal(hsmca_issue_ca_activate(e.ca, W.kpai, wall_ms() + 1000, (1ull << 40) + 1),
                     HSMCA_E_ISSUE_WINDOW_INVALID);
    assert_int_equal(hsmca_issue_ca_activate(e.ca, W.kpai2, wall_ms() + 1000, 10),
                     HSMCA_E_MATTER_KEY_MISMATCH);
    assert_int_equal(hsmca_issue_ca_activate(e.ca, W.kpai, wall_ms() + 1000, 1ull << 40), HSMCA_OK);
    assert_int_equal(hsmca_issue_ca_activate(e.ca, W.kpai, wall_ms() + 1000, 10),
                     HSMCA_E_ISSUE_CA_ACTIVE);
    OPENSSL_free(csr);
    env_close(&e);
}

/* Two engine CAs of one PAI stand for two nodes of one store: a window one opens and the other
 * joins has one count (store_windows.h), reserved in blocks; a block not signed goes back at
 * deactivation; an unknown or used-up window cannot be joined. */
static void
shared_windows_hold_one_count(void **state)
{
    struct env e;
    struct hsmca_issue_ca *node1, *node2;
    struct hsmca_window_rec w;
    struct hsmca_issue_result *r;
    struct hsmca_store *ro = NULL;
    unsigned char *csr;
    size_t len = 0;
    unsigned ok = 0, exhausted = 0, i;
    uint64_t n = 0;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    node1 = e.ca;
    node2 = make_ca(&e, "pai-1", W.pai_der, W.pai_len, 0);
    assert_int_equal(hsmca_issue_ca_activate_shared(node2, W.kpai, "win-1", 1, 0, 0),
                     HSMCA_E_NOT_FOUND);
    assert_int_equal(
        hsmca_issue_ca_activate_shared(node1, W.kpai, "win-1", 0, wall_ms() + 60000, 10), HSMCA_OK);
    assert_int_equal(hsmca_issue_ca_activate_shared(node2, W.kpai, "win-1", 1, 0, 0), HSMCA_OK);
    for (i = 0; i < 16; i++) {
        e.ca = i % 2 ? node2 : node1;
        r = issue(&e, csr, len, NULL, 0);
        if (r->rc == HSMCA_OK)
            ok++;
        else if (r->rc == HSMCA_E_ISSUE_WINDOW_EXHAUSTED)
            exhausted++;
        else
            fail_msg("DAC %u: %s", i, hsmca_err_code(r->rc));
        hsmca_issue_result_free(r);
    }
    assert_int_equal(ok, 10);
    assert_int_equal(exhausted, 6);
    sync_log(&e);
    assert_int_equal(hsmca_store_open_readonly(e.db, &ro), HSMCA_OK);
    assert_int_equal(hsmca_store_window_issued(ro, "win-1", &n), HSMCA_OK);
    assert_int_equal(n, 10);
    assert_int_equal(hsmca_store_window_get(ro, "win-1", &w), HSMCA_OK);
    assert_int_equal(w.used, 10);
    assert_int_equal(w.max_dacs, 10);
    assert_string_equal(w.ca, "pai-1");
    hsmca_issue_ca_deactivate(node1);
    hsmca_issue_ca_deactivate(node2);
    assert_int_equal(hsmca_issue_ca_activate_shared(node2, W.kpai, "win-1", 1, 0, 0),
                     HSMCA_E_ISSUE_WINDOW_EXHAUSTED);
    /* a window of 100: one DAC takes a block of 12 (an eighth); 11 go back at deactivation */
    assert_int_equal(
        hsmca_issue_ca_activate_shared(node1, W.kpai, "win-2", 0, wall_ms() + 60000, 100),
        HSMCA_OK);
    e.ca = node1;
    r = issue(&e, csr, len, NULL, 0);
    assert_int_equal(r->rc, HSMCA_OK);
    hsmca_issue_result_free(r);
    assert_int_equal(hsmca_store_window_get(ro, "win-2", &w), HSMCA_OK);
    assert_int_equal(w.used, 12);
    hsmca_issue_ca_deactivate(node1);
    assert_int_equal(hsmca_store_window_get(ro, "win-2", &w), HSMCA_OK);
    assert_int_equal(w.used, 1);
    hsmca_store_close(ro);
    hsmca_issue_ca_free(node2);
    OPENSSL_free(csr);
    env_close(&e);
}

/* ---------------------------------------------------------------- issuance */

static void
issued_dac_validates_and_request_ids_are_idempotent(void **state)
{
    struct env e;
    struct hsmca_issue_result *r, *r2;
    struct hsmca_store *ro = NULL;
    struct hsmca_cert_rec row;
    struct hsmca_matter_verdict v;
    X509 *dac = NULL;
    unsigned char *csr, *csr2;
    size_t len = 0, len2 = 0;
    unsigned long s0;
    uint64_t before;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    csr2 = fresh_csr(&len2);
    activate(&e, 60000, 10);
    s0 = signs();
    r = issue(&e, csr, len, "dev-0001", 0);
    assert_int_equal(r->rc, HSMCA_OK);
    /* one token signature per DAC (the first DAC of a PID also signs matter.c's template) */
    assert_true(signs() == s0 + 1 || signs() == s0 + 2);
    assert_false(r->replayed);
    assert_true(r->has_receipt);
    assert_non_null(r->dac_der);
    assert_true(r->sign_us > 0); /* the time the token took, for /metrics */
    assert_int_equal(r->serial_len, HSMCA_MATTER_SERIAL_LEN);
    assert_int_equal(r->pai_len, W.pai_len);
    assert_memory_equal(r->pai_der, W.pai_der, W.pai_len);
    /* the DAC validates like a commissioner would check it, against PAI + PAA */
    assert_int_equal(hsmca_matter_cert_parse(r->dac_der, r->dac_len, &dac), HSMCA_OK);
    assert_int_equal(hsmca_matter_validate(dac, W.pai, W.paa,
                                           &(struct hsmca_matter_expect){1, 1, 0xFFF1, 0x8000},
                                           time(NULL), &v),
                     HSMCA_OK);
    {
        const unsigned char *p = csr;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);

        assert_non_null(req);
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(dac), X509_REQ_get0_pubkey(req)), 1);
        X509_REQ_free(req);
    }
    X509_free(dac);
    /* the row is in the store, committed with the entry */
    assert_int_equal(hsmca_store_open_readonly(e.db, &ro), HSMCA_OK);
    memset(&row, 0, sizeof(row));
    assert_int_equal(hsmca_store_cert_by_request(ro, "pai-1", "dev-0001", &row), HSMCA_OK);
    assert_int_equal(row.der_len, r->dac_len);
    assert_memory_equal(row.der, r->dac_der, r->dac_len);
    assert_memory_equal(row.serial, r->serial, r->serial_len);
    assert_int_equal(row.vid, 0xFFF1);
    assert_int_equal(row.pid, 0x8000);
    hsmca_cert_rec_clear(&row);
    /* its entry: dac.issue with serial, DAC hash, CSR hash, VID/PID and request id */
    {
        char serial[41], want[80];

        hsmca_hex_encode(r->serial, r->serial_len, serial, sizeof(serial));
        snprintf(want, sizeof(want), "\"serial\":\"%s\"", serial);
        assert_entry(&e, r->receipt.seq, "dac.issue", "ok", want);
        assert_entry(&e, r->receipt.seq, "dac.issue", "ok", "\"request_id\":\"dev-0001\"");
        assert_entry(&e, r->receipt.seq, "dac.issue", "ok", "\"vid\":\"FFF1\"");
        assert_entry(&e, r->receipt.seq, "dac.issue", "ok", "\"pid\":\"8000\"");
        snprintf(want, sizeof(want), "\"csr_sha256\":\"%s\"", r->csr_sha256);
        assert_entry(&e, r->receipt.seq, "dac.issue", "ok", want);
        assert_detail_canonical(&e, r->receipt.seq);
    }

    /* same id, same CSR (DER or PEM): the identical DAC again, no signature, a replay entry */
    before = hsmca_audit_size(e.audit);
    s0 = signs();
    r2 = issue(&e, csr, len, "dev-0001", 0);
    assert_int_equal(r2->rc, HSMCA_OK);
    assert_true(r2->replayed);
    assert_true(r2->has_receipt);
    assert_int_equal(r2->sign_us, 0); /* nothing signed */
    assert_int_equal(r2->receipt.seq, before + 1);
    assert_entry(&e, r2->receipt.seq, "dac.replay", "ok", "\"request_id\":\"dev-0001\"");
    assert_int_equal(r2->dac_len, r->dac_len);
    assert_memory_equal(r2->dac_der, r->dac_der, r->dac_len);
    assert_memory_equal(r2->serial, r->serial, r->serial_len);
    hsmca_issue_result_free(r2);
    {
        X509_REQ *req = NULL;
        const unsigned char *p = csr;
        BIO *b = BIO_new(BIO_s_mem());
        char *pem = NULL;
        long pl;

        req = d2i_X509_REQ(NULL, &p, (long)len);
        assert_non_null(req);
        assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
        pl = BIO_get_mem_data(b, &pem);
        r2 = issue(&e, (unsigned char *)pem, (size_t)pl, "dev-0001", 0);
        assert_int_equal(r2->rc, HSMCA_OK);
        assert_true(r2->replayed);
        assert_memory_equal(r2->dac_der, r->dac_der, r->dac_len);
        hsmca_issue_result_free(r2);
        BIO_free(b);
        X509_REQ_free(req);
    }
    assert_int_equal(signs(), s0);
    /* same id, another CSR: a conflict, nothing signed */
    expect_refused(&e, csr2, len2, "dev-0001", HSMCA_E_ISSUE_REQUEST_ID_CONFLICT);
    assert_int_equal(hsmca_err_http_status(HSMCA_E_ISSUE_REQUEST_ID_CONFLICT), 409);
    assert_int_equal(signs(), s0);
    /* no id: every submit is a new DAC, and costs exactly one token signature */
    s0 = signs();
    r2 = issue(&e, csr, len, NULL, 0);
    assert_int_equal(signs(), s0 + 1);
    assert_int_equal(r2->rc, HSMCA_OK);
    assert_false(r2->replayed);
    assert_memory_not_equal(r2->serial, r->serial, r->serial_len);
    hsmca_issue_result_free(r2);
    /* a replay works after the window closed: it signs nothing */
    hsmca_issue_ca_deactivate(e.ca);
    r2 = issue(&e, csr, len, "dev-0001", 0);
    assert_int_equal(r2->rc, HSMCA_OK);
    assert_true(r2->replayed);
    hsmca_issue_result_free(r2);
    /* and after a restart (a new CA handle learns the stored request ids from the store) */
    hsmca_issue_ca_free(e.ca);
    e.ca = make_ca(&e, "pai-1", W.pai_der, W.pai_len, 0);
    r2 = issue(&e, csr, len, "dev-0001", 0);
    assert_int_equal(r2->rc, HSMCA_OK);
    assert_true(r2->replayed);
    assert_memory_equal(r2->dac_der, r->dac_der, r->dac_len);
    hsmca_issue_result_free(r2);
    expect_refused(&e, csr2, len2, "dev-0001", HSMCA_E_ISSUE_REQUEST_ID_CONFLICT);
    hsmca_issue_result_free(r);
    hsmca_store_close(ro);
    OPENSSL_free(csr);
    OPENSSL_free(csr2);
    env_close(&e);
}

static void
windows_end_by_count_and_by_time(void **state)
{
    struct env e;
    struct hsmca_issue_ca_state cs;
    struct hsmca_issue_result *r;
    unsigned char *csr;
    size_t len = 0;
    json_t *j;
    int i;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    /* count: N DACs pass, N+1 is refused */
    activate(&e, 60000, 3);
    for (i = 0; i < 3; i++) {
        r = issue(&e, csr, len, NULL, 0);
        assert_int_equal(r->rc, HSMCA_OK);
        hsmca_issue_result_free(r);
    }
    expect_refused(&e, csr, len, NULL, HSMCA_E_ISSUE_WINDOW_EXHAUSTED);
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_false(cs.active);
    assert_true(cs.keyed);
    assert_int_equal(cs.issued, 3);
    assert_int_equal(cs.remaining, 0);
    assert_int_equal(cs.total_issued, 3);
    assert_int_equal(cs.total_refused, 1);
    j = hsmca_issue_ca_state_json(e.ca, wall_ms());
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "issued")), 3);
    assert_true(json_is_false(json_object_get(j, "active")));
    json_decref(j);
    hsmca_issue_ca_deactivate(e.ca);
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_false(cs.keyed);
    /* time: issues before the end, refused after it */
    activate(&e, 700, 1000);
    r = issue(&e, csr, len, NULL, 0);
    assert_int_equal(r->rc, HSMCA_OK);
    hsmca_issue_result_free(r);
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_true(cs.active);
    assert_int_equal(cs.remaining, 999);
    usleep(800 * 1000);
    expect_refused(&e, csr, len, NULL, HSMCA_E_ISSUE_WINDOW_EXPIRED);
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_false(cs.active);
    hsmca_issue_ca_deactivate(e.ca);
    expect_refused(&e, csr, len, NULL, HSMCA_E_ISSUE_CA_INACTIVE);
    OPENSSL_free(csr);
    env_close(&e);
}

static void
quotas_bound_each_pai(void **state)
{
    struct env e;
    struct hsmca_issue_quotas *q = NULL;
    struct hsmca_issue_ca_state cs;
    struct hsmca_issue_result *r;
    const char *qj = "{\"pai-1\": {\"per_minute\": 2, \"per_day\": 100},"
                     " \"default\": {\"per_day\": 3}}";
    unsigned char *csr;
    size_t len = 0;
    int i;

    (void)state;
    assert_int_equal(hsmca_issue_quotas_parse(qj, strlen(qj), &q), HSMCA_OK);
    env_open(&e, q, 0);
    hsmca_issue_quotas_free(q); /* the engine keeps its own copy */
    csr = fresh_csr(&len);
    activate(&e, 60000, 1000);
    for (i = 0; i < 2; i++) {
        r = issue(&e, csr, len, NULL, 0);
        assert_int_equal(r->rc, HSMCA_OK);
        hsmca_issue_result_free(r);
    }
    expect_refused(&e, csr, len, NULL, HSMCA_E_ISSUE_QUOTA_MINUTE);
    assert_int_equal(hsmca_err_http_status(HSMCA_E_ISSUE_QUOTA_MINUTE), 429);
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_int_equal(cs.per_minute, 2);
    assert_int_equal(cs.minute_count, 2);
    assert_int_equal(cs.day_count, 2);
    assert_int_equal(cs.remaining, 998); /* the refused request gave its window slot back */
    /* the per-day default, and the counters survive a restart (seeded from the store) */
    {
        struct hsmca_issue_ca *other = NULL;
        struct hsmca_issue_ca *keep = e.ca;

        hsmca_issue_ca_deactivate(keep);
        e.ca =
            make_ca(&e, "pai-1", W.pai_der, W.pai_len, 0); /* a second handle: as after restart */
        hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
        assert_int_equal(cs.day_count, 2);
        assert_int_equal(cs.minute_count, 2);
        activate(&e, 60000, 1000);
        expect_refused(&e, csr, len, NULL, HSMCA_E_ISSUE_QUOTA_MINUTE);
        hsmca_issue_ca_free(e.ca);
        e.ca = keep;
        other = make_ca(&e, "pai-2", W.pai2_der, W.pai2_len, 1);
        hsmca_issue_ca_state(other, wall_ms(), &cs);
        assert_int_equal(cs.per_minute, 0);
        assert_int_equal(cs.per_day, 3);
        assert_int_equal(hsmca_issue_ca_activate(other, W.kpai2, wall_ms() + 60000, 100), HSMCA_OK);
        for (i = 0; i < 4; i++) {
            struct hsmca_issue_req rq = {csr, len, NULL, 1, 0x8001, "op", "operator", 0, NULL};
            struct sink s;

            sink_init(&s);
            assert_int_equal(hsmca_issue_submit(e.iss, other, &rq, on_done, &s), HSMCA_OK);
            sink_wait(&s);
            assert_int_equal(s.res->rc, i < 3 ? HSMCA_OK : HSMCA_E_ISSUE_QUOTA_DAY);
            hsmca_issue_result_free(s.res);
        }
        hsmca_issue_ca_free(other);
    }
    OPENSSL_free(csr);
    env_close(&e);
}

/* ---------------------------------------------------------------- concurrency */

struct spinner {
    struct env *e;
    const unsigned char *csr;
    size_t len;
    int n; /* requests to make; 0 = until refused */
    int ok, refused;
    enum hsmca_err last;
    unsigned char (*serials)[HSMCA_MATTER_SERIAL_LEN];
};

static void *
spin(void *arg)
{
    struct spinner *sp = arg;
    int k;

    for (k = 0; sp->n == 0 || k < sp->n; k++) {
        struct hsmca_issue_result *r = issue(sp->e, sp->csr, sp->len, NULL, 0);

        sp->last = r->rc;
        if (r->rc == HSMCA_OK) {
            if (sp->serials != NULL)
                memcpy(sp->serials[sp->ok], r->serial, HSMCA_MATTER_SERIAL_LEN);
            sp->ok++;
        } else {
            sp->refused++;
        }
        hsmca_issue_result_free(r);
        if (sp->n == 0 && sp->last != HSMCA_OK)
            break;
    }
    return NULL;
}

static void
deactivate_drains_signers(void **state)
{
    struct env e;
    struct spinner sp[2];
    pthread_t th[2];
    unsigned long after;
    unsigned char *csr;
    size_t len = 0;
    int i;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    activate(&e, 60000, 1000000);
    for (i = 0; i < 2; i++) {
        sp[i] = (struct spinner){&e, csr, len, 0, 0, 0, HSMCA_OK, NULL};
        assert_int_equal(pthread_create(&th[i], NULL, spin, &sp[i]), 0);
    }
    while (sp[0].ok < 5 || sp[1].ok < 5)
        usleep(1000);
    hsmca_issue_ca_deactivate(e.ca);
    /* from here the key is not used: the caller could log out now */
    after = signs();
    for (i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(sp[i].last, HSMCA_E_ISSUE_CA_INACTIVE);
    }
    usleep(20 * 1000);
    assert_int_equal(signs(), after);
    {
        struct hsmca_issue_ca_state cs;

        hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
        assert_int_equal(cs.in_flight, 0);
        assert_int_equal(cs.issued, (uint64_t)(sp[0].ok + sp[1].ok));
    }
    OPENSSL_free(csr);
    env_close(&e);
}

/*
 * DACs are signed on the activated key handle's own sessions, with one session copy of the key
 * made for it (the template path's signer, hsmca_key_sign_digest), and the copy goes with the
 * handle after deactivation. A fresh handle of the PAI key, so the count is this test's own.
 */
static void
dacs_sign_with_the_handles_session_copy(void **state)
{
    struct env e;
    struct hsmca_key *k = NULL;
    struct hsmca_issue_result *r;
    unsigned long copies, destroys, before;
    unsigned char *csr;
    size_t len = 0;
    int i;

    (void)state;
    env_open(&e, NULL, 0);
    assert_int_equal(hsmca_token_find_key(W.tpai, "pkcs11:object=pai-key", &k), HSMCA_OK);
    copies = W.count("C_CopyObject");
    destroys = W.count("C_DestroyObject");
    assert_int_equal(hsmca_issue_ca_activate(e.ca, k, wall_ms() + 60000, 100), HSMCA_OK);
    /* the issuer's check signature (libp11) and the signer's test signature (the token object) */
    assert_int_equal(W.count("C_CopyObject"), copies);
    before = signs();
    for (i = 0; i < 4; i++) {
        csr = fresh_csr(&len);
        r = issue(&e, csr, len, NULL, 0);
        assert_int_equal(r->rc, HSMCA_OK);
        assert_non_null(r->dac_der);
        hsmca_issue_result_free(r);
        OPENSSL_free(csr);
    }
    assert_int_equal(signs(), before + 4);                 /* one token signature per DAC */
    assert_int_equal(W.count("C_CopyObject"), copies + 1); /* made at the first DAC, once */
    hsmca_issue_ca_deactivate(e.ca);
    hsmca_key_free(k);
    assert_int_equal(W.count("C_DestroyObject"), destroys + 1);
    env_close(&e);
}

static int
cmp_serial(const void *a, const void *b)
{
    return memcmp(a, b, HSMCA_MATTER_SERIAL_LEN);
}

static void
four_threads_issue_at_once(void **state)
{
    struct env e;
    struct spinner sp[4];
    pthread_t th[4];
    unsigned char serials[4 * 25][HSMCA_MATTER_SERIAL_LEN];
    struct hsmca_issue_ca_state cs;
    unsigned char *csr;
    size_t len = 0;
    int i;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    activate(&e, 60000, 90); /* fewer slots than requests: exactly 90 may pass */
    for (i = 0; i < 4; i++) {
        sp[i] = (struct spinner){&e, csr, len, 25, 0, 0, HSMCA_OK, &serials[i * 25]};
        assert_int_equal(pthread_create(&th[i], NULL, spin, &sp[i]), 0);
    }
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    {
        int ok = 0, refused = 0, k = 0, j;
        unsigned char all[100][HSMCA_MATTER_SERIAL_LEN];

        for (i = 0; i < 4; i++) {
            ok += sp[i].ok;
            refused += sp[i].refused;
            for (j = 0; j < sp[i].ok; j++)
                memcpy(all[k++], serials[i * 25 + j], HSMCA_MATTER_SERIAL_LEN);
        }
        assert_int_equal(ok, 90);
        assert_int_equal(refused, 10);
        qsort(all, (size_t)k, HSMCA_MATTER_SERIAL_LEN, cmp_serial);
        for (j = 1; j < k; j++)
            assert_memory_not_equal(all[j - 1], all[j], HSMCA_MATTER_SERIAL_LEN);
    }
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_int_equal(cs.issued, 90);
    assert_int_equal(cs.in_flight, 0);
    assert_int_equal(cs.remaining, 0);
    OPENSSL_free(csr);
    env_close(&e);
}

/* ---------------------------------------------------------------- dry run, batch, failures */

static void
dry_run_signs_and_stores_nothing(void **state)
{
    struct env e;
    struct hsmca_issue_result *r;
    struct hsmca_store *ro = NULL;
    struct hsmca_issue_ca_state cs;
    struct hsmca_cert_rec row;
    unsigned char *csr, *bad;
    size_t len = 0, blen = 0;
    unsigned long s0;
    uint64_t before;
    json_t *dac;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    {
        EVP_PKEY *k = EVP_EC_gen("P-256");

        bad = make_csr(k, "FFF2", &blen);
        EVP_PKEY_free(k);
    }
    activate(&e, 60000, 10);
    s0 = signs();
    before = hsmca_audit_size(e.audit);
    r = issue(&e, csr, len, "dry-1", 1);
    assert_int_equal(r->rc, HSMCA_OK);
    assert_true(r->dry_run);
    assert_true(r->has_receipt); /* audited as dac.dry_run */
    assert_int_equal(hsmca_audit_size(e.audit), before + 1);
    assert_entry(&e, r->receipt.seq, "dac.dry_run", "ok", "\"ok\":true");
    assert_null(r->dac_der);
    assert_non_null(r->doc);
    assert_true(json_is_true(json_object_get(r->doc, "ok")));
    dac = json_object_get(r->doc, "dac");
    assert_string_equal(json_string_value(json_object_get(dac, "vid")), "FFF1");
    assert_string_equal(json_string_value(json_object_get(dac, "pid")), "8000");
    assert_non_null(json_object_get(dac, "extensions"));
    assert_non_null(json_object_get(dac, "not_after"));
    hsmca_issue_result_free(r);
    /* every broken rule is listed */
    r = issue(&e, bad, blen, NULL, 1);
    assert_int_equal(r->rc, HSMCA_OK);
    assert_true(json_is_false(json_object_get(r->doc, "ok")));
    assert_true(json_array_size(json_object_get(r->doc, "problems")) >= 1);
    hsmca_issue_result_free(r);
    r = issue(&e, (const unsigned char *)"junk", 4, NULL, 1);
    assert_int_equal(r->rc, HSMCA_OK);
    assert_true(json_is_false(json_object_get(r->doc, "ok")));
    hsmca_issue_result_free(r);
    /* no signature, no row, no slot */
    assert_int_equal(signs(), s0);
    assert_int_equal(hsmca_store_open_readonly(e.db, &ro), HSMCA_OK);
    memset(&row, 0, sizeof(row));
    assert_int_equal(hsmca_store_cert_by_request(ro, "pai-1", "dry-1", &row), HSMCA_E_NOT_FOUND);
    hsmca_store_close(ro);
    hsmca_issue_ca_state(e.ca, wall_ms(), &cs);
    assert_int_equal(cs.remaining, 10);
    assert_int_equal(cs.total_dry_runs, 3);
    /* the request id of a dry run is not taken: a real request may use it */
    r = issue(&e, csr, len, "dry-1", 0);
    assert_int_equal(r->rc, HSMCA_OK);
    assert_false(r->replayed);
    hsmca_issue_result_free(r);
    OPENSSL_free(csr);
    OPENSSL_free(bad);
    env_close(&e);
}

static void
batches_fail_item_by_item(void **state)
{
    struct env e;
    struct hsmca_issue_req *items;
    unsigned char *csrs[20];
    size_t lens[20];
    char ids[20][16];
    struct sink s;
    struct hsmca_issue_batch_result *br;
    struct hsmca_matter_verdict v;
    uint64_t before;
    size_t i, n = 20;
    int won8;

    (void)state;
    env_open(&e, NULL, 0);
    items = calloc(HSMCA_ISSUE_BATCH_MAX + 1, sizeof(*items));
    assert_non_null(items);
    for (i = 0; i < n; i++) {
        csrs[i] = fresh_csr(&lens[i]);
        snprintf(ids[i], sizeof(ids[i]), "b-%02zu", i);
        items[i] =
            (struct hsmca_issue_req){csrs[i], lens[i], ids[i], 0, 0, "op", "operator", 0, NULL};
    }
    items[3].csr_len -= 1;        /* malformed CSR */
    items[7].request_id = "b 7";  /* invalid request id */
    items[9].request_id = ids[8]; /* same id as item 8 with another CSR */
    /* refused before anything starts: done never runs */
    sink_init(&s);
    assert_int_equal(hsmca_issue_batch_submit(e.iss, e.ca, items, 0, on_batch, &s),
                     HSMCA_E_ISSUE_BATCH_MALFORMED);
    assert_int_equal(
        hsmca_issue_batch_submit(e.iss, e.ca, items, HSMCA_ISSUE_BATCH_MAX + 1, on_batch, &s),
        HSMCA_E_ISSUE_BATCH_TOO_LARGE);
    assert_int_equal(hsmca_err_http_status(HSMCA_E_ISSUE_BATCH_TOO_LARGE), 413);
    assert_int_equal(s.done, 0);
    activate(&e, 60000, 1000);
    before = hsmca_audit_size(e.audit);
    assert_int_equal(hsmca_issue_batch_submit(e.iss, e.ca, items, n, on_batch, &s), HSMCA_OK);
    sink_wait(&s);
    br = s.br;
    assert_int_equal(br->n, n);
    assert_int_equal(br->failed, 3);
    assert_int_equal(br->issued, 17);
    assert_int_equal(br->replayed, 0);
    assert_int_equal(br->items[3].rc, HSMCA_E_CSR_MALFORMED);
    assert_int_equal(br->items[7].rc, HSMCA_E_ISSUE_REQUEST_ID_INVALID);
    /* items 8 and 9 race for one id: one is issued, the other is in flight or a conflict */
    assert_true((br->items[8].rc == HSMCA_OK) != (br->items[9].rc == HSMCA_OK));
    assert_true(br->items[8].rc == HSMCA_OK ||
                br->items[8].rc == HSMCA_E_ISSUE_REQUEST_ID_IN_FLIGHT ||
                br->items[8].rc == HSMCA_E_ISSUE_REQUEST_ID_CONFLICT);
    assert_true(br->items[9].rc == HSMCA_OK ||
                br->items[9].rc == HSMCA_E_ISSUE_REQUEST_ID_IN_FLIGHT ||
                br->items[9].rc == HSMCA_E_ISSUE_REQUEST_ID_CONFLICT);
    for (i = 0; i < n; i++) {
        X509 *dac = NULL;

        assert_int_equal(br->items[i].index, i);
        assert_true(br->items[i].has_receipt); /* every item, refused or not, has its entry */
        if (br->items[i].rc != HSMCA_OK) {
            assert_null(br->items[i].dac_der);
            continue;
        }
        assert_int_equal(hsmca_matter_cert_parse(br->items[i].dac_der, br->items[i].dac_len, &dac),
                         HSMCA_OK);
        assert_int_equal(hsmca_matter_validate(dac, W.pai, W.paa, NULL, time(NULL), &v), HSMCA_OK);
        X509_free(dac);
    }
    assert_int_equal(hsmca_audit_size(e.audit), before + n);
    won8 = br->items[8].rc == HSMCA_OK;
    hsmca_issue_batch_result_free(br);
    /* the same batch again: replays of the good items, the same refusals for the bad ones */
    items[9].request_id = ids[9];
    sink_init(&s);
    assert_int_equal(hsmca_issue_batch_submit(e.iss, e.ca, items, n, on_batch, &s), HSMCA_OK);
    sink_wait(&s);
    br = s.br;
    assert_int_equal(br->replayed, 16 + (size_t)won8);
    assert_int_equal(br->items[9].rc, HSMCA_OK);
    assert_false(br->items[9].replayed);
    assert_int_equal(br->items[3].rc, HSMCA_E_CSR_MALFORMED);
    assert_int_equal(br->items[7].rc, HSMCA_E_ISSUE_REQUEST_ID_INVALID);
    hsmca_issue_batch_result_free(br);
    for (i = 0; i < n; i++)
        OPENSSL_free(csrs[i]);
    free(items);
    env_close(&e);
}

static void
failed_write_releases_nothing(void **state)
{
    struct env e;
    struct hsmca_issue_ca *ghost;
    struct hsmca_issue_ca_state cs;
    struct hsmca_issue_req rq;
    struct sink s;
    unsigned char *csr;
    size_t len = 0;

    (void)state;
    env_open(&e, NULL, 0);
    csr = fresh_csr(&len);
    /* a CA missing from the store: the row's foreign key fails inside the audit transaction */
    ghost = make_ca(&e, "pai-ghost", W.pai_der, W.pai_len, 0);
    assert_int_equal(hsmca_issue_ca_activate(ghost, W.kpai, wall_ms() + 60000, 5), HSMCA_OK);
    rq = (struct hsmca_issue_req){csr, len, "g-1", 0, 0, "op", "operator", 0, NULL};
    sink_init(&s);
    assert_int_equal(hsmca_issue_submit(e.iss, ghost, &rq, on_done, &s), HSMCA_OK);
    sink_wait(&s);
    assert_int_equal(s.res->rc, HSMCA_E_STORE_CONSTRAINT);
    assert_null(s.res->dac_der);
    assert_false(s.res->has_receipt);
    hsmca_issue_result_free(s.res);
    hsmca_issue_ca_state(ghost, wall_ms(), &cs);
    assert_int_equal(cs.issued, 0);
    assert_int_equal(cs.in_flight, 0);
    assert_int_equal(cs.remaining, 5); /* the slot came back */
    assert_int_equal(cs.minute_count, 0);
    /* and the request id is free again */
    sink_init(&s);
    assert_int_equal(hsmca_issue_submit(e.iss, ghost, &rq, on_done, &s), HSMCA_OK);
    sink_wait(&s);
    assert_int_equal(s.res->rc, HSMCA_E_STORE_CONSTRAINT);
    hsmca_issue_result_free(s.res);
    hsmca_issue_ca_free(ghost);
    OPENSSL_free(csr);
    env_close(&e);
}

static void
audit_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    int *n = arg;

    if (rc == HSMCA_OK && receipt != NULL)
        (*n)++;
}

static void
refusal_floods_are_rate_limited(void **state)
{
    struct env e;
    struct hsmca_issue_result *r;
    uint64_t before;
    int i, audited = 0, receipts = 0;

    (void)state;
    env_open(&e, NULL, 3);
    before = hsmca_audit_size(e.audit);
    for (i = 0; i < 10; i++) {
        r = issue(&e, (const unsigned char *)"junk", 4, NULL, 0);
        assert_int_equal(r->rc, HSMCA_E_CSR_MALFORMED);
        audited += r->has_receipt;
        hsmca_issue_result_free(r);
    }
    assert_int_equal(audited, 3); /* the first 3 in full, the rest counted */
    /* pre-engine refusals share the limiter */
    hsmca_issue_refuse(e.iss, "pai-1", "operator-1", "operator", HSMCA_E_ISSUE_BATCH_MALFORMED, "x",
                       1, audit_done, &receipts);
    assert_int_equal(receipts, 0);
    hsmca_issue_refuse(e.iss, "pai-1", "operator-2", "operator", HSMCA_E_ISSUE_BATCH_MALFORMED, "x",
                       1, NULL, NULL);
    hsmca_issue_ca_free(e.ca);
    e.ca = NULL;
    sync_log(&e);
    assert_int_equal(hsmca_audit_size(e.audit), before + 4);
    assert_entry(&e, before + 1, "dac.refuse", "refused", "\"code\":\"csr-malformed\"");
    assert_entry(&e, before + 4, "dac.refuse", "refused", "\"code\":\"batch-malformed\"");
    /* the engine writes one summary entry for the 8 counted refusals when it stops (or when
     * hsmca_issuer_flush_refusals runs after the minute ended) */
    hsmca_issuer_flush_refusals(e.iss); /* same minute: nothing yet */
    hsmca_issuer_free(e.iss);
    e.iss = NULL;
    sync_log(&e);
    assert_int_equal(hsmca_audit_size(e.audit), before + 5);
    assert_entry(&e, before + 5, "dac.refuse.summary", "refused", "\"suppressed\":8");
    env_close(&e);
}

/* ---------------------------------------------------------------- throughput (printed) */

static double
mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the whole process (every thread, SoftHSM included): a load-independent cost. */
static double
cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct floor_arg {
    unsigned char **der;
    size_t *len;
    size_t n;
    size_t *next;
};

/* The crypto floor of tools/hsmca-bench: the CSR check + one token signature of a DAC-sized TBS. */
static void *
floor_run(void *arg)
{
    struct floor_arg *a = arg;
    unsigned char tbs[420], sig[80];

    memset(tbs, 0x5a, sizeof(tbs));
    for (;;) {
        size_t i = __atomic_fetch_add(a->next, 1, __ATOMIC_RELAXED), sl = sizeof(sig);
        struct hsmca_csr *csr = NULL;
        EVP_MD_CTX *md;

        if (i >= a->n)
            break;
        /* the service's own CSR check, as tools/hsmca-bench floor does */
        assert_int_equal(hsmca_csr_parse(a->der[i], a->len[i], &csr), HSMCA_OK);
        hsmca_csr_free(csr);
        md = EVP_MD_CTX_new();
        assert_int_equal(
            EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, hsmca_key_private(W.kpai)), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &sl, tbs, sizeof(tbs)), 1);
        EVP_MD_CTX_free(md);
    }
    return NULL;
}

static void
throughput_against_the_crypto_floor(void **state)
{
    enum { N = 1000 };
    struct env e;
    struct hsmca_issue_req *items = calloc(N, sizeof(*items));
    unsigned char **der = calloc(N, sizeof(*der));
    size_t *len = calloc(N, sizeof(*len)), next = 0, i;
    char(*ids)[16] = calloc(N, 16);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t th[64];
    struct floor_arg fa;
    struct sink s;
    double t0, c0, floor_rate, batch_rate, floor_cpu, batch_cpu;
    int k, nth = cpus > 64 ? 64 : (int)cpus;

    (void)state;
    assert_non_null(items);
    assert_non_null(der);
    assert_non_null(len);
    assert_non_null(ids);
    for (i = 0; i < N; i++) {
        der[i] = fresh_csr(&len[i]);
        snprintf(ids[i], 16, "t-%04zu", i);
        items[i] =
            (struct hsmca_issue_req){der[i], len[i], ids[i], 0, 0, "op", "operator", 0, NULL};
    }
    fa = (struct floor_arg){der, len, N, &next};
    t0 = mono_s();
    c0 = cpu_s();
    for (k = 0; k < nth; k++)
        assert_int_equal(pthread_create(&th[k], NULL, floor_run, &fa), 0);
    for (k = 0; k < nth; k++)
        pthread_join(th[k], NULL);
    floor_rate = N / (mono_s() - t0);
    floor_cpu = (cpu_s() - c0) / N * 1e6;

    env_threads = 0; /* the default: one per core besides the caller */
    env_open(&e, NULL, 0);
    env_threads = 3;
    activate(&e, 600000, 10 * N);
    sink_init(&s);
    t0 = mono_s();
    c0 = cpu_s();
    assert_int_equal(hsmca_issue_batch_submit(e.iss, e.ca, items, N, on_batch, &s), HSMCA_OK);
    sink_wait(&s);
    batch_rate = N / (mono_s() - t0);
    batch_cpu = (cpu_s() - c0) / N * 1e6;
    assert_int_equal(s.br->issued, N);
    {
        struct hsmca_audit_stats as;

        hsmca_audit_stats(e.audit, &as);
        printf("audit: %llu entries in %llu group commits; batch sizes 1:%llu 2-3:%llu 4-7:%llu "
               "8-15:%llu 16-63:%llu 64-255:%llu 256-1023:%llu 1024+:%llu\n",
               (unsigned long long)as.entries, (unsigned long long)as.commits,
               (unsigned long long)as.batch_hist[0], (unsigned long long)as.batch_hist[1],
               (unsigned long long)as.batch_hist[2], (unsigned long long)as.batch_hist[3],
               (unsigned long long)as.batch_hist[4], (unsigned long long)as.batch_hist[5],
               (unsigned long long)as.batch_hist[6], (unsigned long long)as.batch_hist[7]);
    }
    hsmca_issue_batch_result_free(s.br);
    printf("floor (CSR check + token sign, %d threads): %.0f/s, %.0f us CPU per DAC; engine "
           "batch of %d (check, build, sign, store, durable audit): %.0f/s, %.0f us CPU per DAC; "
           "rate %.2fx floor, CPU %.2fx floor\n",
           nth, floor_rate, floor_cpu, N, batch_rate, batch_cpu, batch_rate / floor_rate,
           floor_cpu / batch_cpu);
    env_close(&e);
    for (i = 0; i < N; i++)
        OPENSSL_free(der[i]);
    free(ids);
    free(len);
    free(der);
    free(items);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quota_files_are_checked_strictly),
        cmocka_unit_test(inactive_ca_and_bad_requests_are_refused_and_audited),
        cmocka_unit_test(issued_dac_validates_and_request_ids_are_idempotent),
        cmocka_unit_test(windows_end_by_count_and_by_time),
        cmocka_unit_test(shared_windows_hold_one_count),
        cmocka_unit_test(quotas_bound_each_pai),
        cmocka_unit_test(deactivate_drains_signers),
        cmocka_unit_test(dacs_sign_with_the_handles_session_copy),
        cmocka_unit_test(four_threads_issue_at_once),
        cmocka_unit_test(dry_run_signs_and_stores_nothing),
        cmocka_unit_test(batches_fail_item_by_item),
        cmocka_unit_test(failed_write_releases_nothing),
        cmocka_unit_test(refusal_floods_are_rate_limited),
        cmocka_unit_test(throughput_against_the_crypto_floor),
    };

    return cmocka_run_group_tests_name("issue", tests, world_setup, world_teardown);
}
