//! The token endpoint's errors (API.md 3, 4.2, 5, 6): a status, an `error` code and an
//! `error_description`, compared byte for byte by clients and by the NHS's own tests.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: Cow<'static, str>,
}

const INVALID_REQUEST: &str = "invalid_request";

impl OAuthError {
    pub const fn new(status: u16, error: &'static str, description: &'static str) -> Self {
        OAuthError {
            status,
            error,
            description: Cow::Borrowed(description),
        }
    }

    const fn bad(description: &'static str) -> Self {
        Self::new(400, INVALID_REQUEST, description)
    }

    const fn unauthorised(description: &'static str) -> Self {
        Self::new(401, INVALID_REQUEST, description)
    }

    // §3: the endpoint.
    pub const CONTENT_TYPE: Self = Self::new(
        415,
        INVALID_REQUEST,
        "Content-Type header must be application/x-www-form-urlencoded",
    );
    pub const GRANT_TYPE_MISSING: Self = Self::bad("grant_type is missing");
    pub const GRANT_TYPE_UNSUPPORTED: Self =
        Self::new(400, "unsupported_grant_type", "grant_type is invalid");
    pub const SUBJECT_TOKEN_TYPE: Self = Self::bad(
        "missing or invalid subject_token_type - must be 'urn:ietf:params:oauth:token-type:id_token'",
    );
    pub const NOT_FOUND: Self = Self::new(404, INVALID_REQUEST, "Not Found");

    // §4.2: the client assertion, in check order.
    pub const ASSERTION_TYPE: Self = Self::bad("Missing or invalid client_assertion_type - must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'");
    pub const ASSERTION_MISSING: Self = Self::bad("Missing client_assertion");
    pub const ASSERTION_MALFORMED: Self = Self::bad("Malformed JWT in client_assertion");
    pub const ASSERTION_ALG: Self = Self::bad("Invalid 'alg' header in client_assertion JWT - unsupported JWT algorithm - must be 'RS512'");
    pub const ASSERTION_EXPIRED: Self =
        Self::bad("Invalid 'exp' claim in client_assertion JWT - JWT has expired");
    pub const ASSERTION_KID_MISSING: Self =
        Self::bad("Missing 'kid' header in client_assertion JWT");
    pub const ASSERTION_TYP: Self =
        Self::bad("Invalid 'typ' header in client_assertion JWT - must be 'JWT'");
    pub const ASSERTION_EXP_MISSING: Self =
        Self::bad("Missing 'exp' claim in client_assertion JWT");
    pub const ASSERTION_EXP_TYPE: Self =
        Self::bad("Invalid 'exp' claim in client_assertion JWT - must be an integer");
    pub const ASSERTION_ISS_SUB: Self =
        Self::bad("Missing or non-matching 'iss'/'sub' claims in client_assertion JWT");
    pub const ASSERTION_JTI_MISSING: Self =
        Self::bad("Missing 'jti' claim in client_assertion JWT");
    pub const ASSERTION_JTI_TYPE: Self = Self::bad("Invalid 'jti' claim in client_assertion JWT - must be a unique string value such as a GUID");
    pub const ASSERTION_JTI_REUSED: Self =
        Self::bad("Non-unique 'jti' claim in client_assertion JWT");
    pub const ASSERTION_EXP_TOO_FAR: Self =
        Self::bad("Invalid 'exp' claim in client_assertion JWT - more than 5 minutes in future");
    pub const ASSERTION_UNKNOWN_CLIENT: Self =
        Self::unauthorised("Invalid 'iss'/'sub' claims in client_assertion JWT");
    pub const NO_PUBLIC_KEY: Self = Self::new(403, "public_key error", "You need to register a public key to use this authentication method - please contact support to configure");
    pub const JWKS_UNREACHABLE: Self = Self::new(
        403,
        "public_key error",
        "The JWKS endpoint, for your client_assertion can't be reached",
    );
    pub const ASSERTION_KID_UNKNOWN: Self =
        Self::unauthorised("Invalid 'kid' header in client_assertion JWT - no matching public key");
    pub const ASSERTION_AUD: Self =
        Self::unauthorised("Missing or invalid 'aud' claim in client_assertion JWT");
    pub const SIGNATURE: Self =
        Self::new(401, "public_key error", "JWT signature verification failed");
    pub const UNAUTHORIZED_CLIENT: Self = Self::new(401, "unauthorized_client", "you have tried to request authorization but your application is not configured to use this authorization grant type");

