/* SPDX-License-Identifier: Apache-2.0
 *
 * reload.c -- new settings without a restart (SIGHUP, POST /v1/admin/reload; docs/reload.md).
 * The config file is read again and, through it, the role bindings (client certificates), the
 * quotas, the certificate profiles and the plain-HTTP listener's address. Everything is read and
 * checked first; then all of it is applied, or nothing: a bad file leaves the old settings in
 * force, and the refusal is logged and audited with the file and the reason. Activation windows,
 * open connections and requests in flight are never touched: a connection looks its certificate
 * up again in the new bindings on its next request (server.c), a table still in use by a request
 * is freed when that request's connection lets it go (auth.c counts references).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/audit.h"
#include "hsmca/issue.h"
#include "hsmca/log.h"
#include "hsmca/profile.h"

#include "hsmcad.h"

struct hsmcad_roles *
hsmcad_roles_get(struct hsmcad *d)
{
    struct hsmcad_roles *r;

    pthread_mutex_lock(&d->roles_mu);
    r = hsmcad_roles_ref(d->roles);
    pthread_mutex_unlock(&d->roles_mu);
    return r;
}

const struct hsmcad_roles *
hsmcad_roles_current(struct hsmcad *d)
{
    return __atomic_load_n(&d->roles, __ATOMIC_ACQUIRE);
}

/* Config keys only a restart applies: a change is reported, the running value stays. */
#define S(key, field)                                                                              \
    {                                                                                              \
        key, offsetof(struct hsmcad_config, field), 0, 1                                           \
    }
#define N(key, field)                                                                              \
    {                                                                                              \
        key, offsetof(struct hsmcad_config, field), sizeof(((struct hsmcad_config *)0)->field), 0  \
    }
static const struct {
    const char *key;
    size_t off, size;
    int str;
} restart_only[] = {
    S("listen", listen_host),
    N("listen", listen_port),
    S("pkcs11_module", pkcs11_module),
    S("store", store),
    S("crl_policy", crl_policy),
    S("bounds", bounds),
    S("tls.cert", tls_cert),
    S("tls.key", tls_key),
    S("tls.client_ca", tls_client_ca),
    S("audit.token", audit_token),
    S("audit.key", audit_key),
    S("audit.pin_file", audit_pin_file),
    S("audit.certificate", audit_cert),
    S("audit.origin", audit_origin),
    N("audit.checkpoint_entries", checkpoint_entries),
    N("audit.checkpoint_interval_s", checkpoint_interval_s),
    N("audit.max_unsigned_entries", max_unsigned_entries),
    N("limits.body_max", body_max),
    N("limits.batch_max", batch_max),
    N("limits.threads", threads),
    N("limits.connections", connections),
    N("limits.per_ip_connections", per_ip_connections),
    N("limits.timeout_s", timeout_s),
    N("limits.refusals_per_minute", refusals_per_minute),
    N("limits.handshake_timeout_s", handshake_timeout_s),
    N("limits.unauthenticated_connections", unauthenticated_connections),
    N("limits.per_ip_unauthenticated", per_ip_unauthenticated),
    N("limits.refusal_entries_per_second", refusal_entries_per_second),
    N("limits.extract_max_entries", extract_max_entries),
    N("allow_root", allow_root),
};
#undef S
#undef N

/* Everything a reload reads, before any of it is applied. */
struct staged {
    struct hsmcad_config cfg;
    struct hsmcad_roles *roles;
    struct hsmca_issue_quotas *quotas;
    struct hsmca_profile paa, pai, dac;
    int have_profiles;
    struct hsmcad_publish *publish; /* a new listener (the address changed), not yet in use */
    unsigned publish_port;
    int publish_change;
};

static void
staged_free(struct staged *s)
{
    hsmcad_roles_free(s->roles);
    hsmca_issue_quotas_free(s->quotas);
    hsmcad_publish_stop(s->publish);
    memset(s, 0, sizeof(*s));
}

