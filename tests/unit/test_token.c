/* SPDX-License-Identifier: Apache-2.0
 *
 * test_token.c -- the token layer against real SoftHSM tokens made by the fixture.
 * Hostile input first (URIs, missing module, wrong PIN, unknown token and key, no free slot, wrong
 * teardown order), then the promises: keys generated inside the token that it refuses to reveal
 * (through PKCS#11 and through pkcs11-tool), concurrent signing verified with OpenSSL, ECDH, data
 * objects, PIN changes.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "hsmca/token.h"

#include "../../src/lib/token_internal.h"
#include "fixture.h"

#define SO_PIN "so-secret-1"
#define USER_PIN "user-pin-1234"
#define CKR_ATTRIBUTE_SENSITIVE_ 0x11UL

struct ctx {
    struct fx_hsm hsm;
    struct hsmca_p11 *p11;
    struct hsmca_token *tok;
    struct hsmca_secret pin;
};

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));

    if (c == NULL || hsmca_secure_heap_init(0) != HSMCA_OK)
        return -1;
    if (fx_hsm_setup(&c->hsm) != 0 || fx_hsm_add_token(&c->hsm, "hsmca-test", SO_PIN, USER_PIN) ||
        fx_hsm_add_token(&c->hsm, "hsmca-other", SO_PIN, USER_PIN))
        return -1;
    if (hsmca_p11_open(fx_module(), &c->p11) != HSMCA_OK)
        return -1;
    if (hsmca_token_open(c->p11, "pkcs11:token=hsmca-test", &c->tok) != HSMCA_OK)
        return -1;
    c->pin = fx_secret(USER_PIN);
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    struct ctx *c = *state;

    hsmca_secret_clear(&c->pin);
    if (c->tok != NULL) {
        assert_int_equal(hsmca_token_logout(c->tok), HSMCA_OK);
        assert_int_equal(hsmca_token_free(c->tok), HSMCA_OK);
    }
    if (hsmca_p11_free(c->p11) != HSMCA_OK)
        abort(); /* never leave a module initialised for the next test's token directory */
    fx_hsm_teardown(&c->hsm);
    free(c);
    return 0;
}

/* ---- destroying a key pair (a CA key whose certificate was never made) ---- */

static void
destroyed_key_leaves_no_object(void **state)
{
    struct ctx *c = *state;
    struct hsmca_key *k = NULL, *other = NULL, *again = NULL;
    EVP_PKEY *pub = NULL;

    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "gone-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &k), HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "kept-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &other),
        HSMCA_OK);
    /* both halves exist before: the public one is readable without the private one's handle */
    assert_int_equal(hsmca_token_public_key(c->tok, "pkcs11:object=gone-key", &pub), HSMCA_OK);
    EVP_PKEY_free(pub);
    pub = NULL;
    assert_int_equal(hsmca_key_destroy(k), HSMCA_OK); /* frees the handle too */
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:object=gone-key", &again),
                     HSMCA_E_KEY_NOT_FOUND);
    assert_int_equal(hsmca_token_public_key(c->tok, "pkcs11:object=gone-key", &pub),
                     HSMCA_E_KEY_NOT_FOUND);
    assert_null(again);
    assert_null(pub);
    /* the label is free again, and the other key is untouched */
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "gone-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &again),
        HSMCA_OK);
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:object=kept-key", &k), HSMCA_OK);
    hsmca_key_free(k);
    hsmca_key_free(again);
    /* logged out: refused, and the key stays */
    assert_int_equal(hsmca_token_logout(c->tok), HSMCA_E_BUSY); /* other is alive */
    assert_int_equal(hsmca_key_destroy(NULL), HSMCA_E_INVALID_ARG);
    hsmca_key_free(other);
    assert_int_equal(hsmca_token_logout(c->tok), HSMCA_OK);
    assert_int_equal(hsmca_token_public_key(c->tok, "pkcs11:object=kept-key", &pub), HSMCA_OK);
    EVP_PKEY_free(pub);
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
}

/* ---- URIs ---- */

static void
uri_refuses_hostile_input(void **state)
{
    static const char *const bad[] = {
        "",
        "pkcs11",
        "PKCS11:token=a",
        "http:token=a",
        "pkcs11:token",
        "pkcs11:token=",
        "pkcs11:token=a;token=b",
        "pkcs11:token=a;;object=b",
        "pkcs11:slot-id=1",
        "pkcs11:token=a?pin-value=1234",
        "pkcs11:token=a;pin-value=1234",
        "pkcs11:frobnicate=1",
        "pkcs11:token=%zz",
        "pkcs11:token=%4",
        "pkcs11:token=a%00b",
        "pkcs11:token=a b",
        "pkcs11:token=123456789012345678901234567890123",
        "pkcs11:serial=12345678901234567",
        "pkcs11:type=banana",
        "pkcs11:token=a?module-path=/x?pin-source=y",
        "pkcs11:token=a&object=b",
        "pkcs11:token=a?module-path=/x;object=b",
        "pkcs11:token=a;",
        "pkcs11:token=a?module-path=relative.so",
        "pkcs11:token=a?module-path=",
        "pkcs11:token=a?module-path=/x&module-path=/y",
    };
    struct hsmca_uri u;
    char big[HSMCA_URI_MAX + 2];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (hsmca_uri_parse(bad[i], strlen(bad[i]), &u) != HSMCA_E_URI_INVALID)
            fail_msg("accepted hostile URI: %s", bad[i]);
    }
    /* length limit at N and N+1 */
    memset(big, 'a', sizeof(big));
    memcpy(big, "pkcs11:object=", 14);
    assert_int_equal(hsmca_uri_parse(big, HSMCA_URI_MAX + 1, &u), HSMCA_E_URI_INVALID);
    memcpy(big, "pkcs11:token=abc;model=x;id=", 28);
    assert_int_equal(hsmca_uri_parse(big, HSMCA_URI_MAX, &u), HSMCA_E_URI_INVALID); /* id > 64 */
}

