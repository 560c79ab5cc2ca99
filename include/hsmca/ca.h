/* SPDX-License-Identifier: Apache-2.0
 *
 * ca.h -- the CA registry: how a process opens a CA's token and key. One table of opened tokens
 * (by label, one handle per token for the whole process) and one of the CAs it knows (from the
 * store, or created by a quorum operation), each with its token, its key while an activation
 * window is open and its issuance engine CA (PAIs with a certificate). Every CA starts inactive
 * (no key, its token logged out); ca.activate by the quorum logs the PAI's token in and
 * hsmca_ca_activate opens the window with the key; the window is closed (signing drained, key
 * freed, token logged out, window.end audited) by ca.deactivate, when its time or count runs out,
 * when the CA is revoked, when its token lost its login, or at stop.
 * hsmcad and `hsmca ceremony` both use it, with hsmca_ca_quorum_exec as the quorum's execution
 * hooks.
 *
 * Threads: the registry's lock guards both tables and every window's state. CAs and tokens are
 * never removed before hsmca_ca_registry_free: a struct hsmca_ca pointer stays valid until then.
 */
#ifndef HSMCA_CA_H
#define HSMCA_CA_H

#include <stdint.h>

#include "hsmca/audit.h"
#include "hsmca/crl.h"
#include "hsmca/error.h"
#include "hsmca/issue.h"
#include "hsmca/limits.h"
#include "hsmca/profile.h"
#include "hsmca/quorum.h"
#include "hsmca/store.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"

#define HSMCA_CA_REG_CAS_MAX 64    /* CAs in one registry */
#define HSMCA_CA_REG_TOKENS_MAX 64 /* opened tokens in one registry */
#define HSMCA_CA_FAULT_MAX 32      /* a token fault's name: "removed", "missing", ... */

/* One CA of the registry. */
struct hsmca_ca {
    unsigned index; /* its place in the registry: 0 .. hsmca_ca_count() - 1 */
    char id[HSMCA_CA_ID_MAX + 1];
    char kind[4];
    char token_uri[HSMCA_URI_MAX + 1];
    char key_uri[HSMCA_URI_MAX + 1];
    struct hsmca_token *tok;    /* borrowed from the token table; NULL if the token is absent */
    struct hsmca_key *key;      /* held while an activation window is open */
    struct hsmca_issue_ca *ica; /* PAIs with a certificate: the issuance engine's CA */
    /* the caller's bookkeeping, which the registry only keeps: its token's fault ("" = none;
     * under the lock), and its CRL state (atomics) */
    char fault[HSMCA_CA_FAULT_MAX];
    int revoked;                /* the CA is revoked: no window opens, nothing is signed */
    int64_t crl_dirty_ms;       /* the first revocation since the last CRL (0 = none) */
    uint64_t crl_number;        /* the latest stored CRL's number (0 = none) */
    int64_t crl_this, crl_next; /* its thisUpdate / nextUpdate (seconds) */
};

struct hsmca_ca_registry;

/* What the registry works with. Every pointer is borrowed and must outlive the registry's use of
 * it; hooks may be NULL. */
struct hsmca_ca_registry_config {
    struct hsmca_p11 *p11;     /* tokens are opened through it */
    struct hsmca_audit *audit; /* window.start / window.end entries; NULL = none written */
    /* the issuance engine and the DAC profile its CAs use; NULL = no CA issues */
    struct hsmca_issuer *issuer;
    const struct hsmca_profile *dac_profile;
    const char *log_module; /* the module name of the registry's log lines; NULL = "hsmca" */
    void *arg;              /* the hooks' first argument */
    /* a read handle on the store (the parent PAA of a new CA is read through it) */
    struct hsmca_store *(*reader)(void *arg);
    /* under the lock: c's window just opened / is about to close (its key still held) */
    void (*window_opened)(void *arg, struct hsmca_ca *c);
    void (*window_closing)(void *arg, struct hsmca_ca *c);
    /* a quorum operation created ca (already registered) */
    enum hsmca_err (*ca_created)(void *arg, const struct hsmca_ca_rec *ca);
};

/* An empty registry (configure it before use). Returns HSMCA_E_NOMEM. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_registry_new(struct hsmca_ca_registry **out);
/* Set (copy) its configuration. Only at start-up, before other threads use the registry; may be
 * called again as the pieces come up (module, then audit log, then issuer). */
void hsmca_ca_registry_configure(struct hsmca_ca_registry *reg,
                                 const struct hsmca_ca_registry_config *cfg);
/* Close every window (why, e.g. "stop") and free the engine CAs: before hsmca_issuer_free. */
void hsmca_ca_registry_stop(struct hsmca_ca_registry *reg, const char *why);
/* Stop, then log out and free every token. NULL is a no-op (HSMCA_OK). Returns the first token
 * error. */
enum hsmca_err hsmca_ca_registry_free(struct hsmca_ca_registry *reg);

