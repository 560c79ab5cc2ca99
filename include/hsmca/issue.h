/* SPDX-License-Identifier: Apache-2.0
 *
 * issue.h -- the DAC issuance engine: one PAI ready to issue (activation window by time and by
 * count, per-PAI quotas), idempotent requests by (CA, request id), dry runs, batches, and the
 * audit entry that goes with every issuance, replay and refusal. The library never sees HTTP: the
 * daemon turns results into responses. A DAC leaves here only after its certificate row and its
 * audit entry are durable (both are written by the audit writer in one transaction).
 *
 * Threads: hsmca_issue_submit and hsmca_issue_batch_submit may be called from many threads at
 * once, on one or many CAs. Nothing on the issuing path takes a lock shared between CAs except
 * the token's own (refusals take the refusal limiter's lock). Activation and deactivation are
 * control-path calls, serialised per CA by the caller.
 */
#ifndef HSMCA_ISSUE_H
#define HSMCA_ISSUE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/matter.h"
#include "hsmca/profile.h"
#include "hsmca/sizes.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"

/* Most items in one batch. */
#define HSMCA_ISSUE_BATCH_MAX 1000
/* policies/quotas.json, bytes. */
#define HSMCA_ISSUE_QUOTAS_MAX 65536
/* Full "dac.refuse" entries per principal per minute before refusals are only counted. */
#define HSMCA_ISSUE_REFUSAL_BURST 20

/* ---- quotas (policies/quotas.json) ---- */

/*
 * {"default": {"per_minute": N, "per_day": N}, "<ca id>": {...}, ...}: every member optional, N
 * in 0..10^9 (0 = no limit), no other keys, CA ids as in the store ([a-z0-9-], <= HSMCA_CA_ID_MAX).
 * A CA without its own entry gets "default"; without "default", no limit. per_minute bounds what
 * was issued in the last 60 s (buckets of 1 s), per_day in the last 24 h (buckets of 1 min),
 * counted in the store for every node (store_quota.h).
 */
struct hsmca_issue_quotas;

/* Parse json[0..len) (len <= HSMCA_ISSUE_QUOTAS_MAX). Caller frees with hsmca_issue_quotas_free.
 * Returns HSMCA_E_ISSUE_QUOTAS_INVALID (the reason is logged), HSMCA_E_TOO_LARGE, HSMCA_E_NOMEM. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issue_quotas_parse(const char *json, size_t len,
                                                        struct hsmca_issue_quotas **out);
/* Read and parse the file at path (as above, plus HSMCA_E_IO). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issue_quotas_load(const char *path,
                                                       struct hsmca_issue_quotas **out);
void hsmca_issue_quotas_free(struct hsmca_issue_quotas *q);
/* The limits for ca_id (0 = unlimited). */
void hsmca_issue_quotas_get(const struct hsmca_issue_quotas *q, const char *ca_id,
                            uint64_t *per_minute, uint64_t *per_day);

/*
 * A reload's new quotas (taken over, NULL = none): CAs made afterwards take them, and
 * hsmca_issue_ca_quotas_update gives them to an existing CA, window open or not (its counts of
 * the last minute and day stay). The caller serialises these with hsmca_issue_ca_new.
 */
struct hsmca_issuer;
struct hsmca_issue_ca;
void hsmca_issuer_take_quotas(struct hsmca_issuer *iss, struct hsmca_issue_quotas *q);
void hsmca_issue_ca_quotas_update(struct hsmca_issue_ca *ca);
/* A reload's DAC profile (copied; a DAC profile or nothing changes): the CA's next activation
 * window issues under it; a window already open keeps the profile it was opened with. */
void hsmca_issue_ca_profile_update(struct hsmca_issue_ca *ca, const struct hsmca_profile *p);

/* ---- the engine ---- */

struct hsmca_issuer;   /* shared by all CAs: audit handle, read-only store handles, limiter */
struct hsmca_issue_ca; /* one PAI */

struct hsmca_issuer_config {
    struct hsmca_audit *audit;               /* borrowed; must outlive the issuer */
    const char *store_path;                  /* the audit's database, opened read-only here */
    const struct hsmca_issue_quotas *quotas; /* copied; NULL = no quotas */
    unsigned threads;       /* helper threads for batches; 0 = online CPUs - 1 (may be 0) */
    unsigned readers;       /* read-only store handles for request id lookups; 0 = online CPUs */
    unsigned refusal_burst; /* 0 = HSMCA_ISSUE_REFUSAL_BURST */
    /* refuse new DACs (HSMCA_E_AUDIT_UNSIGNED_BACKLOG; replays still answer) while checkpoints
     * fail and more audit entries than this lie beyond the last signed one; 0 = no bound */
    uint64_t max_unsigned_entries;
};

