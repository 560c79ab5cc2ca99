#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# revocation.sh -- revocation end to end against SoftHSM tokens and the real daemon
# (docs/revocation.md): no CRL before the PAI's key is reachable; a quorum activation signs the
# PAI's first CRL in its token; two DACs issued, one revoked (keyCompromise, invalidityDate): 200,
# twice 409 already-revoked, an unknown serial 404 serial-unknown; the CRL is re-signed within
# the batch delay, verifies with `openssl crl -CAfile` against the PAI, lists the serial with its
# reason and invalidity date, and `openssl verify -crl_check` rejects the revoked DAC and accepts
# the other; the plain-HTTP listener serves the same CRL and the CA certificates without a client
# certificate, with ETag / Last-Modified and 304s; /readyz and /metrics show the CRL; then the
# PAA's CRL is signed by quorum (crl.sign) and accepts the PAI, the PAI is revoked by quorum
# (ca.revoke): it stops issuing at once, its window closes, a new activation is refused, and the
# PAA's new CRL rejects it; every revocation and CRL signature is an audit entry; `hsmca dcl
# revocation-point` gives the DCL record of each CA.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
cat > "$W/crl.json" <<'JSON'
{"default": {"next_update_s": 2592000, "refresh_before_s": 604800, "warn_before_s": 259200,
             "batch_delay_ms": 300, "url": "http://127.0.0.1/crl/{ca}.crl"},
 "paa-1": {"warn_before_s": 31536000}}
JSON
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\", \"crl_policy\": \"crl.json\",
  \"publish_listen\": \"127.0.0.1:0\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json" \
    --paa-quorum
start_daemon
PUB=$(cat "$W/port.publish")

csr() { # name -> $W/name.der
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/$1.key" -outform DER -out "$W/$1.der" 2>/dev/null
}
crl_number() { # ca -> the daemon's current CRL number of ca
    call auditor GET "/v1/cas/$1"
    jq -r '.crl.number' "$W/body"
}
wait_crl() { # ca number: until ca's CRL number is at least number (bounded: 10 s)
    i=0
    while [ "$(crl_number "$1")" -lt "$2" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ "$(crl_number "$1")" -ge "$2" ]
}
audit_count() { # action -> number of entries with that action
    store_sql \
        "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"action\":\"$1\"%'"
}
get_crl() { # ca out.der
    call auditor GET "/v1/cas/$1/crl" -H 'Accept: application/pkix-crl'
    cp "$W/body" "$2"
}

# ---- before any window: no CRL ----
call auditor GET /v1/cas/pai-8000/crl -H 'Accept: application/pkix-crl'
expect "no CRL before the PAI's key was ever reachable" 404 crl-none
st=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PUB/crl/pai-8000.crl")
check "plain listener: no CRL yet -> 404" [ "$st" = 404 ]

# ---- activation signs the first CRL ----
until=$(( $(date +%s) * 1000 + 600000 ))
quorum ca.activate "{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":100}"
check "ca.activate executed" jq -e '.executed == true' "$W/body"
check "activation signed CRL 1" [ "$(crl_number pai-8000)" = 1 ]

csr a
csr b
for n in a b; do
    call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
        -H 'Accept: application/json' --data-binary @"$W/$n.der"
    check "DAC $n issued" [ "$STATUS" = 201 ]
    jq -r .certificate "$W/body" > "$W/$n.dac.pem"
    jq -r .serial "$W/body" > "$W/$n.serial"
done
call auditor GET /v1/cas/pai-8000
jq -r .certificate "$W/body" > "$W/pai.pem"
serial_a=$(cat "$W/a.serial")

# ---- revocation semantics ----
inval=$(( $(date +%s) * 1000 - 3600000 ))
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$serial_a\",\"reason\":\"keyCompromise\",\"invalidity_date\":$inval}"
check "revoke DAC a -> 200 revoked" sh -c "[ '$STATUS' = 200 ] && jq -e '.status == \"revoked\" and .reason == \"keyCompromise\" and .invalidity_ms == $inval' '$W/body' >/dev/null"
check "revocation receipt" sh -c "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: [0-9]+:[0-9a-f]{64}'"
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$serial_a\"}"
expect "revoking DAC a twice" 409 already-revoked
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary '{"serial":"0102030405060708090a0b0c0d0e0f10"}'
expect "an unknown serial" 404 serial-unknown
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$(cat "$W/b.serial")\",\"reason\":\"removeFromCRL\"}"
expect "a reason only delta CRLs use" 400 crl-reason-invalid
future=$(( $(date +%s) * 1000 + 3600000 ))
call admin POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$(cat "$W/b.serial")\",\"invalidity_date\":$future}"
expect "an invalidity date in the future" 400 crl-date-invalid
call admin POST /v1/cas/pai-9999/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$serial_a\"}"
expect "an unknown CA" 404 ca-not-found
call operator POST /v1/cas/pai-8000/revocations -H 'Content-Type: application/json' \
    --data-binary "{\"serial\":\"$(cat "$W/b.serial")\"}"
