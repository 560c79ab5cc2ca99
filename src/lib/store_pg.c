/* SPDX-License-Identifier: Apache-2.0
 *
 * store_pg.c -- the PostgreSQL backend of the store (libpq): the connection and its session
 * settings, the schema's migrations in PostgreSQL's types, statements prepared once per
 * connection, and SQLSTATEs mapped onto the SQLite result codes the store files use
 * (store_internal.h). The only file that includes libpq-fe.h (tools/check-walls).
 *
 * Durability: every session runs with synchronous_commit on, and hsmca_store_check_durable
 * refuses a server with fsync off, so a COMMIT that returns is on disk (and, with synchronous
 * replication configured, on the standby). A COMMIT that PostgreSQL turned into a ROLLBACK (the
 * transaction had failed) is reported as a failure, never as a commit.
 *
 * A failed statement aborts a PostgreSQL transaction, where SQLite fails the statement only. So
 * that callers may go on after a constraint error (as the issuance engine does: an insert, then
 * a lookup), a failed statement inside a savepoint rolls back to that savepoint at once: the item
 * is undone either way (the audit writer rolls the savepoint back on any error).
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/log.h"

#include "store_internal.h"

#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define PGQ_MAXP 16

/* an advisory lock key of the migrations: one node migrates, the others wait and find it done */
#define MIGRATE_LOCK 0x68736d6361L /* "hsmca" */

struct hsmca_pg {
    PGconn *conn;
    unsigned gen; /* bumped at each (re)connection: statements are prepared again */
    unsigned next_id;
    int readonly;
    char err[256];
};

struct hsmca_pgq {
    struct hsmca_pg *pg;
    char name[24];
    char *sql; /* with $N parameters */
    int nparams;
    unsigned gen; /* the connection generation it is prepared on (0: not yet) */
    const char *vals[PGQ_MAXP];
    int lens[PGQ_MAXP];
    int fmts[PGQ_MAXP];
    Oid types[PGQ_MAXP];
    char nums[PGQ_MAXP][24];
    PGresult *res;
    int ran, row, nrows, changes;
};

/*
 * The migrations, as in store.c (the same versions, the same tables and constraints): BLOB is
 * BYTEA, INTEGER is BIGINT, and quorum_approvals has an explicit order column where SQLite used
 * its rowid. Append; never reorder or edit a released entry.
 */
