/* SPDX-License-Identifier: Apache-2.0
 *
 * http_client.c -- the hsmca command's HTTPS client, on libcurl: one easy handle per client (so
 * one kept-alive connection, re-opened by libcurl when the server closed it), mutual TLS with the
 * client certificate and key, the server checked against the CA file and the URL's host name,
 * proxies from the usual environment variables (https_proxy, no_proxy), IPv6 literals, bounded
 * responses, no redirects, https only. A failure says what it was, where and why: the stable
 * code (connect-failed, tls-failed), the URL, libcurl's message (address and port included) and
 * the system's errno when there is one.
 */
#include "http_client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/gbuf.h"

struct http_client {
    CURL *h;
    char base[HTTP_URL_MAX + 1]; /* the URL without trailing slashes */
    int too_large;
    unsigned char *body;
    size_t len, cap;
    char errbuf[CURL_ERROR_SIZE];
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

/* The client certificate and key load and match: checked before any connection, so a wrong
 * file is named as such and not reported as a TLS failure. */
static int
check_pair(const char *cert, const char *key, char *why, size_t why_len)
{
    FILE *f;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    int ok = 0;

    f = fopen(cert, "re");
    if (f != NULL) {
        x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (x == NULL) {
        say(why, why_len, "cannot load the client certificate %s", cert);
        goto out;
    }
    f = fopen(key, "re");
    if (f != NULL) {
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (k == NULL || X509_check_private_key(x, k) != 1) {
        say(why, why_len, "cannot load the client key %s, or it does not match the certificate",
            key);
        goto out;
    }
    ok = 1;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    struct http_client *c = arg;
    size_t k = size * n;

    if (c->len + k > HTTP_RESPONSE_MAX) {
        c->too_large = 1;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    if (hsmca_grow(&c->body, &c->cap, c->len + k + 1, 1, HTTP_RESPONSE_MAX + 1) != HSMCA_OK)
        return 0;
    memcpy(c->body + c->len, p, k);
    c->len += k;
    return k;
}

enum hsmca_err
http_client_new(const struct http_client_config *cfg, struct http_client **out, char *why,
                size_t why_len)
{
    static int curl_ready;
    struct http_client *c = NULL;
    size_t n;
    FILE *f;

    if (cfg == NULL || cfg->url == NULL || cfg->cert == NULL || cfg->key == NULL ||
        cfg->cacert == NULL || out == NULL) {
        say(why, why_len, "--url, --cert, --key and --cacert are required");
        return HSMCA_E_INVALID_ARG;
    }
    n = strlen(cfg->url);
    if (n > HTTP_URL_MAX || strncmp(cfg->url, "https://", 8) != 0 || n == 8 ||
        strpbrk(cfg->url, " \t\r\n?#") != NULL) {
        say(why, why_len, "not an https://host[:port][/prefix] URL: %.300s", cfg->url);
        return HSMCA_E_INVALID_ARG;
    }
    f = fopen(cfg->cacert, "re");
    if (f == NULL) {
        say(why, why_len, "cannot load the CA certificates in %s: %s", cfg->cacert,
            strerror(errno));
        return HSMCA_E_IO;
    }
    fclose(f);
    if (!check_pair(cfg->cert, cfg->key, why, why_len))
        return HSMCA_E_IO;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return HSMCA_E_INTERNAL;
        curl_ready = 1;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return HSMCA_E_NOMEM;
    memcpy(c->base, cfg->url, n + 1);
    while (n > 8 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    c->h = curl_easy_init();
    if (c->h == NULL) {
        free(c);
        return HSMCA_E_NOMEM;
    }
    {
        long t = cfg->timeout_s > 0 ? cfg->timeout_s : 60;
        CURLcode e = CURLE_OK;

#define SET(o, v)                                                                                  \
    do {                                                                                           \
        if (e == CURLE_OK)                                                                         \
            e = curl_easy_setopt(c->h, o, v);                                                      \
    } while (0)
        SET(CURLOPT_PROTOCOLS_STR, "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_SSLCERT, cfg->cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY, cfg->key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
        SET(CURLOPT_CAINFO, cfg->cacert);
        SET(CURLOPT_CAPATH, NULL);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        SET(CURLOPT_CONNECTTIMEOUT, t);
        SET(CURLOPT_TIMEOUT, t);
        SET(CURLOPT_ERRORBUFFER, c->errbuf);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, c);
        SET(CURLOPT_USERAGENT, "hsmca/" HSMCA_VERSION);
#undef SET
        if (e != CURLE_OK) {
            say(why, why_len, "libcurl set-up failed: %s", curl_easy_strerror(e));
            http_client_free(c);
            return HSMCA_E_INTERNAL;
        }
    }
    *out = c;
    return HSMCA_OK;
}

void
http_client_free(struct http_client *c)
{
    if (c == NULL)
        return;
    if (c->h != NULL)
        curl_easy_cleanup(c->h);
    free(c->body);
    free(c);
}

static int
tls_error(CURLcode e)
{
    return e == CURLE_SSL_CONNECT_ERROR || e == CURLE_PEER_FAILED_VERIFICATION ||
           e == CURLE_SSL_CERTPROBLEM || e == CURLE_SSL_CIPHER || e == CURLE_SSL_CACERT_BADFILE ||
           e == CURLE_SSL_ISSUER_ERROR || e == CURLE_SSL_CRL_BADFILE ||
           e == CURLE_SSL_ENGINE_INITFAILED || e == CURLE_USE_SSL_FAILED;
}

enum hsmca_err
http_client_request(struct http_client *c, const char *method, const char *path,
                    const char *content_type, const char *accept, const void *body, size_t body_len,
                    struct http_response *out, char *why, size_t why_len)
{
    char url[HTTP_URL_MAX + 512], hdr[2][200];
    struct curl_slist *hl = NULL, *t;
    const char *ct = NULL;
    long status = 0, oserr = 0;
    enum hsmca_err rc = HSMCA_E_NOMEM;
    CURLcode e;
    size_t i;

    if (c == NULL || method == NULL || path == NULL || path[0] != '/' || out == NULL ||
        strlen(path) > 500 || (body == NULL && body_len > 0))
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    c->len = 0;
    c->too_large = 0;
    c->errbuf[0] = '\0';
    snprintf(hdr[0], sizeof(hdr[0]), "Accept: %s", accept != NULL ? accept : "*/*");
    snprintf(hdr[1], sizeof(hdr[1]), "Content-Type: %s",
             content_type != NULL ? content_type : "application/octet-stream");
    t = curl_slist_append(hl, hdr[0]);
    if (t == NULL)
        goto out;
    hl = t;
    if (body != NULL) {
        t = curl_slist_append(hl, hdr[1]);
        if (t == NULL)
            goto out;
        hl = t;
        /* no "Expect: 100-continue" round trip for a large body */
        t = curl_slist_append(hl, "Expect:");
        if (t == NULL)
            goto out;
        hl = t;
    }
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hl);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(c->h, CURLOPT_POST, 1L);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") == 0 ? NULL : method);
    }
    e = curl_easy_perform(c->h);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, NULL);
    if (e != CURLE_OK) {
        if (c->too_large) {
            rc = HSMCA_E_TOO_LARGE;
            say(why, why_len, "the response from %s is larger than %u bytes", c->base,
                HTTP_RESPONSE_MAX);
            goto out;
        }
        (void)curl_easy_getinfo(c->h, CURLINFO_OS_ERRNO, &oserr);
        rc = tls_error(e) ? HSMCA_E_TLS : HSMCA_E_CONNECT;
        if (oserr != 0)
            say(why, why_len, "%s: %s: %s (errno %ld: %s; curl %d)", hsmca_err_code(rc), url,
                c->errbuf[0] ? c->errbuf : curl_easy_strerror(e), oserr, strerror((int)oserr),
                (int)e);
        else
            say(why, why_len, "%s: %s: %s (curl %d)", hsmca_err_code(rc), url,
                c->errbuf[0] ? c->errbuf : curl_easy_strerror(e), (int)e);
        goto out;
    }
    (void)curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    (void)curl_easy_getinfo(c->h, CURLINFO_CONTENT_TYPE, &ct);
    out->status = (int)status;
    if (ct != NULL) {
        for (i = 0;
             i + 1 < sizeof(out->content_type) && ct[i] != '\0' && ct[i] != ';' && ct[i] != ' ';
             i++)
            out->content_type[i] = (char)tolower((unsigned char)ct[i]);
        out->content_type[i] = '\0';
    }
    if (c->body == NULL) {
        c->body = malloc(1);
        if (c->body == NULL)
            goto out;
        c->cap = 1;
    }
    c->body[c->len] = '\0';
    out->body = c->body;
    out->body_len = c->len;
    rc = HSMCA_OK;
out:
    curl_slist_free_all(hl);
    return rc;
}
