/* SPDX-License-Identifier: Apache-2.0
 *
 * test_audit.c -- the audit log against a real SoftHSM audit token and a real store.
 * Hostile events first; then the promises: receipts and exact lines, apply and entry together or
 * not at all, group commit under 8 concurrent writers (fsyncs counted), the clock stepping back,
 * checkpoints that openssl verifies, heartbeats, the start-up self-check (a tampered line, a
 * restored older database, a missing anchor), a SIGKILLed writer, extracts and their verifier
 * (every kind of tampering named), quorum re-checks, and verify.sh with no hsmca on PATH.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "hsmca/audit.h"
#include "hsmca/store_audit.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "fixture.h"

#define SO_PIN "so-secret-1"
#define USER_PIN "audit-pin-1234"

struct ctx {
    struct fx_hsm hsm;
    char dir[512];
    char db[600];
    struct hsmca_p11 *p11;
    struct hsmca_token *tok;
    struct hsmca_key *key;
    struct hsmca_store *st;
    struct hsmca_audit *a;
    int64_t fake_ms;    /* 0 = real clock */
    unsigned linger_us; /* 0 = the default */
    const char *module; /* NULL = SoftHSM (fx_module) */
};

static int64_t
fake_clock(void *arg)
{
    struct ctx *c = arg;
    struct timespec ts;

    if (c->fake_ms != 0)
        return c->fake_ms;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
tokens_up(struct ctx *c, int generate)
{
    struct hsmca_secret pin = fx_secret(USER_PIN);
    enum hsmca_err rc;

    if (hsmca_p11_open(c->module != NULL ? c->module : fx_module(), &c->p11) != HSMCA_OK ||
        hsmca_token_open(c->p11, "pkcs11:token=hsmca-audit", &c->tok) != HSMCA_OK) {
        hsmca_secret_clear(&pin);
        return -1;
    }
    rc = hsmca_token_login(c->tok, &pin);
    hsmca_secret_clear(&pin);
    if (rc != HSMCA_OK)
        return -1;
    if (generate)
        rc = hsmca_token_generate_key(c->tok, "audit-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &c->key);
    else
        rc = hsmca_token_find_key(c->tok, "pkcs11:object=audit-key", &c->key);
    return rc == HSMCA_OK ? 0 : -1;
}

static void
tokens_down(struct ctx *c)
{
    hsmca_key_free(c->key);
    c->key = NULL;
    if (c->tok != NULL) {
        assert_int_equal(hsmca_token_logout(c->tok), HSMCA_OK);
        assert_int_equal(hsmca_token_free(c->tok), HSMCA_OK);
        c->tok = NULL;
    }
    if (hsmca_p11_free(c->p11) != HSMCA_OK)
        abort();
    c->p11 = NULL;
}

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));

    if (c == NULL || hsmca_secure_heap_init(0) != HSMCA_OK)
        return -1;
    if (fx_hsm_setup(&c->hsm) != 0 || fx_hsm_add_token(&c->hsm, "hsmca-audit", SO_PIN, USER_PIN))
        return -1;
    if (tokens_up(c, 1) != 0)
        return -1;
    if (fx_tmpdir("audit", c->dir, sizeof(c->dir)) != 0)
        return -1;
    snprintf(c->db, sizeof(c->db), "%s/hsmca.db", c->dir);
    if (hsmca_store_open(c->db, &c->st) != HSMCA_OK)
        return -1;
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    struct ctx *c = *state;

    if (c->a != NULL)
        assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    hsmca_store_close(c->st);
    tokens_down(c);
    fx_hsm_teardown(&c->hsm);
    fx_rmtree(c->dir);
    free(c);
    return 0;
}

static enum hsmca_err
open_log(struct ctx *c, uint64_t cp_entries, uint64_t cp_ms, char *why, size_t why_len)
{
    struct hsmca_audit_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.store = c->st;
    cfg.token = c->tok;
    cfg.key = c->key;
    cfg.origin = "hsmca/test";
    cfg.checkpoint_entries = cp_entries;
    cfg.checkpoint_ms = cp_ms;
    cfg.genesis_detail_json = "{\"ceremony\":\"test-1\",\"tokens\":[\"hsmca-audit\"]}";
    cfg.clock_ms = fake_clock;
    cfg.clock_arg = c;
    cfg.linger_us = c->linger_us;
    return hsmca_audit_open(&cfg, &c->a, why, why_len);
}

static void
open_ok(struct ctx *c, uint64_t cp_entries, uint64_t cp_ms)
{
    char why[512] = "";
    enum hsmca_err rc = open_log(c, cp_entries, cp_ms, why, sizeof(why));

    if (rc != HSMCA_OK)
        fail_msg("open: %s: %s", hsmca_err_code(rc), why);
}

static void
ev_init(struct hsmca_audit_event *ev, const char *action, const char *detail)
{
    memset(ev, 0, sizeof(*ev));
    ev->actor = "op-1";
    ev->role = "operator";
    ev->action = action;
    ev->target = "ca/pai-8000";
    ev->outcome = "ok";
    ev->detail_json = detail;
    ev->kid = "";
}

static void
append_n(struct hsmca_audit *a, int n)
{
    struct hsmca_audit_event ev;
    int i;

    ev_init(&ev, "dac.issue", "{\"serial\":\"01ab\",\"csr_sha256\":\"00\"}");
    for (i = 0; i < n; i++)
        assert_int_equal(hsmca_audit_append(a, &ev, NULL, NULL, NULL), HSMCA_OK);
}

/* Check the stored chain 1..size: gap-free seqs, prev links, stored hashes. */
struct walk {
    uint64_t expect;
    unsigned char prev[32];
    int bad;
    uint64_t step_backs;
    char last_time[25];
};

static enum hsmca_err
walk_fn(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    struct walk *w = arg;
    struct hsmca_audit_line l;
    unsigned char h[32];

    SHA256((const unsigned char *)line, len, h);
    if (seq != w->expect || memcmp(h, hash, 32) != 0 ||
        hsmca_audit_line_parse(line, len, &l, NULL) != HSMCA_OK || l.seq != seq ||
        memcmp(l.prev, w->prev, 32) != 0 || memcmp(l.time, w->last_time, 24) < 0) {
        w->bad = 1;
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (l.action_len == 15 && memcmp(l.action, "clock.step_back", 15) == 0)
        w->step_backs++;
    memcpy(w->last_time, l.time, 24);
    memcpy(w->prev, h, 32);
    w->expect++;
    return HSMCA_OK;
}

static uint64_t
walk_chain(struct hsmca_store *st, struct walk *w)
{
    memset(w, 0, sizeof(*w));
    w->expect = 1;
    assert_int_equal(hsmca_store_audit_scan(st, 1, INT64_MAX, walk_fn, w), HSMCA_OK);
    assert_false(w->bad);
    return w->expect - 1;
}

/* ---- hostile events ---- */

static void
events_refused(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    char big[HSMCA_AUDIT_DETAIL_MAX + 64], field[HSMCA_AUDIT_FIELD_MAX + 2];
    uint64_t size;

    open_ok(c, 0, 0);
    size = hsmca_audit_size(c->a);
    assert_int_equal(size, 1);
    ev_init(&ev, "dac.issue", NULL);
    ev.outcome = "maybe";
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    ev_init(&ev, "", NULL);
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    ev_init(&ev, "dac.issue", "[1,2]");
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    ev_init(&ev, "dac.issue", "{\"a\":1,\"a\":2}");
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    ev_init(&ev, "dac.issue", "{\"a\":1} trailing");
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    ev_init(&ev, "dac.issue", NULL);
    ev.actor = "bad\xff\xfeutf8";
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    /* field length at N and N+1 */
    memset(field, 'a', sizeof(field));
    field[HSMCA_AUDIT_FIELD_MAX + 1] = '\0';
    ev_init(&ev, "dac.issue", NULL);
    ev.target = field;
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    field[HSMCA_AUDIT_FIELD_MAX] = '\0';
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_OK);
    /* detail length at N+1 */
    memset(big, 'x', sizeof(big));
    memcpy(big, "{\"x\":\"", 6);
    memcpy(big + HSMCA_AUDIT_DETAIL_MAX - 1, "\"}", 3);
    ev_init(&ev, "dac.issue", big);
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_TOO_LARGE);
    memcpy(big + HSMCA_AUDIT_DETAIL_MAX - 2, "\"}", 3);
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_OK);
    /* an intent cannot close an intent; closing an unknown intent fails that item only */
    ev_init(&ev, "key.generate", NULL);
    ev.outcome = "intent";
    ev.closes_intent = 1;
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_AUDIT_EVENT_INVALID);
    ev.outcome = "ok";
    ev.closes_intent = 999;
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_audit_size(c->a), 3);
    assert_int_equal(hsmca_audit_submit(c->a, &ev, NULL, NULL, NULL, NULL), HSMCA_E_INVALID_ARG);
}

/* ---- the promises ---- */

static enum hsmca_err
apply_meta(struct hsmca_store *st, void *arg)
{
    return hsmca_store_meta_set(st, "test.key", (const char *)arg);
}

static enum hsmca_err
apply_meta_then_fail(struct hsmca_store *st, void *arg)
{
    enum hsmca_err rc = hsmca_store_meta_set(st, "test.key", (const char *)arg);

    return rc == HSMCA_OK ? HSMCA_E_STORE_CONSTRAINT : rc;
}

