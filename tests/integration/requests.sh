#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# requests.sh -- the admin's CLI for quorum requests (`hsmca request create|list|show`) against
# the real hsmcad: each operation's parameters as flags (VID/PID in hex, --until in ISO 8601 UTC
# or relative), what the approvers are asked shown in a person's terms (VID/PID as 4 hex digits,
# times in ISO 8601 UTC, the window's count), GET /v1/requests listing with its status filter,
# usage errors (exit 2) caught before anything is sent, refusals (exit 1) naming the problem code.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}"
setup_tokens paa
setup_tls
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json" \
    --paa-quorum
start_daemon

req() { # role args... -> $W/out, $W/err, $RC
    role=$1
    shift
    RC=0
    "$HSMCA_BIN" request "$@" --url "https://127.0.0.1:$PORT" --cert "$W/tls/$role.pem" \
        --key "$W/tls/$role.key" --cacert "$W/tls/ca.pem" > "$W/out" 2> "$W/err" || RC=$?
}

# ---- create: ca.activate with a relative end, shown in a person's terms ----
req admin create ca.activate --ca pai-8000 --until +2h --max-dacs 250
check "request create ca.activate exits 0" [ "$RC" = 0 ]
ID=$(sed -n 's/^request \([0-9a-f]\{32\}\) created.*/\1/p' "$W/out")
check "... and prints the request id" [ -n "$ID" ]
check "... the sentence the approvers read: window end in ISO 8601 UTC and its count" \
    grep -Eq "summary +open the issuance window of PAI pai-8000 until [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z for at most 250 DACs" "$W/out"
check "... 0 of 2 approvals" grep -Eq "approvals +0 of 2" "$W/out"
# (a 13-digit run not inside a longer hex word: the request id is 32 random hex digits)
check "... no epoch milliseconds anywhere" sh -c "! grep -Eq '(^|[^0-9a-f])[0-9]{13}([^0-9a-f]|$)' '$W/out'"

req approver show "$ID"
check "an approver shows it" [ "$RC" = 0 ]
check "... the same window" grep -q "max_dacs   250" "$W/out"
req admin show "$ID" --json
check "show --json is the envelope" jq -e --arg id "$ID" '.digest and .request and .status == "pending"' "$W/out"
call approver GET "/v1/requests/$ID"
check "GET /v1/requests/{id} carries the view: window end in ISO 8601 UTC, its count, 0 of 2" \
    jq -e '(.view.until | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")) and
           .view.window.max_dacs == 250 and .view.approvals == "0 of 2" and
           (.view.summary | startswith("open the issuance window of PAI pai-8000"))' "$W/body"

# ---- ca.activate naming nodes: only for several nodes on PostgreSQL (nodes_quorum.sh) ----
n0=$(store_sql "SELECT count(*) FROM quorum_requests")
req admin create ca.activate --ca pai-8000 --until +2h --max-dacs 5 --nodes node-1,node-2
check "--nodes on a store of one node is refused (exit $RC)" [ "$RC" = 1 ]
check "... naming quorum-nodes-unsupported" grep -q quorum-nodes-unsupported "$W/err"
check "... audited, and no request made" sh -c "[ $(store_sql "SELECT count(*) FROM audit_entries
    WHERE CAST(line AS TEXT) LIKE '%\"action\":\"quorum.request\"%' AND CAST(line AS TEXT) LIKE
    '%quorum-nodes-unsupported%'") = 1 ] &&
    [ $(store_sql "SELECT count(*) FROM quorum_requests") = $n0 ]"
req admin create ca.activate --ca pai-8000 --window 0123456789abcdef0123456789abcdef \
    --nodes node-1,node-2
check "--nodes with --window is a usage error (exit $RC)" [ "$RC" = 2 ]

# ---- create: ca.create_pai with VID/PID in hex ----
req admin create ca.create_pai --ca pai-8001 --parent paa-1 --token hsmca-pai-8000 --key-label k2 \
    --vid fff1 --pid 8001
PAI_ID=$(sed -n 's/^request \([0-9a-f]\{32\}\) created.*/\1/p' "$W/out")
check "ca.create_pai with --vid fff1 --pid 8001 is asked" [ -n "$PAI_ID" ]
check "... VID and PID shown as 4 uppercase hex digits" sh -c \
    "grep -Eq '^  vid +FFF1\$' '$W/out' && grep -Eq '^  pid +8001\$' '$W/out'"

# ---- check before asking: a wrong-VID PAI is refused at creation, before any approval ----
req admin create ca.create_pai --ca pai-fff2 --parent paa-1 --token hsmca-pai-8000 \
    --key-label k3 --vid FFF2 --pid 8001
check "a PAI with VID FFF2 under the FFF1 PAA is refused at creation (exit 1)" sh -c \
    "[ '$RC' = 1 ] && grep -q 'quorum-params-invalid' '$W/err'"
check "... saying which VID the PAA's scope allows" grep -q 'outside the scope of PAA paa-1 (VID FFF1)' "$W/err"
nreq=$(store_sql "SELECT count(*) FROM quorum_requests WHERE CAST(bytes AS TEXT) LIKE '%pai-fff2%'")
nkey=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%ca.keygen%k3%'")
check "... no request was made, so no approver is asked and no key generated" \
    [ "$nreq:$nkey" = 0:0 ]
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%quorum.request.refuse%'" > "$W/refusals.txt"
check "... and the refusal is audited" grep -q quorum-params-invalid "$W/refusals.txt"
req admin create ca.create_pai --ca pai-x --parent paa-1 --token hsmca-missing --key-label k4 \
    --vid FFF1 --pid 8002
