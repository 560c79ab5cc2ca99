#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# custody.sh -- no crash during a quorum operation may cost the quorum its CA key (docs/custody.md).
# The daemon runs on the test PKCS#11 shim (tests/fixture/p11shim.c), which kills it with SIGKILL
# at a named fault point: before and after each PKCS#11 call that changes the PAI token (C_Login,
# C_SetPIN, C_Logout, C_GenerateKeyPair), which are the step boundaries of the rotation protocol
# (before C_SetPIN = after the write-ahead commit; after it = before the confirmation). The shim
# can also leave SoftHSM's token file at 0 bytes, as SoftHSM does when it dies mid-write. For every
# point: a ca.activate approved by two approvers kills the daemon there; the daemon restarts without
# the fault; one more ca.activate by quorum succeeds, the PAI signs a DAC that chains to the PAA,
# the open intent is closed in the log, and at the end the whole audit log verifies offline.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}" "${HSMCA_P11SHIM:?}"
setup_tokens paa
setup_tls
export HSMCA_SHIM_TARGET="$MODULE"
MODULE=$HSMCA_P11SHIM
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$HSMCA_SHIM_TARGET" "$SRC/policies/profiles" \
    "$SRC/policies/quorum.json"
PAI_DIR=$(dirname "$(grep -l 'hsmca-pai-8000' "$W"/tokens/*/token.object)")

csr() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/dev.key" -outform DER -out "$W/dev.der" 2>/dev/null
}

# request ca.activate; the first approver's approval is counted, the second's executes it
activate_request() {
    until=$(($(date +%s) * 1000 + 600000))
    quorum_first ca.activate "{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":${MAX_DACS:-10}}"
}
approve_second() { quorum_second; }
deactivate() { call admin POST /v1/cas/pai-8000/deactivation; }
issue_dac() {
    csr
    call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
        --data-binary @"$W/dev.der"
    [ "$STATUS" = 201 ] || return 1
    sed -n '/BEGIN CERT/,/END CERT/p' "$W/body" > "$W/chain.pem"
    awk 'n < 1 {print} /END CERT/ {n++}' "$W/chain.pem" > "$W/dac.pem"
    openssl x509 -in "$W/dac.pem" -noout -pubkey > "$W/dac.pub" &&
        openssl pkey -in "$W/dev.key" -pubout > "$W/dev.pub" && cmp -s "$W/dac.pub" "$W/dev.pub"
}

# the points: every step boundary of an activation's quorum operation on the PAI token
POINTS="C_Login:before C_Login:after C_SetPIN:before C_SetPIN:after"
POINTS="$POINTS C_Login:after:truncate C_SetPIN:after:truncate"
n=0
for p in $POINTS; do
    n=$((n + 1))
    fn=${p%%:*}
    rest=${p#*:}
    phase=${rest%%:*}
    trunc=""
    [ "$rest" != "$phase" ] && trunc="$PAI_DIR/token.object"
    HSMCA_SHIM_CRASH="$fn:$phase:hsmca-pai-8000" HSMCA_SHIM_CRASH_TRUNCATE="$trunc" start_daemon
    if ! activate_request; then
        bad "$p: the request and the first approval"
        continue
    fi
    approve_second || true
    i=0
    while kill -0 "$DPID" 2>/dev/null && [ $i -lt 100 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    if kill -0 "$DPID" 2>/dev/null; then
        bad "$p: the fault point was not reached"
        stop_daemon || true
        continue
    fi
    wait "$DPID" 2>/dev/null || true
    DPID=""
    [ -n "$trunc" ] && check "$p: SoftHSM's token file was left empty" [ ! -s "$trunc" ]
    unset HSMCA_SHIM_CRASH HSMCA_SHIM_CRASH_TRUNCATE
    # what an operator sees before restarting: the findings, each with its recovery
    st=0
    "$HSMCA_BIN" custody status --store "$STORE" --module "$MODULE" > "$W/status" 2>&1 || st=$?
    check "$p: hsmca custody status reports findings (exit 1)" [ "$st" = 1 ]
    check "$p: ... the unclean stop" grep -q 'without a clean stop' "$W/status"
    case $p in
    C_SetPIN:*) check "$p: ... the rotation in doubt, with its recovery" \
        grep -q 'hsmca-pai-8000: .*UNCONFIRMED' "$W/status" ;;
    esac
    [ -n "$trunc" ] && check "$p: ... the unreadable token, with its recovery" \
        grep -q 'NOT READABLE' "$W/status"
    start_daemon
    call auditor GET /readyz
    check "$p: ready after the crash" [ "$STATUS" = 200 ]
    if activate_request && approve_second &&
        jq -e '.executed == true and .result.activated == "pai-8000"' "$W/body" >/dev/null; then
        ok "$p: a new quorum operation reaches the key"
    else
        bad "$p: a new quorum operation reaches the key: $STATUS $(head -c 300 "$W/body")"
    fi
    check "$p: the PAI signs a DAC" issue_dac
    deactivate
    stop_daemon || bad "$p: clean stop"
done

# every window's end is in the log: by count, by deactivation (above), by restart after a crash
entries() { store_sql \
    "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"action\":\"$1\"%$2%'"; }
start_daemon
if MAX_DACS=1 activate_request && approve_second && issue_dac; then
    i=0
    while [ "$(entries window.end '"reason":"count"')" -eq 0 ] && [ $i -lt 50 ]; do
        i=$((i + 1))
        sleep 0.1
    done
else
    bad "a window for the count and restart checks: $STATUS $(head -c 200 "$W/body")"
fi
check "a window ended by its count is logged" [ "$(entries window.end '"reason":"count"')" -ge 1 ]
activate_request && approve_second
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null || true
DPID=""
n=$((n + 1))
start_daemon
check "a window a crash left open is closed in the log at the next start" \
    [ "$(entries window.end '"reason":"restart"')" -eq 1 ]
check "deactivations are logged" [ "$(entries window.end '"reason":"deactivation"')" -ge 6 ]
check "every window.start has its window.end" [ "$(entries window.start '')" -eq "$(entries window.end '')" ]
stop_daemon || bad "clean stop"

check "hsmca custody status: nothing to recover after a clean stop" \
    "$HSMCA_BIN" custody status --store "$STORE" --module "$MODULE"
CRASHES=$(store_sql \
    "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%daemon.crash-detected%'")
check "every crash left a daemon.crash-detected entry ($CRASHES of $n)" [ "$CRASHES" -eq "$n" ]
RESTORED=$(store_sql \
    "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%custody.token-restored%'")
check "each emptied token file was put back from its copy, and logged ($RESTORED)" [ "$RESTORED" -eq 2 ]
check "the copies are the service's alone (0700)" sh -c \
    "[ \"\$(stat -c %a '$W/softhsm-backup')\" = 700 ] && ! find '$W/softhsm-backup' -type f -perm /077 | grep -q ."
check "no intent is left open" eval "[ \$(store_sql 'SELECT count(*) FROM audit_intents') -eq 0 ]"
check "no token is left in doubt" eval \
    "[ \$(store_sql 'SELECT count(*) FROM quorum_tokens WHERE alt_epoch <> 0') -eq 0 ]"
LAST=$(store_sql 'SELECT max(seq) FROM audit_entries')
SIZE=$("$HSMCA_BIN" audit archive --store "$STORE" --from 1 --to "$LAST" --out "$W/ex" |
    sed -n 's/.*entries 1\.\.\([0-9]*\).*/\1/p')
check "the whole log archives ($SIZE entries)" test -n "$SIZE"
check "... and verifies offline" "$HSMCA_BIN" audit verify "$W/ex"
finish