static const char *const migrations[] = {
    /* 1: core settings */
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY NOT NULL CHECK (length(key) BETWEEN 1 AND 64),"
    "  value TEXT NOT NULL CHECK (length(value) <= 4096));",

    /* 2: CAs, issued certificates, revocations, CRLs */
    "CREATE TABLE cas ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  kind TEXT NOT NULL CHECK (kind IN ('paa', 'pai')),"
    "  parent TEXT REFERENCES cas(id),"
    "  token_uri TEXT NOT NULL,"
    "  key_uri TEXT NOT NULL,"
    "  vid BIGINT CHECK (vid BETWEEN 0 AND 65535),"
    "  pid BIGINT CHECK (pid BETWEEN 0 AND 65535),"
    "  cert BYTEA,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE certificates ("
    "  ca TEXT NOT NULL REFERENCES cas(id),"
    "  serial BYTEA NOT NULL CHECK (length(serial) BETWEEN 1 AND 20),"
    "  request_id TEXT CHECK (length(request_id) BETWEEN 1 AND 128),"
    "  csr_sha256 BYTEA NOT NULL CHECK (length(csr_sha256) = 32),"
    "  sha256 BYTEA NOT NULL CHECK (length(sha256) = 32),"
    "  vid BIGINT NOT NULL,"
    "  pid BIGINT NOT NULL,"
    "  not_before BIGINT NOT NULL,"
    "  not_after BIGINT NOT NULL,"
    "  issued_ms BIGINT NOT NULL,"
    "  revoked_ms BIGINT,"
    "  reason BIGINT CHECK (reason BETWEEN 0 AND 10),"
    "  der BYTEA NOT NULL,"
    "  PRIMARY KEY (ca, serial));"
    "CREATE UNIQUE INDEX certificates_request ON certificates(ca, request_id)"
    "  WHERE request_id IS NOT NULL;"
    "CREATE INDEX certificates_issued ON certificates(ca, issued_ms, serial);"
    "CREATE TABLE crls ("
    "  ca TEXT PRIMARY KEY NOT NULL REFERENCES cas(id),"
    "  number BIGINT NOT NULL CHECK (number >= 0),"
    "  this_update BIGINT NOT NULL,"
    "  next_update BIGINT NOT NULL,"
    "  der BYTEA NOT NULL);",

    /* 3: the audit log */
    "CREATE TABLE audit_entries ("
    "  seq BIGINT PRIMARY KEY CHECK (seq >= 1),"
    "  line BYTEA NOT NULL CHECK (length(line) BETWEEN 2 AND 65536),"
    "  hash BYTEA NOT NULL CHECK (length(hash) = 32));"
    "CREATE TABLE audit_checkpoints ("
    "  size BIGINT PRIMARY KEY CHECK (size >= 1),"
    "  text BYTEA NOT NULL CHECK (length(text) <= 1024),"
    "  sig BYTEA NOT NULL CHECK (length(sig) <= 80),"
    "  hash BYTEA NOT NULL CHECK (length(hash) = 32),"
    "  head BYTEA NOT NULL CHECK (length(head) = 32));"
    "CREATE TABLE audit_intents ("
    "  seq BIGINT PRIMARY KEY REFERENCES audit_entries(seq),"
    "  action TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 256));",

    /* 4: quorum */
    "CREATE TABLE quorum_approvers ("
    "  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  spki BYTEA NOT NULL UNIQUE,"
    "  fingerprint BYTEA NOT NULL UNIQUE CHECK (length(fingerprint) = 32),"
    "  token_serial TEXT UNIQUE CHECK (length(token_serial) BETWEEN 1 AND 16),"
    "  since_epoch BIGINT NOT NULL CHECK (since_epoch >= 1),"
    "  until_epoch BIGINT CHECK (until_epoch > since_epoch));"
    "CREATE TABLE quorum_epochs ("
    "  epoch BIGINT PRIMARY KEY CHECK (epoch >= 1),"
    "  m BIGINT NOT NULL CHECK (m BETWEEN 2 AND 32),"
    "  policy TEXT NOT NULL CHECK (length(policy) <= 8192),"
    "  policy_hash TEXT NOT NULL CHECK (length(policy_hash) = 64),"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE quorum_tokens ("
    "  label TEXT PRIMARY KEY NOT NULL CHECK (length(label) BETWEEN 1 AND 32),"
    "  uri TEXT NOT NULL,"
    "  epoch BIGINT NOT NULL REFERENCES quorum_epochs(epoch),"
    "  pin_salt BYTEA NOT NULL CHECK (length(pin_salt) = 32),"
    "  pin_commit BYTEA NOT NULL CHECK (length(pin_commit) = 32));"
    "CREATE TABLE quorum_shares ("
    "  label TEXT NOT NULL REFERENCES quorum_tokens(label),"
    "  epoch BIGINT NOT NULL REFERENCES quorum_epochs(epoch),"
    "  approver TEXT NOT NULL REFERENCES quorum_approvers(name),"
    "  idx BIGINT NOT NULL CHECK (idx BETWEEN 1 AND 32),"
    "  commitment BYTEA NOT NULL CHECK (length(commitment) = 32),"
    "  sealed BYTEA NOT NULL CHECK (length(sealed) BETWEEN 95 AND 256),"
    "  PRIMARY KEY (label, epoch, approver),"
    "  UNIQUE (label, epoch, idx));"
    "CREATE TABLE quorum_requests ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
    "  op TEXT NOT NULL CHECK (length(op) BETWEEN 1 AND 31),"
    "  bytes BYTEA NOT NULL CHECK (length(bytes) <= 16384),"
    "  epoch BIGINT NOT NULL REFERENCES quorum_epochs(epoch),"
    "  requester TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  expires_ms BIGINT NOT NULL CHECK (expires_ms > created_ms),"
    "  status TEXT NOT NULL CHECK (status IN ('pending', 'executed', 'failed')));"
    "CREATE TABLE quorum_approvals ("
    "  ord BIGSERIAL PRIMARY KEY,"
    "  request_id TEXT NOT NULL REFERENCES quorum_requests(id),"
    "  approver TEXT NOT NULL REFERENCES quorum_approvers(name),"
    "  body BYTEA NOT NULL CHECK (length(body) <= 16384),"
    "  received_ms BIGINT NOT NULL,"
    "  UNIQUE (request_id, approver));",

    /* 5: crash-safe PIN rotation */
    "ALTER TABLE quorum_tokens ADD COLUMN alt_epoch BIGINT NOT NULL DEFAULT 0"
    "  CHECK (alt_epoch >= 0);"
    "ALTER TABLE quorum_tokens ADD COLUMN alt_pin_salt BYTEA NOT NULL"
    "  DEFAULT decode(repeat('00', 32), 'hex') CHECK (length(alt_pin_salt) = 32);"
    "ALTER TABLE quorum_tokens ADD COLUMN alt_pin_commit BYTEA NOT NULL"
    "  DEFAULT decode(repeat('00', 32), 'hex') CHECK (length(alt_pin_commit) = 32);",

    /* 6: revocation */
    "ALTER TABLE certificates ADD COLUMN invalidity_ms BIGINT;"
    "ALTER TABLE cas ADD COLUMN serial BYTEA CHECK (length(serial) BETWEEN 1 AND 20);"
    "ALTER TABLE cas ADD COLUMN revoked_ms BIGINT;"
    "ALTER TABLE cas ADD COLUMN reason BIGINT CHECK (reason BETWEEN 0 AND 10);"
    "ALTER TABLE cas ADD COLUMN invalidity_ms BIGINT;"
    "CREATE INDEX certificates_revoked ON certificates(ca, serial, revoked_ms, reason, "
    "invalidity_ms) WHERE revoked_ms IS NOT NULL;",

    /* 7: the factory floor */
    "CREATE TABLE factory_lines ("
    "  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  cert BYTEA NOT NULL CHECK (length(cert) BETWEEN 1 AND 16384),"
    "  sha256 BYTEA NOT NULL CHECK (length(sha256) = 32),"
    "  registered_by TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL);"
    "CREATE TABLE factory_bundles ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
    "  ca TEXT NOT NULL REFERENCES cas(id),"
    "  line TEXT NOT NULL REFERENCES factory_lines(name),"
    "  count BIGINT NOT NULL CHECK (count >= 0),"
    "  manifest_sha256 BYTEA NOT NULL CHECK (length(manifest_sha256) = 32),"
    "  envelope_sha256 BYTEA NOT NULL CHECK (length(envelope_sha256) = 32),"
    "  requester TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  received_ms BIGINT,"
    "  received_by TEXT);",

    /* 8: mobile driving licences, ISO/IEC 18013-5 (store_mdl.c) */
    "CREATE TABLE mdl_cas ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  kind TEXT NOT NULL CHECK (kind IN ('iaca', 'ds')),"
    "  parent TEXT REFERENCES mdl_cas(id),"
    "  token_uri TEXT NOT NULL,"
    "  key_uri TEXT NOT NULL,"
    "  cert BYTEA NOT NULL CHECK (length(cert) BETWEEN 1 AND 16384),"
    "  serial BYTEA NOT NULL CHECK (length(serial) BETWEEN 1 AND 20),"
    "  created_ms BIGINT NOT NULL,"
    "  revoked_ms BIGINT,"
    "  reason BIGINT CHECK (reason BETWEEN 0 AND 10),"
    "  invalidity_ms BIGINT,"
    "  CHECK ((kind = 'iaca') = (parent IS NULL)));"
    "CREATE TABLE mdl_crls ("
    "  ca TEXT PRIMARY KEY NOT NULL REFERENCES mdl_cas(id),"
    "  number BIGINT NOT NULL CHECK (number >= 0),"
    "  this_update BIGINT NOT NULL,"
    "  next_update BIGINT NOT NULL,"
    "  der BYTEA NOT NULL);",

    /* 9: a cancelled request is 'cancelled', not 'failed' (quorum_exec.c) */
    "ALTER TABLE quorum_requests DROP CONSTRAINT quorum_requests_status_check;"
    "ALTER TABLE quorum_requests ADD CONSTRAINT quorum_requests_status_check"
    "  CHECK (status IN ('pending', 'executed', 'failed', 'cancelled'));",
    /* 10: activation windows shared by the nodes (store_windows.c) */
    "CREATE TABLE windows ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  ca TEXT NOT NULL REFERENCES cas(id),"
    "  until_ms BIGINT NOT NULL,"
    "  max_dacs BIGINT NOT NULL CHECK (max_dacs >= 1),"
    "  used BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= max_dacs),"
    "  opened_ms BIGINT NOT NULL);"
    "ALTER TABLE certificates ADD COLUMN window_id TEXT;",
    /* 11: issuance quotas and mDL signing windows shared by the nodes (store_quota.c,
     * store_windows.c) */
    "CREATE TABLE quota_buckets ("
    "  ca TEXT NOT NULL,"
    "  period TEXT NOT NULL CHECK (period IN ('m', 'd')),"
    "  start_ms BIGINT NOT NULL,"
    "  used BIGINT NOT NULL CHECK (used >= 0),"
    "  PRIMARY KEY (ca, period, start_ms));"
    "INSERT INTO quota_buckets(ca, period, start_ms, used) "
    "  SELECT ca, 'd', issued_ms / 60000 * 60000, count(*) FROM certificates "
    "  WHERE issued_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 86400000 "
    "  GROUP BY 1, 3;"
    "INSERT INTO quota_buckets(ca, period, start_ms, used) "
    "  SELECT ca, 'm', issued_ms / 1000 * 1000, count(*) FROM certificates "
    "  WHERE issued_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 60000 "
    "  GROUP BY 1, 3;"
    "CREATE TABLE mdl_windows ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  ca TEXT NOT NULL REFERENCES mdl_cas(id),"
    "  until_ms BIGINT NOT NULL,"
    "  max_signatures BIGINT NOT NULL CHECK (max_signatures >= 1),"
    "  used BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= max_signatures),"
    "  opened_ms BIGINT NOT NULL);",

    /* 12: one ca.activate naming several nodes (quorum_nodes.c): a row per request and named
     * node, its one-time request key (base64 SPKI; the private half is in that node's memory
     * only) and where the node stands in the protocol */
    "CREATE TABLE quorum_nodes ("
    "  request_id TEXT NOT NULL CHECK (length(request_id) = 32),"
    "  node TEXT NOT NULL CHECK (length(node) BETWEEN 1 AND 32),"
    "  state TEXT NOT NULL CHECK (state IN ('asked', 'key', 'void', 'go', 'in', 'joined',"
    "    'failed')),"
    "  request_key TEXT NOT NULL DEFAULT '',"
    "  code TEXT NOT NULL DEFAULT '',"
    "  updated_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (request_id, node)"
    ");"
    "CREATE INDEX quorum_nodes_node ON quorum_nodes(node, state);",
};

#define MIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

static void
quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Keep the last error's first line (never a connection string: only the server's message). */
static void
keep_err(struct hsmca_pg *pg, const char *msg)
{
    size_t n;

    snprintf(pg->err, sizeof(pg->err), "%s", msg != NULL ? msg : "");
    n = strcspn(pg->err, "\n");
    pg->err[n] = '\0';
    for (n = 0; pg->err[n] != '\0'; n++)
        if (pg->err[n] == '"')
            pg->err[n] = '\'';
}

