/* SPDX-License-Identifier: Apache-2.0
 *
 * seal.h -- seal a short secret (a Shamir share) to a P-256 public key, and unseal it either with a
 * key inside a token (ECDH in the token) or with a software private key (the daemon's one-time
 * request key). ECDH P-256 with an ephemeral key, HKDF-SHA256, AES-256-GCM; the associated data
 * binds the share to its token label, epoch, index, approver and (when re-sealed) request.
 *
 * Format: 1 version byte (1) | 65-byte uncompressed ephemeral point | 12-byte nonce | ciphertext |
 * 16-byte tag. HKDF salt = ephemeral point || recipient point (both uncompressed), info =
 * "hsmca-seal-v1".
 */
#ifndef HSMCA_SEAL_H
#define HSMCA_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"
#include "hsmca/secret.h"
#include "hsmca/shamir.h"
#include "hsmca/sizes.h"
#include "hsmca/token.h"

struct hsmca_seal_ad {
    const char *token_label;             /* the CA token whose PIN this share belongs to */
    uint64_t epoch;                      /* approver epoch */
    unsigned share_index;                /* 1..32 */
    const char *approver;                /* approver name */
    const char *request_id;              /* NULL when sealed to the approver's own key */
    const unsigned char *request_digest; /* 32 bytes, NULL when sealed to the approver */
};

#define HSMCA_SEAL_OVERHEAD (1 + 65 + 12 + 16)
/* Bounds: a sealed plaintext is 1..HSMCA_SEAL_PT_MAX bytes (a share is at most 65); an approver
 * name is 1..HSMCA_SEAL_NAME_MAX bytes; a token label 1..HSMCA_TOKEN_LABEL_MAX; a request id
 * 1..HSMCA_REQUEST_ID_MAX. */
#define HSMCA_SEAL_PT_MAX 256
#define HSMCA_SEAL_NAME_MAX 255
#define HSMCA_SEAL_DIGEST_LEN HSMCA_SHA256_LEN

/*
 * The associated data is this canonical encoding of *ad (big-endian integers):
 *   "hsmca-seal-ad-v1" (16 bytes) | u16 len | token_label | u64 epoch | u8 share_index |
 *   u16 len | approver | u8 kind (0: to the approver, 1: to a request) |
 *   if kind 1: u16 len | request_id | 32-byte request_digest
 * Writes it into buf[0..*len_out) (buf_max >= HSMCA_SEAL_AD_MAX). For tests and for tools that
 * need to show what a seal is bound to. Returns HSMCA_E_INVALID_ARG for an ad outside the bounds
 * above (a missing or empty string, share_index outside 1..HSMCA_SHAMIR_N_MAX, only one of
 * request_id and request_digest).
 */
#define HSMCA_SEAL_AD_MAX                                                                          \
    (16 + 2 + HSMCA_TOKEN_LABEL_MAX + 8 + 1 + 2 + HSMCA_SEAL_NAME_MAX + 1 + 2 +                    \
     HSMCA_REQUEST_ID_MAX + HSMCA_SEAL_DIGEST_LEN)
HSMCA_MUSTCHECK enum hsmca_err hsmca_seal_ad_encode(const struct hsmca_seal_ad *ad,
                                                    unsigned char *buf, size_t buf_max,
                                                    size_t *len_out);

/*
 * Seal pt[0..pt_len) to recipient_pub (a P-256 public key) with ad as associated data.
 * On HSMCA_OK *out is a new buffer of *out_len = pt_len + HSMCA_SEAL_OVERHEAD bytes that the caller
 * frees with free(). Returns HSMCA_E_SEAL_KEY (not a P-256 key), HSMCA_E_INVALID_ARG (NULL
 * pointers, an AD string missing or too long, share_index out of 1..32, request_id without
 * request_digest or the reverse), HSMCA_E_TOO_LARGE, HSMCA_E_RANDOM, HSMCA_E_NOMEM,
 * HSMCA_E_INTERNAL.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_seal(EVP_PKEY *recipient_pub, const struct hsmca_seal_ad *ad,
                                          const unsigned char *pt, size_t pt_len,
                                          unsigned char **out, size_t *out_len); /* free() */

/*
 * Unseal sealed[0..sealed_len) with the token key recipient (made with HSMCA_KEY_USAGE_DERIVE; the
 * token must be logged in) and the same ad the sealer used. On HSMCA_OK *out is a secret on the
 * secure heap (caller clears with hsmca_secret_clear). Returns HSMCA_E_SEAL_FORMAT (length,
 * version, or point), HSMCA_E_SEAL_AUTH (wrong key, wrong ad, tampered), HSMCA_E_SEAL_KEY,
 * HSMCA_E_INVALID_ARG, the hsmca_key_derive codes, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_unseal_token(const struct hsmca_key *recipient,
                                                  const struct hsmca_seal_ad *ad,
                                                  const unsigned char *sealed, size_t sealed_len,
                                                  struct hsmca_secret *out);

/* The same with a software P-256 private key; HSMCA_E_SEAL_KEY also for a key without its private
 * half. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_unseal_soft(EVP_PKEY *recipient_priv,
                                                 const struct hsmca_seal_ad *ad,
                                                 const unsigned char *sealed, size_t sealed_len,
                                                 struct hsmca_secret *out);

#endif
