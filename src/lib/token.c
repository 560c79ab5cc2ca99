/* SPDX-License-Identifier: Apache-2.0
 *
 * token.c -- the only file that speaks PKCS#11 (through libp11 and the module's function list).
 * Opens a module, finds tokens and keys by RFC 7512 URI, logs in with a PIN the caller owns and
 * wipes, generates non-extractable P-256 keys with an explicit template, hands out token-backed
 * EVP_PKEYs for signing from many threads, derives ECDH secrets, keeps small data objects.
 * Never logs or copies a PIN; never asks a token to export a private key.
 *
 * libp11 0.4.12 is used for what it does well: loading the module, the per-slot session pool and
 * the EVP_PKEY glue that lets OpenSSL sign through the token (X509_sign of PAAs, PAIs, CRLs and
 * the first DAC of each template). Digest signing (hsmca_key_sign_digest: DACs, audit checkpoints,
 * approvals) runs on sessions of its own (struct sign_pool). Everything on the control path
 * (token lookup, login, keygen, attributes, data objects) goes through the module's function list
 * on one control session per token, because libp11 0.4.12 cannot generate EC keys, keeps a heap
 * copy of any PIN given to PKCS11_login, and closes every session of a slot array when it releases
 * it. See docs/pkcs11.md.
 */
#include "hsmca/token.h"

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

/* DER of the prime256v1 OID, the CKA_EC_PARAMS of every hsmca key. */
static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

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

static enum hsmca_err
ckr(const char *fn, CK_RV rv, enum hsmca_err fallback)
{
    enum hsmca_err e;

    switch (rv) {
    case CKR_OK:
        return HSMCA_OK;
    case CKR_PIN_INCORRECT:
        e = HSMCA_E_PIN_INCORRECT;
        break;
    case CKR_PIN_LOCKED:
        e = HSMCA_E_PIN_LOCKED;
        break;
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_INVALID:
        e = HSMCA_E_PIN_INVALID;
        break;
    case CKR_USER_NOT_LOGGED_IN:
        e = HSMCA_E_NOT_LOGGED_IN;
        break;
    case CKR_USER_ALREADY_LOGGED_IN:
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
        e = HSMCA_E_ALREADY_LOGGED_IN;
        break;
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_ERROR:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        e = HSMCA_E_TOKEN_REMOVED;
        break;
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
        e = HSMCA_E_MECHANISM;
        break;
    case CKR_HOST_MEMORY:
        e = HSMCA_E_NOMEM;
        break;
    default:
        e = fallback;
        break;
    }
    hsmca_log(HSMCA_LOG_DEBUG, "token", "ckr", "fn=%s rv=0x%lx code=%s", fn, (unsigned long)rv,
              hsmca_err_code(e));
    return e;
}

/* Copy a blank-padded PKCS#11 string into out (out_size > n), trimming trailing blanks. */
static void
trim_copy(char *out, size_t out_size, const unsigned char *in, size_t n)
{
    if (n >= out_size)
        n = out_size - 1;
    memcpy(out, in, n);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\0'))
        n--;
    out[n] = '\0';
}

/* ---- RFC 7512 URIs ---- */

static int
hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode v[0..n) into out[0..max); *out_len gets the length. -1 on a bad escape/overflow.
 */
static int
pct_decode(const char *v, size_t n, unsigned char *out, size_t max, size_t *out_len)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];

        if (c == '%') {
            int hi, lo;

            if (n - i < 3)
                return -1;
            hi = hexdig(v[i + 1]);
            lo = hexdig(v[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c < 0x21 || c > 0x7e) {
            return -1; /* RFC 7512 values are percent-encoded outside the unreserved set */
        }
        if (o >= max)
            return -1;
        out[o++] = c;
    }
    *out_len = o;
    return 0;
}

struct uri_attr {
    const char *name;
    unsigned bit;
    size_t max; /* decoded bytes */
    int is_id;  /* binary, stored in id[] */
    size_t off; /* offset of the char[] field */
};

static const struct uri_attr uri_attrs[] = {
    {"token", HSMCA_URI_HAVE_TOKEN, HSMCA_TOKEN_LABEL_MAX, 0, offsetof(struct hsmca_uri, token)},
    {"manufacturer", HSMCA_URI_HAVE_MANUFACTURER, HSMCA_TOKEN_LABEL_MAX, 0,
     offsetof(struct hsmca_uri, manufacturer)},
    {"serial", HSMCA_URI_HAVE_SERIAL, HSMCA_TOKEN_SERIAL_MAX, 0,
     offsetof(struct hsmca_uri, serial)},
    {"model", HSMCA_URI_HAVE_MODEL, HSMCA_TOKEN_SERIAL_MAX, 0, offsetof(struct hsmca_uri, model)},
    {"object", HSMCA_URI_HAVE_OBJECT, HSMCA_KEY_LABEL_MAX, 0, offsetof(struct hsmca_uri, object)},
    {"id", HSMCA_URI_HAVE_ID, HSMCA_KEY_ID_MAX, 1, 0},
    {"type", HSMCA_URI_HAVE_TYPE, 15, 0, offsetof(struct hsmca_uri, type)},
};

static int
valid_type(const char *t)
{
    return strcmp(t, "private") == 0 || strcmp(t, "public") == 0 || strcmp(t, "cert") == 0 ||
           strcmp(t, "data") == 0 || strcmp(t, "secret-key") == 0;
}

enum hsmca_err
hsmca_uri_parse(const char *s, size_t len, struct hsmca_uri *out)
{
    struct hsmca_uri u;
    size_t i, start;
    int in_query = 0;

    if (s == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_URI_MAX)
        return HSMCA_E_URI_INVALID;
    if (len < 7 || memcmp(s, "pkcs11:", 7) != 0)
        return HSMCA_E_URI_INVALID;
    memset(&u, 0, sizeof(u));
    start = 7;
    for (i = 7; i <= len; i++) {
        const char *a, *eq;
        size_t alen, nlen, k;
        const struct uri_attr *at = NULL;
        unsigned char buf[HSMCA_KEY_ID_MAX + 1];
        size_t dlen;
        char sep = i < len ? s[i] : '\0';

        if (i < len && sep != ';' && sep != '?' && sep != '&')
            continue;
        if (i < len && sep == '?' && in_query)
            return HSMCA_E_URI_INVALID;
        if (i < len && sep == '&' && !in_query)
            return HSMCA_E_URI_INVALID;
        if (i < len && sep == ';' && in_query)
            return HSMCA_E_URI_INVALID;
        a = s + start;
        alen = i - start;
        start = i + 1;
        if (alen == 0) {
            /* "pkcs11:" alone, or "pkcs11:?..." are fine; an empty attribute elsewhere is not */
            if (a == s + 7 && (i == len || sep == '?')) {
                if (sep == '?')
                    in_query = 1;
                continue;
            }
            return HSMCA_E_URI_INVALID;
        }
        eq = memchr(a, '=', alen);
        if (eq == NULL)
            return HSMCA_E_URI_INVALID;
        nlen = (size_t)(eq - a);
        if (in_query) {
            /* query attributes: hsmca takes the module and PIN from its config, never here */
            if ((nlen == 9 && memcmp(a, "pin-value", 9) == 0))
                return HSMCA_E_URI_INVALID;
            if (nlen == 11 && memcmp(a, "module-path", 11) == 0) {
                if ((u.have & HSMCA_URI_HAVE_MODULE_PATH) ||
                    pct_decode(eq + 1, alen - nlen - 1, (unsigned char *)u.module_path,
                               sizeof(u.module_path) - 1, &dlen) != 0 ||
                    dlen == 0 || u.module_path[0] != '/' ||
                    memchr(u.module_path, '\0', dlen) != NULL)
                    return HSMCA_E_URI_INVALID;
                u.module_path[dlen] = '\0';
                u.have |= HSMCA_URI_HAVE_MODULE_PATH;
                if (sep == '?')
                    return HSMCA_E_URI_INVALID;
                continue;
            }
            if (!((nlen == 10 && memcmp(a, "pin-source", 10) == 0) ||
                  (nlen == 11 && memcmp(a, "module-name", 11) == 0)))
                return HSMCA_E_URI_INVALID;
            if (sep == '?')
                return HSMCA_E_URI_INVALID;
            continue;
        }
        for (k = 0; k < sizeof(uri_attrs) / sizeof(uri_attrs[0]); k++) {
            if (strlen(uri_attrs[k].name) == nlen && memcmp(uri_attrs[k].name, a, nlen) == 0) {
                at = &uri_attrs[k];
                break;
            }
        }
        if (at == NULL)
            return HSMCA_E_URI_INVALID; /* includes slot-id, slot-description, library-* */
        if (u.have & at->bit)
            return HSMCA_E_URI_INVALID;
        if (pct_decode(eq + 1, alen - nlen - 1, buf, at->max, &dlen) != 0 || dlen == 0)
            return HSMCA_E_URI_INVALID;
        if (at->is_id) {
            memcpy(u.id, buf, dlen);
            u.id_len = dlen;
        } else {
            char *field = (char *)&u + at->off;

            if (memchr(buf, '\0', dlen) != NULL)
                return HSMCA_E_URI_INVALID;
            memcpy(field, buf, dlen);
            field[dlen] = '\0';
            if (at->bit == HSMCA_URI_HAVE_TYPE && !valid_type(field))
                return HSMCA_E_URI_INVALID;
        }
        u.have |= at->bit;
        if (sep == '?')
            in_query = 1;
    }
    *out = u;
    return HSMCA_OK;
}

