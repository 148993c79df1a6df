//! The Personal Demographics Service's contract (`shared/pds/API.md`), after NHS England's
//! PDS FHIR R4 API, as pure functions: what clients send and the exact answers they
//! compare. The server crate does the I/O around these.
//!
//! This is the first part of the PDS service: the NHS number rule (§4), the request
//! headers every route checks (§1) and the error catalogue (§12). Where the NHS sources are
//! silent, the choice made here is marked **OpenSpine**.

pub mod error;
pub mod headers;
pub mod names;
pub mod nhs_number;
pub mod search;

pub use error::{Outcome, SpineCode};
pub use nhs_number::NhsNumber;

/// The base path of the service, as on the NHS API platform.
pub const BASE_PATH: &str = "/personal-demographics/FHIR/R4";

/// Every answer's media type, errors included (API.md §1).
pub const FHIR_JSON: &str = "application/fhir+json";

/// The base of `fullUrl`s in Bundles: the NHS's production address, even in the sandbox
/// (API.md §1), because clients compare them.
pub const FULL_URL_BASE: &str = "https://api.service.nhs.uk/personal-demographics/FHIR/R4";
