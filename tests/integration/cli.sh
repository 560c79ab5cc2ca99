#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# cli.sh -- the hsmca command's conventions: --help on every command and subcommand exits 0 with
# its usage on stdout and nothing on stderr; a usage error exits 2 with its message on stderr and
# nothing on stdout; `-` is standard input or output where a file is read or written (verify's
# --dac, audit verify's EXTRACT, check-receipts' FILE, issue's --csr); a connection error names
# its code, the URL, the address and port and the reason (refused, IPv6, a proxy from https_proxy,
# a server certificate the CA file does not sign).
. "$(dirname "$0")/lib.sh"

SRC=${HSMCA_SOURCE_DIR:?}
: "${HSMCA_BENCH_BIN:?}"
H=$HSMCA_BIN

# ---- --help everywhere ----
while read -r args; do
    st=0
    # shellcheck disable=SC2086
    "$H" $args > "$W/o" 2> "$W/e" || st=$?
    check "hsmca $args: exit 0, usage on stdout, stderr empty" \
        sh -c "[ $st = 0 ] && grep -q '^usage: hsmca' '$W/o' && [ ! -s '$W/e' ]"
done <<EOF
--help
-h
help
help approve
help audit
help bundle
help ceremony
help custody
help dcl
help issue
help issue-batch
help mdl
help report
help request
help token
help verify
approve --help
audit --help
audit verify --help
audit check-receipts --help
audit archive --help
bundle --help
ceremony --help
ceremony init --help
ceremony run --help
custody --help
custody status --help
dcl --help
dcl revocation-point --help
issue --help
issue-batch --help
mdl --help
mdl verify --help
mdl profile-check --help
mdl issuer-auth --help
report --help
request --help
request create --help
request list --help
request show --help
request cancel --help
token --help
token info --help
token keygen --help
token pubkey --help
verify --help
EOF
check "every command in hsmca --help has been walked" sh -c \
    "'$H' --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p' | while read -r c; do grep -qx \"help \$c\" '$0' || exit 1; done"

# ---- usage errors: exit 2, stderr only ----
while read -r args; do
    st=0
    # shellcheck disable=SC2086
    "$H" $args > "$W/o" 2> "$W/e" || st=$?
    check "hsmca $args: exit 2, message on stderr, stdout empty" \
        sh -c "[ $st = 2 ] && [ -s '$W/e' ] && [ ! -s '$W/o' ]"
done <<EOF
bogus
help bogus
token
token info
token frob pkcs11:token=x
audit
audit verify
audit frob
issue
issue --bogus
issue-batch --url https://127.0.0.1:1
verify --dac
ceremony
ceremony init
custody
custody status
custody frob
dcl
report
bundle
approve
mdl
mdl frob
mdl verify
mdl verify --ds x.pem
mdl profile-check
mdl issuer-auth --cose x
EOF
st=0
"$H" > "$W/o" 2> "$W/e" || st=$?
check "hsmca alone: exit 2, usage on stderr" sh -c "[ $st = 2 ] && grep -q '^usage:' '$W/e' && [ ! -s '$W/o' ]"

# ---- - for standard input ----
V=$SRC/tests/fuzz/fuzz_matter.in
st1=0
"$H" verify --dac "$V/dac.der" --pai "$V/pai.pem" --paa "$V/paa.der" --json > "$W/v1" 2>&1 || st1=$?
st2=0
"$H" verify --dac - --pai "$V/pai.pem" --paa "$V/paa.der" --json < "$V/dac.der" > "$W/v2" 2>&1 || st2=$?
check "verify --dac - reads the DAC from stdin: the same verdict as from the file" \
    sh -c "[ $st1 = $st2 ] && cmp -s '$W/v1' '$W/v2' && grep -q '\"cert\"\\|\"valid\"' '$W/v2'"
st=0
"$H" verify --dac - --pai - --paa "$V/paa.der" < "$V/dac.der" > "$W/o" 2> "$W/e" || st=$?
check "verify with two - is a usage error" sh -c "[ $st = 2 ] && [ -s '$W/e' ]"

setup_tokens
"$HSMCA_BENCH_BIN" audit-fill -m "$MODULE" -t pkcs11:token=hsmca-audit \
    -k 'pkcs11:token=hsmca-audit;object=audit-key' -p "$W/audit.pin" -s "$W/fill.db" \
    -n 200 -o "$W/x" > "$W/fill.out" 2>&1 || { cat "$W/fill.out" >&2; exit 1; }
