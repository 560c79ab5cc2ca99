/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_format.c -- the audit log's formats and their checks (hsmca/audit_format.h), shared by
 * the writer (audit.c), the offline verifier (audit_verify.c), the extract writer and the
 * quorum's witness: a one-pass scanner for entry lines (no JSON DOM on the hot path), the time
 * stamp, the checkpoint text parser, the audit key id, checkpoint signatures. Everything it reads
 * is untrusted: bounded, never trusted for a length, refused rather than repaired. No state.
 */
#include "hsmca/audit_format.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "hsmca/sizes.h"
#include "hsmca/util.h"

/* ---- time stamps ---- */

void
hsmca_audit_time_format(int64_t ms, char *out)
{
    char tmp[HSMCA_TIME_MAX] = {0};

    (void)hsmca_time_format(ms < 0 ? 0 : ms, 1, tmp, sizeof(tmp));
    memcpy(out, tmp, HSMCA_AUDIT_TIME_LEN);
    out[HSMCA_AUDIT_TIME_LEN] = '\0';
}

int64_t
hsmca_audit_time_parse(const char *t)
{
    static const int off[7] = {0, 5, 8, 11, 14, 17, 20}, len[7] = {4, 2, 2, 2, 2, 2, 3};
    struct tm tm;
    int v[7], i, k;

    for (i = 0; i < 7; i++) {
        v[i] = 0;
        for (k = 0; k < len[i]; k++)
            v[i] = v[i] * 10 + (t[off[i] + k] - '0');
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    return (int64_t)timegm(&tm) * 1000 + v[6];
}

/* ---- the entry line scanner ---- */

/* Lowercase hex digit values, 0xff for anything else. */
static const unsigned char hexv[256] = {
    ['0'] = 0, ['1'] = 1, ['2'] = 2,  ['3'] = 3,  ['4'] = 4,  ['5'] = 5,  ['6'] = 6,  ['7'] = 7,
    ['8'] = 8, ['9'] = 9, ['a'] = 10, ['b'] = 11, ['c'] = 12, ['d'] = 13, ['e'] = 14, ['f'] = 15,
};
static const unsigned char ishex[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
};

/* HSMCA_SHA256_HEX_LEN lowercase hex digits into out. */
static int
hex32(const char *s, unsigned char out[HSMCA_SHA256_LEN])
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned bad = 0;
    int i;

    for (i = 0; i < HSMCA_SHA256_LEN; i++) {
        bad |= (unsigned)(ishex[u[2 * i]] & ishex[u[2 * i + 1]]) ^ 1u;
        out[i] = (unsigned char)(hexv[u[2 * i]] << 4 | hexv[u[2 * i + 1]]);
    }
    return bad ? -1 : 0;
}

/* Bytes that end the fast path inside a JSON string: quote, backslash, controls. */
static const unsigned char strstop[256] = {
    [0] = 1,  [1] = 1,  [2] = 1,  [3] = 1,  [4] = 1,  [5] = 1,   [6] = 1,    [7] = 1,  [8] = 1,
    [9] = 1,  [10] = 1, [11] = 1, [12] = 1, [13] = 1, [14] = 1,  [15] = 1,   [16] = 1, [17] = 1,
    [18] = 1, [19] = 1, [20] = 1, [21] = 1, [22] = 1, [23] = 1,  [24] = 1,   [25] = 1, [26] = 1,
    [27] = 1, [28] = 1, [29] = 1, [30] = 1, [31] = 1, ['"'] = 1, ['\\'] = 1,
};

static int
time_ok(const char *t)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    int i;

    for (i = 0; i < HSMCA_AUDIT_TIME_LEN; i++) {
        if (pat[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != pat[i])
            return 0;
    }
    return 1;
}

/* Skip a JSON string starting at *p (at the opening quote). Returns the body span. */
static int
skip_string(const char **pp, const char *end, const char **body, size_t *body_len)
{
    const char *p = *pp;

    if (p >= end || *p != '"')
        return -1;
    p++;
    *body = p;
    while (p < end) {
        unsigned char c;

        /* eight bytes at a time while none is a quote, a backslash or a control */
        while (end - p >= 8) {
            uint64_t x, q, b, l;

            memcpy(&x, p, 8);
            q = x ^ 0x2222222222222222ULL;
            b = x ^ 0x5c5c5c5c5c5c5c5cULL;
            q = (q - 0x0101010101010101ULL) & ~q;
            b = (b - 0x0101010101010101ULL) & ~b;
            l = (x - 0x2020202020202020ULL) & ~x;
            if ((q | b | l) & 0x8080808080808080ULL)
                break;
            p += 8;
        }
        while (p < end && !strstop[(unsigned char)*p])
            p++;
        if (p >= end)
            break;
        c = (unsigned char)*p;
        if (c == '"') {
            *body_len = (size_t)(p - *body);
            *pp = p + 1;
            return 0;
        }
        if (c < 0x20)
            return -1;
        {
            if (p + 1 >= end)
                return -1;
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;
            case 'u':
                if (end - p < 6 || !isxdigit((unsigned char)p[2]) ||
                    !isxdigit((unsigned char)p[3]) || !isxdigit((unsigned char)p[4]) ||
                    !isxdigit((unsigned char)p[5]))
                    return -1;
                p += 6;
                continue;
            default:
                return -1;
            }
        }
    }
    return -1;
}

