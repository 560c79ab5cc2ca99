#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# verify.sh -- verify an hsmca audit extract (hsmca-audit-extract/v1) with sh, sha256sum, jq and
# openssl only (plus POSIX awk, sed, sort, paste, ls, xargs, wc, cut, tail, mktemp). Shipped
# inside every extract.
# Usage: sh verify.sh [--previous CHECKPOINT.txt] [DIR]   (default DIR: where this script is)
# Checks: seqs run from..to without gaps; every line's prev is the SHA-256 of the line before (the
# first one's is the anchor checkpoint's head); the anchor and every checkpoint are signed by
# audit.pub.pem, name its key, link to the checkpoint before them and have the right head; the
# last entry is covered by a checkpoint; every quorum.execute has at least its threshold of
# distinct approvals by approvers enrolled in its epoch, each verifying over
# SHA-256("hsmca-approval-v1\0" || request), the requester not among them; manifest hashes.
# --previous is the last checkpoint you kept (its .sig beside it is checked when present): the
# extract must extend it (no rewrite, truncation or fork), as `hsmca audit verify --previous`.
# The chain is checked in one pass with a fixed number of processes per 4,096 entries (the lines
# are hashed as files on a tmpfs, sha256sum over 4,096 at a time), not one per entry.
# Exit 0 valid, 1 invalid (the first problem is printed), 2 usage or a missing tool.
set -eu
LC_ALL=C
export LC_ALL
usage() { echo "usage: sh verify.sh [--previous CHECKPOINT.txt] [DIR]" >&2; exit 2; }
pcp=
while [ $# -gt 0 ]; do
    case $1 in
    --previous) [ $# -ge 2 ] || usage; pcp=$2; shift 2 ;;
    --previous=*) pcp=${1#--previous=}; shift ;;
    -h | --help) echo "usage: sh verify.sh [--previous CHECKPOINT.txt] [DIR]"; exit 0 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
    esac