/*
 * Make the engine. On HSMCA_OK the caller frees *out with hsmca_issuer_free (after every CA made
 * from it is freed, and before hsmca_audit_close). Returns HSMCA_E_STORE_OPEN, HSMCA_E_INVALID_ARG,
 * HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issuer_new(const struct hsmca_issuer_config *cfg,
                                                struct hsmca_issuer **out);
/* Writes the pending refusal summaries (see hsmca_issuer_flush_refusals), stops the helpers and
 * frees. NULL is a no-op. */
void hsmca_issuer_free(struct hsmca_issuer *iss);

/*
 * Write one "dac.refuse.summary" entry (detail {"principal", "suppressed", "since_ms"}) for every
 * principal whose refusals were only counted during a minute that has ended. The daemon calls this
 * from a timer (every few seconds); it never blocks on the store.
 */
void hsmca_issuer_flush_refusals(struct hsmca_issuer *iss);

/*
 * One PAI. rec is its store record (copied; kind "pai", cert_der its certificate); paa the PAA
 * that issued it (borrowed for the call); dac_profile the DAC profile (copied). The CA starts
 * inactive, with no key. Quotas come from the issuer's configuration. Per-day quota counters are
 * seeded from the store (DACs issued in the last 24 h). On HSMCA_OK the caller frees *out with
 * hsmca_issue_ca_free. Returns HSMCA_E_INVALID_ARG (not a PAI, no certificate),
 * HSMCA_E_MATTER_* (the PAI does not validate against paa), HSMCA_E_STORE_READ, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issue_ca_new(struct hsmca_issuer *iss,
                                                  const struct hsmca_ca_rec *rec, X509 *paa,
                                                  const struct hsmca_profile *dac_profile,
                                                  struct hsmca_issue_ca **out);
/* Deactivates (draining) and frees. NULL is a no-op. Results already handed to done callbacks
 * keep pai_der valid only until this call: free the CA after its last result. */
void hsmca_issue_ca_free(struct hsmca_issue_ca *ca);
/* The CA's id (borrowed). */
const char *hsmca_issue_ca_id(const struct hsmca_issue_ca *ca);

/*
 * Open an issuance window: key is the PAI's token key (logged in; borrowed until
 * hsmca_issue_ca_deactivate returns), checked against the PAI certificate with a test signature.
 * The window ends at until_ms (ms since the epoch, > now) or after max_dacs (1..2^40) DACs,
 * whichever comes first. Returns HSMCA_E_ISSUE_CA_ACTIVE (deactivate first),
 * HSMCA_E_ISSUE_WINDOW_INVALID, HSMCA_E_MATTER_KEY_MISMATCH, HSMCA_E_SIGN_FAILED, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issue_ca_activate(struct hsmca_issue_ca *ca,
                                                       struct hsmca_key *key, int64_t until_ms,
                                                       uint64_t max_dacs);
/*
 * As hsmca_issue_ca_activate, for a window shared by the nodes of one store (store_windows.h):
 * window_id (the opening quorum request's id) is opened in the store with until_ms and max_dacs,
 * or with join an open one is joined and its end and count are the store's (until_ms and
 * max_dacs are then ignored). DACs are signed against the window's one count: this node reserves
 * it in blocks (at most ISSUE_WINDOW_BLOCK at once), gives back what it did not sign at
 * deactivation, and stamps each certificate row with window_id. Also returns
 * HSMCA_E_ISSUE_WINDOW_EXPIRED and HSMCA_E_ISSUE_WINDOW_EXHAUSTED (a window to join is over),
 * HSMCA_E_NOT_FOUND (no such window), HSMCA_E_STORE_*.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issue_ca_activate_shared(struct hsmca_issue_ca *ca,
                                                              struct hsmca_key *key,
                                                              const char *window_id, int join,
                                                              int64_t until_ms, uint64_t max_dacs);

/*
 * Close the window: no new signing starts once this is called, and it returns only after every
 * signing already under way has finished (their results still complete normally). After it
 * returns the key is no longer used: the caller may free the key and log out. A CA with an ended
 * window (time or count) still holds its key until this is called. HSMCA_OK if inactive.
 */
