#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# http.sh -- the HTTP behaviour of hsmcad against real SoftHSM tokens: problem+json refusals
# (404, 405, 413 by Content-Length and by chunked body, 415, 400), health, readiness (tokens,
# store, audit chain) and Prometheus metrics, the Audit-Receipt header on audited responses and
# its entry in the log, the inventory (paging by cursor, status and time filters, JSON and CSV by
# Accept and its q-values, with Vary), the build and audit batch-size series of /metrics,
# the CRL, a revocation (and its refusals), a graceful SIGTERM stop and a restart that reopens the
# verified audit chain.
. "$(dirname "$0")/lib.sh"

setup_tokens
setup_tls
write_config
openssl ca -help >/dev/null 2>&1 || true
# a CRL to serve (any DER CRL: the route serves the stored bytes)
openssl crl -help >/dev/null 2>&1 || true
printf '' > "$W/index.txt"
cat > "$W/ca.cnf" <<CNF
[ca]
default_ca = c
[c]
database = $W/index.txt
crlnumber = $W/crlnumber
default_md = sha256
default_crl_days = 30
CNF
echo 01 > "$W/crlnumber"
openssl ca -config "$W/ca.cnf" -gencrl -keyfile "$W/tls/ca.key" -cert "$W/tls/ca.pem" \
    -out "$W/crl.pem" 2>/dev/null
openssl crl -in "$W/crl.pem" -outform DER -out "$W/crl.der"
seed 25 "$W/crl.der"
start_daemon

# ---- liveness, readiness, metrics ----
call operator GET /healthz
check "healthz 200 ok" [ "$STATUS" = 200 ]
check "healthz body" jq -e '.status == "ok"' "$W/body"
check "healthz has no receipt (not audited)" [ -z "$(header audit-receipt)" ]
call operator GET /readyz
# paa-1's token hsmca-paa does not exist in this test: not ready, and the check says which
expect "readyz with a CA token absent" 503 not-ready
check "readyz names the absent token" jq -e '.checks.ca_tokens["paa-1"] == "missing" and
    .checks.token_faults[0].token == "hsmca-paa" and .checks.token_faults[0].ca == "paa-1" and
    .checks.ca_tokens["pai-8000"] == "ok" and .checks.audit_token == "ok" and
    .checks.store == "ok" and .checks.audit_chain == "verified"' "$W/body"
call auditor GET /metrics
check "metrics 200" [ "$STATUS" = 200 ]
check "metrics content type" sh -c "tr -d '\r' < '$W/headers' | grep -qi '^content-type: text/plain; version=0.0.4'"
for m in hsmca_http_requests_total hsmca_http_request_duration_seconds_bucket \
    hsmca_dac_sign_duration_seconds_bucket hsmca_audit_commit_duration_seconds_bucket \
    hsmca_audit_commits_total hsmca_audit_batch_size_bucket hsmca_dacs_issued_total \
    hsmca_store_checkpoints_total hsmca_store_wal_rewinds_total hsmca_ready; do
    check "metrics has $m" grep -q "^# TYPE ${m%_bucket}" "$W/body"
done
check "metrics counts readyz 503" grep -q 'hsmca_http_requests_total{route="health.ready",status="503"} 1' "$W/body"
# the build: the daemon's version, a commit (or "unknown"), the OpenSSL it runs with
bi_version=$("$HSMCAD_BIN" --version | awk '{print $2}')
bi_openssl=$(openssl version | awk '{print $2}')
check "hsmca_build_info: version, commit, OpenSSL" grep -Eq \
    "^hsmca_build_info\\{version=\"$bi_version\",commit=\"([0-9a-f]{12}(-dirty)?|unknown)\",openssl=\"$bi_openssl\"\\} 1\$" \
    "$W/body"
# the audit batch size is a histogram: cumulative buckets, +Inf = count, one per group commit of
# entries (checkpoints and the genesis entry commit on their own, outside the histogram)
check "hsmca_audit_batch_size is a histogram of the commits" awk '
    /^# TYPE hsmca_audit_batch_size histogram$/ { typed = 1 }
    /^hsmca_audit_batch_size_bucket/ { if ($2 < last) bad = 1; last = $2 }
    /^hsmca_audit_batch_size_bucket\{le="\+Inf"\}/ { inf = $2 }
    /^hsmca_audit_batch_size_count/ { count = $2 }
    /^hsmca_audit_batch_size_sum/ { sum = $2 }
    /^hsmca_audit_commits_total/ { commits = $2 }
    END { exit !(typed && !bad && inf == count && count <= commits && count > 0 && sum >= count) }' \
    "$W/body"

