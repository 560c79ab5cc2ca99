/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_extract.c -- extract bundles of the audit log (layout: docs/audit-extract.md): the
 * entries of a range widened to checkpoint boundaries, the anchor checkpoint before it, every
 * checkpoint in it, the audit public key (and certificate), the approver sets in force, a
 * manifest, a README and verify.sh. As a directory or as an in-memory ustar archive.
 * Reads the store only; never changes or deletes an entry.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "hsmca/audit.h"
#include "hsmca/gbuf.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"
#include "hsmca/store_audit.h"
#include "hsmca/util.h"

#include "audit_internal.h"
#include "audit_verify_sh.h"

#define EXTRACT_FORMAT "hsmca-audit-extract/v1"
#define TAR_MAX ((size_t)1 << 31)
#define TAR_PARTS_MAX ((size_t)1 << 24)

static const char readme[] =
    "hsmca audit extract (" EXTRACT_FORMAT ")\n"
    "\n"
    "A slice of an hsmca audit log that verifies on its own, offline.\n"
    "\n"
    "  entries.jsonl         entries from..to, the exact bytes of each line, LF-terminated\n"
    "  checkpoints/N.txt     every signed checkpoint of size N in from..to (hsmca-checkpoint/v1)\n"
    "  checkpoints/N.sig     its DER ECDSA P-256 signature over SHA-256 of N.txt\n"
    "  anchor.txt, .sig      the checkpoint of size from-1 (absent when from = 1): its head is\n"
    "                        the prev of the first entry, so the slice links to what came before\n"
    "  audit.pub.pem         the audit public key; the `key` line of every checkpoint is the\n"
    "                        SHA-256 of its DER SubjectPublicKeyInfo\n"
    "  audit.crt.pem         the audit certificate, when the service has one\n"
    "  approvers.json        {\"epochs\": [lines]}: the original quorum.epoch entry lines in\n"
    "                        force at `from` (compare them with an earlier extract)\n"
    "  manifest.json         format, origin, from, to, counts, SHA-256 of every other file\n"
    "  verify.sh             checks all of it with sh, sha256sum, jq and openssl only\n"
    "\n"
    "Each entry is one line of compact JSON with sorted keys; `prev` is the SHA-256 (hex) of the\n"
    "previous line's exact bytes without the LF. `to` is always the size of a checkpoint, so "
    "every\n"
    "entry is covered by a signature. Check one checkpoint by hand:\n"
    "  openssl dgst -sha256 -verify audit.pub.pem -signature checkpoints/N.sig checkpoints/N.txt\n"
    "Run `sh verify.sh` here, or `hsmca audit verify DIR [--previous your-last-checkpoint.txt]`,\n"
    "which also proves that the log extends a checkpoint you kept (no rewrite, truncation, "
    "fork).\n";

static enum hsmca_err
write_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
    char path[HSMCA_PATH_MAX + 128];
    FILE *f;
    int ok;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wx");
    if (f == NULL)
        return errno == EEXIST ? HSMCA_E_EXISTS : HSMCA_E_IO;
    ok = fwrite(data, 1, len, f) == len;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (ok && chmod(path, mode) != 0)
        ok = 0;
    return ok ? HSMCA_OK : HSMCA_E_IO;
}

/* j (NULL: out of memory) as indented JSON with sorted keys into dir/name, mode 0644 */
static enum hsmca_err
write_json(const char *dir, const char *name, const json_t *j)
{
    char *txt = j != NULL ? json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    enum hsmca_err rc;

    if (txt == NULL)
        return HSMCA_E_NOMEM;
    rc = write_file(dir, name, txt, strlen(txt), 0644);
    free(txt);
    return rc;
}