static void
uri_parses_rfc7512_attributes(void **state)
{
    static const char *s =
        "pkcs11:token=hsmca%20pai;serial=0123abcd;manufacturer=SoftHSM%20project;"
        "object=pai-key;id=%01%a2;type=private?module-path=/usr/lib/x.so";
    struct hsmca_uri u;

    (void)state;
    assert_int_equal(hsmca_uri_parse(s, strlen(s), &u), HSMCA_OK);
    assert_string_equal(u.token, "hsmca pai");
    assert_string_equal(u.serial, "0123abcd");
    assert_string_equal(u.manufacturer, "SoftHSM project");
    assert_string_equal(u.object, "pai-key");
    assert_string_equal(u.type, "private");
    assert_int_equal(u.id_len, 2);
    assert_int_equal(u.id[0], 0x01);
    assert_int_equal(u.id[1], 0xa2);
    assert_true(u.have & HSMCA_URI_HAVE_ID);
    assert_false(u.have & HSMCA_URI_HAVE_MODEL);
    assert_true(u.have & HSMCA_URI_HAVE_MODULE_PATH);
    assert_string_equal(u.module_path, "/usr/lib/x.so");
    assert_int_equal(hsmca_uri_parse("pkcs11:", 7, &u), HSMCA_OK);
    assert_int_equal(u.have, 0);
    /* a label of exactly 32 bytes is the PKCS#11 maximum */
    assert_int_equal(hsmca_uri_parse("pkcs11:token=12345678901234567890123456789012", 45, &u),
                     HSMCA_OK);
}

/* ---- module and token lookup ---- */

static void
missing_or_bogus_module_is_refused(void **state)
{
    struct hsmca_p11 *p = NULL;
    char dir[512], path[600];
    FILE *f;

    (void)state;
    assert_int_equal(hsmca_p11_open("/nonexistent/libpkcs11.so", &p), HSMCA_E_MODULE_LOAD);
    assert_null(p);
    assert_int_equal(fx_tmpdir("mod", dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/fake.so", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a shared object", f);
    fclose(f);
    assert_int_equal(hsmca_p11_open(path, &p), HSMCA_E_MODULE_LOAD);
    assert_null(p);
    assert_int_equal(hsmca_p11_open(dir, &p), HSMCA_E_MODULE_LOAD); /* a directory */
    fx_rmtree(dir);
    assert_int_equal(hsmca_p11_free(NULL), HSMCA_OK);
}

/* hsmca_token_close_all undoes a module, a token with its login and a key, or any first part */
static void
close_all_undoes_open_login_and_key(void **state)
{
    struct ctx *c = *state;
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *t = NULL;
    struct hsmca_key *k = NULL;

    assert_int_equal(hsmca_token_close_all(NULL, NULL, NULL), HSMCA_OK);
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "close-all", NULL, 0, HSMCA_KEY_USAGE_SIGN, &k), HSMCA_OK);
    /* the token cannot go while its key is held: an error, and nothing closed */
    assert_int_equal(hsmca_token_close_all(NULL, c->tok, NULL), HSMCA_E_BUSY);
    assert_int_equal(hsmca_token_close_all(c->p11, c->tok, k), HSMCA_OK);
    c->tok = NULL;
    c->p11 = NULL;
    /* a module and a token opened but not logged in; then a module alone */
    assert_int_equal(hsmca_p11_open(fx_module(), &p11), HSMCA_OK);
    /* a module-path= naming another module is refused; naming this one is honoured */
    assert_int_equal(
        hsmca_token_open(p11, "pkcs11:token=hsmca-test?module-path=/nonexistent.so", &t),
        HSMCA_E_MODULE_MISMATCH);
    assert_null(t);
    {
        char uri[HSMCA_URI_MAX + 1];

        snprintf(uri, sizeof(uri), "pkcs11:token=hsmca-test?module-path=%s", fx_module());
        assert_int_equal(hsmca_token_open(p11, uri, &t), HSMCA_OK);
        assert_int_equal(hsmca_token_free(t), HSMCA_OK);
        t = NULL;
    }
    assert_int_equal(hsmca_token_open(p11, "pkcs11:token=hsmca-test", &t), HSMCA_OK);
    assert_int_equal(hsmca_token_close_all(p11, t, NULL), HSMCA_OK);
    assert_int_equal(hsmca_p11_open(fx_module(), &p11), HSMCA_OK);
    assert_int_equal(hsmca_token_close_all(p11, NULL, NULL), HSMCA_OK);
}

