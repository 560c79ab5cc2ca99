/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_approval.c -- libFuzzer target for an approval as POST /v1/requests/{id}/approvals takes
 * it (hsmca_quorum_approval_check: the JSON shape, names, the request id, the shares, the base64
 * DER signature), the parse hsmca_quorum_approve makes before it looks anything up. The request
 * envelope an approver reads is fuzz_quorum's, the sealed shares fuzz_seal's. Invariant beyond "no
 * crash": OK or quorum-approval-malformed only, the same way twice.
 */
#include <stdint.h>
#include <stdlib.h>

#include "hsmca/quorum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum hsmca_err a = hsmca_quorum_approval_check((const char *)data, size);
    enum hsmca_err b = hsmca_quorum_approval_check((const char *)data, size);

    if (a != b || (a != HSMCA_OK && a != HSMCA_E_QUORUM_APPROVAL_MALFORMED))
        abort();
    return 0;
}
