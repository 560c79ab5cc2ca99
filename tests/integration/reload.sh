#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# reload.sh -- new settings without a restart (docs/reload.md): with the PAI's window open (by
# quorum), a SIGHUP adds an operator's client-certificate binding and changes the PAI's quota:
# the window stays open, the new operator issues, the new quota holds. A broken roles file is
# refused whole (logged, audited as config.reload.refuse) and the old bindings stay; the admin's
# POST /v1/admin/reload answers 422 reload-refused naming the cause, then 200 once the file is
# good; the plain-HTTP listener is turned on by a reload; a keep-alive connection opened before a
# reload is looked up again in the new bindings.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
mkcert operator3 operator3
mkcert auditor2 auditor2
jq --arg fp "$(fingerprint auditor2)" \
    '.certificates[$fp] = {"principal": "erin-auditor", "role": "auditor"}' \
    "$W/roles.json" > "$W/roles.new" && mv "$W/roles.new" "$W/roles.json"
printf '{"pai-8000": {"per_minute": 100}}\n' > "$W/quotas.json"
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\", \"quotas\": \"quotas.json\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
start_daemon

csr() { # name -> $W/name.der
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
        -keyout "$W/$1.key" -outform DER -out "$W/$1.der" 2>/dev/null
}
issue() { # role csr-name
    call "$1" POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
        --data-binary @"$W/$2.der"
}
# wait (bounded, 10 s) until the daemon's log has n lines matching pattern
wait_log() { # pattern n
    i=0
    while [ "$(grep -c "$1" "$W/hsmcad.log" || true)" -lt "$2" ]; do
        i=$((i + 1))
        [ $i -le 100 ] || return 1
        sleep 0.1
    done
}
for n in a b c d e f g h; do csr "$n"; done

# ---- the PAI's window, opened by the quorum ----
until=$(( $(date +%s) * 1000 + 600000 ))
call admin POST /v1/requests -H 'Content-Type: application/json' \
    --data-binary "{\"op\":\"ca.activate\",\"params\":{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":100}}"
expect "ca.activate requested" 201
rid=$(jq -r .id "$W/body")
call approver GET "/v1/requests/$rid"
cp "$W/body" "$W/envelope.json"
for a in bob-approver dave-approver; do
    "$HSMCA_PKI_BIN" approve "$W" "$a" "$W/envelope.json" > "$W/appr-$a.json"
done
call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-bob-approver.json"
call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-dave-approver.json"
check "the window is open" jq -e '.executed == true' "$W/body"
issue operator a
expect "the bound operator issues" 201
issue operator3 b
expect "operator3 is not bound yet" 401 http-unauthenticated

trap '' PIPE # a write to a connection the server closed fails the check, not the script
# a keep-alive connection of auditor2, opened before the reload, used again after it: the reload
# binds that certificate to an operator of another PAI instead
mkfifo "$W/ka.in"
openssl s_client -quiet -connect "127.0.0.1:$PORT" -CAfile "$W/tls/ca.pem" \
    -cert "$W/tls/auditor2.pem" -key "$W/tls/auditor2.key" < "$W/ka.in" > "$W/ka.out" 2>/dev/null &
KA=$!
exec 3> "$W/ka.in"
ka_get() {
    printf 'GET /v1/cas/pai-8000/certificates HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&3
}
ka_wait() { # n: wait (bounded, 10 s) for n answers on the connection
    i=0
    while [ "$(grep -o 'HTTP/1.1 [0-9]*' "$W/ka.out" | wc -l)" -lt "$1" ]; do
        i=$((i + 1))
        [ $i -le 100 ] || return 1
        sleep 0.1
    done
}
ka_get
check "the keep-alive connection's first answer" ka_wait 1

# ---- SIGHUP: a new binding and a new quota, window open ----
jq --arg fp "$(fingerprint operator3)" \
    '.certificates[$fp] = {"principal": "factory-3", "role": "operator", "cas": ["pai-8000"]} |
     (.certificates[] | select(.principal == "erin-auditor")) |=
        {"principal": "factory-4", "role": "operator", "cas": ["pai-other"]}' \
    "$W/roles.json" > "$W/roles.new" && mv "$W/roles.new" "$W/roles.json"
printf '{"pai-8000": {"per_minute": 4}}\n' > "$W/quotas.json"
kill -HUP "$DPID"
check "the SIGHUP reload is logged" wait_log 'hsmcad reloaded ' 1
check "... naming the trigger" grep -q 'reloaded.*trigger=SIGHUP' "$W/hsmcad.log"
ka_get
check "the keep-alive connection's second answer" ka_wait 2
exec 3>&-
wait "$KA" || true
check "a connection opened before the reload is bound anew: 200 (auditor) then 403" sh -c \
    "[ \"\$(grep -o 'HTTP/1.1 [0-9]*' '$W/ka.out' | cut -d' ' -f2 | tr '\n' ' ')\" = '200 403 ' ]"
