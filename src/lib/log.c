/* SPDX-License-Identifier: Apache-2.0
 *
 * log.c -- one-line operational logging to stderr with UTC millisecond timestamps.
 * Owns the current level. Never receives secrets; untrusted values arrive already escaped.
 */
#include "hsmca/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum hsmca_log_level min_level = HSMCA_LOG_INFO;
static int env_checked;

static const char *const names[] = {"debug", "info", "warn", "error"};

void
hsmca_log_set_level(enum hsmca_log_level level)
{
    min_level = level;
    env_checked = 1;
}

void
hsmca_log(enum hsmca_log_level level, const char *module, const char *event, const char *fmt, ...)
{
    char line[1024], ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;
    int n;

    if (!env_checked) {
        const char *e = getenv("HSMCA_LOG");

        if (e != NULL && strcmp(e, "debug") == 0)
            min_level = HSMCA_LOG_DEBUG;
        env_checked = 1;
    }
    if (level < min_level || level > HSMCA_LOG_ERROR)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s %s ", ts, now.tv_nsec / 1000000L,
                 names[level], module, event);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

char *
hsmca_log_escape(const void *in, size_t len, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = in;
    size_t i, o = 0;

    if (out == NULL || out_size == 0)
        return out;
    if (len > 64)
        len = 64;
    for (i = 0; i < len && p != NULL; i++) {
        unsigned char c = p[i];

        if (c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=') {
            if (o + 2 > out_size)
                break;
            out[o++] = (char)c;
        } else {
            if (o + 5 > out_size)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}
