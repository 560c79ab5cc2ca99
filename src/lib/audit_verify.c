/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_verify.c -- reading the audit log as an auditor does: the offline verifier of extract
 * bundles (chain, checkpoints, anchor, the auditor's previous checkpoint, quorum operations), on
 * the line scanner and checkpoint parser of audit_format.c.
 * Everything it reads is untrusted: bounded, never trusted for a length, refused rather than
 * repaired. Owns no state between calls.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/b64.h"
#include "hsmca/gbuf.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h" /* hsmca_qop_find: an op's threshold in policies older than it */

/* The most checkpoints, epochs or quorum lines one verification holds. */
#define VERIFY_ITEMS_MAX ((size_t)1 << 24)

/* ---- the extract verifier ---- */

struct cpent {
    uint64_t size;
    unsigned char head[HSMCA_SHA256_LEN];
};

struct approver {
    char name[HSMCA_AUDIT_FIELD_MAX + 1];
    EVP_PKEY *key;
    char fp[HSMCA_SHA256_HEX_SIZE]; /* hex SHA-256 of the SPKI DER */
};

struct epoch {
    int64_t epoch;
    struct approver *v;
    size_t n;
    json_t *thresholds; /* owned */
};

struct vctx {
    const char *dir;
    struct hsmca_audit_verify_result *res;
    EVP_PKEY *pub;
    unsigned char kid[HSMCA_SHA256_LEN];
    char origin[HSMCA_AUDIT_FIELD_MAX + 1];
    struct cpent *cps;
    size_t ncps;
    struct epoch *ep;
    size_t nep, epcap;
    EVP_MD_CTX *md;
    EVP_MD *sha256;
};

static enum hsmca_err vfail(struct vctx *v, enum hsmca_err rc, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum hsmca_err
vfail(struct vctx *v, enum hsmca_err rc, uint64_t seq, const char *fmt, ...)
{
    va_list ap;

    v->res->bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(v->res->why, sizeof(v->res->why), fmt, ap);
    va_end(ap);
    return rc;
}

static enum hsmca_err
read_in(struct vctx *v, const char *name, size_t max, unsigned char **buf, size_t *len)
{
    char path[HSMCA_PATH_MAX + 128];

    snprintf(path, sizeof(path), "%s/%s", v->dir, name);
    return hsmca_read_file(path, max, buf, len);
}

static enum hsmca_err
digest(struct vctx *v, const void *p, size_t n, unsigned char out[HSMCA_SHA256_LEN])
{
    if (EVP_DigestInit_ex2(v->md, v->sha256, NULL) != 1 || EVP_DigestUpdate(v->md, p, n) != 1 ||
        EVP_DigestFinal_ex(v->md, out, NULL) != 1)
        return HSMCA_E_INTERNAL;
    return HSMCA_OK;
}

/* Load NAME.txt/.sig (relative), verify signature and key; fill f and the text hash. */
static enum hsmca_err
load_cp(struct vctx *v, const char *base, const char *label, struct hsmca_audit_cp_fields *f,
        unsigned char hash[HSMCA_SHA256_LEN])
{
    unsigned char *text = NULL, *sig = NULL;
    size_t tl = 0, sl = 0;
    char name[300];
    enum hsmca_err rc;

    snprintf(name, sizeof(name), "%s.txt", base);
    rc = read_in(v, name, 1024, &text, &tl);
    if (rc == HSMCA_OK) {
        snprintf(name, sizeof(name), "%s.sig", base);
        rc = read_in(v, name, 128, &sig, &sl);
    }
    if (rc != HSMCA_OK) {
        rc = vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "%s: %s.txt or .sig missing or too large",
                   label, base);
        goto out;
    }
    if (hsmca_audit_sig_verify(v->pub, text, tl, sig, sl) != HSMCA_OK) {
        rc = vfail(v, HSMCA_E_AUDIT_CHECKPOINT_SIG, 0,
                   "%s: signature does not verify with the audit key (forged or altered)", label);
        goto out;
    }
    v->res->checkpoints++;
    if (hsmca_audit_checkpoint_parse((const char *)text, tl, f) != HSMCA_OK) {
        rc = vfail(v, HSMCA_E_AUDIT_CHECKPOINT, 0, "%s: not an hsmca-checkpoint/v1 text", label);
        goto out;
    }
    if (memcmp(f->key, v->kid, HSMCA_SHA256_LEN) != 0) {
        rc = vfail(v, HSMCA_E_AUDIT_CHECKPOINT, f->size, "%s: made for another audit key", label);
        goto out;
    }
    if (v->origin[0] == '\0')
        snprintf(v->origin, sizeof(v->origin), "%s", f->origin);
    else if (strcmp(v->origin, f->origin) != 0) {
        rc = vfail(v, HSMCA_E_AUDIT_CHECKPOINT, f->size, "%s: origin %s is not %s", label,
                   f->origin, v->origin);
        goto out;
    }
    rc = digest(v, text, tl, hash);
out:
    free(text);
    free(sig);
    return rc;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* checkpoints/: exactly N.txt + N.sig pairs. */
static enum hsmca_err
list_cps(struct vctx *v, uint64_t **out, size_t *n)
{
    char path[HSMCA_PATH_MAX + 64];
    uint64_t *sizes = NULL;
    size_t k = 0, cap = 0, txt = 0, sigs = 0;
    enum hsmca_err grc;
    struct dirent *de;
    DIR *d;

    snprintf(path, sizeof(path), "%s/checkpoints", v->dir);
    d = opendir(path);
    if (d == NULL)
        return vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "checkpoints/ missing");
    while ((de = readdir(d)) != NULL) {
        const char *dot = strrchr(de->d_name, '.');
        uint64_t s;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (dot == NULL || (strcmp(dot, ".txt") != 0 && strcmp(dot, ".sig") != 0) ||
            hsmca_parse_u64(de->d_name, (size_t)(dot - de->d_name), INT64_MAX, &s) != HSMCA_OK) {
            /* the message first: de points into d, which closedir frees */
            enum hsmca_err rc = vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0,
                                      "checkpoints/%.64s: unexpected file", de->d_name);

            closedir(d);
            free(sizes);
            return rc;
        }
        if (strcmp(dot, ".sig") == 0) {
            sigs++;
            continue;
        }
        txt++;
        grc = hsmca_grow(&sizes, &cap, k + 1, sizeof(*sizes), VERIFY_ITEMS_MAX);
        if (grc != HSMCA_OK) {
            closedir(d);
            free(sizes);
            return grc;
        }
        sizes[k++] = s;
    }
    closedir(d);
    if (k > 0)
        qsort(sizes, k, sizeof(*sizes), cmp_u64);
    if (txt != sigs) {
        free(sizes);
        return vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0,
                     "checkpoints/: %zu texts but %zu signatures", txt, sigs);
    }
    *out = sizes;
    *n = k;
    return HSMCA_OK;
}

