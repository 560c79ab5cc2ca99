/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_seal.c -- libFuzzer target for hsmca_unseal_soft: sealed shares arrive from approvers over
 * the network. A fixed P-256 key (made for this target only, secret to nobody) and fixed associated
 * data. Invariants beyond "no crash": the answer is OK, SEAL_FORMAT or SEAL_AUTH only; it is
 * deterministic; anything too short or too long, or with another version, is SEAL_FORMAT; an
 * accepted input yields exactly size - HSMCA_SEAL_OVERHEAD bytes, which seal and unseal again to
 * the same bytes; a refusal leaves the output empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/seal.h"
#include "hsmca/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* SEC1 DER of the fuzzing key; the seeds in fuzz_seal.in/ are sealed to it. */
static const unsigned char fuzz_key_der[] = {
    0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20, 0x7b, 0x9f, 0xbb, 0x21, 0xee, 0x1b, 0x35, 0x56, 0x10,
    0x71, 0x01, 0x0d, 0x39, 0x37, 0x48, 0x18, 0x45, 0x6e, 0xf6, 0xda, 0xeb, 0x2b, 0x13, 0x18, 0x3f,
    0x29, 0x8b, 0x97, 0x8b, 0x12, 0xdf, 0xa8, 0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x03, 0x01, 0x07, 0xa1, 0x44, 0x03, 0x42, 0x00, 0x04, 0x31, 0xd6, 0xbc, 0x55, 0x15, 0xca, 0xe3,
    0x44, 0x1a, 0x4e, 0x5f, 0xa0, 0x22, 0xeb, 0x43, 0x17, 0x10, 0x92, 0x6a, 0x02, 0x20, 0x89, 0x77,
    0x8c, 0x77, 0x9a, 0xf2, 0x3c, 0xc5, 0x50, 0x03, 0xa6, 0x10, 0xd1, 0xcf, 0xc2, 0x15, 0x41, 0x49,
    0x28, 0x42, 0x5a, 0x94, 0xeb, 0xe7, 0x68, 0x35, 0x8c, 0xf5, 0x00, 0xd4, 0x94, 0x2d, 0x8d, 0x91,
    0x15, 0x6c, 0x29, 0xdf, 0x53, 0xa3, 0xcb, 0x0a, 0xd3};

static const unsigned char fuzz_digest[32] = {
    0xd1, 0x6e, 0x57, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
    0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c};

static const struct hsmca_seal_ad fuzz_ad = {"pai-fuzz",      42,         2,
                                             "approver-fuzz", "req-fuzz", fuzz_digest};

static EVP_PKEY *
fuzz_key(void)
{
    static EVP_PKEY *key;
    const unsigned char *p = fuzz_key_der;

    /* No hsmca_secure_heap_init here: OpenSSL would then keep its DRBG state on the mmap'ed
     * secure heap, which LeakSanitizer does not scan, and libFuzzer's per-input leak check would
     * report the DRBG's ordinary-heap objects as leaks. test_seal checks the secure heap. */
    if (key == NULL) {
        key = d2i_AutoPrivateKey(NULL, &p, (long)sizeof(fuzz_key_der));
        if (key == NULL)
            abort();
    }
    return key;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    EVP_PKEY *key = fuzz_key();
    struct hsmca_secret a = {NULL, 0}, b = {NULL, 0}, c = {NULL, 0};
    enum hsmca_err ra, rb;
    unsigned char *resealed = NULL;
    size_t rlen = 0;

    ra = hsmca_unseal_soft(key, &fuzz_ad, data, size, &a);
    rb = hsmca_unseal_soft(key, &fuzz_ad, data, size, &b);
    if (ra != rb)
        abort();
    if (ra != HSMCA_OK && ra != HSMCA_E_SEAL_FORMAT && ra != HSMCA_E_SEAL_AUTH)
        abort();
    if ((size <= HSMCA_SEAL_OVERHEAD || size > HSMCA_SEAL_OVERHEAD + HSMCA_SEAL_PT_MAX ||
         data[0] != 1) &&
        ra != HSMCA_E_SEAL_FORMAT)
        abort();
    if (ra != HSMCA_OK) {
        if (a.p != NULL || b.p != NULL)
            abort();
        return 0;
    }
    if (a.len != size - HSMCA_SEAL_OVERHEAD || b.len != a.len || memcmp(a.p, b.p, a.len) != 0)
        abort();
    if (hsmca_seal(key, &fuzz_ad, a.p, a.len, &resealed, &rlen) != HSMCA_OK || rlen != size)
        abort();
    if (hsmca_unseal_soft(key, &fuzz_ad, resealed, rlen, &c) != HSMCA_OK || c.len != a.len ||
        memcmp(c.p, a.p, a.len) != 0)
        abort();
    free(resealed);
    hsmca_secret_clear(&a);
    hsmca_secret_clear(&b);
    hsmca_secret_clear(&c);
    return 0;
}