static enum hsmca_err
file_sha256(const char *dir, const char *name, char hex[HSMCA_SHA256_HEX_SIZE])
{
    char path[HSMCA_PATH_MAX + 128];
    unsigned char buf[65536], md[HSMCA_SHA256_LEN];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *f;
    size_t n;
    int ok = 1;

    if (ctx == NULL)
        return HSMCA_E_NOMEM;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (f == NULL) {
        EVP_MD_CTX_free(ctx);
        return HSMCA_E_IO;
    }
    ok &= EVP_DigestInit_ex2(ctx, EVP_sha256(), NULL) == 1;
    while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        ok &= EVP_DigestUpdate(ctx, buf, n) == 1;
    ok &= !ferror(f);
    ok &= EVP_DigestFinal_ex(ctx, md, NULL) == 1;
    fclose(f);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return HSMCA_E_IO;
    hsmca_hex_encode(md, HSMCA_SHA256_LEN, hex, HSMCA_SHA256_HEX_SIZE);
    return HSMCA_OK;
}

struct lines_out {
    FILE *f;
    uint64_t n;
    int err;
};

static enum hsmca_err
put_line(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    struct lines_out *o = arg;

    if (fwrite(line, 1, len, o->f) != len || fputc('\n', o->f) == EOF)
        return HSMCA_E_IO;
    o->n++;
    return HSMCA_OK;
}

/* The last quorum.epoch line before `before` (for approvers.json). */
struct epoch_find {
    char *line;
    size_t len;
};

static enum hsmca_err
find_epoch(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    struct epoch_find *e = arg;
    struct hsmca_audit_line l;
    char *copy;

    if (hsmca_audit_line_parse(line, len, &l, NULL) != HSMCA_OK)
        return HSMCA_OK; /* the verifier names it; extracting copies bytes as they are */
    if (l.action_len != 12 || memcmp(l.action, "quorum.epoch", 12) != 0)
        return HSMCA_OK;
    copy = malloc(len + 1);
    if (copy == NULL)
        return HSMCA_E_NOMEM;
    memcpy(copy, line, len);
    copy[len] = '\0';
    free(e->line);
    e->line = copy;
    e->len = len;
    return HSMCA_OK;
}

static enum hsmca_err
write_cp(const char *dir, const char *base, const struct hsmca_audit_checkpoint *cp)
{
    char name[64];
    enum hsmca_err rc;

    snprintf(name, sizeof(name), "%s.txt", base);
    rc = write_file(dir, name, cp->text, cp->text_len, 0644);
    if (rc != HSMCA_OK)
        return rc;
    snprintf(name, sizeof(name), "%s.sig", base);
    return write_file(dir, name, cp->sig, cp->sig_len, 0644);
}

