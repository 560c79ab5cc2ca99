/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_issue.c -- `hsmca issue` (one CSR -> one DAC, or a dry run) and `hsmca issue-batch` (a
 * directory of CSRs -> a directory of DACs, in batches of up to 1,000, resumable: the file stem is
 * the request id, so a rerun skips what exists and the server replays what it already signed).
 * Online: talks to hsmcad over HTTPS with a client certificate (rest.c, http_client.c); the CSR
 * and output directories are batch_dir.c's. Never overwrites
 * an output file unless asked; writes each output through a temporary file and a rename.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "hsmca/issue.h"
#include "hsmca/limits.h"
#include "hsmca/util.h"

#include "batch_dir.h"
#include "cli.h"
#include "http_client.h"
#include "response.h"
#include "rest.h"

void
usage_issue(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca issue --url URL --ca ID --csr FILE --cert FILE --key FILE --cacert FILE\n"
        "                   [--request-id ID] [--pid HEX] [--device-id VALUE] [--dry-run]\n"
        "                   [--out FILE] [--force]\n"
        "\n"
        "Sends one CSR (DER or PEM) to POST URL/v1/cas/ID/dacs and writes the DAC and its chain\n"
        "(DAC, then PAI) as PEM to --out (default, or -: standard output). --csr - reads the\n"
        "CSR from standard input. --request-id makes the\n"
        "request idempotent: a retry with the same id and CSR returns the same DAC. --pid asks\n"
        "for a PID (4 hex digits) when the PAI covers several. --device-id puts this device's\n"
        "value in the DAC subject where the DAC profile says (subject.device_id: its commonName\n"
        "or serialNumber), checked against the profile's pattern and length (refused as\n"
        "dac-device-id-pattern or dac-device-id-rule; docs/profiles.md).\n"
        "--dry-run signs nothing and prints the DAC that would be issued and every rule the\n"
        "CSR breaks, as JSON.\n"
        "--cert/--key are your client certificate and key, --cacert the CA of the server.\n"
        "Exit status: 0 issued (or dry run printed), 1 refused or failed, 2 usage error.\n");
}

void
usage_issue_batch(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca issue-batch --url URL --ca ID --dir DIR --out DIR --cert FILE --key FILE\n"
        "                         --cacert FILE [--pid HEX] [--batch N]\n"
        "\n"
        "Issues a DAC for every CSR file in --dir (*.csr, *.pem, *.der) through POST\n"
        "URL/v1/cas/ID/dacs/batch, N (1..1000, default 1000) at a time. The file stem is the\n"
        "request id, and the DAC is written to --out/STEM.pem (the DAC, then the chain); a\n"
        "refused CSR gets --out/STEM.err (the problem as JSON). Resumable: a CSR whose .pem\n"
        "already exists is skipped, and the server answers a repeated request id with the DAC\n"
        "it already issued. Each DAC's audit receipt ({seq, entry_hash, request_id, serial})\n"
        "is appended to --out/receipts.jsonl, for an auditor's `hsmca audit check-receipts\n"
        "--extract EXTRACT DIR/receipts.jsonl`. Shows progress on a terminal and a summary.\n"
        "Exit status: 0 every CSR has its DAC, 1 some failed (see the summary), 2 usage error.\n");
}

struct common {
    struct rest_opts rest; /* --url --cert --key --cacert */
    const char *ca;
    int has_pid;
    unsigned pid;
};

/* --pid: 4 hex digits */
static int
common_pid(const char *arg, void *dst)
{
    struct common *cm = dst;
    uint16_t pid;

    if (cli_hex16(arg, &pid) != 0)
        return -1;
    cm->pid = pid;
    cm->has_pid = 1;
    return 0;
}

/* The DAC resource's path for --ca ("/v1/cas/CA/dacs" and suffix); -1, said, if --ca is no CA
 * id. */
static int
common_path(const struct common *cm, const char *suffix, char *path, size_t max, const char *cmd)
{
    if (rest_dacs_path(cm->ca, suffix, path, max) == 0)
        return 0;
    fprintf(stderr, "hsmca %s: --ca must be a CA id ([a-z0-9-], at most %d bytes)\n", cmd,
            HSMCA_CA_ID_MAX);
    return -1;
}