void hsmca_issue_ca_deactivate(struct hsmca_issue_ca *ca);

/* State for GET /v1/cas and /metrics. */
struct hsmca_issue_ca_state {
    int active;         /* a window is open and neither its time nor its count is used up */
    int keyed;          /* activate was called and deactivate not yet (a key is held) */
    int64_t until_ms;   /* window end (0 when never activated) */
    uint64_t max_dacs;  /* window count bound */
    uint64_t issued;    /* DACs durable in the current (or last) window */
    uint64_t in_flight; /* slots reserved by signings not yet durable */
    uint64_t remaining; /* max_dacs - issued - in_flight (0 when not active) */
    uint64_t per_minute, per_day;           /* quota limits (0 = none) */
    uint64_t minute_count, day_count;       /* DACs counted in the sliding minute and day */
    uint64_t total_issued, total_replayed;  /* since the CA was made */
    uint64_t total_refused, total_dry_runs; /* since the CA was made */
};
void hsmca_issue_ca_state(struct hsmca_issue_ca *ca, int64_t now_ms,
                          struct hsmca_issue_ca_state *out);
/* As JSON {"active", "keyed", "until_ms", "max_dacs", "issued", "in_flight", "remaining", "quota":
 * {"per_minute", "per_day", "minute_count", "day_count"}}; NULL on NOMEM. */
json_t *hsmca_issue_ca_state_json(struct hsmca_issue_ca *ca, int64_t now_ms);

/* ---- requests ---- */

/* One request. Every pointer is borrowed for the duration of the submit call only. */
struct hsmca_issue_req {
    const unsigned char *csr; /* DER or one PEM block, <= HSMCA_CSR_MAX bytes */
    size_t csr_len;
    const char *request_id; /* NULL or "" = none; else 1..HSMCA_REQUEST_ID_MAX bytes of
                               [A-Za-z0-9._~:@+=-] */
    int pid_given;          /* 0 = the PAI's PID */
    uint16_t pid;           /* must lie in the PAI's scope */
    const char *principal;  /* who asks (audit actor) */
    const char *role;       /* their role (audit role) */
    int dry_run;            /* lint only: sign nothing, store nothing */
    const char *device_id;  /* NULL = none; the per-device subject value the DAC profile takes
                               (hsmca_matter_dac_device_id), refused before any window slot */
};

/* What a request came to. Owned by the done callback, which frees it with
 * hsmca_issue_result_free. */
struct hsmca_issue_result {
    enum hsmca_err rc; /* HSMCA_OK: issued, replayed or dry run; else the refusal or failure */
    size_t index;      /* position in the batch (0 for a single request) */
    int replayed;      /* the DAC was issued earlier for this request id and CSR */
    int dry_run;       /* doc holds the dry-run document */
    int has_receipt;   /* receipt is the audit entry of this result */
    struct hsmca_audit_receipt receipt;
    unsigned char *dac_der; /* owned (OPENSSL_free); NULL unless a DAC is returned */
    size_t dac_len;
    const unsigned char *pai_der; /* borrowed from the CA (valid until hsmca_issue_ca_free) */
    size_t pai_len;
    unsigned char serial[20]; /* the DAC's serial */
    size_t serial_len;
    char csr_sha256[HSMCA_SHA256_HEX_SIZE]; /* hex; "" when the CSR was not readable */
    json_t *doc;      /* dry run: {"ok", "dac", "problems"} (hsmca_matter_dac_lint); owned */
    char detail[160]; /* short English reason of a refusal (no untrusted bytes) */
    uint64_t sign_us; /* microseconds to build and sign this DAC, the wait for the token
                         included; 0 when nothing was signed */
};
void hsmca_issue_result_free(struct hsmca_issue_result *res);

/*
 * Called exactly once per accepted submit; takes ownership of res. Runs on the audit writer thread
 * after the entry of this result is durable (or its write failed: rc HSMCA_E_AUDIT_WRITE or
 * whatever the audit returned, no DAC released), or on the submitting thread before
 * hsmca_issue_submit returns when no entry is written (a refusal suppressed by the per-principal
 * limiter: has_receipt 0). Must not block.
 */
