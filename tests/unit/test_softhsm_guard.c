/* SPDX-License-Identifier: Apache-2.0
 *
 * test_softhsm_guard.c -- the SoftHSM guard (softhsm_guard.h) on a token directory laid out as
 * SoftHSM lays it out (no module needed): it finds a token's file by serial through SOFTHSM2_CONF,
 * keeps a verified copy before each rewrite, puts it back where a crash left the file empty or
 * missing, and leaves alone what is not SoftHSM's or not damaged. Also custody.c's reconcile rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hsmca/custody.h"
#include "hsmca/softhsm_guard.h"
#include "hsmca/util.h"

#include "fixture.h"

/* SoftHSM: the serial is characters 19..22 and 24..35 of the directory's UUID */
#define UUID "0a83ac18-c700-4e9f-345d-e5b3ac60b7a2"
#define SERIAL "345de5b3ac60b7a2"

struct gctx {
    char dir[256], conf[300], tokendir[300], live[400], backup[300], copy[400];
};

static void
put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *
get(const char *path)
{
    unsigned char *buf = NULL;
    size_t len = 0;

    if (hsmca_read_file(path, 1 << 20, &buf, &len) != HSMCA_OK)
        return NULL;
    buf = realloc(buf, len + 1);
    buf[len] = '\0';
    return (char *)buf;
}

static int
setup(void **state)
{
    struct gctx *g = calloc(1, sizeof(*g));
    char d[350];

    if (g == NULL || fx_tmpdir("guard", g->dir, sizeof(g->dir)) != 0)
        return -1;
    snprintf(g->tokendir, sizeof(g->tokendir), "%s/tokens", g->dir);
    snprintf(d, sizeof(d), "%s/" UUID, g->tokendir);
    if (mkdir(g->tokendir, 0700) != 0 || mkdir(d, 0700) != 0)
        return -1;
    snprintf(g->live, sizeof(g->live), "%s/token.object", d);
    put(g->live, "generation-1 token state");
    snprintf(g->conf, sizeof(g->conf), "%s/softhsm2.conf", g->dir);
    {
        FILE *f = fopen(g->conf, "w");

        if (f == NULL)
            return -1;
        fprintf(f, "# test\ndirectories.tokendir = %s \nobjectstore.backend = file\n", g->tokendir);
        fclose(f);
    }
    snprintf(g->backup, sizeof(g->backup), "%s/softhsm-backup", g->dir);
    snprintf(g->copy, sizeof(g->copy), "%s/" SERIAL ".object", g->backup);
    setenv("SOFTHSM2_CONF", g->conf, 1);
    *state = g;
    return 0;
}

static int
teardown(void **state)
{
    struct gctx *g = *state;

    fx_rmtree(g->dir);
    free(g);
    return 0;
}

static int restored_n;

static void
on_restored(void *arg, const char *serial)
{
    (void)arg;
    assert_string_equal(serial, SERIAL);
    restored_n++;
}

