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

#include <jansson.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/issue.h"
#include "hsmca/profile.h"
#include "hsmca/quorum.h"
#include "hsmca/softhsm_guard.h"
#include "hsmca/store.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"

#include "auth.h"
#include "bounds.h"
#include "config.h"
#include "metrics.h"

#define HSMCAD_CAS_MAX 64
#define HSMCAD_READERS_MAX 256

#define HSMCAD_TOKENS_MAX 64
#define HSMCAD_FAULT_MAX 32 /* a token fault's name: "removed", "missing", ... */

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
    struct hsmca_token *tok;      /* borrowed from the token table; NULL if the token is absent */
    struct hsmca_key *key;        /* held while an activation window is open */
    struct hsmca_issue_ca *ica;   /* PAIs with a certificate: the issuance engine's CA */
    char fault[HSMCAD_FAULT_MAX]; /* its token's fault (tokens.c); "" = none; under cas_mu */
    /* revocation (crls.c; atomics: read by handlers, written under cas_mu or by the writer) */
    int revoked;                /* the CA is revoked: no window opens, nothing is signed */
    int64_t crl_dirty_ms;       /* the first revocation since the last CRL (0 = none) */
    uint64_t crl_number;        /* the latest stored CRL's number (0 = none) */
    int64_t crl_this, crl_next; /* its thisUpdate / nextUpdate (seconds) */
};

struct hsmcad {
    struct hsmcad_config cfg;
    char config_path[HSMCA_PATH_MAX + 1]; /* --config, read again by a reload (reload.c) */
    char port_file[HSMCA_PATH_MAX + 1];   /* --port-file, or "" */
    pthread_mutex_t reload_mu;            /* one reload at a time */
    pthread_mutex_t roles_mu;             /* roles: swapped by a reload, referenced under it */
    pthread_rwlock_t prof_lock;           /* the profiles below: written by a reload only */
    struct hsmca_guard guard; /* SoftHSM token files (softhsm_guard.h); guard_on when in use */
    int guard_on;
    char restored[HSMCA_QUORUM_TOKENS_MAX + 2][HSMCA_TOKEN_SERIAL_MAX + 1];
    unsigned nrestored;
    struct hsmcad_roles *roles; /* the current table: hsmcad_roles_get / hsmcad_roles_current */
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
    struct hsmcad_bounds bounds; /* caps on time bounds (policies/bounds.json) */
    struct hsmca_issuer *issuer;
    struct hsmca_store *quorum_ro; /* the quorum module's read handle (it serialises itself) */
    struct hsmca_crl_policies *crl_policies; /* policies/crl.json (or the built-in defaults) */
    struct hsmcad_publish *publish;          /* the plain-HTTP CRL/CA listener, or NULL */
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

