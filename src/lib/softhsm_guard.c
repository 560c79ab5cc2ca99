/* SPDX-License-Identifier: Apache-2.0
 *
 * softhsm_guard.c -- a verified copy of SoftHSM's token file before each in-place rewrite, put
 * back at start-up where a crash left the file empty (softhsm_guard.h, docs/custody.md).
 */
#include "hsmca/softhsm_guard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "hsmca/log.h"
#include "hsmca/sizes.h"
#include "hsmca/util.h"

#define TOKEN_FILE_MAX (1u << 20)
#define SERIAL_LEN 16
#define UUID_LEN 36

static const char *
trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

enum hsmca_err
hsmca_guard_init(struct hsmca_guard *g, const char *backup_dir)
{
    const char *conf = getenv("SOFTHSM2_CONF");
    char line[HSMCA_GUARD_PATH_MAX + 64];
    FILE *f;
    int found = 0;

    if (g == NULL || backup_dir == NULL || strlen(backup_dir) >= sizeof(g->backup_dir))
        return HSMCA_E_INVALID_ARG;
    memset(g, 0, sizeof(*g));
    f = fopen(conf != NULL && conf[0] != '\0' ? conf : "/etc/softhsm/softhsm2.conf", "r");
    if (f == NULL)
        return HSMCA_E_NOT_FOUND;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        char *eq = strchr(line, '=');
        const char *k, *v;

        if (line[0] == '#' || eq == NULL)
            continue;
        *eq = '\0';
        k = trim(line);
        v = trim(eq + 1);
        if (strcmp(k, "directories.tokendir") == 0 && v[0] != '\0' &&
            strlen(v) < sizeof(g->tokendir)) {
            memcpy(g->tokendir, v, strlen(v) + 1);
            found = 1;
        }
    }
    fclose(f);
    if (!found)
        return HSMCA_E_NOT_FOUND;
    memcpy(g->backup_dir, backup_dir, strlen(backup_dir) + 1);
    if (mkdir(backup_dir, 0700) != 0 && errno != EEXIST)
        return HSMCA_E_IO;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_guard_init_beside(struct hsmca_guard *g, const char *store_path)
{
    char dir[HSMCA_GUARD_PATH_MAX];
    const char *slash = store_path != NULL ? strrchr(store_path, '/') : NULL;

    if (store_path == NULL)
        return HSMCA_E_INVALID_ARG;
    if ((size_t)snprintf(dir, sizeof(dir), "%.*s/softhsm-backup",
                         slash != NULL ? (int)(slash - store_path) : 1,
                         slash != NULL ? store_path : ".") >= sizeof(dir))
        return HSMCA_E_INVALID_ARG;
    return hsmca_guard_init(g, dir);
}

