/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_request.c -- `hsmca request create|list|show|cancel`: the admin's side of quorum requests
 * over the API (POST /v1/requests, GET /v1/requests, GET /v1/requests/{id}, POST
 * /v1/requests/{id}/cancellation), each operation's
 * parameters as flags (VID and PID in hex, times in ISO 8601 UTC or relative), every request
 * shown in a person's terms (request_view.h). The approvers approve with `hsmca approve`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "hsmca/quorum.h"
#include "hsmca/request_view.h"
#include "hsmca/util.h"

#include "cli.h"
#include "http_client.h"
#include "response.h"

#define PARAM_FILE_MAX 65536

void
usage_request(FILE *f)
{
    fprintf(
        f,
        "usage: hsmca request create OP --url URL --cert F --key F --cacert F [PARAMS]\n"
        "         [--ttl SECONDS] [--json]\n"
        "       hsmca request list --url URL --cert F --key F --cacert F\n"
        "         [--status pending|executed|failed|cancelled|expired] [--limit N] [--json]\n"
        "       hsmca request show --url URL --cert F --key F --cacert F ID [--json]\n"
        "       hsmca request cancel --url URL --cert F --key F --cacert F ID\n"
        "         [--reason TEXT]\n"
        "\n"
        "The admin's quorum requests over the API (an admin client certificate; show and\n"
        "list also take an approver's). create asks for OP with PARAMS, prints the request's\n"
        "id and what the approvers will be asked to approve; they approve with\n"
        "`hsmca approve ID`. cancel withdraws a pending request (closed as cancelled, audited as\n"
        "quorum.cancel with --reason). Every request is shown in a person's terms: VID and PID as\n"
        "4 hex digits, times in ISO 8601 UTC, an activation window's end and count; a CA\n"
        "creation, renewal or re-key also with the exact certificate to be signed (subject,\n"
        "validity, serial, extensions; a new key's public half is only known at execution),\n"
        "which the approvals sign (docs/renewal.md).\n"
        "\n"
        "OP and its PARAMS (VID/PID: 1 to 4 hex digits, e.g. FFF1; TIME: ISO 8601 UTC\n"
        "2026-12-31T23:59:59Z, or +N with s, m, h or d from now):\n"
        "  ca.create_paa   --ca ID --token LABEL --key-label L [--cn CN] [--vid VID]\n"
        "  ca.create_pai   --ca ID --parent PAA --token LABEL --key-label L --vid VID\n"
        "                  [--pid PID] [--cn CN]\n"
        "  ca.activate     --ca PAI --until TIME --max-dacs N   (opens a window)\n"
        "                  --ca PAI --window ID    (this node joins open window ID)\n"
        "                  --ca PAI --until TIME --max-dacs N --nodes N1,N2  (one approval\n"
        "                  logs in every named node, this one included; PostgreSQL)\n"
        "  ca.renew        --ca ID --new-ca ID  (a new certificate for the same key)\n"
        "  ca.rekey        --ca ID --new-ca ID --token LABEL --key-label L\n"
        "                  (a new key in a token under quorum that holds no CA)\n"
        "  ca.revoke       --ca PAI [--reason REASON] [--invalidity TIME]\n"
        "  crl.sign        --ca ID\n"
        "  token.enroll    --token LABEL        (a free token joins the quorum's custody)\n"
        "  approver.enroll --enroll-file FILE   (what `hsmca approve --enroll` printed)\n"
        "  approver.remove --name NAME\n"
        "  policy.update   --policy-file FILE   (the new policies/quorum.json)\n"
        "--ttl: how long the request waits for approvals (default 3600, at most 86400).\n"
        "--json prints the server's answer as it came. Exit status: 0 done, 1 refused (the\n"
        "message names the problem code), 2 usage error.\n");
}

