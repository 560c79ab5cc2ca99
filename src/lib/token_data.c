/* SPDX-License-Identifier: Apache-2.0
 *
 * token_data.c -- small data objects (CKO_DATA) on a token: write and read by label.
 */
#include "token_internal.h"

static enum hsmca_err
data_find(struct hsmca_token *tok, const char *label, CK_OBJECT_HANDLE *h, CK_ULONG *count)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_LABEL, (void *)label, strlen(label)}};

    return tok_find_objects(tok, tmpl, 2, h, count);
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
        /* two writers on one token (hsmcad nodes sharing the audit token through a network
         * module) can each complete a replace and leave two "<label>" objects: every one of them
         * is older than what is written now, so all go and the write starts afresh */
        CK_OBJECT_HANDLE all[8];
        CK_ULONG n = 0, i;
        CK_OBJECT_CLASS dcls = CKO_DATA;
        CK_ATTRIBUTE dt[] = {{CKA_CLASS, &dcls, sizeof(dcls)}, {CKA_LABEL, (void *)label, llen}};

        if (f->C_FindObjectsInit(tok->session, dt, 2) != CKR_OK) {
            rc = HSMCA_E_TOKEN_FAILED;
            goto out;
        }
        rv = f->C_FindObjects(tok->session, all, 8, &n);
        (void)f->C_FindObjectsFinal(tok->session);
        if (rv != CKR_OK) {
            rc = tok_ckr("C_FindObjects", rv, HSMCA_E_TOKEN_FAILED);
            goto out;
        }
        for (i = 0; i < n; i++) {
            rv = f->C_DestroyObject(tok->session, all[i]);
            if (rv != CKR_OK) {
                rc = tok_ckr("C_DestroyObject", rv, HSMCA_E_TOKEN_FAILED);
                goto out;
            }
        }
        count = 0;
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
            rc = tok_ckr("C_CreateObject", rv, HSMCA_E_TOKEN_FAILED);
            goto out;
        }
        if (count == 1) {
            rv = f->C_DestroyObject(tok->session, h);
            if (rv != CKR_OK) {
                (void)f->C_DestroyObject(tok->session, hn);
                rc = tok_ckr("C_DestroyObject", rv, HSMCA_E_TOKEN_FAILED);
                goto out;
            }
        }
        rv = f->C_SetAttributeValue(tok->session, hn, &rename, 1);
        rc = tok_ckr("C_SetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
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
    rc = tok_get_bytes(tok, h, CKA_VALUE, buf, buf_max, len);
out:
    pthread_mutex_unlock(&tok->lock);
    return rc;
}
