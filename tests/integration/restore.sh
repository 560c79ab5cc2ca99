#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# restore.sh -- a node started on a restored, older PostgreSQL database refuses to serve and says
# why (docs/postgresql.md, "Backup and restore"). On a throwaway PostgreSQL (pg.sh; this test
# always runs on it): hsmcad starts and stops (its close signs a checkpoint and moves the audit
# token's anchor); pg_dump A; it starts and stops again (the anchor moves on); pg_dump B. The
# database restored from A (older than the anchor): hsmcad refuses to start, naming
# audit-anchor-mismatch. The documented recovery, a restore of a database that holds the anchor's
# checkpoint (B): hsmcad starts, is ready, and an extract of the whole log verifies offline.
HSMCA_TEST_STORE=pg
export HSMCA_TEST_STORE
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","

dump() { # FILE
    "$PG_BIN/pg_dump" -h "$PG_SOCK" -U hsmca -Fc -f "$1" hsmca
}
restore() { # FILE: the database replaced by the dump
    "$PG_BIN/dropdb" -h "$PG_SOCK" -U hsmca hsmca &&
        "$PG_BIN/createdb" -h "$PG_SOCK" -U hsmca hsmca &&
        "$PG_BIN/pg_restore" -h "$PG_SOCK" -U hsmca -d hsmca "$1"
}
head_seq() { store_sql "SELECT max(seq) FROM audit_entries"; }

start_daemon
check "first run: SIGTERM stops with status 0" stop_daemon
check "pg_dump A" dump "$W/a.dump"
SEQ_A=$(head_seq)
start_daemon
call auditor GET /readyz
check "second run ready ($STATUS)" [ "$STATUS" = 200 ]
check "second run: SIGTERM stops with status 0" stop_daemon
check "pg_dump B" dump "$W/b.dump"
SEQ_B=$(head_seq)
check "the log grew between the dumps ($SEQ_A -> $SEQ_B)" [ "$SEQ_B" -gt "$SEQ_A" ]

# ---- the older database: refused, and the log says why ----
check "restore A (older than the token's anchor)" restore "$W/a.dump"
check "the restored store ends at seq $SEQ_A" [ "$(head_seq)" = "$SEQ_A" ]
st=0
timeout 60 "$HSMCAD_BIN" --config "$W/hsmcad.json" --port-file "$W/port-old" \
    2> "$W/old.log" || st=$?
check "on the older database hsmcad refuses to start (status $st)" [ "$st" = 1 ]
check "... and says why: audit-anchor-mismatch, a restored older database" \
    sh -c "grep -q 'audit-anchor-mismatch' '$W/old.log' && grep -q 'restored' '$W/old.log'"
check "... without serving (no port file)" [ ! -s "$W/port-old" ]
check "... and without writing to the restored log" [ "$(head_seq)" = "$SEQ_A" ]

# ---- the recovery: a database holding the anchor's checkpoint ----
check "restore B (holds the anchor's checkpoint)" restore "$W/b.dump"
start_daemon
call auditor GET /readyz
check "on the recovered database hsmcad is ready ($STATUS)" [ "$STATUS" = 200 ]
call auditor GET /v1/audit/extract
check "extract 200" [ "$STATUS" = 200 ]
mkdir -p "$W/x"
tar -xf "$W/body" -C "$W/x"
check "the whole log verifies offline" "$HSMCA_BIN" audit verify "$W/x/hsmca-audit-extract"
check "SIGTERM stops with status 0" stop_daemon
finish
