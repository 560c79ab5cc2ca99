/* SPDX-License-Identifier: Apache-2.0
 *
 * test_audit_format.c -- the audit formats on their own (audit_format.c), with software keys: the
 * entry time stamp both ways, the audit key id, and hsmca_audit_checkpoint_verify accepting a
 * checkpoint signed by its key and refusing one altered, re-signed by another key, made for
 * another key, or malformed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hsmca/audit_format.h"
#include "hsmca/util.h"

static EVP_PKEY *
p256(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    assert_non_null(k);
    return k;
}

/* SHA-256 of k's SubjectPublicKeyInfo, independently of hsmca_audit_key_id. */
static void
spki_sha256(EVP_PKEY *k, unsigned char out[32])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);

    assert_true(n > 0);
    SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
}

/* A checkpoint text naming key_of's key, signed (DER ECDSA over SHA-256) by signer. */
static void
make_cp(EVP_PKEY *key_of, EVP_PKEY *signer, uint64_t size, char *text, size_t text_max,
        unsigned char *sig, size_t *sig_len)
{
    unsigned char kid[32];
    char kid_hex[65];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int n;

    spki_sha256(key_of, kid);
    hsmca_hex_encode(kid, 32, kid_hex, sizeof(kid_hex));
    n = snprintf(text, text_max,
                 "hsmca-checkpoint/v1\norigin hsmca/test\nsize %llu\nhead %064d\n"
                 "time 2026-01-02T03:04:05.678Z\nprev %064d\nkey %s\n",
                 (unsigned long long)size, 7, 0, kid_hex);
    assert_true(n > 0 && (size_t)n < text_max);
    assert_non_null(md);
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, signer), 1);
    assert_int_equal(EVP_DigestSign(md, sig, sig_len, (const unsigned char *)text, strlen(text)),
                     1);
    EVP_MD_CTX_free(md);
}

static void
time_format_both_ways(void **state)
{
    char t[HSMCA_AUDIT_TIME_LEN + 1];

    (void)state;
    hsmca_audit_time_format(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    hsmca_audit_time_format(-5000, t); /* before the epoch: the epoch */
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    hsmca_audit_time_format(1767323045678LL, t);
    assert_string_equal(t, "2026-01-02T03:04:05.678Z");
    assert_int_equal(strlen(t), HSMCA_AUDIT_TIME_LEN);
    assert_int_equal(hsmca_audit_time_parse(t), 1767323045678LL);
    hsmca_audit_time_format(253402300799999LL, t); /* the last ms of year 9999 */
    assert_string_equal(t, "9999-12-31T23:59:59.999Z");
    assert_int_equal(hsmca_audit_time_parse(t), 253402300799999LL);
}

static void
key_id_is_spki_sha256(void **state)
{
    EVP_PKEY *k = p256();
    unsigned char a[32], b[32];

    (void)state;
    assert_int_equal(hsmca_audit_key_id(k, a), HSMCA_OK);
    spki_sha256(k, b);
    assert_memory_equal(a, b, 32);
    EVP_PKEY_free(k);
}

static void
checkpoint_verify_accepts_and_refuses(void **state)
{
    EVP_PKEY *k = p256(), *other = p256();
    struct hsmca_audit_cp_fields f;
    unsigned char sig[128], kid[32];
    size_t sl = sizeof(sig);
    char text[512];

    (void)state;
    /* signed by its own key: accepted, the fields out */
    make_cp(k, k, 42, text, sizeof(text), sig, &sl);
    memset(&f, 0, sizeof(f));
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, strlen(text), sig, sl, &f), HSMCA_OK);
    assert_int_equal(f.size, 42);
    assert_string_equal(f.origin, "hsmca/test");
    spki_sha256(k, kid);
    assert_memory_equal(f.key, kid, 32);
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, strlen(text), sig, sl, NULL), HSMCA_OK);

    /* checked against another key: the text names k, not other */
    memset(&f, 0xa5, sizeof(f));
    assert_int_equal(hsmca_audit_checkpoint_verify(other, text, strlen(text), sig, sl, &f),
                     HSMCA_E_AUDIT_CHECKPOINT);
    assert_int_equal(f.size, 0xa5a5a5a5a5a5a5a5ull); /* *out untouched on failure */

    /* altered after signing: the size line says 43 */
    assert_non_null(strstr(text, "size 42\n"));
    strstr(text, "size 42\n")[6] = '3';
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, strlen(text), sig, sl, NULL),
                     HSMCA_E_AUDIT_CHECKPOINT_SIG);

    /* naming k but signed by other: the signature does not verify with k */
    sl = sizeof(sig);
    make_cp(k, other, 42, text, sizeof(text), sig, &sl);
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, strlen(text), sig, sl, NULL),
                     HSMCA_E_AUDIT_CHECKPOINT_SIG);

    /* a flipped signature byte */
    sl = sizeof(sig);
    make_cp(k, k, 42, text, sizeof(text), sig, &sl);
    sig[sl - 1] ^= 1;
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, strlen(text), sig, sl, NULL),
                     HSMCA_E_AUDIT_CHECKPOINT_SIG);
    sig[sl - 1] ^= 1;

    /* malformed: truncated text, a missing final newline, no arguments */
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, 30, sig, sl, NULL),
                     HSMCA_E_AUDIT_CHECKPOINT);
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, strlen(text) - 1, sig, sl, NULL),
                     HSMCA_E_AUDIT_CHECKPOINT);
    assert_int_equal(hsmca_audit_checkpoint_verify(NULL, text, strlen(text), sig, sl, NULL),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_audit_checkpoint_verify(k, NULL, 0, sig, sl, NULL), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_audit_checkpoint_verify(k, text, strlen(text), NULL, 0, NULL),
                     HSMCA_E_INVALID_ARG);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(time_format_both_ways),
        cmocka_unit_test(key_id_is_spki_sha256),
        cmocka_unit_test(checkpoint_verify_accepts_and_refuses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