/* ---- quorum ---- */

static void
epochs_free(struct vctx *v)
{
    size_t i, j;

    for (i = 0; i < v->nep; i++) {
        for (j = 0; j < v->ep[i].n; j++)
            EVP_PKEY_free(v->ep[i].v[j].key);
        free(v->ep[i].v);
        json_decref(v->ep[i].thresholds);
    }
    free(v->ep);
    v->ep = NULL;
    v->nep = 0;
}

/* A base64 field of the quorum's details: strict (b64.h), as the quorum wrote it. */
static unsigned char *
b64_field(const char *s, size_t *out_len)
{
    unsigned char *out = NULL;

    return hsmca_b64_decode(s, (1 << 20) / 4 * 3, &out, out_len) == HSMCA_OK ? out : NULL;
}

/* A quorum.epoch detail: {"epoch", "approvers": [{"name","spki"}], "thresholds"}. */
static enum hsmca_err
add_epoch(struct vctx *v, uint64_t seq, const char *detail, size_t len)
{
    json_t *d = json_loadb(detail, len, JSON_REJECT_DUPLICATES, NULL), *ap, *th, *x;
    struct epoch e;
    json_int_t en;
    size_t i;
    enum hsmca_err rc = HSMCA_OK;

    memset(&e, 0, sizeof(e));
    if (d == NULL || !json_is_integer(json_object_get(d, "epoch")) ||
        !json_is_array(ap = json_object_get(d, "approvers")) ||
        !json_is_object(th = json_object_get(d, "thresholds"))) {
        rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq, "seq %llu: quorum.epoch detail is malformed",
                   (unsigned long long)seq);
        goto out;
    }
    en = json_integer_value(json_object_get(d, "epoch"));
    e.epoch = en;
    e.v = calloc(json_array_size(ap) + 1, sizeof(*e.v));
    if (e.v == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    json_array_foreach(ap, i, x)
    {
        const char *name = json_string_value(json_object_get(x, "name"));
        const char *spki = json_string_value(json_object_get(x, "spki"));
        unsigned char *der = NULL, md[HSMCA_SHA256_LEN];
        const unsigned char *p;
        size_t dl = 0;

        if (name == NULL || spki == NULL || strlen(name) > HSMCA_AUDIT_FIELD_MAX ||
            (der = b64_field(spki, &dl)) == NULL) {
            rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq,
                       "seq %llu: approver %zu of epoch %lld is malformed", (unsigned long long)seq,
                       i, (long long)en);
            goto out;
        }
        p = der;
        e.v[e.n].key = d2i_PUBKEY(NULL, &p, (long)dl);
        if (e.v[e.n].key == NULL || p != der + dl) {
            free(der);
            rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq, "seq %llu: approver %s has no valid key",
                       (unsigned long long)seq, name);
            goto out;
        }
        (void)EVP_Digest(der, dl, md, NULL, EVP_sha256(), NULL);
        hsmca_hex_encode(md, HSMCA_SHA256_LEN, e.v[e.n].fp, sizeof(e.v[e.n].fp));
        free(der);
        snprintf(e.v[e.n].name, sizeof(e.v[e.n].name), "%s", name);
        e.n++;
    }
    e.thresholds = json_incref(th);
    rc = hsmca_grow(&v->ep, &v->epcap, v->nep + 1, sizeof(*v->ep), VERIFY_ITEMS_MAX);
    if (rc != HSMCA_OK)
        goto out;
    v->ep[v->nep++] = e;
    memset(&e, 0, sizeof(e));
out:
    for (i = 0; i < e.n; i++)
        EVP_PKEY_free(e.v[i].key);
    free(e.v);
    json_decref(e.thresholds);
    json_decref(d);
    return rc;
}

static const struct epoch *
find_epoch(struct vctx *v, json_int_t e)
{
    size_t i;

    for (i = v->nep; i > 0; i--) {
        if (v->ep[i - 1].epoch == e)
            return &v->ep[i - 1];
    }
    return NULL;
}

