/* SPDX-License-Identifier: Apache-2.0
 *
 * publish.c -- the optional plain-HTTP listener for relying parties and the DCL, who fetch CRLs
 * without client certificates (docs/revocation.md). Off unless the config names publish_listen.
 * It serves GET and HEAD of three kinds of stable path and nothing else:
 *   /crl/{ca}.crl  the CA's latest CRL (DER, application/pkix-crl), an mDL IACA's too
 *   /ca/{ca}.crt   the CA's certificate (DER, application/pkix-cert)
 *   /ca/{ca}.pem   the same, PEM
 * with a strong ETag (SHA-256 of the body), Last-Modified (the CRL's thisUpdate, the CA's
 * creation) and 304 for If-None-Match / If-Modified-Since. It reads the store through its own
 * read-only handle, holds no key and writes nothing; requests are not audited (public data).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/sha.h>

#include "hsmca/log.h"
#include "hsmca/sizes.h"
#include "hsmca/store_mdl.h"
#include "hsmca/util.h"

#include "hsmcad.h"

#define PUBLISH_CONNECTIONS 256
#define PUBLISH_PER_IP 32
#define PUBLISH_TIMEOUT_S 10
#define PUBLISH_MAX_AGE_S 3600

struct hsmcad_publish {
    struct hsmcad *d;
    struct MHD_Daemon *mhd;
};

static void
http_date(int64_t t, char *out, size_t n)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t tt = (time_t)t;

    if (gmtime_r(&tt, &tm) == NULL) {
        snprintf(out, n, "Thu, 01 Jan 1970 00:00:00 GMT");
        return;
    }
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* An IMF-fixdate (RFC 9110 5.6.7), or -1. */
static int64_t
parse_http_date(const char *s)
{
    struct tm tm;
    const char *end;

    if (s == NULL)
        return -1;
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    return (int64_t)timegm(&tm);
}

static enum MHD_Result
send_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Split "/<dir>/<ca>.<ext>"; 0 on success. */
static int
split_path(const char *url, const char *dir, char *ca, size_t ca_len, const char **ext)
{
    size_t dl = strlen(dir), n;
    const char *dot;

    if (strncmp(url, dir, dl) != 0)
        return -1;
    url += dl;
    dot = strrchr(url, '.');
    if (dot == NULL || dot == url)
        return -1;
    n = (size_t)(dot - url);
    if (n >= ca_len)
        return -1;
    memcpy(ca, url, n);
    ca[n] = '\0';
    if (!hsmca_ca_id_valid(ca))
        return -1;
    *ext = dot + 1;
    return 0;
}

