#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# renew.sh -- renewal and re-key of a PAI by quorum, the to-be-signed certificate the approvers
# see and sign, and no key left behind by a failed execution (docs/renewal.md):
# - ca.renew pai-8000 -> pai-8000-r1: GET /v1/requests/{id} and `hsmca approve` show the exact
#   certificate (subject, validity, serial, extensions, the key's SPKI hash), the request bytes the
#   approvals sign carry it, and the execution makes exactly it; pai-8000 stays queryable, opens
#   no window again (quorum-ca-superseded at request time); pai-8000-r1 issues a DAC that
#   openssl verifies with the PAA;
# - ca.rekey pai-8000-r1 -> pai-8000-k1 in a token enrolled by quorum: the preview says the key is
#   made at execution; the new PAI has a new key, the old ones stay in the store, pai-8000-r1's
#   window closes, pai-8000-k1 issues a DAC that chains to it;
# - a re-key whose PAI profile changed between the request and its execution is refused
#   (quorum-tbs-mismatch): nothing is signed, and the key it generated is destroyed in the token
#   (its object listing is as before, the audit says ca.keygen destroyed).
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
jq '(.certificates[] | select(.principal == "factory-1") | .cas) = ["pai-8000", "pai-8000-r1", "pai-8000-k1"]' \
    "$W/roles.json" > "$W/roles.new" && mv "$W/roles.new" "$W/roles.json"
mkdir -p "$W/profiles"
cp "$SRC"/policies/profiles/*.json "$W/profiles/"
write_config "" "
  \"profiles_dir\": \"$W/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$W/profiles" "$SRC/policies/quorum.json" --paa-quorum
start_daemon

ask() { # op params-json -> the request's id in $rid (empty if refused; answer in $W/body)
    call admin POST /v1/requests -H 'Content-Type: application/json' \
        --data-binary "{\"op\":\"$1\",\"params\":$2}"
    rid=""
    [ "$STATUS" = 201 ] && rid=$(jq -r .id "$W/body")
    return 0
}
approve_one() { # request id, approver name, role -> that approval submitted; answer in $W/body
    call approver GET "/v1/requests/$1"
    cp "$W/body" "$W/envelope.json"
    "$HSMCA_PKI_BIN" approve "$W" "$2" "$W/envelope.json" > "$W/appr-$2.json"
    call "$3" POST "/v1/requests/$1/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-$2.json"
}
approve_both() {
    approve_one "$1" bob-approver approver
    approve_one "$1" dave-approver approver2
}
quorum() {
    ask "$1" "$2"
    [ -n "$rid" ] || return 0
    approve_both "$rid"
}
csr() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/$1.key" -outform DER -out "$W/$1.der" 2>/dev/null
}
spki_sha256() { # PEM certificate -> hex SHA-256 of its SubjectPublicKeyInfo DER
    openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum |
        cut -d' ' -f1
}
iso_of() { # openssl date ("Dec  7 06:50:00 2026 GMT") -> ISO 8601 UTC
    date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ
}
cert_of_result() { # -> the executed CA's certificate (PEM) into $1
    jq -r .result.ca.cert "$W/body" | base64 -d | openssl x509 -inform DER -out "$1"
}
until=$(( $(date +%s) * 1000 + 600000 ))
call auditor GET /v1/cas/pai-8000
jq -r .certificate "$W/body" > "$W/pai-old.pem"
check "the first PAI's certificate is readable" openssl x509 -in "$W/pai-old.pem" -noout

# ---- checks before asking ----
ask ca.renew '{"ca": "pai-9999", "new_ca": "pai-8000-r1"}'
expect "a renewal of an unknown CA is refused at creation" 400 quorum-params-invalid
ask ca.renew '{"ca": "pai-8000", "new_ca": "paa-1"}'
expect "a renewal onto an existing CA id is refused at creation" 400 quorum-params-invalid
ask ca.renew '{"ca": "pai-8000", "new_ca": "pai-8000-x", "tbs": {"subject": "CN=forged"}}'
expect "a client's own to-be-signed certificate is refused (the server fixes it)" 400 \
    quorum-params-invalid
ask ca.rekey '{"ca": "pai-8000", "new_ca": "pai-8000-x", "token": "hsmca-paa", "key_label": "k"}'
expect "a re-key into a token that holds a CA key already is refused (one key per token)" \
    400 quorum-params-invalid

# ---- renewal: the approvers see the exact certificate ----
RC=0
"$HSMCA_BIN" request create ca.renew --ca pai-8000 --new-ca pai-8000-r1 \
    --url "https://127.0.0.1:$PORT" --cert "$W/tls/admin.pem" --key "$W/tls/admin.key" \
    --cacert "$W/tls/ca.pem" > "$W/cli-out" 2> "$W/cli-err" || RC=$?
RID_R=$(sed -n 's/^request \([0-9a-f]\{32\}\) created.*/\1/p' "$W/cli-out")
check "ca.renew pai-8000 is asked with hsmca request create" sh -c "[ $RC = 0 ] && [ -n '$RID_R' ]"
check "... which prints the certificate to be signed" sh -c \
    "grep -q 'certificate *to be signed exactly as below' '$W/cli-out' &&
     grep -q 'subject *CN=hsmca Matter PAI FFF1, MatterVID=FFF1, MatterPID=8000' '$W/cli-out'"
