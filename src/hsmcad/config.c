/* SPDX-License-Identifier: Apache-2.0
 *
 * config.c -- parse and validate the daemon's JSON config (docs/config.md).
 * Table-driven: each section lists its keys with a type and bounds; a key not in the table, a
 * wrong type, a value out of bounds or a missing required key is refused with a reason that names
 * the key. Owns no state beyond the caller's struct; never reads the files the config names.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/store.h"
#include "hsmca/util.h"

enum kind { K_STR, K_PATH, K_URI, K_U64, K_UINT, K_STORE };

struct key {
    const char *name;
    enum kind kind;
    int required;
    size_t off;  /* into struct hsmcad_config */
    size_t size; /* of the char array (strings) */
    uint64_t min, max;
};

#define STR(n, k, req, field)                                                                      \
    {                                                                                              \
        n, k, req, offsetof(struct hsmcad_config, field),                                          \
            sizeof(((struct hsmcad_config *)0)->field), 0, 0                                       \
    }
#define U64(n, field, lo, hi)                                                                      \
    {                                                                                              \
        n, K_U64, 0, offsetof(struct hsmcad_config, field), 0, lo, hi                              \
    }
#define UINT(n, field, lo, hi)                                                                     \
    {                                                                                              \
        n, K_UINT, 0, offsetof(struct hsmcad_config, field), 0, lo, hi                             \
    }

static const struct key top_keys[] = {
    STR("pkcs11_module", K_PATH, 0, pkcs11_module),
    STR("store", K_STORE, 1, store),
    STR("roles", K_PATH, 1, roles),
    STR("profiles_dir", K_PATH, 0, profiles_dir),
    STR("quotas", K_PATH, 0, quotas),
    STR("crl_policy", K_PATH, 0, crl_policy),
    STR("bounds", K_PATH, 0, bounds),
    STR("node", K_STR, 0, node), /* one of several nodes on one store (docs/postgresql.md) */
    {NULL, K_STR, 0, 0, 0, 0, 0},
};
static const struct key tls_keys[] = {
    STR("cert", K_PATH, 1, tls_cert),
    STR("key", K_PATH, 1, tls_key),
    STR("client_ca", K_PATH, 1, tls_client_ca),
    {NULL, K_STR, 0, 0, 0, 0, 0},
};
static const struct key audit_keys[] = {
    STR("token", K_URI, 1, audit_token),
    STR("key", K_URI, 1, audit_key),
    STR("pin_file", K_PATH, 1, audit_pin_file),
    STR("certificate", K_PATH, 0, audit_cert),
    STR("origin", K_STR, 0, audit_origin),
    U64("checkpoint_entries", checkpoint_entries, 1, 100000000),
    U64("checkpoint_interval_s", checkpoint_interval_s, 1, 86400),
    U64("max_unsigned_entries", max_unsigned_entries, 1, 200000000),
    {NULL, K_STR, 0, 0, 0, 0, 0},
};
static const struct key limit_keys[] = {
    U64("body_max", body_max, 4096, HSMCAD_BODY_MAX_LIMIT),
    UINT("batch_max", batch_max, 1, HSMCAD_BATCH_MAX_LIMIT),
    UINT("threads", threads, 0, 256),
    UINT("connections", connections, 1, 65536),
    UINT("per_ip_connections", per_ip_connections, 0, 65536),
    UINT("timeout_s", timeout_s, 1, 3600),
    UINT("refusals_per_minute", refusals_per_minute, 0, 100000),
    UINT("handshake_timeout_s", handshake_timeout_s, 1, 3600),
    UINT("unauthenticated_connections", unauthenticated_connections, 0, 65536),
    UINT("per_ip_unauthenticated", per_ip_unauthenticated, 0, 65536),
    UINT("refusal_entries_per_second", refusal_entries_per_second, 0, 100000),
    UINT("extract_max_entries", extract_max_entries, 100, 1000000),
    {NULL, K_STR, 0, 0, 0, 0, 0},
};

