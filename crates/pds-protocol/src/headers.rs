//! The request headers every PDS route checks first (API.md §1), with their exact errors.

use crate::error::{Outcome, SpineCode};

/// Longest `X-Request-ID` or `X-Correlation-ID` echoed or quoted back.
pub const MAX_ID_HEADER: usize = 200;

/// The `X-Request-ID` rule: required, a UUID in its 8-4-4-4-12 hex form (either case).
/// Absent → 400 `MISSING_VALUE`; present but not a UUID, or empty → 400 `INVALID_VALUE`,
/// quoting what was sent.
pub fn check_request_id(value: Option<&str>) -> Result<(), Outcome> {
    match value {
        None => Err(Outcome::new(
            SpineCode::MissingValue,
            Some("Invalid request with error - X-Request-ID header must be supplied to access this resource"),
        )),
        Some(v) if is_uuid(v) => Ok(()),
        Some(v) => Err(Outcome::new(
            SpineCode::InvalidValue,
            Some(&format!(
                "Invalid value - '{}' in header 'X-Request-ID'",
                quoted(v)
            )),
        )),
    }
}

/// `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`.
pub fn is_uuid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What of a header value an error quotes: at most [`MAX_ID_HEADER`] characters, so a
/// huge header does not make a huge answer.
fn quoted(v: &str) -> String {
    v.chars().take(MAX_ID_HEADER).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostics(r: Result<(), Outcome>) -> (u16, String, String) {
        let o = r.expect_err("refused");
        let diagnostics = o.diagnostics().unwrap_or_default().to_string();
        (o.status, o.spine_code().to_string(), diagnostics)
    }

    #[test]
    fn a_request_id_must_be_there_and_be_a_uuid() {
        assert_eq!(
            check_request_id(Some("60E0B220-8136-4CA5-AE46-1D97EF59D068")),
            Ok(())
        );
        assert_eq!(
            check_request_id(Some("60e0b220-8136-4ca5-ae46-1d97ef59d068")),
            Ok(())
        );
        assert_eq!(
            diagnostics(check_request_id(None)),
            (
                400,
                "MISSING_VALUE".into(),
                "Invalid request with error - X-Request-ID header must be supplied to access this resource".into()
            )
        );
        for bad in [
            "",
            "1234",
            "60e0b22081364ca5ae461d97ef59d068",
            "{60e0b220-8136-4ca5-ae46-1d97ef59d068}",
            "60e0b220-8136-4ca5-ae46-1d97ef59d06g",
        ] {
            assert_eq!(
                diagnostics(check_request_id(Some(bad))),
                (
                    400,
                    "INVALID_VALUE".into(),
                    format!("Invalid value - '{bad}' in header 'X-Request-ID'")
                ),
                "{bad:?}"
            );
        }
        let long = "x".repeat(5000);
        assert_eq!(
            diagnostics(check_request_id(Some(&long))).2.len(),
            "Invalid value - '' in header 'X-Request-ID'".len() + MAX_ID_HEADER
        );
    }
}
