/* SPDX-License-Identifier: Apache-2.0
 *
 * custody.c -- the daemon's own life in the log and the recovery of interrupted rotations
 * (custody.h, docs/custody.md).
 */
#include "hsmca/custody.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/log.h"
#include "hsmca/store_certs.h"
#include "hsmca/store_quorum.h"

#define RUNNING_KEY "daemon.running"
#define WINDOWS_KEY "windows.open"

/* this process's node name ("" the only node) and its meta keys */
static char node_name[HSMCA_CUSTODY_NODE_MAX + 1];
static char running_key[sizeof(RUNNING_KEY) + HSMCA_CUSTODY_NODE_MAX + 1] = RUNNING_KEY;
static char windows_key[sizeof(WINDOWS_KEY) + HSMCA_CUSTODY_NODE_MAX + 1] = WINDOWS_KEY;

enum hsmca_err
hsmca_custody_set_node(const char *name)
{
    size_t i, n = name != NULL ? strlen(name) : 0;

    if (n > HSMCA_CUSTODY_NODE_MAX)
        return HSMCA_E_INVALID_ARG;
    for (i = 0; i < n; i++) {
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '.' || name[i] == '_' || name[i] == '-'))
            return HSMCA_E_INVALID_ARG;
    }
    snprintf(node_name, sizeof(node_name), "%s", n > 0 ? name : "");
    snprintf(running_key, sizeof(running_key), "%s%s%s", RUNNING_KEY, n > 0 ? "." : "", node_name);
    snprintf(windows_key, sizeof(windows_key), "%s%s%s", WINDOWS_KEY, n > 0 ? "." : "", node_name);
    return HSMCA_OK;
}

int
hsmca_custody_reconcile(void *arg, uint64_t seq, const char *action)
{
    (void)arg;
    if (action != NULL && strcmp(action, "quorum.epoch") == 0) {
        hsmca_log(HSMCA_LOG_WARN, "custody", "rotation-interrupted",
                  "seq=%llu reason=\"the epoch was written ahead; its tokens answer to the new or "
                  "the previous PIN until the next quorum operation on them\"",
                  (unsigned long long)seq);
        return 1;
    }
    hsmca_log(HSMCA_LOG_WARN, "custody", "intent-orphan", "seq=%llu action=%s",
              (unsigned long long)seq, action != NULL ? action : "");
    return 0;
}

