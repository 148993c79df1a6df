//! The error catalogue of API.md §6: each error the service itself sends, with its status
//! and exact body. (Token faults, E4/E5, and the gateway's E12/E13 are the front door's.)

use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Field → message, as a 400 names each bad field. Keys are the field's path
/// (`time`, `subject.nhsNumber`, `channel.endpoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub BTreeMap<String, String>);

impl ValidationErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_insert_with(|| message.into());
    }

    pub fn one(field: &str, message: &str) -> Self {
        let mut e = ValidationErrors::default();
        e.add(field, message);
        e
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was added.
    pub fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// An answer other than success: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    /// E1: `{"validationErrors": {field: message, …}}`.
    pub fn validation(errors: &ValidationErrors) -> Self {
        ApiError {
            status: 400,
            body: json!({ "validationErrors": errors.0 }),
        }
    }

    /// E2: a `{id}` that is not a UUID v4 (RESP; the sandbox answers E8 instead).
    pub fn bad_subscription_id() -> Self {
        Self::errors(
            400,
            "Please provide a valid subscription ID in UUID4 format",
        )
    }

    /// E3: a `continue_from` this service did not hand out.
    pub fn bad_continue_from() -> Self {
        Self::errors(400, "The continue_from field was not valid")
    }

    /// E6: the publisher may publish, but not this type.
    pub fn type_not_permitted() -> Self {
        Self::errors(
            403,
            "User is not authorized to handle the requested event type",
        )
    }

    /// E7: the app has no permission on the service at all.
    pub fn unauthorised() -> Self {
        Self::errors(403, "Unauthorised")
    }

    /// E8.
    pub fn not_found() -> Self {
        Self::errors(404, "Not found")
    }

    /// E9: the same criteria and endpoint are already subscribed (the sandbox's wording).
    pub fn duplicate(existing_id: &str) -> Self {
        Self::errors(
            409,
            &format!("A matching subscription already exists with id: {existing_id}"),
        )
    }

    /// E10.
    pub fn internal() -> Self {
        Self::errors(500, "Internal server error")
    }

    /// E11: the NHS sandbox's answer to anything it could not handle, such as a body that
    /// is not JSON. Sandbox mode only.
    pub fn sandbox_failure() -> Self {
        ApiError {
            status: 500,
            body: json!({"error": "something went wrong"}),
        }
    }

    /// **OpenSpine**: a body larger than the service takes. The NHS publishes no limit.
    pub fn too_large(limit: usize) -> Self {
        Self::errors(
            413,
            &format!("The request body is larger than {limit} bytes"),
        )
    }

    /// **OpenSpine**: a method the path does not have.
    pub fn method_not_allowed() -> Self {
        Self::errors(405, "Method not allowed")
    }

    /// **OpenSpine**: the store could not answer now; retry.
    pub fn unavailable() -> Self {
        Self::errors(503, "Service unavailable, please retry")
    }

    fn errors(status: u16, text: &str) -> Self {
        ApiError {
            status,
            body: json!({ "errors": text }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_has_the_platforms_bodies() {
        let e = ApiError::validation(&ValidationErrors::one(
            "time",
            "Please provide a valid time",
        ));
        assert_eq!(e.status, 400);
        assert_eq!(
            serde_json::to_string(&e.body).unwrap(),
            r#"{"validationErrors":{"time":"Please provide a valid time"}}"#
        );
        assert_eq!(
            ApiError::duplicate("5553998c-b802-4071-9a54-8e99ea729614").body,
            json!({"errors": "A matching subscription already exists with id: 5553998c-b802-4071-9a54-8e99ea729614"})
        );
        assert_eq!(ApiError::not_found().body, json!({"errors": "Not found"}));
        assert_eq!(ApiError::unauthorised().status, 403);
        assert_eq!(
            ApiError::sandbox_failure().body,
            json!({"error": "something went wrong"})
        );
    }

    #[test]
    fn the_first_message_for_a_field_is_kept() {
        let mut e = ValidationErrors::default();
        e.add("id", "first");
        e.add("id", "second");
        assert_eq!(e.0["id"], "first");
    }
}
