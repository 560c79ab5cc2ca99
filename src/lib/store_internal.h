/* SPDX-License-Identifier: Apache-2.0
 *
 * store_internal.h -- what store.c shares with the store_<area>.c files and the PostgreSQL
 * backend (store_pg.c): the connection, one statement interface over both backends, and a few
 * helpers. Included only by files of the store library (the only ones built with sqlite3 and
 * libpq; libpq-fe.h itself stays in store_pg*.c).
 *
 * The area files write their SQL once, in the dialect both engines accept (SQLite's ?N
 * parameters; store_pg.c turns them into $N), through hsmca_q_*: bind, step, read columns. Step
 * returns SQLite's result codes on both backends (store_pg.c maps SQLSTATEs onto them), so one
 * error mapping (hsmca_store_rc) serves both. Where the engines differ, hsmca_store_prepare2
 * takes one text per backend.
 */
#ifndef HSMCA_STORE_INTERNAL_H
#define HSMCA_STORE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "hsmca/store.h"

#define HSMCA_STORE_STMT_CACHE 64

struct hsmca_pg;  /* a PostgreSQL connection (store_pg.c) */
struct hsmca_pgq; /* a statement prepared on it (store_pg.c) */

/* One statement: SQLite's, or PostgreSQL's. */
struct hsmca_q {
    struct hsmca_store *st;
    const char *key; /* the SQL text pointer it is cached under */
    char *text;      /* a copy of that text (a reused buffer is never trusted alone) */
    sqlite3_stmt *s;
    struct hsmca_pgq *p;
};

struct hsmca_store {
    sqlite3 *db;         /* SQLite backend, or NULL */
    struct hsmca_pg *pg; /* PostgreSQL backend, or NULL */
    /* prepared statements kept for the life of the connection, keyed by their SQL text */
    struct hsmca_q stmts[HSMCA_STORE_STMT_CACHE];
    unsigned nstmts;
    pthread_mutex_t lock; /* one statement sequence at a time on this connection */
    pthread_cond_t idle;  /* signalled when a write transaction ends or the gate opens */
    int gate;             /* set by the checkpointer: no new write transaction until it clears */
    int in_txn;
    int savepoints; /* open savepoints (PostgreSQL: a failed statement rolls the innermost back) */
    int readonly;
    unsigned long commits;
    unsigned node_gen; /* PostgreSQL: the connection that took a node's liveness lock, or 0 */
};

/* Map a result code (SQLite's, or PostgreSQL's mapped onto them) to an hsmca code (write_ctx:
 * the statement was a write). */
enum hsmca_err hsmca_store_rc(struct hsmca_store *st, int rc, int write_ctx);
/* After stepping a query for one row: HSMCA_OK on a row, HSMCA_E_NOT_FOUND when there is none,
 * else the mapped error (never HSMCA_OK). */
enum hsmca_err hsmca_store_row_rc(struct hsmca_store *st, int src);

/*
 * A prepared statement for sql, from the connection's cache (prepared once). Call with st->lock
 * held; hand it back with hsmca_store_release (resets it and clears its bindings, or frees it
 * when the cache was full). Returns an SQLite result code. prepare2 gives the PostgreSQL text
 * apart (pg_sql, $N parameters) where the dialects differ.
 */
int hsmca_store_prepare(struct hsmca_store *st, const char *sql, struct hsmca_q **out);
int hsmca_store_prepare2(struct hsmca_store *st, const char *sqlite_sql, const char *pg_sql,
                         struct hsmca_q **out);
void hsmca_store_release(struct hsmca_store *st, struct hsmca_q *q);

/* Bind parameter i (from 1). Text and blobs are borrowed until the statement is stepped to its
 * end or released. An unbound parameter is NULL. */
