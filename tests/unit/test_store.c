/* SPDX-License-Identifier: Apache-2.0
 *
 * test_store.c -- the store skeleton: durability pragmas, migrations from every version, a newer
 * schema refused without change, garbage and unwritable paths refused, transactions and meta.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "hsmca/store.h"
#include "hsmca/store_quorum.h"

#include "../../src/lib/store_internal.h"
#include "fixture.h"

struct ctx {
    char dir[512];
    char db[600];
};

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));

    if (c == NULL || fx_tmpdir("store", c->dir, sizeof(c->dir)) != 0)
        return -1;
    snprintf(c->db, sizeof(c->db), "%s/hsmca.db", c->dir);
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    struct ctx *c = *state;

    fx_rmtree(c->dir);
    free(c);
    return 0;
}

static int
pragma_int(const char *db, const char *sql, char *text, size_t text_size)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    int v = -1;

    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW) {
        v = sqlite3_column_int(s, 0);
        if (text != NULL)
            snprintf(text, text_size, "%s", (const char *)sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static void
refuses_garbage_and_unwritable_paths(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL;
    char path[700];
    FILE *f;

    assert_int_equal(hsmca_store_open(NULL, &st), HSMCA_E_INVALID_ARG);
    snprintf(path, sizeof(path), "%s/no/such/dir/x.db", c->dir);
    assert_int_equal(hsmca_store_open(path, &st), HSMCA_E_STORE_OPEN);
    assert_null(st);
    snprintf(path, sizeof(path), "%s/garbage.db", c->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not an SQLite database, and it is long enough to have a header......", f);
    fclose(f);
    assert_int_equal(hsmca_store_open(path, &st), HSMCA_E_STORE_OPEN);
    assert_null(st);
    assert_int_equal(hsmca_store_open_readonly(c->db, &st), HSMCA_E_STORE_OPEN);
}

static void
new_database_is_durable_and_current(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL;
    char mode[32];
    int v = -1;

    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_OK);
    assert_int_equal(hsmca_store_schema_version(st, &v), HSMCA_OK);
    assert_int_equal(v, hsmca_store_schema_latest());
    assert_int_equal(hsmca_store_check_durable(st), HSMCA_OK);
    hsmca_store_close(st);
    pragma_int(c->db, "PRAGMA journal_mode", mode, sizeof(mode));
    assert_string_equal(mode, "wal");
    assert_int_equal(pragma_int(c->db, "PRAGMA user_version", NULL, 0),
                     hsmca_store_schema_latest());
}

static void
migrates_forward_from_every_version(void **state)
{
    struct ctx *c = *state;
    int latest = hsmca_store_schema_latest(), from;

    for (from = 0; from <= latest; from++) {
        struct hsmca_store *st = NULL;
        char path[700];
        int v = -1;

        snprintf(path, sizeof(path), "%s/m%d.db", c->dir, from);
        assert_int_equal(hsmca_store_open_at(path, from, &st), HSMCA_OK);
        assert_int_equal(hsmca_store_schema_version(st, &v), HSMCA_OK);
        assert_int_equal(v, from);
        hsmca_store_close(st);
        st = NULL;
        assert_int_equal(hsmca_store_open(path, &st), HSMCA_OK);
        assert_int_equal(hsmca_store_schema_version(st, &v), HSMCA_OK);
        assert_int_equal(v, latest);
        /* migrating again is a no-op */
        hsmca_store_close(st);
        st = NULL;
        assert_int_equal(hsmca_store_open(path, &st), HSMCA_OK);
        assert_int_equal(hsmca_store_meta_set(st, "k", "v"), HSMCA_OK);
        hsmca_store_close(st);
    }
    assert_int_equal(hsmca_store_open_at(c->db, latest + 1, &(struct hsmca_store *){NULL}),
                     HSMCA_E_INVALID_ARG);
}

