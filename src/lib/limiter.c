/* SPDX-License-Identifier: Apache-2.0
 *
 * limiter.c -- the one refusal limiter (hsmca/limiter.h): a fixed table of per-key, per-minute
 * counts with linear probing, and a bound per second over all keys. Owns the table; no I/O.
 */
#include "hsmca/limiter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hsmca_limiter {
    pthread_mutex_t mu;
    struct hsmca_limiter_slot *s;
    unsigned nslots, probe;
    uint64_t per_minute, per_second;
    int64_t second; /* the per-second bound's current second */
    uint64_t in_second;
};

/* FNV-1a over the key as the table keeps it (cut to HSMCA_LIMITER_KEY_MAX bytes). */
static uint64_t
key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    size_t i;

    for (i = 0; i < HSMCA_LIMITER_KEY_MAX && s[i] != '\0'; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

enum hsmca_err
hsmca_limiter_new(unsigned slots, unsigned probe, uint64_t per_minute, uint64_t per_second,
                  struct hsmca_limiter **out)
{
    struct hsmca_limiter *l;

    if (out == NULL || slots == 0 || probe == 0 || probe > slots)
        return HSMCA_E_INVALID_ARG;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return HSMCA_E_NOMEM;
    l->s = calloc(slots, sizeof(*l->s));
    if (l->s == NULL) {
        free(l);
        return HSMCA_E_NOMEM;
    }
    pthread_mutex_init(&l->mu, NULL);
    l->nslots = slots;
    l->probe = probe;
    l->per_minute = per_minute;
    l->per_second = per_second;
    *out = l;
    return HSMCA_OK;
}

void
hsmca_limiter_free(struct hsmca_limiter *l)
{
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l->s);
    free(l);
}

int
hsmca_limiter_admit(struct hsmca_limiter *l, const char *key, const char *tag, int64_t t_ms,
                    struct hsmca_limiter_slot *owed, struct hsmca_limiter_slot *now)
{
    int64_t minute = t_ms / 60000;
    size_t h, k, victim;
    struct hsmca_limiter_slot *s = NULL;
    int admit;

    if (owed != NULL)
        owed->key[0] = '\0';
    if (l == NULL || key == NULL)
        return 1; /* fail towards auditing */
    h = (size_t)(key_hash(key) % l->nslots);
    victim = h;
    pthread_mutex_lock(&l->mu);
    for (k = 0; k < l->probe; k++) {
        struct hsmca_limiter_slot *c = &l->s[(h + k) % l->nslots];

        if (c->key[0] != '\0' && strncmp(c->key, key, HSMCA_LIMITER_KEY_MAX) == 0) {
            s = c;
            break;
        }
        if (c->key[0] == '\0' || c->minute < l->s[victim].minute)
            victim = (h + k) % l->nslots;
        if (c->key[0] == '\0')
            break;
    }
    if (s == NULL) {
        s = &l->s[victim];
        if (s->key[0] != '\0' && s->suppressed > 0 && owed != NULL)
            *owed = *s; /* evicted: its count is owed now */
        memset(s, 0, sizeof(*s));
        snprintf(s->key, sizeof(s->key), "%s", key);
        s->minute = minute;
    }
    snprintf(s->tag, sizeof(s->tag), "%s", tag != NULL ? tag : "");
    if (s->minute != minute) {
        if (s->suppressed > 0 && owed != NULL && owed->key[0] == '\0')
            *owed = *s;
        s->minute = minute;
        s->full = 0;
        s->suppressed = 0;
    }
    if (l->second != t_ms / 1000) {
        l->second = t_ms / 1000;
        l->in_second = 0;
    }
    admit = s->full < l->per_minute && l->in_second < l->per_second;
    if (admit) {
        s->full++;
        l->in_second++;
    } else if (s->suppressed++ == 0) {
        s->since_ms = t_ms;
    }
    if (now != NULL)
        *now = *s;
    pthread_mutex_unlock(&l->mu);
    return admit;
}

void
hsmca_limiter_drain(struct hsmca_limiter *l, int64_t t_ms, int all,
                    void (*fn)(void *arg, const struct hsmca_limiter_slot *s), void *arg)
{
    int64_t minute = t_ms / 60000;
    size_t i;

    if (l == NULL || fn == NULL)
        return;
    for (i = 0; i < l->nslots; i++) {
        struct hsmca_limiter_slot s;

        pthread_mutex_lock(&l->mu);
        s = l->s[i];
        if (s.key[0] == '\0' || s.suppressed == 0 || (!all && s.minute == minute)) {
            pthread_mutex_unlock(&l->mu);
            continue;
        }
        l->s[i].suppressed = 0;
        l->s[i].full = 0;
        l->s[i].minute = minute;
        pthread_mutex_unlock(&l->mu);
        fn(arg, &s);
    }
}