void hsmca_q_text(struct hsmca_q *q, int i, const char *v);
void hsmca_q_int(struct hsmca_q *q, int i, int64_t v);
void hsmca_q_blob(struct hsmca_q *q, int i, const void *p, size_t n);
/* SQLITE_ROW, SQLITE_DONE or an error code. */
int hsmca_q_step(struct hsmca_q *q);
/* Columns of the current row (from 0). */
int hsmca_q_null(struct hsmca_q *q, int col);
int64_t hsmca_q_int64(struct hsmca_q *q, int col);
const void *hsmca_q_blobp(struct hsmca_q *q, int col);
const unsigned char *hsmca_q_textp(struct hsmca_q *q, int col);
int hsmca_q_bytes(struct hsmca_q *q, int col);
/* Rows changed by the last write statement stepped on q. */
int hsmca_q_changes(struct hsmca_q *q);

/* Copy text column col of q into dst (truncated to dst_size - 1 bytes, always NUL-terminated). */
void hsmca_store_copy_text(char *dst, size_t dst_size, struct hsmca_q *q, int col);
/* A malloc'd copy of blob column col (NULL, 0 for NULL or empty); -1 when out of memory. */
int hsmca_store_copy_blob(unsigned char **dst, size_t *len, struct hsmca_q *q, int col);
/* Copy blob column col into dst when it has exactly n bytes, else zero dst. */
void hsmca_store_copy_fixed(unsigned char *dst, size_t n, struct hsmca_q *q, int col);

/* Copy blob column col into serial when it has 1 to 20 bytes (*len its length), else *len = 0. */
void hsmca_store_copy_serial(unsigned char serial[20], size_t *len, struct hsmca_q *q, int col);
/* Free a record's malloc'd blob and clear its pointer and length. */
void hsmca_store_free_blob(unsigned char **p, size_t *len);

/* With st->lock held: prepare sql (*q, to release), bind key as ?1 and step to its first row.
 * HSMCA_OK on a row, HSMCA_E_NOT_FOUND when there is none, else the mapped error. */
enum hsmca_err hsmca_store_row_by_text(struct hsmca_store *st, const char *sql, const char *key,
                                       struct hsmca_q **q);
/* The tail of a one-statement write: with st->lock held and q prepared (src: what preparing and
 * binding it returned), step_done steps q once when src is SQLITE_OK; both then hand q back,
 * drop the lock and return the mapped result (hsmca_store_rc, write context). */
enum hsmca_err hsmca_store_step_done(struct hsmca_store *st, struct hsmca_q *q, int src);
enum hsmca_err hsmca_store_done(struct hsmca_store *st, struct hsmca_q *q, int src);
/* Take st->lock for a statement that belongs in the open write transaction: HSMCA_OK with the
 * lock held, or HSMCA_E_INVALID_ARG (lock released) when no transaction is open. */
enum hsmca_err hsmca_store_lock_txn(struct hsmca_store *st);
/* With st->lock held: step q to its next row. 1 on a row (*rc HSMCA_OK); 0 at the end of the
 * rows (*rc HSMCA_OK) or on an error (*rc the mapped error). */
int hsmca_store_next(struct hsmca_store *st, struct hsmca_q *q, enum hsmca_err *rc);
/* Take the lock, fetch sql's first row for key (?1) and read it with row(out, q): HSMCA_OK,
 * HSMCA_E_NOT_FOUND when there is none, or the error row or the store returned. */
enum hsmca_err hsmca_store_get_by_text(struct hsmca_store *st, const char *sql, const char *key,
                                       enum hsmca_err (*row)(void *out, struct hsmca_q *q),
                                       void *out);
/* With st->lock held: step q (src: what preparing and binding it returned) through its rows,
 * calling row(ctx, q) on each; stops at the first error row returns. Maps a failed step. */
enum hsmca_err hsmca_store_rows(struct hsmca_store *st, struct hsmca_q *q, int src,
                                enum hsmca_err (*row)(void *ctx, struct hsmca_q *q), void *ctx);