"$HSMCA_BIN" request create ca.renew --ca pai-8000 --new-ca x --token t \
    --url "https://127.0.0.1:$PORT" --cert "$W/tls/admin.pem" --key "$W/tls/admin.key" \
    --cacert "$W/tls/ca.pem" > /dev/null 2> "$W/cli-err" && RC=0 || RC=$?
check "... and refuses a --token for a renewal (usage, exit 2)" sh -c \
    "[ $RC = 2 ] && grep -q 'takes no --token' '$W/cli-err'"
call approver GET "/v1/requests/$RID_R"
cp "$W/body" "$W/renew-env.json"
jq .view.certificate "$W/renew-env.json" > "$W/renew-tbs.json"
check "the approver's view shows the to-be-signed certificate: subject, issuer, validity" jq -e '
    (.subject == "CN=hsmca Matter PAI FFF1, MatterVID=FFF1, MatterPID=8000") and
    (.issuer | test("MatterVID=FFF1")) and (.not_before | test("^20[0-9-]+T[0-9:]+Z$")) and
    (.not_after == "9999-12-31T23:59:59Z") and (.serial | test("^[0-9A-F]{32}$"))' \
    "$W/renew-tbs.json"
check "... and its extensions, exactly" jq -e '.extensions == [
    "X509v3 Basic Constraints (critical): CA:TRUE, pathlen:0",
    "X509v3 Key Usage (critical): Certificate Sign, CRL Sign",
    .extensions[2], .extensions[3]] and (.extensions[2] | startswith("X509v3 Subject Key Identifier: "))
    and (.extensions[3] | startswith("X509v3 Authority Key Identifier: "))' "$W/renew-tbs.json"
OLD_SPKI=$(spki_sha256 "$W/pai-old.pem")
check "... the same key as the PAI it renews (SPKI SHA-256)" jq -e --arg h "$OLD_SPKI" \
    '.public_key == "EC P-256, SPKI SHA-256 \($h)"' "$W/renew-tbs.json"
jq -r .request "$W/renew-env.json" | base64 -d > "$W/renew-request.json"
check "the request bytes the approvals sign carry the same certificate (params.tbs)" sh -c \
    "jq -S .params.tbs '$W/renew-request.json' > '$W/signed-tbs.json' &&
     jq -S . '$W/renew-tbs.json' | cmp -s - '$W/signed-tbs.json'"
check "... and the approval digest is over those bytes" sh -c \
    "[ \"\$( (printf 'hsmca-approval-v1\\000'; cat '$W/renew-request.json') | sha256sum | cut -d' ' -f1)\" = \"\$(jq -r .digest '$W/renew-env.json')\" ]"
"$HSMCA_BIN" approve --offline "$W/renew-env.json" --out "$W/unused.json" --name bob-approver \
    --key-uri "pkcs11:token=no-such-token;object=k" --audit-pub "$W/audit.pub.pem" \
    --state "$W/witness.json" --yes < /dev/null > "$W/approve-view.txt" 2>&1 || true
check "hsmca approve shows the to-be-signed certificate too" sh -c "
    grep -q 'certificate *to be signed exactly as below' '$W/approve-view.txt' &&
    grep -q 'subject *CN=hsmca Matter PAI FFF1, MatterVID=FFF1, MatterPID=8000' '$W/approve-view.txt' &&
    grep -q 'extension *X509v3 Basic Constraints (critical): CA:TRUE, pathlen:0' '$W/approve-view.txt' &&
    grep -q \"serial *\$(jq -r .serial '$W/renew-tbs.json')\" '$W/approve-view.txt'"
