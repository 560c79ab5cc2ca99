/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_int.h -- what the pieces of the quorum share (internal to libhsmca, never installed).
 * The pieces, each one job (quorum.h is the contract):
 *   quorum.c          open/free, the policy, the audit helpers, small helpers, the fuzz parsers
 *   quorum_ops.c      the operation table: one entry per operation (check, act, epoch effect...)
 *   quorum_request.c  requests: create (checks through the table), parse, the envelope
 *   quorum_approval.c approvals: parse, every check, the re-sealed shares, approve
 *   quorum_exec.c     execution: re-check, rebuild the PINs, log in, run the op, deactivate
 *   quorum_epoch.c    epochs: split, seal, commit; the initial ceremony; the PIN rotation
 *   quorum_approver.c the approver's side: describe, approve, proof of possession
 *   quorum_witness.c  the approver as a witness of the audit log
 *   quorum_revoke.c   ca.revoke and crl.sign (entries of the table)
 * Functions here are named hsmca_q_*; all take q->lock's discipline from their callers: the
 * public entry points lock, the helpers never do.
 */
#ifndef HSMCA_QUORUM_INT_H
#define HSMCA_QUORUM_INT_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "hsmca/audit.h"
#include "hsmca/b64.h"
#include "hsmca/quorum.h"
#include "hsmca/secret.h"
#include "hsmca/sizes.h"
#include "hsmca/store_quorum.h"

#define SHARE_LEN (HSMCA_QUORUM_PIN_LEN + 1)
#define POP_DOMAIN "hsmca-enroll-pop-v1"
#define SHARE_DOMAIN "hsmca-share-commit-v1"
#define PIN_DOMAIN "hsmca-pin-commit-v1"

struct pending {
    char id[HSMCA_QUORUM_ID_LEN + 1];
    EVP_PKEY *key; /* the one-time request key (private) */
    struct pending *next;
};

struct hsmca_quorum {
    struct hsmca_quorum_config cfg;
    pthread_mutex_t lock;
    struct pending *pending;
    char node[HSMCA_QNODE_NAME_MAX + 1]; /* cfg.node copied ("" the only node) */
    unsigned polls;                      /* hsmca_quorum_node_poll's passes (its sweeps) */
};

struct approver_list {
    struct hsmca_qapprover a[HSMCA_QUORUM_APPROVERS_MAX + 1];
    size_t n;
};

/* The new sealed material of one token in a new epoch. */
struct token_epoch {
    struct hsmca_qtoken t;
    struct hsmca_qshare s[HSMCA_QUORUM_APPROVERS_MAX + 1];
    size_t n;
    int rotated; /* 1: new PIN and shares in this epoch; 0: unchanged, listed for the snapshot */
    int fresh;   /* token.enroll: a new token, initialised after the write-ahead */
};

struct epoch_change {
    struct hsmca_qepoch e;
    struct token_epoch tok[HSMCA_QUORUM_TOKENS_MAX];
    size_t ntok;
    struct approver_list *approvers;     /* the set of the new epoch */
    const struct hsmca_qapprover *enrol; /* a new approver to insert, or NULL */
    const char *remove;                  /* an approver to retire, or NULL */
    int insert_all;                      /* the ceremony: insert every approver */
    json_t *detail;                      /* the quorum.epoch detail */
};

struct req_view {
    json_t *root;
    const char *id, *op, *policy_hash, *request_key, *principal, *req_key;
    json_t *params, *tokens, *checkpoint;
    json_t *node_keys; /* ca.activate of several nodes: {node: b64 SPKI}, or NULL */
    json_int_t epoch, created, expires;
    unsigned char digest[HSMCA_SHA256_LEN];
};

struct appr_view {
    json_t *root;
    const char *request_id, *approver, *sig_b64;
    json_t *shares;
    json_t *alt_shares;  /* re-sealed shares of alternate PINs, or NULL (docs/custody.md) */
    json_t *node_shares; /* {node: {label: sealed}} for the request's other nodes, or NULL */
    unsigned char *sig;
    size_t sig_len;
};

