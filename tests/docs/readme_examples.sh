#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# readme_examples.sh -- runs the README's `hsmca verify` example (the fenced block after the
# marker <!-- example: hsmca-verify -->) and compares each command's output with the README's.
# The files it names come from a real chain: ceremony/demo.sh makes a PAA, a PAI (FFF1/8000) and a
# DAC on SoftHSM; 2cdps.pem is the public CHIP test DAC that carries an extension twice.
set -eu
: "${HSMCA_TEST_TMP:?run me through meson test}" "${HSMCA_BIN:?}" "${HSMCA_SOURCE_DIR:?}"
: "${HSMCA_VECTORS_DIR:?}"
mkdir -p "$HSMCA_TEST_TMP"
w=$(mktemp -d "$HSMCA_TEST_TMP/readme-XXXXXX")
trap 'rm -rf "$w"' EXIT
sh "$HSMCA_SOURCE_DIR/ceremony/demo.sh" "$w/demo" > "$w/demo.log" 2>&1 ||
    { tail -20 "$w/demo.log"; exit 1; }
cp "$w/demo/dac.pem" "$w/demo/pai.pem" "$w"
openssl x509 -in "$w/demo/paa.pem" -outform DER -out "$w/paa.der"
cp "$HSMCA_VECTORS_DIR/chip/attestation/Chip-Test-DAC-FFF1-8000-0000-2CDPs-Cert.pem" \
    "$w/2cdps.pem"

# the example block: "$ cmd" lines, each followed by its expected output lines
awk '$0 == "<!-- example: hsmca-verify -->" {f = 1; next}
     f && /^```/ {if (in_) exit; in_ = 1; next}
     f && in_ {print}' "$HSMCA_SOURCE_DIR/README.md" > "$w/example"
[ -s "$w/example" ] || { echo "readme: the example block is missing"; exit 1; }
cd "$w"
n=0 fails=0
: > expected
run_one() {
    [ -n "${cmd:-}" ] || return 0
    n=$((n + 1))
    # shellcheck disable=SC2086
    set -- $cmd
    shift # "hsmca"
    "$HSMCA_BIN" "$@" > got 2>&1 || true
    if cmp -s got expected; then
        echo "ok - $cmd"
    else
        fails=$((fails + 1))
        echo "FAIL - $cmd"
        diff expected got || true
    fi
    : > expected
}
while IFS= read -r line; do
    case "$line" in
    '$ '*)
        run_one
        cmd=${line#\$ }
        ;;
    *) printf '%s\n' "$line" >> expected ;;
    esac
done < example
run_one
echo "# $n examples, $fails failed"
[ "$n" -ge 3 ] && [ "$fails" -eq 0 ]
