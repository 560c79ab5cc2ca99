#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# nodes_quota.sh -- quotas and mDL signing windows hold across two hsmcad nodes on one PostgreSQL
# store (docs/postgresql.md). Two real nodes (nodes_lib.sh: SoftHSM tokens exported by
# `p11-kit server`, reached through p11-kit-client.so) share the PAI's window. With a per-minute
# quota of Q, both nodes are asked for DACs at once (bounded loops): the DACs stored in any 60
# seconds (the quota's sliding minute, in buckets of a second) never exceed Q, the two nodes
# together issue Q, and every refusal is 429 quota-exceeded. Then, reloaded on both nodes, a
# per-day quota (what the store holds plus D): together they issue D more, never beyond it, and
# every refusal is 429 daily-quota-exceeded. An mDL document signer's signing window, opened by a
# quorum request through node 1 and joined by node 2's own: both sign at once, and together never
# more than the window's count (every refusal 409 window-exhausted, or ca-inactive once a node
# closed it); a second window meets the DS's per-day quota, counted for both nodes. When the
# nodes stop, their unused blocks go back: the day's count is the DACs stored.
HSMCA_TEST_STORE=pg
export HSMCA_TEST_STORE
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nodes_lib.sh"

Q=12     # per minute
ASK=20   # DACs each node is asked for, per phase
D=9      # the per-day quota's room in the second phase

DS=ds-1   # the mDL document signer
DSDAY=14 # its per-day quota: more than one window of MDLMAX, less than two
MDLMAX=10

nodes_setup "mdl-iaca mdl-ds"
printf '{"pai-8000": {"per_minute": %s}, "%s": {"per_day": %s}}\n' "$Q" "$DS" "$DSDAY" \
    > "$W/quotas.json"
for f in hsmcad.json hsmcad2.json; do
    jq '.quotas = "quotas.json"' "$W/$f" > "$W/$f.new" && mv "$W/$f.new" "$W/$f"
done
# the operator signs for the DS too
jq --arg ds "$DS" '(.certificates[] | select(.principal == "factory-1") | .cas) += [$ds]' \
    "$W/roles.json" > "$W/roles.new" && mv "$W/roles.new" "$W/roles.json"
node_start 1
check "node 1: a quorum request through it activates its PAI" activate 1
node_start 2
WIN=$(cat "$W/window")
check "node 2: its own quorum request joins node 1's window" activate 2 "$WIN"

for n in a b; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device-$n" \
        -keyout "$W/$n.key" -out "$W/$n.pem" 2>/dev/null
    jq -n --rawfile c "$W/$n.pem" '{csr: $c}' > "$W/$n.json"
done

