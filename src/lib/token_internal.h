/* SPDX-License-Identifier: Apache-2.0
 *
 * token_internal.h -- what the token_*.c pieces share: the module, token, key and signing-pool
 * structures and the helpers more than one piece calls. Private to src/lib/token*.c (the PKCS#11
 * wall: tools/check-walls): nothing outside the token room includes it.
 */
#ifndef HSMCA_TOKEN_INTERNAL_H
#define HSMCA_TOKEN_INTERNAL_H

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libp11.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>

#include "hsmca/log.h"
#include "hsmca/token.h"

/* libp11 slot arrays. A new array is added when a token is initialised (SoftHSM gives it a new slot
 * id); none is released before the module is, because releasing one closes every session. */
#define SLOT_ARRAYS_MAX 32

struct slot_array {
    PKCS11_SLOT *slots;
    unsigned int n;
};

struct hsmca_p11 {
    PKCS11_CTX *ctx;
    struct slot_array arrays[SLOT_ARRAYS_MAX];
    unsigned narrays;
    void *dl;
    CK_FUNCTION_LIST_PTR f; /* the function list libp11 initialised (see shared_function_list) */
    int own_init;           /* 1: f is a list of our own that we initialised and finalise */
    char path[HSMCA_PATH_MAX + 1]; /* the module's real path, for module-path= in URIs */
    pthread_mutex_t lock;          /* serialises object creation across the module (SoftHSM #573) */
    unsigned ntokens;
    hsmca_token_write_fn before_write; /* hsmca_p11_set_before_write */
    void *before_write_arg;
};

struct hsmca_token {
    struct hsmca_p11 *p11;
    PKCS11_SLOT *slot; /* borrowed from p11->slots */
    CK_SLOT_ID slot_id;
    CK_SESSION_HANDLE session; /* control session (r/w); keeps the login alive */
    pthread_mutex_t lock;      /* guards session and the fields below */
    int logged_in;
    unsigned nkeys;
    /* who the token is, to find it again after it was removed and came back (hsmca_token_probe) */
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    char serial[HSMCA_TOKEN_SERIAL_MAX + 1];
};

/*
 * What hsmca_key_sign_digest signs on: its own sessions (opened on demand, at most
 * SIGN_SESSIONS_MAX, so a module that signs in parallel still can) and the object it names.
 * SoftHSM 2.6.1 opens, locks and re-reads a token object's files on every C_SignInit, about a third
 * of a signature's time. A session copy of the key (C_CopyObject, CKA_TOKEN false) lives in the
 * module's memory and skips that. PKCS#11 lets no copy weaken CKA_SENSITIVE or CKA_EXTRACTABLE
 * (and copy_key checks both); the copy lives in this process only, has an empty label so no lookup
 * by name meets it, and is destroyed with the key handle. A token that refuses the copy
 * (CKA_COPYABLE false, no C_CopyObject) is signed with the token object itself.
 */
#define SIGN_SESSIONS_MAX 16

struct sign_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    CK_SESSION_HANDLE open[SIGN_SESSIONS_MAX]; /* every session opened, to close at free */
    CK_SESSION_HANDLE idle[SIGN_SESSIONS_MAX];
    unsigned nopen, nidle, opening;
    CK_OBJECT_HANDLE copy;          /* the session copy, or CK_INVALID_HANDLE: the token object */
    CK_SESSION_HANDLE copy_session; /* the session that made the copy */
    int signed_once;                /* a signature was made (with the token object) */
    int decided;                    /* the copy was tried */
};

struct hsmca_key {
    struct hsmca_token *tok;
    EVP_PKEY *priv; /* token-backed, from libp11 */
    EVP_PKEY *pub;  /* software copy */
    CK_OBJECT_HANDLE handle;
    char label[HSMCA_KEY_LABEL_MAX + 1];
    unsigned char id[HSMCA_KEY_ID_MAX];
    size_t id_len;
    struct sign_pool *pool;
};

/* token_uri.c: 1 when a token's info matches the token attributes of URI u. */
int tok_matches(const struct hsmca_uri *u, const CK_TOKEN_INFO *ti);

/* token_module.c: a CK_RV as an hsmca code (fallback for the unlisted ones), logged at debug. */
enum hsmca_err tok_ckr(const char *fn, CK_RV rv, enum hsmca_err fallback);

/* token_module.c: copy a blank-padded PKCS#11 string into out (out_size > n), trimming blanks. */
void tok_trim_copy(char *out, size_t out_size, const unsigned char *in, size_t n);

/* token_key.c: objects on the control session (caller holds tok->lock). Count the objects
 * matching tmpl and store the first handle in *first. */
enum hsmca_err tok_find_objects(struct hsmca_token *tok, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                CK_OBJECT_HANDLE *first, CK_ULONG *count);
/* token_key.c: take the module's lock (object changes are serialised across the module) and the
 * token's, for a change that needs the user logged in: HSMCA_OK with both held (tok_unlock_write
 * drops them), HSMCA_E_NOT_LOGGED_IN with neither. */
enum hsmca_err tok_lock_write(struct hsmca_token *tok);
void tok_unlock_write(struct hsmca_token *tok);
/* token_key.c: the one object matching tmpl in *h; none when there is none, HSMCA_E_KEY_AMBIGUOUS
 * when there are more (caller holds tok->lock). */
enum hsmca_err tok_find_one(struct hsmca_token *tok, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                            CK_OBJECT_HANDLE *h, enum hsmca_err none);

/* token_key.c: a CK_BBOOL attribute (0 when unreadable). */
int tok_get_bool(struct hsmca_token *tok, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);

/* token_key.c: a byte attribute into buf (at most max bytes). */
enum hsmca_err tok_get_bytes(struct hsmca_token *tok, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                             unsigned char *buf, size_t max, size_t *len);

#endif /* HSMCA_TOKEN_INTERNAL_H */