static void
unknown_token_and_key_are_distinct_errors(void **state)
{
    struct ctx *c = *state;
    struct hsmca_token *t = NULL;
    struct hsmca_key *k = NULL;
    EVP_PKEY *pub = NULL;

    assert_int_equal(hsmca_token_open(c->p11, "pkcs11:token=no-such-token", &t),
                     HSMCA_E_TOKEN_NOT_FOUND);
    assert_int_equal(hsmca_token_open(c->p11, "pkcs11:serial=ffffffffffffffff", &t),
                     HSMCA_E_TOKEN_NOT_FOUND);
    assert_int_equal(hsmca_token_open(c->p11, "pkcs11:slot-id=0", &t), HSMCA_E_URI_INVALID);
    /* two initialised tokens and no token attribute: ambiguous, never "the first slot" */
    assert_int_equal(hsmca_token_open(c->p11, "pkcs11:manufacturer=SoftHSM%20project", &t),
                     HSMCA_E_TOKEN_AMBIGUOUS);
    assert_null(t);
    /* keys: not visible before login, then not found */
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:object=nope", &k), HSMCA_E_NOT_LOGGED_IN);
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:object=nope", &k), HSMCA_E_KEY_NOT_FOUND);
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:id=%99", &k), HSMCA_E_KEY_NOT_FOUND);
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:token=hsmca-test", &k),
                     HSMCA_E_URI_INVALID); /* names no key */
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:token=hsmca-other;object=x", &k),
                     HSMCA_E_KEY_NOT_FOUND); /* a key of another token */
    assert_int_equal(hsmca_token_public_key(c->tok, "pkcs11:object=nope", &pub),
                     HSMCA_E_KEY_NOT_FOUND);
    assert_null(k);
    assert_null(pub);
}

static void
wrong_and_malformed_pins_are_refused(void **state)
{
    struct ctx *c = *state;
    struct hsmca_secret bad = fx_secret("wrong-pin-0000"), shortp = fx_secret("123");
    struct hsmca_token_info ti;
    struct hsmca_key *k = NULL;

    assert_int_equal(hsmca_token_login(c->tok, &bad), HSMCA_E_PIN_INCORRECT);
    assert_int_equal(hsmca_token_login(c->tok, &shortp), HSMCA_E_PIN_INVALID);
    assert_int_equal(hsmca_token_login(c->tok, NULL), HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_token_info(c->tok, &ti), HSMCA_OK);
    assert_false(ti.logged_in);
    assert_false(ti.pin_locked);
    assert_string_equal(ti.label, "hsmca-test");
    assert_int_equal(strlen(ti.serial), 16);
    /* nothing that needs a login works without one */
    assert_int_equal(hsmca_token_generate_key(c->tok, "k", NULL, 0, HSMCA_KEY_USAGE_SIGN, &k),
                     HSMCA_E_NOT_LOGGED_IN);
    assert_int_equal(hsmca_token_data_write(c->tok, "d", (const unsigned char *)"x", 1),
                     HSMCA_E_NOT_LOGGED_IN);
    assert_int_equal(hsmca_token_set_pin(c->tok, &c->pin, &bad), HSMCA_E_NOT_LOGGED_IN);
    /* the right PIN still works: a wrong one did not lock the token */
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_E_ALREADY_LOGGED_IN);
    hsmca_secret_clear(&bad);
    hsmca_secret_clear(&shortp);
}