/* Run sql on the database at path with plain SQLite (the store closed). */
static int
raw_sql(const char *path, const char *sql)
{
    sqlite3 *h = NULL;
    int rc;

    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    rc = sqlite3_exec(h, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
    sqlite3_close(h);
    return rc;
}

static int
count_cb(void *arg, int n, char **v, char **names)
{
    (void)n;
    (void)names;
    snprintf(arg, 128, "%s", v[0] != NULL ? v[0] : "NULL");
    return 0;
}

/* One value of a query, as text, into out[128]. */
static void
raw_value(const char *path, const char *sql, char *out)
{
    sqlite3 *h = NULL;

    out[0] = '\0';
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, count_cb, out, NULL), SQLITE_OK);
    sqlite3_close(h);
}

/*
 * Migration 9 (a cancelled request is 'cancelled'): the requests table is rebuilt under a new
 * CHECK; the requests and their approvals (in their order) survive, foreign keys hold, and only
 * the four statuses are accepted.
 */
static void
migration_9_keeps_requests_and_approvals(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL;
    char v[128];

    assert_int_equal(hsmca_store_open_at(c->db, 8, &st), HSMCA_OK);
    hsmca_store_close(st);
    st = NULL;
    assert_int_equal(
        raw_sql(c->db,
                "INSERT INTO quorum_epochs VALUES (1, 2, '{}', "
                "'0000000000000000000000000000000000000000000000000000000000000000', 1);"
                "INSERT INTO quorum_approvers VALUES ('bob', x'01', zeroblob(32), NULL, 1, NULL);"
                "INSERT INTO quorum_approvers VALUES ('dave', x'02', randomblob(32), NULL, 1, "
                "NULL);"
                "INSERT INTO quorum_requests VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', "
                "'ca.activate', x'00', 1, 'alice', 1, 2, 'pending');"
                "INSERT INTO quorum_requests VALUES ('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', "
                "'ca.activate', x'00', 1, 'alice', 1, 2, 'failed');"
                "INSERT INTO quorum_approvals VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'dave', "
                "x'dd', 5);"
                "INSERT INTO quorum_approvals VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bob', "
                "x'bb', 6);"),
        SQLITE_OK);
    /* version 8 refuses the new status */
    assert_int_equal(raw_sql(c->db, "UPDATE quorum_requests SET status = 'cancelled'"),
                     SQLITE_CONSTRAINT);
    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_OK); /* migrates to the latest */
    assert_int_equal(
        hsmca_store_qrequest_set_status(st, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "cancelled"),
        HSMCA_OK);
    hsmca_store_close(st);
    raw_value(c->db,
              "SELECT group_concat(id || ':' || status, ',') FROM (SELECT id, status FROM "
              "quorum_requests ORDER BY id)",
              v);
    assert_string_equal(v, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:cancelled,"
                           "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:failed");
    raw_value(c->db,
              "SELECT group_concat(approver, ',') FROM (SELECT approver FROM quorum_approvals "
              "ORDER BY rowid)",
              v);
    assert_string_equal(v, "dave,bob"); /* the approvals' order kept */
    raw_value(c->db, "SELECT count(*) FROM pragma_foreign_key_check", v);
    assert_string_equal(v, "0");
    raw_value(c->db, "SELECT count(*) FROM sqlite_temp_master", v);
    assert_string_equal(v, "0");
    assert_int_equal(raw_sql(c->db, "UPDATE quorum_requests SET status = 'bogus'"),
                     SQLITE_CONSTRAINT);
    assert_int_equal(raw_sql(c->db, "INSERT INTO quorum_approvals VALUES "
                                    "('cccccccccccccccccccccccccccccccc', 'bob', x'00', 7)"),
                     SQLITE_CONSTRAINT); /* the foreign key still points at the new table */
}

static void
newer_schema_is_refused_untouched(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL;
    sqlite3 *h = NULL;
    char sql[64];

    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_OK);
    hsmca_store_close(st);
    st = NULL;
    assert_int_equal(sqlite3_open(c->db, &h), SQLITE_OK);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", hsmca_store_schema_latest() + 1);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_E_STORE_SCHEMA);
    assert_null(st);
    assert_int_equal(pragma_int(c->db, "PRAGMA user_version", NULL, 0),
                     hsmca_store_schema_latest() + 1);
    assert_int_equal(hsmca_store_open_readonly(c->db, &st), HSMCA_E_STORE_SCHEMA);
}

