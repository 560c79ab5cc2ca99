/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_policy.c -- libFuzzer target for the policy files of policies/: the first byte picks the
 * parser, the rest is the file: 0 quotas (hsmca_issue_quotas_parse, then a lookup), 1 a
 * certificate profile (hsmca_profile_parse), 2 the quorum policy (hsmca_quorum_policy_check, for
 * 2 of 3 approvers). Invariants beyond "no crash": each answers OK or the codes its contract
 * names, the same way twice.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/issue.h"
#include "hsmca/profile.h"
#include "hsmca/quorum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    enum hsmca_err a, b;

    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0: {
        struct hsmca_issue_quotas *q = NULL, *q2 = NULL;
        uint64_t m = 0, d = 0;

        a = hsmca_issue_quotas_parse(text, len, &q);
        b = hsmca_issue_quotas_parse(text, len, &q2);
        if (a != b || (a != HSMCA_OK && a != HSMCA_E_ISSUE_QUOTAS_INVALID &&
                       a != HSMCA_E_TOO_LARGE && a != HSMCA_E_NOMEM))
            abort();
        if (a == HSMCA_OK) {
            hsmca_issue_quotas_get(q, "pai-8000", &m, &d);
            hsmca_issue_quotas_get(q, "", &m, &d);
        }
        hsmca_issue_quotas_free(q);
        hsmca_issue_quotas_free(q2);
        break;
    }
    case 1: {
        struct hsmca_profile p, p2;

        memset(&p, 0, sizeof(p));
        memset(&p2, 0, sizeof(p2));
        a = hsmca_profile_parse(text, len, &p);
        b = hsmca_profile_parse(text, len, &p2);
        if (a != b || (a != HSMCA_OK && a != HSMCA_E_PROFILE_INVALID && a != HSMCA_E_PROFILE_RULE &&
                       a != HSMCA_E_TOO_LARGE && a != HSMCA_E_INVALID_ARG))
            abort();
        break;
    }
    default:
        a = hsmca_quorum_policy_check(text, len, 2, 3);
        b = hsmca_quorum_policy_check(text, len, 2, 3);
        if (a != b || (a != HSMCA_OK && a != HSMCA_E_QUORUM_POLICY && a != HSMCA_E_NOMEM))
            abort();
        break;
    }
    return 0;
}
