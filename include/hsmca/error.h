/* SPDX-License-Identifier: Apache-2.0
 *
 * error.h -- the one error enum of hsmca.
 * Every fallible function returns an enum hsmca_err. Each code has a stable kebab-case name (used
 * as the problem+json `code` and in logs), an HTTP status and a one-line title, all in error.c.
 * Codes are grouped by module in ranges of 100 and are never renumbered or reused: add new codes at
 * the end of their module's range, and add the matching row in error.c.
 */
#ifndef HSMCA_ERROR_H
#define HSMCA_ERROR_H

#define HSMCA_MUSTCHECK __attribute__((warn_unused_result))

enum hsmca_err {
    HSMCA_OK = 0,

    /* 1..99: generic */
    HSMCA_E_NOMEM = 1,         /* allocation failed */
    HSMCA_E_INVALID_ARG = 2,   /* a caller passed an argument outside the documented bounds */
    HSMCA_E_TOO_LARGE = 3,     /* input larger than its named limit */
    HSMCA_E_IO = 4,            /* a file could not be read or written */
    HSMCA_E_INTERNAL = 5,      /* a library (OpenSSL, ...) failed unexpectedly */
    HSMCA_E_RANDOM = 6,        /* the CSPRNG failed */
    HSMCA_E_PARSE_NUMBER = 7,  /* not a decimal number within bounds */
    HSMCA_E_BUSY = 8,          /* the object is in use (outstanding handles) */
    HSMCA_E_NOT_FOUND = 9,     /* a named thing does not exist */
    HSMCA_E_EXISTS = 10,       /* refusing to overwrite an existing thing */
    HSMCA_E_SECURE_HEAP = 11,  /* OpenSSL's secure heap is not initialised or is full */
    HSMCA_E_BAD_ENCODING = 12, /* text or binary input is not in the expected encoding */
    HSMCA_E_CONNECT = 13,      /* a server could not be reached (address, port, errno say why) */
    HSMCA_E_TLS = 14,          /* the TLS handshake or the server's certificate failed */

    /* 100..199: PKCS#11 tokens (token.c) */
    HSMCA_E_MODULE_LOAD = 100,       /* the PKCS#11 module could not be loaded or initialised */
    HSMCA_E_URI_INVALID = 101,       /* not a valid RFC 7512 pkcs11: URI */
    HSMCA_E_TOKEN_NOT_FOUND = 102,   /* no token matches the URI */
    HSMCA_E_TOKEN_AMBIGUOUS = 103,   /* more than one token matches the URI */
    HSMCA_E_PIN_INCORRECT = 104,     /* C_Login refused the PIN */
    HSMCA_E_PIN_LOCKED = 105,        /* the PIN is locked on the token */
    HSMCA_E_PIN_INVALID = 106,       /* PIN length or characters not accepted */
    HSMCA_E_NOT_LOGGED_IN = 107,     /* the operation needs a logged-in user */
    HSMCA_E_KEY_NOT_FOUND = 108,     /* no key matches the URI */
    HSMCA_E_KEY_EXISTS = 109,        /* a key with that label or id already exists */
    HSMCA_E_NO_FREE_SLOT = 110,      /* no uninitialised token is left in the module */
    HSMCA_E_TOKEN_FAILED = 111,      /* the token failed an operation (CKR_* in the log) */
    HSMCA_E_TOKEN_REMOVED = 112,     /* the token or device went away */
    HSMCA_E_KEY_AMBIGUOUS = 113,     /* more than one key matches the URI */
    HSMCA_E_SIGN_FAILED = 114,       /* the token refused or failed to sign */
    HSMCA_E_TOKEN_EXISTS = 115,      /* a token with that label already exists */
    HSMCA_E_MECHANISM = 116,         /* the token lacks a needed mechanism */
    HSMCA_E_ALREADY_LOGGED_IN = 117, /* another login is active on the token */
    HSMCA_E_MODULE_MISMATCH = 118,   /* a URI's module-path is not the module in use */

