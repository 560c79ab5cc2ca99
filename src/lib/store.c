/* SPDX-License-Identifier: Apache-2.0
 *
 * store.c -- opening the SQLite database, its durability settings, the schema and its migrations,
 * transactions and the `meta` table. The migration list below is the one place the schema is
 * defined: each entry moves the database from version i to i+1 and is never edited once released;
 * a change is a new entry. Area-specific queries live in store_<area>.c beside this file.
 * Never stores a secret: PINs and shares reach the store only sealed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hsmca/limits.h"
#include "hsmca/log.h"
#include "hsmca/store_certs.h"
#include "hsmca/util.h"

#include "store_internal.h"

/*
 * The migrations, in order. Version n is reached by running migrations[0..n).
 * 1 core (meta), 2 CAs and certificates, 3 the audit log. The quorum tables come next. Append;
 * never reorder or edit a released entry.
 */
static const char *const migrations[] = {
    /* 1: core settings */
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY NOT NULL CHECK (length(key) BETWEEN 1 AND 64),"
    "  value TEXT NOT NULL CHECK (length(value) <= 4096)"
    ") STRICT;",

    /* 2: CAs, issued certificates, revocations, CRLs (store_certs.c) */
    "CREATE TABLE cas ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  kind TEXT NOT NULL CHECK (kind IN ('paa', 'pai')),"
    "  parent TEXT REFERENCES cas(id),"
    "  token_uri TEXT NOT NULL,"
    "  key_uri TEXT NOT NULL,"
    "  vid INTEGER CHECK (vid BETWEEN 0 AND 65535),"
    "  pid INTEGER CHECK (pid BETWEEN 0 AND 65535),"
    "  cert BLOB,"
    "  created_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE certificates ("
    "  ca TEXT NOT NULL REFERENCES cas(id),"
    "  serial BLOB NOT NULL CHECK (length(serial) BETWEEN 1 AND 20),"
    "  request_id TEXT CHECK (length(request_id) BETWEEN 1 AND 128),"
    "  csr_sha256 BLOB NOT NULL CHECK (length(csr_sha256) = 32),"
    "  sha256 BLOB NOT NULL CHECK (length(sha256) = 32),"
    "  vid INTEGER NOT NULL,"
    "  pid INTEGER NOT NULL,"
    "  not_before INTEGER NOT NULL,"
    "  not_after INTEGER NOT NULL,"
    "  issued_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER,"
    "  reason INTEGER CHECK (reason BETWEEN 0 AND 10),"
    "  der BLOB NOT NULL,"
    "  PRIMARY KEY (ca, serial)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE UNIQUE INDEX certificates_request ON certificates(ca, request_id)"
    "  WHERE request_id IS NOT NULL;"
    "CREATE INDEX certificates_issued ON certificates(ca, issued_ms, serial);"
    "CREATE TABLE crls ("
    "  ca TEXT PRIMARY KEY NOT NULL REFERENCES cas(id),"
    "  number INTEGER NOT NULL CHECK (number >= 0),"
    "  this_update INTEGER NOT NULL,"
    "  next_update INTEGER NOT NULL,"
    "  der BLOB NOT NULL"
    ") STRICT;",

    /* 3: the audit log (store_audit.c): entries as exact line bytes, signed checkpoints, open
     * intents (token side effects begun but not yet completed) */
    "CREATE TABLE audit_entries ("
    "  seq INTEGER PRIMARY KEY CHECK (seq >= 1),"
    "  line BLOB NOT NULL CHECK (length(line) BETWEEN 2 AND 65536),"
    "  hash BLOB NOT NULL CHECK (length(hash) = 32)"
    ") STRICT;"
    "CREATE TABLE audit_checkpoints ("
    "  size INTEGER PRIMARY KEY CHECK (size >= 1),"
    "  text BLOB NOT NULL CHECK (length(text) <= 1024),"
    "  sig BLOB NOT NULL CHECK (length(sig) <= 80),"
    "  hash BLOB NOT NULL CHECK (length(hash) = 32),"
    "  head BLOB NOT NULL CHECK (length(head) = 32)"
    ") STRICT;"
    "CREATE TABLE audit_intents ("
    "  seq INTEGER PRIMARY KEY REFERENCES audit_entries(seq),"
    "  action TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 256)"
    ") STRICT;",

    /* 4: quorum (store_quorum.c): approvers, epochs, CA tokens under quorum, sealed shares and
     * their commitments, requests and approvals. Only sealed shares; never a PIN. */
    "CREATE TABLE quorum_approvers ("
    "  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  spki BLOB NOT NULL UNIQUE,"
    "  fingerprint BLOB NOT NULL UNIQUE CHECK (length(fingerprint) = 32),"
    "  token_serial TEXT UNIQUE CHECK (length(token_serial) BETWEEN 1 AND 16),"
    "  since_epoch INTEGER NOT NULL CHECK (since_epoch >= 1),"
    "  until_epoch INTEGER CHECK (until_epoch > since_epoch)"
    ") STRICT;"
    "CREATE TABLE quorum_epochs ("
    "  epoch INTEGER PRIMARY KEY CHECK (epoch >= 1),"
    "  m INTEGER NOT NULL CHECK (m BETWEEN 2 AND 32),"
    "  policy TEXT NOT NULL CHECK (length(policy) <= 8192),"
    "  policy_hash TEXT NOT NULL CHECK (length(policy_hash) = 64),"
    "  created_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE quorum_tokens ("
    "  label TEXT PRIMARY KEY NOT NULL CHECK (length(label) BETWEEN 1 AND 32),"
    "  uri TEXT NOT NULL,"
    "  epoch INTEGER NOT NULL REFERENCES quorum_epochs(epoch),"
    "  pin_salt BLOB NOT NULL CHECK (length(pin_salt) = 32),"
    "  pin_commit BLOB NOT NULL CHECK (length(pin_commit) = 32)"
    ") STRICT;"
    "CREATE TABLE quorum_shares ("
    "  label TEXT NOT NULL REFERENCES quorum_tokens(label),"
    "  epoch INTEGER NOT NULL REFERENCES quorum_epochs(epoch),"
    "  approver TEXT NOT NULL REFERENCES quorum_approvers(name),"
    "  idx INTEGER NOT NULL CHECK (idx BETWEEN 1 AND 32),"
    "  commitment BLOB NOT NULL CHECK (length(commitment) = 32),"
    "  sealed BLOB NOT NULL CHECK (length(sealed) BETWEEN 95 AND 256),"
    "  PRIMARY KEY (label, epoch, approver),"
    "  UNIQUE (label, epoch, idx)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE quorum_requests ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
    "  op TEXT NOT NULL CHECK (length(op) BETWEEN 1 AND 31),"
    "  bytes BLOB NOT NULL CHECK (length(bytes) <= 16384),"
    "  epoch INTEGER NOT NULL REFERENCES quorum_epochs(epoch),"
    "  requester TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL CHECK (expires_ms > created_ms),"
    "  status TEXT NOT NULL CHECK (status IN ('pending', 'executed', 'failed'))"
    ") STRICT;"
    "CREATE TABLE quorum_approvals ("
    "  request_id TEXT NOT NULL REFERENCES quorum_requests(id),"
    "  approver TEXT NOT NULL REFERENCES quorum_approvers(name),"
    "  body BLOB NOT NULL CHECK (length(body) <= 16384),"
    "  received_ms INTEGER NOT NULL,"
    "  UNIQUE (request_id, approver)"
    ") STRICT;",

    /* 5: crash-safe PIN rotation (docs/custody.md): a CA token may have an alternate PIN record,
     * the PIN it had before a rotation that is written ahead but not yet confirmed. Its shares
     * are kept until the rotation is confirmed; alt_epoch 0 means none. */
    "ALTER TABLE quorum_tokens ADD COLUMN alt_epoch INTEGER NOT NULL DEFAULT 0"
    "  CHECK (alt_epoch >= 0);"
    "ALTER TABLE quorum_tokens ADD COLUMN alt_pin_salt BLOB NOT NULL DEFAULT "
    "  X'0000000000000000000000000000000000000000000000000000000000000000'"
    "  CHECK (length(alt_pin_salt) = 32);"
    "ALTER TABLE quorum_tokens ADD COLUMN alt_pin_commit BLOB NOT NULL DEFAULT "
    "  X'0000000000000000000000000000000000000000000000000000000000000000'"
    "  CHECK (length(alt_pin_commit) = 32);",
    /* 6: revocation (store_certs.c): a revocation's invalidityDate (RFC 5280 5.3.2); revoked CAs
     * (a revoked PAI's serial goes on its PAA's CRL); the revoked rows of an issuer in a covering
     * partial index, so a CRL of 100,000 entries reads that index only */
    "ALTER TABLE certificates ADD COLUMN invalidity_ms INTEGER;"
    "ALTER TABLE cas ADD COLUMN serial BLOB CHECK (length(serial) BETWEEN 1 AND 20);"
    "ALTER TABLE cas ADD COLUMN revoked_ms INTEGER;"
    "ALTER TABLE cas ADD COLUMN reason INTEGER CHECK (reason BETWEEN 0 AND 10);"
    "ALTER TABLE cas ADD COLUMN invalidity_ms INTEGER;"
    "CREATE INDEX certificates_revoked ON certificates(ca, serial, revoked_ms, reason, "
    "invalidity_ms) WHERE revoked_ms IS NOT NULL;",
    /* 7: the factory floor (store_factory.c): production lines (the certificate an offline
     * bundle is sealed to, registered by an admin) and the bundles made for them. Never a
     * device key: only hashes of what was sealed. */
    "CREATE TABLE factory_lines ("
    "  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  cert BLOB NOT NULL CHECK (length(cert) BETWEEN 1 AND 16384),"
    "  sha256 BLOB NOT NULL CHECK (length(sha256) = 32),"
    "  registered_by TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE factory_bundles ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
    "  ca TEXT NOT NULL REFERENCES cas(id),"
    "  line TEXT NOT NULL REFERENCES factory_lines(name),"
    "  count INTEGER NOT NULL CHECK (count >= 0),"
    "  manifest_sha256 BLOB NOT NULL CHECK (length(manifest_sha256) = 32),"
    "  envelope_sha256 BLOB NOT NULL CHECK (length(envelope_sha256) = 32),"
    "  requester TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  received_ms INTEGER,"
    "  received_by TEXT"
    ") STRICT;",
    /* 8: mobile driving licences, ISO/IEC 18013-5 (store_mdl.c): IACA roots and the document
     * signers they issued, apart from the Matter CAs; each IACA's latest CRL */
    "CREATE TABLE mdl_cas ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  kind TEXT NOT NULL CHECK (kind IN ('iaca', 'ds')),"
    "  parent TEXT REFERENCES mdl_cas(id),"
    "  token_uri TEXT NOT NULL,"
    "  key_uri TEXT NOT NULL,"
    "  cert BLOB NOT NULL CHECK (length(cert) BETWEEN 1 AND 16384),"
    "  serial BLOB NOT NULL CHECK (length(serial) BETWEEN 1 AND 20),"
    "  created_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER,"
    "  reason INTEGER CHECK (reason BETWEEN 0 AND 10),"
    "  invalidity_ms INTEGER,"
    "  CHECK ((kind = 'iaca') = (parent IS NULL))"
    ") STRICT;"
    "CREATE TABLE mdl_crls ("
    "  ca TEXT PRIMARY KEY NOT NULL REFERENCES mdl_cas(id),"
    "  number INTEGER NOT NULL CHECK (number >= 0),"
    "  this_update INTEGER NOT NULL,"
    "  next_update INTEGER NOT NULL,"
    "  der BLOB NOT NULL"
    ") STRICT;",
    /* 9: a cancelled request is 'cancelled', not 'failed' (quorum_exec.c). SQLite cannot change
     * a CHECK in place: the requests table is rebuilt, its approvals set aside and put back
     * (rowids kept: they are the approvals' order) so that no foreign key is ever broken */
    "CREATE TEMP TABLE m9_approvals AS SELECT rowid AS rid, request_id, approver, body, "
    "  received_ms FROM quorum_approvals;"
    "DELETE FROM quorum_approvals;"
    "CREATE TABLE quorum_requests_m9 ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32),"
    "  op TEXT NOT NULL CHECK (length(op) BETWEEN 1 AND 31),"
    "  bytes BLOB NOT NULL CHECK (length(bytes) <= 16384),"
    "  epoch INTEGER NOT NULL REFERENCES quorum_epochs(epoch),"
    "  requester TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL CHECK (expires_ms > created_ms),"
    "  status TEXT NOT NULL CHECK (status IN ('pending', 'executed', 'failed', 'cancelled'))"
    ") STRICT;"
    "INSERT INTO quorum_requests_m9 SELECT id, op, bytes, epoch, requester, created_ms, "
    "  expires_ms, status FROM quorum_requests;"
    "DROP TABLE quorum_requests;"
    "ALTER TABLE quorum_requests_m9 RENAME TO quorum_requests;"
    "INSERT INTO quorum_approvals(rowid, request_id, approver, body, received_ms) "
    "  SELECT rid, request_id, approver, body, received_ms FROM m9_approvals ORDER BY rid;"
    "DROP TABLE m9_approvals;",

    /* 10: activation windows shared by the nodes of one store (store_windows.c): a row per
     * window, its count reserved in blocks (used never exceeds max_dacs), and the window each
     * certificate was issued under */
    "CREATE TABLE windows ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  ca TEXT NOT NULL REFERENCES cas(id),"
    "  until_ms INTEGER NOT NULL,"
    "  max_dacs INTEGER NOT NULL CHECK (max_dacs >= 1),"
    "  used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= max_dacs),"
    "  opened_ms INTEGER NOT NULL"
    ") STRICT;"
    "ALTER TABLE certificates ADD COLUMN window_id TEXT;",

    /* 11: issuance quotas and mDL signing windows shared by the nodes (store_quota.c,
     * store_windows.c): the quotas' sliding counts in buckets (a second of the minute, a minute
     * of the day), seeded with the certificates of the last day; mDL windows as DAC windows */
    "CREATE TABLE quota_buckets ("
    "  ca TEXT NOT NULL,"
    "  period TEXT NOT NULL CHECK (period IN ('m', 'd')),"
    "  start_ms INTEGER NOT NULL,"
    "  used INTEGER NOT NULL CHECK (used >= 0),"
    "  PRIMARY KEY (ca, period, start_ms)"
    ") STRICT, WITHOUT ROWID;"
    "INSERT INTO quota_buckets(ca, period, start_ms, used) "
    "  SELECT ca, 'd', issued_ms / 60000 * 60000, count(*) FROM certificates "
    "  WHERE issued_ms > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - 86400000 "
    "  GROUP BY 1, 3;"
    "INSERT INTO quota_buckets(ca, period, start_ms, used) "
    "  SELECT ca, 'm', issued_ms / 1000 * 1000, count(*) FROM certificates "
    "  WHERE issued_ms > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - 60000 "
    "  GROUP BY 1, 3;"
    "CREATE TABLE mdl_windows ("
    "  id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),"
    "  ca TEXT NOT NULL REFERENCES mdl_cas(id),"
    "  until_ms INTEGER NOT NULL,"
    "  max_signatures INTEGER NOT NULL CHECK (max_signatures >= 1),"
    "  used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= max_signatures),"
    "  opened_ms INTEGER NOT NULL"
    ") STRICT;",

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
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (request_id, node)"
    ") STRICT;"
    "CREATE INDEX quorum_nodes_node ON quorum_nodes(node, state);",
};

