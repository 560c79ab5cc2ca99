/* SPDX-License-Identifier: Apache-2.0
 *
 * test_cli_issue.c -- `hsmca issue` and `hsmca issue-batch` against a canned HTTPS server in a
 * thread (mutual TLS with throwaway certificates made by the openssl command): the request shapes
 * the daemon must accept, keep-alive across batches, per-item results written as .pem/.err,
 * resumption (existing outputs skipped, replays counted), refusal of an untrusted server, and
 * refusal to overwrite an output.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "hsmca/util.h"

#include "fixture.h"

struct server {
    SSL_CTX *ctx;
    int lfd, port, stop;
    pthread_t th;
    char dac_pem[4096], pai_pem[4096];
    /* what it saw */
    int connections, requests;
    char last_path[256];
    json_t *seen_ids; /* request ids answered 201 before (their repeat is a replay) */
    json_t *last_body;
};

static char dir[512];

static void
run(const char *cmd)
{
    char out[8192];
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};

    if (fx_run(argv, out, sizeof(out)) != 0)
        fail_msg("%s: %s", cmd, out);
}

static void
put(const char *name, const void *data, size_t len)
{
    char path[700];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static int
exists(const char *name)
{
    char path[700];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static char *
slurp(const char *name)
{
    char path[700];
    unsigned char *buf = NULL;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(hsmca_read_file(path, 1 << 20, &buf, &len), HSMCA_OK);
    return (char *)buf;
}

/* ---------------------------------------------------------------- the canned server */

static void
respond(SSL *ssl, int status, const char *ctype, json_t *body)
{
    char *b = json_dumps(body, JSON_COMPACT);
    char head[512];
    int n;

    assert_non_null(b);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", status, ctype,
                 strlen(b));
    SSL_write(ssl, head, n);
    SSL_write(ssl, b, (int)strlen(b));
    free(b);
    json_decref(body);
}

static json_t *
problem(int status, const char *code)
{
    return json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", "about:blank", "title", "refused",
                     "status", status, "detail", "canned refusal", "code", code);
}

/* One item: "bad*" ids are refused, known ids replayed, the rest issued. */
static json_t *
answer_item(struct server *s, json_t *item, size_t index, int *status)
{
    const char *id = json_string_value(json_object_get(item, "request_id"));
    const char *csr = json_string_value(json_object_get(item, "csr"));

    if (id == NULL || csr == NULL || strncmp(csr, "-----BEGIN CERTIFICATE REQUEST-----\n", 36) ||
        strncmp(id, "bad", 3) == 0) {
        *status = 400;
        return json_pack("{s:I, s:i, s:o}", "index", (json_int_t)index, "status", 400, "problem",
                         problem(400, "csr-malformed"));
    }
    if (json_object_get(s->seen_ids, id) != NULL) {
        *status = 200;
        return json_pack("{s:I, s:i, s:s, s:s, s:b}", "index", (json_int_t)index, "status", 200,
                         "certificate", s->dac_pem, "serial", "0a0b", "replayed", 1);
    }
    json_object_set_new(s->seen_ids, id, json_true());
    *status = 201;
    return json_pack("{s:I, s:i, s:s, s:s}", "index", (json_int_t)index, "status", 201,
                     "certificate", s->dac_pem, "serial", "0a0b");
}

static void
handle(struct server *s, SSL *ssl, const char *path, const char *body, size_t len)
{
    json_t *req = json_loadb(body, len, 0, NULL);

    json_decref(s->last_body);
    s->last_body = json_incref(req);
    snprintf(s->last_path, sizeof(s->last_path), "%s", path);
    if (strcmp(path, "/prefix/v1/cas/pai-1/dacs/batch") == 0) {
        json_t *items = json_object_get(req, "items"), *res = json_array();
        size_t i;
        int st;

        for (i = 0; i < json_array_size(items); i++)
            json_array_append_new(res, answer_item(s, json_array_get(items, i), i, &st));
        respond(ssl, 200, "application/json",
                json_pack("{s:o, s:[s]}", "results", res, "chain", s->pai_pem));
    } else if (strcmp(path, "/prefix/v1/cas/pai-1/dacs") == 0) {
        const char *id = json_string_value(json_object_get(req, "request_id"));
        int st;
        json_t *one;

        if (json_is_true(json_object_get(req, "dry_run"))) {
            respond(ssl, 200, "application/json",
                    json_pack("{s:b, s:{s:s}, s:[]}", "ok", 1, "dac", "vid", "FFF1", "problems"));
        } else if (id != NULL && strcmp(id, "conflict") == 0) {
            respond(ssl, 409, "application/problem+json", problem(409, "request-id-conflict"));
        } else {
            one = answer_item(s, req, 0, &st);
            respond(ssl, st == 400 ? 400 : st,
                    st == 400 ? "application/problem+json" : "application/json",
                    st == 400 ? json_incref(json_object_get(one, "problem"))
                              : json_pack("{s:s, s:[s], s:s, s:{s:i, s:s}}", "certificate",
                                          s->dac_pem, "chain", s->pai_pem, "serial", "0a0b",
                                          "receipt", "seq", 42, "entry_hash", "00"));
            json_decref(one);
        }
    } else {
        respond(ssl, 404, "application/problem+json", problem(404, "not-found"));
    }
    json_decref(req);
}

