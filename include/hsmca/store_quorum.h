/* SPDX-License-Identifier: Apache-2.0
 *
 * store_quorum.h -- the quorum state in the store (schema: migration 4 in store.c): approvers,
 * epochs (threshold and policy), the CA tokens under quorum with their PIN commitments, the sealed
 * shares and their commitments, requests (exact bytes) and approvals. Only sealed shares are ever
 * stored; a PIN or an unsealed share never is. Like store_certs.h, nothing here commits: callers
 * run the writes inside the audit transaction (apply callbacks). Records own their blobs; clear
 * them with the matching _clear function.
 */
#ifndef HSMCA_STORE_QUORUM_H
#define HSMCA_STORE_QUORUM_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"
#include "hsmca/store.h"

#define HSMCA_QSTORE_NAME_MAX 64

struct hsmca_qapprover {
    char name[HSMCA_QSTORE_NAME_MAX + 1];
    unsigned char *spki; /* DER SubjectPublicKeyInfo */
    size_t spki_len;
    unsigned char fingerprint[HSMCA_SHA256_LEN]; /* SHA-256 of spki */
    char token_serial[HSMCA_TOKEN_SERIAL_MAX + 1];
    uint64_t since_epoch; /* first epoch holding a share */
    uint64_t until_epoch; /* first epoch without one; 0 while active */
};

struct hsmca_qepoch {
    uint64_t epoch;
    unsigned m;                              /* Shamir threshold of this epoch's splits */
    char *policy;                            /* canonical policy JSON (malloc'd) */
    char policy_hash[HSMCA_SHA256_HEX_SIZE]; /* hex SHA-256 of policy */
    int64_t created_ms;
};

struct hsmca_qtoken {
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    char uri[HSMCA_URI_MAX + 1];
    uint64_t epoch; /* the epoch of its current PIN and shares */
    unsigned char pin_salt[32];
    unsigned char pin_commit[HSMCA_SHA256_LEN];
    /* The alternate PIN while a rotation is unconfirmed (docs/custody.md): the token answers to
     * the current PIN or to this one. alt_epoch 0 = none. */
    uint64_t alt_epoch;
    unsigned char alt_pin_salt[32];
    unsigned char alt_pin_commit[HSMCA_SHA256_LEN];
};

struct hsmca_qshare {
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    uint64_t epoch;
    char approver[HSMCA_QSTORE_NAME_MAX + 1];
    unsigned idx; /* Shamir x, 1..32 */
    unsigned char commit[HSMCA_SHA256_LEN];
    unsigned char *sealed; /* sealed to the approver's key */
    size_t sealed_len;
};

struct hsmca_qrequest {
    char id[33];
    char op[32];
    unsigned char *bytes; /* the exact request bytes */
    size_t len;
    uint64_t epoch;
    char requester[HSMCA_QSTORE_NAME_MAX + 1];
    int64_t created_ms, expires_ms;
    char status[16]; /* "pending", "executed", "failed", "cancelled" */
};

struct hsmca_qapproval {
    char request_id[33];
    char approver[HSMCA_QSTORE_NAME_MAX + 1];
    unsigned char *body; /* the approval JSON as received */
    size_t body_len;
    int64_t received_ms;
};

/* A node named in a ca.activate of several nodes (quorum_nodes.c, docs/postgresql.md): state is
 * "asked" (the requesting node wants its key), "key" (posted), "void" (the request was never
 * made), "go" (the execution wants it to log in), "in" (logged in, waiting for the rotation),
 * "joined" (in the window), "failed" (code says why). */
#define HSMCA_QNODE_NAME_MAX 32
#define HSMCA_QNODE_KEY_MAX 200 /* base64 DER SPKI of a P-256 key (124 characters) */
struct hsmca_qnode {
    char request_id[33];
    char node[HSMCA_QNODE_NAME_MAX + 1];
    char state[8];
    char request_key[HSMCA_QNODE_KEY_MAX + 1];
    char code[64];
    int64_t updated_ms;
};

void hsmca_qapprover_clear(struct hsmca_qapprover *r);
void hsmca_qepoch_clear(struct hsmca_qepoch *r);
void hsmca_qshare_clear(struct hsmca_qshare *r);
void hsmca_qrequest_clear(struct hsmca_qrequest *r);
void hsmca_qapproval_clear(struct hsmca_qapproval *r);

/* Approvers. put inserts (HSMCA_E_STORE_CONSTRAINT on a duplicate name, key or serial); remove
 * sets until_epoch (HSMCA_E_NOT_FOUND if no active approver has that name). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qapprover_put(struct hsmca_store *st,
                                                         const struct hsmca_qapprover *r);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qapprover_remove(struct hsmca_store *st,
                                                            const char *name, uint64_t epoch);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qapprover_get(struct hsmca_store *st, const char *name,
                                                         struct hsmca_qapprover *out);
/* Every approver (active and removed) in (since_epoch, name) order. */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_qapprover_list(struct hsmca_store *st,
                           enum hsmca_err (*fn)(void *arg, const struct hsmca_qapprover *r),
                           void *arg);