/* 1..4 hex digits -> 0..0xFFFF; -1 if not. */
static long
parse_hex16(const char *s)
{
    long v = 0;
    size_t i, n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > 4)
        return -1;
    for (i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;

        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* n digits of s as a number, -1 if any is not a digit */
static int
digits(const char *s, int n)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* ISO 8601 UTC "YYYY-MM-DDTHH:MM:SSZ" or "+N[smhd]" -> ms since the epoch; -1 if neither. */
static int64_t
parse_time(const char *s)
{
    struct tm tm;
    uint64_t n = 0;
    size_t len = s != NULL ? strlen(s) : 0;
    time_t t;

    if (len >= 3 && s[0] == '+') {
        char u = s[len - 1];
        uint64_t mul = u == 's' ? 1 : u == 'm' ? 60 : u == 'h' ? 3600 : u == 'd' ? 86400 : 0;

        if (mul == 0 || hsmca_parse_u64(s + 1, len - 2, 366ull * 86400, &n) != HSMCA_OK ||
            n * mul > 3660ull * 86400)
            return -1;
        return ((int64_t)time(NULL) + (int64_t)(n * mul)) * 1000;
    }
    if (len != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != 'Z')
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = digits(s, 4) - 1900;
    tm.tm_mon = digits(s + 5, 2) - 1;
    tm.tm_mday = digits(s + 8, 2);
    tm.tm_hour = digits(s + 11, 2);
    tm.tm_min = digits(s + 14, 2);
    tm.tm_sec = digits(s + 17, 2);
    if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
        tm.tm_sec > 60)
        return -1;
    t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t * 1000;
}

/* Every flag of every operation; each operation says which it takes. */
struct req_flags {
    const char *ca, *parent, *token, *key_label, *cn, *vid, *pid, *until, *max_dacs, *reason,
        *invalidity, *name, *enroll_file, *policy_file, *window, *new_ca, *nodes;
};

static int
usage_err(const char *msg)
{
    fprintf(stderr, "hsmca request: %s (hsmca help request)\n", msg);
    return CLI_EXIT_USAGE;
}

