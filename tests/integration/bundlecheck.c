/* SPDX-License-Identifier: Apache-2.0
 *
 * bundlecheck.c -- test helper for bundle.sh and tools/bench (never used by the service):
 *   bundlecheck check DIR PAA.pem
 *     DIR is an unpacked bundle (bundle-<id>/): reads manifest.json, and for every device listed
 *     checks that key.der is a PKCS#8 P-256 key matching dac.der, that dac.der is signed by
 *     pai.der and chains to the PAA (OpenSSL path validation), that pai.der is the bundle's PAI
 *     and that the DAC's hash and serial are the manifest's. Prints "devices N" and exits 0 only
 *     if every device passes and N is the manifest's count.
 *   bundlecheck scan DIR FILE...
 *     the private scalars (32 bytes) of every DIR/devices/ * /key.der; prints "FILE: K keys" for
 *     each FILE holding any and exits 1 if any FILE holds one, else 0.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "hsmca/util.h"

static unsigned char *
slurp(const char *path, size_t *len)
{
    unsigned char *b = NULL;

    if (hsmca_read_file(path, 1u << 30, &b, len) != HSMCA_OK)
        return NULL;
    return b;
}

static X509 *
x509_file(const char *path)
{
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    const unsigned char *p = b;
    X509 *x = b != NULL ? d2i_X509(NULL, &p, (long)n) : NULL;

    free(b);
    return x;
}

static EVP_PKEY *
key_file(const char *path)
{
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    const unsigned char *p = b;
    PKCS8_PRIV_KEY_INFO *p8 = b != NULL ? d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)n) : NULL;
    EVP_PKEY *k = p8 != NULL && p == b + n ? EVP_PKCS82PKEY(p8) : NULL;

    PKCS8_PRIV_KEY_INFO_free(p8);
    if (b != NULL)
        OPENSSL_cleanse(b, n);
    free(b);
    return k;
}

static void
sha_hex(const unsigned char *p, size_t n, char hex[65])
{
    unsigned char h[32];
    unsigned int hl = 0;

    EVP_Digest(p, n, h, &hl, EVP_sha256(), NULL);
    hsmca_hex_encode(h, 32, hex, 65);
}

static int
check(const char *dir, const char *paa_path)
{
    char path[4096], hex[65];
    size_t n = 0, i, good = 0;
    unsigned char *mb = NULL;
    json_t *m, *devs, *d;
    X509 *pai, *paa = NULL;
    FILE *f = fopen(paa_path, "r");
    X509_STORE *store = X509_STORE_new();

    if (f != NULL) {
        paa = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    mb = slurp(path, &n);
    m = mb != NULL ? json_loadb((const char *)mb, n, 0, NULL) : NULL;
    free(mb);
    snprintf(path, sizeof(path), "%s/pai.der", dir);
    pai = x509_file(path);
    devs = json_object_get(m, "devices");
    if (m == NULL || paa == NULL || pai == NULL || !json_is_array(devs) || store == NULL ||
        X509_STORE_add_cert(store, paa) != 1) {
        fprintf(stderr, "bundlecheck: manifest, PAI or PAA unreadable\n");
        return 1;
    }
    json_array_foreach(devs, i, d)
    {
        const char *sub = json_string_value(json_object_get(d, "dir"));
        X509 *dac, *dpai;
        EVP_PKEY *key;
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        STACK_OF(X509) *chain = sk_X509_new_null();
        unsigned char *dd = NULL;
        int dl, ok;
        ASN1_INTEGER *ser;
        BIGNUM *bn;
        char *sh;

        snprintf(path, sizeof(path), "%s/%s/dac.der", dir, sub != NULL ? sub : "?");
        dac = x509_file(path);
        snprintf(path, sizeof(path), "%s/%s/pai.der", dir, sub != NULL ? sub : "?");
        dpai = x509_file(path);
        snprintf(path, sizeof(path), "%s/%s/key.der", dir, sub != NULL ? sub : "?");
        key = key_file(path);
        ok = dac != NULL && dpai != NULL && key != NULL && ctx != NULL && chain != NULL &&
             X509_cmp(dpai, pai) == 0 && EVP_PKEY_is_a(key, "EC") &&
             EVP_PKEY_get_bits(key) == 256 && X509_check_private_key(dac, key) == 1 &&
             X509_verify(dac, X509_get0_pubkey(pai)) == 1 && sk_X509_push(chain, dpai) > 0 &&
             X509_STORE_CTX_init(ctx, store, dac, chain) == 1 && X509_verify_cert(ctx) == 1;
        dl = ok ? i2d_X509(dac, &dd) : -1;
        if (dl > 0) {
            sha_hex(dd, (size_t)dl, hex);
            ok = strcmp(hex, json_string_value(json_object_get(d, "dac_sha256"))) == 0;
        }
        ser = dac != NULL ? X509_get_serialNumber(dac) : NULL;
        bn = ok && ser != NULL ? ASN1_INTEGER_to_BN(ser, NULL) : NULL;
        sh = bn != NULL ? BN_bn2hex(bn) : NULL;
        if (ok &&
            (sh == NULL || strcasecmp(sh, json_string_value(json_object_get(d, "serial"))) != 0))
            ok = 0;
        if (ok)
            good++;
        else
            fprintf(stderr, "bundlecheck: device %s fails\n", sub != NULL ? sub : "?");
        OPENSSL_free(sh);
        BN_free(bn);
        OPENSSL_free(dd);
        sk_X509_free(chain);
        X509_STORE_CTX_free(ctx);
        X509_free(dac);
        X509_free(dpai);
        EVP_PKEY_free(key);
    }
    printf("devices %zu\n", good);
    {
        int ret = good == json_array_size(devs) &&
                          (json_int_t)good == json_integer_value(json_object_get(m, "count"))
                      ? 0
                      : 1;

        json_decref(m);
        X509_free(pai);
        X509_free(paa);
        X509_STORE_free(store);
        return ret;
    }
}

static int
scan(const char *dir, int nfiles, char **files)
{
    char path[4096];
    unsigned char(*sc)[32] = NULL;
    size_t nk = 0, cap = 0;
    DIR *dd;
    struct dirent *e;
    int i, bad = 0;

    snprintf(path, sizeof(path), "%s/devices", dir);
    dd = opendir(path);
    if (dd == NULL) {
        fprintf(stderr, "bundlecheck: no %s\n", path);
        return 2;
    }
    while ((e = readdir(dd)) != NULL) {
        EVP_PKEY *k;
        BIGNUM *priv = NULL;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/devices/%s/key.der", dir, e->d_name);
        k = key_file(path);
        if (k == NULL || EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &priv) != 1) {
            fprintf(stderr, "bundlecheck: %s unreadable\n", path);
            EVP_PKEY_free(k);
            closedir(dd);
            return 2;
        }
        if (nk == cap) {
            cap = cap ? cap * 2 : 1024;
            sc = realloc(sc, cap * sizeof(*sc));
            if (sc == NULL)
                return 2;
        }
        BN_bn2binpad(priv, sc[nk++], 32);
        BN_clear_free(priv);
        EVP_PKEY_free(k);
    }
    closedir(dd);
    for (i = 0; i < nfiles; i++) {
        size_t n = 0, j, hits = 0;
        unsigned char *b = slurp(files[i], &n);

        if (b == NULL)
            continue; /* vanished or unreadable (a socket, a WAL just checkpointed) */
        for (j = 0; j < nk; j++) {
            if (n >= 32 && memmem(b, n, sc[j], 32) != NULL)
                hits++;
        }
        if (hits > 0) {
            printf("%s: %zu keys\n", files[i], hits);
            bad = 1;
        }
        free(b);
    }
    printf("scanned %d files for %zu keys\n", nfiles, nk);
    OPENSSL_cleanse(sc, nk * sizeof(*sc));
    free(sc);
    return bad;
}

int
main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "check") == 0)
        return check(argv[2], argv[3]);
    if (argc >= 3 && strcmp(argv[1], "scan") == 0)
        return scan(argv[2], argc - 3, argv + 3);
    fprintf(stderr, "usage: bundlecheck check DIR PAA.pem | scan DIR FILE...\n");
    return 2;
}
