#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# failover.sh -- kill -9 a node under load, ten times, and lose nothing (docs/postgresql.md).
# Two nodes on one PostgreSQL store and one network token (nodes_lib.sh). A client per node asks
# for DACs, each with its own request id; a request that gets no answer (its node died under it)
# is retried with the same id on the other node, as a factory line fails over. Meanwhile a node is
# killed with SIGKILL at a random moment, restarted and activated again by the quorum (a node
# that dies loses its login), ten times, the nodes in turn. Then: every DAC either node
# acknowledged is in the store under its request id with its dac.issue entry; each acknowledged
# request id retried on the other node returns the same DAC; one extract of the whole log, with
# the entries of both nodes, verifies offline; the seqs have no gap. The nodes share one window in
# the store (node 2 and every restarted node join it by a quorum request of their own); then a
# small window is loaded past its count by both nodes, one killed meanwhile: the DACs stored under
# it never exceed its count, and the refusals carry window-exhausted.
HSMCA_TEST_STORE=pg
export HSMCA_TEST_STORE
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nodes_lib.sh"

KILLS=${HSMCA_FAILOVER_KILLS:-10}
nodes_setup
node_start 1
check "node 1 activated by its quorum (a window in the store)" activate 1
WIN=$(cat "$W/window")
node_start 2 # after node 1's activation rotated the PIN (nodes.sh says why)
check "node 2 joins node 1's window by its own quorum request" activate 2 "$WIN"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
    -keyout "$W/dev.key" -out "$W/dev.pem" 2>/dev/null
jq -n --rawfile c "$W/dev.pem" '{csr: $c}' > "$W/dev.json"

# client NODE: DACs with ids c<NODE>-1, c<NODE>-2, ... until $W/stop exists (at most 2000, and
# 900 s); an id that fails on its node goes to the other one (at most 20 tries, alternating);
# "id serial node" per acknowledged DAC in ack<NODE>, "id" per id never acknowledged in lost<NODE>
client() {
    home=$1 k=0 t0=$(date +%s)
    : > "$W/ack$home"
    : > "$W/lost$home"
    while [ ! -e "$W/stop" ] && [ $k -lt 2000 ] && [ $(($(date +%s) - t0)) -lt 900 ]; do
        k=$((k + 1))
        id=c$home-$k node=$home try=0 done=0
        while [ $try -lt 20 ] && [ $done = 0 ]; do
            st=$(dac_post "$node" "$id" "$W/dev.json" "$W/c$home.pem")
            if [ "$st" = 201 ] || [ "$st" = 200 ]; then
                echo "$id $(serial_of "$W/c$home.pem") $node" >> "$W/ack$home"
                done=1
            else
                echo "$(date +%T) $id node $node status $st $(jq -r '.code // empty' "$W/c$home.pem" 2>/dev/null)" \
                    >> "$W/fail$home"
                node=$((3 - node)) # the other node
                try=$((try + 1))
                sleep 0.2
            fi
        done
        [ $done = 1 ] || echo "$id" >> "$W/lost$home"
    done
}
client 1 &
C1=$!
client 2 &
C2=$!

# ---- SIGKILL a node at random moments, restart it, activate it again ----
kills=0 restarts=0 reactivated=0 victim=2
while [ $kills -lt "$KILLS" ]; do
    sleep "$(awk -v r="$(od -An -tu2 -N2 /dev/urandom)" 'BEGIN { printf "%.2f", 0.5 + (r % 150) / 100 }')"
    node_kill9 $victim
    kills=$((kills + 1))
    if node_start $victim; then
        restarts=$((restarts + 1))
        if activate $victim "$WIN"; then reactivated=$((reactivated + 1)); fi
    fi
    victim=$((3 - victim))
done
sleep 1
touch "$W/stop"
wait "$C1" "$C2" || true
check "$kills kills by SIGKILL, each node restarted ($restarts) and activated again ($reactivated)" \
    sh -c "[ $kills -ge 10 ] && [ $restarts = $kills ] && [ $reactivated = $kills ]"
cat "$W/ack1" "$W/ack2" > "$W/acks"
n_ack=$(wc -l < "$W/acks")
n_lost=$(cat "$W/lost1" "$W/lost2" | wc -l)
echo "# $n_ack DACs acknowledged ($(awk '$3 == 1' "$W/acks" | wc -l) by node 1), $n_lost ids never answered"
check "the load went on through the kills ($n_ack DACs acknowledged)" [ "$n_ack" -ge 20 ]
check "no request id was left without an answer by both nodes ($n_lost)" [ "$n_lost" = 0 ]

# ---- every acknowledged DAC is stored under its id, with its entry ----
store_sql "SELECT request_id, encode(serial, 'hex') FROM certificates WHERE request_id LIKE 'c%'" |
    tr '|' ' ' | sort > "$W/stored"
store_sql "SELECT CAST(line AS TEXT) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
    '%\"action\":\"dac.issue\"%'" > "$W/issue-entries"
