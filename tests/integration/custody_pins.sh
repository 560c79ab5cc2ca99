#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# custody_pins.sh -- no SO PIN and no CA token user PIN is ever on disk in clear.
#   1. The README's demo (tools/quickstart) runs in a throwaway directory through the p11 shim
#      (tests/fixture/p11shim.c), which records every PIN given to C_InitToken, C_InitPIN,
#      C_Login and C_SetPIN into a file outside that directory: the SO PINs of every token, the
#      CA tokens' user PINs of every epoch (ceremony, then one rotation per quorum operation).
#      Every file the demo wrote (tokens, store, WAL, logs, extracts, outputs) is searched for
#      each of them raw, in hex (both cases) and in base64; none may appear, and no so.pin exists.
#   2. The real ceremony path: a token an HSM administrator initialised with an SO PIN of their
#      own. After `hsmca ceremony init`, that SO PIN no longer logs in (pkcs11-tool), and the
#      token's user PIN is still reachable only through the quorum.
# The approver PINs and the audit PIN are the demo's stand-ins for what a person types or a
# service credential (README) and are searched for only outside var/demo/secrets.
set -eu
. "$(dirname "$0")/lib.sh"
export LC_ALL=C

top=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_P11SHIM:?}"
pins=$W/pins.log # outside the demo's directory
demo=$W/demo
export HSMCA_SHIM_PIN_LOG=$pins
export HSMCA_PKCS11_MODULE=$HSMCA_P11SHIM
unset SOFTHSM2_CONF

if ! HSMCA_DEMO_DIR=$demo "$top/tools/quickstart" > "$W/quickstart.out" 2>&1; then
    cat "$W/quickstart.out"
    bad "tools/quickstart ran through the shim"
    HSMCA_DEMO_DIR=$demo "$top/tools/quickstart" stop > /dev/null 2>&1 || true
    finish
fi
ok "tools/quickstart ran through the shim (ceremony, PAA, PAI, activation, a DAC, an extract)"
# stopped, so the store's WAL and the daemon's log are final
HSMCA_DEMO_DIR=$demo "$top/tools/quickstart" stop > /dev/null

check "no so.pin anywhere in the demo" [ -z "$(find "$demo" -name 'so.pin*')" ]
check "the ceremony reports the SO PINs destroyed" \
    grep -q 'SO PIN random and destroyed' "$demo/ceremony-init.txt"

# the PINs: SO PINs of every token, and the user PINs of the CA tokens (every epoch's)
so_n=$(grep -c '^C_InitToken so ' "$pins" || true)
check "the shim saw the SO PINs of 6 tokens (audit, PAA, PAI, 3 approvers): $so_n" [ "$so_n" -eq 6 ]
check "every SO PIN is 32 random bytes" \
    [ -z "$(grep '^C_InitToken so ' "$pins" | awk 'length($3) != 64')" ]
awk '/^C_InitToken so / || / so / { print $3 }' "$pins" | sort -u > "$W/so.hex"
# user PINs of the CA tokens: set by the ceremony (C_InitPIN) and by the rotations (C_SetPIN new)
grep -E '^(C_InitPIN user|C_SetPIN new|C_SetPIN old|C_Login user) ' "$pins" | awk '{ print $3 }' |
    sort -u > "$W/user.all.hex"