/* A quorum.execute detail re-checked against the epoch it names. */
static enum hsmca_err
check_execute(struct vctx *v, uint64_t seq, const char *detail, size_t len)
{
    json_t *d = json_loadb(detail, len, JSON_REJECT_DUPLICATES, NULL), *apps, *x, *req = NULL;
    const char *op, *reqb64, *rq_name = "", *rq_key = "";
    const struct epoch *e;
    unsigned char *rb = NULL, md[HSMCA_SHA256_LEN];
    size_t rl = 0, i, j, count = 0;
    json_int_t need, thr;
    char **seen = NULL;
    enum hsmca_err rc = HSMCA_OK;

    if (d == NULL || (op = json_string_value(json_object_get(d, "op"))) == NULL ||
        !json_is_integer(json_object_get(d, "epoch")) ||
        !json_is_integer(json_object_get(d, "threshold")) ||
        (reqb64 = json_string_value(json_object_get(d, "request"))) == NULL ||
        !json_is_array(apps = json_object_get(d, "approvals"))) {
        rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq, "seq %llu: quorum.execute detail is malformed",
                   (unsigned long long)seq);
        goto out;
    }
    e = find_epoch(v, json_integer_value(json_object_get(d, "epoch")));
    if (e == NULL) {
        rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq,
                   "seq %llu: epoch %lld is neither in the extract nor in approvers.json",
                   (unsigned long long)seq,
                   (long long)json_integer_value(json_object_get(d, "epoch")));
        goto out;
    }
    thr = json_integer_value(json_object_get(d, "threshold"));
    if (!json_is_integer(json_object_get(e->thresholds, op)) && hsmca_qop_find(op) != NULL &&
        hsmca_qop_find(op)->threshold_of != NULL)
        op = hsmca_qop_find(op)->threshold_of; /* as the quorum counted it (quorum.c) */
    if (!json_is_integer(json_object_get(e->thresholds, op))) {
        rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq, "seq %llu: epoch %lld has no threshold for %s",
                   (unsigned long long)seq, (long long)e->epoch, op);
        goto out;
    }
    need = json_integer_value(json_object_get(e->thresholds, op));
    if (thr < need || need < 1) {
        rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq,
                   "seq %llu: threshold %lld is below the policy's %lld for %s",
                   (unsigned long long)seq, (long long)thr, (long long)need, op);
        goto out;
    }
    rb = b64_field(reqb64, &rl);
    if (rb == NULL) {
        rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq, "seq %llu: request is not base64",
                   (unsigned long long)seq);
        goto out;
    }
    req = json_loadb((const char *)rb, rl, 0, NULL);
    if (req != NULL) {
        json_t *r = json_object_get(req, "requester");

        if (json_is_string(r)) {
            rq_name = json_string_value(r);
        } else if (json_is_object(r)) {
            const char *s;

            if ((s = json_string_value(json_object_get(r, "principal"))) != NULL ||
                (s = json_string_value(json_object_get(r, "name"))) != NULL)
                rq_name = s;
            if ((s = json_string_value(json_object_get(r, "key"))) != NULL ||
                (s = json_string_value(json_object_get(r, "fingerprint"))) != NULL)
                rq_key = s;
        }
    }
    if (hsmca_approval_digest(rb, rl, md) != 0) {
        rc = HSMCA_E_INTERNAL;
        goto out;
    }
    seen = calloc(json_array_size(apps) + 1, sizeof(*seen));
    if (seen == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    json_array_foreach(apps, i, x)
    {
        const char *name = json_string_value(json_object_get(x, "approver"));
        const char *sigb64 = json_string_value(json_object_get(x, "sig"));
        const struct approver *ap = NULL;
        unsigned char *sig = NULL;
        size_t sl = 0;
        int ok;

        if (name == NULL || sigb64 == NULL ||
            hsmca_approval_sig_decode(sigb64, &sig, &sl) != HSMCA_OK) {
            rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq, "seq %llu: approval %zu is malformed",
                       (unsigned long long)seq, i);
            goto out;
        }
        for (j = 0; j < e->n; j++) {
            if (strcmp(e->v[j].name, name) == 0)
                ap = &e->v[j];
        }
        for (j = 0; j < count; j++) {
            if (strcmp(seen[j], name) == 0)
                ap = NULL;
        }
        if (ap == NULL) {
            free(sig);
            rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq,
                       "seq %llu: approver %.64s is not enrolled in epoch %lld or counted twice",
                       (unsigned long long)seq, name, (long long)e->epoch);
            goto out;
        }
        if (hsmca_approval_by_requester(name, ap->fp, rq_name, rq_key)) {
            free(sig);
            rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq,
                       "seq %llu: the requester %.64s approved its own request",
                       (unsigned long long)seq, name);
            goto out;
        }
        ok = hsmca_approval_sig_valid(ap->key, md, sig, sl);
        free(sig);
        if (!ok) {
            rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq,
                       "seq %llu: the approval by %.64s does not verify over the request",
                       (unsigned long long)seq, name);
            goto out;
        }
        seen[count++] = (char *)ap->name;
    }
    if ((json_int_t)count < thr) {
        rc = vfail(v, HSMCA_E_AUDIT_QUORUM, seq,
                   "seq %llu: %zu valid distinct approvals, %lld needed for %s",
                   (unsigned long long)seq, count, (long long)thr, op);
        goto out;
    }
    v->res->quorum_ops++;
