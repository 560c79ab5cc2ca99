/* SPDX-License-Identifier: Apache-2.0
 *
 * http_client.c -- HTTPS/1.1 over OpenSSL for the online subcommands (issue, issue-batch): one
 * connection kept alive across requests, client certificate, server verified against --cacert and
 * the URL's host. Owns the socket, the TLS state and one growable response buffer with a hard
 * limit. Never follows redirects and never logs bodies.
 */
#include "http_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "hsmca/util.h"

#define HEAD_MAX 16384

struct http_client {
    char host[256];
    char port[8];
    char prefix[HTTP_URL_MAX];
    int timeout_s;
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    unsigned char *buf; /* raw bytes read */
    size_t len, cap;
    unsigned char *body; /* decoded body */
    size_t body_cap;
};

static void say(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
say(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || why_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* https://host[:port][/prefix] */
static int
parse_url(struct http_client *c, const char *url)
{
    const char *p, *h, *he, *slash;
    size_t n;

    if (strncmp(url, "https://", 8) != 0 || strlen(url) >= HTTP_URL_MAX)
        return -1;
    p = url + 8;
    slash = strchr(p, '/');
    if (slash == NULL)
        slash = p + strlen(p);
    if (*p == '[') { /* IPv6 literal */
        h = p + 1;
        he = memchr(h, ']', (size_t)(slash - h));
        if (he == NULL)
            return -1;
        p = he + 1;
    } else {
        h = p;
        he = memchr(h, ':', (size_t)(slash - h));
        if (he == NULL)
            he = slash;
        p = he;
    }
    n = (size_t)(he - h);
    if (n == 0 || n >= sizeof(c->host) || memchr(h, '@', n) != NULL)
        return -1;
    memcpy(c->host, h, n);
    c->host[n] = '\0';
    if (*p == ':') {
        uint64_t port = 0;

        p++;
        if (hsmca_parse_u64(p, (size_t)(slash - p), 65535, &port) != HSMCA_OK || port == 0)
            return -1;
        snprintf(c->port, sizeof(c->port), "%u", (unsigned)port);
    } else if (p == slash) {
        snprintf(c->port, sizeof(c->port), "443");
    } else {
        return -1;
    }
    snprintf(c->prefix, sizeof(c->prefix), "%s", slash);
    n = strlen(c->prefix);
    while (n > 0 && c->prefix[n - 1] == '/')
        c->prefix[--n] = '\0';
    if (strpbrk(c->prefix, " \t\r\n?#") != NULL)
        return -1;
    return 0;
}

enum hsmca_err
http_client_new(const struct http_client_config *cfg, struct http_client **out, char *why,
                size_t why_len)
{
    struct http_client *c = NULL;
    enum hsmca_err rc = HSMCA_E_INVALID_ARG;

    if (cfg == NULL || cfg->url == NULL || cfg->cert == NULL || cfg->key == NULL ||
        cfg->cacert == NULL || out == NULL) {
        say(why, why_len, "--url, --cert, --key and --cacert are required");
        return HSMCA_E_INVALID_ARG;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return HSMCA_E_NOMEM;
    c->fd = -1;
    c->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 60;
    if (parse_url(c, cfg->url) != 0) {
        say(why, why_len, "not an https://host[:port][/prefix] URL: %s", cfg->url);
        goto out;
    }
    rc = HSMCA_E_NOMEM;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        goto out;
    rc = HSMCA_E_IO;
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(c->ctx, cfg->cacert, NULL) != 1) {
        say(why, why_len, "cannot load the CA certificates in %s", cfg->cacert);
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ctx, cfg->cert) != 1) {
        say(why, why_len, "cannot load the client certificate %s", cfg->cert);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ctx, cfg->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c->ctx) != 1) {
        say(why, why_len, "cannot load the client key %s, or it does not match the certificate",
            cfg->key);
        goto out;
    }
    *out = c;
    c = NULL;
    rc = HSMCA_OK;
out:
    ERR_clear_error();
    http_client_free(c);
    return rc;
}