struct counted {
    char name[HSMCA_QUORUM_NAME_MAX + 1];
    char *body; /* approval JSON */
    size_t len;
};

struct exec_state {
    struct hsmca_qrequest r;
    struct hsmca_qepoch e;
    struct req_view v;
    EVP_PKEY *rkey;
    struct counted c[HSMCA_QUORUM_APPROVERS_MAX];
    size_t nc;
    size_t ntok;
    char label[HSMCA_QUORUM_TOKENS_MAX][HSMCA_TOKEN_LABEL_MAX + 1];
    struct hsmca_qtoken qt[HSMCA_QUORUM_TOKENS_MAX];
    struct hsmca_secret pin[HSMCA_QUORUM_TOKENS_MAX];
    /* a token's alternate PIN while its rotation is unconfirmed (qt[i].alt_epoch != 0), rebuilt
     * where m approvals carry its shares; live_alt: the token answered to it */
    struct hsmca_secret alt_pin[HSMCA_QUORUM_TOKENS_MAX];
    int live_alt[HSMCA_QUORUM_TOKENS_MAX];
    struct hsmca_token *tok[HSMCA_QUORUM_TOKENS_MAX];
    int logged_in[HSMCA_QUORUM_TOKENS_MAX];
    /* logged in already by an open activation window: used as it is, never logged out here */
    int held[HSMCA_QUORUM_TOKENS_MAX];
    const struct hsmca_qop *op; /* the request's operation */
    int activated;              /* the op opened a signing window: its tokens stay logged in */
    json_t *result;
    const struct hsmca_quorum_exec *ex;    /* the executor's hooks */
    char fresh[HSMCA_TOKEN_LABEL_MAX + 1]; /* token.enroll: the label of the token to join */
    /* a named node logging in (quorum_nodes.c): its shares are the approvals' node_shares[node];
     * NULL: the request's own "shares" */
    const char *node;
    json_t *nodes; /* ca.activate of several nodes: each named node's outcome, or NULL */
};

struct env_view {
    json_t *root;
    const char *digest, *request_b64, *status;
    json_t *shares, *approvals;
    json_t *alt_shares; /* shares of alternate PINs (docs/custody.md), or NULL */
    json_int_t threshold;
    unsigned char *bytes;
    size_t len;
    struct req_view v;
};

/* Token labels: every token under quorum, or the ones an operation needs. */
struct labels {
    char v[HSMCA_QUORUM_TOKENS_MAX][HSMCA_TOKEN_LABEL_MAX + 1];
    size_t n;
};

/*
 * One quorum operation (quorum_ops.c holds the table and says how to add one). Hooks other than
 * check may be NULL. hsmca_quorum_execute calls, in order: can_run (before any share opens),
 * act (tokens logged in, before the PIN rotation), epoch (inside the rotation: the new epoch's
 * approvers and policy), after (when the rotation and act succeeded).
 */
struct hsmca_qop {
    const char *name;
    /* NULL: every policy must give this op a threshold; else the op whose threshold a policy
     * that names none for this one gives it (policies written before the op existed) */
    const char *threshold_of;
    /* 1: it logs in to every token under quorum (an op with an epoch effect must: the new
     * epoch re-splits every token's PIN) */
    int all_tokens;
    /* Check the client's params (no "tokens" yet) against the current state e; unless
     * all_tokens, put the labels of the tokens the op logs in to in need, in the order act uses
     * them. HSMCA_E_QUORUM_PARAMS or a more precise refusal code. */
    enum hsmca_err (*check)(struct hsmca_quorum *q, const struct hsmca_qepoch *e, json_t *params,
                            struct labels *need);
    /* The to-be-signed certificate the op will make, fixed now and put in params as "tbs"
     * (after check; the approvals sign it with the request). NULL: none. */
    enum hsmca_err (*preview)(struct hsmca_quorum *q, json_t *params, json_t **tbs);
    /* For hsmca_quorum_describe: the params as an approver reads them (malloc'd text), NULL:
     * the params' JSON, indented */
    char *(*describe)(const json_t *params);
    /* Whether the executor's hooks can run it (hsmca_quorum_exec); NULL: always */
    int (*can_run)(const struct hsmca_quorum_exec *ex);
    enum hsmca_err (*act)(struct hsmca_quorum *q, struct exec_state *x,
                          const struct hsmca_quorum_exec *ex);
    /* l: the approvers of the new epoch c (add or drop one; enrol: storage for an added one) */
    enum hsmca_err (*epoch)(struct hsmca_quorum *q, const struct exec_state *x,
                            struct epoch_change *c, struct approver_list *l,
                            struct hsmca_qapprover *enrol);
    enum hsmca_err (*after)(struct hsmca_quorum *q, struct exec_state *x,
                            const struct hsmca_quorum_exec *ex);
};

