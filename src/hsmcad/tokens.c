/* SPDX-License-Identifier: Apache-2.0
 *
 * tokens.c -- token faults, found and healed without a restart (docs/token-faults.md).
 * The housekeeping thread probes every token once a second (hsmca_token_probe):
 *   - the audit token: while it is away checkpoints fail; the audit writer retries them every
 *     second through hsmcad_audit_heal (re-probe, log in again with the PIN file, find the key),
 *     so checkpoints and extracts resume by themselves once it is back. DACs stop while more than
 *     audit.max_unsigned_entries entries lie beyond the last signed checkpoint (issue.c).
 *   - a CA token that went away: an open window is kept while it is away (DACs fail with
 *     token-removed); when it is back with its login alive (a glitch), the window goes on; when it
 *     is back with its sessions closed (the login lost, as after a real removal), the window is
 *     closed and audited, and a new ca.activate by the quorum opens the next one. The token gets
 *     a new session either way, and /readyz recovers.
 *   - a CA token missing or unreadable at start is named in /readyz and the log (with what to do)
 *     and audited; it is opened once it appears.
 * Each fault and each recovery is one audit entry (token.fault / token.recovered), and the
 * closed window is window.end with reason token-lost.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/audit.h"
#include "hsmca/log.h"
#include "hsmca/secret.h"
#include "hsmca/token.h"

#include "hsmcad.h"

const char *
hsmcad_token_fault_action(const char *fault)
{
    if (strcmp(fault, "missing") == 0)
        return "connect the token (check pkcs11_module and the module's configuration); hsmcad "
               "opens it within a second of it appearing";
    if (strcmp(fault, "removed") == 0)
        return "put the token back; hsmcad reconnects within a second";
    if (strcmp(fault, "unreadable") == 0)
        return "the token does not answer C_GetTokenInfo: check the HSM and its connection";
    if (strcmp(fault, "checkpoints-failing") == 0)
        return "the audit key does not sign: check the audit token and audit.pin_file; DACs stop "
               "once audit.max_unsigned_entries lie beyond the last checkpoint";
    if (strcmp(fault, "login-lost") == 0)
        return "the token came back logged out: its window was closed; open a new one with "
               "ca.activate (quorum)";
    return "see docs/token-faults.md";
}

/* One audit entry about a token (best effort: a fault must never stop the prober). */
static void
audit_token(struct hsmcad *d, const char *action, const char *outcome, const char *label,
            const char *ca, const char *fault, const char *extra_key, const char *extra)
{
    struct hsmca_audit_event ev;
    char target[HSMCA_TOKEN_LABEL_MAX + 8];
    json_t *det;
    char *text = NULL;
    enum hsmca_err rc = HSMCA_E_NOMEM;

    if (d->audit == NULL)
        return;
    det = json_pack("{s:s}", "token", label);
    if (det != NULL && ca != NULL)
        json_object_set_new(det, "ca", json_string(ca));
    if (det != NULL && fault != NULL)
        json_object_set_new(det, "fault", json_string(fault));
    if (det != NULL && extra_key != NULL)
        json_object_set_new(det, extra_key, json_string(extra));
    if (det != NULL)
        text = json_dumps(det, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(det);
    if (text != NULL) {
        snprintf(target, sizeof(target), "token/%s", label);
        hsmca_audit_event_set(&ev, "hsmcad", "system", action, target, outcome, text);
        rc = hsmca_audit_append(d->audit, &ev, NULL, NULL, NULL);
    }
    free(text);
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "token-audit-failed", "token=%s action=%s code=%s",
                  label, action, hsmca_err_code(rc));
}

/* Record a fault change of one token (fault "" = ok): log, audit. fault_buf under the cas lock. */
static void
set_fault(struct hsmcad *d, char *fault_buf, size_t size, const char *label, const char *ca,
          const char *fault, int at_start)
{
    char was[HSMCAD_FAULT_MAX];

    hsmca_ca_lock(d->cas);
    snprintf(was, sizeof(was), "%s", fault_buf);
    snprintf(fault_buf, size, "%s", fault);
    hsmca_ca_unlock(d->cas);
    if (strcmp(was, fault) == 0)
        return;
    if (fault[0] != '\0') {
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "token-fault",
                  "token=%s ca=%s fault=%s phase=%s action=\"%s\"", label, ca != NULL ? ca : "-",
                  fault, at_start ? "start" : "running", hsmcad_token_fault_action(fault));
        audit_token(d, "token.fault", "failed", label, ca, fault, "phase",
                    at_start ? "start" : "running");
    } else {
        hsmca_log(HSMCA_LOG_INFO, "hsmcad", "token-recovered", "token=%s ca=%s was=%s", label,
                  ca != NULL ? ca : "-", was);
        audit_token(d, "token.recovered", "ok", label, ca, NULL, "was", was);
    }
}

