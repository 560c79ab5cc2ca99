/* SPDX-License-Identifier: Apache-2.0
 *
 * issue.c -- the DAC issuance engine: activation windows, quotas, idempotent request ids, dry
 * runs, batches, and the audit entry of every issuance, replay and refusal. Owns per-CA counters
 * (one mutex per CA, held for a few instructions), a pool of read-only store handles for request
 * id lookups, helper threads for batches, and the per-principal refusal limiter. Never writes the
 * store itself: the certificate row is written by the audit writer inside the entry's
 * transaction, and a DAC is released only from the audit's done callback.
 *
 * This file holds jobs, refusal summaries, the audit callbacks and the request path;
 * issue_quota.c the quotas, issue_ids.c the request-id filter, issue_batch.c batches, the helper
 * pool and the engine's life, issue_ca.c a CA's activation window; they share issue_internal.h.
 */
#include "issue_internal.h"

int64_t
issue_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- jobs */

static void
result_clear(struct hsmca_issue_result *r)
{
    OPENSSL_free(r->dac_der);
    r->dac_der = NULL;
    r->dac_len = 0;
    json_decref(r->doc);
    r->doc = NULL;
}

void
hsmca_issue_result_free(struct hsmca_issue_result *res)
{
    if (res == NULL)
        return;
    result_clear(res);
    free(res);
}

void
hsmca_issue_batch_result_free(struct hsmca_issue_batch_result *br)
{
    size_t i;

    if (br == NULL)
        return;
    for (i = 0; i < br->n; i++)
        result_clear(&br->items[i]);
    free(br->items);
    free(br);
}

void
issue_batch_finish(struct batch_acc *acc)
{
    struct hsmca_issue_batch_result *br = acc->br;
    size_t i;

    for (i = 0; i < br->n; i++) {
        if (br->items[i].rc != HSMCA_OK)
            br->failed++;
        else if (br->items[i].replayed)
            br->replayed++;
        else
            br->issued++;
    }
    acc->done(acc->done_arg, br);
    free(acc->jobs);
    free(acc);
}

/* Deliver a job's result: the last thing that touches the job. */
static void
job_finish(struct job *j)
{
    struct hsmca_issue_ca *ca = j->ca;

    if (j->res->rc != HSMCA_OK)
        atomic_fetch_add(&ca->total_refused, 1);
    if (j->acc != NULL) {
        if (atomic_fetch_sub(&j->acc->pending, 1) == 1)
            issue_batch_finish(j->acc);
    } else {
        j->done(j->done_arg, j->res);
        free(j);
    }
    pthread_mutex_lock(&ca->mu);
    if (--ca->jobs == 0)
        pthread_cond_broadcast(&ca->cv);
    pthread_mutex_unlock(&ca->mu);
}

/* Give back what a job reserved (window slot, quota units, request id). */
static void
job_release(struct job *j, int committed)
{
    struct hsmca_issue_ca *ca = j->ca;

    pthread_mutex_lock(&ca->mu);
    if (j->slot) {
        ca->in_flight--;
        if (committed) {
            ca->issued++;
        } else {
            ca->reserved--;
            if (ca->win[0] != '\0' && j->win_gen == ca->win_gen)
                ca->blk++;           /* back to this node's block of the shared window */
            issue_quota_give(ca, j); /* and to its quota blocks */
        }
        j->slot = 0;
    }
    if (j->id_held) {
        issue_ids_del(ca, j->rec.request_id);
        j->id_held = 0;
    }
    pthread_mutex_unlock(&ca->mu);
}

void
issue_sha256_hex(const void *p, size_t len, char out[HSMCA_SHA256_HEX_SIZE])
{
    unsigned char d[HSMCA_SHA256_LEN];

    SHA256(p, len, d);
    hsmca_hex_encode(d, sizeof(d), out, HSMCA_SHA256_HEX_SIZE);
}

/* ---------------------------------------------------------------- refusal limiter */

/* Done callback of entries nobody waits for: a lost entry is at least in the log. */
void
issue_done_ignore(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    (void)arg;
    (void)receipt;
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "issue", "refusal-entry-lost", "code=%s", hsmca_err_code(rc));
}

