/* SPDX-License-Identifier: Apache-2.0
 *
 * store.h -- the persistent state of hsmca: in SQLite (the embedded default) or in PostgreSQL
 * (several hsmcad nodes sharing one database; docs/postgresql.md). All SQL lives behind this
 * interface (store.c, the src/lib/store_<area>.c files beside it, and store_pg.c), so callers never
 * know which backend runs. SQLite runs in WAL mode with synchronous=FULL; PostgreSQL with fsync and
 * synchronous_commit on (the session sets it): on both, a committed transaction survives a power
 * loss. Each backend versions its schema in one place (the migration lists in store.c and
 * store_pg.c, the same versions); opening a database migrates it forward in one transaction and
 * refuses a database newer than this program.
 *
 * A store spec names the backend: "sqlite:PATH" or a plain PATH (SQLite), or a libpq connection
 * string: a URI "postgresql://..." ("postgres://...") or keyword=value pairs ("host=/run/pg
 * dbname=hsmca"). A password never belongs in a spec (use a passfile, PGPASSFILE).
 */
#ifndef HSMCA_STORE_H
#define HSMCA_STORE_H

#include "hsmca/error.h"

struct hsmca_store;

/* The schema version this build writes (the length of the migration list). */
int hsmca_store_schema_latest(void);

/* 1 when spec names a PostgreSQL database (a libpq URI or keyword=value string), else 0. */
int hsmca_store_spec_is_pg(const char *spec);
/* 1 when st is a PostgreSQL connection. */
int hsmca_store_is_pg(const struct hsmca_store *st);

/*
 * Open the store path names (<= HSMCA_PATH_MAX bytes; a spec as above). SQLite: create the file
 * if absent, set WAL and synchronous=FULL, enable foreign keys. PostgreSQL: connect (the database
 * must exist). Then migrate the schema to hsmca_store_schema_latest().
 * On HSMCA_OK the caller closes *out with hsmca_store_close(). Returns HSMCA_E_STORE_OPEN,
 * HSMCA_E_STORE_SCHEMA (newer than this build, or a migration failed: nothing was changed),
 * HSMCA_E_STORE_BUSY.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_open(const char *path, struct hsmca_store **out);

/*
 * As hsmca_store_open, but stop migrating at version target (0 <= target <= latest). For tests
 * of the migrations themselves.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_open_at(const char *path, int target,
                                                   struct hsmca_store **out);

/* Open an existing database read-only (no migration; refuses a schema other than latest). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_open_readonly(const char *path,
                                                         struct hsmca_store **out);

/* Close the database. NULL is a no-op. */
void hsmca_store_close(struct hsmca_store *st);

/* The schema version of the open database. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_schema_version(struct hsmca_store *st, int *out);

/*
 * Transactions. begin takes the write lock at once (BEGIN IMMEDIATE); commit returns only when the
 * transaction is durable; rollback undoes everything since begin. Nested begins are refused with
 * HSMCA_E_INVALID_ARG. Returns HSMCA_E_STORE_WRITE, HSMCA_E_STORE_BUSY.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_begin(struct hsmca_store *st);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_commit(struct hsmca_store *st);
void hsmca_store_rollback(struct hsmca_store *st);

/*
 * Savepoints inside a transaction begun with hsmca_store_begin (HSMCA_E_INVALID_ARG outside one):
 * savepoint opens one, release keeps its changes (still subject to the commit), rollback undoes
 * everything since the savepoint and closes it. They nest (the innermost is meant). The audit
 * writer wraps each item of a group commit in one, so one failing item never takes its batch down.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_savepoint(struct hsmca_store *st);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_savepoint_release(struct hsmca_store *st);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_savepoint_rollback(struct hsmca_store *st);

/* Small key/value settings (the `meta` table): key <= 64 bytes, value <= 4096 bytes. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_meta_set(struct hsmca_store *st, const char *key,
                                                    const char *value);
/* On HSMCA_OK *value_out is a new string the caller frees with free(); HSMCA_E_NOT_FOUND if
 * absent. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_meta_get(struct hsmca_store *st, const char *key,
                                                    char **value_out);

/*
 * Check that this connection runs with journal_mode=WAL and synchronous=FULL (for /readyz and the
 * tests). Returns HSMCA_E_STORE_SCHEMA if either is off, HSMCA_E_STORE_READ if they cannot be read.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_check_durable(struct hsmca_store *st);

/* Number of fsync-backed commits this handle has made (for the group-commit tests and bench). */
unsigned long hsmca_store_commit_count(const struct hsmca_store *st);

/*
 * WAL checkpoints off the writer's thread. SQLite runs a checkpoint inside the commit that crosses
 * 1000 WAL pages, so the one audit writer (and every request waiting on it) stalls while pages are
 * copied into the database file and synced. This turns that off on st and runs PASSIVE checkpoints
 * every interval_ms (1..60000) on a thread with its own connection to path (the file st opened),
 * while st is written: once a pass has copied everything and st changed nothing since, passes stop
 * and the thread's wait doubles up to 1 s (or interval_ms if longer) until the next write.
 * When the WAL holds more than wal_pages (16..2^20) pages, the next write transaction waits while
 * the last frames are copied, and then rewinds the WAL; a rewound WAL file is truncated to
 * 2 x wal_pages pages. So the WAL stays bounded under steady load.
 * Stop joins the thread, runs one last checkpoint and gives st its automatic checkpoints back.
 */
struct hsmca_store_checkpointer;
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_checkpointer_start(struct hsmca_store *st, const char *path, unsigned interval_ms,
                               unsigned wal_pages, struct hsmca_store_checkpointer **out);
void hsmca_store_checkpointer_stop(struct hsmca_store_checkpointer *cp);
/* Checkpoints run so far, and those that caught up with the held writer (so its next commit
 * rewinds the WAL), for tests and metrics; either pointer may be NULL. */
void hsmca_store_checkpointer_counts(struct hsmca_store_checkpointer *cp, unsigned long *runs,
                                     unsigned long *rewinds);

#endif
