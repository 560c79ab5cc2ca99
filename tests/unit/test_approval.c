/* SPDX-License-Identifier: Apache-2.0
 *
 * test_approval.c -- what makes an approval valid (src/lib/approval.h) and the strict base64 it
 * and every quorum format use (hsmca/b64.h): the digest's domain, signatures that verify and
 * those that do not, the requester rule, and base64 refused in every non-canonical spelling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "hsmca/b64.h"
#include "hsmca/limits.h"

#include "approval.h"

static void
b64_round_trip(void **state)
{
    static const unsigned char in[] = {0x00, 0xff, 0x10, 0x80, 0x7f, 0x01};
    unsigned char *out = NULL;
    size_t n, len = 0;
    char *s;

    (void)state;
    for (n = 1; n <= sizeof(in); n++) {
        s = hsmca_b64_encode(in, n);
        assert_non_null(s);
        assert_int_equal(strlen(s) % 4, 0);
        assert_int_equal(hsmca_b64_decode(s, n, &out, &len), HSMCA_OK);
        assert_int_equal(len, n);
        assert_memory_equal(out, in, n);
        free(out);
        out = NULL;
        /* one byte under the bound is refused */
        assert_int_equal(hsmca_b64_decode(s, n - 1, &out, &len), HSMCA_E_BAD_ENCODING);
        assert_null(out);
        free(s);
    }
    assert_int_equal(hsmca_b64_decode("QUJD", 3, &out, &len), HSMCA_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "ABC", 3);
    free(out);
}

static void
b64_refuses_non_canonical(void **state)
{
    static const char *const bad[] = {
        "",          /* nothing */
        "QQ",        /* padding missing */
        "QQ=",       /* padding short */
        "QQ===",     /* padding long */
        "QR==",      /* non-zero bits after the last byte ("QQ==" is 'A') */
        "QUJ=",      /* the same for two bytes ("QUI=") */
        "QU=D",      /* padding inside */
        "=QUJ",      /* padding first */
        "QUJD\n",    /* a newline */
        "QU JD",     /* a space */
        " QUJD",     /* leading space */
        "QUJD QUJD", /* a space between groups */
        "QUJ-",      /* base64url's alphabet */
        "QUJ_",      /* base64url's alphabet */
        "QUJ*",      /* outside any alphabet */
        "====",      /* padding only */
    };
    unsigned char *out = NULL;
    size_t i, len = 0;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(hsmca_b64_decode(bad[i], 64, &out, &len), HSMCA_E_BAD_ENCODING);
        assert_null(out);
    }
    assert_int_equal(hsmca_b64_decode(NULL, 64, &out, &len), HSMCA_E_BAD_ENCODING);
    assert_int_equal(hsmca_b64_decode("QUJD", 64, NULL, &len), HSMCA_E_INVALID_ARG);
}

static void
digest_is_domain_separated(void **state)
{
    static const unsigned char req[] = "{\"id\":\"x\"}";
    static const char dom[] = "hsmca-approval-v1";
    unsigned char d[32], want[32], buf[sizeof(dom) + sizeof(req)];

    (void)state;
    assert_int_equal(hsmca_approval_digest(req, sizeof(req) - 1, d), 0);
    memcpy(buf, dom, sizeof(dom)); /* with its NUL */
    memcpy(buf + sizeof(dom), req, sizeof(req) - 1);
    SHA256(buf, sizeof(dom) + sizeof(req) - 1, want);
    assert_memory_equal(d, want, 32);
    /* the bare SHA-256 of the request is not what approvers sign */
    SHA256(req, sizeof(req) - 1, want);
    assert_memory_not_equal(d, want, 32);
    assert_string_equal(HSMCA_APPROVAL_DOMAIN, dom);
}

