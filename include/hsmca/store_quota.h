/* SPDX-License-Identifier: Apache-2.0
 *
 * store_quota.h -- issuance quotas counted in the store, so that the nodes sharing one store
 * never issue more together than a CA's quota (schema: migration 11, "quota_buckets").
 *
 * The semantics are the sliding counts hsmca always had: the per-minute quota bounds what was
 * issued in the last 60 seconds, counted in buckets of one second (UTC, from the epoch: a DAC
 * issued at t counts in the bucket t / 1000 * 1000 for the 60 buckets from it on), and the per-day
 * quota what was issued in the last 24 hours, in buckets of one minute (1440 of them). A request at
 * t is admitted when the sum of the live buckets (the bucket of t and the 59, or 1439, before it)
 * is below the limit.
 *
 * A node does not go to the store per DAC: it reserves a block of slots in the bucket of t with
 * one transaction (the sum read and the bucket raised under a lock: SQLite's write lock, or a
 * PostgreSQL transaction-scoped advisory lock per CA), and takes slots from it in memory while the
 * bucket is current. The next reservation gives back what the block did not use (in the same
 * transaction); a slot of a failed DAC goes back to the block; a block of a node that died is lost
 * (the count errs on the side of fewer DACs, never more). A block is an eighth of what the quota
 * has left, at least 1, so that near the limit one node does not sit on what another could sign.
 */
#ifndef HSMCA_STORE_QUOTA_H
#define HSMCA_STORE_QUOTA_H

#include <pthread.h>
#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/store.h"

#define HSMCA_QUOTA_MINUTE 'm' /* the last 60 s, in buckets of 1 s */
#define HSMCA_QUOTA_DAY 'd'    /* the last 24 h, in buckets of 1 min */

/* The bucket of t_ms for period (its start, ms since the epoch); -1 for an unknown period. */
int64_t hsmca_quota_bucket(char period, int64_t t_ms);

/*
 * One transaction: give give_n back to ca's bucket give_start of period (0: nothing), drop the
 * buckets that left the period, then reserve up to want (>= 1) in the bucket of t_ms while the
 * live buckets' sum stays at most limit. *got is what was taken; *sum_out the sum after it.
 * HSMCA_E_ISSUE_QUOTA_MINUTE or _DAY (by period) when nothing is left (the give-back is kept).
 * The handle must have no transaction open and no other user meanwhile (the caller serialises).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_quota_reserve(struct hsmca_store *st, const char *ca,
                                                         char period, int64_t t_ms, uint64_t limit,
                                                         uint64_t want, int64_t give_start,
                                                         uint64_t give_n, uint64_t *got,
                                                         uint64_t *sum_out);
/* Give n reserved but unused back to ca's bucket start of period (one statement). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_quota_release(struct hsmca_store *st, const char *ca,
                                                         char period, int64_t start, uint64_t n);
/* The sum of ca's live buckets of period at t_ms (reserved by every node). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_quota_sum(struct hsmca_store *st, const char *ca,
                                                     char period, int64_t t_ms, uint64_t *out);
/* A quota turned on (at a node's start, or by a reload) counts what the store already holds: each
 * live bucket of ca that no node has counted yet gets the certificates issued in it. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_quota_seed(struct hsmca_store *st, const char *ca,
                                                      char period, int64_t t_ms);
/* One node alone (SQLite, at its start): set ca's live buckets to the certificates they hold, so
 * that what a killed process had reserved and not signed is not lost. Never on a shared store. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_quota_recount(struct hsmca_store *st, const char *ca,
                                                         int64_t t_ms);

/*
 * A node's block of one period's quota of one CA, kept in memory under the caller's mutex.
 */
struct hsmca_quota_blk {
    int64_t start;   /* the bucket the block is in (-1: none) */
    uint64_t n;      /* its slots not yet taken */
    uint64_t sum;    /* the live sum the store had at the last reservation */
    int64_t refused; /* the bucket the store refused (asked again in the next one), or -1 */
    int busy;        /* a reservation is under way (others wait on the caller's cv) */
};

void hsmca_quota_blk_init(struct hsmca_quota_blk *b);

/*
 * Take one slot of ca's quota (period, limit >= 1) for a request at t_ms: from b while its bucket
 * is t's, else by a reservation of a block of at most cap. Called with *mu held; while the store
 * works, *mu is dropped (others wait on *cv) and *st_mu held (one user of st at a time). *bucket
 * says which bucket the slot is in (for hsmca_quota_blk_give). A request at a t older than b's
 * bucket takes one slot straight from the store.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_quota_take(struct hsmca_quota_blk *b, pthread_mutex_t *mu,
                                                pthread_cond_t *cv, struct hsmca_store *st,
                                                pthread_mutex_t *st_mu, const char *ca, char period,
                                                uint64_t limit, uint64_t cap, int64_t t_ms,
                                                int64_t *bucket);
/* Give back one slot of bucket (a DAC that failed): to b while it is b's bucket, else lost. */
void hsmca_quota_blk_give(struct hsmca_quota_blk *b, int64_t bucket);
/* The count as this node knows it at t_ms: the store's sum at the last reservation less this
 * node's unused block, while that sum can still be live; 0 when nothing was reserved lately. */
uint64_t hsmca_quota_blk_count(const struct hsmca_quota_blk *b, char period, int64_t t_ms);

#endif /* HSMCA_STORE_QUOTA_H */