/* One CRL table (crls, mdl_crls), one row per CA. put: sql upserts ?1 ca, ?2 number,
 * ?3 this_update, ?4 next_update, ?5 der, and must change exactly one row (else
 * HSMCA_E_STORE_CONSTRAINT: the number did not grow). get: sql selects number, this_update,
 * next_update, der WHERE ca = ?1. Both take the lock; callers check their arguments. */
struct hsmca_crl_rec;
enum hsmca_err hsmca_store_crl_put_sql(struct hsmca_store *st, const char *sql, const char *ca,
                                       const struct hsmca_crl_rec *crl);
enum hsmca_err hsmca_store_crl_get_sql(struct hsmca_store *st, const char *sql, const char *ca,
                                       struct hsmca_crl_rec *out);
/* Read a row of serial, revoked_ms, reason, invalidity_ms into *r (store_certs.c). */
struct hsmca_revoked_rec;
void hsmca_store_revoked_row(struct hsmca_q *s, struct hsmca_revoked_rec *r);
/* With st->lock held: hsmca_store_rows over q's revoked rows (serial, revoked_ms, reason,
 * invalidity_ms), each handed to fn as a struct hsmca_revoked_rec. */
enum hsmca_err hsmca_store_revoked_rows(struct hsmca_store *st, struct hsmca_q *q, int src,
                                        enum hsmca_err (*fn)(void *arg,
                                                             const struct hsmca_revoked_rec *r),
                                        void *arg);

/* The columns of a certificate row in the order hsmca_store_cert_row reads them (the DER, when
 * wanted, follows as column 13). */
#define CERT_COLS                                                                                  \
    "ca, serial, request_id, csr_sha256, sha256, vid, pid, not_before, not_after, issued_ms, "     \
    "revoked_ms, reason, invalidity_ms"
struct hsmca_cert_rec;
/* Read a row of CERT_COLS (and the DER at der_col, -1 none) into *r (store_certs.c). */
enum hsmca_err hsmca_store_cert_row(struct hsmca_q *s, struct hsmca_cert_rec *r, int der_col);

/* ---- the PostgreSQL backend (store_pg.c) ---- */

/* Connect st to conninfo (a libpq connection string or URI), and migrate to target (or, read-only,
 * check the schema is the latest). */
enum hsmca_err hsmca_pg_open(struct hsmca_store *st, const char *conninfo, int target,
                             int readonly);
void hsmca_pg_close(struct hsmca_pg *pg);
/* Run one statement without parameters or rows (BEGIN, COMMIT, SAVEPOINT...). SQLite codes. */
int hsmca_pg_exec(struct hsmca_store *st, const char *sql);
const char *hsmca_pg_errmsg(struct hsmca_store *st);
/* the connection's generation: bumped at each (re)connection, never 0 once connected */
unsigned hsmca_pg_gen(const struct hsmca_store *st);
enum hsmca_err hsmca_pg_schema_version(struct hsmca_store *st, int *out);
enum hsmca_err hsmca_pg_check_durable(struct hsmca_store *st);
/* Statements: new (sql in SQLite's ?N dialect or PostgreSQL's $N), free, and the hsmca_q_*
 * calls' PostgreSQL halves. */
struct hsmca_pgq *hsmca_pgq_new(struct hsmca_store *st, const char *sql);
void hsmca_pgq_free(struct hsmca_pgq *p);
void hsmca_pgq_reset(struct hsmca_pgq *p);
void hsmca_pgq_bind(struct hsmca_pgq *p, int i, int kind, const void *v, size_t n, int64_t x);
int hsmca_pgq_step(struct hsmca_store *st, struct hsmca_pgq *p);
int hsmca_pgq_null(struct hsmca_pgq *p, int col);
int64_t hsmca_pgq_int64(struct hsmca_pgq *p, int col);
const void *hsmca_pgq_value(struct hsmca_pgq *p, int col);
int hsmca_pgq_bytes(struct hsmca_pgq *p, int col);
int hsmca_pgq_changes(struct hsmca_pgq *p);

#endif