/* ---- module ---- */

/*
 * libp11 0.4.12 loads the module (C_LoadModule: a {magic, dlopen handle} record) and initialises
 * the function list it got from C_GetFunctionList, but has no call that hands that list out.
 * Calling C_GetFunctionList again is not the same thing: p11-kit's proxy and p11-kit-client.so
 * return a new, uninitialised instance per call (C_GetSlotList: CKR_CRYPTOKI_NOT_INITIALIZED),
 * and p11-kit-client.so's instances are separate connections whose logins are not shared. So
 * hsmca uses libp11's own list: the first two fields of libp11 0.4.12's private context
 * (src/libp11-int.h: method, handle). The layout is checked before it is trusted: the handle
 * must be a C_LoadModule record (magic 0xd00bed00) holding the same dlopen handle as ours, and
 * the list must be a Cryptoki 2.x list whose C_GetInfo answers (it is initialised). A libp11 that
 * fails the check gets a list of our own, initialised once here and finalised at hsmca_p11_free,
 * with a warning: a plain module shares its state between lists, a proxy may not.
 */
struct libp11_ctx_0412 {
    CK_FUNCTION_LIST_PTR method;
    void *handle;
};
struct libp11_module_0412 {
    unsigned int magic;
    void *handle;
};
#define LIBP11_MODULE_MAGIC 0xd00bed00u

static enum hsmca_err
shared_function_list(struct hsmca_p11 *p, const char *path)
{
    const struct libp11_ctx_0412 *pc = p->ctx->_private;
    const struct libp11_module_0412 *pm = pc != NULL ? pc->handle : NULL;
    CK_C_GetFunctionList gfl;
    CK_C_INITIALIZE_ARGS args;
    CK_INFO info;
    CK_RV rv;

    if (pm != NULL && pm->magic == LIBP11_MODULE_MAGIC && pm->handle == p->dl &&
        pc->method != NULL && pc->method->version.major == 2 &&
        pc->method->C_GetInfo(&info) == CKR_OK) {
        p->f = pc->method;
        return HSMCA_OK;
    }
    /* POSIX guarantees a data pointer from dlsym converts to a function pointer */
    *(void **)&gfl = dlsym(p->dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&p->f) != CKR_OK || p->f == NULL)
        return HSMCA_E_MODULE_LOAD;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    rv = p->f->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        hsmca_log(HSMCA_LOG_ERROR, "token", "module-load-failed",
                  "path=%s reason=\"C_Initialize failed\" ckr=0x%lx", path, (unsigned long)rv);
        return HSMCA_E_MODULE_LOAD;
    }
    p->own_init = rv == CKR_OK;
    hsmca_log(HSMCA_LOG_WARN, "token", "libp11-list-unknown",
              "path=%s reason=\"not libp11 0.4.12's layout: using a function list of our own; a "
              "proxy module may not share logins between the two\"",
              path);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_p11_open(const char *path, struct hsmca_p11 **out)
{
    enum hsmca_err rc = HSMCA_E_MODULE_LOAD;
    struct hsmca_p11 *p = NULL;
    struct stat st;

    if (path == NULL || out == NULL || strlen(path) > HSMCA_PATH_MAX)
        return HSMCA_E_INVALID_ARG;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        hsmca_log(HSMCA_LOG_ERROR, "token", "module-missing",
                  "path=%s reason=\"no such file; install softhsm2 or set pkcs11_module\"", path);
        return HSMCA_E_MODULE_LOAD;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_init(&p->lock, NULL);
    {
        char *rp = realpath(path, NULL);

        snprintf(p->path, sizeof(p->path), "%s", rp != NULL ? rp : path);
        free(rp);
    }
    p->ctx = PKCS11_CTX_new();
    if (p->ctx == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    if (PKCS11_CTX_load(p->ctx, path) != 0) {
        hsmca_log(HSMCA_LOG_ERROR, "token", "module-load-failed",
                  "path=%s reason=\"not a PKCS#11 module, or C_Initialize failed\"", path);
        PKCS11_CTX_free(p->ctx);
        p->ctx = NULL;
        goto out;
    }
    /* The same library libp11 loaded: dlopen returns the loaded instance. */
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (p->dl == NULL)
        p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL)
        goto out;
    rc = shared_function_list(p, path);
    if (rc != HSMCA_OK)
        goto out;
    rc = HSMCA_E_MODULE_LOAD;
    {
        CK_ULONG nslots = 0;

        /* libp11 0.4.12 fails to enumerate an empty slot list (malloc(0)); a module without
         * slots (a p11-kit proxy with no module configured) opens, and finds no token. */
        if (p->f->C_GetSlotList(CK_FALSE, NULL, &nslots) != CKR_OK) {
            hsmca_log(HSMCA_LOG_ERROR, "token", "module-load-failed",
                      "path=%s reason=\"C_GetSlotList failed on the initialised module\"", path);
            goto out;
        }
        if (nslots > 0) {
            if (PKCS11_enumerate_slots(p->ctx, &p->arrays[0].slots, &p->arrays[0].n) != 0) {
                p->arrays[0].slots = NULL;
                p->arrays[0].n = 0;
                goto out;
            }
            p->narrays = 1;
        }
    }
    *out = p;
    p = NULL;
    rc = HSMCA_OK;
out:
    if (p != NULL) {
        if (p->own_init)
            (void)p->f->C_Finalize(NULL);
        if (p->ctx != NULL) {
            PKCS11_CTX_unload(p->ctx);
            PKCS11_CTX_free(p->ctx);
        }
        if (p->dl != NULL)
            dlclose(p->dl);
        pthread_mutex_destroy(&p->lock);
        free(p);
    }
    return rc;
}

enum hsmca_err
hsmca_p11_free(struct hsmca_p11 *p11)
{
    if (p11 == NULL)
        return HSMCA_OK;
    pthread_mutex_lock(&p11->lock);
    if (p11->ntokens != 0) {
        pthread_mutex_unlock(&p11->lock);
        return HSMCA_E_BUSY;
    }
    pthread_mutex_unlock(&p11->lock);
    /* Order matters (SoftHSM's static destructors crash if OpenSSL or libp11 go first):
     * libp11's slots and sessions, then C_Finalize and unload, then our own handle. */
    while (p11->narrays > 0) {
        struct slot_array *a = &p11->arrays[--p11->narrays];

        PKCS11_release_all_slots(p11->ctx, a->slots, a->n);
    }
    if (p11->own_init)
        (void)p11->f->C_Finalize(NULL);
    PKCS11_CTX_unload(p11->ctx);
    PKCS11_CTX_free(p11->ctx);
    if (p11->dl != NULL)
        dlclose(p11->dl);
    pthread_mutex_destroy(&p11->lock);
    free(p11);
    return HSMCA_OK;
}

/* ---- tokens ---- */

static int
token_matches(const struct hsmca_uri *u, const CK_TOKEN_INFO *ti)
{
    char buf[HSMCA_TOKEN_LABEL_MAX + 1];

    if (!(ti->flags & CKF_TOKEN_INITIALIZED))
        return 0;
    if (u->have & HSMCA_URI_HAVE_TOKEN) {
        trim_copy(buf, sizeof(buf), ti->label, sizeof(ti->label));
        if (strcmp(buf, u->token) != 0)
            return 0;
    }
    if (u->have & HSMCA_URI_HAVE_SERIAL) {
        trim_copy(buf, sizeof(buf), ti->serialNumber, sizeof(ti->serialNumber));
        if (strcmp(buf, u->serial) != 0)
            return 0;
    }
    if (u->have & HSMCA_URI_HAVE_MANUFACTURER) {
        trim_copy(buf, sizeof(buf), ti->manufacturerID, sizeof(ti->manufacturerID));
        if (strcmp(buf, u->manufacturer) != 0)
            return 0;
    }
    if (u->have & HSMCA_URI_HAVE_MODEL) {
        trim_copy(buf, sizeof(buf), ti->model, sizeof(ti->model));
        if (strcmp(buf, u->model) != 0)
            return 0;
    }
    return 1;
}

/* The newest libp11 view of slot id. Caller holds p11->lock. */
static PKCS11_SLOT *
libp11_slot(struct hsmca_p11 *p11, CK_SLOT_ID id)
{
    unsigned a, i;

    for (a = p11->narrays; a-- > 0;) {
        for (i = 0; i < p11->arrays[a].n; i++) {
            if (PKCS11_get_slotid_from_slot(&p11->arrays[a].slots[i]) == id)
                return &p11->arrays[a].slots[i];
        }
    }
    return NULL;
}