static void
append_receipts_exact_lines(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    unsigned char h[32], sh[32];
    char *line = NULL, *v = NULL;
    size_t len = 0;
    struct walk w;

    open_ok(c, 0, 0);
    ev_init(&ev, "dac.issue", "{\"z\":1,\"a\":{\"y\":\"\\u00e9/\",\"b\":[true,null,1.5]}}");
    assert_int_equal(hsmca_audit_append(c->a, &ev, apply_meta, "v1", &r), HSMCA_OK);
    assert_int_equal(r.seq, 2);
    assert_int_equal(hsmca_store_audit_get(c->st, 2, &line, &len, sh), HSMCA_OK);
    SHA256((const unsigned char *)line, len, h);
    assert_memory_equal(h, r.entry_hash, 32);
    assert_memory_equal(sh, r.entry_hash, 32);
    /* compact, sorted keys at every level, fixed top-level order */
    assert_non_null(strstr(line, "{\"action\":\"dac.issue\",\"actor\":\"op-1\",\"detail\":{\"a\":{"
                                 "\"b\":[true,null,1.5],\"y\":\"\xc3\xa9/\"},\"z\":1},\"kid\":\"\","
                                 "\"outcome\":\"ok\",\"prev\":\""));
    assert_non_null(strstr(line, "\",\"role\":\"operator\",\"seq\":2,\"target\":\"ca/pai-8000\","
                                 "\"time\":\""));
    assert_int_equal(line[len - 1], '}');
    free(line);
    assert_int_equal(hsmca_store_meta_get(c->st, "test.key", &v), HSMCA_OK);
    assert_string_equal(v, "v1");
    free(v);
    /* genesis: prev zeros, log_id, audit key hash */
    assert_int_equal(hsmca_store_audit_get(c->st, 1, &line, &len, sh), HSMCA_OK);
    assert_non_null(strstr(line, "\"action\":\"log.genesis\""));
    assert_non_null(strstr(line, "\"audit_key\":\""));
    assert_non_null(strstr(line, "\"log_id\":\""));
    assert_non_null(strstr(line, "\"ceremony\":\"test-1\""));
    assert_non_null(strstr(line, "\"prev\":\"0000000000000000000000000000000000000000000000000000"
                                 "000000000000\""));
    free(line);
    append_n(c->a, 20);
    assert_int_equal(walk_chain(c->st, &w), 22);
    /* a canonical detail (the issuance engine's) is taken as is; one not an object is refused */
    ev_init(&ev, "dac.issue", "{\"a\":1,\"b\":\"x\"}");
    ev.detail_canonical = 1;
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, &r), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_get(c->st, r.seq, &line, &len, sh), HSMCA_OK);
    assert_non_null(strstr(line, ",\"detail\":{\"a\":1,\"b\":\"x\"},\"kid\":"));
    free(line);
    ev_init(&ev, "dac.issue", "[1]");
    ev.detail_canonical = 1;
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, &r), HSMCA_E_AUDIT_EVENT_INVALID);
    assert_int_equal(walk_chain(c->st, &w), 23);
}

static void
apply_failure_writes_nothing(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    char *v = NULL;

    open_ok(c, 0, 0);
    ev_init(&ev, "ca.create", NULL);
    assert_int_equal(hsmca_audit_append(c->a, &ev, apply_meta_then_fail, "half", &r),
                     HSMCA_E_STORE_CONSTRAINT);
    assert_int_equal(hsmca_store_meta_get(c->st, "test.key", &v), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_audit_size(c->a), 1);
    assert_int_equal(hsmca_audit_append(c->a, &ev, apply_meta, "whole", &r), HSMCA_OK);
    assert_int_equal(r.seq, 2);
    assert_int_equal(hsmca_store_meta_get(c->st, "test.key", &v), HSMCA_OK);
    assert_string_equal(v, "whole");
    free(v);
}

struct async_done {
    pthread_mutex_t m;
    int n, ok;
    uint64_t seqs[64];
};

static void
on_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *r)
{
    struct async_done *d = arg;

    pthread_mutex_lock(&d->m);
    if (rc == HSMCA_OK && r != NULL) {
        d->seqs[d->ok] = r->seq;
        d->ok++;
    }
    d->n++;
    pthread_mutex_unlock(&d->m);
}

static void
submit_async_done_on_writer(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct async_done d;
    int i, n;

    memset(&d, 0, sizeof(d));
    pthread_mutex_init(&d.m, NULL);
    open_ok(c, 0, 0);
    ev_init(&ev, "dac.issue", NULL);
    for (i = 0; i < 40; i++)
        assert_int_equal(
            hsmca_audit_submit(c->a, &ev, i == 7 ? apply_meta_then_fail : NULL, "x", on_done, &d),
            HSMCA_OK);
    for (i = 0; i < 500; i++) {
        pthread_mutex_lock(&d.m);
        n = d.n;
        pthread_mutex_unlock(&d.m);
        if (n == 40)
            break;
        usleep(10000);
    }
    assert_int_equal(d.n, 40);
    assert_int_equal(d.ok, 39);
    for (i = 0; i < 39; i++)
        assert_int_equal(d.seqs[i], (uint64_t)i + 2);
    pthread_mutex_destroy(&d.m);
}

/*
 * Announced entries (hsmca_audit_expect) share one commit: three entries submitted 300 us apart
 * while three are announced go into a single commit; without the announcement each entry (50 ms
 * apart) commits alone, though the writer would linger 0.5 s. An announcement that never comes
 * costs at most the linger: the entry is still written.
 */
static int
wait_done(struct async_done *d, int want)
{
    int i, n = 0;

    for (i = 0; i < 500; i++) {
        pthread_mutex_lock(&d->m);
        n = d->n;
        pthread_mutex_unlock(&d->m);
        if (n >= want)
            break;
        usleep(10000);
    }
    return n;
}

static void
announced_entries_share_a_commit(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct async_done d;
    unsigned long c0;
    int i;

    memset(&d, 0, sizeof(d));
    pthread_mutex_init(&d.m, NULL);
    c->linger_us = 500000; /* far longer than the gaps below, so a loaded machine cannot flake */
    open_ok(c, 0, 0);
    ev_init(&ev, "dac.issue", NULL);
    hsmca_audit_expect(NULL, 1);
    hsmca_audit_expect(c->a, 0);
    /* announced: one commit for the three */
    c0 = hsmca_store_commit_count(c->st);
    hsmca_audit_expect(c->a, 3);
    for (i = 0; i < 3; i++) {
        assert_int_equal(hsmca_audit_submit(c->a, &ev, NULL, NULL, on_done, &d), HSMCA_OK);
        usleep(300);
    }
    hsmca_audit_expect(c->a, -3);
    assert_int_equal(wait_done(&d, 3), 3);
    assert_int_equal(hsmca_store_commit_count(c->st) - c0, 1);
    /* not announced: the first entry does not wait for the others */
    c0 = hsmca_store_commit_count(c->st);
    for (i = 0; i < 3; i++) {
        assert_int_equal(hsmca_audit_submit(c->a, &ev, NULL, NULL, on_done, &d), HSMCA_OK);
        usleep(50000);
    }
    assert_int_equal(wait_done(&d, 6), 6);
    assert_int_equal(hsmca_store_commit_count(c->st) - c0, 3);
    /* announced but never submitted: the entry that came is written after the linger */
    hsmca_audit_expect(c->a, 2);
    assert_int_equal(hsmca_audit_submit(c->a, &ev, NULL, NULL, on_done, &d), HSMCA_OK);
    assert_int_equal(wait_done(&d, 7), 7);
    hsmca_audit_expect(c->a, -5); /* over-withdrawn: the count stays at zero */
    assert_int_equal(d.ok, 7);
    pthread_mutex_destroy(&d.m);
}

#define WRITERS 8
#define PER_WRITER 1250

struct wargs {
    struct hsmca_audit *a;
    int fails;
};

static void *
writer_thread(void *arg)
{
    struct wargs *w = arg;
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    int i;

    ev_init(&ev, "dac.issue", "{\"serial\":\"7f01\"}");
    for (i = 0; i < PER_WRITER; i++) {
        if (hsmca_audit_append(w->a, &ev, NULL, NULL, &r) != HSMCA_OK)
            w->fails++;
    }
    return NULL;
}

static void
group_commit_8_writers(void **state)
{
    struct ctx *c = *state;
    pthread_t t[WRITERS];
    struct wargs w[WRITERS];
    struct hsmca_audit_stats s;
    unsigned long commits0, commits;
    struct walk wk;
    uint64_t n;
    int i;

    open_ok(c, 0, 0);
    commits0 = hsmca_store_commit_count(c->st);
    for (i = 0; i < WRITERS; i++) {
        w[i].a = c->a;
        w[i].fails = 0;
        assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
    }
    for (i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].fails, 0);
    }
    commits = hsmca_store_commit_count(c->st) - commits0;
    hsmca_audit_stats(c->a, &s);
    n = walk_chain(c->st, &wk);
    assert_true(n >= 1 + WRITERS * PER_WRITER);
    print_message("group commit: %d entries by %d writers, %lu fsync-backed commits "
                  "(batch histogram 1:%llu 2-3:%llu 4-7:%llu 8-15:%llu 16+:%llu)\n",
                  WRITERS * PER_WRITER, WRITERS, commits, (unsigned long long)s.batch_hist[0],
                  (unsigned long long)s.batch_hist[1], (unsigned long long)s.batch_hist[2],
                  (unsigned long long)s.batch_hist[3], (unsigned long long)s.batch_hist[4]);
    /* below one per entry even when each writer waits for its own commit (batches <= 8) */
    assert_true(commits * 2 < (unsigned long)(WRITERS * PER_WRITER));
    /* every group commit was timed: the histogram holds as many as the batch sizes do */
    {
        uint64_t timed = 0, batches = 0;

        for (i = 0; i <= HSMCA_LAT_NBUCKET; i++)
            timed += s.commit_hist[i];
        for (i = 0; i < 8; i++)
            batches += s.batch_hist[i];
        assert_int_equal(timed, batches);
        assert_true(timed > 0);
        assert_true(s.commit_us_sum > 0);
    }
}