call auditor GET /v1/cas/pai-8000
check "the window is still open after the reload" \
    jq -e '.issuance.active == true and .issuance.issued == 1' "$W/body"
issue operator3 b
expect "the new operator issues" 201
issue operator c
expect "the old operator still issues" 201
# the per-minute quota is now 4: a, b, c issued, d is the 4th, e is refused
issue operator d
expect "the 4th DAC of the minute" 201
issue operator3 e
expect "the new quota holds (4 per minute)" 429 quota-exceeded
# ---- a broken roles file: refused whole, the old bindings stay ----
cp "$W/roles.json" "$W/roles.good"
printf '{"version": 1, "certificates": {"00": {"principal": "x"' > "$W/roles.json"
kill -HUP "$DPID"
check "the broken roles file is refused and logged" wait_log 'hsmcad reload-refused ' 1
check "... with roles-invalid" grep -q 'reload-refused.*code=roles-invalid' "$W/hsmcad.log"
issue operator3 f
check "the old bindings stay: operator3 is still known (quota answers, not 401)" \
    [ "$STATUS" = 429 ]
call operator POST /v1/admin/reload
expect "an operator may not reload" 403 http-forbidden
call admin POST /v1/admin/reload
expect "the admin's reload of the broken file" 422 reload-refused
check "... names the cause and the reason" \
    jq -e '.cause == "roles-invalid" and (.detail | test("roles"))' "$W/body"
check "... with an audit receipt" sh -c \
    "tr -d '\r' < '$W/headers' | grep -Eqi '^audit-receipt: [0-9]+:[0-9a-f]{64}'"
call auditor GET /v1/cas/pai-8000
check "the window is still open after the refusals" jq -e '.issuance.active == true' "$W/body"

# ---- the good file again, and the plain-HTTP listener turned on, through the API ----
mv "$W/roles.good" "$W/roles.json"
jq '. + {"publish_listen": "127.0.0.1:0"}' "$W/hsmcad.json" > "$W/cfg.new" &&
    mv "$W/cfg.new" "$W/hsmcad.json"
call admin POST /v1/admin/reload
expect "the admin's reload" 200
check "... reports what it applied" \
    jq -e '.bindings == 9 and (.applied | index("roles")) and (.applied | index("quotas")) and
           (.applied | index("publish_listen")) and (.restart_required == [])' "$W/body"
check "the plain-HTTP listener's port file" test -s "$W/port.publish"
PUB=$(cat "$W/port.publish" 2>/dev/null || echo 0)
check "the plain-HTTP listener serves the PAI certificate" \
    sh -c "curl -sS -f -o '$W/pai.crt' 'http://127.0.0.1:$PUB/ca/pai-8000.crt' && openssl x509 -inform DER -in '$W/pai.crt' -noout"
# a key only a restart applies is named, and nothing else changes
jq '.limits.timeout_s = 11' "$W/hsmcad.json" > "$W/cfg.new" && mv "$W/cfg.new" "$W/hsmcad.json"
call admin POST /v1/admin/reload
check "a restart-only key is named in restart_required" \
    sh -c "[ '$STATUS' = 200 ] && jq -e '.restart_required == [\"limits.timeout_s\"]' '$W/body' >/dev/null"
printf '{"version": 2}' > "$W/hsmcad.json.bad"
cp "$W/hsmcad.json" "$W/hsmcad.json.good"
cp "$W/hsmcad.json.bad" "$W/hsmcad.json"
call admin POST /v1/admin/reload
expect "a broken config file is refused too" 422 reload-refused
check "... as config-invalid" jq -e '.cause == "config-invalid"' "$W/body"
cp "$W/hsmcad.json.good" "$W/hsmcad.json"
call auditor GET /v1/cas/pai-8000
check "the window stayed open through every reload" jq -e '.issuance.active == true' "$W/body"

stop_daemon || bad "daemon exit status"
entries() { store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"action\":\"$1\"%'"; }
check "the audit log holds each reload (SIGHUP and API: 3 applied)" [ "$(entries config.reload)" -eq 3 ]
check "... and each refusal (3, and the operator's 403)" [ "$(entries config.reload.refuse)" -eq 4 ]
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%config.reload.refuse%'" > "$W/refusals.txt"
check "the refusal's entry names the cause" grep -q '"cause":"roles-invalid"' "$W/refusals.txt"
finish