typedef void (*hsmca_issue_done_fn)(void *arg, struct hsmca_issue_result *res);

/*
 * Issue one DAC from ca. On the caller's thread: check the request id, parse and check the CSR
 * (its signature is the proof of possession), look up (ca, request id) in the store (same CSR:
 * replay the stored DAC, entry "dac.replay"; other CSR: HSMCA_E_ISSUE_REQUEST_ID_CONFLICT), refuse
 * a request id already in flight (HSMCA_E_ISSUE_REQUEST_ID_IN_FLIGHT), reserve a window slot and a
 * quota slot, build and sign the DAC (subject from the PAI scope and profile), then hand the
 * certificate row and the entry "dac.issue" (detail {serial, sha256, csr_sha256, vid, pid,
 * request_id}) to the audit writer. Every refusal gets an entry "dac.refuse" (detail {code,
 * csr_sha256}), rate-limited per principal. A dry run builds the lint document instead (entry
 * "dac.dry_run"), reserving nothing and signing nothing.
 * A request id known to be absent from the store (a per-CA Bloom filter loaded at
 * hsmca_issue_ca_new and updated at each commit) is not looked up. Another process writing the
 * same store under the same id is caught by the unique index inside the audit transaction
 * (HSMCA_E_ISSUE_REQUEST_ID_CONFLICT, nothing released).
 * Returns HSMCA_OK when done will run (even for refusals: the refusal is in res->rc), or
 * HSMCA_E_INVALID_ARG (NULL iss, ca, rq or done; ca from another issuer) or HSMCA_E_NOMEM, in
 * which case done never runs.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issue_submit(struct hsmca_issuer *iss,
                                                  struct hsmca_issue_ca *ca,
                                                  const struct hsmca_issue_req *rq,
                                                  hsmca_issue_done_fn done, void *done_arg);

/* The results of a batch, in request order. Owned by the batch done callback, which frees it with
 * hsmca_issue_batch_result_free. */
struct hsmca_issue_batch_result {
    size_t n;
    struct hsmca_issue_result *items; /* items[i].index == i */
    size_t issued, replayed, failed;  /* failed: rc != HSMCA_OK (dry runs count as issued) */
};
void hsmca_issue_batch_result_free(struct hsmca_issue_batch_result *br);

/* Called exactly once per accepted batch, after every item is durable or has failed; runs on the
 * audit writer thread, or on the submitting thread if no item needed the writer. Must not block. */
typedef void (*hsmca_issue_batch_done_fn)(void *arg, struct hsmca_issue_batch_result *br);

/*
 * Issue up to HSMCA_ISSUE_BATCH_MAX DACs from ca: every item as hsmca_issue_submit, a bad item
 * fails alone. Items are checked, built and signed by the calling thread together with the
 * issuer's helper threads; each thread hands its items' entries to the audit writer 64 at a time,
 * so they share group commits. Returns once every item is handed to the writer (or refused).
 * Returns HSMCA_OK when done will run, HSMCA_E_ISSUE_BATCH_TOO_LARGE (n > HSMCA_ISSUE_BATCH_MAX),
 * HSMCA_E_ISSUE_BATCH_MALFORMED (n == 0), HSMCA_E_INVALID_ARG, HSMCA_E_NOMEM; on those done never
 * runs (the caller audits a request-level refusal with hsmca_issue_refuse).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_issue_batch_submit(struct hsmca_issuer *iss,
                                                        struct hsmca_issue_ca *ca,
                                                        const struct hsmca_issue_req *items,
                                                        size_t n, hsmca_issue_batch_done_fn done,
                                                        void *done_arg);

/*
 * Audit a refusal decided before a request reached the engine (malformed JSON, batch too large,
 * unknown CA; target "ca/<ca_id>", or "" when ca_id is NULL), through the same per-principal
 * limiter: entry "dac.refuse" with detail {code, input_sha256} where input_sha256 is the SHA-256
 * of input[0..len) (input NULL = omitted). done (may be NULL) runs exactly once: on the writer
 * thread when the entry is durable or failed, or on this thread before return with rc HSMCA_OK and
 * receipt NULL when the limiter only counted the refusal.
 */
void hsmca_issue_refuse(struct hsmca_issuer *iss, const char *ca_id, const char *principal,
                        const char *role, enum hsmca_err code, const void *input, size_t len,
                        hsmca_audit_done_fn done, void *done_arg);

#endif