static void *
serve(void *arg)
{
    struct server *s = arg;

    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        SSL *ssl;
        static char buf[1 << 22];
        size_t have = 0;

        if (fd < 0 || s->stop) {
            if (fd >= 0)
                close(fd);
            break;
        }
        ssl = SSL_new(s->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            SSL_free(ssl);
            close(fd);
            continue;
        }
        s->connections++;
        for (;;) {
            char *e, *cl, path[256];
            size_t hdr, clen;
            int n;

            e = memmem(buf, have, "\r\n\r\n", 4);
            if (e == NULL) {
                n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - have));
                if (n <= 0)
                    break;
                have += (size_t)n;
                continue;
            }
            hdr = (size_t)(e - buf) + 4;
            cl = memmem(buf, hdr, "Content-Length: ", 16);
            clen = 0;
            if (cl != NULL) {
                uint64_t v = 0;

                assert_int_equal(
                    hsmca_parse_u64(cl + 16, strspn(cl + 16, "0123456789"), sizeof(buf), &v),
                    HSMCA_OK);
                clen = (size_t)v;
            }
            while (have < hdr + clen) {
                n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - have));
                if (n <= 0)
                    goto done;
                have += (size_t)n;
            }
            {
                const char *sp = memchr(buf + 5, ' ', hdr - 5);

                if (memcmp(buf, "POST ", 5) != 0 || sp == NULL ||
                    (size_t)(sp - buf - 5) >= sizeof(path))
                    break;
                memcpy(path, buf + 5, (size_t)(sp - buf - 5));
                path[sp - buf - 5] = '\0';
            }
            assert_non_null(memmem(buf, hdr, "Accept: application/json", 24));
            assert_non_null(memmem(buf, hdr, "Content-Type: application/json", 30));
            s->requests++;
            handle(s, ssl, path, buf + hdr, clen);
            memmove(buf, buf + hdr + clen, have - hdr - clen);
            have -= hdr + clen;
        }
    done:
        SSL_shutdown(ssl);
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static void
pem_of(const char *name, char *out, size_t out_max)
{
    char *p = slurp(name);

    snprintf(out, out_max, "%s", p);
    free(p);
}

static void
server_start(struct server *s)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char path[700];

    memset(s, 0, sizeof(*s));
    s->seen_ids = json_object();
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    snprintf(path, sizeof(path), "%s/srv.pem", dir);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(s->ctx, path), 1);
    snprintf(path, sizeof(path), "%s/srv.key", dir);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(s->ctx, path, SSL_FILETYPE_PEM), 1);
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    assert_int_equal(SSL_CTX_load_verify_locations(s->ctx, path, NULL), 1);
    /* mutual TLS: no client certificate, no service */
    SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    pem_of("dac.pem", s->dac_pem, sizeof(s->dac_pem));
    pem_of("ca.pem", s->pai_pem, sizeof(s->pai_pem));
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
}

static void
server_stop(struct server *s)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    s->stop = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)s->port);
    (void)connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    pthread_join(s->th, NULL);
    close(s->lfd);
    SSL_CTX_free(s->ctx);
    json_decref(s->seen_ids);
    json_decref(s->last_body);
}

/* Run the hsmca binary with args (a shell fragment); returns its exit status, output in out. */
static int
hsmca(struct server *s, const char *args, char *out, size_t out_max)
{
    char cmd[4096];
    char *argv[] = {"sh", "-c", cmd, NULL};

    snprintf(cmd, sizeof(cmd),
             "cd '%s' && '%s' %s --url https://127.0.0.1:%d/prefix/ --cert cli.pem --key cli.key",
             dir, getenv("HSMCA_BIN"), args, s->port);
    return fx_run(argv, out, out_max);
}

