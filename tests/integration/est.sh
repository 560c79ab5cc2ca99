#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# est.sh -- EST (RFC 7030) against the real daemon and SoftHSM tokens, with curl and openssl only
# on the client side: cacerts and csrattrs, simpleenroll (base64 PKCS#10 in, base64 PKCS#7
# certs-only out) with the DAC checked by hsmca verify, the Idempotency-Key replay, re-enrolment
# (renewal of a DAC with its own key and subject, replayed on retry, refused for an unknown key or
# another subject), an operator bound to another CA refused, bad base64 refused, and the RFC's 503
# + Retry-After for a used-up quota and a closed window. Every EST DAC has its dac.issue entry.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
printf '{"pai-8000": {"per_minute": 6}}\n' > "$W/quotas.json"
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\", \"quotas\": \"quotas.json\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
start_daemon
EST=/.well-known/est/pai-8000

est_csr() { # name -> $W/name.key, $W/name.b64 (base64 of the DER request, as EST sends it)
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/$1.key" -outform DER 2>/dev/null | openssl base64 > "$W/$1.b64"
}
certs_of() { # base64 PKCS#7 body -> PEM certificates on stdout
    openssl base64 -d -in "$1" | openssl pkcs7 -inform DER -print_certs
}
for n in a b c d e f g h; do est_csr "$n"; done

# ---- cacerts, csrattrs ----
call operator GET "$EST/cacerts"
check "cacerts 200 application/pkcs7-mime" sh -c "[ '$STATUS' = 200 ] && [ \"\$(tr -d '\r' < '$W/headers' | sed -n 's/^content-type: //Ip')\" = application/pkcs7-mime ]"
certs_of "$W/body" > "$W/cacerts.pem"
check "cacerts holds the PAI and the PAA" [ "$(grep -c 'BEGIN CERTIFICATE' "$W/cacerts.pem")" = 2 ]
awk '/BEGIN/{n++} n==1' "$W/cacerts.pem" | grep -v '^subject=\|^issuer=\|^$' > "$W/pai.pem"
awk '/BEGIN/{n++} n==2' "$W/cacerts.pem" | grep -v '^subject=\|^issuer=\|^$' > "$W/paa-est.pem"
check "cacerts' PAA is the PAA" sh -c "[ \"\$(openssl x509 -in '$W/paa-est.pem' -outform DER | sha256sum)\" = \"\$(openssl x509 -in '$W/paa.pem' -outform DER | sha256sum)\" ]"
check "cacerts refresh has an audit receipt" sh -c "[ -n \"\$(tr -d '\r' < '$W/headers' | sed -n 's/^audit-receipt: //Ip')\" ]"
call operator GET "$EST/csrattrs"
check "csrattrs: ecdsa-with-SHA256 and a P-256 key" sh -c "[ '$STATUS' = 200 ] &&
    openssl base64 -d -in '$W/body' | openssl asn1parse -inform DER | grep -q ecdsa-with-SHA256 &&
    openssl base64 -d -in '$W/body' | openssl asn1parse -inform DER | grep -q prime256v1"
call operator2 GET "$EST/cacerts"
expect "cacerts for a CA the operator is not bound to" 403 http-ca-forbidden

# ---- inactive: 503 with Retry-After ----
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/a.b64"
expect "EST on an inactive PAI" 503 ca-inactive
check "Retry-After on the closed window" [ "$(header retry-after)" = 600 ]
check "quorum opens a window of 100" activate 100

# ---- simpleenroll with curl and openssl alone ----
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/a.b64"
check "simpleenroll 200" [ "$STATUS" = 200 ]
check "certs-only content type" [ "$(header content-type)" = "application/pkcs7-mime; smime-type=certs-only" ]
cp "$W/body" "$W/a.resp"
certs_of "$W/a.resp" | grep -v '^subject=\|^issuer=\|^$' > "$W/a.dac.pem"
check "one certificate in the reply" [ "$(grep -c 'BEGIN CERTIFICATE' "$W/a.dac.pem")" = 1 ]
check "hsmca verify accepts the EST DAC" "$HSMCA_BIN" verify --dac "$W/a.dac.pem" --pai "$W/pai.pem" \
    --paa "$W/paa.pem" --expect-vid FFF1 --expect-pid 8000