approve_both "$RID_R"
check "ca.renew executes with two approvals" jq -e '.executed == true and
    .result.ca.id == "pai-8000-r1" and .result.supersedes == "pai-8000"' "$W/body"
cert_of_result "$W/pai-r1.pem"
check "the renewed PAI has exactly the previewed serial" sh -c \
    "[ \"\$(openssl x509 -in '$W/pai-r1.pem' -noout -serial | cut -d= -f2)\" = \"\$(jq -r .serial '$W/renew-tbs.json')\" ]"
NB=$(iso_of "$(openssl x509 -in "$W/pai-r1.pem" -noout -startdate | cut -d= -f2)")
NA=$(iso_of "$(openssl x509 -in "$W/pai-r1.pem" -noout -enddate | cut -d= -f2)")
check "... the previewed validity" jq -e --arg nb "$NB" --arg na "$NA" \
    '.not_before == $nb and .not_after == $na' "$W/renew-tbs.json"
check "... the previewed subject" sh -c "openssl x509 -in '$W/pai-r1.pem' -noout -subject \
    -nameopt RFC2253 | grep -q 'CN=hsmca Matter PAI FFF1'"
check "... and the same key" [ "$(spki_sha256 "$W/pai-r1.pem")" = "$OLD_SPKI" ]
check "... a new certificate (new serial)" sh -c "[ \"\$(openssl x509 -in '$W/pai-r1.pem' \
    -noout -serial)\" != \"\$(openssl x509 -in '$W/pai-old.pem' -noout -serial)\" ]"
call auditor GET /v1/cas/pai-8000
check "the old PAI stays queryable, its certificate unchanged" sh -c \
    "[ '$STATUS' = 200 ] && jq -r .certificate '$W/body' | cmp -s - '$W/pai-old.pem'"
check "... and names its successor" jq -e '.superseded_by == "pai-8000-r1"' "$W/body"
call auditor GET /v1/cas
check "... in the list of CAs too" jq -e '(.cas[] | select(.id == "pai-8000") | .superseded_by)
    == "pai-8000-r1" and ([.cas[] | select(.id == "pai-8000-r1") | has("superseded_by")] == [false])' \
    "$W/body"
ask ca.activate "{\"ca\": \"pai-8000\", \"until\": $until, \"max_dacs\": 10}"
expect "the superseded PAI opens no window again (refused at creation)" 409 quorum-ca-superseded

# ---- a DAC under the renewed PAI ----
quorum ca.activate "{\"ca\": \"pai-8000-r1\", \"until\": $until, \"max_dacs\": 10}"
check "the renewed PAI's window opens by quorum" jq -e '.executed == true' "$W/body"
csr d1
call operator POST /v1/cas/pai-8000-r1/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: application/pem-certificate-chain' --data-binary @"$W/d1.der"
check "pai-8000-r1 issues a DAC" [ "$STATUS" = 201 ]
awk '/BEGIN/{n++} n==1' "$W/body" > "$W/dac-r1.pem"
check "the DAC verifies against the renewed PAI and the PAA (openssl)" \
    openssl verify -x509_strict -CAfile "$W/paa.pem" -untrusted "$W/pai-r1.pem" "$W/dac-r1.pem"
check "... and as a commissioner checks it (hsmca verify)" "$HSMCA_BIN" verify \
    --dac "$W/dac-r1.pem" --pai "$W/pai-r1.pem" --paa "$W/paa.pem" --expect-vid FFF1 \
    --expect-pid 8000
check "... its issuer is the renewed PAI (serial-bound AKID, same name)" sh -c \
    "[ \"\$(openssl x509 -in '$W/dac-r1.pem' -noout -issuer -nameopt RFC2253)\" = \"issuer=\$(openssl x509 -in '$W/pai-r1.pem' -noout -subject -nameopt RFC2253 | cut -d= -f2-)\" ]"

