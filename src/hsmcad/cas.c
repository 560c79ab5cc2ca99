/* SPDX-License-Identifier: Apache-2.0
 *
 * cas.c -- the activation state of the daemon's CAs: every CA starts inactive (no key handle, its
 * token logged out); a quorum ca.activate logs the PAI's token in and this file opens the
 * issuance window with the key; the window is closed (signing drained, key freed, token logged
 * out) by ca.deactivate, when its time or count runs out, or at shutdown.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/custody.h"
#include "hsmca/log.h"
#include "hsmca/token.h"

#include "hsmcad.h"

enum hsmca_err
hsmcad_ca_attach(struct hsmcad *d, struct hsmca_store *st, const struct hsmca_ca_rec *rec)
{
    struct hsmca_ca_rec paa;
    struct hsmcad_ca *c;
    struct hsmca_issue_ca *ica = NULL;
    const unsigned char *p;
    X509 *paa_x = NULL;
    enum hsmca_err rc = HSMCA_OK;

    if (strcmp(rec->kind, "pai") != 0 || rec->cert_der == NULL || d->issuer == NULL ||
        !d->have_profiles)
        return HSMCA_OK; /* nothing to issue with */
    c = hsmcad_ca_find(d, rec->id);
    if (c == NULL || c->ica != NULL)
        return HSMCA_OK;
    memset(&paa, 0, sizeof(paa));
    rc = hsmca_store_ca_get(st, rec->parent, &paa);
    if (rc != HSMCA_OK)
        goto out;
    p = paa.cert_der;
    paa_x = p != NULL ? d2i_X509(NULL, &p, (long)paa.cert_len) : NULL;
    if (paa_x == NULL) {
        rc = HSMCA_E_MATTER_PAA_NOT_FOUND;
        goto out;
    }
    rc = hsmca_issue_ca_new(d->issuer, rec, paa_x, &d->dac_profile, &ica);
    if (rc != HSMCA_OK)
        goto out;
    pthread_mutex_lock(&d->cas_mu);
    if (c->ica == NULL) {
        __atomic_store_n(&c->ica, ica, __ATOMIC_RELEASE);
        ica = NULL;
    }
    pthread_mutex_unlock(&d->cas_mu);
out:
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "ca-not-issuing", "ca=%s code=%s", rec->id,
                  hsmca_err_code(rc));
    hsmca_issue_ca_free(ica);
    X509_free(paa_x);
    hsmca_ca_rec_clear(&paa);
    return rc;
}

enum hsmca_err
hsmcad_activate(void *arg, const char *ca_id, int64_t until_ms, uint64_t max_dacs)
{
    struct hsmcad *d = arg;
    struct hsmcad_ca *c = hsmcad_ca_find(d, ca_id);
    enum hsmca_err rc;

    if (c == NULL)
        return HSMCA_E_HTTP_CA_NOT_FOUND;
    pthread_mutex_lock(&d->cas_mu);
    if (c->ica == NULL || c->tok == NULL) {
        rc = HSMCA_E_ISSUE_CA_INACTIVE;
        goto out;
    }
    if (c->key != NULL) {
        rc = HSMCA_E_ISSUE_CA_ACTIVE;
        goto out;
    }
    if (__atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE)) {
        rc = HSMCA_E_REVOKE_CA_REVOKED;
        goto out;
    }
    rc = hsmca_token_find_key(c->tok, c->key_uri, &c->key);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_issue_ca_activate(c->ica, c->key, until_ms, max_dacs);
    if (rc != HSMCA_OK) {
        hsmca_key_free(c->key);
        c->key = NULL;
        goto out;
    }
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "ca-activated", "ca=%s until_ms=%lld max_dacs=%llu", c->id,
              (long long)until_ms, (unsigned long long)max_dacs);
    if (d->audit != NULL &&
        hsmca_custody_window(d->audit, c->id, 1, NULL, 0, max_dacs, until_ms) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "window-start-not-logged", "ca=%s", c->id);
    /* the PAI's key is reachable now: its CRL is signed at every activation (crls.c) */
    (void)hsmcad_crl_sign_locked(d, c, "activation");
out:
    pthread_mutex_unlock(&d->cas_mu);
    return rc;
}

void
hsmcad_ca_deactivate_locked(struct hsmcad *d, struct hsmcad_ca *c, const char *why)
{
    struct hsmca_issue_ca_state st;
    int64_t now = hsmcad_now_ms();

    memset(&st, 0, sizeof(st));
    if (c->ica != NULL)
        hsmca_issue_ca_deactivate(c->ica); /* drains signing under way */
    if (c->key == NULL)
        return;
    if (c->ica != NULL)
        hsmca_issue_ca_state(c->ica, now, &st);
    if (why == NULL)
        why = st.max_dacs != 0 && st.issued >= st.max_dacs ? "count" : "time";
    if (d->audit != NULL && hsmca_custody_window(d->audit, c->id, 0, why, st.issued, st.max_dacs,
                                                 st.until_ms) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "window-end-not-logged", "ca=%s reason=%s", c->id,
                  why);
    /* the last CRL the key can sign before the next window (crls.c) */
    if (!__atomic_load_n(&c->revoked, __ATOMIC_ACQUIRE))
        (void)hsmcad_crl_sign_locked(d, c, "window-end");
    hsmca_key_free(c->key);
    c->key = NULL;
    if (c->tok != NULL && hsmca_token_logout(c->tok) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "logout-failed", "ca=%s", c->id);
    hsmca_log(HSMCA_LOG_INFO, "hsmcad", "ca-deactivated", "ca=%s", c->id);
}

void
hsmcad_close_ended_windows(struct hsmcad *d)
{
    struct hsmca_issue_ca_state st;
    int64_t now = hsmcad_now_ms();
    unsigned i;

    pthread_mutex_lock(&d->cas_mu);
    for (i = 0; i < d->ncas; i++) {
        struct hsmcad_ca *c = &d->cas[i];

        if (c->key == NULL || c->ica == NULL)
            continue;
        hsmca_issue_ca_state(c->ica, now, &st);
        if (!st.active && st.in_flight == 0)
            hsmcad_ca_deactivate_locked(d, c, NULL);
    }
    pthread_mutex_unlock(&d->cas_mu);
}