static unsigned char *
csr_der(size_t *len)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *r = X509_REQ_new();
    unsigned char *der = NULL;
    int l;

    assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
    assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
    l = i2d_X509_REQ(r, &der);
    assert_true(l > 0);
    *len = (size_t)l;
    X509_REQ_free(r);
    EVP_PKEY_free(k);
    return der;
}

static int
setup(void **state)
{
    char cmd[2048];

    (void)state;
    assert_int_equal(fx_tmpdir("cli-issue", dir, sizeof(dir)), 0);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
             "-out ca.pem -subj /CN=test-ca -days 2 2>&1 && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
             "-out srv.csr -subj /CN=hsmcad 2>&1 && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile san.ext -out srv.pem 2>&1 && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cli.key "
             "-out cli.csr -subj /CN=operator-1 2>&1 && "
             "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -days 2 -out cli.pem 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout o.key "
             "-out other-ca.pem -subj /CN=other -days 2 2>&1 && cp cli.pem dac.pem",
             dir);
    run(cmd);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    fx_rmtree(dir);
    return 0;
}

/* ---------------------------------------------------------------- tests */

static void
usage_errors_exit_2(void **state)
{
    struct server s;
    char out[8192];

    (void)state;
    server_start(&s);
    assert_int_equal(hsmca(&s, "issue --help", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "usage: hsmca issue"));
    assert_int_equal(hsmca(&s, "issue-batch --help", out, sizeof(out)), 0);
    assert_int_equal(hsmca(&s, "issue --ca pai-1 --cacert ca.pem", out, sizeof(out)), 2);
    assert_int_equal(hsmca(&s, "issue --ca PAI/1 --csr x --cacert ca.pem", out, sizeof(out)), 2);
    assert_int_equal(
        hsmca(&s, "issue --ca pai-1 --csr x --cacert ca.pem --pid 8", out, sizeof(out)), 2);
    assert_int_equal(hsmca(&s,
                           "issue-batch --ca pai-1 --dir in --out o --cacert ca.pem --batch "
                           "1001",
                           out, sizeof(out)),
                     2);
    /* not a file: 1, and nothing reached the server */
    assert_int_equal(
        hsmca(&s, "issue --ca pai-1 --csr nonexistent --cacert ca.pem", out, sizeof(out)), 1);
    server_stop(&s);
    assert_int_equal(s.requests, 0);
}

static void
issue_one_writes_the_chain(void **state)
{
    struct server s;
    unsigned char *der;
    size_t len = 0;
    char out[8192], *pem;

    (void)state;
    der = csr_der(&len);
    put("one.der", der, len);
    OPENSSL_free(der);
    server_start(&s);
    assert_int_equal(hsmca(&s,
                           "issue --ca pai-1 --csr one.der --request-id r-1 --pid 8000 "
                           "--cacert ca.pem --out one-dac.pem",
                           out, sizeof(out)),
                     0);
    assert_non_null(strstr(out, "issued serial 0a0b receipt seq 42"));
    assert_string_equal(s.last_path, "/prefix/v1/cas/pai-1/dacs");
    /* the request the daemon must accept: {"csr": PEM, "request_id", "pid"} */
    assert_string_equal(json_string_value(json_object_get(s.last_body, "request_id")), "r-1");
    assert_string_equal(json_string_value(json_object_get(s.last_body, "pid")), "8000");
    assert_non_null(strstr(json_string_value(json_object_get(s.last_body, "csr")),
                           "-----BEGIN CERTIFICATE REQUEST-----\n"));
    pem = slurp("one-dac.pem");
    assert_int_equal(strncmp(pem, "-----BEGIN CERTIFICATE-----", 27), 0);
    assert_non_null(strstr(pem + 27, "-----BEGIN CERTIFICATE-----")); /* DAC, then the chain */
    free(pem);
    /* never overwrites without --force */
    assert_int_equal(hsmca(&s, "issue --ca pai-1 --csr one.der --cacert ca.pem --out one-dac.pem",
                           out, sizeof(out)),
                     1);
    assert_non_null(strstr(out, "--force"));
    /* a problem+json refusal is shown with its code */
    assert_int_equal(hsmca(&s,
                           "issue --ca pai-1 --csr one.der --request-id conflict --cacert ca.pem",
                           out, sizeof(out)),
                     1);
    assert_non_null(strstr(out, "HTTP 409: request-id-conflict"));
    /* dry run: the JSON document, to standard output */
    assert_int_equal(
        hsmca(&s, "issue --ca pai-1 --csr one.der --dry-run --cacert ca.pem", out, sizeof(out)), 0);
    assert_true(json_is_true(json_object_get(s.last_body, "dry_run")));
    assert_non_null(strstr(out, "\"ok\": true"));
    /* a server the CA file does not vouch for: nothing is sent */
    s.requests = 0;
    assert_int_equal(
        hsmca(&s, "issue --ca pai-1 --csr one.der --cacert other-ca.pem", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "tls-failed: https://127.0.0.1:"));
    assert_non_null(strstr(out, "certificate"));
    server_stop(&s);
    assert_int_equal(s.requests, 0);
}

