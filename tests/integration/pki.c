/* SPDX-License-Identifier: Apache-2.0
 *
 * pki.c -- test helper for the issuance integration test (never used outside tests):
 *   pki setup DIR MODULE PROFILES_DIR POLICY_JSON [--no-ceremony]
 *     with tokens hsmca-audit (key audit-key, PIN in DIR/audit.pin), hsmca-paa and hsmca-pai-8000
 *     (user PIN user-pin-1234, SO PIN so-pin-1234) already made: generate the PAA and PAI keys in
 *     their tokens, build the PAA and PAI certificates, register paa-1 and pai-8000 in
 *     DIR/hsmca.db (or the store $HSMCA_TEST_STORE_SPEC names), open the audit log there, and hold
 * the quorum ceremony over the PAI token with three software approvers (bob-approver,
 * dave-approver, erin-approver; keys written to DIR/<name>.key.pem), m = 2. The PAI's PIN is then
 * known to nobody. pki setup ... --paa-quorum the same, with the PAA's token also under the quorum
 * (for ca.revoke and crl.sign). pki approve DIR NAME ENVELOPE_FILE print NAME's approval of the
 * envelope (as `hsmca approve` makes it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/matter.h"
#include "hsmca/profile.h"
#include "hsmca/quorum.h"
#include "hsmca/secret.h"
#include "hsmca/store_certs.h"
#include "hsmca/token.h"
#include "hsmca/util.h"

#include "pki_common.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        enum hsmca_err rc_ = (x);                                                                  \
        if (rc_ != HSMCA_OK) {                                                                     \
            fprintf(stderr, "pki: %s: %s\n", #x, hsmca_err_code(rc_));                             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static char *
slurp(const char *path, size_t *len)
{
    unsigned char *b = NULL;

    CHECK(hsmca_read_file(path, 1u << 20, &b, len));
    return (char *)b;
}

static struct hsmca_secret
secret(const char *s)
{
    struct hsmca_secret x = {NULL, 0};

    CHECK(hsmca_secret_set(&x, s, strlen(s)));
    return x;
}

static void
put_ca(struct hsmca_store *st, const char *id, const char *kind, const char *parent,
       const char *label, const char *object, int pid, X509 *x)
{
    struct hsmca_ca_rec r;
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);

    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.kind, sizeof(r.kind), "%s", kind);
    snprintf(r.parent, sizeof(r.parent), "%s", parent);
    snprintf(r.token_uri, sizeof(r.token_uri), "pkcs11:token=%s", label);
    snprintf(r.key_uri, sizeof(r.key_uri), "pkcs11:token=%s;object=%s", label, object);
    r.vid = 0xFFF1;
    r.pid = pid;
    r.cert_der = der;
    r.cert_len = (size_t)n;
    r.created_ms = (int64_t)time(NULL) * 1000;
    CHECK(hsmca_store_ca_put(st, &r));
    OPENSSL_free(der);
}

static int
setup(const char *dir, const char *module, const char *profiles, const char *policy_path,
      int ceremony)
{
    struct hsmca_p11 *p11 = NULL;
    struct hsmca_token *ta = NULL, *tpaa = NULL, *tpai = NULL;
    struct hsmca_key *ka = NULL, *kpaa = NULL, *kpai = NULL;
    struct hsmca_store *st = NULL;
    struct hsmca_audit *a = NULL;
    struct hsmca_quorum *q = NULL;
    struct hsmca_profile ppaa, ppai;
    struct hsmca_secret user = secret("user-pin-1234"), so = secret("so-pin-1234");
    unsigned char serial[HSMCA_MATTER_SERIAL_LEN];
    char path[1024], *policy;
    size_t plen = 0;
    X509 *paa = NULL, *pai = NULL;
    time_t now = time(NULL);

    CHECK(hsmca_secure_heap_init(0));
    snprintf(path, sizeof(path), "%s/matter-paa.json", profiles);
    CHECK(hsmca_profile_load(path, &ppaa));
    snprintf(path, sizeof(path), "%s/matter-pai.json", profiles);
    CHECK(hsmca_profile_load(path, &ppai));
    CHECK(hsmca_p11_open(module, &p11));
    CHECK(hsmca_token_open(p11, "pkcs11:token=hsmca-paa", &tpaa));
    CHECK(hsmca_token_open(p11, "pkcs11:token=hsmca-pai-8000", &tpai));
    CHECK(hsmca_token_login(tpaa, &user));
    CHECK(hsmca_token_login(tpai, &user));
    CHECK(hsmca_token_generate_key(tpaa, "paa-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &kpaa));
    CHECK(hsmca_token_generate_key(tpai, "pai-key", NULL, 0, HSMCA_KEY_USAGE_SIGN, &kpai));
    CHECK(hsmca_matter_paa_build(&ppaa, &(struct hsmca_matter_ca_subject){NULL, 1, 0, 0xFFF1, 0},
                                 hsmca_key_private(kpaa), hsmca_key_public(kpaa), now, serial,
                                 &paa));
    CHECK(hsmca_matter_pai_build(
        &ppai, &(struct hsmca_matter_ca_subject){NULL, 1, 1, 0xFFF1, 0x8000},
        hsmca_key_public(kpai), paa, hsmca_key_private(kpaa), now, serial, &pai));
    hsmca_key_free(kpaa);
    hsmca_key_free(kpai);
    CHECK(hsmca_token_logout(tpaa));
    CHECK(hsmca_token_logout(tpai));
    /* the SO cannot log in while libp11's read-only signing sessions are open: start afresh */
    CHECK(hsmca_token_free(tpaa));
    CHECK(hsmca_token_free(tpai));
    tpaa = NULL;
    CHECK(hsmca_p11_free(p11));
    CHECK(hsmca_p11_open(module, &p11));
    CHECK(hsmca_token_open(p11, "pkcs11:token=hsmca-pai-8000", &tpai));
    if (ceremony == 2)
        CHECK(hsmca_token_open(p11, "pkcs11:token=hsmca-paa", &tpaa));
    snprintf(path, sizeof(path), "%s/paa.pem", dir);
    {
        FILE *f = fopen(path, "w");

        if (f == NULL || PEM_write_X509(f, paa) != 1 || fclose(f) != 0)
            return 1;
    }

    CHECK(pki_store_open(dir, &st));
    CHECK(hsmca_store_begin(st));
    put_ca(st, "paa-1", "paa", "", "hsmca-paa", "paa-key", -1, paa);
    put_ca(st, "pai-8000", "pai", "paa-1", "hsmca-pai-8000", "pai-key", 0x8000, pai);
    CHECK(hsmca_store_commit(st));

    if (pki_log_open(dir, p11, st, "integration-test", &ta, &ka, &a, &q) != 0)
        return 1;
    policy = slurp(policy_path, &plen);
    if (ceremony) {
        /* HSMCA_PKI_EXTRA_TOKENS: up to two more free tokens (labels, space-separated) taken
         * under the quorum's custody at the same ceremony (nodes_quota.sh: the mDL tokens) */
        struct hsmca_quorum_token_in t[4] = {
            {"hsmca-pai-8000", "pkcs11:token=hsmca-pai-8000", tpai, &so},
            {"hsmca-paa", "pkcs11:token=hsmca-paa", tpaa, &so}};
        const char *extra = getenv("HSMCA_PKI_EXTRA_TOKENS");
        char labels[2][64], uris[2][96];
        struct hsmca_token *xt[2] = {NULL, NULL};
        size_t n = ceremony == 2 ? 2 : 1, k, nx = 0;

        while (extra != NULL && *extra != '\0' && nx < 2) {
            size_t l = strcspn(extra, " ");

            if (l > 0 && l < sizeof(labels[0])) {
                memcpy(labels[nx], extra, l);
                labels[nx][l] = '\0';
                snprintf(uris[nx], sizeof(uris[nx]), "pkcs11:token=%s", labels[nx]);
                CHECK(hsmca_token_open(p11, uris[nx], &xt[nx]));
                t[n++] = (struct hsmca_quorum_token_in){labels[nx], uris[nx], xt[nx], &so};
                nx++;
            }
            extra += l + (extra[l] == ' ');
        }
        if (pki_ceremony(q, dir, t, n, policy, plen, "integration-test") != 0)
            return 1;
        for (k = 0; k < nx; k++)
            CHECK(hsmca_token_free(xt[k]));
    }
    free(policy);
    hsmca_quorum_free(q);
    CHECK(hsmca_audit_close(a));
    hsmca_store_close(st);
    hsmca_key_free(ka);
    CHECK(hsmca_token_logout(ta));
    CHECK(hsmca_token_free(ta));
    CHECK(hsmca_token_free(tpaa));
    CHECK(hsmca_token_free(tpai));
    CHECK(hsmca_p11_free(p11));
    X509_free(paa);
    X509_free(pai);
    hsmca_secret_clear(&user);
    hsmca_secret_clear(&so);
    return 0;
}