#define MIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

int
hsmca_store_schema_latest(void)
{
    return MIGRATIONS;
}

enum hsmca_err
hsmca_store_rc(struct hsmca_store *st, int rc, int write_ctx)
{
    const char *msg = st == NULL       ? ""
                      : st->pg != NULL ? hsmca_pg_errmsg(st)
                      : st->db != NULL ? sqlite3_errmsg(st->db)
                                       : "";

    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return HSMCA_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return HSMCA_E_STORE_BUSY;
    case SQLITE_CONSTRAINT:
        return HSMCA_E_STORE_CONSTRAINT;
    case SQLITE_NOMEM:
        return HSMCA_E_NOMEM;
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
        hsmca_log(HSMCA_LOG_ERROR, "store", "write-failed", "rc=%d msg=\"%s\"", rc, msg);
        return HSMCA_E_STORE_WRITE;
    default:
        hsmca_log(HSMCA_LOG_DEBUG, "store", "sqlite-error", "rc=%d msg=\"%s\"", rc, msg);
        return write_ctx ? HSMCA_E_STORE_WRITE : HSMCA_E_STORE_READ;
    }
}

enum hsmca_err
hsmca_store_row_rc(struct hsmca_store *st, int src)
{
    enum hsmca_err rc;

    if (src == SQLITE_ROW)
        return HSMCA_OK;
    if (src == SQLITE_DONE)
        return HSMCA_E_NOT_FOUND;
    rc = hsmca_store_rc(st, src, 0);
    return rc == HSMCA_OK ? HSMCA_E_STORE_READ : rc;
}