static void
no_free_slot_and_duplicate_token_label(void **state)
{
    struct ctx *c = *state;
    struct hsmca_secret so = fx_secret(SO_PIN);
    struct hsmca_token *t1 = NULL, *t2 = NULL;
    struct hsmca_token_info ti;
    struct hsmca_p11 *shim = NULL;
    enum hsmca_err e;

    assert_int_equal(hsmca_token_init(c->p11, "hsmca-test", &so, &c->pin, &t1),
                     HSMCA_E_TOKEN_EXISTS);
    assert_int_equal(hsmca_token_init(c->p11, "fresh", &so, &c->pin, &t1), HSMCA_OK);
    assert_int_equal(hsmca_token_info(t1, &ti), HSMCA_OK);
    assert_string_equal(ti.label, "fresh");
    assert_true(ti.user_pin_set);
    assert_int_equal(hsmca_token_login(t1, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(t1), HSMCA_OK);
    assert_int_equal(hsmca_token_free(t1), HSMCA_OK);
    /* SoftHSM always offers a free slot; a module that has none (a full HSM, here the test shim
     * hiding uninitialised tokens) gets its own error */
    assert_int_equal(hsmca_token_free(c->tok), HSMCA_OK);
    c->tok = NULL;
    assert_int_equal(hsmca_p11_free(c->p11), HSMCA_OK);
    c->p11 = NULL;
    assert_int_equal(setenv("HSMCA_SHIM_HIDE_FREE", "1", 1), 0);
    assert_int_equal(hsmca_p11_open(getenv("HSMCA_P11SHIM"), &shim), HSMCA_OK);
    e = hsmca_token_init(shim, "fresh-2", &so, &c->pin, &t2);
    assert_int_equal(e, HSMCA_E_NO_FREE_SLOT);
    assert_string_equal(hsmca_err_code(e), "no-free-slot");
    assert_null(t2);
    unsetenv("HSMCA_SHIM_HIDE_FREE");
    c->p11 = shim;
    hsmca_secret_clear(&so);
}

/* ---- keys ---- */

static void
generated_key_never_leaves_the_token(void **state)
{
    struct ctx *c = *state;
    struct hsmca_key *k = NULL, *again = NULL;
    struct hsmca_key_attrs a;
    char out[16384];
    char *argv[] = {
        "pkcs11-tool", "--module", (char *)fx_module(), "--token-label", "hsmca-test", "--login",
        "--pin",       USER_PIN,   "--list-objects",    "--type",        "privkey",    NULL};
    const unsigned char *id;
    size_t id_len = 0;
    char *obj;

    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_generate_key(c->tok, "pai-key", (const unsigned char *)"\x01\x02",
                                              2, HSMCA_KEY_USAGE_SIGN, &k),
                     HSMCA_OK);
    assert_string_equal(hsmca_key_label(k), "pai-key");
    id = hsmca_key_id(k, &id_len);
    assert_int_equal(id_len, 2);
    assert_memory_equal(id, "\x01\x02", 2);
    assert_int_equal(hsmca_key_attrs(k, &a), HSMCA_OK);
    assert_int_equal(a.value_readable, 0);
    assert_int_equal(a.value_rv, CKR_ATTRIBUTE_SENSITIVE_);
    assert_int_equal(a.extractable, 0);
    assert_int_equal(a.sensitive, 1);
    assert_int_equal(a.always_sensitive, 1);
    assert_int_equal(a.never_extractable, 1);
    assert_int_equal(a.token, 1);
    assert_int_equal(a.private_, 1);
    assert_int_equal(a.local, 1);
    assert_int_equal(a.sign, 1);
    assert_int_equal(a.derive, 0);
    assert_int_equal(a.decrypt, 0);
    assert_int_equal(a.unwrap, 0);
    assert_int_equal(EVP_PKEY_get_bits(hsmca_key_public(k)), 256);

    /* a second key with the same label, or the same id, is refused */
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "pai-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &again),
        HSMCA_E_KEY_EXISTS);
    assert_int_equal(hsmca_token_generate_key(c->tok, "other", (const unsigned char *)"\x01\x02", 2,
                                              HSMCA_KEY_USAGE_SIGN, &again),
                     HSMCA_E_KEY_EXISTS);
    assert_int_equal(hsmca_token_generate_key(c->tok, "", NULL, 0, HSMCA_KEY_USAGE_SIGN, &again),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "bad\nlabel", NULL, 0, HSMCA_KEY_USAGE_SIGN, &again),
        HSMCA_E_INVALID_ARG);
    assert_null(again);

    /* found again by label and by id; the public key matches */
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:object=pai-key", &again), HSMCA_OK);
    assert_int_equal(EVP_PKEY_eq(hsmca_key_public(k), hsmca_key_public(again)), 1);
    hsmca_key_free(again);
    again = NULL;
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:token=hsmca-test;id=%01%02", &again),
                     HSMCA_OK);
    hsmca_key_free(again);

    /* and pkcs11-tool, an independent PKCS#11 client, sees the same attributes */
    assert_int_equal(fx_run(argv, out, sizeof(out)), 0);
    obj = strstr(out, "label:      pai-key");
    if (obj == NULL)
        fail_msg("pkcs11-tool said: %s", out);
    assert_non_null(obj);
    assert_non_null(strstr(obj, "sensitive, always sensitive, never extractable, local"));
    assert_null(strstr(out, "Access:     none")); /* no key without protections */

    /* teardown order is enforced, not crashed into */
    assert_int_equal(hsmca_token_logout(c->tok), HSMCA_E_BUSY);
    assert_int_equal(hsmca_token_free(c->tok), HSMCA_E_BUSY);
    assert_int_equal(hsmca_p11_free(c->p11), HSMCA_E_BUSY);
    hsmca_key_free(k);
    assert_int_equal(hsmca_token_logout(c->tok), HSMCA_OK);
}

struct signer {
    EVP_PKEY *priv, *pub;
    int n, ok;
    const struct hsmca_key *key; /* non-NULL: sign digests through hsmca_key_sign_digest */
};

