/* SPDX-License-Identifier: Apache-2.0
 *
 * request_view.c -- a quorum request in a person's terms (request_view.h). Reads only the
 * request's own JSON; never trusts it to be well formed (a view of a bad request shows what it
 * can, the quorum module refuses it).
 */
#include "hsmca/request_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "hsmca/limits.h"
#include "hsmca/sizes.h"

#define REQUEST_BYTES_MAX 16384

void
hsmca_view_time(int64_t ms, char *out, size_t out_size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms < 0 || ms / 1000 > 253402300799LL || gmtime_r(&t, &tm) == NULL ||
        strftime(out, out_size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, out_size, "?");
}

static json_t *
hex4(json_t *v)
{
    char b[8];

    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0xffff)
        return json_copy(v);
    snprintf(b, sizeof(b), "%04X", (unsigned)json_integer_value(v));
    return json_string(b);
}

static json_t *
iso(json_t *v)
{
    char b[32];

    if (!json_is_integer(v))
        return json_copy(v);
    hsmca_view_time((int64_t)json_integer_value(v), b, sizeof(b));
    return json_string(b);
}

static const char *
str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));

    return s != NULL ? s : "?";
}

static const char *
vstr(json_t *view, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(view, k));

    return s != NULL ? s : dflt;
}