/* SQLSTATE -> SQLite result code */
static int
map_state(struct hsmca_pg *pg, PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    keep_err(pg, r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(pg->conn));
    if (PQstatus(pg->conn) != CONNECTION_OK)
        return SQLITE_IOERR;
    if (state == NULL || strlen(state) != 5)
        return SQLITE_ERROR;
    if (strncmp(state, "23", 2) == 0)
        return SQLITE_CONSTRAINT;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
        strcmp(state, "57014") == 0)
        return SQLITE_BUSY;
    if (strcmp(state, "53100") == 0)
        return SQLITE_FULL;
    if (strcmp(state, "53200") == 0)
        return SQLITE_NOMEM;
    if (strcmp(state, "25006") == 0)
        return SQLITE_READONLY;
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "58", 2) == 0 ||
        strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0)
        return SQLITE_IOERR;
    return SQLITE_ERROR;
}

static int
session(struct hsmca_pg *pg)
{
    PGresult *r;
    int ok;

    PQsetNoticeProcessor(pg->conn, quiet, NULL);
    r = PQexec(pg->conn, pg->readonly
                             ? "SET synchronous_commit TO on; SET client_min_messages TO warning; "
                               "SET lock_timeout TO '5s'; SET TIME ZONE 'UTC'; "
                               "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
                             : "SET synchronous_commit TO on; SET client_min_messages TO warning; "
                               "SET lock_timeout TO '5s'; SET TIME ZONE 'UTC'");
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        keep_err(pg, PQresultErrorMessage(r));
    PQclear(r);
    pg->gen++;
    return ok;
}

