/* SPDX-License-Identifier: Apache-2.0
 *
 * token_data.c -- small data objects (CKO_DATA) on a token: write and read by label.
 */
#include <time.h>

#include "hsmca/util.h"

#include "token_internal.h"

/*
 * A data object is replaced without ever leaving the token with none: each write creates a new
 * object under the label, stamped (CKA_APPLICATION) with a write stamp higher than every stamp it
 * found, then destroys the objects with lower stamps. A reader takes the object with the highest
 * stamp. Two writers at once (hsmcad nodes sharing the audit token through a network module)
 * each destroy only what is older than their own object, so the newest object always survives,
 * and a crash between create and destroy leaves two objects, of which the reader takes the newer.
 * A reader whose search found only copies that another writer destroyed before it read them
 * looks again (that writer's newer copy is in by then): it never answers "none" for a replace.
 * Objects from older versions (no stamp; or the "<label>.new" of their create-destroy-rename
 * replace) count as the oldest.
 */
#define STAMP_LEN 32 /* 16 hex digits of nanoseconds, 16 hex digits of randomness */
#define MAX_COPIES 16

struct data_copy {
    CK_OBJECT_HANDLE h;
    char stamp[STAMP_LEN + 1]; /* "" when unstamped */
};

/* Append the handles of the data objects labelled label (at most MAX_COPIES in all) to c. */
static enum hsmca_err
data_find_all(struct hsmca_token *tok, const char *label, struct data_copy *c, size_t *n)
{
    CK_FUNCTION_LIST_PTR f = tok->p11->f;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h[MAX_COPIES];
    CK_ULONG got = 0, i;
    CK_RV rv;

    rv = f->C_FindObjectsInit(tok->session, tmpl, 2);
    if (rv != CKR_OK)
        return tok_ckr("C_FindObjectsInit", rv, HSMCA_E_TOKEN_FAILED);
    rv = f->C_FindObjects(tok->session, h, (CK_ULONG)(MAX_COPIES - *n), &got);
    (void)f->C_FindObjectsFinal(tok->session);
    if (rv != CKR_OK)
        return tok_ckr("C_FindObjects", rv, HSMCA_E_TOKEN_FAILED);
    for (i = 0; i < got; i++) {
        c[*n].h = h[i];
        c[*n].stamp[0] = '\0';
        (*n)++;
    }
    return HSMCA_OK;
}

/*
 * Every copy of label's object (label and the legacy "<label>.new") with its stamp, and the
 * index of the newest in *best (-1 when there is none). A copy that vanished under us (another
 * writer destroyed it) is dropped and counted in *gone (may be NULL).
 */
static enum hsmca_err
data_copies(struct hsmca_token *tok, const char *label, struct data_copy *c, size_t *n, long *best,
            size_t *gone)
{
    char legacy[HSMCA_KEY_LABEL_MAX + 5];
    enum hsmca_err rc;
    size_t i, k = 0, len;

    *n = 0;
    *best = -1;
    rc = data_find_all(tok, label, c, n);
    snprintf(legacy, sizeof(legacy), "%s.new", label);
    if (rc == HSMCA_OK)
        rc = data_find_all(tok, legacy, c, n);
    if (rc != HSMCA_OK)
        return rc;
    for (i = 0; i < *n; i++) {
        CK_ATTRIBUTE a = {CKA_APPLICATION, c[i].stamp, STAMP_LEN};
        CK_RV rv = tok->p11->f->C_GetAttributeValue(tok->session, c[i].h, &a, 1);

        if (rv == CKR_OBJECT_HANDLE_INVALID) { /* destroyed by another writer since the find */
            if (gone != NULL)
                (*gone)++;
            continue;
        }
        len = (rv == CKR_OK && a.ulValueLen == STAMP_LEN) ? STAMP_LEN : 0;
        if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL && rv != CKR_ATTRIBUTE_TYPE_INVALID)
            return tok_ckr("C_GetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
        c[k] = c[i];
        c[k].stamp[len] = '\0';
        if (*best < 0 || strcmp(c[k].stamp, c[*best].stamp) > 0)
            *best = (long)k;
        k++;
    }
    *n = k;
    return HSMCA_OK;
}

