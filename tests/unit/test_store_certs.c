/* SPDX-License-Identifier: Apache-2.0
 *
 * test_store_certs.c -- CAs, certificates, revocations and CRLs in the store: constraints refuse
 * duplicates, lookups by request id and serial, keyset paging that neither skips nor repeats,
 * revocation is one-way, CRL numbers only grow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hsmca/store_certs.h"

#include "fixture.h"

struct ctx {
    char dir[512];
    struct hsmca_store *st;
};

static int
setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct hsmca_ca_rec paa = {0}, pai = {0};

    if (c == NULL || fx_store_open("certs", 0, c->dir, sizeof(c->dir), NULL, 0, &c->st) != 0)
        return -1;
    snprintf(paa.id, sizeof(paa.id), "paa");
    snprintf(paa.kind, sizeof(paa.kind), "paa");
    snprintf(paa.token_uri, sizeof(paa.token_uri), "pkcs11:token=hsmca-paa");
    snprintf(paa.key_uri, sizeof(paa.key_uri), "pkcs11:token=hsmca-paa;object=paa-key");
    paa.vid = 0xFFF1;
    paa.pid = -1;
    pai = paa;
    snprintf(pai.id, sizeof(pai.id), "pai-8000");
    snprintf(pai.kind, sizeof(pai.kind), "pai");
    snprintf(pai.parent, sizeof(pai.parent), "paa");
    pai.pid = 0x8000;
    if (hsmca_store_ca_put(c->st, &paa) != HSMCA_OK || hsmca_store_ca_put(c->st, &pai) != HSMCA_OK)
        return -1;
    *state = c;
    return 0;
}

static int
teardown(void **state)
{
    struct ctx *c = *state;

    fx_store_close(c->st, c->dir);
    free(c);
    return 0;
}

static struct hsmca_cert_rec
cert(uint32_t n, int64_t issued_ms, const char *request_id)
{
    static unsigned char der[64];
    struct hsmca_cert_rec r;

    memset(&r, 0, sizeof(r));
    snprintf(r.ca, sizeof(r.ca), "pai-8000");
    r.serial[0] = 0x40;
    r.serial[1] = (unsigned char)(n >> 24);
    r.serial[2] = (unsigned char)(n >> 16);
    r.serial[3] = (unsigned char)(n >> 8);
    r.serial[4] = (unsigned char)n;
    r.serial_len = 16;
    if (request_id != NULL)
        snprintf(r.request_id, sizeof(r.request_id), "%s", request_id);
    r.csr_sha256[0] = (unsigned char)n;
    r.sha256[0] = (unsigned char)(n + 1);
    r.vid = 0xFFF1;
    r.pid = 0x8000;
    r.not_before = 1700000000;
    r.not_after = 253402300799; /* 99991231235959Z */
    r.issued_ms = issued_ms;
    r.reason = -1;
    memset(der, 0x30, sizeof(der));
    r.der = der;
    r.der_len = sizeof(der);
    return r;
}

static void
cas_and_their_constraints(void **state)
{
    struct ctx *c = *state;
    struct hsmca_ca_rec r, orphan = {0};
    unsigned char certder[3] = {0x30, 0x01, 0x00};

    assert_int_equal(hsmca_store_ca_get(c->st, "nope", &r), HSMCA_E_NOT_FOUND);
    snprintf(orphan.id, sizeof(orphan.id), "pai-x");
    snprintf(orphan.kind, sizeof(orphan.kind), "pai");
    snprintf(orphan.parent, sizeof(orphan.parent), "no-such-paa");
    assert_int_equal(hsmca_store_ca_put(c->st, &orphan), HSMCA_E_STORE_CONSTRAINT);
    snprintf(orphan.kind, sizeof(orphan.kind), "xyz");
    assert_int_equal(hsmca_store_ca_put(c->st, &orphan), HSMCA_E_INVALID_ARG);

    assert_int_equal(hsmca_store_ca_get(c->st, "pai-8000", &r), HSMCA_OK);
    assert_string_equal(r.parent, "paa");
    assert_int_equal(r.vid, 0xFFF1);
    assert_int_equal(r.pid, 0x8000);
    assert_null(r.cert_der);
    /* setting the certificate later keeps everything else */
    r.cert_der = certder;
    r.cert_len = sizeof(certder);
    r.pid = 0x1234;
    assert_int_equal(hsmca_store_ca_put(c->st, &r), HSMCA_OK);
    r.cert_der = NULL;
    assert_int_equal(hsmca_store_ca_get(c->st, "pai-8000", &r), HSMCA_OK);
    assert_int_equal(r.pid, 0x8000);
    assert_int_equal(r.cert_len, 3);
    assert_memory_equal(r.cert_der, certder, 3);
    hsmca_ca_rec_clear(&r);
    assert_int_equal(hsmca_store_ca_get(c->st, "paa", &r), HSMCA_OK);
    assert_int_equal(r.pid, -1);
    assert_string_equal(r.parent, "");
    hsmca_ca_rec_clear(&r);
}

