#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# authz.sh -- the authorization matrix: every route of `hsmcad --list-routes` called by every
# role and by clients the daemon must not know. A role the route allows never gets 401/403; any
# other role gets 403 http-forbidden; an operator bound to another CA gets 403 http-ca-forbidden
# on CA-bound routes; no certificate, a certificate not in roles.json and a certificate from a
# foreign CA (even with a bound fingerprint) get 401 http-unauthenticated. Every refusal is
# problem+json.
. "$(dirname "$0")/lib.sh"

setup_tokens
setup_tls
write_config
seed 3
start_daemon

"$HSMCAD_BIN" --list-routes > "$W/routes"
while read -r method pattern roles; do
    path=$(echo "$pattern" | sed -e "s/{ca}/$PAI/" -e 's/{id}/0123456789abcdef0123456789abcdef/' \
        -e 's/{serial}/01/')
    set --
    if [ "$method" = POST ]; then
        set -- -H 'Content-Type: application/json' --data-binary '{}'
    fi
    for role in admin approver operator operator2 auditor; do
        call "$role" "$method" "$path" "$@"
        allowed=0
        case ",$roles" in *",$role,"* | *",${role%2},"*) allowed=1 ;; esac
        if [ $allowed = 1 ] && [ "$role" = operator2 ] && echo "$roles" | grep -q ca-bound; then
            expect "$role $method $pattern (other CA)" 403 http-ca-forbidden
        elif [ $allowed = 1 ]; then
            if [ "$STATUS" != 401 ] && [ "$STATUS" != 403 ] && [ "$STATUS" != 000 ]; then
                ok "$role $method $pattern allowed -> $STATUS"
            else
                bad "$role $method $pattern: allowed role got $STATUS $(body_code)"
            fi
        else
            expect "$role $method $pattern" 403 http-forbidden
        fi
    done
    for role in unbound rogue none; do
        call "$role" "$method" "$path" "$@"
        expect "$role $method $pattern" 401 http-unauthenticated
    done
done < "$W/routes"

# unknown paths are 404 for a known client, 401 for an unknown one (authentication comes first)
call admin GET /v1/nope
expect "admin GET unknown path" 404 http-not-found
call none GET /v1/nope
expect "no certificate GET unknown path" 401 http-unauthenticated
# a 401 carries a challenge (RFC 9110 11.6.1): the scheme says the credential is a TLS client
# certificate, the error says which of TLS's alerts applies
check "401 without a certificate: WWW-Authenticate certificate_required" [ \
    "$(header www-authenticate)" = 'MutualTLS realm="hsmca", error="certificate_required"' ]
call rogue GET /v1/cas
expect "foreign certificate" 401 http-unauthenticated
check "401 with an unknown certificate: WWW-Authenticate certificate_unknown" [ \
    "$(header www-authenticate)" = 'MutualTLS realm="hsmca", error="certificate_unknown"' ]

stop_daemon
finish
