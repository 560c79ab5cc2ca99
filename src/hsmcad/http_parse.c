/* SPDX-License-Identifier: Apache-2.0
 *
 * http_parse.c -- route patterns and Accept headers (see http_parse.h). Reads only within the
 * NUL-terminated inputs, writes only within params; never allocates. Fuzzed by fuzz_route.c.
 */
#include "http_parse.h"

#include <string.h>
#include <strings.h>

static int
param_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > HSMCAD_PARAM_MAX || (n == 1 && s[0] == '.') ||
        (n == 2 && s[0] == '.' && s[1] == '.'))
        return 0; /* no dot segments, even though nothing here is a file name */
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr("._~:@+=-", c) != NULL)))
            return 0;
    }
    return 1;
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

/* Is the parameter list [s, end) of one media range a q=0? */
static int
q_zero(const char *s, const char *end)
{
    while (s < end) {
        const char *semi = memchr(s, ';', (size_t)(end - s));
        const char *pe = semi != NULL ? semi : end;

        while (s < pe && (*s == ' ' || *s == '\t'))
            s++;
        if (pe - s >= 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
            const char *v = s + 2;

            while (v < pe && (*v == '0' || *v == '.'))
                v++;
            while (v < pe && (*v == ' ' || *v == '\t'))
                v++;
            return v == pe;
        }
        s = semi != NULL ? semi + 1 : end;
    }
    return 0;
}

int
hsmcad_accepts(const char *accept, const char *type)
{
    const char *p, *slash = strchr(type, '/');
    size_t tl = strlen(type), ml = slash != NULL ? (size_t)(slash - type) : tl;

    if (accept == NULL || accept[0] == '\0')
        return 1;
    p = accept;
    while (*p != '\0') {
        const char *end = p + strcspn(p, ",");
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *re = semi != NULL ? semi : end;
        size_t n;

        while (p < re && (*p == ' ' || *p == '\t'))
            p++;
        n = (size_t)(re - p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (((n == 3 && memcmp(p, "*/*", 3) == 0) || (n == tl && strncasecmp(p, type, tl) == 0) ||
             (n == ml + 2 && strncasecmp(p, type, ml) == 0 && memcmp(p + ml, "/*", 2) == 0)) &&
            !(semi != NULL && q_zero(semi + 1, end)))
            return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}
