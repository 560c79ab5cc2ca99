/* SPDX-License-Identifier: Apache-2.0
 *
 * routes_bundle.c -- the factory's offline bundles (docs/factory.md):
 *   POST /v1/lines                              (admin) register a production line's certificate
 *   POST /v1/cas/{ca}/bundles                   (operator) N device identities sealed to a line
 *   POST /v1/cas/{ca}/bundles/{id}/receipt      (operator) the factory acknowledges receipt
 * A bundle larger than what the CA's window and quotas have left is refused before any key is
 * made. Otherwise a thread of its own makes the keys and CSRs in memory, hands them to the
 * issuance engine as one batch (each DAC checked, signed and audited as any other), seals the
 * archive to the line's certificate (bundle.c), wipes the keys, writes the "bundle.seal" entry
 * with the bundle's row, and only then answers with the envelope.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hsmca/bundle.h"
#include "hsmca/issue.h"
#include "hsmca/log.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#include "hsmcad.h"
#include "problem.h"
#include "routes.h"
#include "routes_issue.h"

/* Bundles made at the same time (each holds up to HSMCA_BUNDLE_MAX keys in memory). */
#define BUNDLES_AT_ONCE 2
#define BUNDLE_RETRY_S 5

static unsigned bundles_running;

/* ---- refusals decided after the request was parked ---- */

struct late {
    struct hsmcad_req *r;
    pthread_mutex_t *mu; /* NULL: resume r when durable; else signal cv */
    pthread_cond_t *cv;
    int *flag;
};

static void
late_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct late *l = arg;

    if (rc == HSMCA_OK && receipt != NULL)
        hsmcad_req_receipt(l->r, receipt);
    if (l->mu == NULL) {
        hsmcad_req_resume(l->r);
    } else {
        pthread_mutex_lock(l->mu);
        *l->flag = 1;
        pthread_cond_signal(l->cv);
        pthread_mutex_unlock(l->mu);
    }
    free(l);
}

/*
 * Reply the problem e for r (parked) and write its refusal entry (action, outcome "refused", detail
 * {code}); then resume r, or, with mu, set *flag and signal cv instead. Runs on any thread.
 */
static void
late_refuse(struct hsmcad_req *r, const char *action, const char *target, enum hsmca_err e,
            const char *detail, pthread_mutex_t *mu, pthread_cond_t *cv, int *flag)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    const struct hsmcad_principal *who = hsmcad_req_principal(r);
    struct hsmca_audit_event ev;
    struct late *l = calloc(1, sizeof(*l));
    char det[128];

    hsmcad_reply_problem(r, e, detail);
    hsmcad_req_engine_audited(r);
    snprintf(det, sizeof(det), "{\"code\":\"%s\"}", hsmca_err_code(e));
    hsmca_audit_event_set(&ev, who->name, hsmcad_role_name(who->role), action, target, "refused",
                          det);
    if (l != NULL) {
        l->r = r;
        l->mu = mu;
        l->cv = cv;
        l->flag = flag;
        if (d->audit != NULL &&
            hsmca_audit_submit(d->audit, &ev, NULL, NULL, late_done, l) == HSMCA_OK)
            return;
        free(l);
    }
    /* nothing written: fail closed, the reply says the audit failed */
    hsmcad_reply_problem(r, HSMCA_E_AUDIT_WRITE, "the refusal could not be audited");
    if (mu == NULL) {
        hsmcad_req_resume(r);
    } else {
        pthread_mutex_lock(mu);
        *flag = 1;
        pthread_cond_signal(cv);
        pthread_mutex_unlock(mu);
    }
}

/* ---- lines ---- */

struct line_reg {
    struct hsmcad_req *r;
    char name[HSMCA_LINE_NAME_MAX + 1];
    char who[HSMCAD_PRINCIPAL_MAX + 1];
    unsigned char *der;
    size_t len;
    unsigned char sha[HSMCA_SHA256_LEN];
    int64_t now;
};

static enum hsmca_err
line_apply(struct hsmca_store *st, void *arg)
{
    struct line_reg *l = arg;

    return hsmca_store_line_put(st, l->name, l->der, l->len, l->sha, l->who, l->now);
}