/* Epochs: put inserts a new one; current reads the highest (HSMCA_E_NOT_FOUND before any). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qepoch_put(struct hsmca_store *st,
                                                      const struct hsmca_qepoch *r);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qepoch_current(struct hsmca_store *st,
                                                          struct hsmca_qepoch *out);

/* CA tokens under quorum: put inserts or replaces; get HSMCA_E_NOT_FOUND; list in label order. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qtoken_put(struct hsmca_store *st,
                                                      const struct hsmca_qtoken *r);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qtoken_get(struct hsmca_store *st, const char *label,
                                                      struct hsmca_qtoken *out);
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_qtoken_list(struct hsmca_store *st,
                        enum hsmca_err (*fn)(void *arg, const struct hsmca_qtoken *r), void *arg);

/* Sealed shares: put inserts; list gives the shares of (label, epoch) in idx order; prune deletes
 * the shares of label from epochs other than keep_epoch and keep_alt (0 = keep only keep_epoch). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qshare_put(struct hsmca_store *st,
                                                      const struct hsmca_qshare *r);
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_qshare_list(struct hsmca_store *st, const char *label, uint64_t epoch,
                        enum hsmca_err (*fn)(void *arg, const struct hsmca_qshare *r), void *arg);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qshare_prune(struct hsmca_store *st, const char *label,
                                                        uint64_t keep_epoch, uint64_t keep_alt);

/* Requests: put inserts (HSMCA_E_STORE_CONSTRAINT on a duplicate id); get HSMCA_E_NOT_FOUND;
 * set_status changes the status of a pending request (HSMCA_E_NOT_FOUND otherwise). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qrequest_put(struct hsmca_store *st,
                                                        const struct hsmca_qrequest *r);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qrequest_get(struct hsmca_store *st, const char *id,
                                                        struct hsmca_qrequest *out);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qrequest_set_status(struct hsmca_store *st,
                                                               const char *id, const char *status);
/* Remove a token's record and its shares: only for a token that never joined (token.enroll
 * whose initialisation failed after the write-ahead). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qtoken_delete(struct hsmca_store *st, const char *label);
/* Up to limit requests, newest first; status "" or NULL: any status ("pending", "executed",
 * "failed", "cancelled"). Each row's bytes are freed after fn returns. */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_qrequest_list(struct hsmca_store *st, const char *status, unsigned limit,
                          enum hsmca_err (*fn)(void *arg, const struct hsmca_qrequest *r),
                          void *arg);

/* Approvals: put inserts (HSMCA_E_STORE_CONSTRAINT when the approver already approved);
 * list in received order. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qapproval_put(struct hsmca_store *st,
                                                         const struct hsmca_qapproval *r);
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_qapproval_list(struct hsmca_store *st, const char *request_id,
                           enum hsmca_err (*fn)(void *arg, const struct hsmca_qapproval *r),
                           void *arg);

/* Named nodes. put inserts a row (HSMCA_E_STORE_CONSTRAINT when it exists). move changes the
 * rows of request_id in state from to state to (node NULL: every such row of the request;
 * request_key NULL: kept; code NULL: kept) and says how many in *changed (may be NULL). list
 * calls fn for the rows of request_id (NULL: any) and node (NULL: any), at most 64, oldest
 * request first; live_only: only "asked", "go" and "in". */
/*
 * A node's liveness (PostgreSQL; on SQLite keep sets *held to 0 and alive says every node lives).
 * hsmca_store_node_keep: make this store's connection hold node's liveness lock, taking it again
 * after a reconnection; call it about once a second from one thread, on a store handle of its own
 * that nothing else uses (*held 0: another live session holds the name, or the store failed).
 * hsmca_store_node_alive: whether a session holds node's lock (a node that runs); never ask it on
 * the handle that keeps the same name.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_node_keep(struct hsmca_store *st, const char *node,
                                                     int *held);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_node_alive(struct hsmca_store *st, const char *node,
                                                      int *alive);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qnode_put(struct hsmca_store *st,
                                                     const struct hsmca_qnode *r);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_qnode_move(struct hsmca_store *st,
                                                      const char *request_id, const char *node,
                                                      const char *from, const char *to,
                                                      const char *request_key, const char *code,
                                                      int64_t now_ms, int *changed);
HSMCA_MUSTCHECK enum hsmca_err
hsmca_store_qnode_list(struct hsmca_store *st, const char *request_id, const char *node,
                       int live_only, enum hsmca_err (*fn)(void *arg, const struct hsmca_qnode *r),
                       void *arg);

#endif
