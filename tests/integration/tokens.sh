#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# tokens.sh -- a new product line without a new ceremony: a free token joins the quorum's custody
# by quorum (token.enroll: its SO PIN random and destroyed, its user PIN random, split and sealed
# to the current approvers), a second PAI (PID 8001) is made in it by quorum, both PAIs' windows
# are opened by two requests pending at once and executed in the other order than asked, both
# issue, and each DAC chains to its own PAI and the PAA; then an approver is enrolled while both
# windows are open, and both windows stay open and issue; a request asked before that enrolment
# is then refused as quorum-epoch-stale (the approvers it relied on changed).
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
jq '(.certificates[] | select(.principal == "factory-1") | .cas) = ["pai-8000", "pai-8001"]' \
    "$W/roles.json" > "$W/roles.new" && mv "$W/roles.new" "$W/roles.json"
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json" \
    --paa-quorum
start_daemon

ask() { # op params-json -> the request's id in $rid (empty if refused; answer in $W/body)
    call admin POST /v1/requests -H 'Content-Type: application/json' \
        --data-binary "{\"op\":\"$1\",\"params\":$2}"
    rid=""
    [ "$STATUS" = 201 ] && rid=$(jq -r .id "$W/body")
    return 0
}
approve_both() { # request id -> bob and dave approve it; answer in $W/body
    rid=$1
    call approver GET "/v1/requests/$rid"
    cp "$W/body" "$W/envelope.json"
    "$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope.json" > "$W/appr-bob.json"
    "$HSMCA_PKI_BIN" approve "$W" dave-approver "$W/envelope.json" > "$W/appr-dave.json"
    call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-bob.json"
    call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-dave.json"
}
quorum() { # op params-json -> executes it with bob's and dave's approvals; answer in $W/body
    ask "$1" "$2"
    [ -n "$rid" ] || return 0 # the caller's check sees the refusal in $W/body
    approve_both "$rid"
}
csr() { # name -> $W/name.der
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/$1.key" -outform DER -out "$W/$1.der" 2>/dev/null
}
until=$(( $(date +%s) * 1000 + 600000 ))

# ---- the new token joins by quorum ----
quorum token.enroll '{"token": "hsmca-pai-8001"}'
check "token.enroll executes with two approvals" jq -e '.executed == true' "$W/body"
check "the new token is initialised, with no SO PIN anyone knows (softhsm2-util lists it)" sh -c \
    "softhsm2-util --show-slots | grep -q 'Label: *hsmca-pai-8001'"
call admin GET /v1/approvers
store_sql "SELECT label FROM quorum_tokens" > "$W/qtokens.txt"
check "the token is under the quorum" grep -qx hsmca-pai-8001 "$W/qtokens.txt"
quorum token.enroll '{"token": "hsmca-pai-8001"}'
expect "the same label again is refused at creation" 400 quorum-params-invalid

# ---- the second PAI, PID 8001, in it ----
quorum ca.create_pai '{"ca": "pai-8001", "parent": "paa-1", "token": "hsmca-pai-8001", "key_label": "pai-key", "vid": 65521, "pid": 32769}'
check "ca.create_pai pai-8001 (PID 8001) on the new token executes" jq -e '.executed == true' "$W/body"

# ---- two pending requests, executed in the other order than asked; both windows open ----
ask ca.activate "{\"ca\": \"pai-8000\", \"until\": $until, \"max_dacs\": 10}"
RID_A=$rid
ask ca.activate "{\"ca\": \"pai-8001\", \"until\": $until, \"max_dacs\": 10}"
RID_B=$rid
check "two activations pending at once" sh -c "[ -n '$RID_A' ] && [ -n '$RID_B' ]"
approve_both "$RID_B"
check "the second asked (pai-8001) executes first" jq -e '.executed == true' "$W/body"
approve_both "$RID_A"
check "the first asked (pai-8000) executes after it: its shares still hold" \
    jq -e '.executed == true' "$W/body"
for ca in pai-8000 pai-8001; do
    call auditor GET "/v1/cas/$ca"
    check "$ca is active" jq -e '.issuance.active == true' "$W/body"
done

