#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# profiles.sh -- DAC profiles that carry policy, against the real hsmcad and SoftHSM tokens:
# a profile with a finite validity (365 days) and a per-device subject value (device_id, as a
# serialNumber attribute checked against the profile's pattern) gives DACs that carry the value
# and that validity, and that verify and chain (hsmca verify, openssl verify -x509_strict); a
# missing, off-pattern or non-PrintableString value is refused with its code (single, batch, dry
# run), audited, nothing issued and no window slot spent. Then, after a restart with another
# profile, a device id in the common name taken from the CSR when the profile says from_csr,
# in a DAC that outlives its PAI (Matter allows it: V3/V5); and after a reload, a profile that
# says within_issuer refuses a DAC that would end after its PAI (dac-outlives-issuer).
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
mkdir -p "$W/profiles"
cp "$SRC/policies/profiles/"*.json "$W/profiles/"
# a PAI of ten years (3650 days), not 99991231235959Z
sed 's/"not_after": "99991231235959Z"/"days": 3650/' "$SRC/policies/profiles/matter-pai.json" \
    > "$W/profiles/matter-pai.json"
EXTS='"extensions": {
    "basic_constraints": {"critical": true, "ca": false},
    "key_usage": {"critical": true, "usages": ["digitalSignature"]},
    "subject_key_identifier": {"critical": false},
    "authority_key_identifier": {"critical": false}}'
cat > "$W/profiles/matter-dac.json" <<JSON
{
  "name": "matter-dac-serial",
  "type": "dac",
  "subject": {"common_name": "ACME DAC {vid}/{pid}", "vid": "required", "pid": "required",
              "device_id": {"attribute": "serialNumber", "pattern": "[0-9A-F]{16}",
                            "max_length": 16, "required": true}},
  "validity": {"days": 365, "backdate_seconds": 60, "within_issuer": true},
  $EXTS
}
JSON
write_config "" "
  \"profiles_dir\": \"$W/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$W/profiles" "$SRC/policies/quorum.json"
start_daemon
URL="https://127.0.0.1:$PORT"

csr() { # name [subject] -> $W/name.der and $W/name.pem
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "${2:-/CN=device}" \
        -keyout "$W/$1.key" -outform DER -out "$W/$1.der" 2>/dev/null
    openssl req -inform DER -in "$W/$1.der" -out "$W/$1.pem"
}
body() { # name device-id-json (a JSON value, or "" for none) -> request body
    jq -n --rawfile c "$W/$1.pem" --argjson d "${2:-null}" \
        'if $d == null then {csr: $c} else {csr: $c, device_id: $d} end'
}
ndacs() { store_sql "SELECT count(*) FROM certificates WHERE ca = 'pai-8000'"; }
issued() { # -> the window's issued count
    call auditor GET /v1/cas/pai-8000
    jq -r '.issuance.issued' "$W/body"
}
for n in a b c d e f g; do csr "$n"; done

check "the window opens (quorum ca.activate)" activate 20

# ---- a DAC with a per-device value, through `hsmca issue --device-id` ----
rc=0
"$HSMCA_BIN" issue --url "$URL" --ca pai-8000 --csr "$W/a.der" --device-id 0123456789ABCDEF \
    --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" --cacert "$W/tls/ca.pem" \
    --out "$W/a.chain.pem" > "$W/out" 2> "$W/err" || rc=$?
check "hsmca issue --device-id exits 0" [ "$rc" = 0 ]
awk '/BEGIN/{n++} n==1' "$W/a.chain.pem" > "$W/a.dac.pem"
awk '/BEGIN/{n++} n==2' "$W/a.chain.pem" > "$W/pai.pem"
openssl x509 -in "$W/a.dac.pem" -noout -subject -nameopt RFC2253,oid > "$W/a.subject"
check "the DAC's subject carries serialNumber=0123456789ABCDEF" \
    grep -q '2.5.4.5=0123456789ABCDEF' "$W/a.subject"
# (OpenSSL prints the Matter attributes as DER: UTF8String "FFF1" is #0C0446464631)
check "... VID FFF1 and PID 8000 as the PAI says, the CN from the template, in that order" \
    grep -q '^subject=1.3.6.1.4.1.37244.2.2=#0C0438303030,1.3.6.1.4.1.37244.2.1=#0C0446464631,2.5.4.5=0123456789ABCDEF,2.5.4.3=ACME DAC FFF1/8000$' \
    "$W/a.subject"
openssl asn1parse -in "$W/a.dac.pem" > "$W/a.asn1"
check "... the serialNumber is a PrintableString" grep -q 'PRINTABLESTRING *:0123456789ABCDEF' "$W/a.asn1"
check "hsmca verify accepts the chain DAC -> PAI -> PAA" \
    "$HSMCA_BIN" verify --dac "$W/a.dac.pem" --pai "$W/pai.pem" --paa "$W/paa.pem" \
    --expect-vid FFF1 --expect-pid 8000
