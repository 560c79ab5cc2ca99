/* SPDX-License-Identifier: Apache-2.0
 *
 * batch_dir.h -- the directories the hsmca command works through: the CSR directory of
 * `hsmca issue-batch` (one CSR per file, the file stem its request id; the DACs, refusals and
 * receipts written beside each other in the output directory, with a tally for the progress line
 * and the summary), and the drop directory `hsmca ceremony run` watches for approval files.
 */
#ifndef HSMCA_CLI_BATCH_DIR_H
#define HSMCA_CLI_BATCH_DIR_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "hsmca/limits.h"

#define BATCH_STEM_MAX HSMCA_REQUEST_ID_MAX
#define BATCH_REASONS_MAX 32

/* One CSR file: its stem (the request id) and path. */
struct batch_item {
    char stem[BATCH_STEM_MAX + 1];
    char path[HSMCA_PATH_MAX + 1];
};

struct batch_reason {
    char code[64];
    unsigned long n;
};

/* What a run did so far. */
struct batch_tally {
    unsigned long total, skipped, issued, replayed, failed, done, receipts;
    FILE *receipts_f; /* OUT/receipts.jsonl, appended: one {seq, entry_hash, ...} per DAC */
    struct batch_reason reasons[BATCH_REASONS_MAX];
    size_t nreasons;
    int tty;
    time_t started;
};

/*
 * The CSR files (*.csr, *.pem, *.der) of dir, sorted by stem, into *out (free()). Files whose stem
 * is no valid request id are reported on stderr and counted as failed. Returns 0, -1 (dir
 * unreadable, errno set; or out of memory), -2 (two files share a stem; said on stderr).
 */
int batch_list_csrs(const char *dir, struct batch_item **out, size_t *n_out, struct batch_tally *t);
/* One more failure with code (the rest share the last row once BATCH_REASONS_MAX codes exist). */
void batch_count_reason(struct batch_tally *t, const char *code);
/* The progress line on a terminal (nothing otherwise). */
void batch_progress(const struct batch_tally *t);
/* Record one failed item: OUT/STEM.err holds the problem (or {"code"}), and the tally. */
void batch_item_failed(const char *out_dir, const struct batch_item *it, const char *code,
                       json_t *problem, struct batch_tally *t);
/* Append a DAC's audit receipt to OUT/receipts.jsonl (hsmca audit check-receipts reads it):
 * {"entry_hash", "request_id", "seq", "serial"}, compact, sorted keys. */
void batch_keep_receipt(struct batch_tally *t, json_t *receipt, const char *stem, json_t *serial);

/* ---- a drop directory ---- */

#define DIR_SEEN_MAX 64

/* The files of a drop directory already handed out (at most DIR_SEEN_MAX). */
struct dir_seen {
    char *name[DIR_SEEN_MAX];
    size_t n;
};

/*
 * Call fn(arg, path, name) for each file of dir named <something><suffix> not handed out before
 * (new names beyond DIR_SEEN_MAX are ignored), until fn returns nonzero. Returns 0, or -1 when
 * dir cannot be read.
 */
int dir_each_new(const char *dir, const char *suffix, struct dir_seen *seen,
                 int (*fn)(void *arg, const char *path, const char *name), void *arg);
void dir_seen_clear(struct dir_seen *seen);

#endif