static enum hsmca_err
collect_id(void *arg, const char *id)
{
    char *all = arg;

    if (strlen(all) + strlen(id) + 2 > 256)
        return HSMCA_E_TOO_LARGE;
    memcpy(all + strlen(all), id, strlen(id) + 1);
    memcpy(all + strlen(all), ";", 2);
    return strcmp(id, "stop") == 0 ? HSMCA_E_EXISTS : HSMCA_OK;
}

static void
certificates_are_unique_per_issuer(void **state)
{
    struct ctx *c = *state;
    struct hsmca_cert_rec a = cert(1, 1000, "req-1"), b, got;
    int exists = -1;
    uint64_t n = 0;

    assert_int_equal(hsmca_store_cert_insert(c->st, &a), HSMCA_OK);
    b = cert(1, 1001, "req-2"); /* same serial */
    assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_E_STORE_CONSTRAINT);
    b = cert(2, 1001, "req-1"); /* same request id */
    assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_E_STORE_CONSTRAINT);
    b = cert(3, 1001, NULL); /* no request id: fine, twice */
    assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_OK);
    b = cert(4, 1002, NULL);
    assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_OK);
    b = cert(5, 1003, NULL);
    b.der_len = HSMCA_CERT_DER_MAX + 1;
    assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_E_INVALID_ARG);
    b.serial_len = 0;
    assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_E_INVALID_ARG);
    snprintf(b.ca, sizeof(b.ca), "unknown-ca");
    b.serial_len = 16;
    b.der_len = 64;
    assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_E_STORE_CONSTRAINT);

    /* the request ids of the issuer, from its index: req-1 only (the others carry none) */
    {
        char all[256] = "";

        assert_int_equal(hsmca_store_request_ids(c->st, "pai-8000", collect_id, all), HSMCA_OK);
        assert_string_equal(all, "req-1;");
        all[0] = '\0';
        assert_int_equal(hsmca_store_request_ids(c->st, "paa", collect_id, all), HSMCA_OK);
        assert_string_equal(all, "");
        b = cert(6, 1004, "stop"); /* a non-OK return from fn stops the walk and is returned */
        assert_int_equal(hsmca_store_cert_insert(c->st, &b), HSMCA_OK);
        assert_int_equal(hsmca_store_request_ids(c->st, "pai-8000", collect_id, all),
                         HSMCA_E_EXISTS);
    }
    assert_int_equal(hsmca_store_cert_by_request(c->st, "pai-8000", "req-1", &got), HSMCA_OK);
    assert_memory_equal(got.serial, a.serial, 16);
    assert_int_equal(got.der_len, 64);
    assert_int_equal(got.not_after, 253402300799);
    assert_false(got.revoked);
    assert_int_equal(got.reason, -1);
    hsmca_cert_rec_clear(&got);
    assert_int_equal(hsmca_store_cert_by_request(c->st, "pai-8000", "req-9", &got),
                     HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_store_cert_by_request(c->st, "paa", "req-1", &got), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_store_cert_get(c->st, "pai-8000", a.serial, 16, &got), HSMCA_OK);
    assert_string_equal(got.request_id, "req-1");
    hsmca_cert_rec_clear(&got);
    assert_int_equal(hsmca_store_serial_exists(c->st, "pai-8000", a.serial, 16, &exists), HSMCA_OK);
    assert_int_equal(exists, 1);
    assert_int_equal(hsmca_store_serial_exists(c->st, "paa", a.serial, 16, &exists), HSMCA_OK);
    assert_int_equal(exists, 0);
    assert_int_equal(hsmca_store_cert_count(c->st, "pai-8000", 0, &n), HSMCA_OK);
    assert_int_equal(n, 4); /* serials 1, 3, 4 and 6 */
    assert_int_equal(hsmca_store_cert_count(c->st, "pai-8000", 1001, &n), HSMCA_OK);
    assert_int_equal(n, 3);
}

struct page {
    unsigned rows;
    uint32_t last;
    int64_t last_ms;
    unsigned char last_serial[20];
    unsigned seen[2600];
};

static enum hsmca_err
on_row(void *arg, const struct hsmca_cert_rec *r)
{
    struct page *p = arg;
    uint32_t n = (uint32_t)r->serial[1] << 24 | (uint32_t)r->serial[2] << 16 |
                 (uint32_t)r->serial[3] << 8 | r->serial[4];

    assert_true(n < 2600);
    p->seen[n]++;
    p->rows++;
    p->last_ms = r->issued_ms;
    memcpy(p->last_serial, r->serial, r->serial_len);
    return HSMCA_OK;
}