static enum hsmca_err
exec(struct hsmca_store *st, const char *sql, int write_ctx)
{
    int rc = st->pg != NULL ? hsmca_pg_exec(st, sql) : sqlite3_exec(st->db, sql, NULL, NULL, NULL);

    return hsmca_store_rc(st, rc, write_ctx);
}

/* exec for one statement the writer runs per commit or per item (BEGIN, COMMIT, SAVEPOINT,
 * RELEASE, ROLLBACK TO): prepared once and kept, not parsed again each time. PostgreSQL runs
 * them as they are (its BEGIN is BEGIN IMMEDIATE's counterpart: every write takes row locks). */
static enum hsmca_err
step_kept(struct hsmca_store *st, const char *sql)
{
    struct hsmca_q *s = NULL;
    int src;

    if (st->pg != NULL)
        return hsmca_store_rc(
            st, hsmca_pg_exec(st, strcmp(sql, "BEGIN IMMEDIATE") == 0 ? "BEGIN" : sql), 1);
    src = hsmca_store_prepare(st, sql, &s);
    if (src == SQLITE_OK)
        src = hsmca_q_step(s);
    if (src == SQLITE_DONE)
        src = SQLITE_OK;
    hsmca_store_release(st, s);
    return hsmca_store_rc(st, src, 1);
}

static enum hsmca_err
user_version(struct hsmca_store *st, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (st->pg != NULL)
        return hsmca_pg_schema_version(st, out);
    rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(s);
        return hsmca_store_rc(st, rc, 0) == HSMCA_OK ? HSMCA_E_STORE_READ
                                                     : hsmca_store_rc(st, rc, 0);
    }
    *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return HSMCA_OK;
}

