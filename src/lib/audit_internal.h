/* SPDX-License-Identifier: Apache-2.0
 *
 * audit_internal.h -- what audit.c (writer, checkpoints, anchor) tells audit_extract.c (bundles).
 * The formats both read and write are in hsmca/audit_format.h (audit_format.c). Not installed.
 */
#ifndef HSMCA_AUDIT_INTERNAL_H
#define HSMCA_AUDIT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/audit.h"

#define AUDIT_ANCHOR_LABEL "hsmca-audit-anchor"
#define AUDIT_META_PUBKEY "audit.pubkey"

/* audit.c, for audit_extract.c: the handle's store and audit certificate (borrowed). */
struct hsmca_store *audit_store(struct hsmca_audit *a);
const char *audit_cert(struct hsmca_audit *a);

#endif
