#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# harden_disk.sh -- a full disk and a failing fdatasync lose nothing (docs/hardening.md). The
# store lives on a 6 MiB tmpfs mounted for this test (root; without the right to mount, the test
# says so and fails rather than pass untested). With an activated PAI: DACs are issued; the
# tmpfs is filled; DACs are asked for until the audit writer's commit fails, and while it does
# every answer is 503 problem+json (audit-write-failed) with no certificate stored; every 201 has
# its dac.issue entry; space returns and issuance resumes. The same with fdatasync failing (an
# LD_PRELOAD shim, while a trigger file exists). Then the daemon stops cleanly, restarts on the
# chain it verified, and an extract of the whole log verifies offline. On PostgreSQL
# (HSMCA_TEST_STORE=pg) the cluster's data directory is what fills the tmpfs, and the fdatasync
# part becomes the database server dying (pg_ctl stop -m immediate) and coming back.
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_PKI_BIN:?}" "${HSMCA_FSYNCFAIL:?}"
MNT=""
umount_disk() {
    if [ -n "$MNT" ]; then
        ! store_is_pg || pg_down fast 2>/dev/null || true # the cluster lives on the tmpfs
    umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
        MNT=""
    fi
}
trap 'umount_disk; cleanup' EXIT

setup_tokens paa
setup_tls
"$HSMCA_PKI_BIN" setup "$W" "$MODULE" "$SRC/policies/profiles" "$SRC/policies/quorum.json"
mkdir -p "$W/disk"
# on PostgreSQL the cluster's data directory goes onto the tmpfs (initdb's files take about 40 MiB)
size=6m
! store_is_pg || size=64m
if ! mount -t tmpfs -o size=$size,mode=0700 tmpfs "$W/disk" 2>"$W/mount.err"; then
    echo "harden_disk: cannot mount a tmpfs here ($(cat "$W/mount.err")); this test needs root" \
        "and the right to mount (CAP_SYS_ADMIN)" >&2
    exit 1
fi
MNT="$W/disk"
write_config "" "
  \"profiles_dir\": \"$SRC/policies/profiles\","
if store_is_pg; then
    [ "$(id -u)" != 0 ] || chmod 0755 "$W/disk"
    pg_move "$W/disk"
else
    mv "$W/hsmca.db" "$W/disk/hsmca.db"
    rm -f "$W/hsmca.db-wal" "$W/hsmca.db-shm"
    sed -i 's|"store": "hsmca.db"|"store": "disk/hsmca.db"|' "$W/hsmcad.json"
fi
export HSMCA_FSYNC_FAIL_FILE="$W/fsync-fails"
# the shim goes into the daemon only (a wrapper that execs it, so $DPID is the daemon's)
REAL_HSMCAD=$HSMCAD_BIN
cat > "$W/hsmcad-shim" <<SH
#!/bin/sh
LD_PRELOAD="$HSMCA_FSYNCFAIL" ASAN_OPTIONS="\${ASAN_OPTIONS:-}:verify_asan_link_order=0" \\
    exec "$REAL_HSMCAD" "\$@"
SH
chmod +x "$W/hsmcad-shim"
HSMCAD_BIN="$W/hsmcad-shim"
start_daemon

# ---- activation through the quorum ----
check "the quorum activated pai-8000" activate 100000

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=device" \
    -keyout "$W/dev.key" -outform DER -out "$W/dev.der" 2>/dev/null
mkdir -p "$W/dacs"
: > "$W/issued"
: > "$W/refused"
N=0
dac() { # one DAC; records its serial in issued or its code in refused; sets STATUS
    N=$((N + 1))
    call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/pkcs10' \
        -H 'Accept: application/pem-certificate-chain' -H "Idempotency-Key: disk-$N" \
        --data-binary @"$W/dev.der" -m 30
    if [ "$STATUS" = 201 ]; then
        openssl x509 -in "$W/body" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' >> "$W/issued"
    else
        echo "$STATUS $(body_code) $(is_problem && echo problem)" >> "$W/refused"
    fi
}
for i in 1 2 3; do dac; done
check "three DACs issued before the disk fills" [ "$(wc -l < "$W/issued")" = 3 ]
openssl req -inform DER -in "$W/dev.der" -out "$W/dev.pem"
call operator POST /v1/cas/pai-8000/dacs -H 'Content-Type: application/json' --data-binary \
    "$(jq -n --rawfile c "$W/dev.pem" '{csr: $c, request_id: ""}')"