/* Skip one JSON value (object/array nested to 64, strings, scalars) without building it. */
static int
skip_value(const char **pp, const char *end)
{
    const char *p = *pp, *b;
    size_t bl;
    char stack[64];
    int depth = 0;

    do {
        if (p >= end)
            return -1;
        if (*p == '{' || *p == '[') {
            if (depth == (int)sizeof(stack))
                return -1;
            stack[depth++] = *p == '{' ? '}' : ']';
            p++;
            continue;
        }
        if (*p == '}' || *p == ']') {
            if (depth == 0 || stack[depth - 1] != *p)
                return -1;
            depth--;
            p++;
            continue;
        }
        if (*p == '"') {
            if (skip_string(&p, end, &b, &bl) != 0)
                return -1;
            continue;
        }
        if (*p == ',' || *p == ':') {
            if (depth == 0)
                return -1;
            p++;
            continue;
        }
        /* scalar: number, true, false, null */
        if (!((*p >= '0' && *p <= '9') || *p == '-' || *p == 't' || *p == 'f' || *p == 'n'))
            return -1;
        while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ':')
            p++;
    } while (depth > 0);
    *pp = p;
    return 0;
}

/* p[0..n) == k[0..n) for 6 <= n <= 16 (p and k readable for max(n, 8) bytes), no libc call */
static int
key_eq(const char *p, const char *k, size_t n)
{
    uint64_t a, b, c, d;

    memcpy(&a, p, 8);
    memcpy(&b, k, 8);
    if (n <= 8) {
        uint64_t mask = n == 8 ? ~0ULL : ((1ULL << (8 * n)) - 1);

        return ((a ^ b) & mask) == 0;
    }
    memcpy(&c, p + n - 8, 8);
    memcpy(&d, k + n - 8, 8);
    return a == b && c == d;
}

