/* SPDX-License-Identifier: Apache-2.0
 *
 * profile.h -- certificate profiles as data (policies/profiles/matter-{paa,pai,dac}.json):
 * subject template, validity, extension set. Loading checks every field against the Matter rules
 * for the profile's type (profile.c); the builders in matter.c only read a loaded profile. Load
 * once at start: the DAC hot path never parses a profile.
 */
#ifndef HSMCA_PROFILE_H
#define HSMCA_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "hsmca/error.h"
#include "hsmca/limits.h"

enum hsmca_profile_type {
    HSMCA_PROFILE_PAA = 0,
    HSMCA_PROFILE_PAI = 1,
    HSMCA_PROFILE_DAC = 2,
};

enum hsmca_profile_presence {
    HSMCA_PRESENCE_FORBIDDEN = 0,
    HSMCA_PRESENCE_OPTIONAL = 1,
    HSMCA_PRESENCE_REQUIRED = 2,
};

/* Where a DAC profile puts a per-device subject value (the request's device_id). */
enum hsmca_profile_devid_attr {
    HSMCA_DEVID_NONE = 0,          /* the profile takes none: every DAC of a PAI/PID alike */
    HSMCA_DEVID_COMMON_NAME = 1,   /* {device_id} in the common-name template */
    HSMCA_DEVID_SERIAL_NUMBER = 2, /* a serialNumber attribute (2.5.4.5, PrintableString) */
};

#define HSMCA_DEVICE_ID_MAX 64          /* bytes of a device id, at most */
#define HSMCA_DEVICE_ID_PATTERN_MAX 128 /* bytes of a profile's device_id pattern */

/* Key usage bits as in X509v3 (X509v3_KU_*). */
#define HSMCA_KU_DIGITAL_SIGNATURE 0x80u
#define HSMCA_KU_KEY_CERT_SIGN 0x04u
#define HSMCA_KU_CRL_SIGN 0x02u

struct hsmca_profile {
    char name[HSMCA_PROFILE_NAME_MAX + 1];
    enum hsmca_profile_type type;
    /* Subject: common-name template ({vid} and {pid} expand to 4 uppercase hex digits). */
    char cn_template[HSMCA_MATTER_CN_MAX + 1];
    enum hsmca_profile_presence vid, pid;
    /* Validity: notBefore = now - backdate; notAfter = notBefore + days*86400 - 1, or
     * 99991231235959Z when no_expiry. */
    int no_expiry;
    uint32_t days;
    uint32_t backdate;
    /* DAC only, validity.within_issuer: a DAC may not end after its PAI or PAA. Matter does not
     * ask it (the chain is judged at the DAC's notBefore, V3/V5: a DAC may outlive its PAI), an
     * operator may. */
    int within_issuer;
    /* Extensions (always BC, KU, SKID; AKID per akid). */
    int ca;      /* basicConstraints cA */
    int pathlen; /* -1: absent */
    unsigned ku; /* HSMCA_KU_* bits */
    int akid;    /* emit authorityKeyIdentifier */
    /* DAC only: the per-device subject value (subject.device_id in the profile file) */
    struct {
        enum hsmca_profile_devid_attr attr;
        int required; /* a DAC without one is refused (always so for common_name) */
        int from_csr; /* without one in the request, the CSR subject's attribute is taken */
        uint32_t max_len;
        char pattern[HSMCA_DEVICE_ID_PATTERN_MAX + 1]; /* POSIX ERE, matched on the whole value */
    } device_id;
};

/*
 * Parse a profile from json[0..len) (len <= HSMCA_PROFILE_MAX). Refuses unknown or missing
 * fields, duplicate keys, and anything the Matter rules forbid for the type (e.g. a DAC with
 * pathLen, a PAI without a VID, a non-critical basicConstraints, a PAA PID), naming the rule in
 * the log. On HSMCA_OK fills *out. Returns HSMCA_E_PROFILE_INVALID, HSMCA_E_PROFILE_RULE,
 * HSMCA_E_TOO_LARGE, HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_profile_parse(const char *json, size_t len,
                                                   struct hsmca_profile *out);

/* Read path (<= HSMCA_PROFILE_MAX bytes) and parse it. Adds HSMCA_E_IO. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_profile_load(const char *path, struct hsmca_profile *out);

/*
 * Expand the common-name template for vid/pid (has_* = 0: the placeholder is an error) into
 * out[0..out_size). Returns HSMCA_E_PROFILE_RULE if the result is longer than
 * HSMCA_MATTER_CN_MAX, HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_profile_cn(const struct hsmca_profile *p, int has_vid,
                                                uint16_t vid, int has_pid, uint16_t pid, char *out,
                                                size_t out_size);

/* As hsmca_profile_cn, with device_id (NULL: none) for the {device_id} placeholder. */
HSMCA_MUSTCHECK enum hsmca_err hsmca_profile_cn_dev(const struct hsmca_profile *p, int has_vid,
                                                    uint16_t vid, int has_pid, uint16_t pid,
                                                    const char *device_id, char *out,
                                                    size_t out_size);

/*
 * Check a per-device subject value (NULL: none given) against the DAC profile p: taken at all,
 * required, length, the profile's pattern (HSMCA_E_DEVICE_ID_PATTERN); printable ASCII, a
 * PrintableString for serialNumber, no legacy Mvid:/Mpid: (VID and PID stay as the PAI says,
 * N8), the expanded common name within 64 bytes (N7) (HSMCA_E_DEVICE_ID_RULE). why (may be NULL)
 * gets an English reason that never repeats the value. HSMCA_E_INVALID_ARG.
 */
HSMCA_MUSTCHECK enum hsmca_err hsmca_profile_device_id_check(const struct hsmca_profile *p,
                                                             const char *value, char *why,
                                                             size_t why_len);

/* "commonName", "serialNumber" or "none". */
const char *hsmca_profile_devid_attr_name(enum hsmca_profile_devid_attr a);

/* "paa", "pai", "dac". */
const char *hsmca_profile_type_name(enum hsmca_profile_type t);

#endif