out:
    free(seen);
    free(rb);
    json_decref(req);
    json_decref(d);
    return rc;
}

static enum hsmca_err
load_approvers(struct vctx *v)
{
    unsigned char *buf = NULL;
    size_t len = 0, i;
    json_t *j = NULL, *eps, *x;
    enum hsmca_err rc;

    rc = read_in(v, "approvers.json", 16 << 20, &buf, &len);
    if (rc != HSMCA_OK)
        return HSMCA_OK; /* optional */
    j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    eps = json_object_get(j, "epochs");
    if (!json_is_array(eps)) {
        rc = vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "approvers.json: no epochs array");
        goto out;
    }
    json_array_foreach(eps, i, x)
    {
        struct hsmca_audit_line l;
        const char *s = json_string_value(x);

        if (s == NULL || hsmca_audit_line_parse(s, strlen(s), &l, NULL) != HSMCA_OK ||
            l.action_len != 12 || memcmp(l.action, "quorum.epoch", 12) != 0) {
            rc = vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0,
                       "approvers.json: epoch %zu is not a quorum.epoch entry line", i);
            goto out;
        }
        rc = add_epoch(v, l.seq, l.detail, l.detail_len);
        if (rc != HSMCA_OK)
            goto out;
    }
out:
    json_decref(j);
    free(buf);
    return rc;
}

static enum hsmca_err
check_manifest_files(struct vctx *v, json_t *m)
{
    json_t *files = json_object_get(m, "files"), *x;
    const char *name;

    if (!json_is_object(files))
        return vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "manifest.json: no files");
    json_object_foreach(files, name, x)
    {
        unsigned char *buf = NULL, md[HSMCA_SHA256_LEN];
        size_t len = 0;
        char hex[HSMCA_SHA256_HEX_SIZE];
        const char *want = json_string_value(x);

        if (want == NULL || strstr(name, "..") != NULL || name[0] == '/')
            return vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "manifest.json: bad file entry");
        if (strcmp(name, "entries.jsonl") == 0)
            continue; /* every byte of it is already checked by the chain and its LFs */
        if (read_in(v, name, (size_t)1 << 34, &buf, &len) != HSMCA_OK)
            return vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "%.64s: listed but missing", name);
        (void)digest(v, buf, len, md);
        free(buf);
        hsmca_hex_encode(md, HSMCA_SHA256_LEN, hex, sizeof(hex));
        if (strcmp(hex, want) != 0)
            return vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0,
                         "%.64s: its SHA-256 differs from manifest.json", name);
    }
    return HSMCA_OK;
}

static enum hsmca_err
load_previous(struct vctx *v, const char *path, struct hsmca_audit_cp_fields *f)
{
    unsigned char *text = NULL, *sig = NULL;
    size_t tl = 0, sl = 0, n;
    char sp[HSMCA_PATH_MAX + 8];
    enum hsmca_err rc;

    rc = hsmca_read_file(path, 1024, &text, &tl);
    if (rc != HSMCA_OK)
        return vfail(v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "previous checkpoint: cannot read %.200s",
                     path);
    if (hsmca_audit_checkpoint_parse((const char *)text, tl, f) != HSMCA_OK) {
        rc = vfail(v, HSMCA_E_AUDIT_CHECKPOINT, 0, "previous checkpoint: not hsmca-checkpoint/v1");
        goto out;
    }
    /* its signature, if the auditor kept it beside the text (X.sig for X.txt, or X.sig) */
    n = strlen(path);
    if (n > 4 && n < HSMCA_PATH_MAX && strcmp(path + n - 4, ".txt") == 0)
        snprintf(sp, sizeof(sp), "%.*s.sig", (int)(n - 4), path);
    else
        snprintf(sp, sizeof(sp), "%.4090s.sig", path);
    if (hsmca_read_file(sp, 128, &sig, &sl) == HSMCA_OK &&
        hsmca_audit_sig_verify(v->pub, text, tl, sig, sl) != HSMCA_OK) {
        rc = vfail(v, HSMCA_E_AUDIT_CHECKPOINT_SIG, 0,
                   "previous checkpoint: its signature does not verify with this extract's key");
        goto out;
    }
    if (memcmp(f->key, v->kid, HSMCA_SHA256_LEN) != 0 || strcmp(f->origin, v->origin) != 0) {
        rc = vfail(v, HSMCA_E_AUDIT_FORK, 0,
                   "previous checkpoint: another log (origin or audit key differs)");
        goto out;
    }
    rc = HSMCA_OK;
out:
    free(text);
    free(sig);
    return rc;
}

/* ---- the line loop ---- */

#define PARALLEL_MIN (4 << 20) /* bytes of entries.jsonl before a second thread pays */

struct qline {
    const char *p;
    size_t len;
    uint64_t seq;
};

struct scan {
    struct vctx *v;
    const struct hsmca_audit_verify_opts *opts;
    const struct hsmca_audit_cp_fields *pf; /* the auditor's previous checkpoint, or NULL */
    uint64_t from;
    uint64_t expect; /* next seq; 0: take it from the first line (second half) */
    unsigned char prev[HSMCA_SHA256_LEN];
    char last_time[HSMCA_AUDIT_TIME_LEN];
    size_t k; /* next checkpoint to meet */
    int prev_seen;
    int collect; /* record quorum lines (parallel) instead of checking them in order */
    struct qline *q;
    size_t nq, qcap;
    uint64_t first_seq, last_seq, entries;
    unsigned char first_prev[HSMCA_SHA256_LEN];
    char first_time[HSMCA_AUDIT_TIME_LEN];
    EVP_MD_CTX *md;
    EVP_MD *sha256;
    uint64_t bad_seq;
    char why[512];
};