check "the DAC carries the CSR's key" sh -c "[ \"\$(openssl x509 -in '$W/a.dac.pem' -noout -pubkey)\" = \"\$(openssl pkey -in '$W/a.key' -pubout)\" ]"
check "enrolment receipt" sh -c "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: [0-9]+:[0-9a-f]{64}'"
a_serial=$(openssl x509 -in "$W/a.dac.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')

# the same engine: an Idempotency-Key retry replays the DAC
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' \
    -H 'Idempotency-Key: est-b' --data-binary @"$W/b.b64"
cp "$W/body" "$W/b.first"
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' \
    -H 'Idempotency-Key: est-b' --data-binary @"$W/b.b64"
check "Idempotency-Key retry replays the same DAC" sh -c "[ '$STATUS' = 200 ] && cmp -s '$W/body' '$W/b.first'"
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' \
    -H 'Idempotency-Key: est-b' --data-binary @"$W/c.b64"
expect "same key, other CSR" 409 request-id-conflict

# ---- refusals ----
call operator2 POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/c.b64"
expect "EST for a CA the operator is not scoped to" 403 http-ca-forbidden
call admin POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/c.b64"
expect "EST by an admin" 403 http-forbidden
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary 'not*base64!'
expect "bad base64" 400 est-bad-base64
printf 'MIIBbase64butnotacsr==\n' > "$W/junk.b64"
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/junk.b64"
check "base64 of no CSR -> a csr-* refusal" sh -c "[ '$STATUS' = 400 ] && jq -e '.code | startswith(\"csr-\") or . == \"est-bad-base64\"' '$W/body' >/dev/null"
head -c 4200 /dev/urandom | openssl base64 > "$W/big.b64"
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/big.b64"
expect "base64 of more than a CSR's bytes" 400 est-bad-base64
head -c 4097 /dev/urandom | openssl base64 > "$W/big2.b64"
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/big2.b64"
expect "a CSR one byte over the limit" 413 csr-too-large
call operator POST "$EST/simpleenroll" -H 'Content-Type: application/json' --data-binary @"$W/c.b64"
expect "wrong content type" 415 http-unsupported-media-type

# ---- re-enrolment: renew a DAC with its key and subject ----
openssl x509 -x509toreq -in "$W/a.dac.pem" -signkey "$W/a.key" 2>/dev/null |
    openssl req -outform DER | openssl base64 > "$W/renew.b64"
call operator POST "$EST/simplereenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/renew.b64"
check "simplereenroll 200" [ "$STATUS" = 200 ]
cp "$W/body" "$W/renew.first"
certs_of "$W/body" | grep -v '^subject=\|^issuer=\|^$' > "$W/a2.dac.pem"
check "hsmca verify accepts the renewed DAC" "$HSMCA_BIN" verify --dac "$W/a2.dac.pem" \
    --pai "$W/pai.pem" --paa "$W/paa.pem"
check "renewed DAC: same key and subject, new serial" sh -c "
    [ \"\$(openssl x509 -in '$W/a2.dac.pem' -noout -pubkey)\" = \"\$(openssl x509 -in '$W/a.dac.pem' -noout -pubkey)\" ] &&
    [ \"\$(openssl x509 -in '$W/a2.dac.pem' -noout -subject)\" = \"\$(openssl x509 -in '$W/a.dac.pem' -noout -subject)\" ] &&
    [ \"\$(openssl x509 -in '$W/a2.dac.pem' -noout -serial)\" != \"\$(openssl x509 -in '$W/a.dac.pem' -noout -serial)\" ]"
call operator POST "$EST/simplereenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/renew.b64"
check "re-enrolment retry replays the renewed DAC" sh -c "[ '$STATUS' = 200 ] && cmp -s '$W/body' '$W/renew.first'"
call operator POST "$EST/simplereenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/d.b64"
expect "re-enrolment of a key no DAC carries" 400 est-reenroll-unknown-certificate
openssl req -new -key "$W/b.key" -subj "/CN=someone-else" -outform DER 2>/dev/null | openssl base64 > "$W/b-other.b64"
call operator POST "$EST/simplereenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/b-other.b64"
expect "re-enrolment with another subject" 400 est-reenroll-subject-mismatch
call operator2 POST "$EST/simplereenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/renew.b64"
expect "re-enrolment for a CA the operator is not scoped to" 403 http-ca-forbidden

# ---- the audit: the same dac.issue entries as the REST path ----
check "dac.issue entries for the EST DACs (renewal tied to the old serial)" eval "
    store_sql \"SELECT line FROM audit_entries\" > '$W/audit.txt' &&
    grep -c '\"action\":\"dac.issue\"' '$W/audit.txt' | grep -qx 3 &&
    grep -q '\"request_id\":\"est-renew-$a_serial\"' '$W/audit.txt' &&
    grep -q '\"action\":\"dac.replay\"' '$W/audit.txt' &&
    grep -q '\"code\":\"est-reenroll-subject-mismatch\"' '$W/audit.txt'"

# ---- quota: 6 per minute (3 issued): 503 + Retry-After 60 ----
seen=""
for n in e f g h; do
    call operator POST "$EST/simpleenroll" -H 'Content-Type: application/pkcs10' --data-binary @"$W/$n.b64"
    if [ "$STATUS" = 503 ]; then
        seen="$(body_code) $(header retry-after)"
        break
    fi
done
check "per-minute quota -> 503 quota-exceeded, Retry-After: 60" [ "$seen" = "quota-exceeded 60" ]

check "SIGTERM stops with status 0" stop_daemon
finish
