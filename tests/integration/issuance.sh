#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# issuance.sh -- the DAC routes against a real PAI (PAA and PAI keys made in SoftHSM tokens, the
# PAI registered in the store) that no quorum has activated: every CA starts inactive, so a DER
# or JSON request is 409 ca-inactive with a receipt (a dry run too: the engine lints with the
# active issuer),
# an operator bound to another PAI is 403, a batch fails each item alone (the malformed one with
# its own csr-* code), 1001 items are 413, malformed JSON, differing Idempotency-Key/request_id
# and an unacceptable Accept are refused, and /metrics counts the refusals per CA and per code.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
printf '{"pai-8000": {"per_minute": 8}}\n' > "$W/quotas.json"
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\", \"quotas\": \"quotas.json\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json" \
    --no-ceremony
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
for n in a b c; do csr "$n"; done

# ---- inactive, dry run ----
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/a.der"
expect "inactive PAI" 409 ca-inactive
check "refusal receipt" sh -c "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: [0-9]+:[0-9a-f]{64}'"
call operator POST '/v1/cas/pai-8000/dacs?dry_run=true' -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/a.der"
expect "dry run on an inactive PAI (the engine lints with the active issuer)" 409 ca-inactive
call operator2 POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/a.der"
expect "operator bound to another PAI" 403 http-ca-forbidden

call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary "$(json_csr b dev-1)"
expect "JSON request, inactive PAI" 409 ca-inactive
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary '{"csr": 1}'
expect "csr not a string" 400 http-bad-request
check "refusal of malformed JSON has a receipt" sh -c "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: '"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    -H 'Idempotency-Key: other' --data-binary "$(json_csr b dev-1)"
expect "Idempotency-Key differs from request_id" 400 http-bad-request
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: text/html' --data-binary @"$W/a.der"
expect "Accept text/html" 406 http-not-acceptable
call operator POST /v1/cas/paa-1/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/a.der"
expect "operator not bound to the PAA" 403 http-ca-forbidden

# ---- batch: each item alone ----
jq -n --rawfile a "$W/a.pem" --rawfile c "$W/c.pem" \
    '{items: [{csr: $a, request_id: "bat-1"}, {csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, {csr: $c}]}' > "$W/batch.json"
call operator POST /v1/cas/pai-8000/dacs/batch -H 'Content-Type: application/json' --data-binary @"$W/batch.json"
check "batch 200" [ "$STATUS" = 200 ]
check "batch: a result per item, the malformed one with its own code" jq -e '
    (.results | length == 3) and .results[0].problem.code == "ca-inactive" and
    (.results[1].problem.code | startswith("csr-")) and .results[2].problem.code == "ca-inactive" and
    .failed == 3 and .issued == 0 and ([.results[].index] == [0,1,2])' "$W/body"
call operator POST '/v1/cas/pai-8000/dacs/batch?dry_run=true' -H 'Content-Type: application/json' --data-binary @"$W/batch.json"
check "batch dry run: every item answered alone" jq -e '(.results | length == 3) and
    .results[0].problem.code == "ca-inactive" and .failed == 3' "$W/body"
jq -n '{items: [range(0; 1001) | {csr: "x"}]}' > "$W/toobig.json"
call operator POST /v1/cas/pai-8000/dacs/batch -H 'Content-Type: application/json' --data-binary @"$W/toobig.json"
expect "1001 items" 413 batch-too-large
call operator POST /v1/cas/pai-8000/dacs/batch -H 'Content-Type: application/json' --data-binary '{"items": []}'
expect "empty batch" 400 batch-malformed

# a refusal flood: every request answered, only the first refusals per minute get entries (the
# engine's limiter answers the rest on the request's own thread, while it is suspended)
with=0
without=0
i=0
while [ $i -lt 30 ]; do
    call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
        --data-binary @"$W/a.der"
    [ "$STATUS" = 409 ] || break
    if [ -n "$(header audit-receipt)" ]; then with=$((with + 1)); else without=$((without + 1)); fi
    i=$((i + 1))
done
check "30 refusals answered, the flood beyond the burst without entries" \
    sh -c "[ $i = 30 ] && [ $with -ge 1 ] && [ $without -ge 1 ]"

call auditor GET /metrics
check "metrics count refusals of pai-8000" sh -c "grep -Eq '^hsmca_dacs_refused_total\\{ca=\"pai-8000\"\\} [1-9]' '$W/body'"
check "metrics count refusals by code" sh -c "grep -Eq '^hsmca_dacs_refused_by_code_total\\{code=\"ca-inactive\"\\} [1-9]' '$W/body' &&
    grep -Eq '^hsmca_dacs_refused_by_code_total\\{code=\"http-not-acceptable\"\\} 1\$' '$W/body' &&
    grep -Eq '^hsmca_dacs_refused_by_code_total\\{code=\"batch-too-large\"\\} 1\$' '$W/body'"
call admin GET /v1/cas/pai-8000
check "the PAI's certificate is served" sh -c "jq -r .certificate '$W/body' | openssl x509 -noout -subject | grep -q 'Matter'"
check "the PAI is shown inactive" jq -e '.issuance.active == false' "$W/body"

check "SIGTERM stops with status 0" stop_daemon
finish
