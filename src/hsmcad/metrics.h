/* SPDX-License-Identifier: Apache-2.0
 *
 * metrics.h -- Prometheus counters of the daemon with low-cardinality labels: the build
 * (hsmca_build_info), requests by route (the route pattern, never the raw path) and status, DACs
 * issued per CA and refused per CA and per code, latency histograms of requests, DAC signatures
 * and the audit writer's group commits, and a histogram of those commits' batch sizes.
 * Counters are updated with relaxed atomics from any worker thread; rendering reads them without a
 * lock.
 */
#ifndef HSMCAD_METRICS_H
#define HSMCAD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/audit.h"
#include "hsmca/error.h"

#define HSMCAD_METRICS_CAS_MAX 64 /* distinct CA labels; more are counted under "other" */

struct hsmcad_metrics;

/*
 * nroutes route names (borrowed, must outlive the metrics: static strings). Route index nroutes
 * counts requests that matched no route ("unmatched"). Caller frees with hsmcad_metrics_free().
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_metrics_new(const char *const *route_names, unsigned nroutes,
                                                  struct hsmcad_metrics **out);
void hsmcad_metrics_free(struct hsmcad_metrics *m);

/* One finished request: route index (0..nroutes), HTTP status, latency in microseconds. */
void hsmcad_metrics_request(struct hsmcad_metrics *m, unsigned route, int status,
                            uint64_t latency_us);
/* One DAC built and signed in us microseconds (hsmca_issue_result.sign_us). */
void hsmcad_metrics_sign(struct hsmcad_metrics *m, uint64_t us);
/* n DACs issued under ca (or refused, when refused is set). */
void hsmcad_metrics_dac(struct hsmcad_metrics *m, const char *ca, int refused, uint64_t n);
/* n DAC requests refused under ca with code: counted by CA and by code (hsmca_err_code). */
void hsmcad_metrics_dac_refused(struct hsmcad_metrics *m, const char *ca, enum hsmca_err code,
                                uint64_t n);

/* The store's checkpointer counters (hsmca_store_checkpointer_counts), as of now. */
void hsmcad_metrics_store(struct hsmcad_metrics *m, uint64_t checkpoints, uint64_t rewinds);

/*
 * The Prometheus text exposition (format 0.0.4). audit may be NULL (no audit series). ready is
 * exported as hsmca_ready. Caller frees the result with free(); NULL on NOMEM.
 */
char *hsmcad_metrics_render(struct hsmcad_metrics *m, const struct hsmca_audit_stats *audit,
                            int ready, size_t *len_out);

#endif