enum hsmca_err
hsmcad_audit_heal(void *arg, struct hsmca_key **key)
{
    struct hsmcad *d = arg;
    struct hsmca_token_probe pr;
    struct hsmca_secret pin = {NULL, 0};
    enum hsmca_err rc;

    /* the writer thread is the audit key's only user: its handle (and sessions) can go */
    hsmca_key_free(*key);
    *key = NULL;
    __atomic_store_n(&d->audit_key, NULL, __ATOMIC_RELEASE);
    rc = hsmca_token_probe(d->audit_tok, &pr);
    if (rc != HSMCA_OK)
        return rc;
    if (!pr.logged_in) {
        rc = hsmca_secret_read_pin_file(d->cfg.audit_pin_file, &pin);
        if (rc == HSMCA_OK)
            rc = hsmca_token_login(d->audit_tok, &pin);
        hsmca_secret_clear(&pin);
        if (rc != HSMCA_OK && rc != HSMCA_E_ALREADY_LOGGED_IN)
            return rc;
    }
    rc = hsmca_token_find_key(d->audit_tok, d->cfg.audit_key, key);
    if (rc != HSMCA_OK) {
        *key = NULL;
        return rc;
    }
    __atomic_store_n(&d->audit_key, *key, __ATOMIC_RELEASE);
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "audit-key-restored", "reconnected=%d", pr.reconnected);
    return HSMCA_OK;
}

/* A CA token's probe, and what it means for its window. */
static void
check_ca(struct hsmcad *d, struct hsmca_ca *c, int at_start)
{
    struct hsmca_token_probe pr;
    struct hsmca_uri u;
    struct hsmca_token *tok;
    enum hsmca_err rc;
    const char *label;
    int has_key;

    if (hsmca_uri_parse(c->token_uri, strlen(c->token_uri), &u) != HSMCA_OK ||
        !(u.have & HSMCA_URI_HAVE_TOKEN))
        return;
    label = u.token;
    tok = __atomic_load_n(&c->tok, __ATOMIC_ACQUIRE);
    if (tok == NULL) {
        /* missing at start (or never seen): open it once it appears */
        tok = hsmca_ca_token(d->cas, label, c->token_uri, 1);
        if (tok == NULL) {
            set_fault(d, c->fault, sizeof(c->fault), label, c->id, "missing", at_start);
            return;
        }
        hsmca_ca_lock(d->cas);
        if (c->tok == NULL)
            __atomic_store_n(&c->tok, tok, __ATOMIC_RELEASE);
        hsmca_ca_unlock(d->cas);
    }
    rc = hsmca_token_probe(tok, &pr);
    if (rc == HSMCA_E_TOKEN_REMOVED) {
        set_fault(d, c->fault, sizeof(c->fault), label, c->id, "removed", at_start);
        return;
    }
    if (rc != HSMCA_OK) {
        set_fault(d, c->fault, sizeof(c->fault), label, c->id, "unreadable", at_start);
        return;
    }
    hsmca_ca_lock(d->cas);
    has_key = c->key != NULL;
    hsmca_ca_unlock(d->cas);
    if (pr.stale || (has_key && !pr.logged_in)) {
        /* back, but the window's sessions and login are gone: close the window (audited), then
         * reconnect; the quorum opens the next one */
        int closed = 0;

        hsmca_ca_lock(d->cas);
        if (c->key != NULL) {
            hsmca_ca_deactivate_locked(d->cas, c, "token-lost"); /* window.end, reason token-lost */
            closed = 1;
        }
        hsmca_ca_unlock(d->cas);
        if (closed)
            hsmca_log(HSMCA_LOG_WARN, "hsmcad", "window-closed",
                      "ca=%s reason=token-lost action=\"%s\"", c->id,
                      hsmcad_token_fault_action("login-lost"));
        rc = hsmca_token_probe(tok, &pr);
        if (rc != HSMCA_OK || pr.stale) {
            set_fault(d, c->fault, sizeof(c->fault), label, c->id, "unreadable", at_start);
            return;
        }
    }
    set_fault(d, c->fault, sizeof(c->fault), label, c->id, "", at_start);
}

void
hsmcad_tokens_check(struct hsmcad *d, int at_start)
{
    struct hsmca_token_info ti;
    const char *fault = "";
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    unsigned i, n;
    int failing = 0;

    if (d->audit_tok != NULL) {
        struct hsmca_uri u;

        snprintf(label, sizeof(label), "audit");
        if (hsmca_uri_parse(d->cfg.audit_token, strlen(d->cfg.audit_token), &u) == HSMCA_OK &&
            (u.have & HSMCA_URI_HAVE_TOKEN))
            snprintf(label, sizeof(label), "%s", u.token);
        (void)hsmca_audit_unsigned(d->audit, &failing);
        /* a light probe only: the writer owns the audit key and reconnects through heal */
        if (hsmca_token_info(d->audit_tok, &ti) != HSMCA_OK)
            fault = "removed";
        else if (failing)
            fault = "checkpoints-failing";
        set_fault(d, d->audit_fault, sizeof(d->audit_fault), label, NULL, fault, at_start);
    }
    n = hsmca_ca_count(d->cas);
    for (i = 0; i < n; i++)
        check_ca(d, hsmca_ca_at(d->cas, i), at_start);
}