/* Outside a transaction, a lost connection is made again (the server restarted, a failover). */
static int
alive(struct hsmca_store *st)
{
    struct hsmca_pg *pg = st->pg;

    if (PQstatus(pg->conn) == CONNECTION_OK)
        return 1;
    if (st->in_txn)
        return 0;
    PQreset(pg->conn);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        keep_err(pg, PQerrorMessage(pg->conn));
        return 0;
    }
    hsmca_log(HSMCA_LOG_WARN, "store", "pg-reconnected", "gen=%u", pg->gen + 1);
    return session(pg);
}

/* After a failed statement: inside a savepoint, undo to it so the transaction goes on. */
static void
after_error(struct hsmca_store *st)
{
    PGresult *r;

    if (!st->in_txn || st->savepoints <= 0 || PQstatus(st->pg->conn) != CONNECTION_OK)
        return;
    r = PQexec(st->pg->conn, "ROLLBACK TO SAVEPOINT hsmca_item");
    PQclear(r);
}

int
hsmca_pg_exec(struct hsmca_store *st, const char *sql)
{
    struct hsmca_pg *pg = st->pg;
    PGresult *r;
    int rc = SQLITE_OK;

    if (!alive(st)) {
        keep_err(pg, PQerrorMessage(pg->conn));
        return SQLITE_IOERR;
    }
    r = PQexec(pg->conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = map_state(pg, r);
    else if (strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        /* the transaction had failed: PostgreSQL rolled it back */
        keep_err(pg, "COMMIT ended in ROLLBACK (the transaction had failed)");
        rc = SQLITE_ERROR;
    }
    PQclear(r);
    if (rc != SQLITE_OK && strncmp(sql, "ROLLBACK", 8) != 0)
        after_error(st);
    return rc;
}

unsigned
hsmca_pg_gen(const struct hsmca_store *st)
{
    return st->pg != NULL ? st->pg->gen : 0;
}

const char *
hsmca_pg_errmsg(struct hsmca_store *st)
{
    return st->pg->err;
}

/* One integer from a one-row text result (the schema version); -1 when there is none. */
static int
int_result(PGresult *r)
{
    const char *v;
    int x = 0;

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQgetisnull(r, 0, 0))
        return -1;
    for (v = PQgetvalue(r, 0, 0); *v >= '0' && *v <= '9' && x < 100000; v++)
        x = x * 10 + (*v - '0');
    return *v == '\0' ? x : -1;
}

