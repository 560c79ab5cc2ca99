/* SPDX-License-Identifier: Apache-2.0
 *
 * crls.c -- keeps each PAI's CRL fresh (docs/revocation.md). A PAI's key is reachable only while
 * a quorum activation window is open, so its CRL is signed in its own token at each activation,
 * within the policy's batch delay after a revocation, before nextUpdate comes within the
 * policy's refresh margin, and once more when the window ends (the key is still held then), each
 * signature a crl.sign audit entry. With no window open no PAI CRL can be signed: /readyz and
 * the metrics warn from warn_before_s ahead of nextUpdate. A PAA's CRL is signed by the quorum
 * (ca.revoke, crl.sign). Revoked CAs sign nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsmca/log.h"
#include "hsmca/revoke.h"

#include "buf.h"
#include "hsmcad.h"

/* revocations counted per CA (generation), so a revocation racing a signature is never lost */
static uint64_t rev_gen[HSMCA_CA_REG_CAS_MAX], signed_gen[HSMCA_CA_REG_CAS_MAX];

void
hsmcad_crl_load(struct hsmcad *d)
{
    struct hsmca_store *ro = hsmcad_ro(d);
    unsigned i, n = hsmca_ca_count(d->cas);

    if (ro == NULL)
        return;
    for (i = 0; i < n; i++) {
        struct hsmca_ca *c = hsmca_ca_at(d->cas, i);
        struct hsmca_ca_rec rec;
        struct hsmca_crl_rec crl;

        memset(&rec, 0, sizeof(rec));
        memset(&crl, 0, sizeof(crl));
        if (hsmca_store_ca_get(ro, c->id, &rec) == HSMCA_OK)
            __atomic_store_n(&c->revoked, rec.revoked, __ATOMIC_RELEASE);
        hsmca_ca_rec_clear(&rec);
        if (hsmca_store_crl_get(ro, c->id, &crl) == HSMCA_OK) {
            __atomic_store_n(&c->crl_this, crl.this_update, __ATOMIC_RELAXED);
            __atomic_store_n(&c->crl_next, crl.next_update, __ATOMIC_RELAXED);
            __atomic_store_n(&c->crl_number, crl.number, __ATOMIC_RELEASE);
        }
        hsmca_crl_rec_clear(&crl);
    }
}

void
hsmcad_crl_dirty(struct hsmcad *d, const char *ca)
{
    struct hsmca_ca *c = hsmca_ca_find(d->cas, ca);
    int64_t zero = 0;

    if (c == NULL)
        return;
    __atomic_add_fetch(&rev_gen[c->index], 1, __ATOMIC_ACQ_REL);
    __atomic_compare_exchange_n(&c->crl_dirty_ms, &zero, hsmcad_now_ms(), 0, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
}

enum hsmca_err
hsmcad_crl_sign_locked(struct hsmcad *d, struct hsmca_ca *c, const char *trigger)
{
    struct hsmca_store *ro = hsmcad_ro(d);
    struct hsmca_crl_policy pol;
    struct hsmca_crl_info info;
    struct hsmca_ca_rec rec;
    unsigned idx = c->index;
    uint64_t gen = __atomic_load_n(&rev_gen[idx], __ATOMIC_ACQUIRE);
    enum hsmca_err rc;

    if (c->key == NULL)
        return HSMCA_E_CRL_KEY_UNAVAILABLE;
    if (__atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE))
        return HSMCA_E_REVOKE_CA_REVOKED;
    if (ro == NULL || d->audit == NULL)
        return HSMCA_E_STORE_OPEN;
    memset(&rec, 0, sizeof(rec));
    rc = hsmca_store_ca_get(ro, c->id, &rec);
    if (rc == HSMCA_OK) {
        hsmca_crl_policy_for(d->crl_policies, c->id, &pol);
        rc = hsmca_crl_issue(d->audit, ro, &rec, hsmca_key_private(c->key), &pol, time(NULL),
                             trigger, NULL, &info);
    }
    hsmca_ca_rec_clear(&rec);
    if (rc != HSMCA_OK) {
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "crl-sign-failed", "ca=%s trigger=%s code=%s", c->id,
                  trigger, hsmca_err_code(rc));
        return rc;
    }
    __atomic_store_n(&c->crl_this, (int64_t)info.this_update, __ATOMIC_RELAXED);
    __atomic_store_n(&c->crl_next, (int64_t)info.next_update, __ATOMIC_RELAXED);
    __atomic_store_n(&c->crl_number, info.number, __ATOMIC_RELEASE);
    __atomic_store_n(&signed_gen[idx], gen, __ATOMIC_RELEASE);
    /* a revocation that came while signing keeps the CA due */
    __atomic_store_n(&c->crl_dirty_ms,
                     __atomic_load_n(&rev_gen[idx], __ATOMIC_ACQUIRE) == gen ? 0 : hsmcad_now_ms(),
                     __ATOMIC_RELEASE);
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "crl-signed",
              "ca=%s trigger=%s number=%llu entries=%zu next_update=%lld", c->id, trigger,
              (unsigned long long)info.number, info.entries, (long long)info.next_update);
    return HSMCA_OK;
}

