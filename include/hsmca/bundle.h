/* SPDX-License-Identifier: Apache-2.0
 *
 * bundle.h -- the factory floor's offline bundles (docs/factory.md): device keys made for one
 * bundle only (P-256, in memory), their CSRs for the issuance engine, the archive a flashing
 * station unpacks (ustar: one folder per device with DAC, PKCS#8 DER key and PAI, and a
 * manifest), sealed as CMS EnvelopedData to a production line's certificate; and the store rows
 * of lines and bundles (store_factory.c). Key material lives only in buffers this module wipes
 * (hsmca_bundle_keys_free, hsmca_bundle_seal): never in the store, a log or a file.
 */
#ifndef HSMCA_BUNDLE_H
#define HSMCA_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "hsmca/error.h"
#include "hsmca/sizes.h"
#include "hsmca/store_factory.h"

/* Most devices in one bundle (one batch of the issuance engine). */
#define HSMCA_BUNDLE_MAX 1000
/* Largest line certificate (DER). */
#define HSMCA_LINE_CERT_MAX 16384

/* ---- lines ---- */

/* Is name a valid line name? */
int hsmca_line_name_ok(const char *name);

/*
 * Parse and check a line certificate (DER or one PEM block, <= HSMCA_LINE_CERT_MAX): one X.509
 * certificate, valid now, whose key CMS can seal to (RSA of at least 2048 bits, or EC P-256/384/
 * 521), checked by sealing a test message to it. On HSMCA_OK *der_out (malloc'd) is its DER and
 * sha256 its hash. Returns HSMCA_E_LINE_CERT_INVALID, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_line_cert_check(const unsigned char *in, size_t len,
                                                     int64_t now_ms, unsigned char **der_out,
                                                     size_t *der_len,
                                                     unsigned char sha256[HSMCA_SHA256_LEN]);

/* ---- keys and CSRs ---- */

/* Bytes of a P-256 key as PKCS#8 DER (with its public key), and of a bundle CSR at most. */
#define HSMCA_BUNDLE_P8_LEN 138
#define HSMCA_BUNDLE_CSR_MAX 256

/* n device keys and their CSRs (DER PKCS#10, P-256, ecdsa-with-SHA256, subject CN=device). */
struct hsmca_bundle_keys {
    size_t n;
    EVP_PKEY **keys;
    unsigned char (*pub)[65];                   /* uncompressed points */
    unsigned char (*csr)[HSMCA_BUNDLE_CSR_MAX]; /* csr[i][0..csr_len[i]): DER */
    size_t *csr_len;
};

/* Make n (1..HSMCA_BUNDLE_MAX) fresh P-256 keys and CSRs, on up to threads threads (0 = one per
 * online CPU, at most 4). The CSRs are encoded here (fixed layout, signed with EVP_PKEY_sign over
 * their SHA-256): OpenSSL 3.0's X509_REQ path took about 2 ms per CSR on this VM. On HSMCA_OK free
 * with hsmca_bundle_keys_free. Returns HSMCA_E_INVALID_ARG, HSMCA_E_NOMEM, HSMCA_E_INTERNAL. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_bundle_keys_new(size_t n, unsigned threads,
                                                     struct hsmca_bundle_keys **out);
/* Free every key (OpenSSL clears EC private scalars when freeing) and CSR. NULL is a no-op. */
void hsmca_bundle_keys_free(struct hsmca_bundle_keys *k);

/* ---- the archive and its seal ---- */

/* One device of the archive: its key and point (from hsmca_bundle_keys) and DAC; dac NULL = not
 * issued. */
struct hsmca_bundle_device {
    EVP_PKEY *key;
    const unsigned char *pub; /* 65 bytes */
    const unsigned char *dac;
    size_t dac_len;
    const char *serial_hex;
    const char *request_id;
};

struct hsmca_bundle_info {
    const char *id;   /* HSMCA_BUNDLE_ID_LEN hex digits */
    const char *ca;   /* the PAI's id */
    const char *line; /* the line's name */
    const char *requester;
    int64_t created_ms;
    const unsigned char *pai;
    size_t pai_len;
};

/*
 * Build the archive (layout in docs/factory.md) for the devices that have a DAC, seal it to the
 * line's certificate (DER) as CMS EnvelopedData (AES-256-CBC), and wipe the archive. On HSMCA_OK
 * *env_out (malloc'd, DER) is the envelope, manifest_sha256 the hash of manifest.json as sealed,
 * env_sha256 the hash of the envelope and *issued the number of devices in it. Returns
 * HSMCA_E_BUNDLE_SEAL_FAILED, HSMCA_E_LINE_CERT_INVALID, HSMCA_E_NOMEM.
 */
HSMCA_MUSTCHECK enum hsmca_err
hsmca_bundle_seal(const struct hsmca_bundle_info *info, const struct hsmca_bundle_device *dev,
                  size_t n, const unsigned char *line_cert, size_t line_cert_len,
                  unsigned char **env_out, size_t *env_len,
                  unsigned char manifest_sha256[HSMCA_SHA256_LEN],
                  unsigned char env_sha256[HSMCA_SHA256_LEN], size_t *issued);

#endif