/* The options issue and issue-batch share (--url --cert --key --cacert --ca --pid). */
#define COMMON_OPTS(cm)                                                                            \
    CLI_CONN_OPTS(&(cm)->rest), CLI_STR("ca", 0, &(cm)->ca),                                       \
        CLI_CHECK("pid", 0, common_pid, (cm), "--pid takes 4 hex digits")

int
cmd_issue(int argc, char **argv)
{
    struct common cm = {{NULL, NULL, NULL, NULL}, NULL, 0, 0};
    const char *csr_file = NULL, *request_id = NULL, *out_file = NULL, *device_id = NULL;
    struct http_client *hc = NULL;
    struct http_response resp;
    unsigned char *csr = NULL;
    size_t csr_len = 0;
    char *pem = NULL, *body = NULL, *text = NULL, path[256], why[512];
    json_t *req = NULL, *ans = NULL;
    int c, dry = 0, force = 0, rc = CLI_EXIT_USAGE;
    enum hsmca_err e;
    const struct cli_opt opts[] = {COMMON_OPTS(&cm),
                                   CLI_STR("csr", 0, &csr_file),
                                   CLI_STR("request-id", 0, &request_id),
                                   CLI_STR("device-id", 0, &device_id),
                                   CLI_FLAG("dry-run", 0, &dry),
                                   CLI_STR("out", 0, &out_file),
                                   CLI_FLAG("force", 0, &force),
                                   CLI_END};

    c = cli_getopt("issue", argc, argv, 1, opts, usage_issue);
    if (c >= 0)
        return c;
    if (optind != argc || !CLI_CONN_GIVEN(&cm.rest) || cm.ca == NULL || csr_file == NULL) {
        fprintf(stderr, "hsmca issue: --url, --ca, --csr, --cert, --key and --cacert are "
                        "required (see --help)\n");
        goto out;
    }
    if (common_path(&cm, "", path, sizeof(path), "issue") != 0)
        goto out;
    if (request_id != NULL && strlen(request_id) > HSMCA_REQUEST_ID_MAX) {
        fprintf(stderr, "hsmca issue: --request-id is longer than %d bytes\n",
                HSMCA_REQUEST_ID_MAX);
        goto out;
    }
    if (device_id != NULL && (device_id[0] == '\0' || strlen(device_id) > HSMCA_DEVICE_ID_MAX)) {
        fprintf(stderr, "hsmca issue: --device-id takes 1 to %d bytes\n", HSMCA_DEVICE_ID_MAX);
        goto out;
    }
    rc = CLI_EXIT_FAIL;
    if (out_file != NULL && !force && cli_exists(out_file)) {
        fprintf(stderr, "hsmca issue: %s exists; use --force to overwrite it\n", out_file);
        goto out;
    }
    e = cli_read_input(csr_file, HSMCA_CSR_MAX, &csr, &csr_len);
    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca issue: %s: %s: %s\n", csr_file, hsmca_err_code(e),
                hsmca_err_title(e));
        goto out;
    }
    pem = rest_csr_pem(csr, csr_len);
    req =
        pem != NULL ? rest_dac_request(pem, request_id, cm.has_pid ? (int)cm.pid : -1, dry) : NULL;
    if (req != NULL && device_id != NULL &&
        json_object_set_new(req, "device_id", json_string(device_id)) != 0) {
        json_decref(req);
        req = NULL;
    }
    body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    if (body == NULL) {
        rc = cli_fail("issue", HSMCA_E_NOMEM);
        goto out;
    }
    if (rest_client(&cm.rest, 0, "hsmca issue", &hc) != HSMCA_OK)
        goto out;
    why[0] = '\0';
    e = http_client_request(hc, "POST", path, "application/json", "application/json", body,
                            strlen(body), &resp, why, sizeof(why));
    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca issue: %s\n", why[0] ? why : hsmca_err_title(e));
        goto out;
    }
    if (resp.status != 200 && resp.status != 201) {
        rest_problem_text(&resp, why, sizeof(why));
        fprintf(stderr, "hsmca issue: refused: %s\n", why);
        goto out;
    }
    ans = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    if (ans == NULL) {
        fprintf(stderr, "hsmca issue: the server's answer is not JSON\n");
        goto out;
    }
    if (dry) {
        text = json_dumps(ans, JSON_INDENT(2) | JSON_SORT_KEYS);
    } else {
        text = cli_chain_text(json_object_get(ans, "certificate"), json_object_get(ans, "chain"));
        if (text == NULL) {
            fprintf(stderr, "hsmca issue: the server's answer has no certificate\n");
            goto out;
        }
    }
    if (text == NULL) {
        rc = cli_fail("issue", HSMCA_E_NOMEM);
        goto out;
    }
    if (out_file != NULL) {
        if (cli_write_output(out_file, text, strlen(text), dry, 0644, force) != 0) {
            fprintf(stderr, "hsmca issue: cannot write %s: %s\n", out_file, strerror(errno));
            goto out;
        }
    } else {
        fputs(text, stdout);
        if (dry)
            fputc('\n', stdout);
    }
    if (!dry) {
        json_t *rcpt = json_object_get(ans, "receipt");

        fprintf(stderr, "hsmca issue: %s serial %s receipt seq %" JSON_INTEGER_FORMAT "\n",
                json_is_true(json_object_get(ans, "replayed")) || resp.status == 200 ? "replayed"
                                                                                     : "issued",
                json_string_value(json_object_get(ans, "serial"))
                    ? json_string_value(json_object_get(ans, "serial"))
                    : "?",
                json_integer_value(json_object_get(rcpt, "seq")));
    }
    rc = dry && !json_is_true(json_object_get(ans, "ok")) ? CLI_EXIT_FAIL : CLI_EXIT_OK;
