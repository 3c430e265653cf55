/*
 * pub_exchange: the Exchange Online admin API ("InvokeCommand", o365-contract.md section 2 [observed]).
 *
 *   POST {exchange_url}/adminapi/beta/{tenant}/InvokeCommand
 *   Authorization: Bearer <token>, Content-Type/Accept: application/json, X-CmdletName, X-ResponseFormat:
 *   json, X-AnchorMailbox: UPN:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@<tenant domain>,
 *   client-request-id (pub_http)
 *   {"CmdletInput":{"CmdletName":"Set-Mailbox","Parameters":{"Identity":"<id>", ...}}}
 *
 * Writes replace the full lists of UserCertificate and UserSMimeCertificate in one call (idempotent).
 * Reads follow @odata.nextLink. Errors are classified for the pipeline (pub_exo_kind). A 401 refreshes
 * the token once and resends. Requests run on the shared pub_http client, so a throttled recipient does
 * not hold up the others.
 */
#ifndef PUB_EXCHANGE_H
#define PUB_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "cs_buf.h"
#include "cs_err.h"
#include "pub_http.h"
#include "pub_token.h"

/* A byte string (a DER certificate or an S/MIME value): protobuf-c's {len, data}, so the values of a
 * pub_decision (pub_decision_values()) pass through without a copy. */
typedef ProtobufCBinaryData pub_blob;

/* What happened to an Exchange call, for the pipeline to act on. */
typedef enum pub_exo_kind {
    PUB_EXO_OK = 0,
    PUB_EXO_NOT_FOUND,     /* no such recipient (for that cmdlet): usually "not yet" */
    PUB_EXO_WRITE_SCOPE,   /* directory-synced, not cloud-managed: permanent until an admin acts */
    PUB_EXO_THROTTLED,     /* 429: retry after retry_after_ms */
    PUB_EXO_INVALID_VALUE, /* a value or parameter was refused (too many values, bad DER, ...): permanent */
    PUB_EXO_UNAVAILABLE,   /* 5xx, timeouts, transport: retry with backoff */
    PUB_EXO_AUTH,          /* token could not be had, or 401 after a refresh */
    PUB_EXO_OTHER,         /* anything else: permanent */
    PUB_EXO_CANCELLED,
} pub_exo_kind;

const char *pub_exo_kind_name(pub_exo_kind k);

/* One recipient from Get-Mailbox / Get-MailUser / Get-Recipient. Strings are "" when absent. */
typedef struct pub_exo_recipient {
    char *identity;
    char *external_directory_object_id;
    char *primary_smtp_address;
    char *recipient_type_details;
    char *user_principal_name;
    bool is_dir_synced;
    bool is_exchange_cloud_managed;
    pub_blob *user_certificate; /* decoded from base64 */
    size_t n_user_certificate;
    pub_blob *user_smime_certificate;
    size_t n_user_smime_certificate;
} pub_exo_recipient;

/* Frees an array of recipients from pub_exchange_parse_recipients(). NULL is allowed. */
void pub_exo_recipients_free(pub_exo_recipient *r, size_t n);

/* The result handed to a callback; valid until the callback returns. */
typedef struct pub_exo_result {
    pub_exo_kind kind;
    const cs_err *err;                   /* NULL when kind is PUB_EXO_OK: else names the cmdlet, identity,
                                      Exchange's text, the fix and the client-request-id */
    long status;                         /* last HTTP status */
    const char *client_request_id;       /* of the last request */
    long long retry_after_ms;            /* -1 when none */
    long rate_limit_remaining;           /* -1 when absent */
    const pub_exo_recipient *recipients; /* reads: all pages */
    size_t n_recipients;
} pub_exo_result;

typedef void (*pub_exo_done_fn)(void *ctx, const pub_exo_result *res);

typedef struct pub_exchange pub_exchange;

typedef struct pub_exchange_opts {
    const char *exchange_url;  /* e.g. https://outlook.office365.com */
    const char *tenant_id;     /* GUID or domain, in the URL path */
    const char *tenant_domain; /* for X-AnchorMailbox */
    size_t max_pages;          /* bound on @odata.nextLink pages; 0: 100 */
} pub_exchange_opts;

/* Creates a client on `http` and `tokens` (borrowed: they must outlive it). Caller frees with
 * pub_exchange_free(). */
cs_err *pub_exchange_new(const pub_exchange_opts *o, pub_http *http, pub_token_provider *tokens,
                         pub_exchange **out);
void pub_exchange_free(pub_exchange *x);

/*
 * The Set-* cmdlet for a RecipientTypeDetails value: mailboxes (UserMailbox, SharedMailbox, RoomMailbox,
 * EquipmentMailbox, SchedulingMailbox, ...Mailbox) -> Set-Mailbox, MailUser / GuestMailUser -> Set-MailUser,
 * MailContact -> Set-MailContact; NULL when the type carries no certificates we can write.
 */
const char *pub_exchange_set_cmdlet_for(const char *recipient_type_details);

/*
 * Writes the full lists of both attributes of `identity` with `cmdlet` (Set-Mailbox, Set-MailUser or
 * Set-MailContact). Empty lists clear. `done` is called once (from pub_http_run()).
 */
cs_err *pub_exchange_set_certificates(pub_exchange *x, const char *cmdlet, const char *identity,
                                      const pub_blob *user_certs, size_t n_user, const pub_blob *smime_certs,
                                      size_t n_smime, pub_exo_done_fn done, void *ctx);

/*
 * Reads recipients with `cmdlet` (Get-Mailbox, Get-MailUser, Get-MailContact, Get-Recipient) by
 * `identity`, or by an OPATH `filter` when identity is NULL, following every page.
 */
cs_err *pub_exchange_get(pub_exchange *x, const char *cmdlet, const char *identity, const char *filter,
                         pub_exo_done_fn done, void *ctx);

/* --- Pure functions, exposed for tests. --- */

/*
 * Appends one certificate parameter in the [observed] encoding of o365-contract.md section 2:
 *   "<P>@odata.type":"#Collection(Exchange.ByteArrayType)","<P>":[{"Data":"<base64>"},...]
 * The only place this encoding lives.
 */
bool pub_exchange_add_cert_param(cs_buf *out, const char *param, const pub_blob *values, size_t n);

/* The InvokeCommand body of a Set-* call (compact JSON, fixed key order). */
cs_err *pub_exchange_build_set_body(const char *cmdlet, const char *identity, const pub_blob *user_certs,
                                    size_t n_user, const pub_blob *smime_certs, size_t n_smime, cs_buf *out);

/* The InvokeCommand body of a Get-* call by Identity or Filter. */
cs_err *pub_exchange_build_get_body(const char *cmdlet, const char *identity, const char *filter,
                                    cs_buf *out);

/*
 * Parses a success body: appends the recipients of "value" to *recs / *n (caller frees with
 * pub_exo_recipients_free()) and returns the @odata.nextLink in *next_link (caller frees, NULL when none).
 */
cs_err *pub_exchange_parse_recipients(const char *body, size_t len, pub_exo_recipient **recs, size_t *n,
                                      char **next_link);

/*
 * Classifies a failed response from its status and error envelope; writes Exchange's own text (the
 * detail message or error.message) to `detail` (cap bytes).
 */
pub_exo_kind pub_exchange_classify(long status, const char *body, size_t len, char *detail, size_t cap);

#endif
