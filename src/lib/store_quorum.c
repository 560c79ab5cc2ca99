/* SPDX-License-Identifier: Apache-2.0
 *
 * store_quorum.c -- SQL for the quorum state (store_quorum.h): approvers, epochs, CA tokens under
 * quorum, sealed shares, requests and approvals. Never commits (callers write inside the audit
 * transaction) and never sees a secret: shares arrive here sealed.
 */
#include "hsmca/store_quorum.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Row handler: called for each row; a non-OK return stops the query. */
typedef enum hsmca_err (*row_fn)(struct hsmca_q *s, void *arg);

/*
 * Take sql from the statement cache, bind the arguments described by types ('t' text, 'i' int64,
 * 'b' blob pointer and size_t length), step through the rows calling row (may be NULL), release.
 * *nrows (may be NULL) counts rows seen, or changes made for a statement without rows.
 */
static enum hsmca_err
run(struct hsmca_store *st, const char *sql, row_fn row, void *arg, int *nrows, const char *types,
    ...)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc = HSMCA_OK;
    va_list ap;
    int src, i, n = 0, write_ctx = row == NULL;

    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, sql, &s);
    if (src != SQLITE_OK) {
        rc = hsmca_store_rc(st, src, write_ctx);
        if (rc == HSMCA_OK)
            rc = HSMCA_E_STORE_READ;
        goto out;
    }
    va_start(ap, types);
    for (i = 0; types[i] != '\0'; i++) {
        if (types[i] == 't') {
            hsmca_q_text(s, i + 1, va_arg(ap, const char *));
        } else if (types[i] == 'i') {
            hsmca_q_int(s, i + 1, va_arg(ap, int64_t));
        } else {
            const void *p = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);

            hsmca_q_blob(s, i + 1, p, len);
        }
    }
    va_end(ap);
    for (;;) {
        src = hsmca_q_step(s);
        if (src == SQLITE_DONE)
            break;
        if (src != SQLITE_ROW) {
            rc = hsmca_store_rc(st, src, write_ctx);
            goto out;
        }
        n++;
        if (row != NULL) {
            rc = row(s, arg);
            if (rc != HSMCA_OK)
                goto out;
        }
    }
    if (row == NULL)
        n = hsmca_q_changes(s);
out:
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    if (rc == HSMCA_OK && nrows != NULL)
        *nrows = n;
    return rc;
}

void
hsmca_qapprover_clear(struct hsmca_qapprover *r)
{
    if (r == NULL)
        return;
    free(r->spki);
    r->spki = NULL;
    r->spki_len = 0;
}

void
hsmca_qepoch_clear(struct hsmca_qepoch *r)
{
    if (r == NULL)
        return;
    free(r->policy);
    r->policy = NULL;
}

void
hsmca_qshare_clear(struct hsmca_qshare *r)
{
    if (r == NULL)
        return;
    free(r->sealed);
    r->sealed = NULL;
    r->sealed_len = 0;
}

void
hsmca_qrequest_clear(struct hsmca_qrequest *r)
{
    if (r == NULL)
        return;
    free(r->bytes);
    r->bytes = NULL;
    r->len = 0;
}