static void
batch_is_resumable_and_keeps_the_connection(void **state)
{
    struct server s;
    unsigned char *der;
    size_t len = 0;
    char out[8192], path[700], *err;
    static const char *names[] = {"in/dev-a.csr", "in/dev-b.der", "in/dev-c.pem", "in/bad-1.csr"};
    size_t i;

    (void)state;
    snprintf(path, sizeof(path), "%s/in", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    for (i = 0; i < 4; i++) {
        der = csr_der(&len);
        if (i == 2) {
            BIO *b = BIO_new(BIO_s_mem());
            const unsigned char *p = der;
            X509_REQ *r = d2i_X509_REQ(NULL, &p, (long)len);
            char *pem;
            long pl;

            PEM_write_bio_X509_REQ(b, r);
            pl = BIO_get_mem_data(b, &pem);
            put(names[i], pem, (size_t)pl);
            X509_REQ_free(r);
            BIO_free(b);
        } else {
            put(names[i], der, len);
        }
        OPENSSL_free(der);
    }
    put("in/has space.csr", "x", 1); /* not a valid request id: reported, not sent */
    put("in/notes.txt", "x", 1);     /* not a CSR file: ignored */
    server_start(&s);
    assert_int_equal(hsmca(&s,
                           "issue-batch --ca pai-1 --dir in --out out --batch 2 --cacert ca.pem",
                           out, sizeof(out)),
                     1);
    assert_non_null(strstr(out, "csrs 5: issued 3, replayed 0, already done 0, failed 2"));
    assert_non_null(strstr(out, "failed 1: csr-malformed"));
    assert_non_null(strstr(out, "failed 1: request-id-invalid"));
    assert_int_equal(s.requests, 2);    /* 4 CSRs in batches of 2 */
    assert_int_equal(s.connections, 1); /* over one kept-alive connection */
    assert_string_equal(s.last_path, "/prefix/v1/cas/pai-1/dacs/batch");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(s.last_body, "items"), 1),
                                          "request_id")),
        "dev-c"); /* sorted by stem: bad-1, dev-a | dev-b, dev-c */
    assert_true(exists("out/dev-a.pem") && exists("out/dev-b.pem") && exists("out/dev-c.pem"));
    assert_false(exists("out/bad-1.pem"));
    err = slurp("out/bad-1.err");
    assert_non_null(strstr(err, "csr-malformed"));
    free(err);
    /* rerun: what exists is skipped, only the failed CSR goes out again */
    assert_int_equal(
        hsmca(&s, "issue-batch --ca pai-1 --dir in --out out --cacert ca.pem", out, sizeof(out)),
        1);
    assert_non_null(strstr(out, "issued 0, replayed 0, already done 3, failed 2"));
    assert_int_equal(s.requests, 3);
    assert_int_equal(json_array_size(json_object_get(s.last_body, "items")), 1);
    /* a lost output: the server replays the DAC for the same request id */
    snprintf(path, sizeof(path), "%s/out/dev-b.pem", dir);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/in/bad-1.csr", dir);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/in/has space.csr", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(
        hsmca(&s, "issue-batch --ca pai-1 --dir in --out out --cacert ca.pem", out, sizeof(out)),
        0);
    assert_non_null(strstr(out, "csrs 3: issued 0, replayed 1, already done 2, failed 0"));
    assert_true(exists("out/dev-b.pem"));
    server_stop(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(usage_errors_exit_2),
        cmocka_unit_test(issue_one_writes_the_chain),
        cmocka_unit_test(batch_is_resumable_and_keeps_the_connection),
    };

    return cmocka_run_group_tests_name("cli_issue", tests, setup, teardown);
}
