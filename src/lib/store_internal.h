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

struct hsmca_store {
    sqlite3 *db;
    pthread_mutex_t lock; /* one statement sequence at a time on this connection */
    int in_txn;
    int readonly;
    unsigned long commits;
};

/* Map an SQLite result code to an hsmca code (write_ctx: the statement was a write). */
enum hsmca_err hsmca_store_rc(sqlite3 *db, int rc, int write_ctx);

#endif