/* Read and check everything; nothing of the running daemon changes. */
static enum hsmca_err
stage(struct hsmcad *d, struct staged *s, char *why, size_t why_len)
{
    static const char *const names[] = {"matter-paa.json", "matter-pai.json", "matter-dac.json"};
    struct hsmca_profile *dst[] = {&s->paa, &s->pai, &s->dac};
    char path[HSMCA_PATH_MAX + 32];
    enum hsmca_err rc;
    unsigned i;

    rc = hsmcad_config_load(d->config_path, &s->cfg, why, why_len);
    if (rc != HSMCA_OK)
        return rc; /* why: the key and the reason */
    rc = hsmcad_roles_load(s->cfg.roles, &s->roles, why, why_len);
    if (rc != HSMCA_OK)
        return rc;
    if (s->cfg.quotas[0] != '\0') {
        rc = hsmca_issue_quotas_load(s->cfg.quotas, &s->quotas);
        if (rc != HSMCA_OK) {
            snprintf(why, why_len, "quotas %s: %s (the log names the key)", s->cfg.quotas,
                     hsmca_err_title(rc));
            return rc;
        }
    }
    if (s->cfg.profiles_dir[0] != '\0') {
        for (i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "%s/%s", s->cfg.profiles_dir, names[i]);
            rc = hsmca_profile_load(path, dst[i]);
            if (rc != HSMCA_OK) {
                snprintf(why, why_len, "profile %s: %s: %s", path, hsmca_err_code(rc),
                         hsmca_err_title(rc));
                return rc;
            }
        }
        s->have_profiles = 1;
    }
    s->publish_change = strcmp(s->cfg.publish_host, d->cfg.publish_host) != 0 ||
                        s->cfg.publish_port != d->cfg.publish_port;
    if (s->publish_change && s->cfg.publish_host[0] != '\0') {
        /* the new address must bind before anything changes; port 0 (tests) binds a new one */
        rc = hsmcad_publish_start(d, s->cfg.publish_host, s->cfg.publish_port, &s->publish,
                                  &s->publish_port);
        if (rc != HSMCA_OK) {
            snprintf(why, why_len, "publish_listen %s:%u: %s", s->cfg.publish_host,
                     s->cfg.publish_port, hsmca_err_title(rc));
            return rc;
        }
    }
    return HSMCA_OK;
}

/* The port file of the plain-HTTP listener (FILE.publish beside --port-file). */
static void
write_publish_port(struct hsmcad *d, unsigned port)
{
    char pf[HSMCA_PATH_MAX + 16];
    FILE *f;

    if (d->port_file[0] == '\0')
        return;
    snprintf(pf, sizeof(pf), "%s.publish", d->port_file);
    if (port == 0) {
        (void)remove(pf);
        return;
    }
    f = fopen(pf, "w");
    if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "port-file-failed", "file=%s", pf);
}

/* Apply what stage() read (cannot fail). Returns the report's "applied" list. */
static json_t *
apply(struct hsmcad *d, struct staged *s)
{
    struct hsmcad_roles *old;
    json_t *applied = json_array();

    pthread_mutex_lock(&d->roles_mu);
    old = d->roles;
    __atomic_store_n(&d->roles, s->roles, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&d->roles_mu);
    s->roles = NULL;
    hsmcad_roles_free(old); /* freed once the last connection that uses it lets it go */
    json_array_append_new(applied, json_string("roles"));

    snprintf(d->cfg.roles, sizeof(d->cfg.roles), "%s", s->cfg.roles);
    if (d->issuer != NULL) {
        unsigned i;

        /* under the registry's lock: no CA is attached meanwhile (it would read the issuer's
         * quotas) */
        hsmca_ca_lock(d->cas);
        hsmca_issuer_take_quotas(d->issuer, s->quotas);
        s->quotas = NULL;
        for (i = 0; i < hsmca_ca_count(d->cas); i++)
            hsmca_issue_ca_quotas_update(hsmca_ca_at(d->cas, i)->ica);
        hsmca_ca_unlock(d->cas);
        snprintf(d->cfg.quotas, sizeof(d->cfg.quotas), "%s", s->cfg.quotas);
        json_array_append_new(applied, json_string("quotas"));
    }
    if (s->have_profiles) {
        pthread_rwlock_wrlock(&d->prof_lock);
        d->paa_profile = s->paa;
        d->pai_profile = s->pai;
        d->dac_profile = s->dac;
        d->have_profiles = 1;
        pthread_rwlock_unlock(&d->prof_lock);
        /* each PAI's next window issues under the new DAC profile (an open one keeps its own) */
        hsmca_ca_lock(d->cas);
        for (unsigned i = 0; i < hsmca_ca_count(d->cas); i++)
            hsmca_issue_ca_profile_update(hsmca_ca_at(d->cas, i)->ica, &s->dac);
        hsmca_ca_unlock(d->cas);
        snprintf(d->cfg.profiles_dir, sizeof(d->cfg.profiles_dir), "%s", s->cfg.profiles_dir);
        json_array_append_new(applied, json_string("profiles"));
    }
    if (s->publish_change) {
        struct hsmcad_publish *was = d->publish;

        d->publish = s->publish;
        s->publish = NULL;
        hsmcad_publish_stop(was);
        snprintf(d->cfg.publish_host, sizeof(d->cfg.publish_host), "%s", s->cfg.publish_host);
        d->cfg.publish_port = s->cfg.publish_port;
        write_publish_port(d, d->publish != NULL ? s->publish_port : 0);
        hsmca_log(HSMCA_LOG_INFO, "hsmcad", "publish-listening", "port=%u%s", s->publish_port,
                  d->publish != NULL ? "" : " off=1");
        json_array_append_new(applied, json_string("publish_listen"));
    }
    return applied;
}

