#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# quorum.sh -- the quorum online, end to end: `hsmca ceremony init` puts the PAA and PAI tokens
# under 2-of-3 control, the real hsmcad serves the quorum routes, the admin requests a PAA,
# approvers fetch, witness, sign and submit with `hsmca approve --url` (their own SoftHSM tokens,
# their own client certificates), and the PAA exists once two have approved. Refusals over HTTP:
# the requester approving, a second approval by the same approver, an approval without an
# approver certificate.
. "$(dirname "$0")/lib.sh"

setup_tokens
softhsm_token "$SOFTHSM2_CONF" hsmca-paa so-pin-1234 paa-pin-1234
setup_tls
for n in alice bob carol; do
    mkcert "$n" "$n"
done
cat > "$W/roles.json" <<JSON
{"version": 1, "certificates": {
  "$(fingerprint admin)": {"principal": "alice-admin", "role": "admin"},
  "$(fingerprint alice)": {"principal": "alice", "role": "approver"},
  "$(fingerprint bob)": {"principal": "bob", "role": "approver"},
  "$(fingerprint carol)": {"principal": "carol", "role": "approver"},
  "$(fingerprint auditor)": {"principal": "carol-auditor", "role": "auditor"}
}}
JSON
umask 077
printf 'so-pin-1234\n' > "$W/so.pin"

# the approvers' own host: one SoftHSM with three approver tokens
softhsm_conf "$W/appr"
for n in alice bob carol; do
    printf '%s-pin-1234\n' "$n" > "$W/$n.pin"
    softhsm_token "$W/appr/softhsm2.conf" "approver-$n" so-pin-1234 "$n-pin-1234"
    SOFTHSM2_CONF="$W/appr/softhsm2.conf" "$HSMCA_BIN" token keygen --module "$MODULE" \
        --pin-file "$W/$n.pin" --derive "pkcs11:token=approver-$n;object=approver-key" \
        > "$W/$n.pub.pem"
done
umask 022

cd "$W"
check "ceremony init (2 of 3)" "$HSMCA_BIN" ceremony init --module "$MODULE" --store "$STORE_CONF" \
    --audit-token pkcs11:token=hsmca-audit --audit-pin-file audit.pin \
    --token pkcs11:token=hsmca-paa --token pkcs11:token=hsmca-pai-8000 --so-pin-file so.pin \
    --approver alice=alice.pub.pem --approver bob=bob.pub.pem --approver carol=carol.pub.pem \
    --m 2 --policy "$HSMCA_SOURCE_DIR/policies/quorum.json" --id integ
cat > "$W/hsmcad.json" <<JSON
{
  "listen": "127.0.0.1:0",
  "allow_root": true,
  "pkcs11_module": "$MODULE",
  "store": "$STORE_CONF",
  "roles": "roles.json",
  "profiles_dir": "$HSMCA_SOURCE_DIR/policies/profiles",
  "tls": {"cert": "tls/server.pem", "key": "tls/server.key", "client_ca": "tls/ca.pem"},
  "audit": {"token": "pkcs11:token=hsmca-audit", "key": "pkcs11:token=hsmca-audit;object=audit-key",
            "pin_file": "audit.pin", "certificate": "audit.pub.pem", "origin": "hsmca",
            "checkpoint_entries": 50, "checkpoint_interval_s": 60},
  "limits": {"body_max": 65536, "batch_max": 1000, "threads": 4, "timeout_s": 10,
             "refusals_per_minute": 1000, "refusal_entries_per_second": 100000}
}
JSON
start_daemon

call approver GET /v1/approvers
call alice GET /v1/approvers
expect "an approver cannot list approvers (admin, auditor)" 403
call admin GET /v1/approvers
expect "admin lists the approvers" 200
check "three approvers in epoch 1" sh -c "jq -e '(.approvers | length) == 3 and .epoch == 1' '$W/body' >/dev/null"

