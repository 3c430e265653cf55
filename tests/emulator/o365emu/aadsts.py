"""The Entra ID (AADSTS) error catalogue of the token endpoint and the error body builder.

Texts follow the messages Entra returns (learn.microsoft.com/entra/identity-platform/reference-error-codes
and captured responses); the README lists which ones are [observed] and which are the emulator's choice."""
from . import util

CERT_DOC = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"

# code -> (HTTP status, OAuth2 `error`, description template)
CATALOG = {
    900144: (400, "invalid_request",
             "The request body must contain the following parameter: '{param}'."),
    70003: (400, "unsupported_grant_type",
            "The app requested an unsupported grant type '{grant}'."),
    # Text of the error example in v2-oauth2-client-creds-grant-flow (unknown resource with /.default).
    70011: (400, "invalid_scope",
            "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."),
    # reference-error-codes: InvalidResourceServicePrincipalNotFound; `error` invalid_resource as in the
    # error examples of the v1 token docs (AADSTS50001/500011 share it).
    500011: (400, "invalid_resource",
             "The resource principal named {resource} was not found in the tenant named {tenant}. This can "
             "happen if the application has not been installed by the administrator of the tenant or consented "
             "to by any user in the tenant. You might have sent your authentication request to the wrong tenant."),
    # Text as captured in public reports (see README): client credentials need <resource>/.default.
    1002012: (400, "invalid_scope",
              "The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
              "with /.default suffixed to the resource identifier (application ID URI)."),
    # reference-error-codes: BadResourceRequestInvalidRequest.
    900561: (400, "invalid_request",
             "The endpoint only accepts POST requests. Received a {verb} request."),
    # InvalidRequestFormatDuplicatedParameter, captured on the token endpoint (MicrosoftDocs/azure-dev-docs#934).
    9000411: (400, "invalid_request",
              "The request is not properly formatted. The parameter '{param}' is duplicated."),
    700022: (400, "invalid_scope",
             "The provided value for the input parameter scope is not valid because it contains more than one "
             "resource. Scope {scope} is not valid."),
    700016: (400, "unauthorized_client",
             "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
             "happen if the application has not been installed by the administrator of the tenant or consented "
             "to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
    90002: (400, "invalid_request",
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into "
            "the correct cloud. Check with your subscription administrator, this may happen if there are no "
            "active subscriptions for the tenant."),
    50027: (400, "invalid_request", "JWT token is invalid or malformed. [Reason - {reason}]"),
    700027: (401, "invalid_client",
             "Client assertion failed signature validation. [Reason - {reason}, Thumbprint of key used by "
             "client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to "
             "see configured keys for app Id '{client_id}'.]"),
    700024: (401, "invalid_client",
             "Client assertion is not within its valid time range. Current time: {now}, assertion valid from "
             "{nbf}, expiry time of assertion {exp}. Review the documentation at " + CERT_DOC + " ."),
    700021: (401, "invalid_client",
             "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
             "documentation at " + CERT_DOC + " ."),
    700023: (401, "invalid_client",
             "Client assertion audience claim does not match Realm issuer. Review the documentation at "
             + CERT_DOC + " ."),
    7000215: (401, "invalid_client",
              "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
              "value, not the client secret ID, for a secret added to app '{client_id}'."),
    7000218: (401, "invalid_client",
              "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
    7000222: (401, "invalid_client",
              "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
              "create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
              "credentials for added security: https://aka.ms/certCreds."),
    90055: (429, "temporarily_unavailable",
            "TenantThrottlingError - There are too many incoming requests. This exception is thrown for "
            "blocked tenants."),
    90033: (503, "temporarily_unavailable", "A transient error has occurred. Please try again."),
}


class AadError(Exception):
    """Raised by the token endpoint; rendered by body()."""

    def __init__(self, code, **fields):
        super().__init__(code)
        self.code = code
        self.fields = fields

    @property
    def status(self):
        return CATALOG[self.code][0]


def body(code, fields, now, trace_id, correlation_id, authority):
    """The JSON error body Entra returns: error, error_description (AADSTSnnnn: ... + trace lines),
    error_codes, timestamp, trace_id, correlation_id, error_uri (as in reference-error-codes' example)."""
    status, error, template = CATALOG[code]
    try:
        text = template.format(**fields)
    except (KeyError, IndexError):
        text = template
    ts = util.aad_timestamp(now)
    # Layout of real bodies and of every example in the docs: the trace lines follow after CR LF.
    desc = "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s" % (
        code, text, trace_id, correlation_id, ts)
    return status, {
        "error": error,
        "error_description": desc,
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": "%s/error?code=%d" % (authority.rstrip("/"), code),
    }
