#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# ceremony/demo.sh -- the whole key ceremony on SoftHSM, end to end, for a demo or a test:
# three approver tokens (alice, bob, carol) on an "approver host", m = 2; the CA host holds the
# audit, PAA and PAI tokens. Runs `hsmca ceremony init`, then the PAA and PAI ceremonies with
# `hsmca ceremony run` in the background and `hsmca approve --offline` by two approvers each,
# enrols a fourth approver (dave, proof of possession by his token), opens the PAI's activation
# window with dave's approval for one test DAC, checks the certificates (openssl -x509_strict and
# `hsmca verify` on the DAC -> PAI -> PAA chain) and the audit extract, and fills the record.
# Usage: ceremony/demo.sh [WORKDIR]   (HSMCA=path/to/hsmca, default build/src/hsmca/hsmca)
# Everything lives under WORKDIR (default: a new mktemp dir). Demo PINs are random per run and
# kept in 0600 files under WORKDIR: a real ceremony types them on the token's PIN pad or prompt.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tools/softhsm.sh
. "$here/tools/softhsm.sh"
HSMCA=${HSMCA:-${HSMCA_BIN:-$here/build/src/hsmca/hsmca}}
MODULE=${HSMCA_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/hsmca-ceremony.XXXXXX")}
if [ -f "$work/.hsmca-demo" ]; then
    rm -rf "$work" # an earlier demo run's directory (marked): start afresh
elif [ -d "$work" ] && [ -n "$(ls -A "$work")" ]; then
    echo "demo: $work exists and is not empty" >&2
    exit 2
fi
mkdir -p "$work"
: >"$work/.hsmca-demo"
cd "$work"
umask 077
step() { printf '\n== %s\n' "$*"; }
rand() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# Two SoftHSM installations: the CA host and the approvers' host (each approver would have
# their own machine and token; one host with three tokens keeps the demo small).
for h in ca approvers; do
    softhsm_conf "$work/$h"
done
ca() { SOFTHSM2_CONF="$work/ca/softhsm2.conf" "$@"; }
ap() { SOFTHSM2_CONF="$work/approvers/softhsm2.conf" "$@"; }

step "HSM administrator: initialise the audit token (label + its service PIN; random SO PIN)"
# No SO PIN is ever chosen or kept: `hsmca token init` and `ceremony init --init-tokens` give
# each token a random one and wipe it (docs/custody-so-pin.md).
rand 16 >audit.pin
ca "$HSMCA" token init --module "$MODULE" --pin-file audit.pin hsmca-audit

step "Approvers: each generates a key in their own token and hands over the public key"
for a in alice bob carol; do
    rand 16 >"$a.pin"
    ap "$HSMCA" token init --module "$MODULE" --pin-file "$a.pin" "approver-$a" >/dev/null
    ap "$HSMCA" token keygen --module "$MODULE" --pin-file "$a.pin" --derive \
        "pkcs11:token=approver-$a;object=approver-key" >"$a.pem"
    serial=$(ap "$HSMCA" token info --module "$MODULE" "pkcs11:token=approver-$a" |
        sed -n 's/^serial: //p')
    echo "$serial" >"$a.serial"
    echo "approver $a: token serial $serial, key $(openssl pkey -pubin -in "$a.pem" -outform DER |
        openssl dgst -sha256 -r | cut -c1-16)..."
done

step "Ceremony init: CA tokens with random SO PINs (destroyed), random user PINs split 2-of-3 and sealed to the approvers; genesis"
ca "$HSMCA" ceremony init --module "$MODULE" --store hsmca.db \
    --audit-token pkcs11:token=hsmca-audit --audit-pin-file audit.pin \
    --token pkcs11:token=hsmca-paa --token pkcs11:token=hsmca-pai --init-tokens \
    --approver "alice=alice.pem:$(cat alice.serial)" \
    --approver "bob=bob.pem:$(cat bob.serial)" \
    --approver "carol=carol.pem:$(cat carol.serial)" \
    --m 2 --policy "$here/policies/quorum.json" --id "demo-$(date -u +%Y%m%d)" | tee init.txt
ca "$HSMCA" token pubkey --module "$MODULE" 'pkcs11:token=hsmca-audit;object=audit-key' >audit.pem

# One quorum operation: the CA host writes the request and waits; two approvers approve.
ceremony_op() { # NAME OP PARAMS APPROVER1 APPROVER2 [extra ceremony run options...]
    name=$1 op=$2 params=$3 a1=$4 a2=$5
    shift 5
    mkdir -p "approvals-$name"
    ca "$HSMCA" ceremony run --module "$MODULE" --store hsmca.db \
        --audit-token pkcs11:token=hsmca-audit --audit-pin-file audit.pin \
        --op "$op" --params "$params" --requester admin \
        --out-request "request-$name.json" --approvals-dir "approvals-$name" --wait 120 \
        --profiles "$here/policies/profiles" "$@" >"run-$name.txt" 2>&1 &
    pid=$!
    i=0
    while [ ! -s "request-$name.json" ]; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
            cat "run-$name.txt"
            echo "demo: the ceremony host did not write its request" >&2
            exit 1
        fi
        sleep 0.1
    done
    for a in $a1 $a2; do
        echo "-- approver $a reviews and approves (offline, with their token)"
        ap "$HSMCA" approve --module "$MODULE" --offline "request-$name.json" \
            --out "approvals-$name/$a.json" --name "$a" \
            --key-uri "pkcs11:token=approver-$a;object=approver-key" --pin-file "$a.pin" \
            --audit-pub audit.pem --state "$a.witness" --yes
    done
    if ! wait $pid; then
        cat "run-$name.txt"
        echo "demo: $op failed" >&2
        exit 1
    fi
    cat "run-$name.txt"
}