static void
scan_reset(struct scan *sc)
{
    struct vctx *v = sc->v;
    const struct hsmca_audit_verify_opts *opts = sc->opts;
    const struct hsmca_audit_cp_fields *pf = sc->pf;
    uint64_t from = sc->from;
    int prev_seen = sc->prev_seen;

    free(sc->q);
    memset(sc, 0, sizeof(*sc));
    sc->v = v;
    sc->opts = opts;
    sc->pf = pf;
    sc->from = from;
    sc->prev_seen = prev_seen;
}

static enum hsmca_err sfail(struct scan *sc, enum hsmca_err rc, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum hsmca_err
sfail(struct scan *sc, enum hsmca_err rc, uint64_t seq, const char *fmt, ...)
{
    va_list ap;

    sc->bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(sc->why, sizeof(sc->why), fmt, ap);
    va_end(ap);
    return rc;
}

static enum hsmca_err
quorum_line(struct scan *sc, uint64_t seq, const struct hsmca_audit_line *l, const char *p,
            size_t len)
{
    int epoch = l->action_len == 12 && memcmp(l->action, "quorum.epoch", 12) == 0;
    int exec = l->action_len == 14 && memcmp(l->action, "quorum.execute", 14) == 0 &&
               l->outcome_len == 2 && memcmp(l->outcome, "ok", 2) == 0;
    enum hsmca_err rc;

    if (!epoch && !exec)
        return HSMCA_OK;
    if (sc->collect) {
        rc = hsmca_grow(&sc->q, &sc->qcap, sc->nq + 1, sizeof(*sc->q), VERIFY_ITEMS_MAX);
        if (rc != HSMCA_OK)
            return rc;
        sc->q[sc->nq].p = p;
        sc->q[sc->nq].len = len;
        sc->q[sc->nq].seq = seq;
        sc->nq++;
        return HSMCA_OK;
    }
    rc = epoch ? add_epoch(sc->v, seq, l->detail, l->detail_len)
               : check_execute(sc->v, seq, l->detail, l->detail_len);
    if (rc != HSMCA_OK)
        return sfail(sc, rc, sc->v->res->bad_seq, "%s", sc->v->res->why);
    return HSMCA_OK;
}

/* Check lines in [p, end): seqs, prev links, time order, checkpoint heads, the previous
 * checkpoint's head; quorum lines checked or collected. */
static enum hsmca_err
scan_lines(struct scan *sc, const char *p, const char *end)
{
    const struct vctx *v = sc->v;
    unsigned char h[HSMCA_SHA256_LEN];
    enum hsmca_err rc;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        struct hsmca_audit_line l;
        const char *why = NULL;
        size_t len;

        if (nl == NULL)
            return sfail(sc, HSMCA_E_AUDIT_CHAIN, sc->expect,
                         "seq %llu: the last line has no LF (cut or appended to)",
                         (unsigned long long)sc->expect);
        len = (size_t)(nl - p);
        if (hsmca_audit_line_parse(p, len, &l, &why) != HSMCA_OK)
            return sfail(sc, HSMCA_E_AUDIT_CHAIN, sc->expect, "seq %llu: malformed entry line (%s)",
                         (unsigned long long)sc->expect, why);
        if (sc->expect == 0) { /* the first line of a second half: link checked at the join */
            sc->expect = l.seq;
            sc->first_seq = l.seq;
            memcpy(sc->first_prev, l.prev, HSMCA_SHA256_LEN);
            memcpy(sc->prev, l.prev, HSMCA_SHA256_LEN);
            memcpy(sc->first_time, l.time, HSMCA_AUDIT_TIME_LEN);
            memcpy(sc->last_time, l.time, HSMCA_AUDIT_TIME_LEN);
            while (sc->k < v->ncps && v->cps[sc->k].size < l.seq)
                sc->k++;
        }
        if (l.seq != sc->expect)
            return sfail(sc, HSMCA_E_AUDIT_CHAIN, sc->expect,
                         "seq %llu: missing or out of order (found seq %llu): lines deleted, "
                         "inserted or reordered",
                         (unsigned long long)sc->expect, (unsigned long long)l.seq);
        if (CRYPTO_memcmp(l.prev, sc->prev, HSMCA_SHA256_LEN) != 0) {
            if (sc->expect == sc->from)
                return sfail(sc, HSMCA_E_AUDIT_CHAIN, sc->expect,
                             "seq %llu: prev is not the head of the anchor checkpoint",
                             (unsigned long long)sc->expect);
            return sfail(sc, HSMCA_E_AUDIT_CHAIN, sc->expect - 1,
                         "seq %llu: changed or replaced: its hash is not the prev of seq %llu",
                         (unsigned long long)sc->expect - 1, (unsigned long long)sc->expect);
        }
        if (sc->last_time[0] != '\0' && memcmp(l.time, sc->last_time, HSMCA_AUDIT_TIME_LEN) < 0)
            return sfail(sc, HSMCA_E_AUDIT_CHAIN, sc->expect,
                         "seq %llu: time goes backwards (entries reordered or rewritten)",
                         (unsigned long long)sc->expect);
        memcpy(sc->last_time, l.time, HSMCA_AUDIT_TIME_LEN);
        if (EVP_DigestInit_ex2(sc->md, sc->sha256, NULL) != 1 ||
            EVP_DigestUpdate(sc->md, p, len) != 1 || EVP_DigestFinal_ex(sc->md, h, NULL) != 1)
            return HSMCA_E_INTERNAL;
        if (sc->k < v->ncps && v->cps[sc->k].size == sc->expect) {
            if (CRYPTO_memcmp(h, v->cps[sc->k].head, HSMCA_SHA256_LEN) != 0)
                return sfail(sc, HSMCA_E_AUDIT_CHAIN, sc->expect,
                             "seq %llu: changed: its hash is not the head of checkpoint %llu",
                             (unsigned long long)sc->expect, (unsigned long long)sc->expect);
            sc->k++;
        }
        if (sc->pf != NULL && sc->pf->size == sc->expect) {
            sc->prev_seen = 1;
            if (CRYPTO_memcmp(h, sc->pf->head, HSMCA_SHA256_LEN) != 0)
                return sfail(sc, HSMCA_E_AUDIT_FORK, sc->expect,
                             "seq %llu differs from your checkpoint %llu (rewrite or fork)",
                             (unsigned long long)sc->expect, (unsigned long long)sc->pf->size);
        }
        rc = quorum_line(sc, sc->expect, &l, p, len);
        if (rc != HSMCA_OK)
            return rc;
        if (sc->opts != NULL && sc->opts->on_entry != NULL)
            sc->opts->on_entry(sc->opts->arg, sc->expect, h);
        memcpy(sc->prev, h, HSMCA_SHA256_LEN);
        sc->last_seq = sc->expect;
        sc->expect++;
        sc->entries++;
        p = nl + 1;
    }
    return HSMCA_OK;
}

