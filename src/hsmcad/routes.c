/* SPDX-License-Identifier: Apache-2.0
 *
 * routes.c -- the route table of REST API v1 (docs/design.md): method, path pattern, audit
 * action (also the metrics label), the roles allowed, whether an operator must be bound to the
 * {ca}, body rules and the handler. docs/api/openapi.json describes exactly these routes; the
 * test tests/integration/openapi.sh compares the two both ways (`hsmcad --list-routes`).
 */
#include "routes.h"

#include <stddef.h>

#include "auth.h"
#include "hsmcad_mdl.h"
#include "server.h"

#define ANY HSMCAD_ROLE_ANY
#define ADMIN HSMCAD_ROLE_ADMIN
#define APPROVER HSMCAD_ROLE_APPROVER
#define OPERATOR HSMCAD_ROLE_OPERATOR
#define AUDITOR HSMCAD_ROLE_AUDITOR

static const char *const json_only[] = {"application/json", NULL};
static const char *const csr_types[] = {"application/pkcs10", "application/json", NULL};
static const char *const est_types[] = {"application/pkcs10", NULL};
static const char *const mso_types[] = {"application/cbor", "application/json", NULL};

const struct hsmcad_route hsmcad_routes[] = {
    {"GET", "/healthz", "health.live", ANY, 0, HSMCAD_ROUTE_NO_AUDIT, NULL, hsmcad_h_healthz},
    {"GET", "/readyz", "health.ready", ANY, 0, HSMCAD_ROUTE_NO_AUDIT, NULL, hsmcad_h_readyz},
    {"GET", "/metrics", "metrics", ANY, 0, HSMCAD_ROUTE_NO_AUDIT, NULL, hsmcad_h_metrics},
    {"GET", "/v1/cas", "cas.list", ANY, 0, 0, NULL, hsmcad_h_cas_list},
    {"GET", "/v1/cas/{ca}", "cas.get", ANY, 0, 0, NULL, hsmcad_h_ca_get},
    {"POST", "/v1/cas/{ca}/dacs", "dac.issue", OPERATOR, 1, HSMCAD_ROUTE_BODY, csr_types,
     hsmcad_h_dac},
    {"POST", "/v1/cas/{ca}/dacs/batch", "dac.batch", OPERATOR, 1,
     HSMCAD_ROUTE_BODY | HSMCAD_ROUTE_BIG_BODY, json_only, hsmcad_h_dac_batch},
    {"GET", "/v1/cas/{ca}/certificates", "certs.list", ADMIN | AUDITOR, 0, 0, NULL,
     hsmcad_h_certificates},
    {"GET", "/v1/cas/{ca}/certificates/{serial}", "cert.get", ADMIN | AUDITOR | OPERATOR, 1, 0,
     NULL, hsmcad_h_certificate_get},
    {"POST", "/v1/cas/{ca}/revocations", "cert.revoke", ADMIN, 0, HSMCAD_ROUTE_BODY, json_only,
     hsmcad_h_revocations},
    {"POST", "/v1/cas/{ca}/deactivation", "ca.deactivate", ADMIN, 0, 0, NULL, hsmcad_h_deactivate},
    {"GET", "/v1/cas/{ca}/crl", "crl.get", ANY, 0, 0, NULL, hsmcad_h_crl},
    {"GET", "/v1/cas/{ca}/report", "report.make", ADMIN | AUDITOR, 0, 0, NULL, hsmcad_h_report},
    {"POST", "/v1/requests", "quorum.request", ADMIN, 0, HSMCAD_ROUTE_BODY, json_only,
     hsmcad_h_request_create},
    {"GET", "/v1/requests", "quorum.list", ADMIN | APPROVER, 0, 0, NULL, hsmcad_h_request_list},
    {"GET", "/v1/requests/{id}", "quorum.envelope", ADMIN | APPROVER, 0, 0, NULL,
     hsmcad_h_request_get},
    {"POST", "/v1/requests/{id}/approvals", "quorum.approve", APPROVER, 0, HSMCAD_ROUTE_BODY,
     json_only, hsmcad_h_approval},
    {"POST", "/v1/requests/{id}/cancellation", "quorum.cancel", ADMIN, 0, HSMCAD_ROUTE_BODY,
     json_only, hsmcad_h_request_cancel},
    {"GET", "/v1/audit/extract", "audit.extract", AUDITOR, 0, 0, NULL, hsmcad_h_audit_extract},
    {"GET", "/v1/approvers", "approvers.list", ADMIN | AUDITOR, 0, 0, NULL, hsmcad_h_approvers},
    {"POST", "/v1/admin/reload", "config.reload", ADMIN, 0, 0, NULL, hsmcad_h_reload},
    /* the factory floor (routes_est.c, routes_bundle.c; docs/factory.md) */
    {"GET", "/.well-known/est/{ca}/cacerts", "est.cacerts", ANY, 1, 0, NULL, hsmcad_h_est_cacerts},
    {"GET", "/.well-known/est/{ca}/csrattrs", "est.csrattrs", ANY, 1, 0, NULL,
     hsmcad_h_est_csrattrs},
    {"POST", "/.well-known/est/{ca}/simpleenroll", "est.enroll", OPERATOR, 1, HSMCAD_ROUTE_BODY,
     est_types, hsmcad_h_est_enroll},
    {"POST", "/.well-known/est/{ca}/simplereenroll", "est.reenroll", OPERATOR, 1, HSMCAD_ROUTE_BODY,
     est_types, hsmcad_h_est_reenroll},
    {"POST", "/v1/lines", "line.register", ADMIN, 0, HSMCAD_ROUTE_BODY, json_only,
     hsmcad_h_line_register},
    {"POST", "/v1/cas/{ca}/bundles", "bundle.seal", OPERATOR, 1, HSMCAD_ROUTE_BODY, json_only,
     hsmcad_h_bundle},
    {"POST", "/v1/cas/{ca}/bundles/{id}/receipt", "bundle.receipt", OPERATOR, 1, HSMCAD_ROUTE_BODY,
     json_only, hsmcad_h_bundle_receipt},
    /* mDL, ISO/IEC 18013-5 (routes_mdl.c, docs/mdl.md) */
    {"POST", "/v1/cas/{ca}/mso-signatures", "mso.sign", OPERATOR, 1, HSMCAD_ROUTE_BODY, mso_types,
     hsmcad_h_mso_sign},
    {"GET", "/v1/mdl/cas", "mdl.cas.list", ANY, 0, 0, NULL, hsmcad_h_mdl_cas},
    {"GET", "/v1/mdl/cas/{ca}", "mdl.cas.get", ANY, 0, 0, NULL, hsmcad_h_mdl_ca},
    {"GET", "/v1/mdl/cas/{ca}/crl", "mdl.crl.get", ANY, 0, 0, NULL, hsmcad_h_mdl_crl},
    {"POST", "/v1/mdl/cas/{ca}/deactivation", "mdl.deactivate", ADMIN, 0, 0, NULL,
     hsmcad_h_mdl_deactivate},
};

const unsigned hsmcad_nroutes = sizeof(hsmcad_routes) / sizeof(hsmcad_routes[0]);
