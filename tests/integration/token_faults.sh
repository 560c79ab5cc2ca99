#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# token_faults.sh -- tokens that go away and come back, with the real hsmcad, healed without a
# restart (docs/token-faults.md). The p11 shim (tests/fixture/p11shim.c) pulls a token out while
# the file HSMCA_SHIM_GONE_FILE names it: its sessions are closed and its login lost, as with a
# real removal ("LABEL keep": a glitch the sessions survive).
#   1. audit token gone: checkpoints fail, /readyz names it, DACs go on until more than
#      audit.max_unsigned_entries (100 here) lie beyond the last signed checkpoint, then 503
#      audit-unsigned-backlog (problem+json, audited); extracts fail. Back: checkpoints resume by
#      themselves, /readyz is 200, DACs and extracts work, the whole chain verifies.
#   2. PAI token gone with a window open: /readyz names it; back with its login lost: the window
#      is closed (window.end, token-lost), /readyz is 200, and the quorum opens a new one.
#   3. PAI token glitch ("keep"): back with its login alive, the window goes on.
#   4. a PAI token missing at start: /readyz names it, the log says what to do, the audit log
#      records it (token.fault, phase start); it is opened once it appears.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}" "${HSMCA_P11SHIM:?}"
MODULE=$HSMCA_P11SHIM # through the shim, to SoftHSM (HSMCA_SHIM_TARGET)
export HSMCA_SHIM_GONE_FILE="$W/gone"
: > "$W/gone"
setup_tokens paa
setup_tls
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
# checkpoints every 50 entries; DACs stop beyond 100 unsigned ones
jq '.audit.max_unsigned_entries = 100' "$W/hsmcad.json" > "$W/cfg" && mv "$W/cfg" "$W/hsmcad.json"
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
start_daemon

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
    -keyout "$W/dev.key" -outform DER -out "$W/dev.der" 2> /dev/null
dac() { call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/dev.der"; }
# wait_ready STATUS: poll /readyz (at most 10 s) until it answers STATUS
wait_ready() {
    i=0
    while [ $i -lt 50 ]; do
        call operator GET /readyz
        [ "$STATUS" = "$1" ] && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
entries() { # ACTION: how many audit entries of that action the store holds
    store_sql "SELECT count(*) FROM audit_entries WHERE
        CAST(line AS TEXT) LIKE '%\"action\":\"$1\"%'"
}
extract_verify() { # FROM: extract from seq FROM and verify it with hsmca audit verify
    call auditor GET "/v1/audit/extract?from=$1"
    [ "$STATUS" = 200 ] || return 1
    rm -rf "$W/x" && mkdir "$W/x" && tar -xf "$W/body" -C "$W/x"
    "$HSMCA_BIN" audit verify "$(dirname "$(find "$W/x" -name manifest.json | head -1)")" \
        > "$W/verify.out" 2>&1
}

check "quorum opens the PAI's window" activate 100000
dac
check "a DAC before any fault -> 201" [ "$STATUS" = 201 ]
call operator GET /readyz
check "/readyz: 200, ready, no token faults" jq -e '.status == "ready" and
    (.checks.token_faults | length == 0) and .checks.audit_checkpoints == "ok"' "$W/body"

# ---- 1. the audit token goes away ----
echo hsmca-audit > "$W/gone"
check "/readyz 503 once the audit token is gone" wait_ready 503
check "/readyz names the audit token and what to do" jq -e '.checks.audit_token == "removed" and
    (.checks.token_faults[0].token == "hsmca-audit") and
    (.checks.token_faults[0].action | test("put the token back"))' "$W/body"
issued=0
refused=0
i=0
while [ $i -lt 400 ] && [ "$refused" -eq 0 ]; do
    dac
    case $STATUS in
    201) issued=$((issued + 1)) ;;
    503) refused=1 ;;
    *) break ;;
    esac
    i=$((i + 1))
done
check "DACs are refused once the backlog passes the bound (issued $issued while gone)" \
    [ "$refused" -eq 1 ]
expect "a DAC beyond the bound" 503 audit-unsigned-backlog
cp "$W/body" "$W/backlog.problem"
check "issued while gone: at most the bound (100 unsigned entries in all)" [ "$issued" -le 100 ]
echo "# measured: $issued DACs issued while the audit token was away"
call operator GET /readyz
check "/readyz: issuance stopped, the unsigned count above the bound" jq -e '
    .checks.audit_checkpoints == "issuance-stopped" and .checks.audit_unsigned > 100' "$W/body"
dac
expect "still refused while the token is gone" 503 audit-unsigned-backlog
call auditor GET "/v1/audit/extract?from=1"
check "an extract fails while the audit token is gone ($STATUS)" [ "$STATUS" -ge 500 ]
check "the refusals are audited (dac.refuse with audit-unsigned-backlog)" \
    [ "$(store_sql "SELECT count(*) FROM audit_entries WHERE
        CAST(line AS TEXT) LIKE '%audit-unsigned-backlog%'")" -ge 1 ]

