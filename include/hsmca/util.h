/* SPDX-License-Identifier: Apache-2.0
 *
 * util.h -- small checked helpers for untrusted text: bounded number parsing (the only one allowed,
 * STYLE 26), hex encoding and decoding, PEM armour, file reading with a hard size limit, cond-wait
 * deadlines, the monotonic clock and the latency buckets of /metrics. Nothing here allocates except
 * hsmca_pem_armour and hsmca_read_file, whose results the caller frees.
 */
#ifndef HSMCA_UTIL_H
#define HSMCA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "hsmca/error.h"

/*
 * Parse s[0..len) as a decimal number <= max: digits only, no sign, no spaces, no leading zeros
 * (except "0" itself), 1..20 digits. On HSMCA_OK writes *out. Returns HSMCA_E_PARSE_NUMBER.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_parse_u64(const char *s, size_t len, uint64_t max,
                                               uint64_t *out);

/* The value of one hex digit (either case), or -1. */
int hsmca_hex_digit(char c);

/*
 * Parse s[0..len) as hexadecimal (upper or lower case, even length, no prefix) into
 * out[0..out_max). On HSMCA_OK writes *out_len. Returns HSMCA_E_BAD_ENCODING, HSMCA_E_TOO_LARGE.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_hex_decode(const char *s, size_t len, unsigned char *out,
                                                size_t out_max, size_t *out_len);

/* 1 when s is a CA id: 1..HSMCA_CA_ID_MAX of [a-z0-9-] (the store's, the API's and the CLI's). */
int hsmca_ca_id_valid(const char *s);

/*
 * 1 when s[0..n) is 1..max bytes, each an ASCII letter (only a-z when lower_only), a digit or one
 * of the characters of extra: the one check behind names, ids and path words.
 */
int hsmca_word_ok(const char *s, size_t n, size_t max, int lower_only, const char *extra);

/*
 * Exactly one X.509 certificate in in[0..len): a PEM CERTIFICATE block when in starts with
 * "-----BEGIN", else DER with no byte after it. NULL if not (OpenSSL's error queue is left as it
 * was). The caller frees the certificate.
 */
X509 *hsmca_x509_read(const unsigned char *in, size_t len);

/* The CLOCK_REALTIME time us microseconds from now, for pthread_cond_timedwait. */
struct timespec;
void hsmca_deadline_us(struct timespec *ts, uint64_t us);

/* CLOCK_MONOTONIC in microseconds, for measuring how long something took. */
uint64_t hsmca_mono_us(void);

/*
 * The one time stamp formatter (RFC 3339 / ISO 8601, UTC) of ms since the epoch (before the
 * epoch too): YYYY-MM-DDTHH:MM:SSZ, or YYYY-MM-DDTHH:MM:SS.mmmZ when millis is non-zero (the
 * audit log's and the log lines' form). Returns the length written into out[0..n); 0, with out
 * "" (n > 0), when n is too small or the time has no broken-down form.
 */
#define HSMCA_TIME_MAX 32 /* room for either form, year 9999 and beyond, and the NUL */
size_t hsmca_time_format(int64_t ms, int millis, char *out, size_t n);

/*
 * The buckets of every latency histogram in /metrics (requests, DAC signatures, audit commits):
 * their upper bounds in microseconds, 100 us to 10 s. Bucket HSMCA_LAT_NBUCKET counts the rest.
 */
#define HSMCA_LAT_NBUCKET 16
extern const uint64_t hsmca_lat_bound_us[HSMCA_LAT_NBUCKET];
/* The bucket of us microseconds: the first whose bound is >= us, else HSMCA_LAT_NBUCKET. */
unsigned hsmca_lat_bucket(uint64_t us);

/*
 * The PEM armour of len bytes of DER under label ("CERTIFICATE", "CERTIFICATE REQUEST"), laid out
 * as OpenSSL's PEM writer lays it out (base64 lines of 64 characters, a newline after each line),
 * in a new NUL-terminated string the caller frees with free(). The DER is not parsed. NULL if der
 * or label is NULL, len is 0 or over 1 MiB, or on allocation failure.
 */
char *hsmca_pem_armour(const char *label, const unsigned char *der, size_t len);

/* Write 2*len lowercase hex digits and a NUL into out (out_size >= 2*len+1). */
void hsmca_hex_encode(const unsigned char *in, size_t len, char *out, size_t out_size);

/*
 * Read the whole file at path, at most max bytes. On HSMCA_OK *buf_out is a new NUL-terminated
 * buffer (caller frees with free()) and *len_out its length without the NUL.
 * Returns HSMCA_E_IO, HSMCA_E_TOO_LARGE, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_read_file(const char *path, size_t max,
                                               unsigned char **buf_out, size_t *len_out);

/*
 * Load a policy file (config, bounds, profiles): read path (at most max bytes, as
 * hsmca_read_file) and return what parse(text, len, out, why, why_len) returns on its bytes.
 * When the file cannot be read: with what != NULL, why says "<what>cannot read <path>: <code>"
 * and the result is HSMCA_E_CONFIG_INVALID; with what == NULL, the read's own code.
 */
typedef enum hsmca_err (*hsmca_policy_parse_fn)(const char *text, size_t len, void *out, char *why,
                                                size_t why_len);
HSMCA_MUSTCHECK enum hsmca_err hsmca_policy_load(const char *path, size_t max,
                                                 hsmca_policy_parse_fn parse, void *out,
                                                 const char *what, char *why, size_t why_len);
/* Define name, the hsmca_policy_parse_fn of fn(text, len, type *out, why, why_len). */
#define HSMCA_POLICY_PARSER(name, fn, type)                                                        \
    static enum hsmca_err name(const char *text, size_t len, void *out, char *why, size_t why_len) \
    {                                                                                              \
        return fn(text, len, (type *)out, why, why_len);                                           \
    }

/*
 * A strict DER reader for small fixed-shape structures (CSRs, certificates hsmca builds): reads
 * one element of tag `tag` (low tag numbers only) with a minimal definite length of at most two
 * length bytes from [*p, end). On success returns 1, sets v/vlen to its contents, tlv/tlv_len
 * (if tlv is non-NULL) to the whole element, and advances *p past it; returns 0 otherwise.
 */
int hsmca_der_next(const unsigned char **p, const unsigned char *end, unsigned char tag,
                   const unsigned char **v, size_t *vlen, const unsigned char **tlv,
                   size_t *tlv_len);

#endif
