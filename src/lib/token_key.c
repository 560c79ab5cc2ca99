/* SPDX-License-Identifier: Apache-2.0
 *
 * token_key.c -- objects and keys on a token's control session: finding objects, reading
 * attributes, generating non-extractable P-256 keys, key handles and their accessors.
 */
#include "token_internal.h"

/* DER of the prime256v1 OID, the CKA_EC_PARAMS of every hsmca key. */
static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

/* ---- objects (control session; caller holds tok->lock) ---- */

/* Count objects matching tmpl; store the first handle in *first. */
enum hsmca_err
tok_lock_write(struct hsmca_token *tok)
{
    pthread_mutex_lock(&tok->p11->lock);
    pthread_mutex_lock(&tok->lock);
    if (tok->logged_in)
        return HSMCA_OK;
    pthread_mutex_unlock(&tok->lock);
    pthread_mutex_unlock(&tok->p11->lock);
    return HSMCA_E_NOT_LOGGED_IN;
}

void
tok_unlock_write(struct hsmca_token *tok)
{
    pthread_mutex_unlock(&tok->lock);
    pthread_mutex_unlock(&tok->p11->lock);
}

enum hsmca_err
tok_find_objects(struct hsmca_token *tok, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *first,
                 CK_ULONG *count)
{
    CK_FUNCTION_LIST_PTR f = tok->p11->f;
    CK_OBJECT_HANDLE h[2];
    CK_ULONG got = 0, total = 0;
    CK_RV rv;

    rv = f->C_FindObjectsInit(tok->session, tmpl, n);
    if (rv != CKR_OK)
        return tok_ckr("C_FindObjectsInit", rv, HSMCA_E_TOKEN_FAILED);
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
        return tok_ckr("C_FindObjects", rv, HSMCA_E_TOKEN_FAILED);
    *count = total;
    return HSMCA_OK;
}

enum hsmca_err
tok_find_one(struct hsmca_token *tok, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *h,
             enum hsmca_err none)
{
    CK_ULONG count = 0;
    enum hsmca_err rc = tok_find_objects(tok, tmpl, n, h, &count);

    if (rc == HSMCA_OK && count == 0)
        rc = none;
    if (rc == HSMCA_OK && count > 1)
        rc = HSMCA_E_KEY_AMBIGUOUS;
    return rc;
}

int
tok_get_bool(struct hsmca_token *tok, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};

    if (tok->p11->f->C_GetAttributeValue(tok->session, h, &a, 1) != CKR_OK)
        return -1;
    return v == CK_TRUE;
}

/* Read a variable-length attribute into buf[0..max); *len gets its length. */
enum hsmca_err
tok_get_bytes(struct hsmca_token *tok, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
              unsigned char *buf, size_t max, size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv;

    rv = tok->p11->f->C_GetAttributeValue(tok->session, h, &a, 1);
    if (rv != CKR_OK)
        return tok_ckr("C_GetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > max)
        return HSMCA_E_TOO_LARGE;
    a.pValue = buf;
    rv = tok->p11->f->C_GetAttributeValue(tok->session, h, &a, 1);
    if (rv != CKR_OK)
        return tok_ckr("C_GetAttributeValue", rv, HSMCA_E_TOKEN_FAILED);
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
    enum hsmca_err rc;

    rc = tok_find_one(tok, tmpl, 2, &h, HSMCA_E_KEY_NOT_FOUND);
    if (rc != HSMCA_OK)
        return rc;
    rc = tok_get_bytes(tok, h, CKA_EC_PARAMS, params, sizeof(params), &plen);
    if (rc != HSMCA_OK)
        return rc;
    if (plen != sizeof(p256_oid) || memcmp(params, p256_oid, plen) != 0)
        return HSMCA_E_MECHANISM; /* not a P-256 key: hsmca makes no other */
    rc = tok_get_bytes(tok, h, CKA_EC_POINT, point, sizeof(point), &ptlen);
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
    rc = tok_get_bytes(tok, h, CKA_LABEL, (unsigned char *)k->label, HSMCA_KEY_LABEL_MAX, &len);
    if (rc != HSMCA_OK)
        goto out;
    k->label[len] = '\0';
    rc = tok_get_bytes(tok, h, CKA_ID, k->id, sizeof(k->id), &k->id_len);
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
    rc = tok_lock_write(tok);
    if (rc != HSMCA_OK)
        return rc;
    {
        /* No second object with this label (of any class), no second key with this id. */
        CK_ATTRIBUTE by_label[] = {{CKA_LABEL, (void *)label, llen}};
        CK_ATTRIBUTE by_id_priv[] = {{CKA_CLASS, &priv_cls, sizeof(priv_cls)},
                                     {CKA_ID, (void *)id, id_len}};
        CK_ATTRIBUTE by_id_pub[] = {{CKA_CLASS, &pub_cls, sizeof(pub_cls)},
                                    {CKA_ID, (void *)id, id_len}};

        rc = tok_find_objects(tok, by_label, 1, &first, &count);
        if (rc == HSMCA_OK && count == 0)
            rc = tok_find_objects(tok, by_id_priv, 2, &first, &count);
        if (rc == HSMCA_OK && count == 0)
            rc = tok_find_objects(tok, by_id_pub, 2, &first, &count);
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
            rc = tok_ckr("C_GenerateKeyPair", rv, HSMCA_E_TOKEN_FAILED);
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
    tok_unlock_write(tok);
    return rc;
}

/* Check uri's token attributes against tok and append its object= and id= to the search template
 * tmpl[0..*n) as CKA_LABEL and CKA_ID. */
static enum hsmca_err
key_uri(struct hsmca_token *tok, const char *uri, struct hsmca_uri *u, CK_ATTRIBUTE *tmpl,
        CK_ULONG *n)
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
            return tok_ckr("C_GetTokenInfo", rv, HSMCA_E_TOKEN_FAILED);
        if (!tok_matches(u, &ti))
            return HSMCA_E_KEY_NOT_FOUND;
    }
    if (u->have & HSMCA_URI_HAVE_OBJECT)
        tmpl[(*n)++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)u->object, strlen(u->object)};
    if (u->have & HSMCA_URI_HAVE_ID)
        tmpl[(*n)++] = (CK_ATTRIBUTE){CKA_ID, (void *)u->id, u->id_len};
    return HSMCA_OK;
}