static void
transactions_and_meta(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL, *ro = NULL;
    char *v = NULL, big[5000];
    unsigned long commits;

    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_OK);
    assert_int_equal(hsmca_store_meta_get(st, "absent", &v), HSMCA_E_NOT_FOUND);
    assert_null(v);
    memset(big, 'x', sizeof(big));
    big[4096] = '\0';
    assert_int_equal(hsmca_store_meta_set(st, "big", big), HSMCA_OK);
    big[4097] = '\0';
    big[4096] = 'x';
    assert_int_equal(hsmca_store_meta_set(st, "big", big), HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_store_meta_set(st, "", "v"), HSMCA_E_TOO_LARGE);

    assert_int_equal(hsmca_store_begin(st), HSMCA_OK);
    assert_int_equal(hsmca_store_begin(st), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_meta_set(st, "k", "rolled-back"), HSMCA_OK);
    hsmca_store_rollback(st);
    assert_int_equal(hsmca_store_meta_get(st, "k", &v), HSMCA_E_NOT_FOUND);

    commits = hsmca_store_commit_count(st);
    assert_int_equal(hsmca_store_begin(st), HSMCA_OK);
    assert_int_equal(hsmca_store_meta_set(st, "k", "one"), HSMCA_OK);
    assert_int_equal(hsmca_store_meta_set(st, "k", "two"), HSMCA_OK);
    assert_int_equal(hsmca_store_commit(st), HSMCA_OK);
    assert_int_equal(hsmca_store_commit_count(st), commits + 1);
    assert_int_equal(hsmca_store_commit(st), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_meta_get(st, "k", &v), HSMCA_OK);
    assert_string_equal(v, "two");
    free(v);
    v = NULL;

    /* a read-only handle sees committed data and cannot write */
    assert_int_equal(hsmca_store_open_readonly(c->db, &ro), HSMCA_OK);
    assert_int_equal(hsmca_store_meta_get(ro, "k", &v), HSMCA_OK);
    assert_string_equal(v, "two");
    free(v);
    assert_int_not_equal(hsmca_store_meta_set(ro, "k", "three"), HSMCA_OK);
    assert_int_equal(hsmca_store_begin(ro), HSMCA_E_STORE_WRITE);
    hsmca_store_close(ro);
    hsmca_store_close(st);
}

/*
 * The statement cache: the same SQL gives the same statement back, reset and unbound; a reused
 * buffer holding other SQL never gets the old statement; past the cache's size statements are
 * finalized on release (LeakSanitizer and sqlite3_close_v2 would report one left behind).
 */
static void
statement_cache(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL;
    struct hsmca_q *a = NULL, *b = NULL;
    char sql[64];

    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_OK);
    pthread_mutex_lock(&st->lock);
    snprintf(sql, sizeof(sql), "SELECT ?1 + 1");
    assert_int_equal(hsmca_store_prepare(st, sql, &a), SQLITE_OK);
    hsmca_q_int(a, 1, 41);
    assert_int_equal(hsmca_q_step(a), SQLITE_ROW);
    assert_int_equal((int)hsmca_q_int64(a, 0), 42);
    hsmca_store_release(st, a);
    assert_int_equal(hsmca_store_prepare(st, sql, &b), SQLITE_OK);
    assert_ptr_equal(a, b);
    assert_int_equal(hsmca_q_step(b), SQLITE_ROW); /* bindings were cleared: NULL + 1 */
    assert_true(hsmca_q_null(b, 0));
    hsmca_store_release(st, b);

    snprintf(sql, sizeof(sql), "SELECT ?1 + 2"); /* same buffer, other text */
    assert_int_equal(hsmca_store_prepare(st, sql, &b), SQLITE_OK);
    assert_ptr_not_equal(a, b);
    hsmca_q_int(b, 1, 40);
    assert_int_equal(hsmca_q_step(b), SQLITE_ROW);
    assert_int_equal((int)hsmca_q_int64(b, 0), 42);
    hsmca_store_release(st, b);

    for (int i = 0; i < HSMCA_STORE_STMT_CACHE + 8; i++) {
        char *q = malloc(64);

        assert_non_null(q);
        snprintf(q, 64, "SELECT %d", i);
        assert_int_equal(hsmca_store_prepare(st, q, &b), SQLITE_OK);
        assert_int_equal(hsmca_q_step(b), SQLITE_ROW);
        assert_int_equal((int)hsmca_q_int64(b, 0), i);
        hsmca_store_release(st, b);
        free(q); /* cached entries compare by text, so a freed key is never trusted alone */
    }
    assert_int_equal(st->nstmts, HSMCA_STORE_STMT_CACHE);
    pthread_mutex_unlock(&st->lock);
    hsmca_store_close(st);
}

