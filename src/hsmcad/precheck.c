/* SPDX-License-Identifier: Apache-2.0
 *
 * precheck.c -- check before asking: what the daemon can see of a quorum request's parameters
 * before any approver is asked (the quorum module then checks the rest against the store): the
 * CA token present in the module, a new PAI's VID inside its PAA's scope and its PID as the PAI
 * profile wants it. A request that cannot run is refused at creation, with a detail that says
 * what to change, never after its approvals are spent.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "hsmca/store_certs.h"

#include "hsmcad.h"

/* The label of a "pkcs11:token=LABEL..." URI into out ("" when it has none). */
static void
uri_label(const char *uri, char *out, size_t n)
{
    const char *p = strstr(uri, "token=");
    size_t len;

    out[0] = '\0';
    if (p == NULL)
        return;
    p += 6;
    len = strcspn(p, ";?");
    if (len >= n)
        len = n - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

static int
token_absent(struct hsmcad *d, const char *label, char *why, size_t n)
{
    if (label == NULL || hsmca_ca_token(d->cas, label, NULL, 1) != NULL)
        return 0;
    snprintf(why, n,
             "token %.32s is not present in the module: connect or initialise it first "
             "(docs/token-faults.md)",
             label);
    return 1;
}

int
hsmcad_request_precheck(struct hsmcad *d, const char *op, json_t *params, char *why, size_t n)
{
    struct hsmca_store *ro = hsmcad_ro(d);
    const char *token = json_string_value(json_object_get(params, "token"));
    const char *ca = json_string_value(json_object_get(params, "ca"));
    json_t *vid = json_object_get(params, "vid"), *pid = json_object_get(params, "pid");
    struct hsmca_ca_rec rec;
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    int bad = 0;

    why[0] = '\0';
    if (ro == NULL)
        return 0; /* the quorum module still checks everything it can */
    memset(&rec, 0, sizeof(rec));
    if (strcmp(op, "ca.create_paa") == 0 || strcmp(op, "ca.create_pai") == 0 ||
        strcmp(op, "ca.rekey") == 0) {
        if (token_absent(d, token, why, n))
            return 1;
    }
    if (strcmp(op, "ca.create_pai") == 0) {
        const char *parent = json_string_value(json_object_get(params, "parent"));

        if (parent != NULL && hsmca_store_ca_get(ro, parent, &rec) == HSMCA_OK) {
            if (rec.vid >= 0 && json_is_integer(vid) && json_integer_value(vid) != rec.vid) {
                snprintf(why, n,
                         "VID %04llX is outside the scope of PAA %s (VID %04X): a PAI under it "
                         "carries VID %04X",
                         (unsigned long long)json_integer_value(vid) & 0xffffu, parent, rec.vid,
                         rec.vid);
                bad = 1;
            }
            hsmca_ca_rec_clear(&rec);
        }
        pthread_rwlock_rdlock(&d->prof_lock);
        if (!bad && d->have_profiles && pid != NULL &&
            d->pai_profile.pid == HSMCA_PRESENCE_FORBIDDEN) {
            snprintf(why, n, "the PAI profile %s forbids a PID", d->pai_profile.name);
            bad = 1;
        } else if (!bad && d->have_profiles && pid == NULL &&
                   d->pai_profile.pid == HSMCA_PRESENCE_REQUIRED) {
            snprintf(why, n, "the PAI profile %s requires a PID", d->pai_profile.name);
            bad = 1;
        }
        pthread_rwlock_unlock(&d->prof_lock);
        return bad;
    }
    if (strcmp(op, "token.enroll") == 0) {
        if (token != NULL && hsmca_ca_token(d->cas, token, NULL, 1) != NULL) {
            snprintf(why, n,
                     "a token labelled %.32s is in the module already: token.enroll initialises "
                     "a free token under a new label",
                     token);
            return 1;
        }
        return 0;
    }
    if (strcmp(op, "ca.activate") == 0 && ca != NULL &&
        hsmca_store_ca_get(ro, ca, &rec) == HSMCA_OK) {
        uri_label(rec.token_uri, label, sizeof(label));
        hsmca_ca_rec_clear(&rec);
        return label[0] != '\0' && token_absent(d, label, why, n);
    }
    return 0;
}

enum hsmca_err
hsmcad_ca_profiles(void *arg, struct hsmca_profile *paa, struct hsmca_profile *pai)
{
    struct hsmcad *d = arg;
    enum hsmca_err rc = HSMCA_E_NOT_FOUND;

    pthread_rwlock_rdlock(&d->prof_lock);
    if (d->have_profiles) {
        *paa = d->paa_profile;
        *pai = d->pai_profile;
        rc = HSMCA_OK;
    }
    pthread_rwlock_unlock(&d->prof_lock);
    return rc;
}