expect "an operator may not revoke" 403 http-forbidden
check "the refusals changed nothing: one revoked" eval "[ \"\$(store_sql 'SELECT count(*) FROM certificates WHERE revoked_ms IS NOT NULL')\" = 1 ]"

# ---- the re-signed CRL ----
check "CRL re-signed within the batch delay" wait_crl pai-8000 2
get_crl pai-8000 "$W/pai.crl.der"
check "GET /crl is application/pkix-crl" [ "$(header content-type)" = application/pkix-crl ]
openssl crl -inform DER -in "$W/pai.crl.der" -out "$W/pai.crl.pem"
check "openssl crl -CAfile PAI: verify OK" sh -c "openssl crl -in '$W/pai.crl.pem' -CAfile '$W/pai.pem' -noout 2>&1 | grep -q 'verify OK'"
openssl crl -in "$W/pai.crl.pem" -noout -text > "$W/pai.crl.txt"
sa_up=$(echo "$serial_a" | tr 'a-f' 'A-F')
check "the CRL lists DAC a's serial" grep -q "Serial Number: $sa_up" "$W/pai.crl.txt"
check "with reason Key Compromise" grep -q "Key Compromise" "$W/pai.crl.txt"
check "with its invalidity date" grep -q "Invalidity Date" "$W/pai.crl.txt"
check "CRL Number 2" sh -c "grep -A1 'X509v3 CRL Number' '$W/pai.crl.txt' | grep -qx ' *2'"
pai_skid=$(openssl x509 -in "$W/pai.pem" -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' ')
check "AKID = the PAI's SKID" sh -c "grep -A1 'Authority Key Identifier' '$W/pai.crl.txt' | tail -1 | tr -d ' ' | sed 's/^keyid://' | grep -qx '$pai_skid'"
if grep -q "Issuing Distribution Point" "$W/pai.crl.txt"; then
    bad "an issuing distribution point although the policy asks for none"
else
    ok "no issuing distribution point by default (the DACs name no CRL distribution point)"
fi
if openssl verify -crl_check -CAfile "$W/paa.pem" -untrusted "$W/pai.pem" \
    -CRLfile "$W/pai.crl.pem" "$W/a.dac.pem" > "$W/verify.out" 2>&1; then
    bad "openssl verify -crl_check accepted the revoked DAC"
else
    check "openssl verify -crl_check rejects revoked DAC a" grep -q "certificate revoked" "$W/verify.out"
fi
check "openssl verify -crl_check accepts DAC b" openssl verify -crl_check -CAfile "$W/paa.pem" \
    -untrusted "$W/pai.pem" -CRLfile "$W/pai.crl.pem" "$W/b.dac.pem"