static int
approve(const char *dir, const char *name, const char *env_path)
{
    char path[1024], *env, *ap = NULL;
    size_t len = 0;
    FILE *f;
    EVP_PKEY *k;
    struct hsmca_quorum_signer s;

    CHECK(hsmca_secure_heap_init(0));
    snprintf(path, sizeof(path), "%s/%s.key.pem", dir, name);
    f = fopen(path, "r");
    k = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    if (k == NULL)
        return 1;
    env = slurp(env_path, &len);
    s.name = name;
    s.key = NULL;
    s.soft = k;
    CHECK(hsmca_quorum_approval_make(env, len, &s, &ap));
    fputs(ap, stdout);
    free(ap);
    free(env);
    EVP_PKEY_free(k);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "setup") == 0 && strcmp(argv[6], "--paa-quorum") == 0)
        return setup(argv[2], argv[3], argv[4], argv[5], 2);
    if ((argc == 6 || (argc == 7 && strcmp(argv[6], "--no-ceremony") == 0)) &&
        strcmp(argv[1], "setup") == 0)
        return setup(argv[2], argv[3], argv[4], argv[5], argc == 6);
    if (argc == 5 && strcmp(argv[1], "approve") == 0)
        return approve(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: pki setup DIR MODULE PROFILES POLICY [--no-ceremony] | "
                    "pki approve DIR NAME ENV\n");
    return 2;
}
