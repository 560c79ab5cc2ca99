/* SPDX-License-Identifier: Apache-2.0
 *
 * hsmcad.h -- the daemon's shared state: config, role bindings, metrics, the PKCS#11 module and
 * tokens, the store handles and the core engines (audit, issuance, quorum). main.c builds it in
 * order and tears it down in reverse (docs/pkcs11.md); route handlers borrow it read-only except
 * through the engines' own thread-safe calls.
 */
#ifndef HSMCAD_HSMCAD_H
#define HSMCAD_HSMCAD_H

#include <pthread.h>
#include <stdint.h>

#include "hsmca/issue.h"
#include "hsmca/profile.h"
#include "hsmca/quorum.h"
#include "hsmca/softhsm_guard.h"
#include "hsmca/store.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"

#include "auth.h"
#include "config.h"
#include "metrics.h"

#define HSMCAD_CAS_MAX 64
#define HSMCAD_READERS_MAX 256

#define HSMCAD_TOKENS_MAX 64

/* One opened token, by label: one handle per token for the whole daemon. */
struct hsmcad_tok {
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    struct hsmca_token *tok;
};

/* One CA the daemon knows (from the store at start, or created by a quorum operation). */
struct hsmcad_ca {
    char id[HSMCA_CA_ID_MAX + 1];
    char kind[4];
    char token_uri[HSMCA_URI_MAX + 1];
    char key_uri[HSMCA_URI_MAX + 1];
    struct hsmca_token *tok;    /* borrowed from the token table; NULL if the token is absent */
    struct hsmca_key *key;      /* held while an activation window is open */
    struct hsmca_issue_ca *ica; /* PAIs with a certificate: the issuance engine's CA */
};

struct hsmcad {
    struct hsmcad_config cfg;
    struct hsmca_guard guard; /* SoftHSM token files (softhsm_guard.h); guard_on when in use */
    int guard_on;
    char restored[HSMCA_QUORUM_TOKENS_MAX + 2][HSMCA_TOKEN_SERIAL_MAX + 1];
    unsigned nrestored;
    struct hsmcad_roles *roles;
    struct hsmcad_metrics *metrics;
    struct hsmca_p11 *p11;
    struct hsmca_token *audit_tok;
    struct hsmca_key *audit_key;
    struct hsmca_store *store; /* the write handle: only the audit writer writes through it */
    struct hsmca_store_checkpointer *ckpt; /* WAL checkpoints off the writer's thread */
    struct hsmca_audit *audit;
    char *audit_cert_pem; /* for extracts; NULL if not configured */

    struct hsmca_quorum *quorum;
    struct hsmca_issue_quotas *quotas;
    struct hsmca_issuer *issuer;
    struct hsmca_store *quorum_ro; /* the quorum module's read handle (it serialises itself) */
    struct hsmca_profile paa_profile, pai_profile, dac_profile;
    int have_profiles;

    pthread_mutex_t cas_mu; /* guards cas[] and toks[] additions, activation state */
    unsigned ntoks;
    struct hsmcad_tok toks[HSMCAD_TOKENS_MAX];
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

/*
 * The opened token with this label, opening it (by uri, or "pkcs11:token=<label>" when uri is
 * NULL) on first use. Borrowed until the daemon stops. NULL if absent. Takes cas_mu.
 */
struct hsmca_token *hsmcad_token(struct hsmcad *d, const char *label, const char *uri);

/* Register a CA (from the store or just created); opens its token. Takes cas_mu. */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_ca_add(struct hsmcad *d, const struct hsmca_ca_rec *ca);

/*
 * Give PAI rec its issuance engine CA (inactive), if it has a certificate and is not attached
 * yet. Reads the parent PAA's certificate through st. Takes cas_mu.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_ca_attach(struct hsmcad *d, struct hsmca_store *st,
                                                const struct hsmca_ca_rec *rec);
/* Close windows whose time or count ran out (log their tokens out). Takes cas_mu. */
void hsmcad_close_ended_windows(struct hsmcad *d);

/* The quorum execution hooks of this daemon (tokens by label, new CAs, activation windows). */
void hsmcad_quorum_exec(struct hsmcad *d, struct hsmca_quorum_exec *ex);
/* The activate hook for quorum execution (cas.c): opens the issuance window of a PAI whose
 * token the quorum just logged in. */
enum hsmca_err hsmcad_activate(void *arg, const char *ca_id, int64_t until_ms, uint64_t max_dacs);
/* Close c's activation window (drain, free the key, log its token out). Under cas_mu. */
/* Close c's window (why: "deactivation", "stop"; NULL: its count or time ran out) with a
 * window.end entry. */
void hsmcad_ca_deactivate_locked(struct hsmcad *d, struct hsmcad_ca *c, const char *why);
/* Close every window (at shutdown, before the engines go). */
void hsmcad_deactivate_all(struct hsmcad *d);

/* Milliseconds since the epoch. */
int64_t hsmcad_now_ms(void);

/*
 * May another refusal by client (a principal name or "anon:<address>") be audited now? At most
 * cfg.refusals_per_minute per client and minute; beyond that refusals are only counted.
 */
int hsmcad_refusal_allowed(struct hsmcad *d, const char *client);

#endif
