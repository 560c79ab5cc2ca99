/* SPDX-License-Identifier: Apache-2.0
 *
 * limits.h -- every hard limit on untrusted input, in one place (STYLE 21).
 * Each limit is tested at N and at N+1 by the module that enforces it. Add new limits here, never
 * as literals in a module.
 */
#ifndef HSMCA_LIMITS_H
#define HSMCA_LIMITS_H

/* PKCS#11 URIs (RFC 7512) as given in config or on the command line. */
#define HSMCA_URI_MAX 1024
/* A token label is 32 bytes, blank padded, in CK_TOKEN_INFO. */
#define HSMCA_TOKEN_LABEL_MAX 32
/* A token serial is 16 bytes in CK_TOKEN_INFO. */
#define HSMCA_TOKEN_SERIAL_MAX 16
/* CKA_LABEL of a key object, and CKA_ID in bytes. */
#define HSMCA_KEY_LABEL_MAX 64
#define HSMCA_KEY_ID_MAX 64
/* User and SO PINs, in bytes (SoftHSM accepts 4..255). */
#define HSMCA_PIN_MIN 4
#define HSMCA_PIN_MAX 255
/* The random SO PIN the ceremony and `hsmca token init` give a token, then destroy. */
#define HSMCA_SO_PIN_LEN 32
/* A CKO_DATA object's CKA_VALUE (the audit anchor is far smaller). */
#define HSMCA_DATA_OBJECT_MAX 4096
/* A raw ECDSA P-256 signature (r||s) and its DER form. */
#define HSMCA_ECDSA_P256_RAW 64
#define HSMCA_ECDSA_P256_DER_MAX 72
/* A digest handed to the token for signing (SHA-256). */
#define HSMCA_DIGEST_MAX 64
/* A PKCS#10 request, DER or PEM. */
#define HSMCA_CSR_MAX 4096
/* A store path. */
#define HSMCA_PATH_MAX 4096
/* A CA identifier ([a-z0-9-], e.g. "pai-8000") and a client request id (printable ASCII). */
#define HSMCA_CA_ID_MAX 64
#define HSMCA_REQUEST_ID_MAX 128
/* A certificate in the store (Matter certificates are at most 600 bytes; other profiles more). */
#define HSMCA_CERT_DER_MAX 4096
/* One page of the certificate inventory. */
#define HSMCA_PAGE_MAX 1000
/* Matter certificates: at most 600 bytes of DER (rule C13); a file given to `hsmca verify` may be
 * PEM, so the input cap is larger. A common name is at most 64 bytes (N7). */
#define HSMCA_MATTER_CERT_MAX 600
#define HSMCA_MATTER_INPUT_MAX 4096
#define HSMCA_MATTER_CN_MAX 64
/* A profile file (JSON) and a profile name. */
#define HSMCA_PROFILE_MAX 8192
#define HSMCA_PROFILE_NAME_MAX 64

#endif