static size_t
sign(EVP_PKEY *k, const unsigned char d[32], unsigned char *sig, size_t max)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
    size_t n = max;

    assert_non_null(c);
    assert_int_equal(EVP_PKEY_sign_init(c), 1);
    assert_int_equal(EVP_PKEY_sign(c, sig, &n, d, 32), 1);
    EVP_PKEY_CTX_free(c);
    return n;
}

static void
signatures_verify_or_not(void **state)
{
    static const unsigned char req[] = "request bytes";
    EVP_PKEY *k = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    unsigned char d[32], d2[32], sig[HSMCA_ECDSA_P256_DER_MAX], *dec = NULL;
    size_t n, dl = 0;
    char *b;

    (void)state;
    assert_non_null(k);
    assert_non_null(other);
    assert_int_equal(hsmca_approval_digest(req, sizeof(req) - 1, d), 0);
    assert_int_equal(hsmca_approval_digest(req, sizeof(req) - 2, d2), 0);
    n = sign(k, d, sig, sizeof(sig));
    assert_true(hsmca_approval_sig_valid(k, d, sig, n));
    assert_false(hsmca_approval_sig_valid(other, d, sig, n)); /* another approver's key */
    assert_false(hsmca_approval_sig_valid(k, d2, sig, n));    /* another request */
    assert_false(hsmca_approval_sig_valid(k, d, sig, n - 1)); /* truncated */
    assert_false(hsmca_approval_sig_valid(k, d, sig, 0));
    assert_false(hsmca_approval_sig_valid(NULL, d, sig, n));
    sig[n / 2] ^= 0x01;
    assert_false(hsmca_approval_sig_valid(k, d, sig, n)); /* a bit flipped */
    sig[n / 2] ^= 0x01;
    /* the "sig" field: canonical base64 of the DER, nothing longer than a P-256 signature */
    b = hsmca_b64_encode(sig, n);
    assert_non_null(b);
    assert_int_equal(hsmca_approval_sig_decode(b, &dec, &dl), HSMCA_OK);
    assert_int_equal(dl, n);
    assert_true(hsmca_approval_sig_valid(k, d, dec, dl));
    free(dec);
    dec = NULL;
    free(b);
    {
        unsigned char big[HSMCA_ECDSA_P256_DER_MAX + 3];

        memset(big, 0x30, sizeof(big));
        b = hsmca_b64_encode(big, sizeof(big));
        assert_int_equal(hsmca_approval_sig_decode(b, &dec, &dl), HSMCA_E_BAD_ENCODING);
        assert_null(dec);
        free(b);
        assert_false(hsmca_approval_sig_valid(k, d, big, sizeof(big)));
    }
    /* the same signature spelled with a newline (as a lenient decoder would take it) */
    b = hsmca_b64_encode(sig, n);
    {
        size_t l = strlen(b);
        char *nl = malloc(l + 2);

        assert_non_null(nl);
        memcpy(nl, b, l - 4);
        nl[l - 4] = '\n';
        memcpy(nl + l - 3, b + l - 4, 5);
        assert_int_equal(hsmca_approval_sig_decode(nl, &dec, &dl), HSMCA_E_BAD_ENCODING);
        free(nl);
    }
    free(b);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

static void
requester_never_approves(void **state)
{
    (void)state;
    assert_true(hsmca_approval_by_requester("alice", "aa11", "alice", "bb22"));
    assert_true(hsmca_approval_by_requester("bob", "aa11", "alice", "aa11"));
    assert_false(hsmca_approval_by_requester("bob", "aa11", "alice", "bb22"));
    assert_false(hsmca_approval_by_requester("bob", "aa11", "alice", "")); /* no requester key */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64_round_trip),
        cmocka_unit_test(b64_refuses_non_canonical),
        cmocka_unit_test(digest_is_domain_separated),
        cmocka_unit_test(signatures_verify_or_not),
        cmocka_unit_test(requester_never_approves),
    };

    return cmocka_run_group_tests_name("approval", tests, NULL, NULL);
}