json_t *
hsmca_request_view(const char *op, json_t *params)
{
    json_t *v = json_object(), *x;
    const char *k;
    char sum[512];

    if (v == NULL)
        return NULL;
    json_object_set_new(v, "operation", json_string(op != NULL ? op : "?"));
    json_object_foreach(params, k, x)
    {
        if (strcmp(k, "vid") == 0 || strcmp(k, "pid") == 0)
            json_object_set_new(v, k, hex4(x));
        else if (strcmp(k, "until") == 0 || strcmp(k, "invalidity") == 0)
            json_object_set_new(v, k, iso(x));
        else if (strcmp(k, "pop") == 0 || strcmp(k, "spki") == 0)
            continue; /* key material: the approver checks it by its fingerprint, below */
        else if (strcmp(k, "tbs") == 0)
            json_object_set(v, "certificate", x); /* the to-be-signed certificate, signed too */
        else
            json_object_set(v, k, x);
    }
    sum[0] = '\0';
    if (op == NULL) {
        snprintf(sum, sizeof(sum), "unknown operation");
    } else if (strcmp(op, "ca.activate") == 0 &&
               json_is_string(json_object_get(params, "window"))) {
        snprintf(sum, sizeof(sum),
                 "log this node in to PAI %s to join its open issuance window %s (shared by the "
                 "nodes of the store: its end and count stay as they are)",
                 str(params, "ca"), str(params, "window"));
    } else if (strcmp(op, "ca.activate") == 0) {
        json_object_set_new(v, "window",
                            json_pack("{s:O?, s:O?}", "until", json_object_get(v, "until"),
                                      "max_dacs", json_object_get(params, "max_dacs")));
        char names[300] = "";
        size_t i, n = 0;

        /* several nodes: the approver sees which nodes this one approval logs in */
        for (i = 0; i < json_array_size(json_object_get(params, "nodes")) && n < 200; i++) {
            const char *nm = json_string_value(json_array_get(json_object_get(params, "nodes"), i));

            n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%.32s", i > 0 ? ", " : "",
                                  nm != NULL ? nm : "?");
        }
        snprintf(sum, sizeof(sum),
                 "open the issuance window of PAI %s until %s for at most %lld DACs%s%s%s",
                 str(params, "ca"), vstr(v, "until", "?"),
                 (long long)json_integer_value(json_object_get(params, "max_dacs")),
                 names[0] != '\0' ? ", shared by the nodes " : "", names,
                 names[0] != '\0' ? " (each logged in by this one approval)" : "");
    } else if (strcmp(op, "ca.create_paa") == 0) {
        snprintf(sum, sizeof(sum),
                 "generate a PAA key \"%s\" in token %s and self-sign the PAA %s (VID %s)",
                 str(params, "key_label"), str(params, "token"), str(params, "ca"),
                 vstr(v, "vid", "none"));
    } else if (strcmp(op, "ca.create_pai") == 0) {
        snprintf(sum, sizeof(sum),
                 "generate a PAI key \"%s\" in token %s and sign the PAI %s (VID %s, PID %s) "
                 "with the PAA %s",
                 str(params, "key_label"), str(params, "token"), str(params, "ca"),
                 vstr(v, "vid", "?"), vstr(v, "pid", "none"), str(params, "parent"));
    } else if (strcmp(op, "ca.renew") == 0) {
        snprintf(sum, sizeof(sum),
                 "renew CA %s as %s: a new certificate (new serial and validity, below) for the "
                 "same key; %s stays for verification and its CRL, and opens no window again",
                 str(params, "ca"), str(params, "new_ca"), str(params, "ca"));
    } else if (strcmp(op, "ca.rekey") == 0) {
        snprintf(sum, sizeof(sum),
                 "re-key CA %s as %s: a new key \"%s\" generated in token %s and its certificate "
                 "(below; the public key is only known at execution); %s stays for verification "
                 "and its CRL, and opens no window again",
                 str(params, "ca"), str(params, "new_ca"), str(params, "key_label"),
                 str(params, "token"), str(params, "ca"));
    } else if (strcmp(op, "ca.revoke") == 0) {
        snprintf(sum, sizeof(sum), "revoke the PAI %s (reason %s) on its PAA's CRL",
                 str(params, "ca"),
                 json_is_string(json_object_get(params, "reason")) ? str(params, "reason")
                                                                   : "unspecified");
    } else if (strcmp(op, "token.enroll") == 0) {
        snprintf(sum, sizeof(sum),
                 "initialise a free token as %s under the quorum: its SO PIN random and "
                 "destroyed, its user PIN random, split and sealed to the approvers",
                 str(params, "token"));
    } else if (strcmp(op, "crl.sign") == 0) {
        snprintf(sum, sizeof(sum), "sign a new CRL of %s", str(params, "ca"));
    } else if (strcmp(op, "approver.enroll") == 0) {
        const char *spki = json_string_value(json_object_get(params, "spki"));
        unsigned char h[HSMCA_SHA256_LEN], *der = NULL;
        char hex[20] = "?";
        unsigned hl = 0;
        size_t n = spki != NULL ? strlen(spki) : 0;
        int dl;

        der = n > 0 && n < 4096 && n % 4 == 0 ? malloc(n / 4 * 3 + 1) : NULL;
        dl = der != NULL ? EVP_DecodeBlock(der, (const unsigned char *)spki, (int)n) : -1;
        if (dl > 0 && EVP_Digest(der, (size_t)dl - (spki[n - 1] == '=') - (spki[n - 2] == '='), h,
                                 &hl, EVP_sha256(), NULL) == 1)
            snprintf(hex, sizeof(hex), "%02x%02x%02x%02x%02x%02x%02x%02x", h[0], h[1], h[2], h[3],
                     h[4], h[5], h[6], h[7]);
        free(der);
        json_object_set_new(v, "key_sha256_prefix", json_string(hex));
        snprintf(sum, sizeof(sum),
                 "enrol approver %s (token %s, key SHA-256 %s...): every CA token's PIN is "
                 "split again among the approvers",
                 str(params, "name"), str(params, "token_serial"), hex);
    } else if (strcmp(op, "approver.remove") == 0) {
        snprintf(sum, sizeof(sum),
                 "remove approver %s: every CA token's PIN is split again among the others",
                 str(params, "name"));
    } else if (strcmp(op, "policy.update") == 0) {
        snprintf(sum, sizeof(sum), "replace the quorum policy (thresholds per operation)");
    } else {
        snprintf(sum, sizeof(sum), "%s", op);
    }
    json_object_set_new(v, "summary", json_string(sum));
    return v;
}

