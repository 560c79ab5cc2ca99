#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# mdl.sh -- mobile driving licences (ISO/IEC 18013-5, docs/mdl.md) end to end against SoftHSM
# tokens, the real daemon and an independent verifier: the IACA is made by quorum in its own
# token (mdl.create_iaca), a document signer by quorum with its key in another token
# (mdl.create_ds); both pass `hsmca mdl verify`, and mutated twins (wrong EKU, missing country,
# validity too long) fail with the rule named. No MSO is signed before the DS's window is opened
# by quorum (mdl.activate). Then an mdoc whose IssuerAuth hsmcad signed
# (POST /v1/cas/{ds}/mso-signatures) is accepted by @auth0/mdl's Verifier with the IACA as its
# only root, and refused after one byte of the MSO changes (tests/mdl/mdoc_check.js, Debian's
# nodejs; a missing tests/mdl/node_modules fails the test). Bad MSOs are refused with their code
# and audited; detached signing of a digest verifies; every signature is an mso.sign entry with
# the payload's SHA-256; the window's count runs out. Finally the DS is revoked by quorum
# (mdl.revoke): the IACA's CRL, signed in its token, lists it and verifies against the IACA,
# `openssl verify -crl_check` rejects the DS, and it signs nothing more.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}" "${HSMCA_MDL_PKI_BIN:?}"
PAI=ds-1 # the operator of lib.sh's roles.json is bound to this CA
IACA=iaca-us

setup_tokens
for t in mdl-iaca mdl-ds; do
    softhsm2-util --init-token --free --label "$t" --so-pin so-pin-1234 --pin user-pin-1234 \
        >/dev/null
done
setup_tls
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\", \"publish_listen\": \"127.0.0.1:0\","
"$HSMCA_MDL_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/quorum.json" mdl-iaca mdl-ds
start_daemon

quorum() { # op params-json -> executed with bob's and dave's approvals; result in $W/body
    call admin POST /v1/requests -H 'Content-Type: application/json' \
        --data-binary "{\"op\":\"$1\",\"params\":$2}"
    if [ "$STATUS" != 201 ]; then
        return 0 # the caller's check sees the refusal in $W/body
    fi
    rid=$(jq -r .id "$W/body")
    call approver GET "/v1/requests/$rid"
    cp "$W/body" "$W/envelope.json"
    "$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope.json" > "$W/appr-bob.json"
    "$HSMCA_PKI_BIN" approve "$W" dave-approver "$W/envelope.json" > "$W/appr-dave.json"
    call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-bob.json"
    call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-dave.json"
}
audit_count() { # action -> number of entries with that action and outcome ok
    store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"action\":\"$1\"%'
         AND CAST(line AS TEXT) LIKE '%\"outcome\":\"${2:-ok}\"%'"
}
# sign FILE: the IssuerAuth of MSO FILE from hsmcad as the operator (raw COSE on stdout)
cat > "$W/sign.sh" <<SH
#!/bin/sh
set -eu
st=\$(curl -sS --cacert "$W/tls/ca.pem" --cert "$W/tls/operator.pem" --key "$W/tls/operator.key" \
    -H 'Content-Type: application/cbor' -H 'Accept: application/cose' --data-binary @"\$1" \
    -o "$W/cose.out" -w '%{http_code}' "https://127.0.0.1:$PORT/v1/cas/$PAI/mso-signatures")
[ "\$st" = 200 ] || { echo "mso-signatures answered \$st: \$(cat "$W/cose.out")" >&2; exit 1; }
cp "$W/cose.out" "$W/last.cose"
cp "\$1" "$W/last.mso"
cat "$W/cose.out"
SH
chmod +x "$W/sign.sh"

# ---- the IACA in its own token, a DS in another, by quorum ----
quorum mdl.create_iaca "{\"ca\":\"$IACA\",\"token\":\"mdl-iaca\",\"key_label\":\"iaca-key\",
    \"country\":\"US\",\"org\":\"hsmca test DMV\",\"cn\":\"hsmca test IACA\"}"
expect "mdl.create_iaca executes with two approvals" 200
check "the result names the new IACA" jq -e ".result.ca.id == \"$IACA\" and .result.ca.kind == \"iaca\"" \
    "$W/body"
quorum mdl.create_iaca "{\"ca\":\"iaca-2\",\"token\":\"mdl-iaca\",\"key_label\":\"k2\",\"country\":\"US\"}"
expect "a second IACA in the same token is refused" 400 quorum-params-invalid
quorum mdl.create_ds "{\"ca\":\"$PAI\",\"iaca\":\"$IACA\",\"token\":\"mdl-ds\",\"key_label\":\"ds-key\"}"
expect "mdl.create_ds executes with two approvals" 200
check "the result names the new DS" jq -e ".result.ca.id == \"$PAI\" and .result.ca.parent == \"$IACA\"" \
    "$W/body"