static int
serial_ok(const char *serial)
{
    size_t i;

    if (serial == NULL || strlen(serial) != SERIAL_LEN)
        return 0;
    for (i = 0; i < SERIAL_LEN; i++) {
        char c = serial[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

/*
 * SoftHSM names a token's directory by a UUID and derives the serial from it: characters 19..22
 * and 24..35 (ObjectStore::newToken). Find the directory of serial under tokendir.
 */
static enum hsmca_err
token_path(const struct hsmca_guard *g, const char *serial, char *out, size_t n)
{
    DIR *d = opendir(g->tokendir);
    struct dirent *e;
    enum hsmca_err rc = HSMCA_E_NOT_FOUND;

    if (d == NULL)
        return HSMCA_E_NOT_FOUND;
    while ((e = readdir(d)) != NULL) {
        if (strlen(e->d_name) != UUID_LEN || memcmp(e->d_name + 19, serial, 4) != 0 ||
            memcmp(e->d_name + 24, serial + 4, SERIAL_LEN - 4) != 0)
            continue;
        if ((size_t)snprintf(out, n, "%s/%s/token.object", g->tokendir, e->d_name) < n)
            rc = HSMCA_OK;
        break;
    }
    closedir(d);
    return rc;
}

static enum hsmca_err
fsync_dir(const char *path)
{
    char dir[HSMCA_GUARD_PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd;
    enum hsmca_err rc = HSMCA_OK;

    if (slash == NULL || (size_t)(slash - path) >= sizeof(dir))
        return HSMCA_E_INVALID_ARG;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return HSMCA_E_IO;
    if (fsync(fd) != 0)
        rc = HSMCA_E_IO;
    close(fd);
    return rc;
}

/* Write buf to path durably: a temporary beside it, fsync, rename, fsync of the directory. */
static enum hsmca_err
write_durable(const char *path, const unsigned char *buf, size_t len)
{
    char tmp[HSMCA_GUARD_PATH_MAX + 8];
    size_t off = 0;
    int fd;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return HSMCA_E_INVALID_ARG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return HSMCA_E_IO;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return HSMCA_E_IO;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return HSMCA_E_IO;
    }
    return fsync_dir(path);
}

/* Copy src to dst durably and check the copy reads back with the same SHA-256. */
static enum hsmca_err
copy_verified(const char *src, const char *dst)
{
    unsigned char *a = NULL, *b = NULL, ha[HSMCA_SHA256_LEN], hb[HSMCA_SHA256_LEN];
    size_t alen = 0, blen = 0;
    enum hsmca_err rc;

    rc = hsmca_read_file(src, TOKEN_FILE_MAX, &a, &alen);
    if (rc == HSMCA_OK && alen == 0)
        rc = HSMCA_E_IO; /* never keep an empty file as the copy */
    if (rc == HSMCA_OK)
        rc = write_durable(dst, a, alen);
    if (rc == HSMCA_OK)
        rc = hsmca_read_file(dst, TOKEN_FILE_MAX, &b, &blen);
    if (rc == HSMCA_OK) {
        SHA256(a, alen, ha);
        SHA256(b, blen, hb);
        if (alen != blen || CRYPTO_memcmp(ha, hb, HSMCA_SHA256_LEN) != 0)
            rc = HSMCA_E_IO;
    }
    free(a);
    free(b);
    return rc;
}

enum hsmca_err
hsmca_guard_before_write(void *arg, const char *label, const char *serial, const char *what)
{
    const struct hsmca_guard *g = arg;
    char live[HSMCA_GUARD_PATH_MAX], copy[HSMCA_GUARD_PATH_MAX];
    enum hsmca_err rc;

    if (g == NULL || !serial_ok(serial))
        return HSMCA_OK; /* not a SoftHSM serial: not ours to guard */
    if (token_path(g, serial, live, sizeof(live)) != HSMCA_OK)
        return HSMCA_OK; /* a token of another module, or of another SoftHSM configuration */
    if ((size_t)snprintf(copy, sizeof(copy), "%s/%s.object", g->backup_dir, serial) >= sizeof(copy))
        return HSMCA_E_INVALID_ARG;
    rc = copy_verified(live, copy);
    if (rc != HSMCA_OK)
        hsmca_log(HSMCA_LOG_ERROR, "guard", "backup-failed",
                  "token=%s call=%s code=%s reason=\"no verified copy of the token file: the call "
                  "is refused rather than risk the token\"",
                  label, what, hsmca_err_code(rc));
    return rc;
}

enum hsmca_err
hsmca_guard_restore(const struct hsmca_guard *g, void (*restored)(void *arg, const char *serial),
                    void *arg)
{
    DIR *d;
    struct dirent *e;
    enum hsmca_err rc = HSMCA_OK;

    if (g == NULL)
        return HSMCA_E_INVALID_ARG;
    d = opendir(g->backup_dir);
    if (d == NULL)
        return HSMCA_OK;
    while ((e = readdir(d)) != NULL) {
        char serial[SERIAL_LEN + 1], live[HSMCA_GUARD_PATH_MAX], copy[HSMCA_GUARD_PATH_MAX];
        unsigned char *buf = NULL;
        size_t len = 0;
        struct stat sb;
        enum hsmca_err r;

        if (strlen(e->d_name) != SERIAL_LEN + 7 || strcmp(e->d_name + SERIAL_LEN, ".object") != 0)
            continue;
        memcpy(serial, e->d_name, SERIAL_LEN);
        serial[SERIAL_LEN] = '\0';
        if (!serial_ok(serial) || token_path(g, serial, live, sizeof(live)) != HSMCA_OK)
            continue;
        if (stat(live, &sb) == 0 && sb.st_size > 0)
            continue;
        if ((size_t)snprintf(copy, sizeof(copy), "%s/%s", g->backup_dir, e->d_name) >= sizeof(copy))
            continue;
        r = hsmca_read_file(copy, TOKEN_FILE_MAX, &buf, &len);
        if (r == HSMCA_OK && len == 0)
            r = HSMCA_E_IO;
        if (r == HSMCA_OK)
            r = write_durable(live, buf, len);
        free(buf);
        if (r != HSMCA_OK) {
            hsmca_log(HSMCA_LOG_ERROR, "guard", "restore-failed", "serial=%s code=%s", serial,
                      hsmca_err_code(r));
            if (rc == HSMCA_OK)
                rc = r;
            continue;
        }
        hsmca_log(HSMCA_LOG_WARN, "guard", "token-restored",
                  "serial=%s reason=\"the token file was empty after a crash; the verified copy "
                  "taken before the interrupted write is back\"",
                  serial);
        if (restored != NULL)
            restored(arg, serial);
    }
    closedir(d);
    return rc;
}