/* Run migrations from the current version up to target, all in one transaction. */
static enum hsmca_err
migrate(struct hsmca_store *st, int target)
{
    enum hsmca_err rc;
    char pragma[48];
    int v = 0, i;

    rc = exec(st, "BEGIN IMMEDIATE", 1);
    if (rc != HSMCA_OK)
        return rc;
    rc = user_version(st, &v);
    if (rc != HSMCA_OK)
        goto fail;
    if (v > MIGRATIONS) {
        hsmca_log(HSMCA_LOG_ERROR, "store", "schema-too-new",
                  "have=%d know=%d reason=\"database written by a newer hsmca\"", v, MIGRATIONS);
        rc = HSMCA_E_STORE_SCHEMA;
        goto fail;
    }
    if (v >= target) {
        (void)exec(st, "ROLLBACK", 0);
        return HSMCA_OK;
    }
    for (i = v; i < target; i++) {
        rc = exec(st, migrations[i], 1);
        if (rc != HSMCA_OK) {
            hsmca_log(HSMCA_LOG_ERROR, "store", "migration-failed", "to=%d msg=\"%s\"", i + 1,
                      sqlite3_errmsg(st->db));
            rc = HSMCA_E_STORE_SCHEMA;
            goto fail;
        }
    }
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", target);
    rc = exec(st, pragma, 1);
    if (rc != HSMCA_OK)
        goto fail;
    rc = exec(st, "COMMIT", 1);
    if (rc != HSMCA_OK)
        goto fail;
    hsmca_log(HSMCA_LOG_INFO, "store", "migrated", "from=%d to=%d", v, target);
    return HSMCA_OK;
fail:
    (void)exec(st, "ROLLBACK", 0);
    return rc;
}

static enum hsmca_err
open_db(const char *path, int target, int readonly, struct hsmca_store **out)
{
    struct hsmca_store *st = NULL;
    enum hsmca_err rc = HSMCA_E_STORE_OPEN;
    int flags, src;

    if (path == NULL || out == NULL || strlen(path) > HSMCA_PATH_MAX)
        return HSMCA_E_INVALID_ARG;
    if (target < 0 || target > MIGRATIONS)
        return HSMCA_E_INVALID_ARG;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->idle, NULL);
    st->readonly = readonly;
    if (hsmca_store_spec_is_pg(path)) {
        rc = hsmca_pg_open(st, path, target, readonly);
        if (rc != HSMCA_OK)
            goto out;
        *out = st;
        return HSMCA_OK;
    }
    if (strncmp(path, "sqlite:", 7) == 0)
        path += 7;
    flags = SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW;
    flags |= readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    src = sqlite3_open_v2(path, &st->db, flags, NULL);
    if (src != SQLITE_OK) {
        hsmca_log(HSMCA_LOG_ERROR, "store", "open-failed", "path=%s msg=\"%s\"", path,
                  st->db != NULL ? sqlite3_errmsg(st->db) : "out of memory");
        goto out;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    if (!readonly) {
        /* WAL + FULL: a commit is durable once it returns (see docs/design.md, Audit log). */
        rc = exec(st, "PRAGMA journal_mode=WAL", 1);
        if (rc == HSMCA_OK)
            rc = exec(st, "PRAGMA synchronous=FULL", 1);
        if (rc == HSMCA_OK)
            rc = exec(st, "PRAGMA foreign_keys=ON", 1);
        /* 16 MiB of page cache for the writer (SQLite's default is 2 MiB). Chosen when serials
         * were wholly random and each certificate landed on a random leaf page, which a small
         * cache read back from the file (tools/bench: the writer's pread time). Serials now begin
         * with the issue time (hsmca_matter_serial), so inserts append; the cache still keeps the
         * B-trees' inner pages, and the request-id index that an insert with an id probes. */
        if (rc == HSMCA_OK)
            rc = exec(st, "PRAGMA cache_size=-16384", 1);
        if (rc != HSMCA_OK) {
            rc = rc == HSMCA_E_STORE_BUSY ? rc : HSMCA_E_STORE_OPEN;
            goto out;
        }
        rc = migrate(st, target);
        if (rc != HSMCA_OK)
            goto out;
    } else {
        int v = 0;

        rc = user_version(st, &v);
        if (rc != HSMCA_OK) {
            rc = HSMCA_E_STORE_OPEN;
            goto out;
        }
        if (v != MIGRATIONS) {
            rc = HSMCA_E_STORE_SCHEMA;
            goto out;
        }
        (void)exec(st, "PRAGMA query_only=ON", 0);
    }
    *out = st;
    st = NULL;
    rc = HSMCA_OK;
out:
    hsmca_store_close(st);
    return rc;
}

enum hsmca_err
hsmca_store_open(const char *path, struct hsmca_store **out)
{
    return open_db(path, MIGRATIONS, 0, out);
}

enum hsmca_err
hsmca_store_open_at(const char *path, int target, struct hsmca_store **out)
{
    return open_db(path, target, 0, out);
}

enum hsmca_err
hsmca_store_open_readonly(const char *path, struct hsmca_store **out)
{
    return open_db(path, MIGRATIONS, 1, out);
}

int
hsmca_store_spec_is_pg(const char *spec)
{
    size_t i;

    if (spec == NULL)
        return 0;
    if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0)
        return 1;
    /* libpq's keyword=value form: the first word is a keyword followed by '=' */
    for (i = 0; (spec[i] >= 'a' && spec[i] <= 'z') || spec[i] == '_'; i++)
        ;
    return i > 0 && spec[i] == '=';
}

int
hsmca_store_is_pg(const struct hsmca_store *st)
{
    return st != NULL && st->pg != NULL;
}

static int
cache_put(struct hsmca_store *st, const char *key, sqlite3_stmt *s, struct hsmca_pgq *p,
          struct hsmca_q **out)
{
    struct hsmca_q *q;

    if (st->nstmts < HSMCA_STORE_STMT_CACHE) {
        q = &st->stmts[st->nstmts++];
    } else {
        q = calloc(1, sizeof(*q)); /* not kept: freed by release */
        if (q == NULL) {
            sqlite3_finalize(s);
            hsmca_pgq_free(p);
            return SQLITE_NOMEM;
        }
    }
    q->text = strdup(key);
    if (q->text == NULL) {
        sqlite3_finalize(s);
        hsmca_pgq_free(p);
        if (q < &st->stmts[0] || q >= &st->stmts[HSMCA_STORE_STMT_CACHE])
            free(q);
        else
            st->nstmts--;
        return SQLITE_NOMEM;
    }
    q->st = st;
    q->key = key;
    q->s = s;
    q->p = p;
    *out = q;
    return SQLITE_OK;
}

int
hsmca_store_prepare2(struct hsmca_store *st, const char *sqlite_sql, const char *pg_sql,
                     struct hsmca_q **out)
{
    const char *sql = st->pg != NULL ? pg_sql : sqlite_sql;
    sqlite3_stmt *s = NULL;
    struct hsmca_pgq *p;
    int src;