enum hsmca_err
hsmca_token_find_key(struct hsmca_token *tok, const char *uri, struct hsmca_key **out)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[4];
    CK_ULONG n = 0;
    CK_OBJECT_HANDLE h;
    struct hsmca_uri u;
    enum hsmca_err rc;

    if (tok == NULL || uri == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    /* token objects only: a signing session copy (see struct sign_pool) keeps the CKA_ID */
    tmpl[n++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
    rc = key_uri(tok, uri, &u, tmpl, &n);
    if (rc != HSMCA_OK)
        return rc;
    if ((u.have & HSMCA_URI_HAVE_TYPE) && strcmp(u.type, "private") != 0)
        return HSMCA_E_URI_INVALID;
    pthread_mutex_lock(&tok->lock);
    if (!tok->logged_in)
        rc = HSMCA_E_NOT_LOGGED_IN;
    else
        rc = tok_find_one(tok, tmpl, n, &h, HSMCA_E_KEY_NOT_FOUND);
    if (rc == HSMCA_OK)
        rc = key_from_handle(tok, h, out);
    pthread_mutex_unlock(&tok->lock);
    return rc;
}

enum hsmca_err
hsmca_token_public_key(struct hsmca_token *tok, const char *uri, EVP_PKEY **out)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[3];
    CK_ULONG n = 0;
    CK_OBJECT_HANDLE h;
    struct hsmca_uri u;
    unsigned char id[HSMCA_KEY_ID_MAX];
    size_t id_len = 0;
    enum hsmca_err rc;

    if (tok == NULL || uri == NULL || out == NULL)
        return HSMCA_E_INVALID_ARG;
    tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    rc = key_uri(tok, uri, &u, tmpl, &n);
    if (rc != HSMCA_OK)
        return rc;
    pthread_mutex_lock(&tok->lock);
    rc = tok_find_one(tok, tmpl, n, &h, HSMCA_E_KEY_NOT_FOUND);
    if (rc == HSMCA_OK)
        rc = tok_get_bytes(tok, h, CKA_ID, id, sizeof(id), &id_len);
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

enum hsmca_err
hsmca_key_destroy(struct hsmca_key *key)
{
    CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY;
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv;
    CK_FUNCTION_LIST_PTR f;
    struct hsmca_token *tok;
    CK_ULONG count = 0;
    enum hsmca_err rc;
    CK_RV rv;

    if (key == NULL)
        return HSMCA_E_INVALID_ARG;
    tok = key->tok;
    f = tok->p11->f;
    hpriv = key->handle;
    /* the handle first: its signing sessions and their session copy of the key go with it */
    {
        CK_ATTRIBUTE by_id_pub[] = {{CKA_CLASS, &pub_cls, sizeof(pub_cls)},
                                    {CKA_ID, (void *)key->id, key->id_len}};

        pthread_mutex_lock(&tok->lock);
        rc = tok->logged_in ? tok_find_objects(tok, by_id_pub, 2, &hpub, &count)
                            : HSMCA_E_NOT_LOGGED_IN;
        pthread_mutex_unlock(&tok->lock);
    }
    hsmca_key_free(key);
    if (rc != HSMCA_OK)
        return rc;
    if (count > 1)
        return HSMCA_E_KEY_AMBIGUOUS; /* never guess which public key to destroy */
    pthread_mutex_lock(&tok->p11->lock);
    pthread_mutex_lock(&tok->lock);
    rv = f->C_DestroyObject(tok->session, hpriv);
    rc = rv == CKR_OK ? HSMCA_OK : tok_ckr("C_DestroyObject", rv, HSMCA_E_TOKEN_FAILED);
    if (count == 1) {
        rv = f->C_DestroyObject(tok->session, hpub);
        if (rv != CKR_OK && rc == HSMCA_OK)
            rc = tok_ckr("C_DestroyObject", rv, HSMCA_E_TOKEN_FAILED);
    }
    pthread_mutex_unlock(&tok->lock);
    pthread_mutex_unlock(&tok->p11->lock);
    return rc;
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