/* The daemon's shape: each writer keeps up to WINDOW submits in flight (parked connections). */
#define WINDOW 64

struct awriter {
    struct hsmca_audit *a;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int inflight, done, fails;
};

static void
awriter_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *r)
{
    struct awriter *w = arg;

    pthread_mutex_lock(&w->m);
    w->inflight--;
    w->done++;
    if (rc != HSMCA_OK || r == NULL)
        w->fails++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
}

static void *
awriter_thread(void *arg)
{
    struct awriter *w = arg;
    struct hsmca_audit_event ev;
    int i;

    ev_init(&ev, "dac.issue", "{\"serial\":\"7f02\"}");
    for (i = 0; i < PER_WRITER; i++) {
        pthread_mutex_lock(&w->m);
        while (w->inflight >= WINDOW)
            pthread_cond_wait(&w->cv, &w->m);
        w->inflight++;
        pthread_mutex_unlock(&w->m);
        if (hsmca_audit_submit(w->a, &ev, NULL, NULL, awriter_done, w) != HSMCA_OK) {
            pthread_mutex_lock(&w->m);
            w->inflight--;
            w->fails++;
            w->done++;
            pthread_mutex_unlock(&w->m);
        }
    }
    pthread_mutex_lock(&w->m);
    while (w->done < PER_WRITER)
        pthread_cond_wait(&w->cv, &w->m);
    pthread_mutex_unlock(&w->m);
    return NULL;
}

static void
group_commit_8_async_writers(void **state)
{
    struct ctx *c = *state;
    pthread_t t[WRITERS];
    struct awriter w[WRITERS];
    unsigned long commits0, commits;
    struct walk wk;
    uint64_t n;
    int i;

    open_ok(c, 0, 0);
    commits0 = hsmca_store_commit_count(c->st);
    for (i = 0; i < WRITERS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].a = c->a;
        pthread_mutex_init(&w[i].m, NULL);
        pthread_cond_init(&w[i].cv, NULL);
        assert_int_equal(pthread_create(&t[i], NULL, awriter_thread, &w[i]), 0);
    }
    for (i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].fails, 0);
        pthread_mutex_destroy(&w[i].m);
        pthread_cond_destroy(&w[i].cv);
    }
    commits = hsmca_store_commit_count(c->st) - commits0;
    n = walk_chain(c->st, &wk);
    assert_int_equal(n, 1 + WRITERS * PER_WRITER); /* genesis + every entry, gap-free */
    print_message("group commit (async, %d in flight per writer): %d entries, %lu fsync-backed "
                  "commits\n",
                  WINDOW, WRITERS * PER_WRITER, commits);
    assert_true(commits * 20 < (unsigned long)(WRITERS * PER_WRITER));
}

static void
clock_step_back_is_an_entry(void **state)
{
    struct ctx *c = *state;
    struct walk w;

    c->fake_ms = 1800000000000LL;
    open_ok(c, 0, 0);
    append_n(c->a, 2);
    c->fake_ms = 1700000000000LL; /* the clock steps back ~3 years */
    append_n(c->a, 3);
    c->fake_ms = 1800000000500LL;
    append_n(c->a, 1);
    assert_int_equal(walk_chain(c->st, &w), 8); /* genesis + 6 + one clock.step_back */
    assert_int_equal(w.step_backs, 1);
    c->fake_ms = 0;
}

