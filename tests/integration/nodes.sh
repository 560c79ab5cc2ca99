#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# nodes.sh -- two hsmcad nodes serving one CA from one PostgreSQL store (docs/postgresql.md).
# A throwaway PostgreSQL (pg.sh; this test always runs on it), the tokens exported by
# `p11-kit server` and reached by both nodes through p11-kit-client.so (as they would reach a
# network HSM), and two daemons on their own ports with the same config (nodes_lib.sh). Node 1's
# quorum request opens the PAI's window in the store; node 2's own request joins it, so both
# count against one window (its DACs stamped with its id). Then both issue DACs at once, each
# with its own request ids; every id retried on the other node returns the same DAC (a replay,
# never a second DAC); the audit log is one chain with the entries of both nodes (each entry's
# prev the hash of the one before it, whichever node wrote it), its seqs without a gap, and one
# extract of the whole log verifies offline. Last, node 2 starts three times while node 1 appends
# and signs checkpoints (node 1 signs one every 4 entries), its token slow to give the audit
# anchor: its self-check reads the store's head after the anchor and the checkpoint it checks,
# so another node's writes meanwhile never make it refuse to start.
HSMCA_TEST_STORE=pg
export HSMCA_TEST_STORE
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nodes_lib.sh"

nodes_setup
jq '.audit.checkpoint_entries = 4' "$W/hsmcad.json" > "$W/hsmcad.json.new" &&
    mv "$W/hsmcad.json.new" "$W/hsmcad.json"
node_start 1
check "node 1: a quorum request through it activates its PAI" activate 1
# (a node's token connection opened before another node's activation rotated the PAI token's PIN
# still holds the old PIN state in p11-kit's SoftHSM instance: node 2 starts after it)
node_start 2
on 2
call operator GET /readyz
check "node 2 is up on the same store ($STATUS)" [ "$STATUS" = 200 ]
WIN=$(cat "$W/window")
check "node 1's activation opened a window in the store ($WIN, $MAX DACs)" \
    [ "$(store_sql "SELECT max_dacs FROM windows WHERE id = '$WIN'")" = "$MAX" ]
call admin POST /v1/requests -H 'Content-Type: application/json' --data-binary \
    '{"op":"ca.activate","params":{"ca":"pai-8000","window":"00000000000000000000000000000000"}}'
check "joining a window the store does not hold is refused ($STATUS $(jq -r .code "$W/body"))" \
    sh -c "[ $STATUS = 400 ] || [ $STATUS = 422 ]"
check "node 2: its own quorum request joins node 1's window" activate 2 "$WIN"

# ---- both nodes issue at once ----
for n in a b; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device-$n" \
        -keyout "$W/$n.key" -out "$W/$n.pem" 2>/dev/null
    jq -n --rawfile c "$W/$n.pem" '{csr: $c}' > "$W/$n.json"
done
N=20
issue_loop() { # NODE NAME: N DACs with request ids NAME-1..NAME-N; "id serial" in NAME.serials
    k=1
    : > "$W/$2.serials"
    while [ $k -le $N ]; do
        st=$(dac_post "$1" "$2-$k" "$W/$2.json" "$W/$2-$k.pem")
        if [ "$st" = 201 ]; then
            echo "$2-$k $(serial_of "$W/$2-$k.pem")" >> "$W/$2.serials"
        else
            echo "$2-$k status $st" >> "$W/$2.errors"
        fi
        k=$((k + 1))
    done
}
issue_loop 1 a &
L1=$!
issue_loop 2 b &
L2=$!
wait "$L1" "$L2" || true
check "node 1 issued $N DACs ($(wc -l < "$W/a.serials"))" [ "$(wc -l < "$W/a.serials")" = $N ]
check "node 2 issued $N DACs ($(wc -l < "$W/b.serials"))" [ "$(wc -l < "$W/b.serials")" = $N ]
for f in a b; do [ ! -s "$W/$f.errors" ] || head -3 "$W/$f.errors"; done

# ---- every request id retried on the other node: the same DAC ----
same=0
retry() { # NODE NAME
    while read -r id serial; do
        st=$(dac_post "$1" "$id" "$W/$2.json" "$W/retry.pem")
        if [ "$st" = 200 ] || [ "$st" = 201 ]; then
            [ "$(serial_of "$W/retry.pem")" != "$serial" ] || same=$((same + 1))
        fi
    done < "$W/$2.serials"
}
retry 2 a
retry 1 b
check "every request id retried on the other node returned the same DAC ($same of $((2 * N)))" \
    [ "$same" = $((2 * N)) ]
n_certs=$(store_sql "SELECT count(*) FROM certificates WHERE request_id IS NOT NULL")
check "one certificate per request id ($n_certs)" [ "$n_certs" = $((2 * N)) ]
n_win=$(store_sql "SELECT count(*) FROM certificates WHERE window_id = '$WIN'")
used=$(store_sql "SELECT used FROM windows WHERE id = '$WIN'")
check "both nodes' DACs count against the one window ($n_win under it, $used of $MAX reserved)" \
    sh -c "[ $n_win = $((2 * N)) ] && [ $used -ge $n_win ] && [ $used -le $MAX ]"