static void
line_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct line_reg *l = arg;
    struct hsmcad_req *r = l->r;
    char hex[HSMCA_SHA256_HEX_SIZE];

    hsmca_hex_encode(l->sha, HSMCA_SHA256_LEN, hex, sizeof(hex));
    if (rc == HSMCA_OK) {
        char loc[HSMCA_LINE_NAME_MAX + 16];

        snprintf(loc, sizeof(loc), "/v1/lines/%s", l->name); /* the line's name (docs/factory.md) */
        hsmcad_req_receipt(r, receipt);
        hsmcad_req_engine_audited(r);
        hsmcad_reply_header(r, "Location", loc);
        hsmcad_reply_json(r, 201,
                          json_pack("{s:s, s:s, s:I}", "name", l->name, "sha256", hex, "created_ms",
                                    (json_int_t)l->now));
        hsmcad_req_resume(r);
    } else {
        char target[HSMCA_LINE_NAME_MAX + 8];

        /* the entry was rolled back with the row (a line registered meanwhile) */
        snprintf(target, sizeof(target), "line/%s", l->name);
        late_refuse(r, "line.register", target, rc, NULL, NULL, NULL, NULL);
    }
    free(l->der);
    free(l);
}

void
hsmcad_h_line_register(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    const struct hsmcad_principal *who = hsmcad_req_principal(r);
    struct hsmca_audit_event ev;
    struct line_reg *l = NULL;
    json_t *body;
    json_error_t jerr;
    const char *name = NULL, *cert = NULL;
    const unsigned char *b;
    size_t blen;
    char detail[256], target[HSMCA_LINE_NAME_MAX + 8], hex[HSMCA_SHA256_HEX_SIZE];
    enum hsmca_err rc;

    b = hsmcad_req_body(r, &blen);
    body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL || json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s, s:s}", "name", &name,
                                       "certificate", &cert) != 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST,
                             "expected {\"name\": [a-z0-9-]{1,64}, \"certificate\": PEM}");
        goto out;
    }
    if (!hsmca_line_name_ok(name)) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST, "a line name is [a-z0-9-]{1,64}");
        goto out;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    l->now = hsmcad_now_ms();
    rc = hsmca_line_cert_check((const unsigned char *)cert, strlen(cert), l->now, &l->der, &l->len,
                               l->sha);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        goto out;
    }
    if (d->audit == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_NOT_READY, NULL);
        goto out;
    }
    {
        struct hsmca_store *ro = hsmcad_ro(d);
        unsigned char *old = NULL;
        size_t ol = 0;

        rc = ro != NULL ? hsmca_store_line_get(ro, name, &old, &ol) : HSMCA_E_STORE_OPEN;
        free(old);
        if (rc != HSMCA_E_LINE_NOT_FOUND) {
            hsmcad_reply_problem(r, rc == HSMCA_OK ? HSMCA_E_LINE_EXISTS : rc, NULL);
            goto out;
        }
    }
    snprintf(l->name, sizeof(l->name), "%s", name);
    snprintf(l->who, sizeof(l->who), "%s", who->name);
    l->r = r;
    hsmca_hex_encode(l->sha, HSMCA_SHA256_LEN, hex, sizeof(hex));
    snprintf(target, sizeof(target), "line/%s", l->name);
    snprintf(detail, sizeof(detail), "{\"name\":\"%s\",\"sha256\":\"%s\"}", l->name, hex);
    hsmca_audit_event_set(&ev, who->name, hsmcad_role_name(who->role), "line.register", target,
                          "ok", detail);
    hsmcad_req_suspend(r);
    rc = hsmca_audit_submit(d->audit, &ev, line_apply, l, line_done, l);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        hsmcad_req_resume(r);
        goto out;
    }
    l = NULL;
out:
    if (l != NULL)
        free(l->der);
    free(l);
    json_decref(body);
}

/* ---- bundles ---- */

struct job {
    struct hsmcad_req *r;
    struct hsmcad *d;
    struct hsmca_issue_ca *ica;
    char ca[HSMCA_CA_ID_MAX + 1];
    char line[HSMCA_LINE_NAME_MAX + 1];
    char id[HSMCA_BUNDLE_ID_LEN + 1];
    char principal[HSMCAD_PRINCIPAL_MAX + 1], role[16];
    size_t n;
    unsigned char *line_cert;
    size_t line_len;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int batch_done, audit_done;
    struct hsmca_issue_batch_result *br;
    enum hsmca_err audit_rc;
    struct hsmca_audit_receipt receipt;
    struct hsmca_bundle_rec rec;
};

static void
job_free(struct job *j)
{
    if (j == NULL)
        return;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->line_cert);
    free(j);
    __atomic_fetch_sub(&bundles_running, 1, __ATOMIC_ACQ_REL);
}

