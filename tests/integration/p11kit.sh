#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# p11kit.sh -- hsmca and hsmcad through p11-kit, the way Debian hosts combine PKCS#11 modules and
# reach a remote token. The tokens are SoftHSM ones made as in the other tests; then:
#  - `p11-kit server` exports them on a unix socket in the test directory and everything goes
#    through p11-kit-client.so (P11_KIT_SERVER_ADDRESS): hsmca lists a token, generates a key
#    in it and reads it back; hsmcad logs in to the audit token, signs its checkpoints, and after
#    a quorum activation issues a DAC that openssl verifies up to the PAA;
#  - p11-kit-proxy.so with a module config in a throwaway HOME (user config; p11-kit ignores it
#    for root, so as root the commands run as nobody): the same again, and a proxy with no module
#    configured has no slot, so the token is token-not-found;
#  - a module-path= in a URI that names another module is refused with uri-module-mismatch.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
LIBDIR=/usr/lib/x86_64-linux-gnu
[ -d "$LIBDIR" ] || LIBDIR=$(dirname "$(find /usr/lib -name p11-kit-proxy.so | head -1)")
PROXY=$LIBDIR/p11-kit-proxy.so
CLIENT=$LIBDIR/pkcs11/p11-kit-client.so
for f in "$PROXY" "$CLIENT"; do
    [ -f "$f" ] || { echo "p11kit.sh: $f missing (apt-get install p11-kit-modules)" >&2; exit 1; }
done
command -v p11-kit >/dev/null || { echo "p11kit.sh: p11-kit missing (apt-get install p11-kit)" >&2; exit 1; }

SPID=""
cleanup_p11kit() {
    if [ -n "$SPID" ]; then kill -TERM "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
    cleanup
}
trap cleanup_p11kit EXIT

setup_tokens paa
setup_tls
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"

csr() { # name -> $W/name.der
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/$1.key" -outform DER -out "$W/$1.der" 2>/dev/null
}
use_module() { # the daemon's config with another pkcs11_module
    jq --arg m "$1" '.pkcs11_module = $m' "$W/hsmcad.json" > "$W/hsmcad.json.new"
    mv "$W/hsmcad.json.new" "$W/hsmcad.json"
}
RUN="" # how hsmca and hsmcad are run (as nobody, for the proxy, when we are root)
start_daemon_as() {
    rm -f "$W/port"
    # shellcheck disable=SC2086
    $RUN "$HSMCAD_BIN" --config "$W/hsmcad.json" --port-file "$W/port" 2> "$W/hsmcad.log" &
    DPID=$!
    i=0
    while [ ! -s "$W/port" ]; do
        i=$((i + 1))
        if [ $i -gt 150 ] || ! kill -0 "$DPID" 2>/dev/null; then
            bad "hsmcad started through $1"
            cat "$W/hsmcad.log" >&2
            DPID=""
            finish
            exit 1
        fi
        sleep 0.1
    done
    PORT=$(cat "$W/port")
    ok "hsmcad started through $1 (audit token opened, logged in, checkpoint signed)"
}
activate_via() { # how: quorum ca.activate of pai-8000 with two approvals
    check "$1: the quorum activates the PAI (the PAI token's login and key through p11-kit)" \
        activate 10
}
issue_dac() { # label csr-name
    csr "$2"
    # shellcheck disable=SC2086
    $RUN "$HSMCA_BIN" issue --url "https://127.0.0.1:$PORT" --ca pai-8000 --csr "$W/$2.der" \
        --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" --cacert "$W/tls/ca.pem" \
        --out "$W/$2.chain.pem" 2> "$W/$2.err" || true
    check "$1: hsmca issue gets a DAC and its PAI" \
        [ "$(grep -c 'BEGIN CERTIFICATE' "$W/$2.chain.pem" 2>/dev/null)" = 2 ]
    awk '/BEGIN/{n++} n==1' "$W/$2.chain.pem" > "$W/$2.dac.pem"
    awk '/BEGIN/{n++} n==2' "$W/$2.chain.pem" > "$W/$2.pai.pem"
    check "$1: openssl verifies the DAC (signed by the PAI key in the token) up to the PAA" \
        openssl verify -x509_strict -CAfile "$W/paa.pem" -untrusted "$W/$2.pai.pem" "$W/$2.dac.pem"
}

# ---- 1. p11-kit server + p11-kit-client.so (the remote-token path) ----
p11-kit server -f -n "$W/p11.sock" --provider "$MODULE" "pkcs11:token=hsmca-audit" \
    "pkcs11:token=hsmca-paa" "pkcs11:token=hsmca-pai-8000" > "$W/p11-server.out" 2>&1 &
