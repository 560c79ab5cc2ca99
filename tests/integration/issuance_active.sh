#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# issuance_active.sh -- DAC issuance end to end against SoftHSM tokens: a PAA and a PAI made in
# their tokens, the quorum ceremony over the PAI token (three software approvers, m = 2), then
# through the daemon: an inactive PAI refuses (409 ca-inactive), an admin asks for ca.activate and
# two approvers approve it over HTTPS, a dry run lints, a DER CSR gives a PEM chain that openssl
# verifies up to the PAA, DER out (application/pkix-cert) by Accept and its q-values, Location on
# every 201 and the certificate's own resource (JSON, DER, PEM chain), a retry with the same
# request id (JSON body or Idempotency-Key) replays the same DAC, the same id with another CSR is
# 409 request-id-conflict, a batch with a bad item fails that item alone, the per-minute quota
# answers 429 quota-exceeded, and the inventory, metrics and receipts show what happened.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
printf '{"pai-8000": {"per_minute": 10}}\n' > "$W/quotas.json"
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\", \"quotas\": \"quotas.json\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
start_daemon

csr() { # name -> $W/name.der and $W/name.pem
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/$1.key" -outform DER -out "$W/$1.der" 2>/dev/null
    openssl req -inform DER -in "$W/$1.der" -out "$W/$1.pem"
}
json_csr() { # name [request id] -> JSON body
    jq -n --rawfile c "$W/$1.pem" --arg id "${2:-}" \
        'if $id == "" then {csr: $c} else {csr: $c, request_id: $id} end'
}
for n in a b c d e f g h i j k l m n o p q; do csr "$n"; done

# ---- inactive, dry run ----
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/a.der"
expect "inactive PAI" 409 ca-inactive
check "refusal receipt" sh -c "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: [0-9]+:[0-9a-f]{64}'"
call operator2 POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/a.der"
expect "operator bound to another PAI" 403 http-ca-forbidden

# ---- activation through the quorum ----
until=$(( $(date +%s) * 1000 + 600000 ))
call admin POST /v1/requests -H 'Content-Type: application/json' \
    --data-binary "{\"op\":\"ca.activate\",\"params\":{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":100}}"
check "quorum request 201" [ "$STATUS" = 201 ]
rid=$(jq -r .id "$W/body")
check "Location header" [ "$(header location)" = "/v1/requests/$rid" ]
call approver GET "/v1/requests/$rid"
check "approver reads the envelope" [ "$STATUS" = 200 ]
cp "$W/body" "$W/envelope.json"
"$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope.json" > "$W/appr-bob.json"
"$HSMCA_PKI_BIN" approve "$W" dave-approver "$W/envelope.json" > "$W/appr-dave.json"
# an approval is bound to its sender: bob's approval relayed by dave is refused
call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-bob.json"
expect "bob's approval relayed by dave" 403 quorum-approval-relayed
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%quorum.approve.refuse%quorum-approval-relayed%'" > "$W/relayed.txt"
check "... and audited as a refusal by dave" grep -q '"actor":"dave-approver"' "$W/relayed.txt"
call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-bob.json"
check "bob's approval from bob counted, not ready" jq -e '.approvals == 1 and .ready == false' "$W/body"
call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-bob.json"
expect "bob's approval a second time" 409 quorum-duplicate-approval
call operator POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-dave.json"
expect "an operator may not submit approvals" 403 http-forbidden
call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-dave.json"
check "second approval executes ca.activate" jq -e '.executed == true and .result.activated == "pai-8000"' "$W/body"
call operator GET /v1/cas/pai-8000
check "GET /v1/cas/pai-8000 shows the open window" jq -e '.issuance.active == true and .issuance.max_dacs == 100' "$W/body"

# ---- dry run: the DAC that would be issued, nothing signed or stored ----
call operator POST '/v1/cas/pai-8000/dacs?dry_run=true' -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/a.der"
check "dry run 200 with a lint document" sh -c "[ '$STATUS' = 200 ] && jq -e '.ok == true and (.problems | length == 0)' '$W/body' >/dev/null"

