/* SPDX-License-Identifier: Apache-2.0
 *
 * sizes.h -- fixed sizes of the formats hsmca writes and reads (not limits on input: those are
 * limits.h's). A SHA-256 digest and its lowercase hex form with the terminating NUL.
 */
#ifndef HSMCA_SIZES_H
#define HSMCA_SIZES_H

#define HSMCA_SHA256_LEN 32
#define HSMCA_SHA256_HEX_LEN (2 * HSMCA_SHA256_LEN)      /* hex digits, without the NUL */
#define HSMCA_SHA256_HEX_SIZE (HSMCA_SHA256_HEX_LEN + 1) /* a hex buffer with its NUL */

#endif
