# SPDX-License-Identifier: Apache-2.0
#
# nodes_lib.sh -- two hsmcad nodes on one PostgreSQL store, for nodes.sh and failover.sh (sourced
# after lib.sh with HSMCA_TEST_STORE=pg). nodes_setup makes the tokens, the TLS files, the PKI in
# the shared store, and the network token: `p11-kit server` exports the tokens on a unix socket
# and both nodes reach them through p11-kit-client.so. node_start K starts node K (1 or 2; node
# 1 is lib.sh's daemon, $DPID) and waits for its port (PORT1, PORT2); node_kill9 K kills it;
# node_stop K stops it with SIGTERM; on K points call at node K; activate K opens a PAI window
# shared by the nodes (MAX DACs, ten minutes; its id, the request's, in $W/window) by a quorum
# request made through node K, and activate K WINDOW has node K join that open window by a
# quorum request of its own (a node that joins, or comes back after dying, needs its approval).

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
LIBDIR=/usr/lib/x86_64-linux-gnu
[ -d "$LIBDIR" ] || LIBDIR=$(dirname "$(find /usr/lib -name p11-kit-proxy.so | head -1)")
CLIENT=$LIBDIR/pkcs11/p11-kit-client.so
[ -f "$CLIENT" ] || { echo "nodes_lib.sh: $CLIENT missing (p11-kit-modules)" >&2; exit 1; }
SPID=""
D2PID=""
PORT1="" PORT2=""
MAX=${MAX:-1000}

nodes_cleanup() {
    if [ -n "$D2PID" ] && kill -0 "$D2PID" 2>/dev/null; then
        kill -TERM "$D2PID" 2>/dev/null || true
        wait "$D2PID" 2>/dev/null || true
    fi
    if [ -n "$SPID" ]; then
        kill -TERM "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
    cleanup
}
trap nodes_cleanup EXIT

nodes_setup() { # [MORE TOKENS]: free tokens also made, taken under the quorum and exported
    setup_tokens paa
    for t in ${1:-}; do
        softhsm2-util --init-token --free --label "$t" --so-pin so-pin-1234 --pin user-pin-1234 \
            > /dev/null
    done
    HSMCA_PKI_EXTRA_TOKENS=${1:-}
    export HSMCA_PKI_EXTRA_TOKENS
    setup_tls
    "$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
    write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
    # shellcheck disable=SC2046
    p11-kit server -f -n "$W/p11.sock" --provider "$MODULE" "pkcs11:token=hsmca-audit" \
        "pkcs11:token=hsmca-paa" "pkcs11:token=hsmca-pai-8000" \
        $(for t in ${1:-}; do echo "pkcs11:token=$t"; done) > "$W/p11-server.out" 2>&1 &
    SPID=$!
    i=0
    while [ ! -S "$W/p11.sock" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
    check "p11-kit server exports the tokens on its socket" [ -S "$W/p11.sock" ]
    P11_KIT_SERVER_ADDRESS=unix:path=$W/p11.sock
    export P11_KIT_SERVER_ADDRESS
    # each node its own name: its start and stop, its crash and its open windows are its own
    jq --arg m "$CLIENT" '.pkcs11_module = $m' "$W/hsmcad.json" > "$W/hsmcad.json.new"
    jq '.node = "node-2"' "$W/hsmcad.json.new" > "$W/hsmcad2.json"
    jq '.node = "node-1"' "$W/hsmcad.json.new" > "$W/hsmcad.json"
    rm -f "$W/hsmcad.json.new"
}

node_start() { # K
    if [ "$1" = 1 ]; then
        start_daemon
        PORT1=$PORT
        return 0
    fi
    rm -f "$W/port2"
    "$HSMCAD_BIN" --config "$W/hsmcad2.json" --port-file "$W/port2" 2>> "$W/hsmcad2.log" &
    D2PID=$!
    i=0
    while [ ! -s "$W/port2" ]; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$D2PID" 2>/dev/null; then
            echo "node 2 did not start:" >&2
            tail -20 "$W/hsmcad2.log" >&2
            D2PID=""
            return 1
        fi
        sleep 0.1
    done
    PORT2=$(cat "$W/port2")
}

node_pid() { if [ "$1" = 1 ]; then echo "$DPID"; else echo "$D2PID"; fi; }
node_kill9() { # K
    p=$(node_pid "$1")
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    if [ "$1" = 1 ]; then DPID=""; else D2PID=""; fi
}
node_stop() { # K: SIGTERM, status 0
    p=$(node_pid "$1")
    kill -TERM "$p"
    st=0
    wait "$p" || st=$?
    if [ "$1" = 1 ]; then DPID=""; else D2PID=""; fi
    return $st
}
on() { # K: the next calls go to node K
    if [ "$1" = 1 ]; then PORT=$PORT1; else PORT=$PORT2; fi
}
# a node's port as its port file says now (a restarted node listens on a new one; the clients of
# failover.sh run in subshells that would keep the old one)
port_of() { if [ "$1" = 1 ]; then cat "$W/port" 2>/dev/null; else cat "$W/port2" 2>/dev/null; fi; }

activate() { # K [WINDOW]
    on "$1"
    until=$(($(date +%s) * 1000 + 600000))
    if [ -n "${2:-}" ]; then
        params="{\"ca\":\"pai-8000\",\"window\":\"$2\"}"
    else
        params="{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":$MAX}"
    fi
    call admin POST /v1/requests -H 'Content-Type: application/json' --data-binary \
        "{\"op\":\"ca.activate\",\"params\":$params}"
    rid=$(jq -r .id "$W/body")
    call approver GET "/v1/requests/$rid"
    cp "$W/body" "$W/envelope.json"
    "$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope.json" > "$W/appr-bob.json"
    "$HSMCA_PKI_BIN" approve "$W" dave-approver "$W/envelope.json" > "$W/appr-dave.json"
    call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-bob.json"
    call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-dave.json"
    jq -e '.executed == true' "$W/body" > /dev/null || return 1
    [ -n "${2:-}" ] || jq -r '.result.window' "$W/body" > "$W/window"
}

# dac_post K ID JSON-FILE OUT: one DAC request to node K with request id ID; echoes the status
dac_post() {
    curl -sS --cacert "$W/tls/ca.pem" --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" \
        -H 'Content-Type: application/json' -H 'Accept: application/pem-certificate-chain' \
        -o "$4" -w '%{http_code}' -m 30 \
        --data-binary "$(jq -c --arg id "$2" '. + {request_id: $id}' "$3")" \
        "https://127.0.0.1:$(port_of "$1")/v1/cas/pai-8000/dacs" 2>>"$W/curl-errors" || true
}
serial_of() { openssl x509 -in "$1" -noout -serial 2>/dev/null | cut -d= -f2 | tr 'A-F' 'a-f'; }

# one_extract_verifies WHAT: one extract of the whole log, asked of node 1, verifies offline
one_extract_verifies() {
    on 1
    call auditor GET /v1/audit/extract
    check "extract from node 1 ($STATUS)" [ "$STATUS" = 200 ]
    mkdir -p "$W/x"
    tar -xf "$W/body" -C "$W/x" 2>/dev/null || true
    check "one extract verifies the chain with $1" \
        "$HSMCA_BIN" audit verify "$W/x/hsmca-audit-extract"
}
