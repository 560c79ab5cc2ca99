/* SPDX-License-Identifier: Apache-2.0
 *
 * pki_common.c -- the approvers and the quorum ceremony of the test helpers (pki_common.h).
 */
#include "pki_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

const char *const pki_names[3] = {"bob-approver", "dave-approver", "erin-approver"};

enum hsmca_err
pki_store_open(const char *dir, struct hsmca_store **st)
{
    const char *spec = getenv("HSMCA_TEST_STORE_SPEC");
    char path[1024];

    if (spec != NULL && spec[0] != '\0')
        snprintf(path, sizeof(path), "%s", spec);
    else
        snprintf(path, sizeof(path), "%s/hsmca.db", dir);
    return hsmca_store_open(path, st);
}

int
pki_log_open(const char *dir, struct hsmca_p11 *p11, struct hsmca_store *st, const char *id,
             struct hsmca_token **ta, struct hsmca_key **ka, struct hsmca_audit **a,
             struct hsmca_quorum **q)
{
    struct hsmca_secret apin = {NULL, 0};
    struct hsmca_audit_config ac;
    struct hsmca_quorum_config qc;
    char path[1024], genesis[128], why[256] = "";
    enum hsmca_err rc;

    snprintf(path, sizeof(path), "%s/audit.pin", dir);
    snprintf(genesis, sizeof(genesis), "{\"ceremony\":\"%s\"}", id);
    rc = hsmca_secret_read_pin_file(path, &apin);
    if (rc == HSMCA_OK)
        rc = hsmca_token_open(p11, "pkcs11:token=hsmca-audit", ta);
    if (rc == HSMCA_OK)
        rc = hsmca_token_login(*ta, &apin);
    hsmca_secret_clear(&apin);
    if (rc == HSMCA_OK)
        rc = hsmca_token_find_key(*ta, "pkcs11:token=hsmca-audit;object=audit-key", ka);
    if (rc == HSMCA_OK) {
        memset(&ac, 0, sizeof(ac));
        ac.store = st;
        ac.token = *ta;
        ac.key = *ka;
        ac.origin = "hsmca/test";
        ac.genesis_detail_json = genesis;
        rc = hsmca_audit_open(&ac, a, why, sizeof(why));
    }
    if (rc == HSMCA_OK) {
        memset(&qc, 0, sizeof(qc));
        qc.store = st;
        qc.audit = *a;
        rc = hsmca_quorum_open(&qc, q);
    }
    if (rc != HSMCA_OK)
        fprintf(stderr, "pki: the audit log and quorum: %s %s\n", hsmca_err_code(rc), why);
    return rc == HSMCA_OK ? 0 : 1;
}

int
pki_ceremony(struct hsmca_quorum *q, const char *dir, struct hsmca_quorum_token_in *t, size_t ntok,
             const char *policy, size_t plen, const char *id)
{
    static const char *const serials[3] = {"s0", "s1", "s2"};
    struct hsmca_quorum_approver_in ap[3];
    struct hsmca_quorum_init in;
    struct hsmca_quorum_principal who = {"ceremony", "admin", NULL};
    EVP_PKEY *appr[3] = {NULL, NULL, NULL};
    char path[1024];
    enum hsmca_err rc = HSMCA_E_INTERNAL;
    int i;

    memset(ap, 0, sizeof(ap));
    for (i = 0; i < 3; i++) {
        FILE *f;

        appr[i] = EVP_EC_gen("P-256");
        if (appr[i] == NULL)
            goto out;
        snprintf(path, sizeof(path), "%s/%s.key.pem", dir, pki_names[i]);
        f = fopen(path, "w");
        if (f == NULL || PEM_write_PrivateKey(f, appr[i], NULL, NULL, 0, NULL, NULL) != 1 ||
            fclose(f) != 0)
            goto out;
        ap[i].name = pki_names[i];
        ap[i].pub = appr[i];
        ap[i].token_serial = serials[i];
    }
    memset(&in, 0, sizeof(in));
    in.tokens = t;
    in.ntokens = ntok;
    in.approvers = ap;
    in.napprovers = 3;
    in.m = 2;
    in.policy_json = policy;
    in.policy_len = plen;
    in.ceremony_id = id;
    rc = hsmca_quorum_ceremony_init(q, &in, &who);
out:
    if (rc != HSMCA_OK)
        fprintf(stderr, "pki: the quorum ceremony %s failed: %s\n", id, hsmca_err_code(rc));
    for (i = 0; i < 3; i++)
        EVP_PKEY_free(appr[i]);
    return rc == HSMCA_OK ? 0 : 1;
}
