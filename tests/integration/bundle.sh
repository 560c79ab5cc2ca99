#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# bundle.sh -- offline bundles against the real daemon and SoftHSM tokens: an admin registers a
# production line's certificate (EC, as a factory HSM would hold), an operator makes a bundle of
# HSMCA_BUNDLE_TEST_COUNT (default 1000) device identities with `hsmca bundle`, the envelope
# opens with `openssl cms -decrypt` and the line's key alone, every key matches its DAC and every
# DAC chains to the PAI and the PAA (bundlecheck; one DAC also through hsmca verify), the device
# keys are nowhere in the store, the log or any other file of the service after sealing (with the
# unpacked bundle as the scanner's positive control), each DAC has its dac.issue entry and the
# bundle its bundle.seal entry, a bundle larger than the window's remaining count is refused
# before any key is made, and the receipt is acknowledged once (by manifest hash), audited.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}" "${HSMCA_BUNDLECHECK_BIN:?}"
N=${HSMCA_BUNDLE_TEST_COUNT:-1000}
setup_tokens paa
setup_tls
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
start_daemon
tlsargs="--cacert $W/tls/ca.pem"

# ---- the line: an EC certificate of the factory's own ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=factory line 1" -keyout "$W/line.key" -out "$W/line.pem" 2>/dev/null
jq -n --rawfile c "$W/line.pem" '{name: "line-1", certificate: $c}' > "$W/line.json"
call operator POST /v1/lines -H 'Content-Type: application/json' --data-binary @"$W/line.json"
expect "an operator may not register a line" 403 http-forbidden
jq -n '{name: "line-2", certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}' > "$W/bad.json"
call admin POST /v1/lines -H 'Content-Type: application/json' --data-binary @"$W/bad.json"
expect "a broken line certificate" 400 line-certificate-invalid
# shellcheck disable=SC2086
check "hsmca bundle line-register (admin) exits 0" "$HSMCA_BIN" bundle line-register \
    --url "https://127.0.0.1:$PORT" --name line-1 --line-cert "$W/line.pem" \
    --cert "$W/tls/admin.pem" --key "$W/tls/admin.key" $tlsargs
call admin POST /v1/lines -H 'Content-Type: application/json' --data-binary @"$W/line.json"
expect "the same line twice" 409 line-exists

# ---- the window: N + 5 DACs ----
check "the quorum opens a window of N + 5" activate $((N + 5))

# ---- refusals before anything is made ----
call operator POST /v1/cas/pai-8000/bundles -H 'Content-Type: application/json' \
    --data-binary '{"line": "no-such-line", "count": 2}'
expect "an unknown line" 404 line-not-found
call operator POST /v1/cas/pai-8000/bundles -H 'Content-Type: application/json' \
    --data-binary '{"line": "line-1", "count": 0}'
expect "a bundle of 0" 400 bundle-count-invalid
call operator2 POST /v1/cas/pai-8000/bundles -H 'Content-Type: application/json' \
    --data-binary '{"line": "line-1", "count": 2}'
expect "an operator bound to another PAI" 403 http-ca-forbidden
call operator POST /v1/cas/pai-8000/bundles -H 'Content-Type: application/json' \
    --data-binary "{\"line\": \"line-1\", \"count\": $((N + 6))}"
if [ $((N + 6)) -le 1000 ]; then
    expect "a bundle larger than the window" 409 bundle-exceeds-window
else
    expect "a bundle larger than 1000" 400 bundle-count-invalid
fi

# ---- the bundle ----
t0=$(date +%s%N)
# shellcheck disable=SC2086
check "hsmca bundle makes $N devices" "$HSMCA_BIN" bundle create --url "https://127.0.0.1:$PORT" \
    --ca pai-8000 --line line-1 --count "$N" --out "$W/bundle.cms" \
    --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" $tlsargs
t1=$(date +%s%N)
echo "# bundle of $N: $(( (t1 - t0) / 1000000 )) ms"
check "openssl cms -decrypt opens it with the line's key" openssl cms -decrypt -inform DER \
    -in "$W/bundle.cms" -recip "$W/line.pem" -inkey "$W/line.key" -binary -out "$W/bundle.tar"