void
hsmcad_crl_tick(struct hsmcad *d)
{
    int64_t now = hsmcad_now_ms();
    unsigned i;

    hsmca_ca_lock(d->cas);
    for (i = 0; i < hsmca_ca_count(d->cas); i++) {
        struct hsmca_ca *c = hsmca_ca_at(d->cas, i);
        struct hsmca_crl_policy pol;
        int64_t dirty = __atomic_load_n(&c->crl_dirty_ms, __ATOMIC_ACQUIRE);
        const char *trigger = NULL;

        if (c->key == NULL || __atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE))
            continue;
        hsmca_crl_policy_for(d->crl_policies, c->id, &pol);
        if (c->crl_number == 0)
            trigger = "activation";
        else if (dirty != 0 && now - dirty >= (int64_t)pol.batch_delay_ms)
            trigger = "revocation";
        else if (c->crl_next - now / 1000 <= (int64_t)pol.refresh_before_s)
            trigger = "refresh";
        if (trigger != NULL)
            (void)hsmcad_crl_sign_locked(d, c, trigger);
    }
    hsmca_ca_unlock(d->cas);
}

static const char *
crl_state(struct hsmcad *d, struct hsmca_ca *c, int64_t now_s)
{
    struct hsmca_crl_policy pol;
    uint64_t number = __atomic_load_n(&c->crl_number, __ATOMIC_ACQUIRE);
    int64_t next = __atomic_load_n(&c->crl_next, __ATOMIC_RELAXED);

    hsmca_crl_policy_for(d->crl_policies, c->id, &pol);
    if (number == 0)
        return "none";
    if (next <= now_s)
        return "expired";
    if (next - now_s <= (int64_t)pol.warn_before_s)
        return "due-soon";
    return "fresh";
}

json_t *
hsmcad_crl_status(struct hsmcad *d, unsigned *warnings)
{
    json_t *o = json_object();
    int64_t now_s = hsmcad_now_ms() / 1000;
    unsigned i, n = hsmca_ca_count(d->cas);

    *warnings = 0;
    for (i = 0; o != NULL && i < n; i++) {
        struct hsmca_ca *c = hsmca_ca_at(d->cas, i);
        const char *st;

        if (__atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE)) {
            json_object_set_new(o, c->id, json_pack("{s:s}", "status", "ca-revoked"));
            continue;
        }
        st = crl_state(d, c, now_s);
        if (strcmp(st, "fresh") != 0)
            (*warnings)++;
        json_object_set_new(o, c->id,
                            json_pack("{s:s, s:I, s:I, s:b}", "status", st, "number",
                                      (json_int_t)__atomic_load_n(&c->crl_number, __ATOMIC_ACQUIRE),
                                      "next_update",
                                      (json_int_t)__atomic_load_n(&c->crl_next, __ATOMIC_RELAXED),
                                      "key_reachable", c->key != NULL));
    }
    return o;
}

void
hsmcad_crl_metrics(struct hsmcad *d, struct hsmcad_buf *b)
{
    int64_t now_s = hsmcad_now_ms() / 1000;
    unsigned i, n = hsmca_ca_count(d->cas);
    char line[256];
    static const char head[] =
        "# HELP hsmca_crl_next_update_seconds nextUpdate of the CA's latest CRL (unix time; 0 "
        "none)\n# TYPE hsmca_crl_next_update_seconds gauge\n"
        "# HELP hsmca_crl_number the CRL Number of the CA's latest CRL\n"
        "# TYPE hsmca_crl_number gauge\n"
        "# HELP hsmca_crl_warning 1 when the CA's CRL is missing, expired or within the policy's "
        "warn_before_s of nextUpdate\n# TYPE hsmca_crl_warning gauge\n";

    hsmcad_buf_put(b, head, sizeof(head) - 1);
    for (i = 0; i < n; i++) {
        struct hsmca_ca *c = hsmca_ca_at(d->cas, i);
        int w, k;

        if (__atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE))
            continue;
        w = strcmp(crl_state(d, c, now_s), "fresh") != 0;
        k = snprintf(line, sizeof(line),
                     "hsmca_crl_next_update_seconds{ca=\"%s\"} %lld\n"
                     "hsmca_crl_number{ca=\"%s\"} %llu\nhsmca_crl_warning{ca=\"%s\"} %d\n",
                     c->id, (long long)__atomic_load_n(&c->crl_next, __ATOMIC_RELAXED), c->id,
                     (unsigned long long)__atomic_load_n(&c->crl_number, __ATOMIC_ACQUIRE), c->id,
                     w);
        if (k > 0 && (size_t)k < sizeof(line))
            hsmcad_buf_put(b, line, (size_t)k);
    }
}
