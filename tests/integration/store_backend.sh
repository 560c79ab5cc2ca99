#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# store_backend.sh -- a C test of the store run on the test's backend: SQLite by default, and under
# `meson test --setup pg` on a throwaway PostgreSQL (pg.sh), named to the test by
# HSMCA_TEST_STORE_SPEC (the unit suite itself never runs under that setup). Usage: TEST_BINARY.
set -eu
: "${HSMCA_TEST_TMP:?run me through meson test}"
mkdir -p "$HSMCA_TEST_TMP"
W=$(mktemp -d "$HSMCA_TEST_TMP/store-backend-XXXXXX")
PG_DATA=""
done_() {
    if [ -n "$PG_DATA" ]; then pg_stop; fi
    rm -rf "$W"
}
trap done_ EXIT
if [ "${HSMCA_TEST_STORE:-sqlite}" = pg ]; then
    . "$(dirname "$0")/pg.sh"
    pg_start "$W/pg" || { echo "store_backend.sh: PostgreSQL did not start" >&2; exit 1; }
    HSMCA_TEST_STORE_SPEC=$PG_STORE
    export HSMCA_TEST_STORE_SPEC
    echo "store_backend.sh: on PostgreSQL ($PG_STORE)"
fi
"$1"
