//! AWS Signature Version 4 (SigV4) as S3 uses it, in plain Rust with no I/O.
//!
//! Runs in two places: inside the ext-authz service (which signs every request it allows) and
//! inside the Envoy wasm filter (compiled to `wasm32-wasip1`), so it depends on nothing that
//! needs an operating system. Modules are named for the protocol concepts of the SigV4
//! specification; [`sign`] ties them together.

pub mod amz_date;
pub mod aws_chunked;
pub mod canonical_request;
mod hex_digest;
pub mod payload;
pub mod signature;
pub mod signing_key;
pub mod uri_encoding;

pub use amz_date::AmzDate;
pub use canonical_request::CanonicalRequest;
pub use signature::{sign, sign_with_key, Credentials, SignedRequest, SigningParams};
pub use signing_key::{Scope, SigningKey};