/* Add a fresh libp11 enumeration (after C_InitToken renumbered a slot). Caller holds p11->lock. */
static enum hsmca_err
rescan_slots(struct hsmca_p11 *p11)
{
    struct slot_array *a;

    if (p11->narrays >= SLOT_ARRAYS_MAX)
        return HSMCA_E_TOO_LARGE;
    a = &p11->arrays[p11->narrays];
    a->slots = NULL;
    a->n = 0;
    /* a NULL array and a zero count: a fresh enumeration that shares nothing with the old ones */
    if (PKCS11_enumerate_slots(p11->ctx, &a->slots, &a->n) != 0)
        return HSMCA_E_TOKEN_FAILED;
    p11->narrays++;
    return HSMCA_OK;
}

/* List the slots with a token present. *ids_out is malloc'd; caller frees. */
static enum hsmca_err
slot_list(struct hsmca_p11 *p11, CK_SLOT_ID **ids_out, CK_ULONG *n_out)
{
    CK_SLOT_ID *ids = NULL;
    CK_ULONG n = 0;
    CK_RV rv;

    rv = p11->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return ckr("C_GetSlotList", rv, HSMCA_E_TOKEN_FAILED);
    ids = calloc(n + 1, sizeof(*ids));
    if (ids == NULL)
        return HSMCA_E_NOMEM;
    rv = p11->f->C_GetSlotList(CK_TRUE, ids, &n);
    if (rv != CKR_OK) {
        free(ids);
        return ckr("C_GetSlotList", rv, HSMCA_E_TOKEN_FAILED);
    }
    *ids_out = ids;
    *n_out = n;
    return HSMCA_OK;
}

