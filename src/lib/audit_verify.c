/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_verify.c -- reading the audit log as an auditor does: a one-pass scanner for entry lines
 * (no JSON DOM on the hot path), the checkpoint text parser, and the offline verifier of extract
 * bundles (chain, checkpoints, anchor, the auditor's previous checkpoint, quorum operations).
 * Everything it reads is untrusted: bounded, never trusted for a length, refused rather than
 * repaired. Owns no state between calls.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "hsmca/audit.h"
#include "hsmca/limits.h"
#include "hsmca/util.h"

#include "audit_internal.h"

/* ---- the entry line scanner ---- */

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* 64 lowercase hex digits into out[32]. */
static int
hex32(const char *s, unsigned char out[32])
{
    int i;

    for (i = 0; i < 32; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static int
time_ok(const char *t)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    int i;

    for (i = 0; i < AUDIT_TIME_LEN; i++) {
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
        unsigned char c = (unsigned char)*p;

        if (c == '"') {
            *body_len = (size_t)(p - *body);
            *pp = p + 1;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
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
        p++;
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

enum hsmca_err
hsmca_audit_line_parse(const char *line, size_t len, struct hsmca_audit_line *out, const char **why)
{
    static const char *const keys[10] = {
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
        if ((size_t)(end - p) < klen[i] || memcmp(p, keys[i], klen[i]) != 0) {
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
            if (bl != 64 || hex32(b, l.prev) != 0) {
                *why = "prev is not 64 lowercase hex digits";
                return HSMCA_E_AUDIT_CHAIN;
            }
            break;
        case 9:
            if (bl != AUDIT_TIME_LEN || !time_ok(b)) {
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
    if (cp_field(&p, end, "head", &v, &vl) != 0 || vl != 64 || hex32(v, f.head) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    if (cp_field(&p, end, "time", &v, &vl) != 0 || vl != AUDIT_TIME_LEN || !time_ok(v))
        return HSMCA_E_AUDIT_CHECKPOINT;
    memcpy(f.time, v, vl);
    if (cp_field(&p, end, "prev", &v, &vl) != 0 || vl != 64 || hex32(v, f.prev) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    if (cp_field(&p, end, "key", &v, &vl) != 0 || vl != 64 || hex32(v, f.key) != 0)
        return HSMCA_E_AUDIT_CHECKPOINT;
    if (p != end)
        return HSMCA_E_AUDIT_CHECKPOINT;
    *out = f;
    return HSMCA_OK;
}