enum hsmca_err
hsmca_pg_schema_version(struct hsmca_store *st, int *out)
{
    PGresult *r;
    int v;

    if (!alive(st))
        return HSMCA_E_STORE_READ;
    r = PQexec(st->pg->conn, "SELECT version FROM hsmca_schema");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0) {
        PQclear(r);
        *out = 0;
        return HSMCA_OK;
    }
    v = int_result(r);
    if (v < 0)
        keep_err(st->pg, PQresultErrorMessage(r));
    PQclear(r);
    if (v < 0)
        return HSMCA_E_STORE_READ;
    *out = v;
    return HSMCA_OK;
}

static enum hsmca_err
run_simple(struct hsmca_store *st, const char *sql)
{
    return hsmca_store_rc(st, hsmca_pg_exec(st, sql), 1);
}

/* Migrate to target in one transaction, under an advisory lock (nodes starting together). */
static enum hsmca_err
migrate(struct hsmca_store *st, int target)
{
    char sql[192];
    enum hsmca_err rc;
    int v = 0, i;

    rc = run_simple(st, "BEGIN");
    if (rc != HSMCA_OK)
        return rc;
    st->in_txn = 1;
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%ld)", MIGRATE_LOCK);
    rc = run_simple(st, sql);
    if (rc == HSMCA_OK)
        rc = run_simple(st, "CREATE TABLE IF NOT EXISTS hsmca_schema ("
                            "one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), "
                            "version INTEGER NOT NULL CHECK (version >= 0))");
    if (rc == HSMCA_OK)
        rc = hsmca_pg_schema_version(st, &v);
    if (rc != HSMCA_OK)
        goto fail;
    if (v > MIGRATIONS) {
        hsmca_log(HSMCA_LOG_ERROR, "store", "schema-too-new",
                  "have=%d know=%d reason=\"database written by a newer hsmca\"", v, MIGRATIONS);
        rc = HSMCA_E_STORE_SCHEMA;
        goto fail;
    }
    if (v >= target) {
        (void)hsmca_pg_exec(st, "COMMIT"); /* the schema table may be new */
        st->in_txn = 0;
        return HSMCA_OK;
    }
    for (i = v; i < target; i++) {
        rc = run_simple(st, migrations[i]);
        if (rc != HSMCA_OK) {
            hsmca_log(HSMCA_LOG_ERROR, "store", "migration-failed", "to=%d msg=\"%s\"", i + 1,
                      st->pg->err);
            rc = HSMCA_E_STORE_SCHEMA;
            goto fail;
        }
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO hsmca_schema(version) VALUES(%d) ON CONFLICT (one) DO UPDATE SET "
             "version = excluded.version",
             target);
    rc = run_simple(st, sql);
    if (rc == HSMCA_OK)
        rc = run_simple(st, "COMMIT");
    st->in_txn = 0;
    if (rc != HSMCA_OK)
        return rc;
    hsmca_log(HSMCA_LOG_INFO, "store", "migrated", "from=%d to=%d backend=postgresql", v, target);
    return HSMCA_OK;