/* The checkpointer's count of runs (rewinds = 0) or of rewinds (rewinds = 1). */
static unsigned long
ckpt_count(struct hsmca_store_checkpointer *cp, int rewinds)
{
    unsigned long n[2] = {0, 0};

    hsmca_store_checkpointer_counts(cp, &n[0], &n[1]);
    return n[rewinds];
}

/*
 * The checkpointer: while it runs the writer's automatic checkpoint is off and PASSIVE checkpoints
 * run on its own thread (the WAL stops growing once they catch up), but none on an idle store;
 * every commit stays readable; stop gives the automatic checkpoint back. Bad arguments are
 * refused.
 */
static void
checkpointer_moves_checkpoints_off_the_writer(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL, *ro = NULL;
    struct hsmca_store_checkpointer *cp = NULL;
    const struct timespec ms5 = {0, 5000000};
    char key[32], *v = NULL;
    unsigned long runs;
    int i, round, quiet;

    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_OK);
    assert_int_equal(hsmca_store_checkpointer_start(st, c->db, 0, 64, &cp), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_checkpointer_start(st, c->db, 60001, 64, &cp),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_checkpointer_start(st, c->db, 5, 15, &cp), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_checkpointer_start(st, c->db, 5, 1048577, &cp),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_store_checkpointer_start(st, c->dir, 5, 64, &cp), HSMCA_E_STORE_OPEN);
    assert_null(cp);
    assert_int_equal(hsmca_store_checkpointer_start(st, c->db, 5, 64, &cp), HSMCA_OK);
    assert_int_equal(pragma_int(c->db, "PRAGMA wal_autocheckpoint", NULL, 0), 1000); /* others */
    pthread_mutex_lock(&st->lock);
    {
        sqlite3_stmt *s = NULL;

        assert_int_equal(sqlite3_prepare_v2(st->db, "PRAGMA wal_autocheckpoint", -1, &s, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(s, 0), 0); /* off on the writer's connection */
        sqlite3_finalize(s);
    }
    pthread_mutex_unlock(&st->lock);
    /* two rounds of commits, each followed by a pass (bounded: 2 s per round) */
    for (round = 0; round < 2; round++) {
        unsigned long before = ckpt_count(cp, 0);

        for (i = 0; i < 150; i++) {
            snprintf(key, sizeof(key), "k%d", round * 150 + i);
            assert_int_equal(hsmca_store_begin(st), HSMCA_OK);
            assert_int_equal(hsmca_store_meta_set(st, key, "some value to fill pages"), HSMCA_OK);
            assert_int_equal(hsmca_store_commit(st), HSMCA_OK);
        }
        for (i = 0; i < 400 && ckpt_count(cp, 0) == before; i++)
            nanosleep(&ms5, NULL);
        assert_true(ckpt_count(cp, 0) > before);
    }
    /* idle: once a pass has copied everything, no more passes until something is written. Wait
     * for 200 ms without a pass (bounded: 3 s; at 5 ms a pass would come 40 times in that time),
     * then none may come in the next 200 ms */
    runs = ckpt_count(cp, 0);
    for (i = 0, quiet = 0; i < 600 && quiet < 40; i++) {
        nanosleep(&ms5, NULL);
        quiet = ckpt_count(cp, 0) == runs ? quiet + 1 : 0;
        runs = ckpt_count(cp, 0);
    }
    assert_int_equal(quiet, 40);
    for (i = 0; i < 40; i++)
        nanosleep(&ms5, NULL);
    assert_int_equal(ckpt_count(cp, 0), runs);
    assert_int_equal(hsmca_store_meta_set(st, "idle", "then one write"), HSMCA_OK);
    for (i = 0; i < 400 && ckpt_count(cp, 0) == runs; i++)
        nanosleep(&ms5, NULL);
    assert_int_equal(ckpt_count(cp, 0), runs + 1);
    hsmca_store_checkpointer_stop(cp);
    hsmca_store_checkpointer_stop(NULL);
    assert_int_equal(hsmca_store_open_readonly(c->db, &ro), HSMCA_OK);
    assert_int_equal(hsmca_store_meta_get(ro, "k299", &v), HSMCA_OK);
    assert_string_equal(v, "some value to fill pages");
    free(v);
    hsmca_store_close(ro);
    hsmca_store_close(st);
}