check "a PAI on a token the module does not have is refused at creation" sh -c \
    "[ '$RC' = 1 ] && grep -q 'token hsmca-missing is not present' '$W/err'"

# ---- list, with and without a status ----
req auditor list
check "an auditor may not list requests" sh -c "[ '$RC' = 1 ] && grep -q http-forbidden '$W/err'"
req admin list
check "list shows both, newest first" sh -c \
    "[ '$RC' = 0 ] && sed -n 2p '$W/out' | grep -q '^$PAI_ID' && sed -n 3p '$W/out' | grep -q '^$ID'"
call admin GET "/v1/requests?status=pending&limit=1"
check "GET /v1/requests?limit=1: one item, its view in hex" \
    jq -e --arg id "$PAI_ID" '(.items | length) == 1 and .items[0].id == $id and
        .items[0].view.vid == "FFF1" and .items[0].view.pid == "8001"' "$W/body"
call admin GET "/v1/requests?status=bogus"
expect "an unknown status" 400 http-bad-query
call admin GET "/v1/requests?limit=501"
expect "a limit beyond 500" 400 http-bad-query

# ---- the window opens; the list follows ----
call approver GET "/v1/requests/$ID"
cp "$W/body" "$W/envelope.json"
for a in bob-approver dave-approver; do
    "$HSMCA_PKI_BIN" approve "$W" "$a" "$W/envelope.json" > "$W/appr-$a.json"
done
call approver POST "/v1/requests/$ID/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-bob-approver.json"
call approver2 POST "/v1/requests/$ID/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-dave-approver.json"
check "two approvals open the window" jq -e '.executed == true' "$W/body"
req admin list --status executed
check "list --status executed shows it, 2 of 2" sh -c \
    "[ '$RC' = 0 ] && [ \$(wc -l < '$W/out') = 2 ] && grep -Eq '^$ID +executed +2 of 2' '$W/out'"
req admin list --status pending
check "list --status pending: the PAI request only" sh -c \
    "[ \$(wc -l < '$W/out') = 2 ] && grep -q '^$PAI_ID' '$W/out'"

# ---- cancel: the pending PAI request is withdrawn, closed as cancelled, audited ----
call approver GET "/v1/requests/$PAI_ID"
cp "$W/body" "$W/envelope-pai.json"
"$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope-pai.json" > "$W/appr-pai.json"
req admin cancel "$PAI_ID" --reason "wrong key label"
check "request cancel exits 0" sh -c "[ '$RC' = 0 ] && grep -q 'cancelled' '$W/out'"
req admin list --status cancelled
check "... the request shows status cancelled" grep -Eq "^$PAI_ID +cancelled" "$W/out"
req admin list --status failed
check "... and is not listed as failed" sh -c "! grep -q '^$PAI_ID' '$W/out'"
call admin GET "/v1/requests/$PAI_ID"
check "GET /v1/requests/{id} says cancelled" jq -e '.status == "cancelled"' "$W/body"
call admin GET "/v1/requests?status=cancelled"
check "GET /v1/requests?status=cancelled lists it" \
    jq -e --arg id "$PAI_ID" '[.items[] | select(.id == $id and .status == "cancelled")] | length == 1' \
    "$W/body"
st=$(store_sql "SELECT status FROM quorum_requests WHERE id = '$PAI_ID'")
check "the store holds status cancelled" [ "$st" = cancelled ]
call approver POST "/v1/requests/$PAI_ID/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/appr-pai.json"
expect "an approval made before the cancellation is refused" 409 quorum-request-executed
req admin cancel "$PAI_ID"
check "cancelling it again: exit 1, quorum-request-executed" sh -c \
    "[ '$RC' = 1 ] && grep -q quorum-request-executed '$W/err'"
call approver POST "/v1/requests/$PAI_ID/cancellation" -H 'Content-Type: application/json' \
    --data-binary '{}'
expect "an approver may not cancel" 403 http-forbidden
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries WHERE CAST(line AS TEXT) LIKE '%\"quorum.cancel\"%'" > "$W/cancel.txt"
check "the cancellation is audited with its reason" grep -q 'wrong key label' "$W/cancel.txt"

# ---- refusals (exit 1, the problem code) and usage errors (exit 2, nothing sent) ----
req admin create ca.activate --ca pai-9999 --until +1h --max-dacs 5
check "a request the quorum refuses: exit 1 naming the code" sh -c \
    "[ '$RC' = 1 ] && grep -q 'quorum-params-invalid' '$W/err'"
while read -r args; do
    # shellcheck disable=SC2086
    req admin $args
    check "hsmca request $args: exit 2, stderr only" sh -c "[ '$RC' = 2 ] && [ ! -s '$W/out' ] && [ -s '$W/err' ]"
done <<ARGS
create ca.activate --ca pai-8000 --until yesterday --max-dacs 5
create ca.activate --ca pai-8000 --until +1h
create ca.activate --ca pai-8000 --until +1h --max-dacs 0
create ca.create_pai --ca x --parent paa-1 --token t --key-label k --vid GGGG
create ca.create_paa --ca x --token t --key-label k --pid 8000
create bogus.op --ca x
show 1234
list --status maybe
list --limit 0
create ca.activate --ca pai-8000 --until +1h --max-dacs 5 --ca again
ARGS
stop_daemon || bad "daemon exit status"
finish