static enum hsmca_err
open_slot(struct hsmca_p11 *p11, CK_SLOT_ID id, struct hsmca_token **out)
{
    struct hsmca_token *t;
    CK_RV rv;

    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return HSMCA_E_NOMEM;
    t->p11 = p11;
    t->slot_id = id;
    pthread_mutex_lock(&p11->lock);
    t->slot = libp11_slot(p11, id);
    if (t->slot == NULL && rescan_slots(p11) == HSMCA_OK)
        t->slot = libp11_slot(p11, id); /* a token that appeared since (tokens.c re-probes) */
    pthread_mutex_unlock(&p11->lock);
    if (t->slot == NULL) {
        hsmca_log(HSMCA_LOG_ERROR, "token", "slot-unknown",
                  "slot=%lu reason=\"token appeared after the module was opened; reopen it\"",
                  (unsigned long)id);
        free(t);
        return HSMCA_E_TOKEN_NOT_FOUND;
    }
    rv = p11->f->C_OpenSession(id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->session);
    if (rv != CKR_OK) {
        free(t);
        return ckr("C_OpenSession", rv, HSMCA_E_TOKEN_FAILED);
    }
    pthread_mutex_init(&t->lock, NULL);
    {
        CK_TOKEN_INFO ti;

        if (p11->f->C_GetTokenInfo(id, &ti) == CKR_OK) {
            trim_copy(t->label, sizeof(t->label), ti.label, sizeof(ti.label));
            trim_copy(t->serial, sizeof(t->serial), ti.serialNumber, sizeof(ti.serialNumber));
        }
    }
    {
        CK_SESSION_INFO si;

        if (p11->f->C_GetSessionInfo(t->session, &si) == CKR_OK &&
            (si.state == CKS_RW_USER_FUNCTIONS || si.state == CKS_RO_USER_FUNCTIONS))
            t->logged_in = 1;
    }
    pthread_mutex_lock(&p11->lock);
    p11->ntokens++;
    pthread_mutex_unlock(&p11->lock);
    *out = t;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_token_open(struct hsmca_p11 *p11, const char *uri, struct hsmca_token **out)
{
    enum hsmca_err rc;
    struct hsmca_uri u;
    CK_SLOT_ID *ids = NULL, found = 0;
    CK_ULONG n = 0, i;
    unsigned matches = 0;

    if (p11 == NULL || uri == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_uri_parse(uri, strlen(uri), &u);
    if (rc != HSMCA_OK)
        return rc;
    if (u.have & HSMCA_URI_HAVE_MODULE_PATH) {
        char *rp = realpath(u.module_path, NULL);
        int same = rp != NULL && strcmp(rp, p11->path) == 0;

        free(rp);
        if (!same) {
            hsmca_log(HSMCA_LOG_ERROR, "token", "uri-module-mismatch",
                      "module=%s uri_module=%.300s reason=\"the URI names another module\"",
                      p11->path, u.module_path);
            return HSMCA_E_MODULE_MISMATCH;
        }
    }
    rc = slot_list(p11, &ids, &n);
    if (rc != HSMCA_OK)
        return rc;
    for (i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (p11->f->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
            continue;
        if (token_matches(&u, &ti)) {
            matches++;
            found = ids[i];
        }
    }
    free(ids);
    if (matches == 0)
        return HSMCA_E_TOKEN_NOT_FOUND;
    if (matches > 1)
        return HSMCA_E_TOKEN_AMBIGUOUS;
    return open_slot(p11, found, out);
}

enum hsmca_err
hsmca_token_free(struct hsmca_token *tok)
{
    struct hsmca_p11 *p11;

    if (tok == NULL)
        return HSMCA_OK;
    pthread_mutex_lock(&tok->lock);
    if (tok->nkeys != 0) {
        pthread_mutex_unlock(&tok->lock);
        return HSMCA_E_BUSY;
    }
    pthread_mutex_unlock(&tok->lock);
    p11 = tok->p11;
    /* Closing the control session does not log out while libp11's pool sessions stay open;
     * an explicit hsmca_token_logout does. */
    (void)p11->f->C_CloseSession(tok->session);
    pthread_mutex_destroy(&tok->lock);
    free(tok);
    pthread_mutex_lock(&p11->lock);
    p11->ntokens--;
    pthread_mutex_unlock(&p11->lock);
    return HSMCA_OK;
}

static enum hsmca_err
check_pin(const struct hsmca_secret *pin)
{
    if (pin == NULL || pin->p == NULL)
        return HSMCA_E_INVALID_ARG;
    if (pin->len < HSMCA_PIN_MIN || pin->len > HSMCA_PIN_MAX)
        return HSMCA_E_PIN_INVALID;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_token_init(struct hsmca_p11 *p11, const char *label, const struct hsmca_secret *so_pin,
                 const struct hsmca_secret *user_pin, struct hsmca_token **out)
{
    enum hsmca_err rc;
    CK_SLOT_ID *ids = NULL, free_slot = 0;
    CK_ULONG n = 0, i;
    CK_UTF8CHAR lbl[32];
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    struct hsmca_token *t = NULL;
    int have_free = 0;
    size_t llen;
    CK_RV rv;

    if (p11 == NULL || label == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    llen = strlen(label);
    if (llen == 0 || llen > HSMCA_TOKEN_LABEL_MAX)
        return HSMCA_E_INVALID_ARG;
    rc = check_pin(so_pin);
    if (rc == HSMCA_OK)
        rc = check_pin(user_pin);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&p11->lock);
    rc = slot_list(p11, &ids, &n);
    if (rc != HSMCA_OK)
        goto out;
    for (i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        char have[HSMCA_TOKEN_LABEL_MAX + 1];

        if (p11->f->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
            if (!have_free) {
                free_slot = ids[i];
                have_free = 1;
            }
            continue;
        }
        trim_copy(have, sizeof(have), ti.label, sizeof(ti.label));
        if (strcmp(have, label) == 0) {
            rc = HSMCA_E_TOKEN_EXISTS;
            goto out;
        }
    }
    if (!have_free) {
        rc = HSMCA_E_NO_FREE_SLOT;
        goto out;
    }
    memset(lbl, ' ', sizeof(lbl));
    memcpy(lbl, label, llen);
    rv = p11->f->C_InitToken(free_slot, so_pin->p, so_pin->len, lbl);
    if (rv != CKR_OK) {
        rc = ckr("C_InitToken", rv, HSMCA_E_TOKEN_FAILED);
        goto out;
    }
    rv = p11->f->C_OpenSession(free_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK)
        rv = p11->f->C_Login(s, CKU_SO, so_pin->p, so_pin->len);
    if (rv == CKR_OK) {
        rv = p11->f->C_InitPIN(s, user_pin->p, user_pin->len);
        (void)p11->f->C_Logout(s);
    }
    if (s != CK_INVALID_HANDLE)
        (void)p11->f->C_CloseSession(s);
    if (rv != CKR_OK) {
        rc = ckr("C_InitPIN", rv, HSMCA_E_TOKEN_FAILED);
        goto out;
    }
    rc = rescan_slots(p11);
    if (rc != HSMCA_OK)
        goto out;
    pthread_mutex_unlock(&p11->lock);
    free(ids);
    ids = NULL;
    rc = open_slot(p11, free_slot, &t);
    if (rc != HSMCA_OK)
        return rc;
    *out = t;
    return HSMCA_OK;
out:
    pthread_mutex_unlock(&p11->lock);
    free(ids);
    return rc;
}

enum hsmca_err
hsmca_token_info(struct hsmca_token *tok, struct hsmca_token_info *out)
{
    CK_TOKEN_INFO ti;
    CK_RV rv;

    if (tok == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&tok->lock);
    rv = tok->p11->f->C_GetTokenInfo(tok->slot_id, &ti);
    pthread_mutex_unlock(&tok->lock);
    if (rv != CKR_OK)
        return ckr("C_GetTokenInfo", rv, HSMCA_E_TOKEN_FAILED);
    memset(out, 0, sizeof(*out));
    trim_copy(out->label, sizeof(out->label), ti.label, sizeof(ti.label));
    trim_copy(out->serial, sizeof(out->serial), ti.serialNumber, sizeof(ti.serialNumber));
    trim_copy(out->manufacturer, sizeof(out->manufacturer), ti.manufacturerID,
              sizeof(ti.manufacturerID));
    trim_copy(out->model, sizeof(out->model), ti.model, sizeof(ti.model));
    pthread_mutex_lock(&tok->lock);
    out->logged_in = tok->logged_in;
    pthread_mutex_unlock(&tok->lock);
    out->pin_count_low = (ti.flags & CKF_USER_PIN_COUNT_LOW) != 0;
    out->pin_final_try = (ti.flags & CKF_USER_PIN_FINAL_TRY) != 0;
    out->pin_locked = (ti.flags & CKF_USER_PIN_LOCKED) != 0;
    out->user_pin_set = (ti.flags & CKF_USER_PIN_INITIALIZED) != 0;
    return HSMCA_OK;
}

void
hsmca_p11_set_before_write(struct hsmca_p11 *p11, hsmca_token_write_fn fn, void *arg)
{
    if (p11 == NULL)
        return;
    p11->before_write = fn;
    p11->before_write_arg = arg;
}

/* Run the module's before-write hook for tok (HSMCA_OK when none is set). */
static enum hsmca_err
before_write(struct hsmca_token *tok, const char *what)
{
    struct hsmca_token_info ti;
    enum hsmca_err rc;

    if (tok->p11->before_write == NULL)
        return HSMCA_OK;
    rc = hsmca_token_info(tok, &ti);
    if (rc == HSMCA_OK)
        rc = tok->p11->before_write(tok->p11->before_write_arg, ti.label, ti.serial, what);
    return rc;
}

enum hsmca_err
hsmca_token_login(struct hsmca_token *tok, const struct hsmca_secret *pin)
{
    enum hsmca_err rc;
    CK_RV rv;

    if (tok == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = check_pin(pin);
    if (rc == HSMCA_OK)
        rc = before_write(tok, "C_Login");
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    if (tok->logged_in) {
        pthread_mutex_unlock(&tok->lock);
        return HSMCA_E_ALREADY_LOGGED_IN;
    }
    rv = tok->p11->f->C_Login(tok->session, CKU_USER, pin->p, pin->len);
    if (rv == CKR_OK)
        tok->logged_in = 1;
    pthread_mutex_unlock(&tok->lock);
    return ckr("C_Login", rv, HSMCA_E_TOKEN_FAILED);
}

enum hsmca_err
hsmca_token_logout(struct hsmca_token *tok)
{
    CK_RV rv;

    if (tok == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&tok->lock);
    if (tok->nkeys != 0) {
        pthread_mutex_unlock(&tok->lock);
        return HSMCA_E_BUSY;
    }
    rv = tok->p11->f->C_Logout(tok->session);
    tok->logged_in = 0;
    pthread_mutex_unlock(&tok->lock);
    if (rv == CKR_USER_NOT_LOGGED_IN)
        return HSMCA_OK;
    return ckr("C_Logout", rv, HSMCA_E_TOKEN_FAILED);
}

enum hsmca_err
hsmca_token_close_all(struct hsmca_p11 *p11, struct hsmca_token *tok, struct hsmca_key *key)
{
    enum hsmca_err rc = HSMCA_OK, e;

    hsmca_key_free(key);
    if (tok != NULL) {
        e = hsmca_token_logout(tok);
        rc = e;
        e = hsmca_token_free(tok);
        if (rc == HSMCA_OK)
            rc = e;
    }
    e = hsmca_p11_free(p11);
    return rc != HSMCA_OK ? rc : e;
}

enum hsmca_err
hsmca_token_init_pin(struct hsmca_token *tok, const struct hsmca_secret *so_pin,
                     const struct hsmca_secret *new_pin)
{
    enum hsmca_err rc;
    CK_RV rv;

    if (tok == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = check_pin(so_pin);
    if (rc == HSMCA_OK)
        rc = check_pin(new_pin);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    if (tok->logged_in) {
        pthread_mutex_unlock(&tok->lock);
        return HSMCA_E_ALREADY_LOGGED_IN;
    }
    rv = tok->p11->f->C_Login(tok->session, CKU_SO, so_pin->p, so_pin->len);
    if (rv == CKR_OK) {
        rv = tok->p11->f->C_InitPIN(tok->session, new_pin->p, new_pin->len);
        (void)tok->p11->f->C_Logout(tok->session);
        rc = ckr("C_InitPIN", rv, HSMCA_E_TOKEN_FAILED);
    } else {
        rc = ckr("C_Login(SO)", rv, HSMCA_E_TOKEN_FAILED);
    }
    pthread_mutex_unlock(&tok->lock);
    return rc;
}

enum hsmca_err
hsmca_token_set_pin(struct hsmca_token *tok, const struct hsmca_secret *old_pin,
                    const struct hsmca_secret *new_pin)
{
    enum hsmca_err rc;
    CK_RV rv;

    if (tok == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = check_pin(old_pin);
    if (rc == HSMCA_OK)
        rc = check_pin(new_pin);
    if (rc == HSMCA_OK)
        rc = before_write(tok, "C_SetPIN");
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in) {
        pthread_mutex_unlock(&tok->lock);
        return HSMCA_E_NOT_LOGGED_IN;
    }
    rv = tok->p11->f->C_SetPIN(tok->session, old_pin->p, old_pin->len, new_pin->p, new_pin->len);
    pthread_mutex_unlock(&tok->lock);
    return ckr("C_SetPIN", rv, HSMCA_E_TOKEN_FAILED);
}

enum hsmca_err
hsmca_token_set_so_pin(struct hsmca_token *tok, const struct hsmca_secret *old_so,
                       const struct hsmca_secret *new_so)
{
    enum hsmca_err rc;
    CK_RV rv;

    if (tok == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = check_pin(old_so);
    if (rc == HSMCA_OK)
        rc = check_pin(new_so);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    if (tok->logged_in) {
        pthread_mutex_unlock(&tok->lock);
        return HSMCA_E_ALREADY_LOGGED_IN;
    }
    rv = tok->p11->f->C_Login(tok->session, CKU_SO, old_so->p, old_so->len);
    if (rv == CKR_OK) {
        /* C_SetPIN in an SO session changes the SO PIN (PKCS#11 v2.40, 5.6) */
        rv = tok->p11->f->C_SetPIN(tok->session, old_so->p, old_so->len, new_so->p, new_so->len);
        (void)tok->p11->f->C_Logout(tok->session);
        rc = ckr("C_SetPIN(SO)", rv, HSMCA_E_TOKEN_FAILED);
    } else {
        rc = ckr("C_Login(SO)", rv, HSMCA_E_TOKEN_FAILED);
    }
    pthread_mutex_unlock(&tok->lock);
    return rc;
}

enum hsmca_err
hsmca_token_random_pin(size_t len, struct hsmca_secret *out)
{
    enum hsmca_err rc;

    if (out == NULL || len < HSMCA_PIN_MIN || len > HSMCA_PIN_MAX)
        return HSMCA_E_INVALID_ARG;
    rc = hsmca_secret_set(out, NULL, len);
    if (rc != HSMCA_OK)
        return rc;
    if (RAND_priv_bytes(out->p, (int)len) != 1) {
        hsmca_secret_clear(out);
        return HSMCA_E_RANDOM;
    }
    return HSMCA_OK;
}

/* Is the token in slot id the one tok was opened on (same label and serial)? */
static int
same_token(const struct hsmca_token *tok, const CK_TOKEN_INFO *ti)
{
    char label[HSMCA_TOKEN_LABEL_MAX + 1], serial[HSMCA_TOKEN_SERIAL_MAX + 1];

    trim_copy(label, sizeof(label), ti->label, sizeof(ti->label));
    trim_copy(serial, sizeof(serial), ti->serialNumber, sizeof(ti->serialNumber));
    return (ti->flags & CKF_TOKEN_INITIALIZED) && strcmp(label, tok->label) == 0 &&
           strcmp(serial, tok->serial) == 0;
}

enum hsmca_err
hsmca_token_probe(struct hsmca_token *tok, struct hsmca_token_probe *out)
{
    CK_FUNCTION_LIST_PTR f;
    CK_TOKEN_INFO ti;
    CK_SESSION_INFO si;
    CK_SLOT_ID *ids = NULL, found = 0;
    CK_ULONG n = 0, i;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    PKCS11_SLOT *slot;
    enum hsmca_err rc;
    unsigned matches = 0;
    CK_RV rv;

    if (tok == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    f = tok->p11->f;
    pthread_mutex_lock(&tok->lock);
    rv = f->C_GetTokenInfo(tok->slot_id, &ti);
    if (rv == CKR_OK && same_token(tok, &ti) && f->C_GetSessionInfo(tok->session, &si) == CKR_OK) {
        /* present, and the control session (and with it any login) survived */
        tok->logged_in = si.state == CKS_RW_USER_FUNCTIONS || si.state == CKS_RO_USER_FUNCTIONS;
        out->present = 1;
        out->logged_in = tok->logged_in;
        pthread_mutex_unlock(&tok->lock);
        return HSMCA_OK;
    }
    pthread_mutex_unlock(&tok->lock);
    /* gone, or back with its sessions closed: look for it again by label and serial */
    rc = slot_list(tok->p11, &ids, &n);
    if (rc != HSMCA_OK)
        return HSMCA_E_TOKEN_REMOVED;
    for (i = 0; i < n; i++) {
        if (f->C_GetTokenInfo(ids[i], &ti) == CKR_OK && same_token(tok, &ti)) {
            found = ids[i];
            matches++;
        }
    }
    free(ids);
    if (matches != 1)
        return matches == 0 ? HSMCA_E_TOKEN_REMOVED : HSMCA_E_TOKEN_AMBIGUOUS;
    pthread_mutex_lock(&tok->lock);
    if (tok->nkeys != 0) {
        /* key handles hold sessions of the old slot: their owner frees them first */
        pthread_mutex_unlock(&tok->lock);
        out->present = 1;
        out->stale = 1;
        return HSMCA_OK;
    }
    rv = f->C_OpenSession(found, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        pthread_mutex_unlock(&tok->lock);
        return ckr("C_OpenSession", rv, HSMCA_E_TOKEN_REMOVED);
    }
    /* libp11's sessions of the old slot died with it: key handles made from now on take a fresh
     * enumeration (bounded by SLOT_ARRAYS_MAX; past it, the newest one is reused) */
    pthread_mutex_lock(&tok->p11->lock);
    (void)rescan_slots(tok->p11);
    slot = libp11_slot(tok->p11, found);
    pthread_mutex_unlock(&tok->p11->lock);
    (void)f->C_CloseSession(tok->session); /* already dead, most likely */
    tok->session = s;
    tok->slot_id = found;
    if (slot != NULL)
        tok->slot = slot;
    tok->logged_in = f->C_GetSessionInfo(s, &si) == CKR_OK &&
                     (si.state == CKS_RW_USER_FUNCTIONS || si.state == CKS_RO_USER_FUNCTIONS);
    out->present = 1;
    out->reconnected = 1;
    out->logged_in = tok->logged_in;
    pthread_mutex_unlock(&tok->lock);
    hsmca_log(HSMCA_LOG_WARN, "token", "reconnected", "token=%s slot=%lu logged_in=%d", tok->label,
              (unsigned long)found, out->logged_in);
    return HSMCA_OK;
}

/* ---- objects (control session; caller holds tok->lock) ---- */

/* Count objects matching tmpl; store the first handle in *first. */
static enum hsmca_err
find_objects(struct hsmca_token *tok, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *first,
             CK_ULONG *count)
{
    CK_FUNCTION_LIST_PTR f = tok->p11->f;
    CK_OBJECT_HANDLE h[2];
    CK_ULONG got = 0, total = 0;
    CK_RV rv;

    rv = f->C_FindObjectsInit(tok->session, tmpl, n);
    if (rv != CKR_OK)
        return ckr("C_FindObjectsInit", rv, HSMCA_E_TOKEN_FAILED);
    *first = CK_INVALID_HANDLE;
    do {
        rv = f->C_FindObjects(tok->session, h, 2, &got);
        if (rv != CKR_OK)
            break;
        if (total == 0 && got > 0)
            *first = h[0];
        total += got;
    } while (got > 0 && total < 16);
    (void)f->C_FindObjectsFinal(tok->session);
    if (rv != CKR_OK)
        return ckr("C_FindObjects", rv, HSMCA_E_TOKEN_FAILED);
    *count = total;
    return HSMCA_OK;
}

static int
get_bool(struct hsmca_token *tok, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};

    if (tok->p11->f->C_GetAttributeValue(tok->session, h, &a, 1) != CKR_OK)
        return -1;
    return v == CK_TRUE;
}

/* Read a variable-length attribute into buf[0..max); *len gets its length. */
static enum hsmca_err
get_bytes(struct hsmca_token *tok, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, unsigned char *buf,
          size_t max, size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv;

    rv = tok->p11->f->C_GetAttributeValue(tok->session, h, &a, 1);
    if (rv != CKR_OK)
        return ckr("C_GetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > max)
        return HSMCA_E_TOO_LARGE;
    a.pValue = buf;
    rv = tok->p11->f->C_GetAttributeValue(tok->session, h, &a, 1);
    if (rv != CKR_OK)
        return ckr("C_GetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
    *len = a.ulValueLen;
    return HSMCA_OK;
}

/* Build a software EVP_PKEY from an uncompressed P-256 point (65 bytes). */
static enum hsmca_err
pkey_from_point(const unsigned char *pt, size_t len, EVP_PKEY **out)
{
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pk = NULL;
    enum hsmca_err rc = HSMCA_E_INTERNAL;

    if (len != 65 || pt[0] != 0x04)
        return HSMCA_E_BAD_ENCODING;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, len))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (params == NULL || pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        rc = HSMCA_E_BAD_ENCODING;
        goto out;
    }
    *out = pk;
    pk = NULL;
    rc = HSMCA_OK;
out:
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

/* Read the public key object with CKA_ID id into a software EVP_PKEY. Caller holds tok->lock. */
static enum hsmca_err
load_public(struct hsmca_token *tok, const unsigned char *id, size_t id_len, EVP_PKEY **out)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, id_len}};
    unsigned char params[32], point[80];
    const unsigned char *pt = point;
    size_t plen = 0, ptlen = 0;
    CK_OBJECT_HANDLE h;
    CK_ULONG count = 0;
    enum hsmca_err rc;

    rc = find_objects(tok, tmpl, 2, &h, &count);
    if (rc != HSMCA_OK)
        return rc;
    if (count == 0)
        return HSMCA_E_KEY_NOT_FOUND;
    if (count > 1)
        return HSMCA_E_KEY_AMBIGUOUS;
    rc = get_bytes(tok, h, CKA_EC_PARAMS, params, sizeof(params), &plen);
    if (rc != HSMCA_OK)
        return rc;
    if (plen != sizeof(p256_oid) || memcmp(params, p256_oid, plen) != 0)
        return HSMCA_E_MECHANISM; /* not a P-256 key: hsmca makes no other */
    rc = get_bytes(tok, h, CKA_EC_POINT, point, sizeof(point), &ptlen);
    if (rc != HSMCA_OK)
        return rc;
    /* PKCS#11 v2.40 wraps the point in a DER OCTET STRING; accept the bare point too. */
    if (ptlen == 67 && point[0] == 0x04 && point[1] == 0x41) {
        pt = point + 2;
        ptlen = 65;
    }
    return pkey_from_point(pt, ptlen, out);
}

/* Build the libp11 side of a key handle: the token-backed EVP_PKEY. Caller holds tok->lock. */
static enum hsmca_err
load_private(struct hsmca_token *tok, struct hsmca_key *k)
{
    PKCS11_KEY *keys = NULL;
    unsigned int n = 0, i;
    PKCS11_KEY *match = NULL;

    if (tok->slot->token == NULL)
        return HSMCA_E_TOKEN_REMOVED;
    if (PKCS11_enumerate_keys(tok->slot->token, &keys, &n) != 0)
        return HSMCA_E_TOKEN_FAILED;
    for (i = 0; i < n; i++) {
        if (!keys[i].isPrivate || keys[i].id_len != k->id_len ||
            memcmp(keys[i].id, k->id, k->id_len) != 0)
            continue;
        if (keys[i].label == NULL || strcmp(keys[i].label, k->label) != 0)
            continue;
        /* C_FindObjects already proved the (label, id) pair unique in the token; libp11 0.4.12
         * can list one key twice after a logout and a new login (its enumeration appends, and
         * only the entry of the current login has a usable handle): take the last one. */
        match = &keys[i];
    }
    if (match == NULL)
        return HSMCA_E_KEY_NOT_FOUND;
    k->priv = PKCS11_get_private_key(match);
    if (k->priv == NULL)
        return HSMCA_E_TOKEN_FAILED;
    return HSMCA_OK;
}

/* Close a key's signing sessions (which destroys a session copy with the session that made it,
 * after the explicit destroy). Nothing may be signing. */
static void
pool_free(struct hsmca_token *tok, struct sign_pool *pool)
{
    CK_FUNCTION_LIST_PTR f = tok->p11->f;
    unsigned i;

    if (pool == NULL)
        return;
    if (pool->copy != CK_INVALID_HANDLE)
        (void)f->C_DestroyObject(pool->copy_session, pool->copy);
    for (i = 0; i < pool->nopen; i++)
        (void)f->C_CloseSession(pool->open[i]);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

/* Make a key handle for private key object h. Caller holds tok->lock. */
static enum hsmca_err
key_from_handle(struct hsmca_token *tok, CK_OBJECT_HANDLE h, struct hsmca_key **out)
{
    struct hsmca_key *k;
    enum hsmca_err rc;
    size_t len = 0;

    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return HSMCA_E_NOMEM;
    k->pool = calloc(1, sizeof(*k->pool));
    if (k->pool == NULL) {
        free(k);
        return HSMCA_E_NOMEM;
    }
    pthread_mutex_init(&k->pool->mu, NULL);
    pthread_cond_init(&k->pool->cv, NULL);
    k->tok = tok;
    k->handle = h;
    rc = get_bytes(tok, h, CKA_LABEL, (unsigned char *)k->label, HSMCA_KEY_LABEL_MAX, &len);
    if (rc != HSMCA_OK)
        goto out;
    k->label[len] = '\0';
    rc = get_bytes(tok, h, CKA_ID, k->id, sizeof(k->id), &k->id_len);
    if (rc != HSMCA_OK)
        goto out;
    rc = load_public(tok, k->id, k->id_len, &k->pub);
    if (rc != HSMCA_OK)
        goto out;
    rc = load_private(tok, k);
    if (rc != HSMCA_OK)
        goto out;
    tok->nkeys++;
    *out = k;
    k = NULL;
out:
    if (k != NULL) {
        EVP_PKEY_free(k->pub);
        EVP_PKEY_free(k->priv);
        pool_free(tok, k->pool);
        free(k);
    }
    return rc;
}

static int
printable(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    }
    return 1;
}

enum hsmca_err
hsmca_token_generate_key(struct hsmca_token *tok, const char *label, const unsigned char *id,
                         size_t id_len, enum hsmca_key_usage usage, struct hsmca_key **out)
{
    CK_FUNCTION_LIST_PTR f;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_BBOOL derive = (usage & HSMCA_KEY_USAGE_DERIVE) ? CK_TRUE : CK_FALSE;
    CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY, pub_cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE, first;
    CK_ULONG count = 0;
    unsigned char rid[16];
    size_t llen;
    enum hsmca_err rc;
    CK_RV rv;

    if (tok == NULL || label == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    llen = strlen(label);
    if (llen == 0 || llen > HSMCA_KEY_LABEL_MAX || !printable(label, llen))
        return HSMCA_E_INVALID_ARG;
    if (id != NULL && (id_len == 0 || id_len > HSMCA_KEY_ID_MAX))
        return HSMCA_E_INVALID_ARG;
    if (usage != HSMCA_KEY_USAGE_SIGN && usage != (HSMCA_KEY_USAGE_SIGN | HSMCA_KEY_USAGE_DERIVE))
        return HSMCA_E_INVALID_ARG;
    if (id == NULL) {
        if (RAND_bytes(rid, sizeof(rid)) != 1)
            return HSMCA_E_RANDOM;
        id = rid;
        id_len = sizeof(rid);
    }
    f = tok->p11->f;
    pthread_mutex_lock(&tok->p11->lock);
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in) {
        rc = HSMCA_E_NOT_LOGGED_IN;
        goto out;
    }
    {
        /* No second object with this label (of any class), no second key with this id. */
        CK_ATTRIBUTE by_label[] = {{CKA_LABEL, (void *)label, llen}};
        CK_ATTRIBUTE by_id_priv[] = {{CKA_CLASS, &priv_cls, sizeof(priv_cls)},
                                     {CKA_ID, (void *)id, id_len}};
        CK_ATTRIBUTE by_id_pub[] = {{CKA_CLASS, &pub_cls, sizeof(pub_cls)},
                                    {CKA_ID, (void *)id, id_len}};

        rc = find_objects(tok, by_label, 1, &first, &count);
        if (rc == HSMCA_OK && count == 0)
            rc = find_objects(tok, by_id_priv, 2, &first, &count);
        if (rc == HSMCA_OK && count == 0)
            rc = find_objects(tok, by_id_pub, 2, &first, &count);
        if (rc != HSMCA_OK)
            goto out;
        if (count != 0) {
            rc = HSMCA_E_KEY_EXISTS;
            goto out;
        }
    }
    {
        CK_ATTRIBUTE pub[] = {
            {CKA_CLASS, &pub_cls, sizeof(pub_cls)},
            {CKA_KEY_TYPE, &kt, sizeof(kt)},
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &no, sizeof(no)},
            {CKA_VERIFY, &yes, sizeof(yes)},
            {CKA_ENCRYPT, &no, sizeof(no)},
            {CKA_WRAP, &no, sizeof(no)},
            {CKA_DERIVE, &no, sizeof(no)},
            {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
            {CKA_LABEL, (void *)label, llen},
            {CKA_ID, (void *)id, id_len},
        };
        CK_ATTRIBUTE priv[] = {
            {CKA_CLASS, &priv_cls, sizeof(priv_cls)},
            {CKA_KEY_TYPE, &kt, sizeof(kt)},
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},
            {CKA_SENSITIVE, &yes, sizeof(yes)},
            {CKA_EXTRACTABLE, &no, sizeof(no)},
            {CKA_SIGN, &yes, sizeof(yes)},
            {CKA_DERIVE, &derive, sizeof(derive)},
            {CKA_DECRYPT, &no, sizeof(no)},
            {CKA_UNWRAP, &no, sizeof(no)},
            {CKA_SIGN_RECOVER, &no, sizeof(no)},
            {CKA_LABEL, (void *)label, llen},
            {CKA_ID, (void *)id, id_len},
        };

        rv = f->C_GenerateKeyPair(tok->session, &mech, pub, sizeof(pub) / sizeof(pub[0]), priv,
                                  sizeof(priv) / sizeof(priv[0]), &hpub, &hpriv);
        if (rv != CKR_OK) {
            rc = ckr("C_GenerateKeyPair", rv, HSMCA_E_TOKEN_FAILED);
            goto out;
        }
    }
    rc = key_from_handle(tok, hpriv, out);
    if (rc != HSMCA_OK) {
        /* never leave a half-made key behind */
        (void)f->C_DestroyObject(tok->session, hpriv);
        (void)f->C_DestroyObject(tok->session, hpub);
    }
out:
    pthread_mutex_unlock(&tok->lock);
    pthread_mutex_unlock(&tok->p11->lock);
    return rc;
}

/* Check uri's token attributes against tok and build a private-key search template. */
static enum hsmca_err
key_uri(struct hsmca_token *tok, const char *uri, struct hsmca_uri *u)
{
    enum hsmca_err rc;

    rc = hsmca_uri_parse(uri, strlen(uri), u);
    if (rc != HSMCA_OK)
        return rc;
    if (!(u->have & (HSMCA_URI_HAVE_OBJECT | HSMCA_URI_HAVE_ID)))
        return HSMCA_E_URI_INVALID;
    if (u->have & (HSMCA_URI_HAVE_TOKEN | HSMCA_URI_HAVE_SERIAL | HSMCA_URI_HAVE_MANUFACTURER |
                   HSMCA_URI_HAVE_MODEL)) {
        CK_TOKEN_INFO ti;
        CK_RV rv = tok->p11->f->C_GetTokenInfo(tok->slot_id, &ti);

        if (rv != CKR_OK)
            return ckr("C_GetTokenInfo", rv, HSMCA_E_TOKEN_FAILED);
        if (!token_matches(u, &ti))
            return HSMCA_E_KEY_NOT_FOUND;
    }
    return HSMCA_OK;
}

enum hsmca_err
hsmca_token_find_key(struct hsmca_token *tok, const char *uri, struct hsmca_key **out)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[4];
    CK_ULONG n = 0, count = 0;
    CK_OBJECT_HANDLE h;
    struct hsmca_uri u;
    enum hsmca_err rc;

    if (tok == NULL || uri == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = key_uri(tok, uri, &u);
    if (rc != HSMCA_OK)
        return rc;
    if ((u.have & HSMCA_URI_HAVE_TYPE) && strcmp(u.type, "private") != 0)
        return HSMCA_E_URI_INVALID;
    tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    /* token objects only: a signing session copy (see struct sign_pool) keeps the CKA_ID */
    tmpl[n++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
    if (u.have & HSMCA_URI_HAVE_OBJECT)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, u.object, strlen(u.object)};
    if (u.have & HSMCA_URI_HAVE_ID)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_ID, u.id, u.id_len};
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in) {
        rc = HSMCA_E_NOT_LOGGED_IN;
        goto out;
    }
    rc = find_objects(tok, tmpl, n, &h, &count);
    if (rc != HSMCA_OK)
        goto out;
    if (count == 0) {
        rc = HSMCA_E_KEY_NOT_FOUND;
        goto out;
    }
    if (count > 1) {
        rc = HSMCA_E_KEY_AMBIGUOUS;
        goto out;
    }
    rc = key_from_handle(tok, h, out);
out:
    pthread_mutex_unlock(&tok->lock);
    return rc;
}

enum hsmca_err
hsmca_token_public_key(struct hsmca_token *tok, const char *uri, EVP_PKEY **out)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[3];
    CK_ULONG n = 0, count = 0;
    CK_OBJECT_HANDLE h;
    struct hsmca_uri u;
    unsigned char id[HSMCA_KEY_ID_MAX];
    size_t id_len = 0;
    enum hsmca_err rc;

    if (tok == NULL || uri == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = key_uri(tok, uri, &u);
    if (rc != HSMCA_OK)
        return rc;
    tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    if (u.have & HSMCA_URI_HAVE_OBJECT)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, u.object, strlen(u.object)};
    if (u.have & HSMCA_URI_HAVE_ID)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_ID, u.id, u.id_len};
    pthread_mutex_lock(&tok->lock);
    rc = find_objects(tok, tmpl, n, &h, &count);
    if (rc == HSMCA_OK && count == 0)
        rc = HSMCA_E_KEY_NOT_FOUND;
    if (rc == HSMCA_OK && count > 1)
        rc = HSMCA_E_KEY_AMBIGUOUS;
    if (rc == HSMCA_OK)
        rc = get_bytes(tok, h, CKA_ID, id, sizeof(id), &id_len);
    if (rc == HSMCA_OK)
        rc = load_public(tok, id, id_len, out);
    pthread_mutex_unlock(&tok->lock);
    return rc;
}