static void *
sign_loop(void *arg)
{
    struct signer *s = arg;
    int i;

    for (i = 0; i < s->n; i++) {
        unsigned char msg[64], dgst[32], sig[80];
        size_t siglen = sizeof(sig);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_MD_CTX *vd = EVP_MD_CTX_new();
        int ok = RAND_bytes(msg, sizeof(msg)) == 1 && md != NULL && vd != NULL;

        if (ok && s->key != NULL) {
            SHA256(msg, sizeof(msg), dgst);
            ok = hsmca_key_sign_digest(s->key, dgst, sizeof(dgst), sig, sizeof(sig), &siglen) ==
                 HSMCA_OK;
        } else if (ok) {
            ok = EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->priv) == 1 &&
                 EVP_DigestSign(md, sig, &siglen, msg, sizeof(msg)) == 1;
        }
        ok = ok && EVP_DigestVerifyInit(vd, NULL, EVP_sha256(), NULL, s->pub) == 1 &&
             EVP_DigestVerify(vd, sig, siglen, msg, sizeof(msg)) == 1;
        EVP_MD_CTX_free(md);
        EVP_MD_CTX_free(vd);
        if (!ok)
            return NULL;
        s->ok++;
    }
    return NULL;
}

static void
concurrent_signing_verifies(void **state)
{
    struct ctx *c = *state;
    struct hsmca_key *k = NULL, *k2 = NULL;
    pthread_t th[6];
    struct signer s[6];
    int i, total = 0;
    unsigned char dgst[32], sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t siglen = 0;
    EVP_PKEY_CTX *vctx;

    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "audit-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &k), HSMCA_OK);
    /* make k's signing copy (two signatures), then a second handle of the same key must still be
     * found as one */
    SHA256((const unsigned char *)"warm", 4, dgst);
    for (i = 0; i < 2; i++)
        assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                         HSMCA_OK);
    assert_int_equal(hsmca_token_find_key(c->tok, "pkcs11:object=audit-key", &k2), HSMCA_OK);
    hsmca_key_free(k2);
    {
        const unsigned char *id;
        size_t id_len = 0;
        char uri[128] = "pkcs11:id=";
        size_t o = strlen(uri);

        id = hsmca_key_id(k, &id_len);
        for (size_t j = 0; j < id_len && o + 3 < sizeof(uri); j++)
            o += (size_t)snprintf(uri + o, sizeof(uri) - o, "%%%02x", id[j]);
        assert_int_equal(hsmca_token_find_key(c->tok, uri, &k2), HSMCA_OK);
    }
    /* libp11's glue (2 threads) and both handles' signing sessions (2 each) at once */
    for (i = 0; i < 6; i++) {
        s[i] = (struct signer){hsmca_key_private(k), hsmca_key_public(k), 150, 0,
                               i < 2   ? NULL
                               : i < 4 ? k
                                       : k2};
        assert_int_equal(pthread_create(&th[i], NULL, sign_loop, &s[i]), 0);
    }
    for (i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        total += s[i].ok;
    }
    assert_int_equal(total, 6 * 150);
    /* k2 was found while k's copy existed: freeing k (and its copy) must leave k2 whole */
    hsmca_key_free(k);
    k = k2;
    s[0] = (struct signer){hsmca_key_private(k), hsmca_key_public(k), 20, 0, NULL};
    (void)sign_loop(&s[0]);
    assert_int_equal(s[0].ok, 20);

    /* digest signing (hash outside the token) gives DER that OpenSSL verifies */
    SHA256((const unsigned char *)"checkpoint", 10, dgst);
    assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                     HSMCA_OK);
    assert_int_equal(sig[0], 0x30);
    vctx = EVP_PKEY_CTX_new(hsmca_key_public(k), NULL);
    assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
    assert_int_equal(EVP_PKEY_verify(vctx, sig, siglen, dgst, sizeof(dgst)), 1);
    dgst[0] ^= 1;
    assert_int_not_equal(EVP_PKEY_verify(vctx, sig, siglen, dgst, sizeof(dgst)), 1);
    EVP_PKEY_CTX_free(vctx);
    assert_int_equal(hsmca_key_sign_digest(k, dgst, 19, sig, sizeof(sig), &siglen),
                     HSMCA_E_INVALID_ARG);
    assert_int_equal(hsmca_key_sign_digest(k, dgst, 32, sig, 10, &siglen), HSMCA_E_INVALID_ARG);
    hsmca_key_free(k);
}

static void
ecdh_matches_software(void **state)
{
    struct ctx *c = *state;
    struct hsmca_key *k = NULL, *signonly = NULL;
    struct hsmca_secret z = {NULL, 0};
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *pc;
    unsigned char soft[32];
    size_t soft_len = sizeof(soft);

    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_generate_key(c->tok, "approver", NULL, 0,
                                              HSMCA_KEY_USAGE_SIGN | HSMCA_KEY_USAGE_DERIVE, &k),
                     HSMCA_OK);
    peer = EVP_EC_gen("P-256");
    assert_non_null(peer);
    assert_int_equal(hsmca_key_derive(k, peer, &z), HSMCA_OK);
    assert_int_equal(z.len, 32);
    pc = EVP_PKEY_CTX_new(peer, NULL);
    assert_int_equal(EVP_PKEY_derive_init(pc), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(pc, hsmca_key_public(k)), 1);
    assert_int_equal(EVP_PKEY_derive(pc, soft, &soft_len), 1);
    assert_int_equal(soft_len, 32);
    assert_memory_equal(soft, z.p, 32);
    EVP_PKEY_CTX_free(pc);
    hsmca_secret_clear(&z);
    /* a sign-only CA key refuses to derive */
    assert_int_equal(
        hsmca_token_generate_key(c->tok, "ca", NULL, 0, HSMCA_KEY_USAGE_SIGN, &signonly), HSMCA_OK);
    assert_int_not_equal(hsmca_key_derive(signonly, peer, &z), HSMCA_OK);
    assert_null(z.p);
    EVP_PKEY_free(peer);
    hsmca_key_free(k);
    hsmca_key_free(signonly);
}

