#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# audit_tools.sh -- the auditor's two verifiers on one extract of 21,001 entries made by the real
# audit writer (hsmca-bench audit-fill, checkpoints signed in a SoftHSM token): the extract's own
# verify.sh (sh, sha256sum, jq, openssl) and `hsmca audit verify` accept it as a directory, as a
# tar and (the CLI) as a tar on standard input; both take --previous with a checkpoint the auditor
# kept and refuse a forged or a later one; and both refuse a tampered extract: a changed line, a
# dropped line, a cut tail, a changed last line, each with the seq that broke.
. "$(dirname "$0")/lib.sh"

: "${HSMCA_BENCH_BIN:?}"
setup_tokens
"$HSMCA_BENCH_BIN" audit-fill -m "$MODULE" -t pkcs11:token=hsmca-audit \
    -k 'pkcs11:token=hsmca-audit;object=audit-key' -p "$W/audit.pin" -s "$W/fill.db" \
    -n 21000 -o "$W/x" > "$W/fill.out" 2>&1 || { cat "$W/fill.out" >&2; exit 1; }
X=$W/x
TMPDIR=$W/tmp # where hsmca unpacks a tar (and verify.sh keeps its lists)
export TMPDIR
mkdir -p "$TMPDIR"
ls "$X/checkpoints" | sed -n 's/\.txt$//p' | sort -n > "$W/cps"
NCP=$(wc -l < "$W/cps")
K=$(awk '$1 > 1000 { print; exit }' "$W/cps") # a checkpoint in the middle the auditor kept
check "the extract has a checkpoint in the middle and one at 21001" \
    sh -c "[ -n '$K' ] && [ '$K' -lt 21001 ] && [ \"\$(tail -n 1 '$W/cps')\" = 21001 ]"

vsh() { # expected exit, stderr pattern, verify.sh args...
    want=$1 pat=$2
    shift 2
    st=0
    sh "$X/verify.sh" "$@" > "$W/vsh.out" 2> "$W/vsh.err" || st=$?
    [ "$st" = "$want" ] && grep -q -- "$pat" "$W/vsh.out" "$W/vsh.err" ||
        { echo "verify.sh $*: exit $st: $(cat "$W/vsh.out" "$W/vsh.err")" >&2; return 1; }
}
vcli() { # expected exit, stdout pattern, hsmca audit verify args...
    want=$1 pat=$2
    shift 2
    st=0
    "$HSMCA_BIN" audit verify "$@" > "$W/cli.out" 2> "$W/cli.err" < "${STDIN:-/dev/null}" || st=$?
    [ "$st" = "$want" ] && grep -q -- "$pat" "$W/cli.out" "$W/cli.err" ||
        { echo "hsmca audit verify $*: exit $st: $(cat "$W/cli.out" "$W/cli.err")" >&2; return 1; }
}

# ---- valid, three ways ----
check "verify.sh accepts the extract" vsh 0 "valid: entries 1\\.\\.21001, $NCP checkpoints" "$X"
check "verify.sh run inside the extract (no DIR)" sh -c "cd '$X' && sh ./verify.sh 2>&1 | grep -q 'valid: entries 1..21001'"
check "hsmca audit verify accepts the directory" vcli 0 '^valid: entries 1\.\.21001 ' "$X"
tar --format=ustar -C "$W" -cf "$W/x.tar" x
check "hsmca audit verify accepts the tar as downloaded" vcli 0 '^valid: entries 1\.\.21001 ' "$W/x.tar"
STDIN=$W/x.tar
check "hsmca audit verify - reads the tar from standard input" vcli 0 '^valid: entries 1\.\.21001 ' -
STDIN=
head -c 100000 "$W/x.tar" > "$W/cut.tar"
check "a cut tar is refused (audit-extract-invalid)" vcli 1 'audit-extract-invalid' "$W/cut.tar"
SEEDS=${HSMCA_SOURCE_DIR:?}/tests/fuzz/fuzz_tar.in
check "a tar with a symbolic link is refused" vcli 1 'refused member type' "$SEEDS/symlink.tar"
check "a tar with a ../ name is refused" vcli 1 'refused member name' "$SEEDS/dotdot.tar"
check "no temporary directory left behind" [ -z "$(ls "$TMPDIR")" ]

# ---- --previous: a checkpoint the auditor kept ----
mkdir -p "$W/kept"
cp "$X/checkpoints/$K.txt" "$X/checkpoints/$K.sig" "$W/kept/"
check "verify.sh --previous (kept checkpoint $K, signed)" \
    vsh 0 'valid: entries 1\.\.21001' --previous "$W/kept/$K.txt" "$X"
check "hsmca audit verify --previous (the same)" \
    vcli 0 '^valid: ' "$X" --previous "$W/kept/$K.txt"
sed 's/^head .*/head 0000000000000000000000000000000000000000000000000000000000000001/' \
    "$X/checkpoints/$K.txt" > "$W/kept/forged.txt"
check "verify.sh: a forged previous checkpoint (no signature) is a fork at its seq" \
    vsh 1 "seq $K differs from your checkpoint" --previous "$W/kept/forged.txt" "$X"
check "hsmca audit verify: the same fork" vcli 1 'audit-fork' "$X" --previous "$W/kept/forged.txt"
cp "$X/checkpoints/$K.sig" "$W/kept/forged.sig"
check "verify.sh: a forged previous checkpoint with a signature beside it" \
    vsh 1 'signature does not verify' --previous "$W/kept/forged.txt" "$X"
sed 's/^size .*/size 30000/' "$X/checkpoints/21001.txt" > "$W/kept/later.txt"
check "verify.sh: a previous checkpoint beyond the log (rolled back)" \
    vsh 1 'truncated or rolled back' --previous "$W/kept/later.txt" "$X"
check "verify.sh: --previous without a file is a usage error (exit 2)" vsh 2 'usage' --previous

# ---- tampered extracts: verify.sh and the CLI both refuse, naming the seq ----
tamper() { # name sed-script
    rm -rf "$W/$1"
    cp -r "$X" "$W/$1"
    sed "$2" "$X/entries.jsonl" > "$W/$1/entries.jsonl"
}
tamper changed '5000s/factory-1/factory-2/'
check "verify.sh: a changed line" vsh 1 'seq 5000: changed or replaced' "$W/changed"
check "hsmca audit verify: a changed line" vcli 1 'INVALID: audit-chain' "$W/changed"
tamper dropped '7000d'
check "verify.sh: a dropped line" vsh 1 'seq 7000: missing or out of order' "$W/dropped"
check "hsmca audit verify: a dropped line" vcli 1 '^INVALID: ' "$W/dropped"
tamper cut '20501,$d'
check "verify.sh: a cut tail" vsh 1 'truncated' "$W/cut"
check "hsmca audit verify: a cut tail" vcli 1 '^INVALID: ' "$W/cut"
tamper last '$s/factory-1/factory-9/'
check "verify.sh: a changed last line (only its checkpoint's head catches it)" \
    vsh 1 'seq 21001: its hash is not the head of checkpoint 21001' "$W/last"
check "hsmca audit verify: a changed last line" vcli 1 '^INVALID: ' "$W/last"
tar --format=ustar -C "$W" -cf "$W/changed.tar" changed
check "hsmca audit verify: a tampered tar" vcli 1 '^INVALID: ' "$W/changed.tar"
finish