enum hsmca_err
hsmca_audit_line_parse(const char *line, size_t len, struct hsmca_audit_line *out, const char **why)
{
    static const char keys[10][16] = {
        "\"action\":", "\"actor\":", "\"detail\":", "\"kid\":",    "\"outcome\":",
        "\"prev\":",   "\"role\":",  "\"seq\":",    "\"target\":", "\"time\":"};
    static const unsigned char klen[10] = {9, 8, 9, 6, 10, 7, 7, 6, 9, 7};
    const char *p = line, *end = line + len, *b;
    struct hsmca_audit_line l;
    const char *dummy;
    size_t bl;
    int i;

    if (why == NULL)
        why = &dummy;
    if (line == NULL || out == NULL) {
        *why = "no line";
        return HSMCA_E_AUDIT_CHAIN;
    }
    memset(&l, 0, sizeof(l));
    if (len > HSMCA_AUDIT_LINE_MAX) {
        *why = "line longer than 65536 bytes";
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (p >= end || *p != '{') {
        *why = "not a JSON object";
        return HSMCA_E_AUDIT_CHAIN;
    }
    p++;
    for (i = 0; i < 10; i++) {
        if (i > 0) {
            if (p >= end || *p != ',') {
                *why = "not compact sorted-key JSON with the ten entry keys";
                return HSMCA_E_AUDIT_CHAIN;
            }
            p++;
        }
        if ((size_t)(end - p) < 8 || (size_t)(end - p) < klen[i] || !key_eq(p, keys[i], klen[i])) {
            *why = "not compact sorted-key JSON with the ten entry keys";
            return HSMCA_E_AUDIT_CHAIN;
        }
        p += klen[i];
        if (i == 2) { /* detail */
            b = p;
            if (p >= end || *p != '{' || skip_value(&p, end) != 0) {
                *why = "detail is not a JSON object";
                return HSMCA_E_AUDIT_CHAIN;
            }
            l.detail = b;
            l.detail_len = (size_t)(p - b);
            continue;
        }
        if (i == 7) { /* seq */
            b = p;
            while (p < end && *p >= '0' && *p <= '9')
                p++;
            if (hsmca_parse_u64(b, (size_t)(p - b), INT64_MAX, &l.seq) != HSMCA_OK || l.seq == 0) {
                *why = "seq is not a positive decimal number";
                return HSMCA_E_AUDIT_CHAIN;
            }
            continue;
        }
        if (skip_string(&p, end, &b, &bl) != 0) {
            *why = "a value is not a valid JSON string";
            return HSMCA_E_AUDIT_CHAIN;
        }
        switch (i) {
        case 0:
            l.action = b;
            l.action_len = bl;
            break;
        case 4:
            l.outcome = b;
            l.outcome_len = bl;
            break;
        case 5:
            if (bl != HSMCA_SHA256_HEX_LEN || hex32(b, l.prev) != 0) {
                *why = "prev is not 64 lowercase hex digits";
                return HSMCA_E_AUDIT_CHAIN;
            }
            break;
        case 9:
            if (bl != HSMCA_AUDIT_TIME_LEN || !time_ok(b)) {
                *why = "time is not YYYY-MM-DDTHH:MM:SS.mmmZ";
                return HSMCA_E_AUDIT_CHAIN;
            }
            l.time = b;
            break;
        default:
            break;
        }
    }
    if (p >= end || *p != '}' || p + 1 != end) {
        *why = "bytes after the entry object";
        return HSMCA_E_AUDIT_CHAIN;
    }
    *out = l;
    return HSMCA_OK;
}

/* ---- checkpoint text ---- */

/* Match "<name> <value>\n" at *pp; value span out. */
static int
cp_field(const char **pp, const char *end, const char *name, const char **v, size_t *vl)
{
    const char *p = *pp, *nl;
    size_t n = strlen(name);

    if ((size_t)(end - p) < n + 1 || memcmp(p, name, n) != 0 || p[n] != ' ')
        return -1;
    p += n + 1;
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
        return -1;
    *v = p;
    *vl = (size_t)(nl - p);
    *pp = nl + 1;
    return 0;
}

enum hsmca_err
hsmca_audit_checkpoint_parse(const char *text, size_t len, struct hsmca_audit_cp_fields *out)
{
    static const char magic[] = "hsmca-checkpoint/v1\n";
    struct hsmca_audit_cp_fields f;
    const char *p = text, *end = text + len, *v;
    size_t vl, i;

    if (text == NULL || out == NULL || len > 1024 || len < sizeof(magic) - 1 ||
        memcmp(text, magic, sizeof(magic) - 1) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    memset(&f, 0, sizeof(f));
    p += sizeof(magic) - 1;
    if (cp_field(&p, end, "origin", &v, &vl) != 0 || vl == 0 || vl > HSMCA_AUDIT_FIELD_MAX)
        return HSMCA_E_AUDIT_CHECKPOINT;
    for (i = 0; i < vl; i++) {
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return HSMCA_E_AUDIT_CHECKPOINT;
    }
    memcpy(f.origin, v, vl);
    if (cp_field(&p, end, "size", &v, &vl) != 0 ||
        hsmca_parse_u64(v, vl, INT64_MAX, &f.size) != HSMCA_OK || f.size == 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    if (cp_field(&p, end, "head", &v, &vl) != 0 || vl != HSMCA_SHA256_HEX_LEN ||
        hex32(v, f.head) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    if (cp_field(&p, end, "time", &v, &vl) != 0 || vl != HSMCA_AUDIT_TIME_LEN || !time_ok(v))
        return HSMCA_E_AUDIT_CHECKPOINT;
    memcpy(f.time, v, vl);
    if (cp_field(&p, end, "prev", &v, &vl) != 0 || vl != HSMCA_SHA256_HEX_LEN ||
        hex32(v, f.prev) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    if (cp_field(&p, end, "key", &v, &vl) != 0 || vl != HSMCA_SHA256_HEX_LEN ||
        hex32(v, f.key) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    if (p != end)
        return HSMCA_E_AUDIT_CHECKPOINT;
    *out = f;
    return HSMCA_OK;
}

/* ---- the audit key and checkpoint signatures ---- */

enum hsmca_err
hsmca_audit_key_id(EVP_PKEY *pub, unsigned char out[HSMCA_SHA256_LEN])
{
    unsigned char *der = NULL;
    int n;

    n = i2d_PUBKEY(pub, &der);
    if (n <= 0)
        return HSMCA_E_INTERNAL;
    if (EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL) != 1) {
        OPENSSL_free(der);
        return HSMCA_E_INTERNAL;
    }
    OPENSSL_free(der);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_audit_sig_verify(EVP_PKEY *pub, const void *data, size_t len, const unsigned char *sig,
                       size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    if (ctx == NULL)
        return HSMCA_E_NOMEM;
    ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1 &&
         EVP_DigestVerify(ctx, sig, sig_len, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? HSMCA_OK : HSMCA_E_AUDIT_CHECKPOINT_SIG;
}

/* ---- signed checkpoints ---- */

enum hsmca_err
hsmca_audit_checkpoint_verify(EVP_PKEY *pub, const char *text, size_t text_len,
                              const unsigned char *sig, size_t sig_len,
                              struct hsmca_audit_cp_fields *out)
{
    struct hsmca_audit_cp_fields f;
    unsigned char kid[HSMCA_SHA256_LEN];
    enum hsmca_err rc;

    if (pub == NULL || text == NULL || sig == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_audit_checkpoint_parse(text, text_len, &f);
    if (rc != HSMCA_OK)
        return rc;
    rc = hsmca_audit_key_id(pub, kid);
    if (rc != HSMCA_OK)
        return rc;
    if (CRYPTO_memcmp(kid, f.key, sizeof(kid)) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT; /* made for another audit key */
    rc = hsmca_audit_sig_verify(pub, text, text_len, sig, sig_len);
    if (rc != HSMCA_OK)
        return rc;
    if (out != NULL)
        *out = f;
    return HSMCA_OK;
}
