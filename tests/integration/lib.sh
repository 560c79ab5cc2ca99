# SPDX-License-Identifier: Apache-2.0
#
# lib.sh -- shared by the integration tests (sourced): a throwaway directory under
# $HSMCA_TEST_TMP with its own SoftHSM tokens (audit token + key, a PAI token), a test CA issuing
# the server certificate and one client certificate per role (plus an unbound and a foreign one),
# policies/roles.json, the daemon's config, and the real hsmcad on a free 127.0.0.1 port.
# quorum OP PARAMS and activate MAX_DACS run a quorum operation with two approvals (tests set up
# by hsmca_pki setup, whose approvers are bob and dave).
# call ROLE METHOD PATH [curl args...] leaves the status in $STATUS, the body in $W/body and the
# headers in $W/headers. Everything is removed on exit; the daemon is stopped with SIGTERM.
set -eu

: "${HSMCA_TEST_TMP:?run me through meson test}"
: "${HSMCAD_BIN:?}" "${HSMCA_BIN:?}" "${HSMCA_SEED_BIN:?}"
MODULE=${HSMCA_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
PAI=pai-8000
FAILS=0
CHECKS=0
DPID=""

# shellcheck source=../../tools/softhsm.sh
. "$(dirname "$0")/../../tools/softhsm.sh"

mkdir -p "$HSMCA_TEST_TMP"
W=$(mktemp -d "$HSMCA_TEST_TMP/integ-$(basename "$0" .sh)-XXXXXX")
. "$(dirname "$0")/store.sh" # STORE, STORE_CONF, store_sql: SQLite, or PostgreSQL (pg.sh)

cleanup() {
    if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
        kill -TERM "$DPID" 2>/dev/null || true
        wait "$DPID" 2>/dev/null || true
    fi
    store_cleanup
    if [ "$FAILS" -eq 0 ] && [ -z "${KEEP:-}" ]; then
        rm -rf "$W"
    else
        echo "kept $W for inspection" >&2
    fi
}
trap cleanup EXIT

ok() { CHECKS=$((CHECKS + 1)); echo "ok - $*"; }
bad() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
check() { # description, command...
    d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
    echo "# $CHECKS checks, $FAILS failed"
    [ "$FAILS" -eq 0 ]
}

# ---- tokens ----
setup_tokens() {
    softhsm_conf "$W"
    export SOFTHSM2_CONF="$W/softhsm2.conf"
    umask 077
    printf 'audit-pin-1234\n' > "$W/audit.pin"
    softhsm_token "$SOFTHSM2_CONF" hsmca-audit so-pin-1234 audit-pin-1234
    softhsm_token "$SOFTHSM2_CONF" hsmca-pai-8000 so-pin-1234 user-pin-1234
    if [ "${1:-}" = paa ]; then
        softhsm_token "$SOFTHSM2_CONF" hsmca-paa so-pin-1234 user-pin-1234
    fi
    "$HSMCA_BIN" token keygen --module "$MODULE" --pin-file "$W/audit.pin" \
        "pkcs11:token=hsmca-audit;object=audit-key" > "$W/audit.pub.pem"
    umask 022
}

# ---- TLS: a CA, the server certificate, one client certificate per name ----
mkcert() { # name cn [ca-prefix]
    ca=${3:-ca}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$W/tls/$1.key" -out "$W/tls/$1.csr" 2>/dev/null
    if [ "$1" = server ]; then
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$W/tls/ext"
    else
        printf 'extendedKeyUsage=clientAuth\n' > "$W/tls/ext"
    fi
    openssl x509 -req -in "$W/tls/$1.csr" -CA "$W/tls/$ca.pem" -CAkey "$W/tls/$ca.key" \
        -CAcreateserial -days 2 -extfile "$W/tls/ext" -out "$W/tls/$1.pem" 2>/dev/null
}
fingerprint() {
    openssl x509 -in "$W/tls/$1.pem" -outform DER | sha256sum | cut -d' ' -f1
}
setup_tls() {
    mkdir -p "$W/tls"
    for ca in ca rogue-ca; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=hsmca test $ca" -keyout "$W/tls/$ca.key" -out "$W/tls/$ca.pem" \
            2>/dev/null
    done
    mkcert server 127.0.0.1
    for n in admin approver approver2 operator operator2 auditor unbound; do
        mkcert "$n" "$n"
    done
    mkcert rogue admin rogue-ca # a certificate bound in roles.json but issued by another CA
    cat > "$W/roles.json" <<JSON
{"version": 1, "certificates": {
  "$(fingerprint admin)": {"principal": "alice-admin", "role": "admin"},
  "$(fingerprint approver)": {"principal": "bob-approver", "role": "approver"},
  "$(fingerprint approver2)": {"principal": "dave-approver", "role": "approver"},
  "$(fingerprint operator)": {"principal": "factory-1", "role": "operator", "cas": ["$PAI"]},
  "$(fingerprint operator2)": {"principal": "factory-2", "role": "operator", "cas": ["pai-other"]},
  "$(fingerprint auditor)": {"principal": "carol-auditor", "role": "auditor"},
  "$(fingerprint rogue)": {"principal": "mallory", "role": "admin"}
}}
JSON
}

write_config() { # extra limits JSON members (optional), extra top-level members (optional)
    cat > "$W/hsmcad.json" <<JSON
{
  "listen": "127.0.0.1:0",${2:-}
  "allow_root": true,
  "pkcs11_module": "$MODULE",
  "store": "$STORE_CONF",
  "roles": "roles.json",
  "tls": {"cert": "tls/server.pem", "key": "tls/server.key", "client_ca": "tls/ca.pem"},
  "audit": {"token": "pkcs11:token=hsmca-audit", "key": "pkcs11:token=hsmca-audit;object=audit-key",
            "pin_file": "audit.pin", "certificate": "audit.pub.pem", "origin": "hsmca/test",
            "checkpoint_entries": 50, "checkpoint_interval_s": 60},
  "limits": {"body_max": 65536, "batch_max": 1000, "threads": 4, "timeout_s": 10,
             "refusals_per_minute": 1000, "refusal_entries_per_second": 100000${1:-}}
}
JSON
}

seed() { # n-certs [crl-file]
    "$HSMCA_SEED_BIN" "$STORE" "$PAI" "pkcs11:token=hsmca-pai-8000" "$@"
}

start_daemon() {
    rm -f "$W/port"
    "$HSMCAD_BIN" --config "$W/hsmcad.json" --port-file "$W/port" 2> "$W/hsmcad.log" &
    DPID=$!
    i=0
    while [ ! -s "$W/port" ]; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$DPID" 2>/dev/null; then
            echo "hsmcad did not start:" >&2
            cat "$W/hsmcad.log" >&2
            DPID=""
            exit 1
        fi
        sleep 0.1
    done
    PORT=$(cat "$W/port")
}

stop_daemon() {
    kill -TERM "$DPID"
    st=0
    wait "$DPID" || st=$?
    DPID=""
    return $st
}

# call ROLE METHOD PATH [curl args...]; ROLE "none" sends no client certificate.
call() {
    role=$1 method=$2 path=$3
    shift 3
    if [ "$role" = none ]; then
        set -- "$@"
    else
        set -- --cert "$W/tls/$role.pem" --key "$W/tls/$role.key" "$@"
    fi
    STATUS=$(curl -sS --cacert "$W/tls/ca.pem" -X "$method" -o "$W/body" -D "$W/headers" \
        -w '%{http_code}' "$@" "https://127.0.0.1:$PORT$path" 2>"$W/curl.err") || STATUS=000
}

# ---- the quorum (approvers bob and dave, made by "$HSMCA_PKI_BIN" setup) ----
# quorum_first OP PARAMS-JSON: the admin requests OP (its id in $rid), bob and dave sign
# approvals of its envelope, and bob's (sent as approver) is counted. Returns 2 when the request
# was refused (its answer in $W/body), 1 when an approval could not be made or was refused.
quorum_first() {
    call admin POST /v1/requests -H 'Content-Type: application/json' \
        --data-binary "{\"op\":\"$1\",\"params\":$2}"
    [ "$STATUS" = 201 ] || return 2
    rid=$(jq -r .id "$W/body")
    call approver GET "/v1/requests/$rid"
    cp "$W/body" "$W/envelope.json"
    "$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope.json" > "$W/appr-bob.json" &&
        "$HSMCA_PKI_BIN" approve "$W" dave-approver "$W/envelope.json" > "$W/appr-dave.json" ||
        return 1
    call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-bob.json"
    [ "$STATUS" = 200 ] || [ "$STATUS" = 201 ]
}
# quorum_second: dave's approval (sent as approver2), which executes the request of quorum_first.
quorum_second() {
    call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-dave.json"
}
# quorum OP PARAMS-JSON: both; the last answer is in $STATUS and $W/body. A refused request stops
# there, its answer in $W/body for the caller's check. Always returns 0.
quorum() {
    st=0
    quorum_first "$1" "$2" || st=$?
    if [ "$st" != 2 ]; then
        quorum_second
    fi
    return 0
}
# activate MAX_DACS [CA]: quorum ca.activate of CA (default $PAI) for ten minutes or MAX_DACS
# DACs; true when the window opened.
activate() {
    until=$(($(date +%s) * 1000 + 600000))
    quorum ca.activate "{\"ca\":\"${2:-$PAI}\",\"until\":$until,\"max_dacs\":$1}"
    jq -e --arg ca "${2:-$PAI}" '.executed == true and .result.activated == $ca' "$W/body" \
        > /dev/null
}

# body_code: the problem's "code" member (empty if none)
body_code() { jq -r '.code // empty' "$W/body" 2>/dev/null || true; }
header() { tr -d '\r' < "$W/headers" | sed -n "s/^$1: //Ip" | head -1; }
is_problem() {
    header content-type | grep -q '^application/problem+json' &&
        jq -e '(.type | startswith("urn:hsmca:problem:")) and (.status|type=="number") and
               (.title|type=="string") and (.code|type=="string")' "$W/body" >/dev/null
}
expect() { # description, status, [code]
    if [ "$STATUS" = "$2" ] && { [ -z "${3:-}" ] || [ "$(body_code)" = "$3" ]; } &&
        { [ "$STATUS" -lt 400 ] || is_problem; }; then
        ok "$1 -> $STATUS${3:+ $3}"
    else
        bad "$1: expected $2${3:+ $3}, got $STATUS $(body_code) $(head -c 200 "$W/body")"
    fi
}