fail:
    (void)hsmca_pg_exec(st, "ROLLBACK");
    st->in_txn = 0;
    return rc;
}

enum hsmca_err
hsmca_pg_open(struct hsmca_store *st, const char *conninfo, int target, int readonly)
{
    struct hsmca_pg *pg;
    enum hsmca_err rc;
    int v = 0;

    if (MIGRATIONS != hsmca_store_schema_latest()) /* the two lists move together */
        return HSMCA_E_INTERNAL;
    pg = calloc(1, sizeof(*pg));
    if (pg == NULL)
        return HSMCA_E_NOMEM;
    st->pg = pg;
    pg->readonly = readonly;
    pg->conn = PQconnectdb(conninfo);
    if (pg->conn == NULL)
        return HSMCA_E_NOMEM;
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        keep_err(pg, PQerrorMessage(pg->conn));
        /* the server's message only: the connection string is never logged */
        hsmca_log(HSMCA_LOG_ERROR, "store", "open-failed", "backend=postgresql msg=\"%s\"",
                  pg->err);
        return HSMCA_E_STORE_OPEN;
    }
    if (!session(pg)) {
        hsmca_log(HSMCA_LOG_ERROR, "store", "open-failed", "backend=postgresql msg=\"%s\"",
                  pg->err);
        return HSMCA_E_STORE_OPEN;
    }
    if (!readonly)
        return migrate(st, target);
    rc = hsmca_pg_schema_version(st, &v);
    if (rc != HSMCA_OK)
        return HSMCA_E_STORE_OPEN;
    return v == MIGRATIONS ? HSMCA_OK : HSMCA_E_STORE_SCHEMA;
}

