/* SPDX-License-Identifier: Apache-2.0
 *
 * quorum_witness.c -- the approver as a witness of the audit log: the checkpoint a request
 * carries checked against the audit key and against what this approver saw last.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsmca/audit_format.h"
#include "hsmca/b64.h"
#include "hsmca/log.h"
#include "hsmca/matter.h"
#include "hsmca/quorum.h"
#include "hsmca/seal.h"
#include "hsmca/shamir.h"
#include "hsmca/sizes.h"
#include "hsmca/store_quorum.h"
#include "hsmca/util.h"

#include "approval.h"
#include "quorum_int.h"
#include "quorum_revoke.h"

/* ---- the approver as a witness of the audit log ---- */

enum hsmca_err
hsmca_quorum_witness(const char *envelope, size_t len, EVP_PKEY *audit_pub, const char *state,
                     char **state_out)
{
    struct env_view e;
    struct hsmca_audit_cp_fields f;
    const char *text = NULL, *sig_b64 = NULL;
    unsigned char *sig = NULL, h[HSMCA_SHA256_LEN];
    size_t sig_len = 0;
    json_t *old = NULL, *neu = NULL;
    char head[HSMCA_SHA256_HEX_SIZE], hash[HSMCA_SHA256_HEX_SIZE];
    enum hsmca_err rc;

    if (audit_pub == NULL || state_out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_q_env_parse(envelope, len, &e);
    if (rc != HSMCA_OK)
        return rc;
    rc = HSMCA_E_QUORUM_CHECKPOINT;
    if (!json_is_object(e.v.checkpoint) ||
        json_unpack_ex(e.v.checkpoint, NULL, JSON_STRICT, "{s:s, s:s}", "sig", &sig_b64, "text",
                       &text) != 0 ||
        hsmca_b64_decode(sig_b64, 256, &sig, &sig_len) != HSMCA_OK)
        goto out;
    /* a checkpoint text, naming this audit key and signed by it (audit_format.c, one rule) */
    if (hsmca_audit_checkpoint_verify(audit_pub, text, strlen(text), sig, sig_len, &f) != HSMCA_OK)
        goto out;
    if (hsmca_q_sha256v(h, text, strlen(text), (const void *)NULL) != 0)
        goto out;
    hsmca_q_hex32(f.head, head);
    hsmca_q_hex32(h, hash);
    /* consistency with what this approver saw last */
    if (state != NULL && state[0] != '\0') {
        json_int_t osize = 0;
        const char *ohead = NULL, *ohash = NULL;

        old = json_loads(state, JSON_REJECT_DUPLICATES, NULL);
        if (old == NULL || json_unpack_ex(old, NULL, JSON_STRICT, "{s:I, s:s, s:s}", "size", &osize,
                                          "head", &ohead, "hash", &ohash) != 0) {
            rc = HSMCA_E_INVALID_ARG;
            goto out;
        }
        /* A larger size is accepted as an extension: a checkpoint names only its predecessor,
         * so without the checkpoints in between a fork inside the new range is found by the
         * auditor's extract check (hsmca audit verify --previous), not here. */
        if ((uint64_t)osize > f.size) {
            rc = HSMCA_E_QUORUM_FORK; /* the log is shorter than it was: truncated */
            goto out;
        }
        if ((uint64_t)osize == f.size && strcmp(ohead, head) != 0) {
            rc = HSMCA_E_QUORUM_FORK; /* same size, another head: a fork */
            goto out;
        }
    }
    neu = json_pack("{s:I, s:s, s:s}", "size", (json_int_t)f.size, "head", head, "hash", hash);
    *state_out = neu != NULL ? json_dumps(neu, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = *state_out != NULL ? HSMCA_OK : HSMCA_E_NOMEM;
out:
    free(sig);
    json_decref(old);
    json_decref(neu);
    hsmca_q_env_view_clear(&e);
    return rc;
}
