/* SPDX-License-Identifier: Apache-2.0
 *
 * auth.c -- the role bindings of policies/roles.json, loaded once into a sorted, immutable table
 * (lookups by certificate fingerprint with bsearch, no lock) and the authorization decision.
 * Never sees TLS or HTTP; refuses a bindings file it cannot fully understand.
 */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "hsmca/sizes.h"
#include "hsmca/util.h"

struct hsmcad_roles {
    struct hsmcad_principal *p;
    unsigned n;
    unsigned refs; /* atomic: the daemon's pointer plus each connection that looked up in it */
};

const char *
hsmcad_role_name(enum hsmcad_role r)
{
    switch (r) {
    case HSMCAD_ROLE_ADMIN:
        return "admin";
    case HSMCAD_ROLE_APPROVER:
        return "approver";
    case HSMCAD_ROLE_OPERATOR:
        return "operator";
    case HSMCAD_ROLE_AUDITOR:
        return "auditor";
    }
    return "none";
}

static int
role_from(const char *s, enum hsmcad_role *out)
{
    static const enum hsmcad_role all[] = {HSMCAD_ROLE_ADMIN, HSMCAD_ROLE_APPROVER,
                                           HSMCAD_ROLE_OPERATOR, HSMCAD_ROLE_AUDITOR};
    size_t i;

    for (i = 0; i < 4; i++) {
        if (strcmp(s, hsmcad_role_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

/* Principal names and CA ids: 1..max bytes of [A-Za-z0-9._@-]. */
static int
good_name(const char *s, size_t max)
{
    return hsmca_word_ok(s, strlen(s), max, 0, "._@-");
}

static int
cmp_fp(const void *a, const void *b)
{
    return memcmp(((const struct hsmcad_principal *)a)->fingerprint,
                  ((const struct hsmcad_principal *)b)->fingerprint, HSMCA_SHA256_LEN);
}

void
hsmcad_roles_free(struct hsmcad_roles *r)
{
    unsigned i;

    if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (i = 0; i < r->n; i++)
        free(r->p[i].cas);
    free(r->p);
    free(r);
}

struct hsmcad_roles *
hsmcad_roles_ref(struct hsmcad_roles *r)
{
    if (r != NULL)
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

unsigned
hsmcad_roles_count(const struct hsmcad_roles *r)
{
    return r != NULL ? r->n : 0;
}

static enum hsmca_err
bad(char *why, size_t why_len, const char *what, const char *fp)
{
    snprintf(why, why_len, "roles: %s%s%.64s", what, fp != NULL ? ": " : "", fp != NULL ? fp : "");
    return HSMCA_E_ROLES_INVALID;
}

static enum hsmca_err
parse_one(const char *fp_hex, json_t *v, struct hsmcad_principal *p, char *why, size_t why_len)
{
    json_error_t jerr;
    const char *name = NULL, *role = NULL;
    json_t *cas = NULL, *ca;
    size_t len = 0, i;

    if (strlen(fp_hex) != HSMCA_SHA256_HEX_LEN ||
        hsmca_hex_decode(fp_hex, HSMCA_SHA256_HEX_LEN, p->fingerprint, sizeof(p->fingerprint),
                         &len) != HSMCA_OK ||
        len != HSMCA_SHA256_LEN)
        return bad(why, why_len, "a key is not a SHA-256 fingerprint (64 hex digits)", fp_hex);
    if (json_unpack_ex(v, &jerr, JSON_STRICT, "{s:s, s:s, s?o}", "principal", &name, "role", &role,
                       "cas", &cas) != 0)
        return bad(why, why_len,
                   "each binding is {\"principal\", \"role\", \"cas\"?} with strings only", fp_hex);
    if (!good_name(name, HSMCAD_PRINCIPAL_MAX))
        return bad(why, why_len, "principal must be 1..64 of [A-Za-z0-9._@-]", fp_hex);
    snprintf(p->name, sizeof(p->name), "%s", name);
    if (role_from(role, &p->role) != 0)
        return bad(why, why_len, "role must be admin, approver, operator or auditor", fp_hex);
    if (p->role != HSMCAD_ROLE_OPERATOR) {
        if (cas != NULL)
            return bad(why, why_len, "only an operator is bound to CAs", fp_hex);
        return HSMCA_OK;
    }
    if (cas == NULL || !json_is_array(cas) || json_array_size(cas) == 0 ||
        json_array_size(cas) > HSMCAD_PRINCIPAL_CAS_MAX)
        return bad(why, why_len, "an operator needs \"cas\": 1..64 CA ids", fp_hex);
    p->cas = calloc(json_array_size(cas), sizeof(*p->cas));
    if (p->cas == NULL)
        return HSMCA_E_NOMEM;
    json_array_foreach(cas, i, ca)
    {
        if (!json_is_string(ca) || !good_name(json_string_value(ca), HSMCA_CA_ID_MAX))
            return bad(why, why_len, "a CA id must be 1..64 of [A-Za-z0-9._@-]", fp_hex);
        snprintf(p->cas[i], sizeof(p->cas[i]), "%s", json_string_value(ca));
        p->ncas++;
    }
    return HSMCA_OK;
}

enum hsmca_err
hsmcad_roles_parse(const char *text, size_t len, struct hsmcad_roles **out, char *why,
                   size_t why_len)
{
    json_t *root = NULL, *certs = NULL, *v;
    json_error_t jerr;
    json_int_t version = 0;
    struct hsmcad_roles *r = NULL;
    const char *fp;
    enum hsmca_err rc = HSMCA_E_ROLES_INVALID;
    unsigned i, j;

    if (text == NULL || len > HSMCAD_ROLES_MAX_BYTES)
        return bad(why, why_len, "file too large", NULL);
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(why, why_len, "roles: not valid JSON at line %d: %.80s", jerr.line, jerr.text);
        goto out;
    }
    if (json_unpack_ex(root, &jerr, JSON_STRICT, "{s:I, s:o}", "version", &version, "certificates",
                       &certs) != 0 ||
        version != 1 || !json_is_object(certs)) {
        rc = bad(why, why_len,
                 "expected {\"version\": 1, \"certificates\": {...}} and nothing else", NULL);
        goto out;
    }
    if (json_object_size(certs) > HSMCAD_BINDINGS_MAX) {
        rc = bad(why, why_len, "too many bindings", NULL);
        goto out;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    r->refs = 1;
    r->p = calloc(json_object_size(certs) + 1, sizeof(*r->p));
    if (r->p == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    json_object_foreach(certs, fp, v)
    {
        rc = parse_one(fp, v, &r->p[r->n], why, why_len);
        r->n++;
        if (rc != HSMCA_OK)
            goto out;
    }
    qsort(r->p, r->n, sizeof(*r->p), cmp_fp);
    for (i = 0; i < r->n; i++) {
        if (i > 0 && memcmp(r->p[i].fingerprint, r->p[i - 1].fingerprint, HSMCA_SHA256_LEN) == 0) {
            rc = bad(why, why_len, "a fingerprint is bound twice (upper and lower case)", NULL);
            goto out;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(r->p[i].name, r->p[j].name) == 0 && r->p[i].role != r->p[j].role) {
                rc = bad(why, why_len, "one principal, one role: principal bound to two roles",
                         r->p[i].name);
                goto out;
            }
        }
    }
    *out = r;
    r = NULL;
    rc = HSMCA_OK;
out:
    hsmcad_roles_free(r);
    json_decref(root);
    return rc;
}

enum hsmca_err
hsmcad_roles_load(const char *path, struct hsmcad_roles **out, char *why, size_t why_len)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    enum hsmca_err rc;

    rc = hsmca_read_file(path, HSMCAD_ROLES_MAX_BYTES, &buf, &len);
    if (rc != HSMCA_OK) {
        snprintf(why, why_len, "roles: cannot read %s: %s", path, hsmca_err_code(rc));
        return HSMCA_E_ROLES_INVALID;
    }
    rc = hsmcad_roles_parse((const char *)buf, len, out, why, why_len);
    free(buf);
    return rc;
}

const struct hsmcad_principal *
hsmcad_roles_lookup_fp(const struct hsmcad_roles *r, const unsigned char fp[HSMCA_SHA256_LEN])
{
    struct hsmcad_principal key;

    if (r == NULL || r->n == 0)
        return NULL;
    memcpy(key.fingerprint, fp, HSMCA_SHA256_LEN);
    return bsearch(&key, r->p, r->n, sizeof(*r->p), cmp_fp);
}

const struct hsmcad_principal *
hsmcad_roles_lookup(const struct hsmcad_roles *r, const unsigned char *der, size_t len)
{
    unsigned char fp[HSMCA_SHA256_LEN];
    unsigned int fl = 0;

    if (der == NULL || len == 0 || EVP_Digest(der, len, fp, &fl, EVP_sha256(), NULL) != 1)
        return NULL;
    return hsmcad_roles_lookup_fp(r, fp);
}

enum hsmca_err
hsmcad_authorize(const struct hsmcad_principal *p, unsigned mask, int ca_bound, const char *ca)
{
    unsigned i;

    if (p == NULL)
        return HSMCA_E_HTTP_UNAUTHENTICATED;
    if ((p->role & mask) == 0)
        return HSMCA_E_HTTP_FORBIDDEN;
    if (!ca_bound || p->role != HSMCAD_ROLE_OPERATOR)
        return HSMCA_OK;
    if (ca == NULL)
        return HSMCA_E_HTTP_CA_FORBIDDEN;
    for (i = 0; i < p->ncas; i++) {
        if (strcmp(p->cas[i], ca) == 0)
            return HSMCA_OK;
    }
    return HSMCA_E_HTTP_CA_FORBIDDEN;
}
