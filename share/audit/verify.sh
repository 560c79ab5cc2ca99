#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# verify.sh -- verify an hsmca audit extract (hsmca-audit-extract/v1) with sh, sha256sum, jq and
# openssl only (plus POSIX sed, sort, wc, cut, tail, mktemp). Shipped inside every extract.
# Usage: sh verify.sh [DIR]   (default: the directory this script is in)
# Checks: seqs run from..to without gaps; every line's prev is the SHA-256 of the line before (the
# first one's is the anchor checkpoint's head); the anchor and every checkpoint are signed by
# audit.pub.pem, name its key, link to the checkpoint before them and have the right head; the
# last entry is covered by a checkpoint; every quorum.execute has at least its threshold of
# distinct approvals by approvers enrolled in its epoch, each verifying over
# SHA-256("hsmca-approval-v1\0" || request), the requester not among them; manifest hashes.
# Exit 0 valid, 1 invalid (the first problem is printed), 2 usage or a missing tool.
set -eu
LC_ALL=C
export LC_ALL
dir=${1:-$(dirname "$0")}
cd "$dir" || exit 2
for t in sha256sum jq openssl; do
    command -v "$t" >/dev/null 2>&1 || { echo "verify.sh: $t not found" >&2; exit 2; }
done
fail() {
    echo "verify.sh: INVALID: $*" >&2
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' INT TERM
zeros=0000000000000000000000000000000000000000000000000000000000000000

for f in manifest.json entries.jsonl audit.pub.pem; do
    [ -f "$f" ] || fail "$f missing"
done
from=$(jq -er '.from' manifest.json) || fail "manifest.json: no from"
to=$(jq -er '.to' manifest.json) || fail "manifest.json: no to"
case "$from$to" in *[!0-9]*) fail "manifest.json: from or to is not a number" ;; esac
key=$(openssl pkey -pubin -in audit.pub.pem -outform DER 2>/dev/null | sha256sum | cut -c1-64)

# the value of the "NAME value" line of a checkpoint text
field() { sed -n "s/^$1 //p" "$2"; }

check_cp() { # TEXT SIG LABEL
    openssl dgst -sha256 -verify audit.pub.pem -signature "$2" "$1" >/dev/null 2>&1 ||
        fail "$3: signature does not verify with audit.pub.pem"
    [ "$(sed -n 1p "$1")" = "hsmca-checkpoint/v1" ] || fail "$3: not hsmca-checkpoint/v1"
    [ "$(field key "$1")" = "$key" ] || fail "$3: made for another audit key"
}

if [ "$from" -gt 1 ]; then
    [ -f anchor.txt ] && [ -f anchor.sig ] || fail "anchor checkpoint missing (from=$from)"
    check_cp anchor.txt anchor.sig "anchor checkpoint"
    [ "$(field size anchor.txt)" = "$((from - 1))" ] || fail "anchor checkpoint: size is not from-1"
    prev=$(field head anchor.txt)
    cpprev=$(sha256sum <anchor.txt | cut -c1-64)
    origin=$(field origin anchor.txt)
else
    prev=$zeros
    cpprev=$zeros
    origin=
fi

# checkpoints, by size: signature, key, origin, link to the one before
[ -d checkpoints ] || fail "checkpoints/ missing"
ls checkpoints | sed -n 's/^\([0-9][0-9]*\)\.txt$/\1/p' | sort -n >"$tmp/cps"
[ -s "$tmp/cps" ] || fail "no checkpoint in the extract"
: >"$tmp/heads"
ncp=0
while read -r n; do
    f=checkpoints/$n.txt
    [ -f "checkpoints/$n.sig" ] || fail "checkpoint $n: signature file missing"
    check_cp "$f" "checkpoints/$n.sig" "checkpoint $n"
    [ "$(field size "$f")" = "$n" ] || fail "checkpoint $n: size line differs from its file name"
    [ "$(field prev "$f")" = "$cpprev" ] ||
        fail "checkpoint $n: prev is not the hash of the checkpoint before it (one was dropped or replaced)"
    o=$(field origin "$f")
    [ -n "$origin" ] || origin=$o
    [ "$o" = "$origin" ] || fail "checkpoint $n: another origin"
    cpprev=$(sha256sum <"$f" | cut -c1-64)
    echo "$n $(field head "$f")" >>"$tmp/heads"
    ncp=$((ncp + 1))
done <"$tmp/cps"

# the chain, line by line
jq -r '"\(.seq) \(.prev)"' entries.jsonl >"$tmp/meta" 2>/dev/null ||
    fail "entries.jsonl: a line is not JSON"
[ "$(wc -l <"$tmp/meta")" -eq "$(wc -l <entries.jsonl)" ] ||
    fail "entries.jsonl: not exactly one JSON object per LF-terminated line"
expect=$from
exec 3<"$tmp/meta" 4<"$tmp/heads"
read -r hs hh <&4 || hs=0
while IFS= read -r line; do
    read -r seq lprev <&3 || fail "entries.jsonl: unreadable"
    [ "$seq" = "$expect" ] || fail "seq $expect: missing or out of order (found seq $seq)"
    if [ "$lprev" != "$prev" ]; then
        [ "$seq" != "$from" ] || fail "seq $seq: prev is not the head of the anchor checkpoint"
        fail "seq $((seq - 1)): changed or replaced: its hash is not the prev of seq $seq"
    fi
    h=$(printf '%s' "$line" | sha256sum | cut -c1-64)
    if [ "$seq" = "$hs" ]; then
        [ "$h" = "$hh" ] || fail "seq $seq: its hash is not the head of checkpoint $seq"
        read -r hs hh <&4 || hs=0
    fi
    prev=$h
    expect=$((expect + 1))
