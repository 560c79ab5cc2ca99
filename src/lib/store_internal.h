/* SPDX-License-Identifier: Apache-2.0
 *
 * store_internal.h -- what store.c shares with the store_<area>.c files: the connection and a few
 * helpers. Included only by files of the store library (the only ones built with sqlite3).
 */
#ifndef HSMCA_STORE_INTERNAL_H
#define HSMCA_STORE_INTERNAL_H

#include <pthread.h>

#include <sqlite3.h>

#include "hsmca/store.h"

#define HSMCA_STORE_STMT_CACHE 48

struct hsmca_store {
    sqlite3 *db;
    /* prepared statements kept for the life of the connection, keyed by their SQL text */
    struct {
        const char *sql;
        sqlite3_stmt *s;
    } stmts[HSMCA_STORE_STMT_CACHE];
    unsigned nstmts;
    pthread_mutex_t lock; /* one statement sequence at a time on this connection */
    pthread_cond_t idle;  /* signalled when a write transaction ends or the gate opens */
    int gate;             /* set by the checkpointer: no new write transaction until it clears */
    int in_txn;
    int readonly;
    unsigned long commits;
};

/* Map an SQLite result code to an hsmca code (write_ctx: the statement was a write). */
enum hsmca_err hsmca_store_rc(sqlite3 *db, int rc, int write_ctx);
/* After stepping a query for one row: HSMCA_OK on a row, HSMCA_E_NOT_FOUND when there is none,
 * else the mapped error (never HSMCA_OK). */
enum hsmca_err hsmca_store_row_rc(sqlite3 *db, int src);

/*
 * A prepared statement for sql, from the connection's cache (prepared once,
 * SQLITE_PREPARE_PERSISTENT). Call with st->lock held; hand it back with hsmca_store_release
 * (resets it and clears its bindings, or finalizes it when the cache was full). Returns an SQLite
 * result code.
 */
int hsmca_store_prepare(struct hsmca_store *st, const char *sql, sqlite3_stmt **out);
/* Copy text column col of s into dst (truncated to dst_size - 1 bytes, always NUL-terminated). */
void hsmca_store_copy_text(char *dst, size_t dst_size, sqlite3_stmt *s, int col);
/* A malloc'd copy of blob column col (NULL, 0 for NULL or empty); -1 when out of memory. */
int hsmca_store_copy_blob(unsigned char **dst, size_t *len, sqlite3_stmt *s, int col);
void hsmca_store_release(struct hsmca_store *st, sqlite3_stmt *s);

#endif
