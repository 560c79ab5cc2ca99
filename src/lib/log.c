/* SPDX-License-Identifier: Apache-2.0
 *
 * log.c -- one-line operational logging to stderr with UTC millisecond timestamps, or with
 * sd-daemon(3) priority prefixes when stderr is the systemd journal (JOURNAL_STREAM).
 * Owns the current level. Never receives secrets; untrusted values arrive already escaped.
 */
#include "hsmca/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hsmca/util.h"

static enum hsmca_log_level min_level = HSMCA_LOG_INFO;
static int env_checked;

static const char *const names[] = {"debug", "info", "warn", "error"};
/* syslog priorities of the levels (LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR) */
static const char prio[] = {'7', '6', '4', '3'};
static int journal = -1; /* -1 not decided yet */

int
hsmca_log_detect_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    const char *colon = e != NULL ? strchr(e, ':') : NULL;
    uint64_t dev = 0, ino = 0;
    struct stat st;
    int on = 0;

    if (colon != NULL && hsmca_parse_u64(e, (size_t)(colon - e), UINT64_MAX, &dev) == HSMCA_OK &&
        hsmca_parse_u64(colon + 1, strlen(colon + 1), UINT64_MAX, &ino) == HSMCA_OK &&
        fstat(STDERR_FILENO, &st) == 0)
        on = (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
    __atomic_store_n(&journal, on, __ATOMIC_RELAXED);
    return on;
}

void
hsmca_log_set_level(enum hsmca_log_level level)
{
    min_level = level;
    env_checked = 1;
}

void
hsmca_log(enum hsmca_log_level level, const char *module, const char *event, const char *fmt, ...)
{
    char line[1024], ts[HSMCA_TIME_MAX];
    struct timespec now;
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
    if (__atomic_load_n(&journal, __ATOMIC_RELAXED) < 0)
        hsmca_log_detect_journal();
    if (__atomic_load_n(&journal, __ATOMIC_RELAXED) == 1) {
        n = snprintf(line, sizeof(line), "<%c>%s %s %s ", prio[level], names[level], module, event);
    } else {
        clock_gettime(CLOCK_REALTIME, &now);
        hsmca_time_format((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, 1, ts, sizeof(ts));
        n = snprintf(line, sizeof(line), "%s %s %s %s ", ts, names[level], module, event);
    }
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