enum hsmca_err
hsmca_audit_extract_store(struct hsmca_store *st, uint64_t from, uint64_t to,
                          const char *approvers_json, const char *cert_pem, const char *dir)
{
    struct hsmca_audit_checkpoint anchor, end, cp;
    struct hsmca_audit_cp_fields f;
    struct lines_out lo = {NULL, 0, 0};
    struct epoch_find ef = {NULL, 0};
    unsigned char head_hash[HSMCA_SHA256_LEN];
    uint64_t head = 0, s, ncp = 0;
    char path[HSMCA_PATH_MAX + 128], hex[HSMCA_SHA256_HEX_SIZE], name[64], *pem = NULL;
    json_t *files = NULL, *m = NULL, *appr = NULL;
    enum hsmca_err rc;

    memset(&anchor, 0, sizeof(anchor));
    memset(&end, 0, sizeof(end));
    memset(&cp, 0, sizeof(cp));
    if (st == NULL || dir == NULL || strlen(dir) > HSMCA_PATH_MAX)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_store_audit_head(st, &head, head_hash);
    if (rc != HSMCA_OK)
        return rc;
    if (from == 0)
        from = 1;
    if (to == 0)
        to = head;
    if (head == 0 || from > to || to > head)
        return HSMCA_E_AUDIT_RANGE;
    /* widen to checkpoint boundaries: the anchor at from-1, a checkpoint at to */
    if (from > 1) {
        rc = hsmca_store_audit_cp_at_most(st, from - 1, &anchor);
        if (rc != HSMCA_OK)
            goto out;
        from = anchor.size + 1;
    }
    rc = hsmca_store_audit_cp_at_least(st, to, &end);
    if (rc == HSMCA_E_NOT_FOUND)
        rc = HSMCA_E_AUDIT_RANGE; /* no checkpoint covers `to` yet */
    if (rc != HSMCA_OK)
        goto out;
    to = end.size;
    rc = hsmca_store_meta_get(st, AUDIT_META_PUBKEY, &pem);
    if (rc != HSMCA_OK)
        goto out;
    if (mkdir(dir, 0755) != 0) {
        rc = errno == EEXIST ? HSMCA_E_EXISTS : HSMCA_E_IO;
        goto out;
    }
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    if (mkdir(path, 0755) != 0) {
        rc = HSMCA_E_IO;
        goto out;
    }
    /* entries */
    snprintf(path, sizeof(path), "%s/entries.jsonl", dir);
    lo.f = fopen(path, "wx");
    if (lo.f == NULL) {
        rc = HSMCA_E_IO;
        goto out;
    }
    rc = hsmca_store_audit_scan(st, from, to, put_line, &lo);
    if (fflush(lo.f) != 0 || fsync(fileno(lo.f)) != 0)
        rc = rc == HSMCA_OK ? HSMCA_E_IO : rc;
    if (fclose(lo.f) != 0 && rc == HSMCA_OK)
        rc = HSMCA_E_IO;
    lo.f = NULL;
    if (rc != HSMCA_OK)
        goto out;
    if (lo.n != to - from + 1) {
        rc = HSMCA_E_AUDIT_CHAIN; /* a gap in the store */
        goto out;
    }
    /* checkpoints in the range */
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    for (s = from; s <= to; s = cp.size + 1) {
        hsmca_audit_checkpoint_clear(&cp);
        rc = hsmca_store_audit_cp_at_least(st, s, &cp);
        if (rc != HSMCA_OK)
            goto out;
        if (cp.size > to)
            break;
        snprintf(name, sizeof(name), "%llu", (unsigned long long)cp.size);
        rc = write_cp(path, name, &cp);
        if (rc != HSMCA_OK)
            goto out;
        ncp++;
    }
    if (anchor.size > 0) {
        rc = write_cp(dir, "anchor", &anchor);
        if (rc != HSMCA_OK)
            goto out;
    }
    rc = write_file(dir, "audit.pub.pem", pem, strlen(pem), 0644);
    if (rc == HSMCA_OK && cert_pem != NULL)
        rc = write_file(dir, "audit.crt.pem", cert_pem, strlen(cert_pem), 0644);
    if (rc != HSMCA_OK)
        goto out;
    /* approver sets in force at from */
    if (approvers_json == NULL) {
        if (from > 1) {
            rc = hsmca_store_audit_scan(st, 1, from - 1, find_epoch, &ef);
            if (rc != HSMCA_OK)
                goto out;
        }
        appr = json_pack("{s:[]}", "epochs");
        if (appr != NULL && ef.line != NULL &&
            json_array_append_new(json_object_get(appr, "epochs"), json_string(ef.line)) != 0) {
            rc = HSMCA_E_NOMEM;
            goto out;
        }
        rc = write_json(dir, "approvers.json", appr);
    } else {
        rc = write_file(dir, "approvers.json", approvers_json, strlen(approvers_json), 0644);
    }
    if (rc == HSMCA_OK)
        rc = write_file(dir, "README", readme, sizeof(readme) - 1, 0644);
    if (rc == HSMCA_OK)
        rc = write_file(dir, "verify.sh", audit_verify_sh, AUDIT_VERIFY_SH_LEN, 0755);
    if (rc != HSMCA_OK)
        goto out;
    /* the manifest: what is here and the SHA-256 of each file */
    files = json_object();
    if (files == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    {
        static const char *const fixed[] = {"entries.jsonl", "audit.pub.pem", "approvers.json",
                                            "README", "verify.sh"};
        size_t i;

        for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
            rc = file_sha256(dir, fixed[i], hex);
            if (rc != HSMCA_OK || json_object_set_new(files, fixed[i], json_string(hex)) != 0)
                goto out;
        }
        if (cert_pem != NULL) {
            rc = file_sha256(dir, "audit.crt.pem", hex);
            if (rc != HSMCA_OK || json_object_set_new(files, "audit.crt.pem", json_string(hex)))
                goto out;
        }
        if (anchor.size > 0) {
            rc = file_sha256(dir, "anchor.txt", hex);
            if (rc == HSMCA_OK)
                rc = json_object_set_new(files, "anchor.txt", json_string(hex)) == 0
                         ? file_sha256(dir, "anchor.sig", hex)
                         : HSMCA_E_NOMEM;
            if (rc != HSMCA_OK || json_object_set_new(files, "anchor.sig", json_string(hex)))
                goto out;
        }
    }
    if (hsmca_audit_checkpoint_parse(end.text, end.text_len, &f) != HSMCA_OK) {
        rc = HSMCA_E_AUDIT_CHECKPOINT;
        goto out;
    }
    m = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "format", EXTRACT_FORMAT, "origin",
                  f.origin, "from", (json_int_t)from, "to", (json_int_t)to, "entries",
                  (json_int_t)lo.n, "checkpoints", (json_int_t)ncp, "files", files);
    files = NULL;
    if (m == NULL || json_object_set_new(m, "anchor",
                                         anchor.size > 0 ? json_integer((json_int_t)anchor.size)
                                                         : json_null()) != 0) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    rc = write_json(dir, "manifest.json", m);
