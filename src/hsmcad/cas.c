/* SPDX-License-Identifier: Apache-2.0
 *
 * cas.c -- the daemon's side of its CA registry (src/lib/ca.c): the registry opens the tokens,
 * keys and activation windows; the daemon adds its hooks: each CA's CRL is signed when its window
 * opens and once more before it closes (crls.c), and new CAs are read through the calling
 * thread's read handle.
 */
#include <string.h>

#include "hsmca/ca.h"

#include "hsmcad.h"
#include "hsmcad_mdl.h"

static struct hsmca_store *
reader(void *arg)
{
    return hsmcad_ro(arg);
}

/* the PAI's key is reachable now: its CRL is signed at every activation */
static void
window_opened(void *arg, struct hsmca_ca *c)
{
    (void)hsmcad_crl_sign_locked(arg, c, "activation");
}

/* the last CRL the key can sign before the next window */
static void
window_closing(void *arg, struct hsmca_ca *c)
{
    (void)hsmcad_crl_sign_locked(arg, c, "window-end");
}

void
hsmcad_cas_configure(struct hsmcad *d)
{
    struct hsmca_ca_registry_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.p11 = d->p11;
    cfg.audit = d->audit;
    cfg.issuer = d->have_profiles ? d->issuer : NULL;
    cfg.dac_profile = d->have_profiles ? &d->dac_profile : NULL;
    cfg.log_module = "hsmcad";
    cfg.arg = d;
    cfg.reader = reader;
    cfg.window_opened = window_opened;
    cfg.window_closing = window_closing;
    hsmca_ca_registry_configure(d->cas, &cfg);
}

void
hsmcad_quorum_exec(struct hsmcad *d, struct hsmca_quorum_exec *ex)
{
    hsmca_ca_quorum_exec(d->cas, ex);
    ex->paa_profile = d->have_profiles ? &d->paa_profile : NULL;
    ex->pai_profile = d->have_profiles ? &d->pai_profile : NULL;
    ex->crl_policies = d->crl_policies;
    ex->mdl_iaca_profile = hsmcad_mdl_profile(d, HSMCA_MDL_IACA); /* routes_mdl.c */
    ex->mdl_ds_profile = hsmcad_mdl_profile(d, HSMCA_MDL_DS);
    ex->mdl_arg = d;
    ex->mdl_created = hsmcad_mdl_created;
    ex->mdl_activate = hsmcad_mdl_activate;
    ex->mdl_activate_shared = hsmcad_mdl_activate_shared; /* in the store, as DAC windows */
    ex->mdl_revoked = hsmcad_mdl_revoked;
    ex->token_init = hsmca_ca_token_init; /* token.enroll */
}