# ---- publication over plain HTTP, no client certificate ----
curl -sS -D "$W/ph" -o "$W/pub.crl" "http://127.0.0.1:$PUB/crl/pai-8000.crl"
check "plain HTTP serves the same CRL" cmp -s "$W/pub.crl" "$W/pai.crl.der"
ph() { tr -d '\r' < "$W/ph" | sed -n "s/^$1: //Ip" | head -1; }
etag=$(ph etag)
lm=$(ph last-modified)
check "plain HTTP: application/pkix-crl, ETag, Last-Modified" sh -c "[ '$(ph content-type)' = application/pkix-crl ] && [ -n '$etag' ] && [ -n '$lm' ]"
st=$(curl -sS -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "http://127.0.0.1:$PUB/crl/pai-8000.crl")
check "If-None-Match -> 304" [ "$st" = 304 ]
st=$(curl -sS -o /dev/null -w '%{http_code}' -H "If-Modified-Since: $lm" "http://127.0.0.1:$PUB/crl/pai-8000.crl")
check "If-Modified-Since -> 304" [ "$st" = 304 ]
st=$(curl -sS -o /dev/null -w '%{http_code}' -H 'If-None-Match: "0000"' "http://127.0.0.1:$PUB/crl/pai-8000.crl")
check "another ETag -> 200" [ "$st" = 200 ]
curl -sS -o "$W/pub.pai.der" "http://127.0.0.1:$PUB/ca/pai-8000.crt"
check "plain HTTP serves the PAI certificate (DER)" sh -c "[ \"\$(openssl x509 -inform DER -in '$W/pub.pai.der')\" = \"\$(openssl x509 -in '$W/pai.pem')\" ]"
curl -sS -o "$W/pub.paa.pem" "http://127.0.0.1:$PUB/ca/paa-1.pem"
check "plain HTTP serves the PAA certificate (PEM)" sh -c "[ \"\$(openssl x509 -in '$W/pub.paa.pem')\" = \"\$(openssl x509 -in '$W/paa.pem')\" ]"
curl -sS -I -o "$W/ph-head" "http://127.0.0.1:$PUB/crl/pai-8000.crl"
check "HEAD: the same headers, the CRL's length" sh -c "tr -d '\r' < '$W/ph-head' | grep -qix 'content-length: $(wc -c < "$W/pai.crl.der")' && tr -d '\r' < '$W/ph-head' | grep -qix 'etag: $etag'"
st=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PUB/v1/cas")
check "plain HTTP serves nothing of the API -> 404" [ "$st" = 404 ]
st=$(curl -sS -o /dev/null -w '%{http_code}' -X POST --data x "http://127.0.0.1:$PUB/crl/pai-8000.crl")
check "plain HTTP: POST -> 405" [ "$st" = 405 ]
st=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PUB/crl/..%2fetc.crl")
check "plain HTTP: a bad CA id -> 404" [ "$st" = 404 ]

# ---- readiness and metrics ----
call auditor GET /readyz
check "/readyz: the PAI's CRL is fresh, the PAA has none yet (a warning, still ready)" jq -e '.status == "ready" and .checks.crls["pai-8000"].status == "fresh" and .checks.crls["paa-1"].status == "none" and .checks.crl_warnings == 1' "$W/body"
call auditor GET /metrics
check "/metrics: hsmca_crl_number and hsmca_crl_warning" sh -c "grep -q '^hsmca_crl_number{ca=\"pai-8000\"} 2' '$W/body' && grep -q '^hsmca_crl_warning{ca=\"paa-1\"} 1' '$W/body'"

# ---- the DCL record ----
"$HSMCA_BIN" dcl revocation-point --url "https://127.0.0.1:$PORT" --ca pai-8000 \
    --cert "$W/tls/auditor.pem" --key "$W/tls/auditor.key" --cacert "$W/tls/ca.pem" \
    > "$W/rp.json"
upskid=$(echo "$pai_skid" | tr -d ':' | tr 'a-f' 'A-F')
check "dcl revocation-point: the PAI's record" jq -e --arg skid "$upskid" '.vid == 65521 and .pid == 32768 and .isPAA == false and .issuerSubjectKeyID == $skid and .dataURL == "http://127.0.0.1/crl/pai-8000.crl" and .revocationType == 1 and .schemaVersion == 0 and .label == "pai-8000" and (.crlSignerCertificate | startswith("-----BEGIN CERTIFICATE-----"))' "$W/rp.json"
check "its crlSignerCertificate is the PAI" sh -c "[ \"\$(jq -r .crlSignerCertificate '$W/rp.json' | openssl x509)\" = \"\$(openssl x509 -in '$W/pai.pem')\" ]"

# ---- the PAA's CRL by quorum, then the PAI revoked by quorum ----
call admin POST /v1/requests -H 'Content-Type: application/json' \
    --data-binary '{"op":"ca.revoke","params":{"ca":"paa-1"}}'
expect "ca.revoke of a PAA is refused" 400 quorum-params-invalid
quorum crl.sign '{"ca":"paa-1"}'
check "crl.sign executed: PAA CRL 1, empty" jq -e '.executed == true and .result.crl.ca == "paa-1" and .result.crl.number == 1 and .result.crl.entries == 0' "$W/body"
get_crl paa-1 "$W/paa.crl1.der"
openssl crl -inform DER -in "$W/paa.crl1.der" -out "$W/paa.crl1.pem"
check "openssl crl -CAfile PAA: verify OK" sh -c "openssl crl -in '$W/paa.crl1.pem' -CAfile '$W/paa.pem' -noout 2>&1 | grep -q 'verify OK'"
check "openssl verify -crl_check accepts the PAI on the PAA's CRL" \
    openssl verify -crl_check -CAfile "$W/paa.pem" -CRLfile "$W/paa.crl1.pem" "$W/pai.pem"

