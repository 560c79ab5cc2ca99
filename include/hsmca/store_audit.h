/* SPDX-License-Identifier: Apache-2.0
 *
 * store_audit.h -- the audit log's tables (migration 3): entries as their exact line bytes with
 * their SHA-256, signed checkpoints keyed by size, and open intents. Used by audit.c only: every
 * write goes through the audit writer thread inside its transaction. Nothing here deletes an entry
 * or a checkpoint; there is no such query.
 */
#ifndef HSMCA_STORE_AUDIT_H
#define HSMCA_STORE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/audit.h"
#include "hsmca/error.h"
#include "hsmca/sizes.h"
#include "hsmca/store.h"

/* Insert entry seq (line[0..len), len <= HSMCA_AUDIT_LINE_MAX, hash = SHA-256(line)). Needs an
 * open transaction. HSMCA_E_STORE_CONSTRAINT if seq exists. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_put(struct hsmca_store *st, uint64_t seq,
                                                     const char *line, size_t len,
                                                     const unsigned char hash[HSMCA_SHA256_LEN]);

/*
 * Take the audit chain's lock inside the open transaction, until it ends: on PostgreSQL an
 * advisory transaction lock that every node's writer takes before it reads the head and appends
 * (so entries from several nodes form one chain); on SQLite nothing (BEGIN IMMEDIATE already
 * holds the database's one write lock). HSMCA_E_INVALID_ARG outside a transaction.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_lock(struct hsmca_store *st);

/* The highest seq (0 if empty) and its stored hash (zeros if empty). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_head(struct hsmca_store *st, uint64_t *seq,
                                                      unsigned char hash[HSMCA_SHA256_LEN]);

/* Entry seq: *line is a new NUL-terminated buffer (caller frees with free()), *len its length,
 * hash its stored hash. HSMCA_E_NOT_FOUND if absent. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_get(struct hsmca_store *st, uint64_t seq,
                                                     char **line, size_t *len,
                                                     unsigned char hash[HSMCA_SHA256_LEN]);

/*
 * Call fn for each entry seq in [from, to] in order, with borrowed line bytes valid during the
 * call. fn returning non-OK stops the scan and that code is returned. fn must not call the store
 * (the connection is locked during the scan).
 */
typedef enum hsmca_err (*hsmca_store_audit_line_fn)(void *arg, uint64_t seq, const char *line,
                                                    size_t len, const unsigned char *hash);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_scan(struct hsmca_store *st, uint64_t from,
                                                      uint64_t to, hsmca_store_audit_line_fn fn,
                                                      void *arg);

/* Insert a checkpoint (size, head, hash, text, sig). Needs an open transaction. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_cp_put(struct hsmca_store *st,
                                                        const struct hsmca_audit_checkpoint *cp);

/*
 * Find a checkpoint: the one with the greatest size <= max_size (mode 0), or the smallest size
 * >= min_size (mode 1). On HSMCA_OK *out is filled with new buffers (clear with
 * hsmca_audit_checkpoint_clear). HSMCA_E_NOT_FOUND if none.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_cp_at_most(struct hsmca_store *st,
                                                            uint64_t max_size,
                                                            struct hsmca_audit_checkpoint *out);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_cp_at_least(struct hsmca_store *st,
                                                             uint64_t min_size,
                                                             struct hsmca_audit_checkpoint *out);

/* Record entry seq as an open intent for action; close it (HSMCA_E_NOT_FOUND if not open). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_intent_open(struct hsmca_store *st, uint64_t seq,
                                                             const char *action);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_intent_close(struct hsmca_store *st, uint64_t seq);

/*
 * The intents' lock: held by whoever may open or close an intent (a quorum execution, from its
 * first intent to its last closing entry) or reconcile open ones (start-up), so that one node
 * never closes, as orphaned, an intent another node's execution still holds. On PostgreSQL a
 * session advisory lock, which PostgreSQL releases when the holder's connection dies (a node
 * killed mid-operation frees it, and its intents are then truly orphaned); on SQLite, whose
 * store one process owns, nothing. Waits up to wait_ms for another node to let go: HSMCA_OK with
 * the lock held, HSMCA_E_STORE_BUSY when it did not, or the store's error. Re-entrant within the
 * process (the same connection); every HSMCA_OK needs its unlock.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_intents_lock(struct hsmca_store *st, unsigned wait_ms);
void hsmca_store_intents_unlock(struct hsmca_store *st);

/* The open intents (at most max; *n set), oldest first. */
struct hsmca_store_audit_intent {
    uint64_t seq;
    char action[HSMCA_AUDIT_FIELD_MAX + 1];
};
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_audit_intents(struct hsmca_store *st,
                                                         struct hsmca_store_audit_intent *out,
                                                         size_t max, size_t *n);

#endif
