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
#include "hsmca/ca.h"
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

#define HSMCAD_READERS_MAX 256
#define HSMCAD_FAULT_MAX HSMCA_CA_FAULT_MAX /* a token fault's name: "removed", "missing", ... */

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
    struct hsmcad_mdl *mdl; /* mDL CAs and DS windows (routes_mdl.c, hsmcad_mdl.h) */

    /* the CA registry (ca.h): tokens, CAs, activation windows; its lock also guards
     * audit_fault */
    struct hsmca_ca_registry *cas;

    /* read-only store handles, one per worker thread (lazily opened) */
    pthread_key_t ro_key;
    pthread_mutex_t ro_mu;
    unsigned nro;
    struct hsmca_store *ro[HSMCAD_READERS_MAX];

    /* refusal limiter: audited refusals per client and minute */
    pthread_mutex_t lim_mu;
    struct hsmcad_limiter *lim;

    char audit_fault[HSMCAD_FAULT_MAX]; /* the audit token's fault (tokens.c); under the cas lock */

    volatile int ready; /* last readiness verdict, for /metrics */
    int64_t started_ms;
};

/* The calling thread's read-only store handle (opened on first use). NULL if it cannot open. */
struct hsmca_store *hsmcad_ro(struct hsmcad *d);

/* Configure d->cas (ca.c) from what d holds so far: the module, the audit log, the issuer and
 * the DAC profile, the daemon's hooks (CRLs at window start and end, read handles). cas.c. */
void hsmcad_cas_configure(struct hsmcad *d);
/* The quorum execution hooks of this daemon: the registry's, with the daemon's profiles and CRL
 * policies. */
void hsmcad_quorum_exec(struct hsmcad *d, struct hsmca_quorum_exec *ex);
/* This node's side of a ca.activate naming several nodes: a thread polling the store (nodes.c;
 * only with the config's node on PostgreSQL). */
void hsmcad_nodes_start(struct hsmcad *d);
void hsmcad_nodes_stop(void);
/* This node's liveness lock on a store connection of its own (nodes.c; only with the config's
 * node on PostgreSQL): taken before the daemon listens, kept by the keeper every second, let go
 * after the keeper stops. */
enum hsmca_err hsmcad_nodes_hold(struct hsmcad *d);
void hsmcad_nodes_keep(void);
void hsmcad_nodes_release(void);

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
/* The keeper's pass: sign the CRLs that are due of the CAs whose window is open. Takes the cas
 * lock. */
void hsmcad_crl_tick(struct hsmcad *d);
/* Sign c's CRL now with its open window's key (trigger: why). Under the cas lock. */
enum hsmca_err hsmcad_crl_sign_locked(struct hsmcad *d, struct hsmca_ca *c, const char *trigger);
/*
 * The CRL state of every CA that has a certificate, for /readyz: {"<ca>": {"number",
 * "next_update", "status": "fresh" | "due-soon" | "expired" | "none"}}; *warnings counts the CAs
 * not "fresh". Appends Prometheus lines to *metrics (may be NULL).
 */
json_t *hsmcad_crl_status(struct hsmcad *d, unsigned *warnings);
/* Append the Prometheus text of the CRL gauges to b (buf.h: a failure sets b->err). */
struct hsmcad_buf;
void hsmcad_crl_metrics(struct hsmcad *d, struct hsmcad_buf *b);

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
/* The quorum's profiles hook (arg: the daemon): the PAA and PAI profiles now, copied under the
 * profiles' lock; HSMCA_E_NOT_FOUND when the daemon has none. */
enum hsmca_err hsmcad_ca_profiles(void *arg, struct hsmca_profile *paa, struct hsmca_profile *pai);

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