expect "an empty request_id in JSON (idempotency never silently off)" 400 request-id-invalid

# ---- the disk fills ----
dd if=/dev/zero of="$W/disk/filler" bs=64k 2>/dev/null || true
check "the tmpfs is full" [ "$(df -P "$W/disk" | awk 'NR == 2 { print $4 }')" -lt 64 ]
before=$(wc -l < "$W/issued")
i=0
while [ $i -lt 300 ] && [ "$STATUS" != 503 ]; do
    dac
    i=$((i + 1))
done
check "with the disk full, a DAC request is refused with 503 ($i asked)" [ "$STATUS" = 503 ]
check "... as problem+json audit-write-failed" sh -c "tail -n 1 '$W/refused' |
    grep -q '^503 audit-write-failed problem$'"
for j in 1 2 3 4 5; do dac; done
# (on PostgreSQL the certificate's insert may be what fails first: 503 store-write-failed)
check "while it stays full, every answer is 503 problem+json" \
    [ "$(tail -n 5 "$W/refused" | grep -c '^503 \(audit\|store\)-write-failed problem$')" = 5 ]
call operator GET /healthz
check "the daemon still answers while full" [ "$STATUS" = 200 ]
rm -f "$W/disk/filler"
dac
check "space returns: issuance resumes (201)" [ "$STATUS" = 201 ]

if store_is_pg; then
    # ---- the database server dies (its own fsync is PostgreSQL's, not the daemon's to fail) ----
    pg_down immediate
    for j in 1 2 3; do dac; done
    check "with the database server down, DAC requests are refused 503 problem+json" \
        [ "$(tail -n 3 "$W/refused" | grep -c '^503 [a-z-]* problem$')" = 3 ]
    pg_up
    i=0
    while [ $i -lt 20 ]; do # the first statements after the restart find the old connection gone
        dac
        [ "$STATUS" != 201 ] || break
        i=$((i + 1))
        sleep 0.5
    done
    check "the server is back: issuance resumes (201)" [ "$STATUS" = 201 ]
else
    # ---- fdatasync fails ----
    touch "$W/fsync-fails"
    for j in 1 2 3; do dac; done
    check "with fdatasync failing, DAC requests are refused 503 problem+json" \
        [ "$(tail -n 3 "$W/refused" | grep -c '^503 audit-write-failed problem$')" = 3 ]
    rm -f "$W/fsync-fails"
    dac
    check "fdatasync works again: issuance resumes (201)" [ "$STATUS" = 201 ]
fi
dac
check "and goes on (201)" [ "$STATUS" = 201 ]

# ---- nothing released without its entry; nothing stored for a refusal ----
check "a clean stop" stop_daemon
if store_is_pg; then
    store_sql "SELECT CAST(line AS TEXT) FROM audit_entries" > "$W/log.jsonl"
else
    sqlite3 "$W/disk/hsmca.db" "SELECT CAST(line AS TEXT) FROM audit_entries" > "$W/log.jsonl"
fi
missing=0
while read -r s; do
    grep -q "\"action\":\"dac.issue\".*\"serial\":\"$s\"" "$W/log.jsonl" || missing=$((missing + 1))
done < "$W/issued"
n_issued=$(wc -l < "$W/issued")
# (a DAC that failed after its request was taken has its dac.issue entry too, outcome failed)
n_entries=$(grep '"action":"dac.issue"' "$W/log.jsonl" | grep -c '"outcome":"ok"' || true)
n_certs=$(if store_is_pg; then store_sql "SELECT count(*) FROM certificates"; else
    sqlite3 "$W/disk/hsmca.db" "SELECT count(*) FROM certificates"; fi)
echo "# $n_issued DACs released, $(wc -l < "$W/refused") refused; $n_entries dac.issue entries"
check "every released DAC has its dac.issue entry ($missing missing)" [ "$missing" = 0 ]
check "no dac.issue entry without its released DAC ($n_entries entries, $n_issued released)" \
    [ "$n_entries" = "$n_issued" ]

# ---- restart on the verified chain; the whole log verifies offline ----
start_daemon
call auditor GET /v1/audit/extract
check "restarted; extract 200" [ "$STATUS" = 200 ]
mkdir -p "$W/x"
tar -xf "$W/body" -C "$W/x"
check "the whole log verifies offline" "$HSMCA_BIN" audit verify "$W/x/hsmca-audit-extract"
stop_daemon
umount_disk
finish