    *out = NULL;
    for (unsigned i = 0; i < st->nstmts; i++) {
        /* the pointer finds it fast; the text makes a reused buffer harmless */
        if (st->stmts[i].key == sql && strcmp(st->stmts[i].text, sql) == 0) {
            *out = &st->stmts[i];
            return SQLITE_OK;
        }
    }
    if (st->pg != NULL) {
        p = hsmca_pgq_new(st, sql);
        if (p == NULL)
            return SQLITE_NOMEM;
        return cache_put(st, sql, NULL, p, out);
    }
    src = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (src != SQLITE_OK)
        return src;
    return cache_put(st, sql, s, NULL, out);
}

int
hsmca_store_prepare(struct hsmca_store *st, const char *sql, struct hsmca_q **out)
{
    return hsmca_store_prepare2(st, sql, sql, out);
}

void
hsmca_store_release(struct hsmca_store *st, struct hsmca_q *q)
{
    if (q == NULL)
        return;
    if (q >= &st->stmts[0] && q < &st->stmts[HSMCA_STORE_STMT_CACHE]) {
        if (q->s != NULL) {
            sqlite3_reset(q->s);
            sqlite3_clear_bindings(q->s);
        }
        if (q->p != NULL)
            hsmca_pgq_reset(q->p);
        return;
    }
    sqlite3_finalize(q->s);
    hsmca_pgq_free(q->p);
    free(q->text);
    free(q);
}

void
hsmca_q_text(struct hsmca_q *q, int i, const char *v)
{
    if (q->p != NULL)
        hsmca_pgq_bind(q->p, i, 't', v, v != NULL ? strlen(v) : 0, 0);
    else
        sqlite3_bind_text(q->s, i, v, -1, SQLITE_STATIC);
}

void
hsmca_q_int(struct hsmca_q *q, int i, int64_t v)
{
    if (q->p != NULL)
        hsmca_pgq_bind(q->p, i, 'i', NULL, 0, v);
    else
        sqlite3_bind_int64(q->s, i, (sqlite3_int64)v);
}

void
hsmca_q_blob(struct hsmca_q *q, int i, const void *p, size_t n)
{
    if (q->p != NULL)
        hsmca_pgq_bind(q->p, i, 'b', p, n, 0);
    else
        sqlite3_bind_blob(q->s, i, p, (int)n, SQLITE_STATIC);
}

int
hsmca_q_step(struct hsmca_q *q)
{
    return q->p != NULL ? hsmca_pgq_step(q->st, q->p) : sqlite3_step(q->s);
}

int
hsmca_q_null(struct hsmca_q *q, int col)
{
    return q->p != NULL ? hsmca_pgq_null(q->p, col) : sqlite3_column_type(q->s, col) == SQLITE_NULL;
}

int64_t
hsmca_q_int64(struct hsmca_q *q, int col)
{
    return q->p != NULL ? hsmca_pgq_int64(q->p, col) : (int64_t)sqlite3_column_int64(q->s, col);
}

const void *
hsmca_q_blobp(struct hsmca_q *q, int col)
{
    return q->p != NULL ? hsmca_pgq_value(q->p, col) : sqlite3_column_blob(q->s, col);
}

const unsigned char *
hsmca_q_textp(struct hsmca_q *q, int col)
{
    return q->p != NULL ? hsmca_pgq_value(q->p, col) : sqlite3_column_text(q->s, col);
}

int
hsmca_q_bytes(struct hsmca_q *q, int col)
{
    return q->p != NULL ? hsmca_pgq_bytes(q->p, col) : sqlite3_column_bytes(q->s, col);
}

int
hsmca_q_changes(struct hsmca_q *q)
{
    return q->p != NULL ? hsmca_pgq_changes(q->p) : sqlite3_changes(q->st->db);
}

void
hsmca_store_close(struct hsmca_store *st)
{
    if (st == NULL)
        return;
    if (st->in_txn)
        (void)exec(st, "ROLLBACK", 0);
    for (unsigned i = 0; i < st->nstmts; i++) {
        sqlite3_finalize(st->stmts[i].s);
        hsmca_pgq_free(st->stmts[i].p);
        free(st->stmts[i].text);
    }
    if (st->db != NULL)
        sqlite3_close_v2(st->db);
    hsmca_pg_close(st->pg);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->idle);
    free(st);
}