static void
job_batch_done(void *arg, struct hsmca_issue_batch_result *br)
{
    struct job *j = arg;
    size_t i;

    hsmcad_metrics_dac(j->d->metrics, j->ca, 0, br->issued);
    hsmcad_metrics_dac(j->d->metrics, j->ca, 1, br->failed);
    for (i = 0; i < br->n; i++)
        if (br->items[i].sign_us > 0)
            hsmcad_metrics_sign(j->d->metrics, br->items[i].sign_us);
    pthread_mutex_lock(&j->mu);
    j->br = br;
    j->batch_done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static enum hsmca_err
seal_apply(struct hsmca_store *st, void *arg)
{
    struct job *j = arg;

    return hsmca_store_bundle_put(st, &j->rec);
}

static void
seal_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct job *j = arg;

    pthread_mutex_lock(&j->mu);
    j->audit_rc = rc;
    if (receipt != NULL)
        j->receipt = *receipt;
    j->audit_done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Fail the bundle: reply, audit the refusal ("bundle.seal", refused), wait until durable. */
static void
job_fail(struct job *j, enum hsmca_err e, const char *detail)
{
    char target[HSMCA_CA_ID_MAX + 4];

    snprintf(target, sizeof(target), "ca/%s", j->ca);
    j->audit_done = 0;
    late_refuse(j->r, "bundle.seal", target, e, detail, &j->mu, &j->cv, &j->audit_done);
    pthread_mutex_lock(&j->mu);
    while (!j->audit_done)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

static void *
job_run(void *arg)
{
    struct job *j = arg;
    struct hsmcad_req *r = j->r;
    struct hsmca_bundle_keys *keys = NULL;
    struct hsmca_issue_req *items = NULL;
    struct hsmca_bundle_device *dev = NULL;
    char(*rids)[64] = NULL, (*serials)[41] = NULL;
    struct hsmca_bundle_info info;
    struct hsmca_audit_event ev;
    unsigned char *env = NULL;
    const unsigned char *pai = NULL;
    size_t env_len = 0, pai_len = 0, issued = 0, i;
    char detail[512], target[HSMCA_CA_ID_MAX + 4], mh[HSMCA_SHA256_HEX_SIZE],
        eh[HSMCA_SHA256_HEX_SIZE], loc[160];
    uint64_t t0 = hsmca_mono_us(), t_keys, t_dacs, t_seal;
    enum hsmca_err rc;

    rc = hsmca_bundle_keys_new(j->n, 0, &keys);
    t_keys = hsmca_mono_us();
    items = calloc(j->n, sizeof(*items));
    rids = calloc(j->n, sizeof(*rids));
    serials = calloc(j->n, sizeof(*serials));
    dev = calloc(j->n, sizeof(*dev));
    if (rc != HSMCA_OK || items == NULL || rids == NULL || serials == NULL || dev == NULL) {
        job_fail(j, rc != HSMCA_OK ? rc : HSMCA_E_NOMEM, "the device keys could not be made");
        goto out;
    }
    for (i = 0; i < j->n; i++) {
        snprintf(rids[i], sizeof(rids[i]), "bundle-%s-%04zu", j->id, i);
        items[i].csr = keys->csr[i];
        items[i].csr_len = keys->csr_len[i];
        items[i].request_id = rids[i];
        items[i].principal = j->principal;
        items[i].role = j->role;
    }
    rc = hsmca_issue_batch_submit(j->d->issuer, j->ica, items, j->n, job_batch_done, j);
    if (rc != HSMCA_OK) {
        job_fail(j, rc, NULL);
        goto out;
    }
    pthread_mutex_lock(&j->mu);
    while (!j->batch_done)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    t_dacs = hsmca_mono_us();
    for (i = 0; i < j->n; i++) {
        struct hsmca_issue_result *res = &j->br->items[i];

        dev[i].key = keys->keys[i];
        dev[i].pub = keys->pub[i];
        dev[i].request_id = rids[i];
        if (res->rc != HSMCA_OK || res->dry_run || res->dac_der == NULL)
            continue;
        dev[i].dac = res->dac_der;
        dev[i].dac_len = res->dac_len;
        hsmca_hex_encode(res->serial, res->serial_len, serials[i], sizeof(serials[i]));
        dev[i].serial_hex = serials[i];
        pai = res->pai_der;
        pai_len = res->pai_len;
    }
    if (pai == NULL) {
        /* not one DAC: the first refusal says why (each is audited by the engine) */
        job_fail(j, j->br->n > 0 ? j->br->items[0].rc : HSMCA_E_INTERNAL,
                 "no DAC of the bundle was issued");
        goto out;
    }
    memset(&info, 0, sizeof(info));
    info.id = j->id;
    info.ca = j->ca;
    info.line = j->line;
    info.requester = j->principal;
    info.created_ms = hsmcad_now_ms();
    info.pai = pai;
    info.pai_len = pai_len;
    rc = hsmca_bundle_seal(&info, dev, j->n, j->line_cert, j->line_len, &env, &env_len,
                           j->rec.manifest_sha256, j->rec.envelope_sha256, &issued);
    /* the keys are gone once sealed (or not): the envelope is their only copy */
    hsmca_bundle_keys_free(keys);
    keys = NULL;
    memset(dev, 0, j->n * sizeof(*dev));
    t_seal = hsmca_mono_us();
    if (rc != HSMCA_OK) {
        job_fail(j, rc, NULL);
        goto out;
    }
    snprintf(j->rec.id, sizeof(j->rec.id), "%s", j->id);
    snprintf(j->rec.ca, sizeof(j->rec.ca), "%s", j->ca);
    snprintf(j->rec.line, sizeof(j->rec.line), "%s", j->line);
    snprintf(j->rec.requester, sizeof(j->rec.requester), "%s", j->principal);
    j->rec.count = (int64_t)issued;
    j->rec.created_ms = info.created_ms;
    hsmca_hex_encode(j->rec.manifest_sha256, HSMCA_SHA256_LEN, mh, sizeof(mh));
    hsmca_hex_encode(j->rec.envelope_sha256, HSMCA_SHA256_LEN, eh, sizeof(eh));
    snprintf(detail, sizeof(detail),
             "{\"bundle\":\"%s\",\"count\":%zu,\"envelope_sha256\":\"%s\",\"line\":\"%s\","
             "\"manifest_sha256\":\"%s\",\"requested\":%zu}",
             j->id, issued, eh, j->line, mh, j->n);
    snprintf(target, sizeof(target), "ca/%s", j->ca);
    hsmca_audit_event_set(&ev, j->principal, j->role, "bundle.seal", target, "ok", detail);
    j->audit_done = 0;
    rc = hsmca_audit_submit(j->d->audit, &ev, seal_apply, j, seal_done, j);
    if (rc == HSMCA_OK) {
        pthread_mutex_lock(&j->mu);
        while (!j->audit_done)
            pthread_cond_wait(&j->cv, &j->mu);
        pthread_mutex_unlock(&j->mu);
        rc = j->audit_rc;
    }
    hsmcad_req_engine_audited(r);
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, "the bundle's audit entry could not be written");
        goto out;
    }
    hsmcad_req_receipt(r, &j->receipt);
    /* the phases' times, for tools/bench: keys and CSRs, the engine's batch, the archive and seal
     */
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "bundle-sealed",
              "id=%s ca=%s line=%s requested=%zu sealed=%zu keys_us=%llu dacs_us=%llu "
              "seal_us=%llu total_us=%llu",
              j->id, j->ca, j->line, j->n, issued, (unsigned long long)(t_keys - t0),
              (unsigned long long)(t_dacs - t_keys), (unsigned long long)(t_seal - t_dacs),
              (unsigned long long)(hsmca_mono_us() - t0));
    snprintf(loc, sizeof(loc), "/v1/cas/%s/bundles/%s", j->ca, j->id);
    hsmcad_reply(r, 201, "application/pkcs7-mime; smime-type=enveloped-data", (char *)env, env_len);
    env = NULL;
    hsmcad_reply_header(r, "Location", loc);
