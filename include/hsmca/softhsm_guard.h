/* SPDX-License-Identifier: Apache-2.0
 *
 * softhsm_guard.h -- SoftHSM 2.6 rewrites a token's state file in place: ftruncate(0), then one
 * buffered write (src/lib/object_store/ObjectFile.cpp, writeAttributes), on every C_Login (the
 * token flags) and every C_SetPIN. A process killed between the two, inside hsmcad since SoftHSM
 * runs in our process, leaves token.object empty: SoftHSM no longer sees the token, and every key
 * in it is gone, even for the SO. The guard keeps a verified copy of that file, taken (fsync'd and
 * renamed into place) just before each such call, and at start-up puts it back where the live file
 * is empty or missing. The copy holds exactly what the token held a moment before: the same token
 * key (the key objects stay readable) wrapped under the PIN of that moment, which the custody
 * protocol keeps reachable (docs/custody.md). Tokens of other modules are left alone.
 *
 * The copy is as sensitive as the token directory itself (the token key wrapped under the PIN);
 * it lives in a directory of the service's (mode 0700, files 0600).
 */
#ifndef HSMCA_SOFTHSM_GUARD_H
#define HSMCA_SOFTHSM_GUARD_H

#include <stddef.h>

#include "hsmca/error.h"

#define HSMCA_GUARD_PATH_MAX 4096

struct hsmca_guard {
    char tokendir[HSMCA_GUARD_PATH_MAX]; /* SoftHSM's directories.tokendir */
    char backup_dir[HSMCA_GUARD_PATH_MAX];
};

/*
 * Set up a guard from SoftHSM's configuration (SOFTHSM2_CONF, else /etc/softhsm/softhsm2.conf)
 * with copies under backup_dir (made 0700 if absent). HSMCA_E_NOT_FOUND when there is no SoftHSM
 * configuration or it names no token directory: the module is not SoftHSM, nothing to guard.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_guard_init(struct hsmca_guard *g, const char *backup_dir);

/* hsmca_guard_init with the copies in softhsm-backup/ beside the store file store_path (the one
 * place hsmcad and hsmca ceremony both keep them). */
HSMCA_MUSTCHECK enum hsmca_err hsmca_guard_init_beside(struct hsmca_guard *g,
                                                       const char *store_path);

/* The hsmca_token_write_fn for hsmca_p11_set_before_write (arg: the guard): copy the token's file
 * (SoftHSM serial) to backup_dir/<serial>.object, verified and durable, before the call. */
enum hsmca_err hsmca_guard_before_write(void *arg, const char *label, const char *serial,
                                        const char *what);

/*
 * Before the module loads: for each copy, if its token's directory exists and token.object there is
 * missing or empty, put the copy back (durably). restored(arg, serial) is called for each one
 * (may be NULL). Returns the first error; tokens already restored stay restored.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_guard_restore(const struct hsmca_guard *g,
                                                   void (*restored)(void *arg, const char *serial),
                                                   void *arg);

#endif