static enum MHD_Result
send_object(struct MHD_Connection *conn, int head, unsigned char *body, size_t len,
            const char *type, int64_t last_modified, int64_t expires)
{
    unsigned char h[HSMCA_SHA256_LEN];
    char etag[72], hex[HSMCA_SHA256_HEX_SIZE], lm[40], ex[40], cc[48];
    const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
    const char *ims = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-Modified-Since");
    int64_t now = hsmcad_now_ms() / 1000, max_age = PUBLISH_MAX_AGE_S;
    struct MHD_Response *resp;
    unsigned status = MHD_HTTP_OK;
    enum MHD_Result ret;

    SHA256(body, len, h);
    hsmca_hex_encode(h, 16, hex, sizeof(hex));
    snprintf(etag, sizeof(etag), "\"%s\"", hex);
    http_date(last_modified, lm, sizeof(lm));
    if (inm != NULL) {
        if (strstr(inm, etag) != NULL || strcmp(inm, "*") == 0)
            status = MHD_HTTP_NOT_MODIFIED;
    } else if (ims != NULL) {
        int64_t t = parse_http_date(ims);

        if (t >= 0 && last_modified <= t)
            status = MHD_HTTP_NOT_MODIFIED;
    }
    (void)head; /* libmicrohttpd sends a HEAD answer's headers only, Content-Length included */
    if (status == MHD_HTTP_NOT_MODIFIED) {
        free(body);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL)
            free(body);
    }
    if (resp == NULL)
        return MHD_NO;
    if (expires > 0) {
        http_date(expires, ex, sizeof(ex));
        MHD_add_response_header(resp, "Expires", ex);
        if (expires - now < max_age)
            max_age = expires > now ? expires - now : 0;
    }
    snprintf(cc, sizeof(cc), "public, max-age=%lld", (long long)max_age);
    MHD_add_response_header(resp, "Cache-Control", cc);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Last-Modified", lm);
    if (status == MHD_HTTP_OK)
        MHD_add_response_header(resp, "Content-Type", type);
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    static int marker;
    struct hsmcad_publish *p = cls;
    struct hsmca_store *ro;
    char ca[HSMCA_CA_ID_MAX + 1];
    const char *ext = NULL;
    int head;

    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* a body is read and dropped */
        return MHD_YES;
    }
    head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0)
        return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET or HEAD only\n");
    ro = hsmcad_ro(p->d);
    if (ro == NULL)
        return send_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "store unavailable\n");
    if (split_path(url, "/crl/", ca, sizeof(ca), &ext) == 0 && strcmp(ext, "crl") == 0) {
        struct hsmca_crl_rec crl;

        memset(&crl, 0, sizeof(crl));
        if (hsmca_store_crl_get(ro, ca, &crl) != HSMCA_OK &&
            hsmca_store_mdl_crl_get(ro, ca, &crl) != HSMCA_OK) /* an IACA's (docs/mdl.md) */
            return send_text(conn, MHD_HTTP_NOT_FOUND, "no CRL for this CA\n");
        return send_object(conn, head, crl.der, crl.der_len, "application/pkix-crl",
                           crl.this_update, crl.next_update);
    }
    if (split_path(url, "/ca/", ca, sizeof(ca), &ext) == 0 &&
        (strcmp(ext, "crt") == 0 || strcmp(ext, "pem") == 0)) {
        struct hsmca_ca_rec rec;
        unsigned char *body;
        size_t len;
        int64_t created;

        memset(&rec, 0, sizeof(rec));
        if (hsmca_store_ca_get(ro, ca, &rec) != HSMCA_OK || rec.cert_der == NULL) {
            hsmca_ca_rec_clear(&rec);
            return send_text(conn, MHD_HTTP_NOT_FOUND, "no such CA certificate\n");
        }
        created = rec.created_ms / 1000;
        if (strcmp(ext, "pem") == 0) {
            char *pem = hsmca_pem_armour("CERTIFICATE", rec.cert_der, rec.cert_len);

            hsmca_ca_rec_clear(&rec);
            if (pem == NULL)
                return send_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
            body = (unsigned char *)pem;
            len = strlen(pem);
            return send_object(conn, head, body, len, "application/x-pem-file", created, 0);
        }
        body = rec.cert_der;
        len = rec.cert_len;
        rec.cert_der = NULL;
        hsmca_ca_rec_clear(&rec);
        return send_object(conn, head, body, len, "application/pkix-cert", created, 0);
    }
    return send_text(conn, MHD_HTTP_NOT_FOUND, "only /crl/{ca}.crl and /ca/{ca}.crt|.pem\n");
}

enum hsmca_err
hsmcad_publish_start(struct hsmcad *d, const char *host, unsigned port, struct hsmcad_publish **out,
                     unsigned *port_out)
{
    struct hsmcad_publish *p;
    struct sockaddr_storage ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_EPOLL;
    const union MHD_DaemonInfo *di;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        flags |= MHD_USE_IPv6;
    } else {
        return HSMCA_E_LISTEN;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return HSMCA_E_NOMEM;
    p->d = d;
    p->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handler, p, MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)PUBLISH_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                              (unsigned)PUBLISH_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)PUBLISH_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                              (size_t)65536, MHD_OPTION_END);
    if (p->mhd == NULL) {
        hsmca_log(HSMCA_LOG_ERROR, "hsmcad", "publish-listen-failed", "host=%s port=%u", host,
                  port);
        free(p);
        return HSMCA_E_LISTEN;
    }
    di = MHD_get_daemon_info(p->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = di != NULL ? di->port : port;
    *out = p;
    return HSMCA_OK;
}

void
hsmcad_publish_stop(struct hsmcad_publish *p)
{
    if (p == NULL)
        return;
    MHD_stop_daemon(p->mhd);
    free(p);
}