/* A JSON file's object (enroll or policy). NULL with the reason printed. */
static json_t *
read_json_file(const char *path)
{
    unsigned char *b = NULL;
    size_t n = 0;
    json_error_t jerr;
    json_t *j;
    enum hsmca_err e = cli_read_input(path, PARAM_FILE_MAX, &b, &n);

    if (e != HSMCA_OK) {
        cli_fail(path, e);
        return NULL;
    }
    j = json_loadb((const char *)b, n, JSON_REJECT_DUPLICATES, &jerr);
    free(b);
    if (!json_is_object(j)) {
        fprintf(stderr, "hsmca request: %s: not a JSON object (line %d: %s)\n", path, jerr.line,
                jerr.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* The params of op from the flags; NULL and *rc set (usage or failure) when they do not fit. */
static json_t *
build_params(const char *op, const struct req_flags *f, int *rc)
{
    json_t *p = json_object();
    long vid = -1, pid = -1;
    uint64_t n = 0;
    int64_t t;

    *rc = CLI_EXIT_USAGE;
    if (p == NULL) {
        *rc = cli_fail("params", HSMCA_E_NOMEM);
        return NULL;
    }
    if (f->vid != NULL && (vid = parse_hex16(f->vid)) < 0)
        goto usage_hex;
    if (f->pid != NULL && (pid = parse_hex16(f->pid)) < 0)
        goto usage_hex;
#define NEED(x, flag)                                                                              \
    do {                                                                                           \
        if ((x) == NULL) {                                                                         \
            fprintf(stderr, "hsmca request: %s needs %s\n", op, flag);                             \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
#define NONE(x, flag)                                                                              \
    do {                                                                                           \
        if ((x) != NULL) {                                                                         \
            fprintf(stderr, "hsmca request: %s takes no %s\n", op, flag);                          \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
    if (strcmp(op, "ca.create_paa") == 0 || strcmp(op, "ca.create_pai") == 0) {
        int pai = strcmp(op, "ca.create_pai") == 0;

        NEED(f->ca, "--ca");
        NEED(f->token, "--token");
        NEED(f->key_label, "--key-label");
        if (pai) {
            NEED(f->parent, "--parent");
            NEED(f->vid, "--vid");
        } else {
            NONE(f->parent, "--parent");
            NONE(f->pid, "--pid (a PAA has no PID)");
        }
        NONE(f->until, "--until");
        NONE(f->max_dacs, "--max-dacs");
        json_object_set_new(p, "ca", json_string(f->ca));
        json_object_set_new(p, "token", json_string(f->token));
        json_object_set_new(p, "key_label", json_string(f->key_label));
        if (pai)
            json_object_set_new(p, "parent", json_string(f->parent));
        if (f->cn != NULL)
            json_object_set_new(p, "cn", json_string(f->cn));
        if (vid >= 0)
            json_object_set_new(p, "vid", json_integer(vid));
        if (pid >= 0)
            json_object_set_new(p, "pid", json_integer(pid));
    } else if (strcmp(op, "ca.activate") == 0 && f->window != NULL) {
        NEED(f->ca, "--ca");
        NONE(f->until, "--until (a joined window keeps its end)");
        NONE(f->max_dacs, "--max-dacs (a joined window keeps its count)");
        NONE(f->nodes, "--nodes (a node joins a window by a request of its own)");
        json_object_set_new(p, "ca", json_string(f->ca));
        json_object_set_new(p, "window", json_string(f->window));
    } else if (strcmp(op, "ca.activate") == 0) {
        NEED(f->ca, "--ca");
        NEED(f->until, "--until");
        NEED(f->max_dacs, "--max-dacs");
        t = parse_time(f->until);
        if (t < 0) {
            fprintf(stderr, "hsmca request: --until %s: not 2026-12-31T23:59:59Z or +8h\n",
                    f->until);
            goto fail;
        }
        if (hsmca_parse_u64(f->max_dacs, strlen(f->max_dacs), 100000000, &n) != HSMCA_OK ||
            n == 0) {
            fprintf(stderr, "hsmca request: --max-dacs: 1..100000000\n");
            goto fail;
        }
        json_object_set_new(p, "ca", json_string(f->ca));
        json_object_set_new(p, "until", json_integer(t));
        json_object_set_new(p, "max_dacs", json_integer((json_int_t)n));
        if (f->nodes != NULL) { /* N1,N2,...: one approval logs in every named node */
            json_t *a = json_array();
            const char *s0 = f->nodes, *c;

            while (a != NULL) {
                c = strchr(s0, ',');
                json_array_append_new(a, c != NULL ? json_stringn(s0, (size_t)(c - s0))
                                                   : json_string(s0));
                if (c == NULL || json_array_size(a) > 64)
                    break;
                s0 = c + 1;
            }
            json_object_set_new(p, "nodes", a);
        }
    } else if (strcmp(op, "ca.revoke") == 0 || strcmp(op, "crl.sign") == 0) {
        NEED(f->ca, "--ca");
        json_object_set_new(p, "ca", json_string(f->ca));
        if (op[1] == 'r') { /* crl.sign */
            NONE(f->reason, "--reason");
            NONE(f->invalidity, "--invalidity");
        }
        if (f->reason != NULL)
            json_object_set_new(p, "reason", json_string(f->reason));
        if (f->invalidity != NULL) {
            t = parse_time(f->invalidity);
            if (t < 0) {
                fprintf(stderr, "hsmca request: --invalidity: not an ISO 8601 UTC time\n");
                goto fail;
            }
            json_object_set_new(p, "invalidity", json_integer(t));
        }
    } else if (strcmp(op, "ca.renew") == 0 || strcmp(op, "ca.rekey") == 0) {
        NEED(f->ca, "--ca");
        NEED(f->new_ca, "--new-ca");
        if (strcmp(op, "ca.rekey") == 0) { /* the new key's token and label */
            NEED(f->token, "--token");
            NEED(f->key_label, "--key-label");
            json_object_set_new(p, "token", json_string(f->token));
            json_object_set_new(p, "key_label", json_string(f->key_label));
        } else {
            NONE(f->token, "--token (a renewal keeps the key and its token)");
            NONE(f->key_label, "--key-label");
        }
        json_object_set_new(p, "ca", json_string(f->ca));
        json_object_set_new(p, "new_ca", json_string(f->new_ca));
    } else if (strcmp(op, "token.enroll") == 0) {
        NEED(f->token, "--token");
        json_object_set_new(p, "token", json_string(f->token));
    } else if (strcmp(op, "approver.enroll") == 0) {
        NEED(f->enroll_file, "--enroll-file");
        json_decref(p);
        p = read_json_file(f->enroll_file);
        if (p == NULL)
            *rc = CLI_EXIT_FAIL;
        return p;
    } else if (strcmp(op, "approver.remove") == 0) {
        NEED(f->name, "--name");
        json_object_set_new(p, "name", json_string(f->name));
    } else if (strcmp(op, "policy.update") == 0) {
        json_t *pol;

        NEED(f->policy_file, "--policy-file");
        pol = read_json_file(f->policy_file);
        if (pol == NULL) {
            *rc = CLI_EXIT_FAIL;
            goto fail;
        }
        json_object_set_new(p, "policy", pol);
    } else {
        fprintf(stderr, "hsmca request: unknown operation %s (hsmca help request)\n", op);
        goto fail;
    }
#undef NEED
#undef NONE
    return p;
usage_hex:
    fprintf(stderr, "hsmca request: --vid/--pid: 1 to 4 hex digits (FFF1, 8000)\n");
fail:
    json_decref(p);
    return NULL;
}

/* A string member, or "-" (the answer comes from the network). */
static const char *
js(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));

    return s != NULL ? s : "-";
}

/* Print a server answer's refusal and return CLI_EXIT_FAIL. */
static int
refused(const char *what, const struct http_response *resp)
{
    char msg[1024];

    cli_problem_text(resp->status, resp->content_type, resp->body, resp->body_len, msg,
                     sizeof(msg));
    fprintf(stderr, "hsmca request %s: %s\n", what, msg);
    return CLI_EXIT_FAIL;
}

/* Print the view of an envelope (GET /v1/requests/{id} or the 201's "envelope"). */
static int
print_envelope(const char *env, size_t len)
{
    json_t *v = NULL;
    char *text;
    enum hsmca_err e = hsmca_request_view_envelope(env, len, &v);

    if (e != HSMCA_OK)
        return cli_fail("request envelope", e);
    text = hsmca_request_view_text(v);
    json_decref(v);
    if (text == NULL)
        return cli_fail("view", HSMCA_E_NOMEM);
    printf("%s", text);
    free(text);
    return CLI_EXIT_OK;
}

/* an operation flag of create: given at most once */
#define REQ_ONCE(n, p) CLI_CHECK(n, 0, cli_once, p, "a flag is given twice (hsmca help request)")

int
cmd_request(int argc, char **argv)
{
    struct req_flags f = {0};
    struct http_client_config hc = {0};
    struct http_client *http = NULL;
    struct http_response resp;
    const char *sub, *status = NULL, *limit = NULL, *ttl = NULL;
    char why[512], path[256];
    json_t *params = NULL, *body = NULL, *ans = NULL;
    char *body_s = NULL;
    uint64_t n = 0;
    int c, json = 0, rc = CLI_EXIT_FAIL;
    enum hsmca_err e;
    const struct cli_opt opts[] = {CLI_CONN_OPTS(&hc),
                                   CLI_FLAG("json", 0, &json),
                                   CLI_STR("ttl", 0, &ttl),
                                   CLI_STR("status", 0, &status),
                                   CLI_STR("limit", 0, &limit),
                                   REQ_ONCE("ca", &f.ca),
                                   REQ_ONCE("parent", &f.parent),
                                   REQ_ONCE("token", &f.token),
                                   REQ_ONCE("key-label", &f.key_label),
                                   REQ_ONCE("cn", &f.cn),
                                   REQ_ONCE("vid", &f.vid),
                                   REQ_ONCE("pid", &f.pid),
                                   REQ_ONCE("until", &f.until),
                                   REQ_ONCE("max-dacs", &f.max_dacs),
                                   REQ_ONCE("reason", &f.reason),
                                   REQ_ONCE("invalidity", &f.invalidity),
                                   REQ_ONCE("name", &f.name),
                                   REQ_ONCE("enroll-file", &f.enroll_file),
                                   REQ_ONCE("policy-file", &f.policy_file),
                                   REQ_ONCE("window", &f.window),
                                   REQ_ONCE("new-ca", &f.new_ca),
                                   REQ_ONCE("nodes", &f.nodes),
                                   CLI_END};

    rc = cli_subcommand(argc, argv, usage_request);
    if (rc >= 0)
        return rc;
    rc = CLI_EXIT_FAIL;
    sub = argv[1];
    if (strcmp(sub, "create") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 &&
        strcmp(sub, "cancel") != 0)
        return usage_err("subcommands: create, list, show, cancel");
    c = cli_getopt("request", argc, argv, 2, opts, usage_request);
    if (c >= 0)
        return c;
    if (!CLI_CONN_GIVEN(&hc))
        return usage_err("--url, --cert, --key and --cacert are required");
    if (strcmp(sub, "create") == 0) {
        if (optind != argc - 1)
            return usage_err("create takes one operation, e.g. ca.activate");
        if (status != NULL || limit != NULL)
            return usage_err("--status and --limit are for list");
        if (ttl != NULL && (hsmca_parse_u64(ttl, strlen(ttl), 86400, &n) != HSMCA_OK || n == 0))
            return usage_err("--ttl: 1..86400 seconds");
        params = build_params(argv[optind], &f, &rc);
        if (params == NULL)
            return rc;
        rc = CLI_EXIT_FAIL;
        body = json_pack("{s:s, s:O}", "op", argv[optind], "params", params);
        if (body != NULL && ttl != NULL)
            json_object_set_new(body, "ttl_s", json_integer((json_int_t)n));
        body_s = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (body_s == NULL) {
            rc = cli_fail("request", HSMCA_E_NOMEM);
            goto out;
        }
        snprintf(path, sizeof(path), "/v1/requests");
    } else {
        const char **all[] = {&f.ca,         &f.parent, &f.token,       &f.key_label,   &f.cn,
                              &f.vid,        &f.pid,    &f.until,       &f.max_dacs,    &f.reason,
                              &f.invalidity, &f.name,   &f.enroll_file, &f.policy_file, &f.window,
                              &f.new_ca,     &f.nodes};
        size_t i;

        for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
            if (*all[i] != NULL && !(all[i] == &f.reason && strcmp(sub, "cancel") == 0))
                return usage_err("operation parameters are for create");
        }
        if (ttl != NULL)
            return usage_err("--ttl is for create");
        if (strcmp(sub, "show") == 0 || strcmp(sub, "cancel") == 0) {
            size_t k, len;

            if (optind != argc - 1 || status != NULL || limit != NULL)
                return usage_err("show and cancel take one request id");
            len = strlen(argv[optind]);
            for (k = 0; k < len && ((argv[optind][k] >= '0' && argv[optind][k] <= '9') ||
                                    (argv[optind][k] >= 'a' && argv[optind][k] <= 'f'));
                 k++)
                ;
            if (len != HSMCA_QUORUM_ID_LEN || k != len)
                return usage_err("a request id is 32 lowercase hex digits");
            snprintf(path, sizeof(path), "/v1/requests/%s%s", argv[optind],
                     strcmp(sub, "cancel") == 0 ? "/cancellation" : "");
            if (strcmp(sub, "cancel") == 0) {
                body = f.reason != NULL ? json_pack("{s:s}", "reason", f.reason) : json_object();
                body_s = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
                if (body_s == NULL)
                    return cli_fail("cancel", HSMCA_E_NOMEM);
            }
        } else {
            if (optind != argc)
                return usage_err("list takes no arguments");
            if (status != NULL && strcmp(status, "pending") != 0 &&
                strcmp(status, "executed") != 0 && strcmp(status, "failed") != 0 &&
                strcmp(status, "cancelled") != 0 && strcmp(status, "expired") != 0)
                return usage_err("--status: pending, executed, failed, cancelled or expired");
            if (limit != NULL &&
                (hsmca_parse_u64(limit, strlen(limit), 500, &n) != HSMCA_OK || n == 0))
                return usage_err("--limit: 1..500");
            snprintf(path, sizeof(path), "/v1/requests%s%s%s%s", status != NULL ? "?status=" : "",
                     status != NULL ? status : "",
                     limit != NULL ? (status != NULL ? "&limit=" : "?limit=") : "",
                     limit != NULL ? limit : "");
        }
    }
    e = http_client_new(&hc, &http, why, sizeof(why));
    if (e == HSMCA_OK)
        e = http_client_request(http, body_s != NULL ? "POST" : "GET", path,
                                body_s != NULL ? "application/json" : NULL, "application/json",
                                body_s, body_s != NULL ? strlen(body_s) : 0, &resp, why,
                                sizeof(why));
    if (e != HSMCA_OK) {
        fprintf(stderr, "hsmca request: %s: %s\n", hc.url, why);
        rc = cli_fail(sub, e);
        goto out;
    }
    if (resp.status != (strcmp(sub, "create") == 0 ? 201 : 200)) {
        rc = refused(sub, &resp);
        goto out;
    }
    if (json) {
        printf("%.*s\n", (int)resp.body_len, (const char *)resp.body);
        rc = CLI_EXIT_OK;
        goto out;
    }
    if (strcmp(sub, "show") == 0) {
        rc = print_envelope((const char *)resp.body, resp.body_len);
        goto out;
    }
    if (strcmp(sub, "cancel") == 0) {
        printf("request %s cancelled\n", argv[optind]);
        rc = CLI_EXIT_OK;
        goto out;
    }
    ans = json_loadb((const char *)resp.body, resp.body_len, 0, NULL);
    if (strcmp(sub, "create") == 0) {
        json_t *env = json_object_get(ans, "envelope");
        char *env_s = env != NULL ? json_dumps(env, JSON_COMPACT) : NULL;

        printf("request %s created; the approvers approve it with `hsmca approve %s`\n",
               js(ans, "id"), js(ans, "id"));
        rc = env_s != NULL ? print_envelope(env_s, strlen(env_s)) : CLI_EXIT_OK;
        free(env_s);
    } else {
        json_t *items = json_object_get(ans, "items"), *it;
        size_t i;

        if (!json_is_array(items)) {
            fprintf(stderr, "hsmca request list: the answer has no items\n");
            goto out;
        }
        printf("%-32s  %-10s  %-7s  %-15s  %-20s  %s\n", "ID", "STATUS", "APPR", "OPERATION",
               "EXPIRES", "SUMMARY");
        json_array_foreach(items, i, it)
        {
            json_t *v = json_object_get(it, "view");

            printf("%-32s  %-10s  %-7s  %-15s  %-20s  %s\n", js(it, "id"), js(it, "status"),
                   js(v, "approvals"), js(it, "op"), js(v, "expires"), js(v, "summary"));
        }
        rc = CLI_EXIT_OK;
    }
out:
    json_decref(ans);
    json_decref(params);
    json_decref(body);
    free(body_s);
    http_client_free(http);
    return rc;
}