out:
    json_decref(ans);
    json_decref(req);
    free(text);
    free(body);
    free(pem);
    free(csr);
    http_client_free(hc);
    return rc;
}

/* ---------------------------------------------------------------- issue-batch */

/* Send items[0..n) as one batch and record every result. Returns 0, or -1 to stop the run. */
static int
run_batch(struct http_client *hc, const struct common *cm, const char *api, const char *out_dir,
          const struct batch_item *items, size_t n, struct batch_tally *t)
{
    json_t *req = json_object(), *arr = json_array(), *ans = NULL, *results, *chain;
    struct http_response resp;
    char why[512], *body = NULL;
    size_t i;
    int rc = -1;
    unsigned char *seen = calloc(n ? n : 1, 1);
    enum hsmca_err e;

    if (req == NULL || arr == NULL || seen == NULL || json_object_set(req, "items", arr) != 0)
        goto out;
    for (i = 0; i < n; i++) {
        unsigned char *buf = NULL;
        size_t len = 0;
        char *pem;
        json_t *o;

        e = hsmca_read_file(items[i].path, HSMCA_CSR_MAX, &buf, &len);
        pem = e == HSMCA_OK ? rest_csr_pem(buf, len) : NULL;
        free(buf);
        /* an unreadable or oversized file is sent empty: the server refuses it as it would */
        o = rest_dac_request(pem != NULL ? pem : "", items[i].stem, cm->has_pid ? (int)cm->pid : -1,
                             0);
        free(pem);
        if (o == NULL || json_array_append_new(arr, o) != 0)
            goto out;
    }
    body = json_dumps(req, JSON_COMPACT);
    if (body == NULL)
        goto out;
    why[0] = '\0';
    e = http_client_request(hc, "POST", api, "application/json", "application/json", body,
                            strlen(body), &resp, why, sizeof(why));
    if (e != HSMCA_OK) {
        fprintf(stderr, "%shsmca issue-batch: %s (rerun to resume)\n", t->tty ? "\n" : "",
                why[0] ? why : hsmca_err_title(e));
        goto out;
    }
    if (resp.status != 200) {
        rest_problem_text(&resp, why, sizeof(why));
        fprintf(stderr, "%shsmca issue-batch: batch refused: %s\n", t->tty ? "\n" : "", why);
        if (resp.status >= 500 || resp.status == 401 || resp.status == 403 || resp.status == 404 ||
            resp.status == 429)
            goto out; /* nothing the next batch would do better: stop, rerun later */
        ans = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
        for (i = 0; i < n; i++) {
            const char *code = json_string_value(json_object_get(ans, "code"));

            batch_item_failed(out_dir, &items[i], code ? code : "batch-refused", ans, t);
            t->done++;
        }
        rc = 0;
        goto out;
    }
    ans = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    results = json_object_get(ans, "results");
    chain = json_object_get(ans, "chain");
    if (!json_is_array(results)) {
        fprintf(stderr, "%shsmca issue-batch: the server's answer has no results\n",
                t->tty ? "\n" : "");
        goto out;
    }
    for (i = 0; i < json_array_size(results); i++) {
        json_t *r = json_array_get(results, i), *pj = json_object_get(r, "problem");
        json_int_t idx = json_integer_value(json_object_get(r, "index"));
        json_int_t st = json_integer_value(json_object_get(r, "status"));
        char path[HSMCA_PATH_MAX + 1], *text;

        if (!json_is_integer(json_object_get(r, "index")) || idx < 0 || (size_t)idx >= n ||
            seen[idx])
            continue;
        seen[idx] = 1;
        t->done++;
        if (st != 200 && st != 201) {
            const char *code = json_string_value(json_object_get(pj, "code"));

            batch_item_failed(out_dir, &items[idx], code ? code : "failed", pj, t);
            continue;
        }
        text =
            cli_chain_text(json_object_get(r, "certificate"), json_is_array(chain) ? chain : NULL);
        if (text == NULL ||
            snprintf(path, sizeof(path), "%s/%s.pem", out_dir, items[idx].stem) >=
                (int)sizeof(path) ||
            cli_write_file(path, text, strlen(text), 0, 0644, 0) != 0) {
            fprintf(stderr, "%shsmca issue-batch: %s: cannot write the DAC: %s\n",
                    t->tty ? "\n" : "", items[idx].stem,
                    text == NULL ? "no certificate in the answer" : strerror(errno));
            batch_count_reason(t, "output-failed");
            free(text);
            continue;
        }
        free(text);
        batch_keep_receipt(t, json_object_get(r, "receipt"), items[idx].stem,
                           json_object_get(r, "serial"));
        {
            char err[HSMCA_PATH_MAX + 1];

            if (snprintf(err, sizeof(err), "%s/%s.err", out_dir, items[idx].stem) <
                (int)sizeof(err))
                (void)unlink(err); /* an earlier run's refusal is history now */
        }
        if (st == 200 || json_is_true(json_object_get(r, "replayed")))
            t->replayed++;
        else
            t->issued++;
    }
    for (i = 0; i < n; i++) {
        if (!seen[i]) {
            batch_count_reason(t, "no-result");
            t->done++;
        }
    }
    rc = 0;
out:
    free(seen);
    free(body);
    json_decref(ans);
    json_decref(arr);
    json_decref(req);
    return rc;
}