void
hsmca_key_free(struct hsmca_key *key)
{
    struct hsmca_token *tok;

    if (key == NULL)
        return;
    tok = key->tok;
    EVP_PKEY_free(key->priv);
    EVP_PKEY_free(key->pub);
    pool_free(tok, key->pool);
    free(key);
    pthread_mutex_lock(&tok->lock);
    tok->nkeys--;
    pthread_mutex_unlock(&tok->lock);
}

EVP_PKEY *
hsmca_key_private(const struct hsmca_key *key)
{
    return key != NULL ? key->priv : NULL;
}

EVP_PKEY *
hsmca_key_public(const struct hsmca_key *key)
{
    return key != NULL ? key->pub : NULL;
}

const char *
hsmca_key_label(const struct hsmca_key *key)
{
    return key != NULL ? key->label : NULL;
}

const unsigned char *
hsmca_key_id(const struct hsmca_key *key, size_t *len_out)
{
    if (key == NULL)
        return NULL;
    if (len_out != NULL)
        *len_out = key->id_len;
    return key->id;
}

/* Take a signing session of key's pool, opening one if none is idle and fewer than the maximum are
 * open; waits for one otherwise. */
static enum hsmca_err
pool_get(const struct hsmca_key *key, CK_SESSION_HANDLE *s)
{
    struct sign_pool *p = key->pool;
    CK_SLOT_ID slot_id;
    CK_RV rv;

    pthread_mutex_lock(&p->mu);
    while (p->nidle == 0 && p->nopen + p->opening >= SIGN_SESSIONS_MAX)
        pthread_cond_wait(&p->cv, &p->mu);
    if (p->nidle > 0) {
        *s = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        return HSMCA_OK;
    }
    p->opening++;
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_lock(&key->tok->lock);
    slot_id = key->tok->slot_id;
    pthread_mutex_unlock(&key->tok->lock);
    rv = key->tok->p11->f->C_OpenSession(slot_id, CKF_SERIAL_SESSION, NULL, NULL, s);
    pthread_mutex_lock(&p->mu);
    p->opening--;
    if (rv == CKR_OK)
        p->open[p->nopen++] = *s;
    else
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rv == CKR_OK ? HSMCA_OK : ckr("C_OpenSession", rv, HSMCA_E_TOKEN_FAILED);
}