void
hsmcad_config_defaults(struct hsmcad_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
    c->listen_port = 8443;
    snprintf(c->pkcs11_module, sizeof(c->pkcs11_module), "/usr/lib/softhsm/libsofthsm2.so");
    snprintf(c->audit_origin, sizeof(c->audit_origin), "hsmca");
    c->body_max = HSMCAD_BODY_MAX_DEFAULT;
    c->batch_max = HSMCAD_BATCH_MAX_DEFAULT;
    c->connections = 1024;
    c->per_ip_connections = 0;
    c->timeout_s = 30;
    c->refusals_per_minute = 60;
    c->handshake_timeout_s = 5;
    c->unauthenticated_connections = 0; /* three quarters of connections */
    c->per_ip_unauthenticated = 128;
    c->refusal_entries_per_second = 10;
    c->extract_max_entries = 10000;
}

static enum hsmca_err
fail(char *why, size_t why_len, const char *sect, const char *key, const char *reason)
{
    snprintf(why, why_len, "%s%s%s: %s", sect, *sect ? "." : "", key, reason);
    return HSMCA_E_CONFIG_INVALID;
}

static int
printable(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return 0;
    }
    return 1;
}

static enum hsmca_err
set_string(const struct key *k, json_t *v, const char *base, struct hsmcad_config *c,
           const char *sect, char *why, size_t why_len)
{
    char *dst = (char *)c + k->off;
    const char *s;
    size_t n;
    int w;

    if (!json_is_string(v))
        return fail(why, why_len, sect, k->name, "must be a string");
    s = json_string_value(v);
    n = json_string_length(v);
    if (n == 0 || strlen(s) != n || !printable(s, n))
        return fail(why, why_len, sect, k->name, "must be a non-empty printable string");
    if (k->kind == K_URI && strncmp(s, "pkcs11:", 7) != 0)
        return fail(why, why_len, sect, k->name, "must be a pkcs11: URI (RFC 7512)");
    if (k->kind == K_URI && (strstr(s, "pin-value") != NULL || strstr(s, "pin-source") != NULL))
        return fail(why, why_len, sect, k->name, "a PIN never belongs in a URI; use pin_file");
    if (k->kind == K_STORE && hsmca_store_spec_is_pg(s)) {
        /* a libpq string stays as it is; its password would be on disk in clear */
        if (strstr(s, "password") != NULL)
            return fail(why, why_len, sect, k->name,
                        "a password never belongs in the config; use a passfile (PGPASSFILE)");
        w = snprintf(c->store_beside, sizeof(c->store_beside), "%s/hsmcad.pg",
                     base != NULL && base[0] != '\0' ? base : ".");
        if (w < 0 || (size_t)w >= sizeof(c->store_beside))
            return fail(why, why_len, sect, k->name, "is too long");
        w = snprintf(dst, k->size, "%s", s);
        if (w < 0 || (size_t)w >= k->size)
            return fail(why, why_len, sect, k->name, "is too long");
        return HSMCA_OK;
    }
    if (k->kind == K_STORE && strncmp(s, "sqlite:", 7) == 0) {
        s += 7;
        if (*s == '\0')
            return fail(why, why_len, sect, k->name, "sqlite: needs a path");
    }
    if ((k->kind == K_PATH || k->kind == K_STORE) && s[0] != '/' && base != NULL && base[0] != '\0')
        w = snprintf(dst, k->size, "%s/%s", base, s);
    else
        w = snprintf(dst, k->size, "%s", s);
    if (w < 0 || (size_t)w >= k->size)
        return fail(why, why_len, sect, k->name, "is too long");
    if (k->kind == K_STORE)
        snprintf(c->store_beside, sizeof(c->store_beside), "%s", dst);
    return HSMCA_OK;
}

