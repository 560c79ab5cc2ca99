#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# harden_conn.sh -- idle sockets cannot starve honest clients (docs/hardening.md): 1,500 idle TCP
# connections that never start TLS, from 50 addresses and then from the honest client's own
# address, and a client with a bound certificate is still served within 1 s; an authenticated
# keep-alive connection opened before the flood is not evicted; an idle socket is closed at the
# handshake deadline; floods of anonymous TLS clients with fresh self-signed certificates (from 100
# addresses, then from one) write a bounded number of audit entries, and the summaries keep the
# count and the codes.
. "$(dirname "$0")/lib.sh"
: "${HSMCA_HOSTILE_BIN:?}"

setup_tokens
setup_tls
write_config ', "handshake_timeout_s": 3'
# the defaults of the refusal limiter (lib.sh lifts them for the other tests)
sed -i 's/"refusals_per_minute": 1000, "refusal_entries_per_second": 100000/"refusals_per_minute": 60, "refusal_entries_per_second": 10/' \
    "$W/hsmcad.json"
start_daemon

# Under AddressSanitizer the daemon needs about a second to accept a burst of 1,500 sockets (each
# gets its TLS session): the honest client then waits 0.5 s after the burst before it is timed.
# The idle sockets still hold their slots then (the handshake deadline here is 3 s).
SETTLE=0
grep -q __asan_init "$HSMCAD_BIN" 2>/dev/null && SETTLE=0.5
honest() { # seconds an operator needs for GET /healthz on a new connection (and its status)
    sleep "$SETTLE"
    curl -sS -o /dev/null -w '%{time_total} %{http_code}' -m 10 --cacert "$W/tls/ca.pem" \
        --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" \
        "https://127.0.0.1:$PORT/healthz" 2>/dev/null || echo "99 000"
}
under_1s() { awk -v t="$1" 'BEGIN { exit !(t < 1.0) }'; }

flood() { # n seconds addrs: start the idle sockets, wait until all are connected
    rm -f "$W/idle.out"
    "$HSMCA_HOSTILE_BIN" idle "$PORT" "$1" "$2" "$3" > "$W/idle.out" 2> "$W/idle.err" &
    IPID=$!
    i=0
    while ! grep -q '^connected' "$W/idle.out" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$IPID" 2>/dev/null; then
            cat "$W/idle.err" >&2
            break
        fi
        sleep 0.1
    done
}

# ---- an authenticated keep-alive connection, opened before the flood, outlives it ----
(printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
    sleep 6
    printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
    sleep 1) | timeout 20 openssl s_client -quiet -connect "127.0.0.1:$PORT" \
    -CAfile "$W/tls/ca.pem" -cert "$W/tls/operator.pem" -key "$W/tls/operator.key" \
    > "$W/keepalive" 2>/dev/null &
KPID=$!
sleep 1

# ---- 1,500 idle sockets from 50 addresses ----
flood 1500 30 50
check "1,500 idle sockets connected from 50 addresses" grep -q '^connected 1500' "$W/idle.out"
set -- $(honest)
echo "# honest client beside 1,500 idle sockets (50 addresses): $1 s, status $2"
check "honest client served (200) beside 1,500 idle sockets" [ "$2" = 200 ]
check "... within 1 s ($1 s)" under_1s "$1"
set -- $(honest)
check "and again ($1 s, $2)" sh -c "[ '$2' = 200 ] && awk -v t='$1' 'BEGIN { exit !(t < 1.0) }'"
wait "$KPID" || true
check "the authenticated keep-alive connection got both replies" \
    [ "$(grep -o 'HTTP/1.1 200' "$W/keepalive" | wc -l)" = 2 ]
kill "$IPID" 2>/dev/null || true
wait "$IPID" 2>/dev/null || true

# ---- 1,500 idle sockets from the honest client's own address ----
flood 1500 30 0
check "1,500 idle sockets connected from 127.0.0.1" grep -q '^connected 1500' "$W/idle.out"
set -- $(honest)
echo "# honest client beside 1,500 idle sockets (its own address): $1 s, status $2"
check "honest client served (200) beside 1,500 idle sockets of its own address" [ "$2" = 200 ]
check "... within 1 s ($1 s)" under_1s "$1"
kill "$IPID" 2>/dev/null || true
wait "$IPID" 2>/dev/null || true