    /* 200..299: store (store.c) */
    HSMCA_E_STORE_OPEN = 200,       /* the database could not be opened */
    HSMCA_E_STORE_SCHEMA = 201,     /* the database schema is newer than this program or broken */
    HSMCA_E_STORE_WRITE = 202,      /* a write or commit failed (disk full, read-only, I/O) */
    HSMCA_E_STORE_READ = 203,       /* a query failed */
    HSMCA_E_STORE_CONSTRAINT = 204, /* a uniqueness or foreign-key constraint refused the change */
    HSMCA_E_STORE_BUSY = 205,       /* the database is locked by another process */

    /* 300..399: CSR intake (csr.c) */
    HSMCA_E_CSR_TOO_LARGE = 300,    /* the CSR is larger than HSMCA_CSR_MAX */
    HSMCA_E_CSR_MALFORMED = 301,    /* not a DER-encoded PKCS#10 request */
    HSMCA_E_CSR_TRAILING = 302,     /* bytes follow the request */
    HSMCA_E_CSR_KEY_TYPE = 303,     /* the key is not an EC key */
    HSMCA_E_CSR_CURVE = 304,        /* the EC key is not on P-256 */
    HSMCA_E_CSR_SIGNATURE = 305,    /* the self-signature (proof of possession) does not verify */
    HSMCA_E_CSR_PEM = 306,          /* PEM armour other than one CERTIFICATE REQUEST block */
    HSMCA_E_CSR_SIG_ALG = 307,      /* signed with something other than ecdsa-with-SHA256 */
    HSMCA_E_CSR_VERSION = 308,      /* PKCS#10 version other than v1 (0) */
    HSMCA_E_CSR_POINT_FORMAT = 309, /* the P-256 key is not a 65-byte uncompressed point */

