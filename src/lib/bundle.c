/* SPDX-License-Identifier: Apache-2.0
 *
 * bundle.c -- offline bundles (bundle.h, docs/factory.md): device keys and CSRs made in memory,
 * the ustar archive of a bundle and its CMS EnvelopedData seal to a line's certificate. The
 * archive, which holds the device keys in clear, is one buffer sized exactly before it is filled
 * (so it never moves), locked in memory where the system allows, and wiped before it is freed.
 */
#include "hsmca/bundle.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "hsmca/sizes.h"
#include "hsmca/util.h"

#define TAR_BLOCK 512

int
hsmca_line_name_ok(const char *name)
{
    return name != NULL && name[0] != '-' &&
           hsmca_word_ok(name, strlen(name), HSMCA_LINE_NAME_MAX, 1, "-");
}

/* Seal a few bytes to x: can CMS use this certificate's key at all? */
static int
trial_seal(X509 *x)
{
    STACK_OF(X509) *rc = sk_X509_new_null();
    BIO *in = BIO_new_mem_buf("hsmca line check", 16);
    CMS_ContentInfo *cms = NULL;
    int ok = 0;

    if (rc != NULL && in != NULL && sk_X509_push(rc, x) > 0) {
        ERR_set_mark();
        cms = CMS_encrypt(rc, in, EVP_aes_256_cbc(), CMS_BINARY);
        ERR_pop_to_mark();
        ok = cms != NULL;
    }
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_free(rc);
    return ok;
}

enum hsmca_err
hsmca_line_cert_check(const unsigned char *in, size_t len, int64_t now_ms, unsigned char **der_out,
                      size_t *der_len, unsigned char sha256[HSMCA_SHA256_LEN])
{
    X509 *x = NULL;
    EVP_PKEY *pk;
    unsigned char *der = NULL;
    unsigned int hl = 0;
    int n, ok = 0;
    time_t now = (time_t)(now_ms / 1000);

    if (in == NULL || der_out == NULL || der_len == NULL || sha256 == NULL)
        return HSMCA_E_INVALID_ARG;
    *der_out = NULL;
    *der_len = 0;
    if (len == 0 || len > 4 * HSMCA_LINE_CERT_MAX)
        return HSMCA_E_LINE_CERT_INVALID;
    x = hsmca_x509_read(in, len);
    if (x == NULL)
        return HSMCA_E_LINE_CERT_INVALID;
    pk = X509_get0_pubkey(x);
    if (pk != NULL && X509_cmp_time(X509_get0_notBefore(x), &now) < 0 &&
        X509_cmp_time(X509_get0_notAfter(x), &now) > 0) {
        if (EVP_PKEY_is_a(pk, "RSA"))
            ok = EVP_PKEY_get_bits(pk) >= 2048;
        else if (EVP_PKEY_is_a(pk, "EC"))
            ok = EVP_PKEY_get_bits(pk) >= 256;
    }
    if (ok)
        ok = trial_seal(x);
    n = ok ? i2d_X509(x, &der) : -1;
    if (n <= 0 || n > HSMCA_LINE_CERT_MAX ||
        EVP_Digest(der, (size_t)n, sha256, &hl, EVP_sha256(), NULL) != 1) {
        OPENSSL_free(der);
        X509_free(x);
        return HSMCA_E_LINE_CERT_INVALID;
    }
    X509_free(x);
    *der_out = malloc((size_t)n);
    if (*der_out == NULL) {
        OPENSSL_free(der);
        return HSMCA_E_NOMEM;
    }
    memcpy(*der_out, der, (size_t)n);
    *der_len = (size_t)n;
    OPENSSL_free(der);
    return HSMCA_OK;
}

/* ---- keys and CSRs ---- */

/* DER pieces of a bundle CSR and key (P-256, fixed lengths) */
static const unsigned char spki_prefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                            0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
/* CertificationRequestInfo: version 0, subject CN=device, then the SPKI, then attributes [0] {} */
static const unsigned char cri_head[] = {0x30, 0x73, 0x02, 0x01, 0x00, 0x30, 0x11, 0x31,
                                         0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x04, 0x03,
                                         0x0c, 0x06, 'd',  'e',  'v',  'i',  'c',  'e'};
