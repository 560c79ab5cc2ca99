/* SPDX-License-Identifier: Apache-2.0
 *
 * error.c -- the table behind enum hsmca_err: one row per code with its stable name, HTTP status
 * and title. Owns nothing at run time. Rows are never renumbered or removed; a test checks that
 * every name is unique, kebab-case, and that every status is a real HTTP status.
 */
#include "hsmca/error.h"

#include <stddef.h>
#include <string.h>

struct row {
    enum hsmca_err code;
    const char *name;
    int status;
    const char *title;
};

static const struct row rows[] = {
    {HSMCA_OK, "ok", 200, "Success"},

    {HSMCA_E_NOMEM, "out-of-memory", 503, "Out of memory"},
    {HSMCA_E_INVALID_ARG, "invalid-argument", 400, "Invalid argument"},
    {HSMCA_E_TOO_LARGE, "too-large", 413, "Input exceeds its size limit"},
    {HSMCA_E_IO, "io-error", 500, "A file could not be read or written"},
    {HSMCA_E_INTERNAL, "internal-error", 500, "Internal error in a cryptographic library"},
    {HSMCA_E_RANDOM, "random-failed", 503, "The random number generator failed"},
    {HSMCA_E_PARSE_NUMBER, "bad-number", 400, "Not a decimal number within bounds"},
    {HSMCA_E_BUSY, "busy", 409, "The object is still in use"},
    {HSMCA_E_NOT_FOUND, "not-found", 404, "Not found"},
    {HSMCA_E_EXISTS, "already-exists", 409, "Refusing to overwrite an existing object"},
    {HSMCA_E_SECURE_HEAP, "secure-heap", 503, "The secure heap is not initialised or is exhausted"},
    {HSMCA_E_BAD_ENCODING, "bad-encoding", 400, "Input is not in the expected encoding"},
    {HSMCA_E_CONNECT, "connect-failed", 502, "The server could not be reached"},
    {HSMCA_E_TLS, "tls-failed", 502, "The TLS handshake or the server's certificate failed"},

    {HSMCA_E_MODULE_LOAD, "module-load-failed", 503,
     "The PKCS#11 module could not be loaded; check the module path"},
    {HSMCA_E_URI_INVALID, "uri-invalid", 400, "Not a valid RFC 7512 pkcs11: URI"},
    {HSMCA_E_TOKEN_NOT_FOUND, "token-not-found", 404,
     "No token matches the URI; check its token= or serial= attribute"},
    {HSMCA_E_TOKEN_AMBIGUOUS, "token-ambiguous", 409,
     "More than one token matches the URI; add serial= to the URI"},
    {HSMCA_E_PIN_INCORRECT, "pin-incorrect", 403, "The token refused the PIN"},
    {HSMCA_E_PIN_LOCKED, "pin-locked", 403,
     "The PIN is locked on the token; the security officer must reset it"},
    {HSMCA_E_PIN_INVALID, "pin-invalid", 400, "The token does not accept a PIN of this length"},
    {HSMCA_E_NOT_LOGGED_IN, "not-logged-in", 409, "The operation needs a logged-in token"},
    {HSMCA_E_KEY_NOT_FOUND, "key-not-found", 404,
     "No key matches the URI; check its object= or id= attribute"},
    {HSMCA_E_KEY_EXISTS, "key-exists", 409, "A key with that label or id already exists"},
    {HSMCA_E_NO_FREE_SLOT, "no-free-slot", 507,
     "The module has no uninitialised token left; free or add a slot"},
    {HSMCA_E_TOKEN_FAILED, "token-failed", 502, "The token failed the operation"},
    {HSMCA_E_TOKEN_REMOVED, "token-removed", 503, "The token or its device is not present"},
    {HSMCA_E_KEY_AMBIGUOUS, "key-ambiguous", 409,
     "More than one key matches the URI; add id= to the URI"},
    {HSMCA_E_SIGN_FAILED, "sign-failed", 502, "The token refused or failed to sign"},
    {HSMCA_E_TOKEN_EXISTS, "token-exists", 409, "A token with that label already exists"},
    {HSMCA_E_MECHANISM, "mechanism-unsupported", 502, "The token lacks a required mechanism"},
    {HSMCA_E_ALREADY_LOGGED_IN, "already-logged-in", 409,
     "The token is already logged in by another operation"},
    {HSMCA_E_MODULE_MISMATCH, "uri-module-mismatch", 400,
     "The PKCS#11 URI's module-path names another module than the one configured"},

    {HSMCA_E_STORE_OPEN, "store-open-failed", 503,
     "The database could not be opened; check the store path and its permissions"},
    {HSMCA_E_STORE_SCHEMA, "store-schema", 503,
     "The database schema is unknown to this version of hsmca"},
    {HSMCA_E_STORE_WRITE, "store-write-failed", 503,
     "The database refused a write (disk full, read-only or I/O error)"},
    {HSMCA_E_STORE_READ, "store-read-failed", 503, "A database query failed"},
    {HSMCA_E_STORE_CONSTRAINT, "store-constraint", 409,
     "The change conflicts with an existing record"},
    {HSMCA_E_STORE_BUSY, "store-busy", 503, "The database is locked by another process"},

    {HSMCA_E_CSR_TOO_LARGE, "csr-too-large", 413, "The CSR exceeds 4096 bytes"},
    {HSMCA_E_CSR_MALFORMED, "csr-malformed", 400, "Not a DER-encoded PKCS#10 certificate request"},
    {HSMCA_E_CSR_TRAILING, "csr-trailing-data", 400,
     "Bytes follow the certificate request; send exactly one"},
    {HSMCA_E_CSR_KEY_TYPE, "csr-key-type", 400, "The CSR's key is not an EC key; use P-256"},
    {HSMCA_E_CSR_CURVE, "csr-curve", 400, "The CSR's EC key is not on P-256 (prime256v1)"},
    {HSMCA_E_CSR_SIGNATURE, "csr-signature-invalid", 400,
     "The CSR's self-signature does not verify: it was not signed by its own key"},
    {HSMCA_E_CSR_PEM, "csr-pem-invalid", 400,
     "Send one PEM block labelled CERTIFICATE REQUEST, or DER"},
    {HSMCA_E_CSR_SIG_ALG, "csr-signature-algorithm", 400,
     "The CSR must be signed with ecdsa-with-SHA256"},
    {HSMCA_E_CSR_VERSION, "csr-version", 400, "The CSR's PKCS#10 version must be 1 (value 0)"},
    {HSMCA_E_CSR_POINT_FORMAT, "csr-point-format", 400,
     "The CSR's P-256 key must be an uncompressed point (04 || X || Y), as Matter requires"},

    {HSMCA_E_PROFILE_INVALID, "profile-invalid", 500,
     "The profile file is not valid profile JSON; check its fields"},
    {HSMCA_E_PROFILE_RULE, "profile-breaks-matter-rule", 500,
     "The profile asks for something the Matter rules forbid for its certificate type"},
    {HSMCA_E_MATTER_CERT_MALFORMED, "matter-cert-malformed", 400,
     "Give exactly one X.509 certificate, as DER or as one PEM CERTIFICATE block"},
    {HSMCA_E_MATTER_CERT_TOO_LARGE, "matter-cert-too-large", 400,
     "Matter certificates are at most 600 bytes of DER"},
    {HSMCA_E_MATTER_FORMAT, "matter-cert-format", 400,
     "A certificate breaks a Matter format rule (version, algorithm, key, extensions)"},
    {HSMCA_E_MATTER_DN, "matter-vidpid-encoding", 400,
     "A VID or PID in a subject is not exactly 4 uppercase hex digits, or appears twice"},
    {HSMCA_E_MATTER_VIDPID, "matter-vidpid-mismatch", 400,
     "VID/PID are missing or differ between DAC, PAI and PAA"},
    {HSMCA_E_MATTER_PAA_NOT_FOUND, "matter-paa-not-found", 400,
     "No trusted PAA has the PAI's authority key identifier as its subject key identifier"},
    {HSMCA_E_MATTER_PAI_MISSING, "matter-pai-missing", 400,
     "A DAC is only accepted with its PAI; give the PAI"},
    {HSMCA_E_MATTER_DAC_VALIDITY, "matter-dac-not-valid-now", 400,
     "The DAC is not yet valid or has expired"},
    {HSMCA_E_MATTER_CHAIN, "matter-chain-invalid", 400,
     "The chain does not link: a signature, issuer name or key identifier is wrong"},
    {HSMCA_E_MATTER_CHAIN_VALIDITY, "matter-chain-validity", 400,
     "The PAI or PAA was not valid at the DAC's notBefore"},
    {HSMCA_E_MATTER_SCOPE, "matter-request-out-of-scope", 400,
     "The request's VID/PID is outside the PAI's scope; ask for the PAI's VID and a PID it covers"},
    {HSMCA_E_MATTER_SELF_CHECK, "matter-self-check-failed", 500,
     "A certificate just built failed validation and was not released"},
    {HSMCA_E_MATTER_KEY_MISMATCH, "matter-key-mismatch", 500,
     "The token key does not belong to the certificate"},
    {HSMCA_E_MATTER_EXPECTED_VIDPID, "matter-vidpid-not-expected", 400,
     "The DAC's VID/PID differ from what the device reports in Basic Information"},
    {HSMCA_E_DEVICE_ID_PATTERN, "dac-device-id-pattern", 400,
     "The per-device subject value (device_id) is missing, not taken by the DAC profile, or does "
     "not match the profile's pattern and length"},
    {HSMCA_E_DEVICE_ID_RULE, "dac-device-id-rule", 400,
     "The per-device subject value (device_id) breaks a Matter or encoding rule of the DAC "
     "subject"},
    {HSMCA_E_DAC_OUTLIVES_ISSUER, "dac-outlives-issuer", 409,
     "The DAC profile says within_issuer and the DAC would end after its PAI or PAA"},

    {HSMCA_E_AUDIT_WRITE, "audit-write-failed", 503,
     "The audit entry could not be made durable; nothing was changed or released"},
    {HSMCA_E_AUDIT_EVENT_INVALID, "audit-event-invalid", 400,
     "An audit event field is missing, too long or not valid UTF-8 / JSON"},
    {HSMCA_E_AUDIT_CHAIN, "audit-chain-broken", 500,
     "The audit hash chain is broken; the message names the first bad seq"},
    {HSMCA_E_AUDIT_ANCHOR, "audit-anchor-mismatch", 500,
     "The audit anchor in the token does not match the store (restored or truncated database?)"},
    {HSMCA_E_AUDIT_CHECKPOINT_SIG, "audit-checkpoint-signature", 500,
     "An audit checkpoint signature does not verify with the audit key"},
    {HSMCA_E_AUDIT_CHECKPOINT, "audit-checkpoint-invalid", 500,
     "An audit checkpoint is malformed, or its head or prev does not match the log"},
    {HSMCA_E_AUDIT_EXTRACT_INVALID, "audit-extract-invalid", 400,
     "The audit extract is missing a file or is malformed"},
    {HSMCA_E_AUDIT_TRUNCATED, "audit-truncated", 500,
     "The audit log ends before a checkpoint that covers it"},
    {HSMCA_E_AUDIT_FORK, "audit-fork", 500,
     "The audit log does not extend the checkpoint the auditor kept (rewrite, truncation or fork)"},
    {HSMCA_E_AUDIT_QUORUM, "audit-quorum-invalid", 500,
     "A quorum operation in the log lacks enough valid, distinct, enrolled approvals"},
    {HSMCA_E_AUDIT_CLOSED, "audit-closed", 503, "The audit log is closing or has failed"},
    {HSMCA_E_AUDIT_RECEIPT, "audit-receipt-missing", 500,
     "A receipt's entry is not in the audit log with that hash"},
    {HSMCA_E_AUDIT_RANGE, "audit-range-invalid", 400,
     "The extract range lies outside 1..head of the audit log"},
    {HSMCA_E_AUDIT_UNSIGNED_BACKLOG, "audit-unsigned-backlog", 503,
     "Too many audit entries lie beyond the last signed checkpoint; nothing more is issued until "
     "the audit token signs one again"},

    {HSMCA_E_SHAMIR_PARAMS, "shamir-params", 400,
     "Secret sharing needs 2 <= m <= n <= 32 and a secret of 1..64 bytes"},
    {HSMCA_E_SHAMIR_SHARES, "shamir-shares", 400,
     "The shares cannot be combined: give at least 2 with distinct, non-zero indexes"},
    {HSMCA_E_SEAL_FORMAT, "seal-format", 400,
     "Not a sealed share: wrong length, version or ephemeral point"},
    {HSMCA_E_SEAL_AUTH, "seal-auth-failed", 400,
     "The sealed share does not open with this key and context: wrong key, data or tampered"},
    {HSMCA_E_SEAL_KEY, "seal-key-type", 400, "The recipient key for sealing must be a P-256 key"},
    {HSMCA_E_QUORUM_NOT_INITIALISED, "quorum-not-initialised", 409,
     "No key ceremony has been held: there are no approvers or shares yet"},
    {HSMCA_E_QUORUM_INITIALISED, "quorum-already-initialised", 409,
     "The key ceremony has already been held for this store"},
    {HSMCA_E_QUORUM_OP_UNKNOWN, "quorum-op-unknown", 400, "Unknown quorum operation"},
    {HSMCA_E_QUORUM_PARAMS, "quorum-params-invalid", 400,
     "The operation's parameters are missing, unknown or out of bounds"},
    {HSMCA_E_QUORUM_POLICY, "quorum-policy-invalid", 400,
     "The quorum policy is invalid: every threshold must lie between m and n"},
    {HSMCA_E_QUORUM_APPROVAL_MALFORMED, "quorum-approval-malformed", 400,
     "The approval is not {request_id, approver, sig, shares} with valid encodings"},
    {HSMCA_E_QUORUM_REQUEST_MISMATCH, "quorum-request-mismatch", 409,
     "The approval was made for another request"},
    {HSMCA_E_QUORUM_APPROVER_INACTIVE, "quorum-approver-inactive", 403,
     "The approver is not enrolled and active in the request's epoch"},
    {HSMCA_E_QUORUM_EPOCH_STALE, "quorum-epoch-stale", 409,
     "The approver set, shares or policy changed since the request was made; make a new request"},
    {HSMCA_E_QUORUM_REQUEST_EXPIRED, "quorum-request-expired", 410, "The request has expired"},
    {HSMCA_E_QUORUM_REQUEST_EXECUTED, "quorum-request-executed", 409,
     "The request has already been executed"},
    {HSMCA_E_QUORUM_SELF_APPROVAL, "quorum-self-approval", 403,
     "The requester may not approve their own request"},
    {HSMCA_E_QUORUM_SIGNATURE_INVALID, "quorum-signature-invalid", 400,
     "The approval signature does not verify with the approver's enrolled key"},
    {HSMCA_E_QUORUM_DUPLICATE_APPROVAL, "quorum-duplicate-approval", 409,
     "This approver has already approved the request"},
    {HSMCA_E_QUORUM_REQUEST_VOID, "quorum-request-void", 410,
     "The request's one-time key is gone (the service restarted); make a new request"},
    {HSMCA_E_QUORUM_SHARE_INVALID, "quorum-share-invalid", 400,
     "A re-sealed share does not open or does not match its commitment"},
    {HSMCA_E_QUORUM_THRESHOLD_NOT_MET, "quorum-threshold-not-met", 409,
     "The request does not have enough valid approvals yet"},
    {HSMCA_E_QUORUM_PIN_COMMITMENT, "quorum-pin-commitment", 500,
     "The rebuilt PIN does not match its commitment; no login was attempted"},
    {HSMCA_E_QUORUM_POP_INVALID, "quorum-pop-invalid", 400,
     "The new approver's proof of possession does not verify"},
    {HSMCA_E_QUORUM_FORK, "quorum-fork", 409,
     "The request's checkpoint is not consistent with the last one this approver saw (fork or "
     "truncation)"},
    {HSMCA_E_QUORUM_CHECKPOINT, "quorum-checkpoint-invalid", 400,
     "The request's audit checkpoint is missing, malformed or not signed by the audit key"},
    {HSMCA_E_QUORUM_ENVELOPE, "quorum-envelope-invalid", 400,
     "The request file or envelope is malformed, or its digest does not match"},
    {HSMCA_E_QUORUM_NO_SHARE, "quorum-no-share", 400,
     "The request carries no share for this approver"},
    {HSMCA_E_QUORUM_APPROVER_DUPLICATE, "quorum-approver-duplicate", 409,
     "An approver with that name, key or token serial is already enrolled"},
    {HSMCA_E_QUORUM_TOO_FEW_APPROVERS, "quorum-too-few-approvers", 409,
     "The change would leave fewer approvers than the threshold"},
    {HSMCA_E_QUORUM_APPROVAL_RELAYED, "quorum-approval-relayed", 403,
     "An approval is accepted only from its own approver's client certificate"},
    {HSMCA_E_QUORUM_TBS_MISMATCH, "quorum-tbs-mismatch", 409,
     "The certificate the execution would sign differs from the one the approvers saw (a profile "
     "or the parent changed since the request): nothing was signed, make a new request"},
    {HSMCA_E_QUORUM_CA_SUPERSEDED, "quorum-ca-superseded", 409,
     "The CA was renewed or re-keyed: new windows and renewals go to its successor (GET "
     "/v1/cas/{id} names it as superseded_by)"},
    {HSMCA_E_QUORUM_NODE_UNKNOWN, "quorum-node-unknown", 400,
     "ca.activate names a node that never started on this store (the config's node)"},
    {HSMCA_E_QUORUM_NODE_DUPLICATE, "quorum-node-duplicate", 400,
     "ca.activate names the same node more than once"},
    {HSMCA_E_QUORUM_NODES_INVALID, "quorum-nodes-invalid", 400,
     "nodes must be a list of 2 to 8 node names that includes the node taking the request, with "
     "until and max_dacs (not with window)"},
    {HSMCA_E_QUORUM_NODES_UNSUPPORTED, "quorum-nodes-unsupported", 400,
     "nodes needs several nodes on one PostgreSQL store, each with its config's node set"},
    {HSMCA_E_QUORUM_NODE_UNAVAILABLE, "quorum-node-unavailable", 503,
     "A named node did not post its one-time request key in time (is it running?); nothing was "
     "requested"},
    {HSMCA_E_QUORUM_NODE_TIMEOUT, "quorum-node-timeout", 504,
     "A named node did not log in before the execution's deadline; it joins later by a request "
     "of its own"},
    {HSMCA_E_QUORUM_NODE_DOWN, "quorum-node-down", 503,
     "A named node was not running (its store session was gone) when the execution awaited its "
     "login; it joins later by a request of its own"},
    {HSMCA_E_HTTP_UNAUTHENTICATED, "http-unauthenticated", 401,
     "A client certificate bound to a principal in roles.json is required"},
    {HSMCA_E_HTTP_FORBIDDEN, "http-forbidden", 403, "Your role may not use this endpoint"},
    {HSMCA_E_HTTP_CA_FORBIDDEN, "http-ca-forbidden", 403,
     "Your certificate is not bound to this CA in roles.json"},
    {HSMCA_E_HTTP_BODY_TOO_LARGE, "http-body-too-large", 413,
     "The request body exceeds the configured limit"},
    {HSMCA_E_HTTP_NOT_FOUND, "http-not-found", 404, "No such endpoint; see docs/api/openapi.json"},
    {HSMCA_E_HTTP_METHOD, "http-method-not-allowed", 405,
     "The endpoint does not accept this method"},
    {HSMCA_E_HTTP_UNSUPPORTED_MEDIA, "http-unsupported-media-type", 415,
     "The endpoint does not accept this Content-Type"},
    {HSMCA_E_HTTP_BAD_REQUEST, "http-bad-request", 400,
     "The request body is malformed or has unknown or missing fields"},
    {HSMCA_E_HTTP_NOT_ACCEPTABLE, "http-not-acceptable", 406,
     "The endpoint cannot answer in any type the Accept header names"},
    {HSMCA_E_HTTP_BAD_QUERY, "http-bad-query", 400,
     "A query parameter is unknown, repeated or out of bounds"},
    {HSMCA_E_HTTP_CA_NOT_FOUND, "ca-not-found", 404, "No CA with that id"},
    {HSMCA_E_HTTP_NOT_READY, "not-ready", 503,
     "The daemon is not ready (token, store or audit chain check failed)"},
    {HSMCA_E_HTTP_SHUTTING_DOWN, "shutting-down", 503, "The daemon is stopping; retry elsewhere"},
    {HSMCA_E_CONFIG_INVALID, "config-invalid", 500,
     "The config file is invalid; see docs/config.md"},
    {HSMCA_E_ROLES_INVALID, "roles-invalid", 500,
     "The role bindings file is invalid; see docs/config.md"},
    {HSMCA_E_PIN_FILE_MODE, "pin-file-mode", 500,
     "A PIN file must be readable by its owner only (mode 600 or 400)"},
    {HSMCA_E_TLS_SETUP, "tls-setup-failed", 500,
     "The TLS certificate, key or client CA file is unusable"},
    {HSMCA_E_LISTEN, "listen-failed", 500, "The listen address could not be bound"},
    {HSMCA_E_RUN_AS_ROOT, "run-as-root", 500,
     "hsmcad refuses to serve as root; run it as its service user or set allow_root"},
    {HSMCA_E_HTTP_QUERY_TOO_LARGE, "http-query-too-large", 414,
     "The request carries more query parameters than any endpoint takes"},
    {HSMCA_E_HTTP_IDEMPOTENCY_KEY, "idempotency-key-invalid", 400,
     "Idempotency-Key must be sent once, non-empty, and within its length limit"},
    {HSMCA_E_HTTP_TIME_BOUND, "time-bound-exceeded", 400,
     "A time bound of the request is beyond the cap of policies/limits.json"},
    {HSMCA_E_RELOAD_REFUSED, "reload-refused", 422,
     "The reload was refused whole (a bad file or listen address); the old settings stay"},
    {HSMCA_E_ISSUE_CA_INACTIVE, "ca-inactive", 409,
     "The CA is not active for issuance; a quorum must activate it"},
    {HSMCA_E_ISSUE_WINDOW_EXHAUSTED, "window-exhausted", 409,
     "The CA's issuance window has used up its count of certificates"},
    {HSMCA_E_ISSUE_WINDOW_EXPIRED, "window-expired", 409, "The CA's issuance window has ended"},
    {HSMCA_E_ISSUE_QUOTA_MINUTE, "quota-exceeded", 429,
     "The CA's per-minute issuance quota is used up; retry later"},
    {HSMCA_E_ISSUE_QUOTA_DAY, "daily-quota-exceeded", 429,
     "The CA's per-day issuance quota is used up"},
    {HSMCA_E_ISSUE_REQUEST_ID_CONFLICT, "request-id-conflict", 409,
     "The request id was already used with another CSR"},
    {HSMCA_E_ISSUE_REQUEST_ID_INVALID, "request-id-invalid", 400,
     "The request id is too long or contains a forbidden character"},
    {HSMCA_E_ISSUE_REQUEST_ID_IN_FLIGHT, "request-id-in-flight", 409,
     "A request with this id is still being processed; retry later"},
    {HSMCA_E_ISSUE_BATCH_TOO_LARGE, "batch-too-large", 413, "The batch has too many items"},
    {HSMCA_E_ISSUE_BATCH_MALFORMED, "batch-malformed", 400,
     "The batch is not a non-empty list of items"},
    {HSMCA_E_ISSUE_QUOTAS_INVALID, "quotas-invalid", 500,
     "The quota policy file is not valid quota JSON"},
    {HSMCA_E_ISSUE_CA_ACTIVE, "ca-active", 409, "The CA already has an open issuance window"},
    {HSMCA_E_ISSUE_WINDOW_INVALID, "window-invalid", 400,
     "The issuance window must end in the future and allow 1 to 2^40 certificates"},

    {HSMCA_E_CRL_INVALID, "crl-invalid", 500, "The CRL is not a well-formed CRL of this issuer"},
    {HSMCA_E_CRL_REASON, "crl-reason-invalid", 400,
     "Unknown revocation reason; use an RFC 5280 name such as keyCompromise"},
    {HSMCA_E_CRL_DATE, "crl-date-invalid", 400,
     "Revocation dates may not lie in the future, and nextUpdate must follow thisUpdate"},
    {HSMCA_E_CRL_SIGNATURE, "crl-signature-invalid", 500,
     "The CRL signature does not verify with the issuer's key"},
    {HSMCA_E_CRL_AKID, "crl-akid-mismatch", 500,
     "The CRL's authority key identifier is not the issuer's subject key identifier"},
    {HSMCA_E_REVOKE_ALREADY, "already-revoked", 409,
     "The certificate is already revoked; a revocation is never changed or repeated"},
    {HSMCA_E_REVOKE_SERIAL_UNKNOWN, "serial-unknown", 404,
     "This CA issued no certificate with that serial number"},
    {HSMCA_E_REVOKE_CA_REVOKED, "ca-revoked", 409,
     "The CA is revoked: it issues no certificate and opens no window"},
    {HSMCA_E_CRL_NONE, "crl-none", 404, "This CA has no CRL yet"},
    {HSMCA_E_CRL_POLICY_INVALID, "crl-policy-invalid", 500,
     "The CRL policy file is not valid CRL policy JSON"},
    {HSMCA_E_CRL_KEY_UNAVAILABLE, "crl-key-unavailable", 409,
     "The CA's key is not reachable now: a CRL is signed while a window is open, or by quorum"},
    {HSMCA_E_REPORT_RANGE, "report-range-invalid", 400,
     "A report needs from and to (ms since the epoch, or YYYY-MM-DD) with from <= to"},
    {HSMCA_E_EST_BAD_BASE64, "est-bad-base64", 400,
     "The EST request body must be the base64 encoding of one DER PKCS#10 request"},
    {HSMCA_E_EST_REENROLL_UNKNOWN, "est-reenroll-unknown-certificate", 400,
     "Re-enrolment: no certificate of this CA carries the request's public key"},
    {HSMCA_E_EST_REENROLL_SUBJECT, "est-reenroll-subject-mismatch", 400,
     "Re-enrolment: the request's subject differs from the certificate being renewed"},
    {HSMCA_E_EST_REENROLL_REVOKED, "est-reenroll-revoked", 409,
     "Re-enrolment: the certificate being renewed is revoked"},
    {HSMCA_E_LINE_CERT_INVALID, "line-certificate-invalid", 400,
     "The line certificate is unusable (not one X.509 certificate CMS can seal to, or expired)"},
    {HSMCA_E_LINE_EXISTS, "line-exists", 409, "A production line with that name is registered"},
    {HSMCA_E_LINE_NOT_FOUND, "line-not-found", 404, "No production line with that name"},
    {HSMCA_E_BUNDLE_COUNT_INVALID, "bundle-count-invalid", 400, "A bundle holds 1 to 1000 devices"},
    {HSMCA_E_BUNDLE_EXCEEDS_WINDOW, "bundle-exceeds-window", 409,
     "The bundle holds more devices than the CA's issuance window or quota has left"},
    {HSMCA_E_BUNDLE_NOT_FOUND, "bundle-not-found", 404, "No bundle with that id under this CA"},
    {HSMCA_E_BUNDLE_ALREADY_RECEIVED, "bundle-already-received", 409,
     "The receipt of this bundle was already acknowledged"},
    {HSMCA_E_BUNDLE_RECEIPT_MISMATCH, "bundle-receipt-mismatch", 409,
     "The acknowledged manifest hash is not the one sealed in this bundle"},
    {HSMCA_E_BUNDLE_BUSY, "bundle-busy", 503,
     "Too many bundles are being made; retry after the Retry-After delay"},
    {HSMCA_E_BUNDLE_SEAL_FAILED, "bundle-seal-failed", 500,
     "The bundle's archive could not be built or sealed"},
    {HSMCA_E_MDL_PROFILE_VIOLATION, "mdl-profile-violation", 422,
     "The certificate breaks a rule of ISO/IEC 18013-5 Annex B"},
    {HSMCA_E_MDL_MSO_INVALID, "mso-invalid", 400,
     "The body is not a well-formed mobile security object"},
    {HSMCA_E_MDL_COSE_INVALID, "cose-invalid", 400, "Not a well-formed COSE_Sign1 IssuerAuth"},
    {HSMCA_E_MDL_SIGNATURE_INVALID, "mdl-signature-invalid", 422,
     "The IssuerAuth signature does not verify"},
    {HSMCA_E_MDL_MSO_VALIDITY, "mso-validity-outside-ds", 422,
     "The MSO's dates fall outside the document signer certificate's validity"},
    {HSMCA_E_MDL_NOT_DS, "ca-not-mdl-ds", 409, "The CA is not an mDL document signer"},
};

static const struct row *
find(enum hsmca_err e)
{
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (rows[i].code == e)
            return &rows[i];
    }
    return NULL;
}

const char *
hsmca_err_code(enum hsmca_err e)
{
    const struct row *r = find(e);

    return r != NULL ? r->name : "unknown-error";
}

const char *
hsmca_err_title(enum hsmca_err e)
{
    const struct row *r = find(e);

    return r != NULL ? r->title : "Unknown error";
}

int
hsmca_err_http_status(enum hsmca_err e)
{
    const struct row *r = find(e);

    return r != NULL ? r->status : 500;
}

enum hsmca_err
hsmca_err_from_code(const char *name, enum hsmca_err *out)
{
    size_t i;

    if (name == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (strcmp(rows[i].name, name) == 0) {
            *out = rows[i].code;
            return HSMCA_OK;
        }
    }
    return HSMCA_E_NOT_FOUND;
}

unsigned
hsmca_err_count(void)
{
    return (unsigned)(sizeof(rows) / sizeof(rows[0]));
}

enum hsmca_err
hsmca_err_at(unsigned i)
{
    if (i >= hsmca_err_count())
        return HSMCA_E_INVALID_ARG;
    return rows[i].code;
}