struct half {
    struct scan sc;
    const char *p, *end;
    enum hsmca_err rc;
};

static void *
half_run(void *arg)
{
    struct half *h = arg;

    h->rc = scan_lines(&h->sc, h->p, h->end);
    return NULL;
}

/* The fast path: two halves at once, joined; HSMCA_OK only if the whole file is valid. */
static enum hsmca_err
scan_parallel(struct scan *out, const char *map, const char *end, uint64_t from,
              const unsigned char prev[HSMCA_SHA256_LEN])
{
    struct half hv[2];
    const char *mid = map + (end - map) / 2;
    pthread_t t;
    enum hsmca_err rc = HSMCA_E_AUDIT_CHAIN;
    size_t i;
    int started = 0;

    mid = memchr(mid, '\n', (size_t)(end - mid));
    if (mid == NULL || mid + 1 >= end)
        return HSMCA_E_AUDIT_CHAIN;
    mid++;
    memset(hv, 0, sizeof(hv));
    for (i = 0; i < 2; i++) {
        hv[i].sc.v = out->v;
        hv[i].sc.from = from;
        hv[i].sc.pf = out->pf;
        hv[i].sc.collect = 1;
        hv[i].sc.md = EVP_MD_CTX_new();
        hv[i].sc.sha256 = out->v->sha256;
        if (hv[i].sc.md == NULL)
            goto out;
    }
    hv[0].sc.expect = from;
    memcpy(hv[0].sc.prev, prev, HSMCA_SHA256_LEN);
    hv[0].p = map;
    hv[0].end = mid;
    hv[1].p = mid;
    hv[1].end = end;
    if (pthread_create(&t, NULL, half_run, &hv[1]) != 0)
        goto out;
    started = 1;
    half_run(&hv[0]);
    pthread_join(t, NULL);
    started = 0;
    if (hv[0].rc != HSMCA_OK || hv[1].rc != HSMCA_OK)
        goto out;
    /* the join: the second half goes on exactly where the first ended */
    if (hv[1].sc.first_seq != hv[0].sc.last_seq + 1 ||
        CRYPTO_memcmp(hv[1].sc.first_prev, hv[0].sc.prev, HSMCA_SHA256_LEN) != 0 ||
        memcmp(hv[1].sc.first_time, hv[0].sc.last_time, HSMCA_AUDIT_TIME_LEN) < 0 ||
        hv[0].sc.k > hv[1].sc.k)
        goto out;
    /* quorum lines in log order */
    out->collect = 0;
    for (i = 0; i < 2; i++) {
        size_t j;

        for (j = 0; j < hv[i].sc.nq; j++) {
            struct hsmca_audit_line l;

            if (hsmca_audit_line_parse(hv[i].sc.q[j].p, hv[i].sc.q[j].len, &l, NULL) != HSMCA_OK ||
                quorum_line(out, hv[i].sc.q[j].seq, &l, hv[i].sc.q[j].p, hv[i].sc.q[j].len) !=
                    HSMCA_OK)
                goto out;
        }
    }
    out->k = hv[1].sc.k;
    out->last_seq = hv[1].sc.last_seq;
    out->entries = hv[0].sc.entries + hv[1].sc.entries;
    out->prev_seen |= hv[0].sc.prev_seen | hv[1].sc.prev_seen;
    rc = HSMCA_OK;
out:
    if (started)
        pthread_join(t, NULL);
    for (i = 0; i < 2; i++) {
        EVP_MD_CTX_free(hv[i].sc.md);
        free(hv[i].sc.q);
    }
    if (rc != HSMCA_OK) {
        /* the sequential pass will redo the quorum checks from a clean epoch list */
        epochs_free(out->v);
    }
    return rc;
}