static void
data_objects_and_pin_change(void **state)
{
    struct ctx *c = *state;
    unsigned char buf[HSMCA_DATA_OBJECT_MAX + 1];
    struct hsmca_secret newpin = fx_secret("rotated-pin-5678"), so = fx_secret(SO_PIN);
    size_t len = 0;

    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_data_read(c->tok, "hsmca-audit-anchor", buf, sizeof(buf), &len),
                     HSMCA_E_NOT_FOUND);
    assert_int_equal(
        hsmca_token_data_write(c->tok, "hsmca-audit-anchor", (const unsigned char *)"size 1", 6),
        HSMCA_OK);
    assert_int_equal(
        hsmca_token_data_write(c->tok, "hsmca-audit-anchor", (const unsigned char *)"size 22", 7),
        HSMCA_OK);
    assert_int_equal(hsmca_token_data_read(c->tok, "hsmca-audit-anchor", buf, sizeof(buf), &len),
                     HSMCA_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "size 22", 7);
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(hsmca_token_data_write(c->tok, "big", buf, HSMCA_DATA_OBJECT_MAX), HSMCA_OK);
    assert_int_equal(hsmca_token_data_write(c->tok, "big", buf, HSMCA_DATA_OBJECT_MAX + 1),
                     HSMCA_E_TOO_LARGE);
    assert_int_equal(hsmca_token_data_read(c->tok, "big", buf, 10, &len), HSMCA_E_TOO_LARGE);

    /* C_SetPIN while logged in; the old PIN stops working, the new one works */
    assert_int_equal(hsmca_token_set_pin(c->tok, &c->pin, &newpin), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(c->tok), HSMCA_OK);
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_E_PIN_INCORRECT);
    assert_int_equal(hsmca_token_login(c->tok, &newpin), HSMCA_OK);
    assert_int_equal(hsmca_token_logout(c->tok), HSMCA_OK);
    /* data objects are private: not readable once logged out */
    assert_int_equal(hsmca_token_data_read(c->tok, "hsmca-audit-anchor", buf, sizeof(buf), &len),
                     HSMCA_E_NOT_LOGGED_IN);
    /* the security officer resets the user PIN (ceremony path) */
    assert_int_equal(hsmca_token_init_pin(c->tok, &so, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_login(c->tok, &newpin), HSMCA_E_PIN_INCORRECT);
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    hsmca_secret_clear(&newpin);
    hsmca_secret_clear(&so);
}

typedef unsigned long (*shim_count_fn)(const char *);
typedef void (*shim_fail_fn)(const char *, unsigned long);

/* One module at a time: swap SoftHSM for the shim that wraps it (HSMCA_P11SHIM), open the test
 * token through it as c->tok, and find the shim's count and fault hooks. The shim's handle. */
static void *
use_shim(struct ctx *c, shim_count_fn *count, shim_fail_fn *inject)
{
    const char *path = getenv("HSMCA_P11SHIM");
    struct hsmca_p11 *shim = NULL;
    void *dl;

    assert_int_equal(hsmca_token_free(c->tok), HSMCA_OK);
    c->tok = NULL;
    assert_int_equal(hsmca_p11_free(c->p11), HSMCA_OK);
    c->p11 = NULL;
    assert_non_null(path);
    assert_int_equal(hsmca_p11_open(path, &shim), HSMCA_OK);
    c->p11 = shim;
    dl = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(dl);
    *(void **)count = dlsym(dl, "hsmca_shim_count");
    *(void **)inject = dlsym(dl, "hsmca_shim_fail");
    assert_non_null(*count);
    assert_non_null(*inject);
    assert_int_equal(hsmca_token_open(shim, "pkcs11:token=hsmca-test", &c->tok), HSMCA_OK);
    return dl;
}