static const unsigned char ecdsa_sha256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                             0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
/* PrivateKeyInfo { 0, {id-ecPublicKey, prime256v1}, OCTET STRING { ECPrivateKey { 1, priv,
 * [1] pub } } } up to the private scalar, and between it and the point */
static const unsigned char p8_head[] = {0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06,
                                        0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                                        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                                        0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20};
static const unsigned char p8_mid[] = {0xa1, 0x44, 0x03, 0x42, 0x00};

void
hsmca_bundle_keys_free(struct hsmca_bundle_keys *k)
{
    size_t i;

    if (k == NULL)
        return;
    for (i = 0; k->keys != NULL && i < k->n; i++)
        EVP_PKEY_free(k->keys[i]);
    free(k->keys);
    free(k->pub);
    free(k->csr);
    free(k->csr_len);
    free(k);
}

/* The CSR of key (point pub) into out; its length, or 0. */
static size_t
make_csr(EVP_PKEY *key, const unsigned char pub[65], unsigned char out[HSMCA_BUNDLE_CSR_MAX])
{
    unsigned char cri[sizeof(cri_head) + sizeof(spki_prefix) + 65 + 2], h[HSMCA_SHA256_LEN],
        sig[80];
    unsigned int hl = 0;
    size_t sl = sizeof(sig), n = 0, body;
    EVP_PKEY_CTX *ctx;
    int ok;

    memcpy(cri, cri_head, sizeof(cri_head));
    memcpy(cri + sizeof(cri_head), spki_prefix, sizeof(spki_prefix));
    memcpy(cri + sizeof(cri_head) + sizeof(spki_prefix), pub, 65);
    cri[sizeof(cri) - 2] = 0xa0;
    cri[sizeof(cri) - 1] = 0x00;
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    ok = ctx != NULL && EVP_Digest(cri, sizeof(cri), h, &hl, EVP_sha256(), NULL) == 1 &&
         EVP_PKEY_sign_init(ctx) == 1 && EVP_PKEY_sign(ctx, sig, &sl, h, sizeof(h)) == 1 &&
         sl < 0x7f - 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok)
        return 0;
    body = sizeof(cri) + sizeof(ecdsa_sha256) + 3 + sl;
    if (body > 0xff || body + 3 > HSMCA_BUNDLE_CSR_MAX)
        return 0;
    out[n++] = 0x30;
    out[n++] = 0x81;
    out[n++] = (unsigned char)body;
    memcpy(out + n, cri, sizeof(cri));
    n += sizeof(cri);
    memcpy(out + n, ecdsa_sha256, sizeof(ecdsa_sha256));
    n += sizeof(ecdsa_sha256);
    out[n++] = 0x03;
    out[n++] = (unsigned char)(sl + 1);
    out[n++] = 0x00;
    memcpy(out + n, sig, sl);
    return n + sl;
}

struct keys_part {
    struct hsmca_bundle_keys *k;
    size_t from, step;
    int failed;
};

static void *
keys_part_run(void *arg)
{
    struct keys_part *p = arg;
    struct hsmca_bundle_keys *k = p->k;
    EVP_PKEY_CTX *gen = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    size_t i, pl = 0;

    if (gen == NULL || EVP_PKEY_keygen_init(gen) != 1 ||
        EVP_PKEY_CTX_set_group_name(gen, "P-256") != 1) {
        p->failed = 1;
        EVP_PKEY_CTX_free(gen);
        return NULL;
    }
    for (i = p->from; i < k->n && !p->failed; i += p->step) {
        if (EVP_PKEY_generate(gen, &k->keys[i]) != 1 ||
            EVP_PKEY_get_octet_string_param(k->keys[i], OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                            k->pub[i], 65, &pl) != 1 ||
            pl != 65 || k->pub[i][0] != 0x04 ||
            (k->csr_len[i] = make_csr(k->keys[i], k->pub[i], k->csr[i])) == 0)
            p->failed = 1;
    }
    EVP_PKEY_CTX_free(gen);
    return NULL;
}