out:
    if (lo.f != NULL)
        fclose(lo.f);
    hsmca_audit_checkpoint_clear(&anchor);
    hsmca_audit_checkpoint_clear(&end);
    hsmca_audit_checkpoint_clear(&cp);
    free(ef.line);
    free(pem);
    json_decref(files);
    json_decref(m);
    json_decref(appr);
    return rc;
}

/* Make sure a checkpoint covers `to` (0: the head), then extract from the store. */
enum hsmca_err
hsmca_audit_extract(struct hsmca_audit *a, uint64_t from, uint64_t to, const char *approvers_json,
                    const char *dir)
{
    struct hsmca_audit_checkpoint cp;
    enum hsmca_err rc;

    if (a == NULL || dir == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(&cp, 0, sizeof(cp));
    if (to > hsmca_audit_size(a))
        return HSMCA_E_AUDIT_RANGE;
    rc = hsmca_audit_latest_checkpoint(a, &cp);
    if (rc != HSMCA_OK && rc != HSMCA_E_NOT_FOUND)
        return rc;
    if (rc == HSMCA_E_NOT_FOUND || to == 0 || cp.size < to) {
        hsmca_audit_checkpoint_clear(&cp);
        rc = hsmca_audit_checkpoint(a, &cp);
        if (rc != HSMCA_OK)
            return rc;
        if (to == 0)
            to = cp.size;
    }
    hsmca_audit_checkpoint_clear(&cp);
    return hsmca_audit_extract_store(audit_store(a), from, to, approvers_json, audit_cert(a), dir);
}

/* ---- ustar, streamed from the bundle's files ---- */

/* One member: its 512-byte header, then (files) the file's bytes and zero padding to 512. */
struct tar_part {
    unsigned char hdr[512];
    char *path; /* NULL for a directory */
    uint64_t size, off;
};

struct hsmca_audit_tar {
    char tmp[HSMCA_PATH_MAX]; /* the temporary directory, removed by hsmca_audit_tar_free */
    struct tar_part *p;
    size_t n, cap;
    uint64_t total; /* members and the two zero blocks that end the archive */
    size_t cur;     /* the part of the last read, and its open file */
    int fd;
};

static uint64_t
part_len(const struct tar_part *t)
{
    return 512 + t->size + (512 - t->size % 512) % 512;
}

static enum hsmca_err
tar_add(struct hsmca_audit_tar *t, const char *name, const char *path, uint64_t size, unsigned mode)
{
    struct tar_part *q;
    enum hsmca_err rc;
    unsigned char *h;
    unsigned sum = 0;
    size_t i;

    if (strlen(name) >= 100)
        return HSMCA_E_TOO_LARGE;
    if (size > TAR_MAX || t->total > TAR_MAX)
        return HSMCA_E_TOO_LARGE;
    rc = hsmca_grow(&t->p, &t->cap, t->n + 1, sizeof(*t->p), TAR_PARTS_MAX);
    if (rc != HSMCA_OK)
        return rc;
    q = &t->p[t->n];
    memset(q, 0, sizeof(*q));
    if (path != NULL && (q->path = strdup(path)) == NULL)
        return HSMCA_E_NOMEM;
    q->size = size;
    q->off = t->total;
    h = q->hdr;
    memcpy(h, name, strlen(name));
    snprintf((char *)h + 100, 8, "%07o", mode);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = path == NULL ? '5' : '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    for (i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    t->n++;
    t->total += part_len(q);
    return HSMCA_OK;
}

static enum hsmca_err
tar_file(struct hsmca_audit_tar *t, const char *dir, const char *rel, const char *top)
{
    char path[HSMCA_PATH_MAX + 256], name[256];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    snprintf(name, sizeof(name), "%s/%s", top, rel);
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return HSMCA_E_IO;
    return tar_add(t, name, path, (uint64_t)sb.st_size, (unsigned)(sb.st_mode & 0777));
}

static void
rmtree(const char *dir)
{
    char path[HSMCA_PATH_MAX + 256];
    struct dirent *de;
    DIR *d = opendir(dir);

    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            struct stat sb;

            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
                rmtree(path);
            else
                (void)unlink(path);
        }
        closedir(d);
    }
    (void)rmdir(dir);
}