/* Each documented at its definition. */

/* quorum.c */
int64_t hsmca_q_now_ms(const struct hsmca_quorum *q);
struct hsmca_store *hsmca_q_rd(const struct hsmca_quorum *q);
int hsmca_q_name_ok(const char *s);
void hsmca_q_hex32(const unsigned char *in, char out[HSMCA_SHA256_HEX_SIZE]);
int hsmca_q_sha256v(unsigned char out[HSMCA_SHA256_LEN], ...);
int hsmca_q_share_commit(const char *label, uint64_t epoch, unsigned idx,
                         const unsigned char *share, size_t len,
                         unsigned char out[HSMCA_SHA256_LEN]);
int hsmca_q_pin_commit(const unsigned char salt[32], const char *label, uint64_t epoch,
                       const struct hsmca_secret *pin, unsigned char out[HSMCA_SHA256_LEN]);
enum hsmca_err hsmca_q_spki_der(EVP_PKEY *k, unsigned char **out, size_t *out_len);
int hsmca_q_is_p256(EVP_PKEY *k);
EVP_PKEY *hsmca_q_spki_parse(const unsigned char *der, size_t len);
enum hsmca_err hsmca_q_policy_canon(const char *text, size_t len, unsigned m, size_t n,
                                    char **canon, char hash[HSMCA_SHA256_HEX_SIZE]);
unsigned hsmca_q_policy_threshold(const char *canon, const char *op);
enum hsmca_err hsmca_q_audit_ex(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                                const char *action, const char *target, const char *outcome,
                                json_t *detail, hsmca_audit_apply_fn apply, void *arg,
                                uint64_t closes, struct hsmca_audit_receipt *out);
enum hsmca_err hsmca_q_audit(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                             const char *action, const char *target, const char *outcome,
                             json_t *detail, hsmca_audit_apply_fn apply, void *arg);
enum hsmca_err hsmca_q_refuse(struct hsmca_quorum *q, const struct hsmca_quorum_principal *who,
                              const char *action, const char *target, enum hsmca_err code,
                              json_t *extra);

/* quorum_approval.c */
void hsmca_q_appr_view_clear(struct appr_view *a);
enum hsmca_err hsmca_q_appr_parse(const char *json, size_t len, struct appr_view *a);
EVP_PKEY *hsmca_q_pending_key(struct hsmca_quorum *q, const char *id);
void hsmca_q_pending_drop(struct hsmca_quorum *q, const char *id);
enum hsmca_err hsmca_q_open_share(struct hsmca_quorum *q, const struct req_view *v, EVP_PKEY *rkey,
                                  const char *approver, const char *label, int alt,
                                  const char *sealed_b64, struct hsmca_secret *share);
int hsmca_q_approver_active(const struct hsmca_qapprover *a, uint64_t epoch);

/* quorum_approver.c */
void hsmca_q_env_view_clear(struct env_view *e);
enum hsmca_err hsmca_q_env_parse(const char *text, size_t len, struct env_view *e);

/* quorum_epoch.c (hsmca_q_rotate: the PIN rotation after an execution, docs/custody.md) */
void hsmca_q_approver_list_clear(struct approver_list *l);
enum hsmca_err hsmca_q_active_approvers(struct hsmca_store *st, uint64_t epoch,
                                        struct approver_list *l);
enum hsmca_err hsmca_q_rotate(struct hsmca_quorum *q, struct exec_state *x);
int hsmca_q_epoch_holds(struct hsmca_quorum *q, uint64_t req_epoch, const char *req_policy_hash,
                        const struct hsmca_qepoch *cur);