check "openssl verify -x509_strict chains it to the PAA" \
    openssl verify -x509_strict -CAfile "$W/paa.pem" -untrusted "$W/pai.pem" "$W/a.dac.pem"
# finite validity: notAfter = notBefore + 365 days - 1 s (not 99991231235959Z)
nb=$(date -u -d "$(openssl x509 -in "$W/a.dac.pem" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -u -d "$(openssl x509 -in "$W/a.dac.pem" -noout -enddate | cut -d= -f2)" +%s)
check "the profile's finite validity: notAfter - notBefore = 365 d - 1 s" \
    [ $((na - nb)) = $((365 * 86400 - 1)) ]
pai_na=$(date -u -d "$(openssl x509 -in "$W/pai.pem" -noout -enddate | cut -d= -f2)" +%s)
check "... and ends before its PAI (within_issuer; the PAI has ten years)" [ "$na" -lt "$pai_na" ]
serial=$(openssl x509 -in "$W/a.dac.pem" -noout -serial | cut -d= -f2)
row=$(store_sql "SELECT not_after - not_before FROM certificates WHERE ca = 'pai-8000'")
check "the store's row has the same validity" [ "$row" = $((365 * 86400 - 1)) ]
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"dac.issue\"%'" > "$W/issue.txt"
check "the dac.issue entry names the device id" grep -q '"device_id":"0123456789ABCDEF"' "$W/issue.txt"
check "... and the DAC's serial" grep -qi "\"serial\":\"$serial\"" "$W/issue.txt"

# ---- refusals: code, audit entry, nothing issued, no window slot spent ----
before=$(ndacs)
slots=$(issued)
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary "$(body b '"0123abcd"')"
expect "a device id off the profile's pattern" 400 dac-device-id-pattern
check "... the detail names the pattern, not the value" sh -c \
    "jq -r .detail '$W/body' | grep -qF '[0-9A-F]{16}' && ! grep -q 0123abcd '$W/body'"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary "$(body b '"0123456789ABCDE*"')"
expect "a device id that is no PrintableString (a Matter subject rule)" 400 dac-device-id-rule
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary "$(body b '"0123456789ABCDE\u0001"')"
expect "a device id with a control character" 400 dac-device-id-rule
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary "$(body b '"0123456789ABCDEF0"')"
expect "a device id longer than the profile's max_length" 400 dac-device-id-pattern
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary "$(body b)"
expect "no device id where the profile requires one" 400 dac-device-id-pattern
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/b.der"
expect "a DER CSR (no device id) under that profile" 400 dac-device-id-pattern
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary '{"csr": "x", "device_id": 7}'
expect "a device id that is not a string" 400 http-bad-request
rc=0
"$HSMCA_BIN" issue --url "$URL" --ca pai-8000 --csr "$W/b.der" --device-id "bad value" \
    --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" --cacert "$W/tls/ca.pem" \
    --out "$W/b.chain.pem" > "$W/out" 2> "$W/err" || rc=$?
check "hsmca issue with a bad --device-id: exit 1 naming the code" sh -c \
    "[ '$rc' = 1 ] && grep -q dac-device-id-pattern '$W/err' && [ ! -s '$W/b.chain.pem' ]"
check "nothing was issued by the refusals" [ "$(ndacs)" = "$before" ]
check "... and no window slot was spent" [ "$(issued)" = "$slots" ]
nref=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"dac.refuse\"%dac-device-id-%'")
check "each refusal is audited as dac.refuse with its code ($nref)" [ "$nref" -ge 6 ]

# ---- dry run: the lint names the rule ----
call operator POST '/v1/cas/pai-8000/dacs?dry_run=true' -H 'Content-Type: application/json' \
    --data-binary "$(body c '"zz"')"
check "a dry run with a bad device id: ok false, rule device-id" jq -e \
    '.ok == false and ([.problems[] | select(.rule == "device-id" and .code == "dac-device-id-pattern")] | length == 1)' \
    "$W/body"
call operator POST '/v1/cas/pai-8000/dacs?dry_run=true' -H 'Content-Type: application/json' \
    --data-binary "$(body c '"FEDCBA9876543210"')"
check "a dry run with a good one shows it in the subject" jq -e \
    '.ok == true and (.dac.subject | contains("FEDCBA9876543210"))' "$W/body"

# ---- batch: per-item device ids, a bad one fails alone ----
jq -n --rawfile c "$W/c.pem" --rawfile d "$W/d.pem" \
    '{items: [{csr: $c, device_id: "00000000000000C1"}, {csr: $d, device_id: "not-hex"}]}' \
    > "$W/batch.json"
