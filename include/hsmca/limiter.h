/* SPDX-License-Identifier: Apache-2.0
 *
 * limiter.h -- the one refusal limiter: how many refusals of one key (a principal, a client) get
 * an audit entry of their own per minute, and how many of all keys together per second; the rest
 * are only counted, for a summary entry, so a flood of refused requests cannot bloat the audit
 * log. Used by the issuance engine (per principal) and by hsmcad (per client).
 *
 * Keys live in a fixed table: a key's hash picks a slot and the next probe - 1 slots are tried;
 * a key that finds none of its own takes a free one, or evicts the one counting the oldest
 * minute (its refusals only counted are handed back as owed). Keys are cut to
 * HSMCA_LIMITER_KEY_MAX bytes. Thread-safe (one mutex, held for a few instructions).
 */
#ifndef HSMCA_LIMITER_H
#define HSMCA_LIMITER_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"

#define HSMCA_LIMITER_KEY_MAX 256
#define HSMCA_LIMITER_UNBOUNDED UINT64_MAX /* per_second: no bound per second */

struct hsmca_limiter;

/* A key's count in one minute, as handed back for a summary. key "" = none. */
struct hsmca_limiter_slot {
    char key[HSMCA_LIMITER_KEY_MAX + 1];
    char tag[HSMCA_LIMITER_KEY_MAX + 1]; /* what the caller said of the key last (a role),
                                          * this refusal's included */
    int64_t minute;                      /* the minute (ms / 60000) being counted */
    uint64_t full;                       /* refusals with an entry of their own in it */
    uint64_t suppressed;                 /* refusals only counted in it */
    int64_t since_ms;                    /* the first of those */
};

/*
 * slots in the table (>= 1), probe slots tried per key (1..slots), per_minute entries per key
 * and minute, per_second entries of all keys per second (HSMCA_LIMITER_UNBOUNDED: no such
 * bound). 0 for either admits nothing.
 * HSMCA_E_INVALID_ARG, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_limiter_new(unsigned slots, unsigned probe,
                                                 uint64_t per_minute, uint64_t per_second,
                                                 struct hsmca_limiter **out);
void hsmca_limiter_free(struct hsmca_limiter *l);

/*
 * Count one refusal of key at t_ms (tag: what to say of the key in its summary, NULL = "").
 * Returns 1 if it may have an audit entry of its own, 0 if it is only counted. A slot whose
 * refusals only counted are owed a summary now (the key was evicted, or its minute ended) is
 * copied into *owed (if non-NULL; owed->key "" = none). *now (if non-NULL) gets the key's slot
 * after this refusal.
 */
int hsmca_limiter_admit(struct hsmca_limiter *l, const char *key, const char *tag, int64_t t_ms,
                        struct hsmca_limiter_slot *owed, struct hsmca_limiter_slot *now);

/*
 * Hand every slot with refusals only counted in a minute before t_ms's (every one, if all) to fn,
 * outside the lock, and start its count afresh at t_ms's minute.
 */
void hsmca_limiter_drain(struct hsmca_limiter *l, int64_t t_ms, int all,
                         void (*fn)(void *arg, const struct hsmca_limiter_slot *s), void *arg);

#endif /* HSMCA_LIMITER_H */
