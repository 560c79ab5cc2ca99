/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_audit_line.c -- libFuzzer target for what `hsmca audit verify` reads from an untrusted
 * extract: entry lines (the scanner) and checkpoint texts (the parser).
 * Invariants beyond "no crash": both are deterministic; an accepted line starts with
 * {"action": and ends with }, its spans lie inside the input, its seq is positive; an accepted
 * checkpoint re-encodes from its fields to exactly the input bytes (one text, one meaning).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsmca/audit.h"
#include "hsmca/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_line(const char *s, size_t n)
{
    struct hsmca_audit_line a, b;
    enum hsmca_err ra, rb;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ra = hsmca_audit_line_parse(s, n, &a, NULL);
    rb = hsmca_audit_line_parse(s, n, &b, NULL);
    if (ra != rb)
        abort();
    if (ra != HSMCA_OK) {
        if (ra != HSMCA_E_AUDIT_CHAIN)
            abort();
        return;
    }
    if (memcmp(&a, &b, sizeof(a)) != 0 || a.seq == 0)
        abort();
    if (n < 11 || memcmp(s, "{\"action\":", 10) != 0 || s[n - 1] != '}')
        abort();
    if (a.action < s || a.action + a.action_len > s + n || a.detail < s ||
        a.detail + a.detail_len > s + n || a.time < s || a.time + 24 > s + n || a.detail[0] != '{')
        abort();
}

static void
check_cp(const char *s, size_t n)
{
    struct hsmca_audit_cp_fields f;
    char text[1200], head[65], prev[65], key[65];
    int k;

    if (hsmca_audit_checkpoint_parse(s, n, &f) != HSMCA_OK)
        return;
    hsmca_hex_encode(f.head, 32, head, sizeof(head));
    hsmca_hex_encode(f.prev, 32, prev, sizeof(prev));
    hsmca_hex_encode(f.key, 32, key, sizeof(key));
    k = snprintf(text, sizeof(text),
                 "hsmca-checkpoint/v1\norigin %s\nsize %llu\nhead %s\ntime %s\nprev %s\nkey %s\n",
                 f.origin, (unsigned long long)f.size, head, f.time, prev, key);
    if (k < 0 || (size_t)k != n || memcmp(text, s, n) != 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl;

    if (size > HSMCA_AUDIT_LINE_MAX + 1)
        return 0;
    check_line(s, size);
    check_cp(s, size);
    /* a line with its LF, as in entries.jsonl */
    nl = memchr(s, '\n', size);
    if (nl != NULL)
        check_line(s, (size_t)(nl - s));
    return 0;
}
