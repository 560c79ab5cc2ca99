/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum.h -- m-of-n control of the CA tokens, enforced by cryptography (docs/design.md
 * "Quorum"). Each CA token's user PIN is 32 random bytes, split m-of-n (Shamir) and sealed to the
 * approvers' public keys; it is never stored. A request is exact JSON bytes; an approval is a DER
 * ECDSA signature by an approver's token over SHA-256("hsmca-approval-v1\0" || bytes) carrying
 * the approver's shares re-sealed to the request's one-time key (whose private half lives only in
 * this process's memory). With enough valid approvals the operation runs, then the PINs it used
 * are rotated (C_SetPIN), re-split and re-sealed: a new epoch. Every request, approval, refusal
 * and execution is an audit entry (docs/design.md); every state change goes through
 * hsmca_audit_append.
 *
 * JSON shapes (all produced by this module with sorted keys, compact):
 *   request   {"approver_epoch": E, "checkpoint": {"sig": b64, "text": str} | null,
 *              "created": ms, "expires": ms, "id": 32 hex, "op": str, "params": {...,
 *              "tokens": [labels]}, "policy_hash": hex, "request_key": b64 DER SPKI,
 *              "requester": {"key": hex SHA-256 of the requester's SPKI or "", "principal": str}}
 *   approval  {"approver": name, "request_id": id, "shares": {"<label>": b64 sealed},
 *              "sig": b64 DER ECDSA}
 *   envelope  what an approver fetches (GET /v1/requests/{id}, or the offline request file):
 *             {"approvals": [names], "digest": hex, "request": b64 bytes, "shares": {"<approver>":
 *              {"<label>": {"epoch": E, "index": i, "sealed": b64}}}, "status": "pending" |
 *              "executed" | "refused" | "expired", "threshold": m}
 * Approver fingerprints are hex SHA-256 of the DER SPKI.
 *
 * Operations (params besides "tokens"; thresholds in policies/quorum.json):
 *   ca.create_paa   {"ca", "token" (label of a token under quorum), "key_label", "cn"?, "vid"?}
 *   ca.create_pai   {"ca", "parent", "token", "key_label", "cn"?, "vid", "pid"?}
 *   ca.activate     {"ca", "until": ms, "max_dacs": n}: opens a window (its id: the request's),
 *                   or {"ca", "window": id}: this node joins that open window (its own approval)
 *                   or {"ca", "until", "max_dacs", "nodes": [names]}: one approval logs in every
 *                   named node (this one included, 2..8, PostgreSQL) and they share the window;
 *                   the request then carries "node_keys" {node: b64 SPKI} and each approval
 *                   "node_shares" {node: {label: sealed}} for every node but the requesting one
 *   approver.enroll {"name", "spki": b64, "token_serial", "pop": b64 DER ECDSA by the new key over
 *                    SHA-256("hsmca-enroll-pop-v1\0" || name || "\0" || spki DER || serial)}
 *   approver.remove {"name"}
 *   policy.update   {"policy": {...}}
 *   ca.revoke       {"ca": PAI, "reason"?, "invalidity"?: ms} (the PAA's token; quorum_revoke.h)
 *   crl.sign        {"ca"} (that CA's token: its CRL signed now)
 *   mdl.create_iaca, mdl.create_ds, mdl.activate, mdl.revoke, mdl.crl_sign: mobile driving
 *                   licences (quorum_mdl.c, docs/mdl.md); mdl.activate {"ca", "window": id}
 *                   joins a DS's open signing window as ca.activate does a PAI's
 *   ca.renew        {"ca", "new_ca"}: a new certificate for the same key (new serial and
 *                    validity; the PAI's signed by its PAA, the PAA's by itself) as CA new_ca;
 *                    ca stays for verification and its CRL, superseded (docs/renewal.md)
 *   ca.rekey        {"ca", "new_ca", "token", "key_label"}: the same with a new key generated in
 *                    token (under quorum, holding no CA)
 *   (ca.create_*, ca.renew, ca.rekey: the request's params also carry "tbs", the to-be-signed
 *    certificate fixed at the request, which execution makes exactly or refuses)
 *   token.enroll    {"token": label} (every token under quorum: the module's free token is
 *                    initialised as label, its SO PIN random and wiped, its user PIN random,
 *                    split and sealed to the approvers in the new epoch; needs the token_init hook)
 * ca.deactivate needs no quorum (hsmca_quorum_deactivate).
 *
 * Threads: one hsmca_quorum handle may be used from several threads; calls serialise on its lock.
 */
#ifndef HSMCA_QUORUM_H
#define HSMCA_QUORUM_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/error.h"
#include "hsmca/profile.h"
#include "hsmca/secret.h"
#include "hsmca/store.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"

#define HSMCA_QUORUM_PIN_LEN 32          /* bytes of a CA token's user PIN */
#define HSMCA_QUORUM_NAME_MAX 64         /* approver and principal names: [A-Za-z0-9._-] */
#define HSMCA_QUORUM_APPROVERS_MAX 32    /* n <= 32 (Shamir) */
#define HSMCA_QUORUM_TOKENS_MAX 16       /* CA tokens under quorum */
#define HSMCA_QUORUM_REQUEST_MAX 16384   /* request bytes */
#define HSMCA_QUORUM_APPROVAL_MAX 16384  /* approval JSON bytes */
#define HSMCA_QUORUM_ENVELOPE_MAX 262144 /* envelope JSON bytes */
#define HSMCA_QUORUM_POLICY_MAX 8192     /* policy JSON bytes */
#define HSMCA_QUORUM_TTL_MAX_MS (24LL * 3600 * 1000) /* a request lives at most 24 h */
#define HSMCA_QUORUM_ID_LEN 32 /* hex characters of a request id (128 random bits) */

struct hsmca_quorum;
struct hsmca_mdl_profile;
struct hsmca_mdl_ca_rec;

struct hsmca_quorum_config {
    struct hsmca_store *store; /* the audit writer's store: written only inside apply callbacks */
    struct hsmca_store *ro;    /* read handle for lookups; NULL = store (single-threaded callers) */
    struct hsmca_audit *audit; /* every change and refusal is appended here */
    /* Test-only clock (ms since the epoch); NULL = the system clock. */
    int64_t (*now_ms)(void *arg);
    void *now_arg;
    /* The PAA and PAI profiles now (copied into *paa, *pai), for the to-be-signed certificate a
     * CA request fixes and its approvers see (matter_tbs.h, docs/renewal.md). NULL, or a code
     * other than HSMCA_OK: ca.create_* requests carry no preview, ca.renew and ca.rekey are
     * refused (HSMCA_E_QUORUM_OP_UNKNOWN). */
    enum hsmca_err (*profiles)(void *arg, struct hsmca_profile *paa, struct hsmca_profile *pai);
    void *profiles_arg;
    /* This node's name among the nodes of one PostgreSQL store (the config's node); NULL or "":
     * the only node, and ca.activate's "nodes" is refused */
    const char *node;
};

/* Who is calling: the authenticated principal and the SHA-256 of its public key (may be NULL). */
struct hsmca_quorum_principal {
    const char *name;
    const char *role;                /* admin, approver, ... (for the audit entry) */
    const unsigned char *key_sha256; /* 32 bytes or NULL */
};

/*
 * Open the quorum module over an opened store and audit log. On HSMCA_OK the caller frees *out with
 * hsmca_quorum_free (which wipes the one-time keys of pending requests: they cannot execute after
 * a restart). Returns HSMCA_E_INVALID_ARG, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_open(const struct hsmca_quorum_config *cfg,
                                                 struct hsmca_quorum **out);
void hsmca_quorum_free(struct hsmca_quorum *q);

/* ---- initial ceremony ---- */

struct hsmca_quorum_token_in {
    const char *label;                 /* the token's label (as in CK_TOKEN_INFO) */
    const char *uri;                   /* its PKCS#11 URI */
    struct hsmca_token *tok;           /* opened, not logged in (borrowed) */
    const struct hsmca_secret *so_pin; /* from the HSM administrator (borrowed) */
};

struct hsmca_quorum_approver_in {
    const char *name;
    EVP_PKEY *pub;            /* P-256 public key whose private half is on the approver's token */
    const char *token_serial; /* the approver token's serial ("" if unknown) */
};

struct hsmca_quorum_init {
    const struct hsmca_quorum_token_in *tokens;
    size_t ntokens; /* 1..HSMCA_QUORUM_TOKENS_MAX */
    const struct hsmca_quorum_approver_in *approvers;
    size_t napprovers;       /* m..HSMCA_QUORUM_APPROVERS_MAX */
    unsigned m;              /* the Shamir threshold, 2..n */
    const char *policy_json; /* policies/quorum.json; thresholds must be m..n */
    size_t policy_len;
    const char *ceremony_id; /* free text recorded in the entries */
};

/*
 * The initial ceremony: set a random user PIN on each token with the SO PIN (C_InitPIN), split it
 * m-of-n, seal each share to one approver, and append quorum.epoch (epoch 1) with the approvers,
 * thresholds, policy hash and commitments. Nothing secret reaches disk. Refused with
 * HSMCA_E_QUORUM_INITIALISED if the store already has an epoch; HSMCA_E_QUORUM_POLICY,
 * HSMCA_E_QUORUM_APPROVER_DUPLICATE, HSMCA_E_INVALID_ARG, token and audit codes.
 * CT: PINs and shares live on the secure heap and are wiped on every path.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_ceremony_init(struct hsmca_quorum *q,
                                                          const struct hsmca_quorum_init *in,
                                                          const struct hsmca_quorum_principal *who);

/* ---- requests (requester side: the daemon, or `hsmca ceremony run`) ---- */

/*
 * Create a request for op with params_json (a JSON object, see above; "tokens" is filled in here
 * from the op and the CA registry and must not be given). ttl_ms 1..HSMCA_QUORUM_TTL_MAX_MS.
 * checkpoint_text/sig: the latest signed audit checkpoint (NULL when there is none yet).
 * Appends quorum.request. On HSMCA_OK writes the id (HSMCA_QUORUM_ID_LEN + NUL) into id_out and,
 * if receipt is not NULL, the entry's receipt.
 * Returns HSMCA_E_QUORUM_OP_UNKNOWN, HSMCA_E_QUORUM_PARAMS, HSMCA_E_QUORUM_NOT_INITIALISED,
 * audit codes. Refusals are audited (outcome "refused"). A ca.activate naming "nodes" waits up to
 * 10 s (q's lock released meanwhile) for each named node's one-time key, posted through the store
 * by that node's hsmca_quorum_node_poll: HSMCA_E_QUORUM_NODE_UNAVAILABLE when one posts none;
 * HSMCA_E_QUORUM_NODE_UNKNOWN, _NODE_DUPLICATE, _NODES_INVALID, _NODES_UNSUPPORTED for a bad list.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_quorum_request_create(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                            const char *op, const char *params_json, int64_t ttl_ms,
                            const char *checkpoint_text, const unsigned char *checkpoint_sig,
                            size_t checkpoint_sig_len, char *id_out,
                            struct hsmca_audit_receipt *receipt);

/*
 * The envelope of request id (JSON, see above) for approvers. On HSMCA_OK *out is a new string
 * (caller frees with free()). Returns HSMCA_E_NOT_FOUND.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_request_envelope(struct hsmca_quorum *q, const char *id,
                                                             char **out);

/*
 * What to do about request id refused as quorum-epoch-stale (another operation changed the
 * approvers or the policy it relied on), as one English sentence of at most 255 bytes in
 * out[0..out_size): create it again with `hsmca request create OP` (its flags as `hsmca request
 * show` lists them), have the new one approved, cancel this one (`hsmca request cancel ID`).
 * Names the op when the request is readable. Always fills out (when out_size > 0).
 */
void hsmca_quorum_stale_advice(struct hsmca_quorum *q, const char *id, char *out, size_t out_size);

/* The state of a request after an approval. */
struct hsmca_quorum_status {
    unsigned approvals;                 /* valid approvals counted */
    unsigned threshold;                 /* approvals the op needs */
    int ready;                          /* approvals >= threshold and not executed */
    struct hsmca_audit_receipt receipt; /* of the quorum.approve entry */
};

/*
 * Check and record one approval (json[0..len), len <= HSMCA_QUORUM_APPROVAL_MAX) submitted by
 * principal who for request_id (the request the caller addresses, e.g. the URL's id; an approval
 * naming another request is a replay). Checks, each refused with its own code and audited
 * (quorum.approve, outcome "refused", detail {"code"}): JSON shape
 * (HSMCA_E_QUORUM_APPROVAL_MALFORMED), request known (HSMCA_E_NOT_FOUND), approval for this request
 * (HSMCA_E_QUORUM_REQUEST_MISMATCH), approver active in the request's epoch
 * (HSMCA_E_QUORUM_APPROVER_INACTIVE), epoch and policy still current (HSMCA_E_QUORUM_EPOCH_STALE),
 * not expired (HSMCA_E_QUORUM_REQUEST_EXPIRED), not executed (HSMCA_E_QUORUM_REQUEST_EXECUTED), not
 * the requester by principal or key (HSMCA_E_QUORUM_SELF_APPROVAL), signature
 * (HSMCA_E_QUORUM_SIGNATURE_INVALID), not already counted (HSMCA_E_QUORUM_DUPLICATE_APPROVAL), the
 * request key still in memory (HSMCA_E_QUORUM_REQUEST_VOID), one share per token of the request,
 * each opening with the request key and matching its commitment (HSMCA_E_QUORUM_SHARE_INVALID, the
 * approver and token named in the entry; the share is never combined). On HSMCA_OK *st (may be
 * NULL) says whether the request is ready to execute.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_approve(struct hsmca_quorum *q,
                                                    const struct hsmca_quorum_principal *who,
                                                    const char *request_id, const char *json,
                                                    size_t len, struct hsmca_quorum_status *st);

/* What execution needs from its caller, who owns the CA tokens and the side effects. */
struct hsmca_quorum_exec {
    void *arg;
    /* The opened CA token with this label (borrowed; not logged in unless a window is open). */
    struct hsmca_token *(*token)(void *arg, const char *label);
    /* A new CA exists (certificate in ca->cert_der). NULL: nothing to do. */
    enum hsmca_err (*ca_created)(void *arg, const struct hsmca_ca_rec *ca);
    /*
     * Open the activation window of PAI ca_id (until_ms, max_dacs). The token stays logged in;
     * the caller logs it out when the window ends (hsmca_quorum_deactivate and the caller's own
     * bookkeeping). NULL: ca.activate is refused with HSMCA_E_QUORUM_OP_UNKNOWN.
     */
    enum hsmca_err (*activate)(void *arg, const char *ca_id, int64_t until_ms, uint64_t max_dacs);
    /* Close the window of ca_id: drain in-flight signing, free key handles, log out. */
    enum hsmca_err (*deactivate)(void *arg, const char *ca_id);
    /* ca.activate of a window shared through the store (store_windows.h): opened under the
     * request's id, or joined ({"ca", "window": id}); NULL: activate, a window of its own */
    enum hsmca_err (*activate_shared)(void *arg, const char *ca_id, const char *window_id, int join,
                                      int64_t until_ms, uint64_t max_dacs);
    const struct hsmca_profile *paa_profile; /* for ca.create_paa */
    const struct hsmca_profile *pai_profile; /* for ca.create_pai */
    /* ca.revoke, crl.sign (quorum_revoke.h): the CRL policies (NULL: built-in defaults), and
     * hooks (may be NULL) told that a CA was revoked (it must never issue or open a window
     * again) and that a CA's CRL was signed */
    const struct hsmca_crl_policies *crl_policies;
    void (*ca_revoked)(void *arg, const char *ca_id);
    void (*crl_signed)(void *arg, const char *ca_id, const struct hsmca_crl_info *info);
    /* mdl.* (quorum_mdl.c, docs/mdl.md): the mdl profiles (NULL: mdl.create_* refused); told of
     * a new mDL CA (may be NULL); opens a DS's signing window on its token, which stays logged
     * in (NULL: mdl.activate refused); told a DS was revoked (may be NULL) */
    const struct hsmca_mdl_profile *mdl_iaca_profile, *mdl_ds_profile;
    void *mdl_arg; /* the mdl_* hooks' first argument (arg is the CA registry's) */
    enum hsmca_err (*mdl_created)(void *arg, const struct hsmca_mdl_ca_rec *rec);
    enum hsmca_err (*mdl_activate)(void *arg, const char *ca_id, int64_t until_ms, uint64_t max);
    void (*mdl_revoked)(void *arg, const char *ca_id);
    /* mdl.activate of a signing window shared through the store (store_windows.h, mdl_windows):
     * opened under the request's id, or joined ({"ca", "window": id}); NULL: mdl_activate */
    enum hsmca_err (*mdl_activate_shared)(void *arg, const char *ca_id, const char *window_id,
                                          int join, int64_t until_ms, uint64_t max);
    /*
     * token.enroll: initialise the module's free token as label with user PIN user_pin (its SO
     * PIN random, then replaced by another random one nobody keeps, as at the ceremony), and
     * return it opened, not logged in (borrowed, as token()). NULL: token.enroll is refused with
     * HSMCA_E_QUORUM_OP_UNKNOWN.
     */
    enum hsmca_err (*token_init)(void *arg, const char *label, const struct hsmca_secret *user_pin);
};

/*
 * Execute ready request id: rebuild each token's PIN from the counted shares in secure memory,
 * check its commitment (a mismatch never reaches C_Login), log in, act, rotate the PIN, re-split
 * and re-seal to the approvers of the new epoch (new commitments, quorum.epoch entry), log out
 * unless the op opens an activation window, wipe. Appends quorum.execute with the approvals.
 * A token already logged in by an open activation window is used in that login and stays
 * logged in (an approver enrolment, a PIN rotation, a CA creation while windows are open); only
 * ca.activate on such a token fails with HSMCA_E_ALREADY_LOGGED_IN (audited, nothing changed). A
 * failure after a login but before the rotation leaves that token's PIN unrotated. On HSMCA_OK
 * *result (may be NULL; caller frees) is JSON {"audit": {"seq", "entry_hash"} (the quorum.execute
 * receipt), "epoch" (the new one), "op", "request_id", and "ca": {"id", "kind", "cert": b64 DER}
 * for CA creation, or "activated", "until", "max_dacs" for ca.activate}. Returns
 * HSMCA_E_QUORUM_THRESHOLD_NOT_MET, HSMCA_E_QUORUM_REQUEST_EXECUTED,
 * HSMCA_E_QUORUM_REQUEST_EXPIRED, HSMCA_E_QUORUM_REQUEST_VOID, HSMCA_E_QUORUM_PIN_COMMITMENT,
 * token, Matter and audit codes. A failure is audited.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_execute(struct hsmca_quorum *q, const char *id,
                                                    const struct hsmca_quorum_exec *ex,
                                                    char **result);

/*
 * One pass of this node's side of a ca.activate naming several nodes (docs/postgresql.md), for a
 * thread of the daemon to call a few times a second: for each of this node's rows in the store,
 * post a one-time request key the requesting node asked for (quorum.node.key), log in to the
 * PAI's token with the PIN rebuilt from this node's own re-sealed shares when the executing node
 * says go (quorum.node.login), and join the window once the request is executed
 * (quorum.node.join), or log out when it failed or the executing node went silent. Every step is
 * audited; nothing to do without a node name or on SQLite. Returns the first error of a step (the
 * others still run), HSMCA_OK when there was nothing to do.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_node_poll(struct hsmca_quorum *q,
                                                      const struct hsmca_quorum_exec *ex);

/*
 * End the activation window of PAI ca_id early (no quorum): appends ca.deactivate and calls
 * ex->deactivate (which drains and logs out). Returns HSMCA_E_NOT_FOUND for an unknown CA.
 */
/*
 * Cancel pending request id (the admin changed their mind): it is closed as failed with a
 * quorum.cancel entry (who, op, reason) and its one-time key is dropped, so no approval opens it.
 * HSMCA_E_NOT_FOUND, HSMCA_E_QUORUM_REQUEST_EXECUTED (executed or closed already; audited).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_cancel(struct hsmca_quorum *q,
                                                   const struct hsmca_quorum_principal *who,
                                                   const char *id, const char *reason);

HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_deactivate(struct hsmca_quorum *q,
                                                       const struct hsmca_quorum_principal *who,
                                                       const char *ca_id,
                                                       const struct hsmca_quorum_exec *ex);

/* Enrolled approvers as JSON {"epoch": E, "threshold": m, "approvers": [{"name", "spki",
 * "fingerprint", "token_serial", "status", "since_epoch"}...]} (GET /v1/approvers); free(). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_approvers_json(struct hsmca_quorum *q, char **out);

/* The CA that renewed or re-keyed ca_id (ca.renew, ca.rekey) as *out (free()), read through st;
 * HSMCA_E_NOT_FOUND when it has none. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_ca_successor(struct hsmca_store *st, const char *ca_id,
                                                         char **out);
/* The current epoch (0 before the ceremony). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_epoch(struct hsmca_quorum *q, uint64_t *out);

/* ---- approver side (`hsmca approve`, offline or online) ---- */

/* The approver's signing and unsealing key: a token key (sign + derive), or, in tests, a
 * software P-256 private key. Exactly one of key/soft is set. */
struct hsmca_quorum_signer {
    const char *name;
    struct hsmca_key *key;
    EVP_PKEY *soft;
};

/*
 * Parse an envelope (len <= HSMCA_QUORUM_ENVELOPE_MAX) and describe it for a human: op, params,
 * requester, expiry, digest. On HSMCA_OK *text is a new string (free()). HSMCA_E_QUORUM_ENVELOPE.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_describe(const char *envelope, size_t len, char **text);

/*
 * The approver's witness check of the request's checkpoint. audit_pub (the audit key) verifies
 * the checkpoint signature; state (NULL or the last checkpoint this approver saw, as kept by
 * hsmca_quorum_witness) must be consistent with it: same size and head, or a larger size whose
 * checkpoint chain reaches it. Refuses a smaller size (truncation) or a different head at the same
 * size (fork) with HSMCA_E_QUORUM_FORK, a bad signature with HSMCA_E_QUORUM_CHECKPOINT. On
 * HSMCA_OK *state_out (free()) is the new state to persist before answering.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_witness(const char *envelope, size_t len,
                                                    EVP_PKEY *audit_pub, const char *state,
                                                    char **state_out);

/*
 * Make an approval of the envelope's request: sign the digest with the signer's key, unseal the
 * signer's share of every token of the request and re-seal it to the request key (id and digest
 * bound). On HSMCA_OK *approval (free()) is the approval JSON. Returns HSMCA_E_QUORUM_ENVELOPE,
 * HSMCA_E_QUORUM_NO_SHARE (the envelope holds no share for this approver), seal and token codes.
 * CT: the unsealed shares stay in secure memory and are wiped.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_approval_make(const char *envelope, size_t len,
                                                          const struct hsmca_quorum_signer *s,
                                                          char **approval);

/*
 * Proof of possession for approver.enroll: sign SHA-256("hsmca-enroll-pop-v1\0" || name || "\0"
 * || spki || serial) with the new approver's key. On HSMCA_OK *pop_b64 (free()) is base64 DER.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_enroll_pop(const struct hsmca_quorum_signer *s,
                                                       EVP_PKEY *pub, const char *token_serial,
                                                       char **pop_b64);

/* The shape checks of an approval JSON (HSMCA_OK or HSMCA_E_QUORUM_APPROVAL_MALFORMED) and of a
 * policy for threshold m of n approvers (HSMCA_OK or HSMCA_E_QUORUM_POLICY), as
 * hsmca_quorum_approve and the ceremony make them, without a quorum: for the fuzz targets. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_approval_check(const char *json, size_t len);
HSMCA_MUSTCHECK enum hsmca_err hsmca_quorum_policy_check(const char *text, size_t len, unsigned m,
                                                         unsigned n);

#endif