/* The entry of a reload: config.reload (ok) or config.reload.refuse, detail det. */
static enum hsmca_err
audit_reload(struct hsmcad *d, const char *actor, const char *role, int ok, json_t *det,
             struct hsmca_audit_receipt *receipt)
{
    struct hsmca_audit_event ev;
    char *text = json_dumps(det, JSON_COMPACT | JSON_SORT_KEYS);
    enum hsmca_err rc;

    if (text == NULL)
        return HSMCA_E_NOMEM;
    hsmca_audit_event_set(&ev, actor, role, ok ? "config.reload" : "config.reload.refuse", "config",
                          ok ? "ok" : "refused", text);
    rc = hsmca_audit_append(d->audit, &ev, NULL, NULL, receipt);
    free(text);
    return rc;
}

enum hsmca_err
hsmcad_reload(struct hsmcad *d, const char *trigger, const char *actor, const char *role,
              json_t **report, enum hsmca_err *cause, char *why, size_t why_len,
              struct hsmca_audit_receipt *receipt)
{
    struct staged s;
    json_t *det = NULL, *restart = NULL, *applied = NULL;
    enum hsmca_err rc, arc;
    unsigned i;

    memset(&s, 0, sizeof(s));
    if (report != NULL)
        *report = NULL;
    *cause = HSMCA_OK;
    why[0] = '\0';
    pthread_mutex_lock(&d->reload_mu);
    rc = stage(d, &s, why, why_len);
    if (rc != HSMCA_OK) {
        *cause = rc;
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "reload-refused",
                  "trigger=%s code=%s why=\"%s\" kept=old", trigger, hsmca_err_code(rc), why);
        staged_free(&s);
        det = json_pack("{s:s, s:s, s:s, s:s}", "trigger", trigger, "code",
                        hsmca_err_code(HSMCA_E_RELOAD_REFUSED), "cause", hsmca_err_code(rc), "why",
                        why);
        arc = det != NULL ? audit_reload(d, actor, role, 0, det, receipt) : HSMCA_E_NOMEM;
        pthread_mutex_unlock(&d->reload_mu);
        json_decref(det);
        return arc != HSMCA_OK ? arc : HSMCA_E_RELOAD_REFUSED;
    }
    restart = json_array();
    for (i = 0; i < sizeof(restart_only) / sizeof(restart_only[0]); i++) {
        const char *a = (const char *)&s.cfg + restart_only[i].off;
        const char *b = (const char *)&d->cfg + restart_only[i].off;
        int differs =
            restart_only[i].str ? strcmp(a, b) != 0 : memcmp(a, b, restart_only[i].size) != 0;

        if (differs &&
            (json_array_size(restart) == 0 ||
             strcmp(json_string_value(json_array_get(restart, json_array_size(restart) - 1)),
                    restart_only[i].key) != 0))
            json_array_append_new(restart, json_string(restart_only[i].key));
    }
    if (s.cfg.profiles_dir[0] == '\0' && d->cfg.profiles_dir[0] != '\0')
        json_array_append_new(restart, json_string("profiles_dir"));
    det = json_pack("{s:s, s:I}", "trigger", trigger, "bindings",
                    (json_int_t)hsmcad_roles_count(s.roles));
    applied = apply(d, &s);
    if (det != NULL) {
        json_object_set_new(det, "applied", applied != NULL ? applied : json_array());
        json_object_set(det, "restart_required", restart != NULL ? restart : json_array());
    } else {
        json_decref(applied);
    }
    staged_free(&s);
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "reloaded", "trigger=%s bindings=%u restart_required=%zu",
              trigger, hsmcad_roles_count(hsmcad_roles_current(d)), json_array_size(restart));
    for (i = 0; restart != NULL && i < json_array_size(restart); i++)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "reload-needs-restart", "key=%s",
                  json_string_value(json_array_get(restart, i)));
    json_decref(restart);
    arc = det != NULL ? audit_reload(d, actor, role, 1, det, receipt) : HSMCA_E_NOMEM;
    pthread_mutex_unlock(&d->reload_mu);
    if (report != NULL && det != NULL)
        *report = json_incref(det);
    json_decref(det);
    return arc;
}
