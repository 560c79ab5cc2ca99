/* SPDX-License-Identifier: Apache-2.0
 *
 * token_module.c -- the PKCS#11 module: CK_RV to hsmca codes, opening the module through
 * libp11 and finding the function list libp11 initialised (see token.c for the room's rules).
 */
#include "token_internal.h"

enum hsmca_err
tok_ckr(const char *fn, CK_RV rv, enum hsmca_err fallback)
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
void
tok_trim_copy(char *out, size_t out_size, const unsigned char *in, size_t n)
{
    if (n >= out_size)
        n = out_size - 1;
    memcpy(out, in, n);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\0'))
        n--;
    out[n] = '\0';
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

/*
 * Tear p down. Order matters (SoftHSM's static destructors crash if OpenSSL or libp11 go first):
 * libp11's slots and sessions, then C_Finalize (when hsmca initialised the module) and unload,
 * then our own handle.
 */
static void
p11_destroy(struct hsmca_p11 *p)
{
    while (p->narrays > 0) {
        struct slot_array *a = &p->arrays[--p->narrays];

        PKCS11_release_all_slots(p->ctx, a->slots, a->n);
    }
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
    if (p != NULL)
        p11_destroy(p);
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
    p11_destroy(p11);
    return HSMCA_OK;
}