static void
disconnect(struct http_client *c)
{
    if (c->ssl != NULL) {
        (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

void
http_client_free(struct http_client *c)
{
    if (c == NULL)
        return;
    disconnect(c);
    SSL_CTX_free(c->ctx);
    free(c->buf);
    free(c->body);
    free(c);
}

static enum hsmca_err
connect_tls(struct http_client *c, char *why, size_t why_len)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {c->timeout_s, 0};
    X509_VERIFY_PARAM *vp;
    int one = 1, e;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    e = getaddrinfo(c->host, c->port, &hints, &res);
    if (e != 0) {
        say(why, why_len, "cannot resolve %s", c->host);
        return HSMCA_E_IO;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd < 0)
            continue;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(c->fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        say(why, why_len, "cannot connect to %s", c->host);
        return HSMCA_E_IO;
    }
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        goto fail;
    vp = SSL_get0_param(c->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, c->host) != 1) {
        /* a name, not an address: check it and send it as SNI */
        if (X509_VERIFY_PARAM_set1_host(vp, c->host, 0) != 1 ||
            SSL_set_tlsext_host_name(c->ssl, c->host) != 1)
            goto fail;
    }
    if (SSL_connect(c->ssl) != 1) {
        long v = SSL_get_verify_result(c->ssl);

        if (v != X509_V_OK)
            say(why, why_len, "the server's certificate was refused: %s",
                X509_verify_cert_error_string(v));
        else
            say(why, why_len, "TLS handshake with %s failed", c->host);
        disconnect(c);
        ERR_clear_error();
        return HSMCA_E_IO;
    }
    return HSMCA_OK;
fail:
    say(why, why_len, "TLS set-up for %s failed", c->host);
    disconnect(c);
    ERR_clear_error();
    return HSMCA_E_IO;
}

static int
write_all(SSL *ssl, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    while (len > 0) {
        int n = SSL_write(ssl, p, len > 1u << 30 ? 1 << 30 : (int)len);

        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read more bytes into c->buf (at most HEAD_MAX + 2 * HTTP_RESPONSE_MAX in all). 0 on EOF, -1
 * on error or limit, else the count. */
static int
read_more(struct http_client *c)
{
    int n;

    if (c->cap - c->len < 16384) {
        size_t ncap = c->cap ? c->cap * 2 : 65536;
        unsigned char *nb;

        if (ncap > HEAD_MAX + 2 * (size_t)HTTP_RESPONSE_MAX + 65536)
            return -1;
        nb = realloc(c->buf, ncap + 1);
        if (nb == NULL)
            return -1;
        c->buf = nb;
        c->cap = ncap;
    }
    n = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
    if (n <= 0) {
        int e = SSL_get_error(c->ssl, n);

        ERR_clear_error();
        return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && n == 0) ? 0 : -1;
    }
    c->len += (size_t)n;
    return n;
}

/* Case-insensitive search for header name (with ':') in head[0..len); value trimmed. */
static int
header(const char *head, size_t len, const char *name, char *val, size_t val_max)
{
    size_t nl = strlen(name), i = 0;

    while (i < len) {
        const char *line = head + i, *eol = memchr(line, '\n', len - i);
        size_t ll = eol != NULL ? (size_t)(eol - line) : len - i;

        if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t vl = ll - nl - 1;

            while (vl > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            if (vl >= val_max)
                vl = val_max - 1;
            memcpy(val, v, vl);
            val[vl] = '\0';
            return 1;
        }
        i += ll + 1;
    }
    return 0;
}

static enum hsmca_err
body_put(struct http_client *c, size_t *blen, const unsigned char *p, size_t n)
{
    if (*blen + n > HTTP_RESPONSE_MAX)
        return HSMCA_E_TOO_LARGE;
    if (*blen + n + 1 > c->body_cap) {
        size_t ncap = c->body_cap ? c->body_cap : 65536;
        unsigned char *nb;

        while (ncap < *blen + n + 1)
            ncap *= 2;
        nb = realloc(c->body, ncap);
        if (nb == NULL)
            return HSMCA_E_NOMEM;
        c->body = nb;
        c->body_cap = ncap;
    }
    memcpy(c->body + *blen, p, n);
    *blen += n;
    c->body[*blen] = '\0';
    return HSMCA_OK;
}

/* Read one response. *got_any tells whether any byte arrived (for the reconnect rule). */
static enum hsmca_err
read_response(struct http_client *c, const char *method, struct http_response *out, int *got_any,
              int *close_after, char *why, size_t why_len)
{
    char val[128];
    unsigned char *e = NULL;
    size_t hdr_end = 0, blen = 0, pos;
    uint64_t clen = 0;
    int chunked = 0, has_len, n;
    enum hsmca_err rc;

    c->len = 0;
    *got_any = 0;
    while (e == NULL) {
        n = read_more(c);
        if (n <= 0) {
            say(why, why_len, "the connection to %s broke before the response ended", c->host);
            return HSMCA_E_IO;
        }
        *got_any = 1;
        e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (e == NULL && c->len > HEAD_MAX) {
            say(why, why_len, "response header from %s too long", c->host);
            return HSMCA_E_IO;
        }
    }
    hdr_end = (size_t)(e - c->buf) + 4;
    if (hdr_end < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0 || c->buf[8] != ' ' ||
        hsmca_parse_u64((const char *)c->buf + 9, 3, 599, &clen) != HSMCA_OK || clen < 100) {
        say(why, why_len, "not an HTTP/1.x response from %s", c->host);
        return HSMCA_E_IO;
    }
    out->status = (int)clen;
    clen = 0;
    out->content_type[0] = '\0';
    if (header((const char *)c->buf, hdr_end, "Content-Type", val, sizeof(val))) {
        size_t k;

        for (k = 0; val[k] != '\0' && val[k] != ';' && val[k] != ' '; k++)
            out->content_type[k] = (char)(val[k] >= 'A' && val[k] <= 'Z' ? val[k] + 32 : val[k]);
        out->content_type[k] = '\0';
    }
    *close_after = header((const char *)c->buf, hdr_end, "Connection", val, sizeof(val)) &&
                   strcasecmp(val, "close") == 0;
    if (header((const char *)c->buf, hdr_end, "Transfer-Encoding", val, sizeof(val)))
        chunked = strcasecmp(val, "chunked") == 0;
    has_len = header((const char *)c->buf, hdr_end, "Content-Length", val, sizeof(val));
    if (has_len && hsmca_parse_u64(val, strlen(val), HTTP_RESPONSE_MAX, &clen) != HSMCA_OK) {
        say(why, why_len, "bad or too large Content-Length from %s", c->host);
        return HSMCA_E_TOO_LARGE;
    }
    if (strcmp(method, "HEAD") == 0 || out->status == 204 || out->status == 304) {
        has_len = 1;
        clen = 0;
    }
    pos = hdr_end;
    if (chunked) {
        for (;;) {
            unsigned char *le;
            uint64_t sz = 0;
            size_t k;

            while ((le = memmem(c->buf + pos, c->len - pos, "\r\n", 2)) == NULL) {
                if (c->len - pos > 64 || read_more(c) <= 0)
                    goto broken;
            }
            for (k = 0; c->buf + pos + k < le && c->buf[pos + k] != ';'; k++) {
                unsigned char h = c->buf[pos + k];
                int d = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;

                if (d < 0 || k >= 8)
                    goto broken;
                sz = sz * 16 + (uint64_t)d;
            }
            if (k == 0)
                goto broken;
            pos = (size_t)(le - c->buf) + 2;
            if (sz > HTTP_RESPONSE_MAX)
                return HSMCA_E_TOO_LARGE;
            while (c->len - pos < sz + 2) {
                if (read_more(c) <= 0)
                    goto broken;
            }
            if (sz == 0)
                break; /* trailers are not used by hsmcad */
            rc = body_put(c, &blen, c->buf + pos, (size_t)sz);
            if (rc != HSMCA_OK)
                return rc;
            pos += (size_t)sz + 2;
            /* keep the buffer small: drop what is decoded */
            memmove(c->buf, c->buf + pos, c->len - pos);
            c->len -= pos;
            pos = 0;
        }
    } else if (has_len) {
        while (c->len - pos < clen) {
            if (read_more(c) <= 0)
                goto broken;
        }
        rc = body_put(c, &blen, c->buf + pos, (size_t)clen);
        if (rc != HSMCA_OK)
            return rc;
    } else {
        /* body until the server closes */
        for (;;) {
            n = read_more(c);
            if (n < 0)
                goto broken;
            if (n == 0)
                break;
        }
        rc = body_put(c, &blen, c->buf + pos, c->len - pos);
        if (rc != HSMCA_OK)
            return rc;
        *close_after = 1;
    }
    if (blen == 0) {
        rc = body_put(c, &blen, (const unsigned char *)"", 0);
        if (rc != HSMCA_OK)
            return rc;
    }
    out->body = c->body;
    out->body_len = blen;
    return HSMCA_OK;
broken:
    say(why, why_len, "the response from %s was cut short or malformed", c->host);
    return HSMCA_E_IO;
}

enum hsmca_err
http_client_request(struct http_client *c, const char *method, const char *path,
                    const char *content_type, const char *accept, const void *body, size_t body_len,
                    struct http_response *out, char *why, size_t why_len)
{
    char head[HTTP_URL_MAX + 1024];
    int n, attempt, got_any = 0, close_after = 0;
    enum hsmca_err rc = HSMCA_E_IO;

    if (c == NULL || method == NULL || path == NULL || path[0] != '/' || out == NULL ||
        strpbrk(path, " \r\n") != NULL)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    n = snprintf(head, sizeof(head),
                 "%s %s%s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: hsmca\r\nAccept: %s\r\n"
                 "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                 method, c->prefix, path, strchr(c->host, ':') != NULL ? "[" : "", c->host,
                 strchr(c->host, ':') != NULL ? "]" : "", accept != NULL ? accept : "*/*",
                 content_type != NULL ? content_type : "application/octet-stream", body_len);
    if (n < 0 || (size_t)n >= sizeof(head))
        return HSMCA_E_INVALID_ARG;
    for (attempt = 0; attempt < 2; attempt++) {
        int fresh = c->ssl == NULL;

        if (fresh) {
            rc = connect_tls(c, why, why_len);
            if (rc != HSMCA_OK)
                return rc;
        }
        if (write_all(c->ssl, head, (size_t)n) != 0 ||
            (body_len > 0 && write_all(c->ssl, body, body_len) != 0)) {
            disconnect(c);
            ERR_clear_error();
            say(why, why_len, "cannot send the request to %s", c->host);
            rc = HSMCA_E_IO;
            if (fresh)
                return rc;
            continue; /* the kept-alive connection was gone: once more on a new one */
        }
        rc = read_response(c, method, out, &got_any, &close_after, why, why_len);
        if (rc != HSMCA_OK || close_after)
            disconnect(c);
        if (rc == HSMCA_OK || fresh || got_any)
            return rc;
    }
    return rc;
}
