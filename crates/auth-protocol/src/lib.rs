//! The NHS API platform's OAuth2 token service, as rules (frontdoor API.md): pure
//! functions over a request's form and the decoded JWTs, so that the order of the checks
//! and their exact strings are tested without a server, and the front door only adds the
//! I/O (the registry, the JWKS fetch, the coordination store).

pub mod error;
pub mod gateway;
pub mod grant;
pub mod jwt;
pub mod limits;
pub mod scopes;
pub mod token;

pub use error::OAuthError;
pub use grant::{dispatch, Grant};
pub use jwt::{Jwk, Jwks, Jwt};
pub use token::{TokenKind, TokenRecord};
