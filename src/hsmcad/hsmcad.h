/* SPDX-License-Identifier: Apache-2.0
 *
 * hsmcad.h -- the daemon's shared state: config, role bindings, metrics, the PKCS#11 module and
 * tokens, the store handles and the core engines (audit, issuance, quorum). main.c builds it in
 * order and tears it down in reverse (PKCS11-NOTES.md); route handlers borrow it read-only except
 * through the engines' own thread-safe calls.
 */
#ifndef HSMCAD_HSMCAD_H
#define HSMCAD_HSMCAD_H

#include <pthread.h>
#include <stdint.h>

#include "hsmca/store.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"

#include "auth.h"
#include "config.h"
#include "metrics.h"

#define HSMCAD_CAS_MAX 64
#define HSMCAD_READERS_MAX 256

/* One CA the daemon knows (from the store at start). */
struct hsmcad_ca {
    char id[HSMCA_CA_ID_MAX + 1];
    char token_uri[HSMCA_URI_MAX + 1];
    struct hsmca_token *tok; /* opened, not logged in; NULL if the token is absent */
};

struct hsmcad {
    struct hsmcad_config cfg;
    struct hsmcad_roles *roles;
    struct hsmcad_metrics *metrics;
    struct hsmca_p11 *p11;
    struct hsmca_token *audit_tok;
    struct hsmca_key *audit_key;
    struct hsmca_store *store; /* the write handle: only the audit writer writes through it */
    struct hsmca_audit *audit;
    char *audit_cert_pem; /* for extracts; NULL if not configured */

    pthread_mutex_t cas_mu; /* guards cas[] additions (CA creation by quorum) */
    unsigned ncas;
    struct hsmcad_ca cas[HSMCAD_CAS_MAX];

    /* read-only store handles, one per worker thread (lazily opened) */
    pthread_key_t ro_key;
    pthread_mutex_t ro_mu;
    unsigned nro;
    struct hsmca_store *ro[HSMCAD_READERS_MAX];

    /* refusal limiter: audited refusals per client and minute */
    pthread_mutex_t lim_mu;
    struct hsmcad_limiter *lim;

    volatile int ready; /* last readiness verdict, for /metrics */
    int64_t started_ms;
};

/* The calling thread's read-only store handle (opened on first use). NULL if it cannot open. */
struct hsmca_store *hsmcad_ro(struct hsmcad *d);

/* The CA with id, or NULL. Borrowed; CAs are never removed while the daemon runs. */
struct hsmcad_ca *hsmcad_ca_find(struct hsmcad *d, const char *id);

/* Milliseconds since the epoch. */
int64_t hsmcad_now_ms(void);

/*
 * May another refusal by client (a principal name or "anon:<address>") be audited now? At most
 * cfg.refusals_per_minute per client and minute; beyond that refusals are only counted.
 */
int hsmcad_refusal_allowed(struct hsmcad *d, const char *client);

#endif
