/* SPDX-License-Identifier: Apache-2.0
 *
 * audit.h -- the hash-chained audit log (design: docs/design.md "Audit log").
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
#include <sys/types.h>

#include "hsmca/audit_format.h"
#include "hsmca/error.h"
#include "hsmca/sizes.h"
#include "hsmca/store.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

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
    /* Seq of an earlier entry with outcome "intent" that this entry completes (0 = none). The
     * intent is closed in the same transaction and "intent": seq is added to detail. */
    uint64_t closes_intent;
    /* 1: detail_json was written by json_dumps(JSON_COMPACT | JSON_SORT_KEYS) in hsmca's own code,
     * so it is taken as is, not parsed and written again (the DAC hot path). Never outside input.
     */
    int detail_canonical;
};

/* *ev zeroed, then these six fields and kid "" (no CA key; set ev->kid after for one). */
void hsmca_audit_event_set(struct hsmca_audit_event *ev, const char *actor, const char *role,
                           const char *action, const char *target, const char *outcome,
                           const char *detail_json);

/* What the caller hands back to its client. */
struct hsmca_audit_receipt {
    uint64_t seq;
    unsigned char entry_hash[HSMCA_SHA256_LEN]; /* SHA-256 of the entry's line */
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
    struct hsmca_store *store;   /* the store; only the writer thread writes to it */
    struct hsmca_token *token;   /* the audit token, logged in (anchor object) */
    struct hsmca_key *key;       /* the audit key in it (signs checkpoints only) */
    const char *origin;          /* checkpoint origin line, e.g. "hsmca/demo" */
    uint64_t checkpoint_entries; /* a checkpoint every N entries; 0 = 10000 */
    uint64_t checkpoint_ms;      /* ... and every T ms even when idle; 0 = 60000 */
    unsigned batch_max;          /* most items in one group commit; 0 = 1024 */
    unsigned linger_us;          /* longest a commit waits for announced entries; 0 = 1000 (1 ms) */
    const char *genesis_detail_json; /* detail of log.genesis when the log is new; NULL = {} */
    const char *audit_cert_pem;      /* the audit certificate, copied into extracts; NULL = none */
    /* For tests: the wall clock in ms since the epoch; NULL = CLOCK_REALTIME. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    /*
     * Called at open for each intent (an entry with outcome "intent") that no later entry
     * completed: return 1 if its effect happened (the log gets "<action>.recovered"), 0 if not
     * ("<action>.orphan"). NULL leaves open intents open (a warning is logged).
     */
    int (*reconcile)(void *arg, uint64_t seq, const char *action);
    void *reconcile_arg;
    /*
     * Called on the writer thread when a checkpoint signature fails (the audit token went away,
     * or came back with its login lost): make *key usable again (free it, re-probe the token, log
     * in, find the key) and return HSMCA_OK, after which the signature is tried once more. Tried
     * at most once per retry_ms while checkpoints fail. NULL: a failing checkpoint is only retried.
     */
    enum hsmca_err (*heal)(void *arg, struct hsmca_key **key);
    void *heal_arg;
    uint64_t retry_ms; /* wait between checkpoint attempts while they fail; 0 = 1000 */
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

/*
 * Entries beyond the last signed checkpoint (durable but not yet covered by a signature). The
 * issuance engine refuses new DACs while this exceeds its bound (HSMCA_E_AUDIT_UNSIGNED_BACKLOG).
 * *failing (if non-NULL) is 1 while the last checkpoint attempt failed. 0 for NULL.
 */
uint64_t hsmca_audit_unsigned(struct hsmca_audit *a, int *failing);

/* Drain pending items, write a final checkpoint, stop the writer and free. NULL is a no-op. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_close(struct hsmca_audit *a);

/* Append and wait until durable. apply may be NULL (an entry that changes no other state). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_append(struct hsmca_audit *a,
                                                  const struct hsmca_audit_event *ev,
                                                  hsmca_audit_apply_fn apply, void *apply_arg,
                                                  struct hsmca_audit_receipt *out);

/* Queue an append; done runs later on the writer thread. On a non-OK return done never runs.
 * HSMCA_E_BUSY when 100000 items are already queued, HSMCA_E_AUDIT_CLOSED while closing,
 * HSMCA_E_AUDIT_EVENT_INVALID / HSMCA_E_TOO_LARGE for a bad event (checked on the caller's
 * thread, before anything is queued). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_submit(struct hsmca_audit *a,
                                                  const struct hsmca_audit_event *ev,
                                                  hsmca_audit_apply_fn apply, void *apply_arg,
                                                  hsmca_audit_done_fn done, void *done_arg);

/*
 * Announce delta (+n) entries that will be submitted soon, or withdraw them (-n) once submitted or
 * abandoned. While announced entries are outstanding the writer waits up to linger_us (1 ms) before
 * a commit,
 * so they share its fdatasync (group commit). NULL or 0 is a no-op; the count never goes below 0.
 */
void hsmca_audit_expect(struct hsmca_audit *a, int delta);

/* A signed checkpoint (hsmca-checkpoint/v1 text and its DER ECDSA signature). */
struct hsmca_audit_checkpoint {
    uint64_t size;                        /* entries covered: seq 1..size */
    unsigned char head[HSMCA_SHA256_LEN]; /* hash of line `size` */
    unsigned char hash[HSMCA_SHA256_LEN]; /* SHA-256 of text */
    char *text;                           /* malloc'd, NUL-terminated */
    size_t text_len;
    unsigned char *sig; /* malloc'd DER */
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
 * bundle directory dir (created; must not exist). The range is widened to checkpoint boundaries:
 * from down to one past the last checkpoint before it (the anchor), to up to the first
 * checkpoint at or after it, so the bundle verifies on its own (docs/audit-extract.md).
 * approvers_json is written as approvers.json; NULL = computed from the log (the original lines
 * of the quorum.epoch entry in force at from). Returns HSMCA_E_AUDIT_RANGE, HSMCA_E_EXISTS,
 * HSMCA_E_IO, store codes. It reads through the log's own store connection, which stalls the
 * writer while it scans: for large ranges use hsmca_audit_extract_store with a read-only handle.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_extract(struct hsmca_audit *a, uint64_t from,
                                                   uint64_t to, const char *approvers_json,
                                                   const char *dir);

/*
 * The same bundle as a ustar archive read piece by piece, in constant memory (GET
 * /v1/audit/extract streams it): the bundle is written into a temporary directory under TMPDIR
 * (or /tmp), which hsmca_audit_tar_free removes. hsmca_audit_tar_read copies up to max bytes of
 * the archive at pos into buf (reads in order are cheapest) and returns how many, 0 at the end, -1
 * on an I/O error.
 */
struct hsmca_audit_tar;
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_extract_tar_open(struct hsmca_audit *a, uint64_t from,
                                                            uint64_t to, const char *approvers_json,
                                                            struct hsmca_audit_tar **out);
uint64_t hsmca_audit_tar_size(const struct hsmca_audit_tar *t);
ssize_t hsmca_audit_tar_read(struct hsmca_audit_tar *t, uint64_t pos, unsigned char *buf,
                             size_t max);
void hsmca_audit_tar_free(struct hsmca_audit_tar *t);

/* The same bundle as a ustar archive in memory; free(*out). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_extract_tar(struct hsmca_audit *a, uint64_t from,
                                                       uint64_t to, const char *approvers_json,
                                                       unsigned char **out, size_t *out_len);

/*
 * The same bundle straight from a store (read-only handle is enough; for `hsmca audit archive`).
 * The audit public key comes from the store (saved at genesis); cert_pem may be NULL.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_extract_store(struct hsmca_store *st, uint64_t from,
                                                         uint64_t to, const char *approvers_json,
                                                         const char *cert_pem, const char *dir);

/* What hsmca_audit_verify_extract found. */
struct hsmca_audit_verify_result {
    uint64_t from, to;    /* entries in the extract */
    uint64_t entries;     /* lines checked */
    uint64_t checkpoints; /* checkpoint signatures checked (anchor included) */
    uint64_t quorum_ops;  /* quorum.execute entries re-checked */
    uint64_t bad_seq;     /* on failure: the first bad seq (0: not tied to one entry) */
    char why[512];        /* on failure: the reason, one line */
};

struct hsmca_audit_verify_opts {
    const char *previous_cp; /* path of a checkpoint text the auditor kept (NULL = none); its
                              * signature is checked too if PATH.sig or the .txt->.sig exists */
    /* called for each entry after its chain link is checked (for check-receipts) */
    void (*on_entry)(void *arg, uint64_t seq, const unsigned char hash[HSMCA_SHA256_LEN]);
    void *arg;
};

/*
 * Verify an extract directory offline: the chain line by line, every checkpoint signature, head
 * and prev link, the anchor, the end covered by a checkpoint, consistency with opts->previous_cp
 * (no rewrite, truncation or fork), every quorum.execute (threshold distinct enrolled approvers
 * signed the exact request, requester not among them). HSMCA_OK if valid; otherwise the code of
 * the first failure with out->bad_seq and out->why set. HSMCA_E_AUDIT_EXTRACT_INVALID for a
 * missing or malformed file.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_audit_verify_extract(const char *dir, const struct hsmca_audit_verify_opts *opts,
                           struct hsmca_audit_verify_result *out);

/* Counters for /metrics. */
struct hsmca_audit_stats {
    uint64_t entries;       /* appended by this handle */
    uint64_t commits;       /* group commits (fsync-backed) */
    uint64_t checkpoints;   /* signed */
    uint64_t batch_hist[8]; /* batch sizes: 1, 2-3, 4-7, 8-15, 16-63, 64-255, 256-1023, 1024+ */
    uint64_t batch_items;   /* the sizes' sum: entries in committed batches, failed items too */
    /* the time of each group commit (WAL write and fdatasync), in hsmca_lat_bucket's buckets */
    uint64_t commit_hist[HSMCA_LAT_NBUCKET + 1];
    uint64_t commit_us_sum;
    uint64_t checkpoint_failures; /* checkpoint attempts whose signature or write failed */
    uint64_t heals;               /* times the heal callback made the audit key usable again */
};
void hsmca_audit_stats(struct hsmca_audit *a, struct hsmca_audit_stats *out);

#endif
