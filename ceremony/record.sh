#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# ceremony/record.sh -- fill the ceremony record (record-template.md) from an audit extract.
# Usage: ceremony/record.sh EXTRACT-DIR > record.md
# Needs sh, jq, sha256sum. Verify the extract first (hsmca audit verify EXTRACT-DIR, or its
# verify.sh): this script only reads it. The hand-written parts stay empty for the witness.
set -eu
x=${1:?usage: record.sh EXTRACT-DIR}
e="$x/entries.jsonl"
[ -f "$e" ] || { echo "record.sh: $e not found" >&2; exit 2; }
tpl="$(dirname "$0")/record-template.md"
sha_line() { sed -n "${1}p" "$e" | tr -d '\n' | sha256sum | cut -d' ' -f1; }
n=$(wc -l <"$e" | tr -d ' ')
genesis=$(jq -c 'select(.action=="log.genesis") | .detail' "$e" | head -1)
val() { printf '%s' "$genesis" | jq -r "$1 // \"-\""; }

ceremony=$(val '.ceremony')
log_id=$(val '.log_id')
audit_key=$(val '.audit_key')
m=$(val '.m')
first_time=$(head -1 "$e" | jq -r .time)
last_time=$(tail -1 "$e" | jq -r .time)
approvers=$(printf '%s' "$genesis" | jq -r '(.approvers // []) | join(", ")')
requesters=$(jq -r 'select(.action=="quorum.request" and .outcome=="ok") | .actor' "$e" |
    sort -u | paste -sd, - | sed 's/,/, /g')
policy_hash=$(jq -r 'select(.action=="quorum.epoch") | .detail.policy_hash' "$e" | tail -1)
steps=$({
    echo "| Seq | Time | Action | Outcome | Actor | Target |"
    echo "| --- | --- | --- | --- | --- | --- |"
    jq -r '"| \(.seq) | \(.time) | \(.action) | \(.outcome) | \(.actor) | \(.target) |"' "$e"
})
approvals=$({
    echo "| Seq | Request | Operation | Epoch | Threshold | Approvers |"
    echo "| --- | --- | --- | --- | --- | --- |"
    jq -r 'select(.action=="quorum.execute" and .outcome=="ok") |
        "| \(.seq) | \(.target | sub("^request/"; "")) | \(.detail.op) | \(.detail.epoch) | \(.detail.threshold) | \([.detail.approvals[].approver] | join(", ")) |"' "$e"
})
refusals=$({
    echo "| Seq | Time | Action | Actor | Code |"
    echo "| --- | --- | --- | --- | --- |"
    jq -r 'select(.outcome=="refused" or .outcome=="failed") |
        "| \(.seq) | \(.time) | \(.action) | \(.actor) | \(.detail.code // "-") |"' "$e"
})
certs=$(jq -r 'select(.action=="ca.create" and .outcome=="ok") |
    "| \(.detail.ca) | \(.detail.kind) | \(if .detail.parent == "" then "-" else .detail.parent end) | \(.detail.cert_sha256) | \(.detail.serial) |"' "$e")
epochs=$({
    echo "| Seq | Epoch | Approvers | Thresholds |"
    echo "| --- | --- | --- | --- |"
    jq -r 'select(.action=="quorum.epoch") |
        "| \(.seq) | \(.detail.epoch) | \([.detail.approvers[].name] | join(", ")) | \(.detail.thresholds | to_entries | map("\(.key)=\(.value)") | join(" ")) |"' "$e"
})
cp=$(ls "$x/checkpoints" 2>/dev/null | grep '\.txt$' | sort -n | tail -1 || true)
checkpoint=$([ -n "$cp" ] && sha256sum <"$x/checkpoints/$cp" | cut -d' ' -f1 || echo "-")
genesis_hash=$(sha_line 1)
head_hash=$(sha_line "$n")

# Substitute line by line; multi-line values replace a placeholder that stands alone on its line.
while IFS= read -r line; do
    case "$line" in
    "{{steps}}") printf '%s\n' "$steps" ;;
    "{{approvals}}") printf '%s\n' "$approvals" ;;
    "{{refusals}}") printf '%s\n' "$refusals" ;;
    "{{certs}}") printf '%s\n' "$certs" ;;
    "{{epochs}}") printf '%s\n' "$epochs" ;;
    *)
        printf '%s\n' "$line" | sed \
            -e "s|{{ceremony}}|$ceremony|" -e "s|{{first_time}}|$first_time|" \
            -e "s|{{last_time}}|$last_time|" -e "s|{{policy_hash}}|$policy_hash|" \
            -e "s|{{log_id}}|$log_id|" -e "s|{{audit_key}}|$audit_key|" \
            -e "s|{{requesters}}|$requesters|" -e "s|{{approvers}}|$approvers|" \
            -e "s|{{m}}|$m|" -e "s|{{genesis}}|$genesis_hash|" -e "s|{{head}}|$head_hash|" \
            -e "s|{{checkpoint}}|$checkpoint|"
        ;;
    esac
done <"$tpl"
