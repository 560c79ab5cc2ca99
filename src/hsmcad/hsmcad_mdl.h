/* SPDX-License-Identifier: Apache-2.0
 *
 * hsmcad_mdl.h -- the daemon's mDL side (routes_mdl.c, docs/mdl.md): the registry of IACAs and
 * document signers loaded from the store, the DS signing windows the quorum opens, and the
 * routes: POST /v1/cas/{ds}/mso-signatures, GET /v1/mdl/cas[/{ca}[/crl]], POST
 * /v1/mdl/cas/{ds}/deactivation.
 */
#ifndef HSMCAD_HSMCAD_MDL_H
#define HSMCAD_HSMCAD_MDL_H

#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/mdl.h"
#include "hsmca/store_mdl.h"

struct hsmcad;
struct hsmcad_req;
struct hsmcad_mdl;

/* Load the mdl profiles (profiles_dir/mdl-{iaca,ds}.json; both absent: no mDL CA can be created)
 * and every mDL CA of the store. A profile that breaks a rule stops the daemon. */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_mdl_start(struct hsmcad *d);
/* Close every DS window (drain, free the key, log the token out) and free the registry. */
void hsmcad_mdl_stop(struct hsmcad *d);

/* The profile of type t, or NULL when none was loaded. */
const struct hsmca_mdl_profile *hsmcad_mdl_profile(struct hsmcad *d, enum hsmca_mdl_type t);

/* Quorum hooks (arg: the daemon). A new mDL CA; a DS's window opened on its token (logged in by
 * the quorum): until_ms, max signatures; a DS revoked (its window closes, none opens again). */
enum hsmca_err hsmcad_mdl_created(void *arg, const struct hsmca_mdl_ca_rec *rec);
enum hsmca_err hsmcad_mdl_activate(void *arg, const char *ca_id, int64_t until_ms, uint64_t max);
/* The same for a window shared through the store (quorum.h's mdl_activate_shared): opened under
 * window_id, or joined. */
enum hsmca_err hsmcad_mdl_activate_shared(void *arg, const char *ca_id, const char *window_id,
                                          int join, int64_t until_ms, uint64_t max);
void hsmcad_mdl_revoked(void *arg, const char *ca_id);
/* 1 when ca_id is an mDL CA of this daemon. */
int hsmcad_mdl_known(struct hsmcad *d, const char *ca_id);

void hsmcad_h_mso_sign(struct hsmcad_req *r);
void hsmcad_h_mdl_cas(struct hsmcad_req *r);
void hsmcad_h_mdl_ca(struct hsmcad_req *r);
void hsmcad_h_mdl_crl(struct hsmcad_req *r);
void hsmcad_h_mdl_deactivate(struct hsmcad_req *r);

#endif
