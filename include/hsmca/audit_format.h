/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_format.h -- the audit log's formats and their checks, in one place
 * (src/lib/audit_format.c): the entry line (its scanner), the time stamp in it, the checkpoint text
 * (its parser), the audit key id and the checkpoint signature. Used by the writer (audit.c), the
 * offline verifier (audit_verify.c), the extract writer and whoever checks a checkpoint it was
 * shown (the quorum's witness). Depends on nothing of the log itself.
 */
#ifndef HSMCA_AUDIT_FORMAT_H
#define HSMCA_AUDIT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "hsmca/error.h"
#include "hsmca/sizes.h"

#define HSMCA_AUDIT_LINE_MAX 65536   /* one entry line, bytes */
#define HSMCA_AUDIT_DETAIL_MAX 60000 /* the detail object, bytes */
#define HSMCA_AUDIT_FIELD_MAX 256    /* actor, role, action, target, kid */
#define HSMCA_AUDIT_TIME_LEN 24      /* 2026-01-02T03:04:05.678Z */

/* Format ms since the epoch (negative: the epoch) as an entry's time: HSMCA_AUDIT_TIME_LEN
 * chars and a NUL into out[HSMCA_AUDIT_TIME_LEN + 1]. */
void hsmca_audit_time_format(int64_t ms, char *out);

/* Parse an entry's time (already checked by hsmca_audit_line_parse) back to ms since the epoch. */
int64_t hsmca_audit_time_parse(const char *t);

/* One entry line as the scanner sees it (pointers borrowed from the line). */
struct hsmca_audit_line {
    uint64_t seq;
    unsigned char prev[HSMCA_SHA256_LEN];
    const char *action; /* JSON string body, escapes not decoded */
    size_t action_len;
    const char *outcome;
    size_t outcome_len;
    const char *time;   /* AUDIT time, 24 chars */
    const char *detail; /* the detail object's bytes */
    size_t detail_len;
};

/*
 * Scan line[0..len) (no newline): one JSON object with exactly the ten keys in sorted order,
 * string values (seq a decimal number, detail an object), prev 64 lowercase hex, time
 * YYYY-MM-DDTHH:MM:SS.mmmZ. Does not decode detail. HSMCA_E_AUDIT_CHAIN with why set otherwise.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_line_parse(const char *line, size_t len,
                                                      struct hsmca_audit_line *out,
                                                      const char **why);

/* The fields of a checkpoint text (hsmca-checkpoint/v1). */
struct hsmca_audit_cp_fields {
    char origin[HSMCA_AUDIT_FIELD_MAX + 1];
    uint64_t size;
    unsigned char head[HSMCA_SHA256_LEN];
    char time[32];
    unsigned char prev[HSMCA_SHA256_LEN];
    unsigned char key[HSMCA_SHA256_LEN];
};
/* Parse exactly the seven LF-terminated lines. HSMCA_E_AUDIT_CHECKPOINT otherwise. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_checkpoint_parse(const char *text, size_t len,
                                                            struct hsmca_audit_cp_fields *out);

/* The audit key id: SHA-256 of pub's SubjectPublicKeyInfo DER (a checkpoint's "key" line). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_key_id(EVP_PKEY *pub,
                                                  unsigned char out[HSMCA_SHA256_LEN]);

/* Verify a DER ECDSA signature over SHA-256(data) with pub. HSMCA_E_AUDIT_CHECKPOINT_SIG. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_sig_verify(EVP_PKEY *pub, const void *data, size_t len,
                                                      const unsigned char *sig, size_t sig_len);

/*
 * Verify a signed checkpoint against the audit public key pub: text[0..text_len) is an
 * hsmca-checkpoint/v1 text (hsmca_audit_checkpoint_parse), its key line names pub
 * (hsmca_audit_key_id), and sig (DER ECDSA over SHA-256 of the text) verifies with pub. Fills
 * *out (if non-NULL) only on success. HSMCA_E_INVALID_ARG, HSMCA_E_AUDIT_CHECKPOINT (malformed,
 * or made for another key), HSMCA_E_AUDIT_CHECKPOINT_SIG (the signature does not verify).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_audit_checkpoint_verify(EVP_PKEY *pub, const char *text,
                                                             size_t text_len,
                                                             const unsigned char *sig,
                                                             size_t sig_len,
                                                             struct hsmca_audit_cp_fields *out);

#endif /* HSMCA_AUDIT_FORMAT_H */
