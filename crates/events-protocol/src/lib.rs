//! The events service's contract, after NHS England's Multicast Notification Service
//! (`shared/events/API.md`), as pure functions over JSON values: what a publisher may
//! send, what a subscriber may ask for, what a subscriber receives, and every error with
//! its exact body. The server crate does the I/O around these.
//!
//! Where the NHS sources are silent, the choice made here is marked **OpenSpine** in the
//! item's documentation, and the README lists them.

pub mod criteria;
pub mod delivery;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod paging;
pub mod sandbox;
pub mod subscription;

pub use criteria::Criteria;
pub use endpoint::Endpoint;
pub use error::{ApiError, ValidationErrors};
pub use event::Accepted;
pub use spine_events::Event;
pub use subscription::{Payload, Status, Subscription};

/// The base path of the service, as on the NHS API platform.
pub const BASE_PATH: &str = "/multicast-notification-service";

/// The application-restricted scope that grants the API (API.md §2).
pub const APP_SCOPE: &str = "urn:nhsd:apim:app:level3:multicast-notification-service";

/// The CIS2 scope the platform also accepts (API.md §2).
pub const CIS2_SCOPE: &str = "urn:nhsd:apim:user-nhs-cis2:aal3:multicast-notification-service";

/// The family of types MESH publishes about its own messages (`mesh-message-accepted-1`, …).
/// **OpenSpine**: they say who sends what to whom, so nobody may publish them over the API,
/// and a subscription to them must deliver into the MESH mailbox they are about (see
/// [`subscription::check_mesh_events`]).
pub const MESH_FAMILY: &str = "mesh-";

/// Whether `id` is a UUID v4 in its hyphenated form, as subscription ids are.
pub fn is_uuid_v4(id: &str) -> bool {
    id.len() == 36
        && uuid::Uuid::try_parse(id).is_ok_and(|u| u.get_version_num() == 4)
        && id.as_bytes()[8] == b'-'
}

#[cfg(test)]
mod tests {
    #[test]
    fn subscription_ids_are_hyphenated_uuid_v4s() {
        assert!(super::is_uuid_v4("e9050741-ae87-4720-beb1-2abd9248e227"));
        assert!(!super::is_uuid_v4("e9050741ae874720beb12abd9248e227"));
        assert!(!super::is_uuid_v4("e9050741-ae87-1720-beb1-2abd9248e227"));
        assert!(!super::is_uuid_v4("{e9050741-ae87-4720-beb1-2abd9248e227}"));
        assert!(!super::is_uuid_v4("not-a-uuid"));
    }
}
