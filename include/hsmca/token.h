/* SPDX-License-Identifier: Apache-2.0
 *
 * token.h -- PKCS#11 tokens and the keys inside them. The only interface through which hsmca
 * touches a CA, audit or approver key. Keys are named by RFC 7512 URIs (token label or serial,
 * object label, id), never by slot number. Private keys are generated inside the token, sensitive
 * and not extractable, and are used through token-backed EVP_PKEY handles (X.509 signing) and
 * hsmca_key_sign_digest (digest signing on the key handle's own sessions).
 *
 * Lifetime and order: hsmca_p11_open -> hsmca_token_open -> (login) -> keys -> hsmca_key_free ->
 * (logout) -> hsmca_token_free -> hsmca_p11_free, and only then OpenSSL's own cleanup at exit.
 * Freeing in another order is refused with HSMCA_E_BUSY rather than crashing.
 *
 * Threads: hsmca_key_private() handles and hsmca_key_sign_digest() may be used from many threads at
 * once (libp11 keeps up to 16 sessions per token; hsmca_key_sign_digest opens up to 16 of its own
 * per key handle). Everything else (open, login, logout, keygen, data objects, PIN changes) is a
 * control-path call, serialised per token and per module.
 */
#ifndef HSMCA_TOKEN_H
#define HSMCA_TOKEN_H

#include <stddef.h>

#include <openssl/evp.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/secret.h"

struct hsmca_p11;   /* a loaded PKCS#11 module */
struct hsmca_token; /* one token of that module */
struct hsmca_key;   /* one P-256 key pair in a token */

/* A parsed RFC 7512 URI. Only the attributes hsmca uses; every string is NUL-terminated. */
struct hsmca_uri {
    unsigned have; /* HSMCA_URI_HAVE_* bits */
    char token[HSMCA_TOKEN_LABEL_MAX + 1];
    char manufacturer[HSMCA_TOKEN_LABEL_MAX + 1];
    char serial[HSMCA_TOKEN_SERIAL_MAX + 1];
    char model[HSMCA_TOKEN_SERIAL_MAX + 1];
    char object[HSMCA_KEY_LABEL_MAX + 1];
    unsigned char id[HSMCA_KEY_ID_MAX];
    size_t id_len;
    char type[16];                       /* "private", "public", "data", ... */
    char module_path[HSMCA_URI_MAX + 1]; /* the query's module-path, percent-decoded */
};
#define HSMCA_URI_HAVE_TOKEN 0x01u
#define HSMCA_URI_HAVE_MANUFACTURER 0x02u
#define HSMCA_URI_HAVE_SERIAL 0x04u
#define HSMCA_URI_HAVE_MODEL 0x08u
#define HSMCA_URI_HAVE_OBJECT 0x10u
#define HSMCA_URI_HAVE_ID 0x20u
#define HSMCA_URI_HAVE_TYPE 0x40u
#define HSMCA_URI_HAVE_MODULE_PATH 0x80u

/*
 * Parse s[0..len) (len <= HSMCA_URI_MAX) as a pkcs11: URI. Percent-decodes values. Refuses, with
 * HSMCA_E_URI_INVALID: a missing scheme, an empty or duplicate attribute, a bad %-escape, a value
 * longer than its PKCS#11 field, slot-id (slots are renumbered by SoftHSM), pin-value (a PIN never
 * belongs in a URI), and attributes hsmca does not know. A module-path in the query is kept
 * (HSMCA_URI_HAVE_MODULE_PATH; it must be an absolute path): hsmca_token_open refuses a URI whose
 * module-path names another module than the one it is given. On HSMCA_OK fills *out.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_uri_parse(const char *s, size_t len, struct hsmca_uri *out);

/* What hsmca_token_info reports. Strings are trimmed of PKCS#11's blank padding. */
struct hsmca_token_info {
    char label[HSMCA_TOKEN_LABEL_MAX + 1];
    char serial[HSMCA_TOKEN_SERIAL_MAX + 1];
    char manufacturer[HSMCA_TOKEN_LABEL_MAX + 1];
    char model[HSMCA_TOKEN_SERIAL_MAX + 1];
    int logged_in;     /* this process holds a user login */
    int pin_count_low; /* CKF_USER_PIN_COUNT_LOW: a wrong PIN was entered since the last login */
    int pin_final_try; /* CKF_USER_PIN_FINAL_TRY */
    int pin_locked;    /* CKF_USER_PIN_LOCKED */
    int user_pin_set;  /* CKF_USER_PIN_INITIALIZED */
};