void
issue_summary_write(struct hsmca_issuer *iss, const struct hsmca_limiter_slot *s, int64_t t_ms)
{
    json_t *d = json_pack("{s:s, s:I, s:I, s:I}", "principal", s->key, "suppressed",
                          (json_int_t)s->suppressed, "since_ms", (json_int_t)s->since_ms,
                          "until_ms", (json_int_t)t_ms);
    char *txt = d != NULL ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct hsmca_audit_event ev = {.actor = s->key,
                                   .role = s->tag,
                                   .action = "dac.refuse.summary",
                                   .target = "",
                                   .outcome = "refused",
                                   .detail_json = txt,
                                   .kid = ""};

    if (txt == NULL ||
        hsmca_audit_submit(iss->audit, &ev, NULL, NULL, issue_done_ignore, NULL) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "issue", "refusal-summary-lost", "suppressed=%llu",
                  (unsigned long long)s->suppressed);
    free(txt);
    json_decref(d);
}

/* hsmca_limiter_drain's callback: a principal's refusals only counted get their summary. */
struct owed_arg {
    struct hsmca_issuer *iss;
    int64_t t_ms;
};

static void
summary_owed(void *arg, const struct hsmca_limiter_slot *s)
{
    const struct owed_arg *o = arg;

    issue_summary_write(o->iss, s, o->t_ms);
}

/* Summaries owed for ended minutes (all: every one, at the engine's end). */
void
issue_summaries_flush(struct hsmca_issuer *iss, int all)
{
    struct owed_arg o = {iss, issue_now_ms()};

    hsmca_limiter_drain(iss->lim, o.t_ms, all, summary_owed, &o);
}

void
hsmca_issuer_flush_refusals(struct hsmca_issuer *iss)
{
    if (iss == NULL)
        return;
    issue_summaries_flush(iss, 0);
}

/* ---------------------------------------------------------------- audit callbacks */

static void
done_entry(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt)
{
    struct job *j = arg;

    if (rc == HSMCA_OK && receipt != NULL) {
        j->res->has_receipt = 1;
        j->res->receipt = *receipt;
    }
    switch (j->kind) {
    case JOB_ISSUE:
        /* known before the id leaves the in-flight set: a retry then looks the store up */
        if (rc == HSMCA_OK && j->rec.request_id[0] != '\0')
            issue_known_add(j->ca, j->rec.request_id);
        job_release(j, rc == HSMCA_OK);
        if (rc == HSMCA_OK) {
            atomic_fetch_add(&j->ca->total_issued, 1);
        } else {
            /* nothing is released: neither the row nor the entry exists */
            j->res->rc = rc;
            snprintf(j->res->detail, sizeof(j->res->detail), "%s", hsmca_err_title(rc));
            result_clear(j->res);
        }
        break;
    case JOB_REPLAY:
        if (rc == HSMCA_OK) {
            atomic_fetch_add(&j->ca->total_replayed, 1);
        } else {
            j->res->rc = rc;
            result_clear(j->res);
        }
        break;
    case JOB_DRY:
        if (rc == HSMCA_OK) {
            atomic_fetch_add(&j->ca->total_dry, 1);
        } else {
            j->res->rc = rc;
            result_clear(j->res);
        }
        break;
    case JOB_REFUSE:
        /* the refusal stands whether or not its entry could be written */
        break;
    }
    job_finish(j);
}

static enum hsmca_err
apply_issue(struct hsmca_store *st, void *arg)
{
    struct job *j = arg;
    struct hsmca_cert_rec other;
    enum hsmca_err rc;

    rc = hsmca_store_cert_insert(st, &j->rec);
    if (rc != HSMCA_E_STORE_CONSTRAINT || j->rec.request_id[0] == '\0')
        return rc;
    /* another writer of this database took the request id after our lookup */
    memset(&other, 0, sizeof(other));
    if (hsmca_store_cert_by_request(st, j->rec.ca, j->rec.request_id, &other) == HSMCA_OK)
        rc = HSMCA_E_ISSUE_REQUEST_ID_CONFLICT;
    hsmca_cert_rec_clear(&other);
    return rc;
}

/* Submit the job's prepared entry (ev_* fields); on a synchronous failure the job finishes here
 * with that code. */