call auditor GET /readyz
check "/readyz: a CRL within warn_before_s of its nextUpdate is due-soon (still ready)" jq -e '.status == "ready" and .checks.crls["paa-1"].status == "due-soon" and .checks.crls["paa-1"].number == 1 and .checks.crls["pai-8000"].status == "fresh"' "$W/body"

quorum ca.revoke '{"ca":"pai-8000","reason":"cACompromise"}'
check "ca.revoke executed: PAA CRL 2 with one entry" jq -e '.executed == true and .result.revoked == "pai-8000" and .result.crl.number == 2 and .result.crl.entries == 1' "$W/body"
csr c
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/c.der"
expect "the revoked PAI issues nothing" 409 ca-inactive
call auditor GET /v1/cas/pai-8000
check "its window is closed, the CA shows its revocation" jq -e '.issuance.active == false and .revoked.reason == "cACompromise"' "$W/body"
call auditor GET /readyz
check "/readyz: the revoked PAI's CRL state is ca-revoked" jq -e '.checks.crls["pai-8000"].status == "ca-revoked"' "$W/body"
until=$(( $(date +%s) * 1000 + 600000 ))
call admin POST /v1/requests -H 'Content-Type: application/json' \
    --data-binary "{\"op\":\"ca.activate\",\"params\":{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":10}}"
expect "a revoked PAI is never activated again" 409 ca-revoked
call admin POST /v1/requests -H 'Content-Type: application/json' \
    --data-binary '{"op":"ca.revoke","params":{"ca":"pai-8000"}}'
expect "revoking the PAI twice" 409 ca-revoked
get_crl paa-1 "$W/paa.crl2.der"
openssl crl -inform DER -in "$W/paa.crl2.der" -out "$W/paa.crl2.pem"
check "PAA CRL 2 verifies against the PAA" sh -c "openssl crl -in '$W/paa.crl2.pem' -CAfile '$W/paa.pem' -noout 2>&1 | grep -q 'verify OK'"
pai_serial=$(openssl x509 -in "$W/pai.pem" -noout -serial | cut -d= -f2)
openssl crl -in "$W/paa.crl2.pem" -noout -text > "$W/paa.crl2.txt"
check "PAA CRL 2 lists the PAI's serial with cACompromise" sh -c "grep -q 'Serial Number: $pai_serial' '$W/paa.crl2.txt' && grep -q 'CA Compromise' '$W/paa.crl2.txt'"
if openssl verify -crl_check -CAfile "$W/paa.pem" -CRLfile "$W/paa.crl2.pem" "$W/pai.pem" \
    > "$W/verify2.out" 2>&1; then
    bad "openssl verify -crl_check accepted the revoked PAI"
else
    check "openssl verify -crl_check rejects the revoked PAI" grep -q "certificate revoked" "$W/verify2.out"
fi
"$HSMCA_BIN" dcl revocation-point --url "https://127.0.0.1:$PORT" --ca paa-1 \
    --cert "$W/tls/auditor.pem" --key "$W/tls/auditor.key" --cacert "$W/tls/ca.pem" \
    > "$W/rp-paa.json"
check "dcl revocation-point: the PAA's record" jq -e '.isPAA == true and .vid == 65521 and .pid == 0 and .dataURL == "http://127.0.0.1/crl/paa-1.crl"' "$W/rp-paa.json"

# ---- connectedhomeip's consumer of revocation data (docs/revocation.md) ----
# What a vendor publishes for both CAs, in the shape of the DCL's all-revocation-points answer,
# and the CRLs as relying parties fetch them from the plain listener.
"$HSMCA_BIN" dcl revocation-point --url "https://127.0.0.1:$PORT" --ca paa-1 --ca pai-8000 \
    --dcl-response --cert "$W/tls/auditor.pem" --key "$W/tls/auditor.key" \
    --cacert "$W/tls/ca.pem" > "$W/dcl-points.json"
