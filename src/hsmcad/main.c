/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c -- hsmcad: read the config, acquire everything (role bindings, TLS material, PKCS#11
 * module, audit token and key with the PIN from its mode-600 file, store, audit log on a verified
 * chain, CA tokens left logged out), serve until SIGTERM/SIGINT, then tear down in the order
 * docs/pkcs11.md demands: HTTP, audit, store, keys, tokens, module, OpenSSL.
 * Never logs a PIN; exits non-zero with the reason when any start-up step fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#ifdef HSMCA_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "hsmca/audit.h"
#include "hsmca/custody.h"
#include "hsmca/log.h"
#include "hsmca/secret.h"
#include "hsmca/util.h"

#include "hsmcad.h"
#include "hsmcad_mdl.h"
#include "routes.h"
#include "server.h"

#ifndef HSMCA_VERSION
#define HSMCA_VERSION "0"
#endif

#ifndef HSMCAD_DEFAULT_CONFIG
#define HSMCAD_DEFAULT_CONFIG "/etc/hsmca/hsmcad.json"
#endif

#define PEM_FILE_MAX (1u << 20)

static void
usage(FILE *f)
{
    fprintf(f, "usage: hsmcad [--config FILE] [--port-file FILE] [--check-config]\n"
               "       hsmcad --list-routes | --help | --version\n"
               "\n"
               "Serve the hsmca REST API (v1) over HTTPS with client certificates.\n"
               "  --config FILE     the JSON config (hsmcad.json(5), docs/config.md);\n"
               "                    default " HSMCAD_DEFAULT_CONFIG "\n"
               "  --port-file FILE  write the bound TCP port there once listening (listen port 0\n"
               "                    picks a free port); the plain-HTTP publication listener's\n"
               "                    port goes to FILE.publish\n"
               "  --check-config    validate the config and the role bindings, then exit\n"
               "  --list-routes     print every route as \"METHOD PATH ROLES\" and exit\n"
               "It refuses to serve as root unless the config sets \"allow_root\": true.\n"
               "Files it creates (store, WAL, port file) are mode 600 (umask 077).\n"
               "Signals: SIGTERM or SIGINT stop gracefully (in-flight requests finish); SIGHUP\n"
               "reloads roles, client-certificate bindings, quotas, profiles and publish_listen\n"
               "(all or nothing; open windows stay open; docs/reload.md).\n"
               "Exit status: 0 stopped cleanly, 1 start-up or shutdown failure, 2 usage error.\n");
}

static void
list_routes(void)
{
    unsigned i;

    for (i = 0; i < hsmcad_nroutes; i++) {
        const struct hsmcad_route *rt = &hsmcad_routes[i];
        unsigned m = rt->roles;

        printf("%s %s %s%s%s%s%s\n", rt->method, rt->pattern,
               (m & HSMCAD_ROLE_ADMIN) ? "admin," : "",
               (m & HSMCAD_ROLE_APPROVER) ? "approver," : "",
               (m & HSMCAD_ROLE_OPERATOR) ? "operator," : "",
               (m & HSMCAD_ROLE_AUDITOR) ? "auditor," : "", rt->ca_bound ? "ca-bound" : "");
    }
}

static char *
read_pem(const char *path, const char *what)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    enum hsmca_err rc = hsmca_read_file(path, PEM_FILE_MAX, &buf, &len);

    if (rc != HSMCA_OK) {
        fprintf(stderr, "hsmcad: cannot read %s %s: %s\n", what, path, hsmca_err_code(rc));
        return NULL;
    }
    return (char *)buf;
}

static void
note_restored(void *arg, const char *serial)
{
    struct hsmcad *d = arg;

    if (d->nrestored < sizeof(d->restored) / sizeof(d->restored[0]))
        snprintf(d->restored[d->nrestored++], sizeof(d->restored[0]), "%s", serial);
}

static int
start_fail(const char *what, enum hsmca_err rc, const char *why)
{
    fprintf(stderr, "hsmcad: %s: %s: %s%s%s\n", what, hsmca_err_code(rc), hsmca_err_title(rc),
            why != NULL && why[0] ? ": " : "", why != NULL ? why : "");
    return 1;
}

