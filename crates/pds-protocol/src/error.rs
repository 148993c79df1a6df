//! The Spine error catalogue (API.md §12) and the `OperationOutcome` every PDS error is.
//! Clients and the NHS's own tests compare these bodies field for field, so the codes,
//! statuses, severities and displays here are the NHS's, to the letter.

use serde_json::{json, Value};

/// The Spine code system every PDS error's coding names.
pub const CODE_SYSTEM: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";

/// §3's diagnostics for an app refused a method (M1).
pub const M1_METHOD: &str =
    "Your app has insufficient permissions to use this method. Please contact support.";
/// §3's M2: refused an operation.
pub const M2_OPERATION: &str =
    "Your app has insufficient permissions to use this operation. Please contact support.";
/// §3's M3: refused a search.
pub const M3_SEARCH: &str =
    "Your app has insufficient permissions to perform this search. Please contact support.";
/// §3's MP: a patient's token does not reach this.
pub const MP_PATIENT: &str = "Your access token has insufficient permissions. See documentation regarding Patient access restrictions https://digital.nhs.uk/developer/api-catalogue/personal-demographics-service-fhir";

/// The Spine error codes of API.md §12 whose HTTP status, FHIR issue code and display the
/// NHS sources give. (`UNABLE_TO_CALL_SERVICE`, `VALIDATION_ERROR` and the like are listed
/// there as unverified and are not used.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpineCode {
    /// 401 from the gateway; its 403s (access modes) are built with [`Outcome::refused`].
    AccessDenied,
    AdditionalProperties,
    ForbiddenUpdate,
    InvalidatedResource,
    InvalidCreate,
    InvalidResourceId,
    InvalidSearchData,
    InvalidUpdate,
    InvalidValue,
    MissingValue,
    PreconditionFailed,
    ResourceNotFound,
    ResourceVersionMismatch,
    TooFewValuesSubmitted,
    TooManyValuesSubmitted,
    UnsupportedService,
    UnsupportedRequest,
    TooManyMatches,
    TooManyRequests,
    ServiceUnavailable,
    UnknownError,
}

use SpineCode::*;

impl SpineCode {
    /// Every code, for tests and documentation.
    pub const ALL: [SpineCode; 21] = [
        AccessDenied,
        AdditionalProperties,
        ForbiddenUpdate,
        InvalidatedResource,
        InvalidCreate,
        InvalidResourceId,
        InvalidSearchData,
        InvalidUpdate,
        InvalidValue,
        MissingValue,
        PreconditionFailed,
        ResourceNotFound,
        ResourceVersionMismatch,
        TooFewValuesSubmitted,
        TooManyValuesSubmitted,
        UnsupportedService,
        UnsupportedRequest,
        TooManyMatches,
        TooManyRequests,
        ServiceUnavailable,
        UnknownError,
    ];

