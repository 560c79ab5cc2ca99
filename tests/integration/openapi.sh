#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# openapi.sh -- docs/api/openapi.json against the code: every route of `hsmcad --list-routes` is
# in the document with the same roles (and CA binding), every operation of the document is served
# by the running daemon (never 404 http-not-found or 405), the status it answers is one the
# document declares, and every 4xx/5xx response in the document is application/problem+json (a 401
# with WWW-Authenticate), every 201 has Location, mutual TLS is the security scheme, and the
# license is Apache-2.0. The document's own lint (@redocly/cli) is a step of .ci/run.
. "$(dirname "$0")/lib.sh"

DOC=${HSMCA_SOURCE_DIR:?}/docs/api/openapi.json
check "openapi.json is JSON with openapi 3" jq -e '.openapi | startswith("3.")' "$DOC"

"$HSMCAD_BIN" --list-routes | awk '{ r = $3; sub(/,ca-bound$/, "", r); sub(/,$/, "", r);
    cb = ($3 ~ /ca-bound/) ? " ca-bound" : ""; print $1, $2, r cb }' | sort > "$W/code"
jq -r '.paths | to_entries[] | .key as $p | .value | to_entries[] |
    "\(.key | ascii_upcase) \($p) \(.value["x-hsmca-roles"] | join(","))\(if .value["x-hsmca-ca-bound"] then " ca-bound" else "" end)"' \
    "$DOC" | sort > "$W/doc"
if diff -u "$W/code" "$W/doc" > "$W/diff"; then
    ok "routes in the code = operations in the document ($(wc -l < "$W/code") each)"
else
    bad "routes and document differ:"
    cat "$W/diff"
fi
check "every 4xx/5xx response is problem+json" jq -e '[.paths[][] | .responses | to_entries[] |
    select(.key | test("^[45]")) | .value["$ref"] | . == "#/components/responses/Problem" or
    . == "#/components/responses/Unauthenticated"] | all' "$DOC"
check "every 401 is Unauthenticated, problem+json with WWW-Authenticate" jq -e '
    ([.paths[][] | .responses["401"] // empty | .["$ref"] == "#/components/responses/Unauthenticated"]
     | all) and (.components.responses.Unauthenticated | has("content") and
     (.content | has("application/problem+json")) and (.headers | has("WWW-Authenticate")))' "$DOC"
check "every 201 declares Location" jq -e '[.paths[][] | .responses["201"] // empty |
    .headers.Location["$ref"] == "#/components/headers/Location"] | all' "$DOC"
check "mutual TLS is the security scheme of every operation" jq -e '
    .components.securitySchemes.mutualTLS.type == "mutualTLS" and .security == [{"mutualTLS": []}] and
    ([.paths[][] | select(has("security"))] | length == 0)' "$DOC"
check "license is the project's SPDX identifier" jq -e '.info.license.identifier == "Apache-2.0"' "$DOC"
check "every operation has a summary and an audit action" jq -e '[.paths[][] |
    (.summary | type == "string") and (.["x-hsmca-audit-action"] | type == "string")] | all' "$DOC"

setup_tokens
setup_tls
write_config
seed 1
start_daemon
while read -r op_method op_path op_roles; do
    op_role=${op_roles%%,*}
    op_role=${op_role% ca-bound}
    p=$(echo "$op_path" | sed -e "s/{ca}/$PAI/" -e 's/{id}/0123456789abcdef0123456789abcdef/' \
        -e 's/{serial}/01/')
    set --
    [ "$op_method" = POST ] && set -- -H 'Content-Type: application/json' --data-binary '{}'
    call "$op_role" "$op_method" "$p" "$@"
    lower=$(echo "$op_method" | tr 'A-Z' 'a-z')
    if [ "$STATUS" = 405 ] || { [ "$STATUS" = 404 ] && [ "$(body_code)" = http-not-found ]; }; then
        bad "$op_method $op_path is in the document but not served ($STATUS)"
    elif jq -e --arg p "$op_path" --arg m "$lower" --arg s "$STATUS" \
        '.paths[$p][$m].responses | has($s)' "$DOC" >/dev/null; then
        ok "$op_method $op_path served, $STATUS declared"
    else
        bad "$op_method $op_path answered $STATUS $(body_code), which the document does not declare"
    fi
done < "$W/doc"
stop_daemon
finish