/* The issuance engine and one engine CA per PAI with a certificate (all inactive). */
static int
start_issuance(struct hsmcad *d)
{
    struct hsmca_issuer_config ic;
    enum hsmca_err rc;

    if (d->cfg.quotas[0] != '\0') {
        rc = hsmca_issue_quotas_load(d->cfg.quotas, &d->quotas);
        if (rc != HSMCA_OK) {
            start_fail("quotas", rc, d->cfg.quotas);
            return -1;
        }
    }
    memset(&ic, 0, sizeof(ic));
    ic.audit = d->audit;
    ic.store_path = d->cfg.store;
    ic.quotas = d->quotas;
    ic.max_unsigned_entries = d->cfg.max_unsigned_entries;
    rc = hsmca_issuer_new(&ic, &d->issuer);
    if (rc == HSMCA_OK) {
        hsmcad_cas_configure(d);
        rc = hsmca_ca_attach_all(d->cas, d->quorum_ro);
    }
    if (rc != HSMCA_OK) {
        start_fail("issuance", rc, NULL);
        return -1;
    }
    return 0;
}

/* Housekeeping: refusal summaries, windows whose time or count ran out. */
struct keeper {
    struct hsmcad *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    pthread_t th;
    int running;
};

static void *
keeper_run(void *arg)
{
    struct keeper *k = arg;
    struct timespec ts;

    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&k->cv, &k->mu, &ts);
        if (k->stop)
            break;
        pthread_mutex_unlock(&k->mu);
        if (k->d->issuer != NULL)
            hsmca_issuer_flush_refusals(k->d->issuer);
        hsmcad_crl_tick(k->d);
        hsmcad_flush_refusals(k->d, 0);
        hsmca_ca_close_ended(k->d->cas, hsmcad_now_ms());
        hsmcad_tokens_check(k->d, 0);
        hsmcad_nodes_keep();
        pthread_mutex_lock(&k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* The certificate profiles of policies/profiles (PAA, PAI, DAC), for CA creation and issuance. */
static int
load_profiles(struct hsmcad *d)
{
    static const char *const names[] = {"matter-paa.json", "matter-pai.json", "matter-dac.json"};
    struct hsmca_profile *dst[] = {&d->paa_profile, &d->pai_profile, &d->dac_profile};
    char path[HSMCA_PATH_MAX + 32];
    unsigned i;
    enum hsmca_err rc;

    if (d->cfg.profiles_dir[0] == '\0')
        return 0; /* no CA creation or issuance without profiles */
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", d->cfg.profiles_dir, names[i]);
        rc = hsmca_profile_load(path, dst[i]);
        if (rc != HSMCA_OK) {
            fprintf(stderr, "hsmcad: profile %s: %s: %s\n", path, hsmca_err_code(rc),
                    hsmca_err_title(rc));
            return -1;
        }
    }
    d->have_profiles = 1;
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"port-file", required_argument, NULL, 'p'},
        {"check-config", no_argument, NULL, 'k'},
        {"list-routes", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config = HSMCAD_DEFAULT_CONFIG, *port_file = NULL;
    int check_only = 0, ch, status = 1, sig = 0, started = 0;
    struct hsmcad *d = NULL;
    struct hsmcad_server *srv = NULL;
    struct hsmca_secret pin = {NULL, 0};
    char *cert_pem = NULL, *key_pem = NULL, *ca_pem = NULL;
    const char **route_names = NULL;
    char why[512] = "";
    unsigned port = 0, i;
    sigset_t sigs;
    enum hsmca_err rc;
    struct keeper keeper = {NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

    while ((ch = getopt_long(argc, argv, "c:p:klhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'k':
            check_only = 1;
            break;
        case 'l':
            list_routes();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("hsmcad %s\n", HSMCA_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    /* Every file the daemon creates (the store, its WAL and shm, the port file, token objects of a
     * file-backed module) is readable by the service user only. */
    umask(077);

    d = calloc(1, sizeof(*d));
    if (d == NULL || hsmca_ca_registry_new(&d->cas) != HSMCA_OK) {
        free(d);
        return start_fail("start", HSMCA_E_NOMEM, NULL);
    }
    pthread_mutex_init(&d->ro_mu, NULL);
    pthread_mutex_init(&d->lim_mu, NULL);
    pthread_mutex_init(&d->reload_mu, NULL);
    pthread_mutex_init(&d->roles_mu, NULL);
    pthread_rwlock_init(&d->prof_lock, NULL);
    snprintf(d->config_path, sizeof(d->config_path), "%s", config);
    snprintf(d->port_file, sizeof(d->port_file), "%s", port_file != NULL ? port_file : "");
    pthread_key_create(&d->ro_key, NULL);
    d->started_ms = hsmcad_now_ms();

    rc = hsmcad_config_load(config, &d->cfg, why, sizeof(why));
    if (rc != HSMCA_OK) {
        start_fail("config", rc, why);
        goto out;
    }
    rc = hsmcad_roles_load(d->cfg.roles, &d->roles, why, sizeof(why));
    if (rc != HSMCA_OK) {
        start_fail("roles", rc, why);
        goto out;
    }
    hsmcad_bounds_defaults(&d->bounds);
    if (d->cfg.bounds[0] != '\0' &&
        (rc = hsmcad_bounds_load(d->cfg.bounds, &d->bounds, why, sizeof(why))) != HSMCA_OK) {
        start_fail("bounds", rc, why);
        goto out;
    }
    if (check_only) {
        struct hsmca_crl_policies *cp = NULL;

        rc = hsmca_crl_policies_load(d->cfg.crl_policy, &cp);
        hsmca_crl_policies_free(cp);
        if (rc != HSMCA_OK) {
            start_fail("crl_policy", rc, d->cfg.crl_policy);
            goto out;
        }
        printf("hsmcad: config %s and roles %s are valid (%u bindings)\n", config, d->cfg.roles,
               hsmcad_roles_count(d->roles));
        status = 0;
        goto out;
    }

    if (geteuid() == 0 && !d->cfg.allow_root) {
        start_fail("start", HSMCA_E_RUN_AS_ROOT,
                   "run it as its service user, or set \"allow_root\": true in the config");
        goto out;
    }

    /* No core dumps and no ptrace by other users: the process will hold PINs and shares. */
    {
        struct rlimit rl = {0, 0};

        if (setrlimit(RLIMIT_CORE, &rl) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
            hsmca_log(HSMCA_LOG_WARN, "hsmcad", "harden-failed", "errno=%d", errno);
    }

    /* Signals are taken by sigwait in this thread only; every thread started later inherits the
     * mask. SIGPIPE is ignored (a client closing early is not fatal). */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (hsmca_secure_heap_init(0) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "secure-heap", "fallback=heap");
    cert_pem = read_pem(d->cfg.tls_cert, "TLS certificate");
    key_pem = read_pem(d->cfg.tls_key, "TLS key");
    ca_pem = read_pem(d->cfg.tls_client_ca, "client CA");
    if (cert_pem == NULL || key_pem == NULL || ca_pem == NULL)
        goto out;
    if (d->cfg.audit_cert[0] != '\0') {
        d->audit_cert_pem = read_pem(d->cfg.audit_cert, "audit certificate");
        if (d->audit_cert_pem == NULL)
            goto out;
    }

    /* SoftHSM tokens: put back any token file a crash left empty, before the module reads them */
    {
        rc = hsmca_guard_init_beside(&d->guard, d->cfg.store_beside);
        if (rc == HSMCA_OK) {
            d->guard_on = 1;
            rc = hsmca_guard_restore(&d->guard, note_restored, d);
        } else if (rc == HSMCA_E_NOT_FOUND) {
            rc = HSMCA_OK;
        }
        if (rc != HSMCA_OK) {
            start_fail("softhsm guard (softhsm-backup/ beside the store)", rc, d->cfg.store);
            goto out;
        }
    }
    rc = hsmca_p11_open(d->cfg.pkcs11_module, &d->p11);
    if (rc == HSMCA_OK && d->guard_on)
        hsmca_p11_set_before_write(d->p11, hsmca_guard_before_write, &d->guard);
    if (rc != HSMCA_OK) {
        start_fail("pkcs11_module", rc, d->cfg.pkcs11_module);
        goto out;
    }
    rc = hsmca_token_open(d->p11, d->cfg.audit_token, &d->audit_tok);
    if (rc != HSMCA_OK) {
        start_fail("audit.token", rc, d->cfg.audit_token);
        fprintf(
            stderr,
            "hsmcad: the audit token is %s: %s; nothing is served without it "
            "(docs/token-faults.md)\n",
            rc == HSMCA_E_TOKEN_NOT_FOUND ? "missing" : "unreadable",
            hsmcad_token_fault_action(rc == HSMCA_E_TOKEN_NOT_FOUND ? "missing" : "unreadable"));
        goto out;
    }
    rc = hsmca_secret_read_pin_file(d->cfg.audit_pin_file, &pin);
    if (rc != HSMCA_OK) {
        start_fail("audit.pin_file", rc, d->cfg.audit_pin_file);
        goto out;
    }
    rc = hsmca_token_login(d->audit_tok, &pin);
    hsmca_secret_clear(&pin);
    if (rc != HSMCA_OK) {
        start_fail("audit token login", rc, NULL);
        goto out;
    }
    rc = hsmca_token_find_key(d->audit_tok, d->cfg.audit_key, &d->audit_key);
    if (rc != HSMCA_OK) {
        start_fail("audit.key", rc, d->cfg.audit_key);
        goto out;
    }
    rc = hsmca_store_open(d->cfg.store, &d->store);
    if (rc != HSMCA_OK) {
        start_fail("store", rc, d->cfg.store);
        goto out;
    }
    /* every 20 ms: each pass then copies and syncs a few hundred KiB of pages, not the MiBs that
     * 200 ms gathered, whose sync held up the audit commit's fdatasync (docs/performance.md) */
    rc = hsmca_store_checkpointer_start(d->store, d->cfg.store, 20, 8192, &d->ckpt);
    if (rc != HSMCA_OK) {
        start_fail("store: checkpointer", rc, d->cfg.store);
        goto out;
    }
    /* CA tokens: opened (for readiness), never logged in at start: every CA starts inactive. */
    hsmcad_cas_configure(d);
    rc = hsmca_ca_load(d->cas, d->store);
    if (rc != HSMCA_OK) {
        start_fail("store: CAs", rc, NULL);
        goto out;
    }
    {
        struct hsmca_audit_config ac;

        memset(&ac, 0, sizeof(ac));
        ac.store = d->store;
        ac.token = d->audit_tok;
        ac.key = d->audit_key;
        ac.origin = d->cfg.audit_origin;
        ac.checkpoint_entries = d->cfg.checkpoint_entries;
        ac.checkpoint_ms = d->cfg.checkpoint_interval_s * 1000;
        ac.audit_cert_pem = d->audit_cert_pem;
        ac.reconcile = hsmca_custody_reconcile;
        ac.heal = hsmcad_audit_heal; /* the audit token came back: log in again (tokens.c) */
        ac.heal_arg = d;
        why[0] = '\0';
        rc = hsmca_audit_open(&ac, &d->audit, why, sizeof(why));
        if (rc != HSMCA_OK) {
            start_fail("audit log", rc, why);
            goto out;
        }
    }

    rc = hsmca_store_open_readonly(d->cfg.store, &d->quorum_ro);
    if (rc == HSMCA_OK) {
        struct hsmca_quorum_config qc;

        memset(&qc, 0, sizeof(qc));
        qc.store = d->store;
        qc.ro = d->quorum_ro;
        qc.audit = d->audit;
        qc.profiles = hsmcad_ca_profiles; /* the TBS preview of CA requests (precheck.c) */
        qc.profiles_arg = d;
        qc.node = d->cfg.node; /* ca.activate naming several nodes (docs/postgresql.md) */
        rc = hsmca_quorum_open(&qc, &d->quorum);
    }
    if (rc != HSMCA_OK) {
        start_fail("quorum", rc, NULL);
        goto out;
    }
    {
        int crashed = 0;

        rc = hsmca_custody_set_node(d->cfg.node);
        if (rc == HSMCA_OK)
            rc = hsmca_custody_started(d->audit, d->quorum_ro, HSMCA_VERSION, &crashed);
        for (i = 0; rc == HSMCA_OK && i < d->nrestored; i++)
            rc = hsmca_custody_token_restored(d->audit, d->restored[i]);
        if (rc != HSMCA_OK) {
            start_fail("audit: daemon.start", rc, NULL);
            goto out;
        }
        started = 1;
    }
    rc = hsmca_crl_policies_load(d->cfg.crl_policy, &d->crl_policies);
    if (rc != HSMCA_OK) {
        start_fail("crl_policy", rc, d->cfg.crl_policy);
        goto out;
    }
    hsmcad_crl_load(d);
    if (load_profiles(d) != 0)
        goto out;
    if (start_issuance(d) != 0)
        goto out;
    rc = hsmcad_mdl_start(d); /* mDL CAs and profiles (routes_mdl.c) */
    if (rc != HSMCA_OK) {
        start_fail("mdl", rc, d->cfg.profiles_dir);
        goto out;
    }

    route_names = calloc(hsmcad_nroutes, sizeof(*route_names));
    if (route_names == NULL)
        goto out;
    for (i = 0; i < hsmcad_nroutes; i++)
        route_names[i] = hsmcad_routes[i].action;
    rc = hsmcad_metrics_new(route_names, hsmcad_nroutes, &d->metrics);
    if (rc != HSMCA_OK)
        goto out;
    /* several nodes on PostgreSQL: the others see this one running from before it listens */
    rc = hsmcad_nodes_hold(d);
    if (rc != HSMCA_OK) {
        start_fail("node liveness", rc, NULL);
        goto out;
    }

    rc = hsmcad_server_start(d, cert_pem, key_pem, ca_pem, &srv, &port);
    if (rc != HSMCA_OK) {
        start_fail("listen", rc, d->cfg.listen_host);
        goto out;
    }
    if (port_file != NULL) {
        FILE *f = fopen(port_file, "w");

        if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0) {
            fprintf(stderr, "hsmcad: cannot write port file %s\n", port_file);
            goto out;
        }
    }
    /* tokens missing or unreadable at start: named in /readyz and the log, audited */
    hsmcad_tokens_check(d, 1);
    if (d->cfg.publish_host[0] != '\0') {
        unsigned pport = 0;

        rc = hsmcad_publish_start(d, d->cfg.publish_host, d->cfg.publish_port, &d->publish, &pport);
        if (rc != HSMCA_OK) {
            start_fail("publish_listen", rc, d->cfg.publish_host);
            goto out;
        }
        if (port_file != NULL) {
            char pf[HSMCA_PATH_MAX + 16];
            FILE *f;

            snprintf(pf, sizeof(pf), "%s.publish", port_file);
            f = fopen(pf, "w");
            if (f == NULL || fprintf(f, "%u\n", pport) < 0 || fclose(f) != 0) {
                fprintf(stderr, "hsmcad: cannot write port file %s\n", pf);
                goto out;
            }
        }
        hsmca_log(HSMCA_LOG_INFO, "hsmcad", "publish-listening", "port=%u", pport);
    }
    keeper.d = d;
    if (pthread_create(&keeper.th, NULL, keeper_run, &keeper) == 0)
        keeper.running = 1;
    hsmcad_nodes_start(d); /* several nodes on PostgreSQL: this node's side of their quorum */
    (void)hsmcad_readiness(d, NULL);
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "ready", "port=%u cas=%u", port, hsmca_ca_count(d->cas));
#ifdef HSMCA_HAVE_SYSTEMD
    /* Type=notify: systemd starts dependants only now (a no-op outside systemd). */
    (void)sd_notifyf(0, "READY=1\nSTATUS=serving on port %u, %u CAs", port, hsmca_ca_count(d->cas));
#endif
    while (sigwait(&sigs, &sig) != 0 || (sig != SIGTERM && sig != SIGINT)) {
        if (sig == SIGHUP) {
            enum hsmca_err cause;

            /* logged and audited by the reload itself, refused or not */
            rc = hsmcad_reload(d, "SIGHUP", "hsmcad", "system", NULL, &cause, why, sizeof(why),
                               NULL);
            if (rc != HSMCA_OK && rc != HSMCA_E_RELOAD_REFUSED)
                hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "reload-audit-failed", "code=%s",
                          hsmca_err_code(rc));
            sig = 0;
        }
    }
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "stopping", "signal=%d", sig);
#ifdef HSMCA_HAVE_SYSTEMD
    (void)sd_notify(0, "STOPPING=1");
#endif
    status = 0;

out:
    /* HTTP first: no handler may run once the engines below are gone. */
    hsmcad_server_stop(srv, 10000);
    if (d != NULL) {
        hsmcad_publish_stop(d->publish);
        d->publish = NULL;
    }
    hsmcad_nodes_stop();
    if (keeper.running) {
        pthread_mutex_lock(&keeper.mu);
        keeper.stop = 1;
        pthread_cond_signal(&keeper.cv);
        pthread_mutex_unlock(&keeper.mu);
        pthread_join(keeper.th, NULL);
    }
    hsmcad_nodes_release(); /* from now on the other nodes see this one down */
    if (d != NULL) {
        hsmcad_flush_refusals(d, 1); /* counted refusals are summarised before the log closes */
        hsmca_ca_registry_stop(d->cas, "stop");
        hsmcad_mdl_stop(d);
        hsmca_issuer_free(d->issuer);
        d->issuer = NULL;
        hsmca_issue_quotas_free(d->quotas);
        hsmca_crl_policies_free(d->crl_policies);
        hsmca_quorum_free(d->quorum);
        d->quorum = NULL;
        if (started && d->audit != NULL && hsmca_custody_stopping(d->audit) != HSMCA_OK) {
            start_fail("audit: daemon.stop", HSMCA_E_AUDIT_CLOSED, NULL);
            status = 1;
        }
        if (d->audit != NULL) {
            rc = hsmca_audit_close(d->audit);
            if (rc != HSMCA_OK) {
                start_fail("audit close", rc, NULL);
                status = 1;
            }
            d->audit = NULL;
        }
        for (i = 0; i < d->nro; i++)
            hsmca_store_close(d->ro[i]);
        hsmca_store_close(d->quorum_ro);
        hsmca_store_checkpointer_stop(d->ckpt);
        d->ckpt = NULL;
        hsmca_store_close(d->store);
        if (hsmca_ca_registry_free(d->cas) != HSMCA_OK)
            status = 1;
        hsmca_key_free(__atomic_load_n(&d->audit_key, __ATOMIC_ACQUIRE)); /* heal may swap it */
        if (d->audit_tok != NULL && hsmca_token_logout(d->audit_tok) != HSMCA_OK)
            status = 1;
        if (hsmca_token_free(d->audit_tok) != HSMCA_OK || hsmca_p11_free(d->p11) != HSMCA_OK)
            status = 1;
        hsmcad_roles_free(d->roles);
        hsmcad_metrics_free(d->metrics);
        free(d->audit_cert_pem);
        hsmcad_limiter_free(d->lim);
        pthread_key_delete(d->ro_key);
        pthread_mutex_destroy(&d->ro_mu);
        pthread_mutex_destroy(&d->lim_mu);
        pthread_mutex_destroy(&d->reload_mu);
        pthread_mutex_destroy(&d->roles_mu);
        pthread_rwlock_destroy(&d->prof_lock);
        free(d);
    }
    free(route_names);
    free(cert_pem);
    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, strlen(key_pem));
        free(key_pem);
    }
    free(ca_pem);
    hsmca_secret_clear(&pin);
    OPENSSL_cleanup();
    return status;
}
