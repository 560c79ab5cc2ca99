# SPDX-License-Identifier: Apache-2.0
#
# store.sh -- the test's store, on either backend (sourced by lib.sh). HSMCA_TEST_STORE=pg runs
# the test on a throwaway PostgreSQL (pg.sh, started here, stopped by store_cleanup); otherwise
# (the default, sqlite) the store is the SQLite file $W/hsmca.db.
#   STORE       the store spec for hsmca and the test tools (a path, or a libpq string)
#   STORE_CONF  the same for hsmcad.json ("hsmca.db", relative to the config's directory)
#   store_sql SQL       run SQL on the store (sqlite3 or psql; one row a line, columns split by |)
#   store_is_pg         true on PostgreSQL
STORE=$W/hsmca.db
STORE_CONF=hsmca.db
PG_STORE=""
if [ "${HSMCA_TEST_STORE:-sqlite}" = pg ]; then
    . "$(dirname "$0")/pg.sh"
    pg_start "$W/pg" || { echo "store.sh: PostgreSQL did not start" >&2; exit 1; }
    STORE=$PG_STORE
    STORE_CONF=$PG_STORE
    export HSMCA_TEST_STORE_SPEC="$PG_STORE" # tests/integration/pki.c
fi
store_is_pg() { [ -n "$PG_STORE" ]; }
# On PostgreSQL an audit line (bytea) reads as text through line_text(), which store_sql puts
# where the SQLite text says CAST(line AS TEXT) or selects the bare line.
store_sql() { # SQL
    if store_is_pg; then
        pg_sql "$(printf '%s' "$1" | sed -e 's/CAST(line AS TEXT)/line_text(line)/g' \
            -e 's/CAST(bytes AS TEXT)/line_text(bytes)/g' \
            -e 's/SELECT line FROM/SELECT line_text(line) FROM/g')"
    else
        sqlite3 "$W/hsmca.db" "$1"
    fi
}
if store_is_pg; then
    pg_sql "CREATE FUNCTION line_text(bytea) RETURNS text LANGUAGE sql IMMUTABLE
            AS \$\$ SELECT convert_from(\$1, 'UTF8') \$\$"
fi
store_cleanup() {
    if store_is_pg; then pg_stop; fi
}
