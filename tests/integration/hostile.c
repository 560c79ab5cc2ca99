/* SPDX-License-Identifier: Apache-2.0
 *
 * hostile.c -- test helper playing a hostile client on the loopback (never used outside tests):
 *   hostile idle PORT N SECONDS ADDRS
 *     open N TCP connections to 127.0.0.1:PORT from ADDRS source addresses (127.0.0.2, .3, ...;
 *     one address when ADDRS is 1, and then 127.0.0.1 itself if ADDRS is 0), never send a byte,
 *     print "connected N" once all are open, hold them SECONDS, then print "closed-by-server K"
 *     (how many the daemon shut) and exit.
 *   hostile anon PORT N CAFILE [ADDRS]
 *     N TLS connections, each with a fresh self-signed P-256 client certificate, each sending
 *     GET /v1/cas (from 127.0.0.1, or from ADDRS source addresses 127.0.0.2, .3, ... in turn);
 *     print "status NNN COUNT" per status seen and "failed K" for connections that got no
 *     status line.
 * Every loop is bounded by N, and every wait by SECONDS or 5 s per connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "hsmca/util.h"

static unsigned
num(const char *s, uint64_t max)
{
    uint64_t v = 0;

    if (hsmca_parse_u64(s, strlen(s), max, &v) != HSMCA_OK) {
        fprintf(stderr, "hostile: bad number %s\n", s);
        exit(2);
    }
    return (unsigned)v;
}

static int
tcp_connect(unsigned port, const char *src)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    if (src != NULL) {
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        inet_pton(AF_INET, src, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
            close(fd);
            return -1;
        }
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
idle(unsigned port, unsigned n, unsigned seconds, unsigned addrs)
{
    int *fds = calloc(n, sizeof(int));
    struct rlimit rl;
    unsigned i, closed = 0;
    char src[32];
    time_t end;

    if (fds == NULL)
        return 1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n + 64) {
        rl.rlim_cur = rl.rlim_max < n + 64 ? rl.rlim_max : n + 64;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (i = 0; i < n; i++) {
        snprintf(src, sizeof(src), "127.0.0.%u", addrs == 0 ? 1 : 2 + i % addrs);
        fds[i] = tcp_connect(port, src);
        if (fds[i] < 0) {
            fprintf(stderr, "hostile: connect %u: %s\n", i, strerror(errno));
            return 1;
        }
    }
    printf("connected %u\n", n);
    fflush(stdout);
    end = time(NULL) + seconds;
    while (time(NULL) < end)
        sleep(1);
    for (i = 0; i < n; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};

        /* an idle client is sent nothing but a TLS alert and the end of the stream at its close
         * (or the end alone when it is evicted) */
        if (poll(&p, 1, 0) == 1)
            closed++;
        close(fds[i]);
    }
    printf("closed-by-server %u\n", closed);
    free(fds);
    return 0;
}

/* A fresh self-signed certificate on a fresh key, installed in ssl. */
static int
fresh_cert(SSL *ssl, unsigned i)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *nm = X509_NAME_new();
    char cn[32];
    int ok;

    snprintf(cn, sizeof(cn), "stranger-%u", i);
    ok = k != NULL && x != NULL && nm != NULL && X509_set_version(x, 2) == 1 &&
         ASN1_INTEGER_set(X509_get_serialNumber(x), (long)i + 1) == 1 &&
         X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ==
             1 &&
         X509_set_subject_name(x, nm) == 1 && X509_set_issuer_name(x, nm) == 1 &&
         X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL && X509_set_pubkey(x, k) == 1 &&
         X509_sign(x, k, EVP_sha256()) > 0 && SSL_use_certificate(ssl, x) == 1 &&
         SSL_use_PrivateKey(ssl, k) == 1;
    X509_NAME_free(nm);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

static int
anon(unsigned port, unsigned n, const char *cafile, unsigned addrs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    unsigned counts[600] = {0}, failed = 0, i;
    static const char req[] =
        "GET /v1/cas HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
        return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    for (i = 0; i < n; i++) {
        char src[32], buf[64];
        int fd, got = 0;
        SSL *ssl;
        unsigned st = 0;
        struct timeval tv = {5, 0};

        snprintf(src, sizeof(src), "127.0.0.%u", addrs == 0 ? 1 : 2 + i % addrs);
        fd = tcp_connect(port, addrs == 0 ? NULL : src);
        ssl = fd >= 0 ? SSL_new(ctx) : NULL;

        if (ssl == NULL || fresh_cert(ssl, i) != 0) {
            failed++;
            goto next;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1 || SSL_write(ssl, req, (int)sizeof(req) - 1) <= 0) {
            failed++;
            goto next;
        }
        while (got < 12) {
            int r = SSL_read(ssl, buf + got, (int)sizeof(buf) - 1 - got);

            if (r <= 0)
                break;
            got += r;
        }
        buf[got] = '\0';
        if (got >= 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0)
            st = (unsigned)(buf[9] - '0') * 100 + (unsigned)(buf[10] - '0') * 10 +
                 (unsigned)(buf[11] - '0');
        if (st >= 100 && st < 600)
            counts[st]++;
        else
            failed++;
    next:
        if (ssl != NULL) {
            SSL_shutdown(ssl);
            SSL_free(ssl);
        }
        if (fd >= 0)
            close(fd);
        ERR_clear_error();
    }
    for (i = 0; i < 600; i++) {
        if (counts[i] != 0)
            printf("status %u %u\n", i, counts[i]);
    }
    printf("failed %u\n", failed);
    SSL_CTX_free(ctx);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "idle") == 0)
        return idle(num(argv[2], 65535), num(argv[3], 100000), num(argv[4], 3600),
                    num(argv[5], 250));
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "anon") == 0)
        return anon(num(argv[2], 65535), num(argv[3], 100000), argv[4],
                    argc == 6 ? num(argv[5], 250) : 0);
    fprintf(stderr,
            "usage: hostile idle PORT N SECONDS ADDRS | hostile anon PORT N CAFILE [ADDRS]\n");
    return 2;
}
