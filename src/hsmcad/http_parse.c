/* SPDX-License-Identifier: Apache-2.0
 *
 * http_parse.c -- route patterns and Accept headers (see http_parse.h). Reads only within the
 * NUL-terminated inputs, writes only within params; never allocates. Fuzzed by fuzz_route.c.
 */
#include "http_parse.h"

#include <string.h>
#include <strings.h>

#include "hsmca/util.h"

static int
param_ok(const char *s, size_t n)
{
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return 0; /* no dot segments, even though nothing here is a file name */
    return hsmca_word_ok(s, n, HSMCAD_PARAM_MAX, 0, "._~:@+=-");
}

int
hsmcad_route_match(const char *pattern, const char *url,
                   char params[HSMCAD_PARAMS_MAX][HSMCAD_PARAM_MAX + 1])
{
    const char *p = pattern, *u = url;
    unsigned np = 0;

    while (*p != '\0' && *u != '\0') {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            size_t n = strcspn(u, "/");

            if (pe == NULL || np >= HSMCAD_PARAMS_MAX || !param_ok(u, n))
                return 0;
            memcpy(params[np], u, n);
            params[np][n] = '\0';
            np++;
            p = pe + 1;
            u += n;
            continue;
        }
        if (*p != *u)
            return 0;
        p++;
        u++;
    }
    return *p == '\0' && *u == '\0';
}

static int
ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * The qvalue of "q=..." in the parameter list [s, end) of one media range (after its first ';'):
 * 0..HSMCAD_Q_MAX, HSMCAD_Q_MAX when there is none, -1 when it is malformed (RFC 9110 12.4.2:
 * "0" or "1", a dot and at most three digits, at most 1). Parameters before q are ignored, and so
 * are accept-ext parameters after it.
 */
static int
qvalue(const char *s, const char *end)
{
    while (s < end) {
        const char *semi = memchr(s, ';', (size_t)(end - s));
        const char *pe = semi != NULL ? semi : end;

        while (s < pe && ows(*s))
            s++;
        while (pe > s && ows(pe[-1]))
            pe--;
        if (pe - s >= 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
            const char *v = s + 2;
            int q, scale = 100, digits = 0;

            if (v >= pe || (*v != '0' && *v != '1'))
                return -1;
            q = (*v - '0') * HSMCAD_Q_MAX;
            v++;
            if (v < pe && *v == '.') {
                for (v++; v < pe && *v >= '0' && *v <= '9' && digits < 3; v++, digits++) {
                    q += (*v - '0') * scale;
                    scale /= 10;
                }
            }
            return v == pe && q <= HSMCAD_Q_MAX ? q : -1;
        }
        s = semi != NULL ? semi + 1 : end;
    }
    return HSMCAD_Q_MAX;
}

/* How specifically the media range [p, p+n) names type ("a/b", major part ml bytes long):
 * 3 exactly, 2 as a/star, 1 as star/star, 0 not at all. */
static int
specificity(const char *p, size_t n, const char *type, size_t tl, size_t ml)
{
    if (n == tl && strncasecmp(p, type, tl) == 0)
        return 3;
    if (n == ml + 2 && strncasecmp(p, type, ml) == 0 && memcmp(p + ml, "/*", 2) == 0)
        return 2;
    if (n == 3 && memcmp(p, "*/*", 3) == 0)
        return 1;
    return 0;
}

int
hsmcad_accept_quality(const char *accept, const char *type)
{
    const char *p, *slash = strchr(type, '/');
    size_t tl = strlen(type), ml = slash != NULL ? (size_t)(slash - type) : tl;
    int best_spec = 0, best_q = 0;

    if (accept == NULL)
        return HSMCAD_Q_MAX;
    for (p = accept; ows(*p); p++)
        ;
    if (*p == '\0')
        return HSMCAD_Q_MAX;
    while (*p != '\0') {
        const char *end = p + strcspn(p, ",");
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *re = semi != NULL ? semi : end;
        size_t n;
        int spec, q;

        while (p < re && ows(*p))
            p++;
        n = (size_t)(re - p);
        while (n > 0 && ows(p[n - 1]))
            n--;
        spec = specificity(p, n, type, tl, ml);
        if (spec > 0) {
            q = semi != NULL ? qvalue(semi + 1, end) : HSMCAD_Q_MAX;
            /* the most specific range decides; of two equally specific, the higher q */
            if (q >= 0 && (spec > best_spec || (spec == best_spec && q > best_q))) {
                best_spec = spec;
                best_q = q;
            }
        }
        p = *end == ',' ? end + 1 : end;
    }
    return best_q;
}

int
hsmcad_accept_pick(const char *accept, const char *const *types, unsigned n)
{
    int best = -1, best_q = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        int q = hsmcad_accept_quality(accept, types[i]);

        if (q > best_q) {
            best = (int)i;
            best_q = q;
        }
    }
    return best;
}

int
hsmcad_accepts(const char *accept, const char *type)
{
    return hsmcad_accept_quality(accept, type) > 0;
}