static void
inventory_pages_without_gaps_or_repeats(void **state)
{
    struct ctx *c = *state;
    struct hsmca_cert_query q;
    struct page *p = calloc(1, sizeof(*p));
    uint32_t i;
    int more = 0, pages = 0;

    assert_non_null(p);
    assert_int_equal(hsmca_store_begin(c->st), HSMCA_OK);
    for (i = 0; i < 2500; i++) {
        /* several certificates per millisecond: the serial breaks the tie */
        struct hsmca_cert_rec r = cert(i, 10000 + i / 7, NULL);

        assert_int_equal(hsmca_store_cert_insert(c->st, &r), HSMCA_OK);
    }
    assert_int_equal(hsmca_store_commit(c->st), HSMCA_OK);
    memset(&q, 0, sizeof(q));
    q.status = -1;
    q.to_ms = INT64_MAX;
    q.limit = 0;
    assert_int_equal(hsmca_store_cert_list(c->st, "pai-8000", &q, on_row, p, &more),
                     HSMCA_E_INVALID_ARG);
    q.limit = HSMCA_PAGE_MAX + 1;
    assert_int_equal(hsmca_store_cert_list(c->st, "pai-8000", &q, on_row, p, &more),
                     HSMCA_E_INVALID_ARG);
    q.limit = HSMCA_PAGE_MAX;
    do {
        assert_int_equal(hsmca_store_cert_list(c->st, "pai-8000", &q, on_row, p, &more), HSMCA_OK);
        pages++;
        q.after_ms = p->last_ms;
        memcpy(q.after_serial, p->last_serial, 16);
        q.after_serial_len = 16;
    } while (more && pages < 10);
    assert_int_equal(pages, 3);
    assert_int_equal(p->rows, 2500);
    for (i = 0; i < 2500; i++)
        assert_int_equal(p->seen[i], 1);

    /* time window and status filter */
    memset(p, 0, sizeof(*p));
    memset(&q, 0, sizeof(q));
    q.status = -1;
    q.from_ms = 10000;
    q.to_ms = 10001; /* i / 7 in {0, 1}: 14 certificates */
    q.limit = 100;
    assert_int_equal(hsmca_store_cert_list(c->st, "pai-8000", &q, on_row, p, &more), HSMCA_OK);
    assert_int_equal(p->rows, 14);
    assert_int_equal(more, 0);
    {
        struct hsmca_cert_rec r = cert(3, 0, NULL);

        assert_int_equal(hsmca_store_cert_revoke(c->st, "pai-8000", r.serial, 16, 20000, 1, 0),
                         HSMCA_OK);
        assert_int_equal(hsmca_store_cert_revoke(c->st, "pai-8000", r.serial, 16, 20001, 4, 0),
                         HSMCA_E_EXISTS);
        r = cert(2599, 0, NULL);
        assert_int_equal(hsmca_store_cert_revoke(c->st, "pai-8000", r.serial, 16, 20000, 1, 0),
                         HSMCA_E_NOT_FOUND);
    }
    memset(p, 0, sizeof(*p));
    q.status = 1;
    q.from_ms = 0;
    q.to_ms = INT64_MAX;
    q.with_der = 1;
    assert_int_equal(hsmca_store_cert_list(c->st, "pai-8000", &q, on_row, p, &more), HSMCA_OK);
    assert_int_equal(p->rows, 1);
    assert_int_equal(p->seen[3], 1);
    {
        struct hsmca_cert_rec r = cert(3, 0, NULL), got;

        assert_int_equal(hsmca_store_cert_get(c->st, "pai-8000", r.serial, 16, &got), HSMCA_OK);
        assert_true(got.revoked);
        assert_int_equal(got.revoked_ms, 20000);
        assert_int_equal(got.reason, 1); /* the second revocation changed nothing */
        hsmca_cert_rec_clear(&got);
    }
    free(p);
}

static void
crl_numbers_only_grow(void **state)
{
    struct ctx *c = *state;
    unsigned char der[4] = {0x30, 0x02, 0x05, 0x00};
    struct hsmca_crl_rec r = {5, 100, 200, der, sizeof(der)}, got;

    assert_int_equal(hsmca_store_crl_get(c->st, "pai-8000", &got), HSMCA_E_NOT_FOUND);
    assert_int_equal(hsmca_store_crl_put(c->st, "pai-8000", &r), HSMCA_OK);
    assert_int_equal(hsmca_store_crl_put(c->st, "pai-8000", &r), HSMCA_E_STORE_CONSTRAINT);
    r.number = 4;
    assert_int_equal(hsmca_store_crl_put(c->st, "pai-8000", &r), HSMCA_E_STORE_CONSTRAINT);
    r.number = 6;
    r.next_update = 300;
    assert_int_equal(hsmca_store_crl_put(c->st, "pai-8000", &r), HSMCA_OK);
    assert_int_equal(hsmca_store_crl_get(c->st, "pai-8000", &got), HSMCA_OK);
    assert_int_equal(got.number, 6);
    assert_int_equal(got.next_update, 300);
    assert_memory_equal(got.der, der, sizeof(der));
    hsmca_crl_rec_clear(&got);
    r.der = NULL;
    assert_int_equal(hsmca_store_crl_put(c->st, "pai-8000", &r), HSMCA_E_INVALID_ARG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cas_and_their_constraints, setup, teardown),
        cmocka_unit_test_setup_teardown(certificates_are_unique_per_issuer, setup, teardown),
        cmocka_unit_test_setup_teardown(inventory_pages_without_gaps_or_repeats, setup, teardown),
        cmocka_unit_test_setup_teardown(crl_numbers_only_grow, setup, teardown),
    };

    return cmocka_run_group_tests_name("store_certs", tests, NULL, NULL);
}