static void
checkpoints_verify_with_openssl(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_checkpoint cp, cp2, latest;
    struct hsmca_audit_cp_fields f;
    unsigned char h[32], kid[32], *der = NULL;
    char path[700], sigpath[700], pub[700], out[2048], hex[65];
    FILE *fp;
    int n;

    memset(&cp, 0, sizeof(cp));
    memset(&cp2, 0, sizeof(cp2));
    memset(&latest, 0, sizeof(latest));
    open_ok(c, 5, 0);
    append_n(c->a, 12); /* checkpoints every 5 entries on their own */
    assert_int_equal(hsmca_audit_checkpoint(c->a, &cp), HSMCA_OK);
    assert_int_equal(cp.size, 13);
    assert_int_equal(hsmca_audit_checkpoint_parse(cp.text, cp.text_len, &f), HSMCA_OK);
    assert_int_equal(f.size, 13);
    assert_memory_equal(f.head, cp.head, 32);
    assert_string_equal(f.origin, "hsmca/test");
    SHA256((const unsigned char *)cp.text, cp.text_len, h);
    assert_memory_equal(h, cp.hash, 32);
    n = i2d_PUBKEY(hsmca_key_public(c->key), &der);
    assert_true(n > 0);
    SHA256(der, (size_t)n, kid);
    OPENSSL_free(der);
    assert_memory_equal(f.key, kid, 32);
    /* the token's signature as a witness checks it (audit_format.c) */
    assert_int_equal(hsmca_audit_checkpoint_verify(hsmca_key_public(c->key), cp.text, cp.text_len,
                                                   cp.sig, cp.sig_len, NULL),
                     HSMCA_OK);
    /* nothing new: the same checkpoint */
    assert_int_equal(hsmca_audit_checkpoint(c->a, &cp2), HSMCA_OK);
    assert_int_equal(cp2.size, 13);
    assert_memory_equal(cp2.hash, cp.hash, 32);
    assert_int_equal(hsmca_audit_latest_checkpoint(c->a, &latest), HSMCA_OK);
    assert_memory_equal(latest.hash, cp.hash, 32);
    hsmca_hex_encode(cp.hash, 32, hex, sizeof(hex));
    /* openssl dgst -sha256 -verify audit.pub -signature cp.sig cp.txt */
    snprintf(path, sizeof(path), "%s/cp.txt", c->dir);
    snprintf(sigpath, sizeof(sigpath), "%s/cp.sig", c->dir);
    snprintf(pub, sizeof(pub), "%s/audit.pub", c->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fwrite(cp.text, 1, cp.text_len, fp);
    fclose(fp);
    fp = fopen(sigpath, "w");
    assert_non_null(fp);
    fwrite(cp.sig, 1, cp.sig_len, fp);
    fclose(fp);
    fp = fopen(pub, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PUBKEY(fp, hsmca_key_public(c->key)), 1);
    fclose(fp);
    {
        char *argv[] = {"openssl",    "dgst",  "-sha256", "-verify", pub,
                        "-signature", sigpath, path,      NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
        assert_non_null(strstr(out, "Verified OK"));
        /* a raw r||s signature is not DER: refused */
        fp = fopen(sigpath, "w");
        fwrite(cp.sig + 4, 1, 64, fp);
        fclose(fp);
        assert_int_not_equal(fx_run(argv, out, sizeof(out)), 0);
    }
    hsmca_audit_checkpoint_clear(&cp);
    hsmca_audit_checkpoint_clear(&cp2);
    hsmca_audit_checkpoint_clear(&latest);
}

/* The token's anchor, "<size> <head hex> <cp hash hex>", read as the size it names (0: none). */
static uint64_t
anchor_size(struct ctx *c, char *text, size_t text_max)
{
    unsigned char buf[300];
    size_t len = 0;
    uint64_t size = 0;
    const char *sp;

    if (hsmca_token_data_read(c->tok, "hsmca-audit-anchor", buf, sizeof(buf) - 1, &len) != HSMCA_OK)
        return 0;
    buf[len] = '\0';
    snprintf(text, text_max, "%s", (char *)buf);
    sp = strchr(text, ' ');
    assert_non_null(sp);
    assert_int_equal(hsmca_parse_u64(text, (size_t)(sp - text), UINT64_MAX, &size), HSMCA_OK);
    return size;
}

typedef unsigned long (*shim_count_fn)(const char *);
typedef void (*shim_hold_fn)(int);

struct releaser {
    shim_hold_fn hold;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int done;     /* the test is past the held part */
    int released; /* the hold ran out first */
};

/* The safety net: a writer that waited for the anchor would be let go after 5 s, not hang. */
static void *
release_later(void *arg)
{
    struct releaser *r = arg;
    struct timespec dl;

    hsmca_deadline_us(&dl, 5000000);
    pthread_mutex_lock(&r->lock);
    while (!r->done && pthread_cond_timedwait(&r->cv, &r->lock, &dl) == 0)
        ;
    if (!r->done) {
        r->released = 1;
        r->hold(0);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static int
releaser_finish(struct releaser *r)
{
    int released;

    pthread_mutex_lock(&r->lock);
    r->done = 1;
    released = r->released;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->lock);
    return released;
}

/*
 * A checkpoint's anchor is written on the mover thread, not the writer's: with the token's object
 * writes held (a token slow to write), appends and periodic checkpoints go on; an explicit
 * checkpoint returns only once the token names it, and close settles the last one.
 */
static void
anchor_moves_off_the_writer(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_checkpoint cp;
    struct hsmca_audit_stats s;
    struct releaser r = {NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    char text[300], head[65], hash[65], want[300];
    shim_count_fn count;
    pthread_t th;
    void *dl;
    int i;

    memset(&cp, 0, sizeof(cp));
    /* one module at a time: swap SoftHSM for the shim that wraps it */
    hsmca_store_close(c->st);
    c->st = NULL;
    tokens_down(c);
    c->module = getenv("HSMCA_P11SHIM");
    assert_non_null(c->module);
    assert_int_equal(tokens_up(c, 0), 0);
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    dl = dlopen(c->module, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(dl);
    *(void **)&count = dlsym(dl, "hsmca_shim_count");
    *(void **)&r.hold = dlsym(dl, "hsmca_shim_hold");
    assert_non_null(count);
    assert_non_null(r.hold);

    open_ok(c, 5, 0);
    assert_int_equal(anchor_size(c, text, sizeof(text)), 1); /* genesis */
    r.hold(1);
    assert_int_equal(pthread_create(&th, NULL, release_later, &r), 0);
    append_n(c->a, 12); /* checkpoints at 6 and 11 while the token cannot write */
    for (i = 0; i < 200 && count("held") == 0; i++)
        usleep(10000);
    assert_int_equal(count("held"), 1); /* the mover, inside C_CreateObject */
    hsmca_audit_stats(c->a, &s);
    assert_int_equal(s.checkpoints, 3);
    /* (the anchor is not read here: the mover holds the token's lock until C_CreateObject ends) */
    assert_int_equal(releaser_finish(&r), 0); /* all the above ran while the token was held */
    pthread_join(th, NULL);
    r.hold(0);
    assert_int_equal(hsmca_audit_checkpoint(c->a, &cp), HSMCA_OK);
    assert_int_equal(cp.size, 13);
    hsmca_hex_encode(cp.head, 32, head, sizeof(head));
    hsmca_hex_encode(cp.hash, 32, hash, sizeof(hash));
    snprintf(want, sizeof(want), "13 %s %s", head, hash);
    assert_int_equal(anchor_size(c, text, sizeof(text)), 13);
    assert_string_equal(text, want);
    hsmca_audit_checkpoint_clear(&cp);
    append_n(c->a, 2);
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    c->a = NULL;
    assert_int_equal(anchor_size(c, text, sizeof(text)), 15);
    dlclose(dl);
}

/* The heal hook of hsmcad, in small: drop the key, re-probe, log in again, find the key. */
static enum hsmca_err
test_heal(void *arg, struct hsmca_key **key)
{
    struct ctx *c = arg;
    struct hsmca_token_probe pr;
    struct hsmca_secret pin = fx_secret(USER_PIN);
    enum hsmca_err rc;

    hsmca_key_free(*key);
    *key = NULL;
    c->key = NULL;
    rc = hsmca_token_probe(c->tok, &pr);
    if (rc == HSMCA_OK && !pr.logged_in)
        rc = hsmca_token_login(c->tok, &pin);
    hsmca_secret_clear(&pin);
    if (rc == HSMCA_OK)
        rc = hsmca_token_find_key(c->tok, "pkcs11:object=audit-key", key);
    if (rc == HSMCA_OK)
        c->key = *key;
    return rc;
}

/*
 * The audit token goes away (the shim closes its sessions, its login is lost) and comes back:
 * checkpoints fail without spinning, the entries beyond the last signed one are counted
 * (hsmca_audit_unsigned, which bounds issuance), and once the token is back the next checkpoint
 * heals (re-probe, login, key) and signs them all; the chain is whole.
 */
static void
checkpoints_heal_after_the_token_returns(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_config cfg;
    struct hsmca_audit_checkpoint cp;
    struct hsmca_audit_stats s;
    struct walk w;
    char gone[HSMCA_PATH_MAX + 1], why[512] = "";
    int failing = -1;
    FILE *f;

    memset(&cp, 0, sizeof(cp));
    hsmca_store_close(c->st);
    c->st = NULL;
    tokens_down(c);
    c->module = getenv("HSMCA_P11SHIM");
    assert_non_null(c->module);
    snprintf(gone, sizeof(gone), "%s/gone", c->dir);
    assert_int_equal(setenv("HSMCA_SHIM_GONE_FILE", gone, 1), 0);
    assert_int_equal(tokens_up(c, 0), 0);
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    memset(&cfg, 0, sizeof(cfg));
    cfg.store = c->st;
    cfg.token = c->tok;
    cfg.key = c->key;
    cfg.origin = "hsmca/test";
    cfg.checkpoint_entries = 5;
    cfg.checkpoint_ms = 3600000;
    cfg.heal = test_heal;
    cfg.heal_arg = c;
    cfg.retry_ms = 3600000; /* no timed retry: only explicit checkpoints try again */
    if (hsmca_audit_open(&cfg, &c->a, why, sizeof(why)) != HSMCA_OK)
        fail_msg("open: %s", why);
    append_n(c->a, 3);
    assert_int_equal(hsmca_audit_unsigned(c->a, &failing), 3);
    assert_int_equal(failing, 0);

    f = fopen(gone, "w");
    assert_non_null(f);
    fputs("hsmca-audit\n", f);
    fclose(f);
    append_n(c->a, 10); /* the checkpoint due at 5 fails; no retry before retry_ms */
    assert_int_equal(hsmca_audit_unsigned(c->a, &failing), 13);
    assert_int_equal(failing, 1);
    assert_int_not_equal(hsmca_audit_checkpoint(c->a, &cp), HSMCA_OK);
    hsmca_audit_stats(c->a, &s);
    assert_int_equal(s.checkpoint_failures, 2); /* one at 5 entries, one asked for: no spin */
    assert_int_equal(s.heals, 0);

    f = fopen(gone, "w");
    assert_non_null(f);
    fclose(f); /* back, with its sessions closed and its login lost */
    assert_int_equal(hsmca_audit_checkpoint(c->a, &cp), HSMCA_OK);
    assert_int_equal(cp.size, 14); /* genesis + 13: every entry of the outage is signed */
    hsmca_audit_checkpoint_clear(&cp);
    assert_int_equal(hsmca_audit_unsigned(c->a, &failing), 0);
    assert_int_equal(failing, 0);
    hsmca_audit_stats(c->a, &s);
    assert_int_equal(s.heals, 1);
    append_n(c->a, 6); /* and checkpoints go on by themselves */
    hsmca_audit_stats(c->a, &s);
    assert_int_equal(s.checkpoint_failures, 2);
    assert_true(hsmca_audit_unsigned(c->a, NULL) < 5);
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    c->a = NULL;
    assert_int_equal(walk_chain(c->st, &w), 20); /* genesis + 3 + 10 + 6 */
    /* the log reopens on the healed token: anchor and chain check out */
    open_ok(c, 5, 0);
    assert_int_equal(unsetenv("HSMCA_SHIM_GONE_FILE"), 0);
}

static void
heartbeat_when_idle(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_checkpoint cp;
    struct hsmca_audit_stats s;
    struct walk w;
    int i;

    open_ok(c, 0, 100);
    for (i = 0; i < 100; i++) {
        hsmca_audit_stats(c->a, &s);
        if (s.checkpoints >= 3)
            break;
        usleep(20000);
    }
    assert_true(s.checkpoints >= 3);
    assert_int_equal(hsmca_audit_latest_checkpoint(c->a, &cp), HSMCA_OK);
    assert_true(cp.size >= 3); /* genesis + heartbeats */
    hsmca_audit_checkpoint_clear(&cp);
    walk_chain(c->st, &w);
}

static void
sql_exec(const char *db, const char *sql)
{
    sqlite3 *h = NULL;

    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

/* Change the line of seq in the database file directly (an attacker with the disk); with
 * fix_hash the stored hash column is updated to match. */
static void
tamper_line(const char *db, uint64_t seq, const char *from, const char *to, int fix_hash)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    char line[4096], *p;
    unsigned char md[32];
    int n;

    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(h, "SELECT line FROM audit_entries WHERE seq = ?1", -1, &s, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    n = sqlite3_column_bytes(s, 0);
    assert_true(n > 0 && n < (int)sizeof(line) - 64);
    memcpy(line, sqlite3_column_blob(s, 0), (size_t)n);
    line[n] = '\0';
    sqlite3_finalize(s);
    p = strstr(line, from);
    assert_non_null(p);
    assert_int_equal(strlen(from), strlen(to));
    memcpy(p, to, strlen(to));
    SHA256((unsigned char *)line, (size_t)n, md);
    assert_int_equal(sqlite3_prepare_v2(h,
                                        fix_hash ? "UPDATE audit_entries SET line=?2, hash=?3 "
                                                   "WHERE seq=?1"
                                                 : "UPDATE audit_entries SET line=?2 WHERE seq=?1",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    sqlite3_bind_blob(s, 2, line, n, SQLITE_TRANSIENT);
    if (fix_hash)
        sqlite3_bind_blob(s, 3, md, 32, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(h);
}

/* A child process appends n entries after genesis (no checkpoint but genesis's) and dies by
 * SIGKILL, so the tail after the last checkpoint is what the self-check must walk. */
static void
child_appends_then_dies(struct ctx *c, int n)
{
    char why[256];
    int status;
    pid_t pid;

    hsmca_store_close(c->st);
    c->st = NULL;
    tokens_down(c);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (tokens_up(c, 0) != 0 || hsmca_store_open(c->db, &c->st) != HSMCA_OK ||
            open_log(c, 100000, 0, why, sizeof(why)) != HSMCA_OK)
            _exit(3);
        append_n(c->a, n);
        raise(SIGKILL);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(tokens_up(c, 0), 0);
}

static void
open_names_first_bad_seq(void **state)
{
    struct ctx *c = *state;
    char why[512] = "";

    child_appends_then_dies(c, 10); /* seqs 1..11, checkpoint at 1 only */
    /* a byte changed in seq 6: its stored hash no longer matches */
    tamper_line(c->db, 6, "01ab", "01ac", 0);
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    assert_int_equal(open_log(c, 1000, 0, why, sizeof(why)), HSMCA_E_AUDIT_CHAIN);
    assert_non_null(strstr(why, "seq 6:"));
    /* the same with the hash column fixed up: the chain names seq 6 */
    hsmca_store_close(c->st);
    c->st = NULL;
    tamper_line(c->db, 6, "01ac", "01ad", 1);
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    why[0] = '\0';
    assert_int_equal(open_log(c, 1000, 0, why, sizeof(why)), HSMCA_E_AUDIT_CHAIN);
    assert_non_null(strstr(why, "seq 6:"));
}

static void
open_refuses_modified_head(void **state)
{
    struct ctx *c = *state;
    char why[512] = "";

    open_ok(c, 1000, 0);
    append_n(c->a, 6);
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK); /* checkpoint at 7 */
    c->a = NULL;
    hsmca_store_close(c->st);
    c->st = NULL;
    tamper_line(c->db, 7, "01ab", "01ac", 1);
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    assert_int_equal(open_log(c, 1000, 0, why, sizeof(why)), HSMCA_E_AUDIT_CHAIN);
    assert_non_null(strstr(why, "seq 7:"));
}

static void
open_refuses_restored_older_db(void **state)
{
    struct ctx *c = *state;
    char why[512] = "", cmd[8192], out[256];

    open_ok(c, 1000, 0);
    append_n(c->a, 3);
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK); /* checkpoint 4, anchor 4 */
    c->a = NULL;
    hsmca_store_close(c->st);
    c->st = NULL;
    /* the attacker's snapshot: the database with its WAL, copied while closed */
    snprintf(cmd, sizeof(cmd), "cp %s %s.old && (cp %s-wal %s.old-wal 2>/dev/null || true)", c->db,
             c->db, c->db, c->db);
    {
        char *argv[] = {"sh", "-c", cmd, NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
    }
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    open_ok(c, 1000, 0);
    append_n(c->a, 5);
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK); /* checkpoint 9, anchor 9 */
    c->a = NULL;
    hsmca_store_close(c->st);
    c->st = NULL;
    snprintf(cmd, sizeof(cmd),
             "rm -f %s-wal %s-shm && cp %s.old %s && "
             "(cp %s.old-wal %s-wal 2>/dev/null || true)",
             c->db, c->db, c->db, c->db, c->db, c->db);
    {
        char *argv[] = {"sh", "-c", cmd, NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
    }
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    assert_int_equal(open_log(c, 1000, 0, why, sizeof(why)), HSMCA_E_AUDIT_ANCHOR);
    assert_non_null(strstr(why, "anchor checkpoint 9"));
    assert_non_null(strstr(why, "restored"));
    /* an empty store under a token that has an anchor: refused too */
    hsmca_store_close(c->st);
    c->st = NULL;
    snprintf(cmd, sizeof(cmd), "rm -f %s %s-wal %s-shm", c->db, c->db, c->db);
    {
        char *argv[] = {"sh", "-c", cmd, NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
    }
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    assert_int_equal(open_log(c, 1000, 0, why, sizeof(why)), HSMCA_E_AUDIT_ANCHOR);
    assert_non_null(strstr(why, "anchor checkpoint 9"));
}

/* ---- crash: a writer SIGKILLed in the middle of appending ---- */

static void
crash_child(struct ctx *c, int fd)
{
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    char why[256];
    int i;

    /* a fresh process: its own module, token, store and log */
    if (tokens_up(c, 0) != 0 || hsmca_store_open(c->db, &c->st) != HSMCA_OK ||
        open_log(c, 50, 0, why, sizeof(why)) != HSMCA_OK)
        _exit(3);
    ev_init(&ev, "dac.issue", "{\"serial\":\"crash\"}");
    for (i = 0; i < 100000; i++) {
        if (hsmca_audit_append(c->a, &ev, apply_meta, "crash", &r) != HSMCA_OK)
            _exit(4);
        if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
            _exit(5);
    }
    _exit(0);
}

static void
sigkill_keeps_every_returned_append(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_receipt got[4096], r;
    char why[512] = "";
    unsigned char h[32];
    char *line = NULL;
    size_t len = 0, n = 0, i;
    int fds[2], status;
    pid_t pid;
    struct walk w;

    /* the parent lets go of the module first: PKCS#11 state does not survive fork */
    hsmca_store_close(c->st);
    c->st = NULL;
    tokens_down(c);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child(c, fds[1]);
    }
    close(fds[1]);
    while (n < 600) {
        ssize_t k = read(fds[0], &r, sizeof(r));

        if (k != (ssize_t)sizeof(r))
            break;
        got[n++] = r;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    while (n < sizeof(got) / sizeof(got[0]) && read(fds[0], &r, sizeof(r)) == (ssize_t)sizeof(r))
        got[n++] = r; /* receipts written before the kill */
    close(fds[0]);
    assert_true(WIFSIGNALED(status));
    assert_true(n >= 600);
    assert_int_equal(tokens_up(c, 0), 0);
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    if (open_log(c, 50, 0, why, sizeof(why)) != HSMCA_OK)
        fail_msg("reopen after SIGKILL: %s", why);
    for (i = 0; i < n; i++) {
        unsigned char sh[32];

        assert_int_equal(hsmca_store_audit_get(c->st, got[i].seq, &line, &len, sh), HSMCA_OK);
        SHA256((const unsigned char *)line, len, h);
        assert_memory_equal(h, got[i].entry_hash, 32);
        free(line);
    }
    assert_true(walk_chain(c->st, &w) >= got[n - 1].seq);
    print_message("crash: %zu receipts before SIGKILL, all present after reopen\n", n);
}

/* ---- extracts and their verifiers ---- */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sh(const char *fmt, ...)
{
    char cmd[8192], out[4096];
    va_list ap;
    char *argv[] = {"sh", "-c", cmd, NULL};
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    rc = fx_run(argv, out, sizeof(out));
    if (rc != 0)
        fail_msg("sh -c '%s' -> %d: %s", cmd, rc, out);
}

/* Verify dir; return the code, check bad_seq and a substring of why. */
static enum hsmca_err
verify_dir(const char *dir, const char *previous, uint64_t want_bad, const char *want_why)
{
    struct hsmca_audit_verify_opts o;
    struct hsmca_audit_verify_result r;
    enum hsmca_err rc;

    memset(&o, 0, sizeof(o));
    o.previous_cp = previous;
    rc = hsmca_audit_verify_extract(dir, &o, &r);
    if (rc != HSMCA_OK && want_why == NULL)
        fail_msg("%s: %s: seq %llu: %s", dir, hsmca_err_code(rc), (unsigned long long)r.bad_seq,
                 r.why);
    if (want_why != NULL) {
        if (rc == HSMCA_OK)
            fail_msg("%s: verified but should fail with '%s'", dir, want_why);
        if (strstr(r.why, want_why) == NULL || r.bad_seq != want_bad)
            fail_msg("%s: got seq %llu '%s', want seq %llu '%s'", dir,
                     (unsigned long long)r.bad_seq, r.why, (unsigned long long)want_bad, want_why);
    }
    return rc;
}

/* Run the bundle's own verify.sh with a PATH that has no hsmca binary on it. */
static int
run_verify_sh(const char *dir, char *out, size_t out_max)
{
    char script[700];
    char *argv[] = {"sh", script, NULL};
    char *old = getenv("PATH") != NULL ? strdup(getenv("PATH")) : NULL;
    int rc;

    snprintf(script, sizeof(script), "%s/verify.sh", dir);
    setenv("PATH", "/usr/bin:/bin", 1);
    rc = fx_run(argv, out, out_max);
    if (old != NULL)
        setenv("PATH", old, 1);
    free(old);
    return rc;
}

static void
verify_sh_says(const char *dir, int want_rc, const char *want)
{
    char out[4096];
    int rc = run_verify_sh(dir, out, sizeof(out));

    if (rc != want_rc || strstr(out, want) == NULL)
        fail_msg("verify.sh %s -> %d '%s', want %d '%s'", dir, rc, out, want_rc, want);
}

static int
run_hsmca(char *out, size_t out_max, const char *a1, const char *a2, const char *a3, const char *a4,
          const char *a5)
{
    const char *bin = getenv("HSMCA_BIN");
    char *argv[8] = {(char *)bin, (char *)a1, (char *)a2, (char *)a3,
                     (char *)a4,  (char *)a5, NULL,       NULL};

    assert_non_null(bin);
    return fx_run(argv, out, out_max);
}

struct tamper {
    const char *name;
    const char *cmd; /* sh, run inside the copy */
    enum hsmca_err code;
    uint64_t bad_seq;
    const char *why;    /* in hsmca's reason */
    const char *sh_why; /* in verify.sh's reason */
};

static void
extract_tamper_matrix(void **state)
{
    struct ctx *c = *state;
    static const struct tamper t[] = {
        {"modify", "sed -i '20s/01ab/01ac/' entries.jsonl", HSMCA_E_AUDIT_CHAIN, 20,
         "seq 20: changed", "seq 20: changed"},
        {"modify-last", "sed -i '$s/01ab/01ac/' entries.jsonl", HSMCA_E_AUDIT_CHAIN, 46,
         "seq 46: changed", "seq 46: its hash is not the head"},
        {"delete", "sed -i '20d' entries.jsonl", HSMCA_E_AUDIT_CHAIN, 20,
         "seq 20: missing or out of order", "seq 20: missing or out of order"},
        {"insert", "sed -i '20p' entries.jsonl", HSMCA_E_AUDIT_CHAIN, 21,
         "seq 21: missing or out of order (found seq 20)", "seq 21: missing or out of order"},
        {"reorder", "sed -i -n '20{h;d};21{p;x};p' entries.jsonl", HSMCA_E_AUDIT_CHAIN, 20,
         "seq 20: missing or out of order (found seq 21)", "seq 20: missing or out of order"},
        {"truncate", "head -n 40 entries.jsonl > e && mv e entries.jsonl", HSMCA_E_AUDIT_TRUNCATED,
         41, "truncated: checkpoint 41", "truncated: checkpoint 41"},
        {"cut-last-lf", "printf %s \"$(cat entries.jsonl)\" > e && mv e entries.jsonl",
         HSMCA_E_AUDIT_CHAIN, 46, "has no LF", "not exactly one JSON object"},
        {"forge-checkpoint",
         "sed -i 's/^time .*/time 2020-01-01T00:00:00.000Z/' checkpoints/21.txt",
         HSMCA_E_AUDIT_CHECKPOINT_SIG, 21, "checkpoint 21: signature does not verify",
         "checkpoint 21: signature does not verify"},
        {"forge-anchor-sig", "cp checkpoints/21.sig checkpoints/31.sig",
         HSMCA_E_AUDIT_CHECKPOINT_SIG, 31, "checkpoint 31: signature", "checkpoint 31: signature"},
        {"drop-checkpoint", "rm checkpoints/21.txt checkpoints/21.sig", HSMCA_E_AUDIT_CHECKPOINT,
         31, "checkpoint 31: prev is not the hash", "checkpoint 31: prev is not the hash"},
        {"drop-last-checkpoint", "rm checkpoints/46.txt checkpoints/46.sig",
         HSMCA_E_AUDIT_TRUNCATED, 42, "seq 42..46: not covered", "seq 42: not covered"},
        {"manifest-to", "sed -i 's/\"to\": 46/\"to\": 50/' manifest.json", HSMCA_E_AUDIT_TRUNCATED,
         47, "manifest.json says to=50", "manifest.json says to=50"},
        {"approvers", "echo '{\"epochs\": []} ' > approvers.json", HSMCA_E_AUDIT_EXTRACT_INVALID, 0,
         "approvers.json: its SHA-256 differs", "a file's SHA-256 differs"},
    };
    char full[700], mid[700], copy[700], out[4096];
    size_t i;

    snprintf(full, sizeof(full), "%s/full", c->dir);
    snprintf(mid, sizeof(mid), "%s/mid", c->dir);
    open_ok(c, 10, 0);
    append_n(c->a, 45); /* 1..46; checkpoints at 1, 11, 21, 31, 41 */
    assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, full), HSMCA_OK); /* + 46 */
    assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, full), HSMCA_E_EXISTS);
    assert_int_equal(hsmca_audit_extract(c->a, 10, 99, NULL, mid), HSMCA_E_AUDIT_RANGE);
    /* an untouched extract, and one starting mid-log (widened to 12..41, anchor 11) */
    assert_int_equal(verify_dir(full, NULL, 0, NULL), HSMCA_OK);
    assert_int_equal(hsmca_audit_extract(c->a, 15, 35, NULL, mid), HSMCA_OK);
    assert_int_equal(verify_dir(mid, NULL, 0, NULL), HSMCA_OK);
    verify_sh_says(full, 0, "valid: entries 1..46, 6 checkpoints");
    verify_sh_says(mid, 0, "valid: entries 12..41, 3 checkpoints");
    {
        char *argv[] = {"sh", "-c", "command -v hsmca", NULL};
        char *old = strdup(getenv("PATH"));

        setenv("PATH", "/usr/bin:/bin", 1);
        assert_int_not_equal(fx_run(argv, out, sizeof(out)), 0);
        setenv("PATH", old, 1);
        free(old);
    }
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(copy, sizeof(copy), "%s/t-%s", c->dir, t[i].name);
        sh("cp -r %s %s && cd %s && %s", full, copy, copy, t[i].cmd);
        assert_int_equal(verify_dir(copy, NULL, t[i].bad_seq, t[i].why), t[i].code);
        verify_sh_says(copy, 1, t[i].sh_why);
    }
    /* a stray file in checkpoints/ is refused by name: list_cps once formatted that name after
     * closedir had freed it (heap use-after-free; fuzz_extract.in/crash-checkpoints-*) */
    snprintf(copy, sizeof(copy), "%s/t-stray", c->dir);
    sh("cp -r %s %s && touch %s/checkpoints/notes.txt", full, copy, copy);
    assert_int_equal(verify_dir(copy, NULL, 0, "checkpoints/notes.txt: unexpected file"),
                     HSMCA_E_AUDIT_EXTRACT_INVALID);
    /* audit.pub.pem must hold a whole key: its DER with bytes after the key, or a PEM block that
     * is not a PUBLIC KEY, is refused before anything else is read */
    snprintf(copy, sizeof(copy), "%s/t-key-trailing", c->dir);
    sh("cp -r %s %s && cd %s && openssl pkey -pubin -in audit.pub.pem -outform DER -out k.der && "
       "printf 'xx' >> k.der && { echo '-----BEGIN PUBLIC KEY-----'; base64 -w 64 k.der; "
       "echo '-----END PUBLIC KEY-----'; } > audit.pub.pem && rm k.der",
       full, copy, copy);
    assert_int_equal(verify_dir(copy, NULL, 0, "audit.pub.pem missing or not a key"),
                     HSMCA_E_AUDIT_EXTRACT_INVALID);
    snprintf(copy, sizeof(copy), "%s/t-key-label", c->dir);
    sh("cp -r %s %s && cd %s && sed -i 's/PUBLIC KEY/CERTIFICATE/' audit.pub.pem", full, copy,
       copy);
    assert_int_equal(verify_dir(copy, NULL, 0, "audit.pub.pem missing or not a key"),
                     HSMCA_E_AUDIT_EXTRACT_INVALID);
    /* the CLI: exit 0 valid, 1 tampered naming the seq, 2 usage */
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "verify", full, NULL, NULL), 0);
    assert_non_null(strstr(out, "valid: entries 1..46"));
    snprintf(copy, sizeof(copy), "%s/t-modify", c->dir);
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "verify", copy, "--json", NULL), 1);
    assert_non_null(strstr(out, "\"bad_seq\":20"));
    assert_non_null(strstr(out, "\"code\":\"audit-chain-broken\""));
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "verify", NULL, NULL, NULL), 2);
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "frobnicate", NULL, NULL, NULL), 2);
    snprintf(copy, sizeof(copy), "%s/nonexistent", c->dir);
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "verify", copy, NULL, NULL), 1);
}