out:
    free(env);
    hsmca_bundle_keys_free(keys);
    if (j->br != NULL)
        hsmca_issue_batch_result_free(j->br);
    free(items);
    free(rids);
    free(serials);
    free(dev);
    job_free(j);
    hsmcad_req_resume(r);
    return NULL;
}

/* How many DACs the CA may still issue now (window and quotas); 0 when inactive. */
static uint64_t
room(struct hsmca_issue_ca *ica, enum hsmca_err *why)
{
    struct hsmca_issue_ca_state st;
    uint64_t left;
    int64_t now = hsmcad_now_ms();

    hsmca_issue_ca_state(ica, now, &st);
    *why = HSMCA_E_BUNDLE_EXCEEDS_WINDOW;
    if (!st.active) {
        *why = !st.keyed            ? HSMCA_E_ISSUE_CA_INACTIVE
               : st.until_ms <= now ? HSMCA_E_ISSUE_WINDOW_EXPIRED
                                    : HSMCA_E_ISSUE_WINDOW_EXHAUSTED;
        return 0;
    }
    left = st.remaining;
    if (st.per_minute > 0)
        left =
            st.minute_count >= st.per_minute
                ? 0
                : (st.per_minute - st.minute_count < left ? st.per_minute - st.minute_count : left);
    if (st.per_day > 0)
        left = st.day_count >= st.per_day
                   ? 0
                   : (st.per_day - st.day_count < left ? st.per_day - st.day_count : left);
    return left;
}