    /* 400..499: certificate profiles and Matter rules (profile.c, matter.c) */
    HSMCA_E_PROFILE_INVALID = 400,        /* a profile file is not valid profile JSON */
    HSMCA_E_PROFILE_RULE = 401,           /* a profile asks for what the Matter rules forbid */
    HSMCA_E_MATTER_CERT_MALFORMED = 402,  /* not one DER or PEM X.509 certificate */
    HSMCA_E_MATTER_CERT_TOO_LARGE = 403,  /* a certificate is longer than 600 bytes (C13) */
    HSMCA_E_MATTER_FORMAT = 404,          /* a certificate breaks a format rule (sections 1-2) */
    HSMCA_E_MATTER_DN = 405,              /* malformed VID/PID in a subject (section 3) */
    HSMCA_E_MATTER_VIDPID = 406,          /* VID/PID missing or inconsistent along the chain */
    HSMCA_E_MATTER_PAA_NOT_FOUND = 407,   /* no PAA whose SKID is the PAI's AKID */
    HSMCA_E_MATTER_PAI_MISSING = 408,     /* no PAI given */
    HSMCA_E_MATTER_DAC_VALIDITY = 409,    /* the DAC is not valid at the current time (V4) */
    HSMCA_E_MATTER_CHAIN = 410,           /* a signature, name or AKID link of the chain fails */
    HSMCA_E_MATTER_CHAIN_VALIDITY = 411,  /* an issuer is not valid at the DAC's notBefore (V3) */
    HSMCA_E_MATTER_SCOPE = 412,           /* a request's VID/PID lies outside the issuer's scope */
    HSMCA_E_MATTER_SELF_CHECK = 413,      /* a certificate just built failed validation */
    HSMCA_E_MATTER_KEY_MISMATCH = 414,    /* the token key is not the certificate's key */
    HSMCA_E_MATTER_EXPECTED_VIDPID = 415, /* the DAC's VID/PID differ from the device's report */
    HSMCA_E_DEVICE_ID_PATTERN = 416,      /* a device_id missing, unwanted or off pattern */
    HSMCA_E_DEVICE_ID_RULE = 417,         /* a device_id breaks a Matter/encoding rule */
    HSMCA_E_DAC_OUTLIVES_ISSUER = 418,    /* DAC would end after its PAI (within_issuer) */
    /* 500..549: audit log (audit.c) */
    HSMCA_E_AUDIT_WRITE = 500,           /* the audit entry could not be made durable */
    HSMCA_E_AUDIT_EVENT_INVALID = 501,   /* an event field is missing, too long or not UTF-8 */
    HSMCA_E_AUDIT_CHAIN = 502,           /* the hash chain is broken (first bad seq named) */
    HSMCA_E_AUDIT_ANCHOR = 503,          /* the token anchor and the store disagree */
    HSMCA_E_AUDIT_CHECKPOINT_SIG = 504,  /* a checkpoint signature does not verify */
    HSMCA_E_AUDIT_CHECKPOINT = 505,      /* a checkpoint is malformed or its head/prev is wrong */
    HSMCA_E_AUDIT_EXTRACT_INVALID = 506, /* an extract bundle is missing files or malformed */
    HSMCA_E_AUDIT_TRUNCATED = 507,       /* the log or extract ends before a checkpoint says */
    HSMCA_E_AUDIT_FORK = 508,            /* the log does not extend a checkpoint the auditor kept */
    HSMCA_E_AUDIT_QUORUM = 509,          /* a quorum operation lacks m valid distinct approvals */
    HSMCA_E_AUDIT_CLOSED = 510,          /* the log is closing or has failed; nothing is accepted */
    HSMCA_E_AUDIT_RECEIPT = 511,         /* a receipt is not in the log */
    HSMCA_E_AUDIT_RANGE = 512,           /* an extract range outside 1..head */
    HSMCA_E_AUDIT_UNSIGNED_BACKLOG =
        513, /* too many entries lie beyond the last signed checkpoint */
    /* 600..699: quorum, Shamir, sealing (quorum.c, shamir.c, seal.c) */
    HSMCA_E_SHAMIR_PARAMS = 600, /* threshold, share count or secret length out of bounds */
    HSMCA_E_SHAMIR_SHARES = 601, /* a share with x = 0, a duplicate x, or fewer than 2 shares */
    HSMCA_E_SEAL_FORMAT = 610,   /* a sealed share has the wrong length, version or point */
    HSMCA_E_SEAL_AUTH = 611,     /* a sealed share fails authentication (key, data or tampering) */
    HSMCA_E_SEAL_KEY = 612,      /* the recipient key is not a P-256 key */
    HSMCA_E_QUORUM_NOT_INITIALISED = 620,    /* no ceremony held yet */
    HSMCA_E_QUORUM_INITIALISED = 621,        /* ceremony already held */
    HSMCA_E_QUORUM_OP_UNKNOWN = 622,         /* unknown or unavailable operation */
    HSMCA_E_QUORUM_PARAMS = 623,             /* bad operation parameters */
    HSMCA_E_QUORUM_POLICY = 624,             /* invalid quorum policy */
    HSMCA_E_QUORUM_APPROVAL_MALFORMED = 625, /* approval JSON malformed */
    HSMCA_E_QUORUM_REQUEST_MISMATCH = 626,   /* approval for another request */
    HSMCA_E_QUORUM_APPROVER_INACTIVE = 627,  /* approver not active in the epoch */
    HSMCA_E_QUORUM_EPOCH_STALE = 628,        /* request's epoch or policy superseded */
    HSMCA_E_QUORUM_REQUEST_EXPIRED = 629,    /* request expired */
    HSMCA_E_QUORUM_REQUEST_EXECUTED = 630,   /* request already executed */
    HSMCA_E_QUORUM_SELF_APPROVAL = 631,      /* requester approving own request */
    HSMCA_E_QUORUM_SIGNATURE_INVALID = 632,  /* approval signature invalid */
    HSMCA_E_QUORUM_DUPLICATE_APPROVAL = 633, /* approver already counted */
    HSMCA_E_QUORUM_REQUEST_VOID = 634,       /* request key no longer in memory */
    HSMCA_E_QUORUM_SHARE_INVALID = 635,      /* share fails its commitment */
    HSMCA_E_QUORUM_THRESHOLD_NOT_MET = 636,  /* not enough approvals */
    HSMCA_E_QUORUM_PIN_COMMITMENT = 637,     /* rebuilt PIN fails its commitment */
    HSMCA_E_QUORUM_POP_INVALID = 638,        /* enrolment proof of possession invalid */
    HSMCA_E_QUORUM_FORK = 639,               /* checkpoint inconsistent with witness state */
    HSMCA_E_QUORUM_CHECKPOINT = 640,         /* checkpoint missing or bad signature */
    HSMCA_E_QUORUM_ENVELOPE = 641,           /* envelope malformed */
    HSMCA_E_QUORUM_NO_SHARE = 642,           /* no share for this approver */
    HSMCA_E_QUORUM_APPROVER_DUPLICATE = 643, /* duplicate approver name, key or serial */
    HSMCA_E_QUORUM_TOO_FEW_APPROVERS = 644,  /* approver set below threshold */
    HSMCA_E_QUORUM_APPROVAL_RELAYED = 645,   /* approval submitted by another principal */
    HSMCA_E_QUORUM_TBS_MISMATCH = 646,   /* execution would sign other TBS fields than approved */
    HSMCA_E_QUORUM_CA_SUPERSEDED = 647,  /* the CA was renewed or re-keyed: its successor acts */
    HSMCA_E_QUORUM_NODE_UNKNOWN = 648,   /* ca.activate names a node the store never saw */
    HSMCA_E_QUORUM_NODE_DUPLICATE = 649, /* ca.activate names a node twice */
    HSMCA_E_QUORUM_NODES_INVALID = 650,  /* nodes: too few, too many, or not this node's */
    HSMCA_E_QUORUM_NODES_UNSUPPORTED = 651, /* nodes on a store with one node (SQLite, no node) */
    HSMCA_E_QUORUM_NODE_UNAVAILABLE = 652,  /* a named node posted no request key in time */
    HSMCA_E_QUORUM_NODE_TIMEOUT = 653,      /* a named node did not log in by the deadline */
    HSMCA_E_QUORUM_NODE_DOWN = 654,         /* a named node was not running when awaited */
    /* 700..799: daemon, HTTP, config (src/hsmcad); 750..779 belong to issuance (issue.c) */
    HSMCA_E_HTTP_UNAUTHENTICATED = 700,   /* no client certificate, or one no role binds */
    HSMCA_E_HTTP_FORBIDDEN = 701,         /* the principal's role may not use this endpoint */
    HSMCA_E_HTTP_CA_FORBIDDEN = 702,      /* the operator is not bound to this CA */
    HSMCA_E_HTTP_BODY_TOO_LARGE = 703,    /* the request body exceeds the configured limit */
    HSMCA_E_HTTP_NOT_FOUND = 704,         /* no route matches the path */
    HSMCA_E_HTTP_METHOD = 705,            /* the route exists but not with this method */
    HSMCA_E_HTTP_UNSUPPORTED_MEDIA = 706, /* Content-Type not accepted by the route */
    HSMCA_E_HTTP_BAD_REQUEST = 707,       /* the body or a parameter is malformed */
    HSMCA_E_HTTP_NOT_ACCEPTABLE = 708,    /* Accept names no type the route can produce */
    HSMCA_E_HTTP_BAD_QUERY = 709,         /* a query parameter is unknown or out of bounds */
    HSMCA_E_HTTP_CA_NOT_FOUND = 711,      /* no CA with that id */
    HSMCA_E_HTTP_NOT_READY = 712,         /* a readiness check failed */
    HSMCA_E_HTTP_SHUTTING_DOWN = 713,     /* the daemon is stopping */
    HSMCA_E_CONFIG_INVALID = 714,         /* the config file is not valid (key, type or value) */
    HSMCA_E_ROLES_INVALID = 715,          /* policies/roles.json is not valid */
    HSMCA_E_PIN_FILE_MODE = 716,          /* a PIN file is readable by group or others */
    HSMCA_E_TLS_SETUP = 717,              /* TLS key, certificate or client CA unusable */
    HSMCA_E_LISTEN = 718,                 /* the listen address cannot be bound */
    HSMCA_E_RUN_AS_ROOT = 719,            /* hsmcad started as root without "allow_root": true */
    HSMCA_E_HTTP_QUERY_TOO_LARGE = 720,   /* more query parameters than the daemon takes */
    HSMCA_E_HTTP_IDEMPOTENCY_KEY = 721,   /* Idempotency-Key empty, repeated or too long */
    HSMCA_E_HTTP_TIME_BOUND = 722,        /* a time bound beyond the cap of policies/limits.json */
    HSMCA_E_RELOAD_REFUSED = 723,         /* a reload found a bad file: nothing applied */
    /* 750..779 of it: DAC issuance (issue.c) */
    HSMCA_E_ISSUE_CA_INACTIVE = 750,          /* the CA has no open issuance window */
    HSMCA_E_ISSUE_WINDOW_EXHAUSTED = 751,     /* the window's count of DACs is used up */
    HSMCA_E_ISSUE_WINDOW_EXPIRED = 752,       /* the window's time is over */
    HSMCA_E_ISSUE_QUOTA_MINUTE = 753,         /* the CA's per-minute quota is used up */
    HSMCA_E_ISSUE_QUOTA_DAY = 754,            /* the CA's per-day quota is used up */
    HSMCA_E_ISSUE_REQUEST_ID_CONFLICT = 755,  /* the request id was used with another CSR */
    HSMCA_E_ISSUE_REQUEST_ID_INVALID = 756,   /* request id too long or with a forbidden byte */
    HSMCA_E_ISSUE_REQUEST_ID_IN_FLIGHT = 757, /* a request with that id is still being processed */
    HSMCA_E_ISSUE_BATCH_TOO_LARGE = 758,      /* more than HSMCA_ISSUE_BATCH_MAX items */
    HSMCA_E_ISSUE_BATCH_MALFORMED = 759,      /* a batch without items, or not a list of items */
    HSMCA_E_ISSUE_QUOTAS_INVALID = 760,       /* policies/quotas.json is not valid quota JSON */
    HSMCA_E_ISSUE_CA_ACTIVE = 761,            /* the CA already has an open window */
    HSMCA_E_ISSUE_WINDOW_INVALID = 762, /* a window end in the past, or a count out of range */