static enum hsmca_err
set_number(const struct key *k, json_t *v, struct hsmcad_config *c, const char *sect, char *why,
           size_t why_len)
{
    json_int_t x;
    char msg[96];

    if (!json_is_integer(v))
        return fail(why, why_len, sect, k->name, "must be an integer");
    x = json_integer_value(v);
    if (x < 0 || (uint64_t)x < k->min || (uint64_t)x > k->max) {
        snprintf(msg, sizeof(msg), "must lie in %llu..%llu", (unsigned long long)k->min,
                 (unsigned long long)k->max);
        return fail(why, why_len, sect, k->name, msg);
    }
    if (k->kind == K_U64)
        *(uint64_t *)(void *)((char *)c + k->off) = (uint64_t)x;
    else
        *(unsigned *)(void *)((char *)c + k->off) = (unsigned)x;
    return HSMCA_OK;
}

/* Apply the object obj to c through table keys; refuse unknown keys and missing required ones. */
static enum hsmca_err
section(json_t *obj, const struct key *keys, const char *sect, const char *base,
        struct hsmcad_config *c, char *why, size_t why_len)
{
    const char *name;
    json_t *v;
    const struct key *k;
    enum hsmca_err rc;

    json_object_foreach(obj, name, v)
    {
        for (k = keys; k->name != NULL; k++) {
            if (strcmp(k->name, name) == 0)
                break;
        }
        if (k->name == NULL) {
            char esc[80];
            size_t i, n = strlen(name);

            for (i = 0; i < n && i < sizeof(esc) - 1; i++)
                esc[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
            esc[i] = '\0';
            return fail(why, why_len, sect, esc, "unknown key");
        }
        if (k->kind == K_U64 || k->kind == K_UINT)
            rc = set_number(k, v, c, sect, why, why_len);
        else
            rc = set_string(k, v, base, c, sect, why, why_len);
        if (rc != HSMCA_OK)
            return rc;
    }
    for (k = keys; k->name != NULL; k++) {
        if (k->required && json_object_get(obj, k->name) == NULL)
            return fail(why, why_len, sect, k->name, "is required");
    }
    return HSMCA_OK;
}

static enum hsmca_err
parse_listen(json_t *v, const char *key, char *out_host, size_t out_host_len, unsigned *out_port,
             char *why, size_t why_len)
{
    const char *s, *colon;
    size_t hl;
    uint64_t port;
    unsigned char addr[16];
    char host[64];

    if (!json_is_string(v))
        return fail(why, why_len, "", key, "must be a string \"ADDRESS:PORT\"");
    s = json_string_value(v);
    colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return fail(why, why_len, "", key, "must be \"ADDRESS:PORT\"");
    hl = (size_t)(colon - s);
    if (s[0] == '[') { /* [v6]:port */
        if (hl < 3 || s[hl - 1] != ']')
            return fail(why, why_len, "", key, "IPv6 addresses are written [ADDR]:PORT");
        s++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return fail(why, why_len, "", key, "address too long");
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1)
        return fail(why, why_len, "", key, "address must be a numeric IPv4 or IPv6 address");
    if (hsmca_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) != HSMCA_OK)
        return fail(why, why_len, "", key, "port must be a number 0..65535");
    snprintf(out_host, out_host_len, "%s", host);
    *out_port = (unsigned)port;
    return HSMCA_OK;
}