done
[ $# -le 1 ] || usage
dir=${1:-$(dirname "$0")}
if [ -n "$pcp" ]; then
    [ -f "$pcp" ] || { echo "verify.sh: INVALID: previous checkpoint: cannot read $pcp" >&2; exit 1; }
    case $pcp in /*) ;; *) pcp=$(pwd)/$pcp ;; esac
fi
cd "$dir" || exit 2
for t in sha256sum jq openssl awk; do
    command -v "$t" >/dev/null 2>&1 || { echo "verify.sh: $t not found" >&2; exit 2; }
done
fail() {
    echo "verify.sh: INVALID: $*" >&2
    exit 1
}
tmp=$(mktemp -d)
ldir=
trap 'rm -rf "$tmp" ${ldir:+"$ldir"}' EXIT
trap 'exit 2' INT TERM
zeros=0000000000000000000000000000000000000000000000000000000000000000
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    ldir=$(mktemp -d /dev/shm/hsmca-verify.XXXXXX 2>/dev/null) || ldir=
fi
[ -n "$ldir" ] || { ldir=$tmp/l && mkdir "$ldir"; }

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

# the previous checkpoint the auditor kept: this log's, and signed when its .sig is beside it
if [ -n "$pcp" ]; then
    case $pcp in *.txt) psig=${pcp%.txt}.sig ;; *) psig=$pcp.sig ;; esac
    [ "$(sed -n 1p "$pcp")" = "hsmca-checkpoint/v1" ] || fail "previous checkpoint: not hsmca-checkpoint/v1"
    if [ -f "$psig" ]; then
        openssl dgst -sha256 -verify audit.pub.pem -signature "$psig" "$pcp" >/dev/null 2>&1 ||
            fail "previous checkpoint: its signature does not verify with this extract's key"
    fi
    [ "$(field key "$pcp")" = "$key" ] && [ "$(field origin "$pcp")" = "$origin" ] ||
        fail "previous checkpoint: another log (origin or audit key differs)"
    psize=$(field size "$pcp")
    phead=$(field head "$pcp")
    case $psize in '' | *[!0-9]*) fail "previous checkpoint: no size" ;; esac
    [ $((psize + 1)) -ge "$from" ] ||
        fail "the extract starts at seq $from, after your checkpoint $psize: ask for an extract from seq $((psize + 1)) or earlier to prove consistency"
    if [ $((psize + 1)) -eq "$from" ]; then
        [ "$phead" = "$prev" ] || fail "seq $psize differs from your checkpoint (rewrite or fork)"
    fi
else
    psize=0
    phead=
fi

# the chain in one pass: jq reads every line's seq and prev while awk writes each line (without
# its LF) to a file of its own, 4,096 at a time under the same names, and sha256sum hashes each
# batch in one run; a last awk walks seq, prev, hash and the checkpoint heads side by side. The
# line files go to a tmpfs (/dev/shm) when there is one: on a disk file system rewriting small
# files costs a hundred times more.
# one jq pass gives every line's "seq prev" (M), the quorum epochs (E) and executions (X)
jq -r '"M \(.seq) \(.prev)",
    (select(.action == "quorum.epoch") | "E " + (.detail | tojson)),
    (select(.action == "quorum.execute" and .outcome == "ok") | "X " + ({seq, d: .detail} | tojson))' \
    entries.jsonl >"$tmp/jq" 2>/dev/null &
jqpid=$!
awk -v d="$ldir" -v out="$tmp/hashes" '
function names(k,   i) {
    printf "" > (d "/list")
    for (i = 0; i < k; i++) print sprintf("%04d", i) > (d "/list")
    close(d "/list")
}
function flush() {
    if (n == 0) return
    if (n < 4096) names(n)
    if (system("cd \"" d "\" && xargs sha256sum <list >>\"" out "\"") != 0) exit 1
    n = 0
}
BEGIN { names(4096) }
{
    f = d "/" sprintf("%04d", n)
    printf "%s", $0 > f
    close(f)
    if (++n == 4096) flush()
}
END { flush() }' entries.jsonl || fail "entries.jsonl: cannot hash the lines"
wait "$jqpid" || fail "entries.jsonl: a line is not JSON"
sed -n 's/^M //p' "$tmp/jq" >"$tmp/meta"
[ "$(wc -l <"$tmp/meta")" -eq "$(wc -l <entries.jsonl)" ] ||
    fail "entries.jsonl: not exactly one JSON object per LF-terminated line"
[ "$(wc -l <"$tmp/hashes")" -eq "$(wc -l <"$tmp/meta")" ] || fail "entries.jsonl: cannot hash the lines"
cut -c1-64 "$tmp/hashes" | paste -d ' ' "$tmp/meta" - |
    awk -v from="$from" -v prev="$prev" -v heads="$tmp/heads" -v psize="$psize" -v phead="$phead" '
BEGIN {
    while ((getline l < heads) > 0) { split(l, a, " "); head[a[1]] = a[2]; hk[++ncp] = a[1] }
    expect = from
}
function bad(m) { print m; failed = 1; exit 1 }
{
    seq = $1; lprev = $2; h = $3
    if (seq != expect "") bad("seq " expect ": missing or out of order (found seq " seq ")")
    if (lprev != prev) {
        if (seq == from "") bad("seq " seq ": prev is not the head of the anchor checkpoint")
        bad("seq " (seq - 1) ": changed or replaced: its hash is not the prev of seq " seq)
    }
    if (seq in head) {
        if (h != head[seq]) bad("seq " seq ": its hash is not the head of checkpoint " seq)
        covered = seq
        delete head[seq]
    }
    if (psize != 0 && seq == psize "" && h != phead)
        bad("seq " seq " differs from your checkpoint " psize " (rewrite or fork)")
    prev = h
    expect++
}
END {
    if (failed) exit 1
    last = expect - 1
    for (i = 1; i <= ncp; i++) # the first checkpoint (by size) beyond the entries
        if (hk[i] in head) bad("truncated: checkpoint " hk[i] " covers seq " hk[i] " but the entries end at seq " last)
    if (psize > last) bad("truncated or rolled back: your checkpoint covers seq " psize " but the log ends at seq " last)
    print "ok " last
}' >"$tmp/chain" || true
read -r verdict rest <"$tmp/chain" || fail "entries.jsonl: unreadable"
[ "$verdict" = ok ] || fail "$verdict $rest"
last=$rest
lastcp=$(tail -n 1 "$tmp/cps")
[ "$last" = "$lastcp" ] || fail "seq $((lastcp + 1)): not covered by any checkpoint"
[ "$last" = "$to" ] || fail "truncated: manifest.json says to=$to but the entries end at seq $last"

# quorum operations
{
    if [ -f approvers.json ]; then
        jq -r '.epochs[]?' approvers.json | jq -c 'select(.action == "quorum.epoch") | .detail' ||
            fail "approvers.json: an epoch is not JSON"
    fi
    sed -n 's/^E //p' "$tmp/jq"
} >"$tmp/epochs"
sed -n 's/^X //p' "$tmp/jq" >"$tmp/execs"
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