static void
previous_checkpoint_truncation_and_fork(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_checkpoint old, cp6;
    char e1[700], e2[700], e3[700], prevtxt[700], cp6txt[700], out[2048];
    FILE *f;

    memset(&old, 0, sizeof(old));
    memset(&cp6, 0, sizeof(cp6));
    snprintf(e1, sizeof(e1), "%s/e1", c->dir);
    snprintf(e2, sizeof(e2), "%s/e2", c->dir);
    snprintf(e3, sizeof(e3), "%s/e3", c->dir);
    snprintf(prevtxt, sizeof(prevtxt), "%s/auditor-last.txt", c->dir);
    snprintf(cp6txt, sizeof(cp6txt), "%s/cp6.txt", c->dir);
    open_ok(c, 1000, 0);
    append_n(c->a, 5);
    assert_int_equal(hsmca_audit_checkpoint(c->a, &cp6), HSMCA_OK); /* size 6 */
    f = fopen(cp6txt, "w");
    fwrite(cp6.text, 1, cp6.text_len, f);
    fclose(f);
    append_n(c->a, 10);
    assert_int_equal(hsmca_audit_checkpoint(c->a, &old), HSMCA_OK); /* size 16: the auditor's */
    f = fopen(prevtxt, "w");
    fwrite(old.text, 1, old.text_len, f);
    fclose(f);
    append_n(c->a, 10);
    assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, e1), HSMCA_OK);
    /* the log extends the auditor's checkpoint; a slice from 7 (anchor 6) proves it too */
    assert_int_equal(verify_dir(e1, prevtxt, 0, NULL), HSMCA_OK);
    assert_int_equal(hsmca_audit_extract(c->a, 7, 0, NULL, e2), HSMCA_OK);
    assert_int_equal(verify_dir(e2, prevtxt, 0, NULL), HSMCA_OK);
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "verify", e2, "--previous", prevtxt), 0);
    /* an extract starting after the auditor's checkpoint cannot prove anything: said so */
    assert_int_equal(verify_dir(e2, cp6txt, 0, NULL), HSMCA_OK); /* 6 = anchor: fine */
    /* truncation back to a checkpoint boundary, with the manifest fixed up: only the
     * auditor's checkpoint catches it */
    sh("cp -r %s %s/cut && cd %s/cut && head -n 6 entries.jsonl > e && mv e entries.jsonl && "
       "ls checkpoints | grep -v '^\\(1\\|6\\)\\.' | sed 's,^,checkpoints/,' | xargs rm && "
       "sed -i 's/\"to\": [0-9]*/\"to\": 6/' manifest.json && "
       "sed -i '/entries.jsonl/d' manifest.json",
       e1, c->dir, c->dir);
    snprintf(e3, sizeof(e3), "%s/cut", c->dir);
    assert_int_equal(verify_dir(e3, NULL, 0, NULL), HSMCA_OK);
    assert_int_equal(verify_dir(e3, prevtxt, 7, "your checkpoint covers seq 16"),
                     HSMCA_E_AUDIT_TRUNCATED);
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "verify", e3, "--previous", prevtxt), 1);
    assert_non_null(strstr(out, "truncated or rolled back"));
    /* a fork: someone with the audit token rolls the store back to size 6 (anchor rewritten)
     * and writes another history */
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    c->a = NULL;
    hsmca_store_close(c->st);
    c->st = NULL;
    sql_exec(c->db, "DELETE FROM audit_entries WHERE seq > 6; "
                    "DELETE FROM audit_checkpoints WHERE size > 6;");
    {
        char anchor[200], hh[65], ch[65];
        int n;

        hsmca_hex_encode(cp6.head, 32, hh, sizeof(hh));
        hsmca_hex_encode(cp6.hash, 32, ch, sizeof(ch));
        n = snprintf(anchor, sizeof(anchor), "6 %s %s", hh, ch);
        assert_int_equal(hsmca_token_data_write(c->tok, "hsmca-audit-anchor",
                                                (unsigned char *)anchor, (size_t)n),
                         HSMCA_OK);
    }
    assert_int_equal(hsmca_store_open(c->db, &c->st), HSMCA_OK);
    open_ok(c, 1000, 0);
    {
        struct hsmca_audit_event ev;
        int i;

        ev_init(&ev, "dac.issue", "{\"serial\":\"f0f0\"}");
        for (i = 0; i < 15; i++)
            assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_OK);
    }
    snprintf(e3, sizeof(e3), "%s/forked", c->dir);
    assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, e3), HSMCA_OK);
    assert_int_equal(verify_dir(e3, NULL, 0, NULL), HSMCA_OK); /* consistent on its own */
    assert_int_equal(verify_dir(e3, prevtxt, 16, "differs from your checkpoint 16"),
                     HSMCA_E_AUDIT_FORK);
    hsmca_audit_checkpoint_clear(&old);
    hsmca_audit_checkpoint_clear(&cp6);
}