# ---- a small reply leaves in one TLS record: header and body together ----
# s_client -msg prints each record's inner content type; 17 is application data. The first reply
# is made at once; the second (a refusal: this test's daemon issues no DACs) after its audit entry
# is durable, on a resumed request, and then the connection closes.
(printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
    sleep 0.5
    printf 'POST /v1/cas/%s/dacs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n' "$PAI"
    printf 'Content-Type: application/pkcs10\r\nContent-Length: 3\r\n\r\nxyz'
    sleep 0.5) | timeout 10 openssl s_client -quiet -msg -connect "127.0.0.1:$PORT" \
    -CAfile "$W/tls/ca.pem" -cert "$W/tls/operator.pem" -key "$W/tls/operator.key" \
    > "$W/records" 2>/dev/null || true
check "two small replies on one connection" [ "$(grep -o 'HTTP/1.1 [24]0[04] ' "$W/records" |
    tr -d '\n')" = "HTTP/1.1 200 HTTP/1.1 404 " ]
check "each in one TLS record" [ "$(grep -A1 '^<<< TLS 1.3, InnerContent' "$W/records" |
    grep -c '^ *17$')" = 2 ]
check "the second reply whole" grep -q '"type":"urn:hsmca:problem:ca-not-found"}' "$W/records"

# ---- receipts ----
call admin GET /v1/cas
check "GET /v1/cas 200" [ "$STATUS" = 200 ]
check "two CAs listed" jq -e '.cas | map(.id) == ["paa-1","pai-8000"]' "$W/body"
rcpt=$(header audit-receipt)
check "Audit-Receipt seq:hash" sh -c "echo '$rcpt' | grep -Eq '^[0-9]+:[0-9a-f]{64}$'"
call admin GET /v1/cas/pai-8000
check "GET /v1/cas/pai-8000" jq -e '.id == "pai-8000" and .kind == "pai" and .vid == "FFF1" and .pid == "8000"' "$W/body"
call admin GET /v1/cas/nope
expect "unknown CA" 404 ca-not-found
check "refusal carries a receipt too" sh -c "[ -n \"\$(tr -d '\r' < '$W/headers' | grep -i '^audit-receipt:')\" ]"

# ---- refusals ----
call admin DELETE /v1/cas
expect "DELETE /v1/cas" 405 http-method-not-allowed
check "405 names the allowed methods" [ "$(header allow)" = GET ]
call admin GET /v1/cas/pai-8000/certificates -G --data-urlencode 'bogus=1'
expect "unknown query parameter" 400 http-bad-query
head -c 70000 /dev/zero | tr '\0' 'a' > "$W/big"
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary @"$W/big"
expect "70 kB body (Content-Length)" 413 http-body-too-large
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    -H 'Transfer-Encoding: chunked' --data-binary @"$W/big"
expect "70 kB chunked body" 413 http-body-too-large
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: text/plain' --data-binary 'x'
expect "text/plain body" 415 http-unsupported-media-type
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary '{"serial":"01","extra":1}'
expect "unknown JSON member" 400 http-bad-request
check "problem instance is the request id" jq -e '.instance | startswith("urn:hsmca:request:")' "$W/body"

# ---- inventory ----
call auditor GET '/v1/cas/pai-8000/certificates?limit=10'
check "page 1: 10 items" jq -e '.items | length == 10' "$W/body"
next=$(jq -r .next "$W/body")
check "page 1 has a cursor" [ "$next" != null ]
check "Next-Cursor header" [ "$(header next-cursor)" = "$next" ]
check "item fields" jq -e '.items[0] | (.serial|test("^[0-9a-f]{32}$")) and .vid == "FFF1" and
    .pid == "8000" and .status == "issued" and .request_id == "seed-0" and
    (.sha256|test("^[0-9a-f]{64}$")) and .not_before == "2023-11-14T22:13:20Z"' "$W/body"