quorum mdl.create_ds "{\"ca\":\"ds-bad\",\"iaca\":\"$IACA\",\"token\":\"mdl-iaca\",\"key_label\":\"k\"}"
expect "a DS key in its IACA's token is refused" 400 quorum-params-invalid
quorum mdl.create_ds "{\"ca\":\"ds-bad\",\"iaca\":\"$PAI\",\"token\":\"mdl-ds\",\"key_label\":\"k\"}"
expect "a DS under a DS is refused" 400 quorum-params-invalid
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=issuing system" \
    -keyout "$W/ext.key" -outform DER -out "$W/ext.csr" 2>/dev/null
quorum mdl.create_ds "{\"ca\":\"ds-ext\",\"iaca\":\"$IACA\",\"csr\":\"$(base64 -w0 "$W/ext.csr")\"}"
expect "a DS for an issuing system's CSR" 200
call auditor GET /v1/mdl/cas/ds-ext
check "its key is not in a token" jq -e '.key_in_token == false and .kind == "ds"' "$W/body"
jq -r .certificate "$W/body" > "$W/ds-ext.pem"
check "its certificate carries the CSR's key" sh -c "[ \"\$(openssl x509 -in '$W/ds-ext.pem' -noout \
    -pubkey)\" = \"\$(openssl pkey -in '$W/ext.key' -pubout)\" ]"
quorum mdl.activate "{\"ca\":\"ds-ext\",\"until\":$(( $(date +%s) * 1000 + 60000 )),\"max_signatures\":1}"
expect "no window for a DS whose key hsmca does not hold" 400 quorum-params-invalid
quorum mdl.activate "{\"ca\":\"$IACA\",\"until\":$(( $(date +%s) * 1000 + 60000 )),\"max_signatures\":1}"
expect "no signing window for an IACA" 409 ca-not-mdl-ds
quorum mdl.revoke "{\"ca\":\"$IACA\"}"
expect "an IACA is not revoked as a DS" 409 ca-not-mdl-ds

call auditor GET "/v1/mdl/cas/$IACA"
expect "GET the IACA" 200
jq -r .certificate "$W/body" > "$W/iaca.pem"
call auditor GET "/v1/mdl/cas/$PAI"
expect "GET the DS" 200
jq -r .certificate "$W/body" > "$W/ds.pem"
check "the DS's window is closed before any activation" jq -e '.window.active == false' "$W/body"
call auditor GET /v1/mdl/cas
expect "GET the mDL CAs" 200
check "three mDL CAs listed" jq -e '.items | length == 3' "$W/body"

# ---- the profile check ----
"$HSMCA_BIN" mdl verify --iaca "$W/iaca.pem" --ds "$W/ds.pem" > "$W/verify.out" 2>&1 && rc=0 || rc=$?
check "hsmca mdl verify accepts the IACA -> DS chain hsmcad made (exit $rc)" \
    grep -q '^valid: IACA -> DS chain accepted' "$W/verify.out"
"$HSMCA_BIN" mdl verify --iaca "$W/iaca.pem" --ds "$W/ds-ext.pem" > /dev/null 2>&1 && rc=0 || rc=$?
check "... and the DS made for the CSR (exit $rc)" [ "$rc" = 0 ]
check "the DS carries the mDL DS EKU, critical" sh -c \
    "openssl x509 -in '$W/ds.pem' -noout -ext extendedKeyUsage | grep -q 'critical' &&
     openssl x509 -in '$W/ds.pem' -noout -ext extendedKeyUsage | grep -q '1.0.18013.5.1.2'"
check "the IACA names its country" sh -c \
    "openssl x509 -in '$W/iaca.pem' -noout -subject | grep -q 'C *= *US'"
for kind in none ds-eku iaca-country ds-validity; do
    mkdir -p "$W/twin-$kind"
    "$HSMCA_MDL_PKI_BIN" twin "$W/iaca.pem" "$W/ds.pem" "$kind" "$W/twin-$kind"
    "$HSMCA_BIN" mdl verify --iaca "$W/twin-$kind/iaca.pem" --ds "$W/twin-$kind/ds.pem" \
        > "$W/twin-$kind.out" 2>&1 && rc=0 || rc=$?
    if [ "$kind" = none ]; then
        check "the unmutated software twin passes (exit $rc)" [ "$rc" = 0 ]
    else
        check "mutation $kind fails with rule $kind named (exit $rc)" sh -c \
            "[ $rc = 1 ] && grep -q '^invalid: rule $kind ' '$W/twin-$kind.out'"
    fi