static void
receipts_and_archive_cli(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    char ex[700], rf[700], ar[700], hex[65], out[4096], from[8] = "5", to[8] = "30";
    FILE *f;
    int i;

    snprintf(ex, sizeof(ex), "%s/ex", c->dir);
    snprintf(rf, sizeof(rf), "%s/receipts.jsonl", c->dir);
    snprintf(ar, sizeof(ar), "%s/archive", c->dir);
    open_ok(c, 10, 0);
    f = fopen(rf, "w");
    assert_non_null(f);
    ev_init(&ev, "dac.issue", "{\"serial\":\"01ab\"}");
    for (i = 0; i < 30; i++) {
        assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, &r), HSMCA_OK);
        hsmca_hex_encode(r.entry_hash, 32, hex, sizeof(hex));
        fprintf(f, "{\"seq\":%llu,\"entry_hash\":\"%s\"}\n", (unsigned long long)r.seq, hex);
    }
    fclose(f);
    assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, ex), HSMCA_OK);
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "check-receipts", "--extract", ex, rf),
                     0);
    assert_non_null(strstr(out, "all 30 receipts"));
    /* a receipt whose entry was replaced */
    {
        /* line 7: one hex digit of its hash changed (0 <-> 1 keeps it hex and always differs) */
        char buf[8192], *p;
        size_t n;

        f = fopen(rf, "r");
        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = buf;
        for (i = 0; i < 6; i++) {
            p = strchr(p, '\n');
            assert_non_null(p);
            p++;
        }
        p = strstr(p, "\"entry_hash\":\"");
        assert_non_null(p);
        p += strlen("\"entry_hash\":\"");
        *p = *p == '0' ? '1' : '0';
        f = fopen(rf, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, n, f), n);
        fclose(f);
    }
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "check-receipts", "--extract", ex, rf),
                     1);
    assert_non_null(strstr(out, "receipt seq 8: MISSING"));
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "check-receipts", ex, NULL, NULL), 2);
    /* archive a closed range from the store, read-only, with the service still running */
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    c->a = NULL;
    {
        const char *bin = getenv("HSMCA_BIN");
        char *argv[] = {(char *)bin, "audit", "archive", "--store", c->db, "--from",
                        from,        "--to",  to,        "--out",   ar,    NULL};

        assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
        assert_non_null(strstr(out, "archived entries 2..31"));
    }
    assert_int_equal(verify_dir(ar, NULL, 0, NULL), HSMCA_OK);
    verify_sh_says(ar, 0, "valid: entries 2..31");
}

