//! Compact JWTs as the platform reads them: decoded without trusting anything, so that
//! each header and claim can be checked in the platform's order (a missing `kid` is
//! reported before a bad signature), then verified against a JWK.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest JWT read: real assertions and ID tokens are a few KiB.
pub const MAX_JWT_LEN: usize = 16 * 1024;

/// A decoded, not yet verified, JWT.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `header.payload` as sent: what the signature covers.
    signing_input: String,
    /// The signature, base64url as sent.
    signature: String,
}

/// What a claim's value is, for the checks that tell "missing" from "wrong type".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericClaim {
    Missing,
    NotANumber,
    Value(i64),
}

impl Jwt {
    /// Splits and decodes `token`; `None` when it is not three base64url parts whose first
    /// two are JSON objects.
    pub fn decode(token: &str) -> Option<Jwt> {
        if token.len() > MAX_JWT_LEN {
            return None;
        }
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let object = |part: &str| -> Option<Map<String, Value>> {
            let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
            match serde_json::from_slice(&bytes).ok()? {
                Value::Object(m) => Some(m),
                _ => None,
            }
        };
        Some(Jwt {
            header: object(h)?,
            claims: object(p)?,
            signing_input: format!("{h}.{p}"),
            signature: s.to_string(),
        })
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A claim that must be a JSON number (`exp`); fractions are cut, as the platform's
    /// JavaScript compares them as numbers.
    pub fn numeric(&self, name: &str) -> NumericClaim {
        match self.claims.get(name) {
            None | Some(Value::Null) => NumericClaim::Missing,
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(NumericClaim::NotANumber, NumericClaim::Value),
            Some(_) => NumericClaim::NotANumber,
        }
    }

    /// `typ` is `JWT` in any case.
    pub fn typ_is_jwt(&self) -> bool {
        self.header_str("typ")
            .is_some_and(|t| t.eq_ignore_ascii_case("jwt"))
    }

    /// Verifies the signature with `key`, for `alg` (`RS512` or `RS256`). False for any
    /// other algorithm, a key that is not RSA, or a bad signature.
    pub fn verify(&self, key: &Jwk, alg: &str) -> bool {
        use jsonwebtoken::{crypto, Algorithm, DecodingKey};
        let algorithm = match alg {
            "RS512" => Algorithm::RS512,
            "RS256" => Algorithm::RS256,
            _ => return false,
        };
        if key.kty != "RSA" {
            return false;
        }
        let (Some(n), Some(e)) = (key.n.as_deref(), key.e.as_deref()) else {
            return false;
        };
        let Ok(decoding) = DecodingKey::from_rsa_components(n, e) else {
            return false;
        };
        crypto::verify(
            &self.signature,
            self.signing_input.as_bytes(),
            &decoding,
            algorithm,
        )
        .unwrap_or(false)
    }
}

/// A public key of a JWKS (RFC 7517). Only RSA keys are used; other fields are kept so
/// that a set can be shown back as it was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The key with this `kid`.
    pub fn key(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Parses a JWKS document, skipping keys that are not JSON objects of the right
    /// shape rather than refusing the whole set (one odd key must not lock an app out).
    pub fn parse(body: &[u8]) -> Option<Jwks> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let keys = v.get("keys")?.as_array()?;
        Some(Jwks {
            keys: keys
                .iter()
                .filter_map(|k| serde_json::from_value(k.clone()).ok())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(v: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn only_three_parts_of_json_objects_decode() {
        let h = part(serde_json::json!({"alg": "RS512"}));
        let c = part(serde_json::json!({"exp": 5}));
        assert!(Jwt::decode(&format!("{h}.{c}.sig")).is_some());
        assert!(Jwt::decode(&format!("{h}.{c}")).is_none());
        assert!(Jwt::decode(&format!("{h}.{c}.a.b")).is_none());
        assert!(Jwt::decode("not-a-jwt").is_none());
        assert!(Jwt::decode(&format!("{h}.{}.s", part(serde_json::json!([1])))).is_none());
        assert!(Jwt::decode(&"a".repeat(MAX_JWT_LEN + 1)).is_none());
    }

    #[test]
    fn exp_is_told_apart_as_missing_not_a_number_or_a_value() {
        let h = part(serde_json::json!({}));
        let jwt = |c| Jwt::decode(&format!("{h}.{}.s", part(c))).unwrap();
        assert_eq!(
            jwt(serde_json::json!({})).numeric("exp"),
            NumericClaim::Missing
        );
        assert_eq!(
            jwt(serde_json::json!({"exp": "123"})).numeric("exp"),
            NumericClaim::NotANumber
        );
        assert_eq!(
            jwt(serde_json::json!({"exp": 123.9})).numeric("exp"),
            NumericClaim::Value(123)
        );
    }
}
