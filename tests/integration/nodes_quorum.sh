#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# nodes_quorum.sh -- one quorum operation activates the PAI on every node named in it
# (docs/postgresql.md, "One quorum for several nodes"). Two nodes on one PostgreSQL store,
# the tokens through `p11-kit server` (nodes_lib.sh). A ca.activate naming node-1 and node-2,
# made through node 1: node 2 posts its one-time request key through the store, the demo
# approvers' shares are re-sealed to both nodes' keys, and one execution logs both nodes in
# before the one PIN rotation; both then issue under the one window. Bad nodes lists are refused
# with their codes and audited, changing nothing. A second activation of both without any
# restart (the SoftHSM caveat: node 2 refused alone with pin-incorrect). A named node hung
# (SIGSTOP) at the execution: the other is activated, the silent one fails with
# quorum-node-timeout at the 30 s deadline, the PIN still rotates; killed at the execution: it
# fails at once with quorum-node-down (its liveness lock gone); down at the request: refused with
# quorum-node-unavailable, named as down, nothing pending; and the
# quorum activates both again afterwards (nothing was lost). The executor stopped after node 2's
# login and killed before, around and after the one rotation: each time the quorum activates the
# restarted node again. One extract verifies the whole chain.
HSMCA_TEST_STORE=pg
export HSMCA_TEST_STORE
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nodes_lib.sh"

nodes_setup
node_start 1
node_start 2
check "each node holds its liveness lock from before it listens (their logs)" sh -c \
    "grep -q 'node-live.*node=node-1' '$W/hsmcad.log' && grep -q 'node-live.*node=node-2' '$W/hsmcad2.log'"