static void
token_failures_become_errors_not_crashes(void **state)
{
    struct ctx *c = *state;
    struct hsmca_token *t = NULL;
    struct hsmca_key *k = NULL;
    unsigned char dgst[32] = {1}, sig[HSMCA_ECDSA_P256_DER_MAX];
    size_t siglen = 0;
    shim_count_fn count;
    shim_fail_fn inject;
    void *dl;
    unsigned long logins, copies, destroys;
    EVP_PKEY_CTX *vctx;
    int i;

    dl = use_shim(c, &count, &inject);
    t = c->tok;
    logins = count("C_Login");
    inject("C_Login", 0x32UL); /* CKR_DEVICE_REMOVED */
    assert_int_equal(hsmca_token_login(t, &c->pin), HSMCA_E_TOKEN_REMOVED);
    assert_int_equal(count("C_Login"), logins + 1);
    inject("", 0);
    assert_int_equal(hsmca_token_login(t, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_generate_key(t, "k", NULL, 0, HSMCA_KEY_USAGE_SIGN, &k), HSMCA_OK);
    assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                     HSMCA_OK);
    inject("C_Sign", 0xE0UL); /* CKR_TOKEN_NOT_PRESENT */
    assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                     HSMCA_E_TOKEN_REMOVED);
    inject("C_Sign", 0x5UL); /* CKR_GENERAL_ERROR */
    assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                     HSMCA_E_SIGN_FAILED);
    inject("", 0);
    assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                     HSMCA_OK);
    hsmca_key_free(k);
    k = NULL;

    /* one signing copy per key handle, made at its second signature (a one-shot signer makes
     * none), destroyed with the handle */
    copies = count("C_CopyObject");
    destroys = count("C_DestroyObject");
    assert_int_equal(hsmca_token_find_key(t, "pkcs11:object=k", &k), HSMCA_OK);
    assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                     HSMCA_OK);
    assert_int_equal(count("C_CopyObject"), copies);
    for (i = 0; i < 3; i++)
        assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                         HSMCA_OK);
    assert_int_equal(count("C_CopyObject"), copies + 1);
    hsmca_key_free(k);
    k = NULL;
    assert_int_equal(count("C_DestroyObject"), destroys + 1);

    /* a token that refuses the copy (CKA_COPYABLE false) is signed with the token object */
    assert_int_equal(hsmca_token_find_key(t, "pkcs11:object=k", &k), HSMCA_OK);
    inject("C_CopyObject", 0x1AUL); /* CKR_ACTION_PROHIBITED */
    for (i = 0; i < 3; i++) {
        assert_int_equal(hsmca_key_sign_digest(k, dgst, sizeof(dgst), sig, sizeof(sig), &siglen),
                         HSMCA_OK);
        vctx = EVP_PKEY_CTX_new(hsmca_key_public(k), NULL);
        assert_non_null(vctx);
        assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
        assert_int_equal(EVP_PKEY_verify(vctx, sig, siglen, dgst, sizeof(dgst)), 1);
        EVP_PKEY_CTX_free(vctx);
    }
    assert_int_equal(count("C_CopyObject"), copies + 2); /* tried once, not per signature */
    inject("", 0);
    hsmca_key_free(k);
    assert_int_equal(count("C_DestroyObject"), destroys + 1); /* nothing of ours to destroy */
    dlclose(dl);
}

/*
 * A data object replaced again and again, and by writes cut off between their create and their
 * destroys (the destroys refused: a crash there, or a second writer on a shared network token
 * that left its copy): a reader always finds the newest value, never none, and the next whole
 * write clears the older copies. (Two nodes writing at once: tests/integration/nodes.sh.)
 */
static void
data_object_replace_survives_two_writers_and_cut_writes(void **state)
{
    struct ctx *c = *state;
    struct hsmca_token *t = NULL;
    unsigned char buf[64];
    char want[16];
    size_t len = 0;
    shim_count_fn count;
    shim_fail_fn inject;
    unsigned long destroys;
    void *dl;
    int i;

    dl = use_shim(c, &count, &inject);
    t = c->tok;
    assert_int_equal(hsmca_token_login(t, &c->pin), HSMCA_OK);

    for (i = 0; i < 6; i++) {
        snprintf(want, sizeof(want), "size %d", i);
        destroys = count("C_DestroyObject");
        assert_int_equal(hsmca_token_data_write(t, "anchor", (unsigned char *)want, strlen(want)),
                         HSMCA_OK);
        assert_int_equal(count("C_DestroyObject"), destroys + (i > 0)); /* the one older copy */
        assert_int_equal(hsmca_token_data_read(t, "anchor", buf, sizeof(buf), &len), HSMCA_OK);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(buf, want, len);
    }
    /* writes cut off after their create (every destroy refused): three copies, the newest read */
    inject("C_DestroyObject", 0x5UL); /* CKR_GENERAL_ERROR */
    assert_int_equal(hsmca_token_data_write(t, "anchor", (const unsigned char *)"size 7", 6),
                     HSMCA_OK);
    assert_int_equal(hsmca_token_data_write(t, "anchor", (const unsigned char *)"size 8", 6),
                     HSMCA_OK);
    inject("", 0);
    assert_int_equal(hsmca_token_data_read(t, "anchor", buf, sizeof(buf), &len), HSMCA_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "size 8", 6);
    /* the next write destroys the three older copies, and leaves one */
    destroys = count("C_DestroyObject");
    assert_int_equal(hsmca_token_data_write(t, "anchor", (const unsigned char *)"size 9", 6),
                     HSMCA_OK);
    assert_int_equal(count("C_DestroyObject"), destroys + 3);
    destroys = count("C_DestroyObject");
    assert_int_equal(hsmca_token_data_write(t, "anchor", (const unsigned char *)"size 10", 7),
                     HSMCA_OK);
    assert_int_equal(count("C_DestroyObject"), destroys + 1);
    assert_int_equal(hsmca_token_data_read(t, "anchor", buf, sizeof(buf), &len), HSMCA_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "size 10", 7);
    dlclose(dl);
}

