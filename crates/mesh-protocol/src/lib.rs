//! The MESH wire protocol, kept apart from storage and HTTP so that every rule of
//! `shared/mesh/API.md` can be unit- and property-tested without a server.
//!
//! Nothing in this crate does I/O: callers hand in header values, clocks and random
//! bytes, and get back typed values, errors and JSON views.

// MeshError carries the whole MESH error (status, event, code, description, shape) so it
// can be rendered in either version; it is only built on the refusal path, so its size
// does not matter for the hot path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod clock;
pub mod directory;
pub mod error;
pub mod filter;
pub mod headers;
pub mod ids;
pub mod lifecycle;
pub mod model;
pub mod paging;
pub mod version;
pub mod views;

pub use auth::{AuthToken, TokenError};
pub use clock::{Clock, ManualClock, ShiftedClock, SystemClock};
pub use error::MeshError;
pub use filter::WorkflowFilter;
pub use headers::{ChunkRange, SendHeaders};
pub use lifecycle::{Change, ExpiryReason};
pub use model::{Event, Mailbox, Message, MessageType, Metadata, Party, Status, Workflow};
pub use version::ApiVersion;
