/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_open.c -- start-up and shut-down: the self-check of the chain from the last checkpoint,
 * the anchor check, genesis of an empty log, intent reconciliation, hsmca_audit_open/close.
 */
#include "audit_core.h"

/* ---- open: self-check, anchor, genesis ---- */

struct chain_ck {
    struct hsmca_audit *a;
    uint64_t expect;
    unsigned char prev[HSMCA_SHA256_LEN];
    char *why;
    size_t why_len;
    int64_t last_ms;
};

static enum hsmca_err
chain_step(void *arg, uint64_t seq, const char *line, size_t len, const unsigned char *hash)
{
    struct chain_ck *c = arg;
    struct hsmca_audit_line l;
    unsigned char h[HSMCA_SHA256_LEN];
    const char *why = NULL;

    if (seq != c->expect) {
        snprintf(c->why, c->why_len, "seq %llu: missing from the store (next stored is %llu)",
                 (unsigned long long)c->expect, (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (audit_sha256(c->a, line, len, h) != HSMCA_OK)
        return HSMCA_E_INTERNAL;
    if (hsmca_audit_line_parse(line, len, &l, &why) != HSMCA_OK) {
        snprintf(c->why, c->why_len, "seq %llu: malformed entry (%s)", (unsigned long long)seq,
                 why);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (l.seq != seq) {
        snprintf(c->why, c->why_len, "seq %llu: the entry says seq %llu", (unsigned long long)seq,
                 (unsigned long long)l.seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (CRYPTO_memcmp(h, hash, HSMCA_SHA256_LEN) != 0) {
        snprintf(c->why, c->why_len, "seq %llu: line bytes do not match their stored hash",
                 (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (c->expect > 0 && c->expect != c->a->last_cp.size &&
        CRYPTO_memcmp(l.prev, c->prev, HSMCA_SHA256_LEN) != 0) {
        snprintf(c->why, c->why_len,
                 "seq %llu: changed or replaced: its hash is not the prev of seq %llu",
                 (unsigned long long)seq - 1, (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    if (seq == c->a->last_cp.size && CRYPTO_memcmp(h, c->a->last_cp.head, HSMCA_SHA256_LEN) != 0) {
        snprintf(c->why, c->why_len, "seq %llu: not the head of the last checkpoint",
                 (unsigned long long)seq);
        return HSMCA_E_AUDIT_CHAIN;
    }
    memcpy(c->prev, h, HSMCA_SHA256_LEN);
    c->last_ms = hsmca_audit_time_parse(l.time);
    c->expect++;
    return HSMCA_OK;
}

static enum hsmca_err
check_cp(struct hsmca_audit *a, const struct hsmca_audit_checkpoint *cp, char *why, size_t why_len)
{
    struct hsmca_audit_cp_fields f;
    unsigned char h[HSMCA_SHA256_LEN];

    if (audit_sha256(a, cp->text, cp->text_len, h) != HSMCA_OK)
        return HSMCA_E_INTERNAL;
    if (CRYPTO_memcmp(h, cp->hash, HSMCA_SHA256_LEN) != 0 ||
        hsmca_audit_checkpoint_parse(cp->text, cp->text_len, &f) != HSMCA_OK ||
        f.size != cp->size || CRYPTO_memcmp(f.head, cp->head, HSMCA_SHA256_LEN) != 0) {
        snprintf(why, why_len, "checkpoint %llu: malformed or altered in the store",
                 (unsigned long long)cp->size);
        return HSMCA_E_AUDIT_CHECKPOINT;
    }
    if (memcmp(f.key, a->kid, HSMCA_SHA256_LEN) != 0) {
        snprintf(why, why_len, "checkpoint %llu: signed by another audit key",
                 (unsigned long long)cp->size);
        return HSMCA_E_AUDIT_CHECKPOINT;
    }
    if (hsmca_audit_sig_verify(a->pub, cp->text, cp->text_len, cp->sig, cp->sig_len) != HSMCA_OK) {
        snprintf(why, why_len, "checkpoint %llu: signature does not verify with the audit key",
                 (unsigned long long)cp->size);
        return HSMCA_E_AUDIT_CHECKPOINT_SIG;
    }
    return HSMCA_OK;
}

/*
 * The store's last seq, read after what must not be ahead of it. Several nodes on one PostgreSQL
 * store append, sign checkpoints and move the anchor while this one starts; each of them comes
 * after the entries it covers (an entry's commit, then the checkpoint over it, then the anchor at
 * that checkpoint), so a head read after the anchor and the checkpoint is never behind them.
 */
static enum hsmca_err
store_last(struct hsmca_audit *a, uint64_t *size, char *why, size_t why_len)
{
    unsigned char h[HSMCA_SHA256_LEN];
    enum hsmca_err rc = hsmca_store_audit_head(a->st, size, h);

    if (rc != HSMCA_OK)
        snprintf(why, why_len, "cannot read the audit log: %s", hsmca_err_code(rc));
    return rc;
}

/* The anchor: "<size> <head hex> <cp hash hex>". */
static enum hsmca_err
check_anchor(struct hsmca_audit *a, char *why, size_t why_len)
{
    unsigned char buf[HSMCA_DATA_OBJECT_MAX + 1], head[HSMCA_SHA256_LEN], cph[HSMCA_SHA256_LEN];
    struct hsmca_audit_checkpoint cp;
    size_t len = 0, n = 0;
    uint64_t size = 0, store_size = 0;
    const char *sp1, *sp2;
    enum hsmca_err rc;

    rc = hsmca_token_data_read(a->token, AUDIT_ANCHOR_LABEL, buf, sizeof(buf) - 1, &len);
    if (rc == HSMCA_E_NOT_FOUND) {
        rc = store_last(a, &store_size, why, why_len);
        if (rc != HSMCA_OK)
            return rc;
        if (store_size == 0)
            return HSMCA_E_NOT_FOUND; /* a new log */
        snprintf(why, why_len,
                 "the audit token holds no anchor object (%s) but the store has %llu entries",
                 AUDIT_ANCHOR_LABEL, (unsigned long long)store_size);
        return HSMCA_E_AUDIT_ANCHOR;
    }
    if (rc != HSMCA_OK) {
        snprintf(why, why_len, "cannot read the anchor from the audit token: %s",
                 hsmca_err_code(rc));
        return rc;
    }
    buf[len] = '\0';
    sp1 = strchr((char *)buf, ' ');
    sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL ||
        hsmca_parse_u64((char *)buf, (size_t)(sp1 - (char *)buf), INT64_MAX, &size) != HSMCA_OK ||
        hsmca_hex_decode(sp1 + 1, (size_t)(sp2 - sp1 - 1), head, HSMCA_SHA256_LEN, &n) !=
            HSMCA_OK ||
        n != HSMCA_SHA256_LEN ||
        hsmca_hex_decode(sp2 + 1, strlen(sp2 + 1), cph, HSMCA_SHA256_LEN, &n) != HSMCA_OK ||
        n != HSMCA_SHA256_LEN) {
        snprintf(why, why_len, "the anchor object in the audit token is malformed");
        return HSMCA_E_AUDIT_ANCHOR;
    }
    rc = store_last(a, &store_size, why, why_len);
    if (rc != HSMCA_OK)
        return rc;
    if (store_size < size) {
        snprintf(why, why_len,
                 "anchor checkpoint %llu missing: the store ends at seq %llu (restored older "
                 "database or truncated log)",
                 (unsigned long long)size, (unsigned long long)store_size);
        return HSMCA_E_AUDIT_ANCHOR;
    }
    memset(&cp, 0, sizeof(cp));
    rc = hsmca_store_audit_cp_at_most(a->st, size, &cp);
    if (rc != HSMCA_OK || cp.size != size || CRYPTO_memcmp(cp.hash, cph, HSMCA_SHA256_LEN) != 0 ||
        CRYPTO_memcmp(cp.head, head, HSMCA_SHA256_LEN) != 0) {
        snprintf(why, why_len,
                 "anchor checkpoint %llu missing from the store or different (restored or "
                 "rewritten database)",
                 (unsigned long long)size);
        hsmca_audit_checkpoint_clear(&cp);
        return HSMCA_E_AUDIT_ANCHOR;
    }
    rc = check_cp(a, &cp, why, why_len);
    hsmca_audit_checkpoint_clear(&cp);
    return rc;
}

enum hsmca_err
audit_genesis(struct hsmca_audit *a, const char *detail_json, char *why, size_t why_len)
{
    unsigned char id[16];
    char idhex[33], *det = NULL, *pem = NULL;
    json_t *d = NULL;
    json_error_t jerr;
    struct item *it = NULL;
    BIO *bio = NULL;
    BUF_MEM *bm = NULL;
    enum hsmca_err rc = HSMCA_E_AUDIT_EVENT_INVALID;

    if (RAND_bytes(id, sizeof(id)) != 1)
        return HSMCA_E_RANDOM;
    hsmca_hex_encode(id, sizeof(id), idhex, sizeof(idhex));
    d = detail_json != NULL ? json_loads(detail_json, JSON_REJECT_DUPLICATES, &jerr)
                            : json_object();
    if (d == NULL || !json_is_object(d))
        goto out;
    if (json_object_set_new(d, "log_id", json_string(idhex)) != 0 ||
        json_object_set_new(d, "audit_key", json_string(a->kid_hex)) != 0)
        goto out;
    det = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    if (det == NULL)
        goto out;
    if (a->origin[0] == '\0')
        snprintf(a->origin, sizeof(a->origin), "hsmca/%s", idhex);
    {
        struct hsmca_audit_event ev = {"ceremony", "system", "log.genesis", "audit", "ok", det, "",
                                       0,          0};

        rc = audit_item_new(&ev, &it);
        if (rc != HSMCA_OK)
            goto out;
    }
    /* the public key goes into meta in the same transaction, so archives can verify */
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_PUBKEY(bio, a->pub) != 1) {
        rc = HSMCA_E_INTERNAL;
        goto out;
    }
    BIO_get_mem_ptr(bio, &bm);
    pem = strndup(bm->data, bm->length);
    if (pem == NULL) {
        rc = HSMCA_E_NOMEM;
        goto out;
    }
    a->last_ms = audit_wall_ms(a);
    rc = hsmca_store_begin(a->st);
    if (rc != HSMCA_OK)
        goto out;
    rc = hsmca_store_meta_set(a->st, AUDIT_META_PUBKEY, pem);
    if (rc == HSMCA_OK)
        rc = hsmca_store_meta_set(a->st, "audit.origin", a->origin);
    if (rc != HSMCA_OK) {
        hsmca_store_rollback(a->st);
        goto out;
    }
    audit_run_item(a, it);
    rc = it->rc;
    if (rc != HSMCA_OK) {
        hsmca_store_rollback(a->st);
        goto out;
    }
    rc = hsmca_store_commit(a->st);
    if (rc != HSMCA_OK) {
        a->size = 0;
        memset(a->head, 0, HSMCA_SHA256_LEN);
        goto out;
    }
    a->stats.commits++;
    a->stats.entries++;
    rc = audit_make_checkpoint(a);
    if (rc != HSMCA_OK)
        snprintf(why, why_len, "the first checkpoint could not be made: %s", hsmca_err_code(rc));
    else
        hsmca_log(HSMCA_LOG_INFO, "audit", "genesis", "log_id=%s key=%s", idhex, a->kid_hex);
out:
    if (rc != HSMCA_OK && why[0] == '\0')
        snprintf(why, why_len, "cannot write log.genesis: %s", hsmca_err_code(rc));
    audit_item_free(it);
    free(det);
    free(pem);
    BIO_free(bio);
    json_decref(d);
    return rc;
}

static void
audit_free(struct hsmca_audit *a)
{
    struct item *it;

    if (a == NULL)
        return;
    audit_anchor_mover_stop(a);
    while (a->q_head != NULL) {
        it = a->q_head;
        a->q_head = it->next;
        audit_item_free(it);
    }
    hsmca_audit_checkpoint_clear(&a->last_cp);
    EVP_MD_CTX_free(a->mdctx);
    EVP_MD_free(a->sha256);
    free(a->cert_pem);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->work_cv);
    pthread_cond_destroy(&a->sync_cv);
    pthread_mutex_destroy(&a->anchor_lock);
    pthread_cond_destroy(&a->anchor_cv);
    free(a);
}

static enum hsmca_err
reconcile(struct hsmca_audit *a, const struct hsmca_audit_config *cfg)
{
    struct hsmca_store_audit_intent *v = NULL;
    size_t n = 0, i;
    enum hsmca_err rc;

    /* an intent another node's running execution holds is not orphaned: reconcile only under
     * the intents' lock, which such an execution holds until it closes its intents (and which
     * PostgreSQL frees when a node dies); a node busy that long keeps its intents */
    rc = hsmca_store_intents_lock(a->st, 10000);
    if (rc == HSMCA_E_STORE_BUSY) {
        hsmca_log(HSMCA_LOG_WARN, "audit", "intents-held-elsewhere",
                  "reason=\"another node runs a quorum operation; its intents are its own\"");
        return HSMCA_OK;
    }
    if (rc != HSMCA_OK)
        return rc;
    v = calloc(256, sizeof(*v));
    if (v == NULL) {
        hsmca_store_intents_unlock(a->st);
        return HSMCA_E_NOMEM;
    }
    rc = hsmca_store_audit_intents(a->st, v, 256, &n);
    for (i = 0; rc == HSMCA_OK && i < n; i++) {
        char action[HSMCA_AUDIT_FIELD_MAX + 16];
        struct hsmca_audit_event ev = {"system", "system", action,   "audit", "ok",
                                       NULL,     "",       v[i].seq, 0};
        int done;

        if (cfg->reconcile == NULL) {
            hsmca_log(HSMCA_LOG_WARN, "audit", "open-intent", "seq=%llu",
                      (unsigned long long)v[i].seq);
            continue;
        }
        done = cfg->reconcile(cfg->reconcile_arg, v[i].seq, v[i].action);
        snprintf(action, sizeof(action), "%.*s%s", HSMCA_AUDIT_FIELD_MAX - 10, v[i].action,
                 done ? ".recovered" : ".orphan");
        rc = hsmca_audit_append(a, &ev, NULL, NULL, NULL);
    }
    free(v);
    hsmca_store_intents_unlock(a->st);
    return rc;
}

enum hsmca_err
hsmca_audit_open(const struct hsmca_audit_config *cfg, struct hsmca_audit **out, char *why,
                 size_t why_len)
{
    struct hsmca_audit *a = NULL;
    struct chain_ck ck;
    char dummy[8], *origin = NULL;
    uint64_t store_size = 0;
    enum hsmca_err rc;

    if (why == NULL || why_len == 0) {
        why = dummy;
        why_len = sizeof(dummy);
    }
    why[0] = '\0';
    if (cfg == NULL || out == NULL || cfg->store == NULL || cfg->token == NULL ||
        cfg->key == NULL || (cfg->origin != NULL && strlen(cfg->origin) > 200))
        return HSMCA_E_INVALID_ARG;
    if (cfg->origin != NULL && strpbrk(cfg->origin, "\n\r") != NULL)
        return HSMCA_E_INVALID_ARG;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return HSMCA_E_NOMEM;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work_cv, NULL);
    pthread_cond_init(&a->sync_cv, NULL);
    pthread_mutex_init(&a->anchor_lock, NULL);
    pthread_cond_init(&a->anchor_cv, NULL);
    a->st = cfg->store;
    a->token = cfg->token;
    a->key = cfg->key;
    a->pub = hsmca_key_public(cfg->key);
    a->cp_entries = cfg->checkpoint_entries != 0 ? cfg->checkpoint_entries : 10000;
    a->cp_ms = cfg->checkpoint_ms != 0 ? cfg->checkpoint_ms : 60000;
    a->heal = cfg->heal;
    a->heal_arg = cfg->heal_arg;
    a->retry_us = (cfg->retry_ms != 0 ? cfg->retry_ms : 1000) * 1000u;
    a->batch_max = cfg->batch_max != 0 ? cfg->batch_max : 1024;
    a->linger_us = cfg->linger_us != 0 ? cfg->linger_us : 1000;
    a->clock_ms = cfg->clock_ms;
    a->clock_arg = cfg->clock_arg;
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    a->mdctx = EVP_MD_CTX_new();
    if (cfg->audit_cert_pem != NULL)
        a->cert_pem = strdup(cfg->audit_cert_pem);
    if (a->sha256 == NULL || a->mdctx == NULL || a->pub == NULL ||
        (cfg->audit_cert_pem != NULL && a->cert_pem == NULL)) {
        rc = HSMCA_E_NOMEM;
        goto fail;
    }
    rc = hsmca_audit_key_id(a->pub, a->kid);
    if (rc != HSMCA_OK)
        goto fail;
    hsmca_hex_encode(a->kid, HSMCA_SHA256_LEN, a->kid_hex, sizeof(a->kid_hex));
    if (cfg->origin != NULL)
        snprintf(a->origin, sizeof(a->origin), "%s", cfg->origin);
    a->last_cp_us = hsmca_mono_us();

    rc = check_anchor(a, why, why_len);
    if (rc == HSMCA_E_NOT_FOUND) {
        rc = audit_genesis(a, cfg->genesis_detail_json, why, why_len);
        if (rc != HSMCA_OK)
            goto fail;
    } else if (rc != HSMCA_OK) {
        goto fail;
    } else {
        /* verify from the last checkpoint to the head */
        rc = hsmca_store_audit_cp_at_most(a->st, UINT64_MAX, &a->last_cp);
        if (rc != HSMCA_OK) {
            snprintf(why, why_len, "no checkpoint in a non-empty audit log");
            rc = HSMCA_E_AUDIT_CHECKPOINT;
            goto fail;
        }
        rc = check_cp(a, &a->last_cp, why, why_len);
        if (rc != HSMCA_OK)
            goto fail;
        /* read after the checkpoint, which another node may have signed since the anchor */
        rc = store_last(a, &store_size, why, why_len);
        if (rc != HSMCA_OK)
            goto fail;
        if (hsmca_store_meta_get(a->st, "audit.origin", &origin) == HSMCA_OK) {
            snprintf(a->origin, sizeof(a->origin), "%s", origin);
            free(origin);
        }
        memset(&ck, 0, sizeof(ck));
        ck.a = a;
        ck.expect = a->last_cp.size;
        ck.why = why;
        ck.why_len = why_len;
        rc = hsmca_store_audit_scan(a->st, a->last_cp.size, store_size, chain_step, &ck);
        if (rc == HSMCA_OK && ck.expect != store_size + 1) {
            snprintf(why, why_len, "seq %llu: missing from the store",
                     (unsigned long long)ck.expect);
            rc = HSMCA_E_AUDIT_CHAIN;
        }
        if (rc != HSMCA_OK) {
            hsmca_log(HSMCA_LOG_ERROR, "audit", "self-check-failed", "code=%s", hsmca_err_code(rc));
            goto fail;
        }
        a->size = store_size;
        memcpy(a->head, ck.prev, HSMCA_SHA256_LEN);
        a->last_ms = ck.last_ms;
        /* the store may be ahead of the anchor (crash between the two): move the anchor up */
        rc = audit_write_anchor(a, &a->last_cp);
        if (rc != HSMCA_OK) {
            snprintf(why, why_len, "cannot write the anchor: %s", hsmca_err_code(rc));
            goto fail;
        }
    }
    a->pub_size = a->size;
    __atomic_store_n(&a->pub_cp_size, a->last_cp.size, __ATOMIC_RELEASE);
    if (pthread_create(&a->anchor_thread, NULL, audit_anchor_mover, a) != 0) {
        rc = HSMCA_E_INTERNAL;
        goto fail;
    }
    a->anchor_started = 1;
    if (pthread_create(&a->thread, NULL, audit_writer_main, a) != 0) {
        rc = HSMCA_E_INTERNAL;
        goto fail;
    }
    a->thread_started = 1;
    rc = reconcile(a, cfg);
    if (rc != HSMCA_OK) {
        snprintf(why, why_len, "cannot reconcile open intents: %s", hsmca_err_code(rc));
        if (hsmca_audit_close(a) != HSMCA_OK)
            hsmca_log(HSMCA_LOG_WARN, "audit", "close-failed", "stage=open");
        return rc;
    }
    *out = a;
    return HSMCA_OK;
fail:
    audit_free(a);
    return rc;
}

enum hsmca_err
hsmca_audit_close(struct hsmca_audit *a)
{
    enum hsmca_err rc = HSMCA_OK;

    if (a == NULL)
        return HSMCA_OK;
    if (a->thread_started) {
        pthread_mutex_lock(&a->lock);
        a->stopping = 1;
        pthread_cond_signal(&a->work_cv);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->thread, NULL);
    }
    if (a->size > a->last_cp.size)
        rc = audit_make_checkpoint(a);
    if (rc == HSMCA_OK)
        rc = audit_anchor_settle(a);
    audit_free(a);
    return rc;
}

struct hsmca_store *
audit_store(struct hsmca_audit *a)
{
    return a->st;
}

const char *
audit_cert(struct hsmca_audit *a)
{
    return a->cert_pem;
}
