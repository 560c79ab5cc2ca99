/* SPDX-License-Identifier: Apache-2.0
 *
 * config.h -- the daemon's one JSON config file (docs/config.md). Every key is validated for type
 * and range and unknown keys are refused, so a typo never silently falls back to a default.
 * Holds paths and numbers only: the audit PIN is read from its own file (mode 600) by main.c.
 */
#ifndef HSMCAD_CONFIG_H
#define HSMCAD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/custody.h"
#include "hsmca/error.h"
#include "hsmca/limits.h"

#define HSMCAD_CONFIG_MAX 65536 /* bytes of the config file */
#define HSMCAD_DEFAULT_LISTEN "127.0.0.1:8443"
#define HSMCAD_BODY_MAX_DEFAULT (2u << 20) /* a 1,000-CSR batch in JSON fits */
#define HSMCAD_BODY_MAX_LIMIT (64u << 20)
#define HSMCAD_BATCH_MAX_DEFAULT 1000
#define HSMCAD_BATCH_MAX_LIMIT 1000

struct hsmcad_config {
    char listen_host[64]; /* numeric IPv4 or IPv6 address */
    unsigned listen_port; /* 0 = any free port (tests) */
    char pkcs11_module[HSMCA_PATH_MAX + 1];
    char store[HSMCA_PATH_MAX + 1]; /* a SQLite path, or a libpq string (store.h) */
    /* a path whose directory keeps this node's own files (softhsm-backup/): the SQLite file, or
     * for PostgreSQL a name in the config file's directory */
    char store_beside[HSMCA_PATH_MAX + 1];
    char roles[HSMCA_PATH_MAX + 1];
    char profiles_dir[HSMCA_PATH_MAX + 1];
    char quotas[HSMCA_PATH_MAX + 1];     /* policies/quotas.json; "" = no quotas */
    char crl_policy[HSMCA_PATH_MAX + 1]; /* policies/crl.json; "" = built-in CRL defaults */
    char publish_host[64]; /* the plain-HTTP CRL/CA listener; "" = off (docs/revocation.md) */
    unsigned publish_port; /* 0 = any free port (tests) */
    char bounds[HSMCA_PATH_MAX + 1]; /* policies/bounds.json; "" = the built-in caps */
    char tls_cert[HSMCA_PATH_MAX + 1];
    char tls_key[HSMCA_PATH_MAX + 1];
    char tls_client_ca[HSMCA_PATH_MAX + 1];
    char audit_token[HSMCA_URI_MAX + 1];
    char audit_key[HSMCA_URI_MAX + 1];
    char audit_pin_file[HSMCA_PATH_MAX + 1];
    char audit_cert[HSMCA_PATH_MAX + 1]; /* audit certificate or public key PEM, for extracts */
    char audit_origin[128];
    char node[HSMCA_CUSTODY_NODE_MAX + 1]; /* this node's name among those of the store; "" one */
    uint64_t checkpoint_entries;           /* 0 = library default */
    uint64_t checkpoint_interval_s;
    /* DACs stop while more audit entries than this lie beyond the last signed checkpoint;
     * 0 in the file = checkpoint_entries + HSMCAD_UNSIGNED_MARGIN_DEFAULT */
    uint64_t max_unsigned_entries;
    uint64_t body_max;            /* bytes of one request body */
    unsigned batch_max;           /* CSRs in one batch */
    unsigned threads;             /* worker threads; 0 = one per core */
    unsigned connections;         /* open connections at once */
    unsigned per_ip_connections;  /* per client address; 0 = no per-address limit */
    unsigned timeout_s;           /* idle connection timeout */
    unsigned refusals_per_minute; /* audited refusals per client and minute */
    /* docs/hardening.md: connections not yet authenticated get handshake_timeout_s; at most
     * unauthenticated_connections of them (0 = three quarters of connections) and
     * per_ip_unauthenticated per address (0 = no cap), the oldest evicted beyond; at most
     * refusal_entries_per_second refusal entries in all, the rest counted in summaries */
    unsigned handshake_timeout_s;
    unsigned unauthenticated_connections;
    unsigned per_ip_unauthenticated;
    unsigned refusal_entries_per_second;
    unsigned extract_max_entries; /* requested entries per GET /v1/audit/extract (Link: next) */
    int allow_root;               /* serve with effective uid 0 (refused unless true) */
};

/* audit.max_unsigned_entries: its default above checkpoint_entries (DACs issued after the
 * checkpoint that could not be signed was due) */
#define HSMCAD_UNSIGNED_MARGIN_DEFAULT 1000

/* Fill c with the defaults of docs/config.md (paths empty). */
void hsmcad_config_defaults(struct hsmcad_config *c);

/*
 * Parse and validate the config JSON text[0..len) (len <= HSMCAD_CONFIG_MAX) into *c (defaults
 * first). Relative paths are taken relative to base_dir (the config file's directory; NULL = as
 * given). On failure returns HSMCA_E_CONFIG_INVALID and writes a one-line reason naming the key
 * into why[0..why_len); *c is then unspecified.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_config_parse(const char *text, size_t len,
                                                   const char *base_dir, struct hsmcad_config *c,
                                                   char *why, size_t why_len);

/* Read the file at path and parse it (relative paths resolved against its directory). */
HSMCA_MUSTCHECK enum hsmca_err hsmcad_config_load(const char *path, struct hsmcad_config *c,
                                                  char *why, size_t why_len);

#endif