static void
pool_put(const struct hsmca_key *key, CK_SESSION_HANDLE s)
{
    struct sign_pool *p = key->pool;

    pthread_mutex_lock(&p->mu);
    p->idle[p->nidle++] = s;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Make the session copy of key on session s (which must stay open as long as the copy is used).
 * Returns its handle, or CK_INVALID_HANDLE when the token refuses or the copy is weaker than the
 * original (then nothing is left behind). */
static CK_OBJECT_HANDLE
copy_key(const struct hsmca_key *key, CK_SESSION_HANDLE s)
{
    CK_FUNCTION_LIST_PTR f = key->tok->p11->f;
    CK_BBOOL no = CK_FALSE, tok_b = CK_TRUE, sens = CK_FALSE, extr = CK_TRUE, priv = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}, {CKA_LABEL, (void *)"", 0}};
    CK_ATTRIBUTE check[] = {{CKA_TOKEN, &tok_b, sizeof(tok_b)},
                            {CKA_SENSITIVE, &sens, sizeof(sens)},
                            {CKA_EXTRACTABLE, &extr, sizeof(extr)},
                            {CKA_PRIVATE, &priv, sizeof(priv)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv;

    pthread_mutex_lock(&key->tok->p11->lock); /* object creation, serialised (SoftHSM #573) */
    rv = f->C_CopyObject(s, key->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    pthread_mutex_unlock(&key->tok->p11->lock);
    if (rv != CKR_OK)
        return CK_INVALID_HANDLE;
    rv = f->C_GetAttributeValue(s, h, check, sizeof(check) / sizeof(check[0]));
    if (rv != CKR_OK || tok_b != CK_FALSE || sens != CK_TRUE || extr != CK_FALSE ||
        priv != CK_TRUE) {
        (void)f->C_DestroyObject(s, h);
        return CK_INVALID_HANDLE;
    }
    return h;
}

/* Encode a raw r || s (2 x 32 bytes, CKM_ECDSA's output for P-256) as a DER ECDSA-Sig-Value. */
static int
ecdsa_raw_to_der(const unsigned char *raw, size_t raw_len, unsigned char *sig, size_t sig_max,
                 size_t *sig_len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = NULL, *sv = NULL;
    unsigned char *p = sig;
    int n, ok = 0;

    if (es == NULL || raw_len != 64)
        goto out;
    r = BN_bin2bn(raw, 32, NULL);
    sv = BN_bin2bn(raw + 32, 32, NULL);
    if (r == NULL || sv == NULL || ECDSA_SIG_set0(es, r, sv) != 1)
        goto out;
    r = sv = NULL;
    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || (size_t)n > sig_max || i2d_ECDSA_SIG(es, &p) != n)
        goto out;
    *sig_len = (size_t)n;
    ok = 1;
out:
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(es);
    return ok;
}

enum hsmca_err
hsmca_key_sign_digest(const struct hsmca_key *key, const unsigned char *dgst, size_t dgst_len,
                      unsigned char *sig, size_t sig_max, size_t *sig_len)
{
    CK_FUNCTION_LIST_PTR f;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE obj;
    unsigned char raw[132];
    CK_ULONG raw_len = sizeof(raw);
    struct sign_pool *p;
    enum hsmca_err rc;
    CK_RV rv;

    if (key == NULL || dgst == NULL || sig == NULL || sig_len == NULL)
        return HSMCA_E_INVALID_ARG;
    if (dgst_len < 20 || dgst_len > HSMCA_DIGEST_MAX || sig_max < HSMCA_ECDSA_P256_DER_MAX)
        return HSMCA_E_INVALID_ARG;
    f = key->tok->p11->f;
    p = key->pool;
    rc = pool_get(key, &s);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&p->mu);
    if (!p->decided && p->signed_once) {
        /* the second signature makes the copy (a one-shot signer, such as an approval, never
         * creates an object), on a session that stays open until free */
        p->copy = copy_key(key, s);
        p->copy_session = s;
        p->decided = 1;
    }
    obj = p->copy != CK_INVALID_HANDLE ? p->copy : key->handle;
    p->signed_once = 1;
    pthread_mutex_unlock(&p->mu);
    rv = f->C_SignInit(s, &mech, obj);
    if (rv == CKR_OK)
        rv = f->C_Sign(s, (CK_BYTE_PTR)dgst, dgst_len, raw, &raw_len);
    pool_put(key, s);
    if (rv != CKR_OK)
        return ckr("C_Sign", rv, HSMCA_E_SIGN_FAILED);
    if (!ecdsa_raw_to_der(raw, raw_len, sig, sig_max, sig_len))
        return HSMCA_E_SIGN_FAILED;
    return HSMCA_OK;
}