check "the envelope is EnvelopedData" sh -c "openssl cms -cmsout -print -inform DER -in '$W/bundle.cms' | grep -q 'contentType: pkcs7-envelopedData'"
mkdir -p "$W/open"
check "the archive unpacks with tar" tar -xf "$W/bundle.tar" -C "$W/open"
B=$(ls -d "$W"/open/bundle-*)
id=${B##*/bundle-}
check "the manifest counts $N devices" jq -e ".count == $N and .requested == $N and .line == \"line-1\" and .bundle == \"$id\"" "$B/manifest.json"
check "one folder per device with dac.der, key.der, pai.der" sh -c \
    "[ \$(ls '$B/devices' | wc -l) = $N ] && [ -f '$B/devices/0000/dac.der' ] && [ -f '$B/devices/0000/key.der' ] && [ -f '$B/devices/0000/pai.der' ]"
check "every key matches its DAC, every DAC chains to the PAI and the PAA" sh -c \
    "'$HSMCA_BUNDLECHECK_BIN' check '$B' '$W/paa.pem' | grep -qx 'devices $N'"
check "key.der is PKCS#8 DER (openssl pkey reads it)" sh -c \
    "openssl pkey -inform DER -in '$B/devices/0000/key.der' -noout -text 2>/dev/null | grep -q 'ASN1 OID: prime256v1'"
openssl x509 -inform DER -in "$B/devices/0000/dac.der" -out "$W/dev0.pem"
openssl x509 -inform DER -in "$B/pai.der" -out "$W/pai.pem"
check "hsmca verify accepts device 0's DAC" "$HSMCA_BIN" verify --dac "$W/dev0.pem" \
    --pai "$W/pai.pem" --paa "$W/paa.pem" --expect-vid FFF1 --expect-pid 8000

# ---- the keys are nowhere in the service's files ----
check "the scanner finds the keys in the unpacked archive (control)" sh -c \
    "! '$HSMCA_BUNDLECHECK_BIN' scan '$B' '$W/bundle.tar' >/dev/null"
find "$W" -type f ! -path "$W/open/*" ! -name bundle.tar > "$W/files"
# shellcheck disable=SC2046
check "no device key in the store, WAL, log, tokens or any other file" \
    "$HSMCA_BUNDLECHECK_BIN" scan "$B" $(cat "$W/files")
if store_is_pg; then # the store's tables are files of the PostgreSQL cluster under $W/pg
    check "the store was among the files scanned" grep -q '/pg/data/base/' "$W/files"
else
    check "the store was among the files scanned" grep -q 'hsmca.db$' "$W/files"
fi

# ---- the audit ----
store_sql "SELECT line FROM audit_entries" > "$W/audit.txt"
check "$N dac.issue entries tied to the bundle" sh -c \
    "[ \$(grep '\"action\":\"dac.issue\"' '$W/audit.txt' | grep -c '\"request_id\":\"bundle-$id-') = $N ]"
check "one bundle.seal entry with the manifest's hash" sh -c \
    "grep '\"action\":\"bundle.seal\"' '$W/audit.txt' | grep -q \"\\\"manifest_sha256\\\":\\\"\$(sha256sum < '$B/manifest.json' | cut -d' ' -f1)\\\"\""
check "the refusals are audited" sh -c "grep -q 'bundle-exceeds-window\\|bundle-count-invalid' '$W/audit.txt' && grep -q '\"code\":\"line-exists\"' '$W/audit.txt'"

# ---- the window's remaining count: 5; a bundle of 6 is refused before any key ----
call operator GET /v1/cas/pai-8000
issued_before=$(jq .issuance.issued "$W/body")
lines_before=$(wc -l < "$W/audit.txt")
call operator POST /v1/cas/pai-8000/bundles -H 'Content-Type: application/json' \
    --data-binary '{"line": "line-1", "count": 6}'
expect "6 devices with 5 left in the window" 409 bundle-exceeds-window
call operator GET /v1/cas/pai-8000
check "nothing issued, nothing reserved" jq -e ".issuance.issued == $issued_before and .issuance.in_flight == 0 and .issuance.remaining == 5" "$W/body"
check "no DAC entry after the refusal" eval "! store_sql 'SELECT line FROM audit_entries' | tail -n +$((lines_before + 1)) | grep -q '\"action\":\"dac\\.'"

# ---- receipt ----
call operator POST "/v1/cas/pai-8000/bundles/$id/receipt" -H 'Content-Type: application/json' \
    --data-binary "{\"manifest_sha256\": \"$(printf x | sha256sum | cut -d' ' -f1)\"}"
expect "a receipt with another manifest's hash" 409 bundle-receipt-mismatch
call operator2 POST "/v1/cas/pai-8000/bundles/$id/receipt" -H 'Content-Type: application/json' \
    --data-binary '{"manifest_sha256": "00"}'
expect "a receipt from an operator of another PAI" 403 http-ca-forbidden
# shellcheck disable=SC2086
check "hsmca bundle receipt acknowledges it" "$HSMCA_BIN" bundle receipt \
    --url "https://127.0.0.1:$PORT" --manifest "$B/manifest.json" \
    --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" $tlsargs
call operator POST "/v1/cas/pai-8000/bundles/$id/receipt" -H 'Content-Type: application/json' \
    --data-binary "{\"manifest_sha256\": \"$(sha256sum < "$B/manifest.json" | cut -d' ' -f1)\"}"
expect "the receipt twice" 409 bundle-already-received
check "the receipt is audited and stored" eval "
    store_sql \"SELECT line FROM audit_entries\" | grep '\"action\":\"bundle.receipt\"' | grep -q '\"outcome\":\"ok\"' &&
    [ \"\$(store_sql \"SELECT received_by FROM factory_bundles WHERE id = '$id'\")\" = factory-1 ]"

check "SIGTERM stops with status 0" stop_daemon
find "$W" -type f ! -path "$W/open/*" ! -name bundle.tar > "$W/files"
# shellcheck disable=SC2046
check "no device key in any file of the stopped service either (WAL checkpointed)" \
    "$HSMCA_BUNDLECHECK_BIN" scan "$B" $(cat "$W/files")
finish