call operator POST /v1/cas/pai-8000/dacs/batch -H 'Content-Type: application/json' \
    --data-binary @"$W/batch.json"
check "batch: the good item issued, the bad one refused with its code" jq -e '
    .issued == 1 and .failed == 1 and .results[0].status == 201 and
    .results[1].problem.code == "dac-device-id-pattern"' "$W/body"
jq -r '.results[0].certificate' "$W/body" > "$W/c.dac.pem"
check "... the batch DAC carries its own device id and chains" sh -c \
    "openssl x509 -in '$W/c.dac.pem' -noout -subject -nameopt RFC2253,oid | grep -q '2.5.4.5=00000000000000C1' &&
     openssl verify -x509_strict -CAfile '$W/paa.pem' -untrusted '$W/pai.pem' '$W/c.dac.pem' > /dev/null"
check "two DACs issued in all" [ "$(ndacs)" = $((before + 1)) ]

# ---- another profile: the device id in the common name, taken from the CSR ----
stop_daemon || bad "daemon exit status"
cat > "$W/profiles/matter-dac.json" <<JSON
{
  "name": "matter-dac-cn",
  "type": "dac",
  "subject": {"common_name": "ACME {device_id}", "vid": "required", "pid": "required",
              "device_id": {"attribute": "commonName", "pattern": "DEV-[0-9]{1,8}",
                            "max_length": 12, "required": true, "from_csr": true}},
  "validity": {"not_after": "99991231235959Z", "backdate_seconds": 60},
  $EXTS
}
JSON
start_daemon
check "the window opens again after the restart" activate 5
csr e "/CN=DEV-42"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: application/pem-certificate-chain' --data-binary @"$W/e.der"
check "a DER CSR whose CN the profile takes (from_csr) -> 201" [ "$STATUS" = 201 ]
awk '/BEGIN/{n++} n==1' "$W/body" > "$W/e.dac.pem"
check "... the DAC's CN is the template with the CSR's device id" sh -c \
    "openssl x509 -in '$W/e.dac.pem' -noout -subject -nameopt RFC2253,oid | grep -q '2.5.4.3=ACME DEV-42'"
check "... no expiry (99991231235959Z): it outlives its ten-year PAI, as Matter allows" sh -c \
    "openssl x509 -in '$W/e.dac.pem' -noout -enddate | grep -q 'Dec 31 23:59:59 9999 GMT'"
check "... and it verifies and chains" \
    "$HSMCA_BIN" verify --dac "$W/e.dac.pem" --pai "$W/pai.pem" --paa "$W/paa.pem"
check "... openssl too (-x509_strict)" \
    openssl verify -x509_strict -CAfile "$W/paa.pem" -untrusted "$W/pai.pem" "$W/e.dac.pem"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    -H 'Accept: application/json' --data-binary "$(body f '"DEV-7"')"
check "the request's device id wins over the CSR's" sh -c \
    "[ '$STATUS' = 201 ] && jq -r .certificate '$W/body' | openssl x509 -noout -subject -nameopt RFC2253,oid | grep -q '2.5.4.3=ACME DEV-7'"
csr g "/CN=device"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/g.der"
expect "a CSR CN off the pattern, no device id in the request" 400 dac-device-id-pattern
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' \
    --data-binary "$(body g '"Mvid:FFF2"')"
expect "a device id carrying the legacy Mvid: encoding" 400 dac-device-id-rule

# ---- a reload: a profile whose DACs would outlive the PAI, and says within_issuer ----
cat > "$W/profiles/matter-dac.json" <<JSON
{
  "name": "matter-dac-20y",
  "type": "dac",
  "subject": {"common_name": "ACME DAC {vid}/{pid}", "vid": "required", "pid": "required"},
  "validity": {"days": 7300, "backdate_seconds": 60, "within_issuer": true},
  $EXTS
}
JSON
call admin POST /v1/admin/reload
check "the reload applies the profiles" jq -e '.applied | index("profiles") != null' "$W/body"
call admin POST /v1/cas/pai-8000/deactivation
check "the window is closed (no quorum needed)" [ "$STATUS" = 200 ]
check "the window opens with the new profile" activate 5
before=$(ndacs)
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
    --data-binary @"$W/g.der"
expect "a 20-year DAC under a 10-year PAI, the profile saying within_issuer" 409 dac-outlives-issuer
check "... nothing issued" [ "$(ndacs)" = "$before" ]
n=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"dac.refuse\"%dac-outlives-issuer%'")
check "... audited as dac.refuse" [ "$n" = 1 ]

stop_daemon || bad "daemon exit status"
LAST=$(store_sql 'SELECT max(seq) FROM audit_entries')
"$HSMCA_BIN" audit archive --store "$STORE" --from 1 --to "$LAST" --out "$W/ex" > /dev/null
check "the log verifies offline" "$HSMCA_BIN" audit verify "$W/ex"
finish