/* The security attributes of a private key as the token reports them (1 true, 0 false). */
struct hsmca_key_attrs {
    int token, private_, sensitive, always_sensitive, extractable, never_extractable, local;
    int sign, derive, decrypt, unwrap;
    /* 1 if C_GetAttributeValue(CKA_VALUE) returned the key bytes (it must not), and the CKR_* it
     * returned otherwise (CKR_ATTRIBUTE_SENSITIVE expected). */
    int value_readable;
    unsigned long value_rv;
};

enum hsmca_key_usage {
    HSMCA_KEY_USAGE_SIGN = 1,   /* CA and audit keys: CKA_SIGN only */
    HSMCA_KEY_USAGE_DERIVE = 2, /* approver keys also unseal shares: CKA_DERIVE (ECDH) */
};

/*
 * Load the PKCS#11 module at path (an absolute path, <= HSMCA_PATH_MAX) and initialise it.
 * On HSMCA_OK the caller frees *out with hsmca_p11_free(). Returns HSMCA_E_MODULE_LOAD (the message
 * in the log names the path and the reason), HSMCA_E_NOMEM, HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_p11_open(const char *path, struct hsmca_p11 **out);

/*
 * Finalise and unload the module: closes every session, C_Finalize, dlclose. Returns HSMCA_E_BUSY
 * (and does nothing) while tokens of this module are still open. NULL is a no-op (HSMCA_OK).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_p11_free(struct hsmca_p11 *p11);

/*
 * Find the one initialised token matching uri (its token, serial, manufacturer and model
 * attributes; object attributes are ignored here) and open a control session on it.
 * On HSMCA_OK the caller frees *out with hsmca_token_free(). Returns HSMCA_E_URI_INVALID,
 * HSMCA_E_TOKEN_NOT_FOUND (also when the module has no slot at all), HSMCA_E_TOKEN_AMBIGUOUS,
 * HSMCA_E_TOKEN_FAILED, HSMCA_E_NOMEM, HSMCA_E_MODULE_MISMATCH (the URI's module-path is
 * not the module p11 loaded).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_open(struct hsmca_p11 *p11, const char *uri,
                                                struct hsmca_token **out);

/*
 * Close the token handle. Returns HSMCA_E_BUSY (and does nothing) while keys of the token are not
 * freed. Does not log out: a login lives until hsmca_token_logout or module teardown.
 * NULL is a no-op (HSMCA_OK).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_free(struct hsmca_token *tok);

/*
 * Initialise the module's free (uninitialised) token with label and so_pin, then set its user PIN
 * to user_pin, and open it. For ceremonies and tests; production HSMs are initialised by their
 * administrator. Returns HSMCA_E_NO_FREE_SLOT, HSMCA_E_TOKEN_EXISTS (a token with that label is
 * present), HSMCA_E_PIN_INVALID, HSMCA_E_TOKEN_FAILED.
 * CT: the PINs go only to the token; they are never copied.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_init(struct hsmca_p11 *p11, const char *label,
                                                const struct hsmca_secret *so_pin,
                                                const struct hsmca_secret *user_pin,
                                                struct hsmca_token **out);

/*
 * A hook the module's tokens call before each PKCS#11 call that makes a file-backed token rewrite
 * its own state (C_Login and C_SetPIN: SoftHSM rewrites its token file in place on both, see
 * softhsm_guard.h). A non-OK return refuses the call with that code. what names the call.
 */
typedef enum hsmca_err (*hsmca_token_write_fn)(void *arg, const char *label, const char *serial,
                                               const char *what);
void hsmca_p11_set_before_write(struct hsmca_p11 *p11, hsmca_token_write_fn fn, void *arg);

