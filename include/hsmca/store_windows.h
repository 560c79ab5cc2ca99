/* SPDX-License-Identifier: Apache-2.0
 *
 * store_windows.h -- activation windows in the store, so that the nodes sharing one store share
 * a window's count (schema: migration 9, "windows"). A window is opened by a quorum's
 * ca.activate (its id is that request's id); every node activated under it takes DACs from the
 * same count. A node reserves the count in small blocks with one atomic UPDATE that never takes
 * used beyond max_dacs (the table's CHECK says so too), signs from its block in memory, and gives
 * back what it did not use when its window closes; a block of a node that died is lost, never
 * issued twice. Each certificate row names the window it was issued under (certificates.window_id).
 * These functions run outside any transaction (each statement is its own).
 */
#ifndef HSMCA_STORE_WINDOWS_H
#define HSMCA_STORE_WINDOWS_H

#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/store.h"
#include "hsmca/store_certs.h"

struct hsmca_window_rec {
    char id[HSMCA_WINDOW_ID_MAX + 1];
    char ca[HSMCA_CA_ID_MAX + 1];
    int64_t until_ms;
    uint64_t max_dacs, used;
    int64_t opened_ms;
};

/* Open window w (used 0); a window with that id already there is kept as it is (HSMCA_OK when it
 * is for the same CA, HSMCA_E_STORE_CONSTRAINT otherwise). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_window_open(struct hsmca_store *st,
                                                       const struct hsmca_window_rec *w);

/* Read window id into *out. HSMCA_E_NOT_FOUND when there is none. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_window_get(struct hsmca_store *st, const char *id,
                                                      struct hsmca_window_rec *out);

/*
 * Reserve up to want (>= 1) of window id's count at time now_ms: *got is what was taken (0 when
 * the window is used up: HSMCA_E_ISSUE_WINDOW_EXHAUSTED; or over: HSMCA_E_ISSUE_WINDOW_EXPIRED),
 * *used_out the count reserved by all nodes after it. Each try is one UPDATE ... WHERE used + n
 * <= max_dacs, so concurrent nodes never take more than the window holds together.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_window_reserve(struct hsmca_store *st, const char *id,
                                                          uint64_t want, int64_t now_ms,
                                                          uint64_t *got, uint64_t *used_out);

/* Give n reserved but unused back to window id (a closing window's rest of its block). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_window_release(struct hsmca_store *st, const char *id,
                                                          uint64_t n);

/* The number of certificates stored under window id (tests and reports). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_window_issued(struct hsmca_store *st, const char *id,
                                                         uint64_t *out);

/*
 * mDL signing windows (a DS's MSO signatures, "mdl_windows", migration 11): the same, with the
 * window's CA an mDL DS and max_dacs its max_signatures. Opened by a quorum's mdl.activate (its
 * id is that request's id) and joined by another node's mdl.activate {"ca", "window"}.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_window_open(struct hsmca_store *st,
                                                           const struct hsmca_window_rec *w);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_window_get(struct hsmca_store *st, const char *id,
                                                          struct hsmca_window_rec *out);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_window_reserve(struct hsmca_store *st,
                                                              const char *id, uint64_t want,
                                                              int64_t now_ms, uint64_t *got,
                                                              uint64_t *used_out);
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_window_release(struct hsmca_store *st,
                                                              const char *id, uint64_t n);

/* End every open mDL window of DS ca at now_ms (it was revoked): no node reserves from them
 * again. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_store_mdl_windows_end(struct hsmca_store *st, const char *ca,
                                                           int64_t now_ms);

#endif /* HSMCA_STORE_WINDOWS_H */