/* A stamp above every stamp in c[0..n): the clock, or the highest seen plus one. */
static enum hsmca_err
new_stamp(const struct data_copy *c, size_t n, char out[STAMP_LEN + 1])
{
    unsigned char rnd[8];
    struct timespec ts;
    uint64_t t, seen;
    size_t i, used = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    for (i = 0; i < n; i++) {
        if (c[i].stamp[0] == '\0' ||
            hsmca_hex_decode(c[i].stamp, 16, rnd, sizeof(rnd), &used) != HSMCA_OK || used != 8)
            continue;
        seen = 0;
        for (used = 0; used < 8; used++)
            seen = seen << 8 | rnd[used];
        if (seen >= t)
            t = seen + 1;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return HSMCA_E_INTERNAL;
    snprintf(out, STAMP_LEN + 1, "%016llx", (unsigned long long)t);
    hsmca_hex_encode(rnd, sizeof(rnd), out + 16, STAMP_LEN + 1 - 16);
    return HSMCA_OK;
}

enum hsmca_err
hsmca_token_data_write(struct hsmca_token *tok, const char *label, const unsigned char *value,
                       size_t len)
{
    struct data_copy c[MAX_COPIES];
    char stamp[STAMP_LEN + 1];
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE;
    CK_FUNCTION_LIST_PTR f;
    CK_OBJECT_HANDLE hn;
    enum hsmca_err rc;
    size_t n = 0, i, llen;
    long best;
    CK_RV rv;

    if (tok == NULL || label == NULL || (value == NULL && len > 0))
        return HSMCA_E_INVALID_ARG;
    llen = strlen(label);
    if (llen == 0 || llen > HSMCA_KEY_LABEL_MAX)
        return HSMCA_E_INVALID_ARG;
    if (len > HSMCA_DATA_OBJECT_MAX)
        return HSMCA_E_TOO_LARGE;
    f = tok->p11->f;
    rc = tok_lock_write(tok);
    if (rc != HSMCA_OK)
        return rc;
    rc = data_copies(tok, label, c, &n, &best, NULL);
    if (rc == HSMCA_OK)
        rc = new_stamp(c, n, stamp);
    if (rc != HSMCA_OK)
        goto out;
    {
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},   {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)}, {CKA_MODIFIABLE, &yes, sizeof(yes)},
            {CKA_LABEL, (void *)label, llen}, {CKA_APPLICATION, stamp, STAMP_LEN},
            {CKA_VALUE, (void *)value, len},
        };

        rv = f->C_CreateObject(tok->session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &hn);
    }
    if (rv != CKR_OK) {
        rc = tok_ckr("C_CreateObject", rv, HSMCA_E_TOKEN_FAILED);
        goto out;
    }
    /* the new object is in: every older copy may go (one that is already gone went to another
     * writer; one that fails to go is left for the next write, and readers skip it) */
    for (i = 0; i < n; i++) {
        if (strcmp(c[i].stamp, stamp) >= 0)
            continue;
        rv = f->C_DestroyObject(tok->session, c[i].h);
        if (rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
            hsmca_log(HSMCA_LOG_WARN, "token", "data-old-copy-kept", "label=%s rv=0x%lx", label,
                      (unsigned long)rv);
    }
out:
    tok_unlock_write(tok);
    return rc;
}

enum hsmca_err
hsmca_token_data_read(struct hsmca_token *tok, const char *label, unsigned char *buf,
                      size_t buf_max, size_t *len)
{
    struct data_copy c[MAX_COPIES];
    enum hsmca_err rc;
    size_t n = 0;
    long best;
    int tries;

    if (tok == NULL || label == NULL || buf == NULL || len == NULL)
        return HSMCA_E_INVALID_ARG;
    if (strlen(label) == 0 || strlen(label) > HSMCA_KEY_LABEL_MAX)
        return HSMCA_E_INVALID_ARG;
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in) {
        rc = HSMCA_E_NOT_LOGGED_IN;
        goto out;
    }
    /* the copies found can be destroyed before they are read only by a writer whose newer copy
     * is already in: look again (bounded), whether the newest vanished before its stamp was read
     * (none left: not "no object") or before its value was */
    for (tries = 0; tries < 8; tries++) {
        size_t gone = 0;

        rc = data_copies(tok, label, c, &n, &best, &gone);
        if (rc != HSMCA_OK)
            goto out;
        if (best < 0) {
            rc = HSMCA_E_NOT_FOUND;
            if (gone > 0)
                continue;
            goto out;
        }
        rc = tok_get_bytes(tok, c[best].h, CKA_VALUE, buf, buf_max, len);
        if (rc != HSMCA_E_TOKEN_FAILED && rc != HSMCA_E_KEY_NOT_FOUND)
            break;
    }
out:
    pthread_mutex_unlock(&tok->lock);
    return rc;
}