enum hsmca_err
hsmca_key_derive(const struct hsmca_key *key, EVP_PKEY *peer, struct hsmca_secret *out)
{
    struct hsmca_token *tok;
    CK_FUNCTION_LIST_PTR f;
    unsigned char point[65];
    size_t plen = 0;
    CK_ECDH1_DERIVE_PARAMS params;
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &params, sizeof(params)};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG vlen = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},       {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &vlen, sizeof(vlen)}, {CKA_TOKEN, &no, sizeof(no)},
        {CKA_SENSITIVE, &no, sizeof(no)},     {CKA_EXTRACTABLE, &yes, sizeof(yes)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    struct hsmca_secret s = {NULL, 0};
    enum hsmca_err rc;
    CK_RV rv;

    if (key == NULL || peer == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    if (EVP_PKEY_get_base_id(peer) != EVP_PKEY_EC)
        return HSMCA_E_INVALID_ARG;
    {
        char group[32];
        size_t glen = 0;

        if (!EVP_PKEY_get_utf8_string_param(peer, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &glen) ||
            strcmp(group, "prime256v1") != 0)
            return HSMCA_E_INVALID_ARG;
    }
    if (!EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                         sizeof(point), &plen) ||
        plen != 65)
        return HSMCA_E_INVALID_ARG;
    memset(&params, 0, sizeof(params));
    params.kdf = CKD_NULL;
    params.pPublicData = point;
    params.ulPublicDataLen = plen;
    tok = key->tok;
    f = tok->p11->f;
    rc = hsmca_secret_set(&s, NULL, 32);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    rv = f->C_DeriveKey(tok->session, &mech, key->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    if (rv != CKR_OK) {
        rc = ckr("C_DeriveKey", rv, HSMCA_E_TOKEN_FAILED);
        goto out;
    }
    {
        CK_ATTRIBUTE v = {CKA_VALUE, s.p, 32};

        rv = f->C_GetAttributeValue(tok->session, h, &v, 1);
        if (rv != CKR_OK || v.ulValueLen != 32) {
            rc = ckr("C_GetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
            if (rc == HSMCA_OK)
                rc = HSMCA_E_TOKEN_FAILED;
            goto out;
        }
    }
    *out = s;
    s.p = NULL;
    s.len = 0;
    rc = HSMCA_OK;
out:
    if (h != CK_INVALID_HANDLE)
        (void)f->C_DestroyObject(tok->session, h);
    pthread_mutex_unlock(&tok->lock);
    hsmca_secret_clear(&s);
    return rc;
}

enum hsmca_err
hsmca_key_attrs(const struct hsmca_key *key, struct hsmca_key_attrs *out)
{
    struct hsmca_token *tok;
    CK_ATTRIBUTE v = {CKA_VALUE, NULL, 0};
    CK_RV rv;

    if (key == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    tok = key->tok;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&tok->lock);
    out->token = get_bool(tok, key->handle, CKA_TOKEN);
    out->private_ = get_bool(tok, key->handle, CKA_PRIVATE);
    out->sensitive = get_bool(tok, key->handle, CKA_SENSITIVE);
    out->always_sensitive = get_bool(tok, key->handle, CKA_ALWAYS_SENSITIVE);
    out->extractable = get_bool(tok, key->handle, CKA_EXTRACTABLE);
    out->never_extractable = get_bool(tok, key->handle, CKA_NEVER_EXTRACTABLE);
    out->local = get_bool(tok, key->handle, CKA_LOCAL);
    out->sign = get_bool(tok, key->handle, CKA_SIGN);
    out->derive = get_bool(tok, key->handle, CKA_DERIVE);
    out->decrypt = get_bool(tok, key->handle, CKA_DECRYPT);
    out->unwrap = get_bool(tok, key->handle, CKA_UNWRAP);
    rv = tok->p11->f->C_GetAttributeValue(tok->session, key->handle, &v, 1);
    out->value_rv = (unsigned long)rv;
    out->value_readable = rv == CKR_OK && v.ulValueLen != CK_UNAVAILABLE_INFORMATION;
    pthread_mutex_unlock(&tok->lock);
    return HSMCA_OK;
}

static enum hsmca_err
data_find(struct hsmca_token *tok, const char *label, CK_OBJECT_HANDLE *h, CK_ULONG *count)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_LABEL, (void *)label, strlen(label)}};

    return find_objects(tok, tmpl, 2, h, count);
}