static void
copy_before_write_and_restore_after_crash(void **state)
{
    struct gctx *g = *state;
    struct hsmca_guard guard;
    struct stat sb;
    char *s;

    char store[320];

    /* hsmcad's and the ceremony's place: softhsm-backup/ beside the store */
    snprintf(store, sizeof(store), "%s/hsmca.db", g->dir);
    assert_int_equal(hsmca_guard_init_beside(&guard, store), HSMCA_OK);
    assert_string_equal(guard.backup_dir, g->backup);
    assert_int_equal(hsmca_guard_init(&guard, g->backup), HSMCA_OK);
    assert_string_equal(guard.tokendir, g->tokendir);
    assert_int_equal(stat(g->backup, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    /* before a rewrite: the copy is the file as it is */
    assert_int_equal(hsmca_guard_before_write(&guard, "hsmca-pai", SERIAL, "C_Login"), HSMCA_OK);
    s = get(g->copy);
    assert_non_null(s);
    assert_string_equal(s, "generation-1 token state");
    free(s);
    assert_int_equal(stat(g->copy, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* a later rewrite; the next copy follows it */
    put(g->live, "generation-2 token state");
    assert_int_equal(hsmca_guard_before_write(&guard, "hsmca-pai", SERIAL, "C_SetPIN"), HSMCA_OK);
    s = get(g->copy);
    assert_string_equal(s, "generation-2 token state");
    free(s);
    /* an intact file is never touched at start */
    restored_n = 0;
    put(g->live, "generation-3 token state");
    assert_int_equal(hsmca_guard_restore(&guard, on_restored, NULL), HSMCA_OK);
    assert_int_equal(restored_n, 0);
    s = get(g->live);
    assert_string_equal(s, "generation-3 token state");
    free(s);
    /* SoftHSM died between ftruncate and write: the copy comes back */
    assert_int_equal(truncate(g->live, 0), 0);
    assert_int_equal(hsmca_guard_restore(&guard, on_restored, NULL), HSMCA_OK);
    assert_int_equal(restored_n, 1);
    s = get(g->live);
    assert_string_equal(s, "generation-2 token state");
    free(s);
    /* and a missing file too */
    assert_int_equal(unlink(g->live), 0);
    assert_int_equal(hsmca_guard_restore(&guard, on_restored, NULL), HSMCA_OK);
    assert_int_equal(restored_n, 2);
    s = get(g->live);
    assert_string_equal(s, "generation-2 token state");
    free(s);
}

static void
refuses_without_a_copy_and_ignores_other_tokens(void **state)
{
    struct gctx *g = *state;
    struct hsmca_guard guard;
    struct stat sb;

    assert_int_equal(hsmca_guard_init(&guard, g->backup), HSMCA_OK);
    /* not a SoftHSM serial, or a serial with no directory here: not ours to guard */
    assert_int_equal(hsmca_guard_before_write(&guard, "hw", "ABC123", "C_Login"), HSMCA_OK);
    assert_int_equal(hsmca_guard_before_write(&guard, "x", "00000000000000ff", "C_Login"),
                     HSMCA_OK);
    assert_int_not_equal(stat(g->copy, &sb), 0);
    /* an empty token file is never taken as the copy: the call is refused */
    assert_int_equal(truncate(g->live, 0), 0);
    assert_int_equal(hsmca_guard_before_write(&guard, "hsmca-pai", SERIAL, "C_Login"), HSMCA_E_IO);
    put(g->live, "state");
    /* no place for the copy: refused rather than risk the token */
    assert_int_equal(chmod(g->backup, 0500), 0);
    if (geteuid() != 0) /* root writes anyway */
        assert_int_equal(hsmca_guard_before_write(&guard, "hsmca-pai", SERIAL, "C_Login"),
                         HSMCA_E_IO);
    assert_int_equal(chmod(g->backup, 0700), 0);
    /* no SoftHSM configuration: nothing to guard */
    setenv("SOFTHSM2_CONF", "/nonexistent/softhsm2.conf", 1);
    assert_int_equal(hsmca_guard_init(&guard, g->backup), HSMCA_E_NOT_FOUND);
    put(g->conf, "objectstore.backend = file\n");
    setenv("SOFTHSM2_CONF", g->conf, 1);
    assert_int_equal(hsmca_guard_init(&guard, g->backup), HSMCA_E_NOT_FOUND);
}

static void
reconcile_rule(void **state)
{
    (void)state;
    /* a rotation written ahead stands (its tokens keep both PINs reachable) */
    assert_int_equal(hsmca_custody_reconcile(NULL, 7, "quorum.epoch"), 1);
    /* anything else cut short did not complete */
    assert_int_equal(hsmca_custody_reconcile(NULL, 8, "ca.keygen"), 0);
    assert_int_equal(hsmca_custody_reconcile(NULL, 9, "quorum.rotate"), 0);
    assert_int_equal(hsmca_custody_reconcile(NULL, 9, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(copy_before_write_and_restore_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_without_a_copy_and_ignores_other_tokens, setup,
                                        teardown),
        cmocka_unit_test(reconcile_rule),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
