/* SPDX-License-Identifier: Apache-2.0
 *
 * log.h -- the one operational log format: `time level module event key=value ...` on stderr
 * (STYLE 27). Untrusted values go through hsmca_log_escape (cut to 64 bytes, CR/LF and controls
 * escaped). The audit chain is data, not this log. Never pass a secret to any function here.
 */
#ifndef HSMCA_LOG_H
#define HSMCA_LOG_H

#include <stddef.h>

enum hsmca_log_level { HSMCA_LOG_DEBUG = 0, HSMCA_LOG_INFO, HSMCA_LOG_WARN, HSMCA_LOG_ERROR };

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
