/* SPDX-License-Identifier: Apache-2.0
 *
 * issue_internal.h -- what the issue*.c pieces share: the engine, CA, job and batch structures
 * and the helpers more than one piece calls (prefixed issue_; each is documented at its
 * definition). Private to src/lib/issue*.c.
 */
#ifndef HSMCA_ISSUE_INTERNAL_H
#define HSMCA_ISSUE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "hsmca/csr.h"
#include "hsmca/issue.h"
#include "hsmca/limiter.h"
#include "hsmca/log.h"
#include "hsmca/sizes.h"
#include "hsmca/store_quota.h"
#include "hsmca/store_windows.h"
#include "hsmca/util.h"

#define QUOTA_MAX 1000000000ull
#define WINDOW_MAX (1ull << 40)
#define ISSUE_WINDOW_BLOCK 64 /* the most of a shared window's count one node reserves at once */
#define ISSUE_WINDOW_BLOCK_ONE 1024 /* the same on SQLite, whose store has one node */
#define LIMITER_SLOTS 1024
#define LIMITER_PROBE 8
#define INFLIGHT_MIN 64
#define ISSUE_QUOTA_BLOCK 64       /* the most of a quota's bucket one node reserves at once */
#define ISSUE_QUOTA_BLOCK_ONE 1024 /* the same on SQLite (one node) */
#define DETAIL_JSON_MAX 1024

struct reader {
    pthread_mutex_t mu;
    struct hsmca_store *st;
};

struct batch_ctl;

struct hsmca_issuer {
    struct hsmca_audit *audit;
    struct hsmca_issue_quotas *quotas;
    struct reader *rd;
    unsigned nrd;
    atomic_uint rd_next;
    unsigned burst;
    uint64_t max_unsigned;     /* audit entries beyond the last signed checkpoint; 0 = no bound */
    struct hsmca_limiter *lim; /* refusals audited in full per principal (burst a minute) */
    /* batch helpers */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    struct batch_ctl *queue; /* singly linked, oldest first */
    int stop;
    pthread_t *th;
    unsigned nth;
    /* shared windows (store_windows.h): a read-write handle opened at the first one */
    pthread_mutex_t win_mu;
    struct hsmca_store *wst;
    char *store_path;
    /* quotas counted in the store (store_quota.h): a handle opened at the first reservation,
     * one reservation at a time on it (qst_mu) */
    pthread_mutex_t qst_mu;
    struct hsmca_store *qst;
};

struct hsmca_issue_ca {
    struct hsmca_issuer *iss;
    struct hsmca_ca_rec rec; /* cert_der owned */
    X509 *pai, *paa;
    struct hsmca_profile profile;
    struct hsmca_matter_vidpid scope;
    char target[HSMCA_CA_ID_MAX + 8];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* window (under mu) */
    struct hsmca_matter_issuer *mi; /* non-NULL while keyed */
    char kid[2 * HSMCA_KEY_ID_MAX + 1];
    int open;
    int64_t until_ms;
    uint64_t max_dacs, reserved, issued, in_flight;
    /* a window shared through the store (win "" when the window is this node's alone): blk
     * is this node's reserved and unused part of its count, win_used the count all nodes had
     * reserved at the last reservation, win_gen counts activations (a slot of an earlier
     * window is never given back to a later one) */
    char win[HSMCA_WINDOW_ID_MAX + 1];
    uint64_t blk, win_used, win_gen;
    int refilling;
    unsigned signing; /* users of mi (drained by deactivate) */
    unsigned jobs;    /* submitted jobs whose result is not yet delivered (drained by free) */
    /* quotas (under mu): the limits, and this node's blocks of their counts in the store */
    uint64_t per_minute, per_day;
    struct hsmca_quota_blk qmin, qday;
    /* request ids the store may hold (Bloom filter; words updated atomically): a request id
     * that is surely absent needs no store lookup */
    _Atomic uint64_t *known;
    uint64_t known_mask; /* bits - 1 */
    /* request ids in flight (under mu): open addressing, tombstones */
    char **ids;
    size_t ids_cap, ids_used;
    /* statistics */
    atomic_uint_fast64_t total_issued, total_replayed, total_refused, total_dry;
};

enum job_kind { JOB_ISSUE, JOB_REPLAY, JOB_REFUSE, JOB_DRY };

struct batch_acc;

