/* SPDX-License-Identifier: Apache-2.0
 *
 * routes.h -- the handlers of each API area (routes_<area>.c), gathered into the route table in
 * routes.c. Every handler reads its request through server.h and answers through it; none holds
 * PKI logic.
 */
#ifndef HSMCAD_ROUTES_H
#define HSMCAD_ROUTES_H

#include "server.h"

/* routes_health.c */
void hsmcad_h_healthz(struct hsmcad_req *r);
void hsmcad_h_readyz(struct hsmcad_req *r);
void hsmcad_h_metrics(struct hsmcad_req *r);

/* routes_cas.c */
void hsmcad_h_cas_list(struct hsmcad_req *r);
void hsmcad_h_ca_get(struct hsmcad_req *r);
void hsmcad_h_certificates(struct hsmcad_req *r);
void hsmcad_h_certificate_get(struct hsmcad_req *r);
void hsmcad_h_revocations(struct hsmcad_req *r);
void hsmcad_h_crl(struct hsmcad_req *r);
void hsmcad_h_report(struct hsmcad_req *r);

/* routes_dacs.c */
void hsmcad_h_dac(struct hsmcad_req *r);
void hsmcad_h_dac_batch(struct hsmcad_req *r);

/* routes_quorum.c */
void hsmcad_h_request_create(struct hsmcad_req *r);
void hsmcad_h_request_get(struct hsmcad_req *r);
void hsmcad_h_approval(struct hsmcad_req *r);
void hsmcad_h_approvers(struct hsmcad_req *r);
void hsmcad_h_request_cancel(struct hsmcad_req *r);
void hsmcad_h_deactivate(struct hsmcad_req *r);

/* routes_requests.c */
void hsmcad_h_request_list(struct hsmcad_req *r);

/* routes_admin.c */
void hsmcad_h_reload(struct hsmcad_req *r);

/* routes_audit.c */
void hsmcad_h_audit_extract(struct hsmcad_req *r);

/* routes_est.c (EST, RFC 7030) */
void hsmcad_h_est_cacerts(struct hsmcad_req *r);
void hsmcad_h_est_csrattrs(struct hsmcad_req *r);
void hsmcad_h_est_enroll(struct hsmcad_req *r);
void hsmcad_h_est_reenroll(struct hsmcad_req *r);

/* routes_bundle.c (lines and offline bundles) */
void hsmcad_h_line_register(struct hsmcad_req *r);
void hsmcad_h_bundle(struct hsmcad_req *r);
void hsmcad_h_bundle_receipt(struct hsmcad_req *r);

/* Readiness (routes_health.c), also used by /metrics: 1 ready, 0 not; checks filled if given. */
int hsmcad_readiness(struct hsmcad *d, json_t *checks);

#endif