    /// The code as it appears in `details.coding[0].code`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessDenied => "ACCESS_DENIED",
            AdditionalProperties => "ADDITIONAL_PROPERTIES",
            ForbiddenUpdate => "FORBIDDEN_UPDATE",
            InvalidatedResource => "INVALIDATED_RESOURCE",
            InvalidCreate => "INVALID_CREATE",
            InvalidResourceId => "INVALID_RESOURCE_ID",
            InvalidSearchData => "INVALID_SEARCH_DATA",
            InvalidUpdate => "INVALID_UPDATE",
            InvalidValue => "INVALID_VALUE",
            MissingValue => "MISSING_VALUE",
            PreconditionFailed => "PRECONDITION_FAILED",
            ResourceNotFound => "RESOURCE_NOT_FOUND",
            ResourceVersionMismatch => "RESOURCE_VERSION_MISMATCH",
            TooFewValuesSubmitted => "TOO_FEW_VALUES_SUBMITTED",
            TooManyValuesSubmitted => "TOO_MANY_VALUES_SUBMITTED",
            UnsupportedService => "UNSUPPORTED_SERVICE",
            UnsupportedRequest => "UNSUPPORTED_REQUEST",
            TooManyMatches => "TOO_MANY_MATCHES",
            TooManyRequests => "TOO_MANY_REQUESTS",
            ServiceUnavailable => "SERVICE_UNAVAILABLE",
            UnknownError => "UNKNOWN_ERROR",
        }
    }

    /// The HTTP status. `TOO_MANY_MATCHES` is a 200: a search that found too many is an
    /// answer, not a failure.
    pub fn status(self) -> u16 {
        match self {
            AccessDenied => 401,
            ForbiddenUpdate => 403,
            InvalidatedResource | ResourceNotFound => 404,
            ResourceVersionMismatch => 409,
            PreconditionFailed => 412,
            TooManyRequests => 429,
            UnknownError => 500,
            ServiceUnavailable => 503,
            TooManyMatches => 200,
            _ => 400,
        }
    }

    /// The FHIR `issue.code`.
    pub fn issue_code(self) -> &'static str {
        match self {
            AccessDenied | ForbiddenUpdate => "forbidden",
            AdditionalProperties => "invariant",
            InvalidatedResource | UnsupportedService => "processing",
            InvalidUpdate | PreconditionFailed => "structure",
            MissingValue => "required",
            ResourceNotFound => "not-found",
            ResourceVersionMismatch => "conflict",
            TooManyMatches => "multiple-matches",
            ServiceUnavailable => "timeout",
            UnknownError => "unknown",
            _ => "value",
        }
    }

    /// The FHIR `issue.severity`: `information` for a forbidden update, a resource not
    /// found and too many matches, `error` otherwise.
    pub fn severity(self) -> &'static str {
        match self {
            ForbiddenUpdate | ResourceNotFound | TooManyMatches => "information",
            _ => "error",
        }
    }

    /// The coding's `display`.
    pub fn display(self) -> &'static str {
        match self {
            AccessDenied => "Access Denied - Unauthorised",
            AdditionalProperties => "Additional properties should not be included",
            ForbiddenUpdate => "Update is forbidden",
            InvalidatedResource => "Resource that has been marked as invalid was requested - invalid resources cannot be retrieved",
            InvalidCreate => "Patient create data is invalid",
            InvalidResourceId => "Resource Id is invalid",
            InvalidSearchData => "Search data is invalid",
            InvalidUpdate => "Update is invalid",
            InvalidValue => "Provided value is invalid",
            MissingValue => "Required value is missing",
            PreconditionFailed => "Required condition was not fulfilled",
            ResourceNotFound => "Resource not found",
            ResourceVersionMismatch => "Resource version supplied does not match actual version",
            TooFewValuesSubmitted => "Too few values submitted",
            TooManyValuesSubmitted => "Too many values submitted",
            UnsupportedService => "Unsupported Service",
            UnsupportedRequest => "The request is not one that is supported.",
            TooManyMatches => "Too Many Matches",
            TooManyRequests => "Too many requests",
            ServiceUnavailable => "Service unavailable",
            UnknownError => "Unknown Error",
        }
    }
}

/// One PDS error: its status and its `OperationOutcome` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub body: Value,
}

impl Outcome {
    /// The catalogue's answer for `code`, with `diagnostics` when given (the table's "—"
    /// rows have none).
    pub fn new(code: SpineCode, diagnostics: Option<&str>) -> Outcome {
        Outcome::build(
            code.status(),
            code.severity(),
            code.issue_code(),
            code.as_str(),
            code.display(),
            diagnostics,
        )
    }

    /// A 403 of the access modes (API.md §3), each with its own code, issue code and
    /// display: `INVALID_METHOD` `forbidden` `Cannot update resource with
    /// application-restricted access token`, `INVALID_VALUE` `token` `Cannot retrieve more
    /// than one result …`, `ACCESS_DENIED` `forbidden` `Patient cannot perform this action`.
    pub fn refused(
        spine_code: &str,
        issue_code: &str,
        display: &str,
        diagnostics: Option<&str>,
    ) -> Outcome {
        Outcome::build(403, "error", issue_code, spine_code, display, diagnostics)
    }

    fn build(
        status: u16,
        severity: &str,
        issue_code: &str,
        code: &str,
        display: &str,
        diagnostics: Option<&str>,
    ) -> Outcome {
        let mut issue = json!({
            "severity": severity,
            "code": issue_code,
            "details": {"coding": [{
                "system": CODE_SYSTEM,
                "version": "1",
                "code": code,
                "display": display,
            }]},
        });
        if let Some(d) = diagnostics {
            issue["diagnostics"] = json!(d);
        }
        Outcome {
            status,
            body: json!({"resourceType": "OperationOutcome", "issue": [issue]}),
        }
    }