# (p11-kit server serves each client connection from a process of its own, each with its own
# SoftHSM: the reason a rotation made on one node is not seen by another's SoftHSM)
echo "# p11-kit server $SPID: $(ps -o pid= --ppid "$SPID" | wc -l) child processes for 2 nodes"
count_action() { store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
    '%\"action\":\"$1\"%'"; }
refused_with() { store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
    '%\"action\":\"quorum.request\"%' AND CAST(line AS TEXT) LIKE '%\"code\":\"$1\"%'"; }
token_epoch() { store_sql "SELECT epoch FROM quorum_tokens WHERE label = 'hsmca-pai-8000'"; }

# request K NODES-JSON: a ca.activate naming NODES made through node K ($rid, or the refusal)
request() {
    on "$1"
    until=$(($(date +%s) * 1000 + 600000))
    call admin POST /v1/requests -H 'Content-Type: application/json' --data-binary \
        "{\"op\":\"ca.activate\",\"params\":{\"ca\":\"pai-8000\",\"until\":$until,\"max_dacs\":$MAX,\"nodes\":$2}}"
    rid=$(jq -r '.id // empty' "$W/body")
}
# approve K: bob and dave approve $rid through node K (the requesting node); the answer in body
approve() {
    on "$1"
    call approver GET "/v1/requests/$rid"
    cp "$W/body" "$W/envelope.json"
    "$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope.json" > "$W/appr-bob.json" || return 1
    "$HSMCA_PKI_BIN" approve "$W" dave-approver "$W/envelope.json" > "$W/appr-dave.json" || return 1
    call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-bob.json"
    call approver2 POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-dave.json"
    jq -e '.executed == true' "$W/body" > /dev/null
}
node_state() { store_sql "SELECT state FROM quorum_nodes WHERE request_id = '$rid' AND node = '$1'"; }
wait_state() { # NODE STATE: up to 10 s
    i=0
    while [ "$(node_state "$1")" != "$2" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
    [ "$(node_state "$1")" = "$2" ]
}
deactivate() { on "$1"; call admin POST /v1/cas/pai-8000/deactivation; [ "$STATUS" = 200 ]; }

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device-q" \
    -keyout "$W/d.key" -out "$W/d.pem" 2>/dev/null
jq -n --rawfile c "$W/d.pem" '{csr: $c}' > "$W/d.json"

# ---- bad nodes lists: refused with their codes, audited, nothing changed ----
reqs0=$(store_sql "SELECT count(*) FROM quorum_requests")
request 1 '["node-1","node-9"]'
c=$(jq -r .code "$W/body")
check "a node the store never saw is refused ($STATUS $c)" \
    sh -c "[ $STATUS = 400 ] && [ '$c' = quorum-node-unknown ]"
check "... and audited" [ "$(refused_with quorum-node-unknown)" = 1 ]
request 1 '["node-1","node-1"]'
c=$(jq -r .code "$W/body")
check "a node named twice is refused ($STATUS $c)" \
    sh -c "[ $STATUS = 400 ] && [ '$c' = quorum-node-duplicate ]"
check "... and audited" [ "$(refused_with quorum-node-duplicate)" = 1 ]
request 1 '["node-2","node-3"]'
c=$(jq -r .code "$W/body")
check "a list without the requesting node is refused ($STATUS $c)" \
    sh -c "[ $STATUS = 400 ] && [ '$c' = quorum-nodes-invalid ]"
request 1 '["node-1"]'
c=$(jq -r .code "$W/body")
check "a list of one node is refused ($STATUS $c)" \
    sh -c "[ $STATUS = 400 ] && [ '$c' = quorum-nodes-invalid ]"
check "... audited ($(refused_with quorum-nodes-invalid))" [ "$(refused_with quorum-nodes-invalid)" = 2 ]
check "the refusals made no request and no node row" \
    sh -c "[ $(store_sql "SELECT count(*) FROM quorum_requests") = $reqs0 ] &&
        [ $(store_sql "SELECT count(*) FROM quorum_nodes") = 0 ]"

# ---- one quorum activates both nodes ----
ms() { echo $(($(date +%s%N) / 1000000)); }
e0=$(token_epoch)
t0=$(ms)
request 1 '["node-1","node-2"]'
t1=$(ms)
check "a ca.activate naming both nodes is requested through node 1 ($STATUS)" [ "$STATUS" = 201 ]
W1=$rid
check "node 2 posted its own request key through the store" \
    [ "$(store_sql "SELECT count(*) FROM quorum_nodes WHERE request_id = '$rid' AND
        state = 'key' AND request_key <> ''")" = 2 ]
jq -r .request "$W/body" > /dev/null
call approver GET "/v1/requests/$rid"
jq -r .request "$W/body" | base64 -d > "$W/req.bytes"
check "the bytes the approvers sign carry both nodes' keys" \
    jq -e '(.node_keys | keys) == ["node-1","node-2"] and .node_keys["node-1"] == .request_key' \
    "$W/req.bytes"
t2=$(ms)
check "bob and dave approve it once, through node 1: executed" approve 1
t3=$(ms)
check "... both nodes logged in ($(jq -c .result.nodes "$W/body"))" \
    jq -e '.result.nodes.activated == ["node-1","node-2"] and .result.nodes.failed == []' "$W/body"
check "... one PIN rotation for both ($e0 -> $(token_epoch))" [ "$(token_epoch)" = $((e0 + 1)) ]
check "node 2 joined the window once the request was executed" wait_state node-2 joined
t4=$(ms)
echo "# timing: request with node 2's key $((t1 - t0)) ms; two approvals and the execution" \
    "(both logins, one rotation) $((t3 - t2)) ms; node 2 in the window $((t4 - t3)) ms later"
check "node 1's row says joined" [ "$(node_state node-1)" = joined ]
check "one quorum.execute entry names both nodes" \
    [ "$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
        '%\"action\":\"quorum.execute\"%' AND CAST(line AS TEXT) LIKE '%$rid%' AND
        CAST(line AS TEXT) LIKE '%\"activated\":[\"node-1\",\"node-2\"]%'")" = 1 ]
check "node 2's login and join are its own entries" \
    sh -c "[ $(count_action quorum.node.login) = 1 ] && [ $(count_action quorum.node.join) = 1 ] &&
        [ $(count_action quorum.node.key) = 1 ]"
st1=$(dac_post 1 q-1 "$W/d.json" "$W/q-1.pem")
st2=$(dac_post 2 q-2 "$W/d.json" "$W/q-2.pem")
check "a DAC through node 1 ($st1) and one through node 2 ($st2)" \
    sh -c "[ '$st1' = 201 ] && [ '$st2' = 201 ]"
check "both DACs are under the one window" \
    [ "$(store_sql "SELECT count(*) FROM certificates WHERE window_id = '$W1' AND
        request_id IN ('q-1', 'q-2')")" = 2 ]

# ---- again, without restarting either node (the SoftHSM caveat, docs/postgresql.md) ----
# node 2 logged in before the one rotation, so the first activation needed no restart; but its
# SoftHSM instance (p11-kit server runs one per client) still holds the PIN state it read at
# start, so the PIN node 1's rotation set is refused there until node 2 restarts: it fails alone
check "node 1 closes its window" deactivate 1
check "node 2 closes its window" deactivate 2
e1=$(token_epoch)
request 1 '["node-1","node-2"]'
check "a second ca.activate naming both, neither restarted ($STATUS)" [ "$STATUS" = 201 ]
W2=$rid
check "... approved and executed through node 1" approve 1
check "... node 1 activated; node 2's stale SoftHSM refuses the new PIN ($(jq -c .result.nodes "$W/body"))" \
    jq -e '.result.nodes.activated == ["node-1"] and
        .result.nodes.failed == [{"node":"node-2","code":"pin-incorrect"}]' "$W/body"
check "... one rotation ($e1 -> $(token_epoch))" [ "$(token_epoch)" = $((e1 + 1)) ]
check "... node 2's failed login is its own entry" \
    [ "$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
        '%\"action\":\"quorum.node.login\"%' AND CAST(line AS TEXT) LIKE '%\"outcome\":\"failed\"%'
        AND CAST(line AS TEXT) LIKE '%$W2%'")" = 1 ]
st1=$(dac_post 1 q-3 "$W/d.json" "$W/q-3.pem")
st2=$(dac_post 2 q-4 "$W/d.json" "$W/q-4.pem")
check "node 1 issues under the second window ($st1), node 2 is not active ($st2)" \
    sh -c "[ '$st1' = 201 ] && [ '$st2' = 409 ] && [ $(store_sql "SELECT count(*) FROM certificates
        WHERE window_id = '$W2' AND request_id = 'q-3'") = 1 ]"

# approve_without HOW: node 2 HOW (stopped, killed) before the approvals; node 1 executes alone
approve_without() {
    t0=$(date +%s%N)
    check "node 2 is $1 before the approvals; node 1 executes without it" approve 1
    echo "# the approvals with node 2 $1 took $((($(date +%s%N) - t0) / 1000000)) ms"
}
# failed_alone CODE REQUEST EPOCH: node 1 activated, node 2 failed with CODE, its row too, and the
# PIN rotated once from EPOCH all the same
failed_alone() {
    check "... node 1 activated, node 2 failed with $1 ($(jq -c .result.nodes "$W/body"))" \
        jq -e --arg c "$1" '.result.nodes.activated == ["node-1"] and
            .result.nodes.failed == [{"node": "node-2", "code": $c}]' "$W/body"
    check "... the PIN still rotated ($3 -> $(token_epoch))" [ "$(token_epoch)" = $(($3 + 1)) ]
    check "... node 2's row failed with its code" \
        [ "$(store_sql "SELECT state || ' ' || code FROM quorum_nodes WHERE request_id = '$2' AND
            node = 'node-2'")" = "failed $1" ]
}

# ---- a named node hung at the execution: the executor waits its 30 s, then goes on ----
check "node 1 closes its window (2)" deactivate 1
e2=$(token_epoch)
request 1 '["node-1","node-2"]'
check "a third ca.activate naming both ($STATUS)" [ "$STATUS" = 201 ]
W3=$rid
# stopped (SIGSTOP), node 2's process and its store session live on: it is not down, only silent
kill -STOP "$D2PID"
approve_without stopped
kill -CONT "$D2PID"
failed_alone quorum-node-timeout "$W3" "$e2"
check "... the timeout is audited" [ "$(count_action quorum.node.timeout)" = 1 ]
st1=$(dac_post 1 q-5 "$W/d.json" "$W/q-5.pem")
check "node 1 issues under the third window ($st1)" sh -c "[ '$st1' = 201 ] &&
    [ $(store_sql "SELECT window_id FROM certificates WHERE request_id = 'q-5'") = '$W3' ]"

# ---- a named node down at the execution: failed at once, not at the deadline ----
check "node 1 closes its window (3)" deactivate 1
e2=$(token_epoch)
request 1 '["node-1","node-2"]'
check "a ca.activate naming both, node 2 running ($STATUS)" [ "$STATUS" = 201 ]
W3b=$rid
# killed, its store session ends with it and its liveness lock goes (docs/postgresql.md)
node_kill9 2
approve_without killed
failed_alone quorum-node-down "$W3b" "$e2"
check "... one quorum.node.down entry naming node 2, and no new timeout" sh -c "
    [ $(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
        '%\"action\":\"quorum.node.down\"%' AND CAST(line AS TEXT) LIKE '%\"node\":\"node-2\"%'
        AND CAST(line AS TEXT) LIKE '%$W3b%'") = 1 ] && [ $(count_action quorum.node.timeout) = 1 ]"
st1=$(dac_post 1 q-5b "$W/d.json" "$W/q-5b.pem")
check "node 1 issues under that window ($st1)" [ "$st1" = 201 ]

# ---- a named node down at the request: refused, nothing pending ----
reqs0=$(store_sql "SELECT count(*) FROM quorum_requests")
voids0=$(store_sql "SELECT count(*) FROM quorum_nodes WHERE state = 'void'")
t0=$(date +%s%N)
request 1 '["node-1","node-2"]'
echo "# the request naming the killed node 2 took $((($(date +%s%N) - t0) / 1000000)) ms"
c=$(jq -r .code "$W/body")
check "a request naming the down node 2 is refused ($STATUS $c)" \
    sh -c "[ $STATUS = 503 ] && [ '$c' = quorum-node-unavailable ]"
check "... audited, naming the missing node, found down" \
    [ "$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
        '%\"action\":\"quorum.request\"%' AND CAST(line AS TEXT) LIKE
        '%quorum-node-unavailable%' AND CAST(line AS TEXT) LIKE '%\"missing\":[\"node-2\"]%'
        AND CAST(line AS TEXT) LIKE '%\"down\":[\"node-2\"]%'")" = 1 ]
check "... no request made, its node rows void" \
    sh -c "[ $(store_sql "SELECT count(*) FROM quorum_requests") = $reqs0 ] &&
        [ $(store_sql "SELECT count(*) FROM quorum_nodes WHERE state = 'void'") = $((voids0 + 2)) ]"

# ---- nothing was lost: the quorum activates both again ----
check "node 2 starts again" node_start 2
check "node 1 closes its window (4)" deactivate 1
e3=$(token_epoch)
request 1 '["node-1","node-2"]'
check "a fourth ca.activate naming both ($STATUS)" [ "$STATUS" = 201 ]
check "... approved: both nodes activated again" approve 1
check "... ($(jq -c .result.nodes "$W/body"))" \
    jq -e '.result.nodes.activated == ["node-1","node-2"]' "$W/body"
check "... one rotation ($e3 -> $(token_epoch))" [ "$(token_epoch)" = $((e3 + 1)) ]
check "node 2 joined the fourth window" wait_state node-2 joined
st2=$(dac_post 2 q-6 "$W/d.json" "$W/q-6.pem")
check "node 2 issues under it ($st2)" [ "$st2" = 201 ]

# ---- the executor dies after the other node's login: before, during or after the one rotation;
# the quorum never loses the key ----
# node 2 is stopped (SIGSTOP) before the execution, so node 1 waits for its login; node 1 is
# stopped in that wait and node 2 let go on: it logs in while node 1 cannot rotate. Then node 1
# is killed (SIGKILL) still stopped (the worst case: another node logged in, the rotation not
# begun), or let go on and killed 0 or 0.15 s later (around the rotation: it sees the login
# within 0.2 s). Each time node 1 restarts (reconciling the rotation's write-ahead intents,
# docs/custody.md) and the quorum activates it again: whatever instant the kill hit, the
# approvers' shares still open the PAI's token.
for when in stopped 0 0.15; do
    check "node 2 restarts (a fresh SoftHSM view of the PIN) [$when]" node_stop 2
    node_start 2
    check "node 1 closes its window [$when]" deactivate 1
    e=$(token_epoch)
    request 1 '["node-1","node-2"]'
    KR=$rid
    call approver GET "/v1/requests/$rid"
    cp "$W/body" "$W/envelope.json"
    "$HSMCA_PKI_BIN" approve "$W" bob-approver "$W/envelope.json" > "$W/appr-bob.json"
    "$HSMCA_PKI_BIN" approve "$W" dave-approver "$W/envelope.json" > "$W/appr-dave.json"
    call approver POST "/v1/requests/$rid/approvals" -H 'Content-Type: application/json' \
        --data-binary @"$W/appr-bob.json"
    kill -STOP "$D2PID"
    # the second approval runs the execution; its answer never comes (node 1 dies)
    curl -sS --cacert "$W/tls/ca.pem" --cert "$W/tls/approver2.pem" --key "$W/tls/approver2.key" \
        -H 'Content-Type: application/json' --data-binary @"$W/appr-dave.json" -o /dev/null \
        -m 60 "https://127.0.0.1:$PORT1/v1/requests/$rid/approvals" 2>/dev/null &
    BG=$!
    check "node 1 says go and waits for node 2 [$when]" wait_state node-2 go
    kill -STOP "$DPID"
    kill -CONT "$D2PID"
    check "node 2 logs in while node 1 is stopped [$when]" wait_state node-2 in
    if [ "$when" != stopped ]; then
        kill -CONT "$DPID"
        sleep "$when"
    fi
    node_kill9 1
    wait "$BG" 2>/dev/null || true
    rs=$(store_sql "SELECT status FROM quorum_requests WHERE id = '$KR'")
    e2=$(token_epoch)
    echo "# [$when] killed: request $rs, token epoch $e -> $e2"
    [ "$when" != stopped ] ||
        check "killed stopped: the request never executed, the PIN never rotated ($rs, $e -> $e2)" \
            sh -c "[ '$rs' = pending ] && [ '$e2' = '$e' ]"
    check "node 1 starts again after the kill [$when]" node_start 1
    t0=$(ms)
    check "the quorum activates node 1 again [$when]" activate 1
    echo "# timing: a request and two approvals for node 1 alone $(($(ms) - t0)) ms"
    st1=$(dac_post 1 "k-$when" "$W/d.json" "$W/k.pem")
    check "node 1 issues ($st1) [$when]" [ "$st1" = 201 ]
    if [ "$rs" = pending ]; then
        # node 2 is logged in for a request that will never execute: restarted, it drops the row
        check "node 2 restarts [$when]" node_stop 2
        node_start 2
        rid=$KR
        check "the restarted node 2 closes its row of the dead executor's request [$when]" \
            wait_state node-2 failed
        check "... quorum-request-void (its login went with its restart)" \
            [ "$(store_sql "SELECT code FROM quorum_nodes WHERE request_id = '$KR' AND
                node = 'node-2'")" = quorum-request-void ]
        st2=$(dac_post 2 "k2-$when" "$W/d.json" "$W/k2.pem")
        check "node 2 signs nothing ($st2)" [ "$st2" = 409 ]
    fi
done

# ---- a cancelled request: each node drops its one-time key (it can never be used) ----
request 1 '["node-1","node-2"]'
CR=$rid
call admin POST "/v1/requests/$CR/cancellation" -H 'Content-Type: application/json' \
    --data-binary '{"reason":"test"}'
check "a request naming both is cancelled ($STATUS)" [ "$STATUS" = 200 ]
i=0
while ! grep -q "request-key-dropped request=$CR" "$W/hsmcad2.log" && [ $i -lt 200 ]; do
    i=$((i + 1))
    sleep 0.1
done
check "node 2 drops its key of the cancelled request (its 10 s sweep)" \
    grep -q "request-key-dropped request=$CR" "$W/hsmcad2.log"

# ---- one chain ----
check "node 2 stops with status 0" node_stop 2
one_extract_verifies "both nodes' quorum entries"
check "SIGTERM stops node 1 with status 0" node_stop 1
finish
