/* SPDX-License-Identifier: Apache-2.0
 *
 * batch_dir.c -- the directories the hsmca command works through (batch_dir.h): the CSR directory
 * of issue-batch and its output directory, and the drop directory of ceremony run.
 */
#include "batch_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hsmca/util.h"

#include "cli.h"

void
batch_count_reason(struct batch_tally *t, const char *code)
{
    size_t i;

    t->failed++;
    for (i = 0; i < t->nreasons; i++) {
        if (strcmp(t->reasons[i].code, code) == 0) {
            t->reasons[i].n++;
            return;
        }
    }
    if (t->nreasons < BATCH_REASONS_MAX) {
        snprintf(t->reasons[t->nreasons].code, sizeof(t->reasons[0].code), "%s", code);
        t->reasons[t->nreasons++].n = 1;
    } else {
        t->reasons[BATCH_REASONS_MAX - 1].n++; /* the rest share the last row */
    }
}

void
batch_progress(const struct batch_tally *t)
{
    unsigned long todo = t->total - t->skipped, k;
    unsigned width = 30, fill;

    if (!t->tty || todo == 0)
        return;
    fill = (unsigned)(t->done * width / todo);
    fprintf(stderr, "\r[");
    for (k = 0; k < width; k++)
        fputc(k < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %lu/%lu  issued %lu  replayed %lu  failed %lu", t->done, todo, t->issued,
            t->replayed, t->failed);
    fflush(stderr);
}

static int
stem_ok(const char *s, size_t n)
{
    return hsmca_word_ok(s, n, BATCH_STEM_MAX, 0, "._~:@+=-");
}

static int
cmp_item(const void *a, const void *b)
{
    return strcmp(((const struct batch_item *)a)->stem, ((const struct batch_item *)b)->stem);
}

int
batch_list_csrs(const char *dir, struct batch_item **out, size_t *n_out, struct batch_tally *t)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct batch_item *items = NULL;
    size_t n = 0, cap = 0;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        const char *dot = strrchr(de->d_name, '.');
        struct stat sb;
        char path[HSMCA_PATH_MAX + 1];
        size_t sl;

        if (de->d_name[0] == '.' || dot == NULL ||
            (strcmp(dot, ".csr") != 0 && strcmp(dot, ".pem") != 0 && strcmp(dot, ".der") != 0))
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
            stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        t->total++;
        sl = (size_t)(dot - de->d_name);
        if (!stem_ok(de->d_name, sl)) {
            fprintf(stderr,
                    "hsmca issue-batch: %s: the file name is not a valid request id "
                    "([A-Za-z0-9._~:@+=-], at most %d bytes)\n",
                    de->d_name, BATCH_STEM_MAX);
            batch_count_reason(t, "request-id-invalid");
            continue;
        }
        if (n == cap) {
            struct batch_item *ni;

            cap = cap ? cap * 2 : 256;
            ni = realloc(items, cap * sizeof(*items));
            if (ni == NULL) {
                free(items);
                closedir(d);
                return -1;
            }
            items = ni;
        }
        memcpy(items[n].stem, de->d_name, sl);
        items[n].stem[sl] = '\0';
        snprintf(items[n].path, sizeof(items[n].path), "%s", path);
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(items, n, sizeof(*items), cmp_item);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(items[i - 1].stem, items[i].stem) == 0) {
            fprintf(stderr, "hsmca issue-batch: two CSR files share the stem %s; rename one\n",
                    items[i].stem);
            free(items);
            return -2;
        }
    }
    *out = items;
    *n_out = n;
    return 0;
}

void
batch_item_failed(const char *out_dir, const struct batch_item *it, const char *code,
                  json_t *problem, struct batch_tally *t)
{
    char path[HSMCA_PATH_MAX + 1];
    char *txt = NULL;

    batch_count_reason(t, code);
    if (snprintf(path, sizeof(path), "%s/%s.err", out_dir, it->stem) >= (int)sizeof(path))
        return;
    if (problem != NULL) {
        txt = json_dumps(problem, JSON_COMPACT | JSON_SORT_KEYS);
    } else {
        json_t *p = json_pack("{s:s}", "code", code);

        txt = p != NULL ? json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(p);
    }
    if (txt != NULL) {
        size_t l = strlen(txt);

        if (cli_write_file(path, txt, l, 0, 0644, 1) != 0)
            fprintf(stderr, "\nhsmca issue-batch: cannot write %s: %s\n", path, strerror(errno));
    }
    free(txt);
}

void
batch_keep_receipt(struct batch_tally *t, json_t *receipt, const char *stem, json_t *serial)
{
    json_t *o;
    char *line;

    if (t->receipts_f == NULL || !json_is_integer(json_object_get(receipt, "seq")) ||
        !json_is_string(json_object_get(receipt, "entry_hash")))
        return;
    o = json_pack("{s:O, s:O, s:s}", "seq", json_object_get(receipt, "seq"), "entry_hash",
                  json_object_get(receipt, "entry_hash"), "request_id", stem);
    if (o != NULL && json_is_string(serial))
        json_object_set(o, "serial", serial);
    line = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (line != NULL && fprintf(t->receipts_f, "%s\n", line) > 0)
        t->receipts++;
    free(line);
    json_decref(o);
}

int
dir_each_new(const char *dir, const char *suffix, struct dir_seen *seen,
             int (*fn)(void *arg, const char *path, const char *name), void *arg)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t sl = strlen(suffix), i;
    int stop = 0;

    if (d == NULL)
        return -1;
    while (!stop && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        char path[HSMCA_PATH_MAX + 1];
        int dup = 0;

        if (n <= sl || strcmp(de->d_name + n - sl, suffix) != 0 || seen->n == DIR_SEEN_MAX)
            continue;
        for (i = 0; i < seen->n; i++)
            dup |= strcmp(seen->name[i], de->d_name) == 0;
        if (dup)
            continue;
        if ((seen->name[seen->n] = strdup(de->d_name)) == NULL)
            continue;
        seen->n++;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        stop = fn(arg, path, de->d_name);
    }
    closedir(d);
    return 0;
}

void
dir_seen_clear(struct dir_seen *seen)
{
    size_t i;

    for (i = 0; i < seen->n; i++)
        free(seen->name[i]);
    seen->n = 0;
}