enum hsmca_err
hsmca_bundle_keys_new(size_t n, unsigned threads, struct hsmca_bundle_keys **out)
{
    struct hsmca_bundle_keys *k;
    struct keys_part parts[4];
    pthread_t th[4];
    int started[4] = {0, 0, 0, 0};
    size_t t;
    int failed = 0;

    if (out == NULL || n == 0 || n > HSMCA_BUNDLE_MAX)
        return HSMCA_E_INVALID_ARG;
    *out = NULL;
    if (threads == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);

        threads = c > 0 ? (unsigned)c : 1;
    }
    if (threads > 4)
        threads = 4;
    if (threads > n)
        threads = (unsigned)n;
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return HSMCA_E_NOMEM;
    k->keys = calloc(n, sizeof(*k->keys));
    k->pub = calloc(n, sizeof(*k->pub));
    k->csr = calloc(n, sizeof(*k->csr));
    k->csr_len = calloc(n, sizeof(*k->csr_len));
    k->n = n;
    if (k->keys == NULL || k->pub == NULL || k->csr == NULL || k->csr_len == NULL) {
        hsmca_bundle_keys_free(k);
        return HSMCA_E_NOMEM;
    }
    for (t = 0; t < threads; t++) {
        parts[t].k = k;
        parts[t].from = t;
        parts[t].step = threads;
        parts[t].failed = 0;
        if (t > 0)
            started[t] = pthread_create(&th[t], NULL, keys_part_run, &parts[t]) == 0;
    }
    keys_part_run(&parts[0]);
    for (t = 0; t < threads; t++) {
        if (t > 0 && !started[t]) {
            keys_part_run(&parts[t]); /* no thread: do its share here */
        } else if (t > 0) {
            pthread_join(th[t], NULL);
        }
        failed |= parts[t].failed;
    }
    if (failed) {
        hsmca_bundle_keys_free(k);
        return HSMCA_E_INTERNAL;
    }
    *out = k;
    return HSMCA_OK;
}

/* ---- the archive ---- */

struct tarbuf {
    unsigned char *p;
    size_t len, cap;
};

static size_t
tar_size(size_t len)
{
    return TAR_BLOCK + (len + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
}

static void
octal(char *dst, size_t width, unsigned long long v)
{
    /* width - 1 octal digits and a NUL, as ustar writers do (values here always fit) */
    size_t i;

    for (i = width - 1; i > 0; i--) {
        dst[i - 1] = (char)('0' + (v & 7));
        v >>= 3;
    }
    dst[width - 1] = '\0';
}

/* Append one regular file (the buffer was sized for it: never grows). */
static int
tar_file(struct tarbuf *t, const char *name, unsigned mode, int64_t mtime,
         const unsigned char *data, size_t len)
{
    unsigned char *h = t->p + t->len;
    size_t need = tar_size(len), i, nl = strlen(name);
    unsigned sum = 0;

    if (t->len + need > t->cap || nl >= 100)
        return -1;
    memset(h, 0, need);
    memcpy(h, name, nl);
    octal((char *)h + 100, 8, mode);
    octal((char *)h + 108, 8, 0);
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, len);
    octal((char *)h + 136, 12, (unsigned long long)(mtime > 0 ? mtime : 0));
    memset(h + 148, ' ', 8);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memcpy(h + 265, "hsmca", 5);
    memcpy(h + 297, "hsmca", 5);
    for (i = 0; i < TAR_BLOCK; i++)
        sum += h[i];
    octal((char *)h + 148, 7, sum);
    h[155] = ' ';
    if (len > 0 && data != NULL)
        memcpy(h + TAR_BLOCK, data, len);
    t->len += need;
    return 0;
}

