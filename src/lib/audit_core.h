/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_core.h -- what the pieces of the audit log's writer share (audit.c, audit_writer.c,
 * audit_checkpoint.c, audit_open.c): the handle, the queue item and the helpers more than one piece
 * calls (prefixed audit_; each is documented at its definition). Private to them; audit_extract.c
 * sees only audit_internal.h.
 */
#ifndef HSMCA_AUDIT_CORE_H
#define HSMCA_AUDIT_CORE_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/limits.h"
#include "hsmca/log.h"
#include "hsmca/sizes.h"
#include "hsmca/store_audit.h"
#include "hsmca/util.h"

#include "audit_internal.h"

#define QUEUE_MAX 100000

enum item_kind { ITEM_ENTRY, ITEM_CHECKPOINT };

struct item {
    struct item *next;
    enum item_kind kind;
    /* the line around the parts only the writer knows (prev, seq, time) */
    char *pre;  /* {"action":..,"actor":..,"detail":..,"kid":..,"outcome":..,"prev":" */
    char *mid;  /* ","role":..,"seq": */
    char *post; /* ,"target":..,"time":" */
    size_t pre_len, mid_len, post_len;
    char action[HSMCA_AUDIT_FIELD_MAX + 1];
    int is_intent;
    uint64_t closes_intent;
    hsmca_audit_apply_fn apply;
    void *apply_arg;
    hsmca_audit_done_fn done;
    void *done_arg;
    enum hsmca_err rc;
    struct hsmca_audit_receipt receipt;
    struct hsmca_audit_checkpoint *cp_out; /* ITEM_CHECKPOINT */
};

struct hsmca_audit {
    struct hsmca_store *st;
    struct hsmca_token *token;
    struct hsmca_key *key;
    EVP_PKEY *pub;
    char origin[HSMCA_AUDIT_FIELD_MAX + 1];
    unsigned char kid[HSMCA_SHA256_LEN];
    char kid_hex[HSMCA_SHA256_HEX_SIZE];
    uint64_t cp_entries, cp_ms;
    unsigned batch_max;
    unsigned linger_us; /* cfg->linger_us */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    char *cert_pem;
    EVP_MD *sha256;
    EVP_MD_CTX *mdctx;

    /* writer state (writer thread, or open/close before/after it runs) */
    uint64_t size;
    unsigned char head[HSMCA_SHA256_LEN];
    int64_t last_ms;
    struct hsmca_audit_checkpoint last_cp; /* size 0 = none */
    uint64_t last_cp_us;                   /* hsmca_mono_us() at the last checkpoint */

    pthread_mutex_t lock;
    pthread_cond_t work_cv, sync_cv;
    struct item *q_head, *q_tail;
    size_t q_len;
    long expected; /* entries announced by hsmca_audit_expect, not yet submitted (atomic) */
    int stopping;
    int thread_started;
    pthread_t thread;
    uint64_t pub_size; /* durable size, readable under lock */
    int clock_behind;  /* the wall clock is behind the last entry (step-back already logged) */
    int batch_broken;  /* a savepoint could not be rolled back: the whole batch must go */
    struct hsmca_audit_stats stats;
    /* last_cp.size and "the last checkpoint attempt failed": written under lock, read without
     * it (atomics) by hsmca_audit_unsigned on every DAC, which must not contend for the lock */
    uint64_t pub_cp_size;
    int pub_cp_failing;

    /* checkpoints while the audit token is away (writer thread) */
    enum hsmca_err (*heal)(void *arg, struct hsmca_key **key);
    void *heal_arg;
    uint64_t retry_us;
    int cp_failing;       /* the last attempt failed */
    uint64_t cp_retry_at; /* hsmca_mono_us() before which maybe_checkpoint does not try again */

    /*
     * The anchor mover: a checkpoint's anchor is written to the token on this thread, so the
     * writer, and every DAC waiting for its entry, does not stop for it (SoftHSM replaces a data
     * object in 4-12 ms; a slower token would stall longer). All under anchor_lock.
     */
    pthread_mutex_t anchor_lock;
    pthread_cond_t anchor_cv;
    pthread_t anchor_thread;
    int anchor_started, anchor_stop, anchor_pending, anchor_busy;
    struct hsmca_audit_checkpoint anchor_cp; /* size, head and hash only */
    enum hsmca_err anchor_rc;                /* of the last write */
};

/* audit.c */
int64_t audit_wall_ms(struct hsmca_audit *a);

enum hsmca_err audit_sha256(struct hsmca_audit *a, const void *data, size_t len,
                            unsigned char out[HSMCA_SHA256_LEN]);

enum hsmca_err audit_cp_copy(struct hsmca_audit_checkpoint *dst,
                             const struct hsmca_audit_checkpoint *src);

void audit_item_free(struct item *it);

enum hsmca_err audit_item_new(const struct hsmca_audit_event *ev, struct item **out);

/* audit_writer.c */
struct item *audit_system_item(const char *action, const char *detail);

void audit_run_item(struct hsmca_audit *a, struct item *it);

void audit_run_batch(struct hsmca_audit *a, struct item **items, size_t n);
/* Several nodes on one PostgreSQL store (docs/postgresql.md), inside the writer's transaction:
 * take the chain's lock and adopt the head (seq, hash, time) another node moved; adopt a newer
 * checkpoint another node signed. Nothing on SQLite. (audit_writer.c) */
enum hsmca_err audit_adopt_head(struct hsmca_audit *a);
enum hsmca_err audit_adopt_checkpoint(struct hsmca_audit *a);

/* audit_checkpoint.c */
enum hsmca_err audit_write_anchor(struct hsmca_audit *a, const struct hsmca_audit_checkpoint *cp);

void *audit_anchor_mover(void *arg);

enum hsmca_err audit_anchor_settle(struct hsmca_audit *a);

void audit_anchor_mover_stop(struct hsmca_audit *a);

enum hsmca_err audit_make_checkpoint(struct hsmca_audit *a);

void *audit_writer_main(void *arg);

/* audit_open.c */
enum hsmca_err audit_genesis(struct hsmca_audit *a, const char *detail_json, char *why,
                             size_t why_len);

#endif /* HSMCA_AUDIT_CORE_H */