# ---- single DAC, DER in, PEM chain out ----
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: application/pem-certificate-chain' --data-binary @"$W/a.der"
check "DER CSR -> 201" [ "$STATUS" = 201 ]
check "PEM chain content type" [ "$(header content-type)" = application/pem-certificate-chain ]
check "chain holds DAC then PAI" [ "$(grep -c 'BEGIN CERTIFICATE' "$W/body")" = 2 ]
awk '/BEGIN/{n++} n==1' "$W/body" > "$W/a.dac.pem"
awk '/BEGIN/{n++} n==2' "$W/body" > "$W/pai.pem"
check "openssl verifies DAC -> PAI -> PAA" \
    openssl verify -CAfile "$W/paa.pem" -untrusted "$W/pai.pem" "$W/a.dac.pem"
check "the DAC carries the CSR's key" sh -c "[ \"\$(openssl x509 -in '$W/a.dac.pem' -noout -pubkey)\" = \"\$(openssl pkey -in '$W/a.key' -pubout)\" ]"
check "issuance receipt" sh -c "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: [0-9]+:[0-9a-f]{64}'"
a_serial=$(header serial)
check "201 names the new DAC's resource in Location" \
    [ "$(header location)" = "/v1/cas/pai-8000/certificates/$a_serial" ]
check "the negotiated reply says Vary: Accept" [ "$(header vary)" = Accept ]

# ---- DER out (application/pkix-cert), q-values, the certificate's own resource ----
call operator GET "/v1/cas/pai-8000/certificates/$a_serial" -H 'Accept: application/pkix-cert'
check "GET Location as DER -> 200 application/pkix-cert" sh -c \
    "[ '$STATUS' = 200 ] && [ \"\$(grep -i '^content-type:' '$W/headers' | tr -d '\r')\" = 'Content-Type: application/pkix-cert' ]"
openssl x509 -in "$W/a.dac.pem" -outform DER -out "$W/a.dac.der"
check "the DER is the DAC issued" cmp -s "$W/body" "$W/a.dac.der"
call auditor GET "/v1/cas/pai-8000/certificates/$a_serial"
check "GET of the DAC as JSON: its record and PEM" jq -e --arg s "$a_serial" \
    '.serial == $s and .status == "issued" and .pid == "8000" and
     (.certificate | startswith("-----BEGIN CERTIFICATE-----"))' "$W/body"
call operator GET "/v1/cas/pai-8000/certificates/$a_serial" \
    -H 'Accept: application/pem-certificate-chain'
check "GET of the DAC as a PEM chain: DAC then PAI" sh -c \
    "[ \"\$(grep -c 'BEGIN CERTIFICATE' '$W/body')\" = 2 ] && awk '/BEGIN/{n++} n==2' '$W/body' | cmp -s - '$W/pai.pem'"