static void
sha256_hex(const unsigned char *p, size_t n, char hex[HSMCA_SHA256_HEX_SIZE])
{
    unsigned char h[HSMCA_SHA256_LEN];
    unsigned int hl = 0;

    if (EVP_Digest(p, n, h, &hl, EVP_sha256(), NULL) != 1)
        memset(h, 0, sizeof(h));
    hsmca_hex_encode(h, HSMCA_SHA256_LEN, hex, HSMCA_SHA256_HEX_SIZE);
}

/* manifest.json: what the bundle holds (no key material) */
static char *
manifest(const struct hsmca_bundle_info *info, const struct hsmca_bundle_device *dev, size_t n,
         size_t *issued)
{
    json_t *m, *devs = json_array(), *missing = json_array();
    char hex[HSMCA_SHA256_HEX_SIZE], dir[32];
    size_t i, k = 0;
    char *s = NULL;

    if (devs == NULL || missing == NULL) {
        json_decref(devs);
        json_decref(missing);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (dev[i].dac == NULL) {
            json_array_append_new(missing, json_integer((json_int_t)i));
            continue;
        }
        sha256_hex(dev[i].dac, dev[i].dac_len, hex);
        snprintf(dir, sizeof(dir), "devices/%04zu", i);
        json_array_append_new(
            devs,
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "index", (json_int_t)i, "dir",
                      dir, "dac", "dac.der", "key", "key.der", "pai", "pai.der", "serial",
                      dev[i].serial_hex != NULL ? dev[i].serial_hex : "", "request_id",
                      dev[i].request_id != NULL ? dev[i].request_id : "", "dac_sha256", hex));
        k++;
    }
    sha256_hex(info->pai, info->pai_len, hex);
    m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:o, s:o}", "format",
                  "hsmca-bundle/1", "bundle", info->id, "ca", info->ca, "line", info->line,
                  "requester", info->requester, "created_ms", (json_int_t)info->created_ms, "pai",
                  "pai.der", "pai_sha256", hex, "requested", (json_int_t)n, "count", (json_int_t)k,
                  "devices", devs, "missing", missing);
    if (m != NULL)
        s = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(m);
    *issued = k;
    return s;
}