# ---- one chain: both nodes' entries, verified offline from one extract ----
check "node 2 stops with status 0" node_stop 2
one_extract_verifies "the entries of both nodes"
count_action() { store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
    '%\"action\":\"$1\"%'"; }
issued=$(count_action dac.issue)
replays=$(count_action dac.replay)
starts=$(count_action daemon.start)
check "the log holds both nodes' starts ($starts), $((2 * N)) dac.issue ($issued) and $((2 * N)) dac.replay ($replays)" \
    sh -c "[ '$starts' = 2 ] && [ '$issued' = $((2 * N)) ] && [ '$replays' = $((2 * N)) ]"
crashes=$(count_action daemon.crash-detected)
restarts=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
    '%\"action\":\"window.end\"%' AND CAST(line AS TEXT) LIKE '%\"reason\":\"restart\"%'")
check "node 2 starting while node 1 runs is no crash of node 1's, nor closes its window ($crashes crash-detected, $restarts window.end restart)" \
    sh -c "[ '$crashes' = 0 ] && [ '$restarts' = 0 ]"
named=$(store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
    '%\"action\":\"daemon.start\"%' AND (CAST(line AS TEXT) LIKE '%\"node\":\"node-1\"%' OR
    CAST(line AS TEXT) LIKE '%\"node\":\"node-2\"%')")
check "each node's daemon.start names its node ($named of 2)" [ "$named" = 2 ]
# shellcheck disable=SC2046
set -- $(store_sql "SELECT count(*), min(seq), max(seq) FROM audit_entries" | tr '|' ' ')
check "the seqs run 1..$3 without a gap ($1 entries)" sh -c "[ '$1' = '$3' ] && [ '$2' = 1 ]"

# ---- a node's start never closes an intent that another node's execution holds ----
# (an execution holds the intents' lock from its first intent to its last closing entry; here a
# psql session plays that node: it takes the lock, and an open intent stands for its work)
iseq=$(store_sql "SELECT max(seq) FROM audit_entries")
store_sql "INSERT INTO audit_intents(seq, action) VALUES ($iseq, 'test.held')"
psql -X -q -A -t -h "$PG_SOCK" -U hsmca -d hsmca \
    -c "SELECT pg_advisory_lock(7236837384531522115)" -c "SELECT pg_sleep(15)" > /dev/null &
HOLDER=$!
i=0
until [ "$(store_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")" -ge 1 ] ||
    [ $i -gt 100 ]; do
    i=$((i + 1))
    sleep 0.1
done
check "node 2 starts while another session holds the intents' lock" node_start 2
check "... and leaves that session's intent open" \
    [ "$(store_sql "SELECT count(*) FROM audit_intents WHERE seq = $iseq")" = 1 ]
check "... saying why" grep -q 'intents-held-elsewhere' "$W/hsmcad2.log"
check "... writing no orphan entry for it" [ "$(count_action test.held.orphan)" = 0 ]
wait "$HOLDER" || true
check "node 2 stops with status 0 (again)" node_stop 2
check "node 2 starts again, the lock free" node_start 2
orphans=$(count_action test.held.orphan)
left=$(store_sql "SELECT count(*) FROM audit_intents WHERE seq = $iseq")
check "... and closes the gone session's intent as orphaned ($orphans entry, $left left open)" \
    sh -c "[ '$orphans' = 1 ] && [ '$left' = 0 ]"

# ---- node 2 starts while node 1 appends and signs checkpoints ----
# (the shim holds node 2's search for the audit anchor 1.5 s: node 1's DACs, checkpoints and anchor
# moves land between the anchor node 2 reads and the rest of its self-check)
check "node 2 stops with status 0 (before the busy starts)" node_stop 2
mv "$W/hsmcad2.json" "$W/hsmcad2.fast.json"
jq --arg m "${HSMCA_P11SHIM:?}" '.pkcs11_module = $m' "$W/hsmcad2.fast.json" > "$W/hsmcad2.json"
rm -f "$W/busy.stop"
busy() { # DACs from node 1 until busy.stop (at most 400, and 180 s)
    k=0 t0=$(date +%s)
    while [ ! -e "$W/busy.stop" ] && [ $k -lt 400 ] && [ $(($(date +%s) - t0)) -lt 180 ]; do
        k=$((k + 1))
        printf '%s\n' "$(dac_post 1 "busy-$k" "$W/a.json" "$W/busy.pem")" >> "$W/busy.codes"
    done
}
busy &
BUSY=$!
HSMCA_SHIM_TARGET=$CLIENT HSMCA_SHIM_SLOW_FIND=hsmca-audit-anchor:1500
export HSMCA_SHIM_TARGET HSMCA_SHIM_SLOW_FIND
for r in 1 2 3; do
    cps0=$(store_sql "SELECT count(*) FROM audit_checkpoints")
    started=0
    node_start 2 && started=1
    cps=$(($(store_sql "SELECT count(*) FROM audit_checkpoints") - cps0))
    check "node 2 starts while node 1 signs checkpoints [$r] ($cps signed by then)" \
        sh -c "[ $started = 1 ] && [ $cps -ge 1 ]"
    [ $started = 0 ] || check "... and stops with status 0 [$r]" node_stop 2
done
unset HSMCA_SHIM_SLOW_FIND
touch "$W/busy.stop"
wait "$BUSY" || true
check "node 1 issued DACs all the while ($(grep -c '^201$' "$W/busy.codes") of $(wc -l < "$W/busy.codes"))" \
    sh -c "[ $(grep -c '^201$' "$W/busy.codes") -ge 1 ] && [ $(grep -vc '^201$' "$W/busy.codes") = 0 ]"
mv "$W/hsmcad2.fast.json" "$W/hsmcad2.json"
check "node 2 starts again" node_start 2
check "node 2 stops with status 0 (last)" node_stop 2
check "SIGTERM stops node 1 with status 0" node_stop 1
finish