void
hsmca_audit_tar_free(struct hsmca_audit_tar *t)
{
    size_t i;

    if (t == NULL)
        return;
    if (t->fd >= 0)
        close(t->fd);
    for (i = 0; i < t->n; i++)
        free(t->p[i].path);
    free(t->p);
    rmtree(t->tmp);
    free(t);
}

uint64_t
hsmca_audit_tar_size(const struct hsmca_audit_tar *t)
{
    return t != NULL ? t->total : 0;
}

ssize_t
hsmca_audit_tar_read(struct hsmca_audit_tar *t, uint64_t pos, unsigned char *buf, size_t max)
{
    size_t done = 0;

    if (t == NULL || buf == NULL || pos > t->total)
        return -1;
    while (done < max && pos < t->total) {
        const struct tar_part *q;
        uint64_t in;
        size_t k;

        /* reads are sequential: start from the part of the last read */
        if (t->cur >= t->n || pos < t->p[t->cur].off) {
            if (t->fd >= 0)
                close(t->fd);
            t->fd = -1;
            t->cur = 0;
        }
        while (t->cur < t->n && pos >= t->p[t->cur].off + part_len(&t->p[t->cur])) {
            if (t->fd >= 0)
                close(t->fd);
            t->fd = -1;
            t->cur++;
        }
        if (t->cur == t->n) { /* the two zero blocks at the end */
            k = (size_t)(t->total - pos) < max - done ? (size_t)(t->total - pos) : max - done;
            memset(buf + done, 0, k);
        } else {
            q = &t->p[t->cur];
            in = pos - q->off;
            if (in < 512) {
                k = 512 - (size_t)in < max - done ? 512 - (size_t)in : max - done;
                memcpy(buf + done, q->hdr + in, k);
            } else if (in < 512 + q->size) {
                ssize_t got;

                k = q->size - (in - 512) < max - done ? (size_t)(q->size - (in - 512)) : max - done;
                if (t->fd < 0 && (t->fd = open(q->path, O_RDONLY | O_CLOEXEC)) < 0)
                    return -1;
                got = pread(t->fd, buf + done, k, (off_t)(in - 512));
                if (got <= 0)
                    return -1; /* the file shrank: the archive would lie */
                k = (size_t)got;
            } else {
                uint64_t left = q->off + part_len(q) - pos;

                k = left < max - done ? (size_t)left : max - done;
                memset(buf + done, 0, k);
            }
        }
        done += k;
        pos += k;
    }
    return (ssize_t)done;
}