/* ---- quorum operations re-checked from the log ---- */

struct approver_key {
    EVP_PKEY *k;
    char spki[200];
};

static void
b64(const unsigned char *in, size_t len, char *out, size_t out_max)
{
    assert_true(out_max >= (len + 2) / 3 * 4 + 1);
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static void
approval_sig(EVP_PKEY *k, const char *req, char *out, size_t out_max)
{
    static const char dom[] = "hsmca-approval-v1";
    unsigned char md[32], sig[80];
    size_t sl = sizeof(sig);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(k, NULL);

    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    EVP_DigestUpdate(c, dom, sizeof(dom)); /* includes the NUL */
    EVP_DigestUpdate(c, req, strlen(req));
    EVP_DigestFinal_ex(c, md, NULL);
    assert_int_equal(EVP_PKEY_sign_init(pc), 1);
    assert_int_equal(EVP_PKEY_sign(pc, sig, &sl, md, 32), 1);
    b64(sig, sl, out, out_max);
    EVP_PKEY_CTX_free(pc);
    EVP_MD_CTX_free(c);
}

static void
append_execute(struct ctx *c, const char *req, struct approver_key *ak, const int *who, int n,
               int threshold, uint64_t *seq)
{
    char det[4096], sig[200], rb[600], apps[2048] = "";
    static const char *const names[] = {"alice", "bob", "carol"};
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    size_t off = 0;
    int i;

    b64((const unsigned char *)req, strlen(req), rb, sizeof(rb));
    for (i = 0; i < n; i++) {
        approval_sig(ak[who[i] & 0xf].k, (who[i] & 0x10) ? "{\"other\":1}" : req, sig, sizeof(sig));
        off += (size_t)snprintf(apps + off, sizeof(apps) - off,
                                "%s{\"approver\":\"%s\",\"sig\":\"%s\"}", i ? "," : "",
                                names[who[i] & 0xf], sig);
        assert_true(off < sizeof(apps));
    }
    snprintf(det, sizeof(det),
             "{\"op\":\"ca.activate\",\"epoch\":1,\"threshold\":%d,\"request\":\"%s\","
             "\"approvals\":[%s]}",
             threshold, rb, apps);
    ev_init(&ev, "quorum.execute", det);
    ev.target = "request/r1";
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, &r), HSMCA_OK);
    *seq = r.seq;
}

static void
quorum_operations_rechecked(void **state)
{
    struct ctx *c = *state;
    struct approver_key ak[3];
    struct hsmca_audit_event ev;
    char det[4096], d1[700], d2[700], d3[700];
    const char *req = "{\"id\":\"r1\",\"op\":\"ca.activate\",\"requester\":{\"principal\":"
                      "\"admin-1\",\"key\":\"00\"}}";
    const char *selfreq = "{\"id\":\"r2\",\"op\":\"ca.activate\",\"requester\":\"alice\"}";
    uint64_t s_ok, s_bad;
    int i;

    for (i = 0; i < 3; i++) {
        unsigned char *der = NULL;
        int n;

        ak[i].k = EVP_EC_gen("P-256");
        assert_non_null(ak[i].k);
        n = i2d_PUBKEY(ak[i].k, &der);
        b64(der, (size_t)n, ak[i].spki, sizeof(ak[i].spki));
        OPENSSL_free(der);
    }
    snprintf(det, sizeof(det),
             "{\"epoch\":1,\"approvers\":[{\"name\":\"alice\",\"spki\":\"%s\"},{\"name\":\"bob\","
             "\"spki\":\"%s\"},{\"name\":\"carol\",\"spki\":\"%s\"}],\"thresholds\":"
             "{\"ca.activate\":2},\"policy_hash\":\"00\",\"commitments\":{}}",
             ak[0].spki, ak[1].spki, ak[2].spki);
    snprintf(d1, sizeof(d1), "%s/q1", c->dir);
    snprintf(d2, sizeof(d2), "%s/q2", c->dir);
    snprintf(d3, sizeof(d3), "%s/q3", c->dir);
    open_ok(c, 5, 0);
    ev_init(&ev, "quorum.epoch", det);
    ev.target = "quorum";
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_OK); /* seq 2 */
    append_n(c->a, 8);
    {
        int who[2] = {0, 1};

        append_execute(c, req, ak, who, 2, 2, &s_ok); /* seq 11 */
    }
    assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, d1), HSMCA_OK);
    {
        struct hsmca_audit_verify_result r;

        assert_int_equal(hsmca_audit_verify_extract(d1, NULL, &r), HSMCA_OK);
        assert_int_equal(r.quorum_ops, 1);
    }
    /* a slice after the epoch entry: the epoch comes from approvers.json */
    assert_int_equal(hsmca_audit_extract(c->a, 8, 0, NULL, d2), HSMCA_OK);
    {
        struct hsmca_audit_verify_result r;

        assert_int_equal(hsmca_audit_verify_extract(d2, NULL, &r), HSMCA_OK);
        assert_int_equal(r.from, 7);
        assert_int_equal(r.quorum_ops, 1);
    }
    verify_sh_says(d1, 0, "1 quorum operations");
    verify_sh_says(d2, 0, "1 quorum operations");
    /* bad executes: each one named by its seq */
    {
        static const struct {
            int who[3], n, thr;
            int self;
            const char *why, *sh_why;
        } bad[] = {
            {{0, 0, 0}, 1, 2, 0, "1 valid distinct approvals, 2 needed", "1 valid distinct"},
            {{0, 1, 0}, 2, 1, 0, "threshold 1 is below the policy's 2", "threshold 1 is below"},
            {{0, 0x11, 0}, 2, 2, 0, "approval by bob does not verify", "approval by bob does not"},
            {{0, 0, 0}, 2, 2, 0, "counted twice", "counted twice"},
            {{0, 1, 0}, 2, 2, 1, "the requester alice approved its own", "requester alice"},
        };
        size_t i2;

        for (i2 = 0; i2 < sizeof(bad) / sizeof(bad[0]); i2++) {
            char dir[700];

            snprintf(dir, sizeof(dir), "%s/qbad%zu", c->dir, i2);
            append_execute(c, bad[i2].self ? selfreq : req, ak, bad[i2].who, bad[i2].n, bad[i2].thr,
                           &s_bad);
            assert_int_equal(hsmca_audit_extract(c->a, s_bad, 0, NULL, dir), HSMCA_OK);
            assert_int_equal(verify_dir(dir, NULL, s_bad, bad[i2].why), HSMCA_E_AUDIT_QUORUM);
            verify_sh_says(dir, 1, bad[i2].sh_why);
            /* keep the log verifiable for the next case: its own checkpoint boundary */
        }
    }
    (void)s_ok;
    for (i = 0; i < 3; i++)
        EVP_PKEY_free(ak[i].k);
}

