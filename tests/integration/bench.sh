#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# bench.sh -- the measuring program behind tools/bench (hsmca-bench) against a real daemon, small
# and bounded, so that the benchmark keeps measuring what it says: fresh CSRs are made, the crypto
# floor runs on a token key, and the end-to-end client and the batch client each issue 100 DACs
# over mTLS with every response checked afterwards (no bad DAC, no error), reading the daemon's
# RSS peak, its fsyncs per DAC and the CPU per DAC. Figures are printed, never asserted: speed is
# not a test.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}" "${HSMCA_BENCH_BIN:?}"
setup_tokens paa
setup_tls
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
start_daemon

# ---- the PAI's window, opened by the quorum (bob and dave approve) ----
until=$(( $(date +%s) * 1000 + 600000 ))
call admin POST /v1/requests -H 'Content-Type: application/json' \
    --data-binary "{\"op\":\"ca.activate\",\"params\":{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":1000}}"
rid=$(jq -r .id "$W/body")
call approver GET "/v1/requests/$rid"
cp "$W/body" "$W/envelope.json"
for who in bob:approver dave:approver2; do # each approver submits their own approval
    "$HSMCA_PKI_BIN" approve "$W" "${who%%:*}-approver" "$W/envelope.json" > "$W/appr.json"
    call "${who#*:}" POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr.json"
done
check "the quorum opened the window" jq -e '.executed == true' "$W/body"

# ---- the PAI certificate the clients check DACs against ----
"$HSMCA_BENCH_BIN" gen-csrs -n 200 -o "$W/csrs.bin"
check "gen-csrs wrote 200 CSRs" test -s "$W/csrs.bin"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
    -keyout "$W/one.key" -outform DER -out "$W/one.der" 2>/dev/null
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: application/pem-certificate-chain' --data-binary @"$W/one.der"
check "one DAC by curl" [ "$STATUS" = 201 ]
awk '/BEGIN/{n++} n==2' "$W/body" > "$W/pai.pem"

# field NAME LINE: the value of NAME=... in a key=value line
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# ---- the crypto floor on the audit token's key ----
line=$("$HSMCA_BENCH_BIN" floor -m "$MODULE" -t pkcs11:token=hsmca-audit \
    -k 'pkcs11:token=hsmca-audit;object=audit-key' -p "$W/audit.pin" -c "$W/csrs.bin" \
    -j 2 -s 30 -n 100) || line=""
echo "# $line"
check "floor: 100 CSR checks and signatures, none failed" \
    [ "$(field dacs "$line")/$(field failed "$line")" = 100/0 ]
check "floor: its CPU per DAC measured" awk "BEGIN { exit !($(field cpu_us_per_dac "$line") > 0) }"

# ---- end to end and batches, every response checked ----
e2e() { # clients batch [count [issuer certificate]]
    "$HSMCA_BENCH_BIN" e2e -P "$PORT" -a pai-8000 -C "$W/tls/operator.pem" \
        -K "$W/tls/operator.key" -A "$W/tls/ca.pem" -I "${4:-$W/pai.pem}" -c "$W/csrs.bin" \
        -j "$1" -b "$2" -s 30 -n "${3:-100}" -d "$DPID" 2>> "$W/bench.err" || true
}
line=$(e2e 4 0)
echo "# $line"
check "e2e: 100 DACs over 4 connections, all 201 and chaining to the PAI" \
    [ "$(field dacs "$line")/$(field bad "$line")/$(field errors "$line")" = 100/0/0 ]
check "e2e: RSS peak and fsyncs per DAC read from the daemon" sh -c \
    "[ '$(field rss_peak_kb "$line")' -gt 0 ] && awk 'BEGIN { exit !($(field fsyncs_per_dac "$line") > 0) }'"
check "e2e: CPU per DAC read for the daemon (/proc) and the client" awk \
    "BEGIN { exit !($(field server_us_per_dac "$line") >= 0 && $(field client_us_per_dac "$line") > 0) }"
check "e2e: the daemon's mean commit and signature times read from its /metrics" awk \
    "BEGIN { exit !($(field commit_ms "$line") > 0 && $(field sign_ms "$line") > 0) }"
line=$(e2e 2 20)
echo "# $line"
check "batch: 100 DACs in batches of 20, all 201 and chaining to the PAI" \
    [ "$(field dacs "$line")/$(field bad "$line")/$(field errors "$line")" = 100/0/0 ]
# the checks are real: against the PAA's key instead of the PAI's, every DAC counts as bad
line=$(e2e 1 0 10 "$W/paa.pem")
echo "# $line"
check "e2e against the wrong issuer key: 10 bad of 10" [ "$(field bad "$line")" = 10 ]
call auditor GET /v1/cas/pai-8000
check "the daemon counts 211 DACs issued" jq -e '.issuance.issued == 211' "$W/body"
finish
