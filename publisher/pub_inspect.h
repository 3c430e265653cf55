/*
 * pub_inspect: what Exchange Online actually holds for a set of directory objects, read-only.
 *
 * For each object: resolve the recipient (pub_resolver, resolve.order, as the live publisher does), then
 * read it with the Get-* cmdlet of its type (Get-Mailbox, Get-MailUser, Get-MailContact; paged reads in
 * pub_exchange_get) for IsDirSynced, IsExchangeCloudManaged and both certificate lists. Everything runs
 * concurrently on the publisher's HTTP client (http.max_inflight), in chunks of PUB_INSPECT_CHUNK objects.
 * Used by replay --dry-run (reconciliation) and preflight (write scope). Never writes.
 */
#ifndef PUB_INSPECT_H
#define PUB_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

#include "certsync/v1/change_event.pb-c.h"
#include "cs_err.h"
#include "pub_o365.h"
#include "pub_resolver.h"

#define PUB_INSPECT_CHUNK 200

typedef enum pub_inspect_status {
    PUB_INSPECT_FOUND = 1, /* resolved and read */
    PUB_INSPECT_NOT_FOUND, /* no recipient by any key of resolve.order (or Get-* found none) */
    PUB_INSPECT_ERROR,     /* throttled past the retries, outage, ambiguous: see detail */
} pub_inspect_status;

/* "found", "not_found", "error". */
const char *pub_inspect_status_name(pub_inspect_status s);

typedef struct pub_inspect_result {
    pub_inspect_status status;
    pub_recipient rcpt; /* FOUND: the resolved recipient */
    bool is_dir_synced;
    bool is_exchange_cloud_managed;
    size_t n_user_certificate; /* values Exchange holds */
    size_t n_user_smime_certificate;
    char user_certificate_digest[65]; /* pub_inspect_digest() of each list */
    char user_smime_certificate_digest[65];
    char detail[512];
} pub_inspect_result;

/*
 * Inspects the recipients of `events[0..n)` (identities; NULL entries are reported as ERROR) and fills
 * `out[i]` for each. Returns an error only when it could not try at all (credentials: fatal).
 */
cs_err *pub_inspect_run(pub_o365 *o, const Certsync__V1__ChangeEvent *const *events, size_t n,
                        pub_inspect_result *out);

/*
 * An order-insensitive digest of a list of values: lowercase hex SHA-256 over the sorted hex SHA-256s of
 * the values (at most 1024 values are taken). Two lists with the same values in any order agree.
 */
void pub_inspect_digest(const ProtobufCBinaryData *values, size_t n, char out[65]);

#endif