enum hsmca_err
hsmca_token_data_write(struct hsmca_token *tok, const char *label, const unsigned char *value,
                       size_t len)
{
    CK_FUNCTION_LIST_PTR f;
    CK_OBJECT_HANDLE h;
    CK_ULONG count = 0;
    enum hsmca_err rc;
    size_t llen;
    CK_RV rv;

    if (tok == NULL || label == NULL || (value == NULL && len > 0))
        return HSMCA_E_INVALID_ARG;
    llen = strlen(label);
    if (llen == 0 || llen > HSMCA_KEY_LABEL_MAX)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_DATA_OBJECT_MAX)
        return HSMCA_E_TOO_LARGE;
    f = tok->p11->f;
    pthread_mutex_lock(&tok->p11->lock);
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in) {
        rc = HSMCA_E_NOT_LOGGED_IN;
        goto out;
    }
    rc = data_find(tok, label, &h, &count);
    if (rc != HSMCA_OK)
        goto out;
    if (count > 1) {
        rc = HSMCA_E_KEY_AMBIGUOUS;
        goto out;
    }
    {
        /* SoftHSM cannot modify a data object's CKA_VALUE, so replace it crash-safely: create
         * "<label>.new", destroy the old object, rename the new one. A reader that finds no
         * "<label>" takes "<label>.new"; one that finds both takes the (older) "<label>". */
        CK_OBJECT_CLASS cls = CKO_DATA;
        CK_BBOOL yes = CK_TRUE;
        char tmp_label[HSMCA_KEY_LABEL_MAX + 5];
        CK_OBJECT_HANDLE hn, stale;
        CK_ULONG nstale = 0;
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},   {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)}, {CKA_MODIFIABLE, &yes, sizeof(yes)},
            {CKA_LABEL, tmp_label, 0},        {CKA_VALUE, (void *)value, len},
        };
        CK_ATTRIBUTE rename = {CKA_LABEL, (void *)label, llen};

        snprintf(tmp_label, sizeof(tmp_label), "%s.new", label);
        tmpl[4].ulValueLen = strlen(tmp_label);
        /* a leftover "<label>.new" from a crash is older than what we write now */
        rc = data_find(tok, tmp_label, &stale, &nstale);
        if (rc != HSMCA_OK)
            goto out;
        if (nstale == 1)
            (void)f->C_DestroyObject(tok->session, stale);
        rv = f->C_CreateObject(tok->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &hn);
        if (rv != CKR_OK) {
            rc = ckr("C_CreateObject", rv, HSMCA_E_TOKEN_FAILED);
            goto out;
        }
        if (count == 1) {
            rv = f->C_DestroyObject(tok->session, h);
            if (rv != CKR_OK) {
                (void)f->C_DestroyObject(tok->session, hn);
                rc = ckr("C_DestroyObject", rv, HSMCA_E_TOKEN_FAILED);
                goto out;
            }
        }
        rv = f->C_SetAttributeValue(tok->session, hn, &rename, 1);
        rc = ckr("C_SetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
    }
out:
    pthread_mutex_unlock(&tok->lock);
    pthread_mutex_unlock(&tok->p11->lock);
    return rc;
}

enum hsmca_err
hsmca_token_data_read(struct hsmca_token *tok, const char *label, unsigned char *buf,
                      size_t buf_max, size_t *len)
{
    CK_OBJECT_HANDLE h;
    CK_ULONG count = 0;
    enum hsmca_err rc;

    if (tok == NULL || label == NULL || buf == NULL || len == NULL)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in) {
        rc = HSMCA_E_NOT_LOGGED_IN;
        goto out;
    }
    rc = data_find(tok, label, &h, &count);
    if (rc != HSMCA_OK)
        goto out;
    if (count == 0 && strlen(label) <= HSMCA_KEY_LABEL_MAX) {
        char tmp_label[HSMCA_KEY_LABEL_MAX + 5];

        /* a replace interrupted between destroy and rename (see hsmca_token_data_write) */
        snprintf(tmp_label, sizeof(tmp_label), "%s.new", label);
        rc = data_find(tok, tmp_label, &h, &count);
        if (rc != HSMCA_OK)
            goto out;
    }
    if (count == 0) {
        rc = HSMCA_E_NOT_FOUND;
        goto out;
    }
    if (count > 1) {
        rc = HSMCA_E_KEY_AMBIGUOUS;
        goto out;
    }
    rc = get_bytes(tok, h, CKA_VALUE, buf, buf_max, len);
out:
    pthread_mutex_unlock(&tok->lock);
    return rc;
}