void
hsmca_pg_close(struct hsmca_pg *pg)
{
    if (pg == NULL)
        return;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    free(pg);
}

static int
show_is(struct hsmca_pg *pg, const char *sql, const char *bad)
{
    PGresult *r = PQexec(pg->conn, sql);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
             strcmp(PQgetvalue(r, 0, 0), bad) != 0;

    PQclear(r);
    return ok;
}

enum hsmca_err
hsmca_pg_check_durable(struct hsmca_store *st)
{
    if (!alive(st))
        return HSMCA_E_STORE_READ;
    if (!show_is(st->pg, "SHOW fsync", "off") ||
        !show_is(st->pg, "SHOW synchronous_commit", "off") ||
        !show_is(st->pg, "SHOW full_page_writes", "off"))
        return HSMCA_E_STORE_SCHEMA;
    return HSMCA_OK;
}

/* ---- statements ---- */

struct hsmca_pgq *
hsmca_pgq_new(struct hsmca_store *st, const char *sql)
{
    struct hsmca_pgq *p = calloc(1, sizeof(*p));
    size_t i, o = 0, n = strlen(sql);

    if (p == NULL)
        return NULL;
    p->sql = malloc(n + 1);
    if (p->sql == NULL) {
        free(p);
        return NULL;
    }
    /* ?N -> $N, and the highest N is the parameter count */
    for (i = 0; i < n; i++) {
        char c = sql[i];

        if ((c == '?' || c == '$') && i + 1 < n && sql[i + 1] >= '1' && sql[i + 1] <= '9') {
            int k = 0;
            size_t j = i + 1;

            while (j < n && sql[j] >= '0' && sql[j] <= '9' && k < 100)
                k = k * 10 + (sql[j++] - '0');
            if (k > p->nparams)
                p->nparams = k;
            c = '$';
        }
        p->sql[o++] = c;
    }
    p->sql[o] = '\0';
    if (p->nparams > PGQ_MAXP) {
        free(p->sql);
        free(p);
        return NULL;
    }
    p->pg = st->pg;
    snprintf(p->name, sizeof(p->name), "hsmca_%u", ++st->pg->next_id);
    return p;
}

void
hsmca_pgq_reset(struct hsmca_pgq *p)
{
    int i;

    if (p == NULL)
        return;
    PQclear(p->res);
    p->res = NULL;
    p->ran = 0;
    p->row = -1;
    p->nrows = 0;
    for (i = 0; i < PGQ_MAXP; i++) {
        p->vals[i] = NULL;
        p->lens[i] = 0;
        p->fmts[i] = 0;
    }
}

void
hsmca_pgq_free(struct hsmca_pgq *p)
{
    if (p == NULL)
        return;
    PQclear(p->res);
    free(p->sql);
    free(p);
}