done <entries.jsonl
exec 3<&- 4<&-
last=$((expect - 1))
[ "$hs" = 0 ] || fail "truncated: checkpoint $hs covers seq $hs but the entries end at seq $last"
lastcp=$(tail -n 1 "$tmp/cps")
[ "$last" = "$lastcp" ] || fail "seq $((lastcp + 1)): not covered by any checkpoint"
[ "$last" = "$to" ] || fail "truncated: manifest.json says to=$to but the entries end at seq $last"

# quorum operations
{
    [ -f approvers.json ] && jq -r '.epochs[]?' approvers.json
    cat entries.jsonl
} | jq -c 'select(.action == "quorum.epoch") | .detail' >"$tmp/epochs" 2>/dev/null ||
    fail "approvers.json or a quorum.epoch entry is not JSON"
jq -c 'select(.action == "quorum.execute" and .outcome == "ok") | {seq, d: .detail}' \
    entries.jsonl >"$tmp/execs"
nq=0
while IFS= read -r ex; do
    printf '%s' "$ex" >"$tmp/ex"
    seq=$(jq -r .seq "$tmp/ex")
    e=$(jq -r '.d.epoch' "$tmp/ex")
    op=$(jq -r '.d.op' "$tmp/ex")
    thr=$(jq -r '.d.threshold' "$tmp/ex")
    need=$(jq -s -r --argjson e "$e" --arg op "$op" \
        '[.[] | select(.epoch == $e)] | last | .thresholds[$op] // empty' "$tmp/epochs" 2>/dev/null) ||
        fail "seq $seq: bad epoch"
    [ -n "$need" ] || fail "seq $seq: epoch $e (or its threshold for $op) is not in the extract or approvers.json"
    [ "$thr" -ge "$need" ] 2>/dev/null || fail "seq $seq: threshold $thr is below the policy's $need for $op"
    jq -r '.d.request' "$tmp/ex" | openssl base64 -d -A >"$tmp/req" 2>/dev/null ||
        fail "seq $seq: request is not base64"
    { printf 'hsmca-approval-v1\000'; cat "$tmp/req"; } >"$tmp/msg"
    rq=$(jq -r '.requester | if type == "string" then . elif type == "object" then (.principal // .name // "") else "" end' "$tmp/req" 2>/dev/null || true)
    rk=$(jq -r '.requester | if type == "object" then (.key // .fingerprint // "") else "" end' "$tmp/req" 2>/dev/null || true)
    : >"$tmp/seen"
    count=0
    na=$(jq -r '.d.approvals | length' "$tmp/ex")
    i=0
    while [ "$i" -lt "$na" ]; do
        name=$(jq -r ".d.approvals[$i].approver" "$tmp/ex")
        jq -r ".d.approvals[$i].sig" "$tmp/ex" | openssl base64 -d -A >"$tmp/sig" 2>/dev/null ||
            fail "seq $seq: approval $i is not base64"
        spki=$(jq -s -r --argjson e "$e" --arg n "$name" \
            '[.[] | select(.epoch == $e)] | last | .approvers[] | select(.name == $n) | .spki' "$tmp/epochs")
        [ -n "$spki" ] || fail "seq $seq: approver $name is not enrolled in epoch $e"
        ! grep -qxF -- "$name" "$tmp/seen" || fail "seq $seq: approver $name counted twice"
        [ "$name" != "$rq" ] || fail "seq $seq: the requester $name approved its own request"
        printf '%s' "$spki" | openssl base64 -d -A >"$tmp/spki.der" 2>/dev/null
        [ "$(sha256sum <"$tmp/spki.der" | cut -c1-64)" != "$rk" ] ||
            fail "seq $seq: the requester's key approved its own request"
        openssl pkey -pubin -inform DER -in "$tmp/spki.der" -out "$tmp/appr.pem" 2>/dev/null ||
            fail "seq $seq: approver $name has no valid key"
        openssl dgst -sha256 -verify "$tmp/appr.pem" -signature "$tmp/sig" "$tmp/msg" >/dev/null 2>&1 ||
            fail "seq $seq: the approval by $name does not verify over the request"
        echo "$name" >>"$tmp/seen"
        count=$((count + 1))
        i=$((i + 1))
    done
    [ "$count" -ge "$need" ] && [ "$count" -ge "$thr" ] ||
        fail "seq $seq: $count valid distinct approvals, $thr needed"
    nq=$((nq + 1))
done <"$tmp/execs"

# the manifest's file hashes
jq -r '.files | to_entries[] | "\(.value)  \(.key)"' manifest.json >"$tmp/sums" ||
    fail "manifest.json: no files"
sha256sum -c --quiet "$tmp/sums" >/dev/null 2>&1 || fail "manifest.json: a file's SHA-256 differs"

echo "verify.sh: valid: entries $from..$last, $ncp checkpoints, $nq quorum operations, origin $origin"