struct job {
    struct hsmca_issuer *iss;
    struct hsmca_issue_ca *ca;
    struct hsmca_issue_result *res;
    struct batch_acc *acc; /* NULL for a single request */
    hsmca_issue_done_fn done;
    void *done_arg;
    enum job_kind kind;
    struct hsmca_cert_rec rec; /* JOB_ISSUE: the row apply writes (der borrowed from res) */
    int slot;                  /* a window slot and quota units are reserved */
    uint64_t win_gen;          /* the window activation the slot belongs to */
    int64_t q_min_bucket, q_day_bucket; /* the quota buckets of its slots (-1: none taken) */
    int id_held;                        /* rec.request_id is registered in flight */
    char principal[HSMCA_AUDIT_FIELD_MAX + 1];
    char role[HSMCA_AUDIT_FIELD_MAX + 1];
    char device_id[HSMCA_DEVICE_ID_MAX + 1]; /* the DAC's checked per-device value, or "" */
    /* batch items hand their entries to the writer a chunk at a time (bigger group commits) */
    struct defer_q *defer;
    const char *ev_action, *ev_outcome; /* static strings */
    char *ev_detail;                    /* owned until submitted */
    hsmca_audit_apply_fn ev_apply;
};

/* Entries of batch items waiting to be submitted together by one batch worker. */
#define DEFER_CHUNK 64
struct defer_q {
    struct job *j[DEFER_CHUNK];
    size_t n;
};

struct batch_acc {
    atomic_size_t pending; /* items not yet finished, +1 while the submitter hands them out */
    struct hsmca_issue_batch_result *br;
    struct job *jobs;
    hsmca_issue_batch_done_fn done;
    void *done_arg;
    struct hsmca_issue_ca *ca;
};

struct batch_ctl {
    struct batch_ctl *next; /* in the issuer's queue */
    struct hsmca_issuer *iss;
    struct hsmca_issue_ca *ca;
    const struct hsmca_issue_req *items;
    struct batch_acc *acc;
    size_t n;
    atomic_size_t claim;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned workers; /* helpers inside (under mu) */
};

/* issue.c */
int64_t issue_now_ms(void);

void issue_batch_finish(struct batch_acc *acc);

void issue_sha256_hex(const void *p, size_t len, char out[HSMCA_SHA256_HEX_SIZE]);

void issue_done_ignore(void *arg, enum hsmca_err rc, const struct hsmca_audit_receipt *receipt);

/* issue.c: the summaries owed for ended minutes (all: every one). */
void issue_summaries_flush(struct hsmca_issuer *iss, int all);

void issue_summary_write(struct hsmca_issuer *iss, const struct hsmca_limiter_slot *s,
                         int64_t t_ms);

void issue_defer_flush(struct defer_q *q);

void issue_process(struct job *j, const struct hsmca_issue_req *rq);

/* issue_ca.c: a slot of ca's window under ca->mu (may drop it while the store reserves a block
 * of a shared window); HSMCA_OK or the refusal */
enum hsmca_err issue_window_slot(struct hsmca_issue_ca *ca, int64_t t_ms);

/* issue_quota.c */
enum hsmca_err issue_quotas_dup(const struct hsmca_issue_quotas *q,
                                struct hsmca_issue_quotas **out);

/* Count in the store what it holds for ca's quotas turned on (minute, day: the certificates of
 * the buckets no node has counted yet), and on SQLite with recount, every live bucket again
 * (one node: what a killed process reserved is not lost). Without ca->mu. */
enum hsmca_err issue_quota_seed(struct hsmca_issue_ca *ca, int minute, int day, int recount);

/* Under ca->mu: a slot of ca's per-minute and per-day quotas for a request at t (may drop mu
 * while the store reserves a block); HSMCA_OK (buckets in j) or the refusal. */
enum hsmca_err issue_quota_slots(struct hsmca_issue_ca *ca, struct job *j, int64_t t);

/* Under ca->mu: give back the quota slots j holds (a DAC that failed or was refused after). */
void issue_quota_give(struct hsmca_issue_ca *ca, struct job *j);

/* Give ca's unused quota blocks back to the store (its window closes, its limits change). */
void issue_quota_return(struct hsmca_issue_ca *ca);

/* The live counts of ca's quotas at t (every node's), for reports. */
void issue_quota_counts(struct hsmca_issue_ca *ca, int64_t t, uint64_t *minute, uint64_t *day);

/* issue_ids.c */

int issue_ids_add(struct hsmca_issue_ca *ca, const char *id);

void issue_ids_del(struct hsmca_issue_ca *ca, const char *id);

void issue_known_add(struct hsmca_issue_ca *ca, const char *id);

int issue_known_maybe(struct hsmca_issue_ca *ca, const char *id);

enum hsmca_err issue_known_load(struct hsmca_issue_ca *ca, struct hsmca_store *st, uint64_t total);
void issue_ids_free(struct hsmca_issue_ca *ca);

#endif /* HSMCA_ISSUE_INTERNAL_H */