# q_post K ID NAME: one DAC request to node K; "status code retry-after" into $W/NAME.results
q_post() {
    st=$(curl -sS --cacert "$W/tls/ca.pem" --cert "$W/tls/operator.pem" \
        --key "$W/tls/operator.key" -H 'Content-Type: application/json' \
        -o "$W/$3.out" -D "$W/$3.hdr" -w '%{http_code}' -m 30 \
        --data-binary "$(jq -c --arg id "$2" '. + {request_id: $id}' "$W/$3.json")" \
        "https://127.0.0.1:$(port_of "$1")/v1/cas/pai-8000/dacs" 2>>"$W/curl-errors") || st=000
    code=-
    [ "$st" = 201 ] || code=$(jq -r '.code // "-"' "$W/$3.out" 2>/dev/null || echo -)
    ra=$(tr -d '\r' < "$W/$3.hdr" | awk -F': ' 'tolower($1) == "retry-after" {print $2}')
    echo "$st $code ${ra:--}" >> "$W/$3.results"
}
ask_loop() { # NODE NAME PHASE: ASK requests with request ids PHASE-NAME-1..
    k=1
    while [ $k -le $ASK ]; do
        q_post "$1" "$3-$2-$k" "$2"
        k=$((k + 1))
    done
}
both_at_once() { # PHASE
    : > "$W/a.results"
    : > "$W/b.results"
    ask_loop 1 a "$1" &
    L1=$!
    ask_loop 2 b "$1" &
    L2=$!
    wait "$L1" "$L2" || true
}
count_status() { # STATUS CODE: results of both nodes with that status and code
    cat "$W/a.results" "$W/b.results" | awk -v s="$1" -v c="$2" '$1 == s && $2 == c' | wc -l
}
# retry-after values of the refusals that carry one: all whole seconds
retry_after_ok() { cat "$W/a.results" "$W/b.results" | awk '$3 != "-" && $3 !~ /^[0-9]+$/ {bad=1}
    END {exit bad}'; }

# ---- a per-minute quota of Q, both nodes asking at once ----
both_at_once m
ok_a=$(awk '$1 == 201' "$W/a.results" | wc -l)
ok_b=$(awk '$1 == 201' "$W/b.results" | wc -l)
refused=$(count_status 429 quota-exceeded)
check "every answer is 201 or 429 quota-exceeded (node 1: $ok_a, node 2: $ok_b issued, $refused refused)" \
    [ $((ok_a + ok_b + refused)) = $((2 * ASK)) ]
check "refusals carry a Retry-After in whole seconds, if any" retry_after_ok
stored=$(store_sql "SELECT count(*) FROM certificates WHERE request_id LIKE 'm-%'")
check "the store holds the DACs the nodes acknowledged ($stored)" [ "$stored" = $((ok_a + ok_b)) ]
# the sliding minute: the DACs of any 60 one-second buckets, whichever node signed them
worst=$(store_sql "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM certificates a
    JOIN certificates b ON b.ca = a.ca AND b.issued_ms / 1000 BETWEEN a.issued_ms / 1000 - 59
    AND a.issued_ms / 1000 WHERE a.ca = 'pai-8000' GROUP BY a.serial) x")
check "the DACs stored in any 60 s never exceed the quota ($worst of $Q)" [ "$worst" -le $Q ]
minute=$(store_sql "SELECT count(*) FROM certificates WHERE ca = 'pai-8000' GROUP BY
    issued_ms / 60000 ORDER BY 1 DESC LIMIT 1")
check "nor those of any calendar minute ($minute)" [ "$minute" -le $Q ]
check "together the nodes issued the quota, no DAC lost to a block ($((ok_a + ok_b)) >= $Q)" \
    [ $((ok_a + ok_b)) -ge $Q ]
reserved=$(store_sql "SELECT coalesce(sum(used), 0) FROM quota_buckets WHERE ca = 'pai-8000'
    AND period = 'm'")
check "the store's count holds what was signed, and never more than the quota in a minute ($reserved)" \
    sh -c "[ $reserved -ge $((ok_a + ok_b)) ] || [ $((ok_a + ok_b)) -gt $Q ]"

# ---- a per-day quota: what the store holds plus D, reloaded on both nodes ----
have=$(store_sql "SELECT count(*) FROM certificates WHERE ca = 'pai-8000'")
DAY=$((have + D))
printf '{"pai-8000": {"per_day": %s}, "%s": {"per_day": %s}}\n' "$DAY" "$DS" "$DSDAY" \
    > "$W/quotas.json"
kill -HUP "$DPID" "$D2PID"
quota_is() { # K: node K reports the new per-day quota
    on "$1"
    i=0
    while [ $i -lt 50 ]; do
        call auditor GET /v1/cas/pai-8000
        if jq -e --argjson d "$DAY" '.issuance.quota.per_day == $d' "$W/body" > /dev/null; then
            return 0
        fi
        i=$((i + 1))
        sleep 0.2
    done
    return 1
}
check "node 1 reloaded the per-day quota ($DAY)" quota_is 1
check "node 2 reloaded the per-day quota ($DAY)" quota_is 2
both_at_once d
ok_a=$(awk '$1 == 201' "$W/a.results" | wc -l)
ok_b=$(awk '$1 == 201' "$W/b.results" | wc -l)
refused=$(count_status 429 daily-quota-exceeded)
check "every answer is 201 or 429 daily-quota-exceeded (node 1: $ok_a, node 2: $ok_b issued, $refused refused)" \
    [ $((ok_a + ok_b + refused)) = $((2 * ASK)) ]
check "refusals carry a Retry-After in whole seconds, if any" retry_after_ok
day=$(store_sql "SELECT count(*) FROM certificates WHERE ca = 'pai-8000'")
check "the DACs of the day never exceed the per-day quota ($day of $DAY)" [ "$day" -le "$DAY" ]
check "together the nodes issued the day's room ($((ok_a + ok_b)) of $D)" [ $((ok_a + ok_b)) = $D ]
on 1
call auditor GET /v1/cas/pai-8000
check "node 1 reports the day's count of both nodes ($(jq -c .issuance.quota "$W/body"))" \
    jq -e --argjson d "$DAY" '.issuance.quota.day_count == $d' "$W/body"

# ---- an mDL signing window opened on node 1 and joined by node 2 ----
on 1
quorum mdl.create_iaca '{"ca":"iaca-us","token":"mdl-iaca","key_label":"iaca-key","country":"US",
    "org":"hsmca test DMV","cn":"hsmca test IACA"}'
check "node 1: mdl.create_iaca by quorum ($STATUS)" [ "$STATUS" = 200 ]
quorum mdl.create_ds "{\"ca\":\"$DS\",\"iaca\":\"iaca-us\",\"token\":\"mdl-ds\",\"key_label\":\"ds-key\"}"
check "node 1: mdl.create_ds by quorum ($STATUS)" [ "$STATUS" = 200 ]
# mdl_open K [WINDOW]: node K opens a window of MDLMAX signatures (its id in $W/mwindow), or joins
# WINDOW, by a quorum request of its own. (Each activation changes the DS token's PIN, and the
# SoftHSM behind p11-kit keeps the PIN state of a token a node opened before: a node activates
# after a restart, as nodes.sh's node 2 starts after node 1's activation; docs/postgresql.md.)
mdl_open() {
    node_stop "$1" && node_start "$1" || return 1
    on "$1"
    if [ -n "${2:-}" ]; then
        quorum mdl.activate "{\"ca\":\"$DS\",\"window\":\"$2\"}"
    else
        quorum mdl.activate "{\"ca\":\"$DS\",\"until\":$(($(date +%s) * 1000 + 600000)),
            \"max_signatures\":$MDLMAX}"
        jq -r '.result.window // empty' "$W/body" > "$W/mwindow"
    fi
    [ "$STATUS" = 200 ]
}
# m_post K NAME: a detached MSO signature (a random digest) from node K; "status code" appended
m_post() {
    st=$(curl -sS --cacert "$W/tls/ca.pem" --cert "$W/tls/operator.pem" \
        --key "$W/tls/operator.key" -H 'Content-Type: application/json' -o "$W/$2.out" \
        -w '%{http_code}' -m 30 --data-binary "{\"tbs_sha256\":\"$(openssl rand -hex 32)\"}" \
        "https://127.0.0.1:$(port_of "$1")/v1/cas/$DS/mso-signatures" 2>>"$W/curl-errors") ||
        st=000
    code=-
    [ "$st" = 200 ] || code=$(jq -r '.code // "-"' "$W/$2.out" 2>/dev/null || echo -)
    echo "$st $code" >> "$W/$2.results"
}
sign_loop() { # NODE NAME
    k=1
    while [ $k -le $ASK ]; do
        m_post "$1" "$2"
        k=$((k + 1))
    done
}
sign_both() {
    : > "$W/a.results"
    : > "$W/b.results"
    sign_loop 1 a &
    L1=$!
    sign_loop 2 b &
    L2=$!
    wait "$L1" "$L2" || true
    ok_a=$(awk '$1 == 200' "$W/a.results" | wc -l)
    ok_b=$(awk '$1 == 200' "$W/b.results" | wc -l)
}
mso_signed() { store_sql "SELECT count(*) FROM audit_entries WHERE CAST(line AS TEXT) LIKE
    '%\"action\":\"mso.sign\"%'"; }
check "node 1: mdl.activate opens a signing window in the store" mdl_open 1
MWIN=$(cat "$W/mwindow")
check "... named by its request ($MWIN, $MDLMAX signatures)" \
    [ "$(store_sql "SELECT max_signatures FROM mdl_windows WHERE id = '$MWIN'")" = $MDLMAX ]
on 2
quorum mdl.activate "{\"ca\":\"$DS\",\"window\":\"00000000000000000000000000000000\"}"
check "joining an mDL window the store does not hold is refused ($STATUS $(jq -r .code "$W/body"))" \
    sh -c "[ $STATUS = 400 ] || [ $STATUS = 422 ]"
check "node 2: its own mdl.activate joins node 1's window" mdl_open 2 "$MWIN"
on 2
call auditor GET "/v1/mdl/cas/$DS"
check "node 2 reports the shared window ($(jq -c .window "$W/body"))" \
    jq -e --arg w "$MWIN" '.window.active and .window.id == $w and .window.max_signatures == 10' \
    "$W/body"
sign_both
exhausted=$(count_status 409 window-exhausted)
inactive=$(count_status 409 ca-inactive)
check "both nodes signed ($ok_a + $ok_b), every refusal 409 window-exhausted ($exhausted) or ca-inactive once closed ($inactive)" \
    [ $((ok_a + ok_b + exhausted + inactive)) = $((2 * ASK)) ]
check "together they signed the window's count, never more ($((ok_a + ok_b)) of $MDLMAX)" \
    [ $((ok_a + ok_b)) = $MDLMAX ]
mused=$(store_sql "SELECT used FROM mdl_windows WHERE id = '$MWIN'")
check "the window's count in the store ($mused) is its max" [ "$mused" = $MDLMAX ]
signed=$(mso_signed)
check "one mso.sign entry per signature ($signed)" [ "$signed" = $MDLMAX ]

# a second window: the DS's per-day quota ($DSDAY) leaves $((DSDAY - MDLMAX)) of it
check "node 1: a second mDL window" mdl_open 1
MWIN2=$(cat "$W/mwindow")
check "node 2 joins it" mdl_open 2 "$MWIN2"
sign_both
daily=$(count_status 429 daily-quota-exceeded)
check "every refusal is 429 daily-quota-exceeded ($((ok_a + ok_b)) signed, $daily refused)" \
    [ $((ok_a + ok_b + daily)) = $((2 * ASK)) ]
signed=$(mso_signed)
check "the DS's signatures of the day never exceed its quota ($signed of $DSDAY)" \
    [ "$signed" = $DSDAY ]

# ---- closing gives a node's unused blocks back ----
check "node 2 stops with status 0" node_stop 2
check "node 1 stops with status 0" node_stop 1
left=$(store_sql "SELECT coalesce(sum(used), 0) FROM quota_buckets WHERE ca = 'pai-8000'
    AND period = 'd'")
check "after both stopped, the day's count is the DACs stored ($left of $day)" [ "$left" = "$day" ]

finish
