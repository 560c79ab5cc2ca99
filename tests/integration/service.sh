#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# service.sh -- hsmcad as a system service: it refuses to serve as root unless the config sets
# "allow_root": true (run as uid 0, or as uid 0 of a user namespace when the test is not root),
# creates its store, WAL, shm and port file mode 600 whatever the caller's umask, and, built with
# libsystemd, tells systemd READY=1 once it listens and STOPPING=1 on SIGTERM (a NOTIFY_SOCKET
# read by a small listener; a build without it must send nothing).
. "$(dirname "$0")/lib.sh"
: "${HSMCAD_SD_NOTIFY:?}"

setup_tokens
setup_tls
write_config

# ---- root without allow_root ----
grep -v '"allow_root": true,' "$W/hsmcad.json" > "$W/noroot.json"
check "the config without allow_root is valid" "$HSMCAD_BIN" --check-config --config "$W/noroot.json"
if [ "$(id -u)" = 0 ]; then
    as_root() { "$@"; }
else
    as_root() { unshare --map-root-user "$@"; }
fi
st=0
as_root timeout 30 "$HSMCAD_BIN" --config "$W/noroot.json" --port-file "$W/port-root" \
    2> "$W/root.log" || st=$?
check "as root without allow_root: start-up fails (status 1)" [ "$st" = 1 ]
check "as root without allow_root: the message names run-as-root" grep -q 'start: run-as-root' "$W/root.log"
check "as root without allow_root: never listened" [ ! -e "$W/port-root" ]
if store_is_pg; then
    check "as root without allow_root: no schema was made in the store" \
        [ "$(store_sql "SELECT count(*) FROM pg_tables WHERE tablename = 'meta'")" = 0 ]
else
    check "as root without allow_root: no store was created" [ ! -e "$W/hsmca.db" ]
fi

# ---- file modes and sd_notify ----
sock="$W/notify.sock"
python3 - "$sock" > "$W/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
try:
    while True:
        m = s.recv(4096).decode()
        print(m.replace("\n", " | "), flush=True)
        if "STOPPING=1" in m:
            break
except socket.timeout:
    pass
PY
LPID=$!
i=0
while [ ! -S "$sock" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
check "the notify listener is up" [ -S "$sock" ]
umask 022
NOTIFY_SOCKET=$sock
export NOTIFY_SOCKET
start_daemon
unset NOTIFY_SOCKET
call admin GET /healthz
expect "the daemon serves" 200
mode() { stat -c %a "$1"; }
files="hsmca.db hsmca.db-wal hsmca.db-shm port"
if store_is_pg; then # the store's files are the PostgreSQL server's, in initdb's data directory
    files=port
    check "the PostgreSQL data directory is mode 700 (got $(mode "$PG_DATA"))" \
        [ "$(mode "$PG_DATA")" = 700 ]
fi
for f in $files; do
    check "$f is mode 600 under umask 022 (got $(mode "$W/$f"))" [ "$(mode "$W/$f")" = 600 ]
done
stop_daemon
if [ "$HSMCAD_SD_NOTIFY" = 1 ]; then
    wait "$LPID" || true
    check "sd_notify: READY=1 once listening" grep -q "READY=1 | STATUS=serving on port $PORT" "$W/notify.log"
    check "sd_notify: STOPPING=1 on SIGTERM" grep -q "STOPPING=1" "$W/notify.log"
    check "sd_notify: READY before STOPPING" sh -c "grep -n 'READY=1' '$W/notify.log' | head -1 | grep -q '^1:'"
else
    sleep 1
    kill "$LPID" 2>/dev/null || true
    wait "$LPID" 2>/dev/null || true
    check "built without libsystemd: nothing sent to NOTIFY_SOCKET" [ ! -s "$W/notify.log" ]
fi
finish
