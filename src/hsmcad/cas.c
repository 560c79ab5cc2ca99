/* SPDX-License-Identifier: Apache-2.0
 *
 * cas.c -- the activation state of the daemon's CAs: every CA starts inactive (no key handle,
 * token logged out); a window opened by a quorum ca.activate holds the key until it is closed
 * (ca.deactivate, or shutdown), when signing is drained, the key freed and the token logged out.
 */
#include <stddef.h>

#include "hsmca/log.h"
#include "hsmca/token.h"

#include "hsmcad.h"

enum hsmca_err (*hsmcad_activate_hook(void))(void *arg, const char *ca_id, int64_t until_ms,
                                             uint64_t max_dacs)
{
    return NULL; /* issuance (include/hsmca/issue.h) is not linked into this build yet */
}

void
hsmcad_ca_deactivate_locked(struct hsmcad *d, struct hsmcad_ca *c)
{
    (void)d;
    if (c->key == NULL)
        return;
    hsmca_key_free(c->key);
    c->key = NULL;
    if (c->tok != NULL && hsmca_token_logout(c->tok) != HSMCA_OK)
        hsmca_log(HSMCA_LOG_WARN, "hsmcad", "logout-failed", "ca=%s", c->id);
}