SPID=$!
i=0
while [ ! -S "$W/p11.sock" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
check "p11-kit server listens on its socket" [ -S "$W/p11.sock" ]
P11_KIT_SERVER_ADDRESS=unix:path=$W/p11.sock
export P11_KIT_SERVER_ADDRESS

"$HSMCA_BIN" token info --module "$CLIENT" pkcs11:token=hsmca-pai-8000 > "$W/info.out" 2>&1 || true
check "client: hsmca token info lists the PAI token" grep -q '^label: hsmca-pai-8000$' "$W/info.out"
"$HSMCA_BIN" token keygen --module "$CLIENT" --pin-file "$W/audit.pin" \
    "pkcs11:token=hsmca-audit;object=remote-key" > "$W/remote.pub.pem" 2> "$W/keygen.err" || true
check "client: hsmca token keygen makes a P-256 key in the remote token" \
    sh -c "openssl pkey -pubin -in '$W/remote.pub.pem' -noout -text | grep -q prime256v1"
"$HSMCA_BIN" token pubkey --module "$CLIENT" "pkcs11:token=hsmca-audit;object=remote-key" \
    > "$W/remote.pub2.pem" 2>/dev/null || true
check "client: hsmca token pubkey reads the same key back" cmp -s "$W/remote.pub.pem" "$W/remote.pub2.pem"
st=0
"$HSMCA_BIN" token info --module "$CLIENT" \
    "pkcs11:token=hsmca-audit?module-path=$MODULE" > "$W/mp.out" 2>&1 || st=$?
check "module-path naming another module: exit 1, uri-module-mismatch" \
    sh -c "[ $st = 1 ] && grep -q uri-module-mismatch '$W/mp.out'"
st=0
"$HSMCA_BIN" token info --module "$MODULE" \
    "pkcs11:token=hsmca-audit?module-path=$MODULE" > "$W/mp.out" 2>&1 || st=$?
check "module-path naming the module in use is honoured" \
    sh -c "[ $st = 0 ] && grep -q '^label: hsmca-audit$' '$W/mp.out'"
st=0
"$HSMCA_BIN" token info "pkcs11:token=hsmca-pai-8000?module-path=$CLIENT" > "$W/mp.out" 2>&1 || st=$?
check "module-path without --module selects the module (here p11-kit-client)" \
    sh -c "[ $st = 0 ] && grep -q '^label: hsmca-pai-8000$' '$W/mp.out'"

use_module "$CLIENT"
start_daemon_as "p11-kit-client.so"
activate_via "client"
issue_dac "client" dev1
stop_daemon
kill -TERM "$SPID" 2>/dev/null || true
wait "$SPID" 2>/dev/null || true
SPID=""
unset P11_KIT_SERVER_ADDRESS

# ---- 2. p11-kit-proxy.so with the module registered in a user config ----
mkdir -p "$W/home/.config/pkcs11/modules"
printf 'user-config: only\n' > "$W/home/.config/pkcs11/pkcs11.conf"
printf 'module: %s\n' "$MODULE" > "$W/home/.config/pkcs11/modules/softhsm.module"
unset P11_KIT_NO_USER_CONFIG || true
if [ "$(id -u)" = 0 ]; then
    chown -R nobody:nogroup "$W"
    # nobody must reach $W and the binaries: every directory above them gets search (x) rights,
    # nothing more (a checkout cloned into a mktemp -d directory sits under a 0700 one)
    for p in "$W" "$HSMCA_BIN" "$HSMCAD_BIN"; do
        p=$(dirname "$p")
        while [ "$p" != / ]; do
            [ "$(stat -c %A "$p" | cut -c10)" = x ] || [ "$(stat -c %A "$p" | cut -c10)" = t ] ||
                chmod o+x "$p"
            p=$(dirname "$p")
        done
    done
    RUN="setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=$W/home"
else
    RUN="env HOME=$W/home"
fi
# shellcheck disable=SC2086
$RUN "$HSMCA_BIN" token info --module "$PROXY" pkcs11:token=hsmca-pai-8000 > "$W/info.out" 2>&1 || true
check "proxy: hsmca token info lists the PAI token" grep -q '^label: hsmca-pai-8000$' "$W/info.out"
use_module "$PROXY"
start_daemon_as "p11-kit-proxy.so"
activate_via "proxy"
issue_dac "proxy" dev2
call auditor GET /metrics
check "proxy: the daemon counts the DAC" grep -q 'hsmca_dacs_issued_total{ca="pai-8000"} 1' "$W/body"
# the log of both runs (checkpoints signed through p11-kit, two quorum activations) verifies
call auditor GET /v1/audit/extract
cp "$W/body" "$W/extract.tar"
"$HSMCA_BIN" audit verify --json "$W/extract.tar" > "$W/av.json" 2>&1 || true
check "the audit extract (a tar as downloaded) verifies, quorum operations included" \
    jq -e '.valid == true and .quorum_ops >= 2' "$W/av.json"
mkdir -p "$W/xt"
tar -xf "$W/extract.tar" -C "$W/xt"
check "and its verify.sh agrees" sh -c "sh '$W/xt/hsmca-audit-extract/verify.sh' 2>&1 |
    grep -q \", \$(jq .quorum_ops '$W/av.json') quorum operations,\""
stop_daemon
rm "$W/home/.config/pkcs11/modules/softhsm.module"
st=0
# shellcheck disable=SC2086
$RUN "$HSMCA_BIN" token info --module "$PROXY" pkcs11:token=hsmca-pai-8000 > "$W/none.out" 2>&1 || st=$?
check "proxy with no module (no slot): exit 1, token-not-found" \
    sh -c "[ $st = 1 ] && grep -q token-not-found '$W/none.out'"
[ "$(id -u)" != 0 ] || chown -R "$(id -u):$(id -g)" "$W"
finish