/* Fill *out with the token's current label, serial and PIN flags. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_info(struct hsmca_token *tok,
                                                struct hsmca_token_info *out);

/*
 * Log the user in with pin (pin->len in HSMCA_PIN_MIN..HSMCA_PIN_MAX). The PIN goes to C_Login
 * directly: libp11 never sees it, so no copy of it stays in libp11's heap. The caller keeps
 * ownership of pin and wipes it. Returns HSMCA_E_PIN_INCORRECT, HSMCA_E_PIN_LOCKED,
 * HSMCA_E_PIN_INVALID, HSMCA_E_ALREADY_LOGGED_IN, HSMCA_E_TOKEN_REMOVED, HSMCA_E_TOKEN_FAILED.
 * CT: the PIN bytes are passed through, never compared or logged.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_login(struct hsmca_token *tok,
                                                 const struct hsmca_secret *pin);

/*
 * Log the user out. Refused with HSMCA_E_BUSY while key handles of this token are alive: free
 * them (after draining signers) first, because SoftHSM lets an initialised sign finish after a
 * logout. HSMCA_OK if not logged in.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_logout(struct hsmca_token *tok);

/*
 * Undo a module open, a token open with its login and a key find, or any first part of them (NULL
 * parts are skipped): free the key, log out, close the token, then the module, in the order
 * SoftHSM needs. Every step is taken; HSMCA_OK, or the first error.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_close_all(struct hsmca_p11 *p11, struct hsmca_token *tok,
                                                     struct hsmca_key *key);

/*
 * As the security officer (so_pin), set the user PIN to new_pin (C_InitPIN), then log the SO out.
 * For the initial ceremony. Returns the login codes above.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_init_pin(struct hsmca_token *tok,
                                                    const struct hsmca_secret *so_pin,
                                                    const struct hsmca_secret *new_pin);

/*
 * While the user is logged in, change the user PIN from old_pin to new_pin (C_SetPIN).
 * Returns HSMCA_E_NOT_LOGGED_IN, HSMCA_E_PIN_INCORRECT, HSMCA_E_PIN_INVALID, HSMCA_E_TOKEN_FAILED.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_set_pin(struct hsmca_token *tok,
                                                   const struct hsmca_secret *old_pin,
                                                   const struct hsmca_secret *new_pin);

/*
 * As the security officer (old_so), replace the SO PIN with new_so (C_SetPIN in an SO session),
 * then log the SO out. The ceremony gives every CA token a random SO PIN nobody learns, so no one
 * person can reset the user PIN around the quorum (docs/custody-so-pin.md). Returns the login
 * codes above, HSMCA_E_ALREADY_LOGGED_IN while a user is logged in.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_set_so_pin(struct hsmca_token *tok,
                                                      const struct hsmca_secret *old_so,
                                                      const struct hsmca_secret *new_so);

/* len (HSMCA_PIN_MIN..HSMCA_PIN_MAX) random bytes from the CSPRNG (RAND_priv_bytes) in secure
 * memory: a PIN nobody types. The caller clears *out. HSMCA_E_RANDOM, HSMCA_E_NOMEM. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_random_pin(size_t len, struct hsmca_secret *out);

/* What hsmca_token_probe found. */
struct hsmca_token_probe {
    int present;     /* the token answers (found by its label and serial) */
    int logged_in;   /* the control session holds a user login */
    int reconnected; /* it had gone (its sessions closed) and a new control session is open */
    int stale;       /* it came back but key handles of the old sessions are still alive */
};

/*
 * Re-probe a token: is it present, and is the control session (and with it the login) alive?
 * A token that was removed and came back (its sessions closed, its login lost) is found again by
 * label and serial, possibly in another slot, and gets a new control session (logged out): then
 * out->reconnected is 1. While key handles of the token are alive (an open window), nothing is
 * reopened and out->stale is 1: their owner frees them, then probes again. HSMCA_OK when present;
 * HSMCA_E_TOKEN_REMOVED when absent, HSMCA_E_TOKEN_AMBIGUOUS. Control path; thread-safe.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_probe(struct hsmca_token *tok,
                                                 struct hsmca_token_probe *out);

/*
 * Generate a P-256 key pair inside the token with C_GenerateKeyPair and an explicit template:
 * private key CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_DECRYPT and
 * CKA_UNWRAP false, CKA_SIGN true, CKA_DERIVE as usage says. label is 1..HSMCA_KEY_LABEL_MAX
 * printable bytes; id is id_len (1..HSMCA_KEY_ID_MAX) bytes, or NULL for 16 random bytes.
 * Needs a logged-in user. On HSMCA_OK the caller frees *out with hsmca_key_free().
 * Returns HSMCA_E_KEY_EXISTS (an object with that label or a key with that id exists),
 * HSMCA_E_NOT_LOGGED_IN, HSMCA_E_INVALID_ARG, HSMCA_E_TOKEN_FAILED, HSMCA_E_MECHANISM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_generate_key(struct hsmca_token *tok, const char *label,
                                                        const unsigned char *id, size_t id_len,
                                                        enum hsmca_key_usage usage,
                                                        struct hsmca_key **out);

/*
 * Find the one private key matching uri's object= and/or id= (at least one is required; token
 * attributes, if present, must match this token). Needs a logged-in user (private objects are
 * invisible otherwise). On HSMCA_OK the caller frees *out with hsmca_key_free().
 * Returns HSMCA_E_URI_INVALID, HSMCA_E_KEY_NOT_FOUND, HSMCA_E_KEY_AMBIGUOUS, HSMCA_E_NOT_LOGGED_IN.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_find_key(struct hsmca_token *tok, const char *uri,
                                                    struct hsmca_key **out);

/*
 * Read the public half of the key named by uri without logging in (public key objects are public).
 * On HSMCA_OK *out is a new software EVP_PKEY (caller frees with EVP_PKEY_free).
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_public_key(struct hsmca_token *tok, const char *uri,
                                                      EVP_PKEY **out);

/*
 * Destroy key's pair in its token (the private key object and the public key object of the same
 * CKA_ID) and release the handle (key is freed whatever the outcome). For a key that must not
 * outlive a failed operation (a CA key generated for a certificate that was never made). Needs a
 * logged-in user. Returns HSMCA_E_NOT_LOGGED_IN, HSMCA_E_KEY_AMBIGUOUS (two public keys with the
 * id: nothing destroyed), token codes.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_key_destroy(struct hsmca_key *key);

/* Release a key handle. NULL is a no-op. */
void hsmca_key_free(struct hsmca_key *key);

