/*
 * cs_readiness: can Outlook encrypt mail to this user? The S/MIME readiness of one
 * user, judged from the certificate values that will be in Exchange Online after sync
 * and the user's addresses (issue 6).
 *
 * What Outlook does (o365-contract.md section 6, KB 2840546): when it encrypts, it
 * takes the recipient's certificates from userSMIMECertificate when that attribute has
 * any value, and from userCertificate only otherwise. So a user with one broken
 * userSMIMECertificate value and a good userCertificate cannot receive encrypted mail:
 * the report judges the attribute Outlook will use and says when the other one would
 * have worked.
 *
 * Reasons, first match wins (names are stable: report column and metrics label):
 *   over_15_values         an attribute holds more than 15 values (Exchange keeps at most 15).
 *   no_usable_certificate  the attribute Outlook uses has no value whose user certificate
 *                          is readable, fit for encryption (cs_policy_verdict_fit_encryption)
 *                          and passes every policy rule other than validity and address.
 *   address_mismatch       usable certificates are valid now, but none is for an address of
 *                          the user.
 *   expired                every usable certificate is expired (or not yet valid).
 *   expiring_soon          the best usable certificate (latest notAfter, valid, address
 *                          matching) expires within expiring_soon_days (default 30).
 *   ok                     the best usable certificate is good for longer than that.
 */
#ifndef CS_READINESS_H
#define CS_READINESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cs_buf.h"
#include "cs_cert.h"
#include "cs_err.h"
#include "cs_metrics.h"
#include "cs_policy.h"

typedef enum cs_readiness_reason {
    CS_READINESS_OK = 0,
    CS_READINESS_NO_USABLE_CERTIFICATE,
    CS_READINESS_ADDRESS_MISMATCH,
    CS_READINESS_EXPIRED,
    CS_READINESS_EXPIRING_SOON,
    CS_READINESS_OVER_15_VALUES,
} cs_readiness_reason;
#define CS_READINESS_REASON_COUNT 6

/* "ok", "no_usable_certificate", "address_mismatch", "expired", "expiring_soon", "over_15_values";
 * "unknown" outside the enum. */
const char *cs_readiness_reason_name(cs_readiness_reason r);

#define CS_READINESS_DEFAULT_EXPIRING_SOON_DAYS 30u
#define CS_READINESS_MAX_VALUES 15         /* Exchange Online's limit per attribute */
#define CS_READINESS_MAX_INPUT_VALUES 1024 /* more values than this are refused as bad input */

/* One raw attribute value. */
typedef struct cs_readiness_value {
    const unsigned char *der;
    size_t len;
} cs_readiness_value;

typedef struct cs_readiness_input {
    const char *label; /* the user in the report: UPN or DN */
    const cs_readiness_value *user_certificate;
    size_t n_user_certificate;
    const cs_readiness_value *user_smime_certificate;
    size_t n_user_smime_certificate;
    const char *const *addresses; /* cs_policy_addresses_collect() */
    size_t n_addresses;
    int64_t now;                 /* unix seconds */
    unsigned expiring_soon_days; /* 0 = CS_READINESS_DEFAULT_EXPIRING_SOON_DAYS */
} cs_readiness_input;

typedef struct cs_readiness cs_readiness;

/*
 * Judges one user with `policy` (its rules decide what "usable" means; its enabled flag
 * does not matter here). Errors only for bad arguments (more than
 * CS_READINESS_MAX_INPUT_VALUES values included) and out of memory.
 * Caller frees *out with cs_readiness_free().
 */
cs_err *cs_readiness_judge(const cs_policy *policy, const cs_readiness_input *in, cs_readiness **out);

/* Frees a result; NULL is allowed. */
void cs_readiness_free(cs_readiness *r);

cs_readiness_reason cs_readiness_get_reason(const cs_readiness *r);

/* The attribute Outlook will read (userSMIMECertificate when it has values); `*has` false when both are empty. */
cs_cert_attr cs_readiness_attribute(const cs_readiness *r, bool *has);

/* SHA-256 of the certificate the reason is about ("" when none), its notAfter (0 when none). */
const char *cs_readiness_fingerprint(const cs_readiness *r);
int64_t cs_readiness_not_after(const cs_readiness *r);

/* One sentence: why, and the fix. Owned by r. */
const char *cs_readiness_detail(const cs_readiness *r);

/*
 * Table output (fixed-width columns, for a terminal), one line each, '\n'-terminated:
 *   USER (40) REASON (22) ATTRIBUTE (20) NOT_AFTER (20) CERTIFICATE (16: first 16 hex digits) DETAIL
 * A column value longer than its width is printed whole, followed by one space.
 * Returns false when `out` is full.
 */
bool cs_readiness_table_header(cs_buf *out);
bool cs_readiness_table_row(const cs_readiness *r, cs_buf *out);

/*
 * CSV output per RFC 4180 (CRLF line ends; fields with a comma, quote, CR or LF are
 * quoted, quotes doubled). Columns: user,reason,attribute,not_after,certificate_sha256,
 * detail. A field starting with = + - @ TAB or CR gets a leading apostrophe so a
 * spreadsheet does not run a formula a user planted in their certificate's subject.
 */
bool cs_readiness_csv_header(cs_buf *out);
bool cs_readiness_csv_row(const cs_readiness *r, cs_buf *out);

/* Users counted by reason. Zero it, add each user, then publish. */
typedef struct cs_readiness_tally {
    uint64_t users[CS_READINESS_REASON_COUNT];
} cs_readiness_tally;

void cs_readiness_tally_add(cs_readiness_tally *t, const cs_readiness *r);

/* Registers the gauge certsync_smime_readiness_users{reason}. The family is owned by `reg`. */
cs_err *cs_readiness_metrics_register(cs_metrics *reg, cs_metric **out);

/* Sets the gauge of every reason (zeros included, so a reason that went away reads 0). */
void cs_readiness_tally_publish(const cs_readiness_tally *t, cs_metric *fam);

#endif