/* ---- the tar form, intents, a store that cannot be written ---- */

static void
extract_tar_unpacks_and_verifies(void **state)
{
    struct ctx *c = *state;
    unsigned char *tar = NULL;
    size_t len = 0;
    char path[700], out[2048];
    FILE *f;

    open_ok(c, 7, 0);
    append_n(c->a, 20);
    assert_int_equal(hsmca_audit_extract_tar(c->a, 9, 0, NULL, &tar, &len), HSMCA_OK);
    assert_true(len % 512 == 0 && len > 2048);
    snprintf(path, sizeof(path), "%s/x.tar", c->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(tar, 1, len, f), len);
    fclose(f);
    free(tar);
    sh("cd %s && tar -xf x.tar", c->dir);
    snprintf(path, sizeof(path), "%s/hsmca-audit-extract", c->dir);
    assert_int_equal(verify_dir(path, NULL, 0, NULL), HSMCA_OK);
    verify_sh_says(path, 0, "valid: entries 9..21");
    assert_int_equal(run_hsmca(out, sizeof(out), "audit", "verify", path, NULL, NULL), 0);
}

static int reconciled;

static int
reconcile_cb(void *arg, uint64_t seq, const char *action)
{
    (void)arg;
    reconciled++;
    return strcmp(action, "key.generate") == 0 ? 1 : 0;
}

static void
intents_reconciled_at_open(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r1, r2, r3;
    struct hsmca_audit_config cfg;
    char why[256], *line = NULL;
    unsigned char h[32];
    size_t len;

    open_ok(c, 0, 0);
    ev_init(&ev, "key.generate", "{\"cka_id\":\"0102\"}");
    ev.outcome = "intent";
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, &r1), HSMCA_OK);
    ev_init(&ev, "pin.rotate", NULL);
    ev.outcome = "intent";
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, &r2), HSMCA_OK);
    ev_init(&ev, "pin.rotate", NULL);
    ev.outcome = "intent";
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, &r3), HSMCA_OK);
    /* the third completes; the first two are left open by a "crash" */
    ev_init(&ev, "pin.rotate", NULL);
    ev.closes_intent = r3.seq;
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_OK);
    assert_int_equal(hsmca_store_audit_get(c->st, 5, &line, &len, h), HSMCA_OK);
    assert_non_null(strstr(line, "\"detail\":{\"intent\":4}"));
    free(line);
    /* closing twice is refused, and refuses only that item */
    assert_int_equal(hsmca_audit_append(c->a, &ev, NULL, NULL, NULL), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    c->a = NULL;
    memset(&cfg, 0, sizeof(cfg));
    cfg.store = c->st;
    cfg.token = c->tok;
    cfg.key = c->key;
    cfg.reconcile = reconcile_cb;
    reconciled = 0;
    assert_int_equal(hsmca_audit_open(&cfg, &c->a, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(reconciled, 2);
    assert_int_equal(hsmca_store_audit_get(c->st, 6, &line, &len, h), HSMCA_OK);
    assert_non_null(strstr(line, "\"action\":\"key.generate.recovered\""));
    assert_non_null(strstr(line, "\"intent\":2"));
    free(line);
    assert_int_equal(hsmca_store_audit_get(c->st, 7, &line, &len, h), HSMCA_OK);
    assert_non_null(strstr(line, "\"action\":\"pin.rotate.orphan\""));
    free(line);
    /* nothing left to reconcile on the next open */
    assert_int_equal(hsmca_audit_close(c->a), HSMCA_OK);
    c->a = NULL;
    reconciled = 0;
    assert_int_equal(hsmca_audit_open(&cfg, &c->a, why, sizeof(why)), HSMCA_OK);
    assert_int_equal(reconciled, 0);
}

static void
write_failure_fails_closed(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct hsmca_audit_receipt r;
    sqlite3 *h = NULL;
    char *v = NULL;

    open_ok(c, 0, 0);
    append_n(c->a, 2);
    /* another process holds the write lock longer than the busy timeout */
    assert_int_equal(sqlite3_open(c->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    ev_init(&ev, "dac.issue", NULL);
    assert_int_equal(hsmca_audit_append(c->a, &ev, apply_meta, "lost", &r), HSMCA_E_AUDIT_WRITE);
    assert_int_equal(hsmca_err_http_status(HSMCA_E_AUDIT_WRITE), 503);
    assert_int_equal(hsmca_audit_size(c->a), 3);
    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);
    assert_int_equal(hsmca_store_meta_get(c->st, "test.key", &v), HSMCA_E_NOT_FOUND);
    /* the lock gone, the log goes on with the next seq */
    assert_int_equal(hsmca_audit_append(c->a, &ev, apply_meta, "kept", &r), HSMCA_OK);
    assert_int_equal(r.seq, 4);
    assert_int_equal(hsmca_store_meta_get(c->st, "test.key", &v), HSMCA_OK);
    assert_string_equal(v, "kept");
    free(v);
}

/* ---- the verifier's speed ---- */

static void
on_bench_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *r)
{
    struct async_done *d = arg;

    pthread_mutex_lock(&d->m);
    d->n++;
    d->ok += rc == HSMCA_OK;
    pthread_mutex_unlock(&d->m);
}

static void
verify_rate(void **state)
{
    struct ctx *c = *state;
    struct hsmca_audit_event ev;
    struct hsmca_audit_verify_result r;
    struct async_done d;
    struct timespec t0, t1;
    char dir[700];
    const char *env = getenv("HSMCA_AUDIT_BENCH_N");
    uint64_t n = 50000, i;
    double secs, rate;

    if (env != NULL && hsmca_parse_u64(env, strlen(env), 100000000, &n) != HSMCA_OK)
        n = 50000;
    memset(&d, 0, sizeof(d));
    pthread_mutex_init(&d.m, NULL);
    open_ok(c, 0, 0);
    ev_init(&ev, "dac.issue",
            "{\"csr_sha256\":\"6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b\","
            "\"serial\":\"4f1c2a9e0b7d3c5a6e8f1029384756ab\",\"vid\":\"FFF1\",\"pid\":\"8000\"}");
    for (i = 0; i < n; i++) {
        enum hsmca_err rc;

        while ((rc = hsmca_audit_submit(c->a, &ev, NULL, NULL, on_bench_done, &d)) == HSMCA_E_BUSY)
            usleep(1000);
        assert_int_equal(rc, HSMCA_OK);
    }
    for (i = 0; i < 60000; i++) {
        int done;

        pthread_mutex_lock(&d.m);
        done = d.n;
        pthread_mutex_unlock(&d.m);
        if ((uint64_t)done == n)
            break;
        usleep(1000);
    }
    assert_int_equal(d.ok, n);
    snprintf(dir, sizeof(dir), "%s/bench", c->dir);
    assert_int_equal(hsmca_audit_extract(c->a, 1, 0, NULL, dir), HSMCA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(hsmca_audit_verify_extract(dir, NULL, &r), HSMCA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    rate = (double)r.entries / secs;
    print_message("verify: %llu entries in %.3f s = %.0f entries/s\n",
                  (unsigned long long)r.entries, secs, rate);
    if (getenv("HSMCA_AUDIT_BENCH_OUT") != NULL) /* keep the extract for the CLI benchmark */
        sh("rm -rf '%s' && cp -r '%s' '%s'", getenv("HSMCA_AUDIT_BENCH_OUT"), dir,
           getenv("HSMCA_AUDIT_BENCH_OUT"));
    pthread_mutex_destroy(&d.m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(events_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(append_receipts_exact_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(apply_failure_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(submit_async_done_on_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(announced_entries_share_a_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_8_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_8_async_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(clock_step_back_is_an_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoints_verify_with_openssl, setup, teardown),
        cmocka_unit_test_setup_teardown(anchor_moves_off_the_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoints_heal_after_the_token_returns, setup, teardown),
        cmocka_unit_test_setup_teardown(heartbeat_when_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(open_names_first_bad_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(open_refuses_modified_head, setup, teardown),
        cmocka_unit_test_setup_teardown(open_refuses_restored_older_db, setup, teardown),
        cmocka_unit_test_setup_teardown(sigkill_keeps_every_returned_append, setup, teardown),
        cmocka_unit_test_setup_teardown(extract_tamper_matrix, setup, teardown),
        cmocka_unit_test_setup_teardown(previous_checkpoint_truncation_and_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(receipts_and_archive_cli, setup, teardown),
        cmocka_unit_test_setup_teardown(quorum_operations_rechecked, setup, teardown),
        cmocka_unit_test_setup_teardown(extract_tar_unpacks_and_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(intents_reconciled_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(write_failure_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_rate, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