/*
 * The token-backed private key (borrowed; valid until hsmca_key_free). Usable with X509_sign,
 * EVP_DigestSign, EVP_PKEY_sign from several threads at once; each operation takes its own
 * PKCS#11 session from libp11's pool.
 */
EVP_PKEY *hsmca_key_private(const struct hsmca_key *key);
/* A software copy of the public key (borrowed; valid until hsmca_key_free). */
EVP_PKEY *hsmca_key_public(const struct hsmca_key *key);
/* The key's CKA_LABEL (NUL-terminated) and CKA_ID, borrowed. */
const char *hsmca_key_label(const struct hsmca_key *key);
const unsigned char *hsmca_key_id(const struct hsmca_key *key, size_t *len_out);

/*
 * Sign a digest (dgst_len 20..HSMCA_DIGEST_MAX, computed outside the token) with CKM_ECDSA.
 * Writes a DER ECDSA-Sig-Value into sig[0..*sig_len) (sig_max >= HSMCA_ECDSA_P256_DER_MAX).
 * Signs on the key handle's own sessions, not through libp11. The first call signs with the token
 * object; the second makes a session copy of the key inside the token (C_CopyObject with CKA_TOKEN
 * false and an empty label: still sensitive, not extractable, private, checked), and every call
 * from then on signs with the copy, which spares SoftHSM re-reading the key's files on every
 * C_SignInit. A token that refuses the copy is signed with the token object. The copy is
 * destroyed by hsmca_key_free. Thread-safe. Returns
 * HSMCA_E_SIGN_FAILED, HSMCA_E_NOT_LOGGED_IN, HSMCA_E_TOKEN_REMOVED, HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_key_sign_digest(const struct hsmca_key *key,
                                                     const unsigned char *dgst, size_t dgst_len,
                                                     unsigned char *sig, size_t sig_max,
                                                     size_t *sig_len);

/*
 * ECDH (CKM_ECDH1_DERIVE, CKD_NULL) between the token key (made with HSMCA_KEY_USAGE_DERIVE) and
 * the P-256 public key peer. On HSMCA_OK *out holds the 32-byte shared x-coordinate on the secure
 * heap (caller clears with hsmca_secret_clear). Returns HSMCA_E_MECHANISM, HSMCA_E_INVALID_ARG,
 * HSMCA_E_TOKEN_FAILED. CT: the shared secret leaves the token only into secure memory; the
 * temporary session object is destroyed before return.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_key_derive(const struct hsmca_key *key, EVP_PKEY *peer,
                                                struct hsmca_secret *out);

/* Read the key's security attributes, including an attempt to read CKA_VALUE. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_key_attrs(const struct hsmca_key *key,
                                               struct hsmca_key_attrs *out);

/*
 * Write value[0..len) (len <= HSMCA_DATA_OBJECT_MAX) into the private CKO_DATA object labelled
 * label (created if absent, else replaced). Needs a logged-in user. The replace never leaves the
 * token without the object, and holds when several processes write the same label at once
 * (nodes sharing a network token): the newest write wins, older copies are destroyed after it.
 * Returns HSMCA_E_NOT_LOGGED_IN, HSMCA_E_TOO_LARGE, HSMCA_E_TOKEN_FAILED.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_data_write(struct hsmca_token *tok, const char *label,
                                                      const unsigned char *value, size_t len);

/*
 * Read the private CKO_DATA object labelled label into buf[0..*len) (buf_max bytes available);
 * of several copies (a write interrupted between its create and its destroys), the newest.
 * Returns HSMCA_E_NOT_FOUND if there is none, HSMCA_E_TOO_LARGE, HSMCA_E_NOT_LOGGED_IN.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_token_data_read(struct hsmca_token *tok, const char *label,
                                                     unsigned char *buf, size_t buf_max,
                                                     size_t *len);

#endif