call operator2 GET "/v1/cas/pai-8000/certificates/$a_serial"
expect "an operator bound to another PAI may not read it" 403 http-ca-forbidden
call auditor GET /v1/cas/pai-8000/certificates/00ff
expect "unknown serial" 404 not-found
call auditor GET /v1/cas/pai-8000/certificates/xyz
expect "serial not hex" 400 http-bad-request
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: application/json;q=0.5, application/pkix-cert;q=0.9, */*;q=0.1' \
    --data-binary @"$W/p.der"
check "Accept with q-values picks DER -> 201 application/pkix-cert" sh -c \
    "[ '$STATUS' = 201 ] && tr -d '\r' < '$W/headers' | grep -qi '^content-type: application/pkix-cert$'"
check "the DER DAC parses and verifies up to the PAA" sh -c \
    "openssl x509 -inform DER -in '$W/body' -out '$W/p.dac.pem' &&
     openssl verify -CAfile '$W/paa.pem' -untrusted '$W/pai.pem' '$W/p.dac.pem'"
check "DER 201 has Location and Vary" sh -c "[ \"$(header location)\" = \"/v1/cas/pai-8000/certificates/$(header serial)\" ] && [ '$(header vary)' = Accept ]"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: application/pkix-cert;q=0, application/json' --data-binary @"$W/q.der"
check "q=0 excludes DER: JSON 201 with Location" sh -c "[ '$STATUS' = 201 ] &&
    [ \"$(header location)\" = \"/v1/cas/pai-8000/certificates/\$(jq -r .serial '$W/body')\" ]"
call operator GET /v1/cas/pai-8000 -H 'Accept: application/pkix-cert'
openssl x509 -in "$W/pai.pem" -outform DER -out "$W/pai.der"
check "GET /v1/cas/pai-8000 as DER is the PAI certificate" sh -c \
    "[ '$STATUS' = 200 ] && cmp -s '$W/body' '$W/pai.der' && [ '$(header vary)' = Accept ]"
call operator GET /v1/cas/pai-8000 -H 'Accept: text/html'
expect "GET /v1/cas/pai-8000 as HTML" 406 http-not-acceptable

# ---- idempotency ----
json_csr b dev-1 > "$W/b.json"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' --data-binary @"$W/b.json"
check "JSON with request_id -> 201" [ "$STATUS" = 201 ]
serial=$(jq -r .serial "$W/body")
cert=$(jq -r .certificate "$W/body")
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' --data-binary @"$W/b.json"
check "retry -> 200 replayed, same DAC" sh -c "[ '$STATUS' = 200 ] && jq -e '.replayed == true and .serial == \"$serial\"' '$W/body' >/dev/null"
check "retry returns the same certificate" [ "$(jq -r .certificate "$W/body")" = "$cert" ]
json_csr c dev-1 > "$W/c.json"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' --data-binary @"$W/c.json"
expect "same request id, other CSR" 409 request-id-conflict
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Idempotency-Key: dev-2' --data-binary @"$W/d.der"
check "Idempotency-Key -> 201" [ "$STATUS" = 201 ]
cp "$W/body" "$W/d.first"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Idempotency-Key: dev-2' --data-binary @"$W/d.der"
check "Idempotency-Key retry -> 200, same chain" sh -c "[ '$STATUS' = 200 ] && cmp -s '$W/body' '$W/d.first'"

# ---- batch with a bad item ----
jq -n --rawfile e "$W/e.pem" --rawfile f "$W/f.pem" \
    '{items: [{csr: $e, request_id: "bat-1"}, {csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, {csr: $f, request_id: "bat-3"}]}' > "$W/batch.json"
call operator POST /v1/cas/pai-8000/dacs/batch -H 'Content-Type: application/json' --data-binary @"$W/batch.json"
check "batch 200" [ "$STATUS" = 200 ]
check "batch: items 0 and 2 issued, 1 failed alone" jq -e '.results[0].status == 201 and
    .results[2].status == 201 and .results[1].status == 400 and
    (.results[1].problem.code | startswith("csr-")) and .issued == 2 and .failed == 1 and
    (.chain | length == 1)' "$W/body"
# the reply is written by hand (not jansson): still compact JSON with sorted keys, byte for byte
check "batch reply is compact JSON with sorted keys" sh -c \
    "jq -cS . '$W/body' | tr -d '\n' | cmp -s - '$W/body'"
check "batch: issued items carry PEM DACs, serials, receipts" jq -e '[.results[0], .results[2]] |
    all(.certificate | startswith("-----BEGIN CERTIFICATE-----\n")) and
    all(.serial | test("^[4-7][0-9a-f]{31}$")) and all(.receipt.seq > 0) and
    all(.receipt.entry_hash | test("^[0-9a-f]{64}$")) and all(.replayed == false)' "$W/body"
jq -r '.results[0].certificate' "$W/body" > "$W/bat-1.pem"
check "batch: the first DAC verifies DAC -> PAI -> PAA" \
    openssl verify -x509_strict -CAfile "$W/paa.pem" -untrusted "$W/pai.pem" "$W/bat-1.pem"
jq -n '{items: [range(0; 1001) | {csr: "x"}]}' > "$W/toobig.json"
call operator POST /v1/cas/pai-8000/dacs/batch -H 'Content-Type: application/json' --data-binary @"$W/toobig.json"
check "1001 items refused (413)" sh -c "[ '$STATUS' = 413 ]"

# ---- the hsmca client against the daemon ----
tlsargs="--cert $W/tls/operator.pem --key $W/tls/operator.key --cacert $W/tls/ca.pem"
# shellcheck disable=SC2086
check "hsmca issue (JSON, request id) exits 0" "$HSMCA_BIN" issue --url "https://127.0.0.1:$PORT" \
    --ca pai-8000 --csr "$W/n.der" --request-id cli-1 --out "$W/cli.pem" $tlsargs
check "hsmca issue wrote DAC and PAI" [ "$(grep -c 'BEGIN CERTIFICATE' "$W/cli.pem")" = 2 ]
# shellcheck disable=SC2086
"$HSMCA_BIN" issue --url "https://127.0.0.1:$PORT" --ca pai-8000 --csr - --request-id cli-1 \
    --out - $tlsargs < "$W/n.der" > "$W/cli-stdout.pem" 2> "$W/cli-stdout.err" || true
check "hsmca issue --csr - --out -: the CSR from stdin, the same DAC (replayed) on stdout" \
    sh -c "cmp -s '$W/cli.pem' '$W/cli-stdout.pem' && grep -q replayed '$W/cli-stdout.err' && [ ! -e ./- ]"
mkdir -p "$W/csrs" "$W/dacs"
cp "$W/o.der" "$W/csrs/line-7.der"
# shellcheck disable=SC2086
check "hsmca issue-batch exits 0" "$HSMCA_BIN" issue-batch --url "https://127.0.0.1:$PORT" \
    --ca pai-8000 --dir "$W/csrs" --out "$W/dacs" $tlsargs
check "hsmca issue-batch wrote line-7.pem" \
    openssl verify -CAfile "$W/paa.pem" -untrusted "$W/pai.pem" "$W/dacs/line-7.pem"
check "hsmca issue-batch kept the DAC's audit receipt" jq -e -s 'length == 1 and
    .[0].request_id == "line-7" and .[0].seq > 0 and (.[0].entry_hash | test("^[0-9a-f]{64}$"))' \
    "$W/dacs/receipts.jsonl"
call auditor GET /v1/audit/extract
cp "$W/body" "$W/receipts-extract.tar"
check "an auditor finds the factory's receipts in the extract (hsmca audit check-receipts)" \
    sh -c "'$HSMCA_BIN' audit check-receipts --extract '$W/receipts-extract.tar' \
        '$W/dacs/receipts.jsonl' | grep -q '^all 1 receipts are in the log'"
jq -c '.entry_hash = "00\(.entry_hash[2:])"' "$W/dacs/receipts.jsonl" > "$W/forged-receipts.jsonl"
st=0
"$HSMCA_BIN" audit check-receipts --extract "$W/receipts-extract.tar" \
    "$W/forged-receipts.jsonl" > "$W/forged.out" 2>&1 || st=$?
check "a receipt whose entry is not in the log is reported MISSING (exit 1)" \
    sh -c "[ $st = 1 ] && grep -q MISSING '$W/forged.out'"

# ---- quota: 10 per minute (9 issued so far) ----
seen=""
for n in g h i j k l m; do
    call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
        --data-binary @"$W/$n.der"
    if [ "$STATUS" = 429 ]; then
        seen=$(body_code)
        break
    fi
done
check "per-minute quota -> 429 quota-exceeded" [ "$seen" = quota-exceeded ]

# ---- inventory, metrics ----
call auditor GET '/v1/cas/pai-8000/certificates?limit=1000'
check "inventory lists dev-1 once" jq -e '[.items[] | select(.request_id == "dev-1")] | length == 1' "$W/body"
call operator POST /v1/cas/pai-8000/deactivation
expect "an operator may not deactivate" 403 http-forbidden
call admin POST /v1/cas/pai-8000/deactivation
check "admin deactivates without a quorum" jq -e '.active == false' "$W/body"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/m.der"
expect "after deactivation" 409 ca-inactive
call auditor GET /metrics
check "metrics count issued DACs" sh -c "grep -Eq '^hsmca_dacs_issued_total\\{ca=\"pai-8000\"\\} ([5-9]|[1-9][0-9])' '$W/body'"
# every DAC signed is timed (replays sign nothing), and so is every audit group commit
check "metrics time each DAC signature" awk '
    /^hsmca_dacs_issued_total\{ca="pai-8000"\}/ { issued = $2 }
    /^hsmca_dac_sign_duration_seconds_count/ { signed = $2 }
    /^hsmca_dac_sign_duration_seconds_bucket\{le="\+Inf"\}/ { inf = $2 }
    END { exit !(signed >= 5 && signed <= issued && inf == signed) }' "$W/body"
check "metrics time each audit commit" awk '
    /^hsmca_audit_commits_total/ { commits = $2 }
    /^hsmca_audit_commit_duration_seconds_count/ { timed = $2 }
    /^hsmca_audit_commit_duration_seconds_sum/ { sum = $2 }
    END { exit !(timed >= 5 && timed <= commits && sum > 0) }' "$W/body"

check "SIGTERM stops with status 0" stop_daemon
finish
