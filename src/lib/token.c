/* SPDX-License-Identifier: Apache-2.0
 *
 * token.c -- tokens: finding, opening, initialising, login, PINs and probing. token.c and its
 * pieces (token_module.c, token_uri.c, token_key.c, token_sign.c, token_data.c, sharing
 * token_internal.h) are the only files that speak PKCS#11 (libp11 and the module's function list).
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
#include "token_internal.h"

/* ---- tokens ---- */

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
        return tok_ckr("C_GetSlotList", rv, HSMCA_E_TOKEN_FAILED);
    ids = calloc(n + 1, sizeof(*ids));
    if (ids == NULL)
        return HSMCA_E_NOMEM;
    rv = p11->f->C_GetSlotList(CK_TRUE, ids, &n);
    if (rv != CKR_OK) {
        free(ids);
        return tok_ckr("C_GetSlotList", rv, HSMCA_E_TOKEN_FAILED);
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
        return tok_ckr("C_OpenSession", rv, HSMCA_E_TOKEN_FAILED);
    }
    pthread_mutex_init(&t->lock, NULL);
    {
        CK_TOKEN_INFO ti;

        if (p11->f->C_GetTokenInfo(id, &ti) == CKR_OK) {
            tok_trim_copy(t->label, sizeof(t->label), ti.label, sizeof(ti.label));
            tok_trim_copy(t->serial, sizeof(t->serial), ti.serialNumber, sizeof(ti.serialNumber));
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
        if (tok_matches(&u, &ti)) {
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

/* Lock tok when no key handle of it is open (HSMCA_OK, tok->lock held), else HSMCA_E_BUSY. */
static enum hsmca_err
lock_idle(struct hsmca_token *tok)
{
    pthread_mutex_lock(&tok->lock);
    if (tok->nkeys == 0)
        return HSMCA_OK;
    pthread_mutex_unlock(&tok->lock);
    return HSMCA_E_BUSY;
}

enum hsmca_err
hsmca_token_free(struct hsmca_token *tok)
{
    struct hsmca_p11 *p11;

    if (tok == NULL)
        return HSMCA_OK;
    if (lock_idle(tok) != HSMCA_OK)
        return HSMCA_E_BUSY;
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
        tok_trim_copy(have, sizeof(have), ti.label, sizeof(ti.label));
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
        rc = tok_ckr("C_InitToken", rv, HSMCA_E_TOKEN_FAILED);
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
        rc = tok_ckr("C_InitPIN", rv, HSMCA_E_TOKEN_FAILED);
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
        return tok_ckr("C_GetTokenInfo", rv, HSMCA_E_TOKEN_FAILED);
    memset(out, 0, sizeof(*out));
    tok_trim_copy(out->label, sizeof(out->label), ti.label, sizeof(ti.label));
    tok_trim_copy(out->serial, sizeof(out->serial), ti.serialNumber, sizeof(ti.serialNumber));
    tok_trim_copy(out->manufacturer, sizeof(out->manufacturer), ti.manufacturerID,
                  sizeof(ti.manufacturerID));
    tok_trim_copy(out->model, sizeof(out->model), ti.model, sizeof(ti.model));
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

/*
 * The start of every PIN operation: tok given, PINs a and b of a length the token takes, the
 * before-write hook for hook (NULL: none), then tok->lock taken and kept when tok is logged in
 * as logged_in says (else HSMCA_E_NOT_LOGGED_IN or HSMCA_E_ALREADY_LOGGED_IN, unlocked).
 */
static enum hsmca_err
pin_op_begin(struct hsmca_token *tok, const struct hsmca_secret *a, const struct hsmca_secret *b,
             const char *hook, int logged_in)
{
    enum hsmca_err rc;

    if (tok == NULL)
        return HSMCA_E_INVALID_ARG;
    rc = check_pin(a);
    if (rc == HSMCA_OK)
        rc = check_pin(b);
    if (rc == HSMCA_OK && hook != NULL)
        rc = before_write(tok, hook);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in != !logged_in) {
        pthread_mutex_unlock(&tok->lock);
        return logged_in ? HSMCA_E_NOT_LOGGED_IN : HSMCA_E_ALREADY_LOGGED_IN;
    }
    return HSMCA_OK;
}

enum hsmca_err
hsmca_token_login(struct hsmca_token *tok, const struct hsmca_secret *pin)
{
    enum hsmca_err rc = pin_op_begin(tok, pin, pin, "C_Login", 0);
    CK_RV rv;

    if (rc != HSMCA_OK)
        return rc;
    rv = tok->p11->f->C_Login(tok->session, CKU_USER, pin->p, pin->len);
    if (rv == CKR_OK)
        tok->logged_in = 1;
    pthread_mutex_unlock(&tok->lock);
    return tok_ckr("C_Login", rv, HSMCA_E_TOKEN_FAILED);
}

enum hsmca_err
hsmca_token_logout(struct hsmca_token *tok)
{
    CK_RV rv;

    if (tok == NULL)
        return HSMCA_E_INVALID_ARG;
    if (lock_idle(tok) != HSMCA_OK)
        return HSMCA_E_BUSY;
    rv = tok->p11->f->C_Logout(tok->session);
    tok->logged_in = 0;
    pthread_mutex_unlock(&tok->lock);
    if (rv == CKR_USER_NOT_LOGGED_IN)
        return HSMCA_OK;
    return tok_ckr("C_Logout", rv, HSMCA_E_TOKEN_FAILED);
}

/* In an SO session opened with so_pin and closed again: set the user PIN to pin (C_InitPIN), or
 * with change_so change the SO PIN to pin (C_SetPIN in an SO session, PKCS#11 v2.40, 5.6). */
static enum hsmca_err
so_session_pin(struct hsmca_token *tok, const struct hsmca_secret *so_pin,
               const struct hsmca_secret *pin, int change_so)
{
    enum hsmca_err rc = pin_op_begin(tok, so_pin, pin, NULL, 0);
    CK_RV rv;

    if (rc != HSMCA_OK)
        return rc;
    rv = tok->p11->f->C_Login(tok->session, CKU_SO, so_pin->p, so_pin->len);
    if (rv == CKR_OK) {
        if (change_so)
            rv = tok->p11->f->C_SetPIN(tok->session, so_pin->p, so_pin->len, pin->p, pin->len);
        else
            rv = tok->p11->f->C_InitPIN(tok->session, pin->p, pin->len);
        (void)tok->p11->f->C_Logout(tok->session);
        rc = tok_ckr(change_so ? "C_SetPIN(SO)" : "C_InitPIN", rv, HSMCA_E_TOKEN_FAILED);
    } else {
        rc = tok_ckr("C_Login(SO)", rv, HSMCA_E_TOKEN_FAILED);
    }
    pthread_mutex_unlock(&tok->lock);
    return rc;
}

enum hsmca_err
hsmca_token_init_pin(struct hsmca_token *tok, const struct hsmca_secret *so_pin,
                     const struct hsmca_secret *new_pin)
{
    return so_session_pin(tok, so_pin, new_pin, 0);
}

enum hsmca_err
hsmca_token_set_pin(struct hsmca_token *tok, const struct hsmca_secret *old_pin,
                    const struct hsmca_secret *new_pin)
{
    enum hsmca_err rc = pin_op_begin(tok, old_pin, new_pin, "C_SetPIN", 1);
    CK_RV rv;

    if (rc != HSMCA_OK)
        return rc;
    rv = tok->p11->f->C_SetPIN(tok->session, old_pin->p, old_pin->len, new_pin->p, new_pin->len);
    pthread_mutex_unlock(&tok->lock);
    return tok_ckr("C_SetPIN", rv, HSMCA_E_TOKEN_FAILED);
}

enum hsmca_err
hsmca_token_set_so_pin(struct hsmca_token *tok, const struct hsmca_secret *old_so,
                       const struct hsmca_secret *new_so)
{
    return so_session_pin(tok, old_so, new_so, 1);
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

    tok_trim_copy(label, sizeof(label), ti->label, sizeof(ti->label));
    tok_trim_copy(serial, sizeof(serial), ti->serialNumber, sizeof(ti->serialNumber));
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
        return tok_ckr("C_OpenSession", rv, HSMCA_E_TOKEN_REMOVED);
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