/* quorum_ca.c: CA creation, renewal and re-key (the table's ca.* entries) */
enum hsmca_err hsmca_qca_check_create(struct hsmca_quorum *q, json_t *params, struct labels *need,
                                      int paa);
enum hsmca_err hsmca_qca_check_renew(struct hsmca_quorum *q, const struct hsmca_qepoch *e,
                                     json_t *params, struct labels *need);
enum hsmca_err hsmca_qca_check_rekey(struct hsmca_quorum *q, const struct hsmca_qepoch *e,
                                     json_t *params, struct labels *need);
enum hsmca_err hsmca_qca_preview(struct hsmca_quorum *q, json_t *params, json_t **tbs);
enum hsmca_err hsmca_qca_preview_paa(struct hsmca_quorum *q, json_t *params, json_t **tbs);
enum hsmca_err hsmca_qca_preview_pai(struct hsmca_quorum *q, json_t *params, json_t **tbs);
enum hsmca_err hsmca_qca_act_create(struct hsmca_quorum *q, struct exec_state *x,
                                    const struct hsmca_quorum_exec *ex, int is_paa);
enum hsmca_err hsmca_qca_act_renew(struct hsmca_quorum *q, struct exec_state *x,
                                   const struct hsmca_quorum_exec *ex);
enum hsmca_err hsmca_qca_after_renew(struct hsmca_quorum *q, struct exec_state *x,
                                     const struct hsmca_quorum_exec *ex);
/* HSMCA_E_QUORUM_CA_SUPERSEDED when ca_id has a successor, HSMCA_OK when not */
enum hsmca_err hsmca_qca_superseded(struct hsmca_store *st, const char *ca_id);

/* quorum_exec.c: request id loaded into x (its row, its parsed bytes, the current epoch); the
 * approvals of x->r.id copied, the valid ones kept, a PIN rebuilt */
enum hsmca_err hsmca_q_exec_load(struct hsmca_quorum *q, const char *id, struct exec_state *x);
enum hsmca_err hsmca_q_collect_approvals(struct hsmca_quorum *q, struct exec_state *x);
void hsmca_q_keep_valid(struct hsmca_quorum *q, struct exec_state *x);
enum hsmca_err hsmca_q_rebuild_pin(struct hsmca_quorum *q, struct exec_state *x, size_t i, int alt);
void hsmca_q_exec_state_clear(struct exec_state *x);

/* quorum_nodes.c: ca.activate naming several nodes (docs/postgresql.md) */
#define HSMCA_QUORUM_NODES_MAX 8
enum hsmca_err hsmca_q_nodes_check(struct hsmca_quorum *q, json_t *nodes);
enum hsmca_err hsmca_q_nodes_gather(struct hsmca_quorum *q,
                                    const struct hsmca_quorum_principal *who, const char *id,
                                    const char *op, json_t *params, const char *my_key_b64,
                                    json_t **node_keys);
enum hsmca_err hsmca_q_nodes_login(struct hsmca_quorum *q, struct exec_state *x);
enum hsmca_err hsmca_q_node_keys_check(json_t *node_keys, const char *request_key, json_t *params);
enum hsmca_err hsmca_q_node_shares_check(const struct req_view *v, json_t *node_shares);

/* quorum_ops.c: the operation named name, or NULL; the i-th of the table, NULL past its end */
const struct hsmca_qop *hsmca_qop_find(const char *name);
const struct hsmca_qop *hsmca_qop_at(size_t i);

/* quorum_request.c */
enum hsmca_err hsmca_q_ca_token_label(struct hsmca_store *st, const char *ca_id,
                                      char label[HSMCA_TOKEN_LABEL_MAX + 1],
                                      struct hsmca_ca_rec *rec_out);
void hsmca_q_req_view_clear(struct req_view *v);
enum hsmca_err hsmca_q_req_parse(const unsigned char *bytes, size_t len, struct req_view *v);
const char *hsmca_q_req_token(const struct req_view *v, size_t i);

#endif