done
"$HSMCA_BIN" mdl verify --iaca "$W/twin-ds-eku/iaca.pem" --ds "$W/twin-ds-eku/ds.pem" --json \
    > "$W/twin.json" || true
check "--json lists the broken rule" jq -e '.valid == false and
    ([.broken[].rule] | index("ds-eku") != null)' "$W/twin.json"

# ---- no signature without a window ----
printf '\241\0\0' > "$W/junk.cbor"
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/cbor' \
    --data-binary @"$W/junk.cbor"
expect "malformed CBOR is refused" 400 mso-invalid
node "$SRC/tests/mdl/mdoc_check.js" --iaca "$W/iaca.pem" --ds "$W/ds.pem" \
    --other-root "$W/twin-none/iaca.pem" --sign "$W/sign.sh" > "$W/node0.out" 2>&1 && rc=0 || rc=$?
check "no IssuerAuth before the DS's window opens (exit $rc)" sh -c \
    "[ $rc != 0 ] && grep -q 'ca-inactive' '$W/node0.out'"
call operator2 POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/cbor' \
    --data-binary @"$W/junk.cbor"
expect "an operator not bound to the DS is refused" 403

# ---- the window, by quorum; an mdoc the independent verifier accepts ----
until=$(( $(date +%s) * 1000 + 600000 ))
quorum mdl.activate "{\"ca\":\"$PAI\",\"until\":$until,\"max_signatures\":4}"
expect "mdl.activate executes" 200
call auditor GET "/v1/mdl/cas/$PAI"
check "the window is open for 4 signatures" jq -e '.window.active and .window.max_signatures == 4' \
    "$W/body"
node "$SRC/tests/mdl/mdoc_check.js" --iaca "$W/iaca.pem" --ds "$W/ds.pem" \
    --other-root "$W/twin-none/iaca.pem" --sign "$W/sign.sh" > "$W/node.out" 2>&1 && rc=0 || rc=$?
sed 's/^/    node: /' "$W/node.out"
check "@auth0/mdl accepts hsmcad's IssuerAuth and refuses a changed MSO (exit $rc)" [ "$rc" = 0 ]
check "... and said so" grep -q "^ok - @auth0/mdl's Verifier accepts the mdoc" "$W/node.out"
check "... and refused one changed byte" grep -q '^ok - with one byte of the MSO changed' \
    "$W/node.out"
"$HSMCA_BIN" mdl issuer-auth --cose "$W/last.cose" --ds "$W/ds.pem" > /dev/null 2>&1 && rc=0 || rc=$?
check "hsmca mdl issuer-auth verifies the same IssuerAuth" [ "$rc" = 0 ]
want=$(openssl dgst -sha256 -r "$W/last.mso" | cut -d' ' -f1)
n=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"action\":\"mso.sign\"%'
      AND CAST(line AS TEXT) LIKE '%$want%'")
check "its mso.sign entry holds the payload's SHA-256" [ "$n" = 1 ]

# detached: the digest of the Sig_structure only, as with a KMS
tbs=$(python3 - "$W/last.mso" <<'PY'
import hashlib, sys
p = open(sys.argv[1], 'rb').read()
def bstr(b):
    n = len(b)
    h = bytes([0x40 | n]) if n < 24 else bytes([0x58, n]) if n < 256 else bytes([0x59]) + n.to_bytes(2, 'big')
    return h + b
tbs = bytes([0x84]) + bytes([0x6a]) + b'Signature1' + bstr(bytes([0xa1, 0x01, 0x26])) + bstr(b'') + bstr(p)
print(hashlib.sha256(tbs).hexdigest())
PY
)
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/json' \
    --data-binary "{\"tbs_sha256\":\"$tbs\"}"
expect "a detached signature of the Sig_structure's digest" 200
jq -r .issuer_auth "$W/body" | base64 -d > "$W/detached.cose"
"$HSMCA_BIN" mdl issuer-auth --cose "$W/detached.cose" --ds "$W/ds.pem" --payload "$W/last.mso" \
    > /dev/null 2>&1 && rc=0 || rc=$?
check "the detached IssuerAuth verifies over the MSO" [ "$rc" = 0 ]
check "the receipt header names the entry" sh -c "[ -n \"$(header Audit-Receipt)\" ]"

