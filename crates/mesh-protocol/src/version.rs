//! API version negotiation from the `Accept` header (API.md 1.2).

/// The MESH API version a request asked for. It decides the JSON shape of every response
/// and error, so it is computed once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiVersion {
    #[default]
    V1,
    V2,
}

/// The `Accept` header mentioned `vnd.mesh` but not in the `application/vnd.mesh.v<n>+json`
/// form; the sandbox answers 400 "Accept header api format incorrect".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAccept;

impl ApiVersion {
    /// SBX rules, plus two leniencies API.md section 11 recommends (#4, #5): the value is
    /// split on `,` as well as `;`, and versions above 2 are clamped to 2.
    pub fn from_accept(value: Option<&str>) -> Result<Self, BadAccept> {
        let Some(value) = value else {
            return Ok(ApiVersion::V1);
        };
        for piece in value.split([';', ',']) {
            let piece = piece.trim();
            if piece.is_empty() || !piece.contains("vnd.mesh") {
                continue;
            }
            let digits = piece
                .strip_prefix("application/vnd.mesh.v")
                .and_then(|rest| rest.strip_suffix("+json"))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(BadAccept)?;
            // Any number of digits is valid in SBX; only "1" (and zeros) mean version 1.
            let is_one = digits.trim_start_matches('0') == "1";
            let is_zero = digits.trim_start_matches('0').is_empty();
            return Ok(if is_one || is_zero {
                ApiVersion::V1
            } else {
                ApiVersion::V2
            });
        }
        Ok(ApiVersion::V1)
    }

    /// Content type of JSON bodies in this version (API.md 1.4, recommendation).
    pub fn json_content_type(self) -> &'static str {
        match self {
            ApiVersion::V1 => "application/json",
            ApiVersion::V2 => "application/vnd.mesh.v2+json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_values_pick_the_version_the_sandbox_picks() {
        let v = |s: Option<&str>| ApiVersion::from_accept(s);
        assert_eq!(v(None), Ok(ApiVersion::V1));
        assert_eq!(v(Some("")), Ok(ApiVersion::V1));
        assert_eq!(v(Some("application/json")), Ok(ApiVersion::V1));
        assert_eq!(v(Some("*/*")), Ok(ApiVersion::V1));
        assert_eq!(v(Some("application/vnd.mesh.v1+json")), Ok(ApiVersion::V1));
        assert_eq!(v(Some("application/vnd.mesh.v2+json")), Ok(ApiVersion::V2));
        assert_eq!(
            v(Some("application/vnd.mesh.v2+json; charset=utf-8")),
            Ok(ApiVersion::V2)
        );
        assert_eq!(v(Some("application/vnd.mesh.v3+json")), Ok(ApiVersion::V2));
        assert_eq!(v(Some("application/vnd.mesh.vX+json")), Err(BadAccept));
        assert_eq!(
            v(Some("application/json, application/vnd.mesh.v2+json")),
            Ok(ApiVersion::V2)
        );
    }
}
