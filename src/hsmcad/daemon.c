/* SPDX-License-Identifier: Apache-2.0
 *
 * daemon.c -- small shared services of the daemon's state: per-thread read-only store handles,
 * the CA table, the clock, and the per-client limiter of audited refusals (so a flood of refused
 * requests cannot bloat the audit log). No HTTP, no PKI.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsmca/log.h"

#include "hsmcad.h"

#define LIM_SLOTS 4096

struct lim_slot {
    char client[80];
    int64_t minute;
    unsigned count;
};

struct hsmcad_limiter {
    struct lim_slot s[LIM_SLOTS];
};

int64_t
hsmcad_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct hsmca_store *
hsmcad_ro(struct hsmcad *d)
{
    struct hsmca_store *st = pthread_getspecific(d->ro_key);
    enum hsmca_err rc;

    if (st != NULL)
        return st;
    pthread_mutex_lock(&d->ro_mu);
    if (d->nro < HSMCAD_READERS_MAX) {
        rc = hsmca_store_open_readonly(d->cfg.store, &st);
        if (rc == HSMCA_OK) {
            d->ro[d->nro++] = st;
            pthread_setspecific(d->ro_key, st);
        } else {
            hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "store-readonly-open", "code=%s",
                      hsmca_err_code(rc));
            st = NULL;
        }
    }
    pthread_mutex_unlock(&d->ro_mu);
    return st;
}

struct hsmcad_ca *
hsmcad_ca_find(struct hsmcad *d, const char *id)
{
    unsigned i, n = __atomic_load_n(&d->ncas, __ATOMIC_ACQUIRE);

    for (i = 0; i < n; i++) {
        if (strcmp(d->cas[i].id, id) == 0)
            return &d->cas[i];
    }
    return NULL;
}

static uint64_t
fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    while (*s != '\0') {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

int
hsmcad_refusal_allowed(struct hsmcad *d, const char *client)
{
    int64_t minute = hsmcad_now_ms() / 60000;
    struct lim_slot *s;
    int ok;

    if (d->cfg.refusals_per_minute == 0)
        return 0;
    pthread_mutex_lock(&d->lim_mu);
    if (d->lim == NULL)
        d->lim = calloc(1, sizeof(*d->lim));
    if (d->lim == NULL) {
        pthread_mutex_unlock(&d->lim_mu);
        return 1; /* fail towards auditing */
    }
    /* one slot per hash: a collision shares a budget, which only ever audits less of a flood */
    s = &d->lim->s[fnv(client) % LIM_SLOTS];
    if (s->minute != minute) {
        snprintf(s->client, sizeof(s->client), "%s", client);
        s->minute = minute;
        s->count = 0;
    }
    ok = s->count < d->cfg.refusals_per_minute;
    if (ok)
        s->count++;
    pthread_mutex_unlock(&d->lim_mu);
    return ok;
}
