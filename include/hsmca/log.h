/* SPDX-License-Identifier: Apache-2.0
 *
 * log.h -- the one operational log format: `time level module event key=value ...` on stderr
 * (STYLE 27), `<priority>level module event key=value ...` when stderr is the systemd journal.
 * Untrusted values go through hsmca_log_escape (cut to 64 bytes, CR/LF and controls escaped). The
 * audit chain is data, not this log. Never pass a secret to any function here.
 */
#ifndef HSMCA_LOG_H
#define HSMCA_LOG_H

#include <stddef.h>

enum hsmca_log_level { HSMCA_LOG_DEBUG = 0, HSMCA_LOG_INFO, HSMCA_LOG_WARN, HSMCA_LOG_ERROR };

/*
 * Whether stderr is connected to the systemd journal: JOURNAL_STREAM ("<dev>:<inode>", set by
 * systemd for a service whose output goes to the journal) names stderr's own device and inode
 * (systemd.exec(5)). Then each line starts with its syslog priority as sd-daemon(3) prefixes it
 * ("<3>" error, "<4>" warn, "<6>" info, "<7>" debug) and carries no timestamp (the journal keeps
 * its own); otherwise lines are plain. Decided at the first line; this re-reads the environment
 * and stderr and returns the decision (1 journal, 0 plain).
 */
int hsmca_log_detect_journal(void);

/* Set the lowest level written (default INFO; HSMCA_LOG=debug in the environment lowers it). */
void hsmca_log_set_level(enum hsmca_log_level level);

/* Write one line. fmt carries the key=value pairs; values from outside must be escaped first. */
void hsmca_log(enum hsmca_log_level level, const char *module, const char *event, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

/*
 * Copy in[0..len) into out (out_size >= 4*64+4 is always enough), cut to 64 input bytes, with
 * non-printable bytes, spaces, quotes and backslashes written as \xHH. Returns out.
 */
char *hsmca_log_escape(const void *in, size_t len, char *out, size_t out_size);

#endif
