/* SPDX-License-Identifier: Apache-2.0
 *
 * issue_ids.c -- the request-id filter: request ids in flight (open addressing, under the CA's
 * mutex) and the Bloom filter of ids the store may hold, loaded at start.
 */
#include "issue_internal.h"

/* ---------------------------------------------------------------- engine and CA */

static char tombstone[1];

static uint64_t
fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    while (*s != '\0') {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

/* Register id as in flight; 0 if it already is, -1 on NOMEM, 1 when added. Under ca->mu. */
int
issue_ids_add(struct hsmca_issue_ca *ca, const char *id)
{
    size_t i, mask, tomb = SIZE_MAX;

    if ((ca->ids_used + 1) * 2 > ca->ids_cap) {
        size_t ncap = ca->ids_cap ? ca->ids_cap * 2 : INFLIGHT_MIN, k;
        char **n = calloc(ncap, sizeof(*n));

        if (n == NULL)
            return -1;
        for (k = 0; k < ca->ids_cap; k++) {
            char *s = ca->ids[k];

            if (s == NULL || s == tombstone)
                continue;
            for (i = fnv1a(s) & (ncap - 1); n[i] != NULL; i = (i + 1) & (ncap - 1))
                ;
            n[i] = s;
        }
        free(ca->ids);
        ca->ids = n;
        ca->ids_cap = ncap;
        ca->ids_used = 0;
        for (k = 0; k < ncap; k++)
            ca->ids_used += n[k] != NULL;
    }
    mask = ca->ids_cap - 1;
    for (i = fnv1a(id) & mask; ca->ids[i] != NULL; i = (i + 1) & mask) {
        if (ca->ids[i] == tombstone) {
            if (tomb == SIZE_MAX)
                tomb = i;
        } else if (strcmp(ca->ids[i], id) == 0) {
            return 0;
        }
    }
    if (tomb != SIZE_MAX) {
        i = tomb;
    } else {
        ca->ids_used++;
    }
    ca->ids[i] = strdup(id);
    if (ca->ids[i] == NULL) {
        ca->ids[i] = tomb != SIZE_MAX ? tombstone : NULL;
        if (tomb == SIZE_MAX)
            ca->ids_used--;
        return -1;
    }
    return 1;
}

/* Under ca->mu. */
void
issue_ids_del(struct hsmca_issue_ca *ca, const char *id)
{
    size_t i, mask;

    if (ca->ids_cap == 0)
        return;
    mask = ca->ids_cap - 1;
    for (i = fnv1a(id) & mask; ca->ids[i] != NULL; i = (i + 1) & mask) {
        if (ca->ids[i] != tombstone && strcmp(ca->ids[i], id) == 0) {
            free(ca->ids[i]);
            ca->ids[i] = tombstone;
            return;
        }
    }
}

/* Two independent 64-bit hashes of a request id for the Bloom filter (k = 4 probes). */
static void
known_hashes(const char *id, uint64_t *h1, uint64_t *h2)
{
    uint64_t a = fnv1a(id), b = 0x9e3779b97f4a7c15ull;
    const unsigned char *p = (const unsigned char *)id;

    while (*p != '\0') {
        b ^= *p++;
        b *= 0xff51afd7ed558ccdull;
        b ^= b >> 33;
    }
    *h1 = a;
    *h2 = b | 1;
}

void
issue_known_add(struct hsmca_issue_ca *ca, const char *id)
{
    uint64_t h1, h2, bit;
    int k;

    known_hashes(id, &h1, &h2);
    for (k = 0; k < 4; k++) {
        bit = (h1 + (uint64_t)k * h2) & ca->known_mask;
        atomic_fetch_or_explicit(&ca->known[bit >> 6], 1ull << (bit & 63), memory_order_release);
    }
}

int
issue_known_maybe(struct hsmca_issue_ca *ca, const char *id)
{
    uint64_t h1, h2, bit;
    int k;

    known_hashes(id, &h1, &h2);
    for (k = 0; k < 4; k++) {
        bit = (h1 + (uint64_t)k * h2) & ca->known_mask;
        if ((atomic_load_explicit(&ca->known[bit >> 6], memory_order_acquire) &
             (1ull << (bit & 63))) == 0)
            return 0;
    }
    return 1;
}

static enum hsmca_err
known_load_id(void *arg, const char *request_id)
{
    if (request_id != NULL && request_id[0] != '\0')
        issue_known_add(arg, request_id);
    return HSMCA_OK;
}

/* Size the filter for what the store holds (16 bits per id, at least 2^20 bits) and fill it
 * from one sequential scan of the request-id index. */
enum hsmca_err
issue_known_load(struct hsmca_issue_ca *ca, struct hsmca_store *st, uint64_t total)
{
    uint64_t bits = 1ull << 20;

    while (bits < total * 16 && bits < (1ull << 36))
        bits <<= 1;
    ca->known = calloc((size_t)(bits / 64), sizeof(*ca->known));
    if (ca->known == NULL)
        return HSMCA_E_NOMEM;
    ca->known_mask = bits - 1;
    return hsmca_store_request_ids(st, ca->rec.id, known_load_id, ca);
}

/* Free a CA's in-flight table and Bloom filter (hsmca_issue_ca_free: nothing is in flight). */
void
issue_ids_free(struct hsmca_issue_ca *ca)
{
    size_t i;

    for (i = 0; i < ca->ids_cap; i++) {
        if (ca->ids[i] != tombstone)
            free(ca->ids[i]);
    }
    free(ca->ids);
    free(ca->known);
    ca->ids = NULL;
    ca->known = NULL;
}