# ---- the handshake deadline: idle sockets are closed after handshake_timeout_s (3 s) ----
"$HSMCA_HOSTILE_BIN" idle "$PORT" 10 6 1 > "$W/idle.out" 2> "$W/idle.err"
check "10 idle sockets all closed by the daemon within 6 s" grep -q '^closed-by-server 10$' \
    "$W/idle.out"

# ---- 300 anonymous refusals from 100 addresses, then 1,000 from one, fresh certificates ----
before=$(store_sql 'SELECT coalesce(max(seq), 0) FROM audit_entries')
t0=$(date +%s)
"$HSMCA_HOSTILE_BIN" anon "$PORT" 300 "$W/tls/ca.pem" 100 > "$W/anon100.out" 2> "$W/anon100.err"
t1=$(date +%s)
cat "$W/anon100.out"
check "300 anonymous clients from 100 addresses each answered 401" \
    grep -q '^status 401 300$' "$W/anon100.out"
"$HSMCA_HOSTILE_BIN" anon "$PORT" 1000 "$W/tls/ca.pem" > "$W/anon.out" 2> "$W/anon.err"
cat "$W/anon.out"
check "1,000 anonymous clients from 127.0.0.1 each answered 401" \
    grep -q '^status 401 1000$' "$W/anon.out"
stop_daemon
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries WHERE seq > $before" \
    > "$W/new.jsonl"
jq -c 'select(.outcome == "refused" and .action != "http.refuse.summary")' "$W/new.jsonl" \
    > "$W/full_all.jsonl"
jq -c 'select(.actor != "anon:127.0.0.1")' "$W/full_all.jsonl" > "$W/full100.jsonl"
jq -c 'select(.actor == "anon:127.0.0.1")' "$W/full_all.jsonl" > "$W/full.jsonl"
n100=$(wc -l < "$W/full100.jsonl")
full=$(wc -l < "$W/full.jsonl")
sums=$(grep -c '"action":"http.refuse.summary"' "$W/new.jsonl" || true)
counted=$(grep '"action":"http.refuse.summary"' "$W/new.jsonl" |
    jq -s 'map(.detail.codes["http-unauthenticated"] // 0) | add // 0')
secs=$((t1 - t0 + 1))
echo "# 300 anonymous refusals from 100 addresses in $secs s: $n100 full entries"
echo "# 1,000 from one address: $full full entries; $sums summaries counting $counted in all"
check "from 100 addresses: at most 10 full entries per second in all ($n100 in $secs s)" \
    [ "$n100" -le $((10 * secs)) ]
# from one address: 60 full entries per minute (the flood may span two minutes); at most one
# summary per minute, and one more at the stop
minutes=$(jq -r '.time[0:16]' "$W/full_all.jsonl" "$W/new.jsonl" | sort -u | wc -l)
permin=$(jq -r '.time[0:16]' "$W/full.jsonl" | sort | uniq -c | sort -n | tail -1 | awk '{print $1}')
check "from one address: at most 60 full refusal entries in any minute ($permin)" \
    [ "$permin" -le 60 ]
check "and at least one" [ "$full" -ge 1 ]
check "at most one summary per minute, and one at the stop ($sums over $minutes minutes)" \
    sh -c "[ $sums -ge 1 ] && [ $sums -le $((minutes + 1)) ]"
check "full entries + counted in summaries = 1,300, all http-unauthenticated" \
    [ $((n100 + full + counted)) = 1300 ]
check "the full entries name the address, not the certificate" \
    jq -e -s 'all((.actor | test("^anon:127[.]0[.]0[.][0-9]+$")) and
        .detail.code == "http-unauthenticated" and
        (.detail.presented_cert_sha256_prefix | test("^[0-9a-f]{32}$")))' "$W/full_all.jsonl"
finish