void
hsmcad_h_bundle(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    const struct hsmcad_principal *p = hsmcad_req_principal(r);
    struct hsmca_issue_ca *ica = hsmcad_issuing_ca(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    struct job *j = NULL;
    json_t *body;
    json_error_t jerr;
    const char *line = NULL;
    json_int_t count = 0;
    const unsigned char *b;
    unsigned char rnd[16];
    size_t blen;
    uint64_t left;
    char msg[128];
    enum hsmca_err rc, why;
    pthread_t th;
    pthread_attr_t at;

    b = hsmcad_req_body(r, &blen);
    body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL || json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s, s:I}", "line", &line,
                                       "count", &count) != 0) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST,
                             "expected {\"line\": name, \"count\": 1..1000}");
        goto out;
    }
    if (ica == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_CA_NOT_FOUND, "no PAI with that id issues DACs here");
        goto out;
    }
    if (count < 1 || count > HSMCA_BUNDLE_MAX || (uint64_t)count > d->cfg.batch_max) {
        hsmcad_reply_problem(r, HSMCA_E_BUNDLE_COUNT_INVALID, NULL);
        goto out;
    }
    if (!hsmca_line_name_ok(line)) {
        hsmcad_reply_problem(r, HSMCA_E_LINE_NOT_FOUND, NULL);
        goto out;
    }
    /* before any key: the whole bundle must fit in what the window and quotas have left */
    left = room(ica, &why);
    if ((uint64_t)count > left) {
        snprintf(msg, sizeof(msg), "%lld devices asked, %llu left in the window and quotas",
                 (long long)count, (unsigned long long)left);
        hsmcad_reply_problem(
            r,
            left == 0 && why != HSMCA_E_BUNDLE_EXCEEDS_WINDOW ? why : HSMCA_E_BUNDLE_EXCEEDS_WINDOW,
            msg);
        goto out;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    rc = ro != NULL ? hsmca_store_line_get(ro, line, &j->line_cert, &j->line_len)
                    : HSMCA_E_STORE_OPEN;
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        goto out;
    }
    if (__atomic_add_fetch(&bundles_running, 1, __ATOMIC_ACQ_REL) > BUNDLES_AT_ONCE) {
        __atomic_fetch_sub(&bundles_running, 1, __ATOMIC_ACQ_REL);
        hsmcad_reply_problem(r, HSMCA_E_BUNDLE_BUSY, NULL);
        snprintf(msg, sizeof(msg), "%d", BUNDLE_RETRY_S);
        hsmcad_reply_header(r, "Retry-After", msg);
        goto out;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        __atomic_fetch_sub(&bundles_running, 1, __ATOMIC_ACQ_REL);
        hsmcad_reply_problem(r, HSMCA_E_RANDOM, NULL);
        goto out;
    }
    hsmca_hex_encode(rnd, sizeof(rnd), j->id, sizeof(j->id));
    j->r = r;
    j->d = d;
    j->ica = ica;
    j->n = (size_t)count;
    snprintf(j->ca, sizeof(j->ca), "%s", hsmcad_req_param(r, 0));
    snprintf(j->line, sizeof(j->line), "%s", line);
    snprintf(j->principal, sizeof(j->principal), "%s", p->name);
    snprintf(j->role, sizeof(j->role), "%s", hsmcad_role_name(p->role));
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    hsmcad_req_suspend(r);
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, job_run, j) != 0) {
        pthread_attr_destroy(&at);
        job_free(j);
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        hsmcad_req_resume(r);
        j = NULL;
        goto out;
    }
    pthread_attr_destroy(&at);
    j = NULL;
out:
    if (j != NULL)
        free(j->line_cert);
    free(j);
    json_decref(body);
}

/* ---- receipt ---- */

struct ack {
    struct hsmcad_req *r;
    char id[HSMCA_BUNDLE_ID_LEN + 1];
    char who[HSMCAD_PRINCIPAL_MAX + 1];
    int64_t now;
};

