/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_matter.c -- libFuzzer target for the Matter validator over arbitrary bytes (DER or PEM).
 * Invariants beyond "no crash": an accepted DER certificate re-encodes to the same bytes; every
 * refusal names a rule, a certificate and a connectedhomeip sub-code; the validator judges the
 * same input the same way twice (the certificate is not changed by being judged).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include "hsmca/matter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_verdict(enum hsmca_err rc, const struct hsmca_matter_verdict *v)
{
    if (rc == HSMCA_OK)
        return;
    if (v->code != rc || v->rule == NULL || v->rule[0] == '\0' || v->cert == NULL || v->chip <= 0 ||
        rc < 400 || rc > 499)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    X509 *x = NULL;
    struct hsmca_matter_verdict v1, v2;
    struct hsmca_matter_vidpid vp;
    unsigned char *re = NULL;
    enum hsmca_err rc, rc2;
    int t, n;
    const time_t now = 1767225600; /* fixed: 2026-01-01, so replays are deterministic */

    rc = hsmca_matter_cert_parse(data, size, &x);
    if (rc != HSMCA_OK) {
        if (x != NULL || (rc != HSMCA_E_MATTER_CERT_MALFORMED && rc != HSMCA_E_TOO_LARGE))
            abort();
        memset(&v1, 0, sizeof(v1));
        rc = hsmca_matter_validate_der(data, size, data, size, data, size, NULL, now, &v1);
        if (rc == HSMCA_OK)
            abort();
        if (rc != HSMCA_E_TOO_LARGE)
            check_verdict(rc, &v1);
        ERR_clear_error();
        return 0;
    }
    if (size > 0 && data[0] == 0x30) {
        n = i2d_X509(x, &re);
        if (n <= 0 || (size_t)n != size || memcmp(re, data, size) != 0)
            abort();
        OPENSSL_free(re);
    }
    for (t = HSMCA_PROFILE_PAA; t <= HSMCA_PROFILE_DAC; t++) {
        memset(&v1, 0, sizeof(v1));
        memset(&v2, 0, sizeof(v2));
        rc = hsmca_matter_check_format(x, (enum hsmca_profile_type)t, &v1);
        rc2 = hsmca_matter_check_format(x, (enum hsmca_profile_type)t, &v2);
        if (rc != rc2 || (rc != HSMCA_OK && strcmp(v1.rule, v2.rule) != 0))
            abort();
        check_verdict(rc, &v1);
    }
    rc = hsmca_matter_get_vidpid(x, &vp, NULL);
    if (rc != HSMCA_OK && rc != HSMCA_E_MATTER_DN)
        abort();
    memset(&v1, 0, sizeof(v1));
    rc = hsmca_matter_validate(x, x, x, NULL, now, &v1);
    check_verdict(rc, &v1);
    rc2 = hsmca_matter_validate(x, x, x, NULL, now, &v2);
    if (rc != rc2)
        abort();
    X509_free(x);
    ERR_clear_error();
    return 0;
}