static void
job_submit_now(struct job *j)
{
    struct hsmca_audit_event ev;
    enum hsmca_err rc = HSMCA_E_NOMEM;
    const char *action = j->ev_action;
    char *detail = j->ev_detail;

    /* once submitted, the job belongs to the writer (it may be finished and freed already) */
    j->ev_detail = NULL;
    if (detail != NULL) {
        ev = (struct hsmca_audit_event){.actor = j->principal,
                                        .role = j->role,
                                        .action = action,
                                        .target = j->ca->target,
                                        .outcome = j->ev_outcome,
                                        .detail_json = detail,
                                        .detail_canonical = 1, /* job_submit, issue_detail_text */
                                        .kid = j->ca->kid};
        rc = hsmca_audit_submit(j->iss->audit, &ev, j->ev_apply, j, done_entry, j);
    }
    free(detail);
    if (rc == HSMCA_OK)
        return;
    hsmca_log(HSMCA_LOG_ERROR, "issue", "audit-submit-failed", "ca=%s action=%s code=%s",
              j->ca->rec.id, action, hsmca_err_code(rc));
    if (j->kind == JOB_REFUSE) {
        job_finish(j);
        return;
    }
    if (j->kind == JOB_ISSUE)
        job_release(j, 0);
    j->res->rc = rc;
    snprintf(j->res->detail, sizeof(j->res->detail), "%s", hsmca_err_title(rc));
    result_clear(j->res);
    job_finish(j);
}

void
issue_defer_flush(struct defer_q *q)
{
    size_t i, n = q->n;

    q->n = 0;
    for (i = 0; i < n; i++)
        job_submit_now(q->j[i]);
}

/* Write the job's entry (takes detail, canonical JSON text from malloc): now, or with its batch
 * worker's chunk. */
static void
job_submit_text(struct job *j, const char *action, const char *outcome, char *detail,
                hsmca_audit_apply_fn apply)
{
    j->ev_action = action;
    j->ev_outcome = outcome;
    j->ev_apply = apply;
    j->ev_detail = detail;
    if (j->defer != NULL && j->ev_detail != NULL) {
        struct defer_q *q = j->defer;

        q->j[q->n++] = j;
        if (q->n == DEFER_CHUNK)
            issue_defer_flush(q);
        return;
    }
    job_submit_now(j);
}

/* job_submit_text with detail a JSON object (taken). */
static void
job_submit(struct job *j, const char *action, const char *outcome, json_t *detail,
           hsmca_audit_apply_fn apply)
{
    char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    json_decref(detail);
    job_submit_text(j, action, outcome, text, apply);
}

/* Refuse the job with code (and a short English reason): a rate-limited "dac.refuse" entry, or
 * "dac.issue" outcome "failed" for a server-side failure. input hashes the raw request when the
 * CSR could not be read. */
static void
job_refuse(struct job *j, enum hsmca_err code, const char *why, const void *input, size_t len)
{
    struct hsmca_limiter_slot sum;
    json_t *d;
    int64_t t = issue_now_ms();
    int server = hsmca_err_http_status(code) >= 500;

    if (j->kind == JOB_ISSUE)
        job_release(j, 0);
    j->kind = JOB_REFUSE;
    result_clear(j->res);
    j->res->rc = code;
    snprintf(j->res->detail, sizeof(j->res->detail), "%s",
             why != NULL ? why : hsmca_err_title(code));
    if (!hsmca_limiter_admit(j->iss->lim, j->principal, j->role, t, &sum, NULL)) {
        if (sum.key[0] != '\0')
            issue_summary_write(j->iss, &sum, t);
        job_finish(j);
        return;
    }
    if (sum.key[0] != '\0')
        issue_summary_write(j->iss, &sum, t);
    d = json_pack("{s:s}", "code", hsmca_err_code(code));
    if (d != NULL && j->res->csr_sha256[0] != '\0') {
        json_object_set_new(d, "csr_sha256", json_string(j->res->csr_sha256));
    } else if (d != NULL && input != NULL) {
        char h[HSMCA_SHA256_HEX_SIZE];

        issue_sha256_hex(input, len, h);
        json_object_set_new(d, "input_sha256", json_string(h));
    }
    if (d != NULL && j->rec.request_id[0] != '\0')
        json_object_set_new(d, "request_id", json_string(j->rec.request_id));
    job_submit(j, server ? "dac.issue" : "dac.refuse", server ? "failed" : "refused", d, NULL);
}

/* ---------------------------------------------------------------- the request path */

static int
request_id_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > HSMCA_REQUEST_ID_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._~:@+=-", c) != NULL) ||
            c == '\0')
            return 0;
    }
    return 1;
}

