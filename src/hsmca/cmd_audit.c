/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_audit.c -- `hsmca audit`: the auditor's commands. verify checks an extract bundle offline
 * (chain, checkpoints, anchor, the auditor's previous checkpoint, quorum operations);
 * check-receipts proves receipts are still in a verified extract; archive writes an extract from a
 * store opened read-only. Touches no token; never writes to a store.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "hsmca/audit.h"
#include "hsmca/limits.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#include "cli.h"
#include "tar_read.h"

/* The extract named by arg: a directory as it is, or a tar (a file, or "-" for standard input)
 * unpacked into a private temporary directory (tmp, removed by the caller with
 * tar_extract_remove). 0, or -1 after saying why on stderr. */
static int
open_extract(const char *cmd, const char *arg, char *tmp, size_t tmp_len, char *dir, size_t dir_len)
{
    char why[300];
    FILE *in;
    int rc;

    tmp[0] = '\0';
    if (!tar_is_archive(arg)) {
        snprintf(dir, dir_len, "%s", arg);
        return 0;
    }
    in = strcmp(arg, "-") == 0 ? stdin : fopen(arg, "rbe");
    if (in == NULL) {
        fprintf(stderr, "%s: %s: %s\n", cmd, arg, strerror(errno));
        return -1;
    }
    rc = tar_extract(in, tmp, tmp_len, dir, dir_len, why, sizeof(why));
    if (in != stdin)
        fclose(in);
    if (rc != 0)
        fprintf(stderr, "%s: %s: %s: %s\n", cmd, arg, hsmca_err_code(HSMCA_E_AUDIT_EXTRACT_INVALID),
                why);
    return rc;
}

void
usage_audit(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca audit verify EXTRACT [--previous CHECKPOINT.txt] [--json]\n"
        "       hsmca audit check-receipts --extract EXTRACT FILE\n"
        "       hsmca audit archive --store DB --from N --to M --out DIR\n"
        "\n"
        "EXTRACT is a directory, or the tar GET /v1/audit/extract returns as downloaded (- reads\n"
        "it from standard input); a tar is unpacked into a private temporary directory.\n"
        "verify: check an extract offline: every line's prev is the SHA-256 of the\n"
        "line before (the first one's is the anchor checkpoint's head), seqs without gaps,\n"
        "every checkpoint signed by audit.pub.pem with the right head and prev, the end\n"
        "covered by a checkpoint, and every quorum.execute re-checked (threshold distinct\n"
        "approvers enrolled in its epoch signed the exact request). --previous is the last\n"
        "checkpoint you kept (its .sig beside it is checked too): the extract must extend it\n"
        "(no rewrite, truncation or fork). Prints the first bad seq and why.\n"
        "check-receipts: FILE holds receipts, one JSON object per line or a JSON array, each\n"
        "{\"seq\": N, \"entry_hash\": \"hex\"} as the API returned them; each must be in the\n"
        "verified extract with that hash.\n"
        "archive: export entries [from, to] of a store (read-only) as an extract directory.\n"
        "The range widens to checkpoint boundaries. The service never deletes entries.\n"
        "Layout of an extract: docs/audit-extract.md (and README inside each one).\n"
        "Exit status: 0 valid, 1 invalid or failed, 2 usage error.\n");
}

static int
do_verify(int argc, char **argv)
{
    struct hsmca_audit_verify_opts vo;
    struct hsmca_audit_verify_result r;
    struct timespec t0, t1;
    enum hsmca_err e;
    int c, json = 0;
    double secs;
    char tmp[HSMCA_PATH_MAX + 1], dir[HSMCA_PATH_MAX + 1];
    const struct cli_opt opts[] = {CLI_STR("previous", 'p', &vo.previous_cp),
                                   CLI_FLAG("json", 'j', &json), CLI_END};

    memset(&vo, 0, sizeof(vo));
    c = cli_getopt("audit verify", argc, argv, 1, opts, usage_audit);
    if (c >= 0)
        return c;
    if (optind + 1 != argc) {
        fprintf(stderr, "hsmca audit verify: one EXTRACT (directory, tar, or - for a tar on "
                        "standard input) is required\n");
        return CLI_EXIT_USAGE;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (open_extract("hsmca audit verify", argv[optind], tmp, sizeof(tmp), dir, sizeof(dir)) != 0)
        return CLI_EXIT_FAIL;
    e = hsmca_audit_verify_extract(dir, &vo, &r);
    tar_extract_remove(tmp);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (e == HSMCA_E_NOMEM || e == HSMCA_E_INVALID_ARG || e == HSMCA_E_INTERNAL)
        return cli_fail("audit verify", e);
    if (json) {
        json_t *j =
            json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:f}", "valid", e == HSMCA_OK,
                      "code", hsmca_err_code(e), "from", (json_int_t)r.from, "to", (json_int_t)r.to,
                      "entries", (json_int_t)r.entries, "checkpoints", (json_int_t)r.checkpoints,
                      "quorum_ops", (json_int_t)r.quorum_ops, "bad_seq", (json_int_t)r.bad_seq,
                      "why", r.why, "seconds", secs);
        int p = cli_print_json("audit verify", j);

        json_decref(j);
        if (p != CLI_EXIT_OK)
            return p;
    } else if (e == HSMCA_OK) {
        printf("valid: entries %llu..%llu (%llu entries, %llu checkpoint signatures, %llu quorum "
               "operations) in %.3f s\n",
               (unsigned long long)r.from, (unsigned long long)r.to, (unsigned long long)r.entries,
               (unsigned long long)r.checkpoints, (unsigned long long)r.quorum_ops, secs);
    } else {
        printf("INVALID: %s: %s\n", hsmca_err_code(e), r.why);
    }
    return e == HSMCA_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* ---- check-receipts ---- */