int
cmd_issue_batch(int argc, char **argv)
{
    struct common cm = {{NULL, NULL, NULL, NULL}, NULL, 0, 0};
    const char *dir = NULL, *out_dir = NULL;
    struct http_client *hc = NULL;
    struct batch_item *items = NULL, *todo = NULL;
    struct batch_tally t;
    struct stat sb;
    uint64_t batch = HSMCA_ISSUE_BATCH_MAX;
    size_t n = 0, ntodo = 0, i;
    char api[256];
    int c, rc = CLI_EXIT_USAGE, lr;
    struct cli_u64 batch_opt = {&batch, 1, HSMCA_ISSUE_BATCH_MAX};
    const struct cli_opt opts[] = {COMMON_OPTS(&cm), CLI_STR("dir", 0, &dir),
                                   CLI_STR("out", 0, &out_dir),
                                   CLI_CHECK("batch", 0, cli_u64, &batch_opt,
                                             "--batch takes 1.." CLI_NUM(HSMCA_ISSUE_BATCH_MAX)),
                                   CLI_END};

    memset(&t, 0, sizeof(t));
    c = cli_getopt("issue-batch", argc, argv, 1, opts, usage_issue_batch);
    if (c >= 0)
        return c;
    if (optind != argc || !CLI_CONN_GIVEN(&cm.rest) || cm.ca == NULL || dir == NULL ||
        out_dir == NULL) {
        fprintf(stderr, "hsmca issue-batch: --url, --ca, --dir, --out, --cert, --key and "
                        "--cacert are required (see --help)\n");
        goto out;
    }
    if (common_path(&cm, "/batch", api, sizeof(api), "issue-batch") != 0)
        goto out;
    rc = CLI_EXIT_FAIL;
    if (stat(out_dir, &sb) != 0) {
        if (mkdir(out_dir, 0755) != 0) {
            fprintf(stderr, "hsmca issue-batch: cannot create %s: %s\n", out_dir, strerror(errno));
            goto out;
        }
    } else if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "hsmca issue-batch: %s is not a directory\n", out_dir);
        goto out;
    }
    lr = batch_list_csrs(dir, &items, &n, &t);
    if (lr != 0) {
        if (lr == -1)
            fprintf(stderr, "hsmca issue-batch: cannot read %s: %s\n", dir, strerror(errno));
        goto out;
    }
    todo = calloc(n ? n : 1, sizeof(*todo));
    if (todo == NULL) {
        rc = cli_fail("issue-batch", HSMCA_E_NOMEM);
        goto out;
    }
    for (i = 0; i < n; i++) {
        char path[HSMCA_PATH_MAX + 1];

        if (snprintf(path, sizeof(path), "%s/%s.pem", out_dir, items[i].stem) < (int)sizeof(path) &&
            access(path, F_OK) == 0) {
            t.skipped++;
            continue;
        }
        todo[ntodo++] = items[i];
    }
    if (rest_client(&cm.rest, 0, "hsmca issue-batch", &hc) != HSMCA_OK)
        goto out;
    {
        char rp[HSMCA_PATH_MAX + 1];

        if (snprintf(rp, sizeof(rp), "%s/receipts.jsonl", out_dir) >= (int)sizeof(rp) ||
            (t.receipts_f = fopen(rp, "ae")) == NULL) {
            fprintf(stderr, "hsmca issue-batch: cannot open %s/receipts.jsonl: %s\n", out_dir,
                    strerror(errno));
            goto out;
        }
    }
    t.tty = isatty(STDERR_FILENO);
    t.started = time(NULL);
    batch_progress(&t);
    for (i = 0; i < ntodo; i += (size_t)batch) {
        size_t k = ntodo - i < batch ? ntodo - i : (size_t)batch;

        int stop = run_batch(hc, &cm, api, out_dir, &todo[i], k, &t) != 0;

        /* the receipts of this batch are durable before the next one is sent */
        if (t.receipts_f != NULL &&
            (fflush(t.receipts_f) != 0 || fsync(fileno(t.receipts_f)) != 0)) {
            fprintf(stderr, "%shsmca issue-batch: cannot write %s/receipts.jsonl: %s\n",
                    t.tty ? "\n" : "", out_dir, strerror(errno));
            break;
        }
        if (stop)
            break;
        batch_progress(&t);
    }
    if (t.tty)
        fputc('\n', stderr);
    printf("csrs %lu: issued %lu, replayed %lu, already done %lu, failed %lu, not sent %lu "
           "(%ld s)\n",
           t.total, t.issued, t.replayed, t.skipped, t.failed,
           t.total - t.skipped - t.issued - t.replayed - t.failed, (long)(time(NULL) - t.started));
    for (i = 0; i < t.nreasons; i++)
        printf("  failed %lu: %s\n", t.reasons[i].n, t.reasons[i].code);
    printf("receipts %lu appended to %s/receipts.jsonl (hsmca audit check-receipts --extract "
           "EXTRACT %s/receipts.jsonl)\n",
           t.receipts, out_dir, out_dir);
    rc = t.issued + t.replayed + t.skipped == t.total ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    if (t.receipts_f != NULL)
        fclose(t.receipts_f);
    free(todo);
    free(items);
    http_client_free(hc);
    return rc;
}
