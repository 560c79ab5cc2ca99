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
    /* Extensions (always BC, KU, SKID; AKID per akid). */
    int ca;      /* basicConstraints cA */
    int pathlen; /* -1: absent */
    unsigned ku; /* HSMCA_KU_* bits */
    int akid;    /* emit authorityKeyIdentifier */
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

/* "paa", "pai", "dac". */
const char *hsmca_profile_type_name(enum hsmca_profile_type t);

#endif