void
hsmca_qapproval_clear(struct hsmca_qapproval *r)
{
    if (r == NULL)
        return;
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

/* ---- approvers ---- */

#define APPROVER_COLS "name, spki, fingerprint, token_serial, since_epoch, until_epoch"

static enum hsmca_err
approver_row(struct hsmca_q *s, struct hsmca_qapprover *r)
{
    memset(r, 0, sizeof(*r));
    hsmca_store_copy_text(r->name, sizeof(r->name), s, 0);
    if (hsmca_store_copy_blob(&r->spki, &r->spki_len, s, 1) != 0)
        return HSMCA_E_NOMEM;
    hsmca_store_copy_fixed(r->fingerprint, sizeof(r->fingerprint), s, 2);
    hsmca_store_copy_text(r->token_serial, sizeof(r->token_serial), s, 3);
    r->since_epoch = (uint64_t)hsmca_q_int64(s, 4);
    r->until_epoch = hsmca_q_null(s, 5) ? 0 : (uint64_t)hsmca_q_int64(s, 5);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_qapprover_put(struct hsmca_store *st, const struct hsmca_qapprover *r)
{
    if (st == NULL || r == NULL || r->name[0] == '\0' || r->spki == NULL || r->spki_len == 0)
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "INSERT INTO quorum_approvers(" APPROVER_COLS ") VALUES(?1, ?2, ?3, NULLIF(?4, ''),"
               " ?5, NULL)",
               NULL, NULL, NULL, "tbbti", r->name, r->spki, r->spki_len, r->fingerprint,
               sizeof(r->fingerprint), r->token_serial, (int64_t)r->since_epoch);
}

enum hsmca_err
hsmca_store_qapprover_remove(struct hsmca_store *st, const char *name, uint64_t epoch)
{
    enum hsmca_err rc;
    int n = 0;

    if (st == NULL || name == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = run(st,
             "UPDATE quorum_approvers SET until_epoch = ?2 WHERE name = ?1 AND until_epoch IS NULL",
             NULL, NULL, &n, "ti", name, (int64_t)epoch);
    if (rc == HSMCA_OK && n == 0)
        rc = HSMCA_E_NOT_FOUND;
    return rc;
}

static enum hsmca_err
approver_one(struct hsmca_q *s, void *arg)
{
    return approver_row(s, arg);
}

enum hsmca_err
hsmca_store_qapprover_get(struct hsmca_store *st, const char *name, struct hsmca_qapprover *out)
{
    struct hsmca_qapprover r;
    enum hsmca_err rc;
    int n = 0;

    if (st == NULL || name == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(&r, 0, sizeof(r));
    rc = run(st, "SELECT " APPROVER_COLS " FROM quorum_approvers WHERE name = ?1", approver_one, &r,
             &n, "t", name);
    if (rc == HSMCA_OK && n == 0)
        rc = HSMCA_E_NOT_FOUND;
    if (rc != HSMCA_OK) {
        hsmca_qapprover_clear(&r);
        return rc;
    }
    *out = r;
    return HSMCA_OK;
}

struct list_ctx {
    union {
        enum hsmca_err (*approver)(void *, const struct hsmca_qapprover *);
        enum hsmca_err (*token)(void *, const struct hsmca_qtoken *);
        enum hsmca_err (*share)(void *, const struct hsmca_qshare *);
        enum hsmca_err (*approval)(void *, const struct hsmca_qapproval *);
    } fn;
    void *arg;
};

static enum hsmca_err
approver_each(struct hsmca_q *s, void *arg)
{
    struct list_ctx *c = arg;
    enum hsmca_err (*fn)(void *, const struct hsmca_qapprover *) = c->fn.approver;
    struct hsmca_qapprover r;
    enum hsmca_err rc;

    rc = approver_row(s, &r);
    if (rc == HSMCA_OK)
        rc = fn(c->arg, &r);
    hsmca_qapprover_clear(&r);
    return rc;
}

enum hsmca_err
hsmca_store_qapprover_list(struct hsmca_store *st,
                           enum hsmca_err (*fn)(void *arg, const struct hsmca_qapprover *r),
                           void *arg)
{
    struct list_ctx c;

    c.fn.approver = fn;
    c.arg = arg;

    if (st == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    return run(st, "SELECT " APPROVER_COLS " FROM quorum_approvers ORDER BY since_epoch, name",
               approver_each, &c, NULL, "");
}

/* ---- epochs ---- */

enum hsmca_err
hsmca_store_qepoch_put(struct hsmca_store *st, const struct hsmca_qepoch *r)
{
    if (st == NULL || r == NULL || r->policy == NULL || r->epoch == 0)
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "INSERT INTO quorum_epochs(epoch, m, policy, policy_hash, created_ms) "
               "VALUES(?1, ?2, ?3, ?4, ?5)",
               NULL, NULL, NULL, "iitti", (int64_t)r->epoch, (int64_t)r->m, r->policy,
               r->policy_hash, r->created_ms);
}

static enum hsmca_err
epoch_row(struct hsmca_q *s, void *arg)
{
    struct hsmca_qepoch *r = arg;
    const unsigned char *t = hsmca_q_textp(s, 2);

    r->epoch = (uint64_t)hsmca_q_int64(s, 0);
    r->m = (unsigned)(int)hsmca_q_int64(s, 1);
    free(r->policy);
    r->policy = strdup(t != NULL ? (const char *)t : "{}");
    if (r->policy == NULL)
        return HSMCA_E_NOMEM;
    hsmca_store_copy_text(r->policy_hash, sizeof(r->policy_hash), s, 3);
    r->created_ms = hsmca_q_int64(s, 4);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_qepoch_current(struct hsmca_store *st, struct hsmca_qepoch *out)
{
    struct hsmca_qepoch r;
    enum hsmca_err rc;
    int n = 0;

    if (st == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(&r, 0, sizeof(r));
    rc = run(st,
             "SELECT epoch, m, policy, policy_hash, created_ms FROM quorum_epochs "
             "ORDER BY epoch DESC LIMIT 1",
             epoch_row, &r, &n, "");
    if (rc == HSMCA_OK && n == 0)
        rc = HSMCA_E_NOT_FOUND;
    if (rc != HSMCA_OK) {
        hsmca_qepoch_clear(&r);
        return rc;
    }
    *out = r;
    return HSMCA_OK;
}

/* ---- tokens ---- */

#define TOKEN_COLS                                                                                 \
    "label, uri, epoch, pin_salt, pin_commit, alt_epoch, alt_pin_salt, alt_pin_commit"

static enum hsmca_err
token_row(struct hsmca_q *s, struct hsmca_qtoken *r)
{
    memset(r, 0, sizeof(*r));
    hsmca_store_copy_text(r->label, sizeof(r->label), s, 0);
    hsmca_store_copy_text(r->uri, sizeof(r->uri), s, 1);
    r->epoch = (uint64_t)hsmca_q_int64(s, 2);
    hsmca_store_copy_fixed(r->pin_salt, sizeof(r->pin_salt), s, 3);
    hsmca_store_copy_fixed(r->pin_commit, sizeof(r->pin_commit), s, 4);
    r->alt_epoch = (uint64_t)hsmca_q_int64(s, 5);
    hsmca_store_copy_fixed(r->alt_pin_salt, sizeof(r->alt_pin_salt), s, 6);
    hsmca_store_copy_fixed(r->alt_pin_commit, sizeof(r->alt_pin_commit), s, 7);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_qtoken_put(struct hsmca_store *st, const struct hsmca_qtoken *r)
{
    if (st == NULL || r == NULL || r->label[0] == '\0' || r->uri[0] == '\0')
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "INSERT INTO quorum_tokens(" TOKEN_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
               "ON CONFLICT(label) DO UPDATE SET uri = excluded.uri, epoch = excluded.epoch, "
               "pin_salt = excluded.pin_salt, pin_commit = excluded.pin_commit, "
               "alt_epoch = excluded.alt_epoch, alt_pin_salt = excluded.alt_pin_salt, "
               "alt_pin_commit = excluded.alt_pin_commit",
               NULL, NULL, NULL, "ttibbibb", r->label, r->uri, (int64_t)r->epoch, r->pin_salt,
               sizeof(r->pin_salt), r->pin_commit, sizeof(r->pin_commit), (int64_t)r->alt_epoch,
               r->alt_pin_salt, sizeof(r->alt_pin_salt), r->alt_pin_commit,
               sizeof(r->alt_pin_commit));
}

static enum hsmca_err
token_one(struct hsmca_q *s, void *arg)
{
    return token_row(s, arg);
}

enum hsmca_err
hsmca_store_qtoken_get(struct hsmca_store *st, const char *label, struct hsmca_qtoken *out)
{
    struct hsmca_qtoken r;
    enum hsmca_err rc;
    int n = 0;

    if (st == NULL || label == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = run(st, "SELECT " TOKEN_COLS " FROM quorum_tokens WHERE label = ?1", token_one, &r, &n,
             "t", label);
    if (rc == HSMCA_OK && n == 0)
        rc = HSMCA_E_NOT_FOUND;
    if (rc == HSMCA_OK)
        *out = r;
    return rc;
}

static enum hsmca_err
token_each(struct hsmca_q *s, void *arg)
{
    struct list_ctx *c = arg;
    enum hsmca_err (*fn)(void *, const struct hsmca_qtoken *) = c->fn.token;
    struct hsmca_qtoken r;

    (void)token_row(s, &r);
    return fn(c->arg, &r);
}

enum hsmca_err
hsmca_store_qtoken_list(struct hsmca_store *st,
                        enum hsmca_err (*fn)(void *arg, const struct hsmca_qtoken *r), void *arg)
{
    struct list_ctx c;

    c.fn.token = fn;
    c.arg = arg;

    if (st == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    return run(st, "SELECT " TOKEN_COLS " FROM quorum_tokens ORDER BY label", token_each, &c, NULL,
               "");
}

/* ---- shares ---- */

enum hsmca_err
hsmca_store_qshare_put(struct hsmca_store *st, const struct hsmca_qshare *r)
{
    if (st == NULL || r == NULL || r->sealed == NULL || r->sealed_len == 0 || r->idx == 0)
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "INSERT INTO quorum_shares(label, epoch, approver, idx, commitment, sealed) "
               "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
               NULL, NULL, NULL, "titibb", r->label, (int64_t)r->epoch, r->approver,
               (int64_t)r->idx, r->commit, sizeof(r->commit), r->sealed, r->sealed_len);
}

static enum hsmca_err
share_each(struct hsmca_q *s, void *arg)
{
    struct list_ctx *c = arg;
    enum hsmca_err (*fn)(void *, const struct hsmca_qshare *) = c->fn.share;
    struct hsmca_qshare r;
    enum hsmca_err rc;

    memset(&r, 0, sizeof(r));
    hsmca_store_copy_text(r.label, sizeof(r.label), s, 0);
    r.epoch = (uint64_t)hsmca_q_int64(s, 1);
    hsmca_store_copy_text(r.approver, sizeof(r.approver), s, 2);
    r.idx = (unsigned)(int)hsmca_q_int64(s, 3);
    hsmca_store_copy_fixed(r.commit, sizeof(r.commit), s, 4);
    if (hsmca_store_copy_blob(&r.sealed, &r.sealed_len, s, 5) != 0)
        return HSMCA_E_NOMEM;
    rc = fn(c->arg, &r);
    hsmca_qshare_clear(&r);
    return rc;
}

enum hsmca_err
hsmca_store_qshare_list(struct hsmca_store *st, const char *label, uint64_t epoch,
                        enum hsmca_err (*fn)(void *arg, const struct hsmca_qshare *r), void *arg)
{
    struct list_ctx c;

    c.fn.share = fn;
    c.arg = arg;

    if (st == NULL || label == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "SELECT label, epoch, approver, idx, commitment, sealed FROM quorum_shares "
               "WHERE label = ?1 AND epoch = ?2 ORDER BY idx",
               share_each, &c, NULL, "ti", label, (int64_t)epoch);
}

enum hsmca_err
hsmca_store_qshare_prune(struct hsmca_store *st, const char *label, uint64_t keep_epoch,
                         uint64_t keep_alt)
{
    if (st == NULL || label == NULL)
        return HSMCA_E_INVALID_ARG;
    return run(st, "DELETE FROM quorum_shares WHERE label = ?1 AND epoch <> ?2 AND epoch <> ?3",
               NULL, NULL, NULL, "tii", label, (int64_t)keep_epoch,
               (int64_t)(keep_alt != 0 ? keep_alt : keep_epoch));
}

/* ---- requests ---- */

#define REQUEST_COLS "id, op, bytes, epoch, requester, created_ms, expires_ms, status"

enum hsmca_err
hsmca_store_qrequest_put(struct hsmca_store *st, const struct hsmca_qrequest *r)
{
    if (st == NULL || r == NULL || r->bytes == NULL || r->len == 0 || r->id[0] == '\0')
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "INSERT INTO quorum_requests(" REQUEST_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, "
               "'pending')",
               NULL, NULL, NULL, "ttbitii", r->id, r->op, r->bytes, r->len, (int64_t)r->epoch,
               r->requester, r->created_ms, r->expires_ms);
}

static enum hsmca_err
request_row(struct hsmca_q *s, void *arg)
{
    struct hsmca_qrequest *r = arg;

    memset(r, 0, sizeof(*r));
    hsmca_store_copy_text(r->id, sizeof(r->id), s, 0);
    hsmca_store_copy_text(r->op, sizeof(r->op), s, 1);
    if (hsmca_store_copy_blob(&r->bytes, &r->len, s, 2) != 0)
        return HSMCA_E_NOMEM;
    r->epoch = (uint64_t)hsmca_q_int64(s, 3);
    hsmca_store_copy_text(r->requester, sizeof(r->requester), s, 4);
    r->created_ms = hsmca_q_int64(s, 5);
    r->expires_ms = hsmca_q_int64(s, 6);
    hsmca_store_copy_text(r->status, sizeof(r->status), s, 7);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_qrequest_get(struct hsmca_store *st, const char *id, struct hsmca_qrequest *out)
{
    struct hsmca_qrequest r;
    enum hsmca_err rc;
    int n = 0;

    if (st == NULL || id == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(&r, 0, sizeof(r));
    rc = run(st, "SELECT " REQUEST_COLS " FROM quorum_requests WHERE id = ?1", request_row, &r, &n,
             "t", id);
    if (rc == HSMCA_OK && n == 0)
        rc = HSMCA_E_NOT_FOUND;
    if (rc != HSMCA_OK) {
        hsmca_qrequest_clear(&r);
        return rc;
    }
    *out = r;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_qrequest_set_status(struct hsmca_store *st, const char *id, const char *status)
{
    enum hsmca_err rc;
    int n = 0;

    if (st == NULL || id == NULL || status == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = run(st, "UPDATE quorum_requests SET status = ?2 WHERE id = ?1 AND status = 'pending'",
             NULL, NULL, &n, "tt", id, status);
    if (rc == HSMCA_OK && n == 0)
        rc = HSMCA_E_NOT_FOUND;
    return rc;
}

/* ---- approvals ---- */

enum hsmca_err
hsmca_store_qapproval_put(struct hsmca_store *st, const struct hsmca_qapproval *r)
{
    if (st == NULL || r == NULL || r->body == NULL || r->body_len == 0)
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "INSERT INTO quorum_approvals(request_id, approver, body, received_ms) "
               "VALUES(?1, ?2, ?3, ?4)",
               NULL, NULL, NULL, "ttbi", r->request_id, r->approver, r->body, r->body_len,
               r->received_ms);
}

static enum hsmca_err
approval_each(struct hsmca_q *s, void *arg)
{
    struct list_ctx *c = arg;
    enum hsmca_err (*fn)(void *, const struct hsmca_qapproval *) = c->fn.approval;
    struct hsmca_qapproval r;
    enum hsmca_err rc;

    memset(&r, 0, sizeof(r));
    hsmca_store_copy_text(r.request_id, sizeof(r.request_id), s, 0);
    hsmca_store_copy_text(r.approver, sizeof(r.approver), s, 1);
    if (hsmca_store_copy_blob(&r.body, &r.body_len, s, 2) != 0)
        return HSMCA_E_NOMEM;
    r.received_ms = hsmca_q_int64(s, 3);
    rc = fn(c->arg, &r);
    hsmca_qapproval_clear(&r);
    return rc;
}

enum hsmca_err
hsmca_store_qapproval_list(struct hsmca_store *st, const char *request_id,
                           enum hsmca_err (*fn)(void *arg, const struct hsmca_qapproval *r),
                           void *arg)
{
    struct list_ctx c;

    c.fn.approval = fn;
    c.arg = arg;

    if (st == NULL || request_id == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    /* in the order received: SQLite's rowid, PostgreSQL's ord column */
    return run(st,
               hsmca_store_is_pg(st) ? "SELECT request_id, approver, body, received_ms FROM "
                                       "quorum_approvals WHERE request_id = ?1 ORDER BY ord"
                                     : "SELECT request_id, approver, body, received_ms FROM "
                                       "quorum_approvals WHERE request_id = ?1 ORDER BY rowid",
               approval_each, &c, NULL, "t", request_id);
}

/* ---- request listing (hsmca request list, GET /v1/requests) ---- */

struct request_list_ctx {
    enum hsmca_err (*fn)(void *, const struct hsmca_qrequest *);
    void *arg;
};

static enum hsmca_err
request_each(struct hsmca_q *s, void *arg)
{
    struct request_list_ctx *c = arg;
    struct hsmca_qrequest r;
    enum hsmca_err rc = request_row(s, &r);

    if (rc == HSMCA_OK)
        rc = c->fn(c->arg, &r);
    hsmca_qrequest_clear(&r);
    return rc;
}

enum hsmca_err
hsmca_store_qrequest_list(struct hsmca_store *st, const char *status, unsigned limit,
                          enum hsmca_err (*fn)(void *arg, const struct hsmca_qrequest *r),
                          void *arg)
{
    struct request_list_ctx c = {fn, arg};

    if (st == NULL || fn == NULL || limit == 0)
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "SELECT " REQUEST_COLS " FROM quorum_requests WHERE ?1 = '' OR status = ?1 "
               "ORDER BY created_ms DESC, id LIMIT ?2",
               request_each, &c, NULL, "ti", status != NULL ? status : "", (int64_t)limit);
}

/* ---- a token that never joined (token.enroll whose initialisation failed) ---- */

enum hsmca_err
hsmca_store_qtoken_delete(struct hsmca_store *st, const char *label)
{
    enum hsmca_err rc;

    if (st == NULL || label == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = run(st, "DELETE FROM quorum_shares WHERE label = ?1", NULL, NULL, NULL, "t", label);
    if (rc == HSMCA_OK)
        rc = run(st, "DELETE FROM quorum_tokens WHERE label = ?1", NULL, NULL, NULL, "t", label);
    return rc;
}

/* ---- nodes named in one ca.activate (quorum_nodes.c) ---- */

/* A node's liveness on PostgreSQL: a session advisory lock on (1752395126, hashtext of
 * "hsmca-node:" and its name), held by a connection of the node's own for as long as it runs; the
 * server drops it with the session when the node's process dies. The class stands apart from the
 * quota's per-CA transaction locks (1752395125) and the single-key locks of the audit log. */
#define NODE_LOCK "(1752395126, hashtext('hsmca-node:' || CAST(?1 AS TEXT)))"

static enum hsmca_err
first_int(struct hsmca_q *s, void *arg)
{
    *(int64_t *)arg = hsmca_q_int64(s, 0);
    return HSMCA_OK;
}

/* keep's and alive's arguments; *out set to what SQLite answers (a lone node) */
static int
node_args_ok(const struct hsmca_store *st, const char *node, int *out, int sqlite_answer)
{
    if (st == NULL || node == NULL || node[0] == '\0' || out == NULL)
        return 0;
    *out = sqlite_answer;
    return 1;
}

enum hsmca_err
hsmca_store_node_keep(struct hsmca_store *st, const char *node, int *held)
{
    int64_t v = 0;
    enum hsmca_err rc;

    if (!node_args_ok(st, node, held, 0))
        return HSMCA_E_INVALID_ARG;
    if (!hsmca_store_is_pg(st))
        return HSMCA_OK;
    if (st->node_gen != 0 && st->node_gen == hsmca_pg_gen(st)) {
        /* held on this connection: a statement finds out whether the connection still lives
         * (a lost one is made again, a new generation, by the next statement) */
        rc = run(st, "SELECT 1", first_int, &v, NULL, "");
        if (rc != HSMCA_OK)
            return rc;
        if (st->node_gen == hsmca_pg_gen(st)) {
            *held = 1;
            return HSMCA_OK;
        }
    }
    st->node_gen = 0;
    rc = run(st, "SELECT CASE WHEN pg_try_advisory_lock" NODE_LOCK " THEN 1 ELSE 0 END", first_int,
             &v, NULL, "t", node);
    if (rc == HSMCA_OK && v == 1) {
        st->node_gen = hsmca_pg_gen(st);
        *held = 1;
    }
    return rc;
}

enum hsmca_err
hsmca_store_node_alive(struct hsmca_store *st, const char *node, int *alive)
{
    int64_t v = 1;
    enum hsmca_err rc;

    if (!node_args_ok(st, node, alive, 1))
        return HSMCA_E_INVALID_ARG;
    if (!hsmca_store_is_pg(st))
        return HSMCA_OK;
    /* the lock taken means no session held it: let it go at once, in the same statement */
    rc = run(st,
             "SELECT CASE WHEN pg_try_advisory_lock" NODE_LOCK
             " THEN CASE WHEN pg_advisory_unlock" NODE_LOCK " THEN 0 ELSE 0 END ELSE 1 END",
             first_int, &v, NULL, "t", node);
    if (rc == HSMCA_OK)
        *alive = v != 0;
    return rc;
}

enum hsmca_err
hsmca_store_qnode_put(struct hsmca_store *st, const struct hsmca_qnode *r)
{
    if (st == NULL || r == NULL || r->request_id[0] == '\0' || r->node[0] == '\0')
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "INSERT INTO quorum_nodes(request_id, node, state, request_key, code, updated_ms) "
               "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
               NULL, NULL, NULL, "ttttti", r->request_id, r->node, r->state, r->request_key,
               r->code, r->updated_ms);
}

enum hsmca_err
hsmca_store_qnode_move(struct hsmca_store *st, const char *request_id, const char *node,
                       const char *from, const char *to, const char *request_key, const char *code,
                       int64_t now_ms, int *changed)
{
    int n = 0;
    enum hsmca_err rc;

    if (st == NULL || request_id == NULL || from == NULL || to == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = run(st,
             "UPDATE quorum_nodes SET state = ?4, "
             "request_key = CASE WHEN ?5 = '' THEN request_key ELSE ?5 END, "
             "code = CASE WHEN ?6 = '' THEN code ELSE ?6 END, updated_ms = ?7 "
             "WHERE request_id = ?1 AND (?2 = '' OR node = ?2) AND state = ?3",
             NULL, NULL, &n, "tttttti", request_id, node != NULL ? node : "", from, to,
             request_key != NULL ? request_key : "", code != NULL ? code : "", now_ms);
    if (rc == HSMCA_OK && changed != NULL)
        *changed = n;
    return rc;
}

struct qnode_ctx {
    enum hsmca_err (*fn)(void *, const struct hsmca_qnode *);
    void *arg;
};

static enum hsmca_err
qnode_each(struct hsmca_q *s, void *arg)
{
    struct qnode_ctx *c = arg;
    struct hsmca_qnode r;

    memset(&r, 0, sizeof(r));
    hsmca_store_copy_text(r.request_id, sizeof(r.request_id), s, 0);
    hsmca_store_copy_text(r.node, sizeof(r.node), s, 1);
    hsmca_store_copy_text(r.state, sizeof(r.state), s, 2);
    hsmca_store_copy_text(r.request_key, sizeof(r.request_key), s, 3);
    hsmca_store_copy_text(r.code, sizeof(r.code), s, 4);
    r.updated_ms = hsmca_q_int64(s, 5);
    return c->fn(c->arg, &r);
}

enum hsmca_err
hsmca_store_qnode_list(struct hsmca_store *st, const char *request_id, const char *node,
                       int live_only, enum hsmca_err (*fn)(void *arg, const struct hsmca_qnode *r),
                       void *arg)
{
    struct qnode_ctx c = {fn, arg};

    if (st == NULL || fn == NULL)
        return HSMCA_E_INVALID_ARG;
    return run(st,
               "SELECT request_id, node, state, request_key, code, updated_ms FROM quorum_nodes "
               "WHERE (?1 = '' OR request_id = ?1) AND (?2 = '' OR node = ?2) AND "
               "(?3 = 0 OR state IN ('asked', 'go', 'in')) "
               "ORDER BY updated_ms, request_id, node LIMIT 64",
               qnode_each, &c, NULL, "tti", request_id != NULL ? request_id : "",
               node != NULL ? node : "", (int64_t)(live_only != 0));
}