    /* 800..849: certificate revocation lists (crl.c) */
    HSMCA_E_CRL_INVALID = 800,   /* not a well-formed CRL of this issuer */
    HSMCA_E_CRL_REASON = 801,    /* unknown or unusable revocation reason */
    HSMCA_E_CRL_DATE = 802,      /* a revocation date in the future, or nextUpdate <= thisUpdate */
    HSMCA_E_CRL_SIGNATURE = 803, /* the CRL's signature does not verify with the issuer key */
    HSMCA_E_CRL_AKID = 804,      /* the CRL's AKID is missing or not the issuer's SKID */

    /* revocation (revoke.c, quorum_revoke.c, hsmcad's crls.c and reports) */
    HSMCA_E_REVOKE_ALREADY = 805,        /* the certificate is already revoked */
    HSMCA_E_REVOKE_SERIAL_UNKNOWN = 806, /* the CA issued no certificate with that serial */
    HSMCA_E_REVOKE_CA_REVOKED = 807,     /* the CA itself is revoked: it issues and signs nothing */
    HSMCA_E_CRL_NONE = 808,              /* the CA has no CRL yet */
    HSMCA_E_CRL_POLICY_INVALID = 809,    /* policies/crl.json is not valid CRL policy JSON */
    HSMCA_E_CRL_KEY_UNAVAILABLE = 810,   /* the CA key is not reachable (no open window) */
    HSMCA_E_REPORT_RANGE = 811,          /* a report's from/to are missing or out of order */
    /* 900..949: the factory floor: EST enrolment and sealed offline bundles (routes_est.c,
     * bundle.c, routes_bundle.c) */
    HSMCA_E_EST_BAD_BASE64 = 900,          /* an EST body is not base64 of one DER PKCS#10 */
    HSMCA_E_EST_REENROLL_UNKNOWN = 901,    /* no DAC of this CA carries the CSR's public key */
    HSMCA_E_EST_REENROLL_SUBJECT = 902,    /* the CSR's subject is not the renewed DAC's */
    HSMCA_E_EST_REENROLL_REVOKED = 903,    /* the DAC to renew is revoked */
    HSMCA_E_LINE_CERT_INVALID = 910,       /* a line certificate CMS cannot seal to, or expired */
    HSMCA_E_LINE_EXISTS = 911,             /* a line with that name is already registered */
    HSMCA_E_LINE_NOT_FOUND = 912,          /* no line with that name */
    HSMCA_E_BUNDLE_COUNT_INVALID = 913,    /* a bundle of 0 devices, or more than the maximum */
    HSMCA_E_BUNDLE_EXCEEDS_WINDOW = 914,   /* more devices than the window or quota has left */
    HSMCA_E_BUNDLE_NOT_FOUND = 915,        /* no bundle with that id under this CA */
    HSMCA_E_BUNDLE_ALREADY_RECEIVED = 916, /* the bundle's receipt was already acknowledged */
    HSMCA_E_BUNDLE_RECEIPT_MISMATCH = 917, /* the acknowledged manifest hash is not the bundle's */
    HSMCA_E_BUNDLE_BUSY = 918,             /* too many bundles are being made right now */
    HSMCA_E_BUNDLE_SEAL_FAILED = 919,      /* the archive could not be built or sealed */
    /* 950..969: mobile driving licences, ISO/IEC 18013-5 (mdl*.c, routes_mdl.c, cmd_mdl.c) */
    HSMCA_E_MDL_PROFILE_VIOLATION = 950, /* an IACA or DS certificate breaks an Annex B rule */
    HSMCA_E_MDL_MSO_INVALID = 951,       /* not a well-formed Mobile Security Object */
    HSMCA_E_MDL_COSE_INVALID = 952,      /* not a well-formed COSE_Sign1 IssuerAuth */
    HSMCA_E_MDL_SIGNATURE_INVALID = 953, /* the IssuerAuth's signature does not verify */
    HSMCA_E_MDL_MSO_VALIDITY = 954,      /* the MSO's dates fall outside the DS certificate's */
    HSMCA_E_MDL_NOT_DS = 955,            /* the CA is not an mDL document signer */
};

/* The stable kebab-case name of a code ("token-not-found"); "unknown-error" for an unknown value.
 */
const char *hsmca_err_code(enum hsmca_err e);
/* A one-line English title ("No token matches the URI"). Never NULL. */
const char *hsmca_err_title(enum hsmca_err e);
/* The HTTP status an API edge answers for this code (500 for an unknown value). */
int hsmca_err_http_status(enum hsmca_err e);
/* Find a code by its stable name; HSMCA_E_NOT_FOUND if the name is unknown. OUT only on success. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_err_from_code(const char *name, enum hsmca_err *out);
/* Number of defined codes, and the i-th one (0 <= i < count), for tests and documentation. */
unsigned hsmca_err_count(void);
enum hsmca_err hsmca_err_at(unsigned i);

#endif
