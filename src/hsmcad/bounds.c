/* SPDX-License-Identifier: Apache-2.0
 *
 * bounds.c -- policies/bounds.json (bounds.h).
 */
#include "bounds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/util.h"

void
hsmcad_bounds_defaults(struct hsmcad_bounds *b)
{
    b->window_max_s = HSMCAD_WINDOW_MAX_S_DEFAULT;
    b->request_ttl_max_s = HSMCAD_REQUEST_TTL_MAX_S_DEFAULT;
}

/* sect: {key: integer in lo..hi} and nothing else, or absent. */
static int
one(json_t *root, const char *sect, const char *key, uint64_t lo, uint64_t hi, uint64_t *out,
    char *why, size_t why_len)
{
    json_t *s = json_object_get(root, sect), *v;
    json_int_t x;

    if (s == NULL)
        return 0;
    v = json_object_get(s, key);
    if (!json_is_object(s) || json_object_size(s) != 1 || !json_is_integer(v)) {
        snprintf(why, why_len, "bounds: %s must be {\"%s\": seconds}", sect, key);
        return -1;
    }
    x = json_integer_value(v);
    if (x < 0 || (uint64_t)x < lo || (uint64_t)x > hi) {
        snprintf(why, why_len, "bounds: %s.%s must lie in %llu..%llu", sect, key,
                 (unsigned long long)lo, (unsigned long long)hi);
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

enum hsmca_err
hsmcad_bounds_parse(const char *text, size_t len, struct hsmcad_bounds *b, char *why,
                    size_t why_len)
{
    json_t *root;
    json_error_t jerr;
    const char *k;
    json_t *v;
    enum hsmca_err rc = HSMCA_E_CONFIG_INVALID;

    hsmcad_bounds_defaults(b);
    if (text == NULL || len > HSMCAD_BOUNDS_MAX) {
        snprintf(why, why_len, "bounds: larger than %u bytes", HSMCAD_BOUNDS_MAX);
        return HSMCA_E_CONFIG_INVALID;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        snprintf(why, why_len, "bounds: not a JSON object");
        goto out;
    }
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "version") != 0 && strcmp(k, "ca.activate") != 0 &&
            strcmp(k, "quorum_request") != 0) {
            snprintf(why, why_len, "bounds: unknown key \"%.40s\"", k);
            goto out;
        }
    }
    if (json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_integer(json_object_get(root, "version"))) {
        snprintf(why, why_len, "bounds: \"version\": 1 is required");
        goto out;
    }
    if (one(root, "ca.activate", "window_max_s", 60, HSMCAD_WINDOW_MAX_S_LIMIT, &b->window_max_s,
            why, why_len) != 0 ||
        one(root, "quorum_request", "ttl_max_s", 60, HSMCAD_REQUEST_TTL_MAX_S_DEFAULT,
            &b->request_ttl_max_s, why, why_len) != 0)
        goto out;
    rc = HSMCA_OK;
out:
    json_decref(root);
    return rc;
}

HSMCA_POLICY_PARSER(bounds_parse, hsmcad_bounds_parse, struct hsmcad_bounds)

enum hsmca_err
hsmcad_bounds_load(const char *path, struct hsmcad_bounds *b, char *why, size_t why_len)
{
    return hsmca_policy_load(path, HSMCAD_BOUNDS_MAX, bounds_parse, b, "bounds: ", why, why_len);
}
