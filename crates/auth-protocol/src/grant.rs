//! The token endpoint's dispatch (API.md 3) and the checks that need nothing but the
//! request and the clock: the client assertion's (4.2 rows 1–12 and 14) and the subject
//! token's (5 rows 4–11). What needs I/O (the `jti` record, the registry, the JWKS) is the
//! front door's, which runs these first and then the rest in the same order.

use crate::error::OAuthError;
use crate::jwt::{Jwt, NumericClaim};
use std::collections::HashMap;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A client assertion may expire at most this far ahead (API.md 4.1: five minutes, with
/// ten seconds of tolerance).
pub const MAX_ASSERTION_AHEAD_SECS: i64 = 310;

/// The form of a token request: each field's first value. (`scope` is read by no check:
/// token scopes come from the app's products.)
#[derive(Debug, Default, Clone)]
pub struct Form(HashMap<String, String>);

impl Form {
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut map = HashMap::new();
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Form(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Which flow a token request is (API.md 3, first match wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    TokenExchange,
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
}

pub fn dispatch(form: &Form) -> Result<Grant, OAuthError> {
    if form.get("subject_token_type") == Some(ID_TOKEN_TYPE) {
        return Ok(Grant::TokenExchange);
    }
    match form.get("grant_type") {
        Some("client_credentials") => Ok(Grant::ClientCredentials),
        Some("authorization_code") => Ok(Grant::AuthorizationCode),
        Some("refresh_token") => Ok(Grant::RefreshToken),
        Some(TOKEN_EXCHANGE) => Err(OAuthError::SUBJECT_TOKEN_TYPE),
        Some(_) => Err(OAuthError::GRANT_TYPE_UNSUPPORTED),
        None => Err(OAuthError::GRANT_TYPE_MISSING),
    }
}

/// A client assertion that passed every check that needs no I/O.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub jwt: Jwt,
    /// `iss` = `sub`: the app's client id (its API key).
    pub client_id: String,
    pub jti: String,
    pub kid: String,
    pub exp: i64,
}

impl Assertion {
    /// API.md 4.2 rows 1–12, in order.
    pub fn check(form: &Form, now: i64) -> Result<Assertion, OAuthError> {
        if form.get("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(OAuthError::ASSERTION_TYPE);
        }
        let Some(raw) = form.get("client_assertion") else {
            return Err(OAuthError::ASSERTION_MISSING);
        };
        let jwt = Jwt::decode(raw).ok_or(OAuthError::ASSERTION_MALFORMED)?;
        if jwt.header_str("alg") != Some("RS512") {
            return Err(OAuthError::ASSERTION_ALG);
        }
        let exp = jwt.numeric("exp");
        if matches!(exp, NumericClaim::Value(e) if e < now) {
            return Err(OAuthError::ASSERTION_EXPIRED);
        }
        let Some(kid) = jwt.header_str("kid").map(str::to_string) else {
            return Err(OAuthError::ASSERTION_KID_MISSING);
        };
        if !jwt.typ_is_jwt() {
            return Err(OAuthError::ASSERTION_TYP);
        }
        let exp = match exp {
            NumericClaim::Missing => return Err(OAuthError::ASSERTION_EXP_MISSING),
            NumericClaim::NotANumber => return Err(OAuthError::ASSERTION_EXP_TYPE),
            NumericClaim::Value(e) => e,
        };
        let client_id = match (jwt.claim_str("iss"), jwt.claim_str("sub")) {
            (Some(iss), Some(sub)) if iss == sub && !iss.is_empty() => iss.to_string(),
            _ => return Err(OAuthError::ASSERTION_ISS_SUB),
        };
        let jti = match jwt.claims.get("jti") {
            None | Some(serde_json::Value::Null) => return Err(OAuthError::ASSERTION_JTI_MISSING),
            Some(serde_json::Value::String(j)) => j.clone(),
            Some(_) => return Err(OAuthError::ASSERTION_JTI_TYPE),
        };
        Ok(Assertion {
            jwt,
            client_id,
            jti,
            kid,
            exp,
        })
    }

    /// Row 14. The front door checks it before the `jti` claim of row 13 (one atomic
    /// claim that is both the lookup and the record): an assertion refused here never
    /// burns its `jti`, as on the platform, where the record comes after row 14.
    pub fn check_not_too_far(&self, now: i64) -> Result<(), OAuthError> {
        if self.exp > now.saturating_add(MAX_ASSERTION_AHEAD_SECS) {
            return Err(OAuthError::ASSERTION_EXP_TOO_FAR);
        }
        Ok(())
    }

    /// Row 20: `aud` is the token URL exactly as called.
    pub fn check_audience(&self, token_url: &str) -> Result<(), OAuthError> {
        let ok = match self.jwt.claims.get("aud") {
            Some(serde_json::Value::String(a)) => a == token_url,
            Some(serde_json::Value::Array(all)) => {
                all.len() == 1 && all[0].as_str() == Some(token_url)
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(OAuthError::ASSERTION_AUD)
        }
    }
}

/// Token exchange's own first checks (API.md 5 rows 1–2), before the client assertion.
pub fn check_exchange_form(form: &Form) -> Result<(), OAuthError> {
    if form.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(OAuthError::ASSERTION_TYPE);
    }
    if form.get("grant_type") != Some(TOKEN_EXCHANGE) {
        return Err(OAuthError::EXCHANGE_GRANT_TYPE);
    }
    Ok(())
}

/// An ID token that passed the checks that need no I/O (API.md 5 rows 4–11).
#[derive(Debug, Clone)]
pub struct SubjectToken {
    pub jwt: Jwt,
    pub kid: String,
    pub alg: String,
    pub iss: String,
}

/// The error texts of one JWT's header and claim checks: the subject token's, or its
/// `act.sub` (delegated access).
struct Texts {
    kid: OAuthError,
    typ: OAuthError,
    alg: OAuthError,
    exp_missing: OAuthError,
    exp_type: OAuthError,
    /// `None`: an `act.sub` that expired is not refused for it (API.md 5 lists no text).
    expired: Option<OAuthError>,
    iss: OAuthError,
    aud: OAuthError,
}

fn check_common(jwt: &Jwt, t: &Texts, now: i64) -> Result<(), OAuthError> {
    if jwt.header_str("kid").is_none() {
        return Err(t.kid.clone());
    }
    if !jwt.typ_is_jwt() {
        return Err(t.typ.clone());
    }
    if jwt.header_str("alg").is_none() {
        return Err(t.alg.clone());
    }
    match jwt.numeric("exp") {
        NumericClaim::Missing => return Err(t.exp_missing.clone()),
        NumericClaim::NotANumber => return Err(t.exp_type.clone()),
        NumericClaim::Value(e) if e < now => {
            if let Some(expired) = &t.expired {
                return Err(expired.clone());
            }
        }
        NumericClaim::Value(_) => {}
    }
    if jwt.claim_str("iss").is_none() {
        return Err(t.iss.clone());
    }
    if jwt.claims.get("aud").is_none_or(serde_json::Value::is_null) {
        return Err(t.aud.clone());
    }
    Ok(())
}

impl SubjectToken {
    /// API.md 5 rows 4–11, in order.
    pub fn check(form: &Form, now: i64) -> Result<SubjectToken, OAuthError> {
        let Some(raw) = form.get("subject_token").filter(|s| !s.is_empty()) else {
            return Err(OAuthError::SUBJECT_MISSING);
        };
        let jwt = Jwt::decode(raw).ok_or(OAuthError::SUBJECT_MALFORMED)?;
        check_common(
            &jwt,
            &Texts {
                kid: OAuthError::SUBJECT_KID_MISSING,
                typ: OAuthError::SUBJECT_TYP,
                alg: OAuthError::SUBJECT_ALG_MISSING,
                exp_missing: OAuthError::SUBJECT_EXP_MISSING,
                exp_type: OAuthError::SUBJECT_EXP_TYPE,
                expired: Some(OAuthError::SUBJECT_EXPIRED),
                iss: OAuthError::SUBJECT_ISS_MISSING,
                aud: OAuthError::SUBJECT_AUD_MISSING,
            },
            now,
        )?;
        // Delegated access: an NHS login token acting for someone else carries the
        // actor's own ID token in `act.sub`, checked the same way plus its NHS number.
        if jwt.claims.contains_key("nhs_number") {
            if let Some(act_sub) = jwt
                .claims
                .get("act")
                .and_then(|a| a.get("sub"))
                .and_then(serde_json::Value::as_str)
            {
                let act = Jwt::decode(act_sub).ok_or(OAuthError::ACT_KID_MISSING)?;
                check_common(
                    &act,
                    &Texts {
                        kid: OAuthError::ACT_KID_MISSING,
                        typ: OAuthError::ACT_TYP,
                        alg: OAuthError::ACT_ALG_MISSING,
                        exp_missing: OAuthError::ACT_EXP_MISSING,
                        exp_type: OAuthError::ACT_EXP_TYPE,
                        expired: None,
                        iss: OAuthError::ACT_ISS_MISSING,
                        aud: OAuthError::ACT_AUD_MISSING,
                    },
                    now,
                )?;
                if act.claims.get("nhs_number").is_none() {
                    return Err(OAuthError::ACT_NHS_NUMBER_MISSING);
                }
            }
        }
        let kid = jwt.header_str("kid").unwrap_or_default().to_string();
        let alg = jwt.header_str("alg").unwrap_or_default().to_string();
        let iss = jwt.claim_str("iss").unwrap_or_default().to_string();
        Ok(SubjectToken { jwt, kid, alg, iss })
    }
}