check "dcl revocation-point --dcl-response: both records" jq -e '.PkiRevocationDistributionPoint | length == 2 and .[0].isPAA == true and .[1].isPAA == false' "$W/dcl-points.json"
curl -sS -o "$W/dcl-paa.crl" "http://127.0.0.1:$PUB/crl/paa-1.crl"
curl -sS -o "$W/dcl-pai.crl" "http://127.0.0.1:$PUB/crl/pai-8000.crl"
# connectedhomeip's credentials/generate_revocation_set.py is not part of hsmca; given its path
# (its Python dependencies are Debian's python3-click, python3-click-option-group,
# python3-cryptography and python3-requests), its local-data mode must find the revoked DAC.
if [ -n "${HSMCA_CHIP_REVOCATION_SCRIPT:-}" ]; then
    "${HSMCA_CHIP_PYTHON:-/usr/bin/python3}" "$HSMCA_CHIP_REVOCATION_SCRIPT" from-dcl --use-local-data \
        --revocation-points-response "$W/dcl-points.json" --crls "$W/dcl-paa.crl" \
        --crls "$W/dcl-pai.crl" --certificates "$W/paa.pem" --output "$W/revocation-set.json" \
        > "$W/chip.log" 2>&1 || cat "$W/chip.log"
    check "generate_revocation_set.py: the PAI's set lists the revoked DAC a, not DAC b" jq -e \
        --arg a "$sa_up" --arg b "$(tr 'a-f' 'A-F' < "$W/b.serial")" --arg skid "$upskid" \
        '[.[] | select(.issuer_subject_key_id == $skid)] | length == 1 and
         (.[0].revoked_serial_numbers | index($a) != null and index($b) == null)' \
        "$W/revocation-set.json"
    paa_skid=$(openssl x509 -in "$W/paa.pem" -noout -ext subjectKeyIdentifier | tail -1 |
        tr -d ' :' | tr 'a-f' 'A-F')
    check "generate_revocation_set.py: the PAA's set lists the revoked PAI" jq -e \
        --arg s "$(echo "$pai_serial" | sed 's/^00//')" --arg skid "$paa_skid" \
        '[.[] | select(.issuer_subject_key_id == $skid)] | length == 1 and
         (.[0].revoked_serial_numbers | index($s) != null)' "$W/revocation-set.json"
fi

# ---- signed reports ----
today=$(date -u +%F)
"$HSMCA_BIN" report --url "https://127.0.0.1:$PORT" --ca pai-8000 --from 2020-01-01 \
    --to "$today" --cert "$W/tls/auditor.pem" --key "$W/tls/auditor.key" \
    --cacert "$W/tls/ca.pem" --out "$W/report.csv" 2> "$W/report.err" || cat "$W/report.err"
check "hsmca report writes the CSV and its signature" test -s "$W/report.csv" -a -s "$W/report.csv.sig"
check "the report's signature verifies with the audit public key (openssl dgst)" \
    openssl dgst -sha256 -verify "$W/audit.pub.pem" -signature "$W/report.csv.sig" "$W/report.csv"
check "the report lists both DACs, DAC a revoked with its reason" sh -c "[ \$(wc -l < '$W/report.csv') = 3 ] && grep -q '^$serial_a,FFF1,8000,.*,revoked,.*,keyCompromise,' '$W/report.csv' && grep -q '^$(cat "$W/b.serial"),.*,issued,' '$W/report.csv'"
printf 'x' >> "$W/report.csv"
if openssl dgst -sha256 -verify "$W/audit.pub.pem" -signature "$W/report.csv.sig" "$W/report.csv" >/dev/null 2>&1; then
    bad "a changed report still verifies"
else
    ok "a changed report does not verify"
fi
"$HSMCA_BIN" report --url "https://127.0.0.1:$PORT" --ca pai-8000 --from 2020-01-01 \
    --to "$today" --format json --cert "$W/tls/admin.pem" --key "$W/tls/admin.key" \
    --cacert "$W/tls/ca.pem" --out "$W/report.json" 2> "$W/report.err" || cat "$W/report.err"
check "the JSON report verifies and holds both rows" sh -c "openssl dgst -sha256 -verify '$W/audit.pub.pem' -signature '$W/report.json.sig' '$W/report.json' >/dev/null && jq -e 'length == 2 and ([.[] | select(.status == \"revoked\")][0].invalidity_date | type == \"string\")' '$W/report.json' >/dev/null"
call auditor GET '/v1/cas/pai-8000/report?from=2030-01-02&to=2030-01-01'
expect "a report range backwards" 400 report-range-invalid
call operator GET "/v1/cas/pai-8000/report?from=2020-01-01&to=$today"
expect "an operator gets no report" 403 http-forbidden

# ---- audit ----
check "one cert.revoke entry" [ "$(audit_count cert.revoke)" = 1 ]
check "one ca.revoke entry" [ "$(audit_count ca.revoke)" = 1 ]
check "a report.make entry per report" [ "$(audit_count report.make)" -ge 2 ]
check "a crl.sign entry per CRL (PAI 1-3: activation, revocation, window end; PAA 1-2)" [ "$(audit_count crl.sign)" -ge 5 ]

stop_daemon
check "hsmcad stopped cleanly" true
finish