enum hsmca_err
hsmcad_config_parse(const char *text, size_t len, const char *base_dir, struct hsmcad_config *c,
                    char *why, size_t why_len)
{
    json_t *root = NULL, *v;
    json_error_t jerr;
    const char *name;
    enum hsmca_err rc = HSMCA_E_CONFIG_INVALID;
    static const char *const sections[] = {"tls", "audit", "limits"};
    const struct key *tables[] = {tls_keys, audit_keys, limit_keys};
    size_t i;

    hsmcad_config_defaults(c);
    if (text == NULL || len > HSMCAD_CONFIG_MAX) {
        snprintf(why, why_len, "config larger than %u bytes", HSMCAD_CONFIG_MAX);
        return HSMCA_E_CONFIG_INVALID;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(why, why_len, "not valid JSON at line %d column %d: %.80s", jerr.line, jerr.column,
                 jerr.text);
        return HSMCA_E_CONFIG_INVALID;
    }
    if (!json_is_object(root)) {
        snprintf(why, why_len, "the config must be a JSON object");
        goto out;
    }
    /* top-level: scalar keys, "listen" and the sections */
    json_object_foreach(root, name, v)
    {
        int known = strcmp(name, "listen") == 0 || strcmp(name, "publish_listen") == 0 ||
                    strcmp(name, "allow_root") == 0;

        for (i = 0; i < 3; i++)
            known |= strcmp(name, sections[i]) == 0;
        if (known)
            continue;
        {
            const struct key *k;

            for (k = top_keys; k->name != NULL; k++) {
                if (strcmp(k->name, name) == 0)
                    break;
            }
            if (k->name == NULL) {
                rc = fail(why, why_len, "", "(top level)", "unknown key");
                snprintf(why, why_len, "unknown key \"%.64s\"", name);
                goto out;
            }
            rc = set_string(k, v, base_dir, c, "", why, why_len);
            if (rc != HSMCA_OK)
                goto out;
        }
    }
    for (i = 0; top_keys[i].name != NULL; i++) {
        if (top_keys[i].required && json_object_get(root, top_keys[i].name) == NULL) {
            rc = fail(why, why_len, "", top_keys[i].name, "is required");
            goto out;
        }
    }
    v = json_object_get(root, "allow_root");
    if (v != NULL) {
        if (!json_is_boolean(v)) {
            rc = fail(why, why_len, "", "allow_root", "must be true or false");
            goto out;
        }
        c->allow_root = json_is_true(v);
    }
    v = json_object_get(root, "listen");
    if (v != NULL) {
        rc = parse_listen(v, "listen", c->listen_host, sizeof(c->listen_host), &c->listen_port, why,
                          why_len);
        if (rc != HSMCA_OK)
            goto out;
    }
    v = json_object_get(root, "publish_listen"); /* the plain-HTTP CRL listener; absent: off */
    if (v != NULL && !json_is_null(v)) {
        rc = parse_listen(v, "publish_listen", c->publish_host, sizeof(c->publish_host),
                          &c->publish_port, why, why_len);
        if (rc != HSMCA_OK)
            goto out;
    }
    for (i = 0; i < 3; i++) {
        v = json_object_get(root, sections[i]);
        if (v == NULL) {
            if (i == 2)
                continue; /* limits are optional */
            rc = fail(why, why_len, "", sections[i], "is required");
            goto out;
        }
        if (!json_is_object(v)) {
            rc = fail(why, why_len, "", sections[i], "must be an object");
            goto out;
        }
        rc = section(v, tables[i], sections[i], base_dir, c, why, why_len);
        if (rc != HSMCA_OK)
            goto out;
    }
    /* a bound at or below checkpoint_entries would refuse DACs in normal operation (a checkpoint
     * is made once checkpoint_entries are reached, after the group commit that reached them) */
    {
        uint64_t cpe = c->checkpoint_entries != 0 ? c->checkpoint_entries : 10000;

        if (c->max_unsigned_entries == 0) {
            c->max_unsigned_entries = cpe + HSMCAD_UNSIGNED_MARGIN_DEFAULT;
        } else if (c->max_unsigned_entries <= cpe) {
            rc = fail(why, why_len, "audit", "max_unsigned_entries",
                      "must be more than checkpoint_entries");
            goto out;
        }
    }
    rc = HSMCA_OK;
out:
    json_decref(root);
    return rc;
}

/* the config file and where it is: relative paths in it are relative to its directory */
struct config_src {
    struct hsmcad_config *c;
    const char *path;
};

static enum hsmca_err
config_parse_at(const char *text, size_t len, void *out, char *why, size_t why_len)
{
    struct config_src *src = out;
    char base[HSMCA_PATH_MAX + 1];
    char *slash;

    snprintf(base, sizeof(base), "%s", src->path);
    slash = strrchr(base, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        snprintf(base, sizeof(base), ".");
    return hsmcad_config_parse(text, len, base, src->c, why, why_len);
}

enum hsmca_err
hsmcad_config_load(const char *path, struct hsmcad_config *c, char *why, size_t why_len)
{
    struct config_src src = {c, path};

    return hsmca_policy_load(path, HSMCAD_CONFIG_MAX, config_parse_at, &src, "", why, why_len);
}