/* Another writer, in raw PKCS#11 on a session of its own: a newer copy of label in (stamped a
 * second ahead of this clock, as a node whose clock runs ahead would), then every older one out,
 * as token_data.c's write does. */
struct other_writer {
    struct hsmca_token *tok;
    const char *label, *value;
    int done;
};

static void
other_writer_replace(void *arg)
{
    struct other_writer *w = arg;
    CK_FUNCTION_LIST_PTR f = w->tok->p11->f;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE;
    char stamp[33];
    struct timespec ts;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_LABEL, (void *)w->label, strlen(w->label)}};
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)w->label, strlen(w->label)},
        {CKA_APPLICATION, stamp, sizeof(stamp) - 1},
        {CKA_VALUE, (void *)w->value, strlen(w->value)},
    };
    CK_OBJECT_HANDLE old[8], h;
    CK_SESSION_HANDLE s;
    CK_ULONG n = 0, i;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(stamp, sizeof(stamp), "%016llx0000000000000000",
             (unsigned long long)(ts.tv_sec + 1) * 1000000000ULL + (unsigned long long)ts.tv_nsec);
    /* the application is logged in to the slot already: the new session is too */
    if (f->C_OpenSession(w->tok->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) !=
        CKR_OK)
        return;
    if (f->C_FindObjectsInit(s, find, 2) == CKR_OK) {
        (void)f->C_FindObjects(s, old, 8, &n);
        (void)f->C_FindObjectsFinal(s);
    }
    if (n > 0 && f->C_CreateObject(s, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h) == CKR_OK) {
        for (i = 0; i < n && f->C_DestroyObject(s, old[i]) == CKR_OK; i++)
            ;
        w->done = i == n;
    }
    (void)f->C_CloseSession(s);
}

/*
 * A reader's search finds the object, then another writer (another node on a shared network
 * token) puts its newer copy in and destroys the one found, before the reader reads it: the reader
 * looks again and reads the newer copy; it never answers that there is none (a node's start once
 * failed so: "the audit token holds no anchor object", tests/integration/nodes.sh in CI).
 */
static void
data_object_replaced_between_search_and_read(void **state)
{
    struct ctx *c = *state;
    void (*after_find)(const char *, void (*)(void *), void *);
    struct other_writer w = {NULL, "anchor", "size 99", 0};
    unsigned char buf[64];
    size_t len = 0;
    shim_count_fn count;
    shim_fail_fn inject;
    void *dl;

    dl = use_shim(c, &count, &inject);
    *(void **)&after_find = dlsym(dl, "hsmca_shim_after_find");
    assert_non_null(after_find);
    assert_int_equal(hsmca_token_login(c->tok, &c->pin), HSMCA_OK);
    assert_int_equal(hsmca_token_data_write(c->tok, "anchor", (const unsigned char *)"size 1", 6),
                     HSMCA_OK);
    w.tok = c->tok;
    after_find("anchor", other_writer_replace, &w);
    assert_int_equal(hsmca_token_data_read(c->tok, "anchor", buf, sizeof(buf), &len), HSMCA_OK);
    after_find(NULL, NULL, NULL);
    assert_true(w.done); /* the other writer did replace the copy the search had found */
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "size 99", 7);
    /* and the next write of ours goes above the other writer's stamp */
    assert_int_equal(hsmca_token_data_write(c->tok, "anchor", (const unsigned char *)"size 100", 8),
                     HSMCA_OK);
    assert_int_equal(hsmca_token_data_read(c->tok, "anchor", buf, sizeof(buf), &len), HSMCA_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(buf, "size 100", 8);
    dlclose(dl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uri_refuses_hostile_input),
        cmocka_unit_test(uri_parses_rfc7512_attributes),
        cmocka_unit_test(missing_or_bogus_module_is_refused),
        cmocka_unit_test_setup_teardown(unknown_token_and_key_are_distinct_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(destroyed_key_leaves_no_object, setup, teardown),
        cmocka_unit_test_setup_teardown(close_all_undoes_open_login_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_and_malformed_pins_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(no_free_slot_and_duplicate_token_label, setup, teardown),
        cmocka_unit_test_setup_teardown(generated_key_never_leaves_the_token, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_signing_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(ecdh_matches_software, setup, teardown),
        cmocka_unit_test_setup_teardown(data_objects_and_pin_change, setup, teardown),
        cmocka_unit_test_setup_teardown(token_failures_become_errors_not_crashes, setup, teardown),
        cmocka_unit_test_setup_teardown(data_object_replace_survives_two_writers_and_cut_writes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(data_object_replaced_between_search_and_read, setup,
                                        teardown),
    };
    int rc;

    rc = cmocka_run_group_tests_name("token", tests, NULL, NULL);
    return rc;
}
