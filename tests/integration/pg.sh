# SPDX-License-Identifier: Apache-2.0
#
# pg.sh -- a throwaway PostgreSQL for the tests (sourced by lib.sh when HSMCA_TEST_STORE=pg, and
# by the multi-node tests). pg_start DIR makes a cluster with initdb in DIR/data, listening on a
# unix socket only (listen_addresses='', the socket in a short directory under /tmp: a socket path
# must stay under 108 bytes), trust authentication for that socket, fsync on, and creates the
# database hsmca. PostgreSQL refuses to run as root, so as root the cluster runs as nobody (who
# is given search rights on the directories above DIR). pg_stop stops it (fast) and removes the
# socket directory. After pg_start:
#   PG_STORE   the store spec hsmcad and hsmca take ("host=... dbname=hsmca user=hsmca")
#   PG_SOCK    the socket directory, PG_DATA the data directory
# pg_sql SQL runs SQL in the database (psql, unaligned, tuples only).
# PG_BIN may name the server's bin directory (default: the newest /usr/lib/postgresql/*/bin).

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PG_AS="" # the command prefix that runs the server's tools as its owner

pg_start() { # DIR
    PG_DATA=$1/data
    mkdir -p "$1"
    PG_SOCK=$(mktemp -d /tmp/hsmca-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then
        chown nobody:nogroup "$1" "$PG_SOCK"
        p=$1
        while [ "$p" != / ]; do
            case $(stat -c %A "$p" | cut -c10) in x | t) ;; *) chmod o+x "$p" ;; esac
            p=$(dirname "$p")
        done
        PG_AS="setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=$1"
    fi
    # shellcheck disable=SC2086
    $PG_AS "$PG_BIN/initdb" -D "$PG_DATA" -U hsmca --auth=trust -E UTF8 --no-instructions -N \
        > "$1/initdb.log" 2>&1 || { cat "$1/initdb.log" >&2; return 1; }
    PG_DIR=$1
    pg_up || return 1
    "$PG_BIN/createdb" -h "$PG_SOCK" -U hsmca hsmca
    PG_STORE="host=$PG_SOCK dbname=hsmca user=hsmca"
}

# pg_up / pg_down: start the cluster again / stop it (-m immediate: as if the server died)
pg_up() {
    # shellcheck disable=SC2086
    $PG_AS "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgresql.log" -w -t 60 -o \
        "-c listen_addresses='' -c unix_socket_directories='$PG_SOCK' -c fsync=on \
         -c synchronous_commit=on -c shared_buffers=16MB -c max_connections=60" \
        start > /dev/null || { tail -20 "$PG_DIR/postgresql.log" >&2; return 1; }
}
pg_down() { # [MODE]
    # shellcheck disable=SC2086
    $PG_AS "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "${1:-fast}" -w -t 60 stop > /dev/null
}
# pg_move DIR: the cluster's data directory moves to DIR/data (another filesystem), same socket
pg_move() {
    pg_down fast || return 1
    [ "$(id -u)" != 0 ] || chown nobody:nogroup "$1"
    mv "$PG_DATA" "$1/data" && PG_DATA=$1/data && pg_up
}

pg_stop() {
    [ -n "${PG_DATA:-}" ] && [ -d "$PG_DATA" ] || { rm -rf "${PG_SOCK:-/nonexistent}"; return 0; }
    # shellcheck disable=SC2086
    $PG_AS "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop > /dev/null 2>&1 || true
    if [ -f "$PG_DATA/postmaster.pid" ]; then # pg_ctl could not stop it: a fast shutdown by signal
        pid=$(head -n 1 "$PG_DATA/postmaster.pid")
        kill -INT "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
    fi
    rm -rf "$PG_SOCK"
    PG_DATA=""
}

pg_sql() { # SQL
    psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_SOCK" -U hsmca -d hsmca -c "$1"
}