/*
 * Under steady writes a PASSIVE checkpoint never catches up, so without a bound the WAL only grows.
 * With a bound of 32 pages the checkpointer holds the writer, catches up, and the next commit
 * rewinds the WAL; the file is cut back to at most 2 x 32 pages (plus the header and one frame
 * being written), while every commit is kept.
 */
static void
checkpointer_bounds_the_wal(void **state)
{
    struct ctx *c = *state;
    struct hsmca_store *st = NULL, *ro = NULL;
    struct hsmca_store_checkpointer *cp = NULL;
    char key[32], wal[sizeof(c->db) + 8], *v = NULL, value[3000];
    struct stat sb;
    int i;

    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = 0;
    snprintf(wal, sizeof(wal), "%s-wal", c->db);
    assert_int_equal(hsmca_store_open(c->db, &st), HSMCA_OK);
    assert_int_equal(hsmca_store_checkpointer_start(st, c->db, 2, 32, &cp), HSMCA_OK);
    assert_int_equal(pragma_int(c->db, "PRAGMA journal_size_limit", NULL, 0), -1); /* others */
    /* bounded: at most 3000 commits and 20 s, stopping once two rewinds were seen */
    for (i = 0; i < 3000 && ckpt_count(cp, 1) < 2; i++) {
        struct timespec ts = {0, 2000000};

        snprintf(key, sizeof(key), "k%d", i % 400); /* new rows, then rewrites */
        assert_int_equal(hsmca_store_begin(st), HSMCA_OK);
        assert_int_equal(hsmca_store_meta_set(st, key, value), HSMCA_OK);
        assert_int_equal(hsmca_store_commit(st), HSMCA_OK);
        if (i % 4 == 0)
            nanosleep(&ts, NULL);
    }
    assert_true(ckpt_count(cp, 1) >= 1);
    /* one more commit after the rewind writes from the start of the WAL and cuts the file */
    assert_int_equal(hsmca_store_begin(st), HSMCA_OK);
    assert_int_equal(hsmca_store_meta_set(st, "last", "after the rewind"), HSMCA_OK);
    assert_int_equal(hsmca_store_commit(st), HSMCA_OK);
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size <= 32 + (2 * 32 + 8) * (4096 + 24));
    hsmca_store_checkpointer_stop(cp);
    assert_int_equal(hsmca_store_open_readonly(c->db, &ro), HSMCA_OK);
    assert_int_equal(hsmca_store_meta_get(ro, "k1", &v), HSMCA_OK);
    assert_string_equal(v, value);
    free(v);
    assert_int_equal(hsmca_store_meta_get(ro, "last", &v), HSMCA_OK);
    assert_string_equal(v, "after the rewind");
    free(v);
    hsmca_store_close(ro);
    hsmca_store_close(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(refuses_garbage_and_unwritable_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(new_database_is_durable_and_current, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_forward_from_every_version, setup, teardown),
        cmocka_unit_test_setup_teardown(migration_9_keeps_requests_and_approvals, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(transactions_and_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(statement_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpointer_moves_checkpoints_off_the_writer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(checkpointer_bounds_the_wal, setup, teardown),
    };

    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