    // §5: token exchange.
    pub const EXCHANGE_GRANT_TYPE: Self = Self::bad("grant_type is invalid");
    pub const SUBJECT_MISSING: Self = Self::bad("Missing subject_token");
    pub const SUBJECT_MALFORMED: Self = Self::bad("Malformed JWT in subject_token");
    pub const SUBJECT_KID_MISSING: Self = Self::bad("Missing 'kid' header in subject_token JWT");
    pub const SUBJECT_TYP: Self =
        Self::bad("Invalid 'typ' header in subject_token JWT - must be 'JWT'");
    pub const SUBJECT_ALG_MISSING: Self = Self::bad("Missing 'alg' header in subject_token JWT");
    pub const SUBJECT_EXP_MISSING: Self = Self::bad("Missing 'exp' claim in subject_token JWT");
    pub const SUBJECT_EXP_TYPE: Self =
        Self::bad("Invalid 'exp' claim in subject_token JWT - must be an integer");
    pub const SUBJECT_EXPIRED: Self =
        Self::bad("Invalid 'exp' claim in subject_token JWT - JWT has expired");
    pub const SUBJECT_ISS_MISSING: Self = Self::bad("Missing 'iss' claim in subject_token JWT");
    pub const SUBJECT_AUD_MISSING: Self =
        Self::unauthorised("Missing 'aud' claim in subject_token JWT");
    pub const SUBJECT_ISSUER: Self =
        Self::bad("Missing or non-matching 'iss' claim in subject_token JWT");
    pub const SUBJECT_KID_UNKNOWN: Self =
        Self::unauthorised("Invalid 'kid' header in subject_token JWT - no matching public key");
    pub const ACT_KID_MISSING: Self = Self::bad("Missing 'kid' header in act.sub JWT");
    pub const ACT_TYP: Self = Self::bad("Invalid 'typ' header in act.sub JWT - must be 'JWT'");
    pub const ACT_ALG_MISSING: Self = Self::bad("Missing 'alg' header in act.sub JWT");
    pub const ACT_EXP_MISSING: Self = Self::bad("Missing 'exp' claim in act.sub JWT");
    pub const ACT_EXP_TYPE: Self =
        Self::bad("Invalid 'exp' claim in act.sub JWT - must be an integer");
    pub const ACT_ISS_MISSING: Self = Self::bad("Missing 'iss' claim in act.sub JWT");
    pub const ACT_AUD_MISSING: Self = Self::bad("Missing 'aud' claim in act.sub JWT");
    pub const ACT_NHS_NUMBER_MISSING: Self = Self::bad("Missing 'nhs_number' claim in act.sub JWT");
    pub const UNKNOWN: Self = Self::new(500, "unknown_error", "An unknown error occurred processing this request. Contact us for assistance diagnosing this issue: https://digital.nhs.uk/developer/help-and-support quoting Message ID");

    // §6: refresh and app state.
    pub const CLIENT_ID_MISSING: Self = Self::unauthorised("client_id is missing");
    pub const CLIENT_SECRET_MISSING: Self = Self::unauthorised("client_secret is missing");
    pub const CLIENT_INVALID: Self = Self::new(
        401,
        "invalid_client",
        "client_id or client_secret is invalid",
    );
    pub const REFRESH_MISSING: Self = Self::bad("refresh_token is missing");
    pub const REFRESH_INVALID: Self = Self::new(401, "invalid_grant", "refresh_token is invalid");
    pub const REFRESH_EXPIRED: Self = Self::new(
        401,
        "invalid_grant",
        "refresh token refresh period has expired",
    );
    pub const APP_REVOKED: Self = Self::new(
        401,
        "access_denied",
        "The developer app associated with the API key is not approved or revoked",
    );
    pub const REDIRECT_URI_MISSING: Self = Self::bad("redirect_uri is missing");
    pub const CODE_MISSING: Self = Self::bad("authorization_code is missing");

    /// The token endpoint's 429 (API.md 9 leaves its body unverified: OpenSpine answers
    /// in the endpoint's own error shape, with the platform's quota text).
    pub fn rate_limited(text: String) -> Self {
        OAuthError {
            status: 429,
            error: "rate_limit_exceeded",
            description: Cow::Owned(text),
        }
    }
}
