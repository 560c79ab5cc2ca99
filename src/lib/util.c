/* SPDX-License-Identifier: Apache-2.0
 *
 * util.c -- bounded parsers and encoders for untrusted text, and a size-capped file reader.
 * Owns nothing beyond the buffer it returns from hsmca_read_file. Never trusts a length it did not
 * check.
 */
#include "hsmca/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/gbuf.h"
#include "hsmca/limits.h"

enum hsmca_err
hsmca_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (s == NULL || out == NULL || len == 0 || len > 20)
        return HSMCA_E_PARSE_NUMBER;
    if (len > 1 && s[0] == '0')
        return HSMCA_E_PARSE_NUMBER;
    for (i = 0; i < len; i++) {
        unsigned d;

        if (s[i] < '0' || s[i] > '9')
            return HSMCA_E_PARSE_NUMBER;
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return HSMCA_E_PARSE_NUMBER;
        v = v * 10 + d;
    }
    if (v > max)
        return HSMCA_E_PARSE_NUMBER;
    *out = v;
    return HSMCA_OK;
}

int
hsmca_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum hsmca_err
hsmca_hex_decode(const char *s, size_t len, unsigned char *out, size_t out_max, size_t *out_len)
{
    size_t i;

    if (s == NULL || out_len == NULL || (out == NULL && len > 0))
        return HSMCA_E_INVALID_ARG;
    if (len % 2 != 0)
        return HSMCA_E_BAD_ENCODING;
    if (len / 2 > out_max)
        return HSMCA_E_TOO_LARGE;
    for (i = 0; i < len; i += 2) {
        int hi = hsmca_hex_digit(s[i]);
        int lo = hsmca_hex_digit(s[i + 1]);

        if (hi < 0 || lo < 0)
            return HSMCA_E_BAD_ENCODING;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    *out_len = len / 2;
    return HSMCA_OK;
}

char *
hsmca_pem_armour(const char *label, const unsigned char *der, size_t len)
{
    size_t ll, cap, o, i;
    char *s;

    if (label == NULL || der == NULL || len == 0 || len > 1u << 20)
        return NULL;
    ll = strlen(label);
    if (ll > 64)
        return NULL;
    /* "-----BEGIN " label "-----\n" (17 + ll), 65 characters per 48 bytes of DER, "-----END "
     * label "-----\n" (15 + ll) and the NUL, written straight into the result: no BIO, no growth */
    cap = 17 + ll + (len + 47) / 48 * 65 + 15 + ll + 1;
    s = malloc(cap);
    if (s == NULL)
        return NULL;
    o = (size_t)snprintf(s, cap, "-----BEGIN %s-----\n", label);
    for (i = 0; i < len; i += 48) {
        size_t n = len - i < 48 ? len - i : 48;

        o += (size_t)EVP_EncodeBlock((unsigned char *)s + o, der + i, (int)n);
        s[o++] = '\n';
    }
    snprintf(s + o, cap - o, "-----END %s-----\n", label);
    return s;
}

void
hsmca_deadline_us(struct timespec *ts, uint64_t us)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(us / 1000000u);
    ts->tv_nsec += (long)(us % 1000000u) * 1000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

uint64_t
hsmca_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const uint64_t hsmca_lat_bound_us[HSMCA_LAT_NBUCKET] = {
    100,   250,    500,    1000,   2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

unsigned
hsmca_lat_bucket(uint64_t us)
{
    unsigned b;

    for (b = 0; b < HSMCA_LAT_NBUCKET && us > hsmca_lat_bound_us[b]; b++)
        ;
    return b;
}

int
hsmca_word_ok(const char *s, size_t n, size_t max, int lower_only, const char *extra)
{
    size_t i;

    if (s == NULL || n == 0 || n > max)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (!lower_only && c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || (c != '\0' && strchr(extra, c) != NULL)))
            return 0;
    }
    return 1;
}