enum hsmca_err
hsmca_request_view_envelope(const char *env, size_t len, json_t **out)
{
    json_t *e = NULL, *req = NULL, *v = NULL;
    const char *b64;
    unsigned char *bytes = NULL;
    size_t n;
    int dl;
    char created[32], expires[32], appr[64];
    enum hsmca_err rc = HSMCA_E_QUORUM_ENVELOPE;

    *out = NULL;
    e = json_loadb(env, len, JSON_REJECT_DUPLICATES, NULL);
    b64 = json_string_value(json_object_get(e, "request"));
    n = b64 != NULL ? strlen(b64) : 0;
    if (n < 4 || n % 4 != 0 || n / 4 * 3 > REQUEST_BYTES_MAX + 2)
        goto out;
    bytes = malloc(n / 4 * 3 + 1);
    if (bytes == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    dl = EVP_DecodeBlock(bytes, (const unsigned char *)b64, (int)n);
    if (dl < 2)
        goto out;
    dl -= (b64[n - 1] == '=') + (b64[n - 2] == '=');
    req = json_loadb((const char *)bytes, (size_t)dl, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(req) || !json_is_object(json_object_get(req, "params")))
        goto out;
    v = hsmca_request_view(json_string_value(json_object_get(req, "op")),
                           json_object_get(req, "params"));
    if (v == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    hsmca_view_time((int64_t)json_integer_value(json_object_get(req, "created")), created,
                    sizeof(created));
    hsmca_view_time((int64_t)json_integer_value(json_object_get(req, "expires")), expires,
                    sizeof(expires));
    snprintf(appr, sizeof(appr), "%zu of %lld", json_array_size(json_object_get(e, "approvals")),
             (long long)json_integer_value(json_object_get(e, "threshold")));
    json_object_set_new(v, "id", json_string(str(req, "id")));
    json_object_set_new(v, "requester",
                        json_string(str(json_object_get(req, "requester"), "principal")));
    json_object_set_new(v, "created", json_string(created));
    json_object_set_new(v, "expires", json_string(expires));
    json_object_set_new(v, "status", json_string(str(e, "status")));
    json_object_set_new(v, "approvals", json_string(appr));
    *out = v;
    v = NULL;
    rc = HSMCA_OK;
out:
    json_decref(v);
    json_decref(req);
    json_decref(e);
    free(bytes);
    return rc;
}

struct text {
    char *p;
    size_t cap, used;
    int failed;
};

static void
line(struct text *t, const char *k, json_t *x)
{
    char *s, *o;
    int w;

    if (x == NULL || t->failed)
        return;
    s = json_is_string(x) ? strdup(json_string_value(x))
                          : json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (s == NULL) {
        t->failed = 1;
        return;
    }
    for (;;) {
        w = snprintf(t->p + t->used, t->cap - t->used, "  %-10s %s\n", k, s);
        if (w >= 0 && (size_t)w < t->cap - t->used) {
            t->used += (size_t)w;
            break;
        }
        o = w >= 0 && t->cap < (1u << 20) ? realloc(t->p, t->cap * 2) : NULL;
        if (o == NULL) {
            t->failed = 1;
            break;
        }
        t->p = o;
        t->cap *= 2;
    }
    free(s);
}

char *
hsmca_request_view_text(json_t *view)
{
    static const char *const first[] = {"summary",   "operation", "id",      "status",
                                        "approvals", "requester", "created", "expires"};
    struct text t = {NULL, 4096, 0, 0};
    const char *k;
    json_t *x;
    size_t i, m;

    t.p = malloc(t.cap);
    if (t.p == NULL)
        return NULL;
    t.p[0] = '\0';
    /* the sentence and the request's own fields first, then the parameters */
    for (i = 0; i < sizeof(first) / sizeof(first[0]); i++)
        line(&t, first[i], json_object_get(view, first[i]));
    json_object_foreach(view, k, x)
    {
        for (m = 0; m < sizeof(first) / sizeof(first[0]) && strcmp(first[m], k) != 0; m++)
            ;
        if (m == sizeof(first) / sizeof(first[0]) && strcmp(k, "certificate") != 0)
            line(&t, k, x);
    }
    /* the to-be-signed certificate last, one field a line, as the approver signs it */
    x = json_object_get(view, "certificate");
    if (json_is_object(x)) {
        static const char *const cf[] = {"subject",
                                         "issuer",
                                         "serial",
                                         "not_before",
                                         "not_after",
                                         "public_key",
                                         "signature_algorithm"};
        json_t *e, *hd = json_string("to be signed exactly as below (the approval signs it)");
        size_t j;

        line(&t, "certificate", hd);
        json_decref(hd);
        for (i = 0; i < sizeof(cf) / sizeof(cf[0]); i++) {
            char key[40];

            snprintf(key, sizeof(key), "  %s", cf[i]);
            line(&t, key, json_object_get(x, cf[i]));
        }
        json_array_foreach(json_object_get(x, "extensions"), j, e)
        {
            line(&t, "  extension", e);
        }
    }
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    return t.p;
}