missing=0 noentry=0
while read -r id serial node; do
    s=$(echo "$serial" | sed 's/^0*//')
    grep -q "^$id 0*$s\$" "$W/stored" || missing=$((missing + 1))
    grep -q "\"request_id\":\"$id\"" "$W/issue-entries" || noentry=$((noentry + 1))
done < "$W/acks"
check "every acknowledged DAC is in the store under its request id ($missing missing)" \
    [ "$missing" = 0 ]
check "every acknowledged DAC has its dac.issue entry ($noentry missing)" [ "$noentry" = 0 ]
check "one certificate per request id" \
    [ "$(store_sql "SELECT count(*) FROM (SELECT request_id FROM certificates GROUP BY request_id
         HAVING count(*) > 1) d")" = 0 ]

# ---- retried on the other node: the same DAC ----
same=0 asked=0
for f in 1 2; do
    head -n 25 "$W/ack$f" > "$W/sample$f"
    while read -r id serial node; do
        other=$((3 - node))
        st=$(dac_post "$other" "$id" "$W/dev.json" "$W/again.pem")
        asked=$((asked + 1))
        if [ "$st" = 200 ] || [ "$st" = 201 ]; then
            [ "$(serial_of "$W/again.pem")" != "$serial" ] || same=$((same + 1))
        fi
    done < "$W/sample$f"
done
check "acknowledged request ids retried on the other node return the same DAC ($same of $asked)" \
    [ "$same" = "$asked" ]

n_win=$(store_sql "SELECT count(*) FROM certificates WHERE window_id = '$WIN'")
used=$(store_sql "SELECT used FROM windows WHERE id = '$WIN'")
check "every acknowledged DAC counts against the one window the nodes rejoined ($n_win of $n_ack; $used of $MAX reserved, the blocks of killed nodes lost, never reissued)" \
    sh -c "[ $n_win -ge $n_ack ] && [ $n_win -le $used ] && [ $used -le $MAX ]"

# ---- a small window: node 2 killed while it signs under it, then both nodes past its count ----
# (both restart: a node activated after another node's activation must start after it, nodes.sh)
SMALL=12
check "node 1 stops with status 0 (its unused block goes back to the window)" node_stop 1
node_kill9 2
node_start 1
MAX=$SMALL
check "node 1 opens a window of $SMALL DACs" activate 1
WIN2=$(cat "$W/window")
node_start 2
check "node 2 joins it" activate 2 "$WIN2"
burst() { # NODE N: N DACs asked of node NODE; "status code" per answer appended to burst<NODE>
    b=0
    while [ $b -lt "$2" ]; do
        b=$((b + 1))
        st=$(dac_post "$1" "small$1-$b-$$-$(od -An -tu4 -N4 /dev/urandom | tr -d ' ')" \
            "$W/dev.json" "$W/small$1.pem")
        echo "$st $(jq -r '.code // empty' "$W/small$1.pem" 2>/dev/null)" >> "$W/burst$1"
    done
}
: > "$W/burst1"
: > "$W/burst2"
burst 2 8 &
B2=$!
sleep 0.5
node_kill9 2 # mid-burst: what it had reserved and not signed is lost with it, never reissued
wait "$B2" || true
node_start 2
check "node 2 comes back and joins the small window again" activate 2 "$WIN2"
burst 1 10 &
B1=$!
burst 2 10 &
B2=$!
wait "$B1" "$B2" || true
n_small=$(store_sql "SELECT count(*) FROM certificates WHERE window_id = '$WIN2'")
used2=$(store_sql "SELECT used FROM windows WHERE id = '$WIN2'")
ok=$(cat "$W/burst1" "$W/burst2" | grep -c '^20[01] ' || true)
exhausted=$(cat "$W/burst1" "$W/burst2" | grep -c '^409 window-exhausted$' || true)
other=$(cat "$W/burst1" "$W/burst2" | grep -v '^20[01] ' | grep -v '^409 window-exhausted$' |
    grep -v '^409 ca-inactive$' | grep -v '^000 ' | sort | uniq -c | tr '\n' ' ')
echo "# small window: $ok DACs acknowledged, $n_small stored under it, $used2 of $SMALL reserved, $exhausted window-exhausted"
check "the small window's count is never exceeded across the nodes ($n_small DACs under it, $used2 reserved, at most $SMALL)" \
    sh -c "[ $n_small -le $SMALL ] && [ $used2 -le $SMALL ] && [ $n_small -ge $ok ] && [ $n_small -ge 1 ]"
check "refusals past the count carry window-exhausted (409; $exhausted), no other code (${other:-none})" \
    sh -c "[ $exhausted -ge 1 ] && [ -z '$other' ]"

# ---- one extract, both nodes' entries ----
one_extract_verifies "the entries of both nodes"
# shellcheck disable=SC2046
set -- $(store_sql "SELECT count(*), min(seq), max(seq) FROM audit_entries" | tr '|' ' ')
check "the seqs run 1..$3 without a gap ($1 entries)" sh -c "[ '$1' = '$3' ] && [ '$2' = 1 ]"
finish