/*
 * The first PUBLIC KEY block of bio, whole (no trailing bytes in its DER). PEM_read_bio_PUBKEY
 * would do the same, but in OpenSSL 3.0 it tries every decoder the providers offer: three times
 * the cost of reading the block and decoding its DER as a SubjectPublicKeyInfo (docs/fuzzing.md).
 */
static EVP_PKEY *
pem_pubkey(BIO *bio)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    long len = 0;
    EVP_PKEY *k = NULL;

    if (PEM_bytes_read_bio(&der, &len, NULL, PEM_STRING_PUBLIC, bio, NULL, NULL) != 1)
        return NULL;
    p = der;
    if (len > 0 && (k = d2i_PUBKEY(NULL, &p, len)) != NULL && p != der + len) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    OPENSSL_free(der);
    return k;
}

enum hsmca_err
hsmca_audit_verify_extract(const char *dir, const struct hsmca_audit_verify_opts *opts,
                           struct hsmca_audit_verify_result *out)
{
    struct vctx v;
    struct hsmca_audit_cp_fields f, pf;
    unsigned char prev[HSMCA_SHA256_LEN], cpprev[HSMCA_SHA256_LEN], anchor_head[HSMCA_SHA256_LEN];
    struct scan sc;
    unsigned char *pem = NULL, *mbuf = NULL;
    uint64_t *sizes = NULL, from = 0, to = 0, last = 0;
    size_t plen = 0, mlen = 0, i, k = 0;
    json_t *m = NULL;
    BIO *bio = NULL;
    char path[HSMCA_PATH_MAX + 64];
    const char *map = NULL;
    struct stat sb;
    int fd = -1, have_prev = 0, prev_seen = 0;
    enum hsmca_err rc;