# ---- both issue; each DAC chains to its own PAI ----
for pid in 8000 8001; do
    csr "d$pid"
    call operator POST "/v1/cas/pai-$pid/dacs" -H 'Content-Type: application/pkcs10' \
        -H 'Accept: application/pem-certificate-chain' --data-binary @"$W/d$pid.der"
    check "pai-$pid issues a DAC" [ "$STATUS" = 201 ]
    awk '/BEGIN/{n++} n==1' "$W/body" > "$W/dac-$pid.pem"
    awk '/BEGIN/{n++} n==2' "$W/body" > "$W/pai-$pid.pem"
    check "the DAC of pai-$pid chains to pai-$pid and the PAA (openssl)" \
        openssl verify -CAfile "$W/paa.pem" -untrusted "$W/pai-$pid.pem" "$W/dac-$pid.pem"
    check "... and as a commissioner checks it (hsmca verify, PID $pid)" "$HSMCA_BIN" verify \
        --dac "$W/dac-$pid.pem" --pai "$W/pai-$pid.pem" --paa "$W/paa.pem" --expect-vid FFF1 \
        --expect-pid "$pid"
done
check "the two PAIs are distinct keys" sh -c \
    "! cmp -s '$W/pai-8000.pem' '$W/pai-8001.pem' && [ \"\$(openssl x509 -in '$W/pai-8000.pem' -noout -pubkey)\" != \"\$(openssl x509 -in '$W/pai-8001.pem' -noout -pubkey)\" ]"
check "a DAC of pai-8001 does not chain to pai-8000" sh -c \
    "! openssl verify -CAfile '$W/paa.pem' -untrusted '$W/pai-8000.pem' '$W/dac-8001.pem' >/dev/null 2>&1"

# ---- a request pending across an approver enrolment ----
ask crl.sign '{"ca": "pai-8000"}'
RID_C=$rid
call approver GET "/v1/requests/$RID_C"
cp "$W/body" "$W/envelope-c.json"
"$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope-c.json" > "$W/appr-c.json"

# ---- an approver enrolment while both windows are open ----
umask 077
printf 'frank-pin-1234\n' > "$W/frank.pin"
umask 022
softhsm2-util --init-token --free --label approver-frank --so-pin so-pin-1234 \
    --pin frank-pin-1234 >/dev/null
"$HSMCA_BIN" token keygen --module "$MODULE" --pin-file "$W/frank.pin" --derive \
    "pkcs11:token=approver-frank;object=approver-key" > "$W/frank.pub.pem"
"$HSMCA_BIN" approve --enroll --module "$MODULE" --name frank \
    --key-uri "pkcs11:token=approver-frank;object=approver-key" --pin-file "$W/frank.pin" \
    > "$W/frank.json"
quorum approver.enroll "$(cat "$W/frank.json")"
check "frank is enrolled while both windows are open" jq -e '.executed == true' "$W/body"
call admin GET /v1/approvers
check "... four approvers now" jq -e '(.approvers | length) == 4' "$W/body"
for pid in 8000 8001; do
    call auditor GET "/v1/cas/pai-$pid"
    check "pai-$pid's window stayed open through the enrolment" \
        jq -e '.issuance.active == true and .issuance.issued == 1' "$W/body"
    csr "e$pid"
    call operator POST "/v1/cas/pai-$pid/dacs" -H 'Content-Type: application/pkcs10' \
        --data-binary @"$W/e$pid.der"
    check "pai-$pid still issues after the enrolment" [ "$STATUS" = 201 ]
done

# ---- a request asked before the enrolment relied on the old approver set ----
call approver POST "/v1/requests/$RID_C/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-c.json"
expect "an approval of a request asked before the approver set changed" 409 quorum-epoch-stale
check "... and the detail says what to do: create it again, cancel this one" jq -e --arg id "$RID_C" \
    '(.detail | contains("create it again (hsmca request create ")) and
     (.detail | contains("(hsmca request cancel " + $id + ")"))' "$W/body"
stop_daemon || bad "daemon exit status"
LAST=$(store_sql 'SELECT max(seq) FROM audit_entries')
"$HSMCA_BIN" audit archive --store "$STORE" --from 1 --to "$LAST" --out "$W/ex" > /dev/null
check "the log with the enrolment verifies offline" "$HSMCA_BIN" audit verify "$W/ex"
nint=$(store_sql 'SELECT count(*) FROM audit_intents')
check "no intent is left open" [ "$nint" -eq 0 ]
finish
