/* SPDX-License-Identifier: Apache-2.0
 *
 * audit.h -- the hash-chained audit log (design: ../shared/DESIGN.md "Audit log").
 *
 * Every entry is one line of compact JSON with sorted keys
 *   {"action","actor","detail","kid","outcome","prev","role","seq","target","time"}
 * written once and never re-serialised; `prev` is the hex SHA-256 of the previous line's exact
 * bytes. Seq 1 is `log.genesis` with prev = 64 zeros.
 *
 * The one way to change durable state is through this API: the caller passes the state change as
 * an apply callback, the single writer thread runs it inside the same SQLite transaction as the
 * entry (a savepoint per item, so one failing item never takes its batch down), and the call
 * returns -- or the done callback runs -- only after that transaction is durable. Concurrent
 * appends share one commit (group commit). If the store cannot be written every pending item fails
 * with HSMCA_E_AUDIT_WRITE and nothing is released.
 */
#ifndef HSMCA_AUDIT_H
#define HSMCA_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/store.h"
#include "hsmca/token.h"

#define HSMCA_AUDIT_LINE_MAX 65536   /* one entry line, bytes */
#define HSMCA_AUDIT_DETAIL_MAX 60000 /* the detail object, bytes */
#define HSMCA_AUDIT_FIELD_MAX 256    /* actor, role, action, target, kid */

struct hsmca_audit;

/* What the caller says happened. Strings are copied; NULL means "". */
struct hsmca_audit_event {
    const char *actor;       /* principal name, or "system" / "ceremony" */
    const char *role;        /* admin, approver, operator, auditor, system */
    const char *action;      /* dotted verb: "dac.issue", "quorum.approve", "audit.checkpoint" */
    const char *target;      /* "ca/pai-8000", "request/<id>", "" */
    const char *outcome;     /* "ok", "refused", "failed", "intent" */
    const char *detail_json; /* one JSON object (any key order; re-encoded sorted); NULL = {} */
    const char *kid;         /* hex id of the CA key used, or "" */
};

/* What the caller hands back to its client. */
struct hsmca_audit_receipt {
    uint64_t seq;
    unsigned char entry_hash[32]; /* SHA-256 of the entry's line */
};

/*
 * The state change that goes with an entry. Runs on the writer thread inside the open transaction
 * (savepoint); it may call any hsmca_store_* function except begin/commit/rollback, and must not
 * block on anything but the store. A non-OK return rolls back its savepoint: neither the change nor
 * the entry is written, and that code is what the caller gets.
 */
typedef enum hsmca_err (*hsmca_audit_apply_fn)(struct hsmca_store *st, void *arg);

/*
 * Called exactly once on the writer thread after the batch holding the item is durable (rc OK,
 * receipt set) or has failed (rc non-OK, receipt NULL). Must not block; typically it stores the
 * result and resumes a suspended connection.
 */
typedef void (*hsmca_audit_done_fn)(void *arg, enum hsmca_err rc,
                                    const struct hsmca_audit_receipt *receipt);

struct hsmca_audit_config {
    struct hsmca_store *store;       /* the store; only the writer thread writes to it */
    struct hsmca_token *token;       /* the audit token, logged in (anchor object) */
    struct hsmca_key *key;           /* the audit key in it (signs checkpoints only) */
    const char *origin;              /* checkpoint origin line, e.g. "hsmca/demo" */
    uint64_t checkpoint_entries;     /* a checkpoint every N entries; 0 = 10000 */
    uint64_t checkpoint_ms;          /* ... and every T ms even when idle; 0 = 60000 */
    unsigned batch_max;              /* most items in one group commit; 0 = 1024 */
    const char *genesis_detail_json; /* detail of log.genesis when the log is new; NULL = {} */
};

/*
 * Open the log: on an empty store write log.genesis (and a first checkpoint); otherwise verify the
 * chain from the last checkpoint to the head and the token anchor (the store must hold the
 * anchor's checkpoint and be at least that long). Reconciles orphan intents. Starts the writer.
 * On failure why (if non-NULL) names the first bad seq or the missing anchor checkpoint.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_open(const struct hsmca_audit_config *cfg,
                                                struct hsmca_audit **out, char *why,
                                                size_t why_len);

/* Drain pending items, write a final checkpoint, stop the writer and free. NULL is a no-op. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_close(struct hsmca_audit *a);

/* Append and wait until durable. apply may be NULL (an entry that changes no other state). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_append(struct hsmca_audit *a,
                                                  const struct hsmca_audit_event *ev,
                                                  hsmca_audit_apply_fn apply, void *apply_arg,
                                                  struct hsmca_audit_receipt *out);

/* Queue an append; done runs later on the writer thread. On a non-OK return done never runs. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_submit(struct hsmca_audit *a,
                                                  const struct hsmca_audit_event *ev,
                                                  hsmca_audit_apply_fn apply, void *apply_arg,
                                                  hsmca_audit_done_fn done, void *done_arg);

/* A signed checkpoint (hsmca-checkpoint/v1 text and its DER ECDSA signature). */
struct hsmca_audit_checkpoint {
    uint64_t size;               /* entries covered: seq 1..size */
    unsigned char head[32];      /* hash of line `size` */
    unsigned char hash[32];      /* SHA-256 of text */
    char *text;                  /* malloc'd, NUL-terminated */
    size_t text_len;
    unsigned char *sig;          /* malloc'd DER */
    size_t sig_len;
};
void hsmca_audit_checkpoint_clear(struct hsmca_audit_checkpoint *cp);

/* Make a checkpoint now (after everything queued before the call is durable). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_checkpoint(struct hsmca_audit *a,
                                                      struct hsmca_audit_checkpoint *out);

/* The latest checkpoint (copy). HSMCA_E_NOT_FOUND before the first. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_latest_checkpoint(struct hsmca_audit *a,
                                                             struct hsmca_audit_checkpoint *out);

/* Current head: number of durable entries. */
uint64_t hsmca_audit_size(struct hsmca_audit *a);

/*
 * Write an extract of entries [from, to] (to = 0: up to the head, after a fresh checkpoint) as a
 * bundle directory dir (created; must not exist). approvers_json is the approver sets in force
 * (written as approvers.json; NULL = none). cert_pem is the audit certificate or public key PEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_extract(struct hsmca_audit *a, uint64_t from,
                                                   uint64_t to, const char *approvers_json,
                                                   const char *dir);

/* The same bundle as a ustar archive in memory (for GET /v1/audit/extract); free(*out). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_extract_tar(struct hsmca_audit *a, uint64_t from,
                                                       uint64_t to, const char *approvers_json,
                                                       unsigned char **out, size_t *out_len);

/* Counters for /metrics. */
struct hsmca_audit_stats {
    uint64_t entries;     /* appended by this handle */
    uint64_t commits;     /* group commits (fsync-backed) */
    uint64_t checkpoints; /* signed */
    uint64_t batch_hist[8]; /* batch sizes: 1, 2-3, 4-7, 8-15, 16-63, 64-255, 256-1023, 1024+ */
};
void hsmca_audit_stats(struct hsmca_audit *a, struct hsmca_audit_stats *out);

#endif