# ---- re-key: a new key in a token enrolled by quorum ----
quorum token.enroll '{"token": "hsmca-pai-8000-k"}'
check "a token for the new key joins by quorum" jq -e '.executed == true' "$W/body"
ask ca.rekey '{"ca": "pai-8000-r1", "new_ca": "pai-8000-k1", "token": "hsmca-pai-8000-k", "key_label": "pai-key"}'
RID_K=$rid
check "ca.rekey pai-8000-r1 is asked" [ -n "$RID_K" ]
call approver GET "/v1/requests/$RID_K"
jq .view.certificate "$W/body" > "$W/rekey-tbs.json"
check "the re-key's view says the key is made at execution, and shows the rest" jq -e '
    (.public_key == "EC P-256, generated in the CA'"'"'s token at execution") and
    (.subject == "CN=hsmca Matter PAI FFF1, MatterVID=FFF1, MatterPID=8000") and
    (.extensions[2] == "X509v3 Subject Key Identifier: SHA-1 of the new public key (made at execution)")' \
    "$W/rekey-tbs.json"
check "... and its summary names the old and new CA" jq -e \
    '.view.summary | test("re-key CA pai-8000-r1 as pai-8000-k1")' "$W/body"
approve_both "$RID_K"
check "ca.rekey executes" jq -e '.executed == true and .result.ca.id == "pai-8000-k1"' "$W/body"
cert_of_result "$W/pai-k1.pem"
check "the re-keyed PAI has a new key" [ "$(spki_sha256 "$W/pai-k1.pem")" != "$OLD_SPKI" ]
check "... and exactly the previewed serial and validity" sh -c \
    "[ \"\$(openssl x509 -in '$W/pai-k1.pem' -noout -serial | cut -d= -f2)\" = \"\$(jq -r .serial '$W/rekey-tbs.json')\" ] &&
     [ \"\$(date -u -d \"\$(openssl x509 -in '$W/pai-k1.pem' -noout -startdate | cut -d= -f2)\" +%Y-%m-%dT%H:%M:%SZ)\" = \"\$(jq -r .not_before '$W/rekey-tbs.json')\" ]"
for ca in pai-8000 pai-8000-r1; do
    call auditor GET "/v1/cas/$ca"
    check "the old PAI $ca stays in the store (verification, CRL)" [ "$STATUS" = 200 ]
done
check "... pai-8000-r1's window closed at the re-key" jq -e '.issuance.active == false' "$W/body"
quorum ca.activate "{\"ca\": \"pai-8000-k1\", \"until\": $until, \"max_dacs\": 10}"
check "the re-keyed PAI's window opens by quorum" jq -e '.executed == true' "$W/body"
csr d2
call operator POST /v1/cas/pai-8000-k1/dacs -H 'Content-Type: application/pkcs10' \
    -H 'Accept: application/pem-certificate-chain' --data-binary @"$W/d2.der"
check "pai-8000-k1 issues a DAC" [ "$STATUS" = 201 ]
awk '/BEGIN/{n++} n==1' "$W/body" > "$W/dac-k1.pem"
check "the DAC verifies against the re-keyed PAI and the PAA (openssl)" \
    openssl verify -x509_strict -CAfile "$W/paa.pem" -untrusted "$W/pai-k1.pem" "$W/dac-k1.pem"
check "... and not against the old key's PAI" sh -c \
    "! openssl verify -CAfile '$W/paa.pem' -untrusted '$W/pai-r1.pem' '$W/dac-k1.pem' >/dev/null 2>&1"
check "the DAC made before the re-key still verifies (old PAI kept)" \
    openssl verify -CAfile "$W/paa.pem" -untrusted "$W/pai-r1.pem" "$W/dac-r1.pem"

# ---- a failed execution leaves no key behind ----
quorum token.enroll '{"token": "hsmca-pai-8000-f"}'
check "a token for a re-key that will fail joins by quorum" jq -e '.executed == true' "$W/body"
list_objects() { # token label -> its public objects (no login) and the count of all its objects
    pkcs11-tool --module "$MODULE" --token-label "$1" --list-objects 2>/dev/null | grep -c 'label:' || true
    d=$(grep -l "$1" "$W"/tokens/*/token.object 2>/dev/null | head -1)
    ls "$(dirname "$d")" | grep -v '^token\.' | grep -c '\.object$' || true
}
list_objects hsmca-pai-8000-f > "$W/objects-before.txt"
check "the token starts empty (object listing)" sh -c "[ \"\$(cat '$W/objects-before.txt' | tr '\n' ' ')\" = '0 0 ' ]"
ask ca.rekey '{"ca": "pai-8000-k1", "new_ca": "pai-8000-f1", "token": "hsmca-pai-8000-f", "key_label": "pai-key-f"}'
RID_F=$rid
check "a second re-key is asked" [ -n "$RID_F" ]
approve_one "$RID_F" bob-approver approver
# the PAI profile changes before the second approval: the certificate it would make is not the
# one the approvers saw
jq '.validity = {"days": 3650, "backdate_seconds": 60}' "$SRC/policies/profiles/matter-pai.json" \
    > "$W/profiles/matter-pai.json"
call admin POST /v1/admin/reload
check "the changed PAI profile is reloaded" [ "$STATUS" = 200 ]
approve_one "$RID_F" dave-approver approver2
expect "the execution is refused: not the approved certificate" 409 quorum-tbs-mismatch
call auditor GET /v1/cas/pai-8000-f1
expect "no CA was made" 404
list_objects hsmca-pai-8000-f > "$W/objects-after.txt"
check "the key generated for it is destroyed: the token's objects are as before" \
    cmp -s "$W/objects-before.txt" "$W/objects-after.txt"
check "... pkcs11-tool lists no pai-key-f" sh -c \
    "! pkcs11-tool --module '$MODULE' --token-label hsmca-pai-8000-f --list-objects 2>/dev/null | grep -q pai-key-f"
check "... hsmca token pubkey finds no such key" sh -c \
    "! '$HSMCA_BIN' token pubkey --module '$MODULE' 'pkcs11:token=hsmca-pai-8000-f;object=pai-key-f' >/dev/null 2>&1"
n=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"action\":\"ca.keygen\"%' AND CAST(line AS TEXT) LIKE '%\"outcome\":\"ok\"%' AND CAST(line AS TEXT) LIKE '%\"key_label\":\"pai-key-f\"%'")
check "the key was generated in the token first (ca.keygen ok in the audit log)" [ "$n" -eq 1 ]
n=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"action\":\"ca.key_destroy\"%' AND CAST(line AS TEXT) LIKE '%\"outcome\":\"ok\"%' AND CAST(line AS TEXT) LIKE '%quorum-tbs-mismatch%'")
check "the audit log says it was destroyed, and why" [ "$n" -eq 1 ]
check "the log names the mismatch" grep -q 'tbs-mismatch' "$W/hsmcad.log"

# ---- a PAA renewal: self-signed in its own token, the same key ----
ask ca.renew '{"ca": "paa-1", "new_ca": "paa-1-r1"}'
RID_P=$rid
call approver GET "/v1/requests/$RID_P"
jq .view.certificate "$W/body" > "$W/paa-tbs.json"
check "the PAA renewal's preview is self-issued with the PAA's key" jq -e --arg h \
    "$(spki_sha256 "$W/paa.pem")" '.issuer == .subject and
    .public_key == "EC P-256, SPKI SHA-256 \($h)"' "$W/paa-tbs.json"
approve_both "$RID_P"
check "ca.renew of the PAA executes" jq -e '.executed == true' "$W/body"
cert_of_result "$W/paa-r1.pem"
check "the renewed PAA is self-signed (openssl)" \
    openssl verify -x509_strict -CAfile "$W/paa-r1.pem" "$W/paa-r1.pem"
check "... with the previewed serial" sh -c \
    "[ \"\$(openssl x509 -in '$W/paa-r1.pem' -noout -serial | cut -d= -f2)\" = \"\$(jq -r .serial '$W/paa-tbs.json')\" ]"
check "a DAC under the PAIs verifies with the renewed PAA as its anchor (same key and name)" \
    openssl verify -x509_strict -CAfile "$W/paa-r1.pem" -untrusted "$W/pai-k1.pem" "$W/dac-k1.pem"

stop_daemon || bad "daemon exit status"
LAST=$(store_sql 'SELECT max(seq) FROM audit_entries')
check "the log is archived" sh -c "'$HSMCA_BIN' audit archive --store '$STORE' --from 1 \
    --to '$LAST' --out '$W/ex' > /dev/null 2> '$W/archive.err' || { cat '$W/archive.err'; false; }"
check "the log with the renewal and re-key verifies offline" "$HSMCA_BIN" audit verify "$W/ex"
nint=$(store_sql 'SELECT count(*) FROM audit_intents')
check "no intent is left open" [ "$nint" -eq 0 ]
finish