t0=$(date +%s%N)
: > "$W/gone"
check "/readyz 200 again without a restart (audit token back)" wait_ready 200
echo "# measured: audit token back -> /readyz 200 in $((($(date +%s%N) - t0) / 1000000)) ms"
dac
check "DACs resume once a checkpoint is signed -> 201" [ "$STATUS" = 201 ]
check "an extract of the whole log works again and hsmca audit verify accepts it" extract_verify 1
check "the fault and the recovery are audited" \
    sh -c "[ $(entries token.fault) -ge 1 ] && [ $(entries token.recovered) -ge 1 ]"
grep -q 'audit-key-restored' "$W/hsmcad.log" && ok "the log says the audit key was restored" ||
    bad "the log says the audit key was restored"
call auditor GET /metrics
check "/metrics counts the failed checkpoints and the heal" sh -c "
    grep -Eq '^hsmca_audit_checkpoint_failures_total [1-9]' '$W/body' &&
    grep -Eq '^hsmca_audit_key_heals_total [1-9]' '$W/body'"

# ---- 2. the PAI token goes away with its window open, comes back logged out ----
echo hsmca-pai-8000 > "$W/gone"
check "/readyz 503 once the PAI token is gone" wait_ready 503
check "/readyz names the PAI's token" jq -e '.checks.ca_tokens["pai-8000"] == "removed" and
    (.checks.token_faults[0].ca == "pai-8000")' "$W/body"
dac
check "a DAC while the PAI token is gone fails ($STATUS $(body_code))" \
    sh -c "[ '$STATUS' -ge 500 ] && echo '$(body_code)' | grep -Eq '^(sign-failed|token-removed)$'"
t0=$(date +%s%N)
: > "$W/gone"
check "/readyz 200 again without a restart (PAI token back)" wait_ready 200
echo "# measured: PAI token back -> /readyz 200 in $((($(date +%s%N) - t0) / 1000000)) ms"
# the token's prober closes the window at its next pass (every second): wait for it, bounded
i=0
while call operator GET /v1/cas/pai-8000 && ! jq -e '.issuance.active == false' "$W/body" \
    >/dev/null 2>&1 && [ $i -lt 50 ]; do
    i=$((i + 1))
    sleep 0.1
done
check "the window whose login was lost is closed (within $((i * 100)) ms)" \
    jq -e '.issuance.active == false' "$W/body"
check "its end is audited (window.end, reason token-lost)" \
    [ "$(store_sql "SELECT count(*) FROM audit_entries WHERE
        CAST(line AS TEXT) LIKE '%\"action\":\"window.end\"%' AND
        CAST(line AS TEXT) LIKE '%token-lost%'")" = 1 ]
dac
expect "no DAC without a window" 409 ca-inactive
check "the quorum opens a new window on the reconnected token" activate 100000
dac
check "DACs again -> 201" [ "$STATUS" = 201 ]

# ---- 3. a glitch: the PAI token's sessions survive ----
echo "hsmca-pai-8000 keep" > "$W/gone"
check "/readyz 503 during the glitch" wait_ready 503
: > "$W/gone"
check "/readyz 200 after the glitch" wait_ready 200
call operator GET /v1/cas/pai-8000
check "the window survived the glitch" jq -e '.issuance.active == true' "$W/body"
dac
check "a DAC after the glitch, same window -> 201" [ "$STATUS" = 201 ]

# ---- 4. a token missing at start ----
check "hsmcad stops cleanly" stop_daemon
echo hsmca-pai-8000 > "$W/gone"
start_daemon
call operator GET /readyz
check "/readyz 503 names the PAI token missing at start" jq -e '
    .checks.ca_tokens["pai-8000"] == "missing" and (.checks.token_faults[0].action |
    test("connect the token"))' "$W/body"
check "the log says which token and what to do" \
    grep -q 'token-fault.*token=hsmca-pai-8000 ca=pai-8000 fault=missing phase=start action="connect' \
    "$W/hsmcad.log"
check "the audit log records it (token.fault, phase start)" \
    [ "$(store_sql "SELECT count(*) FROM audit_entries WHERE
        CAST(line AS TEXT) LIKE '%\"action\":\"token.fault\"%' AND
        CAST(line AS TEXT) LIKE '%\"phase\":\"start\"%' AND CAST(line AS TEXT) LIKE '%missing%'")" = 1 ]
: > "$W/gone"
check "/readyz 200 once the token appears" wait_ready 200
check "the whole chain verifies after all of it" extract_verify 1
check "hsmcad stops cleanly at the end" stop_daemon
finish