enum hsmca_err
hsmca_bundle_seal(const struct hsmca_bundle_info *info, const struct hsmca_bundle_device *dev,
                  size_t n, const unsigned char *line_cert, size_t line_cert_len,
                  unsigned char **env_out, size_t *env_len,
                  unsigned char manifest_sha256[HSMCA_SHA256_LEN],
                  unsigned char env_sha256[HSMCA_SHA256_LEN], size_t *issued)
{
    char *man = NULL;
    size_t man_len, i, k = 0;
    struct tarbuf t = {NULL, 0, 0};
    int locked = 0;
    const unsigned char *cp = line_cert;
    X509 *lx = NULL;
    STACK_OF(X509) *recips = NULL;
    BIO *in = NULL;
    CMS_ContentInfo *cms = NULL;
    unsigned char *env = NULL;
    unsigned int hl = 0;
    int elen;
    char base[48], path[100];
    BIGNUM *priv;
    enum hsmca_err rc = HSMCA_E_BUNDLE_SEAL_FAILED;

    if (info == NULL || dev == NULL || n == 0 || n > HSMCA_BUNDLE_MAX || line_cert == NULL ||
        env_out == NULL || env_len == NULL || manifest_sha256 == NULL || env_sha256 == NULL ||
        issued == NULL)
        return HSMCA_E_INVALID_ARG;
    *env_out = NULL;
    *env_len = 0;
    lx = d2i_X509(NULL, &cp, (long)line_cert_len);
    if (lx == NULL)
        return HSMCA_E_LINE_CERT_INVALID;
    man = manifest(info, dev, n, &k);
    if (man == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    man_len = strlen(man);
    if (k == 0)
        goto out;
    /* size the archive exactly: it never moves once it holds a key */
    t.cap = tar_size(man_len) + tar_size(info->pai_len) + 2 * TAR_BLOCK;
    for (i = 0; i < n; i++) {
        if (dev[i].dac == NULL)
            continue;
        t.cap += tar_size(dev[i].dac_len) + tar_size(HSMCA_BUNDLE_P8_LEN) + tar_size(info->pai_len);
    }
    t.p = malloc(t.cap);
    if (t.p == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    locked = mlock(t.p, t.cap) == 0;
    snprintf(base, sizeof(base), "bundle-%s", info->id);
    snprintf(path, sizeof(path), "%s/manifest.json", base);
    if (tar_file(&t, path, 0644, info->created_ms / 1000, (const unsigned char *)man, man_len) != 0)
        goto out;
    snprintf(path, sizeof(path), "%s/pai.der", base);
    if (tar_file(&t, path, 0644, info->created_ms / 1000, info->pai, info->pai_len) != 0)
        goto out;
    for (i = 0; i < n; i++) {
        unsigned char *kp;

        if (dev[i].dac == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/devices/%04zu/dac.der", base, i);
        if (tar_file(&t, path, 0644, info->created_ms / 1000, dev[i].dac, dev[i].dac_len) != 0)
            goto out;
        snprintf(path, sizeof(path), "%s/devices/%04zu/pai.der", base, i);
        if (tar_file(&t, path, 0644, info->created_ms / 1000, info->pai, info->pai_len) != 0)
            goto out;
        /* the key is encoded straight into the archive (PKCS#8 DER, written here: OpenSSL 3.0's
         * encoder took about 0.5 ms per key), the scalar copied out of its BIGNUM, which is
         * cleared: no other copy of it */
        snprintf(path, sizeof(path), "%s/devices/%04zu/key.der", base, i);
        if (dev[i].pub == NULL ||
            tar_file(&t, path, 0600, info->created_ms / 1000, NULL, HSMCA_BUNDLE_P8_LEN) != 0)
            goto out;
        kp = t.p + t.len - tar_size(HSMCA_BUNDLE_P8_LEN) + TAR_BLOCK;
        memcpy(kp, p8_head, sizeof(p8_head));
        priv = NULL;
        if (EVP_PKEY_get_bn_param(dev[i].key, OSSL_PKEY_PARAM_PRIV_KEY, &priv) != 1 ||
            BN_bn2binpad(priv, kp + sizeof(p8_head), 32) != 32) {
            BN_clear_free(priv);
            goto out;
        }
        BN_clear_free(priv);
        memcpy(kp + sizeof(p8_head) + 32, p8_mid, sizeof(p8_mid));
        memcpy(kp + sizeof(p8_head) + 32 + sizeof(p8_mid), dev[i].pub, 65);
    }
    memset(t.p + t.len, 0, 2 * TAR_BLOCK);
    t.len += 2 * TAR_BLOCK;

    recips = sk_X509_new_null();
    in = BIO_new_mem_buf(t.p, (int)t.len);
    if (recips == NULL || in == NULL || sk_X509_push(recips, lx) <= 0)
        goto out;
    cms = CMS_encrypt(recips, in, EVP_aes_256_cbc(), CMS_BINARY);
    elen = cms != NULL ? i2d_CMS_ContentInfo(cms, &env) : -1;
    if (elen <= 0)
        goto out;
    if (EVP_Digest(man, man_len, manifest_sha256, &hl, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(env, (size_t)elen, env_sha256, &hl, EVP_sha256(), NULL) != 1)
        goto out;
    *env_out = malloc((size_t)elen);
    if (*env_out == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    memcpy(*env_out, env, (size_t)elen);
    *env_len = (size_t)elen;
    *issued = k;
    rc = HSMCA_OK;
out:
    CMS_ContentInfo_free(cms);
    OPENSSL_free(env);
    BIO_free(in);
    sk_X509_free(recips);
    X509_free(lx);
    if (t.p != NULL) {
        OPENSSL_cleanse(t.p, t.cap);
        if (locked)
            munlock(t.p, t.cap);
        free(t.p);
    }
    free(man);
    return rc;
}
