/* SPDX-License-Identifier: Apache-2.0
 *
 * seed.c -- test helper for the integration tests: put a PAA, a PAI and N issued certificate
 * records (with fake DER) into a fresh store before hsmcad starts, so the inventory, CA and CRL
 * routes have data before the issuance engine exists in a test. Never used outside tests.
 * usage: seed STORE PAI-ID PAI-TOKEN-URI N [CRL-DER-FILE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hsmca/store.h"
#include "hsmca/store_certs.h"
#include "hsmca/util.h"

int
main(int argc, char **argv)
{
    struct hsmca_store *st = NULL;
    struct hsmca_ca_rec ca;
    uint64_t n = 0, i;
    int rc = 1;

    if (argc < 5 || argc > 6 || hsmca_parse_u64(argv[4], strlen(argv[4]), 100000, &n) != HSMCA_OK) {
        fprintf(stderr, "usage: seed STORE PAI-ID PAI-TOKEN-URI N [CRL-DER-FILE]\n");
        return 2;
    }
    if (hsmca_store_open(argv[1], &st) != HSMCA_OK || hsmca_store_begin(st) != HSMCA_OK)
        goto out;
    memset(&ca, 0, sizeof(ca));
    snprintf(ca.id, sizeof(ca.id), "paa-1");
    snprintf(ca.kind, sizeof(ca.kind), "paa");
    snprintf(ca.token_uri, sizeof(ca.token_uri), "pkcs11:token=hsmca-paa");
    snprintf(ca.key_uri, sizeof(ca.key_uri), "pkcs11:token=hsmca-paa;object=paa-key");
    ca.vid = 0xFFF1;
    ca.pid = -1;
    ca.created_ms = 1700000000000;
    if (hsmca_store_ca_put(st, &ca) != HSMCA_OK)
        goto out;
    snprintf(ca.id, sizeof(ca.id), "%s", argv[2]);
    snprintf(ca.kind, sizeof(ca.kind), "pai");
    snprintf(ca.parent, sizeof(ca.parent), "paa-1");
    snprintf(ca.token_uri, sizeof(ca.token_uri), "%s", argv[3]);
    snprintf(ca.key_uri, sizeof(ca.key_uri), "%s;object=pai-key", argv[3]);
    ca.pid = 0x8000;
    if (hsmca_store_ca_put(st, &ca) != HSMCA_OK)
        goto out;
    for (i = 0; i < n; i++) {
        struct hsmca_cert_rec c;
        unsigned char der[64];
        unsigned int hl = 0;

        memset(&c, 0, sizeof(c));
        snprintf(c.ca, sizeof(c.ca), "%s", argv[2]);
        c.serial_len = 16;
        if (RAND_bytes(c.serial, 16) != 1 || RAND_bytes(der, sizeof(der)) != 1)
            goto out;
        c.serial[0] = (unsigned char)((c.serial[0] & 0x7f) | 0x01);
        snprintf(c.request_id, sizeof(c.request_id), "seed-%llu", (unsigned long long)i);
        c.vid = 0xFFF1;
        c.pid = 0x8000;
        c.not_before = 1700000000;
        c.not_after = 1900000000;
        c.issued_ms = 1700000000000 + (int64_t)i * 1000;
        c.der = der;
        c.der_len = sizeof(der);
        if (EVP_Digest(der, sizeof(der), c.sha256, &hl, EVP_sha256(), NULL) != 1 ||
            hsmca_store_cert_insert(st, &c) != HSMCA_OK)
            goto out;
    }
    if (argc == 6) {
        struct hsmca_crl_rec crl;
        size_t len = 0;

        memset(&crl, 0, sizeof(crl));
        if (hsmca_read_file(argv[5], 65536, &crl.der, &len) != HSMCA_OK)
            goto out;
        crl.der_len = len;
        crl.number = 1;
        crl.this_update = 1700000000;
        crl.next_update = 1900000000;
        if (hsmca_store_crl_put(st, argv[2], &crl) != HSMCA_OK) {
            hsmca_crl_rec_clear(&crl);
            goto out;
        }
        hsmca_crl_rec_clear(&crl);
    }
    if (hsmca_store_commit(st) != HSMCA_OK)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "seed: failed\n");
    hsmca_store_close(st);
    return rc;
}