static enum hsmca_err
doubt_each(void *arg, const struct hsmca_qtoken *t)
{
    struct hsmca_custody_doubt *d = arg;

    if (t->alt_epoch == 0)
        return HSMCA_OK;
    if (d->n >= HSMCA_QUORUM_TOKENS_MAX)
        return HSMCA_E_TOO_LARGE;
    memcpy(d->label[d->n], t->label, sizeof(d->label[0]));
    d->n++;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_custody_in_doubt(struct hsmca_store *ro, struct hsmca_custody_doubt *out)
{
    if (ro == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    return hsmca_store_qtoken_list(ro, doubt_each, out);
}

static enum hsmca_err
set_running(struct hsmca_store *st, void *arg)
{
    return hsmca_store_meta_set(st, running_key, arg);
}

static enum hsmca_err
system_entry(struct hsmca_audit *a, const char *action, const char *target, json_t *detail,
             hsmca_audit_apply_fn apply, void *apply_arg)
{
    char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct hsmca_audit_event ev;
    enum hsmca_err rc;

    hsmca_audit_event_set(&ev, "system", "system", action, target, "ok", text);
    rc = detail == NULL || text != NULL ? hsmca_audit_append(a, &ev, apply, apply_arg, NULL)
                                        : HSMCA_E_NOMEM;
    free(text);
    return rc;
}

struct window_apply {
    const char *ca;
    int open;
};

/* meta windows.open: a JSON object whose keys are the CAs with an open window */
static enum hsmca_err
apply_window(struct hsmca_store *st, void *arg)
{
    const struct window_apply *w = arg;
    char *text = NULL, *out;
    json_t *o = NULL;
    enum hsmca_err rc = hsmca_store_meta_get(st, windows_key, &text);

    if (rc == HSMCA_OK)
        o = json_loads(text, 0, NULL);
    else if (rc != HSMCA_E_NOT_FOUND)
        return rc;
    free(text);
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    if (o == NULL)
        return HSMCA_E_NOMEM;
    if (w->open)
        json_object_set_new(o, w->ca, json_true());
    else
        json_object_del(o, w->ca);
    out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    rc = out != NULL ? hsmca_store_meta_set(st, windows_key, out) : HSMCA_E_NOMEM;
    free(out);
    return rc;
}

enum hsmca_err
hsmca_custody_window(struct hsmca_audit *a, const char *ca, int open, const char *reason,
                     uint64_t issued, uint64_t max_dacs, int64_t until_ms)
{
    struct window_apply w = {ca, open};
    char target[HSMCA_CA_ID_MAX + 8];
    json_t *d;
    enum hsmca_err rc;

    if (a == NULL || ca == NULL)
        return HSMCA_E_INVALID_ARG;
    snprintf(target, sizeof(target), "ca/%s", ca);
    d = open ? json_pack("{s:I, s:I}", "max_dacs", (json_int_t)max_dacs, "until",
                         (json_int_t)until_ms)
             : json_pack("{s:s, s:I, s:I}", "reason", reason != NULL ? reason : "", "issued",
                         (json_int_t)issued, "max_dacs", (json_int_t)max_dacs);
    rc = d != NULL
             ? system_entry(a, open ? "window.start" : "window.end", target, d, apply_window, &w)
             : HSMCA_E_NOMEM;
    json_decref(d);
    return rc;
}

/* window.end (restart) for each window the last run left open */
static enum hsmca_err
close_left_windows(struct hsmca_audit *a, struct hsmca_store *ro)
{
    char *text = NULL;
    json_t *o;
    const char *ca;
    json_t *v;
    enum hsmca_err rc = hsmca_store_meta_get(ro, windows_key, &text);

    if (rc == HSMCA_E_NOT_FOUND)
        return HSMCA_OK;
    if (rc != HSMCA_OK)
        return rc;
    o = json_loads(text, 0, NULL);
    free(text);
    json_object_foreach(o, ca, v)
    {
        (void)v;
        hsmca_log(HSMCA_LOG_WARN, "custody", "window-closed-by-restart", "ca=%s", ca);
        rc = hsmca_custody_window(a, ca, 0, "restart", 0, 0, 0);
        if (rc != HSMCA_OK)
            break;
    }
    json_decref(o);
    return rc;
}

enum hsmca_err
hsmca_custody_token_restored(struct hsmca_audit *a, const char *serial)
{
    json_t *d = json_pack("{s:s, s:s}", "serial", serial != NULL ? serial : "", "reason",
                          "the token file was empty after a crash; the verified copy taken "
                          "before the interrupted write was put back");
    enum hsmca_err rc = d != NULL
                            ? system_entry(a, "custody.token-restored", "token", d, NULL, NULL)
                            : HSMCA_E_NOMEM;

    json_decref(d);
    return rc;
}

enum hsmca_err
hsmca_custody_stopping(struct hsmca_audit *a)
{
    if (a == NULL)
        return HSMCA_E_INVALID_ARG;
    return system_entry(a, "daemon.stop", "daemon", NULL, set_running, "0");
}

enum hsmca_err
hsmca_custody_started(struct hsmca_audit *a, struct hsmca_store *ro, const char *version,
                      int *crashed)
{
    struct hsmca_custody_doubt dbt;
    char *running = NULL;
    json_t *d;
    enum hsmca_err rc;
    size_t i;

    if (a == NULL || ro == NULL || crashed == NULL)
        return HSMCA_E_INVALID_ARG;
    *crashed = 0;
    rc = hsmca_store_meta_get(ro, running_key, &running);
    if (rc == HSMCA_OK)
        *crashed = strcmp(running, "1") == 0;
    else if (rc != HSMCA_E_NOT_FOUND)
        return rc;
    free(running);
    if (*crashed) {
        hsmca_log(HSMCA_LOG_WARN, "custody", "crash-detected",
                  "reason=\"the last run ended without daemon.stop\"");
        d = node_name[0] != '\0' ? json_pack("{s:s}", "node", node_name) : NULL;
        rc = node_name[0] == '\0' || d != NULL
                 ? system_entry(a, "daemon.crash-detected", "daemon", d, NULL, NULL)
                 : HSMCA_E_NOMEM;
        json_decref(d);
        if (rc != HSMCA_OK)
            return rc;
    }
    d = json_pack("{s:s}", "version", version != NULL ? version : "");
    if (d != NULL && node_name[0] != '\0')
        json_object_set_new(d, "node", json_string(node_name));
    rc = d != NULL ? system_entry(a, "daemon.start", "daemon", d, set_running, "1") : HSMCA_E_NOMEM;
    json_decref(d);
    if (rc == HSMCA_OK)
        rc = close_left_windows(a, ro);
    if (rc != HSMCA_OK)
        return rc;
    rc = hsmca_custody_in_doubt(ro, &dbt);
    for (i = 0; rc == HSMCA_OK && i < dbt.n; i++) {
        char target[HSMCA_TOKEN_LABEL_MAX + 8];

        snprintf(target, sizeof(target), "token/%s", dbt.label[i]);
        hsmca_log(HSMCA_LOG_WARN, "custody", "token-in-doubt",
                  "token=%s reason=\"a PIN rotation was interrupted; the next quorum operation on "
                  "this token confirms its PIN (for example: hsmca request for ca.activate)\"",
                  dbt.label[i]);
        d = json_pack("{s:s, s:s}", "token", dbt.label[i], "recovery",
                      "the next quorum operation on this token rebuilds both PINs, logs in with "
                      "the one the token answers to and rotates from it");
        rc = d != NULL ? system_entry(a, "custody.token-in-doubt", target, d, NULL, NULL)
                       : HSMCA_E_NOMEM;
        json_decref(d);
    }
    return rc;
}