static enum hsmca_err
ack_apply(struct hsmca_store *st, void *arg)
{
    struct ack *a = arg;

    return hsmca_store_bundle_receive(st, a->id, a->who, a->now);
}

static void
ack_done(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct ack *a = arg;
    struct hsmcad_req *r = a->r;

    if (rc == HSMCA_OK) {
        hsmcad_req_receipt(r, receipt);
        hsmcad_req_engine_audited(r);
        hsmcad_reply_json(r, 200,
                          json_pack("{s:s, s:s, s:I}", "bundle", a->id, "received_by", a->who,
                                    "received_ms", (json_int_t)a->now));
        hsmcad_req_resume(r);
    } else {
        char target[HSMCA_CA_ID_MAX + 4];

        snprintf(target, sizeof(target), "ca/%s", hsmcad_req_param(r, 0));
        late_refuse(r, "bundle.receipt", target, rc, NULL, NULL, NULL, NULL);
    }
    free(a);
}

void
hsmcad_h_bundle_receipt(struct hsmcad_req *r)
{
    struct hsmcad *d = hsmcad_req_daemon(r);
    const struct hsmcad_principal *who = hsmcad_req_principal(r);
    struct hsmca_store *ro = hsmcad_ro(d);
    struct hsmca_bundle_rec rec;
    struct hsmca_audit_event ev;
    struct ack *a = NULL;
    json_t *body;
    json_error_t jerr;
    const char *mh = NULL;
    const unsigned char *b;
    unsigned char want[HSMCA_SHA256_LEN];
    size_t blen, wl = 0;
    char detail[256], target[HSMCA_CA_ID_MAX + 4];
    enum hsmca_err rc;

    b = hsmcad_req_body(r, &blen);
    body = json_loadb((const char *)b, blen, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL ||
        json_unpack_ex(body, &jerr, JSON_STRICT, "{s:s}", "manifest_sha256", &mh) != 0 ||
        strlen(mh) != HSMCA_SHA256_HEX_LEN ||
        hsmca_hex_decode(mh, HSMCA_SHA256_HEX_LEN, want, sizeof(want), &wl) != HSMCA_OK ||
        wl != HSMCA_SHA256_LEN) {
        hsmcad_reply_problem(r, HSMCA_E_HTTP_BAD_REQUEST,
                             "expected {\"manifest_sha256\": 64 hex digits}");
        goto out;
    }
    rc = ro != NULL ? hsmca_store_bundle_get(ro, hsmcad_req_param(r, 1), &rec) : HSMCA_E_STORE_OPEN;
    if (rc == HSMCA_OK && strcmp(rec.ca, hsmcad_req_param(r, 0)) != 0)
        rc = HSMCA_E_BUNDLE_NOT_FOUND;
    if (rc == HSMCA_OK && rec.received_ms != 0)
        rc = HSMCA_E_BUNDLE_ALREADY_RECEIVED;
    if (rc == HSMCA_OK && CRYPTO_memcmp(want, rec.manifest_sha256, HSMCA_SHA256_LEN) != 0)
        rc = HSMCA_E_BUNDLE_RECEIPT_MISMATCH;
    if (rc == HSMCA_OK && d->audit == NULL)
        rc = HSMCA_E_HTTP_NOT_READY;
    if (rc != HSMCA_OK) {
        hsmcad_reply_problem(r, rc, NULL);
        goto out;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        hsmcad_reply_problem(r, HSMCA_E_NOMEM, NULL);
        goto out;
    }
    a->r = r;
    a->now = hsmcad_now_ms();
    snprintf(a->id, sizeof(a->id), "%s", rec.id);
    snprintf(a->who, sizeof(a->who), "%s", who->name);
    snprintf(target, sizeof(target), "ca/%s", rec.ca);
    snprintf(detail, sizeof(detail),
             "{\"bundle\":\"%s\",\"count\":%lld,\"line\":\"%s\",\"manifest_sha256\":\"%s\"}",
             rec.id, (long long)rec.count, rec.line, mh);
    hsmca_audit_event_set(&ev, who->name, hsmcad_role_name(who->role), "bundle.receipt", target,
                          "ok", detail);
    hsmcad_req_suspend(r);
    rc = hsmca_audit_submit(d->audit, &ev, ack_apply, a, ack_done, a);
    if (rc != HSMCA_OK) {
        free(a);
        hsmcad_reply_problem(r, rc, NULL);
        hsmcad_req_resume(r);
    }
    a = NULL;
out:
    free(a);
    json_decref(body);
}