# the demo's own credentials (typed by people or kept as a service credential in secrets/)
for f in "$demo"/secrets/*.pin; do
    od -An -tx1 < "$f" | tr -d ' \n'
    echo
done | sort -u > "$W/credentials.hex"
comm -23 "$W/user.all.hex" "$W/credentials.hex" > "$W/user.hex"
n_user=$(wc -l < "$W/user.hex")
# ceremony: 2 C_InitPIN with the throwaway + 2 by the quorum; three quorum operations rotate
check "the CA tokens' user PINs of every epoch were recorded ($n_user)" [ "$n_user" -ge 6 ]

# every file the demo wrote: the demo directory (tokens, db, WAL, logs, extract, outputs) and
# what tools/quickstart printed
find "$demo" -type f > "$W/files"
echo "$W/quickstart.out" >> "$W/files"
check "the demo wrote its tokens, store and logs" \
    sh -c "grep -q '/tokens/' '$W/files' && grep -q 'hsmca.db' '$W/files' && grep -q 'hsmcad.log' '$W/files'"
# scan NEEDLES FILES: each needle line "WHAT HEX"; prints every hit, exits 1 on any. Raw bytes (the
# PINs are random binary), hex in both cases, and base64 at each of the three alignments a PIN
# can have inside a longer base64 text.
scan() {
    python3 - "$1" "$2" <<'PY'
import base64, sys
needles = []
for line in open(sys.argv[1]):
    what, h = line.split()
    raw = bytes.fromhex(h)
    forms = {"raw": raw, "hex": h.encode(), "HEX": h.upper().encode()}
    for k in range(3):
        b = base64.b64encode(b"\0" * k + raw)
        # drop the characters that the prefix or the following bytes change
        forms["base64+%d" % k] = b[(4 * k + 2) // 3 + 1:-3]
    needles.append((what, forms))
hits = 0
for f in open(sys.argv[2]).read().split("\n"):
    if not f:
        continue
    data = open(f, "rb").read()
    for what, forms in needles:
        for form, v in forms.items():
            if len(v) >= 8 and v in data:
                print("FOUND %s PIN (%s) in %s" % (what, form, f))
                hits += 1
sys.exit(1 if hits else 0)
PY
}
grep -v '/secrets/' "$W/files" > "$W/files.nosecrets"
{
    sed 's/^/so /' "$W/so.hex"
    sed 's/^/ca-user /' "$W/user.hex"
} > "$W/needles"
sed 's/^/credential /' "$W/credentials.hex" > "$W/needles.cred"
check "no SO PIN or CA user PIN in clear (raw, hex, HEX, base64) in $(wc -l < "$W/files") files" \
    scan "$W/needles" "$W/files"
check "no approver or audit PIN outside secrets/ (raw, hex, HEX, base64)" \
    scan "$W/needles.cred" "$W/files.nosecrets"
# the scan finds what it looks for: PINs planted in copies of the store
not() { ! "$@"; }
unhex() { python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))'; }
for k in 0 1 2; do
    cp "$demo/hsmca.db" "$W/planted$k.db"
    head -c "$k" /dev/urandom >> "$W/planted$k.db"
    { head -1 "$W/so.hex"; tail -1 "$W/user.hex"; } | tr -d '\n' | unhex | base64 -w0 \
        >> "$W/planted$k.db"
    echo "$W/planted$k.db" > "$W/planted.list"
    check "the scan finds PINs planted in base64 at alignment $k" \
        not scan "$W/needles" "$W/planted.list"
done
cp "$demo/hsmca.db" "$W/planted-raw.db"
tail -1 "$W/user.hex" | tr -d '\n' | unhex >> "$W/planted-raw.db"
echo "$W/planted-raw.db" > "$W/planted.list"
check "the scan finds a planted raw user PIN" not scan "$W/needles" "$W/planted.list"

# ---- 2. the administrator's SO PIN stops working at the ceremony ----
softhsm_conf "$W/adm"
export SOFTHSM2_CONF=$W/adm/softhsm2.conf
umask 077
printf 'admin-so-pin-1234\n' > "$W/adm/so.pin"
printf 'audit-pin-1234\n' > "$W/adm/audit.pin"
"$HSMCA_BIN" token init --module "$MODULE" --pin-file "$W/adm/audit.pin" hsmca-audit > /dev/null
softhsm_token "$SOFTHSM2_CONF" hsmca-x admin-so-pin-1234 placeholder
for n in 1 2; do
    printf 'ap-%s-pin\n' "$n" > "$W/adm/ap$n.pin"
    "$HSMCA_BIN" token init --module "$MODULE" --pin-file "$W/adm/ap$n.pin" "ap-$n" > /dev/null
    "$HSMCA_BIN" token keygen --module "$MODULE" --pin-file "$W/adm/ap$n.pin" --derive \
        "pkcs11:token=ap-$n;object=k" > "$W/adm/ap$n.pem"
done
umask 022
so_login() { # LABEL SO-PIN: can the SO log in? (pkcs11-tool sets a user PIN as the SO)
    pkcs11-tool --module "$MODULE" --token-label "$1" --login --login-type so --so-pin "$2" \
        --init-pin --pin "$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" > /dev/null 2>&1
}
check "before the ceremony the administrator's SO PIN logs in (pkcs11-tool)" \
    so_login hsmca-x admin-so-pin-1234
(cd "$W/adm" && "$HSMCA_BIN" ceremony init --module "$MODULE" --store adm.db \
    --audit-token pkcs11:token=hsmca-audit --audit-pin-file audit.pin \
    --token pkcs11:token=hsmca-x --so-pin-file so.pin \
    --approver ap-1=ap1.pem --approver ap-2=ap2.pem --m 2 \
    --policy "$top/policies/quorum.json" > init.txt 2> init.err)
check "ceremony init on the administrator's token succeeds and says the SO PIN is destroyed" \
    grep -q 'hsmca-x (user PIN set, split and sealed; SO PIN random and destroyed)' \
    "$W/adm/init.txt"
check "after the ceremony the administrator's SO PIN no longer logs in" \
    sh -c "! pkcs11-tool --module '$MODULE' --token-label hsmca-x --login --login-type so \
        --so-pin admin-so-pin-1234 --init-pin --pin x1234567 > '$W/adm/p11.out' 2>&1 &&
        grep -q CKR_PIN_INCORRECT '$W/adm/p11.out'"
check "ceremony init refuses --init-tokens with --so-pin-file (usage, exit 2)" \
    sh -c "cd '$W/adm'; '$HSMCA_BIN' ceremony init --store x.db --audit-token pkcs11:token=a \
        --token pkcs11:token=b --init-tokens --so-pin-file so.pin --approver a=ap1.pem \
        --approver b=ap2.pem --m 2 > /dev/null 2>&1; [ \$? -eq 2 ]"
finish