    char audit_fault[HSMCAD_FAULT_MAX]; /* the audit token's fault (tokens.c); under cas_mu */

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
/* The same, without a log line when the token is absent (the re-probe of tokens.c). */
struct hsmca_token *hsmcad_token_quiet(struct hsmcad *d, const char *label, const char *uri);

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

/*
 * Token faults (tokens.c): probe every token, heal what came back, close a window whose token
 * lost its login, audit each fault and recovery. at_start marks the entries of the first pass.
 */
void hsmcad_tokens_check(struct hsmcad *d, int at_start);
/* The audit writer's heal hook (struct hsmca_audit_config.heal): a usable audit key again. */
enum hsmca_err hsmcad_audit_heal(void *arg, struct hsmca_key **key);
/* What an operator does about a fault ("removed", "missing", ...), for /readyz and the log. */
const char *hsmcad_token_fault_action(const char *fault);

/* ---- CRLs (crls.c, docs/revocation.md) ---- */

/* Load each CA's latest CRL state and revocation from the store (at start). */
void hsmcad_crl_load(struct hsmcad *d);
/* A certificate of ca was revoked: its CRL is re-signed within the policy's batch delay (as soon
 * as its key is reachable). */
void hsmcad_crl_dirty(struct hsmcad *d, const char *ca);
/* The keeper's pass: sign the CRLs that are due of the CAs whose window is open. Takes cas_mu. */
void hsmcad_crl_tick(struct hsmcad *d);
/* Sign c's CRL now with its open window's key (trigger: why). Under cas_mu. */
enum hsmca_err hsmcad_crl_sign_locked(struct hsmcad *d, struct hsmcad_ca *c, const char *trigger);
/*
 * The CRL state of every CA that has a certificate, for /readyz: {"<ca>": {"number",
 * "next_update", "status": "fresh" | "due-soon" | "expired" | "none"}}; *warnings counts the CAs
 * not "fresh". Appends Prometheus lines to *metrics (may be NULL).
 */
json_t *hsmcad_crl_status(struct hsmcad *d, unsigned *warnings);
/* Prometheus text of the CRL gauges (malloc'd, NULL on failure). */
char *hsmcad_crl_metrics(struct hsmcad *d);

/* ---- the plain-HTTP publication listener (publish.c) ---- */
struct hsmcad_publish;
/* Start it on host:port (cfg.publish_host:publish_port; never TLS, GET/HEAD of /crl/{ca}.crl,
 * /ca/{ca}.crt|.pem only); *port_out the bound port. */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_publish_start(struct hsmcad *d, const char *host,
                                                    unsigned port, struct hsmcad_publish **out,
                                                    unsigned *port_out);
void hsmcad_publish_stop(struct hsmcad_publish *p);

/* ---- reload (reload.c, docs/reload.md) ---- */

/* A reference to the current role bindings (release with hsmcad_roles_free). */
struct hsmcad_roles *hsmcad_roles_get(struct hsmcad *d);
/* The current table's address, for comparison only (no reference). */
const struct hsmcad_roles *hsmcad_roles_current(struct hsmcad *d);

/*
 * Read the config file again and, with it, the role bindings, quotas, profiles and the plain-HTTP
 * listener's address; apply them all, or, if any file is bad or the new listener cannot bind,
 * none (the old settings stay). Open windows, connections and requests are untouched. Keys that
 * only a restart applies are named in the report. Writes the config.reload (or
 * config.reload.refuse) audit entry as actor/role (*receipt its receipt, may be NULL), logs the
 * outcome. On HSMCA_OK *report (may be NULL) is what was applied; on a refusal why names the file
 * and the reason, and *cause the underlying code. Returns HSMCA_E_RELOAD_REFUSED or the audit
 * log's error.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_reload(struct hsmcad *d, const char *trigger,
                                             const char *actor, const char *role, json_t **report,
                                             enum hsmca_err *cause, char *why, size_t why_len,
                                             struct hsmca_audit_receipt *receipt);

/*
 * Check before asking (precheck.c): 1 with the reason in why when request op with params cannot
 * run as the daemon sees it now (its token absent, a PAI's VID outside its PAA's, a PID the PAI
 * profile forbids or requires), else 0.
 */
int hsmcad_request_precheck(struct hsmcad *d, const char *op, json_t *params, char *why, size_t n);

/* Milliseconds since the epoch. */
int64_t hsmcad_now_ms(void);

/*
 * May another refusal (code) by client (a principal name or "anon:<address>") be audited now? At
 * most cfg.refusals_per_minute per client and minute, and cfg.refusal_entries_per_second for all
 * clients together; beyond that refusals are only counted, by code, until the next summary.
 */
int hsmcad_refusal_allowed(struct hsmcad *d, const char *client, enum hsmca_err code);
void hsmcad_limiter_free(struct hsmcad_limiter *l);

/* Write one http.refuse.summary entry for the refusals only counted since the last one (none if
 * there were none): how many, from how many clients, by code. Called each second by main.c; it
 * writes once the minute of the first counted refusal has ended, or at once with force (at stop).
 */
void hsmcad_flush_refusals(struct hsmcad *d, int force);

#endif