call admin POST /v1/requests -H 'Content-Type: application/json' --data-binary \
    '{"op":"ca.create_paa","params":{"ca":"paa-1","token":"hsmca-paa","key_label":"paa-key","vid":65521},"ttl_s":600}'
expect "admin requests a PAA" 201
ID=$(jq -r .id "$W/body")
check "the envelope carries a checkpoint" sh -c "jq -e '.envelope.request' '$W/body' >/dev/null"

approve() { # name [extra args]
    n=$1
    shift
    SOFTHSM2_CONF="$W/appr/softhsm2.conf" "$HSMCA_BIN" approve --module "$MODULE" \
        --url "https://127.0.0.1:$PORT" --cert "tls/$n.pem" --key "tls/$n.key" \
        --cacert tls/ca.pem "$ID" --name "$n" \
        --key-uri "pkcs11:token=approver-$n;object=approver-key" --pin-file "$n.pin" \
        --audit-pub audit.pub.pem --state "$n.witness" --yes "$@" > "$W/approve-$n.out" 2>&1
}
check "alice approves online" approve alice --out alice.json
check "alice's answer: 1 of 2" grep -q '"approvals":1' "$W/approve-alice.out"
check "alice was shown the request in short: VID as 4 hex digits" \
    grep -Eq '^  vid +FFF1$' "$W/approve-alice.out"
check "... times in ISO 8601 UTC and the count of approvals" sh -c \
    "grep -Eq '^  expires +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' '$W/approve-alice.out' &&
     grep -Eq '^  approvals +0 of 2$' '$W/approve-alice.out'"
call alice POST "/v1/requests/$ID/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/alice.json"
expect "a second approval by alice" 409 quorum-duplicate-approval
call admin POST "/v1/requests/$ID/approvals" -H 'Content-Type: application/json' \
    --data-binary @"$W/alice.json"
expect "an admin cannot submit approvals" 403
check "bob approves online and the PAA is made" approve bob
check "bob's answer: executed" grep -q '"executed":true' "$W/approve-bob.out"
call admin GET /v1/cas/paa-1
expect "the PAA exists" 200
call admin GET "/v1/requests/$ID"
expect "the request is visible" 200
check "the request is executed" sh -c "jq -e '.status == \"executed\"' '$W/body' >/dev/null"
approve_refused() { ! approve "$@"; }
check "carol approving afterwards is refused" approve_refused carol
check "... as executed or without a share" grep -Eq 'quorum-(request-executed|no-share)' \
    "$W/approve-carol.out"

# the approver as a witness: a log shorter than the one alice saw is refused before she signs
call admin POST /v1/requests -H 'Content-Type: application/json' --data-binary \
    '{"op":"approver.remove","params":{"name":"carol"},"ttl_s":600}'
expect "admin requests a removal" 201
ID=$(jq -r .id "$W/body")
jq -c '.size += 1000' alice.witness > alice.witness.forged && mv alice.witness.forged alice.witness
check "alice refuses: the log is shorter than she saw" approve_refused alice
check "... with quorum-fork" grep -q 'quorum-fork' "$W/approve-alice.out"
check "... and submitted nothing" sh -c "! grep -q '^server:' '$W/approve-alice.out'"
stop_daemon || bad "daemon exit status"
# the auditor's view of the ceremony: the log up to its checkpoint verifies offline
SIZE=$("$HSMCA_BIN" audit archive --store "$STORE_CONF" --from 1 --to 1 --out ex1 | sed -n 's/.*entries 1\.\.\([0-9]*\).*/\1/p')
check "the ceremony's part of the log archives" test -n "$SIZE"
check "... and verifies offline" "$HSMCA_BIN" audit verify ex1
nq=$("$HSMCA_BIN" audit verify ex1 --json | jq -r .quorum_ops)
check "... and with its verify.sh (the same count of quorum operations: $nq)" \
    sh -c "sh ex1/verify.sh ex1 2>&1 | grep -q ', $nq quorum operations,'"
finish