step "PAA ceremony: key generated in hsmca-paa, self-signed PAA (alice + bob)"
ceremony_op paa ca.create_paa \
    '{"ca":"paa-fff1","token":"hsmca-paa","key_label":"paa-key","vid":65521,"cn":"hsmca Demo PAA"}' \
    alice bob --out-cert paa.pem

step "PAI ceremony: key generated in hsmca-pai, signed by the PAA (bob + carol)"
ceremony_op pai ca.create_pai \
    '{"ca":"pai-fff1-8000","parent":"paa-fff1","token":"hsmca-pai","key_label":"pai-key","vid":65521,"pid":32768,"cn":"hsmca Demo PAI"}' \
    bob carol --out-cert pai.pem

step "Enrolment: dave joins (proof of possession by his token); every PIN is re-sealed (alice + bob)"
rand 16 >dave.pin
ap "$HSMCA" token init --module "$MODULE" --pin-file dave.pin approver-dave >/dev/null
ap "$HSMCA" token keygen --module "$MODULE" --pin-file dave.pin --derive \
    "pkcs11:token=approver-dave;object=approver-key" >dave.pem
ap "$HSMCA" approve --enroll --module "$MODULE" --name dave \
    --key-uri "pkcs11:token=approver-dave;object=approver-key" --pin-file dave.pin >dave.params
ceremony_op enrol approver.enroll "$(cat dave.params)" alice bob

step "Activation: the PAI's window opens (dave + carol), one test DAC, deactivation"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout dac.key \
    -subj "/CN=hsmca demo device" -out dac.csr 2>/dev/null
until=$(($(date +%s) * 1000 + 600000))
ceremony_op activate ca.activate "{\"ca\":\"pai-fff1-8000\",\"until\":$until,\"max_dacs\":1}" \
    dave carol --csr dac.csr --out-dac dac.pem

step "Checks"
openssl verify -x509_strict -check_ss_sig -CAfile paa.pem paa.pem
openssl verify -x509_strict -CAfile paa.pem pai.pem
"$HSMCA" verify --dac dac.pem --pai pai.pem --paa paa.pem --expect-vid FFF1 --expect-pid 8000
openssl x509 -in paa.pem -noout -subject -issuer -serial -fingerprint -sha256
openssl x509 -in pai.pem -noout -subject -issuer -serial -fingerprint -sha256
size=$(sed -n 's/^log-size: //p' run-activate.txt | tail -1)
"$HSMCA" audit archive --store hsmca.db --from 1 --to "$size" --out extract
"$HSMCA" audit verify extract
"$here/ceremony/record.sh" extract >record.md
paa_sha=$(openssl x509 -in paa.pem -outform DER | sha256sum | cut -d' ' -f1)
grep -q "$paa_sha" record.md || { echo "demo: the record lacks the PAA" >&2; exit 1; }
grep -Eq "\| approver.enroll \| .* \| (alice, bob|bob, alice) \|" record.md ||
    { echo "demo: the record lacks the enrolment" >&2; exit 1; }
grep -Eq "\| ca.activate \| .* \| (dave, carol|carol, dave) \|" record.md ||
    { echo "demo: the new approver's approval is not in the record" >&2; exit 1; }
# the test DAC came from the issuance engine inside an audited window, as hsmcad's DACs do
serial=$(openssl x509 -in dac.pem -noout -serial | sed 's/^serial=//')
grep -qi "\"action\":\"dac.issue\",\"actor\":\"ceremony\",\"detail\":{\"csr_sha256\":\"[0-9a-f]\{64\}\",.*\"serial\":\"$serial\"" \
    extract/entries.jsonl || { echo "demo: the test DAC's dac.issue entry is not the engine's" >&2; exit 1; }
for w in '"action":"window.start"' '"action":"window.end",.*"reason":"deactivation"'; do
    grep -q "$w" extract/entries.jsonl || { echo "demo: no $w entry" >&2; exit 1; }
done
echo "ceremony record: $work/record.md"
# No secret that passed through this run is in the database, its WAL, the log or any output:
# the PINs typed in (audit, approvers) are checked here, raw and hex; the CA tokens' PINs and the
# SO PINs, which no one ever knew, by tests/unit/test_quorum.c and
# tests/integration/custody_pins.sh.
if [ -n "$(find . -name 'so.pin*')" ]; then
    echo "demo: an SO PIN file exists" >&2
    exit 1
fi
grep -q 'SO PIN random and destroyed' init.txt ||
    { echo "demo: the ceremony did not destroy the SO PINs" >&2; exit 1; }
for f in audit.pin alice.pin bob.pin carol.pin dave.pin; do
    for v in "$(cat "$f")" "$(printf %s "$(cat "$f")" | od -An -tx1 | tr -d ' \n')"; do
        for g in hsmca.db hsmca.db-wal init.txt run-*.txt extract/*; do
            [ -f "$g" ] || continue
            if grep -qaF -- "$v" "$g"; then
                echo "demo: a PIN from $f appears in $g" >&2
                exit 1
            fi
        done
    done
done
echo "no PIN in the database, WAL, outputs or extract"
echo "PAA: $work/paa.pem"
echo "PAI: $work/pai.pem"
echo "record: genesis $(sed -n 's/^genesis-sha256: //p' init.txt), checkpoint $(sed -n 's/^checkpoint-sha256: //p' run-activate.txt)"
echo "demo ceremony complete in $work"
