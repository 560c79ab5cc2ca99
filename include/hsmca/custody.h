/* SPDX-License-Identifier: Apache-2.0
 *
 * custody.h -- what the daemon writes and checks around its own life so that no crash costs the
 * quorum a CA key (docs/custody.md): the reconciliation of intents left open by a crash, the
 * daemon.start / daemon.stop / daemon.crash-detected entries, and the CA tokens whose PIN rotation
 * was interrupted (they answer to one of two known PINs until the next quorum operation on them).
 */
#ifndef HSMCA_CUSTODY_H
#define HSMCA_CUSTODY_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/audit.h"
#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/quorum.h"
#include "hsmca/store.h"

/*
 * The audit log's reconcile hook (struct hsmca_audit_config.reconcile, arg unused): an open
 * quorum.epoch intent is a rotation written ahead and not confirmed: the epoch stands and the
 * token keeps both PINs reachable (1, "quorum.epoch.recovered"). Any other open intent (a key
 * generation cut short, a rotation of the earlier protocol) did not complete (0, ".orphan").
 */
int hsmca_custody_reconcile(void *arg, uint64_t seq, const char *action);

/* The labels of CA tokens whose rotation is unconfirmed (an alternate PIN is recorded). */
struct hsmca_custody_doubt {
    size_t n;
    char label[HSMCA_QUORUM_TOKENS_MAX][HSMCA_TOKEN_LABEL_MAX + 1];
};
HSMCA_MUSTCHECK enum hsmca_err hsmca_custody_in_doubt(struct hsmca_store *ro,
                                                      struct hsmca_custody_doubt *out);

/*
 * This process's node name among the nodes of one store (1..HSMCA_CUSTODY_NODE_MAX of
 * [a-z0-9._-]; "" or NULL: the only node). With a name, whether the last run stopped cleanly and
 * which windows it left open are this node's own (meta keys daemon.running.NAME and
 * windows.open.NAME), so one node's start never reads another's running state as its crash, nor
 * closes another's window in the log; daemon.start and daemon.crash-detected name the node.
 * Call before hsmca_custody_started. HSMCA_E_INVALID_ARG on a bad name.
 */
#define HSMCA_CUSTODY_NODE_MAX 32
HSMCA_MUSTCHECK enum hsmca_err hsmca_custody_set_node(const char *name);

/*
 * At start, once the log is open: daemon.crash-detected when the last run ended without
 * daemon.stop (*crashed = 1), then daemon.start (version), then one custody.token-in-doubt entry
 * per token whose rotation was interrupted. ro reads; the entries go through a.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_custody_started(struct hsmca_audit *a, struct hsmca_store *ro,
                                                     const char *version, int *crashed);

/*
 * window.start (open = 1) and window.end (open = 0, with reason: count, time, deactivation, stop,
 * token-lost, revoked, restart) of a CA's issuance window. The CAs with an open window are kept in
 * the store (meta windows.open) in the same transaction, so that a window a crash left open is
 * closed in the log at the next start ("restart").
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_custody_window(struct hsmca_audit *a, const char *ca, int open,
                                                    const char *reason, uint64_t issued,
                                                    uint64_t max_dacs, int64_t until_ms);

/* custody.token-restored: the SoftHSM guard put back the token file of serial at start-up. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_custody_token_restored(struct hsmca_audit *a,
                                                            const char *serial);

/* At a clean stop, before the log closes: daemon.stop. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_custody_stopping(struct hsmca_audit *a);

#endif