all=$(jq -r '.items[].serial' "$W/body")
while [ "$next" != null ]; do
    call auditor GET "/v1/cas/pai-8000/certificates?limit=10&cursor=$next"
    all="$all
$(jq -r '.items[].serial' "$W/body")"
    next=$(jq -r .next "$W/body")
done
check "paging returns 25 distinct certificates" [ "$(echo "$all" | sort -u | wc -l)" = 25 ]
call auditor GET '/v1/cas/pai-8000/certificates?from=1700000010000&to=1700000014000'
check "time filter [10 s, 14 s] -> 5" jq -e '.items | length == 5 and .[0].request_id == "seed-10"' "$W/body"
call auditor GET '/v1/cas/pai-8000/certificates?format=csv&limit=1000'
check "CSV 200" [ "$STATUS" = 200 ]
check "CSV header" [ "$(head -1 "$W/body")" = "serial,vid,pid,not_before,not_after,sha256,status,request_id,issued_ms" ]
check "CSV rows" [ "$(tail -n +2 "$W/body" | wc -l)" = 25 ]
call auditor GET '/v1/cas/pai-8000/certificates' -H 'Accept: text/csv'
check "CSV by Accept" sh -c "head -1 '$W/body' | grep -q '^serial,vid'"
check "the inventory says Vary: Accept" [ "$(header vary)" = Accept ]
call auditor GET '/v1/cas/pai-8000/certificates' -H 'Accept: application/json;q=0.2, text/csv;q=0.8'
check "CSV by q-value" sh -c "head -1 '$W/body' | grep -q '^serial,vid'"
call auditor GET '/v1/cas/pai-8000/certificates' -H 'Accept: text/csv;q=0.2, */*;q=0.8'
check "JSON by q-value (a wildcard above CSV)" jq -e '.items | length > 0' "$W/body"
call auditor GET '/v1/cas/pai-8000/certificates' -H 'Accept: text/csv;q=0, application/json;q=0'
expect "neither type acceptable" 406 http-not-acceptable
check "the 406 says Vary: Accept too" [ "$(header vary)" = Accept ]
call auditor GET '/v1/cas/pai-8000/certificates?limit=1001'
expect "limit 1001" 400 http-bad-query
call auditor GET '/v1/cas/pai-8000/certificates?limit=1000'
check "limit 1000 accepted" [ "$STATUS" = 200 ]

# ---- revocation ----
serial=$(jq -r '.items[3].serial' "$W/body")
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$serial\",\"reason\":\"keyCompromise\"}"
check "revocation 200" [ "$STATUS" = 200 ]
check "revocation body" jq -e ".serial == \"$serial\" and .status == \"revoked\" and .reason == \"keyCompromise\"" "$W/body"
check "revocation receipt" sh -c "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: [0-9]+:[0-9a-f]{64}$'"
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$serial\"}"
expect "revoke twice" 409 already-revoked
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary '{"serial":"0badbad0"}'
expect "revoke unknown serial" 404 serial-unknown
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$serial\",\"reason\":\"bogus\"}"
expect "bad reason" 400 crl-reason-invalid
call auditor GET '/v1/cas/pai-8000/certificates?status=revoked'
check "revoked filter" jq -e ".items | length == 1 and .[0].serial == \"$serial\" and .[0].reason == \"keyCompromise\"" "$W/body"

# ---- CRL ----
call operator GET /v1/cas/pai-8000/crl
check "CRL 200 DER" sh -c "[ '$STATUS' = 200 ] && cmp -s '$W/body' '$W/crl.der'"
check "CRL content type" [ "$(header content-type)" = application/pkix-crl ]