    /// The Spine code in the body (`details.coding[0].code`), for logs, metrics and tests.
    pub fn spine_code(&self) -> &str {
        self.body["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap_or_default()
    }

    /// The body's `diagnostics`, if it has one.
    pub fn diagnostics(&self) -> Option<&str> {
        self.body["issue"][0]["diagnostics"].as_str()
    }

    /// `Missing value - '<path>'`, the catalogue's style for an absent field.
    pub fn missing_value(path: &str) -> Outcome {
        Outcome::new(MissingValue, Some(&format!("Missing value - '{path}'")))
    }

    /// `Invalid value - '<v>' in field '<path>'`, the catalogue's style for a bad field.
    pub fn invalid_value(value: &str, path: &str) -> Outcome {
        Outcome::new(
            InvalidValue,
            Some(&format!("Invalid value - '{value}' in field '{path}'")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_found_is_information_without_diagnostics() {
        let o = Outcome::new(ResourceNotFound, None);
        assert_eq!(o.status, 404);
        assert_eq!(
            o.body,
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information",
                "code": "not-found",
                "details": {"coding": [{
                    "system": "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode",
                    "version": "1",
                    "code": "RESOURCE_NOT_FOUND",
                    "display": "Resource not found"
                }]}
            }]})
        );
    }

    #[test]
    fn each_code_has_the_tables_status_issue_code_and_display() {
        let table: &[(&str, u16, &str, &str)] = &[
            (
                "ADDITIONAL_PROPERTIES",
                400,
                "invariant",
                "Additional properties should not be included",
            ),
            ("FORBIDDEN_UPDATE", 403, "forbidden", "Update is forbidden"),
            (
                "INVALID_CREATE",
                400,
                "value",
                "Patient create data is invalid",
            ),
            (
                "INVALID_RESOURCE_ID",
                400,
                "value",
                "Resource Id is invalid",
            ),
            (
                "INVALID_SEARCH_DATA",
                400,
                "value",
                "Search data is invalid",
            ),
            ("INVALID_UPDATE", 400, "structure", "Update is invalid"),
            (
                "MISSING_VALUE",
                400,
                "required",
                "Required value is missing",
            ),
            (
                "PRECONDITION_FAILED",
                412,
                "structure",
                "Required condition was not fulfilled",
            ),
            (
                "RESOURCE_VERSION_MISMATCH",
                409,
                "conflict",
                "Resource version supplied does not match actual version",
            ),
            (
                "TOO_MANY_MATCHES",
                200,
                "multiple-matches",
                "Too Many Matches",
            ),
            (
                "UNSUPPORTED_SERVICE",
                400,
                "processing",
                "Unsupported Service",
            ),
            (
                "UNSUPPORTED_REQUEST",
                400,
                "value",
                "The request is not one that is supported.",
            ),
            ("TOO_MANY_REQUESTS", 429, "value", "Too many requests"),
            ("SERVICE_UNAVAILABLE", 503, "timeout", "Service unavailable"),
            ("UNKNOWN_ERROR", 500, "unknown", "Unknown Error"),
        ];
        for (code, status, issue, display) in table {
            let c = SpineCode::ALL
                .iter()
                .find(|c| c.as_str() == *code)
                .unwrap_or_else(|| panic!("{code} is in the catalogue"));
            assert_eq!(
                (c.status(), c.issue_code(), c.display()),
                (*status, *issue, *display),
                "{code}"
            );
        }
        // Codes are unique.
        let mut codes: Vec<_> = SpineCode::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), SpineCode::ALL.len());
    }

    #[test]
    fn field_errors_have_the_catalogues_wording() {
        let o = Outcome::invalid_value("XX", "name/0/given");
        assert_eq!(o.status, 400);
        assert_eq!(
            o.body["issue"][0]["diagnostics"],
            "Invalid value - 'XX' in field 'name/0/given'"
        );
        assert_eq!(
            o.body["issue"][0]["details"]["coding"][0]["code"],
            "INVALID_VALUE"
        );
        let o = Outcome::missing_value("birthDate");
        assert_eq!(o.body["issue"][0]["code"], "required");
        assert_eq!(
            o.body["issue"][0]["diagnostics"],
            "Missing value - 'birthDate'"
        );
    }

    #[test]
    fn an_access_mode_refusal_is_a_403_with_its_own_wording() {
        let o = Outcome::refused(
            "INVALID_METHOD",
            "forbidden",
            "Cannot update resource with application-restricted access token",
            Some(M1_METHOD),
        );
        assert_eq!(o.status, 403);
        let issue = &o.body["issue"][0];
        assert_eq!(issue["severity"], "error");
        assert_eq!(issue["code"], "forbidden");
        assert_eq!(issue["details"]["coding"][0]["code"], "INVALID_METHOD");
        assert_eq!(
            issue["diagnostics"],
            "Your app has insufficient permissions to use this method. Please contact support."
        );
    }
}