enum hsmca_err
hsmca_store_schema_version(struct hsmca_store *st, int *out)
{
    enum hsmca_err rc;
    int v = 0;

    if (st == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    rc = user_version(st, &v);
    pthread_mutex_unlock(&st->lock);
    if (rc == HSMCA_OK)
        *out = v;
    return rc;
}

void
hsmca_store_copy_text(char *dst, size_t dst_size, struct hsmca_q *q, int col)
{
    const unsigned char *t = hsmca_q_textp(q, col);
    size_t n = t != NULL ? (size_t)hsmca_q_bytes(q, col) : 0;

    if (n >= dst_size)
        n = dst_size - 1;
    if (n > 0)
        memcpy(dst, t, n);
    dst[n] = '\0';
}

int
hsmca_store_copy_blob(unsigned char **dst, size_t *len, struct hsmca_q *q, int col)
{
    const void *b = hsmca_q_blobp(q, col);
    int n = hsmca_q_bytes(q, col);

    *dst = NULL;
    *len = 0;
    if (b == NULL || n <= 0)
        return 0;
    *dst = malloc((size_t)n);
    if (*dst == NULL)
        return -1;
    memcpy(*dst, b, (size_t)n);
    *len = (size_t)n;
    return 0;
}

void
hsmca_store_copy_fixed(unsigned char *dst, size_t n, struct hsmca_q *q, int col)
{
    const void *b = hsmca_q_blobp(q, col);

    if (b != NULL && (size_t)hsmca_q_bytes(q, col) == n)
        memcpy(dst, b, n);
    else
        memset(dst, 0, n);
}

void
hsmca_store_copy_serial(unsigned char serial[20], size_t *len, struct hsmca_q *q, int col)
{
    const void *b = hsmca_q_blobp(q, col);
    int n = hsmca_q_bytes(q, col);

    *len = 0;
    if (b != NULL && n > 0 && n <= 20) {
        memcpy(serial, b, (size_t)n);
        *len = (size_t)n;
    }
}

void
hsmca_store_free_blob(unsigned char **p, size_t *len)
{
    free(*p);
    *p = NULL;
    *len = 0;
}

enum hsmca_err
hsmca_store_row_by_text(struct hsmca_store *st, const char *sql, const char *key,
                        struct hsmca_q **q)
{
    int src = hsmca_store_prepare(st, sql, q);

    if (src == SQLITE_OK) {
        hsmca_q_text(*q, 1, key);
        src = hsmca_q_step(*q);
    }
    return hsmca_store_row_rc(st, src);
}

enum hsmca_err
hsmca_store_done(struct hsmca_store *st, struct hsmca_q *q, int src)
{
    enum hsmca_err rc = hsmca_store_rc(st, src, 1);

    hsmca_store_release(st, q);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_step_done(struct hsmca_store *st, struct hsmca_q *q, int src)
{
    if (src == SQLITE_OK)
        src = hsmca_q_step(q);
    return hsmca_store_done(st, q, src);
}

enum hsmca_err
hsmca_store_lock_txn(struct hsmca_store *st)
{
    pthread_mutex_lock(&st->lock);
    if (st->in_txn)
        return HSMCA_OK;
    pthread_mutex_unlock(&st->lock);
    return HSMCA_E_INVALID_ARG;
}

int
hsmca_store_next(struct hsmca_store *st, struct hsmca_q *q, enum hsmca_err *rc)
{
    *rc = hsmca_store_row_rc(st, hsmca_q_step(q));
    if (*rc == HSMCA_OK)
        return 1;
    if (*rc == HSMCA_E_NOT_FOUND)
        *rc = HSMCA_OK; /* the end of the rows */
    return 0;
}

enum hsmca_err
hsmca_store_get_by_text(struct hsmca_store *st, const char *sql, const char *key,
                        enum hsmca_err (*row)(void *out, struct hsmca_q *q), void *out)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;

    pthread_mutex_lock(&st->lock);
    rc = hsmca_store_row_by_text(st, sql, key, &s);
    if (rc == HSMCA_OK)
        rc = row(out, s);
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_rows(struct hsmca_store *st, struct hsmca_q *q, int src,
                 enum hsmca_err (*row)(void *ctx, struct hsmca_q *q), void *ctx)
{
    enum hsmca_err rc = HSMCA_OK;

    while (src == SQLITE_OK || src == SQLITE_ROW) {
        src = hsmca_q_step(q);
        if (src != SQLITE_ROW)
            break;
        rc = row(ctx, q);
        if (rc != HSMCA_OK)
            return rc;
    }
    return src == SQLITE_DONE ? HSMCA_OK : hsmca_store_rc(st, src, 0);
}

enum hsmca_err
hsmca_store_crl_put_sql(struct hsmca_store *st, const char *sql, const char *ca,
                        const struct hsmca_crl_rec *crl)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, sql, &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, ca);
        hsmca_q_int(s, 2, (int64_t)crl->number);
        hsmca_q_int(s, 3, (int64_t)crl->this_update);
        hsmca_q_int(s, 4, (int64_t)crl->next_update);
        hsmca_q_blob(s, 5, crl->der, crl->der_len);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_rc(st, src, 1);
    if (rc == HSMCA_OK && hsmca_q_changes(s) != 1)
        rc = HSMCA_E_STORE_CONSTRAINT; /* CRL numbers only grow */
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static enum hsmca_err
crl_row(void *dst, struct hsmca_q *s)
{
    struct hsmca_crl_rec *out = dst;

    memset(out, 0, sizeof(*out));
    out->number = (uint64_t)hsmca_q_int64(s, 0);
    out->this_update = hsmca_q_int64(s, 1);
    out->next_update = hsmca_q_int64(s, 2);
    return hsmca_store_copy_blob(&out->der, &out->der_len, s, 3) == 0 ? HSMCA_OK : HSMCA_E_NOMEM;
}

enum hsmca_err
hsmca_store_crl_get_sql(struct hsmca_store *st, const char *sql, const char *ca,
                        struct hsmca_crl_rec *out)
{
    return hsmca_store_get_by_text(st, sql, ca, crl_row, out);
}

enum hsmca_err
hsmca_store_begin(struct hsmca_store *st)
{
    enum hsmca_err rc;

    if (st == NULL)
        return HSMCA_E_INVALID_ARG;
    if (st->readonly)
        return HSMCA_E_STORE_WRITE;
    pthread_mutex_lock(&st->lock);
    if (st->in_txn) {
        pthread_mutex_unlock(&st->lock);
        return HSMCA_E_INVALID_ARG;
    }
    while (st->gate) /* the checkpointer is finishing a checkpoint so that the WAL rewinds */
        pthread_cond_wait(&st->idle, &st->lock);
    rc = step_kept(st, "BEGIN IMMEDIATE");
    if (rc == HSMCA_OK)
        st->in_txn = 1;
    st->savepoints = 0;
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_commit(struct hsmca_store *st)
{
    enum hsmca_err rc;

    if (st == NULL)
        return HSMCA_E_INVALID_ARG;
    if (hsmca_store_lock_txn(st) != HSMCA_OK)
        return HSMCA_E_INVALID_ARG;
    rc = step_kept(st, "COMMIT");
    if (rc == HSMCA_OK) {
        st->in_txn = 0;
        st->commits++;
    } else {
        /* a failed COMMIT leaves the transaction open: undo it so nothing half-done remains */
        (void)exec(st, "ROLLBACK", 0);
        st->in_txn = 0;
    }
    st->savepoints = 0;
    pthread_cond_broadcast(&st->idle);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void
hsmca_store_rollback(struct hsmca_store *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&st->lock);
    if (st->in_txn)
        (void)exec(st, "ROLLBACK", 0);
    st->in_txn = 0;
    st->savepoints = 0;
    pthread_cond_broadcast(&st->idle);
    pthread_mutex_unlock(&st->lock);
}

static enum hsmca_err
in_txn_exec(struct hsmca_store *st, const char *sql, int depth)
{
    enum hsmca_err rc;

    if (st == NULL)
        return HSMCA_E_INVALID_ARG;
    if (hsmca_store_lock_txn(st) != HSMCA_OK)
        return HSMCA_E_INVALID_ARG;
    rc = step_kept(st, sql);
    if (rc == HSMCA_OK)
        st->savepoints += depth;
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_savepoint(struct hsmca_store *st)
{
    return in_txn_exec(st, "SAVEPOINT hsmca_item", 1);
}

enum hsmca_err
hsmca_store_savepoint_release(struct hsmca_store *st)
{
    return in_txn_exec(st, "RELEASE hsmca_item", -1);
}

enum hsmca_err
hsmca_store_savepoint_rollback(struct hsmca_store *st)
{
    enum hsmca_err rc = in_txn_exec(st, "ROLLBACK TO hsmca_item", 0);

    return rc == HSMCA_OK ? in_txn_exec(st, "RELEASE hsmca_item", -1) : rc;
}

unsigned long
hsmca_store_commit_count(const struct hsmca_store *st)
{
    return st != NULL ? st->commits : 0;
}

enum hsmca_err
hsmca_store_meta_set(struct hsmca_store *st, const char *key, const char *value)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || key == NULL || value == NULL)
        return HSMCA_E_INVALID_ARG;
    if (strlen(key) == 0 || strlen(key) > 64 || strlen(value) > 4096)
        return HSMCA_E_TOO_LARGE;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st,
                              "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                              "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                              &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, key);
        hsmca_q_text(s, 2, value);
        src = hsmca_q_step(s);
    }
    rc = hsmca_store_rc(st, src, 1);
    if (rc == HSMCA_OK && !st->in_txn)
        st->commits++;
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