struct receipt {
    uint64_t seq;
    unsigned char hash[HSMCA_SHA256_LEN];
    int found; /* 1 found with the hash, -1 found with another hash */
};

struct receipts {
    struct receipt *v;
    size_t n;
};

static int
cmp_receipt(const void *a, const void *b)
{
    const struct receipt *x = a, *y = b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
on_entry(void *arg, uint64_t seq, const unsigned char hash[HSMCA_SHA256_LEN])
{
    struct receipts *rs = arg;
    size_t lo = 0, hi = rs->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (rs->v[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < rs->n && rs->v[lo].seq == seq; lo++)
        rs->v[lo].found = memcmp(rs->v[lo].hash, hash, HSMCA_SHA256_LEN) == 0 ? 1 : -1;
}

static int
add_receipt(struct receipts *rs, json_t *o, size_t cap)
{
    json_t *s = json_object_get(o, "seq");
    const char *h = json_string_value(json_object_get(o, "entry_hash"));
    size_t n = 0;

    if (rs->n >= cap || !json_is_integer(s) || json_integer_value(s) < 1 || h == NULL ||
        hsmca_hex_decode(h, strlen(h), rs->v[rs->n].hash, HSMCA_SHA256_LEN, &n) != HSMCA_OK ||
        n != HSMCA_SHA256_LEN)
        return -1;
    rs->v[rs->n].seq = (uint64_t)json_integer_value(s);
    rs->v[rs->n].found = 0;
    rs->n++;
    return 0;
}

#define RECEIPTS_MAX 1000000
#define RECEIPTS_FILE_MAX ((size_t)256 << 20)

static int
do_check_receipts(int argc, char **argv)
{
    const char *extract = NULL;
    struct hsmca_audit_verify_opts vo;
    struct hsmca_audit_verify_result r;
    struct receipts rs = {NULL, 0};
    unsigned char *buf = NULL;
    size_t len = 0, i, bad = 0;
    json_t *j = NULL;
    enum hsmca_err e;
    int c, rc = CLI_EXIT_USAGE;
    char tmp[HSMCA_PATH_MAX + 1], dir[HSMCA_PATH_MAX + 1];
    const struct cli_opt opts[] = {CLI_STR("extract", 'e', &extract), CLI_END};

    c = cli_getopt("audit check-receipts", argc, argv, 1, opts, usage_audit);
    if (c >= 0)
        return c;
    if (extract != NULL && optind + 1 == argc && strcmp(extract, "-") == 0 &&
        strcmp(argv[optind], "-") == 0) {
        fprintf(stderr,
                "hsmca audit check-receipts: --extract and FILE cannot both be - (stdin)\n");
        return CLI_EXIT_USAGE;
    }
    if (extract == NULL || optind + 1 != argc) {
        fprintf(stderr,
                "hsmca audit check-receipts: --extract EXTRACT and one FILE are required\n");
        return CLI_EXIT_USAGE;
    }
    rc = CLI_EXIT_FAIL;
    e = cli_read_input(argv[optind], RECEIPTS_FILE_MAX, &buf, &len);
    if (e != HSMCA_OK) {
        rc = cli_fail("audit check-receipts", e);
        goto out;
    }
    rs.v = calloc(RECEIPTS_MAX, sizeof(*rs.v));
    if (rs.v == NULL) {
        rc = cli_fail("audit check-receipts", HSMCA_E_NOMEM);
        goto out;
    }
    j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_array(j)) {
        json_t *x;

        json_array_foreach(j, i, x)
        {
            if (add_receipt(&rs, x, RECEIPTS_MAX) != 0) {
                fprintf(stderr, "hsmca audit check-receipts: receipt %zu is malformed\n", i);
                goto out;
            }
        }
    } else {
        /* JSON lines */
        char *p = (char *)buf, *end = (char *)buf + len;
        size_t lineno = 0;

        json_decref(j);
        j = NULL;
        while (p < end) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t l = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
            json_t *o;

            lineno++;
            if (l > 0) {
                o = json_loadb(p, l, JSON_REJECT_DUPLICATES, NULL);
                if (o == NULL || add_receipt(&rs, o, RECEIPTS_MAX) != 0) {
                    json_decref(o);
                    fprintf(stderr, "hsmca audit check-receipts: line %zu is not a receipt\n",
                            lineno);
                    goto out;
                }
                json_decref(o);
            }
            p += l + 1;
        }
    }
    if (rs.n == 0) {
        fprintf(stderr, "hsmca audit check-receipts: no receipts in %s\n", argv[optind]);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    qsort(rs.v, rs.n, sizeof(*rs.v), cmp_receipt);
    memset(&vo, 0, sizeof(vo));
    vo.on_entry = on_entry;
    vo.arg = &rs;
    if (open_extract("hsmca audit check-receipts", extract, tmp, sizeof(tmp), dir, sizeof(dir)) !=
        0)
        goto out;
    e = hsmca_audit_verify_extract(dir, &vo, &r);
    tar_extract_remove(tmp);
    if (e != HSMCA_OK) {
        printf("INVALID: the extract does not verify: %s: %s\n", hsmca_err_code(e), r.why);
        goto out;
    }
    for (i = 0; i < rs.n; i++) {
        if (rs.v[i].found == 1)
            continue;
        bad++;
        if (rs.v[i].seq < r.from || rs.v[i].seq > r.to)
            printf("receipt seq %llu: outside this extract (%llu..%llu)\n",
                   (unsigned long long)rs.v[i].seq, (unsigned long long)r.from,
                   (unsigned long long)r.to);
        else
            printf("receipt seq %llu: MISSING: the log holds another entry at that seq\n",
                   (unsigned long long)rs.v[i].seq);
    }
    if (bad == 0) {
        printf("all %zu receipts are in the log (extract %llu..%llu verified)\n", rs.n,
               (unsigned long long)r.from, (unsigned long long)r.to);
        rc = CLI_EXIT_OK;
    }
out:
    json_decref(j);
    free(rs.v);
    free(buf);
    return rc;
}

/* ---- archive ---- */

/* a seq number of --from/--to */
static int
seq_arg(const char *arg, void *dst)
{
    return hsmca_parse_u64(arg, strlen(arg), INT64_MAX, dst) == HSMCA_OK ? 0 : -1;
}

static int
do_archive(int argc, char **argv)
{
    const char *db = NULL, *outdir = NULL;
    uint64_t from = 0, to = 0;
    struct hsmca_store *st = NULL;
    struct hsmca_audit_verify_result r;
    enum hsmca_err e;
    int c;
    const struct cli_opt opts[] = {
        CLI_STR("store", 's', &db),
        CLI_CHECK("from", 'f', seq_arg, &from, "--from/--to take a seq number"),
        CLI_CHECK("to", 't', seq_arg, &to, "--from/--to take a seq number"),
        CLI_STR("out", 'o', &outdir), CLI_END};

    c = cli_getopt("audit archive", argc, argv, 1, opts, usage_audit);
    if (c >= 0)
        return c;
    if (db == NULL || outdir == NULL || from == 0 || to == 0 || from > to || optind != argc) {
        fprintf(stderr, "hsmca audit archive: --store, --from, --to (from <= to) and --out are "
                        "required\n");
        return CLI_EXIT_USAGE;
    }
    e = hsmca_store_open_readonly(db, &st);
    if (e != HSMCA_OK)
        return cli_fail("audit archive: open store", e);
    e = hsmca_audit_extract_store(st, from, to, NULL, NULL, outdir);
    hsmca_store_close(st);
    if (e != HSMCA_OK)
        return cli_fail("audit archive", e);
    /* check what was written before saying so */
    e = hsmca_audit_verify_extract(outdir, NULL, &r);
    if (e != HSMCA_OK) {
        printf("INVALID: the archive does not verify: %s: %s\n", hsmca_err_code(e), r.why);
        return CLI_EXIT_FAIL;
    }
    printf("archived entries %llu..%llu (%llu entries) to %s\n", (unsigned long long)r.from,
           (unsigned long long)r.to, (unsigned long long)r.entries, outdir);
    return CLI_EXIT_OK;
}

int
cmd_audit(int argc, char **argv)
{
    static const struct cli_verb verbs[] = {{"verify", do_verify},
                                            {"check-receipts", do_check_receipts},
                                            {"archive", do_archive},
                                            {NULL, NULL}};

    return cli_dispatch("audit", argc, argv, verbs, usage_audit);
}