enum hsmca_err
hsmca_audit_extract_tar_open(struct hsmca_audit *a, uint64_t from, uint64_t to,
                             const char *approvers_json, struct hsmca_audit_tar **out)
{
    static const char *const fixed[] = {"README",         "manifest.json", "verify.sh",
                                        "entries.jsonl",  "audit.pub.pem", "audit.crt.pem",
                                        "approvers.json", "anchor.txt",    "anchor.sig"};
    char bundle[HSMCA_PATH_MAX + 16], cps[HSMCA_PATH_MAX + 32];
    const char *top = "hsmca-audit-extract", *base = getenv("TMPDIR");
    struct hsmca_audit_tar *t;
    struct dirent *de;
    DIR *d = NULL;
    enum hsmca_err rc;
    size_t i;

    if (a == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return HSMCA_E_NOMEM;
    t->fd = -1;
    snprintf(t->tmp, sizeof(t->tmp), "%s/hsmca-extract-XXXXXX",
             base != NULL && base[0] != '\0' && strlen(base) < 1024 ? base : "/tmp");
    if (mkdtemp(t->tmp) == NULL) {
        t->tmp[0] = '\0';
        hsmca_audit_tar_free(t);
        return HSMCA_E_IO;
    }
    snprintf(bundle, sizeof(bundle), "%s/b", t->tmp);
    rc = hsmca_audit_extract(a, from, to, approvers_json, bundle);
    if (rc == HSMCA_OK)
        rc = tar_add(t, "hsmca-audit-extract/", NULL, 0, 0755);
    for (i = 0; rc == HSMCA_OK && i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        char p[HSMCA_PATH_MAX + 64];

        snprintf(p, sizeof(p), "%s/%s", bundle, fixed[i]);
        if (access(p, F_OK) == 0)
            rc = tar_file(t, bundle, fixed[i], top);
    }
    if (rc == HSMCA_OK)
        rc = tar_add(t, "hsmca-audit-extract/checkpoints/", NULL, 0, 0755);
    if (rc == HSMCA_OK) {
        snprintf(cps, sizeof(cps), "%s/checkpoints", bundle);
        d = opendir(cps);
        if (d == NULL)
            rc = HSMCA_E_IO;
    }
    while (rc == HSMCA_OK && (de = readdir(d)) != NULL) {
        char rel[300];

        if (de->d_name[0] == '.')
            continue;
        snprintf(rel, sizeof(rel), "checkpoints/%s", de->d_name);
        rc = tar_file(t, bundle, rel, top);
    }
    if (d != NULL)
        closedir(d);
    if (rc != HSMCA_OK) {
        hsmca_audit_tar_free(t);
        return rc;
    }
    t->total += 1024; /* two zero blocks end the archive */
    *out = t;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_audit_extract_tar(struct hsmca_audit *a, uint64_t from, uint64_t to,
                        const char *approvers_json, unsigned char **out, size_t *out_len)
{
    struct hsmca_audit_tar *t = NULL;
    unsigned char *buf;
    uint64_t size;
    enum hsmca_err rc;

    if (a == NULL || out == NULL || out_len == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_audit_extract_tar_open(a, from, to, approvers_json, &t);
    if (rc != HSMCA_OK)
        return rc;
    size = hsmca_audit_tar_size(t);
    buf = size <= TAR_MAX ? malloc((size_t)size) : NULL;
    if (buf == NULL) {
        hsmca_audit_tar_free(t);
        return HSMCA_E_NOMEM;
    }
    if (hsmca_audit_tar_read(t, 0, buf, (size_t)size) != (ssize_t)size) {
        free(buf);
        hsmca_audit_tar_free(t);
        return HSMCA_E_IO;
    }
    hsmca_audit_tar_free(t);
    *out = buf;
    *out_len = (size_t)size;
    return HSMCA_OK;
}