    if (dir == NULL || out == NULL || strlen(dir) > HSMCA_PATH_MAX)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    memset(&v, 0, sizeof(v));
    memset(&sc, 0, sizeof(sc));
    v.dir = dir;
    v.res = out;
    v.md = EVP_MD_CTX_new();
    v.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (v.md == NULL || v.sha256 == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    /* manifest and key */
    if (read_in(&v, "manifest.json", 1 << 20, &mbuf, &mlen) != HSMCA_OK ||
        (m = json_loadb((const char *)mbuf, mlen, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
        !json_is_integer(json_object_get(m, "from")) ||
        !json_is_integer(json_object_get(m, "to")) ||
        json_integer_value(json_object_get(m, "from")) < 1 ||
        json_integer_value(json_object_get(m, "to")) <
            json_integer_value(json_object_get(m, "from"))) {
        rc = vfail(&v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "manifest.json missing or malformed");
        goto out;
    }
    from = (uint64_t)json_integer_value(json_object_get(m, "from"));
    to = (uint64_t)json_integer_value(json_object_get(m, "to"));
    if (read_in(&v, "audit.pub.pem", 16384, &pem, &plen) != HSMCA_OK ||
        (bio = BIO_new_mem_buf(pem, (int)plen)) == NULL || (v.pub = pem_pubkey(bio)) == NULL ||
        hsmca_audit_key_id(v.pub, v.kid) != HSMCA_OK) {
        rc = vfail(&v, HSMCA_E_AUDIT_EXTRACT_INVALID, 0, "audit.pub.pem missing or not a key");
        goto out;
    }
    /* the anchor */
    memset(prev, 0, HSMCA_SHA256_LEN);
    memset(cpprev, 0, HSMCA_SHA256_LEN);
    memset(anchor_head, 0, HSMCA_SHA256_LEN);
    if (from > 1) {
        rc = load_cp(&v, "anchor", "anchor checkpoint", &f, cpprev);
        if (rc != HSMCA_OK)
            goto out;
        if (f.size != from - 1) {
            rc = vfail(&v, HSMCA_E_AUDIT_CHECKPOINT, from,
                       "anchor checkpoint: size %llu is not from-1 = %llu",
                       (unsigned long long)f.size, (unsigned long long)from - 1);
            goto out;
        }
        memcpy(prev, f.head, HSMCA_SHA256_LEN);
        memcpy(anchor_head, f.head, HSMCA_SHA256_LEN);
    }
    /* every checkpoint, linked by prev */
    rc = list_cps(&v, &sizes, &v.ncps);
    if (rc != HSMCA_OK)
        goto out;
    if (v.ncps == 0) {
        rc = vfail(&v, HSMCA_E_AUDIT_TRUNCATED, from, "no checkpoint in the extract");
        goto out;
    }
    v.cps = calloc(v.ncps, sizeof(*v.cps));
    if (v.cps == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    for (i = 0; i < v.ncps; i++) {
        char base[64], label[64];
        unsigned char hh[HSMCA_SHA256_LEN];

        snprintf(base, sizeof(base), "checkpoints/%llu", (unsigned long long)sizes[i]);
        snprintf(label, sizeof(label), "checkpoint %llu", (unsigned long long)sizes[i]);
        rc = load_cp(&v, base, label, &f, hh);
        if (rc != HSMCA_OK) {
            out->bad_seq = sizes[i];
            goto out;
        }
        if (f.size != sizes[i] || f.size < from) {
            rc = vfail(&v, HSMCA_E_AUDIT_CHECKPOINT, sizes[i],
                       "checkpoint %llu: its size line says %llu", (unsigned long long)sizes[i],
                       (unsigned long long)f.size);
            goto out;
        }
        if (memcmp(f.prev, cpprev, HSMCA_SHA256_LEN) != 0) {
            rc = vfail(&v, HSMCA_E_AUDIT_CHECKPOINT, sizes[i],
                       "checkpoint %llu: prev is not the hash of the checkpoint before it (one "
                       "was dropped or replaced)",
                       (unsigned long long)sizes[i]);
            goto out;
        }
        memcpy(cpprev, hh, HSMCA_SHA256_LEN);
        v.cps[i].size = f.size;
        memcpy(v.cps[i].head, f.head, HSMCA_SHA256_LEN);
    }
    rc = load_approvers(&v);
    if (rc != HSMCA_OK)
        goto out;
    if (opts != NULL && opts->previous_cp != NULL) {
        rc = load_previous(&v, opts->previous_cp, &pf);
        if (rc != HSMCA_OK)
            goto out;
        have_prev = 1;
        if (pf.size + 1 < from) {
            rc = vfail(&v, HSMCA_E_AUDIT_FORK, 0,
                       "the extract starts at seq %llu, after your checkpoint %llu: ask for an "
                       "extract from seq %llu or earlier to prove consistency",
                       (unsigned long long)from, (unsigned long long)pf.size,
                       (unsigned long long)pf.size + 1);
            goto out;
        }
        if (pf.size + 1 == from) {
            if (memcmp(pf.head, anchor_head, HSMCA_SHA256_LEN) != 0) {
                rc = vfail(&v, HSMCA_E_AUDIT_FORK, pf.size,
                           "seq %llu differs from your checkpoint (rewrite or fork)",
                           (unsigned long long)pf.size);
                goto out;
            }
            prev_seen = 1;
        }
    }
    /* the chain: two threads over two halves when nothing needs the lines in order; on any
     * doubt, one sequential pass names the first bad seq exactly */
    snprintf(path, sizeof(path), "%s/entries.jsonl", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size == 0) {
        rc = vfail(&v, HSMCA_E_AUDIT_EXTRACT_INVALID, from, "entries.jsonl missing or empty");
        goto out;
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        rc = HSMCA_E_IO;
        goto out;
    }
    (void)madvise((void *)map, (size_t)sb.st_size, MADV_SEQUENTIAL);
    memset(&sc, 0, sizeof(sc));
    sc.v = &v;
    sc.opts = opts;
    sc.from = from;
    sc.pf = have_prev ? &pf : NULL;
    sc.prev_seen = prev_seen;
    rc = HSMCA_E_AUDIT_CHAIN;
    if ((opts == NULL || opts->on_entry == NULL) && sb.st_size >= PARALLEL_MIN)
        rc = scan_parallel(&sc, map, map + sb.st_size, from, prev);
    if (rc != HSMCA_OK) {
        scan_reset(&sc);
        sc.expect = from;
        memcpy(sc.prev, prev, HSMCA_SHA256_LEN);
        sc.md = v.md;
        sc.sha256 = v.sha256;
        rc = scan_lines(&sc, map, map + sb.st_size);
        if (rc != HSMCA_OK) {
            out->bad_seq = sc.bad_seq;
            memcpy(out->why, sc.why, sizeof(out->why));
            goto out;
        }
    }
    k = sc.k;
    last = sc.last_seq;
    prev_seen = sc.prev_seen;
    out->entries = sc.entries;
    if (k < v.ncps) {
        rc = vfail(&v, HSMCA_E_AUDIT_TRUNCATED, last + 1,
                   "truncated: checkpoint %llu covers seq %llu but the entries end at seq %llu",
                   (unsigned long long)v.cps[k].size, (unsigned long long)v.cps[k].size,
                   (unsigned long long)last);
        goto out;
    }
    if (last != v.cps[v.ncps - 1].size) {
        rc = vfail(&v, HSMCA_E_AUDIT_TRUNCATED, v.cps[v.ncps - 1].size + 1,
                   "seq %llu..%llu: not covered by any checkpoint (checkpoints dropped?)",
                   (unsigned long long)v.cps[v.ncps - 1].size + 1, (unsigned long long)last);
        goto out;
    }
    if (last != to) {
        rc = vfail(&v, HSMCA_E_AUDIT_TRUNCATED, last + 1,
                   "truncated: manifest.json says to=%llu but the entries end at seq %llu",
                   (unsigned long long)to, (unsigned long long)last);
        goto out;
    }
    if (have_prev && !prev_seen) {
        rc = vfail(&v, HSMCA_E_AUDIT_TRUNCATED, last + 1,
                   "truncated or rolled back: your checkpoint covers seq %llu but the log "
                   "ends at seq %llu",
                   (unsigned long long)pf.size, (unsigned long long)last);
        goto out;
    }
    rc = check_manifest_files(&v, m);
    if (rc != HSMCA_OK)
        goto out;
    out->from = from;
    out->to = last;
    rc = HSMCA_OK;
out:
    if (map != NULL)
        munmap((void *)map, (size_t)sb.st_size);
    if (fd >= 0)
        close(fd);
    epochs_free(&v);
    free(v.cps);
    scan_reset(&sc);
    free(sizes);
    free(pem);
    free(mbuf);
    json_decref(m);
    BIO_free(bio);
    EVP_PKEY_free(v.pub);
    EVP_MD_CTX_free(v.md);
    EVP_MD_free(v.sha256);
    return rc;
}