int
hsmca_ca_id_valid(const char *s)
{
    return s != NULL && hsmca_word_ok(s, strlen(s), HSMCA_CA_ID_MAX, 1, "-");
}

void
hsmca_hex_encode(const unsigned char *in, size_t len, char *out, size_t out_size)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    if (out == NULL || out_size == 0)
        return;
    if (out_size < 2 * len + 1)
        len = (out_size - 1) / 2;
    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

enum hsmca_err
hsmca_policy_load(const char *path, size_t max, hsmca_policy_parse_fn parse, void *out,
                  const char *what, char *why, size_t why_len)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    enum hsmca_err rc = hsmca_read_file(path, max, &buf, &len);

    if (rc != HSMCA_OK) {
        if (what == NULL)
            return rc;
        snprintf(why, why_len, "%scannot read %s: %s", what, path, hsmca_err_code(rc));
        return HSMCA_E_CONFIG_INVALID;
    }
    rc = parse((const char *)buf, len, out, why, why_len);
    free(buf);
    return rc;
}

enum hsmca_err
hsmca_read_file(const char *path, size_t max, unsigned char **buf_out, size_t *len_out)
{
    struct hsmca_gbuf b;
    int fd;

    if (path == NULL || buf_out == NULL || len_out == NULL)
        return HSMCA_E_INVALID_ARG;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return HSMCA_E_IO;
    hsmca_gbuf_init(&b, max);
    hsmca_gbuf_read_fd(&b, fd);
    close(fd);
    *buf_out = hsmca_gbuf_take(&b, len_out);
    return b.err;
}

int
hsmca_der_next(const unsigned char **pp, const unsigned char *end, unsigned char tag,
               const unsigned char **v, size_t *vlen, const unsigned char **tlv, size_t *tlv_len)
{
    const unsigned char *p = *pp;
    size_t len;

    if (p > end || end - p < 2 || p[0] != tag)
        return 0;
    if (p[1] < 0x80) {
        len = p[1];
        p += 2;
    } else if (p[1] == 0x81) {
        if (end - p < 3 || p[2] < 0x80)
            return 0;
        len = p[2];
        p += 3;
    } else if (p[1] == 0x82) {
        if (end - p < 4 || p[2] == 0)
            return 0;
        len = (size_t)p[2] << 8 | p[3];
        p += 4;
    } else {
        return 0; /* indefinite, or longer than anything read this way */
    }
    if ((size_t)(end - p) < len)
        return 0;
    if (tlv != NULL) {
        *tlv = *pp;
        *tlv_len = (size_t)(p + len - *pp);
    }
    *v = p;
    *vlen = len;
    *pp = p + len;
    return 1;
}

size_t
hsmca_time_format(int64_t ms, int millis, char *out, size_t n)
{
    int64_t sec = ms / 1000, rem = ms % 1000;
    time_t t;
    struct tm tm;
    int len;

    if (out == NULL || n == 0)
        return 0;
    out[0] = '\0';
    if (rem < 0) { /* floor: -1 ms is 23:59:59.999 of the day before the epoch */
        rem += 1000;
        sec--;
    }
    t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL)
        return 0;
    if (millis)
        len = snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
    else
        len = snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (len < 0 || (size_t)len >= n) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)len;
}

X509 *
hsmca_x509_read(const unsigned char *in, size_t len)
{
    X509 *x = NULL;

    if (in == NULL || len == 0 || len > INT_MAX)
        return NULL;
    ERR_set_mark();
    if (len > 10 && memcmp(in, "-----BEGIN", 10) == 0) {
        BIO *b = BIO_new_mem_buf(in, (int)len);

        x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    } else {
        const unsigned char *p = in;

        x = d2i_X509(NULL, &p, (long)len);
        if (x != NULL && p != in + len) {
            X509_free(x);
            x = NULL;
        }
    }
    ERR_pop_to_mark();
    return x;
}
