/* SPDX-License-Identifier: Apache-2.0
 *
 * tar_read.h -- unpack a downloaded audit extract (ustar) for the auditor's commands.
 */
#ifndef HSMCA_TAR_READ_H
#define HSMCA_TAR_READ_H

#include <stddef.h>
#include <stdio.h>

/* 1 when path is "-" (standard input) or a regular file (a tar, not an extract directory). */
int tar_is_archive(const char *path);

/*
 * Unpack the ustar archive read from in into a new private directory under $TMPDIR (or /tmp),
 * whose path goes to tmpdir; extract gets the directory holding the extract (the archive's one
 * top directory, e.g. hsmca-audit-extract/, else tmpdir itself). 0 on success; -1 with why set
 * and nothing left behind. The caller removes tmpdir with tar_extract_remove.
 */
int tar_extract(FILE *in, char *tmpdir, size_t tmpdir_len, char *extract, size_t extract_len,
                char *why, size_t why_len);

/* Remove the directory tar_extract made (and everything in it); empties dir. */
void tar_extract_remove(char *dir);

#endif