# ---- audit extract: verifies offline, and holds the receipts this test was given ----
call admin GET /v1/cas/pai-8000
r1=$(header audit-receipt)
call auditor GET /v1/audit/extract
check "extract 200 tar" sh -c "[ '$STATUS' = 200 ] && [ \"\$(tr -d '\r' < '$W/headers' | sed -n 's/^[Cc]ontent-[Tt]ype: //p')\" = application/x-tar ]"
mkdir -p "$W/x"
check "extract unpacks" tar -xf "$W/body" -C "$W/x"
cp "$W/body" "$W/extract.tar"
check "hsmca audit verify takes the tar as downloaded" "$HSMCA_BIN" audit verify "$W/extract.tar"
xdir=$(find "$W/x" -name verify.sh -exec dirname {} \; | head -1)
check "hsmca audit verify accepts the extract" "$HSMCA_BIN" audit verify "$xdir"
check "the extract's verify.sh accepts it (sh, sha256sum, jq, openssl)" sh -c "cd '$xdir' && sh ./verify.sh >/dev/null"
echo "$r1" | awk -F: '{printf "{\"seq\": %s, \"entry_hash\": \"%s\"}\n", $1, $2}' > "$W/receipts"
check "a receipt from a response is in the verified extract" \
    "$HSMCA_BIN" audit check-receipts --extract "$xdir" "$W/receipts"
call auditor GET '/v1/audit/extract?from=5&to=2'
expect "extract to < from" 400 http-bad-query
call admin GET /v1/audit/extract
expect "an admin may not take extracts" 403 http-forbidden

# ---- stop, restart on the verified chain ----
check "SIGTERM stops with status 0" stop_daemon
check "the log has the revocation" eval "store_sql 'SELECT line FROM audit_entries' 2>/dev/null | grep -q cert.revoke"
write_config ', "refusals_per_minute": 2'
sed -i 's/"refusals_per_minute": 1000, //' "$W/hsmcad.json"
start_daemon
call admin GET /v1/cas
check "restart: serving again" [ "$STATUS" = 200 ]
# refusals are audited at most refusals_per_minute (here 2) per client and minute
n=0
for i in 1 2 3 4; do
    call unbound GET /v1/cas
    [ -n "$(header audit-receipt)" ] && n=$((n + 1))
done
check "4 refusals from one client: 2 audited, the rest only counted" [ "$n" = 2 ]
call none GET /v1/cas
check "no certificate from the same address shares its budget (by address)" \
    [ -z "$(header audit-receipt)" ]
call admin DELETE /v1/cas
check "another client has its own budget" [ -n "$(header audit-receipt)" ]
stop_daemon

# ---- a tampered log: the daemon refuses to start and says why ----
if store_is_pg; then
    store_sql "UPDATE audit_entries SET line = convert_to(replace(convert_from(line, 'UTF8'), '\"kid\":\"\"', '\"kid\":\"00\"'), 'UTF8') WHERE seq = (SELECT max(seq) FROM audit_entries)"
else
    store_sql "UPDATE audit_entries SET line = CAST(replace(CAST(line AS TEXT), '\"kid\":\"\"', '\"kid\":\"00\"') AS BLOB) WHERE seq = (SELECT max(seq) FROM audit_entries)"
fi
st=0
timeout 30 "$HSMCAD_BIN" --config "$W/hsmcad.json" --port-file "$W/port2" 2> "$W/tampered.log" || st=$?
check "tampered log: start-up fails (status 1)" [ "$st" = 1 ]
check "tampered log: the message names the audit failure" grep -Eq 'audit log: audit-(chain-broken|checkpoint-invalid|anchor-mismatch)' "$W/tampered.log"
check "tampered log: never listened" [ ! -s "$W/port2" ]

# ---- config and PIN file checks ----
check "--check-config accepts the test config" "$HSMCAD_BIN" --check-config --config "$W/hsmcad.json"
sed 's/"timeout_s"/"timeout_secs"/' "$W/hsmcad.json" > "$W/bad.json"
st=0
"$HSMCAD_BIN" --check-config --config "$W/bad.json" 2> "$W/bad.log" || st=$?
check "an unknown key is refused, named" sh -c "[ $st = 1 ] && grep -q 'limits.timeout_secs: unknown key' '$W/bad.log'"
chmod 644 "$W/audit.pin"
st=0
timeout 30 "$HSMCAD_BIN" --config "$W/hsmcad.json" --port-file "$W/port3" 2> "$W/pin.log" || st=$?
check "a group/world-readable PIN file stops start-up" sh -c "[ $st = 1 ] && grep -q pin-file-mode '$W/pin.log'"
finish