static void
field_copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* Find (ca, request id) through one of the read-only handles. */
static enum hsmca_err
lookup(struct hsmca_issuer *iss, const char *ca, const char *id, struct hsmca_cert_rec *out)
{
    unsigned start = atomic_fetch_add(&iss->rd_next, 1) % iss->nrd, k;
    struct reader *r = NULL;
    enum hsmca_err rc;

    for (k = 0; k < iss->nrd; k++) {
        struct reader *c = &iss->rd[(start + k) % iss->nrd];

        if (pthread_mutex_trylock(&c->mu) == 0) {
            r = c;
            break;
        }
    }
    if (r == NULL) {
        r = &iss->rd[start];
        pthread_mutex_lock(&r->mu);
    }
    rc = hsmca_store_cert_by_request(r->st, ca, id, out);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* Take a user of ca->mi (for a dry run); NULL when the CA holds no key. */
static struct hsmca_matter_issuer *
mi_take(struct hsmca_issue_ca *ca)
{
    struct hsmca_matter_issuer *mi;

    pthread_mutex_lock(&ca->mu);
    mi = ca->mi;
    if (mi != NULL && ca->open)
        ca->signing++;
    else
        mi = NULL;
    pthread_mutex_unlock(&ca->mu);
    return mi;
}

static void
mi_drop(struct hsmca_issue_ca *ca)
{
    pthread_mutex_lock(&ca->mu);
    if (--ca->signing == 0)
        pthread_cond_broadcast(&ca->cv);
    pthread_mutex_unlock(&ca->mu);
}

/* Are too many audit entries waiting for a checkpoint the audit token cannot sign? */
static int
backlog_full(struct hsmca_issuer *iss)
{
    int failing = 0;
    uint64_t n = hsmca_audit_unsigned(iss->audit, &failing);

    return failing && n > iss->max_unsigned;
}

/* Reserve a window slot and quota units and become a signer. Returns the refusal code. */
static enum hsmca_err
reserve(struct hsmca_issue_ca *ca, struct job *j, int64_t t, struct hsmca_matter_issuer **mi)
{
    enum hsmca_err rc = HSMCA_OK;

    j->q_min_bucket = -1; /* no quota slot yet */
    j->q_day_bucket = -1;
    pthread_mutex_lock(&ca->mu);
    if (ca->mi == NULL || !ca->open)
        rc = HSMCA_E_ISSUE_CA_INACTIVE;
    else if (t >= ca->until_ms)
        rc = HSMCA_E_ISSUE_WINDOW_EXPIRED;
    else if (ca->win[0] == '\0' && ca->reserved >= ca->max_dacs)
        rc = HSMCA_E_ISSUE_WINDOW_EXHAUSTED;
    else if ((rc = issue_quota_slots(ca, j, t)) == HSMCA_OK && ca->win[0] != '\0')
        rc = issue_window_slot(ca, t); /* the shared count, last: nothing to give back after */
    if (rc == HSMCA_OK && (ca->mi == NULL || !ca->open))
        rc = HSMCA_E_ISSUE_CA_INACTIVE; /* closed while the store reserved */
    if (rc != HSMCA_OK)
        issue_quota_give(ca, j); /* the quota slots taken before the window refused */
    if (rc == HSMCA_OK) {
        j->win_gen = ca->win_gen;
        memcpy(j->rec.window, ca->win, sizeof(j->rec.window));
        ca->reserved++;
        ca->in_flight++;
        ca->signing++;
        j->slot = 1;
        *mi = ca->mi;
    }
    pthread_mutex_unlock(&ca->mu);
    return rc;
}

/* The "dac.issue" detail as canonical JSON (keys sorted, compact), written directly: jansson's
 * pack, dump and free cost more than the entry's SQLite insert. Every value is hex or a request
 * id (request_id_ok: no character JSON escapes), but the device id (printable ASCII, checked),
 * whose '"' and '\\' are escaped here. */
static char *
issue_detail_text(const struct job *j)
{
    char serial[41], sha[HSMCA_SHA256_HEX_SIZE], dev[16 + 2 * HSMCA_DEVICE_ID_MAX + 4];
    char text[96 + HSMCA_SHA256_HEX_LEN + HSMCA_REQUEST_ID_MAX + 40 + HSMCA_SHA256_HEX_LEN + 8 +
              sizeof(dev)];
    size_t i, o = 0;
    int n;

    hsmca_hex_encode(j->rec.serial, j->rec.serial_len, serial, sizeof(serial));
    hsmca_hex_encode(j->rec.sha256, sizeof(j->rec.sha256), sha, sizeof(sha));
    dev[0] = '\0';
    if (j->device_id[0] != '\0') {
        memcpy(dev, "\"device_id\":\"", 13);
        o = 13;
        for (i = 0; j->device_id[i] != '\0' && o + 4 < sizeof(dev); i++) {
            if (j->device_id[i] == '"' || j->device_id[i] == '\\')
                dev[o++] = '\\';
            dev[o++] = j->device_id[i];
        }
        memcpy(dev + o, "\",", 3); /* with its NUL */
    }
    n = snprintf(text, sizeof(text),
                 "{\"csr_sha256\":\"%s\",%s\"pid\":\"%04X\",\"request_id\":\"%s\","
                 "\"serial\":\"%s\",\"sha256\":\"%s\",\"vid\":\"%04X\"}",
                 j->res->csr_sha256, dev, (unsigned)j->rec.pid & 0xFFFFu, j->rec.request_id, serial,
                 sha, (unsigned)j->rec.vid & 0xFFFFu);
    return n > 0 && (size_t)n < sizeof(text) ? strdup(text) : NULL;
}

/* Dry run: lint, sign nothing, store nothing; audited as "dac.dry_run". */
static void
dry_run(struct job *j, const struct hsmca_issue_req *rq)
{
    struct hsmca_issue_ca *ca = j->ca;
    struct hsmca_matter_issuer *mi;
    struct hsmca_csr *csr = NULL;
    json_t *d, *rules, *p;
    enum hsmca_err rc;
    size_t i;

    if (hsmca_csr_parse(rq->csr, rq->csr_len, &csr) == HSMCA_OK)
        hsmca_hex_encode(hsmca_csr_sha256(csr), HSMCA_SHA256_LEN, j->res->csr_sha256,
                         sizeof(j->res->csr_sha256));
    hsmca_csr_free(csr);
    mi = mi_take(ca);
    if (mi == NULL) {
        job_refuse(j, HSMCA_E_ISSUE_CA_INACTIVE, NULL, rq->csr, rq->csr_len);
        return;
    }
    rc = hsmca_matter_dac_lint(mi, rq->csr, rq->csr_len, rq->pid_given, rq->pid, rq->device_id,
                               (time_t)(issue_now_ms() / 1000), &j->res->doc);
    mi_drop(ca);
    if (rc != HSMCA_OK) {
        job_refuse(j, rc, NULL, rq->csr, rq->csr_len);
        return;
    }
    j->kind = JOB_DRY;
    j->res->dry_run = 1;
    rules = json_array();
    json_array_foreach(json_object_get(j->res->doc, "problems"), i, p)
        json_array_append(rules, json_object_get(p, "rule"));
    d = json_pack("{s:b, s:o}", "ok", json_is_true(json_object_get(j->res->doc, "ok")), "problems",
                  rules);
    if (d != NULL && j->res->csr_sha256[0] != '\0') {
        json_object_set_new(d, "csr_sha256", json_string(j->res->csr_sha256));
    } else if (d != NULL) {
        char h[HSMCA_SHA256_HEX_SIZE];

        issue_sha256_hex(rq->csr, rq->csr_len, h);
        json_object_set_new(d, "input_sha256", json_string(h));
    }
    job_submit(j, "dac.dry_run", "ok", d, NULL);
}

/* A stored DAC for the same request id and CSR: hand it back, audited as "dac.replay". */
static void
replay(struct job *j, struct hsmca_cert_rec *old)
{
    char serial[41], sha[HSMCA_SHA256_HEX_SIZE];
    json_t *d;

    j->kind = JOB_REPLAY;
    j->res->replayed = 1;
    j->res->dac_der = OPENSSL_memdup(old->der, old->der_len);
    if (j->res->dac_der == NULL) {
        job_refuse(j, HSMCA_E_NOMEM, NULL, NULL, 0);
        return;
    }
    j->res->dac_len = old->der_len;
    memcpy(j->res->serial, old->serial, old->serial_len);
    j->res->serial_len = old->serial_len;
    hsmca_hex_encode(old->serial, old->serial_len, serial, sizeof(serial));
    hsmca_hex_encode(old->sha256, sizeof(old->sha256), sha, sizeof(sha));
    d = json_pack("{s:s, s:s, s:s, s:s}", "serial", serial, "sha256", sha, "csr_sha256",
                  j->res->csr_sha256, "request_id", j->rec.request_id);
    job_submit(j, "dac.replay", "ok", d, NULL);
}

/* The request's per-device subject value (or the CSR's, if the profile says so) under the
 * profile of window mi, into j->device_id ("" for none); why (DEVID_WHY bytes) says why not. */
#define DEVID_WHY 160
static enum hsmca_err
devid_check(struct job *j, const struct hsmca_matter_issuer *mi, const struct hsmca_csr *csr,
            const struct hsmca_issue_req *rq, char *why)
{
    int has = 0;
    enum hsmca_err rc;

    why[0] = '\0';
    rc = hsmca_matter_dac_device_id(hsmca_matter_issuer_profile(mi), csr, rq->device_id, &has,
                                    j->device_id, sizeof(j->device_id), why, DEVID_WHY);
    if (rc == HSMCA_OK && !has)
        j->device_id[0] = '\0';
    return rc;
}

/* One request, start to hand-off. The job is finished (or handed to the writer) on return. */
void
issue_process(struct job *j, const struct hsmca_issue_req *rq)
{
    struct hsmca_issue_ca *ca = j->ca;
    struct hsmca_csr *csr = NULL;
    struct hsmca_matter_issuer *mi = NULL;
    struct hsmca_cert_rec old;
    struct hsmca_matter_dac_request mr;
    const struct hsmca_profile *prof;
    int64_t backdate, days;
    int no_expiry;
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    unsigned char *der = NULL;
    size_t der_len = 0, idlen;
    int64_t t = issue_now_ms();
    time_t now = (time_t)(t / 1000);
    uint64_t started, signed_at;
    enum hsmca_err rc;
    int added, checked = 0;
    char why[DEVID_WHY];

    field_copy(j->principal, sizeof(j->principal), rq->principal);
    field_copy(j->role, sizeof(j->role), rq->role);
    j->device_id[0] = '\0';
    j->res->pai_der = ca->rec.cert_der;
    j->res->pai_len = ca->rec.cert_len;
    snprintf(j->rec.ca, sizeof(j->rec.ca), "%s", ca->rec.id);
    idlen = rq->request_id != NULL ? strnlen(rq->request_id, HSMCA_REQUEST_ID_MAX + 1) : 0;
    if (idlen > 0 && !request_id_ok(rq->request_id, idlen)) {
        job_refuse(j, HSMCA_E_ISSUE_REQUEST_ID_INVALID, NULL, rq->csr,
                   rq->csr != NULL ? rq->csr_len : 0);
        return;
    }
    if (idlen > 0)
        memcpy(j->rec.request_id, rq->request_id, idlen + 1);
    if (rq->csr == NULL) {
        job_refuse(j, HSMCA_E_CSR_MALFORMED, "no CSR", NULL, 0);
        return;
    }
    if (rq->dry_run) {
        dry_run(j, rq);
        return;
    }
    rc = hsmca_csr_parse(rq->csr, rq->csr_len, &csr);
    if (rc != HSMCA_OK) {
        job_refuse(j, rc, NULL, rq->csr, rq->csr_len > HSMCA_CSR_MAX ? 0 : rq->csr_len);
        return;
    }
    memcpy(j->rec.csr_sha256, hsmca_csr_sha256(csr), HSMCA_SHA256_LEN);
    hsmca_hex_encode(j->rec.csr_sha256, HSMCA_SHA256_LEN, j->res->csr_sha256,
                     sizeof(j->res->csr_sha256));

    if (idlen > 0) {
        pthread_mutex_lock(&ca->mu);
        added = issue_ids_add(ca, j->rec.request_id);
        pthread_mutex_unlock(&ca->mu);
        if (added <= 0) {
            hsmca_csr_free(csr);
            job_refuse(j, added < 0 ? HSMCA_E_NOMEM : HSMCA_E_ISSUE_REQUEST_ID_IN_FLIGHT, NULL,
                       NULL, 0);
            return;
        }
        j->id_held = 1;
        memset(&old, 0, sizeof(old));
        /* an id the store surely lacks needs no lookup; a "maybe" is looked up. Nodes sharing
         * a PostgreSQL store look every id up: another node may have issued it, and the filter
         * is only this node's cache */
        rc = issue_known_maybe(ca, j->rec.request_id) || hsmca_store_is_pg(j->iss->rd[0].st)
                 ? lookup(j->iss, ca->rec.id, j->rec.request_id, &old)
                 : HSMCA_E_NOT_FOUND;
        if (rc == HSMCA_OK) {
            job_release(j, 0);
            if (CRYPTO_memcmp(old.csr_sha256, j->rec.csr_sha256, HSMCA_SHA256_LEN) == 0)
                replay(j, &old);
            else
                job_refuse(j, HSMCA_E_ISSUE_REQUEST_ID_CONFLICT, NULL, NULL, 0);
            hsmca_cert_rec_clear(&old);
            hsmca_csr_free(csr);
            return;
        }
        hsmca_cert_rec_clear(&old);
        if (rc != HSMCA_E_NOT_FOUND) {
            hsmca_csr_free(csr);
            job_refuse(j, rc, NULL, NULL, 0);
            return;
        }
    }

    /* a per-device subject value under the open window's profile: refused (and audited)
     * before it takes a window slot. Without one in the request (the hot path: no extra lock),
     * or without a window, it is checked once the slot is reserved (the profile may want one, or
     * take the CSR's), and the build checks it again under the window it signs in. */
    mi = rq->device_id != NULL ? mi_take(ca) : NULL;
    if (mi != NULL) {
        rc = devid_check(j, mi, csr, rq, why);
        mi_drop(ca);
        mi = NULL;
        if (rc != HSMCA_OK) {
            hsmca_csr_free(csr);
            job_refuse(j, rc, why[0] != '\0' ? why : NULL, NULL, 0);
            return;
        }
        checked = 1;
    }

    /* nothing is signed that the audit log cannot soon cover with a signed checkpoint: while
     * checkpoints fail, at most max_unsigned entries lie beyond the last one (a working token
     * never gets there, so a burst between a batch and its checkpoint is never refused) */
    if (j->iss->max_unsigned > 0 && backlog_full(j->iss))
        rc = HSMCA_E_AUDIT_UNSIGNED_BACKLOG;
    else
        rc = reserve(ca, j, t, &mi);
    if (rc != HSMCA_OK) {
        hsmca_csr_free(csr);
        job_refuse(j, rc, NULL, NULL, 0);
        return;
    }
    if (!checked && (rc = devid_check(j, mi, csr, rq, why)) != HSMCA_OK) {
        mi_drop(ca);
        hsmca_csr_free(csr);
        job_refuse(j, rc, why[0] != '\0' ? why : NULL, NULL, 0); /* releases the slot */
        return;
    }
    mr = (struct hsmca_matter_dac_request){csr, rq->pid_given, rq->pid, now,
                                           j->device_id[0] != '\0' ? j->device_id : NULL};
    started = hsmca_mono_us();
    rc = hsmca_matter_dac_build(mi, &mr, 0, serial, &der, &der_len);
    signed_at = hsmca_mono_us();
    prof = hsmca_matter_issuer_profile(mi); /* the profile this DAC was made under */
    backdate = (int64_t)prof->backdate;
    days = (int64_t)prof->days;
    no_expiry = prof->no_expiry;
    mi_drop(ca);
    hsmca_csr_free(csr);
    if (rc != HSMCA_OK) {
        job_refuse(j, rc, NULL, NULL, 0);
        return;
    }
    j->res->sign_us = signed_at - started;
    j->res->dac_der = der;
    j->res->dac_len = der_len;
    memcpy(j->res->serial, serial, sizeof(serial));
    j->res->serial_len = sizeof(serial);
    memcpy(j->rec.serial, serial, sizeof(serial));
    j->rec.serial_len = sizeof(serial);
    SHA256(der, der_len, j->rec.sha256);
    j->rec.vid = ca->scope.vid;
    j->rec.pid = rq->pid_given ? rq->pid : ca->scope.pid;
    j->rec.not_before = (int64_t)now - backdate;
    j->rec.not_after = no_expiry ? INT64_C(253402300799) : j->rec.not_before + days * 86400 - 1;
    j->rec.issued_ms = t;
    j->rec.der = der; /* borrowed from the result */
    j->rec.der_len = der_len;
    job_submit_text(j, "dac.issue", "ok", issue_detail_text(j), apply_issue);
}