void
hsmca_pgq_bind(struct hsmca_pgq *p, int i, int kind, const void *v, size_t n, int64_t x)
{
    if (i < 1 || i > PGQ_MAXP)
        return;
    i--;
    if (kind == 'i') {
        snprintf(p->nums[i], sizeof(p->nums[i]), "%lld", (long long)x);
        p->vals[i] = p->nums[i];
        p->fmts[i] = 0;
        if (p->gen == 0)
            p->types[i] = OID_INT8;
    } else if (kind == 'b') {
        /* an empty blob is an empty bytea (never NULL): the pointer only needs to be valid */
        p->vals[i] = v != NULL ? v : "";
        p->lens[i] = (int)n;
        p->fmts[i] = 1;
        if (p->gen == 0)
            p->types[i] = OID_BYTEA;
    } else {
        p->vals[i] = v;
        p->fmts[i] = 0;
        if (p->gen == 0 && v != NULL)
            p->types[i] = OID_TEXT;
    }
}

static int
count_changes(PGresult *r)
{
    const char *t = PQcmdTuples(r);
    int x = 0;

    for (; *t >= '0' && *t <= '9' && x < 100000000; t++)
        x = x * 10 + (*t - '0');
    return x;
}

int
hsmca_pgq_step(struct hsmca_store *st, struct hsmca_pgq *p)
{
    struct hsmca_pg *pg = st->pg;

    if (!p->ran) {
        ExecStatusType s;

        p->ran = 1;
        p->row = -1;
        if (!alive(st)) {
            keep_err(pg, PQerrorMessage(pg->conn));
            return SQLITE_IOERR;
        }
        if (p->gen != pg->gen) {
            PGresult *r = PQprepare(pg->conn, p->name, p->sql, p->nparams, p->types);
            int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? SQLITE_OK : map_state(pg, r);

            PQclear(r);
            if (rc != SQLITE_OK) {
                after_error(st);
                return rc;
            }
            p->gen = pg->gen;
        }
        p->res = PQexecPrepared(pg->conn, p->name, p->nparams, p->vals, p->lens, p->fmts, 1);
        s = PQresultStatus(p->res);
        if (s == PGRES_TUPLES_OK) {
            p->nrows = PQntuples(p->res);
            p->changes = 0;
        } else if (s == PGRES_COMMAND_OK) {
            p->nrows = 0;
            p->changes = count_changes(p->res);
        } else {
            int rc = map_state(pg, p->res);

            PQclear(p->res);
            p->res = NULL;
            p->nrows = 0;
            after_error(st);
            return rc;
        }
    }
    p->row++;
    return p->row < p->nrows ? SQLITE_ROW : SQLITE_DONE;
}

int
hsmca_pgq_null(struct hsmca_pgq *p, int col)
{
    if (p->res == NULL || p->row < 0 || p->row >= p->nrows || col >= PQnfields(p->res))
        return 1;
    return PQgetisnull(p->res, p->row, col);
}

const void *
hsmca_pgq_value(struct hsmca_pgq *p, int col)
{
    if (hsmca_pgq_null(p, col))
        return NULL;
    return PQgetvalue(p->res, p->row, col);
}

int
hsmca_pgq_bytes(struct hsmca_pgq *p, int col)
{
    if (hsmca_pgq_null(p, col))
        return 0;
    return PQgetlength(p->res, p->row, col);
}

/* Binary results: integers in network order, 8, 4 or 2 bytes; a boolean in 1. */
int64_t
hsmca_pgq_int64(struct hsmca_pgq *p, int col)
{
    const unsigned char *v = hsmca_pgq_value(p, col);
    int n = hsmca_pgq_bytes(p, col), i;
    uint64_t x = 0;

    if (v == NULL || (n != 1 && n != 2 && n != 4 && n != 8))
        return 0;
    for (i = 0; i < n; i++)
        x = (x << 8) | v[i];
    if (n < 8 && n > 1 && (v[0] & 0x80) != 0) /* sign-extend */
        x |= ~(uint64_t)0 << (8 * n);
    return (int64_t)x;
}

int
hsmca_pgq_changes(struct hsmca_pgq *p)
{
    return p->changes;
}