tar --format=ustar -C "$W" -cf "$W/x.tar" x
check "audit verify - reads the extract's tar from stdin" \
    sh -c "'$H' audit verify - < '$W/x.tar' | grep -q '^valid: entries 1\.\.201 '"
line=$(sed -n 50p "$W/x/entries.jsonl")
printf '{"seq": 50, "entry_hash": "%s"}\n' "$(printf '%s' "$line" | sha256sum | cut -c1-64)" > "$W/r.jsonl"
check "audit check-receipts --extract TAR - reads the receipts from stdin" \
    sh -c "'$H' audit check-receipts --extract '$W/x.tar' - < '$W/r.jsonl' | grep -q '^all 1 receipts are in the log'"
st=0
"$H" audit check-receipts --extract - - < "$W/r.jsonl" > "$W/o" 2> "$W/e" || st=$?
check "check-receipts with both - is a usage error" sh -c "[ $st = 2 ] && [ -s '$W/e' ]"

# ---- connection errors: code, URL, address, port, reason ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
    -keyout "$W/k.pem" -out "$W/c.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=other \
    -keyout "$W/ok.pem" -out "$W/oc.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=d \
    -keyout "$W/d.key" -outform DER -out "$W/d.der" 2>/dev/null
# a port nothing listens on: bind one with s_server, note it, stop it
openssl s_server -accept 127.0.0.1:0 -cert "$W/c.pem" -key "$W/k.pem" -naccept 1 \
    > "$W/s.out" 2>&1 &
SP=$!
i=0
while ! grep -q '^ACCEPT' "$W/s.out" && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
port=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$W/s.out")
st=0
"$H" issue --url "https://127.0.0.1:$port" --ca pai-8000 --csr - --cert "$W/c.pem" \
    --key "$W/k.pem" --cacert "$W/oc.pem" < "$W/d.der" > "$W/o" 2> "$W/e" || st=$?
check "a server certificate the CA file does not sign: exit 1, tls-failed, the URL" \
    sh -c "[ $st = 1 ] && grep -q 'tls-failed: https://127.0.0.1:$port/v1/cas/pai-8000/dacs: ' '$W/e'"
kill "$SP" 2>/dev/null || true
wait "$SP" 2>/dev/null || true
st=0
"$H" issue --url "https://127.0.0.1:$port" --ca pai-8000 --csr - --cert "$W/c.pem" \
    --key "$W/k.pem" --cacert "$W/oc.pem" < "$W/d.der" > "$W/o" 2> "$W/e" || st=$?
check "nothing listening: exit 1, connect-failed, address, port, errno" \
    sh -c "[ $st = 1 ] && grep -q 'connect-failed: https://127.0.0.1:$port/.*127.0.0.1 port $port.*errno [0-9]*: ' '$W/e'"
st=0
"$H" issue --url "https://[::1]:$port" --ca pai-8000 --csr - --cert "$W/c.pem" \
    --key "$W/k.pem" --cacert "$W/oc.pem" < "$W/d.der" > "$W/o" 2> "$W/e" || st=$?
check "an IPv6 literal URL is understood (connect-failed to ::1 port $port)" \
    sh -c "[ $st = 1 ] && grep -q 'connect-failed: https://\[::1\]:$port/.*::1 port $port' '$W/e'"
st=0
# a proxy from the environment is used (libcurl's https_proxy): a TEST-NET address through a proxy
# on the closed port fails at the proxy, and says so
https_proxy=http://127.0.0.1:$port no_proxy= "$H" issue --url "https://192.0.2.1:8443" \
    --ca pai-8000 --csr - --cert "$W/c.pem" --key "$W/k.pem" --cacert "$W/oc.pem" \
    < "$W/d.der" > "$W/o" 2> "$W/e" || st=$?
check "https_proxy is honoured (connect-failed at the proxy 127.0.0.1 port $port)" \
    sh -c "[ $st = 1 ] && grep -q 'connect-failed: https://192.0.2.1:8443/.*127.0.0.1 port $port' '$W/e'"
st=0
"$H" issue --url "https://127.0.0.1:$port" --ca pai-8000 --csr - --cert "$W/c.pem" \
    --key "$W/ok.pem" --cacert "$W/oc.pem" < "$W/d.der" > "$W/o" 2> "$W/e" || st=$?
check "a client key that does not match its certificate is named before connecting" \
    sh -c "[ $st = 1 ] && grep -q 'does not match the certificate' '$W/e'"
finish
