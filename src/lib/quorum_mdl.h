/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_mdl.h -- the hooks of the mDL operations of the quorum's table (quorum_mdl.c,
 * docs/mdl.md): mdl.create_iaca, mdl.create_ds, mdl.activate, mdl.revoke, mdl.crl_sign. Internal
 * to libhsmca.
 */
#ifndef HSMCA_QUORUM_MDL_H
#define HSMCA_QUORUM_MDL_H

#include "quorum_int.h"

enum hsmca_err hsmca_qmdl_check_create_iaca(struct hsmca_quorum *q, const struct hsmca_qepoch *e,
                                            json_t *params, struct labels *need);
enum hsmca_err hsmca_qmdl_check_create_ds(struct hsmca_quorum *q, const struct hsmca_qepoch *e,
                                          json_t *params, struct labels *need);
enum hsmca_err hsmca_qmdl_check_activate(struct hsmca_quorum *q, const struct hsmca_qepoch *e,
                                         json_t *params, struct labels *need);
enum hsmca_err hsmca_qmdl_check_revoke(struct hsmca_quorum *q, const struct hsmca_qepoch *e,
                                       json_t *params, struct labels *need);
enum hsmca_err hsmca_qmdl_check_crl_sign(struct hsmca_quorum *q, const struct hsmca_qepoch *e,
                                         json_t *params, struct labels *need);
/* the executor has the mdl profiles / the window hook */
int hsmca_qmdl_can_create(const struct hsmca_quorum_exec *ex);
int hsmca_qmdl_can_activate(const struct hsmca_quorum_exec *ex);
enum hsmca_err hsmca_qmdl_act_create_iaca(struct hsmca_quorum *q, struct exec_state *x,
                                          const struct hsmca_quorum_exec *ex);
enum hsmca_err hsmca_qmdl_act_create_ds(struct hsmca_quorum *q, struct exec_state *x,
                                        const struct hsmca_quorum_exec *ex);
enum hsmca_err hsmca_qmdl_after_activate(struct hsmca_quorum *q, struct exec_state *x,
                                         const struct hsmca_quorum_exec *ex);
enum hsmca_err hsmca_qmdl_act_revoke(struct hsmca_quorum *q, struct exec_state *x,
                                     const struct hsmca_quorum_exec *ex);
enum hsmca_err hsmca_qmdl_act_crl_sign(struct hsmca_quorum *q, struct exec_state *x,
                                       const struct hsmca_quorum_exec *ex);

#endif