/* The registry's lock (for the fields the comments above say are under it). */
void hsmca_ca_lock(struct hsmca_ca_registry *reg);
void hsmca_ca_unlock(struct hsmca_ca_registry *reg);

/* How many CAs, and the CA at index i (< count), without the lock. */
unsigned hsmca_ca_count(struct hsmca_ca_registry *reg);
struct hsmca_ca *hsmca_ca_at(struct hsmca_ca_registry *reg, unsigned i);
/* The CA with id, or NULL. */
struct hsmca_ca *hsmca_ca_find(struct hsmca_ca_registry *reg, const char *id);

/*
 * The opened token with this label, opening it (by uri, or "pkcs11:token=<label>" when uri is
 * NULL) on first use. NULL if absent (logged unless quiet). Takes the lock.
 */
struct hsmca_token *hsmca_ca_token(struct hsmca_ca_registry *reg, const char *label,
                                   const char *uri, int quiet);
/* Call fn for each opened token (under the lock; fn must not call back into the registry). */
void hsmca_ca_tokens_each(struct hsmca_ca_registry *reg,
                          void (*fn)(void *arg, const char *label, struct hsmca_token *tok),
                          void *arg);

/* Register a CA (from the store or just created); opens its token. Known already: HSMCA_OK.
 * Returns HSMCA_E_TOO_LARGE when the registry is full. Takes the lock. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_add(struct hsmca_ca_registry *reg,
                                            const struct hsmca_ca_rec *rec);
/* Register every CA of the store (read through st). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_load(struct hsmca_ca_registry *reg, struct hsmca_store *st);
/*
 * Give PAI rec its issuance engine CA (inactive), if it has a certificate, the registry has an
 * issuer and it is not attached yet (else HSMCA_OK, nothing done). Reads the parent PAA's
 * certificate through st. Returns HSMCA_E_MATTER_PAA_NOT_FOUND and the engine's codes (logged).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_attach(struct hsmca_ca_registry *reg,
                                               struct hsmca_store *st,
                                               const struct hsmca_ca_rec *rec);
/* Attach every registered CA (read from st); a CA that cannot issue (or be read) is logged, the
 * others go on. HSMCA_OK. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_attach_all(struct hsmca_ca_registry *reg,
                                                   struct hsmca_store *st);

/*
 * Open the issuance window of PAI ca_id, whose token the quorum just logged in: find its key,
 * activate its engine CA (until_ms, max_dacs), audit window.start, call window_opened. Returns
 * HSMCA_E_HTTP_CA_NOT_FOUND, HSMCA_E_ISSUE_CA_INACTIVE (no engine CA or no token),
 * HSMCA_E_ISSUE_CA_ACTIVE, HSMCA_E_REVOKE_CA_REVOKED, token and engine codes. Takes the lock.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_activate(struct hsmca_ca_registry *reg, const char *ca_id,
                                                 int64_t until_ms, uint64_t max_dacs);
/* As hsmca_ca_activate, for a window shared by the nodes of one store: window_id opened (or with
 * join, joined: its end and count are the store's), hsmca_issue_ca_activate_shared. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_activate_shared(struct hsmca_ca_registry *reg,
                                                        const char *ca_id, const char *window_id,
                                                        int join, int64_t until_ms,
                                                        uint64_t max_dacs);
/*
 * Close c's window, under the lock: drain signing, audit window.end with reason why
 * ("deactivation", "stop", "revoked", "token-lost"; NULL: "count" or "time", whichever ran out),
 * call window_closing (unless c is revoked), free the key, log its token out. No window: only
 * drains.
 */
void hsmca_ca_deactivate_locked(struct hsmca_ca_registry *reg, struct hsmca_ca *c, const char *why);
/* The same for ca_id, taking the lock. Returns HSMCA_E_NOT_FOUND for an unknown CA. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_ca_deactivate(struct hsmca_ca_registry *reg, const char *ca_id,
                                                   const char *why);
/* Close the windows whose time or count ran out (and whose signing is done). Takes the lock. */
void hsmca_ca_close_ended(struct hsmca_ca_registry *reg, int64_t now_ms);
/* ca_id was revoked: it never opens a window again; an open one closes ("revoked"). */
void hsmca_ca_revoked(struct hsmca_ca_registry *reg, const char *ca_id);

/*
 * The quorum's execution hooks over this registry (tokens by label, new CAs registered and
 * attached then ca_created, activation windows, revocation, CRL state). The caller sets the
 * profiles and CRL policies of *ex.
 */
/* The quorum's token_init hook for token.enroll (arg: the registry): initialise the module's free
 * token as label (random SO PIN, wiped) with user_pin and open it in the registry. Online only:
 * hsmcad sets it (cas.c); `hsmca ceremony` does not. */
enum hsmca_err hsmca_ca_token_init(void *arg, const char *label,
                                   const struct hsmca_secret *user_pin);
void hsmca_ca_quorum_exec(struct hsmca_ca_registry *reg, struct hsmca_quorum_exec *ex);

#endif