# bad MSOs: each refused with its code, audited, no slot taken
jq -n --arg m "$(printf '\241\0\0' | base64)" '{mso: $m}' > "$W/bad.json"
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/json' \
    --data-binary @"$W/bad.json"
expect "a JSON MSO that is not an MSO" 400 mso-invalid
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/json' \
    --data-binary '{"mso":"AAAA","tbs_sha256":"00"}'
expect "both an MSO and a digest" 400
call operator POST "/v1/cas/$IACA/mso-signatures" -H 'Content-Type: application/cbor' \
    --data-binary @"$W/last.mso"
expect "the IACA signs no MSO" 403
n=$(audit_count mso.sign.refuse refused)
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries" > "$W/lines.txt"
check "the refusals are audited, with their codes" sh -c \
    "[ $n -ge 5 ] && grep '\"mso.sign.refuse\"' '$W/lines.txt' | grep -q '\"code\":\"mso-invalid\"'"
# the window: 4 signatures (1 for the verifier's mdoc, 1 detached): two more, then none
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/cbor' \
    --data-binary @"$W/last.mso"
expect "the window's third signature" 200
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/cbor' \
    --data-binary @"$W/last.mso"
expect "the window's last signature" 200
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/cbor' \
    --data-binary @"$W/last.mso"
expect "the window's count is used up" 409 window-exhausted
check "4 mso.sign entries, one per signature" [ "$(audit_count mso.sign)" = 4 ]

# ---- revocation on the IACA's CRL ----
quorum mdl.revoke "{\"ca\":\"$PAI\",\"reason\":\"keyCompromise\"}"
expect "mdl.revoke executes" 200
call auditor GET "/v1/mdl/cas/$IACA/crl" -H 'Accept: application/pkix-crl'
expect "the IACA's CRL" 200
cp "$W/body" "$W/iaca.crl"
check "the CRL verifies against the IACA" sh -c \
    "openssl crl -inform DER -in '$W/iaca.crl' -CAfile '$W/iaca.pem' -noout 2>&1 | grep -q 'verify OK'"
serial=$(openssl x509 -in "$W/ds.pem" -noout -serial | cut -d= -f2)
check "the CRL lists the DS's serial with keyCompromise" sh -c \
    "openssl crl -inform DER -in '$W/iaca.crl' -noout -text | tr -d ':' | grep -qi '$serial' &&
     openssl crl -inform DER -in '$W/iaca.crl' -noout -text | grep -q 'Key Compromise'"
st=$(curl -sS -o "$W/plain.crl" -w '%{http_code}' "http://127.0.0.1:$(cat "$W/port.publish")/crl/$IACA.crl")
check "the plain-HTTP listener serves the same CRL at the certificates' distribution point ($st)" \
    sh -c "[ $st = 200 ] && cmp -s '$W/plain.crl' '$W/iaca.crl'"
check "the DS's CRL distribution point names that URL" sh -c \
    "openssl x509 -in '$W/ds.pem' -noout -ext crlDistributionPoints | grep -q '/crl/$IACA.crl'"
openssl crl -inform DER -in "$W/iaca.crl" -out "$W/iaca-crl.pem"
openssl verify -crl_check -CAfile "$W/iaca.pem" -CRLfile "$W/iaca-crl.pem" "$W/ds.pem" \
    > "$W/osslverify.out" 2>&1 && rc=0 || rc=$?
check "openssl verify -crl_check rejects the revoked DS" sh -c \
    "[ $rc != 0 ] && grep -q 'revoked' '$W/osslverify.out'"
quorum mdl.activate "{\"ca\":\"$PAI\",\"until\":$until,\"max_signatures\":4}"
check "a revoked DS's window never opens again ($STATUS $(body_code))" [ "$STATUS" != 200 ]
call operator POST "/v1/cas/$PAI/mso-signatures" -H 'Content-Type: application/cbor' \
    --data-binary @"$W/last.mso"
expect "a revoked DS signs nothing" 409
check "mdl.ds.revoke and mdl.crl.sign are audited" sh -c \
    "[ $(audit_count mdl.ds.revoke) = 1 ] && [ $(audit_count mdl.crl.sign) -ge 1 ]"

# ---- the whole log, mDL entries and their quorum executions included, verifies offline ----
call auditor GET /v1/audit/extract
check "the audit extract -> $STATUS" [ "$STATUS" = 200 ]
mkdir -p "$W/x"
tar -xf "$W/body" -C "$W/x"
check "the whole log verifies offline" "$HSMCA_BIN" audit verify "$W/x/hsmca-audit-extract"

finish