enum hsmca_err
hsmca_store_meta_get(struct hsmca_store *st, const char *key, char **value_out)
{
    struct hsmca_q *s = NULL;
    enum hsmca_err rc;
    int src;

    if (st == NULL || key == NULL || value_out == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&st->lock);
    src = hsmca_store_prepare(st, "SELECT value FROM meta WHERE key = ?1", &s);
    if (src == SQLITE_OK) {
        hsmca_q_text(s, 1, key);
        src = hsmca_q_step(s);
    }
    if (src == SQLITE_ROW) {
        const unsigned char *v = hsmca_q_textp(s, 0);
        char *copy = strdup(v != NULL ? (const char *)v : "");

        rc = copy != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
        if (copy != NULL)
            *value_out = copy;
    } else if (src == SQLITE_DONE) {
        rc = HSMCA_E_NOT_FOUND;
    } else {
        rc = hsmca_store_rc(st, src, 0);
    }
    hsmca_store_release(st, s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static enum hsmca_err
pragma_text(sqlite3 *db, const char *sql, char *out, size_t out_size)
{
    sqlite3_stmt *s = NULL;
    int src;

    src = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    if (src != SQLITE_ROW) {
        sqlite3_finalize(s);
        return HSMCA_E_STORE_READ;
    }
    snprintf(out, out_size, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_store_check_durable(struct hsmca_store *st)
{
    char journal[16] = "", sync[16] = "";
    enum hsmca_err rc;

    if (st == NULL)
        return HSMCA_E_INVALID_ARG;
    if (st->pg != NULL) {
        pthread_mutex_lock(&st->lock);
        rc = hsmca_pg_check_durable(st);
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    pthread_mutex_lock(&st->lock);
    rc = pragma_text(st->db, "PRAGMA journal_mode", journal, sizeof(journal));
    if (rc == HSMCA_OK)
        rc = pragma_text(st->db, "PRAGMA synchronous", sync, sizeof(sync));
    pthread_mutex_unlock(&st->lock);
    if (rc != HSMCA_OK)
        return rc;
    /* synchronous: 2 = FULL, 3 = EXTRA */
    if (strcmp(journal, "wal") != 0 || (strcmp(sync, "2") != 0 && strcmp(sync, "3") != 0))
        return HSMCA_E_STORE_SCHEMA;
    return HSMCA_OK;
}

/* ---- WAL checkpoints on their own thread ---- */

struct hsmca_store_checkpointer {
    struct hsmca_store *st;
    sqlite3 *db;
    int dbfd; /* the database file, to flush its pages outside the writer's gate */
    pthread_t th;
    pthread_mutex_t m;
    pthread_cond_t c;
    unsigned interval_ms;
    int wal_pages;
    int stop;
    unsigned long runs, rewinds;
    /* checkpointer thread only: the rows st's connection had changed at the last pass, and
     * whether that pass left nothing to copy */
    sqlite3_int64 seen_changes;
    int caught_up;
};

/*
 * Close the writer's gate: wait (at most 2 s) for its transaction to end and keep the next from
 * beginning. 1 when closed; 0 (gate left open) when the transaction did not end in time.
 */
static int
gate_close(struct hsmca_store *st)
{
    struct timespec ts;

    hsmca_deadline_us(&ts, 2000000u);
    pthread_mutex_lock(&st->lock);
    st->gate = 1;
    while (st->in_txn)
        if (pthread_cond_timedwait(&st->idle, &st->lock, &ts) != 0 && st->in_txn) {
            st->gate = 0;
            pthread_cond_broadcast(&st->idle);
            pthread_mutex_unlock(&st->lock);
            return 0;
        }
    pthread_mutex_unlock(&st->lock);
    return 1;
}

static void
gate_open(struct hsmca_store *st)
{
    pthread_mutex_lock(&st->lock);
    st->gate = 0;
    pthread_cond_broadcast(&st->idle);
    pthread_mutex_unlock(&st->lock);
}

/* Give st back SQLite's own checkpoints (at 1000 WAL pages, in the committing thread). */
static void
autocheckpoint_back(struct hsmca_store *st)
{
    pthread_mutex_lock(&st->lock);
    (void)exec(st, "PRAGMA wal_autocheckpoint=1000", 0);
    pthread_mutex_unlock(&st->lock);
}

/*
 * One pass; 1 if it ran. Unless forced, none when the last pass copied everything, with no
 * transaction open on st, and st's connection has changed no row since: an idle store then costs
 * no checkpoint call (about 40 us each with its wake-up, measured on an idle daemon).
 */
static int
checkpoint_once(struct hsmca_store_checkpointer *cp, int force)
{
    int log = 0, done = 0, rewound = 0, k, open_txn;
    sqlite3_int64 changes;

    pthread_mutex_lock(&cp->st->lock);
    changes = sqlite3_total_changes64(cp->st->db);
    open_txn = cp->st->in_txn; /* its rows are counted, its frames may not be written yet */
    pthread_mutex_unlock(&cp->st->lock);
    if (!force && cp->caught_up && changes == cp->seen_changes)
        return 0;
    cp->seen_changes = changes;
    cp->caught_up = 0;
    /* PASSIVE: copies what it can without waiting for or blocking the writer or readers */
    if (sqlite3_wal_checkpoint_v2(cp->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) !=
            SQLITE_OK ||
        log < 0) /* -1: not in WAL mode, nothing was done */
        return 1;
    /*
     * SQLite rewinds the WAL only when a write transaction begins with every frame already copied
     * into the database. Under steady load a PASSIVE checkpoint never catches up at that moment,
     * so the WAL only grows, and every page lookup searches more of it. Past wal_pages the writer
     * is held at its next begin while the last frames are copied; that begin then rewinds the
     * WAL. The hold is a mutex wait, not SQLite's busy handler (which sleeps in steps of ms).
     *
     * To keep the hold short, catch up outside it first: each pass copies what came in during the
     * last one. Only a checkpoint that copies everything syncs the database file, so flush the
     * pages copied so far before holding the writer, or it would wait for all of them (100-250 ms
     * in tools/bench; 3-16 ms with the flush).
     */
    if (log > cp->wal_pages) {
        for (k = 0; k < 4 && log - done > 256; k++)
            if (sqlite3_wal_checkpoint_v2(cp->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) !=
                SQLITE_OK)
                break;
        if (fdatasync(cp->dbfd) == 0)
            (void)sqlite3_wal_checkpoint_v2(cp->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (gate_close(cp->st)) {
            if (sqlite3_wal_checkpoint_v2(cp->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) ==
                    SQLITE_OK &&
                log == done)
                rewound = 1;
            gate_open(cp->st);
        }
    }
    cp->caught_up = log == done && !open_txn;
    pthread_mutex_lock(&cp->m);
    cp->runs++;
    cp->rewinds += (unsigned long)rewound;
    pthread_mutex_unlock(&cp->m);
    return 1;
}

/* Passes every interval_ms while st is written; while it is idle the wait doubles, up to 1 s (or
 * interval_ms if longer), so an idle daemon wakes about once a second, not 50 times. */
static void *
checkpointer_run(void *arg)
{
    struct hsmca_store_checkpointer *cp = arg;
    unsigned wait_ms = cp->interval_ms, idle_max = cp->interval_ms > 1000 ? cp->interval_ms : 1000;

    pthread_mutex_lock(&cp->m);
    while (!cp->stop) {
        struct timespec ts;

        hsmca_deadline_us(&ts, (uint64_t)wait_ms * 1000u);
        (void)pthread_cond_timedwait(&cp->c, &cp->m, &ts);
        if (cp->stop)
            break;
        pthread_mutex_unlock(&cp->m);
        if (checkpoint_once(cp, 0))
            wait_ms = cp->interval_ms;
        else
            wait_ms = wait_ms > idle_max / 2 ? idle_max : wait_ms * 2;
        pthread_mutex_lock(&cp->m);
    }
    pthread_mutex_unlock(&cp->m);
    return NULL;
}

enum hsmca_err
hsmca_store_checkpointer_start(struct hsmca_store *st, const char *path, unsigned interval_ms,
                               unsigned wal_pages, struct hsmca_store_checkpointer **out)
{
    char pragma[64];
    struct hsmca_store_checkpointer *cp;
    enum hsmca_err rc;

    if (st == NULL || path == NULL || out == NULL || st->readonly || interval_ms == 0 ||
        interval_ms > 60000 || wal_pages < 16 || wal_pages > 1048576 ||
        strlen(path) > HSMCA_PATH_MAX)
        return HSMCA_E_INVALID_ARG;
    cp = calloc(1, sizeof(*cp));
    if (cp == NULL)
        return HSMCA_E_NOMEM;
    if (st->pg != NULL) { /* PostgreSQL checkpoints by itself: a checkpointer that never runs */
        cp->dbfd = -1;
        pthread_mutex_init(&cp->m, NULL);
        pthread_cond_init(&cp->c, NULL);
        *out = cp;
        return HSMCA_OK;
    }
    cp->st = st;
    cp->dbfd = -1;
    cp->interval_ms = interval_ms;
    cp->wal_pages = (int)wal_pages;
    pthread_mutex_init(&cp->m, NULL);
    pthread_cond_init(&cp->c, NULL);
    cp->dbfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (cp->dbfd < 0 || sqlite3_open_v2(path, &cp->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW,
                                        NULL) != SQLITE_OK) {
        rc = HSMCA_E_STORE_OPEN;
        goto fail;
    }
    sqlite3_busy_timeout(cp->db, 5000);
    /* a connection finds the WAL only when it first reads: until then every checkpoint on it is a
     * no-op that reports -1 frames (and succeeds) */
    if (sqlite3_exec(cp->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK) {
        rc = HSMCA_E_STORE_OPEN;
        goto fail;
    }
    /* a rewound WAL is cut back to twice the bound, so a burst does not keep its disk forever */
    snprintf(pragma, sizeof(pragma), "PRAGMA journal_size_limit=%llu", 2ULL * wal_pages * 4096ULL);
    pthread_mutex_lock(&st->lock);
    rc = exec(st, "PRAGMA wal_autocheckpoint=0", 1);
    if (rc == HSMCA_OK)
        rc = exec(st, pragma, 1);
    pthread_mutex_unlock(&st->lock);
    if (rc != HSMCA_OK)
        goto fail;
    if (pthread_create(&cp->th, NULL, checkpointer_run, cp) != 0) {
        autocheckpoint_back(st);
        rc = HSMCA_E_INTERNAL;
        goto fail;
    }
    *out = cp;
    return HSMCA_OK;
fail:
    sqlite3_close_v2(cp->db);
    if (cp->dbfd >= 0)
        close(cp->dbfd);
    pthread_cond_destroy(&cp->c);
    pthread_mutex_destroy(&cp->m);
    free(cp);
    return rc;
}

void
hsmca_store_checkpointer_stop(struct hsmca_store_checkpointer *cp)
{
    if (cp == NULL)
        return;
    if (cp->st == NULL) {
        pthread_cond_destroy(&cp->c);
        pthread_mutex_destroy(&cp->m);
        free(cp);
        return;
    }
    pthread_mutex_lock(&cp->m);
    cp->stop = 1;
    pthread_cond_signal(&cp->c);
    pthread_mutex_unlock(&cp->m);
    pthread_join(cp->th, NULL);
    (void)checkpoint_once(cp, 1);
    autocheckpoint_back(cp->st);
    sqlite3_close_v2(cp->db);
    close(cp->dbfd);
    pthread_cond_destroy(&cp->c);
    pthread_mutex_destroy(&cp->m);
    free(cp);
}

void
hsmca_store_checkpointer_counts(struct hsmca_store_checkpointer *cp, unsigned long *runs,
                                unsigned long *rewinds)
{
    pthread_mutex_lock(&cp->m);
    if (runs != NULL)
        *runs = cp->runs;
    if (rewinds != NULL)
        *rewinds = cp->rewinds;
    pthread_mutex_unlock(&cp->m);
}
